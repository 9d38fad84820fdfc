//! Logging (tracing subscriber, text or JSON) and the Prometheus metrics every part records to.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber; `RUST_LOG` overrides the default: `info`, with
/// rustls at `error` (it warns on every handshake whose SNI is an IP address, which clients
/// connecting by address send: a log line per connection, and client-controlled).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Labels of the per-request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of the Ingress, empty when none matched (shared with the route table).
    pub ingress: Arc<str>,
    /// `namespace/name` of the Service, empty when none (shared with the route table).
    pub service: Arc<str>,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status: &'static str,
}

/// The per-request counters, found without SipHash: prometheus-client's family hashes the
/// labels with SipHash on every lookup, which cost the fast path 6% of its instructions.
/// Each label set is looked up there once; its counter (sharing the family's value) is then
/// kept in an index with a cheaper hash (label values come from configuration).
#[derive(Debug, Default)]
pub struct RequestCounters {
    family: Family<RequestLabels, Counter>,
    index: RwLock<HashMap<RequestLabels, Counter, foldhash::fast::RandomState>>,
}

impl RequestCounters {
    /// Counts one request.
    pub fn inc(&self, labels: &RequestLabels) {
        if let Some(c) = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(labels)
        {
            c.inc();
            return;
        }
        let counter = self.family.get_or_create(labels).clone();
        counter.inc();
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(labels.clone(), counter);
    }
}

/// A label naming a listener (`http`, `https`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// Listener name.
    pub listener: &'static str,
}

/// A label naming a Service.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// `namespace/name`.
    pub service: String,
}

/// A label with a result (`success`, `failure`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// Outcome.
    pub result: &'static str,
}

/// A label naming a served certificate's Secret.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretLabel {
    /// `namespace/name`, or `(generated)` for the self-signed default.
    pub secret: String,
}

/// Every metric Portcullis exports.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by Ingress, Service and status class.
    pub requests: RequestCounters,
    /// Time from request head to response head, seconds.
    pub request_duration: Histogram,
    /// Failed connection attempts to upstream endpoints.
    pub upstream_connect_errors: Family<ServiceLabel, Counter>,
    /// Open client connections per listener.
    pub open_connections: Family<ListenerLabel, Gauge>,
    /// Configuration reloads by result.
    pub config_reloads: Family<ResultLabel, Counter>,
    /// Unix time of the last successful reload.
    pub last_reload_success: Gauge<f64, AtomicU64>,
    /// Problems in the current configuration.
    pub config_problems: Gauge,
    /// Certificate end of validity per served Secret, unix seconds.
    pub certificate_not_after: Family<SecretLabel, Gauge>,
    /// Registry holding all of the above.
    pub registry: Registry,
}

impl Metrics {
    /// Creates and registers every metric under the `portcullis_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = RequestCounters::default();
        let request_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let upstream_connect_errors = Family::<ServiceLabel, Counter>::default();
        let open_connections = Family::<ListenerLabel, Gauge>::default();
        let config_reloads = Family::<ResultLabel, Counter>::default();
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        let config_problems = Gauge::default();
        let certificate_not_after = Family::<SecretLabel, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by ingress, service and status class",
            requests.family.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to response head",
            request_duration.clone(),
        );
        registry.register(
            "upstream_connect_errors",
            "Failed connection attempts to upstream endpoints",
            upstream_connect_errors.clone(),
        );
        registry.register(
            "open_connections",
            "Open client connections",
            open_connections.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            config_reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration reload",
            last_reload_success.clone(),
        );
        registry.register(
            "config_problems",
            "Problems in the current configuration",
            config_problems.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "End of validity of each served certificate",
            certificate_not_after.clone(),
        );
        Self {
            requests,
            request_duration,
            upstream_connect_errors,
            open_connections,
            config_reloads,
            last_reload_success,
            config_problems,
            certificate_not_after,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_reach_the_exposition_per_label_set() {
        let m = Metrics::new();
        let labels = |ingress: &str, status| RequestLabels {
            ingress: Arc::from(ingress),
            service: Arc::from("ns/svc"),
            status,
        };
        for _ in 0..3 {
            m.requests.inc(&labels("ns/a", "2xx"));
        }
        m.requests.inc(&labels("ns/a", "5xx"));
        m.requests.inc(&labels("ns/b", "2xx"));
        let text = m.encode();
        for line in [
            r#"portcullis_http_requests_total{ingress="ns/a",service="ns/svc",status="2xx"} 3"#,
            r#"portcullis_http_requests_total{ingress="ns/a",service="ns/svc",status="5xx"} 1"#,
            r#"portcullis_http_requests_total{ingress="ns/b",service="ns/svc",status="2xx"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
