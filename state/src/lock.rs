//! Who holds a state's lock ([`LockInfo`]), and why a lock could not be taken ([`LockError`]).
//!
//! Every backend records the same facts about a holder: an ID (what a forced unlock names), the
//! operation, `user@host`, the `vz` version, when the lock was taken, the state's location, and the
//! holder's process ID and host. How a lock is stored is the backend's business (see
//! [`crate::backend`]).

use std::path::Path;
use std::time::SystemTime;

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

/// Why a lock could not be taken or released. The messages say what happened; what the user can
/// do about it (flags, commands) is for the command line to add.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds the lock.
    #[error("the state {} is locked: {info}", info.path)]
    Locked {
        /// The holder.
        info: Box<LockInfo>,
    },
    /// A forced unlock named an ID that is not the current lock's.
    #[error("the lock ID `{given}` does not match the current lock ({info}); nothing was removed")]
    WrongId {
        /// The ID given.
        given: String,
        /// The current lock.
        info: Box<LockInfo>,
    },
    /// There is no lock to remove.
    #[error("the state {0} is not locked; nothing was removed")]
    NotLocked(String),
    /// The lock exists but cannot be read as a vz lock.
    #[error("the lock {0} exists but cannot be read as a vz lock")]
    Unreadable(String),
    /// The lock was lost while held (expired and taken by another run, or removed).
    #[error("the lock on {location} was lost: {reason}")]
    Lost {
        /// The state's location.
        location: String,
        /// What happened.
        reason: String,
    },
    /// The storage service refused or failed a request.
    #[error("cannot {action} the lock {location}: {message}")]
    Remote {
        /// What was being done.
        action: &'static str,
        /// The lock's location.
        location: String,
        /// What the service said.
        message: String,
    },
    /// Storage error.
    #[error("cannot {action} the lock {location}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The lock's location.
        location: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The lock's record cannot be encoded (never expected).
    #[error("cannot encode the lock record: {0}")]
    Encode(#[from] serde_json::Error),
}

impl LockInfo {
    /// A new holder's record: a fresh ID, this user, host, process and time.
    pub fn new(operation: &str, version: &str, location: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_string(),
            who: format!("{}@{}", user(), host()),
            version: version.to_string(),
            created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            path: location.to_string(),
            pid: std::process::id(),
            host: host(),
        }
    }

    /// Whether the holder was a process on this host that no longer runs (its lock is stale).
    pub fn holder_is_gone(&self) -> bool {
        self.host == host() && !process_alive(self.pid)
    }
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn host() -> String {
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
