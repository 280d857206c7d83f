//! Field-level differences between two versions of a Kubernetes object.
//!
//! Objects are compared after [`normalize`] strips what the API server maintains by itself
//! (`managedFields`, `resourceVersion`, `uid`, timestamps, `status`), so a difference is always a
//! difference a user could care about. Paths read like `spec.ingress[0].ports[1].port` and
//! `metadata.labels["verrazzano.io/namespace"]`.

use serde_json::{Map, Value};
use vz_providers::Manifest;

/// One field that differs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldChange {
    /// Path of the field.
    pub path: String,
    /// Value before (`None`: the field is added).
    pub before: Option<Value>,
    /// Value after (`None`: the field is removed, or its value is not known yet).
    pub after: Option<Value>,
    /// The value after is not known until an earlier step is applied: "(known after apply)".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "deletionGracePeriodSeconds",
];

/// A copy of `obj` without the fields the API server maintains.
pub fn normalize(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in SERVER_METADATA {
                meta.remove(*k);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                ann.remove("kubectl.kubernetes.io/last-applied-configuration");
                if ann.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    v
}

/// Every field that differs between `before` and `after`, in document order.
pub fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk(&mut String::new(), before, after, &mut out);
    out
}

fn walk(path: &mut String, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => objects(path, a, b, out),
        (Value::Array(a), Value::Array(b)) => {
            let len = path.len();
            for i in 0..a.len().max(b.len()) {
                path.push_str(&format!("[{i}]"));
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => walk(path, x, y, out),
                    (x, y) => out.push(FieldChange {
                        path: path.clone(),
                        before: x.cloned(),
                        after: y.cloned(),
                        unknown: false,
                    }),
                }
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange {
            path: path.clone(),
            before: Some(a.clone()),
            after: Some(b.clone()),
            unknown: false,
        }),
    }
}

/// The fields of `m` whose values are not known yet ([`Manifest::unknown`]), each with its value in
/// `before` when there is one: what the plan shows as "(known after apply)".
pub fn unknown_fields(before: Option<&Value>, m: &Manifest) -> Vec<FieldChange> {
    m.unknown
        .iter()
        .map(|pointer| FieldChange {
            path: display_path(&m.body, pointer),
            before: before.and_then(|b| b.pointer(pointer)).cloned(),
            after: None,
            unknown: true,
        })
        .collect()
}

/// A JSON pointer into `doc` written as a field path (`spec.rules[0].host`).
fn display_path(doc: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut at = doc;
    for raw in pointer.split('/').skip(1) {
        let key = raw.replace("~1", "/").replace("~0", "~");
        match at {
            Value::Array(items) => {
                path.push_str(&format!("[{key}]"));
                at = key
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .unwrap_or(&Value::Null);
            }
            _ => {
                push_key(&mut path, &key);
                at = at.get(&key).unwrap_or(&Value::Null);
            }
        }
    }
    path
}

fn objects(
    path: &mut String,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    out: &mut Vec<FieldChange>,
) {
    let mut keys: Vec<&String> = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .collect();
    keys.sort();
    let len = path.len();
    for k in keys {
        push_key(path, k);
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) => walk(path, x, y, out),
            // An added or removed map is listed field by field.
            (None, Some(y @ Value::Object(m))) if !m.is_empty() => walk(path, &empty(), y, out),
            (Some(x @ Value::Object(m)), None) if !m.is_empty() => walk(path, x, &empty(), out),
            (x, y) => out.push(FieldChange {
                path: path.clone(),
                before: x.cloned(),
                after: y.cloned(),
                unknown: false,
            }),
        }
        path.truncate(len);
    }
}

fn empty() -> Value {
    Value::Object(Map::new())
}

fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str(&format!("[{}]", Value::String(key.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_values_are_listed_with_what_they_replace() {
        let host: vz_providers::Deferred<String> = vz_providers::Deferred::Unknown;
        let m = Manifest::from_value(json!({
            "kind": "Ingress",
            "metadata": {"annotations": {"cert-manager.io/common-name": host.clone().into_json()}},
            "spec": {"rules": [{"host": host.into_json(), "port": 1}]},
        }));
        let created = unknown_fields(None, &m);
        let paths: Vec<&str> = created.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.annotations[\"cert-manager.io/common-name\"]",
                "spec.rules[0].host"
            ]
        );
        assert!(
            created
                .iter()
                .all(|f| f.unknown && f.before.is_none() && f.after.is_none())
        );
        let before = json!({"spec": {"rules": [{"host": "a.192.0.2.1.nip.io"}]}});
        let updated = unknown_fields(Some(&before), &m);
        assert_eq!(updated[1].before, Some(json!("a.192.0.2.1.nip.io")));
        assert!(updated[1].unknown);
    }

    #[test]
    fn equal_objects_have_no_difference() {
        let v = json!({"spec": {"a": [1, {"b": 2}]}});
        assert!(diff(&v, &v).is_empty());
    }

    #[test]
    fn a_changed_port_is_reported_at_its_path() {
        let a = json!({"spec": {"ingress": [{"ports": [{"port": 8775}]}]}});
        let b = json!({"spec": {"ingress": [{"ports": [{"port": 9999}]}]}});
        assert_eq!(
            diff(&a, &b),
            vec![FieldChange {
                path: "spec.ingress[0].ports[0].port".into(),
                before: Some(json!(8775)),
                after: Some(json!(9999)),
                unknown: false,
            }]
        );
    }

    #[test]
    fn keys_with_dots_or_slashes_are_quoted() {
        let a = json!({"metadata": {"labels": {}}});
        let b = json!({"metadata": {"labels": {"verrazzano.io/namespace": "x"}}});
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "metadata.labels[\"verrazzano.io/namespace\"]");
        assert_eq!(d[0].before, None);
    }

    #[test]
    fn extra_and_missing_list_elements_are_added_and_removed() {
        let a = json!({"l": [1, 2, 3]});
        let b = json!({"l": [1, 5]});
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].path.as_str(), d[0].after.clone()),
            ("l[1]", Some(json!(5)))
        );
        assert_eq!((d[1].path.as_str(), d[1].after.clone()), ("l[2]", None));
    }

    #[test]
    fn normalize_drops_server_maintained_fields_only() {
        let live = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "uid": "1", "resourceVersion": "9", "managedFields": [],
                         "creationTimestamp": "t", "labels": {"a": "b"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        });
        assert_eq!(
            normalize(&live),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "x", "labels": {"a": "b"}},
                   "spec": {"finalizers": ["kubernetes"]}})
        );
    }

    #[test]
    fn an_added_map_is_listed_field_by_field() {
        let a = json!({"metadata": {"name": "x"}});
        let b = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}});
        let paths: Vec<_> = diff(&a, &b).into_iter().map(|c| c.path).collect();
        assert_eq!(paths, ["metadata.labels.a", "metadata.labels.b"]);
        let back: Vec<_> = diff(&b, &a)
            .into_iter()
            .map(|c| (c.path, c.after))
            .collect();
        assert_eq!(
            back,
            [
                ("metadata.labels.a".to_string(), None),
                ("metadata.labels.b".to_string(), None)
            ]
        );
    }

    #[test]
    fn a_type_change_is_one_difference() {
        let d = diff(&json!({"a": {"b": 1}}), &json!({"a": "x"}));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "a");
    }
}
