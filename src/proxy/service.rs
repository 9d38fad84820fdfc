//! The request path: route, check, forward, answer, log.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::body::Stall;
use super::error::{ProxyError, error_response};
use super::headers::{
    Forwarding, ensure_request_id, is_upgrade, set_forwarding, strip_hop_by_hop,
    strip_underscore_names,
};
use super::pool::{HttpPool, Key, PooledBody, SendError};
use super::relay::{self, Relayed};
use super::{Body, Config, Proxy};
use crate::routes::{Backend, Route, has_dot_segment, normalize_request_host};
use crate::telemetry::{RequestLabels, ServiceLabel};

/// What the proxy knows about the client connection a request arrived on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) local_port: u16,
    pub(crate) tls: bool,
    pub(crate) sni: Option<String>,
}

/// A request body on its way upstream: the client's, capped at `--max-request-body-bytes`,
/// or none (a bodyless request repeated on the next endpoint).
pub(crate) type UpBody = Either<Limited<ClientBody>, Empty<Bytes>>;

/// The pooled HTTP/1.1 client to upstream endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pool: Arc<HttpPool<UpBody>>,
}

impl Upstream {
    pub(crate) fn new(cfg: &Config) -> Self {
        Self {
            pool: HttpPool::new(cfg.connect_timeout, cfg.upstream_idle_timeout),
        }
    }
}

/// One answered request, as the metrics and the access log see it.
pub(crate) struct Served<'a> {
    /// When its head was received.
    pub(crate) start: Instant,
    pub(crate) status: StatusCode,
    pub(crate) route: Option<&'a Route>,
    pub(crate) upstream: Option<SocketAddr>,
    /// The Host as the client sent it.
    pub(crate) host: &'a str,
    /// Method and path, present only when the access log is on.
    pub(crate) logged: Option<(&'a str, &'a str)>,
    pub(crate) request_id: &'a str,
}

/// The parts of a request the log line and metrics need.
struct Outcome<'a> {
    route: Option<&'a Route>,
    upstream: Option<SocketAddr>,
}

impl Proxy {
    /// Answers one request; never fails (every error becomes a response here).
    pub(crate) async fn handle(
        &self,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<Body> {
        let start = Instant::now();
        let request_id = ensure_request_id(req.headers_mut());
        // Copied only when the access log is on: nothing is formatted or kept for it otherwise.
        let logged = tracing::enabled!(target: "access", tracing::Level::INFO)
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let version = req.version();
        let host_value = request_host(&req);
        let raw_host = host_value.as_ref().and_then(|v| v.to_str().ok());
        let table = self.table.load();
        let mut outcome = Outcome {
            route: None,
            upstream: None,
        };
        // Boxed: the exchange's state is ~4 KiB, and hyper's HTTP/2 server and the runtime
        // move the request future several times before it completes; this keeps them to
        // moving a pointer.
        let result =
            Box::pin(self.route_and_forward(req, conn, &table, raw_host, &mut outcome)).await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                if !e.is_client_error() && !matches!(e, ProxyError::NoRoute) {
                    tracing::debug!(error = %e, "request failed");
                }
                let mut r = e.into_response();
                if e.closes_connection() && version < Version::HTTP_2 {
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                r
            }
        };
        // Unique per response: never worth a slot in the HTTP/2 (HPACK) dynamic table, where
        // it would only push out the headers that do repeat.
        let mut id = request_id.clone();
        id.set_sensitive(true);
        resp.headers_mut()
            .insert(super::headers::X_REQUEST_ID.clone(), id);
        self.record(
            conn,
            &Served {
                start,
                status: resp.status(),
                route: outcome.route,
                upstream: outcome.upstream,
                host: raw_host.unwrap_or(""),
                logged: logged.as_ref().map(|(m, p)| (m.as_str(), p.as_str())),
                request_id: request_id.to_str().unwrap_or(""),
            },
        );
        resp
    }

    /// Counts an answered request and writes its access-log line (when that log is on).
    pub(crate) fn record(&self, conn: &ConnInfo, s: &Served<'_>) {
        let elapsed = s.start.elapsed();
        let labels = RequestLabels {
            ingress: s.route.map_or_else(no_label, |r| r.ingress.clone()),
            service: s
                .route
                .map_or_else(no_label, |r| r.backend.service_name().clone()),
            status: class(s.status),
        };
        self.metrics.requests.inc(&labels);
        self.metrics.request_duration.observe(elapsed.as_secs_f64());
        if let Some((method, path)) = s.logged {
            tracing::info!(
                target: "access",
                client = %conn.peer.ip(),
                method = method,
                host = s.host,
                path = path,
                status = s.status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                ingress = %labels.ingress,
                service = %labels.service,
                upstream = %s.upstream.map(|a| a.to_string()).unwrap_or_default(),
                request_id = s.request_id,
                "request"
            );
        }
    }

    async fn route_and_forward<'t>(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        table: &'t crate::routes::RouteTable,
        raw_host: Option<&str>,
        outcome: &mut Outcome<'t>,
    ) -> Result<Response<Body>, ProxyError> {
        if req.headers().get_all(header::HOST).iter().count() > 1 {
            return Err(ProxyError::BadRequest("more than one Host header"));
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without Host (or absolute-form target) is a 400.
        if req.version() == Version::HTTP_11 && raw_host.is_none() {
            return Err(ProxyError::BadRequest("HTTP/1.1 request without Host"));
        }
        if unsupported_transfer_coding(req.headers()) {
            return Err(ProxyError::NotImplemented(
                "transfer coding other than chunked",
            ));
        }
        let host = match raw_host {
            Some(h) => Some(
                normalize_request_host(h).map_err(|_| ProxyError::BadRequest("invalid Host"))?,
            ),
            None => None,
        };
        let path = req.uri().path();
        if !path.starts_with('/') && req.method() != Method::OPTIONS {
            return Err(ProxyError::BadRequest(
                "request target is not an absolute path",
            ));
        }
        if let Some(why) = refused_path(path) {
            return Err(ProxyError::BadRequest(why));
        }
        // ACME HTTP-01: answered before any redirect or route, on HTTP and HTTPS alike.
        if let Some(token) = path.strip_prefix(ACME_CHALLENGE_PREFIX)
            && let Some(answer) = self.challenges.load().get(token)
        {
            return Ok(challenge_response(answer));
        }
        if !conn.tls
            && let Some(h) = host.as_deref()
            && table.redirects_to_https(h)
            && !path.starts_with(ACME_CHALLENGE_PREFIX)
        {
            return Ok(self.redirect(h, req.uri()));
        }
        if conn.tls
            && let Some(h) = host.as_deref()
            && self.misdirected(h, conn.sni.as_deref())
        {
            return Err(ProxyError::Misdirected);
        }
        let lookup = table.lookup(host.as_deref(), path);
        let route = lookup.route.ok_or(ProxyError::NoRoute)?;
        outcome.route = Some(route);
        if let Some(len) = content_length(&req)
            && len > self.config.max_body_bytes
        {
            return Err(ProxyError::BodyTooLarge);
        }
        let targets: Vec<UpstreamTarget> = match route.backend.as_ref() {
            Backend::Unavailable { reason, .. } => return Err(ProxyError::Unavailable(reason)),
            Backend::External { host, port, .. } => {
                vec![UpstreamTarget::Name(format!("{host}:{port}"))]
            }
            Backend::Endpoints { .. } => endpoint_attempts(&route.backend)
                .into_iter()
                .map(UpstreamTarget::Addr)
                .collect(),
        };
        self.forward(req, conn, raw_host.unwrap_or(""), route, &targets, outcome)
            .await
    }

    /// Counts and logs a failed connection attempt to an endpoint of `route`'s Service.
    pub(crate) fn connect_failed(
        &self,
        route: &Route,
        upstream: Option<SocketAddr>,
        e: &std::io::Error,
    ) {
        let service = route.backend.service();
        self.metrics
            .upstream_connect_errors
            .get_or_create(&ServiceLabel {
                service: service.to_owned(),
            })
            .inc();
        tracing::warn!(upstream = upstream.map(tracing::field::display), service, error = %e, "upstream connect failed");
    }

    /// Whether `host` (normalised), asked for on a TLS connection with `sni`, would be served
    /// with another certificate than the connection's: such a request gets 421.
    pub(crate) fn misdirected(&self, host: &str, sni: Option<&str>) -> bool {
        if sni.is_some_and(|s| s.eq_ignore_ascii_case(host)) {
            return false;
        }
        let certs = self.certs.load();
        certs.select(Some(host)).id != certs.select(sni).id
    }

    fn redirect(&self, host: &str, uri: &Uri) -> Response<Body> {
        let port = match self.config.https_redirect_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut resp = error_response(StatusCode::PERMANENT_REDIRECT);
        if let Ok(loc) = HeaderValue::from_str(&format!("https://{host}{port}{pq}")) {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
        resp
    }

    async fn forward<'t>(
        &self,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
        raw_host: &str,
        route: &'t Route,
        targets: &[UpstreamTarget],
        outcome: &mut Outcome<'t>,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = req.version() == Version::HTTP_11 && is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // Set by `handle`; a client may not remove it by naming it in `Connection`.
        let request_id = parts.headers.get(&super::headers::X_REQUEST_ID).cloned();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        if let Some(id) = request_id {
            parts
                .headers
                .insert(super::headers::X_REQUEST_ID.clone(), id);
        }
        strip_underscore_names(&mut parts.headers);
        if upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        set_forwarding(
            &mut parts.headers,
            &Forwarding {
                peer: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                port: conn.local_port,
                host: raw_host,
                trusted: &self.config.trusted_proxies,
            },
        );
        // The URI's authority (HTTP/2 `:authority`, HTTP/1.1 absolute form) is the Host.
        if (parts.uri.authority().is_some() || !parts.headers.contains_key(header::HOST))
            && let Ok(v) = HeaderValue::from_str(raw_host)
        {
            parts.headers.insert(header::HOST, v);
        }
        parts.version = Version::HTTP_11;
        // Upstream requests carry the origin form; the authority went into Host above.
        if parts.uri.scheme().is_some() || parts.uri.path_and_query().is_none() {
            parts.uri = Uri::from(
                parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            );
        }
        if !parts.uri.path().starts_with('/') {
            return Err(ProxyError::BadRequest("request target cannot be forwarded"));
        }
        let bodyless = body.is_end_stream();
        if bodyless && !upgrade {
            drop(body);
            return self.relay(&parts, route, targets, outcome).await;
        }
        let limit = usize::try_from(self.config.max_body_bytes).unwrap_or(usize::MAX);
        let idempotent = idempotent(&parts.method);
        // A request that reached the upstream is consumed; keep a copy only when a bodyless
        // idempotent request may be repeated on the next endpoint.
        let spare = (bodyless && idempotent && targets.len() > 1).then(|| parts.clone());
        let upload = Arc::new(Upload::default());
        let body = ClientBody::new(body, self.config.client_body_timeout, upload.clone());
        let body = Either::Left(Limited::new(body, limit));
        let mut pending = Some(Request::from_parts(parts, body));

        let mut last_err = None;
        for (attempt, target) in targets.iter().enumerate() {
            if attempt > 0 && !bodyless {
                break;
            }
            let up = match (pending.take(), &spare) {
                (Some(r), _) => r,
                (None, Some(p)) => Request::from_parts(p.clone(), Either::Right(Empty::new())),
                (None, None) => break,
            };
            let key = target.key();
            outcome.upstream = target.addr();
            let sent = response_within(
                self.config.response_timeout,
                &upload,
                self.client.pool.send(&key, up, upgrade),
            )
            .await;
            let Some(sent) = sent else {
                return Err(ProxyError::Timeout);
            };
            let resp = match sent {
                Err(SendError::Connect(e, req)) => {
                    self.connect_failed(route, outcome.upstream, &e);
                    last_err = Some(ProxyError::Connect(e));
                    pending = Some(*req);
                    continue;
                }
                // Closed or reset before any response: repeating a bodyless idempotent request
                // on the next endpoint is safe (RFC 9110 §9.2.2).
                Err(SendError::Upstream(e))
                    if bodyless && idempotent && closed_without_response(&e) =>
                {
                    tracing::warn!(upstream = ?outcome.upstream, service = route.backend.service(), error = %e, "upstream closed without a response; trying the next endpoint");
                    last_err = Some(ProxyError::Upstream(e));
                    continue;
                }
                Err(SendError::Upstream(e)) => {
                    if body_too_large(&e) {
                        return Err(ProxyError::BodyTooLarge);
                    }
                    let client = chain(&e)
                        .find_map(|s| s.downcast_ref::<ClientBodyError>())
                        .map(|c| match c {
                            ClientBodyError::Stalled(_) => ProxyError::ClientTimeout,
                            ClientBodyError::Read(_) => {
                                ProxyError::BadRequest("request body malformed or cut short")
                            }
                        });
                    return Err(client.unwrap_or(ProxyError::Upstream(e)));
                }
                Ok(r) => r,
            };
            return Ok(self.respond(resp, client_upgrade));
        }
        Err(last_err.unwrap_or(ProxyError::Unavailable("no endpoint")))
    }

    /// Forwards a request without a body by the general path's own exchange (`relay`):
    /// after a failed connect, or an upstream that closed without answering an idempotent
    /// request, the next endpoint is tried.
    async fn relay<'t>(
        &self,
        parts: &http::request::Parts,
        route: &'t Route,
        targets: &[UpstreamTarget],
        outcome: &mut Outcome<'t>,
    ) -> Result<Response<Body>, ProxyError> {
        let mut head = Vec::with_capacity(512);
        relay::encode_head(parts, &mut head);
        let head_method = parts.method == Method::HEAD;
        let mut last_err = None;
        for target in targets {
            let key = target.key();
            outcome.upstream = target.addr();
            let sent = tokio::time::timeout(
                self.config.response_timeout,
                relay::exchange(&self.sockets, &key, &head, head_method),
            )
            .await;
            match sent {
                Err(_) => return Err(ProxyError::Timeout),
                Ok(Relayed::Response(resp)) => {
                    let (parts, body) = resp.into_parts();
                    let body = Body::relay(body, self.config.response_timeout);
                    return Ok(Response::from_parts(parts, body));
                }
                Ok(Relayed::Connect(e)) => {
                    self.connect_failed(route, outcome.upstream, &e);
                    last_err = Some(ProxyError::Connect(e));
                }
                // RFC 9110 section 9.2.2: an idempotent request may be repeated.
                Ok(Relayed::Closed) if idempotent(&parts.method) => {
                    tracing::warn!(upstream = ?outcome.upstream, service = route.backend.service(), "upstream closed without a response; trying the next endpoint");
                    last_err = Some(ProxyError::UpstreamResponse("closed without a response"));
                }
                Ok(Relayed::Closed) => {
                    return Err(ProxyError::UpstreamResponse("closed without a response"));
                }
                Ok(Relayed::Failed(why)) => {
                    tracing::warn!(upstream = ?outcome.upstream, service = route.backend.service(), why, "upstream response unusable");
                    return Err(ProxyError::UpstreamResponse(why));
                }
            }
        }
        Err(last_err.unwrap_or(ProxyError::Unavailable("no endpoint")))
    }

    fn respond(
        &self,
        mut resp: Response<PooledBody<UpBody>>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<Body> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await)
                else {
                    return;
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Body::default());
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        Response::from_parts(parts, Body::upstream(body, self.config.response_timeout))
    }
}

/// Whether a request may be repeated after an upstream closed without answering it.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Why a request path is refused (400): a dot-segment, or an encoded NUL.
pub(crate) fn refused_path(path: &str) -> Option<&'static str> {
    if has_dot_segment(path) {
        Some("dot-segment in path")
    } else if path.contains("%00") {
        Some("encoded NUL in path")
    } else {
        None
    }
}

/// Most endpoints one request is tried on (the next ones after a failed connect).
const MAX_ATTEMPTS: usize = 3;

/// The endpoints a request goes to, in order: the round-robin choice, then the ones after
/// it, at most `MAX_ATTEMPTS`; none for a backend without endpoints.
pub(crate) fn endpoint_attempts(backend: &Backend) -> Vec<SocketAddr> {
    backend.pick().map_or_else(Vec::new, |(start, addrs)| {
        (0..addrs.len().min(MAX_ATTEMPTS))
            .map(|i| addrs[(start + i) % addrs.len()])
            .collect()
    })
}

/// Where ACME HTTP-01 challenges are fetched.
pub(crate) const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

fn challenge_response(key_authorization: &str) -> Response<Body> {
    let mut resp = Response::new(Body::full(Bytes::from(key_authorization.to_owned())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// An endpoint a request may go to: a ready address, or `host:port` of an ExternalName Service.
enum UpstreamTarget {
    Addr(SocketAddr),
    Name(String),
}

impl UpstreamTarget {
    /// The key of its pooled connections.
    fn key(&self) -> Key {
        match self {
            Self::Addr(a) => Key::Addr(*a),
            Self::Name(n) => Key::Name(n.as_str().into()),
        }
    }

    /// Its address, when known before connecting (for logs and connect-error metrics).
    fn addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Addr(a) => Some(*a),
            Self::Name(_) => None,
        }
    }
}

/// The authority the client asked for: the URI's (HTTP/2 `:authority`, absolute-form) or Host.
/// A Host header is shared, not copied.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str()).ok();
    }
    req.headers().get(header::HOST).cloned()
}

/// The label of a request that matched no route (no Ingress, no Service).
fn no_label() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Hyper decodes only `chunked`: any other transfer coding (or `chunked` twice) would reach
/// the backend still coded once `Transfer-Encoding` is stripped, so it is refused.
fn unsupported_transfer_coding(h: &http::HeaderMap) -> bool {
    let mut codings = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| t.trim_ascii());
    match (codings.next(), codings.next()) {
        (None, _) => false,
        (Some(only), None) => !only.eq_ignore_ascii_case(b"chunked"),
        _ => true,
    }
}

/// A failure of the client's request body: bad chunk framing or an early close, or no data
/// for `--client-body-timeout`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    #[error("client request body: {0}")]
    Read(#[source] hyper::Error),
    #[error("client sent nothing of the request body for {0:?}")]
    Stalled(Duration),
}

/// How a request body's trip upstream is going, as the request task waiting for the response
/// sees it.
#[derive(Default)]
pub(crate) struct Upload {
    /// Pieces of the body handed upstream so far.
    pieces: AtomicU64,
    /// The body's last poll waited for the client: a stall there is the client's, bounded by
    /// `--client-body-timeout`.
    client_turn: AtomicBool,
    /// Cancelled once the whole body is handed upstream.
    sent: CancellationToken,
}

/// A client's request body on its way upstream: its errors are the client's, it ends once it
/// goes `--client-body-timeout` without data (nginx's `client_body_timeout`), and it reports
/// its progress to `upload`.
pub(crate) struct ClientBody {
    inner: Incoming,
    stall: Stall,
    upload: Arc<Upload>,
}

impl ClientBody {
    fn new(inner: Incoming, limit: Duration, upload: Arc<Upload>) -> Self {
        if inner.is_end_stream() {
            upload.sent.cancel();
        }
        ClientBody {
            inner,
            stall: Stall::new(limit),
            upload,
        }
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.stall.stalled(&polled, cx) {
            return Poll::Ready(Some(Err(ClientBodyError::Stalled(this.stall.limit()))));
        }
        let up = &this.upload;
        up.client_turn.store(polled.is_pending(), Ordering::Relaxed);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            up.pieces.fetch_add(1, Ordering::Relaxed);
        }
        // hyper stops polling once `is_end_stream` says so, so the end is noted here too.
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            up.sent.cancel();
        }
        polled.map(|f| f.map(|r| r.map_err(ClientBodyError::Read)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Waits for an upstream's response head, `None` when the time ran out. While the request body
/// is on its way, an upload that keeps moving or waits for the client (whose stalls are
/// `--client-body-timeout`'s) may take as long as it takes, and an upstream that takes nothing
/// for a whole `limit` ends it (nginx's `proxy_send_timeout`; checked once per `limit`, so it
/// is noticed within two); once the body is sent, the response head is owed within `limit`
/// (`proxy_read_timeout`).
async fn response_within<F: Future>(
    limit: Duration,
    upload: &Upload,
    send: F,
) -> Option<F::Output> {
    tokio::pin!(send);
    let mut seen = upload.pieces.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            biased;
            r = &mut send => return Some(r),
            _ = upload.sent.cancelled() => break,
            _ = tokio::time::sleep(limit) => {
                let now = upload.pieces.load(Ordering::Relaxed);
                if now == seen && !upload.client_turn.load(Ordering::Relaxed) {
                    return None;
                }
                seen = now;
            }
        }
    }
    tokio::time::timeout(limit, send).await.ok()
}

/// The error and its sources, outermost first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn source_is<T: std::error::Error + 'static>(e: &hyper::Error) -> bool {
    chain(e).any(|s| s.is::<T>())
}

/// The upstream connection closed or was reset before a response arrived.
fn closed_without_response(e: &hyper::Error) -> bool {
    if source_is::<ClientBodyError>(e) {
        return false;
    }
    chain(e).any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
            || s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            })
    })
}

fn body_too_large(e: &hyper::Error) -> bool {
    source_is::<http_body_util::LengthLimitError>(e)
}

fn class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
