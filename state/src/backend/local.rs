//! The local backend: the state is one file, replaced atomically on every write, with a lock file
//! beside it.
//!
//! - A write goes to a temporary file in the same directory, is flushed to disk, and is then renamed
//!   over the state file, so a reader (or a crash) sees either the old document or the new one,
//!   never a mix. The previous document is kept as `<state>.backup`.
//! - The version token is the sha256 of the file's bytes; a write checks it first (the lock keeps
//!   other `vz` runs out between the check and the rename).
//! - The lock is `<state>.lock`, holding a [`LockInfo`]. It is created atomically with its content
//!   (written to a temporary file, then hard-linked into place, which fails if a lock exists), so a
//!   reader never sees a half-written lock. A lock whose holder was a process on this host that no
//!   longer runs is stale: it is taken over, and the new holder is told. It never expires otherwise.
//! - The state, its backup and the lock are created readable and writable by their owner only
//!   (mode 0600, as temporary files are): the state names every object `vz` manages and the facts of
//!   its certificates. A state file that others may read (copied in, or made by hand) is reported
//!   by [`exposed`] and made 0600 again by the next write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{Backend, BackendError, Lock, Version};
use crate::location::Location;
use crate::lock::{LockError, LockInfo};

/// State kept in a local file.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    path: PathBuf,
}

impl LocalBackend {
    /// A backend for the state file at `path` (it need not exist yet). A symbolic link is
    /// followed ([`through_links`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalBackend {
            path: through_links(path.into()),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backup of the previous document: `<state>.backup`.
    pub fn backup_path(&self) -> PathBuf {
        sibling(&self.path, ".backup")
    }

    /// The lock file: `<state>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackendError {
        let location = path.display().to_string();
        move |source| BackendError::Io {
            action,
            location,
            source,
        }
    }

    fn read_file(&self) -> Result<Option<Vec<u8>>, BackendError> {
        if self.path.is_dir() {
            return Err(self.io("use", &self.path)(std::io::Error::other(
                "it is a directory; the state's path (state.path, --state) names a file, such as vz.vzstate.json in that directory",
            )));
        }
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read", &self.path)(e)),
        }
    }
}

/// The file a state path names, through symbolic links (chains too, up to 40): the state is then
/// written where the link points — replacing the link with a file would leave its target behind,
/// stale — and its backup and lock sit beside the real file, shared by every link to it.
pub fn through_links(path: PathBuf) -> PathBuf {
    let mut path = path;
    for _ in 0..40 {
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        let Some(target) = is_link.then(|| std::fs::read_link(&path).ok()).flatten() else {
            return path;
        };
        // A relative target is relative to the link's directory; an absolute one replaces it.
        path = match path.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    path
}

pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn version_of(bytes: &[u8]) -> Version {
    Version(hex::encode(Sha256::digest(bytes)))
}

#[async_trait]
impl Backend for LocalBackend {
    fn location(&self) -> Location {
        Location::Local {
            path: self.path.clone(),
        }
    }

    async fn read(&self) -> Result<Option<(Vec<u8>, Version)>, BackendError> {
        Ok(self.read_file()?.map(|b| {
            let v = version_of(&b);
            (b, v)
        }))
    }

    async fn write(
        &self,
        bytes: &[u8],
        expected: Option<&Version>,
    ) -> Result<Version, BackendError> {
        let current = self.read_file()?;
        if current.as_deref().map(version_of).as_ref() != expected {
            return Err(BackendError::Conflict);
        }
        if let Some(current) = current {
            let backup = self.backup_path();
            write_atomic(&backup, &current).map_err(self.io("write", &backup))?;
        }
        write_atomic(&self.path, bytes).map_err(self.io("write", &self.path))?;
        Ok(version_of(bytes))
    }

    async fn lock(&self, info: LockInfo, wait: Duration) -> Result<Box<dyn Lock>, LockError> {
        let path = self.lock_path();
        let location = path.display().to_string();
        let io = |action, source| LockError::Io {
            action,
            location: location.clone(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("create the directory of", e))?;
        let body = serde_json::to_vec_pretty(&info)?;
        let started = Instant::now();
        let mut replaced = None;
        loop {
            let tmp = tempfile::Builder::new()
                .prefix(".vzlock-")
                .tempfile_in(&dir)
                .map_err(|e| io("create", e))?;
            std::fs::write(tmp.path(), &body).map_err(|e| io("write", e))?;
            match std::fs::hard_link(tmp.path(), &path) {
                Ok(()) => {
                    return Ok(Box::new(LocalLock {
                        path,
                        info,
                        replaced,
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("create", e)),
            }
            match read_lock(&path) {
                Ok(Some(holder)) => {
                    if holder.holder_is_gone() {
                        // Stale: remove it only if it is still that lock.
                        if read_lock(&path).ok().flatten().as_ref() == Some(&holder) {
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
                // Released in between: try again at once.
                Ok(None) => continue,
                Err(e) if started.elapsed() >= wait => return Err(e),
                Err(_) => {}
            }
            let left = wait.saturating_sub(started.elapsed());
            tokio::time::sleep(Duration::from_millis(200).min(left)).await;
        }
    }

    async fn lock_holder(&self) -> Result<Option<LockInfo>, LockError> {
        read_lock(&self.lock_path())
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, LockError> {
        let path = self.lock_path();
        let Some(info) = read_lock(&path)? else {
            return Err(LockError::NotLocked(self.path.display().to_string()));
        };
        if info.id != id {
            return Err(LockError::WrongId {
                given: id.to_string(),
                info: Box::new(info),
            });
        }
        std::fs::remove_file(&path).map_err(|source| LockError::Io {
            action: "remove",
            location: path.display().to_string(),
            source,
        })?;
        Ok(info)
    }
}

/// A held local lock; released when dropped.
#[derive(Debug)]
struct LocalLock {
    path: PathBuf,
    info: LockInfo,
    replaced: Option<LockInfo>,
}

impl LocalLock {
    /// Remove the lock file if it is still this lock (a forced unlock may have replaced it).
    fn remove(&self) -> Result<(), LockError> {
        if read_lock(&self.path)?.is_some_and(|i| i.id == self.info.id) {
            std::fs::remove_file(&self.path).map_err(|source| LockError::Io {
                action: "remove",
                location: self.path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

#[async_trait]
impl Lock for LocalLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn replaced(&self) -> Option<&LockInfo> {
        self.replaced.as_ref()
    }

    fn renew_every(&self) -> Option<Duration> {
        None
    }

    async fn renew(&self) -> Result<(), LockError> {
        match read_lock(&self.path)? {
            Some(i) if i.id == self.info.id => Ok(()),
            _ => Err(LockError::Lost {
                location: self.info.path.clone(),
                reason: "the lock file was removed or replaced (a forced unlock?)".into(),
            }),
        }
    }

    async fn release(&self) -> Result<(), LockError> {
        self.remove()
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn read_lock(path: &Path) -> Result<Option<LockInfo>, LockError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| LockError::Unreadable(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Io {
            action: "read",
            location: path.display().to_string(),
            source,
        }),
    }
}

/// The mode of the file at `path` when its group or others may read or write it (Unix), else `None`
/// (also when it does not exist).
pub fn exposed(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.permissions().mode() & 0o777;
        (meta.is_file() && mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Write `bytes` to `path` so that a reader (or a crash) sees the old content or the new, never a
/// mix: a temporary file in the same directory, flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".vz-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_runtime as rt;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn the_state_its_backup_and_the_lock_are_the_owners_alone() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("s.json"));
            b.write(b"one", None).await.expect("first write");
            let v = b.read().await.expect("read").map(|(_, v)| v);
            b.write(b"two", v.as_ref()).await.expect("second write");
            let lock = b.lock(info("apply"), Duration::ZERO).await.expect("lock");
            for path in [b.path.clone(), b.backup_path(), b.lock_path()] {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                assert_eq!(exposed(&path), None);
            }
            lock.release().await.expect("release");
        });
    }

    #[cfg(unix)]
    #[test]
    fn a_state_others_may_read_is_reported_and_the_next_write_closes_it() {
        use std::os::unix::fs::PermissionsExt;
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.json");
            std::fs::write(&path, b"one").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert_eq!(exposed(&path), Some(0o644));
            let b = LocalBackend::new(path.clone());
            let v = b.read().await.expect("read").map(|(_, v)| v);
            b.write(b"two", v.as_ref()).await.expect("write");
            assert_eq!(exposed(&path), None);
            assert_eq!(mode(&path), 0o600);
        });
    }

    fn info(op: &str) -> LockInfo {
        LockInfo::new(op, "0.1.0", "s.json")
    }

    #[test]
    fn a_write_is_a_compare_and_swap_on_the_version_read() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("nested/s.json"));
            assert!(b.read().await.expect("read").is_none());
            let v1 = b.write(b"one", None).await.expect("create");
            assert!(matches!(
                b.write(b"x", None).await,
                Err(BackendError::Conflict)
            ));
            let v2 = b.write(b"two", Some(&v1)).await.expect("update");
            assert!(matches!(
                b.write(b"x", Some(&v1)).await,
                Err(BackendError::Conflict)
            ));
            let (bytes, v) = b.read().await.expect("read").expect("present");
            assert_eq!((bytes.as_slice(), v), (b"two".as_slice(), v2));
            assert_eq!(std::fs::read(b.backup_path()).expect("backup"), b"one");
        });
    }

    #[cfg(unix)]
    #[test]
    fn a_state_path_that_is_a_link_is_written_through_it_and_a_directory_is_refused() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let shared = dir.path().join("shared");
            std::fs::create_dir(&shared).expect("mkdir");
            let link = dir.path().join("s.json");
            std::os::unix::fs::symlink("shared/team.json", &link).expect("symlink");
            let b = LocalBackend::new(link.clone());
            assert_eq!(b.path(), dir.path().join("shared/team.json"));
            b.write(b"{}", None).await.expect("write");
            let b = LocalBackend::new(link.clone());
            let v = b.read().await.expect("read").expect("exists").1;
            b.write(b"{\"a\":1}", Some(&v)).await.expect("write again");
            assert!(
                std::fs::symlink_metadata(&link)
                    .expect("link")
                    .file_type()
                    .is_symlink(),
                "the link stays a link"
            );
            assert_eq!(
                std::fs::read(shared.join("team.json")).expect("target"),
                b"{\"a\":1}"
            );
            assert!(shared.join("team.json.backup").exists());

            let b = LocalBackend::new(shared.clone());
            let err = b.read().await.expect_err("a directory");
            let text = format!(
                "{err}: {}",
                std::error::Error::source(&err).expect("source")
            );
            assert!(text.contains("it is a directory"), "{text}");
            assert!(text.contains(&shared.display().to_string()), "{text}");
        });
    }

    #[test]
    fn writes_leave_no_temporary_files_behind() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("s.json"));
            let v = b.write(b"1", None).await.expect("write");
            b.write(b"2", Some(&v)).await.expect("write");
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .expect("readdir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["s.json", "s.json.backup"]);
        });
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holders_info() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("s.json"));
            let held = b.lock(info("apply"), Duration::ZERO).await.expect("first");
            let err = b
                .lock(info("destroy"), Duration::ZERO)
                .await
                .err()
                .expect("second is refused");
            let LockError::Locked { info } = &err else {
                panic!("{err}");
            };
            assert_eq!(info.id, held.info().id);
            assert!(err.to_string().contains("operation `apply`"), "{err}");
        });
    }

    #[test]
    fn releasing_or_dropping_the_handle_frees_the_lock() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("s.json"));
            let l = b.lock(info("apply"), Duration::ZERO).await.expect("first");
            l.release().await.expect("release");
            assert!(b.lock_holder().await.expect("read").is_none());
            drop(b.lock(info("apply"), Duration::ZERO).await.expect("again"));
            assert!(b.lock_holder().await.expect("read").is_none());
        });
    }

    #[test]
    fn a_waiting_lock_gets_it_once_released() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("s.json"));
            let held = b.lock(info("apply"), Duration::ZERO).await.expect("first");
            let release = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                drop(held);
            };
            let (second, ()) =
                tokio::join!(b.lock(info("apply"), Duration::from_secs(10)), release);
            assert!(second.is_ok());
        });
    }

    #[test]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("s.json"));
            let mut dead = info("apply");
            dead.id = "old".into();
            dead.pid = u32::MAX - 1;
            std::fs::write(b.lock_path(), serde_json::to_vec(&dead).expect("json")).expect("write");
            let l = b
                .lock(info("apply"), Duration::ZERO)
                .await
                .expect("taken over");
            assert_eq!(l.replaced().map(|i| i.id.as_str()), Some("old"));
        });
    }

    #[test]
    fn force_unlock_needs_the_right_id_and_a_lost_lock_cannot_be_renewed() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = LocalBackend::new(dir.path().join("s.json"));
            let held = b.lock(info("apply"), Duration::ZERO).await.expect("first");
            assert!(matches!(
                b.force_unlock("nope").await,
                Err(LockError::WrongId { .. })
            ));
            held.renew().await.expect("still held");
            let id = held.info().id.clone();
            assert_eq!(b.force_unlock(&id).await.expect("unlocked").id, id);
            assert!(matches!(held.renew().await, Err(LockError::Lost { .. })));
            assert!(matches!(
                b.force_unlock(&id).await,
                Err(LockError::NotLocked(_))
            ));
        });
    }
}
