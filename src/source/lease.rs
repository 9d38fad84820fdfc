//! Leader election on a coordination.k8s.io/v1 Lease: one replica at a time writes status,
//! Events and (later) ACME orders. Every replica serves traffic regardless.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (`--election-id`).
    pub name: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews and others retry.
    pub retry: Duration,
}

/// Runs the election until `shutdown`, publishing whether this replica leads; on shutdown a
/// held lease is released so another replica takes over at once.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renew: Option<tokio::time::Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &cfg).await {
            Ok(true) => last_renew = Some(tokio::time::Instant::now()),
            Ok(false) => last_renew = None,
            Err(e) => tracing::debug!(error = %e, "lease update failed"),
        }
        // Leadership holds only while the last renewal is younger than the lease duration.
        let is_leader = last_renew.is_some_and(|t| t.elapsed() < cfg.duration);
        if *leading.borrow() != is_leader {
            tracing::info!(identity = %cfg.identity, lease = %cfg.name, leader = is_leader, "leadership changed");
            leading.send_replace(is_leader);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(cfg.retry) => {}
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        if let Err(e) = release(&api, &cfg).await {
            tracing::debug!(error = %e, "lease release failed");
        }
    }
}

async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let secs = i32::try_from(cfg.duration.as_secs()).unwrap_or(15);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == cfg.identity;
    if !mine && !holder.is_empty() {
        let held_for = spec.lease_duration_seconds.unwrap_or(secs);
        let expires = spec
            .renew_time
            .as_ref()
            .map(|t| t.0 + SignedDuration::from_secs(held_for.into()));
        if expires.is_some_and(|e| e > now) {
            return Ok(false);
        }
    }
    if !mine {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(secs);
    // `replace` carries the resourceVersion we read: a concurrent writer makes this fail (409).
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}
