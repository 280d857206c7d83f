//! Snapshots of what users read: the rendered manifests, the plan as text, and the plan as JSON.
//! A change in any of them is a reviewed diff (`cargo insta review`, or `INSTA_UPDATE=always`
//! and `git diff`), not a `contains` that misses it.

use crate::common::{TestEnv, drift_authproxy_port, repo_root, vz_bare};

/// Replace what differs from run to run (identities, times, ports) with fixed placeholders.
fn redact(text: &str, env: Option<&TestEnv>) -> String {
    let mut out = text.to_string();
    if let Some(env) = env {
        out = out.replace(&env.work.path().display().to_string(), "[WORK]");
    }
    out.lines()
        .map(|l| {
            let t = l.trim_start();
            let redacted = ["\"uid\":", "\"resourceVersion\":", "\"creationTimestamp\":"]
                .iter()
                .find(|k| t.starts_with(**k));
            match redacted {
                Some(k) => format!("{}{k} \"[redacted]\",", &l[..l.len() - t.len()]),
                // The plane's Kubernetes version, and so which Istio releases support it.
                None => match l.split_once("this cluster runs v") {
                    Some((head, tail)) => {
                        let end = tail.find('"').map_or("", |i| &tail[i..]);
                        format!("{head}this cluster runs [the plane's version]{end}")
                    }
                    None => l.to_string(),
                },
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn rendered_manifests_of_the_quick_start() {
    let cfg = repo_root().join("examples/quickstart.yaml");
    let run = vz_bare(&["render", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(0);
    insta::assert_snapshot!("render_quickstart", run.stdout);
}

#[test]
fn plan_text_and_json_of_a_first_install_and_of_a_drift() {
    let env = TestEnv::start();
    let cfg = env.example("quickstart.yaml");
    let cfg = cfg.to_str().expect("utf8");
    let first = env.vz(&["plan", "-f", cfg]);
    first.expect_code(0);
    insta::assert_snapshot!("plan_first_install", redact(&first.stdout, Some(&env)));

    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    drift_authproxy_port(&env);
    env.kubectl(&["label", "namespace", "keycloak", "istio-injection-"])
        .expect_code(0);
    let drift = env.vz(&["plan", "-f", cfg]);
    drift.expect_code(0);
    insta::assert_snapshot!("plan_drift", redact(&drift.stdout, Some(&env)));

    let json = env.vz(&["plan", "-f", cfg, "--json"]);
    json.expect_code(0);
    // Only the changes: the no-ops are the whole platform, already covered by the render snapshot.
    let mut doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON plan");
    let changes = doc["resource_changes"].as_array().expect("changes").clone();
    doc["resource_changes"] = changes
        .into_iter()
        .filter(|c| c["actions"] != serde_json::json!(["no-op"]))
        .collect();
    let text = serde_json::to_string_pretty(&doc).expect("JSON");
    insta::assert_snapshot!("plan_drift_json", redact(&text, Some(&env)));
}
