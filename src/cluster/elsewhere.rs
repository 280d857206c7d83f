//! Objects of an API version that live elsewhere than the API server: a [`Cluster`] sends what
//! it would ask of the API server about them to an [`Elsewhere`] instead. The DNS records of
//! `dns.rfc2136` are such objects (kept on the DNS server, see [`crate::dns::Records`]); the
//! command that connects registers them with [`Cluster::keep_elsewhere`], so the cluster knows no
//! store by name.
//!
//! Such objects take effect at once (nothing waits for them, no finalizer holds them), are not
//! listed, and carry their own record of who owns them (so taking one over needs no mark).
//!
//! [`Cluster`]: crate::cluster::Cluster
//! [`Cluster::keep_elsewhere`]: crate::cluster::Cluster::keep_elsewhere

use anyhow::Result;
use async_trait::async_trait;
use serde_json::Value;
use vz_providers::Manifest;

use crate::cluster::{Deleted, ObjectRef};

/// A store of objects the API server does not hold (see the module's documentation).
#[async_trait]
pub trait Elsewhere: Send + Sync {
    /// The object, or `None` when it does not exist.
    async fn get(&self, r: &ObjectRef) -> Result<Option<Value>>;

    /// Create or change `m` (with `dry_run`, only say what it would be); the object as it then
    /// is.
    async fn apply(&self, m: &Manifest, dry_run: bool) -> Result<Value>;

    /// Delete `r`.
    async fn delete(&self, r: &ObjectRef) -> Result<Deleted>;

    /// Give up `r` (it stays, no longer `vz`'s); the object as it then is, `None` when it is
    /// gone.
    async fn release(&self, r: &ObjectRef) -> Result<Option<Value>>;

    /// Put `before` (an object as [`Elsewhere::get`] returned it) back exactly.
    async fn restore(&self, before: &Value) -> Result<Value>;
}
