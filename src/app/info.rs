//! `replayscope info SOURCE [--json]`: what an archive holds, without reading its events.

use std::io::Write;

use color_eyre::eyre::{Context, Result};

use super::open_archive;
use crate::archive::Archive;
use crate::cli::InfoArgs;
use crate::event::{format_time_ns, hex};

#[derive(Debug, serde::Serialize)]
struct InfoJson {
    source: String,
    segments: usize,
    chunks: usize,
    /// Groups of chunks (~512 KiB of events each: the unit of a seek).
    groups: usize,
    /// Agents with chunks of their own (a one-agent read of them reads only those); `null`
    /// for an archive written before per-agent chunks (every chunk holds every agent).
    agents_with_own_chunks: Option<usize>,
    /// How many events apart the index records hash-chain heads inside each group (a seek
    /// checks the chain from the one before it); `null` where it records them per group only.
    chain_heads_every: Option<u32>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    time_source: Option<String>,
    truncated: bool,
    snapshots: SnapshotsJson,
    channels: Vec<ChannelJson>,
    notes: Vec<String>,
}

/// The archive's state snapshots (DESIGN.md section 12).
#[derive(Debug, serde::Serialize)]
struct SnapshotsJson {
    count: usize,
    /// Their chunk records, compressed, and their share of the files.
    bytes: u64,
    share: f64,
    /// The most events between two (or before the first, or after the last): what a
    /// `state --at` folds at most.
    max_events_between: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
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
    let snaps: Vec<u64> = archive.snapshots().iter().map(|(_, l)| l.through).collect();
    let snapshot_bytes: u64 = archive.snapshots().iter().map(|(_, l)| l.length).sum();
    // Folding from the start (or a snapshot) through the next snapshot (or the end).
    let mut max_between = 0;
    let mut at = archive.first_offset().unwrap_or(0);
    for &t in snaps.iter().chain(archive.last_offset().as_ref()) {
        max_between = max_between.max((t + 1).saturating_sub(at));
        at = t + 1;
    }
    InfoJson {
        source: archive.name().to_string(),
        segments: segs.len(),
        chunks: segs.iter().map(|s| s.chunk_count()).sum(),
        groups: segs.iter().map(|s| s.group_count()).sum(),
        agents_with_own_chunks: archive.channels_with_own_chunks(),
        chain_heads_every: archive.chain_heads_every(),
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
        time_source: archive.time_source().map(str::to_string),
        truncated: segs.iter().any(|s| s.truncated_at.is_some()),
        snapshots: SnapshotsJson {
            count: snaps.len(),
            bytes: snapshot_bytes,
            share: if file_bytes > 0 {
                snapshot_bytes as f64 / file_bytes as f64
            } else {
                0.0
            },
            max_events_between: max_between,
            first_offset: snaps.first().copied(),
            last_offset: snaps.last().copied(),
        },
        channels,
        notes: archive.notes().to_vec(),
    }
}

pub fn info_cmd(a: InfoArgs) -> Result<()> {
    let archive = open_archive(&a.source)?;
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
        "segments      {} ({} in {})",
        info.segments,
        crate::text::count(info.chunks as u64, "chunk", "chunks"),
        crate::text::count(info.groups as u64, "group", "groups")
    )?;
    match info.agents_with_own_chunks {
        Some(0) => writeln!(
            out,
            "layout        per-agent chunks: no agent is busy enough for chunks of its own (each \
             group is one chunk every agent shares)"
        )?,
        Some(n) => writeln!(
            out,
            "layout        per-agent chunks: {} of {} with chunks of their own (a one-agent read \
             reads only those){}",
            n,
            crate::text::count(info.channels.len() as u64, "agent", "agents"),
            if n < info.channels.len() {
                ", the others sharing one chunk per group"
            } else {
                ""
            }
        )?,
        None if info.events > 0 => writeln!(
            out,
            "layout        every chunk holds every agent (an older archive: `replayscope index` \
             rewrites it so that one-agent reads skip the other agents' chunks)"
        )?,
        None => {}
    }
    writeln!(
        out,
        "events        {} (offsets {} to {})",
        info.events,
        opt(info.first_offset),
        opt(info.last_offset)
    )?;
    writeln!(
        out,
        "commit_ts     @{} to @{}",
        opt(info.first_commit_ts),
        opt(info.last_commit_ts)
    )?;
    match (&info.first_time, &info.last_time, info.duration_s) {
        (Some(a), Some(b), Some(d)) => writeln!(
            out,
            "time          {a} to {b} ({}){}",
            human_duration(d),
            info.time_source
                .as_deref()
                .map(|t| format!(", from {t}"))
                .unwrap_or_default()
        )?,
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
        "recorded hash {}",
        info.final_hash.as_deref().unwrap_or("(not recorded)")
    )?;
    match info.chain_heads_every {
        Some(every) => writeln!(
            out,
            "chain heads   every {every} events (a seek hashes at most {every} events before it returns its first)"
        )?,
        None if info.events > 0 => writeln!(
            out,
            "chain heads   one per group (a seek checks its whole group first; `replayscope index` \
             records one every {} events)",
            crate::archive::index::CHECKPOINT_EVERY
        )?,
        None => {}
    }
    let s = &info.snapshots;
    if s.count > 0 {
        writeln!(
            out,
            "state         {} (offsets {} to {}), {} bytes = {:.1} % of the archive; state --at folds at most {} events",
            crate::text::count(s.count as u64, "snapshot", "snapshots"),
            opt(s.first_offset),
            opt(s.last_offset),
            s.bytes,
            s.share * 100.0,
            s.max_events_between
        )?;
    } else {
        writeln!(
            out,
            "state         no snapshots: state --at folds from the first event (`replayscope index` adds them)"
        )?;
    }
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
