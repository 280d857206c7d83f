//! Commands and errors that need no working cluster.

use crate::common::{QUICKSTART_OBJECTS, exit, repo_root, vz_bare};

/// The quick start, copied into `dir` so that its state (and lock) is this test's own.
fn quickstart_in(dir: &std::path::Path) -> String {
    let dst = dir.join("quickstart.yaml");
    std::fs::copy(repo_root().join("examples/quickstart.yaml"), &dst).expect("copy example");
    dst.to_str().expect("utf8 path").to_string()
}

/// The repository's quick start, for commands that read no state.
fn quickstart() -> String {
    repo_root()
        .join("examples/quickstart.yaml")
        .to_str()
        .expect("utf8 path")
        .to_string()
}

#[test]
fn render_prints_every_desired_object_as_yaml_documents() {
    let run = vz_bare(&["render", "-f", &quickstart()]);
    run.expect_code(0);
    let docs: Vec<&str> = run
        .stdout
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    // Certificates and the CA bundle are named, not rendered: apply makes what they hold.
    let named = run.stdout.matches("\n# not rendered: ").count();
    assert_eq!(named, 12, "{}", run.stdout);
    assert_eq!(docs.len(), QUICKSTART_OBJECTS - named);
    assert_eq!(
        docs.iter()
            .filter(|d| d.contains("kind: Namespace"))
            .count(),
        9
    );
    assert_eq!(
        docs.iter()
            .filter(|d| d.contains("kind: NetworkPolicy"))
            .count(),
        23
    );
    // Namespaces come before the policies that live in them.
    let first_policy = run.stdout.find("kind: NetworkPolicy").expect("policy");
    let last_namespace = run.stdout.rfind("kind: Namespace").expect("namespace");
    assert!(last_namespace < first_policy);
    assert!(
        run.stdout
            .contains("# network-policies/NetworkPolicy/istio-system/istiod-access\n")
    );
}

#[test]
fn an_invalid_config_is_reported_with_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "environmentName: dev\ningress:\n  type: NodePort\n  externalIPs:\n    - 300.1.1.1\n",
    )
    .expect("write");
    let cfg = cfg.to_str().expect("utf8");
    let run = vz_bare(&["plan", "-f", cfg]);
    run.expect_code(exit::USAGE);
    assert!(
        run.stderr.contains(&format!("{cfg}:5:")),
        "names file and line: {}",
        run.stderr
    );
    run.expect_stderr("ingress.externalIPs[0]");
    run.expect_stderr("300.1.1.1");
}

#[test]
fn a_missing_config_file_is_named() {
    let run = vz_bare(&["render", "-f", "/nonexistent/vz.yaml"]);
    run.expect_code(exit::USAGE);
    run.expect_stderr("/nonexistent/vz.yaml");
}

#[test]
fn an_unreachable_cluster_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .expect("write");
    let cfg = quickstart_in(dir.path());
    let run = vz_bare(&[
        "--kubeconfig",
        kubeconfig.to_str().expect("utf8"),
        "plan",
        "-f",
        &cfg,
    ]);
    run.expect_code(exit::CLUSTER);
    run.expect_stderr(&format!(
        "cannot reach the Kubernetes API server at https://127.0.0.1:{port}"
    ));
    assert!(
        run.stderr
            .contains("\nhint: check that the cluster is running and that --kubeconfig"),
        "hint names the flags: {}",
        run.stderr
    );
}

#[test]
fn an_unknown_context_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n",
    )
    .expect("write");
    let cfg = quickstart_in(dir.path());
    let run = vz_bare(&[
        "--kubeconfig",
        kubeconfig.to_str().expect("utf8"),
        "--context",
        "nope",
        "plan",
        "-f",
        &cfg,
    ]);
    run.expect_code(exit::CLUSTER);
    run.expect_stderr("Error: cannot use context `nope` of the kubeconfig");
}

#[test]
fn a_corrupt_state_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("vz.yaml");
    std::fs::write(&cfg, "environmentName: dev\n").expect("write");
    let state = dir.path().join("dev.vzstate.json");
    std::fs::write(&state, "{\"version\": 1, \"serial\"").expect("write");
    // The state is read before the cluster is contacted, so no cluster is needed.
    let run = vz_bare(&["plan", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(exit::STATE);
    assert!(
        run.stderr.contains(&format!(
            "Error: the state {} cannot be used: it is not valid JSON",
            state.display()
        )),
        "{}",
        run.stderr
    );
    run.expect_stderr("hint: restore the previous document");
    assert_eq!(
        run.stderr.matches("not valid JSON").count(),
        1,
        "the cause once: {}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&state).expect("read"),
        "{\"version\": 1, \"serial\""
    );
}

#[test]
fn the_state_of_another_platform_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("vz.yaml");
    std::fs::write(&cfg, "environmentName: dev\n").expect("write");
    let mut other = vz_state::State::new("prod", "0.1.0");
    other.serial = 4;
    std::fs::write(
        dir.path().join("dev.vzstate.json"),
        vz_state::encode(&other).expect("encodes"),
    )
    .expect("write");
    let run = vz_bare(&["plan", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(exit::STATE);
    run.expect_stderr("belongs to platform `prod`");
    run.expect_stderr("platform `dev`");
}

/// Run `vz ARGS | head -1` through a shell; returns (vz's exit code, its stderr, what head printed).
fn piped_to_head(args: &str) -> (String, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = dir.path().join("stderr");
    let script = format!(
        "{} {args} 2>{}; echo \"exit=$?\" >&2",
        env!("CARGO_BIN_EXE_vz"),
        err.display()
    );
    // `head -1` exits after one line; vz keeps writing into the closed pipe.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("({script}) | head -1"))
        .current_dir(repo_root())
        .output()
        .expect("sh");
    let status = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stderr = std::fs::read_to_string(&err).expect("stderr");
    (
        status,
        stderr,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_vz_quietly_with_success() {
    // The rendered quick start is far larger than a pipe's buffer, so vz is still writing when
    // `head` goes away.
    let (status, stderr, first) = piped_to_head("render -f examples/quickstart.yaml");
    assert_eq!(status, "exit=0", "{stderr}");
    assert_eq!(stderr, "", "vz says nothing, panics least of all");
    assert_eq!(first, "---\n");
}

#[test]
fn state_list_into_a_closed_pipe_succeeds_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = vz_state::State::new("dev", "0.1.0");
    for i in 0..20_000 {
        state.upsert(vz_state::ObjectRecord {
            address: format!("namespaces/Namespace/n{i}"),
            step: "namespaces".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: format!("n{i}"),
            uid: format!("u{i}"),
            manifest_sha256: "00".repeat(32),
            resource_version: None,
            depends_on: vec![],
            adopted: false,
            patched: false,
            outputs: Default::default(),
            certificate: None,
        });
    }
    state.serial = 1;
    let path = dir.path().join("s.json");
    std::fs::write(&path, vz_state::encode(&state).expect("encodes")).expect("write");
    let (status, stderr, first) = piped_to_head(&format!("state list --state {}", path.display()));
    assert_eq!(status, "exit=0", "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(first, "namespaces/Namespace/n0\n");
}

#[test]
fn shell_completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _vz"),
        ("zsh", "#compdef vz"),
        ("fish", "complete -c vz"),
    ] {
        let run = vz_bare(&["completion", shell]);
        run.expect_code(0);
        assert!(
            run.stdout.contains(marker),
            "{shell}: {}",
            &run.stdout[..run.stdout.len().min(300)]
        );
        assert!(
            run.stdout.contains("force-unlock"),
            "{shell} completes subcommands"
        );
    }
}

#[test]
fn a_wrong_command_line_is_a_usage_error_not_a_plan_exit_code() {
    let run = vz_bare(&["plan", "--no-such-flag"]);
    run.expect_code(exit::USAGE);
    run.expect_stderr("--no-such-flag");
    vz_bare(&["--help"]).expect_code(0);
    // Scripts using --detailed-exitcode read 1 as "error", whatever the error.
    vz_bare(&["plan", "--detailed-exitcode", "--no-such-flag"]).expect_code(exit::OTHER);
}

#[test]
fn render_marks_the_values_known_only_after_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("lb.yaml");
    std::fs::write(&cfg, "environmentName: lb\n").expect("write");
    let run = vz_bare(&["render", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(0);
    run.expect_stdout("# system-ingresses/Ingress/verrazzano-system/verrazzano-ingress\n# known after apply (null below): metadata.annotations[\"cert-manager.io/common-name\"], spec.rules[0].host, spec.tls[0].hosts[0]\n");
    assert!(
        !run.stdout.contains("(known after apply)."),
        "no marker inside a value"
    );
}

#[test]
fn a_forced_push_replaces_a_corrupt_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("s.json");
    std::fs::write(&state, "{\"version\": 1, \"serial\"").expect("write");
    let mut good = vz_state::State::new("dev", "0.1.0");
    good.serial = 3;
    let doc = dir.path().join("good.json");
    std::fs::write(&doc, vz_state::encode(&good).expect("encodes")).expect("write");
    let (state, doc) = (state.to_str().expect("utf8"), doc.to_str().expect("utf8"));

    let refused = vz_bare(&["state", "push", "--state", state, doc]);
    refused.expect_code(exit::STATE);
    refused.expect_stderr("not valid JSON");
    // What the hint says to do works.
    vz_bare(&["state", "push", "--state", state, doc, "--force"]).expect_code(0);
    let pulled = vz_bare(&["state", "pull", "--state", state]);
    pulled.expect_code(0);
    assert_eq!(
        vz_state::decode(pulled.stdout.as_bytes()).expect("a usable state"),
        good
    );
}

#[test]
fn the_full_example_documents_a_valid_configuration() {
    let cfg = repo_root().join("examples/full.yaml");
    let run = vz_bare(&["render", "-f", cfg.to_str().expect("utf8")]);
    run.expect_code(0);
    // Its registry override reaches the images.
    assert!(
        run.stdout
            .contains("registry.example.com/verrazzano/nginx-ingress-controller:v1.7.1-"),
        "{}",
        &run.stdout[..run.stdout.len().min(500)]
    );
}

/// An HTTP server on loopback that answers every request with `/version` of Kubernetes
/// `git_version` (what an API server of that release says first, and all `vz` asks before it
/// refuses one) and 404 for anything else; returns a kubeconfig for it.
fn version_only_server(dir: &std::path::Path, git_version: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The rest of the head.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let minor = git_version.split('.').nth(1).unwrap_or("0");
            let (status, body) = if request.starts_with("GET /version") {
                (
                    "200 OK",
                    format!(
                        r#"{{"major":"1","minor":"{minor}","gitVersion":"{git_version}","platform":"linux/amd64"}}"#
                    ),
                )
            } else {
                (
                    "404 Not Found",
                    r#"{"kind":"Status","code":404}"#.to_string(),
                )
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .expect("write");
    kubeconfig.to_str().expect("utf8").to_string()
}

#[test]
fn a_cluster_older_than_the_oldest_supported_kubernetes_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = version_only_server(dir.path(), "v1.34.12");
    let cfg = quickstart_in(dir.path());
    for command in ["plan", "apply"] {
        let mut args = vec!["--kubeconfig", &kubeconfig, command, "-f", &cfg];
        if command == "apply" {
            args.push("--auto-approve");
        }
        let run = vz_bare(&args);
        run.expect_code(exit::CLUSTER);
        assert!(
            run.stderr.contains("runs Kubernetes v1.34.12, older than vz supports: Kubernetes 1.35 or later (vz is tested on 1.35, 1.36 and 1.37)")
                && run.stderr.contains("\nhint: upgrade the cluster to Kubernetes 1.35 or later"),
            "{}",
            run.stderr
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("vzstate"))
        .collect();
    assert!(left.is_empty(), "no state written: {left:?}");
}

#[test]
fn a_cluster_newer_than_the_newest_tested_kubernetes_is_used_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = version_only_server(dir.path(), "v1.38.0");
    let cfg = quickstart_in(dir.path());
    let run = vz_bare(&["--kubeconfig", &kubeconfig, "plan", "-f", &cfg]);
    // This server answers nothing but its version, so the plan itself fails after the warning.
    assert!(
        run.stderr
            .contains("Warning: the API server at http://127.0.0.1:")
            && run.stderr.contains(
                "runs Kubernetes v1.38.0, newer than vz has been tested on (1.35, 1.36 and 1.37)"
            ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("older than vz supports"),
        "{}",
        run.stderr
    );
}
