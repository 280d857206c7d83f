//! `vz watch`: an application whose ApplicationConfiguration is deleted, or whose namespace is
//! annotated as finished, is destroyed within seconds, and nothing else is; a person's run holding
//! the lock is waited for; a deletion made while no watch ran is still seen (the finalizer holds
//! the ApplicationConfiguration); and the Deployment's RBAC is enough for the destroy.

use std::time::{Duration, Instant};

use crate::applications::{BILLING, ORDERS_OBJECTS, oam_example, untouched, versions};
use crate::common::{TestEnv, repo_root, vz_bare};

/// The finalizer of platform `shop`.
const FINALIZER: &str = "networking.vz.dev/shop";
/// An NGINX image the held apply rolls out (never ready while the node simulator says so).
const MOVED_NGINX: &str = "example.test/nginx/controller:v1.7.1-moved";

/// The OAM example plus the inline `billing` application, its state in the cluster.
fn config(env: &TestEnv, extra: &str) -> String {
    let text = oam_example(env).replace(
        "state:\n  path: oam.vzstate.json\n",
        "state:\n  backend: kubernetes\n  namespace: vz-system\n",
    );
    let name = if extra.is_empty() {
        "oam.yaml"
    } else {
        "oam-moved.yaml"
    };
    let cfg = env.write_config(name, &format!("{text}{BILLING}{extra}"));
    cfg.to_str().expect("utf8").to_string()
}

/// The ApplicationConfiguration of orders, when it exists.
fn orders_configuration(env: &TestEnv) -> Option<serde_json::Value> {
    env.get_json(&[
        "applicationconfigurations.core.oam.dev",
        "-n",
        "shop",
        "orders",
    ])
}

/// Delete orders' ApplicationConfiguration, without waiting (a finalizer may hold it).
fn delete_orders_configuration(env: &TestEnv) {
    env.kubectl(&[
        "delete",
        "applicationconfiguration",
        "-n",
        "shop",
        "orders",
        "--wait=false",
    ])
    .expect_code(0);
}

fn held(env: &TestEnv) -> bool {
    orders_configuration(env).is_some_and(|c| {
        c["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
    })
}

/// The objects of application `namespace`'s application (`shop`: orders, `finance`: billing).
fn objects_in(env: &TestEnv, namespace: &str) -> Vec<String> {
    versions(env)
        .into_keys()
        .filter(|k| k.contains(&format!("{namespace}-")) || k.contains(&format!(" {namespace}/")))
        .filter(|k| !k.starts_with("Namespace "))
        .collect()
}

fn terminate(watch: crate::common::Running) -> crate::common::Run {
    let pid = watch.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    watch.wait()
}

#[test]
fn vz_watch_destroys_an_ended_application_within_seconds_and_nothing_else() {
    let env = TestEnv::start();
    for ns in ["vz-system", "shop"] {
        env.kubectl(&["create", "namespace", ns]).expect_code(0);
    }
    let crds = repo_root().join("tests/oam/crds.yaml");
    env.kubectl(&["apply", "-f", crds.to_str().expect("utf8")])
        .expect_code(0);
    env.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/applicationconfigurations.core.oam.dev",
        "crd/components.core.oam.dev",
    ])
    .expect_code(0);
    let cfg = config(&env, "");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    let orders_file = env.work.path().join("oam/orders.yaml");
    let orders_file = orders_file.to_str().expect("utf8");
    env.kubectl(&["apply", "-f", orders_file]).expect_code(0);
    let mut want = ORDERS_OBJECTS.to_vec();
    want.sort_unstable();
    assert_eq!(objects_in(&env, "shop"), want);
    assert!(!objects_in(&env, "finance").is_empty());

    // Running, it holds the ApplicationConfiguration, and its deletion ends orders.
    let watch = env.spawn_vz(&["watch", "-f", &cfg, "--interval", "1s"]);
    env.eventually(Duration::from_secs(30), "the finalizer", || {
        held(&env).then_some(())
    });
    let before = versions(&env);
    let deleted = Instant::now();
    delete_orders_configuration(&env);
    env.eventually(Duration::from_secs(60), "orders destroyed", || {
        (objects_in(&env, "shop").is_empty() && orders_configuration(&env).is_none()).then_some(())
    });
    println!(
        "vz watch: orders destroyed {:.1} s after its ApplicationConfiguration was deleted",
        deleted.elapsed().as_secs_f64()
    );
    // Everything else is as it was (the state, in vz-system, records the destroy).
    let others = |v: std::collections::BTreeMap<String, (String, String)>| {
        v.into_iter()
            .filter(|(k, _)| !k.contains(" vz-system/"))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    untouched(&others(before), &others(versions(&env)));
    assert!(!objects_in(&env, "finance").is_empty(), "billing stays");
    let ns = env
        .get_json(&["namespace", "shop"])
        .expect("the team's namespace stays");
    assert!(ns["metadata"]["deletionTimestamp"].is_null());
    // A plan leaves the ended application out, and says so.
    let plan = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    plan.expect_code(0);
    assert!(
        plan.stdout.contains("application `orders` ended at")
            && plan
                .stdout
                .contains("ApplicationConfiguration shop/orders was deleted"),
        "{}",
        plan.stdout
    );

    // A person's apply holds the lock: the watch waits for it, then destroys billing.
    env.set_node_sim(
        "unready",
        "verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller",
    );
    let moved = config(
        &env,
        &format!("images:\n  nginxController: {MOVED_NGINX}\n"),
    );
    let person = env.spawn_vz(&["apply", "-f", &moved, "--auto-approve", "--timeout", "3m"]);
    env.eventually(
        Duration::from_secs(60),
        "the apply rolling NGINX out",
        || {
            let d = env.get_json(&[
                "deployment",
                "-n",
                "verrazzano-ingress-nginx",
                "ingress-controller-ingress-nginx-controller",
            ])?;
            (d["spec"]["template"]["spec"]["containers"][0]["image"] == MOVED_NGINX).then_some(())
        },
    );
    env.kubectl(&["annotate", "namespace", "finance", "vz.dev/terminated=true"])
        .expect_code(0);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !objects_in(&env, "finance").is_empty(),
        "nothing is destroyed while a person's run holds the lock"
    );
    env.set_node_sim("unready", "");
    person.wait().expect_code(0);
    env.eventually(Duration::from_secs(90), "billing destroyed", || {
        (objects_in(&env, "finance").is_empty()
            && env.get_json(&["namespace", "finance"]).is_none())
        .then_some(())
    });
    let ran = terminate(watch);
    ran.expect_code(0);
    for said in [
        "application `orders` ended: ApplicationConfiguration shop/orders was deleted",
        "destroyed orders",
        "waiting for it to end before destroying billing",
        "application `billing` ended: namespace finance is annotated vz.dev/terminated=true",
        "destroyed billing",
        "vz watch: stopped",
    ] {
        assert!(
            ran.stdout.contains(said),
            "{said:?} not in:\n{}",
            ran.stdout
        );
    }
    let platform = versions(&env);
    assert!(
        platform
            .keys()
            .any(|k| k.contains("verrazzano-ingress-nginx")),
        "the platform stays"
    );

    // Applied by name again, orders is back and no longer ended.
    env.kubectl(&["apply", "-f", orders_file]).expect_code(0);
    env.vz(&["apply", "-f", &moved, "--app", "orders", "--auto-approve"])
        .expect_code(0);
    assert_eq!(objects_in(&env, "shop"), want);
    let plan = env.vz(&["plan", "-f", &moved]);
    assert!(!plan.stdout.contains("`orders` ended"), "{}", plan.stdout);

    // The Deployment's RBAC: what runs as its ServiceAccount sees a deletion made while no watch
    // ran, and destroys orders.
    let render = env.vz(&["render", "-f", &moved, "--watch-deployment"]);
    render.expect_code(0);
    let manifests = env.work.path().join("watch.yaml");
    std::fs::write(&manifests, &render.stdout).expect("write");
    env.kubectl(&["apply", "-f", manifests.to_str().expect("utf8")])
        .expect_code(0);
    let sa = service_account_kubeconfig(&env, "vz-system", "vz-watch-shop");
    let once = |what: &str| {
        let run = vz_bare(&["--kubeconfig", &sa, "watch", "-f", &moved, "--once"]);
        run.expect_code(0);
        assert!(
            run.stdout.contains(what),
            "{what:?} not in:\n{}{}",
            run.stdout,
            run.stderr
        );
    };
    once("holding ApplicationConfiguration shop/orders with finalizer networking.vz.dev/shop");
    assert!(held(&env));
    delete_orders_configuration(&env);
    assert!(
        orders_configuration(&env).is_some(),
        "held until vz watch runs"
    );
    once("destroyed orders");
    assert!(objects_in(&env, "shop").is_empty());
    assert!(orders_configuration(&env).is_none());
}

/// A kubeconfig that authenticates as the ServiceAccount `namespace/name` (a token of it).
fn service_account_kubeconfig(env: &TestEnv, namespace: &str, name: &str) -> String {
    let token = env.kubectl(&["create", "token", "-n", namespace, name]);
    token.expect_code(0);
    let raw = env.kubectl(&["config", "view", "--raw", "--minify", "-o", "json"]);
    raw.expect_code(0);
    let mut config: serde_json::Value = serde_json::from_str(&raw.stdout).expect("kubeconfig");
    config["users"][0]["user"] = serde_json::json!({"token": token.stdout.trim()});
    let file = env.work.path().join("watch.kubeconfig");
    std::fs::write(&file, config.to_string()).expect("write");
    file.to_str().expect("utf8").to_string()
}
