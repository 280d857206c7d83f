//! Desired Kubernetes objects and the steps that group them.
//!
//! A [`Manifest`] is one object as `vz` wants it, kept as JSON so every kind (built-in or custom) is
//! handled alike, with the fields whose values are known only after apply and how much of the object
//! `vz` owns ([`Ownership`]). A [`Step`] is a provider's group of objects: a node of the plan's
//! dependency graph.
//!
//! What a manifest asks of the engine beyond applying its body is described here too: a Secret
//! holding a certificate the engine issues ([`CertSpec`], with its [`Role`] and [`Layout`]; the
//! builders are in [`crate::tls`]), and values it copies from Secrets in the cluster ([`Fill`]).
//!
//! A base module: it imports only [`crate::names`], [`crate::outputs`] and [`crate::pki`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::names::SecretRef;
use crate::outputs::OutputSpec;
use crate::pki::KeyAlgorithm;

/// Label every managed object carries: `app.kubernetes.io/managed-by=vz`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "vz";
/// Label naming the platform (`environmentName`) an object belongs to.
pub const PLATFORM_LABEL: &str = "vz.dev/platform";

/// Where a certificate sits in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A self-signed CA.
    Root,
    /// A CA signed by another, which signs leaves only (Istio's plug-in CA).
    Intermediate,
    /// A TLS server certificate.
    Leaf,
}

/// The keys a certificate's Secret holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `kubernetes.io/tls`: `tls.crt` (the certificate, then its issuer's chain), `tls.key`,
    /// `ca.crt` (the root).
    Tls,
    /// Istio's plug-in CA: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`.
    IstioCa,
}

impl Layout {
    /// The key holding the certificate (the first of its chain).
    pub fn cert_key(self) -> &'static str {
        match self {
            Layout::Tls => "tls.crt",
            Layout::IstioCa => "ca-cert.pem",
        }
    }

    /// The key holding the private key.
    pub fn private_key(self) -> &'static str {
        match self {
            Layout::Tls => "tls.key",
            Layout::IstioCa => "ca-key.pem",
        }
    }

    /// The key holding the CAs its holder trusts (the root of its chain, or every root of a CA
    /// rotation's overlap).
    pub fn trust_key(self) -> &'static str {
        match self {
            Layout::Tls => "ca.crt",
            Layout::IstioCa => "root-cert.pem",
        }
    }

    /// Every key the Secret holds.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Layout::Tls => &["tls.crt", "tls.key", "ca.crt"],
            Layout::IstioCa => &[
                "ca-cert.pem",
                "ca-key.pem",
                "root-cert.pem",
                "cert-chain.pem",
            ],
        }
    }

    /// The Secret's `type`.
    pub fn secret_type(self) -> &'static str {
        match self {
            Layout::Tls => "kubernetes.io/tls",
            Layout::IstioCa => "Opaque",
        }
    }
}

/// What to issue into a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSpec {
    /// Root, intermediate or leaf.
    pub role: Role,
    /// The subject's common name; with `random_suffix`, a prefix.
    pub common_name: String,
    /// Append `-` and 8 random letters to the common name at each issue.
    pub random_suffix: bool,
    /// Subject alternative names (empty while unknown: the manifest then has unknown fields).
    pub sans: Vec<String>,
    /// Validity, in days.
    pub validity_days: i64,
    /// The key's algorithm.
    pub key: KeyAlgorithm,
    /// Issue again this many days before expiry.
    pub renew_before_days: i64,
    /// For a CA `vz` issues itself: how long a rotation keeps the old and the new CA side by side,
    /// in seconds (`certificates.caOverlap`; see [`crate::certificates`]). 0 for the others.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overlap_secs: i64,
    /// The Secret of the CA that signs it (its `tls.crt` and `tls.key`); `None` for a root.
    pub issuer: Option<SecretRef>,
    /// The keys of its Secret.
    pub layout: Layout,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Where a copied value goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FillTarget {
    /// The field at this JSON pointer.
    Pointer(String),
    /// `clientConfig.caBundle` of every entry of a webhook configuration's `webhooks`, as the
    /// entries are in the cluster.
    EveryWebhook,
    /// The whole `data` of a Secret: a copy of every key of the source (`keys` is then empty).
    Data,
}

/// A value the engine copies from a Secret in the cluster (base64, as a Secret's `data` holds
/// it, which is also how `caBundle` fields take it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// Where it goes.
    pub target: FillTarget,
    /// The Secret it is read from.
    pub from: SecretRef,
    /// Its `data` keys to read, the first present wins (none for [`FillTarget::Data`], which
    /// copies them all).
    pub keys: Vec<String>,
}

/// How much of an object `vz` owns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ownership {
    /// The whole object: `vz` creates it, updates it and deletes it, and labels it as managed.
    #[default]
    Owned,
    /// Only the fields `vz` sends (server-side apply as field manager `vz`) of an object that
    /// someone else creates — say, the `caBundle` of another operator's webhook configuration.
    /// `vz` never creates or deletes it and puts no labels on it; on destroy or removal it gives
    /// its fields up.
    Patched,
}

/// One desired Kubernetes object. Its `Debug` output leaves a Secret's values out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `apiVersion`, e.g. `networking.k8s.io/v1`.
    pub api_version: String,
    /// `kind`, e.g. `NetworkPolicy`.
    pub kind: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// The whole object as JSON, including `apiVersion`, `kind` and `metadata`. Fields whose value
    /// is not known yet hold `null`. Shared: a plan holds thousands of manifests, and copies of them
    /// (the plan's, an apply's) cost a pointer; `Arc::make_mut` changes one copy alone.
    pub body: Arc<Value>,
    /// JSON pointers (RFC 6901) of the fields whose values are known only after an earlier step is
    /// applied (see [`crate::outputs::Deferred`]). An object with any is never sent to the API
    /// server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// How much of the object `vz` owns.
    #[serde(default)]
    pub ownership: Ownership,
    /// Set when an existing object of this name that `vz` did not create must not be taken over
    /// unless the configuration says so (`adopt:`): what such an object probably is, and what to
    /// do instead (e.g. "an Istio installed by someone else; ...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<String>,
    /// Set on a Secret that holds a certificate `vz` issues: the body has no `data`; the engine
    /// issues the key and certificate at apply time (never at plan time) or keeps the ones in the
    /// cluster, and re-issues them when [`CertSpec`] says they are due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertSpec>,
    /// Fields whose values the engine copies from Secrets in the cluster when it plans and applies
    /// (a CA bundle): not part of the body, which holds `null` there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fills: Vec<Fill>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = Value::clone(&self.body);
        if self.kind == "Secret"
            && let Some(map) = body.as_object_mut()
        {
            for field in ["data", "stringData"] {
                if let Some(Value::Object(entries)) = map.get_mut(field) {
                    entries
                        .values_mut()
                        .for_each(|v| *v = Value::String("(sensitive value)".into()));
                }
            }
        }
        f.debug_struct("Manifest")
            .field("api_version", &self.api_version)
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("body", &body)
            .field("unknown", &self.unknown)
            .field("ownership", &self.ownership)
            .field("exclusive", &self.exclusive)
            .field("certificate", &self.certificate)
            .field("fills", &self.fills)
            .finish()
    }
}

impl Manifest {
    /// A manifest from a typed `k8s-openapi` object.
    ///
    /// # Panics
    /// Never for `k8s-openapi` types: they always serialize to a JSON object with a name.
    pub fn from_typed<K>(obj: &K) -> Manifest
    where
        K: k8s_openapi::Resource
            + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
            + Serialize,
    {
        let meta = obj.metadata();
        #[allow(clippy::expect_used)]
        let body = serde_json::to_value(obj).expect("k8s-openapi objects serialize to JSON");
        Manifest {
            api_version: K::API_VERSION.to_string(),
            kind: K::KIND.to_string(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            body: Arc::new(body),
            unknown: Vec::new(),
            ownership: Ownership::Owned,
            exclusive: None,
            certificate: None,
            fills: Vec::new(),
        }
    }

    /// A manifest from a JSON object, for kinds without a typed struct (custom resources, CRDs).
    /// `apiVersion`, `kind`, `metadata.name` and `metadata.namespace` are read from the body.
    /// Values placed with [`crate::outputs::Deferred::into_json`] that are unknown become `null`
    /// fields listed in [`Manifest::unknown`].
    pub fn from_value(mut body: Value) -> Manifest {
        let mut unknown = Vec::new();
        take_placeholders(&mut body, &mut String::new(), &mut unknown);
        let text = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
        Manifest {
            api_version: text("/apiVersion").unwrap_or_default(),
            kind: text("/kind").unwrap_or_default(),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name").unwrap_or_default(),
            body: Arc::new(body),
            unknown,
            ownership: Ownership::Owned,
            exclusive: None,
            certificate: None,
            fills: Vec::new(),
        }
    }

    /// The same object, of which `vz` owns only the fields it sends ([`Ownership::Patched`]).
    pub fn patched(mut self) -> Manifest {
        self.ownership = Ownership::Patched;
        self
    }

    /// The same object, which `vz` creates itself and does not take over without the
    /// configuration's `adopt:` ([`Manifest::exclusive`]); `what` says what an existing one
    /// probably is and what to do instead.
    pub fn exclusive(mut self, what: &str) -> Manifest {
        self.exclusive = Some(what.to_string());
        self
    }

    /// Whether some of its values are known only after apply.
    pub fn has_unknown(&self) -> bool {
        !self.unknown.is_empty()
    }

    /// sha256 (hex) of the canonical JSON of the body: equal bodies give equal hashes.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(canonical_json(&self.body)))
    }

    /// `Kind namespace/name`, or `Kind name` when cluster-scoped: how the object is named to users.
    pub fn display_name(&self) -> String {
        display_name(&self.kind, self.namespace.as_deref(), &self.name)
    }

    /// Set a label in `metadata.labels`.
    pub fn set_label(&mut self, key: &str, value: &str) {
        if let Some(meta) = Arc::make_mut(&mut self.body)
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(key.to_string(), Value::String(value.to_string()));
            }
        }
    }
}

/// `Kind namespace/name`, or `Kind name` when cluster-scoped.
pub fn display_name(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The stable address of an object: `<step>/<Kind>/<namespace>/<name>`, or `<step>/<Kind>/<name>` when
/// cluster-scoped.
pub fn address(step: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{step}/{kind}/{ns}/{name}"),
        None => format!("{step}/{kind}/{name}"),
    }
}

/// Canonical JSON bytes of a value: keys sorted, no whitespace.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    // serde_json's Map is ordered by key (the `preserve_order` feature is not enabled), so the
    // compact form is canonical; `Display` writes it and cannot fail.
    value.to_string().into_bytes()
}

/// Replace every unknown-value placeholder under `v` with `null`, collecting its JSON pointer.
fn take_placeholders(v: &mut Value, at: &mut String, found: &mut Vec<String>) {
    if crate::outputs::is_placeholder(v) {
        *v = Value::Null;
        found.push(at.clone());
        return;
    }
    let len = at.len();
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                take_placeholders(child, at, found);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                at.push_str(&format!("/{i}"));
                take_placeholders(child, at, found);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// A provider's group of objects: one node of the dependency graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Stable id, used in addresses (e.g. `network-policies`).
    pub id: String,
    /// What the step does, for `vz graph` and progress output.
    pub description: String,
    /// Ids of steps that must be applied before this one.
    pub depends_on: Vec<String>,
    /// The objects, in the order they are listed to users.
    pub objects: Vec<Manifest>,
    /// Values the step publishes for the steps that depend on it.
    pub outputs: Vec<OutputSpec>,
}

impl Step {
    /// The address of one of this step's objects.
    pub fn address_of(&self, m: &Manifest) -> String {
        address(&self.id, &m.kind, m.namespace.as_deref(), &m.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::Outputs;
    use base64::Engine as _;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn ns(name: &str) -> Manifest {
        Manifest::from_typed(&Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn typed_objects_carry_api_version_and_kind() {
        let m = ns("keycloak");
        assert_eq!(m.body["apiVersion"], "v1");
        assert_eq!(m.body["kind"], "Namespace");
        assert_eq!(m.display_name(), "Namespace keycloak");
    }

    #[test]
    fn untyped_objects_take_their_identity_from_the_body() {
        let m = Manifest::from_value(serde_json::json!({
            "apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"}}));
        assert_eq!(
            (
                m.api_version.as_str(),
                m.kind.as_str(),
                m.namespace.as_deref(),
                m.name.as_str()
            ),
            (
                "security.istio.io/v1beta1",
                "PeerAuthentication",
                Some("istio-system"),
                "default"
            )
        );
    }

    #[test]
    fn hash_changes_with_content_only() {
        let a = ns("a");
        assert_eq!(a.sha256(), ns("a").sha256());
        let mut b = ns("a");
        b.set_label("x", "y");
        assert_ne!(a.sha256(), b.sha256());
        assert_eq!(a.sha256().len(), 64);
    }

    #[test]
    fn addresses_include_namespace_only_when_namespaced() {
        assert_eq!(
            address(
                "network-policies",
                "NetworkPolicy",
                Some("keycloak"),
                "keycloak"
            ),
            "network-policies/NetworkPolicy/keycloak/keycloak"
        );
        assert_eq!(
            address("namespaces", "Namespace", None, "keycloak"),
            "namespaces/Namespace/keycloak"
        );
    }

    /// An object built the way a provider builds one, from the published address: the address
    /// parsed as an IP, and base64-encoded (as a CA bundle or a secret's data would be).
    fn derived(outputs: &Outputs) -> Manifest {
        let ip = outputs.get("nginx", "ingress-ip");
        let parsed = ip
            .clone()
            .map(|s| s.parse::<std::net::IpAddr>().map(|a| a.is_ipv4()).ok());
        let encoded = ip.map(|s| base64::engine::general_purpose::STANDARD.encode(s));
        Manifest::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "ns"},
            "data": {"encoded": encoded.into_json(), "ipv4": parsed.map(|p| format!("{p:?}")).into_json()},
        }))
    }

    #[test]
    fn values_derived_from_an_unknown_output_stay_unknown() {
        let m = derived(&Outputs::default());
        assert!(m.has_unknown());
        assert_eq!(m.unknown, ["/data/encoded", "/data/ipv4"]);
        // Nothing that looks like a value is left in the object: the fields hold null.
        assert_eq!(m.body["data"], json!({"encoded": null, "ipv4": null}));
        assert!(!m.body.to_string().contains(crate::outputs::PLACEHOLDER_KEY));

        let mut o = Outputs::default();
        o.set("nginx", "ingress-ip", "192.0.2.7".into());
        let m = derived(&o);
        assert!(!m.has_unknown());
        assert_eq!(m.body["data"]["encoded"], "MTkyLjAuMi43");
        assert_eq!(m.body["data"]["ipv4"], "Some(true)");
    }
}
