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

/// One input of an import: its lines, its name in errors, and the agent its lines belong to
/// when they do not say (a dump of one Statehouse agent's Replay has no namespace/agent_id).
pub struct ImportInput<'a> {
    pub reader: Box<dyn BufRead + 'a>,
    pub name: String,
    pub agent: Option<(String, String)>,
}

/// How lines become events.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions<'a> {
    /// The longest line taken.
    pub max_line_bytes: usize,
    /// Give events without a commit_time_ns the time found in their values.
    pub time_field: Option<&'a crate::event::TimeField>,
}

/// An event as an import takes it: the export's fields, with `offset`, `namespace` and
/// `agent_id` optional (a Statehouse Replay dump has `txn_id`, `commit_ts` and `operations`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    offset: Option<u64>,
    txn_id: String,
    commit_ts: u64,
    #[serde(default)]
    commit_time_ns: Option<u64>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    operations: Vec<crate::event::Operation>,
}

/// An input being read: the next event it holds, and where that came from.
struct Reader<'a> {
    input: ImportInput<'a>,
    line: Vec<u8>,
    line_no: u64,
    /// The next offset to give a line without one.
    next_offset: u64,
    next: Option<(Event, u64)>,
    max_line_bytes: usize,
}

impl Reader<'_> {
    fn error(&self, line: u64, message: impl Into<String>) -> ArchiveError {
        ArchiveError::Jsonl {
            path: self.input.name.clone(),
            line,
            message: message.into(),
        }
    }

    /// Reads the next event (skipping blank lines) into `self.next`.
    fn advance(&mut self) -> Result<()> {
        self.next = None;
        loop {
            self.line_no += 1;
            let more =
                read_line_bounded(&mut self.input.reader, &mut self.line, self.max_line_bytes)
                    .map_err(|m| self.error(self.line_no, m))?;
            if !more {
                return Ok(());
            }
            let text = match self
                .line
                .strip_prefix(UTF8_BOM)
                .filter(|_| self.line_no == 1)
            {
                Some(rest) => rest,
                None => &self.line[..],
            };
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let l: Line = serde_json::from_slice(text)
                .map_err(|e| self.error(self.line_no, format!("not a valid event: {e}")))?;
            let (namespace, agent_id) = match (l.namespace, l.agent_id, &self.input.agent) {
                (Some(n), Some(a), _) => (n, a),
                (None, None, Some((n, a))) => (n.clone(), a.clone()),
                (None, None, None) => {
                    return Err(self.error(
                        self.line_no,
                        "no namespace and agent_id: a dump of one agent's Replay needs \
                         --agent NAMESPACE/AGENT_ID (or FILE=NAMESPACE/AGENT_ID)",
                    ));
                }
                _ => {
                    return Err(
                        self.error(self.line_no, "give both namespace and agent_id, or neither")
                    );
                }
            };
            let offset = l.offset.unwrap_or(self.next_offset);
            self.next_offset = offset + 1;
            let event = Event {
                offset,
                txn_id: l.txn_id,
                commit_ts: l.commit_ts,
                commit_time_ns: l.commit_time_ns,
                namespace: namespace.into(),
                agent_id: agent_id.into(),
                operations: l.operations,
            };
            self.next = Some((event, self.line_no));
            return Ok(());
        }
    }
}

/// Reads JSON Lines into a new archive. One input keeps its offsets (an export imports to the
/// same archive bytes) and numbers lines without one in order; several inputs are merged in
/// commit_ts order (Statehouse's commit_ts is one counter for the whole daemon) and renumbered
/// from 0, a transaction that appears in several of them (it touched several agents) once. No
/// line may be longer than `max_line_bytes`; a UTF-8 byte-order mark at the start is skipped. An
/// import that fails removes what it created (the file, or the segment directory) and nothing
/// else.
pub fn import_all(
    inputs: Vec<ImportInput<'_>>,
    target: ImportTarget<'_>,
    options: WriterOptions,
    import: ImportOptions<'_>,
) -> Result<Vec<WriteSummary>> {
    let (path, is_dir) = match &target {
        ImportTarget::File(p) => (p.to_path_buf(), false),
        ImportTarget::Segments(p, _) => (p.to_path_buf(), true),
    };
    let existed = path.exists();
    let result = import_into(inputs, target, options, import);
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

/// [`import_all`] of one input whose lines name their agents.
pub fn import(
    input: impl BufRead,
    input_name: &str,
    target: ImportTarget<'_>,
    options: WriterOptions,
    max_line_bytes: usize,
) -> Result<Vec<WriteSummary>> {
    let input = ImportInput {
        reader: Box::new(input),
        name: input_name.to_string(),
        agent: None,
    };
    import_all(
        vec![input],
        target,
        options,
        ImportOptions {
            max_line_bytes,
            time_field: None,
        },
    )
}

fn import_into(
    inputs: Vec<ImportInput<'_>>,
    target: ImportTarget<'_>,
    options: WriterOptions,
    import: ImportOptions<'_>,
) -> Result<Vec<WriteSummary>> {
    enum W {
        One(Box<ArchiveWriter>),
        Many(Box<SegmentedWriter>),
    }
    let options = WriterOptions {
        time_source: import
            .time_field
            .map(|f| format!("the values' field {}", f.label()))
            .or(options.time_source.clone()),
        ..options
    };
    let mut writer = match target {
        ImportTarget::File(p) => W::One(Box::new(ArchiveWriter::create(p, options)?)),
        ImportTarget::Segments(p, k) => W::Many(Box::new(SegmentedWriter::create(p, k, options)?)),
    };
    let renumber = inputs.len() > 1;
    let mut readers: Vec<Reader<'_>> = inputs
        .into_iter()
        .map(|input| Reader {
            input,
            line: Vec::new(),
            line_no: 0,
            next_offset: 0,
            next: None,
            max_line_bytes: import.max_line_bytes.max(1),
        })
        .collect();
    for r in &mut readers {
        r.advance()?;
    }
    let mut offset = 0u64;
    let mut last: Option<(u64, String, Vec<crate::event::Operation>)> = None;
    let mut timed = Timed::default();
    // The input whose next event commits first (the first input on a tie).
    while let Some(i) = (0..readers.len())
        .filter(|&i| readers[i].next.is_some())
        .min_by_key(|&i| readers[i].next.as_ref().map(|(e, _)| e.commit_ts))
    {
        let (mut event, line_no) = readers[i].next.take().expect("chosen for its next event");
        // A transaction that touched several agents is in each of their Replays, with all its
        // operations: the same one is written once. The same commit_ts with different
        // contents is not the same transaction.
        let duplicate = match &last {
            Some((ts, txn, ops)) if renumber && *ts == event.commit_ts => {
                if *txn == event.txn_id && *ops == event.operations {
                    true
                } else {
                    return Err(readers[i].error(
                        line_no,
                        format!(
                            "commit_ts {ts} is in two inputs with different transactions \
                             (txn {txn} and {}): the inputs are not from one Statehouse daemon",
                            event.txn_id
                        ),
                    ));
                }
            }
            _ => false,
        };
        if !duplicate {
            if renumber {
                event.offset = offset;
                offset += 1;
            }
            match import.time_field {
                None => {
                    let appended = match &mut writer {
                        W::One(w) => w.append(&event),
                        W::Many(w) => w.append(&event),
                    };
                    appended.map_err(|e| readers[i].error(line_no, e.to_string()))?;
                }
                Some(field) => {
                    let name = readers[i].input.name.clone();
                    timed.push(event.clone(), line_no, name, field, &mut |e, line, name| {
                        let appended = match &mut writer {
                            W::One(w) => w.append(e),
                            W::Many(w) => w.append(e),
                        };
                        appended.map_err(|err| ArchiveError::Jsonl {
                            path: name.to_string(),
                            line,
                            message: err.to_string(),
                        })
                    })?;
                }
            }
            last = Some((event.commit_ts, event.txn_id, event.operations));
        }
        readers[i].advance()?;
    }
    if let Some(field) = import.time_field {
        timed.finish(field)?;
    }
    match writer {
        W::One(w) => Ok(vec![w.finish()?]),
        W::Many(w) => w.finish(),
    }
}

/// Gives events a wall time from their values (`--time-field`). Times never go backwards (an
/// earlier one is raised to the last); an event without one takes the last event's; the events
/// before the first one that has a time wait for it (at most [`Timed::MAX_WAITING`]).
#[derive(Default)]
struct Timed {
    last: Option<u64>,
    waiting: Vec<(Event, u64, String)>,
}

type Append<'w> = dyn FnMut(&Event, u64, &str) -> Result<()> + 'w;

impl Timed {
    const MAX_WAITING: usize = 100_000;

    fn push(
        &mut self,
        mut e: Event,
        line: u64,
        name: String,
        field: &crate::event::TimeField,
        append: &mut Append<'_>,
    ) -> Result<()> {
        let found = e.commit_time_ns.or_else(|| field.time_of(&e));
        let t = match (found, self.last) {
            (Some(t), Some(last)) => Some(t.max(last)),
            (Some(t), None) => Some(t),
            (None, last) => last,
        };
        let Some(t) = t else {
            if self.waiting.len() >= Self::MAX_WAITING {
                return Err(ArchiveError::Jsonl {
                    path: name,
                    line,
                    message: format!(
                        "no time in field {} in the first {} events (--time-field)",
                        field.label(),
                        Self::MAX_WAITING
                    ),
                });
            }
            self.waiting.push((e, line, name));
            return Ok(());
        };
        for (mut w, wl, wn) in self.waiting.drain(..) {
            w.commit_time_ns = Some(t);
            append(&w, wl, &wn)?;
        }
        self.last = Some(t);
        e.commit_time_ns = Some(t);
        append(&e, line, &name)
    }

    fn finish(&self, field: &crate::event::TimeField) -> Result<()> {
        match self.waiting.first() {
            None => Ok(()),
            Some((_, line, name)) => Err(ArchiveError::Jsonl {
                path: name.clone(),
                line: *line,
                message: format!(
                    "no event has a time in field {} (--time-field): name a field that holds an \
                     RFC 3339 time or a Unix timestamp",
                    field.label()
                ),
            }),
        }
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

/// Whether `path` holds JSON Lines rather than an archive: its name says so, or it starts with
/// `{` (an MCAP file starts with its magic bytes).
pub fn looks_like_jsonl(path: &Path) -> bool {
    let by_name = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "jsonl" | "ndjson"));
    // Else its first byte past a byte-order mark and white space (as `import` reads it).
    by_name
        || (path.is_file()
            && std::fs::File::open(path).is_ok_and(|f| {
                let mut head = Vec::with_capacity(256);
                let _ = std::io::Read::read_to_end(&mut std::io::Read::take(f, 256), &mut head);
                let head = head.strip_prefix(UTF8_BOM).unwrap_or(&head);
                head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
            }))
}

/// Opens a JSON Lines file as an archive, imported on the fly into a temporary file (unlinked
/// once open: it goes away with the process). `agent` names the agent of lines without one.
pub fn open_as_archive(
    path: &Path,
    agent: Option<(String, String)>,
    max_line_bytes: usize,
    time_field: Option<&crate::event::TimeField>,
) -> Result<crate::archive::Archive> {
    let name = path.display().to_string();
    crate::archive::storage::check_not_special(path).map_err(|e| ArchiveError::io(&name, e))?;
    let file = std::fs::File::open(path).map_err(|e| ArchiveError::io(&name, e))?;
    let temp = std::env::temp_dir().join(format!(
        "replayscope-{}-{}.mcap",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let input = ImportInput {
        reader: Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
        name: name.clone(),
        agent,
    };
    let imported = import_all(
        vec![input],
        ImportTarget::File(&temp),
        WriterOptions::default(),
        ImportOptions {
            max_line_bytes,
            time_field,
        },
    );
    let opened = imported.and_then(|_| {
        let storage = crate::archive::storage::LocalFile::open(&temp)
            .map_err(|e| ArchiveError::io(&temp.display().to_string(), e))?;
        let segment = crate::archive::reader::open_segment(Box::new(storage), Default::default())?;
        crate::archive::Archive::from_segments(name, vec![segment])
    });
    let _ = std::fs::remove_file(&temp);
    opened
}

static TEMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
