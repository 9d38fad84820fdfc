//! The data plane: HTTP and HTTPS listeners and the reverse-proxy request path. Knows nothing
//! of Kubernetes: it is given a table handle and a certificate store.

/// Implements `AsyncWrite` for a stream wrapper by passing every call to its `inner` field.
macro_rules! delegate_async_write {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

mod body;
mod deadline;
mod error;
mod h1;
mod h2_send;
mod headers;
mod listener;
mod pool;
mod relay;
mod service;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::routes::RouteTable;
use crate::telemetry::Metrics;
use crate::tls::Store;

pub use body::Body;
pub use error::{ProxyError, error_response};
pub use listener::{serve_http, serve_https};

/// Boxed error of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP-01 challenge answers (token → key authorization), published by the ACME module and
/// answered by every replica.
pub type Http01Answers = Arc<ArcSwap<std::collections::HashMap<String, String>>>;

/// Data-plane settings; they come from flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time allowed to connect to an upstream endpoint.
    pub connect_timeout: Duration,
    /// Time allowed from sending a request upstream (its body included) to its response head.
    pub response_timeout: Duration,
    /// Time allowed for a client to send a complete request head.
    pub client_header_timeout: Duration,
    /// Time a client's request body may go without data on its way upstream.
    pub client_body_timeout: Duration,
    /// Time writes to a client may wait for it to read.
    pub client_send_timeout: Duration,
    /// Idle client keep-alive connections are closed after this long.
    pub keepalive_timeout: Duration,
    /// Time allowed for a client to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Most client connections open at once (per listener); more wait in the accept queue.
    pub max_connections: usize,
    /// Plain HTTP/1.1 requests take the fast path (`h1`) where they suit it.
    pub http1_fast_path: bool,
    /// Most concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
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
            client_body_timeout: Duration::from_secs(60),
            client_send_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 65536,
            http1_fast_path: true,
            max_concurrent_streams: 256,
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
    /// Idle upstream sockets of the HTTP/1.1 fast path.
    sockets: Arc<pool::Pool<tokio::net::TcpStream>>,
    challenges: Http01Answers,
}

impl Proxy {
    /// A proxy over a swappable table and certificate store.
    pub fn new(
        config: Config,
        table: Arc<ArcSwap<RouteTable>>,
        certs: Arc<ArcSwap<Store>>,
        metrics: Arc<Metrics>,
        challenges: Http01Answers,
    ) -> Arc<Self> {
        let client = service::Upstream::new(&config);
        let sockets = pool::Pool::new(config.connect_timeout, config.upstream_idle_timeout);
        Arc::new(Self {
            sockets,
            config,
            table,
            certs,
            metrics,
            client,
            challenges,
        })
    }
}
