//! Step `istio.control-plane`: istiod, Istio's control plane, as Verrazzano v1.7.2 installs it with
//! `istioctl` (profile `default`; see `shared/reference/workloads-inventory.md`, sections 2, 3 and
//! 5), of the release the configuration names, in namespace `istio-system`. Below are the names in
//! place (`upgrade: inPlace`); under `upgrade: canary` (the default) each carries the revision
//! (`istiod-1-30-3`, `istio-1-30-3`, `istio-sidecar-injector-1-30-3`,
//! `istio-validator-1-30-3-istio-system`, `istiod-clusterrole-1-30-3-istio-system`), the
//! revision's injector has only the `rev.*` entries, and the default revision tag ([`revision_tag`],
//! step `istio.revision-tag`) takes the namespaces labelled `istio-injection=enabled` and the
//! default validation. 1.30 differs from 1.19 in istiod's environment, named ports and the
//! webhooks' AdmissionReview versions (`v1` only).
//!
//! - ServiceAccount `istiod`; ClusterRole and ClusterRoleBinding `istiod-clusterrole-istio-system`
//!   (webhook configurations, Istio's APIs, discovery, Gateway API, MCS); Role and RoleBinding
//!   `istiod` (secrets, leases, gateways in its namespace).
//! - ConfigMap `istio`: the mesh configuration (`mesh`, `meshNetworks`). Prometheus merging is off,
//!   tracing goes to Verrazzano's Jaeger collector over Istio mTLS, access logging is not set.
//! - ConfigMap `istio-sidecar-injector`: the injection policy, a compact `sidecar` template and the
//!   values it reads (image [`Image::ProxyV2`], 90 readiness failures, status port 15020).
//! - Deployment `istiod`: one replica of container `discovery` (image [`Image::Pilot`]) as uid/gid
//!   1337, with Istio's plug-in CA secret `cacerts` mounted (optional) at `/etc/cacerts`.
//! - Service `istiod`: xDS 15010, xDS/CA over TLS 15012, the webhooks on 443 → 15017, monitoring
//!   15014.
//! - MutatingWebhookConfiguration `istio-sidecar-injector` (active: namespaces labelled
//!   `istio-injection=enabled` and pods labelled `sidecar.istio.io/inject=true`; failure policy
//!   `Fail`) and ValidatingWebhookConfigurations `istio-validator-istio-system` and
//!   `istiod-default-validator`, failing closed too: Istio's charts start them at `Ignore` and
//!   istiod turns them to `Fail` once it serves, which a server-side-apply tool would then see as
//!   drift on every plan (Istio recommends `Fail` from the start to such tools). `vz` orders every
//!   Istio resource it writes after this step is ready, so nothing is refused meanwhile.
//!
//! No webhook carries a `caBundle`: istiod writes its CA into the configurations labelled
//! `istio.io/rev=default`, and `vz` must not fight it over that field.
//!
//! Not rendered: in place, the revision-tag MWC `istio-revision-tag-default` (the chart's MWC is
//! left active instead of being deactivated in its favour); the tag's Service
//! `istiod-revision-tag-default` (1.30's chart) under canary; the ClusterRoles
//! `istiod-gateway-controller-istio-system` and `istio-reader-clusterrole-istio-system`, the
//! IstioOperator `installed-state`, and PodDisruptionBudgets/autoscalers (off in Verrazzano).
//!
//! Ready when istiod is available and every webhook has the `caBundle` istiod writes: only then can
//! the API server call the injector, so the steps whose pods are injected (NGINX's) come after this
//! one.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, HTTPGetAction, KeyToPath, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServiceAccountTokenProjection, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeProjection, WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::config::{IMAGE_PULL_POLICY, Image, IstioRelease, Platform, PluginCa};
use crate::k8s::{env, field_env, map, resource_env, role_ref, rule, strings};
use crate::manifest::{Manifest, Step};
use crate::names::{
    ISTIO_CONTROL_PLANE_STEP, ISTIO_CRDS_STEP, ISTIO_REVISION_TAG_STEP, ISTIO_SYSTEM, ISTIO_TAKEN,
};
use crate::tls::{after_platform_ca, istio_ca};

/// istiod's Deployment, Service, ServiceAccount, Role and RoleBinding.
pub const ISTIOD: &str = "istiod";
/// istiod's ClusterRole and ClusterRoleBinding.
pub const CLUSTER_ROLE: &str = "istiod-clusterrole-istio-system";
/// The mesh ConfigMap.
pub const MESH_CONFIG_MAP: &str = "istio";
/// The injector's ConfigMap and its MutatingWebhookConfiguration.
pub const INJECTOR: &str = "istio-sidecar-injector";
/// Istio's plug-in CA Secret.
pub const PLUGIN_CA: &str = "cacerts";
/// The revision's ValidatingWebhookConfiguration.
pub const VALIDATOR: &str = "istio-validator-istio-system";
/// The default-revision ValidatingWebhookConfiguration istioctl adds.
pub const DEFAULT_VALIDATOR: &str = "istiod-default-validator";
/// Where istiod serves xDS and its CA over TLS (what proxies and gateways dial).
pub const ISTIOD_ADDRESS: &str = "istiod.istio-system.svc:15012";
/// The trust domain (and the cluster's DNS domain).
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The uid and gid Istio's containers run as.
pub const ISTIO_UID: i64 = 1337;
/// The revision of an unrevisioned istiod (`upgrade: inPlace`), and the revision tag that
/// namespaces labelled `istio-injection=enabled` follow.
pub const REVISION: &str = "default";
/// The default revision tag's MutatingWebhookConfiguration (`upgrade: canary`).
pub const REVISION_TAG: &str = "istio-revision-tag-default";
/// The port istiod serves its webhooks on (behind the Service's 443).
pub const WEBHOOK_PORT: i32 = 15017;

/// Labels of istiod's Deployment, pods and Service.
pub const ISTIOD_LABELS: [(&str, &str); 5] = [
    ("app", "istiod"),
    ("istio", "pilot"),
    ("istio.io/rev", REVISION),
    ("release", "istio"),
    ("operator.istio.io/component", "Pilot"),
];
/// What istiod's Deployment selects.
pub const ISTIOD_SELECTOR: [(&str, &str); 1] = [("istio", "pilot")];
/// What istiod's Service selects.
pub const ISTIOD_SERVICE_SELECTOR: [(&str, &str); 2] = [("app", "istiod"), ("istio", "pilot")];
/// The label that keeps a pod out of the injector.
pub const NO_INJECTION: (&str, &str) = ("sidecar.istio.io/inject", "false");

/// Istio's API groups: what istiod watches, and validates.
const ISTIO_GROUPS: [&str; 7] = [
    "config.istio.io",
    "security.istio.io",
    "networking.istio.io",
    "authentication.istio.io",
    "rbac.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
];
/// The groups the validating webhooks cover.
const VALIDATED_GROUPS: [&str; 4] = [
    "security.istio.io",
    "networking.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
];
/// Verrazzano's Jaeger collector, where the proxies send their Zipkin spans.
const ZIPKIN_ADDRESS: &str =
    "jaeger-operator-jaeger-collector.verrazzano-monitoring.svc.cluster.local.:9411";

/// istiod's names and labels for the platform's revision: `istiod-1-30-3`, its ConfigMaps
/// `istio-1-30-3` and `istio-sidecar-injector-1-30-3`, ... under `upgrade: canary`; Verrazzano's
/// unrevisioned `istiod`, `istio`, `istio-sidecar-injector`, ... in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The revision (`1-30-3`, or `default` in place).
    pub name: String,
    /// `-1-30-3`, or nothing in place.
    suffix: String,
    /// The release istiod runs: its environment, ports and webhooks' review versions follow it.
    release: &'static IstioRelease,
}

impl Revision {
    /// The platform's revision.
    pub fn of(p: &Platform) -> Revision {
        Revision {
            name: p.istio.revision(),
            suffix: p.istio.suffix(),
            release: p.istio.release,
        }
    }

    /// Whether istiod runs as a named revision (`upgrade: canary`).
    pub fn named(&self) -> bool {
        !self.suffix.is_empty()
    }

    /// istiod's Deployment, Service, ServiceAccount, Role and RoleBinding.
    pub fn istiod(&self) -> String {
        format!("{ISTIOD}{}", self.suffix)
    }

    /// The AdmissionReview versions its webhooks accept: 1.19's chart lists `v1beta1` first,
    /// 1.30's only `v1`.
    fn admission_review_versions(&self) -> Vec<String> {
        if self.release.is_verrazzanos() {
            strings(&["v1beta1", "v1"])
        } else {
            strings(&["v1"])
        }
    }

    /// Where istiod serves xDS and its CA over TLS (what proxies and gateways dial).
    pub fn address(&self) -> String {
        format!("{}.{ISTIO_SYSTEM}.svc:15012", self.istiod())
    }

    /// istiod's ClusterRole and ClusterRoleBinding.
    pub fn cluster_role(&self) -> String {
        format!("istiod-clusterrole{}-{ISTIO_SYSTEM}", self.suffix)
    }

    /// The mesh ConfigMap.
    pub fn mesh_config_map(&self) -> String {
        format!("{MESH_CONFIG_MAP}{}", self.suffix)
    }

    /// The injector's ConfigMap and its MutatingWebhookConfiguration.
    pub fn injector(&self) -> String {
        format!("{INJECTOR}{}", self.suffix)
    }

    /// The revision's ValidatingWebhookConfiguration.
    pub fn validator(&self) -> String {
        format!("istio-validator{}-{ISTIO_SYSTEM}", self.suffix)
    }

    /// Labels of istiod's Deployment, pods and Service.
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        ISTIOD_LABELS
            .iter()
            .map(|(k, v)| {
                let v = if *k == "istio.io/rev" { &self.name } else { *v };
                (*k, v.to_string())
            })
            .collect()
    }

    /// What istiod's Deployment selects: Verrazzano's `istio=pilot` in place; a revision's pods
    /// alone otherwise (two revisions run side by side during an upgrade).
    fn selector(&self) -> Vec<(&'static str, String)> {
        if self.named() {
            self.service_selector()
        } else {
            owned(&ISTIOD_SELECTOR)
        }
    }

    /// What istiod's Service selects.
    fn service_selector(&self) -> Vec<(&'static str, String)> {
        if self.named() {
            vec![
                ("app", "istiod".into()),
                ("istio.io/rev", self.name.clone()),
            ]
        } else {
            owned(&ISTIOD_SERVICE_SELECTOR)
        }
    }
}

/// Label pairs with owned values.
fn owned(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Label pairs borrowed, as the builders take them.
pub(super) fn borrowed<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What the steps that write Istio resources come after: istiod, when `vz` installs it (its
/// validating webhooks fail closed, so until it serves them every Istio resource is refused).
pub fn after_istiod(p: &Platform) -> Vec<String> {
    if !p.components.installs_istio() {
        vec![]
    } else if p.istio.revisioned() {
        // The namespaces labelled `istio-injection=enabled`, and the default validation, reach
        // the revision through the tag.
        vec![ISTIO_REVISION_TAG_STEP.to_string()]
    } else {
        vec![ISTIO_CONTROL_PLANE_STEP.to_string()]
    }
}

/// The `istio.control-plane` step.
pub fn step(p: &Platform) -> Step {
    let rev = Revision::of(p);
    let mut objects = vec![Manifest::from_typed(&ServiceAccount {
        metadata: meta(&rev.istiod(), true, &ISTIOD_LABELS[..1]),
        ..Default::default()
    })];
    objects.extend(rbac(&rev));
    objects.push(mesh_config_map(&rev));
    objects.push(injector_config_map(p, &rev));
    objects.push(service(&rev));
    objects.push(deployment(p, &rev).exclusive(ISTIO_TAKEN));
    objects.push(match &p.plugin_ca {
        Some(ca) => plugin_ca(ca),
        None => istio_ca(p, ISTIO_SYSTEM, PLUGIN_CA),
    });
    if rev.named() {
        objects.push(revision_injector_webhook(&rev));
        objects.push(revision_validator(&rev));
    } else {
        objects.push(injector_webhook(&rev));
        objects.extend(validating_webhooks(&rev));
    }
    Step {
        id: ISTIO_CONTROL_PLANE_STEP.to_string(),
        description: "Istio's control plane: istiod, its RBAC, mesh configuration and webhooks"
            .into(),
        depends_on: {
            let mut d = vec![ISTIO_CRDS_STEP.to_string()];
            if p.plugin_ca.is_none() {
                // Its plug-in CA is an intermediate of the platform CA.
                d.extend(after_platform_ca(p));
            }
            d
        },
        objects,
        outputs: vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// Small constructors, shared with the gateways.

/// Metadata of an object in `istio-system` (`namespaced`) or of a cluster-scoped one.
pub(super) fn meta(name: &str, namespaced: bool, labels: &[(&str, &str)]) -> ObjectMeta {
    crate::k8s::meta(name, namespaced.then_some(ISTIO_SYSTEM), labels)
}

/// The ServiceAccount `name` of `istio-system`, as a binding's subject.
pub(super) fn subject(name: &str) -> Option<Vec<Subject>> {
    Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: name.to_string(),
        namespace: Some(ISTIO_SYSTEM.to_string()),
        ..Default::default()
    }])
}

/// An unnamed TCP container port.
pub(super) fn tcp_port(number: i32) -> ContainerPort {
    ContainerPort {
        container_port: number,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub(super) fn service_port(name: &str, number: i32, target: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port: number,
        protocol: Some("TCP".into()),
        target_port: Some(IntOrString::Int(target)),
        ..Default::default()
    }
}

/// `GET <path>` on `port`.
pub(super) fn http_probe(path: &str, port: i32, period: i32, failure: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(1),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

/// Istio's pods: uid, gid and fsGroup 1337, never root, the runtime's seccomp profile.
pub(super) fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(ISTIO_UID),
        run_as_group: Some(ISTIO_UID),
        fs_group: Some(ISTIO_UID),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Istio's containers (Verrazzano's overlay): not privileged, no escalation, no capabilities.
pub(super) fn container_security_context() -> SecurityContext {
    SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(strings(&["ALL"])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The projected ServiceAccount token istiod's CA accepts (audience `istio-ca`), mounted at
/// `/var/run/secrets/tokens`.
pub(super) fn token_volume() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "istio-token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some("istio-ca".into()),
                        expiration_seconds: Some(43200),
                        path: "istio-token".into(),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        mount("istio-token", "/var/run/secrets/tokens", true),
    )
}

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

pub(super) fn empty_dir(name: &str, medium: Option<&str>) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ConfigMap `istio-ca-root-cert` istiod writes into every namespace, as a volume.
pub(super) fn root_cert_volume(
    name: &str,
    items: Option<Vec<KeyToPath>>,
    optional: bool,
) -> Volume {
    Volume {
        name: name.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: "istio-ca-root-cert".into(),
            items,
            optional: optional.then_some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Istio's plug-in CA, the Secret istiod reads from `/etc/cacerts` when it starts.
fn plugin_ca(ca: &PluginCa) -> Manifest {
    Manifest::from_typed(&Secret {
        metadata: meta(PLUGIN_CA, true, &[]),
        type_: Some("Opaque".into()),
        data: Some(
            [
                ("ca-cert.pem", &ca.ca_cert),
                ("ca-key.pem", &ca.ca_key),
                ("root-cert.pem", &ca.root_cert),
                ("cert-chain.pem", &ca.cert_chain),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
            .collect(),
        ),
        ..Default::default()
    })
}

fn optional_secret(volume: &str, secret: &str) -> Volume {
    Volume {
        name: volume.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A preferred anti-affinity that spreads pods labelled `app=<app>` over nodes.
pub(super) fn spread(app: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(map(&[("app", app)])),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Deployment of `replicas` pods (rolling update: surge 100%, unavailable 25%).
pub(super) fn replicated(
    name: &str,
    replicas: i32,
    labels: &[(&str, &str)],
    selector: &[(&str, &str)],
    pod_labels: &[(&str, &str)],
    pod: PodSpec,
) -> Manifest {
    Manifest::from_typed(&Deployment {
        metadata: meta(name, true, labels),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(map(selector)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("100%".into())),
                    max_unavailable: Some(IntOrString::String("25%".into())),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(map(pod_labels)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: (!values.is_empty()).then(|| strings(values)),
    }
}

fn selector(requirements: Vec<LabelSelectorRequirement>) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_expressions: Some(requirements),
        ..Default::default()
    })
}

/// istiod's Service at `path` on 443, without a `caBundle` (istiod writes it).
fn istiod_client(rev: &Revision, path: &str) -> WebhookClientConfig {
    WebhookClientConfig {
        service: Some(ServiceReference {
            name: rev.istiod(),
            namespace: ISTIO_SYSTEM.to_string(),
            path: Some(path.to_string()),
            port: Some(443),
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Identities and permissions.

/// The ClusterRole's rules (Istio 1.19's `istiod-clusterrole`, with analysis and status on).
fn cluster_role_rules() -> Vec<PolicyRule> {
    const READ: &[&str] = &["get", "list", "watch"];
    const ALL: &[&str] = &[
        "get", "watch", "list", "update", "patch", "create", "delete",
    ];
    vec![
        // The webhooks' caBundle and failure policy.
        rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &["get", "list", "watch", "update", "patch"],
        ),
        rule(
            &["admissionregistration.k8s.io"],
            &["validatingwebhookconfigurations"],
            &["get", "list", "watch", "update"],
        ),
        // Istio's configuration, and its status (analysis, PILOT_ENABLE_STATUS).
        rule(&ISTIO_GROUPS, &["*"], &["get", "watch", "list"]),
        rule(&ISTIO_GROUPS, &["*"], &["update"]),
        rule(&["networking.istio.io"], &["workloadentries"], ALL),
        rule(&["networking.istio.io"], &["workloadentries/status"], ALL),
        // Installed CRDs.
        rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            READ,
        ),
        // Discovery and routing.
        rule(
            &[""],
            &["pods", "nodes", "services", "namespaces", "endpoints"],
            READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingressclasses"],
            READ,
        ),
        rule(&["networking.k8s.io"], &["ingresses/status"], &["*"]),
        // `istio-ca-root-cert` in every namespace.
        rule(
            &[""],
            &["configmaps"],
            &["create", "get", "list", "watch", "update"],
        ),
        // Verifying tokens and gateway SDS access.
        rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
        rule(
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
            &["create"],
        ),
        // Gateway API.
        rule(
            &["networking.x-k8s.io", "gateway.networking.k8s.io"],
            &["*"],
            READ,
        ),
        rule(
            &["networking.x-k8s.io", "gateway.networking.k8s.io"],
            &["*"],
            &["update", "patch"],
        ),
        rule(
            &["gateway.networking.k8s.io"],
            &["gatewayclasses"],
            &["create", "update", "patch", "delete"],
        ),
        // Multicluster secrets, and certificates of gateways.
        rule(&[""], &["secrets"], READ),
        // Multi-cluster services.
        rule(
            &["multicluster.x-k8s.io"],
            &["serviceexports"],
            &["get", "watch", "list", "create", "delete"],
        ),
        rule(&["multicluster.x-k8s.io"], &["serviceimports"], READ),
    ]
}

/// The Role's rules: what istiod does in `istio-system`.
fn role_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["networking.istio.io"], &["gateways"], &["create"]),
        rule(
            &[""],
            &["secrets"],
            &["create", "get", "watch", "list", "update", "delete"],
        ),
        rule(&[""], &["configmaps"], &["delete"]),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "update", "patch", "create"],
        ),
    ]
}

fn rbac(rev: &Revision) -> [Manifest; 4] {
    let labels = &[("app", "istiod"), ("release", "istio")];
    let (cluster_role, istiod) = (rev.cluster_role(), rev.istiod());
    [
        Manifest::from_typed(&ClusterRole {
            metadata: meta(&cluster_role, false, labels),
            rules: Some(cluster_role_rules()),
            ..Default::default()
        }),
        Manifest::from_typed(&ClusterRoleBinding {
            metadata: meta(&cluster_role, false, labels),
            role_ref: role_ref("ClusterRole", &cluster_role),
            subjects: subject(&istiod),
        }),
        Manifest::from_typed(&Role {
            metadata: meta(&istiod, true, labels),
            rules: Some(role_rules()),
        }),
        Manifest::from_typed(&RoleBinding {
            metadata: meta(&istiod, true, labels),
            role_ref: role_ref("Role", &istiod),
            subjects: subject(&istiod),
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Configuration.

/// The mesh configuration (`mesh` of ConfigMap `istio`), as YAML.
fn mesh(rev: &Revision) -> String {
    let address = rev.address();
    format!(
        "defaultConfig:
  discoveryAddress: {address}
  tracing:
    tlsSettings:
      mode: ISTIO_MUTUAL
    zipkin:
      address: {ZIPKIN_ADDRESS}
defaultProviders:
  metrics:
  - prometheus
enablePrometheusMerge: false
rootNamespace: {ISTIO_SYSTEM}
trustDomain: {TRUST_DOMAIN}
"
    )
}

fn mesh_config_map(rev: &Revision) -> Manifest {
    Manifest::from_typed(&ConfigMap {
        metadata: meta(
            &rev.mesh_config_map(),
            true,
            &[("istio.io/rev", &rev.name), ("release", "istio")],
        ),
        data: Some(BTreeMap::from([
            ("mesh".into(), mesh(rev)),
            ("meshNetworks".into(), "networks: {}".into()),
        ])),
        ..Default::default()
    })
}

/// The `sidecar` injection template: `istio-init` (the iptables redirect, the one container with
/// NET_ADMIN and NET_RAW) and `istio-proxy`. A compact form of Istio 1.19's template, reading the
/// same values.
const SIDECAR_TEMPLATE: &str = r#"spec:
  initContainers:
  - name: istio-init
    image: "{{ .ProxyImage }}"
    args: ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,{{ .Values.global.proxy.statusPort }}", "--log_output_level=default:info"]
    resources:
{{ toYaml .Values.global.proxy.resources | indent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      privileged: false
      capabilities:
        add: [NET_ADMIN, NET_RAW]
        drop: [ALL]
      readOnlyRootFilesystem: false
      runAsGroup: 0
      runAsNonRoot: false
      runAsUser: 0
  containers:
  - name: istio-proxy
    image: "{{ .ProxyImage }}"
    args: ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.{{ .Values.global.proxy.clusterDomain }}", "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"]
    ports:
    - {containerPort: 15090, protocol: TCP, name: http-envoy-prom}
    env:
    - {name: JWT_POLICY, value: "{{ .Values.global.jwtPolicy }}"}
    - {name: PILOT_CERT_PROVIDER, value: "{{ .Values.global.pilotCertProvider }}"}
    - {name: CA_ADDR, value: "istiod{{- if not (eq .Values.revision "") }}-{{ .Values.revision }}{{- end }}.{{ .Values.global.istioNamespace }}.svc:15012"}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: INSTANCE_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: SERVICE_ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: ISTIO_CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: PROXY_CONFIG, value: '{{ protoToJSON .ProxyConfig }}'}
    - {name: ISTIO_META_POD_PORTS, value: '[]'}
    - {name: ISTIO_META_APP_CONTAINERS, value: "{{ $containers := list }}{{ range $index, $container := .Spec.Containers }}{{ if not (eq $container.Name "istio-proxy") }}{{ $containers = append $containers $container.Name }}{{end}}{{- end}}{{ join "," $containers }}"}
    - {name: ISTIO_META_CLUSTER_ID, value: "{{ valueOrDefault .Values.global.multiCluster.clusterName `Kubernetes` }}"}
    - {name: ISTIO_META_NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: ISTIO_META_INTERCEPTION_MODE, value: REDIRECT}
    - {name: ISTIO_META_WORKLOAD_NAME, value: "{{ .DeploymentMeta.Name }}"}
    - {name: ISTIO_META_OWNER, value: "kubernetes://apis/{{ .TypeMeta.APIVersion }}/namespaces/{{ valueOrDefault .DeploymentMeta.Namespace `default` }}/{{ toLower .TypeMeta.Kind }}s/{{ .DeploymentMeta.Name }}"}
    - {name: ISTIO_META_MESH_ID, value: "{{ .MeshConfig.TrustDomain }}"}
    - {name: TRUST_DOMAIN, value: "{{ .MeshConfig.TrustDomain }}"}
    readinessProbe:
      httpGet: {path: /healthz/ready, port: 15021}
      initialDelaySeconds: {{ .Values.global.proxy.readinessInitialDelaySeconds }}
      periodSeconds: {{ .Values.global.proxy.readinessPeriodSeconds }}
      timeoutSeconds: 3
      failureThreshold: {{ .Values.global.proxy.readinessFailureThreshold }}
    resources:
{{ toYaml .Values.global.proxy.resources | indent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      privileged: false
      capabilities: {drop: [ALL]}
      readOnlyRootFilesystem: true
      runAsGroup: 1337
      runAsNonRoot: true
      runAsUser: 1337
    volumeMounts:
    - {name: workload-socket, mountPath: /var/run/secrets/workload-spiffe-uds}
    - {name: credential-socket, mountPath: /var/run/secrets/credential-uds}
    - {name: workload-certs, mountPath: /var/run/secrets/workload-spiffe-credentials}
    - {name: istiod-ca-cert, mountPath: /var/run/secrets/istio}
    - {name: istio-data, mountPath: /var/lib/istio/data}
    - {name: istio-envoy, mountPath: /etc/istio/proxy}
    - {name: istio-token, mountPath: /var/run/secrets/tokens}
    - {name: istio-podinfo, mountPath: /etc/istio/pod}
  volumes:
  - {name: workload-socket, emptyDir: {}}
  - {name: credential-socket, emptyDir: {}}
  - {name: workload-certs, emptyDir: {}}
  - {name: istio-envoy, emptyDir: {medium: Memory}}
  - {name: istio-data, emptyDir: {}}
  - name: istio-podinfo
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: annotations, fieldRef: {fieldPath: metadata.annotations}}
  - name: istio-token
    projected:
      sources:
      - serviceAccountToken: {path: istio-token, expirationSeconds: 43200, audience: istio-ca}
  - {name: istiod-ca-cert, configMap: {name: istio-ca-root-cert}}
"#;

/// The injector's `config`: injection on unless a pod opts out, template `sidecar`.
fn injector_config() -> String {
    let mut text = String::from(
        "policy: enabled\nalwaysInjectSelector: []\nneverInjectSelector: []\ninjectedAnnotations: {}\ndefaultTemplates: [sidecar]\ntemplates:\n  sidecar: |\n",
    );
    for line in SIDECAR_TEMPLATE.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The injector's `values` (JSON, as Istio renders them): the proxy image, whole, and its
/// resources and probes.
fn injector_values(p: &Platform, rev: &Revision) -> String {
    let proxy = p.images.reference(Image::ProxyV2);
    let values = json!({
        "global": {
            "hub": p.images.registry_of(Image::ProxyV2),
            "tag": Image::ProxyV2.default_name(p.images.istio).2,
            "imagePullPolicy": IMAGE_PULL_POLICY,
            "istioNamespace": ISTIO_SYSTEM,
            "jwtPolicy": "third-party-jwt",
            "pilotCertProvider": "istiod",
            "multiCluster": {"clusterName": ""},
            "proxy": {
                "image": proxy,
                "clusterDomain": TRUST_DOMAIN,
                "statusPort": 15020,
                "readinessInitialDelaySeconds": 1,
                "readinessPeriodSeconds": 2,
                "readinessFailureThreshold": 90,
                "privileged": false,
                "holdApplicationUntilProxyStarts": false,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "2000m", "memory": "1024Mi"},
                },
            },
            "proxy_init": {"image": proxy},
        },
        "revision": if rev.named() { rev.name.as_str() } else { "" },
        "sidecarInjectorWebhook": {"rewriteAppHTTPProbe": true, "defaultTemplates": []},
    });
    serde_json::to_string_pretty(&values).unwrap_or_default()
}

fn injector_config_map(p: &Platform, rev: &Revision) -> Manifest {
    Manifest::from_typed(&ConfigMap {
        metadata: meta(
            &rev.injector(),
            true,
            &[("istio.io/rev", &rev.name), ("release", "istio")],
        ),
        data: Some(BTreeMap::from([
            ("config".into(), injector_config()),
            ("values".into(), injector_values(p, rev)),
        ])),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Workload and Service.

fn service(rev: &Revision) -> Manifest {
    let labels = rev.labels();
    Manifest::from_typed(&Service {
        metadata: meta(&rev.istiod(), true, &borrowed(&labels)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(map(&borrowed(&rev.service_selector()))),
            ports: Some(vec![
                service_port("grpc-xds", 15010, 15010),
                service_port("https-dns", 15012, 15012),
                service_port("https-webhook", 443, WEBHOOK_PORT),
                service_port("http-monitoring", 15014, 15014),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// istiod's environment: the chart's of its release (1.30 drops `JWT_POLICY`, `GOMEMLIMIT` and
/// `ISTIOD_ADDR`, and adds `CA_TRUSTED_NODE_ACCOUNTS`), with Verrazzano's settings.
fn discovery_env(rev: &Revision) -> Vec<EnvVar> {
    let v19 = rev.release.is_verrazzanos();
    let mut env_vars = vec![env("REVISION", &rev.name)];
    if v19 {
        env_vars.push(env("JWT_POLICY", "third-party-jwt"));
    }
    env_vars.extend([
        env("PILOT_CERT_PROVIDER", "istiod"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        env("KUBECONFIG", "/var/run/secrets/remote/config"),
    ]);
    if !v19 {
        env_vars.push(env("CA_TRUSTED_NODE_ACCOUNTS", "istio-system/ztunnel"));
    }
    env_vars.extend([
        env("PILOT_ENABLE_STATUS", "true"),
        env("PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING", "true"),
        env("PILOT_TRACE_SAMPLING", "1"),
        env("PILOT_ENABLE_ANALYSIS", "true"),
        env("CLUSTER_ID", "Kubernetes"),
    ]);
    if v19 {
        env_vars.push(resource_env("GOMEMLIMIT", "limits.memory"));
    }
    env_vars.push(resource_env("GOMAXPROCS", "limits.cpu"));
    if v19 {
        env_vars.push(env("ISTIOD_ADDR", &rev.address()));
    }
    env_vars
}

/// istiod's container ports: unnamed in 1.19's chart; named, and with xDS over TLS and
/// monitoring listed, in 1.30's.
fn discovery_ports(rev: &Revision) -> Vec<ContainerPort> {
    if rev.release.is_verrazzanos() {
        return vec![tcp_port(8080), tcp_port(15010), tcp_port(WEBHOOK_PORT)];
    }
    [
        ("http-debug", 8080),
        ("grpc-xds", 15010),
        ("tls-xds", 15012),
        ("https-webhooks", WEBHOOK_PORT),
        ("http-monitoring", 15014),
    ]
    .into_iter()
    .map(|(name, number)| ContainerPort {
        name: Some(name.into()),
        ..tcp_port(number)
    })
    .collect()
}

fn deployment(p: &Platform, rev: &Revision) -> Manifest {
    let (token, token_mount) = token_volume();
    let container = Container {
        name: "discovery".into(),
        image: Some(p.images.reference(Image::Pilot)),
        image_pull_policy: Some(IMAGE_PULL_POLICY.into()),
        args: Some(strings(&[
            "discovery",
            "--monitoringAddr=:15014",
            "--log_output_level=default:info",
            "--domain",
            TRUST_DOMAIN,
            "--keepaliveMaxServerConnectionAge",
            "30m",
        ])),
        ports: Some(discovery_ports(rev)),
        readiness_probe: Some(http_probe("/ready", 8080, 3, 3)),
        env: Some(discovery_env(rev)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("500m".into())),
                ("memory".to_string(), Quantity("2048Mi".into())),
            ])),
            ..Default::default()
        }),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![
            mount("local-certs", "/var/run/secrets/istio-dns", false),
            token_mount,
            mount("cacerts", "/etc/cacerts", true),
            mount("istio-kubeconfig", "/var/run/secrets/remote", true),
            mount("istio-csr-dns-cert", "/var/run/secrets/istiod/tls", true),
            mount("istio-csr-ca-configmap", "/var/run/secrets/istiod/ca", true),
        ]),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(rev.istiod()),
        affinity: Some(spread("istiod")),
        security_context: Some(pod_security_context()),
        containers: vec![container],
        volumes: Some(vec![
            empty_dir("local-certs", Some("Memory")),
            token,
            optional_secret("cacerts", "cacerts"),
            optional_secret("istio-kubeconfig", "istio-kubeconfig"),
            optional_secret("istio-csr-dns-cert", "istiod-tls"),
            root_cert_volume(
                "istio-csr-ca-configmap",
                Some(vec![KeyToPath {
                    key: "root-cert.pem".into(),
                    path: "root-cert.pem".into(),
                    ..Default::default()
                }]),
                true,
            ),
        ]),
        ..Default::default()
    };
    let labels = rev.labels();
    let labels = borrowed(&labels);
    let mut pod_labels = labels.clone();
    pod_labels.push(NO_INJECTION);
    replicated(
        &rev.istiod(),
        1,
        &labels,
        &borrowed(&rev.selector()),
        &pod_labels,
        pod,
    )
}

// ---------------------------------------------------------------------------------------------
// Webhooks.

/// An injector entry: pods created in the namespaces `namespaces` selects, when `objects` selects
/// the pod.
fn injector_entry(
    rev: &Revision,
    name: &str,
    namespaces: Vec<LabelSelectorRequirement>,
    objects: Vec<LabelSelectorRequirement>,
) -> MutatingWebhook {
    MutatingWebhook {
        name: name.to_string(),
        client_config: istiod_client(rev, "/inject"),
        rules: Some(vec![RuleWithOperations {
            operations: Some(strings(&["CREATE"])),
            api_groups: Some(strings(&[""])),
            api_versions: Some(strings(&["v1"])),
            resources: Some(strings(&["pods"])),
            ..Default::default()
        }]),
        failure_policy: Some("Fail".into()),
        side_effects: "None".into(),
        reinvocation_policy: Some("Never".into()),
        admission_review_versions: rev.admission_review_versions(),
        namespace_selector: selector(namespaces),
        object_selector: selector(objects),
        ..Default::default()
    }
}

/// The injector's MWC with the chart's four entries, left active (`vz` renders no revision-tag
/// MWC in its place). Its label `istio.io/rev=default` is how istiod finds it to write its CA.
fn injector_webhook(rev: &Revision) -> Manifest {
    Manifest::from_typed(&MutatingWebhookConfiguration {
        metadata: meta(
            INJECTOR,
            false,
            &[
                ("app", "sidecar-injector"),
                ("istio.io/rev", REVISION),
                ("release", "istio"),
            ],
        ),
        webhooks: Some(default_injector_entries(rev, REVISION)),
    })
}

/// The four injector entries of the default revision (or of the default tag, `selects`):
/// namespaces and pods labelled `istio.io/rev=<selects>`, namespaces labelled
/// `istio-injection=enabled` and pods labelled `sidecar.istio.io/inject=true`, all sent to
/// `rev`'s istiod.
fn default_injector_entries(rev: &Revision, selects: &str) -> Vec<MutatingWebhook> {
    let not_false = || requirement("sidecar.istio.io/inject", "NotIn", &["false"]);
    let absent = |key: &str| requirement(key, "DoesNotExist", &[]);
    let mut entries = revision_injector_entries(rev, selects);
    entries.extend([
        injector_entry(
            rev,
            "namespace.sidecar-injector.istio.io",
            vec![requirement("istio-injection", "In", &["enabled"])],
            vec![not_false()],
        ),
        injector_entry(
            rev,
            "object.sidecar-injector.istio.io",
            vec![absent("istio-injection"), absent("istio.io/rev")],
            vec![
                requirement("sidecar.istio.io/inject", "In", &["true"]),
                absent("istio.io/rev"),
            ],
        ),
    ]);
    entries
}

/// The two injector entries of a revision (or tag) `selects`: namespaces labelled
/// `istio.io/rev=<selects>` (without `istio-injection`, which wins), and pods labelled so in
/// namespaces labelled neither way.
fn revision_injector_entries(rev: &Revision, selects: &str) -> Vec<MutatingWebhook> {
    let not_false = || requirement("sidecar.istio.io/inject", "NotIn", &["false"]);
    let absent = |key: &str| requirement(key, "DoesNotExist", &[]);
    vec![
        injector_entry(
            rev,
            "rev.namespace.sidecar-injector.istio.io",
            vec![
                requirement("istio.io/rev", "In", &[selects]),
                absent("istio-injection"),
            ],
            vec![not_false()],
        ),
        injector_entry(
            rev,
            "rev.object.sidecar-injector.istio.io",
            vec![absent("istio.io/rev"), absent("istio-injection")],
            vec![not_false(), requirement("istio.io/rev", "In", &[selects])],
        ),
    ]
}

/// A named revision's own injector (`upgrade: canary`): only what is labelled for that revision
/// by name. The namespaces labelled `istio-injection=enabled` reach it through the default
/// revision tag ([`revision_tag`]), which the upgrade moves once the revision is ready.
fn revision_injector_webhook(rev: &Revision) -> Manifest {
    Manifest::from_typed(&MutatingWebhookConfiguration {
        metadata: meta(
            &rev.injector(),
            false,
            &[
                ("app", "sidecar-injector"),
                ("istio.io/rev", &rev.name),
                ("release", "istio"),
            ],
        ),
        webhooks: Some(revision_injector_entries(rev, &rev.name)),
    })
}

/// The default revision tag (`upgrade: canary`): the injector entries of the default revision,
/// and the default validator, sent to `rev`'s istiod, as `istioctl tag set default --revision`
/// makes them. Labelled with the revision it points at, whose istiod writes their `caBundle`.
pub fn revision_tag(rev: &Revision) -> [Manifest; 2] {
    let labels = [
        ("app", "sidecar-injector"),
        ("istio.io/rev", rev.name.as_str()),
        ("istio.io/tag", "default"),
        ("release", "istio"),
    ];
    let validator_labels = [
        ("app", "istiod"),
        ("istio", "istiod"),
        ("istio.io/rev", rev.name.as_str()),
        ("istio.io/tag", "default"),
        ("release", "istio"),
    ];
    [
        Manifest::from_typed(&MutatingWebhookConfiguration {
            metadata: meta(REVISION_TAG, false, &labels),
            webhooks: Some(default_injector_entries(rev, REVISION)),
        }),
        Manifest::from_typed(&ValidatingWebhookConfiguration {
            metadata: meta(DEFAULT_VALIDATOR, false, &validator_labels),
            webhooks: Some(vec![validation_entry(
                rev,
                "validation.istio.io",
                requirement("istio.io/rev", "DoesNotExist", &[]),
            )]),
        }),
    ]
}

/// A named revision's validator: objects labelled `istio.io/rev=<revision>`.
fn revision_validator(rev: &Revision) -> Manifest {
    Manifest::from_typed(&ValidatingWebhookConfiguration {
        metadata: meta(
            &rev.validator(),
            false,
            &[
                ("app", "istiod"),
                ("istio", "istiod"),
                ("istio.io/rev", &rev.name),
                ("release", "istio"),
            ],
        ),
        webhooks: Some(vec![validation_entry(
            rev,
            "rev.validation.istio.io",
            requirement("istio.io/rev", "In", &[&rev.name]),
        )]),
    })
}

/// A validation entry on Istio's groups, failing open until istiod turns it to `Fail`.
fn validation_entry(
    rev: &Revision,
    name: &str,
    objects: LabelSelectorRequirement,
) -> ValidatingWebhook {
    ValidatingWebhook {
        name: name.to_string(),
        client_config: istiod_client(rev, "/validate"),
        rules: Some(vec![RuleWithOperations {
            operations: Some(strings(&["CREATE", "UPDATE"])),
            api_groups: Some(strings(&VALIDATED_GROUPS)),
            api_versions: Some(strings(&["*"])),
            resources: Some(strings(&["*"])),
            ..Default::default()
        }]),
        failure_policy: Some("Fail".into()),
        side_effects: "None".into(),
        admission_review_versions: rev.admission_review_versions(),
        object_selector: selector(vec![objects]),
        ..Default::default()
    }
}

fn validating_webhooks(rev: &Revision) -> [Manifest; 2] {
    let labels = [
        ("app", "istiod"),
        ("istio", "istiod"),
        ("istio.io/rev", REVISION),
        ("release", "istio"),
    ];
    [
        Manifest::from_typed(&ValidatingWebhookConfiguration {
            metadata: meta(VALIDATOR, false, &labels),
            webhooks: Some(vec![validation_entry(
                rev,
                "rev.validation.istio.io",
                requirement("istio.io/rev", "In", &[REVISION]),
            )]),
        }),
        Manifest::from_typed(&ValidatingWebhookConfiguration {
            metadata: meta(DEFAULT_VALIDATOR, false, &labels),
            webhooks: Some(vec![validation_entry(
                rev,
                "validation.istio.io",
                requirement("istio.io/rev", "DoesNotExist", &[]),
            )]),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test_verrazzano as platform;
    use crate::k8s::selects;
    use serde_json::Value;

    fn object(kind: &str, name: &str) -> Value {
        step(&platform(""))
            .objects
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .map(|m| Value::clone(&m.body))
            .unwrap_or_else(|| panic!("{kind} {name} is not rendered"))
    }

    fn istiod() -> Value {
        object("Deployment", ISTIOD)
    }

    fn labels(pairs: &[(&str, &str)]) -> Value {
        json!(map(pairs))
    }

    #[test]
    fn the_step_renders_istiods_objects_after_the_crds() {
        let s = step(&platform(""));
        assert_eq!(s.id, "istio.control-plane");
        assert_eq!(
            s.depends_on,
            ["istio.crds", "certificates.ca"],
            "its plug-in CA is issued by the platform CA"
        );
        let mut names: Vec<String> = s.objects.iter().map(|m| s.address_of(m)).collect();
        names.sort();
        let p = "istio.control-plane/";
        let mut expected = vec![
            format!("{p}ServiceAccount/istio-system/istiod"),
            format!("{p}ClusterRole/istiod-clusterrole-istio-system"),
            format!("{p}ClusterRoleBinding/istiod-clusterrole-istio-system"),
            format!("{p}Role/istio-system/istiod"),
            format!("{p}RoleBinding/istio-system/istiod"),
            format!("{p}ConfigMap/istio-system/istio"),
            format!("{p}ConfigMap/istio-system/istio-sidecar-injector"),
            format!("{p}Deployment/istio-system/istiod"),
            format!("{p}Service/istio-system/istiod"),
            format!("{p}MutatingWebhookConfiguration/istio-sidecar-injector"),
            format!("{p}ValidatingWebhookConfiguration/istio-validator-istio-system"),
            format!("{p}ValidatingWebhookConfiguration/istiod-default-validator"),
            format!("{p}Secret/istio-system/cacerts"),
        ];
        expected.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn istiod_runs_discovery_with_verrazzanos_args_ports_and_probe() {
        let d = istiod();
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["name"], "discovery");
        assert_eq!(
            c["image"],
            "ghcr.io/verrazzano/pilot:1.19.3-20240104211928-419dfb47"
        );
        assert_eq!(
            c["args"],
            json!([
                "discovery",
                "--monitoringAddr=:15014",
                "--log_output_level=default:info",
                "--domain",
                "cluster.local",
                "--keepaliveMaxServerConnectionAge",
                "30m"
            ])
        );
        let ports: Vec<&Value> = c["ports"]
            .as_array()
            .map(|a| a.iter().map(|p| &p["containerPort"]).collect())
            .unwrap_or_default();
        assert_eq!(ports, [&json!(8080), &json!(15010), &json!(15017)]);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8080);
        assert_eq!(c["readinessProbe"]["periodSeconds"], 3);
        assert!(c.get("livenessProbe").is_none());
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "500m", "memory": "2048Mi"}})
        );
        let env = |name: &str| {
            c["env"]
                .as_array()
                .and_then(|e| e.iter().find(|v| v["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no env {name}"))
        };
        for (name, value) in [
            ("REVISION", "default"),
            ("JWT_POLICY", "third-party-jwt"),
            ("PILOT_CERT_PROVIDER", "istiod"),
            ("ISTIOD_ADDR", "istiod.istio-system.svc:15012"),
            ("CLUSTER_ID", "Kubernetes"),
            ("PILOT_ENABLE_ANALYSIS", "true"),
            ("PILOT_ENABLE_STATUS", "true"),
            ("PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING", "true"),
            ("PILOT_TRACE_SAMPLING", "1"),
            ("KUBECONFIG", "/var/run/secrets/remote/config"),
        ] {
            assert_eq!(env(name)["value"], value, "{name}");
        }
        assert_eq!(
            env("GOMEMLIMIT")["valueFrom"]["resourceFieldRef"]["resource"],
            "limits.memory"
        );
        assert_eq!(
            env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn istiod_runs_as_1337_without_privileges_or_sidecar() {
        let d = istiod();
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "istiod");
        let sc = &pod["securityContext"];
        assert_eq!(sc["runAsUser"], 1337);
        assert_eq!(sc["runAsGroup"], 1337);
        assert_eq!(sc["fsGroup"], 1337);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        let c = &pod["containers"][0]["securityContext"];
        assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["allowPrivilegeEscalation"], false);
        assert_eq!(c["privileged"], false);
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"],
            "false"
        );
    }

    #[test]
    fn a_plugin_ca_from_the_configuration_becomes_the_cacerts_secret() {
        let issued = step(&platform(""));
        let issued = issued
            .objects
            .iter()
            .find(|m| m.kind == "Secret")
            .expect("cacerts");
        assert!(
            issued.certificate.is_some() && issued.body.get("data").is_none(),
            "no plug-in CA configured: vz issues one at apply"
        );
        let mut p = platform("");
        p.plugin_ca = Some(PluginCa {
            ca_cert: "C".into(),
            ca_key: "K".into(),
            root_cert: "R".into(),
            cert_chain: "CR".into(),
        });
        let s = step(&p);
        let secret = s
            .objects
            .iter()
            .find(|m| m.kind == "Secret")
            .expect("cacerts");
        assert_eq!(
            s.address_of(secret),
            "istio.control-plane/Secret/istio-system/cacerts"
        );
        assert!(
            !format!("{s:?}").contains("Sw=="),
            "the key stays out of Debug output"
        );
        // Base64 of each PEM, under the keys istiod reads from /etc/cacerts.
        assert_eq!(
            secret.body["data"],
            json!({"ca-cert.pem": "Qw==", "ca-key.pem": "Sw==", "cert-chain.pem": "Q1I=", "root-cert.pem": "Ug=="})
        );
    }

    #[test]
    fn istiod_mounts_the_optional_cacerts_and_an_istio_ca_token() {
        let d = istiod();
        let pod = &d["spec"]["template"]["spec"];
        let volume = |name: &str| {
            pod["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no volume {name}"))
        };
        assert_eq!(
            volume("cacerts")["secret"],
            json!({"secretName": "cacerts", "optional": true})
        );
        assert_eq!(
            volume("istio-token")["projected"]["sources"][0]["serviceAccountToken"]["audience"],
            "istio-ca"
        );
        let mounts = &pod["containers"][0]["volumeMounts"];
        let mounted = |name: &str| {
            mounts
                .as_array()
                .and_then(|m| m.iter().find(|m| m["name"] == name))
                .map(|m| m["mountPath"].clone())
        };
        assert_eq!(mounted("cacerts"), Some(json!("/etc/cacerts")));
        assert_eq!(
            mounted("istio-token"),
            Some(json!("/var/run/secrets/tokens"))
        );
    }

    #[test]
    fn the_deployment_and_the_service_select_istiods_pods() {
        let d = istiod();
        let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            labels(&[("istio", "pilot")])
        );
        assert!(selects(&d["spec"]["selector"]["matchLabels"], pod_labels));
        for (k, v) in ISTIOD_LABELS {
            assert_eq!(pod_labels[k], v, "{k}");
        }
        let s = object("Service", ISTIOD);
        assert_eq!(
            s["spec"]["selector"],
            labels(&[("app", "istiod"), ("istio", "pilot")])
        );
        assert!(selects(&s["spec"]["selector"], pod_labels));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(
            s["spec"]["ports"],
            json!([
                {"name": "grpc-xds", "port": 15010, "protocol": "TCP", "targetPort": 15010},
                {"name": "https-dns", "port": 15012, "protocol": "TCP", "targetPort": 15012},
                {"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": 15017},
                {"name": "http-monitoring", "port": 15014, "protocol": "TCP", "targetPort": 15014},
            ])
        );
    }

    #[test]
    fn the_mesh_config_turns_prometheus_merge_off_and_traces_to_jaeger() {
        let cm = object("ConfigMap", MESH_CONFIG_MAP);
        assert_eq!(cm["data"]["meshNetworks"], "networks: {}");
        let text = cm["data"]["mesh"].as_str().unwrap_or_default();
        let mesh: Value = serde_saphyr::from_str(text).unwrap_or_default();
        assert_eq!(mesh["enablePrometheusMerge"], false);
        assert_eq!(mesh["trustDomain"], "cluster.local");
        assert_eq!(mesh["rootNamespace"], "istio-system");
        assert_eq!(mesh["defaultProviders"]["metrics"], json!(["prometheus"]));
        let dc = &mesh["defaultConfig"];
        assert_eq!(dc["discoveryAddress"], "istiod.istio-system.svc:15012");
        assert_eq!(
            dc["tracing"]["zipkin"]["address"],
            "jaeger-operator-jaeger-collector.verrazzano-monitoring.svc.cluster.local.:9411"
        );
        assert_eq!(dc["tracing"]["tlsSettings"]["mode"], "ISTIO_MUTUAL");
        assert!(mesh.get("accessLogFile").is_none());
    }

    #[test]
    fn the_injector_config_is_valid_yaml_with_verrazzanos_values() {
        let cm = object("ConfigMap", INJECTOR);
        let config: Value =
            serde_saphyr::from_str(cm["data"]["config"].as_str().unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(config["policy"], "enabled");
        assert_eq!(config["defaultTemplates"], json!(["sidecar"]));
        let template = config["templates"]["sidecar"].as_str().unwrap_or_default();
        assert!(template.contains("name: istio-proxy"));
        assert!(template.contains("add: [NET_ADMIN, NET_RAW]"));
        let values: Value = serde_json::from_str(cm["data"]["values"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let proxy = &values["global"]["proxy"];
        assert_eq!(
            proxy["image"],
            "ghcr.io/verrazzano/proxyv2:1.19.3-20240104211928-419dfb47"
        );
        assert_eq!(proxy["readinessFailureThreshold"], 90);
        assert_eq!(proxy["statusPort"], 15020);
        assert_eq!(
            proxy["resources"],
            json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2000m", "memory": "1024Mi"}})
        );
    }

    #[test]
    fn images_follow_the_registry() {
        let p = platform("images: {registry: mirror.local:5000/vz}\n");
        let s = step(&p);
        let find = |kind: &str, name: &str| {
            s.objects
                .iter()
                .find(|m| m.kind == kind && m.name == name)
                .map(|m| m.body.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            find("Deployment", ISTIOD)["spec"]["template"]["spec"]["containers"][0]["image"],
            "mirror.local:5000/vz/pilot:1.19.3-20240104211928-419dfb47"
        );
        assert!(
            find("ConfigMap", INJECTOR)["data"]["values"]
                .as_str()
                .unwrap_or_default()
                .contains("mirror.local:5000/vz/proxyv2:1.19.3-20240104211928-419dfb47")
        );
    }

    #[test]
    fn the_injector_fails_closed_on_istiods_inject_path_without_a_ca_bundle() {
        let mwc = object("MutatingWebhookConfiguration", INJECTOR);
        assert_eq!(mwc["metadata"]["labels"]["istio.io/rev"], "default");
        let hooks = mwc["webhooks"].as_array().cloned().unwrap_or_default();
        assert_eq!(hooks.len(), 4);
        for h in &hooks {
            assert!(
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("sidecar-injector.istio.io"))
            );
            assert_eq!(
                h["clientConfig"],
                json!({"service": {"name": "istiod", "namespace": "istio-system", "path": "/inject", "port": 443}})
            );
            assert!(h["clientConfig"].get("caBundle").is_none());
            assert_eq!(h["failurePolicy"], "Fail");
            assert_eq!(h["sideEffects"], "None");
            assert_eq!(h["admissionReviewVersions"], json!(["v1beta1", "v1"]));
            assert_eq!(
                h["rules"],
                json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}])
            );
        }
        let entry = |name: &str| {
            hooks
                .iter()
                .find(|h| h["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no entry {name}"))
        };
        let ns = entry("namespace.sidecar-injector.istio.io");
        assert_eq!(
            ns["namespaceSelector"]["matchExpressions"],
            json!([{"key": "istio-injection", "operator": "In", "values": ["enabled"]}])
        );
        assert_eq!(
            ns["objectSelector"]["matchExpressions"],
            json!([{"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}])
        );
        let obj = entry("object.sidecar-injector.istio.io");
        assert_eq!(
            obj["namespaceSelector"]["matchExpressions"],
            json!([
                {"key": "istio-injection", "operator": "DoesNotExist"},
                {"key": "istio.io/rev", "operator": "DoesNotExist"}
            ])
        );
        assert_eq!(
            obj["objectSelector"]["matchExpressions"],
            json!([
                {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]},
                {"key": "istio.io/rev", "operator": "DoesNotExist"}
            ])
        );
    }

    #[test]
    fn the_validators_fail_closed_on_istios_groups_without_a_ca_bundle() {
        for (name, entry) in [
            (VALIDATOR, "rev.validation.istio.io"),
            (DEFAULT_VALIDATOR, "validation.istio.io"),
        ] {
            let vwc = object("ValidatingWebhookConfiguration", name);
            assert_eq!(vwc["metadata"]["labels"]["istio.io/rev"], "default");
            let h = &vwc["webhooks"][0];
            assert_eq!(h["name"], entry);
            assert_eq!(h["failurePolicy"], "Fail");
            assert_eq!(h["sideEffects"], "None");
            assert_eq!(h["clientConfig"]["service"]["path"], "/validate");
            assert_eq!(h["clientConfig"]["service"]["port"], 443);
            assert!(h["clientConfig"].get("caBundle").is_none());
            assert_eq!(h["rules"][0]["operations"], json!(["CREATE", "UPDATE"]));
            assert_eq!(
                h["rules"][0]["apiGroups"],
                json!([
                    "security.istio.io",
                    "networking.istio.io",
                    "telemetry.istio.io",
                    "extensions.istio.io"
                ])
            );
        }
    }

    fn allows(rules: &Value, group: &str, resource: &str, verb: &str) -> bool {
        rules.as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                let has = |field: &str, x: &str| {
                    r[field]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == x || v == "*"))
                };
                has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
            })
        })
    }

    #[test]
    fn rbac_lets_istiod_patch_its_webhooks_and_watch_the_mesh() {
        let cr = object("ClusterRole", CLUSTER_ROLE);
        let rules = &cr["rules"];
        let adm = "admissionregistration.k8s.io";
        assert!(allows(rules, adm, "mutatingwebhookconfigurations", "patch"));
        assert!(allows(
            rules,
            adm,
            "validatingwebhookconfigurations",
            "update"
        ));
        assert!(!allows(
            rules,
            adm,
            "validatingwebhookconfigurations",
            "delete"
        ));
        assert!(allows(
            rules,
            "networking.istio.io",
            "virtualservices",
            "watch"
        ));
        assert!(allows(rules, "", "configmaps", "create"));
        assert!(allows(rules, "", "secrets", "list"));
        assert!(!allows(rules, "", "secrets", "update"));
        assert!(allows(
            rules,
            "authentication.k8s.io",
            "tokenreviews",
            "create"
        ));
        assert!(allows(rules, "discovery.k8s.io", "endpointslices", "watch"));
        let crb = object("ClusterRoleBinding", CLUSTER_ROLE);
        assert_eq!(crb["roleRef"]["name"], CLUSTER_ROLE);
        assert_eq!(
            crb["subjects"],
            json!([{"kind": "ServiceAccount", "name": "istiod", "namespace": "istio-system"}])
        );
        let role = object("Role", ISTIOD);
        assert!(allows(&role["rules"], "", "secrets", "delete"));
        assert!(allows(
            &role["rules"],
            "coordination.k8s.io",
            "leases",
            "create"
        ));
        assert!(allows(
            &role["rules"],
            "networking.istio.io",
            "gateways",
            "create"
        ));
        let rb = object("RoleBinding", ISTIOD);
        assert_eq!(rb["roleRef"]["kind"], "Role");
        assert_eq!(rb["subjects"][0]["name"], "istiod");
    }

    /// The default platform: Istio 1.30.3 as the revision `1-30-3` (`upgrade: canary`).
    fn canary(kind: &str, name: &str) -> Value {
        step(&crate::config::for_test(""))
            .objects
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .map(|m| Value::clone(&m.body))
            .unwrap_or_else(|| panic!("{kind} {name} is not rendered"))
    }

    fn services_called(webhooks: &Value) -> Vec<&str> {
        webhooks["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["clientConfig"]["service"]["name"].as_str())
            .collect()
    }

    #[test]
    fn under_canary_istiods_objects_carry_the_revision_and_none_is_unrevisioned() {
        let s = step(&crate::config::for_test(""));
        let names: Vec<&str> = s.objects.iter().map(|m| m.name.as_str()).collect();
        for name in [
            "istiod-1-30-3",
            "istio-1-30-3",
            "istio-sidecar-injector-1-30-3",
            "istio-validator-1-30-3-istio-system",
            "istiod-clusterrole-1-30-3-istio-system",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        for name in [ISTIOD, INJECTOR, "istio", "istio-validator-istio-system"] {
            assert!(!names.contains(&name), "{name} in {names:?}");
        }
        let d = canary("Deployment", "istiod-1-30-3");
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            labels(&[("app", "istiod"), ("istio.io/rev", "1-30-3")])
        );
        assert!(selects(
            &d["spec"]["selector"]["matchLabels"],
            &d["spec"]["template"]["metadata"]["labels"]
        ));
        // The revision's injector takes only what is labelled for it by name.
        let mwc = canary(
            "MutatingWebhookConfiguration",
            "istio-sidecar-injector-1-30-3",
        );
        let hooks: Vec<&str> = mwc["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .filter_map(|h| h["name"].as_str())
            .collect();
        assert_eq!(
            hooks,
            [
                "rev.namespace.sidecar-injector.istio.io",
                "rev.object.sidecar-injector.istio.io"
            ]
        );
        assert_eq!(services_called(&mwc), ["istiod-1-30-3"; 2]);
        assert_eq!(mwc["metadata"]["labels"]["istio.io/rev"], "1-30-3");
    }

    #[test]
    fn the_default_revision_tag_sends_injection_and_validation_to_the_revision() {
        let rev = Revision::of(&crate::config::for_test(""));
        let [mwc, vwc] = revision_tag(&rev);
        assert_eq!(mwc.name, REVISION_TAG);
        assert_eq!(mwc.body["metadata"]["labels"]["istio.io/rev"], "1-30-3");
        assert_eq!(mwc.body["metadata"]["labels"]["istio.io/tag"], "default");
        assert_eq!(services_called(&mwc.body), ["istiod-1-30-3"; 4]);
        // `istio-injection=enabled` namespaces are the tag's.
        let namespace_hook = mwc.body["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .find(|h| h["name"] == "namespace.sidecar-injector.istio.io")
            .expect("the namespace entry");
        assert_eq!(
            namespace_hook["namespaceSelector"]["matchExpressions"],
            json!([{"key": "istio-injection", "operator": "In", "values": ["enabled"]}])
        );
        assert_eq!(vwc.name, DEFAULT_VALIDATOR);
        assert_eq!(services_called(&vwc.body), ["istiod-1-30-3"]);
    }

    #[test]
    fn istio_1_30s_istiod_has_its_charts_environment_named_ports_and_v1_reviews() {
        let d = canary("Deployment", "istiod-1-30-3");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "docker.io/istio/pilot:1.30.3");
        let env: Vec<&str> = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        for gone in ["JWT_POLICY", "GOMEMLIMIT", "ISTIOD_ADDR"] {
            assert!(!env.contains(&gone), "{gone} in {env:?}");
        }
        assert!(env.contains(&"CA_TRUSTED_NODE_ACCOUNTS"), "{env:?}");
        assert!(env.contains(&"GOMAXPROCS"), "{env:?}");
        assert_eq!(
            c["ports"],
            json!([
                {"name": "http-debug", "containerPort": 8080, "protocol": "TCP"},
                {"name": "grpc-xds", "containerPort": 15010, "protocol": "TCP"},
                {"name": "tls-xds", "containerPort": 15012, "protocol": "TCP"},
                {"name": "https-webhooks", "containerPort": 15017, "protocol": "TCP"},
                {"name": "http-monitoring", "containerPort": 15014, "protocol": "TCP"},
            ])
        );
        for (kind, name) in [
            (
                "MutatingWebhookConfiguration",
                "istio-sidecar-injector-1-30-3",
            ),
            (
                "ValidatingWebhookConfiguration",
                "istio-validator-1-30-3-istio-system",
            ),
        ] {
            for h in canary(kind, name)["webhooks"].as_array().expect("webhooks") {
                assert_eq!(h["admissionReviewVersions"], json!(["v1"]), "{name}");
            }
        }
    }
}
