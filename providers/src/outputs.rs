//! Values one step publishes for others: known only once that step is applied.
//!
//! A step declares its outputs ([`OutputSpec`]): a name, the object it is read from, and where in
//! that object (JSON pointers, the first that holds a value wins). Providers that need another
//! step's output take it from [`Outputs`]; while it is not known, they get [`UNKNOWN`] in its place,
//! and the plan shows the object's values as "(known after apply)". The engine reads outputs from the
//! cluster when it plans, and during apply as soon as their step is done, rendering the steps that
//! depend on them again with the real values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an unknown value reads as, in a rendered object and in the plan.
pub const UNKNOWN: &str = "(known after apply)";

/// A value a step publishes, read from one of its objects once it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Name, unique within the step.
    pub name: String,
    /// Address of the object it is read from (an object of the same step).
    pub object: String,
    /// JSON pointers into that object, tried in order; the first that holds a non-empty scalar wins.
    pub pointers: Vec<String>,
}

impl OutputSpec {
    /// The value in `obj`, if it holds one yet.
    pub fn extract(&self, obj: &Value) -> Option<String> {
        self.pointers.iter().find_map(|p| match obj.pointer(p)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }
}

/// Published values, keyed `<step>.<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs(BTreeMap<String, String>);

impl Outputs {
    /// The value of `step`'s output `name`, or [`UNKNOWN`].
    pub fn get(&self, step: &str, name: &str) -> String {
        self.known(step, name).unwrap_or(UNKNOWN).to_string()
    }

    /// The value of `step`'s output `name`, if known.
    pub fn known(&self, step: &str, name: &str) -> Option<&str> {
        self.0.get(&format!("{step}.{name}")).map(String::as_str)
    }

    /// Record a value.
    pub fn set(&mut self, step: &str, name: &str, value: String) {
        self.0.insert(format!("{step}.{name}"), value);
    }

    /// Every known value.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

/// Whether any value in `v` is still unknown.
pub fn has_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(UNKNOWN),
        Value::Array(items) => items.iter().any(has_unknown),
        Value::Object(map) => map.values().any(has_unknown),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress_ip() -> OutputSpec {
        OutputSpec {
            name: "ingress-ip".into(),
            object: "nginx/Service/ns/controller".into(),
            pointers: vec![
                "/spec/externalIPs/0".into(),
                "/status/loadBalancer/ingress/0/ip".into(),
            ],
        }
    }

    #[test]
    fn the_first_pointer_with_a_value_wins() {
        let lb = json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}});
        assert_eq!(ingress_ip().extract(&lb).as_deref(), Some("192.0.2.7"));
        let np = json!({"spec": {"externalIPs": ["198.51.100.1"]}, "status": {"loadBalancer": {}}});
        assert_eq!(ingress_ip().extract(&np).as_deref(), Some("198.51.100.1"));
        let pending = json!({"spec": {}, "status": {"loadBalancer": {}}});
        assert_eq!(ingress_ip().extract(&pending), None);
    }

    #[test]
    fn unknown_values_are_found_anywhere_in_an_object() {
        let mut outputs = Outputs::default();
        let host = format!("verrazzano.{}.nip.io", outputs.get("nginx", "ingress-ip"));
        let obj = json!({"spec": {"rules": [{"host": host}]}});
        assert!(has_unknown(&obj));
        outputs.set("nginx", "ingress-ip", "192.0.2.7".into());
        let host = format!("verrazzano.{}.nip.io", outputs.get("nginx", "ingress-ip"));
        assert_eq!(host, "verrazzano.192.0.2.7.nip.io");
        assert!(!has_unknown(&json!({"spec": {"rules": [{"host": host}]}})));
    }
}
