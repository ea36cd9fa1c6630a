//! Where events come from: an archive (a file, a segment directory or an `s3://` prefix), a
//! replayscope endpoint or a Statehouse daemon. Every source produces batches of events in
//! offset order through the same interface, gated by the same credit window, so the player,
//! the server and the gauges treat them alike. [`open`] turns what the user typed into one.

pub mod archive;
pub mod open;
pub mod remote;
pub mod statehouse;

use std::sync::Arc;

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
}

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
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Vec<(Arc<Event>, u32)>,
    pub bytes: u64,
}

impl Batch {
    pub fn last_offset(&self) -> Option<u64> {
        self.events.last().map(|(e, _)| e.offset)
    }
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
}

impl SourceError {
    pub fn is_integrity(&self) -> bool {
        matches!(self, SourceError::Archive(a) if a.is_integrity())
    }
}

/// What to stream.
#[derive(Debug, Clone)]
pub struct StreamRequest {
    /// First offset to deliver.
    pub from: u64,
    /// Last offset to deliver (inclusive).
    pub until: Option<u64>,
    pub filter: Filter,
    /// Events per batch.
    pub batch_events: usize,
    /// Check the archive's hash chain while reading (CRCs are always checked).
    pub verify_chain: bool,
}

/// Receives batches; `None` at the end of the requested range. Dropping it stops the producer.
pub type BatchStream = mpsc::Receiver<Result<Batch, SourceError>>;

pub trait Source: Send + Sync + 'static {
    fn info(&self) -> &SourceInfo;

    /// The offset of the first event at or after `pos`, or — with `at_or_before` — of the last
    /// event at or before it (`None` when there is none).
    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError>;

    /// Starts producing batches from `req.from`. The producer acquires credit from `window`
    /// before sending each batch and stops when the stream is dropped or the window cancelled.
    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError>;

    /// The hash-chain head after the event at `offset`, when the source can tell.
    fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]>;

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
}
