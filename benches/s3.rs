//! Archives in S3-compatible storage: open time, bytes and requests to open and to seek, and a
//! sequential read, against a real S3 server (moto) on 127.0.0.1.
//!
//! ```sh
//! cargo bench --bench s3                       # the 10M archive (uploaded to moto first)
//! cargo bench --bench s3 -- --events 1000000   # the 1M archive
//! ```
//! Needs `python3 -m moto.server` (scripts/test installs it).

#[path = "support.rs"]
mod support;

#[path = "../tests/support/moto.rs"]
mod moto;

use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use replayscope::archive::OpenOptions;
use replayscope::archive::s3::open_with;
use replayscope::event::Position;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = support::arg(&args, "--events")
        .map(|v| v.parse().unwrap())
        .unwrap_or(10_000_000);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-data/gen-{events}.mcap"));
    support::ensure_archive(&path, events);
    let size = std::fs::metadata(&path).unwrap().len();

    let server = moto::moto().expect("moto is installed (scripts/test installs it)");
    moto::create_bucket(&server, "bench");
    let config = moto::config(&server);
    let store: Arc<dyn ObjectStore> = config.store("bench").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        use object_store::WriteMultipart;
        use tokio::io::AsyncReadExt;
        let upload = store
            .put_multipart(&ObjectPath::from("gen.mcap"))
            .await
            .unwrap();
        let mut w = WriteMultipart::new_with_chunk_size(upload, 64 * 1024 * 1024);
        let mut f = tokio::fs::File::open(&path).await.unwrap();
        let mut buf = vec![0u8; 8 * 1024 * 1024];
        loop {
            let n = f.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            w.wait_for_capacity(2).await.unwrap();
            w.write(&buf[..n]);
        }
        w.finish().await.unwrap();
    });
    println!(
        "uploaded {} ({} bytes) to moto in {:.1} s",
        path.display(),
        size,
        start.elapsed().as_secs_f64()
    );

    let url = "s3://bench/gen.mcap";
    let mut opens = vec![];
    let mut fetched = (0, 0);
    for _ in 0..10 {
        let t = Instant::now();
        let (a, stats) = open_with(url, OpenOptions::default(), &config).unwrap();
        opens.push(t.elapsed().as_secs_f64() * 1e3);
        fetched = (stats.requests(), stats.bytes());
        assert_eq!(a.events(), events);
    }
    opens.sort_by(f64::total_cmp);
    println!(
        "open: p50 {:.1} ms, max {:.1} ms (10 opens); fetched {} bytes in {} requests ({:.4} % of the archive)",
        support::percentile(&opens, 0.5),
        opens.last().unwrap(),
        fetched.1,
        fetched.0,
        fetched.1 as f64 * 100.0 / size as f64
    );

    let (archive, stats) = open_with(url, OpenOptions::default(), &config).unwrap();
    let mut rng = replayscope::event::generate::Rng::new(9);
    let mut seeks = vec![];
    let mut per_seek = vec![];
    for _ in 0..50 {
        let target = rng.below(events);
        let before = stats.bytes();
        let t = Instant::now();
        let o = archive.resolve_from(Position::Offset(target)).unwrap();
        let mut c = archive.cursor_at(o).unwrap();
        let e = c.next_event().unwrap().unwrap();
        seeks.push(t.elapsed().as_secs_f64() * 1e3);
        per_seek.push((stats.bytes() - before) as f64);
        assert_eq!(e.offset, target);
    }
    seeks.sort_by(f64::total_cmp);
    per_seek.sort_by(f64::total_cmp);
    println!(
        "seek by offset + decode (50 random): p50 {:.1} ms, p99 {:.1} ms; fetched per seek p50 {:.0} bytes, max {:.0} bytes (one chunk)",
        support::percentile(&seeks, 0.5),
        support::percentile(&seeks, 0.99),
        support::percentile(&per_seek, 0.5),
        per_seek.last().unwrap()
    );

    // A sequential read of 100,000 events from the middle.
    let from = events / 2;
    let until = (from + 99_999).min(events - 1);
    let before = stats.bytes();
    let t = Instant::now();
    let mut c = archive.cursor_at(from).unwrap().until(Some(until));
    let mut n = 0u64;
    while let Some(r) = c.next_raw() {
        r.unwrap();
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "sequential read of {n} events: {:.0} events/s, fetched {:.1} MB ({:.0} MB/s)",
        n as f64 / secs,
        (stats.bytes() - before) as f64 / 1e6,
        (stats.bytes() - before) as f64 / 1e6 / secs
    );
}
