//! Accept loops for the HTTP and HTTPS listeners, with graceful draining on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Proxy;
use super::service::ConnInfo;
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
    let builder = Arc::new(builder(&proxy));
    let graceful = GracefulShutdown::new();
    let tracker = TaskTracker::new();
    loop {
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
        let (proxy, builder, graceful, tls, label) = (
            proxy.clone(),
            builder.clone(),
            graceful.watcher(),
            tls.clone(),
            label.clone(),
        );
        tracker.spawn(async move {
            let gauge = proxy.metrics.open_connections.get_or_create_owned(&label);
            gauge.inc();
            serve_conn(proxy, builder, graceful, tls, stream, peer, local_port).await;
            gauge.dec();
        });
    }
    drop(listener);
    tracker.close();
    let drain = async {
        graceful.shutdown().await;
        tracker.wait().await;
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(
            listener = label.listener,
            "grace period over; closing remaining connections"
        );
    }
}

fn builder(proxy: &Proxy) -> auto::Builder<TokioExecutor> {
    let cfg = &proxy.config;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.client_header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

async fn serve_conn(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Watcher,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    local_port: u16,
) {
    let mut info = ConnInfo {
        peer,
        local_port,
        sni: None,
        tls: tls.is_some(),
    };
    match tls {
        None => {
            let info = Arc::new(info);
            let svc = service_fn(move |req| {
                let (proxy, info) = (proxy.clone(), info.clone());
                async move { Ok::<_, Infallible>(proxy.handle(req, &info).await) }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let _ = graceful.watch(conn.into_owned()).await;
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(proxy.config.tls_handshake_timeout, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            info.sni = stream.get_ref().1.server_name().map(str::to_owned);
            let info = Arc::new(info);
            let svc = service_fn(move |req| {
                let (proxy, info) = (proxy.clone(), info.clone());
                async move { Ok::<_, Infallible>(proxy.handle(req, &info).await) }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let _ = graceful.watch(conn.into_owned()).await;
        }
    }
}
