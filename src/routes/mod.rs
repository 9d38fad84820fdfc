//! Pure routing: Kubernetes objects → an immutable `RouteTable`. No I/O, no async, no network.

mod compile;
mod host;
mod path;
mod problem;
mod table;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use compile::{
    CLASS_ANNOTATION, CompileOptions, Compiled, NamespacedName, PortRef, SSL_REDIRECT_ANNOTATION,
    SecretMaterial, ServiceRef, Snapshot, TLS_SECRET_TYPE, TlsBinding, compile, is_ours,
};
pub use host::{BadHost, HostPattern, normalize_request_host, wildcard_parent};
pub use path::{PathKind, has_dot_segment, prefix_candidates, prefix_key};
pub use problem::{ObjectRef, Problem, Reason};
pub use table::{Backend, HostMatch, HostRoutes, Lookup, Route, RouteTable};
