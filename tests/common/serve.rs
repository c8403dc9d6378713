//! `guildhall serve` as a child process, and clients run against it with a time limit: for the
//! tests that run a client written in another language (Python, the browser) against real nodes.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print where it listens.
pub const STARTUP: Duration = Duration::from_secs(60);

/// Log lines of each node shown when the client fails.
pub const LOG_TAIL: usize = 60;

/// The config file each node runs with, next to `--data-dir` (a temporary directory). Defaults
/// otherwise, rate limits included. The nodes federate with each other at 127.0.0.1, so a
/// setting that lets a node dial loopback or private addresses for federation belongs here.
pub const NODE_CONFIG: &str = r#"
listen = "127.0.0.1:0"
p2p_listen = "/ip4/127.0.0.1/tcp/0"
# The two nodes reach each other on loopback.
allow_private_addresses = true
"#;

/// A `guildhall serve` process with its own data directory; killed on drop.
pub struct ServeProcess {
    pub name: &'static str,
    pub child: Child,
    pub dir: tempfile::TempDir,
    /// The gRPC address it printed (`http://127.0.0.1:PORT`).
    pub grpc: String,
}

impl ServeProcess {
    /// Starts the binary and waits, at most [`STARTUP`], for its "gRPC:" line.
    pub fn start(name: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("guildhall.toml");
        std::fs::write(&config, NODE_CONFIG).expect("write config");
        let stderr = File::create(dir.path().join("stderr.log")).expect("stderr log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_guildhall"));
        // The node reads every `GUILDHALL_*` variable as a setting and refuses unknown ones; the
        // test's own (`GUILDHALL_CHROMIUM`, …) and the developer's are not for it: the config
        // file says everything.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GUILDHALL_") {
                command.env_remove(name);
            }
        }
        let mut child = command
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
    pub fn logs(&self) -> String {
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
pub fn run_bounded(
    mut command: Command,
    dir: &Path,
    limit: Duration,
) -> (Option<ExitStatus>, String) {
    let out_path = dir.join("client.log");
    let out = File::create(&out_path).expect("client log");
    let err = out.try_clone().expect("client log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the client");
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait for the client") {
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
