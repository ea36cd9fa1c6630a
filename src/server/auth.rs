//! Bearer-token access control: wraps a gRPC service so that every call must carry
//! `authorization: Bearer <token>`. The comparison is constant-time (BLAKE3 digests compared
//! with a constant-time equality), and the token never reaches a log line.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use super::metrics::Metrics;

/// The expected token, kept only as its digest.
#[derive(Clone)]
pub struct Token(blake3::Hash);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Surrounding whitespace (a trailing newline in a token file) is not part of the token.
    pub fn new(token: &str) -> Option<Token> {
        let t = token.trim();
        (!t.is_empty()).then(|| Token(blake3::hash(t.as_bytes())))
    }

    /// True when `header` is `Bearer <token>` with the right token.
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(h) = header else { return false };
        let Some(given) = h
            .strip_prefix(b"Bearer ")
            .or_else(|| h.strip_prefix(b"bearer "))
        else {
            return false;
        };
        // blake3::Hash's equality is constant-time.
        blake3::hash(given.trim_ascii()) == self.0
    }
}

/// A service that rejects calls without the right token with UNAUTHENTICATED.
#[derive(Clone)]
pub struct RequireToken<S> {
    inner: S,
    token: Option<Token>,
    metrics: Arc<Metrics>,
}

impl<S> RequireToken<S> {
    pub fn new(inner: S, token: Option<Token>, metrics: Arc<Metrics>) -> Self {
        RequireToken {
            inner,
            token,
            metrics,
        }
    }
}

impl<S: NamedService> NamedService for RequireToken<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for RequireToken<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if let Some(token) = &self.token {
            let mut headers = req.headers().get_all(http::header::AUTHORIZATION).iter();
            let header = headers.next().map(|v| v.as_bytes());
            // Exactly one: with two, which one a proxy or another server would check is anyone's
            // guess.
            let repeated = headers.next().is_some();
            if repeated || !token.accepts(header) {
                let reason = if repeated {
                    "more than one authorization header: send exactly one `authorization: Bearer <token>`"
                } else if header.is_none() {
                    "missing authorization header: this server requires `authorization: Bearer <token>`"
                } else {
                    "wrong token: the `authorization: Bearer <token>` header does not match the server's token"
                };
                tracing::warn!(path = %req.uri().path(), reason, "call rejected");
                self.metrics.error(tonic::Code::Unauthenticated);
                let status = tonic::Status::unauthenticated(reason);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        // Take the service that was polled ready, leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_token() {
        let t = Token::new("s3cret\n").unwrap();
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Bearer s3cret2")));
        assert!(!t.accepts(Some(b"s3cret")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(None));
        assert!(Token::new("  \n").is_none());
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}
