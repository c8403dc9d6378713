//! The Python interop client (`examples/python/interop_client.py`, written from
//! `docs/PROTOCOL.md` and the `.proto` files alone) against two real `guildhall serve` processes
//! on loopback, so a change that breaks the document-to-wire contract fails CI.
//!
//! The client checks every test vector of the document, then registers, logs in and replays on
//! the first node, and walks the federation flows with the second as a guild's host (join,
//! messages, membership event, profile change, DM invite, device revocation, homeserver move).
//!
//! It needs a Python with `examples/python/requirements.txt` installed, named by the environment
//! variable `GUILDHALL_INTEROP_PYTHON`; `.ci/run` builds one in `target/interop-venv` and sets it.
//! Without the variable this test says so and passes, so `cargo test` needs nothing but Rust.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{ServeProcess, run_bounded};

/// Names the Python interpreter to run the client with (a venv's `bin/python`).
const PYTHON_VAR: &str = "GUILDHALL_INTEROP_PYTHON";

/// How long the whole client run may take (it needs about two seconds on a laptop).
const CLIENT_RUN: Duration = Duration::from_secs(300);

#[test]
fn python_client_from_the_protocol_document_interoperates() {
    let Some(python) = std::env::var_os(PYTHON_VAR).filter(|v| !v.is_empty()) else {
        eprintln!(
            "skipped: set {PYTHON_VAR} to a Python with examples/python/requirements.txt \
             installed to run the interop client (.ci/run does)"
        );
        return;
    };
    let python = PathBuf::from(python);
    assert!(
        python.is_file(),
        "{PYTHON_VAR}={} is not a file; run .ci/run, or point it at a venv's bin/python",
        python.display()
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let home = ServeProcess::start("A (homeserver)");
    let host = ServeProcess::start("B (host)");

    let work = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(&python);
    command
        .arg(repo.join("examples/python/interop_client.py"))
        .arg("--server")
        .arg(&home.grpc)
        .arg("--host")
        .arg(&host.grpc)
        .arg("--doc")
        .arg(repo.join("docs/PROTOCOL.md"))
        .arg("--proto")
        .arg(repo.join("proto"))
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let started = Instant::now();
    let (status, output) = run_bounded(command, work.path(), CLIENT_RUN);
    let took = started.elapsed();
    let passed = status.is_some_and(|s| s.success()) && output.trim_end().ends_with("PASS");
    assert!(
        passed,
        "\n\nThe Python interop client (examples/python/interop_client.py, written from \
         docs/PROTOCOL.md) failed: {}.\nEither the node or the document changed the contract; \
         fix whichever is wrong.\n\n--- client output ---\n{output}\n{}{}",
        match status {
            Some(s) => s.to_string(),
            None => format!("killed after {CLIENT_RUN:?}"),
        },
        home.logs(),
        host.logs()
    );
    println!("{output}\nPython interop client passed in {took:.1?}");
}
