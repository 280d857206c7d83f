//! Certificate Secrets, for any step that holds one: the platform CA that signs them
//! ([`platform_ca`], and the step that issues it, [`after_platform_ca`]), what to issue
//! ([`cert_spec`], [`leaf_spec`], [`istio_ca`]), and the Secret announcing it ([`certificate`]).
//!
//! A base module (of the certificate steps, of Istio's plug-in CA and of the applications'
//! certificates): it imports the configuration and the other base modules, never a provider. The
//! engine issues what a [`CertSpec`] says during apply (see [`crate::certificates`]).

use serde_json::{Map, json};

use crate::config::{CaSource, Certificates, Platform};
use crate::manifest::{CertSpec, Layout, Manifest, Role};
use crate::names::{CA_SECRET, CA_STEP, CERT_MANAGER, SecretRef};
use crate::outputs::Deferred;
use crate::pki::KeyAlgorithm;

/// Annotation naming a certificate's issuer (`<namespace>/<secret>`, or `self-signed`).
pub const ISSUER_ANNOTATION: &str = "vz.dev/issuer";
/// Annotation listing a certificate's subject alternative names, comma-separated.
pub const ALT_NAMES_ANNOTATION: &str = "vz.dev/alt-names";
/// Annotation naming a certificate's key algorithm.
pub const KEY_ANNOTATION: &str = "vz.dev/key-algorithm";
/// Annotation giving a certificate's validity, in days.
pub const VALIDITY_ANNOTATION: &str = "vz.dev/validity-days";

/// A certificate of `role` named `common_name`, issued by `issuer` (`None`: itself) with the
/// configured key, validity (a CA's or a leaf's) and renewal window, into a `kubernetes.io/tls`
/// Secret.
pub fn cert_spec(
    c: &Certificates,
    role: Role,
    common_name: &str,
    issuer: Option<SecretRef>,
) -> CertSpec {
    CertSpec {
        role,
        common_name: common_name.to_string(),
        random_suffix: false,
        sans: vec![],
        validity_days: match role {
            Role::Leaf => c.validity_days,
            Role::Root | Role::Intermediate => c.ca_validity_days,
        },
        key: c.key,
        renew_before_days: c.renew_before_days,
        overlap_secs: match role {
            Role::Root => c.ca_overlap_secs,
            Role::Intermediate | Role::Leaf => 0,
        },
        issuer,
        layout: Layout::Tls,
    }
}

/// The Secret of the CA that signs the platform's certificates.
pub fn platform_ca(p: &Platform) -> SecretRef {
    match &p.certificates.ca {
        CaSource::SelfSigned => SecretRef::new(CERT_MANAGER, CA_SECRET),
        CaSource::Secret(s) => s.clone(),
    }
}

/// Steps a step issuing from the platform CA depends on.
pub fn after_platform_ca(p: &Platform) -> Vec<String> {
    match p.certificates.ca {
        CaSource::SelfSigned => vec![CA_STEP.to_string()],
        CaSource::Secret(_) => vec![],
    }
}

/// A Secret holding a certificate issued as `spec` says; `sans` are its names (unknown until
/// the values they are made of are).
pub fn certificate(
    namespace: &str,
    name: &str,
    mut spec: CertSpec,
    sans: Deferred<Vec<String>>,
) -> Manifest {
    let mut annotations = Map::new();
    annotations.insert(
        ISSUER_ANNOTATION.into(),
        json!(match &spec.issuer {
            Some(i) => i.to_string(),
            None => "self-signed".into(),
        }),
    );
    if spec.role == Role::Leaf {
        annotations.insert(
            ALT_NAMES_ANNOTATION.into(),
            sans.as_ref().map(|s| s.join(",")).into_json(),
        );
    }
    annotations.insert(KEY_ANNOTATION.into(), json!(key_name(spec.key)));
    annotations.insert(
        VALIDITY_ANNOTATION.into(),
        json!(spec.validity_days.to_string()),
    );
    if let Deferred::Known(names) = &sans {
        if spec.role == Role::Leaf && spec.common_name.is_empty() {
            spec.common_name = names.first().cloned().unwrap_or_default();
        }
        spec.sans = names.clone();
    }
    let mut m = Manifest::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "type": spec.layout.secret_type(),
    }));
    m.certificate = Some(spec);
    m
}

/// How a key algorithm is written in configuration files and annotations.
pub fn key_name(k: KeyAlgorithm) -> &'static str {
    match k {
        KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
        KeyAlgorithm::Rsa2048 => "RSA-2048",
        KeyAlgorithm::Rsa4096 => "RSA-4096",
    }
}

/// A leaf issued by the platform CA (its common name is its first SAN).
pub fn leaf_spec(p: &Platform) -> CertSpec {
    cert_spec(&p.certificates, Role::Leaf, "", Some(platform_ca(p)))
}

/// Istio's plug-in CA (`istio-system/cacerts`): an intermediate of the platform CA.
pub fn istio_ca(p: &Platform, namespace: &str, name: &str) -> Manifest {
    let mut spec = cert_spec(
        &p.certificates,
        Role::Intermediate,
        "Istio intermediate CA",
        Some(platform_ca(p)),
    );
    spec.validity_days = spec.validity_days.min(3650);
    spec.layout = Layout::IstioCa;
    certificate(namespace, name, spec, Deferred::Known(vec![]))
}
