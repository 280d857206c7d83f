//! What `vz` writes, judged by Istio's own tools: `istioctl validate` (schemas and semantic rules
//! of every Istio object, and the labels Istio's telemetry needs on Deployments) and
//! `istioctl analyze` (offline, every namespace) on the rendered examples and on configurations
//! made here to use every application feature. Neither may report an error, nor a warning `vz` can
//! avoid; the warnings that stay are named in [`EXPECTED`], each with its reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{judge, repo_root, vz_bare};

/// Warnings that stay: (kind and object, code, why).
const EXPECTED: [(&str, &str, &str); 1] = [(
    "EnvoyFilter istio-system/server-header-filter",
    "IST0133",
    "Istio has no other API that removes the Server header from the gateways' responses; the filter is Verrazzano's, and istioctl warns about every EnvoyFilter",
)];

/// `vz render` of `config`, into a file of `dir`.
fn rendered(config: &Path, dir: &Path) -> PathBuf {
    let run = vz_bare(&["render", "-f", config.to_str().expect("utf8 path")]);
    run.expect_code(0);
    let out = dir.join("rendered.yaml");
    std::fs::write(&out, &run.stdout).expect("the rendered objects are written");
    out
}

/// The warning istioctl gives with `ingress.controller: gateway-api`, and why it stays.
const EXPECTED_ON_GATEWAY_API: [(&str, &str, &str); 1] = [(
    "DestinationRule cattle-system/rancher-gateway-api",
    "IST0128",
    "Rancher serves port 443 with a certificate of its own CA, which vz does not know: the gateway reaches it over TLS without verifying it, as NGINX's `backend-protocol: HTTPS` did",
)];

/// What `istioctl validate` and `istioctl analyze` say about `file`, one line each, minus the
/// expected warnings.
fn findings(file: &Path) -> Vec<String> {
    findings_but(file, &[])
}

/// [`findings`], minus `also` expected.
fn findings_but(file: &Path, also: &[(&str, &str, &str)]) -> Vec<String> {
    let istioctl = judge("istioctl");
    let mut found = Vec::new();
    let validate = Command::new(&istioctl)
        .args(["validate", "-f"])
        .arg(file)
        .output()
        .expect("istioctl runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    if !validate.status.success() {
        found.push(format!("istioctl validate failed: {said}"));
    }
    for line in said.lines().map(str::trim) {
        // A warning about an object: `* Kind/namespace/name: message`, or a Deployment's labels.
        let object = line
            .strip_prefix("* ")
            .or_else(|| line.starts_with("deployment ").then_some(line));
        let Some(object) = object else {
            continue;
        };
        let expected = EXPECTED.iter().any(|(origin, _, _)| {
            let (kind, name) = origin.split_once(' ').unwrap_or_default();
            object.starts_with(&format!("{kind}/{name}:"))
        });
        if !expected {
            found.push(format!("istioctl validate: {object}"));
        }
    }
    let analyze = Command::new(&istioctl)
        .args(["analyze", "--use-kube=false", "-A", "-o", "json"])
        .arg(file)
        .output()
        .expect("istioctl runs");
    let text = String::from_utf8_lossy(&analyze.stdout);
    let messages: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "istioctl analyze did not answer JSON ({e}): {text}{}",
            String::from_utf8_lossy(&analyze.stderr)
        )
    });
    for m in messages {
        let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
        let expected = EXPECTED
            .iter()
            .chain(also)
            .any(|(origin, code, _)| s("origin") == *origin && s("code") == *code);
        if s("level") != "Info" && !expected {
            found.push(format!(
                "istioctl analyze: {} [{}] {}: {}",
                s("level"),
                s("code"),
                s("origin"),
                s("message")
            ));
        }
    }
    found
}

fn judged(name: &str, config: &Path) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let found = findings(&rendered(config, dir.path()));
    assert!(
        found.is_empty(),
        "{name}: Istio's tools found:\n{}",
        found.join("\n")
    );
}

#[test]
fn istio_finds_nothing_to_fix_in_the_rendered_examples() {
    for example in ["quickstart.yaml", "full.yaml", "applications.yaml"] {
        judged(example, &repo_root().join("examples").join(example));
    }
}

#[test]
fn istio_finds_nothing_to_fix_in_the_full_example_and_applications_on_gateway_api() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let full = std::fs::read_to_string(repo_root().join("examples/full.yaml"))
        .expect("full.yaml")
        .replace(
            "ingress:\n  type: LoadBalancer                 # or NodePort\n  externalIPs: [192.0.2.10]          # optional; the first one is the ingress address\n",
            "ingress:\n  controller: gateway-api\n",
        )
        .replace("  ingressNGINX: {enabled: true}\n", "");
    assert!(full.contains("controller: gateway-api"));
    let config = dir.path().join("full.yaml");
    std::fs::write(&config, full).expect("the configuration is written");
    let rendered_full = rendered(&config, dir.path());
    let found = findings_but(&rendered_full, &EXPECTED_ON_GATEWAY_API);
    assert!(
        found.is_empty(),
        "the full example on gateway-api: Istio's tools found:\n{}",
        found.join("\n")
    );
    // ...and the one expected is still said (a fix shows here).
    let all = findings(&rendered_full);
    assert!(
        all.len() == 1
            && all[0].contains("[IST0128] DestinationRule cattle-system/rancher-gateway-api"),
        "{all:?}"
    );
    let apps = APPLICATIONS.replace(
        "ingress: {type: NodePort, externalIPs: [192.0.2.10]}",
        "ingress: {controller: gateway-api}",
    );
    assert!(apps.contains("controller: gateway-api"));
    let config = dir.path().join("apps.yaml");
    std::fs::write(&config, apps).expect("the configuration is written");
    let found = findings_but(&rendered(&config, dir.path()), &EXPECTED_ON_GATEWAY_API);
    assert!(
        found.is_empty(),
        "applications on gateway-api: Istio's tools found:\n{}",
        found.join("\n")
    );
}

/// Applications using every feature: several rules with and without authorization, prefix, exact
/// and regex paths, session affinity, their own TLS Secret, an existing namespace, a selector.
const APPLICATIONS: &str = "environmentName: judged
dns: {wildcard: {domain: nip.io}}
ingress: {type: NodePort, externalIPs: [192.0.2.10]}
components:
  istio: {ingress: {type: NodePort, externalIPs: [192.0.2.11]}}
applications:
  - name: orders
    namespace: shop
    ports: [8080, 9090]
    affinity: {cookie: {name: orders, ttl: 60s}}
    rules:
      - paths: [{path: /api, type: prefix}, {path: /admin}]
        destination: {host: orders-api, port: 8080}
        authorization: {requestPrincipals: ['https://issuer.example.test/*']}
      - paths: [{path: '/v[0-9]+/items', type: regex}]
        destination: {host: orders-api, port: 9090}
      - paths: [{path: /reports, type: prefix}]
        destination: {host: orders-api, port: 9090}
        authorization: {requestPrincipals: ['*']}
      - destination: {host: orders-ui, port: 8080}
  - name: billing
    namespace: finance
    existing: true
    serviceAccount: billing-runner
    selector: {app.kubernetes.io/name: billing}
    ports: [9000]
    hosts: [billing.example.test, pay.example.test]
    tls: {secretName: billing-tls}
    rules:
      - destination: {host: billing, port: 9000}
";

#[test]
fn istio_finds_nothing_to_fix_in_applications_using_every_feature() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("platform.yaml");
    std::fs::write(&config, APPLICATIONS).expect("the configuration is written");
    judged("applications using every feature", &config);
}

#[test]
fn the_warnings_that_stay_are_still_reported() {
    // Each expected warning names an object vz still renders: a fix (or a rename) shows here.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = rendered(&repo_root().join("examples/full.yaml"), dir.path());
    let istioctl = judge("istioctl");
    let analyze = Command::new(&istioctl)
        .args(["analyze", "--use-kube=false", "-A", "-o", "json"])
        .arg(&file)
        .output()
        .expect("istioctl runs");
    let messages: Vec<Value> =
        serde_json::from_slice(&analyze.stdout).expect("istioctl analyze answers JSON");
    for (origin, code, why) in EXPECTED {
        assert!(
            messages
                .iter()
                .any(|m| m["origin"] == origin && m["code"] == code),
            "{origin} {code} is no longer reported ({why}): remove it from EXPECTED"
        );
    }
}
