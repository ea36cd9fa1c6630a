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

/// Reads the next line of `input` into `line` (without its line break), holding at most
/// `max` bytes of it: false at the end of the input, an error naming the line when it is
/// longer.
fn read_line_bounded(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> std::result::Result<bool, String> {
    line.clear();
    let mut any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read line: {e}")),
        };
        if buf.is_empty() {
            return Ok(any);
        }
        any = true;
        let (take, done) = match memchr_newline(buf) {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(format!(
                "longer than --max-line-bytes ({max} bytes); is this JSON Lines, one event per line?"
            ));
        }
        line.extend_from_slice(&buf[..take]);
        input.consume(take + usize::from(done));
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(true);
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads JSON Lines from `input` (named `input_name` in errors) into a new archive; no line
/// may be longer than `max_line_bytes`. A UTF-8 byte-order mark at the start is skipped. An
/// import that fails removes what it created (the file, or the segment directory) and nothing
/// else.
pub fn import(
    input: impl BufRead,
    input_name: &str,
    target: ImportTarget<'_>,
    options: WriterOptions,
    max_line_bytes: usize,
) -> Result<Vec<WriteSummary>> {
    let (path, is_dir) = match &target {
        ImportTarget::File(p) => (p.to_path_buf(), false),
        ImportTarget::Segments(p, _) => (p.to_path_buf(), true),
    };
    let existed = path.exists();
    let result = import_into(input, input_name, target, options, max_line_bytes);
    // Only what this import created goes: a path that was there before is left as it is (the
    // command writes to a fresh temporary name and renames it into place).
    if result.is_err() && !existed {
        let _ = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            crate::archive::storage::remove_partial(&path)
        };
    }
    result
}

fn import_into(
    mut input: impl BufRead,
    input_name: &str,
    target: ImportTarget<'_>,
    options: WriterOptions,
    max_line_bytes: usize,
) -> Result<Vec<WriteSummary>> {
    enum W {
        One(Box<ArchiveWriter>),
        Many(Box<SegmentedWriter>),
    }
    let mut writer = match target {
        ImportTarget::File(p) => W::One(Box::new(ArchiveWriter::create(p, options)?)),
        ImportTarget::Segments(p, k) => W::Many(Box::new(SegmentedWriter::create(p, k, options)?)),
    };
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line_no += 1;
        let more = read_line_bounded(&mut input, &mut line, max_line_bytes).map_err(|message| {
            ArchiveError::Jsonl {
                path: input_name.to_string(),
                line: line_no,
                message,
            }
        })?;
        if !more {
            break;
        }
        let text = match line.strip_prefix(UTF8_BOM).filter(|_| line_no == 1) {
            Some(rest) => rest,
            None => &line[..],
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: Event = serde_json::from_slice(text).map_err(|e| ArchiveError::Jsonl {
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
        serde_json::to_writer(&mut out, &event).map_err(|e| werr(e.into()))?;
        out.write_all(b"\n").map_err(werr)?;
        n += 1;
    }
    out.flush().map_err(werr)?;
    Ok(n)
}
