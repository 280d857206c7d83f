//! Values one step publishes for others: known only once that step is applied.
//!
//! A step declares its outputs ([`OutputSpec`]): a name, the object it is read from, and where in
//! that object (JSON pointers, the first that holds a value wins). Providers that need another
//! step's output take it from [`Outputs`] as a [`Deferred`] value: [`Deferred::Known`] once the
//! engine has read it, [`Deferred::Unknown`] before. Every transformation a provider makes (string
//! formatting, parsing, encoding) goes through [`Deferred::map`] and friends, so a value derived
//! from an unknown one is itself unknown — it can never turn into garbage that looks like a value.
//!
//! An unknown value placed into an object with [`Deferred::into_json`] marks that field: the
//! [`crate::Manifest`] built from the object records its JSON pointer in
//! [`crate::Manifest::unknown`] and holds `null` there. The engine never sends such an object to
//! the API server; the plan prints the field as "(known after apply)", and apply renders the object
//! again once the value is published.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How an unknown value reads to a person (only printers use it).
pub const UNKNOWN_TEXT: &str = "(known after apply)";

/// The key of the placeholder object [`Deferred::into_json`] puts where a value is unknown. It
/// cannot be a Kubernetes field name (a NUL byte), and [`crate::Manifest::from_value`] removes
/// every placeholder, so it never leaves this crate.
pub(crate) const PLACEHOLDER_KEY: &str = "\u{0}vz:known-after-apply";

/// A value that may be known only after apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferred<T> {
    /// The value.
    Known(T),
    /// Not known until an earlier step is applied.
    Unknown,
}

impl<T> Deferred<T> {
    /// The value, if known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Deferred::Known(v) => Some(v),
            Deferred::Unknown => None,
        }
    }

    /// Whether the value is known.
    pub fn is_known(&self) -> bool {
        matches!(self, Deferred::Known(_))
    }

    /// Transform the value, if known.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Deferred<U> {
        match self {
            Deferred::Known(v) => Deferred::Known(f(v)),
            Deferred::Unknown => Deferred::Unknown,
        }
    }

    /// Transform the value with a function that may itself give an unknown value.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Deferred<U>) -> Deferred<U> {
        match self {
            Deferred::Known(v) => f(v),
            Deferred::Unknown => Deferred::Unknown,
        }
    }

    /// Both values, known only when both are.
    pub fn zip<U>(self, other: Deferred<U>) -> Deferred<(T, U)> {
        match (self, other) {
            (Deferred::Known(a), Deferred::Known(b)) => Deferred::Known((a, b)),
            _ => Deferred::Unknown,
        }
    }

    /// Borrow the value.
    pub fn as_ref(&self) -> Deferred<&T> {
        match self {
            Deferred::Known(v) => Deferred::Known(v),
            Deferred::Unknown => Deferred::Unknown,
        }
    }
}

impl<T: Into<Value>> Deferred<T> {
    /// The value as JSON for an object's body: the value itself, or a placeholder that
    /// [`crate::Manifest::from_value`] turns into an unknown field.
    pub fn into_json(self) -> Value {
        match self {
            Deferred::Known(v) => v.into(),
            Deferred::Unknown => placeholder(),
        }
    }
}

impl<T: fmt::Display> Deferred<T> {
    /// For people only (descriptions, messages): the value, or "(known after apply)". Deliberately
    /// not `Display`, so that a provider cannot format an unknown value into an object by accident.
    pub fn shown(&self) -> String {
        match self {
            Deferred::Known(v) => v.to_string(),
            Deferred::Unknown => UNKNOWN_TEXT.to_string(),
        }
    }
}

fn placeholder() -> Value {
    let mut map = serde_json::Map::new();
    map.insert(PLACEHOLDER_KEY.to_string(), Value::Bool(true));
    Value::Object(map)
}

/// Whether `v` is the placeholder of an unknown value.
pub(crate) fn is_placeholder(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 1 && m.contains_key(PLACEHOLDER_KEY))
}

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
    /// The value of `step`'s output `name`: unknown until the step published it.
    pub fn get(&self, step: &str, name: &str) -> Deferred<String> {
        match self.known(step, name) {
            Some(v) => Deferred::Known(v.to_string()),
            None => Deferred::Unknown,
        }
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
    fn unknown_values_read_as_known_after_apply_only_when_printed() {
        let d: Deferred<String> = Deferred::Unknown;
        assert_eq!(d.shown(), UNKNOWN_TEXT);
        assert_eq!(
            Deferred::Known("a").zip(Deferred::<u8>::Unknown),
            Deferred::Unknown
        );
        assert_eq!(
            Deferred::Known(2).and_then(|n| Deferred::Known(n * 2)),
            Deferred::Known(4)
        );
    }
}
