//! One module per subcommand; each exposes a `run` that returns the process exit code.
//!
//! This module holds what the commands share: loading the configuration and state, connecting, and
//! asking for confirmation.

pub mod apply;
pub mod destroy;
pub mod plan;
pub mod render;
pub mod state;
pub mod unlock;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use vz_providers::{Platform, Step};
use vz_state::{LocalBackend, LockGuard, State};

use crate::cli::{ClusterArgs, ConfigArgs};
use crate::cluster::{Cluster, ConnectOptions};
use crate::engine::plan::{Plan, plan as plan_changes};
use crate::engine::{self, graph::StepGraph};

/// The version written into state files.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A configuration read and validated, with its desired steps and their graph.
pub struct Desired {
    /// The validated configuration.
    pub platform: Platform,
    /// The desired steps.
    pub steps: Vec<Step>,
    /// Their dependency graph.
    pub graph: StepGraph,
}

impl Desired {
    /// Load the configuration file and render the desired steps.
    pub fn load(args: &ConfigArgs) -> Result<Desired> {
        let platform = vz_providers::config::load(&args.file)?;
        let steps = vz_providers::desired(&platform);
        let graph = engine::graph_of(&steps)?;
        Ok(Desired {
            platform,
            steps,
            graph,
        })
    }
}

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
        let stored = Stored::open_path(path, operation, args.lock_timeout)?;
        if let Some(s) = stored.backend_state_platform()
            && s != platform.environment_name
        {
            bail!(
                "the state file {} belongs to platform `{s}`, but {} describes platform `{}`\n\
                 hint: use the state file of `{}` (--state FILE or state.path in the configuration)",
                stored.backend.path().display(),
                platform.source.display(),
                platform.environment_name,
                platform.environment_name
            );
        }
        let mut stored = stored;
        if stored.state.serial == 0 && stored.state.objects.is_empty() {
            stored.state.platform = platform.environment_name.clone();
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
        let state = backend
            .read()?
            .unwrap_or_else(|| State::new("", TOOL_VERSION));
        Ok(Stored {
            backend,
            state,
            _lock: lock,
        })
    }

    fn backend_state_platform(&self) -> Option<&str> {
        (self.state.serial > 0).then_some(self.state.platform.as_str())
    }
}

/// Everything a plan was made from, and the plan.
pub struct Planned {
    /// The desired steps.
    pub desired: Desired,
    /// The state the plan started from.
    pub stored: Stored,
    /// The cluster it was planned against.
    pub cluster: Cluster,
    /// The plan.
    pub plan: Plan,
}

/// Load the configuration and state, connect, and plan (shared by `plan` and `apply`).
pub async fn make_plan(
    cluster_args: &ClusterArgs,
    config: &ConfigArgs,
    parallelism: usize,
    operation: &str,
) -> Result<Planned> {
    let desired = Desired::load(config)?;
    let stored = Stored::open(config, &desired.platform, operation)?;
    let cluster = connect(cluster_args).await?;
    eprintln!(
        "Planning against {} (platform `{}`)",
        cluster.server(),
        desired.platform.environment_name
    );
    let plan = plan_changes(
        &cluster,
        &desired.steps,
        desired.graph.order(),
        &stored.state,
        parallelism,
    )
    .await?;
    Ok(Planned {
        desired,
        stored,
        cluster,
        plan,
    })
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
