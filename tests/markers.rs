//! Markers (DESIGN.md section 14): written into an archive by `mark` and kept beside it by the
//! inspector, `mark:NAME` taken wherever a position is, an unknown name a one-line error that
//! lists the names; `play --loop N` and `--pause-at-markers` from the command line.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use replayscope::event::marker::Marker;
use replayscope::source::Source;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replayscope"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The offsets of `play --format jsonl` output.
fn offsets(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// The offsets `play SOURCE --pace fast --format jsonl ARGS` emits.
fn play_offsets(source: &str, args: &[&str]) -> Vec<u64> {
    let mut all = vec!["play", source, "--pace", "fast", "--format", "jsonl"];
    all.extend_from_slice(args);
    offsets(&ok(&run(&all)))
}

fn archive(dir: &Path, events: u64) -> String {
    let path = dir.join("a.mcap").to_str().unwrap().to_string();
    ok(&run(&[
        "gen",
        "--events",
        &events.to_string(),
        "--seed",
        "3",
        "-o",
        &path,
    ]));
    path
}

#[test]
fn markers_written_into_an_archive_resolve_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path(), 500);
    let hash_before = ok(&run(&["verify", &a]));
    ok(&run(&[
        "mark",
        &a,
        "--add",
        "start@100",
        "--caption",
        "The plan is written",
    ]));
    ok(&run(&["mark", &a, "--add", "end@@300"]));
    // The events and their hash chain are unchanged; the markers are in the file.
    let hash_after = ok(&run(&["verify", &a]));
    let hash = |s: &str| s.split("final hash ").nth(1).map(|h| h[..64].to_string());
    assert_eq!(hash(&hash_before), hash(&hash_after));
    let list = ok(&run(&["mark", &a, "--list"]));
    assert!(
        list.contains("start") && list.contains("The plan is written"),
        "{list}"
    );
    let end = replayscope::archive::Archive::open(Path::new(&a), Default::default()).unwrap();
    let end_offset = Source::resolve(
        &replayscope::source::ArchiveSource::new(end.clone()),
        replayscope::event::Position::CommitTs(300),
        false,
    )
    .unwrap()
    .unwrap();
    assert_eq!(end.markers().markers.len(), 2);

    // --from and --until.
    let played = play_offsets(&a, &["--from", "mark:start", "--until", "mark:end"]);
    assert_eq!(played, (100..=end_offset).collect::<Vec<_>>());
    // state --at: the state after the marker's event, as at its offset.
    let at_marker = ok(&run(&["state", &a, "--at", "mark:start"]));
    let at_offset = ok(&run(&["state", &a, "--at", "100"]));
    assert_eq!(at_marker, at_offset);
    assert!(!at_marker.is_empty());
    // diff takes them on each side.
    ok(&run(&[
        "diff",
        &a,
        &a,
        "--from",
        "mark:start",
        "--until",
        "mark:end",
    ]));

    // An unknown name: one line naming it and the names there are.
    for args in [
        vec!["play", &a, "--from", "mark:middle"],
        vec!["state", &a, "--at", "mark:middle"],
    ] {
        let e = err(&run(&args));
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(
            e.contains("middle") && e.contains("start") && e.contains("end"),
            "{e}"
        );
    }
    // A bad name is refused before anything is written.
    let e = err(&run(&["mark", &a, "--add", "two words@5"]));
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert_eq!(end.markers().markers.len(), 2);
    // Removed again.
    ok(&run(&["mark", &a, "--remove", "start"]));
    let e = err(&run(&["play", &a, "--from", "mark:start"]));
    assert!(e.contains("end"), "{e}");
}

/// What the inspector's M does: the marker is kept in `ARCHIVE.markers.json` (or the file
/// `--markers` names), read again by the next command.
#[test]
fn markers_kept_beside_the_source_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path(), 300);
    let open = |sidecar: Option<&Path>| -> Arc<dyn Source> {
        let request = replayscope::source::open::OpenRequest {
            markers: sidecar.map(Path::to_path_buf),
            ..Default::default()
        };
        replayscope::source::open::open_source(&a, &request)
            .unwrap()
            .0
    };
    let source = open(None);
    assert!(source.markers().is_empty());
    let place = source
        .save_marker(Marker::parse_spec("here@42", Some("Look at this".into())).unwrap())
        .unwrap();
    assert_eq!(place, format!("{a}.markers.json"));
    // Past the end: refused, nothing written.
    assert!(
        source
            .save_marker(Marker::parse_spec("far@9999", None).unwrap())
            .is_err()
    );
    let again = open(None);
    let m = again.markers();
    assert_eq!(m.markers.len(), 1);
    assert_eq!(
        m.get("here").unwrap().caption.as_deref(),
        Some("Look at this")
    );
    let played = play_offsets(&a, &["--from", "mark:here", "--until", "45"]);
    assert_eq!(played, vec![42, 43, 44, 45]);

    // --markers FILE: another place, the same round trip.
    let other = dir.path().join("mine.json");
    let with_file = open(Some(&other));
    with_file
        .save_marker(Marker::parse_spec("there@7", None).unwrap())
        .unwrap();
    let played = play_offsets(
        &a,
        &[
            "--markers",
            other.to_str().unwrap(),
            "--from",
            "mark:there",
            "--until",
            "8",
        ],
    );
    assert_eq!(played, vec![7, 8]);
    // A markers file that is not one: an error naming it.
    std::fs::write(&other, "not json").unwrap();
    let e = err(&run(&["play", &a, "--markers", other.to_str().unwrap()]));
    assert!(e.contains("mine.json"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

#[test]
fn play_loop_three_emits_exactly_three_passes() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path(), 200);
    let out = run(&[
        "play", &a, "--pace", "fast", "--format", "jsonl", "--loop", "3", "--from", "50",
        "--until", "59",
    ]);
    let played = offsets(&ok(&out));
    assert_eq!(played, (50..=59).collect::<Vec<_>>().repeat(3));
    let e = err(&run(&["play", &a, "--loop", "3", "--follow"]));
    assert!(e.contains("--loop"), "{e}");
}

#[test]
fn pause_at_markers_headless_says_each_caption() {
    let dir = tempfile::tempdir().unwrap();
    let a = archive(dir.path(), 200);
    ok(&run(&[
        "mark",
        &a,
        "--add",
        "one@20",
        "--caption",
        "First stop",
    ]));
    ok(&run(&[
        "mark",
        &a,
        "--add",
        "two@150",
        "--caption",
        "Second stop",
    ]));
    let out = run(&[
        "play",
        &a,
        "--pace",
        "fast",
        "--format",
        "jsonl",
        "--pause-at-markers",
        "--marker-hold",
        "10ms",
    ]);
    let played = offsets(&ok(&out));
    assert_eq!(played, (0..200).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let one = stderr.find("First stop").expect(&stderr);
    let two = stderr.find("Second stop").expect(&stderr);
    assert!(one < two, "{stderr}");
    // A source without markers: nothing to pause at is an error, not a silent full run.
    let b = dir.path().join("b.mcap");
    ok(&run(&["gen", "--events", "10", "-o", b.to_str().unwrap()]));
    let e = err(&run(&["play", b.to_str().unwrap(), "--pause-at-markers"]));
    assert!(e.contains("no markers"), "{e}");
}
