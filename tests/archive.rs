//! Archive format: round trips, seeking, segments, archives from other writers, and every kind
//! of bad input named in DESIGN.md section 9 (each a clear error naming the file and position).

use std::path::{Path, PathBuf};

use replayscope::archive::jsonl::{self, ImportTarget};
use replayscope::archive::writer::{ArchiveWriter, Compression, SegmentedWriter, WriterOptions};
use replayscope::archive::{Archive, ArchiveError, OpenOptions, verify::verify};
use replayscope::event::generate::{GenOptions, Generator, Rng};
use replayscope::event::{Event, Position, hex};

fn events(n: usize) -> Vec<Event> {
    Generator::new(GenOptions::default()).take(n).collect()
}

/// Writes events into one archive file with small chunks (so tests cross chunk boundaries).
fn write_file(path: &Path, evs: &[Event], compression: Compression) -> [u8; 32] {
    let mut w = ArchiveWriter::create(
        path,
        WriterOptions {
            compression,
            chunk_bytes: 16 * 1024,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for e in evs {
        w.append(e).unwrap();
    }
    w.finish().unwrap().final_hash
}

fn write_segments(dir: &Path, evs: &[Event], per_segment: u64) {
    let mut w = SegmentedWriter::create(
        dir,
        per_segment,
        WriterOptions {
            chunk_bytes: 16 * 1024,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for e in evs {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
}

fn open(path: &Path) -> Result<Archive, ArchiveError> {
    Archive::open(path, OpenOptions::default())
}

fn read_all(a: &Archive) -> Result<Vec<Event>, ArchiveError> {
    let mut c = a.cursor()?;
    let mut out = Vec::new();
    while let Some(e) = c.next_event() {
        out.push(e?);
    }
    Ok(out)
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn round_trip_every_compression() {
    let evs = events(3000);
    for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
        let dir = tmp();
        let path = dir.path().join("a.mcap");
        let hash = write_file(&path, &evs, compression);
        let a = open(&path).unwrap();
        assert!(a.notes().is_empty(), "{:?}", a.notes());
        assert_eq!(a.events(), 3000);
        assert!(a.segments()[0].chunk_count() > 5);
        assert_eq!(read_all(&a).unwrap(), evs);
        let report = verify(&a, Some(hash)).unwrap();
        assert_eq!(report.final_hash, hex(&hash));
        assert!(report.hash_recorded);
    }
}

#[test]
fn seek_by_offset_commit_ts_and_time_lands_on_the_right_event() {
    let evs = events(4000);
    let dir = tmp();
    let path = dir.path().join("a.mcap");
    write_file(&path, &evs, Compression::Zstd);
    let a = open(&path).unwrap();
    let mut rng = Rng::new(7);
    for _ in 0..200 {
        let i = rng.below(evs.len() as u64) as usize;
        // by offset
        let mut c = a.cursor_at(evs[i].offset).unwrap();
        assert_eq!(c.next_event().unwrap().unwrap(), evs[i]);
        // by commit_ts, including values that fall in a gap: first event with ts >= target
        let target = evs[i].commit_ts - rng.below(2);
        let want = evs.iter().position(|e| e.commit_ts >= target).unwrap();
        assert_eq!(
            a.resolve_from(Position::CommitTs(target)).unwrap(),
            want as u64
        );
        let until = evs
            .iter()
            .rposition(|e| e.commit_ts <= target)
            .map(|p| p as u64);
        assert_eq!(a.resolve_until(Position::CommitTs(target)).unwrap(), until);
        // by time
        let t = evs[i].commit_time_ns.unwrap() - rng.below(1000);
        let want = evs
            .iter()
            .position(|e| e.commit_time_ns.unwrap() >= t)
            .unwrap();
        assert_eq!(a.resolve_from(Position::Time(t)).unwrap(), want as u64);
    }
    // the whole tail from a seek, with limits
    let c = a.cursor_at(1234).unwrap().until(Some(2345));
    let got: Vec<u64> = c.map(|r| r.unwrap().offset).collect();
    assert_eq!(got, (1234..=2345).collect::<Vec<_>>());
    // out of range says what the range is
    let err = a
        .resolve_from(Position::Offset(4000))
        .unwrap_err()
        .to_string();
    assert!(err.contains("offsets 0 to 3999"), "{err}");
    assert!(err.contains("a.mcap"), "{err}");
    let err = a
        .resolve_from(Position::CommitTs(evs[3999].commit_ts + 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the archive"), "{err}");
    assert_eq!(a.resolve_until(Position::CommitTs(0)).unwrap(), None);
}

#[test]
fn a_resumed_read_continues_the_chain_of_a_full_read() {
    let evs = events(2500);
    let dir = tmp();
    let path = dir.path().join("a.mcap");
    let final_hash = write_file(&path, &evs, Compression::Zstd);
    let a = open(&path).unwrap();
    for k in [1u64, 17, 900, 1777, 2499] {
        let mut c = a.cursor().unwrap().until(Some(k - 1));
        while let Some(e) = c.next_raw() {
            e.unwrap();
        }
        let mid = c.chain_head().unwrap();
        let mut rest = a.cursor_at(k).unwrap();
        // The chain head before offset k is known from the index, wherever k is.
        assert_eq!(rest.chain_head(), Some(mid), "k={k}");
        while let Some(e) = rest.next_raw() {
            e.unwrap();
        }
        assert_eq!(rest.chain_head(), Some(final_hash));
    }
}

#[test]
fn segment_directory_reads_as_one_archive_with_the_same_chain() {
    let evs = events(3000);
    let dir = tmp();
    let file = dir.path().join("one.mcap");
    let hash = write_file(&file, &evs, Compression::Zstd);
    let segs = dir.path().join("segs");
    write_segments(&segs, &evs, 700);
    let names: Vec<String> = std::fs::read_dir(&segs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 5);
    assert!(names.contains(&"00000000000000001400.mcap".to_string()));
    let a = open(&segs).unwrap();
    assert_eq!(a.segments().len(), 5);
    assert_eq!(read_all(&a).unwrap(), evs);
    assert_eq!(verify(&a, Some(hash)).unwrap().final_hash, hex(&hash));
    // seeking across segments
    let mut c = a.cursor_at(2100).unwrap();
    assert_eq!(c.next_event().unwrap().unwrap(), evs[2100]);
}

#[test]
fn segment_continuity_gap_names_both_files() {
    let evs = events(3000);
    let dir = tmp();
    write_segments(dir.path(), &evs, 1000);
    std::fs::remove_file(dir.path().join("00000000000000001000.mcap")).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, ArchiveError::ContinuityGap { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("00000000000000000000.mcap") && msg.contains("00000000000000002000.mcap"),
        "{msg}"
    );
    assert!(
        msg.contains("last offset 999") && msg.contains("expected 1000"),
        "{msg}"
    );
    assert!(err.is_integrity());
}

#[test]
fn segment_chain_break_names_both_files() {
    let evs = events(2000);
    let dir = tmp();
    write_segments(dir.path(), &evs, 1000);
    // Rewrite the second segment with a chain that does not continue the first one's.
    let second = dir.path().join("00000000000000001000.mcap");
    let mut w = ArchiveWriter::create(
        &second,
        WriterOptions {
            first_offset: Some(1000),
            chain_start: [9; 32],
            ..WriterOptions::default()
        },
    )
    .unwrap();
    for e in &evs[1000..] {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, ArchiveError::ChainBreak { .. }), "{err}");
    assert!(
        err.to_string().contains("00000000000000001000.mcap"),
        "{err}"
    );
}

#[test]
fn badly_named_segment_is_an_error_not_skipped() {
    let evs = events(100);
    let dir = tmp();
    write_segments(dir.path(), &evs, 50);
    std::fs::write(dir.path().join("extra.mcap"), b"x").unwrap();
    let err = open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("extra.mcap") && err.contains("not a segment name"),
        "{err}"
    );
}

#[test]
fn missing_empty_and_non_mcap_files() {
    let dir = tmp();
    let missing = dir.path().join("nope.mcap");
    let err = open(&missing).unwrap_err();
    assert!(matches!(err, ArchiveError::NotFound { .. }));
    assert!(err.to_string().contains("nope.mcap"));

    let empty = dir.path().join("empty.mcap");
    std::fs::write(&empty, b"").unwrap();
    let err = open(&empty).unwrap_err();
    assert!(matches!(err, ArchiveError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("empty.mcap"));

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"hello, this is not an archive\n").unwrap();
    let err = open(&text).unwrap_err();
    assert!(matches!(err, ArchiveError::NotMcap { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt") && err.to_string().contains("byte 0"));
}

#[test]
fn mcap_file_of_another_profile_is_refused() {
    let dir = tmp();
    let path = dir.path().join("ros.mcap");
    let mut w = mcap::WriteOptions::new()
        .profile("ros2")
        .create(std::io::BufWriter::new(
            std::fs::File::create(&path).unwrap(),
        ))
        .unwrap();
    w.finish().unwrap();
    drop(w);
    let err = open(&path).unwrap_err();
    assert!(matches!(err, ArchiveError::WrongProfile { .. }), "{err}");
    assert!(err.to_string().contains("\"ros2\"") && err.to_string().contains("ros.mcap"));
}

#[test]
fn truncated_file_errors_with_the_byte_and_opens_its_prefix_when_asked() {
    let evs = events(3000);
    let dir = tmp();
    let path = dir.path().join("a.mcap");
    write_file(&path, &evs, Compression::Zstd);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = open(&cut).unwrap_err();
    let ArchiveError::Truncated { at, .. } = &err else {
        panic!("{err}")
    };
    assert!(*at > 0 && *at <= bytes.len() as u64 / 2);
    let msg = err.to_string();
    assert!(
        msg.contains("cut.mcap") && msg.contains(&format!("byte {at}")),
        "{msg}"
    );
    assert!(msg.contains("are readable"), "{msg}");
    assert!(err.is_integrity());

    let a = Archive::open(
        &cut,
        OpenOptions {
            allow_truncated: true,
        },
    )
    .unwrap();
    assert!(a.notes()[0].contains("truncated"), "{:?}", a.notes());
    let got = read_all(&a).unwrap();
    assert!(!got.is_empty() && got.len() < evs.len());
    assert_eq!(got[..], evs[..got.len()]);
}

#[test]
fn corrupted_chunk_is_a_crc_error_naming_the_chunk() {
    let evs = events(2000);
    let dir = tmp();
    let path = dir.path().join("a.mcap");
    write_file(&path, &evs, Compression::None);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip one byte inside a txn_id of the first chunk (uncompressed: visible as text).
    let needle = evs[3].txn_id.as_bytes();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let a = open(&path).unwrap();
    let err = read_all(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::Crc { .. }), "{err}");
    assert!(err.to_string().contains("a.mcap") && err.to_string().contains("chunk at byte"));
}

#[test]
fn hash_chain_mismatch_is_detected() {
    let evs = events(2000);
    let dir = tmp();
    let path = dir.path().join("a.mcap");
    let hash = write_file(&path, &evs, Compression::Zstd);
    // Damage the recorded final hash in the metadata record (data section: no CRC covers it).
    let mut bytes = std::fs::read(&path).unwrap();
    let text = hex(&hash);
    let at = bytes
        .windows(64)
        .position(|w| w == text.as_bytes())
        .expect("final hash is in the metadata record");
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &bytes).unwrap();
    let a = open(&path).unwrap();
    let err = read_all(&a).unwrap_err();
    assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("final hash"), "{err}");

    // --expect-hash with a different hash on an intact archive
    let dir2 = tmp();
    let good = dir2.path().join("b.mcap");
    write_file(&good, &evs, Compression::Zstd);
    let err = verify(&open(&good).unwrap(), Some([0; 32])).unwrap_err();
    assert!(err.to_string().contains("--expect-hash"), "{err}");
}

/// Writes events with the mcap crate directly: what another tool (or a crashed writer of ours
/// before the summary) leaves behind.
fn write_foreign(path: &Path, evs: &[Event], options: mcap::WriteOptions) {
    let mut w = options
        .profile("replayscope")
        .chunk_size(Some(8 * 1024))
        .create(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .unwrap();
    let schema = w
        .add_schema(
            "replayscope.v1.ArchivedEvent",
            "protobuf",
            &replayscope::wire::proto::archived_event_schema(),
        )
        .unwrap();
    let mut channels = std::collections::HashMap::new();
    for e in evs {
        let id = *channels.entry(e.topic()).or_insert_with(|| {
            w.add_channel(schema, &e.topic(), "protobuf", &Default::default())
                .unwrap()
        });
        let log_time = e.commit_time_ns.unwrap();
        w.write_to_known_channel(
            &mcap::records::MessageHeader {
                channel_id: id,
                sequence: e.offset as u32,
                log_time,
                publish_time: log_time,
            },
            &e.encode().unwrap(),
        )
        .unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn archive_from_another_writer_opens_with_a_rebuilt_index() {
    let evs = events(1500);
    let dir = tmp();
    let path = dir.path().join("foreign.mcap");
    write_foreign(&path, &evs, mcap::WriteOptions::new());
    let a = open(&path).unwrap();
    assert!(
        a.notes().iter().any(|n| n.contains("rebuilt")),
        "{:?}",
        a.notes()
    );
    assert_eq!(read_all(&a).unwrap(), evs);
    // seeking works on the rebuilt index
    assert_eq!(
        a.cursor_at(1000).unwrap().next_event().unwrap().unwrap(),
        evs[1000]
    );
    let report = verify(&a, None).unwrap();
    assert!(!report.hash_recorded);
    // the computed chain is the one our own writer records
    let ours = dir.path().join("ours.mcap");
    let hash = write_file(&ours, &evs, Compression::Zstd);
    assert_eq!(report.final_hash, hex(&hash));
}

#[test]
fn archive_without_summary_opens_by_scanning() {
    let evs = events(1500);
    let dir = tmp();
    let path = dir.path().join("nosummary.mcap");
    write_foreign(
        &path,
        &evs,
        mcap::WriteOptions::new()
            .emit_summary_records(false)
            .emit_summary_offsets(false)
            .emit_statistics(false)
            .emit_chunk_indexes(false)
            .emit_attachment_indexes(false)
            .emit_metadata_indexes(false)
            .emit_message_indexes(false),
    );
    let a = open(&path).unwrap();
    assert!(
        a.notes()
            .iter()
            .any(|n| n.contains("rebuilt") || n.contains("scanning")),
        "{:?}",
        a.notes()
    );
    assert_eq!(read_all(&a).unwrap(), evs);
}

#[test]
fn commit_order_going_backwards_is_detected_on_read_and_on_write() {
    let mut evs = events(200);
    let dir = tmp();
    // writer refuses
    let mut w =
        ArchiveWriter::create(&dir.path().join("w.mcap"), WriterOptions::default()).unwrap();
    for e in &evs[..100] {
        w.append(e).unwrap();
    }
    let mut bad = evs[100].clone();
    bad.commit_ts = evs[50].commit_ts;
    let err = w.append(&bad).unwrap_err();
    assert!(matches!(err, ArchiveError::OrderBackwards { .. }), "{err}");
    assert!(err.to_string().contains("offset 100"), "{err}");
    // a foreign file with the order broken is refused on read
    evs[120].commit_ts = evs[110].commit_ts;
    let path = dir.path().join("backwards.mcap");
    write_foreign(&path, &evs, mcap::WriteOptions::new());
    let err = match open(&path) {
        Err(e) => e,
        Ok(a) => read_all(&a).unwrap_err(),
    };
    assert!(matches!(err, ArchiveError::OrderBackwards { .. }), "{err}");
    assert!(err.to_string().contains("offset 120"), "{err}");
}

#[test]
fn jsonl_round_trip_and_malformed_line_reports_the_line() {
    let evs = events(500);
    let dir = tmp();
    let path = dir.path().join("a.mcap");
    let hash = write_file(&path, &evs, Compression::Zstd);
    let a = open(&path).unwrap();
    let mut out = Vec::new();
    jsonl::export(&mut a.cursor().unwrap(), &mut out, "-").unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.lines().count(), 500);
    // import gives an archive with the same chain
    let back = dir.path().join("back.mcap");
    let s = jsonl::import(
        text.as_bytes(),
        "in.jsonl",
        ImportTarget::File(&back),
        WriterOptions::default(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(s[0].final_hash, hash);

    let mut lines: Vec<&str> = text.lines().collect();
    lines[41] = "{\"offset\": 41, \"txn_id\": ";
    let broken = lines.join("\n");
    let err = jsonl::import(
        broken.as_bytes(),
        "in.jsonl",
        ImportTarget::File(&dir.path().join("x.mcap")),
        WriterOptions::default(),
        1 << 20,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("in.jsonl:42:"), "{err}");
    assert!(
        !dir.path().join("x.mcap").exists(),
        "a failed import leaves no partial archive"
    );

    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.remove(10);
    let gap = lines.join("\n");
    let err = jsonl::import(
        gap.as_bytes(),
        "in.jsonl",
        ImportTarget::File(&dir.path().join("y.mcap")),
        WriterOptions::default(),
        1 << 20,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("in.jsonl:11:"), "{err}");
    assert!(err.to_string().contains("expected offset 10"), "{err}");
}

/// Many random corruptions of a valid archive: the reader returns an error or valid events,
/// never panics and never hangs.
#[test]
fn random_corruptions_never_panic_or_hang() {
    let evs = events(600);
    let dir = tmp();
    let path = dir.path().join("a.mcap");
    write_file(&path, &evs, Compression::Zstd);
    let original = std::fs::read(&path).unwrap();
    let lz4 = dir.path().join("b.mcap");
    write_file(&lz4, &evs, Compression::Lz4);
    let original_lz4 = std::fs::read(&lz4).unwrap();
    let mut rng = Rng::new(42);
    let cases = 600;
    let (tx, rx) = std::sync::mpsc::channel();
    let root: PathBuf = dir.path().to_path_buf();
    let worker = std::thread::spawn(move || {
        for case in 0..cases {
            let base = if case % 3 == 0 {
                &original_lz4
            } else {
                &original
            };
            let mut bytes = base.clone();
            match rng.below(4) {
                0 => {
                    for _ in 0..=rng.below(8) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] = rng.next_u64() as u8;
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                2 => {
                    let i = rng.below(bytes.len() as u64) as usize;
                    let n = rng.range(1, 64) as usize;
                    let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                    bytes.splice(i..i, junk);
                }
                _ => {
                    // overwrite a length field-sized run with a huge value
                    let i = rng.below(bytes.len().saturating_sub(8) as u64) as usize;
                    bytes[i..i + 8].copy_from_slice(&u64::MAX.to_le_bytes());
                }
            }
            let p = root.join(format!("case-{case}.mcap"));
            std::fs::write(&p, &bytes).unwrap();
            for allow_truncated in [false, true] {
                if let Ok(a) = Archive::open(&p, OpenOptions { allow_truncated }) {
                    // Whatever is returned before an error must be a prefix of the real events.
                    let mut c = match a.cursor() {
                        Ok(c) => c,
                        Err(_) => continue,
                    };
                    let mut i = 0;
                    while let Some(r) = c.next_event() {
                        match r {
                            Ok(e) => {
                                let idx = e.offset as usize;
                                assert!(idx < evs.len(), "case {case}: offset {idx}");
                                i += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    let _ = i;
                    let _ = verify(&a, None);
                    for off in [0u64, 300, 599] {
                        if let Ok(mut c) = a.cursor_at(off) {
                            let _ = c.next_event();
                        }
                    }
                }
            }
            std::fs::remove_file(&p).unwrap();
            tx.send(case).unwrap();
        }
    });
    let mut done = 0;
    while done < cases {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(_) => done += 1,
            Err(e) => panic!("corruption case {done} did not finish within 30 s: {e}"),
        }
    }
    worker.join().expect("no corruption case panicked");
}
