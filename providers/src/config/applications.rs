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
//!
//! The file's application ([`RawApplication`] and the types under it) and the validated
//! [`Application`] are two types, since validation gives the application its defaults (service
//! account, selector, hosts lower-cased and deduplicated) and the file's keeps the line and column
//! of every value an error can be about. Its rules are in [`super::rules`].

use std::fmt::Display;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::checks::{check_dns_label, check_dns_name, is_go_duration};
use super::errors::{Source, position};
use super::rules::{self, RawRule, Rule};
use super::yaml::{from_yaml, read_text};

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
    /// It was read from an OAM `ApplicationConfiguration` (of its name, in its namespace), whose
    /// deletion from the cluster `vz watch` takes for its end.
    pub oam: bool,
}

/// A session-affinity cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Its name.
    pub name: String,
    /// Its lifetime, as the configuration writes it (`60s`, `1h`).
    pub ttl: String,
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

/// One application being validated: where its fields are, and its name for the messages.
pub(super) struct App<'a> {
    /// The file it is read from.
    pub(super) src: &'a Source<'a>,
    /// Its field path (`applications[2]`), or empty for a file of its own.
    pub(super) at: &'a str,
    /// Its name.
    pub(super) name: &'a str,
}

impl App<'_> {
    /// The path of its field `f`.
    pub(super) fn field(&self, f: &str) -> String {
        if self.at.is_empty() {
            f.to_string()
        } else {
            format!("{}.{f}", self.at)
        }
    }

    /// `message`, said of the application.
    fn says(&self, message: impl Display) -> String {
        format!("application `{}`: {message}", self.name)
    }

    /// An error at `value`, its field `f`, said of the application.
    fn err<T>(&self, value: &Spanned<T>, f: &str, message: impl Display) -> ConfigError {
        self.src.err(value, &self.field(f), self.says(message))
    }

    /// The text of `value`, its field `f`, once `check` accepts it.
    fn checked(
        &self,
        value: &Spanned<String>,
        f: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Result<String, ConfigError> {
        self.src.checked(value, &self.field(f), |v| {
            check(v).map_err(|m| self.says(m))
        })
    }
}

/// One application, read from `src`; `at` is its field path (`applications[2]`, or empty for a
/// file of its own).
fn application(
    src: &Source<'_>,
    raw: &RawApplication,
    at: &str,
) -> Result<Application, ConfigError> {
    let name = &raw.name.value;
    let app = App { src, at, name };
    check_dns_label(name).map_err(|m| src.err(&raw.name, &app.field("name"), m))?;
    let namespace = namespace(&app, &raw.namespace)?;
    let service_account = match &raw.service_account {
        Some(sa) => app.checked(sa, "serviceAccount", check_dns_name)?,
        None => name.clone(),
    };
    let selector = match &raw.selector {
        Some(s) if s.value.is_empty() => {
            return Err(app.err(
                s,
                "selector",
                "an empty selector would select every pod of the namespace",
            ));
        }
        Some(s) => s.value.clone(),
        None => [("app".to_string(), name.clone())].into_iter().collect(),
    };
    let ports = ports(&app, &raw.ports)?;
    let hosts = hosts(&app, &raw.hosts)?;
    let tls_secret = match &raw.tls {
        Some(t) => Some(app.checked(&t.value.secret_name, "tls.secretName", check_dns_name)?),
        None => None,
    };
    let affinity = match &raw.affinity {
        Some(a) => Some(cookie(&app, &a.value.cookie.value)?),
        None => None,
    };
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(r, rule)| rules::rule(&app, r, &rule.value, &ports))
        .collect::<Result<_, _>>()?;
    Ok(Application {
        name: name.clone(),
        namespace,
        existing: raw.existing,
        service_account,
        selector,
        ports,
        hosts,
        tls_secret,
        dns: raw.dns.unwrap_or(true),
        affinity,
        rules,
        source: src.file.to_path_buf(),
        oam: false,
    })
}

/// `namespace`: a namespace of the application's own, not one of the platform's.
pub(super) fn namespace(app: &App<'_>, raw: &Spanned<String>) -> Result<String, ConfigError> {
    let namespace = app.checked(raw, "namespace", check_dns_label)?;
    if crate::names::SYSTEM_NAMESPACES.contains(&namespace.as_str()) {
        return Err(app.err(
            raw,
            "namespace",
            format!(
                "`{namespace}` is a system namespace of the platform; applications live in namespaces of their own"
            ),
        ));
    }
    Ok(namespace)
}

/// `ports`: each one once, none 0.
fn ports(app: &App<'_>, raw: &[Spanned<u16>]) -> Result<Vec<u16>, ConfigError> {
    let mut ports = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        if p.value == 0 || ports.contains(&p.value) {
            return Err(app.err(
                p,
                &format!("ports[{i}]"),
                format!("port {} is 0 or listed twice", p.value),
            ));
        }
        ports.push(p.value);
    }
    Ok(ports)
}

/// `hosts`: DNS names without wildcards, lower-cased and deduplicated.
pub(super) fn hosts(app: &App<'_>, raw: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
    let mut hosts: Vec<String> = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let host = h.value.trim().trim_end_matches('.').to_ascii_lowercase();
        let f = format!("hosts[{i}]");
        if host.contains('*') {
            return Err(app.err(
                h,
                &f,
                format!(
                    "`{}` is a wildcard; an application names each of its hosts",
                    h.value
                ),
            ));
        }
        check_dns_name(&host).map_err(|m| app.err(h, &f, m))?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// `affinity.cookie`: a cookie name and a lifetime (`0s` unless set).
fn cookie(app: &App<'_>, raw: &RawCookie) -> Result<Cookie, ConfigError> {
    let name = &raw.name.value;
    let cookie_ok = !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !cookie_ok {
        return Err(app.err(
            &raw.name,
            "affinity.cookie.name",
            format!("`{name}` is not a cookie name"),
        ));
    }
    let ttl = match &raw.ttl {
        Some(t) if !is_go_duration(&t.value) => {
            return Err(app.err(
                t,
                "affinity.cookie.ttl",
                format!("`{}` is not a duration such as `60s` or `1h`", t.value),
            ));
        }
        Some(t) => t.value.clone(),
        None => "0s".to_string(),
    };
    Ok(Cookie {
        name: name.clone(),
        ttl,
    })
}

/// An application, with where its name is in its file (line and column).
type Located = (Application, (u64, u64));

/// Every application: those in the platform file, then one per `*.yaml`/`*.yml` file of `dir` (in
/// name order; a file of `vz`'s own form, or an OAM ApplicationConfiguration, see
/// [`super::oam`]); names and hosts must be unique across all of them.
pub(super) fn collect(
    src: &Source<'_>,
    inline: &[Spanned<RawApplication>],
    dir: Option<&Spanned<String>>,
) -> Result<Vec<Application>, ConfigError> {
    let mut apps = Vec::new();
    for (i, raw) in inline.iter().enumerate() {
        let app = application(src, &raw.value, &format!("applications[{i}]"))?;
        apps.push((app, position(&raw.value.name)));
    }
    if let Some(d) = dir {
        apps.extend(from_dir(src, d)?);
    }
    unique(&apps)?;
    Ok(apps.into_iter().map(|(app, _)| app).collect())
}

/// The applications of `applicationsDir`, with where each names itself.
fn from_dir(src: &Source<'_>, dir: &Spanned<String>) -> Result<Vec<Located>, ConfigError> {
    let path = src.dir().join(&dir.value);
    let entries = std::fs::read_dir(&path).map_err(|e| {
        src.err(
            dir,
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
    let mut apps = Vec::new();
    for file in files {
        let text = read_text(&file)?;
        if super::oam::is_oam(&text) {
            apps.push(super::oam::application(&file, &text)?);
            continue;
        }
        let raw: Spanned<RawApplication> = from_yaml(&file, &text)?;
        let app = application(&Source::new(&file), &raw.value, "")?;
        apps.push((app, position(&raw.value.name)));
    }
    Ok(apps)
}

/// No two applications have one name or one host, and those that share a namespace agree on
/// whether it exists already; the error is at the later one's name.
fn unique(apps: &[Located]) -> Result<(), ConfigError> {
    for (i, (a, at)) in apps.iter().enumerate() {
        for (b, _) in &apps[..i] {
            let err = |message: String| Source::new(&a.source).err_at(*at, "name", message);
            if a.name == b.name {
                return Err(err(format!(
                    "application `{}` is defined twice (also in {})",
                    a.name,
                    b.source.display()
                )));
            }
            if a.namespace == b.namespace && a.existing != b.existing {
                return Err(err(format!(
                    "applications `{}` and `{}` share namespace `{}`, but only one says `existing: true`: say it in both or in neither",
                    b.name, a.name, a.namespace
                )));
            }
            if let Some(h) = a.hosts.iter().find(|h| b.hosts.contains(h)) {
                return Err(err(format!(
                    "application `{}`: host `{h}` is also a host of application `{}`",
                    a.name, b.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::testing::{parse_err, parse_ok};
    use crate::config::{PathMatch, PathType, parse};

    const ORDERS: &str = "  - name: orders\n    namespace: shop\n    ports: [8080]\n    hosts: [Orders.Shop.example.com., orders.shop.example.com]\n    affinity: {cookie: {name: orders, ttl: 60s}}\n    rules:\n      - paths: [{path: /api, type: prefix}, {path: /health}]\n        destination: {host: orders, port: 8080}\n        authorization: {requestPrincipals: ['*']}\n      - destination: {host: orders, port: 8080}\n";

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
