//! Kind-aware ordering, which holds whatever the providers declare.
//!
//! Across steps: a step that creates Namespace `n` comes before every step with objects in `n`, and a
//! step that defines a CustomResourceDefinition of API group `g` comes before every step with objects
//! of group `g` (deletion runs the other way: custom resources before their CRDs, contents before
//! namespaces). Within a step, objects go in tiers — namespaces and CRDs, then copies of CAs (a
//! trust bundle, a webhook's `caBundle`: clients trust a new CA before the servers' certificates it
//! signs are written), then what workloads need (service accounts, RBAC, config, certificates),
//! then Services, then workloads, then everything else (custom resources included), then
//! admission webhooks and API services, which would otherwise intercept requests before their
//! backends exist. Objects of one tier are applied concurrently; deletion
//! takes the tiers in reverse.

use serde_json::Value;

/// The API group of an `apiVersion` (`""` for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// What a step's object makes available to other steps.
pub fn provides(api_version: &str, kind: &str, name: &str, body: Option<&Value>) -> Option<String> {
    match (api_version, kind) {
        ("v1", "Namespace") => Some(format!("namespace:{name}")),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            // The group is in the spec; a recorded CRD (no body) is named <plural>.<group>.
            let group = body
                .and_then(|b| b.pointer("/spec/group"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| name.split_once('.').map(|(_, g)| g.to_string()))?;
            Some(format!("group:{group}"))
        }
        _ => None,
    }
}

/// What a step's object needs from other steps.
pub fn needs(api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(ns) = namespace {
        out.push(format!("namespace:{ns}"));
    }
    let group = group_of(api_version);
    if !is_builtin_group(group) && kind != "CustomResourceDefinition" {
        out.push(format!("group:{group}"));
    }
    out
}

fn is_builtin_group(group: &str) -> bool {
    group.is_empty() || group.ends_with(".k8s.io") || !group.contains('.') || group == "apps"
}

/// The tier of an object within its step: lower tiers are applied first (and deleted last).
/// `copy`: all `vz` writes of it is values copied from a CA (see the module's documentation).
pub fn tier(api_version: &str, kind: &str, copy: bool) -> u8 {
    match kind {
        "Namespace" | "CustomResourceDefinition" => 0,
        _ if copy => 1,
        "ServiceAccount" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
        | "ConfigMap" | "Secret" | "PriorityClass" | "IngressClass" => 2,
        "Service" => 3,
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job" | "CronJob" | "Pod" => 4,
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" | "APIService"
            if is_builtin_group(group_of(api_version)) =>
        {
            6
        }
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_and_crds_are_provided_and_needed() {
        assert_eq!(
            provides("v1", "Namespace", "keycloak", None).as_deref(),
            Some("namespace:keycloak")
        );
        let crd = json!({"spec": {"group": "security.istio.io"}});
        assert_eq!(
            provides(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "peerauthentications.security.istio.io",
                Some(&crd)
            )
            .as_deref(),
            Some("group:security.istio.io")
        );
        assert_eq!(
            provides(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "peerauthentications.security.istio.io",
                None
            )
            .as_deref(),
            Some("group:security.istio.io"),
            "recorded CRDs are known by name"
        );
        assert_eq!(
            needs(
                "security.istio.io/v1beta1",
                "PeerAuthentication",
                Some("istio-system")
            ),
            ["namespace:istio-system", "group:security.istio.io"]
        );
        assert_eq!(
            needs("networking.k8s.io/v1", "NetworkPolicy", Some("a")),
            ["namespace:a"]
        );
        assert!(needs("apps/v1", "Deployment", None).is_empty());
    }

    #[test]
    fn tiers_put_dependencies_first_and_webhooks_last() {
        let order = [
            ("v1", "Namespace"),
            ("v1", "ServiceAccount"),
            ("v1", "Service"),
            ("apps/v1", "Deployment"),
            ("networking.istio.io/v1beta1", "Gateway"),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
            ),
        ];
        let tiers: Vec<u8> = order.iter().map(|(a, k)| tier(a, k, false)).collect();
        let mut sorted = tiers.clone();
        sorted.sort_unstable();
        assert_eq!(tiers, sorted);
        assert_eq!(
            tier("apiextensions.k8s.io/v1", "CustomResourceDefinition", false),
            0
        );
    }

    #[test]
    fn copies_of_a_ca_go_before_the_certificates_it_signs() {
        let bundle = tier("v1", "Secret", true);
        let webhook_ca_bundle = tier(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            true,
        );
        let certificate = tier("v1", "Secret", false);
        assert!(bundle < certificate && webhook_ca_bundle < certificate);
    }
}
