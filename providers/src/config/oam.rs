//! Applications described as Verrazzano's users describe them: an OAM `ApplicationConfiguration`
//! (`core.oam.dev/v1alpha2`) whose component carries an `IngressTrait`
//! (`oam.verrazzano.io/v1alpha1`), in a file of `applicationsDir:` (with its `Component`s and
//! anything else in other documents of the file, which `vz` leaves alone).
//!
//! The trait maps onto `vz`'s own application ([`Application`]):
//!
//! | OAM | `vz` |
//! |---|---|
//! | `metadata.name`, `metadata.namespace` of the ApplicationConfiguration | `name`, `namespace` (the namespace is the user's: `existing: true`) |
//! | `rules[].hosts` (the same in every rule that names any) | `hosts` |
//! | `rules[].paths[]` (`path`, `pathType`), `rules[].destination` (`host`, `port`) | one rule per path, to that destination; `ports` are the destinations' |
//! | `paths[].authorizationPolicy.rules[].from.requestPrincipals` | that path's rule's `authorization` (the principals of every policy rule) |
//! | `destination.httpCookie` (`name`, `ttl` in seconds; one cookie for the application) | `affinity.cookie` |
//! | `tls.secretName` | `tls.secretName` |
//!
//! What `vz` cannot carry over is an error at its line, never dropped: a destination without its
//! Service or port (Verrazzano's operator looks the workload's Service up in the cluster; name it),
//! an authorization rule with `when` conditions, a cookie path other than `/`, rules with different
//! hosts, more than one IngressTrait, an unknown field. Traits of other kinds (metrics, logging)
//! are not networking and are left to Verrazzano's operator.
//!
//! An OAM trait is a resource embedded in the ApplicationConfiguration, of any kind: a first pass
//! reads only the kinds of the traits ([`Head`]), and each IngressTrait is then read strictly from
//! its own lines of the file ([`trait_text`]), so that its errors point into the file.

use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::applications::{self, App, Application, Cookie};
use super::checks::check_dns_label;
use super::errors::Source;
use super::rules::{Authorization, Destination, PathMatch, PathType, Rule};
use super::yaml::{first_line, from_yaml};

/// The API version of an ApplicationConfiguration.
pub const APPLICATION_CONFIGURATION_API: &str = "core.oam.dev/v1alpha2";
/// The API version of an IngressTrait.
pub const INGRESS_TRAIT_API: &str = "oam.verrazzano.io/v1alpha1";

/// Any document's kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    api_version: Option<String>,
    kind: Option<String>,
}

/// Whether `text` (all its documents) holds an ApplicationConfiguration. A text whose documents
/// cannot even be read as mappings is not: the caller reads it as `vz`'s own, which says why.
pub(super) fn is_oam(text: &str) -> bool {
    serde_saphyr::from_multiple::<Kind>(text).is_ok_and(|docs| {
        docs.iter().any(|d| {
            d.kind.as_deref() == Some("ApplicationConfiguration")
                && d.api_version
                    .as_deref()
                    .is_some_and(|v| v.starts_with("core.oam.dev/"))
        })
    })
}

/// A document as the first pass reads it: only where its traits are and of what kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Spanned<HeadMeta>>,
    spec: Option<HeadSpec>,
}

#[derive(Deserialize)]
struct HeadMeta {
    name: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct HeadSpec {
    #[serde(default)]
    components: Vec<HeadComponent>,
}

#[derive(Deserialize)]
struct HeadComponent {
    #[serde(default)]
    traits: Vec<HeadTrait>,
}

#[derive(Deserialize)]
struct HeadTrait {
    #[serde(rename = "trait")]
    of: Option<Spanned<TraitKind>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraitKind {
    api_version: Option<String>,
    kind: Option<String>,
}

/// An IngressTrait, read strictly.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIngressTrait {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: Option<IgnoredAny>,
    #[serde(default)]
    spec: RawIngressSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIngressSpec {
    #[serde(default)]
    rules: Vec<Spanned<RawOamRule>>,
    tls: Option<Spanned<RawOamTls>>,
    /// Verrazzano's operator fills it in; nothing of it is networking.
    #[allow(dead_code)]
    workload_ref: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOamRule {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    paths: Vec<Spanned<RawOamPath>>,
    destination: Option<Spanned<RawOamDestination>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOamPath {
    path: Option<Spanned<String>>,
    path_type: Option<Spanned<String>>,
    authorization_policy: Option<Spanned<RawOamPolicy>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOamPolicy {
    #[serde(default)]
    rules: Vec<Spanned<RawOamPolicyRule>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOamPolicyRule {
    from: Option<Spanned<RawOamFrom>>,
    #[serde(default)]
    when: Vec<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOamFrom {
    #[serde(default)]
    request_principals: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOamDestination {
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    http_cookie: Option<Spanned<RawHttpCookie>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHttpCookie {
    name: Spanned<String>,
    path: Option<Spanned<String>>,
    ttl: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOamTls {
    secret_name: Spanned<String>,
}

/// The application of the ApplicationConfiguration in `text` (the file `file`), with where its
/// name is.
pub(super) fn application(
    file: &Path,
    text: &str,
) -> Result<(Application, (u64, u64)), ConfigError> {
    let src = Source::new(file);
    let docs: Vec<Head> = serde_saphyr::from_multiple(text).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
        field: None,
        message: first_line(&e.to_string()),
    })?;
    let configs: Vec<&Head> = docs
        .iter()
        .filter(|d| {
            d.kind.as_deref() == Some("ApplicationConfiguration")
                && d.api_version.as_deref() == Some(APPLICATION_CONFIGURATION_API)
        })
        .collect();
    let [config] = configs[..] else {
        return Err(src.unlocated(
            "kind",
            format!(
                "a file of applicationsDir holds one ApplicationConfiguration ({APPLICATION_CONFIGURATION_API}); this one holds {}",
                configs.len()
            ),
        ));
    };
    let meta = config.metadata.as_ref().ok_or_else(|| {
        src.unlocated(
            "metadata",
            "the ApplicationConfiguration has no metadata: it needs a name and a namespace",
        )
    })?;
    let name = meta.value.name.as_ref().ok_or_else(|| {
        src.err(
            meta,
            "metadata.name",
            "the ApplicationConfiguration has no name",
        )
    })?;
    check_dns_label(&name.value).map_err(|m| src.err(name, "metadata.name", m))?;
    let app = App {
        src: &src,
        at: "",
        name: &name.value,
    };
    let namespace = meta.value.namespace.as_ref().ok_or_else(|| {
        src.err(
            meta,
            "metadata.namespace",
            format!(
                "application `{}`: an ApplicationConfiguration for vz names its namespace",
                name.value
            ),
        )
    })?;
    let namespace = applications::namespace(&app, namespace)?;

    let mut traits = Vec::new();
    for (c, component) in config
        .spec
        .iter()
        .flat_map(|s| s.components.iter())
        .enumerate()
    {
        for (t, tr) in component.traits.iter().enumerate() {
            let Some(of) = &tr.of else { continue };
            let ingress = of.value.kind.as_deref() == Some("IngressTrait")
                && of.value.api_version.as_deref() == Some(INGRESS_TRAIT_API);
            if ingress {
                traits.push((format!("spec.components[{c}].traits[{t}].trait"), of));
            }
        }
    }
    let (at, of) = match &traits[..] {
        [] => {
            return Err(src.err(
                name,
                "spec.components",
                format!(
                    "application `{}`: no component has an IngressTrait ({INGRESS_TRAIT_API}): vz has nothing to route",
                    name.value
                ),
            ));
        }
        [one] => one,
        [_, (at, second), ..] => {
            return Err(src.err(
                second,
                at,
                format!(
                    "application `{}`: vz routes one IngressTrait per ApplicationConfiguration; split the application in two",
                    name.value
                ),
            ));
        }
    };
    let (trait_src, offset) = trait_text(text, of.referenced.line(), of.referenced.column());
    let raw: RawIngressTrait = from_yaml(file, &trait_src).map_err(|mut e| {
        e.line = e.line.map(|l| l + offset);
        // The trait's fields, under the trait's path (an unknown key names itself).
        e.field = Some(e.field.map_or_else(|| at.clone(), |f| format!("{at}.{f}")));
        e
    })?;
    let field = |f: &str| format!("{at}.spec.{f}");
    let located = |mut e: ConfigError| {
        e.line = e.line.map(|l| l + offset);
        e
    };
    let mapped = map(&app, &raw.spec, &field).map_err(located)?;
    Ok((
        Application {
            name: name.value.clone(),
            namespace,
            existing: true,
            service_account: name.value.clone(),
            selector: [("app".to_string(), name.value.clone())]
                .into_iter()
                .collect(),
            ports: mapped.ports,
            hosts: mapped.hosts,
            tls_secret: mapped.tls_secret,
            dns: true,
            affinity: mapped.affinity,
            rules: mapped.rules,
            source: file.to_path_buf(),
            oam: true,
        },
        (name.referenced.line(), name.referenced.column()),
    ))
}

/// The text of the mapping that starts at `line`, `column` (from 1) of `text`, indented as it is
/// in the file, and how many lines of the file come before it. A block mapping runs until the
/// first line indented less than it; a flow mapping (`{...}`) is that line's rest and what is
/// indented deeper.
fn trait_text(text: &str, line: u64, column: u64) -> (String, u64) {
    let start = usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX);
    let indent = usize::try_from(column.saturating_sub(1)).unwrap_or_default();
    let mut lines = text.lines().skip(start);
    let mut out = String::new();
    if let Some(first) = lines.next() {
        let rest = first.get(indent..).unwrap_or_default();
        out.push_str(&" ".repeat(indent));
        out.push_str(rest);
        out.push('\n');
    }
    for l in lines {
        let blank = l.trim().is_empty() || l.trim_start().starts_with('#');
        let deeper = l.len() - l.trim_start_matches(' ').len() >= indent;
        if !blank && !deeper || l.starts_with("---") {
            break;
        }
        out.push_str(l);
        out.push('\n');
    }
    (out, line.saturating_sub(1))
}

/// What an IngressTrait's spec maps to.
struct Mapped {
    hosts: Vec<String>,
    ports: Vec<u16>,
    rules: Vec<Rule>,
    tls_secret: Option<String>,
    affinity: Option<Cookie>,
}

/// Map an IngressTrait's `spec` (its fields named by `field`) onto `vz`'s application.
fn map(
    app: &App<'_>,
    spec: &RawIngressSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<Mapped, ConfigError> {
    let err = |at: (u64, u64), f: String, message: String| {
        app.src
            .err_at(at, &f, format!("application `{}`: {message}", app.name))
    };
    // Hosts: every rule that names any names the same.
    let mut hosts: Option<(Vec<String>, usize)> = None;
    for (r, rule) in spec.rules.iter().enumerate() {
        if rule.value.hosts.is_empty() {
            continue;
        }
        let these = applications::hosts(
            &App {
                src: app.src,
                at: &field(&format!("rules[{r}]")),
                name: app.name,
            },
            &rule.value.hosts,
        )?;
        match &hosts {
            None => hosts = Some((these, r)),
            Some((first, at)) if !same_set(first, &these) => {
                return Err(err(
                    pos(&rule.value.hosts[0]),
                    field(&format!("rules[{r}].hosts")),
                    format!(
                        "vz routes every rule of an application for all of its hosts, and rule {} names other hosts than rule {}: give them the same hosts, or split the application",
                        r + 1,
                        at + 1
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let mut ports: Vec<u16> = Vec::new();
    let mut rules = Vec::new();
    let mut affinity: Option<(Cookie, String)> = None;
    for (r, rule) in spec.rules.iter().enumerate() {
        let f = |s: &str| field(&format!("rules[{r}].{s}"));
        let Some(dest) = &rule.value.destination else {
            return Err(err(
                pos(rule),
                f("destination"),
                "the rule has no destination: vz routes to a Service it is told of (name `destination.host` and `destination.port`)".into(),
            ));
        };
        let host = dest.value.host.as_ref().ok_or_else(|| {
            err(
                pos(dest),
                f("destination.host"),
                "no `destination.host`: Verrazzano's operator picks the workload's Service from the cluster; vz plans without it, so name the Service".into(),
            )
        })?;
        check_dns_label(&host.value).map_err(|m| err(pos(host), f("destination.host"), m))?;
        let port = dest
            .value
            .port
            .as_ref()
            .filter(|p| p.value != 0)
            .ok_or_else(|| {
                err(
                    pos(dest),
                    f("destination.port"),
                    "no `destination.port`: vz routes to a port it is told of".into(),
                )
            })?;
        if !ports.contains(&port.value) {
            ports.push(port.value);
        }
        if let Some(c) = &dest.value.http_cookie {
            let cookie = cookie(app, c, &f("destination.httpCookie"))?;
            match &affinity {
                Some((first, at)) if *first != cookie => {
                    return Err(err(
                        pos(c),
                        f("destination.httpCookie"),
                        format!(
                            "vz gives an application one session cookie, and this one differs from {at}'s"
                        ),
                    ));
                }
                Some(_) => {}
                None => affinity = Some((cookie, f("destination.httpCookie"))),
            }
        }
        let destination = Destination {
            host: host.value.clone(),
            port: port.value,
        };
        if rule.value.paths.is_empty() {
            rules.push(Rule {
                paths: vec![],
                destination,
                authorization: None,
            });
            continue;
        }
        // One rule per path: each path has a policy of its own.
        for (p, path) in rule.value.paths.iter().enumerate() {
            let pf = |s: &str| f(&format!("paths[{p}].{s}"));
            let text = path.value.path.as_ref().map_or("/", |s| s.value.as_str());
            let kind = match &path.value.path_type {
                None if text == "/" => PathType::Prefix,
                None => PathType::Exact,
                Some(t) => match t.value.to_ascii_lowercase().as_str() {
                    "prefix" => PathType::Prefix,
                    "exact" => PathType::Exact,
                    "regex" => PathType::Regex,
                    other => {
                        return Err(err(
                            pos(t),
                            pf("pathType"),
                            format!("`{other}` is not a path type: prefix, exact or regex"),
                        ));
                    }
                },
            };
            if kind != PathType::Regex && !text.starts_with('/') {
                let at = path.value.path.as_ref().map_or(pos(path), pos);
                return Err(err(
                    at,
                    pf("path"),
                    format!("`{text}` does not start with `/`"),
                ));
            }
            let authorization = match &path.value.authorization_policy {
                None => None,
                Some(policy) => Some(principals(app, policy, kind, &pf("authorizationPolicy"))?),
            };
            rules.push(Rule {
                paths: vec![PathMatch {
                    path: text.to_string(),
                    kind,
                }],
                destination: destination.clone(),
                authorization,
            });
        }
    }
    let tls_secret = match &spec.tls {
        Some(t) => Some(
            app.src
                .checked(&t.value.secret_name, &field("tls.secretName"), |s| {
                    super::checks::check_dns_name(s)
                })?,
        ),
        None => None,
    };
    Ok(Mapped {
        hosts: hosts.map(|(h, _)| h).unwrap_or_default(),
        ports,
        rules,
        tls_secret,
        affinity: affinity.map(|(c, _)| c),
    })
}

/// The request principals of a path's `authorizationPolicy`: those of every rule, which must all
/// say `from` and none `when`.
fn principals(
    app: &App<'_>,
    policy: &Spanned<RawOamPolicy>,
    kind: PathType,
    f: &str,
) -> Result<Authorization, ConfigError> {
    let err = |at: (u64, u64), field: String, message: &str| {
        app.src
            .err_at(at, &field, format!("application `{}`: {message}", app.name))
    };
    if kind == PathType::Regex {
        return Err(err(
            pos(policy),
            f.to_string(),
            "an authorization policy matches paths by prefix or exactly, not by a regular expression",
        ));
    }
    let mut principals: Vec<String> = Vec::new();
    for (i, rule) in policy.value.rules.iter().enumerate() {
        if let Some(w) = rule.value.when.first() {
            return Err(err(
                pos(w),
                format!("{f}.rules[{i}].when"),
                "vz does not carry `when` conditions over: its policies admit request principals only",
            ));
        }
        let Some(from) = &rule.value.from else {
            return Err(err(
                pos(rule),
                format!("{f}.rules[{i}].from"),
                "the policy rule says no `from` (requestPrincipals)",
            ));
        };
        for p in &from.value.request_principals {
            if !principals.contains(p) {
                principals.push(p.clone());
            }
        }
    }
    if principals.is_empty() {
        return Err(err(
            pos(policy),
            format!("{f}.rules"),
            "the policy names no request principal (`*` for any validated token)",
        ));
    }
    Ok(Authorization {
        request_principals: principals,
    })
}

/// A destination's `httpCookie`: its name, `ttl` seconds, and no path but `/`.
fn cookie(app: &App<'_>, c: &Spanned<RawHttpCookie>, f: &str) -> Result<Cookie, ConfigError> {
    let says = |m: String| format!("application `{}`: {m}", app.name);
    if let Some(p) = &c.value.path
        && p.value != "/"
    {
        return Err(app.src.err(
            p,
            &format!("{f}.path"),
            says(format!(
                "vz's session cookie is for the whole application; a cookie path (`{}`) is not carried over",
                p.value
            )),
        ));
    }
    let name = &c.value.name.value;
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return Err(app.src.err(
            &c.value.name,
            &format!("{f}.name"),
            says(format!("`{name}` is not a cookie name")),
        ));
    }
    let ttl = match &c.value.ttl {
        Some(t) if t.value < 0 => {
            return Err(app.src.err(
                t,
                &format!("{f}.ttl"),
                says(format!("{} is not a number of seconds", t.value)),
            ));
        }
        Some(t) => format!("{}s", t.value),
        None => "0s".to_string(),
    };
    Ok(Cookie {
        name: name.clone(),
        ttl,
    })
}

/// Where a value is: line and column.
fn pos<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn read(text: &str) -> Result<Application, ConfigError> {
        application(Path::new("/apps/orders.yaml"), text).map(|(a, _)| a)
    }

    #[test]
    fn the_oam_example_is_its_vz_twin() {
        let oam_file = repo().join("examples/oam/orders.yaml");
        let text = std::fs::read_to_string(&oam_file).expect("example");
        assert!(is_oam(&text));
        let (oam, _) = application(&oam_file, &text).expect("OAM application");
        let vz_file = repo().join("examples/apps/orders.yaml");
        let vz_text = std::fs::read_to_string(&vz_file).expect("example") + "existing: true\n";
        let dir = tempfile::tempdir().expect("temp dir");
        let twin = dir.path().join("orders.yaml");
        std::fs::write(&twin, vz_text).expect("write");
        let platform = super::super::parse(&dir.path().join("vz.yaml"), "applicationsDir: .\n")
            .expect("platform");
        let mut vz = platform.applications[0].clone();
        vz.source = oam.source.clone();
        // What `vz watch` knows them apart by.
        assert!(oam.oam && !vz.oam);
        vz.oam = true;
        assert_eq!(oam, vz);
    }

    const HEAD: &str = "apiVersion: core.oam.dev/v1alpha2\nkind: ApplicationConfiguration\nmetadata: {name: orders, namespace: shop}\nspec:\n  components:\n    - componentName: api\n      traits:\n        - trait:\n            apiVersion: oam.verrazzano.io/v1alpha1\n            kind: IngressTrait\n            spec:\n";

    #[test]
    fn what_vz_cannot_carry_over_is_an_error_at_its_line() {
        let cases = [
            (
                "              rules:\n                - destination: {host: api}\n",
                13,
                "spec.components[0].traits[0].trait.spec.rules[0].destination.port",
                "no `destination.port`",
            ),
            (
                "              rules:\n                - paths:\n                    - path: /x\n                      authorizationPolicy:\n                        rules:\n                          - from: {requestPrincipals: ['*']}\n                            when: [{key: 'request.auth.claims[groups]', values: [admin]}]\n                  destination: {host: api, port: 80}\n",
                18,
                "spec.components[0].traits[0].trait.spec.rules[0].paths[0].authorizationPolicy.rules[0].when",
                "`when` conditions",
            ),
            (
                "              rules:\n                - hosts: [a.example.com]\n                  destination: {host: api, port: 80}\n                - hosts: [b.example.com]\n                  destination: {host: api, port: 80}\n",
                15,
                "spec.components[0].traits[0].trait.spec.rules[1].hosts",
                "other hosts than rule 1",
            ),
            (
                "              rules:\n                - destination: {host: api, port: 80}\n              backends: []\n",
                14,
                "spec.components[0].traits[0].trait",
                "unknown field `backends`",
            ),
        ];
        for (spec, line, field, says) in cases {
            let e = read(&format!("{HEAD}{spec}")).expect_err(says);
            assert_eq!(e.line, Some(line), "{says}: {e:?}");
            assert!(e.message.contains(says), "{says}: {}", e.message);
            assert!(
                e.field.as_deref().is_some_and(|f| f.starts_with(field)),
                "{says}: {:?}",
                e.field
            );
        }
    }

    #[test]
    fn two_ingress_traits_or_none_are_refused() {
        let two = format!(
            "{HEAD}              rules: [{{destination: {{host: api, port: 80}}}}]\n        - trait:\n            apiVersion: oam.verrazzano.io/v1alpha1\n            kind: IngressTrait\n            spec: {{}}\n"
        );
        let e = read(&two).expect_err("two traits");
        assert!(
            e.message
                .contains("one IngressTrait per ApplicationConfiguration"),
            "{}",
            e.message
        );
        assert_eq!(e.line, Some(14));
        let none = "apiVersion: core.oam.dev/v1alpha2\nkind: ApplicationConfiguration\nmetadata: {name: orders, namespace: shop}\nspec: {components: [{componentName: api}]}\n";
        let e = read(none).expect_err("no trait");
        assert!(
            e.message.contains("no component has an IngressTrait"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_cookie_and_principals_carry_over() {
        let app = read(&format!(
            "{HEAD}              tls: {{secretName: orders-cert}}\n              rules:\n                - paths:\n                    - path: /admin\n                      authorizationPolicy:\n                        rules:\n                          - from: {{requestPrincipals: [https://idp/alice]}}\n                          - from: {{requestPrincipals: [https://idp/bob]}}\n                  destination:\n                    host: api\n                    port: 8080\n                    httpCookie: {{name: session, path: /, ttl: 60}}\n"
        ))
        .expect("application");
        assert_eq!(app.tls_secret.as_deref(), Some("orders-cert"));
        assert_eq!(app.ports, [8080]);
        assert_eq!(
            app.affinity,
            Some(Cookie {
                name: "session".into(),
                ttl: "60s".into()
            })
        );
        assert_eq!(
            app.rules[0].authorization,
            Some(Authorization {
                request_principals: vec!["https://idp/alice".into(), "https://idp/bob".into()]
            })
        );
        assert_eq!(app.rules[0].paths[0].kind, PathType::Exact);
        assert!(app.existing);
    }
}
