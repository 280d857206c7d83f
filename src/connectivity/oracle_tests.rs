//! vz's evaluation of NetworkPolicies against np-guard's netpol-analyzer, the oracle: on the
//! rendered examples (with the workloads of `tests/contract/workloads.yaml`) and on generated
//! networks, every flow and its connections must be the analyser's. The analyser is built once and
//! cached by `scripts/testenv build` (`scripts/testenv judge netpolicy` prints where).
//!
//! `VZ_ORACLE_CASES` sets how many networks are generated (default 150), `VZ_ORACLE_SEED` the
//! first seed. A case on which the two differ is saved under `target/oracle-failures/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::Network;
use crate::fuzz_tests::{Rng, setting};

pub(super) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The analyser's binary (built on first use).
pub(super) fn analyser() -> PathBuf {
    let out = Command::new(repo().join("scripts/testenv"))
        .args(["judge", "netpolicy"])
        .output()
        .expect("scripts/testenv runs");
    assert!(
        out.status.success(),
        "scripts/testenv judge netpolicy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub(super) type Flows = BTreeSet<(String, String, String)>;

fn write_objects(dir: &Path, objects: &[Value]) {
    let text: String = objects.iter().map(|o| format!("---\n{o}\n")).collect();
    std::fs::write(dir.join("objects.yaml"), text).expect("the objects are written");
}

/// The analyser's flows for `objects`, or what it said when it failed.
pub(super) fn theirs(netpolicy: &Path, objects: &[Value]) -> Result<Flows, String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_objects(dir.path(), objects);
    let out = Command::new(netpolicy)
        .args(["list", "--dirpath"])
        .arg(dir.path())
        .args(["-o", "json"])
        .output()
        .expect("the analyser runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "netpolicy list failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_str(&stdout)
        .map_err(|e| format!("the analyser's output is not JSON ({e}): {stdout}"))?;
    let list = v
        .get("connlist_results")
        .unwrap_or(&v)
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(list
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("src"), s("dst"), s("conn"))
        })
        .collect())
}

/// vz's flows for `objects`, named as the analyser names them.
fn ours(objects: &[Value]) -> Flows {
    Network::from_objects(objects)
        .expect("the objects make a network")
        .flows()
        .iter()
        .map(|f| {
            (
                f.src.analyser_name(),
                f.dst.analyser_name(),
                f.conns.to_string(),
            )
        })
        .collect()
}

/// Fail, saving the case, when the two differ.
fn agree(case: &str, objects: &[Value], netpolicy: &Path) {
    let (ours, theirs) = (ours(objects), theirs(netpolicy, objects));
    if theirs.as_ref() == Ok(&ours) {
        return;
    }
    let dir = repo().join("target/oracle-failures").join(case);
    std::fs::create_dir_all(&dir).expect("a directory for the failed case");
    write_objects(&dir, objects);
    let theirs = theirs.unwrap_or_else(|e| panic!("{case} (objects in {}): {e}", dir.display()));
    let only = |a: &Flows, b: &Flows| -> Vec<String> {
        a.difference(b)
            .map(|(s, d, c)| format!("  {s} => {d} : {c}"))
            .collect()
    };
    panic!(
        "{case}: vz and the analyser differ (objects in {}):\nonly vz:\n{}\nonly the analyser:\n{}",
        dir.display(),
        only(&ours, &theirs).join("\n"),
        only(&theirs, &ours).join("\n")
    );
}

/// The objects connectivity depends on, of an example rendered, and the sample workloads.
fn example(file: &str) -> Vec<Value> {
    objects_of(&repo().join("examples").join(file))
}

/// The objects connectivity depends on, of `config` rendered, and the sample workloads.
pub(super) fn objects_of(config: &Path) -> Vec<Value> {
    let desired = crate::engine::Desired::load(config).expect("the configuration loads");
    let mut objects: Vec<Value> = desired
        .steps
        .iter()
        .flat_map(|s| &s.objects)
        .filter(|m| {
            matches!(
                m.kind.as_str(),
                "Namespace" | "NetworkPolicy" | "Deployment" | "DaemonSet" | "StatefulSet"
            )
        })
        .map(|m| (*m.body).clone())
        .collect();
    let samples = std::fs::read_to_string(repo().join("tests/contract/workloads.yaml"))
        .expect("tests/contract/workloads.yaml is read");
    for doc in serde_saphyr::from_multiple::<Value>(&samples).expect("the sample workloads parse") {
        if !doc.is_null() {
            objects.push(doc);
        }
    }
    objects
}

#[test]
fn the_examples_connectivity_is_the_analysers() {
    let netpolicy = analyser();
    for file in ["quickstart.yaml", "full.yaml", "applications.yaml"] {
        agree(file, &example(file), &netpolicy);
    }
}

/// One generated network: a few namespaces, workloads and policies drawn from small pools of
/// labels, ports and address blocks, so that selectors often match and blocks overlap.
pub(super) fn generated(rng: &mut Rng) -> Vec<Value> {
    let pick = |rng: &mut Rng, items: &[&str]| items[rng.below(items.len())].to_string();
    let namespaces = ["a", "b", "c"];
    let mut objects = Vec::new();
    for ns in namespaces {
        let mut labels = serde_json::Map::new();
        if rng.below(2) == 0 {
            labels.insert("team".into(), json!(pick(rng, &["red", "blue"])));
        }
        if rng.below(3) == 0 {
            labels.insert("mesh".into(), json!("on"));
        }
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels}}));
    }
    let named = [
        json!({"name": "http", "containerPort": 8080}),
        json!({"name": "metrics", "containerPort": 9090}),
        json!({"name": "dns", "containerPort": 53, "protocol": "UDP"}),
        json!({"name": "http", "containerPort": 80}),
        json!({"containerPort": 5432}),
    ];
    for i in 0..(2 + rng.below(4)) {
        let mut labels = serde_json::Map::new();
        labels.insert("app".into(), json!(pick(rng, &["web", "api", "db"])));
        if rng.below(2) == 0 {
            labels.insert("tier".into(), json!(pick(rng, &["front", "back"])));
        }
        let mut ports = Vec::new();
        for p in &named {
            if rng.below(3) == 0
                && !ports
                    .iter()
                    .any(|q: &Value| q.get("name").is_some() && q.get("name") == p.get("name"))
            {
                ports.push(p.clone());
            }
        }
        let kind = pick(
            rng,
            &["Deployment", "Deployment", "StatefulSet", "DaemonSet"],
        );
        objects.push(json!({"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": format!("w{i}"), "namespace": pick(rng, &namespaces)},
            "spec": {"selector": {"matchLabels": labels.clone()}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "example.test/c", "ports": ports}]}}}}));
    }
    for i in 0..(1 + rng.below(4)) {
        let mut spec = serde_json::Map::new();
        spec.insert("podSelector".into(), selector(rng, &["app", "tier"]));
        let types = rng.below(4);
        match types {
            0 => {}
            1 => {
                spec.insert("policyTypes".into(), json!(["Ingress"]));
            }
            2 => {
                spec.insert("policyTypes".into(), json!(["Egress"]));
            }
            _ => {
                spec.insert("policyTypes".into(), json!(["Ingress", "Egress"]));
            }
        }
        for (key, peers) in [("ingress", "from"), ("egress", "to")] {
            let n = rng.below(3);
            if n == 0 && rng.below(2) == 0 {
                continue;
            }
            let rules: Vec<Value> = (0..n).map(|_| rule(rng, peers)).collect();
            spec.insert(key.into(), Value::Array(rules));
        }
        objects.push(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("p{i}"), "namespace": pick(rng, &namespaces)},
            "spec": spec}),
        );
    }
    objects
}

fn selector(rng: &mut Rng, keys: &[&str]) -> Value {
    let values = ["web", "api", "db", "front", "back", "red", "blue", "on"];
    match rng.below(5) {
        0 => json!({}),
        1 | 2 => {
            let k = keys[rng.below(keys.len())];
            json!({"matchLabels": {k: values[rng.below(values.len())]}})
        }
        3 => {
            let k = keys[rng.below(keys.len())];
            let op = ["In", "NotIn", "Exists", "DoesNotExist"][rng.below(4)];
            let mut e = json!({"key": k, "operator": op});
            if op == "In" || op == "NotIn" {
                e["values"] = json!([
                    values[rng.below(values.len())],
                    values[rng.below(values.len())]
                ]);
            }
            json!({"matchExpressions": [e]})
        }
        _ => {
            let (k1, k2) = (keys[0], keys[keys.len() - 1]);
            json!({"matchLabels": {k1: values[rng.below(values.len())]},
                   "matchExpressions": [{"key": k2, "operator": "Exists"}]})
        }
    }
}

fn rule(rng: &mut Rng, peers_key: &str) -> Value {
    let blocks = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "0.0.0.0/0",
        "192.168.0.0/16",
        "172.16.0.0/12",
    ];
    let mut r = serde_json::Map::new();
    let npeers = rng.below(3);
    if npeers > 0 {
        let peers: Vec<Value> = (0..npeers)
            .map(|_| match rng.below(4) {
                0 => json!({"podSelector": selector(rng, &["app", "tier"])}),
                1 => json!({"namespaceSelector": selector(rng, &["team", "mesh", "kubernetes.io/metadata.name"])}),
                2 => json!({"namespaceSelector": selector(rng, &["team", "mesh"]),
                            "podSelector": selector(rng, &["app", "tier"])}),
                _ => {
                    let cidr = blocks[rng.below(blocks.len())];
                    let inner: Vec<&str> = blocks
                        .iter()
                        .copied()
                        .filter(|b| {
                            let (o, i) = (super::IpRange::cidr(cidr), super::IpRange::cidr(b));
                            matches!((o, i), (Some(o), Some(i)) if o.covers(&i) && o != i)
                        })
                        .collect();
                    if !inner.is_empty() && rng.below(2) == 0 {
                        json!({"ipBlock": {"cidr": cidr, "except": [inner[rng.below(inner.len())]]}})
                    } else {
                        json!({"ipBlock": {"cidr": cidr}})
                    }
                }
            })
            .collect();
        r.insert(peers_key.into(), Value::Array(peers));
    }
    // The analyser refuses a named port towards addresses (Kubernetes takes it, and it matches
    // nothing there): egress rules that reach addresses (to blocks, or to everything) name
    // numbers only.
    let to_blocks = peers_key == "to"
        && r.get("to")
            .and_then(Value::as_array)
            .is_none_or(|p| p.iter().any(|p| p.get("ipBlock").is_some()));
    let nports = rng.below(3);
    if nports > 0 {
        let ports: Vec<Value> = (0..nports)
            .map(|_| match rng.below(6) {
                1 | 3 if to_blocks => json!({"port": 8443}),
                0 => json!({"port": 8080}),
                1 => json!({"port": "http"}),
                2 => json!({"port": 53, "protocol": "UDP"}),
                3 => json!({"port": "dns", "protocol": "UDP"}),
                4 => json!({"port": 9000, "endPort": 9100}),
                _ => {
                    let protocol = ["TCP", "UDP", "SCTP"][rng.below(3)];
                    json!({ "protocol": protocol })
                }
            })
            .collect();
        r.insert("ports".into(), Value::Array(ports));
    }
    Value::Object(r)
}

#[test]
fn generated_networks_connectivity_is_the_analysers() {
    let netpolicy = analyser();
    let first = setting("VZ_ORACLE_SEED", 1);
    for seed in first..first + setting("VZ_ORACLE_CASES", 150) {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        agree(&format!("seed-{seed}"), &generated(&mut rng), &netpolicy);
    }
}
