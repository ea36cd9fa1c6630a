//! The player on tokio's paused clock: exact schedules (including after pause, speed change and
//! seek), resume from any offset, seeks, prompt stop, and state equal to a plain fold.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replayscope::archive::{Archive, ArchiveWriter, OpenOptions, WriterOptions};
use replayscope::event::generate::{GenOptions, Generator, Rng};
use replayscope::event::{Event, Position, hex};
use replayscope::player::{
    self, Command, Outcome, Pace, PlayState, Played, PlayerHandle, PlayerOptions, SeekTarget, Sink,
    SinkError, Stats,
};
use replayscope::source::{ArchiveSource, Source};
use replayscope::state::KvState;
use tokio::time::Instant;

fn events(n: usize) -> Vec<Event> {
    Generator::new(GenOptions::default()).take(n).collect()
}

fn write(path: &Path, evs: &[Event]) {
    let mut w = ArchiveWriter::create(
        path,
        WriterOptions {
            chunk_bytes: 32 * 1024,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for e in evs {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
}

fn source(path: &Path) -> Arc<dyn Source> {
    Arc::new(ArchiveSource::new(
        Archive::open(path, OpenOptions::default()).unwrap(),
    ))
}

/// (offset, emitted at, due)
type PlayedAt = (u64, Instant, Option<Instant>);

#[derive(Clone)]
struct Recorded {
    played: Arc<Mutex<Vec<PlayedAt>>>,
    states: Arc<Mutex<Vec<(u64, KvState)>>>,
    count: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Default for Recorded {
    fn default() -> Self {
        Recorded {
            played: Default::default(),
            states: Default::default(),
            count: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl Recorded {
    fn len(&self) -> usize {
        self.played.lock().unwrap().len()
    }

    fn offsets(&self) -> Vec<u64> {
        self.played.lock().unwrap().iter().map(|p| p.0).collect()
    }

    /// Waits until at least `n` events were played.
    async fn wait_played(&self, n: usize) {
        let mut rx = self.count.subscribe();
        rx.wait_for(|c| *c >= n).await.unwrap();
    }
}

struct RecordingSink(Recorded);

impl Sink for RecordingSink {
    fn played(&mut self, p: &Played<'_>) -> Result<(), SinkError> {
        let mut played = self.0.played.lock().unwrap();
        played.push((p.event.offset, Instant::now(), p.due));
        if let Some(s) = p.state {
            self.0
                .states
                .lock()
                .unwrap()
                .push((p.event.offset, s.clone()));
        }
        self.0.count.send_replace(played.len());
        Ok(())
    }
}

fn start(
    src: Arc<dyn Source>,
    options: PlayerOptions,
) -> (PlayerHandle<Box<RecordingSink>>, Recorded) {
    let rec = Recorded::default();
    let h = player::spawn(src, options, Box::new(RecordingSink(rec.clone()))).unwrap();
    (h, rec)
}

/// Waits (on the paused clock: at most an hour of virtual time) for the stats to satisfy `what`.
async fn wait_for<S>(h: &PlayerHandle<S>, what: impl Fn(&Stats) -> bool) -> Stats {
    let mut rx = h.stats();
    let wait = async move {
        loop {
            {
                let s = rx.borrow_and_update();
                if what(&s) {
                    return s.clone();
                }
            }
            rx.changed().await.expect("player alive");
        }
    };
    match tokio::time::timeout(Duration::from_secs(3600), wait).await {
        Ok(s) => s,
        Err(_) => panic!(
            "condition not reached; last stats: {:?}",
            h.stats().borrow()
        ),
    }
}

fn fold(evs: &[Event]) -> KvState {
    let mut s = KvState::new();
    for e in evs {
        s.apply(e);
    }
    s
}

/// The event time after `from` up to `to` with idle gaps capped (ns).
fn eff(evs: &[Event], from: u64, to: u64, max_gap: Duration) -> u128 {
    let mut total = 0u128;
    for i in from as usize + 1..=to as usize {
        let gap = (evs[i].commit_time_ns.unwrap() - evs[i - 1].commit_time_ns.unwrap()) as u128;
        total += gap.min(max_gap.as_nanos());
    }
    total
}

#[derive(Debug, Clone, Copy)]
enum Logged {
    /// The schedule restarts with the next event due at once (start, seek).
    Restart {
        speed: f64,
    },
    /// The schedule restarts one gap after the last played event (resume, speed change).
    Continue {
        speed: f64,
    },
    Pause,
}

#[tokio::test(start_paused = true)]
async fn realtime_schedule_is_exact_across_pause_speed_change_and_seek() {
    let evs = events(400);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let max_gap = Duration::from_secs(2);
    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            pace: Pace::Realtime { speed: 4.0 },
            max_gap: Some(max_gap),
            precise_timing: false,
            ..PlayerOptions::default()
        },
    );
    // (when, events played by then, what)
    let mut log = vec![(Instant::now(), 0usize, Logged::Restart { speed: 4.0 })];
    rec.wait_played(61).await;
    h.send(Command::Pause);
    log.push((Instant::now(), rec.len(), Logged::Pause));
    tokio::time::sleep(Duration::from_secs(10)).await;
    h.send(Command::Resume);
    log.push((Instant::now(), rec.len(), Logged::Continue { speed: 4.0 }));
    rec.wait_played(121).await;
    h.send(Command::SetSpeed(0.5));
    log.push((Instant::now(), rec.len(), Logged::Continue { speed: 0.5 }));
    rec.wait_played(131).await;
    h.send(Command::Seek(SeekTarget::Position(Position::Offset(300))));
    log.push((Instant::now(), rec.len(), Logged::Restart { speed: 0.5 }));
    let n = rec.len();
    rec.wait_played(n + 20).await;
    h.send(Command::Stop);
    let report = h.join().await.unwrap();

    let played = rec.played.lock().unwrap().clone();
    // Nothing plays while paused.
    assert_eq!(log[1].1, log[2].1);
    assert!(played.len() >= 150);
    for (j, &(offset, at, due)) in played.iter().enumerate() {
        let &(when, count, what) = log.iter().rev().find(|l| l.1 <= j).unwrap();
        let (anchor_offset, speed) = match what {
            Logged::Restart { speed } => (played[count].0, speed),
            Logged::Continue { speed } => (played[count - 1].0, speed),
            Logged::Pause => unreachable!("an event played while paused"),
        };
        let delta = eff(&evs, anchor_offset, offset, max_gap) as f64 / speed;
        let expected = when + Duration::from_nanos(delta.round() as u64);
        assert_eq!(due, Some(expected), "event {offset} (played #{j})");
        // tokio's timer has 1 ms resolution: played at or within 1 ms after its deadline
        assert!(
            at >= expected && at - expected < Duration::from_millis(1),
            "event {offset}"
        );
    }
    // After the seek, offsets continue from 300.
    let after_seek: Vec<u64> = played[log[4].1..].iter().map(|p| p.0).collect();
    assert_eq!(
        after_seek,
        (300..300 + after_seek.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(report.outcome, Outcome::Stopped);
    assert_eq!(report.next_offset, Some(after_seek.last().unwrap() + 1));
}

#[tokio::test(start_paused = true)]
async fn rate_pace_emits_on_a_fixed_grid_and_fast_takes_no_time() {
    let evs = events(300);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let t0 = Instant::now();
    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            pace: Pace::Rate {
                events_per_sec: 200.0,
            },
            precise_timing: false,
            ..PlayerOptions::default()
        },
    );
    let report = h.join().await.unwrap();
    let got = rec.played.lock().unwrap().clone();
    assert_eq!(got.len(), 300);
    for (i, (o, at, due)) in got.iter().enumerate() {
        assert_eq!(*o, i as u64);
        let expected = t0 + Duration::from_secs_f64(i as f64 / 200.0);
        assert_eq!(*due, Some(expected));
        assert!(*at >= expected && *at - expected < Duration::from_millis(1));
    }
    assert_eq!(report.outcome, Outcome::Finished);
    assert!(
        (report.achieved_rate - 200.0).abs() < 1.0,
        "{}",
        report.achieved_rate
    );

    let t1 = Instant::now();
    let (h, rec) = start(source(&path), PlayerOptions::default());
    h.join().await.unwrap();
    assert!(
        rec.played
            .lock()
            .unwrap()
            .iter()
            .all(|(_, at, due)| *at == t1 && due.is_none())
    );
}

#[tokio::test(start_paused = true)]
async fn resuming_from_k_gives_the_rest_and_the_same_final_hash() {
    let evs = events(2500);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let src = source(&path);
    let (h, full) = start(src.clone(), PlayerOptions::default());
    let full_report = h.join().await.unwrap();
    let full_offsets = full.offsets();
    assert_eq!(full_offsets, (0..2500).collect::<Vec<_>>());
    assert_eq!(
        full_report.final_hash,
        src.info().final_hash.map(|h| hex(&h))
    );
    let mut rng = Rng::new(3);
    for _ in 0..8 {
        let k = rng.range(1, 2499);
        let (h, a) = start(
            src.clone(),
            PlayerOptions {
                until: Some(k - 1),
                ..PlayerOptions::default()
            },
        );
        let first = h.join().await.unwrap();
        assert_eq!(first.next_offset, Some(k));
        let (h, b) = start(
            src.clone(),
            PlayerOptions {
                from: Some(k),
                ..PlayerOptions::default()
            },
        );
        let second = h.join().await.unwrap();
        let mut joined = a.offsets();
        joined.extend(b.offsets());
        assert_eq!(joined, full_offsets, "k = {k}");
        assert_eq!(second.final_hash, full_report.final_hash, "k = {k}");
        assert_eq!(first.events_sent + second.events_sent, 2500);
    }
}

#[tokio::test(start_paused = true)]
async fn seek_back_then_forward_lands_on_the_same_events() {
    let evs = events(3000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            start_paused: true,
            exit_when_done: false,
            ..PlayerOptions::default()
        },
    );
    let targets = [
        SeekTarget::Position(Position::Offset(2000)),
        SeekTarget::Position(Position::Offset(100)),
        SeekTarget::Position(Position::Offset(2000)),
        SeekTarget::Position(Position::CommitTs(evs[1500].commit_ts)),
        SeekTarget::Position(Position::Time(evs[700].commit_time_ns.unwrap())),
        SeekTarget::Percent(50.0),
        SeekTarget::Relative(-10),
        SeekTarget::Relative(25),
    ];
    let expect = [2000u64, 100, 2000, 1500, 700, 1500, 1490, 1515];
    for (t, want) in targets.iter().zip(expect) {
        h.send(Command::Seek(t.clone()));
        h.send(Command::Step(1));
        let s = wait_for(&h, |s| {
            s.position == Some(want) && s.state == PlayState::Paused
        })
        .await;
        assert_eq!(s.position, Some(want));
    }
    assert_eq!(rec.offsets(), expect.to_vec());
    h.send(Command::Quit);
    h.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stop_is_prompt_while_waiting_on_a_deadline_or_on_credit() {
    let evs = events(500);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    // Waiting on a deadline hours away.
    let (h, _) = start(
        source(&path),
        PlayerOptions {
            pace: Pace::Rate {
                events_per_sec: 0.0001,
            },
            precise_timing: false,
            ..PlayerOptions::default()
        },
    );
    wait_for(&h, |s| s.events_played == 1).await;
    let before = Instant::now();
    h.send(Command::Stop);
    let report = h.join().await.unwrap();
    assert_eq!(Instant::now(), before, "stop waited for the deadline");
    assert_eq!(report.events_sent, 1);
    assert_eq!(report.next_offset, Some(1));

    // The producer waiting on credit: a 1-byte window and a paused player.
    let (h, _) = start(
        source(&path),
        PlayerOptions {
            window_bytes: 1,
            start_paused: true,
            ..PlayerOptions::default()
        },
    );
    let s = wait_for(&h, |s| s.credit.in_flight_bytes > 0).await;
    assert!(s.credit.in_flight_bytes > 1, "one oversized batch passes");
    let before = Instant::now();
    h.send(Command::Stop);
    h.join().await.unwrap();
    assert_eq!(Instant::now(), before);
}

#[tokio::test(start_paused = true)]
async fn state_after_steps_and_seeks_equals_a_plain_fold() {
    let evs = events(2500);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            start_paused: true,
            exit_when_done: false,
            track_state: true,
            checkpoint_every: 100,
            ..PlayerOptions::default()
        },
    );
    let mut rng = Rng::new(11);
    let mut position: Option<u64> = None;
    for round in 0..60 {
        let (cmd, want) = match rng.below(4) {
            0 => {
                let n = rng.range(1, 50);
                (
                    Command::Step(n),
                    position.map_or(n - 1, |p| (p + n).min(2499)),
                )
            }
            1 => {
                let n = rng.range(1, 300);
                (
                    Command::StepBack(n),
                    position.unwrap_or(0).saturating_sub(n),
                )
            }
            2 => {
                let o = rng.below(2500);
                (Command::Seek(SeekTarget::Position(Position::Offset(o))), o)
            }
            _ => {
                let pct = rng.below(101) as f64;
                let o = (2499.0 * pct / 100.0_f64).round() as u64;
                (Command::Seek(SeekTarget::Percent(pct)), o)
            }
        };
        let is_seek = matches!(cmd, Command::Seek(_));
        h.send(cmd);
        if is_seek {
            h.send(Command::Step(1));
        }
        let s = wait_for(&h, |s| {
            s.position == Some(want) && s.state == PlayState::Paused
        })
        .await;
        position = s.position;
        let (last_offset, state) = rec.states.lock().unwrap().last().cloned().unwrap();
        assert_eq!(Some(last_offset), position, "round {round}");
        assert_eq!(
            state,
            fold(&evs[..=last_offset as usize]),
            "round {round}: state at offset {last_offset}"
        );
    }
    h.send(Command::Quit);
    h.join().await.unwrap();
}

/// A sink that takes events only while the test gives it credit, and flushes only when told:
/// a stand-in for a slow network target.
#[derive(Default)]
struct Gate {
    credits: u64,
    flush: Option<Result<(), SinkError>>,
    waker: Option<std::task::Waker>,
    played: Vec<u64>,
}

struct GatedSink(Arc<Mutex<Gate>>, tokio::sync::watch::Sender<usize>);

impl Sink for GatedSink {
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), SinkError>> {
        let mut g = self.0.lock().unwrap();
        if g.credits > 0 {
            return std::task::Poll::Ready(Ok(()));
        }
        g.waker = Some(cx.waker().clone());
        std::task::Poll::Pending
    }

    fn played(&mut self, p: &Played<'_>) -> Result<(), SinkError> {
        let mut g = self.0.lock().unwrap();
        assert!(g.credits > 0, "played without being ready");
        g.credits -= 1;
        g.played.push(p.event.offset);
        self.1.send_replace(g.played.len());
        Ok(())
    }

    fn poll_flush(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), SinkError>> {
        let mut g = self.0.lock().unwrap();
        match g.flush.clone() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                g.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

fn gate(g: &Arc<Mutex<Gate>>, f: impl FnOnce(&mut Gate)) {
    let mut g = g.lock().unwrap();
    f(&mut g);
    if let Some(w) = g.waker.take() {
        w.wake();
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_sink_holds_the_player_back_and_a_run_ends_only_when_it_has_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &events(100));
    for fails in [false, true] {
        let g = Arc::new(Mutex::new(Gate {
            credits: 10,
            ..Gate::default()
        }));
        let (count, mut counted) = tokio::sync::watch::channel(0usize);
        let h = player::spawn(
            source(&path),
            PlayerOptions {
                precise_timing: false,
                ..PlayerOptions::default()
            },
            Box::new(GatedSink(g.clone(), count)),
        )
        .unwrap();
        counted.wait_for(|n| *n >= 10).await.unwrap();
        // An hour later (virtual) it has still played only what the sink took.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(g.lock().unwrap().played.len(), 10);
        assert_eq!(h.stats().borrow().state, PlayState::Playing);

        gate(&g, |g| g.credits = 1000);
        counted.wait_for(|n| *n >= 100).await.unwrap();
        let joined = tokio::spawn(h.join());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(
            !joined.is_finished(),
            "the run ended before the sink flushed"
        );
        gate(&g, |g| {
            g.flush = Some(if fails {
                Err(SinkError {
                    message: "target lost at offset 95".into(),
                    closed: false,
                    resume_offset: Some(95),
                })
            } else {
                Ok(())
            })
        });
        let report = joined.await.unwrap().unwrap();
        assert_eq!(report.events_sent, 100);
        assert_eq!(g.lock().unwrap().played, (0..100).collect::<Vec<_>>());
        if fails {
            assert!(report.outcome.is_failed());
            assert_eq!(
                report.next_offset,
                Some(95),
                "resume where the target failed"
            );
            assert!(report.reason.unwrap().contains("target lost at offset 95"));
        } else {
            assert_eq!(report.outcome, Outcome::Finished);
            assert_eq!(report.next_offset, None);
        }
    }
}

/// Presses in a row add up (each one acts on where the last one went, not on a stale
/// position), and the report counts what this run played after seeking back.
#[tokio::test(start_paused = true)]
async fn relative_moves_in_a_burst_add_up_and_replays_are_counted() {
    let evs = events(3000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            start_paused: true,
            exit_when_done: false,
            ..PlayerOptions::default()
        },
    );
    h.send(Command::Seek(SeekTarget::Position(Position::Offset(1000))));
    h.send(Command::Step(1));
    wait_for(&h, |s| {
        s.position == Some(1000) && s.state == PlayState::Paused
    })
    .await;
    // Five step-backs sent at once: 995, not 999.
    for _ in 0..5 {
        h.send(Command::StepBack(1));
    }
    wait_for(&h, |s| {
        s.position == Some(995) && s.state == PlayState::Paused
    })
    .await;
    // Three +10 % jumps at once from 995 (33.2 % of 0–2999): 63.2 %, offset 1895.
    for _ in 0..3 {
        h.send(Command::Seek(SeekTarget::RelativePercent(10.0)));
    }
    h.send(Command::Step(1));
    let s = wait_for(&h, |s| {
        s.state == PlayState::Paused && s.position >= Some(1800)
    })
    .await;
    assert_eq!(s.position, Some(1895), "played {:?}", rec.offsets());
    // Four speed steps at once from 1x: 1.5, 2, 3, 5.
    h.send(Command::SetPace(Pace::Realtime { speed: 1.0 }));
    for _ in 0..4 {
        h.send(Command::StepPace(true));
    }
    let s = wait_for(&h, |s| s.pace == Pace::Realtime { speed: 5.0 }).await;
    assert_eq!(s.pace, Pace::Realtime { speed: 5.0 });
    h.send(Command::Stop);
    let r = wait_for(&h, |s| s.state == PlayState::Stopped).await;
    assert_eq!(r.state, PlayState::Stopped);
    h.send(Command::Quit);
    let report = h.join().await.unwrap();
    // 1000, then 995 (after seeking back), then 1895.
    assert_eq!(report.events_sent, 3);
    assert_eq!(report.events_replayed, 1);
}

/// `--pause-at-markers`: the player stops right after each marker's event, stays there (the
/// clock runs on, nothing plays), and goes on at Resume; the run ends after the last.
#[tokio::test(start_paused = true)]
async fn pause_at_markers_stops_at_each_marker_until_resumed() {
    let evs = events(200);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            pace: Pace::Realtime { speed: 10.0 },
            max_gap: Some(Duration::from_secs(1)),
            pause_at: vec![20, 75, 150],
            precise_timing: false,
            ..PlayerOptions::default()
        },
    );
    for (i, marker) in [20u64, 75, 150].into_iter().enumerate() {
        let s = wait_for(&h, |s| s.at_marker == Some(marker)).await;
        assert_eq!(s.state, PlayState::Paused);
        assert_eq!(
            s.position,
            Some(marker),
            "the marker's event is the one shown"
        );
        assert_eq!(s.marker_pauses, i as u64 + 1);
        // Held: a minute of the clock plays nothing.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(rec.offsets().last(), Some(&marker));
        assert_eq!(rec.len(), marker as usize + 1);
        h.send(Command::Resume);
        wait_for(&h, |s| s.at_marker.is_none()).await;
    }
    let report = h.join().await.unwrap();
    assert_eq!(report.outcome, Outcome::Finished);
    assert_eq!(rec.offsets(), (0..200).collect::<Vec<_>>());
}

/// `--loop 3`: the range exactly three times, in order, then the end; an A-B loop goes back to
/// A after B until it is cleared.
#[tokio::test(start_paused = true)]
async fn loops_play_the_range_again() {
    let evs = events(120);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    write(&path, &evs);
    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            pace: Pace::Fast,
            from: Some(10),
            until: Some(49),
            loops: player::Loops::Times(3),
            ..PlayerOptions::default()
        },
    );
    let report = h.join().await.unwrap();
    assert_eq!(report.outcome, Outcome::Finished);
    assert_eq!(report.passes, 3);
    let once: Vec<u64> = (10..=49).collect();
    assert_eq!(rec.offsets(), once.repeat(3));

    let (h, rec) = start(
        source(&path),
        PlayerOptions {
            pace: Pace::Rate {
                events_per_sec: 100.0,
            },
            precise_timing: false,
            ..PlayerOptions::default()
        },
    );
    h.send(Command::SetLoop(Some((30, 40))));
    rec.wait_played(100).await;
    h.send(Command::SetLoop(None));
    let s = wait_for(&h, |s| s.ab_loop.is_none()).await;
    assert_eq!(s.ab_loop, None);
    let report = h.join().await.unwrap();
    assert_eq!(report.outcome, Outcome::Finished);
    let played = rec.offsets();
    // From the start to B, then A..=B again and again, then on to the end once cleared.
    assert_eq!(&played[..41], &(0..=40).collect::<Vec<_>>()[..]);
    let looped: Vec<u64> = played[41..100].to_vec();
    for (i, o) in looped.iter().enumerate() {
        assert_eq!(*o, 30 + (i as u64 % 11), "{played:?}");
    }
    assert_eq!(played.last(), Some(&119));
    assert!(
        played[100..]
            .windows(2)
            .all(|w| w[1] == w[0] + 1 || (w[0] == 40 && w[1] == 30))
    );
}
