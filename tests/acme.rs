//! End-to-end tests of automatic certificates: a real Pebble CA, a real kube-apiserver, the
//! real controller answering HTTP-01 and TLS-ALPN-01 in its own data plane.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use support::cluster::{ControlPlane, check, eventually, gate, jsonpath};
use support::pebble::{Pebble, connect_verified};
use support::*;

struct Env {
    cp: ControlPlane,
    pebble: Pebble,
    backend: Echo,
    rt: tokio::runtime::Runtime,
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let Some(bins) = gate() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(Echo::start("acme-backend"));
    let env = Arc::new(Env {
        cp: ControlPlane::start(bins.clone()),
        pebble: Pebble::start(&bins),
        backend,
        rt,
    });
    type TestFn = fn(&Env) -> Result<(), Failed>;
    let tests: &[(&str, TestFn)] = &[
        (
            "http01_issues_a_certificate_that_verifies_against_pebbles_root",
            http01_issuance,
        ),
        (
            "tls_alpn01_issues_a_certificate_without_port_80",
            tls_alpn01_issuance,
        ),
        ("renewal_serves_a_new_certificate_before_expiry", renewal),
        (
            "renewal_follows_the_cas_renewal_information_window",
            ari_renewal,
        ),
        (
            "the_ca_reaching_the_non_leader_replica_still_validates",
            non_leader_answers,
        ),
        (
            "a_failing_challenge_sets_failed_condition_event_and_backs_off",
            failing_challenge,
        ),
        (
            "a_new_leader_resumes_the_same_order",
            leader_restart_resumes_order,
        ),
        (
            "a_rate_limited_order_waits_for_the_cas_retry_after",
            rate_limited_retry_after,
        ),
    ];
    let trials = tests
        .iter()
        .map(|(name, f)| {
            let (env, f) = (env.clone(), *f);
            Trial::test(*name, move || f(&env))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env);
    conclusion.exit();
}

/// Namespace, backend Service and a ClusterAcmeIssuer for one test.
fn setup(env: &Env, ns: &str, issuer: &str, solver: &str, profile: Option<&str>, ari: bool) {
    let cp = &env.cp;
    cp.namespace(ns);
    cp.apply("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: portcullis}\nspec: {controller: portcullis.dev/ingress-controller}\n");
    let be = env.backend.addr;
    cp.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: web}}\n\
         addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n- addresses: [\"198.18.255.1\"]\n",
        be.port()
    ));
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&env.pebble.ca_pem);
    let mut profile = profile
        .map(|p| format!("    profile: {p}\n"))
        .unwrap_or_default();
    if !ari {
        profile.push_str("    renewalInformationSource: None\n");
    }
    cp.apply(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterAcmeIssuer\nmetadata: {{name: {issuer}}}\nspec:\n  acme:\n    server: {}\n    email: ops@example.test\n    caBundle: {ca}\n{profile}    privateKeySecretRef: {{name: {issuer}-account}}\n    solvers:\n    - {solver}: {{}}\n",
        env.pebble.directory()
    ));
}

/// An Ingress asking for a certificate from `issuer` for `host`, stored in `secret`.
fn acme_ingress(ns: &str, name: &str, host: &str, secret: &str, issuer: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{portcullis.dev/cluster-issuer: {issuer}}}\n\
         spec:\n  ingressClassName: portcullis\n  tls: [{{hosts: [{host}], secretName: {secret}}}]\n  rules:\n  - host: {host}\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}\n"
    )
}

/// A controller on `ip` at the ports Pebble validates on.
fn replica(env: &Env, ns: &str, ip: &str, extra: &[&str], envs: &[(&str, &str)]) -> Portcullis {
    let http = format!("{ip}:{}", env.pebble.http_port);
    let https = format!("{ip}:{}", env.pebble.tls_port);
    let mut args = vec![
        "--watch-namespace",
        ns,
        "--cluster-resource-namespace",
        ns,
        "--http-listen",
        &http,
        "--https-listen",
        &https,
        "--acme-backoff-base",
        "3s",
        "--acme-challenge-propagation-delay",
        "300ms",
    ];
    args.extend_from_slice(extra);
    let kc = env.cp.kubeconfig.to_str().unwrap().to_owned();
    let mut all_env = vec![("KUBECONFIG", kc.as_str())];
    all_env.extend_from_slice(envs);
    let mut p = Portcullis::spawn_with(None, &args, &all_env);
    p.http = http.parse().unwrap();
    p.https = https.parse().unwrap();
    p
}

/// The replica's Prometheus text.
fn metrics(env: &Env, p: &Portcullis) -> String {
    env.rt
        .block_on(get(p.admin, "admin", "/metrics"))
        .unwrap()
        .text()
}

fn ready(cp: &ControlPlane, ns: &str, name: &str) -> bool {
    jsonpath(
        cp,
        ns,
        "acmecertificate",
        name,
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    ) == "True"
}

/// The leaf the HTTPS listener serves for `host`, after verifying the chain against `root`.
fn served_verified(
    env: &Env,
    addr: std::net::SocketAddr,
    host: &str,
    root: &str,
) -> Result<Vec<u8>, String> {
    env.rt.block_on(async {
        let tls = connect_verified(&addr, host, root)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        Ok(conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default())
    })
}

fn wait_verified(
    env: &Env,
    addr: std::net::SocketAddr,
    host: &str,
    root: &str,
) -> Result<Vec<u8>, Failed> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match served_verified(env, addr, host, root) {
            Ok(leaf) => return Ok(leaf),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("served chain does not verify: {e}").into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn http01_issuance(env: &Env) -> Result<(), Failed> {
    let (ns, host) = ("acme-http", "www.http01.test");
    setup(env, ns, "pebble-http", "http01", None, true);
    let p = replica(env, ns, "127.0.0.11", &[], &[]);
    env.rt.block_on(env.pebble.set_a(host, "127.0.0.11"));
    env.cp
        .apply(&acme_ingress(ns, "shop", host, "shop-tls", "pebble-http"));
    eventually(
        Duration::from_secs(60),
        "AcmeCertificate shop-tls Ready",
        || ready(&env.cp, ns, "shop-tls"),
    )
    .map_err(|e| format!("{}\n{}", e.message().unwrap_or_default(), p.log_text()))?;
    let secret_type = jsonpath(&env.cp, ns, "secret", "shop-tls", "{.type}");
    check(
        secret_type == "kubernetes.io/tls",
        format!("Secret type {secret_type}"),
    )?;
    let root = env.rt.block_on(env.pebble.root());
    let leaf = wait_verified(env, p.https, host, &root)?;
    let secret_crt = jsonpath(&env.cp, ns, "secret", "shop-tls", "{.data.tls\\.crt}");
    use base64::Engine;
    let pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(secret_crt)?)?;
    check(
        leaf == pem_leaf_der(&pem),
        "the served leaf is the one in the Secret",
    )?;
    check(
        pem.matches("BEGIN CERTIFICATE").count() >= 2,
        "tls.crt holds the full chain",
    )?;
    let key = jsonpath(&env.cp, ns, "secret", "shop-tls", "{.data.tls\\.key}");
    let key = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(key)?)?;
    check(
        key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "tls.key is PKCS#8",
    )?;
    // kubectl shows the printer columns users expect.
    let table = env.cp.kubectl_ok(&["-n", ns, "get", "acmecertificate"]);
    check(
        table.contains("READY") && table.contains("SECRET") && table.contains("EXPIRATION"),
        table.clone(),
    )?;
    check(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("True") && l.contains("shop-tls")),
        table,
    )?;
    // The issuer records its account.
    let uri = jsonpath(
        &env.cp,
        "",
        "clusteracmeissuer",
        "pebble-http",
        "{.status.acme.uri}",
    );
    check(
        uri.starts_with("https://127.0.0.1"),
        format!("account URI {uri:?}"),
    )?;
    let events = env.cp.event_lines(ns);
    check(
        events.contains("Issued=") && events.contains("OrderCreated="),
        format!("events: {events}"),
    )?;
    // Traffic flows over the new certificate.
    let metrics = metrics(env, &p);
    check(
        metrics.contains("portcullis_acme_orders_total{result=\"success\"} 1"),
        metrics.clone(),
    )?;
    check(
        metrics.contains(
            "portcullis_acme_challenge_validations_total{type=\"http-01\",result=\"valid\"}",
        ),
        metrics.clone(),
    )?;
    check(metrics.contains("portcullis_acme_certificate_renewal_timestamp_seconds{certificate=\"acme-http/shop-tls\"}"), metrics)?;
    // Removing the annotation deletes the AcmeCertificate (the Secret stays).
    env.cp.kubectl_ok(&[
        "-n",
        ns,
        "annotate",
        "ingress",
        "shop",
        "portcullis.dev/cluster-issuer-",
    ]);
    eventually(Duration::from_secs(20), "AcmeCertificate deleted", || {
        !env.cp
            .kubectl(&["-n", ns, "get", "acmecertificate", "shop-tls"])
            .status
            .success()
    })?;
    check(
        env.cp
            .kubectl(&["-n", ns, "get", "secret", "shop-tls"])
            .status
            .success(),
        "Secret kept",
    )
}

fn tls_alpn01_issuance(env: &Env) -> Result<(), Failed> {
    let (ns, host) = ("acme-alpn", "www.alpn.test");
    setup(env, ns, "pebble-alpn", "tlsAlpn01", None, true);
    let p = replica(env, ns, "127.0.0.12", &[], &[]);
    env.rt.block_on(env.pebble.set_a(host, "127.0.0.12"));
    env.cp
        .apply(&acme_ingress(ns, "shop", host, "alpn-tls", "pebble-alpn"));
    eventually(
        Duration::from_secs(60),
        "AcmeCertificate alpn-tls Ready",
        || ready(&env.cp, ns, "alpn-tls"),
    )
    .map_err(|e| format!("{}\n{}", e.message().unwrap_or_default(), p.log_text()))?;
    let root = env.rt.block_on(env.pebble.root());
    wait_verified(env, p.https, host, &root)?;
    check(
        !p.log_text().contains("acme-challenge"),
        "no HTTP-01 request was needed",
    )?;
    let metrics = metrics(env, &p);
    check(
        metrics.contains(
            "portcullis_acme_challenge_validations_total{type=\"tls-alpn-01\",result=\"valid\"}",
        ),
        metrics,
    )
}

fn renewal(env: &Env) -> Result<(), Failed> {
    let (ns, host) = ("acme-renew", "www.renew.test");
    setup(env, ns, "pebble-short", "http01", Some("short"), false);
    let p = replica(env, ns, "127.0.0.13", &[], &[]);
    env.rt.block_on(env.pebble.set_a(host, "127.0.0.13"));
    env.cp
        .apply(&acme_ingress(ns, "shop", host, "renew-tls", "pebble-short"));
    eventually(Duration::from_secs(60), "first issuance", || {
        ready(&env.cp, ns, "renew-tls")
    })?;
    let root = env.rt.block_on(env.pebble.root());
    let first = wait_verified(env, p.https, host, &root)?;
    let renewal_time = jsonpath(
        &env.cp,
        ns,
        "acmecertificate",
        "renew-tls",
        "{.status.renewalTime}",
    );
    check(!renewal_time.is_empty(), "renewalTime recorded")?;
    // A 24 s certificate renews at half its lifetime: a new one is served without a restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(leaf) = served_verified(env, p.https, host, &root)
            && leaf != first
        {
            break;
        }
        check(
            Instant::now() < deadline,
            format!(
                "no renewed certificate served within 60 s\n{}",
                p.log_text()
            ),
        )?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let revision: i64 = jsonpath(
        &env.cp,
        ns,
        "acmecertificate",
        "renew-tls",
        "{.status.revision}",
    )
    .parse()
    .unwrap_or(0);
    check(revision >= 2, format!("revision {revision}"))
}

fn ari_renewal(env: &Env) -> Result<(), Failed> {
    let (ns, host) = ("acme-ari", "www.ari.test");
    setup(env, ns, "pebble-ari", "http01", None, true);
    let p = replica(env, ns, "127.0.0.19", &["--acme-ari-max-poll", "2s"], &[]);
    env.rt.block_on(env.pebble.set_a(host, "127.0.0.19"));
    env.cp
        .apply(&acme_ingress(ns, "shop", host, "ari-tls", "pebble-ari"));
    eventually(Duration::from_secs(60), "first issuance", || {
        ready(&env.cp, ns, "ari-tls")
    })?;
    // The CA's window is recorded and bounds the renewal time.
    let field = |f: &str| jsonpath(&env.cp, ns, "acmecertificate", "ari-tls", f);
    eventually(Duration::from_secs(20), "ARI window recorded", || {
        !field("{.status.acme.ari.suggestedWindow.start}").is_empty()
    })
    .map_err(|e| format!("{}\n{}", e.message().unwrap_or_default(), p.log_text()))?;
    let selected = field("{.status.acme.ari.selectedTime}");
    check(
        field("{.status.renewalTime}") <= selected,
        "renewalTime is at or before the drawn ARI time",
    )?;
    let root = env.rt.block_on(env.pebble.root());
    let first = wait_verified(env, p.https, host, &root)?;
    // The CA moves the window into the past: the next check renews, naming the old certificate.
    use base64::Engine;
    let crt = jsonpath(&env.cp, ns, "secret", "ari-tls", "{.data.tls\\.crt}");
    let crt = base64::engine::general_purpose::STANDARD.decode(crt)?;
    let pem = String::from_utf8(crt)?;
    let leaf_pem = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    let past = |secs: i64| {
        k8s_openapi::jiff::Timestamp::from_second(
            k8s_openapi::jiff::Timestamp::now().as_second() - secs,
        )
        .unwrap()
        .to_string()
    };
    env.rt.block_on(
        env.pebble
            .set_renewal_window(&leaf_pem, &past(7200), &past(3600)),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(leaf) = served_verified(env, p.https, host, &root)
            && leaf != first
        {
            break;
        }
        check(
            Instant::now() < deadline,
            format!("no ARI renewal within 60 s\n{}", p.log_text()),
        )?;
        std::thread::sleep(Duration::from_millis(500));
    }
    check(
        p.log_text()
            .contains("renewal names the certificate it replaces"),
        "the order carried `replaces`",
    )?;
    eventually(Duration::from_secs(10), "ARI renewal recorded", || {
        !field("{.status.acme.ari.lastAriRenewal}").is_empty()
    })
}

fn non_leader_answers(env: &Env) -> Result<(), Failed> {
    let (ns, host) = ("acme-ha", "www.ha.test");
    setup(env, ns, "pebble-ha", "http01", None, true);
    let elect = ["--leader-elect", "--election-namespace", ns];
    let a = replica(env, ns, "127.0.0.14", &elect, &[("POD_NAME", "replica-a")]);
    env.rt.block_on(a.wait_ready());
    std::thread::sleep(Duration::from_secs(1));
    let b = replica(env, ns, "127.0.0.15", &elect, &[("POD_NAME", "replica-b")]);
    env.rt.block_on(b.wait_ready());
    eventually(Duration::from_secs(20), "replica-a leads", || {
        jsonpath(
            &env.cp,
            ns,
            "lease",
            "portcullis-leader",
            "{.spec.holderIdentity}",
        ) == "replica-a"
    })?;
    // The CA's validation reaches replica-b, which does not order anything itself.
    env.rt.block_on(env.pebble.set_a(host, "127.0.0.15"));
    env.cp
        .apply(&acme_ingress(ns, "shop", host, "ha-tls", "pebble-ha"));
    eventually(Duration::from_secs(60), "issued", || {
        ready(&env.cp, ns, "ha-tls")
    })
    .map_err(|e| {
        format!(
            "{}\nA:\n{}\nB:\n{}",
            e.message().unwrap_or_default(),
            a.log_text(),
            b.log_text()
        )
    })?;
    check(
        b.log_text().contains("/.well-known/acme-challenge/"),
        "replica-b answered the CA",
    )?;
    check(
        !a.log_text().contains("/.well-known/acme-challenge/"),
        "the leader was not asked",
    )?;
    check(
        a.log_text().contains("order created") && !b.log_text().contains("order created"),
        "only the leader ordered",
    )?;
    // Both replicas serve the new certificate.
    let root = env.rt.block_on(env.pebble.root());
    let la = wait_verified(env, a.https, host, &root)?;
    let lb = wait_verified(env, b.https, host, &root)?;
    check(la == lb, "both replicas serve the same certificate")
}

fn failing_challenge(env: &Env) -> Result<(), Failed> {
    let (ns, host) = ("acme-fail", "www.fail.test");
    setup(env, ns, "pebble-fail", "http01", None, true);
    let p = replica(env, ns, "127.0.0.16", &[], &[]);
    // The name resolves to an address where nothing listens: validation fails.
    env.rt.block_on(env.pebble.set_a(host, "127.0.0.99"));
    env.cp
        .apply(&acme_ingress(ns, "shop", host, "fail-tls", "pebble-fail"));
    // One read of the whole status, so a retry starting meanwhile cannot mix two attempts.
    let mut failed = serde_json::Value::Null;
    eventually(Duration::from_secs(60), "Issuing=False/Failed", || {
        let out = env
            .cp
            .kubectl(&["-n", ns, "get", "acmecertificate", "fail-tls", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let conds = v["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let issuing = conds
            .iter()
            .find(|c| c["type"] == "Issuing")
            .cloned()
            .unwrap_or_default();
        let done = issuing["reason"] == "Failed";
        if done {
            failed = v["status"].clone();
        }
        done
    })
    .map_err(|e| format!("{}\n{}", e.message().unwrap_or_default(), p.log_text()))?;
    let conds = failed["conditions"].as_array().cloned().unwrap_or_default();
    let cond = |t: &str| {
        conds
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or_default()
    };
    check(cond("Issuing")["status"] == "False", "Issuing is False")?;
    let msg = cond("Issuing")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    check(
        msg.starts_with("ValidationFailed:"),
        format!("classified: {msg}"),
    )?;
    check(cond("Ready")["status"] == "False", "not Ready")?;
    let events = env.cp.event_lines(ns);
    check(
        events
            .lines()
            .any(|l| l.starts_with("Failed=ValidationFailed") && l.contains("next attempt in 3s")),
        format!("events: {events}"),
    )?;
    // Backoff: the second attempt waits the base (3 s), the third ten times as long.
    let attempts = || {
        jsonpath(
            &env.cp,
            ns,
            "acmecertificate",
            "fail-tls",
            "{.status.failedIssuanceAttempts}",
        )
    };
    let failed_at = || {
        jsonpath(
            &env.cp,
            ns,
            "acmecertificate",
            "fail-tls",
            "{.status.lastFailureTime}",
        )
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
    };
    eventually(Duration::from_secs(10), "first failure recorded", || {
        attempts() == "1"
    })?;
    let first = failed_at().ok_or("lastFailureTime set")?;
    eventually(Duration::from_secs(30), "second attempt", || {
        attempts() == "2"
    })?;
    let second = failed_at().ok_or("lastFailureTime set")?;
    let gap = second.duration_since(first).as_secs_f64();
    check(
        gap >= 3.0,
        format!("second attempt {gap:.1}s after the first: not before the 3 s backoff"),
    )?;
    std::thread::sleep(Duration::from_secs(8));
    check(
        attempts() == "2",
        format!("third attempt waits 30 s, attempts {}", attempts()),
    )?;
    drop(p);
    Ok(())
}

fn leader_restart_resumes_order(env: &Env) -> Result<(), Failed> {
    let (ns, host) = ("acme-resume", "www.resume.test");
    setup(env, ns, "pebble-resume", "http01", None, true);
    // A long propagation wait holds the order between creation and validation.
    let elect = [
        "--leader-elect",
        "--election-namespace",
        ns,
        "--acme-challenge-propagation-delay",
        "6s",
    ];
    let mut a = replica(env, ns, "127.0.0.17", &elect, &[("POD_NAME", "replica-a")]);
    env.rt.block_on(a.wait_ready());
    std::thread::sleep(Duration::from_secs(1));
    let b = replica(env, ns, "127.0.0.18", &elect, &[("POD_NAME", "replica-b")]);
    eventually(Duration::from_secs(20), "replica-a leads", || {
        jsonpath(
            &env.cp,
            ns,
            "lease",
            "portcullis-leader",
            "{.spec.holderIdentity}",
        ) == "replica-a"
    })?;
    env.rt.block_on(env.pebble.set_a(host, "127.0.0.18"));
    env.cp.apply(&acme_ingress(
        ns,
        "shop",
        host,
        "resume-tls",
        "pebble-resume",
    ));
    let url = || {
        jsonpath(
            &env.cp,
            ns,
            "acmecertificate",
            "resume-tls",
            "{.status.acme.order.url}",
        )
    };
    eventually(Duration::from_secs(30), "order URL persisted", || {
        !url().is_empty()
    })?;
    let order = url();
    // The leader stops mid-order (before the CA validated anything).
    std::process::Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()?;
    check(
        a.wait_exit(Duration::from_secs(10)).is_some(),
        "leader exits",
    )?;
    eventually(Duration::from_secs(60), "issued by the new leader", || {
        ready(&env.cp, ns, "resume-tls")
    })
    .map_err(|e| format!("{}\nB:\n{}", e.message().unwrap_or_default(), b.log_text()))?;
    let log = b.log_text();
    check(
        log.contains("order resumed") && log.contains(&order),
        format!("replica-b resumed {order}:\n{log}"),
    )?;
    check(!log.contains("order created"), "no second order")
}

/// A stand-in ACME CA on 127.0.0.1 (HTTPS under its own root): it registers accounts and
/// answers every newOrder with 429 `rateLimited` and `Retry-After: <seconds>`. It checks no
/// signatures; it exists to show what the controller does with the header.
struct RateLimitedCa {
    addr: std::net::SocketAddr,
    /// The root its serving certificate chains to, PEM.
    ca_pem: String,
    /// When each newOrder arrived.
    orders: Arc<std::sync::Mutex<Vec<Instant>>>,
    server: tokio::task::JoinHandle<()>,
}

impl RateLimitedCa {
    async fn start(retry_after_secs: u64) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rate-limited test CA");
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let orders = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ca = AcmeAnswers {
            base: format!("https://{addr}"),
            retry_after_secs,
            orders: orders.clone(),
        };
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, ca) = (acceptor.clone(), ca.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let ca = ca.clone();
                        async move { Ok::<_, std::convert::Infallible>(ca.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        RateLimitedCa {
            addr,
            ca_pem,
            orders,
            server,
        }
    }

    fn directory(&self) -> String {
        format!("https://{}/dir", self.addr)
    }

    fn orders(&self) -> Vec<Instant> {
        self.orders.lock().unwrap().clone()
    }
}

impl Drop for RateLimitedCa {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The fake CA's answers: directory, nonces, accounts, and 429 for every newOrder.
#[derive(Clone)]
struct AcmeAnswers {
    base: String,
    retry_after_secs: u64,
    orders: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl AcmeAnswers {
    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        use http_body_util::BodyExt;
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let _ = req.into_body().collect().await;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let rsp = http::Response::builder().header("replay-nonce", nonce);
        let json =
            |rsp: http::response::Builder, status: u16, ct: &str, body: serde_json::Value| {
                rsp.status(status)
                    .header("content-type", ct)
                    .body(body.to_string().into())
                    .unwrap()
            };
        let base = &self.base;
        match (method.as_str(), path.as_str()) {
            ("GET", "/dir") => json(
                rsp,
                200,
                "application/json",
                serde_json::json!({
                    "newNonce": format!("{base}/nonce"),
                    "newAccount": format!("{base}/account"),
                    "newOrder": format!("{base}/order"),
                }),
            ),
            ("HEAD" | "GET", "/nonce") => rsp.status(200).body(Default::default()).unwrap(),
            ("POST", "/account") => json(
                rsp.header("location", format!("{base}/account/1")),
                201,
                "application/json",
                serde_json::json!({"status": "valid"}),
            ),
            ("POST", "/order") => {
                self.orders.lock().unwrap().push(Instant::now());
                json(
                    rsp.header("retry-after", self.retry_after_secs.to_string()),
                    429,
                    "application/problem+json",
                    serde_json::json!({
                        "type": "urn:ietf:params:acme:error:rateLimited",
                        "detail": "too many new orders recently",
                        "status": 429,
                    }),
                )
            }
            _ => json(
                rsp,
                404,
                "application/problem+json",
                serde_json::json!({"type": "urn:ietf:params:acme:error:malformed", "status": 404}),
            ),
        }
    }
}

fn rate_limited_retry_after(env: &Env) -> Result<(), Failed> {
    let (ns, host, issuer) = ("acme-ratelimit", "www.ratelimit.test", "ratelimited");
    let ca = env.rt.block_on(RateLimitedCa::start(7));
    env.cp.namespace(ns);
    env.cp.apply("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: portcullis}\nspec: {controller: portcullis.dev/ingress-controller}\n");
    use base64::Engine;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca.ca_pem);
    env.cp.apply(&format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterAcmeIssuer\nmetadata: {{name: {issuer}}}\nspec:\n  acme:\n    server: {}\n    caBundle: {bundle}\n    privateKeySecretRef: {{name: {issuer}-account}}\n    solvers:\n    - http01: {{}}\n",
        ca.directory()
    ));
    // The class backoff (5 min) is far longer than Retry-After (7 s): only the header can
    // bring the next attempt within seconds.
    let p = replica(env, ns, "127.0.0.20", &["--acme-backoff-base", "300s"], &[]);
    env.cp
        .apply(&acme_ingress(ns, "shop", host, "limited-tls", issuer));
    let mut status = serde_json::Value::Null;
    eventually(Duration::from_secs(60), "Issuing=False/Failed", || {
        let out = env.cp.kubectl(&[
            "-n",
            ns,
            "get",
            "acmecertificate",
            "limited-tls",
            "-o",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let failed = v["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Issuing" && c["reason"] == "Failed")
        });
        if failed {
            status = v["status"].clone();
        }
        failed
    })
    .map_err(|e| format!("{}\n{}", e.message().unwrap_or_default(), p.log_text()))?;
    let conds = status["conditions"].as_array().cloned().unwrap_or_default();
    let msg = conds
        .iter()
        .find(|c| c["type"] == "Issuing")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    check(
        msg.starts_with("RateLimited:") && msg.contains("too many new orders recently"),
        format!("classified with the CA's detail: {msg}"),
    )?;
    let next = msg
        .split_once("rate limited by the CA; next attempt at ")
        .and_then(|(_, rest)| rest.strip_suffix(" (Retry-After)"))
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .ok_or_else(|| format!("no Retry-After schedule in the condition: {msg}"))?;
    let recorded = status["nextAttemptTime"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
    check(
        recorded == Some(next),
        format!(
            "status.nextAttemptTime {recorded:?}, the condition says {next}: a new leader would not wait"
        ),
    )?;
    let failed_at = status["lastFailureTime"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .ok_or("lastFailureTime set")?;
    let wait = next.as_second() - failed_at.as_second();
    check(
        (5..=10).contains(&wait),
        format!("next attempt {wait}s after the failure: Retry-After is 7 s, the backoff 300 s"),
    )?;
    let events = env.cp.event_lines(ns);
    check(
        events.lines().any(|l| {
            l.starts_with("RateLimited=RateLimited:")
                && l.contains("rate limited by the CA; next attempt at ")
                && l.ends_with("(Retry-After)")
        }),
        format!("events: {events}"),
    )?;
    // The CA sees the second newOrder no sooner than Retry-After, and long before the backoff.
    eventually(Duration::from_secs(30), "a second newOrder", || {
        ca.orders().len() >= 2
    })
    .map_err(|e| format!("{}\n{}", e.message().unwrap_or_default(), p.log_text()))?;
    let orders = ca.orders();
    let gap = orders[1].duration_since(orders[0]);
    check(
        gap >= Duration::from_secs(7),
        format!("second newOrder {gap:?} after the first, before Retry-After (7 s)"),
    )?;
    let metrics = metrics(env, &p);
    check(
        metrics.contains("portcullis_acme_orders_total{result=\"RateLimited\"}"),
        metrics,
    )
}
