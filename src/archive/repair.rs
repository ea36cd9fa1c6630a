//! `verify --repair`: turns a truncated archive (a recorder killed mid-write: no footer, maybe a
//! half-written chunk) into a valid one holding its readable prefix. The complete chunks are
//! rewritten — the same stored bytes, offsets and hash chain — into a new file that replaces the
//! damaged one; the damaged original is kept next to it.

use std::path::{Path, PathBuf};

use crate::archive::integrity::ZERO_HASH;
use crate::archive::reader::{Archive, OpenOptions};
use crate::archive::writer::{ArchiveWriter, WriterOptions};
use crate::archive::{ArchiveError, Result};

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The archive was intact: nothing was changed.
    Intact,
    Repaired {
        /// The file that was rewritten.
        file: PathBuf,
        /// Where the damaged original was moved.
        original: PathBuf,
        /// Offsets kept in the rewritten file.
        kept: Option<(u64, u64)>,
        /// Where the readable prefix of the damaged file ended, and its size.
        truncated_at: u64,
        size: u64,
    },
}

/// Repairs the archive at `path` (a file, or a segment directory whose last segment is
/// truncated).
pub fn repair(path: &Path) -> Result<Repair> {
    let name = path.display().to_string();
    if name.starts_with("s3://") {
        return Err(ArchiveError::Invalid {
            path: name,
            message: "--repair rewrites files in place: copy the object locally first".into(),
        });
    }
    let archive = Archive::open(
        path,
        OpenOptions {
            allow_truncated: true,
        },
    )?;
    let segments = archive.segments();
    let Some((index, damaged)) = segments
        .iter()
        .enumerate()
        .find(|(_, s)| s.truncated_at.is_some())
    else {
        return Ok(Repair::Intact);
    };
    let truncated_at = damaged.truncated_at.unwrap_or(0);
    let file = PathBuf::from(damaged.name());
    let chain_start = if index == 0 {
        ZERO_HASH
    } else {
        segments[index - 1]
            .meta
            .as_ref()
            .map(|m| m.final_hash)
            .ok_or_else(|| ArchiveError::Invalid {
                path: segments[index - 1].name().to_string(),
                message: "the segment before the damaged one has no recorded final hash".into(),
            })?
    };
    let kept = damaged.first_offset().zip(damaged.last_offset());
    if kept.is_none() {
        if index > 0 {
            // A last segment with nothing readable: the archive is the segments before it.
            let size = damaged.size();
            drop(archive);
            let original = kept_aside(path, &file);
            std::fs::rename(&file, &original)
                .map_err(|e| ArchiveError::io(&file.display().to_string(), e))?;
            return Ok(Repair::Repaired {
                file,
                original,
                kept: None,
                truncated_at,
                size,
            });
        }
        return Err(ArchiveError::Invalid {
            path: damaged.name().to_string(),
            message: format!(
                "truncated at byte {truncated_at} of {} before its first complete chunk: nothing \
                 readable to keep",
                damaged.size()
            ),
        });
    }
    let tmp = with_suffix(&file, ".repair.tmp");
    let mut writer = ArchiveWriter::create(
        &tmp,
        WriterOptions {
            first_offset: damaged.first_offset(),
            chain_start,
            ..WriterOptions::default()
        },
    )?;
    if let Some((first, last)) = kept {
        let mut cursor = archive.cursor_at(first)?.until(Some(last));
        let channels = archive.channels();
        while let Some(raw) = cursor.next_raw() {
            writer.append_raw(&raw?, channels)?;
        }
    }
    writer.finish()?;
    let size = damaged.size();
    drop(archive);
    let original = kept_aside(path, &file);
    let io = |e| ArchiveError::io(&file.display().to_string(), e);
    // The original is linked aside and the repaired file renamed over it: at no moment is
    // there no file at its name (a follower of the directory reading it meanwhile sees the old
    // or the new one, both holding the same events).
    if std::fs::hard_link(&file, &original).is_err() {
        std::fs::copy(&file, &original).map_err(io)?;
    }
    std::fs::rename(&tmp, &file).map_err(io)?;
    Ok(Repair::Repaired {
        file,
        original,
        kept,
        truncated_at,
        size,
    })
}

/// Where the damaged original is kept: `FILE.truncated` next to a single-file archive; for a
/// segment directory, next to the directory (`DIR.NNN.mcap.truncated`), so the directory holds
/// only segments and later commands have nothing to warn about.
fn kept_aside(archive: &Path, file: &Path) -> PathBuf {
    if !archive.is_dir() {
        return with_suffix(file, ".truncated");
    }
    // `.` or `..` name no directory: its real path does.
    let real = archive
        .canonicalize()
        .unwrap_or_else(|_| archive.to_path_buf());
    let dir = real.as_path();
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "segments".into());
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{dir_name}.{file_name}.truncated"))
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
