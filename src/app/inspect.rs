//! The inspector: `replayscope demo` (the bundled sample archive), `replayscope open SOURCE`
//! and the bare `replayscope SOURCE`. The terminal is restored on quit, on error and on panic.

use std::io::IsTerminal;
use std::sync::Arc;

use color_eyre::eyre::Result;

use super::config::defaults;
use super::exit::{RunFailure, UsageError};
use super::options::{open_request, player_options};
use super::runtime;
use crate::archive::Archive;
use crate::cli::{DemoArgs, OpenArgs, PaceArg};
use crate::player::{Pace, PlayerOptions};
use crate::source::open::{is_endpoint, open_source};
use crate::source::{ArchiveSource, Source};

/// The bundled sample archive (see assets/README.md).
pub const SAMPLE: &[u8] = include_bytes!("../../assets/sample.mcap");

pub fn demo_cmd(a: DemoArgs) -> Result<()> {
    if let Some(path) = &a.export {
        // The sample outside the source tree: every command can then read it.
        super::output::check_overwrite(path, a.force, "--export")?;
        let temp = path.with_file_name(format!(
            ".{}.partial-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::write(&temp, SAMPLE)
            .and_then(|()| std::fs::rename(&temp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                super::exit::UsageError(format!("--export {}: {e}", path.display()))
            })?;
        let (bytes, file) = (SAMPLE.len(), path.display());
        eprintln!(
            "wrote the bundled sample ({bytes} bytes) to {file}; try `replayscope play {file}` or `replayscope open {file}`"
        );
        return Ok(());
    }
    let speed = super::options::check_speed(a.speed)?;
    let archive = Archive::open_memory(SAMPLE, "bundled sample (replayscope demo --export FILE)")?;
    let source: Arc<dyn Source> = Arc::new(ArchiveSource::new(archive));
    let options = PlayerOptions {
        pace: Pace::Realtime { speed },
        max_gap: Some(defaults::DEMO_MAX_GAP),
        start_paused: a.paused,
        ..PlayerOptions::default()
    };
    run_tui(source, options, None)
}

pub fn open_cmd(a: OpenArgs) -> Result<()> {
    let name = a.source.source.to_string_lossy().into_owned();
    if is_endpoint(&name) {
        // The inspector's logs go to a file: say what is happening before the screen is ours.
        eprintln!(
            "replayscope: connecting to {name} (up to {} retries; log: {})…",
            a.remote.retries(),
            defaults::log_file().display()
        );
    }
    let request = open_request(
        &name,
        &a.remote,
        Default::default(),
        a.source.allow_truncated,
        &a.play.agent,
        &a.play.follow,
        a.play.time_field.as_deref(),
    )?;
    let (source, _) = open_source(&name, &request)?;
    // An inspector plays in realtime unless told otherwise (like the bare `replayscope SOURCE`).
    let mut flags = a.play.clone();
    if flags.pace.is_none() && flags.rate.is_none() {
        flags.pace = Some(PaceArg::Realtime);
    }
    let mut options = player_options(&flags, source.as_ref())?;
    options.start_paused = a.paused;
    let against = match &a.against {
        Some(right) => {
            let left_side = crate::inspect::diff::SideRequest {
                from: options.from.or(source.info().first_offset).unwrap_or(0),
                until: options.until,
                filter: options.filter.clone(),
            };
            let side = super::diff::SideArgs {
                remote: &a.remote,
                allow_truncated: a.source.allow_truncated,
                from: a.play.from,
                until: a.play.until,
            };
            let (right, request) = super::diff::comparison(
                &source,
                left_side,
                right,
                &a.diff,
                &side,
                Default::default(),
            )?;
            Some(crate::tui::AgainstSpec {
                source: right,
                request,
            })
        }
        None => None,
    };
    run_tui(source, options, against)
}

/// Runs the TUI; the terminal is restored on quit, on error and on panic (ratatui's hook).
fn run_tui(
    source: Arc<dyn Source>,
    options: PlayerOptions,
    against: Option<crate::tui::AgainstSpec>,
) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(UsageError(
            "the inspector needs a terminal; use `replayscope play` for headless output".into(),
        )
        .into());
    }
    let rt = runtime()?;
    let mut terminal = ratatui::init();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture);
    let result = rt.block_on(crate::tui::run(&mut terminal, source, options, against));
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    let report = result?;
    tracing::info!(?report, "inspector closed");
    // A failed last run is reported after the terminal is back, with its exit code.
    match RunFailure::of_report(&report) {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}
