//! `play --dry-run`: every check a run would make — source, range, first event, target,
//! bootstrap, schedule — and nothing written.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use color_eyre::eyre::Result;

use super::plan::{PlayPlan, Target, usage};
use super::run::{open_plan_source, source_type};
use super::targets::{check_agent_map, check_parent, connect_target};
use crate::app::options::player_options;
use crate::schedule::Scheduler;

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
        "source: ok: {} {} ({} events, offsets {}..={})",
        source_type(&plan.source, source.as_ref()),
        info.name,
        info.events.map_or("?".into(), |e| e.to_string()),
        info.first_offset.map_or("-".into(), |o| o.to_string()),
        info.last_offset.map_or("-".into(), |o| o.to_string()),
    ));
    let options = player_options(&plan.flags, source.as_ref())?;
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
    // Read the first event of the range: the data is there and decodes.
    let window = crate::flow::CreditWindow::new(1 << 20);
    let mut stream = source.open(
        crate::source::StreamRequest {
            from,
            until: Some(from),
            filter: options.filter.clone(),
            batch_events: 1,
            verify_chain: plan.verify_chain,
            ..Default::default()
        },
        window,
    )?;
    match stream.recv().await {
        Some(Ok(batch)) => {
            let first = batch.events.first().map(|(e, _)| e.offset);
            say(format!(
                "range: ok: offsets {from}..={} ({} events{}); first event readable{}",
                until.map_or("-".into(), |u| u.to_string()),
                until.map_or(0, |u| u + 1 - from),
                if options.filter.agent.is_some() || options.filter.key_prefix.is_some() {
                    " before the filter"
                } else {
                    ""
                },
                first.map(|o| format!(" (offset {o})")).unwrap_or_default()
            ));
        }
        Some(Err(e)) => return Err(color_eyre::Report::new(e).wrap_err("reading the first event")),
        None => say(format!(
            "range: ok: offsets {from}..={}; no event there passes the filter",
            until.map_or("-".into(), |u| u.to_string())
        )),
    }
    drop(stream);
    match &plan.target {
        Target::Stream { path, .. } => {
            if path.as_os_str() != "-" {
                check_parent(path)?;
            }
            say(format!(
                "target: ok: {} {}",
                plan.target.kind(),
                plan.target.name()
            ));
        }
        Target::Archive { path, .. } => {
            check_parent(path)?;
            say(format!("target: ok: new archive at {}", path.display()));
        }
        Target::Statehouse {
            url, map, timeout, ..
        } => {
            check_agent_map(map, &info)?;
            let (_, version) = connect_target(plan, url, *timeout).await?;
            say(format!(
                "target: ok: Statehouse {version} at {url}, healthy"
            ));
        }
    }
    if let Some((path, state)) = &plan.bootstrap {
        say(format!(
            "bootstrap: ok: {} keys from {}",
            state.len(),
            path.display()
        ));
    }
    if !plan.schedule.is_once() {
        let s = Scheduler::new(plan.schedule.clone(), Utc::now());
        let mut times: Vec<DateTime<Utc>> = Vec::new();
        let mut next = s.first();
        while let Some(t) = next {
            times.push(t);
            if times.len() == 3 {
                break;
            }
            next = s.after(t, t).0;
        }
        say(format!(
            "schedule: next runs at {}",
            times
                .iter()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    say(format!(
        "dry run: ok ({} source); nothing was written",
        kind.label()
    ));
    Ok(())
}
