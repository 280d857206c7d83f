//! Istio: its API, its control plane and gateways, and the mesh-wide policy `vz` sets on it.
//!
//! - Step `istio.crds`: the 15 CustomResourceDefinitions of the chosen release (1.30.3, or 1.19.3
//!   as Verrazzano v1.7.2 installs it), from [`crds`]: `networking.istio.io`, `security.istio.io`,
//!   `telemetry.istio.io`, `extensions.istio.io` (and 1.19's `install.istio.io`), with the same
//!   names, kinds, versions and storage versions as Istio's own charts. The kinds `vz` writes (PeerAuthentication,
//!   Gateway, VirtualService, DestinationRule, AuthorizationPolicy, EnvoyFilter) get Istio's
//!   structural `spec` schemas, so the API server prunes misspelt fields and rejects wrong types;
//!   the others accept any `spec` (Istio's validating webhook, which istiod serves, checks them).
//! - Step `istio.peer-authentication`: strict mTLS for the whole mesh — PeerAuthentication `default`
//!   in the root namespace `istio-system` with `spec.mtls.mode: STRICT`.
//!
//! - Step `istio.control-plane`: istiod and its webhooks ([`control_plane`]), as the platform's
//!   revision under `upgrade: canary`.
//! - Step `istio.revision-tag` (canary only): the default revision tag, pointing the mesh at that
//!   revision.
//! - Step `istio.gateways`: the ingress and egress gateways ([`gateways`]).
//! - Step `istio.workloads`: no objects; where apply restarts the workloads whose sidecars are
//!   stale (planned by `vz`'s `lifecycle::workloads`).
//! - Steps `istio.server-header-filter` and `istio.authorization-policies`: the EnvoyFilter and
//!   the system AuthorizationPolicies Verrazzano sets once Istio runs ([`mesh`]).
//!
//! Kind-aware ordering puts the CRDs first on its own: the PeerAuthentication's API group is
//! defined by `istio.crds`, and its namespace by `namespaces`. Deletion runs the other way: the
//! PeerAuthentication goes before the CRDs that define it.

pub mod control_plane;
pub mod crds;
pub mod gateways;
pub mod mesh;

use serde_json::json;

use crate::config::Platform;
use crate::manifest::{Manifest, Step};
use crate::names::{
    ISTIO_CONTROL_PLANE_STEP, ISTIO_CRDS_STEP, ISTIO_GATEWAYS_STEP, ISTIO_PEER_AUTHENTICATION_STEP,
    ISTIO_REVISION_TAG_STEP, ISTIO_SYSTEM, ISTIO_WORKLOADS_STEP, NETWORK_POLICIES_STEP,
};
use crate::outputs::Outputs;
use control_plane::after_istiod;

/// The API version of PeerAuthentication (and the other `security.istio.io` kinds) `vz` writes.
pub use crds::SECURITY_API;

/// The `istio.crds` step.
pub fn crds_step(p: &Platform) -> Step {
    Step {
        id: ISTIO_CRDS_STEP.to_string(),
        description: format!(
            "Istio's custom resource definitions (Istio {})",
            p.istio.release.version
        ),
        depends_on: vec![NETWORK_POLICIES_STEP.to_string()],
        objects: crds::definitions(p.istio.release),
        outputs: vec![],
    }
}

/// The `istio.revision-tag` step (`upgrade: canary`): the default revision tag, which sends the
/// namespaces labelled `istio-injection=enabled` (and the default validation) to the platform's
/// revision. A version move updates it once the new revision is ready: that is the moment the
/// mesh moves.
pub fn revision_tag_step(p: &Platform) -> Step {
    let rev = control_plane::Revision::of(p);
    Step {
        id: ISTIO_REVISION_TAG_STEP.to_string(),
        description: format!(
            "the default revision tag, pointing at revision {}",
            rev.name
        ),
        depends_on: vec![ISTIO_CONTROL_PLANE_STEP.to_string()],
        objects: control_plane::revision_tag(&rev).to_vec(),
        outputs: vec![],
    }
}

/// The `istio.workloads` step: no objects of its own. Apply restarts there the workloads of the
/// injected namespaces whose pods run without a sidecar or with another revision's (what the plan
/// lists under "Workloads to restart"), once the mesh points at the platform's revision and the
/// gateways run on it; the old revision's objects are deleted after it, with the rest of what
/// left the configuration.
pub fn workloads_step(p: &Platform) -> Step {
    Step {
        id: ISTIO_WORKLOADS_STEP.to_string(),
        description: format!(
            "workloads restarted onto revision {}",
            control_plane::Revision::of(p).name
        ),
        depends_on: vec![ISTIO_GATEWAYS_STEP.to_string()],
        objects: vec![],
        outputs: vec![],
    }
}

/// The `istio.peer-authentication` step.
pub fn peer_authentication_step(p: &Platform) -> Step {
    let pa = Manifest::from_value(json!({
        "apiVersion": SECURITY_API,
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": ISTIO_SYSTEM},
        "spec": {"mtls": {"mode": "STRICT"}},
    }));
    Step {
        id: ISTIO_PEER_AUTHENTICATION_STEP.to_string(),
        description: "strict mTLS for the whole mesh".into(),
        depends_on: after_istiod(p),
        objects: vec![pa],
        outputs: vec![],
    }
}

/// The Istio steps, when Istio is on. With `install: false` only the mesh's configuration: strict
/// mTLS, the EnvoyFilter and the AuthorizationPolicies, on the Istio already there (see
/// [`requirements`]).
pub fn steps(p: &Platform, _outputs: &Outputs) -> Vec<Step> {
    if !p.components.istio {
        return vec![];
    }
    let mut steps = vec![peer_authentication_step(p)];
    if p.components.installs_istio() {
        steps.extend([crds_step(p), control_plane::step(p), gateways::step(p)]);
        if p.istio.revisioned() {
            steps.push(revision_tag_step(p));
        }
        steps.push(workloads_step(p));
    }
    steps.push(mesh::server_header_step(p));
    steps.extend(mesh::authorization_step(p));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;

    #[test]
    fn every_crd_is_named_plural_dot_group_with_one_storage_version() {
        let s = crds_step(&platform(""));
        assert_eq!(s.objects.len(), 15);
        for m in &s.objects {
            let spec = &m.body["spec"];
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            let group = spec["group"].as_str().unwrap_or_default();
            assert_eq!(m.name, format!("{plural}.{group}"));
            let versions = spec["versions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let stored = versions.iter().filter(|v| v["storage"] == true).count();
            assert_eq!(stored, 1, "{}", m.name);
            assert!(
                versions
                    .iter()
                    .all(|v| v["schema"]["openAPIV3Schema"]["type"] == "object")
            );
        }
    }

    #[test]
    fn strict_mtls_is_mesh_wide() {
        let s = peer_authentication_step(&platform(""));
        let pa = &s.objects[0];
        assert_eq!(
            s.address_of(pa),
            "istio.peer-authentication/PeerAuthentication/istio-system/default"
        );
        assert_eq!(pa.body["spec"]["mtls"]["mode"], "STRICT");
        // Its kind is defined by a CRD of the other step, which serves the version it is
        // written with.
        let crds = crds_step(&platform(""));
        let version = SECURITY_API.split_once('/').map(|(_, v)| v);
        assert!(crds.objects.iter().any(|c| {
            c.name == "peerauthentications.security.istio.io"
                && c.body["spec"]["versions"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v["name"].as_str() == version))
        }));
    }

    #[test]
    fn istio_resources_wait_for_istiod_when_vz_installs_it() {
        let deps = |yaml: &str| -> Vec<(String, Vec<String>)> {
            steps(&platform(yaml), &Outputs::default())
                .into_iter()
                .filter(|s| s.objects.iter().any(|m| m.api_version.contains("istio.io")))
                .map(|s| (s.id, s.depends_on))
                .collect()
        };
        let installed = deps("components:\n  istio: {upgrade: inPlace}\n");
        assert_eq!(installed.len(), 3, "{installed:?}");
        for (id, d) in &installed {
            assert_eq!(d, &["istio.control-plane"], "{id}");
        }
        let revisioned = deps("");
        assert_eq!(revisioned.len(), 3, "{revisioned:?}");
        for (id, d) in &revisioned {
            assert_eq!(
                d,
                &["istio.revision-tag"],
                "{id}: the tag sends them to the revision"
            );
        }
        for (id, d) in deps("components:\n  istio: {install: false}\n") {
            assert!(d.is_empty(), "{id}: the existing istiod is a requirement");
        }
    }

    #[test]
    fn no_istio_steps_without_istio() {
        assert!(
            steps(
                &platform("components:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n"),
                &Outputs::default()
            )
            .is_empty()
        );
        assert_eq!(steps(&platform(""), &Outputs::default()).len(), 8);
        let in_place = platform("components:\n  istio: {upgrade: inPlace}\n");
        assert_eq!(
            steps(&in_place, &Outputs::default()).len(),
            7,
            "no revision tag"
        );
    }
}
