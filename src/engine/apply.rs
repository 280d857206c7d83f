//! Carrying out a plan: apply and delete objects step by step along the DAG, recording the state.
//!
//! Steps run as soon as their dependencies are done, several at once; the objects of one step are
//! applied concurrently. The state is written after every step, so a run that is killed leaves a
//! state that matches what exists. Deletions walk the graph in reverse (contents before the
//! namespaces that hold them) and wait until each object is really gone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use vz_state::{LocalBackend, ObjectRecord, State};

use crate::cluster::{Cluster, Deleted};
use crate::engine::graph::{StepGraph, StepNode};
use crate::engine::plan::{Action, Change, Plan};
use crate::output::Progress;

/// Knobs of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Steps (and objects within a step) in flight at once.
    pub parallelism: usize,
    /// Bound on the whole run.
    pub timeout: Duration,
}

/// Apply `plan` (made from the steps of `graph`), recording progress in `state` through `backend`.
pub async fn apply(
    cluster: &Cluster,
    plan: &Plan,
    graph: &StepGraph,
    backend: &LocalBackend,
    state: State,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<State> {
    let run = Run::new(cluster, backend, state, opts, progress);
    run.forget(plan).await?;
    let applied = graph
        .walk(false, opts.parallelism, |step| {
            let run = &run;
            let changes: Vec<&Change> = plan
                .changes
                .iter()
                .filter(|c| c.step == step && c.desired.is_some())
                .collect();
            let depends_on = graph.dependencies(&step);
            async move { run.apply_step(&step, changes, &depends_on).await }
        })
        .await;
    applied.map_err(combine)?;
    run.delete_all(plan).await?;
    Ok(run.into_state().await)
}

/// Delete everything `plan` (a destroy plan) lists, recording progress in `state`.
pub async fn destroy(
    cluster: &Cluster,
    plan: &Plan,
    backend: &LocalBackend,
    state: State,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<State> {
    let run = Run::new(cluster, backend, state, opts, progress);
    run.forget(plan).await?;
    run.delete_all(plan).await?;
    Ok(run.into_state().await)
}

struct Run<'a> {
    cluster: &'a Cluster,
    backend: &'a LocalBackend,
    state: Arc<Mutex<State>>,
    opts: &'a RunOptions,
    progress: &'a Progress,
    deadline: Instant,
}

impl<'a> Run<'a> {
    fn new(
        cluster: &'a Cluster,
        backend: &'a LocalBackend,
        state: State,
        opts: &'a RunOptions,
        progress: &'a Progress,
    ) -> Self {
        Run {
            cluster,
            backend,
            state: Arc::new(Mutex::new(state)),
            opts,
            progress,
            deadline: Instant::now() + opts.timeout,
        }
    }

    async fn into_state(self) -> State {
        self.state.lock().await.clone()
    }

    /// Drop from the state the objects the plan found already gone.
    async fn forget(&self, plan: &Plan) -> Result<()> {
        let mut s = self.state.lock().await;
        let mut dropped = false;
        for c in plan.changes.iter().filter(|c| c.action == Action::Forget) {
            s.remove(&c.address);
            dropped = true;
            self.progress.line(&format!(
                "{}: no longer ours; dropped from the state",
                c.address
            ));
        }
        if dropped {
            self.backend.write(&mut s)?;
        }
        Ok(())
    }

    async fn apply_step(
        &self,
        step: &str,
        changes: Vec<&Change>,
        depends_on: &[String],
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let results: Vec<Result<ObjectRecord>> =
            stream::iter(changes.iter().map(|c| self.apply_one(c, depends_on)))
                .buffer_unordered(self.opts.parallelism.max(1))
                .collect()
                .await;
        let mut errors = Vec::new();
        let mut changed = 0usize;
        {
            let mut s = self.state.lock().await;
            for r in results {
                match r {
                    Ok(record) => {
                        if s.get(&record.address) != Some(&record) {
                            changed += 1;
                        }
                        s.upsert(record);
                    }
                    Err(e) => errors.push(e),
                }
            }
            if changed > 0 {
                self.backend.write(&mut s)?;
            }
        }
        if !errors.is_empty() {
            return Err(combine(errors));
        }
        let acted = changes.iter().filter(|c| c.action != Action::NoOp).count();
        if acted > 0 {
            self.progress.line(&format!(
                "{step}: {acted} object(s) applied in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    async fn apply_one(&self, c: &Change, depends_on: &[String]) -> Result<ObjectRecord> {
        let m = c
            .desired
            .as_ref()
            .context("internal: no desired object to apply")?;
        let uid = match c.action {
            Action::NoOp => c.live_uid.clone(),
            _ => {
                if Instant::now() > self.deadline {
                    return Err(anyhow!(
                        "timed out before applying {} ({})",
                        c.object,
                        c.address
                    ));
                }
                let applied = self.cluster.apply(m, false).await?;
                let verb = if c.action == Action::Create {
                    "created"
                } else {
                    "updated"
                };
                self.progress.line(&format!("{}: {verb}", c.address));
                applied
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }
        };
        Ok(ObjectRecord {
            address: c.address.clone(),
            step: c.step.clone(),
            api_version: m.api_version.clone(),
            kind: m.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: uid.unwrap_or_default(),
            manifest_sha256: m.sha256(),
            depends_on: depends_on.to_vec(),
        })
    }

    /// Carry out the plan's deletions, in reverse dependency order of the recorded steps.
    async fn delete_all(&self, plan: &Plan) -> Result<()> {
        let changes: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let records = self.state.lock().await.objects.clone();
        let graph = StepGraph::build(&record_nodes(&records))?;
        let changes = &changes;
        let walked = graph
            .walk(true, self.opts.parallelism, |step| {
                let mine: Vec<&Change> =
                    changes.iter().copied().filter(|c| c.step == step).collect();
                async move { self.delete_step(&step, mine).await }
            })
            .await;
        walked.map_err(combine)
    }

    async fn delete_step(&self, step: &str, changes: Vec<&Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let results: Vec<(String, Result<()>)> = stream::iter(
            changes
                .iter()
                .map(|c| async move { (c.address.clone(), self.delete_one(c).await) }),
        )
        .buffer_unordered(self.opts.parallelism.max(1))
        .collect()
        .await;
        let mut errors = Vec::new();
        {
            let mut s = self.state.lock().await;
            for (address, r) in results {
                match r {
                    Ok(()) => {
                        s.remove(&address);
                    }
                    Err(e) => errors.push(e),
                }
            }
            self.backend.write(&mut s)?;
        }
        if !errors.is_empty() {
            return Err(combine(errors));
        }
        self.progress.line(&format!(
            "{step}: {} object(s) deleted in {:.1}s",
            changes.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    async fn delete_one(&self, c: &Change) -> Result<()> {
        match self.cluster.delete(&c.object).await? {
            Deleted::AlreadyGone => Ok(()),
            Deleted::Started { uid } => {
                let uid = uid.or_else(|| c.live_uid.clone());
                self.cluster
                    .wait_gone(&c.object, uid.as_deref(), self.deadline)
                    .await?;
                self.progress.line(&format!("{}: deleted", c.address));
                Ok(())
            }
        }
    }
}

/// Graph nodes for the steps recorded in a state: declared dependencies plus namespace rules.
pub fn record_nodes(records: &[ObjectRecord]) -> Vec<StepNode> {
    let mut nodes: Vec<StepNode> = Vec::new();
    for r in records {
        let idx = match nodes.iter().position(|n| n.id == r.step) {
            Some(i) => i,
            None => {
                nodes.push(StepNode {
                    id: r.step.clone(),
                    depends_on: vec![],
                    creates_namespaces: BTreeSet::new(),
                    uses_namespaces: BTreeSet::new(),
                });
                nodes.len() - 1
            }
        };
        let n = &mut nodes[idx];
        for d in &r.depends_on {
            if !n.depends_on.contains(d) {
                n.depends_on.push(d.clone());
            }
        }
        if r.kind == "Namespace" && r.api_version == "v1" {
            n.creates_namespaces.insert(r.name.clone());
        }
        if let Some(ns) = &r.namespace {
            n.uses_namespaces.insert(ns.clone());
        }
    }
    // Dependencies on steps with nothing recorded any more do not constrain deletion.
    let known: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    for n in &mut nodes {
        n.depends_on.retain(|d| known.contains(d));
    }
    nodes
}

/// One error from several, each on its own line.
fn combine(mut errors: Vec<anyhow::Error>) -> anyhow::Error {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("  - {e:#}")).collect();
    anyhow!("{} operations failed:\n{}", errors.len(), lines.join("\n"))
}
