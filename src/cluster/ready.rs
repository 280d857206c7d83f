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

/// What a Deployment's or StatefulSet's status says of its rollout.
struct Replicas {
    generation: i64,
    observed: i64,
    /// `spec.replicas` (1 when unset, as the API server defaults it).
    wanted: i64,
    updated: i64,
    available: i64,
}

fn replicas(obj: &Value) -> Replicas {
    Replicas {
        generation: int_at(obj, "/metadata/generation"),
        observed: int_at(obj, "/status/observedGeneration"),
        wanted: obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        updated: int_at(obj, "/status/updatedReplicas"),
        available: int_at(obj, "/status/availableReplicas"),
    }
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
            | ("apps/v1", "Deployment" | "StatefulSet" | "DaemonSet")
            | ("v1", "Service")
            | (
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration"
            )
            | (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration"
            )
            | ("gateway.networking.k8s.io/v1", "Gateway" | "HTTPRoute")
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
            let Replicas {
                generation,
                observed,
                wanted,
                updated,
                available,
            } = replicas(obj);
            // Pods of the old template still running (a rollout under way) count in `replicas`.
            let old = int_at(obj, "/status/replicas") - updated;
            if observed >= generation && updated >= wanted && available >= wanted && old <= 0 {
                Readiness::Ready
            } else {
                Readiness::Waiting(format!(
                    "{wanted} available replica(s) of the current generation and none of an older one ({available} available, {updated} updated, {} old, generation {observed}/{generation} observed){}",
                    old.max(0),
                    deployment_trouble(obj)
                ))
            }
        }
        ("apps/v1", "StatefulSet") => {
            let Replicas {
                generation,
                observed,
                wanted,
                updated,
                available,
            } = replicas(obj);
            let current = str_at(obj, "/status/currentRevision");
            let update = str_at(obj, "/status/updateRevision");
            if observed >= generation
                && updated >= wanted
                && available >= wanted
                && current == update
            {
                Readiness::Ready
            } else {
                Readiness::Waiting(format!(
                    "{wanted} available replica(s) of the current revision ({available} available, {updated} updated, generation {observed}/{generation} observed)"
                ))
            }
        }
        ("apps/v1", "DaemonSet") => {
            let generation = int_at(obj, "/metadata/generation");
            let observed = int_at(obj, "/status/observedGeneration");
            let wanted = int_at(obj, "/status/desiredNumberScheduled");
            let updated = int_at(obj, "/status/updatedNumberScheduled");
            let available = int_at(obj, "/status/numberAvailable");
            if observed >= generation && updated >= wanted && available >= wanted {
                Readiness::Ready
            } else {
                Readiness::Waiting(format!(
                    "{wanted} available pod(s) of the current template ({available} available, {updated} updated, generation {observed}/{generation} observed)"
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
        (
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => webhooks_readiness(obj),
        ("gateway.networking.k8s.io/v1", "Gateway") => gateway_readiness(obj),
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => route_readiness(obj),
        _ => Readiness::Ready,
    }
}

/// A condition's status, reason and message, when it is of the object's current generation.
fn current<'a>(obj: &Value, c: &'a Value) -> Option<(&'a str, &'a str, &'a str)> {
    let generation = int_at(obj, "/metadata/generation");
    let observed = c.pointer("/observedGeneration").and_then(Value::as_i64);
    if observed.is_some_and(|o| o < generation) {
        return None;
    }
    Some((
        str_at(c, "/status").unwrap_or_default(),
        str_at(c, "/reason").unwrap_or("no reason given"),
        str_at(c, "/message").unwrap_or_default(),
    ))
}

/// A Gateway serves once its controller says `Programmed=True` for its current generation.
fn gateway_readiness(obj: &Value) -> Readiness {
    match condition(obj, "Programmed").and_then(|c| current(obj, c)) {
        Some(("True", _, _)) => Readiness::Ready,
        Some((status, reason, message)) => Readiness::Waiting(format!(
            "condition Programmed=True (it is {status}: {reason}{}{message})",
            if message.is_empty() { "" } else { ": " }
        )),
        None => Readiness::Waiting(
            "condition Programmed=True of its current generation (no Gateway controller has said anything yet: is istiod running, with Gateway API on?)"
                .into(),
        ),
    }
}

/// An HTTPRoute serves once every Gateway it names has accepted it and its backends resolved:
/// `Accepted=True` and `ResolvedRefs=True` in each parent's status, for its current generation.
/// An application's route (label `vz.dev/application`) is ready without its backends
/// (`ResolvedRefs=False`, `BackendNotFound`): they are the application's workloads, which may come
/// after it; a system route waits for its component's Service.
fn route_readiness(obj: &Value) -> Readiness {
    let application = obj
        .pointer("/metadata/labels/vz.dev~1application")
        .is_some();
    let wanted = obj
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let parents = obj
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for p in parents {
        let parent = str_at(p, "/parentRef/name").unwrap_or("?");
        for kind in ["Accepted", "ResolvedRefs"] {
            let c = p
                .pointer("/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == Some(kind)));
            match c.and_then(|c| current(obj, c)) {
                Some(("True", _, _)) => {}
                Some(("False", "BackendNotFound", _)) if application && kind == "ResolvedRefs" => {}
                Some((status, reason, message)) => {
                    return Readiness::Waiting(format!(
                        "condition {kind}=True from Gateway {parent} (it is {status}: {reason}{}{message})",
                        if message.is_empty() { "" } else { ": " }
                    ));
                }
                None => {
                    return Readiness::Waiting(format!(
                        "condition {kind}=True of its current generation from Gateway {parent}"
                    ));
                }
            }
        }
    }
    if parents.len() < wanted {
        return Readiness::Waiting(format!(
            "the status of each of its {wanted} Gateway(s) ({} said so far: is istiod running, with Gateway API on?)",
            parents.len()
        ));
    }
    Readiness::Ready
}

/// What a Deployment's conditions say is wrong, if anything: too few pods available, pods its
/// ReplicaSet cannot create (quota, an admission webhook's refusal), a rollout past its progress
/// deadline.
fn deployment_trouble(obj: &Value) -> String {
    let mut out = String::new();
    for (kind, bad) in [
        ("Available", "False"),
        ("ReplicaFailure", "True"),
        ("Progressing", "False"),
    ] {
        if let Some(c) = condition(obj, kind).filter(|c| str_at(c, "/status") == Some(bad)) {
            let reason = str_at(c, "/reason").unwrap_or("no reason given");
            out.push_str(&format!("; condition {kind}={bad} ({reason})"));
            if let Some(message) = str_at(c, "/message").filter(|m| !m.is_empty()) {
                out.push_str(&format!(": {message}"));
            }
        }
    }
    out
}

/// A webhook configuration is ready once the API server can verify every webhook server it calls
/// through a Service: each such webhook has a `caBundle`. `vz` never writes one for a server that
/// issues its own certificate (istiod writes its CA there when it starts), so until then the API
/// server would refuse that server's certificate — and a webhook that fails closed would refuse
/// every request it covers.
fn webhooks_readiness(obj: &Value) -> Readiness {
    let hooks = obj
        .pointer("/webhooks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let waiting = hooks.iter().find(|h| {
        h.pointer("/clientConfig/service").is_some()
            && str_at(h, "/clientConfig/caBundle").is_none_or(str::is_empty)
    });
    match waiting {
        None => Readiness::Ready,
        Some(h) => {
            let name = str_at(h, "/name").unwrap_or("?");
            let ns = str_at(h, "/clientConfig/service/namespace").unwrap_or("?");
            let svc = str_at(h, "/clientConfig/service/name").unwrap_or("?");
            Readiness::Waiting(format!(
                "a CA bundle in webhook {name} (the server behind Service {ns}/{svc} writes it when it starts: is it running, and may it patch webhook configurations?)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_gateway_serves_once_programmed_for_its_generation() {
        let gw = |conditions: Value| {
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"generation": 2}, "status": {"conditions": conditions}})
        };
        assert!(
            matches!(readiness(&gw(json!([]))), Readiness::Waiting(w) if w.contains("is istiod running"))
        );
        let stale = gw(json!([{"type": "Programmed", "status": "True", "observedGeneration": 1}]));
        assert_ne!(readiness(&stale), Readiness::Ready);
        let pending = gw(
            json!([{"type": "Programmed", "status": "False", "reason": "AddressNotAssigned",
            "message": "address pending for hostname \"istio-ingressgateway.istio-system.svc.cluster.local\"", "observedGeneration": 2}]),
        );
        assert!(
            matches!(readiness(&pending), Readiness::Waiting(w) if w.contains("AddressNotAssigned: address pending"))
        );
        let done = gw(json!([{"type": "Programmed", "status": "True", "observedGeneration": 2}]));
        assert_eq!(readiness(&done), Readiness::Ready);
    }

    #[test]
    fn a_route_serves_once_every_parent_accepted_it_and_resolved_its_backends() {
        let route = |parents: Value| {
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"generation": 1},
                "spec": {"parentRefs": [{"name": "verrazzano-gateway"}]},
                "status": {"parents": parents}})
        };
        assert!(
            matches!(readiness(&route(json!([]))), Readiness::Waiting(w) if w.contains("0 said so far"))
        );
        let parent = |resolved: &str| {
            json!([{"parentRef": {"name": "verrazzano-gateway"}, "controllerName": "istio.io/gateway-controller",
            "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1},
                {"type": "ResolvedRefs", "status": resolved, "reason": "BackendNotFound",
                 "message": "backend(keycloak-http.keycloak.svc.cluster.local) not found", "observedGeneration": 1},
            ]}])
        };
        assert!(matches!(readiness(&route(parent("False"))),
            Readiness::Waiting(w) if w.contains("ResolvedRefs=True from Gateway verrazzano-gateway (it is False: BackendNotFound")));
        assert_eq!(readiness(&route(parent("True"))), Readiness::Ready);
        // An application's route does not wait for its workloads' Services.
        let mut app = route(parent("False"));
        app["metadata"]["labels"] = json!({"vz.dev/application": "shop-orders"});
        assert_eq!(readiness(&app), Readiness::Ready);
    }

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
    fn a_deployment_that_cannot_create_its_pods_says_why() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                 "message": "Internal error occurred: failed calling webhook \"inject\""},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}});
        let Readiness::Waiting(w) = readiness(&d) else {
            panic!("ready without replicas")
        };
        assert!(
            w.ends_with(
                "; condition Available=False (MinimumReplicasUnavailable); condition ReplicaFailure=True (FailedCreate): Internal error occurred: failed calling webhook \"inject\""
            ),
            "{w}"
        );
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
    fn a_webhook_configuration_waits_for_the_ca_bundle_of_each_service_webhook() {
        let mut mwc = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "webhooks": [
            {"name": "by-url", "clientConfig": {"url": "https://hooks.example.test/x"}},
            {"name": "rev.namespace.sidecar-injector.istio.io",
             "clientConfig": {"service": {"name": "istiod", "namespace": "istio-system"}}},
        ]});
        assert!(matches!(readiness(&mwc), Readiness::Waiting(w)
            if w.contains("webhook rev.namespace.sidecar-injector.istio.io")
                && w.contains("Service istio-system/istiod")));
        mwc["webhooks"][1]["clientConfig"]["caBundle"] = json!("");
        assert!(matches!(readiness(&mwc), Readiness::Waiting(_)), "empty");
        mwc["webhooks"][1]["clientConfig"]["caBundle"] = json!("LS0tLS1CRUdJTg==");
        assert_eq!(readiness(&mwc), Readiness::Ready);
        assert!(has_rule(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration"
        ));
    }

    #[test]
    fn kinds_without_a_rule_are_ready_when_they_exist() {
        let p = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"});
        assert_eq!(readiness(&p), Readiness::Ready);
        assert!(!has_rule("networking.k8s.io/v1", "NetworkPolicy"));
        assert!(has_rule("v1", "Namespace"));
    }
}
