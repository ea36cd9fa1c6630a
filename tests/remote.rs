//! `replayscope://` sources: `play` through a real `replayscope serve` (in this process on
//! 127.0.0.1:0, or as its own process when it must be killed) equals local play, positions are
//! resolved by the server, and a server killed and restarted mid-play is survived with no gap
//! and no duplicate.

#[path = "support/serving.rs"]
mod serving;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use replayscope::archive::{Archive, OpenOptions};
use replayscope::server::{ServeOptions, Server};
use replayscope::source::ArchiveSource;
use tokio_util::sync::CancellationToken;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap");

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_replayscope"))
}

fn play(source: &str, extra: &[&str]) -> Output {
    bin()
        .args(["play", source])
        .args(extra)
        .output()
        .expect("play runs")
}

fn report(o: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&o.stderr);
    let start = err.find('{').expect("a JSON report on stderr");
    serde_json::from_str(&err[start..]).unwrap()
}

/// A server in this process (a runtime of its own), stopped on drop.
struct InProcess {
    addr: String,
    stop: CancellationToken,
    rt: Option<tokio::runtime::Runtime>,
}

impl InProcess {
    fn start(archive: &str) -> InProcess {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let addr = rt.block_on(async {
            let server = Server::bind(
                Arc::new(ArchiveSource::new(
                    Archive::open(Path::new(archive), OpenOptions::default()).unwrap(),
                )),
                ServeOptions {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    ..ServeOptions::default()
                },
            )
            .await
            .unwrap();
            let addr = server.local_addr();
            tokio::spawn(server.run(stop.clone()));
            addr
        });
        InProcess {
            addr: format!("replayscope://{addr}"),
            stop,
            rt: Some(rt),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

#[test]
fn remote_play_equals_local_play() {
    let server = InProcess::start(SAMPLE);
    for extra in [
        &["--format", "jsonl"][..],
        &["--format", "jsonl", "--from", "1234", "--until", "4321"],
        &["--format", "jsonl", "--from", "@2000", "--until", "@5000"],
        &[
            "--format",
            "jsonl",
            "--from",
            "2026-11-02T09:10:00Z",
            "--until",
            "2026-11-02T09:20:00.5Z",
        ],
        &["--format", "none", "--state-hash"],
        &[
            "--format",
            "jsonl",
            "--agent",
            "support/triage-d814",
            "--key-prefix",
            "memory/",
        ],
    ] {
        let local = play(SAMPLE, extra);
        let remote = play(&server.addr, extra);
        assert!(
            local.status.success(),
            "{}",
            String::from_utf8_lossy(&local.stderr)
        );
        assert!(
            remote.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&remote.stderr)
        );
        assert!(
            local.stdout == remote.stdout,
            "{extra:?}: remote output differs"
        );
        let (l, r) = (report(&local), report(&remote));
        for k in ["events_sent", "first_offset", "last_offset", "state_hash"] {
            assert_eq!(l[k], r[k], "{extra:?}: {k}");
        }
        // The hash is computed from the bytes received: a filtered stream has gaps, so its
        // client cannot compute it (the server checked the chain over what it read).
        if extra.contains(&"--agent") {
            assert!(l["final_hash"].is_string(), "{extra:?}");
            assert!(r["final_hash"].is_null(), "{extra:?}: {}", r["final_hash"]);
        } else {
            assert_eq!(l["final_hash"], r["final_hash"], "{extra:?}: final_hash");
        }
    }
}

#[test]
fn remote_errors_name_the_endpoint() {
    // Nothing listens there (a port just released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("replayscope://127.0.0.1:{port}");
    let o = play(&url, &["--format", "none", "--retries", "0"]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&url) && err.contains("cannot connect"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // With retries, each attempt is logged and the error says it gave up.
    let o = play(&url, &["--format", "none", "--retries", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("connecting (attempt 2"), "{err}");
    assert!(err.contains("gave up after 2 retries"), "{err}");

    let server = InProcess::start(SAMPLE);
    let o = play(&server.addr, &["--format", "none", "--from", "9999"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("0 to 5999"), "names the range: {err}");
}

/// `replayscope serve` as its own process on a given port.
fn serve_process(archive: &str, port: u16) -> Child {
    let mut child = bin()
        .args(["serve", archive, "--listen", &format!("127.0.0.1:{port}")])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("serve exited").unwrap();
        if line.contains("serving on") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn a_server_killed_and_restarted_mid_play_is_survived_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.mcap").display().to_string();
    let o = bin()
        .args(["gen", "--events", "30000", "--seed", "4", "-o", &archive])
        .output()
        .unwrap();
    assert!(o.status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = serve_process(&archive, port);
    let out = dir.path().join("out.jsonl");
    // Paced, so the kill lands mid-play.
    let mut player = bin()
        .args([
            "play",
            &format!("replayscope://127.0.0.1:{port}"),
            "--pace",
            "rate",
            "--rate",
            "20000",
            "-o",
            &out.display().to_string(),
            "--log",
            "warn",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 1_000_000 {
        assert!(Instant::now() < deadline, "play did not start writing");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let mut server = serve_process(&archive, port);
    let status = player.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut player.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("reconnecting (attempt 1"),
        "logs the reconnection: {err}"
    );
    server.kill().unwrap();
    server.wait().unwrap();

    let got = std::fs::read(&out).unwrap();
    let want = bin().args(["export", &archive]).output().unwrap().stdout;
    assert_eq!(
        got.iter().filter(|&&b| b == b'\n').count(),
        30_000,
        "every event exactly once"
    );
    assert!(
        got == want,
        "remote play after a restart equals the archive"
    );
}

#[test]
fn record_writes_the_same_archive_and_a_killed_recorder_is_repairable() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(SAMPLE);
    let out = dir.path().join("copy.mcap").display().to_string();
    let o = bin()
        .args(["record", &server.addr, "-o", &out])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Same offsets, same stored bytes: the same hash chain and the same export.
    let info = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&bin().args(["info", p, "--json"]).output().unwrap().stdout).unwrap()
    };
    assert_eq!(info(&out)["final_hash"], info(SAMPLE)["final_hash"]);
    let export = |p: &str| bin().args(["export", p]).output().unwrap().stdout;
    assert!(export(&out) == export(SAMPLE));
    drop(server);

    // A recorder killed mid-stream leaves a truncated archive that --repair makes valid.
    let big = dir.path().join("big.mcap").display().to_string();
    assert!(
        bin()
            .args(["gen", "--events", "300000", "--seed", "8", "-o", &big])
            .output()
            .unwrap()
            .status
            .success()
    );
    let server = InProcess::start(&big);
    let rec = dir.path().join("rec.mcap");
    let mut recorder = bin()
        .args([
            "record",
            &server.addr,
            "-o",
            &rec.display().to_string(),
            "--flush-interval",
            "50ms",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&rec).map(|m| m.len()).unwrap_or(0) < 2_000_000 {
        assert!(Instant::now() < deadline, "the recorder wrote nothing");
        std::thread::sleep(Duration::from_millis(2));
    }
    recorder.kill().unwrap();
    recorder.wait().unwrap();
    let rec = rec.display().to_string();
    let o = bin().args(["verify", &rec]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated at byte"));
    let o = bin().args(["verify", "--repair", &rec]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let kept = export(&rec);
    let n = kept.iter().filter(|&&b| b == b'\n').count();
    assert!(n > 1000 && n < 300_000, "{n} events kept");
    let whole = export(&big);
    assert!(
        whole.starts_with(&kept),
        "the repaired recording is a prefix of the source"
    );
}

/// JSON lines without the fields a Statehouse endpoint cannot give (offsets are numbered by
/// arrival, there is no wall-clock time).
fn without_offsets(jsonl: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(jsonl)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("offset");
            o.remove("commit_time_ns");
            v
        })
        .collect()
}

#[test]
fn statehouse_replay_as_a_source_equals_local_play_of_that_agent() {
    let server = InProcess::start(SAMPLE);
    let url = server.addr.replace("replayscope://", "statehouse://");
    let agent = "support/triage-d814";
    for extra in [
        &[][..],
        &["--from", "@2000", "--until", "@5000"],
        &["--key-prefix", "memory/"],
    ] {
        let mut args = vec!["--agent", agent, "--format", "jsonl"];
        args.extend_from_slice(extra);
        let remote = play(&url, &args);
        assert!(
            remote.status.success(),
            "{}",
            String::from_utf8_lossy(&remote.stderr)
        );
        let local = play(SAMPLE, &args);
        let got = without_offsets(&remote.stdout);
        assert!(!got.is_empty());
        assert_eq!(got, without_offsets(&local.stdout), "{extra:?}");
    }
    // Offsets are numbered 0.. in arrival order.
    let first: serde_json::Value = serde_json::from_slice(
        play(
            &url,
            &["--agent", agent, "--format", "jsonl", "--from", "5"],
        )
        .stdout
        .split(|&b| b == b'\n')
        .next()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(first["offset"], 5);

    let o = play(&url, &["--format", "none"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--agent"));
    // grpc:// finds out which protocol the endpoint speaks.
    let probed = play(
        &server.addr.replace("replayscope://", "grpc://"),
        &["--format", "none"],
    );
    assert!(probed.status.success());
    assert_eq!(report(&probed)["events_sent"], 6000);
}

#[test]
fn a_statehouse_stream_cut_mid_play_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.mcap").display().to_string();
    assert!(
        bin()
            .args([
                "gen", "--events", "60000", "--agents", "2", "--seed", "5", "-o", &archive
            ])
            .output()
            .unwrap()
            .status
            .success()
    );
    let info: serde_json::Value = serde_json::from_slice(
        &bin()
            .args(["info", &archive, "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let ch = &info["channels"][0];
    let agent = format!(
        "{}/{}",
        ch["namespace"].as_str().unwrap(),
        ch["agent_id"].as_str().unwrap()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = serve_process(&archive, port);
    let out = dir.path().join("out.jsonl");
    let mut player = bin()
        .args([
            "play",
            &format!("statehouse://127.0.0.1:{port}"),
            "--agent",
            &agent,
            "--pace",
            "rate",
            "--rate",
            "20000",
            "-o",
            &out.display().to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 1_000_000 {
        assert!(Instant::now() < deadline, "play did not start writing");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let mut server = serve_process(&archive, port);
    let status = player.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut player.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("reconnecting (attempt 1"), "{err}");
    server.kill().unwrap();
    server.wait().unwrap();
    let got = std::fs::read(&out).unwrap();
    let want = play(&archive, &["--agent", &agent, "--format", "jsonl"]).stdout;
    let got = without_offsets(&got);
    assert_eq!(
        got.len(),
        without_offsets(&want).len(),
        "every transaction exactly once"
    );
    assert_eq!(got, without_offsets(&want));
}

mod seeking {
    use std::sync::{Arc, Mutex};

    use replayscope::event::Position;
    use replayscope::player::{
        self, Command, Pace, Played, PlayerOptions, SeekTarget, Sink, SinkError,
    };
    use replayscope::source::{RemoteSource, Source};
    use replayscope::wire::RetryPolicy;

    #[derive(Clone, Default)]
    struct Offsets(Arc<Mutex<Vec<u64>>>, Arc<tokio::sync::Notify>);

    struct Collect(Offsets);

    impl Sink for Collect {
        fn played(&mut self, p: &Played<'_>) -> Result<(), SinkError> {
            (self.0).0.lock().unwrap().push(p.event.offset);
            (self.0).1.notify_waiters();
            Ok(())
        }
    }

    impl Offsets {
        async fn wait_len(&self, n: usize) -> Vec<u64> {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let notified = self.1.notified();
                {
                    let v = self.0.lock().unwrap();
                    if v.len() >= n {
                        return v.clone();
                    }
                }
                assert!(
                    tokio::time::timeout_at(deadline, notified).await.is_ok(),
                    "only {:?} played",
                    self.0.lock().unwrap()
                );
            }
        }
    }

    /// Seeks forward and backward (offset, @commit_ts, percent, step back) over a remote
    /// source land where they do on the local archive.
    #[test]
    fn seeks_over_a_remote_source_land_on_the_right_offsets() {
        let server = super::InProcess::start(super::SAMPLE);
        let remote: Arc<dyn Source> = Arc::new(
            RemoteSource::connect(
                &server.addr,
                Default::default(),
                RetryPolicy::default(),
                false,
            )
            .unwrap(),
        );
        let local = replayscope::archive::Archive::open(
            std::path::Path::new(super::SAMPLE),
            Default::default(),
        )
        .unwrap();
        let ts_1000 = local
            .cursor_at(1000)
            .unwrap()
            .next_raw()
            .unwrap()
            .unwrap()
            .commit_ts;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let offsets = Offsets::default();
            let h = player::spawn(
                remote,
                PlayerOptions {
                    pace: Pace::Fast,
                    start_paused: true,
                    ..PlayerOptions::default()
                },
                Box::new(Collect(offsets.clone())),
            )
            .unwrap();
            let mut expected = vec![];
            let mut run = |cmds: Vec<Command>, want: Vec<u64>| {
                for c in cmds {
                    h.send(c);
                }
                expected.extend(want);
                expected.clone()
            };
            let e = run(
                vec![
                    Command::Seek(SeekTarget::Position(Position::Offset(4000))),
                    Command::Step(3),
                ],
                vec![4000, 4001, 4002],
            );
            assert_eq!(offsets.wait_len(e.len()).await, e);
            let e = run(
                vec![
                    Command::Seek(SeekTarget::Position(Position::CommitTs(ts_1000))),
                    Command::Step(2),
                ],
                vec![1000, 1001],
            );
            assert_eq!(offsets.wait_len(e.len()).await, e);
            let e = run(
                vec![Command::Seek(SeekTarget::Percent(50.0)), Command::Step(1)],
                vec![3000],
            );
            assert_eq!(offsets.wait_len(e.len()).await, e);
            let e = run(
                vec![Command::StepBack(1), Command::Step(1)],
                vec![2999, 3000],
            );
            assert_eq!(offsets.wait_len(e.len()).await, e);
            h.send(Command::Quit);
        });
    }
}

/// A TLS endpoint with a token: reachable with the CA and the token; a client that does not
/// trust the certificate, or has the wrong token, gets a one-line error naming the endpoint.
#[test]
fn tls_and_token_failures_are_clear() {
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut child = bin()
        .args(["serve", SAMPLE, "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&token)
        .arg("--tls-cert")
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"))
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving::serving_address(&mut child);
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("replayscope://localhost:{port}");
    let ca = tls.join("ca.pem").display().to_string();
    let ok = play(
        &url,
        &["--format", "none", "--ca-file", &ca, "--token", "s3cret"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(report(&ok)["events_sent"], 6000);

    let untrusted = play(
        &url,
        &[
            "--format",
            "none",
            "--tls",
            "--token",
            "s3cret",
            "--retries",
            "0",
        ],
    );
    assert_ne!(untrusted.status.code(), Some(0));
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(err.contains(&url), "{err}");
    let plain = play(&url, &["--format", "none", "--retries", "0"]);
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("--tls"), "suggests TLS: {err}");
    let wrong = play(
        &url,
        &["--format", "none", "--ca-file", &ca, "--token", "nope"],
    );
    assert_ne!(wrong.status.code(), Some(0));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("Unauthenticated") && err.contains(&url),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A remote stream that finished shows no stale server gauges (its last Credit frame said some
/// bytes were in flight): the local window's gauges apply again.
#[test]
fn a_finished_remote_stream_leaves_no_stale_gauges() {
    use replayscope::player::{self, Outcome, Pace, PlayerOptions};
    use replayscope::source::{RemoteSource, Source};
    use replayscope::wire::reconnect::RetryPolicy;
    use std::sync::Arc;
    let server = InProcess::start(SAMPLE);
    let remote = Arc::new(
        RemoteSource::connect(
            &server.addr,
            Default::default(),
            RetryPolicy::default(),
            false,
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let source: Arc<dyn Source> = remote.clone();
    let report = rt.block_on(async move {
        let options = PlayerOptions {
            pace: Pace::Fast,
            ..PlayerOptions::default()
        };
        let h = player::spawn(source, options, Box::new(player::NullSink)).unwrap();
        h.join().await.unwrap()
    });
    assert_eq!(report.outcome, Outcome::Finished);
    assert_eq!(report.events_sent, 6000);
    assert!(
        remote.remote_gauges().is_none(),
        "{:?}",
        remote.remote_gauges()
    );
}
