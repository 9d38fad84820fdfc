//! The response body of the proxy: an upstream's streamed body, a small fixed one, or
//! nothing, without boxing a trait object per request.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::BoxError;
use super::deadline::Deadline;
use super::h2_send;
use super::pool::PooledBody;
use super::relay::RelayBody;
use super::service::UpBody;

/// The body of every response the proxy sends.
pub struct Body(Kind);

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream(PooledBody<UpBody>, Stall),
    Relay(RelayBody, Stall),
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

    /// An upstream's response body, streamed; cut when no data comes for `limit`.
    pub(crate) fn upstream(body: PooledBody<UpBody>, limit: Duration) -> Self {
        h2_send::body_made();
        Body(Kind::Upstream(body, Stall::new(limit)))
    }

    /// An upstream's response body read by the general path's own exchange (`relay`); cut
    /// when no data comes for `limit`.
    pub(crate) fn relay(body: RelayBody, limit: Duration) -> Self {
        h2_send::body_made();
        Body(Kind::Relay(body, Stall::new(limit)))
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
            Kind::Upstream(..) => "Body::Upstream",
            Kind::Relay(..) => "Body::Relay",
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
            Kind::Upstream(b, stall) => stall.poll(Pin::new(b), cx),
            Kind::Relay(b, stall) => stall.poll(Pin::new(b), cx),
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Upstream(b, _) => b.is_end_stream(),
            Kind::Relay(b, _) => b.is_end_stream(),
            Kind::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream(b, _) => b.size_hint(),
            Kind::Relay(b, _) => b.size_hint(),
            Kind::Boxed(b) => b.size_hint(),
        }
    }
}

/// How long a streamed body may go without data: an upstream's response body (nginx's
/// `proxy_read_timeout`) or a client's request body (`client_body_timeout`). The timer is made
/// only when the body first has to wait, so a body that arrived with its head costs nothing.
pub(crate) struct Stall {
    limit: Duration,
    deadline: Option<Deadline>,
}

impl Stall {
    /// A watch on a body that has not started waiting yet.
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            deadline: None,
        }
    }

    /// Polls an upstream body, cutting it once it has waited longer than the limit.
    fn poll<B>(
        &mut self,
        body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: HttpBody<Data = Bytes, Error: std::error::Error + Send + Sync + 'static>,
    {
        let polled = body.poll_frame(cx);
        h2_send::body_polled(polled.is_pending());
        // Dropped unfinished, the upstream connection closes, never pooled.
        if self.stalled(&polled, cx) {
            return Poll::Ready(Some(Err(Box::new(BodyStalled(self.limit)))));
        }
        polled.map_err(|e| Box::new(e) as BoxError)
    }

    /// Notes one poll of the body: whether it has now waited longer than the limit.
    pub(crate) fn stalled<T, E>(
        &mut self,
        polled: &Poll<Option<Result<T, E>>>,
        cx: &mut Context<'_>,
    ) -> bool {
        match polled {
            Poll::Ready(Some(Ok(_))) => {
                self.progressed();
                false
            }
            Poll::Pending => self.expired(cx),
            Poll::Ready(_) => false,
        }
    }

    /// The limit this watch enforces.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// A piece of the body arrived.
    pub(crate) fn progressed(&mut self) {
        if let Some(d) = &mut self.deadline {
            d.set(tokio::time::Instant::now() + self.limit);
        }
    }

    /// The body has to wait: whether it has waited longer than the limit.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        self.deadline
            .get_or_insert_with(|| Deadline::new(tokio::time::Instant::now() + limit, limit))
            .poll_expired(cx)
            .is_ready()
    }
}

/// An upstream that sent no body data within `--upstream-response-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing of the response body for {0:?}")]
struct BodyStalled(Duration);

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// Polls `expired` once, as `poll_frame` does when the body has to wait.
    fn expired(s: &mut Stall) -> bool {
        s.expired(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_arriving_never_expires_and_one_that_stops_does() {
        let limit = Duration::from_secs(10);
        let mut s = Stall::new(limit);
        assert!(!expired(&mut s), "armed at the first wait");
        // A piece every 6 s: 30 s in all, never 10 s without one.
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(6)).await;
            assert!(!expired(&mut s));
            s.progressed();
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!expired(&mut s), "9 s since the last piece");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(expired(&mut s), "11 s since the last piece");
    }

    #[test]
    fn a_body_that_never_waits_makes_no_timer() {
        let mut s = Stall::new(Duration::from_secs(1));
        s.progressed();
        assert!(s.deadline.is_none());
    }
}
