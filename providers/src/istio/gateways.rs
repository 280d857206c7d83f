//! Step `istio.gateways`: Istio's ingress and egress gateways, as Verrazzano v1.7.2 installs them
//! (see `shared/reference/workloads-inventory.md`, section 4), in namespace `istio-system`:
//!
//! - ServiceAccounts `istio-ingressgateway-service-account` and
//!   `istio-egressgateway-service-account`; Roles and RoleBindings `istio-ingressgateway-sds` and
//!   `istio-egressgateway-sds` (reading the secrets the gateways serve over SDS).
//! - Deployments `istio-ingressgateway` and `istio-egressgateway`: one replica each of container
//!   `istio-proxy` (image [`Image::ProxyV2`]) running `proxy router`, ready on
//!   `/healthz/ready:15021`, as uid/gid 1337 without capabilities, never injected. They need the
//!   ConfigMap `istio-ca-root-cert` istiod writes, and a certificate and configuration from
//!   istiod on 15012, hence this step comes after `istio.control-plane`.
//! - Services `istio-ingressgateway` (`status-port` 15021, `http2` 80 → 8080, `https` 443 → 8443;
//!   type `LoadBalancer` by default) and `istio-egressgateway` (ClusterIP, `http2` and `https`).
//!
//! Output `gateway-ip`: the ingress gateway's first external IP, else its load balancer's address.

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, ObjectFieldSelector, PodSpec,
    Service, ServiceAccount, ServiceSpec, Volume,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use super::control_plane::{
    NO_INJECTION, Revision, TRUST_DOMAIN, after_istiod, borrowed, container_security_context,
    empty_dir, http_probe, meta, mount, pod_security_context, replicated, root_cert_volume,
    service_port, spread, subject, tcp_port, token_volume,
};
use crate::config::{IMAGE_PULL_POLICY, Image, IngressType, Platform};
use crate::external_dns::{self, before_sources};
use crate::k8s::{env, field_env, map, resource_env, role_ref, rule};
use crate::manifest::{Manifest, Step, address};
use crate::names::{GATEWAY_HTTPS_TARGET_PORT, GATEWAY_IP, ISTIO_GATEWAYS_STEP, ISTIO_SYSTEM};
use crate::outputs::OutputSpec;

/// The ingress gateway's Deployment and Service.
pub const INGRESS_GATEWAY: &str = "istio-ingressgateway";
/// The egress gateway's Deployment and Service.
pub const EGRESS_GATEWAY: &str = "istio-egressgateway";
/// The gateways' readiness port (`status-port`).
pub const STATUS_PORT: i32 = 15021;

/// One of the two gateways.
struct Gateway {
    /// Deployment and Service name, and the `app` label.
    name: &'static str,
    /// The `istio` label.
    istio: &'static str,
    /// The `operator.istio.io/component` label.
    component: &'static str,
    /// Extra container ports before `http-envoy-prom`.
    ports: &'static [i32],
    /// Extra environment.
    env: &'static [(&'static str, &'static str)],
}

impl Gateway {
    fn service_account(&self) -> String {
        format!("{}-service-account", self.name)
    }

    fn sds(&self) -> String {
        format!("{}-sds", self.name)
    }

    /// What the Deployment and the Service select.
    fn selector(&self) -> [(&'static str, &'static str); 2] {
        [("app", self.name), ("istio", self.istio)]
    }

    /// Its labels, `istio.io/rev` naming the revision it runs on.
    fn labels(&self, rev: &Revision) -> Vec<(&'static str, String)> {
        let mut labels: Vec<(&'static str, String)> = self
            .selector()
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        labels.extend([
            ("istio.io/rev", rev.name.clone()),
            ("release", "istio".into()),
            ("operator.istio.io/component", self.component.into()),
        ]);
        labels
    }
}

const INGRESS: Gateway = Gateway {
    name: INGRESS_GATEWAY,
    istio: "ingressgateway",
    component: "IngressGateways",
    ports: &[STATUS_PORT, 8080, 8443],
    env: &[],
};

const EGRESS: Gateway = Gateway {
    name: EGRESS_GATEWAY,
    istio: "egressgateway",
    component: "EgressGateways",
    ports: &[8080, 8443],
    env: &[("ISTIO_META_REQUESTED_NETWORK_VIEW", "external")],
};

/// The `istio.gateways` step.
pub fn step(p: &Platform) -> Step {
    let rev = Revision::of(p);
    let mut objects = Vec::new();
    for g in [&INGRESS, &EGRESS] {
        objects.extend(identity(g, &rev));
        objects.push(deployment(p, g, &rev));
    }
    objects.push(ingress_service(p, &rev));
    objects.push(egress_service(&rev));
    Step {
        id: ISTIO_GATEWAYS_STEP.to_string(),
        description: "Istio's ingress and egress gateways".into(),
        // Under `upgrade: canary`, after the revision tag: a version move moves the gateways
        // once the mesh points at the new revision.
        // With Gateway API routes its Service is an ExternalDNS source: destroy deletes it while
        // ExternalDNS is still there to remove its record.
        depends_on: {
            let mut d = after_istiod(p);
            if p.gateway_api() {
                d.extend(before_sources(p));
            }
            d
        },
        objects,
        outputs: vec![OutputSpec {
            name: GATEWAY_IP.to_string(),
            object: address(
                ISTIO_GATEWAYS_STEP,
                "Service",
                Some(ISTIO_SYSTEM),
                INGRESS_GATEWAY,
            ),
            pointers: vec![
                "/spec/externalIPs/0".into(),
                "/status/loadBalancer/ingress/0/ip".into(),
            ],
        }],
    }
}

/// The gateway's ServiceAccount, and its Role and RoleBinding to read the secrets it serves.
fn identity(g: &Gateway, rev: &Revision) -> [Manifest; 3] {
    let labels = g.labels(rev);
    let labels = borrowed(&labels);
    [
        Manifest::from_typed(&ServiceAccount {
            metadata: meta(&g.service_account(), true, &labels),
            ..Default::default()
        }),
        Manifest::from_typed(&Role {
            metadata: meta(&g.sds(), true, &labels),
            rules: Some(vec![rule(&[""], &["secrets"], &["get", "watch", "list"])]),
        }),
        Manifest::from_typed(&RoleBinding {
            metadata: meta(&g.sds(), true, &labels),
            role_ref: role_ref("Role", &g.sds()),
            subjects: subject(&g.service_account()),
        }),
    ]
}

fn deployment(p: &Platform, g: &Gateway, rev: &Revision) -> Manifest {
    let (token, token_mount) = token_volume();
    let mut ports: Vec<_> = g.ports.iter().map(|n| tcp_port(*n)).collect();
    ports.push(k8s_openapi::api::core::v1::ContainerPort {
        name: Some("http-envoy-prom".into()),
        ..tcp_port(15090)
    });
    let mut environment = vec![
        env("JWT_POLICY", "third-party-jwt"),
        env("PILOT_CERT_PROVIDER", "istiod"),
        env("CA_ADDR", &rev.address()),
        field_env("NODE_NAME", "spec.nodeName"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("HOST_IP", "status.hostIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        env("ISTIO_META_WORKLOAD_NAME", g.name),
        env(
            "ISTIO_META_OWNER",
            &format!(
                "kubernetes://apis/apps/v1/namespaces/{ISTIO_SYSTEM}/deployments/{}",
                g.name
            ),
        ),
        env("ISTIO_META_MESH_ID", TRUST_DOMAIN),
        env("TRUST_DOMAIN", TRUST_DOMAIN),
        env("ISTIO_META_UNPRIVILEGED_POD", "true"),
        env("ISTIO_META_CLUSTER_ID", "Kubernetes"),
        field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
    ];
    environment.extend(g.env.iter().map(|(k, v)| env(k, v)));
    if rev.named() {
        // The proxy's default discovery address is the unrevisioned istiod's.
        environment.push(env(
            "PROXY_CONFIG",
            &format!("{{\"discoveryAddress\":\"{}\"}}", rev.address()),
        ));
    }
    let container = Container {
        name: "istio-proxy".into(),
        image: Some(p.images.reference(Image::ProxyV2)),
        image_pull_policy: Some(IMAGE_PULL_POLICY.into()),
        args: Some(
            [
                "proxy",
                "router",
                "--domain",
                "$(POD_NAMESPACE).svc.cluster.local",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(ports),
        readiness_probe: Some(http_probe("/healthz/ready", STATUS_PORT, 2, 30)),
        env: Some(environment),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![
            mount(
                "workload-socket",
                "/var/run/secrets/workload-spiffe-uds",
                false,
            ),
            mount(
                "credential-socket",
                "/var/run/secrets/credential-uds",
                false,
            ),
            mount(
                "workload-certs",
                "/var/run/secrets/workload-spiffe-credentials",
                false,
            ),
            mount("istio-envoy", "/etc/istio/proxy", false),
            mount("istio-data", "/var/lib/istio/data", false),
            mount("podinfo", "/etc/istio/pod", false),
            token_mount,
            mount("istiod-ca-cert", "/var/run/secrets/istio", false),
        ]),
        ..Default::default()
    };
    let downward = |path: &str, field: &str| DownwardAPIVolumeFile {
        path: path.to_string(),
        field_ref: Some(ObjectFieldSelector {
            field_path: field.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(g.service_account()),
        affinity: Some(spread(g.name)),
        security_context: Some(pod_security_context()),
        containers: vec![container],
        volumes: Some(vec![
            empty_dir("workload-socket", None),
            empty_dir("credential-socket", None),
            empty_dir("workload-certs", None),
            // Not optional: a gateway waits for istiod's root certificate.
            root_cert_volume("istiod-ca-cert", None, false),
            Volume {
                name: "podinfo".into(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: Some(vec![
                        downward("labels", "metadata.labels"),
                        downward("annotations", "metadata.annotations"),
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            empty_dir("istio-envoy", None),
            empty_dir("istio-data", None),
            token,
        ]),
        ..Default::default()
    };
    let labels = g.labels(rev);
    let labels = borrowed(&labels);
    let mut pod_labels = labels.clone();
    pod_labels.push(NO_INJECTION);
    let replicas = if g.name == INGRESS_GATEWAY {
        p.gateway.replicas
    } else {
        1
    };
    replicated(g.name, replicas, &labels, &g.selector(), &pod_labels, pod)
}

fn ingress_service(p: &Platform, rev: &Revision) -> Manifest {
    // Verrazzano gives its ingress gateway a type of its own (`istio.ingress.type`), as `vz` does
    // (`components.istio.ingress`, whose type defaults to the platform's `ingress.type`).
    let g = &p.gateway;
    let type_ = match g.service_type {
        IngressType::LoadBalancer => "LoadBalancer",
        IngressType::NodePort => "NodePort",
    };
    let external_ips = (!g.external_ips.is_empty())
        .then(|| g.external_ips.iter().map(ToString::to_string).collect());
    let mut metadata = meta(INGRESS_GATEWAY, true, &borrowed(&INGRESS.labels(rev)));
    // With Gateway API routes, this Service takes the platform's traffic that NGINX's took, and
    // ExternalDNS publishes it under NGINX's name.
    if p.gateway_api()
        && let Some(annotations) = external_dns::ingress_service_annotations(p)
    {
        metadata.annotations = Some(annotations);
    }
    Manifest::from_typed(&Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(map(&INGRESS.selector())),
            external_ips,
            ports: Some(vec![
                service_port("status-port", STATUS_PORT, STATUS_PORT),
                service_port("http2", 80, 8080),
                service_port("https", 443, i32::from(GATEWAY_HTTPS_TARGET_PORT)),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn egress_service(rev: &Revision) -> Manifest {
    Manifest::from_typed(&Service {
        metadata: meta(EGRESS_GATEWAY, true, &borrowed(&EGRESS.labels(rev))),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(map(&EGRESS.selector())),
            ports: Some(vec![
                service_port("http2", 80, 8080),
                service_port("https", 443, 8443),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test_verrazzano as platform;
    use crate::k8s::{first_container as container, selects};
    use serde_json::{Value, json};

    fn object(yaml: &str, kind: &str, name: &str) -> Value {
        step(&platform(yaml))
            .objects
            .iter()
            .find(|m| m.kind == kind && m.name == name)
            .map(|m| Value::clone(&m.body))
            .unwrap_or_else(|| panic!("{kind} {name} is not rendered"))
    }

    #[test]
    fn with_gateway_api_routes_and_external_dns_the_ingress_service_takes_nginxs_name() {
        let dns = "dns:\n  externalDNS: {provider: oci, zone: example.com}\n";
        // The Service's annotations, and whether the step comes after ExternalDNS.
        let rendered = |yaml: &str| {
            let s = step(&crate::config::for_test(yaml));
            let svc = s
                .objects
                .iter()
                .find(|m| m.kind == "Service" && m.name == INGRESS_GATEWAY)
                .expect("service");
            let after = s
                .depends_on
                .contains(&crate::external_dns::STEP.to_string());
            (svc.body["metadata"]["annotations"].clone(), after)
        };
        let (a, after) = rendered(&format!(
            "environmentName: dev\ningress: {{controller: gateway-api}}\n{dns}"
        ));
        assert_eq!(
            a["external-dns.alpha.kubernetes.io/hostname"],
            "verrazzano-ingress.dev.example.com"
        );
        assert_eq!(a["external-dns.alpha.kubernetes.io/ttl"], "60");
        assert!(after, "destroy deletes the Service before ExternalDNS");
        // With NGINX, NGINX's Service has that name.
        let (a, after) = rendered(&format!("environmentName: dev\n{dns}"));
        assert!(a.is_null() && !after, "{a}");
    }

    #[test]
    fn the_step_renders_both_gateways_after_the_control_plane() {
        let s = step(&platform(""));
        assert_eq!(s.id, "istio.gateways");
        assert_eq!(s.depends_on, vec!["istio.control-plane".to_string()]);
        let mut names: Vec<String> = s.objects.iter().map(|m| s.address_of(m)).collect();
        names.sort();
        let mut expected = Vec::new();
        for g in ["ingress", "egress"] {
            let p = "istio.gateways/";
            expected.extend([
                format!("{p}ServiceAccount/istio-system/istio-{g}gateway-service-account"),
                format!("{p}Role/istio-system/istio-{g}gateway-sds"),
                format!("{p}RoleBinding/istio-system/istio-{g}gateway-sds"),
                format!("{p}Deployment/istio-system/istio-{g}gateway"),
                format!("{p}Service/istio-system/istio-{g}gateway"),
            ]);
        }
        expected.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn the_output_is_read_from_the_ingress_gateway_service() {
        let s = step(&platform(""));
        assert_eq!(s.outputs.len(), 1);
        let o = &s.outputs[0];
        assert_eq!(o.name, "gateway-ip");
        assert_eq!(
            o.object,
            "istio.gateways/Service/istio-system/istio-ingressgateway"
        );
        assert_eq!(
            o.pointers,
            ["/spec/externalIPs/0", "/status/loadBalancer/ingress/0/ip"]
        );
        assert_eq!(
            o.extract(&json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})),
            Some("203.0.113.7".to_string())
        );
    }

    #[test]
    fn the_ingress_service_is_a_load_balancer_on_15021_80_and_443() {
        let s = object("", "Service", INGRESS_GATEWAY);
        assert_eq!(s["spec"]["type"], "LoadBalancer");
        assert_eq!(
            s["spec"]["ports"],
            json!([
                {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
                {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
            ])
        );
        assert!(s["spec"].get("externalIPs").is_none());
        // Its type follows the platform's ingress; NGINX's external IPs are NGINX's alone.
        let np = object(
            "ingress: {type: NodePort, externalIPs: [192.0.2.10]}\n",
            "Service",
            INGRESS_GATEWAY,
        );
        assert_eq!(np["spec"]["type"], "NodePort");
        assert!(np["spec"].get("externalIPs").is_none());
        let own = object(
            "ingress: {type: NodePort}\ncomponents:\n  istio:\n    ingress: {type: LoadBalancer, externalIPs: [192.0.2.11]}\n",
            "Service",
            INGRESS_GATEWAY,
        );
        assert_eq!(own["spec"]["type"], "LoadBalancer");
        assert_eq!(own["spec"]["externalIPs"], json!(["192.0.2.11"]));
    }

    #[test]
    fn the_ingress_gateway_runs_the_configured_replicas_and_the_egress_one() {
        let yaml = "components:\n  istio:\n    ingress: {replicas: 3}\n";
        assert_eq!(
            object(yaml, "Deployment", INGRESS_GATEWAY)["spec"]["replicas"],
            3
        );
        assert_eq!(
            object(yaml, "Deployment", EGRESS_GATEWAY)["spec"]["replicas"],
            1
        );
        assert_eq!(
            object("", "Deployment", INGRESS_GATEWAY)["spec"]["replicas"],
            1
        );
    }

    #[test]
    fn the_egress_service_is_cluster_internal_on_80_and_443() {
        let s = object("", "Service", EGRESS_GATEWAY);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(
            s["spec"]["ports"],
            json!([
                {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
            ])
        );
    }

    #[test]
    fn deployments_and_services_select_their_own_gateways_pods() {
        for (name, istio, other) in [
            (INGRESS_GATEWAY, "ingressgateway", EGRESS_GATEWAY),
            (EGRESS_GATEWAY, "egressgateway", INGRESS_GATEWAY),
        ] {
            let d = object("", "Deployment", name);
            let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
            assert_eq!(pod_labels["app"], name);
            assert_eq!(pod_labels["istio"], istio);
            assert_eq!(pod_labels["release"], "istio");
            assert_eq!(pod_labels["sidecar.istio.io/inject"], "false");
            assert_eq!(
                d["spec"]["selector"]["matchLabels"],
                json!({"app": name, "istio": istio})
            );
            assert!(selects(&d["spec"]["selector"]["matchLabels"], pod_labels));
            let s = object("", "Service", name);
            assert!(selects(&s["spec"]["selector"], pod_labels));
            let other_pods =
                &object("", "Deployment", other)["spec"]["template"]["metadata"]["labels"];
            assert!(!selects(&s["spec"]["selector"], other_pods));
        }
    }

    #[test]
    fn the_gateways_run_istio_proxy_as_a_router_ready_on_15021() {
        for (name, ports) in [
            (INGRESS_GATEWAY, json!([15021, 8080, 8443, 15090])),
            (EGRESS_GATEWAY, json!([8080, 8443, 15090])),
        ] {
            let d = object("", "Deployment", name);
            let c = container(&d);
            assert_eq!(c["name"], "istio-proxy");
            assert_eq!(
                c["image"],
                "ghcr.io/verrazzano/proxyv2:1.19.3-20240104211928-419dfb47"
            );
            assert_eq!(
                c["args"],
                json!([
                    "proxy",
                    "router",
                    "--domain",
                    "$(POD_NAMESPACE).svc.cluster.local"
                ])
            );
            let numbers: Vec<Value> = c["ports"]
                .as_array()
                .map(|a| a.iter().map(|p| p["containerPort"].clone()).collect())
                .unwrap_or_default();
            assert_eq!(json!(numbers), ports, "{name}");
            assert_eq!(
                c["ports"][ports.as_array().map_or(0, Vec::len) - 1]["name"],
                "http-envoy-prom"
            );
            let probe = &c["readinessProbe"];
            assert_eq!(probe["httpGet"]["path"], "/healthz/ready");
            assert_eq!(probe["httpGet"]["port"], 15021);
            assert_eq!(probe["periodSeconds"], 2);
            assert_eq!(probe["failureThreshold"], 30);
            let env = |key: &str| {
                c["env"]
                    .as_array()
                    .and_then(|e| e.iter().find(|v| v["name"] == key))
                    .map(|v| v["value"].clone())
            };
            assert_eq!(env("CA_ADDR"), Some(json!("istiod.istio-system.svc:15012")));
            assert_eq!(env("ISTIO_META_UNPRIVILEGED_POD"), Some(json!("true")));
            let network_view = env("ISTIO_META_REQUESTED_NETWORK_VIEW");
            if name == EGRESS_GATEWAY {
                assert_eq!(network_view, Some(json!("external")));
            } else {
                assert_eq!(network_view, None);
            }
        }
    }

    #[test]
    fn the_gateways_run_as_1337_with_nothing_to_drop_and_need_the_root_cert() {
        for name in [INGRESS_GATEWAY, EGRESS_GATEWAY] {
            let d = object("", "Deployment", name);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["serviceAccountName"], format!("{name}-service-account"));
            let sc = &pod["securityContext"];
            assert_eq!(sc["runAsUser"], 1337);
            assert_eq!(sc["runAsGroup"], 1337);
            assert_eq!(sc["fsGroup"], 1337);
            assert_eq!(sc["runAsNonRoot"], true);
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
            let csc = &container(&d)["securityContext"];
            assert_eq!(csc["capabilities"]["drop"], json!(["ALL"]));
            assert_eq!(csc["allowPrivilegeEscalation"], false);
            let root = pod["volumes"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == "istiod-ca-cert"))
                .cloned()
                .unwrap_or_default();
            assert_eq!(root["configMap"], json!({"name": "istio-ca-root-cert"}));
        }
    }

    #[test]
    fn each_gateway_reads_secrets_through_its_sds_role() {
        for name in [INGRESS_GATEWAY, EGRESS_GATEWAY] {
            let sds = format!("{name}-sds");
            let role = object("", "Role", &sds);
            assert_eq!(
                role["rules"],
                json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}])
            );
            let rb = object("", "RoleBinding", &sds);
            assert_eq!(
                rb["roleRef"],
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sds})
            );
            assert_eq!(
                rb["subjects"],
                json!([{"kind": "ServiceAccount", "name": format!("{name}-service-account"), "namespace": "istio-system"}])
            );
        }
    }
}
