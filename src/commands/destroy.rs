//! `vz destroy`: delete everything the state records.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{Desired, Stored, confirm, connect};
use crate::cli::{ClusterArgs, RunArgs};
use crate::engine::apply::{RunOptions, destroy};
use crate::engine::plan::plan_destroy;
use crate::interrupt::Interrupt;
use crate::output::{Progress, plan_text};

/// Run `vz destroy`.
pub async fn run(cluster_args: &ClusterArgs, args: &RunArgs) -> Result<ExitCode> {
    let desired = Desired::load(&args.config)?;
    let stored = Stored::open(&args.config, &desired.platform, "destroy")?;
    if stored.state.objects.is_empty() {
        println!(
            "Nothing to destroy: the state {} records no objects.",
            stored.backend.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = connect(cluster_args).await?;
    let parallelism = usize::from(args.parallelism);
    let plan = plan_destroy(&cluster, &stored.state, parallelism).await?;
    print!("{}", plan_text(&plan, true));
    if !args.auto_approve && !confirm("\nDo you really want to destroy every object listed above?")?
    {
        bail!("destroy cancelled; nothing was changed");
    }
    let opts = RunOptions {
        parallelism,
        timeout: args.timeout,
        wait: args.wait,
        rollback: false,
        interrupt: Interrupt::install(
            "Interrupt received: stopping after the deletions in flight; the state records what is left...",
        ),
    };
    destroy(
        &cluster,
        &plan,
        &stored.backend,
        stored.state,
        &opts,
        &Progress,
    )
    .await?;
    let (_, _, destroyed) = plan.counts();
    println!("\nDestroy complete! Objects: {destroyed} destroyed.");
    Ok(ExitCode::SUCCESS)
}
