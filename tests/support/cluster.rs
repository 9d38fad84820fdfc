//! Cluster test support: a real etcd + kube-apiserver (RBAC on) on loopback, kubectl and
//! helm against it, and backends in a network namespace on 198.18.0.0/15.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Paths of the pinned test binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    pub apiserver: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    pub pebble: PathBuf,
    pub challtestsrv: PathBuf,
    pub pebble_cert: PathBuf,
    pub pebble_key: PathBuf,
    pub pebble_ca: PathBuf,
    pub vars: HashMap<String, String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Finds the test binaries (env from hack/test.sh, else `hack/testbins/build.sh --print-env`)
/// and checks that network namespaces can be made. With CI set (or PORTCULLIS_E2E_REQUIRE=1)
/// anything missing panics; otherwise the caller skips with one line on stderr.
pub fn gate() -> Option<Bins> {
    match find() {
        Ok(b) => Some(b),
        Err(why) => {
            let required = std::env::var("CI").is_ok_and(|v| !v.is_empty())
                || std::env::var("PORTCULLIS_E2E_REQUIRE").is_ok_and(|v| v == "1");
            let msg = format!(
                "cluster e2e tests cannot run: {why}; run `bash hack/testbins/build.sh` (as root, with iproute2)"
            );
            if required {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

fn find() -> Result<Bins, String> {
    let mut vars: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PORTCULLIS_"))
        .collect();
    if !vars.contains_key("PORTCULLIS_KUBE_APISERVER") {
        let out = Command::new("bash")
            .arg(repo().join("hack/testbins/build.sh"))
            .arg("--print-env")
            .output()
            .map_err(|e| format!("cannot run build.sh: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    let get = |k: &str| -> Result<PathBuf, String> {
        let p = PathBuf::from(vars.get(k).ok_or_else(|| format!("{k} is not set"))?);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{} ({k}) is missing", p.display()))
        }
    };
    let bins = Bins {
        apiserver: get("PORTCULLIS_KUBE_APISERVER")?,
        etcd: get("PORTCULLIS_ETCD")?,
        kubectl: get("PORTCULLIS_KUBECTL")?,
        helm: get("PORTCULLIS_HELM")?,
        pebble: get("PORTCULLIS_PEBBLE")?,
        challtestsrv: get("PORTCULLIS_PEBBLE_CHALLTESTSRV")?,
        pebble_cert: get("PORTCULLIS_PEBBLE_CERT")?,
        pebble_key: get("PORTCULLIS_PEBBLE_KEY")?,
        pebble_ca: get("PORTCULLIS_PEBBLE_CA")?,
        vars: vars.clone(),
    };
    let ip = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map_err(|e| format!("`ip` (iproute2) not found: {e}"))?;
    if !ip.status.success() {
        return Err("`ip netns list` failed: network namespaces are needed".into());
    }
    Ok(bins)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// etcd + kube-apiserver; killed (by PID, apiserver first) on drop.
pub struct ControlPlane {
    pub bins: Bins,
    pub run: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub api_port: u16,
    etcd_port: u16,
    etcd: Child,
    apiserver: Option<Child>,
}

impl ControlPlane {
    pub fn start(bins: Bins) -> Self {
        let run = tempfile::Builder::new()
            .prefix("portcullis-e2e-")
            .tempdir()
            .unwrap();
        let pki = run.path().join("pki");
        let st = Command::new("bash")
            .arg(repo().join("hack/e2e/pki.sh"))
            .arg(&pki)
            .status()
            .unwrap();
        assert!(st.success(), "PKI generation failed");
        let etcd_port = free_port();
        let peer = free_port();
        let etcd = Command::new(&bins.etcd)
            .args([
                "--name=e2e",
                &format!("--data-dir={}", run.path().join("etcd").display()),
            ])
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=e2e=http://127.0.0.1:{peer}"))
            .args(["--unsafe-no-fsync=true", "--log-level=warn"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(run.path().join("etcd.log")).unwrap())
            .spawn()
            .expect("etcd starts");
        let api_port = free_port();
        let kubeconfig = run.path().join("admin.kubeconfig");
        let mut cp = ControlPlane {
            bins,
            run,
            kubeconfig,
            api_port,
            etcd_port,
            etcd,
            apiserver: None,
        };
        cp.start_apiserver();
        let pki = pki.display().to_string();
        let server = format!("https://127.0.0.1:{api_port}");
        for args in [
            vec![
                "config",
                "set-cluster",
                "e2e",
                "--server",
                &server,
                "--certificate-authority",
                &format!("{pki}/ca.crt"),
                "--embed-certs",
            ],
            vec![
                "config",
                "set-credentials",
                "admin",
                "--client-certificate",
                &format!("{pki}/admin.crt"),
                "--client-key",
                &format!("{pki}/admin.key"),
                "--embed-certs",
            ],
            vec![
                "config",
                "set-context",
                "e2e",
                "--cluster",
                "e2e",
                "--user",
                "admin",
            ],
            vec!["config", "use-context", "e2e"],
        ] {
            cp.kubectl_ok(&args);
        }
        cp.wait_ready(Duration::from_secs(60));
        // Our CRDs, as a user installs them.
        let crds = repo().join("crds");
        cp.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
        cp.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]);
        cp
    }

    /// Starts (or restarts) kube-apiserver on the same port and etcd.
    pub fn start_apiserver(&mut self) {
        let pki = self.run.path().join("pki");
        let p = |f: &str| pki.join(f).display().to_string();
        let child = Command::new(&self.bins.apiserver)
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                self.etcd_port
            ))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={}", self.api_port))
            .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
            .arg(format!("--client-ca-file={}", p("ca.crt")))
            .args([
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=198.19.0.0/24",
            ])
            .arg(format!(
                "--service-account-issuer=https://127.0.0.1:{}",
                self.api_port
            ))
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                p("sa.key")
            ))
            .args([
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
            ])
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.run.path().join("apiserver.log"))
                    .unwrap(),
            )
            .spawn()
            .expect("kube-apiserver starts");
        self.apiserver = Some(child);
    }

    /// Kills kube-apiserver (etcd keeps running).
    pub fn stop_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.run.path().join("apiserver.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.bins.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    /// The Events of a namespace, one `reason=note` line each.
    pub fn event_lines(&self, ns: &str) -> String {
        self.kubectl_ok(&[
            "-n",
            ns,
            "get",
            "events.events.k8s.io",
            "-o",
            "jsonpath={range .items[*]}{.reason}={.note}{\"\\n\"}{end}",
        ])
    }

    /// Runs kubectl and returns stdout; panics with stderr on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml);
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_input(args, input);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{input}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn helm(&self, args: &[&str]) -> Output {
        Command::new(&self.bins.helm)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    /// A fresh namespace for one test.
    pub fn namespace(&self, name: &str) -> String {
        self.kubectl_ok(&["create", "namespace", name]);
        name.to_owned()
    }

    /// A kubeconfig with a ServiceAccount token of `ns/sa` (minted with `kubectl create token`).
    pub fn token_kubeconfig(&self, ns: &str, sa: &str) -> PathBuf {
        let token = self
            .kubectl_ok(&["-n", ns, "create", "token", sa, "--duration=2h"])
            .trim()
            .to_owned();
        let path = self.run.path().join(format!("{ns}-{sa}.kubeconfig"));
        std::fs::copy(&self.kubeconfig, &path).unwrap();
        let k = |args: &[&str]| {
            let out = Command::new(&self.bins.kubectl)
                .arg("--kubeconfig")
                .arg(&path)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        k(&[
            "config",
            "set-credentials",
            "sa",
            &format!("--token={token}"),
        ]);
        k(&[
            "config",
            "set-context",
            "sa",
            "--cluster",
            "e2e",
            "--user",
            "sa",
            "--namespace",
            ns,
        ]);
        k(&["config", "use-context", "sa"]);
        path
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

/// A network namespace holding backend processes on 198.18.N.0/24, reached over a veth pair
/// whose host end is 198.18.N.1. Deleted (with its processes killed by PID) on drop.
pub struct BackendNet {
    pub name: String,
    host_if: String,
    pub subnet: u8,
    next: u8,
    children: Vec<Child>,
}

impl BackendNet {
    pub fn create() -> Self {
        let pid = std::process::id();
        let subnet = u8::try_from(pid % 200 + 20).unwrap();
        let name = format!("pc-be-{pid}");
        let host_if = format!("pcv{pid}");
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "pcv-b", "netns", &name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("198.18.{subnet}.1/24"),
            "dev",
            &host_if,
        ]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&["-n", &name, "link", "set", "pcv-b", "up"]);
        BackendNet {
            name,
            host_if,
            subnet,
            next: 2,
            children: Vec::new(),
        }
    }

    /// A new address inside the namespace.
    pub fn add_address(&mut self) -> Ipv4Addr {
        let addr = Ipv4Addr::new(198, 18, self.subnet, self.next);
        self.next += 1;
        let out = Command::new("ip")
            .args([
                "-n",
                &self.name,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "pcv-b",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        addr
    }

    /// Starts `portcullis echo` inside the namespace on `addr:port`; waits until it answers.
    pub fn echo(&mut self, addr: Ipv4Addr, port: u16, name: &str) -> SocketAddr {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "echo",
                "--listen",
                &format!("{addr}:{port}"),
                "--name",
                name,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        let sa = SocketAddr::from((addr, port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "echo backend {sa} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        sa
    }
}

impl Drop for BackendNet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// Starts `portcullis serve` in cluster mode with `kubeconfig` and extra flags.
pub fn controller(kubeconfig: &Path, extra: &[&str]) -> super::Portcullis {
    super::Portcullis::spawn_with(None, extra, &[("KUBECONFIG", kubeconfig.to_str().unwrap())])
}

impl ControlPlane {
    /// Runs kubectl with `input` on stdin and returns its whole output (stderr carries the API
    /// server's warnings, e.g. PodSecurity).
    pub fn kubectl_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.bins.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs helm against this control plane: stdout, or an error with the command and stderr.
    pub fn helm_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.helm(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "helm {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// Runs helm without a cluster (lint, template, show): stdout, or an error with stderr.
pub fn helm_offline(bins: &Bins, args: &[&str]) -> Result<String, String> {
    let out = Command::new(&bins.helm).args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "helm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// A test failure unless `cond` holds.
pub fn check(cond: bool, msg: impl Into<String>) -> Result<(), libtest_mimic::Failed> {
    if cond { Ok(()) } else { Err(msg.into().into()) }
}

/// Polls `f` until it returns true, for at most `within`.
pub fn eventually(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> bool,
) -> Result<(), libtest_mimic::Failed> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    Err(format!("timed out waiting for: {what}").into())
}

/// `kubectl get KIND NAME -o jsonpath=PATH` in namespace `ns` (empty output on error).
pub fn jsonpath(cp: &ControlPlane, ns: &str, kind: &str, name: &str, path: &str) -> String {
    String::from_utf8_lossy(
        &cp.kubectl(&[
            "-n",
            ns,
            "get",
            kind,
            name,
            "-o",
            &format!("jsonpath={path}"),
        ])
        .stdout,
    )
    .into_owned()
}
