//! The platform file as a whole ([`RawConfig`]) and the validated [`Platform`], with the sections
//! that are not big enough for a file of their own: `environmentName`, `ingress` and `adopt`.
//!
//! [`validate`] validates the sections one after the other, in this order, which decides the
//! mistake reported when there are several: the environment name, `dns`, `ingress`, `components`,
//! `state`, `images`, `adopt`, `certificates`, then the applications.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;
use vz_state::Location;

use super::ConfigError;
use super::applications::{self, Application, RawApplication};
use super::certificates::{self, Certificates, RawCertificates};
use super::checks::check_dns_label;
use super::components::{self, Components, Gateway, PluginCa, RawComponents};
use super::dns::{self, Dns, RawDns};
use super::errors::{Source, position};
use super::images::{self, Images, RawImages};
use super::istio::Istio;
use super::state::{self, RawState};

/// How the ingress controller's Service is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum IngressType {
    /// A cloud load balancer provides the address.
    LoadBalancer,
    /// A NodePort Service; the address comes from `externalIPs` (127.0.0.1 when none are given).
    NodePort,
}

/// What serves the system components' routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IngressController {
    /// NGINX Ingress Controller and an Ingress per component (Verrazzano's way; the default).
    #[default]
    Nginx,
    /// Gateway API (`gateway.networking.k8s.io/v1` Gateway and HTTPRoutes) served by Istio's
    /// ingress gateway: no NGINX.
    GatewayApi,
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
    /// What serves the system routes.
    pub ingress_controller: IngressController,
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
    /// Istio's release, and how a change of release is carried out.
    pub istio: Istio,
    /// Objects to take over although `vz` did not create them.
    pub adopt: Vec<Adopt>,
    /// The certificates `vz` issues.
    pub certificates: Certificates,
    /// The applications on the platform: those of the platform file, then those of
    /// `applicationsDir`.
    pub applications: Vec<Application>,
}

impl Platform {
    /// Whether the system routes are Gateway API's, served by Istio's ingress gateway.
    pub fn gateway_api(&self) -> bool {
        self.ingress_controller == IngressController::GatewayApi
    }

    /// Whether the system components' routes are served (by NGINX, or by Istio's ingress gateway
    /// with Gateway API), so that their certificates and DNS records are made.
    pub fn serves_system_routes(&self) -> bool {
        self.components.ingress_nginx || self.gateway_api()
    }

    /// Whether the configuration says to take over the object at `address`.
    pub fn adopts(&self, address: &str) -> bool {
        self.adopt.iter().any(|a| a.address == address)
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawConfig {
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
    #[schemars(with = "Vec<RawApplication>")]
    applications: Vec<Spanned<RawApplication>>,
    /// A directory of application files (one application per `*.yaml`), relative to this file.
    #[schemars(with = "Option<String>")]
    applications_dir: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIngress {
    /// What serves the system routes: `nginx` (the default) or `gateway-api` (Istio's ingress
    /// gateway, with Gateway API routes).
    #[schemars(with = "Option<IngressController>")]
    controller: Option<Spanned<IngressController>>,
    /// How NGINX's Service is exposed (`nginx` only).
    #[serde(rename = "type")]
    #[schemars(with = "Option<IngressType>")]
    kind: Option<Spanned<IngressType>>,
    #[serde(rename = "externalIPs", default)]
    #[schemars(with = "Vec<String>")]
    external_ips: Vec<Spanned<String>>,
}

/// The platform file.
pub(super) fn validate(src: &Source<'_>, raw: &RawConfig) -> Result<Platform, ConfigError> {
    let environment_name = match &raw.environment_name {
        Some(name) => src.checked(name, "environmentName", check_dns_label)?,
        None => "default".to_string(),
    };
    let dns = match &raw.dns {
        Some(spanned) => dns::validate(src, spanned, &environment_name)?,
        None => Dns::Wildcard {
            domain: "nip.io".into(),
        },
    };
    let external_ips = external_ips(src, &raw.ingress.external_ips, "ingress", &dns)?;
    let ingress_type = raw
        .ingress
        .kind
        .as_ref()
        .map_or(IngressType::LoadBalancer, |k| k.value);
    let ingress_controller = ingress_controller(src, &raw.ingress, &raw.components)?;
    let components::Validated {
        components,
        plugin_ca,
        gateway,
        istio,
    } = components::validate(src, &raw.components, ingress_controller, ingress_type, &dns)?;
    let state = state::validate(src, &raw.state, &environment_name)?;
    let images = images::validate(
        src,
        &raw.images,
        istio.release,
        ingress_controller == IngressController::GatewayApi,
    )?;
    let adopt = adopt(src, &raw.adopt)?;
    let certificates = certificates::validate(src, &raw.certificates)?;
    let applications =
        applications::collect(src, &raw.applications, raw.applications_dir.as_ref())?;
    applications_need_istio(&components, &applications)?;
    Ok(Platform {
        source: src.file.to_path_buf(),
        environment_name,
        dns,
        ingress_controller,
        ingress_type,
        external_ips,
        components,
        state,
        images,
        plugin_ca,
        gateway,
        istio,
        adopt,
        certificates,
        applications,
    })
}

/// External IPs of a Service (`section` is where they are: `ingress`, `components.istio.ingress`).
pub(super) fn external_ips(
    src: &Source<'_>,
    raw: &[Spanned<String>],
    section: &str,
    dns: &Dns,
) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out = Vec::new();
    for (i, ip) in raw.iter().enumerate() {
        let field = format!("{section}.externalIPs[{i}]");
        let parsed: IpAddr = ip
            .value
            .trim()
            .parse()
            .map_err(|_| src.err(ip, &field, format!("`{}` is not an IP address", ip.value)))?;
        let special = match parsed {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local(),
        };
        if special {
            return Err(src.err(
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
            return Err(src.err(
                ip,
                &field,
                "nip.io does not resolve IPv6 addresses: use `dns.wildcard.domain: sslip.io`, or put an IPv4 address first",
            ));
        }
        out.push(parsed);
    }
    Ok(out)
}

/// `adopt`: object addresses, `<step>/<Kind>/<namespace>/<name>` or `<step>/<Kind>/<name>`.
fn adopt(src: &Source<'_>, raw: &[Spanned<String>]) -> Result<Vec<Adopt>, ConfigError> {
    let mut adopt = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let address = a.value.trim();
        if address.split('/').count() < 3 || address.split('/').any(str::is_empty) {
            return Err(src.err(
                a,
                &format!("adopt[{i}]"),
                format!(
                    "`{address}` is not an object address (`<step>/<Kind>/<namespace>/<name>`, or `<step>/<Kind>/<name>` when cluster-scoped; `vz plan` shows them)"
                ),
            ));
        }
        adopt.push(Adopt {
            address: address.to_string(),
            at: position(a),
        });
    }
    Ok(adopt)
}

/// Applications are routed and secured by Istio: a platform without it has none.
/// The ingress controller; with `gateway-api`, nothing of NGINX may be configured, and Istio must
/// be on (its ingress gateway serves the routes).
fn ingress_controller(
    src: &Source<'_>,
    ingress: &RawIngress,
    components: &RawComponents,
) -> Result<IngressController, ConfigError> {
    let Some(chosen) = &ingress.controller else {
        return Ok(IngressController::Nginx);
    };
    if chosen.value == IngressController::Nginx {
        return Ok(IngressController::Nginx);
    }
    if let Some(kind) = &ingress.kind {
        return Err(src.err(
            kind,
            "ingress.type",
            "`ingress.type` is NGINX's Service, and `controller: gateway-api` has no NGINX: Istio's ingress gateway serves the routes (set `components.istio.ingress.type` instead)",
        ));
    }
    if let Some(ip) = ingress.external_ips.first() {
        return Err(src.err(
            ip,
            "ingress.externalIPs[0]",
            "`ingress.externalIPs` are NGINX's Service's, and `controller: gateway-api` has no NGINX: set `components.istio.ingress.externalIPs` instead",
        ));
    }
    components::gateway_api_allowed(src, components, chosen)?;
    Ok(IngressController::GatewayApi)
}

fn applications_need_istio(
    components: &Components,
    applications: &[Application],
) -> Result<(), ConfigError> {
    match applications.first() {
        Some(first) if !components.istio => Err(Source::new(&first.source).unlocated(
            "applications",
            format!(
                "application `{}` needs Istio (its Gateway, routes and policies are Istio's): enable `components.istio`",
                first.name
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Image;
    use crate::config::testing::{parse_err, parse_ok};

    #[test]
    fn gateway_api_routes_have_no_nginx_and_refuse_its_settings() {
        assert_eq!(parse_ok("").ingress_controller, IngressController::Nginx);
        let p = parse_ok("ingress: {controller: gateway-api}\n");
        assert_eq!(p.ingress_controller, IngressController::GatewayApi);
        assert!(!p.components.ingress_nginx && p.components.istio);
        for (text, line, field, says) in [
            (
                "ingress:\n  controller: gateway-api\n  type: NodePort\n",
                3,
                "ingress.type",
                "components.istio.ingress.type",
            ),
            (
                "ingress:\n  controller: gateway-api\n  externalIPs: [192.0.2.10]\n",
                3,
                "ingress.externalIPs[0]",
                "components.istio.ingress.externalIPs",
            ),
            (
                "ingress: {controller: gateway-api}\ncomponents:\n  ingressNGINX: {enabled: true}\n",
                3,
                "components.ingressNGINX.enabled",
                "without NGINX",
            ),
            (
                "ingress: {controller: gateway-api}\ncomponents:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n",
                1,
                "ingress.controller",
                "enable `components.istio`",
            ),
        ] {
            let e = parse_err(text);
            assert_eq!(e.field.as_deref(), Some(field), "{text}");
            assert_eq!(e.line, Some(line), "{text}");
            assert!(e.message.contains(says), "{}", e.message);
        }
        assert!(
            parse_err("ingress: {controller: traefik}\n")
                .message
                .contains("gateway-api")
        );
    }

    #[test]
    fn gateway_api_routes_get_an_external_dns_that_reads_them() {
        let dns = "dns:\n  externalDNS: {provider: oci, zone: example.com}\n";
        let routes = parse_ok(&format!("ingress: {{controller: gateway-api}}\n{dns}"));
        assert_eq!(
            routes.images.reference(Image::ExternalDns),
            "registry.k8s.io/external-dns/external-dns:v0.22.0"
        );
        let nginx = parse_ok(dns);
        assert_eq!(
            nginx.images.reference(Image::ExternalDns),
            "ghcr.io/verrazzano/external-dns:v0.12.2-20231219112424-52012475"
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
    fn adopt_takes_object_addresses() {
        let p = parse_ok("adopt: [namespaces/Namespace/istio-system]\n");
        assert!(p.adopts("namespaces/Namespace/istio-system"));
        let e = parse_err("adopt: [istio-system]\n");
        assert_eq!(e.field.as_deref(), Some("adopt[0]"));
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
}
