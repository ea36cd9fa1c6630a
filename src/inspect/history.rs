//! A key's history: every version of one key (in one agent, or in every agent that has it),
//! with what changed inside the value against the version before. Built by one pass over the
//! source, which the filter narrows to transactions touching the key.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::json_diff::{FieldChange, diff_opt};
use crate::source::{Filter, Source, SourceError};

/// A write or a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionOp {
    Write,
    Delete,
}

/// One version of the key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Version {
    pub offset: u64,
    pub commit_ts: u64,
    /// Wall-clock commit time (RFC 3339), where the source has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub txn_id: String,
    /// `NAMESPACE/AGENT_ID`.
    pub agent: String,
    pub key: String,
    pub op: VersionOp,
    pub version: u64,
    /// The value written (`None` for a delete).
    pub value: Option<Value>,
    /// What changed against the previous version of the key in the same agent.
    pub changes: Vec<FieldChange>,
}

/// Which key, where.
#[derive(Debug, Clone, Default)]
pub struct HistoryRequest {
    pub key: String,
    /// Only this (namespace, agent_id).
    pub agent: Option<(String, String)>,
    pub from: u64,
    pub until: Option<u64>,
    pub chain: crate::source::ChainCheck,
}

/// Scans `source` and hands every version of the key to `each`, in commit order (it returns
/// false to stop). Returns how many versions were found.
pub async fn scan(
    source: &Arc<dyn Source>,
    req: &HistoryRequest,
    mut each: impl FnMut(&Version) -> bool,
) -> Result<u64, SourceError> {
    let filter = Filter {
        agent: req.agent.clone(),
        // Narrows what is decoded and sent; the key itself is matched exactly below.
        key_prefix: Some(req.key.clone()),
        txn_id: None,
        // The key is in the stored bytes as it is: events without it are not decoded.
        stored_hint: Some(crate::source::StoredHint(Arc::new({
            let key = memchr::memmem::Finder::new(req.key.as_bytes()).into_owned();
            move |stored: &[u8]| key.find(stored).is_some()
        }))),
    };
    let (mut stream, window) = super::open_scan(source, req.from, req.until, filter, req.chain)?;
    let mut previous: HashMap<(Arc<str>, Arc<str>), Option<Value>> = HashMap::new();
    let mut found = 0u64;
    while let Some(batch) = stream.recv().await {
        let batch = batch?;
        for (e, _) in &batch.events {
            for op in e.operations.iter().filter(|op| *op.key == *req.key) {
                let value = match &op.value {
                    Some(v) => Some(Value::Object(
                        v.object(&op.key)
                            .map_err(|err| SourceError::Invalid {
                                source_name: source.info().name.clone(),
                                message: format!(
                                    "offset {}: the value of {} cannot be read: {err}",
                                    e.offset, op.key
                                ),
                            })?
                            .clone(),
                    )),
                    None => None,
                };
                let slot = previous
                    .entry((e.namespace.clone(), e.agent_id.clone()))
                    .or_insert(None);
                let changes = diff_opt(slot.as_ref(), value.as_ref());
                let version = Version {
                    offset: e.offset,
                    commit_ts: e.commit_ts,
                    time: e.commit_time_ns.map(crate::event::format_time_ns),
                    txn_id: e.txn_id.clone(),
                    agent: format!("{}/{}", e.namespace, e.agent_id),
                    key: op.key.to_string(),
                    op: if value.is_some() {
                        VersionOp::Write
                    } else {
                        VersionOp::Delete
                    },
                    version: op.version,
                    changes,
                    value: value.clone(),
                };
                *slot = value;
                found += 1;
                if !each(&version) {
                    window.cancel();
                    return Ok(found);
                }
            }
        }
        if let Some(last) = batch.last_offset() {
            window.ack(last);
        }
    }
    Ok(found)
}

impl Version {
    /// `#12  2026-11-30T14:02:11.250Z  @13  research/research-7  write v3  txn 3fa9c2d1-…`,
    /// then one indented line per change.
    pub fn text(&self) -> String {
        let time = self.time.as_deref().unwrap_or("-");
        let op = match self.op {
            VersionOp::Write => "write",
            VersionOp::Delete => "delete",
        };
        let mut s = format!(
            "#{}  {time}  @{}  {}  {op} v{}  txn {}",
            self.offset,
            self.commit_ts,
            self.agent,
            self.version,
            crate::text::ellipsize(&self.txn_id, 14)
        );
        if self.changes.is_empty() {
            s.push_str("\n    (the same value again)");
        }
        for c in &self.changes {
            s.push_str("\n    ");
            s.push_str(&c.line(60));
        }
        s
    }
}
