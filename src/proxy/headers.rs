//! Header rules of ingress-semantics.md section 8: hop-by-hop removal, forwarding headers.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// The request id header, kept when the client sent a sane one, else generated.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers: `Connection` and all it names, and the fixed list. The
/// `Upgrade` header survives when `keep_upgrade` is set.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        h.remove(&name);
    }
    h.remove(header::CONNECTION);
    h.remove(&KEEP_ALIVE);
    h.remove(&PROXY_CONNECTION);
    h.remove(header::TE);
    h.remove(header::TRAILER);
    h.remove(header::TRANSFER_ENCODING);
    if !keep_upgrade {
        h.remove(header::UPGRADE);
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
        set(h, &X_FORWARDED_FOR, &f.peer.to_string());
        set(h, &X_FORWARDED_PROTO, f.proto);
        set(h, &X_FORWARDED_HOST, f.host);
        set(h, &X_FORWARDED_PORT, &f.port.to_string());
    }
    set(h, &X_REAL_IP, &client.to_string());
    client
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
    let id = uuid::Uuid::new_v4().simple().to_string();
    let v = HeaderValue::from_str(&id).expect("hex is a valid header value");
    h.insert(X_REQUEST_ID.clone(), v.clone());
    v
}

fn set(h: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name.clone(), v);
    }
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}
