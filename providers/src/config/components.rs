//! `components:`, which system components the platform has, and Istio's settings: whether `vz`
//! installs it, its plug-in CA and its ingress gateway.
//!
//! The file's section ([`RawComponents`]: a [`RawComponent`] a component) and the validated
//! [`Components`] (a flag a component), [`PluginCa`] and [`Gateway`] are separate types: the
//! defaults depend on one another (Kiali follows Istio) and on other sections (ExternalDNS is on
//! with `dns.externalDNS`, the gateway's Service type follows `ingress.type`), the plug-in CA is
//! the contents of the files the section names, and the file's sections keep their line and column
//! for the errors.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::checks::check_dns_label;
use super::errors::Source;
use super::istio::{Istio, RELEASES, Upgrade, release};
use super::platform::external_ips;
use super::{ConfigError, Dns, IngressController, IngressType};

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
    /// OpenSearch (its Ingress, through the auth proxy).
    pub opensearch: bool,
    /// OpenSearch Dashboards (its Ingress, through the auth proxy).
    pub opensearch_dashboards: bool,
    /// Rancher (namespace `cattle-system`).
    pub rancher: bool,
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

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawComponents {
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
    #[schemars(with = "Option<RawComponent>")]
    opensearch: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    opensearch_dashboards: Option<Spanned<RawComponent>>,
    #[schemars(with = "Option<RawComponent>")]
    rancher: Option<Spanned<RawComponent>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawComponent {
    enabled: Option<bool>,
    injection_enabled: Option<bool>,
    install: Option<bool>,
    #[serde(rename = "pluginCA")]
    #[schemars(with = "Option<RawPluginCa>")]
    plugin_ca: Option<Spanned<RawPluginCa>>,
    #[schemars(with = "Option<RawGateway>")]
    ingress: Option<Spanned<RawGateway>>,
    /// The Istio release: `1.30.3` (the default) or `1.19.3` (Verrazzano v1.7.2's).
    #[schemars(with = "Option<String>")]
    version: Option<Spanned<String>>,
    /// How a change of release is carried out: `canary` (a revision beside the old one; the
    /// default) or `inPlace`.
    upgrade: Option<Upgrade>,
    /// Restart workloads of injected namespaces whose pods lack a sidecar or run another
    /// revision's (default true).
    restart_workloads: Option<bool>,
    /// Namespaces whose workloads are never restarted.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    restart_except: Vec<Spanned<String>>,
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

/// The components, with the plug-in CA and the gateway of Istio.
pub(super) struct Validated {
    /// Which components the platform has.
    pub(super) components: Components,
    /// Istio's plug-in CA, when the file names one.
    pub(super) plugin_ca: Option<PluginCa>,
    /// Istio's ingress gateway.
    pub(super) gateway: Gateway,
    /// Istio's release and upgrades.
    pub(super) istio: Istio,
}

/// Whether `ingress.controller: gateway-api` (`chosen`) goes with these components: Istio on (its
/// ingress gateway serves the routes), NGINX not asked for.
pub(super) fn gateway_api_allowed<T>(
    src: &Source<'_>,
    raw: &RawComponents,
    chosen: &Spanned<T>,
) -> Result<(), ConfigError> {
    if let Some(nginx) = &raw.ingress_nginx
        && nginx.value.enabled == Some(true)
    {
        return Err(src.err(
            nginx,
            "components.ingressNGINX.enabled",
            "`ingress.controller: gateway-api` serves the routes without NGINX: drop `components.ingressNGINX` (or choose `controller: nginx`)",
        ));
    }
    if raw.istio.as_ref().and_then(|i| i.value.enabled) == Some(false) {
        return Err(src.err(
            chosen,
            "ingress.controller",
            "`gateway-api` routes are served by Istio's ingress gateway: enable `components.istio`",
        ));
    }
    Ok(())
}

/// The `components` section, for a platform of this ingress controller and type, and DNS.
pub(super) fn validate(
    src: &Source<'_>,
    raw: &RawComponents,
    controller: IngressController,
    ingress_type: IngressType,
    dns: &Dns,
) -> Result<Validated, ConfigError> {
    only_istio_has_istio_settings(src, raw)?;
    let on = |comp: &Option<Spanned<RawComponent>>, default: bool| {
        comp.as_ref()
            .and_then(|s| s.value.enabled)
            .unwrap_or(default)
    };
    let istio_settings = raw.istio.as_ref().map(|s| &s.value);
    let istio = on(&raw.istio, true);
    let istio_install = istio_settings.and_then(|s| s.install).unwrap_or(true);
    let plugin_ca = match istio_settings.and_then(|s| s.plugin_ca.as_ref()) {
        Some(raw) => Some(plugin_ca(src, raw, istio && istio_install)?),
        None => None,
    };
    let components = Components {
        istio,
        istio_install,
        istio_injection: istio_settings
            .and_then(|s| s.injection_enabled)
            .unwrap_or(true),
        ingress_nginx: controller == IngressController::Nginx && on(&raw.ingress_nginx, true),
        cert_manager: on(&raw.cert_manager, true),
        keycloak: on(&raw.keycloak, true),
        console: on(&raw.console, true),
        prometheus: on(&raw.prometheus, true),
        grafana: on(&raw.grafana, true),
        kiali: on(&raw.kiali, istio),
        argocd: on(&raw.argocd, false),
        opensearch: on(&raw.opensearch, true),
        opensearch_dashboards: on(&raw.opensearch_dashboards, true),
        rancher: on(&raw.rancher, true),
        external_dns: matches!(dns, Dns::ExternalDns(_)),
    };
    if components.kiali
        && !components.istio
        && let Some(k) = &raw.kiali
    {
        return Err(src.err(
            k,
            "components.kiali.enabled",
            "Kiali needs Istio: enable `components.istio` or disable Kiali",
        ));
    }
    let gateway = gateway(
        src,
        istio_settings.and_then(|s| s.ingress.as_ref()),
        ingress_type,
        dns,
    )?;
    let istio = istio_settings.map_or_else(|| Ok(Istio::default()), |s| istio_release(src, s))?;
    Ok(Validated {
        components,
        plugin_ca,
        gateway,
        istio,
    })
}

/// `components.istio.version`, `upgrade`, `restartWorkloads` and `restartExcept`.
fn istio_release(src: &Source<'_>, raw: &RawComponent) -> Result<Istio, ConfigError> {
    let mut out = Istio::default();
    if let Some(v) = &raw.version {
        out.release = release(v.value.trim()).ok_or_else(|| {
            let known: Vec<&str> = RELEASES.iter().map(|r| r.version).collect();
            src.err(
                v,
                "components.istio.version",
                format!(
                    "vz installs Istio {}; `{}` is not one of them",
                    known.join(" or "),
                    v.value
                ),
            )
        })?;
    }
    out.upgrade = raw.upgrade.unwrap_or_default();
    out.restart_workloads = raw.restart_workloads.unwrap_or(true);
    for (i, ns) in raw.restart_except.iter().enumerate() {
        let field = format!("components.istio.restartExcept[{i}]");
        out.restart_except
            .push(src.checked(ns, &field, check_dns_label)?);
    }
    Ok(out)
}

/// `injectionEnabled`, `install`, `pluginCA` and `ingress` are Istio's alone.
fn only_istio_has_istio_settings(src: &Source<'_>, raw: &RawComponents) -> Result<(), ConfigError> {
    for (name, comp) in [
        ("ingressNGINX", &raw.ingress_nginx),
        ("certManager", &raw.cert_manager),
        ("keycloak", &raw.keycloak),
        ("console", &raw.console),
        ("prometheus", &raw.prometheus),
        ("grafana", &raw.grafana),
        ("kiali", &raw.kiali),
        ("argoCD", &raw.argocd),
        ("opensearch", &raw.opensearch),
        ("opensearchDashboards", &raw.opensearch_dashboards),
        ("rancher", &raw.rancher),
    ] {
        let Some(s) = comp else { continue };
        let istio_only = [
            ("injectionEnabled", s.value.injection_enabled.is_some()),
            ("install", s.value.install.is_some()),
            ("pluginCA", s.value.plugin_ca.is_some()),
            ("ingress", s.value.ingress.is_some()),
            ("version", s.value.version.is_some()),
            ("upgrade", s.value.upgrade.is_some()),
            ("restartWorkloads", s.value.restart_workloads.is_some()),
            ("restartExcept", !s.value.restart_except.is_empty()),
        ];
        if let Some((field, _)) = istio_only.iter().find(|(_, set)| *set) {
            return Err(src.err(
                s,
                &format!("components.{name}.{field}"),
                format!("only `components.istio` has `{field}`"),
            ));
        }
    }
    Ok(())
}

/// `components.istio.ingress`: the Istio ingress gateway's Service and replicas.
fn gateway(
    src: &Source<'_>,
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
    let external_ips = external_ips(
        src,
        &raw.value.external_ips,
        "components.istio.ingress",
        dns,
    )?;
    let replicas = match &raw.value.replicas {
        Some(r) if r.value < 1 || r.value > 100 => {
            return Err(src.err(
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

/// `components.istio.pluginCA`, for an Istio `vz` installs (`installed`): its PEM files, read
/// relative to the configuration file.
fn plugin_ca(
    src: &Source<'_>,
    raw: &Spanned<RawPluginCa>,
    installed: bool,
) -> Result<PluginCa, ConfigError> {
    if !installed {
        return Err(src.err(
            raw,
            "components.istio.pluginCA",
            "a plug-in CA is for an Istio `vz` installs: it needs `enabled: true` and `install: true`",
        ));
    }
    let r = &raw.value;
    Ok(PluginCa {
        ca_cert: pem(src, "caCert", &r.ca_cert, "CERTIFICATE")?,
        ca_key: pem(src, "caKey", &r.ca_key, "PRIVATE KEY")?,
        root_cert: pem(src, "rootCert", &r.root_cert, "CERTIFICATE")?,
        cert_chain: pem(src, "certChain", &r.cert_chain, "CERTIFICATE")?,
    })
}

/// The text of the PEM file at `at` (`pluginCA.<field>`), which must hold a `block`
/// (`CERTIFICATE`, `PRIVATE KEY`).
fn pem(
    src: &Source<'_>,
    field: &str,
    at: &Spanned<String>,
    block: &str,
) -> Result<String, ConfigError> {
    let field = format!("components.istio.pluginCA.{field}");
    let path = src.dir().join(&at.value);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| src.err(at, &field, format!("cannot read {}: {e}", path.display())))?;
    let holds = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.ends_with(&format!("{block}-----")));
    if !holds {
        let what = if block == "CERTIFICATE" {
            "PEM certificate"
        } else {
            "PEM private key"
        };
        return Err(src.err(at, &field, format!("{} holds no {what}", path.display())));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use crate::config::IngressType;
    use crate::config::parse;
    use crate::config::testing::{parse_err, parse_ok};

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
    fn istio_can_be_left_to_an_existing_install_and_only_istio_has_install() {
        assert!(parse_ok("").components.installs_istio());
        let p = parse_ok("components:\n  istio: {install: false}\n");
        assert!(p.components.istio && !p.components.installs_istio());
        let e = parse_err("components:\n  keycloak: {install: false}\n");
        assert_eq!(e.field.as_deref(), Some("components.keycloak.install"));
    }
}
