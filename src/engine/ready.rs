//! Readiness rules: when an applied object counts as done, per kind.
//!
//! Pure functions of the live object, so they are tested without a cluster. Kinds without a rule are
//! ready as soon as they exist.

use serde_json::Value;

/// Whether an object is ready, and if not, what it is waiting for (said to the user on a timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Done.
    Ready,
    /// Not yet: the condition being waited for and what the object says now.
    Waiting(String),
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn condition<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// Whether objects of this kind have a readiness rule at all (others are ready when they exist, so
/// there is nothing to wait for).
pub fn has_rule(api_version: &str, kind: &str) -> bool {
    matches!(
        (api_version, kind),
        ("v1", "Namespace")
            | ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            | ("apps/v1", "Deployment")
            | ("v1", "Service")
    )
}

/// The readiness of a live object.
pub fn readiness(obj: &Value) -> Readiness {
    let api_version = str_at(obj, "/apiVersion").unwrap_or_default();
    let kind = str_at(obj, "/kind").unwrap_or_default();
    match (api_version, kind) {
        ("v1", "Namespace") => match str_at(obj, "/status/phase") {
            Some("Active") | None => Readiness::Ready,
            Some(phase) => Readiness::Waiting(format!("phase Active (it is {phase})")),
        },
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            match condition(obj, "Established").and_then(|c| str_at(c, "/status")) {
                Some("True") => Readiness::Ready,
                _ => Readiness::Waiting("condition Established=True".into()),
            }
        }
        ("apps/v1", "Deployment") => {
            let generation = int_at(obj, "/metadata/generation");
            let observed = int_at(obj, "/status/observedGeneration");
            let wanted = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let updated = int_at(obj, "/status/updatedReplicas");
            let available = int_at(obj, "/status/availableReplicas");
            if observed >= generation && updated >= wanted && available >= wanted {
                Readiness::Ready
            } else {
                Readiness::Waiting(format!(
                    "{wanted} available replica(s) of the current generation ({available} available, {updated} updated, generation {observed}/{generation} observed)"
                ))
            }
        }
        ("v1", "Service") if str_at(obj, "/spec/type") == Some("LoadBalancer") => {
            let has_address = obj
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if has_address {
                Readiness::Ready
            } else {
                Readiness::Waiting(
                    "a load balancer address (status.loadBalancer.ingress is empty: is there a load-balancer controller? without one, configure a NodePort Service or external IPs)"
                        .into(),
                )
            }
        }
        _ => Readiness::Ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_terminating_namespace_is_not_ready() {
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Terminating"}});
        assert_eq!(
            readiness(&ns),
            Readiness::Waiting("phase Active (it is Terminating)".into())
        );
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Active"}});
        assert_eq!(readiness(&ns), Readiness::Ready);
    }

    #[test]
    fn a_crd_is_ready_once_established() {
        let mut crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                             "status": {"conditions": [{"type": "NamesAccepted", "status": "True"}]}});
        assert!(matches!(readiness(&crd), Readiness::Waiting(_)));
        crd["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        assert_eq!(readiness(&crd), Readiness::Ready);
    }

    #[test]
    fn a_deployment_needs_its_current_generation_available() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"generation": 2}, "spec": {"replicas": 2},
                           "status": {"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(
            matches!(readiness(&d), Readiness::Waiting(_)),
            "old generation"
        );
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!(readiness(&d), Readiness::Ready);
        d["status"]["availableReplicas"] = json!(1);
        assert!(matches!(readiness(&d), Readiness::Waiting(w) if w.contains("1 available")));
    }

    #[test]
    fn a_load_balancer_service_needs_an_address_and_others_do_not() {
        let mut s = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"},
                           "status": {"loadBalancer": {}}});
        assert!(matches!(readiness(&s), Readiness::Waiting(_)));
        s["status"]["loadBalancer"]["ingress"] = json!([{"ip": "192.0.2.1"}]);
        assert_eq!(readiness(&s), Readiness::Ready);
        let np = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "NodePort"}});
        assert_eq!(readiness(&np), Readiness::Ready);
    }

    #[test]
    fn kinds_without_a_rule_are_ready_when_they_exist() {
        let p = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"});
        assert_eq!(readiness(&p), Readiness::Ready);
        assert!(!has_rule("networking.k8s.io/v1", "NetworkPolicy"));
        assert!(has_rule("v1", "Namespace"));
    }
}
