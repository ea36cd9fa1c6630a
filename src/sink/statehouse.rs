//! `play --into statehouse://host:port`: every played transaction is applied to a Statehouse
//! daemon through its own API — BeginTransaction, one Write or Delete per operation in the
//! recorded order, Commit (Abort when anything fails) — so the target commits the same history,
//! transaction by transaction, in commit order.
//!
//! Transactions are pipelined: while one commits, the next few are begun and their operations
//! staged (the daemon keeps staged operations per transaction and applies them only at commit,
//! so staging ahead cannot change what a commit sees). Commits are sent one at a time, each
//! after the previous one succeeded, which keeps the commit order. The sink's queue is bounded:
//! when the target is slower than the pace, the player waits (back-pressure shows as lag).
//!
//! After a run, [`verify_target`] reads the target's state back (ScanPrefix per agent) and
//! compares it with the state the played transactions fold to.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prost::Message as _;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::PollSender;

use crate::event::{Event, JsonObject, ObjectValue};
use crate::player::{Played, Sink, SinkError};
use crate::state::KvState;
use crate::wire::client::{CallError, ClientError, ConnectOptions, StatehouseClient};
use crate::wire::proto::statehouse::v1 as sh;

/// How long a transaction may stay open on the target (it is committed well before).
const TXN_TIMEOUT_MS: u64 = 120_000;

/// A Statehouse target could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    #[error("{url}: cannot reach the Statehouse target: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: {rpc} failed: {message}")]
    Rpc {
        url: String,
        rpc: &'static str,
        message: String,
    },
    #[error("{url}: the target is not healthy: Health answered {status:?} (expected \"ok\")")]
    Unhealthy { url: String, status: String },
}

/// One transaction could not be applied: which one, where, and what the target said.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{url}: {} transaction {txn_id} (offset {offset}) at {rpc}{}: {message}",
    if *.lost { "lost the target during" } else { "the target rejected" },
    .key.as_ref().map(|k| format!(" of key {k}")).unwrap_or_default()
)]
pub struct ApplyError {
    pub url: String,
    /// The target stopped answering (rather than refusing).
    pub lost: bool,
    pub offset: u64,
    pub txn_id: String,
    pub rpc: &'static str,
    /// `namespace/agent_id:key` of the operation that failed.
    pub key: Option<String>,
    pub message: String,
}

impl ApplyError {
    fn into_sink_error(self) -> SinkError {
        SinkError {
            resume_offset: Some(self.offset),
            closed: false,
            message: self.to_string(),
        }
    }
}

/// `--map-agent FROM_NS/FROM_AGENT=TO_NS/TO_AGENT`: where a recorded agent's keys go.
#[derive(Debug, Clone, Default)]
pub struct AgentMap(Vec<(String, String, Arc<str>, Arc<str>)>);

impl AgentMap {
    pub fn parse(items: &[String]) -> Result<AgentMap, String> {
        let mut map = Vec::new();
        for item in items {
            let bad = || {
                format!(
                    "--map-agent {item:?}: expected FROM_NAMESPACE/FROM_AGENT=TO_NAMESPACE/TO_AGENT"
                )
            };
            let (from, to) = item.split_once('=').ok_or_else(bad)?;
            let (fns, fa) = from.trim().split_once('/').ok_or_else(bad)?;
            let (tns, ta) = to.trim().split_once('/').ok_or_else(bad)?;
            if [fns, fa, tns, ta].iter().any(|s| s.is_empty()) {
                return Err(bad());
            }
            if map
                .iter()
                .any(|(n, a, _, _): &(String, String, Arc<str>, Arc<str>)| n == fns && a == fa)
            {
                return Err(format!("--map-agent: {from} is mapped twice"));
            }
            map.push((
                fns.to_string(),
                fa.to_string(),
                Arc::from(tns),
                Arc::from(ta),
            ));
        }
        Ok(AgentMap(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where `namespace/agent_id` goes (itself unless mapped).
    pub fn map(&self, namespace: &Arc<str>, agent_id: &Arc<str>) -> (Arc<str>, Arc<str>) {
        for (n, a, tn, ta) in &self.0 {
            if **n == **namespace && **a == **agent_id {
                return (tn.clone(), ta.clone());
            }
        }
        (namespace.clone(), agent_id.clone())
    }

    /// The `from` agents that no source channel has (a typo would silently map nothing).
    pub fn unknown(&self, channels: &[(String, String, u64)]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, a, _, _)| !channels.iter().any(|(cn, ca, _)| cn == n && ca == a))
            .map(|(n, a, _, _)| format!("{n}/{a}"))
            .collect()
    }
}

/// A connected Statehouse daemon.
#[derive(Clone)]
pub struct StatehouseTarget {
    client: StatehouseClient,
    url: String,
}

/// A value as `google.protobuf.Struct` (stored bytes are decoded as they are).
fn to_struct(v: &ObjectValue, key: &str) -> Result<prost_types::Struct, String> {
    match v.raw() {
        Some(raw) => prost_types::Struct::decode(raw.as_ref()).map_err(|e| e.to_string()),
        None => {
            let obj = v.object(key).map_err(|e| e.to_string())?;
            crate::event::object_to_struct(obj, key).map_err(|e| e.to_string())
        }
    }
}

impl StatehouseTarget {
    /// Connects to `statehouse://host:port` (or `host:port`); each call then waits at most
    /// `timeout` for an answer.
    pub async fn connect(
        url: &str,
        options: ConnectOptions,
        timeout: Duration,
    ) -> Result<StatehouseTarget, TargetError> {
        let addr = url.strip_prefix("statehouse://").unwrap_or(url);
        let addr = addr.trim_end_matches('/');
        let client = StatehouseClient::connect(addr, options, timeout)
            .await
            .map_err(|e| TargetError::Unreachable {
                url: url.to_string(),
                message: match e {
                    ClientError::Connect { message, .. }
                    | ClientError::Endpoint { message, .. }
                    | ClientError::Tls { message, .. } => message,
                },
            })?;
        Ok(StatehouseTarget {
            client,
            url: url.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn rpc_error(&self, rpc: &'static str, e: &CallError) -> TargetError {
        if e.code == crate::wire::client::CallCode::Unavailable {
            TargetError::Unreachable {
                url: self.url.clone(),
                message: e.text(),
            }
        } else {
            TargetError::Rpc {
                url: self.url.clone(),
                rpc,
                message: e.text(),
            }
        }
    }

    /// Health must answer "ok"; returns the daemon's version.
    pub async fn check_health(&self) -> Result<String, TargetError> {
        let status = self
            .client
            .health()
            .await
            .map_err(|e| self.rpc_error("Health", &e))?;
        if status != "ok" {
            return Err(TargetError::Unhealthy {
                url: self.url.clone(),
                status,
            });
        }
        self.client
            .version()
            .await
            .map_err(|e| self.rpc_error("Version", &e))
    }

    /// Every live key of one agent.
    pub async fn scan_agent(
        &self,
        namespace: &str,
        agent_id: &str,
    ) -> Result<Vec<sh::StateEntry>, TargetError> {
        self.client
            .scan_prefix(namespace, agent_id, "")
            .await
            .map_err(|e| self.rpc_error("ScanPrefix", &e))
    }

    async fn abort(&self, target_txn: &str) {
        if let Err(e) = self.client.abort(target_txn).await {
            tracing::warn!(target = %self.url, txn = target_txn, "Abort failed: {}", e.text());
        }
    }

    /// Begins a transaction on the target and stages `txn`'s operations in order; returns the
    /// target's transaction id (aborted again when an operation fails).
    pub async fn stage(&self, txn: &TargetTxn) -> Result<String, ApplyError> {
        let e = &txn.event;
        let fail = |rpc, key: Option<&str>, c: Result<&CallError, String>| ApplyError {
            url: self.url.clone(),
            lost: c.as_ref().is_ok_and(|c| c.is_lost()),
            offset: e.offset,
            txn_id: e.txn_id.clone(),
            rpc,
            key: key.map(|k| format!("{}/{}:{k}", txn.namespace, txn.agent_id)),
            message: c.map_or_else(|m| m, CallError::text),
        };
        let id = self
            .client
            .begin_transaction(TXN_TIMEOUT_MS)
            .await
            .map_err(|c| fail("BeginTransaction", None, Ok(&c)))?;
        let (ns, agent) = (&*txn.namespace, &*txn.agent_id);
        for op in &e.operations {
            let r = match &op.value {
                Some(v) => {
                    let value = match to_struct(v, &op.key) {
                        Ok(v) => v,
                        Err(m) => {
                            self.abort(&id).await;
                            return Err(fail(
                                "Write",
                                Some(&op.key),
                                Err(format!("the value cannot be sent: {m}")),
                            ));
                        }
                    };
                    let w = self.client.write(&id, ns, agent, &op.key, value);
                    w.await.map_err(|c| ("Write", c))
                }
                None => {
                    let d = self.client.delete(&id, ns, agent, &op.key);
                    d.await.map_err(|c| ("Delete", c))
                }
            };
            if let Err((rpc, c)) = r {
                self.abort(&id).await;
                return Err(fail(rpc, Some(&op.key), Ok(&c)));
            }
        }
        Ok(id)
    }

    /// Commits a staged transaction; returns the target's commit_ts.
    pub async fn commit(&self, txn: &TargetTxn, target_txn: &str) -> Result<u64, ApplyError> {
        self.client
            .commit(target_txn)
            .await
            .map_err(|c| ApplyError {
                url: self.url.clone(),
                lost: c.is_lost(),
                offset: txn.event.offset,
                txn_id: txn.event.txn_id.clone(),
                rpc: "Commit",
                key: None,
                message: c.text(),
            })
    }

    /// Applies one transaction and waits for its commit (no pipelining).
    pub async fn apply(&self, txn: &TargetTxn) -> Result<u64, ApplyError> {
        let id = self.stage(txn).await?;
        self.commit(txn, &id).await
    }
}

/// A transaction on its way to the target, with the agent it is written as.
#[derive(Clone)]
pub struct TargetTxn {
    pub event: Arc<Event>,
    pub namespace: Arc<str>,
    pub agent_id: Arc<str>,
}

/// Counters of what a sink has applied (shared with status lines and metrics).
#[derive(Debug, Default)]
pub struct ApplyStats {
    pub committed: AtomicU64,
    pub operations: AtomicU64,
    /// Offset of the last committed transaction + 1 (0: none yet).
    pub next_offset: AtomicU64,
}

impl ApplyStats {
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }
}

/// Writes played transactions into a Statehouse daemon.
pub struct StatehouseSink {
    tx: PollSender<TargetTxn>,
    map: AgentMap,
    handed: u64,
    committed: watch::Receiver<u64>,
    failure: Arc<Mutex<Option<SinkError>>>,
    flush: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    url: String,
}

impl StatehouseSink {
    /// A sink over `target`, with up to `depth` transactions staged ahead of the one
    /// committing. Must be called on a tokio runtime (it starts the writer task).
    pub fn new(
        target: StatehouseTarget,
        map: AgentMap,
        depth: usize,
    ) -> (StatehouseSink, Arc<ApplyStats>) {
        let depth = depth.max(1);
        let (tx, rx) = mpsc::channel(depth);
        let (committed_tx, committed) = watch::channel(0u64);
        let failure = Arc::new(Mutex::new(None));
        let stats = Arc::new(ApplyStats::default());
        let url = target.url.clone();
        tokio::spawn(write_loop(
            Arc::new(target),
            rx,
            depth,
            committed_tx,
            failure.clone(),
            stats.clone(),
        ));
        (
            StatehouseSink {
                tx: PollSender::new(tx),
                map,
                handed: 0,
                committed,
                failure,
                flush: None,
                url,
            },
            stats,
        )
    }

    fn failure(&self) -> SinkError {
        self.failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| SinkError::new(format!("{}: the target's writer ended", self.url)))
    }
}

impl Sink for StatehouseSink {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        match self.tx.poll_reserve(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.failure())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn played(&mut self, p: &Played<'_>) -> Result<(), SinkError> {
        let (namespace, agent_id) = self.map.map(&p.event.namespace, &p.event.agent_id);
        let txn = TargetTxn {
            event: p.event.clone(),
            namespace,
            agent_id,
        };
        if self.tx.send_item(txn).is_err() {
            return Err(self.failure());
        }
        self.handed += 1;
        Ok(())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        let flush = self.flush.get_or_insert_with(|| {
            let mut rx = self.committed.clone();
            let target = self.handed;
            Box::pin(async move {
                // Err: the writer ended (after a failure); the failure says why.
                let _ = rx.wait_for(|c| *c >= target).await;
            })
        });
        if flush.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.flush = None;
        if *self.committed.borrow() >= self.handed {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(self.failure()))
        }
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.tx.close();
        Ok(())
    }
}

type Staging = (
    TargetTxn,
    tokio::task::JoinHandle<Result<String, ApplyError>>,
);

async fn write_loop(
    target: Arc<StatehouseTarget>,
    mut rx: mpsc::Receiver<TargetTxn>,
    depth: usize,
    committed: watch::Sender<u64>,
    failure_slot: Arc<Mutex<Option<SinkError>>>,
    stats: Arc<ApplyStats>,
) {
    let mut staged: VecDeque<Staging> = VecDeque::with_capacity(depth);
    let mut open = true;
    let mut count = 0u64;
    let failure = loop {
        tokio::select! {
            biased;
            r = async { (&mut staged.front_mut().expect("enabled when not empty").1).await }, if !staged.is_empty() => {
                let (txn, _) = staged.pop_front().expect("not empty");
                let id = match r {
                    Ok(Ok(id)) => id,
                    Ok(Err(e)) => break Some(e),
                    Err(join) => break Some(ApplyError {
                        url: target.url.clone(),
                        lost: false,
                        offset: txn.event.offset,
                        txn_id: txn.event.txn_id.clone(),
                        rpc: "BeginTransaction",
                        key: None,
                        message: format!("internal error: {join}"),
                    }),
                };
                if let Err(e) = target.commit(&txn, &id).await {
                    break Some(e);
                }
                count += 1;
                stats.committed.fetch_add(1, Ordering::Relaxed);
                stats.operations.fetch_add(txn.event.operations.len() as u64, Ordering::Relaxed);
                stats.next_offset.store(txn.event.offset + 1, Ordering::Relaxed);
                committed.send_replace(count);
            }
            t = rx.recv(), if open && staged.len() < depth => match t {
                Some(txn) => {
                    let t = target.clone();
                    let staging = txn.clone();
                    staged.push_back((txn, tokio::spawn(async move { t.stage(&staging).await })));
                }
                None => open = false,
            },
            else => break None,
        }
    };
    if let Some(e) = failure {
        tracing::error!("{e}");
        if let Ok(mut slot) = failure_slot.lock() {
            *slot = Some(e.into_sink_error());
        }
        rx.close();
        // What was staged behind the failure is never committed.
        for (_, h) in staged {
            if let Ok(Ok(id)) = h.await {
                target.abort(&id).await;
            }
        }
    }
}

/// One key that differs between the expected state and the target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    /// `namespace/agent_id:key` in the target.
    pub key: String,
    /// Compact JSON, or None where the key is absent.
    pub expected: Option<String>,
    pub actual: Option<String>,
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
            s.push_str(&format!(
                "\n  {}: expected {}, target has {}",
                d.key,
                d.expected.as_deref().unwrap_or("(absent)"),
                d.actual.as_deref().unwrap_or("(absent)")
            ));
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
                    differences.push(Difference {
                        key: format!("{ns}/{agent}:{key}"),
                        expected: json(x),
                        actual: json(y),
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
    fn agent_map_parses_and_maps() {
        let m = AgentMap::parse(&["prod/a=staging/b".to_string()]).unwrap();
        let (n, a) = m.map(&Arc::from("prod"), &Arc::from("a"));
        assert_eq!((&*n, &*a), ("staging", "b"));
        let (n, a) = m.map(&Arc::from("prod"), &Arc::from("c"));
        assert_eq!((&*n, &*a), ("prod", "c"));
        for bad in ["prod/a", "prod=b/c", "/a=b/c", "a/b=c/", "a/b=c"] {
            let e = AgentMap::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        let e = AgentMap::parse(&["a/b=c/d".into(), "a/b=e/f".into()]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert_eq!(
            m.unknown(&[("prod".into(), "x".into(), 1)]),
            vec!["prod/a".to_string()]
        );
    }

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

    #[test]
    fn apply_errors_name_the_transaction_key_and_message() {
        let e = ApplyError {
            url: "statehouse://127.0.0.1:1".into(),
            lost: false,
            offset: 12,
            txn_id: "t-12".into(),
            rpc: "Write",
            key: Some("prod/a:memory/x".into()),
            message: "Write failed: Transaction expired".into(),
        };
        let s = e.clone().into_sink_error();
        assert_eq!(s.resume_offset, Some(12));
        assert_eq!(
            s.message,
            "statehouse://127.0.0.1:1: the target rejected transaction t-12 (offset 12) at Write \
             of key prod/a:memory/x: Write failed: Transaction expired"
        );
    }
}
