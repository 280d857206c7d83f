//! The dependency graph of steps (a petgraph DAG) and its parallel walk.
//!
//! Edges come from two places: dependencies a provider declares, and kind-aware rules applied to the
//! objects themselves (what one step provides and another needs: namespaces, CRDs; see
//! [`crate::engine::order`]). A cycle is an error that names the steps in it.

use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::future::Future;

use anyhow::{Result, bail};
use futures::stream::{FuturesUnordered, StreamExt};
use petgraph::Direction;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

/// What the graph needs to know about a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepNode {
    /// Step id.
    pub id: String,
    /// Steps it declares it depends on.
    pub depends_on: Vec<String>,
    /// What the step's objects make available to other steps (see [`crate::engine::order`]).
    pub provides: BTreeSet<String>,
    /// What the step's objects need from other steps.
    pub needs: BTreeSet<String>,
}

/// Steps ordered by their dependencies. An edge `a -> b` means `a` must be applied before `b`.
#[derive(Debug, Clone)]
pub struct StepGraph {
    graph: DiGraph<String, ()>,
    index: HashMap<String, NodeIndex>,
    order: Vec<String>,
}

impl StepGraph {
    /// Build the graph; fails on a dependency on an unknown step or on a cycle.
    pub fn build(nodes: &[StepNode]) -> Result<StepGraph> {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for n in nodes {
            if index.contains_key(&n.id) {
                bail!("step `{}` is defined twice", n.id);
            }
            index.insert(n.id.clone(), graph.add_node(n.id.clone()));
        }
        let mut creator: HashMap<&str, &str> = HashMap::new();
        for n in nodes {
            for key in &n.provides {
                creator.insert(key, &n.id);
            }
        }
        // Each edge once. Not `update_edge`: it scans the edges already leaving a step, and the
        // steps every application needs (namespaces, CRDs) have thousands.
        let mut edges: HashSet<(NodeIndex, NodeIndex)> = HashSet::new();
        for n in nodes {
            let to = index[&n.id];
            for dep in &n.depends_on {
                let Some(&from) = index.get(dep) else {
                    bail!(
                        "step `{}` depends on `{dep}`, which is not a step of this plan",
                        n.id
                    );
                };
                if edges.insert((from, to)) {
                    graph.add_edge(from, to, ());
                }
            }
            for key in &n.needs {
                if let Some(c) = creator.get(key.as_str())
                    && *c != n.id
                {
                    let from = index[*c];
                    if edges.insert((from, to)) {
                        graph.add_edge(from, to, ());
                    }
                }
            }
        }
        let order = match toposort(&graph, None) {
            Ok(order) => order.into_iter().map(|i| graph[i].clone()).collect(),
            Err(_) => {
                let cycles: Vec<String> = tarjan_scc(&graph)
                    .into_iter()
                    .filter(|scc| scc.len() > 1)
                    .map(|scc| {
                        let mut names: Vec<&str> = scc.iter().map(|i| graph[*i].as_str()).collect();
                        names.sort_unstable();
                        names.join(" -> ")
                    })
                    .collect();
                bail!(
                    "the steps depend on each other in a cycle: {}",
                    cycles.join("; ")
                );
            }
        };
        Ok(StepGraph {
            graph,
            index,
            order,
        })
    }

    /// Step ids in a dependency order (dependencies first).
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The graph as DOT (Graphviz): one node per step, labelled with its id, description and object
    /// count; an edge from each step to the steps that depend on it.
    pub fn dot(&self, steps: &[vz_providers::Step]) -> String {
        let mut out = String::from("digraph vz {\n  rankdir=LR;\n  node [shape=box];\n");
        for id in &self.order {
            let (desc, n) = steps
                .iter()
                .find(|s| &s.id == id)
                .map(|s| (s.description.as_str(), s.objects.len()))
                .unwrap_or(("", 0));
            let plural = if n == 1 { "" } else { "s" };
            out.push_str(&format!(
                "  \"{id}\" [label=\"{id}\\n{} ({n} object{plural})\"];\n",
                desc.replace('"', "\\\"")
            ));
        }
        for e in self.graph.edge_indices() {
            if let Some((a, b)) = self.graph.edge_endpoints(e) {
                out.push_str(&format!(
                    "  \"{}\" -> \"{}\";\n",
                    self.graph[a], self.graph[b]
                ));
            }
        }
        out.push_str("}\n");
        out
    }

    /// Direct dependencies of `id`.
    pub fn dependencies(&self, id: &str) -> Vec<String> {
        self.neighbors(id, Direction::Incoming)
    }

    fn neighbors(&self, id: &str, dir: Direction) -> Vec<String> {
        let Some(&i) = self.index.get(id) else {
            return vec![];
        };
        let mut out: Vec<String> = self
            .graph
            .neighbors_directed(i, dir)
            .map(|n| self.graph[n].clone())
            .collect();
        out.sort();
        out
    }

    /// Run `f` for every step, each only after all its dependencies (or, with `reverse`, all its
    /// dependents) succeeded, at most `parallelism` at once. After a failure no new step starts;
    /// steps already running finish, and every error is returned.
    pub async fn walk<F, Fut>(
        &self,
        reverse: bool,
        parallelism: usize,
        f: F,
    ) -> Result<(), Vec<anyhow::Error>>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let (before, after) = if reverse {
            (Direction::Outgoing, Direction::Incoming)
        } else {
            (Direction::Incoming, Direction::Outgoing)
        };
        // How many steps each still waits for; the ready ones in a heap, first in order first.
        let mut waiting: HashMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|i| (i, self.graph.neighbors_directed(i, before).count()))
            .collect();
        let mut running = FuturesUnordered::new();
        let mut errors = Vec::new();
        let parallelism = parallelism.max(1);
        let rank: HashMap<NodeIndex, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(r, id)| (self.index[id], r))
            .collect();
        let priority = |i: &NodeIndex| {
            if reverse {
                rank[i]
            } else {
                usize::MAX - rank[i]
            }
        };
        let mut ready: BinaryHeap<(usize, NodeIndex)> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| (priority(i), *i))
            .collect();
        loop {
            while errors.is_empty() && running.len() < parallelism {
                let Some((_, i)) = ready.pop() else { break };
                let fut = f(self.graph[i].clone());
                running.push(async move { (i, fut.await) });
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            match result {
                Ok(()) => {
                    for n in self.graph.neighbors_directed(i, after) {
                        if let Some(c) = waiting.get_mut(&n) {
                            *c -= 1;
                            if *c == 0 {
                                ready.push((priority(&n), n));
                            }
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn node(id: &str, deps: &[&str]) -> StepNode {
        StepNode {
            id: id.into(),
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            provides: BTreeSet::new(),
            needs: BTreeSet::new(),
        }
    }

    #[test]
    fn declared_dependencies_come_first() {
        let g =
            StepGraph::build(&[node("b", &["a"]), node("c", &["b"]), node("a", &[])]).expect("dag");
        assert_eq!(g.order(), ["a", "b", "c"]);
        assert_eq!(g.dependencies("c"), ["b"]);
    }

    #[test]
    fn a_namespace_creator_comes_before_the_steps_that_use_it() {
        let mut ns = node("namespaces", &[]);
        ns.provides.insert("namespace:keycloak".into());
        let mut pol = node("policies", &[]);
        pol.needs.insert("namespace:keycloak".into());
        let g = StepGraph::build(&[pol, ns]).expect("dag");
        assert_eq!(g.order(), ["namespaces", "policies"]);
    }

    #[test]
    fn a_cycle_is_an_error_naming_its_steps() {
        let err = StepGraph::build(&[node("a", &["b"]), node("b", &["a"]), node("c", &[])])
            .expect_err("cycle");
        // Only the steps in the cycle are named; `c` is not in it.
        assert_eq!(
            err.to_string(),
            "the steps depend on each other in a cycle: a -> b"
        );
    }

    #[test]
    fn an_unknown_dependency_is_an_error() {
        let err = StepGraph::build(&[node("a", &["nope"])]).expect_err("unknown");
        assert!(err.to_string().contains("`nope`"));
    }

    fn record_walk(g: &StepGraph, reverse: bool, fail: Option<&str>) -> (Vec<String>, usize) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let errors = rt
            .block_on(g.walk(reverse, 4, |id| {
                let seen = seen.clone();
                let fail = fail.map(str::to_string);
                async move {
                    seen.lock().expect("lock").push(id.clone());
                    if Some(&id) == fail.as_ref() {
                        anyhow::bail!("boom {id}");
                    }
                    Ok(())
                }
            }))
            .err()
            .map_or(0, |e| e.len());
        let seen = seen.lock().expect("lock").clone();
        (seen, errors)
    }

    #[test]
    fn a_walk_visits_dependencies_first_and_reverse_walks_dependents_first() {
        let g =
            StepGraph::build(&[node("a", &[]), node("b", &["a"]), node("c", &["b"])]).expect("dag");
        assert_eq!(record_walk(&g, false, None).0, ["a", "b", "c"]);
        assert_eq!(record_walk(&g, true, None).0, ["c", "b", "a"]);
    }

    #[test]
    fn a_failed_step_stops_its_dependents_but_not_independent_steps_already_ready() {
        let g =
            StepGraph::build(&[node("a", &[]), node("b", &["a"]), node("x", &[])]).expect("dag");
        let (seen, errors) = record_walk(&g, false, Some("a"));
        assert_eq!(errors, 1);
        assert!(!seen.contains(&"b".to_string()), "{seen:?}");
        assert!(seen.contains(&"x".to_string()), "{seen:?}");
    }
}
