//! Tests for `tls`: what makes a certificate servable (ingress-semantics.md section 7), how the
//! SNI store picks a certificate, and what survives when a Secret breaks.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::material::provider;
use super::*;
use crate::routes::{HostPattern, NamespacedName, ObjectRef, SecretMaterial, TlsBinding};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// 2027-01-15T08:00:00Z.
const NOW: i64 = 1_800_000_000;
/// 2027-01-01T00:00:00Z.
const START_2027: i64 = 1_798_761_600;
/// 2028-01-01T00:00:00Z.
const START_2028: i64 = 1_830_297_600;

/// A certificate and its key, as PEM.
struct Pem {
    cert: String,
    key: String,
}

/// A self-signed certificate for `names`, valid far beyond `NOW`.
fn pem(names: &[&str]) -> Pem {
    let (cert, key) = self_signed(names).expect("self-signed certificate");
    Pem { cert, key }
}

/// A self-signed certificate for `names`, valid from 2027-01-01 to 2028-01-01 (UTC).
fn pem_2027(names: &[&str]) -> Pem {
    let key = rcgen::KeyPair::generate().expect("key pair");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("names");
    params.not_before = rcgen::date_time_ymd(2027, 1, 1);
    params.not_after = rcgen::date_time_ymd(2028, 1, 1);
    let cert = params.self_signed(&key).expect("certificate");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn secret(name: &str) -> NamespacedName {
    NamespacedName {
        namespace: "default".into(),
        name: name.into(),
    }
}

/// The content of Secret `default/{name}`, in fresh buffers (as every compile produces).
fn material(name: &str, pem: &Pem) -> SecretMaterial {
    SecretMaterial {
        secret: secret(name),
        cert_pem: Arc::from(pem.cert.as_bytes()),
        key_pem: Arc::from(pem.key.as_bytes()),
    }
}

/// Secret `default/{name}` holding something that is not a certificate.
fn garbage(name: &str) -> SecretMaterial {
    SecretMaterial {
        secret: secret(name),
        cert_pem: Arc::from(&b"not a certificate"[..]),
        key_pem: Arc::from(&b"not a key"[..]),
    }
}

fn binding(host: &str, secret_name: &str, material: Option<SecretMaterial>) -> TlsBinding {
    TlsBinding {
        host: HostPattern::parse(host).expect("valid host"),
        material,
        secret: secret(secret_name),
        ingress: ObjectRef::ingress("default", "web"),
        field: "spec.tls[0].secretName".into(),
    }
}

/// A store that serves only a generated default, and that default.
fn fresh() -> (Store, Arc<Entry>) {
    let d = pem(&["portcullis.invalid"]);
    let store = Store::with_default(&d.cert, &d.key, NOW).expect("default certificate");
    let generated = store.default_entry().clone();
    (store, generated)
}

fn rebuild(
    store: &Store,
    bindings: &[TlsBinding],
    generated: &Arc<Entry>,
) -> (Store, Vec<CertIssue>) {
    store.rebuild(bindings, None, generated, NOW)
}

/// Which Secret serves `name`: `namespace/name`, or `(generated)` for the generated default.
fn served_by(store: &Store, name: Option<&str>) -> String {
    store
        .select(name)
        .secret
        .as_ref()
        .map_or_else(|| "(generated)".to_owned(), |s| s.to_string())
}

// ---------------------------------------------------------------------------------------------
// parse_material: what makes a certificate and key servable
// ---------------------------------------------------------------------------------------------

#[test]
fn matching_self_signed_pair_is_accepted() {
    let p = pem(&["a.example.com"]);
    let parsed = parse_material(p.cert.as_bytes(), p.key.as_bytes(), NOW).expect("servable");
    assert_eq!(parsed.key.cert.len(), 1);
    assert!(parsed.not_after > NOW);
}

#[test]
fn not_after_is_the_leaf_end_of_validity_in_unix_seconds() {
    let p = pem_2027(&["a.example.com"]);
    let parsed = parse_material(p.cert.as_bytes(), p.key.as_bytes(), NOW).expect("servable");
    assert_eq!(parsed.not_after, START_2028);
}

#[test]
fn tls_crt_holds_the_leaf_first_then_the_chain() {
    let leaf = pem(&["a.example.com"]);
    let other = pem(&["ca.example.com"]);
    let chain = format!("{}{}", leaf.cert, other.cert);
    let parsed = parse_material(chain.as_bytes(), leaf.key.as_bytes(), NOW).expect("servable");
    assert_eq!(parsed.key.cert.len(), 2);

    let reversed = format!("{}{}", other.cert, leaf.cert);
    let err = parse_material(reversed.as_bytes(), leaf.key.as_bytes(), NOW).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch(_)), "{err:?}");
}

#[test]
fn empty_tls_crt_is_refused() {
    let p = pem(&["a.example.com"]);
    let err = parse_material(b"", p.key.as_bytes(), NOW).unwrap_err();
    assert!(matches!(err, CertError::NoCertificate), "{err:?}");
}

#[test]
fn garbage_pem_is_refused() {
    let p = pem(&["a.example.com"]);
    let key = p.key.as_bytes();

    let err = parse_material(b"not a certificate", key, NOW).unwrap_err();
    assert!(matches!(err, CertError::NoCertificate), "{err:?}");

    let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let err = parse_material(bad_base64, key, NOW).unwrap_err();
    assert!(matches!(err, CertError::BadCertPem(_)), "{err:?}");

    let not_x509 = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let err = parse_material(not_x509, key, NOW).unwrap_err();
    assert!(matches!(err, CertError::BadCertificate(_)), "{err:?}");

    let err = parse_material(p.cert.as_bytes(), b"not a key", NOW).unwrap_err();
    assert!(matches!(err, CertError::BadKeyPem(_)), "{err:?}");
}

#[test]
fn key_of_another_certificate_is_a_key_mismatch() {
    let a = pem(&["a.example.com"]);
    let b = pem(&["a.example.com"]);
    let err = parse_material(a.cert.as_bytes(), b.key.as_bytes(), NOW).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch(_)), "{err:?}");
}

#[test]
fn certificate_is_expired_from_its_not_after_on() {
    let p = pem_2027(&["a.example.com"]);
    let (cert, key) = (p.cert.as_bytes(), p.key.as_bytes());
    assert!(parse_material(cert, key, START_2028 - 1).is_ok());
    let err = parse_material(cert, key, START_2028).unwrap_err();
    assert!(
        matches!(err, CertError::Expired(t) if t == START_2028),
        "{err:?}"
    );
}

#[test]
fn certificate_is_not_yet_valid_before_its_not_before() {
    let p = pem_2027(&["a.example.com"]);
    let (cert, key) = (p.cert.as_bytes(), p.key.as_bytes());
    assert!(parse_material(cert, key, START_2027).is_ok());
    let err = parse_material(cert, key, START_2027 - 1).unwrap_err();
    assert!(
        matches!(err, CertError::NotYetValid(t) if t == START_2027),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Store::select: exact, else one-label wildcard, else default
// ---------------------------------------------------------------------------------------------

#[test]
fn exact_host_gets_its_secret_certificate() {
    let (store, generated) = fresh();
    let p = pem(&["a.example.com"]);
    let bindings = [binding("a.example.com", "a", Some(material("a", &p)))];
    let (store, issues) = rebuild(&store, &bindings, &generated);
    assert_eq!(issues, []);
    assert_eq!(served_by(&store, Some("a.example.com")), "default/a");
    assert_eq!(served_by(&store, Some("b.example.com")), "(generated)");
}

#[test]
fn wildcard_covers_exactly_one_label() {
    let (store, generated) = fresh();
    let p = pem(&["*.example.com"]);
    let bindings = [binding("*.example.com", "wild", Some(material("wild", &p)))];
    let (store, _) = rebuild(&store, &bindings, &generated);
    assert_eq!(served_by(&store, Some("a.example.com")), "default/wild");
    assert_eq!(served_by(&store, Some("b.a.example.com")), "(generated)");
    assert_eq!(served_by(&store, Some("example.com")), "(generated)");
}

#[test]
fn exact_host_wins_over_wildcard() {
    let (store, generated) = fresh();
    let bindings = [
        binding(
            "*.example.com",
            "wild",
            Some(material("wild", &pem(&["*.example.com"]))),
        ),
        binding(
            "a.example.com",
            "a",
            Some(material("a", &pem(&["a.example.com"]))),
        ),
    ];
    let (store, _) = rebuild(&store, &bindings, &generated);
    assert_eq!(served_by(&store, Some("a.example.com")), "default/a");
    assert_eq!(served_by(&store, Some("b.example.com")), "default/wild");
}

#[test]
fn unknown_or_absent_name_gets_the_default() {
    let (store, generated) = fresh();
    let bindings = [binding(
        "a.example.com",
        "a",
        Some(material("a", &pem(&["a.example.com"]))),
    )];
    let (store, _) = rebuild(&store, &bindings, &generated);
    assert_eq!(store.select(None).id, generated.id);
    assert_eq!(store.select(Some("other.test")).id, generated.id);
}

#[test]
fn select_ignores_case_and_a_trailing_dot() {
    let (store, generated) = fresh();
    let bindings = [
        binding(
            "a.example.com",
            "a",
            Some(material("a", &pem(&["a.example.com"]))),
        ),
        binding(
            "*.wild.test",
            "wild",
            Some(material("wild", &pem(&["*.wild.test"]))),
        ),
    ];
    let (store, _) = rebuild(&store, &bindings, &generated);
    for name in ["A.Example.COM", "a.example.com.", "A.EXAMPLE.com."] {
        assert_eq!(served_by(&store, Some(name)), "default/a", "{name}");
    }
    assert_eq!(served_by(&store, Some("X.Wild.Test.")), "default/wild");
}

// ---------------------------------------------------------------------------------------------
// Store::rebuild: broken, missing, unchanged and default Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn broken_secret_hosts_get_the_default_and_other_hosts_are_unaffected() {
    let (store, generated) = fresh();
    let bindings = [
        binding("a.example.com", "a", Some(garbage("a"))),
        binding(
            "b.example.com",
            "b",
            Some(material("b", &pem(&["b.example.com"]))),
        ),
    ];
    let (store, issues) = rebuild(&store, &bindings, &generated);
    assert_eq!(served_by(&store, Some("a.example.com")), "(generated)");
    assert_eq!(served_by(&store, Some("b.example.com")), "default/b");
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].secret, secret("a"));
    assert!(!issues[0].kept_previous);
    assert!(
        issues[0].message.contains("no PEM certificate"),
        "{}",
        issues[0].message
    );
}

#[test]
fn missing_secret_hosts_get_the_default_and_no_certificate_issue() {
    let (store, generated) = fresh();
    // The compile step reports the missing Secret (SecretNotFound); the store only falls back.
    let bindings = [binding("a.example.com", "a", None)];
    let (store, issues) = rebuild(&store, &bindings, &generated);
    assert_eq!(issues, []);
    assert_eq!(served_by(&store, Some("a.example.com")), "(generated)");
}

#[test]
fn secret_that_breaks_keeps_its_previous_certificate_until_a_valid_one_arrives() {
    let (store, generated) = fresh();
    let (a1, b) = (pem(&["a.example.com"]), pem(&["b.example.com"]));
    let good = [
        binding("a.example.com", "a", Some(material("a", &a1))),
        binding("b.example.com", "b", Some(material("b", &b))),
    ];
    let (store, _) = rebuild(&store, &good, &generated);
    let (a_id, b_id) = (
        store.select(Some("a.example.com")).id,
        store.select(Some("b.example.com")).id,
    );

    let broken = [
        binding("a.example.com", "a", Some(garbage("a"))),
        binding("b.example.com", "b", Some(material("b", &b))),
    ];
    let (store, issues) = rebuild(&store, &broken, &generated);
    assert_eq!(
        issues
            .iter()
            .map(|i| (&i.secret, i.kept_previous))
            .collect::<Vec<_>>(),
        [(&secret("a"), true)]
    );
    assert_eq!(store.select(Some("a.example.com")).id, a_id);
    assert_eq!(store.select(Some("b.example.com")).id, b_id);

    // Still broken on the next change: the previous certificate survives that too.
    let (store, issues) = rebuild(&store, &broken, &generated);
    assert!(issues[0].kept_previous);
    assert_eq!(store.select(Some("a.example.com")).id, a_id);

    // Fixed with a new certificate: that one is served.
    let a2 = pem(&["a.example.com"]);
    let fixed = [binding("a.example.com", "a", Some(material("a", &a2)))];
    let (store, issues) = rebuild(&store, &fixed, &generated);
    assert_eq!(issues, []);
    let served = store.select(Some("a.example.com"));
    assert_ne!(served.id, a_id);
    assert_eq!(served.secret, Some(secret("a")));
}

#[test]
fn expired_previous_certificate_is_not_kept() {
    let (store, generated) = fresh();
    let good = [binding(
        "a.example.com",
        "a",
        Some(material("a", &pem_2027(&["a.example.com"]))),
    )];
    let (store, _) = rebuild(&store, &good, &generated);
    assert_eq!(served_by(&store, Some("a.example.com")), "default/a");

    let broken = [binding("a.example.com", "a", Some(garbage("a")))];
    let (store, issues) = store.rebuild(&broken, None, &generated, START_2028);
    assert!(!issues[0].kept_previous);
    assert_eq!(served_by(&store, Some("a.example.com")), "(generated)");
}

#[test]
fn certificate_that_expires_is_dropped_at_the_next_rebuild() {
    let (store, generated) = fresh();
    let good = [binding(
        "a.example.com",
        "a",
        Some(material("a", &pem_2027(&["a.example.com"]))),
    )];
    let (store, _) = rebuild(&store, &good, &generated);
    let (store, issues) = store.rebuild(&good, None, &generated, START_2028);
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0].message.contains("expired"),
        "{}",
        issues[0].message
    );
    assert_eq!(served_by(&store, Some("a.example.com")), "(generated)");
}

#[test]
fn unchanged_secret_reuses_its_entry() {
    let (store, generated) = fresh();
    let p = pem(&["a.example.com"]);
    let (store, _) = rebuild(
        &store,
        &[binding("a.example.com", "a", Some(material("a", &p)))],
        &generated,
    );
    let first = store.select(Some("a.example.com")).clone();

    // Same bytes in new buffers, as the next compile delivers them: not parsed again.
    let (store, _) = rebuild(
        &store,
        &[binding("a.example.com", "a", Some(material("a", &p)))],
        &generated,
    );
    let again = store.select(Some("a.example.com"));
    assert_eq!(again.id, first.id);
    assert!(Arc::ptr_eq(again, &first));

    let changed = pem(&["a.example.com"]);
    let (store, _) = rebuild(
        &store,
        &[binding("a.example.com", "a", Some(material("a", &changed)))],
        &generated,
    );
    assert_ne!(store.select(Some("a.example.com")).id, first.id);
}

#[test]
fn secret_serving_several_hosts_is_loaded_once() {
    let (store, generated) = fresh();
    let p = pem(&["a.example.com", "*.example.org"]);
    let bindings = [
        binding("a.example.com", "shared", Some(material("shared", &p))),
        binding("*.example.org", "shared", Some(material("shared", &p))),
    ];
    let (store, _) = rebuild(&store, &bindings, &generated);
    assert_eq!(
        store.select(Some("a.example.com")).id,
        store.select(Some("x.example.org")).id
    );

    let broken = [
        binding("a.example.com", "shared", Some(garbage("shared"))),
        binding("*.example.org", "shared", Some(garbage("shared"))),
    ];
    let (_, issues) = rebuild(&store, &broken, &generated);
    assert_eq!(
        issues.len(),
        1,
        "one issue per Secret, not per host: {issues:?}"
    );
}

#[test]
fn configured_default_certificate_replaces_the_generated_one() {
    let (store, generated) = fresh();
    let d = material("fallback", &pem(&["fallback.test"]));
    let (store, issues) = store.rebuild(&[], Some(&d), &generated, NOW);
    assert_eq!(issues, []);
    assert_eq!(served_by(&store, None), "default/fallback");
    assert_eq!(served_by(&store, Some("anything.test")), "default/fallback");
}

#[test]
fn broken_configured_default_falls_back_to_the_generated_one() {
    let (store, generated) = fresh();
    let (store, issues) = store.rebuild(&[], Some(&garbage("fallback")), &generated, NOW);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].secret, secret("fallback"));
    assert_eq!(store.default_entry().id, generated.id);
}

#[test]
fn served_lists_the_default_and_every_loaded_secret_once() {
    let (store, generated) = fresh();
    let p = pem(&["a.example.com", "b.example.com"]);
    let bindings = [
        binding("a.example.com", "ab", Some(material("ab", &p))),
        binding("b.example.com", "ab", Some(material("ab", &p))),
        binding("c.example.com", "c", Some(garbage("c"))),
    ];
    let (store, _) = rebuild(&store, &bindings, &generated);
    let mut served: Vec<String> = store
        .served()
        .map(|e| {
            e.secret
                .as_ref()
                .map_or("(generated)".into(), |s| s.to_string())
        })
        .collect();
    served.sort();
    assert_eq!(served, ["(generated)", "default/ab"]);
}

// ---------------------------------------------------------------------------------------------
// Resolver and server_config: a real handshake in memory
// ---------------------------------------------------------------------------------------------

/// Completes a TLS handshake for `sni` against `server`, trusting `trust`; returns the leaf
/// certificate the server presented and the negotiated ALPN protocol.
fn handshake(
    server: &Arc<rustls::ServerConfig>,
    sni: &str,
    trust: &Pem,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trust.cert.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("trust anchor");
    }
    let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut client = rustls::Connection::from(
        rustls::ClientConnection::new(Arc::new(client_config), name).expect("client"),
    );
    let mut server =
        rustls::Connection::from(rustls::ServerConnection::new(server.clone()).expect("server"));
    let mut rounds = 0;
    while client.is_handshaking() || server.is_handshaking() {
        rounds += 1;
        assert!(rounds < 20, "handshake does not finish");
        pump(&mut client, &mut server);
        pump(&mut server, &mut client);
    }
    let leaf = client.peer_certificates().expect("server certificate")[0].to_vec();
    (leaf, client.alpn_protocol().map(<[u8]>::to_vec))
}

/// Moves every pending TLS record from `from` to `to` and lets `to` process them.
fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).expect("write");
    }
    let mut rest = &buf[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("read");
        to.process_new_packets().expect("TLS");
    }
}

fn leaf_der(p: &Pem) -> Vec<u8> {
    CertificateDer::from_pem_slice(p.cert.as_bytes())
        .expect("PEM")
        .to_vec()
}

#[test]
fn resolver_presents_the_certificate_selected_for_the_sni_name() {
    let (store, generated) = fresh();
    let (a, b) = (pem(&["a.example.com"]), pem(&["b.example.com"]));
    let bindings = [
        binding("a.example.com", "a", Some(material("a", &a))),
        binding("b.example.com", "b", Some(material("b", &b))),
    ];
    let (store, _) = rebuild(&store, &bindings, &generated);
    let config = Arc::new(
        server_config(Resolver::new(
            Arc::new(ArcSwap::from_pointee(store)),
            Default::default(),
        ))
        .expect("config"),
    );
    assert_eq!(handshake(&config, "a.example.com", &a).0, leaf_der(&a));
    assert_eq!(handshake(&config, "b.example.com", &b).0, leaf_der(&b));
}

#[test]
fn resolver_reads_the_store_swapped_in_after_it_was_built() {
    let (store, generated) = fresh();
    let handle = Arc::new(ArcSwap::from_pointee(store));
    let config =
        Arc::new(server_config(Resolver::new(handle.clone(), Default::default())).expect("config"));

    let a = pem(&["a.example.com"]);
    let bindings = [binding("a.example.com", "a", Some(material("a", &a)))];
    let (next, _) = rebuild(&handle.load(), &bindings, &generated);
    handle.store(Arc::new(next));
    assert_eq!(handshake(&config, "a.example.com", &a).0, leaf_der(&a));
}

#[test]
fn server_config_prefers_h2_then_http11_and_offers_acme_tls() {
    let (store, _) = fresh();
    let config = server_config(Resolver::new(
        Arc::new(ArcSwap::from_pointee(store)),
        Default::default(),
    ))
    .expect("config");
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec(), b"acme-tls/1".to_vec()]
    );

    let (store, generated) = fresh();
    let a = pem(&["a.example.com"]);
    let bindings = [binding("a.example.com", "a", Some(material("a", &a)))];
    let (store, _) = rebuild(&store, &bindings, &generated);
    let config = Arc::new(
        server_config(Resolver::new(
            Arc::new(ArcSwap::from_pointee(store)),
            Default::default(),
        ))
        .expect("config"),
    );
    assert_eq!(
        handshake(&config, "a.example.com", &a).1.as_deref(),
        Some(&b"h2"[..])
    );
}
