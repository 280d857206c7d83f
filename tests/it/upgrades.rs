//! Upgrades on the test plane: the quick start installed with Verrazzano's Istio 1.19.3, then moved
//! to Istio 1.30.3 by changing `components.istio.version`. The move plans and applies as Istio's
//! canary upgrade — the new revision beside the old, the default tag moved to it, the gateways
//! moved, the workloads restarted onto it, the old revision removed last — and a failure on the
//! way rolls back to the old revision, still serving. And a platform applied on the oldest
//! Kubernetes of the matrix plans no change once its control plane is upgraded to the newest.

use serde_json::Value;

use crate::common::{TestEnv, exit};

const OLD: &str = "1-19-3";
const NEW: &str = "1-30-3";
const NGINX_NS: &str = "verrazzano-ingress-nginx";
const NGINX_CONTROLLER: &str = "ingress-controller-ingress-nginx-controller";
/// Another image for NGINX's controller (the node simulator runs any image).
const MOVED_NGINX: &str = "example.test/nginx/controller:v1.7.1-moved";

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

    // Istio moves to 1.30.3, and NGINX's controller to another image.
    let new = quickstart_on(&env, "1.30.3");
    let moved = std::fs::read_to_string(&new).expect("config")
        + &format!("images:\n  nginxController: {MOVED_NGINX}\n");
    std::fs::write(&new, moved).expect("write config");
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
    // The text plan names them and why, and how NGINX's pods roll.
    let text = env.vz(&["plan", "-f", &new]);
    text.expect_stdout(&format!(
        "~> Deployment verrazzano-system/orders  # at istio.workloads: 2 pods run the sidecar of revision {OLD}; revision {NEW} injects now"
    ));
    text.expect_stdout(&format!(
        "~ ingress-nginx/Deployment/{NGINX_NS}/{NGINX_CONTROLLER}  # its pods roll: 1 replica(s), at most 1 extra and 0 unavailable at a time"
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
    // NGINX's controller rolled onto its new image: no pod of the old template left.
    let controller = env
        .get_json(&["deployment", "-n", NGINX_NS, NGINX_CONTROLLER])
        .expect("controller");
    assert_eq!(
        controller["spec"]["template"]["spec"]["containers"][0]["image"],
        MOVED_NGINX
    );
    let status = &controller["status"];
    assert_eq!(
        (
            status["updatedReplicas"].as_i64(),
            status["replicas"].as_i64(),
            status["availableReplicas"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
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

    // Moving back is a canary too. The CRDs go back to 1.19's but keep serving the `v1` their
    // objects are now stored as: the API server refuses a definition that drops it.
    env.vz(&["apply", "-f", &old, "--auto-approve"])
        .expect_code(0);
    assert_eq!(istiods(&env), [format!("istiod-{OLD}")]);
    let vs = env
        .get_json(&["crd", "virtualservices.networking.istio.io"])
        .expect("the CRD");
    let versions: Vec<(&str, bool)> = vs["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or(""), v["storage"] == true))
        .collect();
    assert_eq!(
        versions,
        [("v1alpha3", true), ("v1beta1", false), ("v1", false)]
    );
    env.vz(&["plan", "-f", &old, "--detailed-exitcode"])
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
    // The CRDs are 1.19's again, still serving the version 1.30 stored objects as (the API
    // server refuses to drop it), but storing 1.19's.
    let vs = env
        .get_json(&["crd", "virtualservices.networking.istio.io"])
        .expect("the CRD");
    let versions: Vec<(String, bool)> = vs["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("").to_string(),
                v["storage"] == true,
            )
        })
        .collect();
    assert!(
        versions.contains(&("v1alpha3".to_string(), true)),
        "{versions:?}"
    );
    let stored = vs["status"]["storedVersions"].to_string();
    assert_eq!(
        versions.iter().any(|(v, _)| v == "v1"),
        stored.contains("\"v1\""),
        "{versions:?} stored {stored}"
    );
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
        // istiod rolls as its strategy says: a new pod ready before the old one goes.
        .expect_stdout("~ istio.control-plane/Deployment/istio-system/istiod  # its pods roll: 1 replica(s), at most 100% extra and 25% unavailable at a time\n")
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

/// The oldest and the newest Kubernetes of the test matrix (`scripts/testenv versions`).
fn matrix_ends() -> (String, String) {
    let out = std::process::Command::new(crate::common::repo_root().join("scripts/testenv"))
        .arg("versions")
        .output()
        .expect("scripts/testenv versions");
    let mut versions: Vec<(u32, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|v| Some((v.strip_prefix("1.")?.parse().ok()?, v.to_string())))
        .collect();
    versions.sort();
    let oldest = versions.first().expect("a version").1.clone();
    let newest = versions.last().expect("a version").1.clone();
    (oldest, newest)
}

fn server_version(env: &TestEnv) -> String {
    let run = env.kubectl(&["version", "-o", "json"]);
    run.expect_code(0);
    let v: Value = serde_json::from_str(&run.stdout).expect("kubectl version JSON");
    v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs the control planes of the matrix's oldest and newest Kubernetes: scripts/test runs it once they are built (`-- --ignored`)"]
fn a_platform_applied_on_the_oldest_kubernetes_plans_no_change_once_the_cluster_is_upgraded() {
    let (oldest, newest) = matrix_ends();
    assert_ne!(oldest, newest, "the matrix has one version");
    let env = TestEnv::start_with(&["--version", &oldest]);
    assert!(
        server_version(&env).starts_with(&format!("v{oldest}.")),
        "{}",
        server_version(&env)
    );
    // The platform with its applications, and a user's workload in the mesh.
    let cfg = env.applications_config("");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    workload(&env, "orders", 1);
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);

    // The control plane is upgraded under the platform, as a cluster's is: the API server, then
    // the controllers, on the same etcd.
    env.testenv("upgrade", &["--version", &newest])
        .expect_code(0);
    assert!(
        server_version(&env).starts_with(&format!("v{newest}.")),
        "{}",
        server_version(&env)
    );
    // Everything vz applied reads back the same from the newer server: no false drift, no
    // restart, and the newer server has nothing to say of vz's objects (the warning that Istio
    // does not support it yet may stand).
    let plan = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(
        plan.stdout.contains("No changes.") && !plan.stderr.contains("the API server says"),
        "{}\n{}",
        plan.stdout,
        plan.stderr
    );
    // And the platform is still vz's to change and take away on the new server.
    env.vz(&["destroy", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert!(env.get_json(&["namespace", "istio-system"]).is_none());
}
