//! Writes an archive again — its events' stored bytes, offsets, segment boundaries and hash
//! chain as they are — with what the current writer adds: state snapshots (DESIGN.md section
//! 12). `replayscope index` upgrades an archive this way, in place or to a copy.

use std::path::Path;

use crate::archive::reader::Archive;
use crate::archive::snapshot::{SnapshotPolicy, StateCarry};
use crate::archive::writer::{
    ArchiveWriter, Compression, WriteSummary, WriterOptions, segment_file_name,
};
use crate::archive::{ArchiveError, Result};

/// How the copy is written.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    /// A directory of segments (one per segment of the archive, with the same first offsets)
    /// rather than one file (an archive of one segment only).
    pub as_directory: bool,
    pub snapshots: Option<SnapshotPolicy>,
    /// Check the hash chain of what is copied (the copy has the same chain).
    pub verify_chain: bool,
    /// The markers of the copy (written into its first file); `None` keeps the archive's.
    pub markers: Option<crate::event::marker::MarkerSet>,
}

/// Copies `archive` into `out` (a file, or a directory it creates), calling `progress` with the
/// events copied so far now and then.
pub fn rewrite(
    archive: &Archive,
    out: &Path,
    options: RewriteOptions,
    mut progress: impl FnMut(u64),
) -> Result<Vec<WriteSummary>> {
    let segments = archive.segments();
    if !options.as_directory && segments.len() > 1 {
        return Err(ArchiveError::Invalid {
            path: out.display().to_string(),
            message: format!(
                "{} has {} segments: it is written as a directory",
                archive.name(),
                segments.len()
            ),
        });
    }
    if options.as_directory {
        std::fs::create_dir_all(out)
            .map_err(|e| ArchiveError::io(&out.display().to_string(), e))?;
    }
    let channels = archive.channels();
    let mut cursor = archive.cursor()?.verify_chain(options.verify_chain);
    let mut summaries = Vec::with_capacity(segments.len());
    let mut carry: Option<StateCarry> = None;
    let mut copied = 0u64;
    let mut markers = Some(options.markers.clone().unwrap_or_else(|| archive.markers()));
    for seg in segments {
        let Some(first) = seg.first_offset() else {
            continue; // a segment without events has nothing to copy
        };
        let path = if options.as_directory {
            out.join(segment_file_name(first))
        } else {
            out.to_path_buf()
        };
        let compression = match seg.compression() {
            Some("lz4") => Compression::Lz4,
            Some("") => Compression::None,
            _ => Compression::Zstd,
        };
        let mut writer = ArchiveWriter::create(
            &path,
            WriterOptions {
                compression,
                first_offset: Some(first),
                chain_start: seg.chain_start(),
                time_source: seg.meta.as_ref().and_then(|m| m.time_source.clone()),
                snapshots: options.snapshots,
                markers: markers.take(),
                ..WriterOptions::default()
            },
        )?;
        if let Some(c) = carry.take() {
            writer = writer.with_state(c);
        }
        let last = seg.last_offset().unwrap_or(first);
        while cursor.next_offset() <= last {
            let Some(raw) = cursor.next_raw() else {
                break;
            };
            writer.append_raw(&raw?, channels)?;
            copied += 1;
            if copied.is_multiple_of(65_536) {
                progress(copied);
            }
        }
        let (summary, next) = writer.finish_carrying()?;
        summaries.push(summary);
        carry = next;
    }
    progress(copied);
    Ok(summaries)
}
