//! The request path: route, check, forward, answer, log.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::error::{ProxyError, error_response};
use super::headers::{Forwarding, ensure_request_id, is_upgrade, set_forwarding, strip_hop_by_hop};
use super::{Body, BoxError, Config, Proxy};
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

/// The pooled HTTP/1.1 client to upstream endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    client: Client<HttpConnector, Body>,
}

impl Upstream {
    pub(crate) fn new(cfg: &Config) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.upstream_idle_timeout)
            .pool_max_idle_per_host(usize::MAX)
            .set_host(false)
            .build(connector);
        Self { client }
    }
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
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let raw_host = request_host(&req);
        let table = self.table.load();
        let mut outcome = Outcome {
            route: None,
            upstream: None,
        };
        let result = self
            .route_and_forward(req, conn, &table, raw_host.clone(), &mut outcome)
            .await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                if !e.is_client_error() && !matches!(e, ProxyError::NoRoute) {
                    tracing::debug!(error = %e, "request failed");
                }
                e.into_response()
            }
        };
        resp.headers_mut()
            .insert(super::headers::X_REQUEST_ID.clone(), request_id.clone());
        let status = resp.status();
        let elapsed = start.elapsed();
        let (ingress, service) = outcome
            .route
            .map(|r| (r.ingress.to_string(), r.backend.service().to_owned()))
            .unwrap_or_default();
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                ingress: ingress.clone(),
                service: service.clone(),
                status: class(status),
            })
            .inc();
        self.metrics.request_duration.observe(elapsed.as_secs_f64());
        tracing::info!(
            target: "access",
            client = %conn.peer.ip(),
            method = %method,
            host = raw_host.as_deref().unwrap_or(""),
            path = %path,
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            ingress = %ingress,
            service = %service,
            upstream = %outcome.upstream.map(|a| a.to_string()).unwrap_or_default(),
            request_id = request_id.to_str().unwrap_or(""),
            "request"
        );
        resp
    }

    async fn route_and_forward<'t>(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        table: &'t crate::routes::RouteTable,
        raw_host: Option<String>,
        outcome: &mut Outcome<'t>,
    ) -> Result<Response<Body>, ProxyError> {
        if req.headers().get_all(header::HOST).iter().count() > 1 {
            return Err(ProxyError::BadRequest("more than one Host header"));
        }
        let host = match raw_host.as_deref() {
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
        if has_dot_segment(path) {
            return Err(ProxyError::BadRequest("dot-segment in path"));
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
            && conn
                .sni
                .as_deref()
                .is_none_or(|s| !s.eq_ignore_ascii_case(h))
        {
            let certs = self.certs.load();
            if certs.select(Some(h)).id != certs.select(conn.sni.as_deref()).id {
                return Err(ProxyError::Misdirected);
            }
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
            Backend::Endpoints { .. } => {
                let (start, addrs) = route
                    .backend
                    .pick()
                    .expect("endpoints backend has addresses");
                (0..addrs.len().min(3))
                    .map(|i| UpstreamTarget::Addr(addrs[(start + i) % addrs.len()]))
                    .collect()
            }
        };
        self.forward(
            req,
            conn,
            raw_host.as_deref().unwrap_or(""),
            route,
            &targets,
            outcome,
        )
        .await
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
        strip_hop_by_hop(&mut parts.headers, upgrade);
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
        let bodyless = body.is_end_stream();
        let limit = usize::try_from(self.config.max_body_bytes).unwrap_or(usize::MAX);
        let mut body = Some(Limited::new(body, limit).boxed());
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());

        let mut last_err = None;
        for (attempt, target) in targets.iter().enumerate() {
            if attempt > 0 && !bodyless {
                break;
            }
            let uri: Uri = match target {
                UpstreamTarget::Addr(a) => format!("http://{a}{pq}"),
                UpstreamTarget::Name(n) => format!("http://{n}{pq}"),
            }
            .parse()
            .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
            let mut up = Request::from_parts(parts.clone(), Body::default());
            *up.uri_mut() = uri;
            *up.body_mut() = body
                .take()
                .unwrap_or_else(|| Empty::<Bytes>::new().map_err(|e| match e {}).boxed());
            outcome.upstream = match target {
                UpstreamTarget::Addr(a) => Some(*a),
                UpstreamTarget::Name(_) => None,
            };
            let sent =
                tokio::time::timeout(self.config.response_timeout, self.client.client.request(up))
                    .await;
            let resp = match sent {
                Err(_) => return Err(ProxyError::Timeout),
                Ok(Err(e)) if e.is_connect() => {
                    self.metrics
                        .upstream_connect_errors
                        .get_or_create(&ServiceLabel {
                            service: route.backend.service().to_owned(),
                        })
                        .inc();
                    tracing::warn!(upstream = ?outcome.upstream, service = route.backend.service(), error = %e, "upstream connect failed");
                    last_err = Some(ProxyError::Connect(e));
                    continue;
                }
                Ok(Err(e)) => {
                    if body_too_large(&e) {
                        return Err(ProxyError::BodyTooLarge);
                    }
                    return Err(ProxyError::Upstream(e));
                }
                Ok(Ok(r)) => r,
            };
            return Ok(self.respond(resp, client_upgrade));
        }
        Err(last_err.unwrap_or(ProxyError::Unavailable("no endpoint")))
    }

    fn respond(
        &self,
        mut resp: Response<Incoming>,
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
        Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
    }
}

/// Where ACME HTTP-01 challenges are fetched.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

fn challenge_response(key_authorization: &str) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(key_authorization.to_owned()));
    let mut resp = Response::new(body.map_err(|e| match e {}).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

enum UpstreamTarget {
    Addr(SocketAddr),
    Name(String),
}

/// The authority the client asked for: the URI's (HTTP/2 `:authority`, absolute-form) or Host.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn body_too_large(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = s.source();
    }
    false
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
