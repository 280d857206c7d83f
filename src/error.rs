//! Errors as the command line reports them: what happened, hints on what to do next, and an exit
//! code a script can act on.
//!
//! The engine, the cluster layer and the state crate raise typed errors that say what happened and
//! to which object, and name no command-line flag. [`CommandError::from`] sorts any error into a
//! [`Kind`] (one exit code each) and adds the hints, flags and commands included; `main` prints it.

use std::fmt;
use std::process::ExitCode;

use vz_providers::ConfigError;
use vz_state::{LockError, StorageError};

use crate::cluster::{ClusterError, NotServed};
use crate::engine::EngineError;
use crate::engine::apply::{ApplyFailed, Failures};
use crate::output::StdoutClosed;

/// What kind of failure, each with its own exit code (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything not sorted below (a bug, or an unexpected I/O error): exit 1.
    Other,
    /// The command line or the configuration is wrong: exit 3.
    Usage,
    /// The cluster cannot be reached, or refused a request: exit 4.
    Cluster,
    /// Another run holds the state's lock: exit 5.
    Locked,
    /// The state (or a saved plan) cannot be used: corrupt, stale, another platform's: exit 6.
    State,
    /// Apply failed and everything it did was rolled back: exit 7.
    RolledBack,
    /// Apply or destroy failed and changes remain (rollback off or incomplete, destroy): exit 8.
    Partial,
}

impl Kind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Kind::Other => 1,
            Kind::Usage => 3,
            Kind::Cluster => 4,
            Kind::Locked => 5,
            Kind::State => 6,
            Kind::RolledBack => 7,
            Kind::Partial => 8,
        }
    }
}

/// An error with its kind and hints.
#[derive(Debug)]
pub struct CommandError {
    /// The kind (exit code).
    pub kind: Kind,
    /// What happened.
    pub error: anyhow::Error,
    /// What the user can do next, one line each.
    pub hints: Vec<String>,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for CommandError {}

impl CommandError {
    /// An error of `kind`.
    pub fn new(kind: Kind, error: impl Into<anyhow::Error>) -> CommandError {
        CommandError {
            kind,
            error: error.into(),
            hints: Vec::new(),
        }
    }

    /// A usage or configuration error.
    pub fn usage(error: impl Into<anyhow::Error>) -> CommandError {
        CommandError::new(Kind::Usage, error)
    }

    /// A state error.
    pub fn state(error: impl Into<anyhow::Error>) -> CommandError {
        CommandError::new(Kind::State, error)
    }

    /// Add a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    /// The exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.code())
    }

    /// Sort any error: a [`CommandError`] stays as it is; otherwise the first typed error in its
    /// chain decides the kind and the hints.
    pub fn from_any(error: anyhow::Error) -> CommandError {
        let error = match error.downcast::<CommandError>() {
            Ok(e) => return e,
            Err(e) => e,
        };
        let (kind, hints) = classify(&error);
        CommandError { kind, error, hints }
    }
}

/// Whether the error is standard output closed by its reader (`vz render | head -1`): not an
/// error, since everything the reader wanted was written.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<StdoutClosed>()
        .is_some_and(StdoutClosed::by_reader)
}

fn classify(error: &anyhow::Error) -> (Kind, Vec<String>) {
    for cause in error.chain() {
        if let Some(Failures(all)) = cause.downcast_ref::<Failures>() {
            // The first decides the kind; every one's hints are told, once each.
            let mut kind = None;
            let mut hints: Vec<String> = Vec::new();
            for e in all {
                let (k, h) = classify(e);
                kind.get_or_insert(k);
                for hint in h {
                    if !hints.contains(&hint) {
                        hints.push(hint);
                    }
                }
            }
            return (kind.unwrap_or(Kind::Other), hints);
        }
        if let Some(e) = cause.downcast_ref::<ApplyFailed>() {
            // The failure's own hints (a timeout's, say) still help.
            let (_, hints) = classify(&e.failure);
            let kind = if e.changes_remain {
                Kind::Partial
            } else {
                Kind::RolledBack
            };
            return (kind, hints);
        }
        if cause.is::<ConfigError>() {
            return (Kind::Usage, vec![]);
        }
        if let Some(e) = cause.downcast_ref::<LockError>() {
            return lock_hints(e);
        }
        if let Some(e) = cause.downcast_ref::<StorageError>() {
            // A storage service that cannot be reached or refuses is like a cluster that does.
            let kind = match e {
                StorageError::Backend(vz_state::BackendError::Remote { .. }) => Kind::Cluster,
                _ => Kind::State,
            };
            return (kind, storage_hints(e));
        }
        if let Some(e) = cause.downcast_ref::<vz_state::BackendError>() {
            let kind = match e {
                vz_state::BackendError::Remote { .. } => Kind::Cluster,
                _ => Kind::State,
            };
            return (kind, vec![]);
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return engine_hints(e);
        }
        if let Some(e) = cause.downcast_ref::<ClusterError>() {
            return cluster_hints(e);
        }
        if cause.is::<NotServed>() {
            return (
                Kind::Cluster,
                vec!["install the CustomResourceDefinition first, or apply the step that defines it (vz orders CRDs before their objects)".into()],
            );
        }
    }
    (Kind::Other, vec![])
}

fn lock_hints(e: &LockError) -> (Kind, Vec<String>) {
    match e {
        LockError::Locked { info } => (
            Kind::Locked,
            vec![
                "wait for that run to finish, or pass --lock-timeout (e.g. --lock-timeout 5m) to wait for it".into(),
                format!(
                    "if it is no longer running, remove the lock with `vz force-unlock {}`",
                    info.id
                ),
            ],
        ),
        LockError::Unreadable(_) => (
            Kind::State,
            vec!["if no vz run is active, delete the lock file".into()],
        ),
        LockError::WrongId { .. } | LockError::NotLocked(_) => (Kind::Usage, vec![]),
        LockError::Lost { .. } | LockError::Io { .. } | LockError::Encode(_) => {
            (Kind::State, vec![])
        }
        LockError::Remote { .. } => (Kind::Cluster, vec![]),
    }
}

fn storage_hints(e: &StorageError) -> Vec<String> {
    match e {
        StorageError::Corrupt { .. } => vec![
            "restore the previous document (a local state keeps it as <state>.backup) with `vz state push --force FILE`, or your own copy".into(),
            "or move the state aside: the next plan recovers the objects vz made from their labels".into(),
        ],
        StorageError::Stale { .. } => vec![
            "run `vz plan` again to start from the current state".into(),
            "`vz state push --force FILE` overrides the check, if you are sure".into(),
        ],
        StorageError::Backend(_) | StorageError::Encode(_) => vec![],
    }
}

fn engine_hints(e: &EngineError) -> (Kind, Vec<String>) {
    match e {
        EngineError::UnknownAddress { .. } => (
            Kind::Usage,
            vec!["`vz render` and `vz state list` show the addresses".into()],
        ),
        EngineError::UnknownApp(_) => (Kind::Usage, vec![]),
        EngineError::NotOurs { address, .. } => (
            Kind::Usage,
            vec![format!(
                "to have vz manage it from now on (destroy then releases it, never deletes it), add it to the configuration: `adopt: [{address}]`"
            )],
        ),
        EngineError::Unmet { .. } => (Kind::Usage, vec![]),
        EngineError::OtherPlatform { .. } => (
            Kind::State,
            vec!["one cluster holds one platform's system components: destroy the other platform first, or use its state".into()],
        ),
        EngineError::StalePlan { config, plan, .. } => (
            Kind::State,
            vec![format!(
                "make a new plan: `vz plan -f {} --out {}`",
                config.display(),
                plan.display()
            )],
        ),
        EngineError::Timeout { .. } => (
            Kind::Other,
            vec!["raise --timeout (default 10m)".into()],
        ),
        EngineError::MissingOutputs { waited: false, .. } => (
            Kind::Other,
            vec!["apply without --wait=false: apply then waits for the objects the values are read from (a load balancer's address comes once it is ready)".into()],
        ),
        EngineError::MissingOutputs { waited: true, .. } => (Kind::Other, vec![]),
        EngineError::Interrupted { .. } => (Kind::Other, vec![]),
        EngineError::CannotPatch { .. } => (
            Kind::Other,
            vec!["ask the object's owner to re-create it, or change the configuration back".into()],
        ),
    }
}

fn cluster_hints(e: &ClusterError) -> (Kind, Vec<String>) {
    match e {
        ClusterError::Config(_) => (
            Kind::Cluster,
            vec!["set --kubeconfig or $KUBECONFIG, or --context".into()],
        ),
        ClusterError::Unreachable { .. } => (
            Kind::Cluster,
            vec!["check that the cluster is running and that --kubeconfig / --context (or $KUBECONFIG) point at it".into()],
        ),
        ClusterError::Refused(_) => (Kind::Cluster, vec![]),
        ClusterError::Unsupported(_) => (
            Kind::Cluster,
            vec![format!(
                "upgrade the cluster to Kubernetes 1.{} or later (README, \"Supported Kubernetes versions\")",
                crate::support::TESTED[0]
            )],
        ),
        ClusterError::Unanswered(_) => (
            Kind::Cluster,
            vec!["if the API server carried the change out after all, the next plan finds the object by its labels".into()],
        ),
        ClusterError::WaitTimeout { deleting: true, .. } => (
            Kind::Other,
            vec![
                "look at the object with kubectl, remove what blocks it, then run vz again".into(),
                "or raise --timeout".into(),
            ],
        ),
        ClusterError::WaitTimeout { deleting: false, .. } => (
            Kind::Other,
            vec!["raise --timeout, or use --wait=false to apply without waiting".into()],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_exit_code_and_none_is_0_or_2() {
        let kinds = [
            Kind::Other,
            Kind::Usage,
            Kind::Cluster,
            Kind::Locked,
            Kind::State,
            Kind::RolledBack,
            Kind::Partial,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0) && !codes.contains(&2));
    }

    #[test]
    fn a_typed_error_deep_in_the_chain_decides_the_kind() {
        let e = anyhow::Error::new(StorageError::Stale {
            location: "s.json".into(),
            reason: "x".into(),
        })
        .context("cannot write");
        let c = CommandError::from_any(e);
        assert_eq!(c.kind, Kind::State);
        assert!(c.hints.iter().any(|h| h.contains("vz plan")));
    }

    #[test]
    fn only_standard_output_closed_by_its_reader_is_a_quiet_end() {
        let closed = StdoutClosed::for_test(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(closed)));
        let full = StdoutClosed::for_test(std::io::ErrorKind::StorageFull);
        assert!(!is_broken_pipe(&anyhow::Error::new(full)));
        // A broken pipe elsewhere (a connection) is a real error.
        let other = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(!is_broken_pipe(&other));
    }
}
