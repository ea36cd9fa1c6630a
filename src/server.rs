//! `replayscope serve`: a source behind gRPC (DESIGN.md sections 4 and 5, server side).
//!
//! - `statehouse.v1.StatehouseService/Replay` streams one agent's events as stored, one message
//!   per event (other Statehouse RPCs: UNIMPLEMENTED);
//! - `replayscope.v1.ReplayService/Session` (credit window, replay ring, resume, seek, pause,
//!   heartbeats, idle watchdog) and `Describe`;
//! - `grpc.health.v1.Health` and server reflection v1;
//! - optional bearer token (every RPC but health), TLS, limits, a Prometheus endpoint.
//!
//! The services are thin: they stream from a [`Source`] (the same producer every front end
//! uses, in its stored-bytes form) and meter it with the same credit window, ring and watchdog
//! as the client side. [`service`] routes the replayscope.v1 calls, [`session`] is the session
//! actor, [`replay`] answers statehouse.v1 Replay.

pub mod auth;
pub mod metrics;
pub mod replay;
pub mod service;
pub mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::archive::ArchiveError;
use crate::event::{Position, hex};
use crate::flow::Watchdog;
use crate::source::{Source, SourceError, SourceInfo};
use crate::wire::proto::replayscope::v1 as pb;

pub use auth::Token;
pub use metrics::{Metrics, Rpc};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub token: Option<Token>,
    /// PEM certificate chain and private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub metrics: Option<SocketAddr>,
    /// Streams (Replay + Session) served at once.
    pub max_sessions: u64,
    /// Streams one connection may hold at once (its share of `max_sessions`).
    pub max_connection_streams: u64,
    /// Window a Session gets when it does not ask for one.
    pub default_window_bytes: u64,
    /// The largest window a client may ask for.
    pub max_window_bytes: u64,
    /// Replay ring per session.
    pub ring_bytes: u64,
    /// A session with neither a send nor an ack for this long is cancelled; a detached session
    /// (stream cut) stays resumable from its ring for this long.
    pub idle: Duration,
    pub heartbeat: Duration,
    /// Upper bounds of one Events batch.
    pub batch_events: usize,
    pub batch_bytes: u64,
    /// How long shutdown waits for streams to close.
    pub shutdown_grace: Duration,
    /// Check the archive's hash chain over what is sent (a chunk that fails is not sent: the
    /// stream ends with DATA_LOSS naming its offsets).
    pub chain: crate::source::ChainCheck,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            token: None,
            tls: None,
            metrics: None,
            max_sessions: 64,
            max_connection_streams: 16,
            default_window_bytes: crate::flow::DEFAULT_WINDOW_BYTES,
            max_window_bytes: 256 * 1024 * 1024,
            ring_bytes: crate::flow::DEFAULT_RING_BYTES,
            idle: Duration::from_secs(60),
            heartbeat: Duration::from_secs(5),
            batch_events: 2048,
            batch_bytes: 256 * 1024,
            shutdown_grace: Duration::from_secs(5),
            chain: crate::source::ChainCheck::Verify,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup failed (--tls-cert {cert}, --tls-key {key}): {message}")]
    Tls {
        cert: String,
        key: String,
        message: String,
    },
    #[error("gRPC server on {addr} failed: {message}")]
    Transport { addr: SocketAddr, message: String },
}

/// What every service of one server shares: the source, limits, metrics, shutdown, sessions.
pub(crate) struct ServerContext {
    pub(crate) source: Arc<dyn Source>,
    /// What Describe answered at the start (a followed source: see [`ServerContext::describe_now`]).
    pub(crate) describe: pb::ArchiveInfo,
    pub(crate) options: ServeOptions,
    pub(crate) metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down: streams end with UNAVAILABLE.
    pub(crate) shutdown: CancellationToken,
    pub(crate) watchdog: Watchdog,
    /// Sessions whose stream was cut, kept for resume until the watchdog reaps them.
    pub(crate) detached: Mutex<HashMap<String, session::Detached>>,
    /// Streams held per connection (remote address).
    pub(crate) peers: Arc<PeerStreams>,
}

/// Streams held per connection (remote address).
pub(crate) type PeerStreams = Mutex<HashMap<SocketAddr, u64>>;

/// One admitted stream's slot: counted in the server's and its connection's stream counts until
/// released, once — when the stream ends, or as soon as the idle watchdog cancels it (a stalled
/// peer whose stream tonic no longer polls must not keep the slot).
pub(crate) struct Slot {
    metrics: Arc<Metrics>,
    rpc: Rpc,
    peer: Option<(SocketAddr, Arc<PeerStreams>)>,
    released: std::sync::atomic::AtomicBool,
    ended: CancellationToken,
}

impl Slot {
    fn release(&self) {
        if self
            .released
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        self.metrics.stream_ended(self.rpc);
        if let Some((addr, peers)) = &self.peer {
            let mut peers = peers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = peers.get_mut(addr) {
                *n -= 1;
                if *n == 0 {
                    peers.remove(addr);
                }
            }
        }
        self.ended.cancel();
    }
}

/// Counts a stream as active while alive.
pub(crate) struct StreamGuard {
    slot: Arc<Slot>,
    pub(crate) events: u64,
}

impl StreamGuard {
    /// Releases the slot (and cancels `window`, which stops the stream's reader) when `idle`
    /// is cancelled by the watchdog before the stream ends.
    pub(crate) fn release_when_idle(
        &self,
        idle: CancellationToken,
        window: Option<crate::flow::CreditWindow>,
    ) {
        let slot = self.slot.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = idle.cancelled() => {
                    slot.release();
                    if let Some(w) = window {
                        w.cancel();
                    }
                }
                _ = slot.ended.cancelled() => {}
            }
        });
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.slot.release();
    }
}

/// HTTP/2 keepalive: PING a quiet connection this often, drop it when the answer is this late.
/// Events in a stream's first batch: one, so the first event goes out as soon as it is read
/// (a batch of 32 waited for the next group whenever the start was near a group's end, the
/// tail of the time to first event); batches then grow 4x each.
const FIRST_BATCH_EVENTS: usize = 1;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room per connection above its stream share for unary calls (Describe, health, reflection):
/// past it HTTP/2 itself refuses new streams.
const CONTROL_STREAMS: u32 = 8;

/// At most this many characters of what a client sent are echoed in a status message.
const ECHO_CHARS: usize = 64;

/// Client input as it is quoted in a status message: at most [`ECHO_CHARS`] characters, then
/// `…` (a megabyte namespace must not come back as a megabyte of metadata).
pub(crate) fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

impl ServerContext {
    /// What Describe answers now: a followed source grows.
    pub(crate) fn describe_now(&self) -> pb::ArchiveInfo {
        if self.source.can_follow() {
            describe(&self.source.info_now())
        } else {
            self.describe.clone()
        }
    }

    /// (namespace, agent_id) when the source holds it, or NOT_FOUND listing the agents it has.
    pub(crate) fn agent(
        &self,
        namespace: &str,
        agent_id: &str,
    ) -> Result<(String, String), Status> {
        let info = self.source.info_now();
        if info
            .channels
            .iter()
            .any(|(n, a, _)| n == namespace && a == agent_id)
        {
            return Ok((namespace.to_string(), agent_id.to_string()));
        }
        let known: Vec<String> = info
            .channels
            .iter()
            .map(|(n, a, _)| format!("{n}/{a}"))
            .collect();
        let shown = if known.len() > 20 {
            format!("{}, … ({} in all)", known[..20].join(", "), known.len())
        } else {
            known.join(", ")
        };
        Err(Status::not_found(format!(
            "{}: no events for namespace {}, agent_id {}; the archive holds {}",
            info.name,
            echo(namespace),
            echo(agent_id),
            if shown.is_empty() {
                "no channels".to_string()
            } else {
                shown
            }
        )))
    }

    /// The offset of the first event at or after `pos`.
    pub(crate) fn resolve_from(&self, pos: Position) -> Result<u64, Status> {
        match self.source.resolve(pos.clone(), false) {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(Status::out_of_range(format!(
                "{}: {pos} is past the end",
                self.source.info().name
            ))),
            Err(e) => Err(source_status(&e)),
        }
    }

    /// Admits one more stream from `peer` (its connection's address), or RESOURCE_EXHAUSTED at
    /// the server's limit or at the connection's share of it.
    pub(crate) fn admit(&self, rpc: Rpc, peer: Option<SocketAddr>) -> Result<StreamGuard, Status> {
        self.metrics.stream_started(rpc);
        let peer = peer.map(|addr| {
            *self
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(addr)
                .or_insert(0) += 1;
            (addr, self.peers.clone())
        });
        let guard = StreamGuard {
            slot: Arc::new(Slot {
                metrics: self.metrics.clone(),
                rpc,
                peer,
                released: Default::default(),
                ended: CancellationToken::new(),
            }),
            events: 0,
        };
        let active = self.metrics.active_streams();
        if active > self.options.max_sessions {
            return Err(Status::resource_exhausted(format!(
                "server busy: {} streams are being served, the limit is {} (--max-sessions); retry later",
                active - 1,
                self.options.max_sessions
            )));
        }
        if let Some((addr, peers)) = &guard.slot.peer {
            let on_connection = peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(addr)
                .copied()
                .unwrap_or(0);
            if on_connection > self.options.max_connection_streams {
                return Err(Status::resource_exhausted(format!(
                    "this connection ({addr}) already has {} streams, its share is {} \
                     (--max-connection-streams); end one, or connect again",
                    on_connection - 1,
                    self.options.max_connection_streams
                )));
            }
        }
        Ok(guard)
    }

    /// The source's hash-chain head after `offset`, in hex ("" when unknown).
    pub(crate) fn chain_head_through(&self, offset: u64) -> String {
        self.source
            .chain_head_through(offset)
            .map(|h| hex(&h))
            .unwrap_or_default()
    }
}

/// An archive error as a gRPC status: a bad position is OUT_OF_RANGE, damage is DATA_LOSS.
pub(crate) fn archive_status(e: &ArchiveError) -> Status {
    match e {
        ArchiveError::OutOfRange { .. } => Status::out_of_range(e.to_string()),
        ArchiveError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        e if e.is_integrity() => Status::data_loss(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

/// A source error as a gRPC status (see [`archive_status`]).
pub(crate) fn source_status(e: &SourceError) -> Status {
    match e {
        SourceError::Archive(a) => archive_status(a),
        SourceError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        SourceError::Integrity { .. } => Status::data_loss(e.to_string()),
    }
}

/// What `Describe` answers.
pub fn describe(info: &SourceInfo) -> pb::ArchiveInfo {
    pb::ArchiveInfo {
        events: info.events.unwrap_or(0),
        bytes: info.bytes.unwrap_or(0),
        first_offset: info.first_offset.unwrap_or(0),
        last_offset: info.last_offset.unwrap_or(0),
        first_commit_ts: info.first_commit_ts.unwrap_or(0),
        last_commit_ts: info.last_commit_ts.unwrap_or(0),
        first_time_ns: info.first_time_ns,
        last_time_ns: info.last_time_ns,
        channels: info
            .channels
            .iter()
            .map(|(namespace, agent_id, events)| pb::ChannelInfo {
                namespace: namespace.clone(),
                agent_id: agent_id.clone(),
                events: *events,
            })
            .collect(),
        final_hash: info.final_hash.map(|h| hex(&h)).unwrap_or_default(),
        segments: info.segments.unwrap_or(0),
    }
}

/// A bound server, ready to run.
pub struct Server {
    shared: Arc<ServerContext>,
    listener: TcpListener,
    addr: SocketAddr,
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    tls: Option<ServerTlsConfig>,
}

impl Server {
    /// Loads TLS material and binds the listeners (port 0 picks a free port). Must be called
    /// inside a tokio runtime (the watchdog starts here).
    pub async fn bind(
        source: Arc<dyn Source>,
        options: ServeOptions,
    ) -> Result<Server, ServeError> {
        let tls = match &options.tls {
            None => None,
            Some((cert, key)) => {
                let read = |p: &PathBuf| {
                    crate::archive::storage::read_regular(p).map_err(|source| ServeError::TlsFile {
                        path: p.display().to_string(),
                        source,
                    })
                };
                let (cert_pem, key_pem) = (read(cert)?, read(key)?);
                check_pem(&cert_pem, cert, "CERTIFICATE", key)?;
                check_pem(&key_pem, key, "PRIVATE KEY", cert)?;
                Some(ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)))
            }
        };
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: options.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
        let metrics_listener = match options.metrics {
            None => None,
            Some(m) => {
                let l = TcpListener::bind(m)
                    .await
                    .map_err(|source| ServeError::Bind { addr: m, source })?;
                let a = l
                    .local_addr()
                    .map_err(|source| ServeError::Bind { addr: m, source })?;
                Some((l, a))
            }
        };
        let shared = Arc::new(ServerContext {
            describe: describe(source.info()),
            source,
            watchdog: Watchdog::start(options.idle),
            options,
            metrics: Arc::new(Metrics::default()),
            shutdown: CancellationToken::new(),
            detached: Mutex::new(HashMap::new()),
            peers: Default::default(),
        });
        Ok(Server {
            shared,
            listener,
            addr,
            metrics_listener,
            tls,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, a)| *a)
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Serves until `stop` is cancelled: then streams end with UNAVAILABLE (naming where to
    /// resume), and the server waits up to the grace period for connections to close.
    pub async fn run(self, stop: CancellationToken) -> Result<(), ServeError> {
        let Server {
            shared,
            listener,
            addr,
            metrics_listener,
            tls,
        } = self;
        let token = shared.options.token.clone();
        let metrics = shared.metrics.clone();
        if let Some((l, a)) = metrics_listener {
            tracing::info!(addr = %a, "metrics at http://{a}/metrics");
            let m = metrics.clone();
            let source = shared.source.clone();
            tokio::spawn(crate::metrics::serve_metrics(
                l,
                std::sync::Arc::new(move || m.render(source.chunk_cache())),
                shared.shutdown.clone(),
            ));
        }

        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<replay::StatehouseServer>()
            .await;
        health_reporter.set_serving::<service::ReplayServer>().await;
        // v1, and v1alpha for the clients that speak only that (Python's grpcio-reflection,
        // older grpcurl, Postman, Evans).
        let reflection_builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::wire::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_error = |e: tonic_reflection::server::Error| ServeError::Transport {
            addr,
            message: format!("reflection: {e}"),
        };
        let reflection = reflection_builder().build_v1().map_err(reflection_error)?;
        let reflection_v1alpha = reflection_builder()
            .build_v1alpha()
            .map_err(reflection_error)?;

        let mut builder = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(4 * 1024 * 1024))
            .initial_connection_window_size(Some(8 * 1024 * 1024))
            // A peer that stops answering PING is dropped after about 20 s, whatever its
            // streams are doing; one connection holds a bounded number of streams.
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(Some(
                u32::try_from(shared.options.max_connection_streams)
                    .unwrap_or(u32::MAX)
                    .saturating_add(CONTROL_STREAMS),
            ));
        if let Some(tls) = tls {
            let (cert, key) = shared.options.tls.clone().unwrap_or_default();
            builder = builder.tls_config(tls).map_err(|e| ServeError::Tls {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let router = builder
            .add_service(health)
            .add_service(auth::RequireToken::new(
                reflection,
                token.clone(),
                metrics.clone(),
            ))
            .add_service(auth::RequireToken::new(
                reflection_v1alpha,
                token.clone(),
                metrics.clone(),
            ))
            .add_service(auth::RequireToken::new(
                replay::StatehouseServer::new(shared.clone()),
                token.clone(),
                metrics.clone(),
            ))
            .add_service(auth::RequireToken::new(
                service::ReplayServer::new(shared.clone()),
                token,
                metrics.clone(),
            ));

        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let shutdown = shared.shutdown.clone();
        let grace = shared.options.shutdown_grace;
        let serve = router.serve_with_incoming_shutdown(incoming, {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
        tokio::pin!(serve);
        let result = tokio::select! {
            r = &mut serve => r,
            _ = stop.cancelled() => {
                tracing::info!(
                    streams = metrics.active_streams(),
                    "shutting down: ending streams with UNAVAILABLE"
                );
                health_reporter.set_not_serving::<replay::StatehouseServer>().await;
                health_reporter.set_not_serving::<service::ReplayServer>().await;
                shutdown.cancel();
                match tokio::time::timeout(grace, &mut serve).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(
                            grace_s = grace.as_secs_f64(),
                            "connections still open after the grace period; closing them"
                        );
                        Ok(())
                    }
                }
            }
        };
        shutdown.cancel();
        result.map_err(|e| ServeError::Transport {
            addr,
            message: e.to_string(),
        })
    }
}

/// A clear error for a certificate or key file that is not what it should be.
fn check_pem(
    pem: &[u8],
    path: &std::path::Path,
    want: &str,
    other: &std::path::Path,
) -> Result<(), ServeError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ") && text.contains(want) {
        return Ok(());
    }
    let (cert, key) = if want == "CERTIFICATE" {
        (path, other)
    } else {
        (other, path)
    };
    Err(ServeError::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        message: format!(
            "{} holds no PEM {want} block (expected -----BEGIN …{want}-----)",
            path.display()
        ),
    })
}
