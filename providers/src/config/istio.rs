//! The Istio releases `vz` installs, and how it moves from one to another
//! (`components.istio.version`, `upgrade`, `restartWorkloads`, `restartExcept`).
//!
//! A release ([`IstioRelease`]) decides the default images of istiod and of the proxies, the
//! CustomResourceDefinitions (their served and stored versions) and the name of its revision
//! (`1-30-3` for 1.30.3). Two are known: Istio 1.30 (the default: it supports the Kubernetes
//! releases `vz` supports) and Verrazzano v1.7.2's Istio 1.19.3, kept so that a platform installed
//! by Verrazzano, or by an earlier `vz`, can be moved from it.
//!
//! [`Upgrade::Canary`] (the default) installs each release as a revision beside the one before it
//! (istiod `istiod-1-30-3`, its webhooks and ConfigMaps suffixed the same) and points the mesh at
//! it through the default revision tag, so that a version move in the configuration plans as
//! Istio's canary upgrade: the new control plane, then the tag, the gateways and the workloads
//! moved to it, and the old revision removed last. [`Upgrade::InPlace`] keeps one unrevisioned
//! istiod (`istiod`), as Verrazzano does, and a version move updates it where it stands.

use serde::Deserialize;

/// One Istio release `vz` knows how to install.
#[derive(Debug, PartialEq, Eq)]
pub struct IstioRelease {
    /// The version, e.g. `1.30.3`.
    pub version: &'static str,
    /// The minor release, e.g. 30.
    pub minor: u32,
    /// The registry (with its path) of its default images.
    pub registry: &'static str,
    /// The tag of its default `pilot` and `proxyv2` images.
    pub tag: &'static str,
}

impl IstioRelease {
    /// The revision the release installs as under [`Upgrade::Canary`]: the version with its dots
    /// made dashes, as `istioctl install --revision` is usually given.
    pub fn revision(&self) -> String {
        self.version.replace('.', "-")
    }

    /// Whether it is Verrazzano v1.7.2's release (Istio 1.19.3, Verrazzano's images).
    pub fn is_verrazzanos(&self) -> bool {
        self.minor == 19
    }
}

/// Istio 1.30.3, the default: upstream's images.
pub const ISTIO_1_30: IstioRelease = IstioRelease {
    version: "1.30.3",
    minor: 30,
    registry: "docker.io/istio",
    tag: "1.30.3",
};

/// Istio 1.19.3, as Verrazzano v1.7.2 installs it: Verrazzano's builds of the images.
pub const ISTIO_1_19: IstioRelease = IstioRelease {
    version: "1.19.3",
    minor: 19,
    registry: "ghcr.io/verrazzano",
    tag: "1.19.3-20240104211928-419dfb47",
};

/// Every release `vz` installs, newest first.
pub const RELEASES: [&IstioRelease; 2] = [&ISTIO_1_30, &ISTIO_1_19];

/// The release a version names, if `vz` knows it.
pub fn release(version: &str) -> Option<&'static IstioRelease> {
    RELEASES.iter().copied().find(|r| r.version == version)
}

/// How a change of Istio release is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Upgrade {
    /// Each release is a revision of its own, installed beside the one before; the old one goes
    /// last.
    #[default]
    Canary,
    /// One unrevisioned istiod, updated where it stands.
    InPlace,
}

/// Istio's release and how the mesh moves between releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Istio {
    /// The release installed.
    pub release: &'static IstioRelease,
    /// How a change of release is carried out.
    pub upgrade: Upgrade,
    /// Restart the workloads of injected namespaces whose pods run without a sidecar, or with one
    /// another revision injected.
    pub restart_workloads: bool,
    /// Namespaces whose workloads are never restarted.
    pub restart_except: Vec<String>,
}

impl Default for Istio {
    fn default() -> Self {
        Istio {
            release: &ISTIO_1_30,
            upgrade: Upgrade::Canary,
            restart_workloads: true,
            restart_except: vec![],
        }
    }
}

impl Istio {
    /// The revision istiod runs as: `1-30-3` under [`Upgrade::Canary`], `default` in place.
    pub fn revision(&self) -> String {
        match self.upgrade {
            Upgrade::Canary => self.release.revision(),
            Upgrade::InPlace => "default".to_string(),
        }
    }

    /// Whether istiod is installed as a named revision (its objects suffixed with it).
    pub fn revisioned(&self) -> bool {
        self.upgrade == Upgrade::Canary
    }

    /// The suffix of istiod's revisioned names: `-1-30-3`, or nothing in place.
    pub fn suffix(&self) -> String {
        if self.revisioned() {
            format!("-{}", self.revision())
        } else {
            String::new()
        }
    }

    /// Whether the workloads of `namespace` may be restarted for their sidecars.
    pub fn restarts_in(&self, namespace: &str) -> bool {
        self.restart_workloads && !self.restart_except.iter().any(|n| n == namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_versions_with_dashes_and_default_in_place() {
        assert_eq!(ISTIO_1_19.revision(), "1-19-3");
        let mut istio = Istio::default();
        assert_eq!(istio.revision(), "1-30-3");
        assert_eq!(istio.suffix(), "-1-30-3");
        istio.upgrade = Upgrade::InPlace;
        assert_eq!(istio.revision(), "default");
        assert_eq!(istio.suffix(), "");
    }

    #[test]
    fn every_release_is_found_by_its_version() {
        for r in RELEASES {
            assert_eq!(release(r.version), Some(r));
        }
        assert_eq!(release("1.20.0"), None);
    }
}
