//! Locking and the `vz state` commands.

use std::time::Duration;

use serde_json::Value;

use crate::common::{QUICKSTART_OBJECTS, Running, TestEnv, exit, vz_bare};

fn lock_file(env: &TestEnv) -> std::path::PathBuf {
    env.work.path().join("quickstart.vzstate.json.lock")
}

/// Start `vz destroy` in the background and wait until it holds the lock.
fn destroy_in_background(env: &TestEnv, cfg: &str) -> Running {
    let child = env.spawn_vz(&["destroy", "-f", cfg, "--auto-approve"]);
    env.eventually(Duration::from_secs(20), "destroy to take the lock", || {
        lock_file(env).exists().then_some(())
    });
    child
}

#[test]
fn a_second_run_is_refused_while_another_holds_the_lock() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let destroy = destroy_in_background(&env, &cfg);
    let run = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    run.expect_code(exit::LOCKED);
    run.expect_stderr("is locked");
    run.expect_stderr("operation `destroy`");
    assert!(
        run.stderr.contains(&format!("pid {}", destroy.id())),
        "{}",
        run.stderr
    );
    run.expect_stderr("vz force-unlock ");
    assert!(destroy.wait().ok(), "the holder is not disturbed");
    assert!(!lock_file(&env).exists(), "the lock is released at the end");
}

#[test]
fn lock_timeout_waits_for_the_holder_to_finish() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let destroy = destroy_in_background(&env, &cfg);
    let run = env.vz(&[
        "plan",
        "-f",
        &cfg,
        "--lock-timeout",
        "2m",
        "--detailed-exitcode",
    ]);
    assert!(destroy.wait().ok());
    // It ran after the destroy: everything is to be created again.
    run.expect_code(2);
    run.expect_stdout(&format!("Plan: {QUICKSTART_OBJECTS} to add"));
}

#[test]
fn force_unlock_removes_a_lock_left_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("s.json");
    let state = state.to_str().expect("utf8");
    // A lock held by a live process (this test) that will never release it.
    let lock = serde_json::json!({
        "ID": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "Operation": "apply", "Who": "ci@elsewhere",
        "Version": "0.1.0", "Created": "2026-11-27T00:00:00Z", "Path": state,
        "Pid": std::process::id(), "Host": "elsewhere"
    });
    std::fs::write(format!("{state}.lock"), lock.to_string()).expect("write lock");
    let refused = vz_bare(&["state", "rm", "--state", state, "x"]);
    refused.expect_code(exit::LOCKED);
    refused.expect_stderr("held by ci@elsewhere");

    vz_bare(&["force-unlock", "--state", state, "not-the-id"]).expect_code(exit::USAGE);
    assert!(
        std::path::Path::new(&format!("{state}.lock")).exists(),
        "wrong ID removes nothing"
    );
    let ok = vz_bare(&[
        "force-unlock",
        "--state",
        state,
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    ]);
    ok.expect_code(0);
    assert!(!std::path::Path::new(&format!("{state}.lock")).exists());
}

#[test]
fn state_commands_list_show_forget_pull_and_push() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let list = env.vz(&["state", "list", "-f", &cfg]);
    list.expect_code(0);
    assert_eq!(list.stdout.lines().count(), QUICKSTART_OBJECTS);
    let address = "network-policies/NetworkPolicy/keycloak/keycloak";
    assert!(list.stdout.lines().any(|l| l == address));

    let show = env.vz(&["state", "show", "-f", &cfg, address]);
    show.expect_code(0);
    let record: Value = serde_json::from_str(&show.stdout).expect("JSON record");
    let live = env
        .get_json(&["networkpolicy", "-n", "keycloak", "keycloak"])
        .expect("live");
    assert_eq!(record["uid"], live["metadata"]["uid"]);

    let pulled = env.vz(&["state", "pull", "-f", &cfg]);
    pulled.expect_code(0);
    let old = env.work.path().join("old.json");
    std::fs::write(&old, &pulled.stdout).expect("write");

    env.vz(&["state", "rm", "-f", &cfg, address]).expect_code(0);
    assert!(
        live_exists(&env),
        "state rm does not delete from the cluster"
    );
    let plan = env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"]);
    plan.expect_code(2);
    // Forgotten, but still labelled as this platform's: the next plan finds it again.
    plan.expect_stdout(&format!("  ~ {address}  # recovered from labels"));

    let old = old.to_str().expect("utf8");
    let refused = env.vz(&["state", "push", "-f", &cfg, old]);
    refused.expect_code(exit::STATE);
    refused.expect_stderr("newer stored serial");
    env.vz(&["state", "push", "-f", &cfg, old, "--force"])
        .expect_code(0);
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

fn live_exists(env: &TestEnv) -> bool {
    env.get_json(&["networkpolicy", "-n", "keycloak", "keycloak"])
        .is_some()
}

#[test]
fn showing_an_unknown_address_names_it() {
    let (env, cfg) = TestEnv::with_quickstart_applied();
    let run = env.vz(&["state", "show", "-f", &cfg, "nope/Kind/x"]);
    run.expect_code(exit::USAGE);
    run.expect_stderr("`nope/Kind/x`");
    run.expect_stderr("vz state list");
}
