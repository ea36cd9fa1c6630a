//! The `replayscope.index` attachment: for every chunk (in file order), the first offset, event
//! count, commit_ts range and wall-time range of its events, so that seeking by offset, commit_ts
//! or time is a binary search over chunks followed by reading one chunk.
//!
//! Binary layout (little-endian): magic `RSIX`, version u32 = 1, count u64, then per chunk
//! `first_offset, events, first_commit_ts, last_commit_ts, first_time_ns, last_time_ns` (u64 each;
//! `u64::MAX` = no wall time) and the 32-byte hash chain head before the chunk, so that a reader
//! starting anywhere can check the chain from that chunk on.

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

pub const INDEX_ATTACHMENT: &str = "replayscope.index";
pub const INDEX_MEDIA_TYPE: &str = "application/x-replayscope-index";
const MAGIC: &[u8; 4] = b"RSIX";
const VERSION: u32 = 1;
const ENTRY: usize = 6 * 8 + 32;

pub fn encode(spans: &[ChunkSpan]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + spans.len() * ENTRY);
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
    out
}

/// Decodes an index; `None` if it is malformed (the caller rebuilds it).
pub fn decode(data: &[u8]) -> Option<Vec<ChunkSpan>> {
    if data.len() < 16 || &data[0..4] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(data[4..8].try_into().ok()?);
    if version != VERSION {
        return None;
    }
    let count = u64::from_le_bytes(data[8..16].try_into().ok()?);
    let body = &data[16..];
    if (body.len() as u64) != count.checked_mul(ENTRY as u64)? {
        return None;
    }
    let u =
        |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let opt = |v: u64| (v != u64::MAX).then_some(v);
    let spans: Vec<ChunkSpan> = body
        .chunks_exact(ENTRY)
        .map(|b| ChunkSpan {
            first_offset: u(b, 0),
            events: u(b, 1),
            first_commit_ts: u(b, 2),
            last_commit_ts: u(b, 3),
            first_time_ns: opt(u(b, 4)),
            last_time_ns: opt(u(b, 5)),
            chain_before: b[48..80].try_into().ok(),
        })
        .collect();
    // Spans must be contiguous and non-empty, or the index is not trusted.
    for w in spans.windows(2) {
        if w[0].events == 0 || w[1].first_offset != w[0].first_offset + w[0].events {
            return None;
        }
    }
    Some(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let spans = vec![
            ChunkSpan {
                first_offset: 0,
                events: 10,
                first_commit_ts: 1,
                last_commit_ts: 10,
                first_time_ns: Some(5),
                last_time_ns: Some(9),
                chain_before: Some([0; 32]),
            },
            ChunkSpan {
                first_offset: 10,
                events: 3,
                first_commit_ts: 11,
                last_commit_ts: 13,
                first_time_ns: None,
                last_time_ns: None,
                chain_before: Some([7; 32]),
            },
        ];
        let enc = encode(&spans);
        assert_eq!(decode(&enc), Some(spans.clone()));
        assert_eq!(decode(&enc[..enc.len() - 1]), None);
        assert_eq!(decode(b"nope"), None);
        let mut gap = spans;
        gap[1].first_offset = 11;
        assert_eq!(decode(&encode(&gap)), None);
    }
}
