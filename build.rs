//! Compiles `proto/` into Rust with no system `protoc`: `protox` parses the `.proto` files in pure
//! Rust, `tonic-prost-build` generates the messages and services from the descriptor set, and the
//! encoded descriptor set is kept for gRPC server reflection.
//!
//! It also lists the web client's built files (`web/dist/`, committed) so the node embeds them
//! (`src/api/web.rs`): the person running `cargo run -- serve` needs no npm and no build step.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "guildhall/v1/guildhall.proto",
    "guildhall/admin/v1/admin.proto",
    "protocol/profile/v1/profile.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    embed_web_client()?;
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

/// Where the web client's build output lives, relative to the crate root.
const WEB_DIST: &str = "web/dist";

/// Writes `web_assets.rs`: one `(url path, bytes)` entry per file under [`WEB_DIST`], sorted, with
/// `include_bytes!` so a changed file rebuilds the node. No directory: an empty table (the node
/// then answers `/` with a note that the client isn't built).
fn embed_web_client() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={WEB_DIST}");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join(WEB_DIST);
    let mut files = Vec::new();
    if root.is_dir() {
        collect_files(&root, &mut files)?;
    }
    files.sort();
    let mut table = String::from("&[\n");
    for file in &files {
        let relative = file.strip_prefix(&root)?;
        let url: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        println!("cargo:rerun-if-changed={}", file.display());
        table.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            format!("/{}", url.join("/")),
            file.display().to_string()
        ));
    }
    table.push_str("]\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("web_assets.rs"), table)?;
    Ok(())
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
