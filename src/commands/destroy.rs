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
    // Once the whole platform is gone, no application is one that ended any more.
    let whole = args.select.targets.is_empty() && args.select.apps.is_empty();
    if planned.plan.changes.is_empty() {
        planned.stored.settle_unfinished(&args.select).await?;
        if whole {
            planned.stored.revive(None).await?;
        }
        out(&format!(
            "Nothing to destroy: the state {} records no objects.\n",
            planned.stored.store.location()
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    if whole {
        planned.stored.state.terminated.clear();
    }
    carry_on(print_plan(&plan_text(&planned.plan)))?;
    if !args.run.auto_approve
        && !confirm("\nDo you really want to destroy every object listed above?")?
    {
        bail!("destroy cancelled; nothing was changed");
    }
    execute(planned, &args.run, false).await
}
