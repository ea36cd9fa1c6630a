//! Replaying into targets: transactions/s applied into a real Statehouse daemon (in-memory and
//! RocksDB) by `play --into`'s sink at several pipeline depths, against the daemon's own client
//! ceiling (one transaction at a time: BeginTransaction, Write per operation, Commit, each call
//! awaited — what a Statehouse client does); and the archive-to-archive replay rate.
//!
//! ```sh
//! cargo bench --bench into                          # 1M-event archive, 5,000 transactions
//! cargo bench --bench into -- --events 10000000 --txns 20000
//! ```
//! Needs `statehoused` (scripts/test installs it).

#[path = "support.rs"]
mod support;

#[path = "../tests/support/statehouse.rs"]
mod statehouse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use replayscope::archive::{Archive, OpenOptions, WriterOptions};
use replayscope::event::Event;
use replayscope::event::generate::{GenOptions, Generator};
use replayscope::player::{NullSink, PlayerOptions, Sink};
use replayscope::sink::statehouse::{TargetTxn, verify_target};
use replayscope::sink::{AgentMap, ArchiveSink, StatehouseSink, StatehouseTarget};
use replayscope::source::{ArchiveSource, Source};
use replayscope::state::KvState;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Plays `source` as fast as possible into `sink`; returns (events, seconds, the sink).
fn play<S: Sink + 'static>(
    rt: &tokio::runtime::Runtime,
    source: Arc<dyn Source>,
    sink: S,
) -> (u64, f64, S) {
    rt.block_on(async {
        let start = Instant::now();
        let h = replayscope::player::spawn(source, PlayerOptions::default(), sink).unwrap();
        let ended = h.join_with_sink().await.unwrap();
        let r = ended.report;
        assert_eq!(r.outcome, replayscope::player::Outcome::Finished, "{r:?}");
        (r.events_sent, start.elapsed().as_secs_f64(), ended.sink)
    })
}

fn connect(rt: &tokio::runtime::Runtime, url: &str) -> StatehouseTarget {
    rt.block_on(StatehouseTarget::connect(
        url,
        Default::default(),
        Duration::from_secs(30),
    ))
    .unwrap()
}

/// The daemon's client ceiling: one transaction at a time, every call awaited.
fn sequential(rt: &tokio::runtime::Runtime, url: &str, events: &[Event]) -> f64 {
    let target = connect(rt, url);
    rt.block_on(async {
        let start = Instant::now();
        for e in events {
            let txn = TargetTxn {
                namespace: e.namespace.clone(),
                agent_id: e.agent_id.clone(),
                event: Arc::new(e.clone()),
            };
            target.apply(&txn).await.unwrap();
        }
        events.len() as f64 / start.elapsed().as_secs_f64()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = support::arg(&args, "--events")
        .map(|v| v.parse().unwrap())
        .unwrap_or(1_000_000);
    let txns: usize = support::arg(&args, "--txns")
        .map(|v| v.parse().unwrap())
        .unwrap_or(5_000);
    let rt = runtime();

    // Archive to archive.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-data/gen-{events}.mcap"));
    support::ensure_archive(&path, events);
    let open = || -> Arc<dyn Source> {
        Arc::new(ArchiveSource::new(
            Archive::open(&path, OpenOptions::default()).unwrap(),
        ))
    };
    let (n, secs, _) = play(&rt, open(), NullSink);
    println!(
        "archive -> null sink: {n} events in {secs:.2} s = {:.0} events/s",
        n as f64 / secs
    );
    let dir = tempfile::tempdir().unwrap();
    for keep in [false, true] {
        let out = dir.path().join("copy.mcap");
        let sink = ArchiveSink::create(&out, None, WriterOptions::default(), keep).unwrap();
        let (n, secs, sink) = play(&rt, open(), sink);
        let written = sink.written().unwrap();
        assert_eq!(written[0].events, n);
        println!(
            "archive -> archive ({}): {n} events in {secs:.2} s = {:.0} events/s, {:.1} MB written",
            if keep { "--keep-offsets" } else { "re-offset" },
            n as f64 / secs,
            written[0].bytes as f64 / 1e6
        );
    }

    // Into Statehouse: the first `txns` transactions of the generated session.
    let sample: Vec<Event> = Generator::new(GenOptions::default()).take(txns).collect();
    let ops: usize = sample.iter().map(|e| e.operations.len()).sum();
    let small = dir.path().join("small.mcap");
    {
        let mut w =
            replayscope::archive::ArchiveWriter::create(&small, WriterOptions::default()).unwrap();
        for e in &sample {
            w.append(e).unwrap();
        }
        w.finish().unwrap();
    }
    let small_source = || -> Arc<dyn Source> {
        Arc::new(ArchiveSource::new(
            Archive::open(&small, OpenOptions::default()).unwrap(),
        ))
    };
    println!(
        "statehouse: {txns} transactions, {ops} operations ({:.2} per transaction)",
        ops as f64 / txns as f64
    );
    for (memory, n) in [(true, txns), (false, (txns / 10).max(200))] {
        let store = if memory { "in-memory" } else { "RocksDB" };
        let events = &sample[..n];
        let d = statehouse::start_with(memory).expect("statehoused is installed");
        let ceiling = sequential(&rt, &d.url, events);
        drop(d);
        println!("statehouse {store}: client ceiling (sequential) {ceiling:.0} txn/s ({n} txns)");
        let depths: &[usize] = if memory { &[1, 4, 16, 64] } else { &[1, 16] };
        for &depth in depths {
            let d = statehouse::start_with(memory).unwrap();
            let target = connect(&rt, &d.url);
            let source = if n == txns {
                small_source()
            } else {
                // The first n events only.
                let s = dir.path().join(format!("first-{n}.mcap"));
                if !s.exists() {
                    let mut w =
                        replayscope::archive::ArchiveWriter::create(&s, WriterOptions::default())
                            .unwrap();
                    for e in events {
                        w.append(e).unwrap();
                    }
                    w.finish().unwrap();
                }
                Arc::new(ArchiveSource::new(
                    Archive::open(&s, OpenOptions::default()).unwrap(),
                )) as Arc<dyn Source>
            };
            let (sink, stats) = rt.block_on(async {
                StatehouseSink::new(target.clone(), AgentMap::default(), depth)
            });
            let (played, secs, _) = play(&rt, source, sink);
            assert_eq!(stats.committed(), played);
            println!(
                "statehouse {store}: play --into, pipeline {depth:>2}: {:.0} txn/s ({:.2}x the ceiling)",
                played as f64 / secs,
                played as f64 / secs / ceiling
            );
            if memory && depth == 16 {
                let mut expected = KvState::new();
                for e in events {
                    expected.apply(e);
                }
                let agents: Vec<(String, String)> = {
                    let mut a: Vec<_> = events
                        .iter()
                        .map(|e| (e.namespace.to_string(), e.agent_id.to_string()))
                        .collect();
                    a.sort();
                    a.dedup();
                    a
                };
                let start = Instant::now();
                let v = rt
                    .block_on(verify_target(
                        &target,
                        &expected,
                        &agents,
                        &AgentMap::default(),
                        5,
                    ))
                    .unwrap();
                assert!(v.matched, "{}", v.describe());
                println!(
                    "statehouse {store}: verification (ScanPrefix x {} agents, {} keys): {:.1} ms",
                    v.agents,
                    v.keys_expected,
                    start.elapsed().as_secs_f64() * 1e3
                );
            }
        }
    }
}
