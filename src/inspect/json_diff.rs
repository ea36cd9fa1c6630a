//! Field-level differences between two JSON values (DESIGN.md section 12): what was added,
//! removed or changed, each at its JSON pointer path (`/plan/steps/0`), objects compared by key,
//! arrays by index. One module for every place a value changes: a key's history, the state
//! pane, state diffs, differential replay and target verification.

use serde_json::Value;

/// One difference at a path (RFC 6901 pointer; `""` is the whole value).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FieldChange {
    Added {
        path: String,
        value: Value,
    },
    Removed {
        path: String,
        old: Value,
    },
    Changed {
        path: String,
        old: Value,
        new: Value,
    },
}

impl FieldChange {
    pub fn path(&self) -> &str {
        match self {
            FieldChange::Added { path, .. }
            | FieldChange::Removed { path, .. }
            | FieldChange::Changed { path, .. } => path,
        }
    }

    /// `+ /plan/steps/2: "ask"`, `- /created_at (was "2026-11-30T14:02:11Z")`, `~ /status:
    /// "open" -> "closed"`, the values as compact JSON cut to `width` characters each.
    pub fn line(&self, width: usize) -> String {
        let v = |x: &Value| crate::text::ellipsize(&x.to_string(), width);
        let at = |p: &str| {
            if p.is_empty() {
                "(the value)".to_string()
            } else {
                p.to_string()
            }
        };
        match self {
            FieldChange::Added { path, value } => format!("+ {}: {}", at(path), v(value)),
            FieldChange::Removed { path, old } => format!("- {} (was {})", at(path), v(old)),
            FieldChange::Changed { path, old, new } => {
                format!("~ {}: {} -> {}", at(path), v(old), v(new))
            }
        }
    }
}

/// The differences that turn `old` into `new`, in path order (object keys sorted, array
/// indexes ascending). Equal values give none.
pub fn diff(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk(old, new, &mut String::new(), &mut out);
    out
}

/// The differences between a value that did not exist (`None`) or was deleted and another.
pub fn diff_opt(old: Option<&Value>, new: Option<&Value>) -> Vec<FieldChange> {
    match (old, new) {
        (None, None) => Vec::new(),
        (None, Some(n)) => vec![FieldChange::Added {
            path: String::new(),
            value: n.clone(),
        }],
        (Some(o), None) => vec![FieldChange::Removed {
            path: String::new(),
            old: o.clone(),
        }],
        (Some(o), Some(n)) => diff(o, n),
    }
}

/// `token` escaped for a JSON pointer (`~` -> `~0`, `/` -> `~1`).
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn walk(old: &Value, new: &Value, path: &mut String, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                child(k, a.get(k), b.get(k), path, out);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                child(&i.to_string(), a.get(i), b.get(i), path, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange::Changed {
            path: path.clone(),
            old: a.clone(),
            new: b.clone(),
        }),
    }
}

/// The member `token` of both sides (either may lack it), under `path`.
fn child(
    token: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut String,
    out: &mut Vec<FieldChange>,
) {
    let len = path.len();
    push_token(path, token);
    match (old, new) {
        (Some(x), Some(y)) => walk(x, y, path, out),
        (Some(x), None) => out.push(FieldChange::Removed {
            path: path.clone(),
            old: x.clone(),
        }),
        (None, Some(y)) => out.push(FieldChange::Added {
            path: path.clone(),
            value: y.clone(),
        }),
        (None, None) => {}
    }
    path.truncate(len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_added_removed_and_changed_at_their_paths() {
        let old = json!({"id": "s-1", "created_at": "2026-11-30", "status": "open",
                         "plan": {"steps": ["search", "read"]}});
        let new = json!({"id": "s-1", "status": "closed",
                         "plan": {"steps": ["search", "summarize", "answer"]}, "a/b": 1});
        let d = diff(&old, &new);
        let lines: Vec<String> = d.iter().map(|c| c.line(40)).collect();
        assert_eq!(
            lines,
            vec![
                "+ /a~1b: 1",
                "- /created_at (was \"2026-11-30\")",
                "~ /plan/steps/1: \"read\" -> \"summarize\"",
                "+ /plan/steps/2: \"answer\"",
                "~ /status: \"open\" -> \"closed\"",
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn a_change_of_type_is_one_change_and_missing_values_are_whole() {
        let d = diff(&json!({"x": [1]}), &json!({"x": {"0": 1}}));
        assert_eq!(
            d,
            vec![FieldChange::Changed {
                path: "/x".into(),
                old: json!([1]),
                new: json!({"0": 1})
            }]
        );
        assert_eq!(
            diff_opt(None, Some(&json!(1)))[0].line(10),
            "+ (the value): 1"
        );
        assert_eq!(
            diff_opt(Some(&json!({"a": 1})), None)[0].line(10),
            "- (the value) (was {\"a\":1})"
        );
    }
}
