//! JSON Lines import and export: one event per line with the fields of [`Event`], `value` as a
//! JSON object or `null` for a delete. The bytes depend only on the events, so two exports of the
//! same events compare equal with `cmp`.

use std::io::{BufRead, Write};
use std::path::Path;

use crate::archive::reader::Cursor;
use crate::archive::writer::{ArchiveWriter, SegmentedWriter, WriteSummary, WriterOptions};
use crate::archive::{ArchiveError, Result};
use crate::event::Event;

/// Where imported events go.
pub enum ImportTarget<'a> {
    File(&'a Path),
    /// A segment directory with this many events per segment.
    Segments(&'a Path, u64),
}

/// Reads JSON Lines from `input` (named `input_name` in errors) into a new archive.
pub fn import(
    input: impl BufRead,
    input_name: &str,
    target: ImportTarget<'_>,
    options: WriterOptions,
) -> Result<Vec<WriteSummary>> {
    enum W {
        One(Box<ArchiveWriter>),
        Many(Box<SegmentedWriter>),
    }
    let mut writer = match target {
        ImportTarget::File(p) => W::One(Box::new(ArchiveWriter::create(p, options)?)),
        ImportTarget::Segments(p, k) => W::Many(Box::new(SegmentedWriter::create(p, k, options)?)),
    };
    for (index, line) in input.lines().enumerate() {
        let line_no = index as u64 + 1;
        let line = line.map_err(|e| ArchiveError::Jsonl {
            path: input_name.to_string(),
            line: line_no,
            message: format!("cannot read line: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line).map_err(|e| ArchiveError::Jsonl {
            path: input_name.to_string(),
            line: line_no,
            message: format!("not a valid event: {e}"),
        })?;
        let appended = match &mut writer {
            W::One(w) => w.append(&event),
            W::Many(w) => w.append(&event),
        };
        appended.map_err(|e| ArchiveError::Jsonl {
            path: input_name.to_string(),
            line: line_no,
            message: e.to_string(),
        })?;
    }
    match writer {
        W::One(w) => Ok(vec![w.finish()?]),
        W::Many(w) => w.finish(),
    }
}

/// Writes every event of the cursor as one JSON line; returns the number written.
pub fn export(cursor: &mut Cursor, mut out: impl Write, out_name: &str) -> Result<u64> {
    let mut n = 0;
    let werr = |e: std::io::Error| ArchiveError::io(out_name, e);
    while let Some(event) = cursor.next_event() {
        let event = event?;
        event.check_values().map_err(|e| ArchiveError::Decode {
            path: cursor.archive().name().to_string(),
            offset: event.offset,
            message: e.to_string(),
        })?;
        serde_json::to_writer(&mut out, &event).map_err(|e| werr(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(werr)?;
        n += 1;
    }
    out.flush().map_err(werr)?;
    Ok(n)
}
