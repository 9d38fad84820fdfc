//! Accept loops for the HTTP and HTTPS listeners: the connection cap, the TLS handshake
//! timeout, the request-head and keep-alive idle timeouts, and graceful draining on shutdown.
//!
//! hyper alone leaves gaps: its HTTP/1 header timer also runs while a keep-alive connection
//! idles (so one flag would govern both), and nothing bounds a plain-HTTP connection that
//! never completes its first 24 bytes (hyper-util's protocol sniffing has no timer). Each
//! connection therefore gets a watchdog fed by its socket's reads and by request starts and
//! ends: a request head must arrive within `--client-header-timeout` of its first byte (or
//! of the connection's start), and a connection with no request in flight is closed after
//! `--keepalive-timeout` (HTTP/2 with a GOAWAY).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::deadline::Deadline;
use super::h2_send::StreamExecutor;
use super::service::ConnInfo;
use super::{Body, BoxError, Proxy, h1};
use crate::telemetry::ListenerLabel;

/// Serves plain HTTP (HTTP/1.1, and h2c with prior knowledge) until `shutdown`, then lets
/// open requests finish for at most `grace`.
pub async fn serve_http(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
) {
    serve(proxy, listener, None, shutdown, grace).await
}

/// Serves HTTPS (ALPN h2 and http/1.1) until `shutdown`, then drains for at most `grace`.
pub async fn serve_https(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    serve(
        proxy,
        listener,
        Some(TlsAcceptor::from(tls)),
        shutdown,
        grace,
    )
    .await
}

async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let label = ListenerLabel {
        listener: if tls.is_some() { "https" } else { "http" },
    };
    let builders = Arc::new(Builders::new(&proxy));
    // Over the cap, connections wait in the kernel's accept queue until a slot frees.
    let slots = Arc::new(Semaphore::new(
        proxy
            .config
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS),
    ));
    let drain = CancellationToken::new();
    let tracker = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gauge = proxy.metrics.open_connections.get_or_create_owned(&label);
        gauge.inc();
        let activity = Arc::new(Activity::new());
        let stream = Tracked {
            inner: stream,
            activity: activity.clone(),
            send: SendWatch::new(proxy.config.client_send_timeout),
            _slot: slot,
            _gauge: GaugeGuard(gauge),
        };
        let conn = Conn {
            proxy: proxy.clone(),
            builders: builders.clone(),
            activity,
            drain: drain.clone(),
            peer,
            local_port,
        };
        // Boxed: the connection's future is several KiB, and tokio moves a task's future by
        // value as it starts and ends it; a pointer is cheap to move.
        tracker.spawn(Box::pin(conn.serve(tls.clone(), stream)));
    }
    drop(listener);
    tracker.close();
    drain.cancel();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            listener = label.listener,
            "grace period over; closing remaining connections"
        );
    }
}

/// hyper builders: protocol sniffing (plain HTTP, TLS with ALPN `http/1.1` or none), and
/// HTTP/2 only when ALPN chose `h2` (an invalid preface is then closed, not read as HTTP/1).
struct Builders {
    any: auto::Builder<StreamExecutor>,
    h2: auto::Builder<StreamExecutor>,
}

impl Builders {
    fn new(proxy: &Proxy) -> Self {
        let any = builder(proxy);
        Builders {
            h2: any.clone().http2_only(),
            any,
        }
    }
}

fn builder(proxy: &Proxy) -> auto::Builder<StreamExecutor> {
    let cfg = &proxy.config;
    let mut b = auto::Builder::new(StreamExecutor::new(cfg.client_send_timeout));
    b.http1()
        .timer(TokioTimer::new())
        // The watchdog enforces both timeouts precisely; hyper's own timer is a backstop.
        .header_read_timeout(cfg.client_header_timeout.max(cfg.keepalive_timeout))
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(cfg.max_concurrent_streams)
        // Rapid reset (CVE-2023-44487) and local-error floods: set explicitly, not by default.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// One accepted client connection and what serving it needs.
struct Conn {
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    activity: Arc<Activity>,
    drain: CancellationToken,
    peer: SocketAddr,
    local_port: u16,
}

impl Conn {
    async fn serve(self, tls: Option<TlsAcceptor>, stream: Tracked<TcpStream>) {
        let mut info = ConnInfo {
            peer: self.peer,
            local_port: self.local_port,
            sni: None,
            tls: tls.is_some(),
        };
        match tls {
            None => self.http(info, None, stream).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout(
                    self.proxy.config.tls_handshake_timeout,
                    acceptor.accept(stream),
                );
                let stream = tokio::select! {
                    _ = self.drain.cancelled() => return,
                    done = handshake => match done {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                            return;
                        }
                    },
                };
                info.sni = stream.get_ref().1.server_name().map(str::to_owned);
                let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                // A TLS-ALPN-01 validation ends with the handshake: never HTTP, never a backend.
                if alpn.as_deref() == Some(b"acme-tls/1") {
                    return;
                }
                self.activity.restart();
                self.http(info, alpn, stream).await
            }
        }
    }

    /// Serves HTTP on an established stream until it closes, times out or drains.
    async fn http<S>(self, info: ConnInfo, alpn: Option<Vec<u8>>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // HTTP/1.1 requests take the fast path for as long as they suit it.
        let (stream, prefix) = if alpn.as_deref() == Some(b"h2") {
            (stream, Bytes::new())
        } else {
            match h1::serve(&self.proxy, &info, stream, &self.drain).await {
                h1::End::Closed => return,
                h1::End::HandOff(stream, prefix) => {
                    self.activity.restart();
                    (stream, prefix)
                }
            }
        };
        let stream = h1::Prefixed::new(prefix, stream);
        let info = Arc::new(info);
        let (proxy, activity) = (self.proxy.clone(), self.activity.clone());
        let svc = service_fn(move |req: Request<Incoming>| {
            let (proxy, info) = (proxy.clone(), info.clone());
            let request = activity.begin(req.version());
            async move {
                let resp = proxy.handle(req, &info).await;
                Ok::<_, Infallible>(resp.map(|body| TrackedBody {
                    inner: body,
                    _request: request,
                }))
            }
        });
        let io = TokioIo::new(stream);
        if alpn.as_deref() == Some(b"h2") {
            // Without upgrades: hyper-util honours `http2_only` only on this path.
            let conn = self.builders.h2.serve_connection(io, svc);
            self.drive(conn, |c| c.graceful_shutdown()).await
        } else {
            let conn = self.builders.any.serve_connection_with_upgrades(io, svc);
            self.drive(conn, |c| c.graceful_shutdown()).await
        }
    }

    /// Polls a connection until it ends, drains, or runs into a timeout.
    async fn drive<C: Future>(&self, conn: C, graceful: impl Fn(Pin<&mut C>)) {
        let cfg = &self.proxy.config;
        tokio::pin!(conn);
        // Set once the connection is asked to finish: by shutdown, or when an HTTP/2 connection
        // idles out (GOAWAY, then a bounded wait for the client to go).
        let mut closing = false;
        let mut hard_deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = self.drain.cancelled(), if !closing => {
                    closing = true;
                    graceful(conn.as_mut());
                }
                expired = self.activity.expired(cfg.client_header_timeout, cfg.keepalive_timeout), if !closing => {
                    match expired {
                        Expiry::Idle if self.activity.h2.load(Ordering::Relaxed) => {
                            tracing::debug!(peer = %self.peer, "HTTP/2 connection idle; GOAWAY");
                            closing = true;
                            hard_deadline = Some(Instant::now() + cfg.client_header_timeout);
                            graceful(conn.as_mut());
                        }
                        Expiry::Idle => {
                            tracing::debug!(peer = %self.peer, "keep-alive connection idle; closing");
                            break;
                        }
                        Expiry::Head => {
                            tracing::debug!(peer = %self.peer, "request head not received in time; closing");
                            break;
                        }
                    }
                }
                _ = sleep_until(hard_deadline), if hard_deadline.is_some() => break,
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Which timeout a connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A request head was started (or the connection opened) and not finished in time.
    Head,
    /// No request was in flight for the keep-alive timeout.
    Idle,
}

/// What the watchdog of one connection knows: requests in flight, and since when the
/// connection has been idle or reading a request head.
struct Activity {
    /// Requests whose response has not been fully sent (or dropped).
    in_flight: AtomicUsize,
    /// Bytes arrived while no request was in flight: a request head is being received.
    reading_head: AtomicBool,
    /// The connection speaks HTTP/2: reads between requests are frames, not a new head.
    h2: AtomicBool,
    /// When `reading_head` was set, or when the connection last became idle.
    since: Mutex<Instant>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            // A new connection owes its first request head.
            reading_head: AtomicBool::new(true),
            h2: AtomicBool::new(false),
            since: Mutex::new(Instant::now()),
            changed: Notify::new(),
        }
    }

    /// The first request head is owed from now (after the TLS handshake).
    fn restart(&self) {
        self.reading_head.store(true, Ordering::Relaxed);
        self.mark();
    }

    fn mark(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.changed.notify_one();
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.h2.load(Ordering::Relaxed)
            && !self.reading_head.load(Ordering::Relaxed)
            && !self.reading_head.swap(true, Ordering::AcqRel)
        {
            self.mark();
        }
    }

    /// A request head was received; the returned guard ends the request when dropped.
    fn begin(self: &Arc<Self>, version: Version) -> RequestGuard {
        if version == Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reading_head.store(false, Ordering::Release);
        // With requests already in flight no deadline runs: nothing for the watchdog to redo.
        if before == 0 {
            self.changed.notify_one();
        }
        RequestGuard(self.clone())
    }

    fn deadline(&self, head: Duration, idle: Duration) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        Some(if self.reading_head.load(Ordering::Acquire) {
            (since + head, Expiry::Head)
        } else {
            (since + idle, Expiry::Idle)
        })
    }

    /// Resolves when the connection has exceeded a timeout; re-arms on every change.
    async fn expired(&self, head: Duration, idle: Duration) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.deadline(head, idle) {
                None => changed.await,
                Some((at, why)) => {
                    if at <= Instant::now() {
                        return why;
                    }
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }
}

/// Ends one request's part in the connection's activity when its response is done.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark();
        }
    }
}

/// A response body that ends its request when hyper has sent (or dropped) it.
struct TrackedBody {
    inner: Body,
    _request: RequestGuard,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Decrements the open-connections gauge when the socket is closed.
struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A client socket that reports arriving bytes to its connection's watchdog, fails writes the
/// client has not made room for within `--client-send-timeout`, and holds its
/// `--max-connections` slot until it is closed (after any upgrade tunnel, too). Below TLS and
/// under every protocol, so one rule covers both request paths, HTTP/2 and upgrade tunnels.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    send: SendWatch,
    _slot: OwnedSemaphorePermit,
    _gauge: GaugeGuard,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.send.watch(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.send.watch(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.send.watch(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long writes to a client may wait for it to read (nginx's `send_timeout`): counted from
/// the first write that could not go out, restarted by any that did. The timer is made the
/// first time a write has to wait, so a client that keeps up costs nothing.
struct SendWatch {
    limit: Duration,
    deadline: Option<Deadline>,
    /// The last write had to wait: the deadline runs.
    waiting: bool,
}

impl SendWatch {
    fn new(limit: Duration) -> Self {
        SendWatch {
            limit,
            deadline: None,
            waiting: false,
        }
    }

    /// Passes a write's outcome on, or a timeout once writes have waited longer than the limit.
    fn watch<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        let limit = self.limit;
        let at = Instant::now() + limit;
        let deadline = match &mut self.deadline {
            Some(d) => {
                if !self.waiting {
                    d.set(at);
                }
                d
            }
            None => self.deadline.insert(Deadline::new(at, limit)),
        };
        self.waiting = true;
        if deadline.poll_expired(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for --client-send-timeout",
            )));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(5);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_owes_its_head_within_the_header_timeout() {
        let a = Activity::new();
        let start = Instant::now();
        assert_eq!(a.expired(HEAD, IDLE).await, Expiry::Head);
        assert_eq!(start.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_lasts_the_keepalive_timeout() {
        let a = Arc::new(Activity::new());
        drop(a.begin(Version::HTTP_11));
        let idle_from = Instant::now();
        assert_eq!(a.expired(HEAD, IDLE).await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_after_idling_starts_the_header_timeout() {
        let a = Arc::new(Activity::new());
        drop(a.begin(Version::HTTP_11));
        tokio::time::sleep(Duration::from_secs(30)).await;
        a.on_read();
        let head_from = Instant::now();
        assert_eq!(a.expired(HEAD, IDLE).await, Expiry::Head);
        assert_eq!(head_from.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_runs_while_a_request_is_in_flight() {
        let a = Arc::new(Activity::new());
        let req = a.begin(Version::HTTP_11);
        let waited = tokio::time::timeout(IDLE * 10, a.expired(HEAD, IDLE)).await;
        assert!(waited.is_err(), "no expiry while in flight");
        drop(req);
        let idle_from = Instant::now();
        assert_eq!(a.expired(HEAD, IDLE).await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_fail_once_they_have_waited_the_send_timeout_and_progress_restarts_it() {
        let limit = Duration::from_secs(10);
        let mut w = SendWatch::new(limit);
        let cx = &mut Context::from_waker(std::task::Waker::noop());
        let mut wait = |w: &mut SendWatch| w.watch(Poll::<io::Result<usize>>::Pending, cx);
        assert!(wait(&mut w).is_pending(), "the first wait arms the timer");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(wait(&mut w).is_pending(), "9 s of waiting");
        // The client read: the next wait counts from its own start.
        let cx2 = &mut Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            w.watch(Poll::Ready(Ok(5)), cx2),
            Poll::Ready(Ok(5))
        ));
        assert!(wait(&mut w).is_pending());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(
            wait(&mut w).is_pending(),
            "9 s since the last write went out"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        match wait(&mut w) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("11 s of waiting: {other:?}"),
        }
    }

    #[test]
    fn a_client_that_keeps_up_makes_no_timer() {
        let mut w = SendWatch::new(Duration::from_secs(1));
        let cx = &mut Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            w.watch(Poll::Ready(Ok(1)), cx),
            Poll::Ready(Ok(1))
        ));
        assert!(w.deadline.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_between_requests_do_not_count_as_a_head() {
        let a = Arc::new(Activity::new());
        drop(a.begin(Version::HTTP_2));
        let idle_from = Instant::now();
        a.on_read();
        assert_eq!(a.expired(HEAD, IDLE).await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
    }
}
