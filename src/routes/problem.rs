//! Problems found while compiling: each names the object, the field and a greppable reason.

use std::fmt;

/// The Kubernetes object a problem is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// Object kind, e.g. `Ingress`.
    pub kind: &'static str,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}

impl ObjectRef {
    /// A reference to an Ingress.
    pub fn ingress(namespace: &str, name: &str) -> Self {
        Self {
            kind: "Ingress",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Why an object is not (fully) served; the names are stable and become Event reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The referenced Service does not exist in the Ingress's namespace.
    ServiceNotFound,
    /// The Service has no port with the referenced number or name.
    ServicePortNotFound,
    /// The Service has no ready endpoints for the port.
    NoReadyEndpoints,
    /// `backend.resource` is not supported.
    UnsupportedBackend,
    /// An ExternalName Service while `--allow-external-name-services` is off.
    ExternalNameDisabled,
    /// Another, older Ingress already claims the same host, path and type.
    PathConflict,
    /// A path is not absolute or has no type.
    InvalidPath,
    /// A host is not a valid DNS name or one-label wildcard.
    InvalidHost,
    /// The TLS Secret does not exist.
    SecretNotFound,
    /// The TLS Secret exists but cannot be served (bad PEM, key mismatch, expired, wrong type).
    SecretInvalid,
    /// Another, older Ingress already names a different Secret for the same TLS host.
    TlsHostConflict,
    /// An annotation value is not understood.
    UnsupportedAnnotation,
    /// The controller default backend (`--default-backend`) cannot be resolved.
    DefaultBackendInvalid,
    /// Certificate annotations or TLS entries that cannot be turned into a certificate.
    BadConfig,
}

impl Reason {
    /// The stable name, used as Event reason and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::ServicePortNotFound => "ServicePortNotFound",
            Reason::NoReadyEndpoints => "NoReadyEndpoints",
            Reason::UnsupportedBackend => "UnsupportedBackend",
            Reason::ExternalNameDisabled => "ExternalNameDisabled",
            Reason::PathConflict => "PathConflict",
            Reason::InvalidPath => "InvalidPath",
            Reason::InvalidHost => "InvalidHost",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretInvalid => "SecretInvalid",
            Reason::TlsHostConflict => "TLSHostConflict",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::DefaultBackendInvalid => "DefaultBackendInvalid",
            Reason::BadConfig => "BadConfig",
        }
    }
}

/// One thing wrong with one object; the rest of the configuration is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Problem {
    /// The object at fault.
    pub object: ObjectRef,
    /// The field path inside the object, e.g. `spec.rules[0].http.paths[1].backend`.
    pub field: String,
    /// Greppable reason.
    pub reason: Reason,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} ({})",
            self.object,
            self.field,
            self.message,
            self.reason.as_str()
        )
    }
}
