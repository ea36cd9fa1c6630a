//! Command line (clap derive). Every flag can also come from a `REPLAYSCOPE_…` environment
//! variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::config::defaults;
use crate::archive::Compression;
use crate::event::Position;
use crate::sink::OutputFormat;
use crate::source::open::SourceMode;

#[derive(Debug, Parser)]
#[command(
    name = "replayscope",
    version,
    about = "Replay inspector for committed-transaction event logs",
    long_about = "replayscope replays committed-transaction logs: MCAP archives (a file, a directory of \
                  segments, or s3://bucket/key-or-prefix) and replay endpoints (replayscope://, \
                  statehouse://, grpc:// to probe). It shows them in an inspector, plays them \
                  headless, serves archives over gRPC, records endpoints, checks integrity and \
                  converts to and from JSON Lines.\n\n\
                  Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 integrity \
                  failure (hash, continuity, order, truncation)."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Open this source in the inspector (the same as `replayscope open SOURCE`).
    pub source: Option<PathBuf>,

    /// Write logs to this file (never to the terminal; the TUI logs to
    /// $TMPDIR/replayscope.log unless told otherwise).
    #[arg(long, global = true, env = "REPLAYSCOPE_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `replayscope=debug` [default:
    /// `info` for serve and for play into a target or on a schedule, `warn` otherwise].
    #[arg(long, global = true, env = "REPLAYSCOPE_LOG")]
    pub log: Option<String>,

    /// Log line format: text for people, json (one object per line) for machines.
    #[arg(long, global = true, value_enum, env = "REPLAYSCOPE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The inspector on the bundled sample archive (a multi-agent session), in realtime.
    Demo(DemoArgs),
    /// The inspector on any source: archive file, segment directory, s3://, replayscope://,
    /// statehouse:// (with --agent) or grpc://.
    Open(OpenArgs),
    /// Generate a deterministic synthetic archive that looks like a real multi-agent session.
    Gen(GenArgs),
    /// Convert JSON Lines (one event per line) into an archive.
    Import(ImportArgs),
    /// Write an archive's events as JSON Lines.
    Export(ExportArgs),
    /// Show what an archive holds: events, bytes, time range, channels, compression, final hash.
    Info(InfoArgs),
    /// Check an archive end to end: CRCs, offsets, commit order, hash chain.
    Verify(VerifyArgs),
    /// Replay a source headless, paced: events to stdout or a file, or --into a Statehouse
    /// daemon (verified) or a new archive; once or on a schedule; a JSON report per run.
    Play(Box<PlayArgs>),
    /// Serve an archive over gRPC: statehouse.v1 Replay, replayscope.v1 Session and Describe,
    /// health and reflection.
    Serve(ServeArgs),
    /// Record what an endpoint (or any source) replays into an archive, written as it arrives.
    Record(RecordArgs),
    /// Every version of one key, with what changed in its value against the version before
    /// (field by field), from any source.
    History(HistoryArgs),
    /// The events of a whole source that mention something: a key, a value, an agent or a
    /// txn_id prefix (substring, or re:REGEX), as JSON Lines.
    Search(SearchArgs),
    /// The state at a point (--at) as JSON that can seed a replay (--bootstrap), or what
    /// changed between two points (--diff), key by key and field by field.
    State(StateArgs),
    /// Rewrite an archive in the current layout (in place, or to a copy with -o): state
    /// snapshots, so that `state --at` and the inspector start from the nearest one, and
    /// per-agent chunks, so that one-agent reads skip the other agents' chunks.
    Index(IndexArgs),
    /// Compare two sources event by event in lockstep (events, the state after each one, or
    /// the stored bytes): exit 0 when they agree, 3 at the first divergence with both sides and
    /// what differs, field by field.
    Diff(DiffArgs),
    /// Markers (named positions with a caption, `mark:NAME` everywhere positions are taken):
    /// add one into an archive, list them, remove one.
    Mark(MarkArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["add", "list", "remove"])))]
pub struct MarkArgs {
    /// The archive (a file or a segment directory).
    pub archive: PathBuf,

    /// Add NAME@POSITION (an offset, @commit_ts or RFC 3339 time) into the archive (a standard
    /// MCAP metadata record `replayscope.markers`; the archive is written again).
    #[arg(long, value_name = "NAME@POS")]
    pub add: Option<String>,

    /// With --add: the text shown when the marker is reached (--pause-at-markers, demo --tour).
    #[arg(long, requires = "add")]
    pub caption: Option<String>,

    /// List the markers: the archive's and those kept beside it.
    #[arg(long)]
    pub list: bool,

    /// Remove the marker of this name (from the archive, or from the file beside it).
    #[arg(long, value_name = "NAME")]
    pub remove: Option<String>,

    /// The markers file beside the archive [default: ARCHIVE.markers.json].
    #[arg(long, value_name = "FILE", env = "REPLAYSCOPE_MARKERS")]
    pub markers: Option<PathBuf>,
}

/// What a differential replay compares and how it pairs the events (`diff`, `open --against`).
#[derive(Debug, Clone, Args)]
pub struct DiffFlags {
    /// What to compare: events (transactions, keys, values, deletes, versions), state (the state
    /// each side has after each transaction) or hash (the stored bytes) [default: events].
    #[arg(long, value_enum, default_value_t = CompareArg::Events, env = "REPLAYSCOPE_COMPARE")]
    pub compare: CompareArg,

    /// How events are paired: by offset, txn (txn_id), commit-ts, or position (the n-th event
    /// of each side: a target written by `play --into` has its own txn_ids and commit_ts)
    /// [default: offset].
    #[arg(long, value_enum, default_value_t = AlignArg::Offset, env = "REPLAYSCOPE_ALIGN")]
    pub align: AlignArg,

    /// A JSON pointer inside values whose differences do not count (e.g. /timestamp);
    /// repeatable.
    #[arg(long, value_name = "POINTER")]
    pub ignore: Vec<String>,

    /// FROM_NS/FROM_AGENT=TO_NS/TO_AGENT: how the right side names an agent of the left one
    /// (repeatable).
    #[arg(long = "map-agent", value_name = "FROM=TO")]
    pub map_agent: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareArg {
    Events,
    State,
    Hash,
}

impl From<CompareArg> for crate::inspect::diff::Compare {
    fn from(c: CompareArg) -> Self {
        match c {
            CompareArg::Events => Self::Events,
            CompareArg::State => Self::State,
            CompareArg::Hash => Self::Hash,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlignArg {
    Offset,
    Txn,
    CommitTs,
    Position,
}

impl From<AlignArg> for crate::inspect::diff::Align {
    fn from(a: AlignArg) -> Self {
        match a {
            AlignArg::Offset => Self::Offset,
            AlignArg::Txn => Self::Txn,
            AlignArg::CommitTs => Self::CommitTs,
            AlignArg::Position => Self::Position,
        }
    }
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// One source: archive file, segment directory, s3://, replayscope://, statehouse:// (with
    /// --agent) or a JSON Lines dump.
    pub left: String,

    /// The other one (the same kinds).
    pub right: String,

    #[command(flatten)]
    pub flags: DiffFlags,

    /// Only this agent (NAMESPACE/AGENT_ID, the left side's name; the right side's is mapped
    /// by --map-agent); required for statehouse://.
    #[arg(long, env = "REPLAYSCOPE_AGENT")]
    pub agent: Option<String>,

    /// First event to compare: offset, @commit_ts or RFC 3339 time (resolved on each side);
    /// inclusive.
    #[arg(long)]
    pub from: Option<Position>,

    /// Last event to compare, the same way; inclusive.
    #[arg(long)]
    pub until: Option<Position>,

    /// List every divergence as JSON Lines (at most --max) instead of explaining the first.
    #[arg(long)]
    pub all: bool,

    /// With --all: stop after this many divergences.
    #[arg(long, default_value_t = defaults::DIFF_MAX, value_parser = clap::value_parser!(u64).range(1..))]
    pub max: u64,

    /// Write the JSON report (what was compared, how fast, the first divergence) here (`-` for
    /// standard error).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Open truncated archives (a crashed recorder's) and use their readable prefix.
    #[arg(long)]
    pub allow_truncated: bool,

    #[command(flatten)]
    pub chain: ChainArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// When a written archive stores the folded state (DESIGN.md section 12).
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Store the folded state every this many events (a state snapshot: `state --at` and the
    /// inspector start from the nearest one instead of the first event); 0 stores none.
    #[arg(long, value_name = "N", default_value_t = defaults::SNAPSHOT_EVENTS, env = "REPLAYSCOPE_SNAPSHOT_EVENTS")]
    pub snapshot_events: u64,

    /// ... or every this many bytes of events (before compression), whichever comes first.
    #[arg(long, value_name = "SIZE", default_value = defaults::SNAPSHOT_BYTES, env = "REPLAYSCOPE_SNAPSHOT_BYTES")]
    pub snapshot_bytes: ByteSize,

    /// Never store snapshots more often than keeps them under this share of the archive
    /// (percent; a large state is then stored less often).
    #[arg(long, value_name = "PERCENT", default_value_t = defaults::SNAPSHOT_MAX_SHARE, env = "REPLAYSCOPE_SNAPSHOT_MAX_SHARE", value_parser = clap::value_parser!(u64).range(1..=100))]
    pub snapshot_max_share: u64,
}

impl SnapshotArgs {
    /// The writer's policy (`None`: no snapshots).
    pub fn policy(&self) -> Option<crate::archive::snapshot::SnapshotPolicy> {
        (self.snapshot_events > 0).then(|| crate::archive::snapshot::SnapshotPolicy {
            every_events: self.snapshot_events,
            every_bytes: self.snapshot_bytes.0.max(1),
            min_ratio: 100u64.div_ceil(self.snapshot_max_share.max(1)),
        })
    }
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Write the indexed archive here instead of replacing SOURCE (needed for s3://).
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub snapshots: SnapshotArgs,

    /// Copy without checking the hash chain (chunk CRCs are still checked).
    #[arg(long)]
    pub no_verify: bool,

    /// Replace an existing archive at -o (refused otherwise).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Archive file, segment directory, s3://, replayscope://, statehouse:// (with --agent) or
    /// a JSON Lines dump.
    pub source: String,

    /// A substring (case-sensitive), or re:REGEX; matched against keys, values as JSON text,
    /// NAMESPACE/AGENT_ID and the start of txn_id.
    pub query: String,

    #[command(flatten)]
    pub scan: ScanArgs,
}

/// How a version list is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ListFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// Readable lines, the changes indented under each version.
    Text,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Archive file, segment directory, s3://, replayscope://, statehouse:// (with --agent) or
    /// a JSON Lines dump.
    pub source: String,

    /// The key, exactly as stored (e.g. `plan` or `memory/refund`).
    pub key: String,

    #[command(flatten)]
    pub scan: ScanArgs,
}

/// How `history` and `search` read their source and print what they find.
#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub input: InspectSourceArgs,

    /// First event to look at: offset, @commit_ts or RFC 3339 time; inclusive.
    #[arg(long)]
    pub from: Option<Position>,

    /// Last event to look at: offset, @commit_ts or RFC 3339 time; inclusive.
    #[arg(long)]
    pub until: Option<Position>,

    /// Output format [default: jsonl].
    #[arg(long, value_enum, default_value_t = ListFormat::Jsonl)]
    pub format: ListFormat,
}

/// How the inspection commands (`history`, `search`, `state`) open their source.
#[derive(Debug, Args)]
pub struct InspectSourceArgs {
    /// Only this agent: NAMESPACE/AGENT_ID (required for statehouse://).
    #[arg(long, env = "REPLAYSCOPE_AGENT")]
    pub agent: Option<String>,

    /// The source's markers are kept in this file (for `mark:NAME` positions) [default:
    /// SOURCE.markers.json beside a file or directory].
    #[arg(long, value_name = "FILE", env = "REPLAYSCOPE_MARKERS")]
    pub markers: Option<PathBuf>,

    /// Open a truncated archive (a crashed recorder's) and use its readable prefix.
    #[arg(long)]
    pub allow_truncated: bool,

    #[command(flatten)]
    pub chain: ChainArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["at", "diff"])))]
pub struct StateArgs {
    /// Archive file, segment directory, s3://, replayscope://, statehouse:// (with --agent) or
    /// a JSON Lines dump.
    pub source: String,

    /// The state after the event at this point (offset, @commit_ts or RFC 3339 time), printed
    /// as JSON in the --bootstrap format: {"NAMESPACE/AGENT": {"key": value}}.
    #[arg(long)]
    pub at: Option<Position>,

    /// What changed between the states at two points: the keys added, deleted and changed,
    /// each with its field-level changes.
    #[arg(long, num_args = 2, value_names = ["POS1", "POS2"])]
    pub diff: Option<Vec<Position>>,

    /// Output format of --diff [default: jsonl]; --at always prints JSON.
    #[arg(long, value_enum, default_value_t = ListFormat::Jsonl)]
    pub format: ListFormat,

    #[command(flatten)]
    pub input: InspectSourceArgs,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    Json,
}

/// What kind of source SOURCE is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceModeArg {
    /// From its form: a path or s3:// is an archive, replayscope:// and statehouse:// are
    /// those endpoints, grpc:// probes which one answers.
    #[default]
    Auto,
    /// An archive file, segment directory or s3:// prefix.
    Archive,
    /// A Statehouse daemon (`host:port` or statehouse://).
    Statehouse,
    /// A replayscope server (`host:port` or replayscope://).
    Replayscope,
}

impl From<SourceModeArg> for SourceMode {
    fn from(m: SourceModeArg) -> SourceMode {
        match m {
            SourceModeArg::Auto => SourceMode::Auto,
            SourceModeArg::Archive => SourceMode::Archive,
            SourceModeArg::Statehouse => SourceMode::Statehouse,
            SourceModeArg::Replayscope => SourceMode::Replayscope,
        }
    }
}

/// `--compression` of a new archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompressionArg {
    #[default]
    Zstd,
    Lz4,
    None,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::None => Compression::None,
        }
    }
}

/// `--format` of `play`'s stream output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FormatArg {
    /// One JSON object per line (the same bytes as `export`).
    #[default]
    Jsonl,
    /// One readable line per event.
    Text,
    /// Nothing (for --state-hash / --expect-hash runs and benchmarks).
    None,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> OutputFormat {
        match f {
            FormatArg::Jsonl => OutputFormat::Jsonl,
            FormatArg::Text => OutputFormat::Text,
            FormatArg::None => OutputFormat::None,
        }
    }
}

impl From<LogFormat> for crate::logging::LogFormat {
    fn from(f: LogFormat) -> crate::logging::LogFormat {
        match f {
            LogFormat::Text => crate::logging::LogFormat::Text,
            LogFormat::Json => crate::logging::LogFormat::Json,
        }
    }
}

/// How fast to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaceArg {
    /// Commit-time deltas, scaled by --speed.
    Realtime,
    /// As fast as the output takes them.
    Fast,
    /// --rate events per second.
    Rate,
}

/// A size in bytes such as `64MiB`, `512KiB`, `1GiB` or `4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected e.g. 64MiB, 512KiB, 4096"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KB" | "KiB" | "k" => 1 << 10,
            "M" | "MB" | "MiB" => 1 << 20,
            "G" | "GB" | "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {other:?} (B, KiB, MiB, GiB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

/// A duration such as `500ms`, `2s`, `1.5m`, `1h` (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub std::time::Duration);

impl std::str::FromStr for DurationArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 2s, 1.5m, 1h"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            other => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {other:?} (ns, us, ms, s, m, h)"
                ));
            }
        };
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(format!("invalid duration {s:?}"));
        }
        Ok(DurationArg(std::time::Duration::from_secs_f64(secs)))
    }
}

/// Following a source while it grows.
#[derive(Debug, Clone, Default, Args)]
pub struct FollowArgs {
    /// At the end of the source, wait for more and play it as it lands (a running agent's
    /// daemon, an archive being recorded): CAUGHT UP instead of FINISHED.
    #[arg(long, env = "REPLAYSCOPE_FOLLOW")]
    pub follow: bool,

    /// How often a followed Statehouse daemon is asked for new transactions while they arrive
    /// (backing off to 1s while it is idle) [default: 100ms].
    #[arg(long, value_name = "DURATION", env = "REPLAYSCOPE_POLL")]
    pub poll: Option<DurationArg>,
}

impl FollowArgs {
    /// The poll policy the flags give.
    pub fn poll_policy(&self) -> crate::source::statehouse::PollPolicy {
        let default = crate::source::statehouse::PollPolicy::default();
        match self.poll {
            Some(d) => crate::source::statehouse::PollPolicy {
                fastest: d.0,
                slowest: default.slowest.max(d.0),
            },
            None => default,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PlayFlags {
    /// For a JSON Lines source: give events a wall-clock time from their values (see
    /// `import --time-field`), for Realtime pacing, the table, the timeline and seeks by time.
    #[arg(long, value_name = "FIELDS", env = "REPLAYSCOPE_TIME_FIELD")]
    pub time_field: Option<String>,

    /// Pacing: realtime (commit-time deltas / --speed), fast, or rate (--rate events/s)
    /// [default: fast for play, realtime for open; --rate alone implies rate, --speed alone
    /// realtime].
    #[arg(long, value_enum, env = "REPLAYSCOPE_PACE")]
    pub pace: Option<PaceArg>,

    /// Realtime speed factor, 0.001 to 100 [default: 1].
    #[arg(long, env = "REPLAYSCOPE_SPEED")]
    pub speed: Option<f64>,

    /// Events per second for --pace rate [default: 1000].
    #[arg(long, env = "REPLAYSCOPE_RATE")]
    pub rate: Option<f64>,

    /// First event: offset (1200), @commit_ts or RFC 3339 time; inclusive.
    #[arg(long, env = "REPLAYSCOPE_FROM")]
    pub from: Option<Position>,

    /// Last event: offset, @commit_ts or RFC 3339 time; inclusive.
    #[arg(long, env = "REPLAYSCOPE_UNTIL")]
    pub until: Option<Position>,

    /// Only this agent: NAMESPACE/AGENT_ID. A statehouse:// endpoint (which cannot list its
    /// agents) takes it more than once and merges the agents in commit order.
    #[arg(long, env = "REPLAYSCOPE_AGENT", value_delimiter = ',')]
    pub agent: Vec<String>,

    #[command(flatten)]
    pub follow: FollowArgs,

    /// Only transactions that touch a key with this prefix.
    #[arg(long, env = "REPLAYSCOPE_KEY_PREFIX")]
    pub key_prefix: Option<String>,

    /// Cap idle gaps between events at this (realtime pace), e.g. 2s.
    #[arg(long, env = "REPLAYSCOPE_MAX_GAP")]
    pub max_gap: Option<DurationArg>,

    /// Logical time per commit_ts unit for sources without wall-clock times (realtime pace)
    /// [default: 10ms].
    #[arg(long, env = "REPLAYSCOPE_TICK")]
    pub tick: Option<DurationArg>,

    /// The source's markers are kept in this file [default: SOURCE.markers.json beside a
    /// file or directory]; `mark:NAME` is a position wherever one is taken.
    #[arg(long, value_name = "FILE", env = "REPLAYSCOPE_MARKERS")]
    pub markers: Option<PathBuf>,

    /// Pause at each marker, showing its caption (headless play: says it on stderr and goes on
    /// after --marker-hold).
    #[arg(long)]
    pub pause_at_markers: bool,

    /// Headless play with --pause-at-markers: how long to hold at each marker [default: 3s].
    #[arg(long, value_name = "DURATION", env = "REPLAYSCOPE_MARKER_HOLD")]
    pub marker_hold: Option<DurationArg>,

    /// Play the range again and again: forever, or N passes in all (`--loop 3`).
    #[arg(long = "loop", value_name = "N", num_args = 0..=1, default_missing_value = "0")]
    pub loop_passes: Option<u64>,
}

/// The inspector's screen layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    /// The table, the transaction and the state; the transport gauges in one status line.
    Inspect,
    /// The transport gauges in full: credit window, ring, rate, lag.
    Transport,
    /// For an audience: a large table and the current marker's caption, no key hints.
    Present,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Realtime speed factor (the sample's ~50 minutes, idle gaps capped at 2 s, in ~90 s).
    #[arg(long, default_value_t = defaults::DEMO_SPEED, env = "REPLAYSCOPE_DEMO_SPEED")]
    pub speed: f64,

    /// Start paused.
    #[arg(long)]
    pub paused: bool,

    /// A walkthrough: pause at each of the sample's markers and show its caption (space goes
    /// on).
    #[arg(long, conflicts_with = "export")]
    pub tour: bool,

    /// The screen layout to start with (v cycles) [default: transport; the last one chosen
    /// with v when remembered].
    #[arg(long, value_enum, env = "REPLAYSCOPE_LAYOUT")]
    pub layout: Option<LayoutArg>,

    /// Write the bundled sample archive to FILE (for `play`, `export`, `serve` …) instead of
    /// opening the inspector.
    #[arg(long, value_name = "FILE")]
    pub export: Option<std::path::PathBuf>,

    /// With --export: replace an existing FILE.
    #[arg(long, requires = "export")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub play: PlayFlags,

    /// Start paused.
    #[arg(long, env = "REPLAYSCOPE_PAUSED")]
    pub paused: bool,

    /// The screen layout to start with (v cycles) [default: inspect; the last one chosen with v
    /// when remembered].
    #[arg(long, value_enum, env = "REPLAYSCOPE_LAYOUT")]
    pub layout: Option<LayoutArg>,

    /// Compare with another source while playing (a marker column says, row by row, whether
    /// it agrees; D goes to the next row where it does not; the transaction pane shows what
    /// differs): the same kinds of sources as SOURCE.
    #[arg(long, value_name = "RIGHT")]
    pub against: Option<String>,

    #[command(flatten)]
    pub diff: DiffFlags,
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// What to replay: archive file, segment directory, s3://bucket/prefix, replayscope://,
    /// statehouse:// (with --agent) or grpc:// (optional when --config names one).
    pub source: Option<PathBuf>,

    /// Open a truncated archive (a crashed recorder's) and use its readable prefix.
    #[arg(long, env = "REPLAYSCOPE_ALLOW_TRUNCATED")]
    pub allow_truncated: bool,

    /// What kind of source SOURCE is [default: auto].
    #[arg(long, value_enum, env = "REPLAYSCOPE_MODE")]
    pub mode: Option<SourceModeArg>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub play: PlayFlags,

    /// Where played events go: statehouse://host:port (applied transaction by transaction and
    /// verified), or an archive path (a new archive of the replayed range). Without it, events
    /// go to --output.
    #[arg(long, env = "REPLAYSCOPE_INTO")]
    pub into: Option<String>,

    /// Where played events go without --into: a file, or `-` for standard output [default: -].
    #[arg(short, long, env = "REPLAYSCOPE_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Output format for --output [default: jsonl].
    #[arg(long, value_enum, env = "REPLAYSCOPE_FORMAT")]
    pub format: Option<FormatArg>,

    #[command(flatten)]
    pub archive: OutputArchiveArgs,

    /// Keep the source's offsets in an archive target (default: re-numbered from 0).
    #[arg(long, env = "REPLAYSCOPE_KEEP_OFFSETS")]
    pub keep_offsets: bool,

    /// Write a recorded agent's keys as another agent in a Statehouse target:
    /// FROM_NS/FROM_AGENT=TO_NS/TO_AGENT (repeatable).
    #[arg(long = "map-agent", value_name = "FROM=TO")]
    pub map_agent: Vec<String>,

    /// Initial key/value state (JSON: {"NS/AGENT": {"key": {...}}}) that the fold starts from
    /// and that is written into a Statehouse target before the first transaction.
    #[arg(long, env = "REPLAYSCOPE_BOOTSTRAP")]
    pub bootstrap: Option<PathBuf>,

    /// A label for this replayer, carried into log lines, metrics and reports.
    #[arg(long, env = "REPLAYSCOPE_NODE_ID")]
    pub node_id: Option<String>,

    /// Also write each run's final report (JSON) to this file (the latest run's).
    #[arg(long, env = "REPLAYSCOPE_REPORT")]
    pub report: Option<PathBuf>,

    /// Append every run's report to this file, one JSON object per line.
    #[arg(long, env = "REPLAYSCOPE_REPORTS")]
    pub reports: Option<PathBuf>,

    /// Fail (exit 3) unless the hash chain through the last played event is this.
    #[arg(long, env = "REPLAYSCOPE_EXPECT_HASH", conflicts_with = "no_verify")]
    pub expect_hash: Option<String>,

    /// Fail (exit 3) unless the final key/value state hashes to this.
    #[arg(long, env = "REPLAYSCOPE_EXPECT_STATE_HASH")]
    pub expect_state_hash: Option<String>,

    #[command(flatten)]
    pub chain: ChainArgs,

    /// Fold the key/value state and put its hash in the report.
    #[arg(long, env = "REPLAYSCOPE_STATE_HASH")]
    pub state_hash: bool,

    /// Do not read a Statehouse target's state back after a run (it is compared by default).
    #[arg(long, env = "REPLAYSCOPE_NO_VERIFY_TARGET")]
    pub no_verify_target: bool,

    /// Run again every DURATION (e.g. 10m) until stopped; a run still going when the next is
    /// due is not started twice (that run is skipped and logged).
    #[arg(long, conflicts_with = "cron", env = "REPLAYSCOPE_EVERY")]
    pub every: Option<DurationArg>,

    /// Run at the times of a five-field cron expression (UTC), e.g. "*/15 * * * *".
    #[arg(long, env = "REPLAYSCOPE_CRON")]
    pub cron: Option<String>,

    /// Stop a schedule after this many runs.
    #[arg(long, env = "REPLAYSCOPE_MAX_RUNS")]
    pub max_runs: Option<u64>,

    /// Check the whole plan (source readable, range valid, target reachable and healthy)
    /// without writing anything.
    #[arg(long, env = "REPLAYSCOPE_DRY_RUN")]
    pub dry_run: bool,

    /// Serve Prometheus metrics of the runs at http://ADDR/metrics.
    #[arg(long, env = "REPLAYSCOPE_PLAY_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,

    /// How often a status line is logged while a run goes [default: 5s].
    #[arg(long, env = "REPLAYSCOPE_STATUS_INTERVAL")]
    pub status_interval: Option<DurationArg>,

    /// Transactions staged on a Statehouse target ahead of the one committing [default: 16].
    #[arg(long, env = "REPLAYSCOPE_PIPELINE")]
    pub pipeline: Option<usize>,

    /// How long a Statehouse target may take to answer one call [default: 10s].
    #[arg(long, env = "REPLAYSCOPE_TARGET_TIMEOUT")]
    pub target_timeout: Option<DurationArg>,

    /// Read these parameters from a TOML file (kebab-case keys, the flags' names; unknown keys
    /// are rejected). Flags given on the command line win.
    #[arg(long, env = "REPLAYSCOPE_CONFIG")]
    pub config: Option<PathBuf>,

    /// No progress bar.
    #[arg(long, short, env = "REPLAYSCOPE_QUIET")]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct OutputArchiveArgs {
    /// Chunk compression of a written archive [default: zstd].
    #[arg(long, value_enum, env = "REPLAYSCOPE_COMPRESSION")]
    pub compression: Option<CompressionArg>,

    /// Write a directory of segments with this many events each instead of one file.
    #[arg(long, env = "REPLAYSCOPE_SEGMENT_EVENTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_events: Option<u64>,

    #[command(flatten)]
    pub snapshots: SnapshotArgs,

    /// Replace an existing archive at the output path (refused otherwise).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Number of events.
    #[arg(long, default_value_t = defaults::GEN_EVENTS, env = "REPLAYSCOPE_GEN_EVENTS")]
    pub events: u64,

    /// Number of agents (spread over up to four namespaces).
    #[arg(long, default_value_t = defaults::GEN_AGENTS, env = "REPLAYSCOPE_GEN_AGENTS")]
    pub agents: usize,

    /// Random seed: the same seed gives the same archive.
    #[arg(long, default_value_t = defaults::GEN_SEED, env = "REPLAYSCOPE_GEN_SEED")]
    pub seed: u64,

    #[command(flatten)]
    pub archive: OutputArchiveArgs,

    /// Output archive file (or directory with --segment-events).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON Lines files (`-` for standard input), merged in commit_ts order when several;
    /// `FILE=NAMESPACE/AGENT_ID` names the agent of a file whose lines do not (a Statehouse
    /// Replay dump).
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<String>,

    /// The agent of lines without namespace/agent_id, as NAMESPACE/AGENT_ID.
    #[arg(long, env = "REPLAYSCOPE_AGENT")]
    pub agent: Option<String>,

    /// Give events a wall-clock time from their values (Statehouse keeps none): the first
    /// operation with one of these fields (names or JSON pointers, comma-separated, e.g.
    /// `at,asked_at,/meta/ts`) holding an RFC 3339 time or a Unix timestamp.
    #[arg(long, value_name = "FIELDS")]
    pub time_field: Option<String>,

    #[command(flatten)]
    pub archive: OutputArchiveArgs,

    /// Output archive file (or directory with --segment-events).
    #[arg(short, long)]
    pub output: PathBuf,

    /// The longest line taken; a longer one fails the import with its line number.
    #[arg(long, default_value = defaults::MAX_LINE_BYTES, env = "REPLAYSCOPE_MAX_LINE_BYTES")]
    pub max_line_bytes: ByteSize,
}

/// How to reach a `replayscope://host:port` source.
#[derive(Debug, Args, Default, Clone)]
pub struct RemoteArgs {
    /// Bearer token for the endpoint.
    #[arg(long, env = "REPLAYSCOPE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Connect with TLS.
    #[arg(long, env = "REPLAYSCOPE_TLS")]
    pub tls: bool,

    /// CA certificate (PEM) to trust for --tls instead of the system roots.
    #[arg(long, env = "REPLAYSCOPE_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Reconnection attempts after the stream is cut before giving up.
    #[arg(long, env = "REPLAYSCOPE_RETRIES")]
    pub retries: Option<u32>,
}

impl RemoteArgs {
    /// `--retries`, or its default.
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(defaults::RETRIES)
    }
}

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Archive file, segment directory or s3://bucket/key-or-prefix (play, open and record also
    /// take replayscope://, statehouse:// and grpc:// endpoints).
    pub source: PathBuf,

    /// Open a truncated archive (a crashed recorder's) and use its readable prefix.
    #[arg(long, env = "REPLAYSCOPE_ALLOW_TRUNCATED")]
    pub allow_truncated: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub chain: ChainArgs,

    /// Output file (standard output when absent or `-`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// First event: offset (1200), commit_ts (@57) or RFC 3339 time; inclusive.
    #[arg(long, env = "REPLAYSCOPE_FROM")]
    pub from: Option<Position>,

    /// Last event: offset, @commit_ts or RFC 3339 time; inclusive.
    #[arg(long, env = "REPLAYSCOPE_UNTIL")]
    pub until: Option<Position>,

    /// Only this agent: NAMESPACE/AGENT_ID (an archive that keeps it in chunks of its own is
    /// read only there).
    #[arg(long, env = "REPLAYSCOPE_AGENT")]
    pub agent: Option<String>,
}

/// Whether a command checks the hash chain over what it delivers.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// Do not check the archive's hash chain over what is read (checked by default: a
    /// mismatch stops before the damaged chunk with exit 3; chunk CRCs are always checked).
    #[arg(long, env = "REPLAYSCOPE_NO_VERIFY")]
    pub no_verify: bool,
}

impl ChainArgs {
    pub fn chain(&self) -> crate::source::ChainCheck {
        crate::source::ChainCheck::from_no_verify(self.no_verify)
    }
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Fail unless the final hash of the chain is this (64 hex digits).
    #[arg(long, env = "REPLAYSCOPE_EXPECT_HASH")]
    pub expect_hash: Option<String>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Turn a truncated archive (a recorder killed mid-write) into a valid one holding its
    /// readable prefix; the damaged file is kept as FILE.truncated. Then verify it.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Serve the archive as it grows (a directory `record --follow` writes): Sessions opened
    /// with follow (`play replayscope://… --follow`) stay open at its end for what lands next.
    #[arg(long, env = "REPLAYSCOPE_FOLLOW")]
    pub follow: bool,

    #[command(flatten)]
    pub chain: ChainArgs,

    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = defaults::LISTEN, env = "REPLAYSCOPE_LISTEN")]
    pub listen: std::net::SocketAddr,

    /// Require `authorization: Bearer <token>` on every RPC but health, with the token read
    /// from this file (the REPLAYSCOPE_TOKEN environment variable also sets one).
    #[arg(long, env = "REPLAYSCOPE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", env = "REPLAYSCOPE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert", env = "REPLAYSCOPE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "REPLAYSCOPE_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Streams (Replay and Session) served at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = defaults::MAX_SESSIONS, env = "REPLAYSCOPE_MAX_SESSIONS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sessions: u64,

    /// Streams one connection may hold at once, its share of --max-sessions: more get
    /// RESOURCE_EXHAUSTED while other connections are still served.
    #[arg(long, default_value_t = defaults::MAX_CONNECTION_STREAMS, env = "REPLAYSCOPE_MAX_CONNECTION_STREAMS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connection_streams: u64,

    /// Credit window of a Session that does not ask for one.
    #[arg(long, default_value = defaults::SERVE_WINDOW, env = "REPLAYSCOPE_WINDOW")]
    pub window: ByteSize,

    /// The largest window a client may ask for.
    #[arg(long, default_value = defaults::SERVE_MAX_WINDOW, env = "REPLAYSCOPE_MAX_WINDOW")]
    pub max_window: ByteSize,

    /// Replay ring per Session (what a resume can be served from without re-reading).
    #[arg(long, default_value = defaults::SERVE_RING, env = "REPLAYSCOPE_RING")]
    pub ring: ByteSize,

    /// Decompressed chunks kept for all streams at once (least recently used out): a chunk
    /// read again, by another stream or a replay of the same agent, is neither decompressed nor
    /// checked again (nor its hash chain run again: its checked heads are kept with it, 32
    /// bytes per event). Give it the size of the history served again and again (e.g. 1GiB);
    /// at least 8MiB (what a seek and the read after it need).
    #[arg(long, default_value = defaults::SERVE_CACHE, env = "REPLAYSCOPE_CACHE")]
    pub cache: ByteSize,

    /// Cancel a session with neither a send nor an ack for this long (and forget a cut one).
    #[arg(long, default_value = defaults::IDLE_TIMEOUT, env = "REPLAYSCOPE_IDLE_TIMEOUT")]
    pub idle_timeout: DurationArg,

    /// Interval of the Heartbeat frames sent on each Session.
    #[arg(long, default_value = defaults::HEARTBEAT, env = "REPLAYSCOPE_HEARTBEAT")]
    pub heartbeat: DurationArg,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub chain: ChainArgs,

    /// What to record: `replayscope://host:port` (or any source `play` takes).
    pub endpoint: PathBuf,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Output archive file (or directory with --segment-events).
    #[arg(short, long)]
    pub output: PathBuf,

    #[command(flatten)]
    pub archive: OutputArchiveArgs,

    /// Only this agent (NAMESPACE/AGENT_ID); its events are re-numbered from offset 0. A
    /// statehouse:// endpoint takes it more than once (merged in commit order).
    #[arg(long, env = "REPLAYSCOPE_AGENT", value_delimiter = ',')]
    pub agent: Vec<String>,

    /// Last event to record: offset, commit_ts (@57) or RFC 3339 time; inclusive.
    #[arg(long)]
    pub until: Option<Position>,

    /// Close the current chunk and flush it to disk at least this often, so a recorder killed
    /// at any moment loses at most this much (`verify --repair` keeps the rest).
    #[arg(long, default_value = defaults::FLUSH_INTERVAL, env = "REPLAYSCOPE_FLUSH_INTERVAL")]
    pub flush_interval: DurationArg,

    /// Keep recording as the source grows (a running agent), into a segment directory: chunks
    /// are closed whenever the source goes idle, so followers of the directory see events at
    /// once. Run again on the same directory, it continues after its last event.
    #[command(flatten)]
    pub follow: FollowArgs,

    /// With --follow: start a new segment once the current one holds this many bytes of
    /// events (before compression), e.g. 64MiB.
    #[arg(long, value_name = "SIZE", env = "REPLAYSCOPE_SEGMENT_BYTES")]
    pub segment_bytes: Option<ByteSize>,

    /// With --follow: start a new segment once the current one has been open this long, e.g.
    /// 1h.
    #[arg(long, value_name = "DURATION", env = "REPLAYSCOPE_SEGMENT_DURATION")]
    pub segment_duration: Option<DurationArg>,
}
