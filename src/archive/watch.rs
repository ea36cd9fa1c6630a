//! Waiting for a followed archive to change without busy polling: inotify on Linux (the
//! directory of segments, or the file), with a bounded poll as the safety net and as the only
//! means elsewhere (and for `s3://`, which has no notifications).

use std::path::Path;
use std::time::Duration;

/// Watches an archive's path for writes.
pub struct Watcher {
    /// Bumped by the watching thread on every batch of notifications (`None`: polling only).
    notified: Option<tokio::sync::watch::Receiver<u64>>,
}

/// How often the watching thread looks whether its watcher is gone.
#[cfg(target_os = "linux")]
const THREAD_CHECK: Duration = Duration::from_millis(500);

impl Watcher {
    /// Watches `path` (a directory: segments created, written, renamed into it or deleted; a
    /// file: written) from a thread of its own, which ends soon after the watcher is dropped.
    /// Without inotify (another system, an `s3://` URL, a watch that could not be set up)
    /// [`Watcher::changed`] only polls.
    pub fn new(path: &Path) -> Watcher {
        #[cfg(target_os = "linux")]
        {
            // A file is watched through its directory: a repair or a writer may replace it
            // (a new inode) under the same name.
            let watched = match path.parent() {
                Some(dir) if path.is_file() && !dir.as_os_str().is_empty() => dir,
                Some(_) if path.is_file() => Path::new("."),
                _ => path,
            };
            let notified = if path.to_string_lossy().starts_with("s3://") {
                None
            } else {
                watch_thread(watched)
                    .inspect_err(|e| {
                        tracing::debug!(path = %path.display(), "no inotify watch ({e}): polling");
                    })
                    .ok()
            };
            Watcher { notified }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = path;
            Watcher { notified: None }
        }
    }

    /// Whether changes are notified (otherwise only polled).
    pub fn notifies(&self) -> bool {
        self.notified.is_some()
    }

    /// Waits until the path may have changed (since the last call), or at most `poll`.
    pub async fn changed(&mut self, poll: Duration) {
        match &mut self.notified {
            Some(rx) => {
                if let Ok(Err(_)) = tokio::time::timeout(poll, rx.changed()).await {
                    // The thread ended (its descriptor failed): poll from now on.
                    self.notified = None;
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}

/// Starts the thread that reads inotify events for `path`.
#[cfg(target_os = "linux")]
fn watch_thread(path: &Path) -> std::io::Result<tokio::sync::watch::Receiver<u64>> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
    let flags = WatchFlags::CREATE
        | WatchFlags::MODIFY
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF;
    inotify::add_watch(&fd, path, flags)?;
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    std::thread::Builder::new()
        .name("archive-watch".into())
        .spawn(move || {
            let timeout = Timespec {
                tv_sec: 0,
                tv_nsec: THREAD_CHECK.as_nanos() as i64,
            };
            let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
            while !tx.is_closed() {
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                match poll(&mut fds, Some(&timeout)) {
                    Ok(0) => continue,
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => return,
                }
                let mut reader = inotify::Reader::new(&fd, &mut buf);
                let mut any = false;
                loop {
                    match reader.next() {
                        Ok(_) => any = true,
                        Err(rustix::io::Errno::WOULDBLOCK) => break,
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(_) => return,
                    }
                }
                if any {
                    tx.send_modify(|n| *n += 1);
                }
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_in_the_directory_wakes_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(dir.path());
        assert!(w.notifies() || !cfg!(target_os = "linux"));
        let path = dir.path().join("00000000000000000000.mcap");
        let writer = tokio::spawn(async move {
            std::fs::write(path, b"x").unwrap();
        });
        let t0 = std::time::Instant::now();
        // Without the notification this waits the whole minute.
        w.changed(Duration::from_secs(60)).await;
        writer.await.unwrap();
        assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    }
}
