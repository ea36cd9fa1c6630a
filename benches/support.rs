//! Helpers shared by the benchmarks (included with `#[path]`; not a bench of its own).
#![allow(dead_code)]

use std::path::Path;
use std::time::Instant;

use replayscope::archive::{ArchiveWriter, WriterOptions};
use replayscope::event::generate::{GenOptions, Generator};

/// The value after `name` on the command line.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A field of /proc/self/status (`VmHWM:`, `VmRSS:`), KiB.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Peak resident set size of this process, KiB.
pub fn vm_hwm_kb() -> u64 {
    status_kb("VmHWM:")
}

/// Resident set size of this process now, KiB.
pub fn vm_rss_kb() -> u64 {
    status_kb("VmRSS:")
}

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Generates the `gen` archive (seed 1) if it is not there yet; returns the write rate
/// (events/s) when it generated it.
pub fn ensure_archive(path: &Path, events: u64) -> Option<f64> {
    if path.exists() {
        return None;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    let start = Instant::now();
    let mut w = ArchiveWriter::create(&tmp, WriterOptions::default()).unwrap();
    for e in Generator::new(GenOptions::default()).take(events as usize) {
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
    let secs = start.elapsed().as_secs_f64();
    std::fs::rename(&tmp, path).unwrap();
    Some(events as f64 / secs)
}
