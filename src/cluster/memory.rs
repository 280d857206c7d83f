//! An in-memory cluster for the engine's unit tests: [`ClusterApi`] with the API server's rules
//! that the engine's decisions depend on.
//!
//! - **Server-side apply and field ownership.** Each object carries `managedFields` in the API
//!   server's `FieldsV1` form. An apply takes the fields it sets from managers that hold them with
//!   another value (it always forces, as `vz` does), shares those set to the same value, and
//!   removes the fields its manager set last time and no longer sets, unless another manager
//!   holds them. Updates (replace, merge patch) give the fields they change to their manager;
//!   a replace that carries `managedFields` sets them first (how a restore puts managers back).
//!   Lists whose items all have a `name` are merged by name (`k:{"name":…}`), as the built-in
//!   kinds' containers, ports and webhooks are; other lists are atomic. That is the whole of
//!   the schema it knows.
//! - **resourceVersion**: one counter for the cluster; a write that changes nothing does not move
//!   it; a replace based on an older version is a conflict. `generation` moves when anything but
//!   metadata and status changes. `status` is a subresource: applies and replaces leave it.
//! - **Deletion**: an object with finalizers gets a `deletionTimestamp` and stays until an update
//!   removes them; a Namespace takes its objects with it, a CustomResourceDefinition its kind.
//! - **Kinds**: the built-in API groups are served; other kinds once a CRD names them.
//!   A namespaced object needs its namespace.
//! - **Controllers**, unless an object is [`MemoryCluster::hold`]: Namespaces are Active, CRDs
//!   Established, Deployments available, Jobs complete, LoadBalancer Services get an address,
//!   the servers behind service webhooks write their CA bundles.
//! - **Faults**: [`MemoryCluster::fail`] makes requests on an object fail, before or after they
//!   take effect (an answer lost on the way back).
//!
//! Every request is logged ([`MemoryCluster::requests`]) so that a test can check order and count.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use anyhow::Result;
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::api::{ApiError, ClusterApi, Failure, Watched};
use super::{Deleted, Listing, NotServed, ObjectRef};

/// The URL the in-memory cluster calls itself.
pub const SERVER: &str = "memory://cluster";

/// The manager of an update that names none (the API server derives it from the User-Agent:
/// `vz/…` gives `vz`).
const DEFAULT_MANAGER: &str = "vz";

/// The CA bundle the servers behind service webhooks write into their configurations
/// ("-----BEGIN CERTIFICATE-----\nmemory\n-----END CERTIFICATE-----\n", base64).
const WEBHOOK_CA_BUNDLE: &str =
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCm1lbW9yeQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==";

/// The built-in API versions, whose every kind is served.
const BUILT_IN: &[&str] = &[
    "v1",
    "apps/v1",
    "batch/v1",
    "rbac.authorization.k8s.io/v1",
    "networking.k8s.io/v1",
    "policy/v1",
    "autoscaling/v2",
    "admissionregistration.k8s.io/v1",
    "apiextensions.k8s.io/v1",
    "coordination.k8s.io/v1",
    "scheduling.k8s.io/v1",
];

/// Built-in kinds that are cluster-scoped; every other built-in kind is namespaced.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "CustomResourceDefinition",
    "PriorityClass",
];

/// Fields that cannot change once set, per kind (JSON pointers).
const IMMUTABLE: &[(&str, &str, &str)] = &[
    ("apps/v1", "Deployment", "/spec/selector"),
    ("apps/v1", "DaemonSet", "/spec/selector"),
    ("batch/v1", "Job", "/spec/template"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "/roleRef"),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "/roleRef",
    ),
];

/// A kind of request, for [`MemoryCluster::fail`] and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Get,
    /// A server-side apply that stores.
    Apply,
    /// A dry-run apply.
    DryRun,
    /// A merge patch.
    Patch,
    /// A create.
    Create,
    /// A replace.
    Replace,
    /// A delete.
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Apply => "apply",
            Op::DryRun => "dry-run",
            Op::Patch => "patch",
            Op::Create => "create",
            Op::Replace => "replace",
            Op::Delete => "delete",
        }
    }
}

struct Fault {
    op: Op,
    name: String,
    failure: Failure,
    /// The request takes effect before the error is answered.
    after: bool,
    times: usize,
}

type Key = (String, String, Option<String>, String);

fn key(r: &ObjectRef) -> Key {
    (
        r.api_version.clone(),
        r.kind.clone(),
        r.namespace.clone(),
        r.name.clone(),
    )
}

#[derive(Default)]
struct World {
    version: u64,
    uids: u64,
    objects: BTreeMap<Key, Value>,
    /// Kinds CRDs serve: (apiVersion, kind) -> namespaced.
    custom: BTreeMap<(String, String), bool>,
    held: HashSet<String>,
    faults: Vec<Fault>,
    log: Vec<String>,
}

/// An in-memory cluster (see the module's documentation).
pub struct MemoryCluster {
    world: Mutex<World>,
    changes: watch::Sender<u64>,
}

impl Default for MemoryCluster {
    fn default() -> Self {
        MemoryCluster::new()
    }
}

impl MemoryCluster {
    /// An empty cluster: the built-in kinds, no objects.
    pub fn new() -> MemoryCluster {
        MemoryCluster {
            world: Mutex::new(World::default()),
            changes: watch::channel(0).0,
        }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        // A test that panicked while holding the lock fails anyway: go on with what is there.
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leave objects named `name` alone: no controller makes them ready, and (for deletion) no
    /// namespace controller empties them.
    pub fn hold(&self, name: &str) {
        self.world().held.insert(name.to_string());
    }

    /// Let the controllers handle `name` again (and run them on it now).
    pub fn release_hold(&self, name: &str) {
        let mut w = self.world();
        w.held.remove(name);
        let keys: Vec<Key> = w.objects.keys().filter(|k| k.3 == name).cloned().collect();
        for k in keys {
            if let Some(mut obj) = w.objects.remove(&k) {
                control(&mut obj);
                w.version += 1;
                set_meta(&mut obj, "resourceVersion", json!(w.version.to_string()));
                w.objects.insert(k, obj);
            }
        }
        self.changes.send_replace(w.version);
    }

    /// Make the next `times` requests `op` on objects named `name` fail with `failure`; with
    /// `after`, once they took effect (the answer was lost).
    pub fn fail(&self, op: Op, name: &str, failure: Failure, after: bool, times: usize) {
        self.world().faults.push(Fault {
            op,
            name: name.to_string(),
            failure,
            after,
            times,
        });
    }

    /// Put an object in as someone else would (`manager`, an update; no namespace needed).
    /// Returns it as stored.
    pub fn put(&self, manager: &str, obj: Value) -> Value {
        let r = super::ref_of(&obj).expect("a test object has apiVersion, kind and name");
        let mut w = self.world();
        let old = w.objects.get(&key(&r)).cloned();
        let mut new = obj;
        if let Some(old) = &old {
            if let Some(status) = old.get("status") {
                new["status"] = status.clone();
            }
            set_meta(&mut new, "managedFields", meta(old, "managedFields"));
        }
        let stored = w.store(&r, old.as_ref(), new, manager, "Update");
        self.changes.send_replace(w.version);
        stored
    }

    /// Remove the finalizers of `r` (a controller done with it), so that a deletion completes.
    pub fn finalize(&self, r: &ObjectRef) {
        let mut w = self.world();
        let k = key(r);
        let Some(mut obj) = w.objects.get(&k).cloned() else {
            return;
        };
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("finalizers");
        }
        let old = w.objects.get(&k).cloned();
        w.store(r, old.as_ref(), obj, "test-controller", "Update");
        self.changes.send_replace(w.version);
    }

    /// The object `r`, as stored.
    pub fn object(&self, r: &ObjectRef) -> Option<Value> {
        self.world().objects.get(&key(r)).cloned()
    }

    /// Every object stored, as `Kind namespace/name`.
    pub fn names(&self) -> Vec<String> {
        self.world()
            .objects
            .values()
            .filter_map(|o| super::ref_of(o).ok())
            .map(|r| r.to_string())
            .collect()
    }

    /// The requests made so far, as `op Kind namespace/name` (reads and lists included).
    pub fn requests(&self) -> Vec<String> {
        self.world().log.clone()
    }

    /// The writes made so far (applies, patches, creates, replaces, deletes), as
    /// `op Kind namespace/name`.
    pub fn writes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|l| {
                !l.starts_with("get ") && !l.starts_with("list ") && !l.starts_with("dry-run ")
            })
            .collect()
    }

    /// Start a request: log it, and meet its fault, if any: at once, or (`Some`) once the request
    /// took effect.
    fn begin(&self, op: Op, r: &ObjectRef) -> Result<Option<Failure>> {
        let mut w = self.world();
        w.log.push(format!("{} {r}", op.name()));
        let fault = w
            .faults
            .iter_mut()
            .find(|f| f.op == op && f.name == r.name && f.times > 0);
        let Some(f) = fault else {
            drop(w);
            return Ok(None);
        };
        f.times -= 1;
        if !f.after {
            return Err(injected(&f.failure, op, r));
        }
        Ok(Some(f.failure.clone()))
    }

    /// Whether a kind is served, and namespaced.
    fn scope(&self, api_version: &str, kind: &str) -> Result<bool> {
        scope(&self.world(), api_version, kind)
    }

    fn check_scope(&self, r: &ObjectRef) -> Result<()> {
        check_scope(&self.world(), r)
    }
}

/// The outcome of a request that took effect, or the fault answered instead.
fn answer<T>(fault: Option<Failure>, op: Op, r: &ObjectRef, outcome: T) -> Result<T> {
    match fault {
        Some(failure) => Err(injected(&failure, op, r)),
        None => Ok(outcome),
    }
}

/// Whether a kind is served in `w`, and namespaced.
fn scope(w: &World, api_version: &str, kind: &str) -> Result<bool> {
    if BUILT_IN.contains(&api_version) {
        return Ok(!CLUSTER_SCOPED.contains(&kind));
    }
    w.custom
        .get(&(api_version.to_string(), kind.to_string()))
        .copied()
        .ok_or_else(|| {
            NotServed {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                server: SERVER.to_string(),
            }
            .into()
        })
}

fn check_scope(w: &World, r: &ObjectRef) -> Result<()> {
    let namespaced = scope(w, &r.api_version, &r.kind)?;
    match (namespaced, &r.namespace) {
        (true, None) => {
            anyhow::bail!("{r}: {} is namespaced but no namespace was given", r.kind)
        }
        (false, Some(_)) => anyhow::bail!(
            "{r}: {} is cluster-scoped but a namespace was given",
            r.kind
        ),
        _ => Ok(()),
    }
}

fn injected(failure: &Failure, op: Op, r: &ObjectRef) -> anyhow::Error {
    let detail = match failure {
        Failure::Refused => format!(
            "admission webhook \"test\" denied the request to {} {r} [Forbidden] (HTTP 403)",
            op.name()
        ),
        Failure::Failed => "etcdserver: request timed out [InternalError] (HTTP 500)".to_string(),
        Failure::Lost => "connection reset by peer".to_string(),
        Failure::Conflict => format!(
            "Operation cannot be fulfilled on {r}: the object has been modified; please apply your changes to the latest version and try again [Conflict] (HTTP 409)"
        ),
        Failure::NotFound => format!("{r} not found [NotFound] (HTTP 404)"),
        Failure::Immutable(f) => format!(
            "{r} is invalid: {}: field is immutable [Invalid] (HTTP 422)",
            f.join(", ")
        ),
    };
    ApiError::new(failure.clone(), detail).into()
}

fn meta(obj: &Value, field: &str) -> Value {
    obj.pointer(&format!("/metadata/{field}"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn set_meta(obj: &mut Value, field: &str, v: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if v.is_null() {
            m.remove(field);
        } else {
            m.insert(field.to_string(), v);
        }
    }
}

impl World {
    /// Store `new` as `r` (a write by `manager` with `operation`, whose managed fields `new`
    /// carries as they were before it): ownership, identity, versions, controllers, and
    /// deletion once the last finalizer of a deleted object is gone. Returns it as stored.
    fn store(
        &mut self,
        r: &ObjectRef,
        old: Option<&Value>,
        mut new: Value,
        manager: &str,
        operation: &str,
    ) -> Value {
        let api_version = r.api_version.clone();
        if operation == "Update" {
            let mut owners = Owners::of(&new);
            let before = old.map(fields_of).unwrap_or_default();
            let after = fields_of(&new);
            let changed: BTreeSet<Path> = after
                .iter()
                .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(&new, p)))
                .cloned()
                .collect();
            let gone: BTreeSet<Path> = before.difference(&after).cloned().collect();
            owners.take(manager, operation, &api_version, &changed, true);
            owners.drop_paths(&gone);
            owners.write(&mut new);
        }
        for (k, v) in [
            ("apiVersion", json!(r.api_version)),
            ("kind", json!(r.kind)),
        ] {
            new[k] = v;
        }
        set_meta(&mut new, "name", json!(r.name));
        if let Some(ns) = &r.namespace {
            set_meta(&mut new, "namespace", json!(ns));
        }
        match old {
            Some(o) => {
                for f in ["uid", "creationTimestamp", "deletionTimestamp"] {
                    set_meta(&mut new, f, meta(o, f));
                }
                let generation = meta(o, "generation").as_i64().unwrap_or(1);
                let spec_changed = strip_meta(o) != strip_meta(&new);
                set_meta(
                    &mut new,
                    "generation",
                    json!(generation + i64::from(spec_changed)),
                );
                set_meta(&mut new, "resourceVersion", meta(o, "resourceVersion"));
            }
            None => {
                self.uids += 1;
                set_meta(&mut new, "uid", json!(format!("uid-{}", self.uids)));
                set_meta(&mut new, "creationTimestamp", json!("2026-01-01T00:00:00Z"));
                set_meta(&mut new, "generation", json!(1));
                set_meta(&mut new, "deletionTimestamp", Value::Null);
            }
        }
        if !self.held.contains(&r.name) {
            control(&mut new);
        }
        if old == Some(&new) {
            return new;
        }
        self.version += 1;
        set_meta(&mut new, "resourceVersion", json!(self.version.to_string()));
        let deleting = !meta(&new, "deletionTimestamp").is_null();
        let finalizers = meta(&new, "finalizers")
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if deleting && !finalizers {
            self.remove(r);
            return new;
        }
        if r.api_version == "apiextensions.k8s.io/v1" && r.kind == "CustomResourceDefinition" {
            self.serve(&new);
        }
        self.objects.insert(key(r), new.clone());
        new
    }

    /// Serve the kinds a CRD names.
    fn serve(&mut self, crd: &Value) {
        let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (group, kind) = (s("/spec/group"), s("/spec/names/kind"));
        let namespaced = s("/spec/scope") != "Cluster";
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(name) = v.get("name").and_then(Value::as_str) {
                self.custom
                    .insert((format!("{group}/{name}"), kind.to_string()), namespaced);
            }
        }
    }

    /// Remove `r`, and what goes with it: a Namespace's objects, a CRD's kind and objects.
    fn remove(&mut self, r: &ObjectRef) {
        let Some(obj) = self.objects.remove(&key(r)) else {
            return;
        };
        if r.api_version == "v1" && r.kind == "Namespace" {
            self.objects
                .retain(|k, _| k.2.as_deref() != Some(r.name.as_str()));
        }
        if r.kind == "CustomResourceDefinition" {
            let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
            let (group, kind) = (s("/spec/group"), s("/spec/names/kind"));
            let prefix = format!("{group}/");
            self.custom
                .retain(|(v, k), _| !(v.starts_with(&prefix) && k == kind));
            self.objects
                .retain(|k, _| !(k.0.starts_with(&prefix) && k.1 == kind));
        }
        self.version += 1;
    }
}

impl MemoryCluster {
    /// A namespaced object's namespace exists (a cluster-scoped one needs none).
    fn namespace_exists(w: &World, r: &ObjectRef) -> Result<()> {
        let Some(ns) = &r.namespace else {
            return Ok(());
        };
        let k = ("v1".to_string(), "Namespace".to_string(), None, ns.clone());
        match w.objects.get(&k) {
            Some(n) if meta(n, "deletionTimestamp").is_null() => Ok(()),
            Some(_) => Err(ApiError::new(
                Failure::Refused,
                format!("namespace {ns} is being terminated, no new content may be created in it [Forbidden] (HTTP 403)"),
            )
            .into()),
            None => Err(ApiError::new(
                Failure::NotFound,
                format!("namespaces \"{ns}\" not found [NotFound] (HTTP 404)"),
            )
            .into()),
        }
    }

    /// What a server-side apply of `body` by `manager` makes of the object (not stored).
    fn applied(
        &self,
        w: &World,
        r: &ObjectRef,
        body: &Value,
        manager: &str,
    ) -> Result<(Option<Value>, Value)> {
        check_scope(w, r)?;
        let old = w.objects.get(&key(r)).cloned();
        if old.is_none() {
            Self::namespace_exists(w, r)?;
        }
        let mut body = body.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("status");
        }
        let mut obj = old.clone().unwrap_or_else(|| json!({"metadata": {}}));
        let mut owners = Owners::of(&obj);
        let applied = fields_of(&body);
        // Fields others set to another value are taken from them (a forced apply); those set to
        // the same value are shared.
        let contested: BTreeSet<Path> = applied
            .iter()
            .filter(|p| value_at(&obj, p) != value_at(&body, p))
            .cloned()
            .collect();
        let before = owners.fields(manager, "Apply");
        owners.take(manager, "Apply", &r.api_version, &contested, false);
        owners.set(manager, "Apply", &r.api_version, applied.clone());
        // What this manager set before and sets no more goes, unless someone else holds it.
        let mut dropped: Vec<&Path> = before
            .difference(&applied)
            .filter(|p| !owners.held_by_other(manager, "Apply", p))
            .collect();
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            remove_at(&mut obj, p);
        }
        merge(&mut obj, &body);
        owners.write(&mut obj);
        if let Some(o) = &old {
            for (api_version, kind, pointer) in IMMUTABLE {
                if *api_version == r.api_version && *kind == r.kind {
                    let (a, b) = (o.pointer(pointer), obj.pointer(pointer));
                    if a.is_some() && a != b {
                        let field = pointer.trim_start_matches('/').replace('/', ".");
                        return Err(injected(&Failure::Immutable(vec![field]), Op::Apply, r));
                    }
                }
            }
        }
        Ok((old, obj))
    }
}

#[async_trait]
impl ClusterApi for MemoryCluster {
    fn server(&self) -> &str {
        SERVER
    }

    async fn served(&self, api_version: &str, kind: &str) -> Result<()> {
        self.scope(api_version, kind).map(|_| ())
    }

    async fn get(&self, r: &ObjectRef) -> Result<Option<Value>> {
        self.begin(Op::Get, r)?;
        if let Err(e) = self.scope(&r.api_version, &r.kind) {
            return match e.downcast::<NotServed>() {
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
        }
        Ok(self.world().objects.get(&key(r)).cloned())
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        selector: &str,
        listing: Listing,
        each: &mut (dyn FnMut(Value) -> Result<()> + Send),
    ) -> Result<bool> {
        self.world().log.push(format!("list {kind}"));
        if self.scope(api_version, kind).is_err() {
            return Ok(false);
        }
        let selector = Selector::parse(selector);
        let found: Vec<Value> = self
            .world()
            .objects
            .iter()
            .filter(|(k, o)| k.0 == api_version && k.1 == kind && selector.matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        for mut o in found {
            if listing != Listing::Whole {
                set_meta(&mut o, "managedFields", Value::Null);
            }
            if listing == Listing::Metadata {
                o = json!({"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": o["metadata"]});
            }
            each(o)?;
        }
        Ok(true)
    }

    async fn apply(
        &self,
        r: &ObjectRef,
        body: &Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Value> {
        let op = if dry_run { Op::DryRun } else { Op::Apply };
        let fault = self.begin(op, r)?;
        let mut w = self.world();
        let (old, obj) = self.applied(&w, r, body, manager)?;
        if dry_run {
            let mut shown = obj;
            if old.is_none() {
                set_meta(&mut shown, "uid", json!("dry-run"));
            }
            return answer(fault, op, r, shown);
        }
        let stored = w.store(r, old.as_ref(), obj, manager, "Apply");
        self.changes.send_replace(w.version);
        drop(w);
        answer(fault, op, r, stored)
    }

    async fn merge_patch(&self, r: &ObjectRef, patch: &Value, manager: &str) -> Result<Value> {
        let fault = self.begin(Op::Patch, r)?;
        self.check_scope(r)?;
        let mut w = self.world();
        let Some(old) = w.objects.get(&key(r)).cloned() else {
            return Err(injected(&Failure::NotFound, Op::Patch, r));
        };
        let mut new = old.clone();
        merge_patch(&mut new, patch);
        if let Some(status) = old.get("status") {
            new["status"] = status.clone();
        }
        let stored = w.store(r, Some(&old), new, manager, "Update");
        self.changes.send_replace(w.version);
        drop(w);
        answer(fault, Op::Patch, r, stored)
    }

    async fn create(&self, r: &ObjectRef, obj: &Value) -> Result<Value> {
        let fault = self.begin(Op::Create, r)?;
        self.check_scope(r)?;
        let mut w = self.world();
        if w.objects.contains_key(&key(r)) {
            return Err(ApiError::new(
                Failure::Refused,
                format!("{r} already exists [AlreadyExists] (HTTP 409)"),
            )
            .into());
        }
        Self::namespace_exists(&w, r)?;
        let mut new = obj.clone();
        if let Some(m) = new.as_object_mut() {
            m.remove("status");
        }
        let stored = w.store(r, None, new, DEFAULT_MANAGER, "Update");
        self.changes.send_replace(w.version);
        drop(w);
        answer(fault, Op::Create, r, stored)
    }

    async fn replace(&self, r: &ObjectRef, obj: &Value, manager: Option<&str>) -> Result<Value> {
        let fault = self.begin(Op::Replace, r)?;
        self.check_scope(r)?;
        let mut w = self.world();
        let Some(old) = w.objects.get(&key(r)).cloned() else {
            return Err(injected(&Failure::NotFound, Op::Replace, r));
        };
        let based_on = meta(obj, "resourceVersion");
        if !based_on.is_null() && based_on != meta(&old, "resourceVersion") {
            return Err(injected(&Failure::Conflict, Op::Replace, r));
        }
        let mut new = obj.clone();
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if meta(&new, "managedFields")
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            set_meta(&mut new, "managedFields", meta(&old, "managedFields"));
        }
        let manager = manager.unwrap_or(DEFAULT_MANAGER);
        let stored = w.store(r, Some(&old), new, manager, "Update");
        self.changes.send_replace(w.version);
        drop(w);
        answer(fault, Op::Replace, r, stored)
    }

    async fn delete(&self, r: &ObjectRef) -> Result<Deleted> {
        let fault = self.begin(Op::Delete, r)?;
        if self.scope(&r.api_version, &r.kind).is_err() {
            return Ok(Deleted::AlreadyGone);
        }
        let mut w = self.world();
        let Some(old) = w.objects.get(&key(r)).cloned() else {
            return Ok(Deleted::AlreadyGone);
        };
        let uid = meta(&old, "uid").as_str().map(str::to_string);
        let finalizers = meta(&old, "finalizers")
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let outcome = if finalizers || w.held.contains(&r.name) && r.kind == "Namespace" {
            let mut new = old.clone();
            set_meta(&mut new, "deletionTimestamp", json!("2026-01-01T00:00:01Z"));
            if r.kind == "Namespace" {
                new["status"] = json!({"phase": "Terminating"});
            }
            w.version += 1;
            set_meta(&mut new, "resourceVersion", json!(w.version.to_string()));
            w.objects.insert(key(r), new);
            Deleted::Started { uid }
        } else {
            w.remove(r);
            Deleted::Gone
        };
        self.changes.send_replace(w.version);
        drop(w);
        answer(fault, Op::Delete, r, outcome)
    }

    async fn watch(&self, r: &ObjectRef, resource_version: &str, timeout_secs: u32) -> Watched {
        let mut rx = self.changes.subscribe();
        let wait = async {
            loop {
                let now = self.world().objects.get(&key(r)).cloned();
                match now {
                    None => return Watched::Deleted,
                    Some(o) if meta(&o, "resourceVersion").as_str() != Some(resource_version) => {
                        return Watched::Changed(o);
                    }
                    Some(_) => {}
                }
                if rx.changed().await.is_err() {
                    return Watched::Nothing;
                }
            }
        };
        let timeout = std::time::Duration::from_secs(u64::from(timeout_secs));
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Watched::Nothing)
    }
}

/// What the controllers of a cluster would make of `obj` by the time anyone looks.
fn control(obj: &mut Value) {
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let deleting = !meta(obj, "deletionTimestamp").is_null();
    match kind.as_str() {
        "Namespace" if !deleting => obj["status"] = json!({"phase": "Active"}),
        "CustomResourceDefinition" => {
            obj["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
        }
        "Deployment" | "StatefulSet" => {
            let n = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            obj["status"] = json!({
                "observedGeneration": meta(obj, "generation").as_i64().unwrap_or(1),
                "replicas": n, "readyReplicas": n, "availableReplicas": n, "updatedReplicas": n,
                "conditions": [{"type": "Available", "status": "True"}],
            });
        }
        "Job" => {
            obj["status"] =
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
        }
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            // The server behind each service webhook writes its CA bundle when it starts.
            for hook in obj
                .get_mut("webhooks")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(config) = hook.get_mut("clientConfig").and_then(Value::as_object_mut)
                    && config.contains_key("service")
                    && !config.contains_key("caBundle")
                {
                    config.insert("caBundle".into(), json!(WEBHOOK_CA_BUNDLE));
                }
            }
        }
        "Service" if obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer") => {
            obj["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
        }
        _ => {}
    }
}

/// A field: `f:<key>` and `k:{"name":…}` steps, as in `FieldsV1`.
type Path = Vec<String>;

/// Whether a list is a map keyed by its items' names.
fn is_named_list(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").and_then(Value::as_str).is_some())
}

fn item_step(item: &Value) -> String {
    format!("k:{}", json!({"name": item["name"]}))
}

/// The fields `obj` sets: leaves, and the items of named lists. Identity (apiVersion, kind,
/// name, namespace), server-set metadata and status are no one's.
fn fields_of(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = v.get(f) {
                        walk(v, vec!["f:metadata".into(), format!("f:{f}")], &mut out);
                    }
                }
            }
            _ => walk(v, vec![format!("f:{k}")], &mut out),
        }
    }
    out
}

fn walk(v: &Value, path: Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                walk(v, p, out);
            }
        }
        Value::Array(items) if is_named_list(items) => {
            for item in items {
                let mut p = path.clone();
                p.push(item_step(item));
                out.insert(p.clone());
                walk(item, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a field, if set.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = obj;
    for step in path {
        v = match step.split_at(2) {
            ("f:", k) => v.get(k)?,
            ("k:", _) => v.as_array()?.iter().find(|i| item_step(i) == *step)?,
            _ => return None,
        };
    }
    Some(v)
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut v = obj;
    for step in parent {
        let next = match step.split_at(2) {
            ("f:", k) => v.get_mut(k),
            ("k:", _) => v
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| item_step(i) == *step)),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return,
        }
    }
    match last.split_at(2) {
        ("f:", k) => {
            if let Some(m) = v.as_object_mut() {
                m.remove(k);
            }
        }
        ("k:", _) => {
            if let Some(a) = v.as_array_mut() {
                a.retain(|i| item_step(i) != *last);
            }
        }
        _ => {}
    }
}

/// Server-side apply's merge: maps by key, named lists by name, anything else replaced.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if is_named_list(a) && is_named_list(b) => {
            for item in b {
                match a.iter_mut().find(|i| i["name"] == item["name"]) {
                    Some(existing) => merge(existing, item),
                    None => a.push(item.clone()),
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// RFC 7386.
fn merge_patch(into: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *into = patch.clone();
        return;
    };
    if !into.is_object() {
        *into = Value::Object(Map::new());
    }
    if let Value::Object(a) = into {
        for (k, v) in p {
            if v.is_null() {
                a.remove(k);
            } else {
                merge_patch(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// An object without its metadata and status: what `generation` counts changes of.
fn strip_meta(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

/// The managers of an object and the fields each holds.
struct Owners {
    /// (manager, operation, apiVersion, fields), in the order of `managedFields`.
    entries: Vec<(String, String, String, BTreeSet<Path>)>,
}

impl Owners {
    fn of(obj: &Value) -> Owners {
        let entries = obj
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                let s = |k: &str| {
                    e.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let mut fields = BTreeSet::new();
                if let Some(f) = e.get("fieldsV1") {
                    paths_of(f, Vec::new(), &mut fields);
                }
                (s("manager"), s("operation"), s("apiVersion"), fields)
            })
            .collect();
        Owners { entries }
    }

    fn fields(&self, manager: &str, operation: &str) -> BTreeSet<Path> {
        self.entries
            .iter()
            .find(|e| e.0 == manager && e.1 == operation)
            .map(|e| e.3.clone())
            .unwrap_or_default()
    }

    fn held_by_other(&self, manager: &str, operation: &str, p: &Path) -> bool {
        self.entries
            .iter()
            .any(|e| !(e.0 == manager && e.1 == operation) && e.3.contains(p))
    }

    /// `paths` go from every other manager; with `add`, to `manager`'s entry too.
    fn take(
        &mut self,
        manager: &str,
        operation: &str,
        api_version: &str,
        paths: &BTreeSet<Path>,
        add: bool,
    ) {
        for e in &mut self.entries {
            if !(e.0 == manager && e.1 == operation) {
                e.3.retain(|p| !paths.contains(p));
            }
        }
        if add && !paths.is_empty() {
            let mut mine = self.fields(manager, operation);
            mine.extend(paths.iter().cloned());
            self.set(manager, operation, api_version, mine);
        }
    }

    fn set(&mut self, manager: &str, operation: &str, api_version: &str, fields: BTreeSet<Path>) {
        match self
            .entries
            .iter_mut()
            .find(|e| e.0 == manager && e.1 == operation)
        {
            Some(e) => e.3 = fields,
            None => self.entries.push((
                manager.to_string(),
                operation.to_string(),
                api_version.to_string(),
                fields,
            )),
        }
    }

    fn drop_paths(&mut self, paths: &BTreeSet<Path>) {
        for e in &mut self.entries {
            e.3.retain(|p| !paths.contains(p));
        }
    }

    fn write(&self, obj: &mut Value) {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .filter(|e| !e.3.is_empty())
            .map(|(manager, operation, api_version, fields)| {
                let mut trie = json!({});
                for p in fields {
                    let mut node = &mut trie;
                    for step in p {
                        node = node
                            .as_object_mut()
                            .map(|m| m.entry(step.clone()).or_insert(json!({})))
                            .expect("a trie node is an object");
                    }
                    if p.last().is_some_and(|s| s.starts_with("k:")) {
                        node["."] = json!({});
                    }
                }
                json!({"manager": manager, "operation": operation, "apiVersion": api_version,
                       "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": trie})
            })
            .collect();
        set_meta(
            obj,
            "managedFields",
            if entries.is_empty() {
                Value::Null
            } else {
                Value::Array(entries)
            },
        );
    }
}

/// The fields a `FieldsV1` trie holds.
fn paths_of(node: &Value, path: Path, out: &mut BTreeSet<Path>) {
    let Some(m) = node.as_object() else { return };
    if m.is_empty() {
        if !path.is_empty() {
            out.insert(path);
        }
        return;
    }
    for (k, v) in m {
        if k == "." {
            out.insert(path.clone());
            continue;
        }
        let mut p = path.clone();
        p.push(k.clone());
        paths_of(v, p, out);
    }
}

/// A label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
struct Selector(Vec<(String, Option<String>, bool)>);

impl Selector {
    fn parse(text: &str) -> Selector {
        let terms = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                if let Some((k, v)) = t.split_once("!=") {
                    (k.to_string(), Some(v.to_string()), false)
                } else if let Some((k, v)) = t.split_once('=') {
                    (
                        k.to_string(),
                        Some(v.trim_start_matches('=').to_string()),
                        true,
                    )
                } else if let Some(k) = t.strip_prefix('!') {
                    (k.to_string(), None, false)
                } else {
                    (t.to_string(), None, true)
                }
            })
            .collect();
        Selector(terms)
    }

    fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        self.0.iter().all(|(k, v, equal)| match (v, equal) {
            (Some(v), true) => label(k) == Some(v.as_str()),
            (Some(v), false) => label(k) != Some(v.as_str()),
            (None, true) => label(k).is_some(),
            (None, false) => label(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": data})
    }

    fn r() -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("n".into()),
            name: "c".into(),
        }
    }

    fn managers(obj: &Value) -> Vec<String> {
        Owners::of(obj).entries.into_iter().map(|e| e.0).collect()
    }

    async fn cluster() -> MemoryCluster {
        let c = MemoryCluster::new();
        c.put(
            "test",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}),
        );
        c
    }

    #[tokio::test]
    async fn an_apply_removes_what_its_manager_no_longer_sets_and_keeps_what_others_set() {
        let c = cluster().await;
        c.apply(&r(), &cm(json!({"a": "1", "b": "2"})), "vz", false)
            .await
            .expect("apply");
        let mut other = c.object(&r()).expect("stored");
        other["data"]["z"] = json!("9");
        c.replace(&r(), &other, Some("someone"))
            .await
            .expect("replace");
        let after = c
            .apply(&r(), &cm(json!({"a": "1"})), "vz", false)
            .await
            .expect("apply");
        assert_eq!(after["data"], json!({"a": "1", "z": "9"}));
        assert_eq!(managers(&after), ["vz", "someone"]);
    }

    #[tokio::test]
    async fn an_apply_that_changes_nothing_keeps_the_resource_version() {
        let c = cluster().await;
        let a = c
            .apply(&r(), &cm(json!({"a": "1"})), "vz", false)
            .await
            .expect("apply");
        let b = c
            .apply(&r(), &cm(json!({"a": "1"})), "vz", false)
            .await
            .expect("apply");
        assert_eq!(meta(&a, "resourceVersion"), meta(&b, "resourceVersion"));
        let d = c
            .apply(&r(), &cm(json!({"a": "2"})), "vz", false)
            .await
            .expect("apply");
        assert_ne!(meta(&a, "resourceVersion"), meta(&d, "resourceVersion"));
    }

    #[tokio::test]
    async fn a_replace_based_on_an_old_version_conflicts() {
        let c = cluster().await;
        let a = c
            .apply(&r(), &cm(json!({"a": "1"})), "vz", false)
            .await
            .expect("apply");
        c.apply(&r(), &cm(json!({"a": "2"})), "vz", false)
            .await
            .expect("apply");
        let e = c.replace(&r(), &a, None).await.expect_err("conflict");
        assert_eq!(
            super::super::api::api_error(&e).map(|a| a.failure.clone()),
            Some(Failure::Conflict)
        );
    }

    #[tokio::test]
    async fn named_lists_merge_by_name_and_a_forced_apply_takes_contested_fields() {
        let c = MemoryCluster::new();
        let vwc = |hooks: Value| {
            json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "w"}, "webhooks": hooks})
        };
        let w = ObjectRef {
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: "ValidatingWebhookConfiguration".into(),
            namespace: None,
            name: "w".into(),
        };
        c.put(
            "other",
            vwc(json!([{"name": "a", "x": 1}, {"name": "b", "x": 2}])),
        );
        let after = c
            .apply(&w, &vwc(json!([{"name": "a", "x": 5}])), "vz", false)
            .await
            .expect("apply");
        assert_eq!(
            after["webhooks"],
            json!([{"name": "a", "x": 5}, {"name": "b", "x": 2}])
        );
        let fields = Owners::of(&after).fields("other", "Update");
        assert!(!fields.contains(&vec![
            "f:webhooks".to_string(),
            "k:{\"name\":\"a\"}".to_string(),
            "f:x".to_string()
        ]));
        assert!(fields.contains(&vec![
            "f:webhooks".to_string(),
            "k:{\"name\":\"b\"}".to_string(),
            "f:x".to_string()
        ]));
    }

    #[tokio::test]
    async fn an_object_with_a_finalizer_stays_until_it_is_finalized() {
        let c = cluster().await;
        let mut body = cm(json!({}));
        body["metadata"]["finalizers"] = json!(["example.com/hold"]);
        c.apply(&r(), &body, "vz", false).await.expect("apply");
        assert!(matches!(
            c.delete(&r()).await.expect("delete"),
            Deleted::Started { uid: Some(_) }
        ));
        assert!(
            c.object(&r())
                .is_some_and(|o| !meta(&o, "deletionTimestamp").is_null())
        );
        c.finalize(&r());
        assert!(c.object(&r()).is_none());
    }

    #[tokio::test]
    async fn a_namespaced_object_needs_its_namespace_and_a_custom_kind_its_crd() {
        let c = MemoryCluster::new();
        let e = c
            .apply(&r(), &cm(json!({})), "vz", false)
            .await
            .expect_err("no namespace");
        assert!(e.to_string().contains("namespaces \"n\" not found"), "{e}");
        let gw = ObjectRef {
            api_version: "networking.istio.io/v1beta1".into(),
            kind: "Gateway".into(),
            namespace: Some("n".into()),
            name: "g".into(),
        };
        let e = c
            .served(&gw.api_version, &gw.kind)
            .await
            .expect_err("not served");
        assert!(e.is::<NotServed>());
        c.put("test", json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gateways.networking.istio.io"},
            "spec": {"group": "networking.istio.io", "scope": "Namespaced", "names": {"kind": "Gateway"},
                     "versions": [{"name": "v1beta1", "served": true}]}}));
        c.served(&gw.api_version, &gw.kind).await.expect("served");
    }

    #[test]
    fn selectors_match_labels() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        assert!(Selector::parse("a=1,b").matches(&o));
        assert!(Selector::parse("a==1,!c").matches(&o));
        assert!(!Selector::parse("a!=1").matches(&o));
        assert!(Selector::parse("").matches(&o));
    }
}
