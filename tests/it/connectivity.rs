//! Connectivity as users see it: `vz explain-access` answering with the deciding policy, and the
//! plan's "Connectivity changes" for a new application, a destroyed one, and a policy changed
//! outside `vz` that apply puts back.

use serde_json::Value;

use crate::common::{TestEnv, exit, repo_root, vz_bare};

fn applications_example() -> String {
    repo_root()
        .join("examples/applications.yaml")
        .to_str()
        .expect("utf8 path")
        .to_string()
}

#[test]
fn explain_access_answers_with_the_deciding_policy() {
    let cfg = applications_example();
    let allowed = vz_bare(&[
        "explain-access",
        "-f",
        &cfg,
        "shop/orders",
        "istio-system/istiod-1-30-3",
        "15012",
    ]);
    allowed.expect_code(0).expect_stdout(
        "shop/orders -> istio-system/istiod-1-30-3 TCP 15012: allowed\n  egress of shop/orders: not restricted (no NetworkPolicy selects it for egress)\n  ingress of istio-system/istiod-1-30-3: allowed by istio-system/istiod-access (TCP 15012,15017)\n",
    );
    let denied = vz_bare(&[
        "explain-access",
        "-f",
        &cfg,
        "shop/orders",
        "verrazzano-ingress-nginx/ingress-controller-ingress-nginx-defaultbackend",
        "8080",
    ]);
    denied.expect_code(2).expect_stdout(
        "denied: verrazzano-ingress-nginx/ingress-nginx-default-backend selects it for ingress, and does not allow this from shop/orders",
    );
    // From outside the cluster, every port allowed is told.
    vz_bare(&[
        "explain-access",
        "-f",
        &cfg,
        "203.0.113.9",
        "istio-system/istiod-1-30-3",
    ])
    .expect_code(0)
    .expect_stdout("203.0.113.9 -> istio-system/istiod-1-30-3: allowed: TCP 15017\n");
    let json = vz_bare(&[
        "explain-access",
        "-f",
        &cfg,
        "shop/orders",
        "istio-system/istio-ingressgateway",
        "8443",
        "--json",
    ]);
    json.expect_code(0);
    let v: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["allowed"], true);
    let deciders: Vec<String> = v["explanation"]["ingress"]["policies"]
        .as_array()
        .expect("the policies")
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["policy"].as_str().unwrap_or_default(),
                d["allows"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        deciders.contains(&"istio-system/istio-ingressgateway TCP 8443".to_string()),
        "{deciders:?}"
    );
}

#[test]
fn explain_access_says_what_it_cannot_find_and_takes_workloads_it_is_given() {
    let cfg = applications_example();
    vz_bare(&[
        "explain-access",
        "-f",
        &cfg,
        "shop/order",
        "istio-system/istiod-1-30-3",
    ])
    .expect_code(exit::USAGE)
    .expect_stderr("SRC: no workload shop/order in the configuration")
    .expect_stderr("hint: workloads in shop: orders");
    vz_bare(&[
        "explain-access",
        "-f",
        &cfg,
        "shop/orders",
        "istio-system/istiod-1-30-3",
        "80/icmp",
    ])
    .expect_code(exit::USAGE)
    .expect_stderr("PORT `80/icmp` is not a port");
    // A workload vz does not run, given in a file, is evaluated with the platform's.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("worker.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: orders-worker, namespace: shop}\nspec:\n  template:\n    metadata: {labels: {app: orders-worker}}\n    spec: {containers: [{name: w, image: w}]}\n",
    )
    .expect("the workloads file is written");
    vz_bare(&[
        "explain-access",
        "-f",
        &cfg,
        "shop/orders-worker",
        "istio-system/istiod-1-30-3",
        "15012",
        "--workloads",
        file.to_str().expect("utf8 path"),
    ])
    .expect_code(0)
    .expect_stdout("allowed by istio-system/istiod-access");
    // Without SRC and DST: every flow.
    let all = vz_bare(&["explain-access", "-f", &cfg]);
    all.expect_code(0)
        .expect_stdout("shop/orders -> istio-system/istiod-1-30-3 TCP 15012,15017\n")
        .expect_stdout("outside the cluster -> istio-system/istio-ingressgateway TCP 8443\n");
}

/// The plan's connectivity changes, as text lines and from its JSON.
fn connectivity(env: &TestEnv, args: &[&str]) -> (String, Vec<String>) {
    let text = env.vz(args);
    text.expect_code(0);
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = env.vz(&json_args);
    json.expect_code(0);
    let v: Value = serde_json::from_str(&json.stdout).expect("the plan as JSON");
    let flows = v["connectivity_changes"]["flows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            format!(
                "{} {} -> {} {}",
                s("change"),
                s("src"),
                s("dst"),
                s("conns")
            )
        })
        .collect();
    (text.stdout, flows)
}

#[test]
fn the_plan_shows_the_flows_a_new_application_opens_and_its_destroy_closes() {
    let env = TestEnv::start();
    let cfg = env.applications_config("");
    let apps = std::path::Path::new(&cfg)
        .parent()
        .expect("the configuration's directory")
        .join("apps");
    let orders = std::fs::read_to_string(apps.join("orders.yaml")).expect("orders.yaml");
    // The platform and the storefront first.
    std::fs::remove_file(apps.join("orders.yaml")).expect("orders.yaml removed");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    std::fs::write(apps.join("orders.yaml"), orders).expect("orders.yaml back");

    let (text, flows) = connectivity(&env, &["plan", "-f", &cfg]);
    assert!(
        text.contains(
            "Connectivity changes:\n\n  + shop/orders -> istio-system/istiod-1-30-3 TCP 15012\n"
        ),
        "{text}"
    );
    assert_eq!(
        flows,
        ["open shop/orders -> istio-system/istiod-1-30-3 TCP 15012"]
    );

    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    let (text, flows) = connectivity(&env, &["plan", "-f", &cfg, "--destroy", "--app", "orders"]);
    assert!(
        text.contains("  - shop/orders -> istio-system/istiod-1-30-3 TCP 15012\n"),
        "{text}"
    );
    assert_eq!(
        flows,
        ["close shop/orders -> istio-system/istiod-1-30-3 TCP 15012"]
    );
    // Nothing to change, no connectivity changes.
    let (text, flows) = connectivity(&env, &["plan", "-f", &cfg]);
    assert!(!text.contains("Connectivity changes"), "{text}");
    assert!(flows.is_empty());
}

#[test]
fn the_plan_shows_the_flows_putting_back_a_changed_policy_opens() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    // Someone drops the ingress gateway's HTTPS rule.
    env.kubectl(&[
        "-n",
        "istio-system",
        "patch",
        "networkpolicy",
        "istio-ingressgateway",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/ingress/0"}]"#,
    ])
    .expect_code(0);
    let (text, flows) = connectivity(&env, &["plan", "-f", &cfg]);
    assert!(
        text.contains("  + outside the cluster -> istio-system/istio-ingressgateway TCP 8443\n"),
        "{text}"
    );
    for opened in [
        "open outside the cluster -> istio-system/istio-ingressgateway TCP 8443",
        "open verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller -> istio-system/istio-ingressgateway TCP 8443",
    ] {
        assert!(flows.contains(&opened.to_string()), "{flows:?}");
    }
    // Only that rule's flows, and none within istio-system (allow-same-namespace admits them).
    assert!(
        flows.iter().all(|f| f.starts_with("open ")
            && !f.starts_with("open istio-system/")
            && f.ends_with(" -> istio-system/istio-ingressgateway TCP 8443")),
        "{flows:?}"
    );
}
