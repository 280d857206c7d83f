//! Istio's API and the mesh-wide policy `vz` sets on it.
//!
//! - Step `istio.crds`: the CustomResourceDefinitions of Istio 1.17 (the version Verrazzano 1.7
//!   ships): `networking.istio.io`, `security.istio.io`, `telemetry.istio.io` and
//!   `extensions.istio.io`, with the same names, kinds, versions and storage versions as Istio's own
//!   `base` chart. Their schemas accept any `spec` and `status` (Istio's validating webhook, which
//!   istiod serves, checks the content); the API server still checks the object's shape.
//! - Step `istio.peer-authentication`: strict mTLS for the whole mesh — PeerAuthentication `default`
//!   in the root namespace `istio-system` with `spec.mtls.mode: STRICT`.
//!
//! Kind-aware ordering puts the CRDs first on its own: the PeerAuthentication's API group is
//! defined by `istio.crds`, and its namespace by `namespaces`. Deletion runs the other way: the
//! PeerAuthentication goes before the CRDs that define it.

use serde_json::{Value, json};

use crate::config::Platform;
use crate::manifest::{Manifest, Step};
use crate::names::ISTIO_SYSTEM;
use crate::network_policies;

/// Id of the CRD step.
pub const CRDS_STEP: &str = "istio.crds";
/// Id of the strict-mTLS step.
pub const PEER_AUTHENTICATION_STEP: &str = "istio.peer-authentication";

/// The API version of PeerAuthentication (and the other `security.istio.io` kinds) in Istio 1.17.
pub const SECURITY_API: &str = "security.istio.io/v1beta1";

/// One Istio custom resource kind.
struct IstioKind {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    /// Served versions, oldest first.
    versions: &'static [&'static str],
    /// The version objects are stored in.
    storage: &'static str,
}

/// Istio 1.17's custom resource kinds (all namespaced), as its `base` chart defines them.
const KINDS: &[IstioKind] = &[
    IstioKind {
        group: "extensions.istio.io",
        kind: "WasmPlugin",
        plural: "wasmplugins",
        short_names: &[],
        versions: &["v1alpha1"],
        storage: "v1alpha1",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "DestinationRule",
        plural: "destinationrules",
        short_names: &["dr"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "EnvoyFilter",
        plural: "envoyfilters",
        short_names: &[],
        versions: &["v1alpha3"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "Gateway",
        plural: "gateways",
        short_names: &["gw"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "ProxyConfig",
        plural: "proxyconfigs",
        short_names: &[],
        versions: &["v1beta1"],
        storage: "v1beta1",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "ServiceEntry",
        plural: "serviceentries",
        short_names: &["se"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "Sidecar",
        plural: "sidecars",
        short_names: &[],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "VirtualService",
        plural: "virtualservices",
        short_names: &["vs"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "WorkloadEntry",
        plural: "workloadentries",
        short_names: &["we"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "networking.istio.io",
        kind: "WorkloadGroup",
        plural: "workloadgroups",
        short_names: &["wg"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
    },
    IstioKind {
        group: "security.istio.io",
        kind: "AuthorizationPolicy",
        plural: "authorizationpolicies",
        short_names: &[],
        versions: &["v1beta1"],
        storage: "v1beta1",
    },
    IstioKind {
        group: "security.istio.io",
        kind: "PeerAuthentication",
        plural: "peerauthentications",
        short_names: &["pa"],
        versions: &["v1beta1"],
        storage: "v1beta1",
    },
    IstioKind {
        group: "security.istio.io",
        kind: "RequestAuthentication",
        plural: "requestauthentications",
        short_names: &["ra"],
        versions: &["v1beta1"],
        storage: "v1beta1",
    },
    IstioKind {
        group: "telemetry.istio.io",
        kind: "Telemetry",
        plural: "telemetries",
        short_names: &["telemetry"],
        versions: &["v1alpha1"],
        storage: "v1alpha1",
    },
];

fn crd(k: &IstioKind) -> Manifest {
    // Structural, and open below `spec` and `status`: istiod's webhook validates the content.
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    });
    let versions: Vec<Value> = k
        .versions
        .iter()
        .map(|v| {
            json!({
                "name": v,
                "served": true,
                "storage": *v == k.storage,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
            })
        })
        .collect();
    let singular = k.kind.to_ascii_lowercase();
    let mut names = json!({
        "kind": k.kind,
        "listKind": format!("{}List", k.kind),
        "plural": k.plural,
        "singular": singular,
        "categories": ["istio-io", k.group.split('.').next().unwrap_or_default().to_string() + "-istio-io"],
    });
    if !k.short_names.is_empty() {
        names["shortNames"] = json!(k.short_names);
    }
    Manifest::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{}.{}", k.plural, k.group),
            "labels": {"app": "istio-pilot", "chart": "istio", "release": "istio"},
        },
        "spec": {
            "group": k.group,
            "names": names,
            "scope": "Namespaced",
            "versions": versions,
        },
    }))
}

/// The `istio.crds` step.
pub fn crds_step(_p: &Platform) -> Step {
    Step {
        id: CRDS_STEP.to_string(),
        description: "Istio's custom resource definitions (Istio 1.17)".into(),
        depends_on: vec![network_policies::STEP.to_string()],
        objects: KINDS.iter().map(crd).collect(),
        outputs: vec![],
    }
}

/// The `istio.peer-authentication` step.
pub fn peer_authentication_step(_p: &Platform) -> Step {
    let pa = Manifest::from_value(json!({
        "apiVersion": SECURITY_API,
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": ISTIO_SYSTEM},
        "spec": {"mtls": {"mode": "STRICT"}},
    }));
    Step {
        id: PEER_AUTHENTICATION_STEP.to_string(),
        description: "strict mTLS for the whole mesh".into(),
        depends_on: vec![],
        objects: vec![pa],
        outputs: vec![],
    }
}

/// The Istio steps, when Istio is on.
pub fn steps(p: &Platform) -> Vec<Step> {
    if !p.components.istio {
        return vec![];
    }
    vec![crds_step(p), peer_authentication_step(p)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;

    #[test]
    fn every_crd_is_named_plural_dot_group_with_one_storage_version() {
        let s = crds_step(&platform(""));
        assert_eq!(s.objects.len(), 14);
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
        // Its kind is defined by a CRD of the other step.
        let crds = crds_step(&platform(""));
        assert!(
            crds.objects
                .iter()
                .any(|c| c.name == "peerauthentications.security.istio.io"
                    && c.body["spec"]["versions"][0]["name"] == "v1beta1")
        );
    }

    #[test]
    fn no_istio_steps_without_istio() {
        assert!(
            steps(&platform(
                "components:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n"
            ))
            .is_empty()
        );
        assert_eq!(steps(&platform("")).len(), 2);
    }
}
