//! Every default of the command line in one table. Flags that can also come from `--config`
//! have no clap default: they are layered (flags > config file > these) in
//! [`super::layer`]; the rest name these constants in their clap attributes, so `--help` shows
//! the same values.

use std::path::PathBuf;
use std::time::Duration;

/// Realtime speed when `--speed` is not given.
pub const SPEED: f64 = 1.0;
/// Events per second of `--pace rate` without `--rate`.
pub const RATE: f64 = 1000.0;
/// Logical time per commit_ts unit for events without wall-clock times (`--tick`).
pub const TICK: Duration = Duration::from_millis(10);
/// `demo`: the sample's ~7 minutes in about half a minute, idle gaps capped.
pub const DEMO_SPEED: f64 = 15.0;
pub const DEMO_MAX_GAP: Duration = Duration::from_secs(2);
/// Attempts to reach a lost endpoint before giving up (`--retries`).
pub const RETRIES: u32 = 10;
/// Statehouse transactions staged ahead of the one committing (`--pipeline`), and its range.
pub const PIPELINE: usize = 16;
pub const PIPELINE_MAX: usize = 1024;
/// One Statehouse call (`--target-timeout`), and its floor.
pub const TARGET_TIMEOUT: Duration = Duration::from_secs(10);
pub const TARGET_TIMEOUT_MIN: Duration = Duration::from_millis(10);
/// Status lines of scheduled and targeted runs (`--status-interval`), and their floor.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);
pub const STATUS_INTERVAL_MIN: Duration = Duration::from_millis(50);
/// `record`: how often complete chunks are written out (`--flush-interval`), and its floor.
pub const FLUSH_INTERVAL: &str = "1s";
pub const FLUSH_INTERVAL_MIN: Duration = Duration::from_millis(10);
/// Events per batch a recorder asks its source for.
pub const RECORD_BATCH_EVENTS: usize = 1024;
/// Events per segment of `record --follow` when no rotation is given (a follower re-reads only
/// the segment being written, so it stays small).
pub const FOLLOW_SEGMENT_EVENTS: u64 = 100_000;
/// State snapshots in written archives (`--snapshot-events`, `--snapshot-bytes`).
pub const SNAPSHOT_EVENTS: u64 = 20_000;
pub const SNAPSHOT_BYTES: &str = "16MiB";
pub const SNAPSHOT_MAX_SHARE: u64 = 5;
/// Headless `play --pause-at-markers`: how long each marker holds the run.
pub const MARKER_HOLD: Duration = Duration::from_secs(3);
/// `diff --all`: divergences listed at most (`--max`).
pub const DIFF_MAX: u64 = 100;
/// `serve`.
pub const LISTEN: &str = "127.0.0.1:50051";
pub const MAX_SESSIONS: u64 = 64;
pub const MAX_CONNECTION_STREAMS: u64 = 16;
pub const SERVE_WINDOW: &str = "64MiB";
pub const SERVE_MAX_WINDOW: &str = "256MiB";
pub const SERVE_RING: &str = "64MiB";
/// Decompressed chunks `serve` keeps for all its streams (`--cache`): by default what a seek and
/// the read after it need and what clients following the same archive share (its newest
/// groups), so a stream holds no more than its window and ring; an operator who serves the
/// same history again and again gives it the size of that history (1GiB holds the busiest agent
/// of a 10M-event archive), memory the default does not take.
pub const SERVE_CACHE: &str = "8MiB";
pub const IDLE_TIMEOUT: &str = "60s";
pub const IDLE_TIMEOUT_MIN: Duration = Duration::from_millis(100);
pub const HEARTBEAT: &str = "5s";
pub const HEARTBEAT_MIN: Duration = Duration::from_millis(10);
/// `gen`.
/// The longest JSON Lines line `import` takes (agent values are rarely over a few KiB; a file
/// without line breaks fails here instead of filling memory).
pub const MAX_LINE_BYTES: &str = "8MiB";

pub const GEN_EVENTS: u64 = 10_000;
pub const GEN_AGENTS: usize = 6;
pub const GEN_SEED: u64 = 1;

/// Where the inspector logs when no `--log-file` is given (it owns the terminal).
pub fn log_file() -> PathBuf {
    std::env::temp_dir().join("replayscope.log")
}
