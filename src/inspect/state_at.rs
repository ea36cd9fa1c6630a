//! The state at a point of a source and the difference between two points (DESIGN.md section
//! 12): for each point asked for, in order, the nearest state snapshot at or before it (when the
//! source keeps them and none is nearer than what is already folded) and the events after it,
//! so no point costs a fold from the first event on an archive with snapshots.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

use super::json_diff::{FieldChange, diff_opt};
use crate::event::{Event, ValueError};
use crate::flow::CreditWindow;
use crate::source::{BatchStream, Filter, Source, SourceError};
use crate::state::{KvState, StateKey};

/// Where to fold.
#[derive(Debug, Clone, Default)]
pub struct StateRequest {
    /// Only this (namespace, agent_id).
    pub agent: Option<(String, String)>,
    /// Points (offsets), each state taken after the event at it; ascending.
    pub points: Vec<u64>,
    pub chain: crate::source::ChainCheck,
}

/// The latest state snapshot of `source` at or before `offset`, narrowed to `agent`: `(the
/// offset it was taken after, its state)`. Read off the async threads (it reads a chunk).
pub async fn snapshot_before(
    source: &Arc<dyn Source>,
    offset: u64,
    agent: Option<&(String, String)>,
) -> Result<Option<(u64, KvState)>, SourceError> {
    let s = source.clone();
    let snap = tokio::task::spawn_blocking(move || s.state_snapshot(offset))
        .await
        .map_err(|e| SourceError::Invalid {
            source_name: source.info().name.clone(),
            message: format!("reading a state snapshot: {e}"),
        })??;
    Ok(snap.map(|s| {
        let state = match agent {
            Some((ns, id)) => s.state.only_agent(ns, id),
            None => s.state,
        };
        (s.through, state)
    }))
}

/// Folds `source` and hands the state after each point to `at`, in the order of the points
/// (ascending): from the start state, or from a state snapshot when one is past what is folded.
pub async fn fold_to(
    source: &Arc<dyn Source>,
    req: &StateRequest,
    mut at: impl FnMut(u64, &KvState),
) -> Result<(), SourceError> {
    let Some(&last) = req.points.iter().max() else {
        return Ok(());
    };
    let filter = Filter {
        agent: req.agent.clone(),
        ..Filter::default()
    };
    let mut state = KvState::new();
    // The offset of the next event to fold.
    let mut next = source.info().first_offset.unwrap_or(0);
    let mut stream: Option<(BatchStream, CreditWindow)> = None;
    let mut pending: VecDeque<Arc<Event>> = VecDeque::new();
    let mut ended = false;
    for &p in &req.points {
        if p + 1 > next
            && let Some((through, snap)) = snapshot_before(source, p, req.agent.as_ref()).await?
            && through >= next
        {
            state = snap;
            next = through + 1;
            (stream, ended) = (None, false);
            pending.clear();
        }
        while next <= p && !ended {
            let event = match pending.pop_front() {
                Some(e) => e,
                None => {
                    if stream.is_none() {
                        stream = Some(super::open_scan(
                            source,
                            next,
                            Some(last),
                            filter.clone(),
                            req.chain,
                        )?);
                    }
                    let (s, window) = stream.as_mut().expect("opened above");
                    match s.recv().await {
                        Some(batch) => {
                            let batch = batch?;
                            if let Some(o) = batch.last_offset() {
                                window.ack(o);
                            }
                            pending.extend(batch.events.into_iter().map(|(e, _)| e));
                        }
                        None => ended = true,
                    }
                    continue;
                }
            };
            if event.offset > p {
                pending.push_front(event);
                break;
            }
            state.apply(&event);
            next = event.offset + 1;
        }
        // A filtered stream has gaps: what is not delivered up to p does not concern the agent.
        next = next.max(p + 1);
        at(p, &state);
    }
    Ok(())
}

/// How a key differs between two states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyChangeKind {
    Added,
    Deleted,
    Changed,
}

/// One key that differs between two states, with what changed inside its value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyChange {
    /// `NAMESPACE/AGENT_ID`.
    pub agent: String,
    pub key: String,
    pub change: KeyChangeKind,
    /// The value in the first state (none when added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value in the second state (none when deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    pub changes: Vec<FieldChange>,
}

impl KeyChange {
    /// `~ ns/agent:key` (`+` added, `-` deleted), then one indented line per field changed.
    pub fn text(&self, width: usize) -> String {
        let mark = match self.change {
            KeyChangeKind::Added => '+',
            KeyChangeKind::Deleted => '-',
            KeyChangeKind::Changed => '~',
        };
        let mut s = format!("{mark} {}:{}", self.agent, self.key);
        for c in &self.changes {
            s.push_str("\n    ");
            s.push_str(&c.line(width));
        }
        s
    }
}

/// The keys that differ between `a` and `b`, in key order, field by field.
pub fn diff_states(a: &KvState, b: &KvState) -> Result<Vec<KeyChange>, ValueError> {
    let value = |s: &KvState, k: &StateKey| -> Result<Option<Value>, ValueError> {
        s.get(k)
            .map(|e| e.value.object(&k.key).map(|o| Value::Object(o.clone())))
            .transpose()
    };
    let mut out = Vec::new();
    for k in a.differences(b) {
        let (old, new) = (value(a, k)?, value(b, k)?);
        let change = match (&old, &new) {
            (None, _) => KeyChangeKind::Added,
            (_, None) => KeyChangeKind::Deleted,
            _ => KeyChangeKind::Changed,
        };
        let changes = diff_opt(old.as_ref(), new.as_ref());
        // Two values that read the same (stored differently) are no difference.
        if change == KeyChangeKind::Changed && changes.is_empty() {
            continue;
        }
        out.push(KeyChange {
            agent: format!("{}/{}", k.namespace, k.agent_id),
            key: k.key.to_string(),
            change,
            old,
            new,
            changes,
        });
    }
    Ok(out)
}
