//! The inspector's state, folded off the player's path. The player only plays; a folder task
//! reads the same source on its own stream and folds it up to wherever it is asked (the
//! player's cursor), keeping checkpoints, so seeks and steps back rewind cheaply. While the
//! player ingests at full speed the folder is throttled to a small share of one core (state
//! freshness is traded for ingestion, and the UI says how far behind the state is); when the
//! player pauses, finishes or plays slowly it folds at full speed. It also works out the diff of
//! any one transaction on request (from the nearest checkpoint), for the selected row.
//!
//! Without a bootstrap state the folder shows the source's state (folded from its first event,
//! whatever offset the player starts at), and it starts from the source's state snapshots
//! (DESIGN.md section 12) wherever one is nearer than what it has folded: a seek far forward or
//! back shows the state at once instead of folding everything between.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::event::Event;
use crate::flow::CreditWindow;
use crate::source::{BatchStream, Filter, Source, StreamRequest};
use crate::state::{Diff, KvState, StateTracker};

/// Where to fold to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FoldRequest {
    /// Fold every event up to and including this offset (None: none yet).
    pub through: Option<u64>,
    /// Hold off (the player is ingesting at full speed: folding would take the CPU it needs;
    /// the state catches up when the player pauses, finishes or slows down).
    pub throttle: bool,
    /// Work out what the transaction at this offset changed.
    pub diff_of: Option<u64>,
}

/// What the folder has.
#[derive(Debug, Clone, Default)]
pub struct FoldView {
    /// The state after the events through `through` (the start state before any).
    pub state: KvState,
    /// The last offset folded (None: nothing yet).
    pub through: Option<u64>,
    /// The diff asked for with `diff_of`, once known.
    pub diff: Option<Arc<Diff>>,
    /// Reading the source failed (the state stays where it got to).
    pub error: Option<String>,
    /// Folding is held off while the player ingests at full speed.
    pub paused: bool,
}

/// Work done before the folder looks at the latest request again.
const SLICE: Duration = Duration::from_millis(10);
/// How often the state is published while folding.
const PUBLISH: Duration = Duration::from_millis(100);
const WINDOW_BYTES: u64 = 1024 * 1024;

/// A running folder; dropping it stops the task.
pub struct Folder {
    requests: watch::Sender<FoldRequest>,
    view: watch::Receiver<FoldView>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Folder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Folder {
    /// Starts folding `source` (events passing `filter`, from offset `from`, starting from
    /// `initial`) on the current runtime.
    pub fn spawn(
        source: Arc<dyn Source>,
        filter: Filter,
        from: u64,
        initial: KvState,
        checkpoint_every: u64,
        max_checkpoints: usize,
    ) -> Folder {
        // The source's own state, from its first event: snapshots hold that (narrowed to an
        // agent filter; a key or txn filter folds only what it passes, which they do not hold).
        let whole = initial.is_empty();
        let from = if whole {
            source.info().first_offset.unwrap_or(from)
        } else {
            from
        };
        let snapshots = whole && filter.key_prefix.is_none() && filter.txn_id.is_none();
        let (requests, rx) = watch::channel(FoldRequest::default());
        let (view_tx, view) = watch::channel(FoldView {
            state: initial.clone(),
            ..FoldView::default()
        });
        let task = FoldTask {
            source,
            filter,
            tracker: StateTracker::new(from, initial.clone(), checkpoint_every, max_checkpoints),
            start: (from, initial),
            snapshots,
            jump: checkpoint_every.max(1),
            stream: None,
            buffer: VecDeque::new(),
            ended: false,
            through: None,
            last_diff: None,
            diff: None,
            error: None,
            view: view_tx,
            paused: false,
            last_publish: Instant::now(),
        };
        Folder {
            requests,
            view,
            task: tokio::spawn(task.run(rx)),
        }
    }

    /// Asks for a new position (no-op when nothing changed).
    pub fn request(&self, r: FoldRequest) {
        self.requests.send_if_modified(|old| {
            if *old == r {
                false
            } else {
                *old = r;
                true
            }
        });
    }

    pub fn view(&self) -> watch::Receiver<FoldView> {
        self.view.clone()
    }
}

struct FoldTask {
    source: Arc<dyn Source>,
    filter: Filter,
    tracker: StateTracker,
    /// Where folding starts and the state before it.
    start: (u64, KvState),
    /// The source's state snapshots may be used.
    snapshots: bool,
    /// Folding on beyond this many events looks for a nearer snapshot first.
    jump: u64,
    stream: Option<(BatchStream, CreditWindow)>,
    /// Events read but not folded (past the requested position).
    buffer: VecDeque<Arc<Event>>,
    /// The stream reached the end of the source.
    ended: bool,
    through: Option<u64>,
    /// The diff of the last event folded.
    last_diff: Option<Arc<Diff>>,
    diff: Option<Arc<Diff>>,
    error: Option<String>,
    view: watch::Sender<FoldView>,
    /// Throttling: the current period and the work done in it.
    paused: bool,
    last_publish: Instant,
}

impl FoldTask {
    async fn run(mut self, mut requests: watch::Receiver<FoldRequest>) {
        loop {
            let req = requests.borrow_and_update().clone();
            self.paused = req.throttle;
            if self.error.is_none() && !req.throttle {
                self.fold_towards(&req).await;
                self.work_out_diff(&req).await;
            }
            if requests.has_changed().unwrap_or(false) {
                continue;
            }
            if self.error.is_none() && !req.throttle && !self.reached(&req) {
                // A slice is done; publish now and then, go on.
                if self.last_publish.elapsed() >= PUBLISH {
                    self.publish();
                }
                continue;
            }
            self.publish();
            if requests.changed().await.is_err() {
                return;
            }
        }
    }

    fn publish(&mut self) {
        self.last_publish = Instant::now();
        self.view.send_replace(FoldView {
            state: self.tracker.state().clone(),
            through: self.through,
            diff: self.diff.clone(),
            error: self.error.clone(),
            paused: self.paused,
        });
    }

    /// The next offset the request wants folded (everything before it).
    fn wanted_next(&self, req: &FoldRequest) -> Option<u64> {
        req.through.map(|t| t + 1)
    }

    fn reached(&self, req: &FoldRequest) -> bool {
        let Some(want) = self.wanted_next(req) else {
            return true;
        };
        self.tracker.next_offset() >= want
            || self.buffer.front().is_some_and(|e| e.offset >= want)
            || (self.ended && self.buffer.is_empty())
    }

    fn open(&mut self, from: u64) -> Result<(), String> {
        self.buffer.clear();
        self.ended = false;
        let window = CreditWindow::new(WINDOW_BYTES);
        let stream = self
            .source
            .open(
                StreamRequest {
                    from,
                    until: None,
                    filter: self.filter.clone(),
                    batch_events: 256,
                    ..Default::default()
                },
                window.clone(),
            )
            .map_err(|e| e.to_string())?;
        self.stream = Some((stream, window));
        Ok(())
    }

    /// Folds towards the request, returning after a slice of work so that the latest request
    /// is used (a seek, or the player going back to full speed).
    async fn fold_towards(&mut self, req: &FoldRequest) {
        let Some(want) = self.wanted_next(req) else {
            return;
        };
        let next = self.tracker.next_offset();
        if want < next || want - next > self.jump {
            // Behind what is folded, or far ahead: from the nearest checkpoint or snapshot.
            let from_checkpoint = self
                .tracker
                .checkpoint_at_or_before(want)
                .map(|(at, _)| at)
                .filter(|_| want < next);
            let from_here = (want >= next).then_some(next);
            let best = from_checkpoint.or(from_here);
            match self.snapshot_before(want).await {
                Some((at, state)) if best.is_none_or(|b| at > b) => {
                    self.tracker.reset(at, state);
                }
                _ if want >= next => {}
                _ if from_checkpoint.is_some() => {
                    self.tracker.rewind_to(want);
                }
                // Before every checkpoint (they start at a snapshot): from the start.
                _ => self.tracker.reset(self.start.0, self.start.1.clone()),
            }
            if self.tracker.next_offset() != next {
                self.through = self.tracker.next_offset().checked_sub(1);
                self.last_diff = None;
                self.stream = None;
                self.buffer.clear();
                self.ended = false;
            }
        }
        let started = Instant::now();
        while !self.reached(req) {
            if started.elapsed() >= SLICE {
                return; // look at the latest request
            }
            if self.stream.is_none()
                && let Err(e) = self.open(self.tracker.next_offset())
            {
                self.error = Some(e);
                return;
            }
            let event = match self.buffer.pop_front() {
                Some(e) => e,
                None => {
                    let (stream, _) = self.stream.as_mut().expect("opened above");
                    match stream.recv().await {
                        Some(Ok(batch)) => {
                            self.buffer.extend(batch.events.into_iter().map(|(e, _)| e));
                        }
                        Some(Err(e)) => {
                            self.error = Some(format!("folding the state: {e}"));
                            return;
                        }
                        None => self.ended = true,
                    }
                    continue;
                }
            };
            if event.offset >= want {
                self.buffer.push_front(event);
                break;
            }
            self.last_diff = Some(Arc::new(self.tracker.apply(&event)));
            self.through = Some(event.offset);
            if let Some((_, window)) = &self.stream {
                window.ack(event.offset);
            }
            if self.last_publish.elapsed() >= PUBLISH {
                self.publish();
            }
        }
    }

    /// The state before the event at `offset` from the source's latest snapshot before it:
    /// `(offset, state)`; `None` when snapshots are not to be used or there is none.
    async fn snapshot_before(&mut self, offset: u64) -> Option<(u64, KvState)> {
        if !self.snapshots || offset <= self.start.0 {
            return None;
        }
        let agent = self.filter.agent.as_ref();
        match crate::inspect::state_at::snapshot_before(&self.source, offset - 1, agent).await {
            Ok(found) => found.map(|(through, state)| (through + 1, state)),
            Err(e) => {
                // Folding from a checkpoint or the start still gives the state.
                tracing::warn!("state snapshot before offset {offset}: {e}");
                None
            }
        }
    }

    /// The diff of `req.diff_of`, from the last event folded or by folding a copy from the
    /// checkpoint before it (when it is behind the folded position).
    async fn work_out_diff(&mut self, req: &FoldRequest) {
        let Some(d) = req.diff_of else {
            self.diff = None;
            return;
        };
        if self.diff.as_ref().is_some_and(|x| x.offset == d) {
            return;
        }
        if let Some(last) = self.last_diff.as_ref().filter(|x| x.offset == d) {
            self.diff = Some(last.clone());
            return;
        }
        if self.through.is_none_or(|t| d > t) {
            return; // not folded that far yet
        }
        let checkpoint = self.tracker.checkpoint_at_or_before(d);
        let (at, mut state) = match self.snapshot_before(d).await {
            Some((at, s)) if checkpoint.as_ref().is_none_or(|(c, _)| at > *c) => (at, s),
            _ => match checkpoint {
                Some(c) => c,
                None => self.start.clone(),
            },
        };
        let window = CreditWindow::new(WINDOW_BYTES);
        let stream = self.source.open(
            StreamRequest {
                from: at,
                until: Some(d),
                filter: self.filter.clone(),
                batch_events: 256,
                ..Default::default()
            },
            window.clone(),
        );
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("diff of offset {d}: {e}");
                return;
            }
        };
        while let Some(Ok(batch)) = stream.recv().await {
            for (e, _) in batch.events {
                if e.offset < d {
                    state.apply(&e);
                } else if e.offset == d {
                    self.diff = Some(Arc::new(state.apply(&e)));
                    return;
                }
                window.ack(e.offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Archive, ArchiveWriter, OpenOptions, WriterOptions};
    use crate::event::generate::{GenOptions, Generator};
    use crate::source::ArchiveSource;

    fn fold(evs: &[Event]) -> KvState {
        let mut s = KvState::new();
        for e in evs {
            s.apply(e);
        }
        s
    }

    async fn wait(f: &Folder, through: Option<u64>) -> FoldView {
        let mut v = f.view();
        let w = v.wait_for(|v| v.through == through || v.error.is_some());
        match tokio::time::timeout(Duration::from_secs(20), w).await {
            Ok(r) => r.unwrap().clone(),
            Err(_) => panic!(
                "not folded through {through:?}: at {:?}",
                f.view().borrow().through
            ),
        }
    }

    /// Asks for the state through `through` and checks it against a plain fold.
    async fn fold_and_check(f: &Folder, evs: &[Event], through: u64) {
        f.request(FoldRequest {
            through: Some(through),
            throttle: false,
            diff_of: None,
        });
        let v = wait(f, Some(through)).await;
        assert_eq!(
            v.state,
            fold(&evs[..=through as usize]),
            "through {through}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn folds_to_any_position_forward_and_back_and_works_out_diffs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mcap");
        let evs: Vec<Event> = Generator::new(GenOptions::default()).take(5000).collect();
        let mut w = ArchiveWriter::create(
            &path,
            WriterOptions {
                chunk_bytes: 32 * 1024,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        for e in &evs {
            w.append(e).unwrap();
        }
        w.finish().unwrap();
        let source: Arc<dyn Source> = Arc::new(ArchiveSource::new(
            Archive::open(&path, OpenOptions::default()).unwrap(),
        ));
        let f = Folder::spawn(source, Filter::default(), 0, KvState::new(), 500, 16);
        // Held off while the player ingests at full speed: nothing is folded.
        f.request(FoldRequest {
            through: Some(2999),
            throttle: true,
            diff_of: None,
        });
        let mut v = f.view();
        let held = tokio::time::timeout(Duration::from_secs(20), v.wait_for(|v| v.paused))
            .await
            .expect("held off")
            .unwrap()
            .clone();
        assert_eq!(held.through, None);
        for through in [2999u64, 4999, 1234, 0, 4000] {
            fold_and_check(&f, &evs, through).await;
        }
        // The diff of a transaction behind the folded position, and of the last one folded.
        for d in [1500u64, 4000, 17] {
            f.request(FoldRequest {
                through: Some(4000),
                throttle: false,
                diff_of: Some(d),
            });
            let mut v = f.view();
            let v = tokio::time::timeout(
                Duration::from_secs(20),
                v.wait_for(|v| v.diff.as_ref().is_some_and(|x| x.offset == d)),
            )
            .await
            .unwrap_or_else(|_| panic!("no diff of {d}"))
            .unwrap()
            .clone();
            let mut before = fold(&evs[..d as usize]);
            assert_eq!(
                *v.diff.unwrap(),
                before.apply(&evs[d as usize]),
                "diff of {d}"
            );
        }
    }

    /// A source that counts the events its streams deliver.
    struct Counting {
        inner: Arc<dyn Source>,
        read: Arc<std::sync::atomic::AtomicU64>,
    }

    impl Source for Counting {
        fn info(&self) -> &crate::source::SourceInfo {
            self.inner.info()
        }
        fn resolve(
            &self,
            pos: crate::event::Position,
            at_or_before: bool,
        ) -> Result<Option<u64>, crate::source::SourceError> {
            self.inner.resolve(pos, at_or_before)
        }
        fn open(
            &self,
            req: StreamRequest,
            window: CreditWindow,
        ) -> Result<BatchStream, crate::source::SourceError> {
            let mut rx = self.inner.open(req, window)?;
            let read = self.read.clone();
            let (tx, out) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if let Ok(b) = &b {
                        read.fetch_add(b.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    if tx.send(b).await.is_err() {
                        return;
                    }
                }
            });
            Ok(out)
        }
        fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]> {
            self.inner.chain_head_through(offset)
        }
        fn state_snapshot(
            &self,
            offset: u64,
        ) -> Result<Option<crate::archive::snapshot::Snapshot>, crate::source::SourceError>
        {
            self.inner.state_snapshot(offset)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seeks_far_away_start_from_the_nearest_state_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.mcap");
        let evs: Vec<Event> = Generator::new(GenOptions::default()).take(20_000).collect();
        let mut w = ArchiveWriter::create(
            &path,
            WriterOptions {
                snapshots: Some(crate::archive::snapshot::SnapshotPolicy {
                    every_events: 1000,
                    every_bytes: u64::MAX,
                    min_ratio: 1,
                }),
                ..WriterOptions::default()
            },
        )
        .unwrap();
        for e in &evs {
            w.append(e).unwrap();
        }
        assert!(w.finish().unwrap().snapshots >= 19);
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let source: Arc<dyn Source> = Arc::new(Counting {
            inner: Arc::new(ArchiveSource::new(
                Archive::open(&path, OpenOptions::default()).unwrap(),
            )),
            read: read.clone(),
        });
        // The player starts far in: the state is still the whole source's.
        let f = Folder::spawn(source, Filter::default(), 15_000, KvState::new(), 500, 16);
        let mut since = 0;
        for through in [18_500u64, 3_200, 12_345, 19_999, 700] {
            fold_and_check(&f, &evs, through).await;
            let now = read.load(std::sync::atomic::Ordering::Relaxed);
            // From the snapshot before it: at most a snapshot interval, and what the stream
            // reads ahead within its credit window (1 MiB, some 3,500 events), never the
            // thousands of events a fold from a checkpoint or the start would read.
            assert!(
                now - since <= 5000,
                "through {through}: read {} events",
                now - since
            );
            since = now;
        }
        // The diff of a transaction before every checkpoint, from a snapshot.
        f.request(FoldRequest {
            through: Some(19_999),
            throttle: false,
            diff_of: Some(9_876),
        });
        let mut v = f.view();
        let v = tokio::time::timeout(
            Duration::from_secs(20),
            v.wait_for(|v| v.diff.as_ref().is_some_and(|x| x.offset == 9_876)),
        )
        .await
        .expect("the diff is worked out")
        .unwrap()
        .clone();
        let mut before = fold(&evs[..9_876]);
        assert_eq!(*v.diff.unwrap(), before.apply(&evs[9_876]));
    }
}
