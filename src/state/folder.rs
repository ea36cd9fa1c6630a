//! The inspector's state, folded off the player's path. The player only plays; a folder task
//! reads the same source on its own stream and folds it up to wherever it is asked (the
//! player's cursor), keeping checkpoints, so seeks and steps back rewind cheaply. While the
//! player ingests at full speed the folder is throttled to a small share of one core (state
//! freshness is traded for ingestion, and the UI says how far behind the state is); when the
//! player pauses, finishes or plays slowly it folds at full speed. It also works out the diff of
//! any one transaction on request (from the nearest checkpoint), for the selected row.

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
        let (requests, rx) = watch::channel(FoldRequest::default());
        let (view_tx, view) = watch::channel(FoldView {
            state: initial.clone(),
            ..FoldView::default()
        });
        let task = FoldTask {
            source,
            filter,
            tracker: StateTracker::new(from, initial, checkpoint_every, max_checkpoints),
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
        if want < self.tracker.next_offset() {
            // Behind what is folded: back to the checkpoint before it.
            let at = self.tracker.rewind_to(want);
            self.through = at.checked_sub(1);
            self.last_diff = None;
            self.stream = None;
            self.buffer.clear();
            self.ended = false;
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
        let Some((at, mut state)) = self.tracker.checkpoint_at_or_before(d) else {
            return;
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
            f.request(FoldRequest {
                through: Some(through),
                throttle: false,
                diff_of: None,
            });
            let v = wait(&f, Some(through)).await;
            assert_eq!(
                v.state,
                fold(&evs[..=through as usize]),
                "through {through}"
            );
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
}
