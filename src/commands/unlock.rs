//! `vz force-unlock ID`: remove a lock left by a run that is gone.

use std::process::ExitCode;

use anyhow::Result;

use super::state::state_path;
use crate::cli::ForceUnlockArgs;

/// Run `vz force-unlock`.
pub fn run(args: &ForceUnlockArgs) -> Result<ExitCode> {
    let path = state_path(&args.state)?;
    let info = vz_state::lock::force_unlock(&path, &args.id)?;
    println!("Removed the lock on {} ({}).", path.display(), info);
    Ok(ExitCode::SUCCESS)
}
