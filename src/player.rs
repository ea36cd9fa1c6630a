//! The player: reads batches from a [`Source`] through a credit window, paces them, keeps the
//! materialized state, and hands each played event to a [`Sink`]. Commands go in through a
//! [`PlayerHandle`]; stats snapshots come out through a watch channel. The TUI, the headless
//! `play` command and the sinks all drive this same player. No terminal or network types here.

pub mod pace;
pub mod stats;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::event::{Event, Position, hex};
use crate::flow::{CreditWindow, ReplayRing, RingItem};
use crate::source::{BatchStream, Filter, Source, SourceError, StreamRequest};
use crate::state::{Diff, KvState, StateTracker};

pub use pace::{Pace, Pacer};
pub use stats::{LagHistogram, Outcome, PlayState, RateMeter, Report, Stats};

/// Credit window between a source and the player. Counted in encoded bytes; decoded events take
/// several times that in memory, so the client side keeps it well below the server's 64 MiB.
pub const DEFAULT_PLAYER_WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// Replay ring of the player (recently received events, for the ring gauge and step back).
pub const DEFAULT_PLAYER_RING_BYTES: u64 = 8 * 1024 * 1024;

/// How to play.
#[derive(Debug, Clone)]
pub struct PlayerOptions {
    pub pace: Pace,
    /// Cap on idle gaps between events (Realtime).
    pub max_gap: Option<Duration>,
    /// Logical time per commit_ts unit where events have no wall-clock time.
    pub tick: Duration,
    /// First offset (default: the source's first).
    pub from: Option<u64>,
    /// Last offset, inclusive (default: the source's last).
    pub until: Option<u64>,
    pub filter: Filter,
    pub window_bytes: u64,
    pub ring_bytes: u64,
    pub batch_events: usize,
    /// Check the source's hash chain over what is played (chunk CRCs are always checked).
    pub chain: crate::source::ChainCheck,
    /// Keep the materialized state (and checkpoints) as events are played.
    pub track_state: bool,
    /// State to start from (with `track_state`).
    pub bootstrap: KvState,
    pub checkpoint_every: u64,
    pub max_checkpoints: usize,
    pub start_paused: bool,
    pub stats_interval: Duration,
    /// Meet deadlines more precisely than tokio's 1 ms timer: sleep on the timer until about a
    /// millisecond before, then block the thread for the rest (a short sleep and a spin of at
    /// most ~100 µs). Off on tokio's paused test clock, which only moves when tasks are idle.
    pub precise_timing: bool,
    /// End the player task when a run finishes or stops (headless); otherwise wait for commands.
    pub exit_when_done: bool,
    /// Follow the source as it grows ([`Source::can_follow`]): at its end the player is CAUGHT
    /// UP and plays what lands next as it lands; the run ends only at `until` or on a stop.
    pub follow: bool,
    /// Pause right after playing the event at each of these offsets (markers,
    /// `--pause-at-markers`); ascending.
    pub pause_at: Vec<u64>,
    /// Play the range again at its end (`--loop`).
    pub loops: Loops,
}

/// How many times the range is played (`--loop [N]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loops {
    #[default]
    Once,
    Times(u64),
    Forever,
}

impl Loops {
    /// Whether another pass follows the `done`-th one.
    fn again_after(self, done: u64) -> bool {
        match self {
            Loops::Once => false,
            Loops::Times(n) => done < n,
            Loops::Forever => true,
        }
    }
}

impl Default for PlayerOptions {
    fn default() -> Self {
        PlayerOptions {
            pace: Pace::Fast,
            max_gap: None,
            tick: Duration::from_millis(10),
            from: None,
            until: None,
            filter: Filter::default(),
            window_bytes: DEFAULT_PLAYER_WINDOW_BYTES,
            ring_bytes: DEFAULT_PLAYER_RING_BYTES,
            batch_events: 256,
            chain: crate::source::ChainCheck::Verify,
            track_state: false,
            bootstrap: KvState::new(),
            checkpoint_every: 1000,
            max_checkpoints: 256,
            start_paused: false,
            stats_interval: Duration::from_millis(100),
            precise_timing: true,
            exit_when_done: true,
            follow: false,
            pause_at: Vec::new(),
            loops: Loops::Once,
        }
    }
}

/// Where to seek.
#[derive(Debug, Clone, PartialEq)]
pub enum SeekTarget {
    /// An offset, `@commit_ts` or wall time: the first event at or after it plays next.
    Position(Position),
    /// A share of the range (0–100).
    Percent(f64),
    /// Events forward (+) or back (−) from the current event (the last played, or the target
    /// of a seek still under way, so that presses in a row add up).
    Relative(i64),
    /// Points of the range forward (+) or back (−) from the current event (as `Relative`).
    RelativePercent(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Pause,
    Resume,
    TogglePause,
    /// Play the next N events now, then stay paused.
    Step(u64),
    /// Go back N events (the event N before the current one becomes current), paused.
    StepBack(u64),
    Seek(SeekTarget),
    SetPace(Pace),
    /// One step faster (true) or slower along the speed ladder ([`Pace::stepped`]), from the
    /// pace as it is when the command is handled (so presses in a row add up).
    StepPace(bool),
    /// The next pace of the cycle ([`Pace::cycled`]).
    CyclePace,
    /// Realtime at this speed.
    SetSpeed(f64),
    /// End the run early; the report says where to resume.
    Stop,
    /// Start a new run from this offset.
    ResumeFrom(u64),
    /// Play `a` to `b` (offsets, inclusive) over and over (the inspector's A-B loop); `None`
    /// ends the loop.
    SetLoop(Option<(u64, u64)>),
    /// End the player.
    Quit,
}

/// A sink could not take an event; the run stops with this message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    /// The output's reader went away (a closed pipe): stop quietly.
    pub closed: bool,
    /// The first offset the target did not take (a sink that writes behind the player may
    /// fail on an event played a while ago): a later run resumes from here.
    pub resume_offset: Option<u64>,
}

impl SinkError {
    pub fn new(message: impl Into<String>) -> SinkError {
        SinkError {
            message: message.into(),
            closed: false,
            resume_offset: None,
        }
    }
}

/// One played event, as a sink sees it.
pub struct Played<'a> {
    pub event: &'a Arc<Event>,
    /// Encoded size in bytes.
    pub size: u32,
    /// What it changed (when the state is tracked).
    /// (Shared: a sink keeps it without copying.)
    pub diff: Option<&'a Arc<Diff>>,
    /// The state after it (when tracked).
    pub state: Option<&'a KvState>,
    /// When it was due (None: at once — fast pace, a step or a seek).
    pub due: Option<Instant>,
    pub lag: Duration,
}

/// Where played events go.
pub trait Sink: Send {
    fn played(&mut self, played: &Played<'_>) -> Result<(), SinkError>;
    /// The player moved (seek, step back, resume-from): `next_offset` plays next; `state` is the
    /// state before it (when tracked).
    fn repositioned(&mut self, _next_offset: u64, _state: Option<&KvState>) {}
    /// Whether the sink takes another event now. A sink that writes to its target behind the
    /// player (a network service) returns `Pending` while its queue is full: the player waits,
    /// so a slow target holds the pace back (and shows as lag) instead of piling up events. An
    /// error ends the run.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }
    /// Everything handed over so far is in the target. The player waits for this before it
    /// ends a run, so that "finished" means the target has every event and a failure on the
    /// last ones is the run's failure.
    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }
    /// A run ended (finished, stopped or failed); `state` is the state it played to (when
    /// tracked).
    fn run_ended(&mut self, _report: &Report, _state: Option<&KvState>) {}
    /// The player is about to wait (for a deadline, data or a command): a sink that batches
    /// hands over what it holds. `state` is the state now (when tracked); a sink that keeps it
    /// should clone it here rather than per event: holding a clone makes the next change copy
    /// the nodes it touches.
    fn idle(&mut self, _state: Option<&KvState>) {}
    /// Called when the player ends; flush here.
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A boxed sink is a sink (the inspector and tests hand the player `Box<dyn Sink>`).
impl<S: Sink + ?Sized> Sink for Box<S> {
    fn played(&mut self, played: &Played<'_>) -> Result<(), SinkError> {
        (**self).played(played)
    }
    fn repositioned(&mut self, next_offset: u64, state: Option<&KvState>) {
        (**self).repositioned(next_offset, state)
    }
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        (**self).poll_ready(cx)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        (**self).poll_flush(cx)
    }
    fn run_ended(&mut self, report: &Report, state: Option<&KvState>) {
        (**self).run_ended(report, state)
    }
    fn idle(&mut self, state: Option<&KvState>) {
        (**self).idle(state)
    }
    fn close(&mut self) -> Result<(), SinkError> {
        (**self).close()
    }
}

/// A sink that drops everything (benchmarks, dry runs).
pub struct NullSink;

impl Sink for NullSink {
    fn played(&mut self, _: &Played<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Invalid(String),
    #[error("output: {0}")]
    Output(SinkError),
}

/// What a player hands back when it ends: the last run's report, its sink (to finish or read
/// what the target took) and the state it played to (when tracked).
pub struct Ended<S> {
    pub report: Report,
    pub sink: S,
    pub state: Option<KvState>,
}

/// Controls a running player.
pub struct PlayerHandle<S> {
    commands: mpsc::UnboundedSender<Command>,
    stats: watch::Receiver<Stats>,
    task: tokio::task::JoinHandle<Result<Ended<S>, PlayerError>>,
}

impl<S> PlayerHandle<S> {
    pub fn send(&self, c: Command) {
        // The player may have ended already; then there is nothing to command.
        let _ = self.commands.send(c);
    }

    pub fn commander(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    pub fn stats(&self) -> watch::Receiver<Stats> {
        self.stats.clone()
    }

    /// Waits for the player to end; returns the last run's report, the sink and the state.
    pub async fn join_with_sink(self) -> Result<Ended<S>, PlayerError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(PlayerError::Invalid(format!("player task failed: {e}"))),
        }
    }

    /// Waits for the player to end and returns the last run's report.
    pub async fn join(self) -> Result<Report, PlayerError> {
        self.join_with_sink().await.map(|e| e.report)
    }
}

#[derive(Debug, Clone)]
struct RingEntry(Arc<Event>, u32);

impl RingItem for RingEntry {
    fn offset(&self) -> u64 {
        self.0.offset
    }
    fn size(&self) -> u64 {
        self.1 as u64
    }
}

/// Statistics of one run (start or resume-from to finish or stop).
struct Run {
    started: Instant,
    events: u64,
    bytes: u64,
    first: Option<u64>,
    last: Option<u64>,
    /// The chain head after the last event played, when known.
    chain_head: Option<[u8; 32]>,
    /// The highest offset played, and how many events were played again at or below it.
    highest: Option<u64>,
    replayed: u64,
    lags: LagHistogram,
    failures: u64,
}

impl Run {
    fn new(now: Instant) -> Run {
        Run {
            started: now,
            events: 0,
            bytes: 0,
            first: None,
            last: None,
            chain_head: None,
            highest: None,
            replayed: 0,
            lags: LagHistogram::default(),
            failures: 0,
        }
    }
}

/// Starts the player on the current tokio runtime.
pub fn spawn<S: Sink + 'static>(
    source: Arc<dyn Source>,
    options: PlayerOptions,
    sink: S,
) -> Result<PlayerHandle<S>, PlayerError> {
    let info = source.info().clone();
    let first = info.first_offset.unwrap_or(0);
    let from = options.from.unwrap_or(first);
    if options.follow && !source.can_follow() {
        return Err(PlayerError::Invalid(format!(
            "{}: this source cannot be followed",
            info.name
        )));
    }
    let until = match (options.until, info.last_offset) {
        // A followed source grows past its last offset.
        (u, _) if options.follow => u,
        (Some(u), Some(l)) => Some(u.min(l)),
        (u, l) => u.or(l),
    };
    if let (Some(u), true) = (until, info.last_offset.is_some() || options.follow)
        && u < from
    {
        return Err(PlayerError::Invalid(format!(
            "{}: the range is empty: --until resolves to offset {u}, before --from offset {from}",
            info.name
        )));
    }
    let now = Instant::now();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let pacer = Pacer::new(options.pace, options.max_gap, options.tick, now);
    let initial = Stats {
        state: if options.start_paused {
            PlayState::Paused
        } else {
            PlayState::Playing
        },
        reason: None,
        pace: pacer.pace(),
        logical_time: !info.has_wall_time(),
        position: None,
        next_offset: from,
        time_ns: None,
        events_played: 0,
        bytes_played: 0,
        rate: 0.0,
        rate_history: Vec::new(),
        target_rate: pacer.target_rate(),
        lag: Duration::ZERO,
        max_lag: Duration::ZERO,
        credit: Default::default(),
        ring: Default::default(),
        failures: 0,
        buffered: 0,
        source_status: None,
        following: options.follow,
        head_offset: source.head(),
        commit_age: None,
        at_marker: None,
        marker_pauses: 0,
        passes: 0,
        ab_loop: None,
    };
    let (stats_tx, stats_rx) = watch::channel(initial.clone());
    let tracker = options.track_state.then(|| {
        StateTracker::new(
            from,
            options.bootstrap.clone(),
            options.checkpoint_every,
            options.max_checkpoints,
        )
    });
    let mut player = Player {
        source,
        ring: ReplayRing::new(options.ring_bytes),
        window: CreditWindow::new(options.window_bytes),
        stream: None,
        stream_ended: false,
        buffer: VecDeque::new(),
        pending_target: None,
        state: initial.state,
        reason: None,
        tracker,
        silent_until: None,
        pending_steps: 0,
        run: Run::new(now),
        meter: RateMeter::default(),
        total_events: 0,
        total_bytes: 0,
        next_offset: from,
        position: None,
        time_ns: None,
        last_lag: Duration::ZERO,
        max_lag: Duration::ZERO,
        failures: 0,
        first: from,
        until,
        pacer,
        sink,
        stats: stats_tx,
        options,
        last_report: None,
        integrity_failure: false,
        output_closed: false,
        sink_blocked: false,
        sink_failed: false,
        report_due: false,
        resume_override: None,
        caught_up: false,
        ab_loop: None,
        passes: 0,
        at_marker: None,
        marker_pauses: 0,
    };
    player.open_stream(from)?;
    let task = tokio::spawn(async move { player.run(cmd_rx).await });
    Ok(PlayerHandle {
        commands: cmd_tx,
        stats: stats_rx,
        task,
    })
}

struct Player<S> {
    source: Arc<dyn Source>,
    options: PlayerOptions,
    sink: S,
    pacer: Pacer,
    window: CreditWindow,
    stream: Option<BatchStream>,
    stream_ended: bool,
    /// Where a reposition is going, until its target event is played (so that relative moves in
    /// a row add up instead of all starting from the same stale position).
    pending_target: Option<u64>,
    /// Events to play, with the chain head after each (when the source computed it).
    buffer: VecDeque<(Arc<Event>, u32, Option<[u8; 32]>)>,
    ring: ReplayRing<RingEntry>,
    state: PlayState,
    reason: Option<String>,
    tracker: Option<StateTracker>,
    /// Events before this offset are folded into the state without being played (a seek).
    silent_until: Option<u64>,
    pending_steps: u64,
    run: Run,
    meter: RateMeter,
    total_events: u64,
    total_bytes: u64,
    next_offset: u64,
    position: Option<u64>,
    time_ns: Option<u64>,
    last_lag: Duration,
    max_lag: Duration,
    failures: u64,
    first: u64,
    until: Option<u64>,
    stats: watch::Sender<Stats>,
    last_report: Option<Report>,
    integrity_failure: bool,
    output_closed: bool,
    /// The sink said it cannot take another event yet.
    sink_blocked: bool,
    /// The sink failed in this run (its error is the run's reason).
    sink_failed: bool,
    /// A run ended and its report is made once the sink has flushed.
    report_due: bool,
    /// Where a later run resumes when the sink failed behind the player.
    resume_override: Option<u64>,
    /// A followed source said it has delivered everything it knows of.
    caught_up: bool,
    /// The A-B loop, when set.
    ab_loop: Option<(u64, u64)>,
    /// Passes over the range finished (`--loop`).
    passes: u64,
    /// The marker offset the player last paused at (`pause_at`), and how many times it did.
    at_marker: Option<u64>,
    marker_pauses: u64,
}

enum Wake {
    Command(Option<Command>),
    Batch(Option<Result<crate::source::Batch, SourceError>>),
    SinkReady(Result<(), SinkError>),
    Due,
    Stats,
}

async fn next_batch(
    stream: &mut Option<BatchStream>,
) -> Option<Result<crate::source::Batch, SourceError>> {
    match stream.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Events emitted per loop iteration before commands are looked at again.
const EMIT_BUDGET: usize = 2048;

/// With precise timing, the last stretch before a deadline is waited on the thread.
const PRECISE_WINDOW: Duration = Duration::from_micros(1500);
/// The final stretch is spun (thread sleeps overshoot by ~50-100 µs).
const SPIN_WINDOW: Duration = Duration::from_micros(120);

/// Blocks the thread until `deadline` (at most `PRECISE_WINDOW` away): sleeps, then spins.
fn wait_precisely(deadline: Instant) {
    let deadline = deadline.into_std();
    loop {
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN_WINDOW {
            std::thread::sleep(left - SPIN_WINDOW);
        } else {
            std::hint::spin_loop();
        }
    }
}

impl<S: Sink> Player<S> {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Result<Ended<S>, PlayerError> {
        let mut stats_tick = tokio::time::interval(self.options.stats_interval);
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        loop {
            // Play whatever is due now.
            let mut due = None;
            let mut budget = EMIT_BUDGET;
            self.sink_blocked = false;
            while budget > 0 && self.can_emit() {
                let silent = self.is_silent_front();
                let deadline = if silent || self.pending_steps > 0 {
                    None
                } else {
                    let (front, _, _) = self.buffer.front().expect("can_emit checked the buffer");
                    self.pacer.deadline(front)
                };
                if let Some(d) = deadline
                    && d > Instant::now()
                {
                    if self.options.precise_timing && d - Instant::now() <= PRECISE_WINDOW {
                        wait_precisely(d);
                    } else {
                        due = Some(if self.options.precise_timing {
                            d - PRECISE_WINDOW
                        } else {
                            d
                        });
                        break;
                    }
                }
                if !silent && !self.sink_is_ready() {
                    break;
                }
                self.emit_front(deadline);
                budget -= 1;
            }
            if budget == 0 {
                // More is due: look at commands first, then come straight back.
                due = Some(Instant::now());
            }
            self.check_finished();
            if self.report_due {
                self.complete_run().await;
            }
            if self.state_is_done() && self.options.exit_when_done {
                break;
            }
            let wants_data = self.wants_data();
            self.sink.idle(self.tracker.as_ref().map(|t| t.state()));
            let wake = tokio::select! {
                biased;
                c = commands.recv(), if commands_open => Wake::Command(c),
                b = next_batch(&mut self.stream), if wants_data => Wake::Batch(b),
                r = std::future::poll_fn(|cx| self.sink.poll_ready(cx)), if self.sink_blocked => Wake::SinkReady(r),
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Wake::Due,
                _ = stats_tick.tick() => Wake::Stats,
            };
            match wake {
                Wake::Command(Some(Command::Quit)) => break,
                Wake::Command(Some(c)) => {
                    self.handle(c);
                    self.publish();
                }
                Wake::Command(None) => commands_open = false,
                Wake::Batch(b) => self.on_batch(b),
                Wake::SinkReady(Ok(())) => {}
                Wake::SinkReady(Err(e)) => self.on_sink_error(e),
                Wake::Due => {}
                Wake::Stats => self.publish(),
            }
        }
        if (self.last_report.is_none() && !self.report_due) || !self.state_is_done() {
            self.end_run(PlayState::Stopped, Some("player closed".to_string()));
        }
        if self.report_due {
            self.complete_run().await;
        }
        self.publish();
        let report = self.last_report.clone().expect("end_run stores a report");
        match self.sink.close() {
            Err(e) if !e.closed && !report.output_closed => Err(PlayerError::Output(e)),
            _ => Ok(Ended {
                report,
                state: self.tracker.map(|t| t.state().clone()),
                sink: self.sink,
            }),
        }
    }

    fn state_is_done(&self) -> bool {
        matches!(self.state, PlayState::Finished | PlayState::Stopped)
    }

    fn is_silent_front(&self) -> bool {
        match (self.silent_until, self.buffer.front()) {
            (Some(s), Some((e, _, _))) => e.offset < s,
            _ => false,
        }
    }

    fn can_emit(&self) -> bool {
        !self.buffer.is_empty()
            && (self.is_silent_front()
                || self.pending_steps > 0
                || matches!(self.state, PlayState::Playing | PlayState::Seeking))
    }

    fn wants_data(&self) -> bool {
        self.stream.is_some()
            && !self.stream_ended
            && self.buffer.len() < self.options.batch_events.max(1) * 2
            && !self.state_is_done()
    }

    fn open_stream(&mut self, from: u64) -> Result<(), SourceError> {
        self.window.cancel();
        self.window = CreditWindow::new(self.options.window_bytes);
        self.stream = None;
        self.buffer.clear();
        let past_end = (!self.options.follow
            && self.source.info().last_offset.is_none_or(|l| from > l))
            || self.until.is_some_and(|u| from > u);
        if past_end {
            self.stream_ended = true;
            return Ok(());
        }
        let stream = self.source.open(
            StreamRequest {
                from,
                until: self.until,
                filter: self.options.filter.clone(),
                batch_events: self.options.batch_events,
                chain: self.options.chain,
                follow: self.options.follow,
                ..Default::default()
            },
            self.window.clone(),
        )?;
        self.stream = Some(stream);
        self.stream_ended = false;
        self.caught_up = false;
        Ok(())
    }

    fn on_batch(&mut self, b: Option<Result<crate::source::Batch, SourceError>>) {
        match b {
            Some(Ok(batch)) => {
                // The first event after being caught up plays as it lands: the schedule starts
                // again at it instead of at the commit before the wait.
                if self.caught_up && self.buffer.is_empty() && !batch.events.is_empty() {
                    self.pacer.reanchor_now(Instant::now());
                }
                self.caught_up = batch.caught_up;
                self.ring.push(
                    batch
                        .events
                        .iter()
                        .map(|(e, s)| RingEntry(e.clone(), *s))
                        .collect::<Vec<_>>(),
                );
                let mut heads = batch.heads.into_iter();
                let known = heads.len() == batch.events.len();
                self.buffer.extend(
                    batch
                        .events
                        .into_iter()
                        .map(|(e, size)| (e, size, heads.next().filter(|_| known))),
                );
            }
            Some(Err(e)) => {
                self.failures += 1;
                self.run.failures += 1;
                self.integrity_failure = e.is_integrity();
                self.stream = None;
                self.stream_ended = true;
                tracing::error!("source failed: {e}");
                self.end_run(PlayState::Stopped, Some(format!("source failed: {e}")));
            }
            None => {
                self.stream = None;
                self.stream_ended = true;
            }
        }
    }

    fn check_finished(&mut self) {
        if self.stream_ended
            && self.buffer.is_empty()
            && matches!(
                self.state,
                PlayState::Playing | PlayState::Seeking | PlayState::Paused
            )
            && self.silent_until.is_none_or(|s| s <= self.next_offset)
            && self.last_report.is_none()
            && !self.report_due
        {
            if self.state == PlayState::Paused && self.pending_steps == 0 {
                // Paused at the very end: nothing more to play, but it is the user's pause.
                return;
            }
            // `--loop`: the range again, in the same run.
            if self.options.loops.again_after(self.passes + 1)
                && self.state == PlayState::Playing
                && self.reposition(self.first).is_ok()
            {
                self.passes += 1;
                return;
            }
            self.pending_steps = 0;
            self.end_run(PlayState::Finished, None);
        }
    }

    fn emit_front(&mut self, deadline: Option<Instant>) {
        let Some((event, size, head)) = self.buffer.pop_front() else {
            return;
        };
        let silent = self.silent_until.is_some_and(|s| event.offset < s);
        let diff = self.tracker.as_mut().map(|t| Arc::new(t.apply(&event)));
        self.next_offset = event.offset + 1;
        self.window.ack(event.offset);
        if silent {
            return;
        }
        if self.silent_until.is_some() {
            self.silent_until = None;
            if self.state == PlayState::Seeking {
                self.state = PlayState::Playing;
            }
        }
        self.pending_target = None;
        let now = Instant::now();
        let lag = deadline.map_or(Duration::ZERO, |d| now.saturating_duration_since(d));
        if deadline.is_some() {
            self.run.lags.record(lag);
        }
        self.last_lag = lag;
        self.max_lag = self.max_lag.max(lag);
        self.pacer.played(&event);
        self.meter.count(now);
        self.run.events += 1;
        self.run.bytes += size as u64;
        self.run.first.get_or_insert(event.offset);
        self.run.last = Some(event.offset);
        self.run.chain_head = head;
        if self.run.highest.is_some_and(|h| event.offset <= h) {
            self.run.replayed += 1;
        }
        self.run.highest = self.run.highest.max(Some(event.offset));
        self.total_events += 1;
        self.total_bytes += size as u64;
        self.position = Some(event.offset);
        self.time_ns = Some(self.pacer.event_time(&event));
        if self.pending_steps > 0 {
            self.pending_steps -= 1;
        }
        let played = Played {
            event: &event,
            size,
            diff: diff.as_ref(),
            state: self.tracker.as_ref().map(|t| t.state()),
            due: deadline,
            lag,
        };
        if let Err(e) = self.sink.played(&played) {
            self.on_sink_error(e);
        }
        // A marker: pause right after it (its event is the one shown).
        if self.state == PlayState::Playing
            && self.options.pause_at.binary_search(&event.offset).is_ok()
        {
            self.state = PlayState::Paused;
            self.at_marker = Some(event.offset);
            self.marker_pauses += 1;
        }
        // The A-B loop: past B, back to A.
        if let Some((a, b)) = self.ab_loop
            && event.offset >= b
            && self.state == PlayState::Playing
            && self.reposition(a).is_err()
        {
            self.ab_loop = None;
        }
    }

    /// Asks the sink (without waiting) whether it takes another event; when it does not, the
    /// loop waits for it.
    fn sink_is_ready(&mut self) -> bool {
        match self
            .sink
            .poll_ready(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(e)) => {
                self.on_sink_error(e);
                false
            }
            Poll::Pending => {
                self.sink_blocked = true;
                false
            }
        }
    }

    fn on_sink_error(&mut self, e: SinkError) {
        if self.sink_failed {
            return;
        }
        self.sink_failed = true;
        if e.closed {
            // The reader went away (`play | head`): the run stops, it did not fail.
            self.output_closed = true;
            if e.resume_offset.is_some() {
                self.resume_override = e.resume_offset;
            }
            let reason = "output closed by the reader".to_string();
            if self.state_is_done() {
                self.state = PlayState::Stopped;
                self.reason = Some(reason);
            } else {
                self.end_run(PlayState::Stopped, Some(reason));
            }
            return;
        }
        self.failures += 1;
        self.run.failures += 1;
        if e.resume_offset.is_some() {
            self.resume_override = e.resume_offset;
        }
        if self.state_is_done() {
            // The run was ending already (its report waits for the flush that failed).
            self.state = PlayState::Stopped;
            self.reason = Some(format!("output failed: {e}"));
        } else {
            self.end_run(PlayState::Stopped, Some(format!("output failed: {e}")));
        }
    }

    fn handle(&mut self, c: Command) {
        // What was paused at a marker is shown until the player moves on.
        if !matches!(
            c,
            Command::SetPace(_)
                | Command::StepPace(_)
                | Command::CyclePace
                | Command::SetSpeed(_)
                | Command::SetLoop(_)
        ) {
            self.at_marker = None;
        }
        tracing::debug!(
            command = ?c,
            state = ?self.state,
            buffered = self.buffer.len(),
            next = self.next_offset,
            "player command"
        );
        let now = Instant::now();
        match c {
            Command::Pause => {
                if self.state == PlayState::Playing {
                    self.state = PlayState::Paused;
                }
            }
            Command::Resume => self.resume(now),
            Command::TogglePause => match self.state {
                PlayState::Playing => self.state = PlayState::Paused,
                PlayState::Paused => self.resume(now),
                _ => {}
            },
            Command::Step(n) => {
                if self.state == PlayState::Playing {
                    self.state = PlayState::Paused;
                }
                if self.state == PlayState::Paused {
                    self.pending_steps += n;
                }
            }
            Command::StepBack(n) => {
                let current = self.current();
                let target = current.saturating_sub(n).max(self.first);
                if self.state_is_done() {
                    self.last_report = None;
                }
                self.state = PlayState::Paused;
                self.pending_steps = 0;
                if self.reposition(target).is_ok() {
                    self.pending_steps = 1;
                }
            }
            Command::Seek(target) => match self.resolve(target) {
                Ok(offset) => {
                    if self.state_is_done() {
                        self.last_report = None;
                        self.state = PlayState::Paused;
                    }
                    let _ = self.reposition(offset);
                }
                Err(e) => {
                    self.reason = Some(e);
                }
            },
            Command::SetPace(p) => {
                self.pacer.set_pace(p, now);
                self.meter.reset_rate();
            }
            Command::StepPace(up) => {
                let p = self.pacer.pace().stepped(up);
                self.pacer.set_pace(p, now);
                self.meter.reset_rate();
            }
            Command::CyclePace => {
                let p = self.pacer.pace().cycled();
                self.pacer.set_pace(p, now);
                self.meter.reset_rate();
            }
            Command::SetSpeed(x) => {
                self.pacer.set_pace(Pace::Realtime { speed: x }, now);
            }
            Command::Stop => {
                if !self.state_is_done() {
                    self.end_run(PlayState::Stopped, Some("stopped by the user".to_string()));
                }
            }
            Command::SetLoop(ab) => {
                self.ab_loop = ab.filter(|(a, b)| a <= b);
            }
            Command::ResumeFrom(offset) => {
                self.last_report = None;
                self.run = Run::new(now);
                self.state = PlayState::Playing;
                self.reason = None;
                if let Err(e) = self.reposition(offset) {
                    self.end_run(PlayState::Stopped, Some(e.to_string()));
                }
            }
            Command::Quit => {}
        }
    }

    fn resume(&mut self, now: Instant) {
        self.at_marker = None;
        if self.state == PlayState::Paused {
            self.state = PlayState::Playing;
            self.pending_steps = 0;
            self.pacer.reanchor_continue(now);
        }
    }

    /// A seek target as the offset that plays next.
    fn resolve(&self, target: SeekTarget) -> Result<u64, String> {
        let info = self.source.info();
        // A followed source reaches as far as its head now.
        let last = if self.options.follow {
            self.source.head()
        } else {
            info.last_offset
        };
        let first = info
            .first_offset
            .or(self.options.follow.then_some(self.first));
        let (Some(first), Some(last)) = (first, last) else {
            return Err("the source is empty".to_string());
        };
        let first = first.max(self.first);
        let last = self.until.map_or(last, |u| u.min(last));
        match target {
            SeekTarget::Position(p) => match self.source.resolve(p.clone(), false) {
                Ok(Some(o)) if o <= last => Ok(o.max(first)),
                Ok(_) => Err(format!(
                    "{p} is past the end of the range (offsets {first} to {last})"
                )),
                Err(e) => Err(e.to_string()),
            },
            SeekTarget::Percent(pct) => {
                if !(0.0..=100.0).contains(&pct) {
                    return Err(format!("{pct}% is not between 0 and 100"));
                }
                let span = (last - first) as f64;
                Ok(first + (span * pct / 100.0).round() as u64)
            }
            SeekTarget::Relative(d) => {
                let current = self.current() as i128;
                Ok((current + d as i128).clamp(first as i128, last as i128) as u64)
            }
            SeekTarget::RelativePercent(d) => {
                let span = (last - first).max(1) as f64;
                let now = (self.current().saturating_sub(first)) as f64 / span * 100.0;
                let pct = (now + d).clamp(0.0, 100.0);
                Ok((first + ((last - first) as f64 * pct / 100.0).round() as u64).min(last))
            }
        }
    }

    /// The current event: the target of a reposition still under way (its events before the
    /// target are being folded silently), else the last one played.
    fn current(&self) -> u64 {
        self.pending_target
            .or(self.position)
            .unwrap_or(self.next_offset.max(self.first))
    }

    /// Moves so that `target` plays next, folding the state up to it (from the nearest
    /// checkpoint) when the state is tracked.
    fn reposition(&mut self, target: u64) -> Result<(), SourceError> {
        let start = match self.tracker.as_mut() {
            // The tracked state is the fold through `next_offset - 1`: fold on from there.
            Some(t) if target >= t.next_offset() => t.next_offset(),
            Some(t) => t.rewind_to(target),
            None => target,
        };
        self.pending_steps = 0;
        self.open_stream(start)?;
        self.pending_target = Some(target);
        self.silent_until = (start < target).then_some(target);
        if self.silent_until.is_some() && self.state == PlayState::Playing {
            self.state = PlayState::Seeking;
        }
        self.next_offset = target;
        self.pacer.reanchor_now(Instant::now());
        self.meter.reset_rate();
        let state = if start == target {
            self.tracker.as_ref().map(|t| t.state())
        } else {
            None
        };
        self.sink.repositioned(target, state);
        Ok(())
    }

    /// Ends the run: nothing more is played; the report is made by [`Player::complete_run`]
    /// once the sink has flushed.
    fn end_run(&mut self, state: PlayState, reason: Option<String>) {
        self.state = state;
        self.reason = reason;
        self.pending_steps = 0;
        self.window.cancel();
        if state == PlayState::Stopped {
            self.stream = None;
        }
        self.report_due = true;
    }

    /// Waits for the sink to hand everything to its target, then makes the run's report.
    async fn complete_run(&mut self) {
        self.report_due = false;
        let flushed = std::future::poll_fn(|cx| self.sink.poll_flush(cx)).await;
        if let Err(e) = flushed {
            self.on_sink_error(e);
            self.report_due = false;
        }
        let now = Instant::now();
        let state = self.state;
        let reason = self.reason.clone();
        let duration = now.duration_since(self.run.started);
        let integrity = std::mem::take(&mut self.integrity_failure);
        let outcome = match (state, self.run.failures) {
            (PlayState::Finished, 0) => Outcome::Finished,
            (_, f) if f > 0 => Outcome::Failed { integrity },
            _ => Outcome::Stopped,
        };
        // Computed from the bytes the played events came from (None where the source could
        // not compute it: verification off, a filtered remote stream, a Statehouse daemon).
        let final_hash = self.run.chain_head.map(|h| hex(&h));
        let report = Report {
            source: self.source.info().name.clone(),
            outcome,
            reason,
            events_sent: self.run.events,
            events_replayed: self.run.replayed,
            failures: self.run.failures,
            bytes: self.run.bytes,
            duration_ms: duration.as_millis() as u64,
            first_offset: self.run.first,
            last_offset: self.run.last,
            next_offset: self.resume_offset(),
            achieved_rate: if duration.as_secs_f64() > 0.0 {
                self.run.events as f64 / duration.as_secs_f64()
            } else {
                0.0
            },
            max_lag_ms: self.run.lags.max().as_secs_f64() * 1e3,
            p99_lag_ms: self.run.lags.quantile(0.99).as_secs_f64() * 1e3,
            final_hash,
            state_hash: self.tracker.as_ref().map(|t| hex(&t.state().hash())),
            pace: self.pacer.pace(),
            passes: self.passes + 1,
            output_closed: std::mem::take(&mut self.output_closed),
        };
        self.sink
            .run_ended(&report, self.tracker.as_ref().map(|t| t.state()));
        self.sink_failed = false;
        self.resume_override = None;
        self.last_report = Some(report);
        self.publish();
    }

    /// The offset a later run should start from to continue this one (None after the end).
    fn resume_offset(&self) -> Option<u64> {
        if let Some(o) = self.resume_override {
            return Some(o);
        }
        let next = self.position.map_or(self.next_offset, |p| p + 1);
        // A followed source goes on: a later run continues where this one stopped.
        if self.options.follow {
            return Some(next);
        }
        // Past `--until` a later run may still continue: only the source's end stops that.
        let last = self.source.info().last_offset?;
        (next <= last).then_some(next)
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let rate = self.meter.sample(self.total_events, now);
        let remote = self.source.remote_gauges();
        let caught_up = self.state == PlayState::Playing
            && self.caught_up
            && self.buffer.is_empty()
            && self.pending_target.is_none();
        let logical_time = !self.source.info().has_wall_time();
        let commit_age = match (self.options.follow, logical_time, self.time_ns) {
            (true, false, Some(t)) => Some(Duration::from_nanos(
                crate::event::now_ns().saturating_sub(t),
            )),
            _ => None,
        };
        let stats = Stats {
            state: if caught_up {
                PlayState::CaughtUp
            } else {
                self.state
            },
            reason: self.reason.clone(),
            pace: self.pacer.pace(),
            logical_time,
            position: self.position,
            next_offset: self.next_offset,
            time_ns: self.time_ns,
            events_played: self.total_events,
            bytes_played: self.total_bytes,
            rate,
            rate_history: self.meter.history(),
            target_rate: self.pacer.target_rate(),
            lag: self.last_lag,
            max_lag: self.max_lag,
            credit: remote.map_or_else(|| self.window.snapshot(), |g| g.0),
            ring: remote.map_or_else(|| self.ring.snapshot(), |g| g.1),
            failures: self.failures,
            buffered: self.buffer.len(),
            source_status: self.source.status(),
            following: self.options.follow,
            head_offset: self.source.head(),
            commit_age,
            at_marker: self.at_marker.filter(|_| self.state == PlayState::Paused),
            marker_pauses: self.marker_pauses,
            passes: self.passes,
            ab_loop: self.ab_loop,
        };
        self.stats.send_replace(stats);
    }
}
