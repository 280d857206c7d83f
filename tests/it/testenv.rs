//! The test control plane itself: it serves the API and stops when its owner ends.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{TestEnv, repo_root};

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
    assert_eq!(
        started.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: Vec<_> = started.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
}
