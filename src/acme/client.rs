//! The HTTP client of ACME accounts: the hyper + rustls client instant-acme would use, trusting
//! either the platform verifier or only the issuer's `caBundle`, which also remembers the CA's
//! `Retry-After` on 429 and 503 answers (instant-acme's errors drop response headers).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::schedule::parse_retry_after;

/// Why an ACME HTTP client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The `caBundle` holds no PEM certificate.
    #[error("caBundle holds no PEM certificate")]
    NoCertificate,
    /// The `caBundle` is not valid PEM.
    #[error("caBundle is not valid PEM: {0}")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// rustls refused a `caBundle` certificate or the TLS settings.
    #[error("TLS setup: {0}")]
    Tls(#[source] rustls::Error),
}

/// A `Retry-After` the CA sent: when it answered and how long it asked to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// When the answer arrived.
    pub answered: SystemTime,
    /// The wait it asked for (zero for a date in the past).
    pub delay: Duration,
}

/// The last `Retry-After` of one issuer's CA, written by its HTTP client and taken by the
/// issuer when it classifies a failed attempt.
#[derive(Debug, Clone, Default)]
pub struct RetryAfterSlot(Arc<Mutex<Option<RetryAfter>>>);

impl RetryAfterSlot {
    fn record(&self, retry: RetryAfter) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(retry);
    }

    /// Takes the recorded `Retry-After` if it arrived at or after `since` (the start of the
    /// failed attempt), so an older answer never delays a later attempt.
    pub fn take_since(&self, since: SystemTime) -> Option<RetryAfter> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|r| r.answered >= since)
    }
}

/// instant-acme's HTTP client plus the `Retry-After` record.
pub struct AcmeHttp {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfterSlot,
}

impl AcmeHttp {
    /// A client trusting only the certificates of `ca_pem`, or the platform's verifier when
    /// `None`; it records `Retry-After` into `retry_after`.
    pub fn new(
        ca_pem: Option<&[u8]>,
        retry_after: RetryAfterSlot,
    ) -> Result<Self, HttpClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(HttpClientError::Tls)?;
        let config = match ca_pem {
            None => {
                use hyper_rustls::ConfigBuilderExt;
                config
                    .try_with_platform_verifier()
                    .map_err(HttpClientError::Tls)?
            }
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for der in CertificateDer::pem_slice_iter(pem) {
                    let der = der.map_err(HttpClientError::Pem)?;
                    roots.add(der).map_err(HttpClientError::Tls)?;
                }
                if roots.is_empty() {
                    return Err(HttpClientError::NoCertificate);
                }
                config.with_root_certificates(roots)
            }
        };
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config.with_no_client_auth())
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry_after,
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.client.request(req);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let rsp = response
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if matches!(
                rsp.status(),
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let answered = SystemTime::now();
                let delay = rsp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, answered));
                if let Some(delay) = delay {
                    slot.record(RetryAfter { answered, delay });
                }
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_is_taken_once_and_only_by_a_later_attempt() {
        let slot = RetryAfterSlot::default();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let retry = RetryAfter {
            answered: t,
            delay: Duration::from_secs(7),
        };
        slot.record(retry);
        assert_eq!(slot.take_since(t + Duration::from_secs(1)), None);
        slot.record(retry);
        assert_eq!(slot.take_since(t), Some(retry));
        assert_eq!(slot.take_since(t), None);
    }
}
