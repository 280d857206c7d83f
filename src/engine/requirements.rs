//! Checking what the platform needs from the cluster without creating it
//! ([`vz_providers::requirements`]): each object must exist and, by its kind's readiness rule, be
//! ready — and must not be one `vz` made itself, which this configuration no longer wants and the
//! plan would therefore delete (Istio installed by `vz`, then `install: false`). Read in parallel,
//! one request each; a plan stops at the first unmet one, naming it.

use anyhow::Result;
use futures::future::try_join_all;
use vz_providers::Requirement;
use vz_state::State;

use super::EngineError;
use crate::cluster::ready::{Readiness, readiness};
use crate::cluster::{Cluster, ObjectRef};

/// Fail with [`EngineError::Unmet`] unless every requirement is met.
pub async fn check(cluster: &Cluster, requirements: &[Requirement], state: &State) -> Result<()> {
    let refs: Vec<ObjectRef> = requirements
        .iter()
        .map(|r| ObjectRef {
            api_version: r.api_version.to_string(),
            kind: r.kind.to_string(),
            namespace: r.namespace.clone(),
            name: r.name.to_string(),
        })
        .collect();
    for (req, r) in requirements.iter().zip(&refs) {
        let recorded = state.objects.iter().find(|o| {
            o.api_version == r.api_version
                && o.kind == r.kind
                && o.namespace == r.namespace
                && o.name == r.name
        });
        if let Some(o) = recorded {
            return Err(EngineError::Unmet {
                object: r.to_string(),
                problem: format!(
                    "was made by vz (the state records it as {}), and this configuration no longer wants it, so the plan would delete it",
                    o.address
                ),
                why: format!(
                    "{}; to hand what vz installed over instead, forget it first: `vz state rm` each of its addresses (`vz state list`)",
                    req.why
                ),
            }
            .into());
        }
    }
    let live = try_join_all(
        requirements
            .iter()
            .zip(&refs)
            .map(|(req, r)| candidates(cluster, req, r)),
    )
    .await?;
    for ((req, r), found) in requirements.iter().zip(&refs).zip(live) {
        let states: Vec<Readiness> = found.iter().map(readiness).collect();
        if states.contains(&Readiness::Ready) {
            let missing: Vec<&String> = req
                .keys
                .iter()
                .filter(|k| {
                    found
                        .iter()
                        .all(|o| o.pointer(&format!("/data/{k}")).is_none())
                })
                .collect();
            if let Some(k) = missing.first() {
                return Err(EngineError::Unmet {
                    object: r.to_string(),
                    problem: format!("holds no `{k}`"),
                    why: req.why.to_string(),
                }
                .into());
            }
            continue;
        }
        let problem = match states.first() {
            Some(Readiness::Waiting(w)) => format!("is not ready (waiting for {w})"),
            _ => "does not exist".to_string(),
        };
        let object = match req.selector {
            Some(s) => format!("{r} (or any {} labelled {s} in its namespace)", r.kind),
            None => r.to_string(),
        };
        return Err(EngineError::Unmet {
            object,
            problem,
            why: req.why.to_string(),
        }
        .into());
    }
    Ok(())
}

/// The live objects that could meet `req`: the one named, or those its selector finds in its
/// namespace (one list request).
async fn candidates(
    cluster: &Cluster,
    req: &Requirement,
    r: &ObjectRef,
) -> Result<Vec<serde_json::Value>> {
    let Some(selector) = req.selector else {
        return Ok(cluster.get(r).await?.into_iter().collect());
    };
    let all = cluster
        .list_labelled(req.api_version, req.kind, selector)
        .await?;
    Ok(all
        .into_iter()
        .filter(|o| {
            o.pointer("/metadata/namespace")
                .and_then(serde_json::Value::as_str)
                == req.namespace.as_deref()
        })
        .collect())
}
