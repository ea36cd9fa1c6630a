//! What one `play` invocation does, resolved once from the flags and `--config` (flags > file >
//! defaults, [`crate::app::config::layer`]) and checked as a whole before anything runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use color_eyre::eyre::Result;

use crate::app::config::defaults;
use crate::app::config::layer::{layer, layer_opt, layer_parsed, layer_switch};
use crate::app::config::{ReplayConfig, resolve_path};
use crate::app::exit::UsageError;
use crate::app::{parse_expect_hash, parse_hash_flag};
use crate::archive::Compression;
use crate::cli::{PlayArgs, PlayFlags, RemoteArgs};
use crate::event::{Event, Operation};
use crate::schedule::Schedule;
use crate::sink::{AgentMap, OutputFormat};
use crate::source::ChainCheck;
use crate::source::open::SourceMode;
use crate::state::KvState;

/// Where a run's events go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A byte stream: standard output (`-`) or a file.
    Stream { path: PathBuf, format: OutputFormat },
    /// A new archive (a file, or a segment directory with `segment_events`).
    Archive {
        path: PathBuf,
        segment_events: Option<u64>,
        compression: Compression,
        /// State snapshots written into it.
        snapshots: Option<crate::archive::snapshot::SnapshotPolicy>,
        keep_offsets: bool,
    },
    /// A Statehouse daemon.
    Statehouse {
        url: String,
        map: AgentMap,
        pipeline: usize,
        timeout: Duration,
        verify: bool,
    },
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Stream { path, .. } if path.as_os_str() == "-" => "stdout",
            Target::Stream { .. } => "file",
            Target::Archive { .. } => "archive",
            Target::Statehouse { .. } => "statehouse",
        }
    }

    pub fn name(&self) -> String {
        match self {
            Target::Stream { path, .. } | Target::Archive { path, .. } => {
                path.display().to_string()
            }
            Target::Statehouse { url, .. } => url.clone(),
        }
    }
}

/// Everything a `play` invocation does, from flags and `--config`.
#[derive(Debug, Clone)]
pub struct PlayPlan {
    pub source: String,
    pub mode: SourceMode,
    pub allow_truncated: bool,
    pub remote: RemoteArgs,
    pub flags: PlayFlags,
    pub target: Target,
    pub bootstrap: Option<(PathBuf, KvState)>,
    pub node_id: Option<String>,
    pub report: Option<PathBuf>,
    pub reports: Option<PathBuf>,
    pub expect_hash: Option<[u8; 32]>,
    pub expect_state_hash: Option<[u8; 32]>,
    pub chain: ChainCheck,
    pub state_hash: bool,
    pub schedule: Schedule,
    pub max_runs: Option<u64>,
    pub dry_run: bool,
    pub metrics: Option<SocketAddr>,
    pub status_interval: Duration,
    pub quiet: bool,
}

pub(crate) fn usage(message: impl Into<String>) -> color_eyre::Report {
    UsageError(message.into()).into()
}

impl PlayPlan {
    /// Merges the command line over the configuration file and checks the combination.
    pub fn resolve(a: PlayArgs) -> Result<PlayPlan> {
        let (c, dir) = match &a.config {
            Some(p) => ReplayConfig::load(p).map_err(|e| usage(e.to_string()))?,
            None => (ReplayConfig::default(), PathBuf::from(".")),
        };
        let path = |p: &Option<String>| p.as_deref().map(|p| resolve_path(&dir, p));
        let source = match (&a.source, &c.source) {
            (Some(s), _) => s.to_string_lossy().into_owned(),
            (None, Some(s)) => resolve_path(&dir, s).to_string_lossy().into_owned(),
            (None, None) => {
                return Err(usage(
                    "no source: give SOURCE (a path or URL) or `source` in --config",
                ));
            }
        };
        let flags = PlayFlags {
            pace: layer_opt(a.play.pace, c.pace),
            speed: layer_opt(a.play.speed, c.speed),
            rate: layer_opt(a.play.rate, c.rate),
            from: layer_parsed(a.play.from.clone(), "from", c.from.as_deref())?,
            until: layer_parsed(a.play.until.clone(), "until", c.until.as_deref())?,
            agent: if a.play.agent.is_empty() {
                c.agent.clone().into_iter().collect()
            } else {
                a.play.agent.clone()
            },
            follow: a.play.follow.clone(),
            key_prefix: layer_opt(a.play.key_prefix.clone(), c.key_prefix.clone()),
            max_gap: layer_parsed(a.play.max_gap, "max-gap", c.max_gap.as_deref())?,
            tick: layer_parsed(a.play.tick, "tick", c.tick.as_deref())?,
            time_field: layer_opt(a.play.time_field.clone(), c.time_field.clone()),
            markers: a.play.markers.clone(),
            pause_at_markers: a.play.pause_at_markers,
            marker_hold: a.play.marker_hold,
            loop_passes: a.play.loop_passes,
        };
        let remote = RemoteArgs {
            token: layer_opt(a.remote.token.clone(), c.token.clone()),
            tls: layer_switch(a.remote.tls, c.tls),
            ca_file: layer_opt(a.remote.ca_file.clone(), path(&c.ca_file)),
            retries: Some(layer(a.remote.retries, c.retries, defaults::RETRIES)),
        };
        let every = layer_parsed(a.every, "every", c.every.as_deref())?;
        let cron = layer_opt(a.cron.clone(), c.cron.clone());
        let schedule = match (every, cron) {
            (Some(_), Some(_)) => {
                return Err(usage("--every and --cron cannot be used together"));
            }
            (Some(d), None) if d.0.is_zero() => {
                return Err(usage("--every must be longer than 0"));
            }
            (Some(d), None) => Schedule::Every(d.0),
            (None, Some(expr)) => Schedule::Cron(expr.parse().map_err(usage)?),
            (None, None) => Schedule::Once,
        };
        let keep_offsets = layer_switch(a.keep_offsets, c.keep_offsets);
        let map_items = if a.map_agent.is_empty() {
            c.map_agent.clone().unwrap_or_default()
        } else {
            a.map_agent.clone()
        };
        let map = AgentMap::parse(&map_items).map_err(usage)?;
        let into = layer_opt(a.into.clone(), c.into.clone());
        let target = plan_target(&a, &c, &dir, into.as_deref(), map.clone(), keep_offsets)?;
        check_combination(
            &a,
            &flags,
            &target,
            &source,
            keep_offsets,
            &map,
            into.is_some(),
        )?;
        let bootstrap = match layer_opt(a.bootstrap.clone(), path(&c.bootstrap)) {
            Some(p) => {
                let state = load_bootstrap(&p)?;
                Some((p, state))
            }
            None => None,
        };
        let expect_state_hash = parse_hash_flag(
            "--expect-state-hash",
            layer_opt(
                a.expect_state_hash.as_deref(),
                c.expect_state_hash.as_deref(),
            ),
        )?;
        let expect_hash = parse_expect_hash(layer_opt(
            a.expect_hash.as_deref(),
            c.expect_hash.as_deref(),
        ))?;
        Ok(PlayPlan {
            source,
            mode: layer(a.mode, c.mode, Default::default()).into(),
            allow_truncated: layer_switch(a.allow_truncated, c.allow_truncated),
            remote,
            flags,
            target,
            bootstrap,
            node_id: layer_opt(a.node_id.clone(), c.node_id.clone()),
            report: layer_opt(a.report.clone(), path(&c.report)),
            reports: layer_opt(a.reports.clone(), path(&c.reports)),
            expect_hash,
            expect_state_hash,
            chain: ChainCheck::from_no_verify(a.chain.no_verify || c.verify == Some(false)),
            state_hash: layer_switch(a.state_hash, c.state_hash),
            schedule,
            max_runs: layer_opt(a.max_runs, c.max_runs),
            dry_run: layer_switch(a.dry_run, c.dry_run),
            metrics: layer_parsed::<SocketAddr>(a.metrics, "metrics", c.metrics.as_deref())?,
            status_interval: layer_parsed(
                a.status_interval,
                "status-interval",
                c.status_interval.as_deref(),
            )?
            .map_or(defaults::STATUS_INTERVAL, |d| d.0)
            .max(defaults::STATUS_INTERVAL_MIN),
            quiet: layer_switch(a.quiet, c.quiet),
        })
    }

    /// Whether the run is a plain one-shot play to a stream (progress bar, no status lines).
    pub fn is_plain(&self) -> bool {
        self.schedule.is_once() && matches!(self.target, Target::Stream { .. })
    }
}

/// Where the events go: `--into` (an archive path or statehouse://), else the stream output.
fn plan_target(
    a: &PlayArgs,
    c: &ReplayConfig,
    dir: &Path,
    into: Option<&str>,
    map: AgentMap,
    keep_offsets: bool,
) -> Result<Target> {
    Ok(match into {
        None | Some("-") => Target::Stream {
            path: layer_opt(
                a.output.clone(),
                c.output.as_deref().map(|p| resolve_path(dir, p)),
            )
            .unwrap_or_else(|| PathBuf::from("-")),
            format: OutputFormat::from(layer(a.format, c.format, Default::default())),
        },
        Some(url) if url.starts_with("statehouse://") => Target::Statehouse {
            url: {
                crate::source::open::check_endpoint(url)
                    .map_err(|e| usage(format!("--into {e}")))?;
                url.trim_end_matches('/').to_string()
            },
            map,
            pipeline: layer(a.pipeline, c.pipeline, defaults::PIPELINE)
                .clamp(1, defaults::PIPELINE_MAX),
            timeout: layer_parsed(
                a.target_timeout,
                "target-timeout",
                c.target_timeout.as_deref(),
            )?
            .map_or(defaults::TARGET_TIMEOUT, |d| d.0)
            .max(defaults::TARGET_TIMEOUT_MIN),
            verify: !a.no_verify_target && c.verify_target.unwrap_or(true),
        },
        Some(url) if url.contains("://") => {
            return Err(usage(format!(
                "--into {url}: a target is statehouse://host:port or an archive path \
                 (replayscope:// and grpc:// endpoints are read-only)"
            )));
        }
        Some(p) => Target::Archive {
            path: if a.into.is_some() {
                PathBuf::from(p)
            } else {
                resolve_path(dir, p)
            },
            segment_events: layer_opt(a.archive.segment_events, c.segment_events),
            compression: Compression::from(layer(
                a.archive.compression,
                c.compression,
                Default::default(),
            )),
            snapshots: crate::app::writer_options(&a.archive).snapshots,
            keep_offsets,
        },
    })
}

/// Flags that only make sense together, or not with this target.
fn check_combination(
    a: &PlayArgs,
    flags: &PlayFlags,
    target: &Target,
    source: &str,
    keep_offsets: bool,
    map: &AgentMap,
    has_into: bool,
) -> Result<()> {
    if has_into && (a.output.is_some() || a.format.is_some()) {
        return Err(usage(
            "--output and --format are for the stream output; with --into the events go \
             to the target",
        ));
    }
    if !matches!(target, Target::Archive { .. })
        && (a.archive.compression.is_some() || a.archive.segment_events.is_some())
    {
        return Err(usage(
            "--compression and --segment-events are for an archive target (--into PATH)",
        ));
    }
    if let Target::Archive { path, .. } = target
        && let (Ok(t), Ok(s)) = (std::fs::canonicalize(path), std::fs::canonicalize(source))
        && (t == s || t.starts_with(&s))
    {
        return Err(usage(format!(
            "--into {}: that is the source itself; write the copy somewhere else",
            path.display()
        )));
    }
    if let Target::Archive { path, .. } = target {
        crate::app::output::check_overwrite(path, a.archive.force, "--into")?;
    }
    if keep_offsets {
        if !matches!(target, Target::Archive { .. }) {
            return Err(usage(
                "--keep-offsets needs an archive target (--into PATH)",
            ));
        }
        if !flags.agent.is_empty() || flags.key_prefix.is_some() {
            return Err(usage(
                "--keep-offsets cannot be used with --agent or --key-prefix: a filtered \
                 range has gaps and an archive's offsets are contiguous",
            ));
        }
    }
    if !map.is_empty() && !matches!(target, Target::Statehouse { .. }) {
        return Err(usage(
            "--map-agent needs a Statehouse target (--into statehouse://…)",
        ));
    }
    Ok(())
}

/// `--bootstrap FILE`: `{"NAMESPACE/AGENT": {"key": {…}, …}, …}`.
pub fn load_bootstrap(path: &Path) -> Result<KvState> {
    let name = path.display().to_string();
    let text = crate::archive::storage::read_regular_text(path)
        .map_err(|e| usage(format!("--bootstrap {name}: {e}")))?;
    parse_bootstrap(&text).map_err(|e| usage(format!("--bootstrap {name}: {e}")))
}

/// Parses a bootstrap state (see [`load_bootstrap`]).
pub fn parse_bootstrap(text: &str) -> std::result::Result<KvState, String> {
    KvState::from_bootstrap_json(text)
}

/// The bootstrap state as one transaction per agent (to write into a target).
pub fn bootstrap_transactions(state: &KvState) -> Vec<Event> {
    let mut by_agent: Vec<Event> = Vec::new();
    for (k, entry) in state.iter() {
        let same = by_agent
            .last()
            .is_some_and(|e| e.namespace == k.namespace && e.agent_id == k.agent_id);
        if !same {
            by_agent.push(Event {
                offset: 0,
                txn_id: format!("bootstrap {}/{}", k.namespace, k.agent_id),
                commit_ts: 0,
                commit_time_ns: None,
                namespace: k.namespace.clone(),
                agent_id: k.agent_id.clone(),
                operations: Vec::new(),
            });
        }
        if let Some(e) = by_agent.last_mut() {
            e.operations.push(Operation {
                key: k.key.clone(),
                value: Some(entry.value.clone()),
                version: 0,
            });
        }
    }
    by_agent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_parses_agents_and_rejects_non_objects() {
        let s = parse_bootstrap(
            r#"{"prod/a": {"k1": {"n": 1}, "k2": {}}, "prod/b": {"x": {"s": "v"}}}"#,
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        let txns = bootstrap_transactions(&s);
        assert_eq!(txns.len(), 2);
        assert_eq!(txns[0].operations.len(), 2);
        assert_eq!(&*txns[1].agent_id, "b");
        for (bad, says) in [
            ("[]", "top level"),
            (r#"{"prod": {}}"#, "NAMESPACE/AGENT_ID"),
            (r#"{"prod/a": {"k": 5}}"#, "JSON object"),
            (r#"{"prod/a": {"k": {"big": 9007199254740993}}}"#, "2^53"),
            ("{", "not valid JSON"),
        ] {
            let e = parse_bootstrap(bad).err().unwrap();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
