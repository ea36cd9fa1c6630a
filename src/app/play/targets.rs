//! The targets of a run — a stream (stdout or a file), a new archive, a Statehouse daemon —
//! each opened before the run (so that a bad target fails before anything plays) and finished
//! after it: the archive's summaries, the daemon's state read back and compared. The dry run
//! makes the same checks.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use color_eyre::eyre::{Context, Result};

use super::plan::{PlayPlan, Target, bootstrap_transactions, usage};
use super::report::ArchiveWritten;
use crate::app::exit::RunFailure;
use crate::app::options::connect_options;
use crate::archive::{ArchiveError, WriterOptions};
use crate::event::hex;
use crate::player::{Outcome, Report};
use crate::sink::statehouse::{ApplyStats, TargetTxn, Verification, loses_data, verify_target};
use crate::sink::{
    AgentMap, ArchiveSink, OutputFormat, StatehouseSink, StatehouseTarget, StreamSink,
};
use crate::source::SourceInfo;
use crate::state::KvState;

/// A `--map-agent` source agent must exist in the source.
pub fn check_agent_map(map: &AgentMap, info: &SourceInfo) -> Result<()> {
    let unknown = map.unknown(&info.channels);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "--map-agent: {} has no agent {}",
        info.name,
        unknown.join(", ")
    )))
}

/// Connects to a Statehouse target and checks that it is healthy; returns its version.
pub async fn connect_target(
    plan: &PlayPlan,
    url: &str,
    timeout: Duration,
) -> Result<(StatehouseTarget, String)> {
    let options = connect_options(&plan.remote)?;
    let target = StatehouseTarget::connect(url, options, timeout).await?;
    let version = target.check_health().await?;
    Ok((target, version))
}

/// The directory a new file would go into exists and is writable.
pub fn check_parent(path: &Path) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = parent.join(format!(".replayscope-dry-run-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| ArchiveError::io(&path.display().to_string(), e))
        .wrap_err("the target cannot be written")?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Standard output (`-`) or a new file.
pub fn open_stream(path: &Path, format: OutputFormat) -> Result<StreamSink> {
    let name = path.display().to_string();
    let out: Box<dyn Write + Send> = if name == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(path).map_err(|e| ArchiveError::io(&name, e))?)
    };
    Ok(StreamSink::new(out, format, &name))
}

/// A new archive at the target's path.
pub fn open_archive(target: &Target) -> Result<ArchiveSink> {
    let Target::Archive {
        path,
        segment_events,
        compression,
        snapshots,
        keep_offsets,
    } = target
    else {
        unreachable!("open_archive is called for archive targets");
    };
    let options = WriterOptions {
        compression: *compression,
        snapshots: *snapshots,
        ..WriterOptions::default()
    };
    Ok(ArchiveSink::create(
        path,
        *segment_events,
        options,
        *keep_offsets,
    )?)
}

/// A healthy Statehouse target with the bootstrap state written into it, its sink and the
/// sink's live counts.
pub async fn open_statehouse(
    plan: &PlayPlan,
    info: &SourceInfo,
) -> Result<(StatehouseSink, StatehouseTarget, Arc<ApplyStats>)> {
    let Target::Statehouse {
        url,
        map,
        pipeline,
        timeout,
        ..
    } = &plan.target
    else {
        unreachable!("open_statehouse is called for Statehouse targets");
    };
    check_agent_map(map, info)?;
    let (target, version) = connect_target(plan, url, *timeout).await?;
    tracing::info!(target = %url, version = %version, "Statehouse target is healthy (version {version})");
    if let Some((path, state)) = &plan.bootstrap {
        for e in bootstrap_transactions(state) {
            let (namespace, agent_id) = map.map(&e.namespace, &e.agent_id);
            let txn = TargetTxn {
                event: Arc::new(e),
                namespace,
                agent_id,
            };
            target.apply(&txn).await.map_err(|e| {
                color_eyre::Report::new(e).wrap_err(format!(
                    "writing --bootstrap {} into the target",
                    path.display()
                ))
            })?;
        }
    }
    let (sink, applied) = StatehouseSink::new(target.clone(), map.clone(), *pipeline);
    Ok((sink, target, applied))
}

/// Marks the run failed with `reason`; the failure is what the command exits with.
pub fn fail(play: &mut Report, reason: String, failure: RunFailure) -> color_eyre::Report {
    play.outcome = Outcome::Failed {
        integrity: matches!(failure, RunFailure::Integrity(_)),
    };
    play.reason = Some(reason);
    failure.into()
}

/// What the archive target holds after the run (or the failure to close it).
pub fn archive_written(
    plan: &PlayPlan,
    play: &mut Report,
    sink: ArchiveSink,
) -> std::result::Result<Option<ArchiveWritten>, color_eyre::Report> {
    match sink.written() {
        // Never an archive over input whose hash chain failed: what was written goes.
        Ok(summaries)
            if matches!(
                play.outcome,
                crate::player::Outcome::Failed { integrity: true }
            ) =>
        {
            for s in &summaries {
                if let Err(e) = crate::archive::storage::remove_partial(&s.path) {
                    tracing::warn!(path = %s.path.display(), "cannot remove the partial archive: {e}");
                }
            }
            tracing::warn!(target = %plan.target.name(), "the source failed its integrity check: the partial archive was removed");
            Ok(None)
        }
        Ok(summaries) => Ok(summaries.last().map(|l| ArchiveWritten {
            path: plan.target.name(),
            events: summaries.iter().map(|s| s.events).sum(),
            bytes: summaries.iter().map(|s| s.bytes).sum(),
            first_offset: summaries[0].first_offset,
            last_offset: l.last_offset,
            final_hash: hex(&l.final_hash),
        })),
        Err(e) => Err(fail(
            play,
            format!("closing the archive failed: {e}"),
            RunFailure::Failed(format!("{}: {e}", plan.target.name())),
        )),
    }
}

/// Reads the Statehouse target's state back and compares it with the state the run played to.
pub async fn verify_statehouse(
    target: &StatehouseTarget,
    map: &AgentMap,
    expected: &KvState,
    agents: &[(String, String)],
    play: &mut Report,
) -> (Option<Verification>, Option<color_eyre::Report>) {
    let lossy = expected
        .iter()
        .filter(|(k, e)| e.value.object(&k.key).is_ok_and(loses_data))
        .count();
    if lossy > 0 {
        tracing::warn!(
            keys = lossy,
            "{lossy} value(s) hold objects or lists inside a list, which Statehouse stores as null; they are compared as the daemon keeps them"
        );
    }
    match verify_target(target, expected, agents, map, 5).await {
        Ok(v) if !v.matched => {
            let message = format!(
                "{}: the target's state differs from the replayed state after offset {}: {}",
                target.url(),
                play.last_offset.map_or("-".to_string(), |o| o.to_string()),
                v.describe()
            );
            let failure = fail(
                play,
                "state mismatch".into(),
                RunFailure::Integrity(message),
            );
            (Some(v), Some(failure))
        }
        Ok(v) => {
            tracing::info!(
                agents = v.agents,
                keys = v.keys_expected,
                "the target's state matches the replayed state ({} keys in {} agents)",
                v.keys_expected,
                v.agents
            );
            (Some(v), None)
        }
        Err(e) => {
            play.outcome = Outcome::Failed { integrity: false };
            play.reason = Some(format!("reading the target's state back failed: {e}"));
            (
                None,
                Some(color_eyre::Report::new(e).wrap_err("verifying the target")),
            )
        }
    }
}

/// `--expect-hash` and `--expect-state-hash` against what a finished run computed.
pub fn check_hashes(plan: &PlayPlan, play: &mut Report) -> Option<color_eyre::Report> {
    let checks = [
        (
            "hash chain",
            "through",
            plan.expect_hash,
            play.final_hash.clone(),
        ),
        (
            "state hash",
            "after",
            plan.expect_state_hash,
            play.state_hash.clone(),
        ),
    ];
    for (what, word, expected, got) in checks {
        let Some(expected) = expected else { continue };
        let got = got.unwrap_or_default();
        if play.outcome != Outcome::Finished || got == hex(&expected) {
            continue;
        }
        let message = format!(
            "{}: {what} mismatch {word} offset {}: expected {}, got {}",
            play.source,
            play.last_offset
                .map_or_else(|| "-".to_string(), |o| o.to_string()),
            hex(&expected),
            match (got.is_empty(), what) {
                (true, "hash chain") => {
                    "none (this run could not compute the chain: --no-verify, a filtered remote \
                     stream or a Statehouse daemon)"
                }
                (true, _) => "(unknown)",
                (false, _) => &got,
            }
        );
        return Some(fail(
            play,
            format!("{what} mismatch"),
            RunFailure::Integrity(message),
        ));
    }
    None
}
