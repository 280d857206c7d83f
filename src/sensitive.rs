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
        || looks_like_key_name(path)
}

fn looks_like_key_name(path: &str) -> bool {
    let last = path
        .rsplit(['.', '['])
        .next()
        .unwrap_or(path)
        .trim_matches(|c| c == '"' || c == ']');
    let l = last.to_ascii_lowercase();
    l.ends_with(".key")
        || l == "key"
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
                if val.is_string() && looks_like_key_name(k) {
                    *val = Value::String(MASK.into());
                } else {
                    mask_key_fields(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_key_fields),
        _ => {}
    }
}

/// Field changes of an object of `kind` with sensitive values masked.
pub fn mask_fields(kind: &str, fields: &mut [FieldChange]) {
    for f in fields {
        if is_sensitive_path(kind, &f.path) {
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
