//! Keeping secret values out of everything `vz` prints or saves.
//!
//! Secret `data` and `stringData` values, and any field whose name says it is a private key, are
//! replaced by `(sensitive value)` in plan output, JSON plans and saved plans. The state never holds
//! object content at all, only hashes.

use serde_json::Value;

use crate::diff::FieldChange;

/// What a masked value reads as.
pub const MASK: &str = "(sensitive value)";

/// Whether the field at `path` (as written by [`crate::diff`]) of an object of `kind` is sensitive.
pub fn is_sensitive_path(kind: &str, path: &str) -> bool {
    (kind == "Secret" && (path.starts_with("data") || path.starts_with("stringData")))
        || is_key_name(last_segment(path))
}

/// The last field name or map key of a path like `spec.a[0].b` or `data["tls.key"]`.
fn last_segment(path: &str) -> &str {
    if let Some(inner) = path.strip_suffix("\"]")
        && let Some(start) = inner.rfind("[\"")
    {
        return &inner[start + 2..];
    }
    path.rsplit(['.', ']']).next().unwrap_or(path)
}

/// Whether a field or map key of this name holds a secret (`tls.key`, `privateKey`, `password`).
/// A field named just `key` is a reference (a label selector's, a ConfigMap item's), not a key.
fn is_key_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.ends_with(".key")
        || l.contains("privatekey")
        || l.contains("private_key")
        || l == "password"
        || l == "token"
}

/// A copy of `obj` (a whole object of `kind`) with sensitive values masked.
pub fn mask_object(kind: &str, obj: &Value) -> Value {
    let mut v = obj.clone();
    if kind == "Secret"
        && let Some(map) = v.as_object_mut()
    {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(entries)) = map.get_mut(field) {
                for value in entries.values_mut() {
                    *value = Value::String(MASK.into());
                }
            }
        }
    }
    mask_key_fields(&mut v);
    v
}

fn mask_key_fields(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if val
                    .as_str()
                    .is_some_and(|s| is_key_name(k) || holds_private_key(s))
                {
                    *val = Value::String(MASK.into());
                } else {
                    mask_key_fields(val);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if item.as_str().is_some_and(holds_private_key) {
                    *item = Value::String(MASK.into());
                } else {
                    mask_key_fields(item);
                }
            }
        }
        _ => {}
    }
}

/// Whether a string value is (or contains) a PEM private key, whatever its field is called.
fn holds_private_key(s: &str) -> bool {
    s.contains("PRIVATE KEY-----")
}

/// Field changes of an object of `kind` with sensitive values masked.
pub fn mask_fields(kind: &str, fields: &mut [FieldChange]) {
    for f in fields {
        let pem = |v: &Option<Value>| {
            v.as_ref()
                .and_then(Value::as_str)
                .is_some_and(holds_private_key)
        };
        if is_sensitive_path(kind, &f.path) || pem(&f.before) || pem(&f.after) {
            for v in [&mut f.before, &mut f.after].into_iter().flatten() {
                *v = Value::String(MASK.into());
            }
        } else {
            for v in [&mut f.before, &mut f.after].into_iter().flatten() {
                mask_key_fields(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_data_is_masked_and_everything_else_kept() {
        let s = json!({"kind": "Secret", "metadata": {"name": "tls"},
                       "data": {"tls.key": "LS0t", "tls.crt": "Q0VSVA=="}, "stringData": {"a": "b"}});
        let m = mask_object("Secret", &s);
        assert_eq!(m["data"]["tls.key"], MASK);
        assert_eq!(m["data"]["tls.crt"], MASK);
        assert_eq!(m["stringData"]["a"], MASK);
        assert_eq!(m["metadata"]["name"], "tls");
    }

    #[test]
    fn fields_named_like_keys_are_masked_in_any_kind() {
        let cm = json!({"kind": "ConfigMap", "data": {"ca.crt": "cert", "server.key": "secret"}});
        let m = mask_object("ConfigMap", &cm);
        assert_eq!(m["data"]["server.key"], MASK);
        assert_eq!(m["data"]["ca.crt"], "cert");
    }

    #[test]
    fn references_named_key_are_kept_and_pem_keys_masked_anywhere() {
        let d = json!({"kind": "Deployment", "spec": {
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]},
            "template": {"spec": {"volumes": [{"configMap": {"items": [{"key": "root-cert.pem", "path": "root-cert.pem"}]}}],
                "containers": [{"env": [{"name": "K", "value": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----"}]}]}}}});
        let m = mask_object("Deployment", &d);
        assert_eq!(m["spec"]["selector"]["matchExpressions"][0]["key"], "app");
        assert_eq!(
            m["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"][0]["key"],
            "root-cert.pem"
        );
        assert_eq!(
            m["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            MASK
        );
        let args = json!({"args": ["--key", "-----BEGIN PRIVATE KEY-----\nMII"]});
        assert_eq!(mask_object("Pod", &args)["args"], json!(["--key", MASK]));
        let mut f = vec![FieldChange {
            path: "spec.template.spec.containers[0].env[0].value".into(),
            before: None,
            after: Some(json!("-----BEGIN EC PRIVATE KEY-----")),
            unknown: false,
        }];
        mask_fields("Deployment", &mut f);
        assert_eq!(f[0].after, Some(json!(MASK)));
        assert!(!is_sensitive_path(
            "Deployment",
            "spec.selector.matchExpressions[0].key"
        ));
        assert!(is_sensitive_path("ConfigMap", "data[\"tls.key\"]"));
        assert!(is_sensitive_path("ConfigMap", "spec.privateKey"));
    }

    #[test]
    fn field_changes_of_secret_data_are_masked() {
        let mut f = vec![
            FieldChange {
                path: "data[\"tls.key\"]".into(),
                before: Some(json!("old")),
                after: Some(json!("new")),
                unknown: false,
            },
            FieldChange {
                path: "metadata.labels.a".into(),
                before: None,
                after: Some(json!("x")),
                unknown: false,
            },
        ];
        mask_fields("Secret", &mut f);
        assert_eq!(f[0].before, Some(json!(MASK)));
        assert_eq!(f[0].after, Some(json!(MASK)));
        assert_eq!(f[1].after, Some(json!("x")));
    }
}
