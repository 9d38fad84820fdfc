//! Composition root: wires sources, compile step, certificate store, proxy and admin
//! listener together, and is the only module that spawns long-lived tasks.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::acme::desired::ShimOptions;
use crate::acme::issuer::{AcmeConfig, Answers};
use crate::admin::{AdminState, Readiness};
use crate::api::AcmeCertificate;
use crate::cli::{DemoArgs, EchoArgs, ServeArgs};
use crate::routes::{self, CompileOptions, Problem, Reason, RouteTable, Snapshot};
use crate::source::dir::DirSource;
use crate::source::kube::ClusterSource;
use crate::source::lease::LeaseConfig;
use crate::status::events::Reporter;
use crate::status::{Publish, Published, StatusConfig};
use crate::telemetry::{Metrics, ResultLabel, SecretLabel};
use crate::tls::{self, Entry, Store};

/// Why Portcullis could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration cannot work (exit code 64).
    #[error("{0}")]
    Config(String),
    /// A listen address cannot be bound.
    #[error("cannot listen on {addr} ({flag}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The flag that set it.
        flag: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS setup failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The credentials lack permissions the controller needs.
    #[error("{0}")]
    Permissions(String),
    /// Writing the built-in quickstart failed.
    #[error("cannot prepare the quickstart manifests: {0}")]
    Io(#[from] std::io::Error),
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) => 64,
            AppError::Permissions(_) => 77,
            _ => 1,
        }
    }
}

/// Runs `portcullis serve` until SIGTERM or SIGINT: standalone with `--manifests`, else
/// against the cluster of the in-cluster configuration or KUBECONFIG.
pub async fn serve(args: ServeArgs) -> Result<(), AppError> {
    let shutdown = CancellationToken::new();
    let running = match args.manifests.clone() {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(AppError::Config(format!(
                    "--manifests: {} is not a directory",
                    dir.display()
                )));
            }
            start(&args, Source::Dir(dir), shutdown.clone()).await?
        }
        None => {
            let client = kube::Client::try_default().await.map_err(|e| {
                AppError::Config(format!(
                    "no Kubernetes API configuration (in-cluster service account or KUBECONFIG), and no --manifests: {e}"
                ))
            })?;
            crate::source::preflight::check(&client, &args)
                .await
                .map_err(AppError::Permissions)?;
            start(&args, Source::Cluster(client), shutdown.clone()).await?
        }
    };
    wait_for_signal().await;
    tracing::info!(drain_delay = ?args.shutdown_drain_delay, "SIGTERM: not ready any more; serving until the drain delay ends");
    running.admin.readiness.store(Arc::new(Readiness {
        ready: false,
        reason: "shutting down".into(),
        detail: vec![],
    }));
    tokio::time::sleep(args.shutdown_drain_delay).await;
    tracing::info!("closing listeners; open requests may finish within the grace period");
    shutdown.cancel();
    running.wait().await;
    Ok(())
}

/// Where objects come from.
enum Source {
    Dir(PathBuf),
    Cluster(kube::Client),
}

/// Runs the quickstart: built-in echo backends plus `serve` over the quickstart manifests.
pub async fn demo(args: DemoArgs) -> Result<(), AppError> {
    let dir = if args.manifests.is_dir() {
        args.manifests.clone()
    } else {
        let dir =
            std::env::temp_dir().join(format!("portcullis-quickstart-{}", std::process::id()));
        write_quickstart(&dir)?;
        dir
    };
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for (name, addr) in DEMO_BACKENDS {
        let addr: SocketAddr = addr.parse().expect("valid demo address");
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                addr,
                flag: "demo backend",
                source,
            })?;
        tasks.push(tokio::spawn(crate::echo::serve(
            l,
            (*name).to_owned(),
            shutdown.clone(),
        )));
    }
    let serve_args = ServeArgs::for_demo(&args, dir.clone());
    let running = start(&serve_args, Source::Dir(dir.clone()), shutdown.clone()).await?;
    let (h, s) = (args.http_listen, args.https_listen);
    println!(
        "Portcullis quickstart is running with manifests from {}\n\
         \n  curl -H 'Host: web.example.test' http://{h}/\n  curl -H 'Host: web.example.test' http://{h}/api/users\n  curl http://{h}/anything\n  curl --cacert examples/quickstart/ca.crt --resolve secure.example.test:{p}:{ip} https://secure.example.test:{p}/\n  curl http://{a}/metrics\n\nPress Ctrl-C to stop.",
        dir.display(),
        p = s.port(),
        ip = s.ip(),
        a = args.admin_listen
    );
    wait_for_signal().await;
    shutdown.cancel();
    running.wait().await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Runs an echo backend until SIGTERM or SIGINT.
pub async fn echo(args: EchoArgs) -> Result<(), AppError> {
    let l = TcpListener::bind(args.listen)
        .await
        .map_err(|source| AppError::Bind {
            addr: args.listen,
            flag: "--listen",
            source,
        })?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(crate::echo::serve(l, args.name, shutdown.clone()));
    wait_for_signal().await;
    shutdown.cancel();
    let _ = task.await;
    Ok(())
}

/// The echo backends of the quickstart; `examples/quickstart` points its EndpointSlices here.
pub const DEMO_BACKENDS: &[(&str, &str)] = &[
    ("web", "127.0.0.1:9101"),
    ("api", "127.0.0.1:9102"),
    ("fallback", "127.0.0.1:9103"),
    ("secure", "127.0.0.1:9104"),
];

const QUICKSTART: &[(&str, &str)] = &[
    (
        "backends.yaml",
        include_str!("../examples/quickstart/backends.yaml"),
    ),
    (
        "ingresses.yaml",
        include_str!("../examples/quickstart/ingresses.yaml"),
    ),
    ("tls.yaml", include_str!("../examples/quickstart/tls.yaml")),
    ("ca.crt", include_str!("../examples/quickstart/ca.crt")),
];

fn write_quickstart(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in QUICKSTART {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// Everything started by `start`, to wait for on shutdown.
struct Running {
    admin: Arc<AdminState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn bind(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, flag, source })
}

/// Binds every listener, then spawns the listeners, the admin endpoint and the source's tasks.
async fn start(
    args: &ServeArgs,
    source: Source,
    shutdown: CancellationToken,
) -> Result<Running, AppError> {
    let http = bind(args.http_listen, "--http-listen").await?;
    let https = bind(args.https_listen, "--https-listen").await?;
    let admin_l = bind(args.admin_listen, "--admin-listen").await?;

    let mut metrics = Metrics::new();
    let acme_metrics = crate::acme::metrics::AcmeMetrics::register(&mut metrics.registry);
    let metrics = Arc::new(metrics);
    let admin = AdminState::new(metrics.clone(), "loading configuration");
    let (cert, key) =
        tls::self_signed(&["portcullis.invalid"]).map_err(|e| AppError::Tls(e.to_string()))?;
    let initial =
        Store::with_default(&cert, &key, unix_now()).map_err(|e| AppError::Tls(e.to_string()))?;
    let generated_default = initial.default_entry().clone();
    let certs = Arc::new(ArcSwap::from_pointee(initial));
    let table = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
    let alpn_certs: tls::AlpnCertificates = Arc::default();
    let tls_config = tls::server_config(tls::Resolver::new(certs.clone(), alpn_certs.clone()))
        .map_err(|e| AppError::Tls(e.to_string()))?;

    let reloader = Arc::new(Reloader {
        opts: args.compile_options(),
        table: table.clone(),
        certs: certs.clone(),
        generated_default,
        metrics: metrics.clone(),
        admin: admin.clone(),
        last_reported: Mutex::new(BTreeSet::new()),
    });
    let answers = Answers {
        http01: Arc::default(),
        alpn: alpn_certs,
    };
    let proxy = crate::proxy::Proxy::new(
        args.proxy_config(),
        table,
        certs,
        metrics,
        answers.http01.clone(),
    );
    let grace = args.shutdown_grace_period;
    tracing::info!(http = %args.http_listen, https = %args.https_listen, admin = %args.admin_listen, "Portcullis starting");
    let mut tasks = vec![
        tokio::spawn(crate::admin::serve(
            admin.clone(),
            admin_l,
            shutdown.clone(),
        )),
        tokio::spawn(crate::proxy::serve_http(
            proxy.clone(),
            http,
            shutdown.clone(),
            grace,
        )),
        tokio::spawn(crate::proxy::serve_https(
            proxy,
            https,
            Arc::new(tls_config),
            shutdown.clone(),
            grace,
        )),
    ];
    match source {
        Source::Dir(dir) => {
            tracing::info!(manifests = %dir.display(), "standalone mode");
            tasks.push(tokio::spawn(watch_dir(
                dir,
                reloader,
                args.manifests_poll_interval,
                shutdown,
            )));
        }
        Source::Cluster(client) => start_cluster(
            args,
            client,
            reloader,
            answers,
            acme_metrics,
            shutdown,
            &mut tasks,
        ),
    }
    Ok(Running { admin, tasks })
}

/// Cluster mode: reflectors, the reload loop, leader election and the status writer.
fn start_cluster(
    args: &ServeArgs,
    client: kube::Client,
    reloader: Arc<Reloader>,
    answers: Answers,
    acme_metrics: crate::acme::metrics::AcmeMetrics,
    shutdown: CancellationToken,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    tracing::info!(namespaces = ?args.watch_namespace, "cluster mode");
    let changed = Arc::new(tokio::sync::Notify::new());
    let (source, drivers) = ClusterSource::new(&client, &args.watch_namespace, &changed);
    for d in drivers {
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! { _ = d => {}, _ = shutdown.cancelled() => {} }
        }));
    }
    let (published_tx, published_rx) = tokio::sync::watch::channel(Arc::new(Published::default()));
    tasks.push(tokio::spawn(watch_cluster(
        source.clone(),
        reloader,
        changed,
        published_tx,
        shutdown.clone(),
    )));

    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let (leading_tx, leading_rx) = tokio::sync::watch::channel(!args.leader_elect);
    if args.leader_elect {
        let cfg = LeaseConfig {
            namespace: args.election_namespace(),
            name: args.election_id.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        };
        tasks.push(tokio::spawn(crate::source::lease::run(
            client.clone(),
            cfg,
            leading_tx,
            shutdown.clone(),
        )));
    }
    let publish = match (&args.publish_service, &args.publish_address) {
        (Some(s), _) => Publish::Service(s.clone()),
        (None, Some(a)) => Publish::Addresses(a.0.clone()),
        (None, None) => Publish::Nothing,
    };
    let cfg = StatusConfig {
        publish,
        controller_name: args.controller_name.clone(),
        identity: identity.clone(),
    };
    tasks.push(tokio::spawn(crate::status::run(
        client.clone(),
        cfg,
        source.clone(),
        published_rx.clone(),
        leading_rx.clone(),
        shutdown.clone(),
    )));
    if !args.acme {
        return;
    }
    // ACME: every replica serves challenges from AcmeCertificate status; the leader issues.
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut drivers = Vec::new();
    let cfg = kube::runtime::watcher::Config::default().any_semantic();
    let stores: Vec<_> = if args.watch_namespace.is_empty() {
        vec![crate::source::kube::reflect(
            kube::Api::<AcmeCertificate>::all(client.clone()),
            cfg,
            &changed,
            &mut drivers,
        )]
    } else {
        args.watch_namespace
            .iter()
            .map(|ns| {
                let api = kube::Api::<AcmeCertificate>::namespaced(client.clone(), ns);
                crate::source::kube::reflect(api, cfg.clone(), &changed, &mut drivers)
            })
            .collect()
    };
    for d in drivers {
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! { _ = d => {}, _ = shutdown.cancelled() => {} }
        }));
    }
    // One change wakes both the challenge server and the issuer.
    let (serve_wake, issue_wake) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    {
        let (changed, a, b, shutdown) = (
            changed.clone(),
            serve_wake.clone(),
            issue_wake.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = changed.notified() => { a.notify_one(); b.notify_one(); }
                }
            }
        }));
    }
    tasks.push(tokio::spawn(crate::acme::issuer::serve_challenges(
        stores.clone(),
        serve_wake,
        answers.clone(),
        shutdown.clone(),
    )));
    let cfg = AcmeConfig {
        shim: ShimOptions {
            cert_manager_annotations: args.acme_cert_manager_annotations,
        },
        backoff_base: args.acme_backoff_base,
        propagation_delay: args.acme_challenge_propagation_delay,
        cluster_resource_namespace: args.cluster_resource_namespace(),
        ari_max_poll: args.acme_ari_max_poll,
        reporter: Reporter {
            controller: args.controller_name.clone(),
            instance: identity,
        },
    };
    tasks.push(tokio::spawn(crate::acme::issuer::run(
        client,
        cfg,
        stores,
        issue_wake,
        source,
        published_rx,
        leading_rx,
        answers,
        acme_metrics,
        shutdown,
    )));
}

/// Recompiles after the first full list and then on every change, debounced.
async fn watch_cluster(
    source: ClusterSource,
    reloader: Arc<Reloader>,
    changed: Arc<tokio::sync::Notify>,
    published: tokio::sync::watch::Sender<Arc<Published>>,
    shutdown: CancellationToken,
) {
    reloader.admin.readiness.store(Arc::new(Readiness {
        ready: false,
        reason: "waiting for the first list of Ingresses, IngressClasses, Services, EndpointSlices and Secrets".into(),
        detail: vec![],
    }));
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = source.wait_until_ready() => {}
    }
    loop {
        let snapshot = source.snapshot();
        let r = reloader.clone();
        match tokio::task::spawn_blocking(move || r.apply(&snapshot, Vec::new())).await {
            Ok(p) => {
                published.send_replace(Arc::new(p));
            }
            Err(e) => {
                tracing::error!(error = %e, "reload panicked; the last good configuration keeps serving")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changed.notified() => {}
        }
        // Debounce: let a burst of changes land before compiling.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "portcullis".into())
}

/// Polls the manifest directory and recompiles whenever a file changes.
async fn watch_dir(
    dir: PathBuf,
    reloader: Arc<Reloader>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut source = Some(DirSource::new(dir));
    let mut first = true;
    loop {
        let mut src = source.take().expect("source is put back after every scan");
        let r = reloader.clone();
        let joined = tokio::task::spawn_blocking(move || {
            if src.scan() || first {
                let (snapshot, errors) = src.snapshot();
                let _ = r.apply(&snapshot, errors);
            }
            src
        })
        .await;
        match joined {
            Ok(src) => source = Some(src),
            Err(e) => {
                tracing::error!(error = %e, "manifest reload panicked; the last good configuration keeps serving");
                return;
            }
        }
        first = false;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Compiles snapshots and publishes the results: table, certificates, readiness, metrics.
struct Reloader {
    opts: CompileOptions,
    table: Arc<ArcSwap<RouteTable>>,
    certs: Arc<ArcSwap<Store>>,
    generated_default: Arc<Entry>,
    metrics: Arc<Metrics>,
    admin: Arc<AdminState>,
    last_reported: Mutex<BTreeSet<String>>,
}

impl Reloader {
    fn apply(&self, snapshot: &Snapshot, source_errors: Vec<String>) -> Published {
        let started = std::time::Instant::now();
        let compiled = routes::compile(snapshot, &self.opts);
        let now = unix_now();
        let (store, issues) = self.certs.load().rebuild(
            &compiled.tls,
            compiled.default_certificate.as_ref(),
            &self.generated_default,
            now,
        );
        let mut problems = compiled.problems;
        for issue in &issues {
            let suffix = if issue.kept_previous {
                "; the previous certificate stays in use"
            } else {
                "; the default certificate is served instead"
            };
            for b in compiled.tls.iter().filter(|b| b.secret == issue.secret) {
                problems.push(Problem {
                    object: b.ingress.clone(),
                    field: b.field.clone(),
                    reason: Reason::SecretInvalid,
                    message: format!("Secret {}: {}{suffix}", issue.secret, issue.message),
                });
            }
        }
        problems.sort();
        problems.dedup();
        let hosts = compiled.table.host_count();
        self.table.store(Arc::new(compiled.table));
        self.certs.store(Arc::new(store));

        self.metrics.certificate_not_after.clear();
        for e in self.certs.load().served() {
            let secret = e
                .secret
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "(default)".into());
            self.metrics
                .certificate_not_after
                .get_or_create(&SecretLabel { secret })
                .set(e.not_after);
        }
        let result = if source_errors.is_empty() {
            "success"
        } else {
            "error"
        };
        self.metrics
            .config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
        if source_errors.is_empty() {
            self.metrics.last_reload_success.set(now as f64);
        }
        self.metrics
            .config_problems
            .set(i64::try_from(problems.len()).unwrap_or(i64::MAX));

        let lines: BTreeSet<String> = source_errors
            .iter()
            .cloned()
            .chain(problems.iter().map(|p| p.to_string()))
            .collect();
        {
            let mut last = self.last_reported.lock().unwrap_or_else(|e| e.into_inner());
            for line in lines.difference(&last) {
                tracing::warn!(problem = %line, "configuration problem");
            }
            *last = lines.clone();
        }
        tracing::info!(
            ingresses = compiled.ours.len(),
            hosts,
            problems = problems.len(),
            manifest_errors = source_errors.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "configuration loaded"
        );
        self.admin.readiness.store(Arc::new(Readiness {
            ready: true,
            reason: String::new(),
            detail: lines.into_iter().collect(),
        }));
        Published {
            ours: compiled.ours,
            problems,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
