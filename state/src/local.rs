//! The local file backend: the state lives in one JSON file, replaced atomically on every write.
//!
//! A write goes to a temporary file in the same directory, is flushed to disk, and is then renamed
//! over the state file, so a reader (or a crash) sees either the old document or the new one, never a
//! mix. The previous document is kept as `<state>.backup`. A file that cannot be decoded is reported
//! and left untouched.
//!
//! Stale writes are refused: a write must continue the history it read. If the file now holds
//! another lineage, a newer serial, or the same serial with other content, someone else wrote it in
//! between, and writing would lose their changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::codec::{self, DecodeError};
use crate::model::State;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file exists but could not be decoded; it is left as it is.
    #[error(
        "the state file {path} cannot be used: {source}.\n\
         It was not modified. Restore it from a backup or version control, or move it aside to start \
         with an empty state (vz would then try to create objects that may already exist)"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DecodeError,
    },
    /// The file on disk is not the history this write continues.
    #[error(
        "refusing to write the state file {path}: {reason}.\n\
         hint: nothing was written; run `vz plan` again to start from the current state, or use \
         `vz state push --force` if you are sure"
    )]
    Stale {
        /// The state file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Reading or writing failed at the operating-system level.
    #[error("cannot {action} the state file {path}: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The state file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// State kept in a local file.
#[derive(Debug)]
pub struct LocalBackend {
    path: PathBuf,
    /// Checksum of the document last read or written by this backend.
    base: Mutex<Option<String>>,
}

impl LocalBackend {
    /// A backend for the state file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalBackend {
            path: path.into(),
            base: Mutex::new(None),
        }
    }

    /// The backup of the previous document: `<state>.backup`.
    pub fn backup_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".backup");
        self.path.with_file_name(name)
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the state; `Ok(None)` when there is no state file yet.
    pub fn read(&self) -> Result<Option<State>, StorageError> {
        let state = self.read_disk()?;
        self.remember(state.as_ref());
        Ok(state)
    }

    fn remember(&self, state: Option<&State>) {
        if let Ok(mut base) = self.base.lock() {
            *base = state.map(codec::checksum_of_state);
        }
    }

    fn read_disk(&self) -> Result<Option<State>, StorageError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StorageError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|source| StorageError::Corrupt {
                path: self.path.clone(),
                source,
            })
    }

    /// Write `state` atomically, first raising its serial by one. Refused when the file on disk is
    /// not the document `state` continues (see the module docs).
    pub fn write(&self, state: &mut State) -> Result<(), StorageError> {
        if let Some(disk) = self.read_disk()? {
            let base = self.base.lock().ok().and_then(|b| b.clone());
            self.check_continues(&disk, state, base.as_deref())?;
        }
        state.serial += 1;
        let bytes = codec::encode(state);
        self.replace(&bytes).inspect_err(|_| state.serial -= 1)?;
        self.remember(Some(state));
        Ok(())
    }

    /// Replace the stored state with `incoming` (`vz state push`). Without `force`, refused when
    /// `incoming` is of another lineage, older than the stored state, or of the same serial with other
    /// content. With `force` it is written anyway, with a serial above the stored one.
    pub fn push(&self, incoming: &State, force: bool) -> Result<State, StorageError> {
        let mut out = incoming.clone();
        if let Some(disk) = self.read_disk()? {
            if !force {
                let stale = |reason: String| StorageError::Stale {
                    path: self.path.clone(),
                    reason,
                };
                if disk.lineage != incoming.lineage {
                    return Err(stale(format!(
                        "the pushed state has lineage {}, the stored one {}",
                        incoming.lineage, disk.lineage
                    )));
                }
                if incoming.serial < disk.serial {
                    return Err(stale(format!(
                        "cannot push a state with serial {} over the newer stored serial {}",
                        incoming.serial, disk.serial
                    )));
                }
                if incoming.serial == disk.serial && &disk != incoming {
                    return Err(stale(format!(
                        "the pushed state has the same serial ({}) as the stored one but other content",
                        incoming.serial
                    )));
                }
            }
            out.serial = out.serial.max(disk.serial + u64::from(force));
        }
        self.replace(&codec::encode(&out))?;
        self.remember(Some(&out));
        Ok(out)
    }

    fn check_continues(
        &self,
        disk: &State,
        state: &State,
        base: Option<&str>,
    ) -> Result<(), StorageError> {
        let reason = if disk.lineage != state.lineage {
            Some(format!(
                "it now holds lineage {}, not {} (another platform's or a re-created state)",
                disk.lineage, state.lineage
            ))
        } else if disk.serial > state.serial {
            Some(format!(
                "it was written by another run since it was read (serial {} on disk, {} here)",
                disk.serial, state.serial
            ))
        } else if disk.serial == state.serial
            && base.is_some_and(|b| b != codec::checksum_of_state(disk))
        {
            Some(format!(
                "it was changed by someone else since it was read (same serial {}, other content)",
                disk.serial
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StorageError::Stale {
                path: self.path.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Keep the current file as the backup, then atomically put `bytes` in its place.
    fn replace(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io {
                action,
                path,
                source,
            }
        };
        if self.path.exists() {
            let current = std::fs::read(&self.path).map_err(io("read", &self.path))?;
            let backup = self.backup_path();
            write_atomic(&backup, &current).map_err(io("write", &backup))?;
        }
        write_atomic(&self.path, bytes).map_err(io("write", &self.path))
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

    #[test]
    fn a_missing_file_reads_as_no_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = LocalBackend::new(dir.path().join("s.json"));
        assert!(b.read().expect("read").is_none());
    }

    #[test]
    fn every_write_raises_the_serial_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = LocalBackend::new(dir.path().join("nested/s.json"));
        let mut s = State::new("default", "0.1.0");
        b.write(&mut s).expect("write 1");
        b.write(&mut s).expect("write 2");
        let back = b.read().expect("read").expect("present");
        assert_eq!(back.serial, 2);
        assert_eq!(back, s);
    }

    #[test]
    fn a_corrupt_file_is_reported_and_left_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        std::fs::write(&path, b"{\"version\": 1, \"serial\": ").expect("write");
        let b = LocalBackend::new(&path);
        let err = b.read().expect_err("corrupt");
        let msg = err.to_string();
        assert!(
            msg.contains("s.json") && msg.contains("not valid JSON"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"version\": 1, \"serial\": "
        );
    }

    #[test]
    fn a_write_keeps_the_previous_document_as_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = LocalBackend::new(dir.path().join("s.json"));
        let mut s = State::new("default", "0.1.0");
        b.write(&mut s).expect("write 1");
        let first = std::fs::read(b.path()).expect("read");
        b.write(&mut s).expect("write 2");
        assert_eq!(std::fs::read(b.backup_path()).expect("backup"), first);
    }

    #[test]
    fn a_write_over_a_newer_serial_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        let mut mine = State::new("default", "0.1.0");
        LocalBackend::new(&path).write(&mut mine).expect("write");
        // Another run reads and writes twice.
        let other = LocalBackend::new(&path);
        let mut theirs = other.read().expect("read").expect("present");
        other.write(&mut theirs).expect("write");
        let before = std::fs::read(&path).expect("read");
        let err = LocalBackend::new(&path)
            .write(&mut mine)
            .expect_err("stale");
        assert!(err.to_string().contains("written by another run"), "{err}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "nothing written"
        );
        assert_eq!(mine.serial, 1, "serial not raised on refusal");
    }

    #[test]
    fn a_write_over_another_lineage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        LocalBackend::new(&path)
            .write(&mut State::new("default", "0.1.0"))
            .expect("write");
        let err = LocalBackend::new(&path)
            .write(&mut State::new("default", "0.1.0"))
            .expect_err("other lineage");
        assert!(err.to_string().contains("lineage"), "{err}");
    }

    #[test]
    fn a_write_over_the_same_serial_with_other_content_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        let a = LocalBackend::new(&path);
        let mut s = State::new("default", "0.1.0");
        a.write(&mut s).expect("write");
        let b = LocalBackend::new(&path);
        let mut mine = b.read().expect("read").expect("present");
        // Someone rewrites the file at the same serial with other content.
        let mut edited = s.clone();
        edited.platform = "changed".into();
        std::fs::write(&path, codec::encode(&edited)).expect("write");
        let err = b.write(&mut mine).expect_err("same serial, other content");
        assert!(err.to_string().contains("same serial"), "{err}");
    }

    #[test]
    fn push_refuses_older_or_foreign_states_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = LocalBackend::new(dir.path().join("s.json"));
        let mut s = State::new("default", "0.1.0");
        b.write(&mut s).expect("write");
        let old = s.clone();
        b.write(&mut s).expect("write");
        assert!(b.push(&old, false).is_err(), "older serial");
        assert!(
            b.push(&State::new("default", "0.1.0"), false).is_err(),
            "other lineage"
        );
        let forced = b.push(&old, true).expect("forced");
        assert_eq!(
            forced.serial,
            s.serial + 1,
            "forced push continues the serial"
        );
        let mut newer = forced.clone();
        newer.serial += 5;
        assert_eq!(b.push(&newer, false).expect("newer").serial, newer.serial);
    }

    #[test]
    fn writes_leave_no_temporary_files_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = LocalBackend::new(dir.path().join("s.json"));
        let mut s = State::new("default", "0.1.0");
        b.write(&mut s).expect("write");
        b.write(&mut s).expect("write");
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["s.json", "s.json.backup"]);
    }
}
