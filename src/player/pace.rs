//! Pacing: when each event is due.
//!
//! Realtime deadlines are absolute: `anchor + (t_eff(i) - t_eff(anchor)) / speed`, where
//! `t_eff` is the event's time with idle gaps capped at `max_gap`. Nothing accumulates, so
//! playback does not drift however long it runs. After a pause, a speed change or a seek the
//! schedule is re-anchored at that moment: on resume or speed change the next event is due one
//! (capped, scaled) gap after the last one played; after a seek (or at the start) the next event
//! is due at once.

use std::time::Duration;

use tokio::time::Instant;

use crate::event::Event;

/// How fast to play.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Pace {
    /// Commit-time deltas divided by `speed` (0.001x to 100x: a session of a few seconds can
    /// be watched over minutes).
    Realtime { speed: f64 },
    /// As fast as the sink takes them.
    #[default]
    Fast,
    /// A fixed number of events per second.
    Rate { events_per_sec: f64 },
}

pub const MIN_SPEED: f64 = 0.001;
pub const MAX_SPEED: f64 = 100.0;

/// The speeds `+` and `-` step through: a fixed ladder, so stepping down and up again comes
/// back exactly (halving and doubling drifted: 15x, 7.5x … 0.64x, 10.24x).
pub const SPEED_LADDER: [f64; 23] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0,
];

impl Pace {
    /// One step faster (`up`) or slower: realtime moves to the next speed of the ladder, a
    /// fixed rate doubles or halves, as fast as possible goes to realtime 100x / 1x.
    pub fn stepped(self, up: bool) -> Pace {
        match self {
            Pace::Realtime { speed } => {
                let next = if up {
                    SPEED_LADDER.iter().copied().find(|&s| s > speed * 1.0001)
                } else {
                    SPEED_LADDER
                        .iter()
                        .rev()
                        .copied()
                        .find(|&s| s < speed * 0.9999)
                };
                Pace::Realtime {
                    speed: next.unwrap_or(speed),
                }
            }
            Pace::Rate { events_per_sec } => Pace::Rate {
                events_per_sec: if up {
                    events_per_sec * 2.0
                } else {
                    (events_per_sec / 2.0).max(1.0)
                },
            }
            .clamped(),
            Pace::Fast => Pace::Realtime {
                speed: if up { MAX_SPEED } else { 1.0 },
            },
        }
    }

    /// The next pace of the `p` cycle: realtime -> as fast as possible -> 100 events/s.
    pub fn cycled(self) -> Pace {
        match self {
            Pace::Realtime { .. } => Pace::Fast,
            Pace::Fast => Pace::Rate {
                events_per_sec: 100.0,
            },
            Pace::Rate { .. } => Pace::Realtime { speed: 1.0 },
        }
    }

    pub fn label(&self) -> String {
        match self {
            Pace::Realtime { speed } => format!("realtime {}x", trim_float(*speed)),
            Pace::Fast => "as fast as possible".to_string(),
            Pace::Rate { events_per_sec } => format!("{} events/s", trim_float(*events_per_sec)),
        }
    }

    /// Clamps the speed / rate into the supported range.
    pub fn clamped(self) -> Pace {
        match self {
            Pace::Realtime { speed } => Pace::Realtime {
                speed: if speed.is_finite() {
                    speed.clamp(MIN_SPEED, MAX_SPEED)
                } else {
                    1.0
                },
            },
            Pace::Rate { events_per_sec } => Pace::Rate {
                events_per_sec: if events_per_sec.is_finite() && events_per_sec > 0.0 {
                    events_per_sec.min(1e9)
                } else {
                    1.0
                },
            },
            Pace::Fast => Pace::Fast,
        }
    }
}

pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Computes deadlines for a sequence of events.
#[derive(Debug, Clone)]
pub struct Pacer {
    pace: Pace,
    max_gap: Option<Duration>,
    tick: Duration,
    anchor: Instant,
    /// Effective time (ns) that maps to `anchor`; `None` = the next event sets it (due at once).
    anchor_eff: Option<u128>,
    /// Raw and effective time of the last event played.
    last: Option<(u64, u128)>,
    /// Events played since the anchor (Rate pace).
    since_anchor: u64,
    /// Rate pace: the next event is one interval after the anchor instead of at it.
    rate_offset: u64,
}

impl Pacer {
    pub fn new(pace: Pace, max_gap: Option<Duration>, tick: Duration, now: Instant) -> Pacer {
        Pacer {
            pace: pace.clamped(),
            max_gap,
            tick,
            anchor: now,
            anchor_eff: None,
            last: None,
            since_anchor: 0,
            rate_offset: 0,
        }
    }

    pub fn pace(&self) -> Pace {
        self.pace
    }

    /// The event's time in ns: its wall-clock commit time, else commit_ts logical ticks.
    pub fn event_time(&self, e: &Event) -> u64 {
        e.commit_time_ns
            .unwrap_or_else(|| e.commit_ts.saturating_mul(self.tick.as_nanos() as u64))
    }

    fn effective(&self, t: u64) -> u128 {
        match self.last {
            None => t as u128,
            Some((last_t, last_eff)) => {
                let mut gap = t.saturating_sub(last_t) as u128;
                if let Some(max) = self.max_gap {
                    gap = gap.min(max.as_nanos());
                }
                last_eff + gap
            }
        }
    }

    /// When `next` is due (`None`: at once — Fast pace).
    pub fn deadline(&mut self, next: &Event) -> Option<Instant> {
        match self.pace {
            Pace::Fast => None,
            Pace::Rate { events_per_sec } => {
                let n = self.since_anchor + self.rate_offset;
                let secs = n as f64 / events_per_sec;
                Some(self.anchor + Duration::from_secs_f64(secs))
            }
            Pace::Realtime { speed } => {
                let eff = self.effective(self.event_time(next));
                let anchor_eff = *self.anchor_eff.get_or_insert(eff);
                let delta_ns = eff.saturating_sub(anchor_eff) as f64 / speed;
                Some(self.anchor + Duration::from_nanos(delta_ns.round() as u64))
            }
        }
    }

    /// Records that `e` was played.
    pub fn played(&mut self, e: &Event) {
        let t = self.event_time(e);
        let eff = self.effective(t);
        self.last = Some((t, eff));
        self.since_anchor += 1;
    }

    /// Restarts the schedule at `now` so that the next event is one gap after the last played
    /// (resume, speed or pace change).
    pub fn reanchor_continue(&mut self, now: Instant) {
        self.anchor = now;
        self.anchor_eff = self.last.map(|(_, eff)| eff);
        self.since_anchor = 0;
        self.rate_offset = 1;
    }

    /// Restarts the schedule at `now` with the next event due at once (start, seek).
    pub fn reanchor_now(&mut self, now: Instant) {
        self.anchor = now;
        self.anchor_eff = None;
        self.last = None;
        self.since_anchor = 0;
        self.rate_offset = 0;
    }

    pub fn set_pace(&mut self, pace: Pace, now: Instant) {
        self.pace = pace.clamped();
        self.reanchor_continue(now);
    }

    /// Events per second the pace aims at, where that is a number.
    pub fn target_rate(&self) -> Option<f64> {
        match self.pace {
            Pace::Rate { events_per_sec } => Some(events_per_sec),
            _ => None,
        }
    }
}

impl serde::Serialize for Pace {
    /// As its label ("realtime 1x", "as fast as possible", "500 events/s").
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_steps_come_back_exactly() {
        // 15 -> 10 -> 5 -> 3 -> 2 -> 1.5 -> 1, and back.
        let mut p = Pace::Realtime { speed: 15.0 };
        for _ in 0..6 {
            p = p.stepped(false);
        }
        assert_eq!(p, Pace::Realtime { speed: 1.0 });
        for _ in 0..6 {
            p = p.stepped(true);
        }
        assert_eq!(p, Pace::Realtime { speed: 15.0 });
        // Off the ladder (--speed 7): the next rung either way.
        assert_eq!(
            Pace::Realtime { speed: 7.0 }.stepped(true),
            Pace::Realtime { speed: 10.0 }
        );
        assert_eq!(
            Pace::Realtime { speed: 7.0 }.stepped(false),
            Pace::Realtime { speed: 5.0 }
        );
        // The ends hold.
        assert_eq!(
            Pace::Realtime { speed: MAX_SPEED }.stepped(true),
            Pace::Realtime { speed: MAX_SPEED }
        );
        assert_eq!(
            Pace::Realtime { speed: MIN_SPEED }.stepped(false),
            Pace::Realtime { speed: MIN_SPEED }
        );
        assert_eq!(Pace::Fast.cycled().cycled().cycled(), Pace::Fast);
    }
}
