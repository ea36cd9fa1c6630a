//! The credit window: a producer may have at most `window_bytes` of encoded events sent but not
//! acknowledged. Acks are cumulative by offset, capped at what was sent; stale acks are ignored.
//! A waiting producer wakes on an ack or on cancel, never by polling.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("cancelled")]
    Cancelled,
    #[error(
        "credit wait timed out: {in_flight} bytes in flight of a {window}-byte window, nothing acknowledged \
         past offset {acked}"
    )]
    TimedOut {
        in_flight: u64,
        window: u64,
        acked: String,
    },
}

/// What the window holds at one moment (for gauges and Credit frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreditSnapshot {
    /// Last offset sent, if any.
    pub sent_through: Option<u64>,
    /// Last offset acknowledged, if any.
    pub acked_through: Option<u64>,
    pub in_flight_bytes: u64,
    pub window_bytes: u64,
}

impl CreditSnapshot {
    /// Percent of the window in flight (can exceed 100 after an oversized batch).
    pub fn in_flight_pct(&self) -> u64 {
        if self.window_bytes == 0 {
            return 0;
        }
        self.in_flight_bytes * 100 / self.window_bytes
    }
}

#[derive(Debug)]
struct State {
    window: u64,
    /// Sent batches not yet acknowledged: (last offset, cumulative bytes sent through it).
    unacked: VecDeque<(u64, u64)>,
    sent_bytes: u64,
    acked_bytes: u64,
    sent_through: Option<u64>,
    acked_through: Option<u64>,
    cancelled: bool,
    /// A producer is waiting in `acquire` for acks.
    waiting: bool,
}

/// Shared between the producer (which `acquire`s before sending) and whoever receives the acks.
#[derive(Debug, Clone)]
pub struct CreditWindow {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl CreditWindow {
    pub fn new(window_bytes: u64) -> CreditWindow {
        CreditWindow {
            state: Arc::new(Mutex::new(State {
                window: window_bytes.max(1),
                unacked: VecDeque::new(),
                sent_bytes: 0,
                acked_bytes: 0,
                sent_through: None,
                acked_through: None,
                cancelled: false,
                waiting: false,
            })),
            changed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every operation, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a batch of `bytes` ending at `last_offset` may be sent, then records it as
    /// sent. Returns at once when the window has room; an oversized batch passes when nothing is
    /// in flight.
    pub async fn acquire(&self, bytes: u64, last_offset: u64) -> Result<(), FlowError> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register for a wake-up before checking, so an ack in between is not lost.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.cancelled {
                    s.waiting = false;
                    return Err(FlowError::Cancelled);
                }
                let in_flight = s.sent_bytes - s.acked_bytes;
                s.waiting = !(in_flight == 0 || in_flight + bytes <= s.window);
                if !s.waiting {
                    s.sent_bytes += bytes;
                    let cumulative = s.sent_bytes;
                    s.unacked.push_back((last_offset, cumulative));
                    s.sent_through = Some(last_offset);
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// `acquire` with a deadline.
    pub async fn acquire_until(
        &self,
        bytes: u64,
        last_offset: u64,
        deadline: Instant,
    ) -> Result<(), FlowError> {
        match tokio::time::timeout_at(deadline, self.acquire(bytes, last_offset)).await {
            Ok(r) => r,
            Err(_) => {
                let snap = self.snapshot();
                Err(FlowError::TimedOut {
                    in_flight: snap.in_flight_bytes,
                    window: snap.window_bytes,
                    acked: snap
                        .acked_through
                        .map_or_else(|| "(none)".to_string(), |o| o.to_string()),
                })
            }
        }
    }

    /// Cumulative ack of everything through `offset`. Capped at what was sent; an ack at or
    /// below the last one is ignored. Returns whether it released credit.
    pub fn ack(&self, offset: u64) -> bool {
        let mut s = self.lock();
        let Some(sent) = s.sent_through else {
            return false;
        };
        let through = offset.min(sent);
        if s.acked_through.is_some_and(|a| through <= a) {
            return false;
        }
        let mut released = false;
        while let Some(&(last, cumulative)) = s.unacked.front() {
            if last > through {
                break;
            }
            s.acked_bytes = cumulative;
            s.unacked.pop_front();
            released = true;
        }
        s.acked_through = Some(through);
        drop(s);
        if released {
            self.changed.notify_waiters();
        }
        released
    }

    /// Forgets everything in flight (after a seek: the old stream's batches will never be acked).
    pub fn reset(&self) {
        let mut s = self.lock();
        s.unacked.clear();
        s.acked_bytes = s.sent_bytes;
        s.sent_through = None;
        s.acked_through = None;
        drop(s);
        self.changed.notify_waiters();
    }

    /// Wakes every waiter with `Cancelled`; later acquires fail at once.
    pub fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_waiters();
    }

    /// Whether a producer is waiting for acks to send its next batch (the window is full).
    pub fn is_waiting(&self) -> bool {
        self.lock().waiting
    }

    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    pub fn set_window(&self, window_bytes: u64) {
        self.lock().window = window_bytes.max(1);
        self.changed.notify_waiters();
    }

    pub fn snapshot(&self) -> CreditSnapshot {
        let s = self.lock();
        CreditSnapshot {
            sent_through: s.sent_through,
            acked_through: s.acked_through,
            in_flight_bytes: s.sent_bytes - s.acked_bytes,
            window_bytes: s.window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn returns_at_once_when_the_window_has_room() {
        let w = CreditWindow::new(100);
        w.acquire(40, 0).await.unwrap();
        w.acquire(60, 1).await.unwrap();
        let s = w.snapshot();
        assert_eq!(s.in_flight_bytes, 100);
        assert_eq!(s.sent_through, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_when_full_and_wakes_on_ack() {
        let w = CreditWindow::new(100);
        w.acquire(80, 0).await.unwrap();
        let w2 = w.clone();
        let waiter = tokio::spawn(async move { w2.acquire(50, 1).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(w.is_waiting(), "the producer waits for acks");
        // a timer elapsing does not wake it: only an ack does
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished());
        assert!(w.ack(0));
        waiter.await.unwrap().unwrap();
        assert!(!w.is_waiting());
        assert_eq!(w.snapshot().in_flight_bytes, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_at_its_deadline() {
        let w = CreditWindow::new(10);
        w.acquire(10, 0).await.unwrap();
        let start = Instant::now();
        let err = w
            .acquire_until(5, 1, start + Duration::from_millis(250))
            .await
            .unwrap_err();
        assert_eq!(Instant::now() - start, Duration::from_millis(250));
        assert!(matches!(
            err,
            FlowError::TimedOut {
                in_flight: 10,
                window: 10,
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_wakes_every_waiter() {
        let w = CreditWindow::new(10);
        w.acquire(10, 0).await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move { w.acquire(5, i + 1).await })
            })
            .collect();
        tokio::task::yield_now().await;
        w.cancel();
        for h in waiters {
            assert_eq!(h.await.unwrap(), Err(FlowError::Cancelled));
        }
        assert_eq!(w.acquire(1, 9).await, Err(FlowError::Cancelled));
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_batch_passes_only_when_nothing_is_in_flight() {
        let w = CreditWindow::new(10);
        w.acquire(500, 0).await.unwrap();
        assert_eq!(w.snapshot().in_flight_pct(), 5000);
        let w2 = w.clone();
        let next = tokio::spawn(async move { w2.acquire(500, 1).await });
        tokio::task::yield_now().await;
        assert!(!next.is_finished());
        w.ack(0);
        next.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn acks_are_cumulative_capped_and_stale_ones_ignored() {
        let w = CreditWindow::new(1000);
        w.acquire(10, 4).await.unwrap(); // offsets ..=4
        w.acquire(20, 9).await.unwrap(); // ..=9
        w.acquire(30, 14).await.unwrap(); // ..=14
        // an ack inside a batch releases nothing of that batch
        assert!(!w.ack(3));
        assert_eq!(w.snapshot().in_flight_bytes, 60);
        // cumulative: through 9 releases the first two batches
        assert!(w.ack(9));
        assert_eq!(w.snapshot().in_flight_bytes, 30);
        // stale
        assert!(!w.ack(5));
        assert_eq!(w.snapshot().acked_through, Some(9));
        // capped at what was sent
        assert!(w.ack(1_000_000));
        let s = w.snapshot();
        assert_eq!(s.acked_through, Some(14));
        assert_eq!(s.in_flight_bytes, 0);
    }
}
