//! `statehouse://host:port`: the plain Statehouse `Replay` RPC as a source — a real Statehouse
//! daemon, or `replayscope serve` (which answers the same RPC).
//!
//! The protocol streams one agent's transactions in commit order and nothing else: no offsets,
//! no wall-clock times, no counts. So the source scans the agent's history once when it
//! connects (keeping only each transaction's commit_ts: 8 bytes per event) and numbers the
//! events 0.. in arrival order; a seek or a resume restarts `Replay` at the right `start_ts`
//! (inclusive) and drops the transactions already delivered (by txn_id), so nothing is lost or
//! repeated. Realtime pacing falls back to the logical tick (there are no wall-clock times).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::wire::{NameCache, decode_event};
use crate::event::{Event, Position};
use crate::flow::CreditWindow;
use crate::source::{
    Batch, BatchStream, Source, SourceError, SourceInfo, StreamRequest, deliver, retry_after,
    spawn_producer,
};
use crate::wire::client::{Client, ConnectOptions};
use crate::wire::proto::statehouse::v1::ReplayRequest;
use crate::wire::reconnect::{Phase, Reconnect, RetryPolicy, StatusLine};

pub struct StatehouseSource {
    client: Client,
    info: SourceInfo,
    namespace: Arc<str>,
    agent_id: Arc<str>,
    /// commit_ts of each event, by offset.
    commit_ts: Arc<Vec<u64>>,
    retry: RetryPolicy,
    status: StatusLine,
}

/// A failed Replay call: DATA_LOSS (a server that found its archive damaged) is an integrity
/// failure, anything else a plain one.
fn replay_failed(name: &str, s: &tonic::Status) -> SourceError {
    let message = format!("Replay failed: {} ({:?})", s.message(), s.code());
    if s.code() == tonic::Code::DataLoss {
        SourceError::Integrity {
            source_name: name.to_string(),
            message,
        }
    } else {
        err(name, message)
    }
}

fn err(name: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Invalid {
        source_name: name.to_string(),
        message: message.to_string(),
    }
}

/// One event as this source delivers it: numbered by arrival, named by the configured agent,
/// without a wall-clock time (the daemon has none; fields a replayscope server adds are dropped
/// so that both kinds of endpoint give the same events).
fn normalize(mut e: Event, offset: u64, namespace: &Arc<str>, agent_id: &Arc<str>) -> Event {
    e.offset = offset;
    e.commit_time_ns = None;
    e.namespace = namespace.clone();
    e.agent_id = agent_id.clone();
    e
}

impl StatehouseSource {
    /// Connects, and scans the agent's history once for its commit timestamps (blocking;
    /// callable from any thread).
    pub fn connect(
        url: &str,
        agent: Option<&str>,
        options: ConnectOptions,
        retry: RetryPolicy,
    ) -> Result<StatehouseSource, SourceError> {
        let addr = url
            .strip_prefix("statehouse://")
            .or_else(|| url.strip_prefix("grpc://"))
            .ok_or_else(|| err(url, "expected statehouse://host:port"))?
            .trim_end_matches('/')
            .to_string();
        let agent = agent.ok_or_else(|| {
            err(
                url,
                "a Statehouse endpoint replays one agent at a time: give --agent NAMESPACE/AGENT_ID",
            )
        })?;
        let (namespace, agent_id) = agent.split_once('/').ok_or_else(|| {
            err(
                url,
                format!("--agent {agent:?}: expected NAMESPACE/AGENT_ID"),
            )
        })?;
        let (ns, id) = (namespace.to_string(), agent_id.to_string());
        let name = url.to_string();
        let inner_name = name.clone();
        let failed = {
            let name = name.clone();
            move |s: tonic::Status| replay_failed(&name, &s)
        };
        let (client, commit_ts) = crate::background_runtime::block_on(async move {
            let client = Client::connect(&addr, options)
                .await
                .map_err(|e| err(&inner_name, e))?;
            let mut s = client
                .replay_raw(ReplayRequest {
                    namespace: ns,
                    agent_id: id,
                    start_ts: None,
                    end_ts: None,
                })
                .await
                .map_err(&failed)?;
            let mut names = NameCache::default();
            let mut commit_ts = Vec::new();
            while let Some(m) = s.message().await.map_err(&failed)? {
                let e = decode_event(&m, &mut names).map_err(|e| {
                    err(
                        &inner_name,
                        format!("undecodable ReplayEvent #{}: {e}", commit_ts.len()),
                    )
                })?;
                commit_ts.push(e.commit_ts);
            }
            Ok::<_, SourceError>((client, commit_ts))
        })
        .map_err(|e| err(&name, e))??;
        if commit_ts.is_empty() {
            return Err(err(
                &name,
                format!(
                    "no transactions for {agent} (a Statehouse daemon answers an unknown agent with an empty replay)"
                ),
            ));
        }
        let n = commit_ts.len() as u64;
        let info = SourceInfo {
            name: name.clone(),
            kind: "statehouse endpoint".into(),
            events: Some(n),
            first_offset: Some(0),
            last_offset: Some(n - 1),
            first_commit_ts: commit_ts.first().copied(),
            last_commit_ts: commit_ts.last().copied(),
            first_time_ns: None,
            last_time_ns: None,
            channels: vec![(namespace.to_string(), agent_id.to_string(), n)],
            final_hash: None,
            ..Default::default()
        };
        Ok(StatehouseSource {
            client,
            info,
            namespace: Arc::from(namespace),
            agent_id: Arc::from(agent_id),
            commit_ts: Arc::new(commit_ts),
            retry,
            status: Default::default(),
        })
    }
}

impl Source for StatehouseSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError> {
        let last = self.commit_ts.len() as u64 - 1;
        match pos {
            Position::Offset(o) if at_or_before => Ok(Some(o.min(last))),
            Position::Offset(o) if o > last => Err(err(
                &self.info.name,
                format!("offset {o} is outside the source (offsets 0 to {last})"),
            )),
            Position::Offset(o) => Ok(Some(o)),
            Position::CommitTs(t) => {
                let i = self.commit_ts.partition_point(|&c| c < t) as u64;
                if at_or_before {
                    let exact = self.commit_ts.get(i as usize) == Some(&t);
                    Ok(if exact { Some(i) } else { i.checked_sub(1) })
                } else if i > last {
                    Err(err(
                        &self.info.name,
                        format!(
                            "commit_ts @{t} is past the last transaction (@{})",
                            self.commit_ts[last as usize]
                        ),
                    ))
                } else {
                    Ok(Some(i))
                }
            }
            Position::Time(_) => Err(err(
                &self.info.name,
                "a Statehouse endpoint records no wall-clock times: seek by offset or @commit_ts",
            )),
        }
    }

    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError> {
        let (client, name) = (self.client.clone(), self.info.name.clone());
        let agent = (self.namespace.clone(), self.agent_id.clone());
        let (commit_ts, retry, status) = (
            self.commit_ts.clone(),
            self.retry.clone(),
            self.status.clone(),
        );
        Ok(spawn_producer(4, |tx| {
            produce(
                client, name, agent, commit_ts, retry, status, req, window, tx,
            )
        }))
    }

    fn chain_head_through(&self, _offset: u64) -> Option<[u8; 32]> {
        None
    }

    fn status(&self) -> Option<String> {
        self.status.get()
    }
}

/// Numbers the events of restarted Replay streams so that each is delivered once: offsets in
/// arrival order, and after a restart at the last delivered commit_ts the transactions already
/// delivered at it are dropped (by txn_id).
struct Numbering {
    /// The next offset to deliver.
    next: u64,
    /// The commit_ts and txn_ids of the last transactions delivered.
    delivered: Option<(u64, Vec<String>)>,
    names: NameCache,
    namespace: Arc<str>,
    agent_id: Arc<str>,
}

impl Numbering {
    /// Where a (re)started Replay begins: at the last delivered commit_ts (its transactions
    /// are dropped as repeats), or at the next offset's.
    fn start_ts(&self, commit_ts: &[u64]) -> u64 {
        match &self.delivered {
            Some((ts, _)) => *ts,
            None => commit_ts[self.next as usize],
        }
    }

    /// The event of one ReplayEvent message, numbered; `None` when it was delivered before.
    fn number(&mut self, m: &bytes::Bytes) -> Result<Option<Event>, String> {
        let e = decode_event(m, &mut self.names)
            .map_err(|e| format!("undecodable ReplayEvent: {e}"))?;
        match &mut self.delivered {
            Some((ts, txns)) if *ts == e.commit_ts && txns.contains(&e.txn_id) => return Ok(None),
            Some((ts, txns)) if *ts == e.commit_ts => txns.push(e.txn_id.clone()),
            _ => self.delivered = Some((e.commit_ts, vec![e.txn_id.clone()])),
        }
        let e = normalize(e, self.next, &self.namespace, &self.agent_id);
        self.next += 1;
        Ok(Some(e))
    }
}

/// How a read of what has arrived ended.
enum Took {
    /// A batch's worth, or all that had arrived: more may follow.
    More,
    /// The stream ended.
    Ended,
    Failed(tonic::Status),
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    client: Client,
    name: String,
    (namespace, agent_id): (Arc<str>, Arc<str>),
    commit_ts: Arc<Vec<u64>>,
    retry: RetryPolicy,
    status: StatusLine,
    req: StreamRequest,
    window: CreditWindow,
    tx: mpsc::Sender<Result<Batch, SourceError>>,
) {
    let last = commit_ts.len() as u64 - 1;
    let until = req.until.unwrap_or(last).min(last);
    if req.from > until {
        return;
    }
    let end_ts = commit_ts[until as usize];
    let mut numbering = Numbering {
        next: req.from,
        delivered: None,
        names: NameCache::default(),
        namespace,
        agent_id,
    };
    let mut reconnect = Reconnect::new(&name, retry, Phase::Reconnecting, status);
    loop {
        let replay = client.replay_raw(ReplayRequest {
            namespace: numbering.namespace.to_string(),
            agent_id: numbering.agent_id.to_string(),
            start_ts: Some(numbering.start_ts(&commit_ts)),
            end_ts: Some(end_ts),
        });
        let failure = match replay.await {
            Err(s) => s,
            Ok(mut s) => loop {
                let mut batch = Batch {
                    events: Vec::with_capacity(req.batch_events.max(1)),
                    ..Batch::default()
                };
                let took = match take_arrived(&mut s, &mut numbering, &req, &mut batch).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = tx.send(Err(err(&name, e))).await;
                        return;
                    }
                };
                if !batch.events.is_empty() || matches!(took, Took::Ended) {
                    reconnect.delivered(numbering.next);
                }
                if let Some(last) = batch.last_offset()
                    && !deliver(&window, &tx, batch.bytes, last, batch).await
                {
                    return;
                }
                match took {
                    Took::Ended => return,
                    _ if numbering.next > until => return,
                    Took::Failed(f) => break f,
                    Took::More => {}
                }
            },
        };
        if !retry_after(&mut reconnect, &failure, &tx, &name).await {
            return;
        }
    }
}

/// Takes what has arrived on the stream into `batch` (waiting only for the first message), up
/// to a batch; events the filter drops are numbered but not kept.
async fn take_arrived(
    s: &mut tonic::Streaming<bytes::Bytes>,
    numbering: &mut Numbering,
    req: &StreamRequest,
    batch: &mut Batch,
) -> Result<Took, String> {
    let inner_filter = req.filter.key_prefix.is_some() || req.filter.txn_id.is_some();
    while batch.events.len() < req.batch_events.max(1) {
        let m = if batch.events.is_empty() {
            s.message().await
        } else {
            match futures_util::FutureExt::now_or_never(s.message()) {
                Some(m) => m,
                None => break,
            }
        };
        let m = match m {
            Err(status) => return Ok(Took::Failed(status)),
            Ok(None) => return Ok(Took::Ended),
            Ok(Some(m)) => m,
        };
        let Some(e) = numbering.number(&m)? else {
            continue;
        };
        if inner_filter && !req.filter.matches(&e) {
            continue;
        }
        batch.bytes += m.len() as u64;
        batch.events.push((Arc::new(e), m.len() as u32));
    }
    Ok(Took::More)
}
