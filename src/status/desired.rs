//! Pure status decisions: which Ingresses need `status.loadBalancer.ingress` written.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};

/// One published address: an IP or a host name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LbAddress {
    /// An IP address.
    Ip(String),
    /// A DNS name.
    Hostname(String),
}

impl LbAddress {
    fn to_k8s(&self) -> IngressLoadBalancerIngress {
        match self {
            LbAddress::Ip(ip) => IngressLoadBalancerIngress {
                ip: Some(ip.clone()),
                ..Default::default()
            },
            LbAddress::Hostname(h) => IngressLoadBalancerIngress {
                hostname: Some(h.clone()),
                ..Default::default()
            },
        }
    }
}

/// Parses `--publish-address`: comma-separated IPs or host names.
pub fn parse_publish_address(s: &str) -> Result<Vec<LbAddress>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.parse::<IpAddr>().is_ok() {
            out.push(LbAddress::Ip(part.to_owned()));
        } else if crate::routes::HostPattern::parse(part)
            .is_ok_and(|p| matches!(p, crate::routes::HostPattern::Exact(_)))
        {
            out.push(LbAddress::Hostname(part.to_ascii_lowercase()));
        } else {
            return Err(format!("{part:?} is neither an IP address nor a host name"));
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(out)
}

/// The addresses of `--publish-service`: its load-balancer ingress, else its external IPs,
/// else its cluster IP(s).
pub fn addresses_from_service(svc: &Service) -> Vec<LbAddress> {
    let lb: Vec<LbAddress> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.ip.clone()
                .map(LbAddress::Ip)
                .or_else(|| i.hostname.clone().map(LbAddress::Hostname))
        })
        .collect();
    if !lb.is_empty() {
        return lb;
    }
    let spec = svc.spec.as_ref();
    let external: Vec<LbAddress> = spec
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default()
        .into_iter()
        .map(LbAddress::Ip)
        .collect();
    if !external.is_empty() {
        return external;
    }
    let cluster: Vec<String> = spec
        .and_then(|s| s.cluster_ips.clone())
        .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    cluster
        .into_iter()
        .filter(|c| !c.is_empty() && c != "None")
        .map(LbAddress::Ip)
        .collect()
}

/// A status write: set `status.loadBalancer.ingress` of one Ingress to `ingress`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// Namespace of the Ingress.
    pub namespace: String,
    /// Name of the Ingress.
    pub name: String,
    /// The list to write (empty clears it).
    pub ingress: Vec<IngressLoadBalancerIngress>,
    /// The resourceVersion the decision was made on.
    pub resource_version: Option<String>,
}

/// Decides the writes: our Ingresses get `addresses`; Ingresses that are not ours but still
/// carry exactly our addresses (we wrote them earlier) are cleared. Nothing already right.
pub fn status_updates(
    ingresses: &[Arc<Ingress>],
    ours: &BTreeSet<(String, String)>,
    addresses: &[LbAddress],
) -> Vec<StatusUpdate> {
    let mut desired: Vec<IngressLoadBalancerIngress> =
        addresses.iter().map(LbAddress::to_k8s).collect();
    desired.sort_by(|a, b| (&a.ip, &a.hostname).cmp(&(&b.ip, &b.hostname)));
    desired.dedup();
    let mut out = Vec::new();
    for ing in ingresses {
        let ns = ing.metadata.namespace.clone().unwrap_or_default();
        let name = ing.metadata.name.clone().unwrap_or_default();
        let current: Vec<IngressLoadBalancerIngress> = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone())
            .unwrap_or_default();
        let is_ours = ours.contains(&(ns.clone(), name.clone()));
        let want = if is_ours {
            desired.clone()
        } else if !current.is_empty() && current == desired {
            Vec::new()
        } else {
            continue;
        };
        if current != want {
            out.push(StatusUpdate {
                namespace: ns,
                name,
                ingress: want,
                resource_version: ing.metadata.resource_version.clone(),
            });
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}
