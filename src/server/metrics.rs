//! Server counters and the Prometheus text endpoint (`--metrics ADDR`, `GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Which RPC a counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Replay,
    Session,
}

impl Rpc {
    fn label(self) -> &'static str {
        match self {
            Rpc::Replay => "replay",
            Rpc::Session => "session",
        }
    }
}

#[derive(Debug, Default)]
struct PerRpc {
    started: AtomicU64,
    active: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
}

/// Live numbers a session reports for the in-flight and ring gauges.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionGauges {
    pub in_flight_bytes: u64,
    pub ring_bytes: u64,
    /// The producer is waiting for the client's acks.
    pub waiting_for_credit: bool,
}

/// Gauges summed over sessions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GaugeTotals {
    pub in_flight_bytes: u64,
    pub ring_bytes: u64,
    pub waiting_for_credit: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    replay: PerRpc,
    session: PerRpc,
    /// Events the server read from the archive (sent or filtered out).
    events_read: AtomicU64,
    resumes_ring: AtomicU64,
    resumes_archive: AtomicU64,
    sessions_reaped: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    gauges: Mutex<BTreeMap<String, SessionGauges>>,
}

impl Metrics {
    fn rpc(&self, rpc: Rpc) -> &PerRpc {
        match rpc {
            Rpc::Replay => &self.replay,
            Rpc::Session => &self.session,
        }
    }

    pub fn stream_started(&self, rpc: Rpc) {
        self.rpc(rpc).started.fetch_add(1, Relaxed);
        self.rpc(rpc).active.fetch_add(1, Relaxed);
    }

    pub fn stream_ended(&self, rpc: Rpc) {
        self.rpc(rpc).active.fetch_sub(1, Relaxed);
    }

    pub fn active(&self, rpc: Rpc) -> u64 {
        self.rpc(rpc).active.load(Relaxed)
    }

    pub fn active_streams(&self) -> u64 {
        self.active(Rpc::Replay) + self.active(Rpc::Session)
    }

    pub fn sent(&self, rpc: Rpc, events: u64, bytes: u64) {
        self.rpc(rpc).events.fetch_add(events, Relaxed);
        self.rpc(rpc).bytes.fetch_add(bytes, Relaxed);
    }

    pub fn events_sent(&self, rpc: Rpc) -> u64 {
        self.rpc(rpc).events.load(Relaxed)
    }

    pub fn read(&self, events: u64) {
        self.events_read.fetch_add(events, Relaxed);
    }

    pub fn events_read(&self) -> u64 {
        self.events_read.load(Relaxed)
    }

    pub fn resumed(&self, from_ring: bool) {
        if from_ring {
            &self.resumes_ring
        } else {
            &self.resumes_archive
        }
        .fetch_add(1, Relaxed);
    }

    pub fn resumes(&self) -> (u64, u64) {
        (
            self.resumes_ring.load(Relaxed),
            self.resumes_archive.load(Relaxed),
        )
    }

    pub fn reaped(&self) {
        self.sessions_reaped.fetch_add(1, Relaxed);
    }

    pub fn sessions_reaped(&self) -> u64 {
        self.sessions_reaped.load(Relaxed)
    }

    pub fn error(&self, code: tonic::Code) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(code_label(code)).or_default() += 1;
    }

    pub fn errors(&self, code: tonic::Code) -> u64 {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.get(code_label(code)).copied().unwrap_or(0)
    }

    pub fn set_gauges(&self, session: &str, g: SessionGauges) {
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        gauges.insert(session.to_string(), g);
    }

    pub fn remove_gauges(&self, session: &str) {
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        gauges.remove(session);
    }

    /// In-flight and ring bytes summed over live sessions.
    pub fn totals(&self) -> GaugeTotals {
        let gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        gauges
            .values()
            .fold(GaugeTotals::default(), |a, g| GaugeTotals {
                in_flight_bytes: a.in_flight_bytes + g.in_flight_bytes,
                ring_bytes: a.ring_bytes + g.ring_bytes,
                waiting_for_credit: a.waiting_for_credit + u64::from(g.waiting_for_credit),
            })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP replayscope_{name} {help}");
            let _ = writeln!(out, "# TYPE replayscope_{name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "replayscope_{name}{labels} {v}");
            }
        };
        let per = |f: fn(&PerRpc) -> u64| -> Vec<(String, u64)> {
            [Rpc::Replay, Rpc::Session]
                .iter()
                .map(|&r| (format!("{{rpc=\"{}\"}}", r.label()), f(self.rpc(r))))
                .collect()
        };
        family(
            "streams_started_total",
            "counter",
            "Replay and Session streams opened.",
            &per(|p| p.started.load(Relaxed)),
        );
        family(
            "streams_active",
            "gauge",
            "Streams being served now.",
            &per(|p| p.active.load(Relaxed)),
        );
        family(
            "events_sent_total",
            "counter",
            "Events sent to clients.",
            &per(|p| p.events.load(Relaxed)),
        );
        family(
            "bytes_sent_total",
            "counter",
            "Encoded event bytes sent to clients.",
            &per(|p| p.bytes.load(Relaxed)),
        );
        family(
            "events_read_total",
            "counter",
            "Events read from the archive (sent or filtered out).",
            &[(String::new(), self.events_read())],
        );
        let totals = self.totals();
        family(
            "in_flight_bytes",
            "gauge",
            "Session bytes sent and not yet acknowledged, over all sessions.",
            &[(String::new(), totals.in_flight_bytes)],
        );
        family(
            "ring_bytes",
            "gauge",
            "Bytes held by the sessions' replay rings.",
            &[(String::new(), totals.ring_bytes)],
        );
        family(
            "sessions_waiting_for_credit",
            "gauge",
            "Sessions whose window is full, waiting for the client's acks.",
            &[(String::new(), totals.waiting_for_credit)],
        );
        let (ring, archive) = self.resumes();
        family(
            "resumes_total",
            "counter",
            "Sessions resumed, from the replay ring or by re-reading the archive.",
            &[
                ("{from=\"ring\"}".into(), ring),
                ("{from=\"archive\"}".into(), archive),
            ],
        );
        family(
            "sessions_reaped_total",
            "counter",
            "Sessions cancelled by the idle watchdog.",
            &[(String::new(), self.sessions_reaped())],
        );
        let errors: Vec<(String, u64)> = self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(code, n)| (format!("{{code=\"{code}\"}}"), *n))
            .collect();
        family(
            "errors_total",
            "counter",
            "Streams and calls that ended with an error, by gRPC status code.",
            &errors,
        );
        out
    }
}

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Renders the Prometheus text of whatever is being measured.
pub type Render = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` (HTTP/1.1, one response per connection) until `stop`, each response
/// rendered by `render`.
pub async fn serve_metrics(listener: TcpListener, render: Render, stop: CancellationToken) {
    loop {
        let (mut conn, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    continue;
                }
            },
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read the request head (bounded: 8 KiB, 5 s).
            let head = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if head.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(req.split(|&b| b == b'\n').next().unwrap_or(&[]))
                .trim()
                .to_string();
            let (status, content_type, body) = match line.split_whitespace().collect::<Vec<_>>()[..]
            {
                ["GET", "/metrics", ..] => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    render(),
                ),
                ["GET", ..] => (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "not found: metrics are at /metrics\n".to_string(),
                ),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain; charset=utf-8",
                    "only GET /metrics is served\n".to_string(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = conn.write_all(resp.as_bytes()).await {
                tracing::debug!(%peer, error = %e, "metrics endpoint: write failed");
            }
            let _ = conn.shutdown().await;
        });
    }
}
