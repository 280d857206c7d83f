//! Upgrades on the test plane: the quick start installed with Verrazzano's Istio 1.19.3, then moved
//! to Istio 1.30.3 by changing `components.istio.version`. The move plans and applies as Istio's
//! canary upgrade — the new revision beside the old, the default tag moved to it, the gateways
//! moved, the workloads restarted onto it, the old revision removed last — and a failure on the
//! way rolls back to the old revision, still serving.

use serde_json::Value;

use crate::common::{TestEnv, exit};

const OLD: &str = "1-19-3";
const NEW: &str = "1-30-3";

/// The quick start, on Istio `version`.
fn quickstart_on(env: &TestEnv, version: &str) -> String {
    let text = std::fs::read_to_string(env.example("quickstart.yaml")).expect("quick start");
    let text = text.replace(
        "    injectionEnabled: true\n",
        &format!("    injectionEnabled: true\n    version: {version}\n"),
    );
    let path = env.write_config(&format!("quickstart-{version}.yaml"), &text);
    path.to_str().expect("utf8").to_string()
}

/// A Deployment of `replicas` pods in an injected system namespace, as a user's workload.
fn workload(env: &TestEnv, name: &str, replicas: u32) {
    env.kubectl(&[
        "-n",
        "verrazzano-system",
        "create",
        "deployment",
        name,
        "--image=registry.example/shop:1",
        &format!("--replicas={replicas}"),
    ])
    .expect_code(0);
    rolled_out(env, name);
}

/// Wait until Deployment `name` in verrazzano-system runs only pods of its current template.
fn rolled_out(env: &TestEnv, name: &str) {
    env.eventually(
        std::time::Duration::from_secs(60),
        &format!("{name} rolled out"),
        || {
            let d = env.get_json(&["deployment", "-n", "verrazzano-system", name])?;
            let wanted = d["spec"]["replicas"].as_i64()?;
            let status = &d["status"];
            (status["observedGeneration"] == d["metadata"]["generation"]
                && status["updatedReplicas"].as_i64() == Some(wanted)
                && status["availableReplicas"].as_i64() == Some(wanted)
                && status["replicas"].as_i64() == Some(wanted))
            .then_some(())
        },
    );
}

/// The revision that injected each pod of `name` (from `sidecar.istio.io/status`), with its proxy
/// image.
fn sidecars(env: &TestEnv, name: &str) -> Vec<(String, String)> {
    let pods = env
        .get_json(&[
            "pods",
            "-n",
            "verrazzano-system",
            "-l",
            &format!("app={name}"),
        ])
        .expect("pods");
    pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let status: Value = serde_json::from_str(
                p["metadata"]["annotations"]["sidecar.istio.io/status"]
                    .as_str()
                    .unwrap_or("{}"),
            )
            .unwrap_or_default();
            let proxy = p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == "istio-proxy")
                .and_then(|c| c["image"].as_str())
                .unwrap_or("none");
            (
                status["revision"].as_str().unwrap_or("none").to_string(),
                proxy.to_string(),
            )
        })
        .collect()
}

/// The istiod Deployments in istio-system.
fn istiods(env: &TestEnv) -> Vec<String> {
    env.list_names(&["deployments", "-n", "istio-system", "-l", "app=istiod"])
        .into_iter()
        .map(|n| n.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

/// The Service the default revision tag's injector calls.
fn tag_points_at(env: &TestEnv) -> String {
    let tag = env
        .get_json(&["mutatingwebhookconfiguration", "istio-revision-tag-default"])
        .expect("the default revision tag");
    tag["webhooks"][0]["clientConfig"]["service"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_version_move_plans_and_applies_as_a_canary_with_the_old_revision_removed_last() {
    let env = TestEnv::start();
    let old = quickstart_on(&env, "1.19.3");
    env.vz(&["apply", "-f", &old, "--auto-approve"])
        .expect_code(0);
    assert_eq!(istiods(&env), [format!("istiod-{OLD}")]);
    workload(&env, "orders", 2);
    assert!(
        sidecars(&env, "orders").iter().all(|(rev, _)| rev == OLD),
        "{:?}",
        sidecars(&env, "orders")
    );

    let new = quickstart_on(&env, "1.30.3");
    let plan = env.vz(&["plan", "-f", &new, "--json"]);
    plan.expect_code(0);
    let j: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    let actions = |address: &str| -> Value {
        j["resource_changes"]
            .as_array()
            .expect("changes")
            .iter()
            .find(|c| c["address"] == address)
            .map(|c| c["actions"].clone())
            .unwrap_or(Value::Null)
    };
    let cp = "istio.control-plane";
    assert_eq!(
        actions(&format!("{cp}/Deployment/istio-system/istiod-{NEW}")),
        serde_json::json!(["create"])
    );
    assert_eq!(
        actions(&format!("{cp}/Deployment/istio-system/istiod-{OLD}")),
        serde_json::json!(["delete"])
    );
    assert_eq!(
        actions("istio.revision-tag/MutatingWebhookConfiguration/istio-revision-tag-default"),
        serde_json::json!(["update"])
    );
    let restarts: Vec<String> = j["restarts"]
        .as_array()
        .expect("restarts")
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["namespace"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        restarts.contains(&"verrazzano-system/orders".to_string()),
        "{restarts:?}"
    );
    // The text plan names them and why.
    env.vz(&["plan", "-f", &new]).expect_stdout(&format!(
        "~> Deployment verrazzano-system/orders  # at istio.workloads: 2 pods run the sidecar of revision {OLD}; revision {NEW} injects now"
    ));

    let apply = env.vz(&["apply", "-f", &new, "--auto-approve"]);
    apply.expect_code(0);
    // The order: the new revision, the tag, the gateways, the workloads, and only then the old
    // revision's objects deleted.
    let at = |text: &str| {
        apply
            .stdout
            .find(text)
            .or_else(|| apply.stderr.find(text))
            .unwrap_or_else(|| {
                panic!(
                    "`{text}` not in the apply's output:\n{}\n{}",
                    apply.stdout, apply.stderr
                )
            })
    };
    let created = at(&format!(
        "{cp}/Deployment/istio-system/istiod-{NEW}: created"
    ));
    let tagged =
        at("istio.revision-tag/MutatingWebhookConfiguration/istio-revision-tag-default: updated");
    let gateways = at("istio.gateways/Deployment/istio-system/istio-ingressgateway: updated");
    // orders, and NGINX's controller and default backend.
    let restarted = at("istio.workloads: 3 workload(s) restarted in");
    let removed = at(&format!(
        "{cp}/Deployment/istio-system/istiod-{OLD}: deleted"
    ));
    assert!(
        created < tagged && tagged < gateways && gateways < restarted && restarted < removed,
        "{}\n{}",
        apply.stdout,
        apply.stderr
    );

    assert_eq!(istiods(&env), [format!("istiod-{NEW}")]);
    assert_eq!(tag_points_at(&env), format!("istiod-{NEW}"));
    rolled_out(&env, "orders");
    assert_eq!(
        sidecars(&env, "orders"),
        vec![
            (
                NEW.to_string(),
                "docker.io/istio/proxyv2:1.30.3".to_string()
            );
            2
        ]
    );
    let gateway = env
        .get_json(&["deployment", "-n", "istio-system", "istio-ingressgateway"])
        .expect("gateway");
    assert_eq!(
        gateway["spec"]["template"]["metadata"]["labels"]["istio.io/rev"],
        NEW
    );
    // Nothing left to do: no workload runs an old sidecar.
    env.vz(&["plan", "-f", &new, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_failure_mid_upgrade_rolls_back_to_the_old_revision_still_serving() {
    let env = TestEnv::start();
    let old = quickstart_on(&env, "1.19.3");
    env.vz(&["apply", "-f", &old, "--auto-approve"])
        .expect_code(0);
    workload(&env, "orders", 1);
    workload(&env, "payments", 1);
    // The payments' new pods never become ready: its restart, after the others', fails the run.
    env.set_node_sim("unready", "verrazzano-system/payments-");

    let new = quickstart_on(&env, "1.30.3");
    let child = env.spawn_vz(&["apply", "-f", &new, "--auto-approve", "--timeout", "40s"]);
    child.await_said(std::time::Duration::from_secs(120), "Rolling back");
    // Pods made from now on become ready again: the rollback's restart onto the old revision
    // completes.
    env.set_node_sim("unready", "");
    let run = child.wait();
    run.expect_code(exit::ROLLED_BACK);
    run.expect_stderr("payments");
    run.expect_stderr("restarted Deployment verrazzano-system/orders again");

    // The old revision served throughout and serves now; the new one is gone.
    assert_eq!(istiods(&env), [format!("istiod-{OLD}")]);
    let istiod = env
        .get_json(&["deployment", "-n", "istio-system", &format!("istiod-{OLD}")])
        .expect("the old istiod");
    assert_eq!(istiod["status"]["availableReplicas"], 1);
    assert_eq!(tag_points_at(&env), format!("istiod-{OLD}"));
    for name in ["orders", "payments"] {
        rolled_out(&env, name);
        let sidecars = sidecars(&env, name);
        assert!(
            !sidecars.is_empty() && sidecars.iter().all(|(rev, _)| rev == OLD),
            "{name}: {sidecars:?}"
        );
    }
    // The state is the old platform's: planning it again changes nothing.
    env.vz(&["plan", "-f", &old, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn in_place_a_version_move_updates_the_one_istiod_and_restarts_by_proxy_image() {
    let env = TestEnv::start();
    let old = quickstart_on(&env, "1.19.3");
    let old_text = std::fs::read_to_string(&old).expect("config");
    let in_place = |text: &str| text.replace("    version:", "    upgrade: inPlace\n    version:");
    std::fs::write(&old, in_place(&old_text)).expect("write");
    env.vz(&["apply", "-f", &old, "--auto-approve"])
        .expect_code(0);
    assert_eq!(istiods(&env), ["istiod"]);
    workload(&env, "orders", 1);

    let new = quickstart_on(&env, "1.30.3");
    let new_text = std::fs::read_to_string(&new).expect("config");
    std::fs::write(&new, in_place(&new_text)).expect("write");
    env.vz(&["plan", "-f", &new])
        .expect_stdout("~ istio.control-plane/Deployment/istio-system/istiod\n")
        .expect_stdout(
            "~> Deployment verrazzano-system/orders  # at istio.workloads: 1 pod runs proxy ghcr.io/verrazzano/proxyv2:1.19.3-20240104211928-419dfb47; the injector gives docker.io/istio/proxyv2:1.30.3 now",
        );
    env.vz(&["apply", "-f", &new, "--auto-approve"])
        .expect_code(0);
    assert_eq!(istiods(&env), ["istiod"]);
    rolled_out(&env, "orders");
    assert_eq!(
        sidecars(&env, "orders"),
        [(
            "default".to_string(),
            "docker.io/istio/proxyv2:1.30.3".to_string()
        )]
    );
    env.vz(&["plan", "-f", &new, "--detailed-exitcode"])
        .expect_code(0);
}
