//! The desired state of a `vz` platform: one module per step, each producing the Kubernetes objects
//! for its part of the networking layer.
//!
//! [`desired`] turns a validated [`config::Platform`] into the list of [`Step`]s the planner orders
//! and applies. Every object carries the managed-by and platform labels, so that `vz` (and a person
//! with `kubectl -l app.kubernetes.io/managed-by=vz`) can find what it manages.
//!
//! Steps so far, in install order:
//! - [`namespaces`]: the system namespaces with their policy and mesh labels.
//! - [`network_policies`]: ingress NetworkPolicies for every system component.
//! - [`istio`]: Istio's CRDs (`istio.crds`) and strict mTLS (`istio.peer-authentication`).
//! - [`ingress_nginx`]: the NGINX IngressClass and controller Service, publishing the ingress address.
//! - [`system_ingresses`]: an Ingress per system component, under the platform [`domain`].

pub mod config;
pub mod domain;
pub mod ingress_nginx;
pub mod istio;
pub mod manifest;
pub mod names;
pub mod namespaces;
pub mod network_policies;
pub mod outputs;
pub mod system_ingresses;

pub use config::{ConfigError, Platform};
pub use manifest::{Manifest, Step, address};
pub use outputs::{OutputSpec, Outputs};

use manifest::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLATFORM_LABEL};

/// Every step of the platform, each with its objects labelled as managed by `vz`. Values other steps
/// publish are taken from `outputs` ([`outputs::UNKNOWN`] where not known yet).
pub fn desired(platform: &Platform, outputs: &Outputs) -> Vec<Step> {
    let mut steps = vec![namespaces::step(platform), network_policies::step(platform)];
    steps.extend(istio::steps(platform));
    if platform.components.ingress_nginx {
        // NGINX joins the mesh: it comes after Istio (and strict mTLS) when Istio is on.
        let after = if platform.components.istio {
            istio::PEER_AUTHENTICATION_STEP
        } else {
            network_policies::STEP
        };
        steps.push(ingress_nginx::step(platform, vec![after.to_string()]));
    }
    steps.extend(system_ingresses::step(platform, outputs));
    for step in &mut steps {
        for m in &mut step.objects {
            m.set_label(MANAGED_BY_LABEL, MANAGED_BY_VALUE);
            m.set_label(PLATFORM_LABEL, &platform.environment_name);
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
