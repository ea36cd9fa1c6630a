//! Inspection over the 10M-event `gen` archive (made here if it is missing), each command a
//! fresh process of the release binary, as a user runs it:
//!
//! - the limit: `play ARCHIVE --format none` (read, verify the chain, decode every event);
//! - search: a word no event holds (the whole archive scanned), a common word (time to the first
//!   and to the last match, 1.4M matches written as JSON Lines), a regular expression (every
//!   value rendered as JSON text);
//! - one key's history;
//! - `state --at` at random points from fresh processes (p50 / p99), on the archive with its
//!   state snapshots, and what the snapshots cost in size (the same archive indexed without);
//! - the inspector's state after a seek to a random point (its folder on the archive, until the
//!   state is at the point);
//! - the table scrolled back 1,000,000 rows from the end, a page per key press: frame time (the
//!   view rendered into a 200x60 test terminal) and resident memory.
//!
//! ```sh
//! cargo bench --bench inspect                  # --events N for another archive size
//! cargo bench --bench inspect -- --only state  # or: search, scroll
//! ```

#[path = "support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
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

/// A pseudo-random sequence (an LCG), the same every run.
struct Points(u64);

impl Points {
    fn next_below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `state --at` at random points from fresh processes, and the size the snapshots cost.
fn state_at(archive: &str, events: u64) {
    let mut points = Points(0x5eed);
    let mut times = Vec::new();
    for _ in 0..30 {
        let k = points.next_below(events).to_string();
        let (_, t, _) = timed(&["state", archive, "--at", &k]);
        times.push(t.as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "state --at, 30 random points, fresh processes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        support::percentile(&times, 0.5),
        support::percentile(&times, 0.99),
        times.last().unwrap()
    );
    // The same events without snapshots: what they cost in size.
    let bare = format!("{archive}.bare");
    let _ = std::fs::remove_file(&bare);
    let out = Command::new(BIN)
        .args(["index", archive, "-o", &bare, "--snapshot-events", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with = std::fs::metadata(archive).unwrap().len();
    let without = std::fs::metadata(&bare).unwrap().len();
    let _ = std::fs::remove_file(&bare);
    println!(
        "snapshots' size: {with} bytes with, {without} without: +{:.2} % ({:.1} vs {:.1} bytes/event)",
        (with as f64 / without as f64 - 1.0) * 100.0,
        with as f64 / events as f64,
        without as f64 / events as f64
    );
}

/// The inspector's state after a seek to a random point: its folder, asked for the point,
/// until its state is there (what the state pane then shows).
fn state_after_seek(path: &Path, events: u64) {
    use replayscope::archive::{Archive, OpenOptions};
    use replayscope::source::{ArchiveSource, Filter, Source};
    use replayscope::state::KvState;
    use replayscope::state::folder::{FoldRequest, Folder};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let source: Arc<dyn Source> = Arc::new(ArchiveSource::new(
            Archive::open(path, OpenOptions::default()).unwrap(),
        ));
        let folder = Folder::spawn(source, Filter::default(), 0, KvState::new(), 1000, 256);
        let mut points = Points(0x5eed_5eed);
        let mut times = Vec::new();
        for _ in 0..30 {
            let k = points.next_below(events);
            let start = Instant::now();
            folder.request(FoldRequest {
                through: Some(k),
                throttle: false,
                diff_of: None,
            });
            let mut view = folder.view();
            tokio::time::timeout(
                Duration::from_secs(60),
                view.wait_for(|v| v.through == Some(k) || v.error.is_some()),
            )
            .await
            .expect("the state gets there")
            .unwrap();
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "inspector state after a seek to a random point (30 seeks): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            support::percentile(&times, 0.5),
            support::percentile(&times, 0.99),
            times.last().unwrap()
        );
    });
}

/// The table scrolled back 1,000,000 rows from the end, one page up per key press, rows read
/// from the archive as the window moves: the frame time and the resident memory.
fn scroll_back(path: &Path) {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use replayscope::archive::{Archive, OpenOptions};
    use replayscope::player::Stats;
    use replayscope::source::{ArchiveSource, Filter, Source};
    use replayscope::tui::app::{Model, Update, ViewState, handle};
    use replayscope::tui::input::Action;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let source: Arc<dyn Source> = Arc::new(ArchiveSource::new(
        Archive::open(path, OpenOptions::default()).unwrap(),
    ));
    let last = source.info().last_offset.unwrap();
    let mut model = Model::new(
        source.info().clone(),
        Stats {
            position: Some(last),
            ..Stats::default()
        },
    );
    let mut view = ViewState::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // At the end, as after a seek there: the rows before it are read first.
    model.apply(Update::Repositioned {
        next_offset: last + 1,
        state: None,
    });
    let mut load = |model: &mut Model, view: &mut ViewState| {
        while let Some(l) = model.take_row_load() {
            rt.block_on(replayscope::tui::load_rows(
                source.clone(),
                Filter::default(),
                l,
                tx.clone(),
            ));
            while let Ok(u) = rx.try_recv() {
                model.apply(u);
            }
            replayscope::tui::app::settle_scroll(model, view);
        }
    };
    load(&mut model, &mut view);
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let mut frames = Vec::new();
    let rss_start = support::vm_rss_kb();
    let mut rss_max = rss_start;
    let target = last.saturating_sub(1_000_000);
    let start = Instant::now();
    let mut presses = 0u64;
    while view.selected.is_none_or(|s| s > target) {
        // Moving the selection sends the player nothing.
        let _ = handle(Action::PageUp, &mut model, &mut view);
        presses += 1;
        load(&mut model, &mut view);
        let t = Instant::now();
        terminal
            .draw(|f| replayscope::tui::view::render(f, &model, &view))
            .unwrap();
        frames.push(t.elapsed().as_secs_f64() * 1e3);
        if presses.is_multiple_of(1000) {
            rss_max = rss_max.max(support::vm_rss_kb());
        }
        assert!(
            presses < 200_000,
            "the selection stopped at {:?}",
            view.selected
        );
    }
    let rss_end = support::vm_rss_kb();
    frames.sort_by(f64::total_cmp);
    println!(
        "scroll back {} rows ({presses} page-ups, {:.1} s): frame p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; RSS {:.1} MiB at the start, {:.1} MiB at most, {:.1} MiB at the end; {} rows held",
        last - target,
        start.elapsed().as_secs_f64(),
        support::percentile(&frames, 0.5),
        support::percentile(&frames, 0.99),
        frames.last().unwrap(),
        rss_start as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        model.rows.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = support::arg(&args, "--events")
        .map(|v| v.parse().unwrap())
        .unwrap_or(10_000_000);
    let only = support::arg(&args, "--only");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-data")
        .join(format!("gen-{events}.mcap"));
    if let Some(rate) = support::ensure_archive(&path, events) {
        println!("generated {} ({rate:.0} events/s)", path.display());
    }
    let archive = path.to_str().unwrap();
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    match only.as_deref() {
        Some("state") => {
            state_at(archive, events);
            state_after_seek(&path, events);
            return;
        }
        Some("scroll") => {
            scroll_back(&path);
            return;
        }
        _ => {}
    }

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
    state_at(archive, events);
    state_after_seek(&path, events);
    scroll_back(&path);
}
