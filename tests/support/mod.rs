//! Test support: the real `portcullis` binary on loopback, real echo backends, and small
//! HTTP/1.1, HTTP/2 and TLS clients.
#![allow(dead_code)]

pub mod cluster;
pub mod pebble;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A free loopback port for a process to listen on. It lies below the kernel's ephemeral
/// range, so no outgoing connection (of a proxy to its backends, say) can take it between
/// this check and the bind; each port is handed out once per test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (start, span) = (10_000u32, low.saturating_sub(10_000).max(1_000));
    // Test processes run one after another, so a per-process offset keeps them apart too.
    let _ = NEXT.compare_exchange(
        0,
        std::process::id() % span + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = start + NEXT.fetch_add(1, Ordering::SeqCst) % span;
        if let Ok(l) = StdListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().unwrap().port();
        }
    }
    panic!("no free port below the ephemeral range")
}

/// An in-process echo backend on a real loopback socket.
pub struct Echo {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Echo {
    pub async fn start(name: &str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(portcullis::echo::serve(l, name.to_owned(), stop.clone()));
        Echo { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// YAML for a Service `name` (port 80, named `http`) and its EndpointSlice pointing at `addrs`.
pub fn service_yaml(name: &str, addrs: &[SocketAddr]) -> String {
    let port = addrs.first().map(|a| a.port()).unwrap_or(1);
    let eps: String = addrs
        .iter()
        .map(|a| {
            format!(
                "  - addresses: [\"{}\"]\n    conditions: {{ready: true}}\n",
                a.ip()
            )
        })
        .collect();
    let eps = if eps.is_empty() {
        "  []\n".to_owned()
    } else {
        eps
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: {name}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n{eps}"
    )
}

/// YAML for an Ingress with one host and `(path, pathType, service)` rules.
pub fn ingress_yaml(name: &str, host: &str, paths: &[(&str, &str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ingressClassName: portcullis\n  rules:\n  - host: '{host}'\n    http:\n      paths:\n"
    );
    for (p, t, svc) in paths {
        s += &format!(
            "      - path: {p}\n        pathType: {t}\n        backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}\n"
        );
    }
    s
}

/// YAML for a `kubernetes.io/tls` Secret.
pub fn tls_secret_yaml(name: &str, cert_pem: &str, key_pem: &str) -> String {
    let ind = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        ind(cert_pem),
        ind(key_pem)
    )
}

/// A directory of manifests.
pub struct Manifests {
    pub dir: tempfile::TempDir,
}

impl Manifests {
    pub fn new() -> Self {
        Manifests {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file atomically (write + rename), as editors and config tools do.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }
}

/// The real `portcullis serve` process, killed (by its PID) on drop.
pub struct Portcullis {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Portcullis {
    /// Starts `portcullis serve --manifests dir` on free loopback ports and waits until ready.
    pub async fn start(dir: &Path, extra: &[&str]) -> Self {
        let p = Self::spawn(dir, extra);
        p.wait_ready().await;
        p
    }

    pub fn spawn(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_with(Some(dir), extra, &[])
    }

    /// Starts `portcullis serve` (standalone when `dir` is given) with extra flags and env.
    pub fn spawn_with(dir: Option<&Path>, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("portcullis.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("serve");
        if let Some(dir) = dir {
            cmd.arg("--manifests").arg(dir);
        }
        let child = cmd
            .envs(envs.iter().copied())
            .args(["--shutdown-drain-delay", "0s"])
            .args(["--http-listen", &http.to_string()])
            .args(["--https-listen", &https.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--manifests-poll-interval", "50ms"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the portcullis binary starts");
        Portcullis {
            child,
            http,
            https,
            admin,
            log,
            _logdir: logdir,
        }
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = get(self.admin, "admin", "/readyz").await
                && r.status() == 200
            {
                return;
            }
            assert!(
                !self.exited(),
                "portcullis exited before it was ready; log:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "portcullis not ready in 20s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process has exited (it is a zombie, or gone); readable through `&self`.
    pub fn exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) {
            // The state follows the command name, which is in parentheses.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
            Err(_) => true,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until `check` passes on a GET of `host` + `path`, for at most 10 s.
    pub async fn wait_for(&self, host: &str, path: &str, check: impl Fn(&Resp) -> bool) -> Resp {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let last = match get(self.http, host, path).await {
                Ok(r) if check(&r) => return r,
                Ok(r) => format!("{} {}", r.status(), r.text()),
                Err(e) => format!("no response: {e}"),
            };
            assert!(
                !self.exited(),
                "portcullis exited while waiting for {host}{path}; log:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "condition not met in 10s for {host}{path}; last {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit; its exit code, or `None` on timeout.
    pub fn wait_exit(&mut self, within: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A buffered response.
pub struct Resp {
    pub inner: Response<Bytes>,
}

impl Resp {
    pub fn status(&self) -> u16 {
        self.inner.status().as_u16()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.inner.body()).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.inner.body())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The `backend` field of an echo answer.
    pub fn backend(&self) -> String {
        self.json()["backend"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.inner
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn buffer(
    resp: Response<hyper::body::Incoming>,
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        inner: Response::from_parts(parts, body),
    })
}

/// One HTTP/1.1 request on a new connection.
pub async fn send(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    buffer(tx.send_request(req).await?).await
}

/// GET `path` with `Host: host` over HTTP/1.1.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    send(
        addr,
        Request::get(path)
            .header("host", host)
            .body(Full::default())
            .unwrap(),
    )
    .await
}

/// A keep-alive HTTP/1.1 connection for load tests.
pub struct Conn {
    tx: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let stream = TcpStream::connect(addr).await?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { tx })
    }
    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
    ) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
        self.tx.ready().await?;
        let req = Request::get(path)
            .header("host", host)
            .body(Full::default())
            .unwrap();
        buffer(self.tx.send_request(req).await?).await
    }
}

/// Accepts any server certificate and remembers the leaf it was shown.
#[derive(Debug, Default)]
pub struct Recorder {
    pub leaf: std::sync::Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.leaf.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection to `addr` with SNI `sni` (none when it is an IP) and the given ALPN list.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let recorder = Arc::new(Recorder::default());
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(recorder.clone())
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let leaf = recorder
        .leaf
        .lock()
        .unwrap()
        .clone()
        .expect("server sent a certificate");
    (tls, leaf)
}

/// GET over HTTPS/1.1 with SNI `sni` and Host `host`; returns the response and served leaf.
pub async fn https_get(addr: SocketAddr, sni: &str, host: &str, path: &str) -> (Resp, Vec<u8>) {
    let (tls, leaf) = tls_connect(addr, sni, &[b"http/1.1"]).await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Full::<Bytes>::default())
        .unwrap();
    (
        buffer(tx.send_request(req).await.unwrap()).await.unwrap(),
        leaf,
    )
}

/// An HTTP/2 request over an established stream (TLS with ALPN h2, or h2c prior knowledge).
pub async fn h2_get<S>(io: S, uri: &str) -> Resp
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
    buffer(tx.send_request(req).await.unwrap()).await.unwrap()
}

/// DER of the first certificate in a PEM string.
pub fn pem_leaf_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}
