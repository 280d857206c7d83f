//! Step `namespaces`: the system namespaces, labelled for NetworkPolicy peers and mesh membership.
//!
//! Every system namespace carries `verrazzano.io/namespace=<name>` (NetworkPolicies select their peers
//! by it). Namespaces whose pods are in the mesh also carry `istio-injection=enabled` when Istio and
//! injection are on; `istio-system` and `cert-manager` never do. An injected namespace also says
//! `pod-security.kubernetes.io/enforce: privileged`: the injector adds `istio-init` to every pod,
//! which sets up the traffic redirect as root with NET_ADMIN and NET_RAW, and Pod Security admission
//! refuses that under `baseline` and `restricted` (a cluster that enforces one of them by default
//! would refuse every injected pod). The other namespaces keep the cluster's default: what `vz` runs
//! there (istiod, the gateways, NGINX without injection) meets `restricted`.
//!
//! `istio-system` is here only when `vz` installs Istio, and is never taken over unless the
//! configuration says so (an existing one is someone else's Istio).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::Platform;
use crate::manifest::{Manifest, Step};
use crate::names;
use crate::outputs::Outputs;

/// A system namespace and whether its pods join the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemNamespace {
    /// Namespace name.
    pub name: &'static str,
    /// Whether it is labelled for sidecar injection (when injection is on).
    pub injected: bool,
}

/// The system namespaces the platform's components need, in a stable order.
pub fn system_namespaces(p: &Platform) -> Vec<SystemNamespace> {
    let c = &p.components;
    let mut out = vec![
        SystemNamespace {
            name: names::VERRAZZANO_INSTALL,
            injected: false,
        },
        SystemNamespace {
            name: names::VERRAZZANO_SYSTEM,
            injected: true,
        },
    ];
    let mut add = |on: bool, name, injected| {
        if on {
            out.push(SystemNamespace { name, injected });
        }
    };
    add(c.prometheus, names::VERRAZZANO_MONITORING, true);
    add(c.ingress_nginx, names::INGRESS_NGINX, true);
    add(c.installs_istio(), names::ISTIO_SYSTEM, false);
    // Also home of the platform CA `vz` issues.
    let own_ca = p.certificates.ca == crate::config::CaSource::SelfSigned;
    add(c.cert_manager || own_ca, names::CERT_MANAGER, false);
    add(c.keycloak, names::KEYCLOAK, true);
    add(c.keycloak, names::MYSQL_OPERATOR, true);
    add(c.argocd, names::ARGOCD, true);
    // Not in the mesh, as Verrazzano has it.
    add(c.rancher, names::CATTLE_SYSTEM, false);
    out
}

/// The `namespaces` step.
pub fn steps(p: &Platform, _outputs: &Outputs) -> Vec<Step> {
    vec![step(p)]
}

/// The `namespaces` step itself (the list of system namespaces other steps rely on).
pub fn step(p: &Platform) -> Step {
    let objects = system_namespaces(p)
        .into_iter()
        .map(|ns| {
            let mut labels = BTreeMap::new();
            labels.insert(names::NAMESPACE_LABEL.to_string(), ns.name.to_string());
            if ns.injected && p.components.injection() {
                labels.insert(names::INJECTION_LABEL.to_string(), "enabled".to_string());
                labels.insert(
                    names::POD_SECURITY_LABEL.to_string(),
                    names::INJECTED_POD_SECURITY.to_string(),
                );
            }
            let m = Manifest::from_typed(&Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.name.to_string()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            });
            if ns.name == names::ISTIO_SYSTEM {
                // As Verrazzano refuses an `istio-system` it did not create.
                m.exclusive(names::ISTIO_TAKEN)
            } else {
                m
            }
        })
        .collect();
    Step {
        id: names::NAMESPACES_STEP.to_string(),
        description: "system namespaces, labelled for policy peers and mesh membership".into(),
        depends_on: vec![],
        objects,
        outputs: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;

    fn labels_of<'a>(s: &'a Step, name: &str) -> &'a serde_json::Value {
        let m = s
            .objects
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("namespace {name} missing"));
        &m.body["metadata"]["labels"]
    }

    #[test]
    fn injected_namespaces_get_the_injection_label_and_others_do_not() {
        let s = step(&platform(""));
        assert_eq!(
            labels_of(&s, "verrazzano-system")["istio-injection"],
            "enabled"
        );
        assert_eq!(labels_of(&s, "keycloak")["istio-injection"], "enabled");
        assert!(
            labels_of(&s, "istio-system")
                .get("istio-injection")
                .is_none()
        );
        assert!(
            labels_of(&s, "cert-manager")
                .get("istio-injection")
                .is_none()
        );
        assert!(
            labels_of(&s, "verrazzano-install")
                .get("istio-injection")
                .is_none()
        );
        for m in &s.objects {
            assert_eq!(
                m.body["metadata"]["labels"][names::NAMESPACE_LABEL],
                m.name.as_str()
            );
        }
    }

    #[test]
    fn injected_namespaces_allow_what_the_injected_init_container_needs_and_others_keep_the_default()
     {
        let s = step(&platform(""));
        for m in &s.objects {
            let labels = &m.body["metadata"]["labels"];
            let injected = labels.get(names::INJECTION_LABEL).is_some();
            assert_eq!(
                labels
                    .get(names::POD_SECURITY_LABEL)
                    .and_then(|v| v.as_str()),
                injected.then_some("privileged"),
                "{}",
                m.name
            );
        }
        let off = step(&platform(
            "components:\n  istio: {injectionEnabled: false}\n",
        ));
        assert!(off.objects.iter().all(|m| {
            m.body["metadata"]["labels"]
                .get(names::POD_SECURITY_LABEL)
                .is_none()
        }));
    }

    #[test]
    fn no_injection_labels_when_injection_is_off() {
        let s = step(&platform(
            "components:\n  istio: {injectionEnabled: false}\n",
        ));
        assert!(s.objects.iter().all(|m| {
            m.body["metadata"]["labels"]
                .get("istio-injection")
                .is_none()
        }));
    }

    #[test]
    fn disabled_components_have_no_namespace() {
        let s = step(&platform(
            "components:\n  keycloak: {enabled: false}\n  istio: {enabled: false}\n",
        ));
        let names: Vec<_> = s.objects.iter().map(|m| m.name.as_str()).collect();
        assert!(!names.contains(&"keycloak") && !names.contains(&"mysql-operator"));
        assert!(!names.contains(&"istio-system"));
        assert!(names.contains(&"verrazzano-system"));
    }
}
