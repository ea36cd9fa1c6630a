//! The Statehouse sink's pipelining and failure handling, against a scripted Statehouse server
//! on 127.0.0.1 that answers Writes after uneven delays (so staged transactions finish out of
//! order) and rejects one chosen key. The real daemon cannot be made to reject a write, so this
//! is where a rejection is tested; everything else runs against the real daemon in
//! tests/into.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use replayscope::archive::{Archive, ArchiveWriter, OpenOptions, WriterOptions};
use replayscope::event::{Event, JsonObject, ObjectValue, Operation};
use replayscope::player::{self, PlayerOptions};
use replayscope::sink::{AgentMap, StatehouseSink, StatehouseTarget};
use replayscope::source::{ArchiveSource, Source};
use replayscope::wire::proto::statehouse::v1 as sh;
use replayscope::wire::proto::statehouse::v1::statehouse_service_server::{
    StatehouseService, StatehouseServiceServer,
};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Log {
    next_id: u64,
    /// Staged operations per target transaction: (key, is a write).
    staged: std::collections::HashMap<String, Vec<(String, bool)>>,
    /// Committed transactions' operations, in commit order.
    committed: Vec<Vec<(String, bool)>>,
    aborted: Vec<String>,
    writes: u64,
}

struct Scripted {
    log: Arc<Mutex<Log>>,
    poison: String,
}

impl Scripted {
    async fn stage(&self, txn: &str, key: &str, write: bool) -> Result<(), Status> {
        let n = {
            let mut l = self.log.lock().unwrap();
            l.writes += 1;
            l.writes
        };
        // Uneven answers: later transactions' stages often finish before earlier ones.
        tokio::time::sleep(Duration::from_micros((n * 7919) % 3000)).await;
        if key == self.poison {
            return Err(Status::internal(
                "Write failed: quota exceeded for this agent",
            ));
        }
        let mut l = self.log.lock().unwrap();
        let ops = l
            .staged
            .get_mut(txn)
            .ok_or_else(|| Status::internal("Write failed: Transaction not found"))?;
        ops.push((key.to_string(), write));
        Ok(())
    }
}

#[tonic::async_trait]
impl StatehouseService for Scripted {
    async fn health(
        &self,
        _: Request<sh::HealthRequest>,
    ) -> Result<Response<sh::HealthResponse>, Status> {
        Ok(Response::new(sh::HealthResponse {
            status: "ok".into(),
        }))
    }
    async fn version(
        &self,
        _: Request<sh::VersionRequest>,
    ) -> Result<Response<sh::VersionResponse>, Status> {
        Ok(Response::new(sh::VersionResponse {
            version: "scripted".into(),
            git_sha: String::new(),
        }))
    }
    async fn begin_transaction(
        &self,
        _: Request<sh::BeginTransactionRequest>,
    ) -> Result<Response<sh::BeginTransactionResponse>, Status> {
        let mut l = self.log.lock().unwrap();
        l.next_id += 1;
        let id = format!("t{}", l.next_id);
        l.staged.insert(id.clone(), Vec::new());
        Ok(Response::new(sh::BeginTransactionResponse { txn_id: id }))
    }
    async fn write(
        &self,
        r: Request<sh::WriteRequest>,
    ) -> Result<Response<sh::WriteResponse>, Status> {
        let r = r.into_inner();
        assert!(r.value.is_some(), "a write carries its value");
        self.stage(&r.txn_id, &r.key, true).await?;
        Ok(Response::new(sh::WriteResponse {}))
    }
    async fn delete(
        &self,
        r: Request<sh::DeleteRequest>,
    ) -> Result<Response<sh::DeleteResponse>, Status> {
        let r = r.into_inner();
        self.stage(&r.txn_id, &r.key, false).await?;
        Ok(Response::new(sh::DeleteResponse {}))
    }
    async fn commit(
        &self,
        r: Request<sh::CommitRequest>,
    ) -> Result<Response<sh::CommitResponse>, Status> {
        let mut l = self.log.lock().unwrap();
        let ops = l
            .staged
            .remove(&r.get_ref().txn_id)
            .ok_or_else(|| Status::internal("Commit failed: Transaction not found"))?;
        l.committed.push(ops);
        Ok(Response::new(sh::CommitResponse {
            commit_ts: l.committed.len() as u64,
        }))
    }
    async fn abort(
        &self,
        r: Request<sh::AbortRequest>,
    ) -> Result<Response<sh::AbortResponse>, Status> {
        let mut l = self.log.lock().unwrap();
        l.staged.remove(&r.get_ref().txn_id);
        l.aborted.push(r.into_inner().txn_id);
        Ok(Response::new(sh::AbortResponse {}))
    }
    async fn get_state(
        &self,
        _: Request<sh::GetStateRequest>,
    ) -> Result<Response<sh::GetStateResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn get_state_at_version(
        &self,
        _: Request<sh::GetStateAtVersionRequest>,
    ) -> Result<Response<sh::GetStateAtVersionResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn list_keys(
        &self,
        _: Request<sh::ListKeysRequest>,
    ) -> Result<Response<sh::ListKeysResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    async fn scan_prefix(
        &self,
        _: Request<sh::ScanPrefixRequest>,
    ) -> Result<Response<sh::ScanPrefixResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
    type ReplayStream = tonic::codegen::tokio_stream::Empty<Result<sh::ReplayEvent, Status>>;
    async fn replay(
        &self,
        _: Request<sh::ReplayRequest>,
    ) -> Result<Response<Self::ReplayStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }
}

/// 300 transactions of one to three operations (writes and deletes) on a few keys; the
/// transaction at offset 200 writes `poison`.
fn events() -> Vec<Event> {
    (0..300u64)
        .map(|i| {
            let mut operations: Vec<Operation> = (0..=(i % 3))
                .map(|j| {
                    let key = format!("k{}", (i + j) % 11);
                    let value = (j != 2).then(|| {
                        let mut o = JsonObject::new();
                        o.insert("n".into(), (i * 10 + j).into());
                        ObjectValue::from_object(o)
                    });
                    Operation {
                        key: key.into(),
                        value,
                        version: i + 1,
                    }
                })
                .collect();
            if i == 200 {
                operations.push(Operation {
                    key: "poison".into(),
                    value: Some(ObjectValue::from_object(JsonObject::new())),
                    version: 1,
                });
            }
            Event {
                offset: i,
                txn_id: format!("txn-{i}"),
                commit_ts: i + 1,
                commit_time_ns: None,
                namespace: "prod".into(),
                agent_id: "planner".into(),
                operations,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commits_keep_the_order_and_a_rejected_write_aborts_what_was_staged() {
    let log = Arc::new(Mutex::new(Log::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = StatehouseServiceServer::new(Scripted {
        log: log.clone(),
        poison: "poison".into(),
    });
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    let evs = events();
    let mut w = ArchiveWriter::create(&path, WriterOptions::default()).unwrap();
    for e in &evs {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
    let source: Arc<dyn Source> = Arc::new(ArchiveSource::new(
        Archive::open(&path, OpenOptions::default()).unwrap(),
    ));
    let url = format!("statehouse://{addr}");
    let target = StatehouseTarget::connect(&url, Default::default(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(target.check_health().await.unwrap(), "scripted");
    let (sink, stats) = StatehouseSink::new(target, AgentMap::default(), 8);
    let report = player::spawn(source, PlayerOptions::default(), Box::new(sink))
        .unwrap()
        .join()
        .await
        .unwrap();

    // The run failed on offset 200, naming the transaction, the key and the target's words,
    // and says to resume there.
    assert!(report.outcome.is_failed(), "{report:?}");
    let reason = report.reason.clone().unwrap();
    assert!(
        reason.contains(&format!(
            "{url}: the target rejected transaction txn-200 (offset 200) at Write of key \
             prod/planner:poison: Write failed: quota exceeded for this agent"
        )),
        "{reason}"
    );
    assert_eq!(report.next_offset, Some(200));
    assert_eq!(stats.committed(), 200);

    // Exactly offsets 0..200 were committed, in order, each with its operations in order.
    let l = log.lock().unwrap();
    let expected: Vec<Vec<(String, bool)>> = evs[..200]
        .iter()
        .map(|e| {
            e.operations
                .iter()
                .map(|o| (o.key.to_string(), o.value.is_some()))
                .collect()
        })
        .collect();
    assert_eq!(l.committed, expected);
    // The rejected transaction and everything staged behind it were aborted; nothing is left
    // open on the target.
    assert!(!l.aborted.is_empty());
    assert!(l.staged.is_empty(), "left open: {:?}", l.staged.keys());
    drop(l);
    server.abort();
}
