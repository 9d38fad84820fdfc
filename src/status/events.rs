//! Recording events.k8s.io/v1 Events, shared by the status writer and the ACME issuer.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// Who reports an Event.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// `--controller-name`.
    pub controller: String,
    /// This replica's identity.
    pub instance: String,
}

/// Creates one Event about `regarding` (which must carry namespace and name).
pub async fn record(
    client: &Client,
    reporter: &Reporter,
    regarding: ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
) -> Result<(), kube::Error> {
    let ns = regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = regarding.name.clone().unwrap_or_default();
    let ev = Event {
        metadata: ObjectMeta {
            name: Some(event_name(&name)),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some("Reconcile".into()),
        reason: Some(reason.into()),
        note: Some(truncate(note, 1000)),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(truncate(&reporter.instance, 128)),
        regarding: Some(regarding),
        ..Default::default()
    };
    Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &ev)
        .await
        .map(|_| ())
}

/// `<object>.<random hex>`, as client-go names Events.
fn event_name(object: &str) -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("{}.{suffix}", truncate(object, 253 - 17))
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
