//! Following a running agent (`--follow`): a real Statehouse daemon on 127.0.0.1 while a writer
//! commits transactions to several agents; the follower delivers every committed transaction of
//! the agents it follows exactly once, in commit_ts order — across polls, across a cross-agent
//! transaction (once, not once per agent) and across a daemon restart.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/statehouse.rs"]
mod statehouse;
use statehouse::{Committed, commit, connect, rt};

/// A follower process and the lines it prints, as they come.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn follow(args: &[&str]) -> Follower {
    let mut child = Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Follower { child, lines }
}

impl Follower {
    /// The next `n` events it prints (failing after `limit`).
    fn events(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => out.push(serde_json::from_str(&line).unwrap()),
                Err(e) => panic!(
                    "{} of {n} events within {limit:?} ({e}); last: {:?}",
                    out.len(),
                    out.last()
                ),
            }
        }
        out
    }
}

/// Every transaction of agents a and b, once, in commit_ts order, numbered 0.. and named by
/// the first followed agent it wrote to.
fn check(events: &[Value], committed: &[Committed]) {
    let expected: Vec<&Committed> = committed
        .iter()
        .filter(|c| c.agents.iter().any(|a| *a == "a" || *a == "b"))
        .collect();
    assert_eq!(events.len(), expected.len(), "events delivered");
    let mut keys_of: BTreeMap<u64, &Committed> = BTreeMap::new();
    for c in &expected {
        keys_of.insert(c.commit_ts, c);
    }
    for (i, (e, c)) in events.iter().zip(&expected).enumerate() {
        assert_eq!(e["offset"], i as u64, "numbered in order: {e}");
        assert_eq!(e["commit_ts"], c.commit_ts, "#{i} in commit order: {e}");
        assert_eq!(e["agent_id"], c.agents[0], "#{i}: {e}");
        let ops = e["operations"].as_array().unwrap();
        assert_eq!(
            ops.len(),
            c.agents.len(),
            "#{i} has all its operations: {e}"
        );
        assert!(ops.iter().all(|op| op["key"] == c.key.as_str()), "{e}");
    }
}

#[test]
fn following_two_agents_delivers_every_commit_once_in_commit_order() {
    let Some(d) = statehouse::start() else { return };
    let rt = rt();
    let client = rt.block_on(connect(&d));
    let mut committed = Vec::new();
    // A history before the follower starts, then commits while it follows.
    for i in 0..40 {
        committed.push(rt.block_on(commit(&client, i)));
    }
    let total_followed = |c: &[Committed]| c.iter().filter(|c| c.agents != ["c"]).count();
    const TOTAL: usize = 400;
    let expected_events = {
        let mut all = committed.clone();
        for i in committed.len()..TOTAL {
            all.push(Committed {
                commit_ts: 0,
                agents: match i % 4 {
                    0 => vec!["a"],
                    1 => vec!["b"],
                    2 => vec!["a", "b"],
                    _ => vec!["c"],
                },
                key: String::new(),
            });
        }
        total_followed(&all)
    };
    let until = (expected_events - 1).to_string();
    let f = follow(&[
        "play", &d.url, "--agent", "live/a", "--agent", "live/b", "--follow", "--poll", "20ms",
        "--until", &until,
    ]);
    let early = f.events(total_followed(&committed), Duration::from_secs(30));
    for i in committed.len()..TOTAL {
        committed.push(rt.block_on(commit(&client, i)));
    }
    let rest = f.events(expected_events - early.len(), Duration::from_secs(30));
    let all: Vec<Value> = early.into_iter().chain(rest).collect();
    check(&all, &committed);
    // It ends at --until with a report naming the run finished.
    let mut f = f;
    let status = f.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_follower_rides_out_a_daemon_restart_without_losing_or_repeating() {
    // RocksDB: what was committed survives the restart, and commit_ts goes on from it.
    let Some(mut d) = statehouse::start_with(false) else {
        return;
    };
    let rt = rt();
    let mut committed = Vec::new();
    {
        let client = rt.block_on(connect(&d));
        for i in 0..30 {
            committed.push(rt.block_on(commit(&client, i)));
        }
    }
    let followed = |c: &[Committed]| c.iter().filter(|c| c.agents != ["c"]).count();
    let f = follow(&[
        "play", &d.url, "--agent", "live/a", "--agent", "live/b", "--follow", "--poll", "20ms",
    ]);
    let mut events = f.events(followed(&committed), Duration::from_secs(30));
    d.restart();
    {
        let client = rt.block_on(connect(&d));
        for i in 30..90 {
            committed.push(rt.block_on(commit(&client, i)));
        }
    }
    events.extend(f.events(followed(&committed) - events.len(), Duration::from_secs(60)));
    check(&events, &committed);
    assert!(
        committed[30].commit_ts > committed[29].commit_ts,
        "commit_ts goes on after the restart"
    );
    // Nothing more arrives (no repeat of what was delivered before the restart): one more
    // commit is the very next event.
    let client = rt.block_on(connect(&d));
    committed.push(rt.block_on(commit(&client, 90)));
    let next = f.events(1, Duration::from_secs(30));
    events.extend(next);
    check(&events, &committed);
}
