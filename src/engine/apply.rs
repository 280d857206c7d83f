//! Carrying out a plan: apply and delete objects step by step along the DAG, recording the state,
//! and rolling back on failure.
//!
//! Steps run as soon as their dependencies are done (and ready), several at once; the objects of one
//! step are applied concurrently, then waited for by their kind's readiness rule. The state is written
//! after every step, so a run that is killed leaves a state that matches what exists. Deletions walk
//! the graph in reverse (contents before the namespaces that hold them) and wait until each object is
//! really gone.
//!
//! Every change is journaled with what undoes it: a created object is deleted, an updated one is put
//! back exactly as it was read just before the change (content and managed fields), a deleted one is
//! re-created. When apply fails — an API error, an admission webhook's denial, an invalid object, a
//! readiness timeout, or Ctrl-C — the journal is undone in reverse, and the state is written back to
//! what it was before the run. An undo that fails is reported and the state records the object as it
//! really is, so nothing is lost track of.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use vz_providers::manifest::FillTarget;
use vz_providers::{Manifest, Outputs, Ownership, Step};
use vz_state::{ObjectRecord, State, Store, Unfinished};

use crate::cluster::{Cluster, ClusterError, Deleted, ObjectRef, only_vz_manages};
use crate::engine::graph::{StepGraph, StepNode};
use crate::engine::plan::{Action, Cause, Change, Plan, decide, unrecorded_record};
use crate::engine::recorder::Recorder;
use crate::engine::restart::{self, Restart};
use crate::engine::rollback::{Entry, Undo, Undone, describe_undo, settle};
use crate::engine::{Desired, EngineError};
use crate::engine::{order, outputs};
use crate::interrupt::Interrupt;
use crate::lifecycle;
use crate::output::Progress;

/// Knobs of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Steps (and objects within a step) in flight at once.
    pub parallelism: usize,
    /// Bound on the whole run (rollback has a budget of its own).
    pub timeout: Duration,
    /// Wait for each object's readiness before its dependents start.
    pub wait: bool,
    /// Undo this run's changes when it fails.
    pub rollback: bool,
    /// Ctrl-C.
    pub interrupt: Interrupt,
    /// Delete ExternalDNS without its final sync, leaving the records it made.
    pub leave_dns_records: bool,
}

/// How long a kind may lag in discovery after its CRD is established.
const DISCOVERY_PATIENCE: Duration = Duration::from_secs(30);

/// The least time a rollback gets, however little of `--timeout` is left.
const MIN_ROLLBACK_BUDGET: Duration = Duration::from_secs(300);

/// Where and how a run works: the cluster, the state backend, the knobs and the progress display.
#[derive(Clone, Copy)]
pub struct Session<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// Where the state is written after every step.
    pub store: &'a Store,
    /// The knobs.
    pub opts: &'a RunOptions,
    /// What the user sees.
    pub progress: &'a Progress,
}

/// Apply `plan` (made from `desired`, with the step `outputs` known then), starting from `state`.
pub async fn apply(
    session: Session<'_>,
    plan: &Plan,
    desired: &Desired,
    outputs: Outputs,
    state: State,
) -> Result<State> {
    let graph = &desired.graph;
    let opts = session.opts;
    let original = state.clone();
    let run = Run::new(session, state, Some(desired), outputs, plan.refreshed);
    let outcome = async {
        run.begin("apply").await?;
        run.forget(plan).await?;
        run.take_back(plan).await?;
        let mut by_step: HashMap<&str, Vec<&Change>> = HashMap::new();
        for c in plan.changes.iter().filter(|c| c.desired.is_some()) {
            by_step.entry(c.step.as_str()).or_default().push(c);
        }
        let by_step = &by_step;
        let applied = graph
            .walk(false, opts.parallelism, |step| {
                let run = &run;
                let changes = by_step.get(step.as_str()).cloned().unwrap_or_default();
                let restarts: Vec<&Restart> =
                    plan.restarts.iter().filter(|r| r.step == step).collect();
                let depends_on = graph.dependencies(&step);
                async move {
                    run.apply_step(&step, changes, &depends_on).await?;
                    run.restart_step(&step, restarts).await
                }
            })
            .await;
        applied.map_err(combine)?;
        run.delete_all(plan).await
    }
    .await;
    // Whatever happened, the stored state takes every change recorded so far.
    let outcome = match outcome {
        Ok(()) => run.finish().await,
        Err(e) => Err(e),
    };
    let Err(failure) = outcome else {
        return Ok(run.into_state());
    };
    if !opts.rollback {
        // The run ends here, and the state records what exists.
        let flushed = run.finish().await;
        let s = run.into_state();
        let failure = match flushed {
            Ok(()) => failure,
            Err(e) => failure.context(format!("and the state could not be written: {e:#}")),
        };
        return Err(ApplyFailed {
            report: format!(
                "Rollback is off: the changes made so far are kept, and the state records them ({} objects, serial {}).",
                s.objects.len(),
                s.serial
            ),
            failure,
            changes_remain: true,
        }
        .into());
    }
    let (report, complete) = run.rollback(original).await;
    Err(ApplyFailed {
        failure,
        report,
        changes_remain: !complete,
    }
    .into())
}

/// An apply that failed, with what its rollback did.
#[derive(Debug)]
pub struct ApplyFailed {
    /// What failed.
    pub failure: anyhow::Error,
    /// What was rolled back (or kept), for the user.
    pub report: String,
    /// Whether changes of the run remain in the cluster (rollback off, or incomplete).
    pub changes_remain: bool,
}

impl std::fmt::Display for ApplyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}\n\n{}", self.failure, self.report)
    }
}

impl std::error::Error for ApplyFailed {}

/// Delete everything `plan` (a destroy plan) lists, starting from `state`. A destroy that fails
/// stops where it is (it is not rolled back); the state records what is left.
pub async fn destroy(session: Session<'_>, plan: &Plan, state: State) -> Result<State> {
    let run = Run::new(session, state, None, Outputs::default(), plan.refreshed);
    let outcome = async {
        run.begin("destroy").await?;
        run.forget(plan).await?;
        run.take_back(plan).await?;
        run.delete_all(plan).await
    }
    .await;
    let flushed = run.finish().await;
    outcome?;
    flushed?;
    Ok(run.into_state())
}

struct Run<'a> {
    /// The session's connection, remembering the issuers and sources of certificates it read.
    cluster: Cluster,
    /// What is applied (for rendering again once outputs are known); `None` for destroy.
    desired: Option<&'a Desired>,
    /// The step outputs known so far.
    known: Mutex<Known>,
    /// The state, and its writes.
    recorder: Recorder<'a>,
    /// What the run did, for its rollback and its later steps.
    ledger: Mutex<Ledger>,
    opts: &'a RunOptions,
    progress: &'a Progress,
    deadline: Instant,
    steps_started: AtomicUsize,
    /// Whether the plan read the cluster: an object it found absent is then not read again before
    /// it is created.
    planned_live: bool,
    /// A change got no answer (it may be made later still, after a rollback looked for it).
    unanswered: AtomicBool,
}

/// The step outputs a run knows. Locked only between awaits.
struct Known {
    /// Step outputs known so far.
    outputs: Outputs,
    /// The steps rendered with the outputs known at the time, for the steps whose values were
    /// unknown when planned: rendered again only when an output changed, not for each such step.
    rendered: Option<(Outputs, Arc<Vec<Step>>)>,
}

/// What a run did so far. Locked only between awaits.
#[derive(Default)]
struct Ledger {
    /// Every change, with what undoes it.
    journal: Vec<Entry>,
    /// Every object whose deletion this run started.
    deleted: Vec<ObjectRef>,
    /// Namespaces being deleted, waited for once every step is done: address, object, uid.
    later: Vec<(String, ObjectRef, Option<String>)>,
    /// Workloads this run restarted: a rollback restarts them again once the rest is undone.
    restarted: Vec<ObjectRef>,
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        // What comes after the run (reading outputs, a final plan) is not bound by its deadline.
        self.cluster.requests_until(None, None);
    }
}

/// An object as a create, update or replace left it.
struct Applied {
    /// The object as the API server returned it.
    object: Value,
    /// Whether the plan found it absent but someone else created it meanwhile: `vz` took it over.
    taken: bool,
}

/// How a deletion ended.
enum Deletion {
    /// The object is gone (or released): it leaves the state.
    Done,
    /// A namespace being deleted: waited for, and dropped from the state, at the end.
    Later,
}

/// How many deletions are waited for at once (each a watch, which costs the API server little).
const WAITS_AT_ONCE: usize = 64;

impl<'a> Run<'a> {
    fn new(
        session: Session<'a>,
        state: State,
        desired: Option<&'a Desired>,
        outputs: Outputs,
        planned_live: bool,
    ) -> Self {
        let deadline = Instant::now() + session.opts.timeout;
        // Requests that fail transiently are retried until the run's time is up, and no longer.
        session
            .cluster
            .requests_until(Some(deadline), Some(&session.opts.interrupt));
        Run {
            cluster: session.cluster.remembering(),
            desired,
            known: Mutex::new(Known {
                outputs,
                rendered: None,
            }),
            recorder: Recorder::new(session.store, state),
            ledger: Mutex::default(),
            opts: session.opts,
            progress: session.progress,
            deadline,
            steps_started: AtomicUsize::new(0),
            planned_live,
            unanswered: AtomicBool::new(false),
        }
    }

    /// What the run did so far.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The step outputs known so far.
    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn begin(&self, operation: &str) -> Result<()> {
        self.recorder.begin(operation).await
    }

    async fn finish(&self) -> Result<()> {
        self.recorder.finish().await
    }

    /// Record the objects a run that did not finish left unrecorded (found by their labels), so
    /// that they are deleted like any other: in order, and still known if this run stops too.
    async fn take_back(&self, plan: &Plan) -> Result<()> {
        self.recorder
            .change(|s| {
                let mut taken = false;
                for c in plan.changes.iter().filter(|c| {
                    c.cause == Cause::Recovered
                        && matches!(c.action, Action::Delete | Action::Release)
                }) {
                    if s.get(&c.address).is_some() {
                        continue;
                    }
                    s.upsert(unrecorded_record(
                        &c.address,
                        &c.object,
                        c.live_uid.clone(),
                        c.action == Action::Release,
                    ));
                    taken = true;
                }
                taken
            })
            .await
    }

    /// The state the run leaves.
    fn into_state(self) -> State {
        self.recorder.snapshot()
    }

    fn check_continue(&self, doing: &str) -> Result<()> {
        if self.opts.interrupt.is_set() {
            return Err(EngineError::Interrupted {
                doing: doing.to_string(),
            }
            .into());
        }
        if Instant::now() > self.deadline {
            return Err(EngineError::Timeout {
                secs: self.opts.timeout.as_secs(),
                doing: doing.to_string(),
            }
            .into());
        }
        Ok(())
    }

    fn journal(&self, seq: usize, c: &Change, undo: Undo) {
        self.ledger().journal.push(Entry {
            seq,
            address: c.address.clone(),
            object: c.object.clone(),
            undo,
        });
    }

    /// Drop from the state the objects the plan found already gone.
    async fn forget(&self, plan: &Plan) -> Result<()> {
        self.recorder
            .change(|s| {
                let mut dropped = false;
                for c in plan.changes.iter().filter(|c| c.action == Action::Forget) {
                    s.remove(&c.address);
                    dropped = true;
                    self.progress.line(&format!(
                        "{}: no longer ours; dropped from the state",
                        c.address
                    ));
                }
                dropped
            })
            .await
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
        let changes = self.with_known_values(step, changes).await?;
        let changes: Vec<&Change> = changes.iter().collect();
        let mut errors = Vec::new();
        for tier in tiers(&changes, false) {
            // Each tier is its own group for rollback: undone after the tiers that came later.
            let seq = self.steps_started.fetch_add(1, Ordering::SeqCst);
            let results: Vec<(Option<ObjectRecord>, Result<()>)> =
                stream::iter(tier.iter().map(|c| self.apply_one(seq, c, depends_on)))
                    .buffer_unordered(self.opts.parallelism.max(1))
                    .collect()
                    .await;
            let mut records = Vec::new();
            for (record, result) in results {
                records.extend(record);
                if let Err(e) = result {
                    errors.push(e);
                }
            }
            self.recorder
                .change(|s| {
                    let mut changed = false;
                    for mut record in records {
                        // Outputs are re-read after the step; keep the recorded ones until then. An
                        // object stays adopted (or not) for as long as it is managed; a new object
                        // (another uid) is adopted only when it was taken over.
                        if let Some(old) = s.get(&record.address) {
                            record.outputs = old.outputs.clone();
                            if old.uid == record.uid {
                                record.adopted = old.adopted;
                            }
                        }
                        if s.get(&record.address) != Some(&record) {
                            s.upsert(record);
                            changed = true;
                        }
                    }
                    changed
                })
                .await?;
            if !errors.is_empty() {
                // Later tiers depend on this one.
                return Err(combine(errors));
            }
        }
        self.publish_outputs(step).await?;
        let acted = changes.iter().filter(|c| c.action != Action::NoOp).count();
        if acted > 0 {
            self.progress.line(&format!(
                "{step}: {acted} object(s) applied in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Restart the workloads the plan restarts at `step`, in parallel, each waited for until its
    /// rollout is complete.
    async fn restart_step(&self, step: &str, restarts: Vec<&Restart>) -> Result<()> {
        if restarts.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let results: Vec<Result<()>> = stream::iter(restarts.iter().map(|r| async move {
            self.check_continue(&format!("restart {}", r.workload))?;
            self.ledger().restarted.push(r.workload.clone());
            if self.opts.wait {
                restart::restart(
                    &self.cluster,
                    &r.workload,
                    self.deadline,
                    &self.opts.interrupt,
                )
                .await
            } else {
                restart::restart_only(&self.cluster, &r.workload).await
            }
        }))
        .buffer_unordered(self.opts.parallelism.max(1))
        .collect()
        .await;
        let errors: Vec<anyhow::Error> = results.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            return Err(combine(errors));
        }
        self.progress.line(&format!(
            "{step}: {} workload(s) restarted in {:.1}s",
            restarts.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// The step's changes, with objects whose values were unknown when planned rendered again
    /// with the outputs published since. A value still unknown is an error naming the object.
    async fn with_known_values(&self, step: &str, changes: Vec<&Change>) -> Result<Vec<Change>> {
        let mut owned: Vec<Change> = changes.into_iter().cloned().collect();
        let pending = |c: &Change| c.desired.as_ref().is_some_and(Manifest::has_unknown);
        let Some(desired) = self.desired else {
            return Ok(owned);
        };
        if !owned.iter().any(pending) {
            return Ok(owned);
        }
        let (outputs, steps) = {
            let mut known = self.known();
            let outputs = known.outputs.clone();
            let steps = match &known.rendered {
                Some((with, steps)) if *with == outputs => Arc::clone(steps),
                _ => {
                    let steps = Arc::new(desired.render(&outputs));
                    known.rendered = Some((outputs.clone(), Arc::clone(&steps)));
                    steps
                }
            };
            (outputs, steps)
        };
        let Some(fresh) = steps.iter().find(|s| s.id == step) else {
            return Ok(owned);
        };
        for c in owned.iter_mut().filter(|c| pending(c)) {
            let m = fresh
                .objects
                .iter()
                .find(|m| fresh.address_of(m) == c.address)
                .with_context(|| format!("{} is no longer rendered", c.address))?;
            if m.has_unknown() {
                let missing: Vec<String> = steps
                    .iter()
                    .flat_map(|s| s.outputs.iter().map(move |o| (s, o)))
                    .filter(|(s, o)| outputs.known(&s.id, &o.name).is_none())
                    .map(|(s, o)| format!("{}.{} (read from {})", s.id, o.name, o.object))
                    .collect();
                return Err(EngineError::MissingOutputs {
                    address: c.address.clone(),
                    missing: missing.join(", "),
                    waited: self.opts.wait,
                }
                .into());
            }
            c.desired_sha256 = Some(m.sha256());
            c.desired = Some(m.clone());
        }
        Ok(owned)
    }

    /// Read the outputs `step` publishes, now that it is applied and ready, for the steps after it
    /// (and record them in the state).
    async fn publish_outputs(&self, step: &str) -> Result<()> {
        let Some(desired) = self.desired else {
            return Ok(());
        };
        let Some(s) = desired.steps.iter().find(|s| s.id == step) else {
            return Ok(());
        };
        if s.outputs.is_empty() {
            return Ok(());
        }
        let values = outputs::of_step(&self.cluster, s).await?;
        {
            let mut known = self.known();
            for (name, value) in &values {
                known.outputs.set(step, name, value.clone());
            }
        }
        self.recorder
            .change(|state| {
                for (name, value) in values {
                    if let Some(spec) = s.outputs.iter().find(|o| o.name == name)
                        && let Some(mut rec) = state.get(&spec.object).cloned()
                    {
                        rec.outputs.insert(name, value);
                        state.upsert(rec);
                    }
                }
                true
            })
            .await
    }

    /// Apply one object and wait for it; the record is returned whenever the object was applied,
    /// even if waiting for it then failed.
    async fn apply_one(
        &self,
        seq: usize,
        c: &Change,
        depends_on: &[String],
    ) -> (Option<ObjectRecord>, Result<()>) {
        let Some(m) = c.desired.as_ref() else {
            return (
                None,
                Err(anyhow!("internal: no desired object for {}", c.address)),
            );
        };
        let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        if c.cause == Cause::AwaitOwner {
            match self.cluster.get(&c.object).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    // Its owner has not created it yet: the first apply after it does sets vz's
                    // fields.
                    self.progress.line(&format!(
                        "{}: pending: {} does not exist yet (its owner creates it; vz sets its fields on the first apply after that)",
                        c.address, c.object
                    ));
                    return (None, Ok(()));
                }
                Err(e) => return (None, Err(e.context(format!("cannot read {}", c.object)))),
            }
        }
        let mut taken_over = false;
        let (uid, mut version, seen) = match c.action {
            Action::NoOp => (c.live_uid.clone(), c.live_resource_version.clone(), None),
            _ => match self.apply_change(seq, c).await {
                Ok(Applied { object, taken }) => {
                    taken_over = taken;
                    (
                        text(&object, "/metadata/uid"),
                        text(&object, "/metadata/resourceVersion"),
                        Some(object),
                    )
                }
                Err(e) => {
                    return (None, Err(e.context(format!("cannot apply {}", c.address))));
                }
            },
        };
        let held = match &seen {
            Some(applied) => lifecycle::after_apply(m, applied),
            None => c.certificate.clone(),
        };
        let waited = if self.opts.wait {
            self.progress
                .status(&format!("waiting for {} to be ready", c.object));
            self.cluster
                .wait_ready(&c.object, seen, self.deadline, &self.opts.interrupt)
                .await
                .with_context(|| format!("{} was applied but is not ready", c.address))
        } else {
            Ok(None)
        };
        let waited = waited.map(|ready| {
            // Becoming ready (a CRD established) writes the object's status: record the version it
            // was ready at, so the next plan knows nobody else wrote it since.
            if let Some(v) = ready.and_then(|r| text(&r, "/metadata/resourceVersion")) {
                version = Some(v);
            }
        });
        let record = ObjectRecord {
            address: c.address.clone(),
            step: c.step.clone(),
            api_version: m.api_version.clone(),
            kind: m.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            uid: uid.unwrap_or_default(),
            manifest_sha256: m.sha256(),
            resource_version: version,
            depends_on: depends_on.to_vec(),
            // Taken over, not created: released rather than deleted when it leaves.
            adopted: taken_over
                || decide::adopted(decide::Outcome {
                    action: c.action,
                    cause: c.cause,
                }),
            patched: m.ownership == Ownership::Patched,
            outputs: BTreeMap::new(),
            certificate: held,
        };
        (Some(record), waited)
    }

    /// Create, update or replace one object, journaling how to undo it; returns the object as the
    /// API server returned it.
    async fn apply_change(&self, seq: usize, c: &Change) -> Result<Applied> {
        let m = c.desired.as_ref().context("internal: nothing to apply")?;
        self.check_continue(&format!("applying {}", c.object))?;
        // A kind whose CRD was just established may take a moment to appear in discovery.
        self.cluster
            .await_kind(&m.api_version, &m.kind, DISCOVERY_PATIENCE)
            .await?;
        if c.cause == Cause::AwaitDeletion {
            // Planned while it was being deleted: it must be gone before it is created again.
            self.progress
                .status(&format!("waiting for {} to finish deleting", c.object));
            self.cluster
                .wait_gone(
                    &c.object,
                    c.live_uid.as_deref(),
                    self.deadline,
                    &self.opts.interrupt,
                )
                .await
                .with_context(|| format!("{} was being deleted when planned", c.object))?;
        }
        // What the object is right now, to put back exactly if the run is rolled back. An object
        // the plan read and found absent is not read again: the apply's response tells whether it
        // created the object (vz its only field manager) or someone else did meanwhile.
        let absent_when_planned = self.planned_live
            && c.action == Action::Create
            && matches!(c.cause, Cause::Config | Cause::DeletedOutside)
            && m.ownership == Ownership::Owned
            && !self.cluster.kept_elsewhere(&m.api_version);
        let before = if absent_when_planned {
            None
        } else {
            self.cluster.get(&c.object).await?
        };
        if c.action == Action::Replace
            && let Some(old) = &before
        {
            self.cluster
                .delete_and_wait(&c.object, None, self.deadline, &self.opts.interrupt)
                .await
                .with_context(|| format!("cannot replace {}", c.object))?;
            // Deleted: from here on an undo must bring the old object back.
            self.journal(
                seq,
                c,
                Undo::Replaced {
                    before: old.clone(),
                    uid: None,
                },
            );
        }
        // What providers make or read only now, never at plan time (a certificate issued or kept,
        // copied values read). A replaced object's key material is made anew.
        let renew = c.reissue.is_some() || c.action == Action::Replace;
        let sent = lifecycle::before_apply(
            &self.cluster,
            m,
            before.as_ref(),
            renew,
            c.intent.as_deref(),
        )
        .await?;
        let sent = sent.as_ref();
        if m.ownership == Ownership::Patched && before.is_none() {
            // Never created by vz, and gone since the plan: nothing to patch.
            return Err(anyhow!(
                "{} does not exist (any more): vz only sets some of its fields, and its owner creates it",
                c.object
            ));
        }
        let mut applied = match self.cluster.apply(sent, false).await {
            Ok(applied) => applied,
            Err(e) => {
                if matches!(
                    e.downcast_ref::<ClusterError>(),
                    Some(ClusterError::Unanswered(_))
                ) {
                    // It may have been made: a rollback undoes it as if it had been.
                    self.unanswered.store(true, Ordering::SeqCst);
                    let undo = match before {
                        Some(before) => Undo::Updated { before },
                        None => Undo::Created { uid: None },
                    };
                    self.journal(seq, c, undo);
                }
                return Err(e);
            }
        };
        let taken = absent_when_planned && !only_vz_manages(&applied);
        if taken {
            self.progress.line(&format!(
                "{}: {} was created by someone else since the plan; vz took it over (destroy releases it rather than deleting it)",
                c.address, c.object
            ));
        }
        if taken || (c.cause == Cause::Adopt && c.action == Action::Update) {
            // Taken over: say so on the object itself, so that vz releases it rather than deleting
            // it even if its state is lost (the labels alone would make it look like vz's own).
            applied = self.cluster.mark_adopted(&c.object).await?;
        }
        let uid = applied
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (undo, verb) = match (before, c.action) {
            _ if taken => (Undo::TakenOver, "taken over"),
            (Some(before), Action::Replace) => (
                Undo::Replaced {
                    before,
                    uid: uid.clone(),
                },
                "replaced",
            ),
            (Some(before), _) => (Undo::Updated { before }, "updated"),
            (None, _) => (Undo::Created { uid: uid.clone() }, "created"),
        };
        if matches!(undo, Undo::Replaced { .. }) {
            // Supersede the entry made after the delete.
            self.ledger().journal.retain(|e| {
                !(e.address == c.address && matches!(e.undo, Undo::Replaced { uid: None, .. }))
            });
        }
        self.journal(seq, c, undo);
        self.progress.line(&format!("{}: {verb}", c.address));
        Ok(Applied {
            object: applied,
            taken,
        })
    }

    /// Carry out the plan's deletions, in reverse dependency order of the recorded steps.
    async fn delete_all(&self, plan: &Plan) -> Result<()> {
        let changes: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| matches!(c.action, Action::Delete | Action::Release))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let records = self.recorder.read(|s| s.objects.clone());
        let graph = StepGraph::build(&record_nodes(&records))?;
        let mut by_step: HashMap<&str, Vec<&Change>> = HashMap::new();
        for c in changes {
            by_step.entry(c.step.as_str()).or_default().push(c);
        }
        let by_step = &by_step;
        let walked = graph
            .walk(true, self.opts.parallelism, |step| {
                let mine = by_step.get(step.as_str()).cloned().unwrap_or_default();
                async move { self.delete_step(&step, mine).await }
            })
            .await;
        walked.map_err(combine)?;
        self.wait_later().await
    }

    /// Wait, all together, for the namespaces whose deletion the steps started; each leaves the
    /// state once it is gone.
    async fn wait_later(&self) -> Result<()> {
        let later = std::mem::take(&mut self.ledger().later);
        if later.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.progress.status(&format!(
            "waiting for {} namespace(s) to finish deleting",
            later.len()
        ));
        let results: Vec<(String, Result<()>)> =
            stream::iter(later.into_iter().map(|(address, object, uid)| async move {
                let waited = self
                    .cluster
                    .wait_gone(&object, uid.as_deref(), self.deadline, &self.opts.interrupt)
                    .await;
                if waited.is_ok() {
                    self.progress.line(&format!("{address}: deleted"));
                }
                (address, waited)
            }))
            .buffer_unordered(WAITS_AT_ONCE)
            .collect()
            .await;
        let mut errors = Vec::new();
        let mut gone = Vec::new();
        for (address, r) in results {
            match r {
                Ok(()) => gone.push(address),
                Err(e) => errors.push(e),
            }
        }
        self.recorder
            .change(|s| {
                s.remove_all(&gone.iter().map(String::as_str).collect());
                true
            })
            .await?;
        self.progress.line(&format!(
            "{} namespace(s) finished deleting in {:.1}s",
            gone.len(),
            started.elapsed().as_secs_f64()
        ));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(combine(errors))
        }
    }

    async fn delete_step(&self, step: &str, changes: Vec<&Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.before_delete(step, &changes).await?;
        for tier in tiers(&changes, true) {
            let seq = self.steps_started.fetch_add(1, Ordering::SeqCst);
            let results: Vec<(String, Result<Deletion>)> = stream::iter(
                tier.iter()
                    .map(|c| async move { (c.address.clone(), self.delete_one(seq, c).await) }),
            )
            .buffer_unordered(self.opts.parallelism.max(1))
            .collect()
            .await;
            let mut errors = Vec::new();
            let mut deleted = Vec::new();
            for (address, r) in results {
                match r {
                    Ok(Deletion::Done) => deleted.push(address),
                    Ok(Deletion::Later) => {}
                    Err(e) => errors.push(e),
                }
            }
            self.recorder
                .change(|s| {
                    s.remove_all(&deleted.iter().map(String::as_str).collect());
                    true
                })
                .await?;
            if !errors.is_empty() {
                return Err(combine(errors));
            }
        }
        let released = changes
            .iter()
            .filter(|c| c.action == Action::Release)
            .count();
        let released = match released {
            0 => String::new(),
            n => format!(", {n} released"),
        };
        self.progress.line(&format!(
            "{step}: {} object(s) deleted{released} in {:.1}s",
            changes.len()
                - changes
                    .iter()
                    .filter(|c| c.action == Action::Release)
                    .count(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Every provider's hook before the objects of `step` are deleted ([`crate::lifecycle`]).
    async fn before_delete(&self, step: &str, changes: &[&Change]) -> Result<()> {
        let deleted = self.ledger().deleted.clone();
        let may_continue = |doing: &str| self.check_continue(doing);
        let cx = lifecycle::Context {
            cluster: &self.cluster,
            deadline: self.deadline,
            interrupt: &self.opts.interrupt,
            progress: self.progress,
            leave_dns_records: self.opts.leave_dns_records,
            may_continue: &may_continue,
        };
        for hook in lifecycle::LIFECYCLES {
            hook.before_delete(&cx, step, changes, &deleted).await?;
        }
        Ok(())
    }

    async fn delete_one(&self, seq: usize, c: &Change) -> Result<Deletion> {
        self.check_continue(&format!("deleting {}", c.object))?;
        // What the object is right now, for an apply's rollback to re-create it exactly. A destroy
        // is never rolled back: it needs no copy (a release still reads it, to release only what
        // is there).
        let rollback = self.desired.is_some();
        let before = if rollback || c.action == Action::Release {
            self.cluster.get(&c.object).await?
        } else {
            None
        };
        if c.action == Action::Release {
            if let Some(before) = before {
                self.cluster.release(&c.object).await?;
                self.journal(seq, c, Undo::Updated { before });
                self.progress.line(&format!(
                    "{}: released (not created by vz, so not deleted)",
                    c.address
                ));
            }
            return Ok(Deletion::Done);
        }
        let deleted = match self.cluster.delete(&c.object).await {
            Ok(deleted) => deleted,
            Err(e) => {
                if matches!(
                    e.downcast_ref::<ClusterError>(),
                    Some(ClusterError::Unanswered(_))
                ) {
                    // It may be gone: a rollback brings it back as if it had been deleted.
                    self.unanswered.store(true, Ordering::SeqCst);
                    if let Some(before) = before {
                        self.journal(seq, c, Undo::Deleted { before });
                    }
                }
                return Err(e);
            }
        };
        if deleted != Deleted::AlreadyGone {
            self.ledger().deleted.push(c.object.clone());
            if let Some(before) = before {
                self.journal(seq, c, Undo::Deleted { before });
            }
        }
        match deleted {
            Deleted::AlreadyGone => Ok(Deletion::Done),
            Deleted::Gone => {
                self.progress.line(&format!("{}: deleted", c.address));
                Ok(Deletion::Done)
            }
            Deleted::Started { uid } if self.opts.wait && c.object.kind == "Namespace" => {
                // Emptying a namespace takes the namespace controller seconds: all of them are
                // waited for together once every step is done (nothing waits for one to be gone).
                let uid = uid.or_else(|| c.live_uid.clone());
                self.ledger()
                    .later
                    .push((c.address.clone(), c.object.clone(), uid));
                Ok(Deletion::Later)
            }
            Deleted::Started { uid } => {
                if self.opts.wait {
                    self.progress
                        .status(&format!("waiting for {} to be deleted", c.object));
                    let uid = uid.or_else(|| c.live_uid.clone());
                    self.cluster
                        .wait_gone(
                            &c.object,
                            uid.as_deref(),
                            self.deadline,
                            &self.opts.interrupt,
                        )
                        .await?;
                }
                self.progress.line(&format!("{}: deleted", c.address));
                Ok(Deletion::Done)
            }
        }
    }

    /// Undo the journal, newest step first (the changes of one step concurrently), and write the
    /// state back to `original`, adjusted for any undo that failed. Returns the report for the user,
    /// and whether everything was undone (and the state written).
    async fn rollback(&self, original: State) -> (String, bool) {
        let mut journal = std::mem::take(&mut self.ledger().journal);
        let restarted = std::mem::take(&mut self.ledger().restarted);
        if journal.is_empty() && restarted.is_empty() {
            return (
                "Nothing had been changed, so there was nothing to roll back; the state is unchanged."
                    .into(),
                true,
            );
        }
        self.progress.line(&format!(
            "Rolling back {} change(s) made by this run...",
            journal.len()
        ));
        let deadline = Instant::now() + self.opts.timeout.max(MIN_ROLLBACK_BUDGET);
        // Ctrl-C started the rollback, if anything: it is not stopped by it.
        self.cluster.requests_until(Some(deadline), None);
        journal.sort_by_key(|e| std::cmp::Reverse(e.seq));
        let run_state = self.recorder.snapshot();
        let mut state = original;
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let mut i = 0;
        while i < journal.len() {
            let seq = journal[i].seq;
            let group: Vec<&Entry> = journal[i..].iter().take_while(|e| e.seq == seq).collect();
            i += group.len();
            let results = stream::iter(
                group
                    .iter()
                    .map(|e| async move { (*e, self.undo(e, deadline).await) }),
            )
            .buffer_unordered(self.opts.parallelism.max(1))
            .collect::<Vec<_>>()
            .await;
            for (e, r) in results {
                let (did, todo, why) = describe_undo(&e.undo);
                let outcome = match r {
                    Ok(new_uid) => {
                        done.push(format!("  - {did} {} ({why})", e.object));
                        Undone::Done { new_uid }
                    }
                    Err(err) => {
                        failed.push(format!(
                            "  - could not {todo} {} ({why}): {err:#}",
                            e.object
                        ));
                        Undone::Failed
                    }
                };
                settle(&mut state, &e.address, &e.undo, &outcome, &run_state);
            }
        }
        // Restarted workloads made pods from what this run changed (a sidecar of the new
        // revision): now that it is put back, they are restarted once more, onto what was there.
        // Ctrl-C does not stop a rollback: it waits regardless.
        let unstoppable = &Interrupt::never();
        let restarts = stream::iter(restarted.iter().map(|w| async move {
            let r = restart::restart(&self.cluster, w, deadline, unstoppable).await;
            (w, r)
        }))
        .buffer_unordered(self.opts.parallelism.max(1))
        .collect::<Vec<_>>()
        .await;
        for (w, r) in restarts {
            match r {
                Ok(()) => done.push(format!("  - restarted {w} again (restarted by this run)")),
                Err(err) => failed.push(format!(
                    "  - could not restart {w} again (restarted by this run): {err:#}"
                )),
            }
        }
        // Continue the history on disk: the rolled-back state is the next serial.
        state.lineage = run_state.lineage.clone();
        state.serial = run_state.serial;
        if self.unanswered.load(Ordering::SeqCst) {
            // A change the API server never answered may still be carried out after the rollback
            // looked for it: the next plan looks for what carries the platform's labels.
            state.unfinished = Some(Unfinished::now("apply"));
        }
        let written = self.recorder.write_instead(&mut state).await;
        let complete = failed.is_empty() && written.is_ok();
        let mut report = String::new();
        if failed.is_empty() {
            report.push_str(&format!(
                "Rolled back every change of this run ({}):\n{}",
                done.len(),
                done.join("\n")
            ));
        } else {
            report.push_str(&format!(
                "Rollback was incomplete. Undone ({}):\n{}\nNOT undone ({}):\n{}\n\
                 The state records these objects as they are now; fix the cause and run vz apply again.",
                done.len(),
                done.join("\n"),
                failed.len(),
                failed.join("\n")
            ));
        }
        match written {
            Ok(()) if failed.is_empty() => report.push_str(&format!(
                "\nThe state is as it was before the run (now serial {}).",
                state.serial
            )),
            Ok(()) => report.push_str(&format!("\nState written (serial {}).", state.serial)),
            Err(e) => report.push_str(&format!(
                "\nThe state could NOT be written after the rollback: {e:#}\n\
                 The state file is whole, as it was last written during this run: it may record objects the rollback has since removed, which the next plan finds gone. Make room (or fix the permissions) and run `vz plan` to see the difference."
            )),
        }
        if self.unanswered.load(Ordering::SeqCst) {
            report.push_str(
                "\nSome changes got no answer from the API server, which may still carry them out: the next plan looks for what this run may have left by the platform's labels.",
            );
        }
        (report, complete)
    }

    /// Undo one change; for a re-created object, its new uid.
    async fn undo(&self, e: &Entry, deadline: Instant) -> Result<Option<String>> {
        let never = Interrupt::never();
        match &e.undo {
            Undo::Created { uid } => {
                self.cluster
                    .delete_and_wait(&e.object, uid.as_deref(), deadline, &never)
                    .await?;
                Ok(None)
            }
            Undo::Updated { before } => {
                // A CRD keeps serving what it stored as meanwhile (the API server insists).
                let kept = if before["kind"] == "CustomResourceDefinition" {
                    let live = self.cluster.get(&e.object).await?;
                    lifecycle::crds::restorable(before, live.as_ref())
                } else {
                    None
                };
                self.cluster
                    .restore(kept.as_ref().unwrap_or(before))
                    .await?;
                Ok(None)
            }
            Undo::TakenOver => {
                self.cluster.release(&e.object).await?;
                Ok(None)
            }
            Undo::Deleted { before } => {
                let restored = self.cluster.restore(before).await?;
                Ok(restored
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string))
            }
            Undo::Replaced { before, uid } => {
                self.cluster
                    .delete_and_wait(&e.object, uid.as_deref(), deadline, &never)
                    .await?;
                let restored = self.cluster.restore(before).await?;
                Ok(restored
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string))
            }
        }
    }
}

/// Graph nodes for the steps recorded in a state: declared dependencies plus kind-aware rules.
pub fn record_nodes(records: &[ObjectRecord]) -> Vec<StepNode> {
    let mut nodes: Vec<StepNode> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for r in records {
        let idx = match at.get(r.step.as_str()) {
            Some(&i) => i,
            None => {
                at.insert(&r.step, nodes.len());
                nodes.push(StepNode {
                    id: r.step.clone(),
                    depends_on: vec![],
                    provides: BTreeSet::new(),
                    needs: BTreeSet::new(),
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
        n.provides
            .extend(order::provides(&r.api_version, &r.kind, &r.name, None));
        n.needs.extend(order::needs(
            &r.api_version,
            &r.kind,
            r.namespace.as_deref(),
        ));
    }
    // Dependencies on steps with nothing recorded any more do not constrain deletion.
    let known: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    for n in &mut nodes {
        n.depends_on.retain(|d| known.contains(d));
    }
    nodes
}

/// The changes grouped by [`order::tier`], in apply order (or deletion order with `reverse`).
fn tiers<'c>(changes: &[&'c Change], reverse: bool) -> Vec<Vec<&'c Change>> {
    let mut by_tier: std::collections::BTreeMap<u8, Vec<&Change>> = Default::default();
    for c in changes {
        by_tier
            .entry(order::tier(&c.object.api_version, &c.object.kind, copy(c)))
            .or_default()
            .push(c);
    }
    let mut out: Vec<Vec<&Change>> = by_tier.into_values().collect();
    if reverse {
        out.reverse();
    }
    out
}

/// Whether all `vz` writes of the object is values copied from a CA (a bundle, a `caBundle`).
fn copy(c: &Change) -> bool {
    c.desired.as_ref().is_some_and(|m| {
        m.certificate.is_none() && m.fills.iter().any(|f| f.target != FillTarget::Data)
    })
}

/// Several operations that failed in the same run (steps run in parallel), each kept whole so
/// that what each needs is still told.
#[derive(Debug)]
pub struct Failures(pub Vec<anyhow::Error>);

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} operations failed:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  - {e:#}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failures {}

/// One error from several.
fn combine(mut errors: Vec<anyhow::Error>) -> anyhow::Error {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    Failures(errors).into()
}
