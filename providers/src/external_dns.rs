//! Step `external-dns`: ExternalDNS, for DNS providers `vz` does not speak itself (`dns.externalDNS`).
//!
//! As Verrazzano v1.7.2 runs it (release `external-dns` in `verrazzano-system`, image
//! `external-dns:v0.12.2-…`): ServiceAccount, ClusterRole (read Services, Pods, Nodes, Endpoints,
//! Ingresses and Istio Gateways), ClusterRoleBinding, a ClusterIP Service for its metrics on 7979, and
//! one Deployment whose pods stay out of the mesh (`sidecar.istio.io/inject: "false"`), run as
//! `nobody` (uid/gid/fsGroup 99) with every capability dropped, and sync with
//!
//! `--registry=txt --txt-owner-id=<id> --txt-prefix=_<id>- --policy=sync --events --interval=24h
//! --domain-filter=<zone> --source=ingress --source=service [--source=istio-gateway]`.
//!
//! With `ingress.controller: gateway-api` the system routes are Gateway API HTTPRoutes, which
//! Verrazzano's ExternalDNS does not read (v0.12.2 reads routes of `v1alpha2` only): the image is
//! upstream's v0.22.0 ([`EXTERNAL_DNS_GATEWAY_API`](crate::config::EXTERNAL_DNS_GATEWAY_API)), with
//! `--source=gateway-httproute` and `--annotation-prefix=external-dns.alpha.kubernetes.io/` (v0.22.0's
//! default prefix is `external-dns.kubernetes.io/`; the annotations `vz` writes are the same in both
//! modes), and may also read Namespaces, EndpointSlices, Gateways and HTTPRoutes. The Ingress source
//! stays, so that during a migration from NGINX the Ingresses' records hold until the routes
//! publish the same ones.
//!
//! `policy: sync` makes ExternalDNS delete the records whose sources are gone, but only records its
//! TXT registry says it owns (owner id `vz-<environmentName>` unless `txtOwnerId` is set).
//! The provider's credentials Secret (`credentials`) is copied from the user's namespace into
//! `verrazzano-system` (the copy has the same name; its values come from the cluster at apply
//! and never pass through the plan or the state) and mounted at `/etc/kubernetes/`, where the OCI
//! provider looks for `oci.yaml`.
//!
//! What it publishes: `verrazzano-ingress.<env>.<zone>` for the NGINX controller's Service
//! (annotation `external-dns.alpha.kubernetes.io/hostname`), and a CNAME to that name for every
//! system Ingress host (annotation `…/target`). With Gateway API routes the name is the Istio
//! ingress gateway Service's, and the CNAMEs are those of every host of an HTTPRoute accepted by a
//! Gateway that carries the `…/target` annotation (the system Gateway and each application's).
//! The steps of these sources come after this one, so that destroy deletes them first; before
//! ExternalDNS itself goes, the engine runs its final sync ([`final_sync_job`]) so that the records of the deleted sources are removed — the
//! leak Verrazzano's users met when ExternalDNS was uninstalled before it had synced.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::config::{Dns, EnvValue, ExternalDns, IMAGE_PULL_POLICY, Image, Platform};
use crate::domain;
use crate::manifest::{Fill, FillTarget, Manifest, Step};
use crate::names::{NETWORK_POLICIES_STEP, SecretRef, VERRAZZANO_SYSTEM};
use crate::outputs::Outputs;

/// Id of this step.
pub const STEP: &str = "external-dns";
/// Name of every ExternalDNS object.
pub const NAME: &str = "external-dns";
/// The port of its metrics and health checks.
pub const PORT: i64 = 7979;
/// Name of the Job that runs ExternalDNS's final sync on destroy.
pub const FINAL_SYNC_JOB: &str = "external-dns-final-sync";
/// Where the credentials Secret is mounted.
pub const CREDENTIALS_PATH: &str = "/etc/kubernetes/";
/// The prefix of the annotations ExternalDNS reads (Verrazzano's ExternalDNS knows no other).
pub const ANNOTATION_PREFIX: &str = "external-dns.alpha.kubernetes.io/";

/// The TTL of every record ExternalDNS publishes for `vz`, in seconds.
pub const TTL: &str = "60";

/// The annotations of the Service that takes the platform's traffic (NGINX's controller, or with
/// Gateway API routes Istio's ingress gateway): publish it as `verrazzano-ingress.<env>.<zone>`.
/// `None` without ExternalDNS.
pub fn ingress_service_annotations(p: &Platform) -> Option<BTreeMap<String, String>> {
    let name = domain::ingress_dns_name(p)?;
    Some(BTreeMap::from([
        (format!("{ANNOTATION_PREFIX}hostname"), name),
        (format!("{ANNOTATION_PREFIX}ttl"), TTL.to_string()),
    ]))
}

/// The annotation of a source whose hosts are to point at `verrazzano-ingress.<env>.<zone>` (a
/// system Ingress, or a Gateway of Gateway API routes): key and value. `None` without ExternalDNS.
pub fn target_annotation(p: &Platform) -> Option<(String, String)> {
    let name = domain::ingress_dns_name(p)?;
    Some((format!("{ANNOTATION_PREFIX}target"), name))
}

/// `metadata` (an object's, as JSON) with `annotation` added, if there is one.
pub fn annotated(mut metadata: Value, annotation: Option<(String, String)>) -> Value {
    if let Some((k, v)) = annotation {
        metadata["annotations"][k] = json!(v);
    }
    metadata
}

/// The annotation that gives the records of a source's hosts their TTL: key and value. `None`
/// without ExternalDNS.
pub fn ttl_annotation(p: &Platform) -> Option<(String, String)> {
    settings(p).map(|_| (format!("{ANNOTATION_PREFIX}ttl"), TTL.to_string()))
}

/// The labels of every ExternalDNS object (and the selector of its pods).
fn labels() -> serde_json::Map<String, Value> {
    [
        ("app.kubernetes.io/name", NAME),
        ("app.kubernetes.io/instance", NAME),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), json!(v)))
    .collect()
}

/// ExternalDNS's settings, when the platform has it.
pub fn settings(p: &Platform) -> Option<&ExternalDns> {
    match &p.dns {
        Dns::ExternalDns(e) => Some(e),
        _ => None,
    }
}

/// The steps that must come after ExternalDNS (so that destroy deletes them, and the records they
/// stand for, while ExternalDNS is still there): a dependency on [`STEP`] when the platform has it.
pub fn before_sources(p: &Platform) -> Vec<String> {
    settings(p).map(|_| STEP.to_string()).into_iter().collect()
}

/// The `external-dns` step (only with `dns.externalDNS`).
pub fn steps(p: &Platform, _outputs: &Outputs) -> Vec<Step> {
    let Some(e) = settings(p) else {
        return vec![];
    };
    let meta = |namespaced: bool| {
        let mut m = json!({"name": NAME, "labels": labels()});
        if namespaced {
            m["namespace"] = json!(VERRAZZANO_SYSTEM);
        }
        m
    };
    let mut objects = vec![Manifest::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(true),
    }))];
    if let Some(c) = &e.credentials {
        objects.push(credentials_copy(c.name.as_str(), &c.namespace));
    }
    let rule = |groups: &[&str], resources: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": ["get", "list", "watch"]});
    let mut rules = vec![
        rule(&[""], &["services", "pods", "nodes", "endpoints"]),
        rule(&["extensions", "networking.k8s.io"], &["ingresses"]),
    ];
    if p.components.istio {
        rules.push(rule(&["networking.istio.io"], &["gateways"]));
    }
    if p.gateway_api() {
        // What v0.22.0's service and gateway-httproute sources list and watch.
        rules.push(rule(&[""], &["namespaces"]));
        rules.push(rule(&["discovery.k8s.io"], &["endpointslices"]));
        rules.push(rule(
            &["gateway.networking.k8s.io"],
            &["gateways", "httproutes"],
        ));
    }
    objects.extend([
        Manifest::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(false), "rules": rules,
        })),
        Manifest::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(false),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": VERRAZZANO_SYSTEM}],
        })),
        Manifest::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta(true),
            "spec": {
                "type": "ClusterIP",
                "selector": labels(),
                "ports": [{"name": "http", "port": PORT, "protocol": "TCP", "targetPort": "http"}],
            },
        })),
        Manifest::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(true),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels()},
                "template": pod_template(p, e),
            },
        })),
    ]);
    vec![Step {
        id: STEP.into(),
        description: format!(
            "ExternalDNS: records in zone {} through provider {}",
            e.zone, e.provider
        ),
        // After the NetworkPolicies (as every component), so that destroy keeps its own until it goes.
        depends_on: vec![NETWORK_POLICIES_STEP.to_string()],
        objects,
        outputs: vec![],
    }]
}

/// The copy of the user's credentials Secret in `verrazzano-system`: every key, copied by the
/// engine from the cluster.
fn credentials_copy(name: &str, namespace: &str) -> Manifest {
    let mut m = Manifest::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": VERRAZZANO_SYSTEM, "labels": labels()},
        "type": "Opaque",
        "data": null,
    }));
    m.fills.push(Fill {
        target: FillTarget::Data,
        from: SecretRef::new(namespace, name),
        keys: vec![],
    });
    m
}

/// ExternalDNS's arguments, in the chart's order.
pub fn args(p: &Platform, e: &ExternalDns) -> Vec<String> {
    let mut args = vec![
        "--log-level=info".to_string(),
        "--log-format=text".into(),
        "--events".into(),
        format!("--domain-filter={}", e.zone),
    ];
    if p.gateway_api() {
        args.push(format!("--annotation-prefix={ANNOTATION_PREFIX}"));
    }
    if let Some(id) = &e.zone_id {
        args.push(format!("--zone-id-filter={id}"));
    }
    args.extend([
        "--policy=sync".to_string(),
        format!("--provider={}", e.provider),
        "--registry=txt".into(),
        format!("--interval={}", e.interval),
        format!("--txt-owner-id={}", e.owner_id),
        format!("--txt-prefix=_{}-", e.owner_id),
        "--source=ingress".into(),
        "--source=service".into(),
    ]);
    if p.components.istio {
        args.push("--source=istio-gateway".into());
    }
    if p.gateway_api() {
        args.push("--source=gateway-httproute".into());
    }
    args.extend(e.args.iter().cloned());
    args
}

fn pod_template(p: &Platform, e: &ExternalDns) -> Value {
    let env: Vec<Value> = e
        .env
        .iter()
        .map(|(name, value)| match (value, &e.credentials) {
            (EnvValue::Text(v), _) => json!({"name": name, "value": v}),
            (EnvValue::CredentialsKey(k), Some(c)) => json!({"name": name, "valueFrom":
                {"secretKeyRef": {"name": c.name, "key": k}}}),
            // The configuration refuses a key without a credentials Secret.
            (EnvValue::CredentialsKey(_), None) => json!({"name": name}),
        })
        .collect();
    let mut container = json!({
        "name": NAME,
        "image": p.images.reference(Image::ExternalDns),
        "imagePullPolicy": IMAGE_PULL_POLICY,
        "args": args(p, e),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": probe([5, 10, 5, 1, 6]),
        "livenessProbe": probe([10, 10, 5, 1, 2]),
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
        },
    });
    let mut spec = json!({
        "serviceAccountName": NAME,
        "securityContext": {
            "fsGroup": 99, "runAsGroup": 99, "runAsUser": 99, "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [],
    });
    if !env.is_empty() {
        container["env"] = json!(env);
    }
    if let Some(c) = &e.credentials {
        container["volumeMounts"] =
            json!([{"name": "config", "mountPath": CREDENTIALS_PATH, "readOnly": true}]);
        spec["volumes"] = json!([{"name": "config", "secret": {"secretName": c.name}}]);
    }
    spec["containers"] = json!([container]);
    let mut labels = labels();
    labels.insert("sidecar.istio.io/inject".into(), json!("false"));
    json!({"metadata": {"labels": labels}, "spec": spec})
}

/// `GET /healthz` on the metrics port with the chart's timings (delay, period, timeout, success,
/// failure).
fn probe([delay, period, timeout, success, failure]: [i64; 5]) -> Value {
    json!({
        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": delay, "periodSeconds": period, "timeoutSeconds": timeout,
        "successThreshold": success, "failureThreshold": failure,
    })
}

/// The Job that runs ExternalDNS once, with the pod template of its Deployment as it is in the
/// cluster (`deployment`), so that records whose sources were deleted are removed before ExternalDNS
/// is. `--once` makes it exit after one sync: 0 when every change went through. `deadline` bounds
/// how long it may run, in seconds.
pub fn final_sync_job(deployment: &Value, deadline: i64) -> Option<Value> {
    let mut template = deployment.pointer("/spec/template")?.clone();
    let spec = template.get_mut("spec")?;
    spec["restartPolicy"] = json!("Never");
    let container = spec.get_mut("containers")?.get_mut(0)?;
    let args = container.get_mut("args")?.as_array_mut()?;
    args.retain(|a| a != "--events");
    args.push(json!("--once"));
    if let Some(c) = container.as_object_mut() {
        // A one-shot run has nothing to probe; its log tail says why it failed.
        c.remove("readinessProbe");
        c.remove("livenessProbe");
        c.insert(
            "terminationMessagePolicy".into(),
            json!("FallbackToLogsOnError"),
        );
    }
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.insert("vz.dev/final-sync".into(), json!("true"));
    }
    Some(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": FINAL_SYNC_JOB, "namespace": VERRAZZANO_SYSTEM,
                     "labels": labels()},
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": deadline.max(1),
            "template": template,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;
    use crate::k8s::first_container;

    const OCI: &str = "environmentName: dev\ndns:\n  externalDNS:\n    provider: oci\n    zone: example.com\n    credentials: {secretName: oci-dns, namespace: vz-install}\n    env: [{name: TOKEN, credentialsKey: token}]\n    args: ['--oci-zone-scope=GLOBAL']\n";

    fn object(yaml: &str, kind: &str) -> Manifest {
        let steps = steps(&platform(yaml), &Outputs::default());
        steps[0]
            .objects
            .iter()
            .find(|m| m.kind == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    }

    #[test]
    fn nothing_without_external_dns() {
        assert!(steps(&platform(""), &Outputs::default()).is_empty());
        assert!(before_sources(&platform("")).is_empty());
        assert_eq!(before_sources(&platform(OCI)), [STEP]);
    }

    #[test]
    fn it_runs_with_verrazzanos_registry_policy_and_sources() {
        let d = object(OCI, "Deployment").body;
        let c = first_container(&d);
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            args,
            [
                "--log-level=info",
                "--log-format=text",
                "--events",
                "--domain-filter=example.com",
                "--policy=sync",
                "--provider=oci",
                "--registry=txt",
                "--interval=24h",
                "--txt-owner-id=vz-dev",
                "--txt-prefix=_vz-dev-",
                "--source=ingress",
                "--source=service",
                "--source=istio-gateway",
                "--oci-zone-scope=GLOBAL",
            ]
        );
        assert_eq!(
            c["image"],
            "ghcr.io/verrazzano/external-dns:v0.12.2-20231219112424-52012475"
        );
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"],
            "false"
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsUser"], 99);
        assert_eq!(pod["securityContext"]["fsGroup"], 99);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["ports"][0]["containerPort"], 7979);
    }

    #[test]
    fn without_istio_gateways_are_neither_a_source_nor_readable() {
        let yaml =
            format!("{OCI}components:\n  istio: {{enabled: false}}\n  kiali: {{enabled: false}}\n");
        let d = object(&yaml, "Deployment").body;
        assert!(
            !first_container(&d)["args"]
                .as_array()
                .expect("args")
                .contains(&json!("--source=istio-gateway"))
        );
        let role = object(&yaml, "ClusterRole").body;
        assert!(!role.to_string().contains("networking.istio.io"));
        let role = object(OCI, "ClusterRole").body;
        assert_eq!(role["rules"][2]["resources"], json!(["gateways"]));
    }

    #[test]
    fn with_gateway_api_routes_it_is_one_that_reads_them() {
        let yaml = format!("{OCI}ingress: {{controller: gateway-api}}\n");
        let d = object(&yaml, "Deployment").body;
        let c = first_container(&d);
        assert_eq!(
            c["image"],
            "registry.k8s.io/external-dns/external-dns:v0.22.0"
        );
        let args = c["args"].as_array().expect("args");
        for a in [
            "--annotation-prefix=external-dns.alpha.kubernetes.io/",
            "--source=ingress",
            "--source=gateway-httproute",
        ] {
            assert!(args.contains(&json!(a)), "{a} in {args:?}");
        }
        let role = object(&yaml, "ClusterRole").body.to_string();
        for r in [
            r#"["namespaces"]"#,
            r#"["endpointslices"]"#,
            r#"["gateways","httproutes"]"#,
        ] {
            assert!(role.contains(r), "{r} in {role}");
        }
    }

    #[test]
    fn credentials_are_copied_and_mounted_never_written_in_the_manifest() {
        let secret = object(OCI, "Secret");
        assert_eq!(
            (secret.namespace.as_deref(), secret.name.as_str()),
            (Some("verrazzano-system"), "oci-dns")
        );
        assert_eq!(secret.body["data"], Value::Null);
        assert_eq!(secret.fills.len(), 1);
        assert_eq!(secret.fills[0].target, FillTarget::Data);
        assert_eq!(
            secret.fills[0].from,
            SecretRef::new("vz-install", "oci-dns")
        );
        let d = object(OCI, "Deployment").body;
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], "oci-dns");
        let c = first_container(&d);
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/kubernetes/");
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"],
            json!({"name": "oci-dns", "key": "token"})
        );
    }

    #[test]
    fn the_final_sync_runs_the_deployments_pod_once() {
        let d = object(OCI, "Deployment").body;
        let job = final_sync_job(&d, 300).expect("a job");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let args = pod["containers"][0]["args"].as_array().expect("args");
        assert_eq!(args.last(), Some(&json!("--once")));
        assert!(!args.contains(&json!("--events")));
        assert!(args.contains(&json!("--txt-owner-id=vz-dev")));
        assert_eq!(pod["serviceAccountName"], NAME);
        assert!(pod["containers"][0].get("readinessProbe").is_none());
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 300);
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"], NAME,
            "the ExternalDNS NetworkPolicy applies to it"
        );
        assert!(final_sync_job(&json!({}), 300).is_none());
    }
}
