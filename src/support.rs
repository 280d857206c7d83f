//! Which Kubernetes versions `vz` works with, and which the Istio it installs supports.
//!
//! `vz` is tested on every Kubernetes release upstream maintains (`scripts/testenv`'s matrix:
//! [`TESTED`]). A cluster older than the oldest of them is refused before anything is read or
//! written: the platform relies on what those releases do (server-side apply's field ownership, the
//! `kubernetes.io/metadata.name` label every namespace carries, Pod Security admission, the
//! `v1` APIs of everything it writes). A newer cluster is used, with a warning.
//!
//! Istio publishes which Kubernetes releases each of its releases supports ([`ISTIO_SUPPORTS`],
//! from istio.io's "Supported releases"); the plan warns when the Istio a configuration installs
//! (the release in its `pilot` image's tag) is not supported on the cluster's Kubernetes.
//!
//! Everything here is pure: the versions come in, verdicts and messages go out.

use std::fmt;

/// The Kubernetes minor versions (of 1.x) `vz` is tested on, oldest first: `scripts/testenv`'s
/// matrix (`K8S_MATRIX`), which `scripts/test` runs; change both together, and the README's table.
pub const TESTED: [u32; 3] = [35, 36, 37];

/// Istio releases (1.x) and the Kubernetes minor versions (1.x, inclusive) each supports.
pub const ISTIO_SUPPORTS: &[(u32, u32, u32)] = &[
    (19, 25, 28),
    (20, 25, 29),
    (21, 26, 29),
    (22, 27, 30),
    (23, 27, 30),
    (24, 28, 31),
    (25, 29, 32),
    (26, 29, 33),
    (27, 29, 33),
    (28, 30, 34),
    (29, 31, 35),
    (30, 32, 36),
];

/// A Kubernetes release as the API server reports it (`/version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVersion {
    /// The major version (1).
    pub major: u32,
    /// The minor version (36 for 1.36).
    pub minor: u32,
    /// What the server calls itself (`v1.36.5`, `v1.36.5-eks-1234`).
    pub git_version: String,
}

impl KubeVersion {
    /// Read `/version`'s fields. Distributions write the minor as `36+`, and some leave major and
    /// minor empty: then the `gitVersion` (`v1.36.5...`) says it.
    pub fn parse(major: &str, minor: &str, git_version: &str) -> Option<KubeVersion> {
        let number = |s: &str| -> Option<u32> {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let (major, minor) = match (number(major), number(minor)) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                let mut parts = git_version.trim_start_matches('v').split('.');
                (number(parts.next()?)?, number(parts.next()?)?)
            }
        };
        Some(KubeVersion {
            major,
            minor,
            git_version: git_version.to_string(),
        })
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.git_version.is_empty() {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            f.write_str(&self.git_version)
        }
    }
}

/// What `vz` makes of a cluster's Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Tested.
    Tested,
    /// Older than the oldest tested: refused, with this message.
    TooOld(String),
    /// Newer than the newest tested: used, with this warning.
    Newer(String),
}

/// `1.35, 1.36 and 1.37` of minor versions 35, 36, 37.
fn listed(minors: impl IntoIterator<Item = u32>) -> String {
    let names: Vec<String> = minors.into_iter().map(|m| format!("1.{m}")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// The tested versions, listed.
fn tested_list() -> String {
    listed(TESTED)
}

/// Judge the Kubernetes version of the API server at `server`.
pub fn judge(server: &str, v: &KubeVersion) -> Verdict {
    let oldest = TESTED[0];
    let newest = TESTED[TESTED.len() - 1];
    if v.major < 1 || (v.major == 1 && v.minor < oldest) {
        Verdict::TooOld(format!(
            "the API server at {server} runs Kubernetes {v}, older than vz supports: Kubernetes 1.{oldest} or later (vz is tested on {})",
            tested_list()
        ))
    } else if v.major > 1 || v.minor > newest {
        Verdict::Newer(format!(
            "the API server at {server} runs Kubernetes {v}, newer than vz has been tested on ({}); plans are made from what it answers, but check them closely",
            tested_list()
        ))
    } else {
        Verdict::Tested
    }
}

/// The Istio release (1.x) an image tag names: `1.19.3-20240104211928-419dfb47` -> 19. `None`
/// for a digest or a tag that is not a version.
pub fn istio_release(image: &str) -> Option<u32> {
    // The tag follows the last `:` after the last `/` (a registry may have a port).
    let last = image.rsplit('/').next()?;
    if last.contains('@') {
        return None;
    }
    let (_, tag) = last.split_once(':')?;
    let mut parts = tag.trim_start_matches('v').split(['.', '-']);
    if parts.next()? != "1" {
        return None;
    }
    let minor = parts.next()?;
    if minor.is_empty() || !minor.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    minor.parse().ok()
}

/// The warning, if any, for installing Istio from `pilot_image` on a cluster running `v`.
pub fn istio_warning(pilot_image: &str, v: &KubeVersion) -> Option<String> {
    if v.major != 1 {
        return None;
    }
    let Some(release) = istio_release(pilot_image) else {
        return Some(format!(
            "cannot tell which Istio release the pilot image {pilot_image} is (its tag is not a version), so vz cannot check that it supports Kubernetes {v}"
        ));
    };
    let Some(&(_, low, high)) = ISTIO_SUPPORTS.iter().find(|(r, _, _)| *r == release) else {
        return Some(format!(
            "vz does not know which Kubernetes releases Istio 1.{release} (image {pilot_image}) supports; check Istio's list of supported releases for Kubernetes {v}"
        ));
    };
    if (low..=high).contains(&v.minor) {
        return None;
    }
    let fits: Vec<u32> = ISTIO_SUPPORTS
        .iter()
        .filter(|(_, l, h)| (*l..=*h).contains(&v.minor))
        .map(|(r, _, _)| *r)
        .collect();
    let installs = vz_providers::config::ISTIO_RELEASES
        .iter()
        .find(|r| fits.contains(&r.minor));
    let advice = match fits.len() {
        _ if installs.is_some() => {
            let version = installs.map(|r| r.version).unwrap_or_default();
            let verb = if fits.len() == 1 {
                "supports"
            } else {
                "support"
            };
            format!(
                "Istio {} {verb} it, and vz installs Istio {version}: set `components.istio.version: {version}` (the default; with `upgrade: canary` the move is a canary upgrade)",
                listed(fits)
            )
        }
        0 => "no Istio release vz knows of supports it".to_string(),
        1 => format!(
            "Istio {} supports it: set images.pilot and images.proxyV2 to that release's images",
            listed(fits)
        ),
        _ => format!(
            "Istio {} support it: set images.pilot and images.proxyV2 to the images of one of them",
            listed(fits)
        ),
    };
    Some(format!(
        "Istio 1.{release} (image {pilot_image}) supports Kubernetes 1.{low} to 1.{high}, but this cluster runs {v}; {advice}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u32) -> KubeVersion {
        KubeVersion {
            major: 1,
            minor,
            git_version: format!("v1.{minor}.0"),
        }
    }

    #[test]
    fn versions_are_read_from_distribution_style_fields() {
        assert_eq!(
            KubeVersion::parse("1", "36", "v1.36.5").map(|v| v.minor),
            Some(36)
        );
        assert_eq!(
            KubeVersion::parse("1", "35+", "v1.35.2-eks-1").map(|v| v.minor),
            Some(35)
        );
        assert_eq!(
            KubeVersion::parse("", "", "v1.37.2").map(|v| v.minor),
            Some(37)
        );
        assert_eq!(KubeVersion::parse("", "", "unknown"), None);
    }

    #[test]
    fn the_tested_versions_pass_older_ones_are_refused_newer_ones_warned_about() {
        for m in TESTED {
            assert_eq!(judge("https://x", &v(m)), Verdict::Tested);
        }
        let Verdict::TooOld(msg) = judge("https://x", &v(34)) else {
            panic!("1.34 is refused")
        };
        assert!(
            msg.contains("Kubernetes v1.34.0") && msg.contains("1.35 or later"),
            "{msg}"
        );
        assert!(msg.contains("tested on 1.35, 1.36 and 1.37"), "{msg}");
        assert!(matches!(judge("https://x", &v(20)), Verdict::TooOld(_)));
        let Verdict::Newer(msg) = judge("https://x", &v(38)) else {
            panic!("1.38 is used with a warning")
        };
        assert!(
            msg.contains("v1.38.0, newer than vz has been tested on"),
            "{msg}"
        );
    }

    #[test]
    fn the_istio_release_is_read_from_the_pilot_images_tag() {
        assert_eq!(
            istio_release("ghcr.io/verrazzano/pilot:1.19.3-20240104211928-419dfb47"),
            Some(19)
        );
        assert_eq!(
            istio_release("mirror.local:5000/istio/pilot:1.30.4"),
            Some(30)
        );
        assert_eq!(
            istio_release("docker.io/istio/pilot:1.29.0-distroless"),
            Some(29)
        );
        assert_eq!(istio_release("mirror.local:5000/pilot"), None);
        assert_eq!(istio_release("istio/pilot@sha256:0123"), None);
        assert_eq!(istio_release("istio/pilot:latest"), None);
    }

    #[test]
    fn istio_19_on_kubernetes_1_36_is_warned_about_with_the_releases_that_fit() {
        let w = istio_warning("ghcr.io/verrazzano/pilot:1.19.3-x", &v(36)).expect("warned");
        assert!(w.contains("Istio 1.19 (image ghcr.io/verrazzano/pilot:1.19.3-x) supports Kubernetes 1.25 to 1.28, but this cluster runs v1.36.0"), "{w}");
        assert!(
            w.contains("Istio 1.30 supports it, and vz installs Istio 1.30.3: set `components.istio.version: 1.30.3`"),
            "{w}"
        );
        assert_eq!(istio_warning("istio/pilot:1.30.4", &v(36)), None);
        assert_eq!(istio_warning("istio/pilot:1.19.3", &v(27)), None);
        let both = istio_warning("istio/pilot:1.19.3", &v(35)).expect("warned");
        assert!(both.contains("Istio 1.29 and 1.30 support it"), "{both}");
        let none = istio_warning("istio/pilot:1.19.3", &v(40)).expect("warned");
        assert!(
            none.contains("no Istio release vz knows of supports it"),
            "{none}"
        );
    }

    #[test]
    fn an_istio_vz_cannot_place_is_said_so() {
        let digest = istio_warning("istio/pilot@sha256:0123", &v(36)).expect("warned");
        assert!(
            digest.contains("cannot tell which Istio release"),
            "{digest}"
        );
        let unknown = istio_warning("istio/pilot:1.31.0", &v(36)).expect("warned");
        assert!(
            unknown.contains("does not know which Kubernetes releases Istio 1.31"),
            "{unknown}"
        );
    }
}
