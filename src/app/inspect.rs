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
use crate::cli::{DemoArgs, LayoutArg, OpenArgs, PaceArg};
use crate::player::{Pace, PlayerOptions};
use crate::source::open::{is_endpoint, open_source};
use crate::source::{ArchiveSource, Source};

/// The bundled sample archive (see assets/README.md).
pub const SAMPLE: &[u8] = include_bytes!("../../assets/sample.mcap");

pub fn demo_cmd(a: DemoArgs) -> Result<()> {
    if let Some(path) = &a.export {
        // The sample outside the source tree: every command can then read it.
        super::output::check_overwrite(path, a.force, "--export")?;
        crate::archive::storage::write_replacing(path, SAMPLE)
            .map_err(|e| super::exit::UsageError(format!("--export {}: {e}", path.display())))?;
        let (bytes, file) = (SAMPLE.len(), path.display());
        eprintln!(
            "wrote the bundled sample ({bytes} bytes) to {file}; try `replayscope play {file}` or `replayscope open {file}`"
        );
        return Ok(());
    }
    let speed = super::options::check_speed(a.speed)?;
    let archive = Archive::open_memory(SAMPLE, "bundled sample (replayscope demo --export FILE)")?;
    let stored = archive.markers();
    let source: Arc<dyn Source> = Arc::new(crate::source::marked::Marked::new(
        Arc::new(ArchiveSource::new(archive)),
        stored,
        None,
    )?);
    // The tour pauses at each of the sample's markers (its captions say what to try there).
    let pause_at = if a.tour {
        crate::source::marked::marker_offsets(source.as_ref())?
            .into_iter()
            .map(|(o, _)| o)
            .collect()
    } else {
        Vec::new()
    };
    let options = PlayerOptions {
        pace: Pace::Realtime { speed },
        max_gap: Some(defaults::DEMO_MAX_GAP),
        start_paused: a.paused,
        pause_at,
        ..PlayerOptions::default()
    };
    let screen = screen(a.layout, crate::tui::app::LayoutKind::Transport)?;
    run_tui(source, options, None, screen)
}

/// The layout to start with (`--layout`, else the one remembered, else `fallback`) and the
/// user's settings file, read (a bad one is an error naming its line).
fn screen(
    flag: Option<LayoutArg>,
    fallback: crate::tui::app::LayoutKind,
) -> Result<crate::tui::Screen> {
    use crate::tui::app::LayoutKind;
    let config = match crate::tui::config::default_path() {
        Some(path) => crate::tui::config::UiConfig::load(&path)
            .map_err(|e| UsageError(format!("settings: {e}")))?,
        None => Default::default(),
    };
    let layout = match flag {
        Some(LayoutArg::Inspect) => LayoutKind::Inspect,
        Some(LayoutArg::Transport) => LayoutKind::Transport,
        Some(LayoutArg::Present) => LayoutKind::Present,
        None => config.layout.unwrap_or(fallback),
    };
    Ok(crate::tui::Screen { layout, config })
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
    let mut request = open_request(
        &name,
        &a.remote,
        Default::default(),
        a.source.allow_truncated,
        &a.play.agent,
        &a.play.follow,
        a.play.time_field.as_deref(),
    )?;
    request.markers = a.play.markers.clone();
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
                from: a.play.from.clone(),
                until: a.play.until.clone(),
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
    let screen = screen(a.layout, crate::tui::app::LayoutKind::Inspect)?;
    run_tui(source, options, against, screen)
}

/// Runs the TUI; the terminal is restored on quit, on error and on panic (ratatui's hook).
fn run_tui(
    source: Arc<dyn Source>,
    options: PlayerOptions,
    against: Option<crate::tui::AgainstSpec>,
    screen: crate::tui::Screen,
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
    let result = rt.block_on(crate::tui::run(
        &mut terminal,
        source,
        options,
        against,
        screen,
    ));
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
