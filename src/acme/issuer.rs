//! The ACME controller. Every replica serves the challenges recorded in AcmeCertificate
//! status; the leader alone requests certificates for annotated Ingresses, orders, renews and
//! writes Secrets. An order's URL is stored before its challenges are presented, so a new
//! leader resumes the same order.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use instant_acme::{
    Account, AccountBuilder, AuthorizationStatus, ChallengeStatus as AcmeChallengeStatus,
    ChallengeType, Identifier, Key, NewOrder, Order, OrderStatus as AcmeOrderStatus, RetryPolicy,
};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::challenge::{http01_answers, tls_alpn_certificates, tls_alpn_key_authorizations};
use super::client::{AcmeHttp, RetryAfterSlot};
use super::desired::{INGRESS_LABEL, ShimOptions, desired_certificates};
use super::metrics::{AcmeMetrics, CertLabel, OrderLabels, ValidationLabels};
use super::schedule::{FailureClass, backoff, parse_go_duration, renewal_time, retry_after_time};
use crate::api::{
    AcmeCertificate, AcmeCertificateStatus, AcmeIssuer, AcmeIssuerConfig, AriStatus,
    CertificateAcmeStatus, ChallengeStatus, ClusterAcmeIssuer, IssuerAcmeStatus, IssuerStatus,
    SuggestedWindow,
};
use crate::proxy::Http01Answers;
use crate::source::kube::ClusterSource;
use crate::status::Published;
use crate::status::events::{Reporter, record};
use crate::tls::AlpnCertificates;

/// Settings of the ACME controller; they come from flags.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// Which Ingress annotations are read.
    pub shim: ShimOptions,
    /// First wait after a failed issuance (then ×10, ×100, one day).
    pub backoff_base: Duration,
    /// Wait after a challenge is served locally, for the other replicas to pick it up.
    pub propagation_delay: Duration,
    /// Namespace of ClusterAcmeIssuer account-key Secrets.
    pub cluster_resource_namespace: String,
    /// Longest wait between two ACME Renewal Information queries for one certificate.
    pub ari_max_poll: Duration,
    /// Who reports Events.
    pub reporter: Reporter,
}

/// The challenge answers published to the data plane of this replica.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// HTTP-01 tokens.
    pub http01: Http01Answers,
    /// TLS-ALPN-01 certificates.
    pub alpn: AlpnCertificates,
}

/// Every replica: keeps the challenge answers equal to what AcmeCertificate status records.
pub async fn serve_challenges(
    certs: Vec<Store<AcmeCertificate>>,
    changed: Arc<Notify>,
    answers: Answers,
    shutdown: CancellationToken,
) {
    let mut alpn_cache: HashMap<String, (String, Arc<CertifiedKey>)> = HashMap::new();
    loop {
        let list = all(&certs);
        answers.http01.store(Arc::new(http01_answers(&list)));
        alpn_cache = tls_alpn_certificates(&tls_alpn_key_authorizations(&list), &alpn_cache);
        let alpn: HashMap<String, Arc<CertifiedKey>> = alpn_cache
            .iter()
            .map(|(k, (_, c))| (k.clone(), c.clone()))
            .collect();
        answers.alpn.store(Arc::new(alpn));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changed.notified() => {}
        }
    }
}

/// The leader: keeps AcmeCertificates in line with annotated Ingresses, and issues and renews
/// them; idle while another replica leads.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    cfg: AcmeConfig,
    certs: Vec<Store<AcmeCertificate>>,
    changed: Arc<Notify>,
    source: ClusterSource,
    mut published: watch::Receiver<Arc<Published>>,
    mut leader: watch::Receiver<bool>,
    answers: Answers,
    metrics: AcmeMetrics,
    shutdown: CancellationToken,
) {
    let ctl = Arc::new(Controller {
        client,
        cfg,
        answers,
        metrics,
        accounts: tokio::sync::Mutex::new(HashMap::new()),
        retry_slots: Default::default(),
        retry_at: Default::default(),
    });
    let mut running: JoinSet<String> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut leader_open = true;
    loop {
        let mut next_wake = Duration::from_secs(30);
        if *leader.borrow_and_update() {
            let p = published.borrow_and_update().clone();
            ctl.sync_desired(&source, &certs, &p).await;
            let now = Timestamp::now().as_second();
            for cert in all(&certs) {
                let key = format!(
                    "{}/{}",
                    cert.namespace().unwrap_or_default(),
                    cert.name_any()
                );
                if in_flight.contains(&key) {
                    continue;
                }
                let secret = source.secret(
                    &cert.namespace().unwrap_or_default(),
                    &cert.spec.secret_name,
                );
                let retry_at = ctl.retry_at(&key);
                match decide(
                    &cert,
                    secret.as_deref(),
                    now,
                    ctl.cfg.backoff_base,
                    retry_at,
                ) {
                    Action::Wait(at) => {
                        let wait = Duration::from_secs(u64::try_from(at - now).unwrap_or(0).max(1));
                        next_wake = next_wake.min(wait);
                    }
                    Action::Adopt(info) => ctl.adopt(&cert, info).await,
                    Action::CheckAri(info) => ctl.check_ari(&cert, info).await,
                    Action::Issue(trigger) => {
                        if running.len() >= 4 {
                            next_wake = Duration::from_secs(1);
                            continue;
                        }
                        in_flight.insert(key.clone());
                        let (ctl, cert, shutdown) = (ctl.clone(), cert.clone(), shutdown.clone());
                        running.spawn(async move {
                            tokio::select! {
                                _ = ctl.issue(&cert, trigger) => {}
                                _ = shutdown.cancelled() => {}
                            }
                            key
                        });
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = published.changed() => if r.is_err() { return },
            r = leader.changed(), if leader_open => {
                leader_open = r.is_ok();
                if !*leader.borrow() {
                    running.abort_all();
                }
            }
            _ = changed.notified() => {}
            Some(done) = running.join_next() => {
                if let Ok(key) = done {
                    in_flight.remove(&key);
                } else {
                    in_flight.clear();
                }
            }
            _ = tokio::time::sleep(next_wake) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a certificate needs now.
#[derive(Debug, PartialEq)]
enum Action {
    /// Nothing until this unix time.
    Wait(i64),
    /// The Secret already holds a valid certificate for the names: record it, do not order.
    Adopt(CertInfo),
    /// Order now, for this reason (the `Issuing` condition's reason).
    Issue(&'static str),
    /// Ask the CA for its renewal window (RFC 9773).
    CheckAri(CertInfo),
}

/// What a Secret's certificate says.
#[derive(Debug, Clone, PartialEq)]
struct CertInfo {
    not_before: i64,
    not_after: i64,
    names: BTreeSet<String>,
    /// RFC 9773 certificate identifier, when the certificate has an Authority Key Identifier.
    cert_id: Option<String>,
}

fn cert_info(secret: &Secret) -> Option<CertInfo> {
    let pem = secret.data.as_ref()?.get("tls.crt")?;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem.0)
        .next()?
        .ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).ok()?;
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.insert(d.to_ascii_lowercase());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?),
                        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?),
                        _ => continue,
                    };
                    names.insert(ip.to_string());
                }
                _ => {}
            }
        }
    }
    let cert_id = instant_acme::CertificateIdentifier::try_from(&der)
        .ok()
        .map(|c| c.to_string());
    Some(CertInfo {
        not_before: x509.validity().not_before.timestamp(),
        not_after: x509.validity().not_after.timestamp(),
        names,
        cert_id,
    })
}

fn wanted_names(cert: &AcmeCertificate) -> BTreeSet<String> {
    cert.spec
        .dns_names
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .chain(cert.spec.ip_addresses.iter().cloned())
        .collect()
}

fn parse_time(s: &Option<String>) -> Option<i64> {
    s.as_deref()?
        .parse::<Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

fn format_time(unix: i64) -> String {
    Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Pure decision for one certificate at `now`; `retry_at` is the next attempt the CA asked
/// for with `Retry-After` as this leader remembers it, which with the one in the status
/// (written by whichever leader saw the failure) replaces the class backoff.
fn decide(
    cert: &AcmeCertificate,
    secret: Option<&Secret>,
    now: i64,
    backoff_base: Duration,
    retry_at: Option<i64>,
) -> Action {
    let status = cert.status.clone().unwrap_or_default();
    let retry_at = retry_at.max(parse_time(&status.next_attempt_time));
    if let Some(at) = retry_at
        && now < at
    {
        return Action::Wait(at);
    }
    if status
        .acme
        .as_ref()
        .and_then(|a| a.order.as_ref())
        .is_some()
    {
        return Action::Issue("Resuming");
    }
    let attempts = status.failed_issuance_attempts.unwrap_or(0);
    if attempts > 0
        && retry_at.is_none()
        && let Some(failed) = parse_time(&status.last_failure_time)
    {
        let retry = failed + backoff(attempts, backoff_base).as_secs() as i64;
        if now < retry {
            return Action::Wait(retry);
        }
    }
    let Some(info) = secret.and_then(cert_info) else {
        return Action::Issue("DoesNotExist");
    };
    if !wanted_names(cert).is_subset(&info.names) {
        return Action::Issue("RequestChanged");
    }
    if now >= info.not_after {
        return Action::Issue("Expired");
    }
    let renew_before = cert
        .spec
        .renew_before
        .as_deref()
        .and_then(parse_go_duration);
    let backstop = renewal_time(info.not_before, info.not_after, renew_before);
    if now >= backstop {
        return Action::Issue("Renewing");
    }
    // ARI: renew at the time drawn in the CA's window, at most once an hour.
    let ari = status
        .acme
        .as_ref()
        .and_then(|a| a.ari.as_ref())
        .filter(|a| Some(&a.cert_id) == info.cert_id.as_ref());
    let ari_time = ari.and_then(|a| parse_time(&a.selected_time));
    if let Some(t) = ari_time
        && now >= t
    {
        return match ari.and_then(|a| parse_time(&a.last_ari_renewal)) {
            Some(last) if now < last + 3600 => Action::Wait(last + 3600),
            _ => Action::Issue("Renewing"),
        };
    }
    if parse_time(&status.not_after) != Some(info.not_after) || !is_ready(&status) {
        return Action::Adopt(info);
    }
    let next_check = ari.and_then(|a| parse_time(&a.next_check));
    if info.cert_id.is_some() && next_check.is_none_or(|t| now >= t) {
        return Action::CheckAri(info);
    }
    let mut at = backstop;
    for t in [ari_time, next_check].into_iter().flatten() {
        at = at.min(t);
    }
    Action::Wait(at)
}

fn is_ready(status: &AcmeCertificateStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let now = Time(Timestamp::now());
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now;
        }
        c.status = status.into();
        c.reason = reason.into();
        c.message = message.into();
        c.observed_generation = generation;
        return;
    }
    conds.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    });
}

/// An issuance failure: its class and the message for conditions and Events.
#[derive(Debug)]
struct Failure {
    class: FailureClass,
    message: String,
}

impl From<instant_acme::Error> for Failure {
    fn from(e: instant_acme::Error) -> Self {
        let class = match &e {
            instant_acme::Error::Api(p) => {
                FailureClass::from_problem_type(p.r#type.as_deref().unwrap_or_default())
            }
            _ => FailureClass::Transient,
        };
        Failure {
            class,
            message: e.to_string(),
        }
    }
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        Failure {
            class: FailureClass::Transient,
            message: format!("Kubernetes API: {e}"),
        }
    }
}

fn failure(class: FailureClass, message: impl Into<String>) -> Failure {
    Failure {
        class,
        message: message.into(),
    }
}

struct Controller {
    client: Client,
    cfg: AcmeConfig,
    answers: Answers,
    metrics: AcmeMetrics,
    /// Accounts by issuer key, with the spec they were made from.
    accounts: tokio::sync::Mutex<HashMap<String, (AcmeIssuerConfig, Account)>>,
    /// The CA's last `Retry-After` by issuer key, shared with that issuer's HTTP client.
    retry_slots: std::sync::Mutex<HashMap<String, RetryAfterSlot>>,
    /// Next attempt (unix seconds) the CA asked for with `Retry-After`, by `namespace/name`:
    /// in force before the status written with it (`nextAttemptTime`) reaches the cache.
    retry_at: std::sync::Mutex<HashMap<String, i64>>,
}

impl Controller {
    /// The `Retry-After` slot of the issuer `issuer_key`.
    fn retry_slot(&self, issuer_key: &str) -> RetryAfterSlot {
        self.retry_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(issuer_key.to_owned())
            .or_default()
            .clone()
    }

    /// When the CA allows the next attempt for the certificate `key`, if it said so.
    fn retry_at(&self, key: &str) -> Option<i64> {
        self.retry_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    fn set_retry_at(&self, key: &str, at: Option<i64>) {
        let mut map = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
        match at {
            Some(at) => map.insert(key.to_owned(), at),
            None => map.remove(key),
        };
    }

    /// Creates, updates and deletes the AcmeCertificates annotated Ingresses ask for.
    async fn sync_desired(
        &self,
        source: &ClusterSource,
        certs: &[Store<AcmeCertificate>],
        p: &Published,
    ) {
        let ingresses = source.ingresses();
        let refs: Vec<&k8s_openapi::api::networking::v1::Ingress> =
            ingresses.iter().map(|i| i.as_ref()).collect();
        let ours: BTreeSet<(String, String)> = p
            .ours
            .iter()
            .map(|o| (o.namespace.clone(), o.name.clone()))
            .collect();
        let (desired, _problems) = desired_certificates(&refs, &ours, self.cfg.shim);
        // One pass over the cache, indexed, instead of a scan per desired certificate.
        let existing: HashMap<(String, String), Arc<AcmeCertificate>> = all(certs)
            .into_iter()
            .map(|c| ((c.namespace().unwrap_or_default(), c.name_any()), c))
            .collect();
        let mut wanted = HashSet::new();
        for d in &desired {
            let (ns, name) = (d.namespace().unwrap_or_default(), d.name_any());
            wanted.insert((ns.clone(), name.clone()));
            let current = existing.get(&(ns.clone(), name.clone()));
            if current
                .as_ref()
                .is_some_and(|c| c.spec == d.spec && c.metadata.labels == d.metadata.labels)
            {
                continue;
            }
            if let Some(c) = &current
                && !owned_by_an_ingress(c)
            {
                continue; // a user-made AcmeCertificate of the same name: leave it alone
            }
            let api: Api<AcmeCertificate> = Api::namespaced(self.client.clone(), &ns);
            let mut obj = serde_json::to_value(d).unwrap_or_default();
            obj["apiVersion"] = "portcullis.dev/v1alpha1".into();
            obj["kind"] = "AcmeCertificate".into();
            let pp = PatchParams::apply("portcullis").force();
            match api.patch(&name, &pp, &Patch::Apply(&obj)).await {
                Ok(_) => {
                    tracing::info!(certificate = %format!("{ns}/{name}"), "AcmeCertificate requested for an Ingress")
                }
                Err(e) => {
                    tracing::warn!(certificate = %format!("{ns}/{name}"), error = %e, "cannot write AcmeCertificate")
                }
            }
        }
        for ((ns, name), c) in &existing {
            if owned_by_an_ingress(c) && !wanted.contains(&(ns.clone(), name.clone())) {
                let api: Api<AcmeCertificate> = Api::namespaced(self.client.clone(), ns);
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {
                        tracing::info!(certificate = %format!("{ns}/{name}"), "AcmeCertificate no longer referenced; deleted")
                    }
                    Err(e) => {
                        tracing::warn!(certificate = %format!("{ns}/{name}"), error = %e, "cannot delete AcmeCertificate")
                    }
                }
            }
        }
    }

    fn certs_api(&self, cert: &AcmeCertificate) -> Api<AcmeCertificate> {
        Api::namespaced(self.client.clone(), &cert.namespace().unwrap_or_default())
    }

    /// Writes `status` as the whole status: fields it leaves empty are removed.
    async fn patch_status(
        &self,
        cert: &AcmeCertificate,
        status: &AcmeCertificateStatus,
    ) -> Result<(), kube::Error> {
        let mut patch = serde_json::json!({ "status": status });
        // A merge patch keeps keys it does not name: name the cleared ones as null.
        let st = &mut patch["status"];
        for k in [
            "acme",
            "failedIssuanceAttempts",
            "lastFailureTime",
            "notBefore",
            "notAfter",
            "renewalTime",
        ] {
            if st.get(k).is_none() {
                st[k] = serde_json::Value::Null;
            }
        }
        if st["acme"].is_object() {
            for k in ["order", "challenges"] {
                if st["acme"].get(k).is_none() {
                    st["acme"][k] = serde_json::Value::Null;
                }
            }
        }
        self.certs_api(cert)
            .patch_status(
                &cert.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn event(&self, cert: &AcmeCertificate, warning: bool, reason: &str, note: &str) {
        let regarding = ObjectReference {
            api_version: Some("portcullis.dev/v1alpha1".into()),
            kind: Some("AcmeCertificate".into()),
            namespace: cert.namespace(),
            name: Some(cert.name_any()),
            uid: cert.metadata.uid.clone(),
            ..Default::default()
        };
        if let Err(e) = record(
            &self.client,
            &self.cfg.reporter,
            regarding,
            warning,
            reason,
            note,
        )
        .await
        {
            tracing::debug!(error = %e, "cannot record Event");
        }
    }

    fn record_times(&self, cert: &AcmeCertificate, info: &CertInfo) -> i64 {
        let label = CertLabel {
            certificate: format!(
                "{}/{}",
                cert.namespace().unwrap_or_default(),
                cert.name_any()
            ),
        };
        let renew_before = cert
            .spec
            .renew_before
            .as_deref()
            .and_then(parse_go_duration);
        let renew_at = renewal_time(info.not_before, info.not_after, renew_before);
        self.metrics
            .not_after
            .get_or_create(&label)
            .set(info.not_after);
        self.metrics
            .renewal_time
            .get_or_create(&label)
            .set(renew_at);
        renew_at
    }

    /// Asks the CA for the current certificate's renewal window and draws the renewal time in it.
    async fn check_ari(&self, cert: &AcmeCertificate, info: CertInfo) {
        let Some(id) = info.cert_id.clone() else {
            return;
        };
        let (spec, account) = match self.account(cert).await {
            Ok(x) => x,
            Err(f) => {
                tracing::warn!(certificate = %cert.name_any(), error = %f.message, "cannot check renewal information");
                return;
            }
        };
        let now = Timestamp::now().as_second();
        let mut status = cert.status.clone().unwrap_or_default();
        let acme = status.acme.get_or_insert_with(Default::default);
        let mut ari = acme
            .ari
            .clone()
            .filter(|a| a.cert_id == id)
            .unwrap_or_else(|| AriStatus {
                cert_id: id.clone(),
                ..Default::default()
            });
        ari.last_checked = Some(format_time(now));
        if spec
            .renewal_information_source
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("none"))
        {
            ari.last_error =
                Some("ARI is off for this issuer (renewalInformationSource: None)".into());
            ari.selected_time = None;
            ari.next_check = Some(format_time(info.not_after));
        } else {
            let quoted = format!("\"{id}\"");
            let result =
                match serde_json::from_str::<instant_acme::CertificateIdentifier<'_>>(&quoted) {
                    Ok(cid) => account.renewal_info(&cid).await.map_err(|e| {
                        (
                            matches!(e, instant_acme::Error::Unsupported(_)),
                            e.to_string(),
                        )
                    }),
                    Err(e) => Err((true, e.to_string())),
                };
            match result {
                Ok((ri, retry_after)) => {
                    let start = ri.suggested_window.start.unix_timestamp();
                    let end = ri.suggested_window.end.unix_timestamp();
                    let window = SuggestedWindow {
                        start: format_time(start),
                        end: format_time(end),
                    };
                    if ari.suggested_window.as_ref() != Some(&window) || ari.selected_time.is_none()
                    {
                        let span = u64::try_from(end - start).unwrap_or(0) + 1;
                        let random = uuid::Uuid::new_v4().as_u128() as u64;
                        ari.selected_time = Some(format_time(start + (random % span) as i64));
                    }
                    ari.suggested_window = Some(window);
                    ari.explanation_url = ri.explanation_url;
                    ari.last_error = None;
                    let wait = retry_after
                        .min(self.cfg.ari_max_poll)
                        .max(Duration::from_secs(1));
                    ari.next_check = Some(format_time(now + wait.as_secs() as i64));
                }
                Err((unsupported, e)) => {
                    ari.last_error = Some(e);
                    let wait = if unsupported {
                        info.not_after - now
                    } else {
                        self.cfg.ari_max_poll.as_secs() as i64
                    };
                    ari.next_check = Some(format_time(now + wait.max(1)));
                }
            }
        }
        let renew_before = cert
            .spec
            .renew_before
            .as_deref()
            .and_then(parse_go_duration);
        let mut renew_at = renewal_time(info.not_before, info.not_after, renew_before);
        if let Some(t) = parse_time(&ari.selected_time) {
            renew_at = renew_at.min(t);
        }
        acme.ari = Some(ari);
        status.renewal_time = Some(format_time(renew_at));
        let label = CertLabel {
            certificate: format!(
                "{}/{}",
                cert.namespace().unwrap_or_default(),
                cert.name_any()
            ),
        };
        self.metrics
            .renewal_time
            .get_or_create(&label)
            .set(renew_at);
        if let Err(e) = self.patch_status(cert, &status).await {
            tracing::warn!(certificate = %cert.name_any(), error = %e, "cannot update status");
        }
    }

    /// Records an existing valid Secret as this certificate's, without ordering.
    async fn adopt(&self, cert: &AcmeCertificate, info: CertInfo) {
        let renew_at = self.record_times(cert, &info);
        let mut status = cert.status.clone().unwrap_or_default();
        status.not_before = Some(format_time(info.not_before));
        status.not_after = Some(format_time(info.not_after));
        status.renewal_time = Some(format_time(renew_at));
        let generation = cert.metadata.generation;
        set_condition(
            &mut status.conditions,
            "Ready",
            "True",
            "Ready",
            "Certificate is up to date and has not expired",
            generation,
        );
        if let Err(e) = self.patch_status(cert, &status).await {
            tracing::warn!(certificate = %cert.name_any(), error = %e, "cannot update status");
        }
    }

    /// One issuance attempt, with its status, Events and metrics.
    async fn issue(&self, cert: &AcmeCertificate, trigger: &'static str) {
        let id = format!(
            "{}/{}",
            cert.namespace().unwrap_or_default(),
            cert.name_any()
        );
        tracing::info!(certificate = %id, trigger, "issuing");
        let started = SystemTime::now();
        match self.try_issue(cert, trigger).await {
            Ok(()) => {
                self.set_retry_at(&id, None);
                self.metrics
                    .orders
                    .get_or_create(&OrderLabels {
                        result: "success".into(),
                    })
                    .inc();
            }
            Err(f) => {
                tracing::warn!(certificate = %id, class = f.class.as_str(), error = %f.message, "issuance failed");
                self.metrics
                    .orders
                    .get_or_create(&OrderLabels {
                        result: f.class.as_str().into(),
                    })
                    .inc();
                // Re-read: the attempt itself may have changed the status.
                let latest = self.certs_api(cert).get_status(&cert.name_any()).await.ok();
                let mut status = latest
                    .and_then(|c| c.status)
                    .or_else(|| cert.status.clone())
                    .unwrap_or_default();
                let attempts = status.failed_issuance_attempts.unwrap_or(0) + 1;
                status.failed_issuance_attempts = Some(attempts);
                status.last_failure_time = Some(format_time(Timestamp::now().as_second()));
                let keep_order = f.class == FailureClass::Transient;
                if let Some(acme) = status.acme.as_mut() {
                    acme.challenges.clear();
                    if !keep_order {
                        acme.order = None;
                    }
                }
                // A Retry-After the CA sent during this attempt replaces the class backoff.
                let retry_at = match f.class {
                    FailureClass::RateLimited | FailureClass::Transient => self
                        .retry_slot(&issuer_key(cert))
                        .take_since(started)
                        .map(|r| unix_ceil(retry_after_time(r.answered, r.delay))),
                    _ => None,
                };
                self.set_retry_at(&id, retry_at);
                status.next_attempt_time = retry_at.map(format_time);
                let mut msg = format!("{}: {}", f.class.as_str(), f.message);
                let note = match retry_at {
                    Some(at) => {
                        let why = match f.class {
                            FailureClass::RateLimited => "rate limited by the CA",
                            _ => "the CA asked to wait",
                        };
                        msg = format!(
                            "{msg}; {why}; next attempt at {} (Retry-After)",
                            format_time(at)
                        );
                        msg.clone()
                    }
                    None => format!(
                        "{msg}; next attempt in {}s",
                        backoff(attempts, self.cfg.backoff_base).as_secs()
                    ),
                };
                let generation = cert.metadata.generation;
                set_condition(
                    &mut status.conditions,
                    "Issuing",
                    "False",
                    "Failed",
                    &msg,
                    generation,
                );
                if !is_ready(&status) {
                    set_condition(
                        &mut status.conditions,
                        "Ready",
                        "False",
                        trigger_reason(trigger),
                        &msg,
                        generation,
                    );
                }
                if let Err(e) = self.patch_status(cert, &status).await {
                    tracing::warn!(certificate = %id, error = %e, "cannot update status");
                }
                let reason = match f.class {
                    FailureClass::RateLimited => "RateLimited",
                    _ => "Failed",
                };
                self.event(cert, true, reason, &note).await;
            }
        }
    }

    async fn try_issue(
        &self,
        cert: &AcmeCertificate,
        trigger: &'static str,
    ) -> Result<(), Failure> {
        let ns = cert.namespace().unwrap_or_default();
        let (issuer_cfg, account) = self.account(cert).await?;
        let generation = cert.metadata.generation;
        let mut status = cert.status.clone().unwrap_or_default();
        set_condition(
            &mut status.conditions,
            "Issuing",
            "True",
            trigger_reason(trigger),
            "Issuing certificate as a new order",
            generation,
        );
        self.patch_status(cert, &status).await?;

        let resumed = status
            .acme
            .as_ref()
            .and_then(|a| a.order.as_ref())
            .map(|o| o.url.clone());
        let mut order = match resumed {
            Some(url) => {
                let mut resumed = account.order(url.clone()).await.ok();
                let usable = resumed.as_mut().is_some_and(|o| {
                    matches!(
                        o.state().status,
                        AcmeOrderStatus::Pending | AcmeOrderStatus::Ready
                    )
                });
                match resumed {
                    Some(o) if usable => {
                        tracing::info!(certificate = %cert.name_any(), order = %url, "order resumed");
                        self.event(cert, false, "OrderResumed", &format!("Resumed order {url}"))
                            .await;
                        o
                    }
                    // Finalized or failed orders cannot be completed without their key: start anew.
                    _ => {
                        self.new_order(cert, &account, &issuer_cfg, &mut status)
                            .await?
                    }
                }
            }
            None => {
                self.new_order(cert, &account, &issuer_cfg, &mut status)
                    .await?
            }
        };

        if order.state().status == AcmeOrderStatus::Pending {
            let challenge_type = solver_type(&issuer_cfg);
            let presented = collect_challenges(&mut order, challenge_type.clone()).await?;
            let acme = status.acme.get_or_insert_with(Default::default);
            acme.challenges = presented.clone();
            if let Some(o) = acme.order.as_mut() {
                o.state = Some("pending".into());
            }
            self.patch_status(cert, &status).await?;
            self.await_local_answers(&presented).await;
            tokio::time::sleep(self.cfg.propagation_delay).await;
            self.event(
                cert,
                false,
                "ChallengePresented",
                &format!(
                    "Presented {} {} challenge(s)",
                    presented.len(),
                    challenge_type_name(&challenge_type)
                ),
            )
            .await;
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a?;
                if a.status != AuthorizationStatus::Pending {
                    continue;
                }
                let Some(mut ch) = a.challenge(challenge_type.clone()) else {
                    continue;
                };
                if ch.status == AcmeChallengeStatus::Pending {
                    ch.set_ready().await?;
                }
            }
            let state = order
                .poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(90)))
                .await?;
            let ty = challenge_type_name(&challenge_type).to_owned();
            if state == AcmeOrderStatus::Invalid {
                let detail = invalid_detail(&mut order).await;
                self.metrics
                    .validations
                    .get_or_create(&ValidationLabels {
                        r#type: ty,
                        result: "invalid".into(),
                    })
                    .inc();
                return Err(failure(FailureClass::Validation, detail));
            }
            self.metrics
                .validations
                .get_or_create(&ValidationLabels {
                    r#type: ty,
                    result: "valid".into(),
                })
                .inc();
        }
        if order.state().status == AcmeOrderStatus::Invalid {
            return Err(failure(FailureClass::Validation, "the order is invalid"));
        }

        // Finalize with a fresh ECDSA P-256 key (rotation policy Always).
        let key =
            rcgen::KeyPair::generate().map_err(|e| failure(FailureClass::Policy, e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(cert.spec.dns_names.clone())
            .map_err(|e| failure(FailureClass::Policy, format!("dnsNames: {e}")))?;
        for ip in &cert.spec.ip_addresses {
            let ip: std::net::IpAddr = ip.parse().map_err(|_| {
                failure(
                    FailureClass::Policy,
                    format!("ipAddresses: {ip:?} is not an IP address"),
                )
            })?;
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = &cert.spec.common_name {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn.as_str());
        }
        let csr = params
            .serialize_request(&key)
            .map_err(|e| failure(FailureClass::Policy, e.to_string()))?;
        order.finalize_csr(csr.der()).await?;
        let chain = order
            .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(60)))
            .await?;
        let key_pem = key.serialize_pem();

        let info = cert_info(&Secret {
            data: Some(
                [(
                    "tls.crt".to_owned(),
                    k8s_openapi::ByteString(chain.clone().into_bytes()),
                )]
                .into(),
            ),
            ..Default::default()
        })
        .ok_or_else(|| {
            failure(
                FailureClass::Policy,
                "the CA returned a certificate that cannot be parsed",
            )
        })?;
        self.write_secret(cert, &ns, &chain, &key_pem, &info)
            .await?;

        let renew_at = self.record_times(cert, &info);
        let latest = self.certs_api(cert).get_status(&cert.name_any()).await?;
        let mut status = latest.status.unwrap_or_default();
        // The new certificate gets its own renewal information at the next check.
        let old_ari = status.acme.as_ref().and_then(|a| a.ari.clone());
        let ari_renewal = old_ari
            .as_ref()
            .and_then(|a| parse_time(&a.selected_time))
            .is_some_and(|t| t <= Timestamp::now().as_second());
        let last_ari_renewal = if ari_renewal {
            Some(Timestamp::now().to_string())
        } else {
            old_ari.and_then(|a| a.last_ari_renewal)
        };
        status.acme = Some(CertificateAcmeStatus {
            ari: Some(AriStatus {
                cert_id: info.cert_id.clone().unwrap_or_default(),
                last_ari_renewal,
                ..Default::default()
            }),
            ..Default::default()
        });
        status.not_before = Some(format_time(info.not_before));
        status.not_after = Some(format_time(info.not_after));
        status.renewal_time = Some(format_time(renew_at));
        status.revision = Some(status.revision.unwrap_or(0) + 1);
        status.failed_issuance_attempts = None;
        status.last_failure_time = None;
        status.next_attempt_time = None;
        status.conditions.retain(|c| c.type_ != "Issuing");
        set_condition(
            &mut status.conditions,
            "Ready",
            "True",
            "Ready",
            "Certificate is up to date and has not expired",
            generation,
        );
        self.patch_status(cert, &status).await?;
        let note = format!(
            "Certificate issued; valid until {}, renewal at {}",
            format_time(info.not_after),
            format_time(renew_at)
        );
        self.event(cert, false, "Issued", &note).await;
        tracing::info!(certificate = %cert.name_any(), not_after = %format_time(info.not_after), "certificate issued");
        Ok(())
    }

    async fn new_order(
        &self,
        cert: &AcmeCertificate,
        account: &Account,
        issuer: &AcmeIssuerConfig,
        status: &mut AcmeCertificateStatus,
    ) -> Result<Order, Failure> {
        let mut ids: Vec<Identifier> = cert
            .spec
            .dns_names
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        for ip in &cert.spec.ip_addresses {
            let ip = ip
                .parse()
                .map_err(|_| failure(FailureClass::Policy, format!("ipAddresses: {ip:?}")))?;
            ids.push(Identifier::Ip(ip));
        }
        if ids.is_empty() {
            return Err(failure(
                FailureClass::Policy,
                "the certificate names no dnsNames or ipAddresses",
            ));
        }
        let profile = cert.spec.profile.clone().or_else(|| issuer.profile.clone());
        let new = || {
            let order = NewOrder::new(&ids);
            match profile.as_deref() {
                Some(p) => order.profile(p),
                None => order,
            }
        };
        // Renewals name the certificate they replace (RFC 9773), which exempts them from rate
        // limits; if the CA refuses that, order once more without it.
        let replaces = status
            .acme
            .as_ref()
            .and_then(|a| a.ari.as_ref())
            .map(|a| a.cert_id.clone());
        let replaces_json = replaces.as_ref().map(|id| format!("\"{id}\""));
        let cid = replaces_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<instant_acme::CertificateIdentifier<'_>>(j).ok());
        let order = match cid {
            Some(cid) => match account.new_order(&new().replaces(cid)).await {
                Ok(o) => {
                    let id = replaces.unwrap_or_default();
                    tracing::info!(certificate = %cert.name_any(), replaces = %id, "renewal names the certificate it replaces");
                    o
                }
                Err(e) => {
                    tracing::info!(certificate = %cert.name_any(), error = %e, "order with `replaces` refused; ordering without it");
                    account.new_order(&new()).await?
                }
            },
            None => account.new_order(&new()).await?,
        };
        let url = order.url().to_owned();
        // Persist the URL before any challenge is presented: a new leader resumes it.
        let acme = status.acme.get_or_insert_with(Default::default);
        acme.order = Some(crate::api::OrderStatus {
            url: url.clone(),
            state: Some("pending".into()),
        });
        acme.challenges.clear();
        self.patch_status(cert, status).await?;
        tracing::info!(certificate = %cert.name_any(), order = %url, "order created");
        self.event(cert, false, "OrderCreated", &format!("Created order {url}"))
            .await;
        Ok(order)
    }

    /// Waits (at most 10 s) until this replica's data plane answers every challenge.
    async fn await_local_answers(&self, presented: &[ChallengeStatus]) {
        for _ in 0..200 {
            let http = self.answers.http01.load();
            let alpn = self.answers.alpn.load();
            let all = presented.iter().all(|c| match c.type_.as_str() {
                "http-01" => http.get(&c.token) == Some(&c.key_authorization),
                _ => alpn.contains_key(&super::challenge::sni_name(&c.identifier)),
            });
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("challenge answers not visible locally after 10s; continuing");
    }

    async fn write_secret(
        &self,
        cert: &AcmeCertificate,
        ns: &str,
        chain: &str,
        key_pem: &str,
        info: &CertInfo,
    ) -> Result<(), Failure> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let name = &cert.spec.secret_name;
        let existing = api.get_opt(name).await?;
        if let Some(s) = &existing {
            let ann = s.metadata.annotations.clone().unwrap_or_default();
            if ann.contains_key("cert-manager.io/certificate-name")
                && ann.get("portcullis.dev/adopt").map(String::as_str) != Some("true")
            {
                return Err(failure(
                    FailureClass::Policy,
                    format!(
                        "Secret {ns}/{name} belongs to cert-manager; annotate it portcullis.dev/adopt=true to let Portcullis write it"
                    ),
                ));
            }
        }
        let mut annotations = existing
            .as_ref()
            .and_then(|s| s.metadata.annotations.clone())
            .unwrap_or_default();
        annotations.insert("portcullis.dev/certificate-name".into(), cert.name_any());
        annotations.insert(
            "portcullis.dev/issuer-name".into(),
            cert.spec.issuer_ref.name.clone(),
        );
        annotations.insert(
            "portcullis.dev/issuer-kind".into(),
            issuer_kind(cert).into(),
        );
        annotations.insert(
            "portcullis.dev/not-after".into(),
            format_time(info.not_after),
        );
        let mut labels = existing
            .as_ref()
            .and_then(|s| s.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert("app.kubernetes.io/managed-by".into(), "portcullis".into());
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_owned()),
                annotations: Some(annotations),
                labels: Some(labels),
                // Optimistic concurrency: the write fails if someone changed the Secret meanwhile.
                resource_version: existing
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    (
                        "tls.crt".to_owned(),
                        k8s_openapi::ByteString(chain.as_bytes().to_vec()),
                    ),
                    (
                        "tls.key".to_owned(),
                        k8s_openapi::ByteString(key_pem.as_bytes().to_vec()),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        };
        match existing {
            Some(_) => api.replace(name, &PostParams::default(), &secret).await?,
            None => api.create(&PostParams::default(), &secret).await?,
        };
        Ok(())
    }

    /// The ACME account of the certificate's issuer: created once, key kept in a Secret.
    async fn account(
        &self,
        cert: &AcmeCertificate,
    ) -> Result<(AcmeIssuerConfig, Account), Failure> {
        let r = &cert.spec.issuer_ref;
        let cert_ns = cert.namespace().unwrap_or_default();
        let cluster = issuer_kind(cert) == "ClusterAcmeIssuer";
        let cache_key = issuer_key(cert);
        let (spec, key_ns) = if cluster {
            let api: Api<ClusterAcmeIssuer> = Api::all(self.client.clone());
            let i = api.get_opt(&r.name).await?.ok_or_else(|| {
                failure(
                    FailureClass::Policy,
                    format!("ClusterAcmeIssuer {} not found", r.name),
                )
            })?;
            (i.spec.acme, self.cfg.cluster_resource_namespace.clone())
        } else {
            let api: Api<AcmeIssuer> = Api::namespaced(self.client.clone(), &cert_ns);
            let i = api.get_opt(&r.name).await?.ok_or_else(|| {
                failure(
                    FailureClass::Policy,
                    format!("AcmeIssuer {cert_ns}/{} not found", r.name),
                )
            })?;
            (i.spec.acme, cert_ns.clone())
        };
        if let Some((s, a)) = self.accounts.lock().await.get(&cache_key)
            && *s == spec
        {
            return Ok((spec, a.clone()));
        }
        let result = self
            .register(&spec, &key_ns, self.retry_slot(&cache_key))
            .await;
        let (ready, reason, message, acme) = match &result {
            Ok(a) => (
                "True",
                "ACMEAccountRegistered",
                "The ACME account was registered with the ACME server".to_owned(),
                Some(IssuerAcmeStatus {
                    uri: Some(a.id().to_owned()),
                    last_registered_email: spec.email.clone(),
                    account_thumbprint: Some(a.key_thumbprint().to_owned()),
                }),
            ),
            Err(f) => (
                "False",
                "ErrRegisterACMEAccount",
                format!("Failed to register ACME account: {}", f.message),
                None,
            ),
        };
        let mut conds = Vec::new();
        set_condition(&mut conds, "Ready", ready, reason, &message, None);
        let patch = serde_json::json!({ "status": IssuerStatus { conditions: conds, acme } });
        let pp = PatchParams::default();
        let _ = if cluster {
            Api::<ClusterAcmeIssuer>::all(self.client.clone())
                .patch_status(&r.name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
        } else {
            Api::<AcmeIssuer>::namespaced(self.client.clone(), &cert_ns)
                .patch_status(&r.name, &pp, &Patch::Merge(&patch))
                .await
                .map(|_| ())
        };
        let account = result?;
        self.accounts
            .lock()
            .await
            .insert(cache_key, (spec.clone(), account.clone()));
        Ok((spec, account))
    }

    async fn register(
        &self,
        spec: &AcmeIssuerConfig,
        key_ns: &str,
        retry_after: RetryAfterSlot,
    ) -> Result<Account, Failure> {
        let builder = builder(spec, retry_after)?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), key_ns);
        let ref_name = &spec.private_key_secret_ref.name;
        let key_field = spec
            .private_key_secret_ref
            .key
            .clone()
            .unwrap_or_else(|| "tls.key".into());
        let stored = secrets.get_opt(ref_name).await?;
        let pem = stored
            .as_ref()
            .and_then(|s| s.data.as_ref()?.get(&key_field))
            .map(|b| b.0.clone());
        let der = match pem {
            Some(pem) => PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| {
                failure(
                    FailureClass::Policy,
                    format!(
                        "Secret {key_ns}/{ref_name} key {key_field}: not a PKCS#8 P-256 key: {e}"
                    ),
                )
            })?,
            None if spec.disable_account_key_generation == Some(true) => {
                return Err(failure(
                    FailureClass::Policy,
                    format!(
                        "Secret {key_ns}/{ref_name} has no account key and key generation is disabled"
                    ),
                ));
            }
            None => {
                let (_, der) = Key::generate_pkcs8()?;
                let pem = PrivateKeyDer::Pkcs8(der.clone_key());
                let pem_text = pem_encode("PRIVATE KEY", pem.secret_der());
                let mut secret = stored.clone().unwrap_or_else(|| Secret {
                    metadata: ObjectMeta {
                        name: Some(ref_name.clone()),
                        namespace: Some(key_ns.to_owned()),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    ..Default::default()
                });
                secret.data.get_or_insert_with(Default::default).insert(
                    key_field.clone(),
                    k8s_openapi::ByteString(pem_text.into_bytes()),
                );
                match stored {
                    Some(_) => {
                        secrets
                            .replace(ref_name, &PostParams::default(), &secret)
                            .await?
                    }
                    None => secrets.create(&PostParams::default(), &secret).await?,
                };
                der
            }
        };
        let key = Key::from_pkcs8_der(der.clone_key())?;
        let (account, _) = builder
            .create_from_key((key, PrivateKeyDer::Pkcs8(der)), spec.server.clone())
            .await?;
        if let Some(email) = &spec.email {
            let contact = format!("mailto:{email}");
            if let Err(e) = account.update_contacts(&[contact.as_str()]).await {
                tracing::warn!(error = %e, "cannot set the account contact");
            }
        }
        tracing::info!(account = %account.id(), server = %spec.server, "ACME account ready");
        Ok(account)
    }
}

/// Every cached AcmeCertificate over all watched namespaces.
fn all(stores: &[Store<AcmeCertificate>]) -> Vec<Arc<AcmeCertificate>> {
    stores.iter().flat_map(|s| s.state()).collect()
}

fn owned_by_an_ingress(c: &AcmeCertificate) -> bool {
    c.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(INGRESS_LABEL))
        && c.metadata.owner_references.as_ref().is_some_and(|o| {
            o.iter()
                .any(|r| r.kind == "Ingress" && r.controller == Some(true))
        })
}

/// The key of the certificate's issuer in the account and `Retry-After` caches.
fn issuer_key(cert: &AcmeCertificate) -> String {
    let name = &cert.spec.issuer_ref.name;
    match issuer_kind(cert) {
        "ClusterAcmeIssuer" => format!("cluster/{name}"),
        _ => format!("{}/{name}", cert.namespace().unwrap_or_default()),
    }
}

/// Unix seconds of `t`, rounded up: waiting until then is never early.
fn unix_ceil(t: SystemTime) -> i64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)) as i64
}

fn issuer_kind(cert: &AcmeCertificate) -> &str {
    match cert.spec.issuer_ref.kind.as_deref() {
        Some("ClusterAcmeIssuer") => "ClusterAcmeIssuer",
        _ => "AcmeIssuer",
    }
}

fn trigger_reason(trigger: &str) -> &str {
    match trigger {
        "Resuming" => "Issuing",
        t => t,
    }
}

/// HTTP-01 unless the issuer's solvers ask only for TLS-ALPN-01.
fn solver_type(issuer: &AcmeIssuerConfig) -> ChallengeType {
    let any_http = issuer.solvers.is_empty() || issuer.solvers.iter().any(|s| s.http01.is_some());
    if !any_http && issuer.solvers.iter().any(|s| s.tls_alpn01.is_some()) {
        ChallengeType::TlsAlpn01
    } else {
        ChallengeType::Http01
    }
}

fn challenge_type_name(t: &ChallengeType) -> &'static str {
    match t {
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
        _ => "http-01",
    }
}

async fn collect_challenges(
    order: &mut Order,
    ty: ChallengeType,
) -> Result<Vec<ChallengeStatus>, Failure> {
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a?;
        if a.status != AuthorizationStatus::Pending {
            continue;
        }
        let identifier = identifier_name(a.identifier().identifier);
        let Some(ch) = a.challenge(ty.clone()) else {
            return Err(failure(
                FailureClass::Policy,
                format!(
                    "the CA offers no {} challenge for {identifier}",
                    challenge_type_name(&ty)
                ),
            ));
        };
        out.push(ChallengeStatus {
            identifier,
            type_: challenge_type_name(&ty).into(),
            token: ch.token.clone(),
            key_authorization: ch.key_authorization().as_str().to_owned(),
        });
    }
    Ok(out)
}

/// The name an ACME identifier stands for.
fn identifier_name(id: &Identifier) -> String {
    match id {
        Identifier::Dns(d) => d.clone(),
        Identifier::Ip(ip) => ip.to_string(),
        other => format!("{other:?}"),
    }
}

async fn invalid_detail(order: &mut Order) -> String {
    let mut details = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(Ok(a)) = authzs.next().await {
        for c in &a.challenges {
            if let Some(err) = &c.error {
                let ident = identifier_name(a.identifier().identifier);
                details.push(format!(
                    "{ident}: {}",
                    err.detail
                        .clone()
                        .unwrap_or_else(|| format!("{:?}", err.r#type))
                ));
            }
        }
    }
    if details.is_empty() {
        "validation failed".into()
    } else {
        details.join("; ")
    }
}

/// An account builder whose HTTP client trusts the issuer's `caBundle` (else the platform)
/// and records the CA's `Retry-After` into `retry_after`.
fn builder(
    spec: &AcmeIssuerConfig,
    retry_after: RetryAfterSlot,
) -> Result<AccountBuilder, Failure> {
    let ca_pem = match spec.ca_bundle.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    failure(FailureClass::Policy, format!("caBundle is not base64: {e}"))
                })?,
        ),
    };
    let http = AcmeHttp::new(ca_pem.as_deref(), retry_after)
        .map_err(|e| failure(FailureClass::Policy, e.to_string()))?;
    Ok(Account::builder_with_http(Box::new(http)))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AcmeCertificateSpec;

    /// A certificate whose last attempt failed at unix 1000, `attempts` times in a row.
    fn failed(attempts: i64, order_in_flight: bool) -> AcmeCertificate {
        let mut cert = AcmeCertificate::new("shop-tls", AcmeCertificateSpec::default());
        cert.status = Some(AcmeCertificateStatus {
            failed_issuance_attempts: Some(attempts),
            last_failure_time: Some(format_time(1000)),
            acme: order_in_flight.then(|| CertificateAcmeStatus {
                order: Some(crate::api::OrderStatus {
                    url: "https://ca.test/order/1".into(),
                    state: Some("pending".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        cert
    }

    const BASE: Duration = Duration::from_secs(60);

    #[test]
    fn without_retry_after_the_class_backoff_applies() {
        assert_eq!(
            decide(&failed(2, false), None, 1001, BASE, None),
            Action::Wait(1600)
        );
    }

    #[test]
    fn retry_after_replaces_a_longer_class_backoff() {
        let cert = failed(2, false);
        assert_eq!(
            decide(&cert, None, 1001, BASE, Some(1007)),
            Action::Wait(1007)
        );
        assert_eq!(
            decide(&cert, None, 1007, BASE, Some(1007)),
            Action::Issue("DoesNotExist")
        );
    }

    #[test]
    fn retry_after_replaces_a_shorter_class_backoff() {
        let cert = failed(1, false);
        assert_eq!(
            decide(&cert, None, 1061, BASE, Some(1300)),
            Action::Wait(1300)
        );
    }

    #[test]
    fn a_retry_after_in_the_status_holds_back_a_leader_that_did_not_see_it() {
        let mut cert = failed(2, false);
        if let Some(st) = cert.status.as_mut() {
            st.next_attempt_time = Some(format_time(1007));
        }
        assert_eq!(decide(&cert, None, 1001, BASE, None), Action::Wait(1007));
        assert_eq!(
            decide(&cert, None, 1007, BASE, None),
            Action::Issue("DoesNotExist")
        );
        // The later of the two wins when this leader also remembers one.
        assert_eq!(
            decide(&cert, None, 1001, BASE, Some(1010)),
            Action::Wait(1010)
        );
    }

    #[test]
    fn retry_after_holds_back_resuming_an_order() {
        let cert = failed(1, true);
        assert_eq!(
            decide(&cert, None, 1001, BASE, Some(1030)),
            Action::Wait(1030)
        );
        assert_eq!(
            decide(&cert, None, 1030, BASE, Some(1030)),
            Action::Issue("Resuming")
        );
    }
}
