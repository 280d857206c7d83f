//! `certificates:`, the certificates `vz` issues: the platform CA (self-signed, or the user's
//! own in a Secret), the key algorithm, validity and renewal, and webhook serving certificates.
//!
//! The file's section ([`RawCertificates`], [`RawCa`], [`RawWebhook`]) and the validated
//! [`Certificates`] are two types: the validated one has every default applied, the CA resolved
//! to a [`CaSource`] and each webhook configuration split into its kind and name, and the file's
//! keeps each value's line and column for the errors.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::checks::{check_dns_label, check_dns_name, go_duration_seconds, secret};
use super::errors::Source;

/// Where the platform CA comes from (`certificates.ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// `vz` issues a self-signed CA (the default).
    SelfSigned,
    /// The user's CA, in this Secret (`tls.crt`, `tls.key`, optionally `ca.crt`): `vz` reads its
    /// key in the cluster to sign, and never copies it out.
    Secret(crate::names::SecretRef),
}

/// A webhook Service the API server calls over TLS (`certificates.webhooks[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCert {
    /// The Service's name.
    pub service: String,
    /// Its namespace (also the Secrets').
    pub namespace: String,
    /// The Secrets are `<prefix>-ca` and `<prefix>-tls`.
    pub secret_prefix: String,
    /// The objects whose `caBundle` gets the CA: `(kind, name)` of Validating- and
    /// MutatingWebhookConfigurations and CustomResourceDefinitions (conversion webhooks).
    pub configurations: Vec<(String, String)>,
}

/// The certificates `vz` issues (`certificates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificates {
    /// The platform CA.
    pub ca: CaSource,
    /// Key algorithm of every certificate `vz` issues.
    pub key: crate::pki::KeyAlgorithm,
    /// Validity of leaf certificates, in days.
    pub validity_days: i64,
    /// Validity of CAs, in days.
    pub ca_validity_days: i64,
    /// Issue again this many days before expiry.
    pub renew_before_days: i64,
    /// How long a CA rotation keeps old and new CA side by side (`caOverlap`, seconds): a new CA
    /// joins the trust bundles this long before it signs, and the old one leaves them this long
    /// after the last certificate it signed was replaced. 0: the new CA signs at once.
    pub ca_overlap_secs: i64,
    /// Webhook serving certificates.
    pub webhooks: Vec<WebhookCert>,
}

impl Default for Certificates {
    fn default() -> Self {
        Certificates {
            ca: CaSource::SelfSigned,
            key: crate::pki::KeyAlgorithm::default(),
            validity_days: 90,
            ca_validity_days: 3650,
            renew_before_days: 30,
            ca_overlap_secs: 24 * 3600,
            webhooks: vec![],
        }
    }
}

// `certificates:` as the file has it.
#[derive(Debug, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawCertificates {
    #[schemars(with = "Option<RawCa>")]
    ca: Option<Spanned<RawCa>>,
    #[schemars(with = "Option<crate::pki::KeyAlgorithm>")]
    key_algorithm: Option<Spanned<crate::pki::KeyAlgorithm>>,
    #[schemars(with = "Option<i64>")]
    validity_days: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    ca_validity_days: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    renew_before_days: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    ca_overlap: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<RawWebhook>")]
    webhooks: Vec<Spanned<RawWebhook>>,
}

// `certificates.ca`: the Secret of the user's CA.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawCa {
    #[schemars(with = "String")]
    secret_name: Spanned<String>,
    #[schemars(with = "Option<String>")]
    namespace: Option<Spanned<String>>,
}

// One of `certificates.webhooks`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawWebhook {
    #[schemars(with = "String")]
    service: Spanned<String>,
    #[schemars(with = "String")]
    namespace: Spanned<String>,
    #[schemars(with = "Option<String>")]
    secret_prefix: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    configurations: Vec<Spanned<String>>,
}

/// The `certificates` section.
pub(super) fn validate(
    src: &Source<'_>,
    raw: &RawCertificates,
) -> Result<Certificates, ConfigError> {
    let mut c = Certificates::default();
    if let Some(ca) = &raw.ca {
        let (name, namespace) = secret(
            src,
            "certificates.ca",
            &ca.value.secret_name,
            ca.value.namespace.as_ref(),
            crate::names::CERT_MANAGER,
        )?;
        c.ca = CaSource::Secret(crate::names::SecretRef::new(&namespace, &name));
    }
    if let Some(k) = &raw.key_algorithm {
        c.key = k.value;
    }
    c.validity_days = days(src, &raw.validity_days, "validityDays", c.validity_days)?;
    c.ca_validity_days = days(
        src,
        &raw.ca_validity_days,
        "caValidityDays",
        c.ca_validity_days,
    )?;
    c.renew_before_days = days(
        src,
        &raw.renew_before_days,
        "renewBeforeDays",
        c.renew_before_days,
    )?;
    renewal_before_expiry(src, raw, &c)?;
    if let Some(o) = &raw.ca_overlap {
        c.ca_overlap_secs = overlap(src, o, &c)?;
    }
    c.webhooks = webhooks(src, &raw.webhooks)?;
    Ok(c)
}

/// `certificates.<field>`: a number of days from 1 to 36500, `default` unless set.
fn days(
    src: &Source<'_>,
    value: &Option<Spanned<i64>>,
    field: &str,
    default: i64,
) -> Result<i64, ConfigError> {
    match value {
        Some(d) if d.value < 1 || d.value > 36_500 => Err(src.err(
            d,
            &format!("certificates.{field}"),
            format!("{} is not a number of days from 1 to 36500", d.value),
        )),
        Some(d) => Ok(d.value),
        None => Ok(default),
    }
}

/// `certificates.caOverlap`: a Go duration (`24h`, `90m`, `0s`), shorter than the time a CA has
/// left when it is renewed.
fn overlap(src: &Source<'_>, o: &Spanned<String>, c: &Certificates) -> Result<i64, ConfigError> {
    let Some(secs) = go_duration_seconds(&o.value) else {
        return Err(src.err(
            o,
            "certificates.caOverlap",
            format!(
                "`{}` is not a duration such as `24h`, `90m` or `0s`",
                o.value
            ),
        ));
    };
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    if secs >= c.renew_before_days * 86_400 {
        return Err(src.err(
            o,
            "certificates.caOverlap",
            format!(
                "{} must be shorter than renewBeforeDays ({} days): a CA due for renewal must still be good when its successor takes over",
                o.value, c.renew_before_days
            ),
        ));
    }
    Ok(secs)
}

/// Certificates are renewed before the shortest validity is over.
fn renewal_before_expiry(
    src: &Source<'_>,
    raw: &RawCertificates,
    c: &Certificates,
) -> Result<(), ConfigError> {
    let shortest = c.validity_days.min(c.ca_validity_days);
    if c.renew_before_days < shortest {
        return Ok(());
    }
    let at = raw
        .renew_before_days
        .as_ref()
        .or(raw.validity_days.as_ref())
        .or(raw.ca_validity_days.as_ref());
    let message = format!(
        "renewBeforeDays ({}) must be less than the shortest validity ({shortest} days), or every certificate would be due for renewal as soon as it is issued",
        c.renew_before_days
    );
    Err(match at {
        Some(at) => src.err(at, "certificates.renewBeforeDays", message),
        None => src.unlocated("certificates.renewBeforeDays", message),
    })
}

/// `certificates.webhooks`: each webhook, with Secrets of its own.
fn webhooks(
    src: &Source<'_>,
    raw: &[Spanned<RawWebhook>],
) -> Result<Vec<WebhookCert>, ConfigError> {
    let mut webhooks: Vec<WebhookCert> = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let at = |f: &str| format!("certificates.webhooks[{i}].{f}");
        let cert = webhook(src, &w.value, at)?;
        let clash = webhooks
            .iter()
            .any(|o| o.namespace == cert.namespace && o.secret_prefix == cert.secret_prefix);
        if clash {
            return Err(src.err(
                w,
                &at("secretPrefix"),
                format!(
                    "another webhook already uses the Secrets {}/{}-ca and -tls: set a distinct `secretPrefix`",
                    cert.namespace, cert.secret_prefix
                ),
            ));
        }
        webhooks.push(cert);
    }
    Ok(webhooks)
}

/// One webhook; `at` makes the path of its fields.
fn webhook(
    src: &Source<'_>,
    raw: &RawWebhook,
    at: impl Fn(&str) -> String,
) -> Result<WebhookCert, ConfigError> {
    let service = src.checked(&raw.service, &at("service"), check_dns_label)?;
    let namespace = src.checked(&raw.namespace, &at("namespace"), check_dns_label)?;
    let secret_prefix = match &raw.secret_prefix {
        Some(p) => src.checked(p, &at("secretPrefix"), check_dns_name)?,
        None => service.clone(),
    };
    let configurations = raw
        .configurations
        .iter()
        .enumerate()
        .map(|(j, conf)| configuration(src, conf, &at(&format!("configurations[{j}]"))))
        .collect::<Result<_, _>>()?;
    Ok(WebhookCert {
        service,
        namespace,
        secret_prefix,
        configurations,
    })
}

/// A webhook's `configurations[]` entry: `<Kind>/<name>` of an object whose `caBundle` gets the CA.
fn configuration(
    src: &Source<'_>,
    conf: &Spanned<String>,
    field: &str,
) -> Result<(String, String), ConfigError> {
    const KINDS: [&str; 3] = [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "CustomResourceDefinition",
    ];
    let parsed = conf
        .value
        .split_once('/')
        .filter(|(k, n)| KINDS.contains(k) && check_dns_name(n).is_ok());
    let Some((kind, name)) = parsed else {
        return Err(src.err(
            conf,
            field,
            format!(
                "`{}` is not `<Kind>/<name>` with Kind one of {}",
                conf.value,
                KINDS.join(", ")
            ),
        ));
    };
    Ok((kind.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{parse_err, parse_ok};

    #[test]
    fn certificates_default_to_a_self_signed_ca_and_ecdsa_leaves_for_90_days() {
        let c = parse_ok("").certificates;
        assert_eq!(c, Certificates::default());
        assert_eq!(c.ca, CaSource::SelfSigned);
        assert_eq!(c.key, crate::pki::KeyAlgorithm::EcdsaP256);
        assert_eq!(
            (c.validity_days, c.ca_validity_days, c.renew_before_days),
            (90, 3650, 30)
        );
        assert_eq!(c.ca_overlap_secs, 86_400, "a day of overlap");
    }

    #[test]
    fn the_ca_overlap_is_a_duration_shorter_than_renewal() {
        let c = parse_ok("certificates: {caOverlap: 90m}\n").certificates;
        assert_eq!(c.ca_overlap_secs, 5400);
        let c = parse_ok("certificates: {caOverlap: 0s}\n").certificates;
        assert_eq!(c.ca_overlap_secs, 0);
        let e = parse_err("certificates:\n  caOverlap: 1d\n");
        assert_eq!(e.field.as_deref(), Some("certificates.caOverlap"));
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("`1d` is not a duration"),
            "{}",
            e.message
        );
        let e = parse_err("certificates: {renewBeforeDays: 2, caOverlap: 48h}\n");
        assert!(
            e.message
                .contains("must be shorter than renewBeforeDays (2 days)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn certificates_take_a_ca_of_your_own_a_key_type_and_webhooks() {
        let c = parse_ok(
            "certificates:\n  ca: {secretName: my-ca}\n  keyAlgorithm: RSA-4096\n  webhooks:\n    - service: op-webhook\n      namespace: ops\n      configurations: [MutatingWebhookConfiguration/op-defaulter]\n",
        )
        .certificates;
        assert_eq!(
            c.ca,
            CaSource::Secret(crate::names::SecretRef::new("cert-manager", "my-ca"))
        );
        assert_eq!(c.key, crate::pki::KeyAlgorithm::Rsa4096);
        assert_eq!(
            c.webhooks,
            [WebhookCert {
                service: "op-webhook".into(),
                namespace: "ops".into(),
                secret_prefix: "op-webhook".into(),
                configurations: vec![(
                    "MutatingWebhookConfiguration".into(),
                    "op-defaulter".into()
                )],
            }]
        );
    }

    #[test]
    fn certificate_settings_that_cannot_work_are_refused_where_they_are() {
        let e = parse_err("certificates:\n  validityDays: 20\n");
        assert_eq!(e.field.as_deref(), Some("certificates.renewBeforeDays"));
        assert_eq!(e.line, Some(2));
        assert!(
            e.message
                .contains("must be less than the shortest validity (20 days)"),
            "{}",
            e.message
        );
        let e = parse_err("certificates:\n  renewBeforeDays: 0\n");
        assert!(e.message.contains("from 1 to 36500"), "{}", e.message);
        let e = parse_err("certificates:\n  keyAlgorithm: DSA\n");
        assert!(e.message.contains("DSA"), "{}", e.message);
        let e = parse_err(
            "certificates:\n  webhooks:\n    - {service: a, namespace: b, configurations: [Deployment/x]}\n",
        );
        assert_eq!(
            e.field.as_deref(),
            Some("certificates.webhooks[0].configurations[0]")
        );
        let e = parse_err(
            "certificates:\n  webhooks:\n    - {service: a, namespace: b}\n    - {service: c, namespace: b, secretPrefix: a}\n",
        );
        assert_eq!(
            e.field.as_deref(),
            Some("certificates.webhooks[1].secretPrefix")
        );
        let e = parse_err("certificates:\n  ca: {secretName: Not_A_Name}\n");
        assert_eq!(e.field.as_deref(), Some("certificates.ca.secretName"));
    }
}
