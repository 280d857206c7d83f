//! ExternalDNS (`dns.externalDNS`), which the test plane cannot really run: its objects are applied
//! and planned clean, its credentials copied without passing through the plan or the state, and
//! destroy's final sync is checked as far as the plane goes — the Job is created after the sources
//! are gone and before ExternalDNS is deleted, and its failure (the node simulator makes its pod
//! exit 1 with a log line) stops destroy with that line. That ExternalDNS really removes records
//! from a provider's zone is not tested here.

use crate::common::{TestEnv, exit};

const TOKEN: &str = "s3cr3t-t0ken";
const ES: &str = "verrazzano-system";

/// A small platform with ExternalDNS for OCI, its credentials in `default/oci-dns`.
fn config(env: &TestEnv) -> String {
    let cfg = env.write_config(
        "x.yaml",
        "environmentName: dev\ningress: {type: NodePort, externalIPs: [192.0.2.50]}\ndns:\n  externalDNS:\n    provider: oci\n    zone: example.com\n    credentials: {secretName: oci-dns}\n    env: [{name: TOKEN, credentialsKey: token}]\n    args: ['--oci-zone-scope=GLOBAL']\ncomponents:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n  keycloak: {enabled: false}\n  prometheus: {enabled: false}\nstate: {path: x.json}\n",
    );
    cfg.to_str().expect("utf8").to_string()
}

fn create_credentials(env: &TestEnv) {
    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "oci-dns",
        "-n",
        "default",
        "--from-literal=oci.yaml=auth: {region: us-ashburn-1}",
        &format!("--from-literal=token={TOKEN}"),
    ])
    .expect_code(0);
}

/// The line of `text` that contains `needle`, by number.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle} in\n{text}"))
}

#[test]
fn external_dns_is_installed_with_copied_credentials_and_destroy_syncs_it_after_its_sources() {
    let env = TestEnv::start();
    let cfg = config(&env);

    let missing = env.vz(&["plan", "-f", &cfg]);
    assert_ne!(missing.code, 0, "plan without the credentials Secret");
    assert!(
        missing.stderr.contains("Secret default/oci-dns")
            && missing.stderr.contains("kubectl create secret"),
        "{}",
        missing.stderr
    );

    env.kubectl(&[
        "create",
        "secret",
        "generic",
        "oci-dns",
        "-n",
        "default",
        "--from-literal=oci.yaml=x",
    ])
    .expect_code(0);
    let no_key = env.vz(&["plan", "-f", &cfg]);
    assert!(
        no_key
            .stderr
            .contains("Secret default/oci-dns holds no `token`"),
        "the environment reads `token`: {}",
        no_key.stderr
    );
    env.kubectl(&["delete", "secret", "oci-dns", "-n", "default"])
        .expect_code(0);

    create_credentials(&env);
    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_code(0);
    let applied = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    applied.expect_code(0);
    for text in [&plan.stdout, &plan.stderr, &applied.stdout, &applied.stderr] {
        assert!(!text.contains(TOKEN), "the token is shown:\n{text}");
    }
    let state = std::fs::read_to_string(env.work.path().join("x.json")).expect("state");
    assert!(!state.contains(TOKEN) && !state.contains(&crate::common::base64(TOKEN.as_bytes())));

    assert_eq!(env.secret_text(ES, "oci-dns", "token"), TOKEN);
    assert_eq!(
        env.secret_text(ES, "oci-dns", "oci.yaml"),
        "auth: {region: us-ashburn-1}"
    );
    let d = env
        .get_json(&["deployment", "-n", ES, "external-dns"])
        .expect("ExternalDNS Deployment");
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    for want in [
        "--provider=oci",
        "--txt-owner-id=vz-dev",
        "--policy=sync",
        "--domain-filter=example.com",
        "--oci-zone-scope=GLOBAL",
    ] {
        assert!(args.contains(want), "{want} in {args}");
    }
    let svc = env
        .get_json(&[
            "service",
            "-n",
            "verrazzano-ingress-nginx",
            "ingress-controller-ingress-nginx-controller",
        ])
        .expect("NGINX Service");
    assert_eq!(
        svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
        "verrazzano-ingress.dev.example.com"
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);

    let destroyed = env.vz(&["destroy", "-f", &cfg, "--auto-approve"]);
    destroyed.expect_code(0);
    let out = &destroyed.stderr;
    let synced = line_of(out, "external-dns: final sync done");
    assert!(
        line_of(
            out,
            "system-ingresses/Ingress/verrazzano-system/vmi-system-grafana: deleted"
        ) < synced
    );
    assert!(
        line_of(
            out,
            "ingress-nginx/Service/verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller: deleted"
        ) < synced
    );
    assert!(
        synced
            < line_of(
                out,
                "external-dns/Deployment/verrazzano-system/external-dns: deleted"
            )
    );
    assert!(
        env.list_names(&["jobs", "-A"]).is_empty(),
        "the Job is gone"
    );
}

#[test]
fn a_failed_final_sync_stops_destroy_with_its_log_and_keeps_external_dns_until_told_otherwise() {
    let env = TestEnv::start();
    let cfg = config(&env);
    create_credentials(&env);
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    env.set_node_sim(
        "failing",
        "verrazzano-system/external-dns-final-sync=level=fatal msg=\"oci: NotAuthenticated, http status code: 401\"",
    );

    let failed = env.vz(&["destroy", "-f", &cfg, "--auto-approve"]);
    failed.expect_code(exit::PARTIAL);
    assert!(
        failed
            .stderr
            .contains("ExternalDNS could not remove the records of this platform (TXT owner id vz-dev)")
            && failed.stderr.contains("exited with 1 (Error): level=fatal msg=\"oci: NotAuthenticated, http status code: 401\"")
            && failed.stderr.contains("--leave-dns-records"),
        "{}",
        failed.stderr
    );
    let d = env
        .get_json(&["deployment", "-n", ES, "external-dns"])
        .expect("ExternalDNS is kept");
    assert_eq!(d["spec"]["replicas"], 0, "and scaled to 0");
    assert!(
        env.list_names(&["ingresses", "-A"]).is_empty(),
        "its sources are gone"
    );

    let left = env.vz(&[
        "destroy",
        "-f",
        &cfg,
        "--auto-approve",
        "--leave-dns-records",
    ]);
    left.expect_code(0);
    left.expect_stderr("no final sync (--leave-dns-records): the records it made stay in the zone");
    assert!(
        env.get_json(&["deployment", "-n", ES, "external-dns"])
            .is_none()
    );
}
