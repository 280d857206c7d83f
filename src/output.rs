//! What the user sees: the plan as text, and progress lines while a run works.
//!
//! Rendering is pure (a plan in, a string out) so it is tested without a cluster; progress goes to
//! standard error so that standard output carries only the plan (and `render`'s YAML).

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value;

use crate::diff::FieldChange;
use crate::engine::plan::{Action, Cause, Change, Plan};

/// Progress lines on standard error.
#[derive(Debug, Default)]
pub struct Progress;

impl Progress {
    /// Print one progress line.
    pub fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }
}

/// The plan as the user reads it. `destroy` changes the wording of the header only.
pub fn plan_text(plan: &Plan, destroy: bool) -> String {
    let mut out = String::new();
    let shown: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    if shown.is_empty() {
        out.push_str("No changes. The cluster matches the configuration.\n");
        return out;
    }
    out.push_str(if destroy {
        "vz will destroy these objects:\n\n"
    } else {
        "vz will perform these actions:\n\n"
    });
    for c in shown {
        let (sign, note) = match (c.action, c.cause) {
            (Action::Create, Cause::DeletedOutside) => {
                ('+', "  # deleted outside vz; will be created again")
            }
            (Action::Create, _) => ('+', ""),
            (Action::Update, Cause::Drift) => ('~', "  # changed outside vz; will be put back"),
            (Action::Update, Cause::Adopt) => (
                '~',
                "  # exists but is not managed by vz; will be taken over",
            ),
            (Action::Update, _) => ('~', ""),
            (Action::Delete, _) => ('-', ""),
            (Action::Forget, _) => (
                '.',
                if c.live_uid.is_some() {
                    "  # re-created outside vz (another uid); will be left alone and dropped from the state"
                } else {
                    "  # already gone; will be dropped from the state"
                },
            ),
            (Action::NoOp, _) => continue,
        };
        let _ = writeln!(out, "  {sign} {}{note}", c.address);
        for f in &c.fields {
            let _ = writeln!(out, "      {}", field_line(f));
        }
    }
    let (add, change, destroy_n) = plan.counts();
    let _ = writeln!(
        out,
        "\nPlan: {add} to add, {change} to change, {destroy_n} to destroy."
    );
    out
}

fn field_line(f: &FieldChange) -> String {
    match (&f.before, &f.after) {
        (None, Some(a)) => format!("+ {}: {}", f.path, value(a)),
        (Some(b), None) => format!("- {}: {}", f.path, value(b)),
        (Some(b), Some(a)) => format!("~ {}: {} -> {}", f.path, value(b), value(a)),
        (None, None) => format!("~ {}", f.path),
    }
}

fn value(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectRef;
    use serde_json::json;

    fn change(address: &str, action: Action, cause: Cause, fields: Vec<FieldChange>) -> Change {
        Change {
            address: address.into(),
            step: "s".into(),
            object: ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: "x".into(),
            },
            action,
            cause,
            desired: None,
            live_uid: None,
            fields,
        }
    }

    #[test]
    fn a_plan_without_changes_says_so() {
        let plan = Plan {
            changes: vec![change("a", Action::NoOp, Cause::Config, vec![])],
        };
        assert_eq!(
            plan_text(&plan, false),
            "No changes. The cluster matches the configuration.\n"
        );
    }

    #[test]
    fn each_action_has_its_sign_and_the_summary_counts_them() {
        let plan = Plan {
            changes: vec![
                change("ns/Namespace/a", Action::Create, Cause::Config, vec![]),
                change(
                    "np/NetworkPolicy/a/p",
                    Action::Update,
                    Cause::Drift,
                    vec![FieldChange {
                        path: "spec.ingress[0].ports[0].port".into(),
                        before: Some(json!(9999)),
                        after: Some(json!(8775)),
                    }],
                ),
                change(
                    "np/NetworkPolicy/a/q",
                    Action::Delete,
                    Cause::Config,
                    vec![],
                ),
                change("np/NetworkPolicy/a/r", Action::NoOp, Cause::Config, vec![]),
            ],
        };
        assert_eq!(
            plan_text(&plan, false),
            "vz will perform these actions:\n\n\
             \x20 + ns/Namespace/a\n\
             \x20 ~ np/NetworkPolicy/a/p  # changed outside vz; will be put back\n\
             \x20     ~ spec.ingress[0].ports[0].port: 9999 -> 8775\n\
             \x20 - np/NetworkPolicy/a/q\n\
             \nPlan: 1 to add, 1 to change, 1 to destroy.\n"
        );
    }

    #[test]
    fn added_and_removed_fields_are_marked() {
        let f = FieldChange {
            path: "metadata.labels[\"a\"]".into(),
            before: None,
            after: Some(json!("b")),
        };
        assert_eq!(field_line(&f), "+ metadata.labels[\"a\"]: \"b\"");
        let f = FieldChange {
            path: "spec.x".into(),
            before: Some(json!([1])),
            after: None,
        };
        assert_eq!(field_line(&f), "- spec.x: [1]");
    }
}
