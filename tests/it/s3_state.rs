//! The s3 state backend's guarantees against a real S3 server (`scripts/s3-server`), without a
//! cluster: runs racing for the lock or for the next state write never both win, and each workspace
//! has an object of its own.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use vz_state::backend::S3Backend;
use vz_state::{Backend, BackendError, Lock, LockError, LockInfo, Version};

use crate::common::{S3Server, exit};
use crate::team_state::runtime;

const RACERS: usize = 8;
const ROUNDS: usize = 15;

/// Run `attempt` on every backend at once (all released together by a barrier).
async fn race<T, F, Fut>(backends: &[S3Backend], attempt: F) -> Vec<T>
where
    F: Fn(S3Backend, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(backends.len()));
    let tasks = backends.iter().enumerate().map(|(i, b)| {
        let barrier = Arc::clone(&barrier);
        let run = attempt(b.clone(), i);
        tokio::spawn(async move {
            barrier.wait().await;
            run.await
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect()
}

#[test]
fn racing_runs_never_both_take_the_lock_nor_both_write_the_state() {
    let s3 = S3Server::start();
    runtime().block_on(async {
        for round in 0..ROUNDS {
            let key = format!("race/{round}.json");
            // Separate clients, as separate runs would have.
            let racers: Vec<S3Backend> = (0..RACERS)
                .map(|_| s3.backend(&key, "default", Duration::from_secs(60)))
                .collect();
            let info = |i: usize| LockInfo::new(&format!("racer-{i}"), "test", "race");

            // Nobody holds it: one creates the lock object, the others are told who did. (Every
            // lock taken is held until all are done: a released one may be taken again.)
            let held = race(&racers, move |b, i| async move {
                b.lock(info(i), Duration::ZERO).await
            })
            .await;
            let taken = summary(&held, |l| l.info().operation.clone());
            let winners: Vec<_> = taken.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {taken:?}");
            for lost in taken.iter().filter_map(|r| r.as_ref().err()) {
                assert_eq!(lost, &format!("locked by {}", winners[0]), "round {round}");
            }
            for lock in held.iter().flatten() {
                lock.release().await.expect("release");
            }

            // Its holder let it expire (a lease of 0 s): one takes it over, naming whose it took.
            let expiring = s3.backend(&key, "default", Duration::ZERO);
            let stale = expiring.lock(info(99), Duration::ZERO).await.expect("lock");
            std::mem::forget(stale); // a holder that dies without releasing
            // Time passing is what expires a lease of 0 s: no condition to wait for instead.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let held = race(&racers, move |b, i| async move {
                b.lock(info(i), Duration::ZERO).await
            })
            .await;
            let taken = summary(&held, |l| l.replaced().map(|r| r.operation.clone()));
            let winners: Vec<_> = taken.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {taken:?}");
            assert_eq!(winners[0].as_deref(), Some("racer-99"));
            for lost in held.iter().filter_map(|r| r.as_ref().err()) {
                assert!(
                    matches!(lost, LockError::Locked { .. }),
                    "round {round}: {lost}"
                );
            }
            drop(held);

            // The first state: one creates it.
            let wrote = race(&racers, |b, i| async move {
                b.write(format!("state {i}").as_bytes(), None).await
            })
            .await;
            let first = one_winner(&wrote, round);

            // The next one, all from the same version: one replaces it.
            let wrote = race(&racers, move |b, i| {
                let first = first.clone();
                async move { b.write(format!("next {i}").as_bytes(), Some(&first)).await }
            })
            .await;
            let next = one_winner(&wrote, round);
            let (bytes, now) = racers[0].read().await.expect("read").expect("a state");
            assert_eq!(now, next);
            assert!(bytes.starts_with(b"next "));
        }
    });
}

/// What each racer got: `what` of its lock, or whose lock refused it.
fn summary<T>(
    held: &[Result<Box<dyn Lock>, LockError>],
    what: impl Fn(&dyn Lock) -> T,
) -> Vec<Result<T, String>> {
    held.iter()
        .map(|r| match r {
            Ok(lock) => Ok(what(lock.as_ref())),
            Err(LockError::Locked { info }) => Err(format!("locked by {}", info.operation)),
            Err(e) => Err(e.to_string()),
        })
        .collect()
}

/// The one successful write's version; every other write was refused as a conflict.
fn one_winner(results: &[Result<Version, BackendError>], round: usize) -> Version {
    let mut won = None;
    for r in results {
        match r {
            Ok(v) => {
                assert!(won.is_none(), "round {round}: two writers won: {results:?}");
                won = Some(v.clone());
            }
            Err(BackendError::Conflict) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    won.unwrap_or_else(|| panic!("round {round}: nobody wrote: {results:?}"))
}

#[test]
fn each_s3_workspace_is_an_object_of_its_own_and_deleting_one_removes_it() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let text = std::fs::read_to_string(crate::common::repo_root().join("examples/quickstart.yaml"))
        .expect("example")
        .replace(
            "  backend: local\n",
            &format!(
                "  backend: s3\n  bucket: {}\n  key: eu/quickstart.json\n  endpoint: {}\n",
                S3Server::BUCKET,
                s3.endpoint()
            ),
        )
        .replace("  path: quickstart.vzstate.json\n", "");
    let cfg = dir.path().join("q.yaml");
    std::fs::write(&cfg, text).expect("write");
    let cfg = cfg.to_str().expect("utf8");
    let vz = |args: &[&str]| {
        let mut full = Vec::from(args);
        full.extend(["-f", cfg]);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vz"));
        cmd.envs(s3.vars()).current_dir(dir.path()).args(&full);
        crate::common::Run::of(cmd)
    };
    let made = vz(&["workspace", "new", "prod"]);
    made.expect_code(0);
    made.expect_stdout("s3 s3://vz-state/eu/vz-workspaces/prod/quickstart.json");
    vz(&["workspace", "new", "staging"]).expect_code(0);
    assert_eq!(
        vz(&["workspace", "list"]).stdout,
        "  default\n  prod\n* staging\n"
    );
    runtime().block_on(async {
        let prod = s3.backend("eu/quickstart.json", "prod", Duration::from_secs(60));
        let (bytes, _) = prod.read().await.expect("read").expect("prod's state");
        assert_eq!(vz_state::decode(&bytes).expect("a state").serial, 1);
    });
    vz(&["workspace", "select", "default"]).expect_code(0);
    vz(&["workspace", "delete", "prod"]).expect_code(0);
    assert_eq!(vz(&["workspace", "list"]).stdout, "* default\n  staging\n");
    runtime().block_on(async {
        let prod = s3.backend("eu/quickstart.json", "prod", Duration::from_secs(60));
        assert!(prod.read().await.expect("read").is_none(), "deleted");
    });
    // A bucket that is not there is named, with what to do.
    let nob = dir.path().join("nob.yaml");
    std::fs::write(
        &nob,
        std::fs::read_to_string(cfg)
            .expect("cfg")
            .replace("bucket: vz-state", "bucket: no-such-bucket"),
    )
    .expect("write");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vz"));
    cmd.envs(s3.vars())
        .args(["state", "list", "-f", nob.to_str().expect("utf8")]);
    let run = crate::common::Run::of(cmd);
    run.expect_code(exit::CLUSTER);
    assert!(
        run.stderr.contains("NoSuchBucket") && run.stderr.contains("create the bucket first"),
        "{}",
        run.stderr
    );
}
