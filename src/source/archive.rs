//! An archive file, segment directory or `s3://` prefix as a source. One producer reads the
//! archive for every front end: decoded batches for the player, stored bytes for the server.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::archive::{Archive, ArchiveError, Cursor, RawEvent};
use crate::event::Position;
use crate::event::wire::NameCache;
use crate::flow::CreditWindow;
use crate::source::{
    Batch, BatchStream, Filter, Source, SourceError, SourceInfo, StoredBatch, StoredEvent,
    StoredStream, StreamRequest, deliver,
};

pub struct ArchiveSource {
    archive: Archive,
    info: SourceInfo,
}

impl ArchiveSource {
    pub fn new(archive: Archive) -> ArchiveSource {
        let channels = archive
            .channels()
            .iter()
            .zip(archive.channel_counts())
            .map(|(c, n)| (c.namespace.clone(), c.agent_id.clone(), n))
            .collect();
        let info = SourceInfo {
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
        };
        ArchiveSource { archive, info }
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// A cursor over the request's range and which channels pass its agent filter.
    fn start(&self, req: &StreamRequest) -> Result<(Cursor, Option<Vec<bool>>), SourceError> {
        // A commit_ts bound needs no more of the archive than the chunk holding its end.
        let until = match (req.until, req.until_commit_ts) {
            (u, None) => u,
            (u, Some(ts)) => {
                let bound = self.archive.commit_ts_upper_bound(ts);
                u.into_iter().chain(bound).min()
            }
        };
        let cursor = self
            .archive
            .cursor_at(req.from)?
            .until(until)
            .verify_chain(req.verify_chain);
        let channels = req.filter.agent.as_ref().map(|(ns, agent)| {
            self.archive
                .channels()
                .iter()
                .map(|c| c.namespace == *ns && c.agent_id == *agent)
                .collect()
        });
        Ok((cursor, channels))
    }
}

impl Source for ArchiveSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError> {
        if at_or_before {
            Ok(self.archive.resolve_until(pos)?)
        } else {
            Ok(Some(self.archive.resolve_from(pos)?))
        }
    }

    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError> {
        let (cursor, channels) = self.start(&req)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(produce(
            cursor,
            req,
            channels,
            window,
            tx,
            Decoded::default(),
        ));
        Ok(rx)
    }

    fn open_stored(
        &self,
        req: StreamRequest,
        window: CreditWindow,
    ) -> Result<StoredStream, SourceError> {
        let (cursor, channels) = self.start(&req)?;
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(produce(
            cursor,
            req,
            channels,
            window,
            tx,
            Stored::default(),
        ));
        Ok(rx)
    }

    fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]> {
        let mut c = self.archive.cursor_at(offset).ok()?;
        c.next_raw()?.ok()?;
        c.chain_head()
    }
}

/// How the producer turns the archive's raw events into the batches it sends.
trait Collect: Send + 'static {
    type Batch: Send + 'static;
    /// Takes `raw` into the batch being collected unless the filter drops it.
    fn take(
        &mut self,
        raw: RawEvent,
        filter: &Filter,
        archive: &Archive,
    ) -> Result<(), SourceError>;
    fn len(&self) -> usize;
    fn bytes(&self) -> u64;
    fn last_offset(&self) -> Option<u64>;
    /// The batch collected so far (the collector starts afresh).
    fn batch(&mut self, read: u64, next_offset: u64) -> Self::Batch;
}

fn decode_error(archive: &Archive, offset: u64, e: impl std::fmt::Display) -> SourceError {
    SourceError::Archive(ArchiveError::Decode {
        path: archive.name().to_string(),
        offset,
        message: e.to_string(),
    })
}

/// Decoded events, for the player.
#[derive(Default)]
struct Decoded {
    names: NameCache,
    events: Vec<(Arc<crate::event::Event>, u32)>,
    bytes: u64,
}

impl Collect for Decoded {
    type Batch = Batch;

    fn take(
        &mut self,
        raw: RawEvent,
        filter: &Filter,
        archive: &Archive,
    ) -> Result<(), SourceError> {
        let event = raw
            .decode_with(&mut self.names)
            .map_err(|e| decode_error(archive, raw.offset, e))?;
        if filter.matches(&event) {
            self.bytes += raw.payload.len() as u64;
            self.events
                .push((Arc::new(event), raw.payload.len() as u32));
        }
        Ok(())
    }
    fn len(&self) -> usize {
        self.events.len()
    }
    fn bytes(&self) -> u64 {
        self.bytes
    }
    fn last_offset(&self) -> Option<u64> {
        self.events.last().map(|(e, _)| e.offset)
    }
    fn batch(&mut self, _read: u64, _next_offset: u64) -> Batch {
        Batch {
            events: std::mem::take(&mut self.events),
            bytes: std::mem::take(&mut self.bytes),
        }
    }
}

/// Stored bytes, for forwarding; events are decoded only when the filter looks inside them.
#[derive(Default)]
struct Stored {
    names: NameCache,
    events: Vec<StoredEvent>,
    bytes: u64,
}

impl Collect for Stored {
    type Batch = StoredBatch;

    fn take(
        &mut self,
        raw: RawEvent,
        filter: &Filter,
        archive: &Archive,
    ) -> Result<(), SourceError> {
        if filter.key_prefix.is_some() || filter.txn_id.is_some() {
            let event = raw
                .decode_with(&mut self.names)
                .map_err(|e| decode_error(archive, raw.offset, e))?;
            if !filter.matches(&event) {
                return Ok(());
            }
        }
        self.bytes += raw.payload.len() as u64;
        self.events.push(StoredEvent {
            offset: raw.offset,
            payload: raw.payload,
        });
        Ok(())
    }
    fn len(&self) -> usize {
        self.events.len()
    }
    fn bytes(&self) -> u64 {
        self.bytes
    }
    fn last_offset(&self) -> Option<u64> {
        self.events.last().map(|e| e.offset)
    }
    fn batch(&mut self, read: u64, next_offset: u64) -> StoredBatch {
        StoredBatch {
            events: std::mem::take(&mut self.events),
            bytes: std::mem::take(&mut self.bytes),
            read,
            next_offset,
        }
    }
}

/// Events read (most of them filtered out) before the producer yields with what it has.
const SCAN_BUDGET: usize = 16 * 1024;

/// Reads and filters events into batches; waits for credit before sending each. The first
/// batch may be small (so the first event goes out at once); batches then grow 4x each up to
/// the request's size.
async fn produce<C: Collect>(
    mut cursor: Cursor,
    req: StreamRequest,
    channels: Option<Vec<bool>>,
    window: CreditWindow,
    tx: mpsc::Sender<Result<C::Batch, SourceError>>,
    mut collect: C,
) {
    let max_events = req.batch_events.max(1);
    let max_bytes = req.batch_bytes.unwrap_or(u64::MAX).max(1);
    let mut batch_events = req
        .first_batch_events
        .map_or(max_events, |f| f.clamp(1, max_events));
    let archive = cursor.archive().clone();
    // Events read since the last batch went out (delivered or filtered out).
    let mut read = 0u64;
    loop {
        let mut failure = None;
        let mut done = false;
        // Skipping other agents' events yields now and then, so one sparse agent in a big
        // archive does not hold a worker thread for long.
        let mut scan_budget = SCAN_BUDGET;
        while collect.len() < batch_events && collect.bytes() < max_bytes && scan_budget > 0 {
            scan_budget -= 1;
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
            if req.until_commit_ts.is_some_and(|ts| raw.commit_ts > ts) {
                done = true;
                break;
            }
            read += 1;
            if channels
                .as_ref()
                .is_some_and(|f| !f.get(raw.channel).copied().unwrap_or(false))
            {
                continue;
            }
            if let Err(e) = collect.take(raw, &req.filter, &archive) {
                failure = Some(e);
                break;
            }
        }
        done = done || cursor.until_reached();
        if let Some(last) = collect.last_offset() {
            let bytes = collect.bytes();
            let batch = collect.batch(std::mem::take(&mut read), cursor.next_offset());
            if !deliver(&window, &tx, bytes, last, batch).await {
                return;
            }
        }
        if let Some(e) = failure {
            let _ = tx.send(Err(e)).await;
            return;
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
