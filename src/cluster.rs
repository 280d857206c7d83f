//! The Kubernetes API, as `vz` uses it: read, server-side apply, delete, wait, restore, release.
//!
//! Objects are handled dynamically (as JSON), so built-in kinds and custom resources go through the
//! same code. [`Cluster`] is what the engine talks to; it builds its operations from the few of the
//! seam [`ClusterApi`] ([`api`]): on an API server [`apiserver::KubeApi`], in the engine's unit tests an
//! in-memory cluster (`memory`). Objects of an API version kept elsewhere (DNS records on a DNS
//! server) go to the store registered for it ([`elsewhere`]).
//!
//! - [`elsewhere`]: the seam of stores other than the API server.
//! - [`ready`]: per-kind readiness rules, what [`Cluster::wait_ready`] waits for.
//! - [`warnings`]: the API server's warnings, said once at the end of a command.
//! - `patience`: the client layer that retries transient failures within the run's deadline.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::time::Instant;
use vz_providers::Manifest;
use vz_providers::manifest::display_name;

use crate::interrupt::Interrupt;
use crate::support::{self, KubeVersion, Verdict};
use api::{ApiError, ClusterApi, Failure, Watched, api_error};
use elsewhere::Elsewhere;

pub mod api;
pub mod apiserver;
pub mod elsewhere;
#[cfg(test)]
pub mod memory;
mod patience;
pub mod ready;
pub mod warnings;

pub use apiserver::client;
use ready::{Readiness, readiness};

/// The field manager `vz` applies as.
pub const FIELD_MANAGER: &str = "vz";

/// The field manager that holds the fields of an object `vz` released (see [`Cluster::release`]).
pub const RELEASED_MANAGER: &str = "vz-released";

/// The annotation on an object `vz` took over (it existed before `vz`), set by its own field
/// manager [`ADOPTED_MANAGER`] so that `vz`'s applies of the desired object never touch it.
pub const ADOPTED_ANNOTATION: &str = "vz.dev/adopted";
/// The field manager of [`ADOPTED_ANNOTATION`].
pub const ADOPTED_MANAGER: &str = "vz-adopted";

/// Whether `vz`'s field manager is the only one of `obj` (as a server-side apply returned it): an
/// object the apply created, not one that someone else created first.
pub fn only_vz_manages(obj: &Value) -> bool {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| {
            entries
                .iter()
                .all(|e| e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER))
        })
}

/// How much of each object a list returns ([`Cluster::list_selected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// The whole object.
    Whole,
    /// The whole object but its `managedFields`.
    Slim,
    /// `apiVersion`, `kind` and `metadata` (but `managedFields`): what deciding about an object
    /// with nothing to change needs, a fraction of the whole at thousands of objects.
    Metadata,
}

/// Objects per page when listing ([`Cluster::list_names`], [`Cluster::list_selected`]).
pub const NAMES_PAGE: u32 = 1000;

/// How to reach the cluster (the global `--kubeconfig` and `--context` flags).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// A kubeconfig file; otherwise `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig other than its current one.
    pub context: Option<String>,
}

/// The identity of an object in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    /// The reference of a desired object.
    pub fn of(m: &Manifest) -> Self {
        ObjectRef {
            api_version: m.api_version.clone(),
            kind: m.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display_name(
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        ))
    }
}

/// A connection to one cluster.
pub struct Cluster {
    api: Arc<dyn ClusterApi>,
    /// The Kubernetes release the API server runs, when it says.
    version: Option<KubeVersion>,
    /// Stores of the objects of API versions the API server does not hold ([`elsewhere`]).
    elsewhere: Vec<(String, Arc<dyn Elsewhere>)>,
    /// The objects read once for a run ([`Cluster::remembering`]).
    memo: Option<Arc<Memo>>,
}

/// Objects read with [`Cluster::get_remembered`], each forgotten when this connection writes it.
#[derive(Default)]
struct Memo(std::sync::Mutex<Remembered>);

#[derive(Default)]
struct Remembered {
    objects: std::collections::HashMap<ObjectRef, Value>,
    /// Writes through the connection so far: a read that a write overtook is not kept.
    writes: u64,
}

impl Memo {
    fn entries(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The outcome of a delete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// The object was there and deletion has started; `uid` identifies it while it goes.
    Started {
        /// The uid of the object being deleted.
        uid: Option<String>,
    },
    /// The object was already gone.
    AlreadyGone,
    /// The object is gone: the API server deleted it at once (nothing held it).
    Gone,
}

/// `e` as what `doing` could not do, with the server's answer; an error that is no answer (a
/// kind not served) as it is.
fn refused(doing: impl std::fmt::Display, e: anyhow::Error) -> anyhow::Error {
    match api_error(&e) {
        Some(a) => ClusterError::Refused(format!("{doing}: {}", a.detail)).into(),
        None => e,
    }
}

/// A request to `what` ("apply X") that did not go through: refused by the API server, or never
/// answered (then it may have been carried out).
fn refused_to(what: impl std::fmt::Display, e: anyhow::Error) -> anyhow::Error {
    let Some(a) = api_error(&e) else { return e };
    match a.failure {
        Failure::Failed => {
            ClusterError::Unanswered(format!("the API server failed to {what}: {}", a.detail))
        }
        Failure::Lost => ClusterError::Unanswered(format!("cannot {what}: {}", a.detail)),
        _ => ClusterError::Refused(format!("the API server refused to {what}: {}", a.detail)),
    }
    .into()
}

/// Whether `e` is the server's answer that the object is gone.
fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        api_error(e),
        Some(ApiError {
            failure: Failure::NotFound,
            ..
        })
    )
}

/// Whether `e` is the server's answer that the object changed since it was read.
fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(
        api_error(e),
        Some(ApiError {
            failure: Failure::Conflict,
            ..
        })
    )
}

impl Cluster {
    /// Connect and check that the API server answers and runs a Kubernetes release `vz` supports.
    pub async fn connect(opts: &ConnectOptions) -> Result<Cluster> {
        let connection = client(opts).await?;
        let server = connection.server.clone();
        let info = match connection.client.apiserver_version().await {
            Ok(info) => info,
            Err(e) => {
                return Err(ClusterError::Unreachable {
                    server,
                    cause: describe(&e),
                }
                .into());
            }
        };
        let version = KubeVersion::parse(&info.major, &info.minor, &info.git_version);
        match version.as_ref().map(|v| support::judge(&server, v)) {
            Some(Verdict::TooOld(message)) => {
                return Err(ClusterError::Unsupported(message).into());
            }
            Some(Verdict::Newer(message)) => eprintln!("Warning: {message}"),
            Some(Verdict::Tested) => {}
            None => eprintln!(
                "Warning: the API server at {server} does not say which Kubernetes release it runs (version {:?}); vz cannot check that it supports it",
                info.git_version
            ),
        }
        Ok(Cluster::over(
            Arc::new(apiserver::KubeApi::new(connection)),
            version,
        ))
    }

    /// The cluster `api` reaches, which runs Kubernetes `version` (when known).
    pub fn over(api: Arc<dyn ClusterApi>, version: Option<KubeVersion>) -> Cluster {
        Cluster {
            api,
            version,
            elsewhere: Vec::new(),
            memo: None,
        }
    }

    /// The same connection, remembering what [`Cluster::get_remembered`] reads until it writes
    /// that object itself: for one run, where hundreds of certificates read the same issuer.
    pub fn remembering(&self) -> Cluster {
        Cluster {
            api: self.api.clone(),
            version: self.version.clone(),
            elsewhere: self.elsewhere.clone(),
            memo: Some(Arc::default()),
        }
    }

    /// [`Cluster::get`], read once: on a [`Cluster::remembering`] connection, an object read
    /// before and not written through it since is not read again.
    pub async fn get_remembered(&self, r: &ObjectRef) -> Result<Option<Value>> {
        let Some(memo) = &self.memo else {
            return self.get(r).await;
        };
        let writes = {
            let m = memo.entries();
            if let Some(obj) = m.objects.get(r) {
                return Ok(Some(obj.clone()));
            }
            m.writes
        };
        let obj = self.get(r).await?;
        if let Some(obj) = &obj {
            let mut m = memo.entries();
            if m.writes == writes {
                m.objects.insert(r.clone(), obj.clone());
            }
        }
        Ok(obj)
    }

    /// Forget what [`Cluster::get_remembered`] read of `r`: it is being written.
    fn written(&self, r: &ObjectRef) {
        if let Some(memo) = &self.memo {
            let mut m = memo.entries();
            m.writes += 1;
            m.objects.remove(r);
        }
    }

    /// The same connection, with the objects of `api_version` read and written on `store`.
    pub fn keep_elsewhere(mut self, api_version: &str, store: Arc<dyn Elsewhere>) -> Self {
        self.elsewhere.retain(|(v, _)| v != api_version);
        self.elsewhere.push((api_version.to_string(), store));
        self
    }

    /// The store of the objects of `api_version`, when the API server does not hold them.
    fn elsewhere(&self, api_version: &str) -> Option<&dyn Elsewhere> {
        self.elsewhere
            .iter()
            .find(|(v, _)| v == api_version)
            .map(|(_, s)| s.as_ref())
    }

    /// Whether the objects of `api_version` are kept elsewhere than the API server.
    pub fn kept_elsewhere(&self, api_version: &str) -> bool {
        self.elsewhere(api_version).is_some()
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        self.api.server()
    }

    /// The Kubernetes release the API server runs, when it says.
    pub fn version(&self) -> Option<&KubeVersion> {
        self.version.as_ref()
    }

    /// Retry failing requests, and let each run, until `deadline` (the run's, or its rollback's;
    /// `None`: for a while from a request's first failure), and not once `interrupt` trips.
    pub fn requests_until(&self, deadline: Option<Instant>, interrupt: Option<&Interrupt>) {
        self.api.requests_until(deadline, interrupt.cloned());
    }

    /// Wait up to `patience` for a kind to be served: after its CRD is established, discovery can
    /// lag behind for a moment.
    pub async fn await_kind(
        &self,
        api_version: &str,
        kind: &str,
        patience: Duration,
    ) -> Result<()> {
        if self.kept_elsewhere(api_version) {
            return Ok(());
        }
        let until = Instant::now() + patience;
        let mut pause = Duration::from_millis(25);
        loop {
            match self.api.served(api_version, kind).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is::<NotServed>() && Instant::now() + pause < until => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The live object, or `None` when it does not exist.
    pub async fn get(&self, r: &ObjectRef) -> Result<Option<Value>> {
        if let Some(store) = self.elsewhere(&r.api_version) {
            return store.get(r).await;
        }
        self.api
            .get(r)
            .await
            .map_err(|e| refused(format_args!("cannot read {r}"), e))
    }

    /// Every object of a kind, in all namespaces, that carries the label selector `selector`, a
    /// page of [`NAMES_PAGE`] at a time. A kind that is not served yet has none.
    pub async fn list_labelled(
        &self,
        api_version: &str,
        kind: &str,
        selector: &str,
    ) -> Result<Vec<Value>> {
        let listed = self.list_selected(api_version, kind, selector, Listing::Whole, Some);
        Ok(listed.await?.unwrap_or_default())
    }

    /// Every object of a kind, in all namespaces, that carries the label selector `selector` (all
    /// of them when it is empty), as `listing` says: whole objects or metadata only, and never
    /// their `managedFields` (often the bigger part of an object) when `listing` is not
    /// [`Listing::Whole`]. Each object is handed to `keep` as it is read, and what it returns
    /// kept: listing thousands of objects holds what is kept of them, and a page at a time. `None`
    /// when the kind is not served (yet), or holds DNS records (a zone is read record by record).
    pub async fn list_selected<T: Send>(
        &self,
        api_version: &str,
        kind: &str,
        selector: &str,
        listing: Listing,
        mut keep: impl FnMut(Value) -> Option<T> + Send,
    ) -> Result<Option<Vec<T>>> {
        if self.kept_elsewhere(api_version) {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut each = |v: Value| {
            out.extend(keep(v));
            Ok(())
        };
        let served = self
            .api
            .list(api_version, kind, selector, listing, &mut each)
            .await
            .map_err(|e| refused(format_args!("cannot list {kind} in {api_version}"), e))?;
        Ok(served.then_some(out))
    }

    /// The objects of a kind that exist, in all namespaces: metadata only, a page of [`NAMES_PAGE`]
    /// at a time, so that knowing which of thousands of objects exist costs a request or a few
    /// instead of a read each. `None` when the kind is not served (yet).
    pub async fn list_names(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<HashSet<ObjectRef>>> {
        let listed = self.list_selected(api_version, kind, "", Listing::Metadata, |v| {
            ref_of(&v).ok()
        });
        Ok(listed.await?.map(|refs| refs.into_iter().collect()))
    }

    /// Server-side apply `m` as field manager `vz` (taking over conflicting fields); with `dry_run` the
    /// API server computes and validates the result without persisting it.
    pub async fn apply(&self, m: &Manifest, dry_run: bool) -> Result<Value> {
        let r = ObjectRef::of(m);
        ensure_known(&r, m)?;
        if let Some(store) = self.elsewhere(&r.api_version) {
            return store.apply(m, dry_run).await;
        }
        if !dry_run {
            self.written(&r);
        }
        let what = if dry_run { "dry-run" } else { "apply" };
        self.api
            .apply(&r, &m.body, FIELD_MANAGER, dry_run)
            .await
            .map_err(|e| refused_to(format_args!("{what} {r}"), e))
    }

    /// Merge `patch` (RFC 7386) into the live `r` as field manager `manager`: a change of a few
    /// fields that leaves the rest of the object, and `vz`'s ownership of it, as they are.
    pub async fn merge_patch(&self, r: &ObjectRef, patch: &Value, manager: &str) -> Result<Value> {
        self.written(r);
        self.api
            .merge_patch(r, patch, manager)
            .await
            .map_err(|e| refused_to(format_args!("patch {r}"), e))
    }

    /// A server-side dry-run apply of `m`: what applying it would leave in the cluster, or the fields
    /// that cannot change in place (the object must be replaced).
    pub async fn dry_run(&self, m: &Manifest) -> Result<DryRun> {
        let r = ObjectRef::of(m);
        ensure_known(&r, m)?;
        if let Some(store) = self.elsewhere(&r.api_version) {
            return Ok(DryRun::Applied(store.apply(m, true).await?));
        }
        match self.api.apply(&r, &m.body, FIELD_MANAGER, true).await {
            Ok(obj) => Ok(DryRun::Applied(obj)),
            Err(e) => match api_error(&e) {
                Some(ApiError {
                    failure: Failure::Immutable(fields),
                    ..
                }) => Ok(DryRun::Immutable(fields.clone())),
                _ => Err(refused_to(format_args!("dry-run {r}"), e)),
            },
        }
    }

    /// Give up an object `vz` did not create (it took it over, or only patched it): its labels go,
    /// and the fields it set stay as they are, handed over to the field manager
    /// [`RELEASED_MANAGER`] (see [`handed_over`]), so the object keeps working and no required
    /// field is ever removed. Returns the released object, or `None` when it is already gone.
    pub async fn release(&self, r: &ObjectRef) -> Result<Option<Value>> {
        self.written(r);
        if let Some(store) = self.elsewhere(&r.api_version) {
            return store.release(r).await;
        }
        retry_on_conflict(&format!("cannot release {r}"), || async {
            let Some(live) = self.get(r).await? else {
                return Ok(None);
            };
            let wanted = handed_over(&live);
            match self.api.replace(r, &wanted, Some(RELEASED_MANAGER)).await {
                Ok(out) => Ok(Some(out)),
                Err(e) if is_conflict(&e) => Err(WriteConflict.into()),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(refused(format_args!("cannot release {r}"), e)),
            }
        })
        .await
    }

    /// Mark `r` as taken over ([`ADOPTED_ANNOTATION`]); returns the object as it then is.
    pub async fn mark_adopted(&self, r: &ObjectRef) -> Result<Value> {
        self.written(r);
        if self.kept_elsewhere(&r.api_version) {
            // Its own record of ownership says so already: apply wrote it.
            return self
                .get(r)
                .await?
                .with_context(|| format!("{r} disappeared while vz took it over"));
        }
        let mut meta = serde_json::json!({
            "name": r.name,
            "annotations": {ADOPTED_ANNOTATION: "true"},
        });
        if let Some(ns) = &r.namespace {
            meta["namespace"] = Value::String(ns.clone());
        }
        let body =
            serde_json::json!({"apiVersion": r.api_version, "kind": r.kind, "metadata": meta});
        self.api
            .apply(r, &body, ADOPTED_MANAGER, false)
            .await
            .map_err(|e| refused(format_args!("cannot mark {r} as taken over"), e))
    }

    /// Ask for `r` to be deleted (dependents in the background).
    pub async fn delete(&self, r: &ObjectRef) -> Result<Deleted> {
        self.written(r);
        if let Some(store) = self.elsewhere(&r.api_version) {
            return store.delete(r).await;
        }
        self.api.delete(r).await.map_err(|e| match api_error(&e) {
            // It may have been deleted: the caller takes it as if it had been.
            Some(a) if matches!(a.failure, Failure::Lost | Failure::Failed) => {
                ClusterError::Unanswered(format!("cannot delete {r}: {}", a.detail)).into()
            }
            _ => refused(format_args!("cannot delete {r}"), e),
        })
    }

    /// Delete `r` and wait until it is gone (`known_uid` identifies it if the API server does not say).
    pub async fn delete_and_wait(
        &self,
        r: &ObjectRef,
        known_uid: Option<&str>,
        deadline: Instant,
        interrupt: &Interrupt,
    ) -> Result<()> {
        if let Deleted::Started { uid } = self.delete(r).await? {
            let uid = uid.as_deref().or(known_uid);
            self.wait_gone(r, uid, deadline, interrupt).await?;
        }
        Ok(())
    }

    /// Wait until `r` no longer exists (or was replaced by an object with another uid), until
    /// `deadline`. A timeout names the object and what is holding it.
    pub async fn wait_gone(
        &self,
        r: &ObjectRef,
        uid: Option<&str>,
        deadline: Instant,
        interrupt: &Interrupt,
    ) -> Result<()> {
        if self.kept_elsewhere(&r.api_version) {
            // A change elsewhere takes effect at once: what is there now is someone else's.
            return Ok(());
        }
        let mut seen = None;
        loop {
            let live = match seen.take() {
                Some(v) => Some(v),
                None => self.get(r).await?,
            };
            let Some(live) = live else { return Ok(()) };
            let live_uid = live.pointer("/metadata/uid").and_then(Value::as_str);
            if uid.is_some() && live_uid != uid {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::WaitTimeout {
                    object: r.to_string(),
                    what: format!("to be deleted; {}", blocking(&live)),
                    deleting: true,
                }
                .into());
            }
            seen = self
                .next_change(r, &live, deadline, interrupt, || {
                    format!("waiting for {r} to be deleted")
                })
                .await?;
        }
    }

    /// Wait for the next change of `r` after the version `live` (one watch request, so a change is
    /// seen as soon as it happens rather than at the next poll). Returns the changed object, or `None`
    /// when it was deleted, the deadline came, or the watch ended without news (the caller reads the
    /// object again).
    async fn next_change(
        &self,
        r: &ObjectRef,
        live: &Value,
        deadline: Instant,
        interrupt: &Interrupt,
        doing: impl FnOnce() -> String,
    ) -> Result<Option<Value>> {
        let version = live
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0");
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let timeout = u32::try_from(left.clamp(1, 60)).unwrap_or(60);
        tokio::select! {
            w = self.api.watch(r, version, timeout) => Ok(match w {
                Watched::Changed(v) => Some(v),
                Watched::Deleted | Watched::Nothing => None,
            }),
            () = tokio::time::sleep_until(deadline) => Ok(None),
            () = interrupt.tripped() => bail!("interrupted while {}", doing()),
        }
    }

    /// Wait until `r` is ready by its kind's rule ([`readiness`]), until `deadline`. A timeout names
    /// the object and the condition it was waiting for.
    /// `seen` is the object as the API server last returned it, if at hand: when it is ready already,
    /// no request is made. Kinds without a readiness rule are not read at all. Returns the object as
    /// it was when found ready (`None` for kinds without a rule).
    pub async fn wait_ready(
        &self,
        r: &ObjectRef,
        seen: Option<Value>,
        deadline: Instant,
        interrupt: &Interrupt,
    ) -> Result<Option<Value>> {
        if !ready::has_rule(&r.api_version, &r.kind) {
            return Ok(None);
        }
        let mut seen = seen;
        loop {
            let live = match seen.take() {
                Some(v) => v,
                None => match self.get(r).await? {
                    Some(v) => v,
                    None => bail!("{r} disappeared while vz waited for it to become ready"),
                },
            };
            let waiting = match readiness(&live) {
                Readiness::Ready => return Ok(Some(live)),
                Readiness::Waiting(w) => w,
            };
            if Instant::now() >= deadline {
                return Err(ClusterError::WaitTimeout {
                    object: r.to_string(),
                    what: format!("to be ready: waiting for {waiting}"),
                    deleting: false,
                }
                .into());
            }
            seen = self
                .next_change(r, &live, deadline, interrupt, || {
                    format!("waiting for {r} ({waiting})")
                })
                .await?;
        }
    }

    /// Put `before` (a complete object as it was read) back exactly: its content with one update,
    /// then, if they differ, its managed fields with a second (an update that changes no value moves
    /// no ownership, so the recorded managers come back as they were). Re-creates it when it is gone.
    /// Returns the restored object.
    ///
    /// Controllers keep writing the objects they run (a Deployment's status during a rollout), so
    /// an update based on a read can meet a newer version: then it reads again and puts the object
    /// back again ([`retry_on_conflict`]).
    pub async fn restore(&self, before: &Value) -> Result<Value> {
        let r = ref_of(before)?;
        self.written(&r);
        if let Some(store) = self.elsewhere(&r.api_version) {
            return store.restore(before).await;
        }
        let mut wanted = before.clone();
        strip_for_write(&mut wanted, false);
        retry_on_conflict(&format!("cannot restore {r}"), || {
            self.restore_once(&r, &wanted, before)
        })
        .await
    }

    async fn restore_once(&self, r: &ObjectRef, wanted: &Value, before: &Value) -> Result<Value> {
        let mut wanted = wanted.clone();
        let restored = match self.get(r).await? {
            Some(live) => {
                set_resource_version(&mut wanted, &live);
                self.put(r, &wanted).await?
            }
            None => {
                let mut fresh = wanted.clone();
                strip_for_write(&mut fresh, true);
                self.api
                    .create(r, &fresh)
                    .await
                    .map_err(|e| match api_error(&e) {
                        Some(_) => refused(format_args!("cannot re-create {r}"), e),
                        // Not sent (it could not be encoded): still the object it is about.
                        None => e.context(format!("cannot re-create {r}")),
                    })?
            }
        };
        let managed = |v: &Value| v.pointer("/metadata/managedFields").cloned();
        if managed(&restored) == managed(before) || managed(before).is_none() {
            return Ok(restored);
        }
        set_resource_version(&mut wanted, &restored);
        self.put(r, &wanted).await
    }

    /// Replace `r` with `obj`; a [`WriteConflict`] when the object changed since `obj`'s
    /// `resourceVersion`.
    async fn put(&self, r: &ObjectRef, obj: &Value) -> Result<Value> {
        match self.api.replace(r, obj, None).await {
            Ok(out) => Ok(out),
            Err(e) if is_conflict(&e) => Err(WriteConflict.into()),
            Err(e) => Err(refused(format_args!("cannot restore {r}"), e)),
        }
    }
}

/// How often an update based on a read is tried when the object keeps changing under it.
pub const CONFLICT_ATTEMPTS: u32 = 12;

/// The wait before the `n`th retry of a conflicting update: 50 ms, doubled each time, at most 1 s
/// (about 7.5 s over [`CONFLICT_ATTEMPTS`]). A controller answering vz's own write (a Deployment's
/// rollout after its template is put back) writes status for seconds on a busy cluster; a short,
/// evenly spaced run of retries lost that race in CI.
fn conflict_backoff(n: u32) -> std::time::Duration {
    std::time::Duration::from_millis((50u64 << n.saturating_sub(1).min(5)).min(1000))
}

/// Run `attempt` (a read, then an update based on it) again while it fails with a
/// [`WriteConflict`], backing off ([`conflict_backoff`]) so the other writer finishes its burst; up
/// to [`CONFLICT_ATTEMPTS`] times. `doing` starts the error when it never gets through.
async fn retry_on_conflict<T, F, Fut>(doing: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if e.is::<WriteConflict>() && n < CONFLICT_ATTEMPTS => {
                tokio::time::sleep(conflict_backoff(n)).await;
                n += 1;
            }
            Err(e) if e.is::<WriteConflict>() => {
                return Err(ClusterError::Refused(format!(
                    "{doing}: it kept changing while vz wrote it ({CONFLICT_ATTEMPTS} attempts)"
                ))
                .into());
            }
            other => return other,
        }
    }
}

/// An update refused because the object changed since it was read (HTTP 409).
#[derive(Debug, thiserror::Error)]
#[error("the object changed since it was read")]
struct WriteConflict;

/// An object with values not known yet is never sent: its `null` placeholders would be applied.
fn ensure_known(r: &ObjectRef, m: &Manifest) -> Result<()> {
    if m.has_unknown() {
        bail!(
            "internal: {r} was about to be sent with values not known yet ({})",
            m.unknown.join(", ")
        );
    }
    Ok(())
}

/// `live` as it is once `vz` lets it go: without `vz`'s labels, and with the fields `vz` owned
/// handed over to [`RELEASED_MANAGER`] (an `Update` manager), so that they stay as they are rather
/// than being removed as an empty server-side apply would (which fails on required fields).
pub fn handed_over(live: &Value) -> Value {
    use vz_providers::manifest::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLATFORM_LABEL};
    let mut out = live.clone();
    let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) else {
        return out;
    };
    if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
        if labels.get(MANAGED_BY_LABEL).and_then(Value::as_str) == Some(MANAGED_BY_VALUE) {
            labels.remove(MANAGED_BY_LABEL);
            labels.remove(PLATFORM_LABEL);
        }
        if labels.is_empty() {
            meta.remove("labels");
        }
    }
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.remove(ADOPTED_ANNOTATION);
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    let Some(entries) = meta.get_mut("managedFields").and_then(Value::as_array_mut) else {
        return out;
    };
    let mut kept: Vec<Value> = Vec::new();
    for mut e in std::mem::take(entries) {
        let manager = e.get("manager").and_then(Value::as_str);
        if manager == Some(ADOPTED_MANAGER) {
            // It owned only the annotation, which goes.
            continue;
        }
        if manager == Some(FIELD_MANAGER) {
            e["manager"] = Value::String(RELEASED_MANAGER.into());
            e["operation"] = Value::String("Update".into());
            if let Some(fields) = e
                .pointer_mut("/fieldsV1/f:metadata/f:labels")
                .and_then(Value::as_object_mut)
            {
                fields.remove(&format!("f:{MANAGED_BY_LABEL}"));
                fields.remove(&format!("f:{PLATFORM_LABEL}"));
            }
            // An emptied set would read as owning the whole map: drop it (and an emptied
            // `f:metadata`). A leaf owned as `{}` elsewhere is left as it is.
            if let Some(meta) = e
                .pointer_mut("/fieldsV1/f:metadata")
                .and_then(Value::as_object_mut)
            {
                if meta
                    .get("f:labels")
                    .and_then(Value::as_object)
                    .is_some_and(serde_json::Map::is_empty)
                {
                    meta.remove("f:labels");
                }
                if meta.is_empty()
                    && let Some(fields) = e.get_mut("fieldsV1").and_then(Value::as_object_mut)
                {
                    fields.remove("f:metadata");
                }
            }
        }
        let same = |a: &Value, b: &Value| {
            ["manager", "operation", "apiVersion", "subresource"]
                .iter()
                .all(|k| a.get(k) == b.get(k))
        };
        match kept.iter_mut().find(|k| same(k, &e)) {
            Some(k) => {
                if let (Some(into), Some(from)) = (k.get_mut("fieldsV1"), e.get("fieldsV1")) {
                    merge_fields(into, from);
                }
            }
            None => kept.push(e),
        }
    }
    *entries = kept;
    out
}

/// Union of two managed-field sets (`fieldsV1` tries).
fn merge_fields(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            match into.get_mut(k) {
                Some(existing) => merge_fields(existing, v),
                None => {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// The reference of a complete object.
pub fn ref_of(obj: &Value) -> Result<ObjectRef> {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).map(str::to_string);
    Ok(ObjectRef {
        api_version: s("/apiVersion").context("object without apiVersion")?,
        kind: s("/kind").context("object without kind")?,
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name").context("object without a name")?,
    })
}

/// Remove what a write may not carry: status always; for a create also the identity the server
/// assigns (uid, resourceVersion, timestamps).
fn strip_for_write(obj: &mut Value, for_create: bool) {
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            if for_create {
                for k in [
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "generation",
                    "selfLink",
                ] {
                    meta.remove(k);
                }
            }
        }
    }
}

fn set_resource_version(obj: &mut Value, from: &Value) {
    if let (Some(meta), Some(rv)) = (
        obj.get_mut("metadata").and_then(Value::as_object_mut),
        from.pointer("/metadata/resourceVersion"),
    ) {
        meta.insert("resourceVersion".into(), rv.clone());
    }
}

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig or context.
    #[error("{0}")]
    Config(String),
    /// The API server does not answer.
    #[error("cannot reach the Kubernetes API server at {server}: {cause}")]
    Unreachable {
        /// The API server's URL.
        server: String,
        /// What the client said.
        cause: String,
    },
    /// The API server refused a request.
    #[error("{0}")]
    Refused(String),
    /// The cluster runs a Kubernetes release `vz` does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A change whose outcome is not known: no answer came in time, the connection broke, or the
    /// server failed while carrying it out (HTTP 5xx). It may have been made.
    #[error("{0}")]
    Unanswered(String),
    /// An object did not reach the state waited for in time.
    #[error("timed out waiting for {object} {what}")]
    WaitTimeout {
        /// The object.
        object: String,
        /// What was waited for, and what holds it.
        what: String,
        /// Waiting for it to be deleted.
        deleting: bool,
    },
}

/// The API server does not serve a kind (yet): its CRD is missing or not established.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the API server at {server} does not serve {kind} in {api_version} (is its CustomResourceDefinition installed?)"
)]
pub struct NotServed {
    /// The `apiVersion` asked for.
    pub api_version: String,
    /// The kind asked for.
    pub kind: String,
    /// The API server.
    pub server: String,
}

/// The outcome of a dry-run apply.
#[derive(Debug, Clone, PartialEq)]
pub enum DryRun {
    /// What the object would be.
    Applied(Value),
    /// These fields are immutable and would change: the object must be deleted and created again.
    Immutable(Vec<String>),
}

/// What is keeping an object from going away, from its finalizers and conditions.
fn blocking(live: &Value) -> String {
    let finalizers: Vec<&str> = live
        .pointer("/metadata/finalizers")
        .or_else(|| live.pointer("/spec/finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let conditions: Vec<String> = live
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
                .filter_map(|c| c.get("message").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut out = if finalizers.is_empty() {
        "it still exists".to_string()
    } else {
        format!("it still has finalizers [{}]", finalizers.join(", "))
    };
    if !conditions.is_empty() {
        out.push_str(&format!(" ({})", conditions.join("; ")));
    }
    out
}

/// A one-line description of a client error: the API server's message when there is one.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                String::new()
            } else {
                format!(" [{}]", s.reason)
            };
            format!("{}{reason} (HTTP {})", s.message, s.code)
        }
        other => describe_source(other),
    }
}

/// An error and its causes on one line: connection errors carry the useful part at the bottom.
pub fn describe_source(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn blocking_names_finalizers_and_true_conditions() {
        let live = serde_json::json!({
            "metadata": {"finalizers": ["example.com/hold"]},
            "status": {"conditions": [
                {"type": "NamespaceContentRemaining", "status": "True", "message": "Some resources are remaining: configmaps. has 1 resource instances"},
                {"type": "Other", "status": "False", "message": "ignored"}
            ]}
        });
        let text = blocking(&live);
        assert!(text.contains("example.com/hold"), "{text}");
        assert!(text.contains("configmaps"), "{text}");
        assert!(!text.contains("ignored"), "{text}");
    }

    #[test]
    fn a_released_object_keeps_its_fields_under_another_manager_and_loses_vz_labels() {
        let live = serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": "x", "namespace": "n",
                "labels": {"app.kubernetes.io/managed-by": "vz", "vz.dev/platform": "dev", "team": "a"},
                "managedFields": [
                    {"manager": "kubectl-create", "operation": "Update", "apiVersion": "networking.k8s.io/v1",
                     "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}},
                    {"manager": "vz", "operation": "Apply", "apiVersion": "networking.k8s.io/v1",
                     "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}, "f:vz.dev/platform": {}}},
                                  "f:spec": {"f:rules": {}}}}
                ]
            },
            "spec": {"rules": [{"host": "a"}]}
        });
        let out = handed_over(&live);
        assert_eq!(out["metadata"]["labels"], serde_json::json!({"team": "a"}));
        assert_eq!(out["spec"], live["spec"], "every field stays");
        let managers: Vec<(&str, &str)> = out["metadata"]["managedFields"]
            .as_array()
            .expect("managed fields")
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap_or_default(),
                    e["operation"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            managers,
            [("kubectl-create", "Update"), (RELEASED_MANAGER, "Update")]
        );
        assert_eq!(
            out["metadata"]["managedFields"][1]["fieldsV1"],
            serde_json::json!({"f:spec": {"f:rules": {}}}),
            "an emptied label set would claim the whole map"
        );
    }

    #[test]
    fn an_object_is_vz_s_own_only_when_no_other_manager_has_fields_of_it() {
        let with = |managers: &[&str]| {
            let entries: Vec<Value> = managers
                .iter()
                .map(|m| serde_json::json!({"manager": m, "operation": "Apply"}))
                .collect();
            serde_json::json!({"metadata": {"name": "x", "managedFields": entries}})
        };
        assert!(only_vz_manages(&with(&[FIELD_MANAGER])));
        assert!(!only_vz_manages(&with(&["kubectl-create", FIELD_MANAGER])));
        assert!(!only_vz_manages(&with(&[ADOPTED_MANAGER, FIELD_MANAGER])));
        assert!(
            !only_vz_manages(&serde_json::json!({"metadata": {"name": "x"}})),
            "without managed fields nothing proves who created it"
        );
    }

    #[test]
    fn an_object_with_unknown_values_is_never_sent() {
        let host: vz_providers::Deferred<String> = vz_providers::Deferred::Unknown;
        let m = Manifest::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"},
            "data": {"host": host.into_json()}
        }));
        let err = ensure_known(&ObjectRef::of(&m), &m).expect_err("refused");
        assert!(err.to_string().contains("/data/host"), "{err}");
    }
}
