//! Step `network-policies`: an ingress NetworkPolicy for every system component.
//!
//! Egress is not restricted. Peers are chosen by `namespaceSelector: verrazzano.io/namespace=<ns>` plus
//! a pod selector; "Prometheus" below is the pods `app.kubernetes.io/name=prometheus` in
//! `verrazzano-monitoring`, which scrapes metrics and Envoy stats (15090) everywhere. The table is in
//! `shared/reference/verrazzano-networking.md` (section "NetworkPolicies", checked against Verrazzano
//! v1.7.2); each policy here is one row of it:
//!
//! - `verrazzano-system/verrazzano-authproxy`: the NGINX controller pods on 8775, 8776 and 8777;
//!   fluentd (`app=fluentd` in `verrazzano-system`) on 8775; Prometheus on 15090 and 9113.
//! - `verrazzano-system/verrazzano-application-operator` and `-webhook`, and
//!   `verrazzano-install/verrazzano-platform-operator-webhook`: any source on 9443 (the API server
//!   calls the webhooks); Prometheus on 9100. `verrazzano-install/verrazzano-platform-operator`
//!   itself admits only Prometheus on 9100.
//! - `verrazzano-ingress-nginx/ingress-nginx-controller`: 443 from anywhere, 80 only from
//!   `verrazzano-system`, Prometheus only on 10254 and 15090.
//! - `istio-system/istiod-access`: on 15012 the application namespaces in the mesh
//!   (`verrazzano-managed=true` and `istio-injection=enabled`) and every system namespace (the system
//!   pods with sidecars); 15017 from any source (the API server, which is not a pod); Prometheus on
//!   15014.
//! - `keycloak/keycloak`: the NGINX controller pods on 8080 (one peer with both selectors: a
//!   deliberate difference from Verrazzano, whose two separate peers admit every pod of the NGINX
//!   namespace); `verrazzano-system` on 8080; the `keycloak` namespace on 7800; Prometheus on 15090.
//! - `keycloak/keycloak-mysql` (MySQL pods, `tier=mysql`): the MySQL operator's pods
//!   (`name=mysql-operator` in `mysql-operator`) on 3306, 33060 and 33061; without it the operator
//!   cannot manage the database (Verrazzano issue #7048). Other `keycloak` pods reach MySQL through
//!   `allow-same-namespace`.
//! - `verrazzano-monitoring/vmi-system-prometheus` (Prometheus on): the auth proxy, Grafana and Kiali
//!   on 9090 (all three always listed, as in the reference: a peer whose pods do not exist admits
//!   nothing); Prometheus on 15090.
//! - `argocd/argocd` (Argo CD on; pods `app.kubernetes.io/name=argocd-server`): the NGINX controller
//!   pods on 8080.
//! - `verrazzano-system/verrazzano-cluster-operator`: Prometheus on 9100; its `-webhook`: any source
//!   on 9443, Prometheus on 9100.
//! - `cattle-system/rancher` (Rancher on; pods `app=rancher`): every port from `cattle-system` and
//!   from Fleet's controller (`app=fleet-controller` in namespace `cattle-fleet-system`: one peer
//!   with both selectors, a deliberate difference from Verrazzano's two), the NGINX controller pods
//!   on 443 and 444; `cattle-system/rancher-webhook`: any source on 9443.
//! - The console, Grafana, Kiali, cert-manager, the NGINX default backend, the Istio gateways,
//!   ExternalDNS and `allow-same-namespace` (in `keycloak` and `istio-system`) as in the table.
//!
//! A policy is rendered only when its component is on, so that it always lives in a namespace the
//! `namespaces` step creates for the same configuration.

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
    ARGOCD, CATTLE_SYSTEM, CERT_MANAGER, INGRESS_NGINX, INJECTION_LABEL, ISTIO_SYSTEM, KEYCLOAK,
    MYSQL_OPERATOR, NAMESPACE_LABEL, NAMESPACES_STEP, NETWORK_POLICIES_STEP, VERRAZZANO_INSTALL,
    VERRAZZANO_MONITORING, VERRAZZANO_SYSTEM,
};
use crate::outputs::Outputs;

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

/// Every pod of the application namespaces in the mesh: one namespace selector with both labels, so
/// a namespace must be managed by Verrazzano *and* injected.
fn app_namespaces_in_mesh() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(selector(&[
            ("verrazzano-managed", "true"),
            (INJECTION_LABEL, "enabled"),
        ])),
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

/// What the system routes come through: NGINX's controller, or with `ingress.controller:
/// gateway-api` Istio's ingress gateway.
fn edge(p: &Platform) -> NetworkPolicyPeer {
    if p.gateway_api() {
        pods_in(ISTIO_SYSTEM, &[("app", "istio-ingressgateway")])
    } else {
        nginx_controller()
    }
}

/// The NGINX controller's pods: the release's instance label, which the default backend shares, and
/// the controller's component label, which it does not.
fn nginx_controller() -> NetworkPolicyPeer {
    pods_in(
        INGRESS_NGINX,
        &[
            ("app.kubernetes.io/instance", "ingress-controller"),
            ("app.kubernetes.io/component", "controller"),
        ],
    )
}

fn authproxy() -> NetworkPolicyPeer {
    pods_in(VERRAZZANO_SYSTEM, &[("app", "verrazzano-authproxy")])
}

/// The log collector, which sends logs through the auth proxy.
fn fluentd() -> NetworkPolicyPeer {
    pods_in(VERRAZZANO_SYSTEM, &[("app", "fluentd")])
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

/// Allow `from` on every port.
fn allow_all_ports(from: Vec<NetworkPolicyPeer>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(from),
        ports: None,
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
pub fn steps(p: &Platform, _outputs: &Outputs) -> Vec<Step> {
    vec![step(p)]
}

fn step(p: &Platform) -> Step {
    let c = &p.components;
    let mut objects = Vec::new();

    // Verrazzano core: always present.
    objects.push(policy(
        VERRAZZANO_SYSTEM,
        "verrazzano-authproxy",
        selector(&[("app", "verrazzano-authproxy")]),
        vec![
            allow(vec![edge(p)], &[8775, 8776, 8777]),
            allow(vec![fluentd()], &[8775]),
            allow(vec![prometheus()], &[ENVOY_STATS, 9113]),
        ],
    ));
    // The API server calls the webhooks on 9443: it is not a pod, so any source is allowed there.
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
    // The cluster operator and its webhook (verrazzano-system), as the platform operator's.
    objects.push(policy(
        VERRAZZANO_SYSTEM,
        "verrazzano-cluster-operator",
        selector(&[("app", "verrazzano-cluster-operator")]),
        vec![allow(vec![prometheus()], &[9100])],
    ));
    objects.push(policy(
        VERRAZZANO_SYSTEM,
        "verrazzano-cluster-operator-webhook",
        selector(&[("app", "verrazzano-cluster-operator-webhook")]),
        vec![allow(vec![], &[9443]), allow(vec![prometheus()], &[9100])],
    ));
    objects.push(policy(
        VERRAZZANO_INSTALL,
        "verrazzano-platform-operator",
        selector(&[("app", "verrazzano-platform-operator")]),
        vec![allow(vec![prometheus()], &[9100])],
    ));
    objects.push(policy(
        VERRAZZANO_INSTALL,
        "verrazzano-platform-operator-webhook",
        selector(&[("app", "verrazzano-platform-operator-webhook")]),
        vec![allow(vec![], &[9443]), allow(vec![prometheus()], &[9100])],
    ));

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
    if c.prometheus {
        // The auth proxy (the Prometheus Ingress's backend), Grafana and Kiali query Prometheus.
        // All three are always listed, as in the reference: a peer without pods admits nothing.
        objects.push(policy(
            VERRAZZANO_MONITORING,
            "vmi-system-prometheus",
            selector(&[("app.kubernetes.io/name", "prometheus")]),
            vec![
                allow(
                    vec![
                        authproxy(),
                        pods_in(VERRAZZANO_SYSTEM, &[("app", "system-grafana")]),
                        pods_in(VERRAZZANO_SYSTEM, &[("app", "kiali")]),
                    ],
                    &[9090],
                ),
                allow(vec![prometheus()], &[ENVOY_STATS]),
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
                // Deliberate difference from Verrazzano: one peer with both selectors, not two peers.
                allow(vec![edge(p)], &[8080]),
                allow(vec![namespace(VERRAZZANO_SYSTEM)], &[8080]),
                // Keycloak's cluster (JGroups) traffic.
                allow(vec![namespace(KEYCLOAK)], &[7800]),
                allow(vec![prometheus()], &[ENVOY_STATS]),
            ],
        ));
        // The MySQL operator (its namespace exists whenever Keycloak is on) manages the database.
        objects.push(policy(
            KEYCLOAK,
            "keycloak-mysql",
            selector(&[("tier", "mysql")]),
            vec![allow(
                vec![pods_in(MYSQL_OPERATOR, &[("name", "mysql-operator")])],
                &[3306, 33060, 33061],
            )],
        ));
    }
    if c.argocd {
        objects.push(policy(
            ARGOCD,
            "argocd",
            selector(&[("app.kubernetes.io/name", "argocd-server")]),
            vec![allow(vec![edge(p)], &[8080])],
        ));
    }
    if c.rancher {
        objects.push(policy(
            CATTLE_SYSTEM,
            "rancher",
            selector(&[("app", "rancher")]),
            vec![
                allow_all_ports(vec![namespace(CATTLE_SYSTEM)]),
                // Deliberate difference from Verrazzano (as for Keycloak): one peer with both
                // selectors — Fleet's controller — not two that admit either.
                allow_all_ports(vec![NetworkPolicyPeer {
                    namespace_selector: Some(selector(&[(
                        "kubernetes.io/metadata.name",
                        "cattle-fleet-system",
                    )])),
                    pod_selector: Some(selector(&[("app", "fleet-controller")])),
                    ip_block: None,
                }]),
                allow(vec![edge(p)], &[443, 444]),
            ],
        ));
        objects.push(policy(
            CATTLE_SYSTEM,
            "rancher-webhook",
            selector(&[("app", "rancher-webhook")]),
            vec![allow(vec![], &[9443])],
        ));
    }
    if c.ingress_nginx {
        objects.push(policy(
            INGRESS_NGINX,
            "ingress-nginx-controller",
            selector(&[("app.kubernetes.io/component", "controller")]),
            vec![
                allow(vec![], &[443]),
                allow(vec![namespace(VERRAZZANO_SYSTEM)], &[80]),
                allow(vec![prometheus()], &[10254, ENVOY_STATS]),
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
    // Istio's namespace is vz's only when vz installs Istio: an existing Istio's is left alone.
    if c.installs_istio() {
        objects.push(allow_same_namespace(ISTIO_SYSTEM));
        for gw in ["istio-ingressgateway", "istio-egressgateway"] {
            let mut rules = vec![
                allow(vec![], &[8443]),
                allow(vec![prometheus()], &[ENVOY_STATS]),
            ];
            if gw == "istio-ingressgateway" && p.gateway_api() {
                // Serving the system routes, it takes NGINX's plain HTTP (port 80, the redirect
                // to HTTPS) from whom NGINX took it.
                rules.insert(1, allow(vec![namespace(VERRAZZANO_SYSTEM)], &[8080]));
            }
            objects.push(policy(ISTIO_SYSTEM, gw, selector(&[("app", gw)]), rules));
        }
        objects.push(policy(
            ISTIO_SYSTEM,
            "istiod-access",
            selector(&[("app", "istiod")]),
            vec![
                // Sidecars fetch config and certificates from istiod: those of the applications'
                // namespaces and those of the system pods.
                allow(
                    vec![app_namespaces_in_mesh(), all_system_namespaces()],
                    &[15012],
                ),
                // The API server calls istiod's injection and validation webhooks.
                allow(vec![], &[15017]),
                allow(vec![prometheus()], &[15014]),
            ],
        ));
    }

    Step {
        id: NETWORK_POLICIES_STEP.to_string(),
        description: "ingress NetworkPolicies for every system component".into(),
        depends_on: vec![NAMESPACES_STEP.to_string()],
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
    use crate::namespaces;
    use serde_json::{Value, json};

    fn all_on() -> Platform {
        for_test(
            "dns:\n  externalDNS: {provider: oci, zone: example.com}\ncomponents:\n  argoCD: {enabled: true}\n",
        )
    }

    fn find<'a>(s: &'a Step, ns: &str, name: &str) -> &'a Value {
        &s.objects
            .iter()
            .find(|m| m.namespace.as_deref() == Some(ns) && m.name == name)
            .unwrap_or_else(|| panic!("policy {ns}/{name} missing"))
            .body
    }

    /// A peer in the JSON form: pods with `pod` labels in the system namespace `ns`.
    fn peer(ns: &str, pod: Value) -> Value {
        json!({
            "namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": ns}},
            "podSelector": {"matchLabels": pod}
        })
    }

    fn prom() -> Value {
        peer(
            "verrazzano-monitoring",
            json!({"app.kubernetes.io/name": "prometheus"}),
        )
    }

    fn nginx() -> Value {
        peer(
            "verrazzano-ingress-nginx",
            json!({"app.kubernetes.io/instance": "ingress-controller", "app.kubernetes.io/component": "controller"}),
        )
    }

    fn ports(ports: &[i32]) -> Value {
        ports
            .iter()
            .map(|p| json!({"port": p, "protocol": "TCP"}))
            .collect()
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
            "keycloak/keycloak-mysql",
            "verrazzano-ingress-nginx/ingress-nginx-controller",
            "verrazzano-ingress-nginx/ingress-nginx-default-backend",
            "istio-system/allow-same-namespace",
            "istio-system/istio-ingressgateway",
            "istio-system/istio-egressgateway",
            "istio-system/istiod-access",
            "verrazzano-install/verrazzano-platform-operator",
            "verrazzano-install/verrazzano-platform-operator-webhook",
            "verrazzano-monitoring/vmi-system-prometheus",
            "argocd/argocd",
            "verrazzano-system/verrazzano-cluster-operator",
            "verrazzano-system/verrazzano-cluster-operator-webhook",
            "cattle-system/rancher",
            "cattle-system/rancher-webhook",
        ];
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn with_gateway_api_the_ingress_gateway_takes_nginxs_place() {
        let s = step(&for_test(
            "ingress: {controller: gateway-api}\ncomponents:\n  argoCD: {enabled: true}\n",
        ));
        let gateway = peer("istio-system", json!({"app": "istio-ingressgateway"}));
        for (ns, name, rule, ports_) in [
            (
                "verrazzano-system",
                "verrazzano-authproxy",
                0,
                vec![8775, 8776, 8777],
            ),
            ("keycloak", "keycloak", 0, vec![8080]),
            ("argocd", "argocd", 0, vec![8080]),
            ("cattle-system", "rancher", 2, vec![443, 444]),
        ] {
            let p = find(&s, ns, name);
            let rules = p["spec"]["ingress"].as_array().expect("rules");
            assert!(
                rules
                    .iter()
                    .any(|r| r["from"] == json!([gateway]) && r["ports"] == ports(&ports_)),
                "{ns}/{name}: {rules:?} (rule {rule})"
            );
            assert!(!p.to_string().contains("ingress-nginx"), "{ns}/{name}");
        }
        assert!(
            s.objects
                .iter()
                .all(|m| m.namespace.as_deref() != Some("verrazzano-ingress-nginx")),
            "no NGINX policies"
        );
        let gw = find(&s, "istio-system", "istio-ingressgateway");
        assert_eq!(gw["spec"]["ingress"][1]["ports"], ports(&[8080]));
    }

    #[test]
    fn authproxy_admits_nginx_on_8775_to_8777_fluentd_on_8775_and_prometheus_on_15090_and_9113() {
        let s = step(&all_on());
        let p = find(&s, "verrazzano-system", "verrazzano-authproxy");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app": "verrazzano-authproxy"}})
        );
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            p["spec"]["ingress"],
            json!([
                {"from": [nginx()], "ports": ports(&[8775, 8776, 8777])},
                {
                    "from": [peer("verrazzano-system", json!({"app": "fluentd"}))],
                    "ports": ports(&[8775])
                },
                {"from": [prom()], "ports": ports(&[15090, 9113])}
            ])
        );
    }

    #[test]
    fn nginx_controller_admits_443_from_anywhere_80_from_verrazzano_system_and_prometheus() {
        let s = step(&all_on());
        let p = find(&s, "verrazzano-ingress-nginx", "ingress-nginx-controller");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app.kubernetes.io/component": "controller"}})
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([
                {"ports": ports(&[443])},
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "verrazzano-system"}}}],
                    "ports": ports(&[80])
                },
                {"from": [prom()], "ports": ports(&[10254, 15090])}
            ])
        );
    }

    #[test]
    fn istiod_admits_app_namespaces_in_the_mesh_and_system_sidecars_on_15012() {
        let s = step(&all_on());
        let p = find(&s, "istio-system", "istiod-access");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app": "istiod"}})
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {
                            "verrazzano-managed": "true",
                            "istio-injection": "enabled"
                        }}},
                        {"namespaceSelector": {"matchExpressions": [
                            {"key": "verrazzano.io/namespace", "operator": "Exists"}
                        ]}}
                    ],
                    "ports": ports(&[15012])
                },
                // The API server is not a pod: 15017 is open to any source.
                {"ports": ports(&[15017])},
                {"from": [prom()], "ports": ports(&[15014])}
            ])
        );
    }

    #[test]
    fn platform_operator_admits_only_prometheus_on_9100() {
        let s = step(&all_on());
        let p = find(&s, "verrazzano-install", "verrazzano-platform-operator");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app": "verrazzano-platform-operator"}})
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([{"from": [prom()], "ports": ports(&[9100])}])
        );
        let w = find(
            &s,
            "verrazzano-install",
            "verrazzano-platform-operator-webhook",
        );
        assert_eq!(
            w["spec"]["ingress"],
            json!([
                {"ports": ports(&[9443])},
                {"from": [prom()], "ports": ports(&[9100])}
            ])
        );
    }

    #[test]
    fn only_the_webhooks_are_open_to_anyone_on_9443() {
        let s = step(&all_on());
        let mut open: Vec<&str> = s
            .objects
            .iter()
            .filter(|m| {
                m.body["spec"]["ingress"].as_array().is_some_and(|rules| {
                    rules.iter().any(|r| {
                        r.get("from").is_none()
                            && r["ports"]
                                .as_array()
                                .is_some_and(|ps| ps.iter().any(|p| p["port"] == 9443))
                    })
                })
            })
            .map(|m| m.name.as_str())
            .collect();
        open.sort_unstable();
        assert_eq!(
            open,
            [
                "rancher-webhook",
                "verrazzano-application-operator",
                "verrazzano-application-operator-webhook",
                "verrazzano-cluster-operator-webhook",
                "verrazzano-platform-operator-webhook",
            ]
        );
    }

    #[test]
    fn rancher_admits_its_namespace_fleets_controller_as_one_peer_and_nginx_on_443_and_444() {
        let s = step(&all_on());
        let p = find(&s, "cattle-system", "rancher");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app": "rancher"}})
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([
                {"from": [{"namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "cattle-system"}}}]},
                {"from": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cattle-fleet-system"}},
                    "podSelector": {"matchLabels": {"app": "fleet-controller"}},
                }]},
                {"from": [nginx()], "ports": ports(&[443, 444])},
            ])
        );
    }

    #[test]
    fn keycloak_admits_nginx_pods_as_one_peer_and_its_own_namespace_on_7800() {
        let s = step(&all_on());
        let p = find(&s, "keycloak", "keycloak");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "keycloak"}})
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([
                {"from": [nginx()], "ports": ports(&[8080])},
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "verrazzano-system"}}}],
                    "ports": ports(&[8080])
                },
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "keycloak"}}}],
                    "ports": ports(&[7800])
                },
                {"from": [prom()], "ports": ports(&[15090])}
            ])
        );
    }

    #[test]
    fn keycloak_mysql_admits_the_mysql_operator() {
        let s = step(&all_on());
        let p = find(&s, "keycloak", "keycloak-mysql");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"tier": "mysql"}})
        );
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            p["spec"]["ingress"],
            json!([{
                "from": [peer("mysql-operator", json!({"name": "mysql-operator"}))],
                "ports": ports(&[3306, 33060, 33061])
            }])
        );
    }

    #[test]
    fn prometheus_admits_authproxy_grafana_and_kiali_on_9090() {
        let s = step(&all_on());
        let p = find(&s, "verrazzano-monitoring", "vmi-system-prometheus");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "prometheus"}})
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([
                {
                    "from": [
                        peer("verrazzano-system", json!({"app": "verrazzano-authproxy"})),
                        peer("verrazzano-system", json!({"app": "system-grafana"})),
                        peer("verrazzano-system", json!({"app": "kiali"}))
                    ],
                    "ports": ports(&[9090])
                },
                {"from": [prom()], "ports": ports(&[15090])}
            ])
        );
    }

    #[test]
    fn argocd_server_admits_nginx_on_8080() {
        let s = step(&all_on());
        let p = find(&s, "argocd", "argocd");
        assert_eq!(
            p["spec"]["podSelector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "argocd-server"}})
        );
        assert_eq!(
            p["spec"]["ingress"],
            json!([{"from": [nginx()], "ports": ports(&[8080])}])
        );
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
    fn every_policy_lives_in_a_namespace_of_the_namespaces_step() {
        for p in [
            all_on(),
            for_test(""),
            for_test(
                "components:\n  istio: {enabled: false}\n  keycloak: {enabled: false}\n  prometheus: {enabled: false}\n  ingressNGINX: {enabled: false}\n  certManager: {enabled: false}\n",
            ),
            // Someone else's Istio: its namespace is not vz's, and gets no policy of vz's.
            for_test("components:\n  istio: {install: false}\n"),
        ] {
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
    }

    #[test]
    fn disabled_components_have_no_policy() {
        let p = for_test(
            "components:\n  istio: {enabled: false}\n  keycloak: {enabled: false}\n  prometheus: {enabled: false}\n",
        );
        let s = step(&p);
        assert!(
            s.objects
                .iter()
                .all(|m| m.namespace.as_deref() != Some("istio-system")
                    && m.namespace.as_deref() != Some("keycloak")
                    && m.namespace.as_deref() != Some("verrazzano-monitoring")
                    && m.namespace.as_deref() != Some("argocd")
                    && m.name != "kiali"
                    && m.name != "external-dns")
        );
    }
}
