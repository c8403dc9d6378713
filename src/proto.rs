//! Generated protobuf and gRPC code for `proto/`.
//!
//! `guildhall.v1` is the combined service reconstructed from the API reference seed;
//! `guildhall.admin.v1` is the server administration service (admins only);
//! `protocol.profile.v1` is Harmony's profile service. Field numbers follow the seed's order.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The `guildhall.v1` package: the combined GuildHall service and its messages.
pub mod guildhall {
    /// Version 1 of the API.
    pub mod v1 {
        tonic::include_proto!("guildhall.v1");
    }
    /// `guildhall.admin.v1`: server administration, a separate service so its admin check
    /// covers every method.
    pub mod admin {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("guildhall.admin.v1");
        }
    }
}

/// Harmony's packages served by the node.
pub mod protocol {
    /// `protocol.harmonytypes.v1`: shared Harmony types.
    pub mod harmonytypes {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("protocol.harmonytypes.v1");
        }
    }
    /// `protocol.profile.v1`: Harmony's profile service.
    pub mod profile {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("protocol.profile.v1");
        }
    }
}

/// The encoded `FileDescriptorSet` of every served package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/guildhall_descriptor.bin"));
