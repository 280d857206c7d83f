//! `vz destroy`: delete everything the state records.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{PlanRequest, confirm, execute, make_plan};
use crate::cli::{ClusterArgs, DestroyArgs};
use crate::output::{carry_on, out, plan_text, print_plan};

/// Run `vz destroy`.
pub async fn run(cluster_args: &ClusterArgs, args: &DestroyArgs) -> Result<ExitCode> {
    let mut planned = make_plan(
        cluster_args,
        &PlanRequest {
            config: &args.run.config,
            select: &args.select,
            replace: &[],
            destroy: true,
            parallelism: usize::from(args.run.parallelism),
            operation: "destroy",
            views: false,
        },
    )
    .await?;
    if planned.plan.changes.is_empty() {
        planned.stored.settle(&args.select).await?;
        out(&format!(
            "Nothing to destroy: the state {} records no objects.\n",
            planned.stored.store.location()
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    carry_on(print_plan(&plan_text(&planned.plan)))?;
    if !args.run.auto_approve
        && !confirm("\nDo you really want to destroy every object listed above?")?
    {
        bail!("destroy cancelled; nothing was changed");
    }
    execute(planned, &args.run, false).await
}
