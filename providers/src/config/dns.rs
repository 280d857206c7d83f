//! `dns:`, where the platform's DNS names come from: a wildcard DNS service (the default), records
//! the user manages, records `vz` writes with RFC 2136 dynamic updates, or ExternalDNS
//! ([`super::external_dns`]).
//!
//! The file's section ([`RawDns`]: one optional field per mode) and the validated [`Dns`] (an enum
//! of the modes) are two types: the file can set none or several modes, which the validation
//! refuses with the line of the section, and the validated modes have their defaults applied and
//! their names normalized.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::checks::check_dns_name;
use super::errors::Source;
use super::external_dns::{self, ExternalDns, RawExternalDns};

/// Where the platform's DNS names come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dns {
    /// `<env>.<ingress IP>.<domain>` through a wildcard DNS service (`nip.io` or `sslip.io`).
    Wildcard {
        /// `nip.io` or `sslip.io`.
        domain: String,
    },
    /// `<env>.<suffix>`, records managed by the user.
    External {
        /// The DNS suffix.
        suffix: String,
    },
    /// `<env>.<zone>`, records managed by `vz` itself on a DNS server that takes RFC 2136 dynamic
    /// updates signed with TSIG (BIND, Knot, PowerDNS, Windows DNS).
    Rfc2136(Rfc2136),
    /// `<env>.<zone>`, records managed by ExternalDNS, which `vz` installs, through a DNS provider
    /// `vz` does not speak itself (OCI, Route 53, Cloudflare, ...).
    ExternalDns(ExternalDns),
}

/// A DNS server `vz` writes records to (`dns.rfc2136`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136 {
    /// `host:port` of the primary server (port 53 unless given).
    pub server: String,
    /// The zone records are written in.
    pub zone: String,
    /// The TSIG key's name.
    pub key_name: String,
    /// The TSIG algorithm.
    pub algorithm: TsigAlgorithm,
    /// Where the TSIG secret (base64) is read from when `vz` runs: never stored, never printed.
    pub secret: TsigSecret,
    /// TTL of the records, in seconds.
    pub ttl: u32,
}

/// A TSIG algorithm (RFC 8945), as BIND names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (the default).
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// `hmac-sha384`.
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    /// `hmac-sha512`.
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// Where the TSIG secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsigSecret {
    /// This environment variable.
    Env(String),
    /// This file (relative paths are relative to the configuration file).
    File(PathBuf),
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawDns {
    wildcard: Option<RawWildcard>,
    external: Option<RawExternal>,
    #[schemars(with = "Option<RawRfc2136>")]
    rfc2136: Option<Spanned<RawRfc2136>>,
    #[serde(rename = "externalDNS")]
    #[schemars(with = "Option<RawExternalDns>")]
    external_dns: Option<Spanned<RawExternalDns>>,
    /// The old name of `externalDNS`, refused with a pointer to the new one.
    #[schemars(skip)]
    provider: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRfc2136 {
    #[schemars(with = "String")]
    server: Spanned<String>,
    #[schemars(with = "String")]
    zone: Spanned<String>,
    #[schemars(with = "String")]
    tsig_key_name: Spanned<String>,
    tsig_algorithm: Option<TsigAlgorithm>,
    #[schemars(with = "Option<String>")]
    tsig_secret_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    tsig_secret_file: Option<Spanned<String>>,
    #[schemars(with = "Option<u32>")]
    ttl: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawWildcard {
    #[schemars(with = "Option<String>")]
    domain: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExternal {
    #[schemars(with = "String")]
    suffix: Spanned<String>,
}

/// The `dns` section of platform `env`.
pub(super) fn validate(
    src: &Source<'_>,
    spanned: &Spanned<RawDns>,
    env: &str,
) -> Result<Dns, ConfigError> {
    let raw = &spanned.value;
    if let Some(old) = &raw.provider {
        return Err(src.err(
            old,
            "dns.provider",
            "`dns.provider` is now `dns.externalDNS` (with `provider:` and `zone:`, e.g. `externalDNS: {provider: oci, zone: example.com}`)",
        ));
    }
    match (
        &raw.wildcard,
        &raw.external,
        &raw.rfc2136,
        &raw.external_dns,
    ) {
        (Some(w), None, None, None) => wildcard(src, w),
        (None, Some(e), None, None) => external(src, e),
        (None, None, Some(r), None) => rfc2136(src, r).map(Dns::Rfc2136),
        (None, None, None, Some(e)) => external_dns::validate(src, e, env).map(Dns::ExternalDns),
        _ => Err(src.err(
            spanned,
            "dns",
            "set exactly one of `wildcard`, `external`, `rfc2136` or `externalDNS`",
        )),
    }
}

/// `dns.wildcard`: `nip.io` (the default) or `sslip.io`.
fn wildcard(src: &Source<'_>, raw: &RawWildcard) -> Result<Dns, ConfigError> {
    let domain = match &raw.domain {
        None => "nip.io".to_string(),
        Some(d) if d.value == "nip.io" || d.value == "sslip.io" => d.value.clone(),
        Some(d) => {
            return Err(src.err(
                d,
                "dns.wildcard.domain",
                format!("`{}` is not supported; use `nip.io` or `sslip.io`", d.value),
            ));
        }
    };
    Ok(Dns::Wildcard { domain })
}

/// `dns.external`: the suffix of the names whose records the user manages.
fn external(src: &Source<'_>, raw: &RawExternal) -> Result<Dns, ConfigError> {
    let suffix = src.checked(&raw.suffix, "dns.external.suffix", check_dns_name)?;
    Ok(Dns::External { suffix })
}

/// `dns.rfc2136`: the server, zone, TSIG key and TTL (the secret is only located here).
fn rfc2136(src: &Source<'_>, raw: &Spanned<RawRfc2136>) -> Result<Rfc2136, ConfigError> {
    let r = &raw.value;
    let field = |f: &str| format!("dns.rfc2136.{f}");
    let server = server(src, &r.server)?;
    let zone = r.zone.value.trim_end_matches('.');
    check_dns_name(zone).map_err(|m| src.err(&r.zone, &field("zone"), m))?;
    let key_name = src.checked(&r.tsig_key_name, &field("tsigKeyName"), check_dns_name)?;
    let secret = tsig_secret(src, raw)?;
    let ttl = match &r.ttl {
        Some(t) if t.value == 0 || t.value > 86_400 => {
            return Err(src.err(
                t,
                &field("ttl"),
                format!("{} is not a TTL from 1 to 86400 seconds", t.value),
            ));
        }
        Some(t) => t.value,
        None => 60,
    };
    Ok(Rfc2136 {
        server,
        zone: zone.to_string(),
        key_name,
        algorithm: r.tsig_algorithm.unwrap_or(TsigAlgorithm::HmacSha256),
        secret,
        ttl,
    })
}

/// `dns.rfc2136.server`: `host:port`, port 53 unless given.
fn server(src: &Source<'_>, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let server = raw.value.trim();
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
        _ => (server, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    let host_bare = host.trim_start_matches('[').trim_end_matches(']');
    let host_ok = host_bare.parse::<IpAddr>().is_ok() || check_dns_name(host_bare).is_ok();
    if !port_ok || !host_ok {
        return Err(src.err(
            raw,
            "dns.rfc2136.server",
            format!("`{server}` is not `host:port` (e.g. `192.0.2.53:53`, `ns1.example.com`)"),
        ));
    }
    Ok(match port {
        Some(_) => server.to_string(),
        None if host_bare.contains(':') => format!("[{host_bare}]:53"),
        None => format!("{host_bare}:53"),
    })
}

/// Where the TSIG secret is read from: exactly one of `tsigSecretEnv` and `tsigSecretFile`.
fn tsig_secret(src: &Source<'_>, raw: &Spanned<RawRfc2136>) -> Result<TsigSecret, ConfigError> {
    match (&raw.value.tsig_secret_env, &raw.value.tsig_secret_file) {
        (Some(env), None) => {
            let ok = !env.value.is_empty()
                && env
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(src.err(
                    env,
                    "dns.rfc2136.tsigSecretEnv",
                    format!("`{}` is not an environment variable name", env.value),
                ));
            }
            Ok(TsigSecret::Env(env.value.clone()))
        }
        (None, Some(file)) => Ok(TsigSecret::File(src.dir().join(&file.value))),
        _ => Err(src.err(
            raw,
            "dns.rfc2136",
            "set exactly one of `tsigSecretEnv` (an environment variable holding the TSIG secret) or `tsigSecretFile` (a file holding it); the secret itself never goes in the configuration",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{parse_err, parse_ok};

    #[test]
    fn two_dns_modes_are_refused() {
        let e =
            parse_err("dns:\n  wildcard: {domain: nip.io}\n  external: {suffix: example.com}\n");
        assert_eq!(e.field.as_deref(), Some("dns"));
    }

    #[test]
    fn only_nip_and_sslip_wildcards_are_accepted() {
        let e = parse_err("dns:\n  wildcard:\n    domain: xip.io\n");
        assert_eq!(e.field.as_deref(), Some("dns.wildcard.domain"));
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn the_old_dns_provider_field_points_at_external_dns() {
        let e = parse_err("dns:\n  provider: {name: oci, zone: example.com}\n");
        assert_eq!(e.field.as_deref(), Some("dns.provider"));
        assert!(e.message.contains("dns.externalDNS"), "{}", e.message);
    }

    #[test]
    fn rfc2136_names_the_server_zone_and_key_but_never_holds_the_secret() {
        let p = parse_ok(
            "environmentName: dev\ndns:\n  rfc2136: {server: 127.0.0.1:5399, zone: example.test, tsigKeyName: vz-key, tsigSecretEnv: VZ_TSIG_SECRET}\n",
        );
        assert_eq!(
            p.dns,
            Dns::Rfc2136(Rfc2136 {
                server: "127.0.0.1:5399".into(),
                zone: "example.test".into(),
                key_name: "vz-key".into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: TsigSecret::Env("VZ_TSIG_SECRET".into()),
                ttl: 60,
            })
        );
        let p = parse_ok(
            "dns:\n  rfc2136: {server: ns1.example.com, zone: example.com., tsigKeyName: k, tsigAlgorithm: hmac-sha512, tsigSecretFile: tsig.key, ttl: 300}\n",
        );
        let Dns::Rfc2136(r) = p.dns else {
            panic!("rfc2136")
        };
        assert_eq!(r.server, "ns1.example.com:53");
        assert_eq!(r.zone, "example.com");
        assert_eq!(r.secret, TsigSecret::File(PathBuf::from("/cfg/tsig.key")));
        assert_eq!((r.algorithm, r.ttl), (TsigAlgorithm::HmacSha512, 300));
    }

    #[test]
    fn rfc2136_settings_that_cannot_work_are_refused() {
        let base = "dns:\n  rfc2136: {server: 127.0.0.1:53, zone: example.test, tsigKeyName: k";
        let e = parse_err(&format!("{base}}}\n"));
        assert!(e.message.contains("tsigSecretEnv"), "{}", e.message);
        let e = parse_err(&format!("{base}, tsigSecretEnv: A, tsigSecretFile: f}}\n"));
        assert!(e.message.contains("exactly one"), "{}", e.message);
        let e = parse_err(&format!("{base}, tsigSecretEnv: 'not a var'}}\n"));
        assert_eq!(e.field.as_deref(), Some("dns.rfc2136.tsigSecretEnv"));
        let e = parse_err(&format!("{base}, tsigSecretEnv: A, ttl: 0}}\n"));
        assert_eq!(e.field.as_deref(), Some("dns.rfc2136.ttl"));
        let e = parse_err(
            "dns:\n  rfc2136: {server: '127.0.0.1:99999', zone: example.test, tsigKeyName: k, tsigSecretEnv: A}\n",
        );
        assert_eq!(e.field.as_deref(), Some("dns.rfc2136.server"));
        let e = parse_err(
            "dns:\n  rfc2136: {server: 127.0.0.1, zone: example.test, tsigKeyName: k, tsigSecretEnv: A, tsigAlgorithm: hmac-md5}\n",
        );
        assert!(e.message.contains("hmac-md5"), "{}", e.message);
    }
}
