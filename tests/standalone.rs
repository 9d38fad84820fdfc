//! End-to-end tests of standalone mode: the real binary, real sockets, real echo backends.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::Full;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: portcullis}\nspec: {controller: portcullis.dev/ingress-controller}\n";

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_then_path_then_default_backend() {
    let (a, b, c) = (
        Echo::start("a").await,
        Echo::start("b").await,
        Echo::start("c").await,
    );
    let m = Manifests::new();
    m.write("class.yaml", CLASS);
    m.write(
        "svc.yaml",
        &[
            service_yaml("a", &[a.addr]),
            service_yaml("b", &[b.addr]),
            service_yaml("c", &[c.addr]),
        ]
        .join("---\n"),
    );
    m.write(
        "web.yaml",
        &ingress_yaml(
            "web",
            "web.test",
            &[
                ("/", "Prefix", "a"),
                ("/api", "Prefix", "b"),
                ("/exact", "Exact", "c"),
            ],
        ),
    );
    m.write(
        "wild.yaml",
        &ingress_yaml("wild", "*.apps.test", &[("/", "Prefix", "c")]),
    );
    m.write(
        "catch-all.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: catch-all}\nspec:\n  ingressClassName: portcullis\n  defaultBackend: {service: {name: b, port: {number: 80}}}\n",
    );
    let p = Portcullis::start(m.path(), &[]).await;
    let cases = [
        ("web.test", "/", "a"),
        ("WEB.test.", "/x", "a"),
        ("web.test:8080", "/api/v1?q=1", "b"),
        ("web.test", "/apix", "a"),
        ("web.test", "/exact", "c"),
        ("web.test", "/exact/", "a"),
        ("one.apps.test", "/", "c"),
        ("two.one.apps.test", "/", "b"),
        ("other.test", "/", "b"),
    ];
    for (host, path, want) in cases {
        let r = get(p.http, host, path).await.unwrap();
        assert_eq!(r.status(), 200, "{host}{path}: {}", r.text());
        assert_eq!(r.backend(), want, "{host}{path}");
    }
    // The backend sees the path and query as sent.
    let r = get(p.http, "web.test", "/api/v1?q=1").await.unwrap();
    assert_eq!(r.json()["uri"], "/api/v1?q=1");
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_404_503_502_504_400_413_as_specified() {
    let ok = Echo::start("ok").await;
    let refused = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let m = Manifests::new();
    m.write(
        "svc.yaml",
        &[
            service_yaml("ok", &[ok.addr]),
            service_yaml("empty", &[]),
            service_yaml("refused", &[refused]),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress_yaml(
            "errs",
            "err.test",
            &[
                ("/ok", "Prefix", "ok"),
                ("/empty", "Prefix", "empty"),
                ("/refused", "Prefix", "refused"),
                ("/missing", "Prefix", "nope"),
            ],
        ),
    );
    let p = Portcullis::start(
        m.path(),
        &[
            "--upstream-response-timeout",
            "300ms",
            "--max-request-body-bytes",
            "1000",
            "--watch-ingress-without-class",
        ],
    )
    .await;
    let status = |host: &'static str, path: &'static str| {
        let addr = p.http;
        async move { get(addr, host, path).await.unwrap() }
    };
    let r = status("unknown.test", "/").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text(), "404 Not Found\n");
    assert_eq!(status("err.test", "/nothing-here").await.status(), 404);
    assert_eq!(status("err.test", "/empty").await.status(), 503);
    assert_eq!(status("err.test", "/missing").await.status(), 503);
    assert_eq!(status("err.test", "/refused").await.status(), 502);
    assert_eq!(status("err.test", "/ok/delay/3000").await.status(), 504);
    assert_eq!(status("err.test", "/ok/../ok").await.status(), 400);
    assert_eq!(status("err.test", "/ok/%2e%2E/x").await.status(), 400);
    assert_eq!(status("bad host!", "/ok").await.status(), 400);
    let big = Request::post("/ok")
        .header("host", "err.test")
        .body(Full::new(Bytes::from(vec![b'x'; 5000])))
        .unwrap();
    assert_eq!(send(p.http, big).await.unwrap().status(), 413);
    let small = Request::post("/ok")
        .header("host", "err.test")
        .body(Full::new(Bytes::from(vec![b'x'; 500])))
        .unwrap();
    let r = send(p.http, small).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json()["body_bytes"], 500);
    // Problems are visible in /readyz detail, naming object, field and reason.
    let ready = get(p.admin, "admin", "/readyz").await.unwrap().text();
    assert!(
        ready.contains("Ingress default/errs: spec.rules[0].http.paths[3].backend.service.name"),
        "{ready}"
    );
    assert!(ready.contains("(ServiceNotFound)"), "{ready}");
    assert!(ready.contains("(NoReadyEndpoints)"), "{ready}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_certificate_selected_by_sni() {
    let be = Echo::start("secure").await;
    let (exact_crt, exact_key) = portcullis::tls::self_signed(&["secure.test"]).unwrap();
    let (wild_crt, wild_key) = portcullis::tls::self_signed(&["*.wild.test"]).unwrap();
    let (def_crt, def_key) = portcullis::tls::self_signed(&["default.test"]).unwrap();
    let (other_crt, _) = portcullis::tls::self_signed(&["broken.test"]).unwrap();
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("secure", &[be.addr]));
    m.write(
        "secrets.yaml",
        &[
            tls_secret_yaml("exact", &exact_crt, &exact_key),
            tls_secret_yaml("wild", &wild_crt, &wild_key),
            tls_secret_yaml("default-cert", &def_crt, &def_key),
            // The key does not match the certificate: that Secret's hosts get the default.
            tls_secret_yaml("broken", &other_crt, &exact_key),
        ]
        .join("---\n"),
    );
    m.write(
        "ing.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: tls}\nspec:\n  ingressClassName: portcullis\n  tls:\n  - {hosts: [secure.test], secretName: exact}\n  - {hosts: ['*.wild.test'], secretName: wild}\n  - {hosts: [broken.test], secretName: broken}\n  rules:\n  - host: secure.test\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: secure, port: {number: 80}}}}]}\n  - host: '*.wild.test'\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: secure, port: {number: 80}}}}]}\n  - host: broken.test\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: secure, port: {number: 80}}}}]}\n",
    );
    let p = Portcullis::start(m.path(), &["--default-certificate", "default/default-cert"]).await;
    let (r, leaf) = https_get(p.https, "secure.test", "secure.test", "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        leaf,
        pem_leaf_der(&exact_crt),
        "exact SNI gets its own certificate"
    );
    let (_, leaf) = https_get(p.https, "a.wild.test", "a.wild.test", "/").await;
    assert_eq!(leaf, pem_leaf_der(&wild_crt), "one-label wildcard");
    let (_, leaf) = https_get(p.https, "b.a.wild.test", "b.a.wild.test", "/").await;
    assert_eq!(
        leaf,
        pem_leaf_der(&def_crt),
        "two labels fall to the default"
    );
    let (_, leaf) = https_get(p.https, "broken.test", "broken.test", "/").await;
    assert_eq!(
        leaf,
        pem_leaf_der(&def_crt),
        "a broken Secret gets the default"
    );
    let (r, _) = https_get(p.https, "secure.test", "a.wild.test", "/").await;
    assert_eq!(
        r.status(),
        421,
        "Host served by another certificate than the SNI chose"
    );
    let ready = get(p.admin, "admin", "/readyz").await.unwrap().text();
    assert!(
        ready.contains("spec.tls[2].secretName") && ready.contains("(SecretInvalid)"),
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_tls_hosts_to_https_except_acme_challenges() {
    let be = Echo::start("be").await;
    let (crt, key) = portcullis::tls::self_signed(&["r.test"]).unwrap();
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("be", &[be.addr]));
    m.write("secret.yaml", &tls_secret_yaml("r", &crt, &key));
    let ing = |name: &str, host: &str, extra: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{extra}}}\nspec:\n  ingressClassName: portcullis\n  tls: [{{hosts: [{host}], secretName: r}}]\n  rules:\n  - host: {host}\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: be, port: {{number: 80}}}}}}}}]}}\n"
        )
    };
    m.write("a.yaml", &ing("r", "r.test", ""));
    m.write(
        "b.yaml",
        &ing(
            "noredirect",
            "plain.test",
            "portcullis.dev/ssl-redirect: \"false\"",
        ),
    );
    let p = Portcullis::start(m.path(), &["--https-redirect-port", "8443"]).await;
    let r = get(p.http, "r.test", "/some/path?x=1").await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.header("location").unwrap(),
        "https://r.test:8443/some/path?x=1"
    );
    let r = get(p.http, "r.test", "/.well-known/acme-challenge/token")
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "ACME challenges are never redirected");
    assert_eq!(get(p.http, "plain.test", "/").await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sets_forwarding_headers_and_distrusts_client_xff() {
    let be = Echo::start("be").await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("be", &[be.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("h", "h.test", &[("/", "Prefix", "be")]),
    );
    let req = || {
        Request::get("/")
            .header("host", "h.test")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-request-id", "abc-123")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "hop")
            .header("te", "trailers")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let p = Portcullis::start(m.path(), &[]).await;
    let r = send(p.http, req()).await.unwrap();
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "untrusted client XFF is dropped"
    );
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "h.test");
    assert_eq!(h["x-forwarded-port"], p.http.port().to_string());
    assert_eq!(h["x-request-id"], "abc-123");
    assert_eq!(h["host"], "h.test");
    assert!(
        h.get("x-secret").is_none() && h.get("te").is_none(),
        "hop-by-hop headers removed: {h}"
    );
    assert_eq!(r.header("x-request-id").as_deref(), Some("abc-123"));
    drop(p);

    let p = Portcullis::start(m.path(), &["--trusted-proxies", "127.0.0.0/8"]).await;
    let r = send(p.http, req()).await.unwrap();
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-forwarded-for"], "6.6.6.6, 127.0.0.1",
        "trusted peer: appended"
    );
    assert_eq!(h["x-real-ip"], "6.6.6.6");
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnels_websockets_both_ways() {
    let be = Echo::start("ws").await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("ws", &[be.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("ws", "ws.test", &[("/", "Prefix", "ws")]),
    );
    let p = Portcullis::start(m.path(), &[]).await;
    let tcp = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://ws.test/ws", tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn speaks_http2_over_tls_and_h2c() {
    let be = Echo::start("h2").await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("h2", &[be.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("h2", "h2.test", &[("/", "Prefix", "h2")]),
    );
    let p = Portcullis::start(m.path(), &[]).await;
    let (tls, _) = tls_connect(p.https, "h2.test", &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let r = h2_get(tls, "https://h2.test/over-tls").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.inner.version(), http::Version::HTTP_2);
    assert_eq!(r.json()["uri"], "/over-tls");
    assert_eq!(r.json()["headers"]["host"], "h2.test");
    let tcp = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let r = h2_get(tcp, "http://h2.test/h2c").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json()["uri"], "/h2c");
}

#[tokio::test(flavor = "multi_thread")]
async fn live_edits_under_load_drop_no_request_and_no_websocket() {
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    let m = Manifests::new();
    m.write(
        "svc.yaml",
        &[service_yaml("a", &[a.addr]), service_yaml("b", &[b.addr])].join("---\n"),
    );
    m.write(
        "ing.yaml",
        &ingress_yaml("live", "live.test", &[("/", "Prefix", "a")]),
    );
    let p = Portcullis::start(m.path(), &[]).await;

    let tcp = tokio::net::TcpStream::connect(p.http).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://live.test/ws", tcp)
        .await
        .unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (addr, stop) = (p.http, stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut seen_b) = (0u32, Vec::new(), false);
            let mut conn = Conn::open(addr).await.unwrap();
            while !stop.is_cancelled() && ok < 20_000 {
                match conn.get("live.test", "/").await {
                    Ok(r) if r.status() == 200 => {
                        ok += 1;
                        seen_b |= r.backend() == "b";
                    }
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => {
                        failed.push(e.to_string());
                        conn = Conn::open(addr).await.unwrap();
                    }
                }
            }
            (ok, failed, seen_b)
        }));
    }
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let target = if i % 2 == 0 { "b" } else { "a" };
        m.write(
            "ing.yaml",
            &ingress_yaml("live", "live.test", &[("/", "Prefix", target)]),
        );
        m.write(
            &format!("extra-{i}.yaml"),
            &ingress_yaml(
                &format!("extra-{i}"),
                &format!("e{i}.test"),
                &[("/", "Prefix", "a")],
            ),
        );
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(
            back.into_text().unwrap().as_str(),
            format!("ping {i}"),
            "WebSocket survives swap {i}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let (mut total, mut saw_b) = (0, false);
    for w in workers {
        let (ok, failed, seen_b) = w.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during reloads: {failed:?}"
        );
        total += ok;
        saw_b |= seen_b;
    }
    assert!(total > 100, "load ran ({total} requests)");
    assert!(saw_b, "edits took effect under load");
    let reloads = get(p.admin, "admin", "/metrics").await.unwrap().text();
    assert!(
        reloads.contains("portcullis_config_reloads_total{result=\"success\"}"),
        "{reloads}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_manifest_breaks_nothing_else() {
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    let m = Manifests::new();
    m.write(
        "svc.yaml",
        &[service_yaml("a", &[a.addr]), service_yaml("b", &[b.addr])].join("---\n"),
    );
    m.write(
        "one.yaml",
        &ingress_yaml("one", "one.test", &[("/", "Prefix", "a")]),
    );
    m.write(
        "two.yaml",
        &ingress_yaml("two", "two.test", &[("/", "Prefix", "a")]),
    );
    let p = Portcullis::start(m.path(), &[]).await;
    assert_eq!(get(p.http, "one.test", "/").await.unwrap().backend(), "a");

    // A schema error: the objects last loaded from one.yaml stay in force.
    m.write(
        "one.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: one}\nspec:\n  rules:\n  - host: one.test\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {service: {name: b, port: {number: eighty}}}\n",
    );
    // Other files keep working and keep being reloaded.
    m.write(
        "two.yaml",
        &ingress_yaml("two", "two.test", &[("/", "Prefix", "b")]),
    );
    p.wait_for("two.test", "/", |r| r.status() == 200 && r.backend() == "b")
        .await;
    assert_eq!(get(p.http, "one.test", "/").await.unwrap().backend(), "a");
    let ready = get(p.admin, "admin", "/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = ready.text();
    assert!(text.contains("one.yaml: document 1 (Ingress default/one): field spec.rules[0].http.paths[0].backend.service.port.number"), "{text}");
    assert!(p.log_text().contains("one.yaml"), "the log names the file");

    // A YAML syntax error, and a file in a later directory level, behave the same.
    m.write("one.yaml", "kind: [unclosed");
    std::fs::create_dir(m.path().join("sub")).unwrap();
    std::fs::write(
        m.path().join("sub/three.yml"),
        ingress_yaml("three", "three.test", &[("/", "Prefix", "b")]),
    )
    .unwrap();
    p.wait_for("three.test", "/", |r| {
        r.status() == 200 && r.backend() == "b"
    })
    .await;
    assert_eq!(get(p.http, "one.test", "/").await.unwrap().backend(), "a");

    // Fixing it applies the fix; deleting a file removes its objects.
    m.write(
        "one.yaml",
        &ingress_yaml("one", "one.test", &[("/", "Prefix", "b")]),
    );
    p.wait_for("one.test", "/", |r| r.status() == 200 && r.backend() == "b")
        .await;
    m.remove("two.yaml");
    p.wait_for("two.test", "/", |r| r.status() == 404).await;
    let ready = get(p.admin, "admin", "/readyz").await.unwrap().text();
    assert!(
        !ready.contains("one.yaml"),
        "the error clears once fixed: {ready}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_exit_64_naming_the_flag_and_env_vars_work() {
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    for (flag, value) in [
        ("--http-listen", "nope"),
        ("--default-backend", "just-a-name"),
        ("--default-certificate", "no-slash"),
        ("--trusted-proxies", "10.0.0.0/99"),
        ("--log-format", "xml"),
        ("--upstream-connect-timeout", "5 parsecs"),
    ] {
        let out = run(&["serve", "--manifests", "/tmp", flag, value], &[]);
        assert_eq!(out.status.code(), Some(64), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
    let out = run(
        &["serve", "--manifests", "/tmp"],
        &[("PORTCULLIS_HTTPS_LISTEN", "bad")],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--https-listen"));

    // A valid environment variable is used.
    let be = Echo::start("env").await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("env", &[be.addr]));
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--manifests"])
        .arg(m.path())
        .args(["--https-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .env("PORTCULLIS_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_DEFAULT_BACKEND", "default/env:80")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut answer = None;
    // Until the first table is live every answer is 404: wait for the default backend's.
    for _ in 0..200 {
        if let Ok(r) = get(addr, "any.test", "/").await
            && r.status() == 200
        {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        answer.expect("listening on the env address").backend(),
        "env",
        "controller default backend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_one_json_line_per_request_and_exports_metrics() {
    let be = Echo::start("m").await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("m", &[be.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("m", "m.test", &[("/", "Prefix", "m")]),
    );
    let p = Portcullis::start(m.path(), &["--log-format", "json"]).await;
    for _ in 0..3 {
        assert_eq!(
            get(p.http, "m.test", "/metrics-test")
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let metrics = get(p.admin, "admin", "/metrics").await.unwrap().text();
    for needle in [
        "portcullis_http_requests_total{ingress=\"default/m\",service=\"default/m\",status=\"2xx\"} 3",
        "portcullis_http_request_duration_seconds_count",
        "portcullis_open_connections",
        "portcullis_config_reloads_total{result=\"success\"}",
        "portcullis_config_last_reload_success_timestamp_seconds",
        "portcullis_certificate_not_after_timestamp_seconds{secret=\"(default)\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines: Vec<serde_json::Value> = p
        .log_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v: &serde_json::Value| v["target"] == "access" && v["path"] == "/metrics-test")
        .collect();
    assert_eq!(lines.len(), 3, "one access line per request");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["ingress"], "default/m");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_turns_readiness_off_then_drains_and_exits() {
    let be = Echo::start("slow").await;
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("slow", &[be.addr]));
    m.write(
        "ing.yaml",
        &ingress_yaml("slow", "slow.test", &[("/", "Prefix", "slow")]),
    );
    let mut p = Portcullis::start(m.path(), &["--shutdown-grace-period", "5s"]).await;
    assert_eq!(
        get(p.admin, "admin", "/healthz").await.unwrap().status(),
        200
    );
    assert_eq!(
        get(p.admin, "admin", "/readyz").await.unwrap().status(),
        200
    );
    // A request in flight when SIGTERM arrives still completes.
    let http = p.http;
    let inflight = tokio::spawn(async move { get(http, "slow.test", "/delay/700").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = inflight
        .await
        .unwrap()
        .expect("in-flight request completes during the drain");
    assert_eq!(r.status(), 200);
    let code = p
        .wait_exit(Duration::from_secs(10))
        .expect("exits after draining");
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_tls_alpn_handshakes_without_a_pending_challenge_fail() {
    use std::sync::Arc;
    let m = Manifests::new();
    let p = Portcullis::start(m.path(), &[]).await;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Recorder::default()))
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(p.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("unknown.test").unwrap();
    let result = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await;
    assert!(
        result.is_err(),
        "no certificate is offered to acme-tls/1 without a challenge"
    );
}

/// The harness itself: a process that exits during start-up fails the wait at once, with its
/// log, instead of after the full timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_process_that_exits_at_start_fails_the_wait_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = Portcullis::spawn(dir.path(), &["--idle-spin", "soon"]);
    let waited = tokio::spawn(async move { p.wait_ready().await }).await;
    let panic = waited.expect_err("wait_ready must fail for a process that exited");
    let msg = panic
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(msg.contains("exited before it was ready"), "{msg}");
    assert!(msg.contains("not a duration"), "the log is shown: {msg}");
}
