//! Writes replayscope archives: MCAP, profile "replayscope", one channel per (namespace,
//! agent_id), protobuf `ArchivedEvent` messages, the `replayscope.index` attachment and the
//! `replayscope` metadata record (hash chain, ranges).
//!
//! Events are gathered in groups of ~512 KiB (in offset order). When a group closes, each agent
//! with at least [`OWN_CHUNK_BYTES`] in it gets an MCAP chunk of its own, and the other agents'
//! events go together in one more chunk: a one-agent read then decompresses only that agent's
//! chunks, a full read merges a group's chunks by offset (the hash chain runs over offset
//! order, as before), and a seek costs one group. With many quiet agents the group is one chunk
//! of every agent, as archives were before. 512 KiB rather than 1 MiB: a seek decompresses and
//! hashes half as much (seek p50 3.3 -> 1.6 ms on the 10M `gen` archive) for 2.8 % more size
//! (per-agent chunks of ~85 KiB compress a little worse); six agents still get chunks of their
//! own (up to eight evenly busy ones do).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use crate::archive::index::{self, ChunkSpan, GroupLayout};
use crate::archive::integrity::{ChunkHasher, HashChain, ZERO_HASH};
use crate::archive::snapshot::{self, SnapshotPolicy, StateCarry};
use crate::archive::{ArchiveError, FORMAT_VERSION, METADATA_NAME, PROFILE, Result, SCHEMA_NAME};
use crate::event::{Event, hex};

/// Chunk compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Zstd,
    Lz4,
    None,
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub compression: Compression,
    /// Target uncompressed size of a group of chunks.
    pub chunk_bytes: usize,
    /// Offset of the first event; `None` = whatever the first appended event carries.
    pub first_offset: Option<u64>,
    /// The hash the chain continues from (the previous segment's final hash).
    pub chain_start: [u8; 32],
    /// Where the events' wall times came from when the source had none (`--time-field`):
    /// recorded in the metadata, so every reader can say so.
    pub time_source: Option<String>,
    /// State snapshots (DESIGN.md section 12): stored as the policy says when the writer knows
    /// the state (it starts the archive, or is handed the state with
    /// [`ArchiveWriter::with_state`]); `None` writes none.
    pub snapshots: Option<SnapshotPolicy>,
    /// Markers written into the file (a metadata record `replayscope.markers`).
    pub markers: Option<crate::event::marker::MarkerSet>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            compression: Compression::Zstd,
            chunk_bytes: 512 * 1024,
            first_offset: None,
            chain_start: ZERO_HASH,
            time_source: None,
            snapshots: Some(SnapshotPolicy::default()),
            markers: None,
        }
    }
}

/// What a finished archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub path: PathBuf,
    pub events: u64,
    pub first_offset: u64,
    pub last_offset: Option<u64>,
    pub last_commit_ts: Option<u64>,
    pub final_hash: [u8; 32],
    pub bytes: u64,
    /// State snapshots written.
    pub snapshots: usize,
}

/// The bytes an agent needs in a group for a chunk of its own: smaller chunks compress worse
/// and cost a chunk record, index entries and a seek each.
pub const OWN_CHUNK_BYTES: usize = 64 * 1024;

/// An event of the group being written, until the group closes.
struct Pending {
    header: mcap::records::MessageHeader,
    /// Where its payload is in `Group::bytes`.
    start: usize,
    len: usize,
}

/// The events of the group being written, in offset order.
#[derive(Default)]
struct Group {
    events: Vec<Pending>,
    bytes: Vec<u8>,
    /// Payload bytes per MCAP channel id.
    channel_bytes: HashMap<u16, usize>,
}

/// The fields of an event the writer needs besides its encoded bytes.
#[derive(Debug, Clone, Copy)]
pub struct EventMeta<'a> {
    pub offset: u64,
    pub commit_ts: u64,
    pub commit_time_ns: Option<u64>,
    pub namespace: &'a str,
    pub agent_id: &'a str,
}

impl<'a> EventMeta<'a> {
    pub fn of(e: &'a Event) -> EventMeta<'a> {
        EventMeta {
            offset: e.offset,
            commit_ts: e.commit_ts,
            commit_time_ns: e.commit_time_ns,
            namespace: &e.namespace,
            agent_id: &e.agent_id,
        }
    }
}

/// `event` encoded as the event at `offset`, with its metadata (`path` names the archive in
/// an error).
fn encode_at(
    event: &Event,
    offset: u64,
    path: impl FnOnce() -> String,
) -> Result<(EventMeta<'_>, Vec<u8>)> {
    let payload = event.encode_at(offset).map_err(|e| ArchiveError::Invalid {
        path: path(),
        message: format!("event at offset {}: {e}", event.offset),
    })?;
    let meta = EventMeta {
        offset,
        ..EventMeta::of(event)
    };
    Ok((meta, payload))
}

/// Writes one archive file.
pub struct ArchiveWriter {
    inner: mcap::Writer<BufWriter<File>>,
    path: PathBuf,
    options: WriterOptions,
    schema_id: u16,
    channels: HashMap<(String, String), u16>,
    spans: Vec<ChunkSpan>,
    layouts: Vec<GroupLayout>,
    current: Option<ChunkSpan>,
    current_bytes: usize,
    group: Group,
    next_offset: Option<u64>,
    first_offset: Option<u64>,
    first_commit_ts: Option<u64>,
    last_commit_ts: Option<u64>,
    first_time_ns: Option<u64>,
    last_time_ns: Option<u64>,
    events: u64,
    chain: HashChain,
    /// The chain heads recorded inside the group being written (see [`index::ChainCheckpoints`]).
    checkpoints: Vec<[u8; 32]>,
    /// The state folded for snapshots (None: not known, none written).
    carry: Option<StateCarry>,
    state_channel: Option<u16>,
    snapshot_offsets: Vec<u64>,
    /// The MCAP log time of the last event (a snapshot after it carries it too).
    last_log_time: u64,
    names: crate::event::wire::NameCache,
}

impl ArchiveWriter {
    pub fn create(path: &Path, options: WriterOptions) -> Result<ArchiveWriter> {
        let name = path.display().to_string();
        let file = File::create(path).map_err(|e| ArchiveError::io(&name, e))?;
        let compression = match options.compression {
            Compression::Zstd => Some(mcap::Compression::Zstd),
            Compression::Lz4 => Some(mcap::Compression::Lz4),
            Compression::None => None,
        };
        let write_err = |e: mcap::McapError| ArchiveError::Write {
            path: name.clone(),
            message: e.to_string(),
        };
        let mut inner = mcap::WriteOptions::new()
            .profile(PROFILE)
            .library(format!("replayscope {}", env!("CARGO_PKG_VERSION")))
            .compression(compression)
            // Chunks are closed by this writer, so that it knows each chunk's first offset.
            .chunk_size(None)
            // Single-threaded compression: deterministic bytes for the same input.
            .compression_threads(0)
            // 16 bytes per event; the index attachment says which chunk holds which agent.
            .emit_message_indexes(false)
            .create(BufWriter::with_capacity(1 << 20, file))
            .map_err(write_err)?;
        let schema = crate::wire::proto::archived_event_schema();
        let schema_id = inner
            .add_schema(SCHEMA_NAME, "protobuf", &schema)
            .map_err(write_err)?;
        Ok(ArchiveWriter {
            inner,
            path: path.to_path_buf(),
            chain: HashChain::starting_at(options.chain_start),
            checkpoints: Vec::new(),
            next_offset: options.first_offset,
            options,
            schema_id,
            channels: HashMap::new(),
            spans: Vec::new(),
            layouts: Vec::new(),
            current: None,
            current_bytes: 0,
            group: Group::default(),
            first_offset: None,
            first_commit_ts: None,
            last_commit_ts: None,
            first_time_ns: None,
            last_time_ns: None,
            events: 0,
            carry: None,
            state_channel: None,
            snapshot_offsets: Vec::new(),
            last_log_time: 0,
            names: Default::default(),
        })
    }

    /// Continues the snapshots of an archive this file continues (the next segment of a
    /// directory): `carry` is the state through the event before this file's first.
    pub fn with_state(mut self, carry: StateCarry) -> ArchiveWriter {
        if self.options.snapshots.is_some() {
            self.carry = Some(carry);
        }
        self
    }

    /// Offsets of the snapshots written so far.
    pub fn snapshot_offsets(&self) -> &[u64] {
        &self.snapshot_offsets
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn write_err(&self, e: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Write {
            path: self.name(),
            message: e.to_string(),
        }
    }

    /// Offset the next appended event must carry (None before the first one when not fixed).
    pub fn next_offset(&self) -> Option<u64> {
        self.next_offset
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn chain_head(&self) -> [u8; 32] {
        self.chain.head()
    }

    pub fn append(&mut self, event: &Event) -> Result<()> {
        self.append_at(event, event.offset)
    }

    /// Appends `event` as the event at `offset` (a copy re-numbered from 0, say).
    pub fn append_at(&mut self, event: &Event, offset: u64) -> Result<()> {
        let (meta, payload) = encode_at(event, offset, || self.name())?;
        self.append_checked(meta, &payload, Some(event))
    }

    /// Appends an already-encoded `ArchivedEvent` (its fields must match `meta`).
    pub fn append_encoded(&mut self, meta: EventMeta<'_>, payload: &[u8]) -> Result<()> {
        self.append_checked(meta, payload, None)
    }

    /// Appends an event as another archive stores it (`channels`: that archive's table).
    pub fn append_raw(
        &mut self,
        raw: &crate::archive::RawEvent,
        channels: &[crate::archive::reader::ChannelKey],
    ) -> Result<()> {
        let key = &channels[raw.channel];
        let meta = EventMeta {
            offset: raw.offset,
            commit_ts: raw.commit_ts,
            commit_time_ns: raw.commit_time_ns,
            namespace: &key.namespace,
            agent_id: &key.agent_id,
        };
        self.append_checked(meta, &raw.payload, None)
    }

    /// Appends `payload`; `event` is its decoded form when the caller has it (the state folded
    /// for snapshots uses it instead of decoding the payload again).
    fn append_checked(
        &mut self,
        meta: EventMeta<'_>,
        payload: &[u8],
        event: Option<&Event>,
    ) -> Result<()> {
        if let Some(expected) = self.next_offset
            && meta.offset != expected
        {
            return Err(ArchiveError::Invalid {
                path: self.name(),
                message: format!(
                    "offsets must be contiguous: expected offset {expected}, got {}",
                    meta.offset
                ),
            });
        }
        if let Some(prev) = self.last_commit_ts
            && meta.commit_ts <= prev
        {
            return Err(ArchiveError::OrderBackwards {
                path: self.name(),
                offset: meta.offset,
                commit_ts: meta.commit_ts,
                prev_commit_ts: prev,
            });
        }
        let channel_id = self.channel_for(meta.namespace, meta.agent_id)?;
        let log_time = meta.commit_time_ns.unwrap_or(meta.commit_ts);
        let header = mcap::records::MessageHeader {
            channel_id,
            sequence: meta.offset as u32,
            log_time,
            publish_time: log_time,
        };
        let start = self.group.bytes.len();
        self.group.bytes.extend_from_slice(payload);
        self.group.events.push(Pending {
            header,
            start,
            len: payload.len(),
        });
        *self.group.channel_bytes.entry(channel_id).or_insert(0) += payload.len();
        let chain_before = self.chain.head();
        self.chain.push(payload);
        let in_group = self.current.as_ref().map_or(0, |s| s.events);
        if in_group > 0 && in_group.is_multiple_of(u64::from(index::CHECKPOINT_EVERY)) {
            self.checkpoints.push(chain_before);
        }

        self.current
            .get_or_insert(ChunkSpan::starting(
                meta.offset,
                meta.commit_ts,
                meta.commit_time_ns,
                Some(chain_before),
            ))
            .add(meta.commit_ts, meta.commit_time_ns);
        self.current_bytes += payload.len() + crate::archive::format::MESSAGE_OVERHEAD;

        self.first_offset.get_or_insert(meta.offset);
        self.first_commit_ts.get_or_insert(meta.commit_ts);
        self.last_commit_ts = Some(meta.commit_ts);
        if let Some(t) = meta.commit_time_ns {
            self.first_time_ns.get_or_insert(t);
            self.last_time_ns = Some(t);
        }
        self.next_offset = Some(meta.offset + 1);
        self.events += 1;
        self.last_log_time = log_time;
        self.fold(meta.offset, payload, event)?;

        // A snapshot that is due ends the chunk (it goes right after it).
        let snapshot_due = match (&self.options.snapshots, &self.carry) {
            (Some(policy), Some(carry)) => carry.due(policy),
            _ => false,
        };
        if self.current_bytes >= self.options.chunk_bytes || snapshot_due {
            self.close_chunk()?;
        }
        Ok(())
    }

    /// Closes the current chunk and flushes it to the file, so that a reader (or a crash) sees
    /// every event appended so far.
    pub fn flush(&mut self) -> Result<()> {
        self.close_chunk()
    }

    fn close_chunk(&mut self) -> Result<()> {
        if let Some(mut span) = self.current.take() {
            let mut layout = self.write_group()?;
            span.parts = layout.chunks.len() as u64;
            layout.checkpoints = index::ChainCheckpoints {
                every: index::CHECKPOINT_EVERY,
                heads: std::mem::take(&mut self.checkpoints),
            };
            self.spans.push(span);
            self.current_bytes = 0;
            layout.snapshot_after = self.write_snapshot_if_due()?;
            self.layouts.push(layout);
        }
        Ok(())
    }

    /// Writes the group's events as chunks: one per agent with [`OWN_CHUNK_BYTES`] in it, one
    /// for the rest, in the order of their first events. Returns the channel of each chunk
    /// (`None` for the shared one) and its hash.
    fn write_group(&mut self) -> Result<GroupLayout> {
        let group = std::mem::take(&mut self.group);
        let own = |id: u16| group.channel_bytes.get(&id).copied().unwrap_or(0) >= OWN_CHUNK_BYTES;
        // Each chunk as (the channel it is of, or None for the shared one), by first event.
        let mut parts: Vec<Option<u16>> = Vec::new();
        for e in &group.events {
            let part = own(e.header.channel_id).then_some(e.header.channel_id);
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        let mut hashes = Vec::with_capacity(parts.len());
        for part in &parts {
            let mut hash = ChunkHasher::default();
            for e in &group.events {
                let id = e.header.channel_id;
                let in_part = match part {
                    Some(c) => *c == id,
                    None => !own(id),
                };
                if in_part {
                    let payload = &group.bytes[e.start..e.start + e.len];
                    hash.push(payload);
                    self.inner
                        .write_to_known_channel(&e.header, payload)
                        .map_err(|e| self.write_err(e))?;
                }
            }
            hashes.push(hash.finish());
            // Closes the chunk (and flushes it to the file).
            self.inner.flush().map_err(|e| self.write_err(e))?;
        }
        // Keep the buffers' capacity for the next group.
        let mut group = group;
        group.events.clear();
        group.bytes.clear();
        group.channel_bytes.clear();
        self.group = group;
        Ok(GroupLayout {
            chunks: parts,
            hashes,
            snapshot_after: false,
            checkpoints: index::ChainCheckpoints::default(),
        })
    }

    /// Folds the event at `offset` into the snapshots' state (when it is kept).
    fn fold(&mut self, offset: u64, payload: &[u8], event: Option<&Event>) -> Result<()> {
        if self.carry.is_none() && self.options.snapshots.is_some() && self.events == 1 {
            // The first event of a file: the fold starts here when the file starts an archive.
            if self.options.chain_start == ZERO_HASH {
                self.carry = Some(StateCarry::starting(offset));
            }
        }
        let Some(carry) = self.carry.as_mut() else {
            return Ok(());
        };
        let decoded;
        let event = match event {
            Some(e) if e.offset == offset => e,
            Some(e) => {
                decoded = Event {
                    offset,
                    ..e.clone()
                };
                &decoded
            }
            None => {
                let bytes = bytes::Bytes::copy_from_slice(payload);
                decoded =
                    crate::event::wire::decode_event(&bytes, &mut self.names).map_err(|e| {
                        ArchiveError::Invalid {
                            path: self.path.display().to_string(),
                            message: format!("event at offset {offset}: {e}"),
                        }
                    })?;
                &decoded
            }
        };
        carry.apply(event, payload.len());
        Ok(())
    }

    /// Writes a snapshot of the state through the last event, in a chunk of its own, when the
    /// policy says one is due; says whether it did.
    fn write_snapshot_if_due(&mut self) -> Result<bool> {
        let (Some(policy), Some(carry), Some(next)) =
            (&self.options.snapshots, &self.carry, self.next_offset)
        else {
            return Ok(false);
        };
        if !carry.due(policy) {
            return Ok(false);
        }
        let through = next - 1;
        let payload = snapshot::encode(&carry.state, through, carry.first_offset).map_err(|e| {
            ArchiveError::Invalid {
                path: self.name(),
                message: format!("state snapshot at offset {through}: {e}"),
            }
        })?;
        let channel_id = match self.state_channel {
            Some(id) => id,
            None => {
                let schema = self
                    .inner
                    .add_schema(
                        snapshot::STATE_SCHEMA_NAME,
                        "protobuf",
                        &crate::wire::proto::archived_event_schema(),
                    )
                    .map_err(|e| self.write_err(e))?;
                let id = self
                    .inner
                    .add_channel(schema, snapshot::STATE_TOPIC, "protobuf", &BTreeMap::new())
                    .map_err(|e| self.write_err(e))?;
                self.state_channel = Some(id);
                id
            }
        };
        let header = mcap::records::MessageHeader {
            channel_id,
            sequence: through as u32,
            log_time: self.last_log_time,
            publish_time: self.last_log_time,
        };
        self.inner
            .write_to_known_channel(&header, &payload)
            .and_then(|()| self.inner.flush())
            .map_err(|e| self.write_err(e))?;
        self.snapshot_offsets.push(through);
        if let Some(c) = self.carry.as_mut() {
            c.written(payload.len());
        }
        Ok(true)
    }

    fn channel_for(&mut self, namespace: &str, agent_id: &str) -> Result<u16> {
        if let Some(id) = self
            .channels
            .get(&(namespace.to_string(), agent_id.to_string()))
        {
            return Ok(*id);
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("namespace".to_string(), namespace.to_string());
        metadata.insert("agent_id".to_string(), agent_id.to_string());
        let id = self
            .inner
            .add_channel(
                self.schema_id,
                &crate::event::topic(namespace, agent_id),
                "protobuf",
                &metadata,
            )
            .map_err(|e| self.write_err(e))?;
        self.channels
            .insert((namespace.to_string(), agent_id.to_string()), id);
        Ok(id)
    }

    /// Writes the index attachment, the metadata record and the summary, and closes the file.
    pub fn finish(self) -> Result<WriteSummary> {
        self.finish_carrying().map(|(s, _)| s)
    }

    /// [`ArchiveWriter::finish`], also handing over the snapshots' state for the writer of the
    /// next segment ([`ArchiveWriter::with_state`]).
    pub fn finish_carrying(mut self) -> Result<(WriteSummary, Option<StateCarry>)> {
        self.close_chunk()?;
        let index = index::encode(&self.spans, &self.layouts);
        self.inner
            .attach(&mcap::Attachment {
                log_time: 0,
                create_time: 0,
                name: index::INDEX_ATTACHMENT.to_string(),
                media_type: index::INDEX_MEDIA_TYPE.to_string(),
                data: std::borrow::Cow::Owned(index),
            })
            .map_err(|e| self.write_err(e))?;
        let first_offset = self.first_offset.or(self.options.first_offset).unwrap_or(0);
        let last_offset = self.next_offset.filter(|_| self.events > 0).map(|n| n - 1);
        let mut m = BTreeMap::new();
        m.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        m.insert("events".to_string(), self.events.to_string());
        m.insert("first_offset".to_string(), first_offset.to_string());
        if let Some(l) = last_offset {
            m.insert("last_offset".to_string(), l.to_string());
        }
        for (k, v) in [
            ("first_commit_ts", self.first_commit_ts),
            ("last_commit_ts", self.last_commit_ts),
            ("first_time_ns", self.first_time_ns),
            ("last_time_ns", self.last_time_ns),
        ] {
            if let Some(v) = v {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m.insert("chain_start".to_string(), hex(&self.options.chain_start));
        m.insert("final_hash".to_string(), hex(&self.chain.head()));
        if let Some(t) = &self.options.time_source {
            m.insert("time_source".to_string(), t.clone());
        }
        if !self.snapshot_offsets.is_empty() {
            m.insert(
                snapshot::OFFSETS_KEY.to_string(),
                snapshot::offsets_text(&self.snapshot_offsets),
            );
        }
        self.inner
            .write_metadata(&mcap::records::Metadata {
                name: METADATA_NAME.to_string(),
                metadata: m,
            })
            .map_err(|e| self.write_err(e))?;
        if let Some(markers) = self.options.markers.as_ref().filter(|m| !m.is_empty()) {
            let mut m = BTreeMap::new();
            m.insert("markers".to_string(), markers.to_json());
            self.inner
                .write_metadata(&mcap::records::Metadata {
                    name: crate::archive::MARKERS_METADATA.to_string(),
                    metadata: m,
                })
                .map_err(|e| self.write_err(e))?;
        }
        self.inner.finish().map_err(|e| self.write_err(e))?;
        let name = self.name();
        let mut buf = self.inner.into_inner();
        buf.flush().map_err(|e| ArchiveError::io(&name, e))?;
        let bytes = buf
            .stream_position()
            .map_err(|e| ArchiveError::io(&name, e))?;
        let file = buf
            .into_inner()
            .map_err(|e| ArchiveError::io(&name, e.into_error()))?;
        file.sync_all().map_err(|e| ArchiveError::io(&name, e))?;
        let summary = WriteSummary {
            path: self.path,
            events: self.events,
            first_offset,
            last_offset,
            last_commit_ts: self.last_commit_ts,
            final_hash: self.chain.head(),
            bytes,
            snapshots: self.snapshot_offsets.len(),
        };
        Ok((summary, self.carry))
    }
}

/// The file name of the segment whose first offset is `first_offset`.
pub fn segment_file_name(first_offset: u64) -> String {
    format!("{first_offset:020}.mcap")
}

/// When a segment is closed and the next one started, besides its event count: once it
/// holds this many bytes of events (before compression) or has been open this long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    pub bytes: Option<u64>,
    pub duration: Option<std::time::Duration>,
}

/// Writes a directory of segments, rolling over every `segment_events` events (or as the
/// [`Rotation`] says); each segment's chain continues from the previous one's final hash.
pub struct SegmentedWriter {
    dir: PathBuf,
    options: WriterOptions,
    segment_events: u64,
    rotation: Rotation,
    /// Bytes of events in the current segment, and when it was started.
    current_bytes: u64,
    opened_at: std::time::Instant,
    current: Option<ArchiveWriter>,
    done: Vec<WriteSummary>,
    next_offset: Option<u64>,
    last_commit_ts: Option<u64>,
    chain_head: [u8; 32],
    /// The snapshots' state, handed from each segment's writer to the next.
    carry: Option<StateCarry>,
}

impl SegmentedWriter {
    pub fn create(dir: &Path, segment_events: u64, options: WriterOptions) -> Result<Self> {
        let name = dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|e| ArchiveError::io(&name, e))?;
        Ok(SegmentedWriter {
            dir: dir.to_path_buf(),
            segment_events: segment_events.max(1),
            rotation: Rotation::default(),
            current_bytes: 0,
            opened_at: std::time::Instant::now(),
            current: None,
            done: Vec::new(),
            next_offset: options.first_offset,
            last_commit_ts: None,
            chain_head: options.chain_start,
            options,
            carry: None,
        })
    }

    /// Continues the snapshots of the directory it continues: `carry` is the state through
    /// its last event.
    pub fn with_state(mut self, carry: StateCarry) -> Self {
        self.carry = Some(carry);
        self
    }

    /// Also rolls over by size or age.
    pub fn with_rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// Continues a directory whose last segment ended at a transaction with this commit_ts
    /// (commit order is checked across the restart).
    pub fn continuing_after(mut self, last_commit_ts: Option<u64>) -> Self {
        self.last_commit_ts = last_commit_ts;
        self
    }

    pub fn append(&mut self, event: &Event) -> Result<()> {
        self.append_at(event, event.offset)
    }

    /// Appends `event` as the event at `offset`.
    pub fn append_at(&mut self, event: &Event, offset: u64) -> Result<()> {
        let (meta, payload) = encode_at(event, offset, || self.dir.display().to_string())?;
        self.append_encoded(meta, &payload)
    }

    /// Whether the current segment is full (by events, bytes or age).
    fn segment_full(&self) -> bool {
        self.current.as_ref().is_some_and(|w| {
            w.events() >= self.segment_events
                || self.rotation.bytes.is_some_and(|b| self.current_bytes >= b)
                || self
                    .rotation
                    .duration
                    .is_some_and(|d| self.opened_at.elapsed() >= d)
        })
    }

    pub fn append_encoded(&mut self, meta: EventMeta<'_>, payload: &[u8]) -> Result<()> {
        if self.segment_full() {
            self.roll()?;
        }
        if self.current.is_none() {
            let first = self.next_offset.unwrap_or(meta.offset);
            let path = self.dir.join(segment_file_name(first));
            let mut writer = ArchiveWriter::create(
                &path,
                WriterOptions {
                    first_offset: Some(first),
                    chain_start: self.chain_head,
                    ..self.options.clone()
                },
            )?;
            writer.last_commit_ts = self.last_commit_ts;
            if let Some(carry) = self.carry.take() {
                writer = writer.with_state(carry);
            }
            self.current = Some(writer);
            self.current_bytes = 0;
            self.opened_at = std::time::Instant::now();
        }
        let writer = self
            .current
            .as_mut()
            .expect("segment writer was just opened");
        writer.append_encoded(meta, payload)?;
        self.current_bytes += payload.len() as u64;
        self.next_offset = Some(meta.offset + 1);
        self.last_commit_ts = Some(meta.commit_ts);
        self.chain_head = writer.chain_head();
        Ok(())
    }

    fn roll(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            let (summary, carry) = w.finish_carrying()?;
            self.done.push(summary);
            self.carry = carry;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        match self.current.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    pub fn finish(mut self) -> Result<Vec<WriteSummary>> {
        self.roll()?;
        Ok(self.done)
    }
}
