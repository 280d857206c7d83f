//! `ingress.controller: gateway-api`: the system routes as Gateway API objects on Istio's ingress
//! gateway, judged by Istio's own controller (pilot-discovery runs beside the test plane, writing
//! Gateway and route status as istiod does in a cluster): applied, served, and destroyed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{TestEnv, exit};

/// The quick start on NGINX, its hosts under a domain of its own (the same whatever serves them).
fn nginx_config(env: &TestEnv) -> String {
    let text = std::fs::read_to_string(env.example("quickstart.yaml"))
        .expect("quick start")
        .replace(
            "dns:\n  wildcard:\n    domain: nip.io\n",
            "dns:\n  external: {suffix: example.test}\n",
        )
        .replace(
            "    injectionEnabled: true\n",
            "    injectionEnabled: true\n    ingress: {type: NodePort, externalIPs: [192.0.2.11]}\n",
        );
    let cfg = env.write_config("migrate.yaml", &text);
    cfg.to_str().expect("utf8").to_string()
}

/// The same platform on Gateway API (the same state: the file is beside it, with the same name).
fn gateway_api_config(env: &TestEnv) -> String {
    let text = std::fs::read_to_string(env.work.path().join("migrate.yaml"))
        .expect("config")
        .replace(
            "ingress:\n  type: NodePort\n",
            "ingress:\n  controller: gateway-api\n",
        )
        .replace("  ingressNGINX: {enabled: true}\n", "");
    let cfg = env.write_config("migrate.yaml", &text);
    cfg.to_str().expect("utf8").to_string()
}

/// The system hosts served now: by an Ingress while NGINX's controller runs, or by an HTTPRoute
/// that Istio accepted, backends resolved, on a Gateway it programmed, whose listener for it is.
fn served(get: &dyn Fn(&[&str]) -> Option<serde_json::Value>) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    let nginx = get(&[
        "deployment",
        "-n",
        "verrazzano-ingress-nginx",
        "ingress-controller-ingress-nginx-controller",
    ])
    .is_some_and(|d| d["status"]["availableReplicas"].as_i64().unwrap_or(0) > 0);
    if nginx && let Some(list) = get(&["ingresses", "-A"]) {
        for i in list["items"].as_array().into_iter().flatten() {
            for r in i["spec"]["rules"].as_array().into_iter().flatten() {
                hosts.extend(r["host"].as_str().map(str::to_string));
            }
        }
    }
    let Some(gw) = get(&[
        "gateways.gateway.networking.k8s.io",
        "-n",
        "istio-system",
        "verrazzano-gateway",
    ]) else {
        return hosts;
    };
    let programmed =
        |conditions: &serde_json::Value| condition(conditions, "Programmed") == "Programmed=True";
    if !programmed(&gw["status"]["conditions"]) {
        return hosts;
    }
    let listeners: BTreeSet<String> = gw["status"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| programmed(&l["conditions"]))
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect();
    if let Some(list) = get(&["httproutes.gateway.networking.k8s.io", "-A"]) {
        for r in list["items"].as_array().into_iter().flatten() {
            let section = r["spec"]["parentRefs"][0]["sectionName"]
                .as_str()
                .unwrap_or("");
            let parent = &r["status"]["parents"][0]["conditions"];
            let ok = listeners.contains(section)
                && condition(parent, "Accepted") == "Accepted=True"
                && condition(parent, "ResolvedRefs") == "ResolvedRefs=True";
            if ok && section != "http" {
                for h in r["spec"]["hostnames"].as_array().into_iter().flatten() {
                    hosts.extend(h.as_str().map(str::to_string));
                }
            }
        }
    }
    hosts
}

/// The quick start with Gateway API routes instead of NGINX.
fn config(env: &TestEnv) -> String {
    let text = std::fs::read_to_string(env.example("quickstart.yaml"))
        .expect("quick start")
        .replace(
            "ingress:\n  type: NodePort\n",
            "ingress:\n  controller: gateway-api\n",
        )
        .replace(
            "    injectionEnabled: true\n",
            "    injectionEnabled: true\n    ingress: {type: NodePort, externalIPs: [192.0.2.11]}\n",
        )
        .replace("  ingressNGINX: {enabled: true}\n", "");
    let cfg = env.write_config("gateway-api.yaml", &text);
    cfg.to_str().expect("utf8").to_string()
}

/// The Services of the components behind the routes (Verrazzano's, not vz's), as their charts make
/// them.
fn backends(env: &TestEnv) {
    for (ns, name, ports) in [
        ("verrazzano-system", "verrazzano-authproxy", "8775:8775"),
        ("keycloak", "keycloak-http", "80:8080"),
        ("cattle-system", "rancher", "443:444"),
        ("argocd", "argocd-server", "80:8080"),
    ] {
        if env.get_json(&["namespace", ns]).is_none() {
            continue;
        }
        env.kubectl(&[
            "create",
            "service",
            "clusterip",
            name,
            "-n",
            ns,
            "--tcp",
            ports,
        ])
        .expect_code(0);
    }
}

/// The platform's namespaces alone, for the components' Services to go in before the routes.
fn system_namespaces(env: &TestEnv, cfg: &str) {
    env.vz(&[
        "apply",
        "-f",
        cfg,
        "--target",
        "namespaces",
        "--auto-approve",
    ])
    .expect_code(0);
}

/// Every Gateway API object in the plane.
fn gateway_api_objects(env: &TestEnv) -> Vec<String> {
    env.list_names(&[
        "gateways.gateway.networking.k8s.io,httproutes.gateway.networking.k8s.io,referencegrants.gateway.networking.k8s.io",
        "-A",
    ])
}

/// `type=status` of condition `kind` in `conditions`.
fn condition(conditions: &serde_json::Value, kind: &str) -> String {
    conditions
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .map(|c| format!("{kind}={}", c["status"].as_str().unwrap_or("?")))
        .unwrap_or_else(|| format!("{kind}=absent"))
}

#[test]
fn the_system_routes_are_served_by_istios_gateway_as_istio_judges_them_and_destroyed() {
    let env = TestEnv::start_with(&["--gateway-api"]);
    let cfg = config(&env);
    system_namespaces(&env, &cfg);
    // Without the components' Services, Istio resolves no route: apply waits for it, says why,
    // and rolls back.
    let waited = env.vz(&["apply", "-f", &cfg, "--auto-approve", "--timeout", "25s"]);
    waited.expect_code(exit::ROLLED_BACK);
    assert!(
        waited.stderr.contains(
            "ResolvedRefs=True from Gateway verrazzano-gateway (it is False: BackendNotFound"
        ),
        "{}",
        waited.stderr
    );
    assert_eq!(
        env.list_names(&["httproutes.gateway.networking.k8s.io", "-A"]),
        Vec::<String>::new(),
        "rolled back"
    );
    backends(&env);
    let started = Instant::now();
    let apply = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
    apply.expect_code(0);
    println!(
        "gateway-api: the quick start applied in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Istio's controller programmed the Gateway and accepted every route, backends resolved.
    let gw = env
        .get_json(&[
            "gateways.gateway.networking.k8s.io",
            "-n",
            "istio-system",
            "verrazzano-gateway",
        ])
        .expect("gateway");
    assert_eq!(
        condition(&gw["status"]["conditions"], "Programmed"),
        "Programmed=True"
    );
    for l in gw["status"]["listeners"].as_array().expect("listeners") {
        assert_eq!(
            condition(&l["conditions"], "ResolvedRefs"),
            "ResolvedRefs=True",
            "listener {}: its certificate is granted: {l}",
            l["name"]
        );
    }
    let routes = env
        .get_json(&["httproutes.gateway.networking.k8s.io", "-A"])
        .expect("routes");
    let routes = routes["items"].as_array().expect("items");
    let names: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["metadata"]["namespace"].as_str().unwrap_or(""),
                r["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        names.contains(&"keycloak/keycloak".to_string()),
        "{names:?}"
    );
    for r in routes {
        let parent = &r["status"]["parents"][0];
        assert_eq!(parent["controllerName"], "istio.io/gateway-controller");
        for kind in ["Accepted", "ResolvedRefs"] {
            assert_eq!(
                condition(&parent["conditions"], kind),
                format!("{kind}=True"),
                "{}: {r}",
                r["metadata"]["name"]
            );
        }
    }
    assert!(
        env.get_json(&["namespace", "verrazzano-ingress-nginx"])
            .is_none(),
        "no NGINX"
    );
    assert_eq!(env.list_names(&["ingresses", "-A"]), Vec::<String>::new());
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);

    env.vz(&["destroy", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    assert_eq!(gateway_api_objects(&env), Vec::<String>::new());
}

#[test]
fn a_migration_from_nginx_to_gateway_api_leaves_no_moment_a_route_is_unserved() {
    let env = TestEnv::start_with(&["--gateway-api"]);
    let cfg = nginx_config(&env);
    system_namespaces(&env, &cfg);
    backends(&env);
    env.vz(&["apply", "-f", &cfg, "--auto-approve"])
        .expect_code(0);
    // kubectl of its own, for a thread of its own.
    let kubeconfig = env.plane_file("kubeconfig");
    let get = |args: &[&str]| -> Option<serde_json::Value> {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "-o", "json"])
            .args(args)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    };
    let before = served(&get);
    assert!(
        before.contains("keycloak.quickstart.example.test") && before.len() >= 6,
        "NGINX serves every system host first: {before:?}"
    );
    let cfg = gateway_api_config(&env);
    let plan = env.vz(&["plan", "-f", &cfg]);
    plan.expect_code(0);
    assert!(
        plan.stdout.contains("+ system-routes/Gateway/istio-system/verrazzano-gateway")
            && plan.stdout.contains("- ingress-nginx/Deployment/verrazzano-ingress-nginx/ingress-controller-ingress-nginx-controller"),
        "{}",
        plan.stdout
    );
    // Watch what is served while the migration runs.
    let done = AtomicBool::new(false);
    let (gaps, samples) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let (mut gaps, mut samples) = (Vec::new(), 0);
            while !done.load(Ordering::SeqCst) {
                let now = served(&get);
                let missing: Vec<&String> = before.difference(&now).collect();
                if !missing.is_empty() {
                    gaps.push(format!("{missing:?}"));
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (gaps, samples)
        });
        let migrated = env.vz(&["apply", "-f", &cfg, "--auto-approve"]);
        done.store(true, Ordering::SeqCst);
        migrated.expect_code(0);
        watcher.join().expect("watcher")
    });
    println!(
        "gateway-api migration: {samples} looks at what was served, {} with a host unserved",
        gaps.len()
    );
    assert!(
        gaps.is_empty(),
        "hosts unserved during the migration: {gaps:?}"
    );
    assert!(samples > 3, "the migration was watched");
    let after = served(&get);
    assert_eq!(after, before, "the same hosts, now on Istio's gateway");
    assert!(
        env.get_json(&["namespace", "verrazzano-ingress-nginx"])
            .is_none(),
        "NGINX went last"
    );
    env.vz(&["plan", "-f", &cfg, "--detailed-exitcode"])
        .expect_code(0);
}

#[test]
fn the_full_example_on_gateway_api_applies_every_route_and_destroys_to_nothing() {
    let env = TestEnv::start_with(&["--gateway-api"]);
    let cfg = env.example("full.yaml");
    let text = std::fs::read_to_string(&cfg).expect("full.yaml");
    let nginx = "ingress:\n  type: LoadBalancer                 # or NodePort\n  externalIPs: [192.0.2.10]          # optional; the first one is the ingress address\n";
    assert!(text.contains(nginx) && text.contains("  ingressNGINX: {enabled: true}\n"));
    let text = text
        .replace(nginx, "ingress:\n  controller: gateway-api\n")
        .replace("  ingressNGINX: {enabled: true}\n", "");
    std::fs::write(&cfg, text).expect("write");
    let cfg = cfg.to_str().expect("utf8");
    // Its gateway is a load balancer: play the cloud's load-balancer controller.
    env.set_node_sim(
        "load-balancers",
        "istio-system/istio-ingressgateway=192.0.2.11",
    );
    system_namespaces(&env, cfg);
    backends(&env);
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    let get = |args: &[&str]| env.get_json(args);
    let hosts = served(&get);
    let want: BTreeSet<String> = [
        "verrazzano",
        "prometheus.vmi.system",
        "grafana.vmi.system",
        "opensearch.vmi.system",
        "osd.vmi.system",
        "kiali.vmi.system",
        "keycloak",
        "argocd",
        "rancher",
    ]
    .iter()
    .map(|h| format!("{h}.dev.192.0.2.11.nip.io"))
    .collect();
    assert_eq!(hosts, want, "every system host, on the gateway's address");
    env.vz(&["destroy", "-f", cfg, "--auto-approve"])
        .expect_code(0);
    assert_eq!(gateway_api_objects(&env), Vec::<String>::new());
}

#[test]
fn with_external_dns_the_routes_istio_accepts_are_its_sources_and_destroy_syncs_it_after_them() {
    let env = TestEnv::start_with(&["--gateway-api"]);
    let text = std::fs::read_to_string(config(&env))
        .expect("config")
        .replace(
            "dns:\n  wildcard:\n    domain: nip.io\n",
            "dns:\n  externalDNS: {provider: oci, zone: example.test}\n",
        );
    assert!(text.contains("externalDNS"), "the quick start's DNS moved");
    let cfg = env.write_config("gateway-api.yaml", &text);
    let cfg = cfg.to_str().expect("utf8");
    system_namespaces(&env, cfg);
    backends(&env);
    env.vz(&["apply", "-f", cfg, "--auto-approve"])
        .expect_code(0);

    // The ExternalDNS that reads Gateway API routes of v1, allowed to.
    let d = env
        .get_json(&["deployment", "-n", "verrazzano-system", "external-dns"])
        .expect("ExternalDNS");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "registry.k8s.io/external-dns/external-dns:v0.22.0"
    );
    let args = c["args"].to_string();
    assert!(
        args.contains("--source=gateway-httproute")
            && args.contains("--annotation-prefix=external-dns.alpha.kubernetes.io/"),
        "{args}"
    );
    let sa = "system:serviceaccount:verrazzano-system:external-dns";
    for what in [
        "httproutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "namespaces",
        "endpointslices.discovery.k8s.io",
    ] {
        env.kubectl(&["auth", "can-i", "watch", what, "--as", sa])
            .expect_code(0);
    }

    // Its sources: the ingress gateway under NGINX's name, every host of an accepted route a CNAME
    // to it.
    let svc = env
        .get_json(&["service", "-n", "istio-system", "istio-ingressgateway"])
        .expect("service");
    assert_eq!(
        svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
        "verrazzano-ingress.quickstart.example.test"
    );
    let gw = env
        .get_json(&[
            "gateways.gateway.networking.k8s.io",
            "-n",
            "istio-system",
            "verrazzano-gateway",
        ])
        .expect("gateway");
    assert_eq!(
        gw["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/target"],
        "verrazzano-ingress.quickstart.example.test"
    );
    let keycloak = env
        .get_json(&[
            "httproutes.gateway.networking.k8s.io",
            "-n",
            "keycloak",
            "keycloak",
        ])
        .expect("route");
    assert_eq!(
        keycloak["spec"]["hostnames"][0],
        "keycloak.quickstart.example.test"
    );
    assert_eq!(
        condition(&keycloak["status"]["parents"][0]["conditions"], "Accepted"),
        "Accepted=True",
        "ExternalDNS publishes accepted routes only"
    );
    env.vz(&["plan", "-f", cfg, "--detailed-exitcode"])
        .expect_code(0);

    // Destroy: the routes and the Service go first, then ExternalDNS's final sync runs.
    let destroy = env.vz(&["destroy", "-f", cfg, "--auto-approve"]);
    destroy.expect_code(0);
    let out = format!("{}{}", destroy.stdout, destroy.stderr);
    assert!(out.contains("external-dns: final sync done"), "{out}");
    assert_eq!(gateway_api_objects(&env), Vec::<String>::new());
    assert!(
        env.get_json(&["deployment", "-n", "verrazzano-system", "external-dns"])
            .is_none()
    );
}
