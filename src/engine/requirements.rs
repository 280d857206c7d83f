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
use super::ready::{Readiness, readiness};
use crate::cluster::{Cluster, ObjectRef};

/// Fail with [`EngineError::Unmet`] unless every requirement is met.
pub async fn check(cluster: &Cluster, requirements: &[Requirement], state: &State) -> Result<()> {
    let refs: Vec<ObjectRef> = requirements
        .iter()
        .map(|r| ObjectRef {
            api_version: r.api_version.to_string(),
            kind: r.kind.to_string(),
            namespace: r.namespace.map(str::to_string),
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
    let live = try_join_all(refs.iter().map(|r| cluster.get(r))).await?;
    for ((req, r), obj) in requirements.iter().zip(&refs).zip(live) {
        let problem = match obj.as_ref().map(readiness) {
            None => "does not exist".to_string(),
            Some(Readiness::Waiting(w)) => format!("is not ready (waiting for {w})"),
            Some(Readiness::Ready) => continue,
        };
        return Err(EngineError::Unmet {
            object: r.to_string(),
            problem,
            why: req.why.to_string(),
        }
        .into());
    }
    Ok(())
}
