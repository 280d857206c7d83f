//! Connectivity: which workloads may reach which, on which ports, as Kubernetes NetworkPolicies
//! decide it — evaluated here, from objects, without a cluster.
//!
//! A [`Network`] is read from objects ([`Network::from_objects`]): Namespaces (their labels),
//! workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, bare Pods: the
//! labels and container ports of their pods) and NetworkPolicies. Its [`Network::flows`] are every
//! pair of peers — workloads, and ranges of addresses outside the cluster — with the connections
//! allowed between them, by the rules of the NetworkPolicy API:
//!
//! - a pod no policy selects for a direction is not isolated in that direction: everything is
//!   allowed; once one policy selects it, only what some selecting policy's rule allows is;
//! - a connection needs both the source's egress and the destination's ingress to allow it;
//! - a rule with no peers allows every peer, one with no ports every port; a peer is a pod selector
//!   (in the policy's namespace), a namespace selector, both (pods so labelled in namespaces so
//!   labelled), or an IP block (addresses outside the cluster, minus its exceptions);
//! - a port is a number (with `endPort`, a range) or the name of a container port of the
//!   destination pod, for a protocol (TCP unless named);
//! - `policyTypes` defaults to Ingress, plus Egress when the policy has egress rules.
//!
//! Addresses outside the cluster are cut at every IP block boundary the policies name, so each
//! range is treated alike by every policy. Flows are what np-guard's netpol-analyzer reports for
//! the same objects (its `list` output), which the tests check on the examples and on generated
//! policies. [`Network::explain`] says which policies decide one flow.

pub mod changes;
pub mod sets;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

pub use sets::{Conns, IpRange, PortSet, Protocol};

/// The label the API server puts on every namespace, naming it.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A workload: pods alike in labels and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its kind (`Deployment`, ...).
    pub kind: String,
    /// The labels of its pods.
    pub labels: BTreeMap<String, String>,
    /// Its pods' container ports: name (may be empty), number, protocol.
    pub ports: Vec<(String, u16, Protocol)>,
}

/// One end of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Peer {
    /// A workload, by namespace, name and kind.
    Workload {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its kind.
        kind: String,
    },
    /// Addresses outside the cluster.
    External {
        /// The range.
        #[serde(serialize_with = "range_text")]
        addresses: IpRange,
    },
}

fn range_text<S: serde::Serializer>(r: &IpRange, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

impl Peer {
    /// As the analyser names it: `ns/name[Kind]`, or the address range.
    #[cfg(test)]
    pub fn analyser_name(&self) -> String {
        match self {
            Peer::Workload {
                namespace,
                name,
                kind,
            } => format!("{namespace}/{name}[{kind}]"),
            Peer::External { addresses } => addresses.to_string(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Workload {
                namespace, name, ..
            } => write!(f, "{namespace}/{name}"),
            Peer::External { addresses } if *addresses == IpRange::ALL => {
                f.write_str("outside the cluster")
            }
            Peer::External { addresses } if addresses.first == addresses.last => {
                write!(f, "{}", std::net::Ipv4Addr::from(addresses.first))
            }
            Peer::External { addresses } => write!(f, "{addresses}"),
        }
    }
}

/// Connections allowed from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    /// Where connections start.
    pub src: Peer,
    /// Where they go.
    pub dst: Peer,
    /// What is allowed.
    pub conns: Conns,
}

/// A label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    expressions: Vec<(String, Operator, Vec<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    fn parse(v: &Value, at: &str) -> Result<Selector, String> {
        let mut s = Selector::default();
        if let Some(labels) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in labels {
                let val = val
                    .as_str()
                    .ok_or_else(|| format!("{at}: matchLabels.{k} is not a string"))?;
                s.labels.insert(k.clone(), val.to_string());
            }
        }
        for e in v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}: a matchExpression has no key"))?;
            let op = match e.get("operator").and_then(Value::as_str) {
                Some("In") => Operator::In,
                Some("NotIn") => Operator::NotIn,
                Some("Exists") => Operator::Exists,
                Some("DoesNotExist") => Operator::DoesNotExist,
                other => return Err(format!("{at}: matchExpression operator {other:?}")),
            };
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            s.expressions.push((key.to_string(), op, values));
        }
        Ok(s)
    }

    /// Whether `labels` match it (an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(k, op, values)| {
                let have = labels.get(k);
                match op {
                    Operator::In => have.is_some_and(|h| values.contains(h)),
                    Operator::NotIn => have.is_none_or(|h| !values.contains(h)),
                    Operator::Exists => have.is_some(),
                    Operator::DoesNotExist => have.is_none(),
                }
            })
    }
}

/// A NetworkPolicy, as evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    pods: Selector,
    /// Whether it isolates the pods it selects for ingress, and for egress.
    isolates: (bool, bool),
    /// Rules for incoming connections (in force when it isolates for ingress).
    ingress: Vec<Rule>,
    /// Rules for outgoing connections (in force when it isolates for egress).
    egress: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `None`: every peer.
    peers: Option<Vec<PeerSelector>>,
    /// `None`: every port.
    ports: Option<Vec<PortRule>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerSelector {
    Pods {
        /// `None`: the policy's namespace.
        namespaces: Option<Selector>,
        /// `None`: every pod.
        pods: Option<Selector>,
    },
    Block {
        cidr: IpRange,
        except: Vec<IpRange>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PortRule {
    protocol: Protocol,
    port: Option<PortRef>,
    end: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortRef {
    Number(u16),
    Name(String),
}

/// Which direction of a flow a policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The source's outgoing connections.
    Egress,
    /// The destination's incoming connections.
    Ingress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        })
    }
}

/// What decides one direction of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// The direction.
    pub direction: Direction,
    /// Whether any policy selects the pod for this direction (if not, everything is allowed).
    pub isolated: bool,
    /// What this direction allows.
    #[serde(serialize_with = "conns_text")]
    pub allowed: Conns,
    /// The policies selecting the pod for this direction, each with what its rules allow here.
    pub policies: Vec<Decider>,
}

/// A policy that selects a pod for a direction, and what its rules allow of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decider {
    /// The policy, as `namespace/name`.
    pub policy: String,
    /// What its rules allow.
    #[serde(serialize_with = "conns_text")]
    pub allows: Conns,
}

fn conns_text<S: serde::Serializer>(c: &Conns, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(c)
}

/// Why a flow is allowed, or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The source.
    pub src: Peer,
    /// The destination.
    pub dst: Peer,
    /// What is allowed: both directions' intersection.
    #[serde(serialize_with = "conns_text")]
    pub allowed: Conns,
    /// The source's egress.
    pub egress: Side,
    /// The destination's ingress.
    pub ingress: Side,
}

/// Workloads, namespaces and policies, read from objects.
#[derive(Debug, Clone, Default)]
pub struct Network {
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The workloads, sorted by namespace, name and kind, each once.
    workloads: Vec<Workload>,
    /// The policies.
    pub policies: Vec<Policy>,
}

/// The pod template of a workload object, and its kind.
fn pod_template(o: &Value) -> Option<&Value> {
    let kind = o.get("kind")?.as_str()?;
    match kind {
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => o.pointer("/spec/template"),
        "CronJob" => o.pointer("/spec/jobTemplate/spec/template"),
        "Pod" => Some(o),
        _ => None,
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Network {
    /// The network the objects make; other objects are ignored. An object that cannot be what its
    /// kind says is an error naming it.
    pub fn from_objects<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
    ) -> Result<Network, String> {
        let mut n = Network::default();
        for o in objects {
            let kind = text(o, "/kind").unwrap_or_default();
            let name = text(o, "/metadata/name").unwrap_or_default().to_string();
            let namespace = text(o, "/metadata/namespace")
                .unwrap_or("default")
                .to_string();
            match kind {
                "Namespace" => {
                    let mut labels = string_map(o.pointer("/metadata/labels"));
                    labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
                    n.namespaces.insert(name, labels);
                }
                "NetworkPolicy" => n.policies.push(Policy::parse(o, namespace, name)?),
                _ => {
                    let Some(template) = pod_template(o) else {
                        continue;
                    };
                    // A Pod a controller made is its controller's; the controller is read itself.
                    if kind == "Pod"
                        && o.pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array)
                            .is_some_and(|r| !r.is_empty())
                    {
                        continue;
                    }
                    let mut ports = Vec::new();
                    for c in template
                        .pointer("/spec/containers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        for p in c
                            .get("ports")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            let Some(number) = p
                                .get("containerPort")
                                .and_then(Value::as_u64)
                                .and_then(|n| u16::try_from(n).ok())
                            else {
                                continue;
                            };
                            let protocol = match p.get("protocol").and_then(Value::as_str) {
                                None => Protocol::Tcp,
                                Some(s) => Protocol::parse(s).ok_or_else(|| {
                                    format!("{kind} {namespace}/{name}: protocol {s}")
                                })?,
                            };
                            let pname = p.get("name").and_then(Value::as_str).unwrap_or_default();
                            ports.push((pname.to_string(), number, protocol));
                        }
                    }
                    n.workloads.push(Workload {
                        namespace,
                        name,
                        kind: kind.to_string(),
                        labels: string_map(template.pointer("/metadata/labels")),
                        ports,
                    });
                }
            }
        }
        n.sort_workloads();
        Ok(n)
    }

    /// The workloads, by namespace, name and kind.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// Add workloads the objects do not hold (an application's, or a file's); one the network
    /// has already stays as it is.
    pub fn add_workloads(&mut self, more: impl IntoIterator<Item = Workload>) {
        self.workloads.extend(more);
        self.sort_workloads();
    }

    /// Sorted, each once (the first of equal ones kept: sorting is stable).
    fn sort_workloads(&mut self) {
        self.workloads.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.kind).cmp(&(&b.namespace, &b.name, &b.kind))
        });
        self.workloads
            .dedup_by(|a, b| (&a.namespace, &a.name, &a.kind) == (&b.namespace, &b.name, &b.kind));
    }

    /// The labels of namespace `ns` (only its name label when no object describes it).
    fn namespace_labels(&self, ns: &str) -> std::borrow::Cow<'_, BTreeMap<String, String>> {
        match self.namespaces.get(ns) {
            Some(labels) => std::borrow::Cow::Borrowed(labels),
            None => std::borrow::Cow::Owned(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                ns.to_string(),
            )])),
        }
    }

    /// Every address block a rule of `direction` names (rules a policy's types leave out of force
    /// included, as the analyser counts them).
    fn external_bounds(&self, direction: Direction) -> Vec<IpRange> {
        let mut bounds = Vec::new();
        for p in &self.policies {
            let rules = match direction {
                Direction::Ingress => &p.ingress,
                Direction::Egress => &p.egress,
            };
            for rule in rules {
                for peer in rule.peers.iter().flatten() {
                    if let PeerSelector::Block { cidr, except } = peer {
                        bounds.push(*cidr);
                        bounds.extend(except);
                    }
                }
            }
        }
        bounds
    }

    /// The ranges outside the cluster that every policy treats alike in `direction`: the address
    /// space cut at every block a rule of that direction names.
    fn external_ranges(&self, direction: Direction) -> Vec<IpRange> {
        sets::cut(&self.external_bounds(direction))
    }

    /// The ranges outside the cluster connections come from (`Ingress`) or go to (`Egress`).
    fn externals(&self, direction: Direction) -> Vec<Peer> {
        self.external_ranges(direction)
            .into_iter()
            .map(|addresses| Peer::External { addresses })
            .collect()
    }

    fn workload(&self, p: &Peer) -> Option<&Workload> {
        match p {
            Peer::Workload {
                namespace,
                name,
                kind,
            } => self
                .workloads
                .binary_search_by(|w| {
                    (w.namespace.as_str(), w.name.as_str(), w.kind.as_str()).cmp(&(
                        namespace.as_str(),
                        name.as_str(),
                        kind.as_str(),
                    ))
                })
                .ok()
                .map(|i| &self.workloads[i]),
            Peer::External { .. } => None,
        }
    }

    /// Every flow with some connection allowed, between two workloads or a workload and a range
    /// outside the cluster (a workload's connections to itself are not flows), sorted.
    pub fn flows(&self) -> Vec<Flow> {
        let workloads: Vec<Peer> = self.workloads.iter().map(peer_of).collect();
        let from_outside = self.externals(Direction::Ingress);
        let sources = workloads.iter().chain(&from_outside);
        let destinations: Vec<Peer> = workloads
            .iter()
            .cloned()
            .chain(self.externals(Direction::Egress))
            .collect();
        let mut flows = Vec::new();
        for src in sources {
            for dst in &destinations {
                if src == dst
                    || matches!((src, dst), (Peer::External { .. }, Peer::External { .. }))
                {
                    continue;
                }
                let conns = self.allowed(src, dst);
                if !conns.is_empty() {
                    flows.push(Flow {
                        src: src.clone(),
                        dst: dst.clone(),
                        conns,
                    });
                }
            }
        }
        flows.sort();
        flows
    }

    /// What is allowed from `src` to `dst`.
    pub fn allowed(&self, src: &Peer, dst: &Peer) -> Conns {
        let egress = self.side(Direction::Egress, src, dst);
        let ingress = self.side(Direction::Ingress, src, dst);
        // A side no policy isolates allows everything: the other side decides alone.
        match (egress.isolated, ingress.isolated) {
            (false, _) => ingress.allowed,
            (true, false) => egress.allowed,
            (true, true) => egress.allowed.intersection(&ingress.allowed),
        }
    }

    /// Which policies decide the flow from `src` to `dst`, and what each allows.
    pub fn explain(&self, src: &Peer, dst: &Peer) -> Explanation {
        let egress = self.side(Direction::Egress, src, dst);
        let ingress = self.side(Direction::Ingress, src, dst);
        Explanation {
            src: src.clone(),
            dst: dst.clone(),
            allowed: egress.allowed.intersection(&ingress.allowed),
            egress,
            ingress,
        }
    }

    /// One direction of the flow from `src` to `dst`: the source's egress or the destination's
    /// ingress.
    fn side(&self, direction: Direction, src: &Peer, dst: &Peer) -> Side {
        let (own, other) = match direction {
            Direction::Egress => (src, dst),
            Direction::Ingress => (dst, src),
        };
        let open = || Side {
            direction,
            isolated: false,
            allowed: Conns::all(),
            policies: Vec::new(),
        };
        // A workload in a namespace no policy is in is not isolated: known without looking it up
        // (a plan of a fresh platform asks this of every pair of thousands of workloads).
        if let Peer::Workload { namespace, .. } = own
            && !self.policies.iter().any(|p| &p.namespace == namespace)
        {
            return open();
        }
        let Some(pod) = self.workload(own) else {
            // Addresses outside the cluster are not isolated by any policy.
            return open();
        };
        // Looked up once a policy's rule needs its ports.
        let mut target: Option<Option<&Workload>> = None;
        let mut isolated = false;
        let mut allowed = Conns::none();
        let mut policies = Vec::new();
        for p in &self.policies {
            if p.namespace != pod.namespace || !p.pods.matches(&pod.labels) {
                continue;
            }
            let rules = match direction {
                Direction::Egress if p.isolates.1 => &p.egress,
                Direction::Ingress if p.isolates.0 => &p.ingress,
                _ => continue,
            };
            isolated = true;
            let mut by_this = Conns::none();
            for rule in rules {
                if self.rule_admits(p, rule, other) {
                    let target = *target.get_or_insert_with(|| self.workload(dst));
                    by_this = by_this.union(&rule_ports(rule, target));
                }
            }
            allowed = allowed.union(&by_this);
            policies.push(Decider {
                policy: format!("{}/{}", p.namespace, p.name),
                allows: by_this,
            });
        }
        if !isolated {
            allowed = Conns::all();
        }
        Side {
            direction,
            isolated,
            allowed,
            policies,
        }
    }

    /// Whether a rule of policy `p` names `peer` among its peers.
    fn rule_admits(&self, p: &Policy, rule: &Rule, peer: &Peer) -> bool {
        let Some(selectors) = &rule.peers else {
            return true;
        };
        selectors.iter().any(|s| match (s, peer) {
            (PeerSelector::Block { cidr, except }, Peer::External { addresses }) => {
                cidr.covers(addresses) && !except.iter().any(|e| e.covers(addresses))
            }
            (PeerSelector::Block { .. }, Peer::Workload { .. }) => false,
            (PeerSelector::Pods { .. }, Peer::External { .. }) => false,
            (PeerSelector::Pods { namespaces, pods }, Peer::Workload { .. }) => {
                let Some(w) = self.workload(peer) else {
                    return false;
                };
                let in_namespace = match namespaces {
                    None => w.namespace == p.namespace,
                    Some(sel) => sel.matches(&self.namespace_labels(&w.namespace)),
                };
                in_namespace && pods.as_ref().is_none_or(|sel| sel.matches(&w.labels))
            }
        })
    }
}

/// The workload of an application, as its AuthorizationPolicy (in its own namespace, of an
/// application's step) selects its pods: `vz` does not run them, their owners do.
fn application_workload(step: &str, o: &Value) -> Option<Workload> {
    if !step.starts_with(vz_providers::applications::STEP_PREFIX)
        || text(o, "/kind") != Some("AuthorizationPolicy")
    {
        return None;
    }
    let namespace = text(o, "/metadata/namespace")?;
    let labels = string_map(o.pointer("/spec/selector/matchLabels"));
    if labels.is_empty() || namespace == vz_providers::names::ISTIO_SYSTEM {
        return None;
    }
    Some(Workload {
        namespace: namespace.to_string(),
        name: text(o, "/metadata/name")?.to_string(),
        kind: "Application".into(),
        labels,
        ports: Vec::new(),
    })
}

/// The network desired steps make: their objects, and the workloads of their applications.
pub fn of_steps(steps: &[vz_providers::Step]) -> Result<Network, String> {
    let bodies: Vec<&Value> = steps
        .iter()
        .flat_map(|s| &s.objects)
        .map(|m| &*m.body)
        .collect();
    let mut n = Network::from_objects(bodies.iter().copied())?;
    n.add_workloads(steps.iter().flat_map(|s| {
        s.objects
            .iter()
            .filter_map(|m| application_workload(&s.id, &m.body))
    }));
    Ok(n)
}

fn peer_of(w: &Workload) -> Peer {
    Peer::Workload {
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        kind: w.kind.clone(),
    }
}

/// The connections a rule's ports allow towards `dst` (whose container ports give named ports
/// their numbers; a named port means nothing towards addresses outside the cluster).
fn rule_ports(rule: &Rule, dst: Option<&Workload>) -> Conns {
    let Some(ports) = &rule.ports else {
        return Conns::all();
    };
    let mut c = Conns::none();
    for p in ports {
        let set = match &p.port {
            None => PortSet::all(),
            Some(PortRef::Number(n)) => PortSet::range(*n, p.end.unwrap_or(*n).max(*n)),
            Some(PortRef::Name(name)) => dst
                .into_iter()
                .flat_map(|w| &w.ports)
                .filter(|(pn, _, proto)| pn == name && *proto == p.protocol)
                .fold(PortSet::none(), |acc, (_, n, _)| {
                    acc.union(&PortSet::one(*n))
                }),
        };
        c = c.union(&Conns::of(p.protocol, set));
    }
    c
}

impl Policy {
    /// Whether it selects `w`, isolating it for ingress or egress (`direction`).
    fn selects(&self, w: &Workload, direction: Direction) -> bool {
        let isolates = match direction {
            Direction::Ingress => self.isolates.0,
            Direction::Egress => self.isolates.1,
        };
        isolates && self.namespace == w.namespace && self.pods.matches(&w.labels)
    }

    fn parse(o: &Value, namespace: String, name: String) -> Result<Policy, String> {
        let at = format!("NetworkPolicy {namespace}/{name}");
        let spec = o.get("spec").cloned().unwrap_or(Value::Null);
        let pods = Selector::parse(spec.get("podSelector").unwrap_or(&Value::Null), &at)?;
        let types: Option<Vec<&str>> = spec
            .get("policyTypes")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).collect());
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let isolates = match &types {
            Some(t) => (t.contains(&"Ingress"), t.contains(&"Egress")),
            None => (true, has_egress),
        };
        let rules = |key: &str, peers: &str| -> Result<Vec<Rule>, String> {
            spec.get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, r)| Rule::parse(r, peers, &format!("{at}: {key}[{i}]")))
                .collect()
        };
        Ok(Policy {
            namespace,
            name,
            pods,
            isolates,
            ingress: rules("ingress", "from")?,
            egress: rules("egress", "to")?,
        })
    }
}

impl Rule {
    fn parse(r: &Value, peers_key: &str, at: &str) -> Result<Rule, String> {
        let peers = match r.get(peers_key).and_then(Value::as_array) {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| PeerSelector::parse(p, &format!("{at}.{peers_key}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let ports = match r.get("ports").and_then(Value::as_array) {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| PortRule::parse(p, &format!("{at}.ports[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Rule { peers, ports })
    }
}

impl PeerSelector {
    fn parse(p: &Value, at: &str) -> Result<PeerSelector, String> {
        if let Some(block) = p.get("ipBlock") {
            let cidr = block
                .get("cidr")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let range = |s: &str| {
                IpRange::cidr(s).ok_or_else(|| {
                    format!("{at}: ipBlock {s:?} is not an IPv4 CIDR (IPv6 is not evaluated)")
                })
            };
            return Ok(PeerSelector::Block {
                cidr: range(cidr)?,
                except: block
                    .get("except")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(range)
                    .collect::<Result<_, _>>()?,
            });
        }
        let selector = |key: &str| {
            p.get(key)
                .map(|v| Selector::parse(v, &format!("{at}.{key}")))
                .transpose()
        };
        Ok(PeerSelector::Pods {
            namespaces: selector("namespaceSelector")?,
            pods: selector("podSelector")?,
        })
    }
}

impl PortRule {
    fn parse(p: &Value, at: &str) -> Result<PortRule, String> {
        let protocol = match p.get("protocol").and_then(Value::as_str) {
            None => Protocol::Tcp,
            Some(s) => Protocol::parse(s).ok_or_else(|| format!("{at}: protocol {s}"))?,
        };
        let port = match p.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(PortRef::Number(
                n.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| format!("{at}: port {n}"))?,
            )),
            Some(Value::String(s)) => match s.parse::<u16>() {
                Ok(n) => Some(PortRef::Number(n)),
                Err(_) => Some(PortRef::Name(s.clone())),
            },
            Some(other) => return Err(format!("{at}: port {other}")),
        };
        let end = p
            .get("endPort")
            .and_then(Value::as_u64)
            .map(|n| u16::try_from(n).map_err(|_| format!("{at}: endPort {n}")))
            .transpose()?;
        Ok(PortRule {
            protocol,
            port,
            end,
        })
    }
}

#[cfg(test)]
mod contract_tests;
#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod tests;
