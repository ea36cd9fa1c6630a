//! `replayscope play`: the headless player. One run plays a source's range into a target —
//! standard output or a file (JSON Lines or text), a new archive, or a Statehouse daemon
//! (applied transaction by transaction, then read back and compared) — at the chosen pace.
//! With `--every` or `--cron` runs repeat until stopped, never overlapping; each run's report
//! is printed, optionally appended to `--reports` (JSON Lines), and counted in `--metrics`.
//!
//! [`plan`] resolves the flags and `--config` into a [`plan::PlayPlan`]; [`run`] plays one run,
//! [`targets`] opens and finishes its target; [`report`] is what a run reports; [`dry_run`]
//! checks everything without writing. This file is the schedule loop.

pub mod dry_run;
pub mod plan;
pub mod report;
pub mod run;
pub mod targets;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use color_eyre::eyre::Result;
use tokio_util::sync::CancellationToken;

use super::exit::RunFailure;
use super::runtime;
use crate::cli::PlayArgs;
use crate::schedule::Scheduler;
use plan::{PlayPlan, usage};
use report::PlayMetrics;
use run::{RunEnd, run_once};

/// `play`: check the plan, then run it (once or on its schedule).
pub fn play_cmd(a: PlayArgs) -> Result<()> {
    let plan = PlayPlan::resolve(a)?;
    let rt = runtime()?;
    rt.block_on(execute(plan))
}

async fn execute(plan: PlayPlan) -> Result<()> {
    let stop = CancellationToken::new();
    let signal = Arc::new(std::sync::Mutex::new(super::exit::StopSignal::default()));
    tokio::spawn({
        let (stop, signal) = (stop.clone(), signal.clone());
        async move {
            let got = super::shutdown_signal().await;
            *signal.lock().unwrap_or_else(|p| p.into_inner()) = got;
            stop.cancel();
        }
    });
    if plan.dry_run {
        return dry_run::dry_run(&plan).await;
    }
    let metrics = Arc::new(PlayMetrics::new(
        plan.node_id.as_deref(),
        plan.target.kind(),
    ));
    if let Some(addr) = plan.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| usage(format!("--metrics {addr}: cannot listen: {e}")))?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "metrics at http://{bound}/metrics");
        let m = metrics.clone();
        tokio::spawn(crate::metrics::serve_metrics(
            listener,
            Arc::new(move || m.render()),
            stop.clone(),
        ));
    }
    if !plan.schedule.is_once() {
        tracing::info!(
            node_id = plan.node_id.as_deref().unwrap_or(""),
            schedule = %plan.schedule.describe(),
            "replaying {} into {} {}",
            plan.source,
            plan.target.kind(),
            plan.schedule.describe()
        );
    }
    let scheduler = Scheduler::new(plan.schedule.clone(), Utc::now());
    let mut due = scheduler.first();
    let mut runs = 0u64;
    let mut skipped = 0u64;
    let mut last = RunEnd::Ok;
    while let Some(at) = due {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            tracing::info!(
                node_id = plan.node_id.as_deref().unwrap_or(""),
                due = %at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "next run at {}",
                at.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
        }
        if stop.is_cancelled() {
            break;
        }
        runs += 1;
        last = run_once(&plan, runs, skipped, &stop, &metrics).await;
        skipped = 0;
        if let RunEnd::Failed(e) = &last
            && !plan.schedule.is_once()
        {
            tracing::error!(run = runs, "run {runs} failed: {e:#}");
        }
        if stop.is_cancelled() || plan.max_runs.is_some_and(|m| runs >= m) {
            break;
        }
        let (next, missed) = scheduler.after(at, Utc::now());
        if missed > 0 {
            skipped = missed;
            metrics.runs_skipped.fetch_add(missed, Relaxed);
            tracing::warn!(
                run = runs,
                skipped = missed,
                "skipped {missed} run(s) that were due while run {runs} was still going"
            );
        }
        due = next;
    }
    match last {
        RunEnd::Ok => Ok(()),
        RunEnd::Interrupted(next) => {
            let by = *signal.lock().unwrap_or_else(|p| p.into_inner());
            Err(RunFailure::Interrupted(by, next).into())
        }
        RunEnd::Failed(e) => Err(e),
    }
}
