//! The one reconnect state machine of the remote sources (replayscope:// and statehouse://), in
//! the spirit of tokio-console's `conn.rs`: a failure is either an answer (given to the user
//! at once) or a lost endpoint, retried after a capped exponential backoff with jitter until
//! the attempts run out. While it waits, the source's status line says so ("reconnecting
//! (attempt 2, next in 0.8s, last error: …)"), and the first delivery after it clears it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a remote source retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after a failure before giving up (0 = never retry).
    pub max_attempts: u32,
    pub initial: Duration,
    /// Backoff cap (the delay never grows beyond it).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `n` (1-based): `min(initial * 2^(n-1), max)`, minus up to 25 %
    /// jitter so that many clients do not retry in step.
    pub fn delay(&self, n: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
            .min(self.max);
        let jitter = (crate::event::now_ns() % 1000) as f64 / 1000.0 * 0.25;
        base.mul_f64(1.0 - jitter)
    }
}

/// Whether a gRPC status means the endpoint went away (worth retrying) rather than an answer.
pub fn is_retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    ) || s.code() == tonic::Code::Internal && s.message().contains("h2")
}

/// What a source is going through ("reconnecting (…)"), written by its reconnect state
/// machine and read by [`crate::source::Source::status`].
#[derive(Debug, Clone, Default)]
pub struct StatusLine(Arc<Mutex<Option<String>>>);

impl StatusLine {
    /// The line now (`None` while the source simply delivers).
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, line: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = line;
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// The backoff has passed: try again now.
    Now,
    /// Do not retry: the message says why (the answer, or the attempts ran out).
    GiveUp(String),
    /// The consumer went away while waiting.
    Cancelled,
}

/// Whether the endpoint is being reached for the first time or again after a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Reconnecting,
}

/// Attempts, backoff and the status line of one stream (or one connect).
pub struct Reconnect {
    endpoint: String,
    policy: RetryPolicy,
    phase: Phase,
    attempt: u32,
    status: StatusLine,
}

impl Reconnect {
    pub fn new(endpoint: &str, policy: RetryPolicy, phase: Phase, status: StatusLine) -> Self {
        Reconnect {
            endpoint: endpoint.to_string(),
            policy,
            phase,
            attempt: 0,
            status,
        }
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The stream delivers again: the status line clears and the reconnection is logged.
    pub fn delivered(&mut self, resume: impl std::fmt::Debug) {
        if self.attempt > 0 {
            self.attempt = 0;
            self.status.set(None);
            tracing::info!(endpoint = %self.endpoint, resume = ?resume, "reconnected");
        }
    }

    /// After a failed gRPC call or stream: gives up on an answer, otherwise waits the backoff
    /// (ending early when `cancelled` completes).
    pub async fn after_status(
        &mut self,
        failure: &tonic::Status,
        cancelled: impl Future<Output = ()>,
    ) -> Retry {
        if !is_retryable(failure) {
            self.status.set(None);
            return Retry::GiveUp(format!("{} ({:?})", failure.message(), failure.code()));
        }
        self.after_failure(failure.message(), cancelled).await
    }

    /// After a failure worth retrying (the endpoint is unreachable or went away).
    pub async fn after_failure(
        &mut self,
        last_error: impl std::fmt::Display,
        cancelled: impl Future<Output = ()>,
    ) -> Retry {
        self.attempt += 1;
        if self.attempt > self.policy.max_attempts {
            self.status.set(None);
            let retries = self.policy.max_attempts;
            return Retry::GiveUp(match self.phase {
                Phase::Connecting if retries == 0 => last_error.to_string(),
                Phase::Connecting => format!("{last_error} (gave up after {retries} retries)"),
                Phase::Reconnecting => format!(
                    "gave up after {retries} reconnection attempts; last error: {last_error}"
                ),
            });
        }
        let delay = self.policy.delay(self.attempt);
        let verb = match self.phase {
            Phase::Connecting => "connecting",
            Phase::Reconnecting => "reconnecting",
        };
        let line = format!(
            "{verb} (attempt {}, next in {:.1}s, last error: {last_error})",
            self.attempt,
            delay.as_secs_f64()
        );
        tracing::warn!(
            endpoint = %self.endpoint,
            attempt = self.attempt,
            next_in_ms = delay.as_millis() as u64,
            "{line}"
        );
        self.status.set(Some(line));
        tokio::select! {
            biased;
            _ = cancelled => Retry::Cancelled,
            _ = tokio::time::sleep(delay) => Retry::Now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        for n in 1..40 {
            let d = p.delay(n);
            assert!(d <= p.max, "attempt {n}: {d:?}");
            let base = p.initial.saturating_mul(1 << (n - 1).min(16)).min(p.max);
            assert!(d >= base.mul_f64(0.75), "attempt {n}: {d:?} below {base:?}");
        }
    }

    #[tokio::test]
    async fn retries_then_gives_up_and_the_status_line_follows() {
        let status = StatusLine::default();
        let mut r = Reconnect::new("e", quick(2), Phase::Reconnecting, status.clone());
        let lost = tonic::Status::unavailable("gone");
        assert_eq!(
            r.after_status(&lost, std::future::pending()).await,
            Retry::Now
        );
        let line = status.get().unwrap();
        assert!(
            line.starts_with("reconnecting (attempt 1, next in"),
            "{line}"
        );
        assert_eq!(
            r.after_status(&lost, std::future::pending()).await,
            Retry::Now
        );
        let Retry::GiveUp(m) = r.after_status(&lost, std::future::pending()).await else {
            panic!("a third failure gives up")
        };
        assert_eq!(m, "gave up after 2 reconnection attempts; last error: gone");
        assert!(status.get().is_none());
    }

    #[tokio::test]
    async fn an_answer_is_not_retried_and_delivery_resets_the_attempts() {
        let status = StatusLine::default();
        let mut r = Reconnect::new("e", quick(5), Phase::Reconnecting, status.clone());
        let lost = tonic::Status::unavailable("gone");
        assert_eq!(
            r.after_status(&lost, std::future::pending()).await,
            Retry::Now
        );
        r.delivered(7u64);
        assert_eq!(r.attempts(), 0);
        assert!(status.get().is_none());
        let answer = tonic::Status::out_of_range("offset 9 is past the end");
        assert_eq!(
            r.after_status(&answer, std::future::pending()).await,
            Retry::GiveUp("offset 9 is past the end (OutOfRange)".into())
        );
        assert!(is_retryable(&tonic::Status::internal("h2 protocol error")));
        assert!(!is_retryable(&tonic::Status::internal("bad")));
    }

    #[tokio::test]
    async fn connecting_names_the_retries_and_a_closed_consumer_cancels() {
        let mut r = Reconnect::new("e", quick(1), Phase::Connecting, StatusLine::default());
        assert_eq!(r.after_failure("refused", async {}).await, Retry::Cancelled);
        assert_eq!(
            r.after_failure("refused", std::future::pending()).await,
            Retry::GiveUp("refused (gave up after 1 retries)".into())
        );
        let mut never = Reconnect::new("e", quick(0), Phase::Connecting, StatusLine::default());
        assert_eq!(
            never.after_failure("refused", std::future::pending()).await,
            Retry::GiveUp("refused".into())
        );
    }
}
