//! The state document's types.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

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
    /// Managed objects, in the order they were applied. Change them through [`State::upsert`],
    /// [`State::remove`] and [`State::remove_all`], which keep the address index right. Records
    /// pushed, removed or moved directly are still found (a lookup checks the index against
    /// `objects` and scans when they disagree); one overwritten in place by another address is not.
    pub objects: Vec<ObjectRecord>,
    /// The run that wrote this document and had not finished: set by a run's first write, cleared
    /// by its last. Found set, that run was killed (or its last write failed), and may have made
    /// objects it did not record: the next plan looks for them by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<Unfinished>,
    /// Applications `vz watch` found terminated, by name: a plan leaves them out (what the state
    /// still records of one is destroyed) until one is applied by name again (`--app NAME`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub terminated: BTreeMap<String, Terminated>,
    /// Where each address is in `objects`, built on the first lookup.
    #[serde(skip)]
    index: Index,
}

/// The position of each address in [`State::objects`], with the length it was built for.
#[derive(Default)]
struct Index(OnceLock<(usize, HashMap<String, usize>)>);

impl Index {
    fn build(objects: &[ObjectRecord]) -> (usize, HashMap<String, usize>) {
        let map = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.address.clone(), i))
            .collect();
        (objects.len(), map)
    }
}

impl Clone for Index {
    fn clone(&self) -> Self {
        Index(self.0.clone())
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

impl PartialEq for Index {
    /// Derived data: two states are equal when their documents are.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Index {}

/// A run that had started writing the state and not finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfinished {
    /// `apply` or `destroy`.
    pub operation: String,
    /// When it started (RFC 3339).
    pub started: String,
}

impl Unfinished {
    /// A run of `operation` starting now.
    pub fn now(operation: &str) -> Unfinished {
        Unfinished {
            operation: operation.to_string(),
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

/// An application that ended, as `vz watch` saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminated {
    /// When `vz watch` saw it end (RFC 3339).
    pub at: String,
    /// What it saw, e.g. `namespace orders deleted`.
    pub reason: String,
}

impl Terminated {
    /// Terminated now, for `reason`.
    pub fn now(reason: &str) -> Terminated {
        Terminated {
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            reason: reason.to_string(),
        }
    }
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
            unfinished: None,
            terminated: BTreeMap::new(),
            index: Index::default(),
        }
    }

    /// Where the record at `address` is in `objects`: from the index (built on first use), checked
    /// against `objects` so that a change made around it is never trusted.
    fn position(&self, address: &str) -> Option<usize> {
        let (len, map) = self.index.0.get_or_init(|| Index::build(&self.objects));
        if *len == self.objects.len() {
            match map.get(address) {
                Some(&i) if self.objects.get(i).is_some_and(|o| o.address == address) => {
                    return Some(i);
                }
                None => return None,
                Some(_) => {}
            }
        }
        self.objects.iter().position(|o| o.address == address)
    }

    /// The record at `address`, if any.
    pub fn get(&self, address: &str) -> Option<&ObjectRecord> {
        self.position(address).map(|i| &self.objects[i])
    }

    /// Insert or replace the record with the same address, keeping the position of a replaced record.
    pub fn upsert(&mut self, record: ObjectRecord) {
        match self.position(&record.address) {
            Some(i) => self.objects[i] = record,
            None => {
                let address = record.address.clone();
                self.objects.push(record);
                match self.index.0.get_mut() {
                    Some((len, map)) if *len + 1 == self.objects.len() => {
                        map.insert(address, self.objects.len() - 1);
                        *len += 1;
                    }
                    _ => self.index = Index::default(),
                }
            }
        }
    }

    /// Remove the record at `address`; returns it if it was there.
    pub fn remove(&mut self, address: &str) -> Option<ObjectRecord> {
        let idx = self.position(address)?;
        self.index = Index::default();
        Some(self.objects.remove(idx))
    }

    /// Remove the records at `addresses` at once (the others keep their order).
    pub fn remove_all(&mut self, addresses: &HashSet<&str>) {
        if addresses.is_empty() {
            return;
        }
        self.objects
            .retain(|o| !addresses.contains(o.address.as_str()));
        self.index = Index::default();
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
    fn lookups_stay_right_through_upserts_removals_and_direct_changes() {
        let mut s = State::new("default", "0.1.0");
        for i in 0..100 {
            s.upsert(record(
                &format!("namespaces/Namespace/n{i}"),
                &i.to_string(),
            ));
        }
        assert_eq!(
            s.get("namespaces/Namespace/n42").map(|r| r.uid.as_str()),
            Some("42")
        );
        s.remove("namespaces/Namespace/n0");
        assert_eq!(
            s.get("namespaces/Namespace/n42").map(|r| r.uid.as_str()),
            Some("42")
        );
        s.remove_all(&["namespaces/Namespace/n1", "namespaces/Namespace/n2"].into());
        assert_eq!(s.objects.len(), 97);
        assert!(s.get("namespaces/Namespace/n1").is_none());
        assert_eq!(s.objects[0].uid, "3", "order kept");
        // A change made on `objects` directly is seen too.
        s.objects.push(record("namespaces/Namespace/direct", "d"));
        assert_eq!(
            s.get("namespaces/Namespace/direct").map(|r| r.uid.as_str()),
            Some("d")
        );
        s.objects.swap(0, 1);
        assert_eq!(
            s.get("namespaces/Namespace/n3").map(|r| r.uid.as_str()),
            Some("3")
        );
        let copy = s.clone();
        assert_eq!(copy, s);
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
