//! ExternalDNS's final sync: before ExternalDNS is deleted, it is run once more so that the records
//! of the sources deleted before it (the NGINX Service, the Ingresses, Istio Gateways) are removed
//! from the zone. Verrazzano's users found records leaked when ExternalDNS went before it had
//! synced; here its step comes before its sources', so destroy deletes them first, and then:
//!
//! 1. the sources this run deleted are waited for until they are gone, even with `--wait=false`
//!    (ExternalDNS keeps the record of a source it still sees);
//! 2. the running ExternalDNS is scaled to 0, so that two of them never change the zone at once;
//! 3. a Job runs its pod template once with `--once` (it exits 0 only when every change went
//!    through) and is waited for, bounded by the run's timeout;
//! 4. on success the Job is deleted and destroy goes on; on failure destroy stops with the pod's
//!    last words (its log tail, through `FallbackToLogsOnError`) and ExternalDNS stays, scaled to 0,
//!    so that running destroy again tries again. `--leave-dns-records` skips all this.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::time::Instant;
use vz_providers::Manifest;
use vz_providers::external_dns::{FINAL_SYNC_JOB, NAME, final_sync_job};
use vz_providers::names::VERRAZZANO_SYSTEM;

use async_trait::async_trait;
use vz_providers::external_dns::STEP;

use super::{Context, Lifecycle};
use crate::cluster::{Cluster, ObjectRef};
use crate::engine::plan::{Action, Change};
use crate::interrupt::Interrupt;
use crate::output::Progress;

/// The field manager of the scale-down.
const MANAGER: &str = "vz-final-sync";

/// ExternalDNS's lifecycle: its final sync before its Deployment is deleted.
pub struct FinalSync;

#[async_trait]
impl Lifecycle for FinalSync {
    async fn before_delete(
        &self,
        cx: &Context<'_>,
        step: &str,
        changes: &[&Change],
        deleted: &[ObjectRef],
    ) -> Result<()> {
        let goes = step == STEP
            && changes
                .iter()
                .any(|c| c.action == Action::Delete && c.object.kind == "Deployment");
        if !goes {
            return Ok(());
        }
        if cx.leave_dns_records {
            cx.progress.line(
                "external-dns: no final sync (--leave-dns-records): the records it made stay in the zone",
            );
            return Ok(());
        }
        (cx.may_continue)("running ExternalDNS's final sync")?;
        let sources: Vec<ObjectRef> = deleted.iter().filter(|o| is_source(o)).cloned().collect();
        Sync {
            cluster: cx.cluster,
            deadline: cx.deadline,
            interrupt: cx.interrupt,
            progress: cx.progress,
        }
        .run(&sources)
        .await
    }
}

/// What the final sync works with.
struct Sync<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// When the run must be over.
    pub deadline: Instant,
    /// Ctrl-C.
    pub interrupt: &'a Interrupt,
    /// What the user sees.
    pub progress: &'a Progress,
}

fn object(api_version: &str, kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: Some(VERRAZZANO_SYSTEM.into()),
        name: name.into(),
    }
}

/// Whether a deleted object is one ExternalDNS makes records for.
pub fn is_source(r: &ObjectRef) -> bool {
    matches!(
        (r.api_version.as_str(), r.kind.as_str()),
        ("v1", "Service") | ("networking.k8s.io/v1", "Ingress")
    ) || (r.kind == "Gateway" && r.api_version.starts_with("networking.istio.io/"))
}

/// The TXT owner id in ExternalDNS's arguments, if any.
pub fn owner_id(deployment: &Value) -> Option<&str> {
    deployment
        .pointer("/spec/template/spec/containers/0/args")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--txt-owner-id="))
}

impl Sync<'_> {
    /// Run the final sync, after waiting for `sources` (deleted by this run) to be gone.
    pub async fn run(&self, sources: &[ObjectRef]) -> Result<()> {
        let started = std::time::Instant::now();
        let deployment_ref = object("apps/v1", "Deployment", NAME);
        let Some(deployment) = self.cluster.get(&deployment_ref).await? else {
            self.progress.line(&format!(
                "external-dns: no final sync, its Deployment {deployment_ref} is gone: records it made may remain in the zone"
            ));
            return Ok(());
        };
        let owner = owner_id(&deployment).unwrap_or("?").to_string();
        for s in sources {
            self.progress.status(&format!(
                "waiting for {s} to be gone before ExternalDNS syncs"
            ));
            self.cluster
                .wait_gone(s, None, self.deadline, self.interrupt)
                .await?;
        }
        self.stop_running(&deployment_ref).await?;
        let job_ref = object("batch/v1", "Job", FINAL_SYNC_JOB);
        // One left by an interrupted run would hold the name.
        self.cluster
            .delete_and_wait(&job_ref, None, self.deadline, self.interrupt)
            .await?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let job = final_sync_job(
            &deployment,
            i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        )
        .ok_or_else(|| {
            anyhow!("{deployment_ref} has no container arguments to run a final sync with")
        })?;
        self.cluster
            .apply(&Manifest::from_value(job), false)
            .await?;
        self.progress.status(&format!(
            "waiting for ExternalDNS's final sync ({job_ref}) to remove the records of owner {owner}"
        ));
        let outcome = self.wait_job(&job_ref).await;
        if let Err(e) = outcome {
            return Err(e.context(format!(
                "ExternalDNS could not remove the records of this platform (TXT owner id {owner}): its final sync ({job_ref}) did not succeed. ExternalDNS is kept, scaled to 0, so that running destroy again tries again once the cause is fixed (`kubectl -n {VERRAZZANO_SYSTEM} logs job/{FINAL_SYNC_JOB}` shows its log); `--leave-dns-records` deletes it and leaves the records"
            )));
        }
        self.cluster
            .delete_and_wait(&job_ref, None, self.deadline, self.interrupt)
            .await?;
        self.progress.line(&format!(
            "external-dns: final sync done in {:.1}s: records of the deleted sources removed (owner {owner})",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Scale ExternalDNS to 0 and wait until its pods are gone.
    async fn stop_running(&self, deployment_ref: &ObjectRef) -> Result<()> {
        let mut live = self
            .cluster
            .merge_patch(deployment_ref, &json!({"spec": {"replicas": 0}}), MANAGER)
            .await?;
        let mut pause = Duration::from_millis(100);
        loop {
            let generation = live.pointer("/metadata/generation").and_then(Value::as_i64);
            let observed = live
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64);
            let running = live
                .pointer("/status/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if observed >= generation && running == 0 {
                return Ok(());
            }
            self.pause(&mut pause, || {
                format!("waiting for {deployment_ref} to stop its pods ({running} left)")
            })
            .await?;
            live = self
                .cluster
                .get(deployment_ref)
                .await?
                .ok_or_else(|| anyhow!("{deployment_ref} was deleted by someone else"))?;
        }
    }

    /// Wait until the Job completes; an error says how it failed.
    async fn wait_job(&self, job_ref: &ObjectRef) -> Result<()> {
        let mut pause = Duration::from_millis(200);
        loop {
            let job = self
                .cluster
                .get(job_ref)
                .await?
                .ok_or_else(|| anyhow!("{job_ref} was deleted by someone else"))?;
            match job_outcome(&job) {
                Some(Ok(())) => return Ok(()),
                Some(Err(why)) => bail!("{why}{}", self.pods_say().await),
                None => {}
            }
            if let Err(e) = self
                .pause(&mut pause, || format!("waiting for {job_ref} to finish"))
                .await
            {
                bail!("{e:#}{}", self.pods_say().await);
            }
        }
    }

    /// What the Job's newest pod says: how it ended, with its log tail (or what it waits for).
    async fn pods_say(&self) -> String {
        let pods = self
            .cluster
            .list_labelled("v1", "Pod", &format!("job-name={FINAL_SYNC_JOB}"))
            .await
            .unwrap_or_default();
        let created = |p: &&Value| {
            p.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        pods.iter()
            .filter(|p| {
                p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(VERRAZZANO_SYSTEM)
            })
            .max_by_key(created)
            .and_then(pod_says)
            .map(|s| format!("; {s}"))
            .unwrap_or_default()
    }

    /// Sleep `pause` (growing up to 2 s), unless the deadline or Ctrl-C comes first.
    async fn pause(&self, pause: &mut Duration, doing: impl FnOnce() -> String) -> Result<()> {
        if Instant::now() + *pause > self.deadline {
            bail!("timed out {}", doing());
        }
        tokio::select! {
            () = tokio::time::sleep(*pause) => {}
            () = self.interrupt.tripped() => bail!("interrupted while {}", doing()),
        }
        *pause = (*pause * 2).min(Duration::from_secs(2));
        Ok(())
    }
}

/// `Some(Ok)` when a Job completed, `Some(Err(why))` when it failed, `None` while it runs.
pub fn job_outcome(job: &Value) -> Option<Result<(), String>> {
    let conditions = job.pointer("/status/conditions")?.as_array()?;
    let holds = |kind: &str| {
        conditions.iter().find(|c| {
            c.get("type").and_then(Value::as_str) == Some(kind)
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
    };
    if holds("Complete").is_some() {
        return Some(Ok(()));
    }
    let failed = holds("Failed")?;
    let text = |k: &str| failed.get(k).and_then(Value::as_str).unwrap_or_default();
    Some(Err(match (text("reason"), text("message")) {
        ("DeadlineExceeded", _) => {
            "the Job had not finished when the run's time was up (DeadlineExceeded; a longer `--timeout` gives it more)".to_string()
        }
        ("", _) => "the Job failed".to_string(),
        (reason, "") => format!("the Job failed ({reason})"),
        (reason, message) => format!("the Job failed ({reason}: {message})"),
    }))
}

/// How a pod of the Job is doing, in one line: its container's end (exit code, reason, the log
/// tail the kubelet keeps as its message) or what it waits for.
pub fn pod_says(pod: &Value) -> Option<String> {
    let name = pod.pointer("/metadata/name")?.as_str()?;
    let state = pod.pointer("/status/containerStatuses/0/state")?;
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    if let Some(t) = state.get("terminated") {
        let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(-1);
        let mut line = format!("pod {name} exited with {code}");
        if !text(t, "reason").is_empty() {
            line.push_str(&format!(" ({})", text(t, "reason")));
        }
        let message = text(t, "message");
        if !message.is_empty() {
            let tail: Vec<&str> = message.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            line.push_str(&format!(": {}", tail.join(" | ")));
        }
        return Some(line);
    }
    if let Some(w) = state.get("waiting") {
        return Some(
            format!(
                "pod {name} is waiting: {} {}",
                text(w, "reason"),
                text(w, "message")
            )
            .trim_end()
            .to_string(),
        );
    }
    Some(format!("pod {name} is running"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_done_when_complete_and_says_why_when_failed() {
        assert_eq!(job_outcome(&json!({"status": {}})), None);
        let done = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(job_outcome(&done), Some(Ok(())));
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}});
        assert_eq!(
            job_outcome(&failed),
            Some(Err("the Job failed (BackoffLimitExceeded: Job has reached the specified backoff limit)".into()))
        );
        let pending = json!({"status": {"conditions": [{"type": "Failed", "status": "False"}]}});
        assert_eq!(job_outcome(&pending), None);
    }

    #[test]
    fn a_pod_says_how_it_ended_with_its_last_log_lines() {
        let pod = json!({"metadata": {"name": "external-dns-final-sync-x"}, "status": {"containerStatuses": [
            {"state": {"terminated": {"exitCode": 1, "reason": "Error",
              "message": "a\nb\nc\nd\ne\ntime=\"...\" level=fatal msg=\"oci: 401 NotAuthenticated\"\n"}}}]}});
        assert_eq!(
            pod_says(&pod).as_deref(),
            Some(
                "pod external-dns-final-sync-x exited with 1 (Error): b | c | d | e | time=\"...\" level=fatal msg=\"oci: 401 NotAuthenticated\""
            )
        );
        let waiting = json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [
            {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}});
        assert_eq!(
            pod_says(&waiting).as_deref(),
            Some("pod p is waiting: ImagePullBackOff Back-off pulling image")
        );
    }

    #[test]
    fn sources_are_services_ingresses_and_istio_gateways() {
        let r = |v: &str, k: &str| ObjectRef {
            api_version: v.into(),
            kind: k.into(),
            namespace: Some("x".into()),
            name: "y".into(),
        };
        assert!(is_source(&r("v1", "Service")));
        assert!(is_source(&r("networking.k8s.io/v1", "Ingress")));
        assert!(is_source(&r("networking.istio.io/v1beta1", "Gateway")));
        assert!(!is_source(&r("v1", "ConfigMap")));
    }

    #[test]
    fn the_owner_id_is_read_from_the_arguments() {
        let d = json!({"spec": {"template": {"spec": {"containers": [{"args": ["--events", "--txt-owner-id=vz-dev"]}]}}}});
        assert_eq!(owner_id(&d), Some("vz-dev"));
        assert_eq!(owner_id(&json!({})), None);
    }
}
