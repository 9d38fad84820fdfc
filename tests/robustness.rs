//! Robustness of the real binary against hostile input, faults and overload
//! (docs/reliability.md). The oracle for every rejected input is a counting backend: a
//! rejected request never reaches it, and the client connection is closed.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.1 backend that counts request heads and complete requests (body fully read) and
/// answers JSON with the path, headers and body length it received; `/delay/<ms>` waits first.
struct Counting {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
    complete: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<serde_json::Value>>>,
    stop: CancellationToken,
}

/// `n` listeners on one port and distinct loopback addresses (127.0.0.2, .3, ...): an
/// EndpointSlice port is shared by all its endpoints, so several endpoints need several IPs.
async fn same_port_listeners(n: u8) -> Vec<TcpListener> {
    'retry: loop {
        let first = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for i in 1..n {
            match TcpListener::bind(SocketAddr::from(([127, 0, 0, 2 + i], port))).await {
                Ok(l) => all.push(l),
                Err(_) => continue 'retry,
            }
        }
        return all;
    }
}

impl Counting {
    async fn start() -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn start_on(l: TcpListener) -> Self {
        let addr = l.local_addr().unwrap();
        let (heads, complete) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let last = Arc::new(Mutex::new(None));
        let stop = CancellationToken::new();
        let (h, c, la, st) = (heads.clone(), complete.clone(), last.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (s, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    a = l.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (h, c, la, st) = (h.clone(), c.clone(), la.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, c, la) = (h.clone(), c.clone(), la.clone());
                        async move { Ok::<_, Infallible>(count_and_answer(req, &h, &c, &la).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = st.cancelled() => {}
                    }
                });
            }
        });
        Counting {
            addr,
            heads,
            complete,
            last,
            stop,
        }
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    fn complete(&self) -> usize {
        self.complete.load(Ordering::SeqCst)
    }

    /// The last request received, as `{path, method, headers, body_bytes}`.
    fn last(&self) -> serde_json::Value {
        self.last.lock().unwrap().clone().unwrap_or_default()
    }

    /// Stops accepting and closes every open connection, answered or not (a killed pod).
    fn kill(&self) {
        self.stop.cancel();
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn count_and_answer(
    req: Request<Incoming>,
    heads: &AtomicUsize,
    complete: &AtomicUsize,
    last: &Mutex<Option<serde_json::Value>>,
) -> Response<Full<Bytes>> {
    heads.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().to_string();
    let method = req.method().to_string();
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        headers.insert(
            k.as_str().to_owned(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
    }
    if let Some(ms) = path
        .rsplit_once("/delay/")
        .and_then(|(_, s)| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Response::new(Full::default()),
    };
    complete.fetch_add(1, Ordering::SeqCst);
    let v = serde_json::json!({
        "path": path, "method": method, "headers": headers, "body_bytes": body.len(),
    });
    *last.lock().unwrap() = Some(v.clone());
    Response::new(Full::new(Bytes::from(v.to_string())))
}

/// A raw-TCP backend that misbehaves after reading a request head: resets the connection
/// (`reset`) or never answers while holding it open (`hang`). Counts heads and open sockets.
struct Faulty {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Faulty {
    async fn start(reset: bool) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), reset)
    }

    fn start_on(l: TcpListener, reset: bool) -> Self {
        let addr = l.local_addr().unwrap();
        let (heads, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = CancellationToken::new();
        let (h, o, st) = (heads.clone(), open.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tokio::select! {
                    _ = st.cancelled() => return,
                    a = l.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (h, o) = (h.clone(), o.clone());
                o.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            h.fetch_add(1, Ordering::SeqCst);
                            buf.clear();
                            if reset {
                                let _ = s.set_zero_linger();
                                break;
                            }
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Faulty {
            addr,
            heads,
            open,
            stop,
        }
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// What came back on one raw connection.
#[derive(Debug)]
struct Answer {
    /// The status of every response, in order.
    statuses: Vec<u16>,
    /// Whether the proxy closed the connection (EOF or reset) within the wait.
    closed: bool,
    text: String,
}

/// Writes `bytes` on a new connection and reads until the proxy closes it or `wait` passes.
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    read_until_close(&mut s, wait).await
}

async fn read_until_close(s: &mut TcpStream, wait: Duration) -> Answer {
    let deadline = Instant::now() + wait;
    let (mut buf, mut closed) = (Vec::new(), false);
    let mut chunk = vec![0u8; 65536];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let statuses = text
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("HTTP/1.1 ").or(l.strip_prefix("HTTP/1.0 ")))
        .filter_map(|l| l.get(..3)?.parse().ok())
        .collect();
    Answer {
        statuses,
        closed,
        text,
    }
}

/// Whether the peer has closed `s`, looking for at most `wait`.
async fn is_closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A manifest directory with the counting backend behind `bad.test` and `other.test`.
async fn bad_input_setup(extra: &[&str]) -> (Counting, Manifests, Portcullis) {
    let c = Counting::start().await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("count", &[c.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("bad", "bad.test", &[("/", "Prefix", "count")]),
    );
    m.write(
        "other.yaml",
        &ingress_yaml("other", "other.test", &[("/", "Prefix", "count")]),
    );
    let p = Portcullis::start(m.path(), extra).await;
    (c, m, p)
}

/// How one bad input must be answered.
#[derive(Debug, Clone, Copy)]
struct Want {
    /// Statuses of the responses, in order.
    statuses: &'static [u16],
    /// The proxy closes the connection by itself (always checked).
    closed: bool,
    /// Request heads the backend receives, at most (a body error may stop the head in the
    /// proxy's write buffer, or not).
    heads: usize,
    /// Requests the backend receives in full (head and body).
    complete: usize,
}

const fn reject(status: &'static [u16]) -> Want {
    Want {
        statuses: status,
        closed: true,
        heads: 0,
        complete: 0,
    }
}
const R400: Want = reject(&[400]);
const R431: Want = reject(&[431]);
const R501: Want = reject(&[501]);
/// The body framing fails after the head was forwarded: the backend sees a head but never a
/// complete request, the client gets 400 and the connection is closed.
const BODY400: Want = Want {
    statuses: &[400],
    closed: true,
    heads: 1,
    complete: 0,
};
/// Accepted and forwarded once (the test sends `Connection: close`).
const ONE200: Want = Want {
    statuses: &[200],
    closed: true,
    heads: 1,
    complete: 1,
};

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: bad.test\r\n{headers}\r\n{body}").into_bytes()
}

fn chunked(body: &str) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", body)
}

fn get_path(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bad.test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Every HTTP/1.1 bad input of robustness.md §3 that a raw socket can send, with the answer
/// Portcullis gives. Ids follow the design's table.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>, Want)> {
    let big_header = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    let many_headers: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_target = format!("/{}", "a".repeat(40 * 1024));
    vec![
        // CL.TE: hyper lets TE win, drops CL and closes after the response; the trailing `G`
        // never becomes a request. RFC 9112 §6.1 allows this instead of a 400.
        (
            "F1 CL.TE",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nG",
            ),
            ONE200,
        ),
        (
            "F1 TE.CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "8\r\nSMUGGLED\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: bad.test\r\n\r\n",
            ),
            ONE200,
        ),
        ("F2 TE gzip", post("Transfer-Encoding: gzip\r\n", ""), R400),
        ("F2 TE cow", post("Transfer-Encoding: cow\r\n", ""), R400),
        (
            "F2 TE chunked, cow",
            post("Transfer-Encoding: chunked, cow\r\n", ""),
            R400,
        ),
        (
            "F3 TE gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            R501,
        ),
        (
            "F4 TE in HTTP/1.0",
            b"POST / HTTP/1.0\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            R400,
        ),
        (
            "F5 two TE chunked",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            R501,
        ),
        (
            "F6 space before colon",
            post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            R400,
        ),
        (
            "F6 leading space",
            b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: bad.test\r\n\r\n0\r\n\r\n"
                .to_vec(),
            R400,
        ),
        (
            "F6 VT before name",
            post("\x0bTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            R400,
        ),
        (
            "F6 VT in value",
            post("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"),
            R400,
        ),
        (
            "F6 quoted",
            post("Transfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"),
            R400,
        ),
        (
            "F6 chunk",
            post("Transfer-Encoding: chunk\r\n", "0\r\n\r\n"),
            R400,
        ),
        (
            "F6 \\xff prefix",
            {
                let mut b = post("Transfer-Encoding: \u{0}chunked\r\n", "0\r\n\r\n");
                let i = b.iter().position(|c| *c == 0).unwrap();
                b[i] = 0xff;
                b
            },
            R400,
        ),
        (
            // Underscore names are dropped before forwarding: framing stays by Content-Length.
            "F6/X5 Transfer_Encoding",
            post(
                "Transfer_Encoding: chunked\r\nContent_Length: 99\r\nContent-Length: 5\r\nConnection: close\r\n",
                "hello",
            ),
            ONE200,
        ),
        ("F7 empty CL", post("Content-Length: \r\n", ""), R400),
        (
            "F8 two CLs",
            post("Content-Length: 1\r\nContent-Length: 0\r\n", "x"),
            R400,
        ),
        (
            "F9 CL 5 twice",
            post(
                "Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n",
                "hello",
            ),
            ONE200,
        ),
        (
            "F9 CL 5, 5",
            post("Content-Length: 5, 5\r\n", "hello"),
            R400,
        ),
        ("F10 CL +5", post("Content-Length: +5\r\n", "hello"), R400),
        ("F10 CL 0x5", post("Content-Length: 0x5\r\n", "hello"), R400),
        ("F10 CL -1", post("Content-Length: -1\r\n", ""), R400),
        ("F10 CL 1_0", post("Content-Length: 1_0\r\n", ""), R400),
        ("F10 CL 1Z", post("Content-Length: 1Z\r\n", ""), R400),
        (
            "F10 CL 20 digits",
            post("Content-Length: 99999999999999999999\r\n", ""),
            R400,
        ),
        ("F11 chunk 0x1", chunked("0x1\r\na\r\n0\r\n\r\n"), BODY400),
        ("F11 chunk +1", chunked("+1\r\na\r\n0\r\n\r\n"), BODY400),
        ("F11 chunk ' 1'", chunked(" 1\r\na\r\n0\r\n\r\n"), BODY400),
        ("F11 chunk 1_0", chunked("1_0\r\na\r\n0\r\n\r\n"), BODY400),
        ("F11 chunk empty", chunked("\r\na\r\n0\r\n\r\n"), BODY400),
        (
            "F11 chunk 17 hex digits",
            chunked("10000000000000000\r\na\r\n0\r\n\r\n"),
            BODY400,
        ),
        (
            "F12 bare LF after size",
            chunked("1\na\r\n0\r\n\r\n"),
            BODY400,
        ),
        (
            "F12 bare CR after size",
            chunked("1\ra\r\n0\r\n\r\n"),
            BODY400,
        ),
        (
            "F12 LF in extension",
            chunked("1;a\nb\r\na\r\n0\r\n\r\n"),
            BODY400,
        ),
        (
            "F12 no CRLF after data",
            chunked("1\r\nab0\r\n\r\n"),
            BODY400,
        ),
        (
            "F12 17 KiB extension",
            chunked(&format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(17 * 1024))),
            BODY400,
        ),
        (
            "F14 valid then garbage",
            b"GET / HTTP/1.1\r\nHost: bad.test\r\n\r\nGARBAGE\x01\r\n\r\n".to_vec(),
            // hyper closes on the unparsable second head without an answer.
            Want {
                statuses: &[200],
                closed: true,
                heads: 1,
                complete: 1,
            },
        ),
        (
            "H1 Content-Length space before colon",
            post("Content-Length : 5\r\n", "hello"),
            R400,
        ),
        ("H2 obs-fold", post("X-A: a\r\n b\r\n", ""), R400),
        ("H3 empty name", post(": x\r\n", ""), R400),
        ("H3 no colon", post("NoColonHere\r\n", ""), R400),
        ("H4 NUL in value", post("X-A: a\0b\r\n", ""), R400),
        ("H4 bare CR in value", post("X-A: a\rb\r\n", ""), R400),
        ("H4 non-token name", post("X(A): b\r\n", ""), R400),
        (
            "H5 bare LF line ends",
            b"GET / HTTP/1.1\nHost: bad.test\nConnection: close\n\n".to_vec(),
            ONE200,
        ),
        (
            "H5 CR CR terminator",
            b"GET / HTTP/1.1\r\nHost: bad.test\r\n\rZ\r\n\r\n".to_vec(),
            R400,
        ),
        ("H6 101 headers", post(&many_headers, ""), R431),
        ("H6 64 KiB header", post(&big_header, ""), R431),
        (
            "H7 40 KiB request-target",
            format!("GET {long_target} HTTP/1.1\r\nHost: bad.test\r\n\r\n").into_bytes(),
            R431,
        ),
        (
            "H8 LF in request line",
            b"GET /\nHTTP/1.1\r\nHost: bad.test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H8 target !",
            b"GET ! HTTP/1.1\r\nHost: bad.test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H8 HTTP/1.32",
            b"GET / HTTP/1.32\r\nHost: bad.test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H8 HTTP/4294967295.255",
            b"GET / HTTP/4294967295.255\r\nHost: bad.test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H9 no Host in HTTP/1.1",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H9 two Hosts",
            b"GET / HTTP/1.1\r\nHost: bad.test\r\nHost: other.test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H10 userinfo in Host",
            b"GET / HTTP/1.1\r\nHost: u@bad.test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H10 slash in Host",
            b"GET / HTTP/1.1\r\nHost: bad.test/x\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H10 space in Host",
            b"GET / HTTP/1.1\r\nHost: bad test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H12 relative target",
            b"GET admin HTTP/1.1\r\nHost: bad.test\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "H12 * with GET",
            b"GET * HTTP/1.1\r\nHost: bad.test\r\n\r\n".to_vec(),
            R400,
        ),
        ("H13 < in target", get_path("/a<b"), R400),
        ("H13 > in target", get_path("/a>b"), R400),
        // Unencoded `# \ ^ { } | `` ` are taken (see hosts_and_paths_route_as_specified).
        ("H13 # in target", get_path("/a#b"), ONE200),
        ("H13 {|} in target", get_path("/a{|}b"), ONE200),
        ("H13 ` in target", get_path("/a`b"), R400),
        ("H13 control byte in target", get_path("/a\x01b"), R400),
        ("H14 /..", get_path("/public/../admin"), R400),
        ("H14 /%2e%2e", get_path("/public/%2e%2e/admin"), R400),
        ("H14 /%2E%2E%2f", get_path("/public%2f%2E%2E%2fadmin"), R400),
        ("H14 /.", get_path("/./admin"), R400),
        ("H14 \\..", get_path("/public%5c..%5cadmin"), R400),
        ("H14 %00", get_path("/admin%00"), R400),
        (
            "H16 CONNECT",
            b"CONNECT bad.test:443 HTTP/1.1\r\nHost: bad.test:443\r\n\r\n".to_vec(),
            R400,
        ),
        (
            "R5 Content-Length over the limit",
            post("Content-Length: 2000\r\n", &"x".repeat(2000)),
            reject(&[413]),
        ),
        (
            "R5 chunked body over the limit",
            chunked(&format!("7d0\r\n{}\r\n0\r\n\r\n", "x".repeat(2000))),
            Want {
                statuses: &[413],
                closed: true,
                heads: 1,
                complete: 0,
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_http1_inputs_are_refused_and_never_reach_the_backend() {
    let (c, _m, p) = bad_input_setup(&["--max-request-body-bytes", "1000"]).await;
    let mut failures = Vec::new();
    let cases = bad_inputs();
    for (name, bytes, want) in &cases {
        let (h0, c0) = (c.heads(), c.complete());
        let got = exchange(p.http, bytes, Duration::from_secs(5)).await;
        // The backend finishes its side (an aborted body) asynchronously; let it settle.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (heads, complete) = (c.heads() - h0, c.complete() - c0);
        if got.statuses != want.statuses
            || got.closed != want.closed
            || heads > want.heads
            || complete != want.complete
        {
            failures.push(format!(
                "{name}: want {want:?}; got statuses {:?} closed {} heads {heads} complete {complete}: {:?}",
                got.statuses,
                got.closed,
                got.text.chars().take(200).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} HTTP/1.1 bad inputs answered as specified", cases.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggled_framing_never_reaches_the_backend_as_framing() {
    let (c, _m, p) = bad_input_setup(&[]).await;
    // TE.CL: the body the backend receives is the chunked body, re-framed; no CL of 3.
    let got = exchange(
        p.http,
        &post(
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            "8\r\nSMUGGLED\r\n0\r\n\r\n",
        ),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got.statuses, [200]);
    let last = c.last();
    assert_eq!(last["body_bytes"], 8, "{last}");
    assert!(last["headers"].get("content-length").is_none(), "{last}");
    // Underscore names never reach the backend.
    let got = exchange(
        p.http,
        &post(
            "Transfer_Encoding: chunked\r\nX_Forwarded_For: 6.6.6.6\r\nContent-Length: 5\r\nConnection: close\r\n",
            "hello",
        ),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got.statuses, [200]);
    let last = c.last();
    assert_eq!(last["body_bytes"], 5, "{last}");
    let names: Vec<&String> = last["headers"].as_object().unwrap().keys().collect();
    assert!(names.iter().all(|n| !n.contains('_')), "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_and_paths_route_as_specified() {
    let (c, _m, p) = bad_input_setup(&[]).await;
    let send_raw = |req: String| {
        let addr = p.http;
        async move { exchange(addr, req.as_bytes(), Duration::from_secs(5)).await }
    };
    // H15: case, port and one trailing dot are ignored for routing; Host is forwarded as sent.
    for host in ["BAD.TEST", "bad.test:8080", "bad.test.", "Bad.Test.:1"] {
        let got = send_raw(format!(
            "GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_eq!(got.statuses, [200], "{host}: {}", got.text);
        assert_eq!(c.last()["headers"]["host"], host);
    }
    // Paths are case-sensitive and matched as received: these reach the backend literally.
    for path in [
        "/a%2Fb",
        "/a%5Cb",
        "//admin",
        "/admin;x",
        "/%2e%2e%2e/x",
        "/..x/y",
        "/a\\b",
        "/a^b",
        "/a{b}",
        "/a|b",
    ] {
        let got = send_raw(format!(
            "GET {path} HTTP/1.1\r\nHost: bad.test\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_eq!(got.statuses, [200], "{path}: {}", got.text);
        assert_eq!(c.last()["path"], path, "forwarded path equals matched path");
    }
    // A fragment is cut by the URI parser before routing, so routed and forwarded alike.
    let got =
        send_raw("GET /a#/../admin HTTP/1.1\r\nHost: bad.test\r\nConnection: close\r\n\r\n".into())
            .await;
    assert_eq!(got.statuses, [200], "{}", got.text);
    assert_eq!(c.last()["path"], "/a");
    // H11: an absolute-form target's authority wins, for routing and for the forwarded Host.
    let got = send_raw(
        "GET http://other.test/abs HTTP/1.1\r\nHost: bad.test\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(got.statuses, [200], "{}", got.text);
    assert_eq!(c.last()["headers"]["host"], "other.test");
    // HTTP/1.0 may omit Host: the host-less rules (none here) apply, so 404, never the backend.
    let h0 = c.heads();
    let got = send_raw("GET / HTTP/1.0\r\n\r\n".into()).await;
    assert_eq!(got.statuses, [404]);
    assert_eq!(c.heads(), h0);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_headers_cannot_remove_or_forge_forwarding_headers() {
    let (c, _m, p) = bad_input_setup(&[]).await;
    // X1: Connection-nominated removal of the headers we set.
    let got = exchange(
        p.http,
        b"GET / HTTP/1.1\r\nHost: bad.test\r\nConnection: close, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP, X-Request-Id, Forwarded\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got.statuses, [200]);
    let h = &c.last()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-proto"], "http", "{h}");
    assert_eq!(h["x-forwarded-host"], "bad.test", "{h}");
    assert_eq!(h["x-real-ip"], "127.0.0.1", "{h}");
    assert!(h.get("x-request-id").is_some(), "{h}");
    // X2: an untrusted peer's forwarding claims are replaced or dropped.
    let got = exchange(
        p.http,
        b"GET / HTTP/1.1\r\nHost: bad.test\r\nX-Forwarded-For: 198.18.255.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /admin\r\nForwarded: for=198.18.255.7;proto=https\r\nX-Real-IP: 198.18.255.7\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got.statuses, [200]);
    let h = &c.last()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-proto"], "http", "{h}");
    assert_eq!(h["x-real-ip"], "127.0.0.1", "{h}");
    assert!(h.get("forwarded").is_none(), "{h}");
    assert!(h.get("x-forwarded-prefix").is_none(), "{h}");
    // X3: an h2c upgrade is stripped, never tunnelled.
    let got = exchange(
        p.http,
        b"GET / HTTP/1.1\r\nHost: bad.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got.statuses, [200]);
    let h = &c.last()["headers"];
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(h.get(name).is_none(), "{name} reached the backend: {h}");
    }
}

// ---------------------------------------------------------------------------------------------
// Timeouts and the connection cap
// ---------------------------------------------------------------------------------------------

/// Seconds of slack on top of a product timeout before a test calls it missed.
const SLACK: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_are_closed_at_their_timeouts() {
    let head = Duration::from_secs(1);
    let idle = Duration::from_secs(3);
    let (c, _m, p) = bad_input_setup(&[
        "--client-header-timeout",
        "1s",
        "--keepalive-timeout",
        "3s",
        "--tls-handshake-timeout",
        "1s",
    ])
    .await;
    let h0 = c.heads();

    // Slowloris: one header byte every 200 ms is closed at the header timeout.
    let slow = async {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: bad.test\r\n")
            .await
            .unwrap();
        loop {
            if s.write_all(b"X-Slow: 1\r\n").await.is_err()
                || is_closed(&mut s, Duration::from_millis(200)).await
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < head + SLACK,
                "slowloris connection still open"
            );
        }
    };
    // Nothing at all on plain HTTP (hyper-util's protocol sniffing has no timer of its own),
    // half an HTTP/2 preface, nothing after a TCP connect to HTTPS, half a ClientHello.
    let silent = |addr: SocketAddr, bytes: &'static [u8]| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        s.write_all(bytes).await.unwrap();
        assert!(is_closed(&mut s, head + SLACK).await, "{bytes:?} to {addr}");
        start.elapsed()
    };
    let (slow, nothing, preface, tls_nothing, tls_half) = tokio::join!(
        slow,
        silent(p.http, b""),
        silent(p.http, b"PRI * HTTP/2.0\r\n"),
        silent(p.https, b""),
        silent(p.https, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    );
    for (what, took) in [
        ("slowloris", slow),
        ("silent HTTP", nothing),
        ("half h2 preface", preface),
        ("silent TLS", tls_nothing),
        ("half ClientHello", tls_half),
    ] {
        assert!(took >= head.mul_f32(0.9), "{what} closed early: {took:?}");
    }

    // TLS done, then no request head: the header timeout.
    let (mut tls, _) = tls_connect(p.https, "bad.test", &[b"http/1.1"]).await;
    let start = Instant::now();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(head + SLACK, tls.read(&mut b)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "TLS connection without a head: {n:?}"
    );
    assert!(start.elapsed() >= head.mul_f32(0.9));

    // Keep-alive: idle after a response for longer than the header timeout, still open; closed
    // at the keep-alive timeout.
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: bad.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_from = Instant::now();
    assert!(
        !is_closed(&mut s, head * 2).await,
        "closed at the header timeout, not the keep-alive timeout"
    );
    assert!(
        is_closed(&mut s, idle + SLACK).await,
        "idle keep-alive not closed"
    );
    assert!(idle_from.elapsed() >= idle.mul_f32(0.9));

    // A request between keep-alive idles resets the clock.
    let mut s = TcpStream::connect(p.http).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: bad.test\r\n\r\n")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(!is_closed(&mut s, Duration::from_millis(10)).await);

    // HTTP/2: idle after its last stream, GOAWAY and close at the keep-alive timeout.
    let tcp = TcpStream::connect(p.http).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let r = tx
        .send_request(
            Request::get("http://bad.test/")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(idle + SLACK, conn).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection not closed");
    assert!(idle_from.elapsed() >= idle.mul_f32(0.9));

    // Only the three well-formed requests and the HTTP/2 one reached the backend.
    assert_eq!(c.heads() - h0, 4);
}

/// A backend that answers every request head with a body that never ends, and counts the
/// responses it stopped because the other end went away.
async fn firehose() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let cut = Arc::new(AtomicUsize::new(0));
    let c = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let (mut head, mut b) = (Vec::new(), [0u8; 4096]);
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n")
                    .await;
                let piece = vec![b'x'; 64 * 1024];
                while s.write_all(&piece).await.is_ok() {}
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, cut)
}

/// Waits until `n` has reached `want`, for at most `within`.
async fn reaches(n: &AtomicUsize, want: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while n.load(Ordering::SeqCst) < want {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_uploads_and_clients_that_never_read_are_bounded() {
    let limit = Duration::from_secs(1);
    let c = Counting::start().await;
    // Reads a request head, then nothing more, holding the connection open.
    let deaf = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang = deaf.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = deaf.accept().await {
            let _ = s.read(&mut [0u8; 4096]).await;
            held.push(s);
        }
    });
    let (hose, cut) = firehose().await;
    let m = Manifests::new();
    m.write("count.yaml", &service_yaml("count", &[c.addr]));
    m.write("hang.yaml", &service_yaml("hang", &[hang]));
    m.write("hose.yaml", &service_yaml("hose", &[hose]));
    m.write(
        "ing.yaml",
        &ingress_yaml(
            "bad",
            "bad.test",
            &[
                ("/", "Prefix", "count"),
                ("/hang", "Prefix", "hang"),
                ("/hose", "Prefix", "hose"),
            ],
        ),
    );
    let p = Portcullis::start(
        m.path(),
        &[
            "--client-body-timeout",
            "1s",
            "--client-send-timeout",
            "2s",
            "--upstream-response-timeout",
            "1s",
        ],
    )
    .await;
    let chunked = "POST /up HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n";

    // An upload that keeps coming, a piece every 600 ms for 3 s: longer than the response
    // timeout in all, which counts only once the body is sent.
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(chunked.as_bytes()).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        s.write_all(b"3\r\nabc\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let a = read_until_close(&mut s, Duration::from_secs(2)).await;
    assert_eq!(a.statuses, [200], "slow but steady upload: {}", a.text);
    assert_eq!(c.last()["body_bytes"], 15);

    // An upload that stops: 408 at the client body timeout, and the connection is closed.
    let complete = c.complete();
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(format!("{chunked}3\r\nabc\r\n").as_bytes())
        .await
        .unwrap();
    let start = Instant::now();
    let a = read_until_close(&mut s, limit + SLACK).await;
    assert_eq!(a.statuses, [408], "stalled upload: {}", a.text);
    assert!(a.closed, "connection left open after 408");
    assert!(start.elapsed() >= limit.mul_f32(0.9), "408 too early");
    assert_eq!(
        c.complete(),
        complete,
        "a cut body reached the backend whole"
    );

    // An upstream that takes nothing of a large body: 504 within two response timeouts of
    // the point where the buffers are full, not a wait without end.
    let mut s = TcpStream::connect(p.http).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let head = "POST /hang HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 67108864\r\n\r\n";
    let feed = async {
        wr.write_all(head.as_bytes()).await.unwrap();
        let piece = vec![b'y'; 64 * 1024];
        for _ in 0..1024 {
            if wr.write_all(&piece).await.is_err() {
                break;
            }
        }
    };
    let answer = async {
        let mut b = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut b)).await;
        match n {
            Ok(Ok(n)) => String::from_utf8_lossy(&b[..n]).into_owned(),
            other => format!("{other:?}"),
        }
    };
    let answer = tokio::select! {
        a = answer => a,
        _ = async { feed.await; std::future::pending::<()>().await } => unreachable!(),
    };
    assert!(
        answer.starts_with("HTTP/1.1 504"),
        "upstream that reads no body: {answer}"
    );
    drop(s);

    // A client that reads in bursts with pauses is never cut: 1 MiB every 250 ms. (Slow for
    // loopback; a writer is woken only once a third of its send buffer, which grows to
    // megabytes here, is free, and a receiver reopens a closed window only once a sixteenth of
    // its buffer is, so its buffer is kept small.)
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    let mut s = sock.connect(p.http).await.unwrap();
    s.write_all(b"GET /hose HTTP/1.1\r\nHost: bad.test\r\n\r\n")
        .await
        .unwrap();
    let mut b = vec![0u8; 1024 * 1024];
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.read_exact(&mut b).await.expect("a slow reader is served");
    }
    assert_eq!(cut.load(Ordering::SeqCst), 0, "a slow reader was cut");
    drop(s);
    assert!(reaches(&cut, 1, SLACK).await);

    // Clients that never read what they asked for are disconnected at the send timeout, and
    // the upstream response is abandoned: the HTTP/1.1 fast path, the general path (a chunked
    // request body), HTTP/2 with windows wide open.
    let mut never = Vec::new();
    for req in [
        "GET /hose HTTP/1.1\r\nHost: bad.test\r\n\r\n",
        "POST /hose HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        never.push(s);
    }
    let mut h2 = H2::open(p.http).await;
    let mut settings = vec![0, 4]; // SETTINGS_INITIAL_WINDOW_SIZE
    settings.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let update = (0x7fff_ffffu32 - 65_535).to_be_bytes();
    h2.s.write_all(
        &[
            frame(SETTINGS, 0, 0, &settings),
            frame(WINDOW_UPDATE, 0, 0, &update),
            frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_block("/hose")),
        ]
        .concat(),
    )
    .await
    .unwrap();
    assert!(
        reaches(&cut, 4, Duration::from_secs(20)).await,
        "clients that never read still served: {} of 3 cut",
        cut.load(Ordering::SeqCst) - 1
    );
    for mut s in never.into_iter().chain([h2.s]) {
        assert!(
            is_closed(&mut s, Duration::from_secs(10)).await,
            "connection of a client that never read left open"
        );
    }

    // HTTP/2 clients that read their connection but never open the stream's window (none at
    // all; the default 65,535 bytes, never updated): the stream is reset at the send timeout
    // and the upstream response abandoned, while the connection stays usable.
    for (n, window) in [0u32, 65_535].into_iter().enumerate() {
        let mut h2 = H2::open(p.http).await;
        let mut settings = vec![0, 4]; // SETTINGS_INITIAL_WINDOW_SIZE
        settings.extend_from_slice(&window.to_be_bytes());
        h2.s.write_all(
            &[
                frame(SETTINGS, 0, 0, &settings),
                frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_block("/hose")),
            ]
            .concat(),
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut head_at, mut data) = (None, 0);
        let reset = loop {
            match h2.next(deadline).await {
                Some((HEADERS, _, 1, _)) => head_at = Some(Instant::now()),
                Some((DATA, _, 1, p)) => data += p.len(),
                Some((RST_STREAM, _, 1, p)) => {
                    break Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                }
                Some(_) => {}
                None => break None,
            }
        };
        let head_at = head_at.expect("response head sent before the window closed");
        assert_eq!(reset, Some(0x8), "window {window}: stream not cancelled");
        assert!(
            head_at.elapsed() >= Duration::from_secs(2).mul_f32(0.9),
            "cancelled early"
        );
        assert!(
            data <= window as usize,
            "window {window}: {data} bytes sent"
        );
        assert!(
            reaches(&cut, 5 + n, SLACK).await,
            "window {window}: upstream response not abandoned"
        );
        h2.s.write_all(&frame(PING, 0, 0, b"stillup!"))
            .await
            .unwrap();
        let deadline = Instant::now() + SLACK;
        let pong = loop {
            match h2.next(deadline).await {
                Some((PING, f, 0, p)) if f & ACK != 0 => break Some(p),
                Some(_) => {}
                None => break None,
            }
        };
        assert_eq!(
            pong.as_deref(),
            Some(&b"stillup!"[..]),
            "connection closed with the stream"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_wait_until_a_slot_frees() {
    let (c, _m, p) = bad_input_setup(&["--max-connections", "2"]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: bad.test\r\n\r\n")
            .await
            .unwrap();
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).await.unwrap();
        assert!(b[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &b[..n]);
        held.push(s);
    }
    let h0 = c.heads();
    // The third connection completes in the kernel but is not served while two are open.
    let mut third = TcpStream::connect(p.http).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: bad.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_until_close(&mut third, Duration::from_secs(1)).await;
    assert!(early.statuses.is_empty(), "served over the cap: {early:?}");
    assert_eq!(c.heads(), h0);
    // Closing one held connection frees a slot: the waiting one is served.
    drop(held.pop());
    let late = read_until_close(&mut third, Duration::from_secs(10)).await;
    assert_eq!(late.statuses, [200], "{late:?}");
    let metrics = get(p.admin, "admin", "/metrics").await.unwrap().text();
    let open: f64 = metrics
        .lines()
        .find(|l| l.starts_with("portcullis_open_connections{listener=\"http\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("open connections gauge");
    assert!(open <= 2.0, "{open} open connections");
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 (h2c with prior knowledge, raw frames)
// ---------------------------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a `prefix`-bit prefix and the given high bits.
fn hpack_int(out: &mut Vec<u8>, high: u8, prefix: u32, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(high | v as u8);
        return;
    }
    out.push(high | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, new name, no Huffman.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// The header block of `GET http://bad.test{path}`.
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    b.push(0x04); // :path, literal value, name index 4
    hpack_int(&mut b, 0, 7, path.len());
    b.extend_from_slice(path.as_bytes());
    b.push(0x01); // :authority, name index 1
    hpack_int(&mut b, 0, 7, "bad.test".len());
    b.extend_from_slice(b"bad.test");
    b
}

/// A raw h2c connection: reads frames as `(type, flags, stream, payload)`.
struct H2 {
    s: TcpStream,
    buf: Vec<u8>,
}

impl H2 {
    /// Connects, sends the preface and empty SETTINGS, and acknowledges the server's SETTINGS.
    async fn open(addr: SocketAddr) -> Self {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[PREFACE, &frame(SETTINGS, 0, 0, &[])].concat())
            .await
            .unwrap();
        let mut h = H2 { s, buf: Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut theirs, mut acked) = (false, false);
        while !(theirs && acked) {
            let (t, f, _, _) = h.next(deadline).await.expect("server SETTINGS");
            if t == SETTINGS && f & ACK == 0 {
                theirs = true;
                h.s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            } else if t == SETTINGS {
                acked = true;
            }
        }
        h
    }

    /// The next frame, or `None` when the connection closed or the deadline passed.
    async fn next(&mut self, deadline: Instant) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff;
                    return Some((f[3], f[4], stream, f[9..].to_vec()));
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads until a GOAWAY or the end; returns the GOAWAY error code if one came.
    async fn goaway(&mut self, within: Duration) -> (Option<u32>, bool) {
        let deadline = Instant::now() + within;
        let mut code = None;
        loop {
            match self.next(deadline).await {
                Some((GOAWAY, _, _, p)) => {
                    code = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
                }
                Some(_) => {}
                None => return (code, Instant::now() < deadline),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_floods_and_limits_close_or_refuse_without_reaching_the_backend() {
    let (c, _m, p) = bad_input_setup(&["--max-concurrent-streams", "4"]).await;

    // P1 rapid reset: 2,000 streams opened and cancelled in one burst.
    let h0 = c.heads();
    let mut h = H2::open(p.http).await;
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let id = 1 + 2 * i;
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block("/delay/200"),
        ));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = h.s.write_all(&burst).await;
    let (code, closed) = h.goaway(Duration::from_secs(10)).await;
    assert!(closed, "rapid-reset connection not closed");
    assert_eq!(code, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
    let rapid_reset_heads = c.heads() - h0;
    assert!(
        rapid_reset_heads < 200,
        "{rapid_reset_heads} of 2000 reset streams reached the backend"
    );

    // P2 CONTINUATION flood: a header block that never ends.
    let h0 = c.heads();
    let mut h = H2::open(p.http).await;
    let mut block = get_block("/");
    hpack_literal(&mut block, "x-a", "b");
    let _ = h.s.write_all(&frame(HEADERS, END_STREAM, 1, &block)).await;
    let mut piece = Vec::new();
    hpack_literal(&mut piece, "x-flood", &"f".repeat(1000));
    let cont = frame(CONTINUATION, 0, 1, &piece);
    let mut sent = 0usize;
    for _ in 0..10_000 {
        if h.s.write_all(&cont).await.is_err() {
            break;
        }
        sent += cont.len();
    }
    let (_, closed) = h.goaway(Duration::from_secs(10)).await;
    assert!(closed, "CONTINUATION flood not closed");
    assert!(sent < 5_000_000, "accepted {sent} bytes of CONTINUATION");
    assert_eq!(
        c.heads(),
        h0,
        "a never-ending header block reached the backend"
    );

    // P6 header list over the limit (32 KiB): refused, never forwarded.
    let h0 = c.heads();
    let mut h = H2::open(p.http).await;
    let mut block = get_block("/");
    hpack_literal(&mut block, "x-big", &"b".repeat(40 * 1024));
    let (first, rest) = block.split_at(16_000);
    let mut bytes = frame(HEADERS, END_STREAM, 1, first);
    for (i, part) in rest.chunks(16_000).enumerate() {
        let last = (i + 1) * 16_000 >= rest.len();
        bytes.extend(frame(
            CONTINUATION,
            if last { END_HEADERS } else { 0 },
            1,
            part,
        ));
    }
    let _ = h.s.write_all(&bytes).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answer = None;
    while let Some((t, _, id, p)) = h.next(deadline).await {
        if id == 1 && (t == HEADERS || t == RST_STREAM) || t == GOAWAY {
            answer = Some((t, p));
            break;
        }
    }
    let (t, _) = answer.expect("an answer to an oversized header list");
    assert!([HEADERS, RST_STREAM, GOAWAY].contains(&t));
    assert_eq!(
        c.heads(),
        h0,
        "an oversized header list reached the backend"
    );

    // P5 more streams than allowed: the fifth is refused; four reach the backend.
    let h0 = c.heads();
    let mut h = H2::open(p.http).await;
    let mut bytes = Vec::new();
    for id in [1u32, 3, 5, 7, 9] {
        bytes.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block("/delay/500"),
        ));
    }
    h.s.write_all(&bytes).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut refused, mut answered) = (Vec::new(), 0);
    while answered + refused.len() < 5 {
        match h.next(deadline).await {
            Some((RST_STREAM, _, id, p)) => {
                refused.push((id, u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
            }
            Some((HEADERS, _, _, _)) => answered += 1,
            Some((DATA, _, _, _)) | Some(_) => {}
            None => break,
        }
    }
    assert_eq!(refused, [(9, 7)], "stream 9 REFUSED_STREAM");
    assert_eq!(answered, 4);
    assert_eq!(c.heads() - h0, 4);

    // After all of it the proxy still serves.
    assert_eq!(get(p.http, "bad.test", "/").await.unwrap().status(), 200);
    println!("rapid reset: {rapid_reset_heads} of 2000 reset streams reached the backend");
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn post_req(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", host)
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_faults_give_clear_errors_retry_only_when_safe_and_leak_nothing() {
    let mut pair = same_port_listeners(2).await;
    let good = Counting::start_on(pair.pop().unwrap());
    let reset = Faulty::start_on(pair.pop().unwrap(), true);
    let hang = Faulty::start(false).await;
    let m = Manifests::new();
    m.write(
        "svc.yaml",
        &[
            service_yaml("mixed", &[reset.addr, good.addr]),
            service_yaml("reset", &[reset.addr]),
            service_yaml("hang", &[hang.addr]),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress_yaml(
            "faults",
            "f.test",
            &[
                ("/mixed", "Prefix", "mixed"),
                ("/reset", "Prefix", "reset"),
                ("/hang", "Prefix", "hang"),
            ],
        ),
    );
    let p = Portcullis::start(m.path(), &["--upstream-response-timeout", "1s"]).await;
    // Warm up so that the baseline includes the runtime's steady file descriptors.
    for _ in 0..4 {
        get(p.http, "f.test", "/mixed").await.unwrap();
    }
    let fds_before = open_fds(p.pid());

    // Idempotent and bodyless: a reset before any response is retried on the next endpoint.
    let (g0, r0) = (good.complete(), reset.heads.load(Ordering::SeqCst));
    for _ in 0..10 {
        let r = get(p.http, "f.test", "/mixed").await.unwrap();
        assert_eq!(r.status(), 200, "GET retried after a reset: {}", r.text());
    }
    assert_eq!(good.complete() - g0, 10);
    let resets_for_get = reset.heads.load(Ordering::SeqCst) - r0;
    assert!(
        resets_for_get >= 1,
        "round robin reached the resetting endpoint"
    );

    // A POST whose bytes reached the backend is never retried: a clear 502.
    let (g0, r0) = (good.complete(), reset.heads.load(Ordering::SeqCst));
    let (mut ok, mut bad_gateway) = (0, 0);
    for _ in 0..10 {
        match send(p.http, post_req("f.test", "/mixed"))
            .await
            .unwrap()
            .status()
        {
            200 => ok += 1,
            502 => bad_gateway += 1,
            s => panic!("POST answered {s}"),
        }
    }
    let reached_reset = reset.heads.load(Ordering::SeqCst) - r0;
    assert_eq!(
        ok,
        good.complete() - g0,
        "each 200 reached the good backend once"
    );
    assert_eq!(
        bad_gateway, reached_reset,
        "each POST that hit a reset got 502, not a retry"
    );
    assert_eq!(ok + bad_gateway, 10);

    // One endpoint, resetting: 502.
    assert_eq!(get(p.http, "f.test", "/reset").await.unwrap().status(), 502);

    // A hanging backend: 504 at the response timeout, never retried, its connection released.
    let h0 = hang.heads.load(Ordering::SeqCst);
    let hung = (0..5).map(|_| get(p.http, "f.test", "/hang"));
    for r in futures_util::future::join_all(hung).await {
        assert_eq!(r.unwrap().status(), 504);
    }
    assert_eq!(
        hang.heads.load(Ordering::SeqCst) - h0,
        5,
        "a timed-out GET is not retried"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while hang.open.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "upstream connections to a hung backend leaked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No leaked client connections or sockets once the storm is over.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = get(p.admin, "admin", "/metrics").await.unwrap().text();
        let open = metrics
            .lines()
            .find(|l| l.starts_with("portcullis_open_connections{listener=\"http\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        let fds = open_fds(p.pid());
        if open == 0.0 && fds <= fds_before + 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leak: {open} open client connections, {fds} fds (before {fds_before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_removed_or_killed_mid_request() {
    let mut ls = same_port_listeners(5)
        .await
        .into_iter()
        .map(Counting::start_on);
    let mut next = || ls.next().unwrap();
    let (a, b) = (next(), next());
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("moving", &[a.addr, b.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("moving", "m.test", &[("/", "Prefix", "moving")]),
    );
    let p = Portcullis::start(m.path(), &[]).await;
    // Removed from the slice while requests are in flight: they still complete.
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            let addr = p.http;
            tokio::spawn(async move { get(addr, "m.test", "/delay/1500").await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.heads() == 0 || b.heads() == 0 {
        assert!(Instant::now() < deadline, "requests reached both endpoints");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.write("svc.yaml", &service_yaml("moving", &[b.addr]));
    for r in inflight {
        assert_eq!(
            r.await.unwrap().unwrap().status(),
            200,
            "in-flight request survived removal"
        );
    }
    wait_until_unused(&p, &a).await;

    // Killed mid-request: a POST (bytes reached the backend) gets 502, never a retry ...
    let (c, d) = (next(), next());
    m.write("svc.yaml", &service_yaml("moving", &[c.addr, d.addr]));
    wait_until_unused(&p, &b).await;
    let addr = p.http;
    let (c0, d0) = (c.heads(), d.heads());
    let posts: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { send(addr, post_req("m.test", "/delay/1500")).await }))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.heads() == c0 || d.heads() == d0 {
        assert!(Instant::now() < deadline, "POSTs reached both endpoints");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.kill();
    let mut statuses: Vec<u16> = Vec::new();
    for q in posts {
        statuses.push(q.await.unwrap().unwrap().status());
    }
    statuses.sort();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&502) && statuses.contains(&200),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        d.complete() - d0
    );

    // ... while a GET cut off by a killed endpoint is retried on the next one.
    let e = next();
    m.write("svc.yaml", &service_yaml("moving", &[d.addr, e.addr]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.heads() == 0 {
        assert!(Instant::now() < deadline, "new endpoint in use");
        get(p.http, "m.test", "/").await.unwrap();
    }
    let e0 = e.heads();
    let gets: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { get(addr, "m.test", "/delay/1500").await }))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.heads() == e0 {
        assert!(
            Instant::now() < deadline,
            "GETs reached the endpoint to be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.kill();
    for g in gets {
        assert_eq!(
            g.await.unwrap().unwrap().status(),
            200,
            "GET retried on the live endpoint"
        );
    }
}

/// Waits until `gone` receives none of ten consecutive requests, then checks twenty more.
async fn wait_until_unused(p: &Portcullis, gone: &Counting) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = gone.heads();
        for _ in 0..10 {
            assert_eq!(get(p.http, "m.test", "/").await.unwrap().status(), 200);
        }
        if gone.heads() == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traffic still reaches a removed endpoint"
        );
    }
    let before = gone.heads();
    for _ in 0..20 {
        assert_eq!(get(p.http, "m.test", "/").await.unwrap().status(), 200);
    }
    assert_eq!(gone.heads(), before, "a removed endpoint got traffic again");
}

// ---------------------------------------------------------------------------------------------
// Hostile objects
// ---------------------------------------------------------------------------------------------

fn expired_pem(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_objects_are_isolated_and_reported() {
    let be = Counting::start().await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("be", &[be.addr]));
    let (good_crt, good_key) = portcullis::tls::self_signed(&["good.test"]).unwrap();
    let (other_crt, _) = portcullis::tls::self_signed(&["mismatch.test"]).unwrap();
    let (old_crt, old_key) = expired_pem("expired.test");
    m.write(
        "good.yaml",
        &format!(
            "{}---\n{}",
            tls_secret_yaml("good", &good_crt, &good_key),
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: good}\nspec:\n  ingressClassName: portcullis\n  tls: [{hosts: [good.test], secretName: good}]\n  rules:\n  - host: good.test\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: be, port: {number: 80}}}}]}\n"
        ),
    );
    let p = Portcullis::start(m.path(), &[]).await;
    let (r, good_leaf) = https_get(p.https, "good.test", "good.test", "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(good_leaf, pem_leaf_der(&good_crt));

    // Thousands of paths, a huge host list, broken Secrets, dangling references, a host with
    // control and config-language bytes, and a file that is not YAML at all.
    let paths: String = (0..5000)
        .map(|i| format!("      - {{path: /p{i}, pathType: Prefix, backend: {{service: {{name: be, port: {{number: 80}}}}}}}}\n"))
        .collect();
    m.write(
        "many-paths.yaml",
        &format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: many-paths}}\nspec:\n  ingressClassName: portcullis\n  rules:\n  - host: paths.test\n    http:\n      paths:\n{paths}"),
    );
    let hosts: String = (0..2000)
        .map(|i| format!("  - host: h{i}.hosts.test\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: be, port: {{number: 80}}}}}}}}]}}\n"))
        .collect();
    let tls_hosts: String = (0..2000).map(|i| format!("h{i}.hosts.test,")).collect();
    m.write(
        "many-hosts.yaml",
        &format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: many-hosts, annotations: {{portcullis.dev/ssl-redirect: \"false\"}}}}\nspec:\n  ingressClassName: portcullis\n  tls: [{{hosts: [{}], secretName: garbage}}]\n  rules:\n{hosts}", tls_hosts.trim_end_matches(',')),
    );
    let tls_ing = |name: &str, host: &str, secret: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{portcullis.dev/ssl-redirect: \"false\"}}}}\nspec:\n  ingressClassName: portcullis\n  tls: [{{hosts: [{host}], secretName: {secret}}}]\n  rules:\n  - host: {host}\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: be, port: {{number: 80}}}}}}}}]}}\n"
        )
    };
    m.write(
        "broken-tls.yaml",
        &[
            tls_secret_yaml(
                "garbage",
                "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----",
                "junk",
            ),
            tls_secret_yaml("mismatch", &other_crt, &good_key),
            tls_secret_yaml("expired", &old_crt, &old_key),
            tls_ing("mismatch", "mismatch.test", "mismatch"),
            tls_ing("expired", "expired.test", "expired"),
            tls_ing("dangling-secret", "nosecret.test", "does-not-exist"),
        ]
        .join("---\n"),
    );
    m.write(
        "dangling.yaml",
        &[
            ingress_yaml("dangling", "dangling.test", &[("/", "Prefix", "no-such-service")]),
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: evil}\nspec:\n  ingressClassName: portcullis\n  rules:\n  - host: \"evil.test\\r\\nX-Injected: 1;{}$\\u0000\"\n    http: {paths: [{path: \"/x\\r\\n\", pathType: Prefix, backend: {service: {name: be, port: {number: 80}}}}]}\n  - host: evil-ok.test\n    http: {paths: [{path: /, pathType: Weird, backend: {service: {name: be, port: {number: 80}}}}]}\n".into(),
        ]
        .join("---\n"),
    );
    std::fs::write(
        m.path().join("binary.yaml"),
        [0xffu8, 0xfe, 0, 1, 2, b':', b'\n', b'-'],
    )
    .unwrap();
    p.wait_for("paths.test", "/p4999/x", |r| r.status() == 200)
        .await;
    p.wait_for("h1999.hosts.test", "/", |r| r.status() == 200)
        .await;

    assert_eq!(
        get(p.http, "paths.test", "/p4321").await.unwrap().status(),
        200
    );
    assert_eq!(get(p.http, "paths.test", "/q").await.unwrap().status(), 404);
    assert_eq!(
        get(p.http, "dangling.test", "/").await.unwrap().status(),
        503
    );
    // The good host keeps its certificate and answers; broken Secrets fall to the default.
    let (r, leaf) = https_get(p.https, "good.test", "good.test", "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(leaf, good_leaf);
    for host in [
        "mismatch.test",
        "expired.test",
        "nosecret.test",
        "h7.hosts.test",
    ] {
        let (r, leaf) = https_get(p.https, host, host, "/").await;
        assert_eq!(r.status(), 200, "{host}");
        assert_ne!(leaf, good_leaf, "{host}");
        assert_ne!(
            leaf,
            pem_leaf_der(&other_crt),
            "{host}: the mismatched certificate is never served"
        );
        assert_ne!(
            leaf,
            pem_leaf_der(&old_crt),
            "{host}: the expired certificate is never served"
        );
    }
    let ready = get(p.admin, "admin", "/readyz").await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "problems never make the controller unready"
    );
    let text = ready.text();
    for needle in [
        "Secret default/garbage",
        "Secret default/mismatch",
        "Secret default/expired",
        "(SecretNotFound)",
        "Ingress default/dangling",
        "(ServiceNotFound)",
        "Ingress default/evil: spec.rules[0].host",
        "(InvalidHost)",
        "(InvalidPath)",
        "binary.yaml",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from /readyz:\n{text}"
        );
    }
    assert!(
        !text.contains("X-Injected: 1\r\n"),
        "raw CR LF echoed into /readyz"
    );
}

// ---------------------------------------------------------------------------------------------
// Mini-soak: the fast part of bench/soak.sh
// ---------------------------------------------------------------------------------------------

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn mini_soak_config_churn_under_load_has_no_errors_and_flat_memory() {
    let (a, b) = (Counting::start().await, Counting::start().await);
    let m = Manifests::new();
    m.write(
        "svc.yaml",
        &[service_yaml("a", &[a.addr]), service_yaml("b", &[b.addr])].join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress_yaml("soak", "soak.test", &[("/", "Prefix", "a")]),
    );
    let p = Portcullis::start(m.path(), &[]).await;
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (addr, stop) = (p.http, stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, Vec::new());
            let mut conn = Conn::open(addr).await.unwrap();
            while !stop.is_cancelled() {
                match conn.get("soak.test", "/").await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => errors.push(format!("status {}", r.status())),
                    Err(e) => {
                        errors.push(e.to_string());
                        conn = Conn::open(addr).await.unwrap();
                    }
                }
                // Open loop-ish: leave CPU for the churn and the proxy on a 2-core machine.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, errors)
        }));
    }
    let (mut rss_warm, mut changes) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        changes += 1;
        let target = if changes % 2 == 0 { "a" } else { "b" };
        m.write(
            "ing.yaml",
            &ingress_yaml("soak", "soak.test", &[("/", "Prefix", target)]),
        );
        m.write(
            &format!("extra-{}.yaml", changes % 10),
            &ingress_yaml(
                &format!("x{changes}"),
                &format!("x{changes}.test"),
                &[("/", "Prefix", "a")],
            ),
        );
        if rss_warm == 0 && start.elapsed() > Duration::from_secs(5) {
            rss_warm = rss_kib(p.pid());
        }
    }
    stop.cancel();
    let (mut ok, mut errors) = (0, Vec::new());
    for w in workers {
        let (o, e) = w.await.unwrap();
        ok += o;
        errors.extend(e);
    }
    let rss_end = rss_kib(p.pid());
    println!(
        "mini-soak: {ok} requests, {} errors, {changes} changes, RSS {rss_warm} -> {rss_end} KiB",
        errors.len()
    );
    assert!(errors.is_empty(), "errors under churn: {errors:?}");
    assert!(ok > 1000, "load ran ({ok} requests)");
    assert!(a.complete() > 0 && b.complete() > 0, "changes took effect");
    assert!(
        rss_end < rss_warm + rss_warm / 2 + 20 * 1024,
        "memory grew from {rss_warm} to {rss_end} KiB in 15 s"
    );
}
