//! [`ClusterApi`] on a Kubernetes API server, through the kube client.
//!
//! Each kind is resolved once per run with a pinned discovery request (one request per group
//! version, not a full discovery sweep) and cached. The client's requests ride out transient
//! failures ([`super::patience`]) and collect the server's warnings ([`super::warnings`]).

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    PropagationPolicy, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use kube::{Client, Config};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::api::{ApiError, ClusterApi, Failure, Watched};
use super::patience::{self, Budget};
use super::{ClusterError, ConnectOptions, Deleted, Listing, NAMES_PAGE, NotServed, ObjectRef};
use super::{describe, warnings};
use crate::interrupt::Interrupt;

/// The `User-Agent` of `vz`'s requests.
pub const USER_AGENT: &str = concat!("vz/", env!("CARGO_PKG_VERSION"));

/// A client for the cluster `opts` names (not yet checked to answer).
pub struct Connection {
    /// The client; its requests ride out transient failures ([`patience`]).
    pub client: Client,
    /// The API server's URL.
    pub server: String,
    /// How long its failing requests are retried.
    pub budget: Budget,
}

/// A client for the cluster `opts` names (not yet checked to answer).
pub async fn client(opts: &ConnectOptions) -> Result<Connection> {
    // The kube errors' messages already include their causes: show them once, not as a chain.
    let config = match (&opts.kubeconfig, &opts.context) {
        (None, None) => Config::infer().await.map_err(|e| {
            ClusterError::Config(format!("cannot load a Kubernetes configuration: {e}"))
        })?,
        (path, context) => {
            let options = KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            match path {
                Some(p) => {
                    let kc = Kubeconfig::read_from(p).map_err(|e| {
                        ClusterError::Config(format!(
                            "cannot read the kubeconfig {}: {e}",
                            p.display()
                        ))
                    })?;
                    Config::from_custom_kubeconfig(kc, &options).await
                }
                None => Config::from_kubeconfig(&options).await,
            }
            .map_err(|e| match context {
                Some(c) => {
                    ClusterError::Config(format!("cannot use context `{c}` of the kubeconfig: {e}"))
                }
                None => ClusterError::Config(format!("cannot use the kubeconfig: {e}")),
            })?
        }
    };
    let mut config = config;
    // Who is calling, in the API server's audit log and in the bench's request counts.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    let server = config.cluster_url.to_string();
    // Transient failures are retried by `vz`'s own layer, within the run's deadline; kube's own
    // retries (up to 15, with pauses of up to 1,000 s) would not know it.
    config.default_retry = false;
    let patience = patience::Patience::new(&server);
    let client = kube::client::ClientBuilder::try_from(config)
        .with_context(|| format!("cannot create a client for {server}"))?
        .with_layer(&patience)
        .with_layer(&warnings::Warnings)
        .build();
    Ok(Connection {
        client,
        server,
        budget: patience.budget(),
    })
}

#[derive(Clone)]
struct Kind {
    resource: ApiResource,
    namespaced: bool,
}

/// An API server, as [`ClusterApi`].
pub struct KubeApi {
    client: Client,
    server: String,
    /// How long failing requests are retried.
    budget: Budget,
    kinds: Mutex<HashMap<(String, String), Kind>>,
}

impl KubeApi {
    /// The cluster `connection` reaches.
    pub fn new(connection: Connection) -> KubeApi {
        KubeApi {
            client: connection.client,
            server: connection.server,
            budget: connection.budget,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    async fn kind(&self, api_version: &str, kind: &str) -> Result<Kind> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(k) = self.kinds.lock().await.get(&key) {
            return Ok(k.clone());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            Err(e) => {
                // By the code, not the reason: an API group that is not served answers a plain-text
                // "404 page not found", which carries no NotFound reason.
                let missing = matches!(&e, kube::Error::Discovery(_))
                    || matches!(&e, kube::Error::Api(s) if s.code == 404);
                if missing {
                    return Err(NotServed {
                        api_version: api_version.to_string(),
                        kind: kind.to_string(),
                        server: self.server.clone(),
                    }
                    .into());
                }
                return Err(ClusterError::Refused(format!(
                    "cannot look up {kind} in {api_version} on {}: {}",
                    self.server,
                    describe(&e)
                ))
                .into());
            }
        };
        let k = Kind {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        };
        self.kinds.lock().await.insert(key, k.clone());
        Ok(k)
    }

    async fn api(&self, r: &ObjectRef) -> Result<Api<DynamicObject>> {
        let k = self.kind(&r.api_version, &r.kind).await?;
        Ok(match (&r.namespace, k.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &k.resource),
            (None, false) => Api::all_with(self.client.clone(), &k.resource),
            (Some(_), false) => bail!(
                "{r}: {} is cluster-scoped but a namespace was given",
                r.kind
            ),
            (None, true) => bail!("{r}: {} is namespaced but no namespace was given", r.kind),
        })
    }
}

/// A listed object as JSON; list items carry no apiVersion/kind of their own.
fn listed(encoded: serde_json::Result<Value>, api_version: &str, kind: &str) -> Result<Value> {
    let mut v = encoded.context("cannot encode a live object")?;
    v["apiVersion"] = Value::String(api_version.to_string());
    v["kind"] = Value::String(kind.to_string());
    Ok(v)
}

fn encoded<T: serde::Serialize>(obj: T) -> Result<Value> {
    serde_json::to_value(obj).context("cannot encode an object the API server returned")
}

/// What kind of failure a client error is.
fn failure(e: &kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) if s.is_conflict() => Failure::Conflict,
        kube::Error::Api(s) if s.code == 404 => Failure::NotFound,
        kube::Error::Api(s) if s.is_invalid() => match immutable_fields(s) {
            Some(fields) => Failure::Immutable(fields),
            None => Failure::Refused,
        },
        // Admission comes before anything is written: a webhook that could not be called refused.
        kube::Error::Api(s) if s.code < 500 || s.message.contains("failed calling webhook") => {
            Failure::Refused
        }
        kube::Error::Api(_) => Failure::Failed,
        _ => Failure::Lost,
    }
}

fn api_error(e: &kube::Error) -> anyhow::Error {
    ApiError::new(failure(e), describe(e)).into()
}

/// The fields an Invalid status says are immutable, if that is what it says.
fn immutable_fields(s: &kube::core::Status) -> Option<Vec<String>> {
    let causes = &s.details.as_ref()?.causes;
    let fields: Vec<String> = causes
        .iter()
        .filter(|c| c.message.contains("immutable"))
        .map(|c| c.field.clone())
        .collect();
    if fields.is_empty() && s.message.contains("immutable") {
        return Some(vec![]);
    }
    (!fields.is_empty()).then_some(fields)
}

fn decoded(r: &ObjectRef, obj: &Value) -> Result<DynamicObject> {
    serde_json::from_value(obj.clone())
        .with_context(|| format!("{r}: the object to write does not decode"))
}

#[async_trait]
impl ClusterApi for KubeApi {
    fn server(&self) -> &str {
        &self.server
    }

    fn requests_until(&self, deadline: Option<Instant>, interrupt: Option<Interrupt>) {
        self.budget.until(deadline, interrupt);
    }

    async fn served(&self, api_version: &str, kind: &str) -> Result<()> {
        self.kind(api_version, kind).await.map(|_| ())
    }

    async fn get(&self, r: &ObjectRef) -> Result<Option<Value>> {
        let api = self.api(r).await?;
        match api.get_opt(&r.name).await {
            Ok(obj) => obj.map(encoded).transpose(),
            // The kind stopped being served since it was looked up (its CRD was deleted, and its
            // objects with it): the API server answers a plain "404 page not found".
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(api_error(&e)),
        }
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        selector: &str,
        listing: Listing,
        each: &mut (dyn FnMut(Value) -> Result<()> + Send),
    ) -> Result<bool> {
        let k = match self.kind(api_version, kind).await {
            Ok(k) => k,
            Err(e) if e.is::<NotServed>() => return Ok(false),
            Err(e) => return Err(e),
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &k.resource);
        let mut params = ListParams::default().limit(NAMES_PAGE);
        if !selector.is_empty() {
            params = params.labels(selector);
        }
        loop {
            // Each item is encoded as JSON as it is taken, so a page is never held twice.
            let next = match listing {
                Listing::Metadata => {
                    let page = api
                        .list_metadata(&params)
                        .await
                        .map_err(|e| api_error(&e))?;
                    for mut o in page.items {
                        o.metadata.managed_fields = None;
                        each(listed(serde_json::to_value(o), api_version, kind)?)?;
                    }
                    page.metadata.continue_
                }
                Listing::Whole | Listing::Slim => {
                    let page = api.list(&params).await.map_err(|e| api_error(&e))?;
                    for mut o in page.items {
                        if listing == Listing::Slim {
                            o.metadata.managed_fields = None;
                        }
                        each(listed(serde_json::to_value(o), api_version, kind)?)?;
                    }
                    page.metadata.continue_
                }
            };
            match next {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(true),
            }
        }
    }

    async fn apply(
        &self,
        r: &ObjectRef,
        body: &Value,
        manager: &str,
        dry_run: bool,
    ) -> Result<Value> {
        let api = self.api(r).await?;
        let mut params = PatchParams::apply(manager).force();
        if dry_run {
            params = params.dry_run();
        }
        match api.patch(&r.name, &params, &Patch::Apply(body)).await {
            Ok(obj) => encoded(obj),
            Err(e) => Err(api_error(&e)),
        }
    }

    async fn merge_patch(&self, r: &ObjectRef, patch: &Value, manager: &str) -> Result<Value> {
        let api = self.api(r).await?;
        let params = PatchParams {
            field_manager: Some(manager.to_string()),
            ..Default::default()
        };
        match api.patch(&r.name, &params, &Patch::Merge(patch)).await {
            Ok(obj) => encoded(obj),
            Err(e) => Err(api_error(&e)),
        }
    }

    async fn create(&self, r: &ObjectRef, obj: &Value) -> Result<Value> {
        let api = self.api(r).await?;
        match api.create(&PostParams::default(), &decoded(r, obj)?).await {
            Ok(obj) => encoded(obj),
            Err(e) => Err(api_error(&e)),
        }
    }

    async fn replace(&self, r: &ObjectRef, obj: &Value, manager: Option<&str>) -> Result<Value> {
        let api = self.api(r).await?;
        let params = PostParams {
            field_manager: manager.map(str::to_string),
            ..Default::default()
        };
        match api.replace(&r.name, &params, &decoded(r, obj)?).await {
            Ok(obj) => encoded(obj),
            Err(e) => Err(api_error(&e)),
        }
    }

    async fn delete(&self, r: &ObjectRef) -> Result<Deleted> {
        let api = self.api(r).await?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(&r.name, &params).await {
            // The object while it is being deleted (finalizers, a grace period: it carries its
            // deletion timestamp); the object as it was, or a success status, when it was deleted
            // at once.
            Ok(either) => Ok(either.either(
                |o| match o.metadata.deletion_timestamp {
                    Some(_) => Deleted::Started {
                        uid: o.metadata.uid,
                    },
                    None => Deleted::Gone,
                },
                |status| {
                    if status.is_success() {
                        Deleted::Gone
                    } else {
                        Deleted::Started { uid: None }
                    }
                },
            )),
            // Not found, or its kind no longer served (a plain 404): gone either way.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Deleted::AlreadyGone),
            Err(e) => Err(api_error(&e)),
        }
    }

    async fn watch(&self, r: &ObjectRef, resource_version: &str, timeout_secs: u32) -> Watched {
        let pause = || tokio::time::sleep(std::time::Duration::from_millis(250));
        let Ok(api) = self.api(r).await else {
            pause().await;
            return Watched::Nothing;
        };
        // Bounded on the server side too, so a silent connection never outlives the deadline by much.
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", r.name))
            .timeout(timeout_secs);
        let Ok(stream) = api.watch(&params, resource_version).await else {
            // Watching is not possible: fall back to reading again shortly.
            pause().await;
            return Watched::Nothing;
        };
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                    return serde_json::to_value(o).map_or(Watched::Nothing, Watched::Changed);
                }
                Ok(WatchEvent::Bookmark(_)) => {}
                Ok(WatchEvent::Deleted(_)) => return Watched::Deleted,
                // The version is too old, or the stream broke: read again after a pause.
                Ok(WatchEvent::Error(_)) | Err(_) => {
                    pause().await;
                    return Watched::Nothing;
                }
            }
        }
        Watched::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn invalid(message: &str, causes: &[(&str, &str)]) -> Status {
        serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 422, "reason": "Invalid", "message": message,
            "details": {"causes": causes.iter().map(|(f, m)| serde_json::json!({"field": f, "message": m, "reason": "FieldValueInvalid"})).collect::<Vec<_>>()}
        }))
        .expect("status")
    }

    #[test]
    fn immutable_field_errors_name_the_fields() {
        let s = invalid(
            "Deployment.apps \"x\" is invalid: spec.selector: Invalid value: field is immutable",
            &[("spec.selector", "Invalid value: ...: field is immutable")],
        );
        assert_eq!(
            failure(&kube::Error::Api(Box::new(s))),
            Failure::Immutable(vec!["spec.selector".to_string()])
        );
    }

    #[test]
    fn other_invalid_errors_are_not_replacements() {
        let s = invalid(
            "spec.ports[0].port: Invalid value: 0",
            &[("spec.ports[0].port", "must be between 1 and 65535")],
        );
        assert_eq!(failure(&kube::Error::Api(Box::new(s))), Failure::Refused);
    }
}
