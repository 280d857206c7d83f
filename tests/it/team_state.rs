//! The remote state backends against real servers: the kubernetes one (the state in Secrets, the
//! lock a Lease) against the real API server, the s3 one (objects of a bucket) against a real S3
//! server. For both: the lock its holder renews is refused to a second run (naming the holder) and
//! taken over once a killed holder's lease expires; a stale writer is refused by the
//! compare-and-swap. For kubernetes: a state past 1 MiB split over several Secrets and read back
//! whole, the README's Role, workspaces. Migration local → kubernetes → s3 → local.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::common::{Running, S3Server, TestEnv, exit};

/// Where a test keeps its state.
enum Team {
    Kubernetes,
    S3(S3Server),
}

impl Team {
    fn s3() -> Team {
        Team::S3(S3Server::start())
    }

    /// The quick start with its state here (leases of 15 s, so takeovers are quick).
    fn config(&self, env: &mut TestEnv) -> String {
        let state = match self {
            Team::Kubernetes => {
                env.kubectl(&["create", "namespace", "vz-system"])
                    .expect_code(0);
                "  backend: kubernetes\n  leaseDuration: 15s\n".to_string()
            }
            Team::S3(s3) => {
                env.set_vars(&s3.vars());
                format!(
                    "  backend: s3\n  bucket: {}\n  endpoint: {}\n  leaseDuration: 15s\n",
                    S3Server::BUCKET,
                    s3.endpoint()
                )
            }
        };
        let text =
            std::fs::read_to_string(crate::common::repo_root().join("examples/quickstart.yaml"))
                .expect("example")
                .replace("  backend: local\n", &state)
                .replace("  path: quickstart.vzstate.json\n", "");
        let cfg = env.write_config("team.yaml", &text);
        cfg.to_str().expect("utf8").to_string()
    }

    /// Who holds the default workspace's lock, seen from outside vz.
    fn holder(&self, env: &TestEnv) -> Option<String> {
        match self {
            Team::Kubernetes => env
                .get_json(&["lease", "-n", "vz-system", "vz-lock-default"])
                .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string)),
            Team::S3(s3) => {
                let backend = s3.backend("quickstart.vzstate.json", "default", Duration::ZERO);
                runtime()
                    .block_on(vz_state::Backend::lock_holder(&backend))
                    .expect("read the lock")
                    .map(|info| info.id)
            }
        }
    }

    /// Wait until the default workspace's lock has run out: its holder last renewed it longer
    /// ago than its lease (the backend's own record of both, read from outside vz), or let it go.
    fn await_expiry(&self, env: &TestEnv) {
        let from = std::time::Instant::now();
        env.eventually(
            Duration::from_secs(30),
            "the lock's lease to run out",
            || match self.lease(env) {
                Some((renewed, lease)) => (renewed + lease < SystemTime::now()).then_some(()),
                None => Some(()),
            },
        );
        eprintln!(
            "the lock ran out {:.1}s after the wait for it began",
            from.elapsed().as_secs_f64()
        );
    }

    /// When the default workspace's lock was last taken or renewed, and for how long that holds;
    /// `None` when nobody holds it.
    fn lease(&self, env: &TestEnv) -> Option<(SystemTime, Duration)> {
        match self {
            Team::Kubernetes => {
                let lease = env.get_json(&["lease", "-n", "vz-system", "vz-lock-default"])?;
                let spec = &lease["spec"];
                let renewed: k8s_openapi::jiff::Timestamp = spec["renewTime"]
                    .as_str()
                    .or(spec["acquireTime"].as_str())?
                    .parse()
                    .expect("a Lease's time");
                let lease = spec["leaseDurationSeconds"].as_u64().expect("a duration");
                Some((renewed.into(), Duration::from_secs(lease)))
            }
            Team::S3(s3) => {
                // The lock object, `<state object>.lock`, read as a state object of its own.
                let backend = s3.backend("quickstart.vzstate.json.lock", "default", Duration::ZERO);
                let (bytes, _) = runtime()
                    .block_on(vz_state::Backend::read(&backend))
                    .expect("read the lock object")?;
                let record: serde_json::Value =
                    serde_json::from_slice(&bytes).expect("the lock record is JSON");
                record.get("lock")?;
                let renewed = record["renewedMs"].as_u64().expect("renewedMs");
                let lease = record["leaseSeconds"].as_u64().expect("leaseSeconds");
                Some((
                    UNIX_EPOCH + Duration::from_millis(renewed),
                    Duration::from_secs(lease),
                ))
            }
        }
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Start `vz apply` held by an NGINX controller that never becomes ready; returns once it holds
/// the lock.
fn held_apply(env: &TestEnv, team: &Team, cfg: &str) -> Running {
    env.set_node_sim(
        "unready",
        "verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller",
    );
    let child = env.spawn_vz(&["apply", "-f", cfg, "--auto-approve", "--timeout", "3m"]);
    env.eventually(Duration::from_secs(30), "the apply holds the lock", || {
        team.holder(env)
    });
    child
}

fn a_second_run_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(team: Team) {
    let mut env = TestEnv::start();
    let cfg = team.config(&mut env);
    let holder = held_apply(&env, &team, &cfg);
    let refused = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    refused.expect_code(exit::LOCKED);
    assert!(
        refused.stderr.contains("is locked: ID") && refused.stderr.contains("operation `apply`"),
        "{}",
        refused.stderr
    );
    holder.kill();
    // Until its lease runs out, the dead holder's lock still holds...
    env.vz(&["plan", "-f", &cfg]).expect_code(exit::LOCKED);
    env.set_node_sim("unready", "");
    // ...then the next run takes it over, says whose it took, and converges.
    team.await_expiry(&env);
    let took = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    took.expect_code(0);
    assert!(
        took.stderr.contains("Note: took over the expired lock of")
            && took.stderr.contains("(apply, pid"),
        "{}",
        took.stderr
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
    assert_eq!(team.holder(&env), None, "released after the run");
}

#[test]
fn kubernetes_a_second_run_is_refused_and_a_killed_holders_lease_is_taken_over() {
    a_second_run_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(
        Team::Kubernetes,
    );
}

#[test]
fn s3_a_second_run_is_refused_and_a_killed_holders_lock_object_is_taken_over() {
    a_second_run_is_refused_naming_the_holder_and_a_killed_holders_lock_is_taken_over(Team::s3());
}

fn a_writer_whose_lock_expired_is_refused_by_the_compare_and_swap(team: Team) {
    let mut env = TestEnv::start();
    let cfg = team.config(&mut env);
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    env.kubectl(&[
        "delete",
        "deployment",
        "-n",
        "verrazzano-ingress-nginx",
        "ingress-controller-ingress-nginx-controller",
    ])
    .expect_code(0);
    let holder = held_apply(&env, &team, &cfg);
    let pid = holder.id().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("stop");
    team.await_expiry(&env);
    // Another run takes the expired lock and writes the state.
    env.vz(&[
        "state",
        "rm",
        "-f",
        &cfg,
        "network-policies/NetworkPolicy/keycloak/keycloak",
    ])
    .expect_code(0);
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("continue");
    env.set_node_sim("unready", "");
    let stale = holder.wait();
    assert_ne!(stale.code, 0);
    assert!(
        stale
            .stderr
            .contains("it was written by another run since it was read")
            && stale.stderr.contains("run `vz plan` again"),
        "{}",
        stale.stderr
    );
    // Nothing lost: the next run converges from what the other run wrote.
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn kubernetes_a_writer_whose_lock_expired_is_refused_by_the_compare_and_swap() {
    a_writer_whose_lock_expired_is_refused_by_the_compare_and_swap(Team::Kubernetes);
}

#[test]
fn s3_a_writer_whose_lock_expired_is_refused_by_the_compare_and_swap() {
    a_writer_whose_lock_expired_is_refused_by_the_compare_and_swap(Team::s3());
}

#[test]
fn a_state_past_one_mebibyte_is_split_over_secrets_and_read_back_whole() {
    let mut env = TestEnv::start();
    let cfg = Team::Kubernetes.config(&mut env);
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    let pulled = env.vz(&["state", "pull", "-f", &cfg]);
    pulled.expect_code(0);
    let mut state = vz_state::decode(pulled.stdout.as_bytes()).expect("a state");
    let template = state.objects[0].clone();
    // Hashes do not compress: 20,000 records make a document of megabytes even gzipped.
    for i in 0..20_000 {
        let mut r = template.clone();
        r.address = format!("bulk/ConfigMap/bulk/c{i}");
        r.manifest_sha256 = hex_of(&format!("m{i}"));
        r.uid = hex_of(&format!("u{i}"));
        state.objects.push(r);
    }
    let bytes = vz_state::encode(&state).expect("encode");
    assert!(bytes.len() > 1024 * 1024, "{} bytes", bytes.len());
    let file = env.work.path().join("big.json");
    std::fs::write(&file, &bytes).expect("write");
    env.vz(&[
        "state",
        "push",
        "-f",
        &cfg,
        "--force",
        file.to_str().expect("utf8"),
    ])
    .expect_code(0);
    let parts = env.list_names(&[
        "secrets",
        "-n",
        "vz-system",
        "-l",
        "vz.dev/state-workspace=default",
    ]);
    assert!(parts.len() > 1, "split: {parts:?}");
    let back = env.vz(&["state", "pull", "-f", &cfg]);
    back.expect_code(0);
    let round = vz_state::decode(back.stdout.as_bytes()).expect("whole");
    assert_eq!(round.objects.len(), state.objects.len());
    assert_eq!(round.objects, state.objects);
}

fn hex_of(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_readmes_role_is_enough_to_read_write_and_lock_the_state() {
    let mut env = TestEnv::start();
    let cfg = Team::Kubernetes.config(&mut env);
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    let readme =
        std::fs::read_to_string(crate::common::repo_root().join("README.md")).expect("README");
    let role = readme
        .split("```yaml\n")
        .find(|block| block.contains("metadata: {name: vz-state, namespace: vz-system}"))
        .and_then(|block| block.split("```").next())
        .expect("the Role in the README");
    let binding = "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: vz-state, namespace: vz-system}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vz-state}\nsubjects: [{kind: ServiceAccount, name: team, namespace: vz-system}]\n";
    let file = env.work.path().join("role.yaml");
    std::fs::write(&file, format!("{role}{binding}")).expect("write");
    env.kubectl(&["create", "serviceaccount", "team", "-n", "vz-system"])
        .expect_code(0);
    env.kubectl(&["apply", "-f", file.to_str().expect("utf8")])
        .expect_code(0);
    let kc = crate::common::token_kubeconfig(&env, "vz-system", "team");
    let as_team = |args: &[&str]| {
        let mut full = vec!["--kubeconfig", kc.as_str()];
        full.extend_from_slice(args);
        crate::common::vz_bare(&full)
    };
    let listed = as_team(&["state", "list", "-f", &cfg]);
    listed.expect_code(0);
    let has = |out: &str| {
        out.lines()
            .any(|l| l == "network-policies/NetworkPolicy/keycloak/keycloak")
    };
    assert!(has(&listed.stdout));
    as_team(&[
        "state",
        "rm",
        "-f",
        &cfg,
        "network-policies/NetworkPolicy/keycloak/keycloak",
    ])
    .expect_code(0);
    let after = as_team(&["state", "list", "-f", &cfg]);
    assert!(!has(&after.stdout), "forgotten");
    // Nothing else: the Role gives no access to the platform.
    let platform = as_team(&["plan", "-f", &cfg]);
    assert_ne!(platform.code, 0);
}

#[test]
fn each_workspace_has_its_own_state_and_one_with_objects_is_kept_unless_forced() {
    let mut env = TestEnv::start();
    let cfg = Team::Kubernetes.config(&mut env);
    env.vz(&["workspace", "new", "-f", &cfg, "prod"])
        .expect_code(0);
    assert!(
        env.get_json(&["secret", "-n", "vz-system", "vz-state-prod"])
            .is_some()
    );
    let applied = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    applied.expect_code(0);
    assert!(
        applied
            .stdout
            .contains("State: kubernetes vz-system/vz-state-prod"),
        "{}",
        applied.stdout
    );
    env.vz(&["workspace", "select", "-f", &cfg, "default"])
        .expect_code(0);
    let list = env.vz(&["workspace", "list", "-f", &cfg]);
    assert_eq!(list.stdout, "* default\n  prod\n");
    let prod = env.vz(&["state", "list", "-f", &cfg, "--workspace", "prod"]);
    assert!(prod.stdout.lines().count() > 90, "{}", prod.stdout);
    let kept = env.vz(&["workspace", "delete", "-f", &cfg, "prod"]);
    kept.expect_code(exit::STATE);
    assert!(
        kept.stderr.contains("still records") && kept.stderr.contains("--force"),
        "{}",
        kept.stderr
    );
    env.vz(&["workspace", "delete", "-f", &cfg, "prod", "--force"])
        .expect_code(0);
    assert!(
        env.list_names(&[
            "secrets",
            "-n",
            "vz-system",
            "-l",
            "vz.dev/state-workspace=prod"
        ])
        .is_empty()
    );
    assert_eq!(
        env.vz(&["workspace", "list", "-f", &cfg]).stdout,
        "* default\n"
    );
}

#[test]
fn a_state_migrates_local_to_kubernetes_to_s3_and_back_with_lineage_and_serial_kept() {
    let mut env = TestEnv::start();
    let s3 = S3Server::start();
    env.set_vars(&s3.vars());
    env.kubectl(&["create", "namespace", "vz-system"])
        .expect_code(0);
    let local = env.example("quickstart.yaml");
    let local = local.to_str().expect("utf8");
    env.vz(&["apply", "-f", local, "--auto-approve"])
        .expect_code(0);
    let before = vz_state::decode(env.vz(&["state", "pull", "-f", local]).stdout.as_bytes())
        .expect("local state");
    let text = std::fs::read_to_string(local).expect("config");
    // Each leg: migrate from `from` to `to`, then a configuration naming `to` finds the same
    // state (lineage, serial, objects) and a clean plan.
    let leg = |from: &str, to: &str, name: &str, state: &str| -> String {
        let moved = env.vz(&["state", "migrate", "-f", from, "--to", to]);
        moved.expect_code(0);
        moved.expect_stdout("read it back");
        let cfg = env.write_config(
            name,
            &text
                .replace("  backend: local\n", state)
                .replace("  path: quickstart.vzstate.json\n", ""),
        );
        let cfg = cfg.to_str().expect("utf8").to_string();
        let there = vz_state::decode(env.vz(&["state", "pull", "-f", &cfg]).stdout.as_bytes())
            .expect("the migrated state");
        assert_eq!(
            (there.lineage.as_str(), there.serial),
            (before.lineage.as_str(), before.serial),
            "{to}"
        );
        assert_eq!(there.objects, before.objects);
        env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
            .expect_code(0);
        cfg
    };
    let team = leg(
        local,
        "{backend: kubernetes, namespace: vz-system}",
        "team.yaml",
        "  backend: kubernetes\n  namespace: vz-system\n",
    );
    let bucket = leg(
        &team,
        &s3.state_yaml("platforms/quickstart.json"),
        "bucket.yaml",
        &format!(
            "  backend: s3\n  bucket: {}\n  key: platforms/quickstart.json\n  endpoint: {}\n",
            S3Server::BUCKET,
            s3.endpoint()
        ),
    );
    let home = leg(
        &bucket,
        "{path: back.vzstate.json}",
        "home.yaml",
        "  backend: local\n  path: back.vzstate.json\n",
    );
    let home = home.as_str();
    // A target holding another state's history is refused, and left as it was.
    let mut foreign = before.clone();
    foreign.lineage = "00000000-0000-4000-8000-000000000000".into();
    let other = env.work.path().join("other.vzstate.json");
    let bytes = vz_state::encode(&foreign).expect("encode");
    std::fs::write(&other, &bytes).expect("write");
    let refused = env.vz(&[
        "state",
        "migrate",
        "-f",
        home,
        "--to",
        "{path: other.vzstate.json}",
    ]);
    refused.expect_code(exit::STATE);
    refused.expect_stderr("lineage");
    assert_eq!(std::fs::read(&other).expect("read"), bytes, "untouched");
}
