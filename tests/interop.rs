//! Archives open in other MCAP tools: the official Python `mcap` library with its protobuf
//! decoder reads every message, on the channel topic and with the schema the profile promises.
//!
//! `scripts/test` installs the Python packages and sets `REPLAYSCOPE_REQUIRE_INTEROP=1`, which
//! turns a missing Python library into a failure; a plain `cargo test` on a machine without them
//! reports the skip on stderr.

use std::process::Command;

use replayscope::archive::{Archive, OpenOptions};

fn python_has_mcap() -> bool {
    Command::new("python3")
        .args(["-c", "import mcap.reader, mcap_protobuf.decoder"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn read_with_python(path: &std::path::Path) -> Option<serde_json::Value> {
    if !python_has_mcap() {
        assert!(
            std::env::var_os("REPLAYSCOPE_REQUIRE_INTEROP").is_none(),
            "REPLAYSCOPE_REQUIRE_INTEROP is set but python3 cannot import mcap / mcap_protobuf \
             (scripts/test installs them)"
        );
        eprintln!("skipped: python3 has no mcap / mcap-protobuf-support (run scripts/test)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mcap_interop.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python mcap reader failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn check(path: &std::path::Path) {
    let Some(v) = read_with_python(path) else {
        return;
    };
    let a = Archive::open(path, OpenOptions::default()).unwrap();
    assert_eq!(v["profile"], "replayscope");
    assert_eq!(v["messages"], a.events());
    // State snapshots are messages of their own topic, decoded with their own schema.
    let snapshots = a.snapshots();
    assert_eq!(
        v["statistics_message_count"],
        a.events() + snapshots.len() as u64
    );
    let seen: Vec<u64> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["through_offset"].as_u64().unwrap())
        .collect();
    let listed: Vec<u64> = snapshots.iter().map(|(_, l)| l.through).collect();
    assert_eq!(seen, listed);
    assert_eq!(v["last_offset"], a.last_offset().unwrap());
    assert_eq!(v["attachments"][0], "replayscope.index");
    let hash = replayscope::event::hex(&a.recorded_final_hash().unwrap());
    assert_eq!(v["metadata"]["replayscope"]["final_hash"], hash);
    let counts = a.channel_counts();
    for (c, n) in a.channels().iter().zip(counts) {
        assert_eq!(v["topics"][format!("{c}")], n, "topic {c}");
    }
    // Markers: a metadata record of their own, read by the third-party reader as they are.
    let markers = a.markers();
    if markers.is_empty() {
        assert!(v["metadata"].get("replayscope.markers").is_none());
    } else {
        let text = v["metadata"]["replayscope.markers"]["markers"]
            .as_str()
            .expect("the markers record");
        let read = replayscope::event::marker::MarkerSet::from_json(text, "python").unwrap();
        assert_eq!(read, markers);
    }
    let first = a.cursor().unwrap().next_event().unwrap().unwrap();
    assert_eq!(v["first"]["txn_id"], first.txn_id);
    assert_eq!(v["first"]["commit_ts"], first.commit_ts);
}

#[test]
fn python_mcap_reads_a_generated_archive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    let mut w = replayscope::archive::ArchiveWriter::create(
        &path,
        replayscope::archive::WriterOptions {
            chunk_bytes: 32 * 1024,
            snapshots: Some(replayscope::archive::snapshot::SnapshotPolicy {
                every_events: 300,
                every_bytes: u64::MAX,
                min_ratio: 1,
            }),
            ..Default::default()
        },
    )
    .unwrap();
    for e in replayscope::event::generate::Generator::new(Default::default()).take(2000) {
        w.append(&e).unwrap();
    }
    let summary = w.finish().unwrap();
    assert!(summary.snapshots >= 3, "{summary:?}");
    check(&path);
}

/// The bundled sample holds the tour's markers; the third-party reader still reads it whole.
#[test]
fn python_mcap_reads_the_bundled_sample() {
    let a = Archive::open(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap")),
        OpenOptions::default(),
    )
    .unwrap();
    assert_eq!(a.markers().markers.len(), 6);
    check(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/sample.mcap"
    )));
}
