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
//! - [`local`]: the local file backend (atomic writes, backup, stale-write refusal).
//! - [`lock`]: the local lock (who holds it, waiting for it, taking over a dead holder's).

pub mod codec;
pub mod local;
pub mod lock;
pub mod model;

pub use codec::{DecodeError, decode, encode};
pub use local::{LocalBackend, StorageError, write_atomic};
pub use lock::{LockError, LockGuard, LockInfo};
pub use model::{FORMAT_VERSION, ObjectRecord, State};
