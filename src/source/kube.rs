//! Cluster source: kube-runtime reflectors for the five kinds the compile step reads.
//! Readiness waits for every reflector's first list; each change wakes a `Notify`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::routes::{Snapshot, TLS_SECRET_TYPE};

/// A future that drives one reflector until the process ends.
pub type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Read handles on every reflector's cache.
#[derive(Clone)]
pub struct ClusterSource {
    ingresses: Vec<Store<Ingress>>,
    classes: Store<IngressClass>,
    services: Vec<Store<Service>>,
    slices: Vec<Store<EndpointSlice>>,
    secrets: Vec<Store<Secret>>,
}

impl std::fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSource").finish_non_exhaustive()
    }
}

impl ClusterSource {
    /// Builds reflectors over all namespaces, or only `namespaces` when given (IngressClasses
    /// are cluster-scoped and always watched). The returned drivers must be spawned; each
    /// change calls `changed.notify_one()`.
    pub fn new(
        client: &Client,
        namespaces: &[String],
        changed: &Arc<Notify>,
    ) -> (Self, Vec<Driver>) {
        let mut drivers = Vec::new();
        let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        let plain = watcher::Config::default().any_semantic();
        let tls = watcher::Config::default()
            .any_semantic()
            .fields(&format!("type={TLS_SECRET_TYPE}"));
        let each = |cfg: &watcher::Config| -> Vec<_> {
            scopes.iter().map(|ns| (*ns, cfg.clone())).collect()
        };
        let ingresses = reflect_all::<Ingress>(client, each(&plain), changed, &mut drivers);
        let services = reflect_all::<Service>(client, each(&plain), changed, &mut drivers);
        let slices = reflect_all::<EndpointSlice>(client, each(&plain), changed, &mut drivers);
        let secrets = reflect_all::<Secret>(client, each(&tls), changed, &mut drivers);
        let classes =
            reflect::<IngressClass>(Api::all(client.clone()), plain, changed, &mut drivers);
        (
            Self {
                ingresses,
                classes,
                services,
                slices,
                secrets,
            },
            drivers,
        )
    }

    /// Resolves once every reflector has listed its objects once.
    pub async fn wait_until_ready(&self) {
        for s in &self.ingresses {
            let _ = s.wait_until_ready().await;
        }
        let _ = self.classes.wait_until_ready().await;
        for s in &self.services {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.slices {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.secrets {
            let _ = s.wait_until_ready().await;
        }
    }

    /// Every cached object, shared with the cache (no object is copied), for the compile step.
    pub fn snapshot(&self) -> Snapshot {
        fn all<K: Clone + Resource<DynamicType = ()>>(stores: &[Store<K>]) -> Vec<Arc<K>> {
            stores.iter().flat_map(|s| s.state()).collect()
        }
        Snapshot {
            ingresses: all(&self.ingresses),
            ingress_classes: self.classes.state(),
            services: all(&self.services),
            endpoint_slices: all(&self.slices),
            secrets: all(&self.secrets),
        }
    }

    /// A cached TLS Secret.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets.iter().find_map(|s| {
            s.find(|o| {
                o.metadata.namespace.as_deref() == Some(namespace)
                    && o.metadata.name.as_deref() == Some(name)
            })
        })
    }

    /// The cached Ingresses (with their current status), for the status writer.
    pub fn ingresses(&self) -> Vec<Arc<Ingress>> {
        self.ingresses.iter().flat_map(|s| s.state()).collect()
    }
}

fn reflect_all<K>(
    client: &Client,
    scopes: Vec<(Option<&str>, watcher::Config)>,
    changed: &Arc<Notify>,
    drivers: &mut Vec<Driver>,
) -> Vec<Store<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    scopes
        .into_iter()
        .map(|(ns, cfg)| {
            let api = match ns {
                Some(ns) => Api::<K>::namespaced(client.clone(), ns),
                None => Api::<K>::all(client.clone()),
            };
            reflect(api, cfg, changed, drivers)
        })
        .collect()
}

/// A reflector over `api`: the returned store fills from a watch driven by a future pushed on
/// `drivers`; every change wakes `changed`.
pub fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    changed: &Arc<Notify>,
    drivers: &mut Vec<Driver>,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let kind = K::kind(&()).into_owned();
    let changed = changed.clone();
    let stream = watcher(api, cfg)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer);
    drivers.push(Box::pin(async move {
        let mut stream = std::pin::pin!(stream);
        let mut healthy = true;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => {
                    if !healthy {
                        tracing::info!(kind = %kind, "watch resumed");
                        healthy = true;
                    }
                    changed.notify_one();
                }
                Err(e) => {
                    if healthy {
                        tracing::warn!(kind = %kind, error = %e, "watch failed; the last good configuration keeps serving while it retries");
                        healthy = false;
                    }
                }
            }
        }
    }));
    reader
}
