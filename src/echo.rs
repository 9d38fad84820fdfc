//! A small echo backend, for the quickstart and for tests: answers every request with a JSON
//! description of what it received, echoes WebSocket messages on `/ws`, and can be told to
//! delay (a path ending in `/delay/<ms>`) or answer a given status (`.../status/<code>`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

/// Serves echo responses named `name` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, name: String, shutdown: CancellationToken) {
    let name: std::sync::Arc<str> = name.into();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
        };
        let _ = stream.set_nodelay(true);
        let name = name.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let name = name.clone();
                async move { Ok::<_, Infallible>(answer(&name, req).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn answer(name: &str, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        h.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert("sec-websocket-accept", v);
        }
        return r;
    }
    let mut status = StatusCode::OK;
    if let Some(ms) = path
        .rsplit_once("/delay/")
        .and_then(|(_, s)| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    }
    if let Some(code) = path
        .rsplit_once("/status/")
        .and_then(|(_, s)| s.parse::<u16>().ok())
    {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_owned())
            .and_modify(|e| *e = format!("{e}, {v}"))
            .or_insert(v);
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let body_bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let body = serde_json::json!({
        "backend": name,
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
