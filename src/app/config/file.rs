//! `play --config replay.toml`: the same parameters as the flags, in a file. Keys are the
//! flags' names (kebab-case); unknown keys are rejected, so a typo is an error rather than a
//! silently ignored setting. Paths in the file are relative to the file's directory. Flags
//! given on the command line (or through REPLAYSCOPE_… variables) win over the file.
//!
//! ```toml
//! source = "sessions/2026-11-02.mcap"   # or s3://…, replayscope://…, statehouse://…
//! mode = "auto"                          # archive | statehouse | replayscope | auto
//! into = "statehouse://127.0.0.1:50051"  # or an archive path; absent: output
//! pace = "rate"
//! rate = 500
//! until = "@5000"
//! map-agent = ["prod/planner=staging/planner"]
//! bootstrap = "state.json"
//! node-id = "replayer-1"
//! every = "10m"
//! reports = "runs.jsonl"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{CompressionArg, FormatArg, LogFormat, PaceArg, SourceModeArg};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReplayConfig {
    pub source: Option<String>,
    pub mode: Option<SourceModeArg>,
    pub allow_truncated: Option<bool>,
    pub agent: Option<String>,
    pub key_prefix: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub pace: Option<PaceArg>,
    pub speed: Option<f64>,
    pub rate: Option<f64>,
    pub max_gap: Option<String>,
    pub tick: Option<String>,
    pub into: Option<String>,
    pub output: Option<String>,
    pub format: Option<FormatArg>,
    pub compression: Option<CompressionArg>,
    pub segment_events: Option<u64>,
    pub keep_offsets: Option<bool>,
    pub map_agent: Option<Vec<String>>,
    pub bootstrap: Option<String>,
    pub node_id: Option<String>,
    pub report: Option<String>,
    pub reports: Option<String>,
    pub expect_hash: Option<String>,
    pub expect_state_hash: Option<String>,
    pub verify: Option<bool>,
    pub time_field: Option<String>,
    pub state_hash: Option<bool>,
    pub verify_target: Option<bool>,
    pub every: Option<String>,
    pub cron: Option<String>,
    pub max_runs: Option<u64>,
    pub dry_run: Option<bool>,
    pub metrics: Option<String>,
    pub status_interval: Option<String>,
    pub pipeline: Option<usize>,
    pub target_timeout: Option<String>,
    pub token: Option<String>,
    pub tls: Option<bool>,
    pub ca_file: Option<String>,
    pub retries: Option<u32>,
    pub log_format: Option<LogFormat>,
    pub quiet: Option<bool>,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--config {path}: {message}")]
    Read { path: String, message: String },
    #[error("--config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl ReplayConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<(ReplayConfig, PathBuf), ConfigError> {
        let name = path.display().to_string();
        let text =
            crate::archive::storage::read_regular_text(path).map_err(|e| ConfigError::Read {
                path: name.clone(),
                message: e.to_string(),
            })?;
        let config = ReplayConfig::parse(&text).map_err(|message| ConfigError::Invalid {
            path: name,
            message,
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok((config, dir))
    }

    /// Parses TOML text; the message names the line and the key when something is wrong.
    pub fn parse(text: &str) -> Result<ReplayConfig, String> {
        toml::from_str(text).map_err(|e| {
            // One line: "unknown field `rat`, expected one of … at line 3, column 1".
            let span = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            format!("{}{span}", e.message().trim())
        })
    }

    /// The log format named in a configuration file, if it names one (read before logging
    /// starts; any problem with the file is reported later by `play`).
    pub fn peek_log_format(path: &Path) -> Option<LogFormat> {
        ReplayConfig::load(path).ok()?.0.log_format
    }
}

/// A path from the file, relative to the file's directory (URLs and `-` stay as they are).
pub fn resolve_path(dir: &Path, p: &str) -> PathBuf {
    if p == "-" || p.contains("://") || Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kebab_case_keys() {
        let c = ReplayConfig::parse(
            r#"
            source = "a.mcap"
            mode = "archive"
            into = "statehouse://127.0.0.1:1"
            pace = "rate"
            rate = 250.0
            map-agent = ["a/b=c/d"]
            node-id = "n1"
            every = "10m"
            keep-offsets = true
            log-format = "json"
            "#,
        )
        .unwrap();
        assert_eq!(c.source.as_deref(), Some("a.mcap"));
        assert_eq!(c.mode, Some(SourceModeArg::Archive));
        assert_eq!(c.pace, Some(PaceArg::Rate));
        assert_eq!(c.rate, Some(250.0));
        assert_eq!(c.map_agent.unwrap(), vec!["a/b=c/d".to_string()]);
        assert_eq!(c.node_id.as_deref(), Some("n1"));
        assert_eq!(c.keep_offsets, Some(true));
        assert_eq!(c.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_line() {
        let e = ReplayConfig::parse("source = \"a\"\nrat = 5\n").unwrap_err();
        assert!(e.contains("rat") && e.contains("line 2"), "{e}");
        let e = ReplayConfig::parse("mode = \"sideways\"\n").unwrap_err();
        assert!(e.contains("sideways") && e.contains("line 1"), "{e}");
        let e = ReplayConfig::parse("rate = \"fast\"\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = ReplayConfig::parse("source = \n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn paths_are_relative_to_the_file() {
        let d = Path::new("/etc/replays");
        assert_eq!(
            resolve_path(d, "a.mcap"),
            PathBuf::from("/etc/replays/a.mcap")
        );
        assert_eq!(resolve_path(d, "/x/a.mcap"), PathBuf::from("/x/a.mcap"));
        assert_eq!(resolve_path(d, "s3://b/k"), PathBuf::from("s3://b/k"));
        assert_eq!(resolve_path(d, "-"), PathBuf::from("-"));
    }
}
