//! An in-process `replayscope serve` on 127.0.0.1:0 for the server's tests, and a big archive.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use replayscope::archive::{Archive, ArchiveWriter, OpenOptions, WriterOptions};
use replayscope::event::generate::{GenOptions, Generator};
use replayscope::server::{Metrics, ServeOptions, Server};
use replayscope::source::ArchiveSource;
use replayscope::wire::client::{Client, ConnectOptions};
use tokio_util::sync::CancellationToken;

/// A 60,000-event archive (about 17 MB of events): bigger than every buffer between server and
/// client, so stalls and cancellations are visible. Built once per test binary.
pub fn big_archive() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-60000-seed11.mcap");
        if path.exists() {
            return path;
        }
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        let mut w = ArchiveWriter::create(&partial, WriterOptions::default()).unwrap();
        for e in Generator::new(GenOptions {
            seed: 11,
            agents: 3,
            ..GenOptions::default()
        })
        .take(60_000)
        {
            w.append(&e).unwrap();
        }
        w.finish().unwrap();
        std::fs::rename(&partial, &path).unwrap();
        path
    })
    .clone()
}

pub fn open(path: &Path) -> Archive {
    Archive::open(path, OpenOptions::default()).unwrap()
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub metrics: Arc<Metrics>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub stop: CancellationToken,
    pub join: tokio::task::JoinHandle<Result<(), replayscope::server::ServeError>>,
}

impl TestServer {
    pub async fn start(path: &Path, options: ServeOptions) -> TestServer {
        let server = Server::bind(
            Arc::new(ArchiveSource::new(open(path))),
            ServeOptions {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..options
            },
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        let metrics = server.metrics();
        let metrics_addr = server.metrics_addr();
        let stop = CancellationToken::new();
        let join = tokio::spawn(server.run(stop.clone()));
        TestServer {
            addr,
            metrics,
            metrics_addr,
            stop,
            join,
        }
    }

    pub async fn client(&self) -> Client {
        self.client_with(ConnectOptions::default()).await
    }

    pub async fn client_with(&self, o: ConnectOptions) -> Client {
        Client::connect(&self.addr.to_string(), o).await.unwrap()
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.join)
            .await
            .expect("server stops within 10 s")
            .unwrap()
            .unwrap();
    }
}
