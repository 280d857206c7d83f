//! An application's routing objects (work in progress for the applications issue: not yet in
//! [`crate::PROVIDERS`]).
//!
//! | object | name (application namespace) | shape |
//! |---|---|---|
//! | Gateway | `<ns>-<app>-gw` | selector `istio: ingressgateway`; one HTTPS server `https-<app>` on 443, `tls.mode: SIMPLE`, `credentialName` = its own secret or `<ns>-<app>-cert-secret`, the app's hosts |
//! | VirtualService, per rule | `<app>-rule-<i>-vs` | bound to that Gateway, **only this application's hosts** (Verrazzano #5613), a `uri` match per path (none: prefix `/`), route to `destination.host:port` |
//! | DestinationRule, per rule | `<app>-rule-<i>-dr` | `ISTIO_MUTUAL` when the namespace is in the mesh, `DISABLE` otherwise; cookie affinity when asked |

use serde_json::{Value, json};

use crate::config::{Application, PathType, Rule};
use crate::manifest::Manifest;

/// The Gateway's name.
pub fn gateway_name(a: &Application) -> String {
    format!("{}-{}-gw", a.namespace, a.name)
}

/// The Secret (in `istio-system`) that holds the application's certificate.
pub fn certificate_secret(a: &Application) -> String {
    a.tls_secret
        .clone()
        .unwrap_or_else(|| format!("{}-{}-cert-secret", a.namespace, a.name))
}

/// The application's Gateway, serving `hosts` over HTTPS.
pub fn gateway(a: &Application, hosts: &[String]) -> Manifest {
    Manifest::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": gateway_name(a), "namespace": a.namespace},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{
                "name": a.name,
                "port": {"number": 443, "name": format!("https-{}", a.name), "protocol": "HTTPS"},
                "tls": {"mode": "SIMPLE", "credentialName": certificate_secret(a)},
                "hosts": hosts,
            }],
        },
    }))
}

/// The `uri` matches of a rule (none when it has no paths: it takes everything).
fn matches(rule: &Rule) -> Vec<Value> {
    rule.paths
        .iter()
        .map(|p| {
            let kind = match p.kind {
                PathType::Prefix => "prefix",
                PathType::Exact => "exact",
                PathType::Regex => "regex",
            };
            json!({"uri": {kind: p.path}})
        })
        .collect()
}

/// The VirtualService of rule `i`, for `hosts` (the application's own).
pub fn virtual_service(a: &Application, i: usize, hosts: &[String]) -> Manifest {
    let rule = &a.rules[i];
    let mut route = json!({
        "route": [{"destination": {
            "host": rule.destination.host,
            "port": {"number": rule.destination.port},
        }}],
    });
    let m = matches(rule);
    route["match"] = if m.is_empty() {
        json!([{"uri": {"prefix": "/"}}])
    } else {
        json!(m)
    };
    Manifest::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": format!("{}-rule-{i}-vs", a.name), "namespace": a.namespace},
        "spec": {"gateways": [gateway_name(a)], "hosts": hosts, "http": [route]},
    }))
}

/// The DestinationRule of rule `i`: mutual TLS inside the mesh, cookie affinity when asked.
pub fn destination_rule(a: &Application, i: usize, in_mesh: bool) -> Manifest {
    let rule = &a.rules[i];
    let mut policy = json!({"tls": {"mode": if in_mesh { "ISTIO_MUTUAL" } else { "DISABLE" }}});
    if let Some(c) = &a.affinity {
        policy["loadBalancer"] =
            json!({"consistentHash": {"httpCookie": {"name": c.name, "path": "/", "ttl": c.ttl}}});
    }
    Manifest::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": format!("{}-rule-{i}-dr", a.name), "namespace": a.namespace},
        "spec": {"host": rule.destination.host, "trafficPolicy": policy},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test;

    fn app() -> Application {
        for_test("applications:\n  - name: orders\n    namespace: shop\n    ports: [8080]\n    affinity: {cookie: {name: orders, ttl: 60s}}\n    rules:\n      - paths: [{path: /api, type: prefix}, {path: /health}]\n        destination: {host: orders, port: 8080}\n      - destination: {host: orders-ui, port: 8080}\n")
            .applications
            .remove(0)
    }

    fn hosts() -> Vec<String> {
        vec!["orders.shop.dev.example.com".into()]
    }

    #[test]
    fn the_gateway_serves_the_apps_hosts_over_https_with_its_certificate() {
        let g = gateway(&app(), &hosts()).body;
        assert_eq!(g["metadata"]["name"], "shop-orders-gw");
        assert_eq!(g["spec"]["selector"], json!({"istio": "ingressgateway"}));
        let s = &g["spec"]["servers"][0];
        assert_eq!(
            s["port"],
            json!({"number": 443, "name": "https-orders", "protocol": "HTTPS"})
        );
        assert_eq!(
            s["tls"],
            json!({"mode": "SIMPLE", "credentialName": "shop-orders-cert-secret"})
        );
        assert_eq!(s["hosts"], json!(hosts()));
    }

    #[test]
    fn each_rule_has_its_own_virtual_service_with_only_the_apps_hosts() {
        let a = app();
        let v0 = virtual_service(&a, 0, &hosts()).body;
        assert_eq!(v0["metadata"]["name"], "orders-rule-0-vs");
        assert_eq!(v0["spec"]["gateways"], json!(["shop-orders-gw"]));
        assert_eq!(v0["spec"]["hosts"], json!(hosts()));
        assert_eq!(
            v0["spec"]["http"][0]["match"],
            json!([{"uri": {"prefix": "/api"}}, {"uri": {"exact": "/health"}}])
        );
        let v1 = virtual_service(&a, 1, &hosts()).body;
        assert_eq!(
            v1["spec"]["hosts"],
            json!(hosts()),
            "the default host too (#5578)"
        );
        assert_eq!(
            v1["spec"]["http"][0]["match"],
            json!([{"uri": {"prefix": "/"}}])
        );
        assert_eq!(
            v1["spec"]["http"][0]["route"][0]["destination"],
            json!({"host": "orders-ui", "port": {"number": 8080}})
        );
    }

    #[test]
    fn destination_rules_use_mutual_tls_in_the_mesh_and_the_affinity_cookie() {
        let a = app();
        let d = destination_rule(&a, 0, true).body;
        assert_eq!(d["spec"]["trafficPolicy"]["tls"]["mode"], "ISTIO_MUTUAL");
        assert_eq!(
            d["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpCookie"],
            json!({"name": "orders", "path": "/", "ttl": "60s"})
        );
        assert_eq!(
            destination_rule(&a, 1, false).body["spec"]["trafficPolicy"]["tls"]["mode"],
            "DISABLE"
        );
    }
}
