//! Full integrity check of an archive: every chunk's CRC, every event decoded, contiguous offsets,
//! strictly increasing commit_ts, the hash chain of every segment against its metadata record, and
//! optionally the final hash against one the user expects. Every state snapshot is read (its
//! own hash checked) and compared with the state folded from the events up to it.

use crate::archive::reader::Archive;
use crate::archive::{ArchiveError, Result};
use crate::event::hex;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub archive: String,
    pub events: u64,
    pub first_offset: Option<u64>,
    pub last_offset: Option<u64>,
    pub segments: usize,
    pub chunks: usize,
    pub final_hash: String,
    /// False when no metadata record holds a final hash to compare with (then the hash is only
    /// computed, not checked).
    pub hash_recorded: bool,
    /// State snapshots checked against the fold of the events.
    pub snapshots: usize,
    pub notes: Vec<String>,
}

pub fn verify(archive: &Archive, expect_hash: Option<[u8; 32]>) -> Result<VerifyReport> {
    // The chain, and the chunk hashes that one-agent reads check instead of it.
    let mut cursor = archive.cursor()?.check_chunk_hashes(true)?;
    let mut events = 0u64;
    let snapshots = archive.snapshots();
    let mut next_snapshot = snapshots.iter().peekable();
    // The state is folded only when there are snapshots to compare it with.
    let mut state = (!snapshots.is_empty()).then(crate::state::KvState::new);
    while let Some(event) = cursor.next_event() {
        let event = event?;
        event.check_values().map_err(|e| ArchiveError::Decode {
            path: archive.name().to_string(),
            offset: event.offset,
            message: e.to_string(),
        })?;
        events += 1;
        if let Some(state) = state.as_mut() {
            state.apply(&event);
            while let Some((seg, loc)) = next_snapshot.next_if(|(_, l)| l.through <= event.offset) {
                check_snapshot(archive, *seg, loc, state)?;
            }
        }
    }
    let computed = cursor
        .chain_head()
        .unwrap_or(crate::archive::integrity::ZERO_HASH);
    let recorded = archive.recorded_final_hash();
    if let Some(recorded) = recorded
        && recorded != computed
    {
        return Err(ArchiveError::HashMismatch {
            path: archive.name().to_string(),
            context: " (final hash in the metadata record)".to_string(),
            expected: hex(&recorded),
            actual: hex(&computed),
        });
    }
    if let Some(expected) = expect_hash
        && expected != computed
    {
        return Err(ArchiveError::HashMismatch {
            path: archive.name().to_string(),
            context: " (--expect-hash)".to_string(),
            expected: hex(&expected),
            actual: hex(&computed),
        });
    }
    Ok(VerifyReport {
        archive: archive.name().to_string(),
        events,
        first_offset: archive.first_offset(),
        last_offset: archive.last_offset(),
        segments: archive.segments().len(),
        chunks: archive.segments().iter().map(|s| s.chunk_count()).sum(),
        final_hash: hex(&computed),
        hash_recorded: recorded.is_some(),
        snapshots: snapshots.len(),
        notes: archive.notes().to_vec(),
    })
}

/// The snapshot at `loc` (its own hash checked as it is read) holds the state folded from the
/// events.
fn check_snapshot(
    archive: &Archive,
    seg: usize,
    loc: &crate::archive::reader::SnapshotLoc,
    folded: &crate::state::KvState,
) -> Result<()> {
    let segment = &archive.segments()[seg];
    let snap = segment.read_snapshot(loc)?;
    let (stored, computed) = (snap.state.hash(), folded.hash());
    if snap.first_offset != archive.first_offset().unwrap_or(0) || stored != computed {
        return Err(ArchiveError::HashMismatch {
            path: segment.name().to_string(),
            context: format!(
                " (the state snapshot at offset {}, folded from offset {}, against the events from offset {})",
                loc.through,
                snap.first_offset,
                archive.first_offset().unwrap_or(0)
            ),
            expected: hex(&stored),
            actual: hex(&computed),
        });
    }
    Ok(())
}
