//! The kubernetes backend: the state in Secrets, the lock a Lease, in a namespace of a cluster the team
//! shares (`state: {backend: kubernetes, namespace: vz-system}`).
//!
//! - The document is gzip-compressed into Secret `vz-state-<workspace>` (key `state.gz`). A document
//!   too big for one Secret (past [`PART_BYTES`] compressed) is split: the first part in that
//!   Secret, the rest in `vz-state-<workspace>-<generation>-<i>`, immutable Secrets written *before*
//!   the main Secret names them, so a reader never sees a half-written document; the parts of the
//!   previous generation are deleted once the main Secret has moved on.
//! - The version token is the main Secret's `resourceVersion`; a write is an update with that
//!   `resourceVersion` (a create when there is none), so the API server refuses a stale writer.
//! - The lock is Lease `vz-lock-<workspace>`: `holderIdentity` is the lock's ID, the annotation
//!   `vz.dev/lock` holds the whole [`LockInfo`], and `renewTime` + `leaseDurationSeconds` say until
//!   when it holds. The holder renews it ([`Lock::renew_every`]: a third of the duration); a Lease not
//!   renewed past its duration is taken over by the next run — an update with the Lease's
//!   `resourceVersion`, so two runs can never both take it — which says whose lock it took.
//!
//! Every object carries `app.kubernetes.io/managed-by: vz` and `vz.dev/state-workspace`.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use super::{Backend, BackendError, Lock, Version};
use crate::location::Location;
use crate::lock::{LockError, LockInfo};

/// The most compressed bytes one Secret holds (Secrets are capped at 1 MiB; base64 and the
/// object's metadata take the rest).
pub const PART_BYTES: usize = 512 * 1024;
/// The key of the compressed document in each Secret.
const KEY: &str = "state.gz";
/// Annotation of the main Secret: the names of the other parts, in order (comma-separated).
const PARTS: &str = "vz.dev/state-parts";
/// Annotation of the Lease: the holder's [`LockInfo`] as JSON.
const LOCK_INFO: &str = "vz.dev/lock";
/// Label on every object of a state.
const WORKSPACE_LABEL: &str = "vz.dev/state-workspace";

/// State kept in Secrets of a namespace, locked by a Lease.
#[derive(Clone)]
pub struct KubernetesBackend {
    client: kube::Client,
    namespace: String,
    workspace: String,
    lease: Duration,
    /// The `resourceVersion` of the main Secret last read or written here, with the parts it
    /// names: a write at that version needs no read to know which parts it replaces.
    seen: std::sync::Arc<std::sync::Mutex<Option<Seen>>>,
}

/// A main Secret's `resourceVersion` and the parts it names.
type Seen = (String, Vec<String>);

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("namespace", &self.namespace)
            .field("workspace", &self.workspace)
            .field("lease", &self.lease)
            .finish()
    }
}

impl KubernetesBackend {
    /// The backend of `workspace` in `namespace`, whose lock expires `lease` after its last renewal.
    pub fn new(client: kube::Client, namespace: &str, workspace: &str, lease: Duration) -> Self {
        KubernetesBackend {
            client,
            namespace: namespace.to_string(),
            workspace: workspace.to_string(),
            lease,
            seen: Default::default(),
        }
    }

    fn remember(&self, version: &str, parts: Vec<String>) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((version.to_string(), parts));
        }
    }

    /// The parts the main Secret names at `version`, when this backend last saw it there.
    fn parts_at(&self, version: &Version) -> Option<Vec<String>> {
        let seen = self.seen.lock().ok()?;
        seen.as_ref()
            .filter(|(v, _)| *v == version.0)
            .map(|(_, parts)| parts.clone())
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Name of the main Secret.
    pub fn secret_name(&self) -> String {
        format!("vz-state-{}", self.workspace)
    }

    /// Name of the Lease.
    pub fn lease_name(&self) -> String {
        format!("vz-lock-{}", self.workspace)
    }

    fn where_(&self) -> String {
        format!("{}/{}", self.namespace, self.secret_name())
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(
                [
                    ("app.kubernetes.io/managed-by".to_string(), "vz".to_string()),
                    (WORKSPACE_LABEL.to_string(), self.workspace.clone()),
                ]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        }
    }

    fn remote(&self, action: &'static str, e: &kube::Error) -> BackendError {
        BackendError::Remote {
            action,
            location: self.where_(),
            message: describe(e),
        }
    }

    fn lock_error(&self, action: &'static str, e: &kube::Error) -> LockError {
        LockError::Remote {
            action,
            location: format!("{}/{}", self.namespace, self.lease_name()),
            message: describe(e),
        }
    }

    /// The parts named by a main Secret, read and joined (the main Secret's own first).
    async fn gather(&self, main: &Secret) -> Result<Vec<u8>, BackendError> {
        let mut compressed = data_of(main).ok_or_else(|| BackendError::Remote {
            action: "read",
            location: self.where_(),
            message: format!("Secret {} has no `{KEY}`", self.where_()),
        })?;
        for name in part_names(main) {
            let part = self
                .secrets()
                .get_opt(&name)
                .await
                .map_err(|e| self.remote("read", &e))?
                .and_then(|s| data_of(&s))
                .ok_or_else(|| BackendError::Remote {
                    action: "read",
                    location: self.where_(),
                    message: format!(
                        "part {}/{name} of the state is missing or empty",
                        self.namespace
                    ),
                })?;
            compressed.extend(part);
        }
        gunzip(&compressed).map_err(|source| BackendError::Io {
            action: "decompress",
            location: self.where_(),
            source,
        })
    }
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

fn data_of(s: &Secret) -> Option<Vec<u8>> {
    s.data.as_ref()?.get(KEY).map(|b| b.0.clone())
}

fn part_names(s: &Secret) -> Vec<String> {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PARTS))
        .map(|p| {
            p.split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// gzip `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Undo [`gzip`].
pub fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// `bytes` cut into pieces of at most `size` (at least one piece).
pub fn split(bytes: &[u8], size: usize) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(size.max(1)).collect()
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn location(&self) -> Location {
        Location::Kubernetes {
            namespace: self.namespace.clone(),
            workspace: self.workspace.clone(),
            lease_seconds: self.lease.as_secs(),
        }
    }

    async fn read(&self) -> Result<Option<(Vec<u8>, Version)>, BackendError> {
        let Some(main) = self
            .secrets()
            .get_opt(&self.secret_name())
            .await
            .map_err(|e| self.remote("read", &e))?
        else {
            return Ok(None);
        };
        let version = Version(main.metadata.resource_version.clone().unwrap_or_default());
        let bytes = self.gather(&main).await?;
        self.remember(&version.0, part_names(&main));
        Ok(Some((bytes, version)))
    }

    async fn write(
        &self,
        bytes: &[u8],
        expected: Option<&Version>,
    ) -> Result<Version, BackendError> {
        let compressed = gzip(bytes);
        let pieces = split(&compressed, PART_BYTES);
        let generation = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let mut names = Vec::new();
        for (i, piece) in pieces.iter().enumerate().skip(1) {
            let name = format!("{}-{generation}-{i}", self.secret_name());
            let part = Secret {
                metadata: self.meta(&name),
                immutable: Some(true),
                data: Some([(KEY.to_string(), ByteString(piece.to_vec()))].into()),
                ..Default::default()
            };
            self.secrets()
                .create(&PostParams::default(), &part)
                .await
                .map_err(|e| self.remote("write", &e))?;
            names.push(name);
        }
        // The parts this write replaces: known when the state was read (or written) here at that
        // version, else read from the main Secret.
        let old_parts = match expected {
            None => Vec::new(),
            Some(v) => match self.parts_at(v) {
                Some(parts) => parts,
                None => {
                    let current = self
                        .secrets()
                        .get_opt(&self.secret_name())
                        .await
                        .map_err(|e| self.remote("read", &e))?;
                    match current {
                        Some(cur) if cur.metadata.resource_version.as_deref() == Some(&v.0) => {
                            part_names(&cur)
                        }
                        _ => {
                            self.delete_parts(&names).await;
                            return Err(BackendError::Conflict);
                        }
                    }
                }
            },
        };
        let mut meta = self.meta(&self.secret_name());
        meta.annotations = Some([(PARTS.to_string(), names.join(","))].into());
        let mut main = Secret {
            metadata: meta,
            data: Some([(KEY.to_string(), ByteString(pieces[0].to_vec()))].into()),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        // The API server refuses a create over an existing Secret, and an update at another
        // resourceVersion (409) or of a Secret that is gone (404): the compare-and-swap.
        let outcome = match expected {
            None => self.secrets().create(&PostParams::default(), &main).await,
            Some(v) => {
                main.metadata.resource_version = Some(v.0.clone());
                self.secrets()
                    .replace(&self.secret_name(), &PostParams::default(), &main)
                    .await
            }
        };
        match outcome {
            Ok(written) => {
                self.delete_parts(&old_parts).await;
                let version = written.metadata.resource_version.unwrap_or_default();
                self.remember(&version, names);
                Ok(Version(version))
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                self.delete_parts(&names).await;
                Err(BackendError::Conflict)
            }
            Err(e) => {
                self.delete_parts(&names).await;
                Err(self.remote("write", &e))
            }
        }
    }

    async fn lock(&self, info: LockInfo, wait: Duration) -> Result<Box<dyn Lock>, LockError> {
        let lock = super::retry_lock(wait, || self.try_lock(&info)).await?;
        Ok(Box::new(lock))
    }

    async fn lock_holder(&self) -> Result<Option<LockInfo>, LockError> {
        let lease = self
            .leases()
            .get_opt(&self.lease_name())
            .await
            .map_err(|e| self.lock_error("read", &e))?;
        lease.map(|l| self.holder_of(&l)).transpose()
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, LockError> {
        let Some(lease) = self
            .leases()
            .get_opt(&self.lease_name())
            .await
            .map_err(|e| self.lock_error("read", &e))?
        else {
            return Err(LockError::NotLocked(self.where_()));
        };
        let info = self.holder_of(&lease)?;
        if info.id != id {
            return Err(LockError::WrongId {
                given: id.to_string(),
                info: Box::new(info),
            });
        }
        self.delete_lease(&lease).await?;
        Ok(info)
    }
}

impl KubernetesBackend {
    async fn delete_parts(&self, names: &[String]) {
        for n in names {
            // A part left behind is garbage, not damage: the main Secret does not name it.
            let _ = self.secrets().delete(n, &DeleteParams::default()).await;
        }
    }

    /// The holder recorded in a Lease.
    fn holder_of(&self, lease: &Lease) -> Result<LockInfo, LockError> {
        lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LOCK_INFO))
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| {
                LockError::Unreadable(format!("Lease {}/{}", self.namespace, self.lease_name()))
            })
    }

    fn lease_for(&self, info: &LockInfo, now: SystemTime) -> Result<Lease, LockError> {
        let mut meta = self.meta(&self.lease_name());
        meta.annotations = Some([(LOCK_INFO.to_string(), serde_json::to_string(info)?)].into());
        let at = micro(now);
        Ok(Lease {
            metadata: meta,
            spec: Some(LeaseSpec {
                holder_identity: Some(info.id.clone()),
                lease_duration_seconds: Some(i32::try_from(self.lease.as_secs()).unwrap_or(60)),
                acquire_time: Some(at.clone()),
                renew_time: Some(at),
                ..Default::default()
            }),
        })
    }

    /// Take the lock once: the held lock, or who holds it.
    async fn try_lock(
        &self,
        info: &LockInfo,
    ) -> Result<Result<KubernetesLock, LockInfo>, LockError> {
        let fresh = self.lease_for(info, SystemTime::now())?;
        match self.leases().create(&PostParams::default(), &fresh).await {
            Ok(_) => return Ok(Ok(self.held(info, None))),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(self.lock_error("create", &e)),
        }
        let Some(current) = self
            .leases()
            .get_opt(&self.lease_name())
            .await
            .map_err(|e| self.lock_error("read", &e))?
        else {
            // Released in between: try again at once.
            return Box::pin(self.try_lock(info)).await;
        };
        let holder = self.holder_of(&current)?;
        if !expired(&current, SystemTime::now()) {
            return Ok(Err(holder));
        }
        let mut takeover = fresh;
        takeover.metadata.resource_version = current.metadata.resource_version.clone();
        match self
            .leases()
            .replace(&self.lease_name(), &PostParams::default(), &takeover)
            .await
        {
            Ok(_) => Ok(Ok(self.held(info, Some(holder)))),
            // Someone else took it first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Err(holder)),
            Err(e) => Err(self.lock_error("take over", &e)),
        }
    }

    fn held(&self, info: &LockInfo, replaced: Option<LockInfo>) -> KubernetesLock {
        KubernetesLock {
            backend: self.clone(),
            info: info.clone(),
            replaced,
            released: Default::default(),
        }
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<(), LockError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: lease.metadata.resource_version.clone(),
                uid: lease.metadata.uid.clone(),
            }),
            ..Default::default()
        };
        match self.leases().delete(&self.lease_name(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(self.lock_error("delete", &e)),
        }
    }
}

/// The backend of a kubernetes `location`.
pub(super) fn backend_of(
    location: &Location,
    client: Option<&kube::Client>,
) -> Result<KubernetesBackend, BackendError> {
    match (location, client) {
        (
            Location::Kubernetes {
                namespace,
                workspace,
                lease_seconds,
            },
            Some(c),
        ) => Ok(KubernetesBackend::new(
            c.clone(),
            namespace,
            workspace,
            Duration::from_secs(*lease_seconds),
        )),
        _ => Err(BackendError::Remote {
            action: "open",
            location: location.to_string(),
            message: "no connection to a cluster".into(),
        }),
    }
}

/// The workspaces with a state in `location`'s namespace (their main Secrets).
pub(super) async fn workspaces(
    location: &Location,
    client: Option<&kube::Client>,
) -> Result<Vec<String>, BackendError> {
    let b = backend_of(location, client)?;
    let list = b
        .secrets()
        .list(&ListParams::default().labels(WORKSPACE_LABEL))
        .await
        .map_err(|e| b.remote("list", &e))?;
    Ok(list
        .items
        .iter()
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(PARTS))
        })
        .filter_map(|s| s.metadata.labels.as_ref()?.get(WORKSPACE_LABEL).cloned())
        .collect())
}

/// Delete every Secret of `location`'s workspace.
pub(super) async fn delete(
    location: &Location,
    client: Option<&kube::Client>,
) -> Result<(), BackendError> {
    let b = backend_of(location, client)?;
    let list = b
        .secrets()
        .list(&ListParams::default().labels(&format!("{WORKSPACE_LABEL}={}", b.workspace)))
        .await
        .map_err(|e| b.remote("list", &e))?;
    for s in list.items {
        if let Some(name) = s.metadata.name {
            match b.secrets().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(b.remote("delete", &e)),
            }
        }
    }
    Ok(())
}

/// A Lease's time.
fn micro(t: SystemTime) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::try_from(t)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// Whether a Lease was last renewed longer ago than its duration.
fn expired(lease: &Lease, now: SystemTime) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    let renewed: SystemTime = renewed.0.into();
    now.duration_since(renewed).is_ok_and(|d| d > duration)
}

/// A held Lease.
struct KubernetesLock {
    backend: KubernetesBackend,
    info: LockInfo,
    replaced: Option<LockInfo>,
    /// Released already: dropping it need not try again.
    released: std::sync::atomic::AtomicBool,
}

impl KubernetesLock {
    fn lost(&self, reason: impl Into<String>) -> LockError {
        LockError::Lost {
            location: self.backend.where_(),
            reason: reason.into(),
        }
    }

    async fn mine(&self) -> Result<Option<Lease>, LockError> {
        let lease = self
            .backend
            .leases()
            .get_opt(&self.backend.lease_name())
            .await
            .map_err(|e| self.backend.lock_error("read", &e))?;
        Ok(lease.filter(|l| {
            l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&self.info.id)
        }))
    }
}

#[async_trait]
impl Lock for KubernetesLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn replaced(&self) -> Option<&LockInfo> {
        self.replaced.as_ref()
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.backend.lease / 3)
    }

    async fn renew(&self) -> Result<(), LockError> {
        let Some(mut lease) = self.mine().await? else {
            return Err(
                self.lost("the Lease was taken over or removed (it expired, or a forced unlock)")
            );
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(micro(SystemTime::now()));
        }
        match self
            .backend
            .leases()
            .replace(&self.backend.lease_name(), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(self.lost("the Lease changed hands while being renewed"))
            }
            Err(e) => Err(self.backend.lock_error("renew", &e)),
        }
    }

    async fn release(&self) -> Result<(), LockError> {
        if let Some(lease) = self.mine().await? {
            self.backend.delete_lease(&lease).await?;
        }
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for KubernetesLock {
    fn drop(&mut self) {
        // Release without waiting, as well as it can: a runtime may not be there any more; a lock
        // that stays expires after its lease duration anyway.
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let backend = self.backend.clone();
            let id = self.info.id.clone();
            handle.spawn(async move {
                if let Ok(Some(lease)) = backend.leases().get_opt(&backend.lease_name()).await
                    && lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_deref())
                        == Some(&id)
                {
                    let _ = backend.delete_lease(&lease).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips_and_splits_into_parts_that_join_back() {
        let doc: Vec<u8> = (0..3_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z = gzip(&doc);
        assert_eq!(gunzip(&z).expect("gunzip"), doc);
        let parts = split(&z, 1000);
        assert!(parts.iter().all(|p| p.len() <= 1000));
        assert_eq!(parts.concat(), z);
        assert_eq!(split(b"", 10).len(), 1);
    }

    #[test]
    fn a_lease_expires_after_its_duration_since_the_last_renewal() {
        let now = SystemTime::now();
        let lease = |secs_ago: u64, duration: i32| Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(micro(now - Duration::from_secs(secs_ago))),
                lease_duration_seconds: Some(duration),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!expired(&lease(10, 60), now));
        assert!(expired(&lease(61, 60), now));
        assert!(expired(&Lease::default(), now), "no spec: nobody holds it");
    }
}
