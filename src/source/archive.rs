//! An archive file, segment directory or `s3://` prefix as a source. One producer reads the
//! archive for every front end: decoded batches for the player, stored bytes for the server.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::archive::{Archive, ArchiveError, Cursor, RawEvent};
use crate::event::wire::NameCache;
use crate::event::{Event, Position};
use crate::flow::CreditWindow;
use crate::source::{
    Batch, BatchStream, Filter, Source, SourceError, SourceInfo, StoredBatch, StoredEvent,
    StoredStream, StreamRequest, deliver, spawn_producer,
};

pub struct ArchiveSource {
    archive: Archive,
    info: SourceInfo,
    /// Followed (`--follow`): the archive as last looked at, shared by its streams.
    follow: Option<Arc<Following>>,
}

/// What the streams of a followed archive share.
struct Following {
    /// The newest view of the archive (refreshed by the streams as it grows, and on demand).
    current: std::sync::RwLock<Archive>,
    /// When the view was last looked at again on demand ([`Following::fresh`]).
    checked: std::sync::Mutex<std::time::Instant>,
    /// The one task that watches the files and refreshes the view while streams wait at the
    /// end (whatever their number: one watch, one look per change), and the channel it
    /// announces each new view on — or why the archive can no longer be followed.
    refresher: std::sync::Mutex<Option<watch::Sender<Refreshed>>>,
    /// The bounded poll behind the notifications (and instead of them, where there are none).
    poll: Duration,
}

/// What the refresher last found: the view, or a failure (the archive changed in a way no
/// writer does).
type Refreshed = Result<Archive, FollowFailure>;

#[derive(Debug, Clone)]
struct FollowFailure {
    message: String,
    integrity: bool,
}

impl FollowFailure {
    fn of(e: &ArchiveError) -> FollowFailure {
        FollowFailure {
            message: e.to_string(),
            integrity: e.is_integrity(),
        }
    }

    fn error(&self, name: &str) -> SourceError {
        SourceError::failed(name, self.message.clone(), self.integrity)
    }
}

impl Following {
    /// A receiver of the refresher's views, starting the refresher if none runs.
    fn subscribe(self: &Arc<Self>) -> watch::Receiver<Refreshed> {
        let mut slot = self.refresher.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = slot.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Ok(self.current()));
        *slot = Some(tx.clone());
        drop(slot);
        let me = self.clone();
        tokio::spawn(async move { me.refresh_while_watched(tx).await });
        rx
    }

    /// Watches the files and refreshes the view on each change, until no stream waits.
    async fn refresh_while_watched(self: Arc<Self>, tx: watch::Sender<Refreshed>) {
        let name = self.current().name().to_string();
        let mut watcher = crate::archive::watch::Watcher::new(std::path::Path::new(&name));
        let poll = if watcher.notifies() {
            self.poll
        } else {
            FOLLOW_POLL_UNNOTIFIED
        };
        loop {
            tokio::select! {
                _ = tx.closed() => {}
                _ = watcher.changed(poll) => {}
            }
            {
                // No stream left: stop (a new one starts a new refresher). Checked under the
                // lock `subscribe` takes, so none subscribes to a refresher that is ending.
                let mut slot = self.refresher.lock().unwrap_or_else(|p| p.into_inner());
                if tx.receiver_count() == 0 {
                    *slot = None;
                    return;
                }
            }
            let old = self.current();
            let found = match tokio::task::spawn_blocking(move || old.refreshed()).await {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(e)) => Err(FollowFailure::of(&e)),
                Err(e) => Err(FollowFailure {
                    message: format!("looking at the archive again failed: {e}"),
                    integrity: false,
                }),
            };
            match found {
                Ok(a) => {
                    let grew = a.last_offset() > self.current().last_offset();
                    self.offer(&a);
                    if grew {
                        let _previous = tx.send_replace(Ok(a));
                    }
                }
                Err(f) => {
                    let _previous = tx.send_replace(Err(f));
                    let mut slot = self.refresher.lock().unwrap_or_else(|p| p.into_inner());
                    *slot = None;
                    return;
                }
            }
        }
    }

    fn current(&self) -> Archive {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The view, looked at again when it is older than [`VIEW_MAX_AGE`]: what is asked of the
    /// source (its head, positions, what Describe or a Replay answers) follows the files even
    /// while no stream waits at the end. A failed look keeps the view (the streams report
    /// failures).
    fn fresh(&self) -> Archive {
        // Object storage is looked at by the waiting streams only (a listing is a request).
        if self.current().name().starts_with("s3://") {
            return self.current();
        }
        let due = {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            let due = checked.elapsed() >= VIEW_MAX_AGE;
            if due {
                *checked = std::time::Instant::now();
            }
            due
        };
        if due {
            match self.current().refreshed() {
                Ok(a) => self.offer(&a),
                Err(e) => tracing::debug!("looking at the followed archive again: {e}"),
            }
        }
        self.current()
    }

    /// Keeps `a` as the newest view when it reaches further than the one held.
    fn offer(&self, a: &Archive) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if a.last_offset() > current.last_offset() {
            *current = a.clone();
        }
    }
}

/// How old the shared view of a followed archive may be when it is asked about.
const VIEW_MAX_AGE: Duration = Duration::from_millis(250);

/// How long a follower waits for a notification before looking anyway.
pub const FOLLOW_POLL: Duration = Duration::from_secs(1);
/// How often a follower looks where there are no notifications (`s3://`, no inotify).
pub const FOLLOW_POLL_UNNOTIFIED: Duration = Duration::from_millis(100);

impl ArchiveSource {
    /// A followed archive: its streams wait at the end for more and read it as it grows.
    pub fn followed(archive: Archive) -> ArchiveSource {
        let mut s = ArchiveSource::new(archive.clone());
        s.follow = Some(Arc::new(Following {
            current: std::sync::RwLock::new(archive),
            checked: std::sync::Mutex::new(std::time::Instant::now()),
            refresher: std::sync::Mutex::new(None),
            poll: FOLLOW_POLL,
        }));
        s
    }

    pub fn new(archive: Archive) -> ArchiveSource {
        ArchiveSource {
            info: ArchiveSource::info_of(&archive),
            archive,
            follow: None,
        }
    }

    /// What `archive` holds, as a source's info.
    pub(crate) fn info_of(archive: &Archive) -> SourceInfo {
        let channels = archive
            .channels()
            .iter()
            .zip(archive.channel_counts())
            .map(|(c, n)| (c.namespace.clone(), c.agent_id.clone(), n))
            .collect();
        SourceInfo {
            name: archive.name().to_string(),
            kind: if archive.segments().len() > 1 {
                "segments".into()
            } else {
                "archive".into()
            },
            events: Some(archive.events()),
            first_offset: archive.first_offset(),
            last_offset: archive.last_offset(),
            first_commit_ts: archive.first_commit_ts(),
            last_commit_ts: archive.last_commit_ts(),
            first_time_ns: archive.first_time_ns(),
            last_time_ns: archive.last_time_ns(),
            channels,
            final_hash: archive.recorded_final_hash(),
            bytes: Some(archive.segments().iter().map(|s| s.size()).sum()),
            segments: Some(archive.segments().len() as u32),
            time_source: archive.time_source().map(str::to_string),
        }
    }

    /// The archive as far as it is known now (a followed one grows).
    fn view(&self) -> Archive {
        match &self.follow {
            Some(f) => f.fresh(),
            None => self.archive.clone(),
        }
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// A cursor over the request's range and which channels pass its agent filter.
    fn start(&self, req: &StreamRequest) -> Result<(Cursor, Option<Vec<bool>>), SourceError> {
        // A commit_ts bound needs no more of the archive than the chunk holding its end.
        let archive = self.view();
        let until = match (req.until, req.until_commit_ts) {
            (u, None) => u,
            // A followed archive may hold later commits yet: the stream stops at the commit.
            (u, Some(_)) if self.follow.is_some() => u,
            (u, Some(ts)) => {
                let bound = archive.commit_ts_upper_bound(ts);
                u.into_iter().chain(bound).min()
            }
        };
        // Every channel wanted (the only agent of an archive not followed: one that grows may
        // gain agents) is no filter: then the batches stay slices of the chunks they keep.
        let channels: Option<Vec<bool>> = req
            .filter
            .agent
            .as_ref()
            .map(|(ns, agent)| {
                archive
                    .channels()
                    .iter()
                    .map(|c| c.namespace == *ns && c.agent_id == *agent)
                    .collect::<Vec<bool>>()
            })
            .filter(|w| self.follow.is_some() || !w.iter().all(|wanted| *wanted));
        let cursor = if self.follow.is_some() && archive.last_offset().is_none_or(|l| req.from > l)
        {
            // Not written yet: the stream waits for it.
            archive.cursor_continuing(req.from, None, None, req.chain.is_on())?
        } else {
            // One agent: where the archive keeps its events in chunks of their own, only those
            // are read, each checked against the hash the index records for it (the chain runs
            // over every agent's events).
            archive.cursor_for(req.from, req.chain.is_on(), channels.clone())?
        }
        .until(until);
        Ok((cursor, channels))
    }
}

impl Source for ArchiveSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError> {
        let archive = self.view();
        match pos {
            // Followed, an offset past the end will be written.
            Position::Offset(o)
                if self.follow.is_some() && archive.last_offset().is_none_or(|l| o > l) =>
            {
                Ok(Some(o))
            }
            _ if at_or_before => Ok(archive.resolve_until(pos)?),
            _ => Ok(Some(archive.resolve_from(pos)?)),
        }
    }

    fn resolve_coarse(&self, pos: &Position) -> Option<u64> {
        match pos {
            Position::CommitTs(ts) => self.view().group_start_for_commit_ts(*ts),
            _ => None,
        }
    }

    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError> {
        let (cursor, channels) = self.start(&req)?;
        let follow = self.follow.clone().filter(|_| req.follow);
        Ok(spawn_producer(4, |tx| {
            produce::<(Arc<Event>, u32)>(cursor, req, channels, follow, window, tx)
        }))
    }

    fn can_follow(&self) -> bool {
        self.follow.is_some()
    }

    fn info_now(&self) -> SourceInfo {
        match &self.follow {
            Some(f) => ArchiveSource::info_of(&f.current()),
            None => self.info.clone(),
        }
    }

    fn head(&self) -> Option<u64> {
        self.view().last_offset()
    }

    fn chunk_cache(&self) -> Option<crate::archive::cache::CacheStats> {
        Some(match &self.follow {
            Some(f) => f.current().cache_stats(),
            None => self.archive.cache_stats(),
        })
    }

    fn open_stored(
        &self,
        req: StreamRequest,
        window: CreditWindow,
    ) -> Result<StoredStream, SourceError> {
        let (cursor, channels) = self.start(&req)?;
        let follow = self.follow.clone().filter(|_| req.follow);
        Ok(spawn_producer(4, |tx| {
            produce::<StoredEvent>(cursor, req, channels, follow, window, tx)
        }))
    }

    fn state_snapshot(
        &self,
        offset: u64,
    ) -> Result<Option<crate::archive::snapshot::Snapshot>, SourceError> {
        Ok(self.view().snapshot_at_or_before(offset)?)
    }

    fn chain_head_before(&self, offset: u64) -> Option<[u8; 32]> {
        self.view().cursor_at(offset).ok()?.chain_head()
    }

    fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]> {
        let mut c = self.view().cursor_at(offset).ok()?;
        c.next_raw()?.ok()?;
        c.chain_head()
    }
}

/// What the producer makes of the archive's raw events: decoded events for the player, stored
/// bytes for the server.
trait Item: Sized + Send + 'static {
    type Batch: Send + 'static;
    /// `raw` as an item and its stored size, unless the filter drops it.
    fn from_raw(
        raw: RawEvent,
        filter: &Filter,
        names: &mut NameCache,
        archive: &Archive,
    ) -> Result<Option<(Self, u32)>, SourceError>;
    fn offset(&self) -> u64;
    /// Whether the consumer counts the events read (the server's metrics): then the events
    /// read after the last one delivered arrive in a final batch without events.
    const COUNTS_READS: bool = false;
    /// Whether the batch carries the chain head after each event (the player's report).
    const KEEPS_HEADS: bool = false;
    fn batch(items: Vec<Self>, chain: Chain, read: Read) -> Self::Batch;
    /// A batch without events saying a followed stream has everything there is now.
    fn caught_up(next_offset: u64) -> Self::Batch;
}

/// What the producer knows of a batch's hash chain.
struct Chain {
    /// The head before the first event.
    before: Option<[u8; 32]>,
    /// The head after the last event.
    after: Option<[u8; 32]>,
    /// The head after each event (only for an [`Item::KEEPS_HEADS`] item; empty if unknown).
    heads: Vec<[u8; 32]>,
}

/// What the producer read for a batch.
struct Read {
    bytes: u64,
    /// Events read, delivered or filtered out.
    events: u64,
    next_offset: u64,
    /// The consumer keeps the batch (see [`StreamRequest::compact_payloads`]).
    keep: bool,
    /// Which of its payloads slice chunks that hold events it does not keep.
    shared: SharedChunks,
}

/// Which events of a batch were read from chunks that hold events it does not keep (another
/// agent's, one passed over by a filter): a kept slice of those would keep the rest alive.
#[derive(Debug, Default)]
enum SharedChunks {
    /// None: every payload slices chunks the stream keeps whole.
    #[default]
    None,
    /// These runs of the batch (by index).
    Runs(Vec<std::ops::Range<usize>>),
    /// Any of them may (a filter passed events over).
    All,
}

impl SharedChunks {
    /// The event at `index` (the batch's newest) was read from a shared chunk.
    fn add(&mut self, index: usize) {
        if let SharedChunks::None = self {
            *self = SharedChunks::Runs(Vec::new());
        }
        if let SharedChunks::Runs(runs) = self {
            match runs.last_mut() {
                Some(run) if run.end == index => run.end = index + 1,
                _ => runs.push(index..index + 1),
            }
        }
    }
}

fn decode(raw: &RawEvent, names: &mut NameCache, archive: &Archive) -> Result<Event, SourceError> {
    raw.decode_with(names).map_err(|e| {
        SourceError::Archive(ArchiveError::Decode {
            path: archive.name().to_string(),
            offset: raw.offset,
            message: e.to_string(),
        })
    })
}

/// Decoded events, for the player.
impl Item for (Arc<Event>, u32) {
    type Batch = Batch;

    fn from_raw(
        raw: RawEvent,
        filter: &Filter,
        names: &mut NameCache,
        archive: &Archive,
    ) -> Result<Option<(Self, u32)>, SourceError> {
        if let Some(hint) = &filter.stored_hint
            && !hint.keeps(&raw.payload)
        {
            return Ok(None);
        }
        let event = decode(&raw, names, archive)?;
        let size = raw.payload.len() as u32;
        Ok(filter
            .matches(&event)
            .then(|| ((Arc::new(event), size), size)))
    }
    const KEEPS_HEADS: bool = true;
    fn offset(&self) -> u64 {
        self.0.offset
    }
    fn batch(events: Vec<Self>, chain: Chain, read: Read) -> Batch {
        Batch {
            events,
            bytes: read.bytes,
            heads: chain.heads,
            caught_up: false,
        }
    }
    fn caught_up(_next_offset: u64) -> Batch {
        Batch {
            caught_up: true,
            ..Batch::default()
        }
    }
}

/// Stored bytes, for forwarding; events are decoded only when the filter looks inside them.
impl Item for StoredEvent {
    type Batch = StoredBatch;
    const COUNTS_READS: bool = true;

    fn from_raw(
        raw: RawEvent,
        filter: &Filter,
        names: &mut NameCache,
        archive: &Archive,
    ) -> Result<Option<(Self, u32)>, SourceError> {
        if (filter.key_prefix.is_some() || filter.txn_id.is_some())
            && !filter.matches(&decode(&raw, names, archive)?)
        {
            return Ok(None);
        }
        let size = raw.payload.len() as u32;
        let item = StoredEvent {
            offset: raw.offset,
            payload: raw.payload,
        };
        Ok(Some((item, size)))
    }
    fn offset(&self) -> u64 {
        self.offset
    }
    fn batch(mut events: Vec<Self>, chain: Chain, read: Read) -> StoredBatch {
        if read.keep {
            match read.shared {
                SharedChunks::None => {}
                SharedChunks::Runs(runs) => {
                    for run in runs {
                        compact(&mut events[run]);
                    }
                }
                SharedChunks::All => compact(&mut events),
            }
            // Kept as it is: no spare capacity (it was sized like the batch before).
            events.shrink_to_fit();
        }
        StoredBatch {
            events,
            bytes: read.bytes,
            read: read.events,
            next_offset: read.next_offset,
            chain_before: chain.before,
            chain_after: chain.after,
            caught_up: false,
        }
    }
    fn caught_up(next_offset: u64) -> StoredBatch {
        StoredBatch {
            events: Vec::new(),
            bytes: 0,
            read: 0,
            next_offset,
            chain_before: None,
            chain_after: None,
            caught_up: true,
        }
    }
}

/// Copies payloads into one buffer of exactly their size. Whoever keeps them (the server's
/// replay ring) then holds what it counts: slices of the decompressed chunks would keep
/// whole chunks (message headers, other agents' events) alive for as long as one event of
/// them is held.
fn compact(events: &mut [StoredEvent]) {
    let bytes = events.iter().map(|e| e.payload.len()).sum();
    let mut buf = bytes::BytesMut::with_capacity(bytes);
    for e in events.iter() {
        buf.extend_from_slice(&e.payload);
    }
    let buf = buf.freeze();
    let mut at = 0;
    for e in events.iter_mut() {
        let n = e.payload.len();
        e.payload = buf.slice(at..at + n);
        at += n;
    }
}

/// Events read (most of them filtered out) before the producer yields with what it has.
const SCAN_BUDGET: usize = 16 * 1024;

/// Reads and filters events into batches; waits for credit before sending each. The first
/// batch may be small (so the first event goes out at once); batches then grow 4x each up to
/// the request's size.
async fn produce<T: Item>(
    mut cursor: Cursor,
    req: StreamRequest,
    channels: Option<Vec<bool>>,
    follow: Option<Arc<Following>>,
    window: CreditWindow,
    tx: mpsc::Sender<Result<T::Batch, SourceError>>,
) {
    let mut names = NameCache::default();
    let mut items: Vec<T> = Vec::new();
    let mut bytes = 0u64;
    let max_events = req.batch_events.max(1);
    let max_bytes = req.batch_bytes.unwrap_or(u64::MAX).max(1);
    let mut batch_events = req
        .first_batch_events
        .map_or(max_events, |f| f.clamp(1, max_events));
    let mut archive = cursor.archive().clone();
    // Events read since the last batch went out (delivered or filtered out).
    let mut read = 0u64;
    // The chain head before the batch's first event, and after each of its events.
    let mut before = None;
    let mut after = None;
    let mut heads: Vec<[u8; 32]> = Vec::new();
    let mut heads_known = T::KEEPS_HEADS;
    // Whether the batch's payloads slice chunks that hold nothing else (the cursor passed none
    // of their events over, and neither did this filter): a consumer that keeps them (the
    // server's ring) holds what it counts without a copy. A filter on content passes events
    // over in any batch.
    let filters_content = req.filter.key_prefix.is_some()
        || req.filter.txn_id.is_some()
        || req.filter.stored_hint.is_some();
    // A channel filter the cursor does not apply itself (a followed archive's cursor reads
    // every agent) passes events over in chunks whose other events may already be kept.
    let shared_at_start = |c: &Cursor| {
        if !filters_content && (channels.is_none() || c.filters_channels()) {
            SharedChunks::None
        } else {
            SharedChunks::All
        }
    };
    let mut shared = shared_at_start(&cursor);
    loop {
        let mut failure = None;
        let mut done = false;
        // The end of a commit_ts range (not of the archive).
        let mut past_until_commit_ts = false;
        // Skipping other agents' events yields now and then, so one sparse agent in a big
        // archive does not hold a worker thread for long.
        let mut scan_budget = SCAN_BUDGET;
        while items.len() < batch_events && bytes < max_bytes && scan_budget > 0 {
            scan_budget -= 1;
            if items.is_empty() {
                before = cursor.chain_head();
            }
            let raw = match cursor.next_raw() {
                None => {
                    done = true;
                    break;
                }
                Some(Ok(raw)) => raw,
                Some(Err(e)) => {
                    failure = Some(SourceError::from(e));
                    break;
                }
            };
            if req.from_commit_ts.is_some_and(|ts| raw.commit_ts < ts) {
                // Before the start the request names by commit_ts (`from` was coarse).
                read += 1;
                shared = SharedChunks::All;
                // Before any event of it is kept: its chunk is copied out of from now on.
                cursor.pass_over();
                continue;
            }
            if req.until_commit_ts.is_some_and(|ts| raw.commit_ts > ts) {
                done = true;
                past_until_commit_ts = true;
                break;
            }
            read += 1;
            if channels
                .as_ref()
                .is_some_and(|f| !f.get(raw.channel).copied().unwrap_or(false))
            {
                shared = SharedChunks::All;
                continue;
            }
            match T::from_raw(raw, &req.filter, &mut names, &archive) {
                Ok(Some((item, size))) => {
                    bytes += u64::from(size);
                    items.push(item);
                    if !cursor.returned_whole_chunks() {
                        shared.add(items.len() - 1);
                    }
                    after = cursor.chain_head();
                    if heads_known {
                        match after {
                            Some(h) => heads.push(h),
                            None => heads_known = false,
                        }
                    }
                }
                Ok(None) => shared = SharedChunks::All,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        done = done || cursor.until_reached();
        if let Some(last) = items.last().map(T::offset) {
            let batch_bytes = std::mem::take(&mut bytes);
            let chain = Chain {
                before: before.take(),
                after: after.take(),
                heads: if heads_known {
                    std::mem::take(&mut heads)
                } else {
                    Vec::new()
                },
            };
            heads.clear();
            heads_known = T::KEEPS_HEADS;
            let read = Read {
                bytes: batch_bytes,
                events: std::mem::take(&mut read),
                next_offset: cursor.next_offset(),
                keep: req.compact_payloads,
                shared: std::mem::replace(&mut shared, shared_at_start(&cursor)),
            };
            // The next batch is sized like this one (batches are usually cut by bytes, well
            // before `max_events`, at about the same count): one allocation instead of a dozen
            // doublings. A kept batch drops what it did not use (see `Item::batch`).
            let sized_like = items.len();
            let batch = T::batch(
                std::mem::replace(&mut items, Vec::with_capacity(sized_like)),
                chain,
                read,
            );
            if !deliver(&window, &tx, batch_bytes, last, batch).await {
                return;
            }
        }
        let ending = failure.is_some() || done;
        // A scan that found nothing to send yet still reports what it read (a sparse agent in
        // a big archive): the consumer sees progress (the server's idle watchdog, its metrics).
        let scanned_in_vain = items.is_empty() && scan_budget == 0;
        if (ending || scanned_in_vain) && T::COUNTS_READS && read > 0 {
            let chain = Chain {
                before: None,
                after: None,
                heads: Vec::new(),
            };
            let counted_read = Read {
                bytes: 0,
                events: std::mem::take(&mut read),
                next_offset: cursor.next_offset(),
                keep: false,
                shared: SharedChunks::All,
            };
            let counted = T::batch(Vec::new(), chain, counted_read);
            if tx.send(Ok(counted)).await.is_err() {
                return;
            }
        }
        if let Some(e) = failure {
            let _ = tx.send(Err(e)).await;
            return;
        }
        let at_end_of_what_exists =
            done && !past_until_commit_ts && req.until.is_none_or(|u| cursor.next_offset() <= u);
        if let (true, Some(follow)) = (at_end_of_what_exists, &follow) {
            let at = Continue {
                name: archive.name().to_string(),
                next: cursor.next_offset(),
                chain_head: cursor.chain_head(),
                prev_commit_ts: cursor.prev_commit_ts(),
            };
            match wait_for_more::<T>(at, follow, &req, &tx).await {
                Ok(Some(grown)) => {
                    archive = grown.archive().clone();
                    cursor = grown;
                    shared = shared_at_start(&cursor);
                    continue;
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        if done {
            return;
        }
        if scan_budget > 0 {
            batch_events = (batch_events * 4).min(max_events);
        }
        // When the window and the channel are both ready nothing above yields: let the other
        // streams run between batches.
        tokio::task::yield_now().await;
    }
}

/// Where a read of a followed archive goes on.
struct Continue {
    name: String,
    next: u64,
    chain_head: Option<[u8; 32]>,
    prev_commit_ts: Option<u64>,
}

/// At the end of what a followed archive holds: looks once more (the view this stream read
/// may be older than the files), says it has everything (a caught-up batch), then waits for
/// the shared refresher to find more and returns a cursor over what was added (`None`: the
/// consumer went away).
async fn wait_for_more<T: Item>(
    at: Continue,
    follow: &Arc<Following>,
    req: &StreamRequest,
    tx: &mpsc::Sender<Result<T::Batch, SourceError>>,
) -> Result<Option<Cursor>, SourceError> {
    let next = at.next;
    // Subscribed first: a change after the look below wakes the refresher.
    let mut views = follow.subscribe();
    let old = follow.current();
    let looked = tokio::task::spawn_blocking(move || old.refreshed())
        .await
        .map_err(|e| SourceError::Invalid {
            source_name: at.name.clone(),
            message: format!("looking at the archive again failed: {e}"),
        })??;
    follow.offer(&looked);
    let mut caught_up_sent = false;
    loop {
        let view = match &*views.borrow_and_update() {
            Err(f) => return Err(f.error(&at.name)),
            Ok(_) => follow.current(),
        };
        if view.last_offset().is_some_and(|l| l >= next) {
            let c = view
                .cursor_continuing(next, at.chain_head, at.prev_commit_ts, req.chain.is_on())?
                .until(req.until);
            return Ok(Some(c));
        }
        if !caught_up_sent {
            caught_up_sent = true;
            if tx.send(Ok(T::caught_up(next))).await.is_err() {
                return Ok(None);
            }
            continue;
        }
        tokio::select! {
            _ = tx.closed() => return Ok(None),
            changed = views.changed() => {
                if changed.is_err() {
                    // The refresher stopped (its last stream went away while this one
                    // subscribed): start another.
                    views = follow.subscribe();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveWriter, OpenOptions, WriterOptions};
    use crate::event::generate::{GenOptions, Generator};
    use crate::source::{Filter, Source, StoredEvent};

    fn archive_of(dir: &std::path::Path, agents: usize) -> Archive {
        let path = dir.join(format!("{agents}.mcap"));
        let mut w = ArchiveWriter::create(&path, WriterOptions::default()).unwrap();
        let options = GenOptions {
            agents,
            ..GenOptions::default()
        };
        for e in Generator::new(options).take(20_000) {
            w.append(&e).unwrap();
        }
        w.finish().unwrap();
        Archive::open(&path, OpenOptions::default()).unwrap()
    }

    /// Per batch of two or more events: whether its payloads were copied out into one buffer
    /// (each right after the one before) rather than left as slices of decompressed chunks
    /// (a message record between any two).
    async fn copied_out(archive: &Archive, filter: Filter) -> Vec<bool> {
        copied_out_of(archive, filter, 0, None).await
    }

    async fn copied_out_of(
        archive: &Archive,
        filter: Filter,
        from: u64,
        until: Option<u64>,
    ) -> Vec<bool> {
        pairs_copied_out(archive, filter, from, until, 512)
            .await
            .iter()
            .map(|pairs| pairs.iter().all(|p| *p))
            .collect()
    }

    /// Per batch of two or more events, per two events after each other: whether the second's
    /// payload starts where the first's ends (both copied out into one buffer).
    async fn pairs_copied_out(
        archive: &Archive,
        filter: Filter,
        from: u64,
        until: Option<u64>,
        batch_events: usize,
    ) -> Vec<Vec<bool>> {
        let source = ArchiveSource::new(archive.clone());
        let req = StreamRequest {
            from,
            until,
            filter,
            batch_events,
            first_batch_events: Some(1),
            compact_payloads: true,
            ..StreamRequest::default()
        };
        let mut s = source
            .open_stored(req, CreditWindow::new(u64::MAX / 4))
            .unwrap();
        let mut out = vec![];
        while let Some(b) = s.recv().await {
            let events: Vec<StoredEvent> = b.unwrap().events;
            if events.len() < 2 {
                continue;
            }
            out.push(
                events
                    .windows(2)
                    .map(|w| {
                        w[0].payload.as_ptr() as usize + w[0].payload.len()
                            == w[1].payload.as_ptr() as usize
                    })
                    .collect(),
            );
        }
        assert!(!out.is_empty());
        out
    }

    fn agent(archive: &Archive, i: usize) -> Filter {
        let c = &archive.channels()[i];
        Filter {
            agent: Some((c.namespace.clone(), c.agent_id.clone())),
            ..Filter::default()
        }
    }

    /// A kept batch is copied out of chunks that hold events it does not keep (so the ring
    /// holds what it counts), and left as slices of chunks whose every event it keeps (no copy).
    #[tokio::test]
    async fn batches_are_copied_out_only_of_chunks_they_keep_part_of() {
        let dir = tempfile::tempdir().unwrap();
        // Two busy agents: each has chunks of its own.
        let busy = archive_of(dir.path(), 2);
        assert_eq!(busy.channels_with_own_chunks(), Some(2));
        assert!(!copied_out(&busy, Filter::default()).await.contains(&true));
        // One agent: slices of its own chunks, except in the archive's last group, too small
        // for chunks of their own (the agents share one there): the last batch's last events.
        let one = pairs_copied_out(&busy, agent(&busy, 1), 0, None, 512).await;
        let copied = |pairs: &Vec<bool>| pairs.contains(&true);
        assert_eq!(one.iter().position(copied), Some(one.len() - 1));
        let memory = Filter {
            key_prefix: Some("memory/".into()),
            ..Filter::default()
        };
        assert!(!copied_out(&busy, memory).await.contains(&false));
        // The only agent of an archive: no filter, slices.
        let alone = archive_of(dir.path(), 1);
        assert!(!copied_out(&alone, agent(&alone, 0)).await.contains(&true));
        // Forty quiet agents share every chunk.
        let quiet = archive_of(dir.path(), 40);
        assert_eq!(quiet.channels_with_own_chunks(), Some(0));
        assert!(!copied_out(&quiet, Filter::default()).await.contains(&true));
        assert!(!copied_out(&quiet, agent(&quiet, 3)).await.contains(&false));
    }

    /// A batch that holds events of an agent's own chunks and of a chunk it shares with
    /// others copies out only the shared chunk's events.
    #[tokio::test]
    async fn only_the_events_of_shared_chunks_are_copied_out() {
        let dir = tempfile::tempdir().unwrap();
        let busy = archive_of(dir.path(), 2);
        // Batches of up to 8,192 events: the last one holds the last group, whose chunk the two
        // agents share, and events of the groups before it.
        let batches = pairs_copied_out(&busy, agent(&busy, 1), 0, None, 8_192).await;
        let pairs = batches.last().unwrap();
        let first_copied = pairs.iter().position(|p| *p).expect("a shared chunk");
        assert!(first_copied > 100, "{first_copied} of {}", pairs.len());
        assert!(pairs[first_copied..].iter().all(|p| *p));
        assert!(!pairs[..first_copied].contains(&true));
    }

    /// A read that starts or ends inside a group passes over the group's events before its
    /// start or after its end: the batches of that group are copied out, the others not.
    #[tokio::test]
    async fn a_group_read_in_part_is_copied_out() {
        let dir = tempfile::tempdir().unwrap();
        let busy = archive_of(dir.path(), 2);
        // Batches of 512 events: the first group (~1,600 events) holds a few of them.
        let started = copied_out_of(&busy, Filter::default(), 100, None).await;
        assert!(started[0] && !started[started.len() - 1], "{started:?}");
        let first_slice = started.iter().position(|c| !c).unwrap();
        assert!(started[first_slice..].iter().all(|c| !c), "{started:?}");
        // Ending 100 events into a later group: its batches are copied, those before are not.
        let ts = busy
            .cursor_at(10_000)
            .unwrap()
            .next_raw()
            .unwrap()
            .unwrap()
            .commit_ts;
        let group = busy.group_start_for_commit_ts(ts).unwrap();
        assert!(group > 5_000);
        let ended = copied_out_of(&busy, Filter::default(), 0, Some(group + 100)).await;
        assert!(!ended[0] && ended[ended.len() - 1], "{ended:?}");
    }
}
