//! `vz apply`: make the cluster match the configuration, or carry out a saved plan.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{Desired, PlanRequest, Planned, Stored, confirm, connect, execute, make_plan};
use crate::cli::{ApplyArgs, ClusterArgs};
use crate::engine::plan::Action;
use crate::engine::{self, saved};
use crate::error::CommandError;
use crate::output::{carry_on, plan_text, print_plan};

/// Run `vz apply`.
pub async fn run(cluster_args: &ClusterArgs, args: &ApplyArgs) -> Result<ExitCode> {
    if let Some(file) = &args.plan_file {
        return apply_saved(cluster_args, args, file).await;
    }
    let planned = make_plan(
        cluster_args,
        &PlanRequest {
            config: &args.run.config,
            select: &args.select,
            replace: &args.replace,
            destroy: false,
            parallelism: usize::from(args.run.parallelism),
            operation: "apply",
            views: false,
        },
    )
    .await?;
    carry_on(print_plan(&plan_text(&planned.plan)))?;
    if !planned.plan.has_work() {
        let mut planned = planned;
        planned.stored.settle(&args.select).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.run.auto_approve && !confirm("\nDo you want to perform these actions?")? {
        bail!("apply cancelled; nothing was changed");
    }
    execute(planned, &args.run, !args.no_rollback).await
}

/// Carry out a plan saved by `vz plan --out`, exactly, if it is not stale. The plan was reviewed
/// when it was made, so there is no confirmation.
async fn apply_saved(
    cluster_args: &ClusterArgs,
    args: &ApplyArgs,
    file: &Path,
) -> Result<ExitCode> {
    if args.run.config.file.is_some()
        || args.run.config.state.is_some()
        || !args.select.targets.is_empty()
        || !args.replace.is_empty()
    {
        return Err(CommandError::usage(anyhow::anyhow!(
            "a saved plan already fixes the configuration, state, targets and replacements"
        ))
        .hint("drop -f/--state/--target/--replace, or make a new plan with them")
        .into());
    }
    let saved = saved::load(file).map_err(CommandError::usage)?;
    let mut desired = Desired::load(&saved.config_path)?;
    let mut stored = Stored::open_at(
        cluster_args,
        saved.state.clone(),
        "apply",
        args.run.config.lock_timeout,
    )
    .await?;
    stored.claim_for(&desired.platform)?;
    let cluster = connect(cluster_args, &desired.platform).await?;
    // Render with the outputs as the plan saw them (read the same way), to check it against the plan.
    let outputs = engine::outputs::read(
        &cluster,
        &desired.steps,
        &stored.state,
        saved.plan.refreshed,
    )
    .await?;
    desired.rerender(&outputs);
    let lineage = (stored.state.serial > 0).then_some(stored.state.lineage.as_str());
    let plan = saved::bind(
        saved.clone(),
        file,
        lineage,
        stored.state.serial,
        &desired.steps,
    )?;
    // The applications the plan makes objects of were named when it was made (`--app`), or
    // had not ended then: none is one that ended any more.
    let applied: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| !matches!(c.action, Action::Delete | Action::Release | Action::Forget))
        .filter_map(|c| c.step.strip_prefix(vz_providers::applications::STEP_PREFIX))
        .map(str::to_string)
        .collect();
    stored.forget_ended(Some(&applied));
    carry_on(print_plan(&plan_text(&plan)))?;
    if !plan.has_work() {
        return Ok(ExitCode::SUCCESS);
    }
    execute(
        Planned {
            desired,
            outputs,
            stored,
            cluster,
            plan,
        },
        &args.run,
        !args.no_rollback,
    )
    .await
}
