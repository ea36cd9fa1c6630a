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

pub fn record_cmd(a: RecordArgs) -> Result<()> {
    super::output::check_overwrite(&a.output, a.archive.force, "-o")?;
    let name = a.endpoint.to_string_lossy().into_owned();
    let request = open_request(
        &name,
        &a.remote,
        Default::default(),
        false,
        &a.agent,
        &Default::default(),
        None,
    )?;
    let (source, _) = open_source(&name, &request)?;
    let info = source.info().clone();
    let agent = parse_agents(&a.agent, &info)?;
    if info.first_offset.is_none() {
        return Err(UsageError(format!("{}: the source is empty", info.name)).into());
    }
    let until = match a.until {
        Some(p) => Some(resolve_until(source.as_ref(), p, "--until")?),
        None => None,
    };
    let renumber = agent.is_some();
    let sink = ArchiveSink::create(
        &a.output,
        a.archive.segment_events,
        writer_options(&a.archive),
        !renumber,
    )?
    .flushing_every(a.flush_interval.0.max(defaults::FLUSH_INTERVAL_MIN));
    let options = PlayerOptions {
        pace: Pace::Fast,
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
        Ok::<_, color_eyre::Report>(ended?)
    })?;
    // Whatever was received is kept as a valid archive when the source failed or went away,
    // but never over input whose hash chain failed: then nothing is left behind.
    let summaries = ended
        .sink
        .written()
        .map_err(|e| RunFailure::Failed(format!("{}: {e}", a.output.display())))?;
    match RunFailure::of_report(&ended.report) {
        None => {
            print_summaries(&summaries);
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
