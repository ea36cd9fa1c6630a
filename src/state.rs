//! The key/value state the transactions build up, folded event by event up to the cursor, per
//! (namespace, agent_id); checkpoints so that stepping or seeking backwards re-applies at most
//! `every` events; per-transaction diffs; and a deterministic state hash.
//!
//! # State hash
//!
//! BLAKE3 over the live keys in canonical order — sorted by namespace, then agent_id, then key
//! (byte order) — each contributing
//! `namespace 0x00 agent_id 0x00 key 0x00 canonical-json(value) 0x0a`, where canonical JSON is
//! serde_json's compact encoding with object keys sorted (byte order) and numbers as this crate
//! normalizes them (integral values within 2^53 as integers). Versions, commit_ts and offsets are
//! not part of the hash, so a target that re-commits the same history (with its own versions)
//! hashes the same. The empty state hashes to BLAKE3 of no bytes.

pub mod folder;

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;

use crate::event::{Event, ObjectValue};

/// Where a key lives.
#[derive(Debug, Clone, Eq)]
pub struct StateKey {
    pub namespace: Arc<str>,
    pub agent_id: Arc<str>,
    pub key: Arc<str>,
}

/// Shared strings (events of one channel share them) compare by pointer first.
fn cmp_shared(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

impl Ord for StateKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_shared(&self.namespace, &other.namespace)
            .then_with(|| cmp_shared(&self.agent_id, &other.agent_id))
            .then_with(|| self.key.cmp(&other.key))
    }
}

impl PartialOrd for StateKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for StateKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.agent_id, self.key)
    }
}

/// The current value of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: ObjectValue,
    pub version: u64,
    pub commit_ts: u64,
    /// Offset of the transaction that wrote it.
    pub offset: u64,
}

/// One change a transaction made.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added {
        key: StateKey,
        value: ObjectValue,
    },
    Changed {
        key: StateKey,
        old: ObjectValue,
        new: ObjectValue,
    },
    Deleted {
        key: StateKey,
        old: ObjectValue,
    },
    /// A delete of a key that did not exist (kept: the transaction did it).
    DeletedMissing {
        key: StateKey,
    },
}

impl Change {
    pub fn key(&self) -> &StateKey {
        match self {
            Change::Added { key, .. }
            | Change::Changed { key, .. }
            | Change::Deleted { key, .. }
            | Change::DeletedMissing { key } => key,
        }
    }
}

/// What one transaction did to the state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    pub offset: u64,
    pub changes: Vec<Change>,
}

/// A materialized state. Cloning is O(1) (structure is shared), which is what makes checkpoints
/// cheap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KvState {
    map: OrdMap<StateKey, Entry>,
}

impl KvState {
    pub fn new() -> KvState {
        KvState::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &StateKey) -> Option<&Entry> {
        self.map.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&StateKey, &Entry)> {
        self.map.iter()
    }

    /// The keys of one (namespace, agent_id).
    pub fn only_agent(&self, namespace: &str, agent_id: &str) -> KvState {
        KvState {
            map: self
                .map
                .iter()
                .filter(|(k, _)| &*k.namespace == namespace && &*k.agent_id == agent_id)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
        }
    }

    /// Sets a key directly (a bootstrap state).
    pub fn insert(&mut self, key: StateKey, entry: Entry) {
        self.map.insert(key, entry);
    }

    /// Applies one transaction and returns what it changed.
    pub fn apply(&mut self, event: &Event) -> Diff {
        // The event's strings are shared by the events of its channel.
        let (namespace, agent_id) = (event.namespace.clone(), event.agent_id.clone());
        let mut changes = Vec::with_capacity(event.operations.len());
        for op in &event.operations {
            let key = StateKey {
                namespace: namespace.clone(),
                agent_id: agent_id.clone(),
                key: op.key.clone(),
            };
            match &op.value {
                Some(value) => {
                    let value = &value.detached();
                    let entry = Entry {
                        value: value.clone(),
                        version: op.version,
                        commit_ts: event.commit_ts,
                        offset: event.offset,
                    };
                    match self.map.insert(key.clone(), entry) {
                        Some(old) => changes.push(Change::Changed {
                            key,
                            old: old.value,
                            new: value.clone(),
                        }),
                        None => changes.push(Change::Added {
                            key,
                            value: value.clone(),
                        }),
                    }
                }
                None => match self.map.remove(&key) {
                    Some(old) => changes.push(Change::Deleted {
                        key,
                        old: old.value,
                    }),
                    None => changes.push(Change::DeletedMissing { key }),
                },
            }
        }
        Diff {
            offset: event.offset,
            changes,
        }
    }

    /// The deterministic state hash (see the module documentation).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        let mut buf = Vec::with_capacity(256);
        for (k, e) in self.map.iter() {
            buf.clear();
            buf.extend_from_slice(k.namespace.as_bytes());
            buf.push(0);
            buf.extend_from_slice(k.agent_id.as_bytes());
            buf.push(0);
            buf.extend_from_slice(k.key.as_bytes());
            buf.push(0);
            // serde_json's Map is ordered by key (no preserve_order feature): canonical.
            match e.value.object(&k.key) {
                Ok(o) => {
                    if serde_json::to_writer(&mut buf, o).is_err() {
                        buf.extend_from_slice(b"null");
                    }
                }
                // A value that does not decode hashes as its stored bytes.
                Err(_) => {
                    buf.extend_from_slice(b"raw:");
                    buf.extend_from_slice(
                        crate::event::hex(e.value.raw().map_or(&[][..], |r| r)).as_bytes(),
                    );
                }
            }
            buf.push(b'\n');
            h.update(&buf);
        }
        *h.finalize().as_bytes()
    }

    /// The state as `--bootstrap` reads it: `{"NAMESPACE/AGENT": {"key": value}}`, agents and
    /// keys in order (so it can seed a replay). A value that cannot be decoded is an error
    /// naming its key.
    pub fn to_bootstrap_json(&self) -> Result<serde_json::Value, crate::event::ValueError> {
        let mut root = serde_json::Map::new();
        for (k, e) in self.map.iter() {
            let agent = root
                .entry(format!("{}/{}", k.namespace, k.agent_id))
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(keys) = agent {
                let value = e.value.object(&k.key)?.clone();
                keys.insert(k.key.to_string(), serde_json::Value::Object(value));
            }
        }
        Ok(serde_json::Value::Object(root))
    }

    /// Reads a state in the `--bootstrap` format (see [`KvState::to_bootstrap_json`]).
    pub fn from_bootstrap_json(text: &str) -> Result<KvState, String> {
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let agents = root
            .as_object()
            .ok_or("expected an object {\"NAMESPACE/AGENT\": {\"key\": {…}}} at the top level")?;
        let mut state = KvState::new();
        for (agent, keys) in agents {
            let (ns, id) = agent
                .split_once('/')
                .filter(|(n, i)| !n.is_empty() && !i.is_empty())
                .ok_or_else(|| format!("{agent:?}: expected NAMESPACE/AGENT_ID"))?;
            let keys = keys
                .as_object()
                .ok_or_else(|| format!("{agent}: expected an object of keys"))?;
            let (ns, id): (Arc<str>, Arc<str>) = (Arc::from(ns), Arc::from(id));
            for (key, value) in keys {
                let obj = value.as_object().ok_or_else(|| {
                    format!("{agent}: key {key:?}: a value must be a JSON object")
                })?;
                // Check now that it can be stored (protobuf Struct numbers).
                crate::event::object_to_struct(obj, key).map_err(|e| format!("{agent}: {e}"))?;
                state.insert(
                    StateKey {
                        namespace: ns.clone(),
                        agent_id: id.clone(),
                        key: Arc::from(key.as_str()),
                    },
                    Entry {
                        value: ObjectValue::from_object(obj.clone()),
                        version: 0,
                        commit_ts: 0,
                        offset: 0,
                    },
                );
            }
        }
        Ok(state)
    }

    /// Keys whose values differ between two states (for "expected vs. actual" reports), in order.
    pub fn differences<'a>(&'a self, other: &'a KvState) -> Vec<&'a StateKey> {
        let mut out = Vec::new();
        for (k, e) in self.map.iter() {
            if other.map.get(k).is_none_or(|o| o.value != e.value) {
                out.push(k);
            }
        }
        for k in other.map.keys() {
            if !self.map.contains_key(k) {
                out.push(k);
            }
        }
        out.sort();
        out
    }
}

/// The state at the cursor plus checkpoints behind it.
///
/// A checkpoint at offset `c` is the state *before* event `c` (everything through `c - 1`
/// applied). One is taken every `every` events; when more than `max_checkpoints` are held, every
/// other one of the older half is dropped, so recent history stays dense and memory stays bounded.
#[derive(Debug, Clone)]
pub struct StateTracker {
    state: KvState,
    /// The offset the next applied event must have (events may be skipped by a filter, so this
    /// is "one past the last applied offset").
    next: u64,
    since_checkpoint: u64,
    every: u64,
    max_checkpoints: usize,
    checkpoints: BTreeMap<u64, KvState>,
}

impl StateTracker {
    /// A tracker whose first event will be at `start`, starting from `initial` (a bootstrap state
    /// or empty).
    pub fn new(start: u64, initial: KvState, every: u64, max_checkpoints: usize) -> StateTracker {
        let mut checkpoints = BTreeMap::new();
        checkpoints.insert(start, initial.clone());
        StateTracker {
            state: initial,
            next: start,
            since_checkpoint: 0,
            every: every.max(1),
            max_checkpoints: max_checkpoints.max(2),
            checkpoints,
        }
    }

    pub fn state(&self) -> &KvState {
        &self.state
    }

    /// One past the last applied offset.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    pub fn checkpoints(&self) -> usize {
        self.checkpoints.len()
    }

    pub fn apply(&mut self, event: &Event) -> Diff {
        let diff = self.state.apply(event);
        self.next = event.offset + 1;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.every {
            self.checkpoints.insert(self.next, self.state.clone());
            self.since_checkpoint = 0;
            if self.checkpoints.len() > self.max_checkpoints {
                self.thin();
            }
        }
        diff
    }

    fn thin(&mut self) {
        let keys: Vec<u64> = self.checkpoints.keys().copied().collect();
        // Keep the very first (the start) and the newer half; drop every other one in between.
        let older = keys.len() / 2;
        for (i, k) in keys.iter().enumerate().take(older).skip(1) {
            if i % 2 == 1 {
                self.checkpoints.remove(k);
            }
        }
    }

    /// The latest checkpoint at or before `offset`: where it is and the state before the event
    /// there (the tracker itself does not move).
    pub fn checkpoint_at_or_before(&self, offset: u64) -> Option<(u64, KvState)> {
        self.checkpoints
            .range(..=offset)
            .next_back()
            .map(|(&at, s)| (at, s.clone()))
    }

    /// Starts again at `start` from `state` (the state before the event there, from a state
    /// snapshot): the checkpoints held before go (they may be of another start state).
    pub fn reset(&mut self, start: u64, state: KvState) {
        self.checkpoints.clear();
        self.checkpoints.insert(start, state.clone());
        self.state = state;
        self.next = start;
        self.since_checkpoint = 0;
    }

    /// Rewinds to the latest checkpoint at or before `target` (the state before event `target`
    /// is then reached by applying the events from the returned offset up to `target - 1`).
    pub fn rewind_to(&mut self, target: u64) -> u64 {
        let (&at, state) = self
            .checkpoints
            .range(..=target)
            .next_back()
            .or_else(|| self.checkpoints.iter().next())
            .expect("the start checkpoint is never removed");
        self.state = state.clone();
        self.next = at;
        self.since_checkpoint = 0;
        // Checkpoints past the cursor stay valid: the history is the same.
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::generate::{GenOptions, Generator};

    fn fold(events: &[Event]) -> KvState {
        let mut s = KvState::new();
        for e in events {
            s.apply(e);
        }
        s
    }

    #[test]
    fn diff_reports_added_changed_deleted() {
        let evs: Vec<Event> = Generator::new(GenOptions::default()).take(300).collect();
        let mut s = KvState::new();
        let mut saw = (false, false, false);
        // A shadow map updated change by change (a transaction may touch a key twice).
        let mut shadow: BTreeMap<StateKey, ObjectValue> = BTreeMap::new();
        for e in &evs {
            let d = s.apply(e);
            assert_eq!(d.changes.len(), e.operations.len());
            for c in &d.changes {
                match c {
                    Change::Added { key, value } => {
                        assert!(shadow.insert(key.clone(), value.clone()).is_none());
                        saw.0 = true;
                    }
                    Change::Changed { key, old, new } => {
                        assert_eq!(shadow.insert(key.clone(), new.clone()).as_ref(), Some(old));
                        saw.1 = true;
                    }
                    Change::Deleted { key, old } => {
                        assert_eq!(shadow.remove(key).as_ref(), Some(old));
                        saw.2 = true;
                    }
                    Change::DeletedMissing { key } => assert!(!shadow.contains_key(key)),
                }
            }
            assert_eq!(shadow.len(), s.len());
        }
        assert_eq!(saw, (true, true, true));
    }

    #[test]
    fn hash_is_order_independent_and_value_sensitive() {
        let evs: Vec<Event> = Generator::new(GenOptions::default()).take(500).collect();
        let a = fold(&evs);
        assert_eq!(a.hash(), fold(&evs).hash());
        assert_ne!(a.hash(), fold(&evs[..499]).hash());
        assert_eq!(KvState::new().hash(), *blake3::hash(b"").as_bytes());
        // The same entries inserted in another order hash the same.
        let mut b = KvState::new();
        let entries: Vec<_> = a.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
        for (k, e) in entries.into_iter().rev() {
            b.insert(k, e);
        }
        assert_eq!(a.hash(), b.hash());
        assert!(a.differences(&b).is_empty());
    }

    #[test]
    fn rewinding_costs_at_most_every_events_and_reaches_the_same_state() {
        let evs: Vec<Event> = Generator::new(GenOptions::default()).take(3000).collect();
        let mut t = StateTracker::new(0, KvState::new(), 100, 8);
        for e in &evs {
            t.apply(e);
        }
        assert!(t.checkpoints() <= 9);
        assert_eq!(t.state(), &fold(&evs));
        for target in [2999u64, 2950, 2900, 2501, 1234, 17, 0] {
            let at = t.rewind_to(target);
            assert!(at <= target);
            // recent history is dense
            if target >= 2700 {
                assert!(target - at <= 100, "target {target} rewound to {at}");
            }
            for e in &evs[at as usize..target as usize] {
                t.apply(e);
            }
            assert_eq!(t.state(), &fold(&evs[..target as usize]), "target {target}");
        }
    }
}
