//! Step `network-policies`: an ingress NetworkPolicy for every system component.
//!
//! Egress is not restricted. Peers are chosen by `namespaceSelector: verrazzano.io/namespace=<ns>` plus
//! a pod selector; "Prometheus" below is the pods `app.kubernetes.io/name=prometheus` in
//! `verrazzano-monitoring`, which scrapes metrics and Envoy stats (15090) everywhere. The table is in
//! `shared/reference/verrazzano-networking.md`; each policy here is one row of it.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::Platform;
use crate::manifest::{Manifest, Step};
use crate::names::{
    CERT_MANAGER, INGRESS_NGINX, ISTIO_SYSTEM, KEYCLOAK, VERRAZZANO_INSTALL, VERRAZZANO_MONITORING,
    VERRAZZANO_SYSTEM,
};
use crate::namespaces::{self, NAMESPACE_LABEL};

/// Id of this step.
pub const STEP: &str = "network-policies";

/// Envoy's Prometheus stats port, open to Prometheus on every meshed component.
const ENVOY_STATS: i32 = 15090;

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    if labels.is_empty() {
        return LabelSelector::default();
    }
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        match_expressions: None,
    }
}

/// Pods with `labels` in the system namespace `ns`.
fn pods_in(ns: &str, labels: &[(&str, &str)]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(selector(&[(NAMESPACE_LABEL, ns)])),
        pod_selector: Some(selector(labels)),
        ip_block: None,
    }
}

/// Every pod in the system namespace `ns`.
fn namespace(ns: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(selector(&[(NAMESPACE_LABEL, ns)])),
        pod_selector: None,
        ip_block: None,
    }
}

/// Pods with `labels` in the policy's own namespace.
fn local_pods(labels: &[(&str, &str)]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: None,
        pod_selector: Some(selector(labels)),
        ip_block: None,
    }
}

/// Every pod in every namespace labelled `verrazzano.io/namespace`.
fn all_system_namespaces() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_LABEL.to_string(),
                operator: "Exists".to_string(),
                values: None,
            }]),
        }),
        pod_selector: None,
        ip_block: None,
    }
}

fn prometheus() -> NetworkPolicyPeer {
    pods_in(
        VERRAZZANO_MONITORING,
        &[("app.kubernetes.io/name", "prometheus")],
    )
}

fn nginx_controller() -> NetworkPolicyPeer {
    pods_in(
        INGRESS_NGINX,
        &[("app.kubernetes.io/instance", "ingress-controller")],
    )
}

fn authproxy() -> NetworkPolicyPeer {
    pods_in(VERRAZZANO_SYSTEM, &[("app", "verrazzano-authproxy")])
}

/// Allow `from` (any source when empty) on TCP `ports`.
fn allow(from: Vec<NetworkPolicyPeer>, ports: &[i32]) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: if from.is_empty() { None } else { Some(from) },
        ports: Some(
            ports
                .iter()
                .map(|p| NetworkPolicyPort {
                    port: Some(IntOrString::Int(*p)),
                    protocol: Some("TCP".to_string()),
                    end_port: None,
                })
                .collect(),
        ),
    }
}

fn policy(
    ns: &str,
    name: &str,
    pods: LabelSelector,
    rules: Vec<NetworkPolicyIngressRule>,
) -> Manifest {
    Manifest::from_typed(&NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(rules),
            egress: None,
        }),
    })
}

/// The `network-policies` step.
pub fn step(p: &Platform) -> Step {
    let c = &p.components;
    let mut objects = Vec::new();

    // Verrazzano core: always present.
    objects.push(policy(
        VERRAZZANO_SYSTEM,
        "verrazzano-authproxy",
        selector(&[("app", "verrazzano-authproxy")]),
        vec![
            allow(vec![nginx_controller()], &[8775]),
            allow(vec![prometheus()], &[ENVOY_STATS]),
        ],
    ));
    for app in [
        "verrazzano-application-operator",
        "verrazzano-application-operator-webhook",
    ] {
        objects.push(policy(
            VERRAZZANO_SYSTEM,
            app,
            selector(&[("app", app)]),
            vec![allow(vec![], &[9443]), allow(vec![prometheus()], &[9100])],
        ));
    }
    for app in [
        "verrazzano-platform-operator",
        "verrazzano-platform-operator-webhook",
    ] {
        objects.push(policy(
            VERRAZZANO_INSTALL,
            app,
            selector(&[("app", app)]),
            vec![allow(vec![prometheus()], &[9100]), allow(vec![], &[9443])],
        ));
    }

    if c.console {
        objects.push(policy(
            VERRAZZANO_SYSTEM,
            "verrazzano-console",
            selector(&[("app", "verrazzano-console")]),
            vec![
                allow(vec![authproxy()], &[8000]),
                allow(vec![prometheus()], &[ENVOY_STATS]),
            ],
        ));
    }
    if c.grafana {
        objects.push(policy(
            VERRAZZANO_SYSTEM,
            "vmi-system-grafana",
            selector(&[("app", "system-grafana")]),
            vec![
                allow(vec![authproxy()], &[3000]),
                allow(vec![prometheus()], &[ENVOY_STATS]),
            ],
        ));
    }
    if c.kiali {
        objects.push(policy(
            VERRAZZANO_SYSTEM,
            "kiali",
            selector(&[("app", "kiali")]),
            vec![
                allow(vec![authproxy()], &[20001]),
                allow(vec![prometheus()], &[9090, ENVOY_STATS]),
            ],
        ));
    }
    if c.external_dns {
        // ExternalDNS only calls out; nothing may call in.
        objects.push(policy(
            VERRAZZANO_SYSTEM,
            "external-dns",
            selector(&[("app.kubernetes.io/instance", "external-dns")]),
            vec![],
        ));
    }
    if c.cert_manager {
        objects.push(policy(
            CERT_MANAGER,
            "cert-manager",
            selector(&[("app", "cert-manager")]),
            vec![allow(vec![prometheus()], &[9402])],
        ));
    }
    if c.keycloak {
        objects.push(allow_same_namespace(KEYCLOAK));
        objects.push(policy(
            KEYCLOAK,
            "keycloak",
            selector(&[("app.kubernetes.io/name", "keycloak")]),
            vec![
                allow(vec![nginx_controller()], &[8080]),
                allow(vec![namespace(VERRAZZANO_SYSTEM)], &[8080]),
                allow(
                    vec![pods_in(KEYCLOAK, &[("app.kubernetes.io/name", "keycloak")])],
                    &[7800],
                ),
                allow(vec![prometheus()], &[ENVOY_STATS]),
            ],
        ));
    }
    if c.ingress_nginx {
        objects.push(policy(
            INGRESS_NGINX,
            "ingress-nginx-controller",
            selector(&[("app.kubernetes.io/component", "controller")]),
            vec![
                allow(vec![], &[443, 80]),
                allow(
                    vec![namespace(VERRAZZANO_SYSTEM), prometheus()],
                    &[10254, ENVOY_STATS],
                ),
            ],
        ));
        objects.push(policy(
            INGRESS_NGINX,
            "ingress-nginx-default-backend",
            selector(&[("app.kubernetes.io/component", "default-backend")]),
            vec![
                allow(
                    vec![local_pods(&[("app.kubernetes.io/component", "controller")])],
                    &[8080],
                ),
                allow(vec![prometheus()], &[ENVOY_STATS]),
            ],
        ));
    }
    if c.istio {
        objects.push(allow_same_namespace(ISTIO_SYSTEM));
        for gw in ["istio-ingressgateway", "istio-egressgateway"] {
            objects.push(policy(
                ISTIO_SYSTEM,
                gw,
                selector(&[("app", gw)]),
                vec![
                    allow(vec![], &[8443]),
                    allow(vec![prometheus()], &[ENVOY_STATS]),
                ],
            ));
        }
        objects.push(policy(
            ISTIO_SYSTEM,
            "istiod-access",
            selector(&[("app", "istiod")]),
            vec![
                // Sidecars fetch config and certificates from istiod.
                allow(vec![all_system_namespaces()], &[15012]),
                // The API server calls istiod's injection and validation webhooks.
                allow(vec![], &[15017]),
                allow(vec![prometheus()], &[15014]),
            ],
        ));
    }

    Step {
        id: STEP.to_string(),
        description: "ingress NetworkPolicies for every system component".into(),
        depends_on: vec![namespaces::STEP.to_string()],
        objects,
        outputs: vec![],
    }
}

/// Every pod in `ns` may reach every other pod in `ns`.
fn allow_same_namespace(ns: &str) -> Manifest {
    policy(
        ns,
        "allow-same-namespace",
        LabelSelector::default(),
        vec![NetworkPolicyIngressRule {
            from: Some(vec![local_pods(&[])]),
            ports: None,
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test;
    use serde_json::{Value, json};

    fn all_on() -> Platform {
        for_test("dns:\n  provider: {name: rfc2136, zone: example.com}\n")
    }

    fn find<'a>(s: &'a Step, ns: &str, name: &str) -> &'a Value {
        &s.objects
            .iter()
            .find(|m| m.namespace.as_deref() == Some(ns) && m.name == name)
            .unwrap_or_else(|| panic!("policy {ns}/{name} missing"))
            .body
    }

    #[test]
    fn every_policy_of_the_reference_table_is_produced() {
        let s = step(&all_on());
        let mut got: Vec<String> = s
            .objects
            .iter()
            .map(|m| format!("{}/{}", m.namespace.as_deref().unwrap_or(""), m.name))
            .collect();
        got.sort();
        let mut want = vec![
            "verrazzano-system/verrazzano-authproxy",
            "verrazzano-system/verrazzano-console",
            "verrazzano-system/verrazzano-application-operator",
            "verrazzano-system/verrazzano-application-operator-webhook",
            "verrazzano-system/vmi-system-grafana",
            "verrazzano-system/kiali",
            "verrazzano-system/external-dns",
            "cert-manager/cert-manager",
            "keycloak/allow-same-namespace",
            "keycloak/keycloak",
            "verrazzano-ingress-nginx/ingress-nginx-controller",
            "verrazzano-ingress-nginx/ingress-nginx-default-backend",
            "istio-system/allow-same-namespace",
            "istio-system/istio-ingressgateway",
            "istio-system/istio-egressgateway",
            "istio-system/istiod-access",
            "verrazzano-install/verrazzano-platform-operator",
            "verrazzano-install/verrazzano-platform-operator-webhook",
        ];
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn authproxy_admits_nginx_on_8775_and_prometheus_on_15090() {
        let s = step(&all_on());
        let p = find(&s, "verrazzano-system", "verrazzano-authproxy");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app": "verrazzano-authproxy"}})
        );
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            p["spec"]["ingress"][0],
            json!({
                "from": [{
                    "namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "verrazzano-ingress-nginx"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/instance": "ingress-controller"}}
                }],
                "ports": [{"port": 8775, "protocol": "TCP"}]
            })
        );
        assert_eq!(
            p["spec"]["ingress"][1],
            json!({
                "from": [{
                    "namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "verrazzano-monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
                }],
                "ports": [{"port": 15090, "protocol": "TCP"}]
            })
        );
    }

    #[test]
    fn istiod_admits_sidecars_from_every_system_namespace_on_15012() {
        let s = step(&all_on());
        let p = find(&s, "istio-system", "istiod-access");
        assert_eq!(
            p["spec"]["ingress"][0]["from"][0]["namespaceSelector"],
            json!({"matchExpressions": [{"key": "verrazzano.io/namespace", "operator": "Exists"}]})
        );
        assert_eq!(p["spec"]["ingress"][0]["ports"][0]["port"], 15012);
        // The API server is not a pod: 15017 is open to any source.
        assert!(p["spec"]["ingress"][1].get("from").is_none());
        assert_eq!(p["spec"]["ingress"][1]["ports"][0]["port"], 15017);
        assert_eq!(p["spec"]["ingress"][2]["ports"][0]["port"], 15014);
    }

    #[test]
    fn external_dns_admits_nothing() {
        let s = step(&all_on());
        let p = find(&s, "verrazzano-system", "external-dns");
        assert_eq!(p["spec"]["ingress"], json!([]));
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress"]));
    }

    #[test]
    fn allow_same_namespace_selects_every_pod_from_every_local_pod() {
        let s = step(&all_on());
        let p = find(&s, "keycloak", "allow-same-namespace");
        assert_eq!(p["spec"]["podSelector"], json!({}));
        assert_eq!(
            p["spec"]["ingress"],
            json!([{"from": [{"podSelector": {}}]}])
        );
    }

    #[test]
    fn nginx_controller_is_open_on_443_and_80_from_anywhere() {
        let s = step(&all_on());
        let p = find(&s, "verrazzano-ingress-nginx", "ingress-nginx-controller");
        assert!(p["spec"]["ingress"][0].get("from").is_none());
        let ports: Vec<_> = p["spec"]["ingress"][0]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["port"].as_i64().unwrap_or_default())
            .collect();
        assert_eq!(ports, [443, 80]);
    }

    #[test]
    fn every_policy_lives_in_a_namespace_of_the_namespaces_step() {
        let p = all_on();
        let ns: Vec<String> = namespaces::step(&p)
            .objects
            .into_iter()
            .map(|m| m.name)
            .collect();
        for m in step(&p).objects {
            let policy_ns = m.namespace.expect("namespaced");
            assert!(ns.contains(&policy_ns), "{policy_ns} is not created");
        }
    }

    #[test]
    fn disabled_components_have_no_policy() {
        let p = for_test("components:\n  istio: {enabled: false}\n  keycloak: {enabled: false}\n");
        let s = step(&p);
        assert!(
            s.objects
                .iter()
                .all(|m| m.namespace.as_deref() != Some("istio-system")
                    && m.namespace.as_deref() != Some("keycloak")
                    && m.name != "kiali"
                    && m.name != "external-dns")
        );
    }
}
