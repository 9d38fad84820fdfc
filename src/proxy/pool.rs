//! The upstream connection pool: idle HTTP/1.1 connections per endpoint, shared by every
//! request. A checked-out connection is driven by the request task that holds it, so a
//! proxied request costs no connection task, no cross-task hand-off and no spawned task;
//! the connection goes back to the pool when its response body has been read to the end.
//! Upgrade requests (WebSockets) get a fresh connection of their own, never pooled.
//! The same pool keeps the plain sockets of the HTTP/1.1 fast path (`super::h1`).

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, Once, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where a pooled connection goes: an endpoint address, or `host:port` resolved by DNS
/// (ExternalName Services).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// A ready endpoint.
    Addr(SocketAddr),
    /// `host:port`, resolved at connect time.
    Name(Arc<str>),
}

/// Why a request could not be exchanged with the upstream.
#[derive(Debug)]
pub(crate) enum SendError<B> {
    /// No connection could be opened; nothing was sent and the request is handed back.
    Connect(io::Error, Box<Request<B>>),
    /// The request was (maybe partly) sent and the exchange failed.
    Upstream(hyper::Error),
}

type Io = TokioIo<TcpStream>;

/// What a request body sent upstream must be.
pub(crate) trait ReqBody:
    HttpBody<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<T> ReqBody for T where
    T: HttpBody<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// A connection that can wait in the pool.
pub(crate) trait Pooled: Send + 'static {
    /// Lets the connection see what arrived while it idled; false once it cannot be reused.
    fn alive(&mut self, cx: &mut Context<'_>) -> bool;
}

impl<B: ReqBody> Pooled for Conn<B> {
    fn alive(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx)
    }
}

impl Pooled for TcpStream {
    /// An idle socket is reusable while nothing (no bytes, no end of stream) has arrived.
    fn alive(&mut self, cx: &mut Context<'_>) -> bool {
        match self.poll_read_ready(cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be left over from the last read: look without taking anything.
            Poll::Ready(Ok(())) => matches!(
                self.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }
}

/// The pool of hyper client connections of the general request path.
pub(crate) type HttpPool<B> = Pool<Conn<B>>;

/// One upstream HTTP/1.1 connection: the request sender and the connection state machine,
/// which whoever holds the connection drives.
pub(crate) struct Conn<B: ReqBody> {
    tx: http1::SendRequest<B>,
    /// `None` once the connection has ended (closed by either side, or failed).
    conn: Option<Pin<Box<http1::Connection<Io, B>>>>,
}

impl<B: ReqBody> Conn<B> {
    /// Lets the connection read and write; false once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(c) = self.conn.as_mut()
            && let Poll::Ready(r) = c.as_mut().poll(cx)
        {
            if let Err(e) = r {
                tracing::debug!(error = %e, "upstream connection failed");
            }
            self.conn = None;
        }
        self.conn.is_some()
    }

    /// Drives the connection until it takes a request; false when it has ended instead.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            let alive = self.drive(cx);
            match self.tx.poll_ready(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(alive),
                Poll::Ready(Err(_)) => Poll::Ready(false),
                Poll::Pending if !alive => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Idle upstream connections by endpoint, and how to open new ones.
pub(crate) struct Pool<C> {
    /// Keyed by endpoint; foldhash, as the route table (keys come from configuration).
    idle: Mutex<HashMap<Key, Vec<Idle<C>>, foldhash::fast::RandomState>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    reaper: Once,
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<C: Pooled> Pool<C> {
    /// An empty pool; idle connections are closed after `idle_timeout`.
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Pool {
            idle: Mutex::new(HashMap::default()),
            connect_timeout,
            idle_timeout,
            reaper: Once::new(),
        })
    }

    /// The most recently used idle connection to `key` that has not idled out or closed.
    pub(crate) fn checkout(&self, key: &Key) -> Option<C> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some(mut i) = list.pop() {
            if i.since.elapsed() < self.idle_timeout && i.conn.alive(&mut cx) {
                return Some(i.conn);
            }
        }
        None
    }

    /// Returns a connection whose exchange has finished; it waits for the next request.
    pub(crate) fn checkin(self: &Arc<Self>, key: Key, conn: C) {
        self.reaper.call_once(|| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(self)));
            }
        });
        let idle = Idle {
            conn,
            since: Instant::now(),
        };
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .push(idle);
    }

    /// A new TCP connection (Nagle off) within the connect timeout.
    pub(crate) async fn open(&self, key: &Key) -> io::Result<TcpStream> {
        let stream = match key {
            Key::Addr(a) => self.connect_addr(*a).await?,
            Key::Name(name) => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                let mut found = None;
                for a in tokio::net::lookup_host(&**name).await? {
                    match self.connect_addr(a).await {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                found.ok_or(last)?
            }
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn connect_addr(&self, a: SocketAddr) -> io::Result<TcpStream> {
        match tokio::time::timeout(self.connect_timeout, TcpStream::connect(a)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// Closes connections that idled out or were closed by the upstream.
    fn sweep(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain_mut(|i| i.since.elapsed() < self.idle_timeout && i.conn.alive(&mut cx));
            !list.is_empty()
        });
    }
}

impl<B: ReqBody> Pool<Conn<B>> {
    /// Sends `req` (origin-form URI, Host set) to `key` on an idle connection, else a new
    /// one. A pooled connection that turns out closed before the request left is skipped.
    /// `upgrade` requests get a connection of their own that may become a tunnel.
    pub(crate) async fn send(
        self: &Arc<Self>,
        key: &Key,
        mut req: Request<B>,
        upgrade: bool,
    ) -> Result<Response<PooledBody<B>>, SendError<B>> {
        // The rare paths are boxed so that the future of every request stays small.
        if upgrade {
            return Box::pin(self.send_upgrade(key, req)).await;
        }
        loop {
            let (mut c, fresh) = match self.checkout(key) {
                Some(c) => (c, false),
                None => match Box::pin(self.connect(key)).await {
                    Ok(c) => (c, true),
                    Err(e) => return Err(SendError::Connect(e, Box::new(req))),
                },
            };
            if !c.ready().await {
                if fresh {
                    let e = io::Error::new(io::ErrorKind::ConnectionReset, "closed at once");
                    return Err(SendError::Connect(e, Box::new(req)));
                }
                continue;
            }
            let mut sent = pin!(c.tx.try_send_request(req));
            let res = poll_fn(|cx| {
                c.drive(cx);
                sent.as_mut().poll(cx)
            })
            .await;
            match res {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = PooledBody {
                        body,
                        conn: Some(c),
                        pool: Arc::downgrade(self),
                        key: key.clone(),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request left: try another.
                    Some(r) if !fresh => req = r,
                    _ => return Err(SendError::Upstream(e.into_error())),
                },
            }
        }
    }

    async fn send_upgrade(
        self: &Arc<Self>,
        key: &Key,
        req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, SendError<B>> {
        let stream = match self.open(key).await {
            Ok(s) => s,
            Err(e) => return Err(SendError::Connect(e, Box::new(req))),
        };
        let (mut tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Upstream)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection failed");
            }
        });
        let resp = tx.send_request(req).await.map_err(SendError::Upstream)?;
        let (parts, body) = resp.into_parts();
        let body = PooledBody {
            body,
            conn: None,
            pool: Weak::new(),
            key: key.clone(),
        };
        Ok(Response::from_parts(parts, body))
    }

    async fn connect(&self, key: &Key) -> io::Result<Conn<B>> {
        let stream = self.open(key).await?;
        let (tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        Ok(Conn {
            tx,
            conn: Some(Box::pin(conn)),
        })
    }
}

/// Sweeps the pool every few seconds until it is dropped.
async fn reap<C: Pooled>(pool: Weak<Pool<C>>) {
    let every = pool
        .upgrade()
        .map(|p| (p.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5)))
        .unwrap_or_default();
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(p) => p.sweep(),
            None => return,
        }
    }
}

/// A response body from upstream. It drives its connection while it streams and hands the
/// connection back to the pool once read to the end; dropped early, it closes it.
pub(crate) struct PooledBody<B: ReqBody> {
    body: Incoming,
    conn: Option<Conn<B>>,
    pool: Weak<Pool<Conn<B>>>,
    key: Key,
}

impl<B: ReqBody> PooledBody<B> {
    /// The exchange is over: pool the connection if it can take the next request, else let
    /// it finish on its own (a request body still being sent) or close it.
    fn release(&mut self, cx: &mut Context<'_>) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if !c.drive(cx) {
            return;
        }
        match c.tx.poll_ready(cx) {
            Poll::Ready(Ok(())) => pool.checkin(self.key.clone(), c),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => {
                let key = self.key.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if c.ready().await {
                            pool.checkin(key, c);
                        }
                    });
                }
            }
        }
    }
}

impl<B: ReqBody> HttpBody for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(c) = this.conn.as_mut()
            && !c.drive(cx)
        {
            this.conn = None;
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(cx),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: ReqBody> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // A complete body that was never polled to its end (a response without content)
        // still returns its connection; anything else closes it.
        if self.conn.is_some() && self.body.is_end_stream() {
            self.release(&mut Context::from_waker(Waker::noop()));
        }
    }
}

impl<B: ReqBody> std::fmt::Debug for PooledBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
