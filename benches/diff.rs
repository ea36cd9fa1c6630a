//! Differential replay over two 10M-event archives, each run a fresh process of the release
//! binary: equal archives (a copy) and archives that differ only at their last event, in each
//! mode (events, state, hash), with the peak resident memory of the process; the limit is one
//! source read alone in the same run (`play --format none`), with and without the hash chain.
//!
//! ```sh
//! cargo bench --bench diff                  # --events N for another archive size
//! ```

#[path = "support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use replayscope::archive::{ArchiveWriter, WriterOptions};
use replayscope::event::generate::{GenOptions, Generator};

const BIN: &str = env!("CARGO_BIN_EXE_replayscope");

/// Peak RSS of a process, KiB (VmHWM, read while it runs; it only grows).
fn hwm_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `replayscope ARGS`: (wall time, exit code, peak RSS in MiB).
fn run(args: &[&str]) -> (Duration, Option<i32>, f64) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = hwm_kb(child.id()) {
            peak = peak.max(kb);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (start.elapsed(), status.code(), peak as f64 / 1024.0)
}

/// The generated archive with one more key written by its last event.
fn ensure_changed_at_end(path: &Path, events: u64) {
    if path.exists() {
        return;
    }
    let tmp = path.with_extension("tmp");
    let mut w = ArchiveWriter::create(&tmp, WriterOptions::default()).unwrap();
    for (i, mut e) in Generator::new(GenOptions::default())
        .take(events as usize)
        .enumerate()
    {
        if i as u64 == events - 1 {
            // One more key written: the events, the state and the bytes all differ.
            let mut value = serde_json::Map::new();
            value.insert("changed".into(), serde_json::Value::from(true));
            e.operations.push(replayscope::event::Operation {
                key: "bench/changed".into(),
                value: Some(replayscope::event::ObjectValue::from_object(value)),
                version: 1,
            });
        }
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = support::arg(&args, "--events")
        .map(|v| v.parse().unwrap())
        .unwrap_or(10_000_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let a = dir.join(format!("gen-{events}.mcap"));
    support::ensure_archive(&a, events);
    let copy = dir.join(format!("gen-{events}-copy.mcap"));
    if !copy.exists() {
        std::fs::copy(&a, &copy).unwrap();
    }
    let last = dir.join(format!("gen-{events}-last-changed.mcap"));
    ensure_changed_at_end(&last, events);
    let (a, copy, last) = (
        a.to_str().unwrap(),
        copy.to_str().unwrap(),
        last.to_str().unwrap(),
    );
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    for verify in [true, false] {
        let mut limit_args = vec!["play", a, "--format", "none"];
        if !verify {
            limit_args.push("--no-verify");
        }
        let (t, _, rss) = run(&limit_args);
        let limit = rate(t);
        println!(
            "limit: one source read alone{}: {:.2} s, {limit:.0} events/s, peak RSS {rss:.0} MiB",
            if verify { "" } else { " (--no-verify)" },
            t.as_secs_f64(),
        );
        for mode in ["events", "state", "hash"] {
            for (right, what, code) in [(copy, "equal", 0), (last, "last differs", 3)] {
                let mut diff_args = vec!["diff", a, right, "--compare", mode];
                if !verify {
                    diff_args.push("--no-verify");
                }
                let (t, got, rss) = run(&diff_args);
                assert_eq!(got, Some(code), "diff {mode} {what}");
                println!(
                    "diff --compare {mode}{} ({what}): {:.2} s, {:.0} events/s ({:.2}x the one-source limit), peak RSS {rss:.0} MiB",
                    if verify { "" } else { " --no-verify" },
                    t.as_secs_f64(),
                    rate(t),
                    rate(t) / limit,
                );
            }
        }
    }
}
