//! The `replayscope` binary: subcommands end to end, exit codes (0 ok, 2 usage, 3 integrity) and
//! one-line error messages that name the file.

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_replayscope"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn gen_archive(dir: &Path, name: &str, events: u64, extra: &[&str]) -> String {
    let path = dir.join(name).display().to_string();
    let events = events.to_string();
    let mut args = vec!["gen", "--events", &events, "-o", &path];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    path
}

#[test]
fn gen_info_verify_export_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen_archive(dir.path(), "a.mcap", 2000, &["--seed", "5"]);
    // gen is deterministic
    let b = gen_archive(dir.path(), "b.mcap", 2000, &["--seed", "5"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let info = run(&["info", &a, "--json"]);
    assert!(info.status.success(), "{}", stderr(&info));
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["events"], 2000);
    assert_eq!(v["first_offset"], 0);
    assert_eq!(v["last_offset"], 1999);
    assert_eq!(v["channels"].as_array().unwrap().len(), 6);
    let hash = v["final_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64);
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.5);

    let text = run(&["info", &a]);
    assert!(
        stdout(&text).contains("recorded hash "),
        "{}",
        stdout(&text)
    );

    let ok = run(&["verify", &a, "--expect-hash", &hash]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("ok: 2000 events"));

    let jsonl = dir.path().join("a.jsonl").display().to_string();
    let ex = run(&["export", &a, "-o", &jsonl]);
    assert!(ex.status.success(), "{}", stderr(&ex));
    let c = dir.path().join("c.mcap").display().to_string();
    let im = run(&["import", &jsonl, "-o", &c]);
    assert!(im.status.success(), "{}", stderr(&im));
    // import of an export is the same archive, byte for byte
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());

    // export to stdout with an inclusive range
    let part = run(&["export", &a, "--from", "10", "--until", "19"]);
    let lines: Vec<serde_json::Value> = stdout(&part)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0]["offset"], 10);
    assert_eq!(lines[9]["offset"], 19);
    let ts = lines[3]["commit_ts"].as_u64().unwrap();
    let by_ts = run(&[
        "export",
        &a,
        "--from",
        &format!("@{ts}"),
        "--until",
        &format!("@{ts}"),
    ]);
    assert_eq!(stdout(&by_ts).lines().count(), 1);
    assert!(stdout(&by_ts).starts_with("{\"offset\":13,"));
}

#[test]
fn segments_from_gen_match_the_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen_archive(dir.path(), "a.mcap", 3000, &[]);
    let segs = gen_archive(dir.path(), "segs", 3000, &["--segment-events", "1000"]);
    let ha = run(&["verify", &a, "--json"]);
    let hs = run(&["verify", &segs, "--json"]);
    let va: serde_json::Value = serde_json::from_slice(&ha.stdout).unwrap();
    let vs: serde_json::Value = serde_json::from_slice(&hs.stdout).unwrap();
    assert_eq!(va["final_hash"], vs["final_hash"]);
    assert_eq!(vs["segments"], 3);
    let ea = run(&["export", &a]);
    let es = run(&["export", &segs]);
    assert_eq!(ea.stdout, es.stdout);
}

fn assert_one_line_error(o: &Output, code: i32, must_contain: &[&str]) {
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for m in must_contain {
        assert!(err.contains(m), "{m:?} not in {err}");
    }
}

#[test]
fn user_errors_are_one_line_with_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.mcap").display().to_string();
    assert_one_line_error(
        &run(&["info", &missing]),
        2,
        &["missing.mcap", "no such file"],
    );

    let empty = dir.path().join("empty.mcap");
    std::fs::write(&empty, b"").unwrap();
    assert_one_line_error(
        &run(&["verify", empty.to_str().unwrap()]),
        2,
        &["empty.mcap", "empty file"],
    );

    let text = dir.path().join("x.json");
    std::fs::write(&text, b"{}").unwrap();
    assert_one_line_error(
        &run(&["export", text.to_str().unwrap()]),
        2,
        &["x.json", "not an MCAP file"],
    );

    let a = gen_archive(dir.path(), "a.mcap", 500, &[]);
    assert_one_line_error(
        &run(&["export", &a, "--from", "500"]),
        2,
        &["a.mcap", "offset 500", "offsets 0 to 499"],
    );
    assert_one_line_error(
        &run(&["verify", &a, "--expect-hash", "abc"]),
        2,
        &["--expect-hash", "64-digit"],
    );
    assert_one_line_error(
        &run(&["verify", &a, "--expect-hash", &"0".repeat(64)]),
        3,
        &["a.mcap", "hash chain mismatch", "--expect-hash"],
    );

    // a truncated file is an integrity failure (3) naming the byte
    let bytes = std::fs::read(&a).unwrap();
    let cut = dir.path().join("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    assert_one_line_error(
        &run(&["verify", cut.to_str().unwrap()]),
        3,
        &["cut.mcap", "truncated at byte"],
    );
    let prefix = run(&["verify", cut.to_str().unwrap(), "--allow-truncated"]);
    assert_eq!(prefix.status.code(), Some(0), "{}", stderr(&prefix));
    assert!(stdout(&prefix).contains("truncated"), "{}", stdout(&prefix));

    // a malformed JSON Lines input names the line
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"offset\":0}\n").unwrap();
    let out = dir.path().join("o.mcap").display().to_string();
    assert_one_line_error(
        &run(&["import", bad.to_str().unwrap(), "-o", &out]),
        2,
        &["bad.jsonl:1:", "missing field"],
    );

    // bad position syntax is a usage error from the parser
    let o = run(&["export", &a, "--from", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid position"), "{}", stderr(&o));
}

#[test]
fn play_writes_the_same_lines_as_export_and_resumes_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen_archive(dir.path(), "a.mcap", 1500, &[]);
    let export = run(&["export", &a]);
    let play = run(&["play", &a, "--quiet"]);
    assert_eq!(play.status.code(), Some(0), "{}", stderr(&play));
    assert_eq!(play.stdout, export.stdout, "play --format jsonl = export");
    // the report is JSON on stderr
    let report: serde_json::Value = serde_json::from_slice(&play.stderr).unwrap();
    assert_eq!(report["events_sent"], 1500);
    assert_eq!(report["outcome"], "finished");
    let info: serde_json::Value =
        serde_json::from_slice(&run(&["info", &a, "--json"]).stdout).unwrap();
    assert_eq!(report["final_hash"], info["final_hash"]);

    // first part, then resume from the report's next_offset
    let first = run(&["play", &a, "--until", "699", "--quiet"]);
    let r1: serde_json::Value = serde_json::from_slice(&first.stderr).unwrap();
    assert_eq!(r1["next_offset"], 700);
    let second = run(&[
        "play",
        &a,
        "--from",
        "700",
        "--quiet",
        "--expect-hash",
        info["final_hash"].as_str().unwrap(),
    ]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let mut joined = first.stdout.clone();
    joined.extend_from_slice(&second.stdout);
    assert_eq!(joined, export.stdout);

    // --report writes the same JSON to a file; --state-hash adds the state hash
    let report_path = dir.path().join("r.json");
    let o = run(&[
        "play",
        &a,
        "--format",
        "none",
        "--state-hash",
        "--quiet",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(r["state_hash"].as_str().unwrap().len(), 64);
    assert!(o.stdout.is_empty());

    // text format, agent filter keeps global offsets
    let channel = info["channels"][0].clone();
    let agent = format!(
        "{}/{}",
        channel["namespace"].as_str().unwrap(),
        channel["agent_id"].as_str().unwrap()
    );
    let t = run(&["play", &a, "--format", "text", "--agent", &agent, "--quiet"]);
    let lines: Vec<&str> = std::str::from_utf8(&t.stdout).unwrap().lines().collect();
    assert_eq!(lines.len() as u64, channel["events"].as_u64().unwrap());
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('#') && l.contains(&agent))
    );
}

#[test]
fn play_errors_have_the_right_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen_archive(dir.path(), "a.mcap", 300, &[]);
    assert_one_line_error(
        &run(&["play", &a, "--agent", "nope/none"]),
        2,
        &["unknown agent nope/none", "it has"],
    );
    assert_one_line_error(
        &run(&["play", &a, "--pace", "realtime", "--speed", "500"]),
        2,
        &["--speed 500"],
    );
    // clap reports flag syntax errors (exit 2, with a usage hint)
    let o = run(&["play", &a, "--max-gap", "2 parsecs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid duration \"2 parsecs\""),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "play",
        &a,
        "--format",
        "none",
        "--quiet",
        "--expect-hash",
        &"1".repeat(64),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("hash chain mismatch through offset 299"),
        "{}",
        stderr(&o)
    );
}

/// `serve` binds where told, logs the address it bound, serves, and exits 0 on SIGTERM.
#[test]
fn serve_logs_its_address_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap");
    let mut child = bin()
        .args(["serve", sample, "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve logs before exiting").unwrap();
        if let Some(rest) = line.split("serving on ").nth(1) {
            break rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect::<String>();
        }
    };
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = rt.block_on(async {
        let c = replayscope::wire::client::Client::connect(&addr, Default::default())
            .await
            .unwrap();
        c.describe().await.unwrap()
    });
    assert_eq!(info.events, 6000);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

#[test]
fn serve_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap");
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let o = run(&[
        "serve",
        sample,
        "--token-file",
        &empty.display().to_string(),
    ]);
    assert_one_line_error(&o, 2, &["--token-file", "empty"]);
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls/server.key");
    let o = run(&[
        "serve",
        sample,
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &bad.display().to_string(),
        "--tls-key",
        key,
    ]);
    assert_one_line_error(&o, 2, &["bad.pem", "CERTIFICATE"]);
    let o = run(&["serve", sample, "--window", "1GiB"]);
    assert_one_line_error(&o, 2, &["--window", "--max-window"]);
    let o = run(&["serve", "/nonexistent/archive.mcap"]);
    assert_one_line_error(&o, 2, &["/nonexistent/archive.mcap"]);
}

/// A recorder killed mid-write leaves a file without a footer: `verify` names the byte and the
/// readable prefix (exit 3), `verify --repair` keeps that prefix as a valid archive.
#[test]
fn verify_repair_turns_a_truncated_archive_into_its_readable_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let whole = gen_archive(dir.path(), "whole.mcap", 5000, &["--seed", "3"]);
    let cut = gen_archive(dir.path(), "cut.mcap", 5000, &["--seed", "3"]);
    let size = std::fs::metadata(&cut).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    f.set_len(size * 2 / 3).unwrap();
    drop(f);

    let o = run(&["verify", &cut]);
    assert_one_line_error(
        &o,
        3,
        &["cut.mcap", "truncated at byte", "are readable", "--repair"],
    );
    let o = run(&["verify", "--repair", &cut]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("repaired"), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));
    assert!(Path::new(&format!("{cut}.truncated")).exists());
    let o = run(&["verify", &cut]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The repaired archive is exactly the first events of the whole one.
    let repaired = stdout(&run(&["export", &cut]));
    let kept = repaired.lines().count();
    assert!(kept > 1000 && kept < 5000, "{kept} events kept");
    let original = stdout(&run(&["export", &whole]));
    let prefix: Vec<&str> = original.lines().take(kept).collect();
    assert_eq!(repaired.lines().collect::<Vec<_>>(), prefix);
    // Repairing an intact archive changes nothing.
    let o = run(&["verify", "--repair", &cut]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("nothing to repair"), "{}", stderr(&o));
}

#[test]
fn verify_repair_fixes_the_last_segment_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let segs = gen_archive(dir.path(), "segs", 5000, &["--segment-events", "2000"]);
    let info = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&run(&["info", p, "--json"]).stdout).unwrap()
    };
    let before = info(&segs);
    // Cut the summary and footer of the last segment (its chunk is whole).
    let last = Path::new(&segs).join("00000000000000004000.mcap");
    let size = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(size - 100).unwrap();
    drop(f);
    let o = run(&["verify", &segs]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = run(&["verify", "--repair", &segs]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = info(&segs);
    assert_eq!(after["events"], 5000);
    assert_eq!(after["final_hash"], before["final_hash"]);
    // The damaged original is kept next to the directory, which holds only segments: later
    // commands have nothing to warn about.
    let aside = dir.path().join("segs.00000000000000004000.mcap.truncated");
    assert!(aside.exists(), "{} kept", aside.display());
    let o = run(&["verify", &segs]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).to_lowercase().contains("warn"),
        "{}",
        stderr(&o)
    );
}

/// Runs a command with stdin from `stdin` (or nothing), killing it (and failing) after 10 s:
/// bad input must never hang.
fn run_bounded(args: &[&str], stdin: Option<std::fs::File>) -> (Output, std::time::Duration) {
    use std::process::Stdio;
    let t0 = std::time::Instant::now();
    let mut child = bin()
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = t0 + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (child.wait_with_output().unwrap(), t0.elapsed())
}

#[test]
fn special_files_and_endless_lines_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.mcap");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let f = fifo.to_str().unwrap();
    let out = dir.path().join("x.mcap");
    let o = out.to_str().unwrap();
    for args in [
        vec!["info", f],
        vec!["play", f, "--format", "none"],
        vec!["verify", f],
        vec!["export", f],
        vec!["serve", f, "--listen", "127.0.0.1:0"],
        vec!["import", f, "-o", o],
        vec!["import", "/dev/zero", "-o", o],
    ] {
        let (r, _) = run_bounded(&args, None);
        assert_one_line_error(&r, 2, &["not a regular file"]);
        assert!(!out.exists(), "{args:?} left output");
    }
    // A FIFO (or /dev/null) as the output is written as it is, never replaced by a file.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap().lines().count())
    };
    let (r, _) = run_bounded(&["export", SAMPLE_ARCHIVE, "--until", "99", "-o", f], None);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(reader.join().unwrap(), 100);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO is still one"
    );
    // `import -` streams by design: an endless line fails at the line limit, memory bounded.
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let (r, _) = run_bounded(
        &["import", "-", "--max-line-bytes", "1MiB", "-o", o],
        Some(zero),
    );
    assert_one_line_error(
        &r,
        2,
        &["-:1:", "longer than --max-line-bytes (1048576 bytes)"],
    );
    assert!(!out.exists(), "a failed import leaves no partial archive");
}

#[test]
fn malformed_endpoints_fail_at_once() {
    for (url, says) in [
        ("replayscope://", "no host and no port"),
        ("replayscope://127.0.0.1", "no port"),
        ("replayscope://127.0.0.1:99999", "not a port number"),
        ("statehouse://127.0.0.1:0", "not a port number"),
        ("grpc://[::1]", "no port"),
        ("ftp://example.com/a.mcap", "unknown scheme ftp://"),
    ] {
        // Against a command that fails at once in the same conditions (a debug build starting
        // while other tests run can take a while): no connection is tried, no retry waited for.
        let (_, baseline) = run_bounded(&["info", "/nonexistent/replayscope-test.mcap"], None);
        let (r, took) = run_bounded(&["play", url, "--format", "none"], None);
        assert_one_line_error(&r, 2, &[url, says]);
        assert!(
            took < baseline + std::time::Duration::from_secs(1),
            "play {url} took {took:?} (a command that fails at once: {baseline:?})"
        );
        // The commands that read archives only say so.
        let (r, _) = run_bounded(&["info", url], None);
        let only_archives = if url.starts_with("ftp") {
            says
        } else {
            "not a network endpoint"
        };
        assert_one_line_error(&r, 2, &[url, only_archives]);
    }
    let (r, took) = run_bounded(
        &[
            "play",
            SAMPLE_ARCHIVE,
            "--into",
            "statehouse://localhost",
            "--format",
            "none",
        ],
        None,
    );
    assert_one_line_error(&r, 2, &["--into statehouse://localhost", "no port"]);
    let (_, baseline) = run_bounded(&["info", "/nonexistent/replayscope-test.mcap"], None);
    assert!(
        took < baseline + std::time::Duration::from_secs(1),
        "{took:?}"
    );
}

const SAMPLE_ARCHIVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap");

#[test]
fn small_input_mistakes_are_handled_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    // A UTF-8 byte-order mark before the first line is skipped.
    let jsonl = stdout(&run(&["export", SAMPLE_ARCHIVE, "--until", "9"]));
    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{jsonl}")).unwrap();
    let out = dir.path().join("bom.mcap");
    let o = run(&["import", bom.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&run(&["export", out.to_str().unwrap()])), jsonl);
    // A time before 1970 is the start of time.
    let o = run(&[
        "play",
        SAMPLE_ARCHIVE,
        "--from",
        "1900-01-01T00:00:00Z",
        "--until",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 5);
    // Zero limits and a missing token file are usage errors.
    let segs = dir.path().join("segs");
    let s = segs.to_str().unwrap();
    for (args, says) in [
        (
            vec!["gen", "--segment-events", "0", "-o", s],
            "--segment-events",
        ),
        (
            vec!["serve", SAMPLE_ARCHIVE, "--max-sessions", "0"],
            "--max-sessions",
        ),
        (
            vec![
                "serve",
                SAMPLE_ARCHIVE,
                "--token-file",
                "/nonexistent/token",
            ],
            "--token-file /nonexistent/token",
        ),
    ] {
        let (r, _) = run_bounded(&args, None);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", stderr(&r));
        assert!(stderr(&r).contains(says), "{args:?}: {}", stderr(&r));
    }
    assert!(!segs.exists());
}

/// Runs a command whose stdout is read for `lines` lines and then closed (`… | head`).
fn run_into_head(args: &[&str], lines: usize) -> Output {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let got = std::io::BufReader::new(out).lines().take(lines).count();
    assert_eq!(got, lines);
    // The reader is gone now: what the command writes next fails with a broken pipe.
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_closes_the_pipe_is_not_a_failure() {
    let o = run_into_head(&["play", SAMPLE_ARCHIVE], 2);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let report: serde_json::Value = serde_json::from_str(&err[err.find('{').unwrap()..]).unwrap();
    assert_eq!(report["outcome"], "stopped", "{err}");
    assert_eq!(report["reason"], "output closed by the reader");
    assert_eq!(report["failures"], 0);
    assert!(report["next_offset"].as_u64().unwrap() >= 2);
    let o = run_into_head(&["export", SAMPLE_ARCHIVE], 1);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn outputs_are_not_replaced_without_force_and_a_failed_import_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let segs = gen_archive(dir.path(), "segs", 300, &["--segment-events", "100"]);
    let info = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&run(&["info", p, "--json"]).stdout).unwrap()
    };
    let before = info(&segs);
    // Existing: refused without --force, for gen, import, play --into and record alike.
    let (r, _) = run_bounded(&["gen", "--events", "10", "-o", &segs], None);
    assert_one_line_error(&r, 2, &["it exists; --force replaces it"]);
    let (r, _) = run_bounded(&["play", SAMPLE_ARCHIVE, "--into", &segs], None);
    assert_one_line_error(&r, 2, &["--into", "it exists; --force replaces it"]);
    let (r, _) = run_bounded(
        &["play", SAMPLE_ARCHIVE, "--into", &segs, "--dry-run"],
        None,
    );
    assert_one_line_error(&r, 2, &["--into", "it exists"]);
    let (r, _) = run_bounded(
        &[
            "play",
            SAMPLE_ARCHIVE,
            "--into",
            &segs,
            "--dry-run",
            "--force",
        ],
        None,
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let said = format!("{}{}", stdout(&r), stderr(&r));
    assert!(said.contains("replaces the existing archive"), "{said}");
    // A failed import with --force leaves the old archive as it was, and nothing else.
    let bad = dir.path().join("bad.jsonl");
    let good = stdout(&run(&["export", SAMPLE_ARCHIVE, "--until", "31"]));
    std::fs::write(&bad, format!("{good}{{\"offset\": 32, \"txn_id\": \n")).unwrap();
    let (r, _) = run_bounded(
        &[
            "import",
            bad.to_str().unwrap(),
            "--segment-events",
            "10",
            "--force",
            "-o",
            &segs,
        ],
        None,
    );
    assert_one_line_error(&r, 2, &["bad.jsonl:33:"]);
    assert_eq!(info(&segs)["final_hash"], before["final_hash"]);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary left: {names:?}");
    // With --force a successful one replaces it.
    let file = dir.path().join("one.mcap");
    let f = file.to_str().unwrap();
    let o = run(&["gen", "--events", "5", "-o", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["gen", "--events", "7", "--force", "-o", f]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(f) || stdout(&o).contains(f),
        "names the final path"
    );
    assert_eq!(info(f)["events"], 7);
}

#[test]
fn the_bundled_sample_can_be_written_out_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sample.mcap");
    let o = out.to_str().unwrap();
    let r = run(&["demo", "--export", o]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(SAMPLE_ARCHIVE).unwrap()
    );
    assert!(stderr(&r).contains("replayscope play"), "{}", stderr(&r));
    let (r, _) = run_bounded(&["demo", "--export", o], None);
    assert_one_line_error(&r, 2, &["--export", "it exists; --force replaces it"]);
    assert!(run(&["demo", "--export", o, "--force"]).status.success());
    // The README's verify example holds for the session it generates.
    let session = dir.path().join("session.mcap");
    let s = session.to_str().unwrap();
    let r = run(&[
        "gen", "--events", "100000", "--agents", "6", "--seed", "1", "-o", s,
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("replayscope verify session.mcap --expect-hash "))
        .expect("the README's verify example");
    let hash = line.rsplit(' ').next().unwrap();
    let r = run(&["verify", s, "--expect-hash", hash]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
}

/// A real agent's session as users have it: a research agent run through the Statehouse Python
/// SDK against the real daemon, its Replay dumped as JSON Lines (scripts/make-agent-fixture.py):
/// no offsets, no namespace/agent_id, no wall-clock commit times.
const AGENT_DUMP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/research-agent.jsonl"
);

#[test]
fn real_agent_dumps_import_merge_and_play_directly() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.mcap");
    let o1 = one.to_str().unwrap();
    // Without an agent for its lines: a usage error that says how to give one.
    let (r, _) = run_bounded(&["import", AGENT_DUMP, "-o", o1], None);
    assert_one_line_error(
        &r,
        2,
        &["research-agent.jsonl:1:", "--agent NAMESPACE/AGENT_ID"],
    );
    assert!(!one.exists());
    let r = run(&[
        "import",
        AGENT_DUMP,
        "--agent",
        "research/research-7",
        "-o",
        o1,
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let exported = stdout(&run(&["export", o1]));
    let lines: Vec<serde_json::Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 14);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["offset"], i as u64, "numbered in order");
        assert_eq!(l["agent_id"], "research-7");
    }
    assert_eq!(lines[13]["operations"][0]["value"]["status"], "answered");
    // Two halves (in any order, each with its agent) merge by commit_ts into the same archive.
    let text = std::fs::read_to_string(AGENT_DUMP).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let odd: Vec<&str> = all.iter().copied().step_by(2).collect();
    let even: Vec<&str> = all.iter().copied().skip(1).step_by(2).collect();
    std::fs::write(&a, odd.join("\n")).unwrap();
    std::fs::write(&b, even.join("\n")).unwrap();
    let both = dir.path().join("both.mcap");
    let spec = |p: &Path| format!("{}=research/research-7", p.display());
    let r = run(&["import", &spec(&b), &spec(&a), "-o", both.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(stdout(&run(&["export", both.to_str().unwrap()])), exported);
    // A JSON Lines file plays directly, imported on the fly.
    let r = run(&[
        "play",
        AGENT_DUMP,
        "--agent",
        "research/research-7",
        "--format",
        "jsonl",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(stdout(&r), exported);
}

#[test]
fn time_from_the_values_of_an_agent_dump() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("timed.mcap");
    let o = out.to_str().unwrap();
    let r = run(&[
        "import",
        AGENT_DUMP,
        "--agent",
        "research/research-7",
        "--time-field",
        "at,asked_at,made_at,started_at",
        "-o",
        o,
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let info: serde_json::Value =
        serde_json::from_slice(&run(&["info", o, "--json"]).stdout).unwrap();
    assert_eq!(
        info["first_time"], "2026-11-30T14:02:11.250Z",
        "the session's started_at"
    );
    assert_eq!(
        info["time_source"], "the values' field at,asked_at,made_at,started_at",
        "where the times come from is recorded"
    );
    let span = info["duration_s"].as_f64().unwrap();
    assert!(span > 5.0 && span < 10.0, "{span} s");
    // Times never go backwards, and every event has one.
    let times: Vec<u64> = stdout(&run(&["export", o]))
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["commit_time_ns"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(times.len(), 14);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Seeks by time work on it.
    let r = run(&[
        "play",
        o,
        "--from",
        "2026-11-30T14:02:13.500Z",
        "--until",
        "2026-11-30T14:02:14Z",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stdout(&r).lines().count() >= 1);
    // A field no event has is named.
    let (r, _) = run_bounded(
        &[
            "import",
            AGENT_DUMP,
            "--agent",
            "research/research-7",
            "--time-field",
            "nope",
            "-o",
            o,
            "--force",
        ],
        None,
    );
    assert_one_line_error(&r, 2, &["no event has a time in field nope"]);
}

#[test]
fn messages_name_what_the_user_wrote() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            vec!["play", SAMPLE_ARCHIVE, "--from", "2027-01-01T00:00:00Z"],
            "time 2027-01-01T00:00:00.000Z is outside",
        ),
        (
            vec!["play", SAMPLE_ARCHIVE, "--from", "@99999999"],
            "commit_ts @99999999 is outside",
        ),
        (
            vec!["play", SAMPLE_ARCHIVE, "--cron", "*/61 * * * *"],
            "minute step \"61\" must be a number from 1 to 60",
        ),
    ] {
        let (r, _) = run_bounded(&args, None);
        assert_one_line_error(&r, 2, &[says]);
        assert!(!stderr(&r).contains("..="), "{}", stderr(&r));
    }
    // A JSON Lines file given where an archive is expected points at import.
    let jsonl = dir.path().join("x.jsonl");
    std::fs::write(&jsonl, "not json\n").unwrap();
    let (r, _) = run_bounded(&["verify", jsonl.to_str().unwrap()], None);
    assert_one_line_error(&r, 2, &["not an MCAP file", "replayscope import"]);
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_sigterm_is_named() {
    use std::io::BufRead;
    use std::process::Stdio;
    // serve's log into a pipe (as `serve > log 2>&1`): plain text.
    let mut child = bin()
        .args(["serve", SAMPLE_ARCHIVE, "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    assert!(
        !line.contains('\u{1b}'),
        "escape codes in a piped log: {line:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    // A play stopped by SIGTERM says SIGTERM, not Ctrl-C.
    let mut child = bin()
        .args(["play", SAMPLE_ARCHIVE, "--pace", "rate", "--rate", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(err).unwrap());
    // Its first event on stdout: the run is going (the signal handler is installed before it).
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(out.next().unwrap().unwrap().starts_with('{'));
    std::thread::spawn(move || for _ in out {});
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let text = reader.join().unwrap();
    assert_eq!(status.code(), Some(143), "{text}");
    assert!(text.contains("stopped by SIGTERM"), "{text}");
}
