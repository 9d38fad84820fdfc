//! The HTTP/1.1 fast path. The common proxied request — origin-form, HTTP/1.1, no body or a
//! small `Content-Length` body, to a Service with ready endpoints — is parsed (httparse),
//! checked, rewritten and relayed here, over plain upstream sockets, without hyper's
//! per-request machinery; on plain HTTP and on TLS connections that chose HTTP/1.1. Everything
//! else (upgrades, `Transfer-Encoding`, `Expect`, redirects, ACME challenges, 404s, requests to
//! reject, HTTP/1.0, h2c, trusted proxies, a Host with another certificate than the TLS
//! connection's) is handed to the
//! general path together with the bytes read so far, which then serves the rest of the
//! connection. Both paths apply the same rules (ingress-semantics.md section 8).

pub(super) mod chunked;
mod prefixed;

pub(crate) use prefixed::Prefixed;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http::header::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use self::chunked::{Chunked, Scan};
use super::Proxy;
use super::deadline::Deadline;
use super::headers::new_request_id;
use super::pool::Key;
use super::service::{ACME_CHALLENGE_PREFIX, ConnInfo, Served, endpoint_attempts, refused_path};
use crate::routes::{Backend, Route, normalize_request_host};

/// Largest request body read ahead and sent with the head; larger bodies take the general path.
const MAX_BUFFERED_BODY: u64 = 64 * 1024;
/// Most request headers parsed here; more take the general path (which answers 431 over 100).
const MAX_HEADERS: usize = 64;
/// Most headers of an upstream response.
pub(super) const MAX_RESPONSE_HEADERS: usize = 128;
// `ResponseMeta` keeps one bit per response header in a u128.
const _: () = assert!(MAX_RESPONSE_HEADERS <= 128);
/// Largest upstream response head, bytes.
pub(super) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What became of a connection served here.
pub(crate) enum End<S> {
    /// It is closed: by either side, a timeout, a failure or draining.
    Closed,
    /// The general path serves the rest of it, starting with these bytes.
    HandOff(S, Bytes),
}

/// Serves HTTP/1.1 requests on a client connection for as long as they suit this path.
pub(crate) async fn serve<S>(
    proxy: &Proxy,
    conn: &ConnInfo,
    io: S,
    drain: &CancellationToken,
) -> End<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = conn.peer.ip();
    if !proxy.config.http1_fast_path
        || proxy
            .config
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer))
    {
        return End::HandOff(io, Bytes::new());
    }
    let cfg = &proxy.config;
    // The re-arm interval: the shortest timeout (a floor keeps zero timeouts from spinning;
    // a deadline earlier than the armed time still re-arms the timer at once).
    let step = cfg
        .client_header_timeout
        .min(cfg.keepalive_timeout)
        .min(cfg.response_timeout)
        .max(Duration::from_millis(100));
    let proto = if conn.tls { "https" } else { "http" };
    let mut s = Session {
        proxy,
        conn,
        io,
        buf: BytesMut::with_capacity(8 * 1024),
        up: Vec::new(),
        out: Vec::new(),
        from_up: BytesMut::new(),
        forwarded: format!(
            "x-forwarded-for: {peer}\r\nx-forwarded-proto: {proto}\r\nx-forwarded-port: {}\r\nx-real-ip: {peer}\r\n",
            conn.local_port
        )
        .into_bytes(),
        deadline: Deadline::new(Instant::now() + cfg.client_header_timeout, step),
        drained: Box::pin(drain.clone().cancelled_owned()),
        drain,
    };
    let flow = s.run().await;
    s.release();
    match flow {
        Flow::HandOff => End::HandOff(s.io, s.buf.freeze()),
        Flow::Close | Flow::Continue => End::Closed,
    }
}

/// The buffers of one exchange (request upstream, response head out, bytes from upstream).
/// Between requests they wait in a per-thread spare list, so an idle keep-alive connection
/// holds only its read buffer.
struct Buffers {
    up: Vec<u8>,
    out: Vec<u8>,
    from_up: BytesMut,
}

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Buffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most spare buffer sets kept per thread, and the largest `from_up` kept (bytes).
const MAX_SPARE: usize = 256;
const MAX_SPARE_CAPACITY: usize = 128 * 1024;

impl Buffers {
    fn take() -> Self {
        SPARE.with_borrow_mut(Vec::pop).unwrap_or_else(|| Buffers {
            up: Vec::with_capacity(1024),
            out: Vec::with_capacity(1024),
            from_up: BytesMut::with_capacity(16 * 1024),
        })
    }

    fn give_back(mut self) {
        if self.from_up.capacity() == 0 || self.from_up.capacity() > MAX_SPARE_CAPACITY {
            return;
        }
        self.from_up.clear();
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < MAX_SPARE {
                spare.push(self);
            }
        });
    }
}

/// What a connection does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
    HandOff,
}

/// One client connection on the fast path.
struct Session<'a, S> {
    proxy: &'a Proxy,
    conn: &'a ConnInfo,
    io: S,
    /// Bytes from the client not yet consumed.
    buf: BytesMut,
    /// The request as it goes upstream.
    up: Vec<u8>,
    /// The response head as it goes to the client, with the body bytes that came with it.
    out: Vec<u8>,
    /// Bytes from the upstream.
    from_up: BytesMut,
    /// The forwarding headers, the same for every request of the connection.
    forwarded: Vec<u8>,
    deadline: Deadline,
    drained: Pin<Box<WaitForCancellationFutureOwned>>,
    drain: &'a CancellationToken,
}

/// The outcome of one read from the client.
enum Read {
    Data,
    /// End of stream, error, timeout or draining: the connection ends.
    Over,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// Borrows a spare buffer set for an exchange, unless the connection holds one.
    fn lend(&mut self) {
        if self.from_up.capacity() == 0 {
            let b = Buffers::take();
            (self.up, self.out, self.from_up) = (b.up, b.out, b.from_up);
        }
    }

    /// Returns the buffer set to the thread's spares.
    fn release(&mut self) {
        Buffers {
            up: std::mem::take(&mut self.up),
            out: std::mem::take(&mut self.out),
            from_up: std::mem::take(&mut self.from_up),
        }
        .give_back();
    }

    async fn run(&mut self) -> Flow {
        let cfg = &self.proxy.config;
        // After a response: the next head's first byte is awaited for the keep-alive timeout,
        // then the rest of it for the header timeout.
        let mut idle = false;
        let mut head_timer_set = true;
        loop {
            let head = loop {
                if !self.buf.is_empty() {
                    self.lend();
                    match prepare(
                        self.proxy,
                        self.conn,
                        &self.buf,
                        &mut self.up,
                        &self.forwarded,
                    ) {
                        Parsed::Ready(h) => break h,
                        Parsed::HandOff => return Flow::HandOff,
                        Parsed::Partial if self.buf.len() > cfg.max_header_bytes => {
                            return Flow::HandOff;
                        }
                        Parsed::Partial if !head_timer_set => {
                            self.deadline
                                .set(Instant::now() + cfg.client_header_timeout);
                            head_timer_set = true;
                        }
                        Parsed::Partial => {}
                    }
                }
                let between = self.buf.is_empty();
                if between {
                    self.release();
                }
                match self.read_client(between).await {
                    Read::Data => {
                        if idle {
                            idle = false;
                            head_timer_set = false;
                        }
                    }
                    Read::Over => return Flow::Close,
                }
            };
            let start = std::time::Instant::now();
            let need = head.head_len + head.body_len;
            while self.buf.len() < need {
                if !head_timer_set {
                    self.deadline
                        .set(Instant::now() + cfg.client_header_timeout);
                    head_timer_set = true;
                }
                if let Read::Over = self.read_client(false).await {
                    return Flow::Close;
                }
            }
            self.up.extend_from_slice(&self.buf[head.head_len..need]);
            self.buf.advance(need);
            let flow = self.forward(&head, start).await;
            if flow != Flow::Continue || head.close || self.drain.is_cancelled() {
                return Flow::Close;
            }
            idle = true;
            self.deadline.set(Instant::now() + cfg.keepalive_timeout);
        }
    }

    /// Reads more of the client's bytes; between requests, draining ends the wait too.
    async fn read_client(&mut self, between: bool) -> Read {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8 * 1024);
        }
        tokio::select! {
            biased;
            r = self.io.read_buf(&mut self.buf) => match r {
                Ok(n) if n > 0 => Read::Data,
                _ => Read::Over,
            },
            _ = self.deadline.expired() => {
                tracing::debug!(peer = %self.conn.peer, "client timed out; closing");
                Read::Over
            }
            _ = self.drained.as_mut(), if between => Read::Over,
        }
    }

    /// Sends the request to an endpoint and relays the answer.
    async fn forward(&mut self, head: &Head, start: std::time::Instant) -> Flow {
        let cfg = &self.proxy.config;
        let addrs = endpoint_attempts(&head.route.backend);
        if addrs.is_empty() {
            return self
                .answer(head, start, StatusCode::SERVICE_UNAVAILABLE, None)
                .await;
        }
        let mut failure = StatusCode::BAD_GATEWAY;
        let mut last = None;
        // The whole request is at hand: after a failed connect (nothing sent) any request may
        // go to the next endpoint; after an upstream closed without answering, only a bodyless
        // idempotent one.
        for &addr in addrs.iter() {
            last = Some(addr);
            let key = Key::Addr(addr);
            let mut reused = self.proxy.sockets.checkout(&key);
            loop {
                let fresh = reused.is_none();
                let mut sock = match reused.take() {
                    Some(s) => s,
                    None => match self.proxy.sockets.open(&key).await {
                        Ok(s) => s,
                        Err(e) => {
                            self.proxy.connect_failed(&head.route, Some(addr), &e);
                            failure = StatusCode::BAD_GATEWAY;
                            break;
                        }
                    },
                };
                self.deadline.set(Instant::now() + cfg.response_timeout);
                // A pooled connection the upstream closed meanwhile fails the write: nothing
                // was sent, so a new connection may take the request.
                if sock.write_all(&self.up).await.is_err() {
                    if fresh {
                        failure = StatusCode::BAD_GATEWAY;
                        break;
                    }
                    continue;
                }
                match self.response_head(&mut sock, head).await {
                    Upstream::Head(framing) => {
                        return self.relay(sock, framing, head, start, addr).await;
                    }
                    // A pooled connection closed as the request arrived: try a new one.
                    Upstream::Closed if head.retryable && !fresh => continue,
                    Upstream::Closed if head.retryable => {
                        tracing::warn!(upstream = %addr, service = head.route.backend.service(), "upstream closed without a response; trying the next endpoint");
                        failure = StatusCode::BAD_GATEWAY;
                        break;
                    }
                    Upstream::Closed | Upstream::Failed => {
                        return self
                            .answer(head, start, StatusCode::BAD_GATEWAY, Some(addr))
                            .await;
                    }
                    Upstream::Timeout => {
                        return self
                            .answer(head, start, StatusCode::GATEWAY_TIMEOUT, Some(addr))
                            .await;
                    }
                }
            }
        }
        self.answer(head, start, failure, last).await
    }

    /// Reads the upstream's response head and writes the client's into `out`, followed by
    /// the body bytes that came with it.
    async fn response_head(&mut self, sock: &mut TcpStream, head: &Head) -> Upstream {
        self.from_up.clear();
        loop {
            if !self.from_up.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.from_up) {
                    Ok(httparse::Status::Complete(n)) => {
                        let code = resp.code.unwrap_or_default();
                        if (100..200).contains(&code) && code != 101 {
                            // Interim responses (100, 103) are not passed on.
                            self.from_up.advance(n);
                            continue;
                        }
                        let close = head.close || self.drain.is_cancelled();
                        let framing = response_head(&resp, head, close, &mut self.out);
                        self.from_up.advance(n);
                        return match framing {
                            Some(f) => Upstream::Head(f),
                            None => Upstream::Failed,
                        };
                    }
                    Ok(httparse::Status::Partial) if self.from_up.len() <= MAX_RESPONSE_HEAD => {}
                    _ => return Upstream::Failed,
                }
            }
            if self.from_up.capacity() - self.from_up.len() < 4096 {
                self.from_up.reserve(16 * 1024);
            }
            let was_empty = self.from_up.is_empty();
            tokio::select! {
                biased;
                r = sock.read_buf(&mut self.from_up) => match r {
                    Ok(n) if n > 0 => {}
                    Ok(_) | Err(_) if was_empty => return Upstream::Closed,
                    _ => return Upstream::Failed,
                },
                _ = self.deadline.expired() => return Upstream::Timeout,
            }
        }
    }

    /// Sends the response head and body to the client; pools the upstream connection when
    /// the exchange ended cleanly.
    async fn relay(
        &mut self,
        mut sock: TcpStream,
        mut framing: Framing,
        head: &Head,
        start: std::time::Instant,
        addr: std::net::SocketAddr,
    ) -> Flow {
        let cfg = &self.proxy.config;
        // The body bytes that arrived with the head.
        let mut scanner = Chunked::new();
        let (take, done) = match framing.body {
            Body::None => (0, true),
            Body::Length(n) => {
                let take = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(self.from_up.len());
                framing.body = Body::Length(n - take as u64);
                (take, n == take as u64)
            }
            Body::Chunked => match scanner.scan(&self.from_up) {
                Ok(Scan::End(k)) => (k, true),
                Ok(Scan::More) => (self.from_up.len(), false),
                Err(_) => {
                    return self
                        .answer(head, start, StatusCode::BAD_GATEWAY, Some(addr))
                        .await;
                }
            },
            Body::Close => (self.from_up.len(), false),
        };
        if done && take < self.from_up.len() {
            // Bytes after the response: the connection cannot be trusted with another request.
            framing.reusable = false;
        }
        self.out.extend_from_slice(&self.from_up[..take]);
        self.record(head, start, framing.status, Some(addr));
        if self.io.write_all(&self.out).await.is_err() {
            return Flow::Close;
        }
        let mut done = done;
        while !done {
            self.from_up.clear();
            if self.from_up.capacity() < 32 * 1024 {
                self.from_up.reserve(64 * 1024);
            }
            self.deadline.set(Instant::now() + cfg.response_timeout);
            let read = tokio::select! {
                biased;
                r = sock.read_buf(&mut self.from_up) => r.unwrap_or(0),
                _ = self.deadline.expired() => 0,
            };
            if read == 0 {
                // End of a close-delimited body; anything else was cut short.
                if matches!(framing.body, Body::Close) {
                    let _ = self.io.flush().await;
                }
                return Flow::Close;
            }
            let take = match framing.body {
                Body::Length(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(read);
                    framing.body = Body::Length(n - take as u64);
                    done = n == take as u64;
                    if take < read {
                        framing.reusable = false;
                    }
                    take
                }
                Body::Chunked => match scanner.scan(&self.from_up) {
                    Ok(Scan::End(k)) => {
                        done = true;
                        if k < read {
                            framing.reusable = false;
                        }
                        k
                    }
                    Ok(Scan::More) => read,
                    Err(_) => return Flow::Close,
                },
                Body::Close | Body::None => read,
            };
            if self.io.write_all(&self.from_up[..take]).await.is_err() {
                return Flow::Close;
            }
        }
        if self.io.flush().await.is_err() {
            return Flow::Close;
        }
        if framing.reusable {
            self.proxy.sockets.checkin(Key::Addr(addr), sock);
        }
        if framing.close {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// Counts the request and writes its access-log line, as the general path does.
    fn record(
        &self,
        head: &Head,
        start: std::time::Instant,
        status: StatusCode,
        upstream: Option<std::net::SocketAddr>,
    ) {
        self.proxy.record(
            self.conn,
            &Served {
                start,
                status,
                route: Some(&head.route),
                upstream,
                host: head.logged.as_ref().map_or("", |l| l.1.as_str()),
                logged: head.logged.as_ref().map(|l| (l.0.as_str(), l.2.as_str())),
                request_id: head.request_id.to_str().unwrap_or(""),
            },
        );
    }

    /// Answers the request with a small error response of our own.
    async fn answer(
        &mut self,
        head: &Head,
        start: std::time::Instant,
        status: StatusCode,
        upstream: Option<std::net::SocketAddr>,
    ) -> Flow {
        let text = format!(
            "{} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let close = head.close || self.drain.is_cancelled();
        let out = &mut self.out;
        out.clear();
        status_line(out, status, "");
        out.extend_from_slice(
            b"content-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\n",
        );
        header_line(out, b"content-length", text.len().to_string().as_bytes());
        header_line(out, b"x-request-id", head.request_id.as_bytes());
        DATE.with_borrow_mut(|d| header_line(out, b"date", d.now()));
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head.head_method {
            out.extend_from_slice(text.as_bytes());
        }
        self.record(head, start, status, upstream);
        if self.io.write_all(&self.out).await.is_err() || self.io.flush().await.is_err() {
            return Flow::Close;
        }
        if close { Flow::Close } else { Flow::Continue }
    }
}

/// A request head this path serves, ready to go upstream.
struct Head {
    head_len: usize,
    body_len: usize,
    route: Arc<Route>,
    /// A HEAD request: the response has no body, whatever its headers say.
    head_method: bool,
    /// No body and idempotent: may be repeated after the upstream closed without answering.
    retryable: bool,
    /// The client asked to close the connection after this exchange.
    close: bool,
    request_id: HeaderValue,
    /// Method, Host and path for the access log, when it is on.
    logged: Option<Box<(String, String, String)>>,
}

enum Parsed {
    Ready(Head),
    Partial,
    HandOff,
}

/// What a request header means to this path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Host,
    ContentLength,
    Connection,
    RequestId,
    /// Hop-by-hop, or a forwarding header replaced by ours.
    Strip,
    /// Only the general path handles it.
    HandOff,
    Other,
}

fn request_header(name: &str) -> Name {
    use Name::*;
    let candidates: &[(&str, Name)] = match name.len() {
        2 => &[("te", Strip)],
        4 => &[("host", Host)],
        6 => &[("expect", HandOff)],
        7 => &[("trailer", Strip), ("upgrade", HandOff)],
        9 => &[("forwarded", Strip), ("x-real-ip", Strip)],
        10 => &[("connection", Connection), ("keep-alive", Strip)],
        12 => &[("x-request-id", RequestId)],
        14 => &[("content-length", ContentLength), ("http2-settings", Strip)],
        15 => &[("x-forwarded-for", Strip)],
        16 => &[
            ("proxy-connection", Strip),
            ("x-forwarded-host", Strip),
            ("x-forwarded-port", Strip),
        ],
        17 => &[("transfer-encoding", HandOff), ("x-forwarded-proto", Strip)],
        18 => &[("x-forwarded-prefix", Strip)],
        _ => return Other,
    };
    candidates
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or(Other, |(_, k)| *k)
}

/// Bytes of a request target this path forwards unchanged: RFC 3986 unreserved, sub-delims,
/// `:@/?%`. Anything else (even if valid) takes the general path.
const TARGET_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let extra = b"-._~!$&'()*+,;=:@/?%";
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
};

/// Parses and checks a request head in `buf`; when this path serves it, writes the request
/// head as it goes upstream into `up`.
fn prepare(
    proxy: &Proxy,
    conn: &ConnInfo,
    buf: &[u8],
    up: &mut Vec<u8>,
    forwarded: &[u8],
) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        // The general path answers heads over the limit (431).
        Ok(httparse::Status::Complete(n)) if n <= proxy.config.max_header_bytes => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        _ => return Parsed::HandOff,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::HandOff;
    };
    if method == "CONNECT"
        || !target.starts_with('/')
        || !target.bytes().all(|b| TARGET_BYTES[usize::from(b)])
    {
        return Parsed::HandOff;
    }
    let path = &target[..target.find('?').unwrap_or(target.len())];
    if refused_path(path).is_some() || path.starts_with(ACME_CHALLENGE_PREFIX) {
        return Parsed::HandOff;
    }
    up.clear();
    up.extend_from_slice(method.as_bytes());
    up.push(b' ');
    up.extend_from_slice(target.as_bytes());
    up.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut host, mut hosts, mut length, mut lengths) = (None, 0, None, 0);
    let (mut close, mut id, mut ids) = (false, None, 0);
    for h in req.headers.iter() {
        match request_header(h.name) {
            Name::Host => {
                hosts += 1;
                host = Some(h.value);
            }
            Name::ContentLength => {
                lengths += 1;
                length = parse_length(h.value);
            }
            Name::Connection => {
                for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !(token.is_empty() || token.eq_ignore_ascii_case(b"keep-alive")) {
                        // It names headers to remove: the general path does that.
                        return Parsed::HandOff;
                    }
                }
                continue;
            }
            Name::RequestId => {
                ids += 1;
                id = Some(h.value);
                continue;
            }
            Name::Strip => continue,
            Name::HandOff => return Parsed::HandOff,
            Name::Other if h.name.contains('_') => continue,
            Name::Other => {}
        }
        header_line(up, h.name.as_bytes(), h.value);
    }
    let body_len = match (lengths, length) {
        (0, _) => 0,
        (1, Some(n)) if n <= MAX_BUFFERED_BODY && n <= proxy.config.max_body_bytes => n,
        _ => return Parsed::HandOff,
    };
    let (1, Some(Ok(raw_host))) = (hosts, host.map(std::str::from_utf8)) else {
        return Parsed::HandOff;
    };
    let Ok(host_name) = normalize_request_host(raw_host) else {
        return Parsed::HandOff;
    };
    let table = proxy.table.load();
    // Redirects (plain HTTP), and over TLS a Host served with another certificate than the
    // connection's (421), are the general path's.
    let served_here = if conn.tls {
        !proxy.misdirected(&host_name, conn.sni.as_deref())
    } else {
        !table.redirects_to_https(&host_name)
    };
    if !served_here {
        return Parsed::HandOff;
    }
    let Some(route) = table.lookup(Some(&host_name), path).route else {
        return Parsed::HandOff;
    };
    if !matches!(*route.backend, Backend::Endpoints { .. }) {
        return Parsed::HandOff;
    }
    up.extend_from_slice(forwarded);
    header_line(up, b"x-forwarded-host", raw_host.as_bytes());
    let request_id = match id {
        Some(v)
            if ids == 1
                && !v.is_empty()
                && v.len() <= 200
                && v.iter().all(u8::is_ascii_graphic) =>
        {
            HeaderValue::from_bytes(v).unwrap_or_else(|_| new_request_id())
        }
        _ => new_request_id(),
    };
    header_line(up, b"x-request-id", request_id.as_bytes());
    up.extend_from_slice(b"\r\n");
    let idempotent = matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    );
    let logged = tracing::enabled!(target: "access", tracing::Level::INFO)
        .then(|| Box::new((method.to_owned(), raw_host.to_owned(), path.to_owned())));
    Parsed::Ready(Head {
        head_len,
        body_len: body_len as usize,
        route: route.clone(),
        head_method: method == "HEAD",
        retryable: body_len == 0 && idempotent,
        close,
        request_id,
        logged,
    })
}

/// A `Content-Length` value: digits only.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

pub(super) fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn status_line(out: &mut Vec<u8>, status: StatusCode, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or(reason).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// How the upstream's answer went.
enum Upstream {
    Head(Framing),
    /// Closed (or reset) before any byte of a response.
    Closed,
    /// A broken or unacceptable response.
    Failed,
    Timeout,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    None,
    /// Bytes still to come.
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// The response on its way to the client.
#[derive(Debug)]
struct Framing {
    status: StatusCode,
    body: Body,
    /// The upstream connection may take another request once the body is read.
    reusable: bool,
    /// The client connection closes after this response.
    close: bool,
}

/// The response headers this path handles itself: hop-by-hop (RFC 9110 §7.6.1), framing, and
/// `x-request-id`.
const SPECIAL_RESPONSE_HEADERS: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
    "transfer-encoding",
    "content-length",
    "x-request-id",
];

/// What a response header means to this path: its lowercase name when it is one of
/// `SPECIAL_RESPONSE_HEADERS`.
pub(super) fn response_header(name: &str) -> Option<&'static str> {
    SPECIAL_RESPONSE_HEADERS
        .iter()
        .find(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .copied()
}

/// What an upstream response's status line and headers say about its framing (RFC 9112
/// §6.3) and which of its headers are hop-by-hop; shared by the fast path and the general
/// path's own exchange (`relay`), so both relay exactly the same responses.
pub(super) struct ResponseMeta<'b> {
    pub(super) status: StatusCode,
    pub(super) body: Body,
    /// The upstream closes the connection after this response.
    pub(super) upstream_close: bool,
    /// The response carries its own `Date`.
    pub(super) has_date: bool,
    /// Header names the upstream's `Connection` lists: hop-by-hop too (rare: on the heap).
    named: Vec<&'b [u8]>,
    /// Bit i: header i is hop-by-hop or framing other than `content-length` (never forwarded).
    hop: u128,
    /// Bit i: header i is `x-request-id`.
    request_id: u128,
    /// Bit i: header i is `content-length` (always forwarded, whatever `Connection` names).
    content_length: u128,
}

impl<'b> ResponseMeta<'b> {
    /// Reads them; an error when the response cannot be relayed (an invalid status, a switch
    /// of protocols nobody asked for, ambiguous framing: both framings, several lengths,
    /// codings other than `chunked`). `head_method`: the request was HEAD.
    pub(super) fn read(
        resp: &httparse::Response<'_, 'b>,
        head_method: bool,
    ) -> Result<Self, &'static str> {
        let status = resp
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or("invalid status")?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err("switching protocols unasked");
        }
        let mut upstream_close = resp.version != Some(1);
        let (mut chunked, mut codings, mut length, mut lengths) = (false, 0, None, 0);
        let mut has_date = false;
        let mut named: Vec<&'b [u8]> = Vec::new();
        let (mut hop, mut request_id, mut content_length) = (0u128, 0u128, 0u128);
        for (i, h) in resp.headers.iter().enumerate() {
            let bit = 1u128 << i;
            match response_header(h.name) {
                Some("connection") => {
                    hop |= bit;
                    for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                        if token.eq_ignore_ascii_case(b"close") {
                            upstream_close = true;
                        } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                            named.push(token);
                        }
                    }
                }
                Some("transfer-encoding") => {
                    hop |= bit;
                    codings += 1;
                    chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                }
                Some("content-length") => {
                    content_length |= bit;
                    lengths += 1;
                    length = parse_length(h.value);
                }
                Some("x-request-id") => request_id |= bit,
                Some(_) => hop |= bit,
                None if h.name.eq_ignore_ascii_case("date") => has_date = true,
                None => {}
            }
        }
        let bodyless =
            head_method || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let body = match (codings, chunked, lengths, length) {
            _ if bodyless => Body::None,
            (1, true, 0, _) => Body::Chunked,
            (0, _, 1, Some(n)) => Body::Length(n),
            (0, _, 0, _) => Body::Close,
            _ => return Err("ambiguous response framing"),
        };
        Ok(Self {
            status,
            body,
            upstream_close,
            has_date,
            named,
            hop,
            request_id,
            content_length,
        })
    }

    /// Whether header `i` of the response read, named `name`, goes on to the client: not when
    /// hop-by-hop or named by the upstream's `Connection`; `content-length` does, and
    /// `x-request-id` when `request_id` says so.
    pub(super) fn forwards(&self, i: usize, name: &str, request_id: bool) -> bool {
        let bit = 1u128 << i;
        if self.hop & bit != 0 {
            return false;
        }
        if self.request_id & bit != 0 {
            return request_id;
        }
        self.content_length & bit != 0
            || !self
                .named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Writes the client's response head for an upstream response into `out`; `None` when the
/// response cannot be relayed (its framing is ambiguous or unsupported).
fn response_head(
    resp: &httparse::Response<'_, '_>,
    head: &Head,
    close: bool,
    out: &mut Vec<u8>,
) -> Option<Framing> {
    let meta = ResponseMeta::read(resp, head.head_method).ok()?;
    let (status, body) = (meta.status, meta.body);
    let close = close || body == Body::Close;
    out.clear();
    status_line(out, status, resp.reason.unwrap_or(""));
    for (i, h) in resp.headers.iter().enumerate() {
        if meta.forwards(i, h.name, false) {
            header_line(out, h.name.as_bytes(), h.value);
        }
    }
    if body == Body::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    header_line(out, b"x-request-id", head.request_id.as_bytes());
    if !meta.has_date {
        DATE.with_borrow_mut(|d| header_line(out, b"date", d.now()));
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(Framing {
        status,
        body,
        reusable: !meta.upstream_close && body != Body::Close,
        close,
    })
}

/// The `Date` header value, formatted once per second.
struct DateCache {
    second: u64,
    text: Vec<u8>,
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = std::time::SystemTime::now();
        let second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now).into_bytes();
        }
        &self.text
    }
}

thread_local! {
    static DATE: std::cell::RefCell<DateCache> = const {
        std::cell::RefCell::new(DateCache { second: 0, text: Vec::new() })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_response_header_is_recognised_in_any_case_and_no_other() {
        for name in SPECIAL_RESPONSE_HEADERS {
            assert_eq!(response_header(name), Some(name));
            assert_eq!(response_header(&name.to_ascii_uppercase()), Some(name));
        }
        // Neighbours: other headers, and every proper prefix of a special name.
        let prefixes = SPECIAL_RESPONSE_HEADERS
            .iter()
            .flat_map(|name| (1..name.len()).map(move |n| &name[..n]));
        for name in [
            "date",
            "server",
            "content-type",
            "keep-alivf",
            "tf",
            "transfer-encodings",
        ]
        .into_iter()
        .chain(prefixes)
        {
            assert_eq!(response_header(name), None, "{name}");
        }
    }

    #[test]
    fn response_headers_are_forwarded_unless_hop_by_hop_or_named_by_connection() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: X-Foo, close, content-length\r\n\
            X-Request-Id: up\r\nX-Foo: 1\r\nKeep-Alive: timeout=5\r\nServer: s\r\n\
            Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nTrailer: x\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        assert!(resp.parse(raw).unwrap().is_complete());
        let meta = ResponseMeta::read(&resp, false).unwrap();
        assert_eq!(meta.body, Body::Length(3));
        assert!(meta.upstream_close && meta.has_date);
        let kept = |request_id| {
            resp.headers
                .iter()
                .enumerate()
                .filter(|(i, h)| meta.forwards(*i, h.name, request_id))
                .map(|(_, h)| h.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(kept(false), ["Content-Length", "Server", "Date"]);
        assert_eq!(
            kept(true),
            ["Content-Length", "X-Request-Id", "Server", "Date"]
        );
    }

    #[test]
    fn request_headers_are_sorted_by_their_meaning_to_this_path() {
        assert_eq!(request_header("Host"), Name::Host);
        assert_eq!(request_header("CONTENT-LENGTH"), Name::ContentLength);
        assert_eq!(request_header("Transfer-Encoding"), Name::HandOff);
        assert_eq!(request_header("Upgrade"), Name::HandOff);
        assert_eq!(request_header("Expect"), Name::HandOff);
        assert_eq!(request_header("X-Forwarded-For"), Name::Strip);
        assert_eq!(request_header("Keep-Alive"), Name::Strip);
        assert_eq!(request_header("X-Request-Id"), Name::RequestId);
        assert_eq!(request_header("Accept"), Name::Other);
        assert_eq!(request_header("x-forwarded-hosts"), Name::Other);
    }

    #[test]
    fn only_plain_digits_are_a_length() {
        assert_eq!(parse_length(b"42"), Some(42));
        for bad in [
            &b""[..],
            b"+1",
            b"1 ",
            b"0x10",
            b"1,1",
            b"9999999999999999999",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn target_bytes_are_a_conservative_subset() {
        for b in b"/a-Z_0.~!$&'()*+,;=:@/?%" {
            assert!(TARGET_BYTES[usize::from(*b)], "{}", *b as char);
        }
        for b in b" \"<>\\^`{|}#[]\x7f\x00\x80" {
            assert!(!TARGET_BYTES[usize::from(*b)], "{b:#x}");
        }
    }

    /// A proxy whose table routes `app.test` (and anything else, by a catch-all) to a Service
    /// with two endpoints.
    fn proxy() -> Arc<Proxy> {
        static PROXY: std::sync::OnceLock<Arc<Proxy>> = std::sync::OnceLock::new();
        PROXY.get_or_init(build_proxy).clone()
    }

    fn build_proxy() -> Arc<Proxy> {
        const MANIFESTS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: app}\nspec:\n  ingressClassName: portcullis\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n  rules:\n  - host: app.test\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}\n";
        let mut snap = crate::routes::Snapshot::default();
        for o in crate::source::dir::parse_manifests(MANIFESTS, "t.yaml").unwrap() {
            match o {
                crate::source::dir::Object::Ingress(x) => snap.ingresses.push(x),
                crate::source::dir::Object::Service(x) => snap.services.push(x),
                crate::source::dir::Object::EndpointSlice(x) => snap.endpoint_slices.push(x),
                _ => {}
            }
        }
        let compiled = crate::routes::compile(&snap, &crate::routes::CompileOptions::default());
        let (crt, key) = crate::tls::self_signed(&["default.test"]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let store = crate::tls::Store::with_default(&crt, &key, now).unwrap();
        Proxy::new(
            super::super::Config::default(),
            Arc::new(arc_swap::ArcSwap::from_pointee(compiled.table)),
            Arc::new(arc_swap::ArcSwap::from_pointee(store)),
            Arc::new(crate::telemetry::Metrics::new()),
            Default::default(),
        )
    }

    fn plain() -> ConnInfo {
        ConnInfo {
            peer: "192.0.2.7:5555".parse().unwrap(),
            local_port: 80,
            tls: false,
            sni: None,
        }
    }

    /// Header names in a parsed head, lower-cased.
    fn names(headers: &[httparse::Header<'_>]) -> Vec<String> {
        headers
            .iter()
            .map(|h| h.name.to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn a_plain_request_is_served_here_and_rewritten() {
        let mut up = Vec::new();
        let buf = b"GET /x?y=1 HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n";
        let Parsed::Ready(head) = prepare(
            &proxy(),
            &plain(),
            buf,
            &mut up,
            b"x-real-ip: 192.0.2.7\r\n",
        ) else {
            panic!("not served here");
        };
        assert_eq!(head.head_len, buf.len());
        let text = String::from_utf8(up).unwrap();
        assert!(text.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\nx-real-ip: 192.0.2.7\r\nx-forwarded-host: app.test\r\nx-request-id: "), "{text}");
        assert!(
            text.ends_with("\r\n\r\n") && !text.contains("6.6.6.6") && !text.contains("keep-alive"),
            "{text}"
        );
    }

    const HOP_OR_FRAMING: [&str; 11] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "http2-settings",
        "forwarded",
        "x-forwarded-prefix",
    ];

    fn header_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let name = prop_oneof![
            8 => "[A-Za-z][A-Za-z0-9_-]{0,12}",
            1 => Just("Host".to_owned()),
            1 => Just("host".to_owned()),
            1 => Just("Content-Length".to_owned()),
            1 => Just("Transfer-Encoding".to_owned()),
            1 => Just("Connection".to_owned()),
            1 => Just("X-Request-Id".to_owned()),
            1 => Just("X-Forwarded-For".to_owned()),
            1 => Just("Forwarded".to_owned()),
            1 => Just("Content_Length".to_owned()),
            1 => Just("Upgrade".to_owned()),
            1 => Just("Expect".to_owned()),
            1 => Just("Keep-Alive".to_owned()),
            1 => Just("TE".to_owned()),
        ];
        let value = prop_oneof![
            Just("app.test".to_owned()),
            Just("APP.test:80".to_owned()),
            Just("0".to_owned()),
            Just("5".to_owned()),
            Just("+5".to_owned()),
            Just("5, 5".to_owned()),
            Just("chunked".to_owned()),
            Just("close".to_owned()),
            Just("keep-alive, x-foo".to_owned()),
            "[ -~]{0,24}",
        ];
        (name, value).prop_map(|(n, v)| format!("{n}: {v}\r\n"))
    }

    proptest::proptest! {
        /// Whatever the client sends, a request this path forwards has one Host, no hop-by-hop
        /// or framing header but a `Content-Length` equal to the body it reads, our forwarding
        /// headers once each, and the client's method and target.
        #[test]
        fn forwarded_heads_are_well_framed(
            method in proptest::prop_oneof![
                4 => proptest::strategy::Just("GET"), 2 => proptest::strategy::Just("POST"),
                1 => proptest::strategy::Just("HEAD"), 1 => proptest::strategy::Just("CONNECT"),
                1 => proptest::strategy::Just("PRI"), 1 => proptest::strategy::Just("DELETE"),
            ],
            target in proptest::prop_oneof![
                8 => "/[a-z0-9/?=&%._~-]{0,24}", 1 => "/[ -~]{0,30}", 1 => "[ -~]{0,12}",
                1 => "/a/\\.\\./b", 1 => "/%2e%2E/x",
            ],
            host_first in proptest::bool::ANY,
            version in proptest::prop_oneof![
                8 => proptest::strategy::Just("HTTP/1.1"), 1 => proptest::strategy::Just("HTTP/1.0"),
                1 => proptest::strategy::Just("HTTP/2.0"),
            ],
            headers in proptest::collection::vec(header_strategy(), 0..5),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..16),
        ) {
            let p = proxy();
            let conn = plain();
            let mut buf = format!("{method} {target} {version}\r\n").into_bytes();
            if host_first {
                buf.extend(b"Host: app.test\r\n");
            }
            for h in &headers {
                buf.extend(h.as_bytes());
            }
            buf.extend(b"\r\n");
            buf.extend(&body);
            let mut up = Vec::new();
            let forwarded = b"x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\nx-forwarded-port: 80\r\nx-real-ip: 192.0.2.7\r\n";
            let Parsed::Ready(head) = prepare(&p, &conn, &buf, &mut up, forwarded) else {
                return Ok(());
            };
            proptest::prop_assert!(head.head_len <= buf.len());
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut hs);
            let n = req.parse(&up);
            proptest::prop_assert!(
                matches!(n, Ok(httparse::Status::Complete(n)) if n == up.len()),
                "{}", String::from_utf8_lossy(&up)
            );
            proptest::prop_assert_eq!(req.method, Some(method));
            proptest::prop_assert_eq!(req.path, Some(target.as_str()));
            proptest::prop_assert_eq!(req.version, Some(1));
            let names = names(req.headers);
            let count = |n: &str| names.iter().filter(|x| *x == n).count();
            proptest::prop_assert_eq!(count("host"), 1);
            for n in HOP_OR_FRAMING {
                proptest::prop_assert_eq!(count(n), 0, "{}", n);
            }
            proptest::prop_assert!(names.iter().all(|n| !n.contains('_')));
            for n in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip", "x-request-id"] {
                proptest::prop_assert_eq!(count(n), 1, "{}", n);
            }
            let lengths: Vec<&[u8]> = req.headers.iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| h.value)
                .collect();
            match lengths.as_slice() {
                [] => proptest::prop_assert_eq!(head.body_len, 0),
                [one] => proptest::prop_assert_eq!(parse_length(one), Some(head.body_len as u64)),
                _ => proptest::prop_assert!(false, "several lengths forwarded"),
            }
        }

        /// Whatever an upstream answers, a relayed response head is one well-formed head with
        /// exactly the framing header its body is relayed by, and no hop-by-hop header.
        #[test]
        fn relayed_response_heads_are_well_framed(
            status in proptest::prop_oneof![
                proptest::strategy::Just(200u16), proptest::strategy::Just(204),
                proptest::strategy::Just(304), proptest::strategy::Just(101),
                proptest::strategy::Just(404), proptest::strategy::Just(599),
            ],
            headers in proptest::collection::vec(header_strategy(), 0..8),
            head_method in proptest::bool::ANY,
            client_close in proptest::bool::ANY,
        ) {
            let mut raw = format!("HTTP/1.1 {status} X\r\n").into_bytes();
            for h in &headers {
                raw.extend(h.as_bytes());
            }
            raw.extend(b"\r\n");
            let mut hs = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut resp = httparse::Response::new(&mut hs);
            if !matches!(resp.parse(&raw), Ok(httparse::Status::Complete(_))) {
                return Ok(());
            }
            let p = proxy();
            let table = p.table.load();
            let route = table.lookup(Some("app.test"), "/").route.unwrap().clone();
            let head = Head {
                head_len: 0,
                body_len: 0,
                route,
                head_method,
                retryable: true,
                close: client_close,
                request_id: HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
                logged: None,
            };
            let mut out = Vec::new();
            let Some(framing) = response_head(&resp, &head, client_close, &mut out) else {
                return Ok(());
            };
            let mut hs2 = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS + 8];
            let mut again = httparse::Response::new(&mut hs2);
            proptest::prop_assert!(
                matches!(again.parse(&out), Ok(httparse::Status::Complete(n)) if n == out.len()),
                "{}", String::from_utf8_lossy(&out)
            );
            let names = names(again.headers);
            let count = |n: &str| names.iter().filter(|x| *x == n).count();
            for n in ["keep-alive", "proxy-connection", "te", "trailer", "upgrade", "http2-settings"] {
                proptest::prop_assert_eq!(count(n), 0, "{}", n);
            }
            proptest::prop_assert_eq!(count("x-request-id"), 1);
            match framing.body {
                Body::Chunked => {
                    proptest::prop_assert_eq!(count("transfer-encoding"), 1);
                    proptest::prop_assert_eq!(count("content-length"), 0);
                }
                Body::Length(n) => {
                    proptest::prop_assert_eq!(count("transfer-encoding"), 0);
                    let cl: Vec<&[u8]> = again.headers.iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map(|h| h.value).collect();
                    proptest::prop_assert_eq!(cl.len(), 1);
                    proptest::prop_assert_eq!(parse_length(cl[0]), Some(n));
                }
                Body::Close => {
                    proptest::prop_assert_eq!(count("transfer-encoding") + count("content-length"), 0);
                    proptest::prop_assert!(framing.close && !framing.reusable);
                }
                Body::None => proptest::prop_assert_eq!(count("transfer-encoding"), 0),
            }
            proptest::prop_assert_eq!(count("connection"), usize::from(framing.close));
            proptest::prop_assert!(status != 101);
        }
    }
}
