//! `vz force-unlock ID`: remove a lock left by a run that is gone.

use std::process::ExitCode;

use anyhow::Result;

use super::state::state_location;
use crate::cli::ClusterArgs;
use crate::cli::ForceUnlockArgs;
use crate::output::out;

/// Run `vz force-unlock`.
pub async fn run(cluster: &ClusterArgs, args: &ForceUnlockArgs) -> Result<ExitCode> {
    let location = state_location(cluster, &args.state)?;
    let info = super::open_store(cluster, &location)
        .await?
        .backend()
        .force_unlock(&args.id)
        .await?;
    out(&format!("Removed the lock on {location} ({info}).\n"))?;
    Ok(ExitCode::SUCCESS)
}
