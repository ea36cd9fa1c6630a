//! Differential replay (DESIGN.md section 13): two sources read in lockstep, event by event,
//! aligned by offset, txn_id, commit_ts or position, and compared as the request says — the
//! events themselves (transaction boundaries, keys, values, deletes), the state each side has
//! folded after each transaction, or the stored bytes (the hash chain's input). What differs
//! comes back field by field through the one JSON diff ([`super::json_diff`]).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::json_diff::{FieldChange, diff as json_diff};
use super::state_at::{KeyChange, KeyChangeKind};
use crate::event::{AgentMap, Event, ValueError};
use crate::flow::CreditWindow;
use crate::source::{
    ChainCheck, Filter, Source, SourceError, StoredEvent, StoredStream, StreamRequest,
};
use crate::state::{KvState, StateKey};

/// What is compared for each aligned pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// Transaction boundaries, keys, values, deletes and versions (and txn_id / commit_ts where
    /// the alignment does not already pair them).
    #[default]
    Events,
    /// The state each side has folded after the pair: the same history reaching different
    /// states, or different histories reaching the same one.
    State,
    /// The stored bytes (what the hash chain covers): the cheapest, and it sees everything.
    Hash,
}

/// How events of the two sides are paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// The same offset (copies of one archive, an archive and the daemon it was recorded from).
    #[default]
    Offset,
    /// The same txn_id.
    Txn,
    /// The same commit_ts.
    CommitTs,
    /// The n-th event of each side (a target written by `play --into` gets new txn_ids and
    /// commit_ts).
    Position,
}

/// What one side streams.
#[derive(Debug, Clone, Default)]
pub struct SideRequest {
    pub from: u64,
    pub until: Option<u64>,
    pub filter: Filter,
}

#[derive(Debug, Clone, Default)]
pub struct DiffRequest {
    pub compare: Compare,
    pub align: Align,
    /// JSON pointers inside values (`/timestamp`) whose differences do not count.
    pub ignore: Vec<String>,
    pub left: SideRequest,
    pub right: SideRequest,
    /// The left side's agents as the right side names them.
    pub map: AgentMap,
    pub chain: ChainCheck,
}

/// Where the two sides part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// Both sides have an event here and they differ.
    Changed,
    /// Only the left side has this event.
    OnlyLeft,
    /// Only the right side has this event.
    OnlyRight,
}

/// One place where the sides differ.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Divergence {
    pub kind: DivergenceKind,
    /// The n-th step of the comparison (0-based): a pair, or an event only one side has.
    pub index: u64,
    #[serde(serialize_with = "event_opt")]
    pub left: Option<Arc<Event>>,
    #[serde(serialize_with = "event_opt")]
    pub right: Option<Arc<Event>>,
    /// The fields that differ (events and hash: the events seen as JSON; state: each key).
    pub changes: Vec<FieldChange>,
    /// State: the keys whose values differ after this step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyChange>,
    /// The last step where the sides agreed: (left offset, right offset).
    pub last_equal: Option<(u64, u64)>,
    /// The left offset this divergence is shown at: its left event's, or for an event only
    /// the right side has, the left offset after the last one before it.
    pub at_left: u64,
}

fn event_opt<S: serde::Serializer>(e: &Option<Arc<Event>>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => serde::Serialize::serialize(&**e, s),
        None => s.serialize_none(),
    }
}

/// What a comparison went through.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DiffSummary {
    /// Steps compared (pairs, and events only one side has).
    pub steps: u64,
    pub left_events: u64,
    pub right_events: u64,
    pub divergences: u64,
    pub last_equal: Option<(u64, u64)>,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("LEFT: {0}")]
    Left(SourceError),
    #[error("RIGHT: {0}")]
    Right(SourceError),
    #[error("{0}")]
    Value(#[from] ValueError),
    #[error("{0}")]
    Usage(String),
}

impl DiffError {
    pub fn is_integrity(&self) -> bool {
        match self {
            DiffError::Left(e) | DiffError::Right(e) => e.is_integrity(),
            _ => false,
        }
    }
}

/// Events per batch each side is asked for, and its credit window.
const BATCH_EVENTS: usize = 2048;
const WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// How far ahead txn alignment looks for a transaction the other side has later.
const TXN_LOOKAHEAD: usize = 4096;

/// An event as one side stores it, decoded only when it is looked into (two sides whose
/// bytes are the same are equal without decoding either).
#[derive(Debug, Clone)]
struct Item {
    stored: StoredEvent,
    decoded: std::sync::OnceLock<Arc<Event>>,
}

impl Item {
    fn offset(&self) -> u64 {
        self.stored.offset
    }

    fn event(&self) -> Result<Arc<Event>, ValueError> {
        if let Some(e) = self.decoded.get() {
            return Ok(e.clone());
        }
        let e = Arc::new(Event::decode_bytes(&self.stored.payload)?);
        Ok(self.decoded.get_or_init(|| e).clone())
    }
}

/// One side being read: what arrived and is not compared yet.
struct Side {
    incoming: StoredStream,
    window: CreditWindow,
    buf: VecDeque<Item>,
    ended: bool,
    taken: u64,
    left: bool,
    /// The hash-chain head after the last batch received, when the side computes it.
    head: Option<[u8; 32]>,
}

impl Side {
    fn open(
        source: &Arc<dyn Source>,
        req: &SideRequest,
        chain: ChainCheck,
        left: bool,
    ) -> Result<Side, DiffError> {
        let window = CreditWindow::new(WINDOW_BYTES);
        let stream = StreamRequest {
            from: req.from,
            until: req.until,
            filter: req.filter.clone(),
            batch_events: BATCH_EVENTS,
            chain,
            ..StreamRequest::default()
        };
        let incoming = source
            .open_stored(stream, window.clone())
            .map_err(|e| side_error(left, e))?;
        Ok(Side {
            incoming,
            window,
            buf: VecDeque::new(),
            ended: false,
            taken: 0,
            left,
            head: None,
        })
    }

    /// Reads until `n` events wait (or the side ended).
    async fn fill(&mut self, n: usize) -> Result<(), DiffError> {
        while self.buf.len() < n && !self.ended {
            match self.incoming.recv().await {
                Some(Ok(batch)) => {
                    if batch.chain_after.is_some() {
                        self.head = batch.chain_after;
                    }
                    self.buf.extend(batch.events.into_iter().map(|stored| Item {
                        stored,
                        decoded: Default::default(),
                    }));
                }
                Some(Err(e)) => return Err(side_error(self.left, e)),
                None => self.ended = true,
            }
        }
        Ok(())
    }

    async fn peek(&mut self) -> Result<Option<&Item>, DiffError> {
        self.fill(1).await?;
        Ok(self.buf.front())
    }

    fn pop(&mut self) -> Option<Item> {
        let item = self.buf.pop_front()?;
        self.window.ack(item.offset());
        self.taken += 1;
        Some(item)
    }
}

fn side_error(left: bool, e: SourceError) -> DiffError {
    if left {
        DiffError::Left(e)
    } else {
        DiffError::Right(e)
    }
}

/// What the comparison of one step found.
enum Step {
    Pair(Item, Item),
    OnlyLeft(Item),
    OnlyRight(Item),
}

/// What a running comparison reports.
#[derive(Debug, Clone, Copy)]
pub enum DiffProgress<'a> {
    Divergence(&'a Divergence),
    /// Every step through this left offset is compared (now and then, and at the end).
    Through(u64),
}

/// Steps between two progress reports.
const PROGRESS_EVERY: u64 = 1024;

/// Compares `left` and `right` as `req` says, handing each divergence (and the progress now
/// and then) to `report`, in order; it says whether to go on.
pub async fn diff(
    left: &Arc<dyn Source>,
    right: &Arc<dyn Source>,
    req: &DiffRequest,
    mut report: impl FnMut(DiffProgress<'_>) -> bool,
) -> Result<DiffSummary, DiffError> {
    if req.compare == Compare::Hash && req.align != Align::Offset {
        return Err(DiffError::Usage(
            "--compare hash compares the stored bytes offset by offset: use --align offset \
             (a target with its own txn_ids and commit_ts differs in every byte; compare its \
             events or state with --align position)"
                .into(),
        ));
    }
    // Comparing every stored byte, one side's chain is enough: bytes equal to the left's
    // (checked against its record) hash the same, and the right's record is checked against
    // that at the end.
    let one_chain = req.compare == Compare::Hash
        && req.chain.is_on()
        && req.map.is_empty()
        && req.left.filter.is_empty()
        && req.right.filter.is_empty();
    let right_chain = if one_chain {
        ChainCheck::Skip
    } else {
        req.chain
    };
    let mut l = Side::open(left, &req.left, req.chain, true)?;
    let mut r = Side::open(right, &req.right, right_chain, false)?;
    let mut cmp = Comparer::new(req);
    let mut summary = DiffSummary::default();
    loop {
        let step = match next_step(&mut l, &mut r, req.align).await? {
            Some(s) => s,
            None => break,
        };
        let index = summary.steps;
        summary.steps += 1;
        if let Step::Pair(a, _) | Step::OnlyLeft(a) = &step {
            cmp.left_through = Some(a.offset());
        }
        if let Some(d) = cmp.step(step, index)? {
            summary.divergences += 1;
            if !report(DiffProgress::Divergence(&d)) {
                break;
            }
        }
        if summary.steps.is_multiple_of(PROGRESS_EVERY)
            && let Some(t) = cmp.left_through
            && !report(DiffProgress::Through(t))
        {
            break;
        }
    }
    if let Some(t) = cmp.left_through {
        report(DiffProgress::Through(t));
    }
    if one_chain
        && summary.divergences == 0
        && l.ended
        && r.ended
        && let (Some(head), Some((_, last))) = (l.head, cmp.last_equal)
        && let Some(recorded) = right.chain_head_through(last)
        && recorded != head
    {
        return Err(DiffError::Right(SourceError::Integrity {
            source_name: right.info().name.clone(),
            message: format!(
                "its bytes equal the left side's through offset {last}, but it records the hash \
                 chain head {} there, not {}",
                crate::event::hex(&recorded),
                crate::event::hex(&head)
            ),
        }));
    }
    summary.left_events = l.taken;
    summary.right_events = r.taken;
    summary.last_equal = cmp.last_equal;
    Ok(summary)
}

/// The next step of the lockstep walk: a pair, or an event one side has and the other not.
async fn next_step(l: &mut Side, r: &mut Side, align: Align) -> Result<Option<Step>, DiffError> {
    let (lh, rh) = (l.peek().await?.cloned(), r.peek().await?.cloned());
    let (lh, rh) = match (lh, rh) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Ok(l.pop().map(Step::OnlyLeft)),
        (None, Some(_)) => return Ok(r.pop().map(Step::OnlyRight)),
        (Some(a), Some(b)) => (a, b),
    };
    let ordered = |a: u64, b: u64| match a.cmp(&b) {
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Greater => 1,
        std::cmp::Ordering::Equal => 2,
    };
    let which = match align {
        Align::Position => 2,
        Align::Offset => ordered(lh.offset(), rh.offset()),
        Align::CommitTs => {
            let (a, b) = (lh.event()?, rh.event()?);
            ordered(a.commit_ts, b.commit_ts)
        }
        Align::Txn => txn_step(l, r, &lh, &rh).await?,
    };
    Ok(match which {
        0 => l.pop().map(Step::OnlyLeft),
        1 => r.pop().map(Step::OnlyRight),
        _ => match (l.pop(), r.pop()) {
            (Some(a), Some(b)) => Some(Step::Pair(a, b)),
            _ => None,
        },
    })
}

/// Txn alignment at two heads: the same transaction pairs; otherwise the one the other side
/// has a little later is waited for (the events before it are one side's only), and two
/// transactions neither side has later pair as a change.
async fn txn_step(l: &mut Side, r: &mut Side, lh: &Item, rh: &Item) -> Result<u8, DiffError> {
    let (a, b) = (lh.event()?, rh.event()?);
    if a.txn_id == b.txn_id {
        return Ok(2);
    }
    l.fill(TXN_LOOKAHEAD).await?;
    r.fill(TXN_LOOKAHEAD).await?;
    let position = |side: &Side, txn: &str| {
        side.buf
            .iter()
            .position(|i| i.event().is_ok_and(|e| e.txn_id == txn))
    };
    Ok(match (position(r, &a.txn_id), position(l, &b.txn_id)) {
        // Right has left's transaction later: what right has before it is right's only.
        (Some(dr), Some(dl)) if dr <= dl => 1,
        (Some(_), None) => 1,
        (_, Some(_)) => 0,
        (None, None) => 2,
    })
}

/// Compares steps, keeping what the state comparison needs.
struct Comparer<'a> {
    req: &'a DiffRequest,
    states: Option<States>,
    /// State: keys whose values differ now.
    differing: BTreeSet<StateKey>,
    last_equal: Option<(u64, u64)>,
    /// The last left offset stepped over.
    left_through: Option<u64>,
}

impl<'a> Comparer<'a> {
    fn new(req: &'a DiffRequest) -> Comparer<'a> {
        Comparer {
            req,
            states: (req.compare == Compare::State).then(|| States::Same(KvState::new())),
            differing: BTreeSet::new(),
            last_equal: None,
            left_through: None,
        }
    }

    /// The left event as the right side names its agent.
    fn mapped(&self, e: Arc<Event>) -> Arc<Event> {
        if self.req.map.is_empty() {
            return e;
        }
        let (namespace, agent_id) = self.req.map.map(&e.namespace, &e.agent_id);
        if namespace == e.namespace && agent_id == e.agent_id {
            return e;
        }
        Arc::new(Event {
            namespace,
            agent_id,
            ..(*e).clone()
        })
    }

    fn step(&mut self, step: Step, index: u64) -> Result<Option<Divergence>, DiffError> {
        // The same stored bytes are the same event (unless agents are renamed): nothing to
        // compare, and for the state one decoding folds both sides.
        if let Step::Pair(a, b) = &step
            && self.req.map.is_empty()
            && a.stored.payload == b.stored.payload
        {
            if let Some(states) = self.states.as_mut() {
                states.fold_both(&*a.event()?);
            }
            self.last_equal = Some((a.offset(), b.offset()));
            return Ok(None);
        }
        let (kind, left, right) = match step {
            Step::OnlyLeft(a) => (DivergenceKind::OnlyLeft, Some(a), None),
            Step::OnlyRight(b) => (DivergenceKind::OnlyRight, None, Some(b)),
            Step::Pair(a, b) => (DivergenceKind::Changed, Some(a), Some(b)),
        };
        let le = left.as_ref().map(Item::event).transpose()?;
        let re = right.as_ref().map(Item::event).transpose()?;
        let lm = le.clone().map(|e| self.mapped(e));
        let mut divergence = Divergence {
            kind,
            index,
            left: le.clone(),
            right: re.clone(),
            changes: Vec::new(),
            keys: Vec::new(),
            last_equal: self.last_equal,
            at_left: le.as_ref().map_or_else(
                || self.left_through.map_or(self.req.left.from, |t| t + 1),
                |e| e.offset,
            ),
        };
        let differs = match self.req.compare {
            // Stored bytes that differ (equal ones returned above).
            Compare::Hash => {
                divergence.changes = event_changes(lm.as_deref(), re.as_deref(), self.req)?;
                true
            }
            Compare::Events => {
                let same = match (lm.as_deref(), re.as_deref()) {
                    (Some(a), Some(b)) => events_equal(a, b, self.req),
                    _ => false,
                };
                if !same {
                    divergence.changes = event_changes(lm.as_deref(), re.as_deref(), self.req)?;
                }
                !same && (kind != DivergenceKind::Changed || !divergence.changes.is_empty())
            }
            Compare::State => {
                divergence.keys = self.fold(lm.as_deref(), re.as_deref())?;
                !divergence.keys.is_empty()
            }
        };
        if differs {
            return Ok(Some(divergence));
        }
        if let (Some(a), Some(b)) = (&le, &re) {
            self.last_equal = Some((a.offset, b.offset));
        }
        Ok(None)
    }

    /// State: folds the step into each side's state and returns the keys it left different
    /// (or different in another way than before), with what differs inside their values.
    fn fold(
        &mut self,
        left: Option<&Event>,
        right: Option<&Event>,
    ) -> Result<Vec<KeyChange>, DiffError> {
        let (ls, rs) = self
            .states
            .as_mut()
            .expect("state comparison keeps states")
            .split();
        let mut touched = BTreeSet::new();
        for (state, e) in [(&mut *ls, left), (&mut *rs, right)] {
            if let Some(e) = e {
                state.apply(e);
                for op in &e.operations {
                    touched.insert(StateKey {
                        namespace: e.namespace.clone(),
                        agent_id: e.agent_id.clone(),
                        key: op.key.clone(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        for k in touched {
            let (a, b) = (ls.get(&k), rs.get(&k));
            let same = match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => values_equal(&a.value, &b.value, &k.key, &self.req.ignore)?,
                _ => false,
            };
            if same {
                self.differing.remove(&k);
                continue;
            }
            self.differing.insert(k.clone());
            let value = |e: Option<&crate::state::Entry>| -> Result<Option<Value>, ValueError> {
                e.map(|e| {
                    e.value
                        .object(&k.key)
                        .map(|o| stripped(Value::Object(o.clone()), &self.req.ignore))
                })
                .transpose()
            };
            let (old, new) = (value(a)?, value(b)?);
            let change = match (&old, &new) {
                (None, _) => KeyChangeKind::Added,
                (_, None) => KeyChangeKind::Deleted,
                _ => KeyChangeKind::Changed,
            };
            out.push(KeyChange {
                agent: format!("{}/{}", k.namespace, k.agent_id),
                key: k.key.to_string(),
                change,
                changes: super::json_diff::diff_opt(old.as_ref(), new.as_ref()),
                old,
                new,
            });
        }
        Ok(out)
    }
}

/// The two sides' states: one while every step was the same bytes (folded once), two from the
/// first step that was not.
enum States {
    Same(KvState),
    Apart(KvState, KvState),
}

impl States {
    fn fold_both(&mut self, e: &Event) {
        match self {
            States::Same(s) => {
                s.apply(e);
            }
            States::Apart(a, b) => {
                a.apply(e);
                b.apply(e);
            }
        }
    }

    /// The two states, apart from now on (a clone shares the structure).
    fn split(&mut self) -> (&mut KvState, &mut KvState) {
        if let States::Same(s) = self {
            *self = States::Apart(s.clone(), std::mem::take(s));
        }
        match self {
            States::Apart(a, b) => (a, b),
            States::Same(_) => unreachable!("split above"),
        }
    }
}

/// Whether txn_id and commit_ts are compared under `align` (a target written by `play --into`
/// gets its own, so position alignment leaves them out; the field an alignment pairs by is
/// equal anyway).
fn compares_identity(align: Align) -> (bool, bool) {
    match align {
        Align::Offset => (true, true),
        Align::Txn => (false, true),
        Align::CommitTs => (true, false),
        Align::Position => (false, false),
    }
}

/// Two paired events are the same as far as the request looks: the cheap test on stored
/// values first, the JSON (with the ignored fields left out) only where the bytes differ.
fn events_equal(a: &Event, b: &Event, req: &DiffRequest) -> bool {
    let (txn, ts) = compares_identity(req.align);
    if (txn && a.txn_id != b.txn_id)
        || (ts && a.commit_ts != b.commit_ts)
        || a.namespace != b.namespace
        || a.agent_id != b.agent_id
        || a.operations.len() != b.operations.len()
    {
        return false;
    }
    a.operations.iter().zip(&b.operations).all(|(x, y)| {
        x.key == y.key
            && x.version == y.version
            && match (&x.value, &y.value) {
                (None, None) => true,
                (Some(v), Some(w)) => values_equal(v, w, &x.key, &req.ignore).unwrap_or(false),
                _ => false,
            }
    })
}

/// Two values are equal: the same stored bytes, or the same JSON once the ignored fields are
/// left out.
fn values_equal(
    a: &crate::event::ObjectValue,
    b: &crate::event::ObjectValue,
    key: &str,
    ignore: &[String],
) -> Result<bool, ValueError> {
    if let (Some(x), Some(y)) = (a.raw(), b.raw())
        && x == y
    {
        return Ok(true);
    }
    let (x, y) = (a.object(key)?, b.object(key)?);
    if ignore.is_empty() {
        return Ok(x == y);
    }
    Ok(stripped(Value::Object(x.clone()), ignore) == stripped(Value::Object(y.clone()), ignore))
}

/// `value` without the fields at the `ignore` pointers.
fn stripped(mut value: Value, ignore: &[String]) -> Value {
    for pointer in ignore {
        let Some((parent, last)) = pointer.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        match value.pointer_mut(parent) {
            Some(Value::Object(o)) => {
                o.remove(&last);
            }
            Some(Value::Array(a)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    a[i] = Value::Null;
                }
            }
            _ => {}
        }
    }
    value
}

/// An event as the comparison sees it: its agent, the identity fields the alignment compares,
/// and its operations (values without the ignored fields).
fn view(e: &Event, req: &DiffRequest) -> Result<Value, ValueError> {
    let (txn, ts) = compares_identity(req.align);
    let mut m = serde_json::Map::new();
    m.insert(
        "agent".into(),
        Value::String(format!("{}/{}", e.namespace, e.agent_id)),
    );
    if txn {
        m.insert("txn_id".into(), Value::String(e.txn_id.clone()));
    }
    if ts {
        m.insert("commit_ts".into(), Value::from(e.commit_ts));
    }
    let mut ops = Vec::with_capacity(e.operations.len());
    for op in &e.operations {
        let value = match &op.value {
            Some(v) => stripped(Value::Object(v.object(&op.key)?.clone()), &req.ignore),
            None => Value::Null,
        };
        ops.push(serde_json::json!({"key": &*op.key, "value": value, "version": op.version}));
    }
    m.insert("operations".into(), Value::Array(ops));
    Ok(Value::Object(m))
}

/// What differs between two events (or an event and nothing), field by field.
fn event_changes(
    a: Option<&Event>,
    b: Option<&Event>,
    req: &DiffRequest,
) -> Result<Vec<FieldChange>, ValueError> {
    let a = a.map(|e| view(e, req)).transpose()?;
    let b = b.map(|e| view(e, req)).transpose()?;
    Ok(match (a, b) {
        (Some(a), Some(b)) => json_diff(&a, &b),
        (a, b) => super::json_diff::diff_opt(a.as_ref(), b.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_pointers_leave_out_exactly_those_fields() {
        let v = serde_json::json!({"a": 1, "t": {"at": 5, "keep": 2}, "l": [1, 2]});
        let s = stripped(v, &["/t/at".into(), "/l/0".into(), "/missing/x".into()]);
        assert_eq!(
            s,
            serde_json::json!({"a": 1, "t": {"keep": 2}, "l": [null, 2]})
        );
    }
}
