//! `replayscope verify SOURCE [--expect-hash HEX] [--repair] [--json]`: reads every event,
//! checks CRCs, order, continuity and the hash chain (exit 3 on a mismatch); `--repair` first
//! rewrites a truncated archive's readable prefix.

use std::io::Write;

use color_eyre::eyre::{Context, Result};

use super::{open_archive, parse_expect_hash};
use crate::cli::VerifyArgs;

pub fn verify_cmd(a: VerifyArgs) -> Result<()> {
    let expect = parse_expect_hash(a.expect_hash.as_deref())?;
    if a.repair {
        use crate::archive::repair::{Repair, repair};
        match repair(&a.source.source)? {
            Repair::Intact => eprintln!(
                "{}: not truncated, nothing to repair",
                a.source.source.display()
            ),
            Repair::Repaired {
                file: _,
                original,
                kept: None,
                truncated_at,
                size,
            } => eprintln!(
                "repaired {}: its last segment had no complete chunk (readable up to byte \
                 {truncated_at} of {size}) and was moved aside to {}",
                a.source.source.display(),
                original.display(),
            ),
            Repair::Repaired {
                file,
                original,
                kept,
                truncated_at,
                size,
            } => eprintln!(
                "repaired {}: kept {}, dropped bytes {truncated_at}..{size} (the incomplete tail); \
                 the damaged original is {}",
                file.display(),
                kept.map(|(f, l)| format!("offsets {f} to {l} ({} events)", l - f + 1))
                    .unwrap_or_else(|| "no events".into()),
                original.display()
            ),
        }
    }
    let archive = open_archive(&a.source)?;
    let report = crate::archive::verify::verify(&archive, expect)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report).wrap_err("writing JSON")?;
        writeln!(out)?;
    } else {
        let range = match (report.first_offset, report.last_offset) {
            (Some(f), Some(l)) => format!("offsets {f} to {l}"),
            _ => "empty".into(),
        };
        writeln!(
            out,
            "ok: {} ({range}) in {}, {}; final hash {}{}{}",
            crate::text::count(report.events, "event", "events"),
            crate::text::count(report.segments as u64, "segment", "segments"),
            crate::text::count(report.chunks as u64, "chunk", "chunks"),
            report.final_hash,
            if report.hash_recorded {
                " (matches the recorded hash)"
            } else {
                " (no recorded hash to compare with)"
            },
            if report.snapshots > 0 {
                format!(
                    "; {} match the events",
                    crate::text::count(
                        report.snapshots as u64,
                        "state snapshot",
                        "state snapshots"
                    )
                )
            } else {
                String::new()
            }
        )?;
        // What the reader worked around (a rebuilt index, a truncated tail) is part of the result.
        for n in &report.notes {
            writeln!(out, "note: {n}")?;
        }
    }
    Ok(())
}
