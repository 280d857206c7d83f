//! The platform's connectivity contract (`tests/contract/connectivity.yaml`) against what the
//! connectivity analyser finds open in the rendered platform, both ways: every flow the contract
//! names is open with exactly its ports, and every open flow is named.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::Conns;
use super::oracle_tests::{Flows, analyser, objects_of, repo, theirs};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Contract {
    groups: BTreeMap<String, Vec<String>>,
    flows: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    from: OneOrMany,
    to: OneOrMany,
    ports: String,
    why: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn names(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl Contract {
    /// Whether `pattern` (a group, `cluster`, `outside`, `ns/*`, `ns/name` or `ns/prefix*`) names
    /// `peer`, as the
    /// analyser names peers (`ns/name[Kind]`, or an address range).
    fn names(&self, pattern: &str, peer: &str) -> bool {
        if let Some(members) = self.groups.get(pattern) {
            return members.iter().any(|m| self.names(m, peer));
        }
        let workload = peer.split_once('[').map(|(w, _)| w);
        match (pattern, workload) {
            ("cluster", w) => w.is_some(),
            ("outside", w) => w.is_none(),
            (p, Some(w)) => match p.strip_suffix('*') {
                Some(prefix) => w.starts_with(prefix),
                None => p == w,
            },
            _ => false,
        }
    }
}

#[test]
fn the_platform_opens_exactly_the_flows_of_its_contract() {
    let text = std::fs::read_to_string(repo().join("tests/contract/connectivity.yaml"))
        .expect("the contract is read");
    let contract: Contract = serde_saphyr::from_str(&text).expect("the contract parses");
    for e in &contract.flows {
        assert!(
            !e.why.trim().is_empty(),
            "every entry of the contract says why"
        );
    }
    // examples/full.yaml (every component on), with the applications of examples/apps.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let full = std::fs::read_to_string(repo().join("examples/full.yaml")).expect("full.yaml");
    let config = dir.path().join("platform.yaml");
    std::fs::write(
        &config,
        format!(
            "{full}\napplicationsDir: {}\n",
            repo().join("examples/apps").display()
        ),
    )
    .expect("the configuration is written");
    let objects: Vec<Value> = objects_of(&config);
    let found: Flows = theirs(&analyser(), &objects).expect("the analyser answers");
    // Every pair of peers the analyser knows, each with what the contract allows it.
    let peers: BTreeSet<&String> = found.iter().flat_map(|(s, d, _)| [s, d]).collect();
    let mut expected = Flows::new();
    for src in &peers {
        for dst in &peers {
            if src == dst {
                continue;
            }
            let mut conns = Conns::none();
            for e in &contract.flows {
                let from = e.from.names().iter().any(|p| contract.names(p, src));
                let to = e.to.names().iter().any(|p| contract.names(p, dst));
                if from && to {
                    let ports: Conns = e
                        .ports
                        .parse()
                        .unwrap_or_else(|err| panic!("the contract's ports {:?}: {err}", e.ports));
                    conns = conns.union(&ports);
                }
            }
            if !conns.is_empty() {
                expected.insert(((*src).clone(), (*dst).clone(), conns.to_string()));
            }
        }
    }
    let show = |flows: Vec<&(String, String, String)>| -> String {
        flows
            .iter()
            .map(|(s, d, c)| format!("  {s} => {d} : {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let open_not_named: Vec<_> = found.difference(&expected).collect();
    let named_not_open: Vec<_> = expected.difference(&found).collect();
    assert!(
        open_not_named.is_empty() && named_not_open.is_empty(),
        "the platform's connectivity is not its contract's.\nOpen, but not so in the contract:\n{}\nIn the contract, but not so open:\n{}",
        show(open_not_named),
        show(named_not_open)
    );
}
