//! Following a running agent: commit-to-visible latency on each path, and what followers cost
//! the Statehouse daemon.
//!
//! - `latency`: a writer commits one transaction every 20 ms to a real `statehoused` on
//!   127.0.0.1, each carrying its commit's wall time (µs) in its value; a follower process
//!   prints what it plays, and the time from commit to the line being read here is measured:
//!   daemon -> `play --follow` (default poll); writer -> `play DIR --follow` (the record leg: an
//!   archive writer appending and closing a chunk per event, as `record --follow` does when its
//!   source is idle, and a follower of the directory); the whole chain daemon -> `record
//!   --follow` -> `serve --follow` -> `play replayscope://… --follow`.
//! - `cpu`: the daemon's CPU time (utime + stime from /proc) while the writer commits for 8 s,
//!   with 1 and 16 direct followers, and with 16 viewers through one recorder and `serve`.
//!
//! ```sh
//! cargo bench --bench live                   # both (needs statehoused: scripts/test installs it)
//! cargo bench --bench live -- --only latency # or: cpu (--history N: transactions before)
//! ```

#[path = "../tests/support/serving.rs"]
mod serving;
#[path = "../tests/support/statehouse.rs"]
mod statehouse;
#[path = "support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use replayscope::wire::client::StatehouseClient;

const BIN: &str = env!("CARGO_BIN_EXE_replayscope");
/// One commit every this long while measuring.
const COMMIT_EVERY: Duration = Duration::from_millis(20);
const LATENCY_COMMITS: usize = 300;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A follower whose printed events arrive here with the time they were read.
fn follower(args: &[&str]) -> (Proc, mpsc::Receiver<(Instant, u64, String)>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            let now = (Instant::now(), now_us());
            if tx.send((now.0, now.1, line)).is_err() {
                return;
            }
        }
    });
    (Proc(child), rx)
}

/// The commit time (µs) a line carries in its value `t`.
fn committed_at(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["operations"][0]["value"]["t"].as_f64().map(|t| t as u64)
}

fn struct_with_time(t_us: u64) -> prost_types::Struct {
    prost_types::Struct {
        fields: [(
            "t".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(t_us as f64)),
            },
        )]
        .into(),
    }
}

async fn commit_now(client: &StatehouseClient, agent: &str, i: usize) {
    let txn = client.begin_transaction(10_000).await.unwrap();
    client
        .write(
            &txn,
            "bench",
            agent,
            &format!("k{i}"),
            struct_with_time(now_us()),
        )
        .await
        .unwrap();
    client.commit(&txn).await.unwrap();
}

/// Commits `n` transactions, one every `COMMIT_EVERY`, on a runtime of its own.
fn commit_paced(port: u16, agent: &'static str, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = StatehouseClient::connect(
                &format!("127.0.0.1:{port}"),
                Default::default(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            let mut tick = tokio::time::interval(COMMIT_EVERY);
            for i in 0..n {
                tick.tick().await;
                commit_now(&client, agent, i).await;
            }
        });
    })
}

/// Reads `n` timed lines (skipping the `skip` before), returning commit-to-read latencies (ms).
fn latencies(rx: &mpsc::Receiver<(Instant, u64, String)>, skip: usize, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    let mut seen = 0;
    while out.len() < n {
        let (_, read_us, line) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the follower delivers within 30 s");
        seen += 1;
        if seen <= skip {
            continue;
        }
        if let Some(t) = committed_at(&line) {
            out.push(read_us.saturating_sub(t) as f64 / 1000.0);
        }
    }
    out
}

fn report(path: &str, mut ms: Vec<f64>, floor_ms: Option<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p50 = support::percentile(&ms, 0.50);
    let p99 = support::percentile(&ms, 0.99);
    let max = ms.last().copied().unwrap_or(0.0);
    let verdict = match floor_ms {
        Some(f) if p99 <= f => format!("  (floor p99 <= {f} ms: met)"),
        Some(f) => format!("  (floor p99 <= {f} ms: NOT met)"),
        None => String::new(),
    };
    println!(
        "{path:<44} n={:<4} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  max {max:>7.1} ms{verdict}",
        ms.len()
    );
}

/// Waits (bounded) until `dir` holds a segment.
fn wait_for_segment(dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".mcap"))
        })
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "no segment in {}", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn latency() {
    println!(
        "commit -> visible, one commit every {COMMIT_EVERY:?}, {LATENCY_COMMITS} commits per path"
    );
    // daemon -> play --follow (default poll)
    {
        let d = statehouse::start().expect("statehoused (scripts/test installs it)");
        let writer = commit_paced(d.port, "a", 1);
        writer.join().unwrap();
        let (_f, rx) = follower(&["play", &d.url, "--agent", "bench/a", "--follow"]);
        latencies(&rx, 0, 0);
        let writer = commit_paced(d.port, "a", LATENCY_COMMITS);
        let ms = latencies(&rx, 1, LATENCY_COMMITS);
        writer.join().unwrap();
        report("daemon -> play --follow (poll 100ms)", ms, Some(250.0));
    }
    // archive writer (the record leg) -> play DIR --follow
    {
        use replayscope::archive::{SegmentedWriter, WriterOptions};
        use replayscope::event::{Event, ObjectValue, Operation};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("segments");
        let mut w = SegmentedWriter::create(&dir, 100_000, WriterOptions::default()).unwrap();
        let event = |i: u64| {
            let mut value = serde_json::Map::new();
            value.insert("t".into(), serde_json::json!(now_us() as f64));
            Event {
                offset: i,
                txn_id: format!("t{i}"),
                commit_ts: i + 1,
                commit_time_ns: Some(now_us() * 1000),
                namespace: "bench".into(),
                agent_id: "a".into(),
                operations: vec![Operation {
                    key: format!("k{i}").into(),
                    value: Some(ObjectValue::from_object(value)),
                    version: 1,
                }],
            }
        };
        w.append(&event(0)).unwrap();
        w.flush().unwrap();
        let (_f, rx) = follower(&["play", dir.to_str().unwrap(), "--follow"]);
        latencies(&rx, 1, 0);
        let mut tick = Instant::now();
        for i in 1..=LATENCY_COMMITS as u64 {
            tick += COMMIT_EVERY;
            std::thread::sleep(tick.saturating_duration_since(Instant::now()));
            w.append(&event(i)).unwrap();
            // What `record --follow` does when its source goes idle after an event.
            w.flush().unwrap();
        }
        let ms = latencies(&rx, 1, LATENCY_COMMITS);
        report("record leg -> play DIR --follow (inotify)", ms, Some(50.0));
        w.finish().unwrap();
    }
    // daemon -> record --follow -> serve --follow -> play replayscope:// --follow
    {
        let d = statehouse::start().expect("statehoused");
        commit_paced(d.port, "a", 1).join().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("live");
        let _rec = spawn(&[
            "record",
            &d.url,
            "--agent",
            "bench/a",
            "--follow",
            "-o",
            dir.to_str().unwrap(),
        ]);
        wait_for_segment(&dir);
        let (_srv, addr) = serve(&dir);
        let (_f, rx) = follower(&["play", &format!("replayscope://{addr}"), "--follow"]);
        latencies(&rx, 1, 0);
        let writer = commit_paced(d.port, "a", LATENCY_COMMITS);
        let ms = latencies(&rx, 1, LATENCY_COMMITS);
        writer.join().unwrap();
        report("whole chain -> remote viewer", ms, None);
    }
}

fn serve(dir: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(dir)
        .args(["--follow", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving::serving_address(&mut child);
    (Proc(child), addr)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

const CPU_WINDOW_COMMITS: usize = 400;

/// Daemon CPU seconds while the writer commits for 8 s with the given followers running.
fn daemon_cpu(d: &statehouse::Daemon, setup: impl FnOnce(&statehouse::Daemon) -> Vec<Proc>) -> f64 {
    let followers = setup(d);
    // Let every follower finish its first snapshot.
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_seconds(d.pid());
    commit_paced(d.port, "a", CPU_WINDOW_COMMITS)
        .join()
        .unwrap();
    let used = cpu_seconds(d.pid()) - before;
    drop(followers);
    used
}

fn cpu(history: usize) {
    let seconds = CPU_WINDOW_COMMITS as f64 * COMMIT_EVERY.as_secs_f64();
    println!(
        "daemon CPU while {CPU_WINDOW_COMMITS} commits land over {seconds:.0} s (history: {history} transactions)"
    );
    let fresh = || {
        let d = statehouse::start().expect("statehoused");
        // A history every Replay call loads.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = StatehouseClient::connect(
                &format!("127.0.0.1:{}", d.port),
                Default::default(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            for i in 0..history {
                commit_now(&client, "a", i).await;
            }
        });
        d
    };
    let direct = |n: usize| {
        move |d: &statehouse::Daemon| -> Vec<Proc> {
            (0..n)
                .map(|_| {
                    let f = Command::new(BIN)
                        .args([
                            "play", &d.url, "--agent", "bench/a", "--follow", "--format", "none",
                        ])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    Proc(f)
                })
                .collect()
        }
    };
    let none = daemon_cpu(&fresh(), |_| Vec::new());
    let one = daemon_cpu(&fresh(), direct(1));
    let sixteen = daemon_cpu(&fresh(), direct(16));
    let tmp = tempfile::tempdir().unwrap();
    let through_serve = daemon_cpu(&fresh(), |d| {
        let dir = tmp.path().join("fan-out");
        let rec = spawn(&[
            "record",
            &d.url,
            "--agent",
            "bench/a",
            "--follow",
            "-o",
            dir.to_str().unwrap(),
        ]);
        wait_for_segment(&dir);
        let (srv, addr) = serve(&dir);
        let url = format!("replayscope://{addr}");
        let mut procs = vec![rec, srv];
        for _ in 0..16 {
            procs.push(spawn(&["play", &url, "--follow", "--format", "none"]));
        }
        procs
    });
    let row = |what: &str, s: f64| {
        println!(
            "{what:<44} {s:>6.2} s CPU  ({:>5.1} % of one core; {:>4.2}x no follower)",
            s / seconds * 100.0,
            s / none.max(0.01)
        );
    };
    row("no follower (the writer alone)", none);
    row("1 direct follower", one);
    row("16 direct followers", sixteen);
    row("16 viewers through record + serve", through_serve);
    let verdict = if through_serve <= one * 1.15 {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "16 viewers through serve / 1 direct follower: {:.2}x (floor <= 1x, 15 % noise allowed: {verdict})",
        through_serve / one.max(0.01)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = support::arg(&args, "--only");
    if only.as_deref().is_none_or(|o| o == "latency") {
        latency();
    }
    if only.as_deref().is_none_or(|o| o == "cpu") {
        let history = support::arg(&args, "--history").map_or(2000, |h| h.parse().unwrap());
        cpu(history);
    }
}
