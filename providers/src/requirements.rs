//! What the platform needs from the cluster but does not create: objects that must exist (and be
//! ready) before a plan can be carried out.
//!
//! Today: with `components.istio.install: false`, `vz` configures an Istio that is already there,
//! so Istio's API (the CRDs of the kinds `vz` writes) must be served and istiod must be running —
//! its sidecar injector is what NGINX's pods go through. With `certificates.ca.secretName`, the
//! user's CA Secret must exist: `vz` signs with it. With `dns.externalDNS.credentials`, the DNS
//! provider's credentials Secret must exist: `vz` copies it for ExternalDNS. With
//! `ingress.controller: gateway-api`, Gateway API's CRDs must be installed.

use crate::config::{CaSource, EnvValue, Platform};
use crate::names::ISTIO_SYSTEM;

/// An object that must exist in the cluster before `vz` goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// `apiVersion` of the object.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// When set, any object of the kind in the namespace with these labels will do (`name` is then
    /// the usual one): an Istio installed by revision runs `istiod-1-19-3`, not `istiod`.
    pub selector: Option<&'static str>,
    /// For a Secret: `data` keys it must hold.
    pub keys: Vec<String>,
    /// Why it is needed, and what to do when it is missing.
    pub why: &'static str,
}

const OWN_CA: &str = "`certificates.ca.secretName` names the CA vz signs the platform's certificates with (`tls.crt` and `tls.key` of a CA certificate): create that Secret first, or remove `certificates.ca` to let vz issue a self-signed CA";

const DNS_CREDENTIALS: &str = "`dns.externalDNS.credentials` names the Secret with the DNS provider's credentials, which vz copies into `verrazzano-system` for ExternalDNS: create it first (e.g. `kubectl create secret generic NAME -n NAMESPACE --from-file=oci.yaml`), or remove `credentials`";

const GATEWAY_API_CRDS: &str = "`ingress.controller: gateway-api` writes Gateway API objects, whose CRDs are the cluster's (many ship them; Istio does not install them): install Gateway API's standard channel first (`kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.0/standard-install.yaml`), or choose `controller: nginx`";

const EXISTING_ISTIO: &str = "`components.istio.install` is false, so vz configures an Istio that is already installed: install Istio 1.19 first, or let vz install it (`install: true`)";

/// The CustomResourceDefinition `name`, needed for `why`.
fn crd(name: &str, why: &'static str) -> Requirement {
    Requirement {
        api_version: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        namespace: None,
        name: name.to_string(),
        selector: None,
        keys: vec![],
        why,
    }
}

/// The requirements of `p`.
pub fn requirements(p: &Platform) -> Vec<Requirement> {
    let mut out = Vec::new();
    if let CaSource::Secret(ca) = &p.certificates.ca {
        out.push(Requirement {
            api_version: "v1",
            kind: "Secret",
            namespace: Some(ca.namespace.clone()),
            name: ca.name.clone(),
            selector: None,
            keys: vec![],
            why: OWN_CA,
        });
    }
    if let Some(e) = crate::external_dns::settings(p)
        && let Some(c) = &e.credentials
    {
        out.push(Requirement {
            api_version: "v1",
            kind: "Secret",
            namespace: Some(c.namespace.clone()),
            name: c.name.clone(),
            selector: None,
            keys: e
                .env
                .iter()
                .filter_map(|(_, v)| match v {
                    EnvValue::CredentialsKey(k) => Some(k.clone()),
                    EnvValue::Text(_) => None,
                })
                .collect(),
            why: DNS_CREDENTIALS,
        });
    }
    if p.gateway_api() {
        for name in [
            "gateways.gateway.networking.k8s.io",
            "httproutes.gateway.networking.k8s.io",
            "referencegrants.gateway.networking.k8s.io",
        ] {
            out.push(crd(name, GATEWAY_API_CRDS));
        }
    }
    if !p.components.istio || p.components.installs_istio() {
        return out;
    }
    out.extend([
        crd("peerauthentications.security.istio.io", EXISTING_ISTIO),
        crd("authorizationpolicies.security.istio.io", EXISTING_ISTIO),
        crd("envoyfilters.networking.istio.io", EXISTING_ISTIO),
        Requirement {
            api_version: "apps/v1",
            kind: "Deployment",
            namespace: Some(ISTIO_SYSTEM.to_string()),
            name: "istiod".to_string(),
            selector: Some("app=istiod"),
            keys: vec![],
            why: EXISTING_ISTIO,
        },
    ]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;

    #[test]
    fn an_existing_istio_must_serve_its_api_and_run_istiod() {
        assert!(requirements(&platform("")).is_empty(), "vz installs Istio");
        assert!(
            requirements(&platform(
                "components:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n"
            ))
            .is_empty()
        );
        let r = requirements(&platform(
            "components:\n  istio: {enabled: true, install: false}\n",
        ));
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "peerauthentications.security.istio.io",
                "authorizationpolicies.security.istio.io",
                "envoyfilters.networking.istio.io",
                "istiod"
            ]
        );
        assert!(r[3].why.contains("install: true"));
        assert_eq!(r[3].selector, Some("app=istiod"), "any revision's istiod");
    }

    #[test]
    fn gateway_api_routes_need_its_crds() {
        let r = requirements(&platform("ingress: {controller: gateway-api}\n"));
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gateways.gateway.networking.k8s.io",
                "httproutes.gateway.networking.k8s.io",
                "referencegrants.gateway.networking.k8s.io"
            ]
        );
        assert!(r[0].why.contains("standard-install.yaml"));
    }

    #[test]
    fn the_dns_providers_credentials_must_exist() {
        let r = requirements(&platform(
            "dns:\n  externalDNS: {provider: oci, zone: example.com, credentials: {secretName: oci-dns}, env: [{name: T, credentialsKey: token}, {name: R, value: r}]}\n",
        ));
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].kind, r[0].namespace.as_deref(), r[0].name.as_str()),
            ("Secret", Some("default"), "oci-dns")
        );
        assert!(r[0].why.contains("kubectl create secret"));
        assert_eq!(r[0].keys, ["token"], "the keys the environment reads");
    }
}
