//! Applications: the part of the configuration each team owns (`applications:` in the platform file,
//! and one file per application in `applicationsDir:`).
//!
//! ```yaml
//! name: orders                 # DNS label
//! namespace: shop              # created and labelled for the mesh unless existing: true
//! existing: false
//! serviceAccount: orders       # default: the app name
//! ports: [8080]                # the ports its Services serve; destinations must use one
//! hosts: [orders.shop.example.com]   # default: <name>.<namespace>.<platform domain>
//! tls: {secretName: my-cert}   # optional: otherwise vz issues a certificate from the platform CA
//! dns: true                    # records for the hosts, when the platform has a DNS provider
//! affinity: {cookie: {name: orders, ttl: 60s}}
//! rules:
//!   - paths: [{path: /api, type: prefix}]
//!     destination: {host: orders, port: 8080}
//!     authorization: {requestPrincipals: ["*"]}
//! ```
//!
//! Errors name the file, the line, the application and the rule: a host with `*`, the same host in
//! two applications, a destination port the application does not declare, two applications of one
//! name, an unknown field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ConfigError, Validator, check_dns_label, check_dns_name};

/// One application's networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Its name (a DNS label), unique on the platform.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The namespace exists already and is not `vz`'s: it is labelled for the mesh, never created or
    /// deleted.
    pub existing: bool,
    /// The service account its workloads run as.
    pub service_account: String,
    /// The labels of its pods (`selector`, default `app: <name>`): what its AuthorizationPolicy
    /// selects.
    pub selector: std::collections::BTreeMap<String, String>,
    /// The ports its Services serve.
    pub ports: Vec<u16>,
    /// Its hosts; empty for the default `<name>.<namespace>.<platform domain>`.
    pub hosts: Vec<String>,
    /// The Secret (in `istio-system`) holding its TLS certificate, when it brings its own.
    pub tls_secret: Option<String>,
    /// Whether its hosts get DNS records, when the platform has a DNS provider.
    pub dns: bool,
    /// Cookie-based session affinity.
    pub affinity: Option<Cookie>,
    /// Its routes.
    pub rules: Vec<Rule>,
    /// The file it was read from.
    pub source: PathBuf,
}

/// A session-affinity cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Its name.
    pub name: String,
    /// Its lifetime, as the configuration writes it (`60s`, `1h`).
    pub ttl: String,
}

/// One route of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The paths it matches (none: everything).
    pub paths: Vec<PathMatch>,
    /// Where requests go.
    pub destination: Destination,
    /// Who may call it, when restricted.
    pub authorization: Option<Authorization>,
}

/// A path and how it is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMatch {
    /// The path.
    pub path: String,
    /// How it is matched.
    pub kind: PathType,
}

/// How a path is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PathType {
    /// Any path starting with it.
    Prefix,
    /// Exactly it.
    Exact,
    /// A regular expression (RE2).
    Regex,
}

/// A destination Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The Service's name (in the application's namespace).
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// A per-path policy, enforced at the ingress gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The request principals (`<issuer>/<subject>` of a validated JWT) allowed; `*` for any.
    pub request_principals: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawApplication {
    /// The application's name: a DNS label, unique on the platform.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Its namespace: created and labelled for the mesh unless `existing: true`.
    #[schemars(with = "String")]
    namespace: Spanned<String>,
    /// The namespace exists already: vz only labels it for the mesh, never creates or deletes it.
    #[serde(default)]
    existing: bool,
    /// The service account its pods run as (default: the application's name).
    #[schemars(with = "Option<String>")]
    service_account: Option<Spanned<String>>,
    /// The labels of its pods, which its AuthorizationPolicy selects (default `app: <name>`).
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    selector: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    /// The ports its Services serve; every destination must use one.
    #[serde(default)]
    #[schemars(with = "Vec<u16>")]
    ports: Vec<Spanned<u16>>,
    /// Its host names (default `<name>.<namespace>.<platform domain>`); no wildcards.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    hosts: Vec<Spanned<String>>,
    /// Its own certificate, in a Secret in `istio-system`; otherwise vz issues one from the platform CA.
    #[schemars(with = "Option<RawTls>")]
    tls: Option<Spanned<RawTls>>,
    /// Whether its hosts get DNS records, when the platform has a DNS provider (default true).
    dns: Option<bool>,
    /// Session affinity by cookie.
    #[schemars(with = "Option<RawAffinity>")]
    affinity: Option<Spanned<RawAffinity>>,
    /// Its routes: paths to a destination Service, optionally restricted to request principals.
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTls {
    #[schemars(with = "String")]
    secret_name: Spanned<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAffinity {
    #[schemars(with = "RawCookie")]
    cookie: Spanned<RawCookie>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCookie {
    /// The cookie's name.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Its lifetime, e.g. `60s` or `1h`.
    #[schemars(with = "Option<String>")]
    ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    /// The paths it matches (none: every path).
    #[serde(default)]
    #[schemars(with = "Vec<RawPath>")]
    paths: Vec<Spanned<RawPath>>,
    /// The Service requests go to.
    #[schemars(with = "RawDestination")]
    destination: Spanned<RawDestination>,
    /// Only requests with one of these request principals (validated JWTs) reach these paths.
    #[schemars(with = "Option<RawAuthorization>")]
    authorization: Option<Spanned<RawAuthorization>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPath {
    /// The path.
    #[schemars(with = "String")]
    path: Spanned<String>,
    /// How it is matched: `prefix`, `exact` or `regex` (default: prefix for `/`, else exact).
    #[serde(rename = "type")]
    kind: Option<PathType>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDestination {
    /// The Service's name, in the application's namespace.
    #[schemars(with = "String")]
    host: Spanned<String>,
    /// Its port (one of the application's `ports`).
    #[schemars(with = "u16")]
    port: Spanned<u16>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAuthorization {
    #[schemars(with = "Vec<String>")]
    request_principals: Vec<Spanned<String>>,
}

impl Validator<'_> {
    /// One application; `at` is its field path (`applications[2]`, or empty for a file of its own).
    pub(super) fn application(
        &self,
        raw: &RawApplication,
        at: &str,
    ) -> Result<Application, ConfigError> {
        let field = |f: &str| {
            if at.is_empty() {
                f.to_string()
            } else {
                format!("{at}.{f}")
            }
        };
        let name = &raw.name.value;
        check_dns_label(name).map_err(|m| self.err(&raw.name, &field("name"), m))?;
        let app = |m: String| format!("application `{name}`: {m}");
        check_dns_label(&raw.namespace.value)
            .map_err(|m| self.err(&raw.namespace, &field("namespace"), app(m)))?;
        if super::super::names::SYSTEM_NAMESPACES.contains(&raw.namespace.value.as_str()) {
            return Err(self.err(
                &raw.namespace,
                &field("namespace"),
                app(format!(
                    "`{}` is a system namespace of the platform; applications live in namespaces of their own",
                    raw.namespace.value
                )),
            ));
        }
        let service_account = match &raw.service_account {
            Some(sa) => {
                check_dns_name(&sa.value)
                    .map_err(|m| self.err(sa, &field("serviceAccount"), app(m)))?;
                sa.value.clone()
            }
            None => name.clone(),
        };
        let selector = match &raw.selector {
            Some(s) if s.value.is_empty() => {
                return Err(self.err(
                    s,
                    &field("selector"),
                    app("an empty selector would select every pod of the namespace".into()),
                ));
            }
            Some(s) => s.value.clone(),
            None => [("app".to_string(), name.clone())].into_iter().collect(),
        };
        let mut ports = Vec::new();
        for (i, p) in raw.ports.iter().enumerate() {
            if p.value == 0 || ports.contains(&p.value) {
                return Err(self.err(
                    p,
                    &field(&format!("ports[{i}]")),
                    app(format!("port {} is 0 or listed twice", p.value)),
                ));
            }
            ports.push(p.value);
        }
        let mut hosts: Vec<String> = Vec::new();
        for (i, h) in raw.hosts.iter().enumerate() {
            let host = h.value.trim().trim_end_matches('.').to_ascii_lowercase();
            let f = field(&format!("hosts[{i}]"));
            if host.contains('*') {
                return Err(self.err(
                    h,
                    &f,
                    app(format!(
                        "`{}` is a wildcard; an application names each of its hosts",
                        h.value
                    )),
                ));
            }
            check_dns_name(&host).map_err(|m| self.err(h, &f, app(m)))?;
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        let tls_secret = match &raw.tls {
            Some(t) => {
                let s = &t.value.secret_name;
                check_dns_name(&s.value)
                    .map_err(|m| self.err(s, &field("tls.secretName"), app(m)))?;
                Some(s.value.clone())
            }
            None => None,
        };
        let affinity = match &raw.affinity {
            Some(a) => {
                let c = &a.value.cookie.value;
                let cookie_ok = !c.name.value.is_empty()
                    && c.name
                        .value
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
                if !cookie_ok {
                    return Err(self.err(
                        &c.name,
                        &field("affinity.cookie.name"),
                        app(format!("`{}` is not a cookie name", c.name.value)),
                    ));
                }
                let ttl = match &c.ttl {
                    Some(t) if !super::is_go_duration(&t.value) => {
                        return Err(self.err(
                            t,
                            &field("affinity.cookie.ttl"),
                            app(format!(
                                "`{}` is not a duration such as `60s` or `1h`",
                                t.value
                            )),
                        ));
                    }
                    Some(t) => t.value.clone(),
                    None => "0s".to_string(),
                };
                Some(Cookie {
                    name: c.name.value.clone(),
                    ttl,
                })
            }
            None => None,
        };
        let mut rules = Vec::new();
        for (r, raw_rule) in raw.rules.iter().enumerate() {
            let rf = |f: &str| field(&format!("rules[{r}].{f}"));
            let rule_says = |m: String| format!("application `{name}`, rule {}: {m}", r + 1);
            let rr = &raw_rule.value;
            let mut paths = Vec::new();
            for (p, raw_path) in rr.paths.iter().enumerate() {
                let path = &raw_path.value.path;
                let kind = raw_path.value.kind.unwrap_or(if path.value == "/" {
                    PathType::Prefix
                } else {
                    PathType::Exact
                });
                if kind != PathType::Regex && !path.value.starts_with('/') {
                    return Err(self.err(
                        path,
                        &rf(&format!("paths[{p}].path")),
                        rule_says(format!("`{}` does not start with `/`", path.value)),
                    ));
                }
                if kind == PathType::Regex && path.value.is_empty() {
                    return Err(self.err(
                        path,
                        &rf(&format!("paths[{p}].path")),
                        rule_says("an empty regular expression".into()),
                    ));
                }
                paths.push(PathMatch {
                    path: path.value.clone(),
                    kind,
                });
            }
            let d = &rr.destination.value;
            check_dns_label(&d.host.value)
                .map_err(|m| self.err(&d.host, &rf("destination.host"), rule_says(m)))?;
            if !ports.contains(&d.port.value) {
                let declared = match ports.as_slice() {
                    [] => "it declares none: list them in `ports:`".to_string(),
                    p => format!(
                        "it declares {}",
                        p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                    ),
                };
                return Err(self.err(
                    &d.port,
                    &rf("destination.port"),
                    rule_says(format!(
                        "port {} is not a port of the application ({declared})",
                        d.port.value
                    )),
                ));
            }
            let regex = paths.iter().any(|p| p.kind == PathType::Regex);
            let authorization = match &rr.authorization {
                Some(a) if regex => {
                    return Err(self.err(
                        a,
                        &rf("authorization"),
                        rule_says("an authorization policy matches paths by prefix or exactly, not by a regular expression: split the rule".into()),
                    ));
                }
                Some(a) if a.value.request_principals.is_empty() => {
                    return Err(self.err(
                        a,
                        &rf("authorization.requestPrincipals"),
                        rule_says(
                            "name at least one principal (`*` for any validated token)".into(),
                        ),
                    ));
                }
                Some(a) => Some(Authorization {
                    request_principals: a
                        .value
                        .request_principals
                        .iter()
                        .map(|p| p.value.clone())
                        .collect(),
                }),
                None => None,
            };
            rules.push(Rule {
                paths,
                destination: Destination {
                    host: d.host.value.clone(),
                    port: d.port.value,
                },
                authorization,
            });
        }
        Ok(Application {
            name: name.clone(),
            namespace: raw.namespace.value.clone(),
            existing: raw.existing,
            service_account,
            selector,
            ports,
            hosts,
            tls_secret,
            dns: raw.dns.unwrap_or(true),
            affinity,
            rules,
            source: self.file.to_path_buf(),
        })
    }
}

/// Every application: those in the platform file, then one per `*.yaml`/`*.yml` file of `dir` (in
/// name order); names and hosts must be unique across all of them.
pub(super) fn collect(
    v: &Validator<'_>,
    inline: &[Spanned<RawApplication>],
    dir: Option<&Spanned<String>>,
) -> Result<Vec<Application>, ConfigError> {
    let mut apps = Vec::new();
    let mut spans = Vec::new();
    for (i, raw) in inline.iter().enumerate() {
        apps.push(v.application(&raw.value, &format!("applications[{i}]"))?);
        spans.push((
            raw.value.name.referenced.line(),
            raw.value.name.referenced.column(),
        ));
    }
    if let Some(d) = dir {
        let base = v.file.parent().unwrap_or_else(|| Path::new(""));
        let path = base.join(&d.value);
        let entries = std::fs::read_dir(&path).map_err(|e| {
            v.err(
                d,
                "applicationsDir",
                format!("cannot read directory {}: {e}", path.display()),
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for file in files {
            let text = super::read_text(&file)?;
            let raw: Spanned<RawApplication> = super::from_yaml(&file, &text)?;
            let fv = Validator { file: &file };
            apps.push(fv.application(&raw.value, "")?);
            spans.push((
                raw.value.name.referenced.line(),
                raw.value.name.referenced.column(),
            ));
        }
    }
    for (i, a) in apps.iter().enumerate() {
        for b in &apps[..i] {
            let (line, column) = spans[i];
            let at = |message: String| ConfigError {
                file: a.source.clone(),
                line: Some(line),
                column: Some(column),
                field: Some("name".into()),
                message,
            };
            if a.name == b.name {
                return Err(at(format!(
                    "application `{}` is defined twice (also in {})",
                    a.name,
                    b.source.display()
                )));
            }
            if a.namespace == b.namespace && a.existing != b.existing {
                return Err(at(format!(
                    "applications `{}` and `{}` share namespace `{}`, but only one says `existing: true`: say it in both or in neither",
                    b.name, a.name, a.namespace
                )));
            }
            if let Some(h) = a.hosts.iter().find(|h| b.hosts.contains(h)) {
                return Err(at(format!(
                    "application `{}`: host `{h}` is also a host of application `{}`",
                    a.name, b.name
                )));
            }
        }
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::super::{Platform, parse};
    use super::*;

    const ORDERS: &str = "  - name: orders\n    namespace: shop\n    ports: [8080]\n    hosts: [Orders.Shop.example.com., orders.shop.example.com]\n    affinity: {cookie: {name: orders, ttl: 60s}}\n    rules:\n      - paths: [{path: /api, type: prefix}, {path: /health}]\n        destination: {host: orders, port: 8080}\n        authorization: {requestPrincipals: ['*']}\n      - destination: {host: orders, port: 8080}\n";

    fn parse_ok(text: &str) -> Platform {
        parse(Path::new("/cfg/vz.yaml"), text).expect("valid config")
    }

    fn parse_err(text: &str) -> ConfigError {
        parse(Path::new("/cfg/vz.yaml"), text).expect_err("invalid config")
    }

    #[test]
    fn an_application_reads_with_its_defaults() {
        let p = parse_ok(&format!("applications:\n{ORDERS}"));
        let a = &p.applications[0];
        assert_eq!(
            (
                a.name.as_str(),
                a.namespace.as_str(),
                a.service_account.as_str()
            ),
            ("orders", "shop", "orders")
        );
        assert_eq!(
            a.hosts,
            ["orders.shop.example.com"],
            "lower-cased, deduplicated"
        );
        assert!(a.dns && !a.existing && a.tls_secret.is_none());
        assert_eq!(
            a.affinity,
            Some(Cookie {
                name: "orders".into(),
                ttl: "60s".into()
            })
        );
        assert_eq!(a.rules.len(), 2);
        assert_eq!(
            a.rules[0].paths,
            [
                PathMatch {
                    path: "/api".into(),
                    kind: PathType::Prefix
                },
                PathMatch {
                    path: "/health".into(),
                    kind: PathType::Exact
                }
            ]
        );
        assert!(a.rules[1].paths.is_empty() && a.rules[1].authorization.is_none());
        assert_eq!(a.source, Path::new("/cfg/vz.yaml"));
    }

    #[test]
    fn application_files_are_read_from_the_directory_in_name_order() {
        let dir = tempfile::tempdir().expect("dir");
        let apps = dir.path().join("apps");
        std::fs::create_dir(&apps).expect("apps");
        std::fs::write(
            apps.join("b.yaml"),
            "name: cart\nnamespace: shop\nports: [80]\nrules: [{destination: {host: cart, port: 80}}]\n",
        )
        .expect("write");
        std::fs::write(apps.join("a.yml"), "name: auth\nnamespace: id\n").expect("write");
        std::fs::write(apps.join("notes.txt"), "not an application").expect("write");
        let cfg = dir.path().join("vz.yaml");
        let p = parse(
            &cfg,
            &format!("applicationsDir: apps\napplications:\n{ORDERS}"),
        )
        .expect("valid");
        let names: Vec<&str> = p.applications.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["orders", "auth", "cart"]);
        assert_eq!(p.applications[2].source, apps.join("b.yaml"));

        std::fs::write(
            apps.join("c.yaml"),
            "name: orders2\nnamespace: shop\nhosts: [orders.shop.example.com]\n",
        )
        .expect("write");
        let e = parse(
            &cfg,
            &format!("applicationsDir: apps\napplications:\n{ORDERS}"),
        )
        .expect_err("a host twice");
        assert_eq!(e.file, apps.join("c.yaml"));
        assert_eq!(e.line, Some(1));
        assert!(
            e.message
                .contains("host `orders.shop.example.com` is also a host of application `orders`"),
            "{}",
            e.message
        );
        std::fs::write(
            apps.join("c.yaml"),
            "name: orders\nnamespace: x\nbogus: 1\n",
        )
        .expect("write");
        let e = parse(&cfg, "applicationsDir: apps\n").expect_err("unknown field");
        assert_eq!(e.file, apps.join("c.yaml"));
        assert!(e.message.contains("bogus"), "{}", e.message);
    }

    #[test]
    fn mistakes_name_the_application_and_the_rule() {
        for (app, field, says) in [
            (
                "  - {name: a, namespace: n, hosts: ['*.example.com']}\n",
                "applications[0].hosts[0]",
                "application `a`: `*.example.com` is a wildcard",
            ),
            (
                "  - {name: a, namespace: n, ports: [8080], rules: [{destination: {host: a, port: 8080}}, {destination: {host: a, port: 9090}}]}\n",
                "applications[0].rules[1].destination.port",
                "application `a`, rule 2: port 9090 is not a port of the application (it declares 8080)",
            ),
            (
                "  - {name: a, namespace: n, rules: [{destination: {host: a, port: 80}}]}\n",
                "applications[0].rules[0].destination.port",
                "it declares none: list them in `ports:`",
            ),
            (
                "  - {name: a, namespace: istio-system}\n",
                "applications[0].namespace",
                "is a system namespace",
            ),
            (
                "  - {name: a, namespace: n, ports: [80], rules: [{paths: [{path: api}], destination: {host: a, port: 80}}]}\n",
                "applications[0].rules[0].paths[0].path",
                "rule 1: `api` does not start with `/`",
            ),
            (
                "  - {name: A_1, namespace: n}\n",
                "applications[0].name",
                "not a valid DNS label",
            ),
        ] {
            let e = parse_err(&format!("applications:\n{app}"));
            assert_eq!(e.field.as_deref(), Some(field), "{app}");
            assert!(e.message.contains(says), "{app}: {}", e.message);
            assert_eq!(e.line, Some(2), "{app}");
        }
        let e =
            parse_err("applications:\n  - {name: a, namespace: n}\n  - {name: a, namespace: m}\n");
        assert!(
            e.message.contains("application `a` is defined twice"),
            "{}",
            e.message
        );
        assert_eq!(e.line, Some(3));
        let e = parse_err("applications:\n  - {name: a, namespace: n, color: blue}\n");
        assert!(e.message.contains("color"), "{}", e.message);
    }
}
