//! `vz apply`: make the cluster match the configuration.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{Desired, Stored, confirm, connect};
use crate::cli::{ApplyArgs, ClusterArgs};
use crate::engine::apply::{RunOptions, apply};
use crate::engine::plan::plan;
use crate::output::{Progress, plan_text};

/// Run `vz apply`.
pub async fn run(cluster_args: &ClusterArgs, args: &ApplyArgs) -> Result<ExitCode> {
    let desired = Desired::load(&args.config)?;
    let stored = Stored::open(&args.config, &desired.platform)?;
    let cluster = connect(cluster_args).await?;
    eprintln!(
        "Planning against {} (platform `{}`)",
        cluster.server(),
        desired.platform.environment_name
    );
    let parallelism = usize::from(args.parallelism);
    let plan = plan(
        &cluster,
        &desired.steps,
        desired.graph.order(),
        &stored.state,
        parallelism,
    )
    .await?;
    print!("{}", plan_text(&plan, false));
    if !plan.has_work() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve && !confirm("\nDo you want to perform these actions?")? {
        bail!("apply cancelled; nothing was changed");
    }
    let opts = RunOptions {
        parallelism,
        timeout: args.timeout,
    };
    apply(
        &cluster,
        &plan,
        &desired.graph,
        &stored.backend,
        stored.state,
        &opts,
        &Progress,
    )
    .await?;
    let (add, change, destroy) = plan.counts();
    println!(
        "\nApply complete! Objects: {add} added, {change} changed, {destroy} destroyed. State: {}",
        stored.backend.path().display()
    );
    Ok(ExitCode::SUCCESS)
}
