//! The engine: order the steps, plan the changes, carry them out.
//!
//! - [`graph`]: the step DAG and its parallel walk.
//! - [`order`]: kind-aware ordering across and within steps.
//! - [`outputs`]: values steps publish for the steps that depend on them.
//! - [`plan`]: desired vs recorded vs live; [`plan::decide`] holds its decisions as pure functions.
//! - [`apply`]: applying and deleting along the DAG, with the state written after every step, and
//!   rolling back on failure.
//! - [`restart`]: workloads a plan restarts (their pods made again), and how.
//! - [`rollback`]: how changes are undone, and what the state records after an undo.
//! - `recorder`: the state as a run changes it, written to the store at most every so often.
//! - [`saved`]: plans saved to a file, bound to the configuration and state they were made from.

pub mod apply;
pub mod graph;
pub mod order;
pub mod outputs;
pub mod plan;
mod recorder;
pub mod requirements;
pub mod restart;
pub mod rollback;
pub mod saved;

#[cfg(test)]
mod memory_tests;
#[cfg(test)]
mod patched_tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use vz_providers::{Outputs, Platform, Step};

use graph::{StepGraph, StepNode};

/// What the engine can tell went wrong, beyond the cluster's and the state's own errors. The
/// messages name objects and files, never command-line flags (the command line adds those as hints).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A target or replacement names no step or object.
    #[error("{0}")]
    UnknownAddress(String),
    /// `--app` names an application that is neither configured nor recorded, or the platform it
    /// runs on is not applied yet.
    #[error("{0}")]
    UnknownApp(String),
    /// The object is labelled for another `vz` platform.
    #[error(
        "{object} is managed by another vz platform, `{platform}` (label vz.dev/platform); refusing to take it over"
    )]
    OtherPlatform {
        /// The object.
        object: String,
        /// The platform its label names.
        platform: String,
    },
    /// An object `vz` would create exists already, and was made by someone else.
    #[error("{object} exists and was not created by vz: {what}")]
    NotOurs {
        /// The object.
        object: String,
        /// Its address.
        address: String,
        /// What it probably is, and what to do instead.
        what: String,
    },
    /// What the platform needs from the cluster is not there.
    #[error("{object} {problem}: {why}")]
    Unmet {
        /// The object required.
        object: String,
        /// What is wrong with it (missing, not ready).
        problem: String,
        /// Why it is required, and what to do.
        why: String,
    },
    /// A saved plan no longer applies.
    #[error("the saved plan {} is stale: {why}", plan.display())]
    StalePlan {
        /// The plan file.
        plan: PathBuf,
        /// The configuration it was made from.
        config: PathBuf,
        /// What moved on.
        why: String,
    },
    /// A field `vz` patches into someone else's object cannot change in place.
    #[error(
        "{object}: the fields vz sets cannot change in place ({fields}), and vz does not own the object, so it cannot replace it"
    )]
    CannotPatch {
        /// The object.
        object: String,
        /// The immutable fields.
        fields: String,
    },
    /// The run's time limit ran out.
    #[error("the time limit ({secs}s) ran out before {doing}")]
    Timeout {
        /// The limit, in seconds.
        secs: u64,
        /// What was about to happen.
        doing: String,
    },
    /// An object still needs values other steps did not publish.
    #[error("{address} needs values that are not known yet: {missing}{}", if *waited { "; the object they are read from had no value once ready" } else { "; apply did not wait for the objects they are read from" })]
    MissingOutputs {
        /// The object.
        address: String,
        /// The outputs missing, and where they are read from.
        missing: String,
        /// Whether apply waited for readiness.
        waited: bool,
    },
    /// Ctrl-C (or SIGTERM).
    #[error("interrupted before {doing}")]
    Interrupted {
        /// What was about to happen.
        doing: String,
    },
}

/// A configuration read and validated, with its desired steps and their graph.
pub struct Desired {
    /// The validated configuration.
    pub platform: Platform,
    /// The desired steps, rendered with the outputs known so far.
    pub steps: Vec<Step>,
    /// Their dependency graph.
    pub graph: StepGraph,
}

impl Desired {
    /// Load the configuration file and render the desired steps (no outputs known yet).
    pub fn load(file: &Path) -> Result<Desired> {
        let platform = vz_providers::config::load(file)?;
        let steps = vz_providers::desired(&platform, &Outputs::default());
        check_adopt(&platform, &steps)?;
        let graph = graph_of(&steps)?;
        Ok(Desired {
            platform,
            steps,
            graph,
        })
    }

    /// Leave these applications out: their steps, and their namespaces' when no other application
    /// of the configuration is in them.
    pub fn without_apps(&mut self, names: &std::collections::BTreeSet<String>) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        self.platform
            .applications
            .retain(|a| !names.contains(&a.name));
        self.steps = vz_providers::desired(&self.platform, &Outputs::default());
        self.graph = graph_of(&self.steps)?;
        Ok(())
    }

    /// The steps rendered again with `outputs`.
    pub fn render(&self, outputs: &Outputs) -> Vec<Step> {
        vz_providers::desired(&self.platform, outputs)
    }

    /// Render the steps again with `outputs`, in place.
    pub fn rerender(&mut self, outputs: &Outputs) {
        // The old steps go first: at thousands of objects, two renderings at once are most of a
        // plan's memory.
        self.steps = Vec::new();
        self.steps = self.render(outputs);
    }
}

/// Every address the configuration's `adopt:` names must be an object of the platform.
fn check_adopt(platform: &Platform, steps: &[Step]) -> Result<(), vz_providers::ConfigError> {
    for (i, a) in platform.adopt.iter().enumerate() {
        let known = steps
            .iter()
            .any(|s| s.objects.iter().any(|m| s.address_of(m) == a.address));
        if !known {
            return Err(vz_providers::ConfigError {
                file: platform.source.clone(),
                line: Some(a.at.0),
                column: Some(a.at.1),
                field: Some(format!("adopt[{i}]")),
                message: format!(
                    "`{}` is not an object of this platform (`vz render` shows every object; the address is `<step>/<Kind>/<namespace>/<name>`)",
                    a.address
                ),
            });
        }
    }
    Ok(())
}

/// The dependency graph of the desired steps.
pub fn graph_of(steps: &[Step]) -> Result<StepGraph> {
    let nodes: Vec<StepNode> = steps
        .iter()
        .map(|s| StepNode {
            id: s.id.clone(),
            depends_on: s.depends_on.clone(),
            provides: s
                .objects
                .iter()
                .filter_map(|m| order::provides(&m.api_version, &m.kind, &m.name, Some(&m.body)))
                .collect(),
            needs: s
                .objects
                .iter()
                .flat_map(|m| order::needs(&m.api_version, &m.kind, m.namespace.as_deref()))
                .collect::<BTreeSet<_>>(),
        })
        .collect();
    StepGraph::build(&nodes)
}
