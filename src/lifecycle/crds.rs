//! CustomResourceDefinitions never stop serving a version their objects may be stored in.
//!
//! The API server records in a CRD's `status.storedVersions` every version it has stored objects
//! as, and refuses an update whose `spec.versions` leaves one out ("must appear in
//! spec.versions"): objects stored that way could no longer be read. Istio 1.30 stores its
//! networking and security kinds as `v1`, which 1.19 does not list, so a CRD moved to 1.30 cannot
//! be put back to 1.19's definition as it was, whether by a rollback or by a configuration that
//! moves back. [`StoredVersions`] adds each stored version the desired definition leaves out, as
//! a served version that is not the storage one (with the storage version's schema, columns and
//! subresources), to what the plan's dry run compares and to what apply sends; [`restorable`]
//! does the same for the object a rollback puts back. Nothing changes for a CRD whose stored
//! versions are all desired: the common case costs nothing.

use anyhow::Result;
use async_trait::async_trait;
use serde_json::{Value, json};
use vz_providers::{Manifest, Step};

use super::{Lifecycle, PlanContext, Planning};
use crate::cluster::Cluster;
use crate::engine::plan::Seen;

const KIND: &str = "CustomResourceDefinition";

/// The lifecycle: see the module's documentation.
pub struct StoredVersions;

struct Keep;

impl Planning for Keep {
    fn for_dry_run(&self, m: Manifest, live: Option<&Value>) -> Option<Manifest> {
        Some(match live {
            Some(live) => with_stored_versions(&m, live).unwrap_or(m),
            None => m,
        })
    }
}

#[async_trait]
impl Lifecycle for StoredVersions {
    async fn before_plan(
        &self,
        _cx: &PlanContext<'_>,
        desired: &[(&Step, &Manifest)],
        _seen: &mut Seen,
    ) -> Result<Option<Box<dyn Planning>>> {
        Ok(desired
            .iter()
            .any(|(_, m)| m.kind == KIND)
            .then(|| Box::new(Keep) as Box<dyn Planning>))
    }

    async fn before_apply(
        &self,
        _cluster: &Cluster,
        m: &Manifest,
        live: Option<&Value>,
        _renew: bool,
        _intent: Option<&str>,
    ) -> Result<Option<Manifest>> {
        Ok(live.and_then(|live| with_stored_versions(m, live)))
    }
}

/// `before`, the object a rollback puts back, with the versions the CRD stores now (`live`)
/// still served: without them the API server refuses it.
pub fn restorable(before: &Value, live: Option<&Value>) -> Option<Value> {
    if before["kind"] != KIND {
        return None;
    }
    added(before, live?)
}

/// `m` with every version `live` stores and `m` leaves out served again, or `None` when it
/// leaves none out (or is no CRD).
fn with_stored_versions(m: &Manifest, live: &Value) -> Option<Manifest> {
    if m.kind != KIND {
        return None;
    }
    let body = added(&m.body, live)?;
    let mut out = m.clone();
    out.body = body.into();
    Some(out)
}

fn added(body: &Value, live: &Value) -> Option<Value> {
    let versions = body.pointer("/spec/versions")?.as_array()?;
    let missing: Vec<&str> = live
        .pointer("/status/storedVersions")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter(|stored| !versions.iter().any(|v| v["name"] == *stored))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let template = versions
        .iter()
        .find(|v| v["storage"] == true)
        .or_else(|| versions.first())?;
    let mut out = body.clone();
    let list = out.pointer_mut("/spec/versions")?.as_array_mut()?;
    for name in missing {
        let mut version = template.clone();
        version["name"] = json!(name);
        version["served"] = json!(true);
        version["storage"] = json!(false);
        list.push(version);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(versions: &[(&str, bool)]) -> Manifest {
        let versions: Vec<Value> = versions
            .iter()
            .map(|(name, storage)| {
                json!({"name": name, "served": true, "storage": storage,
                       "schema": {"openAPIV3Schema": {"type": "object"}},
                       "subresources": {"status": {}}})
            })
            .collect();
        Manifest::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": KIND,
            "metadata": {"name": "gateways.networking.istio.io"},
            "spec": {"group": "networking.istio.io", "versions": versions},
        }))
    }

    fn stored(versions: &[&str]) -> Value {
        json!({"kind": KIND, "status": {"storedVersions": versions}})
    }

    fn names(m: &Value) -> Vec<(String, bool, bool)> {
        m["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or_default().to_string(),
                    v["served"] == true,
                    v["storage"] == true,
                )
            })
            .collect()
    }

    #[test]
    fn a_stored_version_the_definition_leaves_out_stays_served_and_not_stored() {
        // Istio 1.19's definition over a CRD Istio 1.30 stored as v1.
        let old = crd(&[("v1alpha3", true), ("v1beta1", false)]);
        let kept = with_stored_versions(&old, &stored(&["v1alpha3", "v1"])).expect("changed");
        assert_eq!(
            names(&kept.body),
            [
                ("v1alpha3".to_string(), true, true),
                ("v1beta1".to_string(), true, false),
                ("v1".to_string(), true, false),
            ]
        );
        assert_eq!(
            kept.body["spec"]["versions"][2]["schema"],
            old.body["spec"]["versions"][0]["schema"]
        );
    }

    #[test]
    fn nothing_changes_when_every_stored_version_is_desired_or_for_other_kinds() {
        let new = crd(&[("v1", true), ("v1alpha3", false), ("v1beta1", false)]);
        assert!(with_stored_versions(&new, &stored(&["v1alpha3", "v1"])).is_none());
        assert!(with_stored_versions(&new, &json!({"kind": KIND})).is_none());
        let mut other = new.clone();
        other.kind = "ConfigMap".into();
        assert!(with_stored_versions(&other, &stored(&["v9"])).is_none());
    }

    #[test]
    fn a_rollback_puts_back_the_old_definition_with_the_versions_stored_since() {
        let before = crd(&[("v1alpha3", true)]);
        let restored =
            restorable(&before.body, Some(&stored(&["v1alpha3", "v1"]))).expect("changed");
        assert_eq!(names(&restored).len(), 2);
        assert!(restorable(&before.body, None).is_none());
        assert!(restorable(&json!({"kind": "Secret"}), Some(&stored(&["v1"]))).is_none());
    }
}
