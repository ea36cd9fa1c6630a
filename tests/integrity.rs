//! Integrity end to end: one byte of one stored event changed, with the chunk CRC recomputed or
//! zeroed (so only the hash chain can tell), fails every reader with exit 3 before the damaged
//! chunk is delivered — `play`, `export`, `play --into` an archive or a real Statehouse daemon,
//! `serve` + `play replayscope://`, `serve` + `play statehouse://`, `record` — and leaves no
//! output behind; a clean archive plays through all of them with the computed final hash.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

#[path = "support/serving.rs"]
mod serving;
#[path = "support/statehouse.rs"]
mod statehouse;
#[path = "support/tamper.rs"]
mod tamper;

use tamper::{Crc, Damage, damage, tamper};

const EVENTS: u64 = 12_000;
/// In the second chunk of the archive (about 3,300 events per uncompressed 1 MiB chunk).
const TAMPERED: u32 = 5_000;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replayscope"));
    c.env("NO_COLOR", "1").env("RUST_LOG", "error");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        stderr(o)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Exit 3 with one `error:` line that says what failed.
fn integrity_failure(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(3), "{what}: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{what}: no error line in {err}"));
    assert!(line.contains("hash chain mismatch"), "{what}: {line}");
    line.to_string()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `replayscope serve ARCHIVE [EXTRA…]` on a free port; the process and its address.
fn serve(archive: &Path, extra: &[&str]) -> (Killed, String) {
    let mut child = bin()
        .env("RUST_LOG", "info")
        .arg("serve")
        .arg(archive)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving::serving_address(&mut child);
    (Killed(child), addr)
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The offsets of a JSON Lines output.
fn offsets(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The first offset of the group of chunks holding `offset` (the unit a damaged chunk withholds).
fn group_start_of(archive: &Path, offset: u64) -> u64 {
    use replayscope::archive::{Archive, OpenOptions};
    let a = Archive::open(archive, OpenOptions::default()).unwrap();
    let commit_ts = a
        .cursor_at(offset)
        .unwrap()
        .next_raw()
        .unwrap()
        .unwrap()
        .commit_ts;
    // Commit order: the group holding the first event at that commit_ts starts at or before
    // the one holding `offset`.
    a.group_start_for_commit_ts(commit_ts).unwrap()
}

/// `replayscope gen` of [`EVENTS`] uncompressed events (so that [`tamper`] can change them) into
/// `dir/clean.mcap`.
fn gen_uncompressed(dir: &Path) -> std::path::PathBuf {
    let clean = dir.join("clean.mcap");
    let n = EVENTS.to_string();
    ok(&run(&[
        "gen",
        "--events",
        &n,
        "--compression",
        "none",
        "-o",
        clean.to_str().unwrap(),
    ]));
    clean
}

/// The chain head through `last` of the clean archive, as its own play computes it.
fn clean_head_through(clean: &Path, last: u64) -> String {
    let dir = clean.parent().unwrap();
    let rep = dir.join(format!("head-{last}.json"));
    let until = last.to_string();
    let clean = clean.to_str().unwrap();
    let r = rep.to_str().unwrap();
    ok(&run(&[
        "play", clean, "--pace", "fast", "--format", "none", "--until", &until, "--report", r,
        "--quiet",
    ]));
    report(&rep)["final_hash"].as_str().unwrap().to_string()
}

#[test]
fn tampered_archives_fail_every_reader_and_clean_ones_play() {
    let daemon = statehouse::start();
    let dir = tempfile::tempdir().unwrap();
    let clean = gen_uncompressed(dir.path());
    let info: Value =
        serde_json::from_str(&ok(&run(&["info", "--json", clean.to_str().unwrap()]))).unwrap();
    let recorded = info["final_hash"].as_str().unwrap().to_string();
    let channel = &info["channels"][0];
    let agent = format!(
        "{}/{}",
        channel["namespace"].as_str().unwrap(),
        channel["agent_id"].as_str().unwrap()
    );

    // The agent whose event is damaged: a one-agent read of it reads the damaged chunk (of that
    // agent alone, or shared by the quiet agents) and checks it against the index's chunk hash.
    let at = TAMPERED.to_string();
    let line = ok(&run(&[
        "export",
        clean.to_str().unwrap(),
        "--from",
        &at,
        "--until",
        &at,
    ]));
    let event: Value = serde_json::from_str(line.trim()).unwrap();
    let tampered_agent = format!(
        "{}/{}",
        event["namespace"].as_str().unwrap(),
        event["agent_id"].as_str().unwrap()
    );

    // The clean archive plays through everything, and the computed head is the recorded one.
    let rep = dir.path().join("clean-report.json");
    let c = clean.to_str().unwrap();
    ok(&run(&[
        "play",
        c,
        "--pace",
        "fast",
        "--format",
        "none",
        "--report",
        rep.to_str().unwrap(),
        "--quiet",
    ]));
    assert_eq!(report(&rep)["final_hash"], recorded.as_str());
    let (_server, addr) = serve(&clean, &[]);
    let url = format!("replayscope://{addr}");
    ok(&run(&[
        "play",
        &url,
        "--pace",
        "fast",
        "--format",
        "none",
        "--expect-hash",
        &recorded,
        "--quiet",
    ]));
    let sh = format!("statehouse://{addr}");
    ok(&run(&[
        "play", &sh, "--agent", &agent, "--pace", "fast", "--format", "none", "--quiet",
    ]));
    let copy = dir.path().join("copy.mcap");
    ok(&run(&["record", &url, "-o", copy.to_str().unwrap()]));
    ok(&run(&[
        "verify",
        copy.to_str().unwrap(),
        "--expect-hash",
        &recorded,
    ]));

    for crc in [Crc::Recomputed, Crc::Zeroed] {
        let what = |cmd: &str| format!("{crc:?} CRC, {cmd}");
        let t = dir.path().join(format!("tampered-{crc:?}.mcap"));
        std::fs::copy(&clean, &t).unwrap();
        tamper(&t, TAMPERED, crc);
        let ts = t.to_str().unwrap();

        // play: stops before the damaged chunk; the report's hash is computed over what played.
        let out = dir.path().join(format!("out-{crc:?}.jsonl"));
        let rep = dir.path().join(format!("report-{crc:?}.json"));
        let o = run(&[
            "play",
            ts,
            "--pace",
            "fast",
            "--format",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
            "--report",
            rep.to_str().unwrap(),
        ]);
        let line = integrity_failure(&o, &what("play"));
        assert!(line.contains(ts) && line.contains("offsets "), "{line}");
        let r = report(&rep);
        assert_eq!(r["outcome"], "failed");
        let last = r["last_offset"].as_u64().unwrap();
        assert!(
            last < u64::from(TAMPERED),
            "played {last}, past the damaged event"
        );
        let played = offsets(&out);
        assert_eq!(played.len() as u64, r["events_sent"].as_u64().unwrap());
        assert_eq!(played.last(), Some(&last));
        assert_eq!(r["final_hash"], clean_head_through(&clean, last).as_str());
        assert_ne!(r["final_hash"], recorded.as_str());

        // export: exit 3 and no file.
        let exported = dir.path().join(format!("export-{crc:?}.jsonl"));
        let o = run(&["export", ts, "-o", exported.to_str().unwrap()]);
        integrity_failure(&o, &what("export"));
        assert!(!exported.exists(), "a failed export leaves no file");
        // --no-verify reads it (the CRC was fixed up): the opt-out is honest about it.
        ok(&run(&[
            "export",
            ts,
            "--no-verify",
            "-o",
            exported.to_str().unwrap(),
        ]));

        // play --into an archive: exit 3 and no archive.
        let into = dir.path().join(format!("into-{crc:?}.mcap"));
        let o = run(&["play", ts, "--into", into.to_str().unwrap(), "--quiet"]);
        integrity_failure(&o, &what("play --into archive"));
        assert!(!into.exists(), "no archive over bad input");

        // play --into a real Statehouse daemon.
        if let Some(d) = &daemon {
            let o = run(&["play", ts, "--into", &d.url, "--quiet"]);
            integrity_failure(&o, &what("play --into statehouse"));
        }

        // serve (verifying) + both protocols + record.
        let (_server, addr) = serve(&t, &[]);
        let url = format!("replayscope://{addr}");
        let o = run(&[
            "play",
            &url,
            "--pace",
            "fast",
            "--format",
            "none",
            "--expect-hash",
            &recorded,
            "--quiet",
        ]);
        let line = integrity_failure(&o, &what("serve + play replayscope://"));
        assert!(line.contains("offsets "), "{line}");
        let sh = format!("statehouse://{addr}");
        let play_agent = |source: &str| {
            run(&[
                "play",
                source,
                "--agent",
                &tampered_agent,
                "--pace",
                "fast",
                "--format",
                "none",
                "--quiet",
            ])
        };
        integrity_failure(&play_agent(&sh), &what("serve + play statehouse://"));
        // The same one-agent read of the file.
        let line = integrity_failure(&play_agent(ts), &what("play --agent"));
        assert!(line.contains("chunk hash"), "{line}");
        let rec = dir.path().join(format!("rec-{crc:?}.mcap"));
        let o = run(&["record", &url, "-o", rec.to_str().unwrap()]);
        integrity_failure(&o, &what("record"));
        assert!(
            !rec.exists(),
            "record never leaves an archive over bad input"
        );

        // --no-verify opts out from the first chunk on (the damage here is in the first one).
        let first = dir.path().join(format!("first-{crc:?}.mcap"));
        std::fs::copy(&clean, &first).unwrap();
        tamper(&first, 10, crc);
        let f = first.to_str().unwrap();
        integrity_failure(&run(&["export", f]), &what("export, first chunk"));
        ok(&run(&["export", f, "--no-verify"]));

        // A chunk that stops parsing in its middle delivers nothing of itself.
        let broken = dir.path().join(format!("broken-{crc:?}.mcap"));
        std::fs::copy(&clean, &broken).unwrap();
        damage(&broken, TAMPERED, Damage::RecordLength, crc);
        let out = dir.path().join(format!("broken-{crc:?}.jsonl"));
        let o = run(&[
            "play",
            broken.to_str().unwrap(),
            "--pace",
            "fast",
            "--format",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        let played = offsets(&out);
        let before_chunk = played.last().copied().unwrap_or(0);
        let group_start = group_start_of(&clean, u64::from(TAMPERED));
        assert!(
            before_chunk < group_start,
            "played up to {before_chunk}, the damaged group starts at {group_start}"
        );

        // A server told not to verify: the client's own chain catches it at the end.
        let (_server, addr) = serve(&t, &["--no-verify"]);
        let url = format!("replayscope://{addr}");
        let o = run(&[
            "play", &url, "--pace", "fast", "--format", "none", "--quiet",
        ]);
        let line = integrity_failure(&o, &what("serve --no-verify + play replayscope://"));
        assert!(line.contains("the server's chain head"), "{line}");
        let o = run(&["record", &url, "-o", rec.to_str().unwrap()]);
        integrity_failure(&o, &what("serve --no-verify + record"));
        assert!(!rec.exists());
    }
}

/// A seek checks the chain from the checkpoint the index records before its start (every 256
/// events of a group), not over the group's events before it: a damaged event withholds its
/// window of 256 events alone from a seek into its group, a seek past it reads on, and the
/// chain heads a seek reports are the ones a read from the start computes.
#[test]
fn a_seek_checks_the_chain_from_the_checkpoint_before_it() {
    use replayscope::archive::{Archive, OpenOptions};
    let dir = tempfile::tempdir().unwrap();
    let clean = gen_uncompressed(dir.path());
    let open = |p: &Path| Archive::open(p, OpenOptions::default()).unwrap();
    let a = open(&clean);
    let mut heads = vec![];
    let mut c = a.cursor().unwrap();
    while let Some(e) = c.next_raw() {
        assert_eq!(e.unwrap().offset, heads.len() as u64);
        heads.push(c.chain_head().unwrap());
    }
    assert_eq!(heads.len() as u64, EVENTS);
    let g0 = group_start_of(&clean, u64::from(TAMPERED));
    assert!(g0 > 0);
    assert_eq!(
        group_start_of(&clean, g0 + 3 * 256 + 10),
        g0,
        "a group of 4+ windows"
    );
    for at in [g0, g0 + 1, g0 + 255, g0 + 256, g0 + 700, g0 + 3 * 256 + 10] {
        let mut c = a.cursor_at(at).unwrap();
        assert_eq!(c.chain_head(), Some(heads[at as usize - 1]), "before {at}");
        // On through the rest of the group and into the next.
        for o in at..at + 2_000 {
            assert_eq!(c.next_raw().unwrap().unwrap().offset, o);
            assert_eq!(c.chain_head(), Some(heads[o as usize]), "after {o}");
        }
    }

    let damaged_at = g0 + 256 + 10;
    let t = dir.path().join("tampered.mcap");
    std::fs::copy(&clean, &t).unwrap();
    tamper(&t, damaged_at as u32, Crc::Recomputed);
    let a = open(&t);
    let read = |from: u64| -> (Vec<u64>, Option<String>) {
        let mut c = match a.cursor_at(from) {
            Ok(c) => c,
            Err(e) => return (vec![], Some(e.to_string())),
        };
        let mut got = vec![];
        for _ in 0..2_000 {
            match c.next_raw() {
                Some(Ok(e)) => got.push(e.offset),
                Some(Err(e)) => return (got, Some(e.to_string())),
                None => break,
            }
        }
        (got, None)
    };
    let window = format!("offsets {} to {}", g0 + 256, g0 + 511);
    // Into the damaged window: nothing of it.
    let (got, err) = read(g0 + 300);
    let err = err.expect("a seek into the damaged window fails");
    assert!(got.is_empty() && err.contains(&window), "{err}");
    assert!(err.contains("nothing of them delivered"), "{err}");
    // From the group's start: its first window, then the failure.
    let (got, err) = read(g0);
    assert_eq!(got, (g0..g0 + 256).collect::<Vec<_>>());
    assert!(err.unwrap().contains(&window));
    // Past it in the same group: reads on, checked from the next checkpoint.
    let (got, err) = read(g0 + 600);
    assert_eq!((got.len(), err), (2_000, None));
    // From the group before: a sequential read checks the next group whole (read ahead), so
    // nothing of it is delivered.
    let (got, err) = read(g0 - 10);
    assert_eq!(got, (g0 - 10..g0).collect::<Vec<_>>());
    assert!(err.unwrap().contains("nothing of it delivered"));
}
