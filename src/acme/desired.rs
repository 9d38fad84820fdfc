//! Pure: the AcmeCertificates the annotated Ingresses ask for (cert-manager's ingress-shim
//! rules), and the problems with their annotations.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::{AcmeCertificate, AcmeCertificateSpec, IssuerRef};
use crate::routes::{ObjectRef, Problem, Reason};

/// Ingress annotation naming a ClusterAcmeIssuer.
pub const CLUSTER_ISSUER: &str = "portcullis.dev/cluster-issuer";
/// Ingress annotation naming an AcmeIssuer in the Ingress namespace.
pub const ISSUER: &str = "portcullis.dev/issuer";
/// Label on every AcmeCertificate made from an Ingress: the Ingress name.
pub const INGRESS_LABEL: &str = "portcullis.dev/ingress";

const SHAPING: &[&str] = &["common-name", "duration", "renew-before", "profile"];

/// Settings that change which annotations are read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShimOptions {
    /// `--acme-cert-manager-annotations`: also honour `cert-manager.io/*`.
    pub cert_manager_annotations: bool,
}

fn get<'a>(ing: &'a Ingress, key: &str, opts: ShimOptions) -> Option<&'a str> {
    let a = ing.metadata.annotations.as_ref()?;
    a.get(&format!("portcullis.dev/{key}"))
        .or_else(|| {
            opts.cert_manager_annotations
                .then(|| a.get(&format!("cert-manager.io/{key}")))
                .flatten()
        })
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// The AcmeCertificates our annotated Ingresses ask for, one per `spec.tls` entry, named
/// after its `secretName`; Ingresses are taken oldest first, and a Secret already claimed
/// by an older Ingress is a problem for the younger one.
pub fn desired_certificates(
    ingresses: &[&Ingress],
    ours: &BTreeSet<(String, String)>,
    opts: ShimOptions,
) -> (Vec<AcmeCertificate>, Vec<Problem>) {
    let mut out: BTreeMap<(String, String), AcmeCertificate> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut sorted: Vec<&&Ingress> = ingresses.iter().collect();
    sorted.sort_by(|a, b| {
        (
            &a.metadata.creation_timestamp,
            &a.metadata.namespace,
            &a.metadata.name,
        )
            .cmp(&(
                &b.metadata.creation_timestamp,
                &b.metadata.namespace,
                &b.metadata.name,
            ))
    });
    for ing in sorted {
        let ns = ing
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = ing.metadata.name.clone().unwrap_or_default();
        if !ours.contains(&(ns.clone(), name.clone())) || ing.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let obj = ObjectRef::ingress(&ns, &name);
        let mut bad = |field: String, message: String| {
            problems.push(Problem {
                object: obj.clone(),
                field,
                reason: Reason::BadConfig,
                message,
            });
        };
        let (cluster, namespaced) = (get(ing, "cluster-issuer", opts), get(ing, "issuer", opts));
        let issuer_ref = match (cluster, namespaced) {
            (None, None) => continue,
            (Some(_), Some(_)) => {
                bad(
                    "metadata.annotations".into(),
                    format!(
                        "both {CLUSTER_ISSUER} and {ISSUER} are set; no certificate is requested"
                    ),
                );
                continue;
            }
            (Some(c), None) => IssuerRef {
                name: c.into(),
                kind: Some("ClusterAcmeIssuer".into()),
                group: Some("portcullis.dev".into()),
            },
            (None, Some(i)) => IssuerRef {
                name: i.into(),
                kind: Some("AcmeIssuer".into()),
                group: Some("portcullis.dev".into()),
            },
        };
        let tls = ing
            .spec
            .as_ref()
            .and_then(|s| s.tls.clone())
            .unwrap_or_default();
        let mut secrets = BTreeSet::new();
        if tls
            .iter()
            .filter_map(|t| t.secret_name.clone())
            .any(|s| !secrets.insert(s))
        {
            bad(
                "spec.tls".into(),
                "two spec.tls entries name the same secretName; no certificate is requested".into(),
            );
            continue;
        }
        for (i, t) in tls.iter().enumerate() {
            let hosts = t.hosts.clone().unwrap_or_default();
            let Some(secret) = t.secret_name.clone().filter(|s| !s.is_empty()) else {
                bad(
                    format!("spec.tls[{i}].secretName"),
                    "is required to request a certificate".into(),
                );
                continue;
            };
            if hosts.is_empty() {
                bad(
                    format!("spec.tls[{i}].hosts"),
                    "is required to request a certificate".into(),
                );
                continue;
            }
            if let Some(wild) = hosts.iter().find(|h| h.starts_with('*')) {
                bad(
                    format!("spec.tls[{i}].hosts"),
                    format!(
                        "{wild}: wildcard names need DNS-01, which Portcullis does not offer; no certificate is requested"
                    ),
                );
                continue;
            }
            let key = (ns.clone(), secret.clone());
            if let Some(existing) = out.get(&key) {
                let owner = existing
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(INGRESS_LABEL))
                    .cloned()
                    .unwrap_or_default();
                bad(
                    format!("spec.tls[{i}].secretName"),
                    format!("Secret {secret} is already requested by Ingress {ns}/{owner}"),
                );
                continue;
            }
            let (ips, dns): (Vec<String>, Vec<String>) = hosts
                .into_iter()
                .partition(|h| h.parse::<std::net::IpAddr>().is_ok());
            let mut spec = AcmeCertificateSpec {
                secret_name: secret.clone(),
                dns_names: dns.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
                ip_addresses: ips,
                issuer_ref: issuer_ref.clone(),
                ..Default::default()
            };
            for key in SHAPING {
                let v = get(ing, key, opts).map(str::to_owned);
                match *key {
                    "common-name" => spec.common_name = v,
                    "duration" => spec.duration = v,
                    "renew-before" => spec.renew_before = v,
                    _ => spec.profile = v,
                }
            }
            let mut labels = ing.metadata.labels.clone().unwrap_or_default();
            labels.insert(INGRESS_LABEL.into(), name.clone());
            labels.insert("app.kubernetes.io/managed-by".into(), "portcullis".into());
            let cert = AcmeCertificate {
                metadata: ObjectMeta {
                    name: Some(secret),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: ing.metadata.uid.clone().map(|uid| {
                        vec![OwnerReference {
                            api_version: "networking.k8s.io/v1".into(),
                            kind: "Ingress".into(),
                            name: name.clone(),
                            uid,
                            controller: Some(true),
                            block_owner_deletion: Some(true),
                        }]
                    }),
                    ..Default::default()
                },
                spec,
                status: None,
            };
            out.insert(key, cert);
        }
    }
    (out.into_values().collect(), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(yaml: &str) -> Ingress {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn ours(list: &[&Ingress]) -> BTreeSet<(String, String)> {
        list.iter()
            .map(|i| {
                (
                    i.metadata.namespace.clone().unwrap(),
                    i.metadata.name.clone().unwrap(),
                )
            })
            .collect()
    }

    const SHOP: &str = "
metadata:
  name: shop
  namespace: web
  uid: u-1
  annotations: {portcullis.dev/cluster-issuer: le, portcullis.dev/renew-before: 720h}
spec:
  tls:
  - {hosts: [shop.example.com, 192.0.2.7], secretName: shop-tls}
  - {hosts: [api.example.com], secretName: api-tls}
";

    #[test]
    fn one_certificate_per_tls_entry_named_after_its_secret() {
        let ing = ingress(SHOP);
        let (certs, problems) =
            desired_certificates(&[&ing], &ours(&[&ing]), ShimOptions::default());
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<_> = certs
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["api-tls", "shop-tls"]);
        let shop = &certs[1];
        assert_eq!(shop.spec.secret_name, "shop-tls");
        assert_eq!(shop.spec.dns_names, ["shop.example.com"]);
        assert_eq!(
            shop.spec.ip_addresses,
            ["192.0.2.7"],
            "IP hosts become ipAddresses"
        );
        assert_eq!(
            shop.spec.issuer_ref.kind.as_deref(),
            Some("ClusterAcmeIssuer")
        );
        assert_eq!(shop.spec.renew_before.as_deref(), Some("720h"));
        let owner = &shop.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Ingress", "u-1", Some(true))
        );
    }

    #[test]
    fn ingresses_that_are_not_ours_request_nothing() {
        let ing = ingress(SHOP);
        let (certs, _) = desired_certificates(&[&ing], &BTreeSet::new(), ShimOptions::default());
        assert!(certs.is_empty());
    }

    #[test]
    fn cert_manager_annotations_count_only_with_the_flag() {
        let ing = ingress(&SHOP.replace(
            "portcullis.dev/cluster-issuer",
            "cert-manager.io/cluster-issuer",
        ));
        let set = ours(&[&ing]);
        assert!(
            desired_certificates(&[&ing], &set, ShimOptions::default())
                .0
                .is_empty()
        );
        let on = ShimOptions {
            cert_manager_annotations: true,
        };
        assert_eq!(desired_certificates(&[&ing], &set, on).0.len(), 2);
    }

    #[test]
    fn our_annotation_wins_over_cert_managers() {
        let ing = ingress(&SHOP.replace(
            "portcullis.dev/renew-before: 720h",
            "portcullis.dev/renew-before: 720h, cert-manager.io/renew-before: 1h",
        ));
        let on = ShimOptions {
            cert_manager_annotations: true,
        };
        let (certs, _) = desired_certificates(&[&ing], &ours(&[&ing]), on);
        assert_eq!(certs[0].spec.renew_before.as_deref(), Some("720h"));
    }

    #[test]
    fn both_issuer_annotations_are_bad_config() {
        let ing = ingress(&SHOP.replace(
            "portcullis.dev/renew-before: 720h",
            "portcullis.dev/issuer: mine",
        ));
        let (certs, problems) =
            desired_certificates(&[&ing], &ours(&[&ing]), ShimOptions::default());
        assert!(certs.is_empty());
        assert_eq!(problems[0].reason, Reason::BadConfig);
        assert_eq!(problems[0].field, "metadata.annotations");
    }

    #[test]
    fn duplicate_secret_names_in_one_ingress_request_nothing() {
        let ing = ingress(&SHOP.replace("secretName: api-tls", "secretName: shop-tls"));
        let (certs, problems) =
            desired_certificates(&[&ing], &ours(&[&ing]), ShimOptions::default());
        assert!(certs.is_empty());
        assert_eq!(problems[0].field, "spec.tls");
    }

    #[test]
    fn entries_without_hosts_or_secret_or_with_wildcards_are_skipped_with_a_problem() {
        let ing = ingress(
            "
metadata: {name: odd, namespace: web, annotations: {portcullis.dev/issuer: mine}}
spec:
  tls:
  - {hosts: [a.example.com]}
  - {secretName: nohosts}
  - {hosts: ['*.example.com'], secretName: wild}
  - {hosts: [ok.example.com], secretName: ok}
",
        );
        let (certs, problems) =
            desired_certificates(&[&ing], &ours(&[&ing]), ShimOptions::default());
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].spec.issuer_ref.kind.as_deref(), Some("AcmeIssuer"));
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.tls[0].secretName",
                "spec.tls[1].hosts",
                "spec.tls[2].hosts"
            ]
        );
    }

    #[test]
    fn the_oldest_ingress_keeps_a_contested_secret() {
        let old = ingress(&SHOP.replace(
            "uid: u-1",
            "uid: u-1\n  creationTimestamp: '2025-01-01T00:00:00Z'",
        ));
        let young = ingress(&SHOP.replace("name: shop", "name: shop2").replace(
            "uid: u-1",
            "uid: u-2\n  creationTimestamp: '2026-01-01T00:00:00Z'",
        ));
        let (certs, problems) = desired_certificates(
            &[&young, &old],
            &ours(&[&young, &old]),
            ShimOptions::default(),
        );
        assert_eq!(certs.len(), 2);
        assert!(
            certs
                .iter()
                .all(|c| c.metadata.labels.as_ref().unwrap()[INGRESS_LABEL] == "shop")
        );
        assert_eq!(problems.len(), 2);
        assert!(
            problems
                .iter()
                .all(|p| p.object.name == "shop2" && p.message.contains("web/shop"))
        );
    }
}
