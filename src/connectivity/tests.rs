//! The NetworkPolicy rules, one test each, on small networks.

use serde_json::{Value, json};

use super::*;

fn deployment(ns: &str, name: &str, labels: Value, ports: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "ports": ports}]},
        }},
    })
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    })
}

fn network(objects: &[Value]) -> Network {
    Network::from_objects(objects).expect("a network")
}

fn shown(n: &Network) -> Vec<String> {
    n.flows()
        .iter()
        .map(|f| format!("{} => {} : {}", f.src, f.dst, f.conns))
        .collect()
}

fn w(ns: &str, name: &str) -> Peer {
    Peer::Workload {
        namespace: ns.into(),
        name: name.into(),
        kind: "Deployment".into(),
    }
}

#[test]
fn without_policies_everything_reaches_everything() {
    let n = network(&[
        deployment("a", "web", json!({"app": "web"}), json!([])),
        deployment("b", "db", json!({"app": "db"}), json!([])),
    ]);
    assert_eq!(
        shown(&n),
        [
            "a/web => b/db : All Connections",
            "a/web => outside the cluster : All Connections",
            "b/db => a/web : All Connections",
            "b/db => outside the cluster : All Connections",
            "outside the cluster => a/web : All Connections",
            "outside the cluster => b/db : All Connections",
        ]
    );
}

#[test]
fn a_policy_selecting_a_pod_allows_only_what_its_rules_name() {
    let n = network(&[
        deployment("a", "web", json!({"app": "web"}), json!([])),
        deployment("a", "db", json!({"app": "db"}), json!([])),
        policy(
            "a",
            "db",
            json!({
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                             "ports": [{"port": 5432}]}],
            }),
        ),
    ]);
    let to_db: Vec<String> = shown(&n)
        .into_iter()
        .filter(|l| l.contains("=> a/db"))
        .collect();
    assert_eq!(to_db, ["a/web => a/db : TCP 5432"]);
    // Egress is not isolated: the database still reaches out.
    assert!(shown(&n).contains(&"a/db => a/web : All Connections".to_string()));
}

#[test]
fn a_policy_with_no_rules_denies_everything_in_its_direction() {
    let n = network(&[
        deployment("a", "web", json!({}), json!([])),
        deployment("a", "db", json!({"app": "db"}), json!([])),
        policy(
            "a",
            "deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
    ]);
    assert_eq!(shown(&n), Vec::<String>::new());
}

#[test]
fn a_named_port_takes_its_number_from_the_destination_pod() {
    let n = network(&[
        deployment("a", "web", json!({"app": "web"}), json!([])),
        deployment(
            "a",
            "api",
            json!({"app": "api"}),
            json!([{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]),
        ),
        policy(
            "a",
            "api",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"ports": [{"port": "http"}, {"port": "dns", "protocol": "UDP"}, {"port": "dns"}]}],
            }),
        ),
    ]);
    assert_eq!(
        n.allowed(&w("a", "web"), &w("a", "api")).to_string(),
        "TCP 8080,UDP 53"
    );
}

#[test]
fn a_port_range_and_a_protocol_without_a_port() {
    let n = network(&[
        deployment("a", "web", json!({}), json!([])),
        deployment("a", "api", json!({"app": "api"}), json!([])),
        policy(
            "a",
            "api",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"ports": [{"port": 8000, "endPort": 8010}, {"protocol": "UDP"}]}],
            }),
        ),
    ]);
    assert_eq!(
        n.allowed(&w("a", "web"), &w("a", "api")).to_string(),
        "TCP 8000-8010,UDP 1-65535"
    );
}

#[test]
fn namespace_and_pod_selectors_in_one_peer_need_both_and_in_two_peers_either() {
    let objects = |peers: Value| {
        vec![
            namespace(
                "ingress-nginx",
                json!({"verrazzano.io/namespace": "ingress-nginx"}),
            ),
            deployment(
                "ingress-nginx",
                "controller",
                json!({"app.kubernetes.io/instance": "ingress-controller"}),
                json!([]),
            ),
            deployment(
                "ingress-nginx",
                "backend",
                json!({"app": "backend"}),
                json!([]),
            ),
            deployment(
                "keycloak",
                "keycloak",
                json!({"app": "keycloak"}),
                json!([]),
            ),
            policy(
                "keycloak",
                "keycloak",
                json!({
                    "podSelector": {"matchLabels": {"app": "keycloak"}},
                    "ingress": [{"from": peers, "ports": [{"port": 8080}]}],
                }),
            ),
        ]
    };
    let ns = json!({"matchLabels": {"verrazzano.io/namespace": "ingress-nginx"}});
    let pods = json!({"matchLabels": {"app.kubernetes.io/instance": "ingress-controller"}});
    let one = network(&objects(
        json!([{"namespaceSelector": ns, "podSelector": pods}]),
    ));
    let two = network(&objects(
        json!([{"namespaceSelector": ns}, {"podSelector": pods}]),
    ));
    let keycloak = w("keycloak", "keycloak");
    let backend = w("ingress-nginx", "backend");
    let controller = w("ingress-nginx", "controller");
    assert!(one.allowed(&backend, &keycloak).is_empty());
    assert_eq!(one.allowed(&controller, &keycloak).to_string(), "TCP 8080");
    // Two peers: any pod of the namespace.
    assert_eq!(two.allowed(&backend, &keycloak).to_string(), "TCP 8080");
}

#[test]
fn match_expressions_select_as_the_api_defines_them() {
    let n = network(&[
        deployment("a", "x", json!({"tier": "front"}), json!([])),
        deployment("a", "y", json!({"tier": "back"}), json!([])),
        deployment("a", "z", json!({}), json!([])),
        deployment("a", "target", json!({"app": "t"}), json!([])),
        policy(
            "a",
            "t",
            json!({
                "podSelector": {"matchLabels": {"app": "t"}},
                "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "NotIn", "values": ["back"]},
                    {"key": "tier", "operator": "Exists"},
                ]}}]}],
            }),
        ),
    ]);
    let t = w("a", "target");
    assert!(n.allowed(&w("a", "x"), &t).is_all());
    assert!(n.allowed(&w("a", "y"), &t).is_empty());
    assert!(n.allowed(&w("a", "z"), &t).is_empty());
}

#[test]
fn egress_rules_make_a_policy_isolate_egress_unless_its_types_say_otherwise() {
    let egress = json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]);
    let n = network(&[
        deployment("a", "web", json!({"app": "web"}), json!([])),
        policy("a", "out", json!({"podSelector": {}, "egress": egress})),
    ]);
    let out: Vec<String> = shown(&n)
        .into_iter()
        .filter(|l| l.starts_with("a/web"))
        .collect();
    assert_eq!(
        out,
        [
            "a/web => 10.0.0.0-10.0.255.255 : All Connections",
            "a/web => 10.2.0.0-10.255.255.255 : All Connections",
        ]
    );
    // Ingress is isolated too (the default type), by a policy with no ingress rules.
    assert!(
        !shown(&n)
            .iter()
            .any(|l| l.ends_with("=> a/web : All Connections"))
    );
    let only_ingress = network(&[
        deployment("a", "web", json!({"app": "web"}), json!([])),
        policy(
            "a",
            "out",
            json!({"podSelector": {}, "policyTypes": ["Ingress"], "egress": egress}),
        ),
    ]);
    assert!(
        shown(&only_ingress)
            .contains(&"a/web => 0.0.0.0-9.255.255.255 : All Connections".to_string())
    );
}

#[test]
fn policies_select_pods_of_their_own_namespace_only() {
    let n = network(&[
        deployment("a", "web", json!({"app": "web"}), json!([])),
        deployment("b", "web", json!({"app": "web"}), json!([])),
        policy("a", "deny", json!({"podSelector": {}})),
    ]);
    assert!(n.allowed(&w("a", "web"), &w("b", "web")).is_all());
    assert!(n.allowed(&w("b", "web"), &w("a", "web")).is_empty());
}

#[test]
fn an_explanation_names_each_deciding_policy_and_what_it_allows() {
    let n = network(&[
        deployment("a", "web", json!({"app": "web"}), json!([])),
        deployment("a", "db", json!({"app": "db"}), json!([])),
        policy(
            "a",
            "db-from-web",
            json!({
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}],
            }),
        ),
        policy(
            "a",
            "db-metrics",
            json!({
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"ports": [{"port": 9187}]}],
            }),
        ),
    ]);
    let e = n.explain(&w("a", "web"), &w("a", "db"));
    assert_eq!(e.allowed.to_string(), "TCP 5432,9187");
    assert!(!e.egress.isolated);
    assert!(e.ingress.isolated);
    let deciders: Vec<String> = e
        .ingress
        .policies
        .iter()
        .map(|d| format!("{}: {}", d.policy, d.allows))
        .collect();
    assert_eq!(
        deciders,
        ["a/db-from-web: TCP 5432", "a/db-metrics: TCP 9187"]
    );
}

#[test]
fn a_broken_policy_is_an_error_naming_it() {
    let err = Network::from_objects(&[policy(
        "a",
        "bad",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]}),
    )])
    .expect_err("ICMP is no protocol of a NetworkPolicy");
    assert!(
        err.contains("NetworkPolicy a/bad: ingress[0].ports[0]"),
        "{err}"
    );
}
