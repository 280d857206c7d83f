//! What a plan changes in connectivity: the flows its changes open and close.
//!
//! The network before the plan is made of the live objects the plan read (an object with nothing
//! to change is as desired), the network after it of the desired objects; deleted objects are
//! only in the first. Both get the same application workloads — an application's pods, as its
//! AuthorizationPolicy selects them (`vz` does not run them, their owners do) — so that a new or
//! destroyed application shows as the flows its namespace's labels open or close. Flows are
//! compared between workloads present on both sides, and with addresses outside the cluster cut
//! alike on both; workloads the plan creates or deletes are named, their flows not listed (a
//! first install would otherwise list every flow of the platform): `vz explain-access` tells any
//! one of them. A plan of part of the platform (`--app`, `--target`) gets the rest of it from the
//! desired objects, the same on both sides.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Direction, Network, Peer, Policy, Workload, sets};
use crate::engine::plan::{Action, Change, Plan};

/// The kinds whose objects decide connectivity (an application's AuthorizationPolicy names its
/// pods): the planner keeps their live objects for it.
pub fn shapes_connectivity(kind: &str) -> bool {
    matches!(
        kind,
        "NetworkPolicy"
            | "AuthorizationPolicy"
            | "Namespace"
            | "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "Job"
            | "CronJob"
            | "Pod"
    )
}

/// One flow opened or closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowChange {
    /// `open` or `close`.
    pub change: Opening,
    /// Where the connections start (`namespace/name`, or addresses outside the cluster).
    pub src: String,
    /// Where they go.
    pub dst: String,
    /// The connections (`TCP 15012`).
    pub conns: String,
}

/// Whether a flow opens or closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Opening {
    /// Connections the plan allows that were not allowed.
    Open,
    /// Connections allowed now that the plan stops.
    Close,
}

/// What a plan changes in connectivity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectivityChanges {
    /// The flows opened and closed between workloads on both sides of the plan.
    pub flows: Vec<FlowChange>,
    /// Workloads the plan creates (`namespace/name`): their flows are new, not listed.
    pub new_workloads: Vec<String>,
    /// Workloads the plan deletes: their flows go with them.
    pub gone_workloads: Vec<String>,
}

impl ConnectivityChanges {
    /// Whether the plan changes no connectivity.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty() && self.new_workloads.is_empty() && self.gone_workloads.is_empty()
    }
}

/// The objects of desired steps connectivity depends on, for a plan that changes only some of
/// them (`--app`, `--target`): the rest of the network, as it is on both sides of the plan.
pub fn context(steps: &[vz_providers::Step]) -> Vec<(String, String, Value)> {
    steps
        .iter()
        .flat_map(|s| {
            s.objects
                .iter()
                .filter(|m| shapes_connectivity(&m.kind))
                .map(move |m| (s.address_of(m), s.id.clone(), Value::clone(&m.body)))
        })
        .collect()
}

/// Give `plan` the flows it opens and closes, when they can be known (the live objects were
/// read); `context` is the rest of the network ([`context`]). A policy that cannot be evaluated is
/// a warning of the plan.
pub fn annotate(plan: &mut Plan, context: &[(String, String, Value)]) {
    if !plan.refreshed {
        return;
    }
    match of_changes(&plan.changes, context) {
        Ok(c) => plan.connectivity = Some(c),
        Err(e) => plan
            .warnings
            .push(format!("the connectivity changes are not shown: {e}")),
    }
}

/// The connectivity `changes` open and close (a plan's changes, read with the cluster), with
/// `context` — objects the plan does not change — on both sides.
pub fn of_changes(
    changes: &[Change],
    context: &[(String, String, Value)],
) -> Result<ConnectivityChanges, String> {
    // Borrowed, never copied: at thousands of applications the policies are most of a plan.
    let mut before: Vec<&Value> = Vec::new();
    let mut after: Vec<&Value> = Vec::new();
    let mut apps: Vec<Workload> = Vec::new();
    let planned: BTreeSet<&str> = changes.iter().map(|c| c.address.as_str()).collect();
    for (address, step, body) in context {
        if planned.contains(address.as_str()) {
            continue;
        }
        apps.extend(super::application_workload(step, body));
        before.push(body);
        after.push(body);
    }
    for c in changes {
        if !shapes_connectivity(&c.object.kind) {
            continue;
        }
        let desired = c.desired.as_ref().map(|m| &*m.body);
        if let Some(policy) = desired.or(c.before.as_ref()) {
            apps.extend(super::application_workload(&c.step, policy));
        }
        let now = match c.action {
            Action::NoOp => desired,
            _ => c.before.as_ref(),
        };
        before.extend(now);
        if !matches!(c.action, Action::Delete | Action::Release | Action::Forget) {
            after.extend(c.after.as_ref().or(desired));
        }
    }
    let mut was = Network::from_objects(before)?;
    let mut will = Network::from_objects(after)?;
    was.add_workloads(apps.iter().cloned());
    will.add_workloads(apps);
    Ok(compare(&was, &will))
}

type Key = (String, String, String);

fn key(w: &Workload) -> Key {
    (w.namespace.clone(), w.name.clone(), w.kind.clone())
}

/// The flows that differ from `was` to `will`. Only flows that can differ are evaluated: those
/// from a workload whose labels, namespace or egress policies changed, or to one whose labels,
/// ports, namespace or ingress policies changed (a policy decides only for the pods it selects).
pub fn compare(was: &Network, will: &Network) -> ConnectivityChanges {
    let before: BTreeMap<Key, &Workload> = was.workloads().iter().map(|w| (key(w), w)).collect();
    let after: BTreeMap<Key, &Workload> = will.workloads().iter().map(|w| (key(w), w)).collect();
    let policies = |n: &Network| -> BTreeMap<(String, String), Policy> {
        n.policies
            .iter()
            .map(|p| ((p.namespace.clone(), p.name.clone()), p.clone()))
            .collect()
    };
    let (old_policies, new_policies) = (policies(was), policies(will));
    let changed: Vec<&Policy> = old_policies
        .iter()
        .filter(|(k, p)| new_policies.get(*k) != Some(*p))
        .map(|(_, p)| p)
        .chain(
            new_policies
                .iter()
                .filter(|(k, p)| old_policies.get(*k) != Some(*p))
                .map(|(_, p)| p),
        )
        .collect();
    // Workloads on both sides, and which of their flows can differ.
    let mut both = Vec::new();
    let (mut rows, mut columns) = (BTreeSet::new(), BTreeSet::new());
    for (k, w) in &after {
        let Some(old) = before.get(k) else {
            continue;
        };
        let moved = old.labels != w.labels
            || was.namespace_labels(&w.namespace) != will.namespace_labels(&w.namespace);
        let decided = |d: Direction| changed.iter().any(|p| p.selects(w, d) || p.selects(old, d));
        if moved || decided(Direction::Egress) {
            rows.insert(k.clone());
        }
        // Its ports name the numbers of named ports, towards it.
        if moved || old.ports != w.ports || decided(Direction::Ingress) {
            columns.insert(k.clone());
        }
        both.push((k.clone(), super::peer_of(w)));
    }
    // Addresses cut at every boundary either side names, so ranges compare alike.
    let cut = |d: Direction| -> Vec<Peer> {
        let mut bounds = was.external_bounds(d);
        bounds.extend(will.external_bounds(d));
        sets::cut(&bounds)
            .into_iter()
            .map(|addresses| Peer::External { addresses })
            .collect()
    };
    let outside = |ranges: Vec<Peer>| -> Vec<(Option<Key>, Peer)> {
        ranges.into_iter().map(|p| (None, p)).collect()
    };
    let sources: Vec<(Option<Key>, Peer)> = both
        .iter()
        .map(|(k, p)| (Some(k.clone()), p.clone()))
        .chain(outside(cut(Direction::Ingress)))
        .collect();
    let destinations: Vec<(Option<Key>, Peer)> = both
        .iter()
        .map(|(k, p)| (Some(k.clone()), p.clone()))
        .chain(outside(cut(Direction::Egress)))
        .collect();
    let mut flows = Vec::new();
    let mut compare_one = |src: &Peer, dst: &Peer| {
        let (old, new) = (was.allowed(src, dst), will.allowed(src, dst));
        if old == new {
            return;
        }
        for (change, conns) in [
            (Opening::Open, new.difference(&old)),
            (Opening::Close, old.difference(&new)),
        ] {
            if !conns.is_empty() {
                flows.push(FlowChange {
                    change,
                    src: src.to_string(),
                    dst: dst.to_string(),
                    conns: conns.to_string(),
                });
            }
        }
    };
    let in_set = |k: &Option<Key>, set: &BTreeSet<Key>| k.as_ref().is_some_and(|k| set.contains(k));
    // Whole rows of the sources whose egress can differ, then the columns of the destinations
    // whose ingress can, from the other sources: every pair that can differ once, no other.
    let (row_sources, other_sources): (Vec<_>, Vec<_>) =
        sources.iter().partition(|(k, _)| in_set(k, &rows));
    let column_destinations: Vec<_> = destinations
        .iter()
        .filter(|(k, _)| in_set(k, &columns))
        .collect();
    for (sk, src) in &row_sources {
        for (dk, dst) in &destinations {
            if src != dst && !(sk.is_none() && dk.is_none()) {
                compare_one(src, dst);
            }
        }
    }
    for (sk, src) in &other_sources {
        for (dk, dst) in &column_destinations {
            if src != dst && !(sk.is_none() && dk.is_none()) {
                compare_one(src, dst);
            }
        }
    }
    flows.sort_by(|a, b| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)));
    let named = |a: &BTreeMap<Key, &Workload>, b: &BTreeMap<Key, &Workload>| -> Vec<String> {
        a.keys()
            .filter(|k| !b.contains_key(*k))
            .map(|(ns, n, _)| format!("{ns}/{n}"))
            .collect()
    };
    ConnectivityChanges {
        flows,
        new_workloads: named(&after, &before),
        gone_workloads: named(&before, &after),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::fuzz_tests::Rng;

    /// Every pair's difference, the slow way.
    fn brute_force(was: &Network, will: &Network) -> Vec<FlowChange> {
        let common: Vec<Peer> = will
            .workloads()
            .iter()
            .filter(|w| was.workloads().iter().any(|o| key(o) == key(w)))
            .map(super::super::peer_of)
            .collect();
        let cut = |d: Direction| -> Vec<Peer> {
            let mut bounds = was.external_bounds(d);
            bounds.extend(will.external_bounds(d));
            sets::cut(&bounds)
                .into_iter()
                .map(|addresses| Peer::External { addresses })
                .collect()
        };
        let sources: Vec<Peer> = common
            .iter()
            .cloned()
            .chain(cut(Direction::Ingress))
            .collect();
        let destinations: Vec<Peer> = common
            .iter()
            .cloned()
            .chain(cut(Direction::Egress))
            .collect();
        let mut out = Vec::new();
        for src in &sources {
            for dst in &destinations {
                let outside = |p: &Peer| matches!(p, Peer::External { .. });
                if src == dst || (outside(src) && outside(dst)) {
                    continue;
                }
                let (old, new) = (was.allowed(src, dst), will.allowed(src, dst));
                for (change, conns) in [
                    (Opening::Open, new.difference(&old)),
                    (Opening::Close, old.difference(&new)),
                ] {
                    if !conns.is_empty() {
                        out.push(FlowChange {
                            change,
                            src: src.to_string(),
                            dst: dst.to_string(),
                            conns: conns.to_string(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)));
        out
    }

    /// A change of `object` (a NetworkPolicy) from `before` to `after` (`None`: deleted).
    fn policy_change(before: Value, after: Option<Value>) -> Change {
        let name = before["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Change {
            address: format!("network-policies/NetworkPolicy/a/{name}"),
            step: "network-policies".into(),
            object: crate::cluster::ObjectRef {
                api_version: "networking.k8s.io/v1".into(),
                kind: "NetworkPolicy".into(),
                namespace: Some("a".into()),
                name,
            },
            action: if after.is_some() {
                Action::Update
            } else {
                Action::Delete
            },
            cause: crate::engine::plan::Cause::Config,
            desired: None,
            desired_sha256: None,
            live_uid: None,
            live_resource_version: None,
            before: Some(before),
            after,
            fields: vec![],
            forces_replacement: vec![],
            reissue: None,
            follows: None,
            certificate: None,
            intent: None,
            status: None,
        }
    }

    fn plan_of(changes: Vec<Change>, refreshed: bool) -> Plan {
        Plan {
            changes,
            destroy: false,
            refreshed,
            warnings: Vec::new(),
            notes: Vec::new(),
            connectivity: None,
            restarts: Vec::new(),
        }
    }

    fn context() -> Vec<(String, String, Value)> {
        let web = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}});
        vec![("web".into(), "web".into(), web)]
    }

    #[test]
    fn deleting_a_deny_all_policy_opens_every_flow_it_closed() {
        let deny = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "a"}, "spec": {"podSelector": {}}});
        let mut plan = plan_of(vec![policy_change(deny, None)], true);
        annotate(&mut plan, &context());
        let c = plan.connectivity.expect("connectivity changes");
        let shown: Vec<String> = c
            .flows
            .iter()
            .map(|f| format!("{:?} {} -> {} {}", f.change, f.src, f.dst, f.conns))
            .collect();
        assert_eq!(shown, ["Open outside the cluster -> a/web All Connections"]);
    }

    #[test]
    fn a_policy_that_cannot_be_evaluated_is_a_warning_and_without_refresh_nothing_is_said() {
        let v6 = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "v6", "namespace": "a"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}]}});
        let mut plan = plan_of(vec![policy_change(v6.clone(), Some(v6.clone()))], true);
        annotate(&mut plan, &context());
        assert_eq!(plan.connectivity, None);
        assert_eq!(plan.warnings.len(), 1);
        assert!(
            plan.warnings[0].contains(
                "NetworkPolicy a/v6: ingress[0].from[0]: ipBlock \"fd00::/8\" is not an IPv4 CIDR"
            ),
            "{:?}",
            plan.warnings
        );
        let mut unread = plan_of(vec![policy_change(v6.clone(), Some(v6))], false);
        annotate(&mut unread, &context());
        assert_eq!((unread.connectivity, unread.warnings.len()), (None, 0));
    }

    #[test]
    fn only_the_flows_that_can_differ_are_evaluated_and_none_is_missed() {
        for seed in 1..2000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let before = super::super::oracle_tests::generated(&mut rng);
            let other = super::super::oracle_tests::generated(&mut rng);
            // One change: an object replaced by one of the same kind from another network, or
            // removed.
            let mut after: Vec<Value> = before.clone();
            let i = rng.below(after.len());
            let kind = after[i]["kind"].clone();
            match other.iter().find(|o| o["kind"] == kind) {
                Some(o) if rng.below(3) > 0 => {
                    let mut o = o.clone();
                    o["metadata"] = after[i]["metadata"].clone();
                    after[i] = o;
                }
                _ => {
                    after.remove(i);
                }
            }
            let was = Network::from_objects(&before).expect("a network");
            let will = Network::from_objects(&after).expect("a network");
            assert_eq!(
                compare(&was, &will).flows,
                brute_force(&was, &will),
                "seed {seed}"
            );
        }
    }
}
