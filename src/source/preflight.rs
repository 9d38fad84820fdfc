//! Start-up check of the controller's RBAC: every permission it needs is asked of the API
//! server (SelfSubjectAccessReview), and a missing one fails start-up with a clear message.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::cli::ServeArgs;

/// One permission: verb, API group, resource (with subresource) and namespace (None = all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Verb, e.g. `watch`.
    pub verb: &'static str,
    /// API group, empty for core.
    pub group: &'static str,
    /// Resource, e.g. `ingresses`.
    pub resource: &'static str,
    /// Subresource, e.g. `status`.
    pub subresource: Option<&'static str>,
    /// Namespace; `None` means cluster-wide.
    pub namespace: Option<String>,
    /// Object name, for rules limited by `resourceNames`.
    pub name: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let res = match (self.group, self.subresource) {
            ("", None) => self.resource.to_owned(),
            ("", Some(s)) => format!("{}/{s}", self.resource),
            (g, None) => format!("{}.{g}", self.resource),
            (g, Some(s)) => format!("{}.{g}/{s}", self.resource),
        };
        let named = self
            .name
            .as_ref()
            .map(|n| format!(" named {n}"))
            .unwrap_or_default();
        match &self.namespace {
            Some(ns) => write!(f, "{} {res}{named} in namespace {ns}", self.verb),
            None => write!(f, "{} {res}{named} in all namespaces", self.verb),
        }
    }
}

/// Every permission the flags make the controller use.
pub fn required(args: &ServeArgs) -> Vec<Permission> {
    let scopes: Vec<Option<String>> = if args.watch_namespace.is_empty() {
        vec![None]
    } else {
        args.watch_namespace.iter().cloned().map(Some).collect()
    };
    let p = |verb, group, resource, subresource, namespace: Option<String>| Permission {
        verb,
        group,
        resource,
        subresource,
        namespace,
        name: None,
    };
    let mut out = Vec::new();
    for verb in ["list", "watch"] {
        out.push(p(verb, "networking.k8s.io", "ingressclasses", None, None));
        for ns in &scopes {
            out.push(p(verb, "networking.k8s.io", "ingresses", None, ns.clone()));
            out.push(p(verb, "", "services", None, ns.clone()));
            out.push(p(
                verb,
                "discovery.k8s.io",
                "endpointslices",
                None,
                ns.clone(),
            ));
            out.push(p(verb, "", "secrets", None, ns.clone()));
        }
    }
    for ns in &scopes {
        out.push(p("create", "events.k8s.io", "events", None, ns.clone()));
        if args.publish_service.is_some() || args.publish_address.is_some() {
            out.push(p(
                "patch",
                "networking.k8s.io",
                "ingresses",
                Some("status"),
                ns.clone(),
            ));
        }
    }
    if args.acme {
        for ns in &scopes {
            for verb in ["list", "watch", "create", "patch", "delete"] {
                out.push(p(
                    verb,
                    "portcullis.dev",
                    "acmecertificates",
                    None,
                    ns.clone(),
                ));
            }
            out.push(p(
                "patch",
                "portcullis.dev",
                "acmecertificates",
                Some("status"),
                ns.clone(),
            ));
            out.push(p("get", "portcullis.dev", "acmeissuers", None, ns.clone()));
            out.push(p(
                "patch",
                "portcullis.dev",
                "acmeissuers",
                Some("status"),
                ns.clone(),
            ));
            for verb in ["get", "create", "update"] {
                out.push(p(verb, "", "secrets", None, ns.clone()));
            }
        }
        out.push(p("get", "portcullis.dev", "clusteracmeissuers", None, None));
        out.push(p(
            "patch",
            "portcullis.dev",
            "clusteracmeissuers",
            Some("status"),
            None,
        ));
        for verb in ["get", "create", "update"] {
            out.push(p(
                verb,
                "",
                "secrets",
                None,
                Some(args.cluster_resource_namespace()),
            ));
        }
    }
    if let Some(s) = &args.publish_service {
        out.push(Permission {
            name: Some(s.name.clone()),
            ..p("get", "", "services", None, Some(s.namespace.clone()))
        });
    }
    if args.leader_elect {
        let ns = args.election_namespace();
        out.push(p(
            "create",
            "coordination.k8s.io",
            "leases",
            None,
            Some(ns.clone()),
        ));
        for verb in ["get", "update"] {
            let lease = p(
                verb,
                "coordination.k8s.io",
                "leases",
                None,
                Some(ns.clone()),
            );
            out.push(Permission {
                name: Some(args.election_id.clone()),
                ..lease
            });
        }
    }
    out
}

/// Asks the API server about every required permission; the error lists what is missing.
pub async fn check(client: &Client, args: &ServeArgs) -> Result<(), String> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for perm in required(args) {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(perm.verb.into()),
                    group: Some(perm.group.into()),
                    resource: Some(perm.resource.into()),
                    subresource: perm.subresource.map(Into::into),
                    namespace: perm.namespace.clone(),
                    name: perm.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("cannot check permissions with the Kubernetes API: {e}"))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.push(perm.to_string());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing RBAC permissions (see the ClusterRole of charts/portcullis): {}",
        missing.join("; ")
    ))
}
