//! `vz apply`: make the cluster match the configuration.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{Planned, confirm, make_plan};
use crate::cli::{ApplyArgs, ClusterArgs};
use crate::engine::apply::{RunOptions, apply};
use crate::interrupt::Interrupt;
use crate::output::{Progress, plan_text};

/// Run `vz apply`.
pub async fn run(cluster_args: &ClusterArgs, apply_args: &ApplyArgs) -> Result<ExitCode> {
    let args = &apply_args.run;
    let parallelism = usize::from(args.parallelism);
    let Planned {
        desired,
        stored,
        cluster,
        plan,
    } = make_plan(cluster_args, &args.config, parallelism, "apply").await?;
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
        wait: args.wait,
        rollback: !apply_args.no_rollback,
        interrupt: Interrupt::install(if apply_args.no_rollback {
            "Interrupt received: stopping after the requests in flight (no rollback)..."
        } else {
            "Interrupt received: stopping, then rolling back this run's changes..."
        }),
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
