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
//! - [`location`]: where a state is stored, as a configuration names it ([`Location`]).
//! - [`lock`]: who holds a lock, and why one could not be taken.
//! - `backend` (feature `backends`): where the document and its lock are stored (the `Backend`
//!   trait; the local file, Kubernetes and S3 backends).
//! - `store` (feature `backends`): reading and writing a state over any backend, refusing stale
//!   writes.
//!
//! The feature `backends` (on by default) brings the storage and its I/O dependencies (kube,
//! object_store, reqwest, tokio). Without it the crate is the pure part: what the configuration and
//! the renderer need (`vz-providers` uses it so, and depends on none of those).

#[cfg(feature = "backends")]
pub mod backend;
pub mod codec;
pub mod location;
pub mod lock;
pub mod model;
#[cfg(feature = "backends")]
pub mod store;

#[cfg(feature = "backends")]
pub use backend::local::write_atomic;
#[cfg(feature = "backends")]
pub use backend::{Backend, BackendError, LocalBackend, Lock, Version};
pub use codec::{DecodeError, EncodeError, decode, encode};
pub use location::{DEFAULT_WORKSPACE, Location, WORKSPACES_DIR};
pub use lock::{LockError, LockInfo};
pub use model::{CertFacts, FORMAT_VERSION, ObjectRecord, State, Terminated, Unfinished};
#[cfg(feature = "backends")]
pub use store::{StorageError, Store};

/// A runtime for the crate's async unit tests.
#[cfg(all(test, feature = "backends"))]
pub(crate) fn test_runtime() -> tokio::runtime::Runtime {
    #[allow(clippy::expect_used)]
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}
