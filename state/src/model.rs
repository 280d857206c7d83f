//! The state document's types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state format this build writes and the newest it can read.
pub const FORMAT_VERSION: u32 = 1;

/// Everything `vz` knows about what it applied to one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version of the document ([`FORMAT_VERSION`] when written by this build).
    pub version: u32,
    /// Version of the `vz` that last wrote the document.
    pub tool_version: String,
    /// A UUID made when the state was first created; it identifies this platform's history.
    pub lineage: String,
    /// Goes up by one on every write.
    pub serial: u64,
    /// The platform (`environmentName`) this state belongs to.
    pub platform: String,
    /// Managed objects, in the order they were applied.
    pub objects: Vec<ObjectRecord>,
}

/// One Kubernetes object that `vz` applied and manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Stable address: `<step>/<Kind>/<namespace>/<name>`, or `<step>/<Kind>/<name>` when cluster-scoped.
    pub address: String,
    /// The step that owns the object.
    pub step: String,
    /// `apiVersion` of the object.
    pub api_version: String,
    /// `kind` of the object.
    pub kind: String,
    /// Namespace, for namespaced objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid` the API server gave the object.
    pub uid: String,
    /// sha256 (hex) of the canonical JSON of the manifest that was applied.
    pub manifest_sha256: String,
    /// `metadata.resourceVersion` right after `vz` last wrote (or checked) the object: while the
    /// live object still has it, nobody changed it since, and a plan needs no dry run for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Steps the owning step depends on (used to order deletion when the config is gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The object existed before `vz` took it over: destroy releases it (removes `vz`'s fields)
    /// instead of deleting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// `vz` owns only the fields it patched into the object, which someone else created: destroy
    /// gives those fields up instead of deleting the object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub patched: bool,
    /// Outputs of the owning step read from this object, by name (for plans without refresh).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// For a Secret holding a certificate `vz` issued: what the certificate says (never its key),
    /// so that a plan without refresh still knows when it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertFacts>,
}

/// What the state records about a certificate `vz` issued: public facts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFacts {
    /// sha256 of its DER encoding, hex.
    pub fingerprint: String,
    /// Serial number, hex.
    pub serial: String,
    /// Subject alternative names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// Its subject key identifier, hex (what the certificates it signs name as their issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Its issuer's subject key identifier, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_key_id: Option<String>,
    /// Key algorithm, e.g. `EC P-256`.
    pub key_algorithm: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

impl State {
    /// A new, empty state for `platform`, with a fresh lineage and serial 0 (nothing written yet).
    pub fn new(platform: &str, tool_version: &str) -> Self {
        State {
            version: FORMAT_VERSION,
            tool_version: tool_version.to_string(),
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            platform: platform.to_string(),
            objects: Vec::new(),
        }
    }

    /// The record at `address`, if any.
    pub fn get(&self, address: &str) -> Option<&ObjectRecord> {
        self.objects.iter().find(|o| o.address == address)
    }

    /// Insert or replace the record with the same address, keeping the position of a replaced record.
    pub fn upsert(&mut self, record: ObjectRecord) {
        match self
            .objects
            .iter_mut()
            .find(|o| o.address == record.address)
        {
            Some(existing) => *existing = record,
            None => self.objects.push(record),
        }
    }

    /// Remove the record at `address`; returns it if it was there.
    pub fn remove(&mut self, address: &str) -> Option<ObjectRecord> {
        let idx = self.objects.iter().position(|o| o.address == address)?;
        Some(self.objects.remove(idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(address: &str, uid: &str) -> ObjectRecord {
        ObjectRecord {
            address: address.into(),
            step: "namespaces".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: address.rsplit('/').next().unwrap_or_default().into(),
            uid: uid.into(),
            manifest_sha256: "00".into(),
            resource_version: None,
            depends_on: vec![],
            adopted: false,
            patched: false,
            outputs: BTreeMap::new(),
            certificate: None,
        }
    }

    #[test]
    fn upsert_replaces_in_place_and_appends_new_addresses() {
        let mut s = State::new("default", "0.1.0");
        s.upsert(record("namespaces/Namespace/a", "1"));
        s.upsert(record("namespaces/Namespace/b", "2"));
        s.upsert(record("namespaces/Namespace/a", "3"));
        let uids: Vec<_> = s.objects.iter().map(|o| o.uid.as_str()).collect();
        assert_eq!(uids, ["3", "2"]);
    }

    #[test]
    fn remove_returns_the_record_once() {
        let mut s = State::new("default", "0.1.0");
        s.upsert(record("namespaces/Namespace/a", "1"));
        assert!(s.remove("namespaces/Namespace/a").is_some());
        assert!(s.remove("namespaces/Namespace/a").is_none());
        assert!(s.objects.is_empty());
    }

    #[test]
    fn new_states_get_distinct_lineages() {
        assert_ne!(State::new("x", "0").lineage, State::new("x", "0").lineage);
    }
}
