//! The session actor of `replayscope.v1.ReplayService/Session`.
//!
//! One task per session runs a biased select loop over: cancellation (shutdown, watchdog),
//! client frames (acks, seek, pause, resume, cancel, heartbeat), batches from the producer, and
//! a gauge tick. The producer is the source's own ([`Source::open_stored`]): it reads, waits
//! for credit from the session's window and hands over stored bytes; the loop records each
//! batch in the replay ring and sends it as it is. A cut stream leaves the session detached
//! (ring and position kept) until the watchdog reaps it, so `Open{resume}` continues from the
//! ring — or, once it has moved past, from the source.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Status, Streaming};

use super::metrics::{Rpc, SessionGauges};
use super::{FIRST_BATCH_EVENTS, ServerContext, StreamGuard, source_status};
use crate::event::Position;
use crate::flow::watchdog::WatchedSession;
use crate::flow::{BACKPRESSURE_PCT, CreditWindow, ReplayRing};
use crate::source::{Filter, SourceError, StoredBatch, StoredEvent, StoredStream, StreamRequest};
use crate::wire::codec::{ChainHeads, EventPayloads, OutFrame};
use crate::wire::proto::replayscope::v1 as pb;
use pb::client_frame::Frame as In;
use pb::server_frame::Frame as Out;

/// What a session is, apart from its stream: kept across a cut for resume.
pub struct Detached {
    state: State,
    watched: WatchedSession,
}

struct State {
    id: String,
    /// Agent (namespace, agent_id), key-prefix and txn_id filter.
    filter: Filter,
    until: Option<u64>,
    /// Stay open at the source's end for what is written next (`Open.follow`).
    follow: bool,
    /// Where the producer continues reading (after the last batch handed to the stream).
    next_read: u64,
    ring: ReplayRing<StoredEvent>,
    epoch: u32,
    window_bytes: u64,
    started: Instant,
    /// When the first read was positioned (the seek done), after `started`: the first event's
    /// trace says how much of its wait that was.
    positioned_after: Option<std::time::Duration>,
    events_sent: u64,
    bytes_sent: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
}

fn position(p: Option<&pb::Position>) -> Option<Position> {
    match p?.at? {
        pb::position::At::Offset(o) => Some(Position::Offset(o)),
        pb::position::At::CommitTs(t) => Some(Position::CommitTs(t)),
        pb::position::At::TimeNs(t) => Some(Position::Time(t)),
    }
}

fn new_session_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(&now.to_le_bytes());
    h.update(&n.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    crate::event::hex(&h.finalize().as_bytes()[..8])
}

/// A batch is sent as its events' stored bytes.
impl EventPayloads for Vec<StoredEvent> {
    fn count(&self) -> usize {
        self.len()
    }
    fn payload(&self, i: usize) -> &[u8] {
        &self[i].payload
    }
}

fn frame(f: Out) -> OutFrame {
    OutFrame::Frame(pb::ServerFrame { frame: Some(f) })
}

/// Runs one session; every exit path ends the response stream with End or a status.
pub(super) async fn run(
    shared: Arc<ServerContext>,
    mut inbound: Streaming<pb::ClientFrame>,
    tx: mpsc::Sender<Result<OutFrame, Status>>,
    peer: Option<std::net::SocketAddr>,
) {
    let first = tokio::select! {
        f = inbound.message() => f,
        _ = tokio::time::sleep(shared.options.idle) => Err(Status::deadline_exceeded(format!(
            "no Open frame within {} s of the Session call", shared.options.idle.as_secs()
        ))),
        _ = shared.shutdown.cancelled() => Err(Status::unavailable("server shutting down")),
    };
    let open = match first {
        Ok(Some(pb::ClientFrame {
            frame: Some(In::Open(open)),
        })) => open,
        Ok(None) => return,
        Ok(Some(_)) => {
            let s = Status::failed_precondition(
                "the first frame of a Session must be Open (namespace, agent_id, from, until, filter, window_bytes, resume)",
            );
            shared.metrics.error(s.code());
            let _ = tx.send(Err(s)).await;
            return;
        }
        Err(s) => {
            if s.code() != tonic::Code::Cancelled {
                shared.metrics.error(s.code());
                let _ = tx.send(Err(s)).await;
            }
            return;
        }
    };
    let guard = match shared.admit(Rpc::Session, peer) {
        Ok(g) => g,
        Err(s) => {
            shared.metrics.error(s.code());
            tracing::info!(message = s.message(), "Session rejected");
            let _ = tx.send(Err(s)).await;
            return;
        }
    };
    let (state, watched, replay) = match setup(&shared, &open) {
        Ok(x) => x,
        Err(s) => {
            shared.metrics.error(s.code());
            tracing::info!(code = ?s.code(), message = s.message(), "Session rejected");
            let _ = tx.send(Err(s)).await;
            return;
        }
    };
    // A stalled peer (its window closed, nothing acked) may keep this task waiting on a send
    // for a while: the watchdog's cancel frees the slot at once.
    guard.release_when_idle(watched.cancelled().clone(), None);
    let session = Session {
        window: CreditWindow::new(state.window_bytes),
        shared,
        state,
        watched,
        tx,
        guard,
        paused: false,
        producer: None,
        last_credit: None,
        last_ring: None,
        backpressure: false,
        anchor_due: true,
    };
    session.serve(inbound, replay).await;
}

/// Resolves an Open (fresh or resume) into the session's state, its watchdog registration and
/// the ring events to send again first.
fn setup(
    shared: &Arc<ServerContext>,
    open: &pb::Open,
) -> Result<(State, WatchedSession, Vec<StoredEvent>), Status> {
    let info = shared.source.info();
    let window_bytes = match open.window_bytes {
        0 => shared.options.default_window_bytes,
        w if w > shared.options.max_window_bytes => {
            return Err(Status::resource_exhausted(format!(
                "window_bytes {w} is more than this server allows ({} bytes, --max-window-bytes)",
                shared.options.max_window_bytes
            )));
        }
        w => w,
    };
    if let Some(resume) = open.resume.as_ref().filter(|r| !r.session_id.is_empty()) {
        let next = resume.last_received_offset.saturating_add(1);
        let detached = shared
            .detached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&resume.session_id);
        if let Some(Detached { mut state, watched }) = detached {
            watched.touch();
            state.window_bytes = window_bytes;
            state.follow = follows(shared, open)?;
            let from_ring = state.ring.from_offset(next);
            let replay = match from_ring {
                Ok(items) => {
                    shared.metrics.resumed(true);
                    tracing::info!(session = %state.id, from = next, events = items.len(), "Session resumed from the replay ring");
                    items
                }
                Err(e) => {
                    shared.metrics.resumed(false);
                    tracing::info!(session = %state.id, from = next, ring = %e, "Session resumed by re-reading the source");
                    state.ring.clear();
                    state.next_read = next;
                    vec![]
                }
            };
            return Ok((state, watched, replay));
        }
        // The session is gone (reaped, or from another server run): the source can re-read,
        // so continue from the next offset with this Open's parameters.
        let mut state = fresh_state(shared, open, window_bytes)?;
        if let Some(last) = shared.source.head().filter(|_| !state.follow)
            && resume.last_received_offset > last
        {
            return Err(Status::out_of_range(format!(
                "cannot resume after offset {}: {} ends at offset {last}",
                resume.last_received_offset, info.name
            )));
        }
        // The id is the client's: bounded like everything it sends that a message may quote.
        state.id = if resume.session_id.len() <= 64 {
            resume.session_id.clone()
        } else {
            new_session_id()
        };
        state.next_read = state.next_read.max(next);
        shared.metrics.resumed(false);
        tracing::info!(session = %state.id, from = state.next_read, "Session resumed by re-reading the source (session no longer held)");
        return Ok((state, shared.watchdog.register(), vec![]));
    }
    let state = fresh_state(shared, open, window_bytes)?;
    tracing::info!(
        session = %state.id,
        namespace = %open.namespace,
        agent_id = %open.agent_id,
        from = state.next_read,
        until = ?state.until,
        window_bytes,
        "Session opened"
    );
    Ok((state, shared.watchdog.register(), vec![]))
}

/// Whether the Open asks to follow, refused when the source is a snapshot.
fn follows(shared: &ServerContext, open: &pb::Open) -> Result<bool, Status> {
    if open.follow && !shared.source.can_follow() {
        return Err(Status::failed_precondition(format!(
            "{} is served as it was when the server started: run `replayscope serve --follow` to follow it",
            shared.source.info().name
        )));
    }
    Ok(open.follow)
}

fn fresh_state(
    shared: &Arc<ServerContext>,
    open: &pb::Open,
    window_bytes: u64,
) -> Result<State, Status> {
    let source = &shared.source;
    let follow = follows(shared, open)?;
    let agent = match (open.namespace.is_empty(), open.agent_id.is_empty()) {
        (true, true) => None,
        (false, false) => Some(shared.agent(&open.namespace, &open.agent_id)?),
        _ => {
            return Err(Status::invalid_argument(format!(
                "give both namespace and agent_id, or neither for every agent (got namespace {}, agent_id {})",
                crate::server::echo(&open.namespace),
                crate::server::echo(&open.agent_id)
            )));
        }
    };
    let first = source.info().first_offset.unwrap_or(0);
    let from = match position(open.from.as_ref()) {
        None => first,
        Some(p) => shared.resolve_from(p)?,
    };
    let until = match position(open.until.as_ref()) {
        None => None,
        Some(p) => {
            let u = source
                .resolve(p.clone(), true)
                .map_err(|e| source_status(&e))?;
            match u {
                Some(u) if u >= from => Some(u),
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "until ({p}) is before from (offset {from}): nothing to replay"
                    )));
                }
            }
        }
    };
    let filter = open
        .filter
        .as_ref()
        .map(|f| Filter {
            agent: agent.clone(),
            key_prefix: (!f.key_prefix.is_empty()).then(|| f.key_prefix.clone()),
            txn_id: (!f.txn_id.is_empty()).then(|| f.txn_id.clone()),
            stored_hint: None,
        })
        .unwrap_or(Filter {
            agent,
            ..Filter::default()
        });
    Ok(State {
        id: new_session_id(),
        filter,
        until,
        follow,
        next_read: from,
        ring: ReplayRing::new(shared.options.ring_bytes),
        epoch: 0,
        window_bytes,
        started: Instant::now(),
        positioned_after: None,
        events_sent: 0,
        bytes_sent: 0,
        first_offset: None,
        last_offset: None,
    })
}

enum Produced {
    Batch {
        events: Vec<StoredEvent>,
        bytes: u64,
        /// The cursor position after this batch.
        read_through: u64,
        /// Sent again from the replay ring (already in it).
        from_ring: bool,
        /// The hash-chain heads around the batch, as computed while reading.
        chain: ChainHeads,
    },
    /// A followed source has nothing more yet.
    CaughtUp,
    Done,
    Failed(Status),
}

/// Where a session's batches come from.
enum Feed {
    /// The source's stored stream, read by the session loop itself.
    Direct(StoredStream),
    /// A resume: a task sends the ring's events first, then forwards the source's stream.
    Forwarded {
        rx: mpsc::Receiver<Produced>,
        task: tokio::task::JoinHandle<()>,
    },
    /// One last word (the range is past the source's end, or the source could not be opened).
    Once(Option<Produced>),
}

/// The session's producer: its feed, and the window its source stream takes credit from —
/// cancelled with the producer, so the source's reader stops even while it waits for credit.
struct Producer {
    feed: Feed,
    window: CreditWindow,
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Feed::Forwarded { task, .. } = &self.feed {
            task.abort();
        }
        self.window.cancel();
    }
}

struct Session {
    shared: Arc<ServerContext>,
    state: State,
    watched: WatchedSession,
    window: CreditWindow,
    tx: mpsc::Sender<Result<OutFrame, Status>>,
    guard: StreamGuard,
    paused: bool,
    producer: Option<Producer>,
    last_credit: Option<pb::Credit>,
    last_ring: Option<pb::Ring>,
    backpressure: bool,
    /// The next batch from the source is the first of a range: it carries the chain head before it.
    anchor_due: bool,
}

/// Why the loop ended.
enum Exit {
    /// End sent (finished or cancelled by the client): the session is over.
    Ended,
    /// The stream broke: keep the session for resume.
    Cut(String),
    /// Ended with a status (shutdown, watchdog, archive error).
    Failed(Status),
}

impl Session {
    async fn serve(mut self, mut inbound: Streaming<pb::ClientFrame>, replay: Vec<StoredEvent>) {
        let opened = frame(Out::Opened(pb::Opened {
            session_id: self.state.id.clone(),
            archive: Some(self.shared.describe_now()),
            window_bytes: self.state.window_bytes,
            ring_capacity: self.shared.options.ring_bytes,
        }));
        let exit = match self.send(opened).await {
            Err(e) => e,
            Ok(()) => self.main_loop(&mut inbound, replay).await,
        };
        self.producer = None;
        let id = self.state.id.clone();
        match exit {
            Exit::Ended => {
                self.shared.metrics.remove_gauges(&id);
            }
            Exit::Failed(status) => {
                self.shared.metrics.error(status.code());
                tracing::info!(session = %id, events = self.state.events_sent, code = ?status.code(), message = status.message(), "Session ended with an error");
                self.shared.metrics.remove_gauges(&id);
                // A peer that reads nothing does not hold the task: the status is best effort.
                let _ = tokio::time::timeout(FINAL_SEND, self.tx.send(Err(status))).await;
            }
            Exit::Cut(why) => {
                tracing::info!(session = %id, events = self.state.events_sent, next = self.state.next_read, reason = %why, "Session stream cut; kept for resume");
                self.shared.metrics.set_gauges(
                    &id,
                    SessionGauges {
                        in_flight_bytes: 0,
                        ring_bytes: self.state.ring.snapshot().bytes_used,
                        waiting_for_credit: false,
                    },
                );
                let cancel = self.watched.cancelled().clone();
                let shared = self.shared.clone();
                let session_id = id.clone();
                self.shared
                    .detached
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        id,
                        Detached {
                            state: self.state,
                            watched: self.watched,
                        },
                    );
                // Reap it when the watchdog fires (unless resumed first).
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = shared.shutdown.cancelled() => {}
                    }
                    let gone = shared
                        .detached
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&session_id);
                    if gone.is_some() {
                        shared.metrics.reaped();
                        shared.metrics.remove_gauges(&session_id);
                        tracing::info!(session = %session_id, "detached session reaped by the idle watchdog");
                    }
                });
            }
        }
        drop(self.guard);
    }

    /// Sends a frame, or reports the stream gone.
    async fn send(&self, f: OutFrame) -> Result<(), Exit> {
        tokio::select! {
            r = self.tx.send(Ok(f)) => r.map_err(|_| Exit::Cut("the client stopped receiving".into())),
            _ = self.watched.cancelled().cancelled() => Err(self.idle_status()),
            _ = self.shared.shutdown.cancelled() => Err(self.shutdown_status()),
        }
    }

    fn idle_status(&self) -> Exit {
        self.shared.metrics.reaped();
        Exit::Failed(Status::deadline_exceeded(format!(
            "session {} cancelled: nothing sent or acknowledged for {} s (idle watchdog); resume with last_received_offset",
            self.state.id,
            self.shared.options.idle.as_secs()
        )))
    }

    fn shutdown_status(&self) -> Exit {
        let resume = match self.state.last_offset {
            Some(o) => format!("resume with session_id {} after offset {o}", self.state.id),
            None => "nothing was sent yet".to_string(),
        };
        Exit::Failed(Status::unavailable(format!(
            "server shutting down; {resume}"
        )))
    }

    /// Starts reading at `next_read`, after sending `replay` (ring events of a resume).
    fn start_producer(&mut self, replay: Vec<StoredEvent>) {
        self.producer = None;
        self.anchor_due = true;
        let at = ProduceFrom {
            from: self.state.next_read,
            until: self.state.until,
            follow: self.state.follow,
            filter: self.state.filter.clone(),
            replay,
            replay_batch: self.shared.options.batch_events.max(1),
        };
        let feed = if at.replay.is_empty() {
            let opened = open_source_stream(&self.shared, &at, self.window.clone());
            self.state
                .positioned_after
                .get_or_insert(self.state.started.elapsed());
            match opened {
                Ok(Some(stream)) => Feed::Direct(stream),
                Ok(None) => Feed::Once(Some(Produced::Done)),
                Err(status) => Feed::Once(Some(Produced::Failed(status))),
            }
        } else {
            let (tx, rx) = mpsc::channel(2);
            let task = tokio::spawn(produce(self.shared.clone(), at, self.window.clone(), tx));
            Feed::Forwarded { rx, task }
        };
        self.producer = Some(Producer {
            feed,
            window: self.window.clone(),
        });
    }

    async fn main_loop(
        &mut self,
        inbound: &mut Streaming<pb::ClientFrame>,
        replay: Vec<StoredEvent>,
    ) -> Exit {
        self.start_producer(replay);
        let mut tick = tokio::time::interval(GAUGE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heartbeat = Instant::now();
        loop {
            let can_pull = !self.paused && self.producer.is_some();
            tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => return self.shutdown_status(),
                _ = self.watched.cancelled().cancelled() => return self.idle_status(),
                f = inbound.message() => match f {
                    Ok(Some(f)) => {
                        self.watched.touch();
                        if let Some(exit) = self.on_frame(f).await {
                            return exit;
                        }
                    }
                    Ok(None) => return Exit::Cut("the client closed its side of the stream".into()),
                    Err(s) => return Exit::Cut(s.message().to_string()),
                },
                p = recv(&mut self.producer, &self.shared), if can_pull => match p {
                    Some(Produced::Batch { events, bytes, read_through, from_ring, mut chain }) => {
                        self.state.next_read = read_through;
                        // The head before the first event of a range, from the archive's record,
                        // even when this server does not verify: the client checks from there.
                        if !from_ring && self.anchor_due && let Some(first) = events.first() {
                            self.anchor_due = false;
                            if chain.before.is_none() {
                                chain.before = self.shared.source.chain_head_before(first.offset);
                            }
                        }
                        if let Err(e) = self.send_batch(events, bytes, !from_ring, chain).await {
                            return e;
                        }
                    }
                    Some(Produced::CaughtUp) => {
                        let caught_up = frame(Out::CaughtUp(pb::CaughtUp {
                            head_offset: self.shared.source.head(),
                        }));
                        if let Err(e) = self.send(caught_up).await {
                            return e;
                        }
                    }
                    Some(Produced::Done) | None => {
                        self.producer = None;
                        return self.end().await;
                    }
                    Some(Produced::Failed(status)) => {
                        self.producer = None;
                        return Exit::Failed(status);
                    }
                },
                _ = tick.tick() => {
                    // Gauge frames queue for room like events do (dropping them whenever the
                    // stream was busy starved them on a slow client), but for one tick at
                    // most: a client that reads nothing does not hold the loop.
                    let mut frames = self.gauges();
                    if last_heartbeat.elapsed() >= self.shared.options.heartbeat {
                        last_heartbeat = Instant::now();
                        frames.push(self.heartbeat());
                    }
                    for f in frames {
                        match tokio::time::timeout(GAUGE_TICK, self.send(f)).await {
                            Ok(Err(e)) => return e,
                            Ok(Ok(())) => {}
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }

    fn heartbeat(&self) -> OutFrame {
        frame(Out::Heartbeat(pb::ServerHeartbeat {
            server_time_ns: crate::event::now_ns(),
            head_offset: self.shared.source.head().unwrap_or(0),
        }))
    }

    /// Records a batch in the ring and sends it as stored bytes.
    async fn send_batch(
        &mut self,
        events: Vec<StoredEvent>,
        bytes: u64,
        into_ring: bool,
        chain: ChainHeads,
    ) -> Result<(), Exit> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            // Events read but none for this client (a sparse agent): the reader is progressing.
            self.watched.touch();
            return Ok(());
        };
        if self.state.events_sent == 0 {
            tracing::debug!(
                session = %self.state.id,
                after_us = self.state.started.elapsed().as_micros() as u64,
                positioned_us = self.state.positioned_after.map(|d| d.as_micros() as u64),
                "Session first event"
            );
        }
        self.state.first_offset.get_or_insert(first.offset);
        self.state.last_offset = Some(last.offset);
        self.state.events_sent += events.len() as u64;
        self.state.bytes_sent += bytes;
        self.guard.events += events.len() as u64;
        self.shared
            .metrics
            .sent(Rpc::Session, events.len() as u64, bytes);
        // One batch for the frame and the ring: no handle per event.
        let events = Arc::new(events);
        if into_ring {
            self.state.ring.push(events.clone());
        }
        self.watched.touch();
        self.send(OutFrame::Events {
            events,
            epoch: self.state.epoch,
            chain,
        })
        .await
    }

    /// Credit, ring and backpressure frames when they changed (to send); gauges for the metrics.
    fn gauges(&mut self) -> Vec<OutFrame> {
        let mut out = Vec::new();
        let c = self.window.snapshot();
        let credit = pb::Credit {
            sent_through: c.sent_through.unwrap_or(0),
            acked_through: c.acked_through.unwrap_or(0),
            in_flight_bytes: c.in_flight_bytes,
            window_bytes: c.window_bytes,
        };
        if self.last_credit.as_ref() != Some(&credit) {
            out.push(frame(Out::Credit(credit)));
            self.last_credit = Some(credit);
        }
        let r = self.state.ring.snapshot();
        let ring = pb::Ring {
            bytes_used: r.bytes_used,
            capacity: r.capacity,
            oldest_offset: r.oldest_offset.unwrap_or(0),
            newest_offset: r.newest_offset.unwrap_or(0),
        };
        if self.last_ring.as_ref() != Some(&ring) {
            out.push(frame(Out::Ring(ring)));
            self.last_ring = Some(ring);
        }
        let pct = c.in_flight_pct();
        let waiting = self.producer.is_some() && self.window.is_waiting();
        if pct >= BACKPRESSURE_PCT || waiting {
            if !self.backpressure {
                // Sent on entering backpressure; Credit frames follow the in-flight bytes.
                // The suggestion: about one gauge tick per 10 % over the threshold.
                let over = pct.saturating_sub(BACKPRESSURE_PCT);
                out.push(frame(Out::Backpressure(pb::Backpressure {
                    in_flight_pct: pct.min(u64::from(u32::MAX)) as u32,
                    recommended_delay_ms: 100 * (1 + over / 10),
                })));
                tracing::debug!(session = %self.state.id, in_flight_pct = pct, "backpressure");
            }
            self.backpressure = true;
        } else {
            self.backpressure = false;
        }
        self.shared.metrics.set_gauges(
            &self.state.id,
            SessionGauges {
                in_flight_bytes: c.in_flight_bytes,
                ring_bytes: r.bytes_used,
                waiting_for_credit: waiting,
            },
        );
        out
    }

    async fn on_frame(&mut self, f: pb::ClientFrame) -> Option<Exit> {
        match f.frame? {
            In::Ack(a) => {
                if a.epoch == self.state.epoch {
                    self.window.ack(a.through_offset);
                }
            }
            In::Seek(s) => {
                let Some(pos) = position(s.to.as_ref()) else {
                    return self
                        .error_frame(
                            "INVALID_ARGUMENT",
                            "Seek without a position (offset, commit_ts or time_ns)".into(),
                            None,
                        )
                        .await;
                };
                match self.shared.resolve_from(pos.clone()) {
                    Err(status) => {
                        return self
                            .error_frame(
                                code_name(status.code()),
                                status.message().to_string(),
                                None,
                            )
                            .await;
                    }
                    Ok(offset) => {
                        // A fresh window: the old producer (aborted, but possibly still running
                        // on another worker) can only take credit from the old one.
                        self.producer = None;
                        self.window.cancel();
                        self.window = CreditWindow::new(self.state.window_bytes);
                        self.state.ring.clear();
                        self.state.epoch += 1;
                        self.state.next_read = offset;
                        self.last_credit = None;
                        tracing::info!(session = %self.state.id, to = %pos, offset, epoch = self.state.epoch, "Session seek");
                        self.start_producer(vec![]);
                    }
                }
            }
            In::Pause(_) => {
                self.paused = true;
                tracing::debug!(session = %self.state.id, "paused");
            }
            In::Resume(_) => {
                self.paused = false;
                tracing::debug!(session = %self.state.id, "resumed");
            }
            In::Cancel(_) => {
                tracing::info!(session = %self.state.id, "Session cancelled by the client");
                self.producer = None;
                return Some(self.end().await);
            }
            In::Heartbeat(_) => {
                let hb = self.heartbeat();
                if let Err(e) = self.send(hb).await {
                    return Some(e);
                }
            }
            In::Open(_) => {
                return self
                    .error_frame(
                        "FAILED_PRECONDITION",
                        "the session is already open; Seek to move, or start a new Session".into(),
                        None,
                    )
                    .await;
            }
        }
        None
    }

    /// A non-fatal error: the session goes on.
    async fn error_frame(&self, code: &str, message: String, offset: Option<u64>) -> Option<Exit> {
        tracing::info!(session = %self.state.id, code, %message, "Session error frame");
        self.send(frame(Out::Error(pb::SessionError {
            code: code.to_string(),
            message,
            offset,
        })))
        .await
        .err()
    }

    /// Sends End with the report.
    async fn end(&mut self) -> Exit {
        let s = &self.state;
        let duration = s.started.elapsed();
        let report = pb::Report {
            events_sent: s.events_sent,
            failures: 0,
            bytes: s.bytes_sent,
            duration_ms: duration.as_millis() as u64,
            first_offset: s.first_offset,
            last_offset: s.last_offset,
            achieved_rate: if duration.as_secs_f64() > 0.0 {
                s.events_sent as f64 / duration.as_secs_f64()
            } else {
                0.0
            },
            final_hash: s
                .last_offset
                .map(|o| self.shared.chain_head_through(o))
                .unwrap_or_default(),
        };
        tracing::info!(
            session = %s.id,
            events = s.events_sent,
            bytes = s.bytes_sent,
            duration_ms = report.duration_ms,
            "Session ended"
        );
        for f in self.gauges() {
            if let Err(e) = self.send(f).await {
                return e;
            }
        }
        match self
            .send(frame(Out::End(pb::End {
                report: Some(report),
            })))
            .await
        {
            Ok(()) => Exit::Ended,
            Err(e) => e,
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DataLoss => "DATA_LOSS",
        _ => "INTERNAL",
    }
}

/// The next batch (or the end) from the session's producer; pending without one.
async fn recv(p: &mut Option<Producer>, shared: &ServerContext) -> Option<Produced> {
    let Some(p) = p else {
        return std::future::pending().await;
    };
    match &mut p.feed {
        Feed::Direct(stream) => Some(from_source(stream.recv().await, shared)),
        Feed::Forwarded { rx, .. } => rx.recv().await,
        Feed::Once(last) => last.take(),
    }
}

/// What the source's stream delivered, as the session loop takes it.
fn from_source(
    batch: Option<Result<StoredBatch, SourceError>>,
    shared: &ServerContext,
) -> Produced {
    match batch {
        None => Produced::Done,
        Some(Ok(b)) if b.caught_up && b.events.is_empty() => {
            shared.metrics.read(b.read);
            Produced::CaughtUp
        }
        Some(Ok(b)) => {
            shared.metrics.read(b.read);
            Produced::Batch {
                events: b.events,
                bytes: b.bytes,
                read_through: b.next_offset,
                from_ring: false,
                chain: ChainHeads {
                    before: b.chain_before,
                    after: b.chain_after,
                },
            }
        }
        Some(Err(e)) => Produced::Failed(source_status(&e)),
    }
}

/// How long the status that ends a session may wait for room in the stream.
const FINAL_SEND: Duration = Duration::from_secs(1);

/// How often a session reports its gauges (Credit, Ring, Backpressure frames; metrics).
const GAUGE_TICK: Duration = Duration::from_millis(100);

struct ProduceFrom {
    from: u64,
    until: Option<u64>,
    follow: bool,
    filter: Filter,
    /// Ring events to send first (a resume), in batches of `replay_batch`.
    replay: Vec<StoredEvent>,
    replay_batch: usize,
}

/// A resume: sends the ring events first (taking credit for them), then forwards the source's
/// stored batches.
async fn produce(
    shared: Arc<ServerContext>,
    at: ProduceFrom,
    window: CreditWindow,
    tx: mpsc::Sender<Produced>,
) {
    for chunk in at.replay.chunks(at.replay_batch) {
        let bytes = chunk.iter().map(|e| e.payload.len() as u64).sum();
        let last = chunk.last().map(|e| e.offset).unwrap_or(0);
        if window.acquire(bytes, last).await.is_err() {
            return;
        }
        let batch = Produced::Batch {
            events: chunk.to_vec(),
            bytes,
            read_through: at.from,
            from_ring: true,
            chain: ChainHeads::default(),
        };
        if tx.send(batch).await.is_err() {
            return;
        }
    }
    let mut stream = match open_source_stream(&shared, &at, window) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = tx.send(Produced::Done).await;
            return;
        }
        Err(status) => {
            let _ = tx.send(Produced::Failed(status)).await;
            return;
        }
    };
    loop {
        let produced = from_source(stream.recv().await, &shared);
        let last = matches!(produced, Produced::Done | Produced::Failed(_));
        if tx.send(produced).await.is_err() || last {
            return;
        }
    }
}

/// The source's stored stream from `at.from` (`None` when that is past the range's end).
fn open_source_stream(
    shared: &ServerContext,
    at: &ProduceFrom,
    window: CreditWindow,
) -> Result<Option<StoredStream>, Status> {
    // A followed source's end moves: its stream waits there.
    let past_end = (!at.follow && shared.source.head().is_none_or(|l| at.from > l))
        || at.until.is_some_and(|u| at.from > u);
    if past_end {
        return Ok(None);
    }
    let request = StreamRequest {
        from: at.from,
        until: at.until,
        filter: at.filter.clone(),
        batch_events: shared.options.batch_events.max(1),
        // The first batch is small so the first event goes out at once.
        first_batch_events: Some(FIRST_BATCH_EVENTS),
        batch_bytes: Some(shared.options.batch_bytes.max(1)),
        // The ring keeps what was sent.
        compact_payloads: true,
        chain: shared.options.chain,
        follow: at.follow,
        ..StreamRequest::default()
    };
    shared
        .source
        .open_stored(request, window)
        .map(Some)
        .map_err(|e| source_status(&e))
}
