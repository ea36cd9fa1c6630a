//! `replayscope serve` over loopback: throughput of statehouse.v1 Replay (one event per message)
//! and of replayscope.v1 Session (batched, acked), with the client decoding every event; time to
//! first event on the 10M archive; server peak RSS with 1 and 16 concurrent streams; the cost
//! of checking the hash chain (scan, play, serve, remote play with and without `--no-verify`).
//!
//! The server is the real binary in its own process (`replayscope serve … --listen
//! 127.0.0.1:0`); the client runs here on a 2-worker tokio runtime.
//!
//! ```sh
//! cargo bench --bench serve                       # everything (builds the archives on first run)
//! cargo bench --bench serve -- --only throughput  # or: limit, ttfe, rss, remote, integrity
//! cargo bench --bench serve -- --only limit --on big --runs 5  # small, mid, big
//! cargo bench --bench serve -- --only limit --on big --calls session --clients own  # to profile one
//! cargo bench --bench serve -- --only source --runs 5  # the server's reading alone, no network
//! ```

#[path = "limit.rs"]
mod limit;
#[path = "support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use replayscope::archive::{Archive, ArchiveWriter, OpenOptions, WriterOptions};
use replayscope::event::wire::{NameCache, decode_event};
use replayscope::event::{Event, ObjectValue, Operation};
use replayscope::wire::client::{Client, ConnectOptions};
use replayscope::wire::codec::InFrame;
use replayscope::wire::proto::replayscope::v1 as pb;
use replayscope::wire::proto::statehouse::v1::ReplayRequest;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data")
}

/// One agent, one small operation per transaction: ~90-byte events.
fn ensure_small_archive(path: &Path, events: u64) {
    if path.exists() {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    let mut w = ArchiveWriter::create(&tmp, WriterOptions::default()).unwrap();
    let ns: Arc<str> = Arc::from("bench");
    let agent: Arc<str> = Arc::from("agent-0");
    for i in 0..events {
        let mut obj = serde_json::Map::new();
        obj.insert("n".into(), serde_json::Value::from(i % 1000));
        obj.insert("ok".into(), serde_json::Value::Bool(i % 3 == 0));
        let e = Event {
            offset: i,
            txn_id: format!("tx-{i:08x}"),
            commit_ts: i + 1,
            commit_time_ns: Some(1_790_000_000_000_000_000 + i * 1_000_000),
            namespace: ns.clone(),
            agent_id: agent.clone(),
            operations: vec![Operation {
                key: Arc::from(format!("counter/{}", i % 64)),
                value: Some(ObjectValue::from_object(obj)),
                version: i / 64 + 1,
            }],
        };
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A `replayscope serve` process; killed on drop.
struct ServerProcess {
    child: Child,
    addr: String,
    /// What it logged after it started listening.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn start(archive: &Path, extra: &[&str]) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_replayscope"));
        command
            .arg("serve")
            .arg(archive)
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(if extra.contains(&"--log") {
                &[][..]
            } else {
                &["--log", "info"][..]
            })
            .args(extra)
            .env("NO_COLOR", "1");
        ServerProcess::spawn(command)
    }

    /// The in-memory limit server (this bench, re-executed) holding one agent's events.
    fn limit(archive: &Path, namespace: &str, agent: &str) -> ServerProcess {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.env(
            limit::LIMIT_ENV,
            format!("{}\t{namespace}\t{agent}", archive.display()),
        );
        ServerProcess::spawn(command)
    }

    /// Starts a server process that prints `serving on ADDR` on stderr when it listens.
    fn spawn(mut command: Command) -> ServerProcess {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start replayscope serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.split("serving on ").nth(1) {
                let clean: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                break clean;
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess { child, addr, log }
    }

    /// CPU time the process has used (user + system), seconds.
    fn cpu_secs(&self) -> f64 {
        cpu_secs_of(&self.child.id().to_string())
    }

    fn vm_hwm_mib(&self) -> f64 {
        proc_status_kb(self.child.id(), "VmHWM:") as f64 / 1024.0
    }

    fn vm_rss_mib(&self) -> f64 {
        proc_status_kb(self.child.id(), "VmRSS:") as f64 / 1024.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// (events, payload bytes, seconds) of a whole Replay, decoding each event.
async fn replay_run(client: &Client, ns: &str, agent: &str) -> (u64, u64, f64) {
    let start = Instant::now();
    let mut s = client
        .replay_raw(ReplayRequest {
            namespace: ns.into(),
            agent_id: agent.into(),
            start_ts: None,
            end_ts: None,
        })
        .await
        .unwrap();
    let mut names = NameCache::default();
    let (mut n, mut bytes, mut check) = (0u64, 0u64, 0u64);
    while let Some(m) = s.message().await.unwrap() {
        let e = decode_event(&m, &mut names).unwrap();
        check = check.wrapping_add(e.commit_ts + e.operations.len() as u64);
        n += 1;
        bytes += m.len() as u64;
    }
    std::hint::black_box(check);
    (n, bytes, start.elapsed().as_secs_f64())
}

/// (events, payload bytes, seconds) of a whole Session, decoding each event, acking each batch.
async fn session_run(client: &Client, open: pb::Open) -> (u64, u64, f64) {
    let start = Instant::now();
    let mut s = client.session(open).await.unwrap();
    let mut names = NameCache::default();
    let (mut n, mut bytes, mut check) = (0u64, 0u64, 0u64);
    loop {
        match s.next().await.unwrap().expect("End") {
            InFrame::Events { events, epoch, .. } => {
                let mut last = 0;
                for m in &events {
                    let e = decode_event(m, &mut names).unwrap();
                    check = check.wrapping_add(e.commit_ts + e.operations.len() as u64);
                    last = e.offset;
                    bytes += m.len() as u64;
                }
                n += events.len() as u64;
                s.ack(last, epoch).await;
            }
            InFrame::Frame(pb::ServerFrame {
                frame: Some(pb::server_frame::Frame::End(_)),
            }) => break,
            InFrame::Frame(_) => {}
        }
    }
    std::hint::black_box(check);
    (n, bytes, start.elapsed().as_secs_f64())
}

fn line(what: &str, (n, bytes, secs): (u64, u64, f64)) {
    println!(
        "{what:<58} {n:>10} events in {secs:>6.2} s = {:>10.0} events/s, {:>6.1} MB/s ({:.0} B/event)",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / n.max(1) as f64
    );
}

fn offset_pos(o: u64) -> Option<pb::Position> {
    Some(pb::Position {
        at: Some(pb::position::At::Offset(o)),
    })
}

async fn throughput(small: &Path, big: &Path) {
    println!(
        "## throughput (loopback, client decodes every event), each run followed by the same call to the in-memory limit server"
    );
    let ratio = |served: (u64, u64, f64), limit: (u64, u64, f64)| {
        assert_eq!(
            served.0, limit.0,
            "serve and the limit server sent different counts"
        );
        println!(
            "{:>58} ratio to the limit {:.2}",
            "",
            (served.0 as f64 / served.2) / (limit.0 as f64 / limit.2)
        );
    };
    for (label, path) in [("small events", small), ("10M gen archive", big)] {
        let server = ServerProcess::start(path, &[]);
        let client = Client::connect(&server.addr, ConnectOptions::default())
            .await
            .unwrap();
        let archive = Archive::open(path, OpenOptions::default()).unwrap();
        // The busiest agent for Replay (one agent per call, like Statehouse).
        let counts = archive.channel_counts();
        let busiest = (0..counts.len()).max_by_key(|&i| counts[i]).unwrap();
        let ch = &archive.channels()[busiest];
        let limit = ServerProcess::limit(path, &ch.namespace, &ch.agent_id);
        let limit_client = Client::connect(&limit.addr, ConnectOptions::default())
            .await
            .unwrap();
        for run in 1..=3 {
            let served = replay_run(&client, &ch.namespace, &ch.agent_id).await;
            line(
                &format!(
                    "{label}: Replay {}/{} (run {run})",
                    ch.namespace, ch.agent_id
                ),
                served,
            );
            let limited = replay_run(&limit_client, &ch.namespace, &ch.agent_id).await;
            line("  limit server", limited);
            ratio(served, limited);
        }
        drop((limit_client, limit));
        let limit = ServerProcess::limit(path, "", "");
        let limit_client = Client::connect(&limit.addr, ConnectOptions::default())
            .await
            .unwrap();
        for run in 1..=3 {
            let served = session_run(&client, pb::Open::default()).await;
            line(
                &format!("{label}: Session, every agent, 64 MiB window (run {run})"),
                served,
            );
            let limited = session_run(&limit_client, pb::Open::default()).await;
            line("  limit server", limited);
            ratio(served, limited);
        }
        println!("{label}: server peak RSS {:.1} MiB", server.vm_hwm_mib());
    }
}

/// Time to first event; with `no_verify`, of a server that does not check the hash chain (what
/// checking the first group costs).
async fn ttfe(big: &Path, no_verify: bool) {
    println!(
        "## time to first event, 10M archive (connected client, 200 random start points, 600-event ranges){}",
        if no_verify { ", serve --no-verify" } else { "" }
    );
    // The server traces, for every stream, when it hands its first event to tonic.
    let mut args = vec!["--log", "info,replayscope::server=debug"];
    if no_verify {
        args.push("--no-verify");
    }
    let server = ServerProcess::start(big, &args);
    let client = Client::connect(&server.addr, ConnectOptions::default())
        .await
        .unwrap();
    let archive = Archive::open(big, OpenOptions::default()).unwrap();
    let last = archive.last_offset().unwrap();
    let ch = archive.channels()[0].clone();
    let mut rng = replayscope::event::generate::Rng::new(42);
    let (mut replay, mut session) = (vec![], vec![]);
    // Each call asks for a short range and reads it to the end, so one call's read-ahead does
    // not overlap the next call.
    let ts_of = |o: u64| {
        archive
            .cursor_at(o)
            .unwrap()
            .next_raw()
            .unwrap()
            .unwrap()
            .commit_ts
    };
    for _ in 0..200 {
        let at = rng.below(last - 1_000);
        let (ts, end_ts) = (ts_of(at), ts_of(at + 600));
        let start = Instant::now();
        let mut s = client
            .replay_raw(ReplayRequest {
                namespace: ch.namespace.clone(),
                agent_id: ch.agent_id.clone(),
                start_ts: Some(ts),
                end_ts: Some(end_ts),
            })
            .await
            .unwrap();
        let first: Option<Bytes> = s.message().await.unwrap();
        replay.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(first.is_some());
        while s.message().await.unwrap().is_some() {}

        let start = Instant::now();
        let mut s = client
            .session(pb::Open {
                from: offset_pos(at),
                until: offset_pos(at + 600),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut first = true;
        loop {
            match s.next().await.unwrap().unwrap() {
                InFrame::Events { events, epoch, .. } => {
                    if first {
                        session.push(start.elapsed().as_secs_f64() * 1e3);
                        first = false;
                    }
                    let last = decode_event(events.last().unwrap(), &mut NameCache::default())
                        .unwrap()
                        .offset;
                    s.ack(last, epoch).await;
                }
                InFrame::Frame(pb::ServerFrame {
                    frame: Some(pb::server_frame::Frame::End(_)),
                }) => break,
                InFrame::Frame(_) => {}
            }
        }
    }
    // Server side: from the call to the first event handed to tonic (the rest of what the
    // client sees is transport and scheduling). The trace lines arrive through a pipe: wait
    // for one per call (at most 5 s, then report what came).
    let calls = replay.len() + session.len();
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while Instant::now() < deadline {
        let traced = server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(" first event"))
            .count();
        if traced >= calls {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // (ms to the first event, ms of it until the read was positioned) per traced call.
    let traced = |what: &str| -> Vec<(f64, f64)> {
        let ms = |l: &str, field: &str| -> Option<f64> {
            let v = l.split(field).nth(1)?;
            let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<f64>().ok().map(|us| us / 1e3)
        };
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .filter_map(|l| Some((ms(l, "after_us=")?, ms(l, "positioned_us=")?)))
            .collect()
    };
    let (replay_trace, session_trace) =
        (traced("Replay first event"), traced("Session first event"));
    let total = |t: &[(f64, f64)]| t.iter().map(|(a, _)| *a).collect::<Vec<_>>();
    let (server_replay, server_session) = (total(&replay_trace), total(&session_trace));
    for (what, mut v) in [
        ("Replay (start_ts)", replay),
        ("Session (Open from offset)", session),
        ("  server side: Replay", server_replay),
        ("  server side: Session", server_session),
    ] {
        if v.is_empty() {
            println!("{what:<28} no samples");
            continue;
        }
        v.sort_by(f64::total_cmp);
        println!(
            "{what:<28} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} calls)",
            support::percentile(&v, 0.5),
            support::percentile(&v, 0.99),
            v.last().unwrap(),
            v.len()
        );
    }
    // The slow calls: how much of their wait was positioning the read (the seek), the rest
    // being the first batch read and handed to tonic.
    for (what, mut t) in [("Replay", replay_trace), ("Session", session_trace)] {
        t.sort_by(|a, b| b.0.total_cmp(&a.0));
        let slowest: Vec<String> = t
            .iter()
            .take(3)
            .map(|(all, seek)| format!("{all:.2} ms ({seek:.2} positioning)"))
            .collect();
        println!("  server side, {what}'s 3 slowest: {}", slowest.join(", "));
    }
}

async fn rss(big: &Path) {
    println!(
        "## server RSS, 10M archive, Session streams of 1,000,000 events each (64 MiB window, 64 MiB ring)"
    );
    let archive = Archive::open(big, OpenOptions::default()).unwrap();
    let last = archive.last_offset().unwrap();
    for streams in [1usize, 16] {
        let server = ServerProcess::start(big, &[]);
        let client = Client::connect(&server.addr, ConnectOptions::default())
            .await
            .unwrap();
        client.describe().await.unwrap();
        let idle = server.vm_rss_mib();
        let start = Instant::now();
        let mut tasks = vec![];
        for i in 0..streams {
            let client = client.clone();
            let from = (last - 1_000_000) / streams as u64 * i as u64;
            tasks.push(tokio::spawn(async move {
                session_run(
                    &client,
                    pb::Open {
                        from: offset_pos(from),
                        until: offset_pos(from + 999_999),
                        ..Default::default()
                    },
                )
                .await
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap().0;
        }
        let secs = start.elapsed().as_secs_f64();
        let hwm = server.vm_hwm_mib();
        let floor = 64.0 + streams as f64 * 2.0 * 64.0;
        println!(
            "{streams:>2} Session stream(s): idle {idle:.1} MiB, peak {hwm:.1} MiB = {:.1} MiB per stream above idle (floor: peak <= {floor:.0} MiB); {total} events in {secs:.1} s = {:.0} events/s",
            (hwm - idle) / streams as f64,
            total as f64 / secs
        );

        // The same number of Replay streams (no window, no ring: HTTP/2 flow control only).
        let server = ServerProcess::start(big, &[]);
        let client = Client::connect(&server.addr, ConnectOptions::default())
            .await
            .unwrap();
        client.describe().await.unwrap();
        let idle = server.vm_rss_mib();
        let mut tasks = vec![];
        for i in 0..streams {
            let client = client.clone();
            let ch = archive.channels()[i % archive.channels().len()].clone();
            tasks.push(tokio::spawn(async move {
                replay_run(&client, &ch.namespace, &ch.agent_id).await
            }));
        }
        let mut total = 0;
        let start = Instant::now();
        for t in tasks {
            total += t.await.unwrap().0;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{streams:>2} Replay stream(s) (whole agents): idle {idle:.1} MiB, peak {:.1} MiB; {total} events in {secs:.1} s",
            server.vm_hwm_mib()
        );
    }
}

/// `replayscope play SOURCE --format none` wall time (seconds) and its report.
fn play_secs(source: &str, extra: &[&str]) -> (f64, serde_json::Value) {
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .args(["play", source, "--format", "none"])
        .args(extra)
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let report = serde_json::from_str(&err[err.find('{').unwrap()..]).unwrap();
    (secs, report)
}

/// Remote play (both protocols) vs local play of the same archive, and the time from a server
/// restart to the next event at a client that was playing.
fn remote(big: &Path) {
    println!(
        "## remote play vs local play, 10M archive (`play --format none`, wall time of the process)"
    );
    let server = ServerProcess::start(big, &[]);
    let archive = Archive::open(big, OpenOptions::default()).unwrap();
    let counts = archive.channel_counts();
    let busiest = (0..counts.len()).max_by_key(|&i| counts[i]).unwrap();
    let ch = &archive.channels()[busiest];
    let agent = format!("{}/{}", ch.namespace, ch.agent_id);
    let big_s = big.display().to_string();
    for (what, source, extra) in [
        ("local archive, every agent", big_s.clone(), vec![]),
        (
            "replayscope://, every agent",
            format!("replayscope://{}", server.addr),
            vec![],
        ),
        (
            "local archive, one agent",
            big_s.clone(),
            vec!["--agent", agent.as_str()],
        ),
        (
            "replayscope://, one agent",
            format!("replayscope://{}", server.addr),
            vec!["--agent", agent.as_str()],
        ),
        (
            "statehouse://, one agent (incl. the scan at connect)",
            format!("statehouse://{}", server.addr),
            vec!["--agent", agent.as_str()],
        ),
    ] {
        let (secs, report) = play_secs(&source, &extra);
        let n = report["events_sent"].as_u64().unwrap();
        println!(
            "{what:<55} {n:>9} events in {secs:>6.2} s = {:>9.0} events/s",
            n as f64 / secs
        );
    }
    drop(server);

    println!(
        "## reconnect: server killed and restarted, time from the new server listening to the next event"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("replayscope-reconnect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut samples = vec![];
    for (proto, extra) in [
        ("replayscope", vec![]),
        ("statehouse", vec!["--agent", agent.as_str()]),
    ] {
        for _ in 0..5 {
            let server = ServerProcess::start(big, &["--listen", &listen]);
            let out = dir.join("out.jsonl");
            let _ = std::fs::remove_file(&out);
            let mut player = Command::new(env!("CARGO_BIN_EXE_replayscope"))
                .args([
                    "play",
                    &format!("{proto}://{listen}"),
                    "--pace",
                    "rate",
                    "--rate",
                    "50000",
                    "-o",
                ])
                .arg(&out)
                .args(&extra)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let size = || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            while size() < 2_000_000 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(server);
            // Wait until the client has drained what it had buffered.
            let mut last = size();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let now = size();
                if now == last {
                    break;
                }
                last = now;
            }
            let server = ServerProcess::start(big, &["--listen", &listen]);
            let ready = Instant::now();
            while size() == last {
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            samples.push((proto, ready.elapsed().as_secs_f64() * 1e3));
            let _ = player.kill();
            let _ = player.wait();
            drop(server);
        }
    }
    for proto in ["replayscope", "statehouse"] {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|(p, _)| *p == proto)
            .map(|(_, t)| *t)
            .collect();
        v.sort_by(f64::total_cmp);
        println!(
            "{proto}://  restart -> next event: min {:.0} ms, median {:.0} ms, max {:.0} ms (5 restarts; includes the client's backoff wait)",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if let Ok(spec) = std::env::var(limit::LIMIT_ENV) {
        limit::serve(&spec);
    }
    let args: Vec<String> = std::env::args().collect();
    let only = support::arg(&args, "--only");
    let small_events: u64 = support::arg(&args, "--events")
        .map(|v| v.parse().unwrap())
        .unwrap_or(5_000_000);
    let small = data_dir().join(format!("small-{small_events}.mcap"));
    let big = data_dir().join("gen-10000000.mcap");
    ensure_small_archive(&small, small_events);
    support::ensure_archive(&big, 10_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let want = |m: &str| only.as_deref().is_none_or(|o| o == m);
        if want("limit") {
            let runs = support::arg(&args, "--runs").map_or(3, |v| v.parse().unwrap());
            let mid = data_dir().join("gen-2000000.mcap");
            support::ensure_archive(&mid, 2_000_000);
            // `--on small,mid,big` (all by default).
            let on = support::arg(&args, "--on").unwrap_or_else(|| "small,mid,big".into());
            let archives: Vec<&Path> = [("small", &small), ("mid", &mid), ("big", &big)]
                .into_iter()
                .filter(|(name, _)| on.split(',').any(|o| o == *name))
                .map(|(_, p)| p.as_path())
                .collect();
            // `--calls replay,session` and `--clients own,prost` (all by default).
            let pick = |flag: &str| support::arg(&args, flag).unwrap_or_default().to_lowercase();
            let (calls, clients) = (pick("--calls"), pick("--clients"));
            let picked =
                |list: &str, name: &str| list.is_empty() || list.split(',').any(|o| o == name);
            let calls: Vec<Call> = [Call::Replay, Call::Session]
                .into_iter()
                .filter(|c| picked(&calls, &format!("{c:?}").to_lowercase()))
                .collect();
            let clients: Vec<Decoding> = [Decoding::Own, Decoding::Prost]
                .into_iter()
                .filter(|d| picked(&clients, &format!("{d:?}").to_lowercase()))
                .collect();
            against_limit(&archives, runs, &calls, &clients).await;
        }
        if want("source") {
            let runs = support::arg(&args, "--runs").map_or(3, |v| v.parse().unwrap());
            source_alone(&big, runs).await;
        }
        if want("throughput") {
            throughput(&small, &big).await;
        }
        if want("ttfe") {
            ttfe(&big, false).await;
            ttfe(&big, true).await;
        }
        if want("rss") {
            rss(&big).await;
        }
    });
    if only.as_deref().is_none_or(|o| o == "remote") {
        remote(&big);
    }
    if only.as_deref().is_none_or(|o| o == "integrity") {
        rt.block_on(integrity(&big));
    }
}

/// CPU time process `pid` (a number, or `self`) has used (user + system), seconds.
fn cpu_secs_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime and stime are the 12th and
    // 13th, in clock ticks (100 per second on Linux).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// The server's reading alone: the busiest agent of the 10M archive streamed from an archive
/// source whose chunk cache holds it, into the stored batches Replay and Session send (a
/// Session's kept: copied out of chunks shared with other agents), taken as they come, with no
/// network, no encoding and no client. CPU per event of the producer and cursor, which a
/// change to them moves more visibly than the whole server's.
async fn source_alone(big: &Path, runs: usize) {
    use replayscope::flow::CreditWindow;
    use replayscope::source::{ArchiveSource, ChainCheck, Filter, Source, StreamRequest};
    let archive = Archive::open(big, OpenOptions::default()).unwrap();
    archive.set_cache_budget(2 << 30);
    let source = ArchiveSource::new(archive);
    let (namespace, agent_id, events) = source
        .info()
        .channels
        .iter()
        .max_by_key(|c| c.2)
        .cloned()
        .unwrap();
    // 4 reads of the agent per run: enough CPU time for the clock's 10 ms ticks.
    const READS: u64 = 4;
    let read = |keep: bool| {
        let source = &source;
        let (namespace, agent_id) = (namespace.clone(), agent_id.clone());
        async move {
            let window = CreditWindow::new(64 << 20);
            let req = StreamRequest {
                from: 0,
                filter: Filter {
                    agent: Some((namespace, agent_id)),
                    ..Filter::default()
                },
                batch_events: 2048,
                first_batch_events: Some(64),
                batch_bytes: Some(256 * 1024),
                compact_payloads: keep,
                chain: ChainCheck::Verify,
                ..StreamRequest::default()
            };
            let mut stream = source.open_stored(req, window.clone()).unwrap();
            let mut n = 0u64;
            while let Some(batch) = stream.recv().await {
                let batch = batch.unwrap();
                if let Some(last) = batch.events.last() {
                    window.ack(last.offset);
                }
                n += batch.events.len() as u64;
            }
            n
        }
    };
    println!(
        "## the server's reading alone: {agent_id} of {} ({events} events) from the chunk cache into stored batches, {READS} reads per run, {runs} runs",
        big.display()
    );
    // Each twice, alternating: the first pass can still carry the warm-up read's after-effects.
    let modes = [("as Replay (slices)", false), ("as Session (kept)", true)];
    for (what, keep) in modes.into_iter().chain(modes) {
        assert_eq!(read(keep).await, events, "warm-up read");
        let mut ns = Vec::new();
        let mut rates = Vec::new();
        for _ in 0..runs {
            let (cpu, start) = (cpu_secs_of("self"), Instant::now());
            for _ in 0..READS {
                assert_eq!(read(keep).await, events);
            }
            let (cpu, wall) = (cpu_secs_of("self") - cpu, start.elapsed().as_secs_f64());
            ns.push(cpu * 1e9 / (events * READS) as f64);
            rates.push((events * READS) as f64 / wall / 1e6);
        }
        ns.sort_by(f64::total_cmp);
        rates.sort_by(f64::total_cmp);
        println!(
            "{what}: CPU {:.0} [{:.0}-{:.0}] ns/event, {:.2} [{:.2}-{:.2}] M events/s",
            ns[ns.len() / 2],
            ns[0],
            ns[ns.len() - 1],
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
}

/// (events, seconds) of a whole Session whose client only counts what it receives (so the
/// server is what is measured), acking each batch.
async fn session_count(client: &Client) -> (u64, f64) {
    let start = Instant::now();
    let mut s = client.session(pb::Open::default()).await.unwrap();
    let mut n = 0u64;
    loop {
        match s.next().await.unwrap().expect("End") {
            InFrame::Events { events, epoch, .. } => {
                n += events.len() as u64;
                let last = pb::ArchivedEvent::decode(events.last().unwrap().clone())
                    .unwrap()
                    .offset;
                s.ack(last, epoch).await;
            }
            InFrame::Frame(pb::ServerFrame {
                frame: Some(pb::server_frame::Frame::End(_)),
            }) => break,
            InFrame::Frame(_) => {}
        }
    }
    (n, start.elapsed().as_secs_f64())
}

/// Every stored event read in order (CRC checked, nothing decoded), with or without the chain:
/// (events, seconds, payload bytes).
fn scan_secs(path: &Path, verify: bool) -> (u64, f64, u64) {
    let start = Instant::now();
    let archive = Archive::open(path, OpenOptions::default()).unwrap();
    let mut cursor = archive.cursor().unwrap().verify_chain(verify);
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(raw) = cursor.next_raw() {
        bytes += raw.unwrap().payload.len() as u64;
        n += 1;
    }
    (n, start.elapsed().as_secs_f64(), bytes)
}

/// One step of the hash chain (`h = BLAKE3(h || payload)`) over a payload of `len` bytes, on
/// one core: nanoseconds per event, the floor of what verification costs.
fn chain_step_ns(len: usize) -> f64 {
    let payload = vec![0x5au8; len];
    let mut chain = replayscope::archive::integrity::HashChain::new();
    let n = 2_000_000;
    let start = Instant::now();
    for _ in 0..n {
        chain.push(&payload);
    }
    std::hint::black_box(chain.head());
    start.elapsed().as_secs_f64() / n as f64 * 1e9
}

/// The cost of integrity by default: scan, local play, serve (Session) and remote play of the
/// 10M archive with the hash chain checked (the default) and with `--no-verify`, interleaved,
/// three rounds; throughput with verification as a ratio of throughput without.
async fn integrity(big: &Path) {
    println!(
        "## integrity: hash chain checked (default) vs --no-verify, 10M archive, 3 interleaved rounds"
    );
    let big_s = big.display().to_string();
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("scan (read, CRC, no decode)", vec![], vec![]),
        ("play --format none (local)", vec![], vec![]),
        ("serve: one Session, every agent", vec![], vec![]),
        ("play replayscope:// --format none", vec![], vec![]),
    ];
    let mut mean_payload = 0;
    for round in 1..=3 {
        for verify in [true, false] {
            let no_verify: &[&str] = if verify { &[] } else { &["--no-verify"] };
            let mut rates = vec![];
            let (n, secs, bytes) = scan_secs(big, verify);
            rates.push(n as f64 / secs);
            mean_payload = bytes / n.max(1);
            let (secs, report) = play_secs(&big_s, no_verify);
            rates.push(report["events_sent"].as_u64().unwrap() as f64 / secs);
            let server = ServerProcess::start(big, no_verify);
            let client = Client::connect(&server.addr, ConnectOptions::default())
                .await
                .unwrap();
            let (n, secs) = session_count(&client).await;
            rates.push(n as f64 / secs);
            let url = format!("replayscope://{}", server.addr);
            let (secs, report) = play_secs(&url, no_verify);
            rates.push(report["events_sent"].as_u64().unwrap() as f64 / secs);
            drop(server);
            let label = if verify { "verify" } else { "no-verify" };
            println!(
                "round {round} {label:<9}: scan {:.0}, play {:.0}, serve {:.0}, remote play {:.0} events/s",
                rates[0], rates[1], rates[2], rates[3]
            );
            for (row, rate) in rows.iter_mut().zip(rates) {
                if verify {
                    row.1.push(rate)
                } else {
                    row.2.push(rate)
                }
            }
        }
    }
    let steps: Vec<f64> = (0..3)
        .map(|_| chain_step_ns(mean_payload as usize))
        .collect();
    println!(
        "one chain step over a {mean_payload}-byte payload (the archive's mean), one core: {:.0} ns ({:.0}–{:.0})",
        steps[1],
        steps.iter().copied().fold(f64::MAX, f64::min),
        steps.iter().copied().fold(0.0, f64::max)
    );
    println!();
    println!(
        "| 10M events | verified (default), events/s | --no-verify, events/s | ratio (verified / not) |"
    );
    println!("|---|---|---|---|");
    let span = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let median = {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        (median, lo, hi)
    };
    for (what, on, off) in &rows {
        let ((m_on, lo_on, hi_on), (m_off, lo_off, hi_off)) = (span(on), span(off));
        let ratios: Vec<f64> = on.iter().zip(off).map(|(a, b)| a / b).collect();
        let (r, rlo, rhi) = span(&ratios);
        println!(
            "| {what} | {:.0}k ({:.0}k–{:.0}k) | {:.0}k ({:.0}k–{:.0}k) | {r:.2} ({rlo:.2}–{rhi:.2}) |",
            m_on / 1e3,
            lo_on / 1e3,
            hi_on / 1e3,
            m_off / 1e3,
            lo_off / 1e3,
            hi_off / 1e3
        );
    }
}

/// Which client decodes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    /// replayscope's client: pass-through codec, `event::wire::decode_event` on every event.
    Own,
    /// The generated tonic/prost clients: every event decoded into prost types, values as
    /// `prost_types::Struct` (what a Statehouse user's Rust client does).
    Prost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Replay,
    Session,
}

/// (events, seconds) of a whole Replay through the generated prost client.
async fn prost_replay_run(channel: tonic::transport::Channel, ns: &str, agent: &str) -> (u64, f64) {
    use replayscope::wire::proto::statehouse::v1::statehouse_service_client::StatehouseServiceClient;
    let start = Instant::now();
    let mut client = StatehouseServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut s = client
        .replay(ReplayRequest {
            namespace: ns.into(),
            agent_id: agent.into(),
            start_ts: None,
            end_ts: None,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut n, mut check) = (0u64, 0u64);
    while let Some(e) = s.message().await.unwrap() {
        check = check.wrapping_add(e.commit_ts + e.operations.len() as u64);
        n += 1;
    }
    std::hint::black_box(check);
    (n, start.elapsed().as_secs_f64())
}

/// (events, seconds) of a whole Session through the generated prost client, acking each batch.
async fn prost_session_run(channel: tonic::transport::Channel, open: pb::Open) -> (u64, f64) {
    use replayscope::wire::proto::replayscope::v1::replay_service_client::ReplayServiceClient;
    let start = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ClientFrame>(64);
    tx.send(pb::ClientFrame {
        frame: Some(pb::client_frame::Frame::Open(open)),
    })
    .await
    .unwrap();
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut client = ReplayServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let mut s = client.session(outbound).await.unwrap().into_inner();
    let (mut n, mut check) = (0u64, 0u64);
    loop {
        match s.message().await.unwrap().expect("End").frame {
            Some(pb::server_frame::Frame::Events(batch)) => {
                for e in &batch.events {
                    check = check.wrapping_add(e.commit_ts + e.operations.len() as u64);
                }
                n += batch.events.len() as u64;
                if let Some(last) = batch.events.last() {
                    let ack = pb::client_frame::Frame::Ack(pb::Ack {
                        through_offset: last.offset,
                        epoch: batch.epoch,
                    });
                    let _ = tx.send(pb::ClientFrame { frame: Some(ack) }).await;
                }
            }
            Some(pb::server_frame::Frame::End(_)) => break,
            _ => {}
        }
    }
    std::hint::black_box(check);
    (n, start.elapsed().as_secs_f64())
}

/// events/s of one whole call of one agent.
async fn agent_rate(
    client: &Client,
    call: Call,
    decoding: Decoding,
    ns: &str,
    agent: &str,
) -> (u64, f64) {
    let open = pb::Open {
        namespace: ns.into(),
        agent_id: agent.into(),
        ..Default::default()
    };
    let (n, secs) = match (call, decoding) {
        (Call::Replay, Decoding::Own) => {
            let (n, _, secs) = replay_run(client, ns, agent).await;
            (n, secs)
        }
        (Call::Session, Decoding::Own) => {
            let (n, _, secs) = session_run(client, open).await;
            (n, secs)
        }
        (Call::Replay, Decoding::Prost) => prost_replay_run(client.channel(), ns, agent).await,
        (Call::Session, Decoding::Prost) => prost_session_run(client.channel(), open).await,
    };
    (n, n as f64 / secs)
}

/// `replayscope serve` against the in-memory limit server holding the same agent's events, with
/// the same client, runs alternating between the two: the busiest agent of each archive.
/// A server's runs: its name, rates, ratios to the limit, server CPU per event.
type Measured = (&'static str, Vec<f64>, Vec<f64>, Vec<f64>);

async fn against_limit(archives: &[&Path], runs: usize, calls: &[Call], clients: &[Decoding]) {
    println!(
        "## Replay and Session vs. the in-memory limit server (busiest agent; {runs} alternating runs each; median, [min-max])"
    );
    for path in archives {
        let archive = Archive::open(path, OpenOptions::default()).unwrap();
        let counts = archive.channel_counts();
        let busiest = (0..counts.len()).max_by_key(|&i| counts[i]).unwrap();
        let ch = archive.channels()[busiest].clone();
        let label = format!(
            "{} ({} of {} events, {} agents)",
            path.file_name().unwrap().to_string_lossy(),
            counts[busiest],
            archive.events(),
            counts.len()
        );
        drop(archive);
        // serve with a chunk cache that holds the agent (warmed by one untimed read of it: a
        // replay of what was read before, as the limit holds it in memory), serve as started
        // by default (no chunk kept beyond a seek's: every read decompresses, a first read),
        // and the limit.
        let warm = ServerProcess::start(path, &["--cache", "2GiB"]);
        let cold = ServerProcess::start(path, &[]);
        let limit = ServerProcess::limit(path, &ch.namespace, &ch.agent_id);
        let connect = |addr: String| async move {
            Client::connect(&addr, ConnectOptions::default())
                .await
                .unwrap()
        };
        let (warm_client, cold_client, limit_client) = (
            connect(warm.addr.clone()).await,
            connect(cold.addr.clone()).await,
            connect(limit.addr.clone()).await,
        );
        agent_rate(
            &warm_client,
            Call::Session,
            Decoding::Own,
            &ch.namespace,
            &ch.agent_id,
        )
        .await;
        for &call in calls {
            for &decoding in clients {
                // Per server: rates, ratios to the limit run beside them, server CPU per event.
                let mut rows: [Measured; 3] = [
                    ("serve --cache 2GiB, second read", vec![], vec![], vec![]),
                    ("serve, first read", vec![], vec![], vec![]),
                    ("limit", vec![], vec![], vec![]),
                ];
                for _ in 0..runs {
                    let mut measured = Vec::new();
                    for (server, client) in [
                        (&warm, &warm_client),
                        (&cold, &cold_client),
                        (&limit, &limit_client),
                    ] {
                        let cpu = server.cpu_secs();
                        let (n, r) =
                            agent_rate(client, call, decoding, &ch.namespace, &ch.agent_id).await;
                        measured.push((n, r, (server.cpu_secs() - cpu) / n as f64 * 1e9));
                    }
                    let (limit_n, limit_rate, _) = measured[2];
                    for (row, (n, r, cpu)) in rows.iter_mut().zip(measured) {
                        assert_eq!(
                            n, limit_n,
                            "serve and the limit server sent different counts"
                        );
                        row.1.push(r);
                        row.2.push(r / limit_rate);
                        row.3.push(cpu);
                    }
                }
                let spread = |v: &mut Vec<f64>, scale: f64| {
                    v.sort_by(f64::total_cmp);
                    format!(
                        "{:.2} [{:.2}-{:.2}]",
                        support::percentile(v, 0.5) / scale,
                        v[0] / scale,
                        v[v.len() - 1] / scale
                    )
                };
                for (name, rates, ratios, cpu) in &mut rows {
                    println!(
                        "{label}: {call:?}, {decoding:?} client, {name}: {} M/s, ratio {}, server CPU {} ns/event",
                        spread(rates, 1e6),
                        spread(ratios, 1.0),
                        spread(cpu, 1.0),
                    );
                }
            }
        }
    }
}
