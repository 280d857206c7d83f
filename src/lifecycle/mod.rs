//! Provider lifecycles: what a part of the platform does around the engine's work beyond
//! rendering its objects, so that the engine knows no provider by name.
//!
//! A provider renders its steps in `vz-providers` (pure: configuration in, objects out). When it
//! also has to act on the cluster at a point of a run, it adds a [`Lifecycle`] here and one line
//! to [`LIFECYCLES`]; the engine calls every lifecycle, in that order, at each hook:
//!
//! - [`Lifecycle::before_plan`]: once per plan, before any object is planned: read what the
//!   provider's decisions need and decide, for all objects at once. The [`Planning`] it returns
//!   answers the planner object by object: what is known only after apply ([`Prepared`]), and the
//!   object as a dry run must compare it.
//! - [`Lifecycle::before_apply`]: just before an object is sent: the object to send instead, with
//!   what is made or read only at apply (key material, copied values).
//! - [`Lifecycle::after_apply`]: once the server answered: the public facts the state records.
//! - [`Lifecycle::before_delete`]: before the objects of a step are deleted (destroy, or the step
//!   left the configuration), once the objects deleted before it are gone.
//!
//! The lifecycles:
//! - [`certificates`]: certificates `vz` issues and values it copies from Secrets (CA bundles in
//!   webhooks and trust stores): planned from what the cluster holds, issued during apply.
//! - [`external_dns`]: ExternalDNS's final sync, so the records it made go with their sources.
//! - [`crds`]: a CustomResourceDefinition keeps serving every version its objects are stored in
//!   (Istio 1.30's `v1`, when the configuration or a rollback moves back to 1.19).
//!
//! Not a hook but planned beside them: [`workloads`], the workloads of injected namespaces whose
//! pods lack a sidecar or run another revision's, which apply restarts at their step.
//!
//! DNS records written on a DNS server (`dns.rfc2136`) are not a lifecycle: they are objects of
//! their own API group, kept in a store the cluster is given for that group
//! ([`crate::cluster::elsewhere`]; the DNS server's is [`crate::dns::Records`]).

use std::borrow::Cow;

use anyhow::Result;
use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;
use vz_providers::{Manifest, Step};
use vz_state::{CertFacts, State};

use crate::cluster::{Cluster, ObjectRef};
use crate::engine::plan::{Change, Seen};
use crate::interrupt::Interrupt;
use crate::output::Progress;

pub mod certificates;
pub mod crds;
pub mod external_dns;
pub mod rotation;
pub mod workloads;

/// What a hook of a run (apply, destroy) works with: the run's cluster, deadline, Ctrl-C and
/// display.
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

/// What the plan's hook works with.
pub struct PlanContext<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// The state the plan starts from.
    pub state: &'a State,
    /// Whether the plan reads the cluster (`--refresh=false`: the state's facts stand in).
    pub refresh: bool,
    /// How many requests may be in flight.
    pub parallelism: usize,
    /// The addresses `--replace` names.
    pub replace: &'a [String],
}

/// How one desired object is to be planned, beyond its rendered content.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Prepared {
    /// Why its key material is made again in this run, if it is (made for a new object is not
    /// "again").
    pub reissue: Option<String>,
    /// The facts of the certificate it holds now.
    pub current: Option<CertFacts>,
    /// Why a value it copies changes: its source is made again in this run.
    pub follows: Option<String>,
    /// Fields not known until apply: JSON pointers, as [`Manifest::unknown`] lists them.
    pub unknown: Vec<String>,
    /// Fields made at apply when the object is created, replaced or made again (key material):
    /// JSON pointers.
    pub made_at_apply: Vec<String>,
    /// Whether planning needs the whole live object (its metadata is not enough).
    pub reads_whole: bool,
    /// What the provider decided to do to the object, carried to apply (and in saved plans) as
    /// [`Change::intent`]: a step of a CA rotation, say. An object with an intent is updated in
    /// place even when `--replace` names it: the provider plans its replacement.
    pub intent: Option<String>,
    /// What the provider tells of the object, changed or not (a CA rotation under way, say).
    pub status: Option<String>,
}

impl Prepared {
    /// What `self` and `other` say together: the first reason given, every field.
    fn merge(&mut self, other: Prepared) {
        self.reissue = self.reissue.take().or(other.reissue);
        self.current = self.current.take().or(other.current);
        self.follows = self.follows.take().or(other.follows);
        self.unknown.extend(other.unknown);
        self.made_at_apply.extend(other.made_at_apply);
        self.reads_whole |= other.reads_whole;
        self.intent = self.intent.take().or(other.intent);
        self.status = self.status.take().or(other.status);
    }
}

/// What a provider decided before a plan, asked object by object. Every method has a default
/// that changes nothing.
pub trait Planning: Send + Sync {
    /// An object read while deciding, handed to the planner to spare a second read
    /// (`Some(None)`: it does not exist).
    fn live(&self, _r: &ObjectRef) -> Option<Option<Value>> {
        None
    }

    /// How `m` is to be planned.
    fn prepare(&self, _m: &Manifest) -> Prepared {
        Prepared::default()
    }

    /// The unknown fields of `m`'s plan refined once its live object (if any) is read.
    fn shown_unknown(&self, _unknown: &mut Vec<String>, _live: Option<&Value>) {}

    /// `m` as a dry run compares it: what apply would keep of `live` put in. `None` when a value
    /// is not known before apply.
    fn for_dry_run(&self, m: Manifest, _live: Option<&Value>) -> Option<Manifest> {
        Some(m)
    }
}

/// What a provider does at points of a run (see the module's documentation). Every hook has a
/// default that does nothing.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Before `desired` is planned; `seen` holds what the planner has read already (take what
    /// the decisions need from it, and hand it back through [`Planning::live`]).
    async fn before_plan(
        &self,
        _cx: &PlanContext<'_>,
        _desired: &[(&Step, &Manifest)],
        _seen: &mut Seen,
    ) -> Result<Option<Box<dyn Planning>>> {
        Ok(None)
    }

    /// Before `m` is sent (`live`: the object as it is now; `renew`: the plan makes its key
    /// material again; `intent`: what the plan decided for it, see [`Prepared::intent`]): the
    /// object to send instead, if the provider fills in parts of it.
    async fn before_apply(
        &self,
        _cluster: &Cluster,
        _m: &Manifest,
        _live: Option<&Value>,
        _renew: bool,
        _intent: Option<&str>,
    ) -> Result<Option<Manifest>> {
        Ok(None)
    }

    /// Once `m` is applied (`applied`: the server's answer): the certificate facts the state
    /// records of it.
    fn after_apply(&self, _m: &Manifest, _applied: &Value) -> Option<CertFacts> {
        None
    }

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
pub const LIFECYCLES: &[&dyn Lifecycle] = &[
    &certificates::Certificates,
    &external_dns::FinalSync,
    &crds::StoredVersions,
];

/// Every lifecycle's [`Planning`] for one plan, asked in the order of [`LIFECYCLES`].
#[derive(Default)]
pub struct Plannings(Vec<Box<dyn Planning>>);

impl Plannings {
    /// Run every lifecycle's [`Lifecycle::before_plan`].
    pub async fn before_plan(
        cx: &PlanContext<'_>,
        desired: &[(&Step, &Manifest)],
        seen: &mut Seen,
    ) -> Result<Plannings> {
        let mut all = Vec::new();
        for hook in LIFECYCLES {
            all.extend(hook.before_plan(cx, desired, seen).await?);
        }
        Ok(Plannings(all))
    }

    /// An object a lifecycle read while deciding (see [`Planning::live`]).
    pub fn live(&self, r: &ObjectRef) -> Option<Option<Value>> {
        self.0.iter().find_map(|p| p.live(r))
    }

    /// How `m` is to be planned, every lifecycle's answer together.
    pub fn prepare(&self, m: &Manifest) -> Prepared {
        let mut out = Prepared::default();
        for p in &self.0 {
            out.merge(p.prepare(m));
        }
        out
    }

    /// The unknown fields refined by every lifecycle (see [`Planning::shown_unknown`]).
    pub fn shown_unknown(&self, unknown: &mut Vec<String>, live: Option<&Value>) {
        for p in &self.0 {
            p.shown_unknown(unknown, live);
        }
    }

    /// `m` as a dry run compares it, every lifecycle's part put in (see
    /// [`Planning::for_dry_run`]).
    pub fn for_dry_run(&self, m: &Manifest, live: Option<&Value>) -> Option<Manifest> {
        self.0
            .iter()
            .try_fold(m.clone(), |m, p| p.for_dry_run(m, live))
    }
}

/// `m` ready to send: every lifecycle's [`Lifecycle::before_apply`] in turn.
pub async fn before_apply<'m>(
    cluster: &Cluster,
    m: &'m Manifest,
    live: Option<&Value>,
    renew: bool,
    intent: Option<&str>,
) -> Result<Cow<'m, Manifest>> {
    let mut sent = Cow::Borrowed(m);
    for hook in LIFECYCLES {
        if let Some(changed) = hook
            .before_apply(cluster, &sent, live, renew, intent)
            .await?
        {
            sent = Cow::Owned(changed);
        }
    }
    Ok(sent)
}

/// The certificate facts the state records of an applied `m` (see [`Lifecycle::after_apply`]).
pub fn after_apply(m: &Manifest, applied: &Value) -> Option<CertFacts> {
    LIFECYCLES.iter().find_map(|h| h.after_apply(m, applied))
}
