//! Step `ingress-nginx`: how the NGINX Ingress Controller is reached, and the address it publishes.
//!
//! - IngressClass `verrazzano-nginx` (controller `k8s.io/verrazzano-ingress-nginx`, not the default
//!   class), which the system Ingresses name.
//! - Service `verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller`: type
//!   `LoadBalancer` (default) or `NodePort`, only HTTPS (443 → the controller's `https` port,
//!   `appProtocol: https`), the
//!   configured `externalIPs`. With ExternalDNS it carries the annotation that makes
//!   `verrazzano-ingress.<env>.<zone>` point at it.
//!
//! Output `ingress-ip`: the first external IP, else the load balancer's address once it has one.
//! [`crate::domain`] turns it into the platform's DNS domain; when neither the configuration nor a
//! previous apply knows it, the plan shows the hosts that use it as "(known after apply)", and apply
//! fills them in once the Service has its address.

use serde_json::json;

use crate::config::{IngressType, Platform};
use crate::domain;
use crate::manifest::{Manifest, Step, address};
use crate::names::INGRESS_NGINX;
use crate::outputs::{OutputSpec, Outputs};
use crate::{istio, network_policies};

/// Id of this step.
pub const STEP: &str = "ingress-nginx";
/// Name of the output holding the controller's external address.
pub const INGRESS_IP: &str = "ingress-ip";
/// The controller's Service.
pub const SERVICE: &str = "ingress-controller-ingress-nginx-controller";
/// The IngressClass system Ingresses use.
pub const INGRESS_CLASS: &str = "verrazzano-nginx";
/// The controller name the IngressClass hands its Ingresses to.
pub const CONTROLLER: &str = "k8s.io/verrazzano-ingress-nginx";

/// Labels the controller's pods carry (and its Service selects).
pub const CONTROLLER_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/name", "ingress-nginx"),
    ("app.kubernetes.io/instance", "ingress-controller"),
    ("app.kubernetes.io/component", "controller"),
];

/// The `ingress-nginx` step, when NGINX is on. NGINX joins the mesh (its namespace is injected),
/// so it comes after Istio and strict mTLS when Istio is on.
pub fn steps(p: &Platform, _outputs: &Outputs) -> Vec<Step> {
    if !p.components.ingress_nginx {
        return vec![];
    }
    let after = if p.components.istio {
        istio::PEER_AUTHENTICATION_STEP
    } else {
        network_policies::STEP
    };
    vec![step(p, vec![after.to_string()])]
}

fn step(p: &Platform, depends_on: Vec<String>) -> Step {
    let labels: serde_json::Map<String, serde_json::Value> = CONTROLLER_LABELS
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    let class = Manifest::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": INGRESS_CLASS},
        "spec": {"controller": CONTROLLER},
    }));
    let mut service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": INGRESS_NGINX, "labels": labels},
        "spec": {
            "type": match p.ingress_type {
                IngressType::LoadBalancer => "LoadBalancer",
                IngressType::NodePort => "NodePort",
            },
            "selector": labels,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https", "appProtocol": "https"}],
        },
    });
    if !p.external_ips.is_empty() {
        service["spec"]["externalIPs"] = json!(
            p.external_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    if let Some(name) = domain::ingress_dns_name(p) {
        service["metadata"]["annotations"] = json!({
            "external-dns.alpha.kubernetes.io/hostname": name,
            "external-dns.alpha.kubernetes.io/ttl": "60",
        });
    }
    let service = Manifest::from_value(service);
    let service_address = address(STEP, "Service", Some(INGRESS_NGINX), SERVICE);
    Step {
        id: STEP.to_string(),
        description: "NGINX Ingress Controller: its IngressClass and its Service".into(),
        depends_on,
        objects: vec![class, service],
        outputs: vec![OutputSpec {
            name: INGRESS_IP.to_string(),
            object: service_address,
            pointers: vec![
                "/spec/externalIPs/0".into(),
                "/status/loadBalancer/ingress/0/ip".into(),
            ],
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test;

    fn service(yaml: &str) -> serde_json::Value {
        let p = for_test(yaml);
        let s = step(&p, vec![]);
        s.objects
            .iter()
            .find(|m| m.kind == "Service")
            .map(|m| m.body.clone())
            .unwrap_or_default()
    }

    #[test]
    fn only_https_is_exposed_on_the_configured_type() {
        let svc = service("");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(svc["spec"]["ports"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https", "appProtocol": "https"})
        );
        assert!(svc["spec"].get("externalIPs").is_none());
        let svc = service("ingress: {type: NodePort, externalIPs: [192.0.2.9]}\n");
        assert_eq!(svc["spec"]["type"], "NodePort");
        assert_eq!(svc["spec"]["externalIPs"], json!(["192.0.2.9"]));
    }

    #[test]
    fn nginx_comes_after_strict_mtls_with_istio_and_after_the_policies_without() {
        let s = steps(&for_test(""), &Outputs::default());
        assert_eq!(s[0].depends_on, [istio::PEER_AUTHENTICATION_STEP]);
        let p = for_test("components:\n  istio: {enabled: false}\n");
        assert_eq!(
            steps(&p, &Outputs::default())[0].depends_on,
            [network_policies::STEP]
        );
        let p = for_test("components:\n  ingressNGINX: {enabled: false}\n");
        assert!(steps(&p, &Outputs::default()).is_empty());
    }

    #[test]
    fn the_output_is_read_from_the_service() {
        let p = for_test("");
        let s = step(&p, vec![]);
        let out = &s.outputs[0];
        assert!(s.objects.iter().any(|m| s.address_of(m) == out.object));
        let live =
            json!({"spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.4"}]}}});
        assert_eq!(out.extract(&live).as_deref(), Some("203.0.113.4"));
    }

    #[test]
    fn external_dns_points_the_ingress_name_at_the_service() {
        let svc =
            service("environmentName: prod\ndns: {provider: {name: rfc2136, zone: example.com}}\n");
        assert_eq!(
            svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
            "verrazzano-ingress.prod.example.com"
        );
        assert!(service("").pointer("/metadata/annotations").is_none());
    }
}
