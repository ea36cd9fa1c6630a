//! What runs report: one JSON report per run (stderr, `--report`, `--reports`), and the
//! `--metrics` counters of every run of a schedule (rendered by [`crate::metrics`]).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use chrono::{SecondsFormat, Utc};
use color_eyre::eyre::Result;
use serde::Serialize;

use super::plan::PlayPlan;
use crate::archive::ArchiveError;
use crate::metrics::{Exposition, MetricKind, label_value};
use crate::player::{Outcome, Report, Stats};
use crate::sink::statehouse::{ApplyStats, Verification};

/// What a new archive target holds after a run.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveWritten {
    pub path: String,
    pub events: u64,
    pub bytes: u64,
    pub first_offset: u64,
    pub last_offset: Option<u64>,
    pub final_hash: String,
}

/// One run's report: the player's, plus where it went and what was checked.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    pub mode: String,
    pub source_type: String,
    pub target: String,
    pub target_type: &'static str,
    #[serde(flatten)]
    pub play: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_transactions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_operations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveWritten>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Runs skipped since the previous one because it was still going when they were due.
    pub skipped_before: u64,
}

/// Counters for `--metrics`.
#[derive(Default)]
pub struct PlayMetrics {
    labels: String,
    pub runs_finished: AtomicU64,
    pub runs_stopped: AtomicU64,
    pub runs_failed: AtomicU64,
    pub runs_skipped: AtomicU64,
    pub run_active: AtomicU64,
    pub events_before: AtomicU64,
    pub events_run: AtomicU64,
    pub applied_before: AtomicU64,
    pub applied_run: AtomicU64,
    pub mismatches: AtomicU64,
    pub progress_ppm: AtomicU64,
    pub rate_milli: AtomicU64,
    pub target_rate_milli: AtomicU64,
    pub lag_us: AtomicU64,
    pub last_end_s: AtomicU64,
    pub last_duration_ms: AtomicU64,
}

impl PlayMetrics {
    /// Counters labelled with the node and the kind of target.
    pub fn new(node_id: Option<&str>, target_type: &str) -> PlayMetrics {
        PlayMetrics {
            labels: format!(
                "node_id=\"{}\",target_type=\"{}\"",
                label_value(node_id.unwrap_or("")),
                target_type
            ),
            ..PlayMetrics::default()
        }
    }

    pub fn render(&self) -> String {
        use MetricKind::{Counter, Gauge};
        let get = |a: &AtomicU64| a.load(Relaxed);
        let mut e = Exposition::new("replayscope_play_", self.labels.clone());
        e.family(
            "runs_total",
            Counter,
            "Runs ended, by outcome.",
            &[
                ("outcome=\"finished\"", get(&self.runs_finished).to_string()),
                ("outcome=\"stopped\"", get(&self.runs_stopped).to_string()),
                ("outcome=\"failed\"", get(&self.runs_failed).to_string()),
            ],
        )
        .single(
            "runs_skipped_total",
            Counter,
            "Scheduled runs skipped because the previous run was still going.",
            get(&self.runs_skipped).to_string(),
        )
        .single(
            "run_active",
            Gauge,
            "1 while a run is going.",
            get(&self.run_active).to_string(),
        )
        .single(
            "events_played_total",
            Counter,
            "Events played, all runs.",
            (get(&self.events_before) + get(&self.events_run)).to_string(),
        )
        .single(
            "transactions_applied_total",
            Counter,
            "Transactions committed into a Statehouse target, all runs.",
            (get(&self.applied_before) + get(&self.applied_run)).to_string(),
        )
        .single(
            "state_mismatches_total",
            Counter,
            "Runs whose target state differed from the expected state.",
            get(&self.mismatches).to_string(),
        )
        .single(
            "progress_ratio",
            Gauge,
            "Share of the current (or last) run's range played.",
            format!("{:.6}", get(&self.progress_ppm) as f64 / 1e6),
        )
        .single(
            "rate_events_per_second",
            Gauge,
            "Achieved rate of the current run.",
            format!("{:.3}", get(&self.rate_milli) as f64 / 1e3),
        )
        .single(
            "target_rate_events_per_second",
            Gauge,
            "Target rate of the pace (0: as fast as possible).",
            format!("{:.3}", get(&self.target_rate_milli) as f64 / 1e3),
        )
        .single(
            "lag_seconds",
            Gauge,
            "How far behind schedule the last event was played.",
            format!("{:.6}", get(&self.lag_us) as f64 / 1e6),
        )
        .single(
            "last_run_end_timestamp_seconds",
            Gauge,
            "When the last run ended (Unix time).",
            get(&self.last_end_s).to_string(),
        )
        .single(
            "last_run_duration_seconds",
            Gauge,
            "How long the last run took.",
            format!("{:.3}", get(&self.last_duration_ms) as f64 / 1e3),
        );
        e.finish()
    }

    /// Follows the current run's stats.
    pub fn update(&self, s: &Stats, progress: f64, applied: Option<&ApplyStats>) {
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

    /// A run starts.
    pub fn run_started(&self) {
        self.run_active.store(1, Relaxed);
        self.events_run.store(0, Relaxed);
        self.applied_run.store(0, Relaxed);
    }

    /// A run ended (with its outcome, or `None` when it could not start).
    pub fn run_ended(&self, outcome: Option<Outcome>, duration_ms: u64) {
        self.run_active.store(0, Relaxed);
        self.events_before
            .fetch_add(self.events_run.swap(0, Relaxed), Relaxed);
        self.applied_before
            .fetch_add(self.applied_run.swap(0, Relaxed), Relaxed);
        self.last_end_s
            .store(Utc::now().timestamp().max(0) as u64, Relaxed);
        match outcome {
            Some(Outcome::Finished) => self.runs_finished.fetch_add(1, Relaxed),
            Some(Outcome::Stopped) => self.runs_stopped.fetch_add(1, Relaxed),
            Some(Outcome::Failed { .. }) | None => self.runs_failed.fetch_add(1, Relaxed),
        };
        if outcome.is_some() {
            self.last_duration_ms.store(duration_ms, Relaxed);
        }
    }
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn append_report(plan: &PlayPlan, line: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_labels() {
        let m = PlayMetrics::new(Some("n1"), "statehouse");
        m.runs_finished.store(2, Relaxed);
        m.progress_ppm.store(500_000, Relaxed);
        let text = m.render();
        assert!(text.contains(
            "replayscope_play_runs_total{node_id=\"n1\",target_type=\"statehouse\",outcome=\"finished\"} 2"
        ), "{text}");
        assert!(text.contains("replayscope_play_progress_ratio{node_id=\"n1\",target_type=\"statehouse\"} 0.500000"), "{text}");
    }
}
