//! The local file backend: the state lives in one JSON file, replaced atomically on every write.
//!
//! A write goes to a temporary file in the same directory, is flushed to disk, and is then renamed
//! over the state file, so a reader (or a crash) sees either the old document or the new one, never a
//! mix. A file that cannot be decoded is reported and left untouched.

use std::io::Write;
use std::path::{Path, PathBuf};

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
#[derive(Debug, Clone)]
pub struct LocalBackend {
    path: PathBuf,
}

impl LocalBackend {
    /// A backend for the state file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalBackend { path: path.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the state; `Ok(None)` when there is no state file yet.
    pub fn read(&self) -> Result<Option<State>, StorageError> {
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

    /// Write `state` atomically, first raising its serial by one.
    pub fn write(&self, state: &mut State) -> Result<(), StorageError> {
        state.serial += 1;
        let bytes = codec::encode(state);
        self.write_bytes(&bytes).inspect_err(|_| state.serial -= 1)
    }

    fn write_bytes(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let io = |source| StorageError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".vzstate-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
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
    fn writes_leave_no_temporary_files_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = LocalBackend::new(dir.path().join("s.json"));
        let mut s = State::new("default", "0.1.0");
        b.write(&mut s).expect("write");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["s.json"]);
    }
}
