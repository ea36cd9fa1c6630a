//! `replayscope://host:port`: a replayscope endpoint (`replayscope serve`) as a source, over the
//! credit-controlled Session.
//!
//! Each stream the player opens is one Session from the requested offset. Batches go to the
//! player through the same local credit window as an archive's, and what the player has played
//! (the local window's cumulative ack) is what is acknowledged to the server, so the server's
//! window follows the player. A cut stream (the server restarted, the network dropped) is
//! retried with capped exponential backoff and jitter and resumed right after the last offset
//! received — from the server's ring, or re-read — with no gap and no duplicate.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::archive::integrity::HashChain;
use crate::event::Position;
use crate::event::wire::{NameCache, decode_event};
use crate::flow::{CreditSnapshot, CreditWindow, RingSnapshot};
use crate::source::{
    Batch, BatchStream, Source, SourceError, SourceInfo, StreamRequest, deliver, retry_after,
    spawn_producer,
};
use crate::wire::client::{Client, ConnectOptions};
use crate::wire::codec::InFrame;
use crate::wire::proto::replayscope::v1 as pb;
use crate::wire::reconnect::{Phase, Reconnect, Retry, RetryPolicy, StatusLine};

pub struct RemoteSource {
    client: Client,
    info: SourceInfo,
    retry: RetryPolicy,
    reports: Arc<ProducerReports>,
    /// Opened to be followed (`--follow`: the server must run `serve --follow`).
    follow: bool,
}

/// What the producer tasks report while they run.
#[derive(Default)]
struct ProducerReports {
    /// "reconnecting (…)" while a stream waits to reconnect.
    status: StatusLine,
    /// The server's latest Credit and Ring frames.
    gauges: std::sync::Mutex<(Option<CreditSnapshot>, Option<RingSnapshot>)>,
    /// The newest offset the server said it has (CaughtUp and Heartbeat frames), plus one
    /// (0: none said yet).
    head: std::sync::atomic::AtomicU64,
}

impl ProducerReports {
    fn saw_head(&self, head: u64) {
        self.head
            .fetch_max(head.saturating_add(1), std::sync::atomic::Ordering::Relaxed);
    }
}

fn err(endpoint: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Invalid {
        source_name: endpoint.to_string(),
        message: message.to_string(),
    }
}

fn offset_pos(o: u64) -> Option<pb::Position> {
    Some(pb::Position {
        at: Some(pb::position::At::Offset(o)),
    })
}

fn to_pb(p: Position) -> Option<pb::Position> {
    Some(pb::Position {
        at: Some(match p {
            Position::Offset(o) => pb::position::At::Offset(o),
            Position::CommitTs(t) => pb::position::At::CommitTs(t),
            Position::Time(t) => pb::position::At::TimeNs(t),
            Position::Marker(_) => return None,
        }),
    })
}

impl RemoteSource {
    /// Connects and asks the endpoint what it holds (blocking; callable from any thread).
    pub fn connect(
        url: &str,
        options: ConnectOptions,
        retry: RetryPolicy,
        follow: bool,
    ) -> Result<RemoteSource, SourceError> {
        let addr = url
            .strip_prefix("replayscope://")
            .ok_or_else(|| err(url, "expected replayscope://host:port"))?
            .trim_end_matches('/')
            .to_string();
        let name = url.to_string();
        let policy = retry.clone();
        let log_name = name.clone();
        let tls = options.tls;
        let (client, describe) = crate::background_runtime::block_on(async move {
            // An endpoint that is not reachable (yet) is retried like a cut stream.
            let mut reconnect =
                Reconnect::new(&log_name, policy, Phase::Connecting, StatusLine::default());
            let client = loop {
                match Client::connect(&addr, options.clone()).await {
                    Ok(c) => break c,
                    Err(e) => match reconnect.after_failure(&e, std::future::pending()).await {
                        Retry::Now | Retry::Cancelled => {}
                        Retry::GiveUp(message) => return Err(message),
                    },
                }
            };
            let describe = client.describe().await.map_err(|s| {
                // A plaintext client of a TLS endpoint sees a transport or HTTP/2 failure.
                let transport = matches!(
                    s.code(),
                    tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Unavailable
                );
                let hint = if !tls && transport {
                    "; if the endpoint serves TLS, add --tls (and --ca-file for a private CA)"
                } else {
                    ""
                };
                format!("Describe failed: {} ({:?}){hint}", s.message(), s.code())
            })?;
            Ok::<_, String>((client, describe))
        })
        .map_err(|e| err(&name, e))?
        .map_err(|e| err(&name, e))?;
        let any = describe.events > 0;
        let final_hash = crate::event::parse_hash(&describe.final_hash);
        let info = SourceInfo {
            name: name.clone(),
            kind: "replayscope endpoint".into(),
            events: Some(describe.events),
            first_offset: any.then_some(describe.first_offset),
            last_offset: any.then_some(describe.last_offset),
            first_commit_ts: any.then_some(describe.first_commit_ts),
            last_commit_ts: any.then_some(describe.last_commit_ts),
            first_time_ns: describe.first_time_ns,
            last_time_ns: describe.last_time_ns,
            channels: describe
                .channels
                .into_iter()
                .map(|c| (c.namespace, c.agent_id, c.events))
                .collect(),
            final_hash,
            bytes: Some(describe.bytes),
            segments: Some(describe.segments),
            time_source: None,
        };
        Ok(RemoteSource {
            client,
            info,
            retry,
            reports: Default::default(),
            follow,
        })
    }

    /// The first event at or after `pos` (offset and key), asked of the server.
    fn first_at(&self, pos: Position) -> Result<Option<pb::ArchivedEvent>, SourceError> {
        let client = self.client.clone();
        let name = self.info.name.clone();
        crate::background_runtime::block_on(async move {
            let mut s = client
                .session(pb::Open {
                    from: to_pb(pos),
                    window_bytes: 64 * 1024,
                    ..Default::default()
                })
                .await?;
            loop {
                match s.next().await? {
                    None => return Ok(None),
                    Some(InFrame::Events { events, .. }) => {
                        s.send(pb::client_frame::Frame::Cancel(pb::Cancel {})).await;
                        return Ok(events.first().and_then(|b| {
                            <pb::ArchivedEvent as prost::Message>::decode(b.clone()).ok()
                        }));
                    }
                    Some(InFrame::Frame(pb::ServerFrame {
                        frame: Some(pb::server_frame::Frame::End(_)),
                    })) => return Ok(None),
                    Some(_) => {}
                }
            }
        })
        .map_err(|e| err(&name, e))?
        .map_err(|s: tonic::Status| err(&name, s.message()))
    }
}

impl Source for RemoteSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError> {
        if let Position::Marker(name) = &pos {
            return Err(super::unresolved_marker(&self.info.name, name));
        }
        // Followed, a later offset will exist.
        if let (true, &Position::Offset(o)) = (self.follow, &pos)
            && self.head().is_none_or(|h| o > h)
        {
            return Ok(Some(o));
        }
        let (Some(first), Some(last)) = (self.info.first_offset, self.head()) else {
            return Ok(None);
        };
        if let Position::Offset(o) = pos.clone() {
            if at_or_before {
                return Ok((o >= first).then(|| o.min(last)));
            }
            if o < first || o > last {
                return Err(err(
                    &self.info.name,
                    format!("offset {o} is outside the source (offsets {first} to {last})"),
                ));
            }
            return Ok(Some(o));
        }
        let found = match self.first_at(pos.clone()) {
            Ok(f) => f,
            // Past the end: nothing at or after it.
            Err(_) if at_or_before => None,
            Err(e) => return Err(e),
        };
        if !at_or_before {
            return match found {
                Some(e) => Ok(Some(e.offset)),
                None => Err(err(
                    &self.info.name,
                    format!("{pos} is past the end of the source"),
                )),
            };
        }
        Ok(match found {
            None => Some(last),
            Some(e) => {
                let exact = match &pos {
                    &Position::CommitTs(t) => e.commit_ts == t,
                    &Position::Time(t) => e.commit_time_ns == Some(t),
                    Position::Offset(_) => true,
                    Position::Marker(_) => false,
                };
                if exact {
                    Some(e.offset)
                } else {
                    e.offset.checked_sub(1).filter(|o| *o >= first)
                }
            }
        })
    }

    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError> {
        let (client, name) = (self.client.clone(), self.info.name.clone());
        let (retry, reports) = (self.retry.clone(), self.reports.clone());
        Ok(spawn_producer(4, |tx| {
            produce(client, name, retry, reports, req, window, tx)
        }))
    }

    fn status(&self) -> Option<String> {
        self.reports.status.get()
    }

    fn can_follow(&self) -> bool {
        self.follow
    }

    fn head(&self) -> Option<u64> {
        let said = self
            .reports
            .head
            .load(std::sync::atomic::Ordering::Relaxed)
            .checked_sub(1);
        said.max(self.info.last_offset)
    }

    fn remote_gauges(&self) -> Option<(CreditSnapshot, RingSnapshot)> {
        let g = self
            .reports
            .gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Some((g.0?, g.1?))
    }

    fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]> {
        let client = self.client.clone();
        crate::background_runtime::block_on(async move {
            let mut s = client
                .session(pb::Open {
                    from: offset_pos(offset),
                    until: offset_pos(offset),
                    ..Default::default()
                })
                .await
                .ok()?;
            loop {
                match s.next().await.ok()?? {
                    InFrame::Events { events, epoch, .. } => {
                        s.ack(offset, epoch).await;
                        drop(events);
                    }
                    InFrame::Frame(pb::ServerFrame {
                        frame: Some(pb::server_frame::Frame::End(end)),
                    }) => return crate::event::parse_hash(&end.report?.final_hash),
                    InFrame::Frame(_) => {}
                }
            }
        })
        .ok()
        .flatten()
    }
}

/// How often a following client that has nothing to acknowledge tells the server it is there.
const FOLLOWER_HEARTBEAT: Duration = Duration::from_secs(1);

/// Streams batches from Sessions, reconnecting and resuming after cuts.
async fn produce(
    client: Client,
    name: String,
    retry: RetryPolicy,
    reports: Arc<ProducerReports>,
    req: StreamRequest,
    window: CreditWindow,
    tx: mpsc::Sender<Result<Batch, SourceError>>,
) {
    let (namespace, agent_id) = req.filter.agent.clone().unwrap_or_default();
    let filter = Some(pb::Filter {
        key_prefix: req.filter.key_prefix.clone().unwrap_or_default(),
        txn_id: req.filter.txn_id.clone().unwrap_or_default(),
    });
    let window_bytes = window.snapshot().window_bytes;
    let mut names = NameCache::default();
    // The hash chain over what is received: from the first head the server sends, checked
    // against every later one and End's. A filtered stream has gaps: the server checks it.
    let verify = req.chain.is_on() && req.filter.is_empty();
    let mut chain: Option<HashChain> = None;
    let mut unverified = false;
    // The last offset received, and the session to resume.
    let mut last_received: Option<u64> = None;
    let mut session_id = String::new();
    let mut reconnect = Reconnect::new(&name, retry, Phase::Reconnecting, reports.status.clone());
    loop {
        let open = pb::Open {
            namespace: namespace.clone(),
            agent_id: agent_id.clone(),
            from: offset_pos(req.from),
            until: req.until.and_then(offset_pos),
            filter: filter.clone(),
            window_bytes,
            resume: last_received.map(|o| pb::ResumeFrom {
                session_id: session_id.clone(),
                last_received_offset: o,
            }),
            follow: req.follow,
        };
        let failure = match client.session(open).await {
            Err(s) => s,
            Ok(mut s) => {
                let mut acked = None;
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut last_word = tokio::time::Instant::now();
                loop {
                    // Forward what the player has played as the cumulative ack.
                    let played = window.snapshot().acked_through;
                    if let Some(p) = played
                        && played != acked
                    {
                        acked = played;
                        last_word = tokio::time::Instant::now();
                        s.ack(p, 0).await;
                    }
                    // A follower waiting for new events says it is still there (the server's
                    // idle watchdog frees streams whose client says nothing).
                    if req.follow && last_word.elapsed() >= FOLLOWER_HEARTBEAT {
                        last_word = tokio::time::Instant::now();
                        s.send(pb::client_frame::Frame::Heartbeat(pb::Heartbeat {}))
                            .await;
                    }
                    let frame = tokio::select! {
                        f = s.next() => f,
                        _ = tick.tick() => continue,
                    };
                    match frame {
                        Err(status) => break status,
                        Ok(None) => {
                            break tonic::Status::unavailable("the stream ended without End");
                        }
                        Ok(Some(InFrame::Events {
                            events,
                            chain: heads,
                            ..
                        })) => {
                            reconnect.delivered(last_received);
                            if verify && chain.is_none() && heads.before.is_none() && !unverified {
                                unverified = true;
                                tracing::warn!(endpoint = %name, "the server sends no chain head (it does not verify, or cannot: a rebuilt index): what is received is not verified");
                            }
                            if verify && let Some(server) = heads.before {
                                match chain {
                                    None => chain = Some(HashChain::starting_at(server)),
                                    Some(c) if c.head() != server => {
                                        let e = chain_mismatch(&name, last_received, &c, server);
                                        let _ = tx.send(Err(e)).await;
                                        return;
                                    }
                                    Some(_) => {}
                                }
                            }
                            let batch = match decode_batch(&events, &mut names, chain.as_mut()) {
                                Ok(b) => b,
                                Err(e) => {
                                    let _ = tx.send(Err(err(&name, e))).await;
                                    return;
                                }
                            };
                            // Checked before it is used: a batch that does not hash to the
                            // server's head after it is not delivered.
                            if verify
                                && let (Some(c), Some(server)) = (chain, heads.after)
                                && c.head() != server
                            {
                                let through = batch.last_offset().or(last_received);
                                let e = chain_mismatch(&name, through, &c, server);
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                            let Some(last) = batch.last_offset() else {
                                continue;
                            };
                            if !deliver(&window, &tx, batch.bytes, last, batch).await {
                                return;
                            }
                            last_received = Some(last);
                        }
                        Ok(Some(InFrame::Frame(pb::ServerFrame {
                            frame: Some(pb::server_frame::Frame::End(end)),
                        }))) => {
                            // The server's window and ring are done with this stream: the
                            // gauges show the local ones again (not the last Credit frame).
                            *reports.gauges.lock().unwrap_or_else(|p| p.into_inner()) =
                                (None, None);
                            let recorded = end
                                .report
                                .and_then(|r| crate::event::parse_hash(&r.final_hash));
                            if let (Some(c), Some(recorded)) = (chain, recorded)
                                && last_received.is_some()
                                && c.head() != recorded
                            {
                                let e = chain_mismatch(&name, last_received, &c, recorded);
                                let _ = tx.send(Err(e)).await;
                            }
                            return;
                        }
                        Ok(Some(InFrame::Frame(pb::ServerFrame {
                            frame: Some(pb::server_frame::Frame::CaughtUp(c)),
                        }))) => {
                            if let Some(h) = c.head_offset {
                                reports.saw_head(h);
                            }
                            let caught_up = Batch {
                                caught_up: true,
                                ..Batch::default()
                            };
                            if tx.send(Ok(caught_up)).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(InFrame::Frame(pb::ServerFrame { frame: Some(f) }))) => {
                            on_frame(f, &reports, &name, &mut session_id);
                        }
                        Ok(Some(InFrame::Frame(_))) => {}
                    }
                }
            }
        };
        // The cut stream's window and ring are gone: no stale gauges while reconnecting (the
        // next session reports its own).
        *reports.gauges.lock().unwrap_or_else(|p| p.into_inner()) = (None, None);
        if !retry_after(&mut reconnect, &failure, &tx, &name).await {
            return;
        }
    }
}

/// The events received do not hash to the head the server recorded.
fn chain_mismatch(
    name: &str,
    last_received: Option<u64>,
    computed: &HashChain,
    server: [u8; 32],
) -> SourceError {
    let through = match last_received {
        Some(o) => format!("the events received through offset {o}"),
        None => "the start of the stream".to_string(),
    };
    SourceError::Integrity {
        source_name: name.to_string(),
        message: format!(
            "hash chain mismatch: {through} hash to {}, the server's chain head there is {} \
             (the events changed on the way, or the server's archive is damaged)",
            crate::event::hex(&computed.head()),
            crate::event::hex(&server)
        ),
    }
}

/// A Session's Events as a batch of decoded events; with a chain, hashes each one's bytes.
fn decode_batch(
    events: &[bytes::Bytes],
    names: &mut NameCache,
    mut chain: Option<&mut HashChain>,
) -> Result<Batch, String> {
    let mut batch = Vec::with_capacity(events.len());
    let mut heads = Vec::with_capacity(if chain.is_some() { events.len() } else { 0 });
    let mut bytes = 0u64;
    for b in events {
        let e = decode_event(b, names).map_err(|e| format!("undecodable event: {e}"))?;
        bytes += b.len() as u64;
        if let Some(c) = chain.as_mut() {
            c.push(b);
            heads.push(c.head());
        }
        batch.push((Arc::new(e), b.len() as u32));
    }
    Ok(Batch {
        events: batch,
        bytes,
        heads,
        caught_up: false,
    })
}

/// A Session's other frames (End aside): the session id to resume, the server's gauges.
fn on_frame(
    f: pb::server_frame::Frame,
    reports: &ProducerReports,
    name: &str,
    session_id: &mut String,
) {
    use pb::server_frame::Frame;
    match f {
        Frame::Opened(o) => *session_id = o.session_id,
        Frame::Credit(c) => {
            let mut g = reports.gauges.lock().unwrap_or_else(|p| p.into_inner());
            g.0 = Some(CreditSnapshot {
                sent_through: Some(c.sent_through),
                acked_through: Some(c.acked_through),
                in_flight_bytes: c.in_flight_bytes,
                window_bytes: c.window_bytes,
            });
        }
        Frame::Ring(r) => {
            let mut g = reports.gauges.lock().unwrap_or_else(|p| p.into_inner());
            let any = r.bytes_used > 0;
            g.1 = Some(RingSnapshot {
                bytes_used: r.bytes_used,
                capacity: r.capacity,
                oldest_offset: any.then_some(r.oldest_offset),
                newest_offset: any.then_some(r.newest_offset),
            });
        }
        Frame::Heartbeat(h) if h.head_offset > 0 => reports.saw_head(h.head_offset),
        Frame::Backpressure(b) => {
            tracing::debug!(endpoint = %name, in_flight_pct = b.in_flight_pct, "server backpressure");
        }
        Frame::Error(e) => {
            tracing::warn!(endpoint = %name, code = %e.code, message = %e.message, "server error frame");
        }
        _ => {}
    }
}
