//! The subcommands: thin layers over the library that print results and map failures to exit
//! codes (DESIGN.md section 8).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use color_eyre::eyre::{Context, Result};

use crate::archive::jsonl::{self, ImportTarget};
use crate::archive::writer::WriteSummary;
use crate::archive::{
    Archive, ArchiveError, ArchiveWriter, OpenOptions, SegmentedWriter, WriterOptions,
};
use crate::cli::{
    Cli, Command, ExportArgs, GenArgs, ImportArgs, InfoArgs, PaceArg, PlayFlags, SourceArgs,
    SourceMode, VerifyArgs,
};
use crate::event::{format_time_ns, hex, parse_hash};
use crate::generate::{GenOptions, Generator};
use crate::player::pace::{MAX_SPEED, MIN_SPEED};
use crate::player::{Pace, PlayerOptions};
use crate::source::{ArchiveSource, Filter, Source};
use std::io::IsTerminal;
use std::sync::Arc;

pub mod config;
pub mod play;

/// A mistake in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INTEGRITY: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

/// The exit code for an error (DESIGN.md section 8).
pub fn exit_code(err: &color_eyre::Report) -> i32 {
    for cause in err.chain() {
        if let Some(p) = cause.downcast_ref::<PlayOutcome>() {
            return match p {
                PlayOutcome::Integrity(_) => exit::INTEGRITY,
                PlayOutcome::Failed(_) => exit::FAILURE,
                PlayOutcome::Interrupted(_) => exit::INTERRUPTED,
            };
        }
        if let Some(s) = cause.downcast_ref::<crate::source::SourceError>() {
            return if s.is_integrity() {
                exit::INTEGRITY
            } else {
                exit::USAGE
            };
        }
        if let Some(p) = cause.downcast_ref::<crate::player::PlayerError>() {
            return match p {
                crate::player::PlayerError::Source(s) if s.is_integrity() => exit::INTEGRITY,
                crate::player::PlayerError::Output(_) => exit::FAILURE,
                _ => exit::USAGE,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
        if let Some(e) = cause.downcast_ref::<crate::server::ServeError>() {
            return match e {
                crate::server::ServeError::Tls { .. }
                | crate::server::ServeError::TlsFile { .. } => exit::USAGE,
                _ => exit::FAILURE,
            };
        }
        if let Some(a) = cause.downcast_ref::<ArchiveError>() {
            if a.is_integrity() {
                return exit::INTEGRITY;
            }
            return match a {
                ArchiveError::Io { .. } | ArchiveError::Write { .. } => exit::FAILURE,
                _ => exit::USAGE,
            };
        }
    }
    exit::FAILURE
}

/// The bundled sample archive (see assets/README.md).
pub const SAMPLE: &[u8] = include_bytes!("../assets/sample.mcap");

/// Whether the command takes over the terminal (logs must then go to a file).
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

pub fn uses_terminal(cli: &Cli) -> bool {
    matches!(cli.command, Some(Command::Demo(_)) | Some(Command::Open(_)))
        || (cli.command.is_none() && cli.source.is_some())
}

pub fn run(cli: Cli) -> Result<()> {
    let command = match (cli.command, cli.source) {
        (Some(c), _) => c,
        (None, Some(source)) => Command::Open(crate::cli::OpenArgs {
            source: SourceArgs {
                source,
                allow_truncated: false,
            },
            remote: crate::cli::RemoteArgs {
                token: std::env::var("REPLAYSCOPE_TOKEN").ok(),
                retries: crate::cli::RemoteArgs::DEFAULT_RETRIES,
                ..Default::default()
            },
            play: crate::cli::PlayFlags {
                pace: Some(PaceArg::Realtime),
                speed: None,
                rate: None,
                from: None,
                until: None,
                agent: None,
                key_prefix: None,
                max_gap: None,
                tick: None,
            },
            paused: false,
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
        Command::Demo(a) => demo_cmd(a),
        Command::Open(a) => open_cmd(a),
        Command::Gen(a) => gen_cmd(a),
        Command::Import(a) => import_cmd(a),
        Command::Export(a) => export_cmd(a),
        Command::Info(a) => info_cmd(a),
        Command::Verify(a) => verify_cmd(a),
        Command::Play(a) => play::play_cmd(*a),
        Command::Serve(a) => serve_cmd(a),
        Command::Record(a) => record_cmd(a),
    }
}

fn demo_cmd(a: crate::cli::DemoArgs) -> Result<()> {
    if !(MIN_SPEED..=MAX_SPEED).contains(&a.speed) {
        return Err(UsageError(format!(
            "--speed {} is outside {MIN_SPEED}..={MAX_SPEED}",
            a.speed
        ))
        .into());
    }
    let archive = Archive::open_memory(SAMPLE, "bundled sample (assets/sample.mcap)")?;
    let source: Arc<dyn Source> = Arc::new(ArchiveSource::new(archive));
    let options = PlayerOptions {
        pace: Pace::Realtime { speed: a.speed },
        max_gap: Some(std::time::Duration::from_secs(2)),
        start_paused: a.paused,
        ..PlayerOptions::default()
    };
    run_tui(source, options)
}

fn open_cmd(a: crate::cli::OpenArgs) -> Result<()> {
    let name = a.source.source.to_string_lossy();
    if ["replayscope://", "statehouse://", "grpc://"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        // The inspector's logs go to a file: say what is happening before the screen is ours.
        eprintln!(
            "replayscope: connecting to {name} (up to {} retries; log: {})…",
            a.remote.retries,
            std::env::temp_dir().join("replayscope.log").display()
        );
    }
    let source = open_any_source(&a.source, &a.remote, a.play.agent.as_deref())?;
    // An inspector plays in realtime unless told otherwise (like the bare `replayscope SOURCE`).
    let mut flags = a.play.clone();
    if flags.pace.is_none() && flags.rate.is_none() {
        flags.pace = Some(PaceArg::Realtime);
    }
    let mut options = player_options(&flags, source.as_ref())?;
    options.start_paused = a.paused;
    run_tui(source, options)
}

/// Runs the TUI; the terminal is restored on quit, on error and on panic (ratatui's hook).
fn run_tui(source: Arc<dyn Source>, options: PlayerOptions) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(UsageError(
            "the inspector needs a terminal; use `replayscope play` for headless output".into(),
        )
        .into());
    }
    let rt = runtime()?;
    let mut terminal = ratatui::init();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture);
    let result = rt.block_on(crate::tui::run(&mut terminal, source, options));
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    let report = result?;
    tracing::info!(?report, "inspector closed");
    // A failed last run is reported after the terminal is back, with its exit code.
    if report.outcome == "failed" {
        let reason = report.reason.unwrap_or_default();
        return Err(if report.integrity_failure {
            PlayOutcome::Integrity(reason)
        } else {
            PlayOutcome::Failed(reason)
        }
        .into());
    }
    Ok(())
}

/// A source from what the user typed (an archive file or segment directory).
pub fn open_any_source(
    s: &SourceArgs,
    remote: &crate::cli::RemoteArgs,
    agent: Option<&str>,
) -> Result<Arc<dyn Source>> {
    let text = s.source.to_string_lossy().into_owned();
    Ok(open_source_as(&text, SourceMode::Auto, s.allow_truncated, remote, agent)?.0)
}

/// How to reach an endpoint, from the remote flags.
pub fn connect_options(remote: &crate::cli::RemoteArgs) -> Result<crate::client::ConnectOptions> {
    let ca_pem = match &remote.ca_file {
        Some(p) => {
            Some(std::fs::read(p).wrap_err_with(|| format!("reading --ca-file {}", p.display()))?)
        }
        None => None,
    };
    Ok(crate::client::ConnectOptions {
        token: remote.token.clone(),
        tls: remote.tls || ca_pem.is_some(),
        ca_pem,
        domain: None,
    })
}

/// Opens `text` as `mode` says (auto: by its form); returns the source and the kind of source
/// it turned out to be (`archive`, `replayscope`, `statehouse`).
pub fn open_source_as(
    text: &str,
    mode: SourceMode,
    allow_truncated: bool,
    remote: &crate::cli::RemoteArgs,
    agent: Option<&str>,
) -> Result<(Arc<dyn Source>, String)> {
    let scheme = text.split_once("://").map(|(s, _)| s);
    let bare = |prefix: &str| match text.split_once("://") {
        Some((_, rest)) => format!("{prefix}://{rest}"),
        None => format!("{prefix}://{text}"),
    };
    let endpoint = match (mode, scheme) {
        (SourceMode::Auto, Some(s @ ("replayscope" | "statehouse" | "grpc"))) => {
            Some((s.to_string(), text.to_string()))
        }
        (SourceMode::Auto | SourceMode::Archive, _) => None,
        (SourceMode::Statehouse, None | Some("statehouse" | "grpc")) => {
            Some(("statehouse".to_string(), bare("statehouse")))
        }
        (SourceMode::Replayscope, None | Some("replayscope" | "grpc")) => {
            Some(("replayscope".to_string(), bare("replayscope")))
        }
        (m, Some(s)) => {
            return Err(UsageError(format!(
                "{text}: --mode {} does not take a {s}:// source",
                format!("{m:?}").to_lowercase()
            ))
            .into());
        }
    };
    if mode == SourceMode::Archive
        && let Some(s @ ("replayscope" | "statehouse" | "grpc")) = scheme
    {
        return Err(UsageError(format!(
            "{text}: --mode archive takes a path or s3:// URL, not a {s}:// endpoint"
        ))
        .into());
    }
    let Some((scheme, url)) = endpoint else {
        let archive = Archive::open(Path::new(text), OpenOptions { allow_truncated })?;
        return Ok((Arc::new(ArchiveSource::new(archive)), "archive".to_string()));
    };
    let options = connect_options(remote)?;
    let retry = crate::source::RetryPolicy {
        max_attempts: remote.retries,
        ..Default::default()
    };
    let as_replayscope =
        |url: &str| crate::source::RemoteSource::connect(url, options.clone(), retry.clone());
    let as_statehouse = |url: &str| {
        crate::source::StatehouseSource::connect(url, agent, options.clone(), retry.clone())
    };
    Ok(match scheme.as_str() {
        "replayscope" => (Arc::new(as_replayscope(&url)?), scheme),
        "statehouse" => (Arc::new(as_statehouse(&url)?), scheme),
        // Probe: a replayscope endpoint answers Describe; anything else is taken for a
        // Statehouse daemon.
        _ => {
            let rest = &url["grpc://".len()..];
            match as_replayscope(&format!("replayscope://{rest}")) {
                Ok(r) => {
                    tracing::info!(endpoint = %url, "grpc:// probe: a replayscope endpoint");
                    (Arc::new(r), "replayscope".to_string())
                }
                Err(probe) => {
                    tracing::info!(endpoint = %url, %probe, "grpc:// probe: not replayscope, trying Statehouse Replay");
                    (
                        Arc::new(as_statehouse(&format!("statehouse://{rest}"))?),
                        "statehouse".to_string(),
                    )
                }
            }
        }
    })
}

/// Player options from the shared play flags, positions resolved against the source.
pub fn player_options(flags: &PlayFlags, source: &dyn Source) -> Result<PlayerOptions> {
    let info = source.info();
    // --rate alone means rate pace; --speed alone means realtime.
    let pace_arg = flags.pace.unwrap_or(match (flags.rate, flags.speed) {
        (Some(_), _) => PaceArg::Rate,
        (None, Some(_)) => PaceArg::Realtime,
        (None, None) => PaceArg::Fast,
    });
    let pace = match pace_arg {
        PaceArg::Fast => Pace::Fast,
        PaceArg::Realtime => {
            let speed = flags.speed.unwrap_or(1.0);
            if !(MIN_SPEED..=MAX_SPEED).contains(&speed) {
                return Err(UsageError(format!(
                    "--speed {speed} is outside {MIN_SPEED}..={MAX_SPEED}"
                ))
                .into());
            }
            Pace::Realtime { speed }
        }
        PaceArg::Rate => {
            let rate = flags.rate.unwrap_or(1000.0);
            if !(rate.is_finite() && rate > 0.0) {
                return Err(UsageError(format!("--rate {rate} must be above 0")).into());
            }
            Pace::Rate {
                events_per_sec: rate,
            }
        }
    };
    let from = match flags.from {
        Some(p) => source.resolve(p, false)?,
        None => None,
    };
    let until = match flags.until {
        Some(p) => match source.resolve(p, true)? {
            Some(u) => Some(u),
            None => {
                return Err(UsageError(format!(
                    "{}: --until {p} is before the first event",
                    info.name
                ))
                .into());
            }
        },
        None => None,
    };
    let agent = parse_agent(flags.agent.as_deref(), info)?;
    Ok(PlayerOptions {
        pace,
        max_gap: flags.max_gap.map(|d| d.0),
        tick: flags
            .tick
            .map_or(std::time::Duration::from_millis(10), |d| d.0),
        from,
        until,
        filter: Filter {
            agent,
            key_prefix: flags.key_prefix.clone(),
            txn_id: None,
        },
        ..PlayerOptions::default()
    })
}

/// `--agent NAMESPACE/AGENT_ID`, checked against what the source holds.
fn parse_agent(
    flag: Option<&str>,
    info: &crate::source::SourceInfo,
) -> Result<Option<(String, String)>> {
    let Some(a) = flag else { return Ok(None) };
    let (ns, id) = a
        .split_once('/')
        .ok_or_else(|| UsageError(format!("--agent {a:?}: expected NAMESPACE/AGENT_ID")))?;
    if !info.channels.iter().any(|(n, i, _)| n == ns && i == id) {
        let known: Vec<String> = info
            .channels
            .iter()
            .map(|(n, i, _)| format!("{n}/{i}"))
            .collect();
        return Err(UsageError(format!(
            "{}: unknown agent {a}; it has {}",
            info.name,
            known.join(", ")
        ))
        .into());
    }
    Ok(Some((ns.to_string(), id.to_string())))
}

/// A tokio runtime for the async commands: two workers (the player and its source).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("starting the async runtime")
}

/// The play run ended with an integrity problem (exit 3) or was stopped by Ctrl-C (exit 130).
#[derive(Debug, thiserror::Error)]
pub enum PlayOutcome {
    #[error("{0}")]
    Integrity(String),
    #[error("{0}")]
    Failed(String),
    #[error("stopped by Ctrl-C{}", .0.map(|o| format!("; resume with --from {o}")).unwrap_or_default())]
    Interrupted(Option<u64>),
}

/// `--expect-hash HEX` as a hash (a usage error when it is not 64 hex digits).
pub(crate) fn parse_expect_hash(h: Option<&str>) -> Result<Option<[u8; 32]>> {
    match h {
        Some(h) => Ok(Some(parse_hash(h).ok_or_else(|| {
            UsageError(format!(
                "--expect-hash {h:?} is not a 64-digit hex BLAKE3 hash"
            ))
        })?)),
        None => Ok(None),
    }
}

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
        while stats.changed().await.is_ok() {
            let s = stats.borrow_and_update().clone();
            bar.set_position(s.next_offset.saturating_sub(from));
            bar.set_message(format!("{:.0} events/s, {}", s.rate, s.state.label()));
        }
        bar.finish_and_clear();
    })
}

fn serve_cmd(a: crate::cli::ServeArgs) -> Result<()> {
    use crate::server::{ServeOptions, Server, Token};
    let token = match (&a.token_file, std::env::var("REPLAYSCOPE_TOKEN").ok()) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .wrap_err_with(|| format!("reading --token-file {}", path.display()))?;
            Some(Token::new(&text).ok_or_else(|| {
                UsageError(format!(
                    "--token-file {}: the file is empty",
                    path.display()
                ))
            })?)
        }
        (None, Some(env)) => Some(
            Token::new(&env)
                .ok_or_else(|| UsageError("REPLAYSCOPE_TOKEN is set but empty".to_string()))?,
        ),
        (None, None) => None,
    };
    if a.window.0 > a.max_window.0 {
        return Err(UsageError(format!(
            "--window {} is larger than --max-window {}",
            a.window.0, a.max_window.0
        ))
        .into());
    }
    let archive = open_source(&a.source)?;
    let (name, events) = (archive.name().to_string(), archive.events());
    let options = ServeOptions {
        listen: a.listen,
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        metrics: a.metrics,
        max_sessions: a.max_sessions.max(1),
        default_window_bytes: a.window.0.max(1),
        max_window_bytes: a.max_window.0.max(1),
        ring_bytes: a.ring.0,
        idle: a.idle_timeout.0.max(std::time::Duration::from_millis(100)),
        heartbeat: a.heartbeat.0.max(std::time::Duration::from_millis(10)),
        token,
        ..ServeOptions::default()
    };
    let secured = match (options.tls.is_some(), options.token.is_some()) {
        (true, true) => " (TLS, token required)",
        (true, false) => " (TLS)",
        (false, true) => " (token required)",
        (false, false) => "",
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let server = Server::bind(archive, options).await?;
        let addr = server.local_addr();
        tracing::info!(%addr, archive = %name, events, "serving on {addr}{secured}");
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown_signal().await;
                stop.cancel();
            }
        });
        server.run(stop).await?;
        Ok(())
    })
}

fn record_cmd(a: crate::cli::RecordArgs) -> Result<()> {
    use crate::flow::CreditWindow;
    use crate::source::{Filter, StreamRequest};
    let source = open_any_source(
        &SourceArgs {
            source: a.endpoint.clone(),
            allow_truncated: false,
        },
        &a.remote,
        a.agent.as_deref(),
    )?;
    let info = source.info().clone();
    let agent = parse_agent(a.agent.as_deref(), &info)?;
    let Some(first) = info.first_offset else {
        return Err(UsageError(format!("{}: the source is empty", info.name)).into());
    };
    let until = match a.until {
        Some(p) => Some(source.resolve(p, true)?.ok_or_else(|| {
            UsageError(format!(
                "{}: --until {p} is before the first event",
                info.name
            ))
        })?),
        None => None,
    };
    let renumber = agent.is_some();
    let options = writer_options(&a.archive);
    let mut writer =
        crate::sink::ArchiveOutput::create(&a.output, a.archive.segment_events, options)?;
    let rt = runtime()?;
    let flush_every = a.flush_interval.0.max(std::time::Duration::from_millis(10));
    let (summaries, failure) = rt.block_on(async move {
        let window = CreditWindow::new(crate::player::PlayerOptions::default().window_bytes);
        let mut stream = source.open(
            StreamRequest {
                from: first,
                until,
                filter: Filter {
                    agent,
                    ..Filter::default()
                },
                batch_events: 1024,
                verify_chain: false,
            },
            window.clone(),
        )?;
        let mut tick = tokio::time::interval(flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown_signal();
        tokio::pin!(stop);
        let mut next = 0u64;
        let mut failure = None;
        loop {
            tokio::select! {
                b = stream.recv() => match b {
                    None => break,
                    Some(Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                    Some(Ok(batch)) => {
                        for (e, _) in &batch.events {
                            writer.append_at(e, if renumber { next } else { e.offset })?;
                            next += 1;
                            window.ack(e.offset);
                        }
                    }
                },
                _ = tick.tick() => writer.flush()?,
                _ = &mut stop => {
                    tracing::warn!("stopped by a signal: closing the archive");
                    break;
                }
            }
        }
        // Whatever was received is kept as a valid archive, even when the source failed.
        Ok::<_, color_eyre::Report>((writer.finish()?, failure))
    })?;
    print_summaries(&summaries);
    if let Some(e) = failure {
        return Err(color_eyre::Report::new(e).wrap_err(format!(
            "recording stopped early; {} holds what was received",
            a.output.display()
        )));
    }
    Ok(())
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn open_source(s: &SourceArgs) -> Result<Archive> {
    Ok(Archive::open(
        &s.source,
        OpenOptions {
            allow_truncated: s.allow_truncated,
        },
    )?)
}

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

fn writer_options(a: &crate::cli::OutputArchiveArgs) -> WriterOptions {
    WriterOptions {
        compression: a.compression.unwrap_or_default(),
        ..WriterOptions::default()
    }
}

fn gen_cmd(a: GenArgs) -> Result<()> {
    if a.agents == 0 {
        return Err(UsageError("--agents must be at least 1".into()).into());
    }
    let generator = Generator::new(GenOptions {
        seed: a.seed,
        agents: a.agents,
        ..GenOptions::default()
    });
    let options = writer_options(&a.archive);
    let summaries = match a.archive.segment_events {
        Some(k) => {
            let mut w = SegmentedWriter::create(&a.output, k, options)?;
            for e in generator.take(a.events as usize) {
                w.append(&e)?;
            }
            w.finish()?
        }
        None => {
            let mut w = ArchiveWriter::create(&a.output, options)?;
            for e in generator.take(a.events as usize) {
                w.append(&e)?;
            }
            vec![w.finish()?]
        }
    };
    print_summaries(&summaries);
    Ok(())
}

fn import_cmd(a: ImportArgs) -> Result<()> {
    let name = a.input.display().to_string();
    let input: Box<dyn BufRead> = if name == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = File::open(&a.input).map_err(|e| ArchiveError::io(&name, e))?;
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    let target = match a.archive.segment_events {
        Some(k) => ImportTarget::Segments(&a.output, k),
        None => ImportTarget::File(&a.output),
    };
    let summaries = jsonl::import(input, &name, target, writer_options(&a.archive))?;
    print_summaries(&summaries);
    Ok(())
}

fn export_cmd(a: ExportArgs) -> Result<()> {
    let archive = open_source(&a.source)?;
    let Some(first) = archive.first_offset() else {
        return Ok(()); // empty archive: nothing to export
    };
    let from = match a.from {
        Some(p) => archive.resolve_from(p)?,
        None => first,
    };
    let until = match a.until {
        Some(p) => match archive.resolve_until(p)? {
            Some(u) => Some(u),
            None => return Ok(()), // --until before the first event: nothing to export
        },
        None => None,
    };
    let mut cursor = archive.cursor_at(from)?.until(until);
    let out_name = a
        .output
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    let n = match a.output.as_deref().filter(|p| *p != Path::new("-")) {
        Some(path) => {
            let f = File::create(path).map_err(|e| ArchiveError::io(&out_name, e))?;
            jsonl::export(&mut cursor, BufWriter::with_capacity(1 << 20, f), &out_name)?
        }
        None => {
            let stdout = std::io::stdout().lock();
            jsonl::export(
                &mut cursor,
                BufWriter::with_capacity(1 << 16, stdout),
                &out_name,
            )?
        }
    };
    tracing::info!(events = n, from, ?until, "export finished");
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct InfoJson {
    source: String,
    segments: usize,
    chunks: usize,
    events: u64,
    file_bytes: u64,
    chunk_bytes_compressed: u64,
    chunk_bytes_uncompressed: u64,
    compression_ratio: f64,
    bytes_per_event: f64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
    first_commit_ts: Option<u64>,
    last_commit_ts: Option<u64>,
    first_time: Option<String>,
    last_time: Option<String>,
    duration_s: Option<f64>,
    final_hash: Option<String>,
    truncated: bool,
    channels: Vec<ChannelJson>,
    notes: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct ChannelJson {
    namespace: String,
    agent_id: String,
    events: u64,
}

fn info_of(archive: &Archive) -> InfoJson {
    let segs = archive.segments();
    let (compressed, uncompressed) = segs
        .iter()
        .map(|s| s.chunk_bytes())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let file_bytes: u64 = segs.iter().map(|s| s.size()).sum();
    let events = archive.events();
    let counts = archive.channel_counts();
    let channels = archive
        .channels()
        .iter()
        .zip(counts)
        .map(|(c, n)| ChannelJson {
            namespace: c.namespace.clone(),
            agent_id: c.agent_id.clone(),
            events: n,
        })
        .collect();
    let (t0, t1) = (archive.first_time_ns(), archive.last_time_ns());
    InfoJson {
        source: archive.name().to_string(),
        segments: segs.len(),
        chunks: segs.iter().map(|s| s.chunk_count()).sum(),
        events,
        file_bytes,
        chunk_bytes_compressed: compressed,
        chunk_bytes_uncompressed: uncompressed,
        compression_ratio: if compressed > 0 {
            uncompressed as f64 / compressed as f64
        } else {
            1.0
        },
        bytes_per_event: if events > 0 {
            file_bytes as f64 / events as f64
        } else {
            0.0
        },
        first_offset: archive.first_offset(),
        last_offset: archive.last_offset(),
        first_commit_ts: archive.first_commit_ts(),
        last_commit_ts: archive.last_commit_ts(),
        first_time: t0.map(format_time_ns),
        last_time: t1.map(format_time_ns),
        duration_s: t0.zip(t1).map(|(a, b)| b.saturating_sub(a) as f64 / 1e9),
        final_hash: archive.recorded_final_hash().map(|h| hex(&h)),
        truncated: segs.iter().any(|s| s.truncated_at.is_some()),
        channels,
        notes: archive.notes().to_vec(),
    }
}

fn info_cmd(a: InfoArgs) -> Result<()> {
    let archive = open_source(&a.source)?;
    let info = info_of(&archive);
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &info).wrap_err("writing JSON")?;
        writeln!(out)?;
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    writeln!(out, "source        {}", info.source)?;
    writeln!(
        out,
        "segments      {} ({} chunks)",
        info.segments, info.chunks
    )?;
    writeln!(
        out,
        "events        {} (offsets {}..={})",
        info.events,
        opt(info.first_offset),
        opt(info.last_offset)
    )?;
    writeln!(
        out,
        "commit_ts     @{}..=@{}",
        opt(info.first_commit_ts),
        opt(info.last_commit_ts)
    )?;
    match (&info.first_time, &info.last_time, info.duration_s) {
        (Some(a), Some(b), Some(d)) => {
            writeln!(out, "time          {a} .. {b} ({})", human_duration(d))?
        }
        _ => writeln!(
            out,
            "time          no wall-clock commit times (logical commit_ts only)"
        )?,
    }
    writeln!(
        out,
        "bytes         {} on disk, {:.1} bytes/event, chunks {} -> {} (compression {:.2}x)",
        info.file_bytes,
        info.bytes_per_event,
        info.chunk_bytes_uncompressed,
        info.chunk_bytes_compressed,
        info.compression_ratio
    )?;
    writeln!(
        out,
        "final hash    {}",
        info.final_hash.as_deref().unwrap_or("(not recorded)")
    )?;
    writeln!(out, "channels      {}", info.channels.len())?;
    let width = info
        .channels
        .iter()
        .map(|c| c.namespace.len() + c.agent_id.len() + 1)
        .max()
        .unwrap_or(0);
    for c in &info.channels {
        let topic = format!("{}/{}", c.namespace, c.agent_id);
        writeln!(out, "  {topic:<width$}  {:>10} events", c.events)?;
    }
    for n in &info.notes {
        writeln!(out, "note          {n}")?;
    }
    Ok(())
}

fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{secs:.1}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60),
    }
}

fn verify_cmd(a: VerifyArgs) -> Result<()> {
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
                kept.map(|(f, l)| format!("offsets {f}..={l} ({} events)", l - f + 1))
                    .unwrap_or_else(|| "no events".into()),
                original.display()
            ),
        }
    }
    let archive = open_source(&a.source)?;
    let report = crate::archive::verify::verify(&archive, expect)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report).wrap_err("writing JSON")?;
        writeln!(out)?;
    } else {
        let range = match (report.first_offset, report.last_offset) {
            (Some(f), Some(l)) => format!("offsets {f}..={l}"),
            _ => "empty".into(),
        };
        writeln!(
            out,
            "ok: {} events ({range}) in {} segment(s), {} chunks; final hash {}{}",
            report.events,
            report.segments,
            report.chunks,
            report.final_hash,
            if report.hash_recorded {
                " (matches the recorded hash)"
            } else {
                " (no recorded hash to compare with)"
            }
        )?;
        for n in &report.notes {
            writeln!(out, "note: {n}")?;
        }
    }
    Ok(())
}
