//! `dns.externalDNS`: ExternalDNS, which `vz` installs, manages the platform's records through a
//! DNS provider `vz` does not speak itself: its provider, zone, credentials, environment and the
//! arguments `vz` leaves to the user.
//!
//! The file's section ([`RawExternalDns`]) and the validated [`ExternalDns`] are two types: the
//! validated one has its defaults applied (the owner id comes from the platform's name), its zone
//! normalized and each variable's value resolved to text or a key of the credentials Secret.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::checks::{check_dns_label, check_dns_name, is_go_duration, secret};
use super::errors::Source;

/// ExternalDNS as `vz` installs it (`dns.externalDNS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalDns {
    /// ExternalDNS's `--provider` (`oci`, `aws`, `cloudflare`, ...).
    pub provider: String,
    /// The DNS zone (`--domain-filter`); the platform's domain is `<env>.<zone>`.
    pub zone: String,
    /// The provider's id of the zone (`--zone-id-filter`), when it has one (an OCID, a hosted zone id).
    pub zone_id: Option<String>,
    /// The Secret with the provider's credentials, copied into `verrazzano-system` and mounted at
    /// `/etc/kubernetes/`.
    pub credentials: Option<CredentialsSecret>,
    /// Environment variables of the ExternalDNS container, in the order given.
    pub env: Vec<(String, EnvValue)>,
    /// More arguments for ExternalDNS (provider options such as `--oci-zone-scope=GLOBAL`).
    pub args: Vec<String>,
    /// The TXT registry's owner id (`--txt-owner-id`); `vz-<environmentName>` by default.
    pub owner_id: String,
    /// How often ExternalDNS syncs besides on changes (`--interval`, a Go duration).
    pub interval: String,
}

/// The Secret holding a DNS provider's credentials (`dns.externalDNS.credentials`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsSecret {
    /// Its name (the copy in `verrazzano-system` has the same name).
    pub name: String,
    /// Its namespace (not `verrazzano-system`, which `vz` owns).
    pub namespace: String,
}

/// The value of an environment variable of ExternalDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// This text.
    Text(String),
    /// This key of the credentials Secret.
    CredentialsKey(String),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawExternalDns {
    #[schemars(with = "String")]
    provider: Spanned<String>,
    #[schemars(with = "String")]
    zone: Spanned<String>,
    #[schemars(with = "Option<String>")]
    zone_id: Option<Spanned<String>>,
    #[schemars(with = "Option<RawCredentials>")]
    credentials: Option<Spanned<RawCredentials>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawEnv>")]
    env: Vec<Spanned<RawEnv>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    args: Vec<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    txt_owner_id: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCredentials {
    #[schemars(with = "String")]
    secret_name: Spanned<String>,
    #[schemars(with = "Option<String>")]
    namespace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEnv {
    #[schemars(with = "String")]
    name: Spanned<String>,
    value: Option<String>,
    #[schemars(with = "Option<String>")]
    credentials_key: Option<Spanned<String>>,
}

/// The options `vz` gives ExternalDNS itself, which `args` cannot set.
const SET_BY_VZ: [&str; 9] = [
    "--provider",
    "--registry",
    "--policy",
    "--txt-owner-id",
    "--txt-prefix",
    "--domain-filter",
    "--source",
    "--once",
    "--annotation-prefix",
];

/// The path of a field of `dns.externalDNS`.
fn field(f: &str) -> String {
    format!("dns.externalDNS.{f}")
}

/// The `dns.externalDNS` section of platform `env`.
pub(super) fn validate(
    src: &Source<'_>,
    raw: &Spanned<RawExternalDns>,
    env: &str,
) -> Result<ExternalDns, ConfigError> {
    let r = &raw.value;
    let provider = provider(src, &r.provider)?;
    let zone = r.zone.value.trim_end_matches('.');
    check_dns_name(zone).map_err(|m| src.err(&r.zone, &field("zone"), m))?;
    let zone_id = match &r.zone_id {
        Some(z) if z.value.trim().is_empty() || z.value.contains(char::is_whitespace) => {
            return Err(src.err(z, &field("zoneId"), "must be one id without spaces"));
        }
        Some(z) => Some(z.value.clone()),
        None => None,
    };
    let credentials = match &r.credentials {
        Some(c) => Some(credentials(src, &c.value)?),
        None => None,
    };
    let env_vars = env_vars(src, &r.env, credentials.is_some())?;
    let args = r
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| arg(src, a, &field(&format!("args[{i}]"))))
        .collect::<Result<_, _>>()?;
    let owner_id = match &r.txt_owner_id {
        Some(o) => src.checked(o, &field("txtOwnerId"), check_dns_label)?,
        None => format!("vz-{env}"),
    };
    let interval = match &r.interval {
        Some(i) if !is_go_duration(&i.value) => {
            return Err(src.err(
                i,
                &field("interval"),
                format!(
                    "`{}` is not a duration such as `24h`, `30m` or `1h30m`",
                    i.value
                ),
            ));
        }
        Some(i) => i.value.clone(),
        None => "24h".to_string(),
    };
    Ok(ExternalDns {
        provider,
        zone: zone.to_string(),
        zone_id,
        credentials,
        env: env_vars,
        args,
        owner_id,
        interval,
    })
}

/// `provider`: ExternalDNS's name of the provider, lower-case.
fn provider(src: &Source<'_>, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let provider = raw.value.trim();
    if provider.is_empty()
        || !provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(src.err(
            raw,
            &field("provider"),
            format!(
                "`{provider}` is not an ExternalDNS provider name (lower-case, e.g. `oci`, `aws`, `cloudflare`)"
            ),
        ));
    }
    Ok(provider.to_string())
}

/// `credentials`: the Secret, in a namespace that is not `verrazzano-system`.
fn credentials(src: &Source<'_>, raw: &RawCredentials) -> Result<CredentialsSecret, ConfigError> {
    let at = field("credentials");
    let (name, namespace) = secret(
        src,
        &at,
        &raw.secret_name,
        raw.namespace.as_ref(),
        "default",
    )?;
    if let Some(ns) = &raw.namespace
        && ns.value == crate::names::VERRAZZANO_SYSTEM
    {
        return Err(src.err(
            ns,
            &format!("{at}.namespace"),
            "vz copies the credentials into `verrazzano-system` (which it owns and deletes on destroy): keep the original in another namespace",
        ));
    }
    Ok(CredentialsSecret { name, namespace })
}

/// `env`: each variable once, its value text or a key of the credentials Secret (when there is one).
fn env_vars(
    src: &Source<'_>,
    raw: &[Spanned<RawEnv>],
    has_credentials: bool,
) -> Result<Vec<(String, EnvValue)>, ConfigError> {
    let mut vars: Vec<(String, EnvValue)> = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let at = format!("env[{i}]");
        let name = &e.value.name.value;
        let name_ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(src.err(
                &e.value.name,
                &field(&format!("{at}.name")),
                format!("`{name}` is not an environment variable name"),
            ));
        }
        if vars.iter().any(|(n, _)| n == name) {
            return Err(src.err(
                &e.value.name,
                &field(&format!("{at}.name")),
                format!("`{name}` is set twice"),
            ));
        }
        let value = match (&e.value.value, &e.value.credentials_key) {
            (Some(v), None) => EnvValue::Text(v.clone()),
            (None, Some(k)) if !has_credentials => {
                return Err(src.err(
                    k,
                    &field(&format!("{at}.credentialsKey")),
                    "there is no credentials Secret to read it from: set `dns.externalDNS.credentials`",
                ));
            }
            (None, Some(k)) => EnvValue::CredentialsKey(k.value.clone()),
            _ => {
                return Err(src.err(
                    e,
                    &field(&at),
                    "set exactly one of `value` (the text) or `credentialsKey` (a key of the credentials Secret)",
                ));
            }
        };
        vars.push((name.clone(), value));
    }
    Ok(vars)
}

/// One of `args`: an option (`--name=value`) that `vz` does not set itself.
fn arg(src: &Source<'_>, a: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
    let flag = a.value.split('=').next().unwrap_or_default();
    if !a.value.starts_with("--") || flag.len() < 3 {
        return Err(src.err(
            a,
            field,
            format!("`{}` is not an option (`--name=value`)", a.value),
        ));
    }
    if SET_BY_VZ.contains(&flag) || ["--interval", "--zone-id-filter"].contains(&flag) {
        return Err(src.err(
            a,
            field,
            format!(
                "vz sets `{flag}` itself (from `provider`, `zone`, `zoneId`, `interval`, `txtOwnerId` and the platform's components)"
            ),
        ));
    }
    Ok(a.value.clone())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{parse_err, parse_ok};
    use crate::config::{CredentialsSecret, Dns, EnvValue, ExternalDns};

    #[test]
    fn external_dns_takes_a_provider_zone_credentials_env_and_args() {
        let p = parse_ok(
            "environmentName: dev\ndns:\n  externalDNS:\n    provider: oci\n    zone: example.com.\n    zoneId: ocid1.dns-zone.oc1..aaaa\n    credentials: {secretName: oci-dns, namespace: vz-install}\n    env:\n      - {name: OCI_REGION, value: us-ashburn-1}\n      - {name: TOKEN, credentialsKey: token}\n    args: ['--oci-zone-scope=GLOBAL']\n",
        );
        assert!(p.components.external_dns);
        let Dns::ExternalDns(e) = p.dns else {
            panic!("not ExternalDNS: {:?}", p.dns)
        };
        assert_eq!(
            e,
            ExternalDns {
                provider: "oci".into(),
                zone: "example.com".into(),
                zone_id: Some("ocid1.dns-zone.oc1..aaaa".into()),
                credentials: Some(CredentialsSecret {
                    name: "oci-dns".into(),
                    namespace: "vz-install".into()
                }),
                env: vec![
                    ("OCI_REGION".into(), EnvValue::Text("us-ashburn-1".into())),
                    ("TOKEN".into(), EnvValue::CredentialsKey("token".into())),
                ],
                args: vec!["--oci-zone-scope=GLOBAL".into()],
                owner_id: "vz-dev".into(),
                interval: "24h".into(),
            }
        );
    }

    #[test]
    fn external_dns_mistakes_are_located() {
        let base = "dns:\n  externalDNS:\n    provider: aws\n    zone: example.com\n";
        for (extra, field, says) in [
            (
                "    args: [--txt-owner-id=x]\n",
                "dns.externalDNS.args[0]",
                "vz sets `--txt-owner-id`",
            ),
            (
                "    args: [verbose]\n",
                "dns.externalDNS.args[0]",
                "not an option",
            ),
            (
                "    env: [{name: X, credentialsKey: k}]\n",
                "dns.externalDNS.env[0].credentialsKey",
                "no credentials Secret",
            ),
            (
                "    env: [{name: X}]\n",
                "dns.externalDNS.env[0]",
                "exactly one of",
            ),
            (
                "    credentials: {secretName: s, namespace: verrazzano-system}\n",
                "dns.externalDNS.credentials.namespace",
                "another namespace",
            ),
            (
                "    interval: 1d\n",
                "dns.externalDNS.interval",
                "not a duration",
            ),
            (
                "    txtOwnerId: Not_A_Label\n",
                "dns.externalDNS.txtOwnerId",
                "",
            ),
        ] {
            let e = parse_err(&format!("{base}{extra}"));
            assert_eq!(e.field.as_deref(), Some(field), "{extra}");
            assert!(e.message.contains(says), "{extra}: {}", e.message);
            assert_eq!(e.line, Some(5), "{extra}");
        }
        let e = parse_err("dns:\n  externalDNS: {provider: OCI, zone: example.com}\n");
        assert_eq!(e.field.as_deref(), Some("dns.externalDNS.provider"));
    }
}
