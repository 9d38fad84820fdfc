//! Header rules of ingress-semantics.md section 8: hop-by-hop removal, forwarding headers.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// The request id header, kept when the client sent a sane one, else generated.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes request headers whose name holds `_` (nginx's default), so that no backend that
/// maps `_` to `-` can read `Content_Length` or `Transfer_Encoding` as framing.
pub fn strip_underscore_names(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in names {
        h.remove(&name);
    }
}

/// The fixed hop-by-hop headers; `Connection` first, `Upgrade` last.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The position of `name` in `HOP_BY_HOP`, by one match on the (lower-case) name.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "http2-settings" => Some(2),
        "proxy-connection" => Some(3),
        "te" => Some(4),
        "trailer" => Some(5),
        "transfer-encoding" => Some(6),
        "upgrade" => Some(7),
        _ => None,
    }
}

/// Removes hop-by-hop headers: `Connection` and all it names, and the fixed list. The
/// `Upgrade` header survives when `keep_upgrade` is set.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // One scan of the names present instead of a lookup per hop-by-hop name: most messages
    // carry none of them, or only `Connection`.
    let mut present = 0u8;
    for name in h.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        let mut values = h.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let more: Vec<HeaderValue> = values.cloned().collect();
        for v in first.iter().chain(&more) {
            let Ok(v) = v.to_str() else { continue };
            for t in v.split(',').map(str::trim) {
                if t.is_empty() || (keep_upgrade && t.eq_ignore_ascii_case("upgrade")) {
                    continue;
                }
                // A `&str` key is matched case-insensitively, without building a HeaderName.
                h.remove(t);
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 && !(keep_upgrade && *name == header::UPGRADE) {
            h.remove(name);
        }
    }
}

/// What the proxy knows about the client side of a request.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The port the request arrived on.
    pub port: u16,
    /// The Host as the client sent it.
    pub host: &'a str,
    /// `--trusted-proxies`.
    pub trusted: &'a [IpNet],
}

/// Sets X-Forwarded-For/-Proto/-Host/-Port and X-Real-IP. Client-sent values are kept (and
/// appended to) only when the TCP peer is a trusted proxy. Returns the client address.
pub fn set_forwarding(h: &mut HeaderMap, f: &Forwarding<'_>) -> IpAddr {
    let is_trusted = |ip: &IpAddr| f.trusted.iter().any(|n| n.contains(ip));
    let peer_trusted = is_trusted(&f.peer);
    let mut client = f.peer;
    if peer_trusted {
        let chain: Vec<String> = h
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        // The client is the right-most address not itself a trusted proxy.
        for ip in chain.iter().rev().filter_map(|s| s.parse::<IpAddr>().ok()) {
            client = ip;
            if !is_trusted(&ip) {
                break;
            }
        }
        let mut xff = chain.join(", ");
        if !xff.is_empty() {
            xff.push_str(", ");
        }
        xff.push_str(&f.peer.to_string());
        set(h, &X_FORWARDED_FOR, &xff);
        for (name, value) in [
            (&X_FORWARDED_PROTO, f.proto.to_owned()),
            (&X_FORWARDED_HOST, f.host.to_owned()),
            (&X_FORWARDED_PORT, f.port.to_string()),
        ] {
            if !h.contains_key(name) {
                set(h, name, &value);
            }
        }
    } else {
        // RFC 7239 and the prefix header carry the same claims; from an untrusted peer, drop them.
        h.remove(&FORWARDED);
        h.remove(&X_FORWARDED_PREFIX);
        let peer = ip_value(f.peer);
        h.insert(X_FORWARDED_FOR.clone(), peer.clone());
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(f.proto));
        set(h, &X_FORWARDED_HOST, f.host);
        h.insert(X_FORWARDED_PORT.clone(), port_value(f.port));
        h.insert(X_REAL_IP.clone(), peer);
        return client;
    }
    set(h, &X_REAL_IP, &client.to_string());
    client
}

thread_local! {
    /// The last peer address and listener port as header values: consecutive requests mostly
    /// share them (keep-alive), so they are formatted once, not per request.
    static LAST_PEER: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
    static LAST_PORT: std::cell::RefCell<Option<(u16, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// An address as a header value (the `Display` form).
fn ip_value(ip: IpAddr) -> HeaderValue {
    LAST_PEER.with_borrow_mut(|last| match last {
        Some((a, v)) if *a == ip => v.clone(),
        _ => {
            let v =
                HeaderValue::from_str(&ip.to_string()).expect("an address is a valid header value");
            *last = Some((ip, v.clone()));
            v
        }
    })
}

/// A port as a header value.
fn port_value(port: u16) -> HeaderValue {
    LAST_PORT.with_borrow_mut(|last| match last {
        Some((p, v)) if *p == port => v.clone(),
        _ => {
            let v = HeaderValue::from(port);
            *last = Some((port, v.clone()));
            v
        }
    })
}

/// Keeps a client-sent X-Request-Id when it is 1–200 visible ASCII characters, else sets a
/// new random one; returns the id.
pub fn ensure_request_id(h: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = h.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 200
            && b.iter().all(|c| c.is_ascii_graphic())
            && h.get_all(&X_REQUEST_ID).iter().count() == 1
        {
            return v.clone();
        }
    }
    let v = new_request_id();
    h.insert(X_REQUEST_ID.clone(), v.clone());
    v
}

thread_local! {
    /// Per-thread generator state, seeded once from the OS; ids need to be unique, not secret.
    static ID_STATE: std::cell::Cell<u64> = std::cell::Cell::new({
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        a ^ b.rotate_left(32)
    });
}

/// A random version-4 UUID in simple form (32 hex digits), without a system call per id
/// (wyrand: a fast non-cryptographic generator).
pub(crate) fn new_request_id() -> HeaderValue {
    let next = || {
        ID_STATE.with(|s| {
            let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
            s.set(x);
            let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
            (t >> 64) as u64 ^ t as u64
        })
    };
    let bytes = ((u128::from(next()) << 64) | u128::from(next())).to_le_bytes();
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    let id = uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .simple()
        .encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("hex is a valid header value")
}

fn set(h: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name.clone(), v);
    }
}

/// Whether the request asks for a WebSocket upgrade (`Connection: upgrade` +
/// `Upgrade: websocket`). Other upgrades (`h2c` above all) are stripped, never tunnelled.
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_index_agrees_with_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index(&header::HOST), None);
    }

    #[test]
    fn strips_the_fixed_list_and_what_connection_names_keeping_upgrade_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, X-Secret"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let mut kept = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["host"]);
        strip_hop_by_hop(&mut kept, true);
        let mut names: Vec<_> = kept.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "upgrade"]);
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_is_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }
}
