//! Order and values across steps, against a real control plane: custom resources wait for their
//! CRDs (and go before them on the way out), and a value one step publishes (the NGINX load
//! balancer's address) fills in the objects of the steps after it.

use std::time::Duration;

use serde_json::Value;

use crate::common::{Run, TestEnv, exit};

const PEER_AUTHENTICATION: &str =
    "istio.peer-authentication/PeerAuthentication/istio-system/default";

/// Position of `needle` in `haystack`, failing with the whole text when it is not there.
#[track_caller]
fn position(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not found in:\n{haystack}"))
}

#[test]
fn custom_resources_are_created_after_their_crds_and_deleted_before_them() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");

    // The kind is not served yet: the plan still shows the object as one to create.
    let plan = env.vz(&["plan", "-f", cfg]);
    plan.expect_code(0);
    plan.expect_stdout(&format!("  + {PEER_AUTHENTICATION}\n"));

    let apply = env.vz(&["apply", "-f", cfg, "--auto-approve"]);
    apply.expect_code(0);
    let out = &apply.stderr;
    assert!(
        position(out, "istio.crds: 15 object(s) applied")
            < position(out, &format!("{PEER_AUTHENTICATION}: created")),
        "{out}"
    );
    let pa = env
        .get_json(&["peerauthentication", "-n", "istio-system", "default"])
        .expect("PeerAuthentication exists");
    assert_eq!(pa["spec"]["mtls"]["mode"], "STRICT");
    let crd = env
        .get_json(&["crd", "peerauthentications.security.istio.io"])
        .expect("CRD exists");
    let established = crd["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);

    let destroy = env.vz(&["destroy", "-f", cfg, "--auto-approve"]);
    destroy.expect_code(0);
    let out = &destroy.stderr;
    assert!(
        position(out, &format!("{PEER_AUTHENTICATION}: deleted"))
            < position(
                out,
                "istio.crds/CustomResourceDefinition/peerauthentications.security.istio.io: deleted"
            ),
        "{out}"
    );
    assert!(
        env.list_names(&["crd", "-l", "app.kubernetes.io/managed-by=vz"])
            .is_empty()
    );
}

#[test]
fn a_target_brings_in_the_crds_its_kind_needs() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let run = env.vz(&[
        "plan",
        "-f",
        cfg.to_str().expect("utf8"),
        "--target",
        PEER_AUTHENTICATION,
    ]);
    run.expect_code(0);
    run.expect_stdout(
        "  + istio.crds/CustomResourceDefinition/peerauthentications.security.istio.io\n",
    );
    assert!(
        run.stdout
            .contains("  + namespaces/Namespace/istio-system\n")
    );
    assert!(
        !run.stdout.contains("system-ingresses/"),
        "steps after the target are left out:\n{}",
        run.stdout
    );
}

/// A platform whose NGINX Service is a load balancer without a configured address.
const LOAD_BALANCER: &str = "environmentName: lb
ingress: {type: LoadBalancer}
components:
  istio: {enabled: false}
  keycloak: {enabled: false}
  prometheus: {enabled: false}
  certManager: {enabled: false}
state: {path: lb.vzstate.json}
";
const NGINX_NS: &str = "verrazzano-ingress-nginx";
const NGINX_SVC: &str = "ingress-controller-ingress-nginx-controller";

fn console_host(env: &TestEnv) -> Option<String> {
    env.get_json(&["ingress", "-n", "verrazzano-system", "verrazzano-ingress"])
        .and_then(|i| i["spec"]["rules"][0]["host"].as_str().map(str::to_string))
}

fn recorded_ingress_ip(env: &TestEnv) -> Option<String> {
    let text = std::fs::read_to_string(env.work.path().join("lb.vzstate.json")).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    state["objects"]
        .as_array()?
        .iter()
        .find(|o| o["kind"] == "Service" && o["name"] == NGINX_SVC)
        .and_then(|o| o["outputs"]["ingress-ip"].as_str().map(str::to_string))
}

/// Apply in the background and play the cloud's load-balancer controller once the Service exists.
fn apply_with_load_balancer(env: &TestEnv, cfg: &str, ip: &str) -> Run {
    run_with_load_balancer(
        env,
        &["apply", "-f", cfg, "--auto-approve", "--timeout", "2m"],
        ip,
    )
}

/// Run `vz args` in the background and set the NGINX Service's address once it exists.
fn run_with_load_balancer(env: &TestEnv, args: &[&str], ip: &str) -> Run {
    let child = env.spawn_vz(args);
    env.eventually(Duration::from_secs(60), "the NGINX Service", || {
        env.get_json(&["service", "-n", NGINX_NS, NGINX_SVC])
    });
    // The hosts wait for the address: nothing of the later step exists yet...
    assert_eq!(
        console_host(env),
        None,
        "Ingresses created before the address was known"
    );
    env.set_load_balancer_ip(NGINX_NS, NGINX_SVC, ip);
    let run = child.wait();
    // ...nor was any made since with a host to change later: each was created once, as it is.
    let ingresses = env
        .get_json(&["ingresses", "-A", "-l", "app.kubernetes.io/managed-by=vz"])
        .expect("a list");
    for i in ingresses["items"].as_array().expect("items") {
        assert_eq!(
            i["metadata"]["generation"], 1,
            "{} changed after it was created",
            i["metadata"]["name"]
        );
    }
    run
}

#[test]
fn a_load_balancer_address_is_known_after_apply_and_fills_in_the_hosts() {
    let env = TestEnv::start();
    let cfg = env.write_config("lb.yaml", LOAD_BALANCER);
    let cfg = cfg.to_str().expect("utf8");

    let plan = env.vz(&["plan", "-f", cfg]);
    plan.expect_code(0);
    plan.expect_stdout("  + system-ingresses/Ingress/verrazzano-system/verrazzano-ingress  # some values are (known after apply)\n");
    plan.expect_stdout("      + spec.rules[0].host: (known after apply)\n");
    let json = env.vz(&["plan", "-f", cfg, "--json"]);
    json.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON plan");
    let console = json["resource_changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["address"] == "system-ingresses/Ingress/verrazzano-system/verrazzano-ingress")
        .expect("console ingress");
    let host = console["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["path"] == "spec.rules[0].host")
        .expect("host field");
    assert_eq!(host["after_unknown"], true);
    assert_eq!(host["after"], serde_json::Value::Null, "no made-up value");
    assert_eq!(
        console["after"]["spec"]["rules"][0]["host"],
        serde_json::Value::Null
    );

    let run = apply_with_load_balancer(&env, cfg, "192.0.2.50");
    run.expect_code(0);
    assert_eq!(
        console_host(&env).as_deref(),
        Some("verrazzano.lb.192.0.2.50.nip.io")
    );
    let tls = env
        .get_json(&["ingress", "-n", "verrazzano-system", "verrazzano-ingress"])
        .expect("ingress");
    assert_eq!(
        tls["spec"]["tls"][0]["hosts"][0],
        "verrazzano.lb.192.0.2.50.nip.io"
    );
    assert_eq!(recorded_ingress_ip(&env).as_deref(), Some("192.0.2.50"));

    // Known now: nothing left to do, with or without reading the cluster.
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
    env.vz(&["plan", "-f", cfg, "--refresh=false", "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_new_load_balancer_address_updates_the_hosts() {
    let env = TestEnv::start();
    let cfg = env.write_config("lb.yaml", LOAD_BALANCER);
    let cfg = cfg.to_str().expect("utf8");
    apply_with_load_balancer(&env, cfg, "192.0.2.50").expect_code(0);

    env.set_load_balancer_ip(NGINX_NS, NGINX_SVC, "198.51.100.7");
    let plan = env.vz(&["plan", "-f", cfg, "--detailed-exitcode"]);
    plan.expect_code(2);
    plan.expect_stdout("  ~ system-ingresses/Ingress/verrazzano-system/verrazzano-ingress\n");
    plan.expect_stdout("verrazzano.lb.198.51.100.7.nip.io");
    plan.expect_stdout("  -/+ certificates.tls/Secret/verrazzano-system/verrazzano-tls  # certificate issued again: names change: [verrazzano.lb.192.0.2.50.nip.io] -> [verrazzano.lb.198.51.100.7.nip.io]");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    assert_eq!(
        console_host(&env).as_deref(),
        Some("verrazzano.lb.198.51.100.7.nip.io")
    );
    assert_eq!(recorded_ingress_ip(&env).as_deref(), Some("198.51.100.7"));
    // Its certificate followed the host, in the same apply.
    let pem = env.secret_text("verrazzano-system", "verrazzano-tls", "tls.crt");
    let info = vz_providers::pki::inspect(&pem).expect("a certificate");
    assert_eq!(info.sans, ["verrazzano.lb.198.51.100.7.nip.io"]);
}

#[test]
fn without_waiting_an_unknown_address_fails_and_rolls_back() {
    let env = TestEnv::start();
    let cfg = env.write_config("lb.yaml", LOAD_BALANCER);
    let run = env.vz(&[
        "apply",
        "-f",
        cfg.to_str().expect("utf8"),
        "--auto-approve",
        "--wait=false",
    ]);
    run.expect_code(exit::ROLLED_BACK);
    // The first object made of the address: the console's certificate (its Ingress comes after).
    run.expect_stderr("certificates.tls/Secret/verrazzano-system/verrazzano-tls needs values that are not known yet");
    run.expect_stderr("ingress-nginx.ingress-ip");
    run.expect_stderr("Rolled back every change of this run");
    assert!(env.get_json(&["namespace", "verrazzano-system"]).is_none());
}

#[test]
fn a_saved_plan_with_unknown_values_is_completed_by_apply() {
    let env = TestEnv::start();
    let cfg = env.write_config("lb.yaml", LOAD_BALANCER);
    let cfg = cfg.to_str().expect("utf8");
    let saved = env.work.path().join("lb.plan");
    let saved = saved.to_str().expect("utf8");
    env.vz(&["plan", "-f", cfg, "--out", saved]).expect_code(0);
    let run = run_with_load_balancer(&env, &["apply", saved], "192.0.2.77");
    run.expect_code(0);
    assert_eq!(
        console_host(&env).as_deref(),
        Some("verrazzano.lb.192.0.2.77.nip.io")
    );
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn istios_api_rejects_what_istios_own_crds_reject() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&[
        "apply",
        "-f",
        cfg,
        "--auto-approve",
        "--target",
        "istio.crds",
    ])
    .expect_code(0);
    let try_create = |name: &str, spec: &str| {
        let file = env.work.path().join(format!("{name}.json"));
        std::fs::write(
            &file,
            format!(
                r#"{{"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
                    "metadata": {{"name": "{name}", "namespace": "default"}}, "spec": {spec}}}"#
            ),
        )
        .expect("write");
        env.kubectl(&[
            "create",
            "--dry-run=server",
            "--validate=false",
            "-o",
            "json",
            "-f",
            file.to_str().expect("utf8"),
        ])
    };
    // A wrong type is refused, as with Istio's CRDs.
    let wrong = try_create("wrong-type", r#"{"mtls": {"mode": 3}}"#);
    assert!(!wrong.ok());
    wrong.expect_stderr("spec.mtls.mode");
    // A value outside the enum too.
    let bad = try_create("bad-mode", r#"{"mtls": {"mode": "STRICTER"}}"#);
    assert!(!bad.ok());
    bad.expect_stderr("STRICT");
    // A misspelt field never reaches the stored object.
    let typo = try_create("typo", r#"{"mtls": {"mdoe": "STRICT"}}"#);
    typo.expect_code(0);
    let stored: serde_json::Value = serde_json::from_str(&typo.stdout).expect("JSON");
    assert_eq!(stored["spec"], serde_json::json!({"mtls": {}}));
}

#[test]
fn apply_waits_for_the_nginx_deployments_and_a_pod_held_unready_times_out_and_rolls_back() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    env.set_node_sim("unready", &format!("{NGINX_NS}/{NGINX_SVC}-"));
    let run = env.vz(&["apply", "-f", cfg, "--auto-approve", "--timeout", "40s"]);
    run.expect_code(exit::ROLLED_BACK);
    assert!(
        run.stderr.contains(&format!(
            "timed out waiting for Deployment {NGINX_NS}/{NGINX_SVC} to be ready: waiting for 1 available replica(s) of the current generation and none of an older one (0 available"
        )) && run.stderr.contains(
            "; condition Available=False (MinimumReplicasUnavailable): Deployment does not have minimum availability."
        ),
        "{}",
        run.stderr
    );
    run.expect_stderr("Rolled back every change of this run");
    assert!(env.get_json(&["namespace", NGINX_NS]).is_none());

    // Once its pods become ready, the same apply goes through: the real controllers report the
    // Deployments available, and apply waited for them before the Ingresses that use NGINX.
    env.set_node_sim("unready", "");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    for name in [NGINX_SVC, "ingress-controller-ingress-nginx-defaultbackend"] {
        let d = env
            .get_json(&["deployment", "-n", NGINX_NS, name])
            .expect("deployment");
        assert_eq!(d["status"]["availableReplicas"], 1, "{name}");
    }
    let ep = env
        .get_json(&["endpoints", "-n", NGINX_NS, NGINX_SVC])
        .expect("endpoints");
    assert!(
        ep["subsets"][0]["addresses"][0]["ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.244.")),
        "the Service reaches the controller pod: {ep}"
    );
}
