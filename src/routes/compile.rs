//! The pure compile step: a snapshot of Kubernetes objects in, a `RouteTable`, TLS bindings
//! and `Problem`s out. Same input, same output, whatever the order of the objects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::host::HostPattern;
use super::path::{PathKind, prefix_key};
use super::problem::{ObjectRef, Problem, Reason};
use super::table::{Backend, HostRoutes, Route, RouteTable};

/// The annotation that selects a controller by class name; it wins over `ingressClassName`.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The IngressClass annotation that makes a class the cluster default.
pub(crate) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// Ingress annotation: `"false"` turns off the HTTP → HTTPS redirect for its TLS hosts.
pub const SSL_REDIRECT_ANNOTATION: &str = "portcullis.dev/ssl-redirect";
/// The Secret type that holds a certificate and key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Every object the compile step reads, as last seen by a source.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// networking.k8s.io/v1 Ingresses.
    pub ingresses: Vec<Arc<Ingress>>,
    /// networking.k8s.io/v1 IngressClasses.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// v1 Services.
    pub services: Vec<Arc<Service>>,
    /// discovery.k8s.io/v1 EndpointSlices.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// v1 Secrets (only `kubernetes.io/tls` ones are used).
    pub secrets: Vec<Arc<Secret>>,
}

/// A `namespace/name:port` reference to a Service port, as given to `--default-backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Port number or name.
    pub port: PortRef,
}

/// A Service port by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    /// `service.port.number`.
    Number(i32),
    /// `service.port.name`.
    Name(String),
}

/// A `namespace/name` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Settings the compile step depends on; they come from flags.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// `--ingress-class`.
    pub ingress_class: String,
    /// `--controller-name`.
    pub controller_name: String,
    /// `--watch-ingress-without-class`.
    pub watch_without_class: bool,
    /// `--default-backend`.
    pub default_backend: Option<ServiceRef>,
    /// `--default-certificate`.
    pub default_certificate: Option<NamespacedName>,
    /// `--allow-external-name-services`.
    pub allow_external_name: bool,
    /// Standalone mode: a missing IngressClass named `ingress_class` counts as ours.
    pub standalone: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            ingress_class: "portcullis".into(),
            controller_name: "portcullis.dev/ingress-controller".into(),
            watch_without_class: false,
            default_backend: None,
            default_certificate: None,
            allow_external_name: false,
            standalone: true,
        }
    }
}

/// The certificate and key bytes of a TLS Secret, unparsed (the `tls` module parses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMaterial {
    /// The Secret they come from.
    pub secret: NamespacedName,
    /// `tls.crt`.
    pub cert_pem: Arc<[u8]>,
    /// `tls.key`.
    pub key_pem: Arc<[u8]>,
}

/// One TLS host and the Secret that serves it.
#[derive(Debug, Clone)]
pub struct TlsBinding {
    /// The host as declared in `spec.tls[].hosts`.
    pub host: HostPattern,
    /// The Secret's content, or `None` when it is missing or unusable (a Problem says why).
    pub material: Option<SecretMaterial>,
    /// The Secret named.
    pub secret: NamespacedName,
    /// The Ingress that declared it (the oldest, when several agree).
    pub ingress: ObjectRef,
    /// The field naming the Secret, e.g. `spec.tls[0].secretName`.
    pub field: String,
}

/// Everything the compile step produces.
#[derive(Debug)]
pub struct Compiled {
    /// The routing table.
    pub table: RouteTable,
    /// TLS hosts and their Secrets, sorted by host.
    pub tls: Vec<TlsBinding>,
    /// The `--default-certificate` Secret's content, when it is set and usable.
    pub default_certificate: Option<SecretMaterial>,
    /// What is wrong, sorted.
    pub problems: Vec<Problem>,
    /// The Ingresses this controller serves, sorted.
    pub ours: Vec<ObjectRef>,
}

/// Compiles a snapshot into a routing table; never fails, problems are reported instead.
pub fn compile(snapshot: &Snapshot, opts: &CompileOptions) -> Compiled {
    let index = Index::new(snapshot);
    let mut cx = Compiler {
        index: &index,
        opts,
        problems: Vec::new(),
        backends: HashMap::new(),
    };

    let mut ours: Vec<&Ingress> = snapshot
        .ingresses
        .iter()
        .filter(|ing| is_ours(ing, &snapshot.ingress_classes, opts))
        .map(|ing| &**ing)
        .collect();
    ours.sort_by(|a, b| age_key(a).cmp(&age_key(b)));

    let mut hosts: BTreeMap<HostKey, HostBuild> = BTreeMap::new();
    let mut claims: HashMap<(HostKey, String, PathKind), Arc<str>> = HashMap::new();
    let mut catch_all: Option<Arc<Route>> = None;
    let mut tls: BTreeMap<HostPattern, TlsBinding> = BTreeMap::new();
    let mut redirect: HashSet<HostPattern> = HashSet::new();

    for ing in &ours {
        let ns = namespace(&ing.metadata);
        let name = ing.metadata.name.as_deref().unwrap_or_default();
        let id: Arc<str> = format!("{ns}/{name}").into();
        let obj = ObjectRef::ingress(ns, name);
        let Some(spec) = ing.spec.as_ref() else {
            continue;
        };
        let rules = spec.rules.as_deref().unwrap_or_default();

        let default_route = spec.default_backend.as_ref().map(|b| {
            Arc::new(Route {
                ingress: id.clone(),
                backend: cx.backend(ns, b, &obj, "spec.defaultBackend"),
            })
        });
        if rules.is_empty() && catch_all.is_none() {
            catch_all = default_route.clone();
        }

        let mut owned_hosts: Vec<HostKey> = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            let key = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                None => HostKey::Any,
                Some(h) => match HostPattern::parse(h) {
                    Ok(p) => HostKey::Pattern(p),
                    Err(e) => {
                        cx.problem(
                            &obj,
                            format!("spec.rules[{ri}].host"),
                            Reason::InvalidHost,
                            e,
                        );
                        continue;
                    }
                },
            };
            if !owned_hosts.contains(&key) {
                owned_hosts.push(key.clone());
            }
            let entry = hosts.entry(key.clone()).or_default();
            let Some(http) = rule.http.as_ref() else {
                continue;
            };
            for (pi, p) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{ri}].http.paths[{pi}]");
                let kind = match p.path_type.as_str() {
                    "Exact" => PathKind::Exact,
                    "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
                    other => {
                        let msg = format!(
                            "pathType {other:?} is not one of Exact, Prefix, ImplementationSpecific"
                        );
                        cx.problem(&obj, format!("{field}.pathType"), Reason::InvalidPath, msg);
                        continue;
                    }
                };
                let path = p.path.as_deref().filter(|s| !s.is_empty()).unwrap_or("/");
                if !path.starts_with('/') {
                    let msg = format!("path {path:?} must start with '/'");
                    cx.problem(&obj, format!("{field}.path"), Reason::InvalidPath, msg);
                    continue;
                }
                let stored = match kind {
                    PathKind::Exact => path.to_owned(),
                    PathKind::Prefix => prefix_key(path).to_owned(),
                };
                let claim = (key.clone(), stored.clone(), kind);
                if let Some(winner) = claims.get(&claim) {
                    let msg = format!(
                        "host {key} path {path:?} ({:?}) is already served by Ingress {winner}",
                        kind
                    );
                    cx.problem(&obj, format!("{field}.path"), Reason::PathConflict, msg);
                    continue;
                }
                claims.insert(claim, id.clone());
                let backend = cx.backend(ns, &p.backend, &obj, &format!("{field}.backend"));
                let route = Arc::new(Route {
                    ingress: id.clone(),
                    backend,
                });
                match kind {
                    PathKind::Exact => entry.routes.exact.insert(stored.into(), route),
                    PathKind::Prefix => entry.routes.prefix.insert(stored.into(), route),
                };
            }
        }
        for key in owned_hosts {
            let entry = hosts.entry(key).or_default();
            if entry.routes.default.is_none() {
                entry.routes.default = default_route.clone();
            }
        }

        let redirect_off = match annotation(ing, SSL_REDIRECT_ANNOTATION) {
            None | Some("true") => false,
            Some("false") => true,
            Some(other) => {
                let msg = format!(
                    "{SSL_REDIRECT_ANNOTATION} must be \"true\" or \"false\", not {other:?}"
                );
                let field = format!("metadata.annotations[{SSL_REDIRECT_ANNOTATION}]");
                cx.problem(&obj, field, Reason::UnsupportedAnnotation, msg);
                false
            }
        };
        for (ti, t) in spec.tls.as_deref().unwrap_or_default().iter().enumerate() {
            let secret_name = t.secret_name.as_deref().filter(|s| !s.is_empty());
            let secret = NamespacedName {
                namespace: ns.to_owned(),
                name: secret_name.unwrap_or_default().to_owned(),
            };
            let mut material = None;
            let mut looked_up = false;
            for (hi, h) in t.hosts.as_deref().unwrap_or_default().iter().enumerate() {
                let field = format!("spec.tls[{ti}].hosts[{hi}]");
                let host = match HostPattern::parse(h) {
                    Ok(p) => p,
                    Err(e) => {
                        cx.problem(&obj, field, Reason::InvalidHost, e);
                        continue;
                    }
                };
                if !redirect_off {
                    redirect.insert(host.clone());
                }
                // A TLS host without a Secret is served with the default certificate.
                if secret_name.is_none() {
                    continue;
                }
                if let Some(existing) = tls.get(&host) {
                    if existing.secret != secret {
                        let msg = format!(
                            "TLS host {host} already uses Secret {} from {}",
                            existing.secret, existing.ingress
                        );
                        cx.problem(&obj, field, Reason::TlsHostConflict, msg);
                    }
                    continue;
                }
                if !looked_up {
                    looked_up = true;
                    material = cx.secret(&secret, &obj, &format!("spec.tls[{ti}].secretName"));
                }
                tls.insert(
                    host.clone(),
                    TlsBinding {
                        host,
                        material: material.clone(),
                        secret: secret.clone(),
                        ingress: obj.clone(),
                        field: format!("spec.tls[{ti}].secretName"),
                    },
                );
            }
        }
    }

    let controller_default = opts
        .default_backend
        .as_ref()
        .map(|r| cx.controller_default(r));
    let default_certificate = opts.default_certificate.as_ref().and_then(|s| {
        let obj = ObjectRef {
            kind: "Secret",
            namespace: s.namespace.clone(),
            name: s.name.clone(),
        };
        cx.secret(s, &obj, "--default-certificate")
    });

    let mut table = RouteTable {
        fallback: catch_all.or_else(|| controller_default.clone()),
        controller_default,
        ..RouteTable::default()
    };
    for (key, build) in hosts {
        match key {
            HostKey::Any => table.any_host = Some(build.routes),
            HostKey::Pattern(HostPattern::Exact(h)) => {
                table.exact_hosts.insert(h.into(), build.routes);
            }
            HostKey::Pattern(HostPattern::Wildcard(s)) => {
                table.wildcard_hosts.insert(s.into(), build.routes);
            }
        }
    }
    for host in redirect {
        match host {
            HostPattern::Exact(h) => table.redirect_exact.insert(h.into()),
            HostPattern::Wildcard(s) => table.redirect_wildcard.insert(s.into()),
        };
    }

    let mut problems = cx.problems;
    problems.sort();
    problems.dedup();
    let mut ours: Vec<ObjectRef> = ours
        .iter()
        .map(|i| {
            ObjectRef::ingress(
                namespace(&i.metadata),
                i.metadata.name.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    ours.sort();
    Compiled {
        table,
        tls: tls.into_values().collect(),
        default_certificate,
        problems,
        ours,
    }
}

/// Section 1: whether an Ingress belongs to this controller.
pub fn is_ours(ing: &Ingress, classes: &[Arc<IngressClass>], opts: &CompileOptions) -> bool {
    if let Some(class) = annotation(ing, CLASS_ANNOTATION) {
        return class == opts.ingress_class;
    }
    let is_our_class = |c: &&Arc<IngressClass>| {
        c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(opts.controller_name.as_str())
    };
    if let Some(name) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return match classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
        {
            Some(class) => is_our_class(&class),
            None => opts.standalone && name == opts.ingress_class,
        };
    }
    opts.watch_without_class
        || classes.iter().filter(is_our_class).any(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .map(String::as_str)
                == Some("true")
        })
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum HostKey {
    Any,
    Pattern(HostPattern),
}

impl std::fmt::Display for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostKey::Any => f.write_str("(any)"),
            HostKey::Pattern(p) => p.fmt(f),
        }
    }
}

#[derive(Default)]
struct HostBuild {
    routes: HostRoutes,
}

/// Oldest first; objects without a creation time count as oldest; then namespace/name.
fn age_key(ing: &Ingress) -> (Option<&Time>, &str, &str) {
    (
        ing.metadata.creation_timestamp.as_ref(),
        namespace(&ing.metadata),
        ing.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn namespace(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn annotation<'a>(ing: &'a Ingress, key: &str) -> Option<&'a str> {
    ing.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Lookup maps over the snapshot, built once per compile.
struct Index<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
}

impl<'a> Index<'a> {
    fn new(s: &'a Snapshot) -> Self {
        let key = |m: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            (namespace(m), m.name.as_deref().unwrap_or_default())
        };
        let mut slices: HashMap<_, Vec<_>> = HashMap::new();
        for sl in &s.endpoint_slices {
            if let Some(svc) = sl
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
            {
                slices
                    .entry((namespace(&sl.metadata), svc.as_str()))
                    .or_default()
                    .push(&**sl);
            }
        }
        for v in slices.values_mut() {
            v.sort_by_key(|sl| sl.metadata.name.as_deref());
        }
        Self {
            services: s
                .services
                .iter()
                .map(|x| (key(&x.metadata), &**x))
                .collect(),
            slices,
            secrets: s.secrets.iter().map(|x| (key(&x.metadata), &**x)).collect(),
        }
    }
}

type BackendKey = (String, String, Result<i32, String>);
/// A resolved backend and the problem to report for every user of it.
type Resolved = (Arc<Backend>, Option<(Reason, String)>);

struct Compiler<'a> {
    index: &'a Index<'a>,
    opts: &'a CompileOptions,
    problems: Vec<Problem>,
    /// One shared backend (and round-robin cursor) per Service port; problems replayed per user.
    backends: HashMap<BackendKey, Resolved>,
}

impl Compiler<'_> {
    fn problem(&mut self, obj: &ObjectRef, field: String, reason: Reason, message: String) {
        self.problems.push(Problem {
            object: obj.clone(),
            field,
            reason,
            message,
        });
    }

    fn backend(
        &mut self,
        ns: &str,
        b: &IngressBackend,
        obj: &ObjectRef,
        field: &str,
    ) -> Arc<Backend> {
        let Some(svc) = b.service.as_ref() else {
            let msg = if b.resource.is_some() {
                "backend.resource is not supported; use backend.service".to_owned()
            } else {
                "backend names no service".to_owned()
            };
            self.problem(obj, field.to_owned(), Reason::UnsupportedBackend, msg);
            return Arc::new(Backend::Unavailable {
                service: "".into(),
                reason: "unsupported backend",
            });
        };
        let port = match svc.port.as_ref() {
            Some(p) => match (p.number, p.name.as_deref()) {
                (Some(n), _) => Ok(n),
                (None, Some(name)) => Err(name.to_owned()),
                (None, None) => Err(String::new()),
            },
            None => Err(String::new()),
        };
        let key = (ns.to_owned(), svc.name.clone(), port);
        if !self.backends.contains_key(&key) {
            let resolved = self.resolve(&key);
            self.backends.insert(key.clone(), resolved);
        }
        let (backend, problem) = &self.backends[&key];
        let backend = backend.clone();
        if let Some((reason, msg)) = problem.clone() {
            let f = match reason {
                Reason::ServicePortNotFound => format!("{field}.service.port"),
                _ => format!("{field}.service.name"),
            };
            self.problem(obj, f, reason, msg);
        }
        backend
    }

    fn controller_default(&mut self, r: &ServiceRef) -> Arc<Route> {
        let port = match &r.port {
            PortRef::Number(n) => Ok(*n),
            PortRef::Name(s) => Err(s.clone()),
        };
        let (backend, problem) = self.resolve(&(r.namespace.clone(), r.name.clone(), port));
        if let Some((_, msg)) = problem {
            let obj = ObjectRef {
                kind: "Service",
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            };
            self.problem(
                &obj,
                "--default-backend".into(),
                Reason::DefaultBackendInvalid,
                msg,
            );
        }
        Arc::new(Route {
            ingress: "".into(),
            backend,
        })
    }

    /// Section 6: Service port → EndpointSlice port → ready endpoints.
    fn resolve(&self, key: &BackendKey) -> Resolved {
        let (ns, name, port) = key;
        let service: Arc<str> = format!("{ns}/{name}").into();
        let unavailable = |reason: &'static str, r: Reason, msg: String| {
            (
                Arc::new(Backend::Unavailable {
                    service: service.clone(),
                    reason,
                }),
                Some((r, msg)),
            )
        };
        let Some(svc) = self.index.services.get(&(ns.as_str(), name.as_str())) else {
            return unavailable(
                "service not found",
                Reason::ServiceNotFound,
                format!("Service {ns}/{name} not found"),
            );
        };
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default();
        let sp = match port {
            Ok(n) => ports.iter().find(|p| p.port == *n),
            Err(pn) if !pn.is_empty() => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(pn.as_str())),
            Err(_) => None,
        };
        let Some(sp) = sp else {
            let which = match port {
                Ok(n) => format!("number {n}"),
                Err(s) if s.is_empty() => "(none given)".to_owned(),
                Err(s) => format!("name {s:?}"),
            };
            return unavailable(
                "service port not found",
                Reason::ServicePortNotFound,
                format!("Service {ns}/{name} has no port {which}"),
            );
        };
        if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            let host = svc
                .spec
                .as_ref()
                .and_then(|s| s.external_name.clone())
                .unwrap_or_default();
            if !self.opts.allow_external_name {
                return unavailable(
                    "external name disabled",
                    Reason::ExternalNameDisabled,
                    format!(
                        "Service {ns}/{name} is of type ExternalName; start with --allow-external-name-services to allow it"
                    ),
                );
            }
            let port = u16::try_from(sp.port).unwrap_or(80);
            return (
                Arc::new(Backend::External {
                    service,
                    host,
                    port,
                }),
                None,
            );
        }
        let port_name = sp.name.as_deref().unwrap_or_default();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for slice in self
            .index
            .slices
            .get(&(ns.as_str(), name.as_str()))
            .into_iter()
            .flatten()
        {
            let Some(slice_port) = slice
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for ep in &slice.endpoints {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                if let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) {
                    addrs.push(SocketAddr::new(ip, slice_port));
                }
            }
        }
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return unavailable(
                "no ready endpoints",
                Reason::NoReadyEndpoints,
                format!(
                    "Service {ns}/{name} has no ready endpoints for port {}",
                    sp.port
                ),
            );
        }
        (
            Arc::new(Backend::Endpoints {
                service,
                addrs: addrs.into(),
                next: AtomicUsize::new(0),
            }),
            None,
        )
    }

    /// Section 7: the TLS Secret's certificate and key, or a Problem.
    fn secret(
        &mut self,
        s: &NamespacedName,
        obj: &ObjectRef,
        field: &str,
    ) -> Option<SecretMaterial> {
        let Some(secret) = self
            .index
            .secrets
            .get(&(s.namespace.as_str(), s.name.as_str()))
        else {
            let msg = format!("Secret {s} not found; the default certificate is served instead");
            self.problem(obj, field.to_owned(), Reason::SecretNotFound, msg);
            return None;
        };
        let invalid = |msg: String| Problem {
            object: obj.clone(),
            field: field.to_owned(),
            reason: Reason::SecretInvalid,
            message: format!("Secret {s}: {msg}; the default certificate is served instead"),
        };
        let ty = secret.type_.as_deref().unwrap_or("Opaque");
        if ty != TLS_SECRET_TYPE {
            self.problems
                .push(invalid(format!("type is {ty:?}, not {TLS_SECRET_TYPE:?}")));
            return None;
        }
        let get = |k: &str| -> Option<Arc<[u8]>> {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| Arc::from(b.0.as_slice()))
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()?
                        .get(k)
                        .map(|v| Arc::from(v.as_bytes()))
                })
        };
        match (get("tls.crt"), get("tls.key")) {
            (Some(cert_pem), Some(key_pem)) => Some(SecretMaterial {
                secret: s.clone(),
                cert_pem,
                key_pem,
            }),
            (c, _) => {
                let missing = if c.is_none() { "tls.crt" } else { "tls.key" };
                self.problems
                    .push(invalid(format!("data has no {missing}")));
                None
            }
        }
    }
}
