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

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Names the Python interpreter to run the client with (a venv's `bin/python`).
const PYTHON_VAR: &str = "GUILDHALL_INTEROP_PYTHON";

/// How long a node may take to print where it listens.
const STARTUP: Duration = Duration::from_secs(60);

/// How long the whole client run may take (it needs about two seconds on a laptop).
const CLIENT_RUN: Duration = Duration::from_secs(300);

/// Log lines of each node shown when the client fails.
const LOG_TAIL: usize = 60;

/// The config file each node runs with, next to `--data-dir` (a temporary directory). Defaults
/// otherwise, rate limits included. The nodes federate with each other at 127.0.0.1, so a
/// setting that lets a node dial loopback or private addresses for federation belongs here.
const NODE_CONFIG: &str = r#"
listen = "127.0.0.1:0"
p2p_listen = "/ip4/127.0.0.1/tcp/0"
# The two nodes reach each other on loopback.
allow_private_addresses = true
"#;

/// A `guildhall serve` process with its own data directory; killed on drop.
struct ServeProcess {
    name: &'static str,
    child: Child,
    dir: tempfile::TempDir,
    /// The gRPC address it printed (`http://127.0.0.1:PORT`).
    grpc: String,
}

impl ServeProcess {
    /// Starts the binary and waits, at most [`STARTUP`], for its "gRPC:" line.
    fn start(name: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("guildhall.toml");
        std::fs::write(&config, NODE_CONFIG).expect("write config");
        let stderr = File::create(dir.path().join("stderr.log")).expect("stderr log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_guildhall"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info,libp2p=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start guildhall serve");

        // The node prints its banner and its logs on stdout: copy every line to a file (so the
        // pipe never fills) and hand them to this thread until the banner is through.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut log = File::create(dir.path().join("stdout.log")).expect("stdout log");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                let _ = tx.send(line);
            }
        });
        let mut process = Self {
            name,
            child,
            dir,
            grpc: String::new(),
        };
        let deadline = Instant::now() + STARTUP;
        while process.grpc.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("gRPC:") {
                        process.grpc = addr.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "node {name} printed no \"gRPC:\" line within {STARTUP:?} (exited: {:?})\n{}",
                    process.child.try_wait().ok().flatten(),
                    process.logs()
                ),
            }
        }
        process
    }

    /// The last lines of the node's output, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for file in ["stdout.log", "stderr.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            out.push_str(&format!(
                "--- node {} ({}), {file}, last {} lines ---\n{}\n",
                self.name,
                self.grpc,
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` with its output in files under `dir`, killing it after `limit`.
fn run_bounded(mut command: Command, dir: &Path, limit: Duration) -> (Option<ExitStatus>, String) {
    let out_path = dir.join("client.log");
    let out = File::create(&out_path).expect("client log");
    let err = out.try_clone().expect("client log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the Python client");
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait for the Python client") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    (
        status,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
    )
}

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
