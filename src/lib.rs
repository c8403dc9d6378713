//! guildhall: a federated, peer-to-peer chat homeserver.
pub mod identity;
pub mod proto;
