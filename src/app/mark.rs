//! `replayscope mark ARCHIVE --add NAME@POS [--caption TEXT] | --list | --remove NAME`: the
//! markers of an archive (DESIGN.md section 14). Added markers go into the archive itself (a
//! standard MCAP metadata record, so the file carries them wherever it is copied): the archive
//! is written again under a temporary name and moved over it, events and hash chain unchanged.

use std::io::Write;

use color_eyre::eyre::Result;

use super::UsageError;
use super::output::write_new;
use crate::archive::rewrite::{RewriteOptions, rewrite};
use crate::archive::{Archive, OpenOptions};
use crate::cli::MarkArgs;
use crate::event::marker::{Marker, MarkerSet};
use crate::source::Source;

pub fn mark_cmd(a: MarkArgs) -> Result<()> {
    let text = a.archive.to_string_lossy().into_owned();
    if text.contains("://") {
        return Err(UsageError(format!(
            "{text}: markers are written into a local archive (a file or a segment directory)"
        ))
        .into());
    }
    let archive = Archive::open(&a.archive, OpenOptions::default())?;
    let sidecar_path = a
        .markers
        .clone()
        .or_else(|| crate::source::marked::default_sidecar(&text));
    let source = crate::source::marked::Marked::new(
        std::sync::Arc::new(crate::source::ArchiveSource::new(archive.clone())),
        archive.markers(),
        sidecar_path.clone(),
    )?;
    if a.list {
        return list(&source, &archive.markers());
    }
    if let Some(spec) = &a.add {
        let marker = Marker::parse_spec(spec, a.caption.clone()).map_err(UsageError)?;
        let pos = marker.position().map_err(UsageError)?;
        let offset = source
            .resolve(pos.clone(), false)?
            .ok_or_else(|| UsageError(format!("{text}: {pos} is past the last event")))?;
        let mut set = archive.markers();
        set.put(marker.clone());
        write_markers(&a, &archive, set)?;
        eprintln!(
            "marked {} at #{offset} in {text}; `mark:{}` is a position now",
            marker.name, marker.name
        );
        return Ok(());
    }
    let Some(name) = &a.remove else {
        return Err(UsageError("give --add, --list or --remove".into()).into());
    };
    let mut set = archive.markers();
    if set.remove(name) {
        write_markers(&a, &archive, set)?;
        eprintln!("removed the marker {name} from {text}");
        return Ok(());
    }
    // Not in the archive: maybe in the file beside it.
    let all = source.markers();
    match (&sidecar_path, all.get(name)) {
        (Some(path), Some(_)) => {
            let text = std::fs::read_to_string(path)?;
            let mut side =
                MarkerSet::from_json(&text, &path.display().to_string()).map_err(UsageError)?;
            side.remove(name);
            super::output::write_new(path, true, "--markers", |out| {
                std::fs::write(out, side.to_json())?;
                Ok(Vec::new())
            })?;
            eprintln!("removed the marker {name} from {}", path.display());
            Ok(())
        }
        _ => {
            let names: Vec<&str> = all.markers.iter().map(|m| m.name.as_str()).collect();
            Err(UsageError(if names.is_empty() {
                format!("{text}: no marker {name:?}: it has no markers")
            } else {
                format!(
                    "{text}: no marker {name:?}; the markers are {}",
                    names.join(", ")
                )
            })
            .into())
        }
    }
}

/// The archive written again with `markers` (its snapshots kept, if it has any).
fn write_markers(a: &MarkArgs, archive: &Archive, markers: MarkerSet) -> Result<()> {
    let options = RewriteOptions {
        as_directory: std::fs::metadata(&a.archive).is_ok_and(|m| m.is_dir()),
        snapshots: (!archive.snapshots().is_empty()).then(Default::default),
        verify_chain: true,
        markers: Some(markers),
    };
    write_new(&a.archive, true, "ARCHIVE", |out| {
        Ok(rewrite(archive, out, options, |_| {})?)
    })?;
    Ok(())
}

/// Every marker: name, position, the offset it resolves to, where it is kept, caption.
fn list(source: &dyn Source, stored: &MarkerSet) -> Result<()> {
    let all = source.markers();
    let mut out = std::io::stdout().lock();
    if all.is_empty() {
        writeln!(
            out,
            "no markers (add one with `replayscope mark ARCHIVE --add NAME@POS`)"
        )?;
        return Ok(());
    }
    let width = all.markers.iter().map(|m| m.name.len()).max().unwrap_or(4);
    for m in &all.markers {
        let at = m
            .position()
            .ok()
            .and_then(|p| source.resolve(p, false).ok().flatten())
            .map_or("-".to_string(), |o| format!("#{o}"));
        let kept = if stored.get(&m.name) == Some(m) {
            "archive"
        } else {
            "file"
        };
        writeln!(
            out,
            "{:<width$}  {:<26} {:<10} {:<8} {}",
            m.name,
            m.position,
            at,
            kept,
            m.caption.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}
