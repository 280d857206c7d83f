//! Failure in the middle of an apply: rollback (the default), --no-rollback, timeouts and Ctrl-C.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{MANAGED_KINDS, TestEnv, exit};

/// The quick start with some components switched off: the platform before the failing run.
const BEFORE: &str = "environmentName: quickstart
ingress: {type: NodePort}
components:
  console: {enabled: false}
  certManager: {enabled: false}
  argoCD: {enabled: false}
state: {path: quickstart.vzstate.json}
";

/// The failing run: creates (console policy, argocd namespace, cert-manager policy; the cert-manager
/// namespace exists before, holding the platform CA) and updates (injection labels off on every
/// meshed namespace).
const AFTER: &str = "environmentName: quickstart
ingress: {type: NodePort}
components:
  istio: {injectionEnabled: false}
  console: {enabled: true}
  certManager: {enabled: true}
  argoCD: {enabled: true}
state: {path: quickstart.vzstate.json}
";

/// A webhook entry that refuses every NetworkPolicy created in verrazzano-system: its backend does
/// not exist and its failure policy is Fail.
const DENY_POLICIES: &str = r#"{
    "name": "deny.vz.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
    "failurePolicy": "Fail", "timeoutSeconds": 2,
    "clientConfig": {"url": "https://127.0.0.1:1/deny"},
    "rules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE"],
               "resources": ["networkpolicies"]}],
    "namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "verrazzano-system"}}
  }"#;

/// A webhook entry that refuses to delete any namespace of the platform: a rollback cannot remove
/// the namespaces the failed run created.
const KEEP_NAMESPACES: &str = r#"{
    "name": "keep-namespaces.vz.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
    "failurePolicy": "Fail", "timeoutSeconds": 2,
    "clientConfig": {"url": "https://127.0.0.1:1/keep"},
    "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"],
               "resources": ["namespaces"]}],
    "objectSelector": {"matchLabels": {"vz.dev/platform": "quickstart"}}
  }"#;

/// A ValidatingWebhookConfiguration with these entries.
fn webhooks(entries: &[&str]) -> String {
    format!(
        r#"{{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {{"name": "deny-verrazzano-system-policies"}}, "webhooks": [{}]}}"#,
        entries.join(",")
    )
}

const PROBE_POLICY: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "probe", "namespace": "verrazzano-system"}, "spec": {"podSelector": {}}}"#;

struct Setup {
    env: TestEnv,
    cfg: String,
}

impl Setup {
    /// A control plane with `BEFORE` applied, and the config file rewritten to `AFTER`.
    fn new() -> Setup {
        let env = TestEnv::start();
        let cfg = env.write_config("vz.yaml", BEFORE);
        let cfg = cfg.to_str().expect("utf8").to_string();
        env.vz(&["apply", "-f", &cfg, "--auto-approve"])
            .expect_code(0);
        std::fs::write(&cfg, AFTER).expect("write config");
        Setup { env, cfg }
    }

    fn state(&self) -> Value {
        let text = std::fs::read_to_string(self.env.work.path().join("quickstart.vzstate.json"))
            .expect("state");
        serde_json::from_str(&text).expect("JSON")
    }

    fn namespace(&self, name: &str) -> Option<Value> {
        self.env.get_json(&["namespace", name])
    }

    fn install_deny_webhook(&self) {
        self.install_webhook(&webhooks(&[DENY_POLICIES]));
    }

    fn install_webhook(&self, config: &str) {
        let file = self.env.work.path().join("webhook.json");
        std::fs::write(&file, config).expect("write");
        self.env
            .kubectl(&["create", "-f", file.to_str().expect("utf8")])
            .expect_code(0);
        self.await_probe(false, "the webhook to take effect");
    }

    /// The API server picks webhook configurations up (and drops them) asynchronously: wait until
    /// it admits a probe NetworkPolicy in verrazzano-system (a dry run), or refuses it.
    fn await_probe(&self, admitted: bool, what: &str) {
        let probe = self.env.work.path().join("probe.json");
        std::fs::write(&probe, PROBE_POLICY).expect("write");
        self.env.eventually(Duration::from_secs(30), what, || {
            let run = self.env.kubectl(&[
                "create",
                "--dry-run=server",
                "-f",
                probe.to_str().expect("utf8"),
            ]);
            (run.ok() == admitted).then_some(())
        });
    }

    /// Make namespace `name` exist but stay Terminating: a ConfigMap in it with a finalizer
    /// nobody removes holds it.
    fn stuck_terminating_namespace(&self, name: &str) {
        let env = &self.env;
        env.kubectl(&["create", "namespace", name]).expect_code(0);
        env.hold_namespace(name);
        env.kubectl(&["delete", "namespace", name, "--wait=false"])
            .expect_code(0);
        env.eventually(
            Duration::from_secs(30),
            &format!("namespace {name} to become Terminating"),
            || {
                let ns = self.namespace(name)?;
                (ns["status"]["phase"] == "Terminating").then_some(())
            },
        );
    }
}

/// The fields rollback must restore exactly.
fn labels_and_managers(ns: &Value) -> (Value, Value) {
    (
        ns["metadata"]["labels"].clone(),
        ns["metadata"]["managedFields"].clone(),
    )
}

#[test]
fn an_admission_webhook_denial_midway_rolls_back_every_change_of_the_run() {
    let s = Setup::new();
    let keycloak_before = labels_and_managers(&s.namespace("keycloak").expect("keycloak"));
    let state_before = s.state();
    s.install_deny_webhook();

    let run = s.env.vz(&["apply", "-f", &s.cfg, "--auto-approve"]);
    run.expect_code(exit::ROLLED_BACK);
    assert!(
        run.stderr
            .contains("NetworkPolicy verrazzano-system/verrazzano-console"),
        "names the object: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("deny.vz.test"),
        "says why: {}",
        run.stderr
    );
    run.expect_stderr("Rolled back every change of this run");

    // Created by the run: gone.
    assert!(s.namespace("argocd").is_none());
    assert!(
        s.env
            .get_json(&[
                "networkpolicy",
                "-n",
                "verrazzano-system",
                "verrazzano-console"
            ])
            .is_none()
    );
    // Updated by the run: back exactly, managed fields included.
    assert_eq!(
        labels_and_managers(&s.namespace("keycloak").expect("keycloak")),
        keycloak_before
    );
    // The state is as before (a later serial).
    let state_after = s.state();
    assert_eq!(state_after["objects"], state_before["objects"]);
    assert_eq!(state_after["lineage"], state_before["lineage"]);
    assert!(state_after["serial"].as_u64() > state_before["serial"].as_u64());
}

#[test]
fn no_rollback_keeps_partial_progress_and_the_state_records_exactly_it() {
    let s = Setup::new();
    s.install_deny_webhook();
    let run = s
        .env
        .vz(&["apply", "-f", &s.cfg, "--auto-approve", "--no-rollback"]);
    run.expect_code(exit::PARTIAL);
    run.expect_stderr(
        "Rollback is off: the changes made so far are kept, and the state records them",
    );
    assert!(s.namespace("argocd").is_some(), "kept");

    let mut recorded: Vec<String> = s.state()["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().expect("kind").to_lowercase();
            match o["namespace"].as_str() {
                Some(ns) => format!("{kind}/{ns}/{}", o["name"].as_str().expect("name")),
                None => format!("{kind}//{}", o["name"].as_str().expect("name")),
            }
        })
        .collect();
    recorded.sort();
    let listed = s.env.kubectl(&[
        "get",
        MANAGED_KINDS,
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=vz",
        "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
    ]);
    let mut live: Vec<String> = listed.stdout.lines().map(str::to_lowercase).collect();
    live.sort();
    assert_eq!(recorded, live, "the state records exactly what exists");

    // Once the cause is gone, apply finishes the job.
    s.env
        .kubectl(&[
            "delete",
            "validatingwebhookconfiguration",
            "deny-verrazzano-system-policies",
        ])
        .expect_code(0);
    s.await_probe(true, "the webhook to be gone");
    s.env
        .vz(&["apply", "-f", &s.cfg, "--auto-approve"])
        .expect_code(0);
    s.env
        .vz(&["plan", "-f", &s.cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_readiness_timeout_rolls_back_and_names_what_it_waited_for() {
    let s = Setup::new();
    // A load balancer nobody provisions: the Service never gets an address.
    std::fs::write(
        &s.cfg,
        AFTER.replace("ingress: {type: NodePort}", "ingress: {type: LoadBalancer}"),
    )
    .expect("write config");
    let state_before = s.state();
    let run = s
        .env
        .vz(&["apply", "-f", &s.cfg, "--auto-approve", "--timeout", "6s"]);
    run.expect_code(exit::ROLLED_BACK);
    run.expect_stderr("timed out waiting for Service verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller to be ready: waiting for a load balancer address");
    run.expect_stderr("\nhint: raise --timeout");
    run.expect_stderr("Rolled back every change of this run");
    assert!(
        s.namespace("argocd").is_none(),
        "created by the run, so deleted"
    );
    assert_eq!(s.state()["objects"], state_before["objects"]);
}

/// Send `signal` to an apply once it has created something; it must roll back.
fn interrupted_apply_rolls_back(signal: &str) {
    let s = Setup::new();
    s.stuck_terminating_namespace("argocd");
    let state_before = s.state();
    let child = s
        .env
        .spawn_vz(&["apply", "-f", &s.cfg, "--auto-approve", "--timeout", "5m"]);
    // Wait until the run has changed something and says so (it takes injection off the meshed
    // namespaces while it waits for argocd to finish deleting), then interrupt it.
    child.await_said(
        Duration::from_secs(60),
        "namespaces/Namespace/verrazzano-system: updated",
    );
    assert_eq!(injection(&s), None, "taken off");
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    let run = child.wait();
    run.expect_code(exit::ROLLED_BACK);
    run.expect_stderr("interrupted");
    run.expect_stderr("Rolled back every change of this run");
    assert_eq!(injection(&s).as_deref(), Some("enabled"), "put back");
    assert_eq!(s.state()["objects"], state_before["objects"]);
}

/// The `istio-injection` label of namespace verrazzano-system, which the failing run removes.
fn injection(s: &Setup) -> Option<String> {
    s.namespace("verrazzano-system")?["metadata"]["labels"]["istio-injection"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn ctrl_c_during_apply_rolls_back() {
    interrupted_apply_rolls_back("-INT");
}

#[test]
fn sigterm_during_apply_rolls_back() {
    interrupted_apply_rolls_back("-TERM");
}

#[test]
fn an_undo_that_fails_is_reported_and_the_state_keeps_track_of_the_object() {
    let s = Setup::new();
    let keycloak_before = labels_and_managers(&s.namespace("keycloak").expect("keycloak"));
    s.install_webhook(&webhooks(&[DENY_POLICIES, KEEP_NAMESPACES]));

    let run = s.env.vz(&["apply", "-f", &s.cfg, "--auto-approve"]);
    run.expect_code(exit::PARTIAL);
    run.expect_stderr("Rollback was incomplete");
    run.expect_stderr("  - could not delete Namespace argocd (created by this run): ");
    assert!(
        run.stderr.contains("keep-namespaces.vz.test"),
        "says why: {}",
        run.stderr
    );
    // What could be undone was undone.
    assert_eq!(
        labels_and_managers(&s.namespace("keycloak").expect("keycloak")),
        keycloak_before
    );
    // What could not be undone is still there, and the state records it.
    assert!(s.namespace("argocd").is_some());
    let recorded: Vec<String> = s.state()["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["address"].as_str().expect("address").to_string())
        .collect();
    assert!(
        recorded.contains(&"namespaces/Namespace/argocd".to_string()),
        "{recorded:?}"
    );
}
