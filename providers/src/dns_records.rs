//! Step `dns`: the platform's DNS records, written by `vz` itself to the server of `dns.rfc2136`.
//!
//! Records are objects of the pseudo API group `dns.vz.dev` — kind `A`, `AAAA` or `CNAME`, named
//! by their fully qualified name, so their addresses read `dns/A/verrazzano-ingress.dev.example.test`
//! — planned, recorded and destroyed like any other object; the engine reads and writes them on the
//! DNS server instead of the API server.
//!
//! | record | value |
//! |---|---|
//! | `verrazzano-ingress.<env>.<zone>` A (AAAA for an IPv6 address) | the NGINX ingress address (output `ingress-ip` of `ingress-nginx`) |
//! | every system Ingress host (`grafana.vmi.system.<env>.<zone>`, ...) CNAME | `verrazzano-ingress.<env>.<zone>` |
//!
//! The step comes after the Ingresses, so destroy removes the records before anything they point
//! at. Every record is exclusive: one that exists without `vz`'s ownership record is never
//! overwritten unless the configuration's `adopt:` names it.

use std::net::IpAddr;

use serde_json::json;

use crate::config::{Dns, Platform};
use crate::manifest::{Manifest, Step};
use crate::names::{
    INGRESS_NGINX_STEP, ISTIO_GATEWAYS_STEP, SYSTEM_INGRESSES_STEP, SYSTEM_ROUTES_STEP,
};
use crate::outputs::{Deferred, Outputs};
use crate::{domain, system_ingresses};

/// Id of this step.
pub const STEP: &str = "dns";
/// The API version of DNS records.
pub const API_VERSION: &str = "dns.vz.dev/v1";

/// What an existing record at a name `vz` wants probably is, and the ways out.
pub const TAKEN: &str = "a DNS record someone else made (it has no `vz` ownership record); to have vz manage it from now on, add its address to `adopt:`, or remove it from the zone";

/// A record of `kind` at `name` holding `values`.
pub fn record(kind: &str, name: &str, ttl: u32, values: Deferred<Vec<String>>) -> Manifest {
    Manifest::from_value(json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"ttl": ttl, "values": values.into_json()},
    }))
    .exclusive(TAKEN)
}

/// The name the ingress address (NGINX's, or Istio's ingress gateway's with Gateway API routes) is
/// published under.
pub fn ingress_name(p: &Platform) -> Option<String> {
    match &p.dns {
        Dns::Rfc2136(r) => Some(format!(
            "verrazzano-ingress.{}.{}",
            p.environment_name, r.zone
        )),
        _ => None,
    }
}

/// The `dns` step (only with `dns.rfc2136` and the NGINX Ingress Controller).
pub fn steps(p: &Platform, outputs: &Outputs) -> Vec<Step> {
    let (Dns::Rfc2136(r), Some(ingress)) = (&p.dns, ingress_name(p)) else {
        return vec![];
    };
    if !p.serves_system_routes() {
        return vec![];
    }
    let ip = domain::ingress_ip(p, outputs);
    let kind = match ip.known().map(|i| i.parse::<IpAddr>()) {
        Some(Ok(IpAddr::V6(_))) => "AAAA",
        _ => "A",
    };
    let mut objects = vec![record(kind, &ingress, r.ttl, ip.map(|i| vec![i]))];
    for (_, _, hosts) in system_ingresses::tls_secrets(p, outputs) {
        if let Deferred::Known(hosts) = hosts {
            for host in hosts {
                objects.push(record(
                    "CNAME",
                    &host,
                    r.ttl,
                    Deferred::Known(vec![ingress.clone()]),
                ));
            }
        }
    }
    vec![Step {
        id: STEP.into(),
        description: format!("DNS records in zone {} on {}", r.zone, r.server),
        // After what serves the hosts, and what publishes the address they point at.
        depends_on: if p.gateway_api() {
            vec![
                ISTIO_GATEWAYS_STEP.to_string(),
                SYSTEM_ROUTES_STEP.to_string(),
            ]
        } else {
            vec![
                INGRESS_NGINX_STEP.to_string(),
                SYSTEM_INGRESSES_STEP.to_string(),
            ]
        },
        objects,
        outputs: vec![],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;

    const RFC2136: &str = "environmentName: dev\ningress: {type: NodePort, externalIPs: [192.0.2.50]}\ndns:\n  rfc2136: {server: 127.0.0.1:5399, zone: example.test, tsigKeyName: vz-key, tsigSecretEnv: S}\n";

    fn addresses(p: &Platform) -> Vec<String> {
        steps(p, &Outputs::default())
            .iter()
            .flat_map(|s| s.objects.iter().map(|m| s.address_of(m)))
            .collect()
    }

    #[test]
    fn with_gateway_api_the_records_point_at_the_ingress_gateway() {
        let p = platform(&RFC2136.replace(
            "ingress: {type: NodePort, externalIPs: [192.0.2.50]}",
            "ingress: {controller: gateway-api}\ncomponents:\n  istio:\n    ingress: {type: NodePort, externalIPs: [192.0.2.51]}",
        ));
        let s = steps(&p, &Outputs::default());
        let a = &s[0].objects[0];
        assert_eq!(a.name, "verrazzano-ingress.dev.example.test");
        assert_eq!(a.body["spec"]["values"], json!(["192.0.2.51"]));
        assert!(s[0].depends_on.contains(&SYSTEM_ROUTES_STEP.to_string()));
        assert!(s[0].objects.len() > 1, "a CNAME per system host");
    }

    #[test]
    fn the_ingress_address_and_every_system_host_get_a_record() {
        let p = platform(RFC2136);
        let a = addresses(&p);
        assert_eq!(a[0], "dns/A/verrazzano-ingress.dev.example.test");
        assert!(a.contains(&"dns/CNAME/grafana.vmi.system.dev.example.test".to_string()));
        assert!(a.contains(&"dns/CNAME/verrazzano.dev.example.test".to_string()));
        let s = &steps(&p, &Outputs::default())[0];
        assert_eq!(s.objects[0].body["spec"]["values"], json!(["192.0.2.50"]));
        assert!(s.objects.iter().all(|m| m.exclusive.is_some()));
    }

    #[test]
    fn no_records_without_rfc2136() {
        assert!(addresses(&platform("")).is_empty());
    }
}
