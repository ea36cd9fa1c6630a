//! A new archive the way DESIGN.md section 15 asks: an existing one is not replaced without
//! `--force`, and it is written under a temporary name next to its place and renamed there at
//! the end, so a command that fails leaves nothing behind (and never a half-written archive
//! that later verifies as a short one).

use std::path::{Path, PathBuf};

use super::exit::UsageError;
use crate::archive::writer::WriteSummary;

/// Refuses to replace an existing file or directory at `path` unless `force`.
pub fn check_overwrite(path: &Path, force: bool, flag: &str) -> Result<(), UsageError> {
    let name = path.display();
    if path.file_name().is_none() {
        return Err(UsageError(format!(
            "{flag} {name}: name a file or directory to write, not {name}"
        )));
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    // A device or a FIFO is written through; anything else that is there is replaced only
    // with --force (a symlink included).
    let replaced = meta.is_file() || meta.is_dir() || meta.file_type().is_symlink();
    if replaced && !force {
        return Err(UsageError(format!(
            "{flag} {name}: it exists; --force replaces it"
        )));
    }
    if meta.is_dir() && !only_segments(path) {
        return Err(UsageError(format!(
            "{flag} {name}: a directory with other files than archive segments in it; \
             write the archive somewhere else"
        )));
    }
    Ok(())
}

/// Whether a directory holds nothing but segment files (`NNN….mcap`).
fn only_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| crate::archive::segments::segment_offset(n).is_some())
        })
    })
}

/// An archive being written under a temporary name.
pub struct PendingOutput {
    path: PathBuf,
    temp: PathBuf,
}

impl PendingOutput {
    /// Checks `path` (see [`check_overwrite`]) and picks the temporary name beside it.
    pub fn new(path: &Path, force: bool, flag: &str) -> Result<PendingOutput, UsageError> {
        check_overwrite(path, force, flag)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "archive".into());
        let temp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        Ok(PendingOutput {
            path: path.to_path_buf(),
            temp,
        })
    }

    /// Where to write.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Moves what was written into place (replacing what `--force` allowed) and names the
    /// written files by their final paths.
    pub fn commit(self, summaries: Vec<WriteSummary>) -> std::io::Result<Vec<WriteSummary>> {
        // What --force replaces is moved aside first and removed only once the new one is in
        // place: a failed rename leaves the old one where it was.
        let aside = self.temp.with_extension("old");
        let had_old = std::fs::symlink_metadata(&self.path).is_ok();
        if had_old && let Err(e) = std::fs::rename(&self.path, &aside) {
            self.abort();
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&self.temp, &self.path) {
            if had_old {
                let _ = std::fs::rename(&aside, &self.path);
            }
            self.abort();
            return Err(e);
        }
        if had_old {
            let _ = match std::fs::symlink_metadata(&aside) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&aside),
                _ => std::fs::remove_file(&aside),
            };
        }
        let summaries = summaries
            .into_iter()
            .map(|mut s| {
                s.path = match s.path.strip_prefix(&self.temp) {
                    Ok(rest) if !rest.as_os_str().is_empty() => self.path.join(rest),
                    _ => self.path.clone(),
                };
                s
            })
            .collect();
        Ok(summaries)
    }

    /// Removes what was written.
    pub fn abort(&self) {
        let _ = match std::fs::symlink_metadata(&self.temp) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.temp),
            Ok(_) => std::fs::remove_file(&self.temp),
            Err(_) => Ok(()),
        };
    }
}

/// Runs `write` into a [`PendingOutput`] for `path`: committed when it succeeds, removed when
/// it fails.
pub fn write_new<F>(
    path: &Path,
    force: bool,
    flag: &str,
    write: F,
) -> color_eyre::Result<Vec<WriteSummary>>
where
    F: FnOnce(&Path) -> color_eyre::Result<Vec<WriteSummary>>,
{
    let pending = PendingOutput::new(path, force, flag)?;
    match write(pending.temp()) {
        Ok(summaries) => Ok(pending.commit(summaries).map_err(|e| {
            UsageError(format!(
                "{flag} {}: cannot move it into place: {e}",
                path.display()
            ))
        })?),
        Err(e) => {
            pending.abort();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_outputs_need_force_and_failures_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mcap");
        std::fs::write(&path, b"old").unwrap();
        let e = check_overwrite(&path, false, "-o").unwrap_err();
        assert!(e.0.contains("it exists; --force replaces it"), "{e}");
        assert!(check_overwrite(&path, true, "-o").is_ok());
        let failed = write_new(&path, true, "-o", |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(color_eyre::eyre::eyre!("line 33 is bad"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "untouched");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        // A directory with anything but segments in it is never replaced; nor is "." or "..".
        let segs = dir.path().join("segs");
        std::fs::create_dir(&segs).unwrap();
        std::fs::write(segs.join("00000000000000000000.mcap"), b"x").unwrap();
        assert!(check_overwrite(&segs, true, "-o").is_ok());
        std::fs::write(segs.join("notes.txt"), b"mine").unwrap();
        let e = check_overwrite(&segs, true, "-o").unwrap_err();
        assert!(e.0.contains("other files than archive segments"), "{e}");
        for p in [".", ".."] {
            assert!(check_overwrite(Path::new(p), true, "-o").is_err(), "{p}");
        }
        // A replaced directory is swapped in whole.
        std::fs::remove_file(segs.join("notes.txt")).unwrap();
        let done = write_new(&segs, true, "-o", |tmp| {
            std::fs::create_dir(tmp).unwrap();
            std::fs::write(tmp.join("00000000000000000000.mcap"), b"new").unwrap();
            Ok(vec![])
        });
        assert!(done.is_ok());
        assert_eq!(
            std::fs::read(segs.join("00000000000000000000.mcap")).unwrap(),
            b"new"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "nothing set aside is left"
        );
    }
}
