//! The platform configuration file: parsing, validation and defaults.
//!
//! The file is YAML. It is read in two stages, the way a compiler reads source: first into the file's
//! own structures, which remember where each value came from (`serde_saphyr::Spanned`), then
//! validated into a [`Platform`] that the rest of `vz` uses without checking again. Every error
//! names the file, the line and column, and the field.
//!
//! ```yaml
//! environmentName: quickstart        # first label of the platform's DNS domain; default "default"
//! dns:
//!   wildcard: {domain: nip.io}       # or sslip.io; or `external: {suffix: example.com}`, or
//!   # rfc2136: {server: 127.0.0.1:53, zone: example.com, tsigKeyName: vz-key,
//!   #           tsigAlgorithm: hmac-sha256, tsigSecretEnv: VZ_TSIG_SECRET, ttl: 60}
//! ingress:
//!   type: NodePort                   # or LoadBalancer (default)
//!   externalIPs: [192.0.2.10]
//! components:
//!   istio: {enabled: true, injectionEnabled: true}
//!   keycloak: {enabled: false}
//! state:
//!   backend: local
//!   path: quickstart.vzstate.json    # relative to this file
//! certificates:                      # all optional; see "Certificates" in the README
//!   ca: {secretName: my-ca, namespace: cert-manager}   # bring your own CA (default: self-signed)
//!   keyAlgorithm: ECDSA-P256         # or RSA-2048, RSA-4096
//!   validityDays: 90                 # leaves; CAs: caValidityDays (3650)
//!   renewBeforeDays: 30
//!   webhooks:                        # serving certificates for webhooks the API server calls
//!     - {service: op-webhook, namespace: verrazzano-install, secretPrefix: op,
//!        configurations: [ValidatingWebhookConfiguration/op-validator]}
//! images:                            # default: Verrazzano v1.7.2's images, from ghcr.io/verrazzano
//!   registry: registry.example.com/verrazzano   # mirror for air-gapped clusters
//!   nginxController: registry.example.com/nginx/controller:v1.7.1-patched  # one image, in full
//! ```
//!
//! `images` chooses the container images the platform runs ([`Images`]). Each image defaults to
//! Verrazzano v1.7.2's (bill of materials `ingress-controller` 1.7.1-5):
//!
//! | field | default |
//! |---|---|
//! | `nginxController` | `ghcr.io/verrazzano/nginx-ingress-controller:v1.7.1-20240723181019-33c273be0` |
//! | `nginxDefaultBackend` | `ghcr.io/verrazzano/nginx-ingress-default-backend:v1.7.1-20240723181019-33c273be0` |
//! | `pilot` | `ghcr.io/verrazzano/pilot:1.19.3-20240104211928-419dfb47` |
//! | `proxyV2` | `ghcr.io/verrazzano/proxyv2:1.19.3-20240104211928-419dfb47` |
//! | `externalDNS` | `ghcr.io/verrazzano/external-dns:v0.12.2-20231219112424-52012475` |
//!
//! `images.registry` replaces `ghcr.io/verrazzano` in every default (a host, an optional port and
//! an optional path, no scheme, tag or digest), so that a cluster without Internet access pulls
//! the same images from its own mirror: with `registry: mirror.local:5000/vz` the controller is
//! `mirror.local:5000/vz/nginx-ingress-controller:v1.7.1-…`. A per-image field replaces that one
//! image whole, registry included, and wins over `registry`; it must name a tag or a digest, so
//! that every node runs the same image (an untagged image is `latest`, which changes under
//! `IfNotPresent` from node to node).
//!
//! # Layout
//!
//! A section a file, each with its types, the file's structures it is read into, its validation
//! (small functions, one a rule or a field) and its tests:
//!
//! | file | section |
//! |---|---|
//! | `platform.rs` | the file as a whole, [`Platform`]; `environmentName`, `ingress`, `adopt` |
//! | `components.rs` | `components`, with Istio's plug-in CA and gateway |
//! | `istio.rs` | the Istio releases `vz` installs, and `components.istio`'s upgrade settings |
//! | `images.rs` | `images` |
//! | `dns.rs`, `external_dns.rs` | `dns`; `dns.externalDNS` |
//! | `state.rs` | `state` (also read alone: [`parse_state`]) |
//! | `certificates.rs` | `certificates` |
//! | `applications.rs`, `rules.rs` | `applications` and `applicationsDir`; an application's rules |
//! | `yaml.rs` | reading a file's text and YAML, and saying the parser's errors for users |
//! | `errors.rs` | [`ConfigError`], and the located errors of a file being validated |
//! | `checks.rs` | checks more than one section makes (DNS names, durations, Secrets) |
//!
//! # One type or two
//!
//! Where the program uses a value just as the file writes it, and no error points inside it, the
//! file is read straight into the type the program uses: [`IngressType`], [`TsigAlgorithm`],
//! [`PathType`], the key algorithm and a rule's [`Authorization`].
//!
//! Everywhere else a section has two types: the file's (`Raw*`, private to its module, with
//! `serde_saphyr::Spanned` values) and the validated one, which the rest of `vz` reads as plain
//! values. They stay apart because validation does more than check:
//!
//! - it applies defaults, some from other sections: the state file is named after
//!   `environmentName`, the gateway's Service type follows `ingress.type`, Kiali follows Istio, a
//!   webhook's Secrets are named after its Service;
//! - it makes other types of the text: IP addresses, one enum of DNS modes out of four optional
//!   fields, a map of images out of a field an image, the contents of the PEM files `pluginCA`
//!   names, a `vz_state::Location`;
//! - it normalizes: zones lose their final dot, hosts are lower-cased and deduplicated, a DNS
//!   server gets its port.
//!
//! The line and column of each value, which the errors need, stay in the file's types; with
//! `Spanned` fields in the validated types every provider would read `.value` through them. Each
//! section's module says which of its types are which.
//!
//! The file's types are also what [`json_schema`] describes: their names are the schema's `$defs`
//! and their doc comments its descriptions. So a file type without a description has plain `//`
//! comments, and [`Authorization`] keeps the serde name and the (empty) descriptions of the
//! `RawAuthorization` it replaced: the schema, and the parser's messages, are as they were.

use std::path::Path;

use vz_state::Location;

mod applications;
mod certificates;
mod checks;
mod components;
mod dns;
mod errors;
mod external_dns;
mod images;
mod istio;
pub mod oam;
mod platform;
mod rules;
mod state;
mod yaml;

pub use applications::{Application, Cookie};
pub use certificates::{CaSource, Certificates, WebhookCert};
pub use components::{Components, Gateway, PluginCa};
pub use dns::{Dns, Rfc2136, TsigAlgorithm, TsigSecret};
pub use errors::ConfigError;
pub use external_dns::{CredentialsSecret, EnvValue, ExternalDns};
pub use images::{DEFAULT_REGISTRY, EXTERNAL_DNS_GATEWAY_API, IMAGE_PULL_POLICY, Image, Images};
pub use istio::{ISTIO_1_19, ISTIO_1_30, Istio, IstioRelease, RELEASES as ISTIO_RELEASES, Upgrade};
pub use platform::{Adopt, IngressController, IngressType, Platform};
pub use rules::{Authorization, Destination, PathMatch, PathType, Rule};
pub use yaml::MAX_FILE_BYTES;

use errors::Source;
use yaml::{from_yaml, read_text};

/// Which file a JSON Schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaOf {
    /// The platform file (`vz -f FILE`), applications included.
    Platform,
    /// A file of `applicationsDir`: one application.
    Application,
}

/// The JSON Schema (draft 2020-12) of a configuration file, made from the very types the files are
/// read with, so that an editor's YAML language server checks and completes what `vz` accepts.
pub fn json_schema(of: SchemaOf) -> serde_json::Value {
    let (mut schema, title) = match of {
        SchemaOf::Platform => (schemars::schema_for!(platform::RawConfig), "vz platform"),
        SchemaOf::Application => (
            schemars::schema_for!(applications::RawApplication),
            "vz application",
        ),
    };
    schema.insert("title".into(), serde_json::Value::String(title.into()));
    schema.to_value()
}

/// Read and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Platform, ConfigError> {
    parse(path, &read_text(path)?)
}

/// Parse and validate configuration `text` that was read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Platform, ConfigError> {
    let raw: platform::RawConfig = if text.trim().is_empty() {
        platform::RawConfig::default()
    } else {
        from_yaml(path, text)?
    };
    platform::validate(&Source::new(path), &raw)
}

/// A state location written as the configuration's `state:` section would be (`text`, YAML), for
/// the configuration at `config` of platform `environment` (the workspace is the default one).
pub fn parse_state(config: &Path, environment: &str, text: &str) -> Result<Location, ConfigError> {
    let raw: state::RawState = from_yaml(config, text)?;
    state::validate(&Source::new(config), &raw, environment)
}

/// A platform from configuration text that must be valid: for the providers' unit tests.
#[cfg(test)]
pub(crate) fn for_test(text: &str) -> Platform {
    #[allow(clippy::expect_used)]
    parse(Path::new("t.yaml"), text).expect("a valid test configuration")
}

/// A platform from `text` that installs Istio as Verrazzano v1.7.2 does (Istio 1.19.3, one
/// unrevisioned istiod): for the tests that check `vz` renders Verrazzano's objects.
#[cfg(test)]
pub(crate) fn for_test_verrazzano(text: &str) -> Platform {
    let mut p = for_test(text);
    p.istio.release = &ISTIO_1_19;
    p.istio.upgrade = Upgrade::InPlace;
    p.images.istio = &ISTIO_1_19;
    p
}

/// The sections' tests read their configurations as if from `/cfg/vz.yaml`.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use super::{ConfigError, Platform, parse};

    /// `text`, which must be valid.
    pub(super) fn parse_ok(text: &str) -> Platform {
        parse(Path::new("/cfg/vz.yaml"), text).expect("valid config")
    }

    /// The error of `text`, which must be invalid.
    pub(super) fn parse_err(text: &str) -> ConfigError {
        parse(Path::new("/cfg/vz.yaml"), text).expect_err("invalid config")
    }
}
