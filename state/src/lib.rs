//! The `vz` state: what was applied, recorded so that the next plan can tell what changed.
//!
//! A state document records, for one platform, every Kubernetes object `vz` manages: its address, its
//! identity in the cluster (apiVersion, kind, namespace, name, uid), the sha256 of the manifest that was
//! applied, and the steps it depends on. The document carries a format version, a lineage (a UUID made
//! on the first write, which never changes), a serial that goes up on every write, and a sha256 checksum
//! of the whole document so that corruption is detected instead of silently trusted.
//!
//! - [`model`]: the types.
//! - [`codec`]: encoding and decoding, with the checksum.
//! - [`backend`]: where the document and its lock are stored (the [`Backend`] trait; the local file).
//! - [`store`]: reading and writing a state over any backend, refusing stale writes.
//! - [`lock`]: who holds a lock, and why one could not be taken.

pub mod backend;
pub mod codec;
pub mod lock;
pub mod model;
pub mod store;

pub use backend::local::write_atomic;
pub use backend::{
    Backend, BackendError, DEFAULT_WORKSPACE, LocalBackend, Location, Lock, Version, WORKSPACES_DIR,
};
pub use codec::{DecodeError, EncodeError, decode, encode};
pub use lock::{LockError, LockInfo};
pub use model::{CertFacts, FORMAT_VERSION, ObjectRecord, State, Unfinished};
pub use store::{StorageError, Store};

/// A runtime for the crate's async unit tests.
#[cfg(test)]
pub(crate) fn test_runtime() -> tokio::runtime::Runtime {
    #[allow(clippy::expect_used)]
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}
