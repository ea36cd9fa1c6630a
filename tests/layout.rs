//! Per-agent chunks (format version 2): a one-agent read (the cursor, `play --agent`,
//! `export --agent`) returns exactly that agent's events
//! and reads only the chunks that hold them (another agent's broken chunk does not stop it,
//! its own tampered chunk does, against the chunk hash the index records); an archive written
//! before per-agent chunks still reads, one agent at a time too, and `index` rewrites it in the
//! new layout with the same events and hash chain.

use std::path::Path;
use std::process::Command;

use replayscope::archive::{
    Archive, ArchiveError, ArchiveWriter, Compression, OpenOptions, WriterOptions,
};
use replayscope::event::generate::{GenOptions, Generator};

#[path = "support/tamper.rs"]
mod tamper;

use tamper::{Crc, Damage, damage, tamper};

/// (offset, stored bytes) of every event a cursor returns, or the error that stopped it.
fn read_all(mut cursor: replayscope::archive::Cursor) -> Result<Vec<(u64, Vec<u8>)>, ArchiveError> {
    let mut out = Vec::new();
    while let Some(raw) = cursor.next_raw() {
        let raw = raw?;
        out.push((raw.offset, raw.payload.to_vec()));
    }
    Ok(out)
}

/// `events` generated events, chunks uncompressed (the tamper helper edits them in place).
fn write_uncompressed(path: &Path, events: usize) {
    write_uncompressed_agents(path, events, GenOptions::default().agents);
}

fn write_uncompressed_agents(path: &Path, events: usize, agents: usize) {
    let mut w = ArchiveWriter::create(
        path,
        WriterOptions {
            compression: Compression::None,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let gen_options = GenOptions {
        agents,
        ..GenOptions::default()
    };
    for e in Generator::new(gen_options).take(events) {
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
}

fn open(path: &Path) -> Archive {
    Archive::open(path, OpenOptions::default()).unwrap()
}

/// The channels of the archive, only `channel` wanted.
fn only(archive: &Archive, channel: usize) -> Vec<bool> {
    (0..archive.channels().len())
        .map(|c| c == channel)
        .collect()
}

/// The events of `channel` in a full (chain-checked) read.
fn full_read_of(archive: &Archive, channel: usize) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut c = archive.cursor().unwrap();
    while let Some(raw) = c.next_raw() {
        let raw = raw.unwrap();
        if raw.channel == channel {
            out.push((raw.offset, raw.payload.to_vec()));
        }
    }
    out
}

#[test]
fn a_one_agent_read_returns_its_events_and_reads_only_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.mcap");
    write_uncompressed(&path, 40_000);

    let archive = open(&path);
    let agents = archive.channels().len();
    assert_eq!(archive.channels_with_own_chunks(), Some(agents));
    assert!(archive.has_chunk_hashes());
    let seg = &archive.segments()[0];
    assert!(seg.chunk_count() >= agents * seg.group_count() / 2);

    for channel in 0..agents {
        let expected = full_read_of(&archive, channel);
        assert!(archive.reads_less_for(&only(&archive, channel)));
        let read = read_all(
            archive
                .cursor_at_only(0, only(&archive, channel), true)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(read.len(), expected.len(), "channel {channel}");
        assert!(read == expected, "channel {channel}: other events");
        // From the middle, and up to a limit.
        let from = 20_000;
        let until = 30_000;
        let read = read_all(
            archive
                .cursor_at_only(from, only(&archive, channel), true)
                .unwrap()
                .until(Some(until)),
        )
        .unwrap();
        let want: Vec<_> = expected
            .iter()
            .filter(|(o, _)| (from..=until).contains(o))
            .cloned()
            .collect();
        assert!(read == want, "channel {channel} from {from} until {until}");
    }

    // An event of agent 1: its chunk no longer parses (the CRC fixed up). Agent 0's read never
    // touches it; agent 1's read and a full read stop at it.
    let victim = full_read_of(&archive, 1)[3_000].0;
    let broken = dir.path().join("broken.mcap");
    std::fs::copy(&path, &broken).unwrap();
    damage(
        &broken,
        victim as u32,
        Damage::RecordLength,
        Crc::Recomputed,
    );
    let b = open(&broken);
    let agent0 = read_all(b.cursor_at_only(0, only(&b, 0), true).unwrap()).unwrap();
    assert!(agent0 == full_read_of(&archive, 0));
    assert!(read_all(b.cursor_at_only(0, only(&b, 1), true).unwrap()).is_err());
    assert!(read_all(b.cursor().unwrap()).is_err());

    // A payload changed (the chunk still parses, its CRC fixed up): agent 1's read fails on its
    // chunk's hash before delivering anything of that chunk; without the check it reads.
    let tampered = dir.path().join("tampered.mcap");
    std::fs::copy(&path, &tampered).unwrap();
    tamper(&tampered, victim as u32, Crc::Recomputed);
    let t = open(&tampered);
    let err = read_all(t.cursor_at_only(0, only(&t, 1), true).unwrap()).unwrap_err();
    assert!(
        matches!(err, ArchiveError::HashMismatch { .. }) && err.to_string().contains("chunk hash"),
        "{err}"
    );
    let unchecked = read_all(t.cursor_at_only(0, only(&t, 1), false).unwrap()).unwrap();
    assert_eq!(unchecked.len(), full_read_of(&archive, 1).len());
    let agent0 = read_all(t.cursor_at_only(0, only(&t, 0), true).unwrap()).unwrap();
    assert!(agent0 == full_read_of(&archive, 0));
}

/// Chunks read again come from the archive's cache (decompressed once), reads from it return
/// the same events, and the cache never stands in for a check: a chunk held unchecked is checked
/// by the next read that checks, and a tampered one fails it there.
#[test]
fn chunks_read_again_come_from_the_cache_and_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.mcap");
    write_uncompressed(&path, 20_000);

    let archive = open(&path);
    archive.set_cache_budget(1 << 30);
    let full = || read_all(archive.cursor().unwrap()).unwrap();
    let first = full();
    let after_first = archive.cache_stats();
    assert!(after_first.misses > 0 && after_first.bytes > 0);
    let again = full();
    let after_again = archive.cache_stats();
    assert!(first == again);
    assert_eq!(
        after_again.misses, after_first.misses,
        "the second full read decompressed a chunk again"
    );
    assert!(after_again.hits > after_first.hits);
    // A one-agent read and a seek after the full reads: from the cache, the same events,
    // parsed by the reading thread (no read-ahead thread for what is decompressed already).
    let mut cursor = archive.cursor_at_only(0, only(&archive, 2), true).unwrap();
    let mut agent = Vec::new();
    while let Some(raw) = cursor.next_raw() {
        let raw = raw.unwrap();
        agent.push((raw.offset, raw.payload.to_vec()));
    }
    assert!(!cursor.reads_ahead());
    assert!(agent == full_read_of(&archive, 2));
    let from_middle = read_all(archive.cursor_at(12_345).unwrap()).unwrap();
    assert!(from_middle[..] == first[12_345..]);
    assert_eq!(archive.cache_stats().misses, after_first.misses);

    // Tampered: read unchecked (held unchecked), then checked: the check still fails.
    let victim = full_read_of(&archive, 1)[2_000].0;
    let tampered = dir.path().join("tampered.mcap");
    std::fs::copy(&path, &tampered).unwrap();
    tamper(&tampered, victim as u32, Crc::Recomputed);
    let t = open(&tampered);
    t.set_cache_budget(1 << 30);
    let mut cold = t.cursor_at_only(0, only(&t, 1), false).unwrap();
    while cold.next_raw().is_some() {}
    assert!(
        cold.reads_ahead(),
        "a first read decompresses ahead on its own thread"
    );
    let unchecked = read_all(t.cursor_at_only(0, only(&t, 1), false).unwrap()).unwrap();
    assert_eq!(unchecked.len(), full_read_of(&archive, 1).len());
    let misses = t.cache_stats().misses;
    let err = read_all(t.cursor_at_only(0, only(&t, 1), true).unwrap()).unwrap_err();
    assert!(
        matches!(err, ArchiveError::HashMismatch { .. }) && err.to_string().contains("chunk hash"),
        "{err}"
    );
    assert_eq!(
        t.cache_stats().misses,
        misses,
        "checked from the cache, not read again"
    );
    // And again: a failed check did not mark it checked.
    assert!(read_all(t.cursor_at_only(0, only(&t, 1), true).unwrap()).is_err());
}

/// A full read again from the cache takes the chain heads the first one ran and checked
/// (no hashing, no read-ahead thread) and returns the same events with the same heads; a
/// group whose chain did not check holds none, so a tampered event fails every read.
#[test]
fn a_full_read_again_takes_the_checked_chain_heads_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.mcap");
    write_uncompressed(&path, 20_000);
    let heads_of = |archive: &Archive| {
        let mut cursor = archive.cursor().unwrap();
        let mut out = Vec::new();
        while let Some(raw) = cursor.next_raw() {
            let raw = raw.unwrap();
            out.push((raw.offset, raw.payload.to_vec(), cursor.chain_head()));
        }
        (out, cursor.reads_ahead())
    };
    let archive = open(&path);
    archive.set_cache_budget(1 << 30);
    let (first, first_ahead) = heads_of(&archive);
    let (again, again_ahead) = heads_of(&archive);
    assert!(first_ahead, "a first read hashes on the read-ahead threads");
    assert!(!again_ahead, "the read again took the heads from the cache");
    assert_eq!(first.len(), 20_000);
    assert!(first.iter().all(|(_, _, head)| head.is_some()));
    assert!(first == again);
    // The heads are counted in what the cache holds: those of every group but the first
    // (~1,600 events, loaded where the read starts and checked window by window).
    let with_heads = archive.cache_stats().bytes;
    let fresh = open(&path);
    fresh.set_cache_budget(1 << 30);
    read_all(
        fresh
            .cursor_at_only(0, vec![true; fresh.channels().len()], false)
            .unwrap(),
    )
    .unwrap();
    let without = fresh.cache_stats().bytes;
    assert!(
        with_heads >= without + 32 * 18_000,
        "{with_heads} {without}"
    );

    let victim = 12_345;
    let tampered = dir.path().join("tampered.mcap");
    std::fs::copy(&path, &tampered).unwrap();
    tamper(&tampered, victim, Crc::Recomputed);
    let t = open(&tampered);
    t.set_cache_budget(1 << 30);
    for _ in 0..2 {
        let err = read_all(t.cursor().unwrap()).unwrap_err();
        assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err}");
    }
}

/// A read that reaches the groups another read left in the cache stops its read-ahead thread
/// there and parses them itself (taking their checked chain heads), as a read that found
/// everything cached from its start does; the events and heads are the same.
#[test]
fn a_read_reaching_groups_another_read_cached_parses_them_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.mcap");
    write_uncompressed(&path, 20_000);
    // Events with their chain heads, and whether a read-ahead thread ran after event `probe`
    // and at the end.
    let read = |mut cursor: replayscope::archive::Cursor, probe: usize| {
        let mut out = Vec::new();
        let mut ahead_at_probe = None;
        while let Some(raw) = cursor.next_raw() {
            let raw = raw.unwrap();
            out.push((raw.offset, raw.payload.to_vec(), cursor.chain_head()));
            if out.len() == probe {
                ahead_at_probe = Some(cursor.reads_ahead());
            }
        }
        (out, ahead_at_probe, cursor.reads_ahead())
    };
    let (expected, _, _) = read(open(&path).cursor().unwrap(), 0);

    // The second half read first: its groups (and their heads) are held.
    let archive = open(&path);
    archive.set_cache_budget(1 << 30);
    let (tail, _, tail_ahead) = read(archive.cursor_at(10_000).unwrap(), 0);
    assert!(tail_ahead);
    assert!(tail[..] == expected[10_000..]);
    let (whole, at_15_000, at_end) = read(archive.cursor().unwrap(), 15_000);
    assert!(whole == expected);
    assert_eq!(
        (at_15_000, at_end),
        (Some(false), false),
        "a read-ahead thread still ran over the groups the cache held"
    );

    // One agent the same way (its events from a read of another archive value, so that only
    // the reads below fill this one's cache).
    let agent = full_read_of(&open(&path), 1);
    let archive = open(&path);
    archive.set_cache_budget(1 << 30);
    let middle = agent[agent.len() / 2].0;
    read_all(
        archive
            .cursor_at_only(middle, only(&archive, 1), true)
            .unwrap(),
    )
    .unwrap();
    let probe = agent.len() * 3 / 4;
    let (own, at_probe, at_end) = read(
        archive.cursor_at_only(0, only(&archive, 1), true).unwrap(),
        probe,
    );
    let own: Vec<_> = own.into_iter().map(|(o, p, _)| (o, p)).collect();
    assert!(own == agent);
    assert_eq!((at_probe, at_end), (Some(false), false));
}

/// An event that does not decode stops the reads that want its agent, and only those: in chunks
/// the agents share, another agent's read goes past it; and where a chunk also has a record
/// that does not parse after it, the read reports the first of the two.
#[test]
fn a_broken_event_stops_only_the_reads_of_its_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.mcap");
    // 100 agents: none has 64 KiB of a group, so every chunk is shared (~16 events of each
    // agent in a group: the other agent has events after the broken one in its chunk).
    write_uncompressed_agents(&path, 20_000, 100);
    let archive = open(&path);
    assert_eq!(archive.channels_with_own_chunks(), Some(0));
    let victim = 5_000u32;
    let channel = archive
        .cursor_at(u64::from(victim))
        .unwrap()
        .next_raw()
        .unwrap()
        .unwrap()
        .channel;
    let other = (channel + 1) % archive.channels().len();

    let broken = dir.path().join("broken.mcap");
    std::fs::copy(&path, &broken).unwrap();
    damage(&broken, victim, Damage::Head, Crc::Recomputed);
    let b = open(&broken);
    // Unchecked (the chunk's hash no longer matches: a checked read fails on it, rightly).
    let read = read_all(b.cursor_at_only(0, only(&b, other), false).unwrap()).unwrap();
    assert!(
        read == full_read_of(&archive, other),
        "the other agent's events"
    );
    let err = read_all(b.cursor_at_only(0, only(&b, channel), false).unwrap()).unwrap_err();
    assert!(err.to_string().contains("malformed ArchivedEvent"), "{err}");
    let err = read_all(b.cursor_at_only(0, only(&b, other), true).unwrap()).unwrap_err();
    assert!(err.to_string().contains("chunk hash"), "{err}");

    // A record after it that does not parse: a full read reports the event, the first.
    damage(&broken, victim + 1, Damage::RecordLength, Crc::Recomputed);
    let b = open(&broken);
    let err = read_all(b.cursor_at_with(0, false).unwrap()).unwrap_err();
    assert!(err.to_string().contains("malformed ArchivedEvent"), "{err}");
}

/// A followed file that grew keeps its chunks in the cache: what was read before the look is not
/// read again after it.
#[test]
fn a_file_that_grew_keeps_its_cached_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.mcap");
    write_uncompressed(&full, 20_000);
    let bytes = std::fs::read(&full).unwrap();
    let growing = dir.path().join("growing.mcap");
    // Half of it, as a writer that is still at work leaves it.
    std::fs::write(&growing, &bytes[..bytes.len() / 2]).unwrap();
    let before = Archive::open(
        &growing,
        OpenOptions {
            allow_truncated: true,
        },
    )
    .unwrap();
    before.set_cache_budget(1 << 30);
    let read_before = read_all(before.cursor().unwrap()).unwrap();
    let last = read_before.last().unwrap().0;
    let misses = before.cache_stats().misses;

    std::fs::write(&growing, &bytes).unwrap();
    let after = before.refreshed().unwrap();
    assert_eq!(after.events(), 20_000);
    let again = read_all(after.cursor().unwrap().until(Some(last))).unwrap();
    assert!(again == read_before);
    assert_eq!(
        after.cache_stats().misses,
        misses,
        "what was read before the look was read again"
    );
    // The rest is new: read and decompressed.
    assert_eq!(read_all(after.cursor().unwrap()).unwrap().len(), 20_000);
    assert!(after.cache_stats().misses > misses);
}

/// What in the index attachment a forgery changes.
#[derive(Clone, Copy)]
enum Forgery {
    /// A bit of the first chunk's hash.
    Hash,
    /// The channel the first chunk is listed for.
    Channel,
    /// A bit of the first chain checkpoint (the head before the first group's 257th event).
    Checkpoint,
}

/// Changes the index attachment (its CRC set to 0, "not computed"): the events and the chain
/// are intact, the index lies.
fn forge_index(path: &Path, what: Forgery) {
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let mut b = std::fs::read(path).unwrap();
    let at = b.windows(4).rposition(|w| w == b"RSIX").unwrap();
    let groups = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap()) as usize;
    let heads = at + 16 + groups * 80;
    let chunks: usize = (0..groups).map(|g| u32_at(&b, heads + g * 8)).sum();
    let ids = heads + groups * 8;
    let hashes = ids + chunks * 2;
    let every = u32_at(&b, hashes + chunks * 32) as u64;
    let events = |g: usize| u64::from_le_bytes(b[at + 24 + g * 80..][..8].try_into().unwrap());
    let checkpoints = hashes + chunks * 32 + 4;
    let count: u64 = (0..groups).map(|g| (events(g) - 1) / every).sum();
    match what {
        Forgery::Hash => b[hashes] ^= 1,
        Forgery::Channel => b[ids] ^= 1,
        Forgery::Checkpoint => b[checkpoints] ^= 1,
    }
    let crc = checkpoints + count as usize * 32;
    b[crc..crc + 4].copy_from_slice(&[0; 4]);
    std::fs::write(path, b).unwrap();
}

#[test]
fn verify_checks_the_chunk_hashes_one_agent_reads_trust() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mcap");
    let mut w = ArchiveWriter::create(&path, WriterOptions::default()).unwrap();
    for e in Generator::new(GenOptions::default()).take(10_000) {
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
    let p = path.to_str().unwrap();
    ok(&["verify", p]);
    for (what, says) in [
        (Forgery::Hash, "chunk hash"),
        (Forgery::Channel, "the index lists for other channels"),
        (Forgery::Checkpoint, "chain head before offset 256"),
    ] {
        let forged = dir.path().join("forged.mcap");
        std::fs::copy(&path, &forged).unwrap();
        forge_index(&forged, what);
        let o = bin()
            .args(["verify", forged.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_replayscope"));
    c.env("NO_COLOR", "1");
    c
}

fn ok(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn an_older_archive_reads_and_index_rewrites_it_in_the_new_layout() {
    // The bundled sample was written before per-agent chunks: one chunk of every agent per
    // ~1 MiB, message indexes, a version 1 index.
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap");
    let old = open(Path::new(sample));
    assert_eq!(old.channels_with_own_chunks(), None);
    assert!(!old.has_chunk_hashes());
    let info = ok(&["info", sample]);
    assert!(info.contains("every chunk holds every agent"), "{info}");
    assert!(info.contains("chain heads   one per group"), "{info}");

    // One agent, through the CLI: exactly its events of the whole export.
    let all = ok(&["export", sample]);
    let ch = &old.channels()[1];
    let agent = format!("{}/{}", ch.namespace, ch.agent_id);
    let played = ok(&[
        "play", sample, "--agent", &agent, "--pace", "fast", "--format", "jsonl", "--quiet",
    ]);
    let of_agent: Vec<&str> = all
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["namespace"] == ch.namespace.as_str() && v["agent_id"] == ch.agent_id.as_str()
        })
        .collect();
    assert!(!of_agent.is_empty());
    assert_eq!(played.lines().collect::<Vec<_>>(), of_agent);
    let exported = ok(&["export", sample, "--agent", &agent]);
    assert_eq!(exported.lines().collect::<Vec<_>>(), of_agent);

    // `index -o` writes it in the new layout: the same events, the same hash chain.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("upgraded.mcap");
    let copy_s = copy.to_str().unwrap();
    ok(&["index", sample, "-o", copy_s]);
    let new = open(&copy);
    assert!(new.channels_with_own_chunks().is_some());
    assert!(new.has_chunk_hashes());
    assert_eq!(new.recorded_final_hash(), old.recorded_final_hash());
    assert_eq!(ok(&["export", copy_s]), all);
    let info = ok(&["info", copy_s]);
    assert!(info.contains("layout        per-agent chunks"), "{info}");
    assert!(info.contains("chain heads   every 256 events"), "{info}");
    assert_eq!(new.chain_heads_every(), Some(256));
    assert_eq!(old.chain_heads_every(), None);
    let played = ok(&[
        "play", copy_s, "--agent", &agent, "--pace", "fast", "--format", "jsonl", "--quiet",
    ]);
    assert_eq!(played.lines().collect::<Vec<_>>(), of_agent);
    let exported = ok(&["export", copy_s, "--agent", &agent]);
    assert_eq!(exported.lines().collect::<Vec<_>>(), of_agent);
}
