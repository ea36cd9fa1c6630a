//! Differential replay from the command line: `diff LEFT RIGHT` finds each kind of change at
//! the offset where it is, with the field that differs, in every mode where it is visible (and
//! `--compare hash` finds them all); identical sources are equal in every mode; `--ignore`
//! hides exactly the fields it names; an archive replayed into the real Statehouse daemon and
//! read back is equal to it by position.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

#[path = "support/statehouse.rs"]
mod statehouse;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replayscope"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The events of an archive as JSON objects (its export).
fn export(path: &str) -> Vec<Value> {
    let o = run(&["export", path]);
    ok(&o);
    text(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An archive of `events` (numbered again from 0 in their order, commit_ts kept) at `path`.
fn archive(dir: &Path, name: &str, events: &[Value]) -> String {
    let jsonl = dir.join(format!("{name}.jsonl"));
    let mut s = String::new();
    for (i, e) in events.iter().enumerate() {
        let mut e = e.clone();
        e["offset"] = Value::from(i as u64);
        s.push_str(&e.to_string());
        s.push('\n');
    }
    std::fs::write(&jsonl, s).unwrap();
    let out = dir.join(format!("{name}.mcap"));
    let out = out.to_str().unwrap().to_string();
    ok(&run(&["import", jsonl.to_str().unwrap(), "-o", &out]));
    out
}

/// `diff --all` as JSON lines, and the exit code.
fn diff_all(left: &str, right: &str, extra: &[&str]) -> (Vec<Value>, Option<i32>) {
    let mut args = vec!["diff", left, right, "--all", "--max", "100000"];
    args.extend_from_slice(extra);
    let o = run(&args);
    let lines = text(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, o.status.code())
}

/// The first divergence of `diff` in `mode`: (left offset, right offset, the paths that differ
/// — fields, or keys in state mode), checking the exit code and the one-screen explanation.
fn first(
    left: &str,
    right: &str,
    mode: &str,
    extra: &[&str],
) -> (Option<u64>, Option<u64>, Vec<String>) {
    let (all, code) = diff_all(left, right, &[&["--compare", mode][..], extra].concat());
    assert_eq!(code, Some(3), "{mode}: {all:?}");
    let d = &all[0];
    let paths = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap().to_string())
        .chain(d["keys"].as_array().into_iter().flatten().map(|k| {
            format!(
                "{}:{}",
                k["agent"].as_str().unwrap(),
                k["key"].as_str().unwrap()
            )
        }))
        .collect();
    // The explanation names the same place and how to open the inspector there.
    let mut args = vec!["diff", left, right, "--compare", mode];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(3));
    let screen = text(&o);
    assert!(screen.contains("last equal"), "{screen}");
    assert!(screen.contains("--against"), "{screen}");
    assert!(screen.lines().count() < 40, "one screen: {screen}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    (
        d["left"]["offset"].as_u64(),
        d["right"]["offset"].as_u64(),
        paths,
    )
}

/// An event (at or after `from`) whose first operation writes a value, and the agent's other
/// live key that a delete can be added for.
fn writing_event(events: &[Value], from: usize) -> usize {
    (from..events.len())
        .find(|&i| {
            let ops = events[i]["operations"].as_array().unwrap();
            ops.len() == 1 && ops[0]["value"].is_object()
        })
        .unwrap()
}

fn agent_of(e: &Value) -> String {
    format!(
        "{}/{}",
        e["namespace"].as_str().unwrap(),
        e["agent_id"].as_str().unwrap()
    )
}

fn key_of(e: &Value) -> String {
    e["operations"][0]["key"].as_str().unwrap().to_string()
}

#[test]
fn each_kind_of_change_is_found_where_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base_path = dir.join("base.mcap");
    let base_path = base_path.to_str().unwrap();
    ok(&run(&["gen", "--events", "4000", "-o", base_path]));
    let base = export(base_path);
    let copy = archive(dir, "copy", &base);
    // Identical sources: equal in all three modes (a copy written again, byte for byte).
    for mode in ["events", "state", "hash"] {
        let o = run(&["diff", base_path, &copy, "--compare", mode]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{mode}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("equal: 4000 steps"));
    }

    // A single changed value.
    let k = writing_event(&base, 1000) as u64;
    let mut changed = base.clone();
    let field = {
        let value = changed[k as usize]["operations"][0]["value"]
            .as_object_mut()
            .unwrap();
        let field = value.keys().next().unwrap().clone();
        value.insert(field.clone(), Value::from("CHANGED"));
        field
    };
    let changed = archive(dir, "changed", &changed);
    let path = format!("/operations/0/value/{field}");
    let key = format!(
        "{}:{}",
        agent_of(&base[k as usize]),
        key_of(&base[k as usize])
    );
    assert_eq!(
        first(base_path, &changed, "events", &[]),
        (Some(k), Some(k), vec![path.clone()])
    );
    assert_eq!(
        first(base_path, &changed, "state", &[]),
        (Some(k), Some(k), vec![key])
    );
    assert_eq!(
        first(base_path, &changed, "hash", &[]),
        (Some(k), Some(k), vec![path])
    );

    // A dropped transaction: by offset everything after it is shifted, so it is found where
    // it was; by txn_id it is the one event only LEFT has.
    let d = 1500u64;
    let mut dropped = base.clone();
    dropped.remove(d as usize);
    let dropped = archive(dir, "dropped", &dropped);
    for mode in ["events", "state", "hash"] {
        let (l, r, _) = first(base_path, &dropped, mode, &[]);
        assert_eq!((l, r), (Some(d), Some(d)), "{mode}");
    }
    let (by_txn, code) = diff_all(base_path, &dropped, &["--align", "txn"]);
    assert_eq!(code, Some(3));
    assert_eq!(by_txn.len(), 1, "{by_txn:?}");
    assert_eq!(by_txn[0]["kind"], "only_left");
    assert_eq!(by_txn[0]["left"]["offset"], d);
    assert!(by_txn[0]["right"].is_null());

    // A reordered pair (two transactions of different agents, on different keys): the events
    // differ at the first of them; the state differs after the first and is equal again after
    // the second.
    let r = (2000..3000)
        .find(|&i| {
            let (a, b) = (&base[i], &base[i + 1]);
            agent_of(a) != agent_of(b)
        })
        .unwrap();
    let mut reordered = base.clone();
    for field in ["txn_id", "namespace", "agent_id", "operations"] {
        let (a, b) = (reordered[r][field].clone(), reordered[r + 1][field].clone());
        reordered[r][field] = b;
        reordered[r + 1][field] = a;
    }
    let reordered = archive(dir, "reordered", &reordered);
    let r = r as u64;
    let (l, _, paths) = first(base_path, &reordered, "events", &[]);
    assert_eq!(l, Some(r));
    assert!(paths.contains(&"/txn_id".to_string()), "{paths:?}");
    assert_eq!(first(base_path, &reordered, "hash", &[]).0, Some(r));
    let (state, code) = diff_all(base_path, &reordered, &["--compare", "state"]);
    assert_eq!(code, Some(3));
    assert_eq!(state.len(), 1, "equal again after the pair: {state:?}");
    assert_eq!(state[0]["left"]["offset"], r);

    // An extra delete of another live key of the agent.
    let x = writing_event(&base, 3000);
    let agent = agent_of(&base[x]);
    let other = (0..x)
        .rev()
        .filter(|&i| agent_of(&base[i]) == agent)
        .flat_map(|i| base[i]["operations"].as_array().unwrap().clone())
        .map(|op| op["key"].as_str().unwrap().to_string())
        .find(|key| *key != key_of(&base[x]))
        .unwrap();
    let mut deleted = base.clone();
    deleted[x]["operations"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"key": other, "value": null, "version": 99}));
    let deleted = archive(dir, "deleted", &deleted);
    let x = x as u64;
    assert_eq!(
        first(base_path, &deleted, "events", &[]),
        (Some(x), Some(x), vec!["/operations/1".to_string()])
    );
    let (l, _, keys) = first(base_path, &deleted, "state", &[]);
    assert_eq!(l, Some(x));
    // The key was live on the left (unless an earlier delete already removed it).
    assert!(
        keys.is_empty() || keys == vec![format!("{agent}:{other}")],
        "{keys:?}"
    );
    assert_eq!(first(base_path, &deleted, "hash", &[]).0, Some(x));

    // A changed transaction boundary: two transactions of one agent committed as one.
    let m = (3200..3900)
        .find(|&i| agent_of(&base[i]) == agent_of(&base[i + 1]))
        .unwrap();
    let mut merged = base.clone();
    let extra: Vec<Value> = merged[m + 1]["operations"].as_array().unwrap().clone();
    let n = merged[m]["operations"].as_array().unwrap().len();
    merged[m]["operations"]
        .as_array_mut()
        .unwrap()
        .extend(extra);
    merged.remove(m + 1);
    let merged = archive(dir, "merged", &merged);
    let m = m as u64;
    let (l, _, paths) = first(base_path, &merged, "events", &[]);
    assert_eq!(l, Some(m));
    assert!(paths.contains(&format!("/operations/{n}")), "{paths:?}");
    assert_eq!(first(base_path, &merged, "state", &[]).0, Some(m));
    assert_eq!(first(base_path, &merged, "hash", &[]).0, Some(m));
}

#[test]
fn ignored_fields_hide_exactly_their_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base_path = dir.join("base.mcap");
    let base_path = base_path.to_str().unwrap();
    ok(&run(&["gen", "--events", "1500", "-o", base_path]));
    let base = export(base_path);
    // LEFT and RIGHT each stamp values with their own time; RIGHT also changes one value.
    let stamp = |events: &[Value], side: u64| -> Vec<Value> {
        let mut out = events.to_vec();
        for (i, e) in out.iter_mut().enumerate() {
            for op in e["operations"].as_array_mut().unwrap() {
                if let Some(v) = op["value"].as_object_mut() {
                    v.insert("timestamp".into(), Value::from(i as u64 * 10 + side));
                }
            }
        }
        out
    };
    let left = archive(dir, "left", &stamp(&base, 1));
    let mut right = stamp(&base, 2);
    let k = writing_event(&base, 700);
    right[k]["operations"][0]["value"]["status-of-test"] = Value::from("real change");
    let right = archive(dir, "right", &right);
    let writes = base
        .iter()
        .filter(|e| {
            e["operations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|op| op["value"].is_object())
        })
        .count();
    let (all, code) = diff_all(&left, &right, &[]);
    assert_eq!(code, Some(3));
    assert_eq!(all.len(), writes, "every event that writes a value differs");
    let (all, code) = diff_all(&left, &right, &["--ignore", "/timestamp"]);
    assert_eq!(code, Some(3));
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["left"]["offset"], k as u64);
    assert_eq!(
        all[0]["changes"][0]["path"],
        "/operations/0/value/status-of-test"
    );
    let (state, _) = diff_all(
        &left,
        &right,
        &["--ignore", "/timestamp", "--compare", "state"],
    );
    assert_eq!(state.len(), 1, "{state:?}");
    // A pointer that is not one is a usage error.
    let o = run(&["diff", &left, &right, "--ignore", "timestamp"]);
    assert_eq!(o.status.code(), Some(2));
    // Hash compares bytes: it cannot pair by position.
    let o = run(&[
        "diff",
        &left,
        &right,
        "--compare",
        "hash",
        "--align",
        "position",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--align offset"));
}

#[test]
fn an_archive_replayed_into_statehouse_reads_back_equal_by_position() {
    let Some(d) = statehouse::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dump = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/research-agent.jsonl"
    );
    let agent = "research/research-7";
    let archive = tmp.path().join("run.mcap");
    let archive = archive.to_str().unwrap();
    ok(&run(&["import", &format!("{dump}={agent}"), "-o", archive]));
    ok(&run(&["play", archive, "--into", &d.url]));
    // The daemon gave the transactions its own txn_ids and commit_ts: by offset they differ,
    // by position they are the same transactions, keys, values and versions.
    let o = run(&[
        "diff", archive, &d.url, "--agent", agent, "--align", "position",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&[
        "diff",
        archive,
        &d.url,
        "--agent",
        agent,
        "--align",
        "position",
        "--compare",
        "state",
    ]);
    assert_eq!(o.status.code(), Some(0), "state: {}", text(&o));
    let o = run(&["diff", archive, &d.url, "--agent", agent]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("/txn_id"), "{}", text(&o));
}
