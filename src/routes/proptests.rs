//! Property tests for the pure compile step: the same objects in any order give the same
//! table and problems; any table answers any request without panicking; path matching agrees
//! with a reference model of ingress-semantics.md sections 3 and 4.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const HOSTS: &[&str] = &[
    "a.test", "b.test", "*.w.test", "x.w.test", "", "A.TEST.", "bad_host",
];
const SEGMENTS: &[&str] = &["a", "b", "ab", "", "."];

fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(SEGMENTS), 0..4),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash && !p.ends_with('/') {
                p.push('/');
            }
            p
        })
}

fn kind() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["Exact", "Prefix", "ImplementationSpecific", "Bogus"][..])
}

/// One Ingress: name, creation time (few values, so ties happen), class, rules, TLS.
fn ingress(i: usize) -> impl Strategy<Value = Value> {
    let rule = (
        prop::sample::select(HOSTS),
        prop::collection::vec((path(), kind(), 0..4usize), 0..4),
    );
    (
        prop::collection::vec(rule, 0..3),
        0..3u8,
        prop::option::of(0..4usize),
        prop::option::of((prop::sample::select(HOSTS), 0..3usize)),
        any::<bool>(),
    )
        .prop_map(move |(rules, age, default, tls, classless)| {
            let backend =
                |s: usize| json!({"service": {"name": format!("svc{s}"), "port": {"number": 80}}});
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|(host, paths)| {
                    let paths: Vec<Value> = paths
                        .into_iter()
                        .map(|(p, k, s)| json!({"path": p, "pathType": k, "backend": backend(s)}))
                        .collect();
                    json!({"host": host, "http": {"paths": paths}})
                })
                .collect();
            let mut spec = json!({"rules": rules});
            if !classless {
                spec["ingressClassName"] = json!("portcullis");
            }
            if let Some(s) = default {
                spec["defaultBackend"] = backend(s);
            }
            if let Some((host, secret)) = tls {
                spec["tls"] = json!([{"hosts": [host], "secretName": format!("tls{secret}")}]);
            }
            json!({
                "metadata": {
                    "name": format!("ing{i}"),
                    "namespace": if i % 3 == 2 { "other" } else { "default" },
                    "creationTimestamp": format!("2024-01-0{}T00:00:00Z", age + 1),
                },
                "spec": spec,
            })
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        (0..5usize).prop_flat_map(|n| (0..n).map(ingress).collect::<Vec<_>>()),
        prop::collection::vec(any::<bool>(), 4),
    )
        .prop_map(|(ingresses, ready)| {
            let mut s = Snapshot::default();
            for v in ingresses {
                s.ingresses.push(serde_json::from_value(v).expect("ingress"));
            }
            // Services svc0..svc2 exist (svc3 dangles); svc{i} has one endpoint, ready or not.
            for (i, ready) in ready.iter().enumerate().take(3) {
                s.services.push(
                    serde_json::from_value(json!({
                        "metadata": {"name": format!("svc{i}"), "namespace": "default"},
                        "spec": {"ports": [{"port": 80}]},
                    }))
                    .expect("service"),
                );
                s.endpoint_slices.push(
                    serde_json::from_value(json!({
                        "metadata": {"name": format!("svc{i}-1"), "namespace": "default",
                                     "labels": {"kubernetes.io/service-name": format!("svc{i}")}},
                        "addressType": "IPv4",
                        "ports": [{"port": 8080}],
                        "endpoints": [{"addresses": [format!("10.0.0.{i}")], "conditions": {"ready": ready}}],
                    }))
                    .expect("slice"),
                );
            }
            s.secrets.push(
                serde_json::from_value(json!({
                    "metadata": {"name": "tls0", "namespace": "default"},
                    "type": "kubernetes.io/tls",
                    "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
                }))
                .expect("secret"),
            );
            s
        })
}

/// Requests to probe a table with: every host and path the generators use, and more.
fn probes() -> Vec<(Option<String>, String)> {
    let hosts = [
        None,
        Some("a.test"),
        Some("b.test"),
        Some("x.w.test"),
        Some("y.w.test"),
        Some("c.test"),
    ];
    let paths = [
        "/", "/a", "/a/", "/a/b", "/ab", "/ab/b/", "/b/a", "/a/b/ab", "//", "",
    ];
    hosts
        .iter()
        .flat_map(|h| {
            paths
                .iter()
                .map(move |p| (h.map(str::to_owned), p.to_string()))
        })
        .collect()
}

/// Everything observable about a compile result, as comparable text.
fn observe(c: &Compiled) -> (Vec<Problem>, Vec<ObjectRef>, Vec<String>, Vec<String>) {
    let answers = probes()
        .iter()
        .map(|(h, p)| {
            let l = c.table.lookup(h.as_deref(), p);
            let redirect = h.as_deref().is_some_and(|h| c.table.redirects_to_https(h));
            match l.route {
                Some(r) => format!(
                    "{:?} {} {} {:?} {redirect}",
                    l.host,
                    r.ingress,
                    r.backend.service(),
                    r.backend.pick().map(|(_, a)| a.to_vec())
                ),
                None => format!("{:?} none {redirect}", l.host),
            }
        })
        .collect();
    let tls = c
        .tls
        .iter()
        .map(|b| {
            format!(
                "{} {} {} {}",
                b.host,
                b.secret,
                b.ingress,
                b.material.is_some()
            )
        })
        .collect();
    (c.problems.clone(), c.ours.clone(), answers, tls)
}

fn opts() -> CompileOptions {
    CompileOptions {
        default_backend: Some(ServiceRef {
            namespace: "default".into(),
            name: "svc0".into(),
            port: PortRef::Number(80),
        }),
        ..CompileOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn compile_is_deterministic(s in snapshot()) {
        prop_assert_eq!(observe(&compile(&s, &opts())), observe(&compile(&s, &opts())));
    }

    #[test]
    fn compile_is_independent_of_object_order(s in snapshot(), seed in any::<u64>()) {
        let mut shuffled = s.clone();
        let mut r = seed | 1;
        let mut shuffle = |n: usize| -> Vec<usize> {
            let mut idx: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                idx.swap(i, (r % (i as u64 + 1)) as usize);
            }
            idx
        };
        shuffled.ingresses = shuffle(s.ingresses.len()).into_iter().map(|i| s.ingresses[i].clone()).collect();
        shuffled.services = shuffle(s.services.len()).into_iter().map(|i| s.services[i].clone()).collect();
        shuffled.endpoint_slices = shuffle(s.endpoint_slices.len()).into_iter().map(|i| s.endpoint_slices[i].clone()).collect();
        prop_assert_eq!(observe(&compile(&s, &opts())), observe(&compile(&shuffled, &opts())));
    }

    #[test]
    fn any_table_answers_any_request_without_panicking(
        s in snapshot(),
        host in prop::option::of(".{0,40}"),
        path in "(/|[a-z%.\\\\]|%2[eEfF]){0,24}",
    ) {
        let c = compile(&s, &opts());
        let host = host.and_then(|h| normalize_request_host(&h).ok());
        let _ = has_dot_segment(&path);
        let l = c.table.lookup(host.as_deref(), &path);
        if let Some(r) = l.route {
            let known = r.ingress.is_empty() || c.ours.iter().any(|o| format!("{}/{}", o.namespace, o.name) == *r.ingress);
            prop_assert!(known, "route from unknown Ingress {}", r.ingress);
        }
        if let Some(h) = host {
            let _ = c.table.redirects_to_https(&h);
        }
    }

    /// One host, many rules: the table picks what a direct reading of sections 3-4 picks.
    #[test]
    fn path_matching_agrees_with_the_reference_model(
        rules in prop::collection::vec((path(), prop::sample::select(&["Exact", "Prefix"][..])), 1..8),
        request in path(),
    ) {
        let paths: Vec<Value> = rules
            .iter()
            .enumerate()
            .map(|(i, (p, k))| json!({"path": p, "pathType": k, "backend": {"service": {"name": format!("r{i}"), "port": {"number": 80}}}}))
            .collect();
        let ing = json!({
            "metadata": {"name": "one", "namespace": "default"},
            "spec": {"ingressClassName": "portcullis", "rules": [{"host": "h.test", "http": {"paths": paths}}]},
        });
        let s = Snapshot { ingresses: vec![serde_json::from_value(ing).expect("ingress")], ..Snapshot::default() };
        let c = compile(&s, &CompileOptions::default());
        let got = c.table.lookup(Some("h.test"), &request).route.map(|r| r.backend.service().to_owned());

        // Reference: first claim of each (kind, key) wins; longest key wins; Exact beats Prefix.
        let mut best: Option<(usize, bool, usize)> = None;
        let mut claimed = std::collections::HashSet::new();
        for (i, (p, k)) in rules.iter().enumerate() {
            let exact = *k == "Exact";
            let key = if exact { p.as_str() } else { p.trim_end_matches('/') };
            if !claimed.insert((exact, key.to_owned())) {
                continue;
            }
            let hit = if exact {
                request == *p
            } else {
                key.is_empty() || request == key || request.starts_with(&format!("{key}/"))
            };
            if hit && best.is_none_or(|(len, ex, _)| (key.len(), exact) > (len, ex)) {
                best = Some((key.len(), exact, i));
            }
        }
        let want = best.map(|(_, _, i)| format!("default/r{i}"));
        prop_assert_eq!(got, want, "rules {:?} request {:?}", rules, request);
    }
}
