//! The platform configuration file: parsing, validation and defaults.
//!
//! The file is YAML. It is read in two stages, the way a compiler reads source: first into raw
//! structures that remember where each value came from, then validated into a [`Platform`] that the
//! rest of `vz` uses without checking again. Every error names the file, the line and column, and the
//! field.
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

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

mod applications;
pub use applications::{
    Application, Authorization, Cookie, Destination, PathMatch, PathType, Rule,
};
use vz_state::Location;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// The field, as a dotted path (e.g. `ingress.externalIPs[0]`), when known.
    pub field: Option<String>,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How the ingress controller's Service is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum IngressType {
    /// A cloud load balancer provides the address.
    LoadBalancer,
    /// A NodePort Service; the address comes from `externalIPs` (127.0.0.1 when none are given).
    NodePort,
}

/// Where the platform's DNS names come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dns {
    /// `<env>.<ingress IP>.<domain>` through a wildcard DNS service (`nip.io` or `sslip.io`).
    Wildcard {
        /// `nip.io` or `sslip.io`.
        domain: String,
    },
    /// `<env>.<suffix>`, records managed by the user.
    External {
        /// The DNS suffix.
        suffix: String,
    },
    /// `<env>.<zone>`, records managed by `vz` itself on a DNS server that takes RFC 2136 dynamic
    /// updates signed with TSIG (BIND, Knot, PowerDNS, Windows DNS).
    Rfc2136(Rfc2136),
    /// `<env>.<zone>`, records managed by ExternalDNS, which `vz` installs, through a DNS provider
    /// `vz` does not speak itself (OCI, Route 53, Cloudflare, ...).
    ExternalDns(ExternalDns),
}

/// ExternalDNS as `vz` installs it (`dns.externalDNS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalDns {
    /// ExternalDNS's `--provider` (`oci`, `aws`, `cloudflare`, ...).
    pub provider: String,
    /// The DNS zone (`--domain-filter`); the platform's domain is `<env>.<zone>`.
    pub zone: String,
    /// The provider's id of the zone (`--zone-id-filter`), when it has one (an OCID, a hosted zone id).
    pub zone_id: Option<String>,
    /// The Secret with the provider's credentials, copied into `verrazzano-system` and mounted at
    /// `/etc/kubernetes/`.
    pub credentials: Option<CredentialsSecret>,
    /// Environment variables of the ExternalDNS container, in the order given.
    pub env: Vec<(String, EnvValue)>,
    /// More arguments for ExternalDNS (provider options such as `--oci-zone-scope=GLOBAL`).
    pub args: Vec<String>,
    /// The TXT registry's owner id (`--txt-owner-id`); `vz-<environmentName>` by default.
    pub owner_id: String,
    /// How often ExternalDNS syncs besides on changes (`--interval`, a Go duration).
    pub interval: String,
}

/// The Secret holding a DNS provider's credentials (`dns.externalDNS.credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsSecret {
    /// Its name (the copy in `verrazzano-system` has the same name).
    pub name: String,
    /// Its namespace (not `verrazzano-system`, which `vz` owns).
    pub namespace: String,
}

/// The value of an environment variable of ExternalDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// This text.
    Text(String),
    /// This key of the credentials Secret.
    CredentialsKey(String),
}

/// A DNS server `vz` writes records to (`dns.rfc2136`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136 {
    /// `host:port` of the primary server (port 53 unless given).
    pub server: String,
    /// The zone records are written in.
    pub zone: String,
    /// The TSIG key's name.
    pub key_name: String,
    /// The TSIG algorithm.
    pub algorithm: TsigAlgorithm,
    /// Where the TSIG secret (base64) is read from when `vz` runs: never stored, never printed.
    pub secret: TsigSecret,
    /// TTL of the records, in seconds.
    pub ttl: u32,
}

/// A TSIG algorithm (RFC 8945), as BIND names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (the default).
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// `hmac-sha384`.
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    /// `hmac-sha512`.
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// Where the TSIG secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsigSecret {
    /// This environment variable.
    Env(String),
    /// This file (relative paths are relative to the configuration file).
    File(PathBuf),
}

/// Which system components the platform has.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Components {
    /// Istio service mesh (istiod, ingress and egress gateways).
    pub istio: bool,
    /// Label system namespaces with `istio-injection=enabled` (only when Istio is on).
    pub istio_injection: bool,
    /// `vz` installs Istio (CRDs, istiod, gateways); when false, it configures an Istio that is
    /// already there.
    pub istio_install: bool,
    /// NGINX Ingress Controller.
    pub ingress_nginx: bool,
    /// cert-manager.
    pub cert_manager: bool,
    /// Keycloak (and its MySQL operator).
    pub keycloak: bool,
    /// The Verrazzano console.
    pub console: bool,
    /// Prometheus (namespace `verrazzano-monitoring`).
    pub prometheus: bool,
    /// Grafana.
    pub grafana: bool,
    /// Kiali.
    pub kiali: bool,
    /// Argo CD.
    pub argocd: bool,
    /// ExternalDNS: on exactly when `dns.externalDNS` is set.
    pub external_dns: bool,
}

impl Components {
    /// Whether system namespaces are labelled for sidecar injection.
    pub fn injection(&self) -> bool {
        self.istio && self.istio_injection
    }

    /// Whether `vz` installs Istio itself (CRDs, istiod, gateways).
    pub fn installs_istio(&self) -> bool {
        self.istio && self.istio_install
    }
}

/// The registry, with its path, that Verrazzano v1.7.2 pulls its images from.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/verrazzano";

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

    /// Repository (under the registry) and tag of Verrazzano v1.7.2's image.
    pub fn default_name(self) -> (&'static str, &'static str) {
        match self {
            Image::NginxController => (
                "nginx-ingress-controller",
                "v1.7.1-20240723181019-33c273be0",
            ),
            Image::NginxDefaultBackend => (
                "nginx-ingress-default-backend",
                "v1.7.1-20240723181019-33c273be0",
            ),
            Image::Pilot => ("pilot", "1.19.3-20240104211928-419dfb47"),
            Image::ProxyV2 => ("proxyv2", "1.19.3-20240104211928-419dfb47"),
            Image::ExternalDns => ("external-dns", "v0.12.2-20231219112424-52012475"),
        }
    }
}

/// Which images the platform runs: Verrazzano v1.7.2's, from their registry or a mirror, unless
/// replaced one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Registry and path of the default images: [`DEFAULT_REGISTRY`] unless `images.registry` is
    /// set. No trailing `/`.
    pub registry: String,
    /// Images replaced whole (`images.<field>`), as full references with a tag or digest.
    pub overrides: std::collections::BTreeMap<Image, String>,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            registry: DEFAULT_REGISTRY.to_string(),
            overrides: Default::default(),
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
        let (repository, tag) = image.default_name();
        format!("{}/{repository}:{tag}", self.registry)
    }
}

/// Istio's plug-in CA (Secret `istio-system/cacerts`), read from the PEM files the configuration
/// names. Its `Debug` output leaves the private key out.
#[derive(Clone, PartialEq, Eq)]
pub struct PluginCa {
    /// `ca-cert.pem`: the certificate istiod signs with.
    pub ca_cert: String,
    /// `ca-key.pem`: its private key.
    pub ca_key: String,
    /// `root-cert.pem`: the root the mesh trusts.
    pub root_cert: String,
    /// `cert-chain.pem`: from `ca-cert.pem` up to the root.
    pub cert_chain: String,
}

impl fmt::Debug for PluginCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginCa")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"(sensitive value)")
            .field("root_cert", &self.root_cert)
            .field("cert_chain", &self.cert_chain)
            .finish()
    }
}

/// Istio's ingress gateway (`components.istio.ingress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Its Service's type: the platform's `ingress.type` unless set.
    pub service_type: IngressType,
    /// Its Service's external IPs (its own: the NGINX Service's are not shared).
    pub external_ips: Vec<IpAddr>,
    /// Gateway pods.
    pub replicas: i32,
}

/// Where the platform CA comes from (`certificates.ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// `vz` issues a self-signed CA (the default).
    SelfSigned,
    /// The user's CA, in this Secret (`tls.crt`, `tls.key`, optionally `ca.crt`): `vz` reads its
    /// key in the cluster to sign, and never copies it out.
    Secret(crate::certificates::SecretRef),
}

/// A webhook Service the API server calls over TLS (`certificates.webhooks[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCert {
    /// The Service's name.
    pub service: String,
    /// Its namespace (also the Secrets').
    pub namespace: String,
    /// The Secrets are `<prefix>-ca` and `<prefix>-tls`.
    pub secret_prefix: String,
    /// The objects whose `caBundle` gets the CA: `(kind, name)` of Validating- and
    /// MutatingWebhookConfigurations and CustomResourceDefinitions (conversion webhooks).
    pub configurations: Vec<(String, String)>,
}

/// The certificates `vz` issues (`certificates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificates {
    /// The platform CA.
    pub ca: CaSource,
    /// Key algorithm of every certificate `vz` issues.
    pub key: crate::pki::KeyAlgorithm,
    /// Validity of leaf certificates, in days.
    pub validity_days: i64,
    /// Validity of CAs, in days.
    pub ca_validity_days: i64,
    /// Issue again this many days before expiry.
    pub renew_before_days: i64,
    /// Webhook serving certificates.
    pub webhooks: Vec<WebhookCert>,
}

impl Default for Certificates {
    fn default() -> Self {
        Certificates {
            ca: CaSource::SelfSigned,
            key: crate::pki::KeyAlgorithm::default(),
            validity_days: 90,
            ca_validity_days: 3650,
            renew_before_days: 30,
            webhooks: vec![],
        }
    }
}

/// An object the configuration says to take over although `vz` did not create it (`adopt:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopt {
    /// Its address, `<step>/<Kind>/<namespace>/<name>`.
    pub address: String,
    /// Where the entry is in the configuration file (1-based line and column).
    pub at: (u64, u64),
}

/// The validated platform configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// The file it was read from.
    pub source: PathBuf,
    /// First label of the platform's domain; also the value of the platform label on every object.
    pub environment_name: String,
    /// DNS mode.
    pub dns: Dns,
    /// Ingress controller Service type.
    pub ingress_type: IngressType,
    /// External IPs of the ingress controller Service.
    pub external_ips: Vec<IpAddr>,
    /// System components.
    pub components: Components,
    /// Where the state is kept (a local file: absolute, or relative to the working directory).
    pub state: Location,
    /// The container images to run.
    pub images: Images,
    /// Istio's plug-in CA, when the configuration supplies one.
    pub plugin_ca: Option<PluginCa>,
    /// Istio's ingress gateway.
    pub gateway: Gateway,
    /// Objects to take over although `vz` did not create them.
    pub adopt: Vec<Adopt>,
    /// The certificates `vz` issues.
    pub certificates: Certificates,
    /// The applications on the platform: those of the platform file, then those of
    /// `applicationsDir`.
    pub applications: Vec<Application>,
}

impl Platform {
    /// Whether the configuration says to take over the object at `address`.
    pub fn adopts(&self, address: &str) -> bool {
        self.adopt.iter().any(|a| a.address == address)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file structure.

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    /// First label of the DNS domain, and the platform's label value (default `default`).
    #[schemars(with = "Option<String>")]
    environment_name: Option<Spanned<String>>,
    /// Where DNS names come from: exactly one of `wildcard`, `external`, `rfc2136` or `externalDNS`.
    #[serde(default)]
    #[schemars(with = "Option<RawDns>")]
    dns: Option<Spanned<RawDns>>,
    /// The NGINX ingress controller's Service.
    #[serde(default)]
    ingress: RawIngress,
    /// Which system components the platform has.
    #[serde(default)]
    components: RawComponents,
    /// Where the state is kept.
    #[serde(default)]
    state: RawState,
    /// The container images (Verrazzano v1.7.2's by default).
    #[serde(default)]
    images: RawImages,
    /// Addresses of existing objects vz may take over.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    adopt: Vec<Spanned<String>>,
    /// The certificates vz issues.
    #[serde(default)]
    certificates: RawCertificates,
    /// Applications, in this file.
    #[serde(default)]
    #[schemars(with = "Vec<applications::RawApplication>")]
    applications: Vec<Spanned<applications::RawApplication>>,
    /// A directory of application files (one application per `*.yaml`), relative to this file.
    #[schemars(with = "Option<String>")]
    applications_dir: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCertificates {
    #[schemars(with = "Option<RawCa>")]
    ca: Option<Spanned<RawCa>>,
    #[schemars(with = "Option<crate::pki::KeyAlgorithm>")]
    key_algorithm: Option<Spanned<crate::pki::KeyAlgorithm>>,
    #[schemars(with = "Option<i64>")]
    validity_days: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    ca_validity_days: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    renew_before_days: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawWebhook>")]
    webhooks: Vec<Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCa {
    #[schemars(with = "String")]
    secret_name: Spanned<String>,
    #[schemars(with = "Option<String>")]
    namespace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawWebhook {
    #[schemars(with = "String")]
    service: Spanned<String>,
    #[schemars(with = "String")]
    namespace: Spanned<String>,
    #[schemars(with = "Option<String>")]
    secret_prefix: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    configurations: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDns {
    wildcard: Option<RawWildcard>,
    external: Option<RawExternal>,
    #[schemars(with = "Option<RawRfc2136>")]
    rfc2136: Option<Spanned<RawRfc2136>>,
    #[serde(rename = "externalDNS")]
    #[schemars(with = "Option<RawExternalDns>")]
    external_dns: Option<Spanned<RawExternalDns>>,
    /// The old name of `externalDNS`, refused with a pointer to the new one.
    #[schemars(skip)]
    provider: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRfc2136 {
    #[schemars(with = "String")]
    server: Spanned<String>,
    #[schemars(with = "String")]
    zone: Spanned<String>,
    #[schemars(with = "String")]
    tsig_key_name: Spanned<String>,
    tsig_algorithm: Option<TsigAlgorithm>,
    #[schemars(with = "Option<String>")]
    tsig_secret_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    tsig_secret_file: Option<Spanned<String>>,
    #[schemars(with = "Option<u32>")]
    ttl: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawWildcard {
    #[schemars(with = "Option<String>")]
    domain: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExternal {
    #[schemars(with = "String")]
    suffix: Spanned<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExternalDns {
    #[schemars(with = "String")]
    provider: Spanned<String>,
    #[schemars(with = "String")]
    zone: Spanned<String>,
    #[schemars(with = "Option<String>")]
    zone_id: Option<Spanned<String>>,
    #[schemars(with = "Option<RawCredentials>")]
    credentials: Option<Spanned<RawCredentials>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawEnv>")]
    env: Vec<Spanned<RawEnv>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    args: Vec<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    txt_owner_id: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCredentials {
    #[schemars(with = "String")]
    secret_name: Spanned<String>,
    #[schemars(with = "Option<String>")]
    namespace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEnv {
    #[schemars(with = "String")]
    name: Spanned<String>,
    value: Option<String>,
    #[schemars(with = "Option<String>")]
    credentials_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIngress {
    #[serde(rename = "type")]
    kind: Option<IngressType>,
    #[serde(rename = "externalIPs", default)]
    #[schemars(with = "Vec<String>")]
    external_ips: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawComponent {
    enabled: Option<bool>,
    injection_enabled: Option<bool>,
    install: Option<bool>,
    #[serde(rename = "pluginCA")]
    #[schemars(with = "Option<RawPluginCa>")]
    plugin_ca: Option<Spanned<RawPluginCa>>,
    #[schemars(with = "Option<RawGateway>")]
    ingress: Option<Spanned<RawGateway>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGateway {
    #[serde(rename = "type")]
    kind: Option<IngressType>,
    #[serde(rename = "externalIPs", default)]
    #[schemars(with = "Vec<String>")]
    external_ips: Vec<Spanned<String>>,
    #[schemars(with = "Option<i32>")]
    replicas: Option<Spanned<i32>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPluginCa {
    #[schemars(with = "String")]
    ca_cert: Spanned<String>,
    #[schemars(with = "String")]
    ca_key: Spanned<String>,
    #[schemars(with = "String")]
    root_cert: Spanned<String>,
    #[schemars(with = "String")]
    cert_chain: Spanned<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawComponents {
    #[schemars(with = "Option<RawComponent>")]
    istio: Option<Spanned<RawComponent>>,
    #[serde(rename = "ingressNGINX")]
    #[schemars(with = "Option<RawComponent>")]
    ingress_nginx: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    cert_manager: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    keycloak: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    console: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    prometheus: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    grafana: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    kiali: Option<Spanned<RawComponent>>,
    #[serde(rename = "argoCD")]
    #[schemars(with = "Option<RawComponent>")]
    argocd: Option<Spanned<RawComponent>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawState {
    /// `local` (the default: a file), `kubernetes` (Secrets and a Lease in a namespace) or `s3`
    /// (objects of an S3-compatible bucket).
    #[schemars(with = "Option<String>")]
    backend: Option<Spanned<String>>,
    /// local: the state file (default `<environmentName>.vzstate.json`, relative to this file).
    #[schemars(with = "Option<String>")]
    path: Option<Spanned<String>>,
    /// kubernetes: the namespace of the state's Secrets and Lease (default `vz-system`).
    #[schemars(with = "Option<String>")]
    namespace: Option<Spanned<String>>,
    /// kubernetes, s3: how long a lock holds without being renewed, e.g. `60s` (default).
    #[schemars(with = "Option<String>")]
    lease_duration: Option<Spanned<String>>,
    /// s3: the bucket.
    #[schemars(with = "Option<String>")]
    bucket: Option<Spanned<String>>,
    /// s3: the state's object key (default `<environmentName>.vzstate.json`).
    #[schemars(with = "Option<String>")]
    key: Option<Spanned<String>>,
    /// s3: the service's URL, for a store that is not AWS (default: `AWS_ENDPOINT_URL`, else AWS).
    #[schemars(with = "Option<String>")]
    endpoint: Option<Spanned<String>>,
    /// s3: the bucket's region (default: `AWS_REGION`, else `us-east-1`).
    #[schemars(with = "Option<String>")]
    region: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawImages {
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

// ---------------------------------------------------------------------------------------------

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
        SchemaOf::Platform => (schemars::schema_for!(RawConfig), "vz platform"),
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

/// The largest configuration file read: a platform of 5,000 applications written inline takes
/// about 1 MB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The text of the configuration file at `path`: refused when it is bigger than
/// [`MAX_FILE_BYTES`] or not UTF-8 (with where the first bad byte is).
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    let error = |line: Option<u64>, column: Option<u64>, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        column,
        field: None,
        message,
    };
    let cannot = |e: std::io::Error| error(None, None, format!("cannot read the file: {e}"));
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_FILE_BYTES {
        return Err(error(
            None,
            None,
            format!(
                "the file is {} MB, more than a configuration can be ({} MB): is it the right file?",
                size / (1024 * 1024),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count() as u64
            + 1;
        error(
            Some(line),
            Some(column),
            format!(
                "the file is not UTF-8 text (byte 0x{:02x}): save it as UTF-8",
                bytes[at]
            ),
        )
    })
}

/// Parse and validate configuration `text` that was read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Platform, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        from_yaml(path, text)?
    };
    Validator { file: path }.platform(raw)
}

/// YAML `text` read from `path` as a `T`, with a located error.
fn from_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location();
        ConfigError {
            file: path.to_path_buf(),
            line: loc.map(|l| l.line()),
            column: loc.map(|l| l.column()),
            field: None,
            message: first_line(&e.to_string()),
        }
    })
}

/// A state location written as the configuration's `state:` section would be (`text`, YAML), for
/// the configuration at `config` of platform `environment` (the workspace is the default one).
pub fn parse_state(config: &Path, environment: &str, text: &str) -> Result<Location, ConfigError> {
    let raw: RawState = from_yaml(config, text)?;
    Validator { file: config }.state(raw, environment)
}

/// A platform from configuration text that must be valid: for the providers' unit tests.
#[cfg(test)]
pub(crate) fn for_test(text: &str) -> Platform {
    #[allow(clippy::expect_used)]
    parse(Path::new("t.yaml"), text).expect("a valid test configuration")
}

/// serde-saphyr's messages may carry a source snippet after the first line; the location is already
/// reported separately.
fn first_line(msg: &str) -> String {
    let mut line = msg.lines().next().unwrap_or(msg).trim();
    // Drop the "error: line N column M: " prefix and any " at line N column M" suffix: the location
    // is already reported in our own prefix.
    line = line.strip_prefix("error: ").unwrap_or(line);
    if line.starts_with("line ")
        && let Some((_, rest)) = line.split_once(": ")
    {
        line = rest;
    }
    let line = match line.find(" at line ") {
        Some(idx) => &line[..idx],
        None => line,
    };
    if let Some(breach) = line.strip_prefix("budget breached: ") {
        return over_budget(breach);
    }
    // The parser's own advice ("set DuplicateKeyPolicy in Options") is for its callers, not users.
    match line
        .strip_prefix("duplicate mapping key: ")
        .and_then(|rest| rest.split(", set DuplicateKeyPolicy").next())
    {
        Some(key) => format!("`{key}` is set twice in the same mapping: keep one"),
        None => line.to_string(),
    }
}

/// The parser's limits on a document (which keep an alias bomb from expanding), said for users:
/// `breach` is the parser's `Nodes { nodes: 250001 }`.
fn over_budget(breach: &str) -> String {
    let what = breach.split_whitespace().next().unwrap_or(breach);
    let count: String = breach.chars().filter(char::is_ascii_digit).collect();
    match what {
        "Nodes" | "Events" => format!(
            "the document is too big once its aliases (`*name`) are expanded: more than {} nodes; write applications as files under applicationsDir, and use fewer aliases",
            count
                .parse::<u64>()
                .map_or(count.clone(), |n| (n - 1).to_string())
        ),
        "Aliases" => format!("the document uses more than {count} aliases (`*name`)"),
        "Anchors" => format!("the document defines more than {count} anchors (`&name`)"),
        "Depth" => format!("the document is nested more than {count} levels deep"),
        _ => format!("the document is beyond what a configuration can be ({breach})"),
    }
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err<T>(&self, at: &Spanned<T>, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(at.referenced.line()),
            column: Some(at.referenced.column()),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn platform(&self, raw: RawConfig) -> Result<Platform, ConfigError> {
        let environment_name = match raw.environment_name {
            Some(name) => {
                check_dns_label(&name.value).map_err(|m| self.err(&name, "environmentName", m))?;
                name.value
            }
            None => "default".to_string(),
        };

        let dns = match raw.dns {
            None => Dns::Wildcard {
                domain: "nip.io".into(),
            },
            Some(spanned) => self.dns(spanned, &environment_name)?,
        };

        let external_ips = self.external_ips(&raw.ingress.external_ips, "ingress", &dns)?;

        let c = &raw.components;
        let on = |comp: &Option<Spanned<RawComponent>>, default: bool| {
            comp.as_ref()
                .and_then(|s| s.value.enabled)
                .unwrap_or(default)
        };
        for (name, comp) in [
            ("ingressNGINX", &c.ingress_nginx),
            ("certManager", &c.cert_manager),
            ("keycloak", &c.keycloak),
            ("console", &c.console),
            ("prometheus", &c.prometheus),
            ("grafana", &c.grafana),
            ("kiali", &c.kiali),
            ("argoCD", &c.argocd),
        ] {
            let Some(s) = comp else { continue };
            let istio_only = [
                ("injectionEnabled", s.value.injection_enabled.is_some()),
                ("install", s.value.install.is_some()),
                ("pluginCA", s.value.plugin_ca.is_some()),
                ("ingress", s.value.ingress.is_some()),
            ];
            if let Some((field, _)) = istio_only.iter().find(|(_, set)| *set) {
                return Err(self.err(
                    s,
                    &format!("components.{name}.{field}"),
                    format!("only `components.istio` has `{field}`"),
                ));
            }
        }
        let istio = on(&c.istio, true);
        let istio_install = c
            .istio
            .as_ref()
            .and_then(|s| s.value.install)
            .unwrap_or(true);
        let plugin_ca = match c.istio.as_ref().and_then(|s| s.value.plugin_ca.as_ref()) {
            Some(raw) if !istio || !istio_install => {
                return Err(self.err(
                    raw,
                    "components.istio.pluginCA",
                    "a plug-in CA is for an Istio `vz` installs: it needs `enabled: true` and `install: true`",
                ));
            }
            Some(raw) => Some(self.plugin_ca(&raw.value)?),
            None => None,
        };
        let components = Components {
            istio,
            istio_install,
            istio_injection: c
                .istio
                .as_ref()
                .and_then(|s| s.value.injection_enabled)
                .unwrap_or(true),
            ingress_nginx: on(&c.ingress_nginx, true),
            cert_manager: on(&c.cert_manager, true),
            keycloak: on(&c.keycloak, true),
            console: on(&c.console, true),
            prometheus: on(&c.prometheus, true),
            grafana: on(&c.grafana, true),
            kiali: on(&c.kiali, istio),
            argocd: on(&c.argocd, false),
            external_dns: matches!(dns, Dns::ExternalDns(_)),
        };
        if components.kiali
            && !components.istio
            && let Some(k) = &c.kiali
        {
            return Err(self.err(
                k,
                "components.kiali.enabled",
                "Kiali needs Istio: enable `components.istio` or disable Kiali",
            ));
        }

        let ingress_type = raw.ingress.kind.unwrap_or(IngressType::LoadBalancer);
        let gateway = self.gateway(
            c.istio.as_ref().and_then(|s| s.value.ingress.as_ref()),
            ingress_type,
            &dns,
        )?;
        let state = self.state(raw.state, &environment_name)?;
        let images = self.images(&raw.images)?;
        let mut adopt: Vec<Adopt> = Vec::new();
        for (i, a) in raw.adopt.iter().enumerate() {
            let address = a.value.trim();
            if address.split('/').count() < 3 || address.split('/').any(str::is_empty) {
                return Err(self.err(
                    a,
                    &format!("adopt[{i}]"),
                    format!(
                        "`{address}` is not an object address (`<step>/<Kind>/<namespace>/<name>`, or `<step>/<Kind>/<name>` when cluster-scoped; `vz plan` shows them)"
                    ),
                ));
            }
            adopt.push(Adopt {
                address: address.to_string(),
                at: (a.referenced.line(), a.referenced.column()),
            });
        }

        let certificates = self.certificates(&raw.certificates)?;
        let applications =
            applications::collect(self, &raw.applications, raw.applications_dir.as_ref())?;
        if !components.istio
            && let Some(first) = applications.first()
        {
            return Err(ConfigError {
                file: first.source.clone(),
                line: None,
                column: None,
                field: Some("applications".into()),
                message: format!(
                    "application `{}` needs Istio (its Gateway, routes and policies are Istio's): enable `components.istio`",
                    first.name
                ),
            });
        }

        Ok(Platform {
            source: self.file.to_path_buf(),
            environment_name,
            dns,
            ingress_type,
            external_ips,
            components,
            state,
            images,
            plugin_ca,
            gateway,
            adopt,
            certificates,
            applications,
        })
    }

    /// The `certificates` section.
    fn certificates(&self, raw: &RawCertificates) -> Result<Certificates, ConfigError> {
        let mut c = Certificates::default();
        if let Some(ca) = &raw.ca {
            let name = &ca.value.secret_name;
            check_dns_name(&name.value)
                .map_err(|m| self.err(name, "certificates.ca.secretName", m))?;
            let namespace = match &ca.value.namespace {
                Some(ns) => {
                    check_dns_label(&ns.value)
                        .map_err(|m| self.err(ns, "certificates.ca.namespace", m))?;
                    ns.value.clone()
                }
                None => crate::names::CERT_MANAGER.to_string(),
            };
            c.ca = CaSource::Secret(crate::certificates::SecretRef::new(&namespace, &name.value));
        }
        if let Some(k) = &raw.key_algorithm {
            c.key = k.value;
        }
        let days = |v: &Option<Spanned<i64>>, field: &str, default: i64| match v {
            Some(d) if d.value < 1 || d.value > 36_500 => Err(self.err(
                d,
                &format!("certificates.{field}"),
                format!("{} is not a number of days from 1 to 36500", d.value),
            )),
            Some(d) => Ok(d.value),
            None => Ok(default),
        };
        c.validity_days = days(&raw.validity_days, "validityDays", c.validity_days)?;
        c.ca_validity_days = days(&raw.ca_validity_days, "caValidityDays", c.ca_validity_days)?;
        c.renew_before_days = days(
            &raw.renew_before_days,
            "renewBeforeDays",
            c.renew_before_days,
        )?;
        let shortest = c.validity_days.min(c.ca_validity_days);
        if c.renew_before_days >= shortest {
            let at = raw
                .renew_before_days
                .as_ref()
                .or(raw.validity_days.as_ref())
                .or(raw.ca_validity_days.as_ref());
            let message = format!(
                "renewBeforeDays ({}) must be less than the shortest validity ({shortest} days), or every certificate would be due for renewal as soon as it is issued",
                c.renew_before_days
            );
            return Err(match at {
                Some(at) => self.err(at, "certificates.renewBeforeDays", message),
                None => ConfigError {
                    file: self.file.to_path_buf(),
                    line: None,
                    column: None,
                    field: Some("certificates.renewBeforeDays".into()),
                    message,
                },
            });
        }
        for (i, w) in raw.webhooks.iter().enumerate() {
            let at = |f: &str| format!("certificates.webhooks[{i}].{f}");
            let v = &w.value;
            check_dns_label(&v.service.value)
                .map_err(|m| self.err(&v.service, &at("service"), m))?;
            check_dns_label(&v.namespace.value)
                .map_err(|m| self.err(&v.namespace, &at("namespace"), m))?;
            let secret_prefix = match &v.secret_prefix {
                Some(p) => {
                    check_dns_name(&p.value).map_err(|m| self.err(p, &at("secretPrefix"), m))?;
                    p.value.clone()
                }
                None => v.service.value.clone(),
            };
            let mut configurations = Vec::new();
            for (j, conf) in v.configurations.iter().enumerate() {
                let field = at(&format!("configurations[{j}]"));
                const KINDS: [&str; 3] = [
                    "ValidatingWebhookConfiguration",
                    "MutatingWebhookConfiguration",
                    "CustomResourceDefinition",
                ];
                let parsed = conf
                    .value
                    .split_once('/')
                    .filter(|(k, n)| KINDS.contains(k) && check_dns_name(n).is_ok());
                let Some((kind, name)) = parsed else {
                    return Err(self.err(
                        conf,
                        &field,
                        format!(
                            "`{}` is not `<Kind>/<name>` with Kind one of {}",
                            conf.value,
                            KINDS.join(", ")
                        ),
                    ));
                };
                configurations.push((kind.to_string(), name.to_string()));
            }
            let clash = c
                .webhooks
                .iter()
                .any(|o| o.namespace == v.namespace.value && o.secret_prefix == secret_prefix);
            if clash {
                return Err(self.err(
                    w,
                    &at("secretPrefix"),
                    format!(
                        "another webhook already uses the Secrets {}/{secret_prefix}-ca and -tls: set a distinct `secretPrefix`",
                        v.namespace.value
                    ),
                ));
            }
            c.webhooks.push(WebhookCert {
                service: v.service.value.clone(),
                namespace: v.namespace.value.clone(),
                secret_prefix,
                configurations,
            });
        }
        Ok(c)
    }

    /// External IPs of a Service (`section` is where they are: `ingress`, `components.istio.ingress`).
    fn external_ips(
        &self,
        raw: &[Spanned<String>],
        section: &str,
        dns: &Dns,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let mut out = Vec::new();
        for (i, ip) in raw.iter().enumerate() {
            let field = format!("{section}.externalIPs[{i}]");
            let parsed: IpAddr = ip.value.trim().parse().map_err(|_| {
                self.err(ip, &field, format!("`{}` is not an IP address", ip.value))
            })?;
            let special = match parsed {
                IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
                IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local()
                }
            };
            if special {
                return Err(self.err(
                    ip,
                    &field,
                    format!(
                        "`{parsed}` is a loopback, link-local or unspecified address, which Kubernetes refuses as an external IP; for a local cluster use `type: NodePort` without externalIPs (the ingress address is then 127.0.0.1)"
                    ),
                ));
            }
            if parsed.is_ipv6()
                && i == 0
                && matches!(dns, Dns::Wildcard { domain } if domain == "nip.io")
            {
                return Err(self.err(
                    ip,
                    &field,
                    "nip.io does not resolve IPv6 addresses: use `dns.wildcard.domain: sslip.io`, or put an IPv4 address first",
                ));
            }
            out.push(parsed);
        }
        Ok(out)
    }

    /// The Istio ingress gateway's Service and replicas.
    fn gateway(
        &self,
        raw: Option<&Spanned<RawGateway>>,
        platform_type: IngressType,
        dns: &Dns,
    ) -> Result<Gateway, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Gateway {
                service_type: platform_type,
                external_ips: vec![],
                replicas: 1,
            });
        };
        let external_ips =
            self.external_ips(&raw.value.external_ips, "components.istio.ingress", dns)?;
        let replicas = match &raw.value.replicas {
            Some(r) if r.value < 1 || r.value > 100 => {
                return Err(self.err(
                    r,
                    "components.istio.ingress.replicas",
                    format!("{} is not a number of replicas from 1 to 100", r.value),
                ));
            }
            Some(r) => r.value,
            None => 1,
        };
        Ok(Gateway {
            service_type: raw.value.kind.unwrap_or(platform_type),
            external_ips,
            replicas,
        })
    }

    /// Read the plug-in CA's PEM files (relative to the configuration file).
    fn plugin_ca(&self, raw: &RawPluginCa) -> Result<PluginCa, ConfigError> {
        let base = self.file.parent().unwrap_or_else(|| Path::new(""));
        let read = |field: &str, at: &Spanned<String>, block: &str| {
            let field = format!("components.istio.pluginCA.{field}");
            let path = base.join(&at.value);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.err(at, &field, format!("cannot read {}: {e}", path.display()))
            })?;
            let holds = text
                .lines()
                .any(|l| l.starts_with("-----BEGIN ") && l.ends_with(&format!("{block}-----")));
            if !holds {
                let what = if block == "CERTIFICATE" {
                    "PEM certificate"
                } else {
                    "PEM private key"
                };
                return Err(self.err(at, &field, format!("{} holds no {what}", path.display())));
            }
            Ok(text)
        };
        Ok(PluginCa {
            ca_cert: read("caCert", &raw.ca_cert, "CERTIFICATE")?,
            ca_key: read("caKey", &raw.ca_key, "PRIVATE KEY")?,
            root_cert: read("rootCert", &raw.root_cert, "CERTIFICATE")?,
            cert_chain: read("certChain", &raw.cert_chain, "CERTIFICATE")?,
        })
    }

    fn images(&self, raw: &RawImages) -> Result<Images, ConfigError> {
        let mut images = Images::default();
        if let Some(r) = &raw.registry {
            images.registry =
                check_registry(&r.value).map_err(|m| self.err(r, "images.registry", m))?;
        }
        for (image, value) in raw.overrides() {
            if let Some(v) = value {
                let field = format!("images.{}", image.field());
                check_image_reference(&v.value).map_err(|m| self.err(v, &field, m))?;
                images.overrides.insert(image, v.value.clone());
            }
        }
        Ok(images)
    }

    fn dns(&self, spanned: Spanned<RawDns>, env: &str) -> Result<Dns, ConfigError> {
        let raw = &spanned.value;
        if let Some(old) = &raw.provider {
            return Err(self.err(
                old,
                "dns.provider",
                "`dns.provider` is now `dns.externalDNS` (with `provider:` and `zone:`, e.g. `externalDNS: {provider: oci, zone: example.com}`)",
            ));
        }
        let set = [
            raw.wildcard.is_some(),
            raw.external.is_some(),
            raw.rfc2136.is_some(),
            raw.external_dns.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(self.err(
                &spanned,
                "dns",
                "set exactly one of `wildcard`, `external`, `rfc2136` or `externalDNS`",
            ));
        }
        if let Some(r) = &raw.rfc2136 {
            return self.rfc2136(r).map(Dns::Rfc2136);
        }
        if let Some(e) = &raw.external_dns {
            return self.external_dns(e, env).map(Dns::ExternalDns);
        }
        if let Some(w) = &raw.wildcard {
            let domain = match &w.domain {
                None => "nip.io".to_string(),
                Some(d) if d.value == "nip.io" || d.value == "sslip.io" => d.value.clone(),
                Some(d) => {
                    return Err(self.err(
                        d,
                        "dns.wildcard.domain",
                        format!("`{}` is not supported; use `nip.io` or `sslip.io`", d.value),
                    ));
                }
            };
            return Ok(Dns::Wildcard { domain });
        }
        match &raw.external {
            Some(e) => {
                check_dns_name(&e.suffix.value)
                    .map_err(|m| self.err(&e.suffix, "dns.external.suffix", m))?;
                Ok(Dns::External {
                    suffix: e.suffix.value.clone(),
                })
            }
            None => unreachable!("exactly one DNS mode is set"),
        }
    }

    /// `dns.externalDNS`: the provider, zone, credentials and the arguments `vz` leaves to the user.
    fn external_dns(
        &self,
        raw: &Spanned<RawExternalDns>,
        env: &str,
    ) -> Result<ExternalDns, ConfigError> {
        let r = &raw.value;
        let field = |f: &str| format!("dns.externalDNS.{f}");
        let provider = r.provider.value.trim();
        if provider.is_empty()
            || !provider
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(self.err(
                &r.provider,
                &field("provider"),
                format!(
                    "`{provider}` is not an ExternalDNS provider name (lower-case, e.g. `oci`, `aws`, `cloudflare`)"
                ),
            ));
        }
        let zone = r.zone.value.trim_end_matches('.');
        check_dns_name(zone).map_err(|m| self.err(&r.zone, &field("zone"), m))?;
        let zone_id = match &r.zone_id {
            Some(z) if z.value.trim().is_empty() || z.value.contains(char::is_whitespace) => {
                return Err(self.err(z, &field("zoneId"), "must be one id without spaces"));
            }
            Some(z) => Some(z.value.clone()),
            None => None,
        };
        let credentials = match &r.credentials {
            None => None,
            Some(c) => {
                let name = &c.value.secret_name;
                check_dns_name(&name.value)
                    .map_err(|m| self.err(name, &field("credentials.secretName"), m))?;
                let namespace = match &c.value.namespace {
                    Some(ns) => {
                        check_dns_label(&ns.value)
                            .map_err(|m| self.err(ns, &field("credentials.namespace"), m))?;
                        if ns.value == crate::names::VERRAZZANO_SYSTEM {
                            return Err(self.err(
                                ns,
                                &field("credentials.namespace"),
                                "vz copies the credentials into `verrazzano-system` (which it owns and deletes on destroy): keep the original in another namespace",
                            ));
                        }
                        ns.value.clone()
                    }
                    None => "default".to_string(),
                };
                Some(CredentialsSecret {
                    name: name.value.clone(),
                    namespace,
                })
            }
        };
        let mut vars = Vec::new();
        for (i, e) in r.env.iter().enumerate() {
            let at = format!("env[{i}]");
            let name = &e.value.name.value;
            let name_ok = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                return Err(self.err(
                    &e.value.name,
                    &field(&format!("{at}.name")),
                    format!("`{name}` is not an environment variable name"),
                ));
            }
            if vars.iter().any(|(n, _)| n == name) {
                return Err(self.err(
                    &e.value.name,
                    &field(&format!("{at}.name")),
                    format!("`{name}` is set twice"),
                ));
            }
            let value = match (&e.value.value, &e.value.credentials_key) {
                (Some(v), None) => EnvValue::Text(v.clone()),
                (None, Some(k)) if credentials.is_none() => {
                    return Err(self.err(
                        k,
                        &field(&format!("{at}.credentialsKey")),
                        "there is no credentials Secret to read it from: set `dns.externalDNS.credentials`",
                    ));
                }
                (None, Some(k)) => EnvValue::CredentialsKey(k.value.clone()),
                _ => {
                    return Err(self.err(
                        e,
                        &field(&at),
                        "set exactly one of `value` (the text) or `credentialsKey` (a key of the credentials Secret)",
                    ));
                }
            };
            vars.push((name.clone(), value));
        }
        const SET_BY_VZ: [&str; 8] = [
            "--provider",
            "--registry",
            "--policy",
            "--txt-owner-id",
            "--txt-prefix",
            "--domain-filter",
            "--source",
            "--once",
        ];
        let mut args = Vec::new();
        for (i, a) in r.args.iter().enumerate() {
            let flag = a.value.split('=').next().unwrap_or_default();
            if !a.value.starts_with("--") || flag.len() < 3 {
                return Err(self.err(
                    a,
                    &field(&format!("args[{i}]")),
                    format!("`{}` is not an option (`--name=value`)", a.value),
                ));
            }
            if SET_BY_VZ.contains(&flag) || ["--interval", "--zone-id-filter"].contains(&flag) {
                return Err(self.err(
                    a,
                    &field(&format!("args[{i}]")),
                    format!(
                        "vz sets `{flag}` itself (from `provider`, `zone`, `zoneId`, `interval`, `txtOwnerId` and the platform's components)"
                    ),
                ));
            }
            args.push(a.value.clone());
        }
        let owner_id = match &r.txt_owner_id {
            Some(o) => {
                check_dns_label(&o.value).map_err(|m| self.err(o, &field("txtOwnerId"), m))?;
                o.value.clone()
            }
            None => format!("vz-{env}"),
        };
        let interval = match &r.interval {
            Some(i) if !is_go_duration(&i.value) => {
                return Err(self.err(
                    i,
                    &field("interval"),
                    format!(
                        "`{}` is not a duration such as `24h`, `30m` or `1h30m`",
                        i.value
                    ),
                ));
            }
            Some(i) => i.value.clone(),
            None => "24h".to_string(),
        };
        Ok(ExternalDns {
            provider: provider.to_string(),
            zone: zone.to_string(),
            zone_id,
            credentials,
            env: vars,
            args,
            owner_id,
            interval,
        })
    }

    /// `dns.rfc2136`: the server, zone, TSIG key and TTL (the secret is only located here).
    fn rfc2136(&self, raw: &Spanned<RawRfc2136>) -> Result<Rfc2136, ConfigError> {
        let r = &raw.value;
        let field = |f: &str| format!("dns.rfc2136.{f}");
        let server = r.server.value.trim();
        let (host, port) = match server.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
            _ => (server, None),
        };
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        let host_bare = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = host_bare.parse::<IpAddr>().is_ok() || check_dns_name(host_bare).is_ok();
        if !port_ok || !host_ok {
            return Err(self.err(
                &r.server,
                &field("server"),
                format!("`{server}` is not `host:port` (e.g. `192.0.2.53:53`, `ns1.example.com`)"),
            ));
        }
        let server = match port {
            Some(_) => server.to_string(),
            None if host_bare.contains(':') => format!("[{host_bare}]:53"),
            None => format!("{host_bare}:53"),
        };
        let zone = r.zone.value.trim_end_matches('.');
        check_dns_name(zone).map_err(|m| self.err(&r.zone, &field("zone"), m))?;
        check_dns_name(&r.tsig_key_name.value)
            .map_err(|m| self.err(&r.tsig_key_name, &field("tsigKeyName"), m))?;
        let secret = match (&r.tsig_secret_env, &r.tsig_secret_file) {
            (Some(env), None) => {
                let ok = !env.value.is_empty()
                    && env
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(self.err(
                        env,
                        &field("tsigSecretEnv"),
                        format!("`{}` is not an environment variable name", env.value),
                    ));
                }
                TsigSecret::Env(env.value.clone())
            }
            (None, Some(file)) => {
                let base = self.file.parent().unwrap_or_else(|| Path::new(""));
                TsigSecret::File(base.join(&file.value))
            }
            _ => {
                return Err(self.err(
                    raw,
                    "dns.rfc2136",
                    "set exactly one of `tsigSecretEnv` (an environment variable holding the TSIG secret) or `tsigSecretFile` (a file holding it); the secret itself never goes in the configuration",
                ));
            }
        };
        let ttl = match &r.ttl {
            Some(t) if t.value == 0 || t.value > 86_400 => {
                return Err(self.err(
                    t,
                    &field("ttl"),
                    format!("{} is not a TTL from 1 to 86400 seconds", t.value),
                ));
            }
            Some(t) => t.value,
            None => 60,
        };
        Ok(Rfc2136 {
            server,
            zone: zone.to_string(),
            key_name: r.tsig_key_name.value.clone(),
            algorithm: r.tsig_algorithm.unwrap_or(TsigAlgorithm::HmacSha256),
            secret,
            ttl,
        })
    }

    fn state(&self, raw: RawState, env: &str) -> Result<Location, ConfigError> {
        let backend = raw.backend.as_ref().map_or("local", |b| b.value.as_str());
        // Each setting belongs to some backends; naming it for another is a mistake.
        let settings: [Setting<'_>; 7] = [
            (&raw.path, "path", &["local"]),
            (&raw.namespace, "namespace", &["kubernetes"]),
            (&raw.lease_duration, "leaseDuration", &["kubernetes", "s3"]),
            (&raw.bucket, "bucket", &["s3"]),
            (&raw.key, "key", &["s3"]),
            (&raw.endpoint, "endpoint", &["s3"]),
            (&raw.region, "region", &["s3"]),
        ];
        if ["local", "kubernetes", "s3"].contains(&backend) {
            for (field, name, backends) in settings {
                if let Some(f) = field
                    && !backends.contains(&backend)
                {
                    let of = backends
                        .iter()
                        .map(|b| format!("`{b}`"))
                        .collect::<Vec<_>>()
                        .join(" and ");
                    let noun = if backends.len() > 1 {
                        "backends"
                    } else {
                        "backend"
                    };
                    return Err(self.err(
                        f,
                        &format!("state.{name}"),
                        format!("`{name}` is a setting of the {of} {noun}"),
                    ));
                }
            }
        }
        let lease_seconds = || match &raw.lease_duration {
            Some(d) => match go_duration_seconds(&d.value) {
                Some(secs) if secs >= 15 => Ok(secs),
                _ => Err(self.err(
                    d,
                    "state.leaseDuration",
                    format!(
                        "`{}` is not a duration of at least 15s (e.g. `60s`, `2m`)",
                        d.value
                    ),
                )),
            },
            None => Ok(60),
        };
        match backend {
            "local" => {}
            "kubernetes" => {
                let namespace = match &raw.namespace {
                    Some(v) => check_dns_label(&v.value)
                        .map(|()| v.value.clone())
                        .map_err(|m| self.err(v, "state.namespace", m))?,
                    None => "vz-system".to_string(),
                };
                return Ok(Location::Kubernetes {
                    namespace,
                    workspace: vz_state::DEFAULT_WORKSPACE.to_string(),
                    lease_seconds: lease_seconds()?,
                });
            }
            "s3" => {
                if let Some(b) = &raw.backend {
                    return self.s3_state(&raw, b, env, lease_seconds()?);
                }
            }
            other => {
                if let Some(b) = &raw.backend {
                    return Err(self.err(
                        b,
                        "state.backend",
                        format!(
                            "unknown backend `{other}`; supported: `local`, `kubernetes`, `s3`"
                        ),
                    ));
                }
            }
        }
        let rel = match &raw.path {
            Some(p) if p.value.trim().is_empty() => {
                return Err(self.err(p, "state.path", "must not be empty"));
            }
            Some(p) => PathBuf::from(&p.value),
            None => PathBuf::from(format!("{env}.vzstate.json")),
        };
        if rel.is_absolute() {
            return Ok(Location::Local { path: rel });
        }
        let base = self.file.parent().unwrap_or_else(|| Path::new(""));
        Ok(Location::Local {
            path: base.join(rel),
        })
    }

    /// `state: {backend: s3, ...}`: a bucket (required), a key, an endpoint and a region.
    fn s3_state(
        &self,
        raw: &RawState,
        backend: &Spanned<String>,
        env: &str,
        lease_seconds: u64,
    ) -> Result<Location, ConfigError> {
        let Some(bucket) = &raw.bucket else {
            return Err(self.err(backend, "state.bucket", "the s3 backend needs a `bucket`"));
        };
        check_bucket(&bucket.value).map_err(|m| self.err(bucket, "state.bucket", m))?;
        let key = match &raw.key {
            Some(k) => {
                check_object_key(&k.value).map_err(|m| self.err(k, "state.key", m))?;
                k.value.clone()
            }
            None => format!("{env}.vzstate.json"),
        };
        let endpoint = match &raw.endpoint {
            Some(e) if e.value.starts_with("http://") || e.value.starts_with("https://") => {
                Some(e.value.trim_end_matches('/').to_string())
            }
            Some(e) => {
                return Err(self.err(
                    e,
                    "state.endpoint",
                    format!(
                        "`{}` is not a URL: write the scheme, e.g. `https://s3.example.com`",
                        e.value
                    ),
                ));
            }
            None => None,
        };
        let region = match &raw.region {
            Some(r) if r.value.trim().is_empty() => {
                return Err(self.err(r, "state.region", "must not be empty"));
            }
            Some(r) => Some(r.value.clone()),
            None => None,
        };
        Ok(Location::S3 {
            bucket: bucket.value.clone(),
            key,
            endpoint,
            region,
            workspace: vz_state::DEFAULT_WORKSPACE.to_string(),
            lease_seconds,
        })
    }
}

/// A `state:` setting, its name, and the backends it belongs to.
type Setting<'a> = (
    &'a Option<Spanned<String>>,
    &'static str,
    &'static [&'static str],
);

/// An S3 bucket name: 3–63 characters of `a-z`, `0-9`, `.` and `-`, starting and ending with a
/// letter or digit.
fn check_bucket(s: &str) -> Result<(), String> {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && !s.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a bucket name: 3–63 characters of a-z, 0-9, `.` and `-`, starting and ending with a letter or digit"
        ))
    }
}

/// An object key vz can use for a state: `dir/.../file`, without empty, `.` or `..` segments.
fn check_object_key(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    match s
        .split('/')
        .find(|seg| seg.is_empty() || *seg == "." || *seg == "..")
    {
        Some(_) => Err(format!(
            "`{s}` is not an object key vz uses: no leading or trailing `/`, no `//`, `.` or `..` segments"
        )),
        None => Ok(()),
    }
}

/// A DNS label: 1–63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid DNS label (1-63 characters of a-z, 0-9 and '-', not starting or ending with '-')"
        ))
    }
}

/// A DNS name: dot-separated DNS labels, at most 253 characters.
/// The milliseconds of a Go duration of whole units (`24h`, `1h30m`, `90s`, `500ms`); `None` when
/// `s` is not one.
fn go_duration_millis(s: &str) -> Option<u64> {
    let mut rest = s;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: u64 = match unit {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(scale)?)?;
        rest = next;
    }
    Some(total)
}

/// The whole seconds of a Go duration (`90s`, `2m`, `1h30m`).
fn go_duration_seconds(s: &str) -> Option<u64> {
    go_duration_millis(s).map(|ms| ms / 1000)
}

/// Whether `s` is a positive Go duration of whole units (`24h`, `1h30m`, `90s`).
fn is_go_duration(s: &str) -> bool {
    go_duration_millis(s).is_some_and(|ms| ms > 0)
}

fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 || s.split('.').any(|l| check_dns_label(l).is_err()) {
        return Err(format!(
            "`{s}` is not a valid DNS name (lowercase labels separated by dots)"
        ));
    }
    Ok(())
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

    fn parse_ok(text: &str) -> Platform {
        parse(Path::new("/cfg/vz.yaml"), text).expect("valid config")
    }

    fn parse_err(text: &str) -> ConfigError {
        parse(Path::new("/cfg/vz.yaml"), text).expect_err("invalid config")
    }

    /// `text` written to a file and loaded from it (as `vz` reads a configuration).
    fn load_text(bytes: &[u8]) -> Result<Platform, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vz.yaml");
        std::fs::write(&path, bytes).expect("write");
        load(&path)
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
        let e = load_text(b"environmentName: dev\ningress: {type: N\xffodePort}\n")
            .expect_err("latin-1");
        assert_eq!((e.line, e.column), (Some(2), Some(18)), "{e}");
        assert_eq!(
            e.message,
            "the file is not UTF-8 text (byte 0xff): save it as UTF-8"
        );
    }

    #[test]
    fn a_file_bigger_than_a_configuration_can_be_is_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vz.yaml");
        let f = std::fs::File::create(&path).expect("create");
        f.set_len(MAX_FILE_BYTES + 1).expect("sparse file");
        let e = load(&path).expect_err("too big");
        assert!(e.message.starts_with("the file is 16 MB, more than"), "{e}");
    }

    #[test]
    fn an_alias_bomb_where_the_schema_expands_it_is_refused_not_expanded() {
        // 2,000 applications, each an alias of one with 2,000 rules, each an alias: 4 million
        // rules from 20 KB of text.
        let rules = vec!["*r"; 2000].join(", ");
        let apps = vec!["  - *a"; 2000].join("\n");
        let text = format!(
            "applications:\n  - &a\n    name: x\n    namespace: y\n    ports: [80]\n    rules: [&r {{destination: {{host: x, port: 80}}}}, {rules}]\n{apps}\n"
        );
        let started = std::time::Instant::now();
        let e = load_text(text.as_bytes()).expect_err("a bomb");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(e.line.is_some(), "located: {e}");
        assert!(
            e.message.starts_with(
                "the document is too big once its aliases (`*name`) are expanded: more than 250000 nodes"
            ),
            "{e}"
        );
    }

    #[test]
    fn nesting_deeper_than_the_schema_is_refused_where_it_starts() {
        let depth = 5_000;
        let text = format!("components: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        let e = load_text(text.as_bytes()).expect_err("too deep");
        assert_eq!((e.line, e.column), (Some(1), Some(13)), "{e}");
        assert_eq!(e.message, "expected mapping start");
        assert_eq!(
            over_budget("Depth { depth: 513 }"),
            "the document is nested more than 513 levels deep"
        );
    }

    #[test]
    fn a_key_set_twice_is_refused_where_it_is_repeated() {
        let e =
            parse_err("environmentName: dev\ningress: {type: NodePort}\nenvironmentName: prod\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(
            e.message,
            "`environmentName` is set twice in the same mapping: keep one"
        );
    }

    #[test]
    fn an_empty_file_gets_the_documented_defaults() {
        let p = parse_ok("");
        assert_eq!(p.environment_name, "default");
        assert_eq!(
            p.dns,
            Dns::Wildcard {
                domain: "nip.io".into()
            }
        );
        assert_eq!(p.ingress_type, IngressType::LoadBalancer);
        assert!(p.components.istio && p.components.injection() && p.components.keycloak);
        assert!(!p.components.external_dns && !p.components.argocd);
        assert_eq!(
            p.state,
            Location::Local {
                path: PathBuf::from("/cfg/default.vzstate.json")
            }
        );
    }

    #[test]
    fn a_relative_state_path_is_relative_to_the_config_file() {
        let p = parse_ok("state:\n  backend: local\n  path: states/x.json\n");
        assert_eq!(
            p.state,
            Location::Local {
                path: PathBuf::from("/cfg/states/x.json")
            }
        );
    }

    #[test]
    fn a_bad_ip_names_file_line_and_field() {
        let e = parse_err(
            "ingress:\n  type: NodePort\n  externalIPs:\n    - 10.0.0.1\n    - not-an-ip\n",
        );
        assert_eq!(e.line, Some(5));
        assert_eq!(e.field.as_deref(), Some("ingress.externalIPs[1]"));
        let msg = e.to_string();
        assert!(msg.starts_with("/cfg/vz.yaml:5:"), "{msg}");
        assert!(msg.contains("not-an-ip"), "{msg}");
    }

    #[test]
    fn an_unknown_field_is_rejected_with_its_line() {
        let e = parse_err("environmentName: dev\ningres:\n  type: NodePort\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.starts_with("unknown field `ingres`"), "{e}");
    }

    #[test]
    fn a_bad_enum_value_is_rejected_with_its_line() {
        let e = parse_err("ingress:\n  type: ClusterIP\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("ClusterIP"), "{e}");
    }

    #[test]
    fn environment_name_must_be_a_dns_label() {
        let e = parse_err("environmentName: Prod_1\n");
        assert_eq!(e.field.as_deref(), Some("environmentName"));
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn two_dns_modes_are_refused() {
        let e =
            parse_err("dns:\n  wildcard: {domain: nip.io}\n  external: {suffix: example.com}\n");
        assert_eq!(e.field.as_deref(), Some("dns"));
    }

    #[test]
    fn only_nip_and_sslip_wildcards_are_accepted() {
        let e = parse_err("dns:\n  wildcard:\n    domain: xip.io\n");
        assert_eq!(e.field.as_deref(), Some("dns.wildcard.domain"));
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn external_dns_takes_a_provider_zone_credentials_env_and_args() {
        let p = parse_ok(
            "environmentName: dev\ndns:\n  externalDNS:\n    provider: oci\n    zone: example.com.\n    zoneId: ocid1.dns-zone.oc1..aaaa\n    credentials: {secretName: oci-dns, namespace: vz-install}\n    env:\n      - {name: OCI_REGION, value: us-ashburn-1}\n      - {name: TOKEN, credentialsKey: token}\n    args: ['--oci-zone-scope=GLOBAL']\n",
        );
        assert!(p.components.external_dns);
        let Dns::ExternalDns(e) = p.dns else {
            panic!("not ExternalDNS: {:?}", p.dns)
        };
        assert_eq!(
            e,
            ExternalDns {
                provider: "oci".into(),
                zone: "example.com".into(),
                zone_id: Some("ocid1.dns-zone.oc1..aaaa".into()),
                credentials: Some(CredentialsSecret {
                    name: "oci-dns".into(),
                    namespace: "vz-install".into()
                }),
                env: vec![
                    ("OCI_REGION".into(), EnvValue::Text("us-ashburn-1".into())),
                    ("TOKEN".into(), EnvValue::CredentialsKey("token".into())),
                ],
                args: vec!["--oci-zone-scope=GLOBAL".into()],
                owner_id: "vz-dev".into(),
                interval: "24h".into(),
            }
        );
    }

    #[test]
    fn external_dns_mistakes_are_located() {
        let base = "dns:\n  externalDNS:\n    provider: aws\n    zone: example.com\n";
        for (extra, field, says) in [
            (
                "    args: [--txt-owner-id=x]\n",
                "dns.externalDNS.args[0]",
                "vz sets `--txt-owner-id`",
            ),
            (
                "    args: [verbose]\n",
                "dns.externalDNS.args[0]",
                "not an option",
            ),
            (
                "    env: [{name: X, credentialsKey: k}]\n",
                "dns.externalDNS.env[0].credentialsKey",
                "no credentials Secret",
            ),
            (
                "    env: [{name: X}]\n",
                "dns.externalDNS.env[0]",
                "exactly one of",
            ),
            (
                "    credentials: {secretName: s, namespace: verrazzano-system}\n",
                "dns.externalDNS.credentials.namespace",
                "another namespace",
            ),
            (
                "    interval: 1d\n",
                "dns.externalDNS.interval",
                "not a duration",
            ),
            (
                "    txtOwnerId: Not_A_Label\n",
                "dns.externalDNS.txtOwnerId",
                "",
            ),
        ] {
            let e = parse_err(&format!("{base}{extra}"));
            assert_eq!(e.field.as_deref(), Some(field), "{extra}");
            assert!(e.message.contains(says), "{extra}: {}", e.message);
            assert_eq!(e.line, Some(5), "{extra}");
        }
        let e = parse_err("dns:\n  externalDNS: {provider: OCI, zone: example.com}\n");
        assert_eq!(e.field.as_deref(), Some("dns.externalDNS.provider"));
    }

    #[test]
    fn the_old_dns_provider_field_points_at_external_dns() {
        let e = parse_err("dns:\n  provider: {name: oci, zone: example.com}\n");
        assert_eq!(e.field.as_deref(), Some("dns.provider"));
        assert!(e.message.contains("dns.externalDNS"), "{}", e.message);
    }

    #[test]
    fn go_durations_are_whole_units() {
        for ok in ["24h", "1h30m", "90s", "500ms"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "0s", "1d", "h", "1.5h", "-1h", "24"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
        assert_eq!(go_duration_seconds("1h30m"), Some(5400));
        assert_eq!(go_duration_seconds("1500ms"), Some(1));
    }

    #[test]
    fn istio_can_be_left_to_an_existing_install_and_only_istio_has_install() {
        assert!(parse_ok("").components.installs_istio());
        let p = parse_ok("components:\n  istio: {install: false}\n");
        assert!(p.components.istio && !p.components.installs_istio());
        let e = parse_err("components:\n  keycloak: {install: false}\n");
        assert_eq!(e.field.as_deref(), Some("components.keycloak.install"));
    }

    #[test]
    fn rfc2136_names_the_server_zone_and_key_but_never_holds_the_secret() {
        let p = parse_ok(
            "environmentName: dev\ndns:\n  rfc2136: {server: 127.0.0.1:5399, zone: example.test, tsigKeyName: vz-key, tsigSecretEnv: VZ_TSIG_SECRET}\n",
        );
        assert_eq!(
            p.dns,
            Dns::Rfc2136(Rfc2136 {
                server: "127.0.0.1:5399".into(),
                zone: "example.test".into(),
                key_name: "vz-key".into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: TsigSecret::Env("VZ_TSIG_SECRET".into()),
                ttl: 60,
            })
        );
        let p = parse_ok(
            "dns:\n  rfc2136: {server: ns1.example.com, zone: example.com., tsigKeyName: k, tsigAlgorithm: hmac-sha512, tsigSecretFile: tsig.key, ttl: 300}\n",
        );
        let Dns::Rfc2136(r) = p.dns else {
            panic!("rfc2136")
        };
        assert_eq!(r.server, "ns1.example.com:53");
        assert_eq!(r.zone, "example.com");
        assert_eq!(r.secret, TsigSecret::File(PathBuf::from("/cfg/tsig.key")));
        assert_eq!((r.algorithm, r.ttl), (TsigAlgorithm::HmacSha512, 300));
    }

    #[test]
    fn rfc2136_settings_that_cannot_work_are_refused() {
        let base = "dns:\n  rfc2136: {server: 127.0.0.1:53, zone: example.test, tsigKeyName: k";
        let e = parse_err(&format!("{base}}}\n"));
        assert!(e.message.contains("tsigSecretEnv"), "{}", e.message);
        let e = parse_err(&format!("{base}, tsigSecretEnv: A, tsigSecretFile: f}}\n"));
        assert!(e.message.contains("exactly one"), "{}", e.message);
        let e = parse_err(&format!("{base}, tsigSecretEnv: 'not a var'}}\n"));
        assert_eq!(e.field.as_deref(), Some("dns.rfc2136.tsigSecretEnv"));
        let e = parse_err(&format!("{base}, tsigSecretEnv: A, ttl: 0}}\n"));
        assert_eq!(e.field.as_deref(), Some("dns.rfc2136.ttl"));
        let e = parse_err(
            "dns:\n  rfc2136: {server: '127.0.0.1:99999', zone: example.test, tsigKeyName: k, tsigSecretEnv: A}\n",
        );
        assert_eq!(e.field.as_deref(), Some("dns.rfc2136.server"));
        let e = parse_err(
            "dns:\n  rfc2136: {server: 127.0.0.1, zone: example.test, tsigKeyName: k, tsigSecretEnv: A, tsigAlgorithm: hmac-md5}\n",
        );
        assert!(e.message.contains("hmac-md5"), "{}", e.message);
    }

    #[test]
    fn certificates_default_to_a_self_signed_ca_and_ecdsa_leaves_for_90_days() {
        let c = parse_ok("").certificates;
        assert_eq!(c, Certificates::default());
        assert_eq!(c.ca, CaSource::SelfSigned);
        assert_eq!(c.key, crate::pki::KeyAlgorithm::EcdsaP256);
        assert_eq!(
            (c.validity_days, c.ca_validity_days, c.renew_before_days),
            (90, 3650, 30)
        );
    }

    #[test]
    fn certificates_take_a_ca_of_your_own_a_key_type_and_webhooks() {
        let c = parse_ok(
            "certificates:\n  ca: {secretName: my-ca}\n  keyAlgorithm: RSA-4096\n  webhooks:\n    - service: op-webhook\n      namespace: ops\n      configurations: [MutatingWebhookConfiguration/op-defaulter]\n",
        )
        .certificates;
        assert_eq!(
            c.ca,
            CaSource::Secret(crate::certificates::SecretRef::new("cert-manager", "my-ca"))
        );
        assert_eq!(c.key, crate::pki::KeyAlgorithm::Rsa4096);
        assert_eq!(
            c.webhooks,
            [WebhookCert {
                service: "op-webhook".into(),
                namespace: "ops".into(),
                secret_prefix: "op-webhook".into(),
                configurations: vec![(
                    "MutatingWebhookConfiguration".into(),
                    "op-defaulter".into()
                )],
            }]
        );
    }

    #[test]
    fn certificate_settings_that_cannot_work_are_refused_where_they_are() {
        let e = parse_err("certificates:\n  validityDays: 20\n");
        assert_eq!(e.field.as_deref(), Some("certificates.renewBeforeDays"));
        assert_eq!(e.line, Some(2));
        assert!(
            e.message
                .contains("must be less than the shortest validity (20 days)"),
            "{}",
            e.message
        );
        let e = parse_err("certificates:\n  renewBeforeDays: 0\n");
        assert!(e.message.contains("from 1 to 36500"), "{}", e.message);
        let e = parse_err("certificates:\n  keyAlgorithm: DSA\n");
        assert!(e.message.contains("DSA"), "{}", e.message);
        let e = parse_err(
            "certificates:\n  webhooks:\n    - {service: a, namespace: b, configurations: [Deployment/x]}\n",
        );
        assert_eq!(
            e.field.as_deref(),
            Some("certificates.webhooks[0].configurations[0]")
        );
        let e = parse_err(
            "certificates:\n  webhooks:\n    - {service: a, namespace: b}\n    - {service: c, namespace: b, secretPrefix: a}\n",
        );
        assert_eq!(
            e.field.as_deref(),
            Some("certificates.webhooks[1].secretPrefix")
        );
        let e = parse_err("certificates:\n  ca: {secretName: Not_A_Name}\n");
        assert_eq!(e.field.as_deref(), Some("certificates.ca.secretName"));
    }

    #[test]
    fn the_plugin_ca_is_read_from_pem_files_next_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";
        for (f, t) in [
            ("ca.pem", cert),
            ("ca.key", key),
            ("root.pem", cert),
            ("chain.pem", cert),
        ] {
            std::fs::write(dir.path().join(f), t).expect("write");
        }
        let yaml = "components:\n  istio:\n    pluginCA: {caCert: ca.pem, caKey: ca.key, rootCert: root.pem, certChain: chain.pem}\n";
        let cfg = dir.path().join("vz.yaml");
        let p = parse(&cfg, yaml).expect("valid");
        let ca = p.plugin_ca.expect("plug-in CA");
        assert_eq!(ca.ca_key, key);
        assert!(
            !format!("{ca:?}").contains("secret"),
            "the key stays out of Debug"
        );

        let e = parse(&cfg, &yaml.replace("caKey: ca.key", "caKey: ca.pem")).expect_err("no key");
        assert_eq!(e.field.as_deref(), Some("components.istio.pluginCA.caKey"));
        assert!(
            e.message.ends_with("ca.pem holds no PEM private key"),
            "{}",
            e.message
        );
        let e = parse(&cfg, &yaml.replace("root.pem", "missing.pem")).expect_err("missing");
        assert!(e.message.contains("cannot read"), "{}", e.message);
        let e = parse(&cfg, &format!("{}    install: false\n", yaml)).expect_err("not installed");
        assert_eq!(e.field.as_deref(), Some("components.istio.pluginCA"));
    }

    #[test]
    fn the_gateway_has_its_own_service_settings() {
        let p = parse_ok("ingress: {type: NodePort, externalIPs: [192.0.2.1]}\n");
        assert_eq!(p.gateway.service_type, IngressType::NodePort);
        assert!(p.gateway.external_ips.is_empty());
        let e = parse_err("components:\n  istio:\n    ingress: {externalIPs: [127.0.0.1]}\n");
        assert_eq!(
            e.field.as_deref(),
            Some("components.istio.ingress.externalIPs[0]")
        );
        let e = parse_err("components:\n  istio:\n    ingress: {replicas: 0}\n");
        assert_eq!(
            e.field.as_deref(),
            Some("components.istio.ingress.replicas")
        );
    }

    #[test]
    fn adopt_takes_object_addresses() {
        let p = parse_ok("adopt: [namespaces/Namespace/istio-system]\n");
        assert!(p.adopts("namespaces/Namespace/istio-system"));
        let e = parse_err("adopt: [istio-system]\n");
        assert_eq!(e.field.as_deref(), Some("adopt[0]"));
    }

    #[test]
    fn injection_is_off_without_istio() {
        let p = parse_ok("components:\n  istio: {enabled: false}\n");
        assert!(!p.components.injection());
        assert!(!p.components.kiali, "kiali defaults to off without istio");
    }

    #[test]
    fn kiali_without_istio_is_refused() {
        let e = parse_err("components:\n  istio: {enabled: false}\n  kiali: {enabled: true}\n");
        assert_eq!(e.field.as_deref(), Some("components.kiali.enabled"));
    }

    #[test]
    fn a_loopback_external_ip_is_refused_with_the_alternative() {
        let e = parse_err("ingress:\n  type: NodePort\n  externalIPs: [127.0.0.1]\n");
        assert_eq!(e.field.as_deref(), Some("ingress.externalIPs[0]"));
        assert_eq!(e.line, Some(3));
        assert!(
            e.message.contains("`type: NodePort` without externalIPs"),
            "{e}"
        );
    }

    #[test]
    fn an_ipv6_ingress_address_needs_sslip() {
        let e = parse_err("ingress:\n  externalIPs: ['2001:db8::1']\n");
        assert_eq!(e.field.as_deref(), Some("ingress.externalIPs[0]"));
        assert!(e.message.contains("sslip.io"), "{e}");
        parse_ok("dns: {wildcard: {domain: sslip.io}}\ningress:\n  externalIPs: ['2001:db8::1']\n");
    }

    #[test]
    fn an_unknown_backend_is_refused() {
        let e = parse_err("state:\n  backend: gcs\n");
        assert_eq!(e.field.as_deref(), Some("state.backend"));
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn the_kubernetes_backend_takes_a_namespace_workspace_and_lease() {
        assert_eq!(
            parse_ok("state: {backend: kubernetes}\n").state,
            Location::Kubernetes {
                namespace: "vz-system".into(),
                workspace: "default".into(),
                lease_seconds: 60
            }
        );
        assert_eq!(
            parse_ok("state: {backend: kubernetes, namespace: team, leaseDuration: 2m}\n").state,
            Location::Kubernetes {
                namespace: "team".into(),
                workspace: "default".into(),
                lease_seconds: 120
            }
        );
        for (text, field) in [
            ("state: {backend: kubernetes, path: x.json}\n", "state.path"),
            (
                "state: {backend: kubernetes, leaseDuration: 5s}\n",
                "state.leaseDuration",
            ),
            ("state: {namespace: team}\n", "state.namespace"),
            (
                "state: {backend: kubernetes, namespace: Team}\n",
                "state.namespace",
            ),
        ] {
            assert_eq!(parse_err(text).field.as_deref(), Some(field), "{text}");
        }
    }
    #[test]
    fn the_s3_backend_takes_a_bucket_key_endpoint_region_and_lease() {
        assert_eq!(
            parse_ok("state: {backend: s3, bucket: team-state}\n").state,
            Location::S3 {
                bucket: "team-state".into(),
                key: "default.vzstate.json".into(),
                endpoint: None,
                region: None,
                workspace: "default".into(),
                lease_seconds: 60
            }
        );
        assert_eq!(
            parse_ok(
                "state: {backend: s3, bucket: b.example, key: eu/dev.json, endpoint: 'http://127.0.0.1:9000/', region: eu-west-1, leaseDuration: 30s}\n"
            )
            .state,
            Location::S3 {
                bucket: "b.example".into(),
                key: "eu/dev.json".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                workspace: "default".into(),
                lease_seconds: 30
            }
        );
        for (text, field) in [
            ("state:\n  backend: s3\n", "state.bucket"),
            ("state: {backend: s3, bucket: Team}\n", "state.bucket"),
            ("state: {backend: s3, bucket: ab}\n", "state.bucket"),
            (
                "state: {backend: s3, bucket: b-1, key: /x.json}\n",
                "state.key",
            ),
            (
                "state: {backend: s3, bucket: b-1, key: a//x.json}\n",
                "state.key",
            ),
            (
                "state: {backend: s3, bucket: b-1, key: ../x.json}\n",
                "state.key",
            ),
            (
                "state: {backend: s3, bucket: b-1, endpoint: s3.example.com}\n",
                "state.endpoint",
            ),
            (
                "state: {backend: s3, bucket: b-1, region: ''}\n",
                "state.region",
            ),
            (
                "state: {backend: s3, bucket: b-1, namespace: x}\n",
                "state.namespace",
            ),
            (
                "state: {backend: s3, bucket: b-1, path: x.json}\n",
                "state.path",
            ),
            (
                "state: {backend: kubernetes, bucket: b-1}\n",
                "state.bucket",
            ),
        ] {
            assert_eq!(parse_err(text).field.as_deref(), Some(field), "{text}");
        }
        let e = parse_err("state: {backend: local, leaseDuration: 30s}\n");
        assert!(e.message.contains("`kubernetes` and `s3` backends"), "{e}");
    }

    #[test]
    fn images_default_to_verrazzano_1_7_2() {
        let p = parse_ok("");
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
        assert_eq!(p.images.registry, "mirror.local:5000/vz");
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
                assert!(p.images.reference(other).starts_with("ghcr.io/verrazzano/"));
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
