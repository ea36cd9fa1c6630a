//! Archives from and to other forms: `gen` (a synthetic session), `import FILE.jsonl` and
//! `export SOURCE` (JSON Lines, DESIGN.md section 3).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::Path;

use color_eyre::eyre::Result;

use super::output::write_new;
use super::{UsageError, open_archive, print_summaries, writer_options};
use crate::archive::jsonl::{self, ImportInput, ImportOptions, ImportTarget};
use crate::archive::{ArchiveError, ArchiveWriter, SegmentedWriter};
use crate::cli::{ExportArgs, GenArgs, ImportArgs};
use crate::event::generate::{GenOptions, Generator};

pub fn gen_cmd(a: GenArgs) -> Result<()> {
    if a.agents == 0 {
        return Err(UsageError("--agents must be at least 1".into()).into());
    }
    let generator = Generator::new(GenOptions {
        seed: a.seed,
        agents: a.agents,
        ..GenOptions::default()
    });
    let options = writer_options(&a.archive);
    let summaries = write_new(&a.output, a.archive.force, "-o", |out| {
        Ok(match a.archive.segment_events {
            Some(k) => {
                let mut w = SegmentedWriter::create(out, k, options)?;
                for e in generator.take(a.events as usize) {
                    w.append(&e)?;
                }
                w.finish()?
            }
            None => {
                let mut w = ArchiveWriter::create(out, options)?;
                for e in generator.take(a.events as usize) {
                    w.append(&e)?;
                }
                vec![w.finish()?]
            }
        })
    })?;
    print_summaries(&summaries);
    Ok(())
}

/// `NAMESPACE/AGENT_ID` as a pair.
fn agent_pair(text: &str, flag: &str) -> Result<(String, String)> {
    match text.split_once('/') {
        Some((ns, agent)) if !ns.is_empty() && !agent.is_empty() && !agent.contains('/') => {
            Ok((ns.to_string(), agent.to_string()))
        }
        _ => Err(UsageError(format!("{flag} {text:?}: expected NAMESPACE/AGENT_ID")).into()),
    }
}

/// `FILE` or `FILE=NAMESPACE/AGENT_ID`.
fn input_spec(spec: &str) -> (&str, Option<&str>) {
    // A file whose own name has `=` in it is that file.
    if Path::new(spec).exists() {
        return (spec, None);
    }
    match spec.rsplit_once('=') {
        Some((file, agent))
            if !file.is_empty() && agent.split('/').filter(|p| !p.is_empty()).count() == 2 =>
        {
            (file, Some(agent))
        }
        _ => (spec, None),
    }
}

/// Opens one import input (a file, or `-` for standard input).
fn open_input(file: &str) -> Result<Box<dyn BufRead>> {
    if file == "-" {
        // Standard input may be a pipe or a FIFO by design: it streams, line by bounded line.
        return Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            std::io::stdin(),
        )));
    }
    let path = Path::new(file);
    let f = crate::archive::storage::check_not_special(path)
        .and_then(|()| File::open(path))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => UsageError(format!(
                "{file}: {e}; to stream from it, use `import - < {file}`"
            ))
            .into(),
            _ => color_eyre::Report::new(ArchiveError::io(file, e)),
        })?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
}

pub fn import_cmd(a: ImportArgs) -> Result<()> {
    let default_agent = a
        .agent
        .as_deref()
        .map(|t| agent_pair(t, "--agent"))
        .transpose()?;
    let mut inputs = Vec::with_capacity(a.inputs.len());
    for spec in &a.inputs {
        let (file, agent) = input_spec(spec);
        let agent = match agent {
            Some(t) => Some(agent_pair(t, file)?),
            None => default_agent.clone(),
        };
        inputs.push(ImportInput {
            reader: open_input(file)?,
            name: file.to_string(),
            agent,
        });
    }
    let max_line = usize::try_from(a.max_line_bytes.0)
        .unwrap_or(usize::MAX)
        .max(1);
    let time_field = a
        .time_field
        .as_deref()
        .map(crate::event::TimeField::parse)
        .transpose()
        .map_err(UsageError)?;
    let summaries = write_new(&a.output, a.archive.force, "-o", |out| {
        let target = match a.archive.segment_events {
            Some(k) => ImportTarget::Segments(out, k),
            None => ImportTarget::File(out),
        };
        let options = ImportOptions {
            max_line_bytes: max_line,
            time_field: time_field.as_ref(),
        };
        Ok(jsonl::import_all(
            inputs,
            target,
            writer_options(&a.archive),
            options,
        )?)
    })?;
    print_summaries(&summaries);
    Ok(())
}

pub fn export_cmd(a: ExportArgs) -> Result<()> {
    let archive = open_archive(&a.source)?;
    archive.log_notes();
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
    let agent = super::options::parse_agent(
        a.agent.as_deref(),
        &crate::source::archive::ArchiveSource::info_of(&archive),
    )?;
    let wanted = agent.map(|(ns, id)| {
        archive
            .channels()
            .iter()
            .map(|c| c.namespace == ns && c.agent_id == id)
            .collect()
    });
    let mut cursor = archive
        .cursor_for(from, a.chain.chain().is_on(), wanted)?
        .until(until);
    let out_name = a
        .output
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    let n = match a.output.as_deref().filter(|p| *p != Path::new("-")) {
        // Written under a temporary name and renamed into place: a failed export (a damaged
        // chunk, a full disk) leaves no partial file.
        Some(path) if crate::archive::storage::is_regular_or_absent(path) => {
            let temp = partial_name(path);
            let written = File::create(&temp)
                .map_err(|e| ArchiveError::io(&out_name, e))
                .and_then(|f| {
                    jsonl::export(&mut cursor, BufWriter::with_capacity(1 << 20, f), &out_name)
                })
                .and_then(|n| {
                    std::fs::rename(&temp, path).map_err(|e| ArchiveError::io(&out_name, e))?;
                    Ok(n)
                });
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written?
        }
        // A device or a FIFO (`-o /dev/null`) is written as it is.
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| ArchiveError::io(&out_name, e))?;
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

/// A hidden sibling of `path` to write into before renaming it into place.
fn partial_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}
