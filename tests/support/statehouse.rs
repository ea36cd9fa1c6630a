//! The real Statehouse daemon (`statehoused`, from `cargo install statehouse-daemon`) on a free
//! loopback port with an in-memory store (or RocksDB in a temporary directory), for tests and
//! benchmarks of the Statehouse target. `scripts/test` installs it and sets
//! REPLAYSCOPE_REQUIRE_STATEHOUSE=1, so that a missing daemon fails instead of skipping.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
    memory: bool,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // It has no signal handler: kill is how it is stopped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `statehoused` is: $STATEHOUSED, on the PATH, or in cargo's bin directory.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STATEHOUSED") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("statehoused"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(home.join("bin/statehoused")).filter(|p| p.is_file())
    })
}

/// Starts a daemon with an in-memory store, or `None` (skip) when it is not installed and not
/// required.
pub fn start() -> Option<Daemon> {
    start_with(true)
}

/// Starts a daemon; `memory: false` uses RocksDB (fsync per commit) in a temporary directory.
pub fn start_with(memory: bool) -> Option<Daemon> {
    let required = std::env::var_os("REPLAYSCOPE_REQUIRE_STATEHOUSE").is_some();
    let Some(bin) = binary() else {
        assert!(
            !required,
            "statehoused is not installed (scripts/test installs it with `cargo install statehouse-daemon`)"
        );
        eprintln!("skipping: statehoused is not installed; run scripts/test");
        return None;
    };
    // The daemon cannot be told to pick a port: take a free one, and try another if it was
    // taken in between.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        if let Some(child) = spawn(&bin, dir.path(), port, memory) {
            return Some(Daemon {
                child,
                port,
                url: format!("statehouse://127.0.0.1:{port}"),
                dir,
                bin,
                memory,
            });
        }
    }
    panic!("statehoused could not start on a free port");
}

/// Starts the daemon on `port` in `dir` and waits until it listens; `None` when it exited
/// (the port was taken).
fn spawn(bin: &PathBuf, dir: &std::path::Path, port: u16, memory: bool) -> Option<Child> {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .env("STATEHOUSE_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if memory {
        cmd.env("STATEHOUSE_USE_MEMORY", "1");
    } else {
        cmd.env_remove("STATEHOUSE_USE_MEMORY");
    }
    let mut child = cmd.spawn().expect("start statehoused");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "statehoused did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Daemon {
    /// The daemon's process id (its CPU time is in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon and starts it again on the same port over the same data (a restart:
    /// with RocksDB, what was committed is still there and commit_ts goes on from it).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The port is free again once the old process is gone; another process could take it
        // in between, which the retries cover.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = spawn(&self.bin, self.dir.path(), self.port, self.memory) {
                self.child = child;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "statehoused could not start again on port {}",
                self.port
            );
        }
    }
}

// A writer for tests that follow a running agent.

use replayscope::wire::client::StatehouseClient;

/// One committed transaction, as the writer saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub commit_ts: u64,
    /// The agents it wrote to.
    pub agents: Vec<&'static str>,
    pub key: String,
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub async fn connect(d: &Daemon) -> StatehouseClient {
    StatehouseClient::connect(
        &format!("127.0.0.1:{}", d.port),
        Default::default(),
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

/// Commits transaction `i`: to agent a, b, both (one transaction), or c (not followed), in turn.
pub async fn commit(client: &StatehouseClient, i: usize) -> Committed {
    let agents: Vec<&'static str> = match i % 4 {
        0 => vec!["a"],
        1 => vec!["b"],
        2 => vec!["a", "b"],
        _ => vec!["c"],
    };
    let key = format!("step/{i}");
    let txn = client.begin_transaction(10_000).await.unwrap();
    for agent in &agents {
        let value = prost_types::Struct {
            fields: [(
                "n".to_string(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(i as f64)),
                },
            )]
            .into(),
        };
        client
            .write(&txn, "live", agent, &key, value)
            .await
            .unwrap();
    }
    let commit_ts = client.commit(&txn).await.unwrap();
    Committed {
        commit_ts,
        agents,
        key,
    }
}
