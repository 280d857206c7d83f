//! What `vz render --watch-deployment` prints: everything that runs `vz watch` in the cluster it
//! watches, for `kubectl apply -f -`.
//!
//! - Namespace `vz-system`, ServiceAccount `vz-watch-<platform>`.
//! - RBAC of least privilege, from the objects the configuration's applications make:
//!   - a Role in each of the platform's namespaces holding such objects (the applications'
//!     certificates in `istio-system`), with `get list watch patch update delete` on their kinds only;
//!   - a ClusterRole with the same on the kinds the applications have in their own namespaces
//!     (which may not exist yet when this is applied: vz makes them); to list namespaces and
//!     ApplicationConfigurations and hold the latter with a finalizer; and to delete or patch
//!     only the applications' own namespaces;
//!   - with the state in the cluster, a Role on its Secrets and Lease.
//! - The configuration (the platform file and every application file, at the same relative paths)
//!   as a ConfigMap; with DNS records, the TSIG secret from Secret `vz-watch-<platform>-tsig`.
//! - The Deployment: one replica, non-root, read-only, no capabilities; and a NetworkPolicy
//!   letting nothing in (it serves nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use vz_providers::config::oam::APPLICATION_CONFIGURATION_API;
use vz_providers::config::{Dns, TsigSecret};
use vz_state::Location;

use crate::commands::Desired;
use crate::error::CommandError;

/// The namespace the watch runs in.
pub const NAMESPACE: &str = "vz-system";
/// Where the configuration is mounted.
const CONFIG_DIR: &str = "/etc/vz";

/// The manifests, as multi-document YAML, for the watch of `desired`'s platform in `workspace`.
pub fn render(desired: &Desired, image: &str, workspace: &str) -> Result<String> {
    let objects = manifests(desired, image, workspace)?;
    let mut text = String::new();
    for o in &objects {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(o).context("cannot render the watch as YAML")?);
    }
    Ok(text)
}

/// The objects themselves.
pub fn manifests(desired: &Desired, image: &str, workspace: &str) -> Result<Vec<Value>> {
    let platform = &desired.platform;
    let name = format!("vz-watch-{}", platform.environment_name);
    let labels = json!({"app.kubernetes.io/name": "vz-watch", "app.kubernetes.io/instance": name});
    let state = platform.state.for_workspace(workspace);
    if let Location::Local { path } = &state {
        return Err(CommandError::usage(anyhow!(
            "vz watch in the cluster cannot use the local state file {}: a pod's files do not last, and nobody else could lock it",
            path.display()
        ))
        .hint("keep the state in the cluster or in S3 (state: {backend: kubernetes, namespace: vz-system}), moving it with `vz state migrate`")
        .into());
    }
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels}}),
    ];
    // What the applications' destroys delete, by namespace; their namespaces.
    let mut kinds: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    for step in desired
        .steps
        .iter()
        .filter(|s| vz_providers::applications::is_app_step(&s.id))
    {
        for m in &step.objects {
            if desired_elsewhere(&m.api_version) {
                continue;
            }
            match &m.namespace {
                Some(ns) => {
                    kinds
                        .entry(ns.clone())
                        .or_default()
                        .insert((group_of(&m.api_version), plural(&m.kind)));
                }
                None if m.kind == "Namespace" => {
                    namespaces.insert(m.name.clone());
                }
                None => {}
            }
        }
    }
    for a in &platform.applications {
        namespaces.insert(a.namespace.clone());
    }
    let mut cluster_rules = vec![
        json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}),
        json!({"apiGroups": [group_of(APPLICATION_CONFIGURATION_API)],
               "resources": ["applicationconfigurations"], "verbs": ["get", "list", "patch"]}),
    ];
    if !namespaces.is_empty() {
        cluster_rules.push(json!({"apiGroups": [""], "resources": ["namespaces"],
            "resourceNames": namespaces, "verbs": ["get", "watch", "patch", "update", "delete"]}));
    }
    // The platform's namespaces exist before any application: a Role in each. An application's
    // may not exist yet (vz makes it), so what is in those is granted cluster-wide, for the
    // kinds of the applications only.
    let mut anywhere: BTreeSet<(String, String)> = BTreeSet::new();
    for (ns, kinds) in &kinds {
        if !vz_providers::names::SYSTEM_NAMESPACES.contains(&ns.as_str()) {
            anywhere.extend(kinds.iter().cloned());
            continue;
        }
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": ns, "labels": labels}, "rules": rules_for(kinds)}));
        out.push(binding("RoleBinding", &name, Some(ns), &labels));
    }
    cluster_rules.extend(rules_for(&anywhere));
    out.insert(
        2,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels}, "rules": cluster_rules}),
    );
    out.insert(3, binding("ClusterRoleBinding", &name, None, &labels));
    let mut env = vec![json!({"name": "VZ_WORKSPACE", "value": workspace})];
    let mut env_from = Vec::new();
    match &state {
        Location::Kubernetes { namespace, .. } => {
            let role = format!("{name}-state");
            out.push(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": role, "namespace": namespace, "labels": labels},
                "rules": [
                    {"apiGroups": [""], "resources": ["secrets"],
                     "verbs": ["get", "list", "create", "update", "patch", "delete"]},
                    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                     "verbs": ["get", "create", "update", "patch", "delete"]},
                ]}),
            );
            let mut b = binding("RoleBinding", &name, Some(namespace), &labels);
            b["metadata"]["name"] = json!(role);
            b["roleRef"]["name"] = json!(role);
            out.push(b);
        }
        Location::S3 { .. } => {
            // AWS_* settings and credentials, as the s3 backend reads them.
            env_from.push(json!({"secretRef": {"name": format!("{name}-s3"), "optional": true}}));
        }
        Location::Local { .. } => {}
    }
    // The configuration, its files where they were relative to the platform file.
    let base = platform
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    files.insert(platform.source.clone());
    files.extend(platform.applications.iter().map(|a| a.source.clone()));
    let mut data = BTreeMap::new();
    let mut items = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let rel = relative(&base, f)?;
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let key = format!("file-{i}");
        data.insert(key.clone(), text);
        items.push(json!({"key": key, "path": rel}));
    }
    let config_map = format!("{name}-config");
    out.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config_map, "namespace": NAMESPACE, "labels": labels}, "data": data}));
    let mut mounts = vec![json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true})];
    let mut volumes =
        vec![json!({"name": "config", "configMap": {"name": config_map, "items": items}})];
    if let Dns::Rfc2136(dns) = &platform.dns {
        let secret = format!("{name}-tsig");
        match &dns.secret {
            TsigSecret::Env(var) => env.push(json!({"name": var,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "secret"}}})),
            TsigSecret::File(path) => {
                // Where the configuration said, under the mounted configuration when it was
                // beside it.
                let at = match relative(&base, path) {
                    Ok(rel) => Path::new(CONFIG_DIR).join(rel),
                    Err(_) if path.is_absolute() => path.clone(),
                    Err(e) => return Err(e),
                };
                volumes.push(json!({"name": "tsig", "secret": {"secretName": secret}}));
                mounts.push(
                    json!({"name": "tsig", "mountPath": at, "subPath": "secret", "readOnly": true}),
                );
            }
        }
    }
    let file = Path::new(CONFIG_DIR).join(relative(&base, &platform.source)?);
    let mut container = json!({
        "name": "vz-watch",
        "image": image,
        "args": ["watch", "-f", file, "--lock-timeout", "30s"],
        "env": env,
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if !env_from.is_empty() {
        container["envFrom"] = json!(env_from);
    }
    out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
    "spec": {
        "replicas": 1,
        // Never two at once: the second would only wait for the first one's lock.
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": name,
                "automountServiceAccountToken": true,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }}));
    out.push(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"]}}),
    );
    Ok(out)
}

/// `get list watch patch update delete` (a release is an update) on these (group, resource) pairs, a rule per group.
fn rules_for(kinds: &BTreeSet<(String, String)>) -> Vec<Value> {
    let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (g, r) in kinds {
        by_group.entry(g).or_default().push(r);
    }
    by_group
        .into_iter()
        .map(|(g, resources)| {
            json!({"apiGroups": [g], "resources": resources,
                "verbs": ["get", "list", "watch", "patch", "update", "delete"]})
        })
        .collect()
}

/// Kinds whose objects live outside the cluster (DNS records).
fn desired_elsewhere(api_version: &str) -> bool {
    api_version == vz_providers::dns_records::API_VERSION
}

fn binding(kind: &str, name: &str, namespace: Option<&str>, labels: &Value) -> Value {
    let role_kind = if kind == "ClusterRoleBinding" {
        "ClusterRole"
    } else {
        "Role"
    };
    let mut metadata = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]})
}

/// The API group of an `apiVersion` (`""` for the core group).
fn group_of(api_version: &str) -> String {
    api_version
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default()
}

/// The resource name of a kind, as the API server makes it.
fn plural(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if let Some(stem) = k.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if k.ends_with('s') {
        return format!("{k}es");
    }
    format!("{k}s")
}

/// `file` relative to `base`, refused when it is not below it (a ConfigMap cannot put it there).
fn relative(base: &Path, file: &Path) -> Result<PathBuf> {
    let rel = file.strip_prefix(base).unwrap_or(file);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(CommandError::usage(anyhow!(
            "{} is not in the directory of the platform file ({}), so the watch's ConfigMap cannot hold it there",
            file.display(),
            base.display()
        ))
        .hint("keep the application files in a directory below the platform file")
        .into());
    }
    Ok(rel.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_the_api_servers() {
        for (kind, resource) in [
            ("Gateway", "gateways"),
            ("AuthorizationPolicy", "authorizationpolicies"),
            ("DestinationRule", "destinationrules"),
            ("VirtualService", "virtualservices"),
            ("NetworkPolicy", "networkpolicies"),
            ("Secret", "secrets"),
            ("Ingress", "ingresses"),
        ] {
            assert_eq!(plural(kind), resource);
        }
    }

    #[test]
    fn a_file_outside_the_platform_files_directory_is_refused() {
        let base = Path::new("/cfg");
        assert_eq!(
            relative(base, Path::new("/cfg/apps/a.yaml")).expect("below"),
            PathBuf::from("apps/a.yaml")
        );
        assert!(relative(base, Path::new("/elsewhere/a.yaml")).is_err());
        assert!(relative(base, Path::new("/cfg/../x.yaml")).is_err());
    }
}
