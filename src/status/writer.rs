//! The leader-only writer of Ingress status and Events. Runs after every reload, on a
//! leadership change, and every 30 s; writes only what differs.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::networking::v1::IngressLoadBalancerIngress;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::desired::{LbAddress, addresses_from_service, status_updates};
use super::events::{Reporter, record};
use crate::routes::{NamespacedName, ObjectRef, Problem};
use crate::source::kube::ClusterSource;

/// Where the published address comes from.
#[derive(Debug, Clone)]
pub enum Publish {
    /// `--publish-service`.
    Service(NamespacedName),
    /// `--publish-address`.
    Addresses(Vec<LbAddress>),
    /// Neither: status is not written.
    Nothing,
}

/// Settings of the status writer.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// Source of the address.
    pub publish: Publish,
    /// `--controller-name`, the Events' reporting controller.
    pub controller_name: String,
    /// This replica's identity, the Events' reporting instance.
    pub identity: String,
}

/// What the latest reload decided, handed from the reload loop to the writer.
#[derive(Debug, Default)]
pub struct Published {
    /// Our Ingresses.
    pub ours: Vec<ObjectRef>,
    /// Current problems.
    pub problems: Vec<Problem>,
}

/// Writes status and Events while this replica leads, until `shutdown`.
pub async fn run(
    client: Client,
    cfg: StatusConfig,
    source: ClusterSource,
    mut published: watch::Receiver<Arc<Published>>,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut w = Writer {
        client,
        cfg,
        written: HashMap::new(),
        emitted: HashSet::new(),
    };
    // Without leader election nobody ever sends on `leader`; it stays `true`.
    let mut leader_open = true;
    loop {
        if *leader.borrow_and_update() {
            let p = published.borrow_and_update().clone();
            w.sync_status(&source, &p).await;
            w.emit_events(&source, &p.problems).await;
        } else {
            w.written.clear();
            w.emitted.clear();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = published.changed() => if r.is_err() { return },
            r = leader.changed(), if leader_open => leader_open = r.is_ok(),
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        // Coalesce bursts of reloads into one pass.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Writer {
    client: Client,
    cfg: StatusConfig,
    /// Last write per Ingress: what we wrote and the resourceVersion we decided on.
    written: HashMap<(String, String), (Vec<IngressLoadBalancerIngress>, Option<String>)>,
    /// Problems already reported as Events.
    emitted: HashSet<String>,
}

impl Writer {
    async fn addresses(&self) -> Option<Vec<LbAddress>> {
        match &self.cfg.publish {
            Publish::Nothing => None,
            Publish::Addresses(a) => Some(a.clone()),
            Publish::Service(s) => {
                let api: Api<Service> = Api::namespaced(self.client.clone(), &s.namespace);
                match api.get(&s.name).await {
                    Ok(svc) => Some(addresses_from_service(&svc)),
                    Err(e) => {
                        tracing::warn!(service = %s, error = %e, "cannot read --publish-service; status not updated");
                        None
                    }
                }
            }
        }
    }

    async fn sync_status(&mut self, source: &ClusterSource, p: &Published) {
        let Some(addresses) = self.addresses().await else {
            return;
        };
        let ours: BTreeSet<(String, String)> = p
            .ours
            .iter()
            .map(|o| (o.namespace.clone(), o.name.clone()))
            .collect();
        for u in status_updates(&source.ingresses(), &ours, &addresses) {
            let key = (u.namespace.clone(), u.name.clone());
            if self
                .written
                .get(&key)
                .is_some_and(|(want, rv)| *want == u.ingress && *rv == u.resource_version)
            {
                continue; // our write has not reached the cache yet
            }
            let api: Api<k8s_openapi::api::networking::v1::Ingress> =
                Api::namespaced(self.client.clone(), &u.namespace);
            let patch =
                serde_json::json!({ "status": { "loadBalancer": { "ingress": u.ingress } } });
            match api
                .patch_status(&u.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(ingress = %format!("{}/{}", u.namespace, u.name), addresses = u.ingress.len(), "status updated");
                    self.written.insert(key, (u.ingress, u.resource_version));
                }
                Err(e) => {
                    tracing::warn!(ingress = %format!("{}/{}", u.namespace, u.name), error = %e, "status update failed")
                }
            }
        }
    }

    async fn emit_events(&mut self, source: &ClusterSource, problems: &[Problem]) {
        let current: HashSet<String> = problems.iter().map(|p| p.to_string()).collect();
        self.emitted.retain(|k| current.contains(k));
        let uids: HashMap<(String, String), String> = source
            .ingresses()
            .iter()
            .filter_map(|i| {
                Some((
                    (i.metadata.namespace.clone()?, i.metadata.name.clone()?),
                    i.metadata.uid.clone()?,
                ))
            })
            .collect();
        for p in problems {
            let key = p.to_string();
            if self.emitted.contains(&key) {
                continue;
            }
            let api_version = match p.object.kind {
                "Ingress" => "networking.k8s.io/v1",
                _ => "v1",
            };
            let uid = uids
                .get(&(p.object.namespace.clone(), p.object.name.clone()))
                .cloned();
            let regarding = ObjectReference {
                api_version: Some(api_version.into()),
                kind: Some(p.object.kind.into()),
                namespace: Some(p.object.namespace.clone()),
                name: Some(p.object.name.clone()),
                uid,
                ..Default::default()
            };
            let reporter = Reporter {
                controller: self.cfg.controller_name.clone(),
                instance: self.cfg.identity.clone(),
            };
            let note = format!("{}: {}", p.field, p.message);
            match record(
                &self.client,
                &reporter,
                regarding,
                true,
                p.reason.as_str(),
                &note,
            )
            .await
            {
                Ok(()) => {
                    self.emitted.insert(key);
                }
                Err(e) => tracing::warn!(object = %p.object, error = %e, "cannot record Event"),
            }
        }
    }
}
