//! Inspection over the 10M-event `gen` archive (made here if it is missing), each command a
//! fresh process of the release binary, as a user runs it:
//!
//! - the limit: `play ARCHIVE --format none` (read, verify the chain, decode every event);
//! - search: a word no event holds (the whole archive scanned), a common word (time to the first
//!   and to the last match, 1.4M matches written as JSON Lines), a regular expression (every
//!   value rendered as JSON text);
//! - one key's history;
//! - `state --at` at spread points (p50 / max), folded from the first event.
//!
//! ```sh
//! cargo bench --bench inspect                  # --events N for another archive size
//! ```

#[path = "support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_replayscope");

/// Runs `replayscope ARGS` with stdout read line by line; returns (time to the first line,
/// time to the end, lines). Exit 0 or 1 (nothing found) is expected.
fn timed(args: &[&str]) -> (Option<Duration>, Duration, u64) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = None;
    let mut n = 0u64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        line.unwrap();
        first.get_or_insert_with(|| start.elapsed());
        n += 1;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "replayscope {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (first, start.elapsed(), n)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = support::arg(&args, "--events")
        .map(|v| v.parse().unwrap())
        .unwrap_or(10_000_000);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(format!("gen-{events}.mcap"));
    if let Some(rate) = support::ensure_archive(&path, events) {
        println!("generated {} ({rate:.0} events/s)", path.display());
    }
    let archive = path.to_str().unwrap();
    let rate = |d: Duration| events as f64 / d.as_secs_f64();

    let (_, limit, _) = timed(&["play", archive, "--format", "none"]);
    println!(
        "limit  play --format none: {:.2} s ({:.0} events/s)",
        limit.as_secs_f64(),
        rate(limit)
    );
    for query in ["no-such-word-anywhere", "re:no-such-word-anywhere"] {
        let (_, all, n) = timed(&["search", archive, query]);
        assert_eq!(n, 0);
        println!(
            "search {query}: {:.2} s, {:.0} events/s ({:.2}x the limit)",
            all.as_secs_f64(),
            rate(all),
            limit.as_secs_f64() / all.as_secs_f64()
        );
    }
    let (first, last, n) = timed(&["search", archive, "refund"]);
    println!(
        "search refund: {n} matches, first after {:.3} s, last (end) after {:.2} s ({:.0} events/s)",
        first.unwrap().as_secs_f64(),
        last.as_secs_f64(),
        rate(last)
    );
    let (_, h, versions) = timed(&[
        "history",
        archive,
        "memory/asked",
        "--agent",
        "support/triage-79bf",
    ]);
    println!(
        "history memory/asked (one agent): {versions} versions in {:.2} s",
        h.as_secs_f64()
    );
    let mut x: u64 = 0x5eed;
    let mut times = Vec::new();
    for _ in 0..5 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = ((x >> 33) % events).to_string();
        let (_, t, _) = timed(&["state", archive, "--at", &k]);
        println!("state --at {k}: {:.2} s", t.as_secs_f64());
        times.push(t.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "state --at: p50 {:.2} s, max {:.2} s over {} points (no snapshots: folded from the first event)",
        support::percentile(&times, 0.5),
        times.last().unwrap(),
        times.len()
    );
}
