//! Faults in the middle of a run: `vz` killed with SIGKILL at random points, the API server
//! restarted, etcd stalled, an admission webhook failing or too slow. Whatever happens, the next
//! run sees the truth and converges; a run that cannot finish in its time names the object and
//! rolls back.
//!
//! The kill loop runs `VZ_KILL_RUNS` rounds (4 by default; `scripts/kill-loop` runs 30) with a
//! seeded random delay (`VZ_KILL_SEED` replays a loop) and prints its counts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::{Running, TestEnv, exit, skip};

/// The label selector of the objects of the example platform `shop`.
const SHOP: &str = "app.kubernetes.io/managed-by=vz,vz.dev/platform=shop";

/// A third application, inline: what a change after the platform exists adds.
const BILLING: &str = "applications:\n  - name: billing\n    namespace: finance\n    ports: [9000]\n    rules:\n      - destination: {host: billing, port: 9000}\n";

/// Every object in the cluster that carries `selector`, as `Kind namespace/name`, over every kind
/// the API server lists (so nothing can hide in a kind the test forgot) — but those that
/// Kubernetes' controllers make and copy the labels of their owners onto (a Service's Endpoints and
/// EndpointSlices, a Deployment's ReplicaSets and Pods): not `vz`'s.
fn labelled(env: &TestEnv, selector: &str) -> BTreeSet<String> {
    // Discovery is incomplete for a moment while a CRD is being deleted, and a kind can go
    // between listing the kinds and their objects: try again then, never count a failed listing.
    let items = env.eventually(Duration::from_secs(60), "a complete listing", || {
        let kinds = env.kubectl(&["api-resources", "--verbs=list", "-o", "name"]);
        if !kinds.ok() {
            return None;
        }
        let kinds: Vec<&str> = kinds.stdout.lines().filter(|k| !k.is_empty()).collect();
        let all = env.kubectl(&["get", &kinds.join(","), "-A", "-l", selector, "-o", "json"]);
        let all: serde_json::Value = serde_json::from_str(&all.stdout)
            .ok()
            .filter(|_| all.ok())?;
        all["items"].as_array().cloned()
    });
    items
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"].is_null()
                && !matches!(o["kind"].as_str(), Some("Endpoints" | "EndpointSlice"))
        })
        .map(|o| {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
            let name = o["metadata"]["name"].as_str().unwrap_or("");
            format!("{} {ns}/{name}", o["kind"].as_str().unwrap_or(""))
        })
        .collect()
}

/// The objects the state file at `path` records, as `Kind namespace/name`, with how many records
/// each has (more than one is a duplicate).
fn recorded(path: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let state: serde_json::Value = serde_json::from_str(&text).expect("the state is JSON");
    for o in state["objects"].as_array().cloned().unwrap_or_default() {
        if o["api_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("dns."))
        {
            continue;
        }
        let ns = o["namespace"].as_str().unwrap_or("");
        let key = format!(
            "{} {ns}/{}",
            o["kind"].as_str().unwrap_or(""),
            o["name"].as_str().unwrap_or("")
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

/// The addresses of the objects the state file at `path` records.
fn addresses(path: &std::path::Path) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeSet::new();
    };
    let state: serde_json::Value = serde_json::from_str(&text).expect("the state is JSON");
    state["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["address"].as_str().map(str::to_string))
        .collect()
}

/// A small seeded generator (xorshift64*), so a loop can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Start `vz args`, kill it with SIGKILL after `delay`; whether it was still running then.
fn killed(env: &TestEnv, args: &[&str], delay: Duration) -> bool {
    let mut child = env.spawn_vz(args);
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if child.ended() {
            return false;
        }
        // A poll of the process, not a wait for a condition: the kill comes at `delay`.
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill();
    true
}

/// What the loop counts.
#[derive(Default, Debug)]
struct Tally {
    killed: usize,
    finished_first: usize,
    unrecorded_after_kill: usize,
    orphans: usize,
    duplicates: usize,
    failed_plans: usize,
    unclean_after_apply: usize,
    left_after_destroy: usize,
}

#[test]
fn runs_killed_at_random_points_lose_track_of_nothing() {
    let env = TestEnv::start();
    let cfg = env.applications_config("");
    let state = env.work.path().join("applications.vzstate.json");
    let runs = env_number("VZ_KILL_RUNS", 4);
    let seed = env_number(
        "VZ_KILL_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    )
    .max(1);
    eprintln!("kill loop: {runs} runs, VZ_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let mut t = Tally::default();
    // The platform alone: the same platform and state, its applications dropped.
    let text = std::fs::read_to_string(&cfg).expect("config");
    let platform = env.write_config("platform.yaml", &text.replace("applicationsDir: apps", ""));
    let platform = platform.to_str().expect("utf8").to_string();
    let apply = ["apply", "-f", cfg.as_str(), "--auto-approve"];
    let destroy = ["destroy", "-f", cfg.as_str(), "--auto-approve"];
    for round in 0..runs {
        // A full install plus applications from nothing, killed after 0.1–2.6 s (a whole install
        // takes about 2.3 s here). Then, by turns: the same configuration applied again, its
        // destroy killed too; a destroy at once; the platform alone applied (what the killed run
        // made of the applications is no longer configured), its destroy killed too.
        let delay = Duration::from_millis(100 + rng.below(2500));
        if killed(&env, &apply, delay) {
            t.killed += 1;
        } else {
            t.finished_first += 1;
        }
        let live = labelled(&env, SHOP);
        let known = recorded(&state);
        t.unrecorded_after_kill += live.iter().filter(|o| !known.contains_key(*o)).count();

        if round % 3 != 1 {
            let next = if round % 3 == 0 { &cfg } else { &platform };
            // The next plan succeeds: the dead run's lock is taken over, its objects found.
            let plan = env.vz(&["plan", "-f", next, "--detailed-exitcode"]);
            if plan.code != 0 && plan.code != 2 {
                t.failed_plans += 1;
                eprintln!(
                    "round {round}: plan failed ({}):\n{}",
                    plan.code, plan.stderr
                );
            }
            let applied = env.vz(&["apply", "-f", next, "--auto-approve"]);
            assert_eq!(
                applied.code, 0,
                "round {round}: apply after a kill:\n{}",
                applied.stderr
            );
            let again = env.vz(&["plan", "-f", next, "--detailed-exitcode"]);
            if again.code != 0 {
                t.unclean_after_apply += 1;
                eprintln!("round {round}: not clean after apply:\n{}", again.stdout);
            }
            let live = labelled(&env, SHOP);
            let known = recorded(&state);
            let orphans: Vec<_> = live.iter().filter(|o| !known.contains_key(*o)).collect();
            if !orphans.is_empty() {
                eprintln!("round {round}: orphans {orphans:?}");
            }
            t.orphans += orphans.len();
            t.duplicates += known.values().filter(|n| **n > 1).count();

            let delay = Duration::from_millis(100 + rng.below(2500));
            if killed(&env, &destroy, delay) {
                t.killed += 1;
            } else {
                t.finished_first += 1;
            }
        }
        let destroyed = env.vz(&destroy);
        assert_eq!(
            destroyed.code, 0,
            "round {round}: destroy:\n{}",
            destroyed.stderr
        );
        let left = labelled(&env, SHOP);
        if !left.is_empty() {
            eprintln!("round {round}: left after destroy {left:?}");
        }
        t.left_after_destroy += left.len();
    }
    eprintln!(
        "kill loop (seed {seed}): {runs} rounds, {} runs killed ({} finished before the kill); objects found unrecorded after a kill and taken back: {}; orphans left: {}; duplicates: {}; plans that failed: {}; plans not clean after the next apply: {}; objects left after destroy: {}",
        t.killed,
        t.finished_first,
        t.unrecorded_after_kill,
        t.orphans,
        t.duplicates,
        t.failed_plans,
        t.unclean_after_apply,
        t.left_after_destroy
    );
    assert_eq!(
        (
            t.orphans,
            t.duplicates,
            t.failed_plans,
            t.unclean_after_apply,
            t.left_after_destroy
        ),
        (0, 0, 0, 0, 0),
        "{t:?}"
    );
    // Nothing of the killed runs' is left lying around beside the state.
    let mut files: Vec<String> = std::fs::read_dir(env.work.path())
        .expect("work dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "applications.vzstate.json",
            "applications.vzstate.json.backup",
            "applications.yaml",
            "apps",
            "platform.yaml"
        ]
    );
}

/// Hold istiod's pods unready, so that an apply is still running (waiting for istiod) when the
/// fault comes; returns the running apply.
fn apply_waiting_for_istiod(env: &TestEnv, cfg: &str, timeout: &str) -> Running {
    env.set_node_sim("unready", "istio-system/istiod-");
    let child = env.spawn_vz(&["apply", "-f", cfg, "--auto-approve", "--timeout", timeout]);
    env.eventually(
        Duration::from_secs(60),
        "istiod's pod to be scheduled",
        || {
            let pods = env.get_json(&["pods", "-n", "istio-system", "-l", "app=istiod"])?;
            let n = pods["items"].as_array().map_or(0, Vec::len);
            (n > 0).then_some(())
        },
    );
    child
}

#[test]
fn an_api_server_restarted_mid_apply_is_waited_for_and_the_apply_completes() {
    let env = TestEnv::start();
    let cfg = env.applications_config("");
    let child = apply_waiting_for_istiod(&env, &cfg, "5m");
    let restart = env.testenv("restart-apiserver", &["1"]);
    restart.expect_code(0);
    let back = Instant::now();
    env.set_node_sim("unready", "");
    let run = child.wait();
    run.expect_code(0);
    eprintln!(
        "API server restart: {}; the apply finished {:.1}s after it was back",
        restart.stderr.trim(),
        back.elapsed().as_secs_f64()
    );
    assert!(
        run.stderr.contains("failed a request (connection"),
        "the outage was met and said so:\n{}",
        run.stderr
    );
    run.expect_stderr("answers again");
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn a_stalled_etcd_is_waited_for_and_the_apply_completes() {
    let env = TestEnv::start();
    let cfg = env.applications_config("");
    let child = apply_waiting_for_istiod(&env, &cfg, "5m");
    env.testenv("pause-etcd", &["4"]).expect_code(0);
    let back = Instant::now();
    env.set_node_sim("unready", "");
    child.wait().expect_code(0);
    eprintln!(
        "etcd stalled 4s: the apply finished {:.1}s after it went on",
        back.elapsed().as_secs_f64()
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn an_etcd_stalled_past_the_timeout_fails_naming_the_object_and_rolls_back() {
    let env = TestEnv::start();
    let cfg = env.applications_config("");
    let state = env.work.path().join("applications.vzstate.json");
    let child = env.spawn_vz(&["apply", "-f", &cfg, "--auto-approve", "--timeout", "6s"]);
    env.eventually(
        Duration::from_secs(30),
        "the apply to create something",
        || env.get_json(&["namespace", "istio-system"]),
    );
    let started = Instant::now();
    env.testenv("pause-etcd", &["12"]).expect_code(0);
    let run = child.wait();
    run.expect_code(exit::ROLLED_BACK);
    let took = started.elapsed();
    eprintln!(
        "etcd stalled 12s against --timeout 6s: failed and rolled back {:.1}s after the stall began",
        took.as_secs_f64()
    );
    assert!(took >= Duration::from_secs(12));
    run.expect_stderr("gave no answer before the run's time was up (--timeout)");
    // The request cut short is named ("cannot apply Kind namespace/name: ...", or the read of
    // it, or the lookup of its kind: whichever was in flight when the time ran out).
    let cut = run
        .stderr
        .lines()
        .find(|l| l.contains("gave no answer before the run's time was up"))
        .unwrap_or_default();
    assert!(
        ["cannot apply ", "cannot read ", "cannot look up "]
            .iter()
            .any(|m| cut.contains(m)),
        "{}",
        run.stderr
    );
    run.expect_stderr("Rolled back every change of this run");
    assert!(
        recorded(&state).is_empty(),
        "the state is as before the run"
    );
    // A change the API server carried out after vz stopped waiting for it carries vz's labels:
    // the next run finds it, and a destroy leaves nothing.
    // Whether a change was in flight when the time ran out (rather than a read) is up to timing;
    // if one was, the report says so and the state tells the next plan to look.
    let unanswered = run
        .stderr
        .contains("Some changes got no answer from the API server, which may still carry them out");
    let marked = std::fs::read_to_string(&state).expect("state");
    assert_eq!(
        marked.contains("\"unfinished\""),
        unanswered,
        "{}",
        run.stderr
    );
    env.vz(&["destroy", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert!(labelled(&env, SHOP).is_empty());
    let settled = std::fs::read_to_string(&state).expect("state");
    assert!(
        !settled.contains("\"unfinished\""),
        "looked, and found nothing more to do: {settled}"
    );
}

/// The example applied, and its configuration with a third application (whose Istio objects
/// the webhook stand-in validates) to apply next; `None` on a plane without the stand-in.
fn billing_next(env: &TestEnv) -> Option<String> {
    if !env.plane_file("webhook-standin-ip").exists() {
        skip("no webhook stand-in on this plane (needs root): no webhook to disturb");
        return None;
    }
    let cfg = env.applications_config("");
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    Some(env.applications_config(BILLING))
}

#[test]
fn an_admission_webhook_failing_for_a_while_is_waited_out() {
    let env = TestEnv::start();
    let Some(cfg) = billing_next(&env) else {
        return;
    };
    let fail = env.plane_file("webhook-fail");
    std::fs::write(&fail, "").expect("fail the webhook");
    let started = Instant::now();
    let child = env.spawn_vz(&["apply", "-f", &cfg, "--auto-approve"]);
    // The failure is met, said, and to be tried again: then the webhook heals.
    child.await_said(Duration::from_secs(60), "failed calling webhook");
    let failing = started.elapsed();
    std::fs::remove_file(&fail).expect("heal the webhook");
    let run = child.wait();
    run.expect_code(0);
    eprintln!(
        "webhook failing for {:.1}s: the apply finished in {:.1}s",
        failing.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        run.stderr.contains("vz tries again"),
        "the failure was to be tried again:\n{}",
        run.stderr
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn an_admission_webhook_slower_than_its_timeout_fails_the_apply_naming_the_object() {
    let env = TestEnv::start();
    let Some(cfg) = billing_next(&env) else {
        return;
    };
    let state = env.work.path().join("applications.vzstate.json");
    let before = recorded(&state);
    // Istio's validators give up after 10 s (timeoutSeconds unset): answer after 12.
    std::fs::write(env.plane_file("webhook-delay"), "12").expect("slow the webhook");
    let started = Instant::now();
    let run = env.vz(&["apply", "-f", &cfg, "--auto-approve", "--timeout", "25s"]);
    let took = started.elapsed();
    std::fs::remove_file(env.plane_file("webhook-delay")).expect("speed up");
    run.expect_code(exit::ROLLED_BACK);
    eprintln!(
        "webhook slower than its timeout, --timeout 25s: failed and rolled back in {:.1}s",
        took.as_secs_f64()
    );
    run.expect_stderr("failed calling webhook");
    assert!(
        run.stderr.contains("the API server refused to apply ")
            && run.stderr.contains(" finance/billing"),
        "the object is named:\n{}",
        run.stderr
    );
    run.expect_stderr("vz tried ");
    run.expect_stderr("Rolled back every change of this run");
    assert!(took < Duration::from_secs(90), "took {took:?}");
    assert_eq!(recorded(&state), before);
    assert!(
        env.get_json(&["namespace", "finance"])
            .is_none_or(|ns| { ns["status"]["phase"] == "Terminating" })
    );
}

/// A file system of `size` of its own at `dir` (tmpfs, so root only), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        out.status.success().then(|| SmallDisk(dir.to_path_buf()))
    }

    /// Write into it until nothing more fits.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).expect("filler");
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("free");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_at_a_state_write_keeps_the_last_state_written_and_says_where() {
    let env = TestEnv::start();
    let cfg = env.applications_config("");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let cfg = env.write_config(
        "applications.yaml",
        &text.replace(
            "path: applications.vzstate.json",
            "path: small/applications.vzstate.json",
        ),
    );
    let cfg = cfg.to_str().expect("utf8");
    let Some(disk) = SmallDisk::mount(&env.work.path().join("small"), "512k") else {
        skip("cannot mount a tmpfs here (needs root): no disk to fill");
        return;
    };
    let state = env.work.path().join("small/applications.vzstate.json");
    let child = apply_waiting_for_istiod(&env, cfg, "5m");
    // The steps before istiod's are recorded while the apply waits for it: the state holds every
    // object the apply said it created but those of istiod's step (written once istiod is ready),
    // and no write is under way when the disk fills.
    env.eventually(
        Duration::from_secs(30),
        "the steps before istiod's to be recorded",
        || {
            let said = child.stderr();
            let created: Vec<&str> = said
                .lines()
                .filter_map(|l| l.strip_suffix(": created"))
                .filter(|a| !a.starts_with("istio.control-plane/"))
                .collect();
            let known = addresses(&state);
            (!created.is_empty() && created.iter().all(|a| known.contains(*a))).then_some(())
        },
    );
    disk.fill();
    let last_written = std::fs::read(&state).expect("state");
    env.set_node_sim("unready", "");
    let run = child.wait();
    run.expect_code(exit::PARTIAL);
    run.expect_stderr("The state file is whole, as it was last written");
    let shown = state.display().to_string();
    assert!(
        run.stderr.contains(&shown) && run.stderr.contains("No space left on device"),
        "the error says where and why:\n{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&state).expect("state"),
        last_written,
        "the state file is the last one written, whole"
    );
    disk.free();
    // The next run reads that state, finds what the rollback removed gone, and converges.
    env.vz(&["plan", "-f", cfg]).expect_code(0);
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);
}
