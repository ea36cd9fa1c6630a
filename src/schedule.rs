//! When runs happen: once, every DURATION, or on a cron expression. Runs never overlap: a run
//! that is due while the previous one is still going is skipped (and counted), not started
//! twice.

pub mod cron;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use cron::Cron;

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Once,
    /// At the start, then every interval after it.
    Every(Duration),
    /// At each time the expression matches (UTC); the first run waits for the first match.
    Cron(Cron),
}

impl Schedule {
    pub fn is_once(&self) -> bool {
        matches!(self, Schedule::Once)
    }

    pub fn describe(&self) -> String {
        match self {
            Schedule::Once => "once".to_string(),
            Schedule::Every(d) => format!("every {d:?}"),
            Schedule::Cron(c) => format!("cron \"{c}\" (UTC)"),
        }
    }
}

/// Computes due times.
#[derive(Debug, Clone)]
pub struct Scheduler {
    schedule: Schedule,
    anchor: DateTime<Utc>,
}

impl Scheduler {
    /// A scheduler whose `--every` grid starts at `now`.
    pub fn new(schedule: Schedule, now: DateTime<Utc>) -> Scheduler {
        Scheduler {
            schedule,
            anchor: now,
        }
    }

    /// When the first run is due.
    pub fn first(&self) -> Option<DateTime<Utc>> {
        match &self.schedule {
            Schedule::Once | Schedule::Every(_) => Some(self.anchor),
            Schedule::Cron(c) => c.next_after(self.anchor - chrono::Duration::seconds(1)),
        }
    }

    /// After the run due at `due` ended at `now`: when the next run is due (None: never) and
    /// how many due times passed while it was going (those runs are skipped).
    pub fn after(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, u64) {
        match &self.schedule {
            Schedule::Once => (None, 0),
            Schedule::Every(every) => {
                let step = chrono::Duration::from_std(*every)
                    .unwrap_or(chrono::Duration::MAX)
                    .max(chrono::Duration::milliseconds(1));
                let mut next = due + step;
                let mut skipped = 0;
                while next <= now {
                    skipped += 1;
                    next += step;
                }
                (Some(next), skipped)
            }
            Schedule::Cron(c) => {
                let mut skipped = 0;
                let mut next = c.next_after(due);
                while let Some(t) = next {
                    if t > now {
                        break;
                    }
                    skipped += 1;
                    next = c.next_after(t);
                }
                (next, skipped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_skips_what_was_due_during_a_long_run() {
        let start = at("2026-11-23T12:00:00Z");
        let s = Scheduler::new(Schedule::Every(Duration::from_secs(60)), start);
        assert_eq!(s.first(), Some(start));
        // A short run: the next one is on the grid, nothing skipped.
        assert_eq!(
            s.after(start, at("2026-11-23T12:00:10Z")),
            (Some(at("2026-11-23T12:01:00Z")), 0)
        );
        // A run of 2.5 minutes: the runs due at 12:01 and 12:02 are skipped.
        assert_eq!(
            s.after(start, at("2026-11-23T12:02:30Z")),
            (Some(at("2026-11-23T12:03:00Z")), 2)
        );
        // Ending exactly on a due time counts it as missed (it was due while running).
        assert_eq!(
            s.after(start, at("2026-11-23T12:01:00Z")),
            (Some(at("2026-11-23T12:02:00Z")), 1)
        );
    }

    #[test]
    fn cron_waits_for_its_first_match_and_skips_overlaps() {
        let s = Scheduler::new(
            Schedule::Cron("*/10 * * * *".parse().unwrap()),
            at("2026-11-23T12:03:00Z"),
        );
        let first = s.first().unwrap();
        assert_eq!(first, at("2026-11-23T12:10:00Z"));
        assert_eq!(
            s.after(first, at("2026-11-23T12:31:00Z")),
            (Some(at("2026-11-23T12:40:00Z")), 2)
        );
        // Started exactly on a match: that match is the first run.
        let s = Scheduler::new(
            Schedule::Cron("*/10 * * * *".parse().unwrap()),
            at("2026-11-23T12:10:00Z"),
        );
        assert_eq!(s.first(), Some(at("2026-11-23T12:10:00Z")));
    }

    #[test]
    fn once_runs_once() {
        let now = at("2026-11-23T12:00:00Z");
        let s = Scheduler::new(Schedule::Once, now);
        assert_eq!(s.first(), Some(now));
        assert_eq!(s.after(now, now), (None, 0));
    }
}
