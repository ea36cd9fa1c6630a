//! `replayscope record ENDPOINT -o ARCHIVE`: a play run at full speed into the archive sink.
//! Unfiltered copies keep offsets and bytes (so the same hash chain as the source); with
//! `--agent` the events are renumbered from 0. Complete chunks are written out every
//! `--flush-interval`, so a killed recorder leaves a readable prefix (`verify --repair`);
//! Ctrl-C closes the archive properly.

use std::sync::Arc;

use color_eyre::eyre::Result;
use tokio_util::sync::CancellationToken;

use super::config::defaults;
use super::exit::{RunFailure, UsageError};
use super::options::{open_request, parse_agents, resolve_until};
use super::{print_summaries, runtime, shutdown_signal, writer_options};
use crate::cli::RecordArgs;
use crate::player::{self, Pace, PlayerOptions};
use crate::sink::ArchiveSink;
use crate::source::Filter;
use crate::source::open::open_source;

/// Where a continued `record --follow` picks up: what the directory already holds.
struct Continued {
    next_offset: u64,
    chain_head: [u8; 32],
    last_commit_ts: Option<u64>,
    /// The state through its last event, so its state snapshots go on (None: not known).
    state: Option<crate::archive::snapshot::StateCarry>,
}

/// The segment directory of `record --follow` as it is: `None` when there is nothing yet,
/// else where to continue (a last segment a killed recorder left unfinished is repaired
/// first, keeping its complete chunks).
fn continued(dir: &std::path::Path) -> Result<Option<Continued>> {
    let name = dir.display();
    match std::fs::metadata(dir) {
        Err(_) => return Ok(None),
        Ok(m) if !m.is_dir() => {
            return Err(UsageError(format!(
                "-o {name}: record --follow writes a directory of segments; {name} is a file"
            ))
            .into());
        }
        Ok(_) => {}
    }
    let (segments, _) = crate::archive::segments::list(dir)?;
    if segments.is_empty() {
        return Ok(None);
    }
    let opened = |allow_truncated| {
        crate::archive::Archive::open(dir, crate::archive::OpenOptions { allow_truncated })
    };
    // A last segment the stopped recorder had only just started holds no event: it is written
    // again in place (its followers wait for it). One with events is repaired to its complete
    // chunks first.
    // The last file as it is: only just started (empty, cut in its header, or no chunk yet)?
    let last_file = &segments[segments.len() - 1].1;
    let started_only = match crate::archive::storage::LocalFile::open(last_file) {
        Ok(f) => match crate::archive::reader::open_segment(
            Box::new(f),
            crate::archive::OpenOptions {
                allow_truncated: true,
            },
        ) {
            Ok(seg) => seg.first_offset().is_none(),
            Err(e) => crate::archive::segments::just_started(&e),
        },
        Err(_) => false,
    };
    if started_only && segments.len() == 1 {
        // Nothing recorded yet: start afresh (the file is written anew).
        return Ok(None);
    }
    let as_found = opened(true)?;
    if !started_only
        && let crate::archive::repair::Repair::Repaired { file, kept, .. } =
            crate::archive::repair::repair(dir)?
    {
        tracing::warn!(file = %file.display(), ?kept, "repaired the segment a stopped recorder left unfinished");
    }
    let archive = if started_only {
        as_found
    } else {
        opened(false)?
    };
    let Some(last) = archive.last_offset() else {
        return Ok(None);
    };
    let chain_head = archive
        .segments()
        .iter()
        .rev()
        .find(|s| s.first_offset().is_some())
        .and_then(|s| s.meta.as_ref())
        .map(|m| m.final_hash)
        .ok_or_else(|| {
            UsageError(format!(
                "{name}: its last segment has no recorded final hash"
            ))
        })?;
    let state = archive.state_through(last)?;
    if state.is_none() {
        tracing::warn!(
            "{name}: its earlier segments are gone and none of the rest holds a state snapshot: \
             no snapshots are written (`replayscope index` cannot add them either)"
        );
    }
    Ok(Some(Continued {
        next_offset: last + 1,
        chain_head,
        last_commit_ts: archive.last_commit_ts(),
        state,
    }))
}

/// The source's event at the directory's next offset must come after the directory's last
/// transaction: the same numbering, not another history.
fn check_continuation(
    source: &dyn crate::source::Source,
    r: &Continued,
    dir: &std::path::Path,
) -> Result<()> {
    let Some(last_ts) = r.last_commit_ts else {
        return Ok(());
    };
    let expected = r.next_offset - 1;
    // The source's event at `expected` has exactly that commit_ts: the last at or before it
    // and the first at or after it are both `expected`.
    let at = source.resolve(crate::event::Position::CommitTs(last_ts), true)?;
    let exact = at == Some(expected)
        && source
            .resolve(crate::event::Position::CommitTs(last_ts), false)
            .ok()
            .flatten()
            == Some(expected);
    if !exact {
        return Err(UsageError(format!(
            "-o {}: it ends at offset {expected} (@{last_ts}), but in {} @{last_ts} is {}: not the \
             history this directory recorded (record it into a new directory)",
            dir.display(),
            source.info().name,
            at.map_or("before the first event".to_string(), |o| format!(
                "offset {o}"
            ))
        ))
        .into());
    }
    Ok(())
}

pub fn record_cmd(a: RecordArgs) -> Result<()> {
    let follow = a.follow.follow;
    if !follow && (a.segment_bytes.is_some() || a.segment_duration.is_some()) {
        return Err(UsageError(
            "--segment-bytes and --segment-duration rotate the segments of record --follow".into(),
        )
        .into());
    }
    let resume = if follow {
        if a.archive.force {
            return Err(UsageError(format!(
                "-o {}: record --follow continues an existing directory; remove it to start over",
                a.output.display()
            ))
            .into());
        }
        continued(&a.output)?
    } else {
        super::output::check_overwrite(&a.output, a.archive.force, "-o")?;
        None
    };
    let name = a.endpoint.to_string_lossy().into_owned();
    let request = open_request(
        &name,
        &a.remote,
        Default::default(),
        false,
        &a.agent,
        &a.follow,
        None,
    )?;
    let (source, _) = open_source(&name, &request)?;
    let info = source.info().clone();
    let agent = parse_agents(&a.agent, &info, source.may_gain_agents())?;
    if follow && !source.can_follow() {
        return Err(UsageError(format!(
            "{}: --follow needs a source that grows (a statehouse:// daemon, an archive file or directory being written, an s3:// prefix, a `serve --follow` endpoint); a JSON Lines file is read whole",
            info.name
        ))
        .into());
    }
    if info.first_offset.is_none() && !follow {
        return Err(UsageError(format!("{}: the source is empty", info.name)).into());
    }
    let until = match a.until {
        Some(p) => Some(resolve_until(source.as_ref(), p, "--until")?),
        None => None,
    };
    let renumber = agent.is_some();
    if follow && renumber {
        return Err(UsageError(
            "record --follow keeps the source's offsets (to continue after a restart): --agent \
             picks the agents of a statehouse:// endpoint, it cannot filter an archive or \
             replayscope endpoint here"
                .into(),
        )
        .into());
    }
    // A continued directory goes on at the source's offset after its last event, which must
    // be the same transaction (the same commit order) as the directory's.
    let from = match &resume {
        Some(r) => {
            check_continuation(source.as_ref(), r, &a.output)?;
            Some(r.next_offset)
        }
        None => None,
    };
    let sink = if follow {
        let options = crate::archive::WriterOptions {
            first_offset: resume.as_ref().map(|r| r.next_offset),
            chain_start: resume
                .as_ref()
                .map_or(crate::archive::integrity::ZERO_HASH, |r| r.chain_head),
            ..writer_options(&a.archive)
        };
        let writer = crate::archive::SegmentedWriter::create(
            &a.output,
            a.archive
                .segment_events
                .unwrap_or(defaults::FOLLOW_SEGMENT_EVENTS),
            options,
        )?
        .with_rotation(crate::archive::writer::Rotation {
            bytes: a.segment_bytes.map(|b| b.0),
            duration: a.segment_duration.map(|d| d.0),
        })
        .continuing_after(resume.as_ref().and_then(|r| r.last_commit_ts));
        let writer = match resume.as_ref().and_then(|r| r.state.clone()) {
            Some(state) => writer.with_state(state),
            None => writer,
        };
        ArchiveSink::over(
            crate::sink::archive::ArchiveOutput::Segments(Box::new(writer)),
            &a.output,
            true,
        )
        .flushing_when_idle()
    } else {
        ArchiveSink::create(
            &a.output,
            a.archive.segment_events,
            writer_options(&a.archive),
            !renumber,
        )?
    }
    .flushing_every(a.flush_interval.0.max(defaults::FLUSH_INTERVAL_MIN));
    let options = PlayerOptions {
        pace: Pace::Fast,
        from,
        follow,
        until,
        filter: Filter {
            agent,
            ..Filter::default()
        },
        batch_events: defaults::RECORD_BATCH_EVENTS,
        precise_timing: false,
        chain: a.chain.chain(),
        ..PlayerOptions::default()
    };
    let rt = runtime()?;
    let ended = rt.block_on(async move {
        let handle = player::spawn(Arc::clone(&source), options, sink)?;
        let stop = CancellationToken::new();
        let stopper = tokio::spawn({
            let (stop, commander) = (stop.clone(), handle.commander());
            async move {
                shutdown_signal().await;
                stop.cancel();
                tracing::warn!("stopped by a signal: closing the archive");
                let _ = commander.send(player::Command::Stop);
            }
        });
        let ended = handle.join_with_sink().await;
        stopper.abort();
        Ok::<_, color_eyre::Report>((ended?, stop.is_cancelled()))
    })?;
    let (ended, signalled) = ended;
    // Whatever was received is kept as a valid archive when the source failed or went away,
    // but never over input whose hash chain failed: then nothing is left behind.
    let summaries = ended
        .sink
        .written()
        .map_err(|e| RunFailure::Failed(format!("{}: {e}", a.output.display())))?;
    match RunFailure::of_report(&ended.report) {
        None => {
            print_summaries(&summaries);
            // Following has no end: a signal is how it stops, with everything received kept.
            if follow && signalled {
                eprintln!(
                    "stopped following; {} holds every event received, and the same command continues it",
                    a.output.display()
                );
            }
            Ok(())
        }
        Some(failure @ RunFailure::Integrity(_)) => {
            for s in &summaries {
                if let Err(e) = crate::archive::storage::remove_partial(&s.path) {
                    tracing::warn!(path = %s.path.display(), "cannot remove the partial archive: {e}");
                }
            }
            Err(color_eyre::Report::new(failure).wrap_err(format!(
                "the source failed its integrity check; {} was removed",
                a.output.display()
            )))
        }
        Some(failure) => {
            print_summaries(&summaries);
            Err(color_eyre::Report::new(failure).wrap_err(format!(
                "recording stopped early; {} holds what was received",
                a.output.display()
            )))
        }
    }
}
