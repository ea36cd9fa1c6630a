//! `statehouse.v1.StatehouseService` served from a source: `Replay` streams one agent's events
//! as the stored bytes, one message per event. The source's producer reads ahead of the client
//! by at most a small credit window (constant memory), and a client that goes away stops the
//! reading. Every other Statehouse RPC answers UNIMPLEMENTED: this endpoint is read-only.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::{Request, Response, Status};

use super::metrics::Rpc;
use super::{FIRST_BATCH_EVENTS, ServerContext, StreamGuard, source_status};
use crate::event::Position;
use crate::flow::CreditWindow;
use crate::source::{Filter, StoredEvent, StoredStream, StreamRequest};
use crate::wire::codec::WireCodec;
use crate::wire::proto::statehouse::v1::ReplayRequest;

#[derive(Clone)]
pub struct StatehouseServer {
    shared: Arc<ServerContext>,
}

impl StatehouseServer {
    pub(super) fn new(shared: Arc<ServerContext>) -> Self {
        StatehouseServer { shared }
    }
}

impl NamedService for StatehouseServer {
    const NAME: &'static str = "statehouse.v1.StatehouseService";
}

const REPLAY_PATH: &str = "/statehouse.v1.StatehouseService/Replay";

impl Service<http::Request<Body>> for StatehouseServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() == REPLAY_PATH {
            let svc = ReplaySvc(self.shared.clone());
            return Box::pin(async move {
                let mut grpc = Grpc::new(WireCodec::<Bytes, ReplayRequest>::default());
                Ok(grpc.server_streaming(svc, req).await)
            });
        }
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        self.shared.metrics.error(tonic::Code::Unimplemented);
        let status = Status::unimplemented(format!(
            "statehouse.v1.StatehouseService/{method} is not available: this endpoint (replayscope serve) \
             serves archives read-only and answers only Replay"
        ));
        Box::pin(async move { Ok(status.into_http()) })
    }
}

struct ReplaySvc(Arc<ServerContext>);

impl ServerStreamingService<ReplayRequest> for ReplaySvc {
    type Response = Bytes;
    type ResponseStream = ReplayStream;
    type Future = BoxFuture<Response<ReplayStream>, Status>;

    fn call(&mut self, request: Request<ReplayRequest>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            let peer = request.remote_addr();
            let r = open_replay(&shared, request.into_inner(), peer);
            if let Err(status) = &r {
                shared.metrics.error(status.code());
                tracing::info!(code = ?status.code(), message = status.message(), "Replay rejected");
            }
            r.map(Response::new)
        })
    }
}

/// How far the source reads ahead of the batch being handed to tonic.
const REPLAY_WINDOW_BYTES: u64 = 1024 * 1024;

fn open_replay(
    shared: &Arc<ServerContext>,
    req: ReplayRequest,
    peer: Option<std::net::SocketAddr>,
) -> Result<ReplayStream, Status> {
    let opened_at = std::time::Instant::now();
    let info = shared.source.info_now();
    let agent = shared.agent(&req.namespace, &req.agent_id)?;
    let guard = shared.admit(Rpc::Replay, peer)?;
    // Where to start reading, and the start_ts the stream still skips to when that is coarse
    // (an archive's group: reading one agent, its own chunk of the group is all that is read
    // to find the first event, not every agent's).
    let (from, from_commit_ts) = match req.start_ts {
        // Past the end: an empty stream, as the Statehouse daemon answers.
        Some(ts) if info.last_commit_ts.is_none_or(|last| ts > last) => (None, None),
        Some(ts) => match shared.source.resolve_coarse(&Position::CommitTs(ts)) {
            Some(near) => (Some(near), Some(ts)),
            None => (Some(shared.resolve_from(Position::CommitTs(ts))?), None),
        },
        None => (info.first_offset, None),
    };
    let window = CreditWindow::new(REPLAY_WINDOW_BYTES);
    let stream = match from {
        None => None,
        Some(from) => Some(
            shared
                .source
                .open_stored(
                    StreamRequest {
                        from,
                        from_commit_ts,
                        // `end_ts` is applied on each event's commit_ts.
                        until_commit_ts: req.end_ts,
                        filter: Filter {
                            agent: Some(agent),
                            ..Filter::default()
                        },
                        batch_events: shared.options.batch_events.max(1),
                        first_batch_events: Some(FIRST_BATCH_EVENTS),
                        batch_bytes: Some(shared.options.batch_bytes.max(1)),
                        // Slices of the decompressed chunks, not copies: a Replay holds no ring,
                        // only its 1 MiB window of events (and so a few chunks) at a time.
                        compact_payloads: false,
                        chain: shared.options.chain,
                        ..StreamRequest::default()
                    },
                    window.clone(),
                )
                .map_err(|e| source_status(&e))?,
        ),
    };
    let positioned_after = opened_at.elapsed();
    tracing::info!(
        namespace = %req.namespace,
        agent_id = %req.agent_id,
        start_ts = ?req.start_ts,
        end_ts = ?req.end_ts,
        from = ?from,
        "Replay opened"
    );
    // A peer that stops reading (its HTTP/2 window closed) stops tonic polling this stream:
    // the watchdog then frees the slot and stops the reader.
    let watched = shared.watchdog.register();
    guard.release_when_idle(watched.cancelled().clone(), Some(window.clone()));
    Ok(ReplayStream {
        stream,
        batch: Vec::new().into_iter(),
        watched,
        window,
        shared: shared.clone(),
        stop: Box::pin(shared.shutdown.clone().cancelled_owned()),
        guard,
        events: 0,
        bytes: 0,
        read: 0,
        last_sent: None,
        done: false,
        first_flushed: false,
        opened_at,
        positioned_after,
    })
}

/// Hands the source's stored batches to tonic one event at a time; a batch is acknowledged to
/// the source's window when it is taken, so the source reads ahead by the window at most.
pub struct ReplayStream {
    stream: Option<StoredStream>,
    batch: std::vec::IntoIter<StoredEvent>,
    /// Touched at every batch handed on; cancelled by the watchdog after the idle timeout.
    watched: crate::flow::WatchedSession,
    window: CreditWindow,
    shared: Arc<ServerContext>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    guard: StreamGuard,
    events: u64,
    bytes: u64,
    read: u64,
    last_sent: Option<u64>,
    done: bool,
    /// After the first event the stream says "not ready" once, so tonic sends it at once
    /// instead of filling its 64 KiB buffer first (time to first event).
    first_flushed: bool,
    opened_at: std::time::Instant,
    /// When the read was positioned (the seek done), after `opened_at`: the first event's trace
    /// says how much of its wait that was.
    positioned_after: std::time::Duration,
}

impl ReplayStream {
    /// Publishes the counts gathered since the last flush.
    fn flush(&mut self) {
        self.shared
            .metrics
            .sent(Rpc::Replay, self.events, self.bytes);
        self.shared.metrics.read(self.read);
        self.events = 0;
        self.bytes = 0;
        self.read = 0;
    }

    fn finish(&mut self, outcome: Option<&Status>) {
        self.done = true;
        self.flush();
        self.stream = None;
        self.window.cancel();
        match outcome {
            None => tracing::info!(events = self.guard.events, "Replay finished"),
            Some(s) => {
                self.shared.metrics.error(s.code());
                tracing::info!(events = self.guard.events, code = ?s.code(), message = s.message(), "Replay ended with an error");
            }
        }
    }
}

impl Stream for ReplayStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.guard.events == 1 && !this.first_flushed {
            this.first_flushed = true;
            tracing::debug!(
                after_us = this.opened_at.elapsed().as_micros() as u64,
                positioned_us = this.positioned_after.as_micros() as u64,
                "Replay first event"
            );
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if let Some(e) = this.batch.next() {
                this.events += 1;
                this.guard.events += 1;
                this.bytes += e.payload.len() as u64;
                this.last_sent = Some(e.offset);
                if this.events >= 4096 {
                    this.flush();
                }
                return Poll::Ready(Some(Ok(e.payload)));
            }
            // Shutdown and the idle watchdog are looked at between batches (a batch is at most
            // a few thousand events), not per event.
            if this.stop.as_mut().poll(cx).is_ready() {
                let status = Status::unavailable(format!(
                    "server shutting down after {} events; ask again with start_ts after the last commit_ts received{}",
                    this.guard.events,
                    this.last_sent
                        .map(|o| format!(" (next offset {})", o + 1))
                        .unwrap_or_default()
                ));
                this.finish(Some(&status));
                return Poll::Ready(Some(Err(status)));
            }
            if this.watched.cancelled().is_cancelled() {
                this.shared.metrics.reaped();
                let status = Status::deadline_exceeded(format!(
                    "Replay cancelled: nothing taken for {} s (idle watchdog) after {} events",
                    this.shared.options.idle.as_secs(),
                    this.guard.events
                ));
                this.finish(Some(&status));
                return Poll::Ready(Some(Err(status)));
            }
            let Some(stream) = this.stream.as_mut() else {
                this.finish(None);
                return Poll::Ready(None);
            };
            match stream.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.finish(None);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    let status = source_status(&e);
                    this.finish(Some(&status));
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(b))) => {
                    this.watched.touch();
                    this.read += b.read;
                    // Taken: the source may read the next batches while this one drains.
                    if let Some(last) = b.events.last() {
                        this.window.ack(last.offset);
                    }
                    this.batch = b.events.into_iter();
                }
            }
        }
    }
}

impl Drop for ReplayStream {
    fn drop(&mut self) {
        // The source's reader stops even while it waits for credit.
        self.window.cancel();
        if !self.done {
            self.flush();
            tracing::info!(
                events = self.guard.events,
                "Replay cancelled by the client; reading stopped"
            );
        }
    }
}
