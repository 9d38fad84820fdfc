//! ACME metrics: certificate expiry and renewal time, orders by result, validations by type.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming one AcmeCertificate.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// `namespace/name`.
    pub certificate: String,
}

/// Labels of the order counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabels {
    /// `success` or a failure class.
    pub result: String,
}

/// Labels of the validation counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationLabels {
    /// `http-01` or `tls-alpn-01`.
    pub r#type: String,
    /// `valid` or `invalid`.
    pub result: String,
}

/// The ACME metrics.
#[derive(Debug, Clone, Default)]
pub struct AcmeMetrics {
    /// End of validity of each managed certificate, unix seconds.
    pub not_after: Family<CertLabel, Gauge>,
    /// Planned renewal of each managed certificate, unix seconds.
    pub renewal_time: Family<CertLabel, Gauge>,
    /// Orders by result.
    pub orders: Family<OrderLabels, Counter>,
    /// Challenge validations by type and result.
    pub validations: Family<ValidationLabels, Counter>,
}

impl AcmeMetrics {
    /// Registers the ACME metrics in `registry` (prefix `portcullis_acme_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("acme");
        r.register(
            "certificate_not_after_timestamp_seconds",
            "End of validity of each managed certificate",
            m.not_after.clone(),
        );
        r.register(
            "certificate_renewal_timestamp_seconds",
            "Planned renewal of each managed certificate",
            m.renewal_time.clone(),
        );
        r.register("orders", "ACME orders by result", m.orders.clone());
        r.register(
            "challenge_validations",
            "Challenge validations by type and result",
            m.validations.clone(),
        );
        m
    }
}
