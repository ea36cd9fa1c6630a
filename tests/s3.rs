//! Archives in S3-compatible object storage, against a real S3 server (moto, started on
//! 127.0.0.1 by this test; `scripts/test` installs it and sets REPLAYSCOPE_REQUIRE_S3=1 so the
//! test cannot skip). Reads must equal the local file, and opening and seeking must fetch only
//! what they need.

use std::path::Path;

use bytes::Bytes;
use replayscope::archive::s3::open_with;
use replayscope::archive::{
    Archive, ArchiveError, ArchiveWriter, OpenOptions, SegmentedWriter, WriterOptions,
};
use replayscope::event::Position;
use replayscope::event::generate::{GenOptions, Generator};

#[path = "support/moto.rs"]
mod moto;
use moto::{config, create_bucket, moto, put};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap");

fn events(a: &Archive) -> Vec<(u64, Bytes)> {
    let mut c = a.cursor().unwrap();
    let mut out = vec![];
    while let Some(r) = c.next_raw() {
        let r = r.unwrap();
        out.push((r.offset, r.payload));
    }
    out
}

fn local(path: &Path) -> Archive {
    Archive::open(path, OpenOptions::default()).unwrap()
}

#[test]
fn an_s3_archive_reads_like_the_local_file_and_fetches_only_what_it_needs() {
    let Some(m) = moto() else { return };
    create_bucket(&m, "archives");
    // A 40,000-event archive: 13 chunks of 1 MiB, so "only what it needs" is measurable.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mcap");
    let mut w = ArchiveWriter::create(&path, WriterOptions::default()).unwrap();
    for e in Generator::new(GenOptions::default()).take(40_000) {
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let size = bytes.len() as u64;
    put(&m, "archives", "sessions/big.mcap", bytes);

    let url = "s3://archives/sessions/big.mcap";
    let (remote, stats) = open_with(url, OpenOptions::default(), &config(&m)).unwrap();
    let local = local(&path);
    let open_bytes = stats.bytes();
    let chunks = local.segments()[0].chunk_count() as u64;
    assert!(chunks >= 10, "{chunks} chunks");
    // The head block and the tail block (footer, summary, index attachment, metadata), not the
    // archive.
    assert!(
        open_bytes <= (4 + 64) * 1024 && open_bytes * 50 < size,
        "opening fetched {open_bytes} of {size} bytes"
    );
    assert!(
        stats.requests() <= 3,
        "{} requests to open",
        stats.requests()
    );
    assert_eq!(remote.events(), local.events());
    assert_eq!(remote.recorded_final_hash(), local.recorded_final_hash());
    assert_eq!(remote.name(), url);

    // A seek reads one group of chunks (~1 MiB of events), in one request.
    let (compressed, _) = local.segments()[0].chunk_bytes();
    let average = compressed / local.segments()[0].group_count() as u64;
    let requests_before = stats.requests();
    let before = stats.bytes();
    let target = remote.resolve_from(Position::Offset(23_456)).unwrap();
    let mut c = remote.cursor_at(target).unwrap();
    let e = c.next_raw().unwrap().unwrap();
    assert_eq!(e.offset, 23_456);
    let seek_bytes = stats.bytes() - before;
    assert!(
        seek_bytes > 0 && seek_bytes <= 2 * average,
        "a seek fetched {seek_bytes} bytes (groups average {average})"
    );
    assert_eq!(
        stats.requests() - requests_before,
        1,
        "one request per seek"
    );
    drop(c);

    // Every event, checked end to end (CRCs and hash chain), equals the local file.
    assert!(events(&remote) == events(&local));
    replayscope::archive::verify::verify(&remote, None).unwrap();
}

/// `events` generated events as a directory of segments of `per_segment`; their file names,
/// in order.
fn write_segments(seg_dir: &Path, per_segment: u64, events: usize) -> Vec<String> {
    let mut w = SegmentedWriter::create(seg_dir, per_segment, WriterOptions::default()).unwrap();
    for e in Generator::new(GenOptions::default()).take(events) {
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(seg_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_segment_prefix_reads_like_the_directory_and_gaps_are_refused() {
    let Some(m) = moto() else { return };
    create_bucket(&m, "segs");
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("run");
    let names = write_segments(&seg_dir, 2_000, 7_000);
    assert_eq!(names.len(), 4);
    for n in &names {
        put(
            &m,
            "segs",
            &format!("run1/{n}"),
            std::fs::read(seg_dir.join(n)).unwrap(),
        );
        // A second prefix with the third segment missing.
        if n != &names[2] {
            put(
                &m,
                "segs",
                &format!("gap/{n}"),
                std::fs::read(seg_dir.join(n)).unwrap(),
            );
        }
    }
    let (remote, _) = open_with("s3://segs/run1", OpenOptions::default(), &config(&m)).unwrap();
    let local = local(&seg_dir);
    assert_eq!(remote.segments().len(), 4);
    assert_eq!(remote.events(), 7_000);
    assert!(events(&remote) == events(&local));
    assert_eq!(remote.recorded_final_hash(), local.recorded_final_hash());

    let err = open_with("s3://segs/gap/", OpenOptions::default(), &config(&m)).unwrap_err();
    assert!(matches!(err, ArchiveError::ContinuityGap { .. }), "{err}");
    assert!(err.to_string().contains("s3://segs/gap/"), "{err}");
}

#[test]
fn missing_objects_and_non_archives_are_clear_errors() {
    let Some(m) = moto() else { return };
    create_bucket(&m, "misc");
    put(&m, "misc", "notes.txt", b"hello, not an archive".to_vec());
    put(
        &m,
        "misc",
        "fake.mcap",
        b"hello, not an archive either".to_vec(),
    );
    let open = |url: &str| open_with(url, OpenOptions::default(), &config(&m)).unwrap_err();

    let e = open("s3://misc/nothing-here.mcap");
    assert!(matches!(e, ArchiveError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("s3://misc/nothing-here.mcap"), "{e}");
    let e = open("s3://misc/empty-prefix/");
    assert!(matches!(e, ArchiveError::NotFound { .. }), "{e}");
    let e = open("s3://misc/fake.mcap");
    assert!(matches!(e, ArchiveError::NotMcap { .. }), "{e}");
    assert!(e.to_string().contains("s3://misc/fake.mcap"), "{e}");
    let e = open("s3://misc/");
    assert!(
        e.to_string().contains("notes.txt"),
        "names what the prefix holds: {e}"
    );
    let e = open("s3://no-such-bucket/a.mcap");
    assert!(e.to_string().contains("s3://no-such-bucket/a.mcap"), "{e}");
}

/// The CLI takes `s3://` wherever it takes an archive, configured by the AWS environment.
#[test]
fn the_cli_reads_s3_archives_from_the_aws_environment() {
    let Some(m) = moto() else { return };
    create_bucket(&m, "cli");
    put(&m, "cli", "sample.mcap", std::fs::read(SAMPLE).unwrap());
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_replayscope"))
            .args(args)
            .envs(m.env())
            .output()
            .unwrap()
    };
    let remote = run(&["export", "s3://cli/sample.mcap"]);
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    let local = run(&["export", SAMPLE]);
    assert!(
        remote.stdout == local.stdout,
        "export from S3 differs from the local file"
    );
    let v = run(&["verify", "s3://cli/sample.mcap"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let info = run(&["info", "s3://cli/sample.mcap"]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("6000"));
    let missing = run(&["info", "s3://cli/missing.mcap"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("s3://cli/missing.mcap"));
}

/// A followed `s3://` prefix (no notifications: listed again on a bounded poll) plays the
/// segments there, waits, and plays a segment uploaded later.
#[test]
fn a_followed_prefix_plays_segments_uploaded_later() {
    use std::io::BufRead;
    let Some(m) = moto() else { return };
    create_bucket(&m, "live");
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("run");
    let names = write_segments(&seg_dir, 500, 1_500);
    assert_eq!(names.len(), 3);
    let upload = |n: &String| {
        put(
            &m,
            "live",
            &format!("run/{n}"),
            std::fs::read(seg_dir.join(n)).unwrap(),
        );
    };
    upload(&names[0]);
    upload(&names[1]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_replayscope"))
        .args(["play", "s3://live/run/", "--follow", "--until", "1499"])
        .envs(m.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    // Killed if the test fails (a follower does not end by itself).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    // Bounded: each line within 30 s.
    let next = || {
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("the follower prints the next event within 30 s")
    };
    let offset = |l: String| -> u64 {
        serde_json::from_str::<serde_json::Value>(&l).unwrap()["offset"]
            .as_u64()
            .unwrap()
    };
    for i in 0..1000 {
        assert_eq!(offset(next()), i);
    }
    // The third segment lands later; the follower finds it and ends at --until.
    upload(&names[2]);
    for i in 1000..1500 {
        assert_eq!(offset(next()), i);
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
