//! The data plane: HTTP and HTTPS listeners and the reverse-proxy request path. Knows nothing
//! of Kubernetes: it is given a table handle and a certificate store.

mod error;
mod headers;
mod listener;
mod service;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use ipnet::IpNet;

use crate::routes::RouteTable;
use crate::telemetry::Metrics;
use crate::tls::Store;

pub use error::{ProxyError, error_response};
pub use listener::{serve_http, serve_https};

/// Boxed error of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type on both sides of the proxy.
pub type Body = BoxBody<Bytes, BoxError>;

/// Data-plane settings; they come from flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time allowed to connect to an upstream endpoint.
    pub connect_timeout: Duration,
    /// Time allowed from sending a request upstream to its response head.
    pub response_timeout: Duration,
    /// Time allowed for a client to send a complete request head.
    pub client_header_timeout: Duration,
    /// Idle upstream connections are closed after this long.
    pub upstream_idle_timeout: Duration,
    /// Largest request head (request line + headers), bytes.
    pub max_header_bytes: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: u64,
    /// Peers whose X-Forwarded-* headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The port HTTP → HTTPS redirects point to (443 is left out of the URL).
    pub https_redirect_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            client_header_timeout: Duration::from_secs(30),
            upstream_idle_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 100 * 1024 * 1024,
            trusted_proxies: Vec::new(),
            https_redirect_port: 443,
        }
    }
}

/// Everything the request path shares: the live table, certificates, the upstream pool.
#[derive(Debug)]
pub struct Proxy {
    config: Config,
    table: Arc<ArcSwap<RouteTable>>,
    certs: Arc<ArcSwap<Store>>,
    metrics: Arc<Metrics>,
    client: service::Upstream,
}

impl Proxy {
    /// A proxy over a swappable table and certificate store.
    pub fn new(
        config: Config,
        table: Arc<ArcSwap<RouteTable>>,
        certs: Arc<ArcSwap<Store>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let client = service::Upstream::new(&config);
        Arc::new(Self {
            config,
            table,
            certs,
            metrics,
            client,
        })
    }
}
