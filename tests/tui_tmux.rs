//! End to end: the real binary in a real terminal (tmux). Pause, step, seek to a percentage,
//! stop (the report and the resume offset), resume, quit, and the terminal is restored.
//!
//! `scripts/test` installs tmux and sets `REPLAYSCOPE_REQUIRE_TMUX=1`, which turns a missing tmux
//! into a failure; a plain `cargo test` without tmux reports the skip on stderr.

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/statehouse.rs"]
mod statehouse;

struct Tmux {
    socket: String,
    /// The inspector's log, shown with the screen when a wait times out.
    log: std::path::PathBuf,
}

impl Tmux {
    /// A 160x45 terminal running `replayscope ARGS` (logging to a file of its own), which then
    /// prints `EXITED=<code>` and stays open a while for the last screen to be read.
    fn start(name: &str, args: &str) -> (Tmux, std::path::PathBuf) {
        let config =
            std::env::temp_dir().join(format!("replayscope-{name}-{}-config", std::process::id()));
        let _ = std::fs::remove_dir_all(&config);
        Tmux::start_with_config(name, args, &config)
    }

    /// As [`Tmux::start`], with the user's settings under `config` (`XDG_CONFIG_HOME`).
    fn start_with_config(
        name: &str,
        args: &str,
        config: &std::path::Path,
    ) -> (Tmux, std::path::PathBuf) {
        let log =
            std::env::temp_dir().join(format!("replayscope-{name}-{}.log", std::process::id()));
        let t = Tmux {
            socket: format!("replayscope-{name}-{}", std::process::id()),
            log: log.clone(),
        };
        let cmd = format!(
            "XDG_CONFIG_HOME={} {} {args} --log replayscope=debug --log-file {}; echo EXITED=$?; sleep 30",
            config.display(),
            env!("CARGO_BIN_EXE_replayscope"),
            log.display()
        );
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "rs",
            "-x",
            "160",
            "-y",
            "45",
            "sh",
            "-c",
            &cmd,
        ]);
        (t, log)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "rs"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "rs"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Polls the screen until `pred` holds (at most `limit`); panics with the screen otherwise.
    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > limit {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "timed out waiting for {what}; screen:\n{s}\nthe inspector's log (last lines):\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The offset in the timeline line `#N of A–B` (N with thousands separators).
fn position(screen: &str) -> Option<u64> {
    screen
        .lines()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix('#')
                .and_then(|r| r.split(" of ").next())
        })
        .and_then(|n| n.trim().replace(',', "").parse().ok())
}

/// False (after saying so) when tmux is missing and not required.
fn have_tmux() -> bool {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("REPLAYSCOPE_REQUIRE_TMUX").is_none(),
            "REPLAYSCOPE_REQUIRE_TMUX is set but tmux is not installed (scripts/test installs it)"
        );
        eprintln!("skipped: tmux is not installed (run scripts/test)");
        return false;
    }
    true
}

#[test]
fn the_inspector_in_a_real_terminal() {
    if !have_tmux() {
        return;
    }
    let (t, log) = Tmux::start("tmux", "demo --speed 20");
    let limit = Duration::from_secs(15);

    let s = t.wait_for("the inspector playing", limit, |s| {
        s.contains("PLAYING") && position(s).is_some_and(|p| p > 0)
    });
    assert!(s.contains("bundled sample"), "{s}");
    assert!(
        s.contains("credit window") && s.contains("replay ring"),
        "{s}"
    );

    t.keys(&["Space"]);
    let s = t.wait_for("paused", limit, |s| s.contains("PAUSED"));
    let paused_at = position(&s).unwrap();

    t.keys(&["."]);
    t.wait_for("one step", limit, |s| position(s) == Some(paused_at + 1));

    // Seek to 50 % of 0–5999: offset 3000 becomes the current event.
    t.keys(&["g"]);
    t.wait_for("the seek prompt", limit, |s| s.contains("> "));
    t.keys(&["5", "0", "%"]);
    t.wait_for("valid input", limit, |s| s.contains("ok: enter to go"));
    t.keys(&["Enter"]);
    t.wait_for("the seek to 50%", limit, |s| position(s) == Some(3000));

    // Keys that arrive together (one send-keys: one read on the terminal) each act once.
    t.keys(&["-l", ",,,,,"]);
    t.wait_for("five step-backs in a burst", limit, |s| {
        position(s) == Some(2995)
    });
    // +10 % three times from 2995 of 0–5999 (49.9 %): 79.9 %, offset 4795.
    t.keys(&["-l", "]]]"]);
    t.wait_for("three jumps in a burst", limit, |s| {
        position(s) == Some(4795)
    });
    // The speed ladder from the demo's 20x: 30, 50, 75, 100; and back down to 20.
    t.keys(&["-l", "++++"]);
    t.wait_for("four speed steps in a burst", limit, |s| s.contains("100x"));
    t.keys(&["-l", "--", "----"]);
    t.wait_for("and back", limit, |s| s.contains("20x"));
    t.keys(&["g", "3", "0", "0", "0", "Enter"]);
    t.wait_for("back at 3000", limit, |s| position(s) == Some(3000));

    // An invalid target is refused inline.
    t.keys(&["g", "9", "9", "9", "9", "9"]);
    t.wait_for("inline validation", limit, |s| {
        s.contains("outside offsets 0 to 5999")
    });
    t.keys(&["Escape"]);
    // ESC and a key right behind it read as Alt+key: wait for the prompt to close first.
    t.wait_for("the prompt closed", limit, |s| !s.contains("┌ seek"));

    t.keys(&["s"]);
    // Wait for the whole report: a capture can land in the middle of a frame being drawn.
    let s = t.wait_for("the report", limit, |s| {
        s.contains("run stopped") && s.contains("resume from offset")
    });
    assert!(s.contains("resume from offset 3001"), "{s}");
    assert!(s.contains("STOPPED"), "{s}");

    t.keys(&["r"]);
    t.wait_for("the resume prompt prefilled", limit, |s| {
        s.contains("> 3001")
    });
    t.keys(&["Enter"]);
    t.wait_for("playing again after 3001", limit, |s| {
        s.contains("PLAYING") && position(s).is_some_and(|p| p >= 3001)
    });

    t.keys(&["q"]);
    let s = t.wait_for("exit", limit, |s| s.contains("EXITED=0"));
    // The alternate screen was left: none of the inspector remains on the terminal.
    assert!(
        !s.contains("PLAYING") && !s.contains("credit window"),
        "{s}"
    );
    let _ = std::fs::remove_file(log);
}

/// The walkthrough: `demo --tour` stops at the sample's markers with their captions; a click on
/// the timeline seeks where it points; `v` changes the layout and it is remembered; `'` lists
/// the markers and `}` goes to the next; a double click on a row opens its whole value.
#[test]
fn the_tour_stops_at_markers_and_the_mouse_and_layouts_work() {
    if !have_tmux() {
        return;
    }
    let config =
        std::env::temp_dir().join(format!("replayscope-tour-{}-config", std::process::id()));
    let _ = std::fs::remove_dir_all(&config);
    let (t, log) = Tmux::start_with_config("tour", "demo --tour --speed 50", &config);
    let limit = Duration::from_secs(20);
    let s = t.wait_for("the first marker's caption", limit, |s| {
        s.contains("welcome · space: go on") && position(s) == Some(40)
    });
    assert!(
        s.contains("PAUSED") && s.contains("Six agents write"),
        "{s}"
    );
    // Held there until space.
    t.keys(&["Space"]);
    t.wait_for("the second marker", limit, |s| {
        s.contains("seek · space: go on") && position(s) == Some(900)
    });
    // A click (SGR mouse report, as a terminal sends it) on the middle of the timeline's bar:
    // 160 columns, the bar on line 44; column 81 stands for round(80 / 159 x 5999) = 3018.
    t.keys(&["-l", "\x1b[<0;81;44M\x1b[<0;81;44m"]);
    t.wait_for("the click's seek", limit, |s| position(s) == Some(3018));
    // v: transport -> present, written to the settings.
    t.keys(&["v"]);
    let s = t.wait_for("the present layout", limit, |s| {
        s.contains("layout: present")
    });
    assert!(!s.contains("credit window") && !s.contains(" help "), "{s}");
    let settings = config.join("replayscope").join("config.toml");
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        "layout = \"present\"\n"
    );
    // The list opens on the marker at or before the cursor (state-diff, #2000).
    t.keys(&["'"]);
    t.wait_for("the list of markers", limit, |s| s.contains("markers (6)"));
    t.keys(&["Enter"]);
    t.wait_for("at the state-diff marker", limit, |s| {
        position(s) == Some(2000) && s.contains("State: m marks")
    });
    t.keys(&["}"]);
    t.wait_for("at the next marker", limit, |s| position(s) == Some(3200));
    // A double click on the first row (present: header 2, caption 4, border, titles): line 9.
    t.keys(&["-l", "\x1b[<0;3;9M\x1b[<0;3;9m\x1b[<0;3;9M\x1b[<0;3;9m"]);
    t.wait_for("the row's whole value", limit, |s| s.contains("esc close"));
    t.keys(&["q"]);
    t.wait_for("exit", limit, |s| s.contains("EXITED=0"));
    let _ = std::fs::remove_file(log);

    // The next inspector starts in the layout chosen last.
    let (t, log) = Tmux::start_with_config(
        "tour2",
        &format!(
            "open {}/assets/sample.mcap --paused",
            env!("CARGO_MANIFEST_DIR")
        ),
        &config,
    );
    t.wait_for("the remembered layout", limit, |s| {
        s.contains("┌ caption") && !s.contains("credit")
    });
    t.keys(&["q"]);
    t.wait_for("exit", limit, |s| s.contains("EXITED=0"));
    let _ = std::fs::remove_file(log);
    let _ = std::fs::remove_dir_all(&config);
}

/// Following a running agent: CAUGHT UP once the history is shown, then rows the writer
/// commits appear without a key press; End after a pause goes back to live.
#[test]
fn a_followed_agent_is_caught_up_and_new_rows_arrive_by_themselves() {
    if !have_tmux() {
        return;
    }
    let Some(d) = statehouse::start() else { return };
    let rt = statehouse::rt();
    let client = rt.block_on(statehouse::connect(&d));
    for i in 0..12 {
        rt.block_on(statehouse::commit(&client, i));
    }
    let (t, log) = Tmux::start(
        "live",
        &format!("open {} --agent live/a --agent live/b --follow", d.url),
    );
    let limit = Duration::from_secs(20);
    // 12 commits, 3 of them to agent c (not followed): offsets 0 to 8.
    let s = t.wait_for("caught up", limit, |s| {
        s.contains("CAUGHT UP") && s.contains("at head #8")
    });
    assert!(s.contains("LIVE"), "{s}");
    for i in 12..20 {
        rt.block_on(statehouse::commit(&client, i));
    }
    // 8 more, 2 of them to c: offsets 9 to 14, shown as they land, no key pressed.
    let s = t.wait_for("the new rows", limit, |s| {
        s.contains("CAUGHT UP") && s.contains("at head #14") && position(s) == Some(14)
    });
    assert!(
        s.contains("step/18, step/18"),
        "the newest row (one transaction of a and b): {s}"
    );

    // Paused, new commits are held and counted; End goes back to live.
    t.keys(&["Space"]);
    t.wait_for("paused", limit, |s| s.contains("PAUSED"));
    for i in 20..28 {
        rt.block_on(statehouse::commit(&client, i));
    }
    t.wait_for("held while paused", limit, |s| {
        s.contains("PAUSED") && s.contains("6 events behind head #20") && s.contains("6 held")
    });
    t.keys(&["End"]);
    t.wait_for("back to live", limit, |s| {
        s.contains("CAUGHT UP") && s.contains("at head #20") && position(s) == Some(20)
    });
    t.keys(&["q"]);
    t.wait_for("exit", limit, |s| s.contains("EXITED=0"));
    let _ = std::fs::remove_file(log);
}

/// The offsets of the sample's events that `search` finds for `query`.
fn sample_matches(sample: &std::path::Path, query: &str) -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .args(["search", sample.to_str().unwrap(), query])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Inspection in a real terminal: seek and scroll back past the target (the rows before it are
/// read), search the whole source and jump with n / N (to the matches the search command finds), a search as a seek target, a key's history, the full
/// value copied to the clipboard through OSC 52 (tmux takes it into a buffer), a state diff.
#[test]
fn search_history_and_full_values_in_a_real_terminal() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sample = tmp.path().join("sample.mcap");
    let out = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .args(["demo", "--export", sample.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let escalate = sample_matches(&sample, "escalate");
    let (t, log) = Tmux::start("inspect", "demo --paused");
    t.run(&["set-option", "-g", "set-clipboard", "on"]);
    let limit = Duration::from_secs(15);
    t.wait_for("the inspector paused", limit, |s| s.contains("PAUSED"));

    t.keys(&["g", "3", "0", "0", "0", "Enter"]);
    t.wait_for("the seek to 3000", limit, |s| position(s) == Some(3000));

    // The rows before the seek target are read: scroll back past it, to the first event and
    // back to the cursor.
    t.keys(&["PPage", "PPage", "PPage"]);
    t.wait_for("three pages back", limit, |s| s.contains("│#2940 @"));
    t.keys(&["Home"]);
    t.wait_for("the first event", limit, |s| {
        s.contains("│#0 @") && s.contains("scrolled back: End returns")
    });
    t.keys(&["End"]);
    t.wait_for("back to the cursor", limit, |s| {
        s.contains("│#3000 @") && s.contains("following") && !s.contains("scrolled back")
    });

    // `/` then Enter: the whole source is searched; the header counts what was found.
    t.keys(&["/"]);
    t.wait_for("the search prompt", limit, |s| s.contains("┌ search"));
    t.keys(&["-l", "escalate"]);
    t.keys(&["Enter"]);
    let done = format!(
        "search \"escalate\": {} matches in the source",
        replayscope::text::thousands(escalate.len() as u64)
    );
    t.wait_for("the search over", limit, |s| s.contains(&done));
    let next = *escalate.iter().find(|&&o| o > 3000).unwrap();
    t.keys(&["n"]);
    t.wait_for("n: the next match", limit, |s| position(s) == Some(next));
    let after = *escalate.iter().find(|&&o| o > next).unwrap();
    t.keys(&["n"]);
    t.wait_for("n again", limit, |s| position(s) == Some(after));
    t.keys(&["N"]);
    t.wait_for("N: back to the one before", limit, |s| {
        position(s) == Some(next)
    });

    // A search as a seek target: the next match of another query.
    let tool = sample_matches(&sample, "create_ticket");
    let target = *tool.iter().find(|&&o| o > next).unwrap();
    t.keys(&["g"]);
    t.wait_for("the seek prompt", limit, |s| s.contains("┌ seek"));
    t.keys(&["-l", "/create_ticket"]);
    t.keys(&["Enter"]);
    t.wait_for("g /create_ticket", limit, |s| position(s) == Some(target));

    // A key's history, prefilled with the transaction's first key.
    t.keys(&["h"]);
    t.wait_for("the history prompt", limit, |s| {
        s.contains("┌ history of the key")
    });
    t.keys(&["Enter"]);
    let s = t.wait_for("the history", limit, |s| {
        s.contains("history of ") && s.contains("versions") && !s.contains("so far")
    });
    assert!(s.contains("enter: go there"), "{s}");
    t.keys(&["Escape"]);
    t.wait_for("the history closed", limit, |s| !s.contains("history of "));

    // The full value, copied: tmux (set-clipboard on) keeps it as a buffer.
    t.keys(&["Enter"]);
    t.wait_for("the full value", limit, |s| {
        s.contains(&format!("transaction #{target}"))
    });
    t.keys(&["y"]);
    t.wait_for("the copy confirmed", limit, |s| {
        s.contains("to the clipboard")
    });
    let start = Instant::now();
    let copied = loop {
        let b = t.run(&["show-buffer"]);
        if !b.is_empty() || start.elapsed() > limit {
            break b;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let value: serde_json::Value = serde_json::from_str(&copied).expect("the buffer is the JSON");
    assert_eq!(value["offset"].as_u64(), Some(target));
    t.keys(&["Escape"]);
    // Closed before the next key: an escape and a key read together are Alt+key.
    t.wait_for("the full value closed", limit, |s| {
        !s.contains(&format!("transaction #{target} · lines"))
    });

    // Mark here, step on, and the state diff lists what the steps changed.
    t.keys(&["m"]);
    t.wait_for("marked", limit, |s| s.contains("marked the state at"));
    t.keys(&["-l", "....."]);
    t.wait_for("five steps", limit, |s| position(s) == Some(target + 5));
    t.keys(&["d"]);
    t.wait_for("the state diff", limit, |s| {
        s.contains("changed ·") && s.contains("-> #")
    });
    t.keys(&["Escape"]);
    t.wait_for("the state diff closed", limit, |s| !s.contains("changed ·"));

    t.keys(&["q"]);
    t.wait_for("exit", limit, |s| s.contains("EXITED=0"));
    let _ = std::fs::remove_file(log);
}
