//! Applications' networking: a step per application namespace and a step per application, after the
//! platform steps they need, so that `vz destroy --app` and removing an application from the
//! configuration take exactly its objects away (names from `shared/reference/verrazzano-networking.md`,
//! Verrazzano's IngressTrait, minus its bugs).
//!
//! Step `app-namespace.<ns>`: the Namespace, labelled `istio-injection: enabled`,
//! `verrazzano-managed: "true"` (so istiod's NetworkPolicy admits its sidecars) and
//! `pod-security.kubernetes.io/enforce: privileged` (what injected pods need, as for the system
//! namespaces: [`crate::namespaces`]). `vz` creates it —
//! and will not take over one it did not create — unless its applications say `existing: true`:
//! then it only sets those labels.
//!
//! Step `app.<name>` (after its namespace, Istio's gateways and the platform CA):
//!
//! | object | name | shape |
//! |---|---|---|
//! | Gateway | `<ns>/<ns>-<app>-gw` | selector `istio: ingressgateway`; one HTTPS server `https-<app>` on 443, `tls.mode: SIMPLE`, `credentialName` = its own secret or `<ns>-<app>-cert-secret`, the app's hosts |
//! | VirtualService, per rule | `<ns>/<app>-rule-<i>-vs` | bound to that Gateway, **only this application's hosts** (Verrazzano #5613), the default host even with several rules (#5578); a `uri` match per path (none: prefix `/`), route to `destination.host:port` |
//! | DestinationRule, per destination | `<ns>/<app>-<host>-dr` | `ISTIO_MUTUAL` when the platform injects sidecars, `DISABLE` otherwise; cookie affinity when asked |
//! | AuthorizationPolicy | `<ns>/<app>` | selects the app's pods (`selector`); allows its own service account, the ingress gateway's and the monitoring ones |
//! | AuthorizationPolicy, per rule with `authorization` | `istio-system/<ns>-<app>-rule-<i>-authz` | on the ingress gateway: `DENY` requests to the rule's hosts and paths without one of the request principals |
//! | Secret (`kubernetes.io/tls`) | `istio-system/<ns>-<app>-cert-secret` | unless `tls.secretName`: issued by the platform CA, every host a SAN, renewed like the system certificates |
//! | DNS records (`dns.rfc2136`, `dns: true`) | `A`/`AAAA` per host | the Istio ingress gateway's address |
//!
//! With `dns.externalDNS`, ExternalDNS reads the Gateway's hosts itself (`--source=istio-gateway`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::config::{Application, Dns, PathType, Platform, Rule};
use crate::manifest::{Manifest, Step};
use crate::names::{
    GATEWAY_HTTPS_TARGET_PORT, INJECTED_POD_SECURITY, INJECTION_LABEL, ISTIO_GATEWAYS_STEP,
    ISTIO_PEER_AUTHENTICATION_STEP, ISTIO_SYSTEM, POD_SECURITY_LABEL,
};
use crate::outputs::{Deferred, Outputs};
use crate::{dns_records, domain, external_dns, tls};

/// The label of an application's objects outside its namespace, and of its routes:
/// `<namespace>-<name>`.
pub const APPLICATION_LABEL: &str = "vz.dev/application";

/// Prefix of an application's step id (`app.<name>`).
pub const STEP_PREFIX: &str = "app.";
/// Prefix of an application namespace's step id (`app-namespace.<namespace>`).
pub const NAMESPACE_STEP_PREFIX: &str = "app-namespace.";

/// The service accounts allowed to call every application besides its own: the ingress gateway and
/// the monitoring components, as Verrazzano allowed them.
pub const ALLOWED_CALLERS: [&str; 3] = [
    "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
    "cluster.local/ns/verrazzano-system/sa/verrazzano-monitoring-operator",
    "cluster.local/ns/verrazzano-monitoring/sa/prometheus-operator-kube-p-prometheus",
];

/// What an existing namespace an application wants probably is.
const NAMESPACE_TAKEN: &str = "a namespace vz did not create; if the application is meant to live in it, say `existing: true` in the application (vz then only labels it for the mesh)";

/// Whether a step is an application's or an application namespace's.
pub fn is_app_step(id: &str) -> bool {
    id.starts_with(STEP_PREFIX) || id.starts_with(NAMESPACE_STEP_PREFIX)
}

/// The step id of application `name`.
pub fn step_id(name: &str) -> String {
    format!("{STEP_PREFIX}{name}")
}

/// The step id of the application namespace `namespace`.
pub fn namespace_step_id(namespace: &str) -> String {
    format!("{NAMESPACE_STEP_PREFIX}{namespace}")
}

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

/// The application's hosts: those it names, or its default one.
pub fn hosts(p: &Platform, outputs: &Outputs, a: &Application) -> Deferred<Vec<String>> {
    if a.hosts.is_empty() {
        domain::app_host(p, outputs, &a.name, &a.namespace).map(|h| vec![h])
    } else {
        Deferred::Known(a.hosts.clone())
    }
}

/// The application steps: one per namespace, one per application.
pub fn steps(p: &Platform, outputs: &Outputs) -> Vec<Step> {
    if p.applications.is_empty() || !p.components.istio {
        return vec![];
    }
    let after_mesh = if p.components.installs_istio() {
        vec![ISTIO_GATEWAYS_STEP.to_string()]
    } else {
        vec![ISTIO_PEER_AUTHENTICATION_STEP.to_string()]
    };
    let mut steps = Vec::new();
    let mut seen = BTreeSet::new();
    for a in &p.applications {
        if seen.insert(a.namespace.clone()) {
            steps.push(Step {
                id: namespace_step_id(&a.namespace),
                description: format!("namespace {} of applications, in the mesh", a.namespace),
                depends_on: after_mesh.clone(),
                objects: vec![namespace(&a.namespace, a.existing)],
                outputs: vec![],
            });
        }
    }
    for a in &p.applications {
        let mut depends_on = vec![namespace_step_id(&a.namespace)];
        depends_on.extend(after_mesh.iter().cloned());
        if a.tls_secret.is_none() {
            depends_on.extend(tls::after_platform_ca(p));
        }
        steps.push(Step {
            id: step_id(&a.name),
            description: format!("application {} in namespace {}", a.name, a.namespace),
            depends_on,
            objects: objects(p, outputs, a),
            outputs: vec![],
        });
    }
    steps
}

/// An application namespace: `vz`'s own, or only labelled when it exists already.
fn namespace(name: &str, existing: bool) -> Manifest {
    let m = Manifest::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            INJECTION_LABEL: "enabled", "verrazzano-managed": "true",
            POD_SECURITY_LABEL: INJECTED_POD_SECURITY}},
    }));
    if existing {
        m.patched()
    } else {
        m.exclusive(NAMESPACE_TAKEN)
    }
}

/// Every object of application `a`.
fn objects(p: &Platform, outputs: &Outputs, a: &Application) -> Vec<Manifest> {
    let hosts = hosts(p, outputs, a);
    let mut out = Vec::new();
    if p.gateway_api() {
        out.push(gateway_api_gateway(p, a, &hosts));
        out.extend((0..a.rules.len()).map(|i| http_route(p, a, i, &hosts)));
    } else {
        out.push(gateway(a, &hosts));
        out.extend((0..a.rules.len()).map(|i| virtual_service(a, i, &hosts)));
    }
    let mut destinations: Vec<&str> = Vec::new();
    for r in &a.rules {
        if !destinations.contains(&r.destination.host.as_str()) {
            destinations.push(&r.destination.host);
        }
    }
    out.extend(
        destinations
            .iter()
            .map(|host| destination_rule(a, host, p.components.injection())),
    );
    out.push(workload_policy(a));
    out.extend(
        a.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.authorization.is_some())
            .map(|(i, _)| path_policy(a, i, &hosts)),
    );
    if a.tls_secret.is_none() {
        out.push(tls::certificate(
            ISTIO_SYSTEM,
            &certificate_secret(a),
            tls::leaf_spec(p),
            hosts.clone(),
        ));
    }
    if let (Dns::Rfc2136(r), true) = (&p.dns, a.dns) {
        let ip = domain::gateway_ip(p, outputs);
        let kind = match ip.known().map(|i| i.parse::<IpAddr>()) {
            Some(Ok(IpAddr::V6(_))) => "AAAA",
            _ => "A",
        };
        if let Deferred::Known(hosts) = &hosts {
            for h in hosts {
                out.push(dns_records::record(
                    kind,
                    h,
                    r.ttl,
                    ip.clone().map(|i| vec![i]),
                ));
            }
        }
    }
    out
}

/// The application's Gateway, serving its hosts over HTTPS.
pub fn gateway(a: &Application, hosts: &Deferred<Vec<String>>) -> Manifest {
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
                "hosts": hosts.clone().into_json(),
            }],
        },
    }))
}

/// With `ingress.controller: gateway-api`: the application's Gateway API Gateway, in istio-system
/// (Istio binds a Gateway to a Service of its own namespace: the ingress gateway's), an HTTPS
/// listener per host with the application's certificate, taking routes from its namespace only.
/// With ExternalDNS, it points its routes' hosts at the ingress gateway's name.
pub fn gateway_api_gateway(
    p: &Platform,
    a: &Application,
    hosts: &Deferred<Vec<String>>,
) -> Manifest {
    let listener = |i: usize, host: Value| {
        json!({
            "name": format!("https-{i}"),
            "hostname": host,
            "port": 443,
            "protocol": "HTTPS",
            "tls": {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": certificate_secret(a)}]},
            "allowedRoutes": {
                "namespaces": {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": a.namespace}}},
                "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
            },
        })
    };
    let listeners: Vec<Value> = match hosts {
        Deferred::Known(hs) => hs
            .iter()
            .enumerate()
            .map(|(i, h)| listener(i, json!(h)))
            .collect(),
        // The default host, made of an address not known yet: one listener.
        Deferred::Unknown => vec![listener(0, Deferred::<String>::Unknown.into_json())],
    };
    let metadata = external_dns::annotated(
        json!({"name": gateway_name(a), "namespace": ISTIO_SYSTEM}),
        external_dns::target_annotation(p),
    );
    Manifest::from_value(json!({
        "apiVersion": crate::system_routes::GATEWAY_API,
        "kind": "Gateway",
        "metadata": metadata,
        "spec": {
            "gatewayClassName": "istio",
            "addresses": [{"type": "Hostname", "value": "istio-ingressgateway"}],
            "listeners": listeners,
        },
    }))
}

/// With `ingress.controller: gateway-api`: the HTTPRoute of rule `i`, for the application's own
/// hosts, on its Gateway.
pub fn http_route(
    p: &Platform,
    a: &Application,
    i: usize,
    hosts: &Deferred<Vec<String>>,
) -> Manifest {
    let rule = &a.rules[i];
    let matches: Vec<Value> = if rule.paths.is_empty() {
        vec![json!({"path": {"type": "PathPrefix", "value": "/"}})]
    } else {
        rule.paths
            .iter()
            .map(|p| {
                let kind = match p.kind {
                    PathType::Prefix => "PathPrefix",
                    PathType::Exact => "Exact",
                    PathType::Regex => "RegularExpression",
                };
                json!({"path": {"type": kind, "value": p.path}})
            })
            .collect()
    };
    Manifest::from_value(json!({
        "apiVersion": crate::system_routes::GATEWAY_API,
        "kind": "HTTPRoute",
        // The label tells readiness that its backends are the application's workloads, which may
        // come after it.
        "metadata": external_dns::annotated(json!({
            "name": format!("{}-rule-{i}", a.name),
            "namespace": a.namespace,
            "labels": {APPLICATION_LABEL: format!("{}-{}", a.namespace, a.name)},
        }), external_dns::ttl_annotation(p)),
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": ISTIO_SYSTEM, "name": gateway_name(a)}],
            "hostnames": hosts.clone().into_json(),
            "rules": [{
                "matches": matches,
                "backendRefs": [{"name": rule.destination.host, "port": rule.destination.port}],
            }],
        },
    }))
}

/// The `uri` matches of a rule (prefix `/` when it has no paths: it takes everything).
fn matches(rule: &Rule) -> Value {
    if rule.paths.is_empty() {
        return json!([{"uri": {"prefix": "/"}}]);
    }
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

/// The VirtualService of rule `i`, for the application's own hosts.
pub fn virtual_service(a: &Application, i: usize, hosts: &Deferred<Vec<String>>) -> Manifest {
    let rule = &a.rules[i];
    Manifest::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": format!("{}-rule-{i}-vs", a.name), "namespace": a.namespace},
        "spec": {
            "gateways": [gateway_name(a)],
            "hosts": hosts.clone().into_json(),
            "http": [{
                "match": matches(rule),
                "route": [{"destination": {
                    "host": rule.destination.host,
                    "port": {"number": rule.destination.port},
                }}],
            }],
        },
    }))
}

/// The DestinationRule of a destination: mutual TLS inside the mesh, cookie affinity when asked.
pub fn destination_rule(a: &Application, host: &str, in_mesh: bool) -> Manifest {
    let mut policy = json!({"tls": {"mode": if in_mesh { "ISTIO_MUTUAL" } else { "DISABLE" }}});
    if let Some(c) = &a.affinity {
        policy["loadBalancer"] =
            json!({"consistentHash": {"httpCookie": {"name": c.name, "path": "/", "ttl": c.ttl}}});
    }
    Manifest::from_value(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": format!("{}-{host}-dr", a.name), "namespace": a.namespace},
        "spec": {"host": host, "trafficPolicy": policy},
    }))
}

/// Who may call the application's pods: its own service account, the ingress gateway and monitoring.
pub fn workload_policy(a: &Application) -> Manifest {
    let mut principals = vec![format!(
        "cluster.local/ns/{}/sa/{}",
        a.namespace, a.service_account
    )];
    principals.extend(ALLOWED_CALLERS.iter().map(|s| (*s).to_string()));
    Manifest::from_value(json!({
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": a.name, "namespace": a.namespace},
        "spec": {
            "selector": {"matchLabels": a.selector},
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": principals}}]}],
        },
    }))
}

/// The ingress gateway's policy for rule `i`: requests to its hosts and paths without one of the
/// rule's request principals are refused. It names the gateway's HTTPS port: a `DENY` of HTTP
/// attributes alone would also refuse every plain TCP connection under its scope (istioctl warns). (A `DENY` with `notRequestPrincipals`, so that it
/// restricts these paths without turning away everything else the gateway serves, as an `ALLOW`
/// would; the principals come from a RequestAuthentication the application sets up.)
pub fn path_policy(a: &Application, i: usize, hosts: &Deferred<Vec<String>>) -> Manifest {
    let rule = &a.rules[i];
    let principals = rule
        .authorization
        .as_ref()
        .map(|z| z.request_principals.clone())
        .unwrap_or_default();
    let paths: Vec<String> = if rule.paths.is_empty() {
        vec!["*".into()]
    } else {
        rule.paths
            .iter()
            .map(|p| match p.kind {
                PathType::Prefix => format!("{}*", p.path),
                _ => p.path.clone(),
            })
            .collect()
    };
    Manifest::from_value(json!({
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "AuthorizationPolicy",
        "metadata": {
            "name": format!("{}-{}-rule-{i}-authz", a.namespace, a.name),
            "namespace": ISTIO_SYSTEM,
            "labels": {APPLICATION_LABEL: format!("{}-{}", a.namespace, a.name)},
        },
        "spec": {
            "selector": {"matchLabels": {"istio": "ingressgateway"}},
            "action": "DENY",
            "rules": [{
                "from": [{"source": {"notRequestPrincipals": principals}}],
                "to": [{"operation": {
                    "hosts": hosts.clone().into_json(),
                    "paths": paths,
                    "ports": [GATEWAY_HTTPS_TARGET_PORT.to_string()],
                }}],
            }],
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test;
    use crate::manifest::Ownership;

    const APP: &str = "applications:\n  - name: orders\n    namespace: shop\n    ports: [8080]\n    affinity: {cookie: {name: orders, ttl: 60s}}\n    rules:\n      - paths: [{path: /api, type: prefix}, {path: /health}]\n        destination: {host: orders, port: 8080}\n        authorization: {requestPrincipals: ['*']}\n      - destination: {host: orders-ui, port: 8080}\n";
    const NODE_PORT: &str = "environmentName: dev\ncomponents:\n  istio:\n    ingress: {type: NodePort, externalIPs: [192.0.2.11]}\n";

    fn platform(extra: &str) -> Platform {
        for_test(&format!("{NODE_PORT}{extra}"))
    }

    fn app_step(p: &Platform) -> Step {
        steps(p, &Outputs::default())
            .into_iter()
            .find(|s| s.id == "app.orders")
            .expect("app step")
    }

    fn object(s: &Step, kind: &str, name: &str) -> Value {
        s.objects
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .map(|m| Value::clone(&m.body))
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    const HOST: &str = "orders.shop.192.0.2.11.nip.io";

    #[test]
    fn each_application_has_its_step_after_its_namespace_the_gateways_and_the_ca() {
        let p = platform(APP);
        let s = steps(&p, &Outputs::default());
        let ids: Vec<&str> = s.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["app-namespace.shop", "app.orders"]);
        assert_eq!(
            s[1].depends_on,
            ["app-namespace.shop", "istio.gateways", "certificates.ca"]
        );
        let ns = &s[0].objects[0];
        assert_eq!(ns.body["metadata"]["labels"]["istio-injection"], "enabled");
        assert_eq!(
            ns.body["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
        assert_eq!(ns.body["metadata"]["labels"]["verrazzano-managed"], "true");
        assert!(ns.exclusive.is_some() && ns.ownership == Ownership::Owned);
        let existing = for_test(&format!(
            "{NODE_PORT}applications:\n  - {{name: a, namespace: legacy, existing: true}}\n"
        ));
        let ns = &steps(&existing, &Outputs::default())[0].objects[0];
        assert_eq!(ns.ownership, Ownership::Patched, "only labelled");
        assert!(steps(&for_test(""), &Outputs::default()).is_empty());
    }

    #[test]
    fn the_gateway_serves_the_default_host_over_https_with_its_certificate() {
        let s = app_step(&platform(APP));
        let g = object(&s, "Gateway", "shop-orders-gw");
        assert_eq!(g["spec"]["selector"], json!({"istio": "ingressgateway"}));
        let server = &g["spec"]["servers"][0];
        assert_eq!(
            server["port"],
            json!({"number": 443, "name": "https-orders", "protocol": "HTTPS"})
        );
        assert_eq!(
            server["tls"],
            json!({"mode": "SIMPLE", "credentialName": "shop-orders-cert-secret"})
        );
        assert_eq!(server["hosts"], json!([HOST]));
        let cert = s
            .objects
            .iter()
            .find(|m| m.name == "shop-orders-cert-secret")
            .expect("certificate");
        assert_eq!(cert.namespace.as_deref(), Some("istio-system"));
        assert_eq!(
            cert.certificate.as_ref().map(|c| c.sans.clone()),
            Some(vec![HOST.to_string()])
        );
    }

    #[test]
    fn each_rule_has_its_own_virtual_service_with_only_the_apps_hosts() {
        let s = app_step(&platform(APP));
        let v0 = object(&s, "VirtualService", "orders-rule-0-vs");
        assert_eq!(v0["spec"]["gateways"], json!(["shop-orders-gw"]));
        assert_eq!(v0["spec"]["hosts"], json!([HOST]));
        assert_eq!(
            v0["spec"]["http"][0]["match"],
            json!([{"uri": {"prefix": "/api"}}, {"uri": {"exact": "/health"}}])
        );
        let v1 = object(&s, "VirtualService", "orders-rule-1-vs");
        assert_eq!(
            v1["spec"]["hosts"],
            json!([HOST]),
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
    fn with_gateway_api_an_application_has_a_gateway_in_istio_system_and_an_http_route_per_rule() {
        let s = app_step(&platform(&format!(
            "ingress: {{controller: gateway-api}}\n{APP}"
        )));
        assert!(s.objects.iter().all(|m| m.kind != "VirtualService"));
        let g = s
            .objects
            .iter()
            .find(|m| m.kind == "Gateway")
            .expect("gateway");
        assert_eq!(g.api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(
            (g.namespace.as_deref(), g.name.as_str()),
            (Some("istio-system"), "shop-orders-gw")
        );
        let listener = &g.body["spec"]["listeners"][0];
        assert_eq!(listener["hostname"], HOST);
        assert_eq!(
            listener["tls"]["certificateRefs"][0]["name"], "shop-orders-cert-secret",
            "the certificate beside it, in istio-system"
        );
        assert_eq!(
            listener["allowedRoutes"]["namespaces"]["selector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "shop"
        );
        let r0 = object(&s, "HTTPRoute", "orders-rule-0");
        assert_eq!(r0["spec"]["hostnames"], json!([HOST]));
        assert_eq!(r0["spec"]["parentRefs"][0]["namespace"], "istio-system");
        assert_eq!(
            r0["spec"]["rules"][0]["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/api"}}, {"path": {"type": "Exact", "value": "/health"}}])
        );
        let r1 = object(&s, "HTTPRoute", "orders-rule-1");
        assert_eq!(
            r1["spec"]["rules"][0]["backendRefs"],
            json!([{"name": "orders-ui", "port": 8080}])
        );
        // While the gateway's address is unknown, so is the default host.
        let lb = for_test(&format!("ingress: {{controller: gateway-api}}\n{APP}"));
        let s = app_step(&lb);
        let g = s
            .objects
            .iter()
            .find(|m| m.kind == "Gateway")
            .expect("gateway");
        assert_eq!(g.unknown, ["/spec/listeners/0/hostname"]);
    }

    #[test]
    fn destinations_use_mutual_tls_in_the_mesh_and_the_affinity_cookie() {
        let s = app_step(&platform(APP));
        let d = object(&s, "DestinationRule", "orders-orders-dr");
        assert_eq!(d["spec"]["trafficPolicy"]["tls"]["mode"], "ISTIO_MUTUAL");
        assert_eq!(
            d["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpCookie"],
            json!({"name": "orders", "path": "/", "ttl": "60s"})
        );
        object(&s, "DestinationRule", "orders-orders-ui-dr");
        let no_injection = for_test(&format!(
            "environmentName: dev\ncomponents:\n  istio:\n    injectionEnabled: false\n    ingress: {{type: NodePort}}\n{APP}"
        ));
        let d = object(
            &app_step(&no_injection),
            "DestinationRule",
            "orders-orders-dr",
        );
        assert_eq!(d["spec"]["trafficPolicy"]["tls"]["mode"], "DISABLE");
    }

    #[test]
    fn policies_admit_the_apps_callers_and_guard_the_rules_paths_at_the_gateway() {
        let s = app_step(&platform(APP));
        let w = object(&s, "AuthorizationPolicy", "orders");
        assert_eq!(
            w["spec"]["selector"]["matchLabels"],
            json!({"app": "orders"})
        );
        let principals = &w["spec"]["rules"][0]["from"][0]["source"]["principals"];
        assert_eq!(principals[0], "cluster.local/ns/shop/sa/orders");
        assert_eq!(principals.as_array().map(Vec::len), Some(4));
        let g = object(&s, "AuthorizationPolicy", "shop-orders-rule-0-authz");
        assert_eq!(g["metadata"]["namespace"], "istio-system");
        assert_eq!(g["spec"]["action"], "DENY");
        assert_eq!(
            g["spec"]["rules"][0]["from"][0]["source"]["notRequestPrincipals"],
            json!(["*"])
        );
        assert_eq!(
            g["spec"]["rules"][0]["to"][0]["operation"],
            json!({"hosts": [HOST], "paths": ["/api*", "/health"], "ports": ["8443"]})
        );
        assert!(
            !s.objects
                .iter()
                .any(|m| m.name == "shop-orders-rule-1-authz"),
            "rule 2 has no policy"
        );
    }

    #[test]
    fn with_gateway_api_and_external_dns_its_gateway_points_its_hosts_at_the_ingress_name() {
        let p = for_test(&format!(
            "environmentName: dev\ningress: {{controller: gateway-api}}\ndns:\n  externalDNS: {{provider: oci, zone: example.com}}\n{APP}"
        ));
        let s = steps(&p, &Outputs::default())
            .into_iter()
            .find(|s| s.objects.iter().any(|m| m.kind == "Gateway"))
            .expect("the application's step");
        let prefix = external_dns::ANNOTATION_PREFIX;
        let gw = s
            .objects
            .iter()
            .find(|m| m.kind == "Gateway")
            .expect("gateway");
        assert_eq!(
            gw.body["metadata"]["annotations"][format!("{prefix}target")],
            "verrazzano-ingress.dev.example.com"
        );
        let routes: Vec<_> = s.objects.iter().filter(|m| m.kind == "HTTPRoute").collect();
        assert_eq!(routes.len(), 2);
        for r in routes {
            assert_eq!(
                r.body["metadata"]["annotations"][format!("{prefix}ttl")],
                "60"
            );
        }
    }

    #[test]
    fn dns_records_point_the_hosts_at_the_gateway() {
        let p = platform(&format!(
            "dns:\n  rfc2136: {{server: 127.0.0.1:5399, zone: example.test, tsigKeyName: k, tsigSecretEnv: S}}\n{APP}"
        ));
        let s = app_step(&p);
        let r = s
            .objects
            .iter()
            .find(|m| m.api_version == dns_records::API_VERSION)
            .expect("a record");
        assert_eq!(
            (r.kind.as_str(), r.name.as_str()),
            ("A", "orders.shop.dev.example.test")
        );
        assert_eq!(r.body["spec"]["values"], json!(["192.0.2.11"]));
    }

    #[test]
    fn an_app_with_its_own_certificate_gets_none_issued() {
        let p = platform(
            "applications:\n  - {name: orders, namespace: shop, hosts: [orders.example.com], tls: {secretName: mine}}\n",
        );
        let s = app_step(&p);
        assert!(s.objects.iter().all(|m| m.certificate.is_none()));
        assert!(!s.depends_on.contains(&"certificates.ca".to_string()));
        let g = object(&s, "Gateway", "shop-orders-gw");
        assert_eq!(g["spec"]["servers"][0]["tls"]["credentialName"], "mine");
    }
}
