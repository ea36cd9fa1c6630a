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
    _dir: tempfile::TempDir,
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
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir.path())
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
                return Some(Daemon {
                    child,
                    port,
                    url: format!("statehouse://127.0.0.1:{port}"),
                    _dir: dir,
                });
            }
            if child.try_wait().ok().flatten().is_some() {
                break; // exited (the port was taken): try another
            }
            assert!(
                Instant::now() < deadline,
                "statehoused did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("statehoused could not start on a free port");
}
