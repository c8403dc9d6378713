//! The web client in a real browser against two real nodes: `web/e2e/run.mjs` drives headless
//! Chromium (through `playwright-core`) as two people on node A and a third whose homeserver is
//! node B, through the page each node serves (`src/api/web.rs`): registering, a guild, an invite,
//! chat both ways, reactions, edits, an upload, a reload that resumes, and a remote join through
//! an invite link.
//!
//! It needs Node.js, `web/node_modules` (`npm ci` in `web/`) and a Chromium, named by the
//! environment variable `GUILDHALL_CHROMIUM`; `.ci/run` installs all three and sets it. Without
//! the variable this test says so and passes, so `cargo test` needs nothing but Rust.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{ServeProcess, run_bounded};

/// Names the browser to drive (Debian's `/usr/bin/chromium`).
const CHROMIUM_VAR: &str = "GUILDHALL_CHROMIUM";

/// How long the whole browser run may take.
const BROWSER_RUN: Duration = Duration::from_secs(600);

#[test]
fn the_web_client_works_in_a_real_browser_across_two_nodes() {
    let Some(chromium) = std::env::var_os(CHROMIUM_VAR).filter(|v| !v.is_empty()) else {
        eprintln!(
            "skipped: set {CHROMIUM_VAR} to a Chromium (and run `npm ci` in web/) to drive the \
             web client in a browser (.ci/run does)"
        );
        return;
    };
    let chromium = PathBuf::from(chromium);
    assert!(
        chromium.is_file(),
        "{CHROMIUM_VAR}={} is not a file",
        chromium.display()
    );
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules has no playwright-core: run `npm ci` in web/ (.ci/run does)"
    );
    let a = ServeProcess::start("A");
    let b = ServeProcess::start("B");

    let work = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new("node");
    command
        .arg("e2e/run.mjs")
        .current_dir(&web)
        .env("GUILDHALL_NODE_A", &a.grpc)
        .env("GUILDHALL_NODE_B", &b.grpc)
        .env("CHROMIUM", &chromium);
    let started = Instant::now();
    let (status, output) = run_bounded(command, work.path(), BROWSER_RUN);
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "\n\nThe web client's browser run (web/e2e/run.mjs) failed: {}.\n\n--- its output ---\n\
         {output}\n{}{}",
        match status {
            Some(s) => s.to_string(),
            None => format!("killed after {BROWSER_RUN:?}"),
        },
        a.logs(),
        b.logs()
    );
    println!("{output}\nweb client browser run passed in {took:.1?}");
}
