//! Archive benchmarks (issue: foundation). Run:
//!
//! ```text
//! cargo bench --bench archive                      # 10M events (default), plus the 1M RSS comparison
//! cargo bench --bench archive -- --events 1000000  # a quicker run
//! ```
//!
//! Archives are generated once into `target/bench-data/` and reused. Prints a Markdown table for
//! BENCHMARKS.md. Peak RSS is measured in a child process that only opens and scans.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use replayscope::archive::{Archive, OpenOptions};
use replayscope::event::Position;
use replayscope::event::generate::Rng;

#[path = "support.rs"]
mod support;
use support::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Child process: open, decode every event (and every JSON value), print
/// `events secs payload_bytes vmhwm_kb`. With `chain`, also check the hash chain.
fn scan_phase(path: &Path, chain: bool) {
    let start = Instant::now();
    let archive = Archive::open(path, OpenOptions::default()).unwrap();
    let mut cursor = archive.cursor().unwrap().verify_chain(chain);
    let mut events = 0u64;
    let mut bytes = 0u64;
    let mut ops = 0u64;
    let mut names = replayscope::event::wire::NameCache::default();
    while let Some(raw) = cursor.next_raw() {
        let raw = raw.unwrap();
        bytes += raw.payload.len() as u64;
        let e = raw.decode_with(&mut names).unwrap();
        // Decode every value to JSON too (values are otherwise decoded on first use).
        e.check_values().unwrap();
        ops += e.operations.len() as u64;
        events += 1;
    }
    if chain {
        assert_eq!(
            cursor.verified_through().map(|v| v.1),
            archive.recorded_final_hash()
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{events} {secs} {bytes} {} {ops}", vm_hwm_kb());
}

struct Scan {
    events: u64,
    secs: f64,
    payload_bytes: u64,
    rss_kb: u64,
}

fn scan_in_child(path: &Path, chain: bool) -> Scan {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--phase",
            if chain { "scan-chain" } else { "scan" },
            "--archive",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    Scan {
        events: f[0].parse().unwrap(),
        secs: f[1].parse().unwrap(),
        payload_bytes: f[2].parse().unwrap(),
        rss_kb: f[3].parse().unwrap(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, "--phase").as_deref() {
        Some("scan") => return scan_phase(Path::new(&arg(&args, "--archive").unwrap()), false),
        Some("scan-chain") => {
            return scan_phase(Path::new(&arg(&args, "--archive").unwrap()), true);
        }
        _ => {}
    }
    let events: u64 = arg(&args, "--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = PathBuf::from(arg(&args, "--dir").unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench-data")
            .display()
            .to_string()
    }));
    let path = dir.join(format!("gen-{events}.mcap"));
    let small = dir.join("gen-1000000.mcap");

    println!("archive: {}", path.display());
    let write_rate = ensure_archive(&path, events);
    ensure_archive(&small, 1_000_000);
    let file_bytes = std::fs::metadata(&path).unwrap().len();

    // Open (footer, summary, index, metadata).
    let start = Instant::now();
    let archive = Archive::open(&path, OpenOptions::default()).unwrap();
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(archive.events(), events);

    // Seek latency by offset and by time: position a cursor and decode the event there.
    let mut rng = Rng::new(99);
    let mut by_offset = Vec::with_capacity(1000);
    let mut by_time = Vec::with_capacity(1000);
    let (t0, t1) = (
        archive.first_time_ns().unwrap(),
        archive.last_time_ns().unwrap(),
    );
    for _ in 0..1000 {
        let o = rng.below(events);
        let s = Instant::now();
        let e = archive.cursor_at(o).unwrap().next_event().unwrap().unwrap();
        by_offset.push(s.elapsed().as_secs_f64() * 1e3);
        assert_eq!(e.offset, o);

        let t = t0 + rng.below(t1 - t0);
        let s = Instant::now();
        let o = archive.resolve_from(Position::Time(t)).unwrap();
        let e = archive.cursor_at(o).unwrap().next_event().unwrap().unwrap();
        by_time.push(s.elapsed().as_secs_f64() * 1e3);
        assert!(e.commit_time_ns.unwrap() >= t);
    }
    by_offset.sort_by(f64::total_cmp);
    by_time.sort_by(f64::total_cmp);

    let big = scan_in_child(&path, false);
    let chained = scan_in_child(&path, true);
    let one = scan_in_child(&small, false);

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    match write_rate {
        Some(r) => println!(
            "| write rate (gen + encode + zstd + hash) | {:.0} events/s |",
            r
        ),
        None => println!("| write rate | (archive existed; delete it to re-measure) |"),
    }
    println!(
        "| archive size | {} bytes, {:.1} bytes/event ({:.1} bytes/event encoded payload) |",
        file_bytes,
        file_bytes as f64 / events as f64,
        big.payload_bytes as f64 / events as f64
    );
    println!("| open | {open_ms:.2} ms |");
    for (what, s) in [
        (
            "full scan, every event and JSON value decoded, CRCs checked",
            &big,
        ),
        (
            "the same, and the hash chain checked at every chunk (verify)",
            &chained,
        ),
    ] {
        println!(
            "| {what} | {:.0} events/s, {:.0} MB/s payload, {:.0} MB/s on disk ({:.2} s) |",
            s.events as f64 / s.secs,
            s.payload_bytes as f64 / s.secs / 1e6,
            file_bytes as f64 / s.secs / 1e6,
            s.secs
        );
    }
    println!(
        "| seek by offset (1000 random) | p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms |",
        percentile(&by_offset, 0.5),
        percentile(&by_offset, 0.99),
        by_offset[by_offset.len() - 1]
    );
    println!(
        "| seek by time (1000 random) | p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms |",
        percentile(&by_time, 0.5),
        percentile(&by_time, 0.99),
        by_time[by_time.len() - 1]
    );
    println!(
        "| peak RSS, open + full scan | {:.1} MiB at {} events, {:.1} MiB at 1000000 events |",
        big.rss_kb as f64 / 1024.0,
        events,
        one.rss_kb as f64 / 1024.0
    );
}
