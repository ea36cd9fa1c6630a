//! The state at a point of a source and the difference between two points (DESIGN.md section
//! 12): one pass from the source's first event, folding every event through each point asked
//! for, in order. Archives without state snapshots are folded from their start (the snapshots
//! that shorten this are a format addition still to come).

use std::sync::Arc;

use serde_json::Value;

use super::json_diff::{FieldChange, diff_opt};
use crate::event::ValueError;
use crate::source::{Filter, Source, SourceError};
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

/// Folds `source` from its first event and hands the state after each point to `at`, in the
/// order of the points (ascending).
pub async fn fold_to(
    source: &Arc<dyn Source>,
    req: &StateRequest,
    mut at: impl FnMut(u64, &KvState),
) -> Result<(), SourceError> {
    let mut points = req.points.iter().copied().peekable();
    let Some(&last) = req.points.iter().max() else {
        return Ok(());
    };
    let filter = Filter {
        agent: req.agent.clone(),
        ..Filter::default()
    };
    let first = source.info().first_offset.unwrap_or(0);
    let mut state = KvState::new();
    if last >= first {
        let (mut stream, window) = super::open_scan(source, first, Some(last), filter, req.chain)?;
        while let Some(batch) = stream.recv().await {
            let batch = batch?;
            for (e, _) in &batch.events {
                while let Some(p) = points.next_if(|&p| p < e.offset) {
                    at(p, &state);
                }
                state.apply(e);
            }
            if let Some(o) = batch.last_offset() {
                window.ack(o);
            }
        }
    }
    for p in points {
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
