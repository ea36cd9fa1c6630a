//! `replayscope serve SOURCE`: the source behind gRPC (statehouse.v1 Replay, replayscope.v1
//! Session and Describe, health, reflection) until SIGINT or SIGTERM.

use std::sync::Arc;

use color_eyre::eyre::Result;

use super::{UsageError, runtime, shutdown_signal};

pub fn serve_cmd(a: crate::cli::ServeArgs) -> Result<()> {
    use crate::server::{ServeOptions, Server, Token};
    let token = match (&a.token_file, std::env::var("REPLAYSCOPE_TOKEN").ok()) {
        (Some(path), _) => {
            let text = crate::archive::storage::read_regular_text(path)
                .map_err(|e| UsageError(format!("--token-file {}: {e}", path.display())))?;
            Some(Token::new(&text).ok_or_else(|| {
                UsageError(format!(
                    "--token-file {}: the file is empty",
                    path.display()
                ))
            })?)
        }
        (None, Some(env)) => Some(
            Token::new(&env)
                .ok_or_else(|| UsageError("REPLAYSCOPE_TOKEN is set but empty".to_string()))?,
        ),
        (None, None) => None,
    };
    if a.window.0 > a.max_window.0 {
        return Err(UsageError(format!(
            "--window {} is larger than --max-window {}",
            a.window.0, a.max_window.0
        ))
        .into());
    }
    let follow = a.follow;
    // A followed directory may have a last segment still being written.
    let archive = if follow {
        let mut source = a.source.clone();
        source.allow_truncated = true;
        super::open_archive(&source)?
    } else {
        super::open_archive(&a.source)?
    };
    if follow {
        archive.log_notes_following();
    } else {
        archive.log_notes();
    }
    archive.set_cache_budget(a.cache.0);
    let (name, events) = (archive.name().to_string(), archive.events());
    let options = ServeOptions {
        listen: a.listen,
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        metrics: a.metrics,
        max_sessions: a.max_sessions,
        max_connection_streams: a.max_connection_streams,
        default_window_bytes: a.window.0.max(1),
        max_window_bytes: a.max_window.0.max(1),
        ring_bytes: a.ring.0,
        idle: a.idle_timeout.0.max(std::time::Duration::from_millis(100)),
        heartbeat: a.heartbeat.0.max(std::time::Duration::from_millis(10)),
        token,
        chain: a.chain.chain(),
        ..ServeOptions::default()
    };
    let secured = match (options.tls.is_some(), options.token.is_some()) {
        (true, true) => " (TLS, token required)",
        (true, false) => " (TLS)",
        (false, true) => " (token required)",
        (false, false) => "",
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let source = Arc::new(if follow {
            crate::source::ArchiveSource::followed(archive)
        } else {
            crate::source::ArchiveSource::new(archive)
        });
        let server = Server::bind(source, options).await?;
        let addr = server.local_addr();
        tracing::info!(%addr, archive = %name, events, "serving on {addr}{secured}");
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown_signal().await;
                stop.cancel();
            }
        });
        server.run(stop).await?;
        Ok(())
    })
}
