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
    // The console, Prometheus, Grafana, OpenSearch, OpenSearch Dashboards, Kiali, Keycloak, Rancher.
    assert_eq!(ingresses.len(), 8);
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
    let base = "environmentName: r\ningress: {type: NodePort}\ncomponents:\n  istio: {enabled: false}\n  kiali: {enabled: false}\n  keycloak: {enabled: false}\n  prometheus: {enabled: false}\n  grafana: {enabled: false}\n  opensearch: {enabled: false}\n  opensearchDashboards: {enabled: false}\n  rancher: {enabled: false}\nstate: {path: r.json}\n";
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

    // RSA keys from now on, with no overlap: the CA is issued again at once, then every leaf.
    // Plan that, then refuse the leaves' updates (after the plan: its dry runs would be refused
    // too).
    env.write_config(
        "c.yaml",
        &format!("{base}certificates: {{keyAlgorithm: RSA-2048, caOverlap: 0s}}\n"),
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

/// A TLS handshake, as a client trusting `bundle` (PEM) makes it to a server presenting `chain`
/// and its `key` (PEM) for `host`: a Python server and client on loopback, the client verifying
/// the chain and the name. `Err` holds the client's error.
fn handshake(
    env: &TestEnv,
    chain: &str,
    key: &str,
    bundle: &str,
    host: &str,
) -> Result<(), String> {
    const SCRIPT: &str = r#"
import socket, ssl, sys, threading
chain, key, bundle, host = sys.argv[1:5]
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(chain, key)
listener = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = listener.accept()
    try:
        with server.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")
    except (ssl.SSLError, OSError):
        pass
threading.Thread(target=serve, daemon=True).start()
client = ssl.create_default_context(cafile=bundle)
try:
    with socket.create_connection(listener.getsockname(), timeout=10) as raw:
        with client.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.recv(2) == b"ok"
except ssl.SSLError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
"#;
    let dir = tempfile::tempdir_in(env.work.path()).expect("temp dir");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    };
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &file("chain.pem", chain),
            &file("key.pem", key),
            &file("bundle.pem", bundle),
            host,
        ])
        .output()
        .expect("python3");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// What a phase of a rotation is checked with: a server certificate, its key and its name.
#[derive(Clone)]
struct Served {
    chain: String,
    key: String,
    host: String,
}

impl Served {
    /// The certificate of Secret `ns/secret`, for its first name.
    fn of(env: &TestEnv, ns: &str, secret: &str) -> Served {
        let chain = env.secret_text(ns, secret, "tls.crt");
        let host = pki::inspect(&chain).expect("certificate").sans[0].clone();
        Served {
            key: env.secret_text(ns, secret, "tls.key"),
            chain,
            host,
        }
    }

    fn trusted(&self, env: &TestEnv, bundle: &str) -> Result<(), String> {
        handshake(env, &self.chain, &self.key, bundle, &self.host)
    }
}

/// `vz apply` while the API server's calls to the webhook are probed (pods labelled for the
/// stand-in's injector, created one after another): none may be refused.
fn apply_without_a_refused_call(env: &TestEnv, args: &[&str], tag: &str) -> crate::common::Run {
    let mut running = env.spawn_vz(args);
    let mut refusals = Vec::new();
    let mut n = 0;
    while !running.ended() {
        n += 1;
        let run = env.kubectl(&[
            "run",
            &format!("{tag}-{n}"),
            "--image=example.test/p:1",
            "--labels=inject=yes",
        ]);
        if !run.ok() {
            refusals.push(run.stderr);
        }
    }
    assert!(n > 1, "the calls were probed during the apply");
    assert!(
        refusals.is_empty(),
        "the API server could not call the webhook during `vz {}`: {refusals:?}",
        args.join(" ")
    );
    running.wait()
}

#[test]
fn a_ca_rotation_keeps_every_tls_handshake_working_through_announce_switch_and_trim() {
    let env = TestEnv::start();
    webhook_standin_service(&env);
    trust(
        &env,
        &std::fs::read(env.plane_file("pki/apiserver.crt")).expect("another certificate"),
    );
    let overlap = 30;
    let cfg = env.write_config(
        "r.yaml",
        &format!(
            "environmentName: r\ningress: {{type: NodePort}}\nstate: {{path: r.json}}\ncertificates:\n  caOverlap: {overlap}s\n  webhooks:\n    - service: webhook-standin\n      namespace: default\n      configurations: [MutatingWebhookConfiguration/standin-injector]\n"
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let ca = |key: &str| env.secret_text("cert-manager", "verrazzano-ca-certificate-secret", key);
    let hook_ca = |key: &str| env.secret_text("default", "webhook-standin-ca", key);
    let bundle = || env.secret_text("verrazzano-system", "verrazzano-tls-ca", "cacerts.pem");
    let ca_bundle = || {
        let injector = env
            .get_json(&["mutatingwebhookconfiguration", "standin-injector"])
            .expect("injector");
        crate::common::base64_text(
            injector["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or_default(),
        )
    };
    let console = || Served::of(&env, "verrazzano-system", "verrazzano-tls");
    let hook = || Served::of(&env, "default", "webhook-standin-tls");
    // Istio's plug-in CA trusts what the platform CA trusts, and chains to it.
    let cacerts_trusts = |bundle: &str| {
        assert_eq!(
            env.secret_text("istio-system", "cacerts", "root-cert.pem"),
            bundle
        );
        let inter = env.secret_text("istio-system", "cacerts", "ca-cert.pem");
        assert!(
            pki::split_certificates(bundle)
                .iter()
                .any(|root| pki::signed_by(&inter, root).expect("parse")),
            "cacerts is signed by a CA of the bundle"
        );
    };
    let (ca0, hook_ca0) = (ca("tls.crt"), hook_ca("tls.crt"));
    let (console0, hook0, bundle0) = (console(), hook(), bundle());
    assert_eq!(bundle0, ca0);
    console0.trusted(&env, &bundle0).expect("phase 0: console");
    hook0.trusted(&env, &ca_bundle()).expect("phase 0: webhook");
    let mut n = 0;
    admitted_through_the_standin(&env, &mut n);

    // 1. Announce: the new CAs join every bundle; nothing served changes.
    let replace = [
        "--replace",
        "certificates.ca/Secret/cert-manager/verrazzano-ca-certificate-secret",
        "--replace",
        "certificates.webhook-ca/Secret/default/webhook-standin-ca",
    ];
    let plan = env.vz(&[&["plan", "-f", cfg][..], &replace].concat());
    plan.expect_code(0);
    plan.expect_stdout("~ certificates.ca/Secret/cert-manager/verrazzano-ca-certificate-secret  # CA rotation begins (its replacement is requested): a new CA joins its trust bundle and signs from the first apply after ");
    plan.expect_stdout("~ certificates.tls/Secret/verrazzano-system/verrazzano-tls-ca  # copies the trust bundle of Secret cert-manager/verrazzano-ca-certificate-secret, which a new CA joins");
    assert!(!plan.stdout.contains("issued again"), "{}", plan.stdout);
    let announce = [&["apply", "-f", cfg, "--auto-approve"][..], &replace].concat();
    apply_without_a_refused_call(&env, &announce, "announce").expect_code(0);
    let ca1 = ca("next.crt");
    let hook_ca1 = hook_ca("next.crt");
    assert_eq!(
        (ca("tls.crt"), hook_ca("tls.crt")),
        (ca0.clone(), hook_ca0.clone())
    );
    let bundle1 = bundle();
    assert_eq!(bundle1, format!("{ca1}{ca0}"));
    assert_eq!(ca_bundle(), format!("{hook_ca1}{hook_ca0}"));
    cacerts_trusts(&bundle1);
    assert_eq!(
        console().chain,
        console0.chain,
        "the console's certificate is kept"
    );
    console0
        .trusted(&env, &bundle1)
        .expect("phase 1: old certificate, new bundle");
    console0
        .trusted(&env, &bundle0)
        .expect("phase 1: old certificate, old bundle");
    hook0.trusted(&env, &ca_bundle()).expect("phase 1: webhook");
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);

    // 2. Switch, once the overlap is over: the new CAs sign, every certificate is issued again,
    //    and both CAs stay trusted.
    std::thread::sleep(std::time::Duration::from_secs(overlap as u64));
    let plan = env.vz(&["plan", "-f", cfg]);
    plan.expect_code(0);
    plan.expect_stdout("-/+ certificates.ca/Secret/cert-manager/verrazzano-ca-certificate-secret  # certificate issued again: CA rotation: verrazzano-root-ca-");
    plan.expect_stdout("-/+ certificates.webhooks/Secret/default/webhook-standin-tls  # certificate issued again: its issuer, Secret default/webhook-standin-ca, is issued again (CA rotation: ");
    apply_without_a_refused_call(&env, &["apply", "-f", cfg, "--auto-approve"], "switch")
        .expect_code(0);
    assert_eq!(
        (ca("tls.crt"), hook_ca("tls.crt")),
        (ca1.clone(), hook_ca1.clone())
    );
    assert_eq!(bundle(), bundle1, "the bundles do not change");
    let (console2, hook2) = (console(), hook());
    assert!(pki::signed_by(&console2.chain, &ca1).expect("parse"));
    assert!(pki::signed_by(&hook2.chain, &hook_ca1).expect("parse"));
    cacerts_trusts(&bundle1);
    console2
        .trusted(&env, &bundle1)
        .expect("phase 2: new certificate");
    console0
        .trusted(&env, &bundle1)
        .expect("phase 2: a server still presenting the old one");
    hook2.trusted(&env, &ca_bundle()).expect("phase 2: webhook");
    hook0
        .trusted(&env, &ca_bundle())
        .expect("phase 2: old webhook certificate");
    assert!(
        console2.trusted(&env, &bundle0).is_err(),
        "a client with the phase-0 bundle (refetched within the overlap) cannot trust it"
    );
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);

    // 3. Trim, once the overlap after the switch is over: the old CAs leave the bundles.
    std::thread::sleep(std::time::Duration::from_secs(overlap as u64));
    let plan = env.vz(&["plan", "-f", cfg]);
    plan.expect_code(0);
    plan.expect_stdout("~ certificates.ca/Secret/cert-manager/verrazzano-ca-certificate-secret  # CA rotation ends: verrazzano-root-ca-");
    apply_without_a_refused_call(&env, &["apply", "-f", cfg, "--auto-approve"], "trim")
        .expect_code(0);
    assert_eq!(bundle(), ca1);
    assert_eq!(ca("ca.crt"), ca1);
    assert_eq!(ca_bundle(), hook_ca1);
    cacerts_trusts(&ca1);
    assert_eq!(console().chain, console2.chain, "kept");
    console2.trusted(&env, &bundle()).expect("phase 3: console");
    hook2.trusted(&env, &ca_bundle()).expect("phase 3: webhook");
    let refused = console0
        .trusted(&env, &bundle())
        .expect_err("the old CA is no longer trusted");
    assert!(refused.contains("certificate verify failed"), "{refused}");
    admitted_through_the_standin(&env, &mut n);
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
}
