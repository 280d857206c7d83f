//! Workloads a plan restarts: Deployments, StatefulSets and DaemonSets that `vz` does not own but
//! whose pods must be made again, as `kubectl rollout restart` does (a new
//! `kubectl.kubernetes.io/restartedAt` in the pod template), so that something their pods get at
//! creation is given to them anew — an Istio sidecar, from the revision the mesh now points at.
//!
//! Which workloads a plan restarts is decided outside the engine (the Istio lifecycle lists the
//! pods whose sidecars are missing or stale, [`crate::lifecycle::workloads`]); the engine restarts
//! each at its step, after the step's own objects, waits for its rollout, and when an apply is
//! rolled back restarts them once more, after everything else is put back, so that their pods are
//! made again by what the rollback restored.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::{Cluster, ObjectRef};
use crate::interrupt::Interrupt;

/// The annotation of the pod template a restart sets, as `kubectl rollout restart` does.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// The field manager of restarts.
pub const RESTART_MANAGER: &str = "vz-restart";

/// One workload a plan restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// The step after whose objects it is restarted.
    pub step: String,
    /// The workload: a Deployment, StatefulSet or DaemonSet.
    pub workload: ObjectRef,
    /// Why, for the plan: what its pods run, and what they will.
    pub why: String,
    /// How many of its pods need it.
    pub pods: usize,
}

/// Restart `r`'s workload and wait (until `deadline`) for its rollout: every pod made again from
/// the new template and available, the old ones gone.
pub async fn restart(
    cluster: &Cluster,
    workload: &ObjectRef,
    deadline: Instant,
    interrupt: &Interrupt,
) -> Result<()> {
    restart_only(cluster, workload).await?;
    // Read again rather than trust the patch's answer: its status is the old rollout's.
    cluster
        .wait_ready(workload, None, deadline, interrupt)
        .await
        .with_context(|| format!("{workload} was restarted, but its rollout did not complete"))?;
    Ok(())
}

/// Restart `workload` without waiting for its rollout (`--wait=false`).
pub async fn restart_only(cluster: &Cluster, workload: &ObjectRef) -> Result<()> {
    let now = crate::lifecycle::certificates::date(crate::lifecycle::certificates::now());
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
    cluster
        .merge_patch(workload, &patch, RESTART_MANAGER)
        .await
        .with_context(|| format!("cannot restart {workload}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_reads_back_as_it_was_saved() {
        let r = Restart {
            step: "istio.workloads".into(),
            workload: ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "orders".into(),
            },
            why: "2 pods run without a sidecar".into(),
            pods: 2,
        };
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Restart>(&text).ok(), Some(r));
    }
}
