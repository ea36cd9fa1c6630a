//! Where events come from: an archive (a file, a segment directory or an `s3://` prefix), a
//! replayscope endpoint or a Statehouse daemon. Every source produces batches of events in
//! offset order through the same interface, gated by the same credit window, so the player,
//! the server and the gauges treat them alike. [`open`] turns what the user typed into one.

pub mod archive;
pub mod marked;
pub mod open;
pub mod remote;
pub mod statehouse;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::archive::ArchiveError;
use crate::event::{Event, Position};
use crate::flow::CreditWindow;

pub use archive::ArchiveSource;
pub use remote::RemoteSource;
pub use statehouse::StatehouseSource;

/// What a source holds, as far as it knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceInfo {
    /// How the user named it (path or URL).
    pub name: String,
    /// "archive", "segments", …
    pub kind: String,
    pub events: Option<u64>,
    pub first_offset: Option<u64>,
    pub last_offset: Option<u64>,
    pub first_commit_ts: Option<u64>,
    pub last_commit_ts: Option<u64>,
    pub first_time_ns: Option<u64>,
    pub last_time_ns: Option<u64>,
    /// (namespace, agent_id, events) per channel.
    pub channels: Vec<(String, String, u64)>,
    /// The recorded final hash of the whole source, if any.
    pub final_hash: Option<[u8; 32]>,
    /// Stored size in bytes (an archive's files), when known.
    pub bytes: Option<u64>,
    /// Archive segments (files), when the source is an archive.
    pub segments: Option<u32>,
    /// Where the wall times came from, when they were taken from the events' values.
    pub time_source: Option<String>,
}

impl SourceInfo {
    /// True when events carry wall-clock commit times (otherwise Realtime uses a logical tick).
    pub fn has_wall_time(&self) -> bool {
        self.first_time_ns.is_some()
    }
}

/// Which events to deliver. Offsets stay global: a filtered stream has gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this (namespace, agent_id).
    pub agent: Option<(String, String)>,
    /// Only transactions that touch a key with this prefix.
    pub key_prefix: Option<String>,
    /// Only this transaction.
    pub txn_id: Option<String>,
    /// A test of an event's stored bytes that may drop events the consumer certainly does not
    /// want (a search skips events that do not contain its text without decoding them). The
    /// consumer still checks what it receives: sources without stored bytes ignore it, and it
    /// does not travel to a server.
    pub stored_hint: Option<StoredHint>,
}

/// See [`Filter::stored_hint`]: true keeps the event.
#[derive(Clone)]
pub struct StoredHint(pub Arc<StoredTest>);

/// A test of stored event bytes.
pub type StoredTest = dyn Fn(&[u8]) -> bool + Send + Sync;

impl StoredHint {
    pub fn keeps(&self, stored: &[u8]) -> bool {
        (self.0)(stored)
    }
}

impl std::fmt::Debug for StoredHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredHint")
    }
}

impl PartialEq for StoredHint {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StoredHint {}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.agent.is_none() && self.key_prefix.is_none() && self.txn_id.is_none()
    }

    pub fn matches(&self, e: &Event) -> bool {
        if let Some((ns, agent)) = &self.agent
            && (*e.namespace != **ns || *e.agent_id != **agent)
        {
            return false;
        }
        if let Some(p) = &self.key_prefix
            && !e.operations.iter().any(|op| op.key.starts_with(p.as_str()))
        {
            return false;
        }
        if let Some(t) = &self.txn_id
            && e.txn_id != *t
        {
            return false;
        }
        true
    }
}

/// A run of events in offset order, with the encoded size of each.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub events: Vec<(Arc<Event>, u32)>,
    pub bytes: u64,
    /// The hash-chain head after each event, computed from the bytes the event was decoded
    /// from (empty when the source could not compute the chain: verification off, a filtered
    /// remote stream, a Statehouse daemon).
    pub heads: Vec<[u8; 32]>,
    /// A followed source has delivered everything it knows of (with this batch, which may be
    /// empty) and now waits for more.
    pub caught_up: bool,
}

impl Batch {
    pub fn last_offset(&self) -> Option<u64> {
        self.events.last().map(|(e, _)| e.offset)
    }
}

/// One event as stored: its encoded `ArchivedEvent`, forwarded without re-encoding (the server
/// sends these bytes as they are).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub offset: u64,
    pub payload: Bytes,
}

impl crate::flow::RingItem for StoredEvent {
    fn offset(&self) -> u64 {
        self.offset
    }
    /// What holding it costs, at most: its payload, the message record around it when the
    /// payload is a slice of a decompressed chunk (a batch is copied out of chunks that hold
    /// events it does not keep, see [`StreamRequest::compact_payloads`]), and its own record.
    /// A ring of slices keeps at most a group of chunks (~512 KiB) more alive at either end:
    /// the events of its first group before the start, the rest of a chunk partly evicted.
    fn size(&self) -> u64 {
        (self.payload.len()
            + crate::archive::format::MESSAGE_OVERHEAD
            + std::mem::size_of::<StoredEvent>()) as u64
    }
}

/// A run of stored events in offset order.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub events: Vec<StoredEvent>,
    pub bytes: u64,
    /// Events the source read for this batch, delivered or filtered out.
    pub read: u64,
    /// The offset the source reads next (past any filtered-out events).
    pub next_offset: u64,
    /// The hash-chain heads before the first event and after the last, computed while reading
    /// (`None` when not verifying or not known).
    pub chain_before: Option<[u8; 32]>,
    pub chain_after: Option<[u8; 32]>,
    /// A followed source has delivered everything it knows of (see [`Batch::caught_up`]).
    pub caught_up: bool,
}

/// Receives stored batches; `None` at the end of the range. Dropping it stops the producer.
pub type StoredStream = mpsc::Receiver<Result<StoredBatch, SourceError>>;

/// Starts a producer task that sends into a channel of `capacity` batches; returns its
/// receiving end (dropping it stops the producer).
pub(crate) fn spawn_producer<B: Send + 'static, F>(
    capacity: usize,
    producer: impl FnOnce(mpsc::Sender<Result<B, SourceError>>) -> F,
) -> mpsc::Receiver<Result<B, SourceError>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(capacity);
    tokio::spawn(producer(tx));
    rx
}

/// Takes credit for a batch of `bytes` ending at `last_offset` from `window`, then hands the
/// batch to the consumer. False when the window was cancelled or the consumer went away: the
/// producer stops. Every producer sends through here.
pub(crate) async fn deliver<B>(
    window: &CreditWindow,
    tx: &mpsc::Sender<Result<B, SourceError>>,
    bytes: u64,
    last_offset: u64,
    batch: B,
) -> bool {
    window.acquire(bytes, last_offset).await.is_ok() && tx.send(Ok(batch)).await.is_ok()
}

/// After a remote stream failed: waits the reconnect machine's backoff and returns true to try
/// again, or returns false when the consumer went away or the machine gave up (its message then
/// went to the consumer as the stream's error). Both remote sources end their loops here.
pub(crate) async fn retry_after<B>(
    reconnect: &mut crate::wire::Reconnect,
    failure: &tonic::Status,
    tx: &mpsc::Sender<Result<B, SourceError>>,
    source_name: &str,
) -> bool {
    use crate::wire::reconnect::Retry;
    match reconnect.after_status(failure, tx.closed()).await {
        Retry::Now => true,
        Retry::Cancelled => false,
        Retry::GiveUp(message) => {
            // DATA_LOSS: the far end found its data damaged.
            let integrity = failure.code() == tonic::Code::DataLoss;
            let error = SourceError::failed(source_name, message, integrity);
            let _ = tx.send(Err(error)).await;
            false
        }
    }
}

/// A decoded batch as stored bytes.
fn encode_batch(name: &str, b: Batch) -> Result<StoredBatch, SourceError> {
    let mut events = Vec::with_capacity(b.events.len());
    for (e, _) in &b.events {
        let payload = e.encode().map_err(|err| SourceError::Invalid {
            source_name: name.to_string(),
            message: format!("cannot encode the event at offset {}: {err}", e.offset),
        })?;
        events.push(StoredEvent {
            offset: e.offset,
            payload: Bytes::from(payload),
        });
    }
    let next_offset = b.last_offset().map_or(0, |o| o + 1);
    Ok(StoredBatch {
        bytes: events.iter().map(|e| e.payload.len() as u64).sum(),
        read: events.len() as u64,
        next_offset,
        events,
        chain_before: None,
        chain_after: None,
        caught_up: b.caught_up,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    /// What was received does not hash to what the far end recorded, or the far end reported
    /// damaged data (DATA_LOSS).
    #[error("{source_name}: {message}")]
    Integrity {
        source_name: String,
        message: String,
    },
}

impl SourceError {
    /// An integrity failure (`integrity`) or a plain one, of the source named.
    pub fn failed(source_name: &str, message: String, integrity: bool) -> SourceError {
        let source_name = source_name.to_string();
        if integrity {
            SourceError::Integrity {
                source_name,
                message,
            }
        } else {
            SourceError::Invalid {
                source_name,
                message,
            }
        }
    }

    pub fn is_integrity(&self) -> bool {
        match self {
            SourceError::Archive(a) => a.is_integrity(),
            SourceError::Integrity { .. } => true,
            SourceError::Invalid { .. } => false,
        }
    }
}

/// A `mark:NAME` that reached a source itself: markers are resolved by the wrapper that holds
/// them ([`marked::Marked`]), before the source is asked.
pub(crate) fn unresolved_marker(source_name: &str, name: &str) -> SourceError {
    SourceError::Invalid {
        source_name: source_name.to_string(),
        message: format!("mark:{name}: this source has no markers to resolve it"),
    }
}

/// Whether a reader checks the hash chain over the bytes it delivers (the default) or skips it
/// (`--no-verify`; chunk CRCs are still checked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChainCheck {
    #[default]
    Verify,
    Skip,
}

impl ChainCheck {
    pub fn from_no_verify(no_verify: bool) -> ChainCheck {
        if no_verify {
            ChainCheck::Skip
        } else {
            ChainCheck::Verify
        }
    }

    pub fn is_on(self) -> bool {
        self == ChainCheck::Verify
    }
}

/// What to stream.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// First offset to deliver.
    pub from: u64,
    /// Last offset to deliver (inclusive).
    pub until: Option<u64>,
    /// Skip the events before the first with a commit_ts at or above this (`from` is then an
    /// offset at or before that event, found cheaply with [`Source::resolve_coarse`]).
    pub from_commit_ts: Option<u64>,
    /// Stop after the last event with a commit_ts at or below this (inclusive, like
    /// Statehouse's end_ts).
    pub until_commit_ts: Option<u64>,
    pub filter: Filter,
    /// Events per batch.
    pub batch_events: usize,
    /// Events in the first batch (so that the first event goes out at once); batches then
    /// grow 4x up to `batch_events`. `None`: every batch is `batch_events`.
    pub first_batch_events: Option<usize>,
    /// Bytes per batch, at most (a batch holds at least one event).
    pub batch_bytes: Option<u64>,
    /// Stored batches, for a consumer that keeps them (the server's replay ring): where a
    /// batch's payloads are slices of buffers that also hold events it does not keep (an
    /// archive's decompressed chunks shared with other agents, or filtered by content), copy
    /// them into one buffer of exactly their size; slices of chunks whose every event is kept
    /// stay slices (no copy). Otherwise payloads may be slices of anything.
    pub compact_payloads: bool,
    /// Check the hash chain while reading (CRCs are always checked).
    pub chain: ChainCheck,
    /// At the end of what exists, wait for more instead of ending (a source that
    /// [`Source::can_follow`]); each time it has delivered all it knows of, it sends a batch
    /// marked `caught_up`.
    pub follow: bool,
}

/// Receives batches; `None` at the end of the requested range. Dropping it stops the producer.
pub type BatchStream = mpsc::Receiver<Result<Batch, SourceError>>;

pub trait Source: Send + Sync + 'static {
    fn info(&self) -> &SourceInfo;

    /// The offset of the first event at or after `pos`, or — with `at_or_before` — of the last
    /// event at or before it (`None` when there is none).
    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError>;

    /// An offset at or before the first event at or after `pos`, found without reading any
    /// event (an archive's index: the first offset of the group of chunks that holds it), for a
    /// stream that skips the rest itself ([`StreamRequest::from_commit_ts`]); `None` when the
    /// source has no cheaper answer than [`Source::resolve`].
    fn resolve_coarse(&self, _pos: &Position) -> Option<u64> {
        None
    }

    /// Starts producing batches from `req.from`. The producer acquires credit from `window`
    /// before sending each batch and stops when the stream is dropped or the window cancelled.
    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError>;

    /// The same stream as stored bytes, for forwarding (the server). A source that keeps its
    /// events' bytes (an archive) hands them over without decoding them (unless the filter
    /// needs a look inside); this default encodes what [`Source::open`] delivers.
    fn open_stored(
        &self,
        req: StreamRequest,
        window: CreditWindow,
    ) -> Result<StoredStream, SourceError> {
        let name = self.info().name.clone();
        let mut decoded = self.open(req, window)?;
        Ok(spawn_producer(4, |tx| async move {
            while let Some(b) = decoded.recv().await {
                let stored = b.and_then(|b| encode_batch(&name, b));
                if tx.send(stored).await.is_err() {
                    return;
                }
            }
        }))
    }

    /// The hash-chain head after the event at `offset`, when the source can tell.
    fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]>;

    /// The hash-chain head before the event at `offset` (from what the source recorded: an
    /// archive's index entry for the chunk, then its bytes up to the event), when it can tell.
    fn chain_head_before(&self, _offset: u64) -> Option<[u8; 32]> {
        None
    }

    /// The flow-control gauges of the far end, when the source has one (a replayscope endpoint
    /// reports its credit window and replay ring): the gauges show those instead of the local
    /// ones.
    fn remote_gauges(&self) -> Option<(crate::flow::CreditSnapshot, crate::flow::RingSnapshot)> {
        None
    }

    /// What the source is going through right now, when it is not simply delivering (a remote
    /// source: "reconnecting (attempt 2, next in 0.8s, last error: …)").
    fn status(&self) -> Option<String> {
        None
    }

    /// Whether it was opened to be followed: it grows, and [`StreamRequest::follow`] streams
    /// wait at its end for more.
    fn can_follow(&self) -> bool {
        false
    }

    /// Whether agents other than those it holds now may appear in it: a followed archive or
    /// replayscope endpoint may gain some; a Statehouse endpoint is opened for its agents.
    fn may_gain_agents(&self) -> bool {
        self.can_follow()
    }

    /// What the source holds now (a followed source grows; [`Source::info`] is as it was
    /// opened).
    fn info_now(&self) -> SourceInfo {
        self.info().clone()
    }

    /// The newest offset known to exist (it moves while a followed source grows).
    fn head(&self) -> Option<u64> {
        self.info().last_offset
    }

    /// What the source's cache of decompressed chunks holds and has served (an archive's).
    fn chunk_cache(&self) -> Option<crate::archive::cache::CacheStats> {
        None
    }

    /// The state after the latest state snapshot at or before `offset`, from the source's own
    /// snapshots (an archive's, DESIGN.md section 12): the state folded from the source's first
    /// event. `None` when it keeps none that early. Blocking: it may read a chunk.
    fn state_snapshot(
        &self,
        _offset: u64,
    ) -> Result<Option<crate::archive::snapshot::Snapshot>, SourceError> {
        Ok(None)
    }

    /// The source's markers (DESIGN.md section 14): named positions, `mark:NAME`.
    fn markers(&self) -> crate::event::marker::MarkerSet {
        Default::default()
    }

    /// Keeps a marker beside the source; says where, or why it cannot.
    fn save_marker(&self, _marker: crate::event::marker::Marker) -> Result<String, String> {
        Err(format!(
            "{}: markers cannot be kept for it",
            self.info().name
        ))
    }
}
