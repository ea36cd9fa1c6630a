//! `replayscope history SOURCE KEY`: every version of one key, with the field-level changes
//! against the version before; `replayscope search SOURCE QUERY`: the events that mention
//! something. JSON Lines or text; exit 1 when nothing matches (as grep does).

use std::io::Write;

use color_eyre::eyre::{Result, WrapErr};

use super::exit::{RunFailure, UsageError};
use super::options::{open_request, parse_agent, resolve_until};
use super::runtime;
use crate::cli::{HistoryArgs, InspectSourceArgs, ListFormat, ScanArgs, SearchArgs, StateArgs};
use crate::inspect::history::{HistoryRequest, scan};
use crate::source::open::open_source;

/// What both commands ask of their source.
struct Opened {
    source: std::sync::Arc<dyn crate::source::Source>,
    info: crate::source::SourceInfo,
    agent: Option<(String, String)>,
    from: u64,
    until: Option<u64>,
}

fn open(text: &str, a: &ScanArgs) -> Result<Opened> {
    let (source, info, agent) = open_input(text, &a.input)?;
    let from = match &a.from {
        Some(p) => source.resolve(p.clone(), false)?.unwrap_or(0),
        None => info.first_offset.unwrap_or(0),
    };
    let until = match &a.until {
        Some(p) => Some(resolve_until(source.as_ref(), p.clone(), "--until")?),
        None => None,
    };
    Ok(Opened {
        source,
        info,
        agent,
        from,
        until,
    })
}

/// A source opened for inspection, and the agent it is narrowed to.
type Input = (
    std::sync::Arc<dyn crate::source::Source>,
    crate::source::SourceInfo,
    Option<(String, String)>,
);

fn open_input(text: &str, a: &InspectSourceArgs) -> Result<Input> {
    let agents: Vec<String> = a.agent.iter().cloned().collect();
    let mut request = open_request(
        text,
        &a.remote,
        Default::default(),
        a.allow_truncated,
        &agents,
        &Default::default(),
        None,
    )?;
    request.markers = a.markers.clone();
    let (source, _) = open_source(text, &request)?;
    let info = source.info().clone();
    let agent = parse_agent(a.agent.as_deref(), &info)?;
    Ok((source, info, agent))
}

/// Lines to stdout; the first write that fails stops the scan and is the command's error.
struct Lines {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    line: Vec<u8>,
    failed: Option<std::io::Error>,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            out: std::io::BufWriter::new(std::io::stdout().lock()),
            line: Vec::with_capacity(1024),
            failed: None,
        }
    }

    /// Writes what `fill` puts in a line; false (stop) once writing failed.
    fn write(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> bool {
        self.line.clear();
        let r = fill(&mut self.line).and_then(|()| {
            self.line.push(b'\n');
            self.out.write_all(&self.line)
        });
        match r {
            Ok(()) => true,
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    fn finish(mut self, what: &str) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e).wrap_err(format!("writing the {what}"));
        }
        self.out.flush().wrap_err(format!("writing the {what}"))
    }
}

pub fn search_cmd(a: SearchArgs) -> Result<()> {
    let query = crate::inspect::search::Query::parse(&a.query).map_err(UsageError)?;
    let o = open(&a.source, &a.scan)?;
    let req = crate::inspect::search::SearchRequest {
        from: o.from,
        until: o.until,
        agent: o.agent,
        chain: a.scan.input.chain.chain(),
    };
    let mut lines = Lines::new();
    let format = a.scan.format;
    let found =
        runtime()?.block_on(crate::inspect::search::scan(&o.source, &query, &req, |e| {
            lines.write(|line| match format {
                ListFormat::Jsonl => serde_json::to_writer(line, e.as_ref()).map_err(Into::into),
                ListFormat::Text => {
                    crate::sink::stream::text_line(e, line);
                    Ok(())
                }
            })
        }))?;
    lines.finish("matches")?;
    if found == 0 {
        return Err(
            RunFailure::Failed(format!("{}: no event matches {:?}", o.info.name, a.query)).into(),
        );
    }
    Ok(())
}

pub fn history_cmd(a: HistoryArgs) -> Result<()> {
    let o = open(&a.source, &a.scan)?;
    if a.key.is_empty() {
        return Err(UsageError("KEY is empty: give the key as stored (e.g. plan)".into()).into());
    }
    let req = HistoryRequest {
        key: a.key.clone(),
        agent: o.agent,
        from: o.from,
        until: o.until,
        chain: a.scan.input.chain.chain(),
    };
    let mut lines = Lines::new();
    let format = a.scan.format;
    let found = runtime()?.block_on(scan(&o.source, &req, |v| {
        lines.write(|line| match format {
            ListFormat::Jsonl => serde_json::to_writer(line, v).map_err(Into::into),
            ListFormat::Text => line.write_all(v.text().as_bytes()),
        })
    }))?;
    lines.finish("history")?;
    if found == 0 {
        return Err(RunFailure::Failed(format!(
            "{}: no transaction touches the key {:?}{} (keys are matched exactly)",
            o.info.name,
            a.key,
            a.scan
                .input
                .agent
                .as_deref()
                .map(|g| format!(" in {g}"))
                .unwrap_or_default()
        ))
        .into());
    }
    Ok(())
}

/// `replayscope state SOURCE --at POS` / `--diff POS1 POS2`.
pub fn state_cmd(a: StateArgs) -> Result<()> {
    use crate::inspect::state_at::{StateRequest, diff_states, fold_to};
    let (source, info, agent) = open_input(&a.source, &a.input)?;
    let asked: Vec<crate::event::Position> = match (&a.at, &a.diff) {
        (Some(p), _) => vec![p.clone()],
        (None, Some(d)) => d.clone(),
        (None, None) => return Err(UsageError("give --at POS or --diff POS1 POS2".into()).into()),
    };
    let points = asked
        .iter()
        .map(|p| {
            let flag = if a.at.is_some() { "--at" } else { "--diff" };
            // A time or commit_ts past the end is the state at the end; an offset must exist.
            if let (&crate::event::Position::Offset(o), Some(last)) = (p, info.last_offset)
                && o > last
            {
                return Err(UsageError(format!(
                    "{}: {flag} {o} is past the last event (offset {last})",
                    info.name
                ))
                .into());
            }
            resolve_until(source.as_ref(), p.clone(), flag)
        })
        .collect::<Result<Vec<u64>>>()?;
    let mut sorted = points.clone();
    sorted.sort_unstable();
    let req = StateRequest {
        agent,
        points: sorted.clone(),
        chain: a.input.chain.chain(),
    };
    let mut states = Vec::with_capacity(points.len());
    runtime()?.block_on(fold_to(&source, &req, |p, s| states.push((p, s.clone()))))?;
    let state_at = |p: u64| &states.iter().find(|(q, _)| *q == p).expect("folded").1;
    let name = &info.name;
    let mut lines = Lines::new();
    if a.at.is_some() {
        let json = state_at(points[0])
            .to_bootstrap_json()
            .map_err(|e| RunFailure::Failed(format!("{name}: the state at #{}: {e}", points[0])))?;
        lines.write(|line| serde_json::to_writer_pretty(line, &json).map_err(Into::into));
        return lines.finish("state");
    }
    let changes = diff_states(state_at(points[0]), state_at(points[1])).map_err(|e| {
        RunFailure::Failed(format!(
            "{name}: the states at #{} and #{}: {e}",
            points[0], points[1]
        ))
    })?;
    for c in &changes {
        let more = lines.write(|line| match a.format {
            ListFormat::Jsonl => serde_json::to_writer(line, c).map_err(Into::into),
            ListFormat::Text => line.write_all(c.text(60).as_bytes()),
        });
        if !more {
            break;
        }
    }
    lines.finish("state diff")
}
