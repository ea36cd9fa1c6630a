//! TUI benchmarks (issue: inspector). Run:
//!
//! ```text
//! cargo build --release && cargo bench --bench tui                 # 10M-event archive
//! cargo build --release && cargo bench --bench tui -- --events 1000000
//! ```
//!
//! 1. Render time per frame (pure render into ratatui's TestBackend) at 200x60 and 80x24.
//! 2. The real binary in tmux on the archive at AsFastAsPossible: time to FINISHED vs. headless
//!    `play --format none`, key-press-to-screen latency while ingesting, and the process's RSS
//!    at the end. Needs tmux and the release binary (target/release/replayscope).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use replayscope::event::generate::{GenOptions, Generator};
use replayscope::player::{Pace, PlayState, Stats};
use replayscope::source::SourceInfo;
use replayscope::state::KvState;
use replayscope::tui::app::{Model, Row, Update, ViewState};

#[path = "support.rs"]
mod support;
use support::*;

fn model() -> Model {
    let evs: Vec<_> = Generator::new(GenOptions::default()).take(6000).collect();
    let source = SourceInfo {
        name: "bench".into(),
        kind: "archive".into(),
        events: Some(6000),
        first_offset: Some(0),
        last_offset: Some(5999),
        first_commit_ts: Some(evs[0].commit_ts),
        last_commit_ts: Some(evs[5999].commit_ts),
        first_time_ns: evs[0].commit_time_ns,
        last_time_ns: evs[5999].commit_time_ns,
        channels: vec![],
        final_hash: None,
        ..Default::default()
    };
    let stats = Stats {
        state: PlayState::Playing,
        reason: None,
        pace: Pace::Fast,
        logical_time: false,
        position: Some(5999),
        next_offset: 6000,
        time_ns: evs[5999].commit_time_ns,
        events_played: 6000,
        bytes_played: 1_800_000,
        rate: 123_456.0,
        rate_history: (0..120).map(|i| 1000 + i * 10).collect(),
        target_rate: None,
        lag: Duration::ZERO,
        max_lag: Duration::ZERO,
        credit: Default::default(),
        ring: Default::default(),
        failures: 0,
        buffered: 0,
        source_status: None,
        following: false,
        head_offset: None,
        commit_age: None,
        at_marker: None,
        marker_pauses: 0,
        passes: 0,
        ab_loop: None,
    };
    let mut m = Model::new(source, stats);
    let mut state = KvState::new();
    for e in evs {
        let diff = state.apply(&e);
        m.apply(Update::Played {
            row: Row {
                event: Arc::new(e),
                size: 300,
                diff: Some(Arc::new(diff)),
            },
            state: Some(state.clone()),
        });
    }
    m
}

fn render_times(m: &Model, w: u16, h: u16) -> (f64, f64) {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let v = ViewState::default();
    let mut times = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let s = Instant::now();
        t.draw(|f| replayscope::tui::view::render(f, m, &v))
            .unwrap();
        times.push(s.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "b"])
    }
    /// Polls the screen every `every` until `pred` holds (each poll runs a tmux process, so a
    /// tight poll takes CPU from what is measured: poll fast only for latencies).
    fn wait(
        &self,
        limit: Duration,
        every: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<Instant> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if pred(&self.screen()) {
                return Some(Instant::now());
            }
            std::thread::sleep(every);
        }
        None
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

fn rss_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = arg(&args, "--events")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let archive = root.join(format!("target/bench-data/gen-{events}.mcap"));
    let bin = root.join("target/release/replayscope");

    let m = model();
    let (w50, w99) = render_times(&m, 200, 60);
    let (n50, n99) = render_times(&m, 80, 24);
    println!(
        "| render a frame, 200x60 (5,000 rows, 288 keys) | p50 {w50:.3} ms, p99 {w99:.3} ms |"
    );
    println!("| render a frame, 80x24 | p50 {n50:.3} ms, p99 {n99:.3} ms |");

    if !archive.exists() || !bin.exists() {
        println!(
            "(skipping the terminal part: needs {} (cargo bench --bench archive) and {} (cargo build --release))",
            archive.display(),
            bin.display()
        );
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("(skipping the terminal part: tmux is not installed)");
        return;
    }

    // Headless reference.
    let start = Instant::now();
    let out = Command::new(&bin)
        .args([
            "play",
            archive.to_str().unwrap(),
            "--format",
            "none",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let headless = start.elapsed().as_secs_f64();

    // The TUI, as fast as possible, in a 200x60 terminal.
    let t = Tmux(format!("replayscope-bench-{}", std::process::id()));
    let log = std::env::temp_dir().join("replayscope-bench-tui.log");
    let start = Instant::now();
    t.cmd(&[
        "new-session",
        "-d",
        "-s",
        "b",
        "-x",
        "200",
        "-y",
        "60",
        bin.to_str().unwrap(),
        "open",
        archive.to_str().unwrap(),
        "--pace",
        "fast",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    let pid = t
        .cmd(&["display", "-p", "-t", "b", "#{pane_pid}"])
        .trim()
        .to_string();
    t.wait(Duration::from_secs(10), Duration::from_millis(20), |s| {
        s.contains("PLAYING")
    })
    .expect("the inspector starts");
    // Key press to screen while ingesting: toggle the help overlay (10 presses, then let it run).
    let mut lat = Vec::new();
    for i in 0..10 {
        let sent = Instant::now();
        t.cmd(&["send-keys", "-t", "b", "?"]);
        let open = i % 2 == 0;
        let seen = t
            .wait(Duration::from_secs(5), Duration::from_millis(1), |s| {
                s.contains("keys (esc or ? to close)") == open
            })
            .expect("the key shows on screen");
        lat.push((seen - sent).as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let done = t
        .wait(Duration::from_secs(600), Duration::from_millis(100), |s| {
            s.contains("FINISHED")
        })
        .expect("the inspector finishes");
    let tui_secs = (done - start).as_secs_f64();
    // The state is folded off the ingestion path (throttled while ingesting): when it has caught
    // up with the cursor, the state pane stops saying how far behind it is (close the report box
    // first).
    t.cmd(&["send-keys", "-t", "b", "Escape"]);
    let caught_up = t
        .wait(Duration::from_secs(600), Duration::from_millis(100), |s| {
            s.contains("state at #")
                && !s.contains("behind the cursor")
                && !s.contains("waits out full speed")
        })
        .expect("the state catches up");
    let state_secs = (caught_up - start).as_secs_f64();
    let hwm = rss_kb(&pid, "VmHWM:");
    let rss = rss_kb(&pid, "VmRSS:");
    t.cmd(&["send-keys", "-t", "b", "q"]);
    println!(
        "| ingestion, fast pace, {events} events: TUI drawing at 30 fps vs headless play | TUI {:.0} events/s ({tui_secs:.2} s), headless {:.0} events/s ({headless:.2} s): {:.0} % |",
        events as f64 / tui_secs,
        events as f64 / headless,
        headless / tui_secs * 100.0
    );
    println!(
        "| state at the last event shown (folded off the ingestion path) | {state_secs:.2} s after start ({:.2} s after FINISHED) |",
        state_secs - tui_secs
    );
    println!(
        "| key press to screen while ingesting (tmux send-keys to capture-pane, 10 presses) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!(
        "| TUI process memory after {events} events | RSS {:.1} MiB, peak {:.1} MiB |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = Path::new(&log);
}
