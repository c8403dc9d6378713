//! A load generator for any guildhall node, run as its own process over the network, so that
//! what it measures is the node and not a client sharing its runtime:
//!
//! ```sh
//! rm -rf load-data && cargo run --release -- serve --config examples/load/load.toml   # the node
//! cargo run --release --example load -- --addr http://127.0.0.1:7400 \
//!     --senders 16 --subscribers 100 --duration 15 --pid "$(pgrep -xn guildhall)" --data-dir load-data
//! ```
//!
//! It registers fresh users, makes a guild, joins them all to it, opens `--subscribers` event
//! streams over `--connections` HTTP/2 connections, then has `--senders` users send (each with one
//! `SendMessage` outstanding, or at `--rate` per second) for `--duration` seconds or `--messages`
//! in all, and waits until every subscriber has every message. It prints one JSON object on stdout
//! (messages/s acknowledged, send latency, send-to-delivery latency at the farthest subscriber,
//! the node's CPU per message and peak memory with `--pid`, bytes on disk per message with
//! `--data-dir`) and notes on stderr. The node must have its rate limits off and registration open:
//! `examples/load/load.toml` is such a configuration, and docs/BENCHMARKS.md explains it.
//!
//! The run itself is in `run.rs` and `measure.rs`; `tests/load_program.rs` runs them too.

mod measure;
mod run;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// The command line; see the crate docs above for what each part of a run does.
#[derive(Debug, Parser)]
#[command(about = "Load generator for a guildhall node: prints one JSON object of measurements")]
struct Args {
    /// The node's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:7400")]
    addr: String,
    /// Extra CA certificate (PEM) for an https:// node with a private certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Users sending at once, each with one SendMessage outstanding.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Users holding a SubscribeEvents stream in the guild.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// HTTP/2 connections that senders and subscribers share, round robin.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Seconds to send for (ignored with --messages).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Send exactly this many messages in all, instead of for --duration.
    #[arg(long)]
    messages: Option<u64>,
    /// Messages per second per sender (default: as fast as the node acknowledges).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to wait, after the last send, for every subscriber to see every message.
    #[arg(long, default_value_t = 60.0)]
    drain_timeout: f64,
    /// The node's process id: report its CPU time per message and peak memory (/proc/PID).
    #[arg(long)]
    pid: Option<u32>,
    /// The node's data directory: report bytes on disk per message.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Registration token for a node with registration = "token" (needs enough uses).
    #[arg(long, default_value = "", env = "GUILDHALL_LOAD_REGISTRATION_TOKEN")]
    registration_token: String,
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("--{flag} must be a non-negative number of seconds"))
}

async fn main_inner(args: Args) -> anyhow::Result<()> {
    let options = run::Options {
        addr: args.addr,
        ca_file: args.ca_file,
        senders: args.senders,
        subscribers: args.subscribers,
        connections: args.connections,
        duration: seconds("duration", args.duration)?,
        messages: args.messages,
        rate: args.rate,
        drain_timeout: seconds("drain-timeout", args.drain_timeout)?,
        pid: args.pid,
        data_dir: args.data_dir,
        registration_token: args.registration_token,
    };
    let report = run::run(&options).await?;
    println!("{report}");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
