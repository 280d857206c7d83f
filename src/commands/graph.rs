//! `vz graph`: the dependency graph of the steps, as DOT.

use std::process::ExitCode;

use anyhow::Result;

use super::Desired;
use crate::cli::ConfigArgs;
use crate::output::out;

/// Run `vz graph`.
pub fn run(args: &ConfigArgs) -> Result<ExitCode> {
    let desired = Desired::load(args.file()?)?;
    out(&desired.graph.dot(&desired.steps))?;
    Ok(ExitCode::SUCCESS)
}
