//! Where the state lives: the [`Backend`] trait every storage implements, and the backends.
//!
//! A backend stores one state document and one lock for it. It knows nothing about serials or
//! lineages (the [`crate::Store`] does); it offers what any shared storage can:
//! - [`Backend::read`] gives the document's bytes and a [`Version`] token that changes whenever the
//!   document does;
//! - [`Backend::write`] is a compare-and-swap: it stores new bytes only if the document is still at
//!   the version the writer read (or, with `None`, only if there is none yet), and gives the new
//!   version;
//! - [`Backend::lock`] takes the lock and returns a [`Lock`] handle that can be renewed (a backend
//!   whose locks expire says how often, [`Lock::renew_every`]) and released, and that describes its
//!   holder. A lock that cannot be taken says who holds it.
//!
//! Backends: [`local`] (a file, and a lock file beside it), [`kubernetes`] (Secrets and a Lease)
//! and [`s3`] (objects of an S3-compatible bucket). The commands and the engine only ever see
//! `dyn Backend`. A [`Location`] (described in [`crate::location`]) is opened, listed and deleted
//! here.

pub mod kubernetes;
pub mod local;
pub mod s3;

use std::time::Duration;

use async_trait::async_trait;

use crate::location::{DEFAULT_WORKSPACE, Location, WORKSPACES_DIR};
use crate::lock::{LockError, LockInfo};

pub use crate::location::S3Place;
pub use kubernetes::KubernetesBackend;
pub use local::LocalBackend;
pub use s3::S3Backend;

/// An opaque token naming one version of the stored document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// Why the storage could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The document is not at the version the writer expected: someone else wrote it.
    #[error("the stored state changed since it was read")]
    Conflict,
    /// The storage service refused or failed a request.
    #[error("cannot {action} the state {location}: {message}")]
    Remote {
        /// What was being done.
        action: &'static str,
        /// Where.
        location: String,
        /// What the service said.
        message: String,
    },
    /// Reading or writing failed.
    #[error("cannot {action} {location}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        location: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A location's states, over its backend.
impl Location {
    /// The backend that stores the state here; `client` reaches the cluster of a kubernetes
    /// backend (an error without one).
    pub fn open(&self, client: Option<&kube::Client>) -> Result<Box<dyn Backend>, BackendError> {
        Ok(match self {
            Location::Local { path } => Box::new(LocalBackend::new(path)),
            Location::Kubernetes { .. } => Box::new(kubernetes::backend_of(self, client)?),
            Location::S3 { .. } => Box::new(s3::backend_of(self)?),
        })
    }

    /// The workspaces with a state stored beside this one (the default one included when it has
    /// a state), sorted.
    pub async fn workspaces(
        &self,
        client: Option<&kube::Client>,
    ) -> Result<Vec<String>, BackendError> {
        let mut out = Vec::new();
        match self {
            Location::Local { path } => {
                let base = self.for_workspace(DEFAULT_WORKSPACE);
                if let Location::Local { path: default } = &base
                    && default.exists()
                {
                    out.push(DEFAULT_WORKSPACE.to_string());
                }
                let dir = path
                    .parent()
                    .unwrap_or_else(|| std::path::Path::new(""))
                    .join(WORKSPACES_DIR);
                let file = path.file_name().unwrap_or_default();
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for e in entries.flatten() {
                        if e.path().join(file).exists()
                            && let Some(name) = e.file_name().to_str()
                        {
                            out.push(name.to_string());
                        }
                    }
                }
            }
            Location::Kubernetes { .. } => {
                out.extend(kubernetes::workspaces(self, client).await?);
            }
            Location::S3 { .. } => out.extend(s3::workspaces(self).await?),
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Delete this state and everything stored with it (its lock excepted, which the caller
    /// holds); nothing when there is none.
    pub async fn delete(&self, client: Option<&kube::Client>) -> Result<(), BackendError> {
        match self {
            Location::Local { path } => {
                for p in [path.clone(), local::sibling(path, ".backup")] {
                    match std::fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(BackendError::Io {
                                action: "delete",
                                location: p.display().to_string(),
                                source,
                            });
                        }
                    }
                }
                Ok(())
            }
            Location::Kubernetes { .. } => kubernetes::delete(self, client).await,
            Location::S3 { .. } => s3::delete(self).await,
        }
    }
}

/// Take a lock with `attempt` (the held lock, or who holds it), trying again with a growing pause
/// (¼ s to 2 s) while someone else holds it, for up to `wait`.
pub(crate) async fn retry_lock<T, F, Fut>(wait: Duration, mut attempt: F) -> Result<T, LockError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, LockInfo>, LockError>>,
{
    let until = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    loop {
        match attempt().await? {
            Ok(lock) => return Ok(lock),
            Err(holder) => {
                if tokio::time::Instant::now() + pause > until {
                    return Err(LockError::Locked {
                        info: Box::new(holder),
                    });
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// A storage for one state document and its lock.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Where the state is.
    fn location(&self) -> Location;

    /// The stored document and its version; `None` when nothing is stored yet.
    async fn read(&self) -> Result<Option<(Vec<u8>, Version)>, BackendError>;

    /// Store `bytes` if the document is still at `expected` (`None`: only if nothing is stored);
    /// otherwise [`BackendError::Conflict`]. Returns the new version.
    async fn write(
        &self,
        bytes: &[u8],
        expected: Option<&Version>,
    ) -> Result<Version, BackendError>;

    /// Take the lock for `info`'s holder, waiting up to `wait` while someone else holds it.
    async fn lock(&self, info: LockInfo, wait: Duration) -> Result<Box<dyn Lock>, LockError>;

    /// Who holds the lock now, if anyone.
    async fn lock_holder(&self) -> Result<Option<LockInfo>, LockError>;

    /// Remove the lock whose ID is `id`, whoever holds it (for a holder that is gone).
    async fn force_unlock(&self, id: &str) -> Result<LockInfo, LockError>;
}

/// A held lock.
#[async_trait]
pub trait Lock: Send + Sync {
    /// Who holds it (this run).
    fn info(&self) -> &LockInfo;

    /// A lock left by a holder that is gone, which was taken over to get this one.
    fn replaced(&self) -> Option<&LockInfo>;

    /// How often the holder must renew the lock to keep it (`None`: it never expires).
    fn renew_every(&self) -> Option<Duration>;

    /// Renew the lock; an error when it was lost (expired and taken, or force-unlocked).
    async fn renew(&self) -> Result<(), LockError>;

    /// Release the lock (again: a no-op). Dropping a handle releases it too, as well as it can
    /// without waiting.
    async fn release(&self) -> Result<(), LockError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_workspaces_are_those_with_a_state_and_delete_removes_it() {
        let dir = tempfile::tempdir().expect("dir");
        let base = Location::Local {
            path: dir.path().join("dev.vzstate.json"),
        };
        assert!(base.workspaces(None).await.expect("list").is_empty());
        let prod = base.for_workspace("prod");
        let Location::Local { path } = &prod else {
            panic!("local")
        };
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(path, b"{}").expect("write");
        std::fs::write(dir.path().join("dev.vzstate.json"), b"{}").expect("write");
        assert_eq!(
            base.workspaces(None).await.expect("list"),
            ["default", "prod"]
        );
        prod.delete(None).await.expect("delete");
        assert_eq!(base.workspaces(None).await.expect("list"), ["default"]);
    }
}
