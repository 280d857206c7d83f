//! `vz plan`: show what apply would change.

use std::process::ExitCode;

use anyhow::Result;

use super::{Desired, Stored, connect};
use crate::cli::{ClusterArgs, PlanArgs};
use crate::engine::plan::plan;
use crate::output::plan_text;

/// Run `vz plan`.
pub async fn run(cluster_args: &ClusterArgs, args: &PlanArgs) -> Result<ExitCode> {
    let desired = Desired::load(&args.config)?;
    let stored = Stored::open(&args.config, &desired.platform)?;
    let cluster = connect(cluster_args).await?;
    eprintln!(
        "Planning against {} (platform `{}`)",
        cluster.server(),
        desired.platform.environment_name
    );
    let plan = plan(
        &cluster,
        &desired.steps,
        desired.graph.order(),
        &stored.state,
        usize::from(args.parallelism),
    )
    .await?;
    print!("{}", plan_text(&plan, false));
    Ok(if args.detailed_exitcode && plan.has_work() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
