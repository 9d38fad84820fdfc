//! TLS termination: PEM → certified keys (pure), the SNI store swapped atomically, and the
//! rustls certificate resolver. Knows nothing of where certificates come from.

mod material;
mod store;

#[cfg(test)]
mod tests;

pub use material::{CertError, ParsedCert, parse_material, self_signed};
pub use store::{AlpnCertificates, CertIssue, Entry, Resolver, Store, server_config};
