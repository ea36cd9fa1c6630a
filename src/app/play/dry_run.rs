//! `play --dry-run`: every check a run would make — source, range, first event, target,
//! bootstrap, schedule — and nothing written.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use color_eyre::eyre::Result;

use super::plan::{PlayPlan, Target, usage};
use super::run::{open_plan_source, source_type};
use super::targets::{check_agent_map, check_parent, connect_target};
use crate::app::options::player_options;
use crate::flow::CreditWindow;
use crate::schedule::Scheduler;
use crate::source::{Source, SourceInfo, StreamRequest};

/// `--dry-run`: every check a run would make, nothing written.
pub async fn dry_run(plan: &PlayPlan) -> Result<()> {
    let mut out = std::io::stdout();
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    say(format!("plan: {}", plan.schedule.describe()));
    let (source, kind) = open_plan_source(plan).await?;
    let info = source.info().clone();
    say(format!(
        "source: ok: {} {} ({} events, offsets {})",
        source_type(&plan.source, source.as_ref()),
        info.name,
        info.events.map_or("?".into(), |e| e.to_string()),
        range_text(info.first_offset, info.last_offset),
    ));
    say(check_range(plan, source.as_ref()).await?);
    say(check_target(plan, &info).await?);
    if let Some((path, state)) = &plan.bootstrap {
        say(format!(
            "bootstrap: ok: {} keys from {}",
            state.len(),
            path.display()
        ));
    }
    if !plan.schedule.is_once() {
        say(format!("schedule: next runs at {}", next_runs(plan, 3)));
    }
    say(format!(
        "dry run: ok ({} source); nothing was written",
        kind.label()
    ));
    Ok(())
}

/// Offsets as `first to last` ("-" for an end that is not known).
fn range_text(first: Option<u64>, last: Option<u64>) -> String {
    let show = |o: Option<u64>| o.map_or("-".to_string(), |o| o.to_string());
    format!("{} to {}", show(first), show(last))
}

/// The range is not empty and its first event is there and decodes.
async fn check_range(plan: &PlayPlan, source: &dyn Source) -> Result<String> {
    let info = source.info();
    let options = player_options(&plan.flags, source)?;
    let from = options.from.or(info.first_offset).unwrap_or(0);
    let until = options.until.or(info.last_offset);
    match (info.last_offset, until) {
        (None, _) => return Err(usage(format!("{}: the source is empty", info.name))),
        (_, Some(u)) if u < from => {
            return Err(usage(format!(
                "{}: the range is empty: --until resolves to offset {u}, before --from offset {from}",
                info.name
            )));
        }
        _ => {}
    }
    let window = CreditWindow::new(1 << 20);
    let request = StreamRequest {
        from,
        until: Some(from),
        filter: options.filter.clone(),
        batch_events: 1,
        chain: plan.chain,
        ..Default::default()
    };
    let mut stream = source.open(request, window)?;
    let range = range_text(Some(from), until);
    Ok(match stream.recv().await {
        Some(Ok(batch)) => {
            let first = batch.events.first().map(|(e, _)| e.offset);
            format!(
                "range: ok: offsets {range} ({} events{}); first event readable{}",
                until.map_or(0, |u| u + 1 - from),
                if options.filter.agent.is_some() || options.filter.key_prefix.is_some() {
                    " before the filter"
                } else {
                    ""
                },
                first.map(|o| format!(" (offset {o})")).unwrap_or_default()
            )
        }
        Some(Err(e)) => return Err(color_eyre::Report::new(e).wrap_err("reading the first event")),
        None => format!("range: ok: offsets {range}; no event there passes the filter"),
    })
}

/// The target can be written (a file's directory) or answers healthy (a daemon).
async fn check_target(plan: &PlayPlan, info: &SourceInfo) -> Result<String> {
    Ok(match &plan.target {
        Target::Stream { path, .. } => {
            if path.as_os_str() != "-" {
                check_parent(path)?;
            }
            format!("target: ok: {} {}", plan.target.kind(), plan.target.name())
        }
        Target::Archive { path, .. } => {
            check_parent(path)?;
            if path.exists() {
                format!(
                    "target: ok: replaces the existing archive at {} (--force)",
                    path.display()
                )
            } else {
                format!("target: ok: new archive at {}", path.display())
            }
        }
        Target::Statehouse {
            url, map, timeout, ..
        } => {
            check_agent_map(map, info)?;
            let (_, version) = connect_target(plan, url, *timeout).await?;
            format!("target: ok: Statehouse {version} at {url}, healthy")
        }
    })
}

/// The next `n` due times of the schedule, from now.
fn next_runs(plan: &PlayPlan, n: usize) -> String {
    let s = Scheduler::new(plan.schedule.clone(), Utc::now());
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    let mut next = s.first();
    while let Some(t) = next {
        times.push(t);
        if times.len() == n {
            break;
        }
        next = s.after(t, t).0;
    }
    times
        .iter()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .collect::<Vec<_>>()
        .join(", ")
}
