//! Logs go to a file (through tracing-appender) or to stderr for headless commands; never to a
//! terminal screen the TUI owns. `--log-format json` writes one JSON object per line (with the
//! event's fields: run, node_id, progress, rate …) for machines.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Keep the guard alive until exit so buffered lines are written.
pub fn init(
    filter: &str,
    log_file: Option<&Path>,
    format: LogFormat,
) -> std::io::Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let (writer, guard) = tracing_appender::non_blocking(file);
            let builder = builder.with_ansi(false).with_writer(writer);
            match format {
                LogFormat::Text => builder.try_init().ok(),
                LogFormat::Json => builder.json().try_init().ok(),
            };
            Ok(Some(guard))
        }
        None => {
            // Colour only on a terminal (and not under NO_COLOR): `serve > log 2>&1` stays text.
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let builder = builder.with_writer(std::io::stderr).with_ansi(ansi);
            match format {
                LogFormat::Text => builder.try_init().ok(),
                LogFormat::Json => builder.json().with_ansi(false).try_init().ok(),
            };
            Ok(None)
        }
    }
}
