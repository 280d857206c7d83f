//! Command-line arguments. The doc comments here are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Plan, apply and destroy the networking layer of a Verrazzano-style platform on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "vz", version, about, long_about = None)]
pub struct Cli {
    /// Cluster connection.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the cluster, and which workspace's state to use.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The workspace (one state per workspace) instead of the one `vz workspace select` chose.
    #[arg(long, global = true, value_name = "NAME", env = "VZ_WORKSPACE")]
    pub workspace: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change: desired configuration vs recorded state vs live cluster.
    Plan(PlanArgs),
    /// Make the cluster match the configuration, after showing the plan and asking for confirmation.
    Apply(ApplyArgs),
    /// Delete every object the state records, dependents first, waiting until each is gone.
    Destroy(DestroyArgs),
    /// Destroy each application as it ends: watch their namespaces and OAM ApplicationConfigurations
    /// and run `vz destroy --app` for one deleted or annotated `vz.dev/terminated: "true"`. Runs
    /// until interrupted (or once, with --once); never destroys the platform.
    Watch(WatchArgs),
    /// Print every desired object as multi-document YAML (no cluster needed).
    Render(RenderArgs),
    /// Print the dependency graph of the steps as DOT (no cluster needed).
    Graph(ConfigArgs),
    /// Say whether SRC may open connections to DST (on PORT), and which NetworkPolicies decide it, as
    /// the configuration has them (no cluster needed). Exits 0 when allowed, 2 when not. Without
    /// SRC and DST, list every flow allowed.
    ExplainAccess(ExplainAccessArgs),
    /// Inspect or change the recorded state without touching the cluster.
    #[command(subcommand)]
    State(StateCommand),
    /// Workspaces: one state per workspace, for the same configuration (e.g. one per cluster).
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Remove the lock with this ID from the state, when the run that held it is gone.
    ForceUnlock(ForceUnlockArgs),
    /// Print the JSON Schema of the platform file or of an application file, for editors: save it
    /// and add `# yaml-language-server: $schema=vz.schema.json` at the top of the file.
    Schema {
        /// Which file.
        #[arg(value_enum, default_value_t = SchemaFile::Platform)]
        file: SchemaFile,
    },
    /// Print a shell completion script: `vz completion bash > /etc/bash_completion.d/vz`, or
    /// `source <(vz completion bash)`; zsh and fish likewise.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The files `vz schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFile {
    /// The platform file, applications included.
    Platform,
    /// A file of `applicationsDir`.
    Application,
}

/// `vz workspace` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// List the workspaces that have a state (`*` marks the current one).
    List(WorkspaceFile),
    /// Print the current workspace.
    Show(WorkspaceFile),
    /// Create a workspace (an empty state) and switch to it.
    New {
        /// The configuration.
        #[command(flatten)]
        config: WorkspaceFile,
        /// Its name (a DNS label).
        name: String,
    },
    /// Switch to a workspace.
    Select {
        /// The configuration.
        #[command(flatten)]
        config: WorkspaceFile,
        /// Its name.
        name: String,
    },
    /// Delete a workspace's state (refused while it records objects, unless --force).
    Delete {
        /// The configuration.
        #[command(flatten)]
        config: WorkspaceFile,
        /// Its name.
        name: String,
        /// Delete it even though it still records objects (they stay in the cluster, unmanaged).
        #[arg(long)]
        force: bool,
    },
}

/// The configuration whose workspaces a `vz workspace` command works on.
#[derive(Debug, Args)]
pub struct WorkspaceFile {
    /// The platform configuration file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
}

/// `vz state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the address of every recorded object.
    List(StateArgs),
    /// Show what is recorded for one object.
    Show {
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
        /// The object's address (see `vz state list`).
        address: String,
    },
    /// Print the whole state document (JSON) on standard output.
    Pull(StateArgs),
    /// Replace the state with a document (e.g. from `vz state pull`), refusing an older serial or another lineage.
    Push {
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
        /// The state document to store.
        #[arg(value_name = "DOCUMENT")]
        document: PathBuf,
        /// Store it even if it is older, of another lineage, or conflicting.
        #[arg(long)]
        force: bool,
    },
    /// Copy the state to another backend, lineage and serial kept, under both locks, and check the
    /// copy; then point `state:` in the configuration at it.
    Migrate {
        /// Where the state is now.
        #[command(flatten)]
        state: StateArgs,
        /// Where it goes, as the configuration's `state:` would say it, e.g.
        /// `'{backend: kubernetes, namespace: vz-system}'` or `'{path: team.vzstate.json}'`.
        #[arg(long, value_name = "STATE")]
        to: String,
    },
    /// Forget objects without deleting them from the cluster.
    Rm {
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
        /// Addresses of the objects to forget.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
}

/// Where the state is, for commands that need no desired objects.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The platform configuration file that names the state (and its platform).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        required_unless_present = "state"
    )]
    pub file: Option<PathBuf>,
    /// The state file itself.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// How long to wait for another run's lock, e.g. `30s` (default: do not wait).
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Duration,
}

/// Arguments of `vz force-unlock`.
#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// Where the state is.
    #[command(flatten)]
    pub state: StateArgs,
    /// The lock ID, as printed in the "locked" error.
    pub id: String,
}

/// `vz explain-access`.
#[derive(Debug, Args)]
pub struct ExplainAccessArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Where connections start: NAMESPACE/NAME of a workload (the platform's, an application's, or
    /// one of --workloads), or an IPv4 address outside the cluster. Without SRC and DST, every
    /// flow the policies allow is listed.
    #[arg(requires = "dst")]
    pub src: Option<String>,
    /// Where they go: likewise.
    pub dst: Option<String>,
    /// A port, with its protocol unless TCP (`443`, `53/udp`); without it, every port allowed is
    /// told.
    pub port: Option<String>,
    /// A file of workloads to add (Deployments, StatefulSets, DaemonSets, Pods as YAML): the
    /// components and applications the platform protects but does not run. Repeatable.
    #[arg(long = "workloads", value_name = "FILE")]
    pub workloads: Vec<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which platform configuration to use.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The platform configuration file (YAML). Required, except when applying a saved plan.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// State file to use instead of the one the configuration names.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// How long to wait for another run's lock on the state, e.g. `30s` (default: do not wait).
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub lock_timeout: Duration,
}

impl ConfigArgs {
    /// The configuration file; an error naming the flag when it is missing.
    pub fn file(&self) -> anyhow::Result<&std::path::Path> {
        self.file.as_deref().ok_or_else(|| {
            crate::error::CommandError::usage(anyhow::anyhow!("no configuration given"))
                .hint("pass -f FILE")
                .into()
        })
    }
}

/// Which objects to plan.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Plan only this object (by address) or step (by id), plus the steps it depends on. Repeatable.
    #[arg(long = "target", value_name = "ADDR", conflicts_with = "apps")]
    pub targets: Vec<String>,
    /// Only this application's objects (repeatable): its steps and its namespace's, never the
    /// platform's, which must have been applied already.
    #[arg(long = "app", value_name = "NAME")]
    pub apps: Vec<String>,
    /// Read the live cluster while planning; `--refresh=false` compares with the state only (no
    /// drift detection, no field-level diffs).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
}

impl SelectArgs {
    /// Whether a plan so selected reads the whole platform from the cluster, and so looks for
    /// objects a run that did not finish left unrecorded.
    pub fn sweeps(&self) -> bool {
        self.refresh && self.targets.is_empty() && self.apps.is_empty()
    }
}

/// Arguments of `vz plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Configuration and state.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Which objects.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Replace this object (delete, then create) even if it could be updated in place. Repeatable.
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Plan the destruction of everything the state records.
    #[arg(long)]
    pub destroy: bool,
    /// Save the plan to FILE, for `vz apply FILE` to carry out exactly.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also list every certificate `vz` issues, CAs first, with when it expires and when its
    /// renewal is due (text output; `--json` has them in each change's `certificate`).
    #[arg(long)]
    pub certificates: bool,
    /// API requests in flight at once.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
}

/// What `vz apply` and `vz destroy` share.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration and state.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Steps and API requests in flight at once.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Bound on the whole run, e.g. `90s`, `5m`, `1h30m`.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Wait for each object to be ready (or gone) before its dependents; `--wait=false` only checks
    /// that the API server accepted it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub wait: bool,
    /// When ExternalDNS is deleted, skip its final sync: the DNS records it made stay in the zone
    /// (for a provider that cannot be reached any more).
    #[arg(long)]
    pub leave_dns_records: bool,
}

/// Arguments of `vz apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `vz plan --out`: apply exactly it (refused if the state or configuration
    /// changed since).
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,
    /// What apply shares with destroy.
    #[command(flatten)]
    pub run: RunArgs,
    /// Which objects.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Replace this object (delete, then create) even if it could be updated in place. Repeatable.
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Keep the changes made before a failure instead of undoing them (the state records them).
    #[arg(long)]
    pub no_rollback: bool,
}

/// Arguments of `vz watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Configuration and state (`--lock-timeout`: how long each destroy waits for a person's run
    /// to release the state; after that, it is tried again at the next look).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// How often to look at the cluster, e.g. `2s`: two metadata-only list requests (namespaces,
    /// and ApplicationConfigurations when an application comes from OAM) and a read of the state.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Duration,
    /// Look once, destroy the applications that ended, and exit (from a CronJob or a script).
    #[arg(long)]
    pub once: bool,
    /// API requests in flight at once, in each destroy.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// Bound on each destroy, e.g. `5m`.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `vz render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print instead what runs `vz watch` in the cluster: its namespace, ServiceAccount, RBAC, the
    /// configuration as a ConfigMap, and the Deployment (the state must be in the cluster or S3).
    #[arg(long)]
    pub watch_deployment: bool,
    /// The image of `vz` the Deployment runs.
    #[arg(long, value_name = "IMAGE", default_value = concat!("vz:", env!("CARGO_PKG_VERSION")), requires = "watch_deployment")]
    pub image: String,
}

/// Arguments of `vz destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// What destroy shares with apply.
    #[command(flatten)]
    pub run: RunArgs,
    /// Which objects.
    #[command(flatten)]
    pub select: SelectArgs,
}

/// Parse durations like `0s`, `90s`, `5m`, `1h30m` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (examples: 90s, 5m, 1h30m)");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go_durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for s in ["", "5x", "m", "5m3", "-1s"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
