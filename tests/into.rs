//! `play --into`: replaying into stdout, a new archive and a real Statehouse daemon, from every
//! kind of source (local archive, segment directory, S3 archive, replayscope endpoint), paced,
//! verified, configured from a file, and on a schedule that never overlaps runs.
//!
//! The daemon is the real one (`statehoused`), started on 127.0.0.1 with an in-memory store;
//! S3 is moto on 127.0.0.1. `scripts/test` installs both and makes these tests non-skippable.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

#[path = "support/moto.rs"]
mod moto;
#[path = "support/serving.rs"]
mod serving;
#[path = "support/statehouse.rs"]
mod statehouse;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replayscope"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last JSON object line on stderr (the run's report).
fn report(o: &Output) -> Value {
    stderr(o)
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v.get("run").is_some())
        })
        .unwrap_or_else(|| panic!("no report line in: {}", stderr(o)))
}

fn reports(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A generated archive (three agents), its segment-directory copy, and what it plays to.
struct Fixture {
    dir: tempfile::TempDir,
    archive: String,
    segments: String,
    jsonl: String,
    state_hash: String,
}

fn fixture(events: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.mcap").display().to_string();
    let segments = dir.path().join("segs").display().to_string();
    let n = events.to_string();
    ok(&run(&[
        "gen", "--events", &n, "--agents", "3", "--seed", "7", "-o", &archive,
    ]));
    ok(&run(&[
        "gen",
        "--events",
        &n,
        "--agents",
        "3",
        "--seed",
        "7",
        "--segment-events",
        "150",
        "-o",
        &segments,
    ]));
    let jsonl = ok(&run(&["play", &archive, "--quiet"]));
    let o = run(&[
        "play",
        &archive,
        "--state-hash",
        "--format",
        "none",
        "--quiet",
    ]);
    ok(&o);
    let state_hash = report_of_plain(&o)["state_hash"]
        .as_str()
        .unwrap()
        .to_string();
    Fixture {
        dir,
        archive,
        segments,
        jsonl,
        state_hash,
    }
}

/// The pretty-printed report of a plain `play` (stderr is exactly that JSON).
fn report_of_plain(o: &Output) -> Value {
    let text = stderr(o);
    let start = text.find('{').expect("a report");
    serde_json::from_str(&text[start..]).unwrap()
}

/// `replayscope serve` on a free port; returns the process and its replayscope:// URL.
fn serve(archive: &str) -> (Child, String) {
    let mut child = bin()
        .args(["serve", archive, "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving::serving_address(&mut child);
    (child, format!("replayscope://{addr}"))
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every live key of every agent of a Statehouse daemon, as `ns/agent:key -> JSON`.
fn target_state(url: &str, agents: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = replayscope::sink::StatehouseTarget::connect(
            url,
            Default::default(),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        let mut out = std::collections::BTreeMap::new();
        for (ns, a) in agents {
            for e in t.scan_agent(ns, a).await.unwrap() {
                out.insert(format!("{ns}/{a}:{}", e.key), format!("{:?}", e.value));
            }
        }
        out
    })
}

fn agents_of(archive: &str) -> Vec<(String, String)> {
    let info: Value = serde_json::from_str(&ok(&run(&["info", archive, "--json"]))).unwrap();
    info["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["namespace"].as_str().unwrap().to_string(),
                c["agent_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The source x target matrix: each source into stdout, a new archive and Statehouse gives the
/// same events and the same state, and auto mode names the right kind of source.
#[test]
fn every_source_replays_into_stdout_an_archive_and_statehouse() {
    let Some(m) = moto::moto() else { return };
    let f = fixture(450);
    moto::create_bucket(&m, "replays");
    moto::put(&m, "replays", "a.mcap", std::fs::read(&f.archive).unwrap());
    let (server, endpoint) = serve(&f.archive);
    let _server = Killed(server);
    let sources = [
        (f.archive.clone(), "archive", "archive file"),
        (f.segments.clone(), "archive", "segment directory"),
        ("s3://replays/a.mcap".to_string(), "archive", "s3 archive"),
        (endpoint.clone(), "replayscope", "replayscope endpoint"),
    ];
    for (i, (source, mode, source_type)) in sources.iter().enumerate() {
        let play = |extra: &[&str]| {
            bin()
                .arg("play")
                .arg(source)
                .args(extra)
                .envs(m.env())
                .output()
                .unwrap()
        };
        // stdout: the same JSON Lines as the local archive.
        let o = play(&["--quiet"]);
        assert_eq!(ok(&o), f.jsonl, "{source} into stdout");

        // A new archive: the same events, its own valid chain.
        let out = f
            .dir
            .path()
            .join(format!("out-{i}.mcap"))
            .display()
            .to_string();
        let o = play(&["--into", &out]);
        ok(&o);
        let r = report(&o);
        assert_eq!(r["mode"], *mode, "{source}: {r}");
        assert_eq!(r["source_type"], *source_type, "{source}: {r}");
        assert_eq!(r["target_type"], "archive");
        assert_eq!(r["archive"]["events"], 450, "{r}");
        ok(&run(&["verify", &out]));
        assert_eq!(
            ok(&run(&["export", &out])),
            f.jsonl,
            "{source} into an archive"
        );

        // A real Statehouse daemon: every transaction committed, state read back and equal.
        let Some(d) = statehouse::start() else { return };
        let o = play(&["--into", &d.url, "--state-hash"]);
        ok(&o);
        let r = report(&o);
        assert_eq!(r["target_type"], "statehouse");
        assert_eq!(r["applied_transactions"], 450, "{r}");
        assert_eq!(r["verification"]["matched"], true, "{r}");
        assert!(
            r["verification"]["keys_expected"].as_u64().unwrap() > 50,
            "{r}"
        );
        assert_eq!(r["state_hash"], f.state_hash.as_str(), "{source}");
    }
}

#[test]
fn auto_mode_and_explicit_modes_pick_the_source_type() {
    let f = fixture(120);
    let Some(d) = statehouse::start() else { return };
    ok(&run(&["play", &f.archive, "--into", &d.url]));
    let (ns, agent) = agents_of(&f.archive).remove(0);
    let agent = format!("{ns}/{agent}");
    let addr = d.url.trim_start_matches("statehouse://").to_string();
    // statehouse:// by its scheme, grpc:// by probing, a bare address by --mode.
    for (source, mode_flag) in [
        (d.url.clone(), None),
        (format!("grpc://{addr}"), None),
        (addr.clone(), Some("statehouse")),
    ] {
        let out = f.dir.path().join("from-daemon.mcap").display().to_string();
        let mut args = vec![
            "play", &source, "--agent", &agent, "--into", &out, "--force",
        ];
        if let Some(m) = mode_flag {
            args.extend(["--mode", m]);
        }
        let o = run(&args);
        ok(&o);
        let r = report(&o);
        assert_eq!(r["mode"], "statehouse", "{source}: {r}");
        assert!(r["events_sent"].as_u64().unwrap() > 0, "{r}");
    }
    // A mode that contradicts the source is a usage error naming both.
    let o = run(&["play", &d.url, "--mode", "archive"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--mode archive"), "{}", stderr(&o));
    let o = run(&[
        "play",
        &f.archive,
        "--mode",
        "replayscope",
        "--retries",
        "0",
    ]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn pacing_into_a_target_honours_the_rate() {
    let f = fixture(300);
    let Some(d) = statehouse::start() else { return };
    let out = f.dir.path().join("paced.mcap").display().to_string();
    for target in [d.url.as_str(), out.as_str()] {
        let o = run(&[
            "play", &f.archive, "--into", target, "--pace", "rate", "--rate", "400", "--until",
            "199",
        ]);
        ok(&o);
        let r = report(&o);
        let rate = r["achieved_rate"].as_f64().unwrap();
        let ms = r["duration_ms"].as_u64().unwrap();
        // 200 events at 400/s: half a second, never faster than the rate.
        assert!(ms >= 480, "{target}: {ms} ms for 200 events at 400/s");
        assert!((300.0..=420.0).contains(&rate), "{target}: {rate} events/s");
        assert_eq!(r["events_sent"], 200);
    }
}

#[test]
fn a_schedule_never_runs_twice_at_once() {
    let f = fixture(200);
    let out = f.dir.path().join("sched.mcap").display().to_string();
    let log = f.dir.path().join("runs.jsonl");
    // Each run takes ~0.5 s (100 events at 200/s); one is due every 150 ms.
    let o = run(&[
        "play",
        &f.archive,
        "--into",
        &out,
        "--until",
        "99",
        "--pace",
        "rate",
        "--rate",
        "200",
        "--every",
        "150ms",
        "--max-runs",
        "3",
        "--reports",
        log.to_str().unwrap(),
        "--node-id",
        "replayer-7",
    ]);
    ok(&o);
    let runs = reports(&log);
    assert_eq!(runs.len(), 3, "{runs:?}");
    for pair in runs.windows(2) {
        let ended = pair[0]["ended_at"].as_str().unwrap();
        let started = pair[1]["started_at"].as_str().unwrap();
        assert!(
            started >= ended,
            "run {} started at {started} before run {} ended at {ended}",
            pair[1]["run"],
            pair[0]["run"]
        );
        assert!(
            pair[1]["skipped_before"].as_u64().unwrap() >= 2,
            "{}",
            pair[1]
        );
    }
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["run"], i as u64 + 1);
        assert_eq!(r["node_id"], "replayer-7");
        assert_eq!(r["outcome"], "finished");
    }
    assert!(stderr(&o).contains("skipped"), "{}", stderr(&o));
    assert!(stderr(&o).contains("node_id=\"replayer-7\"") || stderr(&o).contains("replayer-7"));
}

#[test]
fn a_mismatching_target_fails_with_the_first_differing_keys() {
    let f = fixture(300);
    let Some(d) = statehouse::start() else { return };
    ok(&run(&["play", &f.archive, "--into", &d.url]));
    // Replaying only the first half into the same daemon leaves later values behind.
    let o = run(&["play", &f.archive, "--into", &d.url, "--until", "149"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("differs from the replayed state after offset 149"),
        "{err}"
    );
    let r = report(&o);
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["verification"]["matched"], false);
    let first = r["verification"]["first_differences"].as_array().unwrap();
    assert!(!first.is_empty());
    // Each key says what differs field by field, through the same JSON diff as `diff`.
    for d in first {
        assert!(!d["changes"].as_array().unwrap().is_empty(), "{d}");
        let line = if d["expected"].is_null() || d["actual"].is_null() {
            format!("{}: expected", d["key"].as_str().unwrap())
        } else {
            format!("{} (expected -> target):", d["key"].as_str().unwrap())
        };
        assert!(err.contains(&line), "{line} in {err}");
    }
}

#[test]
fn bootstrap_and_agent_mapping_shape_the_target() {
    let f = fixture(150);
    let Some(d) = statehouse::start() else { return };
    let agents = agents_of(&f.archive);
    let (ns, agent) = &agents[0];
    let boot = f.dir.path().join("boot.json");
    std::fs::write(
        &boot,
        format!(r#"{{"{ns}/{agent}": {{"preexisting/key": {{"from": "bootstrap", "n": 3}}}}}}"#),
    )
    .unwrap();
    let mapping = format!("{ns}/{agent}=staging/copy");
    let o = run(&[
        "play",
        &f.archive,
        "--into",
        &d.url,
        "--bootstrap",
        boot.to_str().unwrap(),
        "--map-agent",
        &mapping,
        "--state-hash",
    ]);
    ok(&o);
    let r = report(&o);
    assert_eq!(r["verification"]["matched"], true, "{r}");
    assert_ne!(
        r["state_hash"],
        f.state_hash.as_str(),
        "the bootstrap is part of the state"
    );
    let mapped = target_state(&d.url, &[("staging", "copy")]);
    assert!(
        mapped.contains_key("staging/copy:preexisting/key"),
        "{mapped:?}"
    );
    assert!(mapped.len() > 1, "{mapped:?}");
    let original = target_state(&d.url, &[(ns.as_str(), agent.as_str())]);
    assert!(
        original.is_empty(),
        "nothing is written under the mapped-away name: {original:?}"
    );

    // Mistakes are usage errors naming what is wrong.
    let o = run(&[
        "play",
        &f.archive,
        "--into",
        &d.url,
        "--map-agent",
        "nope/none=a/b",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no agent nope/none"), "{}", stderr(&o));
    std::fs::write(&boot, r#"{"prod/a": {"k": 5}}"#).unwrap();
    let o = run(&[
        "play",
        &f.archive,
        "--into",
        &d.url,
        "--bootstrap",
        boot.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("boot.json") && stderr(&o).contains("\"k\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dry_run_checks_everything_and_writes_nothing() {
    let f = fixture(100);
    let Some(d) = statehouse::start() else { return };
    let o = run(&[
        "play",
        &f.archive,
        "--into",
        &d.url,
        "--dry-run",
        "--every",
        "1h",
    ]);
    let out = ok(&o);
    for line in [
        "source: ok",
        "range: ok",
        "target: ok: Statehouse 0.1.0",
        "schedule: next runs",
        "dry run: ok",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    let agents = agents_of(&f.archive);
    let refs: Vec<(&str, &str)> = agents
        .iter()
        .map(|(n, a)| (n.as_str(), a.as_str()))
        .collect();
    assert!(
        target_state(&d.url, &refs).is_empty(),
        "a dry run writes nothing"
    );
    // A cron schedule: its next three times (UTC minutes, every 5).
    let out = ok(&run(&[
        "play",
        &f.archive,
        "--dry-run",
        "--cron",
        "*/5 * * * *",
    ]));
    let line = out
        .lines()
        .find(|l| l.starts_with("schedule: next runs at "))
        .unwrap();
    let times: Vec<&str> = line["schedule: next runs at ".len()..]
        .split(", ")
        .collect();
    assert_eq!(times.len(), 3, "{line}");
    for t in &times {
        let minute: u32 = t[14..16].parse().unwrap();
        assert!(minute.is_multiple_of(5) && t.ends_with(":00Z"), "{line}");
    }
    let out_path = f.dir.path().join("never.mcap");
    ok(&run(&[
        "play",
        &f.archive,
        "--into",
        out_path.to_str().unwrap(),
        "--dry-run",
    ]));
    assert!(!out_path.exists());

    // Unreachable target, empty range, bad config: each named, nothing run.
    let o = run(&[
        "play",
        &f.archive,
        "--into",
        "statehouse://127.0.0.1:9",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("statehouse://127.0.0.1:9: cannot reach"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "play",
        &f.archive,
        "--from",
        "50",
        "--until",
        "10",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("range is empty"), "{}", stderr(&o));
}

#[test]
fn a_config_file_sets_everything_and_flags_win() {
    let f = fixture(120);
    let Some(d) = statehouse::start() else { return };
    let dir = f.dir.path();
    std::fs::write(
        dir.join("replay.toml"),
        format!(
            "source = \"a.mcap\"\ninto = \"{}\"\nnode-id = \"from-file\"\nreports = \"runs.jsonl\"\nuntil = \"59\"\npace = \"fast\"\n",
            d.url
        ),
    )
    .unwrap();
    let config = dir.join("replay.toml").display().to_string();
    let o = run(&["play", "--config", &config, "--node-id", "from-flag"]);
    ok(&o);
    let runs = reports(&dir.join("runs.jsonl"));
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["node_id"], "from-flag");
    assert_eq!(runs[0]["events_sent"], 60);
    assert_eq!(runs[0]["verification"]["matched"], true);

    std::fs::write(dir.join("bad.toml"), "source = \"a.mcap\"\nrat = 5\n").unwrap();
    let o = run(&["play", "--config", dir.join("bad.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml") && err.contains("rat") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn sigint_stops_after_the_current_transaction_with_a_report_and_metrics_show_the_run() {
    let f = fixture(400);
    let Some(d) = statehouse::start() else { return };
    let log = f.dir.path().join("runs.jsonl");
    let mut child = bin()
        .args([
            "play",
            &f.archive,
            "--into",
            &d.url,
            "--pace",
            "rate",
            "--rate",
            "100",
            "--metrics",
            "127.0.0.1:0",
            "--reports",
            log.to_str().unwrap(),
            "--node-id",
            "n1",
            "--log-format",
            "json",
            "--status-interval",
            "200ms",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut metrics_addr = None;
    let mut status_seen = false;
    while metrics_addr.is_none() || !status_seen {
        let line = lines.next().expect("play exited early").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if let Some(a) = message.strip_prefix("metrics at http://") {
            metrics_addr = Some(a.trim_end_matches("/metrics").to_string());
        }
        if v["fields"]["progress"].is_string() {
            assert_eq!(v["fields"]["node_id"], "n1", "{line}");
            status_seen = true;
        }
    }
    let addr = metrics_addr.unwrap();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    write!(c, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("replayscope_play_run_active{node_id=\"n1\",target_type=\"statehouse\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("replayscope_play_transactions_applied_total"),
        "{body}"
    );

    // SIGINT: the run stops after the transaction in hand, the report is written, exit 130.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let runs = reports(&log);
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["outcome"], "stopped", "{r}");
    let sent = r["events_sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 400, "{r}");
    assert_eq!(r["applied_transactions"].as_u64().unwrap(), sent, "{r}");
    assert_eq!(r["next_offset"].as_u64().unwrap(), sent, "{r}");
    assert_eq!(r["verification"]["matched"], true, "{r}");
}

#[test]
fn an_unreachable_target_is_named_and_a_lost_one_says_where_to_resume() {
    let f = fixture(300);
    let o = run(&["play", &f.archive, "--into", "statehouse://127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("statehouse://127.0.0.1:9: cannot reach the Statehouse target"),
        "{}",
        stderr(&o)
    );
    let o = run(&["play", &f.archive, "--into", "replayscope://127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));

    // The daemon dies mid-run: the run fails naming the transaction, with the offset to resume.
    let Some(d) = statehouse::start() else { return };
    let log: PathBuf = f.dir.path().join("runs.jsonl");
    let mut child = bin()
        .args([
            "play",
            &f.archive,
            "--into",
            &d.url,
            "--pace",
            "rate",
            "--rate",
            "100",
            "--target-timeout",
            "2s",
            "--reports",
            log.to_str().unwrap(),
            "--status-interval",
            "100ms",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait until transactions are being committed, then kill the daemon.
    loop {
        let line = lines.next().expect("play exited early").unwrap();
        if line.contains(" committed") && !line.contains(", 0 committed") {
            break;
        }
    }
    drop(d);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(1), "{rest:?}");
    let err = rest.join("\n");
    assert!(
        err.contains("lost the target during transaction") && err.contains("(offset "),
        "{err}"
    );
    let r = &reports(&log)[0];
    assert_eq!(r["outcome"], "failed");
    let next = r["next_offset"].as_u64().unwrap();
    assert_eq!(next, r["applied_transactions"].as_u64().unwrap(), "{r}");
}

#[test]
fn mistakes_in_how_play_is_called_are_usage_errors_naming_the_flag() {
    let f = fixture(50);
    let copy = f.dir.path().join("copy.mcap").display().to_string();
    for (args, says) in [
        (
            vec!["--into", f.archive.as_str()],
            "that is the source itself",
        ),
        (
            vec!["--compression", "lz4"],
            "--compression and --segment-events",
        ),
        (
            vec!["--into", &copy, "--output", "x.jsonl"],
            "--output and --format",
        ),
        (
            vec!["--keep-offsets"],
            "--keep-offsets needs an archive target",
        ),
        (
            vec!["--into", &copy, "--keep-offsets", "--key-prefix", "memory/"],
            "has gaps",
        ),
        (
            vec!["--map-agent", "a/b=c/d"],
            "--map-agent needs a Statehouse target",
        ),
        (
            vec!["--every", "1s", "--cron", "* * * * *"],
            "cannot be used with",
        ),
        (vec!["--cron", "61 * * * *"], "minute"),
        (vec!["--every", "0s"], "--every must be longer than 0"),
        (vec!["--expect-state-hash", "abc"], "--expect-state-hash"),
        (vec!["--into", "grpc://127.0.0.1:9"], "read-only"),
    ] {
        let o = bin()
            .arg("play")
            .arg(&f.archive)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    let o = run(&["play"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no source"), "{}", stderr(&o));
    // A source written into nothing was not touched.
    ok(&run(&["verify", &f.archive]));
}
