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
use crate::cli::{Cli, Command, ExportArgs, GenArgs, ImportArgs, InfoArgs, SourceArgs, VerifyArgs};
use crate::event::{format_time_ns, hex, parse_hash};
use crate::generate::{GenOptions, Generator};

/// A mistake in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INTEGRITY: i32 = 3;
}

/// The exit code for an error (DESIGN.md section 8).
pub fn exit_code(err: &color_eyre::Report) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
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

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gen(a) => gen_cmd(a),
        Command::Import(a) => import_cmd(a),
        Command::Export(a) => export_cmd(a),
        Command::Info(a) => info_cmd(a),
        Command::Verify(a) => verify_cmd(a),
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
        compression: a.compression,
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
    let expect = match &a.expect_hash {
        Some(h) => Some(parse_hash(h).ok_or_else(|| {
            UsageError(format!(
                "--expect-hash {h:?} is not a 64-digit hex BLAKE3 hash"
            ))
        })?),
        None => None,
    };
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
