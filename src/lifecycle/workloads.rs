//! Workloads whose pods the mesh has to make again: in the namespaces `vz` labels for injection,
//! pods running without a sidecar (created before the namespace was injected, or while the
//! injector was away) or with a sidecar another revision injected (before a version move), or a
//! proxy image other than the one the configuration names (an in-place upgrade).
//!
//! [`plan_restarts`] reads the pods of those namespaces (one list of pods, and one of
//! ReplicaSets when a Deployment owns any of them) and says which Deployments, StatefulSets and
//! DaemonSets apply restarts at step `istio.workloads` ([`crate::engine::restart`]), and why. A pod
//! nothing restartable owns (a bare pod, a Job's) is named in a warning instead: deleting it is
//! the only way, and that is the user's call. Pods that opt out (`sidecar.istio.io/inject:
//! "false"`), pods on the host network (never injected), pods being deleted, and the namespaces of
//! `components.istio.restartExcept` are left alone; `restartWorkloads: false` turns it all off.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;
use serde_json::Value;
use vz_providers::config::Image;
use vz_providers::names::ISTIO_WORKLOADS_STEP;
use vz_providers::{Platform, Step};

use crate::cluster::{Cluster, Listing, ObjectRef};
use crate::engine::restart::Restart;

/// The annotation the injector writes on every pod it injects.
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
/// The label and annotation that keep a pod out of the injector.
pub const INJECT: &str = "sidecar.istio.io/inject";

/// What a pod runs, as far as its sidecar goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sidecar {
    /// None.
    Missing,
    /// One injected by another revision.
    Revision(String),
    /// One of another image.
    Image(String),
}

impl Sidecar {
    fn describe(&self, pods: usize, revision: &str, image: &str) -> String {
        let (s, runs) = if pods == 1 {
            ("", "runs")
        } else {
            ("s", "run")
        };
        match self {
            Sidecar::Missing => format!("{pods} pod{s} {runs} without a sidecar"),
            Sidecar::Revision(old) => format!(
                "{pods} pod{s} {runs} the sidecar of revision {old}; revision {revision} injects now"
            ),
            Sidecar::Image(old) => {
                format!("{pods} pod{s} {runs} proxy {old}; the injector gives {image} now")
            }
        }
    }
}

/// Why `pod` (in an injected namespace) must be made again, if it must.
pub fn stale(pod: &Value, revision: &str, image: &str) -> Option<Sidecar> {
    let meta = &pod["metadata"];
    if !meta["deletionTimestamp"].is_null() || pod["spec"]["hostNetwork"] == true {
        return None;
    }
    let opted_out = |v: &Value| v[INJECT].as_str() == Some("false");
    if opted_out(&meta["labels"]) || opted_out(&meta["annotations"]) {
        return None;
    }
    if matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    let Some(status) = meta["annotations"][SIDECAR_STATUS].as_str() else {
        return Some(Sidecar::Missing);
    };
    let injected: Value = serde_json::from_str(status).unwrap_or_default();
    let by = injected["revision"].as_str().unwrap_or("default");
    if by != revision {
        return Some(Sidecar::Revision(by.to_string()));
    }
    let proxy = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
        .and_then(|c| c["image"].as_str());
    match proxy {
        Some(p) if p != image => Some(Sidecar::Image(p.to_string())),
        _ => None,
    }
}

/// The controller owning `obj`: (kind, name).
fn controller(obj: &Value) -> Option<(String, String)> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["name"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// The namespaces `steps` label for injection.
fn injected_namespaces(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|s| &s.objects)
        .filter(|m| m.kind == "Namespace")
        .filter(|m| {
            let labels = &m.body["metadata"]["labels"];
            labels["istio-injection"] == "enabled" || labels["istio.io/rev"].is_string()
        })
        .map(|m| m.name.clone())
        .collect()
}

/// A pod whose sidecar is stale or missing.
struct StalePod {
    namespace: String,
    /// Its controller (kind, name): a ReplicaSet, StatefulSet, DaemonSet, Job, ...
    owner: Option<(String, String)>,
    name: String,
    why: Sidecar,
}

/// The workloads apply restarts at step `istio.workloads`, and warnings of stale pods it cannot
/// restart. Nothing when the platform has no such step (Istio off, or someone else's).
pub async fn plan_restarts(
    cluster: &Cluster,
    p: &Platform,
    steps: &[Step],
) -> Result<(Vec<Restart>, Vec<String>)> {
    if !p.istio.restart_workloads || !steps.iter().any(|s| s.id == ISTIO_WORKLOADS_STEP) {
        return Ok((vec![], vec![]));
    }
    let namespaces: HashSet<String> = injected_namespaces(steps)
        .into_iter()
        .filter(|ns| p.istio.restarts_in(ns))
        .collect();
    if namespaces.is_empty() {
        return Ok((vec![], vec![]));
    }
    let revision = p.istio.revision();
    let image = p.images.reference(Image::ProxyV2);
    let mut stale_pods: Vec<StalePod> = Vec::new();
    let pods = cluster
        .list_selected("v1", "Pod", "", Listing::Slim, |pod| {
            let ns = pod["metadata"]["namespace"].as_str()?.to_string();
            if !namespaces.contains(&ns) {
                return None;
            }
            let why = stale(&pod, &revision, &image)?;
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Some(StalePod {
                owner: controller(&pod),
                namespace: ns,
                name,
                why,
            })
        })
        .await?;
    stale_pods.extend(pods.unwrap_or_default());
    if stale_pods.is_empty() {
        return Ok((vec![], vec![]));
    }
    // A Deployment owns its pods through a ReplicaSet.
    let mut replica_sets: HashMap<(String, String), (String, String)> = HashMap::new();
    if stale_pods
        .iter()
        .any(|p| p.owner.as_ref().is_some_and(|(k, _)| k == "ReplicaSet"))
    {
        let listed = cluster
            .list_selected("apps/v1", "ReplicaSet", "", Listing::Metadata, |rs| {
                let ns = rs["metadata"]["namespace"].as_str()?.to_string();
                let name = rs["metadata"]["name"].as_str()?.to_string();
                Some(((ns, name), controller(&rs)?))
            })
            .await?;
        replica_sets.extend(listed.unwrap_or_default());
    }
    let mut workloads: BTreeMap<(String, String, String), BTreeMap<Sidecar, usize>> =
        BTreeMap::new();
    let mut warnings = Vec::new();
    for StalePod {
        namespace: ns,
        owner,
        name: pod,
        why,
    } in stale_pods
    {
        let owner = match owner {
            Some((kind, name)) if kind == "ReplicaSet" => {
                replica_sets.get(&(ns.clone(), name)).cloned()
            }
            other => other,
        };
        match owner {
            Some((kind, name)) if matches!(kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") => {
                *workloads
                    .entry((ns, kind, name))
                    .or_default()
                    .entry(why)
                    .or_default() += 1;
            }
            _ => warnings.push(format!(
                "pod {ns}/{pod}: {}, and no Deployment, StatefulSet or DaemonSet owns it for vz to restart: delete it to have it made again (or label it {INJECT}=false to leave it out)",
                why.describe(1, &revision, &image).trim_start_matches("1 pod ")
            )),
        }
    }
    let restarts = workloads
        .into_iter()
        .map(|((ns, kind, name), whys)| Restart {
            step: ISTIO_WORKLOADS_STEP.to_string(),
            workload: ObjectRef {
                api_version: "apps/v1".into(),
                kind,
                namespace: Some(ns),
                name,
            },
            pods: whys.values().sum(),
            why: whys
                .iter()
                .map(|(why, n)| why.describe(*n, &revision, &image))
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    Ok((restarts, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotations: Value, proxy: Option<&str>) -> Value {
        let mut containers = vec![json!({"name": "app", "image": "shop:1"})];
        if let Some(image) = proxy {
            containers.push(json!({"name": "istio-proxy", "image": image}));
        }
        json!({"metadata": {"name": "p", "namespace": "shop", "annotations": annotations},
               "spec": {"containers": containers}})
    }

    #[test]
    fn a_pod_without_a_sidecar_or_with_another_revisions_is_stale() {
        let none = pod(json!({}), None);
        assert_eq!(
            stale(&none, "1-30-3", "proxy:1.30.3"),
            Some(Sidecar::Missing)
        );
        let old = pod(
            json!({SIDECAR_STATUS: r#"{"containers":["istio-proxy"],"revision":"1-19-3"}"#}),
            Some("proxy:1.19.3"),
        );
        assert_eq!(
            stale(&old, "1-30-3", "proxy:1.30.3"),
            Some(Sidecar::Revision("1-19-3".into()))
        );
        let current = pod(
            json!({SIDECAR_STATUS: r#"{"containers":["istio-proxy"],"revision":"1-30-3"}"#}),
            Some("proxy:1.30.3"),
        );
        assert_eq!(stale(&current, "1-30-3", "proxy:1.30.3"), None);
    }

    #[test]
    fn in_place_a_pod_is_stale_by_its_proxy_image() {
        let old = pod(
            json!({SIDECAR_STATUS: r#"{"containers":["istio-proxy"]}"#}),
            Some("proxy:1.19.3"),
        );
        assert_eq!(
            stale(&old, "default", "proxy:1.30.3"),
            Some(Sidecar::Image("proxy:1.19.3".into()))
        );
        assert_eq!(stale(&old, "default", "proxy:1.19.3"), None);
    }

    #[test]
    fn pods_that_opt_out_run_on_the_host_or_are_done_are_left_alone() {
        let mut p = pod(json!({INJECT: "false"}), None);
        assert_eq!(stale(&p, "1-30-3", "x"), None);
        p = pod(json!({}), None);
        p["spec"]["hostNetwork"] = json!(true);
        assert_eq!(stale(&p, "1-30-3", "x"), None);
        p = pod(json!({}), None);
        p["status"] = json!({"phase": "Succeeded"});
        assert_eq!(stale(&p, "1-30-3", "x"), None);
        p = pod(json!({}), None);
        p["metadata"]["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
        assert_eq!(stale(&p, "1-30-3", "x"), None);
    }

    #[test]
    fn the_reason_counts_the_pods() {
        assert_eq!(
            Sidecar::Revision("1-19-3".into()).describe(2, "1-30-3", "i"),
            "2 pods run the sidecar of revision 1-19-3; revision 1-30-3 injects now"
        );
        assert_eq!(
            Sidecar::Missing.describe(1, "r", "i"),
            "1 pod runs without a sidecar"
        );
    }
}
