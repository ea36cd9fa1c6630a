//! What the player publishes: a stats snapshot (cheap to read every frame) and the report at the
//! end of a run.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::flow::{CreditSnapshot, RingSnapshot};
use crate::player::pace::Pace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayState {
    Playing,
    #[default]
    Paused,
    /// Stopped early (by the user or a failure); `reason` says which.
    Stopped,
    /// Played to the end of the requested range.
    Finished,
    /// A live source has nothing newer yet.
    CaughtUp,
    /// Re-positioning (seek, step back): folding state up to the target.
    Seeking,
}

impl PlayState {
    pub fn label(&self) -> &'static str {
        match self {
            PlayState::Playing => "playing",
            PlayState::Paused => "paused",
            PlayState::Stopped => "stopped",
            PlayState::Finished => "finished",
            PlayState::CaughtUp => "caught up",
            PlayState::Seeking => "seeking",
        }
    }
}

/// A snapshot of the player.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub state: PlayState,
    /// Why it stopped (user, error, end of range).
    pub reason: Option<String>,
    pub pace: Pace,
    /// Realtime pace uses logical ticks (no wall-clock times in the source).
    pub logical_time: bool,
    /// Offset of the last event played.
    pub position: Option<u64>,
    /// Offset the next event will have (at least).
    pub next_offset: u64,
    /// Event time (ns; wall clock or logical) of the last event played.
    pub time_ns: Option<u64>,
    pub events_played: u64,
    pub bytes_played: u64,
    /// Achieved events/s, exponentially weighted.
    pub rate: f64,
    /// Events played in each of the last seconds (oldest first).
    pub rate_history: Vec<u64>,
    pub target_rate: Option<f64>,
    /// How far behind schedule the last event was played.
    pub lag: Duration,
    pub max_lag: Duration,
    pub credit: CreditSnapshot,
    pub ring: RingSnapshot,
    pub failures: u64,
    /// Events buffered between the source and the player.
    pub buffered: usize,
    /// The source's own state when it is not simply delivering (e.g. reconnecting).
    pub source_status: Option<String>,
    /// The source is followed: the run goes on past its end.
    pub following: bool,
    /// The newest offset known to exist.
    pub head_offset: Option<u64>,
    /// Followed with wall-clock times: how long ago the last event shown was committed.
    pub commit_age: Option<Duration>,
    /// Paused at the marker at this offset (`--pause-at-markers`).
    pub at_marker: Option<u64>,
    /// How many times the player has paused at a marker.
    pub marker_pauses: u64,
    /// Passes over the range finished so far (`--loop`).
    pub passes: u64,
    /// The A-B loop being played, when set.
    pub ab_loop: Option<(u64, u64)>,
}

impl Stats {
    /// Where a followed run stands, for people: `at head #1,234`, `1,200 events behind head
    /// #5,678`, paused with what is held, and how old the last event shown is when the source
    /// has wall times. `None` when not following. (The header and the progress line both show
    /// this.)
    pub fn live_summary(&self) -> Option<String> {
        use crate::text::thousands;
        if !self.following {
            return None;
        }
        let mut s = match (self.head_offset, self.behind_head()) {
            (None, _) => "waiting for the first event".to_string(),
            (Some(h), Some(0)) => format!("at head #{}", thousands(h)),
            (Some(h), Some(n)) => {
                format!(
                    "{} {} behind head #{}",
                    thousands(n),
                    if n == 1 { "event" } else { "events" },
                    thousands(h)
                )
            }
            (Some(h), None) => format!("head #{}", thousands(h)),
        };
        if self.state == PlayState::Paused {
            s.push_str(&format!(
                " · paused: {} held (the source waits when the window is full)",
                thousands(self.buffered as u64)
            ));
        }
        if let Some(age) = self.commit_age {
            s.push_str(&format!(" · commit → shown {}", crate::text::duration(age)));
        }
        Some(s)
    }

    /// Events known to exist after the last one played (0 when caught up).
    pub fn behind_head(&self) -> Option<u64> {
        Some(
            self.head_offset?
                .saturating_add(1)
                .saturating_sub(self.next_offset),
        )
    }
}

/// Lag histogram: 10 µs buckets up to 100 ms, then one overflow bucket (for p99 without keeping
/// every sample).
#[derive(Debug, Clone)]
pub struct LagHistogram {
    buckets: Vec<u64>,
    overflow: u64,
    count: u64,
    max: Duration,
}

const BUCKET_US: u64 = 10;
const BUCKETS: usize = 10_000;

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            buckets: vec![0; BUCKETS],
            overflow: 0,
            count: 0,
            max: Duration::ZERO,
        }
    }
}

impl LagHistogram {
    pub fn record(&mut self, lag: Duration) {
        let b = (lag.as_micros() as u64 / BUCKET_US) as usize;
        match self.buckets.get_mut(b) {
            Some(c) => *c += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.max = self.max.max(lag);
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    /// The upper edge of the bucket holding the `p` quantile (0..=1).
    pub fn quantile(&self, p: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.count as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros((i as u64 + 1) * BUCKET_US).min(self.max);
            }
        }
        self.max
    }
}

/// Per-second event counts and an exponentially weighted rate.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    history: VecDeque<u64>,
    current: u64,
    ewma: f64,
    last_sample_count: u64,
    last_sample_at: Option<tokio::time::Instant>,
    second_started: Option<tokio::time::Instant>,
}

pub const RATE_HISTORY_SECONDS: usize = 120;

impl RateMeter {
    pub fn count(&mut self, now: tokio::time::Instant) {
        self.roll(now);
        self.current += 1;
    }

    fn roll(&mut self, now: tokio::time::Instant) {
        let started = *self.second_started.get_or_insert(now);
        let elapsed = now.duration_since(started).as_secs();
        if elapsed >= 1 {
            self.history.push_back(self.current);
            // Seconds with no events at all.
            for _ in 1..elapsed.min(RATE_HISTORY_SECONDS as u64) {
                self.history.push_back(0);
            }
            while self.history.len() > RATE_HISTORY_SECONDS {
                self.history.pop_front();
            }
            self.current = 0;
            self.second_started = Some(started + Duration::from_secs(elapsed));
        }
    }

    /// Updates the EWMA from the events counted since the last sample (`total` = all counted).
    pub fn sample(&mut self, total: u64, now: tokio::time::Instant) -> f64 {
        self.roll(now);
        if let Some(at) = self.last_sample_at {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                let inst = (total - self.last_sample_count) as f64 / dt;
                self.ewma = if self.ewma == 0.0 {
                    inst
                } else {
                    0.3 * inst + 0.7 * self.ewma
                };
            }
        }
        self.last_sample_at = Some(now);
        self.last_sample_count = total;
        self.ewma
    }

    pub fn history(&self) -> Vec<u64> {
        self.history.iter().copied().collect()
    }

    pub fn reset_rate(&mut self) {
        self.ewma = 0.0;
        self.last_sample_at = None;
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every event of the range was played (and the sink flushed).
    Finished,
    /// Ended early: stopped by the user, a signal or the output's reader going away.
    Stopped,
    /// Ended by a failure; `integrity` when the source's bytes were wrong (hash, CRC,
    /// continuity, order) or a check of the result did not match.
    Failed { integrity: bool },
}

impl Outcome {
    /// The word reports and screens use: finished, stopped, failed.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Finished => "finished",
            Outcome::Stopped => "stopped",
            Outcome::Failed { .. } => "failed",
        }
    }

    pub fn is_failed(self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// The end-of-run report (DESIGN.md section 6), printed as JSON by `play`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub source: String,
    pub outcome: Outcome,
    /// Why the run ended early, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub events_sent: u64,
    /// Of `events_sent`, how many were played after seeking or stepping back (at or below the
    /// highest offset this run had played): `events_sent` is then more than the offsets span.
    #[serde(skip_serializing_if = "is_zero")]
    pub events_replayed: u64,
    pub failures: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub first_offset: Option<u64>,
    pub last_offset: Option<u64>,
    /// Where to resume (`--from`) to continue after this run.
    pub next_offset: Option<u64>,
    pub achieved_rate: f64,
    pub max_lag_ms: f64,
    pub p99_lag_ms: f64,
    /// Hash-chain head after the last event played (equals the archive's final hash after a
    /// full play).
    pub final_hash: Option<String>,
    /// Hash of the materialized state after the last event played (when tracked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
    pub pace: Pace,
    /// Passes over the range (`--loop`): more than one when it was played again.
    #[serde(skip_serializing_if = "is_one")]
    pub passes: u64,
    /// The run stopped because the output was closed by its reader (a closed pipe).
    #[serde(skip)]
    pub output_closed: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_quantiles() {
        let mut h = LagHistogram::default();
        for i in 0..1000u64 {
            h.record(Duration::from_micros(i));
        }
        h.record(Duration::from_secs(1));
        assert_eq!(h.max(), Duration::from_secs(1));
        let p50 = h.quantile(0.5);
        assert!(
            p50 >= Duration::from_micros(490) && p50 <= Duration::from_micros(510),
            "{p50:?}"
        );
        let p99 = h.quantile(0.99);
        assert!(
            p99 >= Duration::from_micros(980) && p99 <= Duration::from_micros(1000),
            "{p99:?}"
        );
        assert_eq!(LagHistogram::default().quantile(0.99), Duration::ZERO);
    }
}
