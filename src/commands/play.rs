//! `replayscope play`: the headless player. One run plays a source's range into a target —
//! standard output or a file (JSON Lines or text), a new archive, or a Statehouse daemon
//! (applied transaction by transaction, then read back and compared) — at the chosen pace.
//! With `--every` or `--cron` runs repeat until stopped, never overlapping; each run's report
//! is printed, optionally appended to `--reports` (JSON Lines), and counted in `--metrics`.
//! The same player drives the TUI; this file only wires it to targets and a schedule.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use color_eyre::eyre::{Context as _, Result};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::config::{ReplayConfig, resolve_path};
use super::{PlayOutcome, UsageError, open_source_as, parse_expect_hash, player_options, runtime};
use crate::archive::{ArchiveError, Compression, WriterOptions};
use crate::cli::{Dur, PlayArgs, PlayFlags, RemoteArgs, SourceMode};
use crate::event::{Event, ObjectValue, Operation, hex};
use crate::player::{Played, Report, Sink, SinkError, Stats};
use crate::schedule::{Schedule, Scheduler};
use crate::sink::statehouse::{ApplyStats, TargetTxn, Verification, loses_data, verify_target};
use crate::sink::{
    AgentMap, ArchiveSink, OutputFormat, StatehouseSink, StatehouseTarget, StreamSink,
};
use crate::source::Source;
use crate::state::{Entry, KvState, StateKey};

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
    fn kind(&self) -> &'static str {
        match self {
            Target::Stream { path, .. } if path.as_os_str() == "-" => "stdout",
            Target::Stream { .. } => "file",
            Target::Archive { .. } => "archive",
            Target::Statehouse { .. } => "statehouse",
        }
    }

    fn name(&self) -> String {
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
    pub verify_chain: bool,
    pub state_hash: bool,
    pub schedule: Schedule,
    pub max_runs: Option<u64>,
    pub dry_run: bool,
    pub metrics: Option<SocketAddr>,
    pub status_interval: Duration,
    pub quiet: bool,
}

fn usage(message: impl Into<String>) -> color_eyre::Report {
    UsageError(message.into()).into()
}

fn parse_in_config<T: std::str::FromStr>(key: &str, v: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>()
        .map_err(|e| usage(format!("--config: {key} = {v:?}: {e}")))
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
        let opt_parse = |key: &str, v: &Option<String>| -> Result<Option<crate::event::Position>> {
            v.as_deref().map(|v| parse_in_config(key, v)).transpose()
        };
        let opt_dur = |key: &str, v: &Option<String>| -> Result<Option<Dur>> {
            v.as_deref().map(|v| parse_in_config(key, v)).transpose()
        };
        let flags = PlayFlags {
            pace: a.play.pace.or(c.pace),
            speed: a.play.speed.or(c.speed),
            rate: a.play.rate.or(c.rate),
            from: match a.play.from {
                Some(p) => Some(p),
                None => opt_parse("from", &c.from)?,
            },
            until: match a.play.until {
                Some(p) => Some(p),
                None => opt_parse("until", &c.until)?,
            },
            agent: a.play.agent.clone().or(c.agent.clone()),
            key_prefix: a.play.key_prefix.clone().or(c.key_prefix.clone()),
            max_gap: match a.play.max_gap {
                Some(d) => Some(d),
                None => opt_dur("max-gap", &c.max_gap)?,
            },
            tick: match a.play.tick {
                Some(d) => Some(d),
                None => opt_dur("tick", &c.tick)?,
            },
        };
        let remote = RemoteArgs {
            token: a.remote.token.clone().or(c.token.clone()),
            tls: a.remote.tls || c.tls.unwrap_or(false),
            ca_file: a.remote.ca_file.clone().or(path(&c.ca_file)),
            retries: c
                .retries
                .filter(|_| a.remote.retries == RemoteArgs::DEFAULT_RETRIES)
                .unwrap_or(a.remote.retries),
        };
        let every = match a.every {
            Some(d) => Some(d),
            None => opt_dur("every", &c.every)?,
        };
        let cron = a.cron.clone().or(c.cron.clone());
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
        let keep_offsets = a.keep_offsets || c.keep_offsets.unwrap_or(false);
        let map_items = if a.map_agent.is_empty() {
            c.map_agent.clone().unwrap_or_default()
        } else {
            a.map_agent.clone()
        };
        let map = AgentMap::parse(&map_items).map_err(usage)?;
        let into = a.into.clone().or(c.into.clone());
        let output = a.output.clone().or(path(&c.output));
        let target = match into.as_deref() {
            None | Some("-") => Target::Stream {
                path: output.unwrap_or_else(|| PathBuf::from("-")),
                format: a.format.or(c.format).unwrap_or_default(),
            },
            Some(url) if url.starts_with("statehouse://") => Target::Statehouse {
                url: url.trim_end_matches('/').to_string(),
                map: map.clone(),
                pipeline: a.pipeline.or(c.pipeline).unwrap_or(16).clamp(1, 1024),
                timeout: match a.target_timeout {
                    Some(d) => d.0,
                    None => opt_dur("target-timeout", &c.target_timeout)?
                        .map_or(Duration::from_secs(10), |d| d.0),
                }
                .max(Duration::from_millis(10)),
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
                    resolve_path(&dir, p)
                },
                segment_events: a.archive.segment_events.or(c.segment_events),
                compression: a.archive.compression.or(c.compression).unwrap_or_default(),
                keep_offsets,
            },
        };
        if into.is_some() && (a.output.is_some() || a.format.is_some()) {
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
        if let Target::Archive { path, .. } = &target
            && let (Ok(t), Ok(s)) = (std::fs::canonicalize(path), std::fs::canonicalize(&source))
            && (t == s || t.starts_with(&s))
        {
            return Err(usage(format!(
                "--into {}: that is the source itself; write the copy somewhere else",
                path.display()
            )));
        }
        if keep_offsets {
            if !matches!(target, Target::Archive { .. }) {
                return Err(usage(
                    "--keep-offsets needs an archive target (--into PATH)",
                ));
            }
            if flags.agent.is_some() || flags.key_prefix.is_some() {
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
        let bootstrap = match a.bootstrap.clone().or(path(&c.bootstrap)) {
            Some(p) => {
                let state = load_bootstrap(&p)?;
                Some((p, state))
            }
            None => None,
        };
        let expect_state_hash = match a
            .expect_state_hash
            .as_deref()
            .or(c.expect_state_hash.as_deref())
        {
            Some(h) => Some(crate::event::parse_hash(h).ok_or_else(|| {
                usage(format!(
                    "--expect-state-hash {h:?} is not a 64-digit hex BLAKE3 hash"
                ))
            })?),
            None => None,
        };
        let expect_hash = parse_expect_hash(a.expect_hash.as_deref().or(c.expect_hash.as_deref()))?;
        let metrics = match a.metrics {
            Some(m) => Some(m),
            None => c
                .metrics
                .as_deref()
                .map(|m| parse_in_config::<SocketAddr>("metrics", m))
                .transpose()?,
        };
        Ok(PlayPlan {
            source,
            mode: a.mode.or(c.mode).unwrap_or_default(),
            allow_truncated: a.allow_truncated || c.allow_truncated.unwrap_or(false),
            remote,
            flags,
            target,
            bootstrap,
            node_id: a.node_id.clone().or(c.node_id.clone()),
            report: a.report.clone().or(path(&c.report)),
            reports: a.reports.clone().or(path(&c.reports)),
            expect_hash,
            expect_state_hash,
            verify_chain: a.verify || c.verify.unwrap_or(false) || expect_hash.is_some(),
            state_hash: a.state_hash || c.state_hash.unwrap_or(false),
            schedule,
            max_runs: a.max_runs.or(c.max_runs),
            dry_run: a.dry_run || c.dry_run.unwrap_or(false),
            metrics,
            status_interval: match a.status_interval {
                Some(d) => d.0,
                None => opt_dur("status-interval", &c.status_interval)?
                    .map_or(Duration::from_secs(5), |d| d.0),
            }
            .max(Duration::from_millis(50)),
            quiet: a.quiet || c.quiet.unwrap_or(false),
        })
    }

    /// Whether the run is a plain one-shot play to a stream (progress bar, no status lines).
    fn is_plain(&self) -> bool {
        self.schedule.is_once() && matches!(self.target, Target::Stream { .. })
    }
}

/// `--bootstrap FILE`: `{"NAMESPACE/AGENT": {"key": {…}, …}, …}`.
pub fn load_bootstrap(path: &Path) -> Result<KvState> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("--bootstrap {name}: {e}")))?;
    parse_bootstrap(&text).map_err(|e| usage(format!("--bootstrap {name}: {e}")))
}

/// Parses a bootstrap state (see [`load_bootstrap`]).
pub fn parse_bootstrap(text: &str) -> std::result::Result<KvState, String> {
    let root: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let agents = root
        .as_object()
        .ok_or("expected an object {\"NAMESPACE/AGENT\": {\"key\": {…}}} at the top level")?;
    let mut state = KvState::new();
    for (agent, keys) in agents {
        let (ns, id) = agent
            .split_once('/')
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
            .ok_or_else(|| format!("{agent:?}: expected NAMESPACE/AGENT_ID"))?;
        let keys = keys
            .as_object()
            .ok_or_else(|| format!("{agent}: expected an object of keys"))?;
        let (ns, id): (Arc<str>, Arc<str>) = (Arc::from(ns), Arc::from(id));
        for (key, value) in keys {
            let obj = value
                .as_object()
                .ok_or_else(|| format!("{agent}: key {key:?}: a value must be a JSON object"))?;
            // Check now that it can be stored (protobuf Struct numbers).
            crate::event::object_to_struct(obj, key).map_err(|e| format!("{agent}: {e}"))?;
            state.insert(
                StateKey {
                    namespace: ns.clone(),
                    agent_id: id.clone(),
                    key: Arc::from(key.as_str()),
                },
                Entry {
                    value: ObjectValue::from_object(obj.clone()),
                    version: 0,
                    commit_ts: 0,
                    offset: 0,
                },
            );
        }
    }
    Ok(state)
}

/// The bootstrap state as one transaction per agent (to write into a target).
fn bootstrap_transactions(state: &KvState) -> Vec<Event> {
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

/// Keeps the state a run played to (for the target's verification).
struct CaptureState {
    inner: Box<dyn Sink>,
    state: Arc<Mutex<Option<KvState>>>,
}

impl Sink for CaptureState {
    fn played(&mut self, p: &Played<'_>) -> std::result::Result<(), SinkError> {
        self.inner.played(p)
    }
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), SinkError>> {
        self.inner.poll_ready(cx)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), SinkError>> {
        self.inner.poll_flush(cx)
    }
    fn repositioned(&mut self, next_offset: u64, state: Option<&KvState>) {
        self.inner.repositioned(next_offset, state)
    }
    fn run_ended(&mut self, report: &Report, state: Option<&KvState>) {
        if let (Some(s), Ok(mut slot)) = (state, self.state.lock()) {
            *slot = Some(s.clone());
        }
        self.inner.run_ended(report, state)
    }
    fn idle(&mut self, state: Option<&KvState>) {
        self.inner.idle(state)
    }
    fn close(&mut self) -> std::result::Result<(), SinkError> {
        self.inner.close()
    }
}

/// What a new archive target holds after a run.
#[derive(Debug, Clone, Serialize)]
struct ArchiveWritten {
    path: String,
    events: u64,
    bytes: u64,
    first_offset: u64,
    last_offset: Option<u64>,
    final_hash: String,
}

/// One run's report: the player's, plus where it went and what was checked.
#[derive(Debug, Clone, Serialize)]
struct RunReport {
    run: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    started_at: String,
    ended_at: String,
    mode: String,
    source_type: String,
    target: String,
    target_type: &'static str,
    #[serde(flatten)]
    play: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied_transactions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied_operations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    archive: Option<ArchiveWritten>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<Verification>,
    /// Runs skipped since the previous one because it was still going when they were due.
    skipped_before: u64,
}

/// Counters for `--metrics`.
#[derive(Default)]
struct PlayMetrics {
    labels: String,
    runs_finished: AtomicU64,
    runs_stopped: AtomicU64,
    runs_failed: AtomicU64,
    runs_skipped: AtomicU64,
    run_active: AtomicU64,
    events_before: AtomicU64,
    events_run: AtomicU64,
    applied_before: AtomicU64,
    applied_run: AtomicU64,
    mismatches: AtomicU64,
    progress_ppm: AtomicU64,
    rate_milli: AtomicU64,
    target_rate_milli: AtomicU64,
    lag_us: AtomicU64,
    last_end_s: AtomicU64,
    last_duration_ms: AtomicU64,
}

impl PlayMetrics {
    fn render(&self) -> String {
        use std::fmt::Write as _;
        let l = &self.labels;
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, rows: &[(&str, String)]| {
            let _ = writeln!(out, "# HELP replayscope_play_{name} {help}");
            let _ = writeln!(out, "# TYPE replayscope_play_{name} {kind}");
            for (extra, v) in rows {
                let labels = if extra.is_empty() {
                    format!("{{{l}}}")
                } else {
                    format!("{{{l},{extra}}}")
                };
                let _ = writeln!(out, "replayscope_play_{name}{labels} {v}");
            }
        };
        let get = |a: &AtomicU64| a.load(Relaxed);
        one(
            "runs_total",
            "counter",
            "Runs ended, by outcome.",
            &[
                ("outcome=\"finished\"", get(&self.runs_finished).to_string()),
                ("outcome=\"stopped\"", get(&self.runs_stopped).to_string()),
                ("outcome=\"failed\"", get(&self.runs_failed).to_string()),
            ],
        );
        one(
            "runs_skipped_total",
            "counter",
            "Scheduled runs skipped because the previous run was still going.",
            &[("", get(&self.runs_skipped).to_string())],
        );
        one(
            "run_active",
            "gauge",
            "1 while a run is going.",
            &[("", get(&self.run_active).to_string())],
        );
        one(
            "events_played_total",
            "counter",
            "Events played, all runs.",
            &[(
                "",
                (get(&self.events_before) + get(&self.events_run)).to_string(),
            )],
        );
        one(
            "transactions_applied_total",
            "counter",
            "Transactions committed into a Statehouse target, all runs.",
            &[(
                "",
                (get(&self.applied_before) + get(&self.applied_run)).to_string(),
            )],
        );
        one(
            "state_mismatches_total",
            "counter",
            "Runs whose target state differed from the expected state.",
            &[("", get(&self.mismatches).to_string())],
        );
        one(
            "progress_ratio",
            "gauge",
            "Share of the current (or last) run's range played.",
            &[("", format!("{:.6}", get(&self.progress_ppm) as f64 / 1e6))],
        );
        one(
            "rate_events_per_second",
            "gauge",
            "Achieved rate of the current run.",
            &[("", format!("{:.3}", get(&self.rate_milli) as f64 / 1e3))],
        );
        one(
            "target_rate_events_per_second",
            "gauge",
            "Target rate of the pace (0: as fast as possible).",
            &[(
                "",
                format!("{:.3}", get(&self.target_rate_milli) as f64 / 1e3),
            )],
        );
        one(
            "lag_seconds",
            "gauge",
            "How far behind schedule the last event was played.",
            &[("", format!("{:.6}", get(&self.lag_us) as f64 / 1e6))],
        );
        one(
            "last_run_end_timestamp_seconds",
            "gauge",
            "When the last run ended (Unix time).",
            &[("", get(&self.last_end_s).to_string())],
        );
        one(
            "last_run_duration_seconds",
            "gauge",
            "How long the last run took.",
            &[(
                "",
                format!("{:.3}", get(&self.last_duration_ms) as f64 / 1e3),
            )],
        );
        out
    }

    fn update(&self, s: &Stats, progress: f64, applied: Option<&ApplyStats>) {
        self.events_run.store(s.events_played, Relaxed);
        self.progress_ppm.store((progress * 1e6) as u64, Relaxed);
        self.rate_milli.store((s.rate * 1e3) as u64, Relaxed);
        self.target_rate_milli
            .store((s.target_rate.unwrap_or(0.0) * 1e3) as u64, Relaxed);
        self.lag_us.store(s.lag.as_micros() as u64, Relaxed);
        if let Some(a) = applied {
            self.applied_run.store(a.committed(), Relaxed);
        }
    }
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `play`: check the plan, then run it (once or on its schedule).
pub fn play_cmd(a: PlayArgs) -> Result<()> {
    let plan = PlayPlan::resolve(a)?;
    let rt = runtime()?;
    rt.block_on(execute(plan))
}

/// What a run ended with, for the exit code.
enum RunEnd {
    Ok,
    Interrupted(Option<u64>),
    Failed(color_eyre::Report),
}

async fn execute(plan: PlayPlan) -> Result<()> {
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            super::shutdown_signal().await;
            stop.cancel();
        }
    });
    if plan.dry_run {
        return dry_run(&plan).await;
    }
    let metrics = Arc::new(PlayMetrics {
        labels: format!(
            "node_id=\"{}\",target_type=\"{}\"",
            label_value(plan.node_id.as_deref().unwrap_or("")),
            plan.target.kind()
        ),
        ..PlayMetrics::default()
    });
    if let Some(addr) = plan.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| usage(format!("--metrics {addr}: cannot listen: {e}")))?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
        let m = metrics.clone();
        tokio::spawn(crate::server::metrics::serve_metrics(
            listener,
            Arc::new(move || m.render()),
            stop.clone(),
        ));
    }
    if !plan.schedule.is_once() {
        tracing::info!(
            node_id = plan.node_id.as_deref().unwrap_or(""),
            schedule = %plan.schedule.describe(),
            "replaying {} into {} {}",
            plan.source,
            plan.target.kind(),
            plan.schedule.describe()
        );
    }
    let scheduler = Scheduler::new(plan.schedule.clone(), Utc::now());
    let mut due = scheduler.first();
    let mut runs = 0u64;
    let mut skipped = 0u64;
    let mut last = RunEnd::Ok;
    while let Some(at) = due {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            tracing::info!(
                node_id = plan.node_id.as_deref().unwrap_or(""),
                due = %at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "next run at {}",
                at.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }
        if stop.is_cancelled() {
            break;
        }
        runs += 1;
        last = run_once(&plan, runs, skipped, &stop, &metrics).await;
        skipped = 0;
        if let RunEnd::Failed(e) = &last
            && !plan.schedule.is_once()
        {
            tracing::error!(run = runs, "run {runs} failed: {e:#}");
        }
        if stop.is_cancelled() || plan.max_runs.is_some_and(|m| runs >= m) {
            break;
        }
        let (next, missed) = scheduler.after(at, Utc::now());
        if missed > 0 {
            skipped = missed;
            metrics.runs_skipped.fetch_add(missed, Relaxed);
            tracing::warn!(
                run = runs,
                skipped = missed,
                "skipped {missed} run(s) that were due while run {runs} was still going"
            );
        }
        due = next;
    }
    match last {
        RunEnd::Ok => Ok(()),
        RunEnd::Interrupted(next) => Err(PlayOutcome::Interrupted(next).into()),
        RunEnd::Failed(e) => Err(e),
    }
}

/// Opens the plan's source (blocking work off the runtime's threads).
async fn open_plan_source(plan: &PlayPlan) -> Result<(Arc<dyn Source>, String)> {
    let (text, mode, truncated, remote, agent) = (
        plan.source.clone(),
        plan.mode,
        plan.allow_truncated,
        plan.remote.clone(),
        plan.flags.agent.clone(),
    );
    tokio::task::spawn_blocking(move || {
        open_source_as(&text, mode, truncated, &remote, agent.as_deref())
    })
    .await
    .wrap_err("opening the source")?
}

/// Connects to a Statehouse target and checks that it is healthy.
async fn connect_target(
    plan: &PlayPlan,
    url: &str,
    timeout: Duration,
) -> Result<(StatehouseTarget, String)> {
    let options = super::connect_options(&plan.remote)?;
    let target = StatehouseTarget::connect(url, options, timeout).await?;
    let version = target.check_health().await?;
    Ok((target, version))
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn run_once(
    plan: &PlayPlan,
    run: u64,
    skipped_before: u64,
    stop: &CancellationToken,
    metrics: &Arc<PlayMetrics>,
) -> RunEnd {
    let started_at = now_rfc3339();
    let node = plan.node_id.clone().unwrap_or_default();
    metrics.run_active.store(1, Relaxed);
    metrics.events_run.store(0, Relaxed);
    metrics.applied_run.store(0, Relaxed);
    let result = play_one(plan, run, skipped_before, stop, metrics, started_at.clone()).await;
    metrics.run_active.store(0, Relaxed);
    metrics
        .events_before
        .fetch_add(metrics.events_run.swap(0, Relaxed), Relaxed);
    metrics
        .applied_before
        .fetch_add(metrics.applied_run.swap(0, Relaxed), Relaxed);
    metrics
        .last_end_s
        .store(Utc::now().timestamp().max(0) as u64, Relaxed);
    let (report, end) = match result {
        Ok(r) => r,
        Err(e) => {
            // The run could not start (source, target, range): still a report line.
            metrics.runs_failed.fetch_add(1, Relaxed);
            let line = serde_json::json!({
                "run": run,
                "node_id": plan.node_id,
                "started_at": started_at,
                "ended_at": now_rfc3339(),
                "mode": format!("{:?}", plan.mode).to_lowercase(),
                "target": plan.target.name(),
                "target_type": plan.target.kind(),
                "source": plan.source,
                "outcome": "failed",
                "reason": format!("{e:#}"),
                "skipped_before": skipped_before,
            });
            if let Err(w) = append_report(plan, &line.to_string()) {
                tracing::error!("{w:#}");
            }
            return RunEnd::Failed(e);
        }
    };
    match report.play.outcome.as_str() {
        "finished" => metrics.runs_finished.fetch_add(1, Relaxed),
        "stopped" => metrics.runs_stopped.fetch_add(1, Relaxed),
        _ => metrics.runs_failed.fetch_add(1, Relaxed),
    };
    metrics
        .last_duration_ms
        .store(report.play.duration_ms, Relaxed);
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if plan.is_plain() {
        eprintln!("{json}");
    }
    tracing::info!(
        run,
        node_id = node.as_str(),
        outcome = report.play.outcome.as_str(),
        events = report.play.events_sent,
        duration_ms = report.play.duration_ms,
        rate = format!("{:.0}", report.play.achieved_rate).as_str(),
        next_offset = report.play.next_offset,
        "run {run} {}: {} events in {:.1} s ({:.0} events/s){}",
        report.play.outcome,
        report.play.events_sent,
        report.play.duration_ms as f64 / 1e3,
        report.play.achieved_rate,
        report
            .play
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    if !plan.is_plain() {
        // Headless schedules and targets: the report is one JSON line on stderr.
        eprintln!("{}", serde_json::to_string(&report).unwrap_or_default());
    }
    let mut write_failed = None;
    if let Some(path) = &plan.report
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        write_failed = Some(ArchiveError::io(&path.display().to_string(), e).into());
    }
    if let Err(e) = append_report(plan, &serde_json::to_string(&report).unwrap_or_default()) {
        write_failed = Some(e);
    }
    match (end, write_failed) {
        (RunEnd::Ok, Some(e)) => RunEnd::Failed(e),
        (end, _) => end,
    }
}

fn append_report(plan: &PlayPlan, line: &str) -> Result<()> {
    let Some(path) = &plan.reports else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ArchiveError::io(&format!("--reports {}", path.display()), e))?;
    f.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| ArchiveError::io(&format!("--reports {}", path.display()), e))?;
    Ok(())
}

fn source_type(text: &str, source: &dyn Source) -> String {
    let kind = &source.info().kind;
    if text.starts_with("s3://") {
        "s3 archive".to_string()
    } else if kind == "archive" || kind == "segments" {
        if Path::new(text).is_dir() {
            "segment directory".to_string()
        } else {
            "archive file".to_string()
        }
    } else {
        kind.clone()
    }
}

/// Plays one run; `Err` when it could not start.
async fn play_one(
    plan: &PlayPlan,
    run: u64,
    skipped_before: u64,
    stop: &CancellationToken,
    metrics: &Arc<PlayMetrics>,
    started_at: String,
) -> Result<(RunReport, RunEnd)> {
    let (source, source_kind) = open_plan_source(plan).await?;
    let source_type = source_type(&plan.source, source.as_ref());
    let info = source.info().clone();
    let mut options = player_options(&plan.flags, source.as_ref())?;
    let check_target = matches!(plan.target, Target::Statehouse { verify: true, .. });
    options.track_state = plan.state_hash || plan.expect_state_hash.is_some() || check_target;
    options.verify_chain = plan.verify_chain;
    options.exit_when_done = true;
    if let Some((_, state)) = &plan.bootstrap {
        options.bootstrap = state.clone();
        options.track_state = true;
    }
    let from = options.from.or(info.first_offset).unwrap_or(0);
    let until = options.until.or(info.last_offset);
    let total = until.map_or(0, |u| (u + 1).saturating_sub(from));
    let agents: Vec<(String, String)> = match &options.filter.agent {
        Some(a) => vec![a.clone()],
        None => info
            .channels
            .iter()
            .map(|(n, a, _)| (n.clone(), a.clone()))
            .collect(),
    };

    let mut archive_result = None;
    let mut target_conn = None;
    let mut applied = None;
    let inner: Box<dyn Sink> = match &plan.target {
        Target::Stream { path, format } => {
            let name = path.display().to_string();
            let out: Box<dyn Write + Send> = if name == "-" {
                Box::new(std::io::stdout())
            } else {
                Box::new(std::fs::File::create(path).map_err(|e| ArchiveError::io(&name, e))?)
            };
            Box::new(StreamSink::new(out, *format, &name))
        }
        Target::Archive {
            path,
            segment_events,
            compression,
            keep_offsets,
        } => {
            let (sink, result) = ArchiveSink::create(
                path,
                *segment_events,
                WriterOptions {
                    compression: *compression,
                    ..WriterOptions::default()
                },
                *keep_offsets,
            )?;
            archive_result = Some(result);
            Box::new(sink)
        }
        Target::Statehouse {
            url,
            map,
            pipeline,
            timeout,
            ..
        } => {
            let unknown = map.unknown(&info.channels);
            if !unknown.is_empty() {
                return Err(usage(format!(
                    "--map-agent: {} has no agent {}",
                    info.name,
                    unknown.join(", ")
                )));
            }
            let (target, version) = connect_target(plan, url, *timeout).await?;
            tracing::info!(target = %url, version = %version, "Statehouse target is healthy (version {version})");
            if let Some((path, state)) = &plan.bootstrap {
                for e in bootstrap_transactions(state) {
                    let (namespace, agent_id) = map.map(&e.namespace, &e.agent_id);
                    let txn = TargetTxn {
                        event: Arc::new(e),
                        namespace,
                        agent_id,
                    };
                    target.apply(&txn).await.map_err(|e| {
                        color_eyre::Report::new(e).wrap_err(format!(
                            "writing --bootstrap {} into the target",
                            path.display()
                        ))
                    })?;
                }
            }
            let (sink, stats) = StatehouseSink::new(target.clone(), map.clone(), *pipeline);
            target_conn = Some(target);
            applied = Some(stats);
            Box::new(sink)
        }
    };
    let captured = Arc::new(Mutex::new(None));
    let sink = CaptureState {
        inner,
        state: captured.clone(),
    };

    tracing::info!(
        run,
        node_id = plan.node_id.as_deref().unwrap_or(""),
        mode = format!("{:?}", plan.mode).to_lowercase().as_str(),
        source_type = source_type.as_str(),
        source = %info.name,
        target = %plan.target.name(),
        events = total,
        "run {run}: {source_type} {} ({total} events from offset {from}) into {} {}",
        info.name,
        plan.target.kind(),
        plan.target.name()
    );
    let show_progress = plan.is_plain() && !plan.quiet && std::io::stderr().is_terminal();
    let handle = crate::player::spawn(source.clone(), options, Box::new(sink))?;
    let commander = handle.commander();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = tokio::spawn({
        let (stop, flag) = (stop.clone(), interrupted.clone());
        async move {
            stop.cancelled().await;
            flag.store(true, Relaxed);
            tracing::warn!("stopping after the current transaction");
            let _ = commander.send(crate::player::Command::Stop);
        }
    });
    let progress = show_progress.then(|| super::spawn_progress(handle.stats(), from, total));
    let status = tokio::spawn(status_lines(
        handle.stats(),
        plan.status_interval,
        run,
        plan.node_id.clone().unwrap_or_default(),
        from,
        total,
        metrics.clone(),
        applied.clone(),
        !plan.is_plain(),
    ));
    let joined = handle.join().await;
    stopper.abort();
    status.abort();
    if let Some(p) = progress {
        p.abort();
    }
    let mut play = joined?;
    let was_interrupted = interrupted.load(Relaxed);

    // What the target says.
    let mut failure: Option<color_eyre::Report> = None;
    let mut archive = None;
    if let Some(result) = archive_result {
        match result.lock().ok().and_then(|mut r| r.take()) {
            Some(Ok(summaries)) => {
                let events = summaries.iter().map(|s| s.events).sum();
                let bytes = summaries.iter().map(|s| s.bytes).sum();
                archive = summaries.last().map(|l| ArchiveWritten {
                    path: plan.target.name(),
                    events,
                    bytes,
                    first_offset: summaries[0].first_offset,
                    last_offset: l.last_offset,
                    final_hash: hex(&l.final_hash),
                });
            }
            Some(Err(e)) => {
                play.outcome = "failed".into();
                play.reason = Some(format!("closing the archive failed: {e}"));
                failure = Some(PlayOutcome::Failed(format!("{}: {e}", plan.target.name())).into());
            }
            None => {}
        }
    }
    let mut verification = None;
    if let (Some(target), true) = (&target_conn, check_target)
        && play.outcome != "failed"
    {
        let expected = captured
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_default();
        let lossy = expected
            .iter()
            .filter(|(k, e)| e.value.object(&k.key).is_ok_and(loses_data))
            .count();
        if lossy > 0 {
            tracing::warn!(
                keys = lossy,
                "{lossy} value(s) hold objects or lists inside a list, which Statehouse stores as null; they are compared as the daemon keeps them"
            );
        }
        let map = match &plan.target {
            Target::Statehouse { map, .. } => map.clone(),
            _ => AgentMap::default(),
        };
        match verify_target(target, &expected, &agents, &map, 5).await {
            Ok(v) => {
                if !v.matched {
                    metrics.mismatches.fetch_add(1, Relaxed);
                    let message = format!(
                        "{}: the target's state differs from the replayed state after offset {}: {}",
                        target.url(),
                        play.last_offset.map_or("-".to_string(), |o| o.to_string()),
                        v.describe()
                    );
                    play.outcome = "failed".into();
                    play.reason = Some("state mismatch".into());
                    failure = Some(PlayOutcome::Integrity(message).into());
                } else {
                    tracing::info!(
                        agents = v.agents,
                        keys = v.keys_expected,
                        "the target's state matches the replayed state ({} keys in {} agents)",
                        v.keys_expected,
                        v.agents
                    );
                }
                verification = Some(v);
            }
            Err(e) => {
                play.outcome = "failed".into();
                play.reason = Some(format!("reading the target's state back failed: {e}"));
                failure = Some(color_eyre::Report::new(e).wrap_err("verifying the target"));
            }
        }
    }
    let hash_checks = [
        (
            "hash chain",
            "through",
            plan.expect_hash,
            play.final_hash.clone(),
        ),
        (
            "state hash",
            "after",
            plan.expect_state_hash,
            play.state_hash.clone(),
        ),
    ];
    for (what, word, expected, got) in hash_checks {
        let Some(expected) = expected else { continue };
        let got = got.unwrap_or_default();
        if failure.is_some() || play.outcome != "finished" || got == hex(&expected) {
            continue;
        }
        play.outcome = "failed".into();
        play.reason = Some(format!("{what} mismatch"));
        failure = Some(
            PlayOutcome::Integrity(format!(
                "{}: {what} mismatch {word} offset {}: expected {}, got {}",
                play.source,
                play.last_offset
                    .map_or_else(|| "-".to_string(), |o| o.to_string()),
                hex(&expected),
                if got.is_empty() { "(unknown)" } else { &got }
            ))
            .into(),
        );
    }
    let end = if let Some(f) = failure {
        RunEnd::Failed(f)
    } else if was_interrupted {
        RunEnd::Interrupted(play.next_offset)
    } else if play.output_closed {
        RunEnd::Ok // the reader went away (`play | head`)
    } else if play.outcome == "failed" {
        let reason = play.reason.clone().unwrap_or_default();
        RunEnd::Failed(
            if play.integrity_failure {
                PlayOutcome::Integrity(reason)
            } else {
                PlayOutcome::Failed(reason)
            }
            .into(),
        )
    } else {
        RunEnd::Ok
    };
    let report = RunReport {
        run,
        node_id: plan.node_id.clone(),
        started_at,
        ended_at: now_rfc3339(),
        mode: source_kind,
        source_type,
        target: plan.target.name(),
        target_type: plan.target.kind(),
        applied_transactions: applied.as_ref().map(|a| a.committed()),
        applied_operations: applied.as_ref().map(|a| a.operations()),
        play,
        archive,
        verification,
        skipped_before,
    };
    Ok((report, end))
}

/// Logs a status line every `interval` (when `log` is on) and keeps the metrics current.
#[allow(clippy::too_many_arguments)]
async fn status_lines(
    mut stats: tokio::sync::watch::Receiver<Stats>,
    interval: Duration,
    run: u64,
    node_id: String,
    from: u64,
    total: u64,
    metrics: Arc<PlayMetrics>,
    applied: Option<Arc<ApplyStats>>,
    log: bool,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let progress = |s: &Stats| {
        if total == 0 {
            0.0
        } else {
            (s.next_offset.saturating_sub(from) as f64 / total as f64).min(1.0)
        }
    };
    loop {
        tokio::select! {
            changed = stats.changed() => {
                if changed.is_err() {
                    return;
                }
                let s = stats.borrow_and_update().clone();
                metrics.update(&s, progress(&s), applied.as_deref());
            }
            _ = tick.tick() => {
                if !log {
                    continue;
                }
                let s = stats.borrow().clone();
                let p = progress(&s);
                let target_rate = s
                    .target_rate
                    .map_or("as fast as possible".to_string(), |r| format!("target {r:.0}/s"));
                let applied_txns = applied.as_ref().map(|a| a.committed());
                // The stats are published every 100 ms; a commit implies its event was played.
                let done = s
                    .next_offset
                    .saturating_sub(from)
                    .max(applied_txns.unwrap_or(0))
                    .min(total.max(1));
                let p = if total == 0 { p } else { p.max(done as f64 / total as f64) };
                tracing::info!(
                    run,
                    node_id = node_id.as_str(),
                    state = s.state.label(),
                    progress = format!("{:.1}", p * 100.0).as_str(),
                    events = s.events_played,
                    rate = format!("{:.0}", s.rate).as_str(),
                    target_rate = s.target_rate.unwrap_or(0.0),
                    lag_ms = s.lag.as_secs_f64() * 1e3,
                    applied = applied_txns,
                    "run {run}: {:.1}% ({done} of {total} events), {:.0} events/s ({target_rate}), lag {:.0} ms, {}{}",
                    p * 100.0,
                    s.rate,
                    s.lag.as_secs_f64() * 1e3,
                    s.state.label(),
                    applied_txns.map(|a| format!(", {a} committed")).unwrap_or_default()
                );
            }
        }
    }
}

/// `--dry-run`: every check a run would make, nothing written.
async fn dry_run(plan: &PlayPlan) -> Result<()> {
    let mut out = std::io::stdout();
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    say(format!("plan: {}", plan.schedule.describe()));
    let (source, kind) = open_plan_source(plan).await?;
    let info = source.info().clone();
    say(format!(
        "source: ok: {} {} ({} events, offsets {}..={})",
        source_type(&plan.source, source.as_ref()),
        info.name,
        info.events.map_or("?".into(), |e| e.to_string()),
        info.first_offset.map_or("-".into(), |o| o.to_string()),
        info.last_offset.map_or("-".into(), |o| o.to_string()),
    ));
    let options = player_options(&plan.flags, source.as_ref())?;
    let from = options.from.or(info.first_offset).unwrap_or(0);
    let until = options.until.or(info.last_offset);
    match (info.last_offset, until) {
        (None, _) => return Err(usage(format!("{}: the source is empty", info.name))),
        (_, Some(u)) if u < from => {
            return Err(usage(format!(
                "{}: the range is empty: --until resolves to offset {u}, before --from offset {from}",
                info.name
            )));
        }
        _ => {}
    }
    // Read the first event of the range: the data is there and decodes.
    let window = crate::flow::CreditWindow::new(1 << 20);
    let mut stream = source.open(
        crate::source::StreamRequest {
            from,
            until: Some(from),
            filter: options.filter.clone(),
            batch_events: 1,
            verify_chain: plan.verify_chain,
        },
        window,
    )?;
    match stream.recv().await {
        Some(Ok(batch)) => {
            let first = batch.events.first().map(|(e, _)| e.offset);
            say(format!(
                "range: ok: offsets {from}..={} ({} events{}); first event readable{}",
                until.map_or("-".into(), |u| u.to_string()),
                until.map_or(0, |u| u + 1 - from),
                if options.filter.agent.is_some() || options.filter.key_prefix.is_some() {
                    " before the filter"
                } else {
                    ""
                },
                first.map(|o| format!(" (offset {o})")).unwrap_or_default()
            ));
        }
        Some(Err(e)) => return Err(color_eyre::Report::new(e).wrap_err("reading the first event")),
        None => say(format!(
            "range: ok: offsets {from}..={}; no event there passes the filter",
            until.map_or("-".into(), |u| u.to_string())
        )),
    }
    drop(stream);
    match &plan.target {
        Target::Stream { path, .. } => {
            if path.as_os_str() != "-" {
                check_parent(path)?;
            }
            say(format!(
                "target: ok: {} {}",
                plan.target.kind(),
                plan.target.name()
            ));
        }
        Target::Archive { path, .. } => {
            check_parent(path)?;
            say(format!("target: ok: new archive at {}", path.display()));
        }
        Target::Statehouse {
            url, map, timeout, ..
        } => {
            let unknown = map.unknown(&info.channels);
            if !unknown.is_empty() {
                return Err(usage(format!(
                    "--map-agent: {} has no agent {}",
                    info.name,
                    unknown.join(", ")
                )));
            }
            let (_, version) = connect_target(plan, url, *timeout).await?;
            say(format!(
                "target: ok: Statehouse {version} at {url}, healthy"
            ));
        }
    }
    if let Some((path, state)) = &plan.bootstrap {
        say(format!(
            "bootstrap: ok: {} keys from {}",
            state.len(),
            path.display()
        ));
    }
    if !plan.schedule.is_once() {
        let s = Scheduler::new(plan.schedule.clone(), Utc::now());
        let mut times: Vec<DateTime<Utc>> = Vec::new();
        let mut next = s.first();
        while let Some(t) = next {
            times.push(t);
            if times.len() == 3 {
                break;
            }
            next = s.after(t, t).0;
        }
        say(format!(
            "schedule: next runs at {}",
            times
                .iter()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    say(format!("dry run: ok ({kind} source); nothing was written"));
    Ok(())
}

/// The directory a new file would go into exists and is writable.
fn check_parent(path: &Path) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = parent.join(format!(".replayscope-dry-run-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| ArchiveError::io(&path.display().to_string(), e))
        .wrap_err("the target cannot be written")?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
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

    #[test]
    fn metrics_render_with_labels() {
        let m = PlayMetrics {
            labels: "node_id=\"n1\",target_type=\"statehouse\"".into(),
            ..PlayMetrics::default()
        };
        m.runs_finished.store(2, Relaxed);
        m.progress_ppm.store(500_000, Relaxed);
        let text = m.render();
        assert!(text.contains(
            "replayscope_play_runs_total{node_id=\"n1\",target_type=\"statehouse\",outcome=\"finished\"} 2"
        ), "{text}");
        assert!(text.contains("replayscope_play_progress_ratio{node_id=\"n1\",target_type=\"statehouse\"} 0.500000"), "{text}");
    }
}
