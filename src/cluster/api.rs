//! The seam between `vz` and a cluster: the few operations on dynamic objects that everything else
//! is built from.
//!
//! [`ClusterApi`] is what a cluster must do for `vz`: tell whether a kind is served, read, list,
//! server-side apply (for real or as a dry run), merge-patch, create, replace, delete, and watch one
//! object for its next change. [`super::Cluster`] builds what the engine uses (waits, restores,
//! releases, retries on conflict, error messages that name the object) on top of it, the same way
//! for every implementation:
//!
//! - [`super::apiserver::KubeApi`]: an API server, through the kube client;
//! - `super::memory::MemoryCluster` (tests only): an in-memory cluster with server-side apply's
//!   field ownership, resourceVersion conflicts and deletion with finalizers, for the engine's
//!   unit tests.
//!
//! An implementation reports a request the server answered with an error as an [`ApiError`], which
//! says what kind of failure it was; the caller says what it was doing. Other errors (a kind that
//! is not served: [`super::NotServed`]) pass through as they are.

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;

use super::{Deleted, Listing, ObjectRef};
use crate::interrupt::Interrupt;

/// What a cluster does for `vz`. Objects are JSON, as the API server speaks them.
#[async_trait]
pub trait ClusterApi: Send + Sync {
    /// Where the cluster is (the API server's URL), for messages.
    fn server(&self) -> &str;

    /// Retry failing requests until `deadline`, and not once `interrupt` trips (see
    /// `Budget`); an implementation without transient failures ignores it.
    fn requests_until(&self, _deadline: Option<Instant>, _interrupt: Option<Interrupt>) {}

    /// `Ok` when objects of `kind` in `api_version` are served; a [`super::NotServed`] error when
    /// they are not (yet).
    async fn served(&self, api_version: &str, kind: &str) -> anyhow::Result<()>;

    /// The object, or `None` when it does not exist (or its kind is no longer served).
    async fn get(&self, r: &ObjectRef) -> anyhow::Result<Option<Value>>;

    /// Every object of a kind in all namespaces carrying the label `selector` (all of them when
    /// it is empty), as `listing` says, handed to `each` as it is read. `false` when the kind is
    /// not served.
    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        selector: &str,
        listing: Listing,
        each: &mut (dyn FnMut(Value) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<bool>;

    /// Server-side apply `body` as field manager `manager`, taking over fields other managers
    /// hold; with `dry_run` nothing is stored. A dry run that would change an immutable field
    /// fails with [`Failure::Immutable`].
    async fn apply(
        &self,
        r: &ObjectRef,
        body: &Value,
        manager: &str,
        dry_run: bool,
    ) -> anyhow::Result<Value>;

    /// Merge `patch` (RFC 7386) into the object as field manager `manager`.
    async fn merge_patch(
        &self,
        r: &ObjectRef,
        patch: &Value,
        manager: &str,
    ) -> anyhow::Result<Value>;

    /// Create `obj` (without identity: no uid or resourceVersion).
    async fn create(&self, r: &ObjectRef, obj: &Value) -> anyhow::Result<Value>;

    /// Replace the object with `obj`, which carries the `resourceVersion` it was read at: a
    /// [`Failure::Conflict`] when it changed since, [`Failure::NotFound`] when it is gone. Its
    /// `managedFields`, when given, become the object's; the fields the replace changes go to
    /// `manager` (the server's default manager when `None`).
    async fn replace(
        &self,
        r: &ObjectRef,
        obj: &Value,
        manager: Option<&str>,
    ) -> anyhow::Result<Value>;

    /// Ask for the object to be deleted, dependents in the background.
    async fn delete(&self, r: &ObjectRef) -> anyhow::Result<Deleted>;

    /// Wait up to `timeout_secs` for the next change of the object after `resource_version`.
    async fn watch(&self, r: &ObjectRef, resource_version: &str, timeout_secs: u32) -> Watched;
}

/// What watching an object saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// The object as it changed.
    Changed(Value),
    /// It was deleted.
    Deleted,
    /// Nothing in time, or the watch could not be made: read it again.
    Nothing,
}

/// What kind of error the server answered a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Refused before anything was written: invalid, forbidden, denied by admission (HTTP 4xx,
    /// or a webhook that could not be called).
    Refused,
    /// The server failed while carrying the request out (HTTP 5xx): it may have been done.
    Failed,
    /// No answer: the connection broke or timed out. It may have been done.
    Lost,
    /// The object changed since the version the request was based on (HTTP 409 on a replace).
    Conflict,
    /// The object does not exist (HTTP 404).
    NotFound,
    /// These fields cannot change in place (an Invalid answer that says they are immutable).
    Immutable(Vec<String>),
}

/// A request the cluster did not carry out: what kind of failure, and the server's words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct ApiError {
    /// What kind of failure.
    pub failure: Failure,
    /// The server's message, as one line (e.g. `... [Invalid] (HTTP 422)`).
    pub detail: String,
}

impl ApiError {
    /// An error of kind `failure` saying `detail`.
    pub fn new(failure: Failure, detail: impl Into<String>) -> ApiError {
        ApiError {
            failure,
            detail: detail.into(),
        }
    }
}

/// The [`ApiError`] in `e`, if that is what it is.
pub fn api_error(e: &anyhow::Error) -> Option<&ApiError> {
    e.downcast_ref::<ApiError>()
}
