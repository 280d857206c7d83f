//! Using vz as a new user would, off the happy path: destroy without waiting and apply again at
//! once, lose the state file, and let go of objects vz took over.

use serde_json::Value;

use crate::common::{QUICKSTART_OBJECTS, TestEnv, exit};

/// The kinds the quick start manages that exist in every cluster (the Istio kinds go with their CRDs).
const BUILTIN_KINDS: &str = "namespaces,networkpolicies,customresourcedefinitions,ingressclasses,services,ingresses,deployments,configmaps,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings";

fn managed(env: &TestEnv) -> Vec<String> {
    env.list_names(&[BUILTIN_KINDS, "-A", "-l", "app.kubernetes.io/managed-by=vz"])
}

/// How many watches of a single namespace the API server serves: `vz` waits for a namespace to
/// go (or be ready) with one; nothing of the plane itself watches one namespace.
fn namespace_watches(env: &TestEnv) -> u64 {
    let metrics = env.kubectl(&["get", "--raw", "/metrics"]);
    metrics.expect_code(0);
    metrics
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_requests{")
                && [
                    r#"resource="namespaces""#,
                    r#"scope="resource""#,
                    r#"verb="WATCH""#,
                ]
                .iter()
                .all(|label| l.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn apply_right_after_a_destroy_that_did_not_wait_creates_everything_again() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    env.hold_namespace("keycloak");
    env.vz(&["destroy", "-f", &cfg, "--auto-approve", "--wait=false"])
        .expect_code(0);
    // keycloak is still terminating: the plan says it comes back once it is gone.
    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_code(0);
    let note = "  + namespaces/Namespace/keycloak  # still being deleted; will be created again once it is gone\n";
    plan.expect_stdout(note);
    let child = env.spawn_vz(&["apply", "-f", &cfg, "--auto-approve"]);
    // Apply waits for the deletion to finish rather than applying to a dying namespace: it
    // watches the quick start's namespaces (one step, all in flight at once) until they are gone.
    env.eventually(
        std::time::Duration::from_secs(60),
        "the apply to wait for a namespace to go",
        || (namespace_watches(&env) > 0).then_some(()),
    );
    assert!(
        !child.said("namespaces/Namespace/keycloak:"),
        "applied to a dying namespace:\n{}",
        child.stderr()
    );
    let ns = env.get_json(&["namespace", "keycloak"]).expect("keycloak");
    assert!(
        ns["metadata"].get("deletionTimestamp").is_some(),
        "still going"
    );
    let dying = ns["metadata"]["uid"].clone();
    env.release_namespace_hold("keycloak");
    let run = child.wait();
    run.expect_code(0);
    assert!(
        run.stdout.contains(note),
        "apply saw it deleting: {}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "Apply complete! Objects: {QUICKSTART_OBJECTS} added"
        )),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let ns = env.get_json(&["namespace", "keycloak"]).expect("keycloak");
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(ns["metadata"].get("deletionTimestamp").is_none());
    assert_ne!(ns["metadata"]["uid"], dying, "a new namespace");
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_deletion_that_never_finishes_times_out_naming_what_holds_it_and_rolls_back() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    env.hold_namespace("keycloak");
    env.vz(&["destroy", "-f", &cfg, "--auto-approve", "--wait=false"])
        .expect_code(0);
    let run = env.vz(&["apply", "-f", &cfg, "--auto-approve", "--timeout", "15s"]);
    run.expect_code(exit::ROLLED_BACK);
    run.expect_stderr("Namespace keycloak was being deleted when planned: timed out waiting for Namespace keycloak to be deleted; it still has finalizers [kubernetes]");
    assert!(
        run.stderr.contains("vz.test/hold"),
        "says what holds it: {}",
        run.stderr
    );
    run.expect_stderr("hint: look at the object with kubectl, remove what blocks it");
    env.release_namespace_hold("keycloak");
}

#[test]
fn after_the_state_is_lost_objects_are_recovered_from_their_labels_and_destroy_removes_them() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let state = env.work.path().join("quickstart.vzstate.json");
    std::fs::remove_file(&state).expect("lose the state");

    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_code(0);
    plan.expect_stdout("  ~ namespaces/Namespace/keycloak  # recovered from labels: vz made it but the state did not record it\n");
    assert!(
        !plan.stdout.contains("not managed by vz"),
        "nothing is taken over: {}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!(
            "Plan: 0 to add, 0 to change, 0 to destroy. ({QUICKSTART_OBJECTS} to record again, recovered from labels)"
        )),
        "nothing in the cluster changes: {}",
        plan.stdout
    );
    let apply = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    apply.expect_code(0);
    apply.expect_stdout(&format!(
        "Apply complete! Objects: 0 added, 0 changed, 0 destroyed, {QUICKSTART_OBJECTS} recovered."
    ));
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("JSON");
    let objects = recorded["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), QUICKSTART_OBJECTS);
    assert!(
        objects.iter().all(|o| o.get("adopted").is_none()),
        "recovered objects are vz's own, not adopted"
    );

    let run = env.vz(&["destroy", "-f", &cfg, "--auto-approve"]);
    run.expect_code(0);
    run.expect_stdout(&format!(
        "Destroy complete! Objects: {QUICKSTART_OBJECTS} destroyed. "
    ));
    assert_eq!(managed(&env), Vec::<String>::new());
    for ns in ["keycloak", "verrazzano-system", "istio-system"] {
        assert!(env.get_json(&["namespace", ns]).is_none(), "{ns} is gone");
    }
}

/// A user's own Ingress, in a namespace of their own, with the name of a system Ingress.
const USER_INGRESS: &str = r#"{
  "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
  "metadata": {"name": "keycloak", "namespace": "keycloak", "labels": {"team": "identity"}},
  "spec": {"rules": [{"host": "login.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
    "backend": {"service": {"name": "keycloak-http", "port": {"number": 80}}}}]}}]}
}"#;

#[test]
fn releasing_a_taken_over_object_keeps_it_working_and_hands_its_fields_over() {
    let env = TestEnv::start();
    env.kubectl(&["create", "namespace", "keycloak"])
        .expect_code(0);
    let file = env.work.path().join("ingress.json");
    std::fs::write(&file, USER_INGRESS).expect("write");
    env.kubectl(&["create", "-f", file.to_str().expect("utf8")])
        .expect_code(0);
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let plan = env.vz(&["plan", "-f", cfg]);
    plan.expect_stdout("  ~ system-ingresses/Ingress/keycloak/keycloak  # exists but is not managed by vz; will be taken over\n");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);

    let run = env.vz(&["destroy", "-f", cfg, "--auto-approve"]);
    run.expect_code(0);
    run.expect_stderr("system-ingresses/Ingress/keycloak/keycloak: released");
    // Still there, still routing (vz's rules stay, owned by another manager now), without vz's
    // labels; the user's label is untouched.
    let ingress = env
        .get_json(&["ingress", "-n", "keycloak", "keycloak"])
        .expect("the Ingress is kept");
    let labels = &ingress["metadata"]["labels"];
    assert_eq!(labels["team"], "identity");
    assert!(
        labels.get("app.kubernetes.io/managed-by").is_none(),
        "{labels}"
    );
    assert!(labels.get("vz.dev/platform").is_none(), "{labels}");
    assert!(
        ingress["spec"]["rules"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{ingress}"
    );
    let managers: Vec<&str> = ingress["metadata"]["managedFields"]
        .as_array()
        .expect("managed fields")
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert!(!managers.contains(&"vz"), "{managers:?}");
    assert!(managers.contains(&"vz-released"), "{managers:?}");
    // The namespace existed before vz too: kept; the ones vz created are gone.
    assert!(env.get_json(&["namespace", "keycloak"]).is_some());
    for ns in ["verrazzano-system", "mysql-operator", "istio-system"] {
        assert!(env.get_json(&["namespace", ns]).is_none(), "{ns} is gone");
    }
}

#[test]
fn an_object_vz_took_over_is_released_not_deleted_even_after_the_state_is_lost() {
    let env = TestEnv::start();
    env.create_users_cert_manager();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    std::fs::remove_file(env.work.path().join("quickstart.vzstate.json")).expect("lose the state");

    let plan = env.vz(&["plan", "-f", cfg]);
    assert!(
        plan.stdout.contains(
            "  ~ namespaces/Namespace/cert-manager  # exists but is not managed by vz; will be taken over\n"
        ),
        "it existed before vz, whatever its labels say: {}",
        plan.stdout
    );
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["destroy", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let ns = env
        .get_json(&["namespace", "cert-manager"])
        .expect("the user's namespace is kept");
    assert!(ns["metadata"].get("deletionTimestamp").is_none());
    assert!(
        ns["metadata"]
            .pointer("/annotations/vz.dev~1adopted")
            .is_none(),
        "vz's mark goes with it: {ns}"
    );
    assert!(
        env.get_json(&["configmap", "-n", "cert-manager", "users-data"])
            .is_some()
    );
}
