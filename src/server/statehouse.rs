//! `statehouse.v1.StatehouseService` served from an archive: `Replay` streams one agent's events
//! as the stored bytes, one message per event, read straight from the archive as the client
//! takes them (constant memory, and a client that goes away stops the reading). Every other
//! Statehouse RPC answers UNIMPLEMENTED: this endpoint serves archives read-only.

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
use super::{Shared, StreamGuard, archive_status};
use crate::archive::Cursor;
use crate::event::Position;
use crate::wire::codec::WireCodec;
use crate::wire::proto::statehouse::v1::ReplayRequest;

#[derive(Clone)]
pub struct StatehouseServer {
    shared: Arc<Shared>,
}

impl StatehouseServer {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
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

struct ReplaySvc(Arc<Shared>);

impl ServerStreamingService<ReplayRequest> for ReplaySvc {
    type Response = Bytes;
    type ResponseStream = ReplayStream;
    type Future = BoxFuture<Response<ReplayStream>, Status>;

    fn call(&mut self, request: Request<ReplayRequest>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            let r = open_replay(&shared, request.into_inner());
            if let Err(status) = &r {
                shared.metrics.error(status.code());
                tracing::info!(code = ?status.code(), message = status.message(), "Replay rejected");
            }
            r.map(Response::new)
        })
    }
}

fn open_replay(shared: &Arc<Shared>, req: ReplayRequest) -> Result<ReplayStream, Status> {
    let opened_at = std::time::Instant::now();
    let archive = &shared.archive;
    let channel = shared.channel(&req.namespace, &req.agent_id)?;
    let guard = shared.admit(Rpc::Replay)?;
    // `end_ts` is applied on each event's commit_ts; the cursor only needs a bound from the
    // index, so opening a range reads one chunk (the start), not two.
    let until = match req.end_ts {
        Some(ts) => archive.commit_ts_upper_bound(ts),
        None => archive.last_offset(),
    };
    let from = match req.start_ts {
        // Past the end: an empty stream, as the Statehouse daemon answers.
        Some(ts) if archive.last_commit_ts().is_none_or(|last| ts > last) => u64::MAX,
        Some(ts) => archive
            .resolve_from(Position::CommitTs(ts))
            .map_err(|e| archive_status(&e))?,
        None => archive.first_offset().unwrap_or(0),
    };
    let empty = match (until, archive.last_offset()) {
        (None, _) | (_, None) => true,
        (Some(u), Some(last)) => from > u.min(last),
    };
    let cursor = if empty {
        None
    } else {
        Some(
            archive
                .cursor_at(from)
                .map_err(|e| archive_status(&e))?
                .until(until)
                .verify_chain(false),
        )
    };
    tracing::info!(
        namespace = %req.namespace,
        agent_id = %req.agent_id,
        start_ts = ?req.start_ts,
        end_ts = ?req.end_ts,
        from,
        until = ?until,
        "Replay opened"
    );
    Ok(ReplayStream {
        cursor,
        channel,
        shared: shared.clone(),
        stop: Box::pin(shared.shutdown.clone().cancelled_owned()),
        guard,
        events: 0,
        bytes: 0,
        read: 0,
        done: false,
        first_flushed: false,
        end_ts: req.end_ts,
        opened_at,
    })
}

/// Reads the archive as tonic pulls messages: nothing is read ahead of the client beyond the
/// cursor's chunk read-ahead and HTTP/2's flow-control window.
pub struct ReplayStream {
    cursor: Option<Cursor>,
    channel: usize,
    shared: Arc<Shared>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    guard: StreamGuard,
    events: u64,
    bytes: u64,
    read: u64,
    done: bool,
    /// After the first event the stream says "not ready" once, so tonic sends it at once
    /// instead of filling its 64 KiB buffer first (time to first event).
    first_flushed: bool,
    /// Inclusive end of the requested commit_ts range.
    end_ts: Option<u64>,
    opened_at: std::time::Instant,
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
        self.cursor = None;
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
        if this.stop.as_mut().poll(cx).is_ready() {
            let next = this.cursor.as_ref().map(|c| c.next_offset());
            let status = Status::unavailable(format!(
                "server shutting down after {} events; ask again with start_ts after the last commit_ts received{}",
                this.guard.events,
                next.map(|n| format!(" (next offset {n})"))
                    .unwrap_or_default()
            ));
            this.finish(Some(&status));
            return Poll::Ready(Some(Err(status)));
        }
        if this.guard.events == 1 && !this.first_flushed {
            this.first_flushed = true;
            tracing::debug!(
                after_us = this.opened_at.elapsed().as_micros() as u64,
                read = this.read,
                "Replay first event"
            );
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(cursor) = this.cursor.as_mut() else {
            this.finish(None);
            return Poll::Ready(None);
        };
        // Skipping other agents' events yields now and then, so one sparse agent in a big
        // archive does not hold a worker thread for long.
        let mut budget = 16 * 1024;
        loop {
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match cursor.next_raw() {
                None => {
                    this.finish(None);
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    let status = archive_status(&e);
                    this.finish(Some(&status));
                    return Poll::Ready(Some(Err(status)));
                }
                Some(Ok(raw)) => {
                    if this.end_ts.is_some_and(|end| raw.commit_ts > end) {
                        this.finish(None);
                        return Poll::Ready(None);
                    }
                    this.read += 1;
                    if raw.channel != this.channel {
                        continue;
                    }
                    this.events += 1;
                    this.guard.events += 1;
                    this.bytes += raw.payload.len() as u64;
                    if this.events >= 4096 {
                        this.flush();
                    }
                    return Poll::Ready(Some(Ok(raw.payload)));
                }
            }
        }
    }
}

impl Drop for ReplayStream {
    fn drop(&mut self) {
        if !self.done {
            self.flush();
            tracing::info!(
                events = self.guard.events,
                "Replay cancelled by the client; reading stopped"
            );
        }
    }
}
