//! The idle watchdog: a session with neither a send nor an ack for `idle` is cancelled and its
//! resources freed. One task checks every `clamp(idle / 10, 100 ms, 2 s)` (a cancel comes at most a tenth late); it holds only a weak
//! reference to the registry, so dropping the registry ends the task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Entry {
    last_activity: Instant,
    cancel: CancellationToken,
}

struct Registry {
    idle: Duration,
    sessions: Mutex<HashMap<u64, Entry>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Watches sessions for inactivity. Cheap to clone.
#[derive(Clone)]
pub struct Watchdog {
    registry: Arc<Registry>,
}

/// A registered session. `touch` on every send or ack; dropping it unregisters the session.
pub struct WatchedSession {
    id: u64,
    registry: Weak<Registry>,
    cancel: CancellationToken,
}

impl Watchdog {
    /// Starts the checking task on the current tokio runtime.
    pub fn start(idle: Duration) -> Watchdog {
        let registry = Arc::new(Registry {
            idle,
            sessions: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&registry);
        let tick = Self::tick_for(idle);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                let now = Instant::now();
                let mut sessions = registry.sessions.lock().unwrap_or_else(|p| p.into_inner());
                sessions.retain(|id, e| {
                    if now.duration_since(e.last_activity) >= registry.idle {
                        tracing::info!(
                            session = id,
                            idle_s = registry.idle.as_secs_f64(),
                            "idle session cancelled by the watchdog"
                        );
                        e.cancel.cancel();
                        false
                    } else {
                        true
                    }
                });
            }
        });
        Watchdog { registry }
    }

    /// How often the task checks: `clamp(idle / 10, 100 ms, 2 s)`.
    pub fn tick_for(idle: Duration) -> Duration {
        (idle / 10).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    pub fn register(&self) -> WatchedSession {
        let id = self
            .registry
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cancel = CancellationToken::new();
        self.registry
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Entry {
                    last_activity: Instant::now(),
                    cancel: cancel.clone(),
                },
            );
        WatchedSession {
            id,
            registry: Arc::downgrade(&self.registry),
            cancel,
        }
    }

    pub fn sessions(&self) -> usize {
        self.registry
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl WatchedSession {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records activity (a send or an ack).
    pub fn touch(&self) {
        if let Some(r) = self.registry.upgrade()
            && let Some(e) = r
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&self.id)
        {
            e.last_activity = Instant::now();
        }
    }

    /// Cancelled when the watchdog reaps the session.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }
}

impl Drop for WatchedSession {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cancels_a_session_idle_past_its_timeout() {
        let w = Watchdog::start(Duration::from_secs(8));
        let busy = w.register();
        let idle = w.register();
        let start = Instant::now();
        // keep `busy` active every second for 20 s
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            busy.touch();
        }
        assert!(idle.cancelled().is_cancelled());
        assert!(!busy.cancelled().is_cancelled());
        assert_eq!(w.sessions(), 1);
        // reaped no earlier than the timeout and within one tick after it
        let idle2 = w.register();
        let t0 = Instant::now();
        idle2.cancelled().cancelled().await;
        let waited = Instant::now() - t0;
        assert!(waited >= Duration::from_secs(8), "{waited:?}");
        assert!(waited <= Duration::from_secs(8) + Watchdog::tick_for(Duration::from_secs(8)));
        let _ = start;
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_keep_a_dropped_registry_alive() {
        let w = Watchdog::start(Duration::from_secs(4));
        let weak = Arc::downgrade(&w.registry);
        let s = w.register();
        drop(w);
        // the checking task only holds a weak reference: the registry is gone now
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(weak.upgrade().is_none());
        drop(s); // unregistering after the registry is gone is fine
    }

    #[test]
    fn tick_is_clamped() {
        assert_eq!(
            Watchdog::tick_for(Duration::from_secs(60)),
            Duration::from_secs(2)
        );
        assert_eq!(
            Watchdog::tick_for(Duration::from_millis(500)),
            Duration::from_millis(100)
        );
        assert_eq!(
            Watchdog::tick_for(Duration::from_secs(12)),
            Duration::from_millis(1200)
        );
    }
}
