//! Writes played events to a byte stream (stdout or a file) as JSON Lines or readable text.

use std::io::{self, Write};

use crate::event::{Event, format_time_ns};
use crate::player::{Played, Sink, SinkError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One JSON object per line (the same bytes as `export`).
    #[default]
    Jsonl,
    /// One readable line per event.
    Text,
    /// Nothing (for --state-hash / --expect-hash runs and benchmarks).
    None,
}

pub struct StreamSink {
    out: io::BufWriter<Box<dyn Write + Send>>,
    format: OutputFormat,
    name: String,
    line: Vec<u8>,
}

impl StreamSink {
    pub fn new(out: Box<dyn Write + Send>, format: OutputFormat, name: &str) -> StreamSink {
        StreamSink {
            out: io::BufWriter::with_capacity(1 << 16, out),
            format,
            name: name.to_string(),
            line: Vec::with_capacity(1024),
        }
    }

    fn error(&self, e: io::Error) -> SinkError {
        SinkError {
            message: format!("{}: {e}", self.name),
            closed: e.kind() == io::ErrorKind::BrokenPipe,
            resume_offset: None,
        }
    }
}

/// `#1200 2026-11-02T09:10:00.123Z @1566 support/triage-79bf 3fa9c2d1-… set memory/refund v3 {…}; del plan/step-004 v2`
pub fn text_line(e: &Event, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let time = e
        .commit_time_ns
        .map_or_else(|| "-".to_string(), format_time_ns);
    let _ = write!(
        out,
        "#{} {} @{} {}/{} {}",
        e.offset, time, e.commit_ts, e.namespace, e.agent_id, e.txn_id
    );
    for (i, op) in e.operations.iter().enumerate() {
        let _ = out.write_all(if i == 0 { b" " } else { b"; " });
        match &op.value {
            Some(v) => {
                let _ = write!(
                    out,
                    "set {} v{} {}",
                    op.key,
                    op.version,
                    v.to_json_string(&op.key)
                );
            }
            None => {
                let _ = write!(out, "del {} v{}", op.key, op.version);
            }
        }
    }
}

impl Sink for StreamSink {
    fn played(&mut self, p: &Played<'_>) -> Result<(), SinkError> {
        self.line.clear();
        match self.format {
            OutputFormat::None => return Ok(()),
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut self.line, p.event.as_ref())
                    .map_err(|e| SinkError::new(format!("{}: {e}", self.name)))?;
            }
            OutputFormat::Text => text_line(p.event, &mut self.line),
        }
        self.line.push(b'\n');
        let r = self.out.write_all(&self.line);
        r.map_err(|e| self.error(e))
    }

    /// Lines reach the reader when the player waits (for a due time or for events that have
    /// not landed yet: a followed source), not only when the buffer is full. A failure shows
    /// on the next write.
    fn idle(&mut self, _state: Option<&crate::state::KvState>) {
        let _ = self.out.flush();
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let r = self.out.flush();
        r.map_err(|e| self.error(e))
    }
}
