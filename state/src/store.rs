//! The state as commands use it: decoded, checked, and written back only over the history it
//! continues, on any [`Backend`].
//!
//! A [`Store`] remembers the version of the document it last read or wrote. A write raises the
//! state's serial and is a compare-and-swap against that version, so a write never silently
//! replaces a document someone else wrote in between: it is refused as stale, saying what differs
//! (another lineage, a newer serial, the same serial with other content). A document that cannot be
//! decoded is reported and never overwritten (except by a forced push).

use tokio::sync::Mutex;

use crate::backend::{Backend, BackendError, Version};
use crate::codec::{self, DecodeError, EncodeError};
use crate::location::Location;
use crate::model::State;

/// Why the state could not be read or written. The messages say what happened; what the user can
/// do about it is for the command line to add.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The stored document could not be decoded; it is left as it is.
    #[error("the state {location} cannot be used: {cause}. It was not modified")]
    Corrupt {
        /// Where the state is.
        location: String,
        /// What is wrong with it (in the message, so not the error's `source` too).
        cause: DecodeError,
    },
    /// The stored document is not the history this write continues.
    #[error("refusing to write the state {location}: {reason}; nothing was written")]
    Stale {
        /// Where the state is.
        location: String,
        /// What differs.
        reason: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The state could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A state storage with the version last seen.
pub struct Store {
    backend: Box<dyn Backend>,
    version: Mutex<Option<Version>>,
}

impl Store {
    /// A store on `backend`.
    pub fn new(backend: Box<dyn Backend>) -> Store {
        Store {
            backend,
            version: Mutex::new(None),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Where the state is.
    pub fn location(&self) -> Location {
        self.backend.location()
    }

    fn corrupt(&self, source: DecodeError) -> StorageError {
        StorageError::Corrupt {
            location: self.location().to_string(),
            cause: source,
        }
    }

    /// The stored document as it is (checksum included), verified; `None` when there is none.
    pub async fn read_raw(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let Some((bytes, _)) = self.backend.read().await? else {
            return Ok(None);
        };
        codec::decode(&bytes).map_err(|e| self.corrupt(e))?;
        Ok(Some(bytes))
    }

    /// Read the state; `None` when there is none yet. Later writes continue this version.
    pub async fn read(&self) -> Result<Option<State>, StorageError> {
        let read = self.backend.read().await?;
        let state = match &read {
            Some((bytes, _)) => Some(codec::decode(bytes).map_err(|e| self.corrupt(e))?),
            None => None,
        };
        *self.version.lock().await = read.map(|(_, v)| v);
        Ok(state)
    }

    /// Write `state`, first raising its serial by one; refused as stale when the stored document
    /// is no longer the one last read or written here. The serial is not raised on failure.
    pub async fn write(&self, state: &mut State) -> Result<(), StorageError> {
        let mut version = self.version.lock().await;
        state.serial += 1;
        let written = match codec::encode(state) {
            Ok(bytes) => self.backend.write(&bytes, version.as_ref()).await,
            Err(e) => {
                state.serial -= 1;
                return Err(e.into());
            }
        };
        match written {
            Ok(v) => {
                *version = Some(v);
                Ok(())
            }
            Err(BackendError::Conflict) => {
                state.serial -= 1;
                Err(self.stale(state).await)
            }
            Err(e) => {
                state.serial -= 1;
                Err(e.into())
            }
        }
    }

    /// Why a write of `state` conflicted: what the stored document now is.
    async fn stale(&self, state: &State) -> StorageError {
        let reason = match self.backend.read().await {
            Ok(None) => "it was removed since it was read".to_string(),
            Ok(Some((bytes, _))) => match codec::decode(&bytes) {
                Err(e) => format!(
                    "it was replaced since it was read by a document that cannot be used ({e})"
                ),
                Ok(now) if now.lineage != state.lineage => format!(
                    "it now holds lineage {}, not {} (another platform's or a re-created state)",
                    now.lineage, state.lineage
                ),
                Ok(now) if now.serial > state.serial => format!(
                    "it was written by another run since it was read (serial {} stored, {} here)",
                    now.serial, state.serial
                ),
                Ok(now) => format!(
                    "it was changed by someone else since it was read (serial {} stored, other content)",
                    now.serial
                ),
            },
            Err(e) => format!("it changed since it was read, and reading it again failed: {e}"),
        };
        StorageError::Stale {
            location: self.location().to_string(),
            reason,
        }
    }

    /// Replace the stored state with `incoming` (`vz state push`). Without `force`, refused when
    /// `incoming` is of another lineage, older than the stored state, of the same serial with other
    /// content, or when the stored document cannot be decoded. With `force` it is written anyway,
    /// with a serial above the stored one.
    pub async fn push(&self, incoming: &State, force: bool) -> Result<State, StorageError> {
        let mut out = incoming.clone();
        let stored = self.backend.read().await?;
        let expected = stored.as_ref().map(|(_, v)| v.clone());
        if let Some((bytes, _)) = &stored {
            match codec::decode(bytes) {
                Ok(disk) => {
                    if !force {
                        let stale = |reason: String| StorageError::Stale {
                            location: self.location().to_string(),
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
                Err(e) if !force => return Err(self.corrupt(e)),
                Err(_) => {}
            }
        }
        let bytes = codec::encode(&out)?;
        let v = match self.backend.write(&bytes, expected.as_ref()).await {
            Ok(v) => v,
            Err(BackendError::Conflict) => return Err(self.stale(&out).await),
            Err(e) => return Err(e.into()),
        };
        *self.version.lock().await = Some(v);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;
    use crate::test_runtime as rt;

    fn store(path: &std::path::Path) -> Store {
        Store::new(Box::new(LocalBackend::new(path)))
    }

    #[test]
    fn every_write_raises_the_serial_and_reads_back() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let st = store(&dir.path().join("s.json"));
            assert!(st.read().await.expect("read").is_none());
            let mut s = State::new("default", "0.1.0");
            st.write(&mut s).await.expect("write 1");
            st.write(&mut s).await.expect("write 2");
            let back = store(&dir.path().join("s.json"))
                .read()
                .await
                .expect("read")
                .expect("present");
            assert_eq!(back.serial, 2);
            assert_eq!(back, s);
        });
    }

    #[test]
    fn a_corrupt_document_is_reported_and_left_untouched() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.json");
            std::fs::write(&path, b"{\"version\": 1, \"serial\": ").expect("write");
            let err = store(&path).read().await.expect_err("corrupt");
            let msg = err.to_string();
            assert!(
                msg.contains("s.json") && msg.contains("not valid JSON"),
                "{msg}"
            );
            assert_eq!(
                std::fs::read(&path).expect("read"),
                b"{\"version\": 1, \"serial\": "
            );
        });
    }

    #[test]
    fn a_write_over_a_newer_serial_is_refused_and_the_serial_kept() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.json");
            let mine_store = store(&path);
            let mut mine = State::new("default", "0.1.0");
            mine_store.write(&mut mine).await.expect("write");
            let other = store(&path);
            let mut theirs = other.read().await.expect("read").expect("present");
            other.write(&mut theirs).await.expect("write");
            let before = std::fs::read(&path).expect("read");
            let err = mine_store.write(&mut mine).await.expect_err("stale");
            assert!(err.to_string().contains("written by another run"), "{err}");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                before,
                "nothing written"
            );
            assert_eq!(mine.serial, 1, "serial not raised on refusal");
        });
    }

    #[test]
    fn a_write_over_another_lineage_is_refused() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.json");
            store(&path)
                .write(&mut State::new("default", "0.1.0"))
                .await
                .expect("write");
            let err = store(&path)
                .write(&mut State::new("default", "0.1.0"))
                .await
                .expect_err("other lineage");
            assert!(err.to_string().contains("lineage"), "{err}");
        });
    }

    #[test]
    fn a_write_over_the_same_serial_with_other_content_is_refused() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.json");
            let a = store(&path);
            let mut s = State::new("default", "0.1.0");
            a.write(&mut s).await.expect("write");
            let b = store(&path);
            let mut mine = b.read().await.expect("read").expect("present");
            let mut edited = s.clone();
            edited.platform = "changed".into();
            std::fs::write(&path, codec::encode(&edited).expect("encode")).expect("write");
            let err = b
                .write(&mut mine)
                .await
                .expect_err("same serial, other content");
            assert!(err.to_string().contains("other content"), "{err}");
        });
    }

    #[test]
    fn push_refuses_older_or_foreign_states_unless_forced() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let st = store(&dir.path().join("s.json"));
            let mut s = State::new("default", "0.1.0");
            st.write(&mut s).await.expect("write");
            let old = s.clone();
            st.write(&mut s).await.expect("write");
            assert!(st.push(&old, false).await.is_err(), "older serial");
            assert!(
                st.push(&State::new("default", "0.1.0"), false)
                    .await
                    .is_err(),
                "other lineage"
            );
            let forced = st.push(&old, true).await.expect("forced");
            assert_eq!(
                forced.serial,
                s.serial + 1,
                "forced push continues the serial"
            );
            let mut newer = forced.clone();
            newer.serial += 5;
            assert_eq!(
                st.push(&newer, false).await.expect("newer").serial,
                newer.serial
            );
        });
    }

    #[test]
    fn a_forced_push_replaces_a_corrupt_document() {
        rt().block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.json");
            std::fs::write(&path, b"garbage").expect("write");
            let st = store(&path);
            let s = State::new("default", "0.1.0");
            assert!(matches!(
                st.push(&s, false).await,
                Err(StorageError::Corrupt { .. })
            ));
            st.push(&s, true).await.expect("forced");
            assert_eq!(st.read().await.expect("read"), Some(s));
        });
    }
}
