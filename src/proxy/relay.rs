//! The general path's own HTTP/1.1 exchange for requests without a body — nearly every
//! HTTP/2 request. The head is written straight from the request's `HeaderMap` onto a pooled
//! plain socket (the fast path's pool) and the response head is parsed with httparse, without
//! hyper's client connection and its per-request state. Requests with a body, and upgrades,
//! keep hyper's client (`pool::send`).

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, request};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::h1::chunked::Chunked;
use super::h1::{
    Body, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS, ResponseMeta, header_line, response_header,
};
use super::pool::{Key, Pool};

/// How an exchange went.
// The response is the common outcome: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Relayed {
    /// The response head arrived; its body streams from the upstream socket.
    Response(Response<RelayBody>),
    /// No connection could be opened; nothing was sent.
    Connect(std::io::Error),
    /// The upstream closed a new connection without answering.
    Closed,
    /// The upstream's answer cannot be relayed.
    Failed(&'static str),
}

/// Writes the HTTP/1.1 head of `parts` (origin-form URI, Host set, hop-by-hop headers gone)
/// into `out`. HTTP/2 clients may split `Cookie` into several fields; they are joined into one
/// line as RFC 9113 section 8.2.3 asks.
pub(crate) fn encode_head(parts: &request::Parts, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut cookies = false;
    for (name, value) in &parts.headers {
        if name == header::COOKIE {
            if !cookies {
                cookies = true;
                out.extend_from_slice(b"cookie: ");
                for (i, v) in parts.headers.get_all(header::COOKIE).iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b"; ");
                    }
                    out.extend_from_slice(v.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        header_line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    // A method that expects content states that there is none, as hyper's client does.
    if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends `head` to `key` on an idle pooled socket, else a new one, and reads the response
/// head. A pooled socket that turns out closed is replaced by a new one. The caller bounds
/// the whole exchange by the response timeout.
pub(crate) async fn exchange(
    pool: &Arc<Pool<TcpStream>>,
    key: &Key,
    head: &[u8],
    head_method: bool,
) -> Relayed {
    let mut reused = pool.checkout(key);
    loop {
        let fresh = reused.is_none();
        let mut sock = match reused.take() {
            Some(s) => s,
            None => match pool.open(key).await {
                Ok(s) => s,
                Err(e) => return Relayed::Connect(e),
            },
        };
        if sock.write_all(head).await.is_err() {
            if fresh {
                return Relayed::Closed;
            }
            continue;
        }
        let mut buf = BytesMut::with_capacity(8 * 1024);
        match response_head(&mut sock, &mut buf, head_method).await {
            Ok(Some((parts, framing, close))) => {
                let body = RelayBody {
                    sock: Some(sock),
                    buf,
                    framing,
                    trailers: Vec::new(),
                    reusable: !close,
                    done: false,
                    pool: Arc::downgrade(pool),
                    key: key.clone(),
                };
                let body = body.started();
                return Relayed::Response(Response::from_parts(parts, body));
            }
            // A pooled socket closed as the request arrived: a new one takes it.
            Ok(None) if !fresh => {}
            Ok(None) => return Relayed::Closed,
            Err(why) => return Relayed::Failed(why),
        }
    }
}

/// Reads up to the end of the response head (interim 1xx responses are skipped); `None` when
/// the upstream closed before sending anything.
async fn response_head(
    sock: &mut TcpStream,
    buf: &mut BytesMut,
    head_method: bool,
) -> Result<Option<(http::response::Parts, Framing, bool)>, &'static str> {
    use tokio::io::AsyncReadExt;
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or_default();
                    if (100..200).contains(&code) && code != 101 {
                        buf.advance(n);
                        continue;
                    }
                    let head = response_parts(&resp, head_method)?;
                    buf.advance(n);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => {}
                Ok(httparse::Status::Partial) => return Err("response head too large"),
                Err(_) => return Err("malformed response head"),
            }
        }
        let was_empty = buf.is_empty();
        buf.reserve(4096);
        match sock.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            Ok(_) | Err(_) if was_empty => return Ok(None),
            _ => return Err("response head cut short"),
        }
    }
}

/// How a response body is delimited.
#[derive(Debug)]
enum Framing {
    None,
    /// Bytes still to come.
    Length(u64),
    Chunked(Box<Chunked>),
    /// Until the upstream closes.
    Close,
}

/// The client's response head for an upstream response, and how its body is framed; an
/// error when the response cannot be relayed (a switch of protocols nobody asked for,
/// ambiguous framing, a header that is not a valid field). The flag says whether the
/// connection must close after the response.
fn response_parts(
    resp: &httparse::Response<'_, '_>,
    head_method: bool,
) -> Result<(http::response::Parts, Framing, bool), &'static str> {
    let meta = ResponseMeta::read(resp, head_method)?;
    let framing = match meta.body {
        Body::None => Framing::None,
        Body::Length(n) => Framing::Length(n),
        Body::Chunked => Framing::Chunked(Box::new(Chunked::new())),
        Body::Close => Framing::Close,
    };
    let close = meta.upstream_close || meta.body == Body::Close;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for (i, h) in resp.headers.iter().enumerate() {
        if meta.forwards(i, h.name, true) {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "bad header name")?;
            let value = HeaderValue::from_bytes(h.value).map_err(|_| "bad header value")?;
            headers.append(name, value);
        }
    }
    let mut parts = Response::new(()).into_parts().0;
    parts.status = meta.status;
    parts.headers = headers;
    Ok((parts, framing, close))
}

/// A response body read from an upstream socket. The socket goes back to the pool when the
/// body has been read to its end and nothing followed it; dropped early, it closes.
pub(crate) struct RelayBody {
    sock: Option<TcpStream>,
    buf: BytesMut,
    framing: Framing,
    /// The trailer section of a chunked body, as it arrives.
    trailers: Vec<u8>,
    reusable: bool,
    done: bool,
    pool: Weak<Pool<TcpStream>>,
    key: Key,
}

/// An upstream response body that broke off or was misframed.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body: {0}")]
pub(crate) struct RelayError(&'static str);

impl RelayBody {
    /// Ends at once a body that has no bytes to come.
    fn started(mut self) -> Self {
        if matches!(self.framing, Framing::None | Framing::Length(0)) {
            self.finish();
        }
        self
    }

    /// The body has ended: the socket goes back to the pool if it may take another request.
    fn finish(&mut self) {
        self.done = true;
        let Some(sock) = self.sock.take() else { return };
        // Bytes after the response: the connection cannot be trusted with another request.
        if self.reusable
            && self.buf.is_empty()
            && let Some(pool) = self.pool.upgrade()
        {
            pool.checkin(self.key.clone(), sock);
        }
    }

    /// The trailer fields received, without those that may not be trailers; none when there
    /// were none.
    fn take_trailers(&mut self) -> Option<HeaderMap> {
        if self.trailers.len() <= 2 {
            return None;
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let Ok(httparse::Status::Complete((_, fields))) =
            httparse::parse_headers(&self.trailers, &mut fields)
        else {
            return None;
        };
        let mut map = HeaderMap::new();
        for f in fields {
            if response_header(f.name).is_some() {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                map.append(n, v);
            }
        }
        (!map.is_empty()).then_some(map)
    }

    /// The next frame from the bytes at hand; `None` when more must be read first.
    fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, RelayError>> {
        match &mut self.framing {
            Framing::None => None,
            Framing::Length(n) => {
                let take = usize::try_from(*n)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                *n -= take as u64;
                let data = self.buf.split_to(take).freeze();
                if *n == 0 {
                    self.finish();
                }
                Some(Ok(Frame::data(data)))
            }
            Framing::Close => Some(Ok(Frame::data(self.buf.split().freeze()))),
            Framing::Chunked(c) => loop {
                if self.buf.is_empty() {
                    return None;
                }
                let step = match c.step(&self.buf, Some(&mut self.trailers)) {
                    Ok(s) => s,
                    Err(_) => return Some(Err(RelayError("malformed chunked framing"))),
                };
                if let Some(r) = step.data {
                    self.buf.advance(r.start);
                    return Some(Ok(Frame::data(self.buf.split_to(r.len()).freeze())));
                }
                self.buf.advance(step.used);
                if step.end {
                    let trailers = self.take_trailers();
                    self.finish();
                    return trailers.map(|t| Ok(Frame::trailers(t)));
                }
            },
        }
    }
}

impl HttpBody for RelayBody {
    type Data = Bytes;
    type Error = RelayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RelayError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if !this.buf.is_empty()
                && let Some(frame) = this.next_frame()
            {
                return Poll::Ready(Some(frame));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let Some(sock) = this.sock.as_mut() else {
                return Poll::Ready(None);
            };
            if this.buf.capacity() - this.buf.len() < 4096 {
                this.buf.reserve(64 * 1024);
            }
            match tokio_util::io::poll_read_buf(Pin::new(sock), cx, &mut this.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 => {}
                Poll::Ready(Ok(_)) if matches!(this.framing, Framing::Close) => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(_) => {
                    this.sock = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(RelayError("upstream closed mid-body"))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::None => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: http::Request<()>) -> String {
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        encode_head(&parts, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_head_is_written_as_http1_with_cookies_on_one_line() {
        let req = http::Request::get("/a?b=1")
            .header("host", "x.test")
            .header("cookie", "a=1")
            .header("accept", "*/*")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        assert_eq!(
            head(req),
            "GET /a?b=1 HTTP/1.1\r\nhost: x.test\r\ncookie: a=1; b=2\r\naccept: */*\r\n\r\n"
        );
    }

    #[test]
    fn a_method_that_expects_content_states_there_is_none() {
        let post = http::Request::post("/").body(()).unwrap();
        assert_eq!(head(post), "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        let stated = http::Request::put("/")
            .header("content-length", "0")
            .body(())
            .unwrap();
        assert_eq!(head(stated), "PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        let get = http::Request::get("/").body(()).unwrap();
        assert_eq!(head(get), "GET / HTTP/1.1\r\n\r\n");
    }
}
