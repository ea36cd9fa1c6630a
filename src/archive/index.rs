//! The `replayscope.index` attachment: for every chunk (in file order), the first offset, event
//! count, commit_ts range and wall-time range of its events, so that seeking by offset, commit_ts
//! or time is a binary search over chunks followed by reading one chunk.
//!
//! A "chunk" here is a group of MCAP chunks that together hold a contiguous range of offsets:
//! since format version 2 the writer stores each busy agent's events of a ~512 KiB stretch in a
//! chunk of its own (the quiet agents' together in one more), so that a one-agent read
//! decompresses only that agent's chunks; before, every group was one chunk of every agent.
//!
//! Binary layout (little-endian): magic `RSIX`, version u32 (1 or 2), count u64, then per group
//! `first_offset, events, first_commit_ts, last_commit_ts, first_time_ns, last_time_ns` (u64 each;
//! `u64::MAX` = no wall time) and the 32-byte hash chain head before the group, so that a reader
//! starting anywhere can check the chain from that group on. Version 2 adds per group the number
//! of its MCAP chunks (u32) and flags (u32; bit 0: a state snapshot chunk follows the group),
//! then, for every chunk of every group in file order, the MCAP channel id it holds (u16;
//! `0xFFFF`: the chunk the quiet agents share), then for every chunk its hash (32 bytes, see
//! [`crate::archive::integrity::ChunkHasher`]). Version 2 files have no MCAP message indexes
//! (16 bytes per event): the index tells which chunk holds which agent. Version 3 adds chain
//! checkpoints: a u32 `every` (0: none), then per group the chain head before its message
//! `every`, `2 * every`, ... (`(events - 1) / every` heads of 32 bytes), so that a reader starting
//! in the middle of a group checks the chain from the checkpoint before its start to the one
//! after, not over the whole group.

/// What the index knows about one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    pub first_offset: u64,
    pub events: u64,
    pub first_commit_ts: u64,
    pub last_commit_ts: u64,
    pub first_time_ns: Option<u64>,
    pub last_time_ns: Option<u64>,
    /// The hash chain head before the chunk's first event (`None` when the index was rebuilt
    /// without knowing it).
    pub chain_before: Option<[u8; 32]>,
    /// How many MCAP chunks (consecutive in the file) hold the group's events.
    pub parts: u64,
}

impl ChunkSpan {
    /// The span of a chunk whose first event has these fields (`events` = 0 until `add`).
    pub fn starting(
        offset: u64,
        commit_ts: u64,
        time_ns: Option<u64>,
        chain_before: Option<[u8; 32]>,
    ) -> ChunkSpan {
        ChunkSpan {
            first_offset: offset,
            events: 0,
            first_commit_ts: commit_ts,
            last_commit_ts: commit_ts,
            first_time_ns: time_ns,
            last_time_ns: time_ns,
            chain_before,
            parts: 1,
        }
    }

    /// Counts one more event at the end of the chunk.
    pub fn add(&mut self, commit_ts: u64, time_ns: Option<u64>) {
        self.events += 1;
        self.last_commit_ts = commit_ts;
        if self.first_time_ns.is_none() {
            self.first_time_ns = time_ns;
        }
        if time_ns.is_some() {
            self.last_time_ns = time_ns;
        }
    }

    pub fn last_offset(&self) -> u64 {
        self.first_offset + self.events.saturating_sub(1)
    }
}

/// Where a group's events are (format version 2): the channel of each of its chunks, in file
/// order, and whether a state snapshot chunk follows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupLayout {
    /// The MCAP channel id each chunk holds (`None`: the chunk shared by the quiet agents).
    pub chunks: Vec<Option<u16>>,
    /// The hash of each chunk's events.
    pub hashes: Vec<[u8; 32]>,
    pub snapshot_after: bool,
    /// The chain heads recorded inside the group (version 3; none before).
    pub checkpoints: ChainCheckpoints,
}

/// Chain heads recorded inside a group: `heads[i]` is the head before the group's message
/// `every * (i + 1)` (in offset order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainCheckpoints {
    pub every: u32,
    pub heads: Vec<[u8; 32]>,
}

/// How many events apart a writer records chain checkpoints inside a group: a seek hashes at
/// most this many events before it delivers the first (a 512 KiB group holds ~1,600 `gen`
/// events).
pub const CHECKPOINT_EVERY: u32 = 256;

/// How many checkpoints a group of `events` events has when they are `every` apart.
pub fn checkpoints_in(events: u64, every: u32) -> u64 {
    if every == 0 {
        0
    } else {
        events.saturating_sub(1) / u64::from(every)
    }
}

const SHARED: u16 = u16::MAX;

pub const INDEX_ATTACHMENT: &str = "replayscope.index";
pub const INDEX_MEDIA_TYPE: &str = "application/x-replayscope-index";
const MAGIC: &[u8; 4] = b"RSIX";
const VERSION: u32 = 3;
const ENTRY_V1: usize = 6 * 8 + 32;

/// Encodes a version 3 index (`layout` has an entry per span; its checkpoints are
/// [`CHECKPOINT_EVERY`] events apart).
pub fn encode(spans: &[ChunkSpan], layout: &[GroupLayout]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + spans.len() * (ENTRY_V1 + 16));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(spans.len() as u64).to_le_bytes());
    for s in spans {
        for v in [
            s.first_offset,
            s.events,
            s.first_commit_ts,
            s.last_commit_ts,
            s.first_time_ns.unwrap_or(u64::MAX),
            s.last_time_ns.unwrap_or(u64::MAX),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&s.chain_before.unwrap_or([0; 32]));
    }
    for l in layout {
        out.extend_from_slice(&(l.chunks.len() as u32).to_le_bytes());
        out.extend_from_slice(&u32::from(l.snapshot_after).to_le_bytes());
    }
    for l in layout {
        for c in &l.chunks {
            out.extend_from_slice(&c.unwrap_or(SHARED).to_le_bytes());
        }
    }
    for l in layout {
        for h in &l.hashes {
            out.extend_from_slice(h);
        }
    }
    out.extend_from_slice(&CHECKPOINT_EVERY.to_le_bytes());
    for (s, l) in spans.iter().zip(layout) {
        let c = &l.checkpoints;
        // A group without them (0 events apart) cannot be told apart from one with: the writer
        // records them for every group.
        debug_assert_eq!(c.every, CHECKPOINT_EVERY);
        debug_assert_eq!(
            c.heads.len() as u64,
            checkpoints_in(s.events, CHECKPOINT_EVERY)
        );
        for h in &c.heads {
            out.extend_from_slice(h);
        }
    }
    out
}

/// Decodes an index: the spans, and (version 2) where each group's chunks are; `None` if it is
/// malformed (the caller rebuilds it).
pub fn decode(data: &[u8]) -> Option<(Vec<ChunkSpan>, Option<Vec<GroupLayout>>)> {
    if data.len() < 16 || &data[0..4] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(data[4..8].try_into().ok()?);
    if !(1..=VERSION).contains(&version) {
        return None;
    }
    let count = u64::from_le_bytes(data[8..16].try_into().ok()?);
    let spans_len = usize::try_from(count.checked_mul(ENTRY_V1 as u64)?).ok()?;
    let (body, rest) = data[16..].split_at_checked(spans_len)?;
    let layout = if version >= 2 {
        let (heads, rest) = rest.split_at_checked(usize::try_from(count).ok()?.checked_mul(8)?)?;
        let sizes: Vec<(usize, bool)> = heads
            .chunks_exact(8)
            .map(|h| {
                let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                (n, h[4] & 1 == 1)
            })
            .collect();
        let total: usize = sizes.iter().map(|(n, _)| n).sum();
        let (ids, rest) = rest.split_at_checked(total.checked_mul(2)?)?;
        let (hashes, rest) = rest.split_at_checked(total.checked_mul(32)?)?;
        if sizes.iter().any(|(n, _)| *n == 0) {
            return None;
        }
        let (every, mut checkpoints) = match version {
            2 if rest.is_empty() => (0, rest),
            3 => {
                let (every, rest) = rest.split_at_checked(4)?;
                (u32::from_le_bytes(every.try_into().ok()?), rest)
            }
            _ => return None,
        };
        let mut checkpoints_of = |events: u64| -> Option<ChainCheckpoints> {
            let n = usize::try_from(checkpoints_in(events, every)).ok()?;
            let (these, rest) = checkpoints.split_at_checked(n.checked_mul(32)?)?;
            checkpoints = rest;
            Some(ChainCheckpoints {
                every,
                heads: these
                    .chunks_exact(32)
                    .map(|h| <[u8; 32]>::try_from(h).unwrap_or_default())
                    .collect(),
            })
        };
        let mut ids = ids
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]));
        let mut hashes = hashes
            .chunks_exact(32)
            .map(|h| <[u8; 32]>::try_from(h).unwrap_or_default());
        let events = body
            .chunks_exact(ENTRY_V1)
            .map(|b| u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8])));
        let layout = sizes
            .into_iter()
            .zip(events)
            .map(|((n, snapshot_after), events)| {
                Some(GroupLayout {
                    chunks: ids
                        .by_ref()
                        .take(n)
                        .map(|id| (id != SHARED).then_some(id))
                        .collect(),
                    hashes: hashes.by_ref().take(n).collect(),
                    snapshot_after,
                    checkpoints: checkpoints_of(events)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        if !checkpoints.is_empty() {
            return None;
        }
        Some(layout)
    } else if rest.is_empty() {
        None
    } else {
        return None;
    };
    let u =
        |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let opt = |v: u64| (v != u64::MAX).then_some(v);
    let spans: Vec<ChunkSpan> = body
        .chunks_exact(ENTRY_V1)
        .zip(0..)
        .map(|(b, i)| ChunkSpan {
            first_offset: u(b, 0),
            events: u(b, 1),
            first_commit_ts: u(b, 2),
            last_commit_ts: u(b, 3),
            first_time_ns: opt(u(b, 4)),
            last_time_ns: opt(u(b, 5)),
            chain_before: b[48..80].try_into().ok(),
            parts: layout
                .as_ref()
                .map_or(1, |l: &Vec<GroupLayout>| l[i].chunks.len() as u64),
        })
        .collect();
    // Spans must be contiguous and non-empty, each of at least one chunk, or the index is not
    // trusted.
    for w in spans.windows(2) {
        if w[0].events == 0 || w[1].first_offset != w[0].first_offset + w[0].events {
            return None;
        }
    }
    Some((spans, layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let spans = vec![
            ChunkSpan {
                first_offset: 0,
                events: 600,
                first_commit_ts: 1,
                last_commit_ts: 10,
                first_time_ns: Some(5),
                last_time_ns: Some(9),
                chain_before: Some([0; 32]),
                parts: 1,
            },
            ChunkSpan {
                first_offset: 600,
                events: 3,
                first_commit_ts: 11,
                last_commit_ts: 13,
                first_time_ns: None,
                last_time_ns: None,
                chain_before: Some([7; 32]),
                parts: 3,
            },
        ];
        let layout = vec![
            GroupLayout {
                chunks: vec![None],
                hashes: vec![[1; 32]],
                snapshot_after: true,
                // Before messages 256 and 512.
                checkpoints: ChainCheckpoints {
                    every: CHECKPOINT_EVERY,
                    heads: vec![[5; 32], [6; 32]],
                },
            },
            GroupLayout {
                chunks: vec![Some(2), None, Some(1)],
                hashes: vec![[2; 32], [3; 32], [4; 32]],
                snapshot_after: false,
                checkpoints: ChainCheckpoints {
                    every: CHECKPOINT_EVERY,
                    heads: vec![],
                },
            },
        ];
        let enc = encode(&spans, &layout);
        assert_eq!(decode(&enc), Some((spans.clone(), Some(layout.clone()))));
        assert_eq!(decode(&enc[..enc.len() - 1]), None);
        assert_eq!(decode(b"nope"), None);
        let mut gap = spans.clone();
        gap[1].first_offset = 601;
        assert_eq!(decode(&encode(&gap, &layout)), None);
        // Version 2 (no checkpoints) still reads.
        let mut v2 = enc[..enc.len() - 4 - 2 * 32].to_vec();
        v2[4..8].copy_from_slice(&2u32.to_le_bytes());
        let (read, layout_v2) = decode(&v2).unwrap();
        assert_eq!(read, spans);
        let mut without = layout.clone();
        for l in &mut without {
            l.checkpoints = ChainCheckpoints::default();
        }
        assert_eq!(layout_v2, Some(without));
        // A checkpoint too few or too many is not trusted.
        assert_eq!(decode(&enc[..enc.len() - 32]), None);
        let mut more = enc.clone();
        more.extend_from_slice(&[0; 32]);
        assert_eq!(decode(&more), None);
        // Version 1 (one chunk per group, no layout) still reads.
        let mut v1 = enc[..16 + 2 * ENTRY_V1].to_vec();
        v1[4..8].copy_from_slice(&1u32.to_le_bytes());
        let (read, layout) = decode(&v1).unwrap();
        assert_eq!(layout, None);
        assert_eq!(read.iter().map(|s| s.parts).collect::<Vec<_>>(), [1, 1]);
    }
}
