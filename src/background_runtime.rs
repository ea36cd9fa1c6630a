//! Blocking calls into async code from anywhere — plain threads, or synchronous code running on
//! a tokio worker (where `Handle::block_on` would panic): the future runs on one background
//! thread with its own runtime, and the caller waits for the answer the way it waits for a
//! `pread`. Used where a synchronous interface (the archive's ranged reads, the `Source` trait's
//! position lookups) sits on a network client. Clients created on this runtime (tonic channels,
//! object stores) are usable from any other runtime.

use std::io;
use std::sync::{OnceLock, mpsc};

type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn sender() -> &'static tokio::sync::mpsc::UnboundedSender<Job> {
    static RUNTIME: OnceLock<tokio::sync::mpsc::UnboundedSender<Job>> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("replayscope-background-runtime".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime for the background runtime");
                rt.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .expect("spawning the background runtime thread");
        tx
    })
}

/// Runs `fut` on the background runtime and waits for its result (from any thread).
pub fn block_on<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    sender()
        .send(Box::pin(async move {
            let _ = tx.send(fut.await);
        }))
        .map_err(|_| io::Error::other("the background runtime thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the background call was dropped"))
}
