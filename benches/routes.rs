//! Compile and lookup cost at cluster scale: 10,000 Ingresses, 5,000 Services with 10 ready
//! endpoints each. Targets: `compile` < 100 ms, `RouteTable::lookup` < 1 µs.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use portcullis::routes::{CompileOptions, RouteTable, Snapshot, compile, normalize_request_host};

const NAMESPACE: &str = "bench";
const INGRESSES: usize = 10_000;
const SERVICES: usize = 5_000;
const ENDPOINTS_PER_SERVICE: usize = 10;
/// Every `WILDCARD_EVERY`th Ingress is for `*.wN.bench.test` instead of `hN.bench.test`.
const WILDCARD_EVERY: usize = 10;

fn meta(name: String) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(NAMESPACE.into()),
        name: Some(name),
        ..ObjectMeta::default()
    }
}

fn service(i: usize) -> (Service, EndpointSlice) {
    let name = format!("svc-{i}");
    let svc = Service {
        metadata: meta(name.clone()),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let endpoints = (0..ENDPOINTS_PER_SERVICE)
        .map(|j| Endpoint {
            addresses: vec![format!("10.{}.{}.{}", i >> 8, i & 0xff, j + 1)],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..EndpointConditions::default()
            }),
            ..Endpoint::default()
        })
        .collect();
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".into(),
                name.clone(),
            )])),
            ..meta(format!("{name}-abcde"))
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            ..EndpointPort::default()
        }]),
        endpoints,
    };
    (svc, slice)
}

fn backend(service: usize) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: format!("svc-{}", service % SERVICES),
            port: Some(ServiceBackendPort {
                number: Some(80),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    }
}

/// Ingress `n`: host `hN.bench.test` (or `*.wN.bench.test`), 1 to 5 paths `/svcN/pK/...` of
/// growing depth, Exact and Prefix alternating.
fn ingress(n: usize) -> Ingress {
    let host = if n.is_multiple_of(WILDCARD_EVERY) {
        format!("*.w{n}.bench.test")
    } else {
        format!("h{n}.bench.test")
    };
    let paths = (0..n % 5 + 1)
        .map(|k| HTTPIngressPath {
            path: Some(format!("/svc{n}/p{k}{}", "/seg".repeat(k))),
            path_type: if (n + k).is_multiple_of(2) {
                "Prefix"
            } else {
                "Exact"
            }
            .into(),
            backend: backend(n * 3 + k),
        })
        .collect();
    let created = Timestamp::from_second(1_600_000_000 + n as i64).expect("valid timestamp");
    Ingress {
        metadata: ObjectMeta {
            creation_timestamp: Some(Time(created)),
            ..meta(format!("ing-{n}"))
        },
        spec: Some(IngressSpec {
            ingress_class_name: Some("portcullis".into()),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..SERVICES {
        let (svc, slice) = service(i);
        s.services.push(Arc::new(svc));
        s.endpoint_slices.push(Arc::new(slice));
    }
    s.ingresses = (0..INGRESSES).map(|i| Arc::new(ingress(i))).collect();
    // The catch-all Ingress: no rules, a defaultBackend.
    s.ingresses.push(Arc::new(Ingress {
        metadata: meta("catch-all".into()),
        spec: Some(IngressSpec {
            ingress_class_name: Some("portcullis".into()),
            default_backend: Some(backend(0)),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }));
    s
}

fn bench_compile(c: &mut Criterion) {
    let snap = snapshot();
    let opts = CompileOptions::default();
    let compiled = compile(&snap, &opts);
    assert!(
        compiled.problems.is_empty(),
        "{:?}",
        compiled.problems.first()
    );
    assert_eq!(compiled.table.host_count(), INGRESSES);

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10k_ingresses_5k_services_50k_endpoints", |b| {
        b.iter(|| compile(black_box(&snap), black_box(&opts)))
    });
    // What taking a snapshot from the cluster caches costs on every change.
    group.bench_function("snapshot_copy_10k_ingresses_5k_services", |b| {
        b.iter(|| black_box(&snap).clone())
    });
    group.finish();
}

/// Routes a request the way the proxy does and returns the Service, so it cannot be optimised away.
fn route(table: &RouteTable, host: &str, path: &str) -> usize {
    let host = normalize_request_host(host).ok();
    table
        .lookup(host.as_deref(), path)
        .route
        .map_or(0, |r| r.backend.service().len())
}

fn bench_lookup(c: &mut Criterion) {
    let compiled = compile(&snapshot(), &CompileOptions::default());
    let table = &compiled.table;
    // (name, host, path, expected Service)
    let cases = [
        (
            "exact_host_deep_prefix",
            "h1234.bench.test",
            "/svc1234/p4/seg/seg/seg/seg/a/b/c/d/e/f/g/h",
            "bench/svc-3706",
        ),
        (
            "exact_host_exact_path",
            "h1235.bench.test",
            "/svc1235/p0",
            "bench/svc-3705",
        ),
        (
            "wildcard_host",
            "x.w1230.bench.test",
            "/svc1230/p0/item",
            "bench/svc-3690",
        ),
        (
            "missing_host_fallback",
            "nope.example.com",
            "/svc1/p0",
            "bench/svc-0",
        ),
    ];
    let mut group = c.benchmark_group("lookup");
    for (name, host, path, want) in cases {
        let got = table
            .lookup(Some(host), path)
            .route
            .map(|r| r.backend.service().to_owned());
        assert_eq!(got.as_deref(), Some(want), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                table
                    .lookup(Some(black_box(host)), black_box(path))
                    .route
                    .is_some()
            })
        });
    }
    group.bench_function("normalize_and_lookup_with_port", |b| {
        b.iter(|| {
            route(
                table,
                black_box("H1234.Bench.Test:443"),
                black_box("/svc1234/p4/seg/seg/seg/seg/x"),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_compile, bench_lookup
}
criterion_main!(benches);
