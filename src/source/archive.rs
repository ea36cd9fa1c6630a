//! An archive file or segment directory as a source.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::archive::Archive;
use crate::event::Position;
use crate::flow::CreditWindow;
use crate::source::{Batch, BatchStream, Source, SourceError, SourceInfo, StreamRequest};

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
        };
        ArchiveSource { archive, info }
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
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
        let cursor = self
            .archive
            .cursor_at(req.from)?
            .until(req.until)
            .verify_chain(req.verify_chain);
        let channel_filter: Option<Vec<bool>> = req.filter.agent.as_ref().map(|(ns, agent)| {
            self.archive
                .channels()
                .iter()
                .map(|c| c.namespace == *ns && c.agent_id == *agent)
                .collect()
        });
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(produce(cursor, req, channel_filter, window, tx));
        Ok(rx)
    }

    fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]> {
        let mut c = self.archive.cursor_at(offset).ok()?;
        c.next_raw()?.ok()?;
        c.chain_head()
    }
}

/// Reads, filters and decodes events into batches; waits for credit before sending each.
async fn produce(
    mut cursor: crate::archive::Cursor,
    req: StreamRequest,
    channel_filter: Option<Vec<bool>>,
    window: CreditWindow,
    tx: mpsc::Sender<Result<Batch, SourceError>>,
) {
    let batch_events = req.batch_events.max(1);
    let mut names = crate::event::wire::NameCache::default();
    loop {
        let mut events = Vec::with_capacity(batch_events);
        let mut bytes = 0u64;
        let mut failure = None;
        while events.len() < batch_events {
            let raw = match cursor.next_raw() {
                None => break,
                Some(Ok(raw)) => raw,
                Some(Err(e)) => {
                    failure = Some(SourceError::from(e));
                    break;
                }
            };
            if channel_filter
                .as_ref()
                .is_some_and(|f| !f.get(raw.channel).copied().unwrap_or(false))
            {
                continue;
            }
            let event = match raw.decode_with(&mut names) {
                Ok(e) => e,
                Err(e) => {
                    failure = Some(SourceError::Archive(crate::archive::ArchiveError::Decode {
                        path: cursor.archive().name().to_string(),
                        offset: raw.offset,
                        message: e.to_string(),
                    }));
                    break;
                }
            };
            if !req.filter.matches(&event) {
                continue;
            }
            bytes += raw.payload.len() as u64;
            events.push((Arc::new(event), raw.payload.len() as u32));
        }
        if let Some(last) = events.last().map(|(e, _)| e.offset) {
            if window.acquire(bytes, last).await.is_err() {
                return;
            }
            if tx.send(Ok(Batch { events, bytes })).await.is_err() {
                return;
            }
        }
        if let Some(e) = failure {
            let _ = tx.send(Err(e)).await;
            return;
        }
        if cursor.until_reached() {
            return;
        }
    }
}
