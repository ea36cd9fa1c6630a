//! `play --into out.mcap` (or a segment directory): the replayed range becomes a new archive
//! with its own hash chain, re-numbered from offset 0 unless offsets are kept. `record` writes
//! through the same [`ArchiveOutput`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::archive::writer::WriteSummary;
use crate::archive::{ArchiveWriter, Result, SegmentedWriter, WriterOptions};
use crate::event::Event;
use crate::player::{Played, Report, Sink, SinkError};
use crate::state::KvState;

/// A new archive being written: one file, or a directory of segments.
pub enum ArchiveOutput {
    File(Box<ArchiveWriter>),
    Segments(Box<SegmentedWriter>),
}

impl ArchiveOutput {
    /// Creates `path` (a file, or a directory of segments of `segment_events` events each).
    pub fn create(
        path: &Path,
        segment_events: Option<u64>,
        options: WriterOptions,
    ) -> Result<ArchiveOutput> {
        Ok(match segment_events {
            Some(k) => {
                ArchiveOutput::Segments(Box::new(SegmentedWriter::create(path, k, options)?))
            }
            None => ArchiveOutput::File(Box::new(ArchiveWriter::create(path, options)?)),
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

/// Events between two looks at the clock of [`ArchiveSink::flushing_every`].
const FLUSH_CHECK_EVERY: u64 = 1024;

/// Writes played events into a new archive. The archive is closed when the run ends; what it
/// holds (or why closing failed) is [`ArchiveSink::written`], read from the sink the player
/// hands back.
pub struct ArchiveSink {
    output: Option<ArchiveOutput>,
    path: PathBuf,
    keep_offsets: bool,
    next: u64,
    written: Option<std::result::Result<Vec<WriteSummary>, String>>,
    /// Write complete chunks out this often (a recorder: a killed writer leaves them).
    flush_every: Option<Duration>,
    last_flush: Instant,
    /// A flush that failed while the player waited: the next event (or the run's end) fails.
    flush_failed: Option<SinkError>,
    /// Close the chunk whenever the player waits for the source (a followed source went
    /// idle): a follower of the archive sees events as soon as they are played.
    flush_when_idle: bool,
    /// Events appended since the last flush.
    unflushed: bool,
}

impl ArchiveSink {
    /// Creates the archive now (so that an unwritable path fails before anything plays).
    /// Offsets are re-numbered from 0 unless `keep_offsets`.
    pub fn create(
        path: &Path,
        segment_events: Option<u64>,
        options: WriterOptions,
        keep_offsets: bool,
    ) -> Result<ArchiveSink> {
        Ok(ArchiveSink::over(
            ArchiveOutput::create(path, segment_events, options)?,
            path,
            keep_offsets,
        ))
    }

    /// Writes into `output` (created by the caller: a continued segment directory).
    pub fn over(output: ArchiveOutput, path: &Path, keep_offsets: bool) -> ArchiveSink {
        ArchiveSink {
            output: Some(output),
            path: path.to_path_buf(),
            keep_offsets,
            next: 0,
            written: None,
            flush_every: None,
            last_flush: Instant::now(),
            flush_failed: None,
            flush_when_idle: false,
            unflushed: false,
        }
    }

    /// Closes the current chunk whenever the player waits (see the field).
    pub fn flushing_when_idle(mut self) -> ArchiveSink {
        self.flush_when_idle = true;
        self
    }

    /// Closes the current chunk and writes it out at least every `interval` while events
    /// arrive or the player waits.
    pub fn flushing_every(mut self, interval: Duration) -> ArchiveSink {
        self.flush_every = Some(interval);
        self
    }

    fn flush_if_due(&mut self) -> std::result::Result<(), SinkError> {
        let (Some(every), Some(output)) = (self.flush_every, self.output.as_mut()) else {
            return Ok(());
        };
        if self.last_flush.elapsed() >= every {
            self.last_flush = Instant::now();
            self.unflushed = false;
            output.flush().map_err(|e| SinkError::new(e.to_string()))?;
        }
        Ok(())
    }

    fn flush_now(&mut self) -> std::result::Result<(), SinkError> {
        if let Some(output) = self.output.as_mut() {
            self.last_flush = Instant::now();
            self.unflushed = false;
            output.flush().map_err(|e| SinkError::new(e.to_string()))?;
        }
        Ok(())
    }

    /// The summaries of what was written, once the run has ended (closing the archive now if
    /// it has not been closed yet); `Err` names why closing failed.
    pub fn written(mut self) -> std::result::Result<Vec<WriteSummary>, String> {
        self.finish();
        self.written.unwrap_or_else(|| Ok(Vec::new()))
    }

    fn finish(&mut self) {
        if let Some(output) = self.output.take() {
            self.written = Some(output.finish().map_err(|e| e.to_string()));
        }
    }
}
impl Sink for ArchiveSink {
    fn played(&mut self, p: &Played<'_>) -> std::result::Result<(), SinkError> {
        if let Some(e) = self.flush_failed.take() {
            return Err(e);
        }
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
        self.unflushed = true;
        if self.next.is_multiple_of(FLUSH_CHECK_EVERY) {
            self.flush_if_due()?;
        }
        Ok(())
    }

    fn idle(&mut self, _state: Option<&KvState>) {
        if self.flush_failed.is_some() {
            return;
        }
        let r = if self.flush_when_idle && self.unflushed {
            self.flush_now()
        } else {
            self.flush_if_due()
        };
        if let Err(e) = r {
            self.flush_failed = Some(e);
        }
    }

    fn poll_flush(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), SinkError>> {
        if let Some(e) = self.flush_failed.take() {
            return std::task::Poll::Ready(Err(e));
        }
        let r = match self.output.as_mut() {
            Some(o) => o.flush().map_err(|e| SinkError::new(e.to_string())),
            None => Ok(()),
        };
        std::task::Poll::Ready(r)
    }

    fn run_ended(&mut self, _report: &Report, _state: Option<&KvState>) {
        // One run, one archive: a finished or stopped run leaves a complete archive of what
        // was played (a stopped one is a valid prefix; its report says where to resume).
        // A failure to close is kept for `written`.
        self.finish();
    }
}
