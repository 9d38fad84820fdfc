//! Command-line flags and their `PORTCULLIS_*` environment variables: the only place that
//! knows their names. Turns them into each module's `Config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::routes::{CompileOptions, NamespacedName, PortRef, ServiceRef};
use crate::telemetry::LogFormat;

/// Portcullis, a Kubernetes Ingress controller.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, args_override_self = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller and proxy (standalone with --manifests).
    Serve(Box<ServeArgs>),
    /// Run the quickstart: examples/quickstart with built-in echo backends on loopback.
    Demo(DemoArgs),
    /// Run an echo backend (for tests and demos).
    Echo(EchoArgs),
    /// Write the CRD YAML generated from the Rust types (the source of `crds/`).
    Crds(CrdsArgs),
}

/// Flags of `crds`.
#[derive(Debug, Args, Clone)]
pub struct CrdsArgs {
    /// Directory to write one file per CRD into.
    #[arg(long, default_value = "crds")]
    pub out: PathBuf,
}

/// Flags of `serve`; the same flags serve cluster mode.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Serve the objects in this directory instead of a cluster's.
    #[arg(long, env = "PORTCULLIS_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Plain HTTP listen address.
    #[arg(long, env = "PORTCULLIS_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// HTTPS listen address.
    #[arg(long, env = "PORTCULLIS_HTTPS_LISTEN", default_value = "0.0.0.0:8443")]
    pub https_listen: SocketAddr,
    /// Admin listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// The ingress class this controller serves.
    #[arg(long, env = "PORTCULLIS_INGRESS_CLASS", default_value = "portcullis")]
    pub ingress_class: String,
    /// The `spec.controller` value of IngressClasses this controller serves.
    #[arg(
        long,
        env = "PORTCULLIS_CONTROLLER_NAME",
        default_value = "portcullis.dev/ingress-controller"
    )]
    pub controller_name: String,
    /// Also serve Ingresses that name no class.
    #[arg(long, env = "PORTCULLIS_WATCH_INGRESS_WITHOUT_CLASS")]
    pub watch_ingress_without_class: bool,
    /// TLS Secret served when no other certificate matches (namespace/name).
    #[arg(long, env = "PORTCULLIS_DEFAULT_CERTIFICATE", value_parser = parse_namespaced, value_name = "NS/NAME")]
    pub default_certificate: Option<NamespacedName>,
    /// Service port that answers requests no Ingress matches (namespace/name:port).
    #[arg(long, env = "PORTCULLIS_DEFAULT_BACKEND", value_parser = parse_service_ref, value_name = "NS/NAME:PORT")]
    pub default_backend: Option<ServiceRef>,
    /// Peers whose X-Forwarded-* headers are trusted (comma-separated CIDRs).
    #[arg(long, env = "PORTCULLIS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr, value_name = "CIDR,...")]
    pub trusted_proxies: Vec<IpNet>,
    /// Log format.
    #[arg(
        long,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Allow backends of type ExternalName (lets Ingress authors proxy to any DNS name).
    #[arg(long, env = "PORTCULLIS_ALLOW_EXTERNAL_NAME_SERVICES")]
    pub allow_external_name_services: bool,
    /// Time allowed to connect to an upstream endpoint.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_CONNECT_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub upstream_connect_timeout: Duration,
    /// Time allowed for an upstream to start answering once the request (with its body) is
    /// sent, and between two pieces of its response body.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_RESPONSE_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub upstream_response_timeout: Duration,
    /// Time allowed for a client to send a request head (and finish a TLS handshake).
    #[arg(long, env = "PORTCULLIS_CLIENT_HEADER_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub client_header_timeout: Duration,
    /// Time allowed between two pieces of a client's request body; a client that stalls longer
    /// gets 408.
    #[arg(long, env = "PORTCULLIS_CLIENT_BODY_TIMEOUT", value_parser = parse_timeout, default_value = "60s")]
    pub client_body_timeout: Duration,
    /// Time a response may wait for the client to read any of it; a client that reads nothing
    /// for longer is disconnected, an HTTP/2 stream left without window that long is reset.
    #[arg(long, env = "PORTCULLIS_CLIENT_SEND_TIMEOUT", value_parser = parse_timeout, default_value = "60s")]
    pub client_send_timeout: Duration,
    /// Idle client keep-alive connections are closed after this long.
    #[arg(long, env = "PORTCULLIS_KEEPALIVE_TIMEOUT", value_parser = parse_duration, default_value = "75s")]
    pub keepalive_timeout: Duration,
    /// Time allowed for a client to complete the TLS handshake.
    #[arg(long, env = "PORTCULLIS_TLS_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub tls_handshake_timeout: Duration,
    /// Most client connections open at once per listener; more wait in the accept queue.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 65536)]
    pub max_connections: usize,
    /// Serve plain HTTP/1.1 requests on the lean fast path (`false`: every request takes the
    /// general hyper path; an escape hatch, both apply the same rules).
    #[arg(long, env = "PORTCULLIS_HTTP1_FAST_PATH", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub http1_fast_path: bool,
    /// Most concurrent HTTP/2 streams per client connection.
    #[arg(long, env = "PORTCULLIS_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// Largest request head, bytes.
    #[arg(long, env = "PORTCULLIS_MAX_REQUEST_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_request_header_bytes: usize,
    /// Largest request body, bytes (413 above).
    #[arg(long, env = "PORTCULLIS_MAX_REQUEST_BODY_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_body_bytes: u64,
    /// Port that HTTP → HTTPS redirects point to.
    #[arg(long, env = "PORTCULLIS_HTTPS_REDIRECT_PORT", default_value_t = 443)]
    pub https_redirect_port: u16,
    /// How long open requests may finish after shutdown starts.
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_GRACE_PERIOD", value_parser = parse_duration, default_value = "30s")]
    pub shutdown_grace_period: Duration,
    /// Watch only these namespaces (repeatable or comma-separated); all when absent.
    #[arg(
        long,
        env = "PORTCULLIS_WATCH_NAMESPACE",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub watch_namespace: Vec<String>,
    /// Service whose address is published in Ingress status (namespace/name).
    #[arg(long, env = "PORTCULLIS_PUBLISH_SERVICE", value_parser = parse_namespaced, value_name = "NS/NAME", conflicts_with = "publish_address")]
    pub publish_service: Option<NamespacedName>,
    /// Addresses published in Ingress status (comma-separated IPs or host names).
    #[arg(long, env = "PORTCULLIS_PUBLISH_ADDRESS", value_parser = parse_publish_address, value_name = "ADDR,...")]
    pub publish_address: Option<AddressList>,
    /// Elect a leader among replicas on a Lease; only the leader writes status and Events.
    #[arg(long, env = "PORTCULLIS_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "PORTCULLIS_ELECTION_ID",
        default_value = "portcullis-leader"
    )]
    pub election_id: String,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "PORTCULLIS_ELECTION_NAMESPACE")]
    pub election_namespace: Option<String>,
    /// Automatic certificates over ACME (needs the CRDs of `crds/`); `--acme=false` turns it off.
    #[arg(long, env = "PORTCULLIS_ACME", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub acme: bool,
    /// Also honour cert-manager's Ingress annotations (`cert-manager.io/cluster-issuer`, ...).
    #[arg(long, env = "PORTCULLIS_ACME_CERT_MANAGER_ANNOTATIONS")]
    pub acme_cert_manager_annotations: bool,
    /// First wait after a failed issuance; then ×10, ×100, and one day.
    #[arg(long, env = "PORTCULLIS_ACME_BACKOFF_BASE", value_parser = parse_duration, default_value = "60s")]
    pub acme_backoff_base: Duration,
    /// Wait after presenting a challenge, for every replica to pick it up, before the CA validates.
    #[arg(long, env = "PORTCULLIS_ACME_CHALLENGE_PROPAGATION_DELAY", value_parser = parse_duration, default_value = "2s")]
    pub acme_challenge_propagation_delay: Duration,
    /// Longest wait between two ACME Renewal Information (RFC 9773) queries per certificate.
    #[arg(long, env = "PORTCULLIS_ACME_ARI_MAX_POLL", value_parser = parse_duration, default_value = "12h")]
    pub acme_ari_max_poll: Duration,
    /// Namespace of ClusterAcmeIssuer account-key Secrets (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "PORTCULLIS_CLUSTER_RESOURCE_NAMESPACE")]
    pub cluster_resource_namespace: Option<String>,
    /// After SIGTERM, how long traffic is still served (with /readyz at 503) before listeners close.
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_DRAIN_DELAY", value_parser = parse_duration, default_value = "5s")]
    pub shutdown_drain_delay: Duration,
    /// How often the manifest directory is checked for changes.
    #[arg(long, env = "PORTCULLIS_MANIFESTS_POLL_INTERVAL", value_parser = parse_duration, default_value = "250ms")]
    pub manifests_poll_interval: Duration,
    /// Runtime worker threads: 0 = one per core, 1 = a single-threaded (current_thread) runtime.
    #[arg(long, env = "PORTCULLIS_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// How long a worker thread that has been at least 85% busy spins before it sleeps
    /// (`0us`, the default: never spin). Below 70% busy it never spins. Worth trying where
    /// waking a sleeping CPU is dear (docs/benchmarks.md).
    #[arg(long, env = "PORTCULLIS_IDLE_SPIN", value_parser = parse_duration, default_value = "0us")]
    pub idle_spin: Duration,
}

/// Flags of `demo`.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Manifests to serve; the built-in quickstart when the directory does not exist.
    #[arg(
        long,
        env = "PORTCULLIS_MANIFESTS",
        default_value = "examples/quickstart",
        value_name = "DIR"
    )]
    pub manifests: PathBuf,
    /// Plain HTTP listen address.
    #[arg(long, env = "PORTCULLIS_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// HTTPS listen address.
    #[arg(
        long,
        env = "PORTCULLIS_HTTPS_LISTEN",
        default_value = "127.0.0.1:8443"
    )]
    pub https_listen: SocketAddr,
    /// Admin listen address.
    #[arg(
        long,
        env = "PORTCULLIS_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,
    /// Log format.
    #[arg(
        long,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// Flags of `echo`.
#[derive(Debug, Args, Clone)]
pub struct EchoArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
    /// Name reported in every answer.
    #[arg(long, default_value = "echo")]
    pub name: String,
}

impl ServeArgs {
    /// Compile-step settings.
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            ingress_class: self.ingress_class.clone(),
            controller_name: self.controller_name.clone(),
            watch_without_class: self.watch_ingress_without_class,
            default_backend: self.default_backend.clone(),
            default_certificate: self.default_certificate.clone(),
            allow_external_name: self.allow_external_name_services,
            standalone: self.manifests.is_some(),
        }
    }

    /// The namespace of ClusterAcmeIssuer account keys.
    pub fn cluster_resource_namespace(&self) -> String {
        self.cluster_resource_namespace
            .clone()
            .unwrap_or_else(pod_namespace)
    }

    /// The namespace of the leader-election Lease.
    pub fn election_namespace(&self) -> String {
        self.election_namespace
            .clone()
            .unwrap_or_else(pod_namespace)
    }

    /// Data-plane settings.
    pub fn proxy_config(&self) -> crate::proxy::Config {
        crate::proxy::Config {
            connect_timeout: self.upstream_connect_timeout,
            response_timeout: self.upstream_response_timeout,
            client_header_timeout: self.client_header_timeout,
            client_body_timeout: self.client_body_timeout,
            client_send_timeout: self.client_send_timeout,
            keepalive_timeout: self.keepalive_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            max_connections: self.max_connections,
            http1_fast_path: self.http1_fast_path,
            max_concurrent_streams: self.max_concurrent_streams,
            max_header_bytes: self.max_request_header_bytes,
            max_body_bytes: self.max_request_body_bytes,
            trusted_proxies: self.trusted_proxies.clone(),
            https_redirect_port: self.https_redirect_port,
            ..crate::proxy::Config::default()
        }
    }

    /// The `serve` flags for the demo: loopback listeners, redirects to the demo's HTTPS port.
    pub fn for_demo(d: &DemoArgs, manifests: PathBuf) -> Self {
        let mut args = ServeArgs::try_parse_from_defaults();
        args.manifests = Some(manifests);
        args.http_listen = d.http_listen;
        args.https_listen = d.https_listen;
        args.admin_listen = d.admin_listen;
        args.log_format = d.log_format;
        args.https_redirect_port = d.https_listen.port();
        args.shutdown_drain_delay = Duration::ZERO;
        args
    }

    fn try_parse_from_defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: ServeArgs,
        }
        Only::parse_from(["portcullis"]).args
    }
}

/// `$POD_NAMESPACE` (set by the chart), else `default`.
fn pod_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Parses `namespace/name`.
pub fn parse_namespaced(s: &str) -> Result<NamespacedName, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(NamespacedName {
                namespace: ns.into(),
                name: name.into(),
            })
        }
        _ => Err(format!("{s:?} is not of the form namespace/name")),
    }
}

/// Parses `namespace/name:port`, the port a number or a name.
pub fn parse_service_ref(s: &str) -> Result<ServiceRef, String> {
    let err = || format!("{s:?} is not of the form namespace/name:port");
    let (nn, port) = s.rsplit_once(':').ok_or_else(err)?;
    let nn = parse_namespaced(nn).map_err(|_| err())?;
    if port.is_empty() {
        return Err(err());
    }
    let port = match port.parse::<i32>() {
        Ok(n) if (1..=65535).contains(&n) => PortRef::Number(n),
        Ok(_) => return Err(format!("{s:?}: port must be 1 to 65535")),
        Err(_) => PortRef::Name(port.to_owned()),
    };
    Ok(ServiceRef {
        namespace: nn.namespace,
        name: nn.name,
        port,
    })
}

/// Parses a CIDR, or a single address as a /32 or /128.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR such as 10.0.0.0/8"))
}

/// The addresses of `--publish-address`.
#[derive(Debug, Clone)]
pub struct AddressList(pub Vec<crate::status::LbAddress>);

fn parse_publish_address(s: &str) -> Result<AddressList, String> {
    crate::status::parse_publish_address(s).map(AddressList)
}

/// A duration that must not be zero (a zero wait would end every slow exchange at once).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: a timeout must be longer than zero")),
        d => Ok(d),
    }
}

/// Parses a duration such as `250ms`, `5s`, `2m` or `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration such as 10us, 250ms, 5s, 2m or 1h");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    match unit {
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("0us"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "10", "us", "1.5s", "-1s", "10 s", "3d"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad:?}: {e}");
        }
    }
}
