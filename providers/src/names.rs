//! Every name more than one module uses: the platform's namespaces, the ids of the steps other
//! steps come after, the outputs steps publish, the labels of namespaces, and shared Secrets.
//!
//! A base module: it imports nothing of the crate, and every module may read it (the configuration
//! too). A name only its own provider uses stays in that provider.
//!
//! Namespaces and labels are Verrazzano's (see `shared/reference/verrazzano-networking.md`), so
//! that `vz` produces a network configuration its components recognise.

use serde::{Deserialize, Serialize};

/// The platform operator's namespace.
pub const VERRAZZANO_INSTALL: &str = "verrazzano-install";
/// Verrazzano's own components (auth proxy, console, operators, Grafana, Kiali).
pub const VERRAZZANO_SYSTEM: &str = "verrazzano-system";
/// Prometheus.
pub const VERRAZZANO_MONITORING: &str = "verrazzano-monitoring";
/// The NGINX Ingress Controller.
pub const INGRESS_NGINX: &str = "verrazzano-ingress-nginx";
/// Istio's control plane and gateways.
pub const ISTIO_SYSTEM: &str = "istio-system";
/// cert-manager.
pub const CERT_MANAGER: &str = "cert-manager";
/// Keycloak.
pub const KEYCLOAK: &str = "keycloak";
/// Keycloak's MySQL operator.
pub const MYSQL_OPERATOR: &str = "mysql-operator";
/// Argo CD.
pub const ARGOCD: &str = "argocd";
/// Rancher's namespace.
pub const CATTLE_SYSTEM: &str = "cattle-system";

/// Every namespace of the platform's own components: no application may live in one.
pub const SYSTEM_NAMESPACES: [&str; 10] = [
    VERRAZZANO_INSTALL,
    VERRAZZANO_SYSTEM,
    VERRAZZANO_MONITORING,
    INGRESS_NGINX,
    ISTIO_SYSTEM,
    CERT_MANAGER,
    KEYCLOAK,
    MYSQL_OPERATOR,
    ARGOCD,
    CATTLE_SYSTEM,
];

/// Step `namespaces`: the system namespaces.
pub const NAMESPACES_STEP: &str = "namespaces";
/// Step `network-policies`: the ingress NetworkPolicies of the system components.
pub const NETWORK_POLICIES_STEP: &str = "network-policies";
/// Step `istio.crds`: Istio's CustomResourceDefinitions.
pub const ISTIO_CRDS_STEP: &str = "istio.crds";
/// Step `istio.peer-authentication`: strict mTLS for the whole mesh.
pub const ISTIO_PEER_AUTHENTICATION_STEP: &str = "istio.peer-authentication";
/// Step `istio.control-plane`: istiod and its webhooks.
pub const ISTIO_CONTROL_PLANE_STEP: &str = "istio.control-plane";
/// Step `istio.gateways`: the ingress and egress gateways.
pub const ISTIO_GATEWAYS_STEP: &str = "istio.gateways";
/// Step `istio.revision-tag` (`upgrade: canary`): the default revision tag, pointing the mesh at
/// the platform's revision.
pub const ISTIO_REVISION_TAG_STEP: &str = "istio.revision-tag";
/// Step `istio.workloads`: the workloads of injected namespaces restarted onto the platform's
/// revision (their pods lack a sidecar, or run another revision's).
pub const ISTIO_WORKLOADS_STEP: &str = "istio.workloads";
/// Step `ingress-nginx`: the NGINX Ingress Controller.
pub const INGRESS_NGINX_STEP: &str = "ingress-nginx";
/// Step `certificates.ca`: the platform CA, when `vz` issues it.
pub const CA_STEP: &str = "certificates.ca";
/// Step `certificates.tls`: the system Ingresses' TLS certificates and the CA bundle for clients.
pub const TLS_STEP: &str = "certificates.tls";
/// Step `system-ingresses`: an Ingress per system component.
pub const SYSTEM_INGRESSES_STEP: &str = "system-ingresses";
/// Step `system-routes`: the system components' Gateway API routes (`ingress.controller:
/// gateway-api`).
pub const SYSTEM_ROUTES_STEP: &str = "system-routes";

/// Output of [`INGRESS_NGINX_STEP`]: the NGINX controller's external address.
pub const INGRESS_IP: &str = "ingress-ip";
/// Output of [`ISTIO_GATEWAYS_STEP`]: the Istio ingress gateway's external address.
pub const GATEWAY_IP: &str = "gateway-ip";
/// The port the ingress gateway's pods serve HTTPS on (its Service's 443): what an
/// AuthorizationPolicy on the gateway names, as policies match the pod's port.
pub const GATEWAY_HTTPS_TARGET_PORT: u16 = 8443;

/// The label NetworkPolicies use to select peer namespaces.
pub const NAMESPACE_LABEL: &str = "verrazzano.io/namespace";
/// The label that turns on Istio sidecar injection.
pub const INJECTION_LABEL: &str = "istio-injection";
/// The label that sets the Pod Security level admission enforces in a namespace.
pub const POD_SECURITY_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The Pod Security level of a namespace whose pods are injected: `istio-init` needs NET_ADMIN and
/// NET_RAW as root, which only `privileged` allows.
pub const INJECTED_POD_SECURITY: &str = "privileged";

/// What an `istio-system` namespace or an istiod `vz` did not create probably is, and the ways out.
pub const ISTIO_TAKEN: &str = "probably an Istio installed by someone else; to configure that Istio instead of installing one, set `components.istio.install: false`";

/// The IngressClass of the NGINX Ingress Controller, which the system Ingresses use.
pub const INGRESS_CLASS: &str = "verrazzano-nginx";

/// The Secret of the platform CA `vz` issues, in [`CERT_MANAGER`] (Verrazzano's cert-manager CA
/// certificate's).
pub const CA_SECRET: &str = "verrazzano-ca-certificate-secret";

/// A Secret in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl SecretRef {
    /// The Secret `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        SecretRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
