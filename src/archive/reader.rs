//! Reads replayscope archives: a single MCAP file or a directory of segments, opened without
//! scanning (footer, summary, index attachment, metadata record), then read chunk by chunk from
//! any offset, commit_ts or wall time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::archive::cache::{
    self, CacheStats, CachedPart, DEFAULT_CACHE_BYTES, GroupHeads, PartCache,
};
use crate::archive::format::{self, ChunkError, MAGIC, Records, TAIL_LEN, op};
use crate::archive::index::{self, ChunkSpan};
use crate::archive::integrity::{ChunkHasher, HashChain, ZERO_HASH};
use crate::archive::scan::{EventHead, event_head};
use crate::archive::snapshot::{self, STATE_TOPIC};
use crate::archive::storage::{LocalFile, RangeRead};
use crate::archive::{ArchiveError, METADATA_NAME, PROFILE, Result};
use crate::event::{Event, Position, format_time_ns, hex, parse_hash};

#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Open a truncated archive (no footer) and use its readable prefix instead of failing.
    pub allow_truncated: bool,
}

/// One (namespace, agent_id) stream of the archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelKey {
    pub namespace: String,
    pub agent_id: String,
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.agent_id)
    }
}

/// The `replayscope` metadata record of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub events: u64,
    pub first_offset: u64,
    pub chain_start: [u8; 32],
    pub final_hash: [u8; 32],
    /// Where wall times came from when the source had none (`--time-field`).
    pub time_source: Option<String>,
    /// The offsets of the file's state snapshots, as its writer listed them.
    pub snapshot_offsets: Option<Vec<u64>>,
}

/// Where a state snapshot is: the state after the event at `through`, in the chunk record at
/// `start` (`length` bytes with its prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLoc {
    pub through: u64,
    pub start: u64,
    pub length: u64,
}

/// MCAP channel id -> index, looked up for every event read: a table by id (ids are small and
/// dense: the writer numbers them from 0).
#[derive(Debug, Clone, Default)]
struct ChannelMap {
    by_id: Vec<Option<usize>>,
}

impl ChannelMap {
    fn get(&self, id: &u16) -> Option<&usize> {
        self.by_id.get(*id as usize)?.as_ref()
    }
    fn insert(&mut self, id: u16, index: usize) {
        let at = id as usize;
        if self.by_id.len() <= at {
            self.by_id.resize(at + 1, None);
        }
        self.by_id[at] = Some(index);
    }
    fn iter(&self) -> impl Iterator<Item = (&u16, &usize)> + '_ {
        // Ids are the table's positions; `&u16` items keep the shape of a map's iterator.
        static IDS: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
        let ids = IDS.get_or_init(|| (0..=u16::MAX).collect());
        self.by_id
            .iter()
            .zip(ids)
            .filter_map(|(index, id)| index.as_ref().map(|i| (id, i)))
    }
    fn keys(&self) -> impl Iterator<Item = &u16> + '_ {
        self.iter().map(|(id, _)| id)
    }
}

/// One MCAP chunk of a group.
#[derive(Debug, Clone)]
pub(crate) struct ChunkPart {
    /// File position of the chunk record.
    pub start: u64,
    /// Length of the chunk record including opcode and length prefix.
    pub length: u64,
    pub uncompressed: u64,
    /// The MCAP channel ids of its messages (empty: not known, so read for any channel).
    pub channels: Vec<u16>,
    /// The hash of its events the index records (format version 2).
    pub hash: Option<[u8; 32]>,
    /// The index lists it as one agent's own chunk (not the shared one).
    pub own: bool,
}

/// A group of MCAP chunks, consecutive in the file, that together hold a contiguous range of
/// offsets: each busy agent's events in a chunk of its own, the rest in one (one chunk of every
/// agent in archives written before format version 2). The unit of seeking, indexing and
/// checking the hash chain.
#[derive(Debug, Clone)]
pub(crate) struct ChunkLoc {
    /// File position of its first chunk record.
    pub start: u64,
    pub span: ChunkSpan,
    pub parts: Vec<ChunkPart>,
    /// The chain heads the index records inside the group (none before index version 3).
    pub checkpoints: index::ChainCheckpoints,
}

impl ChunkPart {
    /// The chunk a summary's chunk index names, holding `channels` (hash and ownership are the
    /// index attachment's to say).
    fn of_index(ci: &mcap::records::ChunkIndex, channels: Vec<u16>) -> ChunkPart {
        ChunkPart {
            start: ci.chunk_start_offset,
            length: ci.chunk_length,
            uncompressed: ci.uncompressed_size,
            channels,
            hash: None,
            own: false,
        }
    }
}

impl ChunkLoc {
    fn single(part: ChunkPart, span: ChunkSpan) -> ChunkLoc {
        ChunkLoc {
            start: part.start,
            span: ChunkSpan { parts: 1, ..span },
            parts: vec![part],
            checkpoints: index::ChainCheckpoints::default(),
        }
    }
}

/// Assembles groups from chunks met in file order (a scan, or an index rebuilt by reading
/// every chunk): a group closes as soon as its chunks hold a contiguous range of offsets.
#[derive(Default)]
struct Grouper {
    open: Option<(ChunkLoc, u64)>,
}

impl Grouper {
    /// Adds a chunk whose events span `span` (first offset and count) up to offset `last`;
    /// returns the group it completes.
    fn add(&mut self, part: ChunkPart, span: ChunkSpan, last: u64) -> Option<ChunkLoc> {
        match self.open.as_mut() {
            None => self.open = Some((ChunkLoc::single(part, span), last)),
            Some((group, max_last)) => {
                let g = &mut group.span;
                g.first_offset = g.first_offset.min(span.first_offset);
                g.events += span.events;
                g.first_commit_ts = g.first_commit_ts.min(span.first_commit_ts);
                g.last_commit_ts = g.last_commit_ts.max(span.last_commit_ts);
                g.first_time_ns = g.first_time_ns.into_iter().chain(span.first_time_ns).min();
                g.last_time_ns = g.last_time_ns.into_iter().chain(span.last_time_ns).max();
                g.parts += 1;
                group.parts.push(part);
                *max_last = (*max_last).max(last);
            }
        }
        let (group, last) = self.open.as_ref()?;
        if last.checked_add(1).map(|end| end - group.span.first_offset) == Some(group.span.events) {
            self.open.take().map(|(g, _)| g)
        } else {
            None
        }
    }

    /// The chunks of a group that never closed (events missing), if any.
    fn unfinished(&self) -> Option<&ChunkLoc> {
        self.open.as_ref().map(|(g, _)| g)
    }
}

/// One MCAP file of an archive.
pub struct Segment {
    /// Its chunks' key in the archive's cache of decompressed chunks.
    id: u64,
    storage: Box<dyn RangeRead>,
    pub(crate) chunks: Vec<ChunkLoc>,
    /// State snapshots, in offset order (chunks of their own, not in `chunks`).
    pub(crate) snapshots: Vec<SnapshotLoc>,
    /// MCAP channel ids of the snapshot channel.
    state_ids: Vec<u16>,
    /// The compression of its chunks, as its summary says ("zstd", "lz4", "" for none).
    compression: Option<String>,
    /// The markers the file holds (a metadata record `replayscope.markers`).
    pub markers: Option<crate::event::marker::MarkerSet>,
    /// MCAP channel id -> index into `Archive::channels`.
    channel_map: ChannelMap,
    /// Events per MCAP channel id.
    channel_counts: BTreeMap<u16, u64>,
    pub meta: Option<SegmentMeta>,
    /// Set when the file had no footer: where the readable prefix ends.
    pub truncated_at: Option<u64>,
    pub notes: Vec<String>,
    /// Channel keys by local index (moved into the archive's table when it is assembled).
    keys: Vec<ChannelKey>,
}

impl Segment {
    pub fn name(&self) -> &str {
        self.storage.name()
    }
    pub fn size(&self) -> u64 {
        self.storage.size()
    }
    pub fn events(&self) -> u64 {
        self.chunks.iter().map(|c| c.span.events).sum()
    }
    pub fn first_offset(&self) -> Option<u64> {
        self.chunks.first().map(|c| c.span.first_offset)
    }
    pub fn last_offset(&self) -> Option<u64> {
        self.chunks.last().map(|c| c.span.last_offset())
    }
    pub fn first_commit_ts(&self) -> Option<u64> {
        self.chunks.first().map(|c| c.span.first_commit_ts)
    }
    pub fn last_commit_ts(&self) -> Option<u64> {
        self.chunks.last().map(|c| c.span.last_commit_ts)
    }
    /// Groups of chunks (the unit of a seek: ~512 KiB of events).
    pub fn group_count(&self) -> usize {
        self.chunks.len()
    }
    /// MCAP chunks of events.
    pub fn chunk_count(&self) -> usize {
        self.chunks.iter().map(|c| c.parts.len()).sum()
    }
    /// Bytes of chunk records (compressed) and of the records inside them.
    pub fn chunk_bytes(&self) -> (u64, u64) {
        self.chunks
            .iter()
            .flat_map(|c| &c.parts)
            .fold((0, 0), |(c, u), k| (c + k.length, u + k.uncompressed))
    }
    /// Whether some chunk holds none of the channels `wanted` (by index into the archive's
    /// channel table, through `map`): a read of those channels can then skip it.
    fn skips_for(&self, wanted: &[bool]) -> bool {
        self.chunks
            .iter()
            .flat_map(|c| &c.parts)
            .any(|p| !self.part_wanted(p, wanted))
    }
    /// Whether a read of the channels `wanted` must read this chunk.
    fn part_wanted(&self, part: &ChunkPart, wanted: &[bool]) -> bool {
        part.channels.is_empty()
            || part
                .channels
                .iter()
                .any(|id| self.channel_wanted(*id, wanted))
    }
    fn channel_wanted(&self, id: u16, wanted: &[bool]) -> bool {
        self.channel_map
            .get(&id)
            .is_some_and(|&g| wanted.get(g).copied().unwrap_or(false))
    }
    /// The chain start of this segment (zero for the first segment of an archive).
    pub fn chain_start(&self) -> [u8; 32] {
        self.meta.as_ref().map_or(ZERO_HASH, |m| m.chain_start)
    }
    /// The compression of its chunks ("zstd", "lz4", "" for none), when its summary says.
    pub fn compression(&self) -> Option<&str> {
        self.compression.as_deref()
    }
    /// The state snapshots this file holds.
    pub fn snapshots(&self) -> &[SnapshotLoc] {
        &self.snapshots
    }
    /// Reads the state snapshot at `loc` (a CRC-checked chunk; the state checked against its
    /// hash).
    pub fn read_snapshot(&self, loc: &SnapshotLoc) -> Result<snapshot::Snapshot> {
        let data = read_chunk(self.storage.as_ref(), loc.start, loc.length)?;
        let data = Bytes::from(data);
        let corrupt = |what: String| ArchiveError::Corrupt {
            path: self.name().to_string(),
            at: loc.start,
            what,
        };
        let payload = ChunkMessages::new(&data)
            .next()
            .ok_or_else(|| corrupt("state snapshot chunk holds no message".to_string()))?
            .map_err(|e| corrupt(format!("state snapshot chunk: {}", e.what)))?
            .1;
        let start = payload.as_ptr() as usize - data.as_ptr() as usize;
        let payload = data.slice(start..start + payload.len());
        let snap = snapshot::decode(&payload).map_err(|e| corrupt(e.to_string()))?;
        if snap.through != loc.through {
            return Err(corrupt(format!(
                "state snapshot says offset {}, the archive lists it at {}",
                snap.through, loc.through
            )));
        }
        Ok(snap)
    }
}

/// An event as stored: its scalar fields and the encoded `ArchivedEvent` bytes.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub offset: u64,
    pub commit_ts: u64,
    pub commit_time_ns: Option<u64>,
    /// Index into [`Archive::channels`].
    pub channel: usize,
    pub payload: Bytes,
}

impl RawEvent {
    /// The event (values stay encoded until used).
    pub fn decode(&self) -> std::result::Result<Event, crate::event::ValueError> {
        Event::decode_bytes(&self.payload)
    }

    /// The event, sharing namespace and agent strings with earlier events through `names`.
    pub fn decode_with(
        &self,
        names: &mut crate::event::wire::NameCache,
    ) -> std::result::Result<Event, crate::event::ValueError> {
        crate::event::wire::decode_event(&self.payload, names)
    }
}

struct ArchiveInner {
    name: String,
    /// Shared with the archives a followed one is refreshed into (its complete segments are
    /// not opened again).
    segments: Vec<Arc<Segment>>,
    channels: Vec<ChannelKey>,
    notes: Vec<String>,
    /// Decompressed chunks, shared by every cursor (and every refreshed view of a followed
    /// archive): resolving a position and then reading from it decompresses once, and streams
    /// reading the same chunks decompress them once while they stay in its budget.
    cache: Arc<PartCache>,
}

/// An open archive (one file or a directory of segments). Cheap to clone.
#[derive(Clone)]
pub struct Archive {
    inner: Arc<ArchiveInner>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("name", &self.inner.name)
            .field("segments", &self.inner.segments.len())
            .finish()
    }
}

impl Archive {
    /// Opens a file, a segment directory, or an `s3://` object or segment prefix.
    pub fn open(path: &Path, options: OpenOptions) -> Result<Archive> {
        if let Some(url) = path.to_str().filter(|p| p.starts_with("s3://")) {
            return crate::archive::s3::open(url, options);
        }
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| ArchiveError::io(&name, e))?;
        if meta.is_dir() {
            return crate::archive::segments::open_dir(path, options);
        }
        let file = LocalFile::open(path).map_err(|e| ArchiveError::io(&name, e))?;
        let segment = open_segment(Box::new(file), options)?;
        Archive::from_segments(name, vec![segment])
    }

    /// Opens an archive held in memory (one MCAP file).
    pub fn open_memory(data: &'static [u8], name: &str) -> Result<Archive> {
        let segment = open_segment(
            Box::new(crate::archive::storage::MemoryFile::new(data, name)),
            OpenOptions::default(),
        )?;
        Archive::from_segments(name.to_string(), vec![segment])
    }

    /// Builds an archive from opened segments (in order), checking continuity between them.
    pub fn from_segments(name: String, segments: Vec<Segment>) -> Result<Archive> {
        Archive::assemble(
            None,
            name,
            Vec::new(),
            segments
                .into_iter()
                .map(|s| Slot::Fresh(Box::new(s)))
                .collect(),
        )
    }

    /// Builds an archive from segments in order — some kept from an archive it refreshes
    /// (whose channel table `channels` starts it), some newly opened — checking continuity
    /// between them.
    fn assemble(
        cache: Option<Arc<PartCache>>,
        name: String,
        channels: Vec<ChannelKey>,
        slots: Vec<Slot>,
    ) -> Result<Archive> {
        let mut channels = channels;
        let mut index_of: HashMap<ChannelKey, usize> = channels
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let mut notes = Vec::new();
        let mut segments = Vec::with_capacity(slots.len());
        for slot in slots {
            let mut seg = match slot {
                Slot::Kept(seg) => {
                    segments.push(seg);
                    continue;
                }
                Slot::Fresh(seg) => *seg,
            };
            for n in &seg.notes {
                notes.push(format!("{}: {n}", seg.name()));
            }
            // In channel-id order, so the channel list is the same every time it is opened.
            let mut local: Vec<(u16, usize)> =
                seg.channel_map.iter().map(|(&id, &k)| (id, k)).collect();
            local.sort_unstable();
            let keys = seg.pending_keys();
            for (id, local_idx) in local {
                let key = keys[local_idx].clone();
                let global = *index_of.entry(key.clone()).or_insert_with(|| {
                    channels.push(key);
                    channels.len() - 1
                });
                seg.channel_map.insert(id, global);
            }
            segments.push(Arc::new(seg));
        }
        for pair in segments.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.truncated_at.is_some() {
                return Err(ArchiveError::Truncated {
                    path: a.name().to_string(),
                    at: a.truncated_at.unwrap_or(0),
                    size: a.size(),
                    prefix: format!(" and segment {} follows it", b.name()),
                });
            }
            let (Some(a_last), Some(b_first)) = (a.last_offset(), b.first_offset()) else {
                continue;
            };
            if b_first != a_last + 1 {
                return Err(ArchiveError::ContinuityGap {
                    prev: a.name().to_string(),
                    next: b.name().to_string(),
                    prev_last: a_last,
                    next_first: b_first,
                });
            }
            if let (Some(am), Some(bm)) = (&a.meta, &b.meta)
                && bm.chain_start != am.final_hash
            {
                return Err(ArchiveError::ChainBreak {
                    prev: a.name().to_string(),
                    next: b.name().to_string(),
                    prev_hash: hex(&am.final_hash),
                    next_start: hex(&bm.chain_start),
                });
            }
            if let (Some(a_ts), Some(b_ts)) = (a.last_commit_ts(), b.first_commit_ts())
                && b_ts <= a_ts
            {
                return Err(ArchiveError::OrderBackwards {
                    path: b.name().to_string(),
                    offset: b_first,
                    commit_ts: b_ts,
                    prev_commit_ts: a_ts,
                });
            }
        }
        // The notes are the caller's to show once: `info` and `verify` print them, the other
        // commands log them as warnings.
        Ok(Archive {
            inner: Arc::new(ArchiveInner {
                name,
                segments,
                channels,
                notes,
                cache: cache.unwrap_or_else(|| Arc::new(PartCache::new(DEFAULT_CACHE_BYTES))),
            }),
        })
    }

    /// The archive as its files are now, for a follower (`--follow`): segments that were
    /// complete are kept as they are (a size change is an error: rewritten), the segment that
    /// was still being written is read on from where it ended (only its new chunks are
    /// scanned), new segments are opened (the last one may be unfinished). A segment that
    /// disappeared from the middle or the end, a gap or a chain break between segments is an
    /// error naming the file. An `s3://` archive is listed and opened again.
    pub fn refreshed(&self) -> Result<Archive> {
        let name = self.name().to_string();
        let follow = OpenOptions {
            allow_truncated: true,
        };
        if name.starts_with("s3://") {
            let mut fresh = crate::archive::s3::open(&name, follow)?;
            if let Some(inner) = Arc::get_mut(&mut fresh.inner) {
                // Its segments are new (their chunks are keyed anew); the budget is kept.
                inner.cache = self.inner.cache.clone();
            }
            return Ok(fresh);
        }
        let path = Path::new(&name);
        let meta = std::fs::metadata(path).map_err(|e| ArchiveError::io(&name, e))?;
        let files: Vec<std::path::PathBuf> = if meta.is_dir() {
            crate::archive::segments::list(path)?
                .0
                .into_iter()
                .map(|(_, p)| p)
                .collect()
        } else {
            vec![path.to_path_buf()]
        };
        let old = &self.inner.segments;
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        // Old segments that are gone: only a prefix of them may go (retention).
        if let Some(first_kept) = old.iter().position(|s| names.iter().any(|n| n == s.name())) {
            if let Some(gone) = old[first_kept..]
                .iter()
                .find(|s| !names.iter().any(|n| n == s.name()))
            {
                return Err(ArchiveError::Invalid {
                    path: gone.name().to_string(),
                    message: "deleted while it was followed".to_string(),
                });
            }
        } else if let Some(last) = old.last() {
            // None of the segments read before is there.
            if names.is_empty() {
                return Err(ArchiveError::NotFound {
                    path: last.name().to_string(),
                });
            }
            return Err(ArchiveError::Invalid {
                path: name,
                message: format!(
                    "replaced while it was followed: none of the segments read before is there \
                     (it now starts with {})",
                    names[0]
                ),
            });
        }
        let mut slots = Vec::with_capacity(files.len());
        let last = files.len().saturating_sub(1);
        let by_name: HashMap<&str, &Arc<Segment>> = old.iter().map(|s| (s.name(), s)).collect();
        for (i, (file, seg_name)) in files.iter().zip(&names).enumerate() {
            let known = by_name.get(seg_name.as_str()).copied();
            // A complete segment is only looked at (its size), not opened again.
            if let Some(seg) = known.filter(|s| s.truncated_at.is_none()) {
                let size = std::fs::metadata(file)
                    .map_err(|e| ArchiveError::io(seg_name, e))?
                    .len();
                if size != seg.size() {
                    return Err(ArchiveError::Invalid {
                        path: seg_name.clone(),
                        message: format!(
                            "rewritten while it was followed: it had {} bytes and a summary, now {size}",
                            seg.size()
                        ),
                    });
                }
                slots.push(Slot::Kept(seg.clone()));
                continue;
            }
            let storage = LocalFile::open(file).map_err(|e| ArchiveError::io(seg_name, e))?;
            match known {
                Some(seg) => match continue_segment(Box::new(storage), seg, &self.inner.channels) {
                    Ok(s) => slots.push(Slot::Fresh(Box::new(s))),
                    // A segment with no event yet that its writer (a restarted recorder)
                    // started again: read on a later look.
                    Err(e)
                        if i == last
                            && seg.first_offset().is_none()
                            && crate::archive::segments::just_started(&e) => {}
                    Err(e) => return Err(e),
                },
                None => {
                    let options = OpenOptions {
                        allow_truncated: i == last,
                    };
                    match open_segment(Box::new(storage), options) {
                        Ok(seg) => slots.push(Slot::Fresh(Box::new(seg))),
                        // Just created by its writer: read on a later look.
                        Err(e) if i == last && crate::archive::segments::just_started(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // Kept segments carry the old channel table's indices: the new one extends it.
        Archive::assemble(
            Some(self.inner.cache.clone()),
            name,
            self.inner.channels.clone(),
            slots,
        )
    }

    /// A cursor that continues a read of an earlier view of this archive at `offset` (a chunk
    /// boundary: a writer adds whole chunks), its hash chain going on from `chain_head` and
    /// its commit order from `prev_commit_ts`. At or past the end it has nothing yet.
    pub fn cursor_continuing(
        &self,
        offset: u64,
        chain_head: Option<[u8; 32]>,
        prev_commit_ts: Option<u64>,
        verify_chain: bool,
    ) -> Result<Cursor> {
        let mut cursor = Cursor::empty(self.clone());
        cursor.verify_chain = verify_chain;
        cursor.next_offset = offset;
        cursor.prev_commit_ts = prev_commit_ts;
        if self.last_offset().is_none_or(|l| offset > l) {
            return Ok(cursor);
        }
        let at = self.inner.segments.iter().enumerate().find_map(|(si, s)| {
            s.chunks
                .iter()
                .position(|c| c.span.first_offset == offset)
                .map(|ci| (si, ci))
        });
        match at {
            Some((seg, chunk)) => {
                cursor.seg = seg;
                cursor.chunk = chunk;
                cursor.chain = chain_head;
                Ok(cursor)
            }
            None => {
                let mut c = self.cursor_at_with(offset, verify_chain)?;
                c.prev_commit_ts = prev_commit_ts;
                Ok(c)
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }
    pub fn segments(&self) -> &[Arc<Segment>] {
        &self.inner.segments
    }
    pub fn channels(&self) -> &[ChannelKey] {
        &self.inner.channels
    }
    /// Things the reader had to work around (rebuilt index, truncated prefix …).
    pub fn notes(&self) -> &[String] {
        &self.inner.notes
    }

    /// Where the events' wall times came from, when they were taken from the values.
    pub fn time_source(&self) -> Option<&str> {
        self.inner
            .segments
            .first()
            .and_then(|s| s.meta.as_ref())
            .and_then(|m| m.time_source.as_deref())
    }

    /// Logs the notes as warnings (for commands whose output does not show them).
    pub fn log_notes(&self) {
        for n in &self.inner.notes {
            tracing::warn!("{n}");
        }
    }

    /// The notes of an archive opened to be followed: a last file without its summary is the
    /// one being written, which is expected (logged as information, not as a warning).
    pub fn log_notes_following(&self) {
        let last = self.inner.segments.last().map(|s| s.name().to_string());
        for n in &self.inner.notes {
            match &last {
                Some(l) if n.starts_with(l.as_str()) && n.contains("truncated at byte") => {
                    tracing::info!(
                        "{l}: still being written; following it from its last complete chunk ({n})"
                    );
                }
                _ => tracing::warn!("{n}"),
            }
        }
    }
    pub fn events(&self) -> u64 {
        self.inner.segments.iter().map(|s| s.events()).sum()
    }
    pub fn first_offset(&self) -> Option<u64> {
        self.inner.segments.iter().find_map(|s| s.first_offset())
    }
    pub fn last_offset(&self) -> Option<u64> {
        self.inner
            .segments
            .iter()
            .rev()
            .find_map(|s| s.last_offset())
    }
    pub fn first_commit_ts(&self) -> Option<u64> {
        self.inner.segments.iter().find_map(|s| s.first_commit_ts())
    }
    pub fn last_commit_ts(&self) -> Option<u64> {
        self.inner
            .segments
            .iter()
            .rev()
            .find_map(|s| s.last_commit_ts())
    }
    pub fn first_time_ns(&self) -> Option<u64> {
        self.spans().find_map(|s| s.first_time_ns)
    }
    pub fn last_time_ns(&self) -> Option<u64> {
        let mut last = None;
        for s in self.spans() {
            if s.last_time_ns.is_some() {
                last = s.last_time_ns;
            }
        }
        last
    }
    /// The stored final hash of the whole chain (the last segment's), if recorded.
    pub fn recorded_final_hash(&self) -> Option<[u8; 32]> {
        let last = self.inner.segments.last()?;
        if last.truncated_at.is_some() {
            return None;
        }
        last.meta.as_ref().map(|m| m.final_hash)
    }
    /// Events per channel (indexed like [`Archive::channels`]).
    pub fn channel_counts(&self) -> Vec<u64> {
        let mut counts = vec![0; self.inner.channels.len()];
        for seg in &self.inner.segments {
            for (id, n) in &seg.channel_counts {
                if let Some(&g) = seg.channel_map.get(id) {
                    counts[g] += n;
                }
            }
        }
        counts
    }
    /// The markers the archive's files hold (a later file's replace an earlier one's of the
    /// same name).
    pub fn markers(&self) -> crate::event::marker::MarkerSet {
        self.inner
            .segments
            .iter()
            .filter_map(|s| s.markers.as_ref())
            .fold(Default::default(), |all, m| all.merged(m))
    }

    /// The state snapshots of every segment, in offset order: (segment index, where).
    pub fn snapshots(&self) -> Vec<(usize, SnapshotLoc)> {
        self.inner
            .segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.snapshots.iter().map(move |l| (i, *l)))
            .collect()
    }

    /// The state after the event at the latest snapshot at or before `offset` (`None` when no
    /// snapshot is that early). Reads one chunk; its state is checked against its hash.
    pub fn snapshot_at_or_before(&self, offset: u64) -> Result<Option<snapshot::Snapshot>> {
        let found = self.inner.segments.iter().rev().find_map(|s| {
            s.snapshots
                .iter()
                .rev()
                .find(|l| l.through <= offset)
                .map(|l| (s, *l))
        });
        let Some((seg, loc)) = found else {
            return Ok(None);
        };
        let snap = seg.read_snapshot(&loc)?;
        // A snapshot folded from a later start than the archive's would miss keys.
        let first = self.first_offset().unwrap_or(0);
        if snap.first_offset > first {
            return Err(ArchiveError::Corrupt {
                path: seg.name().to_string(),
                at: loc.start,
                what: format!(
                    "state snapshot at offset {} was folded from offset {}, after the archive's first event ({first})",
                    snap.through, snap.first_offset
                ),
            });
        }
        Ok(Some(snap))
    }

    /// The state after the event at `last`, for a writer that continues this archive (a
    /// restarted recorder): from the latest snapshot before it and the events after it, or
    /// folded from the first event when the archive starts its history. `None` when neither
    /// can be known (earlier segments are gone and none of the rest holds a snapshot).
    pub fn state_through(&self, last: u64) -> Result<Option<snapshot::StateCarry>> {
        let first = self.first_offset().unwrap_or(0);
        let starts_history = self
            .inner
            .segments
            .first()
            .is_some_and(|s| s.chain_start() == ZERO_HASH);
        let (mut state, from, fold_first) = match self.snapshot_at_or_before(last)? {
            Some(s) => (s.state, s.through + 1, s.first_offset),
            None if starts_history => (crate::state::KvState::new(), first, first),
            None => return Ok(None),
        };
        if from <= last {
            let mut cursor = self.cursor_at(from)?.until(Some(last));
            while let Some(e) = cursor.next_event() {
                state.apply(&e?);
            }
        }
        Ok(Some(snapshot::StateCarry::at(state, fold_first)))
    }

    pub fn channel_index(&self, namespace: &str, agent_id: &str) -> Option<usize> {
        self.inner
            .channels
            .iter()
            .position(|c| c.namespace == namespace && c.agent_id == agent_id)
    }

    fn spans(&self) -> impl Iterator<Item = &ChunkSpan> {
        self.inner
            .segments
            .iter()
            .flat_map(|s| s.chunks.iter().map(|c| &c.span))
    }

    fn range_text(&self) -> String {
        match (self.first_offset(), self.last_offset()) {
            (Some(a), Some(b)) => {
                let mut s = format!(
                    "offsets {a} to {b}, commit_ts @{} to @{}",
                    self.first_commit_ts().unwrap_or(0),
                    self.last_commit_ts().unwrap_or(0)
                );
                if let (Some(t0), Some(t1)) = (self.first_time_ns(), self.last_time_ns()) {
                    s.push_str(&format!(
                        ", time {} to {}",
                        format_time_ns(t0),
                        format_time_ns(t1)
                    ));
                }
                s
            }
            _ => "the archive is empty".to_string(),
        }
    }

    fn out_of_range(&self, target: &str) -> ArchiveError {
        ArchiveError::OutOfRange {
            path: self.inner.name.clone(),
            target: target.to_string(),
            range: self.range_text(),
        }
    }

    /// The offset of the first event at or after `pos` (for `--from`).
    pub fn resolve_from(&self, pos: Position) -> Result<u64> {
        let text = pos.to_string();
        self.locate(pos, false)?
            .ok_or_else(|| self.out_of_range(&text))
    }

    /// The offset of the last event at or before `pos` (for inclusive `--until`); `None` when
    /// `pos` is before the first event.
    pub fn resolve_until(&self, pos: Position) -> Result<Option<u64>> {
        self.locate(pos, true)
    }

    /// The first offset of the group of chunks holding the first event with a commit_ts at or
    /// above `ts` (from the index alone; `None` when every event is before it).
    pub fn group_start_for_commit_ts(&self, ts: u64) -> Option<u64> {
        let segs = &self.inner.segments;
        let seg = segs
            .iter()
            .find(|s| s.last_commit_ts().is_some_and(|l| l >= ts))?;
        let i = seg.chunks.partition_point(|c| c.span.last_commit_ts < ts);
        seg.chunks.get(i).map(|c| c.span.first_offset)
    }

    /// An offset no event with commit_ts <= `ts` lies after: the last offset of the chunk that
    /// holds the first event at or after `ts`, from the index alone (no chunk is read). For a
    /// reader that stops on the commit_ts itself and must not read ahead past the range.
    pub fn commit_ts_upper_bound(&self, ts: u64) -> Option<u64> {
        self.spans()
            .find(|s| s.last_commit_ts >= ts)
            .map(|s| s.last_offset())
            .or(self.last_offset())
    }

    /// Finds the first event >= pos (or, with `at_or_before`, the last event <= pos).
    fn locate(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>> {
        let (Some(first), Some(last)) = (self.first_offset(), self.last_offset()) else {
            return Ok(None);
        };
        match pos {
            Position::Offset(o) => {
                if at_or_before {
                    return Ok((o >= first).then(|| o.min(last)));
                }
                if o < first || o > last {
                    return Err(self.out_of_range(&pos.to_string()));
                }
                Ok(Some(o))
            }
            Position::CommitTs(t) => {
                self.locate_by(t, at_or_before, |s| s.last_commit_ts, |h| Some(h.commit_ts))
            }
            Position::Time(t) => {
                if self.first_time_ns().is_none() {
                    return Err(ArchiveError::Invalid {
                        path: self.inner.name.clone(),
                        message: format!(
                            "cannot seek to {pos}: the archive has no wall-clock commit times \
                             (seek by offset or @commit_ts)"
                        ),
                    });
                }
                self.locate_by(
                    t,
                    at_or_before,
                    |s| s.last_time_ns.unwrap_or(0),
                    |h| h.commit_time_ns,
                )
            }
            Position::Marker(name) => Err(ArchiveError::Invalid {
                path: self.inner.name.clone(),
                message: format!("mark:{name}: markers are resolved by the source that holds them"),
            }),
        }
    }

    /// Binary search over chunks by a monotone key, then a scan of one chunk.
    fn locate_by(
        &self,
        target: u64,
        at_or_before: bool,
        chunk_last: impl Fn(&ChunkSpan) -> u64,
        event_key: impl Fn(&EventHead) -> Option<u64>,
    ) -> Result<Option<u64>> {
        // Flattened (segment, chunk) list is small (one entry per ~512 KiB), so a linear
        // partition over segments then a binary search inside one is enough.
        let segs = &self.inner.segments;
        let seg_idx = segs.partition_point(|s| {
            s.chunks
                .last()
                .is_some_and(|c| chunk_last(&c.span) < target)
        });
        if seg_idx == segs.len() {
            // Every event is before the target.
            // (The caller names the position as the user wrote it.)
            return Ok(if at_or_before {
                self.last_offset()
            } else {
                None
            });
        }
        let seg = &segs[seg_idx];
        let chunk_idx = seg.chunks.partition_point(|c| chunk_last(&c.span) < target);
        let data = self.group_data(seg_idx, chunk_idx, None, false)?;
        let loc = &seg.chunks[chunk_idx];
        let parsed = ParsedChunk::parse(seg, data, None, None, false);
        if let Some(e) = &parsed.error {
            return Err(e.error(seg));
        }
        let mut offset = loc.span.first_offset;
        for m in &parsed.messages {
            let head = m.head;
            if head.offset != offset {
                return Err(ArchiveError::OffsetGap {
                    path: seg.name().to_string(),
                    at: loc.start,
                    expected: offset,
                    found: head.offset,
                });
            }
            if event_key(&head).is_some_and(|k| k >= target) {
                if at_or_before && event_key(&head) != Some(target) {
                    // The event found is after the target: the answer is the one before it.
                    return Ok(offset
                        .checked_sub(1)
                        .filter(|o| self.first_offset().is_some_and(|f| *o >= f)));
                }
                return Ok(Some(offset));
            }
            offset += 1;
        }
        // Events without the key (no wall time) at the end of the chunk: next chunk's first.
        Ok(if at_or_before {
            Some(offset - 1)
        } else if offset <= self.last_offset().unwrap_or(0) {
            Some(offset)
        } else {
            None
        })
    }

    /// The decompressed chunks of a group that a read of `only`'s channels needs (all of them
    /// without `only`), through the archive's cache; with `check`, each checked against the
    /// hash the index records for it.
    fn group_data(
        &self,
        seg_idx: usize,
        chunk_idx: usize,
        only: Option<&[bool]>,
        check: bool,
    ) -> Result<PartsData> {
        let seg = &self.inner.segments[seg_idx];
        read_parts(
            seg,
            &seg.chunks[chunk_idx],
            only,
            check,
            &self.inner.cache,
            true,
        )
    }

    /// Sets how many bytes of decompressed chunks the archive keeps for its readers (shared by
    /// all of them), at least [`DEFAULT_CACHE_BYTES`] (a seek and the read after it).
    pub fn set_cache_budget(&self, bytes: u64) {
        self.inner.cache.set_budget(bytes.max(DEFAULT_CACHE_BYTES));
    }

    /// What the cache of decompressed chunks holds and has served.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// A cursor positioned at `offset` (which must be inside the archive).
    /// A cursor at `offset`, checking the hash chain (see [`Archive::cursor_at_with`]).
    pub fn cursor_at(&self, offset: u64) -> Result<Cursor> {
        self.cursor_at_with(offset, true)
    }

    /// A cursor at `offset`; `verify_chain` decides whether the chain is checked from the first
    /// chunk on (CRCs are always checked).
    pub fn cursor_at_with(&self, offset: u64, verify_chain: bool) -> Result<Cursor> {
        self.cursor_from(offset, verify_chain, None)
    }

    /// Whether a read of the channels `wanted` (by index into [`Archive::channels`]) can skip
    /// chunks: the archive stores some of its events in chunks without them.
    pub fn reads_less_for(&self, wanted: &[bool]) -> bool {
        self.inner.segments.iter().any(|s| s.skips_for(wanted))
    }

    /// Whether the index records every chunk's hash (format version 2), so that a read of some
    /// channels can check what it reads without the chain.
    pub fn has_chunk_hashes(&self) -> bool {
        self.inner
            .segments
            .iter()
            .flat_map(|s| &s.chunks)
            .flat_map(|c| &c.parts)
            .all(|p| p.hash.is_some())
    }

    /// How many events apart the index records chain heads inside every group (index version
    /// 3; a seek checks the chain from the one before it), `None` where it records them per
    /// group only.
    pub fn chain_heads_every(&self) -> Option<u32> {
        let mut groups = self
            .inner
            .segments
            .iter()
            .flat_map(|s| &s.chunks)
            .peekable();
        groups.peek()?;
        groups
            .map(|c| Some(c.checkpoints.every).filter(|e| *e > 0))
            .try_fold(u32::MAX, |every, e| Some(every.min(e?)))
    }

    /// How many channels (by index into [`Archive::channels`]) have chunks of their own
    /// somewhere in the archive, if its index records where each chunk's events are
    /// (format version 2); `None` for archives whose every chunk holds every agent.
    pub fn channels_with_own_chunks(&self) -> Option<usize> {
        if !self.has_chunk_hashes() || self.inner.segments.is_empty() {
            return None;
        }
        let mut own = vec![false; self.inner.channels.len()];
        for seg in &self.inner.segments {
            for part in seg.chunks.iter().flat_map(|c| &c.parts) {
                if let ([id], true) = (&part.channels[..], part.own)
                    && let Some(&g) = seg.channel_map.get(id)
                    && let Some(o) = own.get_mut(g)
                {
                    *o = true;
                }
            }
        }
        Some(own.iter().filter(|o| **o).count())
    }

    /// A cursor at `offset` returning the events of the channels `wanted` (all without it),
    /// reading as little as the archive allows: only the chunks that hold them when it stores
    /// them apart and can check those chunks alone (their hashes in the index) or `verify` is
    /// off; otherwise every chunk, the chain checked with `verify`.
    pub fn cursor_for(
        &self,
        offset: u64,
        verify: bool,
        wanted: Option<Vec<bool>>,
    ) -> Result<Cursor> {
        match wanted {
            // Every channel: no filter (an archive of one agent read for that agent).
            Some(w) if w.iter().all(|wanted| *wanted) => self.cursor_from(offset, verify, None),
            Some(w) if self.reads_less_for(&w) && (self.has_chunk_hashes() || !verify) => {
                self.cursor_at_only(offset, w, verify)
            }
            Some(w) => {
                let mut c = self.cursor_from(offset, verify, None)?;
                c.deliver = Some(w);
                Ok(c)
            }
            None => self.cursor_from(offset, verify, None),
        }
    }

    /// A cursor at `offset` that returns the events of the channels `wanted` alone (by index
    /// into [`Archive::channels`]) and reads only the chunks that hold them. The hash chain
    /// runs over every channel's events, so it is not run; with `check`, each chunk read is
    /// checked against the hash the index records for it (CRCs are always checked). Offsets go
    /// up with gaps.
    pub fn cursor_at_only(&self, offset: u64, wanted: Vec<bool>, check: bool) -> Result<Cursor> {
        self.cursor_from(offset, check, Some(Arc::new(wanted)))
    }

    /// A cursor at `offset`; with `only`, `verify` checks chunk hashes instead of the chain.
    fn cursor_from(
        &self,
        offset: u64,
        verify: bool,
        only: Option<Arc<Vec<bool>>>,
    ) -> Result<Cursor> {
        let segs = &self.inner.segments;
        let seg_idx = segs.partition_point(|s| s.last_offset().is_some_and(|l| l < offset));
        let Some(seg) = segs
            .get(seg_idx)
            .filter(|s| s.first_offset().is_some_and(|f| f <= offset))
        else {
            return Err(self.out_of_range(&format!("offset {offset}")));
        };
        let chunk_idx = seg
            .chunks
            .partition_point(|c| c.span.last_offset() < offset);
        let mut cursor = Cursor::empty(self.clone());
        cursor.verify_chain = verify && only.is_none();
        cursor.check_chunks = verify && only.is_some();
        cursor.only = only;
        cursor.seg = seg_idx;
        cursor.chunk = chunk_idx;
        cursor.next_offset = seg.chunks[chunk_idx].span.first_offset;
        cursor.load_chunk()?;
        if cursor.only.is_some() {
            // Only some events of the group: the first at or after the offset.
            if let Some(c) = cursor.current.as_mut() {
                c.next = c.chunk.messages.partition_point(|m| m.head.offset < offset);
                // The group's events before the start are not returned.
                c.chunk.dense &= c.next == 0;
                cursor.prev_commit_ts = c
                    .next
                    .checked_sub(1)
                    .map(|i| c.chunk.messages[i].head.commit_ts);
            }
            cursor.next_offset = offset;
            return Ok(cursor);
        }
        // Skip to the offset inside the chunk: straight to it when the group holds its events
        // in order (the ones before it are not returned, so only the one right before matters
        // for commit order), else through the events before, which says what is wrong.
        let skip = offset - seg.chunks[chunk_idx].span.first_offset;
        if let Some(c) = cursor.current.as_mut()
            && let Ok(at) = usize::try_from(skip)
            && c.chunk
                .messages
                .get(at)
                .is_some_and(|m| m.head.offset == offset)
        {
            c.next = at;
            // The event before is checked with the start's window only if it is in it (it is
            // not returned either way).
            let every = seg.chunks[chunk_idx].checkpoints.every as usize;
            cursor.prev_commit_ts = at
                .checked_sub(1)
                .filter(|before| !c.chunk.windowed || before / every == at / every)
                .map(|i| c.chunk.messages[i].head.commit_ts);
            cursor.next_offset = offset;
            // The group's events before the start are not returned.
            c.chunk.dense &= at == 0;
            if c.chunk.windowed {
                // Now, so that the chain head before the start is known before any event.
                cursor.check_window()?;
            }
            return Ok(cursor);
        }
        if skip > 0 {
            cursor.pass_over();
        }
        for _ in 0..skip {
            match cursor.next_raw() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(cursor)
    }

    /// A cursor at the first event.
    pub fn cursor(&self) -> Result<Cursor> {
        match self.first_offset() {
            Some(first) => self.cursor_at(first),
            None => Ok(Cursor::empty(self.clone())),
        }
    }
}

/// Reads `length` bytes at `start` (one or more chunk records).
fn read_records(storage: &dyn RangeRead, start: u64, length: u64) -> Result<Vec<u8>> {
    let len = usize::try_from(length)
        .ok()
        .filter(|l| *l as u64 <= format::MAX_CHUNK_UNCOMPRESSED)
        .ok_or_else(|| ArchiveError::Corrupt {
            path: storage.name().to_string(),
            at: start,
            what: format!("chunk length {length} is implausible"),
        })?;
    storage
        .read_range(start, len)
        .map_err(|e| ArchiveError::Corrupt {
            path: storage.name().to_string(),
            at: start,
            what: format!("chunk cannot be read: {e}"),
        })
}

/// Reads the chunk record at `start` and returns its decompressed records.
pub(crate) fn read_chunk(storage: &dyn RangeRead, start: u64, length: u64) -> Result<Vec<u8>> {
    let record = read_records(storage, start, length)?;
    decode_chunk(storage.name(), start, &record)
}

/// The decompressed records of the chunk record `record` (read from `start`).
fn decode_chunk(name: &str, start: u64, record: &[u8]) -> Result<Vec<u8>> {
    let name = name.to_string();
    let body = record
        .get(format::RECORD_PREFIX as usize..)
        .filter(|_| record.first() == Some(&op::CHUNK))
        .ok_or_else(|| ArchiveError::Corrupt {
            path: name.clone(),
            at: start,
            what: "expected a chunk record".to_string(),
        })?;
    let chunk = format::parse_chunk(body).map_err(|e| ArchiveError::Corrupt {
        path: name.clone(),
        at: start,
        what: e.what,
    })?;
    format::decompress(&chunk).map_err(|e| match e {
        ChunkError::Crc { expected, actual } => ArchiveError::Crc {
            path: name.clone(),
            at: start,
            expected,
            actual,
        },
        ChunkError::Format(what) => ArchiveError::Corrupt {
            path: name.clone(),
            at: start,
            what,
        },
    })
}

/// The message records of a decompressed chunk: `(channel id, payload, position)`; other
/// records (schemas, channels) are passed over.
pub(crate) struct ChunkMessages<'a> {
    records: Records<'a>,
}

impl<'a> ChunkMessages<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ChunkMessages {
            records: Records::new(data),
        }
    }
}

impl<'a> Iterator for ChunkMessages<'a> {
    type Item = std::result::Result<(u16, &'a [u8], usize), format::FormatError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (opcode, body, at) = match self.records.next()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            if opcode != op::MESSAGE {
                continue;
            }
            return Some(match format::parse_message_header(body) {
                Some(h) => Ok((h.channel_id, &body[format::MESSAGE_HEADER_LEN..], at)),
                None => Err(format::FormatError {
                    at: at as u64,
                    what: "short message record".to_string(),
                }),
            });
        }
    }
}

/// The decompressed chunks of a group, by its parts (`None`: not read).
type PartsData = Vec<Option<PartData>>;

/// A decompressed chunk and where its messages are in it.
#[derive(Clone)]
pub(crate) struct PartData {
    pub bytes: Bytes,
    pub index: Arc<PartIndex>,
}

/// The messages of a decompressed chunk, located and their heads read (in the chunk's order;
/// `part` is 0), and what stops a read in it. Kept with the chunk in the cache, so a chunk read
/// again is not walked again.
pub(crate) struct PartIndex {
    messages: Vec<MessageEntry>,
    /// In chunk order; usually none.
    stops: Vec<PartStop>,
}

/// Where a read of a chunk stops: a record that does not parse stops every read (and the walk);
/// an event that does not decode stops the reads that want its channel, the others go past it.
struct PartStop {
    /// Messages of the chunk before it.
    before: usize,
    /// The channel of the event it is about; `None` for a record that does not parse.
    channel: Option<u16>,
    error: PartError,
}

#[cfg(test)]
impl PartData {
    /// Bytes with no message in them (the cache's tests).
    pub fn unindexed(bytes: Bytes) -> PartData {
        PartData {
            bytes,
            index: Arc::new(PartIndex {
                messages: Vec::new(),
                stops: Vec::new(),
            }),
        }
    }
}

impl PartIndex {
    /// What the cache counts for it beside the chunk's bytes.
    pub fn size(&self) -> usize {
        self.messages.capacity() * std::mem::size_of::<MessageEntry>()
    }
}

/// Walks a decompressed chunk once: locates its messages and reads their heads; with `check`,
/// also checks its events against the hash the index records for it (and that they are of the
/// channels the index lists for it) — a chunk that fails is an error, nothing of it delivered.
fn index_part(seg: &Segment, part: &ChunkPart, data: &[u8], check: bool) -> Result<PartIndex> {
    let expected = part.hash.filter(|_| check);
    let mut hash = expected.map(|_| ChunkHasher::with_capacity(data.len()));
    let mut messages = Vec::with_capacity(data.len() / 256);
    let mut stops = Vec::new();
    for item in ChunkMessages::new(data) {
        let (channel_id, payload, at) = match item {
            Ok(m) => m,
            Err(e) => {
                let error = PartError {
                    chunk_start: part.start,
                    at: e.at,
                    what: e.what,
                };
                if hash.is_some() {
                    return Err(error.error(seg));
                }
                stops.push(PartStop {
                    before: messages.len(),
                    channel: None,
                    error,
                });
                break;
            }
        };
        if let Some(hash) = hash.as_mut() {
            if !part.channels.is_empty() && !part.channels.contains(&channel_id) {
                // The index says which agents the chunk holds; a one-agent read trusts it to
                // skip the others' chunks.
                return Err(ArchiveError::Corrupt {
                    path: seg.name().to_string(),
                    at: part.start,
                    what: format!(
                        "a message of channel {channel_id} (record at byte {at} of the chunk) in \
                         a chunk the index lists for other channels"
                    ),
                });
            }
            hash.push(payload);
        }
        let Some(head) = event_head(payload) else {
            stops.push(PartStop {
                before: messages.len(),
                channel: Some(channel_id),
                error: PartError {
                    chunk_start: part.start,
                    at: at as u64,
                    what: "malformed ArchivedEvent".to_string(),
                },
            });
            continue;
        };
        let start = at + format::RECORD_PREFIX as usize + format::MESSAGE_HEADER_LEN;
        messages.push(MessageEntry {
            start: start as u32,
            len: payload.len() as u32,
            channel_id,
            part: 0,
            head,
        });
    }
    if let (Some(expected), Some(hash)) = (expected, hash) {
        let actual = hash.finish();
        if actual != expected {
            return Err(ArchiveError::HashMismatch {
                path: seg.name().to_string(),
                context: format!(
                    " in the chunk at byte {} (its events checked against the chunk hash the \
                     index records), nothing of it delivered",
                    part.start
                ),
                expected: hex(&expected),
                actual: hex(&actual),
            });
        }
    }
    Ok(PartIndex { messages, stops })
}

/// One message of a decompressed chunk: which chunk of its group, where its payload is there,
/// and its scalar fields.
#[derive(Debug, Clone, Copy)]
struct MessageEntry {
    start: u32,
    len: u32,
    channel_id: u16,
    part: u32,
    head: EventHead,
}

/// What stopped the parse of one chunk of a group.
#[derive(Debug, Clone)]
struct PartError {
    /// File position of the chunk record.
    chunk_start: u64,
    /// Position inside its records.
    at: u64,
    what: String,
}

impl PartError {
    fn error(&self, seg: &Segment) -> ArchiveError {
        ArchiveError::Corrupt {
            path: seg.name().to_string(),
            at: self.chunk_start,
            what: format!(
                "malformed record inside chunk (at byte {} of its records): {}",
                self.at, self.what
            ),
        }
    }
}

/// The chain over the events `offsets` (first, last) of the group `loc` does not end in the head
/// the archive recorded (`against` says which); `nothing_of` says what is withheld ("it": the
/// group, "them": those events).
fn chain_mismatch(
    seg: &Segment,
    loc: &ChunkLoc,
    offsets: (u64, u64),
    against: &str,
    nothing_of: &str,
    expected: &[u8; 32],
    actual: &[u8; 32],
) -> ArchiveError {
    ArchiveError::HashMismatch {
        path: seg.name().to_string(),
        context: format!(
            " in the chunk at byte {} (offsets {} to {}; checked against {against}), nothing of \
             {nothing_of} delivered",
            loc.start, offsets.0, offsets.1
        ),
        expected: hex(expected),
        actual: hex(actual),
    }
}

/// A group's decompressed chunks with their messages located, their heads read and put in
/// offset order (done on the read-ahead thread for sequential reads, so the decoding thread
/// only decodes).
struct ParsedChunk {
    data: PartsData,
    messages: Vec<MessageEntry>,
    /// What stopped the parse before the end of a chunk, if anything: returned after the
    /// messages before it.
    error: Option<PartError>,
    /// The chain head before the group's first event, when known.
    chain_before: Option<[u8; 32]>,
    /// The chain head after the group's last event, when known.
    chain_after: Option<[u8; 32]>,
    /// The chain head after each message from `heads_from` on, as far as the chain was run
    /// (the read-ahead thread runs it over the whole group; kept, a consumer knows the head
    /// after any event it delivers).
    heads: Vec<[u8; 32]>,
    heads_from: usize,
    /// The chain head before message `heads_from`.
    heads_start: Option<[u8; 32]>,
    /// The chain is run and checked a checkpoint window at a time as the cursor reaches it (a
    /// seek into a group whose index records checkpoints), not over the whole group at once.
    windowed: bool,
    /// Every message of the chunks read is one the read wants (none of another agent's passed
    /// over): a slice of them keeps nothing else alive.
    dense: bool,
}

impl ParsedChunk {
    /// The messages of the chunks read (with `only`, of those channels alone) in offset order;
    /// with `hash`, also runs the chain over the payloads when the chain head before the group
    /// is known.
    fn parse(
        seg: &Segment,
        data: PartsData,
        only: Option<&[bool]>,
        chain_before: Option<[u8; 32]>,
        hash: bool,
    ) -> ParsedChunk {
        let total: usize = data.iter().flatten().map(|d| d.index.messages.len()).sum();
        let mut messages = Vec::with_capacity(total);
        let mut error = None;
        // Wanted MCAP channel ids, by id.
        let local: Option<Vec<bool>> = only.map(|w| {
            let max = seg.channel_map.keys().copied().max().unwrap_or(0) as usize;
            (0..=max)
                .map(|id| seg.channel_wanted(id as u16, w))
                .collect()
        });
        let wanted = |channel: u16| {
            local
                .as_ref()
                .is_none_or(|l| l.get(channel as usize).copied().unwrap_or(false))
        };
        let mut parts_read = 0;
        for (i, d) in data.iter().enumerate() {
            let Some(d) = d else { continue };
            parts_read += 1;
            let part = i as u32;
            // The first stop this read meets: a record that does not parse, or an event of a
            // wanted channel that does not decode (another agent's is passed over, as before).
            let stop = d.index.stops.iter().find(|s| s.channel.is_none_or(wanted));
            let end = stop.map_or(d.index.messages.len(), |s| s.before);
            messages.extend(
                d.index.messages[..end]
                    .iter()
                    .filter(|m| wanted(m.channel_id))
                    .map(|m| MessageEntry { part, ..*m }),
            );
            if let Some(s) = stop {
                error = Some(s.error.clone());
                break;
            }
        }
        if parts_read > 1 {
            // Each chunk is in offset order: a merge of sorted runs.
            messages.sort_by_key(|m| m.head.offset);
        }
        let dense = error.is_none() && messages.len() == total;
        let mut parsed = ParsedChunk {
            data,
            messages,
            error,
            chain_before,
            chain_after: None,
            heads: Vec::new(),
            heads_from: 0,
            heads_start: chain_before,
            windowed: false,
            dense,
        };
        if hash && let Some(before) = chain_before {
            parsed.hash_from(before);
        }
        parsed
    }

    /// The stored bytes of a message.
    fn bytes(&self, m: &MessageEntry) -> &[u8] {
        let data = &self.data[m.part as usize]
            .as_ref()
            .expect("messages are of chunks read")
            .bytes;
        &data[m.start as usize..m.start as usize + m.len as usize]
    }

    /// Runs the chain over the messages from `before`: the head after each, and after the group
    /// (unless a chunk did not parse to its end).
    fn hash_from(&mut self, before: [u8; 32]) {
        self.chain_before = Some(before);
        let head = self.hash_range(0, self.messages.len(), before);
        self.chain_after = self.error.is_none().then_some(head);
    }

    /// Runs the chain over messages `from..to` from `before` (the head before message `from`),
    /// recording the head after each (going on from the heads recorded, or starting over at
    /// `from`); returns the head after the last.
    fn hash_range(&mut self, from: usize, to: usize, before: [u8; 32]) -> [u8; 32] {
        if self.hashed_to() != from || self.heads.is_empty() {
            self.heads.clear();
            self.heads_from = from;
            self.heads_start = Some(before);
        }
        self.heads.reserve(to.saturating_sub(from));
        let mut chain = HashChain::starting_at(before);
        for i in from..to {
            chain.push(self.bytes(&self.messages[i]));
            self.heads.push(chain.head());
        }
        chain.head()
    }

    /// The first message whose chain head is not known.
    fn hashed_to(&self) -> usize {
        self.heads_from + self.heads.len()
    }

    /// The chain head after the first `n` messages, when known.
    fn head_after(&self, n: usize) -> Option<[u8; 32]> {
        if n == self.heads_from {
            return self.heads_start;
        }
        if n == 0 {
            return self.chain_before;
        }
        // Not hashed (verification off): unknown, rather than re-hashing the prefix per call.
        n.checked_sub(self.heads_from + 1)
            .and_then(|i| self.heads.get(i))
            .copied()
    }

    fn payload(&self, i: usize) -> Bytes {
        let m = &self.messages[i];
        self.data[m.part as usize]
            .as_ref()
            .expect("messages are of chunks read")
            .bytes
            .slice(m.start as usize..m.start as usize + m.len as usize)
    }
}

/// A chunk being read by a cursor.
struct LoadedChunk {
    chunk: ParsedChunk,
    /// Index of the next message.
    next: usize,
}

/// Reads events in offset order from a position to the end (or to an inclusive limit), checking
/// offsets, commit order and the hash chain at every chunk boundary where the chain is known.
/// Sequential reads decompress and hash the following chunks on a read-ahead thread.
pub struct Cursor {
    archive: Archive,
    seg: usize,
    chunk: usize,
    current: Option<LoadedChunk>,
    prefetch: Option<Prefetch>,
    next_offset: u64,
    until: Option<u64>,
    prev_commit_ts: Option<u64>,
    /// The chain head after the last completed chunk (when known).
    chain: Option<[u8; 32]>,
    verified_through: Option<(u64, [u8; 32])>,
    /// Check the hash chain at every chunk boundary (CRCs are always checked).
    verify_chain: bool,
    /// Read only these channels' events and chunks (by index into the archive's channels).
    only: Option<Arc<Vec<bool>>>,
    /// Reading only some channels: check each chunk read against its recorded hash.
    check_chunks: bool,
    /// Reading every chunk, return only these channels' events.
    deliver: Option<Vec<bool>>,
    failed: bool,
    names: crate::event::wire::NameCache,
}

impl Cursor {
    fn empty(archive: Archive) -> Cursor {
        Cursor {
            seg: archive.inner.segments.len(),
            archive,
            chunk: 0,
            current: None,
            prefetch: None,
            next_offset: 0,
            until: None,
            prev_commit_ts: None,
            chain: None,
            verified_through: None,
            verify_chain: true,
            only: None,
            check_chunks: false,
            deliver: None,
            failed: false,
            names: Default::default(),
        }
    }

    /// Whether to check the hash chain at every chunk boundary (on by default). Off, a
    /// sequential read saves hashing every payload; chunk CRCs are still checked, and
    /// `chain_head` still answers (from the index).
    pub fn verify_chain(mut self, on: bool) -> Cursor {
        self.verify_chain = on;
        self
    }

    /// Also checks every chunk read against the hash the index records for it (format 2), as
    /// one-agent reads do: `verify` checks both the chain and the hashes one-agent reads trust.
    pub fn check_chunk_hashes(mut self, on: bool) -> Result<Cursor> {
        self.check_chunks = on;
        // The group a seek loaded already: checked now, before any of its events is returned.
        if let (true, Some(current)) = (on, &self.current) {
            let seg = &self.archive.inner.segments[self.seg];
            for (part, d) in seg.chunks[self.chunk].parts.iter().zip(&current.chunk.data) {
                if let Some(d) = d {
                    check_part(seg, part, &d.bytes)?;
                }
            }
        }
        Ok(self)
    }

    /// Stops after this offset (inclusive).
    pub fn until(mut self, last: Option<u64>) -> Cursor {
        self.until = last;
        let seg = self.archive.inner.segments.get(self.seg);
        let loc = seg.and_then(|s| s.chunks.get(self.chunk));
        if let (Some(loc), Some(c)) = (loc, self.current.as_mut())
            && last.is_some_and(|u| u < loc.span.last_offset())
        {
            // Its events after the last one are not returned.
            c.chunk.dense = false;
        }
        self
    }

    /// The offset the next event will have.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The commit_ts of the last event returned.
    pub fn prev_commit_ts(&self) -> Option<u64> {
        self.prev_commit_ts
    }

    /// True when the cursor has nothing more to return (end of archive or past `until`).
    pub fn until_reached(&self) -> bool {
        self.until.is_some_and(|u| self.next_offset > u)
            || self.seg >= self.archive.inner.segments.len()
            || self.failed
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// The chain head after the last event returned (`None` where the chain is unknown: an
    /// archive rebuilt without its index, read from the middle).
    pub fn chain_head(&self) -> Option<[u8; 32]> {
        if self.only.is_some() {
            // Other channels' events are not read: the chain over all of them is unknown.
            return None;
        }
        match &self.current {
            Some(c) => c.chunk.head_after(c.next),
            None => self.chain,
        }
    }

    /// Whether the chunks the last event returned was read from hold only events this cursor
    /// returns (no other agent's passed over, no `deliver` filter): a consumer that keeps the
    /// payload (a slice of them) then keeps nothing alive that it does not count, and need not
    /// copy it out.
    pub fn returned_whole_chunks(&self) -> bool {
        self.deliver.is_none() && self.current.as_ref().is_some_and(|c| c.chunk.dense)
    }

    /// Tells the cursor that its consumer passed over the event it returned last (so the chunk
    /// it is in holds an event not kept: see [`Cursor::returned_whole_chunks`]). Only for
    /// events before any of the chunk that is kept: a kept slice of it is not recalled.
    pub fn pass_over(&mut self) {
        if let Some(c) = self.current.as_mut() {
            c.chunk.dense = false;
        }
    }

    /// Whether a read-ahead thread is reading chunks for it now: not while the cache holds the
    /// groups it reads (a thread that meets several held in a row hands the read back).
    pub fn reads_ahead(&self) -> bool {
        self.prefetch.is_some()
    }

    /// Whether the cursor returns some channels only (so that a consumer that wants those
    /// need not pass any other over).
    pub fn filters_channels(&self) -> bool {
        self.only.is_some() || self.deliver.is_some()
    }

    /// The last offset whose chain was checked against a recorded hash, with that hash.
    pub fn verified_through(&self) -> Option<(u64, [u8; 32])> {
        self.verified_through
    }

    /// The chain head before chunk `chunk` of segment `seg`, when known.
    fn chain_before(&self, seg: usize, chunk: usize) -> Option<[u8; 32]> {
        let s = &self.archive.inner.segments[seg];
        s.chunks[chunk].span.chain_before.or(match (chunk, seg) {
            (0, 0) => Some(s.chain_start()),
            (0, _) => s.meta.as_ref().map(|m| m.chain_start),
            _ => None,
        })
    }

    /// Loads the chunk the cursor is positioned in (a seek), through the chunk cache.
    fn load_chunk(&mut self) -> Result<()> {
        let only = self.only.as_deref().map(Vec::as_slice);
        // Verifying, the chunks are checked against their hashes before any event is returned.
        let data = self
            .archive
            .group_data(self.seg, self.chunk, only, self.check_chunks)?;
        let seg = &self.archive.inner.segments[self.seg];
        let loc = &seg.chunks[self.chunk];
        let chain_before = self.chain_before(self.seg, self.chunk);
        // With checkpoints, the chain is checked from the one before the start on (by
        // `check_window`), not over the group's events before the start as well.
        let windowed = self.verify_chain
            && only.is_none()
            && chain_before.is_some()
            && loc.checkpoints.every > 0;
        let mut chunk = ParsedChunk::parse(
            seg,
            data,
            only,
            chain_before,
            self.verify_chain && !windowed,
        );
        chunk.windowed =
            windowed && chunk.error.is_none() && chunk.messages.len() as u64 == loc.span.events;
        if windowed && !chunk.windowed && chunk.error.is_none() {
            // Not the events the index counts: the whole chain decides.
            chunk.hash_from(chain_before.expect("windowed reads know the head before"));
        }
        self.check_chain(&chunk)?;
        self.current = Some(LoadedChunk { chunk, next: 0 });
        Ok(())
    }

    /// What the archive records as the chain head after the current group: the index entry of
    /// the next one, or the segment's final hash (with what it is, for messages).
    fn recorded_after(&self) -> Option<([u8; 32], &'static str)> {
        let seg = &self.archive.inner.segments[self.seg];
        if self.chunk + 1 == seg.chunks.len() {
            seg.meta
                .as_ref()
                .filter(|_| seg.truncated_at.is_none())
                .map(|m| (m.final_hash, "the segment's final hash"))
        } else {
            seg.chunks[self.chunk + 1]
                .span
                .chain_before
                .map(|h| (h, "the index entry of the next chunk"))
        }
    }

    /// Runs and checks the chain over the checkpoint window that holds the cursor's next message
    /// (a seek's group, see [`ParsedChunk::windowed`]): from the head recorded before the
    /// window to the one recorded after it, before any event of the window is returned.
    fn check_window(&mut self) -> Result<()> {
        let end_of_group = self.recorded_after();
        let seg = &self.archive.inner.segments[self.seg];
        let loc = &seg.chunks[self.chunk];
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let chunk = &mut current.chunk;
        let every = loc.checkpoints.every as usize;
        let window = current.next / every;
        let from = window * every;
        let to = (from + every).min(chunk.messages.len());
        let before = match window {
            0 => chunk.chain_before,
            w => loc.checkpoints.heads.get(w - 1).copied(),
        };
        let Some(before) = before else {
            return Ok(());
        };
        let after = chunk.hash_range(from, to, before);
        let first = loc.span.first_offset;
        let recorded = match loc.checkpoints.heads.get(window) {
            Some(h) => Some((
                *h,
                format!("the index's chain head before offset {}", first + to as u64),
            )),
            None => end_of_group.map(|(h, what)| (h, what.to_string())),
        };
        match recorded {
            Some((expected, what)) if expected != after => Err(chain_mismatch(
                seg,
                loc,
                (first + from as u64, first + to as u64 - 1),
                &what,
                "them",
                &expected,
                &after,
            )),
            _ => {
                if to == chunk.messages.len() {
                    chunk.chain_after = Some(after);
                }
                Ok(())
            }
        }
    }

    /// Checks a chunk's computed chain head against what the archive recorded after it (the
    /// index entry of the next chunk, or the segment's final hash), before any of its events is
    /// returned: a chunk whose chain fails delivers nothing.
    fn check_chain(&self, chunk: &ParsedChunk) -> Result<()> {
        let seg = &self.archive.inner.segments[self.seg];
        let loc = &seg.chunks[self.chunk];
        if self.verify_chain
            && let Some(e) = &chunk.error
        {
            // Its chain cannot be checked to its end: nothing of it is delivered.
            return Err(e.error(seg));
        }
        let Some(after) = chunk.chain_after.filter(|_| self.verify_chain) else {
            return Ok(());
        };
        // The chain was run over the whole group: it must also pass the checkpoints inside.
        let every = loc.checkpoints.every as usize;
        if chunk.heads_from == 0 && chunk.heads.len() as u64 == loc.span.events {
            for (i, expected) in loc.checkpoints.heads.iter().enumerate() {
                let at = (i + 1) * every;
                let Some(computed) = chunk.heads.get(at - 1) else {
                    break;
                };
                if computed != expected {
                    let what = format!(
                        "the index's chain head before offset {}",
                        loc.span.first_offset + at as u64
                    );
                    let group = (loc.span.first_offset, loc.span.last_offset());
                    return Err(chain_mismatch(
                        seg, loc, group, &what, "it", expected, computed,
                    ));
                }
            }
        }
        match self.recorded_after() {
            Some((expected, what)) if expected != after => Err(chain_mismatch(
                seg,
                loc,
                (loc.span.first_offset, loc.span.last_offset()),
                what,
                "it",
                &expected,
                &after,
            )),
            _ => Ok(()),
        }
    }

    /// Loads the next chunk of a sequential read from the read-ahead thread, which reads,
    /// decompresses, CRC-checks and hashes the following chunks while this one is decoded.
    fn load_next_chunk(&mut self) -> Result<()> {
        let want = (self.seg, self.chunk);
        let chain_before = self.chain.or(self.chain_before(self.seg, self.chunk));
        let chunk = match self.parse_cached(chain_before) {
            Some(chunk) => chunk?,
            None => self.prefetched(want, chain_before)?,
        };
        self.check_chain(&chunk)?;
        self.keep_heads(&chunk);
        let mut chunk = chunk;
        let last = self.archive.inner.segments[self.seg].chunks[self.chunk]
            .span
            .last_offset();
        if self.until.is_some_and(|u| u < last) {
            // Its events after the last one are not returned.
            chunk.dense = false;
        }
        self.current = Some(LoadedChunk { chunk, next: 0 });
        Ok(())
    }

    /// The next group parsed here when the chunk cache holds what the read needs of it and no
    /// read-ahead thread is running (one that meets held groups stops): handing a parsed group
    /// over from that thread (a wake-up and a thread switch each way) costs more than parsing
    /// it, and one agent's chunks are small (10 % of the server's time when a replay from the
    /// cache went through the thread).
    /// A read that runs the hash chain takes the heads the cache holds for the group (run over
    /// these very chunks and checked before), or leaves it to the threads (one hashes).
    fn parse_cached(&self, chain_before: Option<[u8; 32]>) -> Option<Result<ParsedChunk>> {
        if self.prefetch.is_some() {
            return None;
        }
        let seg = &self.archive.inner.segments[self.seg];
        let loc = &seg.chunks[self.chunk];
        let only = self.only.as_deref().map(Vec::as_slice);
        let cache = &self.archive.inner.cache;
        if !group_held(seg, loc, only, cache, HeldHeads::NotNeeded) {
            return None;
        }
        if !(self.verify_chain && only.is_none()) {
            return Some(
                read_parts(seg, loc, only, self.check_chunks, cache, false)
                    .map(|data| ParsedChunk::parse(seg, data, only, None, false)),
            );
        }
        let before = chain_before?;
        let heads = cache
            .heads((seg.id, loc.parts.first()?.start))
            .filter(|h| h.before == before)?;
        let data = match read_parts(seg, loc, None, self.check_chunks, cache, false) {
            Ok(data) => data,
            Err(e) => return Some(Err(e)),
        };
        if !heads.fit(before, &data) {
            return None;
        }
        let mut chunk = ParsedChunk::parse(seg, data, None, Some(before), false);
        if chunk.error.is_some() || chunk.messages.len() != heads.heads.len() {
            return None;
        }
        chunk.heads = heads.heads.clone();
        chunk.heads_from = 0;
        chunk.chain_after = Some(chunk.heads.last().copied().unwrap_or(before));
        Some(Ok(chunk))
    }

    /// Holds the heads of a group whose chain was run over all of it and checked against a
    /// head the archive records after it (so a full read of it again need not hash it).
    fn keep_heads(&self, chunk: &ParsedChunk) {
        if !(self.verify_chain && self.only.is_none())
            || chunk.error.is_some()
            || chunk.windowed
            || chunk.heads_from != 0
            || chunk.heads.len() != chunk.messages.len()
            || self.recorded_after().is_none()
        {
            return;
        }
        let (Some(before), Some(_)) = (chunk.chain_before, chunk.chain_after) else {
            return;
        };
        let seg = &self.archive.inner.segments[self.seg];
        let Some(first) = seg.chunks[self.chunk].parts.first() else {
            return;
        };
        let cache = &self.archive.inner.cache;
        if !cache.contains((seg.id, first.start))
            || cache
                .heads((seg.id, first.start))
                .is_some_and(|h| h.fit(before, &chunk.data))
        {
            // Gone already (a cache smaller than a group or two), or held already.
            return;
        }
        let Some(parts) = GroupHeads::parts_of(&chunk.data) else {
            return;
        };
        cache.set_heads(
            (seg.id, first.start),
            Arc::new(GroupHeads {
                before,
                heads: chunk.heads.clone(),
                parts,
            }),
        );
    }

    /// The next group from the read-ahead thread (started here when not running or elsewhere).
    fn prefetched(
        &mut self,
        want: (usize, usize),
        chain_before: Option<[u8; 32]>,
    ) -> Result<ParsedChunk> {
        loop {
            if self.prefetch.as_ref().is_none_or(|p| p.next != want) {
                self.prefetch = Some(Prefetch::start(
                    self.archive.clone(),
                    want,
                    self.until,
                    self.verify_chain,
                    chain_before,
                    self.only.clone(),
                    self.check_chunks,
                ));
            }
            let ahead = self
                .prefetch
                .as_mut()
                .expect("prefetch was just started")
                .recv()?;
            match ahead {
                Ahead::Parsed(chunk) => return Ok(*chunk),
                Ahead::Cached => {
                    // The thread stopped: the cache holds the next groups.
                    self.prefetch = None;
                    if let Some(chunk) = self.parse_cached(chain_before) {
                        return chunk;
                    }
                    // Evicted since (or its heads no longer fit): a thread from here again,
                    // which reads this group at least.
                }
            }
        }
    }

    /// At the end of a chunk: check the event count and the chain, move to the next chunk.
    fn finish_chunk(&mut self) -> Result<()> {
        let Some(done) = self.current.take() else {
            return Ok(());
        };
        let seg = &self.archive.inner.segments[self.seg];
        let loc = &seg.chunks[self.chunk];
        let expected_next = loc.span.first_offset + loc.span.events;
        if self.only.is_some() {
            // Some of the group's events were read: on past the rest.
            self.next_offset = self.next_offset.max(expected_next);
            self.chunk += 1;
            return Ok(());
        }
        if self.next_offset != expected_next {
            return Err(ArchiveError::OffsetGap {
                path: seg.name().to_string(),
                at: loc.start,
                expected: expected_next,
                found: self.next_offset,
            });
        }
        // `check_chain` compared the head with the recorded one when the chunk was loaded.
        let after = done.chunk.chain_after.filter(|_| self.verify_chain);
        self.chain = after;
        if let Some(after) = after {
            let recorded = if self.chunk + 1 == seg.chunks.len() {
                seg.meta.is_some() && seg.truncated_at.is_none()
            } else {
                seg.chunks[self.chunk + 1].span.chain_before.is_some()
            };
            if recorded {
                self.verified_through = Some((loc.span.last_offset(), after));
            }
        }
        self.chunk += 1;
        Ok(())
    }

    /// Moves to the next segment; the chain continues from this one's head.
    fn finish_segment(&mut self) {
        self.seg += 1;
        self.chunk = 0;
        self.current = None;
        if let Some(next) = self.archive.inner.segments.get(self.seg)
            && let Some(start) = next.meta.as_ref().map(|m| m.chain_start)
        {
            // Continuity of the chain between segments was checked when the archive was opened.
            self.chain = Some(start);
        }
    }

    /// The next stored event.
    pub fn next_raw(&mut self) -> Option<Result<RawEvent>> {
        loop {
            if self.failed {
                return None;
            }
            let r = self.advance();
            if matches!(r, Some(Err(_))) {
                self.failed = true;
            }
            if let (Some(Ok(raw)), Some(deliver)) = (&r, &self.deliver)
                && !deliver.get(raw.channel).copied().unwrap_or(false)
            {
                continue;
            }
            return r;
        }
    }

    fn advance(&mut self) -> Option<Result<RawEvent>> {
        loop {
            if self.until.is_some_and(|u| self.next_offset > u) {
                return None;
            }
            if self.seg >= self.archive.inner.segments.len() {
                return None;
            }
            if self.chunk >= self.archive.inner.segments[self.seg].chunks.len() {
                self.finish_segment();
                continue;
            }
            if self.current.is_none()
                && let Err(e) = self.load_next_chunk()
            {
                return Some(Err(e));
            }
            if self.current.as_ref().is_some_and(|c| {
                c.chunk.windowed && c.next >= c.chunk.hashed_to() && c.next < c.chunk.messages.len()
            }) && let Err(e) = self.check_window()
            {
                return Some(Err(e));
            }
            let current = self.current.as_mut()?;
            if let Some(m) = current.chunk.messages.get(current.next).copied() {
                if let Some(only) = &self.only {
                    let seg = &self.archive.inner.segments[self.seg];
                    if !seg.channel_wanted(m.channel_id, only) {
                        // A group read whole (a seek before the read was narrowed).
                        current.chunk.dense = false;
                        current.next += 1;
                        continue;
                    }
                    if let Some(u) = self.until.filter(|u| m.head.offset > *u) {
                        self.next_offset = u + 1;
                        return None;
                    }
                }
                let payload = current.chunk.payload(current.next);
                current.next += 1;
                return Some(self.accept(m.channel_id, m.head, payload));
            }
            if let Some(e) = current.chunk.error.take() {
                let seg = &self.archive.inner.segments[self.seg];
                return Some(Err(e.error(seg)));
            }
            if let Err(e) = self.finish_chunk() {
                return Some(Err(e));
            }
        }
    }

    fn accept(&mut self, channel_id: u16, head: EventHead, payload: Bytes) -> Result<RawEvent> {
        let seg = &self.archive.inner.segments[self.seg];
        let loc = &seg.chunks[self.chunk];
        let in_order = match self.only {
            // Other channels' events lie between: offsets go up with gaps.
            Some(_) => head.offset >= self.next_offset,
            None => head.offset == self.next_offset,
        };
        if !in_order {
            return Err(ArchiveError::OffsetGap {
                path: seg.name().to_string(),
                at: loc.start,
                expected: self.next_offset,
                found: head.offset,
            });
        }
        if let Some(prev) = self.prev_commit_ts
            && head.commit_ts <= prev
        {
            return Err(ArchiveError::OrderBackwards {
                path: seg.name().to_string(),
                offset: head.offset,
                commit_ts: head.commit_ts,
                prev_commit_ts: prev,
            });
        }
        let channel = *seg
            .channel_map
            .get(&channel_id)
            .ok_or_else(|| ArchiveError::Corrupt {
                path: seg.name().to_string(),
                at: loc.start,
                what: format!("message on unknown channel {channel_id}"),
            })?;
        self.prev_commit_ts = Some(head.commit_ts);
        self.next_offset = head.offset + 1;
        Ok(RawEvent {
            offset: head.offset,
            commit_ts: head.commit_ts,
            commit_time_ns: head.commit_time_ns,
            channel,
            payload,
        })
    }

    /// The next event, decoded.
    pub fn next_event(&mut self) -> Option<Result<Event>> {
        let raw = match self.next_raw()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        Some(raw.decode_with(&mut self.names).map_err(|e| {
            self.failed = true;
            let seg = self
                .seg
                .min(self.archive.inner.segments.len().saturating_sub(1));
            ArchiveError::Decode {
                path: self.archive.inner.segments[seg].name().to_string(),
                offset: raw.offset,
                message: e.to_string(),
            }
        }))
    }
}

/// Chunks to read ahead of the decoder (bounds the memory of a sequential read).
const PREFETCH_CHUNKS: usize = 2;

/// How many groups in a row the cache must hold, from the one the read-ahead thread would read
/// next, for the thread to hand the read back to the cursor; and how many a thread reads at
/// least before it does: a read trailing another one closely (which caches the groups just
/// ahead of it) starts a thread every twice as many groups at most.
const HAND_BACK_AFTER_CACHED: usize = 4;

/// What the read-ahead thread sends for each group, in order.
enum Ahead {
    Parsed(Box<ParsedChunk>),
    /// It stopped here: the cache holds this group and the next ones (see
    /// [`HAND_BACK_AFTER_CACHED`]), which the cursor parses itself ([`Cursor::parse_cached`]),
    /// as it does a read that found everything cached from its start.
    Cached,
}

type Prefetched = Result<Ahead>;

/// A thread that reads, decompresses and hashes the chunks after the current one, in order. It
/// stops when the cursor drops its receiver, at the end of the archive, past `until`, or on an
/// error.
struct Prefetch {
    /// The (segment, chunk) the next received item is.
    next: (usize, usize),
    rx: std::sync::mpsc::Receiver<Prefetched>,
    archive: Archive,
}

impl Prefetch {
    /// Reads (decompresses, CRC-checks, parses) the chunks from `from` on one thread; with
    /// `verify`, a second thread runs the hash chain over them from `chain_before` (or, where
    /// that is not known, from the first recorded head it meets), so hashing (BLAKE3 over every
    /// payload, the dearest part of a verified read) does not slow the reading.
    fn start(
        archive: Archive,
        from: (usize, usize),
        until: Option<u64>,
        verify: bool,
        chain_before: Option<[u8; 32]>,
        only: Option<Arc<Vec<bool>>>,
        check_chunks: bool,
    ) -> Prefetch {
        let handle = archive.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Prefetched>(PREFETCH_CHUNKS);
        let spawned = if verify && only.is_none() {
            let (read_tx, read_rx) = std::sync::mpsc::sync_channel(PREFETCH_CHUNKS);
            spawn_reader(
                archive.clone(),
                from,
                ReadAheadOf {
                    until,
                    only: None,
                    check_chunks,
                    heads: HeldHeads::Needed,
                },
                read_tx,
                ReadChunk,
            )
            .and_then(|()| {
                std::thread::Builder::new()
                    .name("replayscope-hash".into())
                    .spawn(move || hash_chunks(&archive, from.0, chain_before, read_rx, tx))
                    .map(|_| ())
            })
        } else {
            spawn_reader(
                archive,
                from,
                ReadAheadOf {
                    until,
                    only,
                    check_chunks,
                    heads: HeldHeads::NotNeeded,
                },
                tx,
                |_, _, chunk| chunk,
            )
        };
        let rx = match spawned {
            Ok(()) => rx,
            Err(e) => {
                // No thread: the receiver reports it on first use.
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let _ = tx.send(Err(ArchiveError::Io {
                    path: String::from("read-ahead thread"),
                    source: e,
                }));
                rx
            }
        };
        Prefetch {
            next: from,
            rx,
            archive: handle,
        }
    }

    fn recv(&mut self) -> Prefetched {
        let item = self.rx.recv().map_err(|_| ArchiveError::Io {
            path: String::from("read-ahead thread"),
            source: std::io::Error::other("read-ahead stopped unexpectedly"),
        })?;
        self.next.1 += 1;
        let segs = &self.archive.inner.segments;
        while segs
            .get(self.next.0)
            .is_some_and(|s| self.next.1 >= s.chunks.len())
        {
            self.next = (self.next.0 + 1, 0);
        }
        item
    }
}

/// The read-ahead thread: reads, decompresses, CRC-checks and parses the groups from `from`
/// (up to `until`) into `tx`, each with the segment it belongs to when `tx` wants it. With
/// `only`, it reads just the chunks holding those channels (a group without any is sent
/// empty). It hands the read back to the cursor where the cache holds the next groups.
fn spawn_reader<T: Send + 'static>(
    archive: Archive,
    from: (usize, usize),
    what: ReadAheadOf,
    tx: std::sync::mpsc::SyncSender<T>,
    wrap: fn(usize, usize, Prefetched) -> T,
) -> std::io::Result<()> {
    let ReadAheadOf {
        until,
        only,
        check_chunks,
        heads,
    } = what;
    std::thread::Builder::new()
        .name("replayscope-read-ahead".into())
        .spawn(move || {
            let segs = &archive.inner.segments;
            let (mut s, mut c) = from;
            // Groups read so far.
            let mut read = 0;
            while let Some(seg) = segs.get(s) {
                let Some(loc) = seg.chunks.get(c) else {
                    s += 1;
                    c = 0;
                    continue;
                };
                if until.is_some_and(|u| loc.span.first_offset > u) {
                    return;
                }
                let only = only.as_deref().map(Vec::as_slice);
                // Not before it has read a few: the cursor started it because the group it
                // wanted was not held (or its held heads did not fit).
                if read >= HAND_BACK_AFTER_CACHED
                    && cached_ahead(&archive, (s, c), until, only, heads)
                {
                    let _ = tx.send(wrap(s, c, Ok(Ahead::Cached)));
                    return;
                }
                read += 1;
                let item = read_parts(seg, loc, only, check_chunks, &archive.inner.cache, false)
                    .map(|data| {
                        Ahead::Parsed(Box::new(ParsedChunk::parse(seg, data, only, None, false)))
                    });
                let failed = item.is_err();
                if tx.send(wrap(s, c, item)).is_err() || failed {
                    return;
                }
                c += 1;
            }
        })
        .map(|_| ())
}

/// What a read-ahead thread reads of each group, and up to where.
struct ReadAheadOf {
    until: Option<u64>,
    only: Option<Arc<Vec<bool>>>,
    check_chunks: bool,
    heads: HeldHeads,
}

/// Whether a read held in the cache needs the checked chain heads held with its groups too (a
/// read that runs the chain over every event: see [`Cursor::parse_cached`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldHeads {
    Needed,
    NotNeeded,
}

/// Whether the cache holds what a read of `only` needs of group `at` and of the ones after it
/// (up to [`HAND_BACK_AFTER_CACHED`] in all, fewer at the end of the archive or of `until`).
fn cached_ahead(
    archive: &Archive,
    at: (usize, usize),
    until: Option<u64>,
    only: Option<&[bool]>,
    heads: HeldHeads,
) -> bool {
    let segs = &archive.inner.segments;
    segs[at.0..]
        .iter()
        .enumerate()
        .flat_map(|(i, seg)| {
            let skip = if i == 0 { at.1 } else { 0 };
            seg.chunks[skip.min(seg.chunks.len())..]
                .iter()
                .map(move |loc| (seg, loc))
        })
        .take_while(|(_, loc)| until.is_none_or(|u| loc.span.first_offset <= u))
        .take(HAND_BACK_AFTER_CACHED)
        .all(|(seg, loc)| group_held(seg, loc, only, &archive.inner.cache, heads))
}

/// Whether the cache holds the chunks of group `loc` that a read of `only` needs (and, where
/// `heads` says so, the checked chain heads of the whole group, run over those very chunks).
fn group_held(
    seg: &Segment,
    loc: &ChunkLoc,
    only: Option<&[bool]>,
    cache: &PartCache,
    heads: HeldHeads,
) -> bool {
    let keys = loc
        .parts
        .iter()
        .filter(move |p| only.is_none_or(|w| seg.part_wanted(p, w)))
        .map(|p| (seg.id, p.start));
    cache.holds_group(keys, heads == HeldHeads::Needed)
}

/// The decompressed chunks of a group that a read of `only`'s channels needs (all of them
/// without `only`), from `cache` where it holds them, read and decompressed (then held) where
/// not; with `check`, each checked against its recorded hash (once: the cache remembers).
fn read_parts(
    seg: &Segment,
    loc: &ChunkLoc,
    only: Option<&[bool]>,
    check: bool,
    cache: &PartCache,
    two_threads: bool,
) -> Result<PartsData> {
    let storage = seg.storage.as_ref();
    let mut data: PartsData = vec![None; loc.parts.len()];
    let mut missing = Vec::new();
    for (i, part) in loc.parts.iter().enumerate() {
        if only.is_some_and(|w| !seg.part_wanted(part, w)) {
            continue;
        }
        let key = (seg.id, part.start);
        match cache.get(key) {
            Some(hit) => {
                if check && !hit.checked {
                    check_part(seg, part, &hit.data.bytes)?;
                    // Checked means against a recorded hash (a file followed before its index
                    // was written has none yet; the same chunk may have one after a look).
                    if part.hash.is_some() {
                        cache.mark_checked(key, &hit.data);
                    }
                }
                data[i] = Some(hit.data);
            }
            None => missing.push(i),
        }
    }
    // Consecutive chunks of the group missing: one read (one request on S3).
    let contiguous = missing.windows(2).all(|w| {
        let (a, b) = (&loc.parts[w[0]], &loc.parts[w[1]]);
        w[1] == w[0] + 1 && a.start + a.length == b.start
    });
    let whole = match (missing.first(), missing.last()) {
        (Some(&first), Some(&last)) if missing.len() > 1 && contiguous => {
            let (first, last) = (&loc.parts[first], &loc.parts[last]);
            Some((
                first.start,
                read_records(storage, first.start, last.start + last.length - first.start)?,
            ))
        }
        _ => None,
    };
    let load = |i: usize| -> Result<(usize, PartData)> {
        let part = &loc.parts[i];
        let records = match &whole {
            Some((from, records)) => {
                let at = (part.start - from) as usize;
                decode_chunk(
                    storage.name(),
                    part.start,
                    &records[at..at + part.length as usize],
                )?
            }
            None => read_chunk(storage, part.start, part.length)?,
        };
        let index = Arc::new(index_part(seg, part, &records, check)?);
        let part_data = PartData {
            bytes: Bytes::from(records),
            index,
        };
        cache.insert(
            (seg.id, part.start),
            CachedPart {
                data: part_data.clone(),
                checked: check && part.hash.is_some(),
            },
        );
        Ok((i, part_data))
    };
    let loaded: Vec<(usize, PartData)> = if two_threads && missing.len() > 1 {
        // A seek: its caller waits for it (a client for its first event), so half of the
        // chunks are decompressed on a second thread.
        let (first, second) = missing.split_at(missing.len() / 2);
        std::thread::scope(|scope| {
            let helper = std::thread::Builder::new()
                .name("replayscope-seek".into())
                .spawn_scoped(scope, || {
                    second.iter().map(|&i| load(i)).collect::<Result<Vec<_>>>()
                });
            let mut out = first.iter().map(|&i| load(i)).collect::<Result<Vec<_>>>()?;
            match helper {
                Ok(h) => out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?),
                // No thread: this one does the rest.
                Err(_) => out.extend(
                    second
                        .iter()
                        .map(|&i| load(i))
                        .collect::<Result<Vec<_>>>()?,
                ),
            }
            Ok::<_, ArchiveError>(out)
        })?
    } else {
        missing
            .iter()
            .map(|&i| load(i))
            .collect::<Result<Vec<_>>>()?
    };
    for (i, part_data) in loaded {
        data[i] = Some(part_data);
    }
    Ok(data)
}

/// Checks a decompressed chunk's events against the hash the index records for it.
fn check_part(seg: &Segment, part: &ChunkPart, data: &[u8]) -> Result<()> {
    index_part(seg, part, data, true).map(drop)
}

/// A chunk from the reader, with its segment and index there.
struct ReadChunk(usize, usize, Prefetched);

/// The hash thread: runs the chain over each chunk the reader parsed, from `chain` (the head
/// before the first one). It continues across chunks and segments from what it computed, so
/// the chain is checked end to end; where it knows no head (a seek into an archive whose index
/// was rebuilt) it starts from the first one the archive recorded (a segment's chain start, a
/// chunk's index entry). Entering a segment, the computed head must be the segment's recorded
/// chain start.
fn hash_chunks(
    archive: &Archive,
    first_seg: usize,
    chain: Option<[u8; 32]>,
    rx: std::sync::mpsc::Receiver<ReadChunk>,
    tx: std::sync::mpsc::SyncSender<Prefetched>,
) {
    let segs = &archive.inner.segments;
    let mut seg = first_seg;
    let mut chain = chain;
    for ReadChunk(s, c, item) in rx {
        let mut item = item;
        if s != seg {
            seg = s;
            let start = segs[s].meta.as_ref().map(|m| m.chain_start);
            match (chain, start) {
                (Some(computed), Some(recorded)) if computed != recorded => {
                    item = Err(ArchiveError::HashMismatch {
                        path: segs[s].name().to_string(),
                        context: " at the start of the segment (the events before it hash to \
                                  another head than its recorded chain start)"
                            .to_string(),
                        expected: hex(&recorded),
                        actual: hex(&computed),
                    });
                }
                _ => chain = start.or(chain),
            }
        }
        if chain.is_none() {
            chain = segs[s].chunks[c].span.chain_before;
        }
        let handed_back = matches!(item, Ok(Ahead::Cached));
        let item = item.map(|ahead| match ahead {
            Ahead::Parsed(mut parsed) => {
                if let Some(before) = chain {
                    parsed.hash_from(before);
                }
                chain = parsed.chain_after;
                Ahead::Parsed(parsed)
            }
            Ahead::Cached => Ahead::Cached,
        });
        let failed = item.is_err() || handed_back;
        if tx.send(item).is_err() || failed {
            return;
        }
    }
}

impl Iterator for Cursor {
    type Item = Result<RawEvent>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw()
    }
}

// ---------------------------------------------------------------------------------------------
// Opening one file.

/// A segment of an archive being assembled.
enum Slot {
    /// Kept from the archive being refreshed (its channel ids already map into the table).
    Kept(Arc<Segment>),
    /// Newly opened.
    Fresh(Box<Segment>),
}

/// The segment `old` (which was still being written) as its file is now: its known chunks
/// kept and only what was added since scanned; or — finished by its writer, or rewritten by
/// `verify --repair` after the writer was killed (the same events, maybe fewer bytes) — opened
/// again. Either way it must still hold every offset `old` held, from the same first one.
fn continue_segment(
    storage: Box<dyn RangeRead>,
    old: &Segment,
    channels: &[ChannelKey],
) -> Result<Segment> {
    let name = storage.name().to_string();
    let size = storage.size();
    let opener = Opener {
        storage,
        name: name.clone(),
        size,
        options: OpenOptions {
            allow_truncated: true,
        },
    };
    let mut seg = if opener.has_tail() || size < old.size() {
        opener.check_header()?;
        opener.open()?
    } else {
        let base = Scan {
            markers: old.markers.clone(),
            compression: old.compression.clone(),
            chunks: old.chunks.clone(),
            snapshots: old.snapshots.clone(),
            state_ids: old.state_ids.clone(),
            channels: old
                .channel_map
                .iter()
                .filter_map(|(&id, &g)| channels.get(g).map(|k| (id, k.clone())))
                .collect(),
            counts: old.channel_counts.clone(),
            meta: None,
            truncated_at: None,
        };
        let from = old.truncated_at.unwrap_or(8);
        let scan = opener.scan_data_section_from(base, from)?;
        let at = scan.truncated_at.unwrap_or(size);
        opener.segment_from_scan(scan, Some(at), Vec::new())?
    };
    let holds_old = old.first_offset().is_none()
        || (seg.first_offset() == old.first_offset() && seg.last_offset() >= old.last_offset());
    if !holds_old {
        let range = |s: &Segment| match (s.first_offset(), s.last_offset()) {
            (Some(a), Some(b)) => format!("offsets {a} to {b}"),
            _ => "no events".to_string(),
        };
        return Err(ArchiveError::Invalid {
            path: name,
            message: format!(
                "rewritten while it was followed: it held {}, now {}",
                range(old),
                range(&seg)
            ),
        });
    }
    // The file grew and holds the chunks it held, where it held them: its chunks stay in the
    // cache under the same key (clients following it share its newest chunks across looks).
    let same_chunks = size >= old.size()
        && seg.chunks.len() >= old.chunks.len()
        && old.chunks.iter().zip(&seg.chunks).all(|(a, b)| {
            a.parts.len() == b.parts.len()
                && a.parts.iter().zip(&b.parts).all(|(p, q)| {
                    // A file read before its index was written knows no chunk hashes yet.
                    (p.start, p.length, p.uncompressed) == (q.start, q.length, q.uncompressed)
                        && (p.hash.is_none() || p.hash == q.hash)
                })
        });
    if same_chunks {
        seg.id = old.id;
    }
    Ok(seg)
}

impl Segment {
    /// Channel keys by local index, filled while opening and consumed by `from_segments`.
    fn pending_keys(&mut self) -> Vec<ChannelKey> {
        std::mem::take(&mut self.keys)
    }
}

/// Opens one MCAP file of the replayscope profile.
pub fn open_segment(storage: Box<dyn RangeRead>, options: OpenOptions) -> Result<Segment> {
    let name = storage.name().to_string();
    let size = storage.size();
    if size == 0 {
        return Err(ArchiveError::Empty { path: name });
    }
    let head_len = size.min(8) as usize;
    let head = storage
        .read_range(0, head_len)
        .map_err(|e| ArchiveError::io(&name, e))?;
    if head[..] != MAGIC[..head_len] {
        return Err(ArchiveError::NotMcap { path: name });
    }
    let opener = Opener {
        storage,
        name,
        size,
        options,
    };
    opener.check_header()?;
    opener.open()
}

struct Opener {
    storage: Box<dyn RangeRead>,
    name: String,
    size: u64,
    options: OpenOptions,
}

/// What decoding one chunk found out about it: a chunk of events, or a state snapshot.
enum ChunkKind {
    Events(ChunkScan),
    Snapshot { through: u64, state_ids: Vec<u16> },
}

/// What decoding a chunk of events found out about it.
struct ChunkScan {
    /// Its first offset, event count and ranges (its offsets go up, with gaps where other
    /// chunks of its group hold the events between).
    span: ChunkSpan,
    last_offset: u64,
    /// The MCAP channel ids of its messages.
    channel_ids: Vec<u16>,
    uncompressed: u64,
    counts: BTreeMap<u16, u64>,
    channels: Vec<(u16, ChannelKey)>,
}

/// What a linear scan of the data section found.
#[derive(Default)]
struct Scan {
    markers: Option<crate::event::marker::MarkerSet>,
    compression: Option<String>,
    chunks: Vec<ChunkLoc>,
    snapshots: Vec<SnapshotLoc>,
    /// Ids of the state snapshot channel.
    state_ids: Vec<u16>,
    channels: Vec<(u16, ChannelKey)>,
    counts: BTreeMap<u16, u64>,
    meta: Option<SegmentMeta>,
    truncated_at: Option<u64>,
}

impl Opener {
    fn corrupt(&self, at: u64, what: impl Into<String>) -> ArchiveError {
        ArchiveError::Corrupt {
            path: self.name.clone(),
            at,
            what: what.into(),
        }
    }

    fn read(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        let len_usize = usize::try_from(len).map_err(|_| self.corrupt(at, "implausible length"))?;
        if at.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(self.corrupt(
                at,
                format!(
                    "a {len}-byte record runs past the end of the file ({} bytes)",
                    self.size
                ),
            ));
        }
        self.storage
            .read_range(at, len_usize)
            .map_err(|e| ArchiveError::io(&self.name, e))
    }

    fn truncated(&self, at: u64) -> ArchiveError {
        ArchiveError::Truncated {
            path: self.name.clone(),
            at,
            size: self.size,
            prefix: String::new(),
        }
    }

    /// Reads the record at `at`: `(opcode, body)`.
    fn record_at(&self, at: u64) -> Result<(u8, Vec<u8>)> {
        let prefix = self.read(at, format::RECORD_PREFIX)?;
        let len = format::u64_at(&prefix, 1).unwrap_or(0);
        let body = self.read(at + format::RECORD_PREFIX, len)?;
        Ok((prefix[0], body))
    }

    fn check_header(&self) -> Result<()> {
        if self.size < 8 + format::RECORD_PREFIX {
            return Err(self.truncated(self.size));
        }
        let (opcode, body) = match self.record_at(8) {
            Ok(r) => r,
            Err(_) => return Err(self.truncated(self.size)),
        };
        if opcode != op::HEADER {
            return Err(self.corrupt(
                8,
                format!("expected the MCAP header record, found opcode 0x{opcode:02x}"),
            ));
        }
        let profile = format::parse_header_profile(&body)
            .ok_or_else(|| self.corrupt(8, "malformed MCAP header record"))?;
        if profile != PROFILE {
            return Err(ArchiveError::WrongProfile {
                path: self.name.clone(),
                profile,
            });
        }
        Ok(())
    }

    /// Whether the file ends with a footer and the closing magic.
    fn has_tail(&self) -> bool {
        self.size >= 8 + TAIL_LEN
            && self
                .storage
                .read_range(self.size - TAIL_LEN, TAIL_LEN as usize)
                .is_ok_and(|t| t[0] == op::FOOTER && t[TAIL_LEN as usize - 8..] == MAGIC)
    }

    fn open(self) -> Result<Segment> {
        let has_tail = self.has_tail();
        if !has_tail {
            let scan = self.scan_data_section()?;
            let at = scan.truncated_at.unwrap_or(self.size);
            if !self.options.allow_truncated {
                let prefix = match (scan.chunks.first(), scan.chunks.last()) {
                    (Some(a), Some(b)) => format!(
                        "; events {} to {} are readable",
                        a.span.first_offset,
                        b.span.last_offset()
                    ),
                    _ => "; no complete chunk is readable".to_string(),
                };
                return Err(ArchiveError::Truncated {
                    path: self.name.clone(),
                    at,
                    size: self.size,
                    prefix,
                });
            }
            let note = format!(
                "truncated at byte {at} of {}: using the readable prefix ({} events)",
                self.size,
                scan.chunks.iter().map(|c| c.span.events).sum::<u64>()
            );
            return self.segment_from_scan(scan, Some(at), vec![note]);
        }
        let footer_at = self.size - TAIL_LEN;
        let footer = self.read(footer_at, TAIL_LEN)?;
        let summary_start = format::u64_at(&footer, 9).unwrap_or(0);
        let summary_crc = format::u32_at(&footer, 25).unwrap_or(0);
        if summary_start == 0 {
            let scan = self.scan_data_section()?;
            if let Some(at) = scan.truncated_at {
                // A finished file whose last group of chunks is missing some of them.
                return Err(self.corrupt(
                    at,
                    "the data section is incomplete from here on (a chunk cannot be read, or a \
                     group's chunks are missing)",
                ));
            }
            let note = "no summary section: chunk index rebuilt by scanning the file".to_string();
            return self.segment_from_scan(scan, None, vec![note]);
        }
        if summary_start < 8 || summary_start > footer_at {
            return Err(self.corrupt(
                footer_at,
                format!("footer points at summary byte {summary_start}, outside the file"),
            ));
        }
        let summary = self.read(summary_start, self.size - 8 - summary_start)?;
        if summary_crc != 0 {
            let covered = summary.len() - 4;
            let actual = crc32fast::hash(&summary[..covered]);
            if actual != summary_crc {
                return Err(self.corrupt(
                    summary_start,
                    format!("summary section CRC mismatch (stored {summary_crc:08x}, computed {actual:08x})"),
                ));
            }
        }
        let summary = &summary[..(footer_at - summary_start) as usize];
        self.open_with_summary(summary_start, summary)
    }

    fn open_with_summary(self, summary_start: u64, summary: &[u8]) -> Result<Segment> {
        let mut channels = Vec::new();
        let mut state_ids = Vec::new();
        let mut chunk_indexes = Vec::new();
        let mut index_attachment = None;
        let mut meta_index = None;
        let mut markers_index = None;
        let mut counts = BTreeMap::new();
        for rec in Records::new(summary) {
            let (opcode, body, at) = rec
                .map_err(|e| self.corrupt(summary_start + e.at, format!("summary: {}", e.what)))?;
            let at = summary_start + at as u64;
            let parse = || {
                mcap::parse_record(opcode, body)
                    .map_err(|e| self.corrupt(at, format!("summary record 0x{opcode:02x}: {e}")))
            };
            match opcode {
                op::CHANNEL => {
                    if let mcap::records::Record::Channel(c) = parse()? {
                        if c.topic == STATE_TOPIC {
                            state_ids.push(c.id);
                        } else {
                            channels.push((c.id, channel_key(&c)));
                        }
                    }
                }
                op::CHUNK_INDEX => {
                    if let mcap::records::Record::ChunkIndex(ci) = parse()? {
                        chunk_indexes.push(ci);
                    }
                }
                op::ATTACHMENT_INDEX => {
                    if let mcap::records::Record::AttachmentIndex(ai) = parse()?
                        && ai.name == index::INDEX_ATTACHMENT
                    {
                        index_attachment = Some((ai.offset, ai.length));
                    }
                }
                op::METADATA_INDEX => {
                    if let mcap::records::Record::MetadataIndex(mi) = parse()? {
                        if mi.name == METADATA_NAME {
                            meta_index = Some((mi.offset, mi.length));
                        } else if mi.name == crate::archive::MARKERS_METADATA {
                            markers_index = Some(mi.offset);
                        }
                    }
                }
                op::STATISTICS => {
                    if let mcap::records::Record::Statistics(s) = parse()? {
                        counts = s.channel_message_counts;
                    }
                }
                _ => {}
            }
        }
        chunk_indexes.sort_by_key(|c| c.chunk_start_offset);
        for ci in &chunk_indexes {
            if ci.chunk_start_offset < 8
                || ci
                    .chunk_start_offset
                    .checked_add(ci.chunk_length)
                    .is_none_or(|e| e > summary_start)
            {
                return Err(self.corrupt(
                    ci.chunk_start_offset,
                    "chunk index points outside the data section",
                ));
            }
        }
        for id in &state_ids {
            counts.remove(id);
        }
        let compression = chunk_indexes.first().map(|ci| ci.compression.clone());
        let part = ChunkPart::of_index;
        let mut notes = Vec::new();
        let index = index_attachment.and_then(|(at, len)| self.read_index(at, len));
        // Version 2: the index places every chunk (groups, and the snapshot after a group).
        let placed = match &index {
            Some((spans, Some(layout)))
                if spans.iter().map(|s| s.parts).sum::<u64>()
                    + layout.iter().filter(|l| l.snapshot_after).count() as u64
                    == chunk_indexes.len() as u64 =>
            {
                Some((spans, layout))
            }
            _ => None,
        };
        let (chunks, snapshot_chunks) = match placed {
            Some((spans, layout)) => {
                let ids: Vec<u16> = channels.iter().map(|(id, _)| *id).collect();
                let mut cis = chunk_indexes.iter();
                let mut chunks = Vec::with_capacity(spans.len());
                let mut snapshot_chunks = Vec::new();
                for (span, l) in spans.iter().zip(layout) {
                    let own: Vec<u16> = l.chunks.iter().flatten().copied().collect();
                    let mut parts = Vec::with_capacity(l.chunks.len());
                    for (c, hash) in l.chunks.iter().zip(&l.hashes) {
                        let ci = cis.next().expect("the index places every chunk");
                        parts.push(ChunkPart {
                            hash: Some(*hash),
                            own: c.is_some(),
                            ..part(
                                ci,
                                match c {
                                    Some(id) => vec![*id],
                                    // The shared chunk: any channel without one of its own.
                                    None => {
                                        ids.iter().filter(|i| !own.contains(i)).copied().collect()
                                    }
                                },
                            )
                        });
                    }
                    chunks.push(ChunkLoc {
                        start: parts[0].start,
                        span: *span,
                        parts,
                        checkpoints: l.checkpoints.clone(),
                    });
                    if l.snapshot_after {
                        snapshot_chunks
                            .push(cis.next().expect("the index places every chunk").clone());
                    }
                }
                (chunks, snapshot_chunks)
            }
            None => self.place_chunks(
                chunk_indexes,
                index.map(|(spans, _)| spans),
                &state_ids,
                &mut notes,
            )?,
        };
        let meta = match meta_index {
            Some((at, len)) => Some(self.read_meta(at, len)?),
            None => {
                notes.push(
                    "no replayscope metadata record: the final hash cannot be checked".to_string(),
                );
                None
            }
        };
        let listed = meta
            .as_ref()
            .and_then(|m| m.snapshot_offsets.clone())
            .filter(|o| o.len() == snapshot_chunks.len());
        let snapshots = match listed {
            Some(offsets) => snapshot_chunks
                .iter()
                .zip(offsets)
                .map(|(ci, through)| SnapshotLoc {
                    through,
                    start: ci.chunk_start_offset,
                    length: ci.chunk_length,
                })
                .collect(),
            None => {
                // Not listed (or not as many): each one says where it is.
                let mut found = Vec::with_capacity(snapshot_chunks.len());
                for ci in &snapshot_chunks {
                    if let ChunkKind::Snapshot { through, .. } =
                        self.chunk_kind(ci.chunk_start_offset, ci.chunk_length, &state_ids)?
                    {
                        found.push(SnapshotLoc {
                            through,
                            start: ci.chunk_start_offset,
                            length: ci.chunk_length,
                        });
                    }
                }
                found
            }
        };
        let markers = match markers_index {
            Some(at) => Some(self.read_markers(at)?),
            None => None,
        };
        let scan = Scan {
            markers,
            compression,
            chunks,
            snapshots,
            state_ids,
            channels,
            counts,
            meta,
            truncated_at: None,
        };
        self.segment_from_scan(scan, None, notes)
    }

    /// The groups and snapshot chunks of a file whose index does not place its chunks (version
    /// 1, or none): chunks of the snapshot channel alone (as their message indexes say) hold
    /// snapshots; the others are events, one chunk per group as a version 1 index lists them,
    /// or grouped by reading every chunk.
    fn place_chunks(
        &self,
        chunk_indexes: Vec<mcap::records::ChunkIndex>,
        spans: Option<Vec<ChunkSpan>>,
        state_ids: &[u16],
        notes: &mut Vec<String>,
    ) -> Result<(Vec<ChunkLoc>, Vec<mcap::records::ChunkIndex>)> {
        let (mut snapshot_chunks, chunk_indexes): (Vec<_>, Vec<_>) =
            chunk_indexes.into_iter().partition(|ci| {
                !state_ids.is_empty()
                    && !ci.message_index_offsets.is_empty()
                    && ci
                        .message_index_offsets
                        .keys()
                        .all(|id| state_ids.contains(id))
            });
        let part = ChunkPart::of_index;
        if let Some(spans) = spans.filter(|s| {
            s.len() == chunk_indexes.len()
                && !chunk_indexes
                    .iter()
                    .any(|ci| ci.message_index_offsets.is_empty())
        }) {
            let chunks = chunk_indexes
                .iter()
                .zip(spans)
                .map(|(ci, span)| {
                    ChunkLoc::single(
                        part(ci, ci.message_index_offsets.keys().copied().collect()),
                        span,
                    )
                })
                .collect();
            return Ok((chunks, snapshot_chunks));
        }
        notes.push(format!(
            "no valid {} attachment: chunk index rebuilt by reading {} chunks",
            index::INDEX_ATTACHMENT,
            chunk_indexes.len()
        ));
        let mut groups = Grouper::default();
        let mut chunks = Vec::new();
        for ci in chunk_indexes {
            match self.chunk_kind(ci.chunk_start_offset, ci.chunk_length, state_ids)? {
                ChunkKind::Events(found) => {
                    let p = part(&ci, found.channel_ids);
                    if let Some(g) = groups.add(p, found.span, found.last_offset) {
                        chunks.push(g);
                    }
                }
                // Without message indexes, only reading a chunk tells a snapshot.
                ChunkKind::Snapshot { .. } => snapshot_chunks.push(ci),
            }
        }
        if let Some(open) = groups.unfinished() {
            return Err(self.corrupt(
                open.start,
                format!(
                    "the chunks from here on hold {} events from offset {} with offsets \
                     missing between them",
                    open.span.events, open.span.first_offset
                ),
            ));
        }
        snapshot_chunks.sort_by_key(|c| c.chunk_start_offset);
        Ok((chunks, snapshot_chunks))
    }

    fn read_index(
        &self,
        at: u64,
        len: u64,
    ) -> Option<(Vec<ChunkSpan>, Option<Vec<index::GroupLayout>>)> {
        let (opcode, body) = self.record_at(at).ok()?;
        if opcode != op::ATTACHMENT || body.len() as u64 + format::RECORD_PREFIX != len {
            return None;
        }
        match mcap::parse_record(opcode, &body).ok()? {
            mcap::records::Record::Attachment { data, .. } => index::decode(&data),
            _ => None,
        }
    }

    /// The `replayscope.markers` metadata record at `at`.
    fn read_markers(&self, at: u64) -> Result<crate::event::marker::MarkerSet> {
        let (opcode, body) = self.record_at(at)?;
        match mcap::parse_record(opcode, &body)
            .map_err(|e| self.corrupt(at, format!("markers record: {e}")))?
        {
            mcap::records::Record::Metadata(m) => self.parse_markers(at, &m.metadata),
            _ => Err(self.corrupt(at, "metadata index points at a non-metadata record")),
        }
    }

    fn parse_markers(
        &self,
        at: u64,
        m: &BTreeMap<String, String>,
    ) -> Result<crate::event::marker::MarkerSet> {
        let text = m.get("markers").map_or("", String::as_str);
        crate::event::marker::MarkerSet::from_json(text, "markers record")
            .map_err(|e| self.corrupt(at, e))
    }

    fn read_meta(&self, at: u64, _len: u64) -> Result<SegmentMeta> {
        let (opcode, body) = self.record_at(at)?;
        let rec = mcap::parse_record(opcode, &body)
            .map_err(|e| self.corrupt(at, format!("metadata record: {e}")))?;
        match rec {
            mcap::records::Record::Metadata(m) => self.parse_meta(at, &m.metadata),
            _ => Err(self.corrupt(at, "metadata index points at a non-metadata record")),
        }
    }

    fn parse_meta(&self, at: u64, m: &BTreeMap<String, String>) -> Result<SegmentMeta> {
        let num = |k: &str| -> Result<u64> {
            m.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                self.corrupt(at, format!("replayscope metadata: missing or invalid {k}"))
            })
        };
        let hash = |k: &str| -> Result<[u8; 32]> {
            m.get(k).and_then(|v| parse_hash(v)).ok_or_else(|| {
                self.corrupt(at, format!("replayscope metadata: missing or invalid {k}"))
            })
        };
        Ok(SegmentMeta {
            events: num("events")?,
            first_offset: num("first_offset")?,
            chain_start: hash("chain_start")?,
            final_hash: hash("final_hash")?,
            time_source: m.get("time_source").cloned(),
            snapshot_offsets: m
                .get(snapshot::OFFSETS_KEY)
                .and_then(|v| snapshot::parse_offsets(v)),
        })
    }

    /// Decodes a chunk to learn its span (first/last offset, commit_ts, time) and per-channel
    /// counts, or that it holds a state snapshot (`state_ids`: the snapshot channel's ids known
    /// so far; a channel record in the chunk may add one).
    fn chunk_kind(&self, start: u64, length: u64, state_ids: &[u16]) -> Result<ChunkKind> {
        let data = read_chunk(self.storage.as_ref(), start, length)?;
        let mut span: Option<ChunkSpan> = None;
        let mut last_offset: Option<u64> = None;
        let mut counts = BTreeMap::new();
        let mut channels = Vec::new();
        let mut state_ids = state_ids.to_vec();
        for (opcode, body, _) in Records::new(&data).map_while(|r| r.ok()) {
            if opcode == op::CHANNEL
                && let Ok(mcap::records::Record::Channel(c)) = mcap::parse_record(opcode, body)
            {
                if c.topic == STATE_TOPIC {
                    state_ids.push(c.id);
                } else {
                    channels.push((c.id, channel_key(&c)));
                }
            }
        }
        let mut channel_ids: Vec<u16> = Vec::new();
        for item in ChunkMessages::new(&data) {
            let (channel, payload, at) = item.map_err(|e| {
                self.corrupt(
                    start,
                    format!("inside chunk at {}: {}", at_text(e.at), e.what),
                )
            })?;
            if state_ids.contains(&channel) {
                if span.is_some() {
                    return Err(self.corrupt(start, "a state snapshot in a chunk of events"));
                }
                let through = snapshot::through_of(payload)
                    .ok_or_else(|| self.corrupt(start, "malformed state snapshot (no offset)"))?;
                return Ok(ChunkKind::Snapshot { through, state_ids });
            }
            let head = event_head(payload).ok_or_else(|| {
                self.corrupt(
                    start,
                    format!("malformed ArchivedEvent at byte {at} of the chunk's records"),
                )
            })?;
            *counts.entry(channel).or_insert(0) += 1;
            if !channel_ids.contains(&channel) {
                channel_ids.push(channel);
            }
            if let Some(l) = last_offset.filter(|l| head.offset <= *l) {
                return Err(ArchiveError::OffsetGap {
                    path: self.name.clone(),
                    at: start,
                    expected: l + 1,
                    found: head.offset,
                });
            }
            last_offset = Some(head.offset);
            span.get_or_insert(ChunkSpan::starting(
                head.offset,
                head.commit_ts,
                head.commit_time_ns,
                None,
            ))
            .add(head.commit_ts, head.commit_time_ns);
        }
        let span = span.ok_or_else(|| self.corrupt(start, "chunk holds no events"))?;
        Ok(ChunkKind::Events(ChunkScan {
            span,
            last_offset: last_offset.unwrap_or(span.first_offset),
            channel_ids,
            uncompressed: data.len() as u64,
            counts,
            channels,
        }))
    }

    /// Walks the data section record by record (for files without a summary or footer).
    fn scan_data_section(&self) -> Result<Scan> {
        self.scan_data_section_from(Scan::default(), 8)
    }

    /// Walks the data section from byte `at` on, adding to what `scan` found before it.
    fn scan_data_section_from(&self, scan: Scan, at: u64) -> Result<Scan> {
        let mut scan = scan;
        let mut at = at;
        let mut groups = Grouper::default();
        let mut pending_counts: BTreeMap<u16, u64> = BTreeMap::new();
        loop {
            if at + format::RECORD_PREFIX > self.size {
                scan.truncated_at = Some(at);
                break;
            }
            let prefix = self.read(at, format::RECORD_PREFIX)?;
            let opcode = prefix[0];
            let len = format::u64_at(&prefix, 1).unwrap_or(u64::MAX);
            let end = at
                .checked_add(format::RECORD_PREFIX)
                .and_then(|b| b.checked_add(len))
                .filter(|e| *e <= self.size);
            let Some(end) = end else {
                scan.truncated_at = Some(at);
                break;
            };
            match opcode {
                op::FOOTER | op::DATA_END => break,
                op::HEADER | op::SCHEMA => {}
                op::CHANNEL => {
                    let (_, body) = self.record_at(at)?;
                    if let Ok(mcap::records::Record::Channel(c)) = mcap::parse_record(opcode, &body)
                    {
                        if c.topic == STATE_TOPIC {
                            if !scan.state_ids.contains(&c.id) {
                                scan.state_ids.push(c.id);
                            }
                        } else if !scan.channels.iter().any(|(id, _)| *id == c.id) {
                            scan.channels.push((c.id, channel_key(&c)));
                        }
                    }
                }
                op::CHUNK => match self.chunk_kind(at, end - at, &scan.state_ids) {
                    Ok(ChunkKind::Snapshot { through, state_ids }) => {
                        scan.state_ids = state_ids;
                        scan.snapshots.push(SnapshotLoc {
                            through,
                            start: at,
                            length: end - at,
                        });
                    }
                    Ok(ChunkKind::Events(found)) => {
                        // Counted once its group is whole (a scan that stops inside a group
                        // starts again from the group's first chunk).
                        for (k, v) in found.counts {
                            *pending_counts.entry(k).or_insert(0) += v;
                        }
                        for c in found.channels {
                            if !scan.channels.iter().any(|(id, _)| *id == c.0) {
                                scan.channels.push(c);
                            }
                        }
                        let part = ChunkPart {
                            start: at,
                            length: end - at,
                            uncompressed: found.uncompressed,
                            channels: found.channel_ids,
                            hash: None,
                            own: false,
                        };
                        if let Some(group) = groups.add(part, found.span, found.last_offset) {
                            scan.chunks.push(group);
                            for (k, v) in std::mem::take(&mut pending_counts) {
                                *scan.counts.entry(k).or_insert(0) += v;
                            }
                        }
                    }
                    Err(e) => {
                        // A half-written last chunk is what a crash leaves behind.
                        if end == self.size || self.size - end < TAIL_LEN {
                            scan.truncated_at = Some(at);
                            break;
                        }
                        return Err(e);
                    }
                },
                op::MESSAGE => {
                    return Err(self.corrupt(
                        at,
                        "message outside a chunk: unchunked MCAP files are not supported (rewrite \
                         it with chunks, e.g. `mcap recover`)",
                    ));
                }
                op::METADATA => {
                    let (_, body) = self.record_at(at)?;
                    if let Ok(mcap::records::Record::Metadata(m)) =
                        mcap::parse_record(opcode, &body)
                    {
                        if m.name == METADATA_NAME {
                            scan.meta = Some(self.parse_meta(at, &m.metadata)?);
                        } else if m.name == crate::archive::MARKERS_METADATA {
                            scan.markers = Some(self.parse_markers(at, &m.metadata)?);
                        }
                    }
                }
                _ => {}
            }
            at = end;
        }
        if let Some(open) = groups.unfinished() {
            // Chunks of a group whose other chunks are not written yet (its writer was
            // stopped, or is writing them): read once the group is whole.
            scan.truncated_at = Some(scan.truncated_at.map_or(open.start, |t| t.min(open.start)));
        }
        Ok(scan)
    }

    fn segment_from_scan(
        self,
        scan: Scan,
        truncated_at: Option<u64>,
        notes: Vec<String>,
    ) -> Result<Segment> {
        // Spans must be contiguous and in commit order.
        for w in scan.chunks.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.span.first_offset != a.span.first_offset + a.span.events {
                return Err(ArchiveError::OffsetGap {
                    path: self.name.clone(),
                    at: b.start,
                    expected: a.span.first_offset + a.span.events,
                    found: b.span.first_offset,
                });
            }
            if b.span.first_commit_ts <= a.span.last_commit_ts {
                return Err(ArchiveError::OrderBackwards {
                    path: self.name.clone(),
                    offset: b.span.first_offset,
                    commit_ts: b.span.first_commit_ts,
                    prev_commit_ts: a.span.last_commit_ts,
                });
            }
        }
        if let (Some(meta), Some(first)) = (&scan.meta, scan.chunks.first())
            && truncated_at.is_none()
        {
            let events: u64 = scan.chunks.iter().map(|c| c.span.events).sum();
            if meta.first_offset != first.span.first_offset || meta.events != events {
                return Err(self.corrupt(
                    0,
                    format!(
                        "metadata says {} events from offset {}, the chunks hold {events} from offset {}",
                        meta.events, meta.first_offset, first.span.first_offset
                    ),
                ));
            }
        }
        // Snapshots must be of events the file holds, in order.
        let (first, last) = (
            scan.chunks.first().map(|c| c.span.first_offset),
            scan.chunks.last().map(|c| c.span.last_offset()),
        );
        let mut prev = None;
        for l in &scan.snapshots {
            let held =
                first.is_some_and(|f| l.through >= f) && last.is_some_and(|e| l.through <= e);
            if !held || prev.is_some_and(|p| l.through <= p) {
                return Err(self.corrupt(
                    l.start,
                    format!(
                        "state snapshot at offset {} is not after an event of this file in order",
                        l.through
                    ),
                ));
            }
            prev = Some(l.through);
        }
        let mut keys = Vec::new();
        let mut channel_map = ChannelMap::default();
        for (id, key) in scan.channels {
            channel_map.insert(id, keys.len());
            keys.push(key);
        }
        Ok(Segment {
            id: cache::next_segment_id(),
            storage: self.storage,
            chunks: scan.chunks,
            snapshots: scan.snapshots,
            state_ids: scan.state_ids,
            compression: scan.compression,
            markers: scan.markers,
            channel_map,
            channel_counts: scan.counts,
            meta: scan.meta,
            truncated_at,
            notes,
            keys,
        })
    }
}

fn at_text(at: u64) -> String {
    format!("byte {at}")
}

fn channel_key(c: &mcap::records::Channel) -> ChannelKey {
    match (c.metadata.get("namespace"), c.metadata.get("agent_id")) {
        (Some(ns), Some(agent)) => ChannelKey {
            namespace: ns.clone(),
            agent_id: agent.clone(),
        },
        _ => {
            let (ns, agent) = c.topic.split_once('/').unwrap_or(("", &c.topic));
            ChannelKey {
                namespace: ns.to_string(),
                agent_id: agent.to_string(),
            }
        }
    }
}
