//! The test control plane itself: it serves the API and stops when its owner ends.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{TestEnv, base64, repo_root};

fn pids(file: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Running (a zombie waiting to be reaped has ended).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn the_control_plane_runs_namespace_deletion() {
    let env = TestEnv::start();
    env.kubectl(&["create", "namespace", "probe"])
        .expect_code(0);
    env.kubectl(&[
        "delete",
        "namespace",
        "probe",
        "--wait=true",
        "--timeout=60s",
    ])
    .expect_code(0);
    assert!(env.get_json(&["namespace", "probe"]).is_none());
}

#[test]
fn the_control_plane_stops_when_its_owner_process_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The owner is a short-lived shell: it starts the control plane and exits.
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' up '{d}' --owner-pid $$ >/dev/null 2>&1 && cp '{d}/pids' '{d}/started'",
            repo_root().join("scripts/testenv").display(),
            d = dir.path().display()
        ))
        .status()
        .expect("bash");
    assert!(status.success());
    let started = pids(&dir.path().join("started"));
    let standin = usize::from(dir.path().join("webhook-standin-ip").exists());
    assert_eq!(
        started.len(),
        5 + standin,
        "etcd, kube-apiserver, kube-controller-manager, (webhook stand-in,) kube-scheduler, node simulator"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: Vec<_> = started.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

/// `kubectl get -o json` of a Deployment's status field, or null.
fn deployment_status(env: &TestEnv, ns: &str, name: &str, field: &str) -> serde_json::Value {
    env.get_json(&["deployment", "-n", ns, name])
        .map(|d| d["status"][field].clone())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_deployment_becomes_available_through_the_real_scheduler_and_controllers() {
    let env = TestEnv::start();
    env.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=example.test/web:1",
        "--replicas=2",
    ])
    .expect_code(0);
    env.kubectl(&["expose", "deployment", "web", "--port=80"])
        .expect_code(0);
    env.eventually(Duration::from_secs(60), "two available replicas", || {
        (deployment_status(&env, "default", "web", "availableReplicas") == 2).then_some(())
    });
    let pods = env.get_json(&["pods", "-l", "app=web"]).expect("pods");
    for pod in pods["items"].as_array().expect("items") {
        assert!(
            pod["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("vz-node-"))
        );
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(
            pod["status"]["podIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.244."))
        );
    }
    // The endpoints controller wires the Service to the pods.
    let addresses = env.eventually(Duration::from_secs(30), "endpoints for web", || {
        let ep = env.get_json(&["endpoints", "web"])?;
        let n = ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len);
        (n == 2).then_some(n)
    });
    assert_eq!(addresses, 2);
}

#[test]
fn a_pod_held_unready_keeps_its_deployment_unavailable_until_released() {
    let env = TestEnv::start();
    env.set_node_sim("unready", "default/held-");
    env.kubectl(&[
        "create",
        "deployment",
        "held",
        "--image=example.test/held:1",
    ])
    .expect_code(0);
    let pod = env.eventually(Duration::from_secs(60), "the pod to run", || {
        let pods = env.get_json(&["pods", "-l", "app=held"])?;
        let pod = pods["items"][0].clone();
        (pod["status"]["phase"] == "Running").then_some(pod)
    });
    // Running, and in the same status not Ready: the simulator holds it (a pod it let go is
    // marked Running and Ready at once).
    let ready = pod["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("a Ready condition")
        .clone();
    assert_eq!(
        (&ready["status"], &ready["message"]),
        (&"False".into(), &"held unready by vz node-sim".into()),
        "{pod}"
    );
    assert_eq!(
        deployment_status(&env, "default", "held", "availableReplicas"),
        serde_json::Value::Null,
        "not available while its pod is unready"
    );
    env.set_node_sim("unready", "");
    env.eventually(
        Duration::from_secs(60),
        "the deployment to become available",
        || (deployment_status(&env, "default", "held", "availableReplicas") == 1).then_some(()),
    );
}

#[test]
fn a_namespace_with_running_pods_finishes_deleting() {
    let env = TestEnv::start();
    env.kubectl(&["create", "namespace", "work"]).expect_code(0);
    env.kubectl(&[
        "-n",
        "work",
        "create",
        "deployment",
        "w",
        "--image=example.test/w:1",
    ])
    .expect_code(0);
    env.eventually(
        Duration::from_secs(60),
        "the deployment to be available",
        || (deployment_status(&env, "work", "w", "availableReplicas") == 1).then_some(()),
    );
    env.kubectl(&[
        "delete",
        "namespace",
        "work",
        "--wait=true",
        "--timeout=90s",
    ])
    .expect_code(0);
    assert!(env.get_json(&["namespace", "work"]).is_none());
}

#[test]
fn a_load_balancer_gets_the_address_a_test_asks_for() {
    let env = TestEnv::start();
    env.set_node_sim("load-balancers", "default/lb=192.0.2.99");
    env.kubectl(&["create", "service", "loadbalancer", "lb", "--tcp=443:8443"])
        .expect_code(0);
    env.eventually(Duration::from_secs(30), "the load balancer address", || {
        let svc = env.get_json(&["service", "lb"])?;
        (svc["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.99").then_some(())
    });
}

/// A MutatingWebhookConfiguration that sends pods labelled `inject=yes` to Service
/// `default/webhook-standin`, trusting `ca_bundle` (base64 PEM).
fn injector(ca_bundle: &str) -> String {
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "standin-injector"},
        "webhooks": [{
            "name": "inject.standin.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 5,
            "clientConfig": {"service": {"namespace": "default", "name": "webhook-standin", "path": "/inject", "port": 443},
                             "caBundle": ca_bundle},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "objectSelector": {"matchLabels": {"inject": "yes"}},
        }],
    })
    .to_string()
}

/// Service `default/webhook-standin` backed by the webhook stand-in (its pod gets the stand-in's
/// address); waits until the Service's endpoint is that address.
pub(crate) fn webhook_standin_service(env: &TestEnv) {
    let ip = std::fs::read_to_string(env.plane_file("webhook-standin-ip"))
        .expect("the webhook stand-in runs (the tests run as root)")
        .trim()
        .to_string();
    env.set_node_sim("pod-ips", &format!("default/webhook-standin-={ip}"));
    env.kubectl(&[
        "create",
        "deployment",
        "webhook-standin",
        "--image=example.test/standin:1",
    ])
    .expect_code(0);
    env.kubectl(&[
        "expose",
        "deployment",
        "webhook-standin",
        "--port=443",
        "--target-port=15017",
    ])
    .expect_code(0);
    env.eventually(Duration::from_secs(60), "the Service's endpoint", || {
        let ep = env.get_json(&["endpoints", "webhook-standin"])?;
        (ep["subsets"][0]["addresses"][0]["ip"] == ip.as_str()).then_some(())
    });
}

/// (Re)configure the stand-in's injector to trust `ca_pem` (a PEM CA certificate).
///
/// The API server keeps one client per webhook client configuration, with its connections open
/// (the stand-in keeps them alive, as istiod does), so a bundle it has trusted before on this
/// plane (an earlier test's, say) may be served over a connection verified back then. Each
/// bundle therefore starts with a comment line of its own (PEM allows text before a block): a new
/// configuration, a new client, and a handshake that verifies what the stand-in serves now.
pub(crate) fn trust(env: &TestEnv, ca_pem: &[u8]) {
    static TRUSTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // A plane serves one test process (it goes with it): its count is unique on the plane.
    let nth = TRUSTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bundle = format!("bundle {nth} of test process {}\n", std::process::id()).into_bytes();
    bundle.extend_from_slice(ca_pem);
    let file = env.work.path().join("injector.json");
    std::fs::write(&file, injector(&base64(&bundle))).expect("write");
    env.kubectl(&["apply", "-f", file.to_str().expect("utf8")])
        .expect_code(0);
}

/// Create pods labelled for the stand-in's injector until one is admitted through it (the API
/// server picks a webhook configuration up asynchronously); `n` numbers the pods.
pub(crate) fn admitted_through_the_standin(env: &TestEnv, n: &mut u32) {
    let calls = env.plane_file("webhook-calls.log");
    env.eventually(Duration::from_secs(30), "a call to the stand-in", || {
        *n += 1;
        let run = env.kubectl(&[
            "run",
            &format!("probe-{n}"),
            "--image=example.test/p:1",
            "--labels=inject=yes",
        ]);
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        (run.ok() && log.contains(&format!("\"name\": \"probe-{n}\""))).then_some(())
    });
}

/// Create pods labelled for the stand-in's injector until one is refused; returns the refusal.
pub(crate) fn refused_by_the_standin(env: &TestEnv, n: &mut u32) -> String {
    env.eventually(Duration::from_secs(30), "a refusal", || {
        *n += 1;
        let run = env.kubectl(&[
            "run",
            &format!("probe-{n}"),
            "--image=example.test/p:1",
            "--labels=inject=yes",
        ]);
        (!run.ok()).then_some(run.stderr)
    })
}

#[test]
fn the_api_server_calls_a_webhook_through_its_service_over_verified_tls() {
    let env = TestEnv::start();
    webhook_standin_service(&env);
    trust(
        &env,
        &std::fs::read(env.plane_file("pki/ca.crt")).expect("plane CA"),
    );

    // The API server picks the webhook up asynchronously: create pods until one was sent to it.
    let mut n = 0;
    admitted_through_the_standin(&env, &mut n);
    let log = std::fs::read_to_string(env.plane_file("webhook-calls.log")).expect("calls");
    assert!(log.contains("\"path\": \"/inject\""), "{log}");

    // With a CA that did not sign the stand-in's certificate, TLS verification fails and the pod
    // is refused (failure policy Fail), as istiod's injector would refuse it.
    trust(
        &env,
        &std::fs::read(env.plane_file("pki/apiserver.crt")).expect("another certificate"),
    );
    let refused = refused_by_the_standin(&env, &mut n);
    assert!(
        refused.contains("inject.standin.test") && refused.contains("x509"),
        "{refused}"
    );
}

#[test]
fn the_standin_serves_the_tls_secret_named_after_its_service() {
    let env = TestEnv::start();
    webhook_standin_service(&env);
    // A CA of the test's own, and a serving certificate from it for the Service's name.
    let dir = env.work.path();
    let script = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=test CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=webhook-standin" -keyout tls.key -out tls.csr 2>/dev/null
printf 'subjectAltName=DNS:webhook-standin.default.svc\n' > san.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile san.ext -out tls.crt 2>/dev/null
"#;
    let ok = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .expect("bash")
        .success();
    assert!(ok, "openssl");
    let path = |f: &str| dir.join(f).to_str().expect("utf8").to_string();
    env.kubectl(&[
        "create",
        "secret",
        "tls",
        "webhook-standin-tls",
        "--cert",
        &path("tls.crt"),
        "--key",
        &path("tls.key"),
    ])
    .expect_code(0);

    // Trusting that CA, the API server's calls go through: the stand-in serves the Secret.
    trust(&env, &std::fs::read(dir.join("ca.crt")).expect("ca"));
    let mut n = 0;
    admitted_through_the_standin(&env, &mut n);

    // Trusting the plane's CA instead (which signed the stand-in's own certificate), they are
    // refused: the Secret's certificate is what is served.
    trust(
        &env,
        &std::fs::read(env.plane_file("pki/ca.crt")).expect("plane CA"),
    );
    let refused = refused_by_the_standin(&env, &mut n);
    assert!(refused.contains("x509"), "{refused}");
}

#[test]
fn the_test_dns_server_takes_signed_updates_only() {
    let dns = crate::common::DnsServer::start();
    dns.nsupdate(
        Some(&dns.secret),
        "update add a.example.test 60 A 192.0.2.1",
    )
    .expect_code(0);
    let refused = dns.nsupdate(None, "update add b.example.test 60 A 192.0.2.2");
    assert!(!refused.ok(), "{refused:?}");
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("REFUSED"),
        "{refused:?}"
    );
    let wrong = dns.nsupdate(
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        "update add c.example.test 60 A 192.0.2.3",
    );
    assert!(!wrong.ok(), "{wrong:?}");
    let records = dns.records();
    assert!(
        records
            .iter()
            .any(|r| r == "a.example.test. 60 IN A 192.0.2.1"),
        "{records:?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.starts_with("b.example.test.") || r.starts_with("c.example.test."))
    );
}

#[test]
fn the_plane_runs_the_kubernetes_release_asked_for() {
    // `VZ_K8S_VERSION` (as scripts/test sets it for each version of the matrix) or the default.
    let asked = Command::new(repo_root().join("scripts/testenv"))
        .arg("release")
        .output()
        .expect("scripts/testenv release");
    assert!(asked.status.success());
    let asked = String::from_utf8_lossy(&asked.stdout).trim().to_string();
    let env = TestEnv::start();
    let version = env.kubectl(&["get", "--raw", "/version"]);
    version.expect_code(0);
    let info: serde_json::Value = serde_json::from_str(&version.stdout).expect("JSON");
    assert_eq!(info["gitVersion"], asked.as_str(), "{info}");
    assert_eq!(
        std::fs::read_to_string(env.plane_file("version"))
            .expect("the plane's version file")
            .trim(),
        asked
    );
}
