//! gRPC client calls over the same pass-through codecs as the server: Replay messages and
//! Session `Events` arrive as the stored event bytes (zero-copy slices of the received buffer),
//! to be decoded with the fast wire decoder. Used by remote sources, benchmarks and tests.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};

use crate::wire::codec::{InFrame, WireCodec};
use crate::wire::proto::replayscope::v1 as pb;
use crate::wire::proto::statehouse::v1::ReplayRequest;

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
