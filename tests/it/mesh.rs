//! Istio's workloads on the test plane: istiod (the webhook stand-in in its place) writes its CA
//! into its webhook configurations, the API server calls the sidecar injector for every pod of an
//! injected namespace, apply orders istiod before those pods, and a broken injector is reported.

use serde_json::Value;

use crate::common::{INJECTOR, ISTIOD, TAG_INJECTOR, TestEnv, VALIDATOR, base64, exit};

const NGINX_NS: &str = "verrazzano-ingress-nginx";
const NGINX_CONTROLLER: &str = "ingress-controller-ingress-nginx-controller";

/// The calls the webhook stand-in received, one JSON object each.
fn webhook_calls(env: &TestEnv) -> Vec<Value> {
    std::fs::read_to_string(env.plane_file("webhook-calls.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Play an istiod that cannot patch its webhook configurations (`scripts/webhook-standin`).
fn pause_istiod(env: &TestEnv) {
    std::fs::write(env.plane_file("istiod-paused"), "").expect("pause istiod");
}

/// The Deployments of the quick start (namespace, name), each with one replica.
const QUICKSTART_WORKLOADS: [(&str, &str); 5] = [
    ("istio-system", ISTIOD),
    ("istio-system", "istio-ingressgateway"),
    ("istio-system", "istio-egressgateway"),
    (NGINX_NS, NGINX_CONTROLLER),
    (NGINX_NS, "ingress-controller-ingress-nginx-defaultbackend"),
];

fn available(env: &TestEnv, ns: &str, name: &str) -> i64 {
    env.get_json(&["deployment", "-n", ns, name])
        .and_then(|d| d["status"]["availableReplicas"].as_i64())
        .unwrap_or(0)
}

#[test]
fn istiod_writes_its_ca_into_its_webhooks_and_the_injector_is_called_for_every_nginx_pod() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    for (ns, name) in QUICKSTART_WORKLOADS {
        assert_eq!(available(&env, ns, name), 1, "{ns}/{name}");
    }

    // No plug-in CA configured: vz issued one (an intermediate of the platform CA), istiod signs
    // with it, and every webhook that calls istiod trusts its root.
    let secret = env
        .get_json(&["secret", "-n", "istio-system", "cacerts"])
        .expect("the plug-in CA vz issued");
    let root = &secret["data"]["root-cert.pem"];
    assert!(
        env.get_json(&["secret", "-n", "istio-system", "istio-ca-secret"])
            .is_none(),
        "istiod made no CA of its own"
    );
    for config in [
        format!("mutatingwebhookconfiguration/{INJECTOR}"),
        format!("mutatingwebhookconfiguration/{TAG_INJECTOR}"),
        format!("validatingwebhookconfiguration/{VALIDATOR}"),
        "validatingwebhookconfiguration/istiod-default-validator".to_string(),
    ] {
        let c = env.get_json(&[&config]).expect("webhook configuration");
        for hook in c["webhooks"].as_array().expect("webhooks") {
            assert_eq!(&hook["clientConfig"]["caBundle"], root, "{config}");
        }
    }

    // The API server called the injector, over TLS it verified, for each NGINX pod.
    let calls = webhook_calls(&env);
    let pods = env.get_json(&["pods", "-n", NGINX_NS]).expect("pods");
    let pods = pods["items"].as_array().expect("items");
    assert_eq!(pods.len(), 2, "controller and default backend");
    for pod in pods {
        let prefix = &pod["metadata"]["generateName"];
        assert!(
            calls.iter().any(|c| c["path"] == "/inject"
                && c["namespace"] == NGINX_NS
                && &c["name"] == prefix),
            "no injector call for {prefix}: {calls:?}"
        );
        // The injector's answer is in the pod the API server stored: the sidecar and its init
        // container (what istiod's injector adds; no Envoy runs on the simulated nodes).
        let names = |key: &str| -> Vec<&str> {
            pod["spec"][key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect()
        };
        assert!(
            names("containers").contains(&"istio-proxy"),
            "{prefix}: {:?}",
            names("containers")
        );
        assert!(
            names("initContainers").contains(&"istio-init"),
            "{prefix}: {:?}",
            names("initContainers")
        );
    }

    // The CA bundle is istiod's field, not vz's: nothing to change.
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn until_istiod_writes_its_ca_apply_creates_no_injected_pod_and_times_out_naming_the_webhook() {
    let env = TestEnv::start();
    pause_istiod(&env);
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let run = env.vz(&["apply", "-f", cfg, "--auto-approve", "--timeout", "30s"]);
    run.expect_code(exit::ROLLED_BACK);
    assert!(
        run.stderr.contains("istio.control-plane/")
            && run
                .stderr
                .contains("to be ready: waiting for a CA bundle in webhook")
            && run
                .stderr
                .contains(&format!("Service istio-system/{ISTIOD}")),
        "{}",
        run.stderr
    );
    // NGINX waited for istiod: none of its pods was ever sent to (or refused by) the injector.
    assert!(
        !webhook_calls(&env)
            .iter()
            .any(|c| c["namespace"] == NGINX_NS),
        "{:?}",
        webhook_calls(&env)
    );
    assert!(env.get_json(&["namespace", NGINX_NS]).is_none());
    assert!(env.get_json(&["namespace", "istio-system"]).is_none());
}

#[test]
fn an_injector_the_api_server_cannot_verify_refuses_nginx_pods_and_apply_reports_it_and_rolls_back()
{
    let (env, cfg) = TestEnv::with_quickstart_applied();
    // istiod stops keeping its webhooks up to date, and the CA bundle of the injector NGINX's
    // namespace calls (the default revision tag's) is now one that did not sign istiod's
    // certificate.
    pause_istiod(&env);
    let wrong = std::fs::read(env.plane_file("pki/ca.crt")).expect("the plane's CA");
    let hooks = env
        .get_json(&["mutatingwebhookconfiguration", TAG_INJECTOR])
        .and_then(|c| c["webhooks"].as_array().map(Vec::len))
        .expect("the injector's webhooks");
    let patch: Vec<Value> = (0..hooks)
        .map(|i| {
            serde_json::json!({
                "op": "replace",
                "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": base64(&wrong),
            })
        })
        .collect();
    let patch = Value::Array(patch);
    env.kubectl(&[
        "patch",
        "mutatingwebhookconfiguration",
        TAG_INJECTOR,
        "--type=json",
        "-p",
        &patch.to_string(),
    ])
    .expect_code(0);

    // A new controller image rolls NGINX's pods: the new ones are refused.
    let text = std::fs::read_to_string(&cfg).expect("config")
        + "images:\n  nginxController: example.test/nginx/controller:v2\n";
    std::fs::write(&cfg, text).expect("write config");
    let run = env.vz(&["apply", "-f", &cfg, "--auto-approve", "--timeout", "20s"]);
    run.expect_code(exit::ROLLED_BACK);
    assert!(
        run.stderr.contains(&format!(
            "timed out waiting for Deployment {NGINX_NS}/{NGINX_CONTROLLER} to be ready"
        )) && run
            .stderr
            .contains("condition ReplicaFailure=True (FailedCreate)")
            && run
                .stderr
                .contains("failed calling webhook \"namespace.sidecar-injector.istio.io\"")
            && run.stderr.contains("x509"),
        "{}",
        run.stderr
    );
    // Rolled back: the controller runs its old image, still available.
    let d = env
        .get_json(&["deployment", "-n", NGINX_NS, NGINX_CONTROLLER])
        .expect("deployment");
    let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default();
    assert!(!image.starts_with("example.test/"), "{image}");
    assert_eq!(available(&env, NGINX_NS, NGINX_CONTROLLER), 1);
}

/// Istio's plug-in CA as Verrazzano makes one (a root, and an intermediate istiod signs with), in
/// PEM files in `dir`: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem.
fn make_plugin_ca(dir: &std::path::Path) {
    let script = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/O=vz-test/CN=Root CA" \
  -keyout root-key.pem -out root-cert.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/O=vz-test/CN=Intermediate CA" \
  -keyout ca-key.pem -out ca.csr 2>/dev/null
printf 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,digitalSignature,cRLSign,keyCertSign\n' > ca.ext
openssl x509 -req -in ca.csr -CA root-cert.pem -CAkey root-key.pem -CAcreateserial -days 30 \
  -extfile ca.ext -out ca-cert.pem 2>/dev/null
cat ca-cert.pem root-cert.pem > cert-chain.pem
rm root-key.pem ca.csr ca.ext
"#;
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .expect("bash");
    assert!(status.success(), "openssl failed");
}

#[test]
fn the_full_example_with_a_plugin_ca_runs_every_workload_and_destroys_to_nothing() {
    let env = TestEnv::start();
    let cfg = env.example("full.yaml");
    make_plugin_ca(env.work.path());
    let text = std::fs::read_to_string(&cfg)
        .expect("full.yaml")
        .replace("    # pluginCA: {", "    pluginCA: {");
    std::fs::write(&cfg, text).expect("write");
    let cfg = cfg.to_str().expect("utf8");
    // Both Services are load balancers: play the cloud's load-balancer controller.
    env.set_node_sim(
        "load-balancers",
        &format!(
            "{NGINX_NS}/{NGINX_CONTROLLER}=192.0.2.10\nistio-system/istio-ingressgateway=192.0.2.11"
        ),
    );

    let key = std::fs::read_to_string(env.work.path().join("ca-key.pem")).expect("key");
    // The key as it would show: PEM text, or base64 of it as in a Secret's data.
    let key_line = key.lines().nth(1).expect("a line of the key");
    let key_b64 = base64(key.as_bytes());
    let leaked = |text: &str| text.contains(key_line) || text.contains(&key_b64[40..100]);
    let plan = env.vz(&["plan", "-f", cfg]);
    plan.expect_code(0);
    assert!(
        plan.stdout
            .contains("+ istio.control-plane/Secret/istio-system/cacerts")
            && !leaked(&plan.stdout)
            && !leaked(&plan.stderr),
        "{}",
        plan.stdout
    );

    let render = env.vz(&["render", "-f", cfg]);
    render.expect_code(0);
    assert!(
        render.stdout.contains("# sensitive values masked") && !leaked(&render.stdout),
        "{}",
        render.stdout
    );

    let applied = env.vz(&["apply", "-f", cfg, "--auto-approve"]);
    applied.expect_code(0);
    assert!(!leaked(&applied.stdout) && !leaked(&applied.stderr));
    for (ns, name, replicas) in [
        ("istio-system", ISTIOD, 1),
        ("istio-system", "istio-ingressgateway", 2),
        ("istio-system", "istio-egressgateway", 1),
        (NGINX_NS, NGINX_CONTROLLER, 1),
        (
            NGINX_NS,
            "ingress-controller-ingress-nginx-defaultbackend",
            1,
        ),
    ] {
        assert_eq!(available(&env, ns, name), replicas, "{ns}/{name}");
    }
    // istiod took its CA from the plug-in secret: the webhooks trust the configured root.
    let root = std::fs::read(env.work.path().join("root-cert.pem")).expect("root");
    let mwc = env
        .get_json(&["mutatingwebhookconfiguration", INJECTOR])
        .expect("injector");
    assert_eq!(
        mwc["webhooks"][0]["clientConfig"]["caBundle"],
        base64(&root)
    );
    assert!(
        env.get_json(&["secret", "-n", "istio-system", "istio-ca-secret"])
            .is_none(),
        "no self-signed CA with a plug-in one"
    );
    // The gateway's own address is published for the application steps.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(env.work.path().join("dev.vzstate.json")).expect("state"),
    )
    .expect("JSON");
    let state_text = state.to_string();
    assert!(
        state_text.contains("\"gateway-ip\":\"192.0.2.11\""),
        "{state_text}"
    );
    assert!(!leaked(&state_text), "no key in the state");

    // Verrazzano's operators are not installed: their webhook configurations are pending, and
    // nothing else changes.
    let plan = env.vz(&["plan", "-f", cfg, "--detailed-exitcode"]);
    plan.expect_code(2);
    plan.expect_stdout(
        "Plan: 0 to add, 15 to change, 0 to destroy. (15 pending until their owner creates them)",
    );
    env.vz(&["destroy", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    // Istio's own kinds went with their CRDs.
    let left = env.list_names(&[
        "namespaces,networkpolicies,customresourcedefinitions,ingressclasses,services,ingresses,deployments,configmaps,secrets,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=vz",
    ]);
    assert!(left.is_empty(), "{left:?}");
    assert!(env.get_json(&["namespace", "istio-system"]).is_none());
}

/// A pod of one busybox container that meets Pod Security's `restricted` level.
fn restricted_pod(env: &TestEnv, namespace: &str) -> String {
    let file = env.write_config(
        &format!("pod-{namespace}.json"),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "probe", "image": "busybox",
                                "securityContext": {"allowPrivilegeEscalation": false,
                                                    "capabilities": {"drop": ["ALL"]}}}],
            },
        })
        .to_string(),
    );
    file.to_str().expect("utf8").to_string()
}

#[test]
fn on_a_cluster_enforcing_restricted_pod_security_every_platform_workload_is_admitted() {
    let env = TestEnv::start_with(&["--pod-security", "restricted"]);
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    // The judge works: an injected pod (istio-init adds NET_ADMIN and NET_RAW, as root) in a
    // namespace that keeps the cluster's default is refused, though its own container meets
    // `restricted`.
    env.kubectl(&["create", "namespace", "plain"])
        .expect_code(0);
    env.kubectl(&["label", "namespace", "plain", "istio-injection=enabled"])
        .expect_code(0);
    let refused = env.kubectl(&["create", "-f", &restricted_pod(&env, "plain")]);
    assert!(
        !refused.ok()
            && refused
                .stderr
                .contains("violates PodSecurity \"restricted:latest\"")
            && refused.stderr.contains("NET_ADMIN"),
        "{refused:?}"
    );
    // What vz runs, injected (NGINX) or not (istiod, the gateways), is admitted and available.
    for (ns, name) in QUICKSTART_WORKLOADS {
        assert!(available(&env, ns, name) >= 1, "{ns}/{name}");
    }
    let pods = env.get_json(&["pods", "-n", NGINX_NS]).expect("pod list");
    let injected = pods["items"].as_array().expect("items").iter().all(|p| {
        p["spec"]["initContainers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "istio-init"))
    });
    assert!(injected, "every NGINX pod has istio-init: {pods}");
    // So are the platform's other injected namespaces' pods, as Verrazzano's components will be.
    env.kubectl(&["create", "-f", &restricted_pod(&env, "verrazzano-system")])
        .expect_code(0);
    env.vz(&["destroy", "-f", cfg, "--auto-approve"])
        .expect_code(0);

    // Without injection no namespace is relaxed, and NGINX itself meets `restricted`.
    let text = std::fs::read_to_string(cfg).expect("config");
    let plain = env.write_config(
        "no-injection.yaml",
        &text.replace("injectionEnabled: true", "injectionEnabled: false"),
    );
    let plain = plain.to_str().expect("utf8");
    env.vz(&["apply", "-f", plain, "--auto-approve"])
        .expect_code(0);
    assert!(available(&env, NGINX_NS, NGINX_CONTROLLER) >= 1);
    let ns = env.get_json(&["namespace", NGINX_NS]).expect("namespace");
    assert!(
        ns["metadata"]["labels"]
            .get("pod-security.kubernetes.io/enforce")
            .is_none(),
        "{ns}"
    );
}

#[test]
fn an_istio_or_nginx_someone_else_installed_is_refused_unless_the_config_adopts_it() {
    let env = TestEnv::start();
    env.kubectl(&["create", "namespace", "istio-system"])
        .expect_code(0);
    let class = env.write_config(
        "class.json",
        r#"{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "verrazzano-nginx"}, "spec": {"controller": "k8s.io/verrazzano-ingress-nginx"}}"#,
    );
    env.kubectl(&["create", "-f", class.to_str().expect("utf8")])
        .expect_code(0);
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");

    let run = env.vz(&["apply", "-f", cfg, "--auto-approve"]);
    run.expect_code(exit::USAGE);
    assert!(
        run.stderr.contains("Namespace istio-system exists and was not created by vz: probably an Istio installed by someone else; to configure that Istio instead of installing one, set `components.istio.install: false`")
            && run.stderr.contains("`adopt: [namespaces/Namespace/istio-system]`"),
        "{}",
        run.stderr
    );
    assert!(
        env.get_json(&["namespace", NGINX_NS]).is_none(),
        "nothing applied"
    );

    let adopt_ns = std::fs::read_to_string(cfg).expect("config")
        + "adopt:\n  - namespaces/Namespace/istio-system\n";
    std::fs::write(cfg, &adopt_ns).expect("write");
    let run = env.vz(&["plan", "-f", cfg]);
    run.expect_code(exit::USAGE);
    run.expect_stderr("IngressClass verrazzano-nginx exists and was not created by vz: probably an NGINX Ingress Controller installed by someone else");

    std::fs::write(
        cfg,
        adopt_ns + "  - ingress-nginx/IngressClass/verrazzano-nginx\n",
    )
    .expect("write");
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["destroy", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    // Taken over, so released, not deleted.
    let ns = env.get_json(&["namespace", "istio-system"]).expect("kept");
    assert!(ns["metadata"].get("deletionTimestamp").is_none());
    assert!(
        env.get_json(&["ingressclass", "verrazzano-nginx"])
            .is_some()
    );
}

#[test]
fn with_install_false_vz_configures_the_istio_already_there_and_leaves_it() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        "injectionEnabled: true",
        "injectionEnabled: true\n    install: false",
    );
    std::fs::write(&cfg, &text).expect("write");
    let cfg = cfg.to_str().expect("utf8");

    let run = env.vz(&["plan", "-f", cfg]);
    run.expect_code(exit::USAGE);
    run.expect_stderr("CustomResourceDefinition peerauthentications.security.istio.io does not exist: `components.istio.install` is false");

    // An Istio vz installed is not an existing one to configure: turning `install` off would
    // delete what it requires.
    let full = env.write_config("installing.yaml", &text.replace("    install: false\n", ""));
    let full_path = full.to_str().expect("utf8");
    env.vz(&["apply", "-f", full_path, "--auto-approve"])
        .expect_code(0);
    let run = env.vz(&["plan", "-f", cfg]);
    run.expect_code(exit::USAGE);
    assert!(
        run.stderr.contains("was made by vz (the state records it as istio.crds/CustomResourceDefinition/peerauthentications.security.istio.io), and this configuration no longer wants it")
            && run.stderr.contains("`vz state rm`"),
        "{}",
        run.stderr
    );
    env.vz(&["destroy", "-f", full_path, "--auto-approve"])
        .expect_code(0);

    // Someone else's Istio: its CRDs (vz's rendering, without vz's labels) and istiod.
    let render = env.vz(&["render", "-f", full.to_str().expect("utf8")]);
    render.expect_code(0);
    let crds: Vec<String> = render
        .stdout
        .split("\n---\n")
        .filter(|d| d.contains("kind: CustomResourceDefinition"))
        .map(|d| {
            d.lines()
                .filter(|l| {
                    !l.contains("app.kubernetes.io/managed-by") && !l.contains("vz.dev/platform")
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert_eq!(crds.len(), 15);
    let file = env.write_config("crds.yaml", &crds.join("\n---\n"));
    env.kubectl(&["apply", "--server-side", "-f", file.to_str().expect("utf8")])
        .expect_code(0);
    env.kubectl(&["create", "namespace", "istio-system"])
        .expect_code(0);
    // Installed by revision: its istiod is `istiod-1-19-3`, labelled app=istiod.
    env.kubectl(&[
        "-n",
        "istio-system",
        "create",
        "deployment",
        "istiod-1-19-3",
        "--image=example.test/pilot:1.19.3",
    ])
    .expect_code(0);
    env.kubectl(&[
        "-n",
        "istio-system",
        "label",
        "deployment",
        "istiod-1-19-3",
        "app=istiod",
        "--overwrite",
    ])
    .expect_code(0);
    env.eventually(
        std::time::Duration::from_secs(30),
        "istiod available",
        || (available(&env, "istio-system", "istiod-1-19-3") == 1).then_some(()),
    );

    let run = env.vz(&["apply", "-f", cfg, "--auto-approve"]);
    run.expect_code(0);
    assert!(
        !run.stdout.contains("istio.crds") && !run.stdout.contains("istio.control-plane"),
        "{}",
        run.stdout
    );
    assert!(
        env.get_json(&["peerauthentication", "-n", "istio-system", "default"])
            .is_some()
    );
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
    env.vz(&["destroy", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    assert!(
        env.get_json(&["peerauthentication", "-n", "istio-system", "default"])
            .is_none()
    );
    assert_eq!(
        available(&env, "istio-system", "istiod-1-19-3"),
        1,
        "Istio itself is left alone"
    );
    assert!(
        env.get_json(&["crd", "peerauthentications.security.istio.io"])
            .is_some()
    );
}
