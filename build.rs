//! Compiles `proto/` into Rust with no system `protoc`: `protox` parses the `.proto` files in pure
//! Rust, `tonic-prost-build` generates the messages and services from the descriptor set, and the
//! encoded descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "guildhall/v1/guildhall.proto",
    "guildhall/admin/v1/admin.proto",
    "protocol/profile/v1/profile.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("guildhall_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Methods a later issue implements answer UNIMPLEMENTED until then.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
