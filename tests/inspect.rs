//! Inspection from the command line: `history SOURCE KEY` lists exactly the versions a plain
//! fold of the source sees, each with field-level changes that turn the previous value into
//! this one — on a generated archive, on the real agent dump in tests/data, and over a
//! `replayscope://` endpoint.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

#[path = "support/serving.rs"]
mod serving;

/// `serve SOURCE` on a free loopback port (stopped when dropped) and its URL.
fn serve(source: &str) -> (Served, String) {
    let mut child = bin()
        .args(["serve", source, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving::serving_address(&mut child);
    (Served(child), format!("replayscope://{addr}"))
}

struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replayscope"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn lines(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A generated archive of 3,000 events.
fn archive(dir: &std::path::Path) -> String {
    let path = dir.join("gen.mcap");
    let out = run(&["gen", "--events", "3000", "-o", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path.to_str().unwrap().to_string()
}

/// A generated directory of 3,000 events in segments of 700.
fn segments(dir: &std::path::Path) -> String {
    let path = dir.join("segs");
    let out = run(&[
        "gen",
        "--events",
        "3000",
        "--segment-events",
        "700",
        // State snapshots every few hundred events: `state --at` starts from them.
        "--snapshot-events",
        "250",
        "--snapshot-max-share",
        "100",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path.to_str().unwrap().to_string()
}

/// The (agent, key) written most often in an export.
fn busiest_key(events: &[Value]) -> (String, String) {
    let mut counts = std::collections::HashMap::new();
    for e in events {
        let agent = format!(
            "{}/{}",
            e["namespace"].as_str().unwrap(),
            e["agent_id"].as_str().unwrap()
        );
        for op in e["operations"].as_array().unwrap() {
            *counts
                .entry((agent.clone(), op["key"].as_str().unwrap().to_string()))
                .or_insert(0) += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(k, n)| (*n, k.clone()))
        .unwrap()
        .0
}

/// What `changes` says, applied to `prev`, gives `value` (each change's old and new are what
/// the two values hold at its path).
fn check_changes(prev: &Value, value: &Value, changes: &[Value]) {
    if prev == value {
        assert!(changes.is_empty(), "{changes:?}");
        return;
    }
    assert!(
        !changes.is_empty(),
        "a new value with no change: {prev} -> {value}"
    );
    for c in changes {
        let path = c["path"].as_str().unwrap();
        match c["op"].as_str().unwrap() {
            "added" => {
                assert_eq!(value.pointer(path), Some(&c["value"]), "{c}");
                assert!(prev.pointer(path).is_none() || path.is_empty(), "{c}");
            }
            "removed" => {
                assert_eq!(prev.pointer(path), Some(&c["old"]), "{c}");
                assert!(value.pointer(path).is_none() || path.is_empty(), "{c}");
            }
            "changed" => {
                assert_eq!(prev.pointer(path), Some(&c["old"]), "{c}");
                assert_eq!(value.pointer(path), Some(&c["new"]), "{c}");
            }
            other => panic!("unknown change {other}"),
        }
    }
}

/// `history` against a plain fold of `export`: the same versions, in order, with changes
/// that account for every difference.
fn history_matches_the_fold(source: &str, export: &[Value], agent: &str, key: &str) {
    let history = lines(&run(&["history", source, key, "--agent", agent]));
    let mut expected = Vec::new();
    for e in export {
        let a = format!(
            "{}/{}",
            e["namespace"].as_str().unwrap(),
            e["agent_id"].as_str().unwrap()
        );
        if a != agent {
            continue;
        }
        for op in e["operations"].as_array().unwrap() {
            if op["key"] == key {
                expected.push((
                    e["offset"].clone(),
                    op["version"].clone(),
                    op.get("value").cloned(),
                ));
            }
        }
    }
    assert!(
        expected.len() >= 2,
        "{key} in {agent} has {} versions",
        expected.len()
    );
    assert_eq!(history.len(), expected.len(), "{key} in {agent}");
    let mut prev = Value::Null;
    for (v, (offset, version, value)) in history.iter().zip(&expected) {
        assert_eq!(&v["offset"], offset, "{v}");
        assert_eq!(&v["version"], version, "{v}");
        assert_eq!(v["agent"], agent, "{v}");
        let value = value.clone().filter(|v| !v.is_null());
        assert_eq!(
            v["op"],
            if value.is_some() { "write" } else { "delete" },
            "{v}"
        );
        let now = value.unwrap_or(Value::Null);
        assert_eq!(v["value"], now, "{v}");
        let changes = v["changes"].as_array().unwrap();
        // From nothing (or a delete), the change is the whole value.
        if prev.is_null() || now.is_null() {
            assert_eq!(changes.len(), usize::from(prev != now), "{v}");
        } else {
            check_changes(&prev, &now, changes);
        }
        prev = now;
    }
}

#[test]
fn history_lists_what_a_plain_fold_sees() {
    let tmp = tempfile::tempdir().unwrap();
    let source = archive(tmp.path());
    let export = lines(&run(&["export", &source]));
    let (agent, key) = busiest_key(&export);
    history_matches_the_fold(&source, &export, &agent, &key);

    // The same over a replayscope:// endpoint.
    let (_server, url) = serve(&source);
    let remote = lines(&run(&["history", &url, &key, "--agent", &agent]));
    let local = lines(&run(&["history", &source, &key, "--agent", &agent]));
    assert_eq!(remote, local);
}

#[test]
fn history_of_a_real_agent_dump_shows_what_each_update_changed() {
    let dump = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/research-agent.jsonl"
    );
    let agent = "research/research-7";
    let export = lines(&run(&["play", dump, "--agent", agent]));
    history_matches_the_fold(dump, &export, agent, "session");
    let text = run(&[
        "history", dump, "session", "--agent", agent, "--format", "text",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("~ /status: \"open\" -> \"answered\"") && text.contains("+ /ended_at:"),
        "{text}"
    );
    // No such key: exit 1 (nothing matched), saying so.
    let none = run(&["history", dump, "sesion", "--agent", agent]);
    assert_eq!(none.status.code(), Some(1));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.contains("no transaction touches the key \"sesion\""),
        "{err}"
    );
}

/// Whether a brute-force reading of the event matches the query (substring on keys, values,
/// agent; txn_id prefix).
fn brute_matches(e: &Value, needle: &str) -> bool {
    let agent = format!(
        "{}/{}",
        e["namespace"].as_str().unwrap(),
        e["agent_id"].as_str().unwrap()
    );
    e["txn_id"].as_str().unwrap().starts_with(needle)
        || agent.contains(needle)
        || e["operations"].as_array().unwrap().iter().any(|op| {
            op["key"].as_str().unwrap().contains(needle)
                || op
                    .get("value")
                    .is_some_and(|v| !v.is_null() && v.to_string().contains(needle))
        })
}

#[test]
fn search_finds_exactly_what_a_brute_force_scan_finds() {
    let tmp = tempfile::tempdir().unwrap();
    // Small segments: what is looked for falls across chunk and segment boundaries.
    let source = segments(tmp.path());
    let source = source.as_str();
    let export = lines(&run(&["export", source]));
    // A value word, a key part, an agent, a txn_id prefix as the table shows it (13 chars).
    let txn = export[1234]["txn_id"].as_str().unwrap()[..13].to_string();
    for needle in ["refund", "tool_calls/", "ops/", txn.as_str()] {
        let expected: Vec<&Value> = export.iter().filter(|e| brute_matches(e, needle)).collect();
        assert!(!expected.is_empty(), "{needle}");
        let found = lines(&run(&["search", source, needle]));
        assert_eq!(found.len(), expected.len(), "{needle}");
        assert!(
            found.iter().zip(&expected).all(|(a, b)| a == *b),
            "{needle}"
        );
    }
    // A regular expression, against the same brute force.
    let re = regex_like_brute(&export);
    let found = lines(&run(&["search", source, "re:turn-0000[13]\\b"]));
    assert_eq!(found.len(), re, "re:turn-0000[13]");

    // Over a replayscope:// endpoint, the same events.
    let (_server, url) = serve(source);
    let remote = lines(&run(&["search", &url, "refund"]));
    assert_eq!(remote, lines(&run(&["search", source, "refund"])));

    // Nothing found: exit 1; a bad pattern: a usage error on one line.
    let none = run(&["search", source, "no-such-thing-anywhere"]);
    assert_eq!(none.status.code(), Some(1));
    let bad = run(&["search", source, "re:("]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
}

/// Events with a key `…turn-00001` or `…turn-00003` (the regex above, counted by hand).
fn regex_like_brute(export: &[Value]) -> usize {
    export
        .iter()
        .filter(|e| {
            let text = e.to_string();
            ["turn-00001", "turn-00003"].iter().any(|t| {
                text.match_indices(t).any(|(i, _)| {
                    text[i + t.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                })
            })
        })
        .count()
}

/// The state a plain fold of an export holds after offset `k`: {"ns/agent": {key: value}}.
fn fold_through(export: &[Value], k: u64) -> Value {
    let mut state = serde_json::Map::new();
    for e in export.iter().filter(|e| e["offset"].as_u64().unwrap() <= k) {
        let agent = format!(
            "{}/{}",
            e["namespace"].as_str().unwrap(),
            e["agent_id"].as_str().unwrap()
        );
        let keys = state
            .entry(agent)
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .unwrap();
        for op in e["operations"].as_array().unwrap() {
            let key = op["key"].as_str().unwrap().to_string();
            match &op["value"] {
                Value::Null => {
                    keys.remove(&key);
                }
                v => {
                    keys.insert(key, v.clone());
                }
            }
        }
    }
    // An agent whose keys were all deleted holds nothing.
    state.retain(|_, keys| !keys.as_object().unwrap().is_empty());
    Value::Object(state)
}

fn state_at(source: &str, k: u64, extra: &[&str]) -> Value {
    let k = k.to_string();
    let mut args = vec!["state", source, "--at", k.as_str()];
    args.extend_from_slice(extra);
    json_of(&args)
}

/// The JSON a successful command prints.
fn json_of(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn state_at_a_point_and_between_two_equal_plain_folds() {
    let tmp = tempfile::tempdir().unwrap();
    // Small segments: what is looked for falls across chunk and segment boundaries.
    let source = segments(tmp.path());
    let source = source.as_str();
    let export = lines(&run(&["export", source]));
    // Points spread by a fixed LCG, plus the edges and a segment boundary.
    let mut x: u64 = 0x5eed;
    let mut points = vec![0, 699, 700, 2999];
    for _ in 0..5 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        points.push((x >> 33) % 3000);
    }
    for &k in &points {
        assert_eq!(
            state_at(source, k, &[]),
            fold_through(&export, k),
            "--at {k}"
        );
    }
    // The diff of two points: exactly the keys whose values differ, with both values.
    for pair in points.windows(2) {
        let (k1, k2) = (pair[0], pair[1]);
        let (a, b) = (fold_through(&export, k1), fold_through(&export, k2));
        let mut expected = Vec::new();
        let empty = serde_json::Map::new();
        let agents: std::collections::BTreeSet<&String> = a
            .as_object()
            .unwrap()
            .keys()
            .chain(b.as_object().unwrap().keys())
            .collect();
        for agent in agents {
            let ka = a[agent.as_str()].as_object().unwrap_or(&empty);
            let kb = b[agent.as_str()].as_object().unwrap_or(&empty);
            let keys: std::collections::BTreeSet<&String> = ka.keys().chain(kb.keys()).collect();
            for key in keys {
                let (old, new) = (ka.get(key.as_str()), kb.get(key.as_str()));
                if old != new {
                    expected.push((agent.clone(), key.clone(), old.cloned(), new.cloned()));
                }
            }
        }
        let diff = lines(&run(&[
            "state",
            source,
            "--diff",
            &k1.to_string(),
            &k2.to_string(),
        ]));
        let got: Vec<(String, String, Option<Value>, Option<Value>)> = diff
            .iter()
            .map(|c| {
                (
                    c["agent"].as_str().unwrap().to_string(),
                    c["key"].as_str().unwrap().to_string(),
                    c.get("old").cloned(),
                    c.get("new").cloned(),
                )
            })
            .collect();
        assert_eq!(got, expected, "--diff {k1} {k2}");
        for c in &diff {
            let none = Value::Null;
            check_changes(
                c.get("old").unwrap_or(&none),
                c.get("new").unwrap_or(&none),
                c["changes"].as_array().unwrap(),
            );
        }
    }
    // One agent of the real dump, and over replayscope://: the same states.
    let dump = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/research-agent.jsonl"
    );
    let agent = ["--agent", "research/research-7"];
    let dump_export = lines(&run(&["play", dump, "--agent", agent[1]]));
    for k in [0, 4, 9, 13] {
        assert_eq!(
            state_at(dump, k, &agent),
            fold_through(&dump_export, k),
            "dump --at {k}"
        );
    }
    let (_server, url) = serve(source);
    assert_eq!(state_at(&url, 1234, &[]), fold_through(&export, 1234));
    // An offset past the end: a usage error on one line, nothing on stdout.
    let past = run(&["state", source, "--at", "3000"]);
    assert_eq!(past.status.code(), Some(2));
    assert!(past.stdout.is_empty());
    let err = String::from_utf8_lossy(&past.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("past the last event (offset 2999)"), "{err}");
}

#[path = "support/tamper.rs"]
mod tamper;

fn info(source: &str) -> Value {
    json_of(&["info", source, "--json"])
}

#[test]
fn state_snapshots_are_written_added_checked_and_used() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    // Written by gen across segments: every snapshot matches a plain fold at its offset.
    let segs = segments(tmp.path());
    let export = lines(&run(&["export", &segs]));
    let listed = info(&segs)["snapshots"].clone();
    assert!(listed["count"].as_u64().unwrap() >= 8, "{listed}");
    assert!(
        listed["max_events_between"].as_u64().unwrap() < 700,
        "{listed}"
    );
    let verified = run(&["verify", &segs]);
    assert!(verified.status.success());
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("state snapshots match the events"),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    // `index` adds them to an archive written without: same events, same chain, and the
    // snapshots gen would have written.
    let plain = at("plain.mcap");
    let ok = |o: Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(run(&[
        "gen",
        "--events",
        "3000",
        "--snapshot-events",
        "0",
        "--compression",
        "none",
        "-o",
        &plain,
    ]));
    assert_eq!(info(&plain)["snapshots"]["count"], 0);
    let snap = ["--snapshot-events", "300", "--snapshot-max-share", "100"];
    let indexed = at("indexed.mcap");
    let mut args = vec!["index", plain.as_str(), "-o", indexed.as_str()];
    args.extend_from_slice(&snap);
    ok(run(&args));
    let direct = at("direct.mcap");
    let mut args = vec![
        "gen",
        "--events",
        "3000",
        "--compression",
        "none",
        "-o",
        direct.as_str(),
    ];
    args.extend_from_slice(&snap);
    ok(run(&args));
    assert_eq!(
        std::fs::read(&indexed).unwrap(),
        std::fs::read(&direct).unwrap()
    );
    assert_eq!(info(&indexed)["final_hash"], info(&plain)["final_hash"]);
    // In place: the file is replaced by the indexed one.
    let mut args = vec!["index", plain.as_str()];
    args.extend_from_slice(&snap);
    ok(run(&args));
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&direct).unwrap()
    );
    let gen_export = lines(&run(&["export", &indexed]));
    // Random points from the snapshots equal plain folds (and the edges around a snapshot).
    let first = info(&indexed)["snapshots"]["first_offset"]
        .as_u64()
        .unwrap();
    let mut x: u64 = 0x5eed_0002;
    let mut points = vec![first - 1, first, first + 1, 2999];
    for _ in 0..6 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        points.push((x >> 33) % 3000);
    }
    for &k in &points {
        assert_eq!(
            state_at(&indexed, k, &[]),
            fold_through(&gen_export, k),
            "--at {k}"
        );
    }
    // One agent: the snapshot narrowed to it.
    let agent = format!(
        "{}/{}",
        export[0]["namespace"].as_str().unwrap(),
        export[0]["agent_id"].as_str().unwrap()
    );
    let agent_export: Vec<Value> = gen_export
        .iter()
        .filter(|e| {
            format!(
                "{}/{}",
                e["namespace"].as_str().unwrap(),
                e["agent_id"].as_str().unwrap()
            ) == agent
        })
        .cloned()
        .collect();
    assert_eq!(
        state_at(&indexed, 2500, &["--agent", &agent]),
        fold_through(&agent_export, 2500)
    );
    // A snapshot changed (CRC fixed up): verify and state --at past it fail as integrity
    // errors naming it; before it, the state is still folded from the start.
    tamper::damage(
        std::path::Path::new(&indexed),
        first as u32,
        tamper::Damage::Snapshot,
        tamper::Crc::Recomputed,
    );
    let bad = run(&["verify", &indexed]);
    assert_eq!(
        bad.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!("state snapshot at offset {first}")),
        "{err}"
    );
    let bad = run(&["state", &indexed, "--at", &(first + 10).to_string()]);
    assert_eq!(
        bad.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(bad.stdout.is_empty());
    assert_eq!(
        state_at(&indexed, first - 1, &[]),
        fold_through(&gen_export, first - 1)
    );
}
