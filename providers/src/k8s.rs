//! Small builders for typed Kubernetes objects that every workload provider needs: metadata, label
//! maps, RBAC rules and environment variables. Kept here so that the NGINX and Istio providers (and
//! the ones after them) write objects the same way.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, ResourceFieldSelector,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Owned strings.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// A label (or annotation, or selector) map.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Metadata of object `name` in `namespace` (`None`: cluster-scoped) with `labels`.
pub fn meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(map(labels)),
        ..Default::default()
    }
}

/// A rule of `verbs` on `resources` of the API `groups`.
pub fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..Default::default()
    }
}

/// A binding's reference to the (Cluster)Role `name`.
pub fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.to_string(),
        name: name.to_string(),
    }
}

/// An environment variable with a fixed value.
pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

/// An environment variable read from a field of the pod (`metadata.namespace`, ...).
pub fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An environment variable read from the container's resources (`limits.cpu`, ...).
pub fn resource_env(name: &str, resource: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                resource: resource.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// For the providers' tests: whether every pair of `selector` (a non-empty label map) is among
/// `labels`.
#[cfg(test)]
pub(crate) fn selects(selector: &serde_json::Value, labels: &serde_json::Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

/// For the providers' tests: the first container of a rendered Deployment.
#[cfg(test)]
pub(crate) fn first_container(deployment: &serde_json::Value) -> &serde_json::Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}
