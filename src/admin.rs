//! The admin listener: `/healthz`, `/readyz` (with problem detail) and `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// What `/readyz` reports.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Whether a routing table is live and traffic may be sent here.
    pub ready: bool,
    /// Why not, when not ready.
    pub reason: String,
    /// Configuration problems and manifest errors, one per line.
    pub detail: Vec<String>,
}

/// State shared between the controller and the admin listener.
#[derive(Debug)]
pub struct AdminState {
    /// Current readiness; swapped by the reload loop and on shutdown.
    pub readiness: ArcSwap<Readiness>,
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
}

impl AdminState {
    /// Not ready, with `reason`.
    pub fn new(metrics: Arc<Metrics>, reason: &str) -> Arc<Self> {
        Arc::new(Self {
            readiness: ArcSwap::from_pointee(Readiness {
                ready: false,
                reason: reason.into(),
                detail: vec![],
            }),
            metrics,
        })
    }
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(state: Arc<AdminState>, listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn answer(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    match req.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into(), PLAIN),
        "/readyz" => {
            let r = state.readiness.load();
            let mut body = if r.ready {
                "ready\n".to_owned()
            } else {
                format!("not ready: {}\n", r.reason)
            };
            for line in &r.detail {
                body.push_str(line);
                body.push('\n');
            }
            let status = if r.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, body, PLAIN)
        }
        "/metrics" => text(
            StatusCode::OK,
            state.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => text(StatusCode::NOT_FOUND, "404 Not Found\n".into(), PLAIN),
    }
}
