//! The engine against a real API server, for objects `vz` only patches (`Ownership::Patched`):
//! the certificate steps will write `caBundle` into webhook configurations other operators create.
//! No provider patches anything yet, so these tests drive the engine directly with such a step.
//!
//! Each test starts its own control plane with `scripts/testenv` (as the integration tests do).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use vz_providers::{Manifest, Outputs, Step};
use vz_state::{LocalBackend, State, Store};

use crate::cluster::{Cluster, ConnectOptions};
use crate::engine::apply::{RunOptions, Session, apply, destroy};
use crate::engine::memory_tests::plan_options;
use crate::engine::plan::{Action, Cause, plan, plan_destroy};
use crate::engine::{Desired, graph_of};
use crate::interrupt::Interrupt;
use crate::output::Progress;

const VWC: &str = "other-operator-webhook";
/// "-----BEGIN CERTIFICATE-----\nvz\n-----END CERTIFICATE-----\n", base64: what the API server
/// stores for `caBundle` (it does not parse it).
const CA_BUNDLE: &str =
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCnZ6Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K";

/// A control plane for one test, stopped when dropped.
struct Plane {
    dir: tempfile::TempDir,
}

impl Plane {
    fn start() -> Plane {
        let dir = tempfile::Builder::new()
            .prefix("vz-engine-")
            .tempdir()
            .expect("temp dir");
        let out = Command::new(repo().join("scripts/testenv"))
            .arg("up")
            .arg(dir.path())
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("run scripts/testenv up");
        assert!(
            out.status.success(),
            "scripts/testenv up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Plane { dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vwc(&self) -> Value {
        let text = self.kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            VWC,
            "-o",
            "json",
            "--show-managed-fields",
        ]);
        serde_json::from_str(&text).expect("JSON")
    }

    /// The other operator creates its configuration: two webhooks, no CA bundle.
    fn create_vwc(&self) {
        let entry = |name: &str| {
            json!({
                "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "failurePolicy": "Ignore", "timeoutSeconds": 1,
                "clientConfig": {"url": format!("https://127.0.0.1:1/{name}")},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                           "resources": ["configmaps"]}],
            })
        };
        let obj = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": VWC},
            "webhooks": [entry("a.example.test"), entry("b.example.test")],
        });
        let file = self.dir.path().join("vwc.json");
        std::fs::write(&file, obj.to_string()).expect("write");
        self.kubectl(&[
            "create",
            "--field-manager=other-operator",
            "-f",
            file.to_str().expect("utf8"),
        ]);
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A platform whose only step writes the CA bundle of webhook `a.example.test`.
fn desired() -> Desired {
    let platform =
        vz_providers::config::parse(Path::new("t.yaml"), "environmentName: t\n").expect("config");
    let m = Manifest::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": VWC},
        "webhooks": [{"name": "a.example.test", "clientConfig": {"caBundle": CA_BUNDLE}}],
    }))
    .patched();
    let steps = vec![Step {
        id: "webhook-ca".into(),
        description: "the CA bundle of another operator's webhook".into(),
        depends_on: vec![],
        objects: vec![m],
        outputs: vec![],
    }];
    let graph = graph_of(&steps).expect("graph");
    Desired {
        platform,
        steps,
        graph,
    }
}

fn run_options(timeout: Duration) -> RunOptions {
    super::memory_tests::options(timeout, Interrupt::never())
}

async fn planned(cluster: &Cluster, desired: &Desired, state: &State) -> crate::engine::plan::Plan {
    plan(
        cluster,
        &desired.steps,
        &desired.graph,
        state,
        &plan_options(),
    )
    .await
    .expect("plan")
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["manager"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patched_object_gets_only_vzs_fields_and_is_given_back_not_deleted() {
    let plane = Plane::start();
    let cluster = Cluster::connect(&ConnectOptions {
        kubeconfig: Some(plane.kubeconfig()),
        context: None,
    })
    .await
    .expect("connect");
    let desired = desired();
    let store = Store::new(Box::new(LocalBackend::new(plane.dir.path().join("s.json"))));
    let progress = Progress::new();

    // Not there yet: pending. Apply leaves it for the first apply after its owner creates it,
    // and records nothing.
    let state = State::new("t", "test");
    let p = planned(&cluster, &desired, &state).await;
    assert_eq!(
        (p.changes[0].action, p.changes[0].cause),
        (Action::Update, Cause::AwaitOwner)
    );
    assert_eq!(p.pending(), 1);
    let opts = run_options(Duration::from_secs(2));
    let session = Session {
        cluster: &cluster,
        store: &store,
        opts: &opts,
        progress: &progress,
    };
    let after = apply(session, &p, &desired, Outputs::default(), state.clone())
        .await
        .expect("a pending object is no error");
    assert!(after.objects.is_empty(), "nothing recorded: {after:?}");

    // Once the owner made it, vz sets its one field and leaves the rest alone.
    plane.create_vwc();
    let before = plane.vwc();
    let p = planned(&cluster, &desired, &state).await;
    assert_eq!(
        (p.changes[0].action, p.changes[0].cause),
        (Action::Update, Cause::Config)
    );
    let fields: Vec<&str> = p.changes[0]
        .fields
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(fields, ["webhooks[0].clientConfig.caBundle"]);
    let opts = run_options(Duration::from_secs(60));
    let session = Session {
        cluster: &cluster,
        store: &store,
        opts: &opts,
        progress: &progress,
    };
    let state = apply(session, &p, &desired, Outputs::default(), state)
        .await
        .expect("apply");
    let after = plane.vwc();
    assert_eq!(after["webhooks"][0]["clientConfig"]["caBundle"], CA_BUNDLE);
    assert_eq!(
        after["webhooks"][0]["clientConfig"]["url"],
        before["webhooks"][0]["clientConfig"]["url"]
    );
    assert_eq!(
        after["webhooks"][1], before["webhooks"][1],
        "the other entry is untouched"
    );
    assert!(
        after["metadata"].get("labels").is_none(),
        "no vz labels on an object vz does not own"
    );
    let mut m = managers(&after);
    m.sort();
    assert_eq!(m, ["other-operator", "vz"]);
    let vz_fields = after["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == "vz"))
        .map(|e| e["fieldsV1"].to_string())
        .unwrap_or_default();
    assert!(
        vz_fields.contains("f:caBundle") && !vz_fields.contains("f:url"),
        "{vz_fields}"
    );
    assert!(state.objects[0].patched && !state.objects[0].adopted);

    // Nothing more to do.
    let p = planned(&cluster, &desired, &state).await;
    assert_eq!(p.changes[0].action, Action::NoOp);

    // Destroy gives the field back; the object stays, working, as its owner made it.
    let p = plan_destroy(&cluster, &state, &plan_options())
        .await
        .expect("plan");
    assert_eq!(p.changes[0].action, Action::Release);
    let state = destroy(session, &p, state).await.expect("destroy");
    assert!(state.objects.is_empty());
    let released = plane.vwc();
    assert!(!managers(&released).contains(&"vz".to_string()));
    assert_eq!(released["webhooks"][1], before["webhooks"][1]);
    assert_eq!(
        released["webhooks"][0]["clientConfig"]["url"],
        before["webhooks"][0]["clientConfig"]["url"]
    );
}
