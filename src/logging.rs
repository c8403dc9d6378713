//! Where the `guildhall` command's logs go and how they look, and how it prints a fatal error.
//!
//! Logs go to stderr (stdout carries the start banner and client output). The text format has
//! colour only when stderr is a terminal (and `NO_COLOR` is unset), so files and journald get
//! plain lines; the JSON format (`--log-format json`, `GUILDHALL_LOG_FORMAT`, or `log_format` in
//! the config file) is one object per line for log shippers, with the event's fields at the top
//! level beside `timestamp`, `level`, `target` and `message`. `RUST_LOG` filters both (default
//! `info,libp2p=warn`).

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};

/// The filter when `RUST_LOG` is unset: the node's INFO lines, libp2p's warnings.
const DEFAULT_FILTER: &str = "info,libp2p=warn";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?}: must be text or json")),
        }
    }
}

/// Installs the process's log subscriber (once; later calls change nothing).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).try_init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
    };
}

/// An error and its causes on one line, each cause once: many errors already include their
/// cause's text in their own message (`parsing config.toml: <the TOML error>`), so a cause whose
/// text is already there is not repeated.
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Hides(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::other("disk on fire");
        assert_eq!(report(&Repeats(io())), "outer: disk on fire");
        assert_eq!(report(&Hides(io())), "outer: disk on fire");
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
