//! Segment directories: `NNNNNNNNNNNNNNNNNNNN.mcap` files (20-digit first offset) read as one
//! archive, with continuity and hash-chain checks between consecutive segments.

use std::path::Path;

use crate::archive::reader::{Archive, OpenOptions, Segment, open_segment};
use crate::archive::storage::LocalFile;
use crate::archive::{ArchiveError, Result};

/// The first offset a segment file name stands for (`None` if it is not a segment name).
pub fn segment_offset(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(".mcap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files by first offset, in offset order.
pub type SegmentFiles = Vec<(u64, std::path::PathBuf)>;

/// The segment files of a directory in offset order, and the names of other files in it.
pub fn list(dir: &Path) -> Result<(SegmentFiles, Vec<String>)> {
    let name = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| ArchiveError::io(&name, e))?;
    let mut files = Vec::new();
    let mut others = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io(&name, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        match segment_offset(&file_name) {
            Some(offset) => files.push((offset, entry.path())),
            None if file_name.ends_with(".mcap") => {
                return Err(ArchiveError::Invalid {
                    path: entry.path().display().to_string(),
                    message: "not a segment name: segments are named by their first offset in 20 \
                              digits (00000000000000001200.mcap)"
                        .to_string(),
                });
            }
            None => others.push(file_name),
        }
    }
    files.sort();
    Ok((files, others))
}

/// Whether opening a segment failed only because its writer has not written its first records
/// yet (an empty file, or one cut inside its header).
pub fn just_started(e: &ArchiveError) -> bool {
    matches!(e, ArchiveError::Empty { .. })
        || matches!(e, ArchiveError::Truncated { at, .. } if *at < 4096)
}

/// Opens every segment of a directory, in offset order.
pub fn open_dir(dir: &Path, options: OpenOptions) -> Result<Archive> {
    let name = dir.display().to_string();
    let (files, others) = list(dir)?;
    if files.is_empty() {
        return Err(ArchiveError::Invalid {
            path: name,
            message: "directory holds no segment files (NNNNNNNNNNNNNNNNNNNN.mcap)".to_string(),
        });
    }
    let last = files.len() - 1;
    let mut segments: Vec<Segment> = Vec::with_capacity(files.len());
    for (i, (offset, path)) in files.into_iter().enumerate() {
        let seg_name = path.display().to_string();
        let file = LocalFile::open(&path).map_err(|e| ArchiveError::io(&seg_name, e))?;
        // Only the last segment may be a truncated one (a recorder still writing or killed).
        let opts = OpenOptions {
            allow_truncated: options.allow_truncated && i == last,
        };
        let mut segment = match open_segment(Box::new(file), opts) {
            Ok(s) => s,
            // A recorder has just started it: nothing of it is readable yet.
            Err(e) if opts.allow_truncated && just_started(&e) => {
                tracing::info!(segment = %seg_name, "the last segment has no complete record yet: left out");
                break;
            }
            Err(e) => return Err(e),
        };
        if let Some(first) = segment.first_offset()
            && first != offset
        {
            return Err(ArchiveError::Invalid {
                path: seg_name,
                message: format!(
                    "segment name says first offset {offset}, its first event is offset {first}"
                ),
            });
        }
        if !others.is_empty() && i == 0 {
            segment.notes.push(format!(
                "ignored {} file(s) that are not segments: {}",
                others.len(),
                others.join(", ")
            ));
        }
        segments.push(segment);
    }
    Archive::from_segments(name, segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_offset("00000000000000001200.mcap"), Some(1200));
        assert_eq!(segment_offset("1200.mcap"), None);
        assert_eq!(segment_offset("0000000000000000120x.mcap"), None);
        assert_eq!(segment_offset("00000000000000001200.mcap.tmp"), None);
    }
}
