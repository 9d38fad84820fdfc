//! End-to-end tests of cluster mode against a real etcd + kube-apiserver (RBAC on), with
//! backends on 198.18.0.0/15 in a network namespace. One control plane for all tests; each
//! test has its own namespace and its own controller process.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use support::cluster::{BackendNet, ControlPlane, check, controller, eventually, gate, jsonpath};
use support::*;

struct Env {
    cp: Mutex<ControlPlane>,
    net: Mutex<BackendNet>,
}

impl Env {
    /// A new echo backend in the backend namespace.
    fn echo(&self, name: &str) -> std::net::SocketAddr {
        let mut net = self.net.lock().unwrap();
        let ip = net.add_address();
        net.echo(ip, 8080, name)
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // The tests share one API server and one of them restarts it: run them one at a time.
    args.test_threads = Some(1);
    let Some(bins) = gate() else {
        // Not CI and no binaries: nothing to run (gate() printed why; in CI it panicked).
        return;
    };
    let env = Arc::new(Env {
        cp: Mutex::new(ControlPlane::start(bins)),
        net: Mutex::new(BackendNet::create()),
    });
    type TestFn = fn(&Env) -> Result<(), Failed>;
    let tests: &[(&str, TestFn, bool)] = &[
        (
            "traffic_follows_ingress_service_endpointslice_and_secret_changes",
            traffic_follows_changes,
            false,
        ),
        (
            "status_publishes_the_address_shown_by_kubectl_get_ingress",
            status_publishes_address,
            false,
        ),
        (
            "problems_become_deduplicated_events_on_the_ingress",
            problems_become_events,
            false,
        ),
        (
            "leader_alone_writes_status_once_and_a_replica_takes_over",
            leader_election,
            false,
        ),
        (
            "api_server_restart_under_load_fails_no_request",
            api_server_restart,
            false,
        ),
        (
            "chart_rbac_is_sufficient_and_a_missing_rule_fails_clearly",
            chart_rbac,
            false,
        ),
        (
            "propagation_create_to_first_routed_request",
            propagation_benchmark,
            true,
        ),
    ];
    let trials = tests
        .iter()
        .map(|(name, f, ignored)| {
            let (env, f) = (env.clone(), *f);
            Trial::test(*name, move || f(&env)).with_ignored_flag(*ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env); // stop the control plane and backends before exiting
    conclusion.exit();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ns_setup(cp: &ControlPlane, ns: &str) {
    cp.namespace(ns);
    cp.apply("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: portcullis}\nspec: {controller: portcullis.dev/ingress-controller}\n");
}

/// A selector-less Service and its hand-written EndpointSlice.
fn backend_yaml(ns: &str, name: &str, addrs: &[std::net::SocketAddr], svc_port: u16) -> String {
    let eps: String = addrs
        .iter()
        .map(|a| {
            format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n",
                a.ip()
            )
        })
        .collect();
    let port = addrs.first().map(|a| a.port()).unwrap_or(8080);
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: {svc_port}, targetPort: {port}}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: {name}\n    endpointslice.kubernetes.io/managed-by: e2e.portcullis.dev\n\
         addressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\nendpoints:\n{eps}"
    )
}

fn ingress(ns: &str, name: &str, host: &str, svc: &str, port: u16, extra_spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ingressClassName: portcullis\n{extra_spec}  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: {port}}}}}}}}}\n"
    )
}

fn traffic_follows_changes(env: &Env) -> Result<(), Failed> {
    let (one, two) = (env.echo("one"), env.echo("two"));
    let cp = env.cp.lock().unwrap();
    let ns = "traffic";
    ns_setup(&cp, ns);
    cp.apply(&backend_yaml(ns, "web", &[one], 80));
    cp.apply(&ingress(ns, "web", "a.test", "web", 80, ""));
    let p = controller(&cp.kubeconfig, &["--watch-namespace", ns]);
    let rt = rt();
    rt.block_on(async {
        p.wait_ready().await;
        p.wait_for("a.test", "/", |r| r.status() == 200 && r.backend() == "one")
            .await;
        // EndpointSlice update: traffic moves to the new endpoint.
        cp.apply(&backend_yaml(ns, "web", &[two], 80));
        p.wait_for("a.test", "/", |r| r.status() == 200 && r.backend() == "two")
            .await;
        // Ingress update: the host changes.
        cp.apply(&ingress(ns, "web", "b.test", "web", 80, ""));
        p.wait_for("b.test", "/", |r| r.status() == 200).await;
        p.wait_for("a.test", "/", |r| r.status() == 404).await;
        // Service update: the port the Ingress names disappears → 503, and comes back.
        cp.apply(&backend_yaml(ns, "web", &[two], 81));
        p.wait_for("b.test", "/", |r| r.status() == 503).await;
        cp.apply(&ingress(ns, "web", "b.test", "web", 81, ""));
        p.wait_for("b.test", "/", |r| r.status() == 200).await;
        // Secret create / update / delete: the served certificate follows.
        let (c1, k1) = portcullis::tls::self_signed(&["b.test"]).unwrap();
        let (c2, k2) = portcullis::tls::self_signed(&["b.test"]).unwrap();
        let secret = |c: &str, k: &str| {
            tls_secret_yaml("b-tls", c, k)
                .replace("namespace: default", &format!("namespace: {ns}"))
        };
        cp.apply(&secret(&c1, &k1));
        cp.apply(&ingress(
            ns,
            "web",
            "b.test",
            "web",
            81,
            "  tls: [{hosts: [b.test], secretName: b-tls}]\n",
        ));
        let served = |want: Vec<u8>| {
            let https = p.https;
            async move {
                for _ in 0..100 {
                    let (_, leaf) = https_get(https, "b.test", "b.test", "/").await;
                    if leaf == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                false
            }
        };
        assert!(
            served(pem_leaf_der(&c1)).await,
            "certificate from the new Secret served"
        );
        cp.apply(&secret(&c2, &k2));
        assert!(served(pem_leaf_der(&c2)).await, "updated Secret served");
        cp.kubectl_ok(&["-n", ns, "delete", "secret", "b-tls"]);
        for _ in 0..100 {
            let (_, leaf) = https_get(p.https, "b.test", "b.test", "/").await;
            if leaf != pem_leaf_der(&c2) && leaf != pem_leaf_der(&c1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, leaf) = https_get(p.https, "b.test", "b.test", "/").await;
        assert!(leaf != pem_leaf_der(&c2), "deleted Secret no longer served");
        // Ingress delete: 404.
        cp.kubectl_ok(&["-n", ns, "delete", "ingress", "web"]);
        p.wait_for("b.test", "/", |r| r.status() == 404).await;
    });
    Ok(())
}

fn status_publishes_address(env: &Env) -> Result<(), Failed> {
    let be = env.echo("status");
    let cp = env.cp.lock().unwrap();
    let ns = "status";
    ns_setup(&cp, ns);
    cp.apply(&backend_yaml(ns, "web", &[be], 80));
    cp.apply(&ingress(ns, "web", "s.test", "web", 80, ""));
    // --publish-address
    let p = controller(
        &cp.kubeconfig,
        &[
            "--watch-namespace",
            ns,
            "--publish-address",
            "127.0.0.1,lb.example.test",
        ],
    );
    eventually(
        Duration::from_secs(20),
        "ADDRESS in kubectl get ingress",
        || {
            let out = cp.kubectl_ok(&["-n", ns, "get", "ingress", "web"]);
            out.lines()
                .nth(1)
                .is_some_and(|l| l.contains("127.0.0.1,lb.example.test"))
        },
    )?;
    // An Ingress that stops being ours loses the status we wrote.
    cp.kubectl_ok(&[
        "-n",
        ns,
        "annotate",
        "ingress",
        "web",
        "kubernetes.io/ingress.class=other",
    ]);
    eventually(Duration::from_secs(20), "status cleared", || {
        jsonpath(&cp, ns, "ingress", "web", "{.status.loadBalancer.ingress}").is_empty()
    })?;
    drop(p);
    // --publish-service: the Service's cluster IP when it has no load balancer or external IP.
    cp.kubectl_ok(&[
        "-n",
        ns,
        "annotate",
        "ingress",
        "web",
        "kubernetes.io/ingress.class-",
    ]);
    cp.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: portcullis, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
    ));
    let ip = jsonpath(&cp, ns, "service", "portcullis", "{.spec.clusterIP}");
    check(ip.starts_with("198.19.0."), format!("cluster IP {ip}"))?;
    let _p = controller(
        &cp.kubeconfig,
        &[
            "--watch-namespace",
            ns,
            "--publish-service",
            &format!("{ns}/portcullis"),
        ],
    );
    eventually(Duration::from_secs(20), "cluster IP published", || {
        jsonpath(
            &cp,
            ns,
            "ingress",
            "web",
            "{.status.loadBalancer.ingress[*].ip}",
        ) == ip
    })
}

fn problems_become_events(env: &Env) -> Result<(), Failed> {
    let be = env.echo("events");
    let cp = env.cp.lock().unwrap();
    let ns = "events";
    ns_setup(&cp, ns);
    cp.apply(&backend_yaml(ns, "web", &[be], 80));
    cp.apply(&ingress(ns, "broken", "e.test", "missing", 80, ""));
    let p = controller(&cp.kubeconfig, &["--watch-namespace", ns]);
    let count = |reason: &str| {
        let out = cp.kubectl_ok(&["-n", ns, "get", "events.events.k8s.io", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["reason"] == reason
                    && e["regarding"]["name"] == "broken"
                    && e["regarding"]["kind"] == "Ingress"
            })
            .count()
    };
    eventually(Duration::from_secs(20), "ServiceNotFound event", || {
        count("ServiceNotFound") == 1
    })
    .map_err(|e| {
        format!(
            "{}\ncontroller log:\n{}",
            e.message().unwrap_or_default(),
            p.log_text()
        )
    })?;
    // More reloads do not repeat the Event.
    for i in 0..5 {
        cp.apply(&ingress(
            ns,
            &format!("other-{i}"),
            &format!("o{i}.test"),
            "web",
            80,
            "",
        ));
    }
    rt().block_on(p.wait_for("o4.test", "/", |r| r.status() == 200));
    std::thread::sleep(Duration::from_secs(1));
    check(
        count("ServiceNotFound") == 1,
        format!("deduplicated, got {}", count("ServiceNotFound")),
    )?;
    let note = cp.event_lines(ns);
    check(
        note.contains("spec.rules[0].http.paths[0].backend.service.name"),
        format!("note names the field: {note}"),
    )
}

fn leader_election(env: &Env) -> Result<(), Failed> {
    let be = env.echo("leader");
    let cp = env.cp.lock().unwrap();
    let ns = "leader";
    ns_setup(&cp, ns);
    cp.apply(&backend_yaml(ns, "web", &[be], 80));
    cp.apply(&ingress(ns, "one", "l1.test", "web", 80, ""));
    let flags = [
        "--watch-namespace",
        ns,
        "--leader-elect",
        "--election-namespace",
        ns,
        "--publish-address",
        "127.0.0.3",
    ];
    let kc = cp.kubeconfig.to_str().unwrap().to_owned();
    let a = Portcullis::spawn_with(
        None,
        &flags,
        &[("KUBECONFIG", &kc), ("POD_NAME", "replica-a")],
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut b = Portcullis::spawn_with(
        None,
        &flags,
        &[("KUBECONFIG", &kc), ("POD_NAME", "replica-b")],
    );
    eventually(Duration::from_secs(20), "status written", || {
        jsonpath(
            &cp,
            ns,
            "ingress",
            "one",
            "{.status.loadBalancer.ingress[*].ip}",
        ) == "127.0.0.3"
    })?;
    let holder = jsonpath(
        &cp,
        ns,
        "lease",
        "portcullis-leader",
        "{.spec.holderIdentity}",
    );
    check(
        holder == "replica-a",
        format!("first replica leads, holder {holder:?}"),
    )?;
    // Both replicas serve traffic.
    let rt = rt();
    rt.block_on(async {
        a.wait_for("l1.test", "/", |r| r.status() == 200).await;
        b.wait_for("l1.test", "/", |r| r.status() == 200).await;
    });
    std::thread::sleep(Duration::from_secs(3));
    let writes = |p: &Portcullis| p.log_text().matches("status updated").count();
    check(
        writes(&a) == 1 && writes(&b) == 0,
        format!(
            "status written exactly once: a={} b={}",
            writes(&a),
            writes(&b)
        ),
    )?;
    // The leader stops: the other replica takes the lease and writes status from then on.
    let mut a = a;
    Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()?;
    check(
        a.wait_exit(Duration::from_secs(10)).is_some(),
        "leader exits on SIGTERM",
    )?;
    eventually(Duration::from_secs(25), "replica-b holds the lease", || {
        jsonpath(
            &cp,
            ns,
            "lease",
            "portcullis-leader",
            "{.spec.holderIdentity}",
        ) == "replica-b"
    })?;
    cp.apply(&ingress(ns, "two", "l2.test", "web", 80, ""));
    eventually(Duration::from_secs(20), "new leader writes status", || {
        jsonpath(
            &cp,
            ns,
            "ingress",
            "two",
            "{.status.loadBalancer.ingress[*].ip}",
        ) == "127.0.0.3"
    })?;
    check(
        writes(&b) == 1,
        format!("replica-b wrote once, {}", writes(&b)),
    )?;
    let _ = b.wait_exit(Duration::ZERO);
    Ok(())
}

fn api_server_restart(env: &Env) -> Result<(), Failed> {
    let (one, two) = (env.echo("before"), env.echo("after"));
    let mut cp = env.cp.lock().unwrap();
    let ns = "restart";
    ns_setup(&cp, ns);
    cp.apply(&backend_yaml(ns, "web", &[one], 80));
    cp.apply(&ingress(ns, "web", "r.test", "web", 80, ""));
    let p = controller(&cp.kubeconfig, &["--watch-namespace", ns]);
    let rt = rt();
    rt.block_on(p.wait_for("r.test", "/", |r| {
        r.status() == 200 && r.backend() == "before"
    }));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (addr, stop) = (p.http, stop.clone());
        rt.spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut conn = Conn::open(addr).await.unwrap();
            while !stop.is_cancelled() {
                match conn.get("r.test", "/").await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => {
                        failed.push(e.to_string());
                        conn = Conn::open(addr).await.unwrap();
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    cp.stop_apiserver();
    std::thread::sleep(Duration::from_secs(4));
    cp.start_apiserver();
    cp.wait_ready(Duration::from_secs(60));
    // Watches resume: a change made after the restart is routed.
    cp.apply(&backend_yaml(ns, "web", &[two], 80));
    rt.block_on(p.wait_for("r.test", "/", |r| {
        r.status() == 200 && r.backend() == "after"
    }));
    stop.cancel();
    let (ok, failed) = rt.block_on(load).unwrap();
    check(
        failed.is_empty(),
        format!("failed requests during the API server restart: {failed:?}"),
    )?;
    check(ok > 100, format!("load ran: {ok} requests"))
}

fn chart_rbac(env: &Env) -> Result<(), Failed> {
    let be = env.echo("rbac");
    let cp = env.cp.lock().unwrap();
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/portcullis");
    // The IngressClass already exists in this shared cluster (other tests made it).
    let out = cp.helm(&[
        "install",
        "portcullis",
        chart,
        "-n",
        "portcullis-e2e",
        "--create-namespace",
        "--no-hooks",
        "--set",
        "ingressClass.create=false",
    ]);
    check(
        out.status.success(),
        format!("helm install: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    let sa = "system:serviceaccount:portcullis-e2e:portcullis";
    let can = |args: &[&str]| {
        let mut a = vec!["auth", "can-i", "--as", sa];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&cp.kubectl(&a).stdout).trim() == "yes"
    };
    for allowed in [
        &["watch", "endpointslices.discovery.k8s.io", "-A"][..],
        &["list", "ingresses.networking.k8s.io", "-A"],
        &["list", "ingressclasses.networking.k8s.io"],
        &[
            "patch",
            "ingresses.networking.k8s.io",
            "--subresource=status",
            "-n",
            "apps",
        ],
        &["create", "events.events.k8s.io", "-n", "apps"],
        &[
            "create",
            "leases.coordination.k8s.io",
            "-n",
            "portcullis-e2e",
        ],
        &[
            "update",
            "leases.coordination.k8s.io/portcullis-leader",
            "-n",
            "portcullis-e2e",
        ],
    ] {
        check(can(allowed), format!("chart RBAC allows {allowed:?}"))?;
    }
    for denied in [
        &["create", "clusterrolebindings"][..],
        &["delete", "secrets", "-n", "apps"],
        &["patch", "secrets", "-n", "apps"],
        &["delete", "ingresses.networking.k8s.io", "-n", "apps"],
        &["update", "ingresses.networking.k8s.io", "-n", "apps"],
        &["create", "services", "-n", "apps"],
        &[
            "update",
            "leases.coordination.k8s.io/other-lease",
            "-n",
            "portcullis-e2e",
        ],
        &["create", "leases.coordination.k8s.io", "-n", "apps"],
        &["list", "configmaps", "-A"],
    ] {
        check(!can(denied), format!("chart RBAC denies {denied:?}"))?;
    }
    let ns = "apps";
    ns_setup(&cp, ns);
    cp.apply(&backend_yaml(ns, "web", &[be], 80));
    cp.apply(&ingress(ns, "web", "rbac.test", "web", 80, ""));
    let kc = cp.token_kubeconfig("portcullis-e2e", "portcullis");
    let p = controller(
        &kc,
        &[
            "--leader-elect",
            "--election-namespace",
            "portcullis-e2e",
            "--publish-address",
            "127.0.0.4",
        ],
    );
    rt().block_on(p.wait_for("rbac.test", "/", |r| r.status() == 200));
    eventually(
        Duration::from_secs(20),
        "status written under the chart's RBAC",
        || {
            jsonpath(
                &cp,
                ns,
                "ingress",
                "web",
                "{.status.loadBalancer.ingress[*].ip}",
            ) == "127.0.0.4"
        },
    )?;
    drop(p);

    // The same ServiceAccount without the EndpointSlice rule: start-up fails, naming it.
    cp.kubectl_ok(&[
        "-n",
        "portcullis-e2e",
        "create",
        "serviceaccount",
        "limited",
    ]);
    let role = cp.kubectl_ok(&["get", "clusterrole", "portcullis", "-o", "json"]);
    let mut role: serde_json::Value = serde_json::from_str(&role).unwrap();
    role["metadata"] = serde_json::json!({"name": "portcullis-limited"});
    role["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["resources"][0] != "endpointslices");
    cp.kubectl_stdin(&["apply", "-f", "-"], &role.to_string());
    cp.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "portcullis-limited",
        "--clusterrole=portcullis-limited",
        "--serviceaccount=portcullis-e2e:limited",
    ]);
    let kc = cp.token_kubeconfig("portcullis-e2e", "limited");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kc)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    check(
        out.status.code() == Some(77),
        format!("exit code {:?}: {err}", out.status.code()),
    )?;
    check(
        err.contains("missing RBAC permissions")
            && err.contains("list endpointslices.discovery.k8s.io in all namespaces"),
        format!("message names the missing rule: {err}"),
    )
}

/// Not a pass/fail test: prints create→first-routed-request latency over 100 Ingresses.
/// Run with `bench/propagation.sh`.
fn propagation_benchmark(env: &Env) -> Result<(), Failed> {
    let be = env.echo("prop");
    let cp = env.cp.lock().unwrap();
    let ns = "propagation";
    ns_setup(&cp, ns);
    cp.apply(&backend_yaml(ns, "web", &[be], 80));
    let p = controller(&cp.kubeconfig, &["--watch-namespace", ns]);
    let rt = rt();
    rt.block_on(p.wait_ready());
    let mut samples = Vec::new();
    for i in 0..100 {
        let host = format!("p{i}.test");
        let yaml = ingress(ns, &format!("p{i}"), &host, "web", 80, "");
        // Time from the create call returning (object stored) to the first 200.
        cp.kubectl_stdin(&["create", "-f", "-"], &yaml);
        let t = Instant::now();
        rt.block_on(async {
            loop {
                if let Ok(r) = get(p.http, &host, "/").await
                    && r.status() == 200
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        samples.push(t.elapsed());
    }
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "propagation over {} creates: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.9).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
    Ok(())
}
