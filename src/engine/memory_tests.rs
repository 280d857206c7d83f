//! The engine's decisions on the in-memory cluster ([`crate::cluster::memory`]): planning,
//! ordering, apply, partial failure and rollback of creates, updates and deletes, interrupts,
//! conflicts, waits and destroy, without an API server. The end-to-end tests (tests/it) check the
//! same paths against a real one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use vz_providers::manifest::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLATFORM_LABEL};
use vz_providers::{Manifest, Outputs, Step};
use vz_state::{LocalBackend, State, Store};

use crate::cluster::api::{ClusterApi, Failure};
use crate::cluster::memory::{MemoryCluster, Op};
use crate::cluster::{Cluster, ObjectRef};
use crate::engine::apply::{ApplyFailed, RunOptions, Session, apply, destroy};
use crate::engine::plan::{Action, Cause, Change, Plan, PlanOptions, plan, plan_destroy};
use crate::engine::{Desired, graph_of};
use crate::interrupt::Interrupt;
use crate::output::Progress;

const PLATFORM: &str = "t";

/// An in-memory cluster, a state file, and the knobs of a run.
struct Bench {
    mem: Arc<MemoryCluster>,
    cluster: Cluster,
    store: Store,
    progress: Progress,
    opts: RunOptions,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let mem = Arc::new(MemoryCluster::new());
        let cluster = Cluster::over(mem.clone() as Arc<dyn ClusterApi>, None);
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Box::new(LocalBackend::new(dir.path().join("s.json"))));
        Bench {
            mem,
            cluster,
            store,
            progress: Progress::new(),
            opts: options(Duration::from_secs(5), Interrupt::never()),
            _dir: dir,
        }
    }

    fn session(&self) -> Session<'_> {
        Session {
            cluster: &self.cluster,
            store: &self.store,
            opts: &self.opts,
            progress: &self.progress,
        }
    }

    async fn plan(&self, d: &Desired, state: &State) -> Plan {
        plan(&self.cluster, &d.steps, &d.graph, state, &plan_options())
            .await
            .expect("plan")
    }

    async fn apply(&self, d: &Desired, state: State) -> anyhow::Result<State> {
        let p = self.plan(d, &state).await;
        apply(self.session(), &p, d, Outputs::default(), state).await
    }

    async fn destroy(&self, state: State) -> anyhow::Result<State> {
        let p = plan_destroy(&self.cluster, &state, &plan_options())
            .await
            .expect("plan");
        destroy(self.session(), &p, state).await
    }
}

/// A run's knobs: 4 in flight, waiting, rolling back.
pub(super) fn options(timeout: Duration, interrupt: Interrupt) -> RunOptions {
    RunOptions {
        leave_dns_records: false,
        parallelism: 4,
        timeout,
        wait: true,
        rollback: true,
        interrupt,
    }
}

/// A plan's knobs: everything read again, 4 in flight.
pub(super) fn plan_options() -> PlanOptions {
    PlanOptions {
        apps: Vec::new(),
        parallelism: 4,
        refresh: true,
        targets: vec![],
        replace: vec![],
        views: true,
        kinds: std::collections::BTreeSet::new(),
    }
}

/// An object `vz` owns, labelled as the providers label theirs.
fn owned(body: Value) -> Manifest {
    let mut m = Manifest::from_value(body);
    m.set_label(MANAGED_BY_LABEL, MANAGED_BY_VALUE);
    m.set_label(PLATFORM_LABEL, PLATFORM);
    m
}

fn namespace(name: &str) -> Manifest {
    owned(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
}

fn config_map(ns: &str, name: &str, data: Value) -> Manifest {
    owned(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns}, "data": data}))
}

fn deployment(ns: &str, name: &str) -> Manifest {
    owned(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "example/c:1"}]}}}}))
}

fn crd() -> Manifest {
    owned(
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}}),
    )
}

fn widget(ns: &str, name: &str) -> Manifest {
    owned(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name, "namespace": ns}, "spec": {"size": 1}}))
}

fn step(id: &str, depends_on: &[&str], objects: Vec<Manifest>) -> Step {
    Step {
        id: id.into(),
        description: id.into(),
        depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
        objects,
        outputs: vec![],
    }
}

fn desired(steps: Vec<Step>) -> Desired {
    let platform = vz_providers::config::parse(
        Path::new("t.yaml"),
        &format!("environmentName: {PLATFORM}\n"),
    )
    .expect("config");
    let graph = graph_of(&steps).expect("graph");
    Desired {
        platform,
        steps,
        graph,
    }
}

/// A namespace, a CRD, and objects in both steps that need them.
fn platform(data: Value) -> Desired {
    desired(vec![
        step(
            "base",
            &[],
            vec![config_map("a", "settings", data), namespace("a"), crd()],
        ),
        step(
            "app",
            &["base"],
            vec![widget("a", "w"), deployment("a", "web")],
        ),
    ])
}

fn state() -> State {
    State::new(PLATFORM, "test")
}

fn r(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: ns.map(str::to_string),
        name: name.into(),
    }
}

fn settings() -> ObjectRef {
    r("v1", "ConfigMap", Some("a"), "settings")
}

fn actions(p: &Plan) -> Vec<(String, Action)> {
    p.changes
        .iter()
        .map(|c| (c.object.to_string(), c.action))
        .collect()
}

/// The plan's entry for `r`.
fn change<'a>(p: &'a Plan, r: &ObjectRef) -> &'a Change {
    p.changes
        .iter()
        .find(|c| c.object == *r)
        .unwrap_or_else(|| panic!("{r} is not in the plan: {:?}", actions(p)))
}

/// The quick platform applied: the bench, what it applied, and the state.
async fn applied() -> (Bench, Desired, State) {
    let b = Bench::new();
    let d = platform(json!({"a": "1"}));
    let s = b.apply(&d, state()).await.expect("apply");
    (b, d, s)
}

fn position(list: &[String], what: &str) -> usize {
    list.iter()
        .position(|l| l == what)
        .unwrap_or_else(|| panic!("{what} not in {list:#?}"))
}

fn failed(e: &anyhow::Error) -> &ApplyFailed {
    e.downcast_ref::<ApplyFailed>()
        .unwrap_or_else(|| panic!("not an apply failure: {e:#}"))
}

#[tokio::test]
async fn a_fresh_platform_is_planned_as_creates_and_applied_in_dependency_order() {
    let b = Bench::new();
    let d = platform(json!({"a": "1"}));
    let p = b.plan(&d, &state()).await;
    assert!(
        p.changes.iter().all(|c| c.action == Action::Create),
        "{:?}",
        actions(&p)
    );
    assert_eq!(p.changes.len(), 5);
    let s = b.apply(&d, state()).await.expect("apply");
    assert_eq!(s.objects.len(), 5);
    let writes = b.mem.writes();
    // Within a step the namespace comes before what lives in it; across steps, the CRD before
    // the objects of its kind.
    assert!(
        position(&writes, "apply Namespace a") < position(&writes, "apply ConfigMap a/settings")
    );
    assert!(
        position(
            &writes,
            "apply CustomResourceDefinition widgets.example.com"
        ) < position(&writes, "apply Widget a/w")
    );
    assert_eq!(writes.len(), 5, "one write per object: {writes:#?}");
    let recorded = s.get("base/ConfigMap/a/settings").expect("recorded");
    assert_eq!(
        Some(recorded.uid.clone()),
        b.mem
            .object(&settings())
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string))
    );
}

#[tokio::test]
async fn a_second_plan_has_nothing_to_do_and_a_second_apply_writes_nothing() {
    let (b, d, s) = applied().await;
    let p = b.plan(&d, &s).await;
    assert!(!p.has_changes(), "{:?}", actions(&p));
    let before = b.mem.writes().len();
    b.apply(&d, s).await.expect("apply");
    assert_eq!(b.mem.writes().len(), before, "{:#?}", b.mem.writes());
}

#[tokio::test]
async fn a_field_changed_outside_vz_is_drift_and_apply_puts_it_back() {
    let (b, d, s) = applied().await;
    let mut live = b.mem.object(&settings()).expect("there");
    live["data"]["a"] = json!("changed");
    b.mem.put("kubectl-edit", live);
    let p = b.plan(&d, &s).await;
    let c = change(&p, &settings());
    assert_eq!((c.action, c.cause), (Action::Update, Cause::Drift));
    let fields: Vec<&str> = c.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(fields, ["data.a"]);
    b.apply(&d, s).await.expect("apply");
    assert_eq!(b.mem.object(&settings()).expect("there")["data"]["a"], "1");
}

#[tokio::test]
async fn a_field_someone_else_adds_is_theirs_and_no_change() {
    let (b, d, s) = applied().await;
    let mut live = b.mem.object(&settings()).expect("there");
    live["data"]["theirs"] = json!("x");
    b.mem.put("other-operator", live);
    let p = b.plan(&d, &s).await;
    assert!(!p.has_changes(), "{:?}", actions(&p));
}

#[tokio::test]
async fn an_object_deleted_outside_vz_is_created_again() {
    let (b, d, s) = applied().await;
    b.mem.delete(&settings()).await.expect("delete");
    let p = b.plan(&d, &s).await;
    let c = change(&p, &settings());
    assert_eq!((c.action, c.cause), (Action::Create, Cause::DeletedOutside));
}

#[tokio::test]
async fn a_failing_step_rolls_back_the_creates_of_the_run() {
    let b = Bench::new();
    let d = platform(json!({"a": "1"}));
    b.mem.fail(Op::Apply, "web", Failure::Refused, false, 1);
    let e = b
        .apply(&d, state())
        .await
        .expect_err("the Deployment is refused");
    let f = failed(&e);
    assert!(
        format!("{:#}", f.failure).contains("the API server refused to apply Deployment a/web"),
        "{:#}",
        f.failure
    );
    assert!(!f.changes_remain, "{}", f.report);
    // Everything the run created is gone again (the namespace took its objects with it).
    assert_eq!(b.mem.names(), Vec::<String>::new(), "{}", f.report);
    let stored = b.store.read().await.expect("read").expect("a state");
    assert!(stored.objects.is_empty(), "{:?}", stored.objects);
}

#[tokio::test]
async fn a_failing_step_rolls_back_updates_to_what_they_were_with_their_managers() {
    let (b, _, s) = applied().await;
    let before = b.mem.object(&settings()).expect("there");
    b.mem.fail(Op::Apply, "w", Failure::Refused, false, 1);
    let mut changed = platform(json!({"a": "2"}));
    // The Widget changes too, so that its step runs (and fails) after the ConfigMap's update.
    changed.steps[1].objects[0].body = Arc::new(
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "namespace": "a", "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, PLATFORM_LABEL: PLATFORM}},
        "spec": {"size": 2}}),
    );
    let e = b
        .apply(&changed, s.clone())
        .await
        .expect_err("the Widget is refused");
    assert!(!failed(&e).changes_remain, "{}", failed(&e).report);
    let after = b.mem.object(&settings()).expect("there");
    assert_eq!(after["data"], before["data"]);
    assert_eq!(
        after["metadata"]["managedFields"],
        before["metadata"]["managedFields"]
    );
    let p = b.plan(&platform(json!({"a": "1"})), &s).await;
    assert!(!p.has_changes(), "back as it was: {:?}", actions(&p));
}

#[tokio::test]
async fn a_failing_step_rolls_back_a_delete_by_creating_the_object_again() {
    let (b, _, s) = applied().await;
    // The ConfigMap leaves the configuration, and the Deployment's update fails.
    let mut d = platform(json!({"a": "1"}));
    d.steps[0].objects.remove(0);
    d.steps[1].objects[1] = {
        let mut m = deployment("a", "web");
        Arc::make_mut(&mut m.body)["spec"]["replicas"] = json!(2);
        m
    };
    d.graph = graph_of(&d.steps).expect("graph");
    b.mem.fail(Op::Apply, "web", Failure::Failed, false, 1);
    let p = b.plan(&d, &s).await;
    assert!(
        actions(&p).contains(&("ConfigMap a/settings".into(), Action::Delete)),
        "{:?}",
        actions(&p)
    );
    let e = apply(b.session(), &p, &d, Outputs::default(), s.clone()).await;
    // The delete comes after every apply: a failing apply stops the run before it.
    let e = e.expect_err("the Deployment fails");
    assert!(b.mem.object(&settings()).is_some(), "{}", failed(&e).report);
    // Now both the ConfigMap and the Widget leave the configuration: the Widget is deleted
    // first (dependents go first), the ConfigMap's delete is refused, and the rollback creates
    // the Widget again as it was.
    let mut d2 = platform(json!({"a": "1"}));
    d2.steps[0].objects.remove(0);
    d2.steps[1].objects.remove(0);
    d2.graph = graph_of(&d2.steps).expect("graph");
    b.mem
        .fail(Op::Delete, "settings", Failure::Refused, false, 1);
    let e = b
        .apply(&d2, s)
        .await
        .expect_err("the ConfigMap's delete is refused");
    let report = &failed(&e).report;
    let w = r("example.com/v1", "Widget", Some("a"), "w");
    let back = b
        .mem
        .object(&w)
        .unwrap_or_else(|| panic!("re-created by the rollback: {report}"));
    assert_eq!(back["spec"]["size"], 1);
    assert!(b.mem.object(&settings()).is_some());
    assert!(!failed(&e).changes_remain, "{report}");
}

#[tokio::test]
async fn an_interrupt_while_waiting_stops_the_run_and_rolls_it_back() {
    let mut b = Bench::new();
    let (interrupt, trip) = Interrupt::manual();
    b.opts = options(Duration::from_secs(30), interrupt);
    b.mem.hold("web");
    let d = platform(json!({"a": "1"}));
    let session_apply = b.apply(&d, state());
    let tripping = async {
        // Once the Deployment is there (and never ready), press Ctrl-C.
        while b
            .mem
            .object(&r("apps/v1", "Deployment", Some("a"), "web"))
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        trip.trip();
    };
    let (outcome, ()) = tokio::join!(session_apply, tripping);
    let e = outcome.expect_err("interrupted");
    let f = failed(&e);
    assert!(
        format!("{:#}", f.failure).contains("interrupted while waiting for Deployment a/web"),
        "{:#}",
        f.failure
    );
    assert!(
        b.mem.names().is_empty(),
        "rolled back: {:?}\n{}",
        b.mem.names(),
        f.report
    );
}

#[tokio::test]
async fn a_wait_that_times_out_names_the_object_and_what_it_waits_for() {
    let mut b = Bench::new();
    b.opts = options(Duration::from_millis(300), Interrupt::never());
    b.opts.rollback = false;
    b.mem.hold("web");
    let e = b
        .apply(&platform(json!({"a": "1"})), state())
        .await
        .expect_err("times out");
    let text = format!("{:#}", failed(&e).failure);
    assert!(
        text.contains("timed out waiting for Deployment a/web to be ready"),
        "{text}"
    );
    assert!(text.contains("1 available replica(s)"), "{text}");
}

#[tokio::test]
async fn a_wait_ends_as_soon_as_the_object_is_ready() {
    let b = Bench::new();
    b.mem.hold("web");
    let web = r("apps/v1", "Deployment", Some("a"), "web");
    let d = platform(json!({"a": "1"}));
    let started = tokio::time::Instant::now();
    let ready = async {
        while b.mem.object(&web).is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        b.mem.release_hold("web");
    };
    let (outcome, ()) = tokio::join!(b.apply(&d, state()), ready);
    outcome.expect("apply");
    // A watch, not a poll: far less than the run's 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_restore_that_meets_a_conflict_reads_again_and_succeeds() {
    let (b, _, s) = applied().await;
    b.mem.fail(Op::Apply, "w", Failure::Refused, false, 1);
    b.mem
        .fail(Op::Replace, "settings", Failure::Conflict, false, 2);
    let mut changed = platform(json!({"a": "2"}));
    Arc::make_mut(&mut changed.steps[1].objects[0].body)["spec"]["size"] = json!(3);
    let e = b
        .apply(&changed, s)
        .await
        .expect_err("the Widget is refused");
    assert!(!failed(&e).changes_remain, "{}", failed(&e).report);
    assert_eq!(b.mem.object(&settings()).expect("there")["data"]["a"], "1");
    let replaces = b
        .mem
        .requests()
        .iter()
        .filter(|l| *l == "replace ConfigMap a/settings")
        .count();
    assert_eq!(
        replaces, 4,
        "two conflicts, then the content, then its managers"
    );
}

#[tokio::test]
async fn an_immutable_field_that_changes_is_planned_as_a_replace() {
    let (b, _, s) = applied().await;
    let mut d = platform(json!({"a": "1"}));
    Arc::make_mut(&mut d.steps[1].objects[1].body)["spec"]["selector"] =
        json!({"matchLabels": {"app": "other"}});
    let p = b.plan(&d, &s).await;
    let c = p
        .changes
        .iter()
        .find(|c| c.object.name == "web")
        .expect("in the plan");
    assert_eq!(c.action, Action::Replace);
    assert_eq!(c.forces_replacement, ["spec.selector"]);
}

#[tokio::test]
async fn destroy_deletes_dependents_first_and_waits_for_finalizers() {
    let mut b = Bench::new();
    let mut d = platform(json!({"a": "1"}));
    Arc::make_mut(&mut d.steps[1].objects[0].body)["metadata"]["finalizers"] =
        json!(["example.com/cleanup"]);
    let s = b.apply(&d, state()).await.expect("apply");
    b.opts = options(Duration::from_millis(300), Interrupt::never());
    let e = b
        .destroy(s.clone())
        .await
        .expect_err("the finalizer holds it");
    let text = format!("{e:#}");
    assert!(
        text.contains("Widget a/w to be deleted; it still has finalizers [example.com/cleanup]"),
        "{text}"
    );
    let writes = b.mem.writes();
    assert!(
        !writes.contains(&"delete Namespace a".to_string()),
        "the namespace waits: {writes:#?}"
    );
    b.mem
        .finalize(&r("example.com/v1", "Widget", Some("a"), "w"));
    let stored = b.store.read().await.expect("read").expect("state");
    b.opts = options(Duration::from_secs(5), Interrupt::never());
    let left = b.destroy(stored).await.expect("destroy");
    assert!(left.objects.is_empty());
    assert!(b.mem.names().is_empty(), "{:?}", b.mem.names());
    let writes = b.mem.writes();
    assert!(
        position(&writes, "delete Widget a/w")
            < position(
                &writes,
                "delete CustomResourceDefinition widgets.example.com"
            )
    );
    assert!(
        position(&writes, "delete ConfigMap a/settings") < position(&writes, "delete Namespace a")
    );
}

#[tokio::test]
async fn a_lost_state_is_recovered_from_the_platform_labels() {
    let b = Bench::new();
    let d = platform(json!({"a": "1"}));
    b.apply(&d, state()).await.expect("apply");
    let p = b.plan(&d, &state()).await;
    assert!(
        p.changes.iter().all(|c| c.cause == Cause::Recovered),
        "{:?}",
        p.changes
            .iter()
            .map(|c| (c.object.to_string(), c.action, c.cause))
            .collect::<Vec<_>>()
    );
    let s = b.apply(&d, state()).await.expect("apply");
    assert_eq!(s.objects.len(), 5);
    assert!(!b.plan(&d, &s).await.has_changes());
}

#[tokio::test]
async fn an_object_someone_else_made_is_not_taken_over_silently() {
    let b = Bench::new();
    b.mem.put(
        "test",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}),
    );
    b.mem.put(
        "someone",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "a"}, "data": {"a": "0"}}),
    );
    let d = platform(json!({"a": "1"}));
    let p = b.plan(&d, &state()).await;
    let c = change(&p, &settings());
    assert_eq!((c.action, c.cause), (Action::Update, Cause::Adopt));
    let s = b.apply(&d, state()).await.expect("apply");
    assert!(
        s.get("base/ConfigMap/a/settings")
            .is_some_and(|r| r.adopted)
    );
    // Destroy gives it back (released, not deleted): it was someone else's first.
    let left = b.destroy(s).await.expect("destroy");
    assert!(left.objects.is_empty());
    let back = b.mem.object(&settings()).expect("still there");
    assert!(
        back["metadata"]
            .get("labels")
            .is_none_or(|l| l.get(MANAGED_BY_LABEL).is_none()),
        "{back}"
    );
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_taken_back_and_the_state_marked_unfinished() {
    let b = Bench::new();
    let mut first = platform(json!({"a": "1"}));
    first.steps[1].objects.remove(1);
    first.graph = graph_of(&first.steps).expect("graph");
    let s = b.apply(&first, state()).await.expect("apply");
    // The Deployment is created, but the answer never comes back.
    let d = platform(json!({"a": "1"}));
    b.mem.fail(Op::Apply, "web", Failure::Lost, true, 1);
    let e = b.apply(&d, s).await.expect_err("no answer");
    let f = failed(&e);
    assert!(f.report.contains("got no answer"), "{}", f.report);
    let stored = b.store.read().await.expect("read").expect("state");
    assert!(
        stored.unfinished.is_some(),
        "the state says a run may have left objects"
    );
    // The rollback looked for what the unanswered create may have made, and took it back.
    let web = r("apps/v1", "Deployment", Some("a"), "web");
    assert!(b.mem.object(&web).is_none(), "{}", f.report);
    let p = b.plan(&d, &stored).await;
    let c = change(&p, &web);
    assert_eq!(c.action, Action::Create, "{:?}", actions(&p));
    let s = b.apply(&d, stored).await.expect("apply");
    assert!(s.unfinished.is_none());
    assert_eq!(s.objects.len(), 5);
}

#[tokio::test]
async fn the_quick_start_platform_applies_plans_nothing_more_and_destroys_to_nothing() {
    let b = Bench::new();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let d = Desired::load(&file).expect("the quick start loads");
    let s = b
        .apply(&d, State::new(&d.platform.environment_name, "test"))
        .await
        .expect("apply");
    let objects: usize = d.steps.iter().map(|s| s.objects.len()).sum();
    assert_eq!(s.objects.len(), objects);
    let p = b.plan(&d, &s).await;
    assert!(
        !p.has_changes(),
        "{:?}",
        actions(&p)
            .iter()
            .filter(|a| a.1 != Action::NoOp)
            .collect::<Vec<_>>()
    );
    let left = b.destroy(s).await.expect("destroy");
    assert!(left.objects.is_empty());
    assert!(b.mem.names().is_empty(), "{:#?}", b.mem.names());
}

/// A certificate `vz` issues into Secret `a/<name>`: a root CA without `issuer`, else a leaf for
/// `sans` signed by `a/<issuer>`.
fn certificate(name: &str, issuer: Option<&str>, sans: &[&str]) -> Manifest {
    use vz_providers::manifest::{CertSpec, Layout, Role};
    let spec = CertSpec {
        role: if issuer.is_some() {
            Role::Leaf
        } else {
            Role::Root
        },
        common_name: if issuer.is_some() { "" } else { "test CA" }.into(),
        random_suffix: false,
        sans: vec![],
        validity_days: 90,
        key: vz_providers::pki::KeyAlgorithm::EcdsaP256,
        renew_before_days: 30,
        overlap_secs: 0,
        issuer: issuer.map(|i| vz_providers::names::SecretRef::new("a", i)),
        layout: Layout::Tls,
    };
    let sans = sans.iter().map(|s| (*s).to_string()).collect();
    let mut m = vz_providers::tls::certificate(
        "a",
        name,
        spec,
        vz_providers::outputs::Deferred::Known(sans),
    );
    m.set_label(MANAGED_BY_LABEL, MANAGED_BY_VALUE);
    m.set_label(PLATFORM_LABEL, PLATFORM);
    m
}

/// A ConfigMap holding a copy of the CA certificate of Secret `a/ca` (as trust stores do).
fn trust_store() -> Manifest {
    use vz_providers::manifest::{Fill, FillTarget};
    let mut m = config_map("a", "trust", json!({"ca.crt": ""}));
    m.fills.push(Fill {
        target: FillTarget::Pointer("/data/ca.crt".into()),
        from: vz_providers::names::SecretRef::new("a", "ca"),
        keys: vec!["ca.crt".into(), "tls.crt".into()],
    });
    m
}

/// A namespace, a CA, a leaf it signs, and a copy of the CA certificate.
fn pki(sans: &[&str]) -> Desired {
    desired(vec![
        step("base", &[], vec![namespace("a")]),
        step("ca", &["base"], vec![certificate("ca", None, &[])]),
        step(
            "leaf",
            &["ca"],
            vec![certificate("web", Some("ca"), sans), trust_store()],
        ),
    ])
}

fn secret(name: &str) -> ObjectRef {
    r("v1", "Secret", Some("a"), name)
}

/// The text of `data[key]` of the object `r` in the cluster.
fn data(b: &Bench, r: &ObjectRef, key: &str) -> String {
    use base64::Engine as _;
    let v = b.mem.object(r).unwrap_or_else(|| panic!("{r} exists"));
    let text = v["data"][key].as_str().unwrap_or_default().to_string();
    if r.kind == "Secret" {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64");
        String::from_utf8(bytes).expect("text")
    } else {
        text
    }
}

#[tokio::test]
async fn certificates_are_issued_at_apply_kept_by_the_next_plan_and_their_keys_never_shown() {
    let b = Bench::new();
    let d = pki(&["web.example.com"]);
    let first = b.plan(&d, &state()).await;
    assert_eq!(change(&first, &secret("web")).action, Action::Create);
    let s = apply(b.session(), &first, &d, Outputs::default(), state())
        .await
        .expect("apply");
    let key = data(&b, &secret("web"), "tls.key");
    assert!(key.contains("PRIVATE KEY"), "{key}");
    // The copy is the CA's certificate, the leaf is signed by it.
    assert_eq!(
        b.mem
            .object(&r("v1", "ConfigMap", Some("a"), "trust"))
            .expect("trust")["data"]["ca.crt"],
        b.mem.object(&secret("ca")).expect("ca")["data"]["tls.crt"]
    );
    let facts = |name: &str| {
        s.objects
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.certificate.clone())
            .unwrap_or_else(|| panic!("the state records {name}'s certificate"))
    };
    assert_eq!(facts("web").issuer_key_id, facts("ca").key_id);
    assert_eq!(facts("web").sans, ["web.example.com"]);
    let p = b.plan(&d, &s).await;
    assert!(!p.has_changes(), "{:?}", actions(&p));
    for text in [
        serde_json::to_string(&first).expect("json"),
        serde_json::to_string(&p).expect("json"),
        serde_json::to_string(&s).expect("json"),
    ] {
        assert!(!text.contains("PRIVATE KEY"));
        assert!(
            !text.contains(
                &b.mem.object(&secret("web")).expect("web")["data"]["tls.key"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string()
            )
        );
    }
}

#[tokio::test]
async fn replacing_the_ca_issues_its_leaves_again_and_updates_its_copies() {
    let b = Bench::new();
    let d = pki(&["web.example.com"]);
    let s = b.apply(&d, state()).await.expect("apply");
    let old_ca = data(&b, &secret("ca"), "tls.crt");
    let old_leaf = data(&b, &secret("web"), "tls.crt");
    let mut opts = plan_options();
    opts.replace = vec![d.steps[1].address_of(&d.steps[1].objects[0])];
    let p = plan(&b.cluster, &d.steps, &d.graph, &s, &opts)
        .await
        .expect("plan");
    assert_eq!(change(&p, &secret("ca")).action, Action::Replace);
    let leaf = change(&p, &secret("web"));
    assert_eq!((leaf.action, leaf.cause), (Action::Update, Cause::Reissue));
    assert!(
        leaf.reissue
            .as_deref()
            .unwrap_or_default()
            .contains("issuer"),
        "{:?}",
        leaf.reissue
    );
    let copy = change(&p, &r("v1", "ConfigMap", Some("a"), "trust"));
    assert_eq!(copy.action, Action::Update);
    assert!(copy.follows.is_some());
    let s = apply(b.session(), &p, &d, Outputs::default(), s)
        .await
        .expect("apply");
    let new_ca = data(&b, &secret("ca"), "tls.crt");
    assert_ne!(new_ca, old_ca);
    assert_ne!(data(&b, &secret("web"), "tls.crt"), old_leaf);
    // Without overlap (caOverlap 0s) the new CA signs at once; the old one stays trusted
    // (servers may still present what it signed), in the bundle and its copies.
    let trust = || {
        let stored = b
            .mem
            .object(&r("v1", "ConfigMap", Some("a"), "trust"))
            .expect("trust");
        stored["data"]["ca.crt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let bundle = data(&b, &secret("ca"), "ca.crt");
    assert_eq!(bundle, format!("{new_ca}{old_ca}"));
    assert_eq!(
        trust(),
        b.mem.object(&secret("ca")).expect("ca")["data"]["ca.crt"]
            .as_str()
            .unwrap_or_default()
    );
    assert_eq!(data(&b, &secret("web"), "ca.crt"), bundle);

    // Nothing it signed is left: the next plan drops the old CA, and the copies follow.
    let p = b.plan(&d, &s).await;
    let ca = change(&p, &secret("ca"));
    assert_eq!(ca.action, Action::Update);
    assert!(
        ca.follows
            .as_deref()
            .is_some_and(|f| f.contains("leaves its trust bundle")),
        "{:?}",
        ca.follows
    );
    assert!(ca.intent.as_deref().is_some_and(|i| i.starts_with("trim ")));
    assert!(
        change(&p, &r("v1", "ConfigMap", Some("a"), "trust"))
            .follows
            .is_some()
    );
    assert_eq!(change(&p, &secret("web")).action, Action::Update);
    let s = apply(b.session(), &p, &d, Outputs::default(), s)
        .await
        .expect("apply");
    assert_eq!(data(&b, &secret("ca"), "ca.crt"), new_ca);
    assert_eq!(data(&b, &secret("web"), "ca.crt"), new_ca);
    assert!(!data(&b, &secret("web"), "tls.crt").contains(&old_leaf));
    let p = b.plan(&d, &s).await;
    assert!(!p.has_changes(), "{:?}", actions(&p));
}

#[tokio::test]
async fn a_run_reads_the_ca_once_for_all_it_signs_and_again_after_it_writes_it() {
    let b = Bench::new();
    let mut leaves: Vec<Manifest> = (0..12)
        .map(|i| certificate(&format!("web-{i}"), Some("ca"), &["web.example.com"]))
        .collect();
    leaves.push(trust_store());
    let d = desired(vec![
        step("base", &[], vec![namespace("a")]),
        step("ca", &["base"], vec![certificate("ca", None, &[])]),
        step("leaf", &["ca"], leaves),
    ]);
    let p = b.plan(&d, &state()).await;
    let reads = || {
        b.mem
            .requests()
            .iter()
            .filter(|l| *l == "get Secret a/ca")
            .count()
    };
    let before = reads();
    apply(b.session(), &p, &d, Outputs::default(), state())
        .await
        .expect("apply");
    // The CA was written by the run (so it is not remembered from before), then read once for
    // twelve leaves and a copy of its certificate.
    assert_eq!(reads() - before, 1);
    let ca = data(&b, &secret("ca"), "tls.crt");
    for i in 0..12 {
        assert_eq!(data(&b, &secret(&format!("web-{i}")), "ca.crt"), ca);
    }
}

/// [`pki`] with a CA that rotates with `overlap` seconds of overlap.
fn pki_with_overlap(overlap: i64) -> Desired {
    let mut d = pki(&["web.example.com"]);
    if let Some(spec) = d.steps[1].objects[0].certificate.as_mut() {
        spec.overlap_secs = overlap;
    }
    d
}

#[tokio::test]
async fn a_ca_due_with_overlap_joins_the_bundle_first_and_signs_only_once_switched() {
    let b = Bench::new();
    let d = pki_with_overlap(3600);
    let s = b.apply(&d, state()).await.expect("apply");
    let old_ca = data(&b, &secret("ca"), "tls.crt");
    let old_leaf = data(&b, &secret("web"), "tls.crt");
    let ca_address = d.steps[1].address_of(&d.steps[1].objects[0]);

    // Announced: the new CA joins the bundle; the old one still signs, the leaf is kept.
    let mut opts = plan_options();
    opts.replace = vec![ca_address.clone()];
    let p = plan(&b.cluster, &d.steps, &d.graph, &s, &opts)
        .await
        .expect("plan");
    let ca = change(&p, &secret("ca"));
    assert_eq!(ca.action, Action::Update, "updated in place, not replaced");
    assert_eq!(ca.intent.as_deref(), Some("announce"));
    assert!(
        ca.follows
            .as_deref()
            .is_some_and(|f| f.starts_with("CA rotation begins (its replacement is requested)")),
        "{:?}",
        ca.follows
    );
    let leaf = change(&p, &secret("web"));
    assert_eq!(leaf.reissue, None);
    assert!(leaf.follows.is_some(), "its ca.crt follows");
    let s = apply(b.session(), &p, &d, Outputs::default(), s)
        .await
        .expect("apply");
    assert_eq!(data(&b, &secret("ca"), "tls.crt"), old_ca);
    let next = data(&b, &secret("ca"), "next.crt");
    assert_eq!(data(&b, &secret("ca"), "ca.crt"), format!("{next}{old_ca}"));
    assert_eq!(data(&b, &secret("web"), "tls.crt"), old_leaf);
    assert_eq!(
        data(&b, &secret("web"), "ca.crt"),
        format!("{next}{old_ca}")
    );
    let p = b.plan(&d, &s).await;
    assert!(
        !p.has_changes(),
        "nothing before the overlap is over: {:?}",
        actions(&p)
    );

    // Asked again before the overlap is over: the announced CA takes over now.
    let p = plan(&b.cluster, &d.steps, &d.graph, &s, &opts)
        .await
        .expect("plan");
    assert_eq!(change(&p, &secret("ca")).intent.as_deref(), Some("switch"));
    assert!(change(&p, &secret("web")).reissue.is_some());
    let s = apply(b.session(), &p, &d, Outputs::default(), s)
        .await
        .expect("apply");
    assert_eq!(data(&b, &secret("ca"), "tls.crt"), next);
    assert_eq!(data(&b, &secret("ca"), "ca.crt"), format!("{next}{old_ca}"));
    assert!(
        vz_providers::pki::signed_by(&data(&b, &secret("web"), "tls.crt"), &next).expect("parse")
    );
    let stored = b.mem.object(&secret("ca")).expect("ca");
    assert!(stored["data"].get("next.key").is_none());
    // The old CA stays trusted for the overlap after the switch.
    let p = b.plan(&d, &s).await;
    assert!(!p.has_changes(), "{:?}", actions(&p));
}

#[tokio::test]
async fn a_certificate_whose_names_change_is_issued_again_and_its_ca_kept() {
    let b = Bench::new();
    let s = b
        .apply(&pki(&["web.example.com"]), state())
        .await
        .expect("apply");
    let ca = data(&b, &secret("ca"), "tls.crt");
    let d = pki(&["web.example.com", "www.example.com"]);
    let p = b.plan(&d, &s).await;
    let leaf = change(&p, &secret("web"));
    assert_eq!(leaf.action, Action::Update);
    assert!(leaf.reissue.is_some(), "{leaf:?}");
    assert_eq!(change(&p, &secret("ca")).action, Action::NoOp);
    let s = apply(b.session(), &p, &d, Outputs::default(), s)
        .await
        .expect("apply");
    assert_eq!(data(&b, &secret("ca"), "tls.crt"), ca);
    let web = s.objects.iter().find(|o| o.name == "web").expect("web");
    assert_eq!(
        web.certificate.as_ref().map(|c| c.sans.clone()),
        Some(vec!["web.example.com".into(), "www.example.com".into()])
    );
}

#[tokio::test]
async fn a_ca_deleted_outside_vz_is_issued_anew_and_everything_it_signed_follows() {
    let b = Bench::new();
    let d = pki(&["web.example.com"]);
    let s = b.apply(&d, state()).await.expect("apply");
    b.cluster.delete(&secret("ca")).await.expect("delete");
    let p = b.plan(&d, &s).await;
    assert_eq!(change(&p, &secret("ca")).action, Action::Create);
    assert_eq!(change(&p, &secret("web")).cause, Cause::Reissue);
    assert!(
        change(&p, &r("v1", "ConfigMap", Some("a"), "trust"))
            .follows
            .is_some()
    );
    let s = apply(b.session(), &p, &d, Outputs::default(), s)
        .await
        .expect("apply");
    let facts = |name: &str| {
        s.objects
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.certificate.clone())
            .expect("recorded")
    };
    assert_eq!(facts("web").issuer_key_id, facts("ca").key_id);
}

/// A store of objects kept elsewhere than the API server (as DNS records are on a DNS server).
#[derive(Default)]
struct Aside {
    objects: std::sync::Mutex<std::collections::BTreeMap<String, Value>>,
}

impl Aside {
    fn names(&self) -> Vec<String> {
        self.objects
            .lock()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl crate::cluster::elsewhere::Elsewhere for Aside {
    async fn get(&self, r: &ObjectRef) -> anyhow::Result<Option<Value>> {
        Ok(self.objects.lock().expect("lock").get(&r.name).cloned())
    }

    async fn apply(&self, m: &Manifest, dry_run: bool) -> anyhow::Result<Value> {
        let mut v = Value::clone(&m.body);
        v["metadata"]["uid"] = json!(format!("uid-{}", m.name));
        if !dry_run {
            self.objects
                .lock()
                .expect("lock")
                .insert(m.name.clone(), v.clone());
        }
        Ok(v)
    }

    async fn delete(&self, r: &ObjectRef) -> anyhow::Result<crate::cluster::Deleted> {
        use crate::cluster::Deleted;
        Ok(match self.objects.lock().expect("lock").remove(&r.name) {
            Some(_) => Deleted::Gone,
            None => Deleted::AlreadyGone,
        })
    }

    async fn release(&self, r: &ObjectRef) -> anyhow::Result<Option<Value>> {
        self.get(r).await
    }

    async fn restore(&self, before: &Value) -> anyhow::Result<Value> {
        let name = before["metadata"]["name"].as_str().unwrap_or_default();
        self.objects
            .lock()
            .expect("lock")
            .insert(name.to_string(), before.clone());
        Ok(before.clone())
    }
}

#[tokio::test]
async fn objects_kept_elsewhere_are_applied_rolled_back_and_destroyed_on_their_store() {
    let mut b = Bench::new();
    let aside = Arc::new(Aside::default());
    b.cluster = Cluster::over(b.mem.clone() as Arc<dyn ClusterApi>, None)
        .keep_elsewhere("records.example/v1", aside.clone());
    let record = owned(json!({"apiVersion": "records.example/v1", "kind": "A",
        "metadata": {"name": "web.example.com"}, "spec": {"values": ["192.0.2.1"]}}));
    let mut d = platform(json!({"a": "1"}));
    d.steps[0].objects.push(record);
    b.mem.fail(Op::Apply, "web", Failure::Refused, false, 1);
    b.apply(&d, state())
        .await
        .expect_err("the Deployment is refused");
    assert!(aside.names().is_empty(), "the record is taken back");
    let s = b.apply(&d, state()).await.expect("apply");
    assert_eq!(aside.names(), ["web.example.com"]);
    assert!(
        !b.mem.names().iter().any(|n| n.contains("web.example.com")),
        "the API server never sees it"
    );
    assert!(!b.plan(&d, &s).await.has_changes());
    b.destroy(s).await.expect("destroy");
    assert!(aside.names().is_empty());
}

#[tokio::test]
async fn a_delete_whose_answer_was_lost_is_brought_back_by_the_rollback() {
    let (b, _, s) = applied().await;
    // The ConfigMap leaves the configuration; its delete takes effect, but the answer is lost.
    let mut d = platform(json!({"a": "1"}));
    d.steps[0].objects.remove(0);
    d.graph = graph_of(&d.steps).expect("graph");
    b.mem.fail(Op::Delete, "settings", Failure::Lost, true, 1);
    let e = b
        .apply(&d, s)
        .await
        .expect_err("the delete's answer is lost");
    let f = failed(&e);
    assert!(
        format!("{:#}", f.failure).contains("cannot delete ConfigMap a/settings"),
        "{:#}",
        f.failure
    );
    let back = b
        .mem
        .object(&settings())
        .unwrap_or_else(|| panic!("re-created by the rollback: {}", f.report));
    assert_eq!(back["data"], json!({"a": "1"}));
    let stored = b.store.read().await.expect("read").expect("a state");
    assert!(
        stored
            .get(&d.steps[0].address_of(&config_map("a", "settings", json!({}))))
            .is_some()
    );
    assert!(
        stored.unfinished.is_some(),
        "the server may still act on it"
    );
}
