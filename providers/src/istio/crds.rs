//! The CustomResourceDefinitions of the Istio releases `vz` installs: 1.19.3 (Verrazzano v1.7.2's)
//! and 1.30.3.
//!
//! [`definitions`] gives the 15 CRDs of a release's `base` chart — the `extensions`,
//! `networking`, `security` and `telemetry` groups of `istio.io`, and for 1.19 the operator chart's
//! `install` group — with Istio's own names, short names, categories, served versions, storage
//! version, printer columns, status subresource and chart labels. 1.30 against 1.19: the
//! networking kinds (but EnvoyFilter and ProxyConfig) serve and store `v1` besides `v1alpha3` and
//! `v1beta1`, the security kinds store `v1`, Telemetry serves `v1`, AuthorizationPolicy has the
//! short name `ap` and an `Action` column, TrafficExtension is new and IstioOperator is gone (the
//! in-cluster operator was removed). Every version 1.19 serves, 1.30 serves too, so objects
//! written for one are read by the other; `vz` writes its own with versions both serve
//! ([`SECURITY_API`], [`NETWORKING_API`]), so a version move rewrites none of them. A CRD moved to
//! 1.30 keeps serving `v1` when moved back (the API server refuses to drop a stored version): see
//! the `crds` lifecycle of `vz`.
//!
//! Schemas: the kinds `vz` writes itself (PeerAuthentication, Gateway, VirtualService,
//! DestinationRule, AuthorizationPolicy, EnvoyFilter) get a structural OpenAPI v3 schema for `spec`
//! equal to Istio 1.19's (field names, types, formats, enums, nullability and the "at most one of"
//! rules), so the API server prunes misspelt fields and rejects wrongly typed ones before istiod's
//! webhook sees them. One difference: base64 bytes (a VirtualService's `directResponse.body.bytes`)
//! have `format: byte`, Kubernetes' name for it, where Istio 1.19 says `binary`, which current API
//! servers (1.36 here) do not recognize, do not check, and warn of ("unrecognized format"). The
//! open spots are the ones Istio leaves open (EnvoyFilter's `configPatches[].patch.value`, an Envoy
//! config fragment). The other kinds accept any `spec`
//! (istiod's webhook checks them), as does IstioOperator as a whole, as in Istio's chart. `status`
//! is open for every kind: istiod writes it.
//!
//! The schemas are built by the small helpers at the end of this file ([`obj`], [`string`],
//! [`array`], ...), with the parts Istio's APIs share (string matches, destinations, traffic
//! policies) as functions of their own.

use serde_json::{Map, Value, json};

use crate::config::IstioRelease;
use crate::manifest::Manifest;

/// The API version `vz` writes PeerAuthentication and AuthorizationPolicy with (served by every
/// release).
pub const SECURITY_API: &str = "security.istio.io/v1beta1";
/// The API version `vz` writes Gateway, VirtualService and DestinationRule with (served by every
/// release).
pub const NETWORKING_API: &str = "networking.istio.io/v1beta1";
/// The API version of EnvoyFilter: Istio 1.19 serves it only as `v1alpha3` (not [`NETWORKING_API`]).
pub const ENVOY_FILTER_API: &str = "networking.istio.io/v1alpha3";

/// One Istio custom resource kind, as Istio's charts define it.
struct IstioCrd {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    /// Served versions, in the order Istio lists them.
    versions: &'static [&'static str],
    /// The version objects are stored in.
    storage: &'static str,
    labels: &'static [(&'static str, &'static str)],
    /// `additionalPrinterColumns`: name, type, JSON path.
    columns: &'static [(&'static str, &'static str, &'static str)],
    /// The whole `openAPIV3Schema` (the same for every served version).
    schema: fn() -> Value,
}

const PILOT_LABELS: &[(&str, &str)] = &[
    ("app", "istio-pilot"),
    ("chart", "istio"),
    ("heritage", "Tiller"),
    ("release", "istio"),
];
const SECURITY_LABELS: &[(&str, &str)] = &[
    ("app", "istio-pilot"),
    ("chart", "istio"),
    ("heritage", "Tiller"),
    ("istio", "security"),
    ("release", "istio"),
];
const TELEMETRY_LABELS: &[(&str, &str)] = &[
    ("app", "istio-pilot"),
    ("chart", "istio"),
    ("heritage", "Tiller"),
    ("istio", "telemetry"),
    ("release", "istio"),
];
const OPERATOR_LABELS: &[(&str, &str)] = &[("release", "istio")];

const EXTENSIONS: &str = "extensions.istio.io";
const NETWORKING: &str = "networking.istio.io";
const SECURITY: &str = "security.istio.io";
const TELEMETRY: &str = "telemetry.istio.io";
const INSTALL: &str = "install.istio.io";

const AGE: (&str, &str, &str) = ("Age", "date", ".metadata.creationTimestamp");

/// Istio 1.19's kinds (all namespaced, none deprecated), in the order of Istio's charts.
const CRDS: &[IstioCrd] = &[
    IstioCrd {
        group: EXTENSIONS,
        kind: "WasmPlugin",
        plural: "wasmplugins",
        singular: "wasmplugin",
        short_names: &[],
        categories: &["istio-io", "extensions-istio-io"],
        versions: &["v1alpha1"],
        storage: "v1alpha1",
        labels: PILOT_LABELS,
        columns: &[AGE],
        schema: open_resource,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "DestinationRule",
        plural: "destinationrules",
        singular: "destinationrule",
        short_names: &["dr"],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[("Host", "string", ".spec.host"), AGE],
        schema: destination_rule,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "EnvoyFilter",
        plural: "envoyfilters",
        singular: "envoyfilter",
        short_names: &[],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[],
        schema: envoy_filter,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "Gateway",
        plural: "gateways",
        singular: "gateway",
        short_names: &["gw"],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[],
        schema: gateway,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "ProxyConfig",
        plural: "proxyconfigs",
        singular: "proxyconfig",
        short_names: &[],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1beta1"],
        storage: "v1beta1",
        labels: PILOT_LABELS,
        columns: &[],
        schema: open_resource,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "ServiceEntry",
        plural: "serviceentries",
        singular: "serviceentry",
        short_names: &["se"],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[
            ("Hosts", "string", ".spec.hosts"),
            ("Location", "string", ".spec.location"),
            ("Resolution", "string", ".spec.resolution"),
            AGE,
        ],
        schema: open_resource,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "Sidecar",
        plural: "sidecars",
        singular: "sidecar",
        short_names: &[],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[],
        schema: open_resource,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "VirtualService",
        plural: "virtualservices",
        singular: "virtualservice",
        short_names: &["vs"],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[
            ("Gateways", "string", ".spec.gateways"),
            ("Hosts", "string", ".spec.hosts"),
            AGE,
        ],
        schema: virtual_service,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "WorkloadEntry",
        plural: "workloadentries",
        singular: "workloadentry",
        short_names: &["we"],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[AGE, ("Address", "string", ".spec.address")],
        schema: open_resource,
    },
    IstioCrd {
        group: NETWORKING,
        kind: "WorkloadGroup",
        plural: "workloadgroups",
        singular: "workloadgroup",
        short_names: &["wg"],
        categories: &["istio-io", "networking-istio-io"],
        versions: &["v1alpha3", "v1beta1"],
        storage: "v1alpha3",
        labels: PILOT_LABELS,
        columns: &[AGE],
        schema: open_resource,
    },
    IstioCrd {
        group: SECURITY,
        kind: "AuthorizationPolicy",
        plural: "authorizationpolicies",
        singular: "authorizationpolicy",
        short_names: &[],
        categories: &["istio-io", "security-istio-io"],
        versions: &["v1", "v1beta1"],
        storage: "v1beta1",
        labels: SECURITY_LABELS,
        columns: &[],
        schema: authorization_policy,
    },
    IstioCrd {
        group: SECURITY,
        kind: "PeerAuthentication",
        plural: "peerauthentications",
        singular: "peerauthentication",
        short_names: &["pa"],
        categories: &["istio-io", "security-istio-io"],
        versions: &["v1beta1"],
        storage: "v1beta1",
        labels: SECURITY_LABELS,
        columns: &[("Mode", "string", ".spec.mtls.mode"), AGE],
        schema: peer_authentication,
    },
    IstioCrd {
        group: SECURITY,
        kind: "RequestAuthentication",
        plural: "requestauthentications",
        singular: "requestauthentication",
        short_names: &["ra"],
        categories: &["istio-io", "security-istio-io"],
        versions: &["v1", "v1beta1"],
        storage: "v1beta1",
        labels: SECURITY_LABELS,
        columns: &[],
        schema: open_resource,
    },
    IstioCrd {
        group: TELEMETRY,
        kind: "Telemetry",
        plural: "telemetries",
        singular: "telemetry",
        short_names: &["telemetry"],
        categories: &["istio-io", "telemetry-istio-io"],
        versions: &["v1alpha1"],
        storage: "v1alpha1",
        labels: TELEMETRY_LABELS,
        columns: &[AGE],
        schema: open_resource,
    },
    IstioCrd {
        group: INSTALL,
        kind: "IstioOperator",
        plural: "istiooperators",
        singular: "istiooperator",
        short_names: &["iop", "io"],
        categories: &[],
        versions: &["v1alpha1"],
        storage: "v1alpha1",
        labels: OPERATOR_LABELS,
        columns: &[
            ("Revision", "string", ".spec.revision"),
            ("Status", "string", ".status.status"),
            AGE,
        ],
        schema: preserve,
    },
];

/// New in Istio 1.30.
const TRAFFIC_EXTENSION: IstioCrd = IstioCrd {
    group: EXTENSIONS,
    kind: "TrafficExtension",
    plural: "trafficextensions",
    singular: "trafficextension",
    short_names: &[],
    categories: &["istio-io", "extensions-istio-io"],
    versions: &["v1alpha1"],
    storage: "v1alpha1",
    labels: PILOT_LABELS,
    columns: &[AGE],
    schema: open_resource,
};

/// The release's 15 CustomResourceDefinitions, always in the same order (its chart's).
pub fn definitions(release: &IstioRelease) -> Vec<Manifest> {
    if release.is_verrazzanos() {
        return CRDS.iter().map(|c| definition(c, release)).collect();
    }
    std::iter::once(&TRAFFIC_EXTENSION)
        .chain(CRDS.iter().filter(|c| c.group != INSTALL))
        .map(|c| definition(c, release))
        .collect()
}

/// What of a CRD differs between releases: served versions, storage version, short names and
/// printer columns.
struct Shape {
    versions: &'static [&'static str],
    storage: &'static str,
    short_names: &'static [&'static str],
    columns: &'static [(&'static str, &'static str, &'static str)],
}

/// `c` in `release`: as the table has it for 1.19, and as 1.30 changed it.
fn shape(c: &IstioCrd, release: &IstioRelease) -> Shape {
    let same = Shape {
        versions: c.versions,
        storage: c.storage,
        short_names: c.short_names,
        columns: c.columns,
    };
    if release.is_verrazzanos() {
        return same;
    }
    match (c.group, c.kind) {
        (NETWORKING, _) if c.versions == ["v1alpha3", "v1beta1"] => Shape {
            versions: &["v1", "v1alpha3", "v1beta1"],
            storage: "v1",
            ..same
        },
        (SECURITY, "AuthorizationPolicy") => Shape {
            versions: &["v1", "v1beta1"],
            storage: "v1",
            short_names: &["ap"],
            columns: &[("Action", "string", ".spec.action"), AGE],
        },
        (SECURITY, _) => Shape {
            versions: &["v1", "v1beta1"],
            storage: "v1",
            ..same
        },
        (TELEMETRY, _) => Shape {
            versions: &["v1", "v1alpha1"],
            ..same
        },
        _ => same,
    }
}

/// The labels of a CRD: 1.19's chart's static ones; 1.30's chart replaces them with its
/// `istio.labels` (Helm's own, `managed-by` and `instance`, left out: `vz` labels what it
/// manages itself).
fn labels_of(c: &IstioCrd, release: &IstioRelease) -> Map<String, Value> {
    if release.is_verrazzanos() {
        return c
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
    }
    [
        ("app.kubernetes.io/part-of", "istio".to_string()),
        ("app.kubernetes.io/version", release.version.to_string()),
        ("helm.sh/chart", format!("base-{}", release.version)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), json!(v)))
    .collect()
}

fn definition(c: &IstioCrd, release: &IstioRelease) -> Manifest {
    let shape = shape(c, release);
    let schema = (c.schema)();
    let columns: Vec<Value> = shape
        .columns
        .iter()
        .map(|(name, ty, path)| json!({"name": name, "type": ty, "jsonPath": path}))
        .collect();
    let versions: Vec<Value> = shape
        .versions
        .iter()
        .map(|v| {
            let mut version = json!({
                "name": v,
                "served": true,
                "storage": *v == shape.storage,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
            });
            if !columns.is_empty() {
                version["additionalPrinterColumns"] = json!(columns);
            }
            version
        })
        .collect();
    let mut names = json!({
        "kind": c.kind,
        "listKind": format!("{}List", c.kind),
        "plural": c.plural,
        "singular": c.singular,
    });
    if !shape.short_names.is_empty() {
        names["shortNames"] = json!(shape.short_names);
    }
    if !c.categories.is_empty() {
        names["categories"] = json!(c.categories);
    }
    let labels = labels_of(c, release);
    Manifest::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{}.{}", c.plural, c.group),
            "labels": labels,
        },
        "spec": {
            "group": c.group,
            "names": names,
            "scope": "Namespaced",
            "versions": versions,
        },
    }))
}

/// A resource with the given `spec` schema and an open `status`.
fn resource(spec: Value) -> Value {
    obj([("spec", spec), ("status", preserve())])
}

/// A resource whose `spec` and `status` take anything.
fn open_resource() -> Value {
    resource(preserve())
}

// --- security.istio.io ---

fn peer_authentication() -> Value {
    let mtls = || {
        obj([(
            "mode",
            enum_of(&["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]),
        )])
    };
    resource(obj([
        ("mtls", mtls()),
        ("portLevelMtls", map_of(mtls())),
        ("selector", workload_selector()),
    ]))
}

fn authorization_policy() -> Value {
    let source = obj([
        ("ipBlocks", strings()),
        ("namespaces", strings()),
        ("notIpBlocks", strings()),
        ("notNamespaces", strings()),
        ("notPrincipals", strings()),
        ("notRemoteIpBlocks", strings()),
        ("notRequestPrincipals", strings()),
        ("principals", strings()),
        ("remoteIpBlocks", strings()),
        ("requestPrincipals", strings()),
    ]);
    let operation = obj([
        ("hosts", strings()),
        ("methods", strings()),
        ("notHosts", strings()),
        ("notMethods", strings()),
        ("notPaths", strings()),
        ("notPorts", strings()),
        ("paths", strings()),
        ("ports", strings()),
    ]);
    let condition = obj([
        ("key", string()),
        ("notValues", strings()),
        ("values", strings()),
    ]);
    let rule = obj([
        ("from", array(obj([("source", source)]))),
        ("to", array(obj([("operation", operation)]))),
        ("when", array(condition)),
    ]);
    resource(obj([
        ("action", enum_of(&["ALLOW", "DENY", "AUDIT", "CUSTOM"])),
        ("provider", obj([("name", string())])),
        ("rules", array(rule)),
        ("selector", workload_selector()),
    ]))
}

/// `{matchLabels: {..}}`: the workload selector of the security kinds and DestinationRule.
fn workload_selector() -> Value {
    obj([("matchLabels", map_of(string()))])
}

// --- networking.istio.io: Gateway ---

fn gateway() -> Value {
    let tls_version = || enum_of(&["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]);
    let tls = obj([
        ("caCertificates", string()),
        ("cipherSuites", strings()),
        ("credentialName", string()),
        ("httpsRedirect", boolean()),
        ("maxProtocolVersion", tls_version()),
        ("minProtocolVersion", tls_version()),
        (
            "mode",
            enum_of(&[
                "PASSTHROUGH",
                "SIMPLE",
                "MUTUAL",
                "AUTO_PASSTHROUGH",
                "ISTIO_MUTUAL",
                "OPTIONAL_MUTUAL",
            ]),
        ),
        ("privateKey", string()),
        ("serverCertificate", string()),
        ("subjectAltNames", strings()),
        ("verifyCertificateHash", strings()),
        ("verifyCertificateSpki", strings()),
    ]);
    let server = obj([
        ("bind", string()),
        ("defaultEndpoint", string()),
        ("hosts", strings()),
        ("name", string()),
        (
            "port",
            obj([
                ("name", string()),
                ("number", int()),
                ("protocol", string()),
                ("targetPort", int()),
            ]),
        ),
        ("tls", tls),
    ]);
    resource(obj([
        ("selector", map_of(string())),
        ("servers", array(server)),
    ]))
}

// --- networking.istio.io: VirtualService ---

fn virtual_service() -> Value {
    let tcp_match = obj([
        ("destinationSubnets", strings()),
        ("gateways", strings()),
        ("port", int()),
        ("sourceLabels", map_of(string())),
        ("sourceNamespace", string()),
        ("sourceSubnet", string()),
    ]);
    let tls_match = obj([
        ("destinationSubnets", strings()),
        ("gateways", strings()),
        ("port", int()),
        ("sniHosts", strings()),
        ("sourceLabels", map_of(string())),
        ("sourceNamespace", string()),
    ]);
    resource(obj([
        ("exportTo", strings()),
        ("gateways", strings()),
        ("hosts", strings()),
        ("http", array(http_route())),
        (
            "tcp",
            array(obj([
                ("match", array(tcp_match)),
                ("route", array(route_destination())),
            ])),
        ),
        (
            "tls",
            array(obj([
                ("match", array(tls_match)),
                ("route", array(route_destination())),
            ])),
        ),
    ]))
}

/// One entry of `VirtualService.spec.http`.
fn http_route() -> Value {
    let cors = obj([
        ("allowCredentials", nullable(boolean())),
        ("allowHeaders", strings()),
        ("allowMethods", strings()),
        ("allowOrigin", strings()),
        ("allowOrigins", array(string_match())),
        ("exposeHeaders", strings()),
        ("maxAge", string()),
    ]);
    let direct_response = obj([
        (
            "body",
            at_most_one_of(
                obj([("bytes", binary()), ("string", string())]),
                &["string", "bytes"],
            ),
        ),
        ("status", int()),
    ]);
    let abort = at_most_one_of(
        obj([
            ("grpcStatus", string()),
            ("http2Error", string()),
            ("httpStatus", int32()),
            ("percentage", percent()),
        ]),
        &["httpStatus", "grpcStatus", "http2Error"],
    );
    let delay = at_most_one_of(
        obj([
            ("exponentialDelay", string()),
            ("fixedDelay", string()),
            ("percent", int32()),
            ("percentage", percent()),
        ]),
        &["fixedDelay", "exponentialDelay"],
    );
    let request_match = obj([
        ("authority", string_match()),
        ("gateways", strings()),
        ("headers", map_of(string_match())),
        ("ignoreUriCase", boolean()),
        ("method", string_match()),
        ("name", string()),
        ("port", int()),
        ("queryParams", map_of(string_match())),
        ("scheme", string_match()),
        ("sourceLabels", map_of(string())),
        ("sourceNamespace", string()),
        ("statPrefix", string()),
        ("uri", string_match()),
        ("withoutHeaders", map_of(string_match())),
    ]);
    let redirect = at_most_one_of(
        obj([
            ("authority", string()),
            (
                "derivePort",
                enum_of(&["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"]),
            ),
            ("port", int()),
            ("redirectCode", int()),
            ("scheme", string()),
            ("uri", string()),
        ]),
        &["port", "derivePort"],
    );
    let retries = obj([
        ("attempts", int32()),
        ("perTryTimeout", string()),
        ("retryOn", string()),
        ("retryRemoteLocalities", nullable(boolean())),
    ]);
    let rewrite = obj([
        ("authority", string()),
        ("uri", string()),
        (
            "uriRegexRewrite",
            obj([("match", string()), ("rewrite", string())]),
        ),
    ]);
    obj([
        ("corsPolicy", cors),
        (
            "delegate",
            obj([("name", string()), ("namespace", string())]),
        ),
        ("directResponse", direct_response),
        ("fault", obj([("abort", abort), ("delay", delay)])),
        ("headers", headers()),
        ("match", array(request_match)),
        ("mirror", destination()),
        ("mirrorPercent", nullable(int())),
        ("mirrorPercentage", percent()),
        ("mirror_percent", nullable(int())),
        (
            "mirrors",
            array(obj([
                ("destination", destination()),
                ("percentage", percent()),
            ])),
        ),
        ("name", string()),
        ("redirect", redirect),
        ("retries", retries),
        ("rewrite", rewrite),
        (
            "route",
            array(obj([
                ("destination", destination()),
                ("headers", headers()),
                ("weight", int32()),
            ])),
        ),
        ("timeout", string()),
    ])
}

/// `StringMatch`: at most one of `exact`, `prefix`, `regex`.
fn string_match() -> Value {
    at_most_one_of(
        obj([
            ("exact", string()),
            ("prefix", string()),
            ("regex", string()),
        ]),
        &["exact", "prefix", "regex"],
    )
}

/// `Destination`: a service host, with optional port and subset.
fn destination() -> Value {
    obj([
        ("host", string()),
        ("port", port_selector()),
        ("subset", string()),
    ])
}

/// `PortSelector`: `{number}`.
fn port_selector() -> Value {
    obj([("number", int())])
}

/// `RouteDestination` of TCP and TLS routes: a destination with a weight.
fn route_destination() -> Value {
    obj([("destination", destination()), ("weight", int32())])
}

/// `Headers`: operations on request and response headers.
fn headers() -> Value {
    let operations = || {
        obj([
            ("add", map_of(string())),
            ("remove", strings()),
            ("set", map_of(string())),
        ])
    };
    obj([("request", operations()), ("response", operations())])
}

/// `Percent`: `{value}`, a double.
fn percent() -> Value {
    obj([("value", double())])
}

// --- networking.istio.io: DestinationRule ---

fn destination_rule() -> Value {
    let subset = obj([
        ("labels", map_of(string())),
        ("name", string()),
        ("trafficPolicy", traffic_policy()),
    ]);
    resource(obj([
        ("exportTo", strings()),
        ("host", string()),
        ("subsets", array(subset)),
        ("trafficPolicy", traffic_policy()),
        ("workloadSelector", workload_selector()),
    ]))
}

/// `TrafficPolicy`, of the whole rule or of one subset.
fn traffic_policy() -> Value {
    let port_level = obj([
        ("connectionPool", connection_pool()),
        ("loadBalancer", load_balancer()),
        ("outlierDetection", outlier_detection()),
        ("port", port_selector()),
        ("tls", client_tls()),
    ]);
    let tunnel = obj([
        ("protocol", string()),
        ("targetHost", string()),
        ("targetPort", int()),
    ]);
    obj([
        ("connectionPool", connection_pool()),
        ("loadBalancer", load_balancer()),
        ("outlierDetection", outlier_detection()),
        ("portLevelSettings", array(port_level)),
        ("tls", client_tls()),
        ("tunnel", tunnel),
    ])
}

fn connection_pool() -> Value {
    let http = obj([
        (
            "h2UpgradePolicy",
            enum_of(&["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]),
        ),
        ("http1MaxPendingRequests", int32()),
        ("http2MaxRequests", int32()),
        ("idleTimeout", string()),
        ("maxRequestsPerConnection", int32()),
        ("maxRetries", int32()),
        ("useClientProtocol", boolean()),
    ]);
    let keepalive = obj([
        ("interval", string()),
        ("probes", int()),
        ("time", string()),
    ]);
    let tcp = obj([
        ("connectTimeout", string()),
        ("maxConnectionDuration", string()),
        ("maxConnections", int32()),
        ("tcpKeepalive", keepalive),
    ]);
    obj([("http", http), ("tcp", tcp)])
}

/// `LoadBalancerSettings`. Istio's generated rule nests the `consistentHash` checks inside one
/// branch of its `oneOf`; here the proto `oneof`s are written directly: at most one of `simple` and
/// `consistentHash`, and in `consistentHash` at most one hash key and at most one of `ringHash` and
/// `maglev`.
fn load_balancer() -> Value {
    let mut consistent_hash = obj([
        (
            "httpCookie",
            obj([("name", string()), ("path", string()), ("ttl", string())]),
        ),
        ("httpHeaderName", string()),
        ("httpQueryParameterName", string()),
        ("maglev", obj([("tableSize", int())])),
        ("minimumRingSize", int()),
        ("ringHash", obj([("minimumRingSize", int())])),
        ("useSourceIp", boolean()),
    ]);
    consistent_hash["allOf"] = json!([
        one_of_rule(&[
            "httpHeaderName",
            "httpCookie",
            "useSourceIp",
            "httpQueryParameterName"
        ]),
        one_of_rule(&["ringHash", "maglev"]),
    ]);
    let locality = obj([
        (
            "distribute",
            array(obj([("from", string()), ("to", map_of(int()))])),
        ),
        ("enabled", nullable(boolean())),
        (
            "failover",
            array(obj([("from", string()), ("to", string())])),
        ),
        ("failoverPriority", strings()),
    ]);
    at_most_one_of(
        obj([
            ("consistentHash", consistent_hash),
            ("localityLbSetting", locality),
            (
                "simple",
                enum_of(&[
                    "UNSPECIFIED",
                    "LEAST_CONN",
                    "RANDOM",
                    "PASSTHROUGH",
                    "ROUND_ROBIN",
                    "LEAST_REQUEST",
                ]),
            ),
            ("warmupDurationSecs", string()),
        ]),
        &["simple", "consistentHash"],
    )
}

fn outlier_detection() -> Value {
    obj([
        ("baseEjectionTime", string()),
        ("consecutive5xxErrors", nullable(int())),
        ("consecutiveErrors", int32()),
        ("consecutiveGatewayErrors", nullable(int())),
        ("consecutiveLocalOriginFailures", nullable(int())),
        ("interval", string()),
        ("maxEjectionPercent", int32()),
        ("minHealthPercent", int32()),
        ("splitExternalLocalOriginErrors", boolean()),
    ])
}

/// `ClientTLSSettings`: TLS from the proxy to the upstream.
fn client_tls() -> Value {
    obj([
        ("caCertificates", string()),
        ("clientCertificate", string()),
        ("credentialName", string()),
        ("insecureSkipVerify", nullable(boolean())),
        (
            "mode",
            enum_of(&["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]),
        ),
        ("privateKey", string()),
        ("sni", string()),
        ("subjectAltNames", strings()),
    ])
}

// --- networking.istio.io: EnvoyFilter ---

fn envoy_filter() -> Value {
    let cluster = obj([
        ("name", string()),
        ("portNumber", int()),
        ("service", string()),
        ("subset", string()),
    ]);
    let filter = obj([("name", string()), ("subFilter", obj([("name", string())]))]);
    let filter_chain = obj([
        ("applicationProtocols", string()),
        ("destinationPort", int()),
        ("filter", filter),
        ("name", string()),
        ("sni", string()),
        ("transportProtocol", string()),
    ]);
    let listener = obj([
        ("filterChain", filter_chain),
        ("listenerFilter", string()),
        ("name", string()),
        ("portName", string()),
        ("portNumber", int()),
    ]);
    let route = obj([
        (
            "action",
            enum_of(&["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"]),
        ),
        ("name", string()),
    ]);
    let route_configuration = obj([
        ("gateway", string()),
        ("name", string()),
        ("portName", string()),
        ("portNumber", int()),
        ("vhost", obj([("name", string()), ("route", route)])),
    ]);
    let proxy = obj([("metadata", map_of(string())), ("proxyVersion", string())]);
    let match_ = at_most_one_of(
        obj([
            ("cluster", cluster),
            (
                "context",
                enum_of(&["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"]),
            ),
            ("listener", listener),
            ("proxy", proxy),
            ("routeConfiguration", route_configuration),
        ]),
        &["listener", "routeConfiguration", "cluster"],
    );
    let patch = obj([
        (
            "filterClass",
            enum_of(&["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"]),
        ),
        (
            "operation",
            enum_of(&[
                "INVALID",
                "MERGE",
                "ADD",
                "REMOVE",
                "INSERT_BEFORE",
                "INSERT_AFTER",
                "INSERT_FIRST",
                "REPLACE",
            ]),
        ),
        ("value", preserve()),
    ]);
    let apply_to = enum_of(&[
        "INVALID",
        "LISTENER",
        "FILTER_CHAIN",
        "NETWORK_FILTER",
        "HTTP_FILTER",
        "ROUTE_CONFIGURATION",
        "VIRTUAL_HOST",
        "HTTP_ROUTE",
        "CLUSTER",
        "EXTENSION_CONFIG",
        "BOOTSTRAP",
        "LISTENER_FILTER",
    ]);
    resource(obj([
        (
            "configPatches",
            array(obj([
                ("applyTo", apply_to),
                ("match", match_),
                ("patch", patch),
            ])),
        ),
        ("priority", int32()),
        ("workloadSelector", obj([("labels", map_of(string()))])),
    ]))
}

// --- schema builders ---

/// An object with these properties (and no others: unknown fields are pruned).
fn obj<const N: usize>(props: [(&str, Value); N]) -> Value {
    let props: Map<String, Value> = props
        .into_iter()
        .map(|(name, schema)| (name.to_string(), schema))
        .collect();
    json!({"type": "object", "properties": props})
}

/// An object that keeps whatever it is given.
fn preserve() -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// An object with any keys, each value of schema `value`.
fn map_of(value: Value) -> Value {
    json!({"type": "object", "additionalProperties": value})
}

/// A list of `items`.
fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// A list of strings.
fn strings() -> Value {
    array(string())
}

fn string() -> Value {
    json!({"type": "string"})
}

/// A string holding base64 bytes (`byte`: the format Kubernetes recognizes and checks).
fn binary() -> Value {
    json!({"type": "string", "format": "byte"})
}

/// A string that must be one of `values`.
fn enum_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

fn int() -> Value {
    json!({"type": "integer"})
}

fn int32() -> Value {
    json!({"type": "integer", "format": "int32"})
}

fn double() -> Value {
    json!({"type": "number", "format": "double"})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

/// `schema` that also accepts `null`.
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// `schema` (an object) with at most one of `fields` set: a proto `oneof`.
fn at_most_one_of(mut schema: Value, fields: &[&str]) -> Value {
    if let Some(rule) = one_of_rule(fields).get("oneOf") {
        schema["oneOf"] = rule.clone();
    }
    schema
}

/// `{oneOf: [none of fields, only fields[0], only fields[1], ...]}`: holds when at most one of
/// `fields` is present. A value validation only (no types), as structural schemas require.
fn one_of_rule(fields: &[&str]) -> Value {
    let required: Vec<Value> = fields.iter().map(|f| json!({"required": [f]})).collect();
    let mut branches = vec![json!({"not": {"anyOf": required}})];
    branches.extend(required);
    json!({"oneOf": branches})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ISTIO_1_19, ISTIO_1_30};

    fn crd<'a>(all: &'a [Manifest], name: &str) -> &'a Manifest {
        all.iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no CRD {name}"))
    }

    /// The `spec` schema of every served version of `name`, checking they are all the same.
    fn spec_schema(all: &[Manifest], name: &str) -> Value {
        let versions = crd(all, name).body["spec"]["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!versions.is_empty(), "{name}");
        let spec = versions[0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
        for v in &versions {
            assert_eq!(
                v["schema"]["openAPIV3Schema"]["properties"]["spec"], spec,
                "{name}"
            );
        }
        spec
    }

    /// The schema at a path of property names; `[]` steps into array items, `{}` into map values.
    fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
        path.split('.').fold(schema, |s, part| match part {
            "[]" => &s["items"],
            "{}" => &s["additionalProperties"],
            name => &s["properties"][name],
        })
    }

    const WRITTEN: &[&str] = &[
        "peerauthentications.security.istio.io",
        "gateways.networking.istio.io",
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
        "authorizationpolicies.security.istio.io",
        "envoyfilters.networking.istio.io",
    ];

    #[test]
    fn fifteen_crds_named_plural_dot_group_with_one_storage_version() {
        let all = definitions(&ISTIO_1_19);
        assert_eq!(all.len(), 15);
        assert_eq!(all, definitions(&ISTIO_1_19), "stable");
        let mut names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 15);
        for m in &all {
            assert_eq!(m.api_version, "apiextensions.k8s.io/v1");
            assert_eq!(m.kind, "CustomResourceDefinition");
            let spec = &m.body["spec"];
            let plural = spec["names"]["plural"].as_str().unwrap_or_default();
            let group = spec["group"].as_str().unwrap_or_default();
            assert_eq!(m.name, format!("{plural}.{group}"));
            assert_eq!(spec["scope"], "Namespaced");
            assert_eq!(
                spec["names"]["listKind"],
                format!("{}List", spec["names"]["kind"].as_str().unwrap_or_default())
            );
            let versions = spec["versions"].as_array().cloned().unwrap_or_default();
            assert!(!versions.is_empty(), "{}", m.name);
            let stored = versions.iter().filter(|v| v["storage"] == true).count();
            assert_eq!(stored, 1, "{}", m.name);
            for v in &versions {
                assert_eq!(v["served"], true);
                assert_eq!(v["subresources"], json!({"status": {}}));
                assert_eq!(v["schema"]["openAPIV3Schema"]["type"], "object");
            }
            assert_eq!(m.body["metadata"]["labels"]["release"], "istio");
        }
        let iop = crd(&all, "istiooperators.install.istio.io");
        assert_eq!(
            iop.body["spec"]["names"]["shortNames"],
            json!(["iop", "io"])
        );
        assert_eq!(iop.body["spec"]["versions"][0]["name"], "v1alpha1");
    }

    #[test]
    fn api_versions_vz_writes_are_served() {
        let all = definitions(&ISTIO_1_19);
        let served = |name: &str, api: &str| {
            let (group, version) = api.split_once('/').unwrap_or_default();
            let c = crd(&all, name);
            assert_eq!(c.body["spec"]["group"], group);
            assert!(
                c.body["spec"]["versions"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v["name"] == version)),
                "{name} serves {api}"
            );
        };
        for name in WRITTEN {
            if name.ends_with(".security.istio.io") {
                served(name, SECURITY_API);
            } else if name.starts_with("envoyfilters.") {
                served(name, ENVOY_FILTER_API);
            } else {
                served(name, NETWORKING_API);
            }
        }
        let ap = crd(&all, "authorizationpolicies.security.istio.io");
        let names: Vec<&Value> = ap.body["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| &v["name"])
            .collect();
        assert_eq!(names, [&json!("v1"), &json!("v1beta1")]);
        assert_eq!(ap.body["spec"]["versions"][1]["storage"], true);
    }

    /// Kubernetes' structural rules, as far as a schema alone can show them: every node with
    /// `properties`, `items` or `additionalProperties` has a `type`; value validations
    /// (`oneOf`/`anyOf`/`allOf`/`not`) carry no types or Kubernetes extensions and only name
    /// properties the node has.
    fn assert_structural(schema: &Value, path: &str) {
        let Some(node) = schema.as_object() else {
            panic!("{path}: not an object");
        };
        let has_type = node.get("type").is_some_and(Value::is_string);
        for key in ["properties", "items", "additionalProperties"] {
            if node.contains_key(key) {
                assert!(has_type, "{path}: {key} without type");
            }
        }
        // Kubernetes asks for a type on every node but the top of an open one; all of these have one.
        assert!(has_type, "{path}: no type");
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, s) in props {
                assert_structural(s, &format!("{path}.{name}"));
            }
        }
        if let Some(items) = node.get("items") {
            assert_structural(items, &format!("{path}[]"));
        }
        if let Some(values) = node.get("additionalProperties") {
            assert!(!node.contains_key("properties"), "{path}");
            assert_structural(values, &format!("{path}{{}}"));
        }
        for key in ["oneOf", "anyOf", "allOf", "not"] {
            if let Some(v) = node.get(key) {
                assert_value_validation(v, node, &format!("{path}/{key}"));
            }
        }
    }

    fn assert_value_validation(v: &Value, node: &Map<String, Value>, path: &str) {
        match v {
            Value::Array(branches) => branches
                .iter()
                .for_each(|b| assert_value_validation(b, node, path)),
            Value::Object(o) => {
                for (k, sub) in o {
                    assert!(
                        !matches!(
                            k.as_str(),
                            "type" | "nullable" | "default" | "additionalProperties"
                        ) && !k.starts_with("x-kubernetes-"),
                        "{path}: {k}"
                    );
                    match k.as_str() {
                        "required" => {
                            for f in sub.as_array().into_iter().flatten() {
                                let f = f.as_str().unwrap_or_default();
                                assert!(node["properties"].get(f).is_some(), "{path}: {f}");
                            }
                        }
                        "oneOf" | "anyOf" | "allOf" | "not" => {
                            assert_value_validation(sub, node, path)
                        }
                        other => panic!("{path}: unexpected {other}"),
                    }
                }
            }
            _ => panic!("{path}: not a schema"),
        }
    }

    #[test]
    fn every_schema_is_structural() {
        for m in definitions(&ISTIO_1_19) {
            for v in m.body["spec"]["versions"].as_array().into_iter().flatten() {
                let root = &v["schema"]["openAPIV3Schema"];
                assert_eq!(root["type"], "object", "{}", m.name);
                assert_structural(root, "");
                if m.name != "istiooperators.install.istio.io" {
                    assert_eq!(at(root, "status"), &preserve(), "{}", m.name);
                }
            }
        }
    }

    #[test]
    fn kinds_vz_writes_have_closed_specs_and_the_rest_open_ones() {
        let all = definitions(&ISTIO_1_19);
        let mut closed = 0;
        for m in &all {
            let spec = spec_schema(&all, &m.name);
            if WRITTEN.contains(&m.name.as_str()) {
                closed += 1;
                assert_eq!(spec["type"], "object");
                assert!(
                    spec.get("x-kubernetes-preserve-unknown-fields").is_none(),
                    "{}",
                    m.name
                );
                assert!(
                    spec["properties"]
                        .as_object()
                        .is_some_and(|p| !p.is_empty())
                );
            } else if m.name != "istiooperators.install.istio.io" {
                assert_eq!(spec, preserve(), "{}", m.name);
            }
        }
        assert_eq!(closed, 6);
        // Only EnvoyFilter's patch value is left open, as in Istio.
        let mut open = vec![];
        for name in WRITTEN {
            collect_open(&spec_schema(&all, name), name, &mut open);
        }
        assert_eq!(
            open,
            ["envoyfilters.networking.istio.io.configPatches[].patch.value"]
        );
    }

    fn collect_open(s: &Value, path: &str, out: &mut Vec<String>) {
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
            out.push(path.to_string());
        }
        for (name, p) in s["properties"].as_object().into_iter().flatten() {
            collect_open(p, &format!("{path}.{name}"), out);
        }
        if let Some(items) = s.get("items") {
            collect_open(items, &format!("{path}[]"), out);
        }
        if let Some(values) = s.get("additionalProperties") {
            collect_open(values, &format!("{path}{{}}"), out);
        }
    }

    #[test]
    fn peer_authentication_mode_is_an_enum() {
        let spec = spec_schema(
            &definitions(&ISTIO_1_19),
            "peerauthentications.security.istio.io",
        );
        let mode = at(&spec, "mtls.mode");
        assert_eq!(mode["type"], "string");
        assert!(
            mode["enum"]
                .as_array()
                .is_some_and(|e| e.contains(&json!("STRICT")) && e.contains(&json!("PERMISSIVE")))
        );
        assert_eq!(at(&spec, "portLevelMtls.{}.mode"), mode);
        assert_eq!(at(&spec, "selector.matchLabels.{}")["type"], "string");
    }

    #[test]
    fn gateway_fields() {
        let spec = spec_schema(&definitions(&ISTIO_1_19), "gateways.networking.istio.io");
        assert_eq!(at(&spec, "selector"), &map_of(string()));
        assert_eq!(at(&spec, "servers.[].tls.credentialName"), &string());
        assert_eq!(at(&spec, "servers.[].hosts.[]"), &string());
        assert_eq!(at(&spec, "servers.[].port.number"), &int());
        assert!(
            at(&spec, "servers.[].tls.mode")["enum"]
                .as_array()
                .is_some_and(|e| e.contains(&json!("SIMPLE")))
        );
    }

    #[test]
    fn virtual_service_fields() {
        let spec = spec_schema(
            &definitions(&ISTIO_1_19),
            "virtualservices.networking.istio.io",
        );
        let uri = at(&spec, "http.[].match.[].uri");
        for m in ["exact", "prefix", "regex"] {
            assert_eq!(uri["properties"][m], string(), "{m}");
        }
        assert_eq!(uri["oneOf"].as_array().map(Vec::len), Some(4));
        assert_eq!(at(&spec, "http.[].route.[].destination.host"), &string());
        assert_eq!(
            at(&spec, "http.[].route.[].destination.port.number"),
            &int()
        );
        assert_eq!(at(&spec, "http.[].route.[].weight"), &int32());
        assert_eq!(at(&spec, "hosts.[]"), &string());
        assert_eq!(at(&spec, "gateways.[]"), &string());
        assert_eq!(at(&spec, "http.[].match.[].headers.{}"), uri);
        assert_eq!(
            at(&spec, "tcp.[].route.[].destination"),
            at(&spec, "http.[].route.[].destination")
        );
        assert_eq!(at(&spec, "http.[].timeout"), &string());
    }

    #[test]
    fn destination_rule_fields() {
        let spec = spec_schema(
            &definitions(&ISTIO_1_19),
            "destinationrules.networking.istio.io",
        );
        let mode = at(&spec, "trafficPolicy.tls.mode");
        assert_eq!(mode["type"], "string");
        assert!(
            mode["enum"]
                .as_array()
                .is_some_and(|e| e.contains(&json!("ISTIO_MUTUAL")))
        );
        let cookie = at(
            &spec,
            "trafficPolicy.loadBalancer.consistentHash.httpCookie",
        );
        for f in ["name", "path", "ttl"] {
            assert_eq!(cookie["properties"][f], string(), "{f}");
        }
        assert_eq!(at(&spec, "host"), &string());
        assert_eq!(
            at(&spec, "subsets.[].trafficPolicy"),
            at(&spec, "trafficPolicy")
        );
        assert_eq!(
            at(&spec, "trafficPolicy.portLevelSettings.[].port.number"),
            &int()
        );
    }

    #[test]
    fn authorization_policy_fields() {
        let spec = spec_schema(
            &definitions(&ISTIO_1_19),
            "authorizationpolicies.security.istio.io",
        );
        assert_eq!(
            at(&spec, "action"),
            &enum_of(&["ALLOW", "DENY", "AUDIT", "CUSTOM"])
        );
        assert_eq!(at(&spec, "rules.[].from.[].source.principals"), &strings());
        assert_eq!(at(&spec, "rules.[].from.[].source.namespaces"), &strings());
        for f in ["hosts", "paths", "ports", "methods"] {
            assert_eq!(
                at(&spec, &format!("rules.[].to.[].operation.{f}")),
                &strings()
            );
        }
        let when = at(&spec, "rules.[].when.[]");
        assert_eq!(when["properties"]["key"], string());
        assert_eq!(when["properties"]["values"], strings());
        assert_eq!(at(&spec, "selector.matchLabels"), &map_of(string()));
    }

    #[test]
    fn envoy_filter_fields() {
        let spec = spec_schema(
            &definitions(&ISTIO_1_19),
            "envoyfilters.networking.istio.io",
        );
        assert_eq!(at(&spec, "configPatches.[].patch.value"), &preserve());
        assert!(
            at(&spec, "configPatches.[].patch.operation")["enum"]
                .as_array()
                .is_some_and(|e| e.contains(&json!("MERGE")))
        );
        assert!(
            at(&spec, "configPatches.[].applyTo")["enum"]
                .as_array()
                .is_some_and(|e| e.contains(&json!("HTTP_FILTER")))
        );
        assert_eq!(
            at(
                &spec,
                "configPatches.[].match.listener.filterChain.filter.name"
            ),
            &string()
        );
        assert_eq!(at(&spec, "workloadSelector.labels"), &map_of(string()));
        assert_eq!(at(&spec, "priority"), &int32());
    }

    #[test]
    fn at_most_one_of_is_a_plain_value_validation() {
        let s = at_most_one_of(obj([("a", string()), ("b", string())]), &["a", "b"]);
        assert_eq!(
            s["oneOf"],
            json!([
                {"not": {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}},
                {"required": ["a"]},
                {"required": ["b"]},
            ])
        );
    }

    /// Served versions (storage one first) of each CRD of `release`, by name.
    fn served(release: &IstioRelease) -> Vec<(String, String, Vec<String>)> {
        definitions(release)
            .iter()
            .map(|m| {
                let versions = m.body["spec"]["versions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
                let storage = versions.iter().find(|v| v["storage"] == true).map(name);
                (
                    m.name.clone(),
                    storage.unwrap_or_default(),
                    versions.iter().map(name).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn istio_1_30s_crds_store_v1_serve_all_of_1_19s_versions_and_drop_the_operator() {
        let new = served(&ISTIO_1_30);
        assert_eq!(new.len(), 15);
        assert_eq!(new[0].0, "trafficextensions.extensions.istio.io");
        assert!(
            !new.iter()
                .any(|(n, _, _)| n == "istiooperators.install.istio.io")
        );
        let of = |name: &str| {
            new.iter()
                .find(|(n, _, _)| n == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let (_, storage, versions) = of("virtualservices.networking.istio.io");
        assert_eq!(
            (storage.as_str(), versions),
            ("v1", vec!["v1".into(), "v1alpha3".into(), "v1beta1".into()])
        );
        assert_eq!(of("peerauthentications.security.istio.io").1, "v1");
        assert_eq!(of("envoyfilters.networking.istio.io").1, "v1alpha3");
        assert_eq!(of("telemetries.telemetry.istio.io").1, "v1alpha1");
        // Whatever 1.19 serves, 1.30 serves: objects written for one are read by the other.
        for (name, _, old_versions) in served(&ISTIO_1_19) {
            if name == "istiooperators.install.istio.io" {
                continue;
            }
            let (_, _, versions) = of(&name);
            for v in old_versions {
                assert!(versions.contains(&v), "{name} {v}");
            }
        }
        let all = definitions(&ISTIO_1_30);
        let ap = crd(&all, "authorizationpolicies.security.istio.io");
        assert_eq!(ap.body["spec"]["names"]["shortNames"], json!(["ap"]));
        assert_eq!(
            ap.body["spec"]["versions"][0]["additionalPrinterColumns"][0],
            json!({"name": "Action", "type": "string", "jsonPath": ".spec.action"})
        );
        assert_eq!(
            ap.body["metadata"]["labels"]["helm.sh/chart"],
            "base-1.30.3"
        );
        assert!(ap.body["metadata"]["labels"].get("release").is_none());
    }
}
