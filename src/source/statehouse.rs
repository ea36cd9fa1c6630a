//! `statehouse://host:port`: the plain Statehouse `Replay` RPC as a source — a real Statehouse
//! daemon, or `replayscope serve` (which answers the same RPC).
//!
//! The protocol streams one agent's transactions in commit order and nothing else: no offsets,
//! no wall-clock times, no counts, no tail. So the source scans the agents' histories once when
//! it connects (keeping only each transaction's commit_ts: 8 bytes per event) and numbers the
//! events 0.. in merged commit order. Several agents (`--agent` more than once: the daemon
//! cannot list them) are merged by commit_ts, which is one counter for the whole daemon, so the
//! merge is the true global order; a transaction that touches several of them is in each of
//! their replays with the same commit_ts and txn_id, and is delivered once (named by the first
//! agent given).
//!
//! A seek or a resume restarts `Replay` at the right `start_ts` (inclusive) and drops the
//! transactions already delivered (by txn_id), so nothing is lost or repeated. Followed
//! (`--follow`), the stream does not end at the snapshot: it polls `Replay{start_ts: last + 1}`
//! at an adaptive interval ([`PollPolicy`]) and numbers what is new after what it had.
//!
//! Merging snapshots taken one after another needs care: agent A's snapshot, taken first, may
//! miss a commit that agent B's, taken later, would order after one of B's. A lane's snapshot is
//! known complete only up to its *horizon*: the newest commit_ts seen anywhere before it was
//! asked for, or the newest in it. An event is delivered only when every other lane has a later
//! event waiting or a horizon at or past it; otherwise the round ends there and the next one
//! (asked at once) fetches the rest again. Realtime pacing falls back to the logical tick (there
//! are no wall-clock times).

use std::sync::{Arc, RwLock};
use std::time::Duration;

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

/// The shortest interval between two polls (`--poll 0` included): never a tight loop.
pub const MIN_POLL: Duration = Duration::from_millis(1);

/// How often a followed daemon is asked for what is new: every `fastest` while events arrive,
/// doubling up to `slowest` while it is idle, back to `fastest` on the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub fastest: Duration,
    pub slowest: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            fastest: Duration::from_millis(100),
            slowest: Duration::from_secs(1),
        }
    }
}

impl PollPolicy {
    /// The interval after one at `now`: `fastest` after a poll that found events, else double
    /// (at most `slowest`).
    pub fn next(&self, now: Duration, found_events: bool) -> Duration {
        let fastest = self.fastest.max(MIN_POLL);
        if found_events {
            fastest
        } else {
            now.max(fastest)
                .saturating_mul(2)
                .clamp(fastest, self.slowest.max(fastest))
        }
    }
}

/// One agent of the source.
#[derive(Debug, Clone)]
struct Agent {
    namespace: Arc<str>,
    agent_id: Arc<str>,
}

/// commit_ts by offset (it grows while the source is followed), and the newest commit_ts seen
/// anywhere: the daemon had committed at least that far when it was seen.
#[derive(Debug, Default)]
struct Index {
    commit_ts: Vec<u64>,
    seen_max: u64,
}

type SharedIndex = Arc<RwLock<Index>>;

fn read(index: &SharedIndex) -> std::sync::RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(|p| p.into_inner())
}

fn write(index: &SharedIndex) -> std::sync::RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

pub struct StatehouseSource {
    client: Client,
    info: SourceInfo,
    agents: Arc<[Agent]>,
    index: SharedIndex,
    retry: RetryPolicy,
    status: StatusLine,
    poll: PollPolicy,
    follow: bool,
}

/// A failed Replay call: DATA_LOSS (a server that found its archive damaged) is an integrity
/// failure, anything else a plain one.
fn replay_failed(name: &str, s: &tonic::Status) -> SourceError {
    let message = format!("Replay failed: {} ({:?})", s.message(), s.code());
    SourceError::failed(name, message, s.code() == tonic::Code::DataLoss)
}

fn err(name: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Invalid {
        source_name: name.to_string(),
        message: message.to_string(),
    }
}

/// One event as this source delivers it: numbered in merged order, named by the agent whose
/// replay it came from, without a wall-clock time (the daemon has none; fields a replayscope
/// server adds are dropped so that both kinds of endpoint give the same events).
fn normalize(mut e: Event, offset: u64, agent: &Agent) -> Event {
    e.offset = offset;
    e.commit_time_ns = None;
    e.namespace = agent.namespace.clone();
    e.agent_id = agent.agent_id.clone();
    e
}

/// An event of one lane: its agent's index and encoded size.
type LaneEvent = (Event, usize, u32);

/// `NAMESPACE/AGENT_ID` of each `--agent`, in order, without repeats.
fn parse_agents(url: &str, agents: &[String]) -> Result<Vec<Agent>, SourceError> {
    if agents.is_empty() {
        return Err(err(
            url,
            "a Statehouse endpoint cannot list its agents: give --agent NAMESPACE/AGENT_ID (more than once for several)",
        ));
    }
    let mut out: Vec<Agent> = Vec::new();
    for a in agents {
        let (namespace, agent_id) = a
            .split_once('/')
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
            .ok_or_else(|| err(url, format!("--agent {a:?}: expected NAMESPACE/AGENT_ID")))?;
        if !out
            .iter()
            .any(|x| &*x.namespace == namespace && &*x.agent_id == agent_id)
        {
            out.push(Agent {
                namespace: Arc::from(namespace),
                agent_id: Arc::from(agent_id),
            });
        }
    }
    Ok(out)
}

/// The union of sorted lists, each value as often as the list holding it most often (a
/// transaction in several agents' replays counts once).
fn union_sorted(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                out.push(*x);
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (None, None) => unreachable!("the loop condition"),
        }
    }
    out
}

/// Passes over the agents when the history is scanned: a pass re-asks only agents whose
/// horizon is behind what another agent showed; commits that keep arriving during the scan are
/// left to the stream.
const SCAN_PASSES: usize = 3;

/// Scans the agents' histories: the merged commit_ts list up to the common horizon, and the
/// newest commit_ts seen.
async fn scan(client: &Client, name: &str, agents: &[Agent]) -> Result<Index, SourceError> {
    let failed = |s: tonic::Status| replay_failed(name, &s);
    let mut names = NameCache::default();
    // Per agent: its commit_ts list and its horizon (None: not asked yet).
    let mut lists: Vec<Vec<u64>> = vec![Vec::new(); agents.len()];
    let mut horizons: Vec<Option<u64>> = vec![None; agents.len()];
    let mut seen_max = 0u64;
    for _ in 0..SCAN_PASSES {
        let mut asked = false;
        for (i, agent) in agents.iter().enumerate() {
            if horizons[i].is_some_and(|h| h >= seen_max) {
                continue;
            }
            asked = true;
            let floor = seen_max;
            let start_ts = horizons[i].map(|h| h + 1);
            let mut s = client
                .replay_raw(ReplayRequest {
                    namespace: agent.namespace.to_string(),
                    agent_id: agent.agent_id.to_string(),
                    start_ts,
                    end_ts: None,
                })
                .await
                .map_err(failed)?;
            while let Some(m) = s.message().await.map_err(failed)? {
                let e = decode_event(&m, &mut names).map_err(|e| {
                    err(
                        name,
                        format!(
                            "undecodable ReplayEvent #{} of {}/{}: {e}",
                            lists[i].len(),
                            agent.namespace,
                            agent.agent_id
                        ),
                    )
                })?;
                lists[i].push(e.commit_ts);
                seen_max = seen_max.max(e.commit_ts);
            }
            horizons[i] = Some(floor.max(lists[i].last().copied().unwrap_or(0)));
        }
        if !asked {
            break;
        }
    }
    let horizon = horizons.iter().map(|h| h.unwrap_or(0)).min().unwrap_or(0);
    let mut commit_ts = Vec::new();
    for l in &lists {
        let upto = l.partition_point(|&t| t <= horizon);
        commit_ts = union_sorted(&commit_ts, &l[..upto]);
    }
    Ok(Index {
        commit_ts,
        seen_max,
    })
}

/// How a Statehouse source is opened.
#[derive(Debug, Clone, Default)]
pub struct StatehouseOptions {
    pub connect: ConnectOptions,
    pub retry: RetryPolicy,
    /// `NAMESPACE/AGENT_ID`, one or more.
    pub agents: Vec<String>,
    /// The source will be followed: an agent without transactions yet is not an error.
    pub follow: bool,
    pub poll: PollPolicy,
}

impl StatehouseSource {
    /// Connects, and scans the agents' histories once for their commit timestamps (blocking;
    /// callable from any thread).
    pub fn connect(url: &str, o: StatehouseOptions) -> Result<StatehouseSource, SourceError> {
        let addr = url
            .strip_prefix("statehouse://")
            .or_else(|| url.strip_prefix("grpc://"))
            .ok_or_else(|| err(url, "expected statehouse://host:port"))?
            .trim_end_matches('/')
            .to_string();
        let agents: Arc<[Agent]> = parse_agents(url, &o.agents)?.into();
        let name = url.to_string();
        let (inner_name, inner_agents, connect) = (name.clone(), agents.clone(), o.connect);
        let (client, index) = crate::background_runtime::block_on(async move {
            let client = Client::connect(&addr, connect)
                .await
                .map_err(|e| err(&inner_name, e))?;
            let index = scan(&client, &inner_name, &inner_agents).await?;
            Ok::<_, SourceError>((client, index))
        })
        .map_err(|e| err(&name, e))??;
        let listed = || {
            agents
                .iter()
                .map(|a| format!("{}/{}", a.namespace, a.agent_id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if index.commit_ts.is_empty() && !o.follow {
            return Err(err(
                &name,
                format!(
                    "no transactions for {} (a Statehouse daemon answers an unknown agent with an empty replay; --follow waits for the first)",
                    listed()
                ),
            ));
        }
        let n = index.commit_ts.len() as u64;
        let info = SourceInfo {
            name: name.clone(),
            kind: "statehouse endpoint".into(),
            events: Some(n),
            first_offset: Some(0),
            last_offset: n.checked_sub(1),
            first_commit_ts: index.commit_ts.first().copied(),
            last_commit_ts: index.commit_ts.last().copied(),
            first_time_ns: None,
            last_time_ns: None,
            // Events per agent are not counted (a transaction may be in several): the total
            // goes to the first.
            channels: agents
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let events = if i == 0 { n } else { 0 };
                    (a.namespace.to_string(), a.agent_id.to_string(), events)
                })
                .collect(),
            final_hash: None,
            ..Default::default()
        };
        Ok(StatehouseSource {
            client,
            info,
            agents,
            index: Arc::new(RwLock::new(index)),
            retry: o.retry,
            status: Default::default(),
            poll: o.poll,
            follow: o.follow,
        })
    }
}

impl Source for StatehouseSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError> {
        let index = read(&self.index);
        let commit_ts = &index.commit_ts;
        let Some(last) = (commit_ts.len() as u64).checked_sub(1) else {
            return match pos {
                Position::Offset(o) if self.follow => Ok(Some(o)),
                Position::CommitTs(_) if !at_or_before && self.follow => Ok(Some(0)),
                _ if at_or_before => Ok(None),
                _ => Err(err(&self.info.name, "no transactions yet")),
            };
        };
        match pos {
            // Followed, a later offset will exist.
            Position::Offset(o) if at_or_before && self.follow => Ok(Some(o)),
            Position::Offset(o) if at_or_before => Ok(Some(o.min(last))),
            // A followed source will have it once it is committed.
            Position::Offset(o) if o > last && !self.follow => Err(err(
                &self.info.name,
                format!("offset {o} is outside the source (offsets 0 to {last})"),
            )),
            Position::Offset(o) => Ok(Some(o)),
            Position::CommitTs(t) => {
                let i = commit_ts.partition_point(|&c| c < t) as u64;
                if at_or_before {
                    let exact = commit_ts.get(i as usize) == Some(&t);
                    Ok(if exact { Some(i) } else { i.checked_sub(1) })
                } else if i > last && !self.follow {
                    Err(err(
                        &self.info.name,
                        format!(
                            "commit_ts @{t} is past the last transaction (@{})",
                            commit_ts[last as usize]
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
            Position::Marker(name) => Err(super::unresolved_marker(&self.info.name, &name)),
        }
    }

    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError> {
        if req.follow && !self.follow {
            return Err(err(&self.info.name, "opened without --follow"));
        }
        let producer = Producer {
            client: self.client.clone(),
            name: self.info.name.clone(),
            agents: self.agents.clone(),
            index: self.index.clone(),
            retry: self.retry.clone(),
            status: self.status.clone(),
            poll: self.poll,
            req,
        };
        Ok(spawn_producer(4, |tx| producer.run(window, tx)))
    }

    fn chain_head_through(&self, _offset: u64) -> Option<[u8; 32]> {
        None
    }

    fn status(&self) -> Option<String> {
        self.status.get()
    }

    fn can_follow(&self) -> bool {
        self.follow
    }

    fn may_gain_agents(&self) -> bool {
        false
    }

    fn head(&self) -> Option<u64> {
        (read(&self.index).commit_ts.len() as u64).checked_sub(1)
    }
}

/// One agent's Replay stream in a round of the merge.
struct Lane {
    agent: usize,
    stream: tonic::Streaming<bytes::Bytes>,
    /// The next event of the lane, decoded, with its encoded size.
    head: Option<(Event, u32)>,
    ended: bool,
    /// The newest commit_ts seen anywhere when the lane was asked for: its snapshot holds
    /// every commit up to there.
    floor: u64,
    newest: Option<u64>,
}

impl Lane {
    /// Up to where the lane's (ended) snapshot is known complete.
    fn horizon(&self) -> u64 {
        self.floor.max(self.newest.unwrap_or(0))
    }
}

/// What the merge gives next.
enum Step {
    Event(LaneEvent),
    /// A lane has nothing ready (only when not waiting).
    NotReady,
    /// An event is ready but an ended lane's snapshot may be missing an earlier one: ask again.
    Horizon,
    /// Every lane ended.
    Done,
    Failed(tonic::Status),
}

struct Producer {
    client: Client,
    name: String,
    agents: Arc<[Agent]>,
    index: SharedIndex,
    retry: RetryPolicy,
    status: StatusLine,
    poll: PollPolicy,
    req: StreamRequest,
}

/// Numbers merged events so that each is delivered once: offsets in merged order, and after a
/// restart at the last delivered commit_ts the transactions already delivered at it are dropped
/// (by txn_id).
struct Numbering {
    /// The next offset to deliver.
    next: u64,
    /// The commit_ts and txn_ids of the last transactions delivered.
    delivered: Option<(u64, Vec<String>)>,
}

impl Numbering {
    /// True (and recorded) when `e` is new.
    fn is_new(&mut self, e: &Event) -> bool {
        match &mut self.delivered {
            Some((ts, _)) if e.commit_ts < *ts => false,
            Some((ts, txns)) if *ts == e.commit_ts && txns.contains(&e.txn_id) => false,
            Some((ts, txns)) if *ts == e.commit_ts => {
                txns.push(e.txn_id.clone());
                true
            }
            _ => {
                self.delivered = Some((e.commit_ts, vec![e.txn_id.clone()]));
                true
            }
        }
    }
}

/// How one round (one Replay call per agent) ended.
enum RoundEnd {
    /// Every snapshot was delivered.
    Done,
    /// Part of a snapshot was held back (the horizon): ask again at once.
    Again,
    /// The range is complete or the consumer went away.
    Stop,
    Failed(tonic::Status),
}

impl Producer {
    async fn run(self, window: CreditWindow, tx: mpsc::Sender<Result<Batch, SourceError>>) {
        let req = &self.req;
        let until = if req.follow {
            req.until
        } else {
            let Some(last) = (read(&self.index).commit_ts.len() as u64).checked_sub(1) else {
                return;
            };
            Some(req.until.unwrap_or(last).min(last))
        };
        if until.is_some_and(|u| req.from > u) {
            return;
        }
        // Numbering starts at the first offset not yet known (a `from` past the head skips
        // what comes before it, numbered all the same).
        let mut numbering = Numbering {
            next: req.from.min(read(&self.index).commit_ts.len() as u64),
            delivered: None,
        };
        // Where the first round starts: the event at `from` when it is known, else just past
        // the newest commit known.
        let (mut start_ts, end_ts) = {
            let index = read(&self.index);
            let start = match index.commit_ts.get(req.from as usize) {
                Some(&t) => t,
                None => index.commit_ts.last().map_or(0, |t| t + 1),
            };
            let end = until.and_then(|u| index.commit_ts.get(u as usize).copied());
            (start, end)
        };
        let mut names = NameCache::default();
        let mut reconnect = Reconnect::new(
            &self.name,
            self.retry.clone(),
            Phase::Reconnecting,
            self.status.clone(),
        );
        let mut interval = self.poll.fastest;
        // Whether the consumer was told it has everything.
        let mut announced = false;
        loop {
            let before = numbering.next;
            let end = self
                .round(
                    start_ts,
                    end_ts,
                    until,
                    &mut numbering,
                    &mut names,
                    &mut reconnect,
                    &window,
                    &tx,
                )
                .await;
            let found = numbering.next > before;
            // The next round starts after the last delivered commit (a restart after a failure
            // at it, dropping what was delivered: the failure may have cut a group of equal
            // commit_ts).
            let last = numbering.delivered.as_ref().map(|(t, _)| *t);
            match end {
                RoundEnd::Stop => return,
                RoundEnd::Failed(failure) => {
                    if !retry_after(&mut reconnect, &failure, &tx, &self.name).await {
                        return;
                    }
                    if let Some(t) = last {
                        start_ts = t;
                    }
                    continue;
                }
                RoundEnd::Again => {
                    if let Some(t) = last {
                        start_ts = t + 1;
                    }
                    continue;
                }
                RoundEnd::Done if !req.follow => return,
                RoundEnd::Done => {
                    if let Some(t) = last {
                        start_ts = t + 1;
                    }
                }
            }
            if found || !announced {
                announced = true;
                let caught_up = Batch {
                    caught_up: true,
                    ..Batch::default()
                };
                if tx.send(Ok(caught_up)).await.is_err() {
                    return;
                }
            }
            interval = self.poll.next(interval, found);
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One Replay call per agent from `start_ts`, merged and delivered up to the horizon.
    #[allow(clippy::too_many_arguments)]
    async fn round(
        &self,
        start_ts: u64,
        end_ts: Option<u64>,
        until: Option<u64>,
        numbering: &mut Numbering,
        names: &mut NameCache,
        reconnect: &mut Reconnect,
        window: &CreditWindow,
        tx: &mpsc::Sender<Result<Batch, SourceError>>,
    ) -> RoundEnd {
        let floor = read(&self.index).seen_max;
        let mut lanes = Vec::with_capacity(self.agents.len());
        for (i, agent) in self.agents.iter().enumerate() {
            let replay = self
                .client
                .replay_raw(ReplayRequest {
                    namespace: agent.namespace.to_string(),
                    agent_id: agent.agent_id.to_string(),
                    start_ts: Some(start_ts),
                    end_ts,
                })
                .await;
            match replay {
                Ok(stream) => lanes.push(Lane {
                    agent: i,
                    stream,
                    head: None,
                    ended: false,
                    floor,
                    newest: None,
                }),
                Err(s) => return RoundEnd::Failed(s),
            }
        }
        let req = &self.req;
        let inner_filter = req.filter.key_prefix.is_some() || req.filter.txn_id.is_some();
        loop {
            let mut batch = Batch {
                events: Vec::with_capacity(req.batch_events.max(1)),
                ..Batch::default()
            };
            let mut end = None;
            while batch.events.len() < req.batch_events.max(1) {
                let wait = batch.events.is_empty();
                match self.next(&mut lanes, names, wait).await {
                    Step::Event((e, agent, size)) => {
                        if !numbering.is_new(&e) {
                            continue;
                        }
                        let offset = numbering.next;
                        numbering.next += 1;
                        self.record(offset, e.commit_ts);
                        let e = normalize(e, offset, &self.agents[agent]);
                        if offset < req.from || (inner_filter && !req.filter.matches(&e)) {
                            if until.is_some_and(|u| numbering.next > u) {
                                end = Some(RoundEnd::Stop);
                                break;
                            }
                            continue;
                        }
                        batch.bytes += size as u64;
                        batch.events.push((Arc::new(e), size));
                        if until.is_some_and(|u| numbering.next > u) {
                            end = Some(RoundEnd::Stop);
                            break;
                        }
                    }
                    Step::NotReady => break,
                    Step::Horizon => {
                        end = Some(RoundEnd::Again);
                        break;
                    }
                    Step::Done => {
                        end = Some(RoundEnd::Done);
                        break;
                    }
                    Step::Failed(s) => {
                        end = Some(RoundEnd::Failed(s));
                        break;
                    }
                }
            }
            if !batch.events.is_empty() {
                reconnect.delivered(numbering.next);
            }
            if let Some(last) = batch.last_offset()
                && !deliver(window, tx, batch.bytes, last, batch).await
            {
                return RoundEnd::Stop;
            }
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// The daemon has committed at least as far as `commit_ts`.
    fn observe(&self, commit_ts: u64) {
        if read(&self.index).seen_max < commit_ts {
            let mut index = write(&self.index);
            index.seen_max = index.seen_max.max(commit_ts);
        }
    }

    /// Offsets are kept for the session: a new event extends the index.
    fn record(&self, offset: u64, commit_ts: u64) {
        let mut index = write(&self.index);
        if offset == index.commit_ts.len() as u64 {
            index.commit_ts.push(commit_ts);
        }
    }

    /// The next event of the merge (see the module's notes on the horizon).
    async fn next(&self, lanes: &mut [Lane], names: &mut NameCache, wait: bool) -> Step {
        for lane in lanes.iter_mut() {
            if lane.ended || lane.head.is_some() {
                continue;
            }
            let m = if wait {
                lane.stream.message().await
            } else {
                match futures_util::FutureExt::now_or_never(lane.stream.message()) {
                    Some(m) => m,
                    None => return Step::NotReady,
                }
            };
            match m {
                Err(s) => return Step::Failed(s),
                Ok(None) => lane.ended = true,
                Ok(Some(m)) => {
                    let e = match decode_event(&m, names) {
                        Ok(e) => e,
                        Err(e) => {
                            return Step::Failed(tonic::Status::data_loss(format!(
                                "undecodable ReplayEvent: {e}"
                            )));
                        }
                    };
                    lane.newest = Some(e.commit_ts);
                    self.observe(e.commit_ts);
                    lane.head = Some((e, m.len() as u32));
                }
            }
        }
        let Some(pick) = lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.head.as_ref().map(|(e, _)| (e.commit_ts, i)))
            .min()
            .map(|(_, i)| i)
        else {
            return Step::Done;
        };
        let ts = lanes[pick].head.as_ref().map_or(0, |(e, _)| e.commit_ts);
        if lanes.iter().any(|l| l.ended && l.horizon() < ts) {
            return Step::Horizon;
        }
        let (e, size) = lanes[pick].head.take().expect("picked a lane with a head");
        // The same transaction in other agents' replays.
        for l in lanes.iter_mut() {
            if l.head
                .as_ref()
                .is_some_and(|(o, _)| o.commit_ts == ts && o.txn_id == e.txn_id)
            {
                l.head = None;
            }
        }
        Step::Event((e, lanes[pick].agent, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_counts_shared_transactions_once() {
        assert_eq!(union_sorted(&[1, 3, 5], &[2, 3, 6]), vec![1, 2, 3, 5, 6]);
        assert_eq!(union_sorted(&[], &[2, 2]), vec![2, 2]);
        assert_eq!(union_sorted(&[4, 4], &[4]), vec![4, 4]);
    }

    #[test]
    fn poll_backs_off_when_idle_and_resets_on_events() {
        let p = PollPolicy::default();
        let mut d = p.fastest;
        let mut seen = vec![];
        for _ in 0..6 {
            d = p.next(d, false);
            seen.push(d.as_millis());
        }
        assert_eq!(seen, vec![200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(p.next(d, true), p.fastest);
    }
}
