//! DNS records against a real BIND (`scripts/dns-server`): created, planned clean, drift put back,
//! foreign records refused, wrong keys reported, rolled back, and nothing leaked by destroy.

use crate::common::{DnsServer, TestEnv, exit};

const NGINX_NS: &str = "verrazzano-ingress-nginx";
const NGINX_SVC: &str = "ingress-controller-ingress-nginx-controller";

/// A small platform whose records go to `dns`; `ingress` is the `ingress:` line.
fn config(env: &TestEnv, dns: &DnsServer, ingress: &str, extra: &str) -> String {
    let secret = env.work.path().join("tsig.secret");
    std::fs::write(&secret, &dns.secret).expect("write secret");
    let cfg = env.write_config(
        "d.yaml",
        &format!(
            "environmentName: dev\n{ingress}\ndns:\n  rfc2136: {{server: '127.0.0.1:{}', zone: example.test, tsigKeyName: vz-key, tsigSecretFile: tsig.secret}}\ncomponents:\n  istio: {{enabled: false}}\n  kiali: {{enabled: false}}\n  keycloak: {{enabled: false}}\n  prometheus: {{enabled: false}}\nstate: {{path: d.json}}\n{extra}",
            dns.port
        ),
    );
    cfg.to_str().expect("utf8").to_string()
}

const NODE_PORT: &str = "ingress: {type: NodePort, externalIPs: [192.0.2.50]}";

/// Whether the zone holds this record (as `dig` prints it, whitespace collapsed).
fn has_record(dns: &DnsServer, record: &str) -> bool {
    platform_records(dns).iter().any(|r| r == record)
}

/// The zone's records other than its SOA, NS and the server's own address.
fn platform_records(dns: &DnsServer) -> Vec<String> {
    dns.records()
        .into_iter()
        .filter(|r| {
            !r.contains(" SOA ") && !r.contains(" NS ") && !r.starts_with("ns.example.test.")
        })
        .collect()
}

#[test]
fn apply_writes_the_records_plans_clean_repairs_drift_and_destroy_leaks_nothing() {
    let env = TestEnv::start();
    let dns = DnsServer::start();
    let cfg = config(&env, &dns, NODE_PORT, "");
    let applied = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    applied.expect_code(0);
    let records = platform_records(&dns);
    for want in [
        "verrazzano-ingress.dev.example.test. 60 IN A 192.0.2.50",
        "verrazzano.dev.example.test. 60 IN CNAME verrazzano-ingress.dev.example.test.",
        "grafana.vmi.system.dev.example.test. 60 IN CNAME verrazzano-ingress.dev.example.test.",
    ] {
        assert!(records.iter().any(|r| r == want), "{want} in {records:?}");
    }
    assert!(
        records
            .iter()
            .any(|r| r.starts_with("_vz.verrazzano-ingress.dev.example.test. 60 IN TXT \"heritage=vz,vz/platform=dev,vz/uid=")),
        "{records:?}"
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);

    // Someone points the name elsewhere: the plan shows it, apply puts it back.
    dns.nsupdate(
        Some(&dns.secret),
        "update delete verrazzano-ingress.dev.example.test A\nupdate add verrazzano-ingress.dev.example.test 60 A 203.0.113.9",
    )
    .expect_code(0);
    let plan = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout.contains(
            "  ~ dns/A/verrazzano-ingress.dev.example.test  # changed outside vz; will be put back"
        ) && plan
            .stdout
            .contains("~ spec.values[0]: \"203.0.113.9\" -> \"192.0.2.50\""),
        "{}",
        plan.stdout
    );
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert!(has_record(
        &dns,
        "verrazzano-ingress.dev.example.test. 60 IN A 192.0.2.50"
    ));

    // The secret is nowhere but in its file.
    let state = std::fs::read_to_string(env.work.path().join("d.json")).expect("state");
    let json = env.vz(&["plan", "-f", &cfg, "--json"]);
    for text in [&state, &applied.stdout, &applied.stderr, &json.stdout] {
        assert!(!text.contains(&dns.secret));
    }

    // Destroy removes every record and every ownership record: none leaked.
    let destroyed = env.vz(&["destroy", "-f", &cfg, "--auto-approve"]);
    destroyed.expect_code(0);
    let left = platform_records(&dns);
    assert_eq!(left, Vec::<String>::new(), "leaked records");
}

#[test]
fn a_new_load_balancer_address_updates_the_a_record() {
    let env = TestEnv::start();
    let dns = DnsServer::start();
    let cfg = config(&env, &dns, "ingress: {type: LoadBalancer}", "");
    env.set_node_sim(
        "load-balancers",
        &format!("{NGINX_NS}/{NGINX_SVC}=192.0.2.60"),
    );
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert!(has_record(
        &dns,
        "verrazzano-ingress.dev.example.test. 60 IN A 192.0.2.60"
    ));
    // The cloud gives the load balancer another address.
    env.set_node_sim(
        "load-balancers",
        &format!("{NGINX_NS}/{NGINX_SVC}=198.51.100.8"),
    );
    env.eventually(
        std::time::Duration::from_secs(30),
        "the new address",
        || {
            let svc = env.get_json(&["service", "-n", NGINX_NS, NGINX_SVC])?;
            (svc["status"]["loadBalancer"]["ingress"][0]["ip"] == "198.51.100.8").then_some(())
        },
    );
    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_stdout("~ spec.values[0]: \"192.0.2.60\" -> \"198.51.100.8\"");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert!(has_record(
        &dns,
        "verrazzano-ingress.dev.example.test. 60 IN A 198.51.100.8"
    ));
}

#[test]
fn a_record_someone_else_made_is_refused_unless_adopted_and_then_only_released() {
    let env = TestEnv::start();
    let dns = DnsServer::start();
    dns.nsupdate(
        Some(&dns.secret),
        "update add grafana.vmi.system.dev.example.test 300 CNAME elsewhere.example.test.",
    )
    .expect_code(0);
    let cfg = config(&env, &dns, NODE_PORT, "");
    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_code(exit::USAGE);
    assert!(
        plan.stderr
            .contains("CNAME grafana.vmi.system.dev.example.test exists and was not created by vz")
            && plan
                .stderr
                .contains("adopt: [dns/CNAME/grafana.vmi.system.dev.example.test]"),
        "{}",
        plan.stderr
    );
    let cfg = config(
        &env,
        &dns,
        NODE_PORT,
        "adopt: [dns/CNAME/grafana.vmi.system.dev.example.test]\n",
    );
    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_stdout("  ~ dns/CNAME/grafana.vmi.system.dev.example.test  # exists but is not managed by vz; will be taken over");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["destroy", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    // Released, not deleted: the record stays (pointing where vz last set it), its ownership goes.
    let left = platform_records(&dns);
    assert_eq!(
        left,
        ["grafana.vmi.system.dev.example.test. 60 IN CNAME verrazzano-ingress.dev.example.test."],
        "{left:?}"
    );
}

#[test]
fn a_wrong_tsig_key_is_reported_and_nothing_is_written() {
    let env = TestEnv::start();
    let dns = DnsServer::start();
    let cfg = config(&env, &dns, NODE_PORT, "");
    std::fs::write(
        env.work.path().join("tsig.secret"),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )
    .expect("write");
    let run = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    assert_ne!(run.code, 0);
    run.expect_stderr("did not accept the TSIG signature");
    assert_eq!(platform_records(&dns), Vec::<String>::new());
    // No secret at all: said before anything is planned.
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        "tsigSecretFile: tsig.secret",
        "tsigSecretEnv: VZ_NO_SUCH_SECRET",
    );
    std::fs::write(&cfg, text).expect("write");
    let run = env.vz(&["plan", "-f", &cfg]);
    assert_ne!(run.code, 0);
    run.expect_stderr("environment variable VZ_NO_SUCH_SECRET");
}

#[test]
fn a_failed_apply_rolls_its_records_back() {
    let env = TestEnv::start();
    let dns = DnsServer::start();
    let cfg = config(&env, &dns, NODE_PORT, "");
    let saved = env.work.path().join("d.plan");
    let saved = saved.to_str().expect("utf8");
    env.vz(&["plan", "-f", &cfg, "--out", saved]).expect_code(0);
    // Between plan and apply, someone takes one of the names.
    dns.nsupdate(
        Some(&dns.secret),
        "update add verrazzano.dev.example.test 300 A 203.0.113.1",
    )
    .expect_code(0);
    let run = env.vz(&["apply", saved]);
    run.expect_code(exit::ROLLED_BACK);
    run.expect_stderr("verrazzano.dev.example.test");
    // Only theirs is left.
    assert_eq!(
        platform_records(&dns),
        ["verrazzano.dev.example.test. 300 IN A 203.0.113.1"]
    );
}
