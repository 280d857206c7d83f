//! Step `system-ingresses`: an Ingress for every system component with a user interface or API.
//!
//! Hosts are `<name>.<domain>` ([`crate::domain`]); while the domain is not known yet (a load
//! balancer without an address), they are unknown in the plan ("(known after apply)") and filled
//! in by apply once step `ingress-nginx` publishes its address. Each Ingress uses IngressClass
//! `verrazzano-nginx`, terminates TLS with its component's secret, and sends traffic to the
//! Service's cluster IP (`service-upstream`) with the upstream host set to the Service's name. With
//! ExternalDNS, each host but the console's is also a record pointing at
//! `verrazzano-ingress.<env>.<zone>` (TTL 60). Names, backends and annotations follow Verrazzano
//! v1.7.2; everything behind the auth proxy (Prometheus included) is reached only through it.
//!
//! | Ingress (namespace) | host | backend | TLS secret | extras |
//! |---|---|---|---|---|
//! | `verrazzano-ingress` (verrazzano-system) | `verrazzano.<dom>` | `verrazzano-authproxy:8775` | `verrazzano-tls` | cookie `route` |
//! | `vmi-system-prometheus` (verrazzano-system) | `prometheus.vmi.system.<dom>` | `verrazzano-authproxy:8775` | `system-tls-prometheus` | cookie `prometheus`, body 6M |
//! | `vmi-system-grafana` (verrazzano-system) | `grafana.vmi.system.<dom>` | `verrazzano-authproxy:8775` | `system-tls-grafana` | body 6M |
//! | `opensearch` (verrazzano-system) | `opensearch.vmi.system.<dom>` | `verrazzano-authproxy:8775` | `system-tls-os-ingest` | body 65M |
//! | `opensearch-dashboards` (verrazzano-system) | `osd.vmi.system.<dom>` | `verrazzano-authproxy:8775` | `system-tls-osd` | body 65M |
//! | `vmi-system-kiali` (verrazzano-system) | `kiali.vmi.system.<dom>` | `verrazzano-authproxy:8775` | `system-tls-kiali` | body 6M, plain HTTP backend |
//! | `keycloak` (keycloak) | `keycloak.<dom>` | `keycloak-http:http` | `keycloak-tls` | cookie `keycloak`, `app-root: /auth`, buffer 256k |
//! | `argocd-server` (argocd) | `argocd.<dom>` | `argocd-server:http` | `tls-argocd-ingress` | cookie `route`, HTTP backend, SSL redirect, long timeouts |
//! | `rancher` (cattle-system) | `rancher.<dom>` | `rancher:443` | `tls-rancher-ingress` | HTTPS backend, SSL redirect, long timeouts, `auth-realm: <dom> auth`; no upstream vhost, no ExternalDNS target |
//!
//! Where `vz` differs from Verrazzano: every Ingress routes the path `/` (`Prefix`), which has the
//! effect of Verrazzano's `/()(.*)` with `rewrite-target: /$2`; there are no cert-manager issuer
//! annotations (`vz` issues the TLS secrets itself) and no `configuration-snippet` (snippet
//! annotations are off in the controller).

use serde_json::{Value, json};

use crate::config::Platform;
use crate::domain;
use crate::external_dns;
use crate::manifest::{Manifest, Step};
use crate::names::{
    ARGOCD, CATTLE_SYSTEM, INGRESS_CLASS, INGRESS_NGINX_STEP, KEYCLOAK, SYSTEM_INGRESSES_STEP,
    TLS_STEP, VERRAZZANO_SYSTEM,
};
use crate::outputs::{Deferred, Outputs};

/// Prefix of the NGINX annotations.
const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// A backend Service's port, by number or by name.
#[derive(Clone, Copy)]
pub(crate) enum Port {
    Number(u16),
    Name(&'static str),
}

/// The auth proxy in front of the console, the API, Prometheus, Grafana and Kiali.
const AUTHPROXY: (&str, Port) = ("verrazzano-authproxy", Port::Number(8775));

/// One system Ingress (with `ingress.controller: gateway-api`, one HTTPRoute: see
/// [`crate::system_routes`]).
pub(crate) struct SystemIngress {
    pub(crate) name: &'static str,
    pub(crate) namespace: &'static str,
    /// First labels of the host, before the domain.
    pub(crate) host_prefix: &'static str,
    pub(crate) service: (&'static str, Port),
    pub(crate) tls_secret: &'static str,
    /// Sticky sessions with this cookie.
    pub(crate) cookie: Option<&'static str>,
    /// NGINX annotations of this Ingress alone (key without the prefix, value).
    pub(crate) nginx: &'static [(&'static str, &'static str)],
    /// Whether ExternalDNS makes a record for its host (all but the console's, whose name the
    /// controller Service's record already covers).
    dns_record: bool,
    /// Whether NGINX sends to the Service's cluster IP with the Service's name as upstream host
    /// (all but Rancher's, which Rancher's chart makes without).
    service_upstream: bool,
    /// An `auth-realm` of `<domain> auth` (Rancher's).
    realm: bool,
}

const BODY_6M: (&str, &str) = ("proxy-body-size", "6M");
const BODY_65M: (&str, &str) = ("proxy-body-size", "65M");

/// The system Ingresses of the components `p` has.
pub(crate) fn wanted(p: &Platform) -> Vec<SystemIngress> {
    let c = &p.components;
    let mut out = vec![SystemIngress {
        name: "verrazzano-ingress",
        namespace: VERRAZZANO_SYSTEM,
        host_prefix: "verrazzano",
        service: AUTHPROXY,
        tls_secret: "verrazzano-tls",
        cookie: Some("route"),
        nginx: &[],
        dns_record: false,
        service_upstream: true,
        realm: false,
    }];
    if c.prometheus {
        out.push(SystemIngress {
            name: "vmi-system-prometheus",
            namespace: VERRAZZANO_SYSTEM,
            host_prefix: "prometheus.vmi.system",
            service: AUTHPROXY,
            tls_secret: "system-tls-prometheus",
            cookie: Some("prometheus"),
            nginx: &[BODY_6M],
            dns_record: true,
            service_upstream: true,
            realm: false,
        });
    }
    if c.grafana {
        out.push(SystemIngress {
            name: "vmi-system-grafana",
            namespace: VERRAZZANO_SYSTEM,
            host_prefix: "grafana.vmi.system",
            service: AUTHPROXY,
            tls_secret: "system-tls-grafana",
            cookie: None,
            nginx: &[BODY_6M],
            dns_record: true,
            service_upstream: true,
            realm: false,
        });
    }
    if c.opensearch {
        out.push(SystemIngress {
            name: "opensearch",
            namespace: VERRAZZANO_SYSTEM,
            host_prefix: "opensearch.vmi.system",
            service: AUTHPROXY,
            tls_secret: "system-tls-os-ingest",
            cookie: None,
            nginx: &[BODY_65M],
            dns_record: true,
            service_upstream: true,
            realm: false,
        });
    }
    if c.opensearch_dashboards {
        out.push(SystemIngress {
            name: "opensearch-dashboards",
            namespace: VERRAZZANO_SYSTEM,
            host_prefix: "osd.vmi.system",
            service: AUTHPROXY,
            tls_secret: "system-tls-osd",
            cookie: None,
            nginx: &[BODY_65M],
            dns_record: true,
            service_upstream: true,
            realm: false,
        });
    }
    if c.kiali {
        out.push(SystemIngress {
            name: "vmi-system-kiali",
            namespace: VERRAZZANO_SYSTEM,
            host_prefix: "kiali.vmi.system",
            service: AUTHPROXY,
            tls_secret: "system-tls-kiali",
            cookie: None,
            nginx: &[
                BODY_6M,
                ("secure-backends", "false"),
                ("backend-protocol", "HTTP"),
            ],
            dns_record: true,
            service_upstream: true,
            realm: false,
        });
    }
    if c.keycloak {
        out.push(SystemIngress {
            name: "keycloak",
            namespace: KEYCLOAK,
            host_prefix: "keycloak",
            service: ("keycloak-http", Port::Name("http")),
            tls_secret: "keycloak-tls",
            cookie: Some("keycloak"),
            nginx: &[("app-root", "/auth"), ("proxy-buffer-size", "256k")],
            dns_record: true,
            service_upstream: true,
            realm: false,
        });
    }
    if c.argocd {
        out.push(SystemIngress {
            name: "argocd-server",
            namespace: ARGOCD,
            host_prefix: "argocd",
            service: ("argocd-server", Port::Name("http")),
            tls_secret: "tls-argocd-ingress",
            cookie: Some("route"),
            nginx: &[
                ("backend-protocol", "HTTP"),
                ("force-ssl-redirect", "true"),
                ("proxy-connect-timeout", "30"),
                ("proxy-read-timeout", "1800"),
                ("proxy-send-timeout", "1800"),
            ],
            dns_record: true,
            service_upstream: true,
            realm: false,
        });
    }
    if c.rancher {
        out.push(SystemIngress {
            name: "rancher",
            namespace: CATTLE_SYSTEM,
            host_prefix: "rancher",
            service: ("rancher", Port::Number(443)),
            tls_secret: "tls-rancher-ingress",
            cookie: None,
            nginx: &[
                ("backend-protocol", "HTTPS"),
                ("force-ssl-redirect", "true"),
                ("proxy-connect-timeout", "30"),
                ("proxy-read-timeout", "1800"),
                ("proxy-send-timeout", "1800"),
            ],
            // Verrazzano points Rancher's host at the ingress only with Let's Encrypt; otherwise
            // ExternalDNS records the Ingress's own address.
            dns_record: false,
            service_upstream: false,
            realm: true,
        });
    }
    out
}

fn ingress(p: &Platform, dom: &Deferred<String>, i: &SystemIngress) -> Manifest {
    let host = dom.as_ref().map(|d| format!("{}.{d}", i.host_prefix));
    let (svc, port) = i.service;
    let mut annotations = serde_json::Map::new();
    let mut nginx = |k: &str, v: &str| {
        annotations.insert(format!("{NGINX}{k}"), json!(v));
    };
    if i.service_upstream {
        nginx("service-upstream", "true");
        nginx(
            "upstream-vhost",
            &format!("{svc}.{}.svc.cluster.local", i.namespace),
        );
    }
    for (k, v) in i.nginx {
        nginx(k, v);
    }
    if let Some(cookie) = i.cookie {
        nginx("affinity", "cookie");
        nginx("session-cookie-name", cookie);
        nginx("session-cookie-expires", "86400");
        nginx("session-cookie-max-age", "86400");
        nginx("session-cookie-samesite", "Strict");
        nginx("session-cookie-conditional-samesite-none", "true");
    }
    annotations.insert(
        "cert-manager.io/common-name".into(),
        host.clone().into_json(),
    );
    if i.realm {
        annotations.insert(
            format!("{NGINX}auth-realm"),
            dom.as_ref().map(|d| format!("{d} auth")).into_json(),
        );
    }
    if i.dns_record
        && let (Some((target, name)), Some((ttl, seconds))) = (
            external_dns::target_annotation(p),
            external_dns::ttl_annotation(p),
        )
    {
        annotations.insert(target, json!(name));
        annotations.insert(ttl, json!(seconds));
    }
    let port = match port {
        Port::Number(n) => json!({"number": n}),
        Port::Name(n) => json!({"name": n}),
    };
    let rule: Value = json!({
        "host": host.clone().into_json(),
        "http": {"paths": [{
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": svc, "port": port}},
        }]},
    });
    Manifest::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": i.name, "namespace": i.namespace, "annotations": annotations},
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "tls": [{"hosts": [host.into_json()], "secretName": i.tls_secret}],
            "rules": [rule],
        },
    }))
}

/// The TLS Secret of every system Ingress: namespace, name, and the hosts its certificate names
/// (unknown while the domain is).
pub fn tls_secrets(
    p: &Platform,
    outputs: &Outputs,
) -> Vec<(&'static str, &'static str, Deferred<Vec<String>>)> {
    let dom = domain::domain(p, outputs);
    wanted(p)
        .iter()
        .map(|i| {
            let host = dom.as_ref().map(|d| vec![format!("{}.{d}", i.host_prefix)]);
            (i.namespace, i.tls_secret, host)
        })
        .collect()
}

/// The `system-ingresses` step (only with the NGINX Ingress Controller).
pub fn steps(p: &Platform, outputs: &Outputs) -> Vec<Step> {
    if !p.components.ingress_nginx {
        return vec![];
    }
    let dom = domain::domain(p, outputs);
    vec![Step {
        id: SYSTEM_INGRESSES_STEP.to_string(),
        description: format!("Ingresses for the system components under {}", dom.shown()),
        // Their TLS Secrets exist first, so NGINX never serves its own certificate instead.
        depends_on: vec![INGRESS_NGINX_STEP.to_string(), TLS_STEP.to_string()],
        objects: wanted(p).iter().map(|i| ingress(p, &dom, i)).collect(),
        outputs: vec![],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;
    use crate::names::INGRESS_IP;

    fn step(p: &Platform, o: &Outputs) -> Option<Step> {
        steps(p, o).into_iter().next()
    }

    fn hosts(s: &Step) -> Vec<String> {
        s.objects
            .iter()
            .map(|m| {
                m.body["spec"]["rules"][0]["host"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn hosts_end_with_the_platform_domain() {
        let p = platform(
            "environmentName: dev\ningress: {type: NodePort, externalIPs: [192.0.2.10]}\n",
        );
        let s = step(&p, &Outputs::default()).expect("step");
        let h = hosts(&s);
        assert!(
            h.contains(&"verrazzano.dev.192.0.2.10.nip.io".to_string()),
            "{h:?}"
        );
        assert!(
            h.contains(&"keycloak.dev.192.0.2.10.nip.io".to_string()),
            "{h:?}"
        );
        assert!(
            h.contains(&"grafana.vmi.system.dev.192.0.2.10.nip.io".to_string()),
            "{h:?}"
        );
        let console = &s.objects[0].body;
        assert_eq!(
            console["spec"]["tls"][0]["hosts"][0],
            "verrazzano.dev.192.0.2.10.nip.io"
        );
        assert_eq!(console["spec"]["tls"][0]["secretName"], "verrazzano-tls");
        assert_eq!(console["spec"]["ingressClassName"], "verrazzano-nginx");
        assert_eq!(
            console["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-vhost"],
            "verrazzano-authproxy.verrazzano-system.svc.cluster.local"
        );
    }

    #[test]
    fn hosts_are_unknown_until_the_load_balancer_has_an_address() {
        let p = platform("environmentName: dev\n");
        let s = step(&p, &Outputs::default()).expect("step");
        for m in &s.objects {
            let mut want = vec![
                "/metadata/annotations/cert-manager.io~1common-name",
                "/spec/rules/0/host",
                "/spec/tls/0/hosts/0",
            ];
            if m.name == "rancher" {
                want.insert(
                    1,
                    "/metadata/annotations/nginx.ingress.kubernetes.io~1auth-realm",
                );
            }
            let mut got = m.unknown.clone();
            got.sort();
            want.sort_unstable();
            assert_eq!(got, want, "{}", m.name);
        }
        assert_eq!(
            hosts(&s)[0],
            "",
            "no host is invented while the domain is unknown"
        );
        let mut o = Outputs::default();
        o.set(INGRESS_NGINX_STEP, INGRESS_IP, "203.0.113.5".into());
        let s = step(&p, &o).expect("step");
        assert!(s.objects.iter().all(|m| !m.has_unknown()));
        assert_eq!(hosts(&s)[0], "verrazzano.dev.203.0.113.5.nip.io");
    }

    #[test]
    fn disabled_components_have_no_ingress_and_no_nginx_means_none() {
        let p = platform("components:\n  keycloak: {enabled: false}\n  argoCD: {enabled: true}\n");
        let s = step(&p, &Outputs::default()).expect("step");
        let names: Vec<_> = s.objects.iter().map(|m| m.name.as_str()).collect();
        assert!(!names.contains(&"keycloak") && names.contains(&"argocd-server"));
        assert!(
            step(
                &platform("components:\n  ingressNGINX: {enabled: false}\n"),
                &Outputs::default()
            )
            .is_none()
        );
    }

    #[test]
    fn external_dns_annotations_point_hosts_at_the_ingress_name() {
        let p = platform(
            "environmentName: dev\ndns: {externalDNS: {provider: oci, zone: example.com}}\n",
        );
        let s = step(&p, &Outputs::default()).expect("step");
        let a = &find(&s, "keycloak")["metadata"]["annotations"];
        assert_eq!(
            a["external-dns.alpha.kubernetes.io/target"],
            "verrazzano-ingress.dev.example.com"
        );
        assert_eq!(a["external-dns.alpha.kubernetes.io/ttl"], "60");
        assert_eq!(hosts(&s)[0], "verrazzano.dev.example.com");
    }

    fn find<'a>(s: &'a Step, name: &str) -> &'a serde_json::Value {
        &s.objects
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("ingress {name} missing"))
            .body
    }

    #[test]
    fn prometheus_is_reached_only_through_the_auth_proxy() {
        let p = platform("ingress: {type: NodePort}\n");
        let s = step(&p, &Outputs::default()).expect("step");
        let prom = find(&s, "vmi-system-prometheus");
        assert_eq!(prom["metadata"]["namespace"], "verrazzano-system");
        assert_eq!(
            prom["spec"]["rules"][0]["http"]["paths"][0]["backend"],
            json!({"service": {"name": "verrazzano-authproxy", "port": {"number": 8775}}})
        );
        let a = &prom["metadata"]["annotations"];
        assert_eq!(a["nginx.ingress.kubernetes.io/affinity"], "cookie");
        assert_eq!(
            a["nginx.ingress.kubernetes.io/session-cookie-name"],
            "prometheus"
        );
        assert_eq!(a["nginx.ingress.kubernetes.io/proxy-body-size"], "6M");
        assert_eq!(
            prom["spec"]["tls"][0]["secretName"],
            "system-tls-prometheus"
        );
    }

    #[test]
    fn kiali_has_its_tls_secret_and_a_plain_http_backend() {
        let s = step(
            &platform("ingress: {type: NodePort}\n"),
            &Outputs::default(),
        )
        .expect("step");
        let kiali = find(&s, "vmi-system-kiali");
        assert_eq!(kiali["spec"]["tls"][0]["secretName"], "system-tls-kiali");
        let a = &kiali["metadata"]["annotations"];
        assert_eq!(a["nginx.ingress.kubernetes.io/secure-backends"], "false");
        assert_eq!(a["nginx.ingress.kubernetes.io/backend-protocol"], "HTTP");
    }

    #[test]
    fn keycloak_and_argocd_carry_their_annotations_and_named_ports() {
        let p = platform("ingress: {type: NodePort}\ncomponents:\n  argoCD: {enabled: true}\n");
        let s = step(&p, &Outputs::default()).expect("step");
        let kc = find(&s, "keycloak");
        let a = &kc["metadata"]["annotations"];
        assert_eq!(a["nginx.ingress.kubernetes.io/app-root"], "/auth");
        assert_eq!(a["nginx.ingress.kubernetes.io/proxy-buffer-size"], "256k");
        assert_eq!(
            a["nginx.ingress.kubernetes.io/session-cookie-name"],
            "keycloak"
        );
        assert_eq!(
            kc["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
            json!({"name": "keycloak-http", "port": {"name": "http"}})
        );
        let argo = find(&s, "argocd-server");
        let a = &argo["metadata"]["annotations"];
        assert_eq!(a["nginx.ingress.kubernetes.io/backend-protocol"], "HTTP");
        assert_eq!(a["nginx.ingress.kubernetes.io/force-ssl-redirect"], "true");
        assert_eq!(
            argo["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
            json!({"name": "argocd-server", "port": {"name": "http"}})
        );
    }

    #[test]
    fn opensearch_and_its_dashboards_go_through_the_auth_proxy_with_65m_bodies() {
        let p = platform("ingress: {type: NodePort}\n");
        let s = step(&p, &Outputs::default()).expect("step");
        for (name, host, secret) in [
            (
                "opensearch",
                "opensearch.vmi.system",
                "system-tls-os-ingest",
            ),
            ("opensearch-dashboards", "osd.vmi.system", "system-tls-osd"),
        ] {
            let i = find(&s, name);
            assert_eq!(i["metadata"]["namespace"], "verrazzano-system");
            let h = i["spec"]["rules"][0]["host"].as_str().unwrap_or_default();
            assert!(h.starts_with(&format!("{host}.")), "{h}");
            assert_eq!(i["spec"]["tls"][0]["secretName"], secret);
            assert_eq!(
                i["spec"]["rules"][0]["http"]["paths"][0]["backend"],
                json!({"service": {"name": "verrazzano-authproxy", "port": {"number": 8775}}})
            );
            assert_eq!(
                i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"],
                "65M"
            );
        }
    }

    #[test]
    fn rancher_is_an_https_backend_with_its_realm_and_no_upstream_vhost() {
        let p = platform("ingress: {type: NodePort}\n");
        let s = step(&p, &Outputs::default()).expect("step");
        let r = find(&s, "rancher");
        assert_eq!(r["metadata"]["namespace"], "cattle-system");
        let a = &r["metadata"]["annotations"];
        assert_eq!(a["nginx.ingress.kubernetes.io/backend-protocol"], "HTTPS");
        assert_eq!(a["nginx.ingress.kubernetes.io/force-ssl-redirect"], "true");
        assert_eq!(a["nginx.ingress.kubernetes.io/proxy-read-timeout"], "1800");
        assert_eq!(
            a["nginx.ingress.kubernetes.io/auth-realm"],
            "default.127.0.0.1.nip.io auth"
        );
        assert!(
            a.get("nginx.ingress.kubernetes.io/upstream-vhost")
                .is_none()
        );
        assert!(a.get("external-dns.alpha.kubernetes.io/target").is_none());
        assert_eq!(r["spec"]["tls"][0]["secretName"], "tls-rancher-ingress");
        assert_eq!(
            r["spec"]["rules"][0]["http"]["paths"][0]["backend"],
            json!({"service": {"name": "rancher", "port": {"number": 443}}})
        );
        let off = platform(
            "components: {rancher: {enabled: false}, opensearch: {enabled: false}, opensearchDashboards: {enabled: false}}\n",
        );
        let names: Vec<String> = step(&off, &Outputs::default())
            .expect("step")
            .objects
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !["rancher", "opensearch", "opensearch-dashboards"].contains(&n.as_str()))
        );
    }

    #[test]
    fn the_console_ingress_gets_no_dns_record_of_its_own() {
        let p = platform(
            "environmentName: dev\ndns: {externalDNS: {provider: oci, zone: example.com}}\n",
        );
        let s = step(&p, &Outputs::default()).expect("step");
        let console = &find(&s, "verrazzano-ingress")["metadata"]["annotations"];
        assert!(
            console
                .get("external-dns.alpha.kubernetes.io/target")
                .is_none()
        );
        let grafana = &find(&s, "vmi-system-grafana")["metadata"]["annotations"];
        assert_eq!(
            grafana["external-dns.alpha.kubernetes.io/target"],
            "verrazzano-ingress.dev.example.com"
        );
    }
}
