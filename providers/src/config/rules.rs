//! The rules of an application: the paths each matches, the Service it routes them to, and who
//! may call them.
//!
//! The file's rules ([`RawRule`], [`RawPath`], [`RawDestination`]) and the validated [`Rule`]s
//! are two types, since each path gets its match type and the file's keep the line and column of
//! every value an error can be about; [`Authorization`] is one type (no error is about one of its
//! principals).

use std::fmt::Display;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;
use super::applications::App;
use super::checks::check_dns_label;

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
///
/// Read from the file as it is (`authorization:` of a rule); the serde name and the empty schema
/// descriptions are those of the file type it replaces, so that the schema and the parser's
/// messages stay as they were.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(
    rename = "RawAuthorization",
    rename_all = "camelCase",
    deny_unknown_fields
)]
#[schemars(description = "")]
pub struct Authorization {
    /// The request principals (`<issuer>/<subject>` of a validated JWT) allowed; `*` for any.
    #[schemars(description = "")]
    pub request_principals: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawRule {
    /// The paths it matches (none: every path).
    #[serde(default)]
    #[schemars(with = "Vec<RawPath>")]
    paths: Vec<Spanned<RawPath>>,
    /// The Service requests go to.
    #[schemars(with = "RawDestination")]
    destination: Spanned<RawDestination>,
    /// Only requests with one of these request principals (validated JWTs) reach these paths.
    #[schemars(with = "Option<Authorization>")]
    authorization: Option<Spanned<Authorization>>,
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

impl App<'_> {
    /// An error at `value`, field `f` of its rule `r` (from 0), said of the application and rule.
    fn rule_err<T>(
        &self,
        r: usize,
        value: &Spanned<T>,
        f: &str,
        message: impl Display,
    ) -> ConfigError {
        let (name, n) = (self.name, r + 1);
        self.src.err(
            value,
            &self.field(&format!("rules[{r}].{f}")),
            format!("application `{name}`, rule {n}: {message}"),
        )
    }
}

/// Rule `r` (from 0) of the application, which serves `ports`.
pub(super) fn rule(
    app: &App<'_>,
    r: usize,
    raw: &RawRule,
    ports: &[u16],
) -> Result<Rule, ConfigError> {
    let paths: Vec<PathMatch> = raw
        .paths
        .iter()
        .enumerate()
        .map(|(p, path)| path_match(app, r, p, &path.value))
        .collect::<Result<_, _>>()?;
    let destination = destination(app, r, &raw.destination.value, ports)?;
    let regex = paths.iter().any(|p| p.kind == PathType::Regex);
    let authorization = match &raw.authorization {
        Some(a) if regex => {
            return Err(app.rule_err(
                r,
                a,
                "authorization",
                "an authorization policy matches paths by prefix or exactly, not by a regular expression: split the rule",
            ));
        }
        Some(a) if a.value.request_principals.is_empty() => {
            return Err(app.rule_err(
                r,
                a,
                "authorization.requestPrincipals",
                "name at least one principal (`*` for any validated token)",
            ));
        }
        Some(a) => Some(a.value.clone()),
        None => None,
    };
    Ok(Rule {
        paths,
        destination,
        authorization,
    })
}

/// Path `p` of rule `r`: its match type (prefix for `/`, else exact, unless set), and a path that
/// starts with `/` unless it is a regular expression.
fn path_match(app: &App<'_>, r: usize, p: usize, raw: &RawPath) -> Result<PathMatch, ConfigError> {
    let path = &raw.path;
    let kind = raw.kind.unwrap_or(if path.value == "/" {
        PathType::Prefix
    } else {
        PathType::Exact
    });
    let f = format!("paths[{p}].path");
    if kind != PathType::Regex && !path.value.starts_with('/') {
        return Err(app.rule_err(
            r,
            path,
            &f,
            format!("`{}` does not start with `/`", path.value),
        ));
    }
    if kind == PathType::Regex && path.value.is_empty() {
        return Err(app.rule_err(r, path, &f, "an empty regular expression"));
    }
    Ok(PathMatch {
        path: path.value.clone(),
        kind,
    })
}

/// The destination of rule `r`: a Service of the application's namespace, on one of `ports`.
fn destination(
    app: &App<'_>,
    r: usize,
    raw: &RawDestination,
    ports: &[u16],
) -> Result<Destination, ConfigError> {
    check_dns_label(&raw.host.value)
        .map_err(|m| app.rule_err(r, &raw.host, "destination.host", m))?;
    if !ports.contains(&raw.port.value) {
        let declared = match ports {
            [] => "it declares none: list them in `ports:`".to_string(),
            p => format!(
                "it declares {}",
                p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        return Err(app.rule_err(
            r,
            &raw.port,
            "destination.port",
            format!(
                "port {} is not a port of the application ({declared})",
                raw.port.value
            ),
        ));
    }
    Ok(Destination {
        host: raw.host.value.clone(),
        port: raw.port.value,
    })
}
