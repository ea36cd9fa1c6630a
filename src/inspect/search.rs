//! Search across a whole source (DESIGN.md section 12): a query is a substring or `re:REGEX`,
//! matched against an event's keys, its values as JSON text, its agent (`ns/agent`) and the
//! start of its txn_id (the 13 characters the table shows work). One pass over the source;
//! the same matcher serves the inspector.

use std::sync::Arc;

use crate::event::Event;
use crate::source::{Filter, Source, SourceError};

/// What to look for.
#[derive(Debug, Clone)]
pub struct Query {
    matcher: Matcher,
    /// A substring that only a string token of a value's JSON text can hold (no quote,
    /// backslash, structural character or control character; not something a number, `true`,
    /// `false` or `null` could show): values are first looked at through their stored strings,
    /// without building the JSON (DESIGN.md section 12, BENCHMARKS.md).
    in_strings_only: bool,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// A plain substring (case-sensitive), and its searcher over bytes.
    Text(String, Box<memchr::memmem::Finder<'static>>),
    Regex(regex::Regex),
}

impl Query {
    /// `re:PATTERN` is a regular expression, anything else a substring; empty is refused.
    pub fn parse(text: &str) -> Result<Query, String> {
        if let Some(p) = text.strip_prefix("re:") {
            if p.is_empty() {
                return Err("re: needs a pattern (e.g. re:err(or)?)".into());
            }
            let matcher = regex::Regex::new(p).map(Matcher::Regex).map_err(|e| {
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
            })?;
            return Ok(Query {
                matcher,
                in_strings_only: false,
            });
        }
        if text.is_empty() {
            return Err("the query is empty".into());
        }
        Ok(Query {
            matcher: Matcher::Text(
                text.to_string(),
                Box::new(memchr::memmem::Finder::new(text.as_bytes()).into_owned()),
            ),
            in_strings_only: only_in_strings(text),
        })
    }

    /// Whether this is a regular expression (`re:`).
    pub fn is_regex(&self) -> bool {
        matches!(self.matcher, Matcher::Regex(_))
    }

    fn finds(&self, hay: &str) -> bool {
        match &self.matcher {
            Matcher::Text(_, f) => f.find(hay.as_bytes()).is_some(),
            Matcher::Regex(r) => r.is_match(hay),
        }
    }

    /// Whether `e` matches: a key, a value (as JSON text), the agent, or (a substring only)
    /// the start of its txn_id.
    pub fn matches(&self, e: &Event) -> bool {
        if let Matcher::Text(t, _) = &self.matcher
            && e.txn_id.starts_with(t.as_str())
        {
            return true;
        }
        let agent_matches = match &self.matcher {
            // Only a needle with a '/' can span the separator: no string built for the others.
            Matcher::Text(t, f) if !t.contains('/') => {
                f.find(e.namespace.as_bytes()).is_some() || f.find(e.agent_id.as_bytes()).is_some()
            }
            _ => self.finds(&format!("{}/{}", e.namespace, e.agent_id)),
        };
        if agent_matches {
            return true;
        }
        e.operations.iter().any(|op| {
            self.finds(&op.key)
                || op.value.as_ref().is_some_and(|v| {
                    let candidate = match &self.matcher {
                        Matcher::Text(_, f) if self.in_strings_only => v.strings_could_contain(f),
                        _ => true,
                    };
                    // A value that cannot be read has no JSON text to match.
                    candidate
                        && v.object(&op.key).is_ok_and(|o| {
                            self.finds(&serde_json::to_string(o).unwrap_or_default())
                        })
                })
        })
    }
}

impl Query {
    /// A test of stored event bytes that only drops events this query cannot match: a
    /// substring in string tokens only is in the stored bytes as it is, except where it starts
    /// inside an escape JSON would write (`\\n`, `\\u001f`), so a needle that could start
    /// that way is also looked for without its first 1 to 5 characters. `None` (read every
    /// event) for a regular expression, a needle a number or literal could show, or one
    /// spanning the `/` of `ns/agent`.
    ///
    /// A regular expression gets the same test from the literals every match starts with (as
    /// the regex crate extracts them), when each of them is such a needle.
    pub fn stored_hint(&self) -> Option<crate::source::StoredHint> {
        let needles: Vec<String> = match &self.matcher {
            Matcher::Text(text, _) if self.in_strings_only => vec![text.clone()],
            Matcher::Text(..) => return None,
            Matcher::Regex(re) => regex_prefixes(re.as_str())?,
        };
        let mut finders = Vec::new();
        for text in &needles {
            if text.contains('/') || !only_in_strings(text) {
                return None;
            }
            finders.push(memchr::memmem::Finder::new(text.as_bytes()).into_owned());
            if text.starts_with(|c: char| "bfnrtu0123456789abcdef".contains(c)) {
                let tails: Vec<usize> = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .skip(1)
                    .take(5)
                    .collect();
                if tails.len() < 5 {
                    return None;
                }
                finders.extend(
                    tails
                        .into_iter()
                        .map(|i| memchr::memmem::Finder::new(&text.as_bytes()[i..]).into_owned()),
                );
            }
        }
        // Each needle is a pass over the bytes: past a few, reading them all is faster (a
        // case-insensitive word is one literal per case variant).
        if finders.len() > MAX_HINT_NEEDLES {
            return None;
        }
        Some(crate::source::StoredHint(std::sync::Arc::new(
            move |stored: &[u8]| finders.iter().any(|f| f.find(stored).is_some()),
        )))
    }
}

/// The most byte searches a stored-bytes test makes per event.
const MAX_HINT_NEEDLES: usize = 12;

/// The literals every match of `pattern` starts with, when there is a finite set of non-empty
/// ones (None: a match could start anywhere, or there are too many).
fn regex_prefixes(pattern: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let seq = regex_syntax::hir::literal::Extractor::new().extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() {
        return None;
    }
    literals
        .iter()
        .map(|l| {
            std::str::from_utf8(l.as_bytes())
                .ok()
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        })
        .collect()
}

/// See [`Query::in_strings_only`].
fn only_in_strings(text: &str) -> bool {
    let structural = |c: char| c.is_control() || "\"\\:,{}[]".contains(c);
    let in_a_number = |c: char| c.is_ascii_digit() || "-+.eE".contains(c);
    !text.chars().any(structural)
        && !text.chars().all(in_a_number)
        && !["true", "false", "null"].iter().any(|l| l.contains(text))
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
    each: impl FnMut(&Arc<Event>) -> bool,
) -> Result<u64, SourceError> {
    scan_in_batches(source, query, req, each, |_| true).await
}

/// [`scan`], also telling `after_batch` the offset read through after each batch the source
/// sends (false stops).
pub async fn scan_in_batches(
    source: &Arc<dyn Source>,
    query: &Query,
    req: &SearchRequest,
    mut each: impl FnMut(&Arc<Event>) -> bool,
    mut after_batch: impl FnMut(u64) -> bool,
) -> Result<u64, SourceError> {
    let filter = Filter {
        agent: req.agent.clone(),
        stored_hint: query.stored_hint(),
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
            if !after_batch(last) {
                window.cancel();
                return Ok(found);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_say_why() {
        assert!(!Query::parse("error").unwrap().is_regex());
        assert!(Query::parse("re:err(or)?").unwrap().is_regex());
        let bad = Query::parse("re:(").unwrap_err();
        assert!(
            bad.ends_with("not a valid regular expression: unclosed group"),
            "{bad}"
        );
        assert!(!bad.contains('\n'), "{bad}");
        assert!(Query::parse("").is_err());
        assert!(Query::parse("re:").is_err());
    }

    /// The query on the whole JSON text, as the fast path must answer.
    fn brute(text: &str, e: &Event) -> bool {
        if let Some(p) = text.strip_prefix("re:") {
            let re = regex::Regex::new(p).unwrap();
            return re.is_match(&format!("{}/{}", e.namespace, e.agent_id))
                || e.operations.iter().any(|op| {
                    re.is_match(&op.key)
                        || op.value.as_ref().is_some_and(|v| {
                            re.is_match(&serde_json::to_string(v.object("").unwrap()).unwrap())
                        })
                });
        }
        e.txn_id.starts_with(text)
            || format!("{}/{}", e.namespace, e.agent_id).contains(text)
            || e.operations.iter().any(|op| {
                op.key.contains(text)
                    || op.value.as_ref().is_some_and(|v| {
                        serde_json::to_string(v.object("").unwrap())
                            .unwrap()
                            .contains(text)
                    })
            })
    }

    #[test]
    fn matching_on_stored_strings_agrees_with_the_json_text() {
        use crate::event::generate::{GenOptions, Generator};
        let mut events: Vec<Event> = Generator::new(GenOptions::default()).take(300).collect();
        // Strings JSON escapes, numbers, literals, nesting, unicode.
        let odd = serde_json::json!({
            "note": "line one\nline \"two\"\tend \\ back",
            "n": 12.5, "big": 1e21, "ok": true, "none": null,
            "deep": {"list": [1, "naïve café", {"x": "inner"}]}
        });
        let mut e = events[0].clone();
        e.operations[0].value = Some(crate::event::ObjectValue::from_object(
            odd.as_object().unwrap().clone(),
        ));
        events.push(e);
        // Through the stored bytes, as sources deliver them.
        let events: Vec<Event> = events
            .iter()
            .map(|e| Event::decode(&e.encode().unwrap()).unwrap())
            .collect();
        let mut queries: Vec<String> = [
            "refund", "nline", "ne two", "two\\\"", "\\t", "tend", "back", "ïve", "inner", "12.5",
            "1e21", "rue", "ull", "e", "a", "list", "deep\":{", "x\":\"in", "zzz",
        ]
        .iter()
        .map(|q| q.to_string())
        .collect();
        // Every 3- and 5-character window of some values' JSON text.
        for e in events.iter().step_by(37).chain(events.last()) {
            let text =
                serde_json::to_string(e.operations[0].value.as_ref().unwrap().object("").unwrap())
                    .unwrap();
            let chars: Vec<char> = text.chars().collect();
            for w in [3, 5] {
                for start in (0..chars.len().saturating_sub(w)).step_by(7) {
                    queries.push(chars[start..start + w].iter().collect());
                }
            }
        }
        queries.extend(
            [
                "re:refund|escalate",
                "re:(?i)INNER",
                "re:nline\\s",
                "re:tw[o]",
                "re:\\d+\\.5",
                "re:na[iï]ve",
                "re:e",
            ]
            .iter()
            .map(|q| q.to_string()),
        );
        let mut fast = 0;
        let mut hinted = 0;
        for q in &queries {
            let query = Query::parse(q).unwrap();
            fast += query.in_strings_only as usize;
            let hint = query.stored_hint();
            for e in &events {
                // A fresh decode each time, so the fast path sees undecoded bytes.
                let stored = e.encode().unwrap();
                let e = Event::decode(&stored).unwrap();
                let want = brute(q, &e);
                assert_eq!(
                    query.matches(&e),
                    want,
                    "query {q:?} on {}",
                    e.to_json_line()
                );
                if let Some(hint) = &hint {
                    hinted += 1;
                    assert!(hint.keeps(&stored) || !want, "hint drops a match of {q:?}");
                }
            }
        }
        assert!(
            fast > queries.len() / 3,
            "{fast} of {} on the fast path",
            queries.len()
        );
        assert!(hinted > 0);
        // A regex with required literals gets the stored-bytes test; one without does not.
        assert!(
            Query::parse("re:refund|escalate")
                .unwrap()
                .stored_hint()
                .is_some()
        );
        assert!(Query::parse("re:\\d+\\.5").unwrap().stored_hint().is_none());
    }
}
