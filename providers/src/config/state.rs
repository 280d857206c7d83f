//! `state:`, where the state is kept: a local file (the default), Secrets and a Lease in a
//! Kubernetes namespace, or an object of an S3-compatible bucket.
//!
//! The file's section ([`RawState`]) and the validated value, a [`Location`] of the `vz-state`
//! crate, are two types: a location is one backend's settings, resolved against the configuration
//! file's directory, the platform's name and the defaults. `vz state migrate --to` reads its
//! target as such a section ([`super::parse_state`]).

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;
use vz_state::Location;

use super::ConfigError;
use super::checks::{check_dns_label, go_duration_seconds};
use super::errors::Source;

// `state:` as the file has it.
#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawState {
    /// `local` (the default: a file), `kubernetes` (Secrets and a Lease in a namespace) or `s3`
    /// (objects of an S3-compatible bucket).
    #[schemars(with = "Option<String>")]
    backend: Option<Spanned<String>>,
    /// local: the state file (default `<environmentName>.vzstate.json`, relative to this file).
    #[schemars(with = "Option<String>")]
    path: Option<Spanned<String>>,
    /// kubernetes: the namespace of the state's Secrets and Lease (default `vz-system`).
    #[schemars(with = "Option<String>")]
    namespace: Option<Spanned<String>>,
    /// kubernetes, s3: how long a lock holds without being renewed, e.g. `60s` (default).
    #[schemars(with = "Option<String>")]
    lease_duration: Option<Spanned<String>>,
    /// s3: the bucket.
    #[schemars(with = "Option<String>")]
    bucket: Option<Spanned<String>>,
    /// s3: the state's object key (default `<environmentName>.vzstate.json`).
    #[schemars(with = "Option<String>")]
    key: Option<Spanned<String>>,
    /// s3: the service's URL, for a store that is not AWS (default: `AWS_ENDPOINT_URL`, else AWS).
    #[schemars(with = "Option<String>")]
    endpoint: Option<Spanned<String>>,
    /// s3: the bucket's region (default: `AWS_REGION`, else `us-east-1`).
    #[schemars(with = "Option<String>")]
    region: Option<Spanned<String>>,
}

/// The backends.
const BACKENDS: [&str; 3] = ["local", "kubernetes", "s3"];

/// A `state:` setting, its name, and the backends it belongs to.
type Setting<'a> = (
    &'a Option<Spanned<String>>,
    &'static str,
    &'static [&'static str],
);

/// The `state` section, for platform `env`.
pub(super) fn validate(
    src: &Source<'_>,
    raw: &RawState,
    env: &str,
) -> Result<Location, ConfigError> {
    let backend = raw.backend.as_ref().map_or("local", |b| b.value.as_str());
    if let Some(b) = raw
        .backend
        .as_ref()
        .filter(|_| !BACKENDS.contains(&backend))
    {
        return Err(src.err(
            b,
            "state.backend",
            format!("unknown backend `{backend}`; supported: `local`, `kubernetes`, `s3`"),
        ));
    }
    settings_belong_to(src, raw, backend)?;
    match (backend, &raw.backend) {
        ("kubernetes", _) => kubernetes(src, raw),
        ("s3", Some(b)) => s3(src, raw, b, env),
        _ => local(src, raw, env),
    }
}

/// Each setting belongs to some backends; naming it for another is a mistake.
fn settings_belong_to(src: &Source<'_>, raw: &RawState, backend: &str) -> Result<(), ConfigError> {
    let settings: [Setting<'_>; 7] = [
        (&raw.path, "path", &["local"]),
        (&raw.namespace, "namespace", &["kubernetes"]),
        (&raw.lease_duration, "leaseDuration", &["kubernetes", "s3"]),
        (&raw.bucket, "bucket", &["s3"]),
        (&raw.key, "key", &["s3"]),
        (&raw.endpoint, "endpoint", &["s3"]),
        (&raw.region, "region", &["s3"]),
    ];
    for (field, name, backends) in settings {
        if let Some(f) = field
            && !backends.contains(&backend)
        {
            let of = backends
                .iter()
                .map(|b| format!("`{b}`"))
                .collect::<Vec<_>>()
                .join(" and ");
            let noun = if backends.len() > 1 {
                "backends"
            } else {
                "backend"
            };
            return Err(src.err(
                f,
                &format!("state.{name}"),
                format!("`{name}` is a setting of the {of} {noun}"),
            ));
        }
    }
    Ok(())
}

/// `leaseDuration`, in seconds: at least 15, 60 unless set.
fn lease_seconds(src: &Source<'_>, raw: &RawState) -> Result<u64, ConfigError> {
    let Some(d) = &raw.lease_duration else {
        return Ok(60);
    };
    match go_duration_seconds(&d.value) {
        Some(secs) if secs >= 15 => Ok(secs),
        _ => Err(src.err(
            d,
            "state.leaseDuration",
            format!(
                "`{}` is not a duration of at least 15s (e.g. `60s`, `2m`)",
                d.value
            ),
        )),
    }
}

/// `state: {backend: local, path: ...}`: the state file, relative to the configuration file.
fn local(src: &Source<'_>, raw: &RawState, env: &str) -> Result<Location, ConfigError> {
    let rel = match &raw.path {
        Some(p) if p.value.trim().is_empty() => {
            return Err(src.err(p, "state.path", "must not be empty"));
        }
        Some(p) => PathBuf::from(&p.value),
        None => PathBuf::from(format!("{env}.vzstate.json")),
    };
    if rel.is_absolute() {
        return Ok(Location::Local { path: rel });
    }
    Ok(Location::Local {
        path: src.dir().join(rel),
    })
}

/// `state: {backend: kubernetes, ...}`: a namespace and a lease.
fn kubernetes(src: &Source<'_>, raw: &RawState) -> Result<Location, ConfigError> {
    let namespace = match &raw.namespace {
        Some(v) => src.checked(v, "state.namespace", check_dns_label)?,
        None => "vz-system".to_string(),
    };
    Ok(Location::Kubernetes {
        namespace,
        workspace: vz_state::DEFAULT_WORKSPACE.to_string(),
        lease_seconds: lease_seconds(src, raw)?,
    })
}

/// `state: {backend: s3, ...}`: a bucket (required), a key, an endpoint, a region and a lease.
fn s3(
    src: &Source<'_>,
    raw: &RawState,
    backend: &Spanned<String>,
    env: &str,
) -> Result<Location, ConfigError> {
    let lease_seconds = lease_seconds(src, raw)?;
    let Some(bucket) = &raw.bucket else {
        return Err(src.err(backend, "state.bucket", "the s3 backend needs a `bucket`"));
    };
    let bucket = src.checked(bucket, "state.bucket", check_bucket)?;
    let key = match &raw.key {
        Some(k) => src.checked(k, "state.key", check_object_key)?,
        None => format!("{env}.vzstate.json"),
    };
    let endpoint = match &raw.endpoint {
        Some(e) if e.value.starts_with("http://") || e.value.starts_with("https://") => {
            Some(e.value.trim_end_matches('/').to_string())
        }
        Some(e) => {
            return Err(src.err(
                e,
                "state.endpoint",
                format!(
                    "`{}` is not a URL: write the scheme, e.g. `https://s3.example.com`",
                    e.value
                ),
            ));
        }
        None => None,
    };
    let region = match &raw.region {
        Some(r) if r.value.trim().is_empty() => {
            return Err(src.err(r, "state.region", "must not be empty"));
        }
        Some(r) => Some(r.value.clone()),
        None => None,
    };
    Ok(Location::S3 {
        bucket,
        key,
        endpoint,
        region,
        workspace: vz_state::DEFAULT_WORKSPACE.to_string(),
        lease_seconds,
    })
}

/// An S3 bucket name: 3–63 characters of `a-z`, `0-9`, `.` and `-`, starting and ending with a
/// letter or digit.
fn check_bucket(s: &str) -> Result<(), String> {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && !s.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a bucket name: 3–63 characters of a-z, 0-9, `.` and `-`, starting and ending with a letter or digit"
        ))
    }
}

/// An object key vz can use for a state: `dir/.../file`, without empty, `.` or `..` segments.
fn check_object_key(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    match s
        .split('/')
        .find(|seg| seg.is_empty() || *seg == "." || *seg == "..")
    {
        Some(_) => Err(format!(
            "`{s}` is not an object key vz uses: no leading or trailing `/`, no `//`, `.` or `..` segments"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{parse_err, parse_ok};

    #[test]
    fn a_relative_state_path_is_relative_to_the_config_file() {
        let p = parse_ok("state:\n  backend: local\n  path: states/x.json\n");
        assert_eq!(
            p.state,
            Location::Local {
                path: PathBuf::from("/cfg/states/x.json")
            }
        );
    }

    #[test]
    fn an_unknown_backend_is_refused() {
        let e = parse_err("state:\n  backend: gcs\n");
        assert_eq!(e.field.as_deref(), Some("state.backend"));
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn the_kubernetes_backend_takes_a_namespace_workspace_and_lease() {
        assert_eq!(
            parse_ok("state: {backend: kubernetes}\n").state,
            Location::Kubernetes {
                namespace: "vz-system".into(),
                workspace: "default".into(),
                lease_seconds: 60
            }
        );
        assert_eq!(
            parse_ok("state: {backend: kubernetes, namespace: team, leaseDuration: 2m}\n").state,
            Location::Kubernetes {
                namespace: "team".into(),
                workspace: "default".into(),
                lease_seconds: 120
            }
        );
        for (text, field) in [
            ("state: {backend: kubernetes, path: x.json}\n", "state.path"),
            (
                "state: {backend: kubernetes, leaseDuration: 5s}\n",
                "state.leaseDuration",
            ),
            ("state: {namespace: team}\n", "state.namespace"),
            (
                "state: {backend: kubernetes, namespace: Team}\n",
                "state.namespace",
            ),
        ] {
            assert_eq!(parse_err(text).field.as_deref(), Some(field), "{text}");
        }
    }

    #[test]
    fn the_s3_backend_takes_a_bucket_key_endpoint_region_and_lease() {
        assert_eq!(
            parse_ok("state: {backend: s3, bucket: team-state}\n").state,
            Location::S3 {
                bucket: "team-state".into(),
                key: "default.vzstate.json".into(),
                endpoint: None,
                region: None,
                workspace: "default".into(),
                lease_seconds: 60
            }
        );
        assert_eq!(
            parse_ok(
                "state: {backend: s3, bucket: b.example, key: eu/dev.json, endpoint: 'http://127.0.0.1:9000/', region: eu-west-1, leaseDuration: 30s}\n"
            )
            .state,
            Location::S3 {
                bucket: "b.example".into(),
                key: "eu/dev.json".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                workspace: "default".into(),
                lease_seconds: 30
            }
        );
        for (text, field) in [
            ("state:\n  backend: s3\n", "state.bucket"),
            ("state: {backend: s3, bucket: Team}\n", "state.bucket"),
            ("state: {backend: s3, bucket: ab}\n", "state.bucket"),
            (
                "state: {backend: s3, bucket: b-1, key: /x.json}\n",
                "state.key",
            ),
            (
                "state: {backend: s3, bucket: b-1, key: a//x.json}\n",
                "state.key",
            ),
            (
                "state: {backend: s3, bucket: b-1, key: ../x.json}\n",
                "state.key",
            ),
            (
                "state: {backend: s3, bucket: b-1, endpoint: s3.example.com}\n",
                "state.endpoint",
            ),
            (
                "state: {backend: s3, bucket: b-1, region: ''}\n",
                "state.region",
            ),
            (
                "state: {backend: s3, bucket: b-1, namespace: x}\n",
                "state.namespace",
            ),
            (
                "state: {backend: s3, bucket: b-1, path: x.json}\n",
                "state.path",
            ),
            (
                "state: {backend: kubernetes, bucket: b-1}\n",
                "state.bucket",
            ),
        ] {
            assert_eq!(parse_err(text).field.as_deref(), Some(field), "{text}");
        }
        let e = parse_err("state: {backend: local, leaseDuration: 30s}\n");
        assert!(e.message.contains("`kubernetes` and `s3` backends"), "{e}");
    }
}
