//! `vz plan`: show what apply would change.

use std::process::ExitCode;

use anyhow::Result;

use super::make_plan;
use crate::cli::{ClusterArgs, PlanArgs};
use crate::output::plan_text;

/// Run `vz plan`.
pub async fn run(cluster_args: &ClusterArgs, args: &PlanArgs) -> Result<ExitCode> {
    let planned = make_plan(
        cluster_args,
        &args.config,
        usize::from(args.parallelism),
        "plan",
    )
    .await?;
    print!("{}", plan_text(&planned.plan, false));
    Ok(if args.detailed_exitcode && planned.plan.has_work() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
