//! `play --into out.mcap` (or a segment directory): the replayed range becomes a new archive
//! with its own hash chain, re-numbered from offset 0 unless offsets are kept. `record` writes
//! through the same [`ArchiveOutput`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::archive::writer::WriteSummary;
use crate::archive::{ArchiveWriter, Result, SegmentedWriter, WriterOptions};
use crate::event::Event;
use crate::player::{Played, Report, Sink, SinkError};
use crate::state::KvState;

/// A new archive being written: one file, or a directory of segments.
pub enum ArchiveOutput {
    File(ArchiveWriter),
    Segments(SegmentedWriter),
}

impl ArchiveOutput {
    /// Creates `path` (a file, or a directory of segments of `segment_events` events each).
    pub fn create(
        path: &Path,
        segment_events: Option<u64>,
        options: WriterOptions,
    ) -> Result<ArchiveOutput> {
        Ok(match segment_events {
            Some(k) => ArchiveOutput::Segments(SegmentedWriter::create(path, k, options)?),
            None => ArchiveOutput::File(ArchiveWriter::create(path, options)?),
        })
    }

    pub fn append(&mut self, e: &Event) -> Result<()> {
        self.append_at(e, e.offset)
    }

    /// Appends `e` as the event at `offset`.
    pub fn append_at(&mut self, e: &Event, offset: u64) -> Result<()> {
        match self {
            ArchiveOutput::File(w) => w.append_at(e, offset),
            ArchiveOutput::Segments(w) => w.append_at(e, offset),
        }
    }

    /// Closes the current chunk and writes it out (a reader of a killed writer keeps it).
    pub fn flush(&mut self) -> Result<()> {
        match self {
            ArchiveOutput::File(w) => w.flush(),
            ArchiveOutput::Segments(w) => w.flush(),
        }
    }

    pub fn finish(self) -> Result<Vec<WriteSummary>> {
        match self {
            ArchiveOutput::File(w) => Ok(vec![w.finish()?]),
            ArchiveOutput::Segments(w) => w.finish(),
        }
    }
}

/// What an [`ArchiveSink`] wrote, readable once the player has ended.
pub type ArchiveResult = Arc<Mutex<Option<std::result::Result<Vec<WriteSummary>, String>>>>;

/// Writes played events into a new archive.
pub struct ArchiveSink {
    output: Option<ArchiveOutput>,
    path: PathBuf,
    keep_offsets: bool,
    next: u64,
    result: ArchiveResult,
}

impl ArchiveSink {
    /// Creates the archive now (so that an unwritable path fails before anything plays).
    /// Offsets are re-numbered from 0 unless `keep_offsets`.
    pub fn create(
        path: &Path,
        segment_events: Option<u64>,
        options: WriterOptions,
        keep_offsets: bool,
    ) -> Result<(ArchiveSink, ArchiveResult)> {
        let output = ArchiveOutput::create(path, segment_events, options)?;
        let result: ArchiveResult = Arc::default();
        Ok((
            ArchiveSink {
                output: Some(output),
                path: path.to_path_buf(),
                keep_offsets,
                next: 0,
                result: result.clone(),
            },
            result,
        ))
    }

    fn finish(&mut self) -> std::result::Result<(), SinkError> {
        let Some(output) = self.output.take() else {
            return Ok(());
        };
        let r = output.finish().map_err(|e| e.to_string());
        let failed = r.as_ref().err().cloned();
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(r);
        }
        match failed {
            Some(e) => Err(SinkError::new(e)),
            None => Ok(()),
        }
    }
}

impl Sink for ArchiveSink {
    fn played(&mut self, p: &Played<'_>) -> std::result::Result<(), SinkError> {
        let Some(output) = self.output.as_mut() else {
            return Err(SinkError::new(format!(
                "{}: the archive is already closed",
                self.path.display()
            )));
        };
        let offset = if self.keep_offsets {
            p.event.offset
        } else {
            self.next
        };
        output.append_at(p.event, offset).map_err(|e| SinkError {
            message: e.to_string(),
            closed: false,
            resume_offset: Some(p.event.offset),
        })?;
        self.next += 1;
        Ok(())
    }

    fn poll_flush(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), SinkError>> {
        let r = match self.output.as_mut() {
            Some(o) => o.flush().map_err(|e| SinkError::new(e.to_string())),
            None => Ok(()),
        };
        std::task::Poll::Ready(r)
    }

    fn run_ended(&mut self, _report: &Report, _state: Option<&KvState>) {
        // One run, one archive: a finished or stopped run leaves a complete archive of what
        // was played (a stopped one is a valid prefix; its report says where to resume).
        // A failure to close is kept in the result for the caller.
        let _ = self.finish();
    }

    fn close(&mut self) -> std::result::Result<(), SinkError> {
        self.finish()
    }
}
