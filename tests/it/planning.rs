//! Saved plans, JSON plans, targets, replacements, destroy plans, refresh and the graph.

use serde_json::Value;

use crate::common::{QUICKSTART_OBJECTS, TestEnv, exit, repo_root, vz_bare};

fn path_in(env: &TestEnv, name: &str) -> String {
    env.work
        .path()
        .join(name)
        .to_str()
        .expect("utf8")
        .to_string()
}

#[test]
fn a_saved_plan_is_applied_exactly_without_a_prompt() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let plan = path_in(&env, "plan.json");
    let made = env.vz(&["plan", "-f", cfg, "--out", &plan]);
    made.expect_code(0);
    made.expect_stdout(&format!("vz apply {plan}"));
    // No terminal, no --auto-approve: a saved plan needs no confirmation.
    let run = env.vz(&["apply", &plan]);
    run.expect_code(0);
    run.expect_stdout(&format!(
        "Apply complete! Objects: {QUICKSTART_OBJECTS} added"
    ));
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_saved_plan_is_refused_once_the_state_moved_on() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let plan = path_in(&env, "plan.json");
    env.vz(&["plan", "-f", cfg, "--out", &plan]).expect_code(0);
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let run = env.vz(&["apply", &plan]);
    run.expect_code(exit::STATE);
    let state = env.work.path().join("quickstart.vzstate.json");
    assert!(
        run.stderr.contains(&format!(
            "Error: the saved plan {plan} is stale: the state {} changed since it was made (serial 0 then, ",
            state.display()
        )),
        "{}",
        run.stderr
    );
    run.expect_stderr(&format!(
        "hint: make a new plan: `vz plan -f {cfg} --out {plan}`"
    ));
}

#[test]
fn an_object_created_by_someone_else_after_the_plan_is_taken_over_not_owned() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let plan = path_in(&env, "plan.json");
    env.vz(&["plan", "-f", cfg, "--out", &plan]).expect_code(0);
    // Between the plan (which found the namespace absent) and its apply, someone creates it.
    env.kubectl(&["create", "namespace", "keycloak"])
        .expect_code(0);
    let run = env.vz(&["apply", &plan]);
    run.expect_code(0);
    run.expect_stderr(
        "Namespace keycloak was created by someone else since the plan; vz took it over",
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(env.work.path().join("quickstart.vzstate.json")).expect("state"),
    )
    .expect("json");
    let adopted = state["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|r| r["kind"] == "Namespace" && r["name"] == "keycloak")
        .map(|r| r["adopted"].clone());
    assert_eq!(adopted, Some(Value::Bool(true)), "{state}");
    // Not vz's to delete: destroy gives it back.
    env.vz(&["destroy", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let ns = env
        .get_json(&["namespace", "keycloak"])
        .expect("the namespace is still there");
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        Value::Null
    );
}

#[test]
fn a_saved_plan_is_refused_once_the_configuration_changed() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(
        &cfg,
        text.replace("kiali: {enabled: true}", "kiali: {enabled: false}"),
    )
    .expect("write");
    let plan = path_in(&env, "plan.json");
    env.vz(&["plan", "-f", &cfg, "--out", &plan]).expect_code(0);
    std::fs::write(&cfg, text).expect("write back");
    let run = env.vz(&["apply", &plan]);
    run.expect_code(exit::STATE);
    run.expect_stderr(&format!(
        "Error: the saved plan {plan} is stale: the configuration {cfg} changed since it was made\n"
    ));
    assert!(
        env.get_json(&["networkpolicy", "-n", "verrazzano-system", "kiali"])
            .is_some(),
        "nothing was applied"
    );
}

#[test]
fn a_saved_destroy_plan_destroys() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let plan = path_in(&env, "destroy.json");
    env.vz(&["plan", "-f", &cfg, "--destroy", "--out", &plan])
        .expect_code(0);
    let run = env.vz(&["apply", &plan]);
    run.expect_code(0);
    run.expect_stdout(&format!(
        "Destroy complete! Objects: {QUICKSTART_OBJECTS} destroyed."
    ));
    assert!(env.get_json(&["namespace", "keycloak"]).is_none());
}

#[test]
fn the_json_plan_lists_every_change_with_its_actions() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    env.kubectl(&[
        "-n",
        "keycloak",
        "patch",
        "networkpolicy",
        "keycloak",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ingress/0/ports/0/port","value":1234}]"#,
    ])
    .expect_code(0);
    let run = env.vz(&["plan", "-f", &cfg, "--json"]);
    run.expect_code(0);
    let plan: Value = serde_json::from_str(&run.stdout).expect("stdout is JSON only");
    assert_eq!(plan["format_version"], "1.0");
    assert_eq!(
        plan["summary"],
        serde_json::json!({"add": 0, "change": 1, "destroy": 0, "release": 0, "recover": 0, "restart": 0})
    );
    let changes = plan["resource_changes"].as_array().expect("changes");
    assert_eq!(changes.len(), QUICKSTART_OBJECTS, "no-ops are listed too");
    let c = changes
        .iter()
        .find(|c| c["address"] == "network-policies/NetworkPolicy/keycloak/keycloak")
        .expect("the drifted policy");
    assert_eq!(c["actions"], serde_json::json!(["update"]));
    assert_eq!(c["kind"], "NetworkPolicy");
    assert_eq!(c["namespace"], "keycloak");
    assert_eq!(c["before"]["spec"]["ingress"][0]["ports"][0]["port"], 1234);
    assert_eq!(c["after"]["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert_eq!(plan["resource_drift"][0]["address"], c["address"]);
}

#[test]
fn a_target_limits_the_plan_to_it_and_what_it_depends_on() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let target = "network-policies/NetworkPolicy/keycloak/keycloak";
    let run = env.vz(&["plan", "-f", cfg, "--target", target]);
    run.expect_code(0);
    // The policy, plus every namespace (its step depends on the namespaces step); no other policy.
    run.expect_stdout("Plan: 10 to add, 0 to change, 0 to destroy.");
    assert!(run.stdout.contains(&format!("  + {target}\n")));
    env.vz(&["apply", "-f", cfg, "--target", target, "--auto-approve"])
        .expect_code(0);
    assert!(
        env.get_json(&["networkpolicy", "-n", "keycloak", "keycloak"])
            .is_some()
    );
    assert!(
        env.get_json(&["networkpolicy", "-n", "keycloak", "allow-same-namespace"])
            .is_none()
    );

    let bad = env.vz(&["plan", "-f", cfg, "--target", "nope/Kind/x"]);
    bad.expect_code(exit::USAGE);
    bad.expect_stderr("Error: no step or object has the address `nope/Kind/x` (a target)\nhint: `vz render` and `vz state list` show the addresses");
}

#[test]
fn replace_deletes_and_creates_the_object_again() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let address = "network-policies/NetworkPolicy/keycloak/keycloak";
    let uid = |env: &TestEnv| {
        env.get_json(&["networkpolicy", "-n", "keycloak", "keycloak"])
            .expect("policy")["metadata"]["uid"]
            .clone()
    };
    let before = uid(&env);
    let plan = env.vz(&["plan", "-f", &cfg, "--replace", address]);
    plan.expect_code(0);
    plan.expect_stdout(&format!("  -/+ {address}  # replacement requested"));
    plan.expect_stdout("Plan: 1 to add, 0 to change, 1 to destroy.");
    env.vz(&["apply", "-f", &cfg, "--replace", address, "--auto-approve"])
        .expect_code(0);
    let after = uid(&env);
    assert_ne!(before, after, "a new object");
    let shown = env.vz(&["state", "show", "-f", &cfg, address]);
    let record: Value = serde_json::from_str(&shown.stdout).expect("record");
    assert_eq!(record["uid"], after, "the state follows the new object");
}

#[test]
fn an_immutable_field_forces_a_replacement_that_names_it() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    // Someone re-creates the default backend's Deployment with another pod selector, which cannot
    // be changed in place.
    let backend = "ingress-controller-ingress-nginx-defaultbackend";
    env.kubectl(&[
        "-n",
        "verrazzano-ingress-nginx",
        "delete",
        "deployment",
        backend,
    ])
    .expect_code(0);
    env.kubectl(&[
        "-n",
        "verrazzano-ingress-nginx",
        "create",
        "deployment",
        backend,
        "--image=example.test/other:1",
    ])
    .expect_code(0);
    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_code(0);
    plan.expect_stdout(&format!(
            "  -/+ ingress-nginx/Deployment/verrazzano-ingress-nginx/{backend}  # exists but is not managed by vz, and spec.selector cannot change in place: it will be deleted and created again\n"
        ));
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    let d = env
        .get_json(&["deployment", "-n", "verrazzano-ingress-nginx", backend])
        .expect("deployment");
    assert_eq!(
        d["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "vz"
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_destroy_plan_lists_every_recorded_object_and_changes_nothing() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let run = env.vz(&["plan", "-f", &cfg, "--destroy", "--detailed-exitcode"]);
    run.expect_code(2);
    run.expect_stdout("vz will destroy these objects:");
    run.expect_stdout(&format!(
        "Plan: 0 to add, 0 to change, {QUICKSTART_OBJECTS} to destroy."
    ));
    assert!(env.get_json(&["namespace", "keycloak"]).is_some());
}

#[test]
fn without_refresh_the_plan_compares_with_the_state_only() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    env.kubectl(&["-n", "keycloak", "delete", "networkpolicy", "keycloak"])
        .expect_code(0);
    let run = env.vz(&["plan", "-f", &cfg, "--refresh=false", "--detailed-exitcode"]);
    run.expect_code(0);
    run.expect_stdout("--refresh=false");
    run.expect_stdout("No changes.");
    let refreshed = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    refreshed.expect_code(2);
}

#[test]
fn the_state_holds_hashes_not_object_content_and_only_its_owner_reads_it() {
    use std::os::unix::fs::PermissionsExt;
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let path = env.work.path().join("quickstart.vzstate.json");
    let text = std::fs::read_to_string(&path).expect("state");
    assert!(!text.contains("\"spec\""), "no manifests in the state");
    assert!(!text.contains("podSelector"));
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    // Copied in by hand, readable by all: the user is told.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = env.vz(&["plan", "-f", &cfg, "--refresh=false"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains(&format!(
            "Warning: the state file {} may be read by others (mode 0644)",
            path.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn the_graph_is_dot_with_namespaces_before_policies() {
    let cfg = repo_root().join("examples/quickstart.yaml");
    let run = vz_bare(&["graph", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(0);
    assert!(run.stdout.starts_with("digraph vz {"), "{}", run.stdout);
    run.expect_stdout("\"namespaces\" -> \"network-policies\";");
    run.expect_stdout("(23 objects)");
}

#[test]
fn plans_are_coloured_only_when_asked_and_never_with_no_color() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let piped = env.vz(&["plan", "-f", cfg]);
    piped.expect_code(0);
    piped.expect_stdout("  + namespaces/Namespace/keycloak");
    assert!(!piped.stdout.contains('\x1b'), "no colour into a pipe");
    let forced = env.vz_with_env(&[("CLICOLOR_FORCE", "1")], &["plan", "-f", cfg]);
    forced.expect_code(0);
    assert!(
        forced
            .stdout
            .contains("\x1b[32m  + namespaces/Namespace/keycloak"),
        "creates are green: {:?}",
        forced.stdout
    );
    let no_color = env.vz_with_env(
        &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")],
        &["plan", "-f", cfg],
    );
    no_color.expect_code(0);
    assert!(
        no_color
            .stdout
            .contains("  + namespaces/Namespace/keycloak"),
        "{}",
        no_color.stdout
    );
    assert!(
        !no_color.stdout.contains('\x1b'),
        "NO_COLOR wins: {:?}",
        no_color.stdout
    );
}
