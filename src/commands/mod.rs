//! One module per subcommand; each exposes a `run` that returns the process exit code.
//!
//! This module holds what the commands share: loading the configuration and state, connecting, and
//! asking for confirmation.

pub mod apply;
pub mod destroy;
pub mod graph;
pub mod plan;
pub mod render;
pub mod state;
pub mod unlock;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use vz_providers::{Outputs, Platform};
use vz_state::{LocalBackend, LockGuard, State};

use crate::cli::{ClusterArgs, ConfigArgs, RunArgs, SelectArgs};
use crate::cluster::{Cluster, ConnectOptions};
use crate::engine;
pub use crate::engine::Desired;
use crate::engine::apply::{RunOptions, Session, apply, destroy};
use crate::engine::plan::{Plan, PlanOptions, plan as plan_changes, plan_destroy};
use crate::interrupt::Interrupt;
use crate::output::Progress;

/// The version written into state files.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The state backend, the state it holds (a new, empty state when there is none yet), and the lock
/// held on it for the whole command.
pub struct Stored {
    /// Where the state lives.
    pub backend: LocalBackend,
    /// The state.
    pub state: State,
    /// Held until the command ends.
    pub _lock: LockGuard,
}

impl Stored {
    /// Lock and read the state the configuration (or `--state`) names, checking it belongs to this
    /// platform.
    pub fn open(args: &ConfigArgs, platform: &Platform, operation: &str) -> Result<Stored> {
        let path: PathBuf = args
            .state
            .clone()
            .unwrap_or_else(|| platform.state_path.clone());
        let mut stored = Stored::open_path(path, operation, args.lock_timeout)?;
        let recorded = &stored.state.platform;
        if stored.state.serial == 0 {
            // Nothing written yet: the state starts as this platform's.
            stored.state.platform = platform.environment_name.clone();
        } else if recorded != &platform.environment_name {
            bail!(
                "the state file {} belongs to platform `{recorded}`, but {} describes platform `{}`\n\
                 hint: use the state file of `{}` (--state FILE or state.path in the configuration)",
                stored.backend.path().display(),
                platform.source.display(),
                platform.environment_name,
                platform.environment_name
            );
        }
        Ok(stored)
    }

    /// Lock and read the state file at `path`.
    pub fn open_path(path: PathBuf, operation: &str, lock_timeout: Duration) -> Result<Stored> {
        let lock = vz_state::lock::acquire(&path, operation, TOOL_VERSION, lock_timeout)?;
        if let Some(old) = &lock.replaced {
            eprintln!(
                "Note: took over a stale lock of {} (its process {} on this host is gone)",
                old.who, old.pid
            );
        }
        let backend = LocalBackend::new(path);
        let mut state = backend
            .read()?
            .unwrap_or_else(|| State::new("", TOOL_VERSION));
        // The next write is this version's.
        state.tool_version = TOOL_VERSION.to_string();
        Ok(Stored {
            backend,
            state,
            _lock: lock,
        })
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
}

/// Load the configuration and state, connect, and plan (shared by `plan`, `apply` and `destroy`).
pub async fn make_plan(cluster_args: &ClusterArgs, req: &PlanRequest<'_>) -> Result<Planned> {
    let mut desired = Desired::load(req.config.file()?)?;
    let stored = Stored::open(req.config, &desired.platform, req.operation)?;
    let cluster = connect(cluster_args).await?;
    eprintln!(
        "Planning against {} (platform `{}`)",
        cluster.server(),
        desired.platform.environment_name
    );
    let outputs =
        engine::outputs::read(&cluster, &desired.steps, &stored.state, req.select.refresh).await?;
    desired.rerender(&outputs);
    let opts = PlanOptions {
        parallelism: req.parallelism,
        refresh: req.select.refresh,
        targets: req.select.targets.clone(),
        replace: req.replace.to_vec(),
    };
    let plan = if req.destroy {
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
    Ok(Planned {
        desired,
        outputs,
        stored,
        cluster,
        plan,
    })
}

/// Carry out `plan` (an apply or a destroy plan), then say what was done.
pub async fn execute(planned: Planned, args: &RunArgs, rollback: bool) -> Result<ExitCode> {
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
        interrupt: Interrupt::install(match (plan.destroy, rollback) {
            (true, _) => {
                "Interrupt received: stopping after the deletions in flight; the state records what is left..."
            }
            (false, true) => {
                "Interrupt received: stopping, then rolling back this run's changes..."
            }
            (false, false) => {
                "Interrupt received: stopping after the requests in flight (no rollback)..."
            }
        }),
    };
    let (add, change, destroyed) = plan.counts();
    let released = match plan.released() {
        0 => String::new(),
        n => format!(", {n} released"),
    };
    let path = stored.backend.path().display().to_string();
    let progress = Progress::new();
    let session = Session {
        cluster: &cluster,
        backend: &stored.backend,
        opts: &opts,
        progress: &progress,
    };
    if plan.destroy {
        destroy(session, &plan, stored.state).await?;
        drop(progress);
        println!("\nDestroy complete! Objects: {destroyed} destroyed{released}. State: {path}");
    } else {
        apply(session, &plan, &desired, outputs, stored.state).await?;
        drop(progress);
        println!(
            "\nApply complete! Objects: {add} added, {change} changed, {destroyed} destroyed{released}. State: {path}"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Connect to the cluster the global flags name.
pub async fn connect(args: &ClusterArgs) -> Result<Cluster> {
    Cluster::connect(&ConnectOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    })
    .await
}

/// Ask the user to type `yes`; fails clearly when there is no terminal to ask on.
pub fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "cannot ask for confirmation: standard input is not a terminal\n\
             hint: review the plan (vz plan), then run again with --auto-approve"
        );
    }
    let answer: String = dialoguer::Input::new()
        .with_prompt(format!("{question}\n  Only 'yes' will be accepted"))
        .allow_empty(true)
        .interact_text()
        .context("cannot read the answer")?;
    Ok(answer.trim() == "yes")
}
