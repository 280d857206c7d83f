//! `vz graph`: the dependency graph of the steps, as DOT.

use std::process::ExitCode;

use anyhow::Result;

use super::Desired;
use crate::cli::ConfigArgs;

/// Run `vz graph`.
pub fn run(args: &ConfigArgs) -> Result<ExitCode> {
    let desired = Desired::load(args.file()?)?;
    print!("{}", desired.graph.dot(&desired.steps));
    Ok(ExitCode::SUCCESS)
}
