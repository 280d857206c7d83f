//! The floor of a fresh apply: raw server-side apply of the same objects, N in flight.
//!
//! `scripts/bench scale` runs it beside `vz` and kubectl on the objects `vz render` prints, to
//! measure what creating them costs the API server when nothing else is done: no plan, no state,
//! no read-back, no waits but those the server itself imposes. Each object is one `PATCH` with
//! `application/apply-patch+yaml` (the only request per object); a request the server refuses for
//! a reason that passes (a namespace or a kind not served yet, a webhook whose server is not up
//! yet) is retried after 100 ms, as a kubectl user's loop would.
//!
//! ```text
//! cargo run --release --example ssa_floor -- apply [--in-flight N] PHASE.yaml...
//! cargo run --release --example ssa_floor -- delete PHASE.yaml...
//! ```
//!
//! `apply` applies each file in turn (a phase), waiting between phases until every
//! CustomResourceDefinition of the phase before is established and served. Within a phase the
//! cluster-scoped objects go first (namespaces before the rest), then the namespaced ones, `N`
//! in flight (default 10, `vz`'s default `--parallelism`). `delete` deletes the files' namespaces,
//! cluster-scoped objects (the CRDs with them) and the objects they put in other namespaces, N in
//! flight, and waits until they are gone.
//!
//! Its requests carry the User-Agent `vz-ssa-floor`, so the bench counts them apart from `vz`'s.
//! It prints one line: objects, seconds, requests, retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use kube::{Client, Config};
use serde_json::Value;
use tokio::sync::Mutex;

/// How long one object's retries may go on before the run fails.
const PATIENCE: Duration = Duration::from_secs(300);
/// The pause between two tries of one request.
const PAUSE: Duration = Duration::from_millis(100);

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let mut in_flight = 10usize;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        if a == "--in-flight" {
            let n = args.next().context("--in-flight needs a number")?;
            in_flight = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("--in-flight {n}: not a positive number"))?;
        } else {
            files.push(a);
        }
    }
    if !matches!(mode.as_str(), "apply" | "delete") || files.is_empty() {
        bail!(
            "usage: ssa_floor apply [--in-flight N] PHASE.yaml... | ssa_floor delete PHASE.yaml..."
        );
    }
    let mut phases = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {f}"))?;
        // Document by document: a stream of thousands exceeds the parser's budget for one.
        let mut docs = Vec::new();
        for (i, doc) in text.split("\n---\n").enumerate() {
            let doc: Option<Value> = serde_saphyr::from_str(doc)
                .map_err(|e| anyhow::anyhow!("{f}: document {} is not YAML: {e}", i + 1))?;
            docs.extend(doc.filter(|d| d.get("kind").is_some()));
        }
        phases.push(docs);
    }
    let mut config = Config::infer()
        .await
        .context("cannot load a Kubernetes configuration")?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static("vz-ssa-floor"),
    ));
    let floor = Arc::new(Floor {
        client: Client::try_from(config).context("cannot create a client")?,
        kinds: Mutex::new(HashMap::new()),
        requests: AtomicU64::new(0),
        retries: AtomicU64::new(0),
    });
    let start = Instant::now();
    let objects: usize = phases.iter().map(Vec::len).sum();
    if mode == "apply" {
        for (i, phase) in phases.iter().enumerate() {
            if i > 0 {
                floor.await_crds(&phases[i - 1]).await?;
            }
            let (cluster, namespaced): (Vec<&Value>, Vec<&Value>) = phase
                .iter()
                .partition(|d| d.pointer("/metadata/namespace").is_none());
            let (namespaces, others): (Vec<&Value>, Vec<&Value>) = cluster
                .into_iter()
                .partition(|d| d["kind"] == "Namespace" && d["apiVersion"] == "v1");
            for group in [namespaces, others, namespaced] {
                floor.clone().each(group, in_flight, Floor::apply).await?;
            }
        }
    } else {
        // The namespaces, the cluster-scoped objects, and what lives in namespaces of others.
        let namespaces: Vec<&str> = phases
            .iter()
            .flatten()
            .filter(|d| d["kind"] == "Namespace" && d["apiVersion"] == "v1")
            .map(name)
            .collect();
        let doomed: Vec<&Value> = phases
            .iter()
            .flatten()
            .filter(
                |d| match d.pointer("/metadata/namespace").and_then(Value::as_str) {
                    Some(ns) => !namespaces.contains(&ns),
                    None => true,
                },
            )
            .collect();
        floor
            .clone()
            .each(doomed.clone(), in_flight, Floor::delete)
            .await?;
        floor
            .clone()
            .each(doomed, in_flight, Floor::await_gone)
            .await?;
    }
    println!(
        "objects {objects} seconds {:.2} requests {} retries {}",
        start.elapsed().as_secs_f64(),
        floor.requests.load(Ordering::Relaxed),
        floor.retries.load(Ordering::Relaxed)
    );
    Ok(())
}

struct Floor {
    client: Client,
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// What a request's answer means for `doc`: done (`None`), refused for now (`Some(why)`: to be
/// tried again) when its status is one of `passing`, or an error.
fn outcome<T>(doc: &Value, answer: kube::Result<T>, passing: &[u16]) -> Result<Option<String>> {
    match answer {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if passing.contains(&s.code) => Ok(Some(s.message)),
        Err(e) => Err(e).with_context(|| format!("{} {}", doc["kind"], name(doc))),
    }
}

type Step =
    for<'a> fn(&'a Floor, &'a Value) -> futures::future::BoxFuture<'a, Result<Option<String>>>;

impl Floor {
    /// Runs `step` on each of `docs`, `in_flight` at a time, retrying what it says may pass.
    async fn each(self: Arc<Self>, docs: Vec<&Value>, in_flight: usize, step: Step) -> Result<()> {
        let this = &self;
        let mut runs = futures::stream::iter(docs.into_iter().map(|d| async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                match step(this, d).await? {
                    None => return Ok(()),
                    Some(why) if Instant::now() > deadline => {
                        bail!(
                            "{} {}: still refused after {PATIENCE:?}: {why}",
                            d["kind"],
                            name(d)
                        )
                    }
                    Some(_) => {
                        this.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(PAUSE).await;
                    }
                }
            }
        }))
        .buffer_unordered(in_flight);
        while let Some(done) = runs.next().await {
            done?;
        }
        Ok(())
    }

    /// The API of `doc`'s kind, or why it is not served yet.
    async fn api(&self, doc: &Value) -> Result<std::result::Result<Api<DynamicObject>, String>> {
        let api_version = doc["apiVersion"]
            .as_str()
            .context("an object without apiVersion")?;
        let kind = doc["kind"].as_str().context("an object without kind")?;
        let key = (api_version.to_string(), kind.to_string());
        let found = self.kinds.lock().await.get(&key).cloned();
        let (resource, namespaced) = match found {
            Some(k) => k,
            None => {
                let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                let gvk = GroupVersionKind::gvk(group, version, kind);
                self.requests.fetch_add(1, Ordering::Relaxed);
                match kube::discovery::pinned_kind(&self.client, &gvk).await {
                    Ok((resource, caps)) => {
                        let k = (resource, caps.scope == Scope::Namespaced);
                        self.kinds.lock().await.insert(key, k.clone());
                        k
                    }
                    Err(e) => return Ok(Err(format!("{api_version} {kind} not served: {e}"))),
                }
            }
        };
        let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
        Ok(Ok(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        }))
    }

    fn apply<'a>(
        &'a self,
        doc: &'a Value,
    ) -> futures::future::BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let api = match self.api(doc).await? {
                Ok(api) => api,
                Err(why) => return Ok(Some(why)),
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let params = PatchParams::apply("vz-ssa-floor");
            let answer = api.patch(name(doc), &params, &Patch::Apply(doc)).await;
            // Refusals that pass: a namespace not there yet, a kind not yet served, a webhook
            // whose server does not answer yet, the server busy.
            outcome(doc, answer, &[404, 409, 429, 500, 503])
        })
    }

    fn delete<'a>(
        &'a self,
        doc: &'a Value,
    ) -> futures::future::BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let api = match self.api(doc).await? {
                Ok(api) => api,
                Err(_) => return Ok(None),
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            match api.delete(name(doc), &DeleteParams::background()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                answer => outcome(doc, answer, &[409, 429, 500, 503]),
            }
        })
    }

    fn await_gone<'a>(
        &'a self,
        doc: &'a Value,
    ) -> futures::future::BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let api = match self.api(doc).await? {
                Ok(api) => api,
                Err(_) => return Ok(None),
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            match api.get_opt(name(doc)).await {
                Ok(None) => Ok(None),
                Ok(Some(_)) => {
                    // Namespaces take seconds to empty: poll them less often.
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok(Some("still there".into()))
                }
                Err(e) => Err(e).with_context(|| format!("{} {}", doc["kind"], name(doc))),
            }
        })
    }

    /// Waits until every CRD of `phase` is established and its kind served.
    async fn await_crds(&self, phase: &[Value]) -> Result<()> {
        for crd in phase
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
        {
            let group = crd
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = crd
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
            let Some(version) = versions
                .and_then(|v| v.iter().find(|v| v["served"] == true))
                .and_then(|v| v["name"].as_str())
            else {
                continue;
            };
            let probe = serde_json::json!({
                "apiVersion": format!("{group}/{version}"),
                "kind": kind,
                "metadata": {"name": "probe"},
            });
            let deadline = Instant::now() + PATIENCE;
            while let Err(why) = self.api(&probe).await? {
                if Instant::now() > deadline {
                    bail!("{why}");
                }
                self.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(PAUSE).await;
            }
        }
        Ok(())
    }
}

fn name(doc: &Value) -> &str {
    doc.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}
