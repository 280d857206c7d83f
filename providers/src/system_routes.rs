//! Step `system-routes` (`ingress.controller: gateway-api`): the system components' routes as
//! Gateway API objects served by Istio's ingress gateway, in place of NGINX and its Ingresses.
//!
//! | object | namespace | what |
//! |---|---|---|
//! | Gateway `verrazzano-gateway` (class `istio`) | istio-system | bound to the existing `istio-ingressgateway` Service (`addresses: [{type: Hostname, value: istio-ingressgateway}]`: Istio deploys nothing); listener `http` (80) and one HTTPS listener (443) per component, named after its Ingress, with the component's host and TLS Secret, taking routes from the component's namespace only |
//! | ReferenceGrant `verrazzano-gateway` | each component's | lets that Gateway use the component's TLS Secrets, by name |
//! | HTTPRoute, named after the Ingress | the component's | `/` (`PathPrefix`) to the Ingress's backend; Keycloak's `/` (`Exact`) redirected to `/auth` (302), as NGINX's `app-root` did |
//! | HTTPRoute `verrazzano-https-redirect` | istio-system | on listener `http`: every system host to `https` (301) |
//! | DestinationRule, per backend with a cookie or HTTPS | the backend's | sticky sessions with the Ingress's cookie (`consistentHash.httpCookie`, 24 h); Rancher's HTTPS backend (`tls: SIMPLE`) |
//!
//! The Gateway lives in istio-system because Istio binds a Gateway to a Service of its own
//! namespace only. Hosts and TLS Secrets are the Ingresses' (the same certificates); the hosts' domain
//! is made of the ingress gateway's address ([`crate::domain`]).

use serde_json::{Value, json};

use crate::config::Platform;
use crate::domain;
use crate::external_dns::{self, annotated};
use crate::manifest::{Manifest, Step};
use crate::names::{ISTIO_GATEWAYS_STEP, ISTIO_SYSTEM, SYSTEM_ROUTES_STEP, TLS_STEP};
use crate::outputs::{Deferred, Outputs};
use crate::system_ingresses::{Port, SystemIngress, wanted};

/// The API version of Gateway and HTTPRoute.
pub const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";
/// The API version of ReferenceGrant (v1beta1: served by every Gateway API release since 0.6, and
/// the one Istio 1.30 reads).
pub const REFERENCE_GRANT_API: &str = "gateway.networking.k8s.io/v1beta1";
/// The Gateway's name.
pub const GATEWAY: &str = "verrazzano-gateway";
/// The Service of Istio's ingress gateway, which the Gateway binds to.
const INGRESS_GATEWAY_SERVICE: &str = "istio-ingressgateway";
/// Cookie lifetime, as NGINX's `session-cookie-max-age: 86400`.
const COOKIE_TTL: &str = "86400s";

/// The port number of a backend (HTTPRoutes name ports by number only).
fn port_number(i: &SystemIngress) -> u16 {
    match i.service.1 {
        Port::Number(n) => n,
        // keycloak-http and argocd-server: port `http` is 80 in both of Verrazzano v1.7.2's
        // charts (their defaults; Verrazzano's overrides leave it).
        Port::Name(_) => 80,
    }
}

fn nginx<'a>(i: &'a SystemIngress, key: &str) -> Option<&'a str> {
    i.nginx.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn host(dom: &Deferred<String>, i: &SystemIngress) -> Deferred<String> {
    dom.as_ref().map(|d| format!("{}.{d}", i.host_prefix))
}

fn gateway(p: &Platform, dom: &Deferred<String>, routes: &[SystemIngress]) -> Manifest {
    let mut listeners = vec![json!({
        "name": "http",
        "port": 80,
        "protocol": "HTTP",
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    })];
    for i in routes {
        listeners.push(json!({
            "name": i.name,
            "hostname": host(dom, i).into_json(),
            "port": 443,
            "protocol": "HTTPS",
            "tls": {
                "mode": "Terminate",
                "certificateRefs": [{"group": "", "kind": "Secret", "name": i.tls_secret, "namespace": i.namespace}],
            },
            "allowedRoutes": {
                "namespaces": {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": i.namespace}}},
                "kinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
            },
        }));
    }
    Manifest::from_value(json!({
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        // With ExternalDNS, every host of its routes is a CNAME to the ingress gateway's name.
        "metadata": annotated(json!({"name": GATEWAY, "namespace": ISTIO_SYSTEM}), external_dns::target_annotation(p)),
        "spec": {
            "gatewayClassName": "istio",
            "addresses": [{"type": "Hostname", "value": INGRESS_GATEWAY_SERVICE}],
            "listeners": listeners,
        },
    }))
}

/// One ReferenceGrant per component namespace, naming its TLS Secrets.
fn grants(routes: &[SystemIngress]) -> Vec<Manifest> {
    let mut namespaces: Vec<&str> = routes.iter().map(|i| i.namespace).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    namespaces
        .into_iter()
        .map(|ns| {
            let mut secrets: Vec<&str> = routes
                .iter()
                .filter(|i| i.namespace == ns)
                .map(|i| i.tls_secret)
                .collect();
            secrets.sort_unstable();
            secrets.dedup();
            Manifest::from_value(json!({
                "apiVersion": REFERENCE_GRANT_API,
                "kind": "ReferenceGrant",
                "metadata": {"name": GATEWAY, "namespace": ns},
                "spec": {
                    "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": ISTIO_SYSTEM}],
                    "to": secrets.iter().map(|s| json!({"group": "", "kind": "Secret", "name": s})).collect::<Vec<_>>(),
                },
            }))
        })
        .collect()
}

fn route(p: &Platform, dom: &Deferred<String>, i: &SystemIngress) -> Manifest {
    let backend = json!({"name": i.service.0, "port": port_number(i)});
    let mut rules = Vec::new();
    if let Some(root) = nginx(i, "app-root") {
        rules.push(json!({
            "matches": [{"path": {"type": "Exact", "value": "/"}}],
            "filters": [{"type": "RequestRedirect", "requestRedirect": {
                "path": {"type": "ReplaceFullPath", "replaceFullPath": root},
                "statusCode": 302,
            }}],
        }));
    }
    rules.push(json!({
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [backend],
    }));
    Manifest::from_value(json!({
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": annotated(json!({"name": i.name, "namespace": i.namespace}), external_dns::ttl_annotation(p)),
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": ISTIO_SYSTEM, "name": GATEWAY, "sectionName": i.name}],
            "hostnames": [host(dom, i).into_json()],
            "rules": rules,
        },
    }))
}

fn https_redirect(p: &Platform, dom: &Deferred<String>, routes: &[SystemIngress]) -> Manifest {
    let hosts: Vec<Value> = routes.iter().map(|i| host(dom, i).into_json()).collect();
    Manifest::from_value(json!({
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        // Its hosts are the HTTPS routes' too: the same TTL, so that ExternalDNS has one record.
        "metadata": annotated(json!({"name": "verrazzano-https-redirect", "namespace": ISTIO_SYSTEM}), external_dns::ttl_annotation(p)),
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY, "sectionName": "http"}],
            "hostnames": hosts,
            "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
        },
    }))
}

/// A DestinationRule per backend Service that NGINX made sticky or reached over HTTPS: the first
/// cookie its Ingresses name (a destination has one), and TLS for an HTTPS backend.
fn destination_rules(routes: &[SystemIngress]) -> Vec<Manifest> {
    let mut out: Vec<Manifest> = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for i in routes {
        let (svc, _) = i.service;
        if seen.contains(&(i.namespace, svc)) {
            continue;
        }
        let https = nginx(i, "backend-protocol") == Some("HTTPS");
        if i.cookie.is_none() && !https {
            continue;
        }
        seen.push((i.namespace, svc));
        let mut policy = serde_json::Map::new();
        if let Some(cookie) = i.cookie {
            policy.insert(
                "loadBalancer".into(),
                json!({"consistentHash": {"httpCookie": {"name": cookie, "path": "/", "ttl": COOKIE_TTL}}}),
            );
        }
        if https {
            // As NGINX's `backend-protocol: HTTPS`, which does not verify the backend's
            // certificate (Rancher's own, of a CA vz does not know).
            policy.insert(
                "tls".into(),
                json!({"mode": "SIMPLE", "insecureSkipVerify": true}),
            );
        }
        out.push(Manifest::from_value(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": format!("{svc}-gateway-api"), "namespace": i.namespace},
            "spec": {
                "host": format!("{svc}.{}.svc.cluster.local", i.namespace),
                "trafficPolicy": policy,
            },
        })));
    }
    out
}

/// The `system-routes` step (only with `ingress.controller: gateway-api`).
pub fn steps(p: &Platform, outputs: &Outputs) -> Vec<Step> {
    if !p.gateway_api() {
        return vec![];
    }
    let dom = domain::domain(p, outputs);
    let routes = wanted(p);
    let mut objects = vec![gateway(p, &dom, &routes)];
    objects.extend(grants(&routes));
    objects.extend(routes.iter().map(|i| route(p, &dom, i)));
    objects.push(https_redirect(p, &dom, &routes));
    objects.extend(destination_rules(&routes));
    vec![Step {
        id: SYSTEM_ROUTES_STEP.to_string(),
        description: format!(
            "Gateway API routes for the system components under {}, served by Istio's ingress gateway",
            dom.shown()
        ),
        // The TLS Secrets exist first, so no listener ever lacks its certificate.
        // The routes are ExternalDNS's sources: destroy deletes them while it is there.
        depends_on: [ISTIO_GATEWAYS_STEP.to_string(), TLS_STEP.to_string()]
            .into_iter()
            .chain(external_dns::before_sources(p))
            .collect(),
        objects,
        outputs: vec![],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;

    const GATEWAY_API_PLATFORM: &str = "environmentName: dev\ningress: {controller: gateway-api}\ncomponents:\n  istio:\n    ingress: {type: NodePort, externalIPs: [192.0.2.11]}\n  argoCD: {enabled: true}\n";

    fn step() -> Step {
        steps(&platform(GATEWAY_API_PLATFORM), &Outputs::default())
            .into_iter()
            .next()
            .expect("step")
    }

    fn object<'a>(s: &'a Step, kind: &str, ns: &str, name: &str) -> &'a Value {
        &s.objects
            .iter()
            .find(|m| m.kind == kind && m.name == name && m.namespace.as_deref() == Some(ns))
            .unwrap_or_else(|| panic!("no {kind} {ns}/{name}"))
            .body
    }

    #[test]
    fn with_external_dns_the_gateway_points_its_routes_hosts_at_the_ingress_name() {
        let p = platform(
            "environmentName: dev\ningress: {controller: gateway-api}\ndns:\n  externalDNS: {provider: oci, zone: example.com}\n",
        );
        let s = steps(&p, &Outputs::default()).remove(0);
        let prefix = external_dns::ANNOTATION_PREFIX;
        assert_eq!(
            object(&s, "Gateway", "istio-system", GATEWAY)["metadata"]["annotations"]
                [format!("{prefix}target")],
            "verrazzano-ingress.dev.example.com"
        );
        for (ns, name) in [
            ("keycloak", "keycloak"),
            ("istio-system", "verrazzano-https-redirect"),
        ] {
            assert_eq!(
                object(&s, "HTTPRoute", ns, name)["metadata"]["annotations"]
                    [format!("{prefix}ttl")],
                "60",
                "{name}"
            );
        }
        // Destroy deletes the routes before ExternalDNS, which removes their records.
        assert!(s.depends_on.contains(&external_dns::STEP.to_string()));
        let plain = step();
        assert!(
            plain
                .objects
                .iter()
                .all(|m| m.body["metadata"].get("annotations").is_none())
        );
        assert!(!plain.depends_on.contains(&external_dns::STEP.to_string()));
    }

    #[test]
    fn only_with_gateway_api() {
        assert!(steps(&platform("environmentName: dev\n"), &Outputs::default()).is_empty());
        assert!(
            crate::system_ingresses::steps(&platform(GATEWAY_API_PLATFORM), &Outputs::default())
                .is_empty(),
            "no Ingresses"
        );
    }

    #[test]
    fn each_component_has_a_listener_with_its_host_and_secret_and_a_route_to_its_backend() {
        let s = step();
        let gw = object(&s, "Gateway", "istio-system", GATEWAY);
        assert_eq!(gw["spec"]["addresses"][0]["value"], "istio-ingressgateway");
        let listeners = gw["spec"]["listeners"].as_array().expect("listeners");
        let console = listeners
            .iter()
            .find(|l| l["name"] == "verrazzano-ingress")
            .expect("console listener");
        assert_eq!(console["hostname"], "verrazzano.dev.192.0.2.11.nip.io");
        assert_eq!(
            console["tls"]["certificateRefs"][0],
            json!({"group": "", "kind": "Secret", "name": "verrazzano-tls", "namespace": "verrazzano-system"})
        );
        assert_eq!(
            console["allowedRoutes"]["namespaces"]["selector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "verrazzano-system"
        );
        let r = object(&s, "HTTPRoute", "verrazzano-system", "vmi-system-grafana");
        assert_eq!(
            r["spec"]["parentRefs"][0]["sectionName"],
            "vmi-system-grafana"
        );
        assert_eq!(
            r["spec"]["rules"][0]["backendRefs"][0],
            json!({"name": "verrazzano-authproxy", "port": 8775})
        );
        let argocd = object(&s, "HTTPRoute", "argocd", "argocd-server");
        assert_eq!(argocd["spec"]["rules"][0]["backendRefs"][0]["port"], 80);
        // Every listener's Secret is granted, in its namespace, by name.
        let grant = object(&s, "ReferenceGrant", "verrazzano-system", GATEWAY);
        let names: Vec<&str> = grant["spec"]["to"]
            .as_array()
            .expect("to")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        for l in listeners.iter().skip(1) {
            let r = &l["tls"]["certificateRefs"][0];
            if r["namespace"] == "verrazzano-system" {
                assert!(names.contains(&r["name"].as_str().expect("name")), "{r}");
            }
        }
    }

    #[test]
    fn keycloaks_root_redirects_to_auth_and_rancher_is_reached_over_tls() {
        let s = step();
        let k = object(&s, "HTTPRoute", "keycloak", "keycloak");
        assert_eq!(
            k["spec"]["rules"][0]["filters"][0]["requestRedirect"]["path"]["replaceFullPath"],
            "/auth"
        );
        assert_eq!(
            k["spec"]["rules"][1]["backendRefs"][0]["name"],
            "keycloak-http"
        );
        let dr = object(
            &s,
            "DestinationRule",
            "cattle-system",
            "rancher-gateway-api",
        );
        assert_eq!(dr["spec"]["trafficPolicy"]["tls"]["mode"], "SIMPLE");
        let sticky = object(
            &s,
            "DestinationRule",
            "verrazzano-system",
            "verrazzano-authproxy-gateway-api",
        );
        assert_eq!(
            sticky["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpCookie"]["name"],
            "route"
        );
        let redirect = object(&s, "HTTPRoute", "istio-system", "verrazzano-https-redirect");
        assert_eq!(
            redirect["spec"]["rules"][0]["filters"][0]["requestRedirect"]["scheme"],
            "https"
        );
    }
}
