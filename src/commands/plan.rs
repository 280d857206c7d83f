//! `vz plan`: show what apply would change; optionally save the plan or print it as JSON.

use std::process::ExitCode;

use anyhow::Result;

use super::{PlanRequest, make_plan};
use crate::cli::{ClusterArgs, PlanArgs};
use crate::engine::saved::{self, SavedPlan};
use crate::output::{carry_on, certificates_text, out, plan_json, plan_text, print_plan};

/// Run `vz plan`.
pub async fn run(cluster_args: &ClusterArgs, args: &PlanArgs) -> Result<ExitCode> {
    let planned = make_plan(
        cluster_args,
        &PlanRequest {
            config: &args.config,
            select: &args.select,
            replace: &args.replace,
            destroy: args.destroy,
            parallelism: usize::from(args.parallelism),
            operation: "plan",
            views: args.json || args.out.is_some(),
        },
    )
    .await?;
    let plan = &planned.plan;
    if args.json {
        let platform = &planned.desired.platform.environment_name;
        carry_on(out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&plan_json(plan, platform))?
        )))?;
    } else {
        carry_on(print_plan(&plan_text(plan)))?;
        if args.certificates {
            let now = crate::lifecycle::certificates::now();
            carry_on(print_plan(&certificates_text(plan, now)))?;
        }
    }
    if let Some(file) = &args.out {
        let state = &planned.stored.state;
        let saved = SavedPlan {
            format_version: saved::FORMAT_VERSION,
            vz_version: env!("CARGO_PKG_VERSION").to_string(),
            config_path: saved::absolute(&planned.desired.platform.source),
            config_sha256: saved::file_sha256(&planned.desired.platform.source)?,
            state: saved::absolute_location(planned.stored.store.location()),
            lineage: (state.serial > 0).then(|| state.lineage.clone()),
            serial: state.serial,
            plan: plan.clone(),
        };
        saved::save(file, &saved)?;
        if !args.json {
            out(&format!(
                "\nSaved the plan to {}. To carry out exactly these actions: vz apply {}\n",
                file.display(),
                file.display()
            ))?;
        }
    }
    Ok(if args.detailed_exitcode && plan.has_work() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
