//! `replayscope index SOURCE [-o OUT]`: writes an archive again in the current layout — state
//! snapshots (DESIGN.md section 12), per-agent chunks and the index that places them — in place
//! (under a temporary name, then moved over it) or to a copy. The events' bytes, offsets,
//! segment boundaries and hash chain stay as they are.

use std::io::IsTerminal;

use color_eyre::eyre::Result;

use super::output::write_new;
use super::{UsageError, open_archive, print_summaries};
use crate::archive::rewrite::{RewriteOptions, rewrite};
use crate::cli::IndexArgs;

pub fn index_cmd(a: IndexArgs) -> Result<()> {
    let archive = open_archive(&a.source)?;
    let name = archive.name().to_string();
    let (target, force, flag) = match &a.output {
        Some(out) => (out.clone(), a.force, "-o"),
        None if name.starts_with("s3://") => {
            return Err(UsageError(format!(
                "{name}: an s3:// archive is not rewritten in place; write an indexed copy with -o PATH"
            ))
            .into());
        }
        // In place: the new archive replaces the old one once it is complete.
        None => (a.source.source.clone(), true, "SOURCE"),
    };
    let as_directory = archive.segments().len() > 1
        || std::fs::metadata(&a.source.source).is_ok_and(|m| m.is_dir());
    let total = archive.events();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "indexing {bar:40} {pos}/{len} events ({eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let options = RewriteOptions {
        as_directory,
        snapshots: a.snapshots.policy(),
        verify_chain: !a.no_verify,
        markers: None,
    };
    let summaries = write_new(&target, force, flag, |out| {
        Ok(rewrite(&archive, out, options.clone(), |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        })?)
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_summaries(&summaries);
    if let Ok(written) = crate::archive::Archive::open(&target, Default::default())
        && let Some(own) = written.channels_with_own_chunks()
    {
        eprintln!(
            "layout: per-agent chunks, {} of {} with chunks of their own (one-agent reads read only those)",
            own,
            crate::text::count(written.channels().len() as u64, "agent", "agents")
        );
    }
    let snapshots: usize = summaries.iter().map(|s| s.snapshots).sum();
    if options.snapshots.is_none() {
        eprintln!("written without state snapshots (--snapshot-events 0)");
    } else if snapshots == 0 && total > 0 {
        let why = if archive
            .segments()
            .first()
            .is_some_and(|s| s.chain_start() != [0; 32])
        {
            "its first segment continues an earlier one that is not here, so its state is not known"
        } else {
            "it holds fewer events than one snapshot interval"
        };
        eprintln!("no state snapshot written: {why}");
    } else {
        eprintln!(
            "{} written into {}",
            crate::text::count(snapshots as u64, "state snapshot", "state snapshots"),
            target.display()
        );
    }
    Ok(())
}
