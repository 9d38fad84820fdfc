//! Turning PEM bytes into a rustls `CertifiedKey`, with the checks that make it servable.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// `tls.crt` holds no PEM certificate.
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    /// `tls.crt` is not valid PEM.
    #[error("tls.crt is not valid PEM: {0}")]
    BadCertPem(String),
    /// `tls.key` holds no usable private key.
    #[error("tls.key holds no PEM private key: {0}")]
    BadKeyPem(String),
    /// The certificate cannot be parsed as X.509.
    #[error("tls.crt is not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    /// The key type is not supported or does not match the certificate.
    #[error("tls.key does not fit tls.crt: {0}")]
    KeyMismatch(#[source] rustls::Error),
    /// The certificate's validity has ended.
    #[error("certificate expired at {0} (unix time)")]
    Expired(i64),
    /// The certificate's validity has not started.
    #[error("certificate is not valid before {0} (unix time)")]
    NotYetValid(i64),
}

/// A certificate chain with its key, ready for rustls.
#[derive(Debug, Clone)]
pub struct ParsedCert {
    /// The chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// End of validity, unix seconds.
    pub not_after: i64,
}

/// Parses `tls.crt` (leaf first, then chain) and `tls.key` (PKCS#8, PKCS#1 or SEC1) and checks
/// that the key matches and that `now` (unix seconds) lies within the leaf's validity.
pub fn parse_material(cert_pem: &[u8], key_pem: &[u8], now: i64) -> Result<ParsedCert, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadCertPem(e.to_string()))?;
    let leaf = chain.first().ok_or(CertError::NoCertificate)?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| CertError::BadCertificate(e.to_string()))?;
    let not_before = x509.validity().not_before.timestamp();
    let not_after = x509.validity().not_after.timestamp();
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::BadKeyPem(e.to_string()))?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(provider()));
    let certified =
        CertifiedKey::from_der(chain, key, &provider).map_err(CertError::KeyMismatch)?;
    if now >= not_after {
        return Err(CertError::Expired(not_after));
    }
    if now < not_before {
        return Err(CertError::NotYetValid(not_before));
    }
    Ok(ParsedCert {
        key: Arc::new(certified),
        not_after,
    })
}

/// The one crypto provider of the binary.
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// A self-signed ECDSA P-256 certificate for `names`, as PEM (certificate, key); used as the
/// default certificate when none is configured, and by tests and the demo.
pub fn self_signed(names: &[&str]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("portcullis"),
    );
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}
