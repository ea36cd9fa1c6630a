//! One run of a plan: open the source and the target, play, finish the target (the archive's
//! summaries, the daemon's state read back), check the hashes, and report.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use color_eyre::eyre::{Context as _, Result};
use tokio_util::sync::CancellationToken;

use super::plan::{PlayPlan, Target};
use super::report::{ArchiveWritten, PlayMetrics, RunReport, append_report, now_rfc3339};
use super::targets;
use crate::app::exit::RunFailure;
use crate::app::options::{open_request, player_options};
use crate::archive::ArchiveError;
use crate::player::{Ended, PlayerOptions, Report, Sink, Stats};
use crate::sink::statehouse::{ApplyStats, Verification};
use crate::source::open::{SourceKind, open_source};
use crate::source::{Source, SourceInfo};

/// What a run ended with, for the exit code.
pub enum RunEnd {
    Ok,
    Interrupted(Option<u64>),
    Failed(color_eyre::Report),
}

/// What every run of a plan shares while it plays.
struct RunContext<'a> {
    plan: &'a PlayPlan,
    run: u64,
    stop: &'a CancellationToken,
    metrics: &'a Arc<PlayMetrics>,
    from: u64,
    total: u64,
    applied: Option<Arc<ApplyStats>>,
}

/// What a run's target adds to its report.
#[derive(Default)]
struct TargetResult {
    archive: Option<ArchiveWritten>,
    verification: Option<Verification>,
    failure: Option<color_eyre::Report>,
    applied: Option<Arc<ApplyStats>>,
}

/// Plays one run; `Err` when it could not start.
async fn play_one(
    plan: &PlayPlan,
    run: u64,
    skipped_before: u64,
    stop: &CancellationToken,
    metrics: &Arc<PlayMetrics>,
    started_at: String,
) -> Result<(RunReport, RunEnd)> {
    let (source, source_kind) = open_plan_source(plan).await?;
    let source_type = source_type(&plan.source, source.as_ref());
    let info = source.info().clone();
    let options = run_options(plan, source.as_ref())?;
    let from = options.from.or(info.first_offset).unwrap_or(0);
    let until = options.until.or(info.last_offset);
    let total = until.map_or(0, |u| (u + 1).saturating_sub(from));
    tracing::info!(
        run,
        node_id = plan.node_id.as_deref().unwrap_or(""),
        mode = plan.mode.label(),
        source_type = source_type.as_str(),
        source = %info.name,
        target = %plan.target.name(),
        events = total,
        "run {run}: {source_type} {} ({total} events from offset {from}) into {} {}",
        info.name,
        plan.target.kind(),
        plan.target.name()
    );
    let mut ctx = RunContext {
        plan,
        run,
        stop,
        metrics,
        from,
        total,
        applied: None,
    };
    let (mut play, was_interrupted, result) = play_target(&mut ctx, source, &info, options).await?;
    let failure = match result.failure {
        Some(f) => Some(f),
        None => targets::check_hashes(plan, &mut play),
    };
    let end = if let Some(f) = failure {
        RunEnd::Failed(f)
    } else if was_interrupted {
        RunEnd::Interrupted(play.next_offset)
    } else if play.output_closed {
        RunEnd::Ok // the reader went away (`play | head`)
    } else if let Some(f) = RunFailure::of_report(&play) {
        RunEnd::Failed(f.into())
    } else {
        RunEnd::Ok
    };
    let report = RunReport {
        run,
        node_id: plan.node_id.clone(),
        started_at,
        ended_at: now_rfc3339(),
        mode: source_kind.label().to_string(),
        source_type,
        target: plan.target.name(),
        target_type: plan.target.kind(),
        applied_transactions: result.applied.as_ref().map(|a| a.committed()),
        applied_operations: result.applied.as_ref().map(|a| a.operations()),
        play,
        archive: result.archive,
        verification: result.verification,
        skipped_before,
    };
    Ok((report, end))
}

/// Plays the run into the plan's target and finishes the target.
async fn play_target(
    ctx: &mut RunContext<'_>,
    source: Arc<dyn Source>,
    info: &SourceInfo,
    options: PlayerOptions,
) -> Result<(Report, bool, TargetResult)> {
    let plan = ctx.plan;
    let agents: Vec<(String, String)> = match &options.filter.agent {
        Some(a) => vec![a.clone()],
        None => info
            .channels
            .iter()
            .map(|(n, a, _)| (n.clone(), a.clone()))
            .collect(),
    };
    Ok(match &plan.target {
        Target::Stream { path, format } => {
            let sink = targets::open_stream(path, *format)?;
            let (ended, interrupted) = play_into(ctx, source, options, sink).await?;
            (ended.report, interrupted, TargetResult::default())
        }
        Target::Archive { .. } => {
            let sink = targets::open_archive(&plan.target)?;
            let (ended, interrupted) = play_into(ctx, source, options, sink).await?;
            let mut play = ended.report;
            let mut result = TargetResult::default();
            match targets::archive_written(plan, &mut play, ended.sink) {
                Ok(a) => result.archive = a,
                Err(f) => result.failure = Some(f),
            }
            (play, interrupted, result)
        }
        Target::Statehouse { map, .. } => {
            let (sink, target, applied) = targets::open_statehouse(plan, info).await?;
            ctx.applied = Some(applied.clone());
            let (ended, interrupted) = play_into(ctx, source, options, sink).await?;
            let mut play = ended.report;
            let mut result = TargetResult {
                applied: Some(applied),
                ..TargetResult::default()
            };
            if matches!(plan.target, Target::Statehouse { verify: true, .. })
                && !play.outcome.is_failed()
            {
                let expected = ended.state.unwrap_or_default();
                let (v, failure) =
                    targets::verify_statehouse(&target, map, &expected, &agents, &mut play).await;
                if failure.is_some() && v.as_ref().is_some_and(|v| !v.matched) {
                    ctx.metrics.mismatches.fetch_add(1, Relaxed);
                }
                result.verification = v;
                result.failure = failure;
            }
            (play, interrupted, result)
        }
    })
}

/// The player options of a run: the plan's flags, and the state tracked when a check or the
/// target needs it.
fn run_options(plan: &PlayPlan, source: &dyn Source) -> Result<PlayerOptions> {
    let mut options = player_options(&plan.flags, source)?;
    let check_target = matches!(plan.target, Target::Statehouse { verify: true, .. });
    options.track_state = plan.state_hash || plan.expect_state_hash.is_some() || check_target;
    options.chain = plan.chain;
    options.exit_when_done = true;
    if let Some((_, state)) = &plan.bootstrap {
        options.bootstrap = state.clone();
        options.track_state = true;
    }
    Ok(options)
}

/// Plays the run into `sink` with its stop signal, progress bar and status lines; returns what
/// the player handed back and whether the run was interrupted by a signal.
async fn play_into<S: Sink + 'static>(
    ctx: &RunContext<'_>,
    source: Arc<dyn Source>,
    options: PlayerOptions,
    sink: S,
) -> Result<(Ended<S>, bool)> {
    let plan = ctx.plan;
    let show_progress = plan.is_plain() && !plan.quiet && std::io::stderr().is_terminal();
    let markers = if options.pause_at.is_empty() {
        None
    } else {
        Some(
            crate::source::marked::marker_offsets(source.as_ref())?
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    };
    let handle = crate::player::spawn(source, options, sink)?;
    let hold = plan
        .flags
        .marker_hold
        .map_or(crate::app::config::defaults::MARKER_HOLD, |d| d.0);
    let markers_task =
        markers.map(|m| tokio::spawn(hold_at_markers(handle.stats(), handle.commander(), m, hold)));
    let commander = handle.commander();
    let interrupted = Arc::new(AtomicBool::new(false));
    let stopper = tokio::spawn({
        let (stop, flag) = (ctx.stop.clone(), interrupted.clone());
        async move {
            stop.cancelled().await;
            flag.store(true, Relaxed);
            tracing::warn!("stopping after the current transaction");
            let _ = commander.send(crate::player::Command::Stop);
        }
    });
    let progress =
        show_progress.then(|| crate::app::spawn_progress(handle.stats(), ctx.from, ctx.total));
    let status = tokio::spawn(status_lines(
        handle.stats(),
        StatusContext {
            interval: plan.status_interval,
            run: ctx.run,
            node_id: plan.node_id.clone().unwrap_or_default(),
            from: ctx.from,
            total: ctx.total,
            metrics: ctx.metrics.clone(),
            applied: ctx.applied.clone(),
            log: !plan.is_plain(),
        },
    ));
    let joined = handle.join_with_sink().await;
    if let Some(t) = markers_task {
        t.abort();
    }
    stopper.abort();
    status.abort();
    if let Some(p) = progress {
        p.abort();
    }
    Ok((joined?, interrupted.load(Relaxed)))
}

/// Headless `--pause-at-markers`: at each marker the player pauses; its caption goes to stderr
/// and the run goes on after `hold`.
async fn hold_at_markers(
    mut stats: tokio::sync::watch::Receiver<crate::player::Stats>,
    commander: tokio::sync::mpsc::UnboundedSender<crate::player::Command>,
    markers: std::collections::BTreeMap<u64, crate::event::marker::Marker>,
    hold: std::time::Duration,
) {
    let mut seen = 0;
    while stats.changed().await.is_ok() {
        let (at, pauses) = {
            let s = stats.borrow_and_update();
            (s.at_marker, s.marker_pauses)
        };
        if pauses == seen || at.is_none() {
            continue;
        }
        seen = pauses;
        if let Some(m) = at.and_then(|o| markers.get(&o).map(|m| (o, m))) {
            eprintln!(
                "marker {} at #{}{}",
                m.1.name,
                m.0,
                m.1.caption
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(hold).await;
        if commander.send(crate::player::Command::Resume).is_err() {
            return;
        }
    }
}

pub async fn run_once(
    plan: &PlayPlan,
    run: u64,
    skipped_before: u64,
    stop: &CancellationToken,
    metrics: &Arc<PlayMetrics>,
) -> RunEnd {
    let started_at = now_rfc3339();
    let node = plan.node_id.clone().unwrap_or_default();
    metrics.run_started();
    let result = play_one(plan, run, skipped_before, stop, metrics, started_at.clone()).await;
    let (report, end) = match result {
        Ok(r) => r,
        Err(e) => {
            // The run could not start (source, target, range): still a report line.
            metrics.run_ended(None, 0);
            let line = serde_json::json!({
                "run": run,
                "node_id": plan.node_id,
                "started_at": started_at,
                "ended_at": now_rfc3339(),
                "mode": plan.mode.label(),
                "target": plan.target.name(),
                "target_type": plan.target.kind(),
                "source": plan.source,
                "outcome": "failed",
                "reason": format!("{e:#}"),
                "skipped_before": skipped_before,
            });
            if let Err(w) = append_report(plan, &line.to_string()) {
                tracing::error!("{w:#}");
            }
            return RunEnd::Failed(e);
        }
    };
    metrics.run_ended(Some(report.play.outcome), report.play.duration_ms);
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if plan.is_plain() {
        eprintln!("{json}");
    }
    tracing::info!(
        run,
        node_id = node.as_str(),
        outcome = report.play.outcome.label(),
        events = report.play.events_sent,
        duration_ms = report.play.duration_ms,
        rate = format!("{:.0}", report.play.achieved_rate).as_str(),
        next_offset = report.play.next_offset,
        "run {run} {}: {} events in {:.1} s ({:.0} events/s){}",
        report.play.outcome,
        report.play.events_sent,
        report.play.duration_ms as f64 / 1e3,
        report.play.achieved_rate,
        report
            .play
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    if !plan.is_plain() {
        // Headless schedules and targets: the report is one JSON line on stderr.
        eprintln!("{}", serde_json::to_string(&report).unwrap_or_default());
    }
    let mut write_failed = None;
    if let Some(path) = &plan.report
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        write_failed = Some(ArchiveError::io(&path.display().to_string(), e).into());
    }
    if let Err(e) = append_report(plan, &serde_json::to_string(&report).unwrap_or_default()) {
        write_failed = Some(e);
    }
    match (end, write_failed) {
        (RunEnd::Ok, Some(e)) => RunEnd::Failed(e),
        (end, _) => end,
    }
}

/// What the status lines of a run say and where its metrics go.
struct StatusContext {
    interval: Duration,
    run: u64,
    node_id: String,
    from: u64,
    total: u64,
    metrics: Arc<PlayMetrics>,
    applied: Option<Arc<ApplyStats>>,
    /// Log a line every interval (scheduled and targeted runs); the metrics follow anyway.
    log: bool,
}

/// Logs a status line every `interval` (when `log` is on) and keeps the metrics current.
async fn status_lines(mut stats: tokio::sync::watch::Receiver<Stats>, c: StatusContext) {
    let StatusContext {
        interval,
        run,
        node_id,
        from,
        total,
        metrics,
        applied,
        log,
    } = c;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let progress = |s: &Stats| {
        if total == 0 {
            0.0
        } else {
            (s.next_offset.saturating_sub(from) as f64 / total as f64).min(1.0)
        }
    };
    loop {
        tokio::select! {
            changed = stats.changed() => {
                if changed.is_err() {
                    return;
                }
                let s = stats.borrow_and_update().clone();
                metrics.update(&s, progress(&s), applied.as_deref());
            }
            _ = tick.tick() => {
                if !log {
                    continue;
                }
                let s = stats.borrow().clone();
                let p = progress(&s);
                let target_rate = s
                    .target_rate
                    .map_or("as fast as possible".to_string(), |r| format!("target {r:.0}/s"));
                let applied_txns = applied.as_ref().map(|a| a.committed());
                // The stats are published every 100 ms; a commit implies its event was played.
                let done = s
                    .next_offset
                    .saturating_sub(from)
                    .max(applied_txns.unwrap_or(0))
                    .min(total.max(1));
                let p = if total == 0 { p } else { p.max(done as f64 / total as f64) };
                tracing::info!(
                    run,
                    node_id = node_id.as_str(),
                    state = s.state.label(),
                    progress = format!("{:.1}", p * 100.0).as_str(),
                    events = s.events_played,
                    rate = format!("{:.0}", s.rate).as_str(),
                    target_rate = s.target_rate.unwrap_or(0.0),
                    lag_ms = s.lag.as_secs_f64() * 1e3,
                    applied = applied_txns,
                    "run {run}: {:.1}% ({done} of {total} events), {:.0} events/s ({target_rate}), lag {:.0} ms, {}{}",
                    p * 100.0,
                    s.rate,
                    s.lag.as_secs_f64() * 1e3,
                    s.state.label(),
                    applied_txns.map(|a| format!(", {a} committed")).unwrap_or_default()
                );
            }
        }
    }
}

/// Opens the plan's source (blocking work off the runtime's threads).
pub async fn open_plan_source(plan: &PlayPlan) -> Result<(Arc<dyn Source>, SourceKind)> {
    let text = plan.source.clone();
    let mut request = open_request(
        &plan.source,
        &plan.remote,
        plan.mode,
        plan.allow_truncated,
        &plan.flags.agent,
        &plan.flags.follow,
        plan.flags.time_field.as_deref(),
    )?;
    request.markers = plan.flags.markers.clone();
    let opened = tokio::task::spawn_blocking(move || open_source(&text, &request))
        .await
        .wrap_err("opening the source")?;
    Ok(opened?)
}

pub fn source_type(text: &str, source: &dyn Source) -> String {
    let kind = &source.info().kind;
    if text.starts_with("s3://") {
        "s3 archive".to_string()
    } else if kind == "archive" || kind == "segments" {
        if Path::new(text).is_dir() {
            "segment directory".to_string()
        } else {
            "archive file".to_string()
        }
    } else {
        kind.clone()
    }
}
