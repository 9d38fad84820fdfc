//! Challenge answers every replica serves, built from the `status.acme.challenges` of
//! AcmeCertificates: HTTP-01 tokens and TLS-ALPN-01 certificates (RFC 8737).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::api::AcmeCertificate;

/// The ALPN protocol of TLS-ALPN-01.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// HTTP-01 answers: token → key authorization.
pub fn http01_answers(certs: &[Arc<AcmeCertificate>]) -> HashMap<String, String> {
    challenges(certs, "http-01")
        .map(|c| (c.token.clone(), c.key_authorization.clone()))
        .collect()
}

/// TLS-ALPN-01 key authorizations by identifier (lower-case DNS name, or the reverse-DNS name
/// of an IP address as RFC 8738 sends it in SNI).
pub fn tls_alpn_key_authorizations(certs: &[Arc<AcmeCertificate>]) -> HashMap<String, String> {
    challenges(certs, "tls-alpn-01")
        .map(|c| (sni_name(&c.identifier), c.key_authorization.clone()))
        .collect()
}

fn challenges<'a>(
    certs: &'a [Arc<AcmeCertificate>],
    ty: &'a str,
) -> impl Iterator<Item = &'a crate::api::ChallengeStatus> + 'a {
    certs
        .iter()
        .filter_map(|c| c.status.as_ref()?.acme.as_ref())
        .flat_map(|a| a.challenges.iter())
        .filter(move |c| c.type_ == ty)
}

/// The SNI a validation server sends for an identifier.
pub fn sni_name(identifier: &str) -> String {
    match identifier.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            let o = ip.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let hex: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
            let mut parts: Vec<String> = hex.chars().rev().map(|c| c.to_string()).collect();
            parts.push("ip6.arpa".into());
            parts.join(".")
        }
        Err(_) => identifier.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// A self-signed certificate for `identifier` carrying the critical acmeIdentifier extension
/// with SHA-256 of `key_authorization`; served only to `acme-tls/1` handshakes.
pub fn tls_alpn_certificate(
    identifier: &str,
    key_authorization: &str,
) -> Result<Arc<CertifiedKey>, String> {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let san = match identifier.parse::<std::net::IpAddr>() {
        Ok(ip) => rcgen::SanType::IpAddress(ip),
        Err(_) => rcgen::SanType::DnsName(
            identifier
                .try_into()
                .map_err(|e: rcgen::Error| e.to_string())?,
        ),
    };
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![san];
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// Builds the TLS-ALPN-01 certificates, reusing those whose key authorization is unchanged.
pub fn tls_alpn_certificates(
    wanted: &HashMap<String, String>,
    previous: &HashMap<String, (String, Arc<CertifiedKey>)>,
) -> HashMap<String, (String, Arc<CertifiedKey>)> {
    let mut out = HashMap::new();
    for (name, key_auth) in wanted {
        if let Some((ka, cert)) = previous.get(name).filter(|(ka, _)| ka == key_auth) {
            out.insert(name.clone(), (ka.clone(), cert.clone()));
            continue;
        }
        match tls_alpn_certificate(name, key_auth) {
            Ok(cert) => {
                out.insert(name.clone(), (key_auth.clone(), cert));
            }
            Err(e) => {
                tracing::warn!(identifier = %name, error = %e, "cannot build the TLS-ALPN-01 certificate")
            }
        }
    }
    out
}
