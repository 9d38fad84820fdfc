//! The response body of the proxy: an upstream's streamed body, a small fixed one, or
//! nothing, without boxing a trait object per request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::BoxError;
use super::pool::PooledBody;
use super::service::UpBody;

/// The body of every response the proxy sends.
pub struct Body(Kind);

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream(PooledBody<UpBody>),
    Boxed(BoxBody<Bytes, BoxError>),
}

impl Body {
    /// No content.
    pub fn empty() -> Self {
        Body(Kind::Empty)
    }

    /// A body of the given bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Body(Kind::Full((!data.is_empty()).then_some(data)))
    }

    /// An upstream's response body, streamed.
    pub(crate) fn upstream(body: PooledBody<UpBody>) -> Self {
        Body(Kind::Upstream(body))
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl From<BoxBody<Bytes, BoxError>> for Body {
    fn from(b: BoxBody<Bytes, BoxError>) -> Self {
        Body(Kind::Boxed(b))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Empty => "Body::Empty",
            Kind::Full(_) => "Body::Full",
            Kind::Upstream(_) => "Body::Upstream",
            Kind::Boxed(_) => "Body::Boxed",
        })
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream(b) => Pin::new(b).poll_frame(cx),
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream(b) => b.size_hint(),
            Kind::Boxed(b) => b.size_hint(),
        }
    }
}
