//! Applications (`applications:`, `applicationsDir:`): applied after the platform, each planned and
//! destroyed on its own with `--app` without touching the platform or the other applications,
//! pruned when removed from the configuration, and refused with a located error when wrong.

use std::collections::BTreeMap;

use crate::common::{DnsServer, TestEnv, exit, repo_root, vz_bare};

/// Every kind an application or the platform has objects of.
const KINDS: &str = "namespaces,secrets,networkpolicies,services,ingresses,deployments,configmaps,serviceaccounts,clusterroles,clusterrolebindings,gateways.networking.istio.io,virtualservices.networking.istio.io,destinationrules.networking.istio.io,authorizationpolicies.security.istio.io,peerauthentications.security.istio.io,envoyfilters.networking.istio.io";

/// A third application, inline in the platform file (beside the two of `examples/apps/`).
pub(crate) const BILLING: &str = "applications:\n  - name: billing\n    namespace: finance\n    ports: [9000]\n    rules:\n      - destination: {host: billing, port: 9000}\n";

/// The example platform with its two applications, plus `extra`.
fn config(env: &TestEnv, extra: &str) -> String {
    env.applications_config(extra)
}

/// `kind namespace/name` → (uid, resourceVersion) of every object of `KINDS` vz manages.
pub(crate) fn versions(env: &TestEnv) -> BTreeMap<String, (String, String)> {
    let all = env
        .get_json(&[KINDS, "-A", "-l", "app.kubernetes.io/managed-by=vz"])
        .expect("list");
    all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (
                format!(
                    "{} {}/{}",
                    text(&o["kind"]),
                    text(&m["namespace"]),
                    text(&m["name"])
                ),
                (text(&m["uid"]), text(&m["resourceVersion"])),
            )
        })
        .collect()
}

/// The objects of `examples/apps/orders.yaml` (and of its OAM twin), its namespace aside.
pub(crate) const ORDERS_OBJECTS: [&str; 9] = [
    "AuthorizationPolicy istio-system/shop-orders-rule-0-authz",
    "AuthorizationPolicy shop/orders",
    "DestinationRule shop/orders-orders-api-dr",
    "DestinationRule shop/orders-orders-ui-dr",
    "Gateway shop/shop-orders-gw",
    "Secret istio-system/shop-orders-cert-secret",
    "VirtualService shop/orders-rule-0-vs",
    "VirtualService shop/orders-rule-1-vs",
    "VirtualService shop/orders-rule-2-vs",
];

/// Every object of `after` that was in `before` has the same uid and resourceVersion.
pub(crate) fn untouched(
    before: &BTreeMap<String, (String, String)>,
    after: &BTreeMap<String, (String, String)>,
) {
    for (k, v) in after {
        if let Some(was) = before.get(k) {
            assert_eq!(v, was, "{k} was touched");
        }
    }
}

#[test]
fn applications_render_as_reviewed() {
    let cfg = repo_root().join("examples/applications.yaml");
    let run = vz_bare(&["render", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(0);
    // Only the applications' documents: the platform's are the quick start's snapshot's business.
    let apps: Vec<&str> = run
        .stdout
        .split("---\n")
        .filter(|d| d.starts_with("# app"))
        .collect();
    assert!(apps.len() > 10, "{}", run.stdout);
    insta::assert_snapshot!("render_applications", apps.join("---\n"));
}

#[test]
fn an_application_is_destroyed_alone_and_one_removed_from_the_configuration_is_pruned() {
    let env = TestEnv::start();
    let cfg = config(&env, BILLING);
    env.vz(&["apply", "-f", &cfg, "--app", "orders", "--auto-approve"])
        .expect_code(exit::USAGE);
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
    let vs = env
        .get_json(&["virtualservice", "-n", "shop", "orders-rule-2-vs"])
        .expect("orders' third route");
    assert_eq!(
        vs["spec"]["hosts"],
        serde_json::json!(["orders.shop.192.0.2.11.nip.io"]),
        "only its own host"
    );
    let default_host = env
        .get_json(&["gateway", "-n", "web", "web-storefront-gw"])
        .expect("storefront's gateway");
    assert_eq!(
        default_host["spec"]["servers"][0]["hosts"],
        serde_json::json!(["storefront.web.192.0.2.11.nip.io"])
    );
    assert!(
        env.get_json(&["secret", "-n", "istio-system", "shop-orders-cert-secret"])
            .is_some()
    );

    let before = versions(&env);
    let destroyed = env.vz(&["destroy", "-f", &cfg, "--app", "orders", "--auto-approve"]);
    destroyed.expect_code(0);
    let after = versions(&env);
    let orders: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let mut want = ORDERS_OBJECTS.to_vec();
    want.push("Namespace /shop");
    want.sort_unstable();
    assert_eq!(
        orders, want,
        "exactly orders' objects and its namespace went"
    );
    untouched(&before, &after);
    let state =
        std::fs::read_to_string(env.work.path().join("applications.vzstate.json")).expect("state");
    assert!(!state.contains("app.orders/"), "dropped from the state");
    assert!(state.contains("app.storefront/"));

    // Removing billing from the configuration prunes it, and its namespace, at the next apply.
    let without = config(&env, "");
    let pruned = env.vz(&["apply", "-f", &without, "--auto-approve"]);
    pruned.expect_code(0);
    assert!(
        pruned
            .stdout
            .contains("- app.billing/Gateway/finance/finance-billing-gw")
    );
    assert!(
        env.get_json(&["namespace", "finance"])
            .is_none_or(|n| { n["status"]["phase"] == "Terminating" })
    );
    assert!(
        env.get_json(&["gateway", "-n", "web", "web-storefront-gw"])
            .is_some()
    );
    let unknown = env.vz(&[
        "destroy",
        "-f",
        &without,
        "--app",
        "billing",
        "--auto-approve",
    ]);
    unknown.expect_code(exit::USAGE);
    assert!(
        unknown
            .stderr
            .contains("the state records no application `billing`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn an_applications_dns_records_and_certificate_go_with_it() {
    let env = TestEnv::start();
    let dns = DnsServer::start();
    let secret = env.work.path().join("tsig.secret");
    std::fs::write(&secret, &dns.secret).expect("write secret");
    let cfg = env.write_config(
        "d.yaml",
        &format!(
            "environmentName: dev\ningress: {{type: NodePort, externalIPs: [192.0.2.50]}}\ndns:\n  rfc2136: {{server: '127.0.0.1:{}', zone: example.test, tsigKeyName: vz-key, tsigSecretFile: tsig.secret}}\ncomponents:\n  istio:\n    ingress: {{type: NodePort, externalIPs: [192.0.2.51]}}\n  keycloak: {{enabled: false}}\n  prometheus: {{enabled: false}}\nstate: {{path: d.json}}\n{BILLING}",
            dns.port
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let record = "billing.finance.dev.example.test. 60 IN A 192.0.2.51";
    assert!(
        dns.records().iter().any(|r| r == record),
        "{:?}",
        dns.records()
    );
    env.vz(&["destroy", "-f", cfg, "--app", "billing", "--auto-approve"])
        .expect_code(0);
    let left: Vec<String> = dns
        .records()
        .into_iter()
        .filter(|r| r.contains("billing"))
        .collect();
    assert!(left.is_empty(), "records left: {left:?}");
    assert!(
        env.get_json(&[
            "secret",
            "-n",
            "istio-system",
            "finance-billing-cert-secret"
        ])
        .is_none()
    );
    assert!(
        dns.records()
            .iter()
            .any(|r| r.starts_with("verrazzano-ingress.dev.example.test.")),
        "the platform's records stay"
    );
}

#[test]
fn application_mistakes_are_refused_where_they_are() {
    let env = TestEnv::start();
    for (app, says) in [
        (
            "  - {name: a, namespace: n, hosts: ['*.example.com']}\n",
            "application `a`: `*.example.com` is a wildcard",
        ),
        (
            "  - {name: a, namespace: n, ports: [80], rules: [{destination: {host: a, port: 81}}]}\n",
            "application `a`, rule 1: port 81 is not a port of the application",
        ),
        (
            "  - {name: a, namespace: n, hosts: [x.example.com]}\n  - {name: b, namespace: m, hosts: [x.example.com]}\n",
            "host `x.example.com` is also a host of application `a`",
        ),
        ("  - {name: a, namespace: n, colour: blue}\n", "colour"),
    ] {
        let cfg = env.write_config("bad.yaml", &format!("applications:\n{app}"));
        let run = env.vz(&["plan", "-f", cfg.to_str().expect("utf8")]);
        run.expect_code(exit::USAGE);
        assert!(run.stderr.contains(says), "{app}: {}", run.stderr);
        assert!(run.stderr.contains("bad.yaml:"), "located: {}", run.stderr);
    }
    // A namespace vz did not create is not taken over unless the application says `existing`.
    env.kubectl(&["create", "namespace", "legacy"])
        .expect_code(0);
    let cfg = env.write_config(
        "taken.yaml",
        "environmentName: dev\ningress: {type: NodePort}\ncomponents:\n  istio:\n    ingress: {type: NodePort}\n  keycloak: {enabled: false}\n  prometheus: {enabled: false}\nstate: {path: t.json}\napplications:\n  - {name: a, namespace: legacy}\n",
    );
    let cfg = cfg.to_str().expect("utf8");
    let run = env.vz(&["plan", "-f", cfg]);
    assert_ne!(run.code, 0);
    run.expect_stderr("existing: true");
}

#[test]
fn the_schema_describes_the_platform_and_application_files() {
    let platform = vz_bare(&["schema"]);
    platform.expect_code(0);
    let p: serde_json::Value = serde_json::from_str(&platform.stdout).expect("JSON");
    assert_eq!(p["title"], "vz platform");
    assert_eq!(
        p["additionalProperties"], false,
        "unknown fields are errors"
    );
    for field in [
        "environmentName",
        "dns",
        "applications",
        "applicationsDir",
        "certificates",
    ] {
        assert!(p["properties"].get(field).is_some(), "{field}");
    }
    let app = vz_bare(&["schema", "application"]);
    app.expect_code(0);
    let a: serde_json::Value = serde_json::from_str(&app.stdout).expect("JSON");
    assert_eq!(a["required"], serde_json::json!(["name", "namespace"]));
    assert_eq!(a["additionalProperties"], false);
    assert!(
        a["properties"]["ports"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("every destination must use one"))
    );
}

#[test]
fn destroying_an_application_needs_only_the_rbac_of_the_example() {
    let env = TestEnv::start();
    let cfg = config(&env, "");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    let rbac = repo_root().join("examples/orders-destroy-rbac.yaml");
    env.kubectl(&["apply", "-f", rbac.to_str().expect("utf8")])
        .expect_code(0);
    let kc = crate::common::token_kubeconfig(&env, "vz-jobs", "vz-destroy-orders");
    let kc = kc.as_str();
    // The service account may not touch the platform: a whole destroy is refused...
    let denied = vz_bare(&["--kubeconfig", kc, "destroy", "-f", &cfg, "--auto-approve"]);
    assert_ne!(denied.code, 0, "{}", denied.stderr);
    denied.expect_stderr("forbidden");
    assert!(
        env.get_json(&["gateway", "-n", "shop", "shop-orders-gw"])
            .is_some()
    );
    // ...but destroying its application goes through.
    vz_bare(&[
        "--kubeconfig",
        kc,
        "destroy",
        "-f",
        &cfg,
        "--app",
        "orders",
        "--auto-approve",
    ])
    .expect_code(0);
    assert!(
        env.get_json(&["gateway", "-n", "shop", "shop-orders-gw"])
            .is_none()
    );
    assert!(
        env.get_json(&["gateway", "-n", "web", "web-storefront-gw"])
            .is_some()
    );
}

/// `examples/oam.yaml`'s text, its `oam/` directory copied into the test's work directory.
pub(crate) fn oam_example(env: &TestEnv) -> String {
    let oam = env.work.path().join("oam");
    std::fs::create_dir_all(&oam).expect("oam dir");
    std::fs::copy(
        repo_root().join("examples/oam/orders.yaml"),
        oam.join("orders.yaml"),
    )
    .expect("copy");
    std::fs::read_to_string(repo_root().join("examples/oam.yaml")).expect("example")
}

#[test]
fn an_oam_application_applies_to_the_objects_of_its_vz_twin_and_is_destroyed_alone() {
    let env = TestEnv::start();
    let base = oam_example(&env);
    let cfg = env.write_config("oam.yaml", &base);
    let cfg = cfg.to_str().expect("utf8");
    // The team's namespace exists, as Verrazzano's users create it.
    env.kubectl(&["create", "namespace", "shop"]).expect_code(0);
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
    let before = versions(&env);
    let orders: Vec<&String> = before
        .keys()
        .filter(|k| k.contains("shop") && !k.starts_with("Namespace"))
        .collect();
    // What the vz-format orders makes, its namespace aside.
    assert_eq!(orders, ORDERS_OBJECTS);
    let ns = env.get_json(&["namespace", "shop"]).expect("namespace");
    assert_eq!(ns["metadata"]["labels"]["istio-injection"], "enabled");

    env.vz(&["destroy", "-f", cfg, "--app", "orders", "--auto-approve"])
        .expect_code(0);
    let after = versions(&env);
    assert!(after.keys().all(|k| !k.contains("shop")), "{after:?}");
    let ns = env
        .get_json(&["namespace", "shop"])
        .expect("the team's namespace stays");
    assert!(ns["status"]["phase"] != "Terminating");
    untouched(&before, &after);
}
