//! Planning: the difference between the desired objects, the recorded state and the live cluster.
//!
//! For each desired object the live object is read. A missing object is to be created. An existing
//! one is server-side applied in dry-run mode, which gives exactly what an apply would leave in the
//! cluster (defaults, other managers' fields and all); the field-level difference between the live
//! object and that result is the update. Recorded objects that are no longer desired are to be deleted.
//! Reads and dry runs go out in parallel.

use std::collections::HashSet;

use anyhow::Result;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;
use vz_providers::{Manifest, Step};
use vz_state::{ObjectRecord, State};

use crate::cluster::{Cluster, ObjectRef};
use crate::diff::{FieldChange, diff, normalize};

/// What will happen to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the cluster already matches.
    NoOp,
    /// The object will be created.
    Create,
    /// The object will be changed in place.
    Update,
    /// The object will be deleted.
    Delete,
    /// The object is recorded but already gone: it is dropped from the state.
    Forget,
}

/// Why a change is needed, beyond the action itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The configuration asks for it.
    Config,
    /// The object was changed outside `vz` since the last apply; the change puts it back.
    Drift,
    /// The object was deleted outside `vz`; it will be created again.
    DeletedOutside,
    /// The object exists but `vz` does not manage it yet; it will be taken over.
    Adopt,
}

/// One object's entry in the plan.
#[derive(Debug, Clone)]
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
    /// The desired object (for everything but deletes).
    pub desired: Option<Manifest>,
    /// The uid of the live object, when it exists.
    pub live_uid: Option<String>,
    /// Field-level differences (updates only).
    pub fields: Vec<FieldChange>,
}

/// The whole plan, ordered: steps in dependency order, objects in step order, then deletions in the
/// reverse of the order they were applied.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every object's entry, including no-ops.
    pub changes: Vec<Change>,
}

impl Plan {
    /// (to add, to change, to destroy).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        (
            count(Action::Create),
            count(Action::Update),
            count(Action::Delete),
        )
    }

    /// Whether applying the plan would change the cluster.
    pub fn has_changes(&self) -> bool {
        self.counts() != (0, 0, 0)
    }

    /// Whether applying the plan would change the cluster or the state.
    pub fn has_work(&self) -> bool {
        self.has_changes() || self.changes.iter().any(|c| c.action == Action::Forget)
    }
}

/// Plan the desired `steps` (in `order`) against `state` and the cluster.
pub async fn plan(
    cluster: &Cluster,
    steps: &[Step],
    order: &[String],
    state: &State,
    parallelism: usize,
) -> Result<Plan> {
    let mut desired: Vec<(&Step, &Manifest)> = Vec::new();
    for id in order {
        if let Some(step) = steps.iter().find(|s| &s.id == id) {
            desired.extend(step.objects.iter().map(|m| (step, m)));
        }
    }
    let wanted: HashSet<String> = desired.iter().map(|(s, m)| s.address_of(m)).collect();

    let mut changes: Vec<Change> = stream::iter(desired.into_iter().map(|(step, m)| {
        let record = state.get(&step.address_of(m));
        plan_desired(cluster, step, m, record)
    }))
    .buffered(parallelism.max(1))
    .try_collect()
    .await?;

    let gone: Vec<&ObjectRecord> = state
        .objects
        .iter()
        .rev()
        .filter(|r| !wanted.contains(&r.address))
        .collect();
    let deletions: Vec<Change> = stream::iter(gone.into_iter().map(|r| plan_delete(cluster, r)))
        .buffered(parallelism.max(1))
        .try_collect()
        .await?;
    changes.extend(deletions);
    Ok(Plan { changes })
}

/// Plan the deletion of everything `state` records.
pub async fn plan_destroy(cluster: &Cluster, state: &State, parallelism: usize) -> Result<Plan> {
    let changes = stream::iter(state.objects.iter().rev().map(|r| plan_delete(cluster, r)))
        .buffered(parallelism.max(1))
        .try_collect()
        .await?;
    Ok(Plan { changes })
}

async fn plan_desired(
    cluster: &Cluster,
    step: &Step,
    m: &Manifest,
    record: Option<&ObjectRecord>,
) -> Result<Change> {
    let object = ObjectRef::of(m);
    let live = cluster.get(&object).await?;
    let mut change = Change {
        address: step.address_of(m),
        step: step.id.clone(),
        object,
        action: Action::Create,
        cause: if record.is_some() {
            Cause::DeletedOutside
        } else {
            Cause::Config
        },
        desired: Some(m.clone()),
        live_uid: None,
        fields: vec![],
    };
    let Some(live) = live else {
        return Ok(change);
    };
    change.live_uid = live
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let after = cluster.apply(m, true).await?;
    change.fields = diff(&normalize(&live), &normalize(&after));
    let config_unchanged = record.is_some_and(|r| r.manifest_sha256 == m.sha256());
    (change.action, change.cause) = match (record, change.fields.is_empty()) {
        (None, _) => (Action::Update, Cause::Adopt),
        (Some(_), true) => (Action::NoOp, Cause::Config),
        (Some(_), false) if config_unchanged => (Action::Update, Cause::Drift),
        (Some(_), false) => (Action::Update, Cause::Config),
    };
    Ok(change)
}

async fn plan_delete(cluster: &Cluster, r: &ObjectRecord) -> Result<Change> {
    let object = ObjectRef {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
    };
    let live = cluster.get(&object).await?;
    let live_uid = live
        .as_ref()
        .and_then(|l| l.pointer("/metadata/uid"))
        .and_then(Value::as_str)
        .map(str::to_string);
    // An object with another uid was re-created by someone else: it is not ours to delete.
    let ours = live_uid.as_deref() == Some(r.uid.as_str());
    Ok(Change {
        address: r.address.clone(),
        step: r.step.clone(),
        object,
        action: if ours { Action::Delete } else { Action::Forget },
        cause: Cause::Config,
        desired: None,
        live_uid,
        fields: vec![],
    })
}
