//! The engine: order the steps, plan the changes, carry them out.
//!
//! - [`graph`]: the step DAG and its parallel walk.
//! - [`plan`]: desired vs recorded vs live.
//! - [`apply`]: applying and deleting along the DAG, with the state written after every step, and
//!   rolling back on failure.
//! - [`ready`]: per-kind readiness rules.
//! - [`saved`]: plans saved to a file, bound to the configuration and state they were made from.

pub mod apply;
pub mod graph;
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
            creates_namespaces: s
                .objects
                .iter()
                .filter(|m| m.kind == "Namespace" && m.api_version == "v1")
                .map(|m| m.name.clone())
                .collect(),
            uses_namespaces: s
                .objects
                .iter()
                .filter_map(|m| m.namespace.clone())
                .collect::<BTreeSet<_>>(),
        })
        .collect();
    StepGraph::build(&nodes)
}
