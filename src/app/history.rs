//! `replayscope history SOURCE KEY`: every version of one key, with the field-level changes
//! against the version before, as JSON Lines or text. Exit 1 when no transaction touches it
//! (as grep does when nothing matches).

use std::io::Write;

use color_eyre::eyre::{Result, WrapErr};

use super::exit::{RunFailure, UsageError};
use super::options::{open_request, parse_agent, resolve_until};
use super::runtime;
use crate::cli::{HistoryArgs, ListFormat};
use crate::inspect::history::{HistoryRequest, scan};
use crate::source::open::open_source;

pub fn history_cmd(a: HistoryArgs) -> Result<()> {
    let agents: Vec<String> = a.agent.iter().cloned().collect();
    let request = open_request(
        &a.source,
        &a.remote,
        Default::default(),
        a.allow_truncated,
        &agents,
        &Default::default(),
        None,
    )?;
    let (source, _) = open_source(&a.source, &request)?;
    let info = source.info().clone();
    let agent = parse_agent(a.agent.as_deref(), &info)?;
    let from = match a.from {
        Some(p) => source.resolve(p, false)?.unwrap_or(0),
        None => info.first_offset.unwrap_or(0),
    };
    let until = match a.until {
        Some(p) => Some(resolve_until(source.as_ref(), p, "--until")?),
        None => None,
    };
    if a.key.is_empty() {
        return Err(UsageError("KEY is empty: give the key as stored (e.g. plan)".into()).into());
    }
    let req = HistoryRequest {
        key: a.key.clone(),
        agent,
        from,
        until,
        chain: a.chain.chain(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<std::io::Error> = None;
    let found = runtime()?.block_on(scan(&source, &req, |v| {
        let r = match a.format {
            ListFormat::Jsonl => serde_json::to_writer(&mut out, v)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n")),
            ListFormat::Text => writeln!(out, "{}", v.text()),
        };
        match r {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    }))?;
    if let Some(e) = failed {
        return Err(e).wrap_err("writing the history");
    }
    out.flush().wrap_err("writing the history")?;
    if found == 0 {
        return Err(RunFailure::Failed(format!(
            "{}: no transaction touches the key {:?}{} (keys are matched exactly)",
            info.name,
            a.key,
            a.agent
                .as_deref()
                .map(|g| format!(" in {g}"))
                .unwrap_or_default()
        ))
        .into());
    }
    Ok(())
}
