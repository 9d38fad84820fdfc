//! Table tests for `routes`: one test per rule of the Ingress semantics spec (sections 1–7) that
//! the pure compile step and the routing table decide. Objects are written as YAML.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Parses YAML text (several documents separated by `---` lines, any common indentation) into
/// a snapshot; each document's `kind` picks the type.
fn snapshot(texts: &[&str]) -> Snapshot {
    let mut s = Snapshot::default();
    for text in texts {
        let mut doc = String::new();
        for line in text.lines().chain(std::iter::once("---")) {
            if line.trim() != "---" {
                doc.push_str(line);
                doc.push('\n');
                continue;
            }
            let yaml = dedent(&doc);
            doc.clear();
            if yaml.trim().is_empty() {
                continue;
            }
            let value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            match value["kind"].as_str().unwrap_or_default() {
                "Ingress" => s.ingresses.push(parse(value, &yaml)),
                "IngressClass" => s.ingress_classes.push(parse(value, &yaml)),
                "Service" => s.services.push(parse(value, &yaml)),
                "EndpointSlice" => s.endpoint_slices.push(parse(value, &yaml)),
                "Secret" => s.secrets.push(parse(value, &yaml)),
                other => panic!("unknown kind {other:?}\n{yaml}"),
            }
        }
    }
    s
}

fn parse<T: serde::de::DeserializeOwned>(value: serde_yaml_ng::Value, yaml: &str) -> T {
    serde_yaml_ng::from_value(value).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn compiled(texts: &[&str]) -> Compiled {
    compile(&snapshot(texts), &CompileOptions::default())
}

fn compiled_with(texts: &[&str], opts: &CompileOptions) -> Compiled {
    compile(&snapshot(texts), opts)
}

/// An Ingress `id` (`ns/name`, or `name` in `default`) of class `portcullis` with one rule for
/// `host` (`""`: no host) and paths written `"Type /path service"` (Service port 80).
fn ing(id: &str, host: &str, paths: &[&str]) -> String {
    ing_at(id, None, host, paths)
}

/// As `ing`, with a `creationTimestamp`.
fn ing_at(id: &str, created: Option<&str>, host: &str, paths: &[&str]) -> String {
    let (ns, name) = id.split_once('/').unwrap_or(("default", id));
    let created = created
        .map(|t| format!(", creationTimestamp: \"{t}\""))
        .unwrap_or_default();
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("host: \"{host}\"\n    ")
    };
    let mut y = format!(
        "kind: Ingress\nmetadata: {{namespace: {ns}, name: {name}{created}}}\nspec:\n  \
         ingressClassName: portcullis\n  rules:\n  - {host}http:\n      paths:\n"
    );
    for p in paths {
        let mut it = p.split_whitespace();
        let (ty, path, svc) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        y.push_str(&format!(
            "      - {{pathType: {ty}, path: \"{path}\", backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
        ));
    }
    y
}

/// A Service `id` with one unnamed port 80 → 8080 and one EndpointSlice of ready `ips`.
fn svc(id: &str, ips: &[&str]) -> String {
    let (ns, name) = id.split_once('/').unwrap_or(("default", id));
    let mut y = format!(
        "kind: Service\nmetadata: {{namespace: {ns}, name: {name}}}\nspec:\n  ports: [{{port: 80, targetPort: 8080}}]\n\
         ---\nkind: EndpointSlice\nmetadata: {{namespace: {ns}, name: {name}-a, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{port: 8080}}]\nendpoints:\n"
    );
    for ip in ips {
        y.push_str(&format!(
            "- {{addresses: [\"{ip}\"], conditions: {{ready: true}}}}\n"
        ));
    }
    if ips.is_empty() {
        y.push_str("  []\n");
    }
    y
}

/// What `to` and `ingress_for` return for the built-in 404.
const NOT_FOUND: &str = "404";

/// Looks a request up as the proxy does: `host` (`""`: no Host header) normalised first.
fn lookup<'a>(c: &'a Compiled, host: &str, path: &str) -> Lookup<'a> {
    let host = (!host.is_empty()).then(|| normalize_request_host(host).expect("valid host"));
    c.table.lookup(host.as_deref(), path)
}

/// Where a request goes: the backend's Service (`ns/name`), or `NOT_FOUND`.
fn to(c: &Compiled, host: &str, path: &str) -> String {
    lookup(c, host, path)
        .route
        .map_or(NOT_FOUND.into(), |r| r.backend.service().to_owned())
}

/// The Ingress (`ns/name`) whose route answers, `""` for the controller default backend.
fn ingress_for(c: &Compiled, host: &str, path: &str) -> String {
    lookup(c, host, path)
        .route
        .map_or(NOT_FOUND.into(), |r| r.ingress.to_string())
}

/// Which host's rules a request was matched against.
fn host_match(c: &Compiled, host: &str) -> HostMatch {
    lookup(c, host, "/").host
}

/// The ready endpoint addresses of the backend answering a request.
fn addrs_for(c: &Compiled, host: &str, path: &str) -> Vec<SocketAddr> {
    let route = c.table.lookup(Some(host), path).route.expect("a route");
    match &*route.backend {
        Backend::Endpoints { addrs, .. } => addrs.to_vec(),
        other => panic!("expected endpoints, got {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Problems as `(object, field, reason)`, in the compiler's (sorted) order.
fn problems(c: &Compiled) -> Vec<(String, String, Reason)> {
    c.problems
        .iter()
        .map(|p| (p.object.to_string(), p.field.clone(), p.reason))
        .collect()
}

fn problem(object: &str, field: &str, reason: Reason) -> (String, String, Reason) {
    (object.to_owned(), field.to_owned(), reason)
}

/// Problems with the given reason only.
fn problems_of(c: &Compiled, reason: Reason) -> Vec<(String, String, Reason)> {
    problems(c).into_iter().filter(|p| p.2 == reason).collect()
}

const NO_PROBLEMS: [(String, String, Reason); 0] = [];

fn ours(c: &Compiled) -> Vec<String> {
    c.ours
        .iter()
        .map(|o| format!("{}/{}", o.namespace, o.name))
        .collect()
}

const OUR_CONTROLLER: &str = "portcullis.dev/ingress-controller";
const IS_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

fn ingress_class(name: &str, controller: &str, is_default: Option<&str>) -> String {
    let annotations = is_default
        .map(|v| format!(", annotations: {{{IS_DEFAULT_CLASS}: \"{v}\"}}"))
        .unwrap_or_default();
    format!(
        "kind: IngressClass\nmetadata: {{name: {name}{annotations}}}\nspec: {{controller: {controller}}}\n"
    )
}

/// An Ingress with the given class annotation and/or `ingressClassName` (`None`: not set).
fn classed(name: &str, annotation: Option<&str>, class_name: Option<&str>) -> String {
    let annotations = annotation
        .map(|a| format!(", annotations: {{{CLASS_ANNOTATION}: \"{a}\"}}"))
        .unwrap_or_default();
    let class = class_name
        .map(|c| format!("\n  ingressClassName: \"{c}\""))
        .unwrap_or_default();
    format!(
        "kind: Ingress\nmetadata: {{namespace: default, name: {name}{annotations}}}\nspec:{class}\n  \
         defaultBackend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
    )
}

fn cluster() -> CompileOptions {
    CompileOptions {
        standalone: false,
        ..CompileOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Which Ingresses are ours
// ---------------------------------------------------------------------------------------------

#[test]
fn class_annotation_selects_iff_it_equals_ingress_class() {
    let c = compiled(&[
        &classed("mine", Some("portcullis"), None),
        &classed("nginx", Some("nginx"), None),
    ]);
    assert_eq!(ours(&c), ["default/mine"]);
}

#[test]
fn class_annotation_wins_over_ingress_class_name() {
    let c = compiled_with(
        &[
            &ingress_class("portcullis", OUR_CONTROLLER, None),
            &ingress_class("nginx", "k8s.io/ingress-nginx", None),
            &classed("annotated-ours", Some("portcullis"), Some("nginx")),
            &classed("annotated-theirs", Some("nginx"), Some("portcullis")),
        ],
        &cluster(),
    );
    assert_eq!(ours(&c), ["default/annotated-ours"]);
}

#[test]
fn ingress_class_name_of_our_controller_is_ours_whatever_its_name() {
    let c = compiled_with(
        &[
            &ingress_class("edge", OUR_CONTROLLER, None),
            &classed("a", None, Some("edge")),
        ],
        &cluster(),
    );
    assert_eq!(ours(&c), ["default/a"]);
}

#[test]
fn ingress_class_name_of_another_controller_is_not_ours() {
    // Even when the class carries our --ingress-class name, the controller decides.
    let other = ingress_class("portcullis", "k8s.io/ingress-nginx", None);
    for opts in [CompileOptions::default(), cluster()] {
        let c = compiled_with(&[&other, &classed("a", None, Some("portcullis"))], &opts);
        assert_eq!(
            ours(&c),
            Vec::<String>::new(),
            "standalone={}",
            opts.standalone
        );
    }
}

#[test]
fn controller_name_flag_decides_which_classes_are_ours() {
    let opts = CompileOptions {
        controller_name: "example.com/edge".into(),
        ..cluster()
    };
    let c = compiled_with(
        &[
            &ingress_class("edge", "example.com/edge", None),
            &ingress_class("portcullis", OUR_CONTROLLER, None),
            &classed("on-edge", None, Some("edge")),
            &classed("on-portcullis", None, Some("portcullis")),
        ],
        &opts,
    );
    assert_eq!(ours(&c), ["default/on-edge"]);
}

#[test]
fn missing_ingress_class_named_like_ours_counts_as_ours_in_standalone_mode() {
    let objects: [&str; 2] = [
        &classed("named-ours", None, Some("portcullis")),
        &classed("named-other", None, Some("other")),
    ];
    assert_eq!(
        ours(&compiled_with(&objects, &CompileOptions::default())),
        ["default/named-ours"]
    );
}

#[test]
fn missing_ingress_class_is_not_ours_in_cluster_mode() {
    let objects: [&str; 2] = [
        &classed("named-ours", None, Some("portcullis")),
        &classed("named-other", None, Some("other")),
    ];
    assert_eq!(
        ours(&compiled_with(&objects, &cluster())),
        Vec::<String>::new()
    );
}

#[test]
fn ingress_without_class_is_not_ours_by_default() {
    let c = compiled_with(
        &[
            &ingress_class("portcullis", OUR_CONTROLLER, None),
            &classed("a", None, None),
        ],
        &cluster(),
    );
    assert_eq!(ours(&c), Vec::<String>::new());
    assert_eq!(
        ours(&compiled(&[&classed("a", None, None)])),
        Vec::<String>::new()
    );
}

#[test]
fn ingress_without_class_is_ours_with_watch_without_class() {
    let opts = CompileOptions {
        watch_without_class: true,
        ..cluster()
    };
    let c = compiled_with(
        &[
            &classed("a", None, None),
            &classed("b", Some("nginx"), None),
        ],
        &opts,
    );
    assert_eq!(
        ours(&c),
        ["default/a"],
        "an annotation of another class still says no"
    );
}

#[test]
fn ingress_without_class_is_ours_when_our_ingress_class_is_the_default() {
    let c = compiled_with(
        &[
            &ingress_class("portcullis", OUR_CONTROLLER, Some("true")),
            &classed("a", None, None),
        ],
        &cluster(),
    );
    assert_eq!(ours(&c), ["default/a"]);
}

#[test]
fn default_class_annotation_must_be_true() {
    let c = compiled_with(
        &[
            &ingress_class("portcullis", OUR_CONTROLLER, Some("false")),
            &classed("a", None, None),
        ],
        &cluster(),
    );
    assert_eq!(ours(&c), Vec::<String>::new());
}

#[test]
fn default_class_of_another_controller_does_not_make_classless_ingresses_ours() {
    let c = compiled_with(
        &[
            &ingress_class("nginx", "k8s.io/ingress-nginx", Some("true")),
            &classed("a", None, None),
        ],
        &cluster(),
    );
    assert_eq!(ours(&c), Vec::<String>::new());
}

#[test]
fn ingress_not_ours_is_neither_routed_nor_reported() {
    let theirs = r#"
        kind: Ingress
        metadata: {namespace: default, name: theirs, annotations: {kubernetes.io/ingress.class: nginx}}
        spec:
          rules:
          - host: theirs.test
            http:
              paths: [{pathType: Prefix, path: /, backend: {service: {name: missing, port: {number: 80}}}}]
    "#;
    let c = compiled(&[theirs]);
    assert_eq!(to(&c, "theirs.test", "/"), NOT_FOUND);
    assert_eq!(problems(&c), NO_PROBLEMS);
    assert_eq!(c.table.host_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// 2. Hosts
// ---------------------------------------------------------------------------------------------

fn one_host(host: &str) -> Compiled {
    compiled(&[&ing("a", host, &["Prefix / web"])])
}

#[test]
fn exact_host_matches_itself() {
    let c = one_host("foo.bar.com");
    assert_eq!(to(&c, "foo.bar.com", "/"), "default/web");
    assert_eq!(host_match(&c, "foo.bar.com"), HostMatch::Exact);
}

#[test]
fn host_match_is_case_insensitive() {
    let c = one_host("foo.bar.com");
    assert_eq!(to(&c, "FOO.Bar.com", "/"), "default/web");
    assert_eq!(
        normalize_request_host("FOO.Bar.com"),
        Ok("foo.bar.com".into())
    );
}

#[test]
fn host_port_is_ignored() {
    let c = one_host("foo.bar.com");
    assert_eq!(to(&c, "foo.bar.com:8080", "/"), "default/web");
    assert_eq!(
        normalize_request_host("foo.bar.com:8080"),
        Ok("foo.bar.com".into())
    );
}

#[test]
fn one_trailing_dot_is_removed() {
    let c = one_host("foo.bar.com");
    assert_eq!(to(&c, "foo.bar.com.", "/"), "default/web");
    assert_eq!(to(&c, "foo.bar.com.:443", "/"), "default/web");
    assert_eq!(
        normalize_request_host("foo.bar.com."),
        Ok("foo.bar.com".into())
    );
    assert_eq!(
        normalize_request_host("foo.bar.com.."),
        Ok("foo.bar.com.".into()),
        "only one dot"
    );
}

#[test]
fn rule_host_is_compared_case_insensitively_and_without_trailing_dot() {
    assert_eq!(
        HostPattern::parse("Foo.Bar.com."),
        Ok(HostPattern::Exact("foo.bar.com".into()))
    );
    assert_eq!(
        HostPattern::parse("*.Foo.com"),
        Ok(HostPattern::Wildcard("foo.com".into()))
    );
}

#[test]
fn wildcard_matches_one_label() {
    let c = one_host("*.foo.com");
    assert_eq!(to(&c, "bar.foo.com", "/"), "default/web");
    assert_eq!(host_match(&c, "bar.foo.com"), HostMatch::Wildcard);
}

#[test]
fn wildcard_covers_exactly_one_label() {
    let c = one_host("*.foo.com");
    assert_eq!(to(&c, "baz.bar.foo.com", "/"), NOT_FOUND);
    assert_eq!(host_match(&c, "baz.bar.foo.com"), HostMatch::None);
}

#[test]
fn wildcard_does_not_match_its_parent_domain() {
    let c = one_host("*.foo.com");
    assert_eq!(to(&c, "foo.com", "/"), NOT_FOUND);
}

#[test]
fn host_less_rules_match_any_host_and_no_host_header() {
    let c = one_host("");
    for host in ["foo.bar.com", "anything.example:81", ""] {
        assert_eq!(to(&c, host, "/"), "default/web", "{host:?}");
        assert_eq!(host_match(&c, host), HostMatch::Any, "{host:?}");
    }
}

#[test]
fn host_rule_does_not_match_a_request_without_host() {
    let c = one_host("foo.bar.com");
    assert_eq!(to(&c, "", "/"), NOT_FOUND);
    assert_eq!(host_match(&c, ""), HostMatch::None);
}

#[test]
fn exact_host_beats_wildcard_beats_host_less() {
    let c = compiled(&[
        &ing("exact", "a.foo.com", &["Prefix / exact"]),
        &ing("wild", "*.foo.com", &["Prefix / wild"]),
        &ing("any", "", &["Prefix / any"]),
    ]);
    assert_eq!(to(&c, "a.foo.com", "/x"), "default/exact");
    assert_eq!(to(&c, "b.foo.com", "/x"), "default/wild");
    assert_eq!(to(&c, "b.bar.com", "/x"), "default/any");
    assert_eq!(to(&c, "", "/x"), "default/any");
}

#[test]
fn exact_host_without_matching_path_does_not_fall_through() {
    let c = compiled(&[
        &ing("exact", "a.foo.com", &["Prefix /only exact"]),
        &ing("wild", "*.foo.com", &["Prefix / wild"]),
        &ing("any", "", &["Prefix / any"]),
    ]);
    assert_eq!(to(&c, "a.foo.com", "/only/x"), "default/exact");
    assert_eq!(to(&c, "a.foo.com", "/other"), NOT_FOUND);
    assert_eq!(host_match(&c, "a.foo.com"), HostMatch::Exact);
}

#[test]
fn wildcard_host_without_matching_path_does_not_fall_through() {
    let c = compiled(&[
        &ing("wild", "*.foo.com", &["Exact /only wild"]),
        &ing("any", "", &["Prefix / any"]),
    ]);
    assert_eq!(to(&c, "b.foo.com", "/only"), "default/wild");
    assert_eq!(to(&c, "b.foo.com", "/other"), NOT_FOUND);
}

#[test]
fn rules_for_one_host_are_merged_across_ingresses() {
    let c = compiled(&[
        &ing("team/api", "shop.test", &["Prefix /api api"]),
        &ing("web/site", "SHOP.test", &["Prefix / site"]),
    ]);
    assert_eq!(to(&c, "shop.test", "/api/cart"), "team/api");
    assert_eq!(to(&c, "shop.test", "/about"), "web/site");
    assert_eq!(ingress_for(&c, "shop.test", "/about"), "web/site");
    assert_eq!(c.table.host_count(), 1);
}

#[test]
fn rules_for_one_host_are_merged_within_an_ingress() {
    let c = compiled(&[r#"
        kind: Ingress
        metadata: {namespace: default, name: a}
        spec:
          ingressClassName: portcullis
          rules:
          - host: shop.test
            http: {paths: [{pathType: Prefix, path: /api, backend: {service: {name: api, port: {number: 80}}}}]}
          - host: shop.test
            http: {paths: [{pathType: Prefix, path: /, backend: {service: {name: site, port: {number: 80}}}}]}
    "#]);
    assert_eq!(to(&c, "shop.test", "/api"), "default/api");
    assert_eq!(to(&c, "shop.test", "/"), "default/site");
    assert_eq!(problems_of(&c, Reason::PathConflict), NO_PROBLEMS);
}

#[test]
fn invalid_rule_host_is_a_problem_and_is_skipped() {
    let c = compiled(&[r#"
        kind: Ingress
        metadata: {namespace: default, name: a}
        spec:
          ingressClassName: portcullis
          rules:
          - host: foo.*.com
            http: {paths: [{pathType: Prefix, path: /, backend: {service: {name: web, port: {number: 80}}}}]}
          - host: under_score.test
            http: {paths: [{pathType: Prefix, path: /, backend: {service: {name: web, port: {number: 80}}}}]}
          - host: ok.test
            http: {paths: [{pathType: Prefix, path: /, backend: {service: {name: web, port: {number: 80}}}}]}
    "#]);
    assert_eq!(
        problems_of(&c, Reason::InvalidHost),
        [
            problem(
                "Ingress default/a",
                "spec.rules[0].host",
                Reason::InvalidHost
            ),
            problem(
                "Ingress default/a",
                "spec.rules[1].host",
                Reason::InvalidHost
            ),
        ]
    );
    assert_eq!(to(&c, "ok.test", "/"), "default/web");
}

#[test]
fn unusable_request_host_is_refused() {
    for raw in ["", "foo bar", "foo.com:http", "a:b:c", "foo/bar", "[::1"] {
        assert_eq!(normalize_request_host(raw), Err(BadHost), "{raw:?}");
    }
    assert_eq!(normalize_request_host("[::1]:8443"), Ok("::1".into()));
}

// ---------------------------------------------------------------------------------------------
// 3. Paths
// ---------------------------------------------------------------------------------------------

/// Compiles one host with the given `(type, path)` rules and says which one answers `request`.
fn path_match(
    rules: &[(&'static str, &'static str)],
    request: &str,
) -> Option<(&'static str, &'static str)> {
    let paths: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, (ty, p))| format!("{ty} {p} p{i}"))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let c = compiled(&[&ing("paths", "paths.test", &paths)]);
    assert_eq!(
        problems_of(&c, Reason::PathConflict),
        NO_PROBLEMS,
        "rules {rules:?}"
    );
    let svc = to(&c, "paths.test", request);
    let i: usize = svc.strip_prefix("default/p")?.parse().unwrap();
    Some(rules[i])
}

/// One test per row of the upstream examples table (section 3), named after the row's rule.
mod upstream_paths_table {
    use super::path_match;

    macro_rules! rows {
        ($($name:ident: [$(($ty:literal, $path:literal)),+] [$($req:literal),+] => $want:expr;)+) => {$(
            #[test]
            fn $name() {
                for request in [$($req),+] {
                    assert_eq!(path_match(&[$(($ty, $path)),+], request), $want, "request {request}");
                }
            }
        )+};
    }

    rows! {
        prefix_root_matches_any_path:
            [("Prefix", "/")] ["/", "/foo", "/foo/bar/", "/a.b"] => Some(("Prefix", "/"));
        exact_matches_the_same_path:
            [("Exact", "/foo")] ["/foo"] => Some(("Exact", "/foo"));
        exact_does_not_match_another_path:
            [("Exact", "/foo")] ["/bar"] => None;
        exact_does_not_match_an_added_trailing_slash:
            [("Exact", "/foo")] ["/foo/"] => None;
        exact_does_not_match_a_missing_trailing_slash:
            [("Exact", "/foo/")] ["/foo"] => None;
        prefix_matches_with_and_without_trailing_slash:
            [("Prefix", "/foo")] ["/foo", "/foo/"] => Some(("Prefix", "/foo"));
        prefix_with_trailing_slash_matches_with_and_without_it:
            [("Prefix", "/foo/")] ["/foo", "/foo/"] => Some(("Prefix", "/foo/"));
        prefix_is_element_wise_not_a_string_prefix_of_the_last_element:
            [("Prefix", "/aaa/bb")] ["/aaa/bbb"] => None;
        prefix_matches_the_same_path:
            [("Prefix", "/aaa/bbb")] ["/aaa/bbb"] => Some(("Prefix", "/aaa/bbb"));
        prefix_ignores_the_trailing_slash_of_the_rule:
            [("Prefix", "/aaa/bbb/")] ["/aaa/bbb"] => Some(("Prefix", "/aaa/bbb/"));
        prefix_ignores_the_trailing_slash_of_the_request:
            [("Prefix", "/aaa/bbb")] ["/aaa/bbb/"] => Some(("Prefix", "/aaa/bbb"));
        prefix_matches_sub_paths:
            [("Prefix", "/aaa/bbb")] ["/aaa/bbb/ccc"] => Some(("Prefix", "/aaa/bbb"));
        prefix_does_not_match_a_longer_last_element:
            [("Prefix", "/aaa/bbb")] ["/aaa/bbbxyz"] => None;
        longer_prefix_beats_root:
            [("Prefix", "/"), ("Prefix", "/aaa")] ["/aaa/ccc"] => Some(("Prefix", "/aaa"));
        longest_of_three_prefixes_wins:
            [("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")] ["/aaa/bbb"]
            => Some(("Prefix", "/aaa/bbb"));
        root_prefix_answers_what_no_longer_prefix_matches:
            [("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")] ["/ccc"] => Some(("Prefix", "/"));
        unmatched_prefix_leaves_the_request_to_the_default_backend:
            [("Prefix", "/aaa")] ["/ccc"] => None;
        exact_beats_prefix_for_the_same_path:
            [("Prefix", "/foo"), ("Exact", "/foo")] ["/foo"] => Some(("Exact", "/foo"));
    }
}

#[test]
fn unmatched_path_is_answered_by_the_ingress_default_backend() {
    // The "(default backend)" of the last-but-one upstream row.
    let c = compiled(&[r#"
        kind: Ingress
        metadata: {namespace: default, name: a}
        spec:
          ingressClassName: portcullis
          defaultBackend: {service: {name: fallback, port: {number: 80}}}
          rules:
          - host: paths.test
            http: {paths: [{pathType: Prefix, path: /aaa, backend: {service: {name: aaa, port: {number: 80}}}}]}
    "#]);
    assert_eq!(to(&c, "paths.test", "/ccc"), "default/fallback");
}

#[test]
fn exact_beats_prefix_whatever_the_declaration_order() {
    assert_eq!(
        path_match(&[("Exact", "/foo"), ("Prefix", "/foo")], "/foo"),
        Some(("Exact", "/foo"))
    );
    assert_eq!(
        path_match(&[("Exact", "/foo"), ("Prefix", "/foo")], "/foo/x"),
        Some(("Prefix", "/foo"))
    );
}

#[test]
fn path_matching_is_case_sensitive() {
    assert_eq!(path_match(&[("Exact", "/Foo")], "/foo"), None);
    assert_eq!(path_match(&[("Prefix", "/foo")], "/FOO/bar"), None);
    assert_eq!(
        path_match(&[("Prefix", "/foo")], "/foo/BAR"),
        Some(("Prefix", "/foo"))
    );
}

#[test]
fn query_string_takes_no_part_in_matching() {
    // The proxy routes on the URI's path only.
    let uri: http::Uri = "/foo?x=/bar&y=1".parse().unwrap();
    assert_eq!(
        path_match(&[("Exact", "/foo"), ("Prefix", "/foo/x")], uri.path()),
        Some(("Exact", "/foo"))
    );
    let uri: http::Uri = "http://paths.test/aaa/bbb?next=/ccc".parse().unwrap();
    assert_eq!(
        path_match(&[("Prefix", "/aaa/bbb")], uri.path()),
        Some(("Prefix", "/aaa/bbb"))
    );
}

#[test]
fn implementation_specific_behaves_as_prefix() {
    let rules = [("ImplementationSpecific", "/foo/")];
    for request in ["/foo", "/foo/", "/foo/bar"] {
        assert_eq!(path_match(&rules, request), Some(rules[0]), "{request}");
    }
    assert_eq!(path_match(&rules, "/foobar"), None);
    assert_eq!(
        path_match(
            &[
                ("ImplementationSpecific", "/"),
                ("ImplementationSpecific", "/aaa")
            ],
            "/aaa/ccc"
        ),
        Some(("ImplementationSpecific", "/aaa"))
    );
    assert_eq!(
        path_match(
            &[("ImplementationSpecific", "/foo"), ("Exact", "/foo")],
            "/foo"
        ),
        Some(("Exact", "/foo"))
    );
}

#[test]
fn path_is_matched_as_received_without_percent_decoding() {
    assert_eq!(
        path_match(&[("Exact", "/a%20b")], "/a%20b"),
        Some(("Exact", "/a%20b"))
    );
    assert_eq!(path_match(&[("Exact", "/é")], "/%C3%A9"), None);
    // An encoded slash is not a segment boundary.
    assert_eq!(path_match(&[("Prefix", "/a")], "/a%2Fb"), None);
    assert_eq!(
        path_match(&[("Prefix", "/a")], "/a/b%2Fc"),
        Some(("Prefix", "/a"))
    );
}

#[test]
fn plain_dot_segments_are_refused() {
    for p in [
        "/..",
        "/.",
        "/a/..",
        "/a/.",
        "/a/../b",
        "/a/./b",
        "/../a",
        "/./a",
        "/a//../b",
        "/a\\..\\b",
    ] {
        assert!(has_dot_segment(p), "{p}");
    }
}

#[test]
fn percent_encoded_dot_segments_are_refused() {
    for p in [
        "/a/%2e%2e/b",
        "/a/%2E%2E/b",
        "/a/%2e/b",
        "/a/%2E",
        "/a/.%2e/b",
        "/a/%2E./b",
        "/a%2f..%2fb",
        "/a%2F..%2Fb",
        "/a%2f%2e%2e%2fb",
        "/a%2F%2E%2E",
        "/a%5c..%5cb",
        "/%2e%2e",
    ] {
        assert!(has_dot_segment(p), "{p}");
    }
}

#[test]
fn dots_inside_segments_are_not_dot_segments() {
    for p in [
        "/",
        "/a.b/c..d",
        "/.well-known/acme-challenge/token",
        "/...",
        "/a/.b/",
        "/a/b./",
        "/a/..b",
        "/file.tar.gz",
        "/%2e%2e%2e",
        "/a%2eb",
        "/%252e%252e/",
        "/%",
        "/a%2",
        "/100%/done",
    ] {
        assert!(!has_dot_segment(p), "{p}");
    }
}

#[test]
fn path_type_other_than_the_three_is_a_problem() {
    let c = compiled(&[&ing(
        "a",
        "paths.test",
        &["Regex /foo web", "Prefix /bar web"],
    )]);
    assert_eq!(
        problems_of(&c, Reason::InvalidPath),
        [problem(
            "Ingress default/a",
            "spec.rules[0].http.paths[0].pathType",
            Reason::InvalidPath
        )]
    );
    assert_eq!(to(&c, "paths.test", "/foo"), NOT_FOUND);
    assert_eq!(to(&c, "paths.test", "/bar"), "default/web");
}

#[test]
fn relative_path_is_a_problem() {
    let c = compiled(&[&ing(
        "a",
        "paths.test",
        &["Prefix /ok web", "Prefix foo web"],
    )]);
    assert_eq!(
        problems_of(&c, Reason::InvalidPath),
        [problem(
            "Ingress default/a",
            "spec.rules[0].http.paths[1].path",
            Reason::InvalidPath
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Precedence
// ---------------------------------------------------------------------------------------------

#[test]
fn longest_matching_path_wins_across_types() {
    let rules = [
        ("Exact", "/a"),
        ("Prefix", "/a/b/c"),
        ("Exact", "/a/b"),
        ("Prefix", "/a/b/"),
    ];
    assert_eq!(path_match(&rules, "/a/b/c/d"), Some(("Prefix", "/a/b/c")));
    assert_eq!(path_match(&rules, "/a/b/x"), Some(("Prefix", "/a/b/")));
    assert_eq!(path_match(&rules, "/a"), Some(("Exact", "/a")));
}

#[test]
fn exact_beats_prefix_on_equal_length_after_the_trailing_slash_is_removed() {
    // Prefix `/a/b/` has length 4 like Exact `/a/b`.
    assert_eq!(
        path_match(&[("Prefix", "/a/b/"), ("Exact", "/a/b")], "/a/b"),
        Some(("Exact", "/a/b"))
    );
}

#[test]
fn path_conflict_oldest_creation_timestamp_wins() {
    let older = ing_at(
        "zz/b",
        Some("2020-01-01T00:00:00Z"),
        "shop.test",
        &["Prefix /api old"],
    );
    let newer = ing_at(
        "aa/a",
        Some("2021-01-01T00:00:00Z"),
        "shop.test",
        &["Prefix /api new"],
    );
    for c in [compiled(&[&older, &newer]), compiled(&[&newer, &older])] {
        assert_eq!(to(&c, "shop.test", "/api"), "zz/old");
        assert_eq!(
            problems_of(&c, Reason::PathConflict),
            [problem(
                "Ingress aa/a",
                "spec.rules[0].http.paths[0].path",
                Reason::PathConflict
            )]
        );
        let p = c
            .problems
            .iter()
            .find(|p| p.reason == Reason::PathConflict)
            .unwrap();
        assert!(
            p.message.contains("zz/b"),
            "the loser's problem names the winner: {}",
            p.message
        );
    }
}

#[test]
fn path_conflict_on_equal_age_namespace_then_name_wins() {
    let t = Some("2020-01-01T00:00:00Z");
    let cases = [
        (("a/z", "b/a"), "Ingress b/a"), // namespace first
        (("n/a", "n/b"), "Ingress n/b"), // then name
    ];
    for ((winner, loser), loser_ref) in cases {
        let w = ing_at(winner, t, "shop.test", &["Exact /x winner"]);
        let l = ing_at(loser, t, "shop.test", &["Exact /x loser"]);
        for c in [compiled(&[&w, &l]), compiled(&[&l, &w])] {
            let ns = winner.split('/').next().unwrap();
            assert_eq!(to(&c, "shop.test", "/x"), format!("{ns}/winner"));
            assert_eq!(
                problems_of(&c, Reason::PathConflict),
                [problem(
                    loser_ref,
                    "spec.rules[0].http.paths[0].path",
                    Reason::PathConflict
                )]
            );
            let p = c
                .problems
                .iter()
                .find(|p| p.reason == Reason::PathConflict)
                .unwrap();
            assert!(
                p.message.contains(winner),
                "names the winner: {}",
                p.message
            );
        }
    }
}

#[test]
fn path_conflict_needs_the_same_host_path_and_type() {
    let c = compiled(&[
        &ing_at(
            "a",
            Some("2020-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix /x a"],
        ),
        &ing_at(
            "b",
            Some("2021-01-01T00:00:00Z"),
            "shop.test",
            &["Exact /x b", "Prefix /y b"],
        ),
        &ing_at(
            "c",
            Some("2022-01-01T00:00:00Z"),
            "other.test",
            &["Prefix /x c"],
        ),
        &ing_at(
            "d",
            Some("2023-01-01T00:00:00Z"),
            "*.shop.test",
            &["Prefix /x d"],
        ),
    ]);
    assert_eq!(problems_of(&c, Reason::PathConflict), NO_PROBLEMS);
    assert_eq!(to(&c, "shop.test", "/x"), "default/b");
    assert_eq!(to(&c, "shop.test", "/x/1"), "default/a");
    assert_eq!(to(&c, "other.test", "/x"), "default/c");
    assert_eq!(to(&c, "www.shop.test", "/x"), "default/d");
}

#[test]
fn path_conflict_loser_keeps_its_other_paths() {
    let c = compiled(&[
        &ing_at(
            "a",
            Some("2020-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix /x a"],
        ),
        &ing_at(
            "b",
            Some("2021-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix /x b", "Prefix /y b"],
        ),
    ]);
    assert_eq!(to(&c, "shop.test", "/x"), "default/a");
    assert_eq!(to(&c, "shop.test", "/y"), "default/b");
    assert_eq!(ours(&c), ["default/a", "default/b"]);
}

#[test]
fn prefix_paths_differing_only_in_trailing_slash_are_the_same_claim() {
    // They match exactly the same requests, so the younger one is a conflict, not a silent override.
    let c = compiled(&[
        &ing_at(
            "a",
            Some("2020-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix /x/ a"],
        ),
        &ing_at(
            "b",
            Some("2021-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix /x b"],
        ),
    ]);
    assert_eq!(to(&c, "shop.test", "/x"), "default/a");
    assert_eq!(
        problems_of(&c, Reason::PathConflict),
        [problem(
            "Ingress default/b",
            "spec.rules[0].http.paths[0].path",
            Reason::PathConflict
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Default backends
// ---------------------------------------------------------------------------------------------

/// An Ingress with a `spec.defaultBackend` to `default_svc` and, when `host` is given, one rule
/// `Prefix /app → app`.
fn with_default(name: &str, created: &str, host: Option<&str>, default_svc: &str) -> String {
    let rules = host
        .map(|h| {
            format!(
                "\n  rules:\n  - host: {h}\n    http: {{paths: [{{pathType: Prefix, path: /app, \
                 backend: {{service: {{name: app, port: {{number: 80}}}}}}}}]}}"
            )
        })
        .unwrap_or_default();
    format!(
        "kind: Ingress\nmetadata: {{namespace: default, name: {name}, creationTimestamp: \"{created}\"}}\nspec:\n  \
         ingressClassName: portcullis\n  defaultBackend: {{service: {{name: {default_svc}, port: {{number: 80}}}}}}{rules}\n"
    )
}

fn controller_default() -> CompileOptions {
    CompileOptions {
        default_backend: Some(ServiceRef {
            namespace: "system".into(),
            name: "fallback".into(),
            port: PortRef::Number(80),
        }),
        ..CompileOptions::default()
    }
}

#[test]
fn matching_path_answers_before_any_default_backend() {
    let c = compiled_with(
        &[
            &with_default(
                "owner",
                "2020-01-01T00:00:00Z",
                Some("shop.test"),
                "owner-default",
            ),
            &with_default("catch-all", "2019-01-01T00:00:00Z", None, "catch-all"),
        ],
        &controller_default(),
    );
    assert_eq!(to(&c, "shop.test", "/app/x"), "default/app");
}

#[test]
fn host_matched_without_path_uses_the_owning_ingress_default_backend() {
    let c = compiled_with(
        &[
            &with_default(
                "owner",
                "2020-01-01T00:00:00Z",
                Some("shop.test"),
                "owner-default",
            ),
            &with_default("catch-all", "2019-01-01T00:00:00Z", None, "catch-all"),
        ],
        &controller_default(),
    );
    assert_eq!(to(&c, "shop.test", "/other"), "default/owner-default");
    assert_eq!(ingress_for(&c, "shop.test", "/other"), "default/owner");
}

#[test]
fn host_default_backend_is_the_oldest_owning_ingress_that_has_one() {
    let c = compiled(&[
        &ing_at(
            "oldest-without",
            Some("2019-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix /a a"],
        ),
        &with_default(
            "young",
            "2022-01-01T00:00:00Z",
            Some("shop.test"),
            "young-default",
        ),
        &with_default(
            "old",
            "2020-01-01T00:00:00Z",
            Some("shop.test"),
            "old-default",
        ),
        &with_default(
            "elsewhere",
            "2018-01-01T00:00:00Z",
            Some("other.test"),
            "elsewhere-default",
        ),
    ]);
    assert_eq!(to(&c, "shop.test", "/zzz"), "default/old-default");
}

#[test]
fn unmatched_host_uses_the_catch_all_ingress() {
    let c = compiled_with(
        &[
            &with_default(
                "owner",
                "2020-01-01T00:00:00Z",
                Some("shop.test"),
                "owner-default",
            ),
            &with_default("catch-all", "2021-01-01T00:00:00Z", None, "catch-all"),
        ],
        &controller_default(),
    );
    assert_eq!(to(&c, "unknown.test", "/app"), "default/catch-all");
    assert_eq!(to(&c, "", "/"), "default/catch-all");
    assert_eq!(host_match(&c, "unknown.test"), HostMatch::None);
}

#[test]
fn catch_all_is_the_oldest_rule_less_ingress_with_a_default_backend() {
    let c = compiled(&[
        &with_default("young", "2022-01-01T00:00:00Z", None, "young"),
        &with_default("old", "2020-01-01T00:00:00Z", None, "old"),
        &with_default(
            "oldest-with-rules",
            "2010-01-01T00:00:00Z",
            Some("shop.test"),
            "with-rules",
        ),
    ]);
    assert_eq!(to(&c, "unknown.test", "/"), "default/old");
}

#[test]
fn controller_default_backend_answers_when_there_is_no_catch_all() {
    let c = compiled_with(
        &[
            &svc("system/fallback", &["10.9.9.9"]),
            &ing("a", "shop.test", &["Prefix /app app"]),
        ],
        &controller_default(),
    );
    assert_eq!(to(&c, "unknown.test", "/"), "system/fallback");
    assert_eq!(ingress_for(&c, "unknown.test", "/"), "");
    assert_eq!(addrs_for(&c, "unknown.test", "/"), [addr("10.9.9.9:8080")]);
    assert_eq!(problems_of(&c, Reason::DefaultBackendInvalid), NO_PROBLEMS);
}

#[test]
fn controller_default_backend_answers_a_matched_host_without_path_or_ingress_default() {
    let c = compiled_with(
        &[
            &ing("a", "shop.test", &["Prefix /app app"]),
            &with_default("catch-all", "2021-01-01T00:00:00Z", None, "catch-all"),
        ],
        &controller_default(),
    );
    assert_eq!(to(&c, "shop.test", "/other"), "system/fallback");
}

#[test]
fn catch_all_is_not_used_when_a_host_matched() {
    // Step 3 applies only when no host rule matched at all.
    let c = compiled(&[
        &ing("a", "shop.test", &["Prefix /app app"]),
        &with_default("catch-all", "2021-01-01T00:00:00Z", None, "catch-all"),
    ]);
    assert_eq!(to(&c, "shop.test", "/other"), NOT_FOUND);
}

#[test]
fn built_in_404_when_nothing_answers() {
    let c = compiled(&[&ing("a", "shop.test", &["Prefix /app app"])]);
    assert_eq!(to(&c, "unknown.test", "/app"), NOT_FOUND);
    assert_eq!(to(&c, "shop.test", "/other"), NOT_FOUND);
    assert_eq!(to(&c, "", "/"), NOT_FOUND);
    assert!(
        compiled(&[])
            .table
            .lookup(Some("x.test"), "/")
            .route
            .is_none()
    );
}

#[test]
fn ingress_with_rules_never_captures_other_hosts_with_its_default_backend() {
    let tenant = with_default(
        "tenant",
        "2010-01-01T00:00:00Z",
        Some("tenant.test"),
        "tenant-default",
    );
    let c = compiled(&[&tenant]);
    assert_eq!(to(&c, "tenant.test", "/x"), "default/tenant-default");
    assert_eq!(to(&c, "other.test", "/x"), NOT_FOUND);
    assert_eq!(to(&c, "", "/x"), NOT_FOUND);
    let c = compiled(&[
        &tenant,
        &with_default("catch-all", "2021-01-01T00:00:00Z", None, "catch-all"),
    ]);
    assert_eq!(to(&c, "other.test", "/x"), "default/catch-all");
}

#[test]
fn unresolvable_controller_default_backend_is_a_problem() {
    let c = compiled_with(&[], &controller_default());
    assert_eq!(
        problems(&c),
        [problem(
            "Service system/fallback",
            "--default-backend",
            Reason::DefaultBackendInvalid
        )]
    );
    let route = c
        .table
        .lookup(Some("x.test"), "/")
        .route
        .expect("still answered, with 503");
    assert!(matches!(*route.backend, Backend::Unavailable { .. }));
}

// ---------------------------------------------------------------------------------------------
// 6. Backends and endpoints
// ---------------------------------------------------------------------------------------------

const TWO_PORTS: &str = r#"
    kind: Service
    metadata: {namespace: default, name: web}
    spec:
      ports:
      - {name: http, port: 80, targetPort: 8080}
      - {name: admin, port: 9000, targetPort: admin}
    ---
    kind: EndpointSlice
    metadata: {namespace: default, name: web-abc, labels: {kubernetes.io/service-name: web}}
    addressType: IPv4
    ports: [{name: admin, port: 9090}, {name: http, port: 8080}]
    endpoints:
    - addresses: [10.0.0.1]
      conditions: {ready: true}
"#;

/// An Ingress routing `backend.test/` to `web` with the given `service.port` YAML.
fn to_web_port(port: &str) -> String {
    format!(
        "kind: Ingress\nmetadata: {{namespace: default, name: a}}\nspec:\n  ingressClassName: portcullis\n  rules:\n  \
         - host: backend.test\n    http: {{paths: [{{pathType: Prefix, path: /, backend: {{service: {{name: web, port: {port}}}}}}}]}}\n"
    )
}

#[test]
fn service_port_number_selects_the_slice_port_of_the_same_name() {
    let c = compiled(&[TWO_PORTS, &to_web_port("{number: 80}")]);
    assert_eq!(addrs_for(&c, "backend.test", "/"), [addr("10.0.0.1:8080")]);
    let c = compiled(&[TWO_PORTS, &to_web_port("{number: 9000}")]);
    assert_eq!(addrs_for(&c, "backend.test", "/"), [addr("10.0.0.1:9090")]);
    assert_eq!(problems(&c), NO_PROBLEMS);
}

#[test]
fn service_port_name_selects_the_slice_port_of_the_same_name() {
    let c = compiled(&[TWO_PORTS, &to_web_port("{name: admin}")]);
    assert_eq!(addrs_for(&c, "backend.test", "/"), [addr("10.0.0.1:9090")]);
    let c = compiled(&[TWO_PORTS, &to_web_port("{name: http}")]);
    assert_eq!(addrs_for(&c, "backend.test", "/"), [addr("10.0.0.1:8080")]);
}

#[test]
fn unnamed_service_port_matches_only_an_unnamed_slice_port() {
    let service = r#"
        kind: Service
        metadata: {namespace: default, name: web}
        spec: {ports: [{port: 80, targetPort: 8080}]}
    "#;
    let slice = |name: &str, ports: &str, ip: &str| {
        format!(
            "kind: EndpointSlice\nmetadata: {{namespace: default, name: {name}, labels: {{kubernetes.io/service-name: web}}}}\n\
             addressType: IPv4\nports: {ports}\nendpoints: [{{addresses: [\"{ip}\"]}}]\n"
        )
    };
    let c = compiled(&[
        service,
        &to_web_port("{number: 80}"),
        &slice("web-unset", "[{port: 8080}]", "10.0.0.1"),
        &slice("web-empty", "[{name: \"\", port: 8081}]", "10.0.0.2"),
        &slice("web-named", "[{name: http, port: 8082}]", "10.0.0.3"),
    ]);
    assert_eq!(
        addrs_for(&c, "backend.test", "/"),
        [addr("10.0.0.1:8080"), addr("10.0.0.2:8081")]
    );
}

#[test]
fn endpoints_of_every_slice_of_the_service_are_used() {
    let c = compiled(&[
        &svc("web", &["10.0.0.2", "10.0.0.1"]),
        r#"
        kind: EndpointSlice
        metadata: {namespace: default, name: web-b, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        ports: [{port: 8080}]
        endpoints: [{addresses: [10.0.1.1]}]
        ---
        kind: EndpointSlice
        metadata: {namespace: default, name: other-a, labels: {kubernetes.io/service-name: other}}
        addressType: IPv4
        ports: [{port: 8080}]
        endpoints: [{addresses: [10.0.2.1]}]
        ---
        kind: EndpointSlice
        metadata: {namespace: default, name: unlabelled}
        addressType: IPv4
        ports: [{port: 8080}]
        endpoints: [{addresses: [10.0.3.1]}]
        "#,
        &to_web_port("{number: 80}"),
    ]);
    assert_eq!(
        addrs_for(&c, "backend.test", "/"),
        [
            addr("10.0.0.1:8080"),
            addr("10.0.0.2:8080"),
            addr("10.0.1.1:8080")
        ]
    );
}

#[test]
fn endpoints_are_used_unless_ready_is_false() {
    let c = compiled(&[
        r#"
        kind: Service
        metadata: {namespace: default, name: web}
        spec: {ports: [{port: 80, targetPort: 8080}]}
        ---
        kind: EndpointSlice
        metadata: {namespace: default, name: web-a, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        ports: [{port: 8080}]
        endpoints:
        - {addresses: [10.0.0.1], conditions: {ready: true}}
        - {addresses: [10.0.0.2], conditions: {ready: false, serving: true, terminating: true}}
        - {addresses: [10.0.0.3], conditions: {}}
        - {addresses: [10.0.0.4]}
        - {addresses: [10.0.0.5], conditions: {ready: false}}
        "#,
        &to_web_port("{number: 80}"),
    ]);
    assert_eq!(
        addrs_for(&c, "backend.test", "/"),
        [
            addr("10.0.0.1:8080"),
            addr("10.0.0.3:8080"),
            addr("10.0.0.4:8080")
        ]
    );
    assert_eq!(problems(&c), NO_PROBLEMS);
}

#[test]
fn no_ready_endpoints_is_unavailable_with_a_problem_and_no_fallback_to_terminating() {
    let terminating = r#"
        kind: Service
        metadata: {namespace: default, name: web}
        spec: {ports: [{port: 80, targetPort: 8080}]}
        ---
        kind: EndpointSlice
        metadata: {namespace: default, name: web-a, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        ports: [{port: 8080}]
        endpoints:
        - {addresses: [10.0.0.2], conditions: {ready: false, serving: true, terminating: true}}
    "#;
    let without_slices =
        "kind: Service\nmetadata: {namespace: default, name: web}\nspec: {ports: [{port: 80}]}\n";
    let empty_slice = svc("web", &[]);
    let cases: [&str; 3] = [terminating, without_slices, &empty_slice];
    for objects in cases {
        let c = compiled(&[objects, &to_web_port("{number: 80}")]);
        let route = c
            .table
            .lookup(Some("backend.test"), "/")
            .route
            .expect("a route that answers 503");
        assert!(
            matches!(*route.backend, Backend::Unavailable { .. }),
            "{:?}",
            route.backend
        );
        assert_eq!(route.backend.pick(), None);
        assert_eq!(
            problems(&c),
            [problem(
                "Ingress default/a",
                "spec.rules[0].http.paths[0].backend.service.name",
                Reason::NoReadyEndpoints
            )]
        );
    }
}

#[test]
fn missing_service_is_unavailable_with_a_problem() {
    let c = compiled(&[&to_web_port("{number: 80}")]);
    let route = c.table.lookup(Some("backend.test"), "/").route.unwrap();
    assert!(matches!(*route.backend, Backend::Unavailable { .. }));
    assert_eq!(route.backend.service(), "default/web");
    assert_eq!(
        problems(&c),
        [problem(
            "Ingress default/a",
            "spec.rules[0].http.paths[0].backend.service.name",
            Reason::ServiceNotFound
        )]
    );
}

#[test]
fn missing_service_port_is_unavailable_with_a_problem() {
    for port in ["{number: 81}", "{name: nope}", "{number: 8080}"] {
        let c = compiled(&[TWO_PORTS, &to_web_port(port)]);
        let route = c.table.lookup(Some("backend.test"), "/").route.unwrap();
        assert!(
            matches!(*route.backend, Backend::Unavailable { .. }),
            "{port}"
        );
        assert_eq!(
            problems(&c),
            [problem(
                "Ingress default/a",
                "spec.rules[0].http.paths[0].backend.service.port",
                Reason::ServicePortNotFound
            )],
            "{port}"
        );
    }
}

#[test]
fn backend_problems_name_the_default_backend_field() {
    let c = compiled(&[&with_default("a", "2020-01-01T00:00:00Z", None, "missing")]);
    assert_eq!(
        problems(&c),
        [problem(
            "Ingress default/a",
            "spec.defaultBackend.service.name",
            Reason::ServiceNotFound
        )]
    );
}

#[test]
fn resource_backend_is_unsupported() {
    let c = compiled(&[r#"
        kind: Ingress
        metadata: {namespace: default, name: a}
        spec:
          ingressClassName: portcullis
          defaultBackend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: assets}}
          rules:
          - host: backend.test
            http:
              paths:
              - pathType: Prefix
                path: /static
                backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: static}}
    "#]);
    assert_eq!(
        problems(&c),
        [
            problem(
                "Ingress default/a",
                "spec.defaultBackend",
                Reason::UnsupportedBackend
            ),
            problem(
                "Ingress default/a",
                "spec.rules[0].http.paths[0].backend",
                Reason::UnsupportedBackend
            ),
        ]
    );
    for path in ["/static", "/other"] {
        let route = c.table.lookup(Some("backend.test"), path).route.unwrap();
        assert!(
            matches!(*route.backend, Backend::Unavailable { .. }),
            "{path}"
        );
    }
}

const EXTERNAL: &str = r#"
    kind: Service
    metadata: {namespace: default, name: web}
    spec: {type: ExternalName, externalName: api.example.com, ports: [{port: 443}]}
"#;

#[test]
fn external_name_service_is_disabled_by_default() {
    let c = compiled(&[EXTERNAL, &to_web_port("{number: 443}")]);
    let route = c.table.lookup(Some("backend.test"), "/").route.unwrap();
    assert!(matches!(*route.backend, Backend::Unavailable { .. }));
    assert_eq!(
        problems(&c),
        [problem(
            "Ingress default/a",
            "spec.rules[0].http.paths[0].backend.service.name",
            Reason::ExternalNameDisabled
        )]
    );
}

#[test]
fn external_name_service_is_resolved_by_dns_when_allowed() {
    let opts = CompileOptions {
        allow_external_name: true,
        ..CompileOptions::default()
    };
    let c = compiled_with(&[EXTERNAL, &to_web_port("{number: 443}")], &opts);
    let route = c.table.lookup(Some("backend.test"), "/").route.unwrap();
    match &*route.backend {
        Backend::External {
            service,
            host,
            port,
        } => {
            assert_eq!(
                (&**service, host.as_str(), *port),
                ("default/web", "api.example.com", 443)
            );
        }
        other => panic!("expected an external backend, got {other:?}"),
    }
    assert_eq!(problems(&c), NO_PROBLEMS);
}

#[test]
fn objects_are_looked_up_only_in_the_ingress_namespace() {
    let ingress = ing("team/a", "backend.test", &["Prefix / web"]);
    // The Service lives in another namespace only.
    let c = compiled(&[&svc("other/web", &["10.0.0.1"]), &ingress]);
    assert_eq!(
        problems(&c),
        [problem(
            "Ingress team/a",
            "spec.rules[0].http.paths[0].backend.service.name",
            Reason::ServiceNotFound
        )]
    );
    // The Service is here, its endpoints are labelled for it in another namespace only.
    let c = compiled(&[
        "kind: Service\nmetadata: {namespace: team, name: web}\nspec: {ports: [{port: 80, targetPort: 8080}]}\n",
        r#"
        kind: EndpointSlice
        metadata: {namespace: other, name: web-a, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        ports: [{port: 8080}]
        endpoints: [{addresses: [10.0.0.1]}]
        "#,
        &ingress,
    ]);
    assert_eq!(problems_of(&c, Reason::NoReadyEndpoints).len(), 1);
}

#[test]
fn round_robin_starts_each_request_at_the_next_endpoint() {
    let c = compiled(&[
        &svc("web", &["10.0.0.3", "10.0.0.1", "10.0.0.2"]),
        &ing("a", "rr.test", &["Prefix / web"]),
    ]);
    let backend = &c.table.lookup(Some("rr.test"), "/").route.unwrap().backend;
    let starts: Vec<usize> = (0..5).map(|_| backend.pick().unwrap().0).collect();
    assert_eq!(starts, [0, 1, 2, 0, 1]);
    let (_, addrs) = backend.pick().unwrap();
    assert_eq!(
        addrs,
        [
            addr("10.0.0.1:8080"),
            addr("10.0.0.2:8080"),
            addr("10.0.0.3:8080")
        ]
    );
}

#[test]
fn one_backend_per_service_port_is_shared_by_every_route() {
    let c = compiled(&[
        &svc("web", &["10.0.0.1", "10.0.0.2"]),
        &ing("a", "a.test", &["Prefix / web"]),
        &ing("b", "b.test", &["Prefix / web", "Exact /x web"]),
    ]);
    let backend = |host: &str, path: &str| {
        c.table
            .lookup(Some(host), path)
            .route
            .unwrap()
            .backend
            .clone()
    };
    assert!(Arc::ptr_eq(
        &backend("a.test", "/"),
        &backend("b.test", "/")
    ));
    assert!(Arc::ptr_eq(
        &backend("a.test", "/"),
        &backend("b.test", "/x")
    ));
    assert_eq!(backend("a.test", "/").pick().unwrap().0, 0);
    assert_eq!(
        backend("b.test", "/").pick().unwrap().0,
        1,
        "one cursor for the Service port"
    );
}

#[test]
fn a_backend_problem_is_reported_to_every_ingress_using_it() {
    let c = compiled(&[
        &ing("a", "a.test", &["Prefix / missing"]),
        &ing("b", "b.test", &["Prefix / missing"]),
    ]);
    assert_eq!(
        problems(&c),
        [
            problem(
                "Ingress default/a",
                "spec.rules[0].http.paths[0].backend.service.name",
                Reason::ServiceNotFound
            ),
            problem(
                "Ingress default/b",
                "spec.rules[0].http.paths[0].backend.service.name",
                Reason::ServiceNotFound
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 7. TLS
// ---------------------------------------------------------------------------------------------

/// A `kubernetes.io/tls` Secret `id` whose `tls.crt` is `CERT-{name}` and `tls.key` `KEY-{name}`.
fn tls_secret(id: &str) -> String {
    let (ns, name) = id.split_once('/').unwrap_or(("default", id));
    format!(
        "kind: Secret\nmetadata: {{namespace: {ns}, name: {name}}}\ntype: kubernetes.io/tls\n\
         data: {{tls.crt: {}, tls.key: {}}}\n",
        base64(format!("CERT-{name}").as_bytes()),
        base64(format!("KEY-{name}").as_bytes()),
    )
}

fn base64(bytes: &[u8]) -> String {
    // Secret data in YAML is base64: encode via the k8s-openapi type rather than by hand.
    let v = serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap();
    v.as_str().unwrap().to_owned()
}

/// An Ingress `id` with `spec.tls` entries `(secretName, hosts)` and optional annotations YAML.
fn tls_ing(id: &str, created: &str, annotations: &str, tls: &[(&str, &[&str])]) -> String {
    let (ns, name) = id.split_once('/').unwrap_or(("default", id));
    let mut y = format!(
        "kind: Ingress\nmetadata: {{namespace: {ns}, name: {name}, creationTimestamp: \"{created}\"{annotations}}}\n\
         spec:\n  ingressClassName: portcullis\n  tls:\n"
    );
    for (secret, hosts) in tls {
        let secret = if secret.is_empty() {
            String::new()
        } else {
            format!("secretName: {secret}, ")
        };
        y.push_str(&format!("  - {{{secret}hosts: {hosts:?}}}\n"));
    }
    y
}

fn binding<'a>(c: &'a Compiled, host: &str) -> &'a TlsBinding {
    let pattern = HostPattern::parse(host).unwrap();
    c.tls
        .iter()
        .find(|b| b.host == pattern)
        .unwrap_or_else(|| panic!("no TLS binding for {host}"))
}

#[test]
fn tls_hosts_with_secret_name_are_served_by_that_secret() {
    let c = compiled(&[
        &tls_secret("shop/cert"),
        &tls_ing(
            "shop/a",
            "2020-01-01T00:00:00Z",
            "",
            &[("cert", &["shop.test", "*.shop.test"])],
        ),
    ]);
    assert_eq!(c.tls.len(), 2);
    for host in ["shop.test", "*.shop.test"] {
        let b = binding(&c, host);
        assert_eq!(
            b.secret,
            NamespacedName {
                namespace: "shop".into(),
                name: "cert".into()
            }
        );
        assert_eq!(b.ingress, ObjectRef::ingress("shop", "a"));
        let m = b.material.as_ref().expect("material");
        assert_eq!(
            (&*m.cert_pem, &*m.key_pem),
            (&b"CERT-cert"[..], &b"KEY-cert"[..])
        );
        assert_eq!(m.secret, b.secret);
    }
    assert_eq!(problems_of(&c, Reason::SecretNotFound), NO_PROBLEMS);
}

#[test]
fn missing_tls_secret_is_a_problem_and_its_hosts_get_no_material() {
    let c = compiled(&[&tls_ing(
        "a",
        "2020-01-01T00:00:00Z",
        "",
        &[("nope", &["shop.test"])],
    )]);
    assert!(binding(&c, "shop.test").material.is_none());
    assert_eq!(
        problems_of(&c, Reason::SecretNotFound),
        [problem(
            "Ingress default/a",
            "spec.tls[0].secretName",
            Reason::SecretNotFound
        )]
    );
}

#[test]
fn missing_tls_secret_affects_no_other_host() {
    let c = compiled(&[
        &tls_secret("good"),
        &tls_ing(
            "a",
            "2020-01-01T00:00:00Z",
            "",
            &[("nope", &["bad.test"]), ("good", &["good.test"])],
        ),
    ]);
    assert!(binding(&c, "bad.test").material.is_none());
    assert!(binding(&c, "good.test").material.is_some());
    assert_eq!(
        problems_of(&c, Reason::SecretNotFound),
        [problem(
            "Ingress default/a",
            "spec.tls[0].secretName",
            Reason::SecretNotFound
        )]
    );
}

#[test]
fn tls_secret_is_looked_up_only_in_the_ingress_namespace() {
    let c = compiled(&[
        &tls_secret("other/cert"),
        &tls_ing(
            "team/a",
            "2020-01-01T00:00:00Z",
            "",
            &[("cert", &["shop.test"])],
        ),
    ]);
    assert!(binding(&c, "shop.test").material.is_none());
    assert_eq!(
        problems_of(&c, Reason::SecretNotFound),
        [problem(
            "Ingress team/a",
            "spec.tls[0].secretName",
            Reason::SecretNotFound
        )]
    );
}

#[test]
fn tls_secret_of_another_type_is_invalid() {
    let opaque = tls_secret("cert").replace("type: kubernetes.io/tls", "type: Opaque");
    let untyped = tls_secret("cert").replace("type: kubernetes.io/tls\n", "");
    for secret in [opaque, untyped] {
        let c = compiled(&[
            &secret,
            &tls_ing("a", "2020-01-01T00:00:00Z", "", &[("cert", &["shop.test"])]),
        ]);
        assert!(binding(&c, "shop.test").material.is_none());
        assert_eq!(
            problems_of(&c, Reason::SecretInvalid),
            [problem(
                "Ingress default/a",
                "spec.tls[0].secretName",
                Reason::SecretInvalid
            )]
        );
    }
}

#[test]
fn tls_secret_without_certificate_or_key_is_invalid() {
    for missing in ["tls.crt", "tls.key"] {
        let secret = format!(
            "kind: Secret\nmetadata: {{namespace: default, name: cert}}\ntype: kubernetes.io/tls\ndata: {{{}: {}}}\n",
            if missing == "tls.crt" {
                "tls.key"
            } else {
                "tls.crt"
            },
            base64(b"PEM")
        );
        let c = compiled(&[
            &secret,
            &tls_ing("a", "2020-01-01T00:00:00Z", "", &[("cert", &["shop.test"])]),
        ]);
        assert!(binding(&c, "shop.test").material.is_none(), "{missing}");
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].field, "spec.tls[0].secretName");
        assert_eq!(c.problems[0].reason, Reason::SecretInvalid);
        assert!(
            c.problems[0].message.contains(missing),
            "{}",
            c.problems[0].message
        );
    }
}

#[test]
fn tls_host_claimed_with_different_secrets_goes_to_the_oldest_ingress() {
    let older = tls_ing(
        "b",
        "2020-01-01T00:00:00Z",
        "",
        &[("cert-b", &["shop.test"])],
    );
    let newer = tls_ing(
        "a",
        "2021-01-01T00:00:00Z",
        "",
        &[("cert-a", &["www.test", "shop.test"])],
    );
    for c in [
        compiled(&[&tls_secret("cert-a"), &tls_secret("cert-b"), &older, &newer]),
        compiled(&[&newer, &older, &tls_secret("cert-b"), &tls_secret("cert-a")]),
    ] {
        let b = binding(&c, "shop.test");
        assert_eq!(
            (b.secret.name.as_str(), &b.ingress),
            ("cert-b", &ObjectRef::ingress("default", "b"))
        );
        assert_eq!(binding(&c, "www.test").secret.name, "cert-a");
        assert_eq!(
            problems(&c),
            [problem(
                "Ingress default/a",
                "spec.tls[0].hosts[1]",
                Reason::TlsHostConflict
            )]
        );
        assert!(
            c.problems[0].message.contains("default/b"),
            "names the winner: {}",
            c.problems[0].message
        );
    }
}

#[test]
fn tls_host_named_with_the_same_secret_by_several_ingresses_is_no_conflict() {
    let c = compiled(&[
        &tls_secret("cert"),
        &tls_ing("a", "2020-01-01T00:00:00Z", "", &[("cert", &["shop.test"])]),
        &tls_ing("b", "2021-01-01T00:00:00Z", "", &[("cert", &["shop.test"])]),
    ]);
    assert_eq!(problems(&c), NO_PROBLEMS);
    assert_eq!(
        binding(&c, "shop.test").ingress,
        ObjectRef::ingress("default", "a")
    );
}

#[test]
fn invalid_tls_host_is_a_problem() {
    let c = compiled(&[
        &tls_secret("cert"),
        &tls_ing(
            "a",
            "2020-01-01T00:00:00Z",
            "",
            &[("cert", &["ok.test", "bad_host.test"])],
        ),
    ]);
    assert_eq!(
        problems(&c),
        [problem(
            "Ingress default/a",
            "spec.tls[0].hosts[1]",
            Reason::InvalidHost
        )]
    );
    assert_eq!(c.tls.len(), 1);
}

#[test]
fn plain_http_to_a_tls_host_is_redirected() {
    let c = compiled(&[
        &tls_secret("cert"),
        &tls_ing("a", "2020-01-01T00:00:00Z", "", &[("cert", &["Shop.test"])]),
    ]);
    assert!(c.table.redirects_to_https("shop.test"));
    assert!(!c.table.redirects_to_https("www.shop.test"));
    assert!(!c.table.redirects_to_https("other.test"));
}

#[test]
fn plain_http_to_a_tls_host_with_a_missing_secret_is_still_redirected() {
    let c = compiled(&[&tls_ing(
        "a",
        "2020-01-01T00:00:00Z",
        "",
        &[("nope", &["shop.test"])],
    )]);
    assert!(c.table.redirects_to_https("shop.test"));
}

#[test]
fn redirect_covers_wildcard_tls_hosts_for_one_label() {
    let c = compiled(&[
        &tls_secret("cert"),
        &tls_ing(
            "a",
            "2020-01-01T00:00:00Z",
            "",
            &[("cert", &["*.shop.test"])],
        ),
    ]);
    assert!(c.table.redirects_to_https("www.shop.test"));
    assert!(!c.table.redirects_to_https("a.www.shop.test"));
    assert!(!c.table.redirects_to_https("shop.test"));
}

#[test]
fn redirect_covers_tls_hosts_listed_without_secret_name() {
    // Section 7: "a host listed in any of our spec.tls[].hosts"; secretName is optional upstream.
    let c = compiled(&[&tls_ing(
        "a",
        "2020-01-01T00:00:00Z",
        "",
        &[("", &["shop.test"])],
    )]);
    assert!(c.table.redirects_to_https("shop.test"));
}

#[test]
fn ssl_redirect_false_annotation_turns_the_redirect_off_for_its_hosts() {
    let off = ", annotations: {portcullis.dev/ssl-redirect: \"false\"}";
    let on = ", annotations: {portcullis.dev/ssl-redirect: \"true\"}";
    let c = compiled(&[
        &tls_secret("cert"),
        &tls_ing(
            "a",
            "2020-01-01T00:00:00Z",
            off,
            &[("cert", &["plain.test", "*.plain.test"])],
        ),
        &tls_ing(
            "b",
            "2020-01-01T00:00:00Z",
            on,
            &[("cert", &["secure.test"])],
        ),
    ]);
    assert!(!c.table.redirects_to_https("plain.test"));
    assert!(!c.table.redirects_to_https("www.plain.test"));
    assert!(c.table.redirects_to_https("secure.test"));
    assert!(
        binding(&c, "plain.test").material.is_some(),
        "TLS is still served"
    );
    assert_eq!(problems(&c), NO_PROBLEMS);
}

#[test]
fn ssl_redirect_annotation_value_other_than_true_or_false_is_a_problem() {
    let c = compiled(&[
        &tls_secret("cert"),
        &tls_ing(
            "a",
            "2020-01-01T00:00:00Z",
            ", annotations: {portcullis.dev/ssl-redirect: \"no\"}",
            &[("cert", &["shop.test"])],
        ),
    ]);
    assert_eq!(
        problems(&c),
        [problem(
            "Ingress default/a",
            "metadata.annotations[portcullis.dev/ssl-redirect]",
            Reason::UnsupportedAnnotation
        )]
    );
    assert!(
        c.table.redirects_to_https("shop.test"),
        "an unknown value keeps the default"
    );
}

#[test]
fn default_certificate_is_read_from_its_secret() {
    let opts = CompileOptions {
        default_certificate: Some(NamespacedName {
            namespace: "system".into(),
            name: "default-cert".into(),
        }),
        ..CompileOptions::default()
    };
    let c = compiled_with(&[&tls_secret("system/default-cert")], &opts);
    assert_eq!(
        &*c.default_certificate.expect("material").cert_pem,
        b"CERT-default-cert"
    );
    let c = compiled_with(&[], &opts);
    assert!(c.default_certificate.is_none());
    assert_eq!(
        problems(&c),
        [problem(
            "Secret system/default-cert",
            "--default-certificate",
            Reason::SecretNotFound
        )]
    );
}

// ---------------------------------------------------------------------------------------------
// Determinism: same objects, any order, same output
// ---------------------------------------------------------------------------------------------

fn busy_snapshot() -> Snapshot {
    snapshot(&[
        &svc("web", &["10.0.0.1", "10.0.0.2"]),
        &svc("team/api", &["10.0.1.1"]),
        TWO_PORTS
            .replace("name: web", "name: admin")
            .replace("service-name: web", "service-name: admin")
            .as_str(),
        &tls_secret("cert"),
        &tls_secret("cert-b"),
        &ing_at(
            "a",
            Some("2020-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix / web", "Exact /x web"],
        ),
        &ing_at(
            "b",
            Some("2020-01-01T00:00:00Z"),
            "shop.test",
            &["Prefix / api", "Prefix /y web"],
        ),
        &ing_at(
            "team/c",
            Some("2021-01-01T00:00:00Z"),
            "SHOP.test",
            &["Exact /x api", "Prefix /api api"],
        ),
        &ing_at(
            "team/d",
            None,
            "*.shop.test",
            &["Prefix / api", "Regex /r api"],
        ),
        &ing_at(
            "e",
            Some("2019-01-01T00:00:00Z"),
            "e.test",
            &["Prefix /any missing"],
        ),
        &with_default("f", "2020-01-01T00:00:00Z", Some("shop.test"), "web"),
        &with_default("g", "2020-01-01T00:00:00Z", Some("shop.test"), "missing"),
        &with_default("h", "2022-01-01T00:00:00Z", None, "web"),
        &with_default("i", "2022-01-01T00:00:00Z", None, "missing"),
        &tls_ing(
            "j",
            "2020-01-01T00:00:00Z",
            "",
            &[("cert", &["shop.test", "*.shop.test"])],
        ),
        &tls_ing(
            "k",
            "2020-01-01T00:00:00Z",
            "",
            &[("cert-b", &["shop.test"]), ("gone", &["new.test"])],
        ),
        &classed("l", Some("nginx"), None),
        &to_web_port("{name: admin}")
            .replace("name: web", "name: admin")
            .replace("name: a}", "name: m}"),
    ])
}

/// Everything observable about a compile, as text.
fn fingerprint(c: &Compiled) -> String {
    let mut out = format!("{:#?}\n{:#?}\n", c.problems, c.ours);
    for b in &c.tls {
        out.push_str(&format!(
            "{} {} {} {}\n",
            b.host,
            b.secret,
            b.ingress,
            b.material.is_some()
        ));
    }
    let hosts = [
        None,
        Some("e.test"),
        Some("shop.test"),
        Some("www.shop.test"),
        Some("new.test"),
        Some("backend.test"),
        Some("x.y"),
    ];
    for host in hosts {
        for path in ["/", "/x", "/x/", "/y/1", "/api/v1", "/any", "/r", "/zzz"] {
            let l = c.table.lookup(host, path);
            let route = l.route.map(|r| {
                let addrs = match &*r.backend {
                    Backend::Endpoints { addrs, .. } => format!("{addrs:?}"),
                    other => format!("{other:?}"),
                };
                format!("{} {} {addrs}", r.ingress, r.backend.service())
            });
            out.push_str(&format!("{host:?} {path} {:?} {route:?}\n", l.host));
        }
        if let Some(h) = host {
            out.push_str(&format!("redirect {h} {}\n", c.table.redirects_to_https(h)));
        }
    }
    out
}

/// A deterministic shuffle (xorshift), so a failure can be reproduced.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

#[test]
fn compile_output_does_not_depend_on_object_order() {
    let opts = controller_default();
    let base = busy_snapshot();
    let expected = fingerprint(&compile(&base, &opts));
    assert!(
        !compile(&base, &opts).problems.is_empty(),
        "the snapshot exercises problems"
    );

    let mut reversed = base.clone();
    reversed.ingresses.reverse();
    reversed.services.reverse();
    reversed.endpoint_slices.reverse();
    reversed.secrets.reverse();
    reversed.ingress_classes.reverse();
    assert_eq!(
        fingerprint(&compile(&reversed, &opts)),
        expected,
        "reversed"
    );

    for seed in 1..=20u64 {
        let mut s = base.clone();
        shuffle(&mut s.ingresses, seed);
        shuffle(&mut s.services, seed * 3);
        shuffle(&mut s.endpoint_slices, seed * 5);
        shuffle(&mut s.secrets, seed * 7);
        assert_eq!(
            fingerprint(&compile(&s, &opts)),
            expected,
            "shuffle seed {seed}"
        );
    }
}
