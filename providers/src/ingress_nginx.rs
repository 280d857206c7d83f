//! Step `ingress-nginx`: the NGINX Ingress Controller — its workloads, its RBAC, how it is reached,
//! and the address it publishes.
//!
//! The objects are those Verrazzano v1.7.2 installs with the chart `ingress-nginx` 4.6.1 (release
//! `ingress-controller`, so every name starts with `P` = `ingress-controller-ingress-nginx`), in
//! namespace `verrazzano-ingress-nginx` (see `shared/reference/workloads-inventory.md`, section 1):
//!
//! - IngressClass `verrazzano-nginx` (controller `k8s.io/verrazzano-ingress-nginx`, not the default
//!   class), which the system Ingresses name.
//! - Service `P-controller`: type `LoadBalancer` (default) or `NodePort`, only HTTPS (443 → the
//!   controller's `https` port, `appProtocol: https`), the configured `externalIPs`. With
//!   ExternalDNS it carries the annotation that makes `verrazzano-ingress.<env>.<zone>` point at it.
//! - Deployment `P-controller`: one replica of container `controller` (image
//!   [`Image::NginxController`]) with ports `http` 80, `https` 443 and `http-metrics` 10254, probes
//!   on `/healthz:10254`, running as uid/gid 101 without privileges beyond `NET_BIND_SERVICE`. Its
//!   pods carry the Prometheus annotations and keep 80 and 443 out of the Istio sidecar (clients
//!   reach NGINX directly; NGINX's own upstream traffic still goes through the sidecar).
//! - Deployment `P-defaultbackend`: one replica of the default backend (image
//!   [`Image::NginxDefaultBackend`]) on `http` 8080, serving the error pages at `/www`, as uid/gid
//!   65534 with a read-only root file system; 8080 stays out of its sidecar.
//! - Services `P-controller-metrics` (ClusterIP, `http-metrics` 10254) and `P-defaultbackend`
//!   (ClusterIP, `http` 80 → `http`).
//! - ConfigMaps `P-controller` (NGINX settings: no snippet annotations, buffer sizes, a JSON access
//!   log) and `P-defaultbackend-custom-error-pages` (`<code>.html` and `<code>.json` for the 26
//!   codes of the chart; the controller mounts `400.html`).
//! - ServiceAccounts `P` (controller) and `P-backend`; Role and RoleBinding `P` (leader election on
//!   Lease `P-leader`, events, reads in its namespace); ClusterRole and ClusterRoleBinding
//!   `verrazzano-ingress-nginx-ingress-controller-ingress-nginx` (cluster-wide reads, Ingress
//!   status).
//!
//! Not rendered, as in Verrazzano: the admission webhook, PodDisruptionBudgets, autoscalers. Images
//! come from [`crate::config::Images`] (`images:` in the configuration).
//!
//! Output `ingress-ip`: the first external IP, else the load balancer's address once it has one.
//! [`crate::domain`] turns it into the platform's DNS domain; when neither the configuration nor a
//! previous apply knows it, the plan shows the hosts that use it as "(known after apply)", and apply
//! fills them in once the Service has its address.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, ExecAction,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::config::{IMAGE_PULL_POLICY, Image, IngressType, Platform};
use crate::external_dns::{self, before_sources};
use crate::istio::control_plane::after_istiod;
use crate::k8s::{self, field_env, map, rule, strings};
use crate::manifest::{Manifest, Step, address};
use crate::names::{
    INGRESS_CLASS, INGRESS_IP, INGRESS_NGINX, INGRESS_NGINX_STEP, ISTIO_PEER_AUTHENTICATION_STEP,
    NETWORK_POLICIES_STEP,
};
use crate::outputs::{OutputSpec, Outputs};

/// The chart's full name for release `ingress-controller` (`P`): the prefix of every object's name,
/// and the name of the controller's ServiceAccount, Role and RoleBinding.
pub const FULLNAME: &str = "ingress-controller-ingress-nginx";
/// The controller's Service.
pub const SERVICE: &str = "ingress-controller-ingress-nginx-controller";
/// The controller's Deployment.
pub const CONTROLLER_DEPLOYMENT: &str = "ingress-controller-ingress-nginx-controller";
/// The controller's metrics Service.
pub const METRICS_SERVICE: &str = "ingress-controller-ingress-nginx-controller-metrics";
/// The controller's ConfigMap of NGINX settings.
pub const CONTROLLER_CONFIG_MAP: &str = "ingress-controller-ingress-nginx-controller";
/// The default backend's Deployment and Service.
pub const DEFAULT_BACKEND: &str = "ingress-controller-ingress-nginx-defaultbackend";
/// The ConfigMap of error pages the default backend serves.
pub const ERROR_PAGES: &str = "ingress-controller-ingress-nginx-defaultbackend-custom-error-pages";
/// The controller's ServiceAccount (and its Role and RoleBinding).
pub const SERVICE_ACCOUNT: &str = FULLNAME;
/// The default backend's ServiceAccount.
pub const BACKEND_SERVICE_ACCOUNT: &str = "ingress-controller-ingress-nginx-backend";
/// The controller's ClusterRole and ClusterRoleBinding (`<namespace>-<fullname>`).
pub const CLUSTER_ROLE: &str = "verrazzano-ingress-nginx-ingress-controller-ingress-nginx";
/// The Lease the controller replicas elect their leader with.
pub const ELECTION_ID: &str = "ingress-controller-ingress-nginx-leader";
/// The controller name the IngressClass hands its Ingresses to.
pub const CONTROLLER: &str = "k8s.io/verrazzano-ingress-nginx";
/// The controller's metrics and health port (`http-metrics`).
pub const METRICS_PORT: i32 = 10254;
/// The default backend's port (`http`).
pub const BACKEND_PORT: i32 = 8080;

/// The ingress-nginx release its images are (the chart's app version). The pods carry it as
/// `app.kubernetes.io/version`: Istio's telemetry takes a workload's revision from it, and
/// `istioctl validate` warns about a Deployment whose pods have no such label.
pub const APP_VERSION: &str = "1.7.1";

/// Labels the controller's pods carry (and its Deployment and Services select).
pub const CONTROLLER_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/name", "ingress-nginx"),
    ("app.kubernetes.io/instance", "ingress-controller"),
    ("app.kubernetes.io/component", "controller"),
];

/// Labels the default backend's pods carry (and its Deployment and Service select).
pub const DEFAULT_BACKEND_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/name", "ingress-nginx"),
    ("app.kubernetes.io/instance", "ingress-controller"),
    ("app.kubernetes.io/component", "default-backend"),
];

/// The error pages' codes and reasons: the chart's 26.
const ERROR_CODES: [(u16, &str); 26] = [
    (301, "Moved Permanently"),
    (302, "Found"),
    (304, "Not Modified"),
    (307, "Temporary Redirect"),
    (308, "Permanent Redirect"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (407, "Proxy Authentication Required"),
    (408, "Request Timeout"),
    (409, "Conflict"),
    (413, "Payload Too Large"),
    (414, "URI Too Long"),
    (415, "Unsupported Media Type"),
    (416, "Range Not Satisfiable"),
    (418, "I'm a teapot"),
    (421, "Misdirected Request"),
    (429, "Too Many Requests"),
    (431, "Request Header Fields Too Large"),
    (500, "Internal Server Error"),
    (501, "Not Implemented"),
    (502, "Bad Gateway"),
    (503, "Service Unavailable"),
    (504, "Gateway Timeout"),
    (505, "HTTP Version Not Supported"),
];

/// The access log's fields and the NGINX variables they hold (`log-format-upstream`).
const ACCESS_LOG_FIELDS: [(&str, &str); 20] = [
    ("@timestamp", "time_iso8601"),
    ("request_id", "request_id"),
    ("remote_addr", "remote_addr"),
    ("remote_user", "remote_user"),
    ("host", "host"),
    ("method", "request_method"),
    ("uri", "request_uri"),
    ("protocol", "server_protocol"),
    ("status", "status"),
    ("request_length", "request_length"),
    ("bytes_sent", "bytes_sent"),
    ("body_bytes_sent", "body_bytes_sent"),
    ("request_time", "request_time"),
    ("referer", "http_referer"),
    ("user_agent", "http_user_agent"),
    ("x_forwarded_for", "http_x_forwarded_for"),
    ("ssl_protocol", "ssl_protocol"),
    ("upstream_addr", "upstream_addr"),
    ("upstream_status", "upstream_status"),
    ("upstream_response_time", "upstream_response_time"),
];

/// The `ingress-nginx` step, when NGINX is on. NGINX joins the mesh when Istio is on, so it comes
/// after strict mTLS and after istiod: its namespace is injected, and the sidecar injector fails
/// closed, so its pods would be refused until istiod serves the injector (which the control-plane
/// step waits for).
pub fn steps(p: &Platform, _outputs: &Outputs) -> Vec<Step> {
    if !p.components.ingress_nginx {
        return vec![];
    }
    // With someone else's Istio, its istiod serving the injector is a requirement of the plan.
    let mut after = if p.components.istio {
        let mut v = vec![ISTIO_PEER_AUTHENTICATION_STEP.to_string()];
        v.extend(after_istiod(p));
        v
    } else {
        vec![NETWORK_POLICIES_STEP.to_string()]
    };
    // Destroy deletes the controller's Service before ExternalDNS, which removes its record.
    after.extend(before_sources(p));
    vec![step(p, after)]
}

/// What an existing controller Deployment or IngressClass of `vz`'s names probably is.
const NGINX_TAKEN: &str = "probably an NGINX Ingress Controller installed by someone else; two controllers would fight over the same Ingresses";

fn step(p: &Platform, depends_on: Vec<String>) -> Step {
    let class = Manifest::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": INGRESS_CLASS},
        "spec": {"controller": CONTROLLER},
    }))
    .exclusive(NGINX_TAKEN);
    let service_address = address(INGRESS_NGINX_STEP, "Service", Some(INGRESS_NGINX), SERVICE);
    let mut objects = vec![class];
    objects.extend(service_accounts());
    objects.extend(rbac());
    objects.push(controller_config_map());
    objects.push(error_pages());
    objects.push(controller_service(p));
    objects.push(metrics_service());
    objects.push(default_backend_service());
    objects.push(controller_deployment(p).exclusive(NGINX_TAKEN));
    objects.push(default_backend_deployment(p));
    Step {
        id: INGRESS_NGINX_STEP.to_string(),
        description: "NGINX Ingress Controller: its IngressClass, workloads, RBAC and Services"
            .into(),
        depends_on,
        objects,
        outputs: vec![OutputSpec {
            name: INGRESS_IP.to_string(),
            object: service_address,
            pointers: vec![
                "/spec/externalIPs/0".into(),
                "/status/loadBalancer/ingress/0/ip".into(),
            ],
        }],
    }
}

fn controller_service(p: &Platform) -> Manifest {
    let labels: serde_json::Map<String, serde_json::Value> = CONTROLLER_LABELS
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect();
    let mut service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": INGRESS_NGINX, "labels": labels},
        "spec": {
            "type": match p.ingress_type {
                IngressType::LoadBalancer => "LoadBalancer",
                IngressType::NodePort => "NodePort",
            },
            "selector": labels,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https", "appProtocol": "https"}],
        },
    });
    if !p.external_ips.is_empty() {
        service["spec"]["externalIPs"] = json!(
            p.external_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    if let Some(annotations) = external_dns::ingress_service_annotations(p) {
        service["metadata"]["annotations"] = json!(annotations);
    }
    Manifest::from_value(service)
}

// ---------------------------------------------------------------------------------------------
// Small constructors.

/// Metadata of an object in the NGINX namespace (`namespaced`) or of a cluster-scoped one.
fn meta(name: &str, namespaced: bool, labels: &[(&str, &str)]) -> ObjectMeta {
    k8s::meta(name, namespaced.then_some(INGRESS_NGINX), labels)
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn service_port(name: &str, number: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port: number,
        protocol: Some("TCP".into()),
        target_port: Some(IntOrString::String(target.to_string())),
        ..Default::default()
    }
}

/// `GET <path>` on `port` over HTTP, with the chart's timings.
fn http_probe(path: &str, port: i32, timing: [i32; 5]) -> Probe {
    let [initial_delay, period, timeout, success, failure] = timing;
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        success_threshold: Some(success),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

fn runtime_default_seccomp() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    })
}

fn error_pages_volume(items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: "custom-error-pages".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: ERROR_PAGES.to_string(),
            items,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn error_pages_mount(path: &str) -> VolumeMount {
    VolumeMount {
        name: "custom-error-pages".into(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Identities and permissions.

fn service_accounts() -> [Manifest; 2] {
    let sa = |name: &str, labels: &[(&str, &str)]| {
        Manifest::from_typed(&ServiceAccount {
            metadata: meta(name, true, labels),
            automount_service_account_token: Some(true),
            ..Default::default()
        })
    };
    [
        sa(SERVICE_ACCOUNT, &CONTROLLER_LABELS),
        sa(BACKEND_SERVICE_ACCOUNT, &DEFAULT_BACKEND_LABELS),
    ]
}

/// The Role's rules: what the controller does in its own namespace.
fn role_rules() -> Vec<PolicyRule> {
    const READ: &[&str] = &["get", "list", "watch"];
    vec![
        rule(&[""], &["namespaces"], &["get"]),
        rule(&[""], &["configmaps", "pods", "secrets", "endpoints"], READ),
        rule(&[""], &["services"], READ),
        rule(&["networking.k8s.io"], &["ingresses"], READ),
        rule(&["networking.k8s.io"], &["ingresses/status"], &["update"]),
        rule(&["networking.k8s.io"], &["ingressclasses"], READ),
        PolicyRule {
            resource_names: Some(strings(&[ELECTION_ID])),
            ..rule(&["coordination.k8s.io"], &["leases"], &["get", "update"])
        },
        rule(&["coordination.k8s.io"], &["leases"], &["create"]),
        rule(&[""], &["events"], &["create", "patch"]),
        rule(
            &["discovery.k8s.io"],
            &["endpointslices"],
            &["list", "watch", "get"],
        ),
    ]
}

/// The ClusterRole's rules: what the controller watches across the cluster.
fn cluster_role_rules() -> Vec<PolicyRule> {
    const READ: &[&str] = &["get", "list", "watch"];
    vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "nodes",
                "pods",
                "secrets",
                "namespaces",
            ],
            &["list", "watch"],
        ),
        rule(&["coordination.k8s.io"], &["leases"], &["list", "watch"]),
        rule(&[""], &["nodes"], &["get"]),
        rule(&[""], &["services"], READ),
        rule(&["networking.k8s.io"], &["ingresses"], READ),
        rule(&[""], &["events"], &["create", "patch"]),
        rule(&["networking.k8s.io"], &["ingresses/status"], &["update"]),
        rule(&["networking.k8s.io"], &["ingressclasses"], READ),
        rule(
            &["discovery.k8s.io"],
            &["endpointslices"],
            &["list", "watch", "get"],
        ),
    ]
}

fn rbac() -> [Manifest; 4] {
    let subjects = Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: SERVICE_ACCOUNT.to_string(),
        namespace: Some(INGRESS_NGINX.to_string()),
        ..Default::default()
    }]);
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.to_string(),
        name: name.to_string(),
    };
    [
        Manifest::from_typed(&Role {
            metadata: meta(FULLNAME, true, &CONTROLLER_LABELS),
            rules: Some(role_rules()),
        }),
        Manifest::from_typed(&RoleBinding {
            metadata: meta(FULLNAME, true, &CONTROLLER_LABELS),
            role_ref: role_ref("Role", FULLNAME),
            subjects: subjects.clone(),
        }),
        Manifest::from_typed(&ClusterRole {
            metadata: meta(CLUSTER_ROLE, false, &CONTROLLER_LABELS[..2]),
            rules: Some(cluster_role_rules()),
            ..Default::default()
        }),
        Manifest::from_typed(&ClusterRoleBinding {
            metadata: meta(CLUSTER_ROLE, false, &CONTROLLER_LABELS[..2]),
            role_ref: role_ref("ClusterRole", CLUSTER_ROLE),
            subjects,
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Configuration.

/// The access log format: one JSON object per request, every value a string (so the line stays
/// valid JSON when a variable is empty or `-`), escaped by NGINX (`log-format-escape-json`).
fn access_log_format() -> String {
    let fields: Vec<String> = ACCESS_LOG_FIELDS
        .iter()
        .map(|(key, var)| format!("\"{key}\": \"${var}\""))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn controller_config_map() -> Manifest {
    Manifest::from_typed(&ConfigMap {
        metadata: meta(CONTROLLER_CONFIG_MAP, true, &CONTROLLER_LABELS),
        data: Some(BTreeMap::from([
            ("allow-snippet-annotations".into(), "false".into()),
            ("client-body-buffer-size".into(), "64k".into()),
            ("proxy-buffer-size".into(), "8k".into()),
            ("log-format-escape-json".into(), "true".into()),
            ("log-format-upstream".into(), access_log_format()),
        ])),
        ..Default::default()
    })
}

/// `<code>.html` and `<code>.json` for every code of [`ERROR_CODES`] (the chart's pages, with its
/// typos in 414 and 505 fixed).
fn error_pages() -> Manifest {
    let mut data = BTreeMap::new();
    for (code, reason) in ERROR_CODES {
        let status = format!("{code} {reason}");
        data.insert(
            format!("{code}.html"),
            format!(
                "<html>\n<head><title>{status}</title></head>\n<body>\n<center><h1>{status}</h1></center>\n</body>\n</html>\n"
            ),
        );
        data.insert(
            format!("{code}.json"),
            format!("{}\n", json!({"message": status})),
        );
    }
    Manifest::from_typed(&ConfigMap {
        metadata: meta(ERROR_PAGES, true, &DEFAULT_BACKEND_LABELS),
        data: Some(data),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Services.

fn cluster_ip_service(name: &str, labels: &[(&str, &str)], port: ServicePort) -> Manifest {
    Manifest::from_typed(&Service {
        metadata: meta(name, true, labels),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(map(labels)),
            ports: Some(vec![port]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn metrics_service() -> Manifest {
    cluster_ip_service(
        METRICS_SERVICE,
        &CONTROLLER_LABELS,
        service_port("http-metrics", METRICS_PORT, "http-metrics"),
    )
}

fn default_backend_service() -> Manifest {
    cluster_ip_service(
        DEFAULT_BACKEND,
        &DEFAULT_BACKEND_LABELS,
        service_port("http", 80, "http"),
    )
}

// ---------------------------------------------------------------------------------------------
// Workloads.

/// A one-replica Deployment whose selector, pod labels and object labels are `labels`. Its
/// rollouts surge: a new pod is ready before an old one goes (`maxSurge: 1`, `maxUnavailable: 0`),
/// so an image move never leaves NGINX with fewer ready pods than it had.
fn deployment(
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    pod: PodSpec,
) -> Manifest {
    Manifest::from_typed(&Deployment {
        metadata: meta(name, true, labels),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(map(labels)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(map(&[
                        labels,
                        &[("app.kubernetes.io/version", APP_VERSION)],
                    ]
                    .concat())),
                    annotations: Some(map(annotations)),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The controller's arguments, as Verrazzano renders them. Verrazzano passes
/// `--ingress-class=verrazzano-nginx` twice (from the chart's `ingressClass` and from its own
/// `extraArgs`); once is enough, so it appears once here.
fn controller_args() -> Vec<String> {
    vec![
        "/nginx-ingress-controller".into(),
        format!("--default-backend-service=$(POD_NAMESPACE)/{DEFAULT_BACKEND}"),
        format!("--publish-service=$(POD_NAMESPACE)/{SERVICE}"),
        format!("--election-id={ELECTION_ID}"),
        format!("--controller-class={CONTROLLER}"),
        format!("--ingress-class={INGRESS_CLASS}"),
        format!("--configmap=$(POD_NAMESPACE)/{CONTROLLER_CONFIG_MAP}"),
        "--ingress-class-by-name=true".into(),
        "--watch-ingress-without-class=true".into(),
    ]
}

/// Pod annotations of the controller: Prometheus scraping on the metrics port, and the Istio
/// sidecar kept out of the way of inbound 80 and 443 (clients talk to NGINX directly; its probes
/// are rewritten to go through the sidecar agent).
const CONTROLLER_POD_ANNOTATIONS: [(&str, &str); 6] = [
    ("prometheus.io/port", "10254"),
    ("prometheus.io/scrape", "true"),
    ("system.io/scrape", "true"),
    ("traffic.sidecar.istio.io/excludeInboundPorts", "80,443"),
    ("traffic.sidecar.istio.io/includeInboundPorts", ""),
    ("sidecar.istio.io/rewriteAppHTTPProbers", "true"),
];

/// Pod annotations of the default backend: its port stays out of the sidecar, so the controller
/// reaches it directly.
const BACKEND_POD_ANNOTATIONS: [(&str, &str); 1] =
    [("traffic.sidecar.istio.io/excludeInboundPorts", "8080")];

fn controller_deployment(p: &Platform) -> Manifest {
    // Verrazzano also sets LD_PRELOAD to the image's mimalloc; `vz` leaves the allocator alone.
    let container = Container {
        name: "controller".into(),
        image: Some(p.images.reference(Image::NginxController)),
        image_pull_policy: Some(IMAGE_PULL_POLICY.into()),
        args: Some(controller_args()),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![
            port("http", 80),
            port("https", 443),
            port("http-metrics", METRICS_PORT),
        ]),
        readiness_probe: Some(http_probe("/healthz", METRICS_PORT, [10, 10, 1, 1, 3])),
        liveness_probe: Some(http_probe("/healthz", METRICS_PORT, [10, 10, 1, 1, 5])),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(strings(&["/wait-shutdown"])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity("90Mi".into())),
            ])),
            ..Default::default()
        }),
        // NGINX binds 80 and 443 as uid 101: NET_BIND_SERVICE is the one capability it keeps.
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                add: Some(strings(&["NET_BIND_SERVICE"])),
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![error_pages_mount("/usr/local/nginx/html")]),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(SERVICE_ACCOUNT.to_string()),
        termination_grace_period_seconds: Some(300),
        node_selector: Some(map(&[("kubernetes.io/os", "linux")])),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some(map(&CONTROLLER_LABELS)),
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
        }),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(101),
            run_as_group: Some(101),
            run_as_non_root: Some(true),
            seccomp_profile: runtime_default_seccomp(),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(vec![error_pages_volume(Some(vec![KeyToPath {
            key: "400.html".into(),
            path: "400.html".into(),
            ..Default::default()
        }]))]),
        ..Default::default()
    };
    deployment(
        CONTROLLER_DEPLOYMENT,
        &CONTROLLER_LABELS,
        &CONTROLLER_POD_ANNOTATIONS,
        pod,
    )
}

fn default_backend_deployment(p: &Platform) -> Manifest {
    let container = Container {
        name: "ingress-nginx-default-backend".into(),
        image: Some(p.images.reference(Image::NginxDefaultBackend)),
        image_pull_policy: Some(IMAGE_PULL_POLICY.into()),
        ports: Some(vec![port("http", BACKEND_PORT)]),
        readiness_probe: Some(http_probe("/healthz", BACKEND_PORT, [0, 5, 5, 1, 6])),
        liveness_probe: Some(http_probe("/healthz", BACKEND_PORT, [30, 10, 5, 1, 3])),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![error_pages_mount("/www")]),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(BACKEND_SERVICE_ACCOUNT.to_string()),
        termination_grace_period_seconds: Some(60),
        node_selector: Some(map(&[("kubernetes.io/os", "linux")])),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(65534),
            run_as_group: Some(65534),
            run_as_non_root: Some(true),
            seccomp_profile: runtime_default_seccomp(),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(vec![error_pages_volume(None)]),
        ..Default::default()
    };
    deployment(
        DEFAULT_BACKEND,
        &DEFAULT_BACKEND_LABELS,
        &BACKEND_POD_ANNOTATIONS,
        pod,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test;
    use crate::k8s::first_container as container;
    use crate::names::{ISTIO_CONTROL_PLANE_STEP, ISTIO_REVISION_TAG_STEP};
    use serde_json::Value;

    fn rendered(yaml: &str) -> Step {
        step(&for_test(yaml), vec![])
    }

    /// The body of the object `kind`/`name` of the step rendered from `yaml`.
    fn object(yaml: &str, kind: &str, name: &str) -> Value {
        rendered(yaml)
            .objects
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .map(|m| Value::clone(&m.body))
            .unwrap_or_else(|| panic!("{kind} {name} is not rendered"))
    }

    fn service(yaml: &str) -> Value {
        object(yaml, "Service", SERVICE)
    }

    fn controller() -> Value {
        object("", "Deployment", CONTROLLER_DEPLOYMENT)
    }

    fn backend() -> Value {
        object("", "Deployment", DEFAULT_BACKEND)
    }

    fn labels(pairs: &[(&str, &str)]) -> Value {
        json!(map(pairs))
    }

    #[test]
    fn only_https_is_exposed_on_the_configured_type() {
        let svc = service("");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(svc["spec"]["ports"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https", "appProtocol": "https"})
        );
        assert!(svc["spec"].get("externalIPs").is_none());
        let svc = service("ingress: {type: NodePort, externalIPs: [192.0.2.9]}\n");
        assert_eq!(svc["spec"]["type"], "NodePort");
        assert_eq!(svc["spec"]["externalIPs"], json!(["192.0.2.9"]));
    }

    #[test]
    fn nginx_comes_after_strict_mtls_and_istiod_with_istio_and_after_the_policies_without() {
        let s = steps(&for_test(""), &Outputs::default());
        assert_eq!(
            s[0].depends_on,
            [ISTIO_PEER_AUTHENTICATION_STEP, ISTIO_REVISION_TAG_STEP],
            "under a revision, injection reaches istiod through the tag"
        );
        let s = steps(
            &for_test("components:\n  istio: {upgrade: inPlace}\n"),
            &Outputs::default(),
        );
        assert_eq!(
            s[0].depends_on,
            [ISTIO_PEER_AUTHENTICATION_STEP, ISTIO_CONTROL_PLANE_STEP]
        );
        let p = for_test("components:\n  istio: {enabled: false}\n");
        assert_eq!(
            steps(&p, &Outputs::default())[0].depends_on,
            [NETWORK_POLICIES_STEP]
        );
        let p = for_test("components:\n  ingressNGINX: {enabled: false}\n");
        assert!(steps(&p, &Outputs::default()).is_empty());
    }

    #[test]
    fn the_output_is_read_from_the_service() {
        let p = for_test("");
        let s = step(&p, vec![]);
        let out = &s.outputs[0];
        assert!(s.objects.iter().any(|m| s.address_of(m) == out.object));
        let live =
            json!({"spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.4"}]}}});
        assert_eq!(out.extract(&live).as_deref(), Some("203.0.113.4"));
    }

    #[test]
    fn external_dns_points_the_ingress_name_at_the_service() {
        let svc = service(
            "environmentName: prod\ndns: {externalDNS: {provider: oci, zone: example.com}}\n",
        );
        assert_eq!(
            svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
            "verrazzano-ingress.prod.example.com"
        );
        assert!(service("").pointer("/metadata/annotations").is_none());
    }

    #[test]
    fn the_step_renders_the_charts_objects_in_the_nginx_namespace() {
        let s = rendered("");
        let got: Vec<(String, String)> = s
            .objects
            .iter()
            .map(|m| (m.kind.clone(), m.name.clone()))
            .collect();
        let want: Vec<(String, String)> = [
            ("IngressClass", INGRESS_CLASS),
            ("ServiceAccount", "ingress-controller-ingress-nginx"),
            ("ServiceAccount", "ingress-controller-ingress-nginx-backend"),
            ("Role", "ingress-controller-ingress-nginx"),
            ("RoleBinding", "ingress-controller-ingress-nginx"),
            (
                "ClusterRole",
                "verrazzano-ingress-nginx-ingress-controller-ingress-nginx",
            ),
            (
                "ClusterRoleBinding",
                "verrazzano-ingress-nginx-ingress-controller-ingress-nginx",
            ),
            ("ConfigMap", "ingress-controller-ingress-nginx-controller"),
            (
                "ConfigMap",
                "ingress-controller-ingress-nginx-defaultbackend-custom-error-pages",
            ),
            ("Service", "ingress-controller-ingress-nginx-controller"),
            (
                "Service",
                "ingress-controller-ingress-nginx-controller-metrics",
            ),
            ("Service", "ingress-controller-ingress-nginx-defaultbackend"),
            ("Deployment", "ingress-controller-ingress-nginx-controller"),
            (
                "Deployment",
                "ingress-controller-ingress-nginx-defaultbackend",
            ),
        ]
        .iter()
        .map(|(k, n)| ((*k).to_string(), (*n).to_string()))
        .collect();
        assert_eq!(got, want);
        for m in &s.objects {
            let cluster_scoped = matches!(
                m.kind.as_str(),
                "IngressClass" | "ClusterRole" | "ClusterRoleBinding"
            );
            let want_ns = (!cluster_scoped).then_some(INGRESS_NGINX);
            assert_eq!(m.namespace.as_deref(), want_ns, "{}", m.display_name());
        }
    }

    #[test]
    fn the_controller_runs_with_verrazzanos_args_ports_and_probes() {
        let d = controller();
        assert_eq!(d["spec"]["replicas"], 1);
        let c = container(&d);
        assert_eq!(c["name"], "controller");
        assert_eq!(
            c["args"],
            json!([
                "/nginx-ingress-controller",
                "--default-backend-service=$(POD_NAMESPACE)/ingress-controller-ingress-nginx-defaultbackend",
                "--publish-service=$(POD_NAMESPACE)/ingress-controller-ingress-nginx-controller",
                "--election-id=ingress-controller-ingress-nginx-leader",
                "--controller-class=k8s.io/verrazzano-ingress-nginx",
                "--ingress-class=verrazzano-nginx",
                "--configmap=$(POD_NAMESPACE)/ingress-controller-ingress-nginx-controller",
                "--ingress-class-by-name=true",
                "--watch-ingress-without-class=true",
            ])
        );
        assert_eq!(
            c["ports"],
            json!([
                {"name": "http", "containerPort": 80, "protocol": "TCP"},
                {"name": "https", "containerPort": 443, "protocol": "TCP"},
                {"name": "http-metrics", "containerPort": 10254, "protocol": "TCP"},
            ])
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(
                c[probe]["httpGet"],
                json!({"path": "/healthz", "port": 10254, "scheme": "HTTP"}),
                "{probe}"
            );
        }
        assert_eq!(
            c["lifecycle"]["preStop"]["exec"]["command"],
            json!(["/wait-shutdown"])
        );
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "100m", "memory": "90Mi"}})
        );
        assert_eq!(
            c["env"],
            json!([
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ])
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], SERVICE_ACCOUNT);
        assert_eq!(pod["terminationGracePeriodSeconds"], 300);
        assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
        let anti = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(
            anti["labelSelector"]["matchLabels"],
            labels(&CONTROLLER_LABELS)
        );
    }

    #[test]
    fn the_default_backend_serves_http_on_8080() {
        let d = backend();
        assert_eq!(d["spec"]["replicas"], 1);
        let c = container(&d);
        assert_eq!(c["name"], "ingress-nginx-default-backend");
        assert_eq!(
            c["ports"],
            json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(
                c[probe]["httpGet"],
                json!({"path": "/healthz", "port": 8080, "scheme": "HTTP"}),
                "{probe}"
            );
        }
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], BACKEND_SERVICE_ACCOUNT);
        assert_eq!(pod["terminationGracePeriodSeconds"], 60);
        assert_eq!(pod["securityContext"]["runAsUser"], 65534);
    }

    #[test]
    fn security_contexts_keep_only_what_each_pod_needs() {
        let d = controller();
        assert_eq!(
            d["spec"]["template"]["spec"]["securityContext"],
            json!({"runAsUser": 101, "runAsGroup": 101, "runAsNonRoot": true,
                   "seccompProfile": {"type": "RuntimeDefault"}})
        );
        assert_eq!(
            container(&d)["securityContext"],
            json!({"privileged": false, "allowPrivilegeEscalation": false,
                   "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})
        );
        let d = backend();
        assert_eq!(
            d["spec"]["template"]["spec"]["securityContext"],
            json!({"runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": true,
                   "seccompProfile": {"type": "RuntimeDefault"}})
        );
        let sc = &container(&d)["securityContext"];
        assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["runAsNonRoot"], true);
    }

    #[test]
    fn pod_annotations_scrape_metrics_and_keep_nginx_ports_out_of_the_sidecar() {
        assert_eq!(
            controller()["spec"]["template"]["metadata"]["annotations"],
            json!({
                "prometheus.io/port": "10254",
                "prometheus.io/scrape": "true",
                "system.io/scrape": "true",
                "traffic.sidecar.istio.io/excludeInboundPorts": "80,443",
                "traffic.sidecar.istio.io/includeInboundPorts": "",
                "sidecar.istio.io/rewriteAppHTTPProbers": "true",
            })
        );
        assert_eq!(
            backend()["spec"]["template"]["metadata"]["annotations"],
            json!({"traffic.sidecar.istio.io/excludeInboundPorts": "8080"})
        );
    }

    #[test]
    fn metrics_and_default_backend_services_are_cluster_internal() {
        let metrics = object("", "Service", METRICS_SERVICE);
        assert_eq!(metrics["spec"]["type"], "ClusterIP");
        assert_eq!(
            metrics["spec"]["ports"],
            json!([{"name": "http-metrics", "port": 10254, "protocol": "TCP", "targetPort": "http-metrics"}])
        );
        let back = object("", "Service", DEFAULT_BACKEND);
        assert_eq!(back["spec"]["type"], "ClusterIP");
        assert_eq!(
            back["spec"]["ports"],
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}])
        );
        // Every named target port is a port of the pods the Service selects.
        for (svc, deployment) in [
            (service(""), controller()),
            (metrics, controller()),
            (back, backend()),
        ] {
            let names: Vec<&Value> = container(&deployment)["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| &p["name"])
                .collect();
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                assert!(names.contains(&&p["targetPort"]), "{}", p["targetPort"]);
            }
        }
    }

    #[test]
    fn the_controller_config_map_has_verrazzanos_settings_and_a_json_access_log() {
        let cm = object("", "ConfigMap", CONTROLLER_CONFIG_MAP);
        let data = &cm["data"];
        let keys: Vec<&String> = data
            .as_object()
            .map(|d| d.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "allow-snippet-annotations",
                "client-body-buffer-size",
                "log-format-escape-json",
                "log-format-upstream",
                "proxy-buffer-size",
            ]
        );
        assert_eq!(data["allow-snippet-annotations"], "false");
        assert_eq!(data["client-body-buffer-size"], "64k");
        assert_eq!(data["proxy-buffer-size"], "8k");
        assert_eq!(data["log-format-escape-json"], "true");
        let format = data["log-format-upstream"].as_str().unwrap_or_default();
        assert!(!format.contains('\n') && !format.contains('\''), "{format}");
        // Every value is a quoted NGINX variable, so each logged line is one JSON object.
        let parsed: Value = serde_json::from_str(format).unwrap_or_default();
        let fields = parsed.as_object().map(|o| o.len()).unwrap_or_default();
        assert_eq!(fields, ACCESS_LOG_FIELDS.len(), "{format}");
        for (key, value) in parsed.as_object().into_iter().flatten() {
            let var = value.as_str().and_then(|v| v.strip_prefix('$'));
            assert!(
                var.is_some_and(|v| !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')),
                "{key}: {value}"
            );
        }
        for var in [
            "$status",
            "$request_time",
            "$upstream_addr",
            "$time_iso8601",
        ] {
            assert!(format.contains(var), "{var}");
        }
    }

    #[test]
    fn the_error_pages_cover_the_charts_codes_and_the_controller_mounts_400() {
        let cm = object("", "ConfigMap", ERROR_PAGES);
        let data = cm["data"].as_object().cloned().unwrap_or_default();
        assert_eq!(data.len(), 52);
        for code in [400, 404, 500, 502, 503, 504] {
            assert!(data.contains_key(&format!("{code}.html")), "{code}.html");
            let json: Value =
                serde_json::from_str(data[&format!("{code}.json")].as_str().unwrap_or_default())
                    .unwrap_or_default();
            assert!(
                json["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&code.to_string())),
                "{code}.json"
            );
        }
        assert!(
            data["404.html"]
                .as_str()
                .is_some_and(|h| h.contains("<title>404 Not Found</title>"))
        );
        assert!(
            data["414.html"]
                .as_str()
                .is_some_and(|h| h.contains("<h1>414 URI Too Long</h1>"))
        );

        let pod = &controller()["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"],
            json!([{"name": "custom-error-pages", "configMap": {"name": ERROR_PAGES,
                     "items": [{"key": "400.html", "path": "400.html"}]}}])
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"],
            json!([{"name": "custom-error-pages", "mountPath": "/usr/local/nginx/html", "readOnly": true}])
        );
        let pod = &backend()["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"],
            json!([{"name": "custom-error-pages", "configMap": {"name": ERROR_PAGES}}])
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"],
            json!([{"name": "custom-error-pages", "mountPath": "/www", "readOnly": true}])
        );
    }

    /// Whether one of `rules` lets `verb` on `resource` of `group` (named `name`, if given).
    fn allows(rules: &Value, group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
        let has = |v: &Value, s: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == s));
        rules.as_array().into_iter().flatten().any(|r| {
            has(&r["apiGroups"], group)
                && has(&r["resources"], resource)
                && has(&r["verbs"], verb)
                && (r.get("resourceNames").is_none()
                    || name.is_some_and(|n| has(&r["resourceNames"], n)))
        })
    }

    #[test]
    fn rbac_grants_what_the_controller_needs_and_binds_it_to_its_account() {
        let role = object("", "Role", FULLNAME);
        let rules = &role["rules"];
        let k8s = "networking.k8s.io";
        let leases = "coordination.k8s.io";
        assert!(allows(rules, k8s, "ingresses/status", "update", None));
        assert!(allows(rules, k8s, "ingresses", "watch", None));
        assert!(allows(rules, k8s, "ingressclasses", "list", None));
        assert!(allows(rules, leases, "leases", "get", Some(ELECTION_ID)));
        assert!(allows(rules, leases, "leases", "update", Some(ELECTION_ID)));
        assert!(!allows(
            rules,
            leases,
            "leases",
            "update",
            Some("someone-else")
        ));
        assert!(allows(rules, leases, "leases", "create", None));
        assert!(allows(rules, "", "events", "create", None));
        assert!(allows(rules, "", "events", "patch", None));
        assert!(allows(rules, "", "namespaces", "get", None));
        assert!(allows(rules, "", "secrets", "watch", None));
        assert!(allows(
            rules,
            "discovery.k8s.io",
            "endpointslices",
            "list",
            None
        ));
        assert!(!allows(rules, "", "secrets", "update", None));

        let cluster = object("", "ClusterRole", CLUSTER_ROLE);
        let rules = &cluster["rules"];
        assert!(allows(rules, k8s, "ingresses/status", "update", None));
        assert!(allows(rules, k8s, "ingresses", "list", None));
        assert!(allows(rules, k8s, "ingressclasses", "watch", None));
        assert!(allows(rules, leases, "leases", "watch", None));
        assert!(allows(rules, "", "nodes", "get", None));
        assert!(allows(rules, "", "secrets", "list", None));
        assert!(allows(rules, "", "services", "get", None));
        assert!(allows(rules, "", "events", "patch", None));
        assert!(allows(
            rules,
            "discovery.k8s.io",
            "endpointslices",
            "get",
            None
        ));
        assert!(!allows(rules, "", "secrets", "get", None));

        let subject = json!([{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": INGRESS_NGINX}]);
        let rb = object("", "RoleBinding", FULLNAME);
        assert_eq!(rb["subjects"], subject);
        assert_eq!(
            rb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME})
        );
        let crb = object("", "ClusterRoleBinding", CLUSTER_ROLE);
        assert_eq!(crb["subjects"], subject);
        assert_eq!(
            crb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE})
        );
        for name in [SERVICE_ACCOUNT, BACKEND_SERVICE_ACCOUNT] {
            assert_eq!(
                object("", "ServiceAccount", name)["automountServiceAccountToken"],
                true
            );
        }
    }

    #[test]
    fn images_follow_the_registry_and_per_image_overrides() {
        let images = |yaml: &str| {
            [CONTROLLER_DEPLOYMENT, DEFAULT_BACKEND].map(|name| {
                let d = object(yaml, "Deployment", name);
                assert_eq!(container(&d)["imagePullPolicy"], "IfNotPresent");
                container(&d)["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
        };
        assert_eq!(
            images(""),
            [
                "ghcr.io/verrazzano/nginx-ingress-controller:v1.7.1-20240723181019-33c273be0",
                "ghcr.io/verrazzano/nginx-ingress-default-backend:v1.7.1-20240723181019-33c273be0",
            ]
        );
        assert_eq!(
            images("images: {registry: mirror.local:5000/vz}\n"),
            [
                "mirror.local:5000/vz/nginx-ingress-controller:v1.7.1-20240723181019-33c273be0",
                "mirror.local:5000/vz/nginx-ingress-default-backend:v1.7.1-20240723181019-33c273be0",
            ]
        );
        assert_eq!(
            images(
                "images:\n  registry: mirror.local:5000/vz\n  nginxDefaultBackend: other.example/backend:v2\n"
            ),
            [
                "mirror.local:5000/vz/nginx-ingress-controller:v1.7.1-20240723181019-33c273be0",
                "other.example/backend:v2",
            ]
        );
    }

    #[test]
    fn each_deployment_selects_its_own_pods_and_so_do_the_services() {
        let controller_labels = labels(&CONTROLLER_LABELS);
        let backend_labels = labels(&DEFAULT_BACKEND_LABELS);
        for (d, want) in [
            (controller(), &controller_labels),
            (backend(), &backend_labels),
        ] {
            assert_eq!(&d["spec"]["selector"]["matchLabels"], want);
            // The pods also carry the release's version, for Istio's telemetry.
            let mut pod = want.clone();
            pod["app.kubernetes.io/version"] = json!(APP_VERSION);
            assert_eq!(d["spec"]["template"]["metadata"]["labels"], pod);
        }
        assert_eq!(service("")["spec"]["selector"], controller_labels);
        assert_eq!(
            object("", "Service", METRICS_SERVICE)["spec"]["selector"],
            controller_labels
        );
        assert_eq!(
            object("", "Service", DEFAULT_BACKEND)["spec"]["selector"],
            backend_labels
        );
        assert_ne!(controller_labels, backend_labels);
        assert_eq!(
            backend_labels["app.kubernetes.io/component"],
            "default-backend"
        );
    }
}
