//! Every way a proxied request can fail, and the one place failures become HTTP responses.

use bytes::Bytes;
use http::{Response, StatusCode, header};

use super::Body;

/// Who failed and how; decides the status code, and whether a retry would be safe.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client sent something unusable (bad Host, dot-segments in the path).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The client sent nothing of its request body for `--client-body-timeout`.
    #[error("client request body timed out")]
    ClientTimeout,
    /// The request body is over `--max-request-body-bytes`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The request uses a transfer coding other than `chunked` alone.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// Host and SNI would select different certificates.
    #[error("misdirected request: host is served with another certificate than this connection")]
    Misdirected,
    /// No rule and no default backend match.
    #[error("no route")]
    NoRoute,
    /// The backend has no ready endpoints, or the Service or port is missing.
    #[error("backend unavailable: {0}")]
    Unavailable(&'static str),
    /// No endpoint accepted a connection (nothing was sent, a retry was safe and was tried).
    #[error("upstream connect failed: {0}")]
    Connect(#[source] std::io::Error),
    /// The upstream failed after the request was sent.
    #[error("upstream request failed: {0}")]
    Upstream(#[source] hyper::Error),
    /// The upstream closed without answering, or its answer cannot be relayed.
    #[error("upstream response unusable: {0}")]
    UpstreamResponse(&'static str),
    /// The upstream did not answer within the response timeout.
    #[error("upstream timed out")]
    Timeout,
}

impl ProxyError {
    /// The status code the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::Upstream(_) | ProxyError::UpstreamResponse(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the fault lies with the client rather than the upstream or us.
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }

    /// Whether the client connection is closed after this answer: after a malformed request,
    /// nothing later on the connection can be trusted to be framed as the client meant.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::ClientTimeout
                | ProxyError::BodyTooLarge
                | ProxyError::NotImplemented(_)
        )
    }

    /// The small plain-text response for this error.
    pub fn into_response(&self) -> Response<Body> {
        error_response(self.status())
    }
}

/// A small plain-text response with the status line as its body.
pub fn error_response(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(Body::full(Bytes::from(text)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
