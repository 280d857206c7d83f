//! What Verrazzano v1.7.2 sets on the mesh once Istio runs:
//!
//! - Step `istio.server-header-filter`: EnvoyFilter `istio-system/server-header-filter`
//!   (`networking.istio.io/v1alpha3`, no workload selector, so every proxy of the mesh): the HTTP
//!   connection manager passes the upstream's `Server` header through instead of writing
//!   `istio-envoy`. After `istio.control-plane`, as Verrazzano creates it after installing Istio.
//! - Step `istio.authorization-policies`: the system AuthorizationPolicies (`ALLOW`, by the
//!   callers' mTLS identities, `cluster.local/ns/<ns>/sa/<account>`, and ports):
//!   - `verrazzano-system/verrazzano-authproxy-authzpol`: the NGINX controller on 8775–8777 (Istio's
//!     ingress gateway instead, with `ingress.controller: gateway-api`);
//!     Prometheus on 9113 and 15090 (with Prometheus);
//!   - `verrazzano-system/verrazzano-console-authzpol` (with the console): the auth proxy on 8000,
//!     Prometheus on 15090;
//!   - `verrazzano-system/vmi-system-grafana-authzpol` (with Grafana): the auth proxy on 3000,
//!     Prometheus on 15090;
//!   - `verrazzano-system/vmi-system-kiali-authzpol` (with Kiali): the auth proxy on 20001, the
//!     monitoring operator on 9090;
//!   - `verrazzano-monitoring/vmi-system-prometheus-authzpol` (with Prometheus): the auth proxy,
//!     the monitoring operator and Kiali on 9090 and 10901, Prometheus itself on 9090.
//!
//! Rules for components `vz` has no switch for (Fluentd, Fluent Bit, Jaeger, Thanos, OpenSearch)
//! are left out. One deliberate difference: Verrazzano creates the console's policy even with the
//! console off (its chart value is never set); `vz` follows the console's switch.

use serde_json::{Value, json};

use super::control_plane::after_istiod;
use super::crds::{ENVOY_FILTER_API, SECURITY_API};
use crate::config::Platform;
use crate::manifest::{Manifest, Step};
use crate::names::{INGRESS_NGINX, ISTIO_SYSTEM, VERRAZZANO_MONITORING, VERRAZZANO_SYSTEM};

/// Id of the EnvoyFilter step.
pub const SERVER_HEADER_STEP: &str = "istio.server-header-filter";
/// Id of the AuthorizationPolicy step.
pub const AUTHORIZATION_STEP: &str = "istio.authorization-policies";

/// A workload's mTLS identity.
struct Identity {
    namespace: &'static str,
    account: &'static str,
}

impl Identity {
    fn principal(&self) -> String {
        format!("cluster.local/ns/{}/sa/{}", self.namespace, self.account)
    }
}

const NGINX: Identity = Identity {
    namespace: INGRESS_NGINX,
    account: "ingress-controller-ingress-nginx",
};
/// Istio's ingress gateway, which serves the system routes with `ingress.controller: gateway-api`.
const INGRESS_GATEWAY: Identity = Identity {
    namespace: ISTIO_SYSTEM,
    account: "istio-ingressgateway-service-account",
};
const AUTHPROXY: Identity = Identity {
    namespace: VERRAZZANO_SYSTEM,
    account: "verrazzano-authproxy",
};
const PROMETHEUS: Identity = Identity {
    namespace: VERRAZZANO_MONITORING,
    account: "prometheus-operator-kube-p-prometheus",
};
const MONITORING_OPERATOR: Identity = Identity {
    namespace: VERRAZZANO_SYSTEM,
    account: "verrazzano-monitoring-operator",
};
const KIALI: Identity = Identity {
    namespace: VERRAZZANO_SYSTEM,
    account: "vmi-system-kiali",
};

/// A rule: callers with these identities (all in one namespace) to these ports.
fn allow(callers: &[&Identity], ports: &[u16]) -> Value {
    let namespace = callers.first().map_or("", |c| c.namespace);
    json!({
        "from": [{"source": {
            "namespaces": [namespace],
            "principals": callers.iter().map(|c| c.principal()).collect::<Vec<_>>(),
        }}],
        "to": [{"operation": {"ports": ports.iter().map(u16::to_string).collect::<Vec<_>>()}}],
    })
}

fn policy(namespace: &str, name: &str, selector: (&str, &str), rules: Vec<Value>) -> Manifest {
    Manifest::from_value(json!({
        "apiVersion": SECURITY_API,
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {selector.0: selector.1}},
            "action": "ALLOW",
            "rules": rules,
        },
    }))
}

/// The `istio.server-header-filter` step.
pub fn server_header_step(p: &Platform) -> Step {
    let filter = Manifest::from_value(json!({
        "apiVersion": ENVOY_FILTER_API,
        "kind": "EnvoyFilter",
        "metadata": {"name": "server-header-filter", "namespace": ISTIO_SYSTEM},
        "spec": {"configPatches": [{
            "applyTo": "NETWORK_FILTER",
            "match": {"listener": {"filterChain": {"filter": {
                "name": "envoy.filters.network.http_connection_manager",
            }}}},
            "patch": {
                "operation": "MERGE",
                "value": {"typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "server_header_transformation": "PASS_THROUGH",
                }},
            },
        }]},
    }));
    Step {
        id: SERVER_HEADER_STEP.to_string(),
        description: "proxies pass the upstream's Server header through".into(),
        depends_on: after_istiod(p),
        objects: vec![filter],
        outputs: vec![],
    }
}

/// The `istio.authorization-policies` step (none without the components they protect).
pub fn authorization_step(p: &Platform) -> Option<Step> {
    let c = &p.components;
    let mut objects = Vec::new();
    let mut authproxy_rules = Vec::new();
    if c.ingress_nginx {
        authproxy_rules.push(allow(&[&NGINX], &[8775, 8776, 8777]));
    } else if p.gateway_api() {
        authproxy_rules.push(allow(&[&INGRESS_GATEWAY], &[8775, 8776, 8777]));
    }
    if c.prometheus {
        authproxy_rules.push(allow(&[&PROMETHEUS], &[9113, 15090]));
    }
    if !authproxy_rules.is_empty() {
        objects.push(policy(
            VERRAZZANO_SYSTEM,
            "verrazzano-authproxy-authzpol",
            ("app", "verrazzano-authproxy"),
            authproxy_rules,
        ));
    }
    let behind_authproxy = [
        (
            c.console,
            "verrazzano-console-authzpol",
            "verrazzano-console",
            8000,
        ),
        (
            c.grafana,
            "vmi-system-grafana-authzpol",
            "system-grafana",
            3000,
        ),
    ];
    for (on, name, app, port) in behind_authproxy {
        if on {
            objects.push(policy(
                VERRAZZANO_SYSTEM,
                name,
                ("app", app),
                vec![
                    allow(&[&AUTHPROXY], &[port]),
                    allow(&[&PROMETHEUS], &[15090]),
                ],
            ));
        }
    }
    if c.kiali {
        objects.push(policy(
            VERRAZZANO_SYSTEM,
            "vmi-system-kiali-authzpol",
            ("app", "kiali"),
            vec![
                allow(&[&AUTHPROXY], &[20001]),
                allow(&[&MONITORING_OPERATOR], &[9090]),
            ],
        ));
    }
    if c.prometheus {
        let mut readers = vec![&AUTHPROXY, &MONITORING_OPERATOR];
        if c.kiali {
            readers.push(&KIALI);
        }
        objects.push(policy(
            VERRAZZANO_MONITORING,
            "vmi-system-prometheus-authzpol",
            ("app.kubernetes.io/name", "prometheus"),
            vec![
                allow(&readers, &[9090, 10901]),
                allow(&[&PROMETHEUS], &[9090]),
            ],
        ));
    }
    (!objects.is_empty()).then(|| Step {
        id: AUTHORIZATION_STEP.to_string(),
        description:
            "which system workloads may call the auth proxy, console, Grafana, Kiali and Prometheus"
                .into(),
        depends_on: after_istiod(p),
        objects,
        outputs: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test_verrazzano as platform;

    fn policies(yaml: &str) -> Vec<Value> {
        authorization_step(&platform(yaml))
            .map(|s| {
                s.objects
                    .into_iter()
                    .map(|m| Value::clone(&m.body))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn named<'a>(all: &'a [Value], name: &str) -> &'a Value {
        all.iter()
            .find(|p| p["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no policy {name}"))
    }

    #[test]
    fn the_server_header_filter_passes_the_header_through_on_every_proxy() {
        let s = server_header_step(&platform(""));
        let f = &s.objects[0].body;
        assert_eq!(
            s.address_of(&s.objects[0]),
            "istio.server-header-filter/EnvoyFilter/istio-system/server-header-filter"
        );
        assert_eq!(f["apiVersion"], "networking.istio.io/v1alpha3");
        assert!(f["spec"].get("workloadSelector").is_none());
        let patch = &f["spec"]["configPatches"][0];
        assert_eq!(patch["applyTo"], "NETWORK_FILTER");
        assert_eq!(
            patch["match"]["listener"]["filterChain"]["filter"]["name"],
            "envoy.filters.network.http_connection_manager"
        );
        assert_eq!(patch["patch"]["operation"], "MERGE");
        assert_eq!(
            patch["patch"]["value"]["typed_config"]["server_header_transformation"],
            "PASS_THROUGH"
        );
        assert_eq!(s.depends_on, ["istio.control-plane"]);
    }

    #[test]
    fn every_system_policy_allows_callers_by_identity_and_port() {
        let all = policies("");
        let names: Vec<_> = all
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                    p["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "verrazzano-system/verrazzano-authproxy-authzpol",
                "verrazzano-system/verrazzano-console-authzpol",
                "verrazzano-system/vmi-system-grafana-authzpol",
                "verrazzano-system/vmi-system-kiali-authzpol",
                "verrazzano-monitoring/vmi-system-prometheus-authzpol",
            ]
        );
        let authproxy = named(&all, "verrazzano-authproxy-authzpol");
        assert_eq!(
            authproxy["spec"]["selector"]["matchLabels"],
            json!({"app": "verrazzano-authproxy"})
        );
        assert_eq!(authproxy["spec"]["action"], "ALLOW");
        assert_eq!(
            authproxy["spec"]["rules"][0],
            json!({
                "from": [{"source": {
                    "namespaces": ["verrazzano-ingress-nginx"],
                    "principals": ["cluster.local/ns/verrazzano-ingress-nginx/sa/ingress-controller-ingress-nginx"],
                }}],
                "to": [{"operation": {"ports": ["8775", "8776", "8777"]}}],
            })
        );
        let prometheus = named(&all, "vmi-system-prometheus-authzpol");
        assert_eq!(
            prometheus["spec"]["selector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "prometheus"})
        );
        assert_eq!(
            prometheus["spec"]["rules"][0]["from"][0]["source"]["principals"],
            json!([
                "cluster.local/ns/verrazzano-system/sa/verrazzano-authproxy",
                "cluster.local/ns/verrazzano-system/sa/verrazzano-monitoring-operator",
                "cluster.local/ns/verrazzano-system/sa/vmi-system-kiali",
            ])
        );
        assert_eq!(
            prometheus["spec"]["rules"][0]["to"][0]["operation"]["ports"],
            json!(["9090", "10901"])
        );
        let kiali = named(&all, "vmi-system-kiali-authzpol");
        assert_eq!(
            kiali["spec"]["rules"][0]["to"][0]["operation"]["ports"],
            json!(["20001"])
        );
    }

    #[test]
    fn policies_follow_their_components() {
        let all = policies(
            "components:\n  console: {enabled: false}\n  grafana: {enabled: false}\n  kiali: {enabled: false}\n  prometheus: {enabled: false}\n",
        );
        assert_eq!(all.len(), 1);
        let rules = &named(&all, "verrazzano-authproxy-authzpol")["spec"]["rules"];
        assert_eq!(rules.as_array().map(Vec::len), Some(1), "NGINX only");
        assert!(
            policies(
                "components:\n  ingressNGINX: {enabled: false}\n  console: {enabled: false}\n  grafana: {enabled: false}\n  kiali: {enabled: false}\n  prometheus: {enabled: false}\n"
            )
            .is_empty()
        );
        let gateway_api = policies("ingress: {controller: gateway-api}\n");
        let from = &named(&gateway_api, "verrazzano-authproxy-authzpol")["spec"]["rules"][0]["from"]
            [0]["source"];
        assert_eq!(
            from["principals"],
            json!(["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]),
            "the ingress gateway in NGINX's place"
        );
        let no_kiali = policies("components:\n  kiali: {enabled: false}\n");
        let readers = &named(&no_kiali, "vmi-system-prometheus-authzpol")["spec"]["rules"][0]["from"]
            [0]["source"]["principals"];
        assert_eq!(readers.as_array().map(Vec::len), Some(2));
    }
}
