//! `vz watch`: destroy each application as it ends, through the same plan, state, lock and engine
//! as `vz destroy --app`.
//!
//! Every `--interval` it reads the state (without locking it), lists the namespaces and, when an
//! application comes from OAM, the ApplicationConfigurations (metadata only), and asks
//! [`crate::watch`] which applications ended. Those it destroys in one run, after writing to the
//! state that they ended: a watch killed midway resumes them when it starts again, and `vz apply`
//! leaves them out instead of making them again. A person's run holding the lock is waited for:
//! the destroy is tried again at the next look. A failing destroy is tried again later and later
//! (up to every five minutes), and the watch goes on.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use serde_json::json;
use tokio::time::Instant;
use vz_providers::config::oam::APPLICATION_CONFIGURATION_API;
use vz_state::{Store, Terminated};

use super::{Desired, PlanRequest, connect, execute_with, make_plan, open_store, workspace};
use crate::cli::{ClusterArgs, ConfigArgs, RunArgs, SelectArgs, WatchArgs};
use crate::cluster::{Cluster, Listing, ObjectRef};
use crate::error::{CommandError, Kind};
use crate::interrupt::Interrupt;
use crate::output::{carry_on, out, plan_text};
use crate::watch::{self as decide, Observed, Recorded, Seen, Verdict};

/// The longest wait before a failed destroy is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Run `vz watch`.
pub async fn run(cluster_args: &ClusterArgs, args: &WatchArgs) -> Result<ExitCode> {
    if args.interval.is_zero() {
        return Err(CommandError::usage(anyhow!("--interval must be at least 1s")).into());
    }
    let file = args.config.file()?.to_path_buf();
    let mut config = Config::load(&file)?;
    let platform = config.desired.platform.environment_name.clone();
    let location = match &args.config.state {
        Some(path) => vz_state::Location::Local { path: path.clone() },
        None => workspace::location(
            cluster_args,
            &config.desired.platform.source,
            &config.desired.platform.state,
        )?,
    };
    let store = open_store(cluster_args, &location).await?;
    let cluster = connect(cluster_args, &config.desired.platform).await?;
    let interrupt = Interrupt::install(
        "Interrupt received: vz watch stops after the deletions in flight; the state records what is left...",
    );
    let fin = decide::finalizer(&platform);
    log(&format!(
        "watching the applications of platform `{platform}` on {} every {}s (state: {location})",
        cluster.server(),
        args.interval.as_secs_f32()
    ));
    let mut watch = Watch {
        cluster_args,
        args,
        file,
        cluster,
        store,
        fin,
        interrupt: interrupt.clone(),
        backoff: HashMap::new(),
        announced: Default::default(),
        failed: Vec::new(),
        said: String::new(),
    };
    loop {
        if let Some(reloaded) = config.reloaded() {
            match reloaded {
                Ok(c) => {
                    log("the configuration changed: read it again");
                    config = c;
                }
                Err(e) => watch.say_once(&format!(
                    "the configuration changed but cannot be read ({e}): going on with the one read before"
                )),
            }
        }
        if let Err(e) = watch.look(&config).await {
            if args.once {
                return Err(e);
            }
            watch.say_once(&format!(
                "{e:#}: looking again in {}s",
                args.interval.as_secs()
            ));
        }
        if args.once || interrupt.is_set() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = interrupt.tripped() => break,
        }
    }
    log("stopped");
    if args.once && !watch.failed.is_empty() {
        return Err(anyhow!(
            "the destroy of {} failed (above); the state says they ended, so the next vz watch tries again",
            watch.failed.join(", ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The configuration, and what tells when it changed.
struct Config {
    desired: Desired,
    stamp: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Config {
    fn load(file: &Path) -> Result<Config> {
        let desired = Desired::load(file)?;
        let mut paths = vec![file.to_path_buf()];
        for a in &desired.platform.applications {
            paths.push(a.source.clone());
            if let Some(dir) = a.source.parent() {
                paths.push(dir.to_path_buf());
            }
        }
        paths.sort();
        paths.dedup();
        let stamp = stamp_of(paths);
        Ok(Config { desired, stamp })
    }

    /// The configuration read again, when one of its files (or their directories) changed.
    fn reloaded(&self) -> Option<Result<Config>> {
        let now = stamp_of(self.stamp.iter().map(|(p, _)| p.clone()).collect());
        (now != self.stamp).then(|| Config::load(&self.desired.platform.source))
    }

    /// Each application of the configuration: its namespace, and whether it comes from OAM.
    fn applications(&self) -> HashMap<String, (String, bool)> {
        self.desired
            .platform
            .applications
            .iter()
            .map(|a| (a.name.clone(), (a.namespace.clone(), a.oam)))
            .collect()
    }
}

fn stamp_of(paths: Vec<PathBuf>) -> Vec<(PathBuf, Option<SystemTime>)> {
    paths
        .into_iter()
        .map(|p| {
            let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            (p, modified)
        })
        .collect()
}

/// The watch between looks.
struct Watch<'a> {
    cluster_args: &'a ClusterArgs,
    args: &'a WatchArgs,
    file: PathBuf,
    cluster: Cluster,
    store: Store,
    fin: String,
    interrupt: Interrupt,
    /// Applications whose destroy failed: when to try again, and how many times it failed.
    backoff: HashMap<String, (Instant, u32)>,
    /// The applications whose destroy failed (`--once` then fails).
    failed: Vec<String>,
    /// The applications whose end was said (once, however many looks wait for their destroy).
    announced: std::collections::HashSet<String>,
    /// The last message said once (a lock held, an unreadable configuration), not repeated
    /// every look.
    said: String,
}

impl Watch<'_> {
    /// Say `message` unless it was the last thing said this way.
    fn say_once(&mut self, message: &str) {
        if self.said != message {
            log(message);
            self.said = message.to_string();
        }
    }

    /// One look: what ended is destroyed, configurations are held or let go.
    async fn look(&mut self, config: &Config) -> Result<()> {
        let Some(state) = self.store.read().await? else {
            return Ok(());
        };
        let apps = decide::recorded(&state, &config.applications());
        let configured_oam = config.desired.platform.applications.iter().any(|a| a.oam);
        let seen = self.observe(configured_oam).await?;
        // The finalizers of applications that are no longer vz's to destroy go first.
        let held: Vec<&Recorded> = apps.iter().collect();
        for (ns, name) in decide::to_release(&seen, &held, &self.fin) {
            if let Some(c) = seen
                .configurations
                .as_ref()
                .and_then(|c| c.get(&(ns.clone(), name.clone())))
            {
                self.release(ns, name, c).await?;
                log(&format!(
                    "let go of ApplicationConfiguration {ns}/{name}: no application of the state comes from it"
                ));
            }
        }
        let mut ended: BTreeMap<String, String> = BTreeMap::new();
        for app in &apps {
            match decide::verdict(app, state.terminated.get(&app.name), &seen, &self.fin) {
                Verdict::Live => {}
                Verdict::Hold => {
                    if let (Some(ns), Some(c)) = (&app.namespace, seen.configuration(app)) {
                        self.hold(ns, &app.name, c).await?;
                        log(&format!(
                            "holding ApplicationConfiguration {ns}/{} with finalizer {}: its deletion ends application `{}`",
                            app.name, self.fin, app.name
                        ));
                    }
                }
                Verdict::Ended(reason) => {
                    if self.announced.insert(app.name.clone()) {
                        log(&format!("application `{}` ended: {reason}", app.name));
                    }
                    let due = self
                        .backoff
                        .get(&app.name)
                        .is_none_or(|(at, _)| Instant::now() >= *at);
                    if due {
                        ended.insert(app.name.clone(), reason);
                    }
                }
            }
        }
        if ended.is_empty() {
            return Ok(());
        }
        self.destroy(&ended, &seen, &apps).await;
        Ok(())
    }

    /// Read the namespaces, and the ApplicationConfigurations when an application comes from OAM.
    async fn observe(&self, oam: bool) -> Result<Observed> {
        let namespaces = self
            .cluster
            .list_selected("v1", "Namespace", "", Listing::Metadata, |v| {
                let name = v["metadata"]["name"].as_str()?.to_string();
                Some((name, Seen::of(&v)))
            })
            .await?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let configurations = if oam {
            self.cluster
                .list_selected(
                    APPLICATION_CONFIGURATION_API,
                    "ApplicationConfiguration",
                    "",
                    Listing::Metadata,
                    |v| {
                        let ns = v["metadata"]["namespace"].as_str()?.to_string();
                        let name = v["metadata"]["name"].as_str()?.to_string();
                        Some(((ns, name), Seen::of(&v)))
                    },
                )
                .await?
                .map(|c| c.into_iter().collect())
        } else {
            None
        };
        Ok(Observed {
            namespaces,
            configurations,
        })
    }

    /// Destroy the applications that ended, in one run under the state's lock.
    async fn destroy(
        &mut self,
        ended: &BTreeMap<String, String>,
        seen: &Observed,
        apps: &[Recorded],
    ) {
        let names: Vec<String> = ended.keys().cloned().collect();
        match self.try_destroy(ended, seen, apps).await {
            Ok(()) => {
                for n in &names {
                    self.backoff.remove(n);
                    self.announced.remove(n);
                }
                self.said.clear();
            }
            Err(e) => {
                let e = CommandError::from_any(e);
                if e.kind == Kind::Locked {
                    // A person's run: wait for it, without counting it as a failure.
                    self.say_once(&format!(
                        "{}: waiting for it to end before destroying {}",
                        e.error,
                        names.join(", ")
                    ));
                    return;
                }
                if self.interrupt.is_set() {
                    log(&format!(
                        "the destroy of {} was interrupted: {}; the state says they ended, so the next vz watch resumes it",
                        names.join(", "),
                        e.error
                    ));
                    return;
                }
                let mut delays = Vec::new();
                for n in &names {
                    let failures = self.backoff.get(n).map_or(0, |(_, f)| *f) + 1;
                    let delay = self
                        .args
                        .interval
                        .saturating_mul(2u32.saturating_pow(failures))
                        .min(MAX_BACKOFF);
                    self.backoff
                        .insert(n.clone(), (Instant::now() + delay, failures));
                    delays.push(delay);
                }
                let delay = delays.into_iter().max().unwrap_or(MAX_BACKOFF);
                let mut said = format!("the destroy of {} failed: {}", names.join(", "), e.error);
                for hint in &e.hints {
                    said.push_str(&format!("; hint: {hint}"));
                }
                if self.args.once {
                    log(&said);
                } else {
                    log(&format!("{said}; trying again in {}s", delay.as_secs()));
                }
                self.failed.push(names.join(", "));
            }
        }
    }

    async fn try_destroy(
        &self,
        ended: &BTreeMap<String, String>,
        seen: &Observed,
        apps: &[Recorded],
    ) -> Result<()> {
        let names: Vec<String> = ended.keys().cloned().collect();
        let config = ConfigArgs {
            file: Some(self.file.clone()),
            state: self.args.config.state.clone(),
            lock_timeout: self.args.config.lock_timeout,
        };
        let select = SelectArgs {
            targets: Vec::new(),
            apps: names.clone(),
            refresh: true,
        };
        let mut planned = make_plan(
            self.cluster_args,
            &PlanRequest {
                config: &config,
                select: &select,
                replace: &[],
                destroy: true,
                parallelism: usize::from(self.args.parallelism),
                operation: "watch",
                views: false,
            },
        )
        .await?;
        // Never more than the applications: their steps and their namespaces'.
        if let Some(c) = planned
            .plan
            .changes
            .iter()
            .find(|c| !vz_providers::applications::is_app_step(&c.step))
        {
            return Err(anyhow!(
                "the destroy of {} would delete {}, which is not an application's: nothing was done (a bug in vz; please report it)",
                names.join(", "),
                c.address
            ));
        }
        // That they ended is recorded before anything is deleted.
        let mut state = planned.stored.state.clone();
        for (app, reason) in ended {
            if !state.terminated.contains_key(app) {
                state
                    .terminated
                    .insert(app.clone(), Terminated::now(reason));
            }
        }
        if state.terminated != planned.stored.state.terminated {
            planned.stored.store.write(&mut state).await?;
            planned.stored.state = state;
        }
        // Their configurations may go now: the state remembers the end.
        for app in apps.iter().filter(|a| a.oam && ended.contains_key(&a.name)) {
            if let (Some(ns), Some(c)) = (&app.namespace, seen.configuration(app))
                && c.finalizers.contains(&self.fin)
            {
                self.release(ns, &app.name, c).await?;
            }
        }
        if planned.plan.changes.is_empty() {
            log(&format!(
                "nothing of {} is left to destroy",
                names.join(", ")
            ));
            return planned.stored.release().await;
        }
        let _ = carry_on(out(&plan_text(&planned.plan)));
        let run = RunArgs {
            config,
            auto_approve: true,
            parallelism: self.args.parallelism,
            timeout: self.args.timeout,
            wait: true,
            leave_dns_records: false,
        };
        execute_with(planned, &run, false, Some(self.interrupt.clone())).await?;
        log(&format!("destroyed {}", names.join(", ")));
        Ok(())
    }

    /// Put the finalizer on a configuration, against the version just seen.
    async fn hold(&self, ns: &str, name: &str, seen: &Seen) -> Result<()> {
        let mut finalizers = seen.finalizers.clone();
        finalizers.push(self.fin.clone());
        self.set_finalizers(ns, name, seen, finalizers).await
    }

    /// Take the finalizer off a configuration, against the version just seen.
    async fn release(&self, ns: &str, name: &str, seen: &Seen) -> Result<()> {
        let finalizers = seen
            .finalizers
            .iter()
            .filter(|f| **f != self.fin)
            .cloned()
            .collect();
        self.set_finalizers(ns, name, seen, finalizers).await
    }

    async fn set_finalizers(
        &self,
        ns: &str,
        name: &str,
        seen: &Seen,
        finalizers: Vec<String>,
    ) -> Result<()> {
        let r = ObjectRef {
            api_version: APPLICATION_CONFIGURATION_API.to_string(),
            kind: "ApplicationConfiguration".to_string(),
            namespace: Some(ns.to_string()),
            name: name.to_string(),
        };
        // A merge patch replaces the whole list: the resourceVersion makes it fail rather than
        // drop a finalizer someone added since (the next look reads it again).
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": seen.resource_version}});
        self.cluster.merge_patch(&r, &patch, "vz-watch").await?;
        Ok(())
    }
}

/// One line of the watch's log, stamped with the time.
fn log(message: &str) {
    let at = humantime::format_rfc3339_seconds(SystemTime::now());
    let _ = carry_on(out(&format!("{at} vz watch: {message}\n")));
}
