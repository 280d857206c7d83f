//! The desired state of a `vz` platform: one module per step, each producing the Kubernetes objects
//! for its part of the networking layer.
//!
//! [`desired`] turns a validated [`config::Platform`] into the list of [`Step`]s the planner orders
//! and applies, by calling every [`Provider`] of [`PROVIDERS`]. Every object `vz` owns carries the
//! managed-by and platform labels, so that `vz` (and a person with
//! `kubectl -l app.kubernetes.io/managed-by=vz`) can find what it manages.
//!
//! # How the modules layer
//!
//! Base modules hold what several modules share, and import only base modules:
//! - [`names`]: every name more than one module uses (namespaces, the step ids other steps come
//!   after, outputs, labels, shared Secrets and [`names::SecretRef`]); it imports nothing.
//! - [`outputs`] (values known only after apply, [`Deferred`]), [`pki`] (issuing and reading
//!   certificates, pure functions) and [`k8s`] (builders for typed objects): they import nothing.
//! - [`config`]: the validated configuration ([`Platform`]), over `names` and `pki`.
//! - [`manifest`]: objects and steps, with the certificates the engine issues into them and the
//!   values it copies ([`manifest::CertSpec`], [`manifest::Fill`]), over `names`, `outputs`, `pki`.
//! - [`domain`] (the platform's DNS domain and the addresses it is made of) and [`tls`]
//!   (certificate Secrets signed by the platform CA), over the configuration and the modules above.
//!
//! Providers, the modules of [`PROVIDERS`], render one part of the platform each, from base modules.
//! One reads another only for what that one alone knows: the system Ingresses' TLS Secrets
//! ([`system_ingresses::tls_secrets`], which [`certificates`] issues and [`dns_records`] publishes),
//! a DNS record ([`dns_records::record`], for [`applications`]), what NGINX comes after
//! ([`istio::control_plane::after_istiod`], [`external_dns::before_sources`]), and the annotations
//! that make ExternalDNS publish a source ([`external_dns::target_annotation`] and its siblings). No module imports
//! one that imports it, directly or not: a test reads the sources and names any cycle
//! (`src/layering.rs`). Adding a provider is one module and one line in [`PROVIDERS`]; a name
//! another module needs from it goes in [`names`]. A provider that must also act on the cluster at
//! points of a run (read it before planning, fill an object just before it is sent, record what the
//! server answered, act before its objects are deleted) adds one lifecycle module to the `vz`
//! binary (`src/lifecycle/`) and one line to its `LIFECYCLES`: this crate stays pure.
//!
//! [`requirements`](mod@requirements) lists what the platform needs from the cluster without creating it (an
//! existing Istio, with `components.istio.install: false`).
//!
//! # Steps
//!
//! In install order:
//! - [`namespaces`]: the system namespaces with their policy and mesh labels.
//! - [`network_policies`]: ingress NetworkPolicies for every system component.
//! - [`external_dns`]: with `dns.externalDNS`, ExternalDNS, which writes the platform's DNS
//!   records through a provider `vz` does not speak (before the NGINX and Ingress steps, so that
//!   destroy removes them first).
//! - [`istio`]: Istio's CRDs (`istio.crds`), strict mTLS (`istio.peer-authentication`), istiod
//!   and its webhooks (`istio.control-plane`), the ingress and egress gateways (`istio.gateways`),
//!   the server-header EnvoyFilter and the system AuthorizationPolicies.
//! - [`ingress_nginx`]: the NGINX Ingress Controller (IngressClass, Deployments, Services, ConfigMaps
//!   and RBAC), publishing the ingress address.
//! - [`certificates`]: the platform CA, the system Ingresses' TLS certificates, the CA bundle for
//!   clients, webhook serving certificates and the CA bundles in webhook configurations.
//! - [`system_ingresses`]: an Ingress per system component, under the platform [`domain`].
//! - [`dns_records`]: with `dns.rfc2136`, the platform's DNS records, written by `vz` itself.
//! - [`applications`]: per application namespace and per application (after the platform steps
//!   they need): Gateway, VirtualServices, DestinationRules, AuthorizationPolicies, certificate and
//!   DNS records.

pub mod applications;
pub mod certificates;
pub mod config;
pub mod dns_records;
pub mod domain;
pub mod external_dns;
pub mod ingress_nginx;
pub mod istio;
pub mod k8s;
#[cfg(test)]
mod layering;
pub mod manifest;
pub mod names;
pub mod namespaces;
pub mod network_policies;
pub mod outputs;
pub mod pki;
pub mod requirements;
pub mod system_ingresses;
pub mod system_routes;
pub mod tls;

pub use config::{ConfigError, Platform};
pub use manifest::{Manifest, Ownership, Step, address};
pub use outputs::{Deferred, OutputSpec, Outputs};
pub use requirements::{Requirement, requirements};

use manifest::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLATFORM_LABEL};

/// A provider renders the steps of one part of the platform from the configuration and the outputs
/// other steps published so far (none when a part is off). Each step names the steps it depends on.
pub type Provider = fn(&Platform, &Outputs) -> Vec<Step>;

/// Every provider, in install order. A new provider is one module and one line here.
pub const PROVIDERS: &[Provider] = &[
    namespaces::steps,
    network_policies::steps,
    external_dns::steps,
    istio::steps,
    ingress_nginx::steps,
    certificates::steps,
    system_ingresses::steps,
    system_routes::steps,
    dns_records::steps,
    applications::steps,
];

/// Every step of the platform. Objects `vz` owns carry the managed-by and platform labels; objects
/// it only patches carry none. Objects the configuration's `adopt:` names are no longer exclusive. Values other steps publish are taken from `outputs` (unknown where
/// not published yet).
pub fn desired(platform: &Platform, outputs: &Outputs) -> Vec<Step> {
    let mut steps: Vec<Step> = PROVIDERS
        .iter()
        .flat_map(|p| p(platform, outputs))
        .collect();
    // Applications come after the whole platform (and destroy removes them before any of it).
    let platform_steps: Vec<String> = steps
        .iter()
        .filter(|s| !applications::is_app_step(&s.id))
        .map(|s| s.id.clone())
        .collect();
    for step in steps
        .iter_mut()
        .filter(|s| applications::is_app_step(&s.id))
    {
        for id in &platform_steps {
            if !step.depends_on.contains(id) {
                step.depends_on.push(id.clone());
            }
        }
    }
    for step in &mut steps {
        let id = step.id.clone();
        for m in &mut step.objects {
            if m.exclusive.is_some()
                && platform.adopts(&address(&id, &m.kind, m.namespace.as_deref(), &m.name))
            {
                m.exclusive = None;
            }
            if m.ownership == Ownership::Owned {
                m.set_label(MANAGED_BY_LABEL, MANAGED_BY_VALUE);
                m.set_label(PLATFORM_LABEL, &platform.environment_name);
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_carries_the_managed_by_and_platform_labels() {
        let p = config::for_test("environmentName: dev\n");
        let steps = desired(&p, &Outputs::default());
        assert!(steps.iter().map(|s| s.objects.len()).sum::<usize>() > 10);
        for m in steps.iter().flat_map(|s| &s.objects) {
            let labels = &m.body["metadata"]["labels"];
            assert_eq!(labels[MANAGED_BY_LABEL], "vz", "{}", m.display_name());
            assert_eq!(labels[PLATFORM_LABEL], "dev", "{}", m.display_name());
        }
    }

    #[test]
    fn what_vz_must_create_itself_is_exclusive_unless_adopted() {
        let exclusive = |yaml: &str| -> Vec<String> {
            let p = config::for_test(yaml);
            desired(&p, &Outputs::default())
                .iter()
                .flat_map(|s| {
                    s.objects
                        .iter()
                        .filter(|m| m.exclusive.is_some())
                        .map(|m| s.address_of(m))
                })
                .collect()
        };
        assert_eq!(
            exclusive(""),
            [
                "namespaces/Namespace/istio-system",
                "istio.control-plane/Deployment/istio-system/istiod-1-30-3",
                "ingress-nginx/IngressClass/verrazzano-nginx",
                "ingress-nginx/Deployment/verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller",
            ]
        );
        assert_eq!(
            exclusive("adopt: [namespaces/Namespace/istio-system]\n").len(),
            3,
            "adopted"
        );
        let existing = exclusive("components:\n  istio: {install: false}\n");
        assert!(
            existing.iter().all(|a| a.starts_with("ingress-nginx/")),
            "{existing:?}"
        );
    }

    #[test]
    fn addresses_are_unique() {
        let p = config::for_test("");
        let mut seen = std::collections::HashSet::new();
        for s in desired(&p, &Outputs::default()) {
            for m in &s.objects {
                assert!(
                    seen.insert(s.address_of(m)),
                    "duplicate {}",
                    s.address_of(m)
                );
            }
        }
    }
}
