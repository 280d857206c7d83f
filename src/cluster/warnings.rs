//! What the API server warns about: the `Warning` headers of its answers (a deprecated field or API,
//! a schema it does not fully understand), which kube's client drops. [`Warnings`] is a layer of the
//! client's stack that keeps each one with the object its request was about; the command prints
//! them when it ends ([`take`]), as kubectl prints them, so a user learns from a plan's dry runs or
//! an apply what the next Kubernetes release may refuse.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

/// Every warning of this process: its text and the objects it was said of, in the order first said.
static SAID: Mutex<Vec<(String, Vec<String>)>> = Mutex::new(Vec::new());

/// The warnings said so far (each text once, with the objects it was said of), forgotten.
pub fn take() -> Vec<(String, Vec<String>)> {
    SAID.lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

/// The text of one `Warning` header: `299 - "text"` (the quotes' escapes undone), or the value as
/// it is when it has another shape.
pub fn text_of(value: &str) -> String {
    let rest = value
        .strip_prefix("299")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('-'))
        .map(str::trim_start);
    let Some(quoted) = rest.and_then(|r| r.strip_prefix('"')) else {
        return value.trim().to_string();
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// The object a request path is about, as `resource namespace/name` (`services ns/web`,
/// `customresourcedefinitions gateways.networking.istio.io`); the path itself when it is not an
/// object's.
pub fn object_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Past `api/v1` or `apis/<group>/<version>`.
    let rest = match parts.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return path.to_string(),
    };
    match rest {
        ["namespaces", ns, resource, name, ..] => format!("{resource} {ns}/{name}"),
        ["namespaces", name] => format!("namespaces {name}"),
        [resource, name, ..] => format!("{resource} {name}"),
        [resource] => resource.to_string(),
        _ => path.to_string(),
    }
}

/// Keep the warnings of one answer.
fn note(path: &str, headers: &HeaderMap) {
    let texts: Vec<String> = headers
        .get_all(http::header::WARNING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(text_of)
        .filter(|t| !t.is_empty())
        .collect();
    if texts.is_empty() {
        return;
    }
    let object = object_of(path);
    let Ok(mut said) = SAID.lock() else {
        return;
    };
    for text in texts {
        match said.iter_mut().find(|(t, _)| *t == text) {
            Some((_, objects)) => {
                if !objects.contains(&object) {
                    objects.push(object.clone());
                }
            }
            None => said.push((text, vec![object.clone()])),
        }
    }
}

/// The lines a command ends with: each warning once, with the objects it was said of.
pub fn lines(said: &[(String, Vec<String>)]) -> Vec<String> {
    said.iter()
        .map(|(text, objects)| {
            let shown: Vec<&str> = objects.iter().take(3).map(String::as_str).collect();
            let more = objects.len().saturating_sub(shown.len());
            let of = if more > 0 {
                format!("{} and {more} more", shown.join(", "))
            } else {
                shown.join(", ")
            };
            format!("Warning: the API server says of {of}: {text}")
        })
        .collect()
}

/// The layer that keeps the API server's warnings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Warnings;

impl<S> Layer<S> for Warnings {
    type Service = Noting<S>;

    fn layer(&self, inner: S) -> Noting<S> {
        Noting { inner }
    }
}

/// The service [`Warnings`] makes.
#[derive(Debug, Clone)]
pub struct Noting<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Noting<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_string();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            note(&path, resp.headers());
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_headers_text_is_unquoted() {
        assert_eq!(
            text_of(
                r#"299 - "spec.externalIPs is deprecated and may no longer be implemented in some clusters""#
            ),
            "spec.externalIPs is deprecated and may no longer be implemented in some clusters"
        );
        assert_eq!(
            text_of(r#"299 - "say \"this\" \\ that""#),
            r#"say "this" \ that"#
        );
        assert_eq!(text_of("something else"), "something else");
    }

    #[test]
    fn the_object_is_named_from_the_request_path() {
        assert_eq!(
            object_of("/api/v1/namespaces/ingress/services/web"),
            "services ingress/web"
        );
        assert_eq!(
            object_of(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gateways.networking.istio.io"
            ),
            "customresourcedefinitions gateways.networking.istio.io"
        );
        assert_eq!(
            object_of("/api/v1/namespaces/keycloak"),
            "namespaces keycloak"
        );
        assert_eq!(object_of("/version"), "/version");
    }

    #[test]
    fn each_warning_is_said_once_with_the_objects_it_was_said_of() {
        let said = vec![
            (
                "deprecated".to_string(),
                vec!["services a/x".to_string(), "services a/y".to_string()],
            ),
            (
                "unknown".to_string(),
                (1..=5).map(|i| format!("crds c{i}")).collect(),
            ),
        ];
        assert_eq!(
            lines(&said),
            [
                "Warning: the API server says of services a/x, services a/y: deprecated",
                "Warning: the API server says of crds c1, crds c2, crds c3 and 2 more: unknown",
            ]
        );
    }
}
