//! The sink: played transactions go through a bounded queue to a write loop that stages the
//! next ones (BeginTransaction + Write/Delete) while one commits, and commits one at a time in
//! order. A full queue holds the player back (back-pressure shows as lag).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::PollSender;

use super::{AgentMap, ApplyError, StatehouseTarget};
use crate::event::Event;
use crate::player::{Played, Sink, SinkError};

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
