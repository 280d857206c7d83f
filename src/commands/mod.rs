//! One module per subcommand; each exposes a `run` that returns the process exit code.
//!
//! This module holds what the commands share: loading the configuration and state, connecting, and
//! asking for confirmation.

pub mod apply;
pub mod destroy;
pub mod explain_access;
pub mod graph;
pub mod plan;
pub mod render;
pub mod state;
pub mod unlock;
pub mod watch;
pub mod workspace;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use vz_providers::{Outputs, Platform};
use vz_state::{Location, Lock, LockInfo, State, Store};

use crate::cli::{ClusterArgs, ConfigArgs, RunArgs, SelectArgs};
use crate::cluster::elsewhere::Elsewhere;
use crate::cluster::{Cluster, ConnectOptions};
use crate::engine;
pub use crate::engine::Desired;
use crate::engine::apply::{RunOptions, Session, apply, destroy};
use crate::engine::plan::{Plan, PlanOptions, plan as plan_changes, plan_destroy};
use crate::error::{CommandError, Kind};
use crate::interrupt::Interrupt;
use crate::output::{Progress, out};

/// Locks taken by this process and not released yet: [`release_held`] releases them however the
/// command ended (a lock whose release needs a request — a Lease — cannot rely on being dropped).
static HELD: std::sync::Mutex<Vec<Arc<dyn Lock>>> = std::sync::Mutex::new(Vec::new());

/// Release every lock this process still holds (after the command, whatever its outcome).
pub async fn release_held() {
    let held: Vec<Arc<dyn Lock>> = HELD
        .lock()
        .map(|mut h| std::mem::take(&mut *h))
        .unwrap_or_default();
    for lock in held {
        if let Err(e) = lock.release().await {
            eprintln!("Warning: {e}");
        }
    }
}

/// The version written into state files.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The state storage, the state it holds (a new, empty state when there is none yet), and the lock
/// held on it for the whole command (renewed in the background when the backend's locks expire).
pub struct Stored {
    /// Where the state lives.
    pub store: Store,
    /// The state.
    pub state: State,
    lock: Arc<dyn Lock>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    /// `state` no longer says that some applications ended ([`Stored::forget_ended`]): the next
    /// write records it.
    forgot_ended: bool,
}

impl Stored {
    /// Lock and read the state the configuration (or `--state`) names, checking it belongs to this
    /// platform.
    pub async fn open(
        cluster: &ClusterArgs,
        args: &ConfigArgs,
        platform: &Platform,
        operation: &str,
    ) -> Result<Stored> {
        let location = match &args.state {
            Some(path) => Location::Local { path: path.clone() },
            None => workspace::location(cluster, &platform.source, &platform.state)?,
        };
        let mut stored = Stored::open_at(cluster, location, operation, args.lock_timeout).await?;
        stored.claim_for(platform)?;
        Ok(stored)
    }

    /// Check that the state belongs to `platform` (a state nothing was written to yet becomes
    /// its own).
    pub fn claim_for(&mut self, platform: &Platform) -> Result<()> {
        let recorded = &self.state.platform;
        if self.state.serial == 0 {
            self.state.platform = platform.environment_name.clone();
        } else if recorded != &platform.environment_name {
            return Err(CommandError::state(anyhow!(
                "the state {} belongs to platform `{recorded}`, but {} describes platform `{}`",
                self.store.location(),
                platform.source.display(),
                platform.environment_name,
            ))
            .hint(format!(
                "use the state of `{}` (--state FILE, or state.path in the configuration)",
                platform.environment_name
            ))
            .into());
        }
        Ok(())
    }

    /// Lock and read the state at `location`.
    pub async fn open_at(
        cluster: &ClusterArgs,
        location: Location,
        operation: &str,
        lock_timeout: Duration,
    ) -> Result<Stored> {
        if let Location::Local { path } = &location
            && let Some(mode) = vz_state::backend::local::exposed(path)
        {
            eprintln!(
                "Warning: the state file {} may be read by others (mode {mode:04o}): it names every object vz manages and the facts of its certificates. The next write makes it 0600; until then: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
        let mut stored = Stored::lock_at(cluster, location, operation, lock_timeout).await?;
        let mut state = stored
            .store
            .read()
            .await?
            .unwrap_or_else(|| State::new("", TOOL_VERSION));
        // The next write is this version's.
        state.tool_version = TOOL_VERSION.to_string();
        stored.state = state;
        Ok(stored)
    }

    /// Lock the state at `location` without reading it (`vz state push` replaces it, even when
    /// what is stored cannot be decoded); `state` is a new, empty one.
    pub async fn lock_at(
        cluster: &ClusterArgs,
        location: Location,
        operation: &str,
        lock_timeout: Duration,
    ) -> Result<Stored> {
        let store = open_store(cluster, &location).await?;
        let info = LockInfo::new(operation, TOOL_VERSION, &location.to_string());
        let lock: Arc<dyn Lock> = Arc::from(store.backend().lock(info, lock_timeout).await?);
        if let Ok(mut held) = HELD.lock() {
            held.push(Arc::clone(&lock));
        }
        if let Some(old) = lock.replaced() {
            let why = if location.lock_expires() {
                "it was not renewed within its lease"
            } else {
                "its process on this host is gone"
            };
            eprintln!(
                "Note: took over the expired lock of {} ({}, pid {}, since {}): {why}",
                old.who, old.operation, old.pid, old.created
            );
        }
        let heartbeat = lock.renew_every().map(|every| {
            let lock = Arc::clone(&lock);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = lock.renew().await {
                        eprintln!("Warning: {e}");
                        return;
                    }
                }
            })
        });
        Ok(Stored {
            store,
            state: State::new("", TOOL_VERSION),
            lock,
            heartbeat,
            forgot_ended: false,
        })
    }

    /// After an apply or destroy plan with nothing to do: the state no longer needs to say that a
    /// run did not finish, when the plan looked for what it left ([`SelectArgs::sweeps`]), nor
    /// that the applications [`Stored::forget_ended`] forgot ended.
    pub async fn settle(&mut self, select: &SelectArgs) -> Result<()> {
        let unfinished = self.state.unfinished.is_some() && select.sweeps();
        if !unfinished && !self.forgot_ended {
            return Ok(());
        }
        let mut state = self.state.clone();
        if unfinished {
            state.unfinished = None;
        }
        self.store.write(&mut state).await?;
        self.state = state;
        self.forgot_ended = false;
        Ok(())
    }

    /// Forget, in the state read, that these applications ended (every one when `None`): the
    /// run's first write, or [`Stored::settle`], records it.
    pub fn forget_ended(&mut self, apps: Option<&[String]>) {
        let before = self.state.terminated.len();
        self.state
            .terminated
            .retain(|a, _| apps.is_some_and(|apps| !apps.contains(a)));
        self.forgot_ended |= self.state.terminated.len() != before;
    }

    /// Release the lock now (dropping does it too, without waiting).
    pub async fn release(self) -> Result<()> {
        if let Some(h) = &self.heartbeat {
            h.abort();
        }
        self.lock.release().await?;
        if let Ok(mut held) = HELD.lock() {
            held.retain(|l| !Arc::ptr_eq(l, &self.lock));
        }
        Ok(())
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        if let Some(h) = &self.heartbeat {
            h.abort();
        }
    }
}

/// Everything a plan was made from, and the plan.
pub struct Planned {
    /// The desired steps.
    pub desired: Desired,
    /// The step outputs known when the plan was made.
    pub outputs: Outputs,
    /// The state the plan started from (locked).
    pub stored: Stored,
    /// The cluster it was planned against.
    pub cluster: Cluster,
    /// The plan.
    pub plan: Plan,
}

/// What to plan, from the command line.
pub struct PlanRequest<'a> {
    /// Configuration and state.
    pub config: &'a ConfigArgs,
    /// Targets and refresh.
    pub select: &'a SelectArgs,
    /// Addresses to replace.
    pub replace: &'a [String],
    /// Plan a destroy.
    pub destroy: bool,
    /// Requests in flight.
    pub parallelism: usize,
    /// The operation the state is locked for.
    pub operation: &'a str,
    /// Keep the plan's before/after views (a JSON or saved plan).
    pub views: bool,
}

/// Load the configuration and state, connect, and plan (shared by `plan`, `apply` and `destroy`).
pub async fn make_plan(cluster_args: &ClusterArgs, req: &PlanRequest<'_>) -> Result<Planned> {
    let mut desired = Desired::load(req.config.file()?)?;
    let mut stored =
        Stored::open(cluster_args, req.config, &desired.platform, req.operation).await?;
    // An application named with `--app` is applied again; once the whole platform is destroyed,
    // no application is one that ended any more.
    if !req.destroy {
        stored.forget_ended(Some(&req.select.apps));
    } else if req.select.apps.is_empty() && req.select.targets.is_empty() {
        stored.forget_ended(None);
    }
    let notes = if req.destroy {
        Vec::new()
    } else {
        leave_out_terminated(&mut desired, &stored.state)?
    };
    let cluster = connect(cluster_args, &desired.platform).await?;
    eprintln!(
        "Planning against {} (platform `{}`, state: {})",
        cluster.server(),
        desired.platform.environment_name,
        stored.store.location()
    );
    if !req.destroy && req.select.refresh {
        engine::requirements::check(
            &cluster,
            &vz_providers::requirements(&desired.platform),
            &stored.state,
        )
        .await?;
    }
    // A destroy works from the state alone: it reads no outputs (so `destroy --app` needs no
    // rights on the platform's Services).
    let outputs = if req.destroy {
        Outputs::default()
    } else {
        engine::outputs::read(&cluster, &desired.steps, &stored.state, req.select.refresh).await?
    };
    // Where a run that did not finish may have left objects (a destroy has nothing else to go by).
    let kinds = desired
        .steps
        .iter()
        .flat_map(|s| &s.objects)
        .map(|m| (m.api_version.clone(), m.kind.clone()))
        .collect();
    // A plan of part of the platform gets the rest of its network from the desired objects.
    let partial = !req.select.apps.is_empty() || !req.select.targets.is_empty();
    let context = if partial {
        crate::connectivity::changes::context(&desired.steps)
    } else {
        Vec::new()
    };
    if req.destroy {
        // A destroy works from the state alone: the rendered objects are not needed, and with
        // thousands of applications they are most of its memory.
        desired.steps = Vec::new();
    } else {
        desired.rerender(&outputs);
    }
    let opts = PlanOptions {
        parallelism: req.parallelism,
        refresh: req.select.refresh,
        targets: req.select.targets.clone(),
        replace: req.replace.to_vec(),
        apps: req.select.apps.clone(),
        views: req.views,
        kinds,
    };
    let mut plan = if req.destroy {
        plan_destroy(&cluster, &stored.state, &opts).await?
    } else {
        plan_changes(
            &cluster,
            &desired.steps,
            &desired.graph,
            &stored.state,
            &opts,
        )
        .await?
    };
    crate::connectivity::changes::annotate(&mut plan, &context);
    plan.notes = notes;
    if !req.destroy && !partial && req.select.refresh {
        let (restarts, warnings) =
            crate::lifecycle::workloads::plan_restarts(&cluster, &desired.platform, &desired.steps)
                .await?;
        plan.restarts = restarts;
        plan.warnings.extend(warnings);
    }
    if !req.destroy && desired.platform.components.installs_istio() {
        let pilot = desired
            .platform
            .images
            .reference(vz_providers::config::Image::Pilot);
        plan.warnings.extend(
            cluster
                .version()
                .and_then(|v| crate::support::istio_warning(&pilot, v)),
        );
    }
    Ok(Planned {
        desired,
        outputs,
        stored,
        cluster,
        plan,
    })
}

/// Leave out of `desired` the applications `vz watch` saw end (what the state still records of
/// them is then planned for deletion); one note for each application left out.
fn leave_out_terminated(desired: &mut Desired, state: &State) -> Result<Vec<String>> {
    let mut left_out = std::collections::BTreeSet::new();
    let mut notes = Vec::new();
    for app in &desired.platform.applications {
        let Some(ended) = state.terminated.get(&app.name) else {
            continue;
        };
        left_out.insert(app.name.clone());
        notes.push(format!(
            "application `{}` ended at {} ({}), as `vz watch` saw: it is left out of this plan; `vz apply --app {}` applies it again",
            app.name, ended.at, ended.reason, app.name
        ));
    }
    desired.without_apps(&left_out)?;
    Ok(notes)
}

/// Carry out `plan` (an apply or a destroy plan), then say what was done.
pub async fn execute(planned: Planned, args: &RunArgs, rollback: bool) -> Result<ExitCode> {
    execute_with(planned, args, rollback, None).await
}

/// [`execute`], stopped by `interrupt` when given (`vz watch` listens for signals once for all
/// its runs) instead of by a signal handler of its own.
pub async fn execute_with(
    planned: Planned,
    args: &RunArgs,
    rollback: bool,
    interrupt: Option<Interrupt>,
) -> Result<ExitCode> {
    let Planned {
        desired,
        outputs,
        stored,
        cluster,
        plan,
    } = planned;
    let opts = RunOptions {
        parallelism: usize::from(args.parallelism),
        timeout: args.timeout,
        wait: args.wait,
        rollback: rollback && !plan.destroy,
        leave_dns_records: args.leave_dns_records,
        interrupt: interrupt.unwrap_or_else(|| Interrupt::install(match (plan.destroy, rollback) {
            (true, _) => {
                "Interrupt received: stopping after the deletions in flight; the state records what is left..."
            }
            (false, true) => {
                "Interrupt received: stopping, then rolling back this run's changes..."
            }
            (false, false) => {
                "Interrupt received: stopping after the requests in flight (no rollback)..."
            }
        })),
    };
    let (add, change, destroyed) = plan.counts();
    let change = change - plan.pending();
    let mut released = match (plan.released(), plan.recovered()) {
        (0, 0) => String::new(),
        (n, 0) => format!(", {n} released"),
        (0, r) => format!(", {r} recovered"),
        (n, r) => format!(", {n} released, {r} recovered"),
    };
    if plan.pending() > 0 {
        released.push_str(&format!(
            ", {} pending (their owner had not created them when planned)",
            plan.pending()
        ));
    }
    let path = stored.store.location().to_string();
    let state = stored.state.clone();
    let progress = Progress::new();
    let session = Session {
        cluster: &cluster,
        store: &stored.store,
        opts: &opts,
        progress: &progress,
    };
    if plan.destroy {
        destroy(session, &plan, state).await.map_err(|e| {
            // A destroy is not rolled back: what it deleted stays deleted.
            let mut e = CommandError::from_any(e);
            e.kind = Kind::Partial;
            e
        })?;
        drop(progress);
        out(&format!(
            "\nDestroy complete! Objects: {destroyed} destroyed{released}. State: {path}\n"
        ))?;
    } else {
        apply(session, &plan, &desired, outputs, state).await?;
        drop(progress);
        out(&format!(
            "\nApply complete! Objects: {add} added, {change} changed, {destroyed} destroyed{released}. State: {path}\n"
        ))?;
    }
    stored.release().await?;
    Ok(ExitCode::SUCCESS)
}

/// Connect to the cluster the global flags name.
pub async fn connect(args: &ClusterArgs, platform: &vz_providers::Platform) -> Result<Cluster> {
    let cluster = Cluster::connect(&ConnectOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    })
    .await?;
    // DNS records live on the DNS server the configuration names (or nowhere, when it names
    // none: the state may still hold records made while it did).
    let records: Arc<dyn Elsewhere> = match &platform.dns {
        vz_providers::config::Dns::Rfc2136(cfg) => {
            Arc::new(crate::dns::Records::connect(cfg).await?)
        }
        _ => Arc::new(crate::dns::Unconfigured),
    };
    Ok(cluster.keep_elsewhere(vz_providers::dns_records::API_VERSION, records))
}

/// A client for the cluster of `cluster` when the state at `location` lives in one.
pub async fn connect_for_state(
    cluster: &ClusterArgs,
    location: &Location,
) -> Result<Option<kube::Client>> {
    if !location.needs_cluster() {
        return Ok(None);
    }
    let connection = crate::cluster::client(&ConnectOptions {
        kubeconfig: cluster.kubeconfig.clone(),
        context: cluster.context.clone(),
    })
    .await?;
    Ok(Some(connection.client))
}

/// The store at `location`, connected to the cluster of `cluster` when the state lives in one.
pub async fn open_store(cluster: &ClusterArgs, location: &Location) -> Result<Store> {
    let client = connect_for_state(cluster, location).await?;
    Ok(Store::new(location.open(client.as_ref())?))
}

/// Ask the user to type `yes`; fails clearly when there is no terminal to ask on.
pub fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::new(
            Kind::Other,
            anyhow!("cannot ask for confirmation: standard input is not a terminal"),
        )
        .hint("review the plan (vz plan), then run again with --auto-approve")
        .into());
    }
    let answer: String = dialoguer::Input::new()
        .with_prompt(format!("{question}\n  Only 'yes' will be accepted"))
        .allow_empty(true)
        .interact_text()
        .context("cannot read the answer")?;
    Ok(answer.trim() == "yes")
}
