//! The immutable routing table the proxy reads: host → paths → backend. No Kubernetes types.

use std::collections::{HashMap, HashSet};

/// The request path's maps: seeded foldhash, several times cheaper per lookup than SipHash.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// The set counterpart of [`FastMap`].
pub(crate) type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::host::wildcard_parent;
use super::path::prefix_candidates;

/// Where a matched request goes.
#[derive(Debug)]
pub enum Backend {
    /// Ready endpoints of a Service port, balanced round-robin.
    Endpoints {
        /// `namespace/name` of the Service, for logs and metrics.
        service: Arc<str>,
        /// The ready endpoint addresses; never empty.
        addrs: Box<[SocketAddr]>,
        /// Round-robin cursor.
        next: AtomicUsize,
    },
    /// An ExternalName Service, resolved by DNS at connect time.
    External {
        /// `namespace/name` of the Service.
        service: Arc<str>,
        /// DNS name to connect to.
        host: String,
        /// Port to connect to.
        port: u16,
    },
    /// The backend cannot be served; requests get 503.
    Unavailable {
        /// `namespace/name` of the Service, or empty when there is none.
        service: Arc<str>,
        /// Why, for the log line.
        reason: &'static str,
    },
}

impl Backend {
    /// The Service this backend belongs to, `namespace/name`.
    pub fn service(&self) -> &str {
        match self {
            Backend::Endpoints { service, .. }
            | Backend::External { service, .. }
            | Backend::Unavailable { service, .. } => service,
        }
    }

    /// The Service name, shared (metric labels hold it without copying).
    pub fn service_name(&self) -> &Arc<str> {
        match self {
            Backend::Endpoints { service, .. }
            | Backend::External { service, .. }
            | Backend::Unavailable { service, .. } => service,
        }
    }

    /// The endpoint for the next request and the order to try the rest in on connect failure.
    pub fn pick(&self) -> Option<(usize, &[SocketAddr])> {
        match self {
            Backend::Endpoints { addrs, next, .. } => {
                Some((next.fetch_add(1, Ordering::Relaxed) % addrs.len(), addrs))
            }
            _ => None,
        }
    }
}

/// A matched path or default backend together with the Ingress it came from.
#[derive(Debug)]
pub struct Route {
    /// `namespace/name` of the Ingress, for logs and metrics.
    pub ingress: Arc<str>,
    /// Where requests go.
    pub backend: Arc<Backend>,
}

/// All rules of one host, merged over every Ingress that names it.
#[derive(Debug, Default)]
pub struct HostRoutes {
    /// Exact paths.
    pub(crate) exact: FastMap<Box<str>, Arc<Route>>,
    /// Prefix paths keyed by the path without trailing slashes (`/` is ``).
    pub(crate) prefix: FastMap<Box<str>, Arc<Route>>,
    /// The `spec.defaultBackend` of the oldest Ingress owning this host that has one.
    pub(crate) default: Option<Arc<Route>>,
}

impl HostRoutes {
    /// The route for `path` within this host: longest path, Exact before Prefix, then the
    /// host's default backend.
    pub fn lookup(&self, path: &str) -> Option<&Arc<Route>> {
        if !self.exact.is_empty()
            && let Some(r) = self.exact.get(path)
        {
            return Some(r);
        }
        prefix_candidates(path)
            .find_map(|key| self.prefix.get(key))
            .or(self.default.as_ref())
    }
}

/// Which host's rules a request was matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMatch {
    /// A precise host.
    Exact,
    /// A one-label wildcard.
    Wildcard,
    /// The rules without a host.
    Any,
    /// No host rules apply.
    None,
}

/// The answer to "where does this request go".
#[derive(Debug)]
pub struct Lookup<'a> {
    /// Which host rules were used.
    pub host: HostMatch,
    /// The route, or `None` for the built-in 404.
    pub route: Option<&'a Arc<Route>>,
}

/// An immutable routing table, built by `compile` and swapped atomically.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub(crate) exact_hosts: FastMap<Box<str>, HostRoutes>,
    pub(crate) wildcard_hosts: FastMap<Box<str>, HostRoutes>,
    pub(crate) any_host: Option<HostRoutes>,
    /// Section 5 steps 3 and 4: the catch-all Ingress, else the controller default backend.
    pub(crate) fallback: Option<Arc<Route>>,
    /// Controller default backend (step 4), also used when a host matched but nothing in it.
    pub(crate) controller_default: Option<Arc<Route>>,
    pub(crate) redirect_exact: FastSet<Box<str>>,
    pub(crate) redirect_wildcard: FastSet<Box<str>>,
}

impl RouteTable {
    /// Routes a request by normalised host (or `None` when absent) and raw path.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Lookup<'_> {
        let (which, rules) = match host {
            Some(h) => {
                if let Some(r) = self.exact_hosts.get(h) {
                    (HostMatch::Exact, Some(r))
                } else if let Some(r) = wildcard_parent(h).and_then(|p| self.wildcard_hosts.get(p))
                {
                    (HostMatch::Wildcard, Some(r))
                } else {
                    (HostMatch::Any, self.any_host.as_ref())
                }
            }
            None => (HostMatch::Any, self.any_host.as_ref()),
        };
        match rules {
            Some(rules) => Lookup {
                host: which,
                route: rules.lookup(path).or(self.controller_default.as_ref()),
            },
            None => Lookup {
                host: HostMatch::None,
                route: self.fallback.as_ref(),
            },
        }
    }

    /// Whether plain-HTTP requests for this normalised host are redirected to HTTPS.
    pub fn redirects_to_https(&self, host: &str) -> bool {
        (!self.redirect_exact.is_empty() && self.redirect_exact.contains(host))
            || (!self.redirect_wildcard.is_empty()
                && wildcard_parent(host).is_some_and(|p| self.redirect_wildcard.contains(p)))
    }

    /// Number of distinct hosts (exact + wildcard + host-less), for logs.
    pub fn host_count(&self) -> usize {
        self.exact_hosts.len() + self.wildcard_hosts.len() + usize::from(self.any_host.is_some())
    }
}
