//! plan → apply → plan → drift → apply → destroy, each step against a real control plane.

use serde_json::Value;

use crate::common::{
    ISTIOD, MANAGED_KINDS, QUICKSTART_OBJECTS, TestEnv, drift_authproxy_port, exit, repo_root,
};

/// System namespaces the quick start creates.
const QUICKSTART_NAMESPACES: &[&str] = &[
    "verrazzano-install",
    "verrazzano-system",
    "verrazzano-monitoring",
    "verrazzano-ingress-nginx",
    "istio-system",
    "cert-manager",
    "keycloak",
    "mysql-operator",
    "cattle-system",
];

/// A control plane with the quick start applied.
fn state_of(env: &TestEnv) -> Value {
    let text = std::fs::read_to_string(env.work.path().join("quickstart.vzstate.json"))
        .expect("state file written next to the config");
    serde_json::from_str(&text).expect("state is JSON")
}

#[test]
fn plan_on_an_empty_cluster_lists_every_object_to_add() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let run = env.vz(&[
        "plan",
        "-f",
        cfg.to_str().expect("utf8"),
        "--detailed-exitcode",
    ]);
    run.expect_code(2);
    run.expect_stdout(&format!(
        "Plan: {QUICKSTART_OBJECTS} to add, 0 to change, 0 to destroy."
    ));
    assert!(run.stdout.contains("  + namespaces/Namespace/keycloak\n"));
    assert!(
        run.stdout.contains(
            "  + network-policies/NetworkPolicy/verrazzano-system/verrazzano-authproxy\n"
        )
    );
    // Planning changes nothing.
    assert!(env.get_json(&["namespace", "keycloak"]).is_none());
    assert!(!env.work.path().join("quickstart.vzstate.json").exists());
}

#[test]
fn apply_creates_labelled_namespaces_and_policies_and_records_them() {
    let (env, _) = TestEnv::with_quickstart_applied();
    for ns in QUICKSTART_NAMESPACES {
        let live = env.get_json(&["namespace", ns]).expect("namespace exists");
        let labels = &live["metadata"]["labels"];
        assert_eq!(labels["verrazzano.io/namespace"], *ns);
        assert_eq!(labels["app.kubernetes.io/managed-by"], "vz");
        assert_eq!(labels["vz.dev/platform"], "quickstart");
    }
    let keycloak = env.get_json(&["namespace", "keycloak"]).expect("keycloak");
    assert_eq!(keycloak["metadata"]["labels"]["istio-injection"], "enabled");
    let istio = env
        .get_json(&["namespace", "istio-system"])
        .expect("istio-system");
    assert!(istio["metadata"]["labels"].get("istio-injection").is_none());

    let proxy = env
        .get_json(&[
            "networkpolicy",
            "-n",
            "verrazzano-system",
            "verrazzano-authproxy",
        ])
        .expect("authproxy policy");
    assert_eq!(proxy["spec"]["ingress"][0]["ports"][0]["port"], 8775);
    let managers: Vec<&str> = proxy["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["vz"], "applied server-side as field manager vz");

    let all = env.list_names(&[
        "networkpolicies",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=vz",
    ]);
    assert_eq!(all.len(), 23, "{all:?}");

    let state = state_of(&env);
    assert_eq!(state["version"], 1);
    assert_eq!(state["platform"], "quickstart");
    assert!(state["serial"].as_u64().expect("serial") >= 1);
    assert!(
        state["checksum"]
            .as_str()
            .expect("checksum")
            .starts_with("sha256:")
    );
    let objects = state["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), QUICKSTART_OBJECTS);
    let rec = objects
        .iter()
        .find(|o| {
            o["address"] == "network-policies/NetworkPolicy/verrazzano-system/verrazzano-authproxy"
        })
        .expect("recorded");
    assert_eq!(rec["uid"], proxy["metadata"]["uid"]);
    assert_eq!(rec["manifest_sha256"].as_str().expect("hash").len(), 64);
}

#[test]
fn plan_after_apply_reports_no_changes() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let run = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    run.expect_code(0);
    run.expect_stdout("No changes.");
}

#[test]
fn a_policy_edited_with_kubectl_is_reported_as_drift_with_the_field() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    drift_authproxy_port(&env);
    let run = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    run.expect_code(2);
    run.expect_stdout("  ~ network-policies/NetworkPolicy/verrazzano-system/verrazzano-authproxy  # changed outside vz");
    run.expect_stdout("~ spec.ingress[0].ports[0].port: 9999 -> 8775");
    assert!(
        run.stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy.")
    );
}

#[test]
fn apply_restores_a_drifted_policy_and_namespace_label() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    drift_authproxy_port(&env);
    env.kubectl(&["label", "namespace", "keycloak", "istio-injection-"])
        .expect_code(0);
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    let proxy = env
        .get_json(&[
            "networkpolicy",
            "-n",
            "verrazzano-system",
            "verrazzano-authproxy",
        ])
        .expect("policy");
    assert_eq!(proxy["spec"]["ingress"][0]["ports"][0]["port"], 8775);
    let keycloak = env.get_json(&["namespace", "keycloak"]).expect("keycloak");
    assert_eq!(keycloak["metadata"]["labels"]["istio-injection"], "enabled");
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn an_object_deleted_outside_vz_is_created_again() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    env.kubectl(&["-n", "keycloak", "delete", "networkpolicy", "keycloak"])
        .expect_code(0);
    let run = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    run.expect_code(2);
    run.expect_stdout("  + network-policies/NetworkPolicy/keycloak/keycloak  # deleted outside vz");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert!(
        env.get_json(&["networkpolicy", "-n", "keycloak", "keycloak"])
            .is_some()
    );
}

#[test]
fn disabling_a_component_deletes_its_objects_and_namespaces() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let text = std::fs::read_to_string(&cfg).expect("read config");
    let edited = text.replace("keycloak: {enabled: true}", "keycloak: {enabled: false}");
    assert_ne!(text, edited, "the quick start enables keycloak");
    std::fs::write(&cfg, edited).expect("write config");

    let run = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    run.expect_code(2);
    run.expect_stdout("  - namespaces/Namespace/keycloak\n");
    assert!(
        run.stdout
            .contains("  - network-policies/NetworkPolicy/keycloak/keycloak\n")
    );
    run.expect_stdout("  - system-ingresses/Ingress/keycloak/keycloak\n");
    assert!(
        run.stdout
            .contains("  - certificates.tls/Secret/keycloak/keycloak-tls\n"),
        "its TLS certificate goes too: {}",
        run.stdout
    );
    run.expect_stdout("Plan: 0 to add, 0 to change, 7 to destroy.");

    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert!(env.get_json(&["namespace", "keycloak"]).is_none());
    assert!(env.get_json(&["namespace", "mysql-operator"]).is_none());
    assert_eq!(
        state_of(&env)["objects"].as_array().expect("objects").len(),
        QUICKSTART_OBJECTS - 7
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn destroy_leaves_no_managed_object_and_no_system_namespace() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let run = env.vz(&["destroy", "-f", &cfg, "--auto-approve"]);
    run.expect_code(0);
    run.expect_stdout(&format!(
        "Destroy complete! Objects: {QUICKSTART_OBJECTS} destroyed."
    ));
    for ns in QUICKSTART_NAMESPACES {
        assert!(
            env.get_json(&["namespace", ns]).is_none(),
            "namespace {ns} still exists (destroy must wait until namespaces are gone)"
        );
    }
    let left = env.list_names(&[
        "networkpolicies,namespaces",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=vz",
    ]);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(
        state_of(&env)["objects"].as_array().expect("objects").len(),
        0
    );

    let again = env.vz(&["destroy", "-f", &cfg, "--auto-approve"]);
    again.expect_code(0);
    again.expect_stdout("Nothing to destroy");
}

#[test]
fn apply_without_a_terminal_or_auto_approve_refuses_and_changes_nothing() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let run = env.vz(&["apply", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(exit::OTHER);
    run.expect_stderr("--auto-approve");
    assert!(env.get_json(&["namespace", "keycloak"]).is_none());
    assert!(!env.work.path().join("quickstart.vzstate.json").exists());
}

#[test]
fn an_existing_namespace_is_shown_as_taken_over() {
    let env = TestEnv::start();
    let cfg = env.write_config(
        "small.yaml",
        "environmentName: small\ncomponents:\n  istio: {enabled: false}\n",
    );
    env.kubectl(&["create", "namespace", "verrazzano-system"])
        .expect_code(0);
    let run = env.vz(&[
        "plan",
        "-f",
        cfg.to_str().expect("utf8"),
        "--detailed-exitcode",
    ]);
    run.expect_code(2);
    run.expect_stdout("  ~ namespaces/Namespace/verrazzano-system  # exists but is not managed by vz; will be taken over");
    run.expect_stdout("      + metadata.labels[\"app.kubernetes.io/managed-by\"]: \"vz\"\n");
}

#[test]
fn rendered_yaml_applies_cleanly_with_kubectl() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let render = env.vz(&["render", "-f", cfg.to_str().expect("utf8")]);
    render.expect_code(0);
    let file = env.work.path().join("rendered.yaml");
    std::fs::write(&file, &render.stdout).expect("write");
    let file = file.to_str().expect("utf8");
    // kubectl resolves every kind before the CRDs it creates are served, so objects of those kinds
    // need a second pass (vz waits for the CRDs instead).
    let first = env.kubectl(&["apply", "--server-side", "-f", file]);
    if first.code != 0 {
        first.expect_stderr("ensure CRDs are installed first");
        // ...and, like any kubectl user, must wait for what admits those objects: istiod's
        // validating webhook, once istiod runs and has written its CA into it.
        env.kubectl(&[
            "-n",
            "istio-system",
            "wait",
            "--for=condition=Available",
            &format!("deployment/{ISTIOD}"),
            "--timeout=120s",
        ])
        .expect_code(0);
        let mut last = None;
        env.eventually(
            std::time::Duration::from_secs(60),
            "the second pass of kubectl apply",
            || {
                let second = env.kubectl(&["apply", "--server-side", "-f", file]);
                let done = second.ok() || !second.stderr.contains("failed calling webhook");
                last = Some(second);
                done.then_some(())
            },
        );
        last.expect("a second pass").expect_code(0);
    }
    let managed = env.list_names(&[MANAGED_KINDS, "-A", "-l", "vz.dev/platform=quickstart"]);
    // Certificates and the CA bundle are made by apply, not rendered.
    let made_by_apply = render.stdout.matches("# not rendered: ").count();
    assert_eq!(made_by_apply, 12, "{}", render.stdout);
    assert_eq!(
        managed.len(),
        QUICKSTART_OBJECTS - made_by_apply,
        "{managed:?}"
    );
}

#[test]
fn destroy_releases_a_namespace_that_existed_before_vz_instead_of_deleting_it() {
    let env = TestEnv::start();
    env.create_users_cert_manager();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let adopted = env
        .get_json(&["namespace", "cert-manager"])
        .expect("namespace");
    assert_eq!(
        adopted["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "vz"
    );

    let plan = env.vz(&["plan", "-f", cfg, "--destroy"]);
    plan.expect_stdout("  - namespaces/Namespace/cert-manager  # not created by vz: released");
    assert!(
        plan.stdout.contains(&format!(
            "Plan: 0 to add, 0 to change, {} to destroy. (1 to release, not delete)",
            QUICKSTART_OBJECTS - 1
        )),
        "{}",
        plan.stdout
    );
    let run = env.vz(&["destroy", "-f", cfg, "--auto-approve"]);
    run.expect_code(0);
    run.expect_stdout(&format!("{} destroyed, 1 released", QUICKSTART_OBJECTS - 1));

    let kept = env
        .get_json(&["namespace", "cert-manager"])
        .expect("still there");
    assert!(
        kept["metadata"]["deletionTimestamp"].is_null(),
        "not being deleted"
    );
    let labels = &kept["metadata"]["labels"];
    assert!(
        labels.get("app.kubernetes.io/managed-by").is_none(),
        "vz's labels are gone: {labels}"
    );
    assert!(labels.get("vz.dev/platform").is_none(), "{labels}");
    assert!(
        env.get_json(&["configmap", "-n", "cert-manager", "users-data"])
            .is_some()
    );
    assert!(
        env.get_json(&["namespace", "keycloak"]).is_none(),
        "vz's own namespaces are deleted"
    );
    assert_eq!(
        state_of(&env)["objects"].as_array().expect("objects").len(),
        0
    );
}

#[test]
fn objects_of_another_platform_are_not_taken_over() {
    let (env, _) = TestEnv::with_quickstart_applied();
    let other = env.write_config("other.yaml", "environmentName: other\n");
    let run = env.vz(&["plan", "-f", other.to_str().expect("utf8")]);
    run.expect_code(exit::STATE);
    run.expect_stderr("is managed by another vz platform, `quickstart`");
    assert!(!env.work.path().join("other.vzstate.json").exists());
}

/// The control plane's minor version (36 for 1.36).
fn server_minor(env: &TestEnv) -> u32 {
    let run = env.kubectl(&["get", "--raw", "/version"]);
    run.expect_code(0);
    let info: Value = serde_json::from_str(&run.stdout).expect("JSON");
    info["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .expect("a minor version")
}

#[test]
fn what_the_api_server_warns_of_is_said_with_the_objects_and_istios_crds_draw_no_warning() {
    let env = TestEnv::start();
    let text =
        std::fs::read_to_string(repo_root().join("examples/quickstart.yaml")).expect("quickstart");
    let cfg = env.write_config(
        "quickstart.yaml",
        &text.replace(
            "ingress:\n  type: NodePort\n",
            "ingress:\n  type: NodePort\n  externalIPs: [192.0.2.10]\n",
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    let run = env.vz(&["apply", "-f", cfg, "--auto-approve"]);
    run.expect_code(0);
    // Kubernetes 1.36 deprecates a Service's externalIPs: the API server says so when NGINX's
    // Service is written, and so does vz, once.
    let deprecated = "Warning: the API server says of services verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller: spec.externalIPs is deprecated";
    if server_minor(&env) >= 36 {
        assert_eq!(run.stderr.matches(deprecated).count(), 1, "{}", run.stderr);
    }
    // Istio's CRDs as vz writes them have nothing the API server does not understand.
    assert!(
        !run.stderr.contains("unrecognized format"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("customresourcedefinitions"),
        "{}",
        run.stderr
    );
}
