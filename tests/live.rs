//! Following a running agent (`--follow`): a real Statehouse daemon on 127.0.0.1 while a writer
//! commits transactions to several agents; the follower delivers every committed transaction of
//! the agents it follows exactly once, in commit_ts order — across polls, across a cross-agent
//! transaction (once, not once per agent) and across a daemon restart.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/statehouse.rs"]
mod statehouse;
use statehouse::{Committed, commit, connect, rt};

/// A follower process and the lines it prints, as they come.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn follow(args: &[&str]) -> Follower {
    let mut child = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Follower { child, lines }
}

impl Follower {
    /// The next `n` events it prints (failing after `limit`).
    fn events(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(serde_json::from_str(&line).unwrap()),
                Err(e) => panic!(
                    "{} of {n} events within {limit:?} ({e}); last: {:?}",
                    out.len(),
                    out.last()
                ),
            }
        }
        out
    }
}

/// Every transaction of agents a and b, once, in commit_ts order, numbered 0.. and named by
/// the first followed agent it wrote to.
fn check(events: &[Value], committed: &[Committed]) {
    let expected: Vec<&Committed> = committed
        .iter()
        .filter(|c| c.agents.iter().any(|a| *a == "a" || *a == "b"))
        .collect();
    assert_eq!(events.len(), expected.len(), "events delivered");
    let mut keys_of: BTreeMap<u64, &Committed> = BTreeMap::new();
    for c in &expected {
        keys_of.insert(c.commit_ts, c);
    }
    for (i, (e, c)) in events.iter().zip(&expected).enumerate() {
        assert_eq!(e["offset"], i as u64, "numbered in order: {e}");
        assert_eq!(e["commit_ts"], c.commit_ts, "#{i} in commit order: {e}");
        assert_eq!(e["agent_id"], c.agents[0], "#{i}: {e}");
        let ops = e["operations"].as_array().unwrap();
        assert_eq!(
            ops.len(),
            c.agents.len(),
            "#{i} has all its operations: {e}"
        );
        assert!(ops.iter().all(|op| op["key"] == c.key.as_str()), "{e}");
    }
}

#[test]
fn following_two_agents_delivers_every_commit_once_in_commit_order() {
    let Some(d) = statehouse::start() else { return };
    let rt = rt();
    let client = rt.block_on(connect(&d));
    let mut committed = Vec::new();
    // A history before the follower starts, then commits while it follows.
    for i in 0..40 {
        committed.push(rt.block_on(commit(&client, i)));
    }
    let total_followed = |c: &[Committed]| c.iter().filter(|c| c.agents != ["c"]).count();
    const TOTAL: usize = 400;
    let expected_events = {
        let mut all = committed.clone();
        for i in committed.len()..TOTAL {
            all.push(Committed {
                commit_ts: 0,
                agents: match i % 4 {
                    0 => vec!["a"],
                    1 => vec!["b"],
                    2 => vec!["a", "b"],
                    _ => vec!["c"],
                },
                key: String::new(),
            });
        }
        total_followed(&all)
    };
    let until = (expected_events - 1).to_string();
    let f = follow(&[
        "play", &d.url, "--agent", "live/a", "--agent", "live/b", "--follow", "--poll", "20ms",
        "--until", &until,
    ]);
    let early = f.events(total_followed(&committed), Duration::from_secs(30));
    for i in committed.len()..TOTAL {
        committed.push(rt.block_on(commit(&client, i)));
    }
    let rest = f.events(expected_events - early.len(), Duration::from_secs(30));
    let all: Vec<Value> = early.into_iter().chain(rest).collect();
    check(&all, &committed);
    // It ends at --until with a report naming the run finished.
    let mut f = f;
    let status = f.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_follower_rides_out_a_daemon_restart_without_losing_or_repeating() {
    // RocksDB: what was committed survives the restart, and commit_ts goes on from it.
    let Some(mut d) = statehouse::start_with(false) else {
        return;
    };
    let rt = rt();
    let mut committed = Vec::new();
    {
        let client = rt.block_on(connect(&d));
        for i in 0..30 {
            committed.push(rt.block_on(commit(&client, i)));
        }
    }
    let followed = |c: &[Committed]| c.iter().filter(|c| c.agents != ["c"]).count();
    let f = follow(&[
        "play", &d.url, "--agent", "live/a", "--agent", "live/b", "--follow", "--poll", "20ms",
    ]);
    let mut events = f.events(followed(&committed), Duration::from_secs(30));
    d.restart();
    {
        let client = rt.block_on(connect(&d));
        for i in 30..90 {
            committed.push(rt.block_on(commit(&client, i)));
        }
    }
    events.extend(f.events(followed(&committed) - events.len(), Duration::from_secs(60)));
    check(&events, &committed);
    assert!(
        committed[30].commit_ts > committed[29].commit_ts,
        "commit_ts goes on after the restart"
    );
    // Nothing more arrives (no repeat of what was delivered before the restart): one more
    // commit is the very next event.
    let client = rt.block_on(connect(&d));
    committed.push(rt.block_on(commit(&client, 90)));
    let next = f.events(1, Duration::from_secs(30));
    events.extend(next);
    check(&events, &committed);
}

#[path = "support/serving.rs"]
mod serving;

/// A `replayscope` child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn record_follow(url: &str, dir: &std::path::Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_replayscope"))
            .args([
                "record", url, "--agent", "live/a", "--agent", "live/b", "--follow",
            ])
            .args(["--poll", "20ms", "--segment-events", "40", "-o"])
            .arg(dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// `serve DIR --follow` on `listen`; returns it and the address it bound.
fn serve_follow(dir: &std::path::Path, listen: &str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .arg("serve")
        .arg(dir)
        .args(["--follow", "--listen", listen])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving::serving_address(&mut child);
    (Proc(child), addr)
}

/// Waits (bounded) until `dir` holds a segment file.
fn wait_for_segment(dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let any = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".mcap"))
            })
            .unwrap_or(false);
        if any {
            return;
        }
        assert!(Instant::now() < deadline, "no segment in {}", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon -> `record --follow` -> segments -> `serve --follow` -> `play replayscope://…
/// --follow` chain delivers exactly what the daemon committed, also when the recorder and then
/// the server are killed (SIGKILL: no clean close) and started again mid-run.
#[test]
fn the_whole_chain_delivers_the_daemons_replay_across_restarts() {
    let Some(d) = statehouse::start() else { return };
    let rt = rt();
    let client = rt.block_on(connect(&d));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let mut committed = Vec::new();
    let commit_n = |committed: &mut Vec<Committed>, n: usize| {
        for _ in 0..n {
            let i = committed.len();
            committed.push(rt.block_on(commit(&client, i)));
        }
    };
    let followed = |c: &[Committed]| c.iter().filter(|c| c.agents != ["c"]).count();
    commit_n(&mut committed, 20);
    let mut recorder = record_follow(&d.url, &dir);
    wait_for_segment(&dir);
    let (mut server, addr) = serve_follow(&dir, "127.0.0.1:0");
    let url = format!("replayscope://{addr}");
    let viewer = follow(&["play", &url, "--follow"]);
    let mut events = viewer.events(followed(&committed), Duration::from_secs(30));

    commit_n(&mut committed, 40);
    events.extend(viewer.events(followed(&committed) - events.len(), Duration::from_secs(30)));
    // The recorder dies mid-run and is started again on the same directory.
    drop(recorder);
    commit_n(&mut committed, 20);
    recorder = record_follow(&d.url, &dir);
    commit_n(&mut committed, 20);
    events.extend(viewer.events(followed(&committed) - events.len(), Duration::from_secs(30)));
    // Then the server, on the same address: the viewer reconnects and resumes.
    drop(server);
    commit_n(&mut committed, 20);
    (server, _) = serve_follow(&dir, &addr);
    commit_n(&mut committed, 20);
    events.extend(viewer.events(followed(&committed) - events.len(), Duration::from_secs(60)));
    check(&events, &committed);
    drop((recorder, server));
    // And the directory holds the daemon's replay exactly.
    // The recorder was killed: its last segment has no summary.
    check(&exported(&dir, &["--allow-truncated"]), &committed);
}

/// The events `export DIR ARGS` prints.
fn exported(dir: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .arg("export")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A follower whose stderr is kept: what it printed, once it has exited.
fn follow_keeping_stderr(args: &[&str]) -> (Follower, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { err }, &mut s);
        s
    });
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Follower { child, lines }, stderr)
}

/// Waits (bounded) for the follower to exit; returns its exit code and stderr.
fn exit_of(mut f: Follower, stderr: std::thread::JoinHandle<String>) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = f.child.try_wait().unwrap() {
            return (status.code(), stderr.join().unwrap());
        }
        assert!(Instant::now() < deadline, "the follower did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn generated(n: usize) -> Vec<replayscope::event::Event> {
    use replayscope::event::generate::{GenOptions, Generator};
    Generator::new(GenOptions::default()).take(n).collect()
}

/// Writes `events` as the segment starting at their first offset (the chain from `chain`).
fn write_segment(dir: &std::path::Path, events: &[replayscope::event::Event], chain: [u8; 32]) {
    use replayscope::archive::{ArchiveWriter, WriterOptions};
    let first = events[0].offset;
    let path = dir.join(format!("{first:020}.mcap"));
    let mut w = ArchiveWriter::create(
        &path,
        WriterOptions {
            first_offset: Some(first),
            chain_start: chain,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for e in events {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
}

/// Two complete segments (offsets 0 to 99) in a new directory; returns it, the events and
/// the final hash.
fn two_segments(tmp: &std::path::Path, name: &str) -> (std::path::PathBuf, [u8; 32]) {
    use replayscope::archive::{SegmentedWriter, WriterOptions};
    let dir = tmp.join(name);
    let evs = generated(100);
    let mut w = SegmentedWriter::create(&dir, 50, WriterOptions::default()).unwrap();
    for e in &evs {
        w.append(e).unwrap();
    }
    let done = w.finish().unwrap();
    (dir, done.last().unwrap().final_hash)
}

/// What a follower of a directory says when the directory is changed under it the way no
/// recorder would: a segment deleted, a gap in the offsets, commit order going backwards —
/// each a one-line error naming the file, not silence.
#[test]
fn a_followed_directory_changed_under_the_follower_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let evs = generated(200);

    // A segment deleted.
    let (dir, _) = two_segments(tmp.path(), "deleted");
    let (f, stderr) = follow_keeping_stderr(&["play", dir.to_str().unwrap(), "--follow"]);
    f.events(100, Duration::from_secs(30));
    let last = dir.join(format!("{:020}.mcap", 50));
    std::fs::remove_file(&last).unwrap();
    let (code, err) = exit_of(f, stderr);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains(&last.display().to_string()) && err.contains("deleted while it was followed"),
        "{err}"
    );

    // A gap: the next segment starts at 120, not 100.
    let (dir, hash) = two_segments(tmp.path(), "gap");
    let (f, stderr) = follow_keeping_stderr(&["play", dir.to_str().unwrap(), "--follow"]);
    f.events(100, Duration::from_secs(30));
    write_segment(&dir, &evs[120..150], hash);
    let (code, err) = exit_of(f, stderr);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("continuity gap") && err.contains("00000000000000000120.mcap"),
        "{err}"
    );

    // Out of order: offsets 100.. go on, but their commit_ts are older than the last one.
    let (dir, hash) = two_segments(tmp.path(), "backwards");
    let (f, stderr) = follow_keeping_stderr(&["play", dir.to_str().unwrap(), "--follow"]);
    f.events(100, Duration::from_secs(30));
    let older: Vec<_> = evs[..20]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            e.offset = 100 + i as u64;
            e
        })
        .collect();
    write_segment(&dir, &older, hash);
    let (code, err) = exit_of(f, stderr);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("commit order goes backwards") && err.contains("00000000000000000100.mcap"),
        "{err}"
    );
}

/// A follower much slower than the writer: memory stays bounded by its credit window, it
/// says how far behind the head it is, and it catches up.
#[test]
fn a_slow_follower_falls_behind_says_so_and_catches_up() {
    use replayscope::archive::{SegmentedWriter, WriterOptions};
    use replayscope::player::{self, NullSink, Pace, PlayState, PlayerOptions};
    use replayscope::source::open::{OpenRequest, open_source};
    const TOTAL: usize = 3000;
    const WINDOW: u64 = 64 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fast-writer");
    let evs = generated(TOTAL);
    let mut w = SegmentedWriter::create(&dir, 1000, WriterOptions::default()).unwrap();
    for e in &evs[..100] {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
    let (source, _) = open_source(
        dir.to_str().unwrap(),
        &OpenRequest {
            follow: true,
            ..OpenRequest::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let h = player::spawn(
            source,
            PlayerOptions {
                pace: Pace::Rate {
                    events_per_sec: 3000.0,
                },
                follow: true,
                until: Some(TOTAL as u64 - 1),
                window_bytes: WINDOW,
                stats_interval: Duration::from_millis(20),
                ..PlayerOptions::default()
            },
            NullSink,
        )
        .unwrap();
        // The writer runs far ahead: the rest in chunks of 100, as fast as it can.
        let writer = tokio::task::spawn_blocking(move || {
            for chunk in evs[100..].chunks(100) {
                for e in chunk {
                    w.append(e).unwrap();
                }
                w.flush().unwrap();
            }
            w.finish().unwrap();
        });
        let mut stats = h.stats();
        let mut most_behind = 0;
        let watch = async {
            loop {
                {
                    let s = stats.borrow_and_update();
                    most_behind = most_behind.max(s.behind_head().unwrap_or(0));
                    assert!(
                        s.credit.in_flight_bytes <= WINDOW,
                        "in flight {} beyond the window",
                        s.credit.in_flight_bytes
                    );
                    // The player pulls a batch (256) while it holds fewer than two.
                    assert!(s.buffered < 3 * 256, "{} buffered", s.buffered);
                    if s.live_summary().is_some_and(|l| l.contains("behind head")) {
                        assert!(s.following);
                    }
                    if matches!(s.state, PlayState::Finished) {
                        return;
                    }
                }
                if stats.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), watch)
            .await
            .expect("the follower catches up within a minute");
        writer.await.unwrap();
        let report = h.join().await.unwrap();
        assert_eq!(report.events_sent, TOTAL as u64, "{report:?}");
        assert_eq!(report.last_offset, Some(TOTAL as u64 - 1), "{report:?}");
        assert!(
            most_behind >= 1000,
            "it fell behind the writer by {most_behind} events at most"
        );
    });
}

/// A single archive file being written (chunks flushed as they close, no summary yet) is read
/// to its last complete chunk, then on as chunks land, and through the summary written at its
/// end.
#[test]
fn a_file_being_written_is_followed_chunk_by_chunk() {
    use replayscope::archive::{ArchiveWriter, WriterOptions};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("growing.mcap");
    let evs = generated(300);
    let mut w = ArchiveWriter::create(&path, WriterOptions::default()).unwrap();
    for e in &evs[..100] {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
    let f = follow(&["play", path.to_str().unwrap(), "--follow", "--until", "299"]);
    let first = f.events(100, Duration::from_secs(30));
    for chunk in evs[100..].chunks(50) {
        for e in chunk {
            w.append(e).unwrap();
        }
        w.flush().unwrap();
    }
    let rest = f.events(150, Duration::from_secs(30));
    w.finish().unwrap();
    let last = f.events(50, Duration::from_secs(30));
    let offsets: Vec<u64> = first
        .iter()
        .chain(&rest)
        .chain(&last)
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (0..300).collect::<Vec<u64>>());
    let mut f = f;
    assert!(f.child.wait().unwrap().success());
}

/// A file being written that holds 100 events of one agent when it is opened, then gains a
/// second agent's events: the writer (its first 100 flushed), the events still to append,
/// that agent, and the offsets of its events among all of them.
struct GainingAgent {
    writer: replayscope::archive::ArchiveWriter,
    rest: Vec<replayscope::event::Event>,
    last_offset: u64,
    agent: (String, String),
    wanted: Vec<u64>,
}

fn gaining_agent(path: &std::path::Path) -> GainingAgent {
    use replayscope::archive::{ArchiveWriter, WriterOptions};
    use replayscope::event::generate::{GenOptions, Generator};
    let mixed: Vec<replayscope::event::Event> = Generator::new(GenOptions {
        agents: 2,
        ..GenOptions::default()
    })
    .take(600)
    .collect();
    let agent = (
        mixed[0].namespace.to_string(),
        mixed[0].agent_id.to_string(),
    );
    let is_it = |e: &replayscope::event::Event| *e.namespace == *agent.0 && *e.agent_id == *agent.1;
    // 100 events of that agent alone, then both agents' events; offsets renumbered.
    let mut evs: Vec<_> = mixed
        .iter()
        .filter(|e| is_it(e))
        .take(100)
        .cloned()
        .collect();
    let last_alone = evs[99].commit_ts;
    evs.extend(mixed.iter().filter(|e| e.commit_ts > last_alone).cloned());
    for (i, e) in evs.iter_mut().enumerate() {
        e.offset = i as u64;
    }
    let wanted: Vec<u64> = evs.iter().filter(|e| is_it(e)).map(|e| e.offset).collect();
    assert!(
        wanted.len() < evs.len() - 100,
        "the other agent writes after the first 100"
    );
    let mut writer = ArchiveWriter::create(path, WriterOptions::default()).unwrap();
    for e in &evs[..100] {
        writer.append(e).unwrap();
    }
    writer.flush().unwrap();
    GainingAgent {
        writer,
        last_offset: evs.len() as u64 - 1,
        rest: evs.split_off(100),
        agent,
        wanted,
    }
}

impl GainingAgent {
    /// Appends the rest and finishes the file.
    fn grow(mut self) {
        for e in &self.rest {
            self.writer.append(e).unwrap();
        }
        self.writer.finish().unwrap();
    }
}

/// One agent followed in a file that held only that agent's events when the follower started:
/// another agent's events written later are not delivered (its filter is not dropped for
/// wanting every agent there was).
#[test]
fn a_followed_file_gaining_another_agent_delivers_only_the_agent_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("growing.mcap");
    let file = gaining_agent(&path);
    let (wanted, agent_id) = (file.wanted.clone(), file.agent.1.clone());
    let agent = format!("{}/{}", file.agent.0, file.agent.1);
    let until = file.last_offset.to_string();
    let f = follow(&[
        "play",
        path.to_str().unwrap(),
        "--agent",
        &agent,
        "--follow",
        "--until",
        &until,
    ]);
    let mut got = f.events(100, Duration::from_secs(30));
    file.grow();
    got.extend(f.events(wanted.len() - 100, Duration::from_secs(30)));
    let mut f = f;
    assert!(f.child.wait().unwrap().success());
    let offsets: Vec<u64> = got.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, wanted);
    assert!(
        got.iter()
            .all(|e| e["agent_id"].as_str() == Some(&*agent_id))
    );
    // Nothing after the last one (the other agent's events are not printed either).
    assert!(f.lines.try_recv().is_err());
}

/// The same at the source, for the stored events a Session streams (which are never decoded,
/// so only the source's agent filter keeps the other agent out).
#[test]
fn a_followed_archive_gaining_an_agent_streams_only_the_agent_asked_for() {
    use replayscope::archive::{Archive, OpenOptions};
    use replayscope::flow::CreditWindow;
    use replayscope::source::{ArchiveSource, Filter, Source, StreamRequest};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("growing.mcap");
    let file = gaining_agent(&path);
    let archive = Archive::open(
        &path,
        OpenOptions {
            allow_truncated: true,
        },
    )
    .unwrap();
    assert_eq!(archive.channels().len(), 1);
    let source = ArchiveSource::followed(archive);
    let req = StreamRequest {
        filter: Filter {
            agent: Some(file.agent.clone()),
            ..Filter::default()
        },
        until: Some(file.last_offset),
        follow: true,
        compact_payloads: true,
        ..StreamRequest::default()
    };
    let wanted = file.wanted.clone();
    rt().block_on(async move {
        let mut s = source
            .open_stored(req, CreditWindow::new(u64::MAX / 4))
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 100 {
            got.extend(
                s.recv()
                    .await
                    .unwrap()
                    .unwrap()
                    .events
                    .iter()
                    .map(|e| e.offset),
            );
        }
        file.grow();
        while let Some(b) = s.recv().await {
            got.extend(b.unwrap().events.iter().map(|e| e.offset));
        }
        assert_eq!(got, wanted);
    });
}

/// Following what cannot grow, or a server that serves a snapshot, is a clear one-line error.
#[test]
fn following_what_does_not_grow_is_a_clear_error() {
    let bin = env!("CARGO_BIN_EXE_replayscope");
    let jsonl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/research-agent.jsonl"
    );
    let out = Command::new(bin)
        .args(["play", jsonl, "--agent", "research/research-7", "--follow"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(jsonl) && err.contains("--follow needs a source that grows"),
        "{err}"
    );

    // A server started without --follow refuses a following Session, saying how to start it.
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = two_segments(tmp.path(), "snapshot");
    let mut child = Command::new(bin)
        .arg("serve")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving::serving_address(&mut child);
    let _server = Proc(child);
    let out = Command::new(bin)
        .args(["play", &format!("replayscope://{addr}"), "--follow"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("serve --follow"), "{err}");
}

/// What `serve --follow` answers besides following Sessions follows the files too: a plain
/// Statehouse Replay of it includes a segment written after the server started.
#[test]
fn serve_follow_answers_replay_from_what_is_there_now() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, hash) = two_segments(tmp.path(), "growing");
    let evs = generated(150);
    let (_server, addr) = serve_follow(&dir, "127.0.0.1:0");
    write_segment(&dir, &evs[100..150], hash);
    let (ns, agent) = (
        evs[120].namespace.to_string(),
        evs[120].agent_id.to_string(),
    );
    let expected = evs
        .iter()
        .filter(|e| *e.namespace == *ns && *e.agent_id == *agent)
        .count();
    // The server looks at the files again when asked (its view is at most 250 ms old).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_replayscope"))
            .args([
                "play",
                &format!("statehouse://{addr}"),
                "--agent",
                &format!("{ns}/{agent}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8_lossy(&out.stdout).lines().count();
        if got == expected {
            break;
        }
        assert!(got < expected, "{got} events, {expected} written");
        assert!(
            Instant::now() < deadline,
            "{got} of {expected} events after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A recorder killed right after it started a new segment (an empty file) continues the
/// directory when run again: the empty file is written anew, nothing is lost or repeated.
#[test]
fn record_follow_continues_over_a_segment_it_had_only_just_started() {
    let Some(d) = statehouse::start() else { return };
    let rt = rt();
    let client = rt.block_on(connect(&d));
    let mut committed = Vec::new();
    for i in 0..60 {
        committed.push(rt.block_on(commit(&client, i)));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let record = |until: &str| {
        Command::new(env!("CARGO_BIN_EXE_replayscope"))
            .args([
                "record", &d.url, "--agent", "live/a", "--agent", "live/b", "--follow",
            ])
            .args(["--until", until, "-o"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let first = record("19");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // What a kill right after a rotation leaves: the next segment created, nothing in it.
    std::fs::write(dir.join(format!("{:020}.mcap", 20)), b"").unwrap();
    let followed = committed.iter().filter(|c| c.agents != ["c"]).count();
    let second = record(&(followed - 1).to_string());
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    check(&exported(&dir, &[]), &committed);
}
