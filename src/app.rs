//! The application: one module per command, each a thin layer over the library that prints
//! results and maps failures to exit codes (DESIGN.md section 8). Settings come from
//! [`config`] (flags > config file > one table of defaults); exit codes from [`exit`].

pub mod config;
pub mod convert;
pub mod diff;
pub mod exit;
pub mod history;
pub mod index;
pub mod info;
pub mod inspect;
pub mod mark;
pub mod options;
pub mod output;
pub mod play;
pub mod record;
pub mod serve;
pub mod verify;

use color_eyre::eyre::{Context, Result};

use crate::archive::writer::WriteSummary;
use crate::archive::{Archive, OpenOptions, WriterOptions};
use crate::cli::{Cli, Command, OpenArgs, OutputArchiveArgs, PaceArg, PlayFlags, SourceArgs};
use crate::event::{hex, parse_hash};
pub use exit::{RunFailure, UsageError};

/// The log filter when `--log` is not given: commands whose log lines are their record of what
/// they did log at info, the rest only warnings.
pub fn default_log_filter(cli: &Cli) -> &'static str {
    match cli.command {
        // A server's per-session lines are its record of what it did.
        Some(Command::Serve(_)) => "info",
        // Runs into a target or on a schedule report their progress as log lines.
        Some(Command::Play(ref a))
            if a.into.is_some()
                || a.every.is_some()
                || a.cron.is_some()
                || a.config.is_some()
                || a.metrics.is_some() =>
        {
            "info"
        }
        _ => "warn",
    }
}

/// Whether the command takes over the terminal (its logs must then go to a file).
pub fn uses_terminal(cli: &Cli) -> bool {
    matches!(cli.command, Some(Command::Demo(_)) | Some(Command::Open(_)))
        || (cli.command.is_none() && cli.source.is_some())
}

/// Runs the command line.
pub fn run(cli: Cli) -> Result<()> {
    let command = match (cli.command, cli.source) {
        (Some(c), _) => c,
        // `replayscope SOURCE` is `replayscope open SOURCE`, in realtime.
        (None, Some(source)) => Command::Open(OpenArgs {
            source: SourceArgs {
                source,
                allow_truncated: false,
            },
            remote: crate::cli::RemoteArgs {
                token: std::env::var("REPLAYSCOPE_TOKEN").ok(),
                ..Default::default()
            },
            play: PlayFlags {
                pace: Some(PaceArg::Realtime),
                speed: None,
                rate: None,
                from: None,
                until: None,
                agent: Vec::new(),
                follow: Default::default(),
                key_prefix: None,
                max_gap: None,
                tick: None,
                time_field: None,
                markers: None,
                pause_at_markers: false,
                marker_hold: None,
                loop_passes: None,
            },
            paused: false,
            layout: None,
            against: None,
            diff: crate::cli::DiffFlags {
                compare: crate::cli::CompareArg::Events,
                align: crate::cli::AlignArg::Offset,
                ignore: Vec::new(),
                map_agent: Vec::new(),
            },
        }),
        (None, None) => {
            return Err(UsageError(
                "no command: try `replayscope demo`, `replayscope SOURCE` or `replayscope --help`"
                    .into(),
            )
            .into());
        }
    };
    match command {
        Command::Demo(a) => inspect::demo_cmd(a),
        Command::Open(a) => inspect::open_cmd(a),
        Command::Gen(a) => convert::gen_cmd(a),
        Command::Import(a) => convert::import_cmd(a),
        Command::Export(a) => convert::export_cmd(a),
        Command::Info(a) => info::info_cmd(a),
        Command::Verify(a) => verify::verify_cmd(a),
        Command::Play(a) => play::play_cmd(*a),
        Command::Serve(a) => serve::serve_cmd(a),
        Command::Record(a) => record::record_cmd(a),
        Command::History(a) => history::history_cmd(a),
        Command::Search(a) => history::search_cmd(a),
        Command::State(a) => history::state_cmd(a),
        Command::Index(a) => index::index_cmd(a),
        Command::Diff(a) => diff::diff_cmd(a),
        Command::Mark(a) => mark::mark_cmd(a),
    }
}

/// A tokio runtime for the async commands: two workers (the player and its source).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() -> exit::StopSignal {
    use exit::StopSignal;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => StopSignal::Interrupt,
                    _ = term.recv() => StopSignal::Terminate,
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                StopSignal::Interrupt
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        StopSignal::Interrupt
    }
}

/// `--expect-hash HEX` as a hash (a usage error when it is not 64 hex digits).
pub(crate) fn parse_expect_hash(h: Option<&str>) -> Result<Option<[u8; 32]>> {
    parse_hash_flag("--expect-hash", h)
}

/// A hash flag (`--expect-hash`, `--expect-state-hash`) as a hash.
pub(crate) fn parse_hash_flag(flag: &str, h: Option<&str>) -> Result<Option<[u8; 32]>> {
    match h {
        Some(h) => Ok(Some(parse_hash(h).ok_or_else(|| {
            UsageError(format!("{flag} {h:?} is not a 64-digit hex BLAKE3 hash"))
        })?)),
        None => Ok(None),
    }
}

/// An archive (file, segment directory or s3:// URL) for the commands that read archives only.
fn open_archive(s: &SourceArgs) -> Result<Archive> {
    crate::source::open::check_archive_name(&s.source.to_string_lossy()).map_err(UsageError)?;
    Ok(Archive::open(
        &s.source,
        OpenOptions {
            allow_truncated: s.allow_truncated,
        },
    )?)
}

/// "wrote N events (B bytes) to PATH; final hash H" for archives a command wrote.
fn print_summaries(summaries: &[WriteSummary]) {
    let events: u64 = summaries.iter().map(|s| s.events).sum();
    let bytes: u64 = summaries.iter().map(|s| s.bytes).sum();
    let last = summaries.last();
    let target = match summaries {
        [one] => one.path.display().to_string(),
        many => format!(
            "{} segments in {}",
            many.len(),
            many.first()
                .and_then(|s| s.path.parent())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    };
    eprintln!(
        "wrote {events} events ({bytes} bytes) to {target}; final hash {}",
        last.map(|s| hex(&s.final_hash)).unwrap_or_default()
    );
}

pub(crate) fn writer_options(a: &OutputArchiveArgs) -> WriterOptions {
    WriterOptions {
        compression: a.compression.unwrap_or_default().into(),
        snapshots: a.snapshots.policy(),
        ..WriterOptions::default()
    }
}

/// A progress bar on stderr following the player's stats (plain interactive `play`).
pub(crate) fn spawn_progress(
    mut stats: tokio::sync::watch::Receiver<crate::player::Stats>,
    from: u64,
    total: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr_with_hz(10),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut live = false;
        while stats.changed().await.is_ok() {
            let s = stats.borrow_and_update().clone();
            // A followed source has no end to count down to: the bar counts to the head.
            if let (Some(summary), Some(head)) = (s.live_summary(), s.head_offset) {
                if !live {
                    live = true;
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} events  {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                }
                bar.set_length(head.saturating_add(1).saturating_sub(from));
                bar.set_message(format!(
                    "{:.0} events/s, {}, live: {summary}",
                    s.rate,
                    s.state.label()
                ));
            } else {
                bar.set_message(format!("{:.0} events/s, {}", s.rate, s.state.label()));
            }
            bar.set_position(s.next_offset.saturating_sub(from));
        }
        bar.finish_and_clear();
    })
}
