//! Fuzz target logic, shared by cargo-fuzz (`fuzz_targets/`, nightly) and the stable replay of
//! the committed corpus (`tests/fuzz_corpus.rs` at the repository root). Every function must
//! return normally for every input: a panic is a finding.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use portcullis::routes::{
    CompileOptions, Compiled, HostPattern, NamespacedName, ObjectRef, PortRef, SecretMaterial,
    ServiceRef, Snapshot, TlsBinding, compile, has_dot_segment, normalize_request_host,
    prefix_candidates,
};
use portcullis::source::dir::{Object, parse_manifests};
use portcullis::tls::{Store, parse_material, self_signed};

/// 2027-01-15T08:00:00Z: a fixed "now" keeps certificate results reproducible.
const NOW: i64 = 1_800_000_000;

/// Manifest text → objects → compile, twice in opposite object orders. The results must be
/// equal (compile is independent of order), and every declared host and path must look up.
pub fn manifests(data: &[u8]) {
    // The directory source reads files as UTF-8 text; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = parse_manifests(text, "fuzz.yaml") else {
        return;
    };
    let objects = dedup(objects);
    let opts = options(data);
    let forward = compile(&snapshot(objects.iter().cloned()), &opts);
    let backward = compile(&snapshot(objects.iter().rev().cloned()), &opts);
    assert_eq!(forward.problems, backward.problems);
    assert_eq!(forward.ours, backward.ours);
    let probes = probes(&objects);
    assert_eq!(answers(&forward, &probes), answers(&backward, &probes));
    let tls = |c: &Compiled| {
        c.tls
            .iter()
            .map(|b| (b.host.clone(), b.secret.clone(), b.material.is_some()))
            .collect::<Vec<_>>()
    };
    assert_eq!(tls(&forward), tls(&backward));
}

/// PEM bytes (`tls.crt`, a NUL, `tls.key`) → parsed certificate, and through the SNI store:
/// a servable pair is selected for its host, anything else falls to the default, no panic.
pub fn certificate(data: &[u8]) {
    let (cert, key) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let parsed = parse_material(cert, key, NOW);
    let store = default_store();
    let secret = NamespacedName {
        namespace: "default".into(),
        name: "fuzz".into(),
    };
    let binding = TlsBinding {
        host: HostPattern::Exact("fuzz.test".into()),
        material: Some(SecretMaterial {
            secret: secret.clone(),
            cert_pem: Arc::from(cert),
            key_pem: Arc::from(key),
        }),
        secret,
        ingress: ObjectRef::ingress("default", "fuzz"),
        field: "spec.tls[0].secretName".into(),
    };
    let (next, issues) = store.rebuild(
        std::slice::from_ref(&binding),
        None,
        store.default_entry(),
        NOW,
    );
    assert_eq!(
        parsed.is_ok(),
        issues.is_empty(),
        "{parsed:?} vs {issues:?}"
    );
    let chosen = next.select(Some("FUZZ.test."));
    assert_eq!(chosen.secret.is_some(), parsed.is_ok());
    if let Ok(p) = &parsed {
        assert!(p.not_after > NOW);
    }
    // Rebuilding from the same bytes again keeps (or again refuses) the same certificate.
    let (again, issues2) = next.rebuild(&[binding], None, store.default_entry(), NOW);
    assert_eq!(issues.len(), issues2.len());
    assert_eq!(again.select(Some("fuzz.test")).id, chosen.id);
}

/// A request's Host and path (`host`, a NUL, `path`) against a fixed table with exact,
/// wildcard, host-less and default rules: the host normaliser, the dot-segment check and the
/// lookup never panic, and every lookup answer is one the table can give.
pub fn request(data: &[u8]) {
    let (host, path) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let (Ok(host), Ok(path)) = (std::str::from_utf8(host), std::str::from_utf8(path)) else {
        return;
    };
    let dotted = has_dot_segment(path);
    for key in prefix_candidates(path) {
        assert!(path.starts_with(key), "{key:?} is not a prefix of {path:?}");
    }
    let table = &fixed_table().table;
    let host = normalize_request_host(host).ok();
    if let Some(h) = &host {
        assert!(!h.bytes().any(|b| b.is_ascii_uppercase()), "{h:?}");
        let _ = table.redirects_to_https(h);
    }
    let found = table.lookup(host.as_deref(), path);
    if let Some(route) = found.route {
        assert!(
            ["default/fixed", "default/catch-all", ""].contains(&&*route.ingress),
            "{}",
            route.ingress
        );
    }
    if !dotted && !path.contains('%') {
        assert!(!path.split('/').any(|s| s == ".." || s == "."));
    }
}

/// The first definition of each object wins, as in the directory source and API watches.
fn dedup(objects: Vec<Object>) -> Vec<Object> {
    let mut seen = HashSet::new();
    objects
        .into_iter()
        .filter(|o| {
            let (kind, m) = meta(o);
            seen.insert((kind, m.namespace.clone(), m.name.clone()))
        })
        .collect()
}

fn meta(o: &Object) -> (&'static str, &ObjectMeta) {
    match o {
        Object::Ingress(x) => ("Ingress", &x.metadata),
        Object::IngressClass(x) => ("IngressClass", &x.metadata),
        Object::Service(x) => ("Service", &x.metadata),
        Object::EndpointSlice(x) => ("EndpointSlice", &x.metadata),
        Object::Secret(x) => ("Secret", &x.metadata),
    }
}

fn snapshot(objects: impl Iterator<Item = Object>) -> Snapshot {
    let mut s = Snapshot::default();
    for o in objects {
        match o {
            Object::Ingress(x) => s.ingresses.push(x),
            Object::IngressClass(x) => s.ingress_classes.push(x),
            Object::Service(x) => s.services.push(x),
            Object::EndpointSlice(x) => s.endpoint_slices.push(x),
            Object::Secret(x) => s.secrets.push(x),
        }
    }
    s
}

/// Compile options chosen by the input's last byte, so flags are fuzzed too.
fn options(data: &[u8]) -> CompileOptions {
    let bits = data.last().copied().unwrap_or(0);
    CompileOptions {
        watch_without_class: bits & 1 != 0,
        allow_external_name: bits & 2 != 0,
        standalone: bits & 4 == 0,
        default_backend: (bits & 8 != 0).then(|| ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
            port: PortRef::Number(80),
        }),
        default_certificate: (bits & 16 != 0).then(|| NamespacedName {
            namespace: "default".into(),
            name: "tls".into(),
        }),
        ..CompileOptions::default()
    }
}

/// Every host and path the objects declare, normalised as a request would be, plus a few more.
fn probes(objects: &[Object]) -> Vec<(Option<String>, String)> {
    let mut hosts: Vec<Option<String>> = vec![None, Some("unknown.test".into())];
    let mut paths: Vec<String> = vec!["/".into(), "/x".into(), "".into()];
    for o in objects {
        let Object::Ingress(ing) = o else { continue };
        let Some(spec) = &ing.spec else { continue };
        for rule in spec.rules.iter().flatten() {
            if let Some(h) = &rule.host {
                let h = h.strip_prefix("*.").map(|s| format!("a.{s}"));
                let h = h.as_deref().or(rule.host.as_deref()).unwrap_or_default();
                hosts.push(normalize_request_host(h).ok());
            }
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let p = p.path.clone().unwrap_or_default();
                paths.push(format!("{p}/more"));
                paths.push(p);
            }
        }
    }
    hosts.truncate(64);
    paths.truncate(64);
    hosts
        .iter()
        .flat_map(|h| paths.iter().map(move |p| (h.clone(), p.clone())))
        .collect()
}

/// What each probe is answered with: the Ingress and backend of the route, or nothing.
fn answers(c: &Compiled, probes: &[(Option<String>, String)]) -> Vec<String> {
    probes
        .iter()
        .map(|(h, p)| {
            let l = c.table.lookup(h.as_deref(), p);
            match l.route {
                Some(r) => format!("{:?} {} {:?}", l.host, r.ingress, r.backend),
                None => format!("{:?} none", l.host),
            }
        })
        .collect()
}

fn default_store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let (cert, key) = self_signed(&["portcullis.invalid"]).expect("self-signed default");
        Store::with_default(&cert, &key, NOW).expect("default certificate")
    })
}

const FIXED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: fixed}
spec:
  ingressClassName: portcullis
  defaultBackend: {service: {name: web, port: {number: 80}}}
  tls: [{hosts: [secure.test, "*.wild.test"]}]
  rules:
  - host: exact.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
      - {path: /api/v1/x, pathType: Exact, backend: {service: {name: missing, port: {number: 80}}}}
  - host: "*.wild.test"
    http: {paths: [{path: /w, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
  - http: {paths: [{path: /any, pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all}
spec:
  ingressClassName: portcullis
  defaultBackend: {service: {name: web, port: {number: 80}}}
"#;

fn fixed_table() -> &'static Compiled {
    static TABLE: OnceLock<Compiled> = OnceLock::new();
    TABLE.get_or_init(|| {
        let objects = parse_manifests(FIXED, "fixed.yaml").expect("fixed manifests parse");
        compile(&snapshot(objects.into_iter()), &CompileOptions::default())
    })
}
