//! After a run: the target's state read back (ScanPrefix per agent) and compared with the
//! state the played transactions fold to, as the daemon stores values.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{AgentMap, StatehouseTarget, TargetError};
use crate::event::JsonObject;
use crate::state::KvState;

/// One key that differs between the expected state and the target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    /// `namespace/agent_id:key` in the target.
    pub key: String,
    /// Compact JSON, or None where the key is absent.
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// What differs inside the value, field by field (the JSON diff of `diff`, the history and
    /// the state pane): from what was expected to what the target has.
    pub changes: Vec<crate::inspect::json_diff::FieldChange>,
}

/// The result of reading the target's state back.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub agents: usize,
    pub keys_expected: usize,
    pub keys_in_target: usize,
    pub matched: bool,
    pub differences: usize,
    /// The first differing keys (in key order).
    pub first_differences: Vec<Difference>,
}

impl Verification {
    /// One line per difference, for the error message.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} of {} keys differ",
            self.differences,
            self.keys_expected.max(self.keys_in_target)
        );
        for d in &self.first_differences {
            match (&d.expected, &d.actual) {
                (Some(_), Some(_)) => {
                    s.push_str(&format!("\n  {} (expected -> target):", d.key));
                    for c in d.changes.iter().take(6) {
                        s.push_str(&format!("\n    {}", c.line(40)));
                    }
                    if d.changes.len() > 6 {
                        s.push_str(&format!("\n    … {} more", d.changes.len() - 6));
                    }
                }
                _ => s.push_str(&format!(
                    "\n  {}: expected {}, target has {}",
                    d.key,
                    d.expected.as_deref().unwrap_or("(absent)"),
                    d.actual.as_deref().unwrap_or("(absent)")
                )),
            }
        }
        if self.differences > self.first_differences.len() {
            s.push_str(&format!(
                "\n  … and {} more",
                self.differences - self.first_differences.len()
            ));
        }
        s
    }
}

/// A value as the daemon keeps it: objects and lists nested inside a list become null (its
/// JSON conversion drops them); everything else is kept.
pub fn daemon_form(obj: &JsonObject) -> JsonObject {
    fn value(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(daemon_form(o)),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::Object(_) | Value::Array(_) => Value::Null,
                        other => other.clone(),
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    obj.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// Whether the daemon would lose part of this value (a container inside a list).
pub fn loses_data(obj: &JsonObject) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::Object(o) => loses_data(o),
            Value::Array(items) => items
                .iter()
                .any(|i| matches!(i, Value::Object(_) | Value::Array(_))),
            _ => false,
        }
    }
    obj.values().any(value)
}

/// Reads every agent's state back from the target and compares it with `expected` (the
/// played transactions' fold, names mapped by `map`). `agents` are the source's agents: their
/// target agents are scanned even when the expected state has no key there, so that leftovers
/// in the target show up.
pub async fn verify_target(
    target: &StatehouseTarget,
    expected: &KvState,
    agents: &[(String, String)],
    map: &AgentMap,
    show: usize,
) -> Result<Verification, TargetError> {
    type Keys = BTreeMap<String, JsonObject>;
    let mut want: BTreeMap<(String, String), Keys> = BTreeMap::new();
    for (ns, agent) in agents {
        let (n, a) = map.map(&Arc::from(ns.as_str()), &Arc::from(agent.as_str()));
        want.entry((n.to_string(), a.to_string())).or_default();
    }
    let mut keys_expected = 0;
    for (k, entry) in expected.iter() {
        let (n, a) = map.map(&k.namespace, &k.agent_id);
        let obj = entry
            .value
            .object(&k.key)
            .map(daemon_form)
            .unwrap_or_default();
        want.entry((n.to_string(), a.to_string()))
            .or_default()
            .insert(k.key.to_string(), obj);
        keys_expected += 1;
    }
    let mut differences = Vec::new();
    let mut count = 0;
    let mut keys_in_target = 0;
    let agents_checked = want.len();
    for ((ns, agent), keys) in want {
        let mut have: Keys = BTreeMap::new();
        for e in target.scan_agent(&ns, &agent).await? {
            let obj = match e.value {
                Some(s) => crate::event::struct_to_object(s, &e.key).unwrap_or_default(),
                None => JsonObject::new(),
            };
            have.insert(e.key, obj);
        }
        keys_in_target += have.len();
        let all: BTreeSet<&String> = keys.keys().chain(have.keys()).collect();
        for key in all {
            let (x, y) = (keys.get(key), have.get(key));
            if x != y {
                count += 1;
                if differences.len() < show {
                    let json = |o: Option<&JsonObject>| {
                        o.map(|o| serde_json::to_string(o).unwrap_or_default())
                    };
                    let value = |o: Option<&JsonObject>| o.map(|o| Value::Object(o.clone()));
                    let (old, new) = (value(x), value(y));
                    differences.push(Difference {
                        key: format!("{ns}/{agent}:{key}"),
                        expected: json(x),
                        actual: json(y),
                        changes: crate::inspect::json_diff::diff_opt(old.as_ref(), new.as_ref()),
                    });
                }
            }
        }
    }
    Ok(Verification {
        agents: agents_checked,
        keys_expected,
        keys_in_target,
        matched: count == 0,
        differences: count,
        first_differences: differences,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn daemon_form_nulls_containers_inside_lists_only() {
        let v = json!({"l": [1, "s", {"k": 1}, [2]], "o": {"l": [{"x": 1}], "n": 2}, "n": 1.5});
        let obj = v.as_object().unwrap();
        assert!(loses_data(obj));
        assert_eq!(
            Value::Object(daemon_form(obj)),
            json!({"l": [1, "s", null, null], "o": {"l": [null], "n": 2}, "n": 1.5})
        );
        let plain = json!({"l": [1, null, true], "o": {"k": "v"}});
        assert!(!loses_data(plain.as_object().unwrap()));
        assert_eq!(
            Value::Object(daemon_form(plain.as_object().unwrap())),
            plain
        );
    }
}
