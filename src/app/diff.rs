//! `replayscope diff LEFT RIGHT`: two sources compared in lockstep (DESIGN.md section 13). Exit
//! 0 when they agree; at the first divergence, one screen that shows both events side by side,
//! what differs field by field, the last point where they agreed and how to open the inspector
//! there, and exit 3; `--all` lists every divergence (up to `--max`) as JSON Lines.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use color_eyre::eyre::Result;

use super::exit::{RunFailure, UsageError};
use super::options::{open_request, parse_agent, resolve_until};
use super::runtime;
use crate::cli::DiffArgs;
use crate::event::{AgentMap, Event, format_time_ns};
use crate::inspect::diff::{
    Align, Compare, DiffError, DiffProgress, DiffRequest, DiffSummary, Divergence, DivergenceKind,
    SideRequest, diff,
};
use crate::source::Source;
use crate::source::open::open_source;

/// The JSON report (`--report`).
#[derive(Debug, serde::Serialize)]
struct DiffReport<'a> {
    left: &'a str,
    right: &'a str,
    compare: Compare,
    align: Align,
    ignore: &'a [String],
    equal: bool,
    #[serde(flatten)]
    summary: &'a DiffSummary,
    first_divergence: Option<FirstDivergence>,
    duration_ms: u64,
    /// Steps compared per second.
    rate: f64,
}

#[derive(Debug, serde::Serialize)]
struct FirstDivergence {
    index: u64,
    kind: DivergenceKind,
    left_offset: Option<u64>,
    right_offset: Option<u64>,
    fields: Vec<String>,
}

/// How a side is opened.
pub(crate) struct SideArgs<'a> {
    pub remote: &'a crate::cli::RemoteArgs,
    pub allow_truncated: bool,
    pub from: Option<crate::event::Position>,
    pub until: Option<crate::event::Position>,
}

/// A side opened: its source and what it streams (`agent`: the one agent it is narrowed to).
pub(crate) fn open_side(
    text: &str,
    a: &SideArgs<'_>,
    agent: Option<&str>,
) -> Result<(Arc<dyn Source>, SideRequest)> {
    let agents: Vec<String> = agent.iter().map(|s| s.to_string()).collect();
    let request = open_request(
        text,
        a.remote,
        Default::default(),
        a.allow_truncated,
        &agents,
        &Default::default(),
        None,
    )?;
    let (source, _) = open_source(text, &request)?;
    let info = source.info().clone();
    let agent = parse_agent(agent, &info)?;
    let from = match &a.from {
        Some(p) => source.resolve(p.clone(), false)?.ok_or_else(|| {
            UsageError(format!("{}: --from {p} is past the last event", info.name))
        })?,
        None => info.first_offset.unwrap_or(0),
    };
    let until = match &a.until {
        Some(p) => Some(resolve_until(source.as_ref(), p.clone(), "--until")?),
        None => None,
    };
    let side = SideRequest {
        from,
        until,
        filter: crate::source::Filter {
            agent,
            ..Default::default()
        },
    };
    Ok((source, side))
}

/// The right side of a comparison opened, and the request: the left side streams `left`;
/// the right one is narrowed to the left agent as the map names it.
pub(crate) fn comparison(
    left: &Arc<dyn Source>,
    left_side: SideRequest,
    right_text: &str,
    flags: &crate::cli::DiffFlags,
    side: &SideArgs<'_>,
    chain: crate::source::ChainCheck,
) -> Result<(Arc<dyn Source>, DiffRequest)> {
    for p in &flags.ignore {
        if !p.starts_with('/') {
            return Err(UsageError(format!(
                "--ignore {p:?}: expected a JSON pointer such as /timestamp or /result/at"
            ))
            .into());
        }
    }
    let map = AgentMap::parse(&flags.map_agent).map_err(UsageError)?;
    let unknown = map.unknown(&left.info().channels);
    if !unknown.is_empty() {
        return Err(UsageError(format!(
            "--map-agent: {} has no agent {}",
            left.info().name,
            unknown.join(", ")
        ))
        .into());
    }
    // The right side names the agent as the map says.
    let right_agent = left_side.filter.agent.as_ref().map(|(ns, id)| {
        let (n, i) = map.map(&Arc::from(ns.as_str()), &Arc::from(id.as_str()));
        format!("{n}/{i}")
    });
    let (right, right_side) = open_side(right_text, side, right_agent.as_deref())?;
    let req = DiffRequest {
        compare: flags.compare.into(),
        align: flags.align.into(),
        ignore: flags.ignore.clone(),
        left: left_side,
        right: right_side,
        map,
        chain,
    };
    if req.compare == Compare::Hash && req.align != Align::Offset {
        return Err(UsageError(
            "--compare hash compares the stored bytes offset by offset: use --align offset".into(),
        )
        .into());
    }
    Ok((right, req))
}

pub fn diff_cmd(a: DiffArgs) -> Result<()> {
    let side = SideArgs {
        remote: &a.remote,
        allow_truncated: a.allow_truncated,
        from: a.from.clone(),
        until: a.until.clone(),
    };
    let (left, left_side) = open_side(&a.left, &side, a.agent.as_deref())?;
    let (right, req) = comparison(&left, left_side, &a.right, &a.flags, &side, a.chain.chain())?;
    let started = Instant::now();
    let mut first: Option<Divergence> = None;
    let mut listed = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut write_failed = None;
    let summary = runtime()?.block_on(diff(&left, &right, &req, |p| {
        let DiffProgress::Divergence(d) = p else {
            return true;
        };
        if first.is_none() {
            first = Some(d.clone());
        }
        if !a.all {
            return false;
        }
        listed += 1;
        let written = serde_json::to_writer(&mut out, d)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            write_failed = Some(e);
            return false;
        }
        listed < a.max
    }));
    let summary = summary.map_err(|e| match e {
        DiffError::Usage(m) => color_eyre::Report::new(UsageError(m)),
        e if e.is_integrity() => color_eyre::Report::new(RunFailure::Integrity(e.to_string())),
        e => color_eyre::Report::new(RunFailure::Failed(e.to_string())),
    })?;
    if let Some(e) = write_failed {
        return Err(e.into());
    }
    let elapsed = started.elapsed();
    if let Some(path) = &a.report {
        let report = DiffReport {
            left: &a.left,
            right: &a.right,
            compare: req.compare,
            align: req.align,
            ignore: &req.ignore,
            equal: first.is_none(),
            summary: &summary,
            first_divergence: first.as_ref().map(|d| FirstDivergence {
                index: d.index,
                kind: d.kind,
                left_offset: d.left.as_ref().map(|e| e.offset),
                right_offset: d.right.as_ref().map(|e| e.offset),
                fields: d
                    .changes
                    .iter()
                    .map(|c| c.path().to_string())
                    .chain(d.keys.iter().map(|k| format!("{}:{}", k.agent, k.key)))
                    .collect(),
            }),
            duration_ms: elapsed.as_millis() as u64,
            rate: summary.steps as f64 / elapsed.as_secs_f64().max(1e-9),
        };
        let json = serde_json::to_string_pretty(&report)?;
        if path.as_os_str() == "-" {
            eprintln!("{json}");
        } else {
            std::fs::write(path, format!("{json}\n"))
                .map_err(|e| crate::archive::ArchiveError::io(&path.display().to_string(), e))?;
        }
    }
    let Some(d) = first else {
        drop(out);
        eprintln!(
            "equal: {} compared ({} on the left, {} on the right), {} by {}",
            crate::text::count(summary.steps, "step", "steps"),
            summary.left_events,
            summary.right_events,
            compare_label(req.compare),
            align_label(req.align),
        );
        return Ok(());
    };
    if !a.all {
        out.write_all(explain(&d, &a, &req).as_bytes())?;
    }
    out.flush()?;
    drop(out);
    let at = |e: &Option<Arc<Event>>| e.as_ref().map_or("-".to_string(), |e| e.offset.to_string());
    Err(RunFailure::Integrity(format!(
        "{} and {} diverge at LEFT #{} / RIGHT #{} ({}{})",
        a.left,
        a.right,
        at(&d.left),
        at(&d.right),
        compare_label(req.compare),
        if a.all {
            format!(
                "; {} listed",
                crate::text::count(listed, "divergence", "divergences")
            )
        } else {
            String::new()
        }
    ))
    .into())
}

fn compare_label(c: Compare) -> &'static str {
    match c {
        Compare::Events => "events compared",
        Compare::State => "states compared",
        Compare::Hash => "stored bytes compared",
    }
}

fn align_label(a: Align) -> &'static str {
    match a {
        Align::Offset => "offset",
        Align::Txn => "txn_id",
        Align::CommitTs => "commit_ts",
        Align::Position => "position",
    }
}

/// Width of one side's column in the explanation.
const COLUMN: usize = 36;

/// The lines describing one side's event (or its absence), for the side-by-side table.
fn side_lines(e: Option<&Arc<Event>>, other_name: &str) -> Vec<(&'static str, String)> {
    let Some(e) = e else {
        return vec![("", format!("(nothing: only {other_name} has this one)"))];
    };
    let mut lines = vec![
        ("offset", e.offset.to_string()),
        ("commit_ts", format!("@{}", e.commit_ts)),
    ];
    if let Some(t) = e.commit_time_ns {
        lines.push(("time", format_time_ns(t)));
    }
    lines.push(("txn_id", e.txn_id.clone()));
    lines.push(("agent", format!("{}/{}", e.namespace, e.agent_id)));
    for (i, op) in e.operations.iter().enumerate() {
        let what = match &op.value {
            Some(_) => format!("set {} v{}", op.key, op.version),
            None => format!("delete {} v{}", op.key, op.version),
        };
        lines.push((if i == 0 { "operations" } else { "" }, what));
    }
    lines
}

/// The first divergence explained on one screen.
fn explain(d: &Divergence, a: &DiffArgs, req: &DiffRequest) -> String {
    use crate::text::ellipsize;
    let mut s = String::new();
    let at = |e: &Option<Arc<Event>>| {
        e.as_ref()
            .map_or("-".to_string(), |e| format!("#{}", e.offset))
    };
    s.push_str(&format!(
        "LEFT and RIGHT diverge at step {} (LEFT {}, RIGHT {}; {} by {})\n",
        crate::text::thousands(d.index + 1),
        at(&d.left),
        at(&d.right),
        compare_label(req.compare),
        align_label(req.align)
    ));
    match d.last_equal {
        Some((l, r)) => s.push_str(&format!("last equal: LEFT #{l}, RIGHT #{r}\n\n")),
        None => s.push_str("last equal: none (they differ from the first step)\n\n"),
    }
    let (left, right) = (
        side_lines(d.left.as_ref(), "RIGHT"),
        side_lines(d.right.as_ref(), "LEFT"),
    );
    s.push_str(&format!(
        "{:<11} {:<COLUMN$}  {}\n",
        "",
        ellipsize(&format!("LEFT {}", a.left), COLUMN),
        ellipsize(&format!("RIGHT {}", a.right), COLUMN)
    ));
    // Rows by label where both sides have one, then the rest of the operations.
    for i in 0..left.len().max(right.len()) {
        let (ll, lv) = left.get(i).cloned().unwrap_or(("", String::new()));
        let (rl, rv) = right.get(i).cloned().unwrap_or(("", String::new()));
        let label = if ll.is_empty() { rl } else { ll };
        s.push_str(&format!(
            "{label:<11} {:<COLUMN$}  {}\n",
            ellipsize(&lv, COLUMN),
            ellipsize(&rv, COLUMN)
        ));
    }
    s.push_str("\nwhat differs:\n");
    const SHOWN: usize = 12;
    for c in d.changes.iter().take(SHOWN) {
        s.push_str(&format!("  {}\n", c.line(30)));
    }
    for k in d.keys.iter().take(SHOWN) {
        s.push_str(&format!("  {}\n", k.text(30).replace('\n', "\n  ")));
    }
    let more = (d.changes.len() + d.keys.len()).saturating_sub(SHOWN);
    if more > 0 {
        s.push_str(&format!(
            "  … {more} more (--all lists them as JSON Lines)\n"
        ));
    }
    if d.changes.is_empty() && d.keys.is_empty() {
        s.push_str("  (the stored bytes differ; the events read the same)\n");
    }
    let from = d
        .left
        .as_ref()
        .map(|e| e.offset)
        .or(d.last_equal.map(|(l, _)| l))
        .unwrap_or(0);
    s.push_str(&format!(
        "\nopen both in the inspector there:\n  replayscope open {} --against {} --compare {} --align {}{}{} --from {} --paused\n",
        a.left,
        a.right,
        match req.compare {
            Compare::Events => "events",
            Compare::State => "state",
            Compare::Hash => "hash",
        },
        match req.align {
            Align::Offset => "offset",
            Align::Txn => "txn",
            Align::CommitTs => "commit-ts",
            Align::Position => "position",
        },
        a.agent
            .as_deref()
            .map(|ag| format!(" --agent {ag}"))
            .unwrap_or_default(),
        req.ignore
            .iter()
            .map(|p| format!(" --ignore {p}"))
            .collect::<String>(),
        from.saturating_sub(5),
    ));
    s
}
