//! State snapshots (DESIGN.md section 12): the key/value state folded from an archive's first
//! event, stored by the writer every N events or M bytes so that the state at any point is the
//! nearest snapshot plus the events after it, never a fold from the start.
//!
//! Each snapshot is one MCAP message on the channel `replayscope.state` (schema
//! `replayscope.v1.StateSnapshot`, `proto/replayscope/v1/archive.proto`), alone in a chunk of
//! its own right after the event chunk it ends with: readers of events never decompress it,
//! other MCAP readers show it as a message of its own topic. Its entries are `ArchivedEvent`s
//! of one operation each (the key, its value as stored, its version; the offset and commit_ts of
//! the transaction that wrote it), so values are copied as they are stored, never converted. The
//! metadata record lists the snapshots' offsets (`snapshot_offsets`), so opening an archive
//! finds them without reading them; the summary's chunk index tells their chunks from event
//! chunks by channel.
//!
//! The hash chain covers events only. A snapshot carries the hash of its state: loading one
//! checks it, and `verify` compares it with a fold of the events.

use bytes::Bytes;

use crate::event::wire::{NameCache, decode_event};
use crate::event::{Event, Operation, ValueError};
use crate::state::{Entry, KvState, StateKey};

/// The MCAP topic of the snapshot channel.
pub const STATE_TOPIC: &str = "replayscope.state";
/// The schema name of snapshot messages.
pub const STATE_SCHEMA_NAME: &str = "replayscope.v1.StateSnapshot";
/// The metadata key listing the snapshots' offsets (comma-separated, ascending).
pub const OFFSETS_KEY: &str = "snapshot_offsets";

/// When the writer stores a snapshot: at the end of a chunk, once `every_events` events or
/// `every_bytes` bytes of events were written since the last one — but never before the events
/// since the last one are `min_ratio` times the last snapshot's size, which bounds what
/// snapshots add to an archive at about 1 / `min_ratio` of it, whatever the size of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub every_events: u64,
    pub every_bytes: u64,
    pub min_ratio: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every_events: 20_000,
            every_bytes: 16 * 1024 * 1024,
            min_ratio: 20,
        }
    }
}

/// The state a writer folds for its snapshots, handed from one segment's writer to the next.
#[derive(Debug, Clone)]
pub struct StateCarry {
    pub state: KvState,
    /// The archive's first offset (where the fold started).
    pub first_offset: u64,
    pub(crate) events_since: u64,
    pub(crate) bytes_since: u64,
    pub(crate) last_len: u64,
}

impl StateCarry {
    /// The state through the event before `first_offset`'s archive starts: empty.
    pub fn starting(first_offset: u64) -> StateCarry {
        StateCarry::at(KvState::new(), first_offset)
    }

    /// A known state of an archive that starts at `first_offset` (a directory continued by a
    /// restarted recorder).
    pub fn at(state: KvState, first_offset: u64) -> StateCarry {
        StateCarry {
            state,
            first_offset,
            events_since: 0,
            bytes_since: 0,
            last_len: 0,
        }
    }

    /// Folds one event of `payload_len` stored bytes.
    pub(crate) fn apply(&mut self, event: &Event, payload_len: usize) {
        self.state.apply(event);
        self.events_since += 1;
        self.bytes_since += payload_len as u64;
    }

    /// Whether a snapshot is due under `policy`.
    pub(crate) fn due(&self, policy: &SnapshotPolicy) -> bool {
        (self.events_since >= policy.every_events || self.bytes_since >= policy.every_bytes)
            && self.bytes_since >= self.last_len.saturating_mul(policy.min_ratio)
    }

    /// Counts a snapshot of `len` bytes just written.
    pub(crate) fn written(&mut self, len: usize) {
        self.events_since = 0;
        self.bytes_since = 0;
        self.last_len = len as u64;
    }
}

/// A snapshot read back.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The state after the event at this offset.
    pub through: u64,
    /// Where the fold started (the archive's first offset).
    pub first_offset: u64,
    pub state: KvState,
}

/// Encodes the state after `through` as a `StateSnapshot`.
pub fn encode(state: &KvState, through: u64, first_offset: u64) -> Result<Vec<u8>, ValueError> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut buf = Vec::with_capacity(64 + state.len() * 128);
    prost::encoding::uint64::encode(1, &through, &mut buf);
    prost::encoding::uint64::encode(2, &first_offset, &mut buf);
    prost::encoding::bytes::encode(3, &state.hash().to_vec(), &mut buf);
    prost::encoding::uint64::encode(4, &(state.len() as u64), &mut buf);
    for (k, e) in state.iter() {
        let entry = Event {
            offset: e.offset,
            txn_id: String::new(),
            commit_ts: e.commit_ts,
            commit_time_ns: None,
            namespace: k.namespace.clone(),
            agent_id: k.agent_id.clone(),
            operations: vec![Operation {
                key: k.key.clone(),
                value: Some(e.value.clone()),
                version: e.version,
            }],
        };
        let bytes = entry.encode()?;
        encode_key(5, WireType::LengthDelimited, &mut buf);
        encode_varint(bytes.len() as u64, &mut buf);
        buf.extend_from_slice(&bytes);
    }
    Ok(buf)
}

/// The offset a snapshot is at, read from the start of its bytes (field 1 is written first).
pub fn through_of(payload: &[u8]) -> Option<u64> {
    let (&tag, rest) = payload.split_first()?;
    if tag != 0x08 {
        return None;
    }
    prost::encoding::decode_varint(&mut &rest[..]).ok()
}

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("malformed state snapshot: {0}")]
    Malformed(String),
    #[error(
        "state snapshot at offset {through}: its state hashes to {actual}, the snapshot says {expected}"
    )]
    HashMismatch {
        through: u64,
        expected: String,
        actual: String,
    },
}

/// Decodes a snapshot and checks its state against the hash it carries. Values stay slices of
/// `payload` (decoded on use).
pub fn decode(payload: &Bytes) -> Result<Snapshot, SnapshotError> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let bad = |what: &str| SnapshotError::Malformed(what.to_string());
    let mut through = None;
    let mut first_offset = 0;
    let mut hash: Option<[u8; 32]> = None;
    let mut state = KvState::new();
    let mut names = NameCache::default();
    let mut rest: &[u8] = payload;
    while !rest.is_empty() {
        let (field, wire) = decode_key(&mut rest).map_err(|e| bad(&e.to_string()))?;
        match (field, wire) {
            (1, WireType::Varint) => {
                through = Some(decode_varint(&mut rest).map_err(|e| bad(&e.to_string()))?)
            }
            (2, WireType::Varint) => {
                first_offset = decode_varint(&mut rest).map_err(|e| bad(&e.to_string()))?
            }
            (4, WireType::Varint) => {
                decode_varint(&mut rest).map_err(|e| bad(&e.to_string()))?;
            }
            (3 | 5, WireType::LengthDelimited) => {
                let len = decode_varint(&mut rest).map_err(|e| bad(&e.to_string()))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= rest.len())
                    .ok_or_else(|| bad("a field runs past the end"))?;
                let start = payload.len() - rest.len();
                let field_bytes = payload.slice(start..start + len);
                rest = &rest[len..];
                if field == 3 {
                    hash = Some(
                        field_bytes[..]
                            .try_into()
                            .map_err(|_| bad("the state hash is not 32 bytes"))?,
                    );
                    continue;
                }
                let entry =
                    decode_event(&field_bytes, &mut names).map_err(|e| bad(&e.to_string()))?;
                let [op] = &entry.operations[..] else {
                    return Err(bad("an entry must hold exactly one operation"));
                };
                let value = op
                    .value
                    .clone()
                    .ok_or_else(|| bad("an entry holds a delete"))?;
                state.insert(
                    StateKey {
                        namespace: entry.namespace.clone(),
                        agent_id: entry.agent_id.clone(),
                        key: op.key.clone(),
                    },
                    Entry {
                        value,
                        version: op.version,
                        commit_ts: entry.commit_ts,
                        offset: entry.offset,
                    },
                );
            }
            _ => return Err(bad(&format!("unexpected field {field}"))),
        }
    }
    let through = through.ok_or_else(|| bad("no through_offset"))?;
    let expected = hash.ok_or_else(|| bad("no state_hash"))?;
    let actual = state.hash();
    if actual != expected {
        return Err(SnapshotError::HashMismatch {
            through,
            expected: crate::event::hex(&expected),
            actual: crate::event::hex(&actual),
        });
    }
    Ok(Snapshot {
        through,
        first_offset,
        state,
    })
}

/// The `snapshot_offsets` metadata value.
pub fn offsets_text(offsets: &[u64]) -> String {
    offsets
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses the `snapshot_offsets` metadata value (`None` when malformed).
pub fn parse_offsets(text: &str) -> Option<Vec<u64>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let v: Vec<u64> = text
        .split(',')
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    v.windows(2).all(|w| w[0] < w[1]).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::generate::{GenOptions, Generator};

    #[test]
    fn a_snapshot_round_trips_and_a_changed_byte_is_caught() {
        let mut state = KvState::new();
        for e in Generator::new(GenOptions::default()).take(2000) {
            state.apply(&e);
        }
        let bytes = encode(&state, 1999, 0).unwrap();
        assert_eq!(through_of(&bytes), Some(1999));
        let back = decode(&Bytes::from(bytes.clone())).unwrap();
        assert_eq!((back.through, back.first_offset), (1999, 0));
        assert_eq!(back.state, state);
        assert_eq!(back.state.hash(), state.hash());
        // A changed byte inside a value: the hash no longer matches (or it no longer parses).
        let mut bad = bytes;
        let at = bad.len() - 40;
        bad[at] ^= 0x20;
        assert!(decode(&Bytes::from(bad)).is_err());
        assert_eq!(parse_offsets(&offsets_text(&[3, 9])), Some(vec![3, 9]));
        assert_eq!(parse_offsets("9,3"), None);
        assert_eq!(parse_offsets(""), Some(vec![]));
    }

    #[test]
    fn the_policy_bounds_the_size_share() {
        let p = SnapshotPolicy {
            every_events: 10,
            every_bytes: u64::MAX,
            min_ratio: 20,
        };
        let mut c = StateCarry::starting(0);
        c.events_since = 10;
        c.bytes_since = 1000;
        assert!(c.due(&p));
        c.written(100);
        c.events_since = 10;
        c.bytes_since = 1999;
        assert!(
            !c.due(&p),
            "events since are less than 20x the last snapshot"
        );
        c.bytes_since = 2000;
        assert!(c.due(&p));
    }
}
