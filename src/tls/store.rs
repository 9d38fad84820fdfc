//! The SNI certificate store, rebuilt on every configuration change and read lock-free by the
//! rustls resolver.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::material::{ParsedCert, parse_material, provider};
use crate::routes::{HostPattern, NamespacedName, SecretMaterial, TlsBinding, wildcard_parent};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One servable certificate.
#[derive(Debug)]
pub struct Entry {
    /// Unique per loaded certificate; equal ids mean the same certificate.
    pub id: u64,
    /// The chain and key.
    pub key: Arc<CertifiedKey>,
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// The Secret it came from; `None` for the generated default.
    pub secret: Option<NamespacedName>,
    cert_pem: Arc<[u8]>,
    key_pem: Arc<[u8]>,
}

impl Entry {
    fn new(
        parsed: ParsedCert,
        secret: Option<NamespacedName>,
        cert_pem: Arc<[u8]>,
        key_pem: Arc<[u8]>,
    ) -> Arc<Self> {
        Arc::new(Entry {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            key: parsed.key,
            not_after: parsed.not_after,
            secret,
            cert_pem,
            key_pem,
        })
    }
}

/// A Secret that could not be loaded, and what is served instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIssue {
    /// The Secret at fault.
    pub secret: NamespacedName,
    /// What is wrong.
    pub message: String,
    /// Whether an earlier good certificate from the same Secret is still served.
    pub kept_previous: bool,
}

/// Host name → certificate, plus the default.
#[derive(Debug)]
pub struct Store {
    exact: HashMap<Box<str>, Arc<Entry>>,
    wildcard: HashMap<Box<str>, Arc<Entry>>,
    default: Arc<Entry>,
    /// Good certificates by Secret, reused when a Secret is unchanged or later broken.
    by_secret: HashMap<NamespacedName, Arc<Entry>>,
}

impl Store {
    /// A store that serves only `default` (PEM certificate and key).
    pub fn with_default(cert_pem: &str, key_pem: &str, now: i64) -> Result<Self, super::CertError> {
        let parsed = parse_material(cert_pem.as_bytes(), key_pem.as_bytes(), now)?;
        let default = Entry::new(
            parsed,
            None,
            Arc::from(cert_pem.as_bytes()),
            Arc::from(key_pem.as_bytes()),
        );
        Ok(Store {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
            by_secret: HashMap::new(),
        })
    }

    /// Builds the next store from the compiled TLS bindings. A Secret that cannot be loaded
    /// keeps its previous good certificate when there was one, else its hosts get the default.
    pub fn rebuild(
        &self,
        bindings: &[TlsBinding],
        default: Option<&SecretMaterial>,
        generated_default: &Arc<Entry>,
        now: i64,
    ) -> (Store, Vec<CertIssue>) {
        let mut issues = Vec::new();
        let mut by_secret: HashMap<NamespacedName, Arc<Entry>> = HashMap::new();
        let mut failed: HashMap<NamespacedName, Option<Arc<Entry>>> = HashMap::new();
        let mut load = |m: &SecretMaterial| -> Option<Arc<Entry>> {
            if let Some(e) = by_secret.get(&m.secret) {
                return Some(e.clone());
            }
            if let Some(kept) = failed.get(&m.secret) {
                return kept.clone();
            }
            let previous = self.by_secret.get(&m.secret);
            if let Some(prev) = previous
                .filter(|p| p.cert_pem == m.cert_pem && p.key_pem == m.key_pem && p.not_after > now)
            {
                by_secret.insert(m.secret.clone(), prev.clone());
                return Some(prev.clone());
            }
            match parse_material(&m.cert_pem, &m.key_pem, now) {
                Ok(parsed) => {
                    let e = Entry::new(
                        parsed,
                        Some(m.secret.clone()),
                        m.cert_pem.clone(),
                        m.key_pem.clone(),
                    );
                    by_secret.insert(m.secret.clone(), e.clone());
                    Some(e)
                }
                Err(err) => {
                    let kept = previous.filter(|p| p.not_after > now).cloned();
                    issues.push(CertIssue {
                        secret: m.secret.clone(),
                        message: err.to_string(),
                        kept_previous: kept.is_some(),
                    });
                    failed.insert(m.secret.clone(), kept.clone());
                    kept
                }
            }
        };
        let default = default
            .and_then(&mut load)
            .unwrap_or_else(|| generated_default.clone());
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for b in bindings {
            let Some(entry) = b.material.as_ref().and_then(&mut load) else {
                continue;
            };
            match &b.host {
                HostPattern::Exact(h) => exact.insert(h.as_str().into(), entry),
                HostPattern::Wildcard(s) => wildcard.insert(s.as_str().into(), entry),
            };
        }
        // Keep good certificates of Secrets that failed this time, so they survive further edits.
        for (secret, kept) in failed {
            if let Some(e) = kept {
                by_secret.entry(secret).or_insert(e);
            }
        }
        (
            Store {
                exact,
                wildcard,
                default,
                by_secret,
            },
            issues,
        )
    }

    /// The certificate for an SNI name or Host: exact, else one-label wildcard, else default.
    pub fn select(&self, name: Option<&str>) -> &Arc<Entry> {
        let Some(name) = name else {
            return &self.default;
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) || name.ends_with('.') {
            lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.exact
            .get(name)
            .or_else(|| wildcard_parent(name).and_then(|p| self.wildcard.get(p)))
            .unwrap_or(&self.default)
    }

    /// Every distinct certificate served, for the not-after metric.
    pub fn served(&self) -> impl Iterator<Item = &Arc<Entry>> {
        std::iter::once(&self.default).chain(self.by_secret.values())
    }

    /// The default certificate.
    pub fn default_entry(&self) -> &Arc<Entry> {
        &self.default
    }
}

/// TLS-ALPN-01 challenge certificates by SNI name, published by the ACME module.
pub type AlpnCertificates = Arc<ArcSwap<HashMap<String, Arc<CertifiedKey>>>>;

/// The ALPN protocol of TLS-ALPN-01 challenges (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The rustls resolver: reads the current store on every handshake.
#[derive(Debug, Clone)]
pub struct Resolver {
    store: Arc<ArcSwap<Store>>,
    alpn: AlpnCertificates,
}

impl Resolver {
    /// A resolver over a swappable store and TLS-ALPN-01 challenge certificates.
    pub fn new(store: Arc<ArcSwap<Store>>, alpn: AlpnCertificates) -> Self {
        Self { store, alpn }
    }

    /// The store handle, shared with whoever swaps it.
    pub fn store(&self) -> &Arc<ArcSwap<Store>> {
        &self.store
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A TLS-ALPN-01 validation offers exactly `acme-tls/1`; unknown names fail the handshake.
        if let Some(mut protocols) = hello.alpn()
            && protocols.next() == Some(ACME_TLS_ALPN)
            && protocols.next().is_none()
        {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.alpn.load().get(&name).cloned();
        }
        Some(self.store.load().select(hello.server_name()).key.clone())
    }
}

/// The rustls server configuration: TLS 1.2 and 1.3, ALPN h2, http/1.1 and acme-tls/1, session
/// tickets.
pub fn server_config(resolver: Resolver) -> Result<rustls::ServerConfig, rustls::Error> {
    // TLS 1.3 AES-128-GCM-SHA256 first, in the server's order: its SHA-256 transcript hash
    // runs on the CPU's SHA extensions, while aws-lc's SHA-384 falls back to generic code on
    // some CPUs; a full ECDSA handshake costs ~30% less CPU (docs/benchmarks.md, S3).
    let mut provider = provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.ignore_client_order = true;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(16384);
    Ok(cfg)
}
