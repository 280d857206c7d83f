//! Well-known names of the platform: namespaces and the labels its components' pods carry.
//!
//! Taken from Verrazzano (see `shared/reference/verrazzano-networking.md`), so that `vz` produces a
//! network configuration its components recognise.

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

/// Every namespace of the platform's own components: no application may live in one.
pub const SYSTEM_NAMESPACES: [&str; 9] = [
    VERRAZZANO_INSTALL,
    VERRAZZANO_SYSTEM,
    VERRAZZANO_MONITORING,
    INGRESS_NGINX,
    ISTIO_SYSTEM,
    CERT_MANAGER,
    KEYCLOAK,
    MYSQL_OPERATOR,
    ARGOCD,
];
