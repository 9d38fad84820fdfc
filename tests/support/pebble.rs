//! A real ACME CA for tests: Pebble plus pebble-challtestsrv (DNS only) on loopback, both
//! killed (by PID) on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::cluster::Bins;

pub struct Pebble {
    pub dir: tempfile::TempDir,
    pub acme_port: u16,
    pub mgmt_port: u16,
    pub dns_port: u16,
    pub chall_mgmt_port: u16,
    /// Port the VA validates HTTP-01 on (Portcullis' HTTP listener port).
    pub http_port: u16,
    /// Port the VA validates TLS-ALPN-01 on (Portcullis' HTTPS listener port).
    pub tls_port: u16,
    pub ca_pem: String,
    pebble: Child,
    chall: Child,
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pebble {
    pub fn start(bins: &Bins) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-pebble-")
            .tempdir()
            .unwrap();
        let (acme_port, mgmt_port, dns_port, chall_mgmt_port, http_port, tls_port) =
            (port(), port(), port(), port(), port(), port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": bins.pebble_cert, "privateKey": bins.pebble_key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "retryAfter": {"authz": 1, "order": 1},
            "profiles": {
                "default": {"description": "90 days", "validityPeriod": 7_776_000},
                "short": {"description": "24 seconds", "validityPeriod": 24}
            }
        }});
        let cfg = dir.path().join("pebble.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let log = |n: &str| std::fs::File::create(dir.path().join(n)).unwrap();
        let chall = Command::new(&bins.challtestsrv)
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-doh",
                "",
            ])
            .args([
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
                "-management",
                &format!("127.0.0.1:{chall_mgmt_port}"),
            ])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv starts");
        let pebble = Command::new(&bins.pebble)
            .args([
                "-config",
                cfg.to_str().unwrap(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble starts");
        let ca_pem = std::fs::read_to_string(&bins.pebble_ca).unwrap();
        let p = Pebble {
            dir,
            acme_port,
            mgmt_port,
            dns_port,
            chall_mgmt_port,
            http_port,
            tls_port,
            ca_pem,
            pebble,
            chall,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [acme_port, chall_mgmt_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "pebble did not start; log:\n{}",
                    p.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        p
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Makes `host` resolve to `ip` for the CA's validation.
    pub async fn set_a(&self, host: &str, ip: &str) {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.chall_mgmt_port)
            .parse()
            .unwrap();
        for path in ["/clear-a", "/add-a"] {
            let body = serde_json::json!({"host": host, "addresses": [ip]}).to_string();
            let req = http::Request::post(path)
                .header("host", "challtestsrv")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let r = super::send(addr, req).await.unwrap();
            assert_eq!(r.status(), 200, "challtestsrv {path}");
        }
    }

    /// Makes the CA's renewal information for `leaf_pem` suggest the window `start`..`end`
    /// (RFC 3339).
    pub async fn set_renewal_window(&self, leaf_pem: &str, start: &str, end: &str) {
        let ari = serde_json::json!({"suggestedWindow": {"start": start, "end": end}}).to_string();
        let body = serde_json::json!({"Certificate": leaf_pem, "ARIResponse": ari}).to_string();
        let req = http::Request::post("/set-renewal-info/")
            .header("content-type", "application/jose+json")
            .header("user-agent", "portcullis-tests")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, body) = self.management(req).await;
        assert_eq!(status, 200, "pebble set-renewal-info: {body}");
    }

    /// Pebble's root certificate of this run (regenerated at every start), PEM.
    pub async fn root(&self) -> String {
        let req = http::Request::get("/roots/0")
            .body(Full::<Bytes>::default())
            .unwrap();
        self.management(req).await.1
    }

    /// Sends one request to Pebble's management interface (over TLS, verified against its
    /// CA); returns the status and the body as text.
    async fn management(&self, mut req: http::Request<Full<Bytes>>) -> (u16, String) {
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("localhost"));
        let tls = connect_verified(
            &format!("127.0.0.1:{}", self.mgmt_port).parse().unwrap(),
            "localhost",
            &self.ca_pem,
        )
        .await
        .unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = tx.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in [&mut self.pebble, &mut self.chall] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TLS connection that verifies the server's chain against `roots_pem` for `sni`.
pub async fn connect_verified(
    addr: &SocketAddr,
    sni: &str,
    roots_pem: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}
