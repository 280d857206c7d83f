//! `vz render`: print the desired objects as multi-document YAML, like `helm template`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Desired;
use crate::cli::ConfigArgs;

/// Run `vz render`.
pub fn run(args: &ConfigArgs) -> Result<ExitCode> {
    let desired = Desired::load(args.file()?)?;
    let mut out = String::new();
    for id in desired.graph.order() {
        let Some(step) = desired.steps.iter().find(|s| &s.id == id) else {
            continue;
        };
        for m in &step.objects {
            out.push_str("---\n");
            out.push_str(&format!("# {}\n", step.address_of(m)));
            out.push_str(
                &serde_saphyr::to_string(&m.body)
                    .with_context(|| format!("cannot render {} as YAML", m.display_name()))?,
            );
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
