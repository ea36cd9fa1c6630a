//! The in-memory limit server of the serve bench (included with `#[path]`): one agent's events
//! read from an archive once, held in memory as their stored bytes, and served through the same
//! pass-through codec and HTTP/2 windows as `replayscope serve` — Replay as one message per
//! event, Session as pre-encoded `Events` frames of 2,048 events (acks read and dropped). What a
//! client reaches against it is the most any server can give that client on this machine.
//!
//! The bench re-executes itself as this server (environment variable [`LIMIT_ENV`] =
//! `ARCHIVE<TAB>NAMESPACE<TAB>AGENT`; an empty agent holds every agent's events, for a Session
//! of every agent), so it runs in its own process like the real server.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use prost::Message as _;
use replayscope::archive::{Archive, OpenOptions};
use replayscope::wire::codec::{ChainHeads, WireCodec, put_events_frame};
use replayscope::wire::proto::replayscope::v1 as pb;
use replayscope::wire::proto::statehouse::v1::ReplayRequest;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

pub const LIMIT_ENV: &str = "REPLAYSCOPE_BENCH_LIMIT_SERVER";

/// Events per pre-encoded Session frame (the real server's largest batch).
const FRAME_EVENTS: usize = 2048;

struct Held {
    /// One Replay message per event: the stored bytes.
    messages: Vec<Bytes>,
    /// Encoded `ServerFrame`s: `Events` of up to 2,048 events, then `End`.
    frames: Vec<Bytes>,
}

/// Reads one agent's events (every agent's with an empty agent) from the archive into memory,
/// each copied out of its chunk.
fn load(path: &str, namespace: &str, agent: &str) -> Held {
    let archive = Archive::open(path.as_ref(), OpenOptions::default()).unwrap();
    let channel = (!agent.is_empty()).then(|| archive.channel_index(namespace, agent).unwrap());
    let mut cursor = archive.cursor().unwrap().verify_chain(false);
    let mut messages = Vec::new();
    while let Some(raw) = cursor.next_raw() {
        let raw = raw.unwrap();
        if channel.is_none_or(|c| raw.channel == c) {
            messages.push(Bytes::copy_from_slice(&raw.payload));
        }
    }
    let mut frames: Vec<Bytes> = messages
        .chunks(FRAME_EVENTS)
        .map(|batch| {
            let mut buf = BytesMut::new();
            put_events_frame(batch, 1, &ChainHeads::default(), &mut buf);
            buf.freeze()
        })
        .collect();
    frames.push(Bytes::from(
        pb::ServerFrame {
            frame: Some(pb::server_frame::Frame::End(pb::End::default())),
        }
        .encode_to_vec(),
    ));
    Held { messages, frames }
}

/// Runs the limit server for the spec in [`LIMIT_ENV`]; prints `serving on ADDR` when it
/// listens and serves until killed.
pub fn serve(spec: &str) -> ! {
    let mut parts = spec.split('\t');
    let (path, ns, agent) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let held = Arc::new(load(path, ns, agent));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!(
            "limit server: {} events held; serving on {}",
            held.messages.len(),
            listener.local_addr().unwrap()
        );
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .initial_stream_window_size(Some(4 * 1024 * 1024))
            .initial_connection_window_size(Some(8 * 1024 * 1024))
            .add_service(Limit::<false>(held.clone()))
            .add_service(Limit::<true>(held))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    std::process::exit(0)
}

/// Hands out held messages in order, each a reference-counted clone.
struct HeldStream {
    held: Arc<Held>,
    frames: bool,
    next: usize,
}

impl Stream for HeldStream {
    type Item = Result<Bytes, Status>;
    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let list = if self.frames {
            &self.held.frames
        } else {
            &self.held.messages
        };
        let item = list.get(self.next).cloned().map(Ok);
        self.next += 1;
        Poll::Ready(item)
    }
}

/// Serves Replay (`SESSION` false) or Session (`SESSION` true) from the held events.
#[derive(Clone)]
struct Limit<const SESSION: bool>(Arc<Held>);

impl NamedService for Limit<false> {
    const NAME: &'static str = "statehouse.v1.StatehouseService";
}

impl NamedService for Limit<true> {
    const NAME: &'static str = "replayscope.v1.ReplayService";
}

impl<const SESSION: bool> Service<http::Request<Body>> for Limit<SESSION> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let held = self.0.clone();
        Box::pin(async move {
            Ok(if SESSION {
                let mut grpc = Grpc::new(WireCodec::<Bytes, pb::ClientFrame>::default());
                grpc.streaming(Limit::<true>(held), req).await
            } else {
                let mut grpc = Grpc::new(WireCodec::<Bytes, ReplayRequest>::default());
                grpc.server_streaming(Limit::<false>(held), req).await
            })
        })
    }
}

impl ServerStreamingService<ReplayRequest> for Limit<false> {
    type Response = Bytes;
    type ResponseStream = HeldStream;
    type Future = BoxFuture<Response<HeldStream>, Status>;

    fn call(&mut self, _request: Request<ReplayRequest>) -> Self::Future {
        let held = self.0.clone();
        Box::pin(async move {
            Ok(Response::new(HeldStream {
                held,
                frames: false,
                next: 0,
            }))
        })
    }
}

impl StreamingService<pb::ClientFrame> for Limit<true> {
    type Response = Bytes;
    type ResponseStream = HeldStream;
    type Future = BoxFuture<Response<HeldStream>, Status>;

    fn call(&mut self, request: Request<Streaming<pb::ClientFrame>>) -> Self::Future {
        let held = self.0.clone();
        Box::pin(async move {
            // The Open and the acks are read and dropped: every event is sent at once.
            let mut frames = request.into_inner();
            tokio::spawn(async move { while let Ok(Some(_)) = frames.message().await {} });
            Ok(Response::new(HeldStream {
                held,
                frames: true,
                next: 0,
            }))
        })
    }
}
