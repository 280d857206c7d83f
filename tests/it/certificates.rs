//! Certificates `vz` issues, checked from the outside: chains verified with `openssl` and read
//! with an X.509 parser, renewal planned with its reason, private keys kept out of every file and
//! output, and the real API server calling a webhook over TLS with the serving certificate and CA
//! bundle `vz` put in place.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use vz_providers::pki;

use crate::common::TestEnv;
use crate::testenv::{
    admitted_through_the_standin, refused_by_the_standin, trust, webhook_standin_service,
};

/// `openssl verify` of `cert` (with the rest of its chain as untrusted intermediates) against `ca`.
fn openssl_verifies(env: &TestEnv, ca: &str, chain: &str) -> bool {
    let dir = env.work.path();
    let certs = pki::split_certificates(chain);
    std::fs::write(dir.join("v-ca.pem"), ca).expect("write");
    std::fs::write(dir.join("v-leaf.pem"), &certs[0]).expect("write");
    std::fs::write(dir.join("v-chain.pem"), certs[1..].concat()).expect("write");
    std::process::Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "v-ca.pem",
            "-untrusted",
            "v-chain.pem",
            "v-leaf.pem",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl")
        .status
        .success()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[test]
fn every_ingress_tls_secret_verifies_against_the_bundle_and_cacerts_chains_to_the_root() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let bundle = env.secret_text("verrazzano-system", "verrazzano-tls-ca", "cacerts.pem");
    let root = pki::inspect(&bundle).expect("the bundle is a certificate");
    assert!(root.is_ca);
    assert!(
        root.common_name
            .as_deref()
            .is_some_and(|cn| cn.starts_with("verrazzano-root-ca-") && cn.len() == 27),
        "{:?}",
        root.common_name
    );

    let ingresses = env.get_json(&["ingresses", "-A"]).expect("ingresses");
    let ingresses = ingresses["items"].as_array().expect("items");
    assert_eq!(ingresses.len(), 5);
    for ing in ingresses {
        let ns = ing["metadata"]["namespace"].as_str().expect("ns");
        let tls = &ing["spec"]["tls"][0];
        let secret = tls["secretName"].as_str().expect("secret name");
        let hosts: Vec<String> = tls["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|h| h.as_str().expect("host").to_string())
            .collect();
        let s = env.get_json(&["secret", "-n", ns, secret]).expect("secret");
        assert_eq!(s["type"], "kubernetes.io/tls", "{ns}/{secret}");
        let chain = env.secret_text(ns, secret, "tls.crt");
        assert!(openssl_verifies(&env, &bundle, &chain), "{ns}/{secret}");
        let leaf = pki::inspect(&chain).expect("leaf");
        assert_eq!(
            leaf.sans, hosts,
            "{ns}/{secret}: SANs are the Ingress hosts"
        );
        assert!(leaf.server_auth && !leaf.is_ca);
        assert_eq!(leaf.issuer_key_id, root.key_id);
        let now = now();
        assert!(leaf.not_before <= now && now < leaf.not_after);
        let days = (leaf.not_after - now) / pki::DAY;
        assert!((89..=90).contains(&days), "90 days by default, not {days}");
        assert_eq!(env.secret_text(ns, secret, "ca.crt"), bundle);
        assert!(
            env.secret_text(ns, secret, "tls.key")
                .contains("PRIVATE KEY")
        );
    }

    // Istio's plug-in CA: an intermediate of the platform CA, which is its root.
    let inter = env.secret_text("istio-system", "cacerts", "ca-cert.pem");
    assert_eq!(
        env.secret_text("istio-system", "cacerts", "root-cert.pem"),
        bundle
    );
    assert!(pki::signed_by(&inter, &bundle).expect("parse"));
    assert!(pki::inspect(&inter).expect("inter").is_ca);
    let chain = env.secret_text("istio-system", "cacerts", "cert-chain.pem");
    assert_eq!(
        pki::split_certificates(&chain),
        [inter.clone(), bundle.clone()]
    );

    // No private key outside the cluster: not in the state, its backup, a saved plan or JSON.
    let dir = env.work.path();
    let saved = dir.join("saved.plan");
    env.vz(&["plan", "-f", &cfg, "--out", saved.to_str().expect("utf8")])
        .expect_code(0);
    let json = env.vz(&["plan", "-f", &cfg, "--json"]);
    json.expect_code(0);
    for file in [
        "quickstart.vzstate.json",
        "quickstart.vzstate.json.backup",
        "saved.plan",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect(file);
        assert!(!text.contains("PRIVATE KEY"), "{file}");
        assert!(
            !text.contains("LS0tLS1CRUdJTiBQUklWQVRF"),
            "{file}: base64 of a key"
        );
    }
    assert!(
        !json.stdout.contains("PRIVATE KEY") && !json.stdout.contains("LS0tLS1CRUdJTiBQUklWQVRF")
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("quickstart.vzstate.json")).expect("state"),
    )
    .expect("JSON");
    let record = state["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["name"] == "verrazzano-tls")
        .expect("recorded");
    assert_eq!(
        record["certificate"]["sans"][0],
        "verrazzano.quickstart.127.0.0.1.nip.io"
    );
    assert_eq!(
        record["certificate"]["issuer_key_id"].as_str(),
        root.key_id.as_deref()
    );
}

#[test]
fn a_certificate_due_for_renewal_is_planned_with_its_date_and_one_far_from_expiry_is_not() {
    let env = TestEnv::start();
    let base = "environmentName: r\ningress: {type: NodePort}\ncomponents:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n  keycloak: {enabled: false}\n  prometheus: {enabled: false}\n  grafana: {enabled: false}\nstate: {path: r.json}\n";
    let cfg = env.write_config(
        "r.yaml",
        &format!("{base}certificates: {{validityDays: 31, renewBeforeDays: 30}}\n"),
    );
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
    let old = pki::inspect(&env.secret_text("verrazzano-system", "verrazzano-tls", "tls.crt"))
        .expect("leaf");

    // Renewal now starts 35 days ahead: the 31-day leaf is due, the CA (10 years) is not.
    env.write_config(
        "r.yaml",
        &format!("{base}certificates: {{validityDays: 60, renewBeforeDays: 35}}\n"),
    );
    let plan = env.vz(&["plan", "-f", cfg, "--detailed-exitcode"]);
    plan.expect_code(2);
    let expiry = vz_date(old.not_after);
    assert!(
        plan.stdout.contains(&format!(
            "-/+ certificates.tls/Secret/verrazzano-system/verrazzano-tls  # certificate issued again: expires {expiry} (within renewBeforeDays: 35)"
        )),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("verrazzano-ca-certificate-secret"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("(1 certificate(s) issued again)"),
        "{}",
        plan.stdout
    );
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let new = pki::inspect(&env.secret_text("verrazzano-system", "verrazzano-tls", "tls.crt"))
        .expect("leaf");
    assert_ne!(new.fingerprint, old.fingerprint);
    assert!((59..=60).contains(&((new.not_after - now()) / pki::DAY)));
    // `--certificates` lists each one, the CA first, with its expiry and when it becomes due,
    // as the certificate in the cluster says.
    let listed = env.vz(&["plan", "-f", cfg, "--detailed-exitcode", "--certificates"]);
    listed.expect_code(0);
    let rows: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| l.starts_with("  certificates."))
        .collect();
    assert!(
        rows.len() == 2
            && rows[0].starts_with(
                "  certificates.ca/Secret/cert-manager/verrazzano-ca-certificate-secret "
            )
            && rows[1].contains(&format!("leaf: expires {} (in ", vz_date(new.not_after)))
            && rows[1].contains(&format!(
                "renewal due from {}",
                vz_date(new.not_after - 35 * pki::DAY)
            )),
        "{}",
        listed.stdout
    );
    // Without refresh the state's facts tell the same.
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode", "--refresh=false"])
        .expect_code(0);

    // A webhook Service renamed: exactly its serving certificate is issued again.
    let hook = |svc: &str| {
        format!(
            "{base}certificates:\n  validityDays: 60\n  renewBeforeDays: 35\n  webhooks: [{{service: {svc}, namespace: verrazzano-install, secretPrefix: op}}]\n"
        )
    };
    env.write_config("r.yaml", &hook("op-webhook"));
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    env.write_config("r.yaml", &hook("operator-webhook"));
    let plan = env.vz(&["plan", "-f", cfg]);
    plan.expect_code(0);
    let changed: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.starts_with("  -/+ ") || l.starts_with("  ~ ") || l.starts_with("  + "))
        .collect();
    assert_eq!(
        changed,
        [
            "  -/+ certificates.webhooks/Secret/verrazzano-install/op-tls  # certificate issued again: names change: [op-webhook, op-webhook.verrazzano-install, op-webhook.verrazzano-install.svc, op-webhook.verrazzano-install.svc.cluster.local] -> [operator-webhook, operator-webhook.verrazzano-install, operator-webhook.verrazzano-install.svc, operator-webhook.verrazzano-install.svc.cluster.local]"
        ],
        "{}",
        plan.stdout
    );
}

/// A Unix time as `vz` prints dates.
fn vz_date(unix: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

#[test]
fn the_api_server_calls_a_webhook_with_the_certificate_and_bundle_vz_issued() {
    let env = TestEnv::start();
    webhook_standin_service(&env);
    // The operator's configuration exists, trusting some other CA: calls fail until vz's bundle.
    trust(
        &env,
        &std::fs::read(env.plane_file("pki/apiserver.crt")).expect("another certificate"),
    );
    let cfg = env.write_config(
        "w.yaml",
        "environmentName: w\ningress: {type: NodePort}\ncomponents:\n  istio: {enabled: false}\n  kiali: {enabled: false}\nstate: {path: w.json}\ncertificates:\n  webhooks:\n    - service: webhook-standin\n      namespace: default\n      configurations:\n        - MutatingWebhookConfiguration/standin-injector\n        - ValidatingWebhookConfiguration/standin-validator\n",
    );
    let cfg = cfg.to_str().expect("utf8");

    // The validator's operator is not installed yet: pending, named, and exit code 2.
    let plan = env.vz(&["plan", "-f", cfg, "--detailed-exitcode"]);
    plan.expect_code(2);
    plan.expect_stdout("~ certificates.webhooks/ValidatingWebhookConfiguration/standin-validator  # pending: does not exist yet");
    let apply = env.vz(&["apply", "-f", cfg, "--auto-approve"]);
    apply.expect_code(0);
    apply.expect_stdout("1 pending");

    // The serving certificate names the Service; the injector trusts vz's CA and only that field
    // is vz's.
    let ca = env.secret_text("default", "webhook-standin-ca", "tls.crt");
    let tls = pki::inspect(&env.secret_text("default", "webhook-standin-tls", "tls.crt"))
        .expect("serving certificate");
    assert_eq!(
        tls.sans,
        [
            "webhook-standin",
            "webhook-standin.default",
            "webhook-standin.default.svc",
            "webhook-standin.default.svc.cluster.local"
        ]
    );
    let injector = env
        .get_json(&["mutatingwebhookconfiguration", "standin-injector"])
        .expect("injector");
    assert_eq!(
        injector["webhooks"][0]["clientConfig"]["caBundle"].as_str(),
        Some(crate::common::base64(ca.as_bytes()).as_str())
    );
    assert!(
        injector["metadata"]["labels"]
            .get("app.kubernetes.io/managed-by")
            .is_none()
    );

    // The API server calls the stand-in, which serves vz's -tls Secret, and trusts it.
    let mut n = 0;
    admitted_through_the_standin(&env, &mut n);

    // Someone puts another CA in: the API server refuses the call; vz sees it and puts its back.
    trust(
        &env,
        &std::fs::read(env.plane_file("pki/apiserver.crt")).expect("another certificate"),
    );
    let refused = refused_by_the_standin(&env, &mut n);
    assert!(refused.contains("x509"), "{refused}");
    let plan = env.vz(&["plan", "-f", cfg]);
    assert!(
        plan.stdout.contains("changed outside vz") && plan.stdout.contains("standin-injector"),
        "{}",
        plan.stdout
    );
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    admitted_through_the_standin(&env, &mut n);

    // The validator's operator arrives: the next apply patches it.
    let validator = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "standin-validator"},
        "webhooks": [{
            "name": "validate.standin.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"service": {"namespace": "default", "name": "webhook-standin", "path": "/validate"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
        }],
    });
    let file = env.work.path().join("validator.json");
    std::fs::write(&file, validator.to_string()).expect("write");
    env.kubectl(&["apply", "-f", file.to_str().expect("utf8")])
        .expect_code(0);
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
    let v = env
        .get_json(&["validatingwebhookconfiguration", "standin-validator"])
        .expect("validator");
    assert_eq!(
        v["webhooks"][0]["clientConfig"]["caBundle"].as_str(),
        Some(crate::common::base64(ca.as_bytes()).as_str())
    );
}

#[test]
fn a_ca_rotation_that_fails_midway_leaves_the_old_ca_and_its_certificates() {
    let env = TestEnv::start();
    let base = "environmentName: c\ningress: {type: NodePort}\ncomponents:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n  keycloak: {enabled: false}\nstate: {path: c.json}\n";
    let cfg = env.write_config("c.yaml", base);
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let ca_before = env.secret_text(
        "cert-manager",
        "verrazzano-ca-certificate-secret",
        "tls.crt",
    );
    let leaf_before = env.secret_text("verrazzano-system", "verrazzano-tls", "tls.crt");
    let state_before = std::fs::read_to_string(env.work.path().join("c.json")).expect("state");

    // RSA keys from now on: the CA is issued again, then every leaf. Plan that, then refuse the
    // leaves' updates (after the plan: its dry runs would be refused too).
    env.write_config(
        "c.yaml",
        &format!("{base}certificates: {{keyAlgorithm: RSA-2048}}\n"),
    );
    let saved = env.work.path().join("rotate.plan");
    let saved = saved.to_str().expect("utf8");
    env.vz(&["plan", "-f", cfg, "--out", saved]).expect_code(0);
    let deny = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "deny-secret-updates"},
        "webhooks": [{
            "name": "deny-secrets.vz.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 2,
            "clientConfig": {"url": "https://127.0.0.1:1/deny"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["secrets"]}],
            "namespaceSelector": {"matchLabels": {"verrazzano.io/namespace": "verrazzano-system"}},
        }],
    });
    let file = env.work.path().join("deny.json");
    std::fs::write(&file, deny.to_string()).expect("write");
    env.kubectl(&["create", "-f", file.to_str().expect("utf8")])
        .expect_code(0);
    // The API server picks the webhook up asynchronously: wait until it refuses an update.
    env.eventually(
        std::time::Duration::from_secs(30),
        "the webhook to refuse",
        || {
            let run = env.kubectl(&[
                "label",
                "secret",
                "-n",
                "verrazzano-system",
                "verrazzano-tls",
                "probe=1",
                "--overwrite",
            ]);
            (!run.ok()).then_some(())
        },
    );

    let run = env.vz(&["apply", saved]);
    run.expect_code(crate::common::exit::ROLLED_BACK);
    run.expect_stderr("restored Secret cert-manager/verrazzano-ca-certificate-secret");
    assert_eq!(
        env.secret_text(
            "cert-manager",
            "verrazzano-ca-certificate-secret",
            "tls.crt"
        ),
        ca_before,
        "the old CA is back"
    );
    let leaf = env.secret_text("verrazzano-system", "verrazzano-tls", "tls.crt");
    assert_eq!(leaf, leaf_before);
    assert!(
        pki::signed_by(&leaf, &ca_before).expect("parse"),
        "and still matches it"
    );
    let bundle = env.secret_text("verrazzano-system", "verrazzano-tls-ca", "cacerts.pem");
    assert_eq!(bundle, ca_before, "the bundle too");
    let state = std::fs::read_to_string(env.work.path().join("c.json")).expect("state");
    let objects = |s: &str| serde_json::from_str::<Value>(s).expect("JSON")["objects"].clone();
    assert_eq!(objects(&state), objects(&state_before));
}
