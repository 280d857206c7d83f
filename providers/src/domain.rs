//! The platform's DNS domain, which every system host name ends with.
//!
//! `<environmentName>.<suffix>`, where the suffix depends on the DNS mode:
//! - wildcard DNS (`nip.io`, `sslip.io`): `<ingress IP>.<wildcard domain>`, so that any name under it
//!   resolves to the NGINX ingress address;
//! - user-managed DNS: `dns.external.suffix`;
//! - a DNS provider (ExternalDNS): the zone.
//!
//! The ingress IP is known from the configuration when `ingress.externalIPs` is set (the first one),
//! or when the Service is a NodePort without external IPs (127.0.0.1, `vz`'s local default; Verrazzano
//! refuses a NodePort without external IPs). Otherwise it is the load balancer's address: the
//! `ingress-ip` output of step `ingress-nginx`, [`Deferred::Unknown`] until the load balancer has one.
//! With `ingress.controller: gateway-api` the system routes are served by Istio's ingress gateway,
//! and its address takes the place of NGINX's.

use std::net::IpAddr;

use crate::config::{Dns, IngressController, IngressType, Platform};
use crate::names::{GATEWAY_IP, INGRESS_IP, INGRESS_NGINX_STEP, ISTIO_GATEWAYS_STEP};
use crate::outputs::{Deferred, Outputs};

/// The address the system routes are reached at — NGINX's, or with `ingress.controller:
/// gateway-api` Istio's ingress gateway's: unknown until the load balancer has one.
pub fn ingress_ip(p: &Platform, outputs: &Outputs) -> Deferred<String> {
    if p.ingress_controller == IngressController::GatewayApi {
        return gateway_ip(p, outputs);
    }
    if let Some(ip) = p.external_ips.first() {
        return Deferred::Known(ip.to_string());
    }
    match p.ingress_type {
        IngressType::NodePort => Deferred::Known("127.0.0.1".to_string()),
        IngressType::LoadBalancer => outputs.get(INGRESS_NGINX_STEP, INGRESS_IP),
    }
}

/// The address Istio's ingress gateway is reached at (applications' hosts point there): its own
/// external IP, 127.0.0.1 for a NodePort without one, else its load balancer's address (the
/// `gateway-ip` output of `istio.gateways`).
pub fn gateway_ip(p: &Platform, outputs: &Outputs) -> Deferred<String> {
    if let Some(ip) = p.gateway.external_ips.first() {
        return Deferred::Known(ip.to_string());
    }
    match p.gateway.service_type {
        IngressType::NodePort => Deferred::Known("127.0.0.1".to_string()),
        IngressType::LoadBalancer => outputs.get(ISTIO_GATEWAYS_STEP, GATEWAY_IP),
    }
}

/// An application's default host: `<app>.<namespace>.<domain>`, where with wildcard DNS the domain
/// is made of the Istio gateway's address (`<app>.<ns>.<gateway IP>.nip.io`, as Verrazzano did).
pub fn app_host(p: &Platform, outputs: &Outputs, app: &str, namespace: &str) -> Deferred<String> {
    match &p.dns {
        Dns::Wildcard { domain } => gateway_ip(p, outputs).map(|ip| {
            let label = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => ip.replace(':', "-"),
                _ => ip,
            };
            format!("{app}.{namespace}.{label}.{domain}")
        }),
        _ => domain(p, outputs).map(|d| format!("{app}.{namespace}.{d}")),
    }
}

/// The platform's DNS domain, `<env>.<suffix>`: unknown while it contains an unknown address.
pub fn domain(p: &Platform, outputs: &Outputs) -> Deferred<String> {
    let env = &p.environment_name;
    match &p.dns {
        Dns::Wildcard { domain } => ingress_ip(p, outputs).map(|ip| {
            // sslip.io reads IPv6 addresses with dashes for colons; IPv4 is written as is.
            let label = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => ip.replace(':', "-"),
                _ => ip,
            };
            format!("{env}.{label}.{domain}")
        }),
        Dns::External { suffix } => Deferred::Known(format!("{env}.{suffix}")),
        Dns::Rfc2136(r) => Deferred::Known(format!("{env}.{}", r.zone)),
        Dns::ExternalDns(e) => Deferred::Known(format!("{env}.{}", e.zone)),
    }
}

/// The name ExternalDNS points at the NGINX ingress (`verrazzano-ingress.<env>.<zone>`), when a DNS
/// provider is configured.
pub fn ingress_dns_name(p: &Platform) -> Option<String> {
    match &p.dns {
        Dns::ExternalDns(e) => Some(format!(
            "verrazzano-ingress.{}.{}",
            p.environment_name, e.zone
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;

    fn known(d: Deferred<String>) -> String {
        d.known()
            .cloned()
            .unwrap_or_else(|| panic!("unknown domain"))
    }

    #[test]
    fn a_configured_address_is_known_at_plan_time() {
        let p = platform(
            "environmentName: dev\ningress: {type: NodePort, externalIPs: [192.0.2.10]}\n",
        );
        assert_eq!(
            known(domain(&p, &Outputs::default())),
            "dev.192.0.2.10.nip.io"
        );
        let p = platform("ingress: {type: NodePort}\ndns: {wildcard: {domain: sslip.io}}\n");
        assert_eq!(
            known(domain(&p, &Outputs::default())),
            "default.127.0.0.1.sslip.io"
        );
    }

    #[test]
    fn with_gateway_api_the_domain_is_the_istio_gateways_address() {
        let p = platform(
            "environmentName: dev\ningress: {controller: gateway-api}\ncomponents:\n  istio:\n    ingress: {type: NodePort, externalIPs: [192.0.2.11]}\n",
        );
        assert_eq!(
            known(domain(&p, &Outputs::default())),
            "dev.192.0.2.11.nip.io"
        );
        let p = platform("environmentName: dev\ningress: {controller: gateway-api}\n");
        let mut o = Outputs::default();
        o.set(INGRESS_NGINX_STEP, INGRESS_IP, "203.0.113.5".into());
        assert_eq!(domain(&p, &o), Deferred::Unknown, "not NGINX's");
        o.set(ISTIO_GATEWAYS_STEP, GATEWAY_IP, "203.0.113.6".into());
        assert_eq!(known(domain(&p, &o)), "dev.203.0.113.6.nip.io");
    }

    #[test]
    fn a_load_balancer_address_is_unknown_until_published() {
        let p = platform("environmentName: dev\n");
        assert_eq!(domain(&p, &Outputs::default()), Deferred::Unknown);
        let mut o = Outputs::default();
        o.set(INGRESS_NGINX_STEP, INGRESS_IP, "203.0.113.5".into());
        assert_eq!(known(domain(&p, &o)), "dev.203.0.113.5.nip.io");
    }

    #[test]
    fn ipv6_addresses_are_dashed_for_sslip() {
        let p = platform(
            "dns: {wildcard: {domain: sslip.io}}\ningress: {externalIPs: ['2001:db8::1']}\n",
        );
        assert_eq!(
            known(domain(&p, &Outputs::default())),
            "default.2001-db8--1.sslip.io"
        );
    }

    #[test]
    fn an_apps_default_host_is_under_the_domain_or_the_gateways_address() {
        let p = platform(
            "environmentName: dev\ncomponents:\n  istio:\n    ingress: {type: NodePort, externalIPs: [192.0.2.11]}\n",
        );
        assert_eq!(
            known(app_host(&p, &Outputs::default(), "orders", "shop")),
            "orders.shop.192.0.2.11.nip.io"
        );
        let p = platform("environmentName: dev\ndns: {external: {suffix: example.com}}\n");
        assert_eq!(
            known(app_host(&p, &Outputs::default(), "orders", "shop")),
            "orders.shop.dev.example.com"
        );
        let lb = platform("environmentName: dev\n");
        assert_eq!(
            app_host(&lb, &Outputs::default(), "orders", "shop"),
            Deferred::Unknown
        );
    }

    #[test]
    fn managed_dns_uses_the_suffix_or_zone() {
        let p = platform("environmentName: dev\ndns: {external: {suffix: example.com}}\n");
        assert_eq!(known(domain(&p, &Outputs::default())), "dev.example.com");
        assert_eq!(ingress_dns_name(&p), None);
        let p = platform("dns: {externalDNS: {provider: oci, zone: example.org}}\n");
        assert_eq!(
            known(domain(&p, &Outputs::default())),
            "default.example.org"
        );
    }
}
