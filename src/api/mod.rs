//! Our CRDs (group `portcullis.dev`, version `v1alpha1`), the source of `crds/`. Field names
//! follow cert-manager's so users can carry their issuer and certificate YAML over.
// Each `printcolumn(...)` repeats `type_ = "string"`; clippy mistakes that for a duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec shared by `ClusterAcmeIssuer` and `AcmeIssuer`.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "ClusterAcmeIssuer",
    status = "IssuerStatus",
    shortname = "cacmeissuer",
    category = "portcullis",
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "STATUS",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ClusterAcmeIssuerSpec {
    /// The ACME settings.
    pub acme: AcmeIssuerConfig,
}

/// A namespaced issuer; certificates may use it only from its own namespace.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "AcmeIssuer",
    namespaced,
    status = "IssuerStatus",
    shortname = "acmeissuer",
    category = "portcullis",
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "STATUS",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct AcmeIssuerSpec {
    /// The ACME settings.
    pub acme: AcmeIssuerConfig,
}

/// cert-manager's `spec.acme` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuerConfig {
    /// ACME directory URL.
    pub server: String,
    /// Contact e-mail for the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Secret holding the account key (P-256 PKCS#8 PEM); generated when absent.
    pub private_key_secret_ref: SecretKeySelector,
    /// Do not generate an account key; a missing one makes the issuer not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_account_key_generation: Option<bool>,
    /// External account binding, for CAs that require it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// PEM bundle of CAs trusted for the ACME server (base64, as in cert-manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Default order profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `ARI` (default): renew in the CA's ACME Renewal Information window when it offers one;
    /// `None`: follow the lifetime schedule only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_information_source: Option<String>,
    /// How certificates are validated; HTTP-01 when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub solvers: Vec<AcmeSolver>,
}

/// A reference to one key of a Secret in the issuer's namespace (the controller's, for
/// cluster issuers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeySelector {
    /// Secret name.
    pub name: String,
    /// Key in the Secret; `tls.key` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// External account binding credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    /// Key identifier from the CA.
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// Secret holding the base64url MAC key.
    pub key_secret_ref: SecretKeySelector,
    /// Accepted and ignored (deprecated in cert-manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<String>,
}

/// One solver: which challenge type validates which names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeSolver {
    /// Which names this solver applies to; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<SolverSelector>,
    /// Answer HTTP-01 in the data plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http01: Option<serde_json::Map<String, serde_json::Value>>,
    /// Answer TLS-ALPN-01 in the data plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_alpn01: Option<serde_json::Map<String, serde_json::Value>>,
}

/// cert-manager's solver selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverSelector {
    /// Exact names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// Zones (the name and every name below it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_zones: Vec<String>,
    /// Labels the AcmeCertificate must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Status of an issuer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerStatus {
    /// `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The ACME account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<IssuerAcmeStatus>,
}

/// The ACME account of an issuer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerAcmeStatus {
    /// Account URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// E-mail last registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_registered_email: Option<String>,
    /// JWK thumbprint of the account key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_thumbprint: Option<String>,
}

/// A certificate obtained over ACME and stored in a `kubernetes.io/tls` Secret.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "AcmeCertificate",
    namespaced,
    status = "AcmeCertificateStatus",
    shortname = "acmecert",
    category = "portcullis",
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "SECRET", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(name = "ISSUER", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "EXPIRATION", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(
        name = "STATUS",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AcmeCertificateSpec {
    /// The Secret the certificate is written to.
    pub secret_name: String,
    /// DNS names of the certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// IP addresses of the certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// Optional common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// The issuer.
    pub issuer_ref: IssuerRef,
    /// Requested lifetime (informational: the CA's profile decides), e.g. `2160h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Renew at the latest this long before expiry, e.g. `720h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    /// The certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,
    /// Order profile; overrides the issuer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A reference to an issuer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuerRef {
    /// Issuer name.
    pub name: String,
    /// `ClusterAcmeIssuer` or `AcmeIssuer` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `portcullis.dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The certificate key (cert-manager's fields; ECDSA P-256 PKCS#8 is what is issued today).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeySpec {
    /// `ECDSA` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// 256 (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i32>,
    /// `PKCS8` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `Always` (default): a new key for every issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<String>,
}

/// Status of an AcmeCertificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeCertificateStatus {
    /// `Ready` and `Issuing` conditions (cert-manager's types and reasons).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Start of the current certificate's validity (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// End of the current certificate's validity (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the certificate will be renewed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// Number of issuances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// When the last issuance failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
    /// The earliest next attempt the CA allowed with `Retry-After` after the last failure
    /// (RFC 3339); every leader waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<String>,
    /// Failed attempts since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i64>,
    /// The order in flight and the challenges every replica answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<CertificateAcmeStatus>,
}

/// ACME state of a certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CertificateAcmeStatus {
    /// The order in flight; its URL is where a new leader resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderStatus>,
    /// Pending challenges, answered by every replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<ChallengeStatus>,
    /// ACME Renewal Information (RFC 9773) for the current certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari: Option<AriStatus>,
}

/// What the CA last said about renewing the current certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AriStatus {
    /// The RFC 9773 identifier of the current certificate.
    #[serde(rename = "certID")]
    pub cert_id: String,
    /// The suggested window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_window: Option<SuggestedWindow>,
    /// The CA's explanation of the window.
    #[serde(
        default,
        rename = "explanationURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub explanation_url: Option<String>,
    /// The time drawn in the window (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_time: Option<String>,
    /// Last query (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Next query (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check: Option<String>,
    /// Why the last query failed, or that the CA offers no ARI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Last renewal triggered by ARI (RFC 3339); at most one an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ari_renewal: Option<String>,
}

/// An RFC 9773 suggested renewal window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SuggestedWindow {
    /// Start (RFC 3339).
    pub start: String,
    /// End (RFC 3339).
    pub end: String,
}

/// An ACME order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderStatus {
    /// Order URL.
    pub url: String,
    /// Last known state (`pending`, `ready`, `processing`, `valid`, `invalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// One challenge to answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    /// The DNS name or IP validated.
    pub identifier: String,
    /// `http-01` or `tls-alpn-01`.
    #[serde(rename = "type")]
    pub type_: String,
    /// HTTP-01 token.
    pub token: String,
    /// Key authorization (HTTP-01 answer; its SHA-256 is the TLS-ALPN-01 digest).
    pub key_authorization: String,
}

/// Every CRD as YAML, in a stable order, for `crds/`.
pub fn crd_files() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;
    let yaml = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        format!("---\n{}", serde_yaml_ng::to_string(&crd).expect("a CRD serialises"))
    };
    vec![
        (
            "clusteracmeissuers.portcullis.dev.yaml",
            yaml(ClusterAcmeIssuer::crd()),
        ),
        ("acmeissuers.portcullis.dev.yaml", yaml(AcmeIssuer::crd())),
        (
            "acmecertificates.portcullis.dev.yaml",
            yaml(AcmeCertificate::crd()),
        ),
    ]
}
