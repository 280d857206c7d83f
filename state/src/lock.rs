//! Locking the local state, so that two runs never change the same platform at once.
//!
//! The lock is a file beside the state (`<state>.lock`) holding a [`LockInfo`]: an ID, the operation,
//! who holds it (user@host), the `vz` version, when it was taken, and the holder's process ID. It is
//! created atomically with its content (written to a temporary file, then hard-linked into place, which
//! fails if a lock exists), so a reader never sees a half-written lock.
//!
//! A lock whose holder was a process on this host that no longer runs is stale: it is taken over, and
//! the caller is told. Any other lock is honoured until it is released, the wait (`--lock-timeout`)
//! runs out, or `vz force-unlock ID` removes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// Who holds a lock, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Unique ID of this lock (what `force-unlock` takes).
    #[serde(rename = "ID")]
    pub id: String,
    /// What the holder is doing (`apply`, `destroy`, `plan`, ...).
    #[serde(rename = "Operation")]
    pub operation: String,
    /// `user@host` of the holder.
    #[serde(rename = "Who")]
    pub who: String,
    /// `vz` version of the holder.
    #[serde(rename = "Version")]
    pub version: String,
    /// When the lock was taken (RFC 3339, UTC).
    #[serde(rename = "Created")]
    pub created: String,
    /// The state file the lock protects.
    #[serde(rename = "Path")]
    pub path: String,
    /// Process ID of the holder.
    #[serde(rename = "Pid")]
    pub pid: u32,
    /// Host name of the holder.
    #[serde(rename = "Host")]
    pub host: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ID {}, operation `{}`, held by {} (pid {}, vz {}) since {}",
            self.id, self.operation, self.who, self.pid, self.version, self.created
        )
    }
}

/// Why a lock could not be taken or released.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds the lock.
    #[error(
        "the state {path} is locked: {info}.\n\
         hint: wait for that run to finish (or pass --lock-timeout to wait for it); if it is no longer \
         running, remove the lock with `vz force-unlock {id}`",
        path = info.path,
        id = info.id
    )]
    Locked {
        /// The holder.
        info: Box<LockInfo>,
    },
    /// `force-unlock` was given an ID that is not the current lock's.
    #[error("the lock ID `{given}` does not match the current lock ({info}); nothing was removed")]
    WrongId {
        /// The ID given.
        given: String,
        /// The current lock.
        info: Box<LockInfo>,
    },
    /// There is no lock to remove.
    #[error("the state {0} is not locked; nothing was removed")]
    NotLocked(PathBuf),
    /// The lock file exists but cannot be read as a lock.
    #[error(
        "the lock file {0} exists but cannot be read as a vz lock.\nhint: if no vz run is active, delete that file"
    )]
    Unreadable(PathBuf),
    /// File-system error.
    #[error("cannot {action} the lock file {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    info: LockInfo,
    /// A stale lock that was taken over to get this one.
    pub replaced: Option<LockInfo>,
}

impl LockGuard {
    /// This lock's info.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Remove the lock only if it is still ours (a force-unlock may have replaced it).
        if read_info(&self.path)
            .ok()
            .flatten()
            .is_some_and(|i| i.id == self.info.id)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The lock file of the state at `state_path`.
pub fn lock_path(state_path: &Path) -> PathBuf {
    let mut name = state_path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    state_path.with_file_name(name)
}

/// Take the lock of the state at `state_path` for `operation`, waiting up to `wait` for a holder to
/// release it.
pub fn acquire(
    state_path: &Path,
    operation: &str,
    version: &str,
    wait: Duration,
) -> Result<LockGuard, LockError> {
    let path = lock_path(state_path);
    let info = LockInfo {
        id: uuid::Uuid::new_v4().to_string(),
        operation: operation.to_string(),
        who: format!("{}@{}", user(), host()),
        version: version.to_string(),
        created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        path: state_path.display().to_string(),
        pid: std::process::id(),
        host: host(),
    };
    let io = |action, source| LockError::Io {
        action,
        path: path.clone(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create the directory of", e))?;
    let started = Instant::now();
    let mut replaced = None;
    loop {
        let tmp = tempfile::Builder::new()
            .prefix(".vzlock-")
            .tempfile_in(&dir)
            .map_err(|e| io("create", e))?;
        let body = serde_json::to_vec_pretty(&info).unwrap_or_default();
        std::fs::write(tmp.path(), &body).map_err(|e| io("write", e))?;
        match std::fs::hard_link(tmp.path(), &path) {
            Ok(()) => {
                return Ok(LockGuard {
                    path,
                    info,
                    replaced,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create", e)),
        }
        match read_info(&path) {
            Ok(Some(holder)) => {
                if holder.host == info.host && !process_alive(holder.pid) {
                    // Stale: its holder on this host is gone. Remove it only if it is still that lock.
                    if read_info(&path).ok().flatten().as_ref() == Some(&holder) {
                        let _ = std::fs::remove_file(&path);
                        replaced = Some(holder);
                    }
                    continue;
                }
                if started.elapsed() >= wait {
                    return Err(LockError::Locked {
                        info: Box::new(holder),
                    });
                }
            }
            Ok(None) => continue,
            Err(e) => {
                if started.elapsed() >= wait {
                    return Err(e);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200).min(wait.saturating_sub(started.elapsed())));
    }
}

/// The current lock of the state at `state_path`, if any.
pub fn current(state_path: &Path) -> Result<Option<LockInfo>, LockError> {
    read_info(&lock_path(state_path))
}

/// Remove the lock of the state at `state_path` if its ID is `id`.
pub fn force_unlock(state_path: &Path, id: &str) -> Result<LockInfo, LockError> {
    let path = lock_path(state_path);
    let Some(info) = read_info(&path)? else {
        return Err(LockError::NotLocked(state_path.to_path_buf()));
    };
    if info.id != id {
        return Err(LockError::WrongId {
            given: id.to_string(),
            info: Box::new(info),
        });
    }
    std::fs::remove_file(&path).map_err(|source| LockError::Io {
        action: "remove",
        path: path.clone(),
        source,
    })?;
    Ok(info)
}

fn read_info(path: &Path) -> Result<Option<LockInfo>, LockError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| LockError::Unreadable(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a process runs (a zombie has ended). Errs on "alive" when it cannot tell.
fn process_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_info() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s.json");
        let held = acquire(&state, "apply", "0.1.0", Duration::ZERO).expect("first");
        let err = acquire(&state, "destroy", "0.1.0", Duration::ZERO).expect_err("second");
        let msg = err.to_string();
        assert!(msg.contains(&held.info().id), "{msg}");
        assert!(msg.contains("operation `apply`"), "{msg}");
        assert!(
            msg.contains(&format!("vz force-unlock {}", held.info().id)),
            "{msg}"
        );
    }

    #[test]
    fn dropping_the_guard_releases_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s.json");
        drop(acquire(&state, "apply", "0.1.0", Duration::ZERO).expect("first"));
        assert!(current(&state).expect("read").is_none());
        acquire(&state, "apply", "0.1.0", Duration::ZERO).expect("again");
    }

    #[test]
    fn a_waiting_lock_gets_it_once_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s.json");
        let held = acquire(&state, "apply", "0.1.0", Duration::ZERO).expect("first");
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let second = acquire(&state, "apply", "0.1.0", Duration::from_secs(10));
        t.join().expect("join");
        assert!(second.is_ok());
    }

    #[test]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s.json");
        let dead = LockInfo {
            id: "old".into(),
            operation: "apply".into(),
            who: "x@y".into(),
            version: "0".into(),
            created: "2026-01-01T00:00:00Z".into(),
            path: state.display().to_string(),
            pid: u32::MAX - 1,
            host: host(),
        };
        std::fs::write(lock_path(&state), serde_json::to_vec(&dead).expect("json")).expect("write");
        let g = acquire(&state, "apply", "0.1.0", Duration::ZERO).expect("taken over");
        assert_eq!(g.replaced.as_ref().map(|i| i.id.as_str()), Some("old"));
    }

    #[test]
    fn force_unlock_needs_the_right_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("s.json");
        let held = acquire(&state, "apply", "0.1.0", Duration::ZERO).expect("first");
        assert!(matches!(
            force_unlock(&state, "nope"),
            Err(LockError::WrongId { .. })
        ));
        let id = held.info().id.clone();
        std::mem::forget(held);
        assert_eq!(force_unlock(&state, &id).expect("unlocked").id, id);
        assert!(matches!(
            force_unlock(&state, &id),
            Err(LockError::NotLocked(_))
        ));
    }
}
