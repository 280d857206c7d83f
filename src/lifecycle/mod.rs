//! Provider lifecycles: what a part of the platform does around the engine's work beyond
//! rendering its objects, so that the engine knows no provider by name.
//!
//! A provider renders its steps in `vz-providers` (pure: configuration in, objects out). When it
//! also has to act on the cluster at a point of a run, it adds a [`Lifecycle`] here and one line
//! to [`LIFECYCLES`]; the engine calls every lifecycle at each hook:
//!
//! - [`Lifecycle::before_delete`]: before the objects of a step are deleted (destroy, or the step
//!   left the configuration), once the objects deleted before it are gone.
//!   [`external_dns`]: ExternalDNS's final sync, so the records it made go with their sources.
//!
//! Certificates (planned from what the cluster holds, issued during apply: `engine/certs.rs`) and
//! DNS records (written on the DNS server: `dns.rs`) are still reached by the engine and the
//! cluster directly; they move behind hooks of their own ("before plan", "before an object is
//! applied", a record store as a [`crate::cluster::api::ClusterApi`]).

use anyhow::Result;
use async_trait::async_trait;
use tokio::time::Instant;

use crate::cluster::{Cluster, ObjectRef};
use crate::engine::plan::Change;
use crate::interrupt::Interrupt;
use crate::output::Progress;

pub mod external_dns;

/// What a hook works with: the run's cluster, deadline, Ctrl-C and display.
pub struct Context<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// When the run must be over.
    pub deadline: Instant,
    /// Ctrl-C.
    pub interrupt: &'a Interrupt,
    /// What the user sees.
    pub progress: &'a Progress,
    /// `--leave-dns-records`: leave what DNS providers made in their zones.
    pub leave_dns_records: bool,
    /// Whether the run may go on to do what it names (not interrupted, not past its deadline):
    /// the engine's error when not.
    pub may_continue: &'a (dyn Fn(&str) -> Result<()> + Send + Sync),
}

/// What a provider does at points of a run (see the module's documentation). Every hook has a
/// default that does nothing.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Before `changes` (deletions and releases of the objects of `step`) are carried out;
    /// `deleted` is every object this run deleted so far.
    async fn before_delete(
        &self,
        _cx: &Context<'_>,
        _step: &str,
        _changes: &[&Change],
        _deleted: &[ObjectRef],
    ) -> Result<()> {
        Ok(())
    }
}

/// Every provider lifecycle. A new one is one module and one line here.
pub const LIFECYCLES: &[&dyn Lifecycle] = &[&external_dns::FinalSync];
