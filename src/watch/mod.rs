//! What `vz watch` decides, from what the cluster shows: which applications have ended, which
//! ApplicationConfigurations it must hold until their application's objects are gone, and which it
//! must let go. Pure, so that every rule is tested without a cluster; the loop that reads the
//! cluster and runs the destroys is [`crate::commands::watch`].
//!
//! An application the state records has ended when:
//! - its namespace is gone, or being deleted;
//! - its namespace, or its ApplicationConfiguration, carries the annotation
//!   [`TERMINATED_ANNOTATION`]`: "true"`;
//! - it was read from an OAM ApplicationConfiguration and that object is being deleted. `vz watch`
//!   puts its finalizer ([`finalizer`]) on the ApplicationConfiguration of every such application
//!   it manages, so that a deletion made while it was not running is still seen when it starts;
//! - the state says it ended and still records objects of it (a destroy that did not finish).

pub mod deployment;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use vz_state::{State, Terminated};

/// The annotation that marks an application (on its namespace: every application in it) as
/// finished.
pub const TERMINATED_ANNOTATION: &str = "vz.dev/terminated";

/// The finalizer `vz watch` holds ApplicationConfigurations with: one per platform, so that the
/// watches of two platforms sharing a cluster leave each other's alone.
pub fn finalizer(platform: &str) -> String {
    format!("networking.vz.dev/{platform}")
}

/// What the cluster shows of a namespace or an ApplicationConfiguration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seen {
    /// It has a `deletionTimestamp`.
    pub deleting: bool,
    /// It carries [`TERMINATED_ANNOTATION`]`: "true"`.
    pub marked: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
    /// Its `resourceVersion` (a finalizer change is made against it).
    pub resource_version: String,
}

impl Seen {
    /// What an object's (or its metadata's) JSON shows.
    pub fn of(obj: &Value) -> Seen {
        let meta = &obj["metadata"];
        Seen {
            deleting: !meta["deletionTimestamp"].is_null(),
            marked: meta["annotations"][TERMINATED_ANNOTATION].as_str() == Some("true"),
            finalizers: meta["finalizers"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            resource_version: meta["resourceVersion"].as_str().unwrap_or("").to_string(),
        }
    }
}

/// An application the state records objects of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its name.
    pub name: String,
    /// Its namespace (`None` when neither the configuration nor the state tells it).
    pub namespace: Option<String>,
    /// The configuration reads it from an OAM ApplicationConfiguration.
    pub oam: bool,
}

/// The applications `state` records objects of; their namespace and form from `configured`
/// (name → namespace, read from OAM), else from the objects recorded in their namespace.
pub fn recorded(state: &State, configured: &HashMap<String, (String, bool)>) -> Vec<Recorded> {
    let mut apps: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for r in &state.objects {
        let Some(name) = r.step.strip_prefix(vz_providers::applications::STEP_PREFIX) else {
            continue;
        };
        let entry = apps.entry(name).or_default();
        // Its certificate and a policy per rule are in istio-system; the rest in its own.
        let ns = r.namespace.as_deref();
        if entry.is_none() && ns != Some(vz_providers::names::ISTIO_SYSTEM) {
            entry.clone_from(&r.namespace);
        }
    }
    apps.into_iter()
        .map(|(name, from_state)| {
            let (namespace, oam) = match configured.get(name) {
                Some((ns, oam)) => (Some(ns.clone()), *oam),
                None => (from_state, false),
            };
            Recorded {
                name: name.to_string(),
                namespace,
                oam,
            }
        })
        .collect()
}

/// What the cluster shows, read once per check.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Every namespace, by name.
    pub namespaces: HashMap<String, Seen>,
    /// Every ApplicationConfiguration, by namespace and name; `None` when the kind is not served
    /// (or was not read: no application comes from OAM).
    pub configurations: Option<HashMap<(String, String), Seen>>,
}

impl Observed {
    /// The ApplicationConfiguration of `app` (of its name, in its namespace), when seen.
    pub fn configuration(&self, app: &Recorded) -> Option<&Seen> {
        let ns = app.namespace.clone()?;
        self.configurations.as_ref()?.get(&(ns, app.name.clone()))
    }
}

/// What to do about one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It goes on.
    Live,
    /// It goes on; put the finalizer on its ApplicationConfiguration.
    Hold,
    /// It ended, for this reason: destroy it.
    Ended(String),
}

/// The verdict on `app`, which `ended` says (when `Some`) the state already found ended.
pub fn verdict(app: &Recorded, ended: Option<&Terminated>, seen: &Observed, fin: &str) -> Verdict {
    if let Some(t) = ended {
        return Verdict::Ended(format!(
            "{} (seen at {}; its destroy had not finished)",
            t.reason, t.at
        ));
    }
    let Some(ns) = &app.namespace else {
        return Verdict::Live;
    };
    match seen.namespaces.get(ns) {
        None => return Verdict::Ended(format!("namespace {ns} was deleted")),
        Some(n) if n.deleting => return Verdict::Ended(format!("namespace {ns} is being deleted")),
        Some(n) if n.marked => {
            return Verdict::Ended(format!(
                "namespace {ns} is annotated {TERMINATED_ANNOTATION}=true"
            ));
        }
        Some(_) => {}
    }
    if !app.oam {
        return Verdict::Live;
    }
    match seen.configuration(app) {
        None => Verdict::Live,
        Some(c) if c.deleting => Verdict::Ended(format!(
            "ApplicationConfiguration {ns}/{} was deleted",
            app.name
        )),
        Some(c) if c.marked => Verdict::Ended(format!(
            "ApplicationConfiguration {ns}/{} is annotated {TERMINATED_ANNOTATION}=true",
            app.name
        )),
        Some(c) if !c.finalizers.iter().any(|f| f == fin) => Verdict::Hold,
        Some(_) => Verdict::Live,
    }
}

/// The ApplicationConfigurations holding finalizer `fin` that no application `held` (those `vz
/// watch` keeps) answers for: an application no longer recorded or no longer read from OAM.
pub fn to_release<'a>(
    seen: &'a Observed,
    held: &[&Recorded],
    fin: &str,
) -> Vec<&'a (String, String)> {
    let Some(configs) = &seen.configurations else {
        return Vec::new();
    };
    let mut out: Vec<&(String, String)> = configs
        .iter()
        .filter(|(_, c)| c.finalizers.iter().any(|f| f == fin))
        .filter(|((ns, name), _)| {
            !held
                .iter()
                .any(|a| a.oam && &a.name == name && a.namespace.as_ref() == Some(ns))
        })
        .map(|(k, _)| k)
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIN: &str = "networking.vz.dev/prod";

    fn app(oam: bool) -> Recorded {
        Recorded {
            name: "orders".into(),
            namespace: Some("shop".into()),
            oam,
        }
    }

    fn live_ns() -> Observed {
        let mut seen = Observed::default();
        seen.namespaces.insert("shop".into(), Seen::default());
        seen
    }

    fn with_config(mut seen: Observed, c: Seen) -> Observed {
        let mut configs = HashMap::new();
        configs.insert(("shop".to_string(), "orders".to_string()), c);
        seen.configurations = Some(configs);
        seen
    }

    fn held() -> Seen {
        Seen {
            finalizers: vec![FIN.into()],
            ..Seen::default()
        }
    }

    #[test]
    fn an_application_whose_namespace_is_there_and_unmarked_goes_on() {
        assert_eq!(verdict(&app(false), None, &live_ns(), FIN), Verdict::Live);
    }

    #[test]
    fn a_deleted_or_deleting_namespace_ends_its_application() {
        let gone = Observed::default();
        assert_eq!(
            verdict(&app(false), None, &gone, FIN),
            Verdict::Ended("namespace shop was deleted".into())
        );
        let mut deleting = live_ns();
        deleting.namespaces.insert(
            "shop".into(),
            Seen::of(&json!({"metadata": {"deletionTimestamp": "2026-12-07T10:00:00Z"}})),
        );
        assert_eq!(
            verdict(&app(false), None, &deleting, FIN),
            Verdict::Ended("namespace shop is being deleted".into())
        );
    }

    #[test]
    fn the_annotation_on_the_namespace_or_the_configuration_ends_it_and_only_true_counts() {
        let mut marked = live_ns();
        marked.namespaces.insert(
            "shop".into(),
            Seen::of(&json!({"metadata": {"annotations": {TERMINATED_ANNOTATION: "true"}}})),
        );
        assert!(matches!(
            verdict(&app(false), None, &marked, FIN),
            Verdict::Ended(r) if r.contains("annotated vz.dev/terminated=true")
        ));
        let not_true =
            Seen::of(&json!({"metadata": {"annotations": {TERMINATED_ANNOTATION: "yes"}}}));
        assert!(!not_true.marked);
        let config = Seen {
            marked: true,
            ..held()
        };
        assert!(matches!(
            verdict(&app(true), None, &with_config(live_ns(), config), FIN),
            Verdict::Ended(r) if r.starts_with("ApplicationConfiguration shop/orders is annotated")
        ));
    }

    #[test]
    fn an_oam_application_is_held_by_the_finalizer_and_ends_when_its_configuration_is_deleted() {
        let bare = with_config(live_ns(), Seen::default());
        assert_eq!(verdict(&app(true), None, &bare, FIN), Verdict::Hold);
        let other_platform = Seen {
            finalizers: vec!["networking.vz.dev/staging".into()],
            ..Seen::default()
        };
        assert_eq!(
            verdict(
                &app(true),
                None,
                &with_config(live_ns(), other_platform),
                FIN
            ),
            Verdict::Hold
        );
        assert_eq!(
            verdict(&app(true), None, &with_config(live_ns(), held()), FIN),
            Verdict::Live
        );
        let deleting = Seen {
            deleting: true,
            ..held()
        };
        assert_eq!(
            verdict(&app(true), None, &with_config(live_ns(), deleting), FIN),
            Verdict::Ended("ApplicationConfiguration shop/orders was deleted".into())
        );
    }

    #[test]
    fn a_configuration_never_seen_or_an_application_not_from_oam_is_not_an_end() {
        // Absent: it may never have been applied to the cluster (the file alone is vz's input).
        let none = with_config(live_ns(), Seen::default());
        let mut empty = none.clone();
        empty.configurations = Some(HashMap::new());
        assert_eq!(verdict(&app(true), None, &empty, FIN), Verdict::Live);
        // A vz-format application is not judged by a configuration of its name.
        let deleting = Seen {
            deleting: true,
            ..Seen::default()
        };
        assert_eq!(
            verdict(&app(false), None, &with_config(live_ns(), deleting), FIN),
            Verdict::Live
        );
    }

    #[test]
    fn an_end_the_state_recorded_is_resumed_whatever_the_cluster_shows() {
        let t = Terminated {
            at: "2026-12-07T10:00:00Z".into(),
            reason: "namespace shop was deleted".into(),
        };
        assert!(matches!(
            verdict(&app(false), Some(&t), &live_ns(), FIN),
            Verdict::Ended(r) if r.contains("had not finished")
        ));
    }

    #[test]
    fn configurations_held_for_no_application_of_the_state_are_released() {
        let mut seen = live_ns();
        let mut configs = HashMap::new();
        configs.insert(("shop".to_string(), "orders".to_string()), held());
        configs.insert(("shop".to_string(), "gone".to_string()), held());
        configs.insert(("shop".to_string(), "theirs".to_string()), Seen::default());
        seen.configurations = Some(configs);
        let orders = app(true);
        let released = to_release(&seen, &[&orders], FIN);
        assert_eq!(released, vec![&("shop".to_string(), "gone".to_string())]);
        // Not from OAM any more: let go too.
        let plain = app(false);
        assert_eq!(to_release(&seen, &[&plain], FIN).len(), 2);
    }

    #[test]
    fn recorded_applications_take_their_namespace_from_the_configuration_else_the_state() {
        let mut state = State::new("prod", "0");
        for (step, kind, ns) in [
            ("app.orders", "Secret", "istio-system"),
            ("app.orders", "AuthorizationPolicy", "istio-system"),
            ("app.orders", "Gateway", "shop"),
            ("app.legacy", "AuthorizationPolicy", "old"),
            ("network-policies", "NetworkPolicy", "istio-system"),
        ] {
            state.upsert(vz_state::ObjectRecord {
                address: format!("{step}/{kind}/{ns}/x"),
                step: step.into(),
                api_version: "v1".into(),
                kind: kind.into(),
                namespace: Some(ns.into()),
                name: "x".into(),
                uid: "u".into(),
                manifest_sha256: String::new(),
                resource_version: None,
                depends_on: Vec::new(),
                adopted: false,
                patched: false,
                outputs: BTreeMap::new(),
                certificate: None,
            });
        }
        // Without the configuration, the state tells each one's namespace.
        let from_state = recorded(&state, &HashMap::new());
        assert_eq!(from_state[1].namespace.as_deref(), Some("shop"));
        let mut configured = HashMap::new();
        configured.insert("orders".to_string(), ("shop".to_string(), true));
        let apps = recorded(&state, &configured);
        assert_eq!(
            apps,
            vec![
                Recorded {
                    name: "legacy".into(),
                    namespace: Some("old".into()),
                    oam: false
                },
                Recorded {
                    name: "orders".into(),
                    namespace: Some("shop".into()),
                    oam: true
                },
            ]
        );
    }
}
