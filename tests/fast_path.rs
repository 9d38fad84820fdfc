//! The HTTP/1.1 fast path against a scripted raw backend: every response framing relayed
//! exactly over keep-alive and pipelined connections, ambiguous framing refused, hand-over to
//! the general path in the middle of a connection, and upstream connection reuse.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw backend answering each request with the bytes scripted for its path (`/close`
/// answers without a length and closes; `/linger-close` closes 100 ms after answering).
/// Records each request as received, with the number of the connection it came on.
struct Scripted {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(usize, String)>>>,
}

fn scripted_answer(path: &str) -> &'static [u8] {
    match path {
        "/cl" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-from: cl\r\n\r\nhello",
        "/chunked" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n"
        }
        "/interim" => {
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        }
        "/nocontent" => b"HTTP/1.1 204 No Content\r\nx-from: 204\r\n\r\n",
        "/named" => {
            b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-secret\r\nx-secret: 1\r\nkeep-alive: timeout=5\r\nx-request-id: upstream\r\ncontent-length: 3\r\n\r\nabc"
        }
        "/both" => {
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        }
        "/gzip" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nxyz",
        "/badchunk" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        "/close" => b"HTTP/1.1 200 OK\r\n\r\nbye",
        "/linger-close" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        "/stall" => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    }
}

impl Scripted {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = AtomicUsize::new(0);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = requests.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let n = accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(Self::serve(s, n, r.clone()));
            }
        });
        Scripted { addr, requests }
    }

    async fn serve(mut s: TcpStream, conn: usize, log: Arc<Mutex<Vec<(usize, String)>>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let length: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
            while buf.len() < end + 4 + length {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let request: Vec<u8> = buf.drain(..end + 4 + length).collect();
            log.lock()
                .unwrap()
                .push((conn, String::from_utf8_lossy(&request).into_owned()));
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let mut answer = scripted_answer(&path);
            if head.starts_with("HEAD ") {
                let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                answer = &answer[..end + 4];
            }
            if s.write_all(answer).await.is_err() {
                return;
            }
            match path.as_str() {
                "/close" | "/both" | "/gzip" | "/badchunk" => return,
                "/linger-close" => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return;
                }
                // 3 of 10 body bytes, then nothing, with the connection left open.
                "/stall" => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                _ => {}
            }
        }
    }

    /// Requests received so far: connection number and bytes.
    fn requests(&self) -> Vec<(usize, String)> {
        self.requests.lock().unwrap().clone()
    }
}

/// A header's value in a head (case-insensitive name).
fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// One response as a strict client reads it.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads responses from `s` the way a conforming client does (Content-Length, chunked with
/// trailers, or until close; none for HEAD, 204 and 304) until `n` have arrived or it closes.
async fn read_responses<S>(s: &mut S, methods: &[&str]) -> (Vec<Response>, bool)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut closed = false;
    let mut fill = async |buf: &mut Vec<u8>, closed: &mut bool| -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => {
                *closed = true;
                false
            }
            Err(_) => false,
        }
    };
    for method in methods {
        let end = loop {
            if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break e + 4;
            }
            if !fill(&mut buf, &mut closed).await {
                return (out, closed);
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let status: u16 = head[9..12].parse().unwrap();
        let mut body = Vec::new();
        if *method == "HEAD" || status == 204 || status == 304 {
        } else if header(&head, "transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(e) = buf.windows(2).position(|w| w == b"\r\n") {
                        break e;
                    }
                    assert!(fill(&mut buf, &mut closed).await, "chunk size cut short");
                };
                let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap(), 16).unwrap();
                buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailer fields up to the empty line.
                    loop {
                        let e = loop {
                            if let Some(e) = buf.windows(2).position(|w| w == b"\r\n") {
                                break e;
                            }
                            assert!(fill(&mut buf, &mut closed).await, "trailers cut short");
                        };
                        buf.drain(..e + 2);
                        if e == 0 {
                            break;
                        }
                    }
                    break;
                }
                while buf.len() < size + 2 {
                    assert!(fill(&mut buf, &mut closed).await, "chunk cut short");
                }
                body.extend(buf.drain(..size));
                assert_eq!(buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
            }
        } else if let Some(n) = header(&head, "content-length") {
            let n: usize = n.parse().unwrap();
            while buf.len() < n {
                assert!(fill(&mut buf, &mut closed).await, "body cut short");
            }
            body.extend(buf.drain(..n));
        } else {
            while fill(&mut buf, &mut closed).await {}
            body.append(&mut buf);
        }
        out.push(Response { status, head, body });
    }
    (out, closed)
}

/// The scripted backend behind `raw.test`, and the manifests that route to it.
async fn backend() -> (Scripted, Manifests) {
    let b = Scripted::start().await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("raw", &[b.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("raw", "raw.test", &[("/", "Prefix", "raw")]),
    );
    (b, m)
}

async fn setup() -> (Scripted, Manifests, Portcullis) {
    let (b, m) = backend().await;
    let p = Portcullis::start(m.path(), &[]).await;
    p.wait_for("raw.test", "/cl", |r| r.status() == 200).await;
    (b, m, p)
}

/// An HTTP/2 client connection over plain TCP (h2c with prior knowledge), for bodyless requests.
async fn h2c(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    tx
}

fn request(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: raw.test\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_framing_is_relayed_exactly_over_one_pipelined_connection() {
    let (b, _m, p) = setup().await;
    let before = b.requests().len();
    let script = [
        ("GET", "/cl"),
        ("GET", "/chunked"),
        ("GET", "/interim"),
        ("GET", "/nocontent"),
        ("GET", "/named"),
        ("HEAD", "/cl"),
        ("POST", "/cl"),
        ("GET", "/close"),
    ];
    let mut all = String::new();
    for (method, path) in script {
        if method == "POST" {
            all.push_str(&request(method, path, "content-length: 11\r\n"));
            all.push_str("hello world");
        } else {
            all.push_str(&request(method, path, ""));
        }
    }
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(all.as_bytes()).await.unwrap();
    let methods: Vec<&str> = script.iter().map(|(m, _)| *m).collect();
    let (got, closed) = read_responses(&mut s, &methods).await;
    assert_eq!(got.len(), script.len(), "responses: {got:#?}");
    let bodies: Vec<(u16, &[u8])> = got.iter().map(|r| (r.status, &r.body[..])).collect();
    assert_eq!(
        bodies,
        [
            (200, &b"hello"[..]),
            (200, b"abcdefg"),
            (200, b"ok"),
            (204, b""),
            (200, b"abc"),
            (200, b""),
            (200, b"hello"),
            (200, b"bye"),
        ]
    );
    for r in &got {
        assert!(
            header(&r.head, "x-request-id").is_some_and(|v| v.len() == 32),
            "{}",
            r.head
        );
        assert!(header(&r.head, "date").is_some(), "{}", r.head);
    }
    // Hop-by-hop headers and what the upstream's Connection names do not reach the client.
    let named = &got[4].head;
    for h in ["x-secret", "keep-alive"] {
        assert_eq!(header(named, h), None, "{named}");
    }
    assert_ne!(header(named, "x-request-id").as_deref(), Some("upstream"));
    assert_eq!(header(&got[5].head, "content-length").as_deref(), Some("5"));
    assert_eq!(header(&got[1].head, "trailer"), None);
    // Interim responses are not passed on: neither the 103 nor its header arrives.
    assert_eq!(header(&got[2].head, "link"), None, "{}", got[2].head);
    // A close-delimited body closes the client connection after it.
    assert_eq!(header(&got[7].head, "connection").as_deref(), Some("close"));
    assert!(closed);
    // One upstream connection carried every exchange; the POST body arrived whole.
    let reqs = b.requests().split_off(before);
    assert_eq!(reqs.len(), script.len());
    assert!(reqs.iter().all(|(c, _)| *c == reqs[0].0), "{reqs:#?}");
    let (_, post) = reqs.iter().find(|(_, r)| r.starts_with("POST")).unwrap();
    assert!(post.ends_with("\r\n\r\nhello world"), "{post}");
    assert_eq!(
        header(post, "x-forwarded-host").as_deref(),
        Some("raw.test")
    );
    assert_eq!(
        header(post, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(header(post, "connection"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_or_broken_upstream_framing_gives_502_and_the_connection_is_dropped() {
    let (b, _m, p) = setup().await;
    for path in ["/both", "/gzip", "/badchunk"] {
        let before = b.requests().len();
        let mut s = TcpStream::connect(p.http).await.unwrap();
        let two = format!("{}{}", request("GET", path, ""), request("GET", "/cl", ""));
        s.write_all(two.as_bytes()).await.unwrap();
        let (got, _) = read_responses(&mut s, &["GET", "GET"]).await;
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [502, 200], "{path}: {got:#?}");
        assert_eq!(got[1].body, b"hello", "{path}");
        // The broken upstream connection was not reused for the second request.
        let reqs = b.requests().split_off(before);
        assert_eq!(reqs.len(), 2, "{path}");
        assert_ne!(reqs[0].0, reqs[1].0, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_fast_path_does_not_serve_hands_the_connection_over_intact() {
    let (b, _m, p) = setup().await;
    // The second request's Connection names a header to remove: the general path serves it
    // and the third, all three written at once.
    let all = [
        request("GET", "/cl", ""),
        request(
            "GET",
            "/named",
            "connection: keep-alive, x-drop\r\nx-drop: secret\r\n",
        ),
        request("GET", "/chunked", ""),
    ]
    .concat();
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(all.as_bytes()).await.unwrap();
    let (got, _) = read_responses(&mut s, &["GET", "GET", "GET"]).await;
    let bodies: Vec<(u16, &[u8])> = got.iter().map(|r| (r.status, &r.body[..])).collect();
    assert_eq!(
        bodies,
        [(200, &b"hello"[..]), (200, b"abc"), (200, b"abcdefg")]
    );
    let reqs = b.requests();
    let (_, named) = reqs
        .iter()
        .rev()
        .find(|(_, r)| r.contains("/named"))
        .unwrap();
    assert_eq!(header(named, "x-drop"), None, "{named}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_the_upstream_closed_is_not_used_again() {
    let (b, _m, p) = setup().await;
    let mut s = TcpStream::connect(p.http).await.unwrap();
    let before = b.requests().len();
    // POST: a request sent on a dead connection would not be repeated, but fail.
    let post = request("POST", "/linger-close", "content-length: 2\r\n") + "up";
    for round in 0..3 {
        s.write_all(post.as_bytes()).await.unwrap();
        let (got, closed) = read_responses(&mut s, &["POST"]).await;
        assert_eq!(got.len(), 1, "round {round}");
        assert_eq!((got[0].status, &got[0].body[..]), (200, &b"hi"[..]));
        assert!(!closed);
        // The upstream closes its side meanwhile; the next request needs a new connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let conns: Vec<usize> = b.requests().split_off(before).iter().map(|r| r.0).collect();
    assert_eq!(conns.len(), 3);
    assert!(conns[0] != conns[1] && conns[1] != conns[2], "{conns:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_goes_to_the_next_endpoint_when_one_refuses_connections() {
    let b = Scripted::start().await;
    // Same port on another loopback address, where nothing listens.
    let dead: SocketAddr = format!("127.0.0.2:{}", b.addr.port()).parse().unwrap();
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("two", &[dead, b.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("two", "raw.test", &[("/", "Prefix", "two")]),
    );
    let p = Portcullis::start(m.path(), &[]).await;
    p.wait_for("raw.test", "/cl", |r| r.status() == 200).await;
    let before = b.requests().len();
    let post = request("POST", "/cl", "content-length: 4\r\n") + "data";
    let mut s = TcpStream::connect(p.http).await.unwrap();
    for round in 0..4 {
        s.write_all(post.as_bytes()).await.unwrap();
        let (got, _) = read_responses(&mut s, &["POST"]).await;
        assert_eq!(got.len(), 1, "round {round}");
        assert_eq!((got[0].status, &got[0].body[..]), (200, &b"hello"[..]));
    }
    // Round-robin sent half of them to the refusing endpoint first; none was lost or doubled.
    let posts: Vec<_> = b.requests().split_off(before);
    assert_eq!(posts.len(), 4);
    assert!(posts.iter().all(|(_, r)| r.ends_with("\r\n\r\ndata")));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_keep_alive_requests_take_the_fast_path_and_a_host_other_than_sni_is_handed_over() {
    let (b, _m, p) = setup().await;
    let before = b.requests().len();
    let (mut tls, _) = tls_connect(p.https, "raw.test", &[b"http/1.1"]).await;
    let other_host = "GET /cl HTTP/1.1\r\nHost: other.test\r\n\r\n";
    let all = [
        request("GET", "/cl", ""),
        request("GET", "/chunked", ""),
        other_host.to_owned(),
        request("GET", "/cl", ""),
    ]
    .concat();
    tls.write_all(all.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let (got, _) = read_responses(&mut tls, &["GET"; 4]).await;
    let bodies: Vec<(u16, &[u8])> = got.iter().map(|r| (r.status, &r.body[..])).collect();
    // other.test has no rule: the general path answers 404 and serves the rest.
    assert_eq!(
        bodies,
        [
            (200, &b"hello"[..]),
            (200, b"abcdefg"),
            (404, b"404 Not Found\n"),
            (200, b"hello"),
        ]
    );
    let reqs = b.requests().split_off(before);
    assert_eq!(reqs.len(), 3);
    for (_, r) in &reqs {
        assert_eq!(
            header(r, "x-forwarded-proto").as_deref(),
            Some("https"),
            "{r}"
        );
        let port = p.https.port().to_string();
        assert_eq!(header(r, "x-forwarded-port"), Some(port), "{r}");
    }
}

/// Both request paths bound the wait for the rest of an upstream response body by
/// `--upstream-response-timeout`: the client gets what arrived, then the connection (HTTP/1.1)
/// or the stream (HTTP/2) is cut, instead of hanging as long as the upstream does.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_upstream_body_is_cut_at_the_response_timeout_on_both_paths() {
    let (_b, m) = backend().await;
    // Far below the 60 s the backend holds the connection open for.
    let bound = Duration::from_secs(20);
    for fast in ["true", "false"] {
        let p = Portcullis::start(
            m.path(),
            &[
                "--upstream-response-timeout",
                "1s",
                "--http1-fast-path",
                fast,
            ],
        )
        .await;
        p.wait_for("raw.test", "/cl", |r| r.status() == 200).await;
        let mut s = TcpStream::connect(p.http).await.unwrap();
        s.write_all(request("GET", "/stall", "").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(bound, s.read_to_end(&mut got)).await;
        assert!(
            read.is_ok(),
            "fast path {fast}: connection still open after {bound:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "fast path {fast}: {text}");
        assert!(text.ends_with("\r\n\r\nabc"), "fast path {fast}: {text}");
    }

    // HTTP/2 (h2c, prior knowledge) always takes the general path: the stream is reset.
    let p = Portcullis::start(m.path(), &["--upstream-response-timeout", "1s"]).await;
    let mut tx = h2c(p.http).await;
    let req = http::Request::get("http://raw.test/stall")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(bound, http_body_util::BodyExt::collect(resp.into_body()))
        .await
        .expect("HTTP/2 stream still open after the bound");
    assert!(
        body.is_err(),
        "the stalled body ends in an error, not as complete"
    );
}

/// HTTP/2 requests without a body take the general path's own upstream exchange: every
/// framing arrives as HTTP/2 data (chunked trailers as HTTP/2 trailers), hop-by-hop headers
/// are dropped, split `Cookie` fields reach the backend as one line, one upstream connection
/// carries the exchanges, and ambiguous or broken framing gives 502 or a reset stream.
#[tokio::test(flavor = "multi_thread")]
async fn http2_requests_without_a_body_are_relayed_exactly() {
    let (b, _m, p) = setup().await;
    let mut tx = h2c(p.http).await;
    let before = b.requests().len();
    let mut send = async |method: &str, path: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://raw.test{path}"))
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = tx.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .map(|c| (c.trailers().cloned(), c.to_bytes()));
        Ok::<_, hyper::Error>((parts, body))
    };
    let script = [
        ("GET", "/cl", 200, &b"hello"[..]),
        ("GET", "/chunked", 200, b"abcdefg"),
        ("GET", "/interim", 200, b"ok"),
        ("GET", "/nocontent", 204, b""),
        ("GET", "/named", 200, b"abc"),
        ("HEAD", "/cl", 200, b""),
        ("DELETE", "/cl", 200, b"hello"),
    ];
    let mut heads = Vec::new();
    for (method, path, status, body) in script {
        let (parts, got) = send(method, path).await.unwrap();
        let (trailers, bytes) = got.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(parts.status, status, "{method} {path}");
        assert_eq!(&bytes[..], body, "{method} {path}");
        if path == "/chunked" {
            let t = trailers.expect("chunked trailers arrive as HTTP/2 trailers");
            assert_eq!(t.get("x-sum").unwrap(), "7");
        }
        let id = parts.headers.get("x-request-id").unwrap();
        assert_eq!(id.len(), 32, "{method} {path}");
        heads.push(parts.headers);
    }
    // Hop-by-hop headers and what the upstream's Connection names do not reach the client.
    for h in ["x-secret", "keep-alive", "connection"] {
        assert!(heads[4].get(h).is_none(), "{h}: {:?}", heads[4]);
    }
    assert!(heads[1].get("trailer").is_none());
    assert!(heads[2].get("link").is_none());
    assert_eq!(heads[5].get("content-length").unwrap(), "5");
    let reqs = b.requests().split_off(before);
    assert_eq!(reqs.len(), script.len());
    assert!(reqs.iter().all(|(c, _)| *c == reqs[0].0), "{reqs:#?}");
    for (_, r) in &reqs {
        assert_eq!(header(r, "cookie").as_deref(), Some("a=1; b=2"), "{r}");
        assert_eq!(r.matches("\r\ncookie:").count(), 1, "{r}");
        assert_eq!(header(r, "host").as_deref(), Some("raw.test"), "{r}");
        assert_eq!(
            header(r, "x-forwarded-proto").as_deref(),
            Some("http"),
            "{r}"
        );
    }

    // A close-delimited body ends with the upstream's close; that connection is not reused.
    let (parts, got) = send("GET", "/close").await.unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(&got.unwrap().1[..], b"bye");
    let (_, got) = send("GET", "/cl").await.unwrap();
    assert_eq!(&got.unwrap().1[..], b"hello");
    let reqs = b.requests().split_off(before + script.len());
    assert_eq!(reqs.len(), 2);
    assert_ne!(reqs[0].0, reqs[1].0);

    // Ambiguous framing is refused before anything is relayed; a broken chunk resets the stream.
    for path in ["/both", "/gzip"] {
        let (parts, _) = send("GET", path).await.unwrap();
        assert_eq!(parts.status, 502, "{path}");
    }
    // The reset may overtake the response head.
    let got = send("GET", "/badchunk").await;
    assert!(
        got.is_err() || got.is_ok_and(|(_, body)| body.is_err()),
        "a misframed body ends in an error"
    );
    let (parts, got) = send("GET", "/cl").await.unwrap();
    assert_eq!(
        (parts.status.as_u16(), &got.unwrap().1[..]),
        (200, &b"hello"[..])
    );
}
