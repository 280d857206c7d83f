//! The engine: order the steps, plan the changes, carry them out.
//!
//! - [`graph`]: the step DAG and its parallel walk.
//! - [`order`]: kind-aware ordering across and within steps.
//! - [`outputs`]: values steps publish for the steps that depend on them.
//! - [`plan`]: desired vs recorded vs live; [`plan::decide`] holds its decisions as pure functions.
//! - [`apply`]: applying and deleting along the DAG, with the state written after every step, and
//!   rolling back on failure.
//! - [`ready`]: per-kind readiness rules.
//! - [`rollback`]: how changes are undone, and what the state records after an undo.
//! - [`saved`]: plans saved to a file, bound to the configuration and state they were made from.

pub mod apply;
pub mod graph;
pub mod order;
pub mod outputs;
pub mod plan;
pub mod ready;
pub mod rollback;
pub mod saved;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use vz_providers::{Outputs, Platform, Step};

use graph::{StepGraph, StepNode};

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
        let graph = graph_of(&steps)?;
        Ok(Desired {
            platform,
            steps,
            graph,
        })
    }

    /// The steps rendered again with `outputs`.
    pub fn render(&self, outputs: &Outputs) -> Vec<Step> {
        vz_providers::desired(&self.platform, outputs)
    }

    /// Render the steps again with `outputs`, in place.
    pub fn rerender(&mut self, outputs: &Outputs) {
        self.steps = self.render(outputs);
    }
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
