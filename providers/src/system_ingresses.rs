//! Step `system-ingresses`: an Ingress for every system component with a user interface or API.
//!
//! Hosts are `<name>.<domain>` ([`crate::domain`]); while the domain is not known yet (a load
//! balancer without an address), they read "(known after apply)" in the plan and are filled in by
//! apply once step `ingress-nginx` publishes its address. Each Ingress uses IngressClass
//! `verrazzano-nginx`, terminates TLS with its component's secret, and sends traffic to the
//! Service's cluster IP (`service-upstream`) with the upstream host set to the Service's name. With
//! ExternalDNS, each host is also a record pointing at `verrazzano-ingress.<env>.<zone>` (TTL 60).
//!
//! | Ingress (namespace) | host | backend | TLS secret |
//! |---|---|---|---|
//! | `verrazzano-ingress` (verrazzano-system) | `verrazzano.<dom>` | `verrazzano-authproxy:8775` | `verrazzano-tls` |
//! | `vmi-system-prometheus` (verrazzano-monitoring) | `prometheus.vmi.system.<dom>` | `prometheus-operator-kube-p-prometheus:9090` | `system-tls-prometheus` |
//! | `vmi-system-grafana` (verrazzano-system) | `grafana.vmi.system.<dom>` | `verrazzano-authproxy:8775` | `system-tls-grafana` |
//! | `vmi-system-kiali` (verrazzano-system) | `kiali.vmi.system.<dom>` | `verrazzano-authproxy:8775` | the controller's default |
//! | `keycloak` (keycloak) | `keycloak.<dom>` | `keycloak-http:80` | `keycloak-tls` |
//! | `argocd-server` (argocd) | `argocd.<dom>` | `argocd-server:443` (HTTPS) | `tls-argocd-ingress` |

use serde_json::{Value, json};

use crate::config::Platform;
use crate::domain;
use crate::ingress_nginx::{self, INGRESS_CLASS};
use crate::manifest::{Manifest, Step};
use crate::names::{ARGOCD, KEYCLOAK, VERRAZZANO_MONITORING, VERRAZZANO_SYSTEM};
use crate::outputs::Outputs;

/// Id of this step.
pub const STEP: &str = "system-ingresses";

/// The auth proxy in front of the console, the API, Grafana and Kiali.
const AUTHPROXY: (&str, u16) = ("verrazzano-authproxy", 8775);

/// One system Ingress.
struct SystemIngress {
    name: &'static str,
    namespace: &'static str,
    /// First labels of the host, before the domain.
    host_prefix: &'static str,
    service: (&'static str, u16),
    tls_secret: Option<&'static str>,
    /// The backend speaks HTTPS.
    https_backend: bool,
}

fn wanted(p: &Platform) -> Vec<SystemIngress> {
    let c = &p.components;
    let mut out = vec![SystemIngress {
        name: "verrazzano-ingress",
        namespace: VERRAZZANO_SYSTEM,
        host_prefix: "verrazzano",
        service: AUTHPROXY,
        tls_secret: Some("verrazzano-tls"),
        https_backend: false,
    }];
    if c.prometheus {
        out.push(SystemIngress {
            name: "vmi-system-prometheus",
            namespace: VERRAZZANO_MONITORING,
            host_prefix: "prometheus.vmi.system",
            service: ("prometheus-operator-kube-p-prometheus", 9090),
            tls_secret: Some("system-tls-prometheus"),
            https_backend: false,
        });
    }
    if c.grafana {
        out.push(SystemIngress {
            name: "vmi-system-grafana",
            namespace: VERRAZZANO_SYSTEM,
            host_prefix: "grafana.vmi.system",
            service: AUTHPROXY,
            tls_secret: Some("system-tls-grafana"),
            https_backend: false,
        });
    }
    if c.kiali {
        out.push(SystemIngress {
            name: "vmi-system-kiali",
            namespace: VERRAZZANO_SYSTEM,
            host_prefix: "kiali.vmi.system",
            service: AUTHPROXY,
            tls_secret: None,
            https_backend: false,
        });
    }
    if c.keycloak {
        out.push(SystemIngress {
            name: "keycloak",
            namespace: KEYCLOAK,
            host_prefix: "keycloak",
            service: ("keycloak-http", 80),
            tls_secret: Some("keycloak-tls"),
            https_backend: false,
        });
    }
    if c.argocd {
        out.push(SystemIngress {
            name: "argocd-server",
            namespace: ARGOCD,
            host_prefix: "argocd",
            service: ("argocd-server", 443),
            tls_secret: Some("tls-argocd-ingress"),
            https_backend: true,
        });
    }
    out
}

fn ingress(p: &Platform, dom: &str, i: &SystemIngress) -> Manifest {
    let host = format!("{}.{dom}", i.host_prefix);
    let (svc, port) = i.service;
    let mut annotations = json!({
        "cert-manager.io/common-name": host,
        "nginx.ingress.kubernetes.io/service-upstream": "true",
        "nginx.ingress.kubernetes.io/upstream-vhost": format!("{svc}.{}.svc.cluster.local", i.namespace),
    });
    if i.https_backend {
        annotations["nginx.ingress.kubernetes.io/backend-protocol"] = json!("HTTPS");
    }
    if let Some(target) = domain::ingress_dns_name(p) {
        annotations["external-dns.alpha.kubernetes.io/target"] = json!(target);
        annotations["external-dns.alpha.kubernetes.io/ttl"] = json!("60");
    }
    let mut tls = json!({"hosts": [host]});
    if let Some(secret) = i.tls_secret {
        tls["secretName"] = json!(secret);
    }
    let rule: Value = json!({
        "host": host,
        "http": {"paths": [{
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": svc, "port": {"number": port}}},
        }]},
    });
    Manifest::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": i.name, "namespace": i.namespace, "annotations": annotations},
        "spec": {"ingressClassName": INGRESS_CLASS, "tls": [tls], "rules": [rule]},
    }))
}

/// The `system-ingresses` step (only with the NGINX Ingress Controller).
pub fn step(p: &Platform, outputs: &Outputs) -> Option<Step> {
    if !p.components.ingress_nginx {
        return None;
    }
    let dom = domain::domain(p, outputs);
    Some(Step {
        id: STEP.to_string(),
        description: format!("Ingresses for the system components under {dom}"),
        depends_on: vec![ingress_nginx::STEP.to_string()],
        objects: wanted(p).iter().map(|i| ingress(p, &dom, i)).collect(),
        outputs: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;
    use crate::outputs::{UNKNOWN, has_unknown};

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
        assert!(s.objects.iter().all(|m| has_unknown(&m.body)));
        assert!(hosts(&s)[0].contains(UNKNOWN));
        let mut o = Outputs::default();
        o.set(
            ingress_nginx::STEP,
            ingress_nginx::INGRESS_IP,
            "203.0.113.5".into(),
        );
        let s = step(&p, &o).expect("step");
        assert!(s.objects.iter().all(|m| !has_unknown(&m.body)));
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
        let p =
            platform("environmentName: dev\ndns: {provider: {name: rfc2136, zone: example.com}}\n");
        let s = step(&p, &Outputs::default()).expect("step");
        let a = &s.objects[0].body["metadata"]["annotations"];
        assert_eq!(
            a["external-dns.alpha.kubernetes.io/target"],
            "verrazzano-ingress.dev.example.com"
        );
        assert_eq!(hosts(&s)[0], "verrazzano.dev.example.com");
    }
}
