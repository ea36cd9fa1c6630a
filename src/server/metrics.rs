//! The server's counters (`serve --metrics ADDR`), written by [`crate::metrics`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::archive::cache::CacheStats;
use crate::metrics::{Exposition, MetricKind};

/// Which RPC a counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Replay,
    Session,
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

    /// The Prometheus text exposition, with the source's chunk cache when it has one.
    pub fn render(&self, cache: Option<CacheStats>) -> String {
        use MetricKind::{Counter, Gauge};
        let per = |f: fn(&PerRpc) -> u64| -> Vec<(&'static str, String)> {
            [
                (Rpc::Replay, "rpc=\"replay\""),
                (Rpc::Session, "rpc=\"session\""),
            ]
            .iter()
            .map(|&(r, labels)| (labels, f(self.rpc(r)).to_string()))
            .collect()
        };
        let totals = self.totals();
        let (ring, archive) = self.resumes();
        let errors: Vec<(String, String)> = self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(code, n)| (format!("code=\"{code}\""), n.to_string()))
            .collect();
        let errors: Vec<(&str, String)> = errors
            .iter()
            .map(|(l, v)| (l.as_str(), v.clone()))
            .collect();
        let mut e = Exposition::new("replayscope_", "");
        e.family(
            "streams_started_total",
            Counter,
            "Replay and Session streams opened.",
            &per(|p| p.started.load(Relaxed)),
        )
        .family(
            "streams_active",
            Gauge,
            "Streams being served now.",
            &per(|p| p.active.load(Relaxed)),
        )
        .family(
            "events_sent_total",
            Counter,
            "Events sent to clients.",
            &per(|p| p.events.load(Relaxed)),
        )
        .family(
            "bytes_sent_total",
            Counter,
            "Encoded event bytes sent to clients.",
            &per(|p| p.bytes.load(Relaxed)),
        )
        .single(
            "events_read_total",
            Counter,
            "Events read from the archive (sent or filtered out).",
            self.events_read().to_string(),
        )
        .single(
            "in_flight_bytes",
            Gauge,
            "Session bytes sent and not yet acknowledged, over all sessions.",
            totals.in_flight_bytes.to_string(),
        )
        .single(
            "ring_bytes",
            Gauge,
            "Bytes held by the sessions' replay rings.",
            totals.ring_bytes.to_string(),
        )
        .single(
            "sessions_waiting_for_credit",
            Gauge,
            "Sessions whose window is full, waiting for the client's acks.",
            totals.waiting_for_credit.to_string(),
        )
        .family(
            "resumes_total",
            Counter,
            "Sessions resumed, from the replay ring or by re-reading the archive.",
            &[
                ("from=\"ring\"", ring.to_string()),
                ("from=\"archive\"", archive.to_string()),
            ],
        )
        .single(
            "sessions_reaped_total",
            Counter,
            "Sessions cancelled by the idle watchdog.",
            self.sessions_reaped().to_string(),
        )
        .family(
            "errors_total",
            Counter,
            "Streams and calls that ended with an error, by gRPC status code.",
            &errors,
        );
        if let Some(c) = cache {
            for (name, kind, help, value) in [
                (
                    "chunk_cache_bytes",
                    Gauge,
                    "Decompressed chunks held for all streams (with where their messages are).",
                    c.bytes,
                ),
                (
                    "chunk_cache_budget_bytes",
                    Gauge,
                    "The most the chunk cache holds (serve --cache).",
                    c.budget,
                ),
                (
                    "chunk_cache_hits_total",
                    Counter,
                    "Chunks read from the cache instead of decompressed.",
                    c.hits,
                ),
                (
                    "chunk_cache_misses_total",
                    Counter,
                    "Chunks read and decompressed (then held while they fit).",
                    c.misses,
                ),
            ] {
                e.single(name, kind, help, value.to_string());
            }
        }
        e.finish()
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
