//! The engine: order the steps, plan the changes, carry them out.
//!
//! - [`graph`]: the step DAG and its parallel walk.
//! - [`order`]: kind-aware ordering across and within steps.
//! - [`plan`]: desired vs recorded vs live.
//! - [`apply`]: applying and deleting along the DAG, with the state written after every step, and
//!   rolling back on failure.
//! - [`ready`]: per-kind readiness rules.
//! - [`saved`]: plans saved to a file, bound to the configuration and state they were made from.

pub mod apply;
pub mod graph;
pub mod order;
pub mod plan;
pub mod ready;
pub mod saved;

use std::collections::BTreeSet;

use anyhow::Result;
use vz_providers::Step;

use graph::{StepGraph, StepNode};

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
