//! `GET /metrics` over plain HTTP/1.1 (one response per connection), for `play --metrics` and
//! `serve --metrics`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Renders the Prometheus text of whatever is being measured.
pub type Render = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` (HTTP/1.1, one response per connection) until `stop`, each response
/// rendered by `render`.
pub async fn serve_metrics(listener: TcpListener, render: Render, stop: CancellationToken) {
    loop {
        let (mut conn, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    continue;
                }
            },
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read the request head (bounded: 8 KiB, 5 s).
            let head = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if head.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(req.split(|&b| b == b'\n').next().unwrap_or(&[]))
                .trim()
                .to_string();
            let (status, content_type, body) = match line.split_whitespace().collect::<Vec<_>>()[..]
            {
                ["GET", "/metrics", ..] => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    render(),
                ),
                ["GET", ..] => (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "not found: metrics are at /metrics\n".to_string(),
                ),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain; charset=utf-8",
                    "only GET /metrics is served\n".to_string(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = conn.write_all(resp.as_bytes()).await {
                tracing::debug!(%peer, error = %e, "metrics endpoint: write failed");
            }
            let _ = conn.shutdown().await;
        });
    }
}
