//! Search across a whole source (DESIGN.md section 12): a query is a substring or `re:REGEX`,
//! matched against an event's keys, its values as JSON text, its agent (`ns/agent`) and the
//! start of its txn_id (the 13 characters the table shows work). One pass over the source;
//! the same matcher serves the inspector.

use std::sync::Arc;

use crate::event::Event;
use crate::source::{Filter, Source, SourceError};

/// What to look for.
#[derive(Debug, Clone)]
pub enum Query {
    /// A plain substring (case-sensitive).
    Text(String),
    Regex(regex::Regex),
}

impl Query {
    /// `re:PATTERN` is a regular expression, anything else a substring; empty is refused.
    pub fn parse(text: &str) -> Result<Query, String> {
        if let Some(p) = text.strip_prefix("re:") {
            if p.is_empty() {
                return Err("re: needs a pattern (e.g. re:err(or)?)".into());
            }
            return regex::Regex::new(p).map(Query::Regex).map_err(|e| {
                // The library's message spans lines (the pattern, a caret, the reason): its
                // reason is the last.
                let message = e.to_string();
                let reason = message
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                format!("{text:?} is not a valid regular expression: {reason}")
            });
        }
        if text.is_empty() {
            return Err("the query is empty".into());
        }
        Ok(Query::Text(text.to_string()))
    }

    fn finds(&self, hay: &str) -> bool {
        match self {
            Query::Text(t) => hay.contains(t.as_str()),
            Query::Regex(r) => r.is_match(hay),
        }
    }

    /// Whether `e` matches: a key, a value (as JSON text), the agent, or (a substring only)
    /// the start of its txn_id.
    pub fn matches(&self, e: &Event) -> bool {
        if let Query::Text(t) = self
            && e.txn_id.starts_with(t.as_str())
        {
            return true;
        }
        if self.finds(&format!("{}/{}", e.namespace, e.agent_id)) {
            return true;
        }
        e.operations.iter().any(|op| {
            self.finds(&op.key)
                || op
                    .value
                    .as_ref()
                    .is_some_and(|v| self.finds(&v.to_json_string(&op.key)))
        })
    }
}

/// Where to search.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub from: u64,
    pub until: Option<u64>,
    pub agent: Option<(String, String)>,
    pub chain: crate::source::ChainCheck,
}

/// Scans `source` in offset order and hands each matching event to `each` (false stops).
/// Returns how many matched.
pub async fn scan(
    source: &Arc<dyn Source>,
    query: &Query,
    req: &SearchRequest,
    mut each: impl FnMut(&Arc<Event>) -> bool,
) -> Result<u64, SourceError> {
    let filter = Filter {
        agent: req.agent.clone(),
        ..Filter::default()
    };
    let (mut stream, window) = super::open_scan(source, req.from, req.until, filter, req.chain)?;
    let mut found = 0;
    while let Some(batch) = stream.recv().await {
        let batch = batch?;
        for (e, _) in &batch.events {
            if query.matches(e) {
                found += 1;
                if !each(e) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_say_why() {
        assert!(matches!(Query::parse("error"), Ok(Query::Text(_))));
        assert!(matches!(Query::parse("re:err(or)?"), Ok(Query::Regex(_))));
        let bad = Query::parse("re:(").unwrap_err();
        assert!(
            bad.ends_with("not a valid regular expression: unclosed group"),
            "{bad}"
        );
        assert!(!bad.contains('\n'), "{bad}");
        assert!(Query::parse("").is_err());
        assert!(Query::parse("re:").is_err());
    }
}
