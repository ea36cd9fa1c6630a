//! The tonic services of `replayscope.v1.ReplayService`: routing of `Session` (one
//! [`session`](super::session) actor per stream) and `Describe` (what the source holds), with
//! the pass-through codecs of [`crate::wire::codec`].

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

use super::ServerContext;
use super::session;
use crate::wire::codec::{OutFrame, WireCodec};
use crate::wire::proto::replayscope::v1 as pb;

#[derive(Clone)]
pub struct ReplayServer {
    shared: Arc<ServerContext>,
}

impl ReplayServer {
    pub(super) fn new(shared: Arc<ServerContext>) -> Self {
        ReplayServer { shared }
    }
}

impl NamedService for ReplayServer {
    const NAME: &'static str = "replayscope.v1.ReplayService";
}

impl Service<http::Request<Body>> for ReplayServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        match req.uri().path() {
            "/replayscope.v1.ReplayService/Session" => Box::pin(async move {
                let mut grpc = Grpc::new(WireCodec::<OutFrame, pb::ClientFrame>::default());
                Ok(grpc.streaming(SessionSvc(shared), req).await)
            }),
            "/replayscope.v1.ReplayService/Describe" => Box::pin(async move {
                let mut grpc =
                    Grpc::new(WireCodec::<pb::ArchiveInfo, pb::DescribeRequest>::default());
                Ok(grpc.unary(DescribeSvc(shared), req).await)
            }),
            path => {
                let status = Status::unimplemented(format!(
                    "{path} is not a method of replayscope.v1.ReplayService (Session, Describe)"
                ));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

struct DescribeSvc(Arc<ServerContext>);

impl UnaryService<pb::DescribeRequest> for DescribeSvc {
    type Response = pb::ArchiveInfo;
    type Future = BoxFuture<Response<pb::ArchiveInfo>, Status>;

    fn call(&mut self, _request: Request<pb::DescribeRequest>) -> Self::Future {
        let info = self.0.describe_now();
        Box::pin(async move { Ok(Response::new(info)) })
    }
}

struct SessionSvc(Arc<ServerContext>);

/// The response stream: frames the session task produces.
pub struct FrameStream(mpsc::Receiver<Result<OutFrame, Status>>);

impl Stream for FrameStream {
    type Item = Result<OutFrame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

impl StreamingService<pb::ClientFrame> for SessionSvc {
    type Response = OutFrame;
    type ResponseStream = FrameStream;
    type Future = BoxFuture<Response<FrameStream>, Status>;

    fn call(&mut self, request: Request<Streaming<pb::ClientFrame>>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(16);
            let peer = request.remote_addr();
            tokio::spawn(session::run(shared, request.into_inner(), tx, peer));
            Ok(Response::new(FrameStream(rx)))
        })
    }
}
