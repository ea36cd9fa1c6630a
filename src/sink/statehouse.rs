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
//!
//! This file is the target (a connected daemon: stage, commit, abort, read back, with errors
//! that name the transaction and key); [`pipeline`] is the sink, [`verify`] the read-back,
//! `crate::event::agent_map` the `--map-agent` renaming.

pub mod pipeline;
pub mod verify;

use std::time::Duration;

use prost::Message as _;

use crate::event::ObjectValue;
use crate::player::SinkError;
use crate::wire::client::{CallError, ClientError, ConnectOptions, StatehouseClient};
use crate::wire::proto::statehouse::v1 as sh;

pub use crate::event::agent_map::AgentMap;
pub use pipeline::{ApplyStats, StatehouseSink, TargetTxn};
pub use verify::{Verification, daemon_form, loses_data, verify_target};

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

#[cfg(test)]
mod tests {
    use super::*;

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
