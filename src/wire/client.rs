//! The clients of both protocols. [`Client`]: replayscope.v1 Session/Describe and statehouse.v1
//! Replay over the same pass-through codecs as the server (messages and Session `Events`
//! arrive as the stored event bytes, zero-copy slices of the received buffer, to be decoded
//! with the fast wire decoder); used by the remote sources, benchmarks and tests.
//! [`StatehouseClient`]: the Statehouse daemon's write and read API, for `play --into`.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};

use crate::wire::codec::{InFrame, WireCodec};
use crate::wire::proto::replayscope::v1 as pb;
use crate::wire::proto::statehouse::v1 as sh;
use crate::wire::proto::statehouse::v1::ReplayRequest;
use crate::wire::proto::statehouse::v1::statehouse_service_client::StatehouseServiceClient;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{endpoint}: invalid endpoint: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("{endpoint}: cannot connect: {message}")]
    Connect { endpoint: String, message: String },
    #[error("{endpoint}: {message}")]
    Tls { endpoint: String, message: String },
}

/// How to reach an endpoint.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Bearer token sent on every call.
    pub token: Option<String>,
    /// Use TLS; with a CA certificate (PEM) to trust instead of the system roots.
    pub tls: bool,
    pub ca_pem: Option<Vec<u8>>,
    /// TLS server name when it differs from the host.
    pub domain: Option<String>,
}

/// A connected endpoint.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    endpoint: String,
}

impl Client {
    /// Connects to `host:port` (no scheme) or an `http(s)://` URL.
    pub async fn connect(addr: &str, options: ConnectOptions) -> Result<Client, ClientError> {
        let scheme = if options.tls { "https" } else { "http" };
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ClientError::Endpoint {
                endpoint: addr.to_string(),
                message: crate::error_line::one_line(&e),
            })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 * 1024 * 1024))
            .initial_connection_window_size(Some(8 * 1024 * 1024));
        if options.tls {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &options.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some(d) = &options.domain {
                tls = tls.domain_name(d.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| ClientError::Tls {
                endpoint: addr.to_string(),
                message: crate::error_line::one_line(&e),
            })?;
        }
        let channel = endpoint.connect().await.map_err(|e| ClientError::Connect {
            endpoint: addr.to_string(),
            message: crate::error_line::one_line(&e),
        })?;
        let token =
            match &options.token {
                None => None,
                Some(t) => Some(format!("Bearer {}", t.trim()).parse().map_err(|_| {
                    ClientError::Endpoint {
                        endpoint: addr.to_string(),
                        message: "the token has characters not allowed in a header".into(),
                    }
                })?),
            };
        Ok(Client {
            channel,
            token,
            endpoint: addr.to_string(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A request carrying the token.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }

    async fn ready(&self) -> Result<tonic::client::Grpc<Channel>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| {
            Status::unavailable(format!(
                "{}: {}",
                self.endpoint,
                crate::error_line::one_line(&e)
            ))
        })?;
        Ok(grpc)
    }

    /// `statehouse.v1.StatehouseService/Replay`, each message as its encoded bytes.
    pub async fn replay_raw(&self, req: ReplayRequest) -> Result<Streaming<Bytes>, Status> {
        let mut grpc = self.ready().await?;
        let path = PathAndQuery::from_static("/statehouse.v1.StatehouseService/Replay");
        let resp = grpc
            .server_streaming(
                self.request(req),
                path,
                WireCodec::<ReplayRequest, Bytes>::default(),
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// `replayscope.v1.ReplayService/Describe`.
    pub async fn describe(&self) -> Result<pb::ArchiveInfo, Status> {
        let mut grpc = self.ready().await?;
        let path = PathAndQuery::from_static("/replayscope.v1.ReplayService/Describe");
        let resp = grpc
            .unary(
                self.request(pb::DescribeRequest {}),
                path,
                WireCodec::<pb::DescribeRequest, pb::ArchiveInfo>::default(),
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// Starts a Session by sending `open`; frames go out through the returned sender.
    pub async fn session(&self, open: pb::Open) -> Result<SessionStream, Status> {
        let mut grpc = self.ready().await?;
        let (tx, rx) = mpsc::channel::<pb::ClientFrame>(64);
        tx.send(pb::ClientFrame {
            frame: Some(pb::client_frame::Frame::Open(open)),
        })
        .await
        .map_err(|_| Status::internal("session sender closed"))?;
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let path = PathAndQuery::from_static("/replayscope.v1.ReplayService/Session");
        let resp = grpc
            .streaming(
                self.request(outbound),
                path,
                WireCodec::<pb::ClientFrame, InFrame>::default(),
            )
            .await?;
        Ok(SessionStream {
            frames: resp.into_inner(),
            tx,
        })
    }
}

/// A live Session: frames in, client frames out.
pub struct SessionStream {
    pub frames: Streaming<InFrame>,
    pub tx: mpsc::Sender<pb::ClientFrame>,
}

impl SessionStream {
    /// Sends a client frame (false when the stream is gone).
    pub async fn send(&self, frame: pb::client_frame::Frame) -> bool {
        self.tx
            .send(pb::ClientFrame { frame: Some(frame) })
            .await
            .is_ok()
    }

    pub async fn ack(&self, through_offset: u64, epoch: u32) -> bool {
        self.send(pb::client_frame::Frame::Ack(pb::Ack {
            through_offset,
            epoch,
        }))
        .await
    }

    pub async fn next(&mut self) -> Result<Option<InFrame>, Status> {
        self.frames.message().await
    }
}

/// A failed call to a Statehouse daemon: what kind of failure, and what the daemon said.
#[derive(Debug, Clone)]
pub struct CallError {
    pub code: CallCode,
    pub message: String,
}

/// The kinds of failure a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCode {
    Unavailable,
    DeadlineExceeded,
    Cancelled,
    /// Any other status: an answer (the daemon refused the call).
    Refused(tonic::Code),
}

impl CallError {
    fn from_status(s: &Status) -> CallError {
        let code = match s.code() {
            // A connection that breaks mid-call surfaces as Unknown ("transport error") or an
            // HTTP/2 Internal: the daemon went away, like Unavailable.
            tonic::Code::Cancelled => CallCode::Cancelled,
            _ if crate::wire::reconnect::is_retryable(s) => CallCode::Unavailable,
            tonic::Code::DeadlineExceeded => CallCode::DeadlineExceeded,
            c => CallCode::Refused(c),
        };
        CallError {
            code,
            message: s.message().trim().to_string(),
        }
    }

    /// The daemon stopped answering (as opposed to refusing the call).
    pub fn is_lost(&self) -> bool {
        matches!(
            self.code,
            CallCode::Unavailable | CallCode::DeadlineExceeded | CallCode::Cancelled
        )
    }

    /// What the daemon said, on one line.
    pub fn text(&self) -> String {
        let m = self.message.as_str();
        match self.code {
            CallCode::Unavailable => format!(
                "unreachable ({})",
                if m.is_empty() { "no message" } else { m }
            ),
            CallCode::DeadlineExceeded => "no answer in time".to_string(),
            CallCode::Cancelled if m.is_empty() => "Cancelled".to_string(),
            CallCode::Refused(c) if m.is_empty() => format!("{c:?}"),
            _ => m.to_string(),
        }
    }
}

/// The Statehouse daemon's API (statehouse.v1.StatehouseService), every call bounded by a
/// timeout: what `play --into statehouse://` applies transactions and reads state back with.
#[derive(Clone)]
pub struct StatehouseClient {
    client: Client,
    rpc: StatehouseServiceClient<Channel>,
    timeout: Duration,
}

impl StatehouseClient {
    /// Connects to `host:port`; each call then waits at most `timeout` for an answer.
    pub async fn connect(
        addr: &str,
        options: ConnectOptions,
        timeout: Duration,
    ) -> Result<StatehouseClient, ClientError> {
        let client = Client::connect(addr, options).await?;
        Ok(StatehouseClient {
            rpc: StatehouseServiceClient::new(client.channel())
                .max_decoding_message_size(256 * 1024 * 1024),
            client,
            timeout,
        })
    }

    async fn call<T, F>(&self, rpc: &'static str, f: F) -> Result<T, CallError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r
                .map(tonic::Response::into_inner)
                .map_err(|s| CallError::from_status(&s)),
            Err(_) => Err(CallError {
                code: CallCode::DeadlineExceeded,
                message: format!("{rpc}: no answer within {:?}", self.timeout),
            }),
        }
    }

    /// Health's status ("ok" when healthy).
    pub async fn health(&self) -> Result<String, CallError> {
        let req = self.client.request(sh::HealthRequest {});
        Ok(self
            .call("Health", self.rpc.clone().health(req))
            .await?
            .status)
    }

    pub async fn version(&self) -> Result<String, CallError> {
        let req = self.client.request(sh::VersionRequest {});
        Ok(self
            .call("Version", self.rpc.clone().version(req))
            .await?
            .version)
    }

    /// Every live key of one agent under `prefix`.
    pub async fn scan_prefix(
        &self,
        namespace: &str,
        agent_id: &str,
        prefix: &str,
    ) -> Result<Vec<sh::StateEntry>, CallError> {
        let req = self.client.request(sh::ScanPrefixRequest {
            namespace: namespace.to_string(),
            agent_id: agent_id.to_string(),
            prefix: prefix.to_string(),
        });
        let mut rpc = self.rpc.clone();
        Ok(self.call("ScanPrefix", rpc.scan_prefix(req)).await?.entries)
    }

    /// Begins a transaction that stays open at most `timeout_ms`; returns its id.
    pub async fn begin_transaction(&self, timeout_ms: u64) -> Result<String, CallError> {
        let req = self.client.request(sh::BeginTransactionRequest {
            timeout_ms: Some(timeout_ms),
        });
        let mut rpc = self.rpc.clone();
        Ok(self
            .call("BeginTransaction", rpc.begin_transaction(req))
            .await?
            .txn_id)
    }

    pub async fn write(
        &self,
        txn_id: &str,
        namespace: &str,
        agent_id: &str,
        key: &str,
        value: prost_types::Struct,
    ) -> Result<(), CallError> {
        let req = self.client.request(sh::WriteRequest {
            txn_id: txn_id.to_string(),
            namespace: namespace.to_string(),
            agent_id: agent_id.to_string(),
            key: key.to_string(),
            value: Some(value),
        });
        self.call("Write", self.rpc.clone().write(req))
            .await
            .map(|_| ())
    }

    pub async fn delete(
        &self,
        txn_id: &str,
        namespace: &str,
        agent_id: &str,
        key: &str,
    ) -> Result<(), CallError> {
        let req = self.client.request(sh::DeleteRequest {
            txn_id: txn_id.to_string(),
            namespace: namespace.to_string(),
            agent_id: agent_id.to_string(),
            key: key.to_string(),
        });
        self.call("Delete", self.rpc.clone().delete(req))
            .await
            .map(|_| ())
    }

    /// Commits; returns the daemon's commit_ts.
    pub async fn commit(&self, txn_id: &str) -> Result<u64, CallError> {
        let req = self.client.request(sh::CommitRequest {
            txn_id: txn_id.to_string(),
        });
        Ok(self
            .call("Commit", self.rpc.clone().commit(req))
            .await?
            .commit_ts)
    }

    pub async fn abort(&self, txn_id: &str) -> Result<(), CallError> {
        let req = self.client.request(sh::AbortRequest {
            txn_id: txn_id.to_string(),
        });
        self.call("Abort", self.rpc.clone().abort(req))
            .await
            .map(|_| ())
    }
}
