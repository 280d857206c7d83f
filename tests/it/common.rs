//! Test harness shared by the integration tests: a real control plane for each test, and helpers
//! to run `vz` and `kubectl` against it.
//!
//! [`TestEnv::start`] hands a test a control plane of its own: one another test has finished with,
//! put back as it started by `scripts/testenv reset` (every namespace, CRD and cluster-wide object
//! made since deleted, and checked), or else a new one from `scripts/testenv up` (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and the simulators on free loopback
//! ports) in a temporary directory. Only one test at a time uses a plane. A plane goes back to the
//! pool when its test passed and did nothing a reset cannot undo ([`TestEnv::testenv`]'s faults,
//! [`TestEnv::start_with`]'s options); otherwise it is stopped. The script's watchdog stops (and
//! removes) every plane when the test process ends in any way. The Kubernetes version is
//! `$VZ_K8S_VERSION`'s (scripts/testenv's default: 1.36).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex};

use tempfile::TempDir;

/// Repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Say that the running test cannot check what it is for here, and why (a test calls it, then
/// returns): libtest counts the test passed, so the skip is told apart. A line
/// `vz-test-skipped: <test>: <reason>` goes to standard error (seen with `--nocapture`) and, when
/// `$VZ_TEST_SKIPS` names a file, `<test>: <reason>` is appended to it: scripts/test counts those
/// lines, and fails the run on any in CI or as root, where nothing should need skipping.
pub fn skip(reason: &str) {
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("an unnamed test");
    let version = std::env::var("VZ_K8S_VERSION")
        .map(|v| format!(" (Kubernetes {v})"))
        .unwrap_or_default();
    let line = format!("{test}: {reason}{version}");
    eprintln!("vz-test-skipped: {line}");
    if let Some(file) = std::env::var_os("VZ_TEST_SKIPS") {
        use std::io::Write as _;
        // One write of one line to a file opened to append: lines of tests running at once do
        // not mix.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
            .unwrap_or_else(|e| panic!("cannot record the skip in {}: {e}", file.display()));
    }
}

/// Control planes starting at once: on 2 cores, more only slows every one of them down.
const MAX_STARTING: usize = 2;
static STARTING: Mutex<usize> = Mutex::new(0);
static STARTED: Condvar = Condvar::new();

/// Planes whose tests have ended, reset, waiting for the next test.
static POOL: Mutex<Vec<TempDir>> = Mutex::new(Vec::new());
/// Planes kept waiting at most (about as many as tests run at once).
const POOL_SIZE: usize = 2;

/// How many objects `examples/quickstart.yaml` manages: 9 namespaces, 23 NetworkPolicies, 15 Istio
/// CRDs, 1 PeerAuthentication, the NGINX controller (IngressClass, 3 Services, 2 Deployments, 2
/// ConfigMaps, 2 ServiceAccounts, Role, RoleBinding, ClusterRole, ClusterRoleBinding), 8 system
/// Ingresses and their certificates, the CA bundles, istiod's revision and the default revision tag
/// pointing at it, the gateways.
pub const QUICKSTART_OBJECTS: usize = 111;

/// istiod's Deployment and Service in `istio-system`: named after the revision of the default
/// Istio release (README, "Upgrades").
pub const ISTIOD: &str = "istiod-1-30-3";
/// istiod's sidecar injector (MutatingWebhookConfiguration and ConfigMap).
pub const INJECTOR: &str = "istio-sidecar-injector-1-30-3";
/// istiod's own ValidatingWebhookConfiguration.
pub const VALIDATOR: &str = "istio-validator-1-30-3-istio-system";
/// The default revision tag's MutatingWebhookConfiguration: what injects namespaces labelled
/// `istio-injection=enabled`.
pub const TAG_INJECTOR: &str = "istio-revision-tag-default";

/// `vz`'s exit codes (README, "Exit codes").
pub mod exit {
    /// An error of no other kind.
    pub const OTHER: i32 = 1;
    /// A wrong command line or configuration.
    pub const USAGE: i32 = 3;
    /// The cluster cannot be reached or refused a request.
    pub const CLUSTER: i32 = 4;
    /// Another run holds the state's lock.
    pub const LOCKED: i32 = 5;
    /// The state or a saved plan cannot be used.
    pub const STATE: i32 = 6;
    /// Apply failed and was rolled back completely.
    pub const ROLLED_BACK: i32 = 7;
    /// Apply or destroy failed and changes remain.
    pub const PARTIAL: i32 = 8;
}

/// Every kind the quick start manages, for `kubectl get` (Istio's kinds included, so only while
/// its CRDs are there).
pub const MANAGED_KINDS: &str = "namespaces,secrets,networkpolicies,customresourcedefinitions,peerauthentications,ingressclasses,services,ingresses,deployments,configmaps,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations,authorizationpolicies,envoyfilters";

/// A running control plane plus a working directory for configs and state.
pub struct TestEnv {
    /// Holds the control plane's files (etcd data, logs, kubeconfig); taken when dropped.
    plane: Option<TempDir>,
    /// Whether a reset can hand the plane to another test once this one has passed.
    reusable: std::cell::Cell<bool>,
    /// Working directory for the test's configuration and state files.
    pub work: TempDir,
    /// kubectl's discovery cache, this test's own.
    kube_cache: TempDir,
    kubeconfig: PathBuf,
    /// Environment variables every `vz` run gets (an S3 server's credentials, say).
    vars: Vec<(String, String)>,
}

impl TestEnv {
    /// An empty control plane of this test's own: one from the pool, or a new one.
    pub fn start() -> TestEnv {
        let pooled = POOL.lock().expect("lock").pop();
        match pooled {
            Some(plane) => TestEnv::on(plane, true),
            None => TestEnv::start_with(&[]),
        }
    }

    /// A new, empty control plane, started with more options of `scripts/testenv up`
    /// (`--pod-security restricted`, say). A plane started with options is not handed to another
    /// test afterwards.
    pub fn start_with(options: &[&str]) -> TestEnv {
        let plane = tempfile::Builder::new()
            .prefix("vz-testenv-")
            .tempdir()
            .expect("temp dir for the control plane");
        {
            let mut n = STARTING.lock().expect("lock");
            while *n >= MAX_STARTING {
                n = STARTED.wait(n).expect("lock");
            }
            *n += 1;
        }
        let out = Command::new(repo_root().join("scripts/testenv"))
            .arg("up")
            .arg(plane.path())
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .args(options)
            .output()
            .expect("run scripts/testenv up");
        {
            *STARTING.lock().expect("lock") -= 1;
            STARTED.notify_one();
        }
        assert!(
            out.status.success(),
            "scripts/testenv up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Kept in the pool, it goes when the test process does (the watchdog removes it).
        std::fs::write(plane.path().join("remove-with-owner"), "").expect("write");
        TestEnv::on(plane, options.is_empty())
    }

    fn on(plane: TempDir, reusable: bool) -> TestEnv {
        let kubeconfig = plane.path().join("kubeconfig");
        TestEnv {
            plane: Some(plane),
            reusable: std::cell::Cell::new(reusable),
            work: tempfile::tempdir().expect("work dir"),
            kube_cache: tempfile::tempdir().expect("kubectl's cache dir"),
            kubeconfig,
            vars: Vec::new(),
        }
    }

    /// The plane's directory.
    fn plane_dir(&self) -> &std::path::Path {
        self.plane.as_ref().expect("a plane").path()
    }

    /// A fresh control plane with `examples/quickstart.yaml` applied; returns the configuration's
    /// path (its state file is next to it).
    pub fn with_quickstart_applied() -> (TestEnv, String) {
        let env = TestEnv::start();
        let cfg = env.example("quickstart.yaml");
        let cfg = cfg.to_str().expect("utf8 path").to_string();
        env.vz(&["apply", "-f", &cfg, "--auto-approve"])
            .expect_code(0);
        (env, cfg)
    }

    /// Copy `examples/<name>` into the work directory and return its path there.
    pub fn example(&self, name: &str) -> PathBuf {
        let dst = self.work.path().join(name);
        std::fs::copy(repo_root().join("examples").join(name), &dst).expect("copy example");
        dst
    }

    /// Write a configuration file into the work directory.
    pub fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let dst = self.work.path().join(name);
        std::fs::write(&dst, text).expect("write config");
        dst
    }

    /// Run `vz` against this control plane, with no terminal on standard input.
    pub fn vz(&self, args: &[&str]) -> Run {
        self.vz_with_env(&[], args)
    }

    /// Give every later `vz` run these environment variables.
    pub fn set_vars(&mut self, vars: &[(&str, &str)]) {
        self.vars
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }

    /// Run `vz` with extra environment variables.
    pub fn vz_with_env(&self, vars: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vz"));
        cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
        cmd.envs(vars.iter().copied());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        Run::of(cmd)
    }

    /// Start `vz` against this control plane without waiting for it; finish it with
    /// [`Running::wait`].
    pub fn spawn_vz(&self, args: &[&str]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vz"));
        cmd.env_remove("NO_COLOR")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args);
        Running::spawn(cmd)
    }

    /// Wait (up to `limit`) until `probe` returns something.
    #[track_caller]
    pub fn eventually<T>(
        &self,
        limit: std::time::Duration,
        what: &str,
        probe: impl FnMut() -> Option<T>,
    ) -> T {
        poll(limit, probe, || format!("timed out waiting for {what}"))
    }

    /// The user's own `cert-manager` namespace, with something in it (a ConfigMap `users-data`).
    pub fn create_users_cert_manager(&self) {
        self.kubectl(&["create", "namespace", "cert-manager"])
            .expect_code(0);
        self.kubectl(&[
            "-n",
            "cert-manager",
            "create",
            "configmap",
            "users-data",
            "--from-literal=k=v",
        ])
        .expect_code(0);
    }

    /// A ConfigMap `hold` in `namespace` with a finalizer nobody removes: the namespace cannot
    /// finish deleting until [`TestEnv::release_namespace_hold`].
    pub fn hold_namespace(&self, namespace: &str) {
        let file = self.work.path().join(format!("hold-{namespace}.json"));
        std::fs::write(
            &file,
            format!(
                r#"{{"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {{"name": "hold", "namespace": "{namespace}", "finalizers": ["vz.test/hold"]}}}}"#
            ),
        )
        .expect("write");
        self.kubectl(&["create", "-f", file.to_str().expect("utf8")])
            .expect_code(0);
    }

    /// Let a namespace held by [`TestEnv::hold_namespace`] go.
    pub fn release_namespace_hold(&self, namespace: &str) {
        self.kubectl(&[
            "-n",
            namespace,
            "patch",
            "configmap",
            "hold",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])
        .expect_code(0);
    }

    /// A file of the control plane's directory (logs, certificates, the webhook stand-in's address).
    pub fn plane_file(&self, name: &str) -> PathBuf {
        self.plane_dir().join(name)
    }

    /// Run `scripts/testenv COMMAND <this plane> ARGS...` (`restart-apiserver`, `pause-etcd`): a
    /// fault the plane is not handed on after.
    pub fn testenv(&self, command: &str, args: &[&str]) -> Run {
        self.reusable.set(false);
        let mut cmd = Command::new(repo_root().join("scripts/testenv"));
        cmd.arg(command).arg(self.plane_dir()).args(args);
        Run::of(cmd)
    }

    /// `examples/applications.yaml` (the platform `shop` and the two applications of
    /// `examples/apps/`, copied next to it) plus `extra`, written into the work directory.
    pub fn applications_config(&self, extra: &str) -> String {
        let apps = self.work.path().join("apps");
        std::fs::create_dir_all(&apps).expect("apps dir");
        for app in ["orders.yaml", "storefront.yaml"] {
            std::fs::copy(repo_root().join("examples/apps").join(app), apps.join(app))
                .expect("copy app");
        }
        let base = std::fs::read_to_string(repo_root().join("examples/applications.yaml"))
            .expect("example");
        let cfg = self.write_config("applications.yaml", &format!("{base}{extra}"));
        cfg.to_str().expect("utf8").to_string()
    }

    /// Tell the node simulator something (`scripts/node-sim`): `key` of its ConfigMap
    /// `kube-system/vz-node-sim` (`unready`, `pod-ips`, `load-balancers`) becomes `value`.
    pub fn set_node_sim(&self, key: &str, value: &str) {
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "vz-node-sim", "namespace": "kube-system"},
            "data": {key: value},
        });
        let file = self.work.path().join("node-sim.json");
        std::fs::write(&file, cm.to_string()).expect("write");
        self.kubectl(&[
            "apply",
            "--server-side",
            "--field-manager",
            &format!("test-{key}"),
            "-f",
            file.to_str().expect("utf8"),
        ])
        .expect_code(0);
    }

    /// Set a Service's load balancer status, as a cloud's load-balancer controller would.
    pub fn set_load_balancer_ip(&self, namespace: &str, name: &str, ip: &str) {
        let mut svc = self
            .get_json(&["service", "-n", namespace, name])
            .expect("service exists");
        svc["status"] = serde_json::json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
        let file = self.work.path().join(format!("{name}-status.json"));
        std::fs::write(&file, svc.to_string()).expect("write status");
        self.kubectl(&[
            "replace",
            "--raw",
            &format!("/api/v1/namespaces/{namespace}/services/{name}/status"),
            "-f",
            file.to_str().expect("utf8"),
        ])
        .expect_code(0);
    }

    /// Run `kubectl` against this control plane, with a discovery cache of this test's own (a plane
    /// handed on keeps its port, and kubectl's cache is by host and port).
    pub fn kubectl(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.kube_cache.path())
            .args(args);
        Run::of(cmd)
    }

    /// `kubectl get -o json` of one object (with its managed fields), or `None` when it does not exist.
    pub fn get_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut full = vec![
            "get",
            "-o",
            "json",
            "--ignore-not-found",
            "--show-managed-fields",
        ];
        full.extend_from_slice(args);
        let run = self.kubectl(&full);
        assert!(run.ok(), "kubectl get failed: {}", run.stderr);
        if run.stdout.trim().is_empty() {
            return None;
        }
        Some(serde_json::from_str(&run.stdout).expect("kubectl JSON"))
    }

    /// `data[key]` of Secret `ns/name`, decoded.
    pub fn secret_text(&self, ns: &str, name: &str, key: &str) -> String {
        let s = self
            .get_json(&["secret", "-n", ns, name])
            .unwrap_or_else(|| panic!("Secret {ns}/{name}"));
        let b64 = s["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{ns}/{name} has {key}"));
        base64_text(b64)
    }

    /// Names (`kind/name`) of the objects a `kubectl get` lists, e.g. `["networkpolicies", "-A"]`.
    pub fn list_names(&self, args: &[&str]) -> Vec<String> {
        let mut full = vec!["get", "-o", "name"];
        full.extend_from_slice(args);
        let run = self.kubectl(&full);
        assert!(run.ok(), "kubectl get failed: {}", run.stderr);
        run.stdout.lines().map(str::to_string).collect()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let Some(plane) = self.plane.take() else {
            return;
        };
        let testenv = |command: &str| {
            Command::new(repo_root().join("scripts/testenv"))
                .arg(command)
                .arg(plane.path())
                .output()
        };
        // A failed test's plane is not trusted to reset (and its logs die with it either way).
        if self.reusable.get()
            && !std::thread::panicking()
            && POOL.lock().map(|p| p.len() < POOL_SIZE).unwrap_or(false)
        {
            match testenv("reset") {
                Ok(out) if out.status.success() => {
                    if let Ok(mut pool) = POOL.lock() {
                        pool.push(plane);
                    }
                    return;
                }
                Ok(out) => eprintln!(
                    "a control plane could not be reset, so it is stopped:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("cannot run scripts/testenv reset: {e}"),
            }
        }
        // VZ_TEST_KEEP_FAILED=1: a failed test's plane directory (logs, the stand-in's calls) stays.
        let keep = std::thread::panicking() && std::env::var_os("VZ_TEST_KEEP_FAILED").is_some();
        if keep {
            let _ = std::fs::remove_file(plane.path().join("remove-with-owner"));
        }
        let _ = testenv("down");
        if keep {
            eprintln!(
                "the failed test's control plane is kept in {}",
                plane.keep().display()
            );
        }
    }
}

/// A DNS server of the test's own (`scripts/dns-server`: BIND serving `example.test` on a free
/// loopback port, updates and transfers signed with a TSIG key); stopped when dropped.
pub struct DnsServer {
    dir: TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The TSIG key's secret, base64.
    pub secret: String,
}

impl DnsServer {
    /// Start one.
    pub fn start() -> DnsServer {
        let dir = tempfile::Builder::new()
            .prefix("vz-dns-")
            .tempdir()
            .expect("temp dir for the DNS server");
        let out = Command::new(repo_root().join("scripts/dns-server"))
            .arg("up")
            .arg(dir.path())
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("run scripts/dns-server up");
        assert!(
            out.status.success(),
            "scripts/dns-server up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |f: &str| {
            std::fs::read_to_string(dir.path().join(f))
                .expect("dns-server file")
                .trim()
                .to_string()
        };
        DnsServer {
            port: read("port").parse().expect("a port"),
            secret: read("tsig.secret"),
            dir,
        }
    }

    /// `nsupdate` with these commands (after `server` and `zone`), signed with `key` (`None`:
    /// unsigned); returns the run.
    pub fn nsupdate(&self, key: Option<&str>, commands: &str) -> Run {
        let script = self.dir.path().join("nsupdate.txt");
        std::fs::write(
            &script,
            format!(
                "server 127.0.0.1 {}\nzone example.test\n{commands}\nsend\n",
                self.port
            ),
        )
        .expect("write");
        let mut cmd = Command::new("nsupdate");
        if let Some(k) = key {
            cmd.arg("-y").arg(format!("hmac-sha256:vz-key:{k}"));
        }
        cmd.arg(&script);
        Run::of(cmd)
    }

    /// Every record of the zone (a signed zone transfer), one per line, as `dig` prints them.
    pub fn records(&self) -> Vec<String> {
        let run = Run::of({
            let mut cmd = Command::new("dig");
            cmd.args([
                "+nocmd",
                "+nostats",
                "+noquestion",
                "+nocomments",
                "-p",
                &self.port.to_string(),
                "@127.0.0.1",
                "-y",
                &format!("hmac-sha256:vz-key:{}", self.secret),
                "example.test",
                "AXFR",
            ]);
            cmd
        });
        assert!(run.ok(), "dig AXFR failed: {}", run.stderr);
        run.stdout
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(';') && !l.contains("\tTSIG\t"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/dns-server"))
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

/// An S3 server of the test's own (`scripts/s3-server`: moto on a free loopback port, one request
/// at a time, with bucket `vz-state`); stopped when dropped.
pub struct S3Server {
    dir: TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl S3Server {
    /// The bucket it starts with.
    pub const BUCKET: &str = "vz-state";
    /// The credentials it is given (moto takes any).
    pub const KEY_ID: &str = "vz-test";
    /// The secret of [`Self::KEY_ID`].
    pub const SECRET: &str = "vz-test-secret";

    /// Start one.
    pub fn start() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("vz-s3-")
            .tempdir()
            .expect("temp dir for the S3 server");
        let out = Command::new(repo_root().join("scripts/s3-server"))
            .arg("up")
            .arg(dir.path())
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("run scripts/s3-server up");
        assert!(
            out.status.success(),
            "scripts/s3-server up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::fs::read_to_string(dir.path().join("port"))
            .expect("s3-server port")
            .trim()
            .parse()
            .expect("a port");
        S3Server { dir, port }
    }

    /// Its URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a `vz` run needs to use it.
    pub fn vars(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", Self::KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// The `state:` settings of a configuration keeping its state at `key` here.
    pub fn state_yaml(&self, key: &str) -> String {
        format!(
            "{{backend: s3, bucket: {}, key: {key}, endpoint: '{}', leaseDuration: 15s}}",
            Self::BUCKET,
            self.endpoint()
        )
    }

    /// A backend of the state at `key` in `workspace`, whose locks last `lease`.
    pub fn backend(
        &self,
        key: &str,
        workspace: &str,
        lease: std::time::Duration,
    ) -> vz_state::backend::S3Backend {
        let place = vz_state::backend::S3Place {
            bucket: Self::BUCKET.into(),
            key: key.into(),
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            workspace: workspace.into(),
        };
        vz_state::backend::S3Backend::with_credentials(place, lease, Self::KEY_ID, Self::SECRET)
            .expect("an S3 backend")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/s3-server"))
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

/// The binary of a judge of vz's output (`istioctl`, `netpolicy`), built on first use and cached
/// (`scripts/testenv judge`).
pub fn judge(name: &str) -> PathBuf {
    let out = Command::new(repo_root().join("scripts/testenv"))
        .args(["judge", name])
        .output()
        .expect("scripts/testenv runs");
    assert!(
        out.status.success(),
        "scripts/testenv judge {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Run `vz` with no cluster flags (for commands that need no cluster, or a custom kubeconfig).
pub fn vz_bare(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vz"));
    cmd.args(args);
    Run::of(cmd)
}

/// Try `probe` every 100 ms until it returns something; past `limit`, fail saying `timed_out()`.
#[track_caller]
fn poll<T>(
    limit: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
    timed_out: impl Fn() -> String,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{}", timed_out());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A command started in the background ([`TestEnv::spawn_vz`]), its output read as it comes (so
/// a test can wait for what it says, and a chatty run never blocks on a full pipe). Killed when
/// dropped unfinished (a failed test leaves no run behind).
pub struct Running {
    child: Option<std::process::Child>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: std::sync::Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        use std::io::Read as _;
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut out = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = out.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let stderr = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let said = std::sync::Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => said.lock().expect("lock").extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        });
        Running {
            child: Some(child),
            stdout: Some(stdout),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    fn child(&mut self) -> &mut std::process::Child {
        self.child.as_mut().expect("a running command")
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("a running command").id()
    }

    /// Whether its standard error has said `text` so far.
    pub fn said(&self, text: &str) -> bool {
        self.stderr().contains(text)
    }

    /// What its standard error has said so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("lock")).into_owned()
    }

    /// Wait (up to `limit`) until its standard error says `text`.
    #[track_caller]
    pub fn await_said(&self, limit: std::time::Duration, text: &str) {
        poll(
            limit,
            || self.said(text).then_some(()),
            || {
                format!(
                    "timed out waiting for the run to say {text:?}; it said:\n{}",
                    self.stderr()
                )
            },
        );
    }

    /// Whether it has ended.
    pub fn ended(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_some()
    }

    /// Kill it with SIGKILL (kill -9) and reap it.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("a running command");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    /// Wait for it to finish.
    pub fn wait(mut self) -> Run {
        let status = self.child().wait().expect("wait");
        self.child = None;
        let stdout = self
            .stdout
            .take()
            .map(|t| t.join().expect("stdout reader"))
            .unwrap_or_default();
        if let Some(t) = self.stderr_reader.take() {
            t.join().expect("stderr reader");
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&self.stderr.lock().expect("lock")).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    pub fn of(mut cmd: Command) -> Run {
        cmd.stdin(std::process::Stdio::null());
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("run command");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Exited 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Assert that standard error says `text`, showing it whole when it does not.
    #[track_caller]
    pub fn expect_stderr(&self, text: &str) -> &Run {
        expect_says("standard error", &self.stderr, text);
        self
    }

    /// Assert that standard output says `text`, showing it whole when it does not.
    #[track_caller]
    pub fn expect_stdout(&self, text: &str) -> &Run {
        expect_says("standard output", &self.stdout, text);
        self
    }

    /// Assert an exit code, showing both streams when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

#[track_caller]
fn expect_says(stream: &str, said: &str, text: &str) {
    assert!(
        said.contains(text),
        "{stream} does not say {text:?}:\n{said}"
    );
}

/// Change the auth proxy policy's first port from 8775 to 9999 behind vz's back.
pub fn drift_authproxy_port(env: &TestEnv) {
    env.kubectl(&[
        "-n",
        "verrazzano-system",
        "patch",
        "networkpolicy",
        "verrazzano-authproxy",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ingress/0/ports/0/port","value":9999}]"#,
    ])
    .expect_code(0);
}

/// A kubeconfig (its path) for the service account `namespace/name` of `env`'s plane, with a
/// token of an hour.
pub fn token_kubeconfig(env: &TestEnv, namespace: &str, name: &str) -> String {
    let token = env.kubectl(&["create", "token", name, "-n", namespace, "--duration", "1h"]);
    token.expect_code(0);
    let server = env.kubectl(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let path = env
        .work
        .path()
        .join(format!("{namespace}-{name}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: p, cluster: {{server: '{}', certificate-authority: '{}'}}}}]\nusers: [{{name: sa, user: {{token: '{}'}}}}]\ncontexts: [{{name: sa, context: {{cluster: p, user: sa}}}}]\ncurrent-context: sa\n",
            server.stdout.trim(),
            env.plane_file("pki/ca.crt").display(),
            token.stdout.trim()
        ),
    )
    .expect("write kubeconfig");
    path.to_str().expect("utf8").to_string()
}

/// Standard base64 with padding (what Kubernetes expects in `caBundle` and Secret data).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Text from base64 (a Secret's data).
pub fn base64_text(b64: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8 text")
}
