//! Riding out the API server's transient failures: a restart, an overloaded server, etcd or an
//! admission webhook that does not answer for a moment.
//!
//! Every request `vz` makes to the API server goes through [`Patience`], a layer of the client's
//! stack. A request that fails in a way that passes by itself is sent again, backing off from
//! 100 ms to 2 s (with jitter), until the run's deadline (`--timeout`; [`DEFAULT_PATIENCE`] from
//! the first failure when no run set one):
//!
//! - the connection failed, once the server had answered before (before that, a failure to connect
//!   means a wrong address or a cluster that is down, and is said at once). Before it is sent again,
//!   the server's `/readyz` must answer: a restarted API server serves requests before its custom
//!   resources are, and would answer "not found" for objects that exist;
//! - HTTP 429, 503 and 504, following `Retry-After` when the server gives one;
//! - HTTP 500 whose message says that etcd or an admission webhook could not be reached in time.
//!
//! A request that still fails carries the last answer, with how long `vz` kept trying. No attempt
//! outlives the deadline (one sent in its last 5 s, or after it, gets 5 s): a request the API server
//! holds (etcd stalled) ends when the run's time is up, and the caller's error names the object. Requests are safe to send twice: reads, server-side
//! applies and merge patches are idempotent, a repeated delete finds the object gone, and an update
//! carries the `resourceVersion` it was based on.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use kube::client::Body;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::interrupt::Interrupt;

/// How long a failing request is retried, and an attempt may take, when no run set a deadline.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

/// How long a failing call of an admission webhook is retried (at most: the run's deadline comes
/// first when it is sooner).
pub const WEBHOOK_PATIENCE: Duration = Duration::from_secs(20);

/// How long a request sent when the run's time is (nearly) up may take at least.
const LAST_REQUEST: Duration = Duration::from_secs(5);

/// The first pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between attempts (a longer `Retry-After` is followed, within the deadline).
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The least time between two notices of failed requests.
const NOTICE_GAP: Duration = Duration::from_secs(10);

/// The most of a failed answer read to tell whether it is transient (Status documents are small).
const MAX_STATUS_BYTES: usize = 64 * 1024;

/// The body of an answer: as the server sent it, or re-made from the bytes read to judge it.
pub type AnswerBody<B> = Either<B, Full<Bytes>>;

/// What the layer and the connection using it share: whether the server has answered yet, and the
/// run's deadline.
#[derive(Debug)]
struct Shared {
    server: String,
    reached: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    /// Ctrl-C of the run: a request waiting to be sent again gives up at once.
    interrupt: Mutex<Option<Interrupt>>,
    /// The server could not be reached, was said so, and has not answered since.
    down: AtomicBool,
    /// When a failure was last said (at most one notice every [`NOTICE_GAP`]).
    noticed: Mutex<Option<Instant>>,
}

/// The handle through which a run sets how long requests may be retried; cloned from the layer.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Shared>);

impl Budget {
    /// Retry failing requests, and let each attempt run, until `deadline` (with `None`,
    /// [`DEFAULT_PATIENCE`] from a request's first failure); stop retrying when `interrupt` trips.
    pub fn until(&self, deadline: Option<Instant>, interrupt: Option<Interrupt>) {
        if let Ok(mut d) = self.0.deadline.lock() {
            *d = deadline;
        }
        if let Ok(mut i) = self.0.interrupt.lock() {
            *i = interrupt;
        }
    }

    fn interrupt(&self) -> Interrupt {
        self.0
            .interrupt
            .lock()
            .ok()
            .and_then(|i| i.clone())
            .unwrap_or_else(Interrupt::never)
    }

    fn deadline(&self) -> Option<Instant> {
        self.0.deadline.lock().ok().and_then(|d| *d)
    }
}

/// The layer that retries transient failures of the requests to `server`.
#[derive(Debug, Clone)]
pub struct Patience {
    budget: Budget,
}

impl Patience {
    /// A layer for the API server at `server` (named in what it says).
    pub fn new(server: &str) -> Patience {
        Patience {
            budget: Budget(Arc::new(Shared {
                server: server.to_string(),
                reached: AtomicBool::new(false),
                deadline: Mutex::new(None),
                interrupt: Mutex::new(None),
                down: AtomicBool::new(false),
                noticed: Mutex::new(None),
            })),
        }
    }

    /// The handle that sets the deadline of the requests through this layer.
    pub fn budget(&self) -> Budget {
        self.budget.clone()
    }
}

/// The stack below the layer, made cloneable by a buffer so that one request can be sent again from
/// its own task while others go on. `F` is the stack's response future.
type Inner<F> = tower::buffer::Buffer<Request<Body>, F>;

impl<S, B> Layer<S> for Patience
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
{
    type Service = Retrying<S::Future>;

    fn layer(&self, inner: S) -> Retrying<S::Future> {
        Retrying {
            inner: tower::buffer::Buffer::new(inner, 1024),
            budget: self.budget.clone(),
        }
    }
}

/// The service [`Patience`] makes.
pub struct Retrying<F> {
    inner: Inner<F>,
    budget: Budget,
}

impl<F: Send + 'static> Clone for Retrying<F> {
    fn clone(&self) -> Self {
        Retrying {
            inner: self.inner.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl<F, B, E> Service<Request<Body>> for Retrying<F>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<AnswerBody<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The buffer handle that was made ready is the one to call; a clone takes its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(send(inner, self.budget.clone(), req))
    }
}

/// An attempt that did not get through, and why.
enum Failed<B> {
    /// No answer: the connection failed.
    Connection(BoxError),
    /// A transient error answer, with its body read (to be handed on if `vz` gives up), what it
    /// said, and how long such a failure is worth waiting out.
    Answer(http::response::Parts, Bytes, String, Transient),
    /// Not transient: hand it on.
    Done(Result<Response<AnswerBody<B>>, BoxError>),
}

async fn send<F, B, E>(
    mut inner: Inner<F>,
    budget: Budget,
    req: Request<Body>,
) -> Result<Response<AnswerBody<B>>, BoxError>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let shared = &budget.0;
    let mut req = req;
    let mut pause = FIRST_PAUSE;
    let mut attempts = 0u32;
    let mut first_failure: Option<Instant> = None;
    // The last transient failure, handed on if the next attempt runs out of time.
    let mut last: Option<Failed<B>> = None;
    loop {
        let spare = copy(&req);
        let deadline = budget.deadline();
        attempts += 1;
        let attempt = async { inner.ready().await?.call(req).await };
        // A request sent when the time is nearly or already up (the read that says why a wait
        // failed, say) still gets a moment.
        let bound = match deadline {
            Some(d) => d.max(Instant::now() + LAST_REQUEST),
            None => Instant::now() + DEFAULT_PATIENCE,
        };
        let answer = tokio::time::timeout_at(bound, attempt).await;
        let failed = match answer {
            Err(_) => {
                let cut = NoAnswer {
                    server: shared.server.clone(),
                    run_deadline: deadline.is_some(),
                };
                return match last {
                    Some(failed) => give_up(failed, attempts, first_failure, Some(&cut)),
                    None => Err(Box::new(cut)),
                };
            }
            Ok(Err(e)) if shared.reached.load(Ordering::SeqCst) => Failed::Connection(e),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(resp)) => {
                shared.reached.store(true, Ordering::SeqCst);
                if shared.down.swap(false, Ordering::SeqCst) {
                    eprintln!("The API server at {} answers again.", shared.server);
                }
                judge(resp).await
            }
        };
        let (why, retry_after, transient) = match &failed {
            Failed::Done(_) => return give_up(failed, attempts, first_failure, None),
            Failed::Connection(e) => (connection_failure(e.as_ref()), None, Transient::Server),
            Failed::Answer(parts, _, why, t) => (why.clone(), retry_after(parts), *t),
        };
        let started = *first_failure.get_or_insert_with(Instant::now);
        let mut give_up_at = deadline.unwrap_or(started + DEFAULT_PATIENCE);
        if transient == Transient::Webhook {
            give_up_at = give_up_at.min(started + WEBHOOK_PATIENCE);
        }
        let wait = retry_after.map_or(pause, |r| r.max(pause));
        let Some(next) = spare.filter(|_| Instant::now() + wait < give_up_at) else {
            return give_up(failed, attempts, first_failure, None);
        };
        let unreachable = matches!(failed, Failed::Connection(_));
        if notice_due(shared, unreachable) {
            eprintln!(
                "The API server at {} failed a request ({why}); vz tries again for up to {}s.",
                shared.server,
                give_up_at
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            );
        }
        let interrupt = budget.interrupt();
        let pause_over = async {
            tokio::time::sleep(jittered(wait)).await;
            if unreachable {
                until_ready(&mut inner, give_up_at).await;
            }
        };
        tokio::select! {
            () = pause_over => {}
            () = interrupt.tripped() => {
                return Err(format!(
                    "interrupted while waiting for the API server at {} ({why})",
                    shared.server
                )
                .into());
            }
        }
        pause = (pause * 2).min(MAX_PAUSE);
        req = next;
        last = Some(failed);
    }
}

/// Whether to say that a request failed: once when the server becomes unreachable, else at most
/// once every [`NOTICE_GAP`] (many requests fail together).
fn notice_due(shared: &Shared, unreachable: bool) -> bool {
    if unreachable && shared.down.swap(true, Ordering::SeqCst) {
        return false;
    }
    let Ok(mut noticed) = shared.noticed.lock() else {
        return false;
    };
    if !unreachable && noticed.is_some_and(|t| t.elapsed() < NOTICE_GAP) {
        return false;
    }
    *noticed = Some(Instant::now());
    true
}

/// Hand on what the last attempt got; a transient error answer says how long `vz` kept trying.
fn give_up<B>(
    failed: Failed<B>,
    attempts: u32,
    first_failure: Option<Instant>,
    cut: Option<&NoAnswer>,
) -> Result<Response<AnswerBody<B>>, BoxError> {
    let tried = if attempts > 1 {
        let secs = first_failure.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let last = cut.map_or(String::new(), |c| format!("; then {c}"));
        format!(" (vz tried {attempts} times over {secs:.0}s{last})")
    } else {
        String::new()
    };
    match failed {
        Failed::Done(out) => out,
        Failed::Connection(e) if attempts > 1 => Err(format!("{e}{tried}").into()),
        Failed::Connection(e) => Err(e),
        Failed::Answer(parts, bytes, _, _) => {
            let body = with_note(&bytes, &tried);
            Ok(Response::from_parts(parts, Either::Right(Full::new(body))))
        }
    }
}

/// A Status document's `message` with `note` appended (the bytes as they are when not a Status).
fn with_note(bytes: &Bytes, note: &str) -> Bytes {
    let Ok(mut status) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return bytes.clone();
    };
    let Some(message) = status.get_mut("message") else {
        return bytes.clone();
    };
    let text = format!("{}{note}", message.as_str().unwrap_or_default());
    *message = serde_json::Value::String(text);
    serde_json::to_vec(&status).map_or_else(|_| bytes.clone(), Bytes::from)
}

/// Whether an answer is a transient failure (its body read to tell), or to be handed on.
async fn judge<B>(resp: Response<B>) -> Failed<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let code = resp.status();
    let candidate = matches!(
        code,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    );
    if !candidate {
        return Failed::Done(Ok(resp.map(Either::Left)));
    }
    let (parts, body) = resp.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_STATUS_BYTES)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => return Failed::Connection(e),
    };
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|s| {
            s.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
    if let Some(t) = transient(code, &message) {
        let why = format!("HTTP {}: {}", code.as_u16(), first_line(&message));
        Failed::Answer(parts, bytes, why, t)
    } else {
        Failed::Done(Ok(Response::from_parts(
            parts,
            Either::Right(Full::new(bytes)),
        )))
    }
}

/// A failure that may pass by itself, and how long it is worth waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// The API server (or etcd behind it) is down, overloaded or slow: waited out until the run's
    /// deadline.
    Server,
    /// An admission webhook could not be called: waited out for [`WEBHOOK_PATIENCE`], long enough
    /// for its server to restart, short enough that a broken one is reported promptly.
    Webhook,
}

/// Whether an error answer with this code and message passes by itself, and of which kind.
pub fn transient(code: StatusCode, message: &str) -> Option<Transient> {
    match code {
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Some(Transient::Server),
        // An internal error is transient when etcd or a webhook could not be reached in time, not
        // when the server failed on the request itself.
        StatusCode::INTERNAL_SERVER_ERROR if message.contains("failed calling webhook") => {
            Some(Transient::Webhook)
        }
        StatusCode::INTERNAL_SERVER_ERROR => [
            "etcdserver:",
            "context deadline exceeded",
            "code = Unavailable",
            "connection refused",
            "the server is currently unable",
            "Timeout: request did not complete",
        ]
        .iter()
        .any(|m| message.contains(m))
        .then_some(Transient::Server),
        _ => None,
    }
}

/// What became of a connection, in a few words (the full chain is kept for the final error).
fn connection_failure(e: &(dyn std::error::Error + 'static)) -> String {
    let full = crate::cluster::describe_source(e);
    let lower = full.to_lowercase();
    if lower.contains("connection refused") {
        "connection refused".into()
    } else if [
        "close_notify",
        "connection reset",
        "closed",
        "broken pipe",
        "eof",
    ]
    .iter()
    .any(|m| lower.contains(m))
    {
        "connection lost".into()
    } else {
        full
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The server's `Retry-After`, in seconds, if it gave one.
fn retry_after(parts: &http::response::Parts) -> Option<Duration> {
    let secs: u64 = parts
        .headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// `pause` give or take a fifth, so that many requests failing together do not return together.
fn jittered(pause: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let fifth = pause / 5;
    let spread = u32::try_from(fifth.as_millis().max(1)).unwrap_or(u32::MAX);
    pause - fifth + Duration::from_millis(u64::from(nanos % (2 * spread)))
}

/// Wait, until `until` at the latest, for the server's `/readyz` to answer 200 — or anything but a
/// server error (a server that does not let `vz` read it is taken at its word that it is up).
async fn until_ready<F, B, E>(inner: &mut Inner<F>, until: Instant)
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError>,
{
    let mut pause = FIRST_PAUSE;
    while Instant::now() < until {
        let Ok(probe) = Request::get("/readyz").body(Body::empty()) else {
            return;
        };
        let answer =
            tokio::time::timeout_at(until, async { inner.ready().await?.call(probe).await }).await;
        match answer {
            Ok(Ok(resp)) if !resp.status().is_server_error() => return,
            Err(_) => return,
            _ => {}
        }
        tokio::time::sleep(jittered(pause)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// A copy of `req` to send again, when its body is held in memory (every request `vz` makes).
fn copy(req: &Request<Body>) -> Option<Request<Body>> {
    let body = req.body().try_clone()?;
    let mut out = Request::new(body);
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    *out.extensions_mut() = req.extensions().clone();
    Some(out)
}

/// No answer before the deadline.
#[derive(Debug, thiserror::Error)]
#[error("{}", if *run_deadline {
    format!("the API server at {server} gave no answer before the run's time was up (--timeout)")
} else {
    format!("the API server at {server} gave no answer in {}s", DEFAULT_PATIENCE.as_secs())
})]
pub struct NoAnswer {
    server: String,
    run_deadline: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_and_webhook_trouble_is_transient_and_a_broken_request_is_not() {
        let internal = StatusCode::INTERNAL_SERVER_ERROR;
        let server = Some(Transient::Server);
        assert_eq!(transient(internal, "etcdserver: request timed out"), server);
        assert_eq!(
            transient(
                internal,
                "Internal error occurred: failed calling webhook \"validation.istio.io\": Post \"https://istiod.istio-system.svc:443/validate?timeout=10s\": context deadline exceeded"
            ),
            Some(Transient::Webhook)
        );
        let broken =
            "Internal error occurred: converting (v1.Pod) to (core.Pod): unknown conversion";
        assert_eq!(transient(internal, broken), None);
        assert_eq!(transient(StatusCode::SERVICE_UNAVAILABLE, ""), server);
        assert_eq!(
            transient(StatusCode::TOO_MANY_REQUESTS, "slow down"),
            server
        );
        let denied = "admission webhook \"validation.istio.io\" denied the request";
        assert_eq!(transient(StatusCode::BAD_REQUEST, denied), None);
        let modified = "the object has been modified";
        assert_eq!(transient(StatusCode::CONFLICT, modified), None);
    }

    #[test]
    fn a_status_given_up_on_says_how_long_vz_tried() {
        let status = br#"{"kind":"Status","code":500,"message":"etcdserver: request timed out"}"#;
        let noted = with_note(&Bytes::from_static(status), " (vz tried 7 times over 12s)");
        let v: serde_json::Value = serde_json::from_slice(&noted).expect("json");
        assert_eq!(
            v["message"],
            "etcdserver: request timed out (vz tried 7 times over 12s)"
        );
        assert_eq!(v["code"], 500);
        // Not a Status: handed on unchanged.
        let plain = Bytes::from_static(b"upstream connect error");
        assert_eq!(with_note(&plain, " (noted)"), plain);
    }

    #[test]
    fn pauses_spread_within_a_fifth() {
        for _ in 0..100 {
            let p = jittered(Duration::from_secs(1));
            assert!(
                p >= Duration::from_millis(800) && p <= Duration::from_millis(1200),
                "{p:?}"
            );
        }
    }
}
