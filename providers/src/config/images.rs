//! `images:`, the container images the platform runs ([`Images`]): Verrazzano v1.7.2's, from
//! their registry or a mirror (`images.registry`), unless replaced one by one (the defaults and the
//! rules are in the [module's documentation](super)).
//!
//! The file's section ([`RawImages`]: one optional field per image) and the validated [`Images`]
//! (a registry and a map of overrides) are two types: the file names each image as a field, so
//! that the schema lists them, while the rest of `vz` asks for an [`Image`] by value.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::errors::Source;
use super::istio::{ISTIO_1_19, ISTIO_1_30, IstioRelease};

/// The registry, with its path, that Verrazzano v1.7.2 pulls its images from.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/verrazzano";

/// Registry, repository and tag of the ExternalDNS that reads Gateway API routes of v1
/// (`--source=gateway-httproute` reads v1 from ExternalDNS v0.21.0; Verrazzano v1.7.2's v0.12.2 reads
/// only v1alpha2): upstream's, the default of `images.externalDNS` with
/// `ingress.controller: gateway-api`.
pub const EXTERNAL_DNS_GATEWAY_API: (&str, &str, &str) =
    ("registry.k8s.io/external-dns", "external-dns", "v0.22.0");

/// How every image is pulled, as Verrazzano does: tags are pinned, so a node pulls each once.
pub const IMAGE_PULL_POLICY: &str = "IfNotPresent";

/// A container image the platform runs, each of which `images:` can replace.
///
/// A new image is a variant here, a row in [`Image::ALL`], [`Image::field`] and
/// [`Image::default_name`], and a field of the raw `images:` section with its row in
/// `RawImages::overrides`; the unit tests check that every variant is accepted under its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Image {
    /// The NGINX Ingress Controller (container `controller`).
    NginxController,
    /// The NGINX default backend, which serves the error pages.
    NginxDefaultBackend,
    /// Istio's control plane, istiod (container `discovery`).
    Pilot,
    /// Istio's proxy: the gateways' container `istio-proxy` and the injected sidecars.
    ProxyV2,
    /// ExternalDNS (with `dns.externalDNS`).
    ExternalDns,
}

impl Image {
    /// Every image, in the order of the `images:` section.
    pub const ALL: [Image; 5] = [
        Image::NginxController,
        Image::NginxDefaultBackend,
        Image::Pilot,
        Image::ProxyV2,
        Image::ExternalDns,
    ];

    /// Its field under `images:`.
    pub fn field(self) -> &'static str {
        match self {
            Image::NginxController => "nginxController",
            Image::NginxDefaultBackend => "nginxDefaultBackend",
            Image::Pilot => "pilot",
            Image::ProxyV2 => "proxyV2",
            Image::ExternalDns => "externalDNS",
        }
    }

    /// Registry, repository (under the registry) and tag of the default image: Verrazzano
    /// v1.7.2's, and for Istio's two images those of the Istio `release` installed.
    pub fn default_name(
        self,
        release: &IstioRelease,
    ) -> (&'static str, &'static str, &'static str) {
        match self {
            Image::Pilot => (release.registry, "pilot", release.tag),
            Image::ProxyV2 => (release.registry, "proxyv2", release.tag),
            other => {
                let (repository, tag) = other.verrazzanos();
                (DEFAULT_REGISTRY, repository, tag)
            }
        }
    }

    /// Repository (under the registry) and tag of Verrazzano v1.7.2's image.
    fn verrazzanos(self) -> (&'static str, &'static str) {
        match self {
            Image::NginxController => (
                "nginx-ingress-controller",
                "v1.7.1-20240723181019-33c273be0",
            ),
            Image::NginxDefaultBackend => (
                "nginx-ingress-default-backend",
                "v1.7.1-20240723181019-33c273be0",
            ),
            Image::Pilot => ("pilot", ISTIO_1_19.tag),
            Image::ProxyV2 => ("proxyv2", ISTIO_1_19.tag),
            Image::ExternalDns => ("external-dns", "v0.12.2-20231219112424-52012475"),
        }
    }
}

/// Which images the platform runs: Verrazzano v1.7.2's (and the Istio release's), from their
/// registries or a mirror, unless replaced one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Registry and path of the default images when `images.registry` is set (a mirror of them
    /// all); `None`: each image's own ([`DEFAULT_REGISTRY`], and the Istio release's). No
    /// trailing `/`.
    pub registry: Option<String>,
    /// The Istio release whose `pilot` and `proxyv2` are the defaults.
    pub istio: &'static IstioRelease,
    /// Images replaced whole (`images.<field>`), as full references with a tag or digest.
    pub overrides: BTreeMap<Image, String>,
    /// Whether the default ExternalDNS is [`EXTERNAL_DNS_GATEWAY_API`] (the system routes are
    /// Gateway API routes, which Verrazzano's ExternalDNS cannot read).
    pub external_dns_reads_routes: bool,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            registry: None,
            istio: &ISTIO_1_30,
            overrides: Default::default(),
            external_dns_reads_routes: false,
        }
    }
}

impl Images {
    /// The reference of `image` to put in a pod: its override, else the default image under the
    /// registry.
    pub fn reference(&self, image: Image) -> String {
        if let Some(r) = self.overrides.get(&image) {
            return r.clone();
        }
        let (registry, repository, tag) = self.default_name(image);
        let registry = self.registry.as_deref().unwrap_or(registry);
        format!("{registry}/{repository}:{tag}")
    }

    /// The registry the default image `image` comes from (a mirror, or its own).
    pub fn registry_of(&self, image: Image) -> &str {
        self.registry
            .as_deref()
            .unwrap_or(self.default_name(image).0)
    }

    /// Registry, repository and tag of the default `image` of this platform.
    pub fn default_name(&self, image: Image) -> (&'static str, &'static str, &'static str) {
        match image {
            Image::ExternalDns if self.external_dns_reads_routes => EXTERNAL_DNS_GATEWAY_API,
            other => other.default_name(self.istio),
        }
    }
}

// `images:` as the file has it.
#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawImages {
    #[schemars(with = "Option<String>")]
    registry: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    nginx_controller: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    nginx_default_backend: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pilot: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    proxy_v2: Option<Spanned<String>>,
    #[serde(rename = "externalDNS")]
    #[schemars(with = "Option<String>")]
    external_dns: Option<Spanned<String>>,
}

impl RawImages {
    /// Each image with the value of its field, if set.
    fn overrides(&self) -> [(Image, Option<&Spanned<String>>); Image::ALL.len()] {
        [
            (Image::NginxController, self.nginx_controller.as_ref()),
            (
                Image::NginxDefaultBackend,
                self.nginx_default_backend.as_ref(),
            ),
            (Image::Pilot, self.pilot.as_ref()),
            (Image::ProxyV2, self.proxy_v2.as_ref()),
            (Image::ExternalDns, self.external_dns.as_ref()),
        ]
    }
}

/// The `images` section: the registry and each image replaced.
pub(super) fn validate(
    src: &Source<'_>,
    raw: &RawImages,
    istio: &'static IstioRelease,
    external_dns_reads_routes: bool,
) -> Result<Images, ConfigError> {
    let mut images = Images {
        istio,
        external_dns_reads_routes,
        ..Images::default()
    };
    if let Some(r) = &raw.registry {
        images.registry =
            Some(check_registry(&r.value).map_err(|m| src.err(r, "images.registry", m))?);
    }
    for (image, value) in raw.overrides() {
        if let Some(v) = value {
            let field = format!("images.{}", image.field());
            let reference = src.checked(v, &field, check_image_reference)?;
            images.overrides.insert(image, reference);
        }
    }
    Ok(images)
}

/// A registry host: labels of letters, digits and `-` separated by dots, with an optional `:port`.
fn check_registry_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let labels_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !labels_ok {
        return Err(format!("`{host}` is not a registry host"));
    }
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{p}` in `{host}` is not a port"));
    }
    Ok(())
}

/// A path component of a repository: lowercase letters, digits, `.`, `_` and `-`, starting and
/// ending with a letter or digit (a little looser than the OCI distribution grammar, which also
/// limits how separators follow one another; a registry refuses such names itself).
fn check_path_component(c: &str) -> Result<(), String> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !c.is_empty()
        && c.bytes()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && c.bytes().next().is_some_and(alnum)
        && c.bytes().last().is_some_and(alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{c}` is not a repository path component (lowercase letters and digits, separated by `.`, `_` or `-`)"
        ))
    }
}

/// `images.registry`: `host[:port][/path...]`, without scheme, tag or digest. Returns it without
/// a trailing `/`.
fn check_registry(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.contains("://") {
        return Err(format!(
            "`{s}` has a scheme; write the registry without it (e.g. `registry.example.com/verrazzano`)"
        ));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(format!("`{s}` contains whitespace"));
    }
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let mut parts = trimmed.split('/');
    let host = parts.next().unwrap_or_default();
    check_registry_host(host)?;
    for c in parts {
        if c.contains(':') || c.contains('@') {
            return Err(format!(
                "`{s}` names a tag or digest; `images.registry` is only the registry and path the default images are pulled under"
            ));
        }
        check_path_component(c)?;
    }
    Ok(trimmed.to_string())
}

/// A per-image override: `[host[:port]/]path[:tag][@algorithm:hex]`, with a tag or a digest.
fn check_image_reference(s: &str) -> Result<(), String> {
    let help = "write `<registry>/<repository>:<tag>` or `<registry>/<repository>@sha256:<digest>`";
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(char::is_whitespace) || s.contains("://") {
        return Err(format!("`{s}` is not an image reference; {help}"));
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return Err(format!("`{d}` in `{s}` is not a digest; {help}"));
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].split_once(':') {
        Some((_, t)) => (&name_tag[..name_tag.len() - t.len() - 1], Some(t)),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !t.starts_with(['.', '-']);
        if !ok {
            return Err(format!("`{t}` in `{s}` is not a tag; {help}"));
        }
    }
    if tag.is_none() && digest.is_none() {
        return Err(format!(
            "`{s}` names no tag or digest, so each node would run whatever `latest` was when it pulled; {help}"
        ));
    }
    let components: Vec<&str> = name.split('/').collect();
    let path = match components.as_slice() {
        [first, rest @ ..]
            if !rest.is_empty()
                && (first.contains('.') || first.contains(':') || *first == "localhost") =>
        {
            check_registry_host(first)?;
            rest
        }
        all => all,
    };
    for c in path {
        check_path_component(c).map_err(|m| format!("{m}; {help}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{parse_err, parse_ok};

    #[test]
    fn images_default_to_verrazzano_1_7_2_and_istio_1_30s_own() {
        let p = parse_ok("");
        assert_eq!(
            p.images.reference(Image::Pilot),
            "docker.io/istio/pilot:1.30.3"
        );
        assert_eq!(
            p.images.reference(Image::ProxyV2),
            "docker.io/istio/proxyv2:1.30.3"
        );
        let p = parse_ok("components:\n  istio: {version: 1.19.3}\n");
        assert_eq!(
            p.images.reference(Image::NginxController),
            "ghcr.io/verrazzano/nginx-ingress-controller:v1.7.1-20240723181019-33c273be0"
        );
        assert_eq!(
            p.images.reference(Image::NginxDefaultBackend),
            "ghcr.io/verrazzano/nginx-ingress-default-backend:v1.7.1-20240723181019-33c273be0"
        );
        assert_eq!(
            p.images.reference(Image::Pilot),
            "ghcr.io/verrazzano/pilot:1.19.3-20240104211928-419dfb47"
        );
        assert_eq!(
            p.images.reference(Image::ProxyV2),
            "ghcr.io/verrazzano/proxyv2:1.19.3-20240104211928-419dfb47"
        );
    }

    #[test]
    fn a_registry_replaces_the_default_registry_of_every_image() {
        let p = parse_ok("images:\n  registry: mirror.local:5000/vz/\n");
        assert_eq!(p.images.registry.as_deref(), Some("mirror.local:5000/vz"));
        for image in Image::ALL {
            let r = p.images.reference(image);
            assert!(r.starts_with("mirror.local:5000/vz/"), "{r}");
            assert!(!r.contains("ghcr.io"), "{r}");
        }
    }

    #[test]
    fn a_per_image_override_wins_over_the_registry() {
        let p = parse_ok(
            "images:\n  registry: mirror.local/vz\n  nginxController: other.example/nginx/controller:v9\n",
        );
        assert_eq!(
            p.images.reference(Image::NginxController),
            "other.example/nginx/controller:v9"
        );
        assert_eq!(
            p.images.reference(Image::NginxDefaultBackend),
            "mirror.local/vz/nginx-ingress-default-backend:v1.7.1-20240723181019-33c273be0"
        );
    }

    #[test]
    fn every_image_is_accepted_under_its_field() {
        for image in Image::ALL {
            let reference = format!(
                "registry.example.com/x/{}@sha256:{}",
                image.field().to_lowercase(),
                "a".repeat(64)
            );
            let p = parse_ok(&format!("images:\n  {}: {reference}\n", image.field()));
            assert_eq!(p.images.reference(image), reference, "{image:?}");
            for other in Image::ALL.into_iter().filter(|o| *o != image) {
                let (registry, _, _) = p.images.default_name(other);
                assert!(p.images.reference(other).starts_with(registry));
            }
        }
    }

    #[test]
    fn an_unknown_image_field_is_rejected_with_its_line() {
        let e = parse_err("images:\n  registry: mirror.local\n  nginxControler: a/b:c\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            e.message.starts_with("unknown field `nginxControler`"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_registry_names_its_field_and_line() {
        for (value, hint) in [
            ("https://mirror.local", "scheme"),
            ("mirror.local/vz:v1", "tag or digest"),
            ("mirror.local/Verrazzano", "repository path component"),
            ("''", "must not be empty"),
            ("mirror.local:http", "not a port"),
        ] {
            let e = parse_err(&format!(
                "environmentName: dev\nimages:\n  registry: {value}\n"
            ));
            assert_eq!(e.field.as_deref(), Some("images.registry"), "{value}: {e}");
            assert_eq!(e.line, Some(3), "{value}: {e}");
            assert!(e.message.contains(hint), "{value}: {e}");
        }
    }

    #[test]
    fn a_bad_image_reference_names_its_field_and_line() {
        for (value, hint) in [
            ("mirror.local/nginx/controller", "no tag or digest"),
            ("'mirror.local/nginx/controller:'", "not a tag"),
            ("mirror.local/nginx/controller@sha256:xyz", "not a digest"),
            (
                "mirror.local/Nginx/controller:v1",
                "repository path component",
            ),
            (
                "'mirror.local/nginx controller:v1'",
                "not an image reference",
            ),
        ] {
            let e = parse_err(&format!("images:\n  nginxDefaultBackend: {value}\n"));
            assert_eq!(
                e.field.as_deref(),
                Some("images.nginxDefaultBackend"),
                "{value}: {e}"
            );
            assert_eq!(e.line, Some(2), "{value}: {e}");
            assert!(e.message.contains(hint), "{value}: {e}");
        }
        for ok in [
            "localhost:5000/controller:v1",
            "controller:v1",
            "mirror.local/a/b__c-d.e:v1.7.1_x",
            "mirror.local/a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "mirror.local:443/a:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            parse_ok(&format!("images:\n  nginxController: '{ok}'\n"));
        }
    }
}
