//! Planning: the difference between the desired objects, the recorded state and the live cluster.
//!
//! For each desired object the live object is read. A missing object is to be created. An existing
//! one is server-side applied in dry-run mode, which gives exactly what an apply would leave in the
//! cluster (defaults, other managers' fields and all); the field-level difference between the live
//! object and that result is the update. When the dry run says an immutable field would change, the
//! object is to be replaced (deleted, then created). Recorded objects that are no longer desired are
//! to be deleted. Reads and dry runs go out in parallel.
//!
//! Without refresh (`--refresh=false`) nothing is read from the cluster: the plan compares the
//! configuration with the hashes the state recorded, so it cannot see drift or show field changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::{Context, Result, bail};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vz_providers::manifest::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLATFORM_LABEL};
use vz_providers::{Manifest, Ownership, Step, applications};
use vz_state::{ObjectRecord, State};

use crate::cluster::{Cluster, DryRun, Listing, NotServed, ObjectRef, ref_of};
use crate::connectivity::changes::{ConnectivityChanges, shapes_connectivity};
use crate::diff::{FieldChange, diff, normalize, unknown_fields};
use crate::engine::EngineError;
use crate::engine::graph::StepGraph;
use crate::engine::order;
use crate::engine::restart::Restart;
use crate::lifecycle::{PlanContext, Plannings, Prepared};
use crate::sensitive::{mask_fields, mask_object};

pub mod decide;

use decide::{DryRunSaid, Live, Origin, Recorded, Verdict, Wanted};

/// What will happen to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing: the cluster already matches.
    NoOp,
    /// The object will be created.
    Create,
    /// The object will be changed in place.
    Update,
    /// The object will be deleted, then created again (an immutable field changes, or `--replace`).
    Replace,
    /// The object will be deleted.
    Delete,
    /// The object existed before `vz` took it over: `vz`'s fields are removed from it and it is
    /// dropped from the state, but it is not deleted.
    Release,
    /// The object is recorded but already gone (or re-created by someone else): it is dropped from
    /// the state and left alone.
    Forget,
}

/// Why a change is needed, beyond the action itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The configuration asks for it.
    Config,
    /// The object was changed outside `vz` since the last apply; the change puts it back.
    Drift,
    /// The object was deleted outside `vz`; it will be created again.
    DeletedOutside,
    /// The object exists but `vz` does not manage it yet; it will be taken over.
    Adopt,
    /// `--replace` asked for it.
    Requested,
    /// The object carries this platform's labels but the state does not record it (the state was
    /// lost): it is `vz`'s own again, and destroy deletes it.
    Recovered,
    /// The object is being deleted (say, by a destroy that did not wait): it is created again once
    /// it is gone.
    AwaitDeletion,
    /// `vz` only patches fields of the object, which its owner has not created yet: it is pending,
    /// and the first apply after its owner creates it sets `vz`'s fields.
    AwaitOwner,
    /// The certificate it holds is issued again (see [`Change::reissue`] for why), or it holds a
    /// copy of one that is.
    Reissue,
    /// The object left the configuration under this address but is desired under another (its
    /// step changed, say `istiod-default-validator` between `istio.control-plane` and
    /// `istio.revision-tag`): this address is dropped from the state, the object is kept.
    Moved,
}

/// One object's entry in the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// The object's address.
    pub address: String,
    /// The step it belongs to.
    pub step: String,
    /// Its identity in the cluster.
    pub object: ObjectRef,
    /// What will happen.
    pub action: Action,
    /// Why.
    pub cause: Cause,
    /// The desired object (for everything but deletes). Never saved: a saved plan renders it again
    /// from the (unchanged) configuration and checks it against `desired_sha256`.
    #[serde(skip)]
    pub desired: Option<Manifest>,
    /// sha256 of the desired object.
    pub desired_sha256: Option<String>,
    /// The uid of the live object, when it exists.
    pub live_uid: Option<String>,
    /// The resourceVersion of the live object, when it exists.
    pub live_resource_version: Option<String>,
    /// The live object as read (server-maintained fields removed, sensitive values masked), when it
    /// exists.
    pub before: Option<Value>,
    /// What the object will be after apply, when known (sensitive values masked).
    pub after: Option<Value>,
    /// Field-level differences (updates only).
    pub fields: Vec<FieldChange>,
    /// For a replace: the fields that force it.
    pub forces_replacement: Vec<String>,
    /// For a Secret holding a certificate `vz` issues: why apply issues it again (names, key,
    /// issuer or expiry), when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue: Option<String>,
    /// For an object holding a copy of a CA (a bundle): why the copy changes, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// For a Secret holding a certificate `vz` issues: the certificate it holds now (public facts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<vz_state::CertFacts>,
    /// What a provider decided to do to the object at apply (a step of a CA rotation, say; see
    /// [`crate::lifecycle::Prepared::intent`]), for updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// What a provider tells of the object, changed or not (a CA rotation under way, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The whole plan, ordered: steps in dependency order, objects in step order, then deletions in the
/// reverse of the order they were applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Every object's entry, including no-ops.
    pub changes: Vec<Change>,
    /// Whether this is a destroy plan.
    pub destroy: bool,
    /// Whether the live cluster was read.
    pub refreshed: bool,
    /// What the user should know before applying it (an Istio that does not support the
    /// cluster's Kubernetes, say), one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the plan left out and why (an application `vz watch` saw end), one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The flows the plan opens and closes (`None` when not known: the live cluster was not read,
    /// or a policy could not be evaluated, which `warnings` then says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<ConnectivityChanges>,
    /// Workloads apply restarts (their pods must be made again: a sidecar missing or from
    /// another revision), each at its step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<Restart>,
}

impl Plan {
    /// How many objects are released rather than destroyed.
    pub fn released(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action == Action::Release)
            .count()
    }

    /// How many certificates apply issues again.
    pub fn reissued(&self) -> usize {
        self.changes.iter().filter(|c| c.reissue.is_some()).count()
    }

    /// Patched objects whose owner has not created them yet.
    pub fn pending(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.cause == Cause::AwaitOwner)
            .count()
    }

    /// How many objects are only recorded again (recovered from their labels with nothing to
    /// change): apply changes the state, not the cluster.
    pub fn recovered(&self) -> usize {
        self.changes.iter().filter(|c| only_recorded(c)).count()
    }

    /// (to add, to change, to destroy); a replace counts as one to add and one to destroy.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        let replace = count(Action::Replace);
        (
            count(Action::Create) + replace,
            count(Action::Update) - self.recovered(),
            count(Action::Delete) + replace,
        )
    }

    /// Whether applying the plan would change the cluster.
    pub fn has_changes(&self) -> bool {
        self.counts() != (0, 0, 0) || !self.restarts.is_empty()
    }

    /// Whether applying the plan would change the cluster or the state.
    pub fn has_work(&self) -> bool {
        self.has_changes()
            || self
                .changes
                .iter()
                .any(|c| matches!(c.action, Action::Forget | Action::Release) || only_recorded(c))
    }
}

/// A recovered object whose fields all match: applying it only records it.
fn only_recorded(c: &Change) -> bool {
    c.action == Action::Update && c.cause == Cause::Recovered && c.fields.is_empty()
}

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Reads and dry runs in flight at once.
    pub parallelism: usize,
    /// Read the live cluster (otherwise compare with the state only).
    pub refresh: bool,
    /// Limit the plan to these addresses or step ids, plus the steps they depend on.
    pub targets: Vec<String>,
    /// Replace these addresses even if they could be updated in place.
    pub replace: Vec<String>,
    /// Limit the plan to these applications (`--app`): their steps and their namespaces', nothing
    /// of the platform.
    pub apps: Vec<String>,
    /// Keep each change's `before` and `after` views (the live object and what apply leaves), for
    /// a JSON plan or a saved one. A plan shown as text or applied at once needs neither, and at
    /// thousands of objects they are most of its memory.
    pub views: bool,
    /// The kinds the configuration renders objects of (`apiVersion`, `kind`): where a run that did
    /// not finish may have left objects it had not recorded (see [`unrecorded`]). A plan adds the
    /// kinds of the steps it is given; a destroy plans from the state and these alone.
    pub kinds: BTreeSet<(String, String)>,
}

/// The first part of the address of an object a run that did not finish left unrecorded
/// (`unrecorded/<Kind>/<namespace>/<name>`); each such object is a step of its own.
pub const UNRECORDED: &str = "unrecorded";

/// Plan the desired `steps` (ordered by `graph`) against `state` and the cluster.
pub async fn plan(
    cluster: &Cluster,
    steps: &[Step],
    graph: &StepGraph,
    state: &State,
    opts: &PlanOptions,
) -> Result<Plan> {
    let mut desired: Vec<(&Step, &Manifest)> = Vec::new();
    let by_id: HashMap<&str, &Step> = steps.iter().map(|s| (s.id.as_str(), s)).collect();
    for id in graph.order() {
        if let Some(&step) = by_id.get(id.as_str()) {
            desired.extend(step.objects.iter().map(|m| (step, m)));
        }
    }
    let wanted: HashSet<String> = desired.iter().map(|(s, m)| s.address_of(m)).collect();
    let gone: Vec<&ObjectRecord> = state
        .objects
        .iter()
        .rev()
        .filter(|r| !wanted.contains(&r.address))
        .collect();

    let selected = if opts.apps.is_empty() {
        Selection::new(&opts.targets, steps, graph, state)?
    } else {
        Selection::for_apps(&opts.apps, steps, state, false)?
    };
    for r in &opts.replace {
        if desired
            .iter()
            .any(|(s, m)| &s.address_of(m) == r && m.ownership == Ownership::Patched)
        {
            return Err(EngineError::UnknownAddress(format!(
                "`{r}` cannot be replaced: vz only sets some fields of it, and its owner creates and deletes it"
            ))
            .into());
        }
        if !wanted.contains(r) {
            return Err(EngineError::UnknownAddress(format!(
                "no desired object has the address `{r}` (to replace)"
            ))
            .into());
        }
    }
    let desired: Vec<_> = desired
        .into_iter()
        .filter(|(s, m)| selected.includes(&s.address_of(m), &s.id))
        .collect();
    let gone: Vec<_> = gone
        .into_iter()
        .filter(|r| selected.includes(&r.address, &r.step))
        .collect();

    let mut prefetched = if opts.refresh {
        prefetch(cluster, &desired, state, opts.parallelism, opts.views).await
    } else {
        Seen::default()
    };
    let hooks = PlanContext {
        cluster,
        state,
        refresh: opts.refresh,
        parallelism: opts.parallelism,
        replace: &opts.replace,
    };
    let plannings = Plannings::before_plan(&hooks, &desired, &mut prefetched).await?;
    let plannings = &plannings;
    // Each listed object is handed to its change (not copied): planning thousands of objects
    // holds each live object once.
    let prefetched = std::sync::Mutex::new(prefetched);
    let prefetched = &prefetched;
    // Kinds whose CRDs this plan creates may not be served yet.
    let pending_groups: HashSet<String> = steps
        .iter()
        .flat_map(|s| &s.objects)
        .filter_map(|m| order::provides(&m.api_version, &m.kind, &m.name, Some(&m.body)))
        .filter_map(|p| p.strip_prefix("group:").map(str::to_string))
        .collect();
    let pending_groups = &pending_groups;
    // Sized once: a Change is large, and a vector grown by doubling holds up to twice as many.
    let mut changes: Vec<Change> = Vec::with_capacity(desired.len() + gone.len());
    let mut planned = stream::iter(desired.into_iter().map(|(step, m)| {
        let address = step.address_of(m);
        let record = state.get(&address);
        let replace = opts.replace.contains(&address);
        async move {
            let object = ObjectRef::of(m);
            let (unserved, listed) = prefetched
                .lock()
                .map(|mut p| (p.unserved(m), p.take(&object)))
                .unwrap_or_default();
            if unserved && pending_groups.contains(order::group_of(&m.api_version)) {
                // Its CRD is created by this plan: the object will be created after it.
                return Ok(masked(create(step, m)));
            }
            let seen = listed.or_else(|| {
                plannings
                    .live(&object)
                    .map(|live| live.map_or(Known::Absent, Known::Whole))
            });
            let planned = plan_desired(
                cluster,
                step,
                m,
                record,
                replace,
                opts.refresh,
                seen,
                plannings,
                opts.views,
            );
            match planned.await.map(masked) {
                Err(e)
                    if e.is::<NotServed>()
                        && pending_groups.contains(order::group_of(&m.api_version)) =>
                {
                    // Its CRD is created by this plan: the object will be created after it.
                    Ok(masked(create(step, m)))
                }
                other => other,
            }
        }
    }))
    .buffered(opts.parallelism.max(1));
    while let Some(change) = planned.try_next().await? {
        changes.push(change);
    }
    drop(planned);
    let deletions: Vec<Change> = stream::iter(
        gone.into_iter()
            .map(|r| plan_delete_seen(cluster, r, opts.refresh, None, opts.views)),
    )
    .buffered(opts.parallelism.max(1))
    .try_collect()
    .await?;
    changes.extend(moved(deletions, &changes));
    if state.unfinished.is_some() && opts.refresh && selected.is_all() {
        let mut kinds = opts.kinds.clone();
        kinds.extend(
            steps
                .iter()
                .flat_map(|s| &s.objects)
                .map(|m| (m.api_version.clone(), m.kind.clone())),
        );
        let mut known: HashSet<ObjectRef> = state.objects.iter().map(record_ref).collect();
        known.extend(changes.iter().map(|c| c.object.clone()));
        changes.extend(
            unrecorded(cluster, state, &kinds, &known, opts.parallelism, opts.views).await?,
        );
    }
    Ok(Plan {
        changes,
        destroy: false,
        refreshed: opts.refresh,
        warnings: Vec::new(),
        notes: Vec::new(),
        connectivity: None,
        restarts: Vec::new(),
    })
}

/// Whether the plan keeps an object's live content and what apply leaves (`views`, or an object
/// connectivity depends on).
fn viewed(views: bool, kind: &str) -> bool {
    views || shapes_connectivity(kind)
}

/// The record of an object a run that did not finish left unrecorded, at `address` (also its
/// step: each such object is a step of its own, so none waits for another).
pub fn unrecorded_record(
    address: &str,
    object: &ObjectRef,
    uid: Option<String>,
    adopted: bool,
) -> ObjectRecord {
    ObjectRecord {
        address: address.to_string(),
        step: address.to_string(),
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        uid: uid.unwrap_or_default(),
        manifest_sha256: String::new(),
        resource_version: None,
        depends_on: Vec::new(),
        adopted,
        patched: false,
        outputs: BTreeMap::new(),
        certificate: None,
    }
}

/// The objects carrying this platform's labels that neither the configuration nor the state
/// knows of (`known`): a run that did not finish (killed, or its last state write failed) made
/// them and had not recorded them. One labelled list (metadata only) per kind of `kinds` and of
/// the state finds them; each is planned for deletion — or release, if `vz` had taken it over —
/// as a step of its own, named `unrecorded/<Kind>/<namespace>/<name>`.
async fn unrecorded(
    cluster: &Cluster,
    state: &State,
    kinds: &BTreeSet<(String, String)>,
    known: &HashSet<ObjectRef>,
    parallelism: usize,
    views: bool,
) -> Result<Vec<Change>> {
    let mut all: BTreeSet<(&str, &str)> = kinds
        .iter()
        .map(|(a, k)| (a.as_str(), k.as_str()))
        .collect();
    all.extend(
        state
            .objects
            .iter()
            .map(|r| (r.api_version.as_str(), r.kind.as_str())),
    );
    let listing = |_: &str, _: &str| Listing::Metadata;
    let found = list_platform(cluster, all, &state.platform, parallelism, listing).await;
    let mut strays: Vec<(ObjectRef, Known)> = found
        .into_iter()
        .filter(|(r, _)| !known.contains(r))
        .collect();
    strays.sort_by_key(|(r, _)| r.to_string());
    let records: Vec<(ObjectRecord, Known)> = strays
        .into_iter()
        .map(|(r, seen)| {
            let live = match &seen {
                Known::Metadata(l) => Some(l.clone()),
                Known::Whole(v) => Some(Live::of(v)),
                Known::Absent => None,
            };
            let address = match &r.namespace {
                Some(ns) => format!("{UNRECORDED}/{}/{ns}/{}", r.kind, r.name),
                None => format!("{UNRECORDED}/{}/{}", r.kind, r.name),
            };
            let uid = live.as_ref().and_then(|l| l.uid.clone());
            let adopted = live.is_some_and(|l| l.adopted_mark);
            let record = unrecorded_record(&address, &r, uid, adopted);
            (record, seen)
        })
        .collect();
    stream::iter(records.into_iter().map(|(record, seen)| async move {
        let mut c = plan_delete_seen(cluster, &record, true, Some(seen), views).await?;
        c.cause = Cause::Recovered;
        Ok::<_, anyhow::Error>(c)
    }))
    .buffered(parallelism.max(1))
    .try_collect()
    .await
}

/// Plan the deletion of everything `state` records (or, with targets, of those objects).
pub async fn plan_destroy(cluster: &Cluster, state: &State, opts: &PlanOptions) -> Result<Plan> {
    let selected = if opts.apps.is_empty() {
        Selection::for_destroy(&opts.targets, state)?
    } else {
        Selection::for_apps(&opts.apps, &[], state, true)?
    };
    let chosen: Vec<&ObjectRecord> = state
        .objects
        .iter()
        .rev()
        .filter(|r| selected.includes(&r.address, &r.step))
        .collect();
    // One labelled list per kind reads what is there; only objects missing from it are read one
    // by one (gone already, or without vz's labels).
    let listed = if opts.refresh {
        list_recorded(
            cluster,
            &chosen,
            &state.platform,
            opts.parallelism,
            opts.views,
        )
        .await
    } else {
        HashMap::new()
    };
    let listed = &listed;
    let mut changes: Vec<Change> = stream::iter(chosen.into_iter().map(|r| {
        let seen = listed.get(&record_ref(r)).cloned();
        plan_delete_seen(cluster, r, opts.refresh, seen, opts.views)
    }))
    .buffered(opts.parallelism.max(1))
    .try_collect()
    .await?;
    if state.unfinished.is_some() && opts.refresh && selected.is_all() {
        let known: HashSet<ObjectRef> = state.objects.iter().map(record_ref).collect();
        changes.extend(
            unrecorded(
                cluster,
                state,
                &opts.kinds,
                &known,
                opts.parallelism,
                opts.views,
            )
            .await?,
        );
    }
    Ok(Plan {
        changes,
        destroy: true,
        refreshed: opts.refresh,
        warnings: Vec::new(),
        notes: Vec::new(),
        connectivity: None,
        restarts: Vec::new(),
    })
}

/// Which objects `--target` selects.
struct Selection {
    /// `None`: everything.
    addresses: Option<HashSet<String>>,
    steps: HashSet<String>,
}

impl Selection {
    /// No targets: everything.
    fn all() -> Self {
        Selection {
            addresses: None,
            steps: HashSet::new(),
        }
    }

    /// Whether nothing was singled out (no `--target`, no `--app`).
    fn is_all(&self) -> bool {
        self.addresses.is_none() && self.steps.is_empty()
    }

    /// Targets, plus every object of the steps the targets' steps depend on (transitively).
    fn new(targets: &[String], steps: &[Step], graph: &StepGraph, state: &State) -> Result<Self> {
        if targets.is_empty() {
            return Ok(Selection::all());
        }
        let mut addresses = HashSet::new();
        let mut roots = BTreeSet::new();
        for t in targets {
            let as_step = steps.iter().any(|s| &s.id == t);
            let desired_step = steps
                .iter()
                .find(|s| s.objects.iter().any(|m| &s.address_of(m) == t))
                .map(|s| s.id.clone());
            let recorded_step = state.get(t).map(|r| r.step.clone());
            match (as_step, desired_step.or(recorded_step)) {
                (true, _) => {
                    roots.insert(t.clone());
                }
                (false, Some(step)) => {
                    addresses.insert(t.clone());
                    // Its step's dependencies come along, not the rest of its own step.
                    for dep in graph.dependencies(&step) {
                        roots.insert(dep);
                    }
                }
                (false, None) => {
                    return Err(EngineError::UnknownAddress(format!(
                        "no step or object has the address `{t}` (a target)"
                    ))
                    .into());
                }
            }
        }
        let mut whole = HashSet::new();
        let mut todo: Vec<String> = roots.into_iter().collect();
        while let Some(s) = todo.pop() {
            if whole.insert(s.clone()) {
                todo.extend(graph.dependencies(&s));
            }
        }
        Ok(Selection {
            addresses: Some(addresses),
            steps: whole,
        })
    }

    /// For destroy: the targets alone (what depends on them is the user's call).
    fn for_destroy(targets: &[String], state: &State) -> Result<Self> {
        if targets.is_empty() {
            return Ok(Selection::all());
        }
        let mut addresses = HashSet::new();
        let mut steps = HashSet::new();
        for t in targets {
            if state.objects.iter().any(|r| &r.step == t) {
                steps.insert(t.clone());
            } else if state.get(t).is_some() {
                addresses.insert(t.clone());
            } else {
                return Err(EngineError::UnknownAddress(format!(
                    "the state records no step or object with the address `{t}` (a target)"
                ))
                .into());
            }
        }
        Ok(Selection {
            addresses: Some(addresses),
            steps,
        })
    }

    /// The steps of these applications and of their namespaces (`--app`). For a plan, the platform
    /// must be in the state already and each application in the configuration or the state; for a
    /// destroy, in the state, and a namespace goes only with the last application recorded in it.
    fn for_apps(apps: &[String], steps: &[Step], state: &State, destroy: bool) -> Result<Self> {
        if !destroy
            && !state
                .objects
                .iter()
                .any(|r| !applications::is_app_step(&r.step))
        {
            return Err(EngineError::UnknownApp(
                "the platform is not in the state yet, so no application can be planned on its own: apply the platform first (`vz apply` without --app)"
                    .into(),
            )
            .into());
        }
        // An application's namespace: that of the AuthorizationPolicy of its workloads (named
        // after it; its Gateway may be in istio-system), from the configuration, else the state.
        let workload_policy = |step: &str, kind: &str, name: &str| {
            kind == "AuthorizationPolicy"
                && step.strip_prefix(applications::STEP_PREFIX) == Some(name)
        };
        let namespace_of = |step: &str| -> Option<String> {
            let from_config = steps
                .iter()
                .find(|s| s.id == step)
                .and_then(|s| {
                    s.objects
                        .iter()
                        .find(|m| workload_policy(step, &m.kind, &m.name))
                })
                .and_then(|m| m.namespace.clone());
            from_config.or_else(|| {
                state
                    .objects
                    .iter()
                    .find(|r| r.step == step && workload_policy(step, &r.kind, &r.name))
                    .and_then(|r| r.namespace.clone())
            })
        };
        let mut chosen = HashSet::new();
        for app in apps {
            let step = applications::step_id(app);
            let desired = steps.iter().any(|s| s.id == step);
            let recorded = state.objects.iter().any(|r| r.step == step);
            if !(recorded || desired && !destroy) {
                let known: BTreeSet<&str> = steps
                    .iter()
                    .map(|s| s.id.as_str())
                    .chain(state.objects.iter().map(|r| r.step.as_str()))
                    .filter_map(|id| id.strip_prefix(applications::STEP_PREFIX))
                    .collect();
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.into_iter().collect::<Vec<_>>().join(", ")
                };
                let said = if destroy {
                    format!("the state records no application `{app}` (it records: {known})")
                } else {
                    format!(
                        "neither the configuration nor the state has an application `{app}` (known: {known})"
                    )
                };
                return Err(EngineError::UnknownApp(said).into());
            }
            chosen.insert(step);
        }
        let mut selected: HashSet<String> = chosen.clone();
        for step in &chosen {
            let Some(ns) = namespace_of(step) else {
                continue;
            };
            let shared = destroy
                && state.objects.iter().any(|r| {
                    r.step.starts_with(applications::STEP_PREFIX)
                        && !chosen.contains(&r.step)
                        && workload_policy(&r.step, &r.kind, &r.name)
                        && r.namespace.as_deref() == Some(ns.as_str())
                });
            if !shared {
                selected.insert(applications::namespace_step_id(&ns));
            }
        }
        Ok(Selection {
            addresses: Some(HashSet::new()),
            steps: selected,
        })
    }

    fn includes(&self, address: &str, step: &str) -> bool {
        match &self.addresses {
            None => true,
            Some(a) => a.contains(address) || self.steps.contains(step),
        }
    }
}

/// A kind with at least this many desired objects that no labelled list found is listed by name
/// (metadata only) to learn which of them exist, instead of reading each: on a first plan, that is
/// every kind of a large platform.
const LIST_NAMES_FROM: usize = 8;

/// What the planner learned of the cluster before planning object by object: live objects (from
/// labelled lists) and objects known not to exist (from lists of names). Anything else is read on
/// its own.
#[derive(Debug, Default)]
pub struct Seen {
    objects: HashMap<ObjectRef, Known>,
    absent: HashSet<ObjectRef>,
    /// Kinds (apiVersion, kind) the API server does not serve (yet).
    unserved: HashSet<(String, String)>,
}

impl Seen {
    /// Take what is known of `r` whole: `Some(Some(live))`, `Some(None)` when it does not exist,
    /// `None` when it was not read (or listed by its metadata only).
    pub fn take_whole(&mut self, r: &ObjectRef) -> Option<Option<Value>> {
        match self.objects.remove(r) {
            Some(Known::Whole(v)) => Some(Some(v)),
            Some(other) => {
                self.objects.insert(r.clone(), other);
                None
            }
            None => self.absent.contains(r).then_some(None),
        }
    }

    /// Whether listing found the kind of `m` not served: none of its objects can exist yet.
    fn unserved(&self, m: &Manifest) -> bool {
        self.unserved
            .contains(&(m.api_version.clone(), m.kind.clone()))
    }

    /// What is known of `r`, handing a listed object over rather than copying it.
    fn take(&mut self, r: &ObjectRef) -> Option<Known> {
        match self.objects.remove(r) {
            Some(known) => Some(known),
            None => self.absent.contains(r).then_some(Known::Absent),
        }
    }
}

/// What was read of one object before planning it.
#[derive(Debug, Clone)]
enum Known {
    /// It does not exist.
    Absent,
    /// The whole object (but its `managedFields`).
    Whole(Value),
    /// The facts of its metadata only: enough to decide that nothing changes; anything else reads
    /// it whole.
    Metadata(Live),
}

/// Read the cluster ahead of planning, a kind at a time: one labelled LIST per kind the state
/// records (the platform's live objects), then, for each kind with many desired objects not found
/// that way, one list of names (which of them exist at all). Objects found neither way (few of a
/// kind, or a list refused, e.g. not allowed cluster-wide) are read one by one later.
async fn prefetch(
    cluster: &Cluster,
    desired: &[(&Step, &Manifest)],
    state: &State,
    parallelism: usize,
    views: bool,
) -> Seen {
    let mut seen = Seen::default();
    let platform = desired
        .first()
        .and_then(|(_, m)| m.body.pointer("/metadata/labels"))
        .and_then(|l| l.get(PLATFORM_LABEL))
        .and_then(Value::as_str);
    if let Some(platform) = platform {
        // Only kinds vz already manages objects of: on a first plan there is nothing to list.
        let recorded: HashSet<(&str, &str)> = state
            .objects
            .iter()
            .map(|r| (r.api_version.as_str(), r.kind.as_str()))
            .collect();
        let kinds: BTreeSet<(&str, &str)> = desired
            .iter()
            .map(|(_, m)| (m.api_version.as_str(), m.kind.as_str()))
            .filter(|k| recorded.contains(k))
            .collect();
        // Secrets whole: certificates are judged by what they hold. Everything else by its
        // metadata, the kinds connectivity depends on included: an unchanged policy is as
        // desired, and one that changes is read whole when it is planned (at thousands of
        // applications, holding every policy as listed was a third of a no-op plan's memory).
        let listing = |api_version: &str, kind: &str| {
            if views || (api_version, kind) == ("v1", "Secret") {
                Listing::Slim
            } else {
                Listing::Metadata
            }
        };
        seen.objects = list_platform(cluster, kinds, platform, parallelism, listing).await;
    }
    let mut unread: HashMap<(&str, &str), Vec<ObjectRef>> = HashMap::new();
    for (_, m) in desired {
        let r = ObjectRef::of(m);
        if !seen.objects.contains_key(&r) {
            unread
                .entry((m.api_version.as_str(), m.kind.as_str()))
                .or_default()
                .push(r);
        }
    }
    let names =
        stream::iter(
            unread
                .into_iter()
                .filter(|(_, refs)| refs.len() >= LIST_NAMES_FROM)
                .map(|(kind, refs)| async move {
                    (cluster.list_names(kind.0, kind.1).await, kind, refs)
                }),
        )
        .buffer_unordered(parallelism.max(1))
        .collect::<Vec<_>>()
        .await;
    for (listed, (api_version, kind), refs) in names {
        let existing = match listed {
            Ok(Some(existing)) => existing,
            Ok(None) => {
                seen.unserved
                    .insert((api_version.to_string(), kind.to_string()));
                continue;
            }
            // A list refused (e.g. not allowed cluster-wide): its objects are read one by one.
            Err(_) => continue,
        };
        seen.absent
            .extend(refs.into_iter().filter(|r| !existing.contains(r)));
    }
    seen
}

/// The live objects of `kinds` that carry `platform`'s labels: one labelled list per kind, in
/// parallel, each as `listing` says (never with `managedFields`: a plan does not read them, and
/// they are often the bigger part of an object).
async fn list_platform(
    cluster: &Cluster,
    kinds: BTreeSet<(&str, &str)>,
    platform: &str,
    parallelism: usize,
    listing: impl Fn(&str, &str) -> Listing,
) -> HashMap<ObjectRef, Known> {
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{PLATFORM_LABEL}={platform}");
    let selector = &selector;
    let lists: Vec<Result<Vec<(ObjectRef, Known)>>> =
        stream::iter(kinds.into_iter().map(|(a, k)| {
            let how = listing(a, k);
            let keep = move |v: Value| {
                let r = ref_of(&v).ok()?;
                Some(match how {
                    Listing::Metadata => (r, Known::Metadata(Live::of(&v))),
                    Listing::Whole | Listing::Slim => (r, Known::Whole(v)),
                })
            };
            async move {
                let listed = cluster.list_selected(a, k, selector, how, keep).await;
                listed.map(Option::unwrap_or_default)
            }
        }))
        .buffered(parallelism.max(1))
        .collect()
        .await;
    // A list refused: its objects are read one by one.
    lists.into_iter().flatten().flatten().collect()
}

/// The change with every sensitive value masked, so nothing printed or saved reveals one.
fn masked(mut c: Change) -> Change {
    let kind = c.object.kind.clone();
    for v in [&mut c.before, &mut c.after].into_iter().flatten() {
        *v = mask_object(&kind, v);
    }
    mask_fields(&kind, &mut c.fields);
    c
}

/// The change that creates `m` (what every desired object starts as).
fn create(step: &Step, m: &Manifest) -> Change {
    Change {
        address: step.address_of(m),
        step: step.id.clone(),
        object: ObjectRef::of(m),
        action: Action::Create,
        cause: Cause::Config,
        desired: Some(m.clone()),
        desired_sha256: Some(m.sha256()),
        live_uid: None,
        live_resource_version: None,
        before: None,
        after: None,
        fields: unknown_fields(None, m),
        forces_replacement: vec![],
        reissue: None,
        follows: None,
        certificate: None,
        intent: None,
        status: None,
    }
}

/// The facts the state recorded about an object.
fn recorded(r: &ObjectRecord) -> Recorded {
    Recorded {
        uid: r.uid.clone(),
        manifest_sha256: r.manifest_sha256.clone(),
        resource_version: r.resource_version.clone(),
    }
}

/// Plan one desired object: gather the facts (the live object, a dry run when needed) and let
/// [`decide`] decide. `seen` is the live object when it was read already (`Some(None)`: absent).
#[allow(clippy::too_many_arguments)]
async fn plan_desired(
    cluster: &Cluster,
    step: &Step,
    m: &Manifest,
    record: Option<&ObjectRecord>,
    replace: bool,
    refresh: bool,
    seen: Option<Known>,
    plannings: &Plannings,
    views: bool,
) -> Result<Change> {
    let mut change = create(step, m);
    let prepared = plannings.prepare(m);
    change.certificate = prepared.current.clone();
    change.status = prepared.status.clone();
    // What the plan shows as known only after apply: values from other steps, values copied from
    // a certificate issued in this run, and the key material of a certificate issued in this run.
    let mut shown = m.clone();
    shown.unknown.extend(prepared.unknown.iter().cloned());
    let platform = m
        .body
        .pointer("/metadata/labels")
        .and_then(|l| l.get(PLATFORM_LABEL))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sha = change.desired_sha256.clone().unwrap_or_default();
    let want = Wanted {
        sha256: &sha,
        has_unknown: shown.has_unknown(),
        ownership: m.ownership,
        platform,
        // A provider that decided what to do to the object plans its replacement itself.
        replace: replace && prepared.intent.is_none(),
        refresh,
        exclusive: m.exclusive.is_some(),
    };
    let recorded = record.map(recorded);
    // An object listed by its metadata is read whole when more than its metadata matters: it
    // holds copied values or a certificate, it changes, or the plan keeps its views.
    let (mut live_obj, mut listed) = match (refresh, seen) {
        (false, _) => (None, None),
        (true, Some(Known::Absent)) => (None, None),
        (true, Some(Known::Whole(v))) => (Some(v), None),
        (true, Some(Known::Metadata(facts))) => (None, Some(facts)),
        (true, None) => (cluster.get(&change.object).await?, None),
    };
    if listed.is_some() && (prepared.reads_whole || views) {
        live_obj = cluster.get(&change.object).await?;
        listed = None;
    }
    plannings.shown_unknown(&mut shown.unknown, live_obj.as_ref());
    let judge = |live: Option<&Live>| {
        let verdict = decide::desired(recorded.as_ref(), live, &want);
        match live {
            Some(l) => issued_again(verdict, &prepared, recorded.as_ref(), l, &want),
            None => verdict,
        }
    };
    let partial = listed.is_some();
    let mut live = listed.or_else(|| live_obj.as_ref().map(Live::of));
    let mut verdict = judge(live.as_ref());
    let unchanged = |v: &Verdict| matches!(v, Verdict::Decided(o) if o.action == Action::NoOp);
    if partial && !unchanged(&verdict) {
        live_obj = cluster.get(&change.object).await?;
        live = live_obj.as_ref().map(Live::of);
        verdict = judge(live.as_ref());
    }
    if live.is_some() {
        change.live_uid = live.as_ref().and_then(|l| l.uid.clone());
        change.live_resource_version = live.as_ref().and_then(|l| l.resource_version.clone());
    } else if !refresh {
        change.live_uid = record.map(|r| r.uid.clone());
    }
    // The live object as shown and diffed: not needed for an object with nothing to change,
    // unless the plan's views are kept.
    if viewed(views, &m.kind) || !unchanged(&verdict) {
        change.before = live_obj.as_ref().map(normalize);
    }
    let outcome = match verdict {
        Verdict::Decided(o) => o,
        Verdict::OtherPlatform(platform) => {
            return Err(EngineError::OtherPlatform {
                object: change.object.to_string(),
                platform,
            }
            .into());
        }
        Verdict::NotOurs => {
            return Err(EngineError::NotOurs {
                object: change.object.to_string(),
                address: change.address.clone(),
                what: m.exclusive.clone().unwrap_or_default(),
            }
            .into());
        }
        Verdict::DryRun => {
            let (Some(live), Some(before)) = (&live, &change.before) else {
                bail!(
                    "internal: a dry run was asked for {} without a live object",
                    change.object
                );
            };
            let sent = plannings
                .for_dry_run(m, live_obj.as_ref())
                .with_context(|| format!("internal: {} has values not known yet", change.object))?;
            let said = match cluster.dry_run(&sent).await? {
                DryRun::Applied(after) => {
                    let after = normalize(&after);
                    change.fields = diff(before, &after);
                    change.after = Some(after);
                    if change.fields.is_empty() {
                        DryRunSaid::NoChange
                    } else {
                        DryRunSaid::Changes
                    }
                }
                DryRun::Immutable(fields) if m.ownership == Ownership::Patched => {
                    return Err(EngineError::CannotPatch {
                        object: change.object.to_string(),
                        fields: fields.join(", "),
                    }
                    .into());
                }
                DryRun::Immutable(fields) => {
                    change.forces_replacement = fields;
                    DryRunSaid::Immutable
                }
            };
            let o = decide::after_dry_run(recorded.as_ref(), live, &want, said);
            if prepared.reissue.is_some() {
                reissued(o)
            } else {
                o
            }
        }
    };
    change.action = outcome.action;
    change.cause = outcome.cause;
    show_known_after_apply(&mut change, m, shown, &prepared);
    if views {
        change.after.get_or_insert_with(|| Value::clone(&m.body));
    } else if !viewed(views, &m.kind) || change.action == Action::NoOp {
        // An unchanged object is as desired: connectivity reads it from there.
        change.before = None;
        change.after = None;
    }
    Ok(change)
}

/// A certificate issued again is an update even when nothing else changes. A copy of a CA issued
/// again needs no dry run (the copy is not known yet, and nothing else of it changes); a
/// certificate's Secret still gets one, with the data it holds, to show its other changes.
fn issued_again(
    verdict: Verdict,
    prepared: &Prepared,
    recorded: Option<&Recorded>,
    live: &Live,
    want: &Wanted<'_>,
) -> Verdict {
    match verdict {
        Verdict::Decided(o) if prepared.reissue.is_some() || prepared.follows.is_some() => {
            Verdict::Decided(reissued(o))
        }
        Verdict::DryRun if prepared.follows.is_some() => Verdict::Decided(reissued(
            decide::after_dry_run(recorded, live, want, DryRunSaid::Changes),
        )),
        other => other,
    }
}

/// The outcome for an object whose certificate (or copy of one) is issued again: an update, whose
/// cause is the certificate unless it is taken over or recovered.
fn reissued(o: decide::Outcome) -> decide::Outcome {
    match (o.action, o.cause) {
        (Action::NoOp, _) | (Action::Update, Cause::Config | Cause::Drift) => decide::Outcome {
            action: Action::Update,
            cause: Cause::Reissue,
        },
        _ => o,
    }
}

/// Fill in what the change shows as known only after apply: `shown` is the desired object with
/// every such field listed in [`Manifest::unknown`]; an issued certificate adds its keys.
fn show_known_after_apply(
    change: &mut Change,
    m: &Manifest,
    mut shown: Manifest,
    prepared: &Prepared,
) {
    // A replaced certificate is issued anew (`--replace` is how to rotate one on demand).
    let issued = matches!(change.action, Action::Create | Action::Replace)
        || (change.action == Action::Update && prepared.reissue.is_some());
    if issued && !prepared.made_at_apply.is_empty() {
        change.reissue = prepared.reissue.clone();
        shown.unknown.extend(prepared.made_at_apply.iter().cloned());
    }
    if change.action == Action::Update {
        change.follows = prepared.follows.clone();
        change.intent = prepared.intent.clone();
    }
    let certificate_replaced =
        change.action == Action::Replace && !prepared.made_at_apply.is_empty();
    match change.action {
        Action::Update | Action::Create if shown.has_unknown() => {
            // Next to what a dry run found (a certificate's other fields), if one was made.
            let unknown = unknown_fields(change.before.as_ref(), &shown);
            change
                .fields
                .retain(|f| !unknown.iter().any(|u| u.path == f.path));
            change.fields.extend(unknown);
            change.after.get_or_insert_with(|| Value::clone(&m.body));
        }
        _ if certificate_replaced => {
            change.fields = unknown_fields(change.before.as_ref(), &shown);
            change.after = Some(Value::clone(&m.body));
        }
        _ => {}
    }
}

/// The facts of a recorded object's origin.
fn origin(r: &ObjectRecord) -> Origin {
    match (r.patched, r.adopted) {
        (true, _) => Origin::Patched,
        (false, true) => Origin::Adopted,
        (false, false) => Origin::Created,
    }
}

/// The object a record names.
/// `deletions`, with those of objects that `desired` keeps under another address made a
/// [`Cause::Moved`] forget: deleting them at the end of apply would delete what the other address
/// just applied.
fn moved(deletions: Vec<Change>, desired: &[Change]) -> Vec<Change> {
    let identity = |o: &ObjectRef| {
        (
            order::group_of(&o.api_version).to_string(),
            o.kind.clone(),
            o.namespace.clone(),
            o.name.clone(),
        )
    };
    let kept: HashSet<_> = desired.iter().map(|c| identity(&c.object)).collect();
    deletions
        .into_iter()
        .map(|mut c| {
            if matches!(c.action, Action::Delete | Action::Release)
                && kept.contains(&identity(&c.object))
            {
                c.action = Action::Forget;
                c.cause = Cause::Moved;
            }
            c
        })
        .collect()
}

fn record_ref(r: &ObjectRecord) -> ObjectRef {
    ObjectRef {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
    }
}

/// The live objects of `records` that carry `platform`'s labels: one labelled list per kind.
async fn list_recorded(
    cluster: &Cluster,
    records: &[&ObjectRecord],
    platform: &str,
    parallelism: usize,
    views: bool,
) -> HashMap<ObjectRef, Known> {
    let kinds = records
        .iter()
        .map(|r| (r.api_version.as_str(), r.kind.as_str()))
        .collect();
    let listing = |_: &str, kind: &str| {
        if views || shapes_connectivity(kind) {
            Listing::Slim
        } else {
            Listing::Metadata
        }
    };
    list_platform(cluster, kinds, platform, parallelism, listing).await
}

/// Plan the removal of a recorded object that is no longer desired; `seen` is the live object when
/// it was read already. With `views`, the change keeps the live object as its `before`.
async fn plan_delete_seen(
    cluster: &Cluster,
    r: &ObjectRecord,
    refresh: bool,
    seen: Option<Known>,
    views: bool,
) -> Result<Change> {
    let object = record_ref(r);
    let (facts, live) = match (refresh, seen) {
        (false, _) | (true, Some(Known::Absent)) => (None, None),
        (true, Some(Known::Metadata(facts))) => (Some(facts), None),
        (true, Some(Known::Whole(v))) => (Some(Live::of(&v)), Some(v)),
        (true, None) => {
            let v = match cluster.get(&object).await {
                Ok(v) => v,
                // Its kind is no longer served: deleting a CRD deletes its objects (a destroy
                // killed after deleting Istio's CRDs leaves their objects recorded).
                Err(e) if e.is::<NotServed>() => None,
                Err(e) => return Err(e),
            };
            (v.as_ref().map(Live::of), v)
        }
    };
    // What a deleted object connectivity depends on held, for the flows its deletion changes.
    let live = match (live, &facts) {
        (None, Some(_)) if shapes_connectivity(&r.kind) => cluster.get(&object).await?,
        (live, _) => live,
    };
    let live_uid = match (facts, refresh) {
        (Some(l), _) => l.uid,
        (None, false) => Some(r.uid.clone()),
        (None, true) => None,
    };
    let action = decide::removal(&r.uid, origin(r), live_uid.as_deref());
    Ok(masked(Change {
        address: r.address.clone(),
        step: r.step.clone(),
        object,
        action,
        cause: Cause::Config,
        desired: None,
        desired_sha256: None,
        live_uid,
        live_resource_version: None,
        before: live
            .as_ref()
            .filter(|_| viewed(views, &r.kind))
            .map(normalize),
        after: None,
        fields: vec![],
        forces_replacement: vec![],
        reissue: None,
        follows: None,
        certificate: None,
        intent: None,
        status: None,
    }))
}
