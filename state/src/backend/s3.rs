//! The s3 backend: the state an object of an S3-compatible bucket, the lock an object beside it
//! (`state: {backend: s3, bucket, key, endpoint, region}`).
//!
//! - The document is object `<key>` (another workspace's: `<dir of key>/vz-workspaces/<ws>/<file>`),
//!   stored as it is encoded. Its version token is the object's ETag; a write is a conditional PUT,
//!   `If-None-Match: *` when there is no state yet and `If-Match: <etag>` after, so the store refuses
//!   a stale writer (the serial in every document means an ETag never comes back).
//! - The lock is object `<state object>.lock`: a [`LockRecord`] holding the [`LockInfo`], when the
//!   holder last renewed it and for how long that holds. It is created with `If-None-Match: *`;
//!   renewing, releasing (the record then says "released") and taking over a lock whose holder let
//!   it expire are all `If-Match` writes on the ETag the writer last saw, so two runs can never both
//!   hold it. Expiry is judged by the reader's clock against the holder's, as with Kubernetes Leases:
//!   the machines of a team need clocks within a few seconds of each other (NTP).
//!
//! Credentials and settings not in the configuration come from the usual `AWS_*` environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, web identity and container credentials), or the instance's metadata service.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion,
};
use serde::{Deserialize, Serialize};

use super::{Backend, BackendError, Lock, Version};
use crate::location::{DEFAULT_WORKSPACE, Location, S3Place, WORKSPACES_DIR, split_key};
use crate::lock::{LockError, LockInfo};

/// How many times a failed request is retried, and for how long at most.
const RETRIES: usize = 3;
const RETRY_FOR: Duration = Duration::from_secs(20);

/// The lock object's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LockRecord {
    /// The holder; `None` once released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockInfo>,
    /// When the holder last took or renewed it (milliseconds since the Unix epoch).
    pub renewed_ms: u64,
    /// How long it holds after that.
    pub lease_seconds: u64,
}

impl LockRecord {
    fn held(info: &LockInfo, lease: Duration, now: SystemTime) -> LockRecord {
        LockRecord {
            lock: Some(info.clone()),
            renewed_ms: millis(now),
            lease_seconds: lease.as_secs(),
        }
    }

    fn released(now: SystemTime) -> LockRecord {
        LockRecord {
            lock: None,
            renewed_ms: millis(now),
            lease_seconds: 0,
        }
    }

    /// Whether nobody holds it at `now`: released, or not renewed within its lease.
    pub fn is_free(&self, now: SystemTime) -> bool {
        self.lock.is_none()
            || millis(now) > self.renewed_ms.saturating_add(self.lease_seconds * 1000)
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// State kept in an S3 bucket, locked by an object beside it.
#[derive(Clone)]
pub struct S3Backend {
    store: Arc<AmazonS3>,
    place: S3Place,
    lease: Duration,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("place", &self.place)
            .field("lease", &self.lease)
            .finish()
    }
}

impl S3Backend {
    /// The backend of `place`, whose lock expires `lease` after its last renewal. Fails when the
    /// settings cannot make a client (a malformed endpoint, say); credentials are looked up at the
    /// first request.
    pub fn new(place: S3Place, lease: Duration) -> Result<S3Backend, BackendError> {
        S3Backend::build(AmazonS3Builder::from_env(), place, lease)
    }

    /// The same with these static credentials instead of the environment's (an embedding program
    /// that has them from elsewhere; the tests).
    pub fn with_credentials(
        place: S3Place,
        lease: Duration,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<S3Backend, BackendError> {
        let builder = AmazonS3Builder::new()
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key);
        S3Backend::build(builder, place, lease)
    }

    fn build(
        builder: AmazonS3Builder,
        place: S3Place,
        lease: Duration,
    ) -> Result<S3Backend, BackendError> {
        // reqwest is built without a crypto provider of its own: use ring, as kube does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = builder
            .with_bucket_name(&place.bucket)
            .with_retry(RetryConfig {
                max_retries: RETRIES,
                retry_timeout: RETRY_FOR,
                ..Default::default()
            })
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                "5s",
            )
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "30s");
        if let Some(region) = &place.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &place.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| BackendError::Remote {
            action: "open",
            location: place.url(),
            message: e.to_string(),
        })?;
        Ok(S3Backend {
            store: Arc::new(store),
            place,
            lease,
        })
    }

    fn state_path(&self) -> Path {
        Path::from(self.place.object_key())
    }

    fn lock_path(&self) -> Path {
        Path::from(format!("{}.lock", self.place.object_key()))
    }

    fn lock_url(&self) -> String {
        format!("{}.lock", self.place.url())
    }

    fn remote(&self, action: &'static str, e: &object_store::Error) -> BackendError {
        BackendError::Remote {
            action,
            location: self.place.url(),
            message: describe(e),
        }
    }

    fn lock_error(&self, action: &'static str, e: &object_store::Error) -> LockError {
        LockError::Remote {
            action,
            location: self.lock_url(),
            message: describe(e),
        }
    }

    /// The lock object's record and ETag, if there is one.
    async fn read_lock(&self) -> Result<Option<(LockRecord, String)>, LockError> {
        let got = match self.store.get(&self.lock_path()).await {
            Ok(got) => got,
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => return Ok(None),
            Err(e) => return Err(self.lock_error("read", &e)),
        };
        let etag = got.meta.e_tag.clone().unwrap_or_default();
        let bytes = got.bytes().await.map_err(|e| self.lock_error("read", &e))?;
        let record =
            serde_json::from_slice(&bytes).map_err(|_| LockError::Unreadable(self.lock_url()))?;
        Ok(Some((record, etag)))
    }

    /// Write the lock record: create it (`None`) or replace the version `etag`. `Ok(None)` when
    /// the condition failed (someone else wrote or created it first).
    async fn write_lock(
        &self,
        record: &LockRecord,
        etag: Option<&str>,
    ) -> Result<Option<String>, LockError> {
        let mode = match etag {
            None => PutMode::Create,
            Some(e) => PutMode::Update(UpdateVersion {
                e_tag: Some(e.to_string()),
                version: None,
            }),
        };
        let body = PutPayload::from(serde_json::to_vec(record)?);
        match self
            .store
            .put_opts(&self.lock_path(), body, PutOptions::from(mode))
            .await
        {
            Ok(put) => Ok(Some(put.e_tag.unwrap_or_default())),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(self.lock_error("write", &e)),
        }
    }

    /// Take the lock once: the held lock, or who holds it.
    async fn try_lock(&self, info: &LockInfo) -> Result<Result<S3Lock, LockInfo>, LockError> {
        let now = SystemTime::now();
        let record = LockRecord::held(info, self.lease, now);
        let (etag, replaced) = match self.read_lock().await? {
            None => (None, None),
            Some((current, etag)) => {
                if !current.is_free(now)
                    && let Some(holder) = current.lock
                {
                    return Ok(Err(holder));
                }
                // Released (nobody to name) or expired (its holder is named when taken over).
                (Some(etag), current.lock)
            }
        };
        match self.write_lock(&record, etag.as_deref()).await? {
            Some(etag) => Ok(Ok(S3Lock {
                backend: self.clone(),
                info: info.clone(),
                replaced,
                etag: Arc::new(Mutex::new(Some(etag))),
            })),
            // Someone else wrote it first: whoever holds it now is named on the next try.
            None => match self.read_lock().await? {
                Some((
                    LockRecord {
                        lock: Some(holder), ..
                    },
                    _,
                )) => Ok(Err(holder)),
                _ => Box::pin(self.try_lock(info)).await,
            },
        }
    }
}

/// What went wrong, in a line: the service's error code and message with the HTTP status when it
/// answered, else the client's own account; with what to do about the usual causes.
fn describe(e: &object_store::Error) -> String {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !chain.contains(&more) {
            chain.push_str(": ");
            chain.push_str(&more);
        }
        source = s.source();
    }
    let code = between(&chain, "<Code>", "</Code>");
    let mut text = match (code, between(&chain, "<Message>", "</Message>")) {
        (Some(code), message) => {
            let status = between(&chain, "status code: ", ":").unwrap_or("").trim();
            let mut t = code.to_string();
            if let Some(m) = message {
                t.push_str(": ");
                t.push_str(m);
            }
            if !status.is_empty() {
                t.push_str(&format!(" (HTTP {status})"));
            }
            t
        }
        (None, _) => chain.clone(),
    };
    let hint = match code.unwrap_or("") {
        "NoSuchBucket" => {
            Some("create the bucket first (with versioning on, to keep every state written)")
        }
        "AccessDenied" | "Forbidden" => Some(
            "the credentials lack an IAM action the README lists (s3:GetObject, s3:PutObject, s3:DeleteObject on the state's objects; s3:ListBucket for workspaces)",
        ),
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" => {
            Some("check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        _ if chain.contains("169.254.169.254") && !credentials_in_env() => Some(
            "no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or run where a web identity, container or instance role provides them",
        ),
        _ => None,
    };
    if let Some(h) = hint {
        text.push_str("; ");
        text.push_str(h);
    }
    text
}

/// The text between the first `start` and the next `end` in `s`.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// Whether the environment names credentials (static ones, a web identity or a container's).
fn credentials_in_env() -> bool {
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Whether a "not found" is about the bucket, not the object.
fn no_bucket(e: &object_store::Error) -> bool {
    describe(e).starts_with("NoSuchBucket")
}

#[async_trait]
impl Backend for S3Backend {
    fn location(&self) -> Location {
        Location::S3 {
            bucket: self.place.bucket.clone(),
            key: self.place.key.clone(),
            endpoint: self.place.endpoint.clone(),
            region: self.place.region.clone(),
            workspace: self.place.workspace.clone(),
            lease_seconds: self.lease.as_secs(),
        }
    }

    async fn read(&self) -> Result<Option<(Vec<u8>, Version)>, BackendError> {
        let got = match self.store.get(&self.state_path()).await {
            Ok(got) => got,
            Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => return Ok(None),
            Err(e) => return Err(self.remote("read", &e)),
        };
        let etag = got.meta.e_tag.clone().unwrap_or_default();
        let bytes = got.bytes().await.map_err(|e| self.remote("read", &e))?;
        Ok(Some((bytes.to_vec(), Version(etag))))
    }

    async fn write(
        &self,
        bytes: &[u8],
        expected: Option<&Version>,
    ) -> Result<Version, BackendError> {
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion {
                e_tag: Some(v.0.clone()),
                version: None,
            }),
        };
        match self
            .store
            .put_opts(
                &self.state_path(),
                PutPayload::from(bytes.to_vec()),
                PutOptions::from(mode),
            )
            .await
        {
            Ok(put) => Ok(Version(put.e_tag.unwrap_or_default())),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(BackendError::Conflict),
            Err(e) => Err(self.remote("write", &e)),
        }
    }

    async fn lock(&self, info: LockInfo, wait: Duration) -> Result<Box<dyn Lock>, LockError> {
        let lock = super::retry_lock(wait, || self.try_lock(&info)).await?;
        Ok(Box::new(lock))
    }

    async fn lock_holder(&self) -> Result<Option<LockInfo>, LockError> {
        Ok(self.read_lock().await?.and_then(|(r, _)| r.lock))
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, LockError> {
        let Some((
            LockRecord {
                lock: Some(info), ..
            },
            etag,
        )) = self.read_lock().await?
        else {
            return Err(LockError::NotLocked(self.place.url()));
        };
        if info.id != id {
            return Err(LockError::WrongId {
                given: id.to_string(),
                info: Box::new(info),
            });
        }
        match self
            .write_lock(&LockRecord::released(SystemTime::now()), Some(&etag))
            .await?
        {
            Some(_) => Ok(info),
            None => Err(LockError::Lost {
                location: self.place.url(),
                reason:
                    "the lock changed while it was being removed; nothing was removed, look again"
                        .into(),
            }),
        }
    }
}

/// A held lock object.
struct S3Lock {
    backend: S3Backend,
    info: LockInfo,
    replaced: Option<LockInfo>,
    /// The ETag of the record this holder last wrote; `None` once released.
    etag: Arc<Mutex<Option<String>>>,
}

impl S3Lock {
    fn current(&self) -> Option<String> {
        self.etag.lock().ok().and_then(|e| e.clone())
    }

    fn set(&self, etag: Option<String>) {
        if let Ok(mut e) = self.etag.lock() {
            *e = etag;
        }
    }
}

#[async_trait]
impl Lock for S3Lock {
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
        let Some(etag) = self.current() else {
            return Err(LockError::Lost {
                location: self.backend.place.url(),
                reason: "it was released".into(),
            });
        };
        let record = LockRecord::held(&self.info, self.backend.lease, SystemTime::now());
        match self.backend.write_lock(&record, Some(&etag)).await? {
            Some(etag) => {
                self.set(Some(etag));
                Ok(())
            }
            None => Err(LockError::Lost {
                location: self.backend.place.url(),
                reason:
                    "the lock object was taken over or removed (it expired, or a forced unlock)"
                        .into(),
            }),
        }
    }

    async fn release(&self) -> Result<(), LockError> {
        if let Some(etag) = self.current() {
            // A condition that fails means the lock is someone else's now: nothing to release.
            self.backend
                .write_lock(&LockRecord::released(SystemTime::now()), Some(&etag))
                .await?;
            self.set(None);
        }
        Ok(())
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        // Release without waiting, as well as it can; a lock left behind expires after its lease.
        let Some(etag) = self.current() else { return };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let backend = self.backend.clone();
            handle.spawn(async move {
                let _ = backend
                    .write_lock(&LockRecord::released(SystemTime::now()), Some(&etag))
                    .await;
            });
        }
    }
}

/// The backend of an s3 `location`.
pub(super) fn backend_of(location: &Location) -> Result<S3Backend, BackendError> {
    match location.s3_place() {
        Some((place, lease)) => S3Backend::new(place, lease),
        None => Err(BackendError::Remote {
            action: "open",
            location: location.to_string(),
            message: "not an s3 location".into(),
        }),
    }
}

/// The workspaces with a state beside `location`'s: the default one when its object exists, and
/// every `<dir>/vz-workspaces/<ws>/<file>`.
pub(super) async fn workspaces(location: &Location) -> Result<Vec<String>, BackendError> {
    let b = backend_of(location)?;
    let mut out = Vec::new();
    let default = S3Place {
        workspace: DEFAULT_WORKSPACE.into(),
        ..b.place.clone()
    };
    match b.store.head(&Path::from(default.object_key())).await {
        Ok(_) => out.push(DEFAULT_WORKSPACE.to_string()),
        Err(e @ object_store::Error::NotFound { .. }) if !no_bucket(&e) => {}
        Err(e) => return Err(b.remote("list", &e)),
    }
    let (dir, file) = split_key(&b.place.key);
    let prefix = format!("{dir}{WORKSPACES_DIR}");
    let objects: Vec<_> = b
        .store
        .list(Some(&Path::from(prefix.as_str())))
        .try_collect()
        .await
        .map_err(|e| b.remote("list", &e))?;
    for o in objects {
        let key = o.location.as_ref();
        if let Some(ws) = key
            .strip_prefix(&format!("{prefix}/"))
            .and_then(|rest| rest.strip_suffix(&format!("/{file}")))
            .filter(|ws| !ws.contains('/'))
        {
            out.push(ws.to_string());
        }
    }
    Ok(out)
}

/// Delete the state object of `location`'s workspace, and its lock object.
pub(super) async fn delete(location: &Location) -> Result<(), BackendError> {
    let b = backend_of(location)?;
    for path in [b.state_path(), b.lock_path()] {
        match b.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(b.remote("delete", &e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_error_is_told_by_its_code_and_message_with_what_to_do() {
        let body = "Error performing PUT http://127.0.0.1:1/b/k in 3ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>b</BucketName></Error>";
        let e = object_store::Error::NotFound {
            path: "k".into(),
            source: body.into(),
        };
        assert!(no_bucket(&e));
        assert_eq!(
            describe(&e),
            "NoSuchBucket: The specified bucket does not exist (HTTP 404 Not Found); create the bucket first (with versioning on, to keep every state written)"
        );
        let plain = object_store::Error::NotFound {
            path: "k".into(),
            source: "Server returned non-2xx status code: 404 Not Found: ".into(),
        };
        assert!(!no_bucket(&plain));
    }

    fn place(key: &str, workspace: &str) -> S3Place {
        S3Place {
            bucket: "team".into(),
            key: key.into(),
            endpoint: None,
            region: None,
            workspace: workspace.into(),
        }
    }

    #[test]
    fn each_workspace_has_an_object_beside_the_default_one() {
        assert_eq!(place("dev.json", "default").url(), "s3://team/dev.json");
        assert_eq!(
            place("dev.json", "prod").object_key(),
            "vz-workspaces/prod/dev.json"
        );
        assert_eq!(
            place("platforms/eu/dev.json", "prod").object_key(),
            "platforms/eu/vz-workspaces/prod/dev.json"
        );
    }

    #[test]
    fn a_lock_is_free_once_released_or_past_its_lease() {
        let info = LockInfo::new("apply", "0", "s3://team/dev.json");
        let now = SystemTime::now();
        let held = LockRecord::held(&info, Duration::from_secs(60), now);
        assert!(!held.is_free(now + Duration::from_secs(59)));
        assert!(held.is_free(now + Duration::from_secs(61)));
        assert!(LockRecord::released(now).is_free(now));
        let text = serde_json::to_string(&held).expect("json");
        assert!(
            text.contains("\"renewedMs\"") && text.contains("\"ID\""),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<LockRecord>(&text).expect("back"),
            held
        );
    }
}
