//! What the user sees: the plan as text, and progress lines while a run works.
//!
//! Rendering is pure (a plan in, a string out) so it is tested without a cluster; progress goes to
//! standard error so that standard output carries only the plan (and `render`'s YAML).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use owo_colors::OwoColorize;

use serde_json::{Value, json};

use crate::connectivity::changes::Opening;
use crate::diff::FieldChange;
use crate::engine::plan::{Action, Cause, Change, Plan};
use vz_providers::outputs::UNKNOWN_TEXT;

/// Progress on standard error: on a terminal a spinner with the latest activity and the elapsed
/// time, with each completed action printed above it; elsewhere (CI, pipes) plain lines.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// A spinner when standard error is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    /// Print one completed action.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(text);
                bar.set_message(text.to_string());
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    /// Say what is being waited for (shown on the spinner only).
    pub fn status(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Print plan text on standard output, coloured by action when standard output is a terminal that
/// wants colour (`NO_COLOR` turns it off, `CLICOLOR_FORCE` on).
pub fn print_plan(text: &str) -> Result<(), StdoutClosed> {
    let mut out = anstream::stdout();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let styled = if trimmed.starts_with("-/+ ") {
            line.magenta().to_string()
        } else if trimmed.starts_with("+ ") {
            line.green().to_string()
        } else if trimmed.starts_with("~ ") {
            line.yellow().to_string()
        } else if trimmed.starts_with("- ") {
            line.red().to_string()
        } else if trimmed.starts_with("Plan:") || trimmed.starts_with("Objects changed outside") {
            line.bold().to_string()
        } else {
            line.to_string()
        };
        writeln!(out, "{styled}").map_err(closed)?;
    }
    out.flush().map_err(closed)
}

/// Write `text` on standard output. When whoever reads it has gone (`vz render | head -1`), the
/// error is [`StdoutClosed`]: `main` ends quietly with success on it, and commands that still have
/// work to do after printing (apply, destroy, a plan to save) carry on ([`carry_on`]).
pub fn out(text: &str) -> Result<(), StdoutClosed> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).map_err(closed)?;
    stdout.flush().map_err(closed)
}

/// Standard output could not be written: closed by its reader, or failing.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0}")]
pub struct StdoutClosed(std::io::Error);

impl StdoutClosed {
    /// Whether the reader closed it (a pipe's end went away), rather than a real failure.
    pub fn by_reader(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

#[cfg(test)]
impl StdoutClosed {
    pub(crate) fn for_test(kind: std::io::ErrorKind) -> StdoutClosed {
        StdoutClosed(std::io::Error::from(kind))
    }
}

fn closed(e: std::io::Error) -> StdoutClosed {
    StdoutClosed(e)
}

/// Nothing more needs printing once the reader has gone; the work goes on. Other write errors stay
/// errors.
pub fn carry_on(r: Result<(), StdoutClosed>) -> Result<(), StdoutClosed> {
    match r {
        Err(e) if e.by_reader() => Ok(()),
        other => other,
    }
}

/// The plan as the user reads it: objects changed outside `vz` first, then the actions.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for w in &plan.warnings {
        let _ = writeln!(out, "Warning: {w}\n");
    }
    for n in &plan.notes {
        let _ = writeln!(out, "Note: {n}\n");
    }
    if !plan.refreshed {
        out.push_str(
            "Note: --refresh=false: the live cluster was not read, so changes made outside vz are not seen.\n\n",
        );
    }
    let drifted: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.cause, Cause::Drift | Cause::DeletedOutside))
        .collect();
    if !drifted.is_empty() {
        out.push_str("Objects changed outside vz since the last apply:\n\n");
        for c in drifted {
            if c.cause == Cause::DeletedOutside {
                let _ = writeln!(out, "  - {}  # deleted", c.address);
                continue;
            }
            let _ = writeln!(out, "  ~ {}", c.address);
            for f in &c.fields {
                // The drift is the update read backwards: from what vz applied to what is there now.
                let back = FieldChange {
                    path: f.path.clone(),
                    before: f.after.clone(),
                    after: f.before.clone(),
                    unknown: false,
                };
                let _ = writeln!(out, "      {}", field_line(&back));
            }
        }
        out.push('\n');
    }
    // A CA rotation waiting for its overlap: nothing to do yet, and when the next step is due.
    for c in plan.changes.iter().filter(|c| c.action == Action::NoOp) {
        if let Some(status) = &c.status {
            let _ = writeln!(out, "Note: {}: {status}.\n", c.address);
        }
    }
    let shown: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    if shown.is_empty() && plan.restarts.is_empty() {
        out.push_str("No changes. The cluster matches the configuration.\n");
        return out;
    }
    if shown.is_empty() {
        restarts_text(&mut out, plan);
        let _ = writeln!(
            out,
            "\nPlan: 0 to add, 0 to change, 0 to destroy; {} workload(s) to restart.",
            plan.restarts.len()
        );
        return out;
    }
    out.push_str(if plan.destroy {
        "vz will destroy these objects:\n\n"
    } else {
        "vz will perform these actions:\n\n"
    });
    for c in shown {
        let forced;
        let (sign, note) = match (c.action, c.cause) {
            (Action::Create, Cause::DeletedOutside) => {
                ("+", "  # deleted outside vz; will be created again")
            }
            (Action::Create, Cause::AwaitDeletion) => (
                "+",
                "  # still being deleted; will be created again once it is gone",
            ),
            (Action::Create, _) => ("+", ""),
            (Action::Update, Cause::Recovered) => (
                "~",
                "  # recovered from labels: vz made it but the state did not record it",
            ),
            (Action::Update, Cause::AwaitOwner) => (
                "~",
                "  # pending: does not exist yet; vz sets its fields on the first apply after its owner creates it",
            ),
            (Action::Update, _) if c.reissue.is_some() => {
                forced = format!(
                    "  # certificate issued again: {}",
                    c.reissue.as_deref().unwrap_or_default()
                );
                ("-/+", forced.as_str())
            }
            (Action::Update, _) if c.follows.is_some() => {
                forced = format!("  # {}", c.follows.as_deref().unwrap_or_default());
                ("~", forced.as_str())
            }
            (Action::Update, Cause::Drift) => ("~", "  # changed outside vz; will be put back"),
            (Action::Update, Cause::Adopt) => (
                "~",
                "  # exists but is not managed by vz; will be taken over",
            ),
            (Action::Update, _) if !plan.refreshed => ("~", "  # configuration changed"),
            (Action::Update, _) => ("~", ""),
            (Action::Replace, Cause::Requested) => ("-/+", "  # replacement requested (--replace)"),
            (Action::Replace, Cause::Adopt) => {
                forced = format!(
                    "  # exists but is not managed by vz, and {} cannot change in place: it will be deleted and created again",
                    if c.forces_replacement.is_empty() {
                        "an immutable field".to_string()
                    } else {
                        c.forces_replacement.join(", ")
                    }
                );
                ("-/+", forced.as_str())
            }
            (Action::Replace, _) => {
                forced = if c.forces_replacement.is_empty() {
                    "  # an immutable field changes: forces replacement".to_string()
                } else {
                    format!(
                        "  # forces replacement: {}",
                        c.forces_replacement.join(", ")
                    )
                };
                ("-/+", forced.as_str())
            }
            (Action::Delete, Cause::Recovered) => (
                "-",
                "  # left unrecorded by a run that did not finish (found by its labels)",
            ),
            (Action::Release, Cause::Recovered) => (
                "-",
                "  # left unrecorded by a run that did not finish (found by its labels); taken over, so released, not deleted",
            ),
            (Action::Delete, _) => ("-", ""),
            (Action::Release, _) => (
                "-",
                "  # not created by vz: released (vz's fields removed), not deleted",
            ),
            (Action::Forget, Cause::Moved) => (
                ".",
                "  # moved to another address of the configuration: kept, and recorded there",
            ),
            (Action::Forget, _) => (
                ".",
                if c.live_uid.is_some() && plan.refreshed {
                    "  # re-created outside vz (another uid); will be left alone and dropped from the state"
                } else {
                    "  # already gone; will be dropped from the state"
                },
            ),
            (Action::NoOp, _) => continue,
        };
        let unknown = c.fields.iter().any(|f| f.unknown)
            && matches!(c.action, Action::Create | Action::Update | Action::Replace);
        let note = if unknown && note.is_empty() {
            "  # some values are (known after apply)"
        } else {
            note
        };
        let rolls = match rollout(c) {
            Some(how) if note.is_empty() => format!("  # {how}"),
            Some(how) => format!("{note}; {how}"),
            None => note.to_string(),
        };
        let _ = writeln!(out, "  {sign} {}{rolls}", c.address);
        for f in &c.fields {
            let _ = writeln!(out, "      {}", field_line(f));
        }
    }
    restarts_text(&mut out, plan);
    connectivity_text(&mut out, plan);
    let (add, change, destroy_n) = plan.counts();
    let mut extra = Vec::new();
    if !plan.restarts.is_empty() {
        extra.push(format!("{} workload(s) to restart", plan.restarts.len()));
    }
    if plan.released() > 0 {
        extra.push(format!("{} to release, not delete", plan.released()));
    }
    if plan.reissued() > 0 {
        extra.push(format!("{} certificate(s) issued again", plan.reissued()));
    }
    if plan.pending() > 0 {
        extra.push(format!(
            "{} pending until their owner creates them",
            plan.pending()
        ));
    }
    if plan.recovered() > 0 {
        extra.push(format!(
            "{} to record again, recovered from labels",
            plan.recovered()
        ));
    }
    let released = if extra.is_empty() {
        String::new()
    } else {
        format!(" ({})", extra.join("; "))
    };
    let _ = writeln!(
        out,
        "\nPlan: {add} to add, {change} to change, {destroy_n} to destroy.{released}"
    );
    out
}

/// `vz plan --certificates`: every certificate the plan involves, CAs first, with its expiry and
/// when its renewal is due (`renewBeforeDays` before it), or what this plan does to it. `now` in
/// Unix seconds.
pub fn certificates_text(plan: &Plan, now: i64) -> String {
    use crate::lifecycle::certificates::date;
    use vz_providers::manifest::Role;
    let mut rows: Vec<(u8, &str, &str, String)> = Vec::new();
    for c in &plan.changes {
        let Some(spec) = c.desired.as_ref().and_then(|m| m.certificate.as_ref()) else {
            continue;
        };
        let (rank, role) = match spec.role {
            Role::Root => (0, "CA"),
            Role::Intermediate => (1, "intermediate CA"),
            Role::Leaf => (2, "leaf"),
        };
        let held = c.certificate.as_ref().map(|f| {
            let days = (f.not_after - now).div_euclid(86_400);
            let due = f.not_after - spec.renew_before_days * 86_400;
            let when = if f.not_after <= now {
                "expired".to_string()
            } else {
                format!("in {days} day(s)")
            };
            format!(
                "expires {} ({when}); renewal due from {}",
                date(f.not_after),
                date(due)
            )
        });
        let what = match (c.action, held) {
            (Action::Delete | Action::Release | Action::Forget, h) => format!(
                "{}; goes with this plan",
                h.unwrap_or_else(|| "not in the cluster".into())
            ),
            (_, None) => "issued by this apply".to_string(),
            (_, Some(h)) => match (&c.reissue, &c.follows) {
                (Some(why), _) => format!("{h}; issued again by this apply: {why}"),
                _ if c.action == Action::Replace => {
                    format!("{h}; issued again by this apply (replaced)")
                }
                (None, Some(note)) if spec.role == Role::Root && c.action == Action::Update => {
                    format!("{h}; {note}")
                }
                _ => match &c.status {
                    Some(status) => format!("{h}; {status}"),
                    None => h,
                },
            },
        };
        rows.push((rank, c.address.as_str(), role, what));
    }
    if rows.is_empty() {
        return "\nCertificates: none.\n".to_string();
    }
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or_default();
    let mut out = format!("\nCertificates ({}):\n\n", rows.len());
    for (_, address, role, what) in rows {
        let _ = writeln!(out, "  {address:width$}  {role}: {what}");
    }
    out
}

/// How a workload's pods roll when an update changes their template (an image, an env var): as
/// its strategy says, read from the object as the API server would store it. `None` for other
/// changes and kinds.
pub fn rollout(c: &Change) -> Option<String> {
    if c.action != Action::Update || !c.fields.iter().any(|f| f.path.starts_with("spec.template")) {
        return None;
    }
    let spec = c.after.as_ref().map(|a| &a["spec"])?;
    let text = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    let strategy = |key: &str| &spec[key];
    match c.object.kind.as_str() {
        "Deployment" if strategy("strategy")["type"] == "Recreate" => Some(
            "its pods roll: all stopped, then made again (strategy Recreate: a gap in service)"
                .into(),
        ),
        "Deployment" => {
            let rolling = &strategy("strategy")["rollingUpdate"];
            Some(format!(
                "its pods roll: {} replica(s), at most {} extra and {} unavailable at a time",
                text(&spec["replicas"]).unwrap_or_else(|| "1".into()),
                text(&rolling["maxSurge"]).unwrap_or_else(|| "25%".into()),
                text(&rolling["maxUnavailable"]).unwrap_or_else(|| "25%".into()),
            ))
        }
        "StatefulSet" if strategy("updateStrategy")["type"] == "OnDelete" => {
            Some("its pods change only when deleted (updateStrategy OnDelete)".into())
        }
        "StatefulSet" => Some("its pods roll one at a time, the highest ordinal first".into()),
        "DaemonSet" if strategy("updateStrategy")["type"] == "OnDelete" => {
            Some("its pods change only when deleted (updateStrategy OnDelete)".into())
        }
        "DaemonSet" => Some(format!(
            "its pods roll node by node, at most {} unavailable at a time",
            text(&strategy("updateStrategy")["rollingUpdate"]["maxUnavailable"])
                .unwrap_or_else(|| "1".into())
        )),
        _ => None,
    }
}

/// The plan's "Workloads to restart": each Deployment, StatefulSet or DaemonSet apply restarts,
/// at which step, and why.
fn restarts_text(out: &mut String, plan: &Plan) {
    if plan.restarts.is_empty() {
        return;
    }
    out.push_str("\nWorkloads to restart (their pods are made again, a rollout at a time):\n\n");
    for r in &plan.restarts {
        let _ = writeln!(out, "  ~> {}  # at {}: {}", r.workload, r.step, r.why);
    }
}

/// The plan's "Connectivity changes": each flow opened (`+`) or closed (`-`), then the flows of
/// the workloads it creates or deletes, counted.
fn connectivity_text(out: &mut String, plan: &Plan) {
    let Some(c) = plan.connectivity.as_ref().filter(|c| !c.is_empty()) else {
        return;
    };
    out.push_str("\nConnectivity changes:\n\n");
    for f in &c.flows {
        let sign = match f.change {
            Opening::Open => "+",
            Opening::Close => "-",
        };
        let _ = writeln!(out, "  {sign} {} -> {} {}", f.src, f.dst, f.conns);
    }
    let some = |names: &[String]| -> String {
        let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        if more > 0 {
            format!("{}, and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    if !c.new_workloads.is_empty() {
        let _ = writeln!(
            out,
            "  + the flows of {} workload(s) this plan creates ({})",
            c.new_workloads.len(),
            some(&c.new_workloads)
        );
    }
    if !c.gone_workloads.is_empty() {
        let _ = writeln!(
            out,
            "  - the flows of {} workload(s) this plan deletes ({})",
            c.gone_workloads.len(),
            some(&c.gone_workloads)
        );
    }
    out.push_str("  (vz explain-access SRC DST [PORT] says which policy decides a flow)\n");
}

/// The plan as JSON, for machines: every object's change (no-ops included), the drift, the summary.
pub fn plan_json(plan: &Plan, platform: &str) -> Value {
    let actions = |a: Action| -> Vec<&'static str> {
        match a {
            Action::NoOp => vec!["no-op"],
            Action::Create => vec!["create"],
            Action::Update => vec!["update"],
            Action::Replace => vec!["delete", "create"],
            Action::Delete => vec!["delete"],
            Action::Forget => vec!["forget"],
            Action::Release => vec!["release"],
        }
    };
    let fields = |c: &Change| -> Value {
        c.fields
            .iter()
            .map(|f| json!({"path": f.path, "before": f.before, "after": f.after, "after_unknown": f.unknown}))
            .collect()
    };
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|c| {
            let mut change = json!({
                "address": c.address,
                "step": c.step,
                "apiVersion": c.object.api_version,
                "kind": c.object.kind,
                "namespace": c.object.namespace,
                "name": c.object.name,
                "actions": actions(c.action),
                "cause": c.cause,
                "before": c.before,
                "after": c.after,
                "fields": fields(c),
                "forces_replacement": c.forces_replacement,
                "reissue": c.reissue,
                "follows": c.follows,
                "certificate": c.certificate,
            });
            if let Some(status) = &c.status {
                change["status"] = json!(status);
            }
            if let Some(how) = rollout(c) {
                change["rollout"] = json!(how);
            }
            change
        })
        .collect();
    let drift: Vec<Value> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.cause, Cause::Drift | Cause::DeletedOutside))
        .map(|c| {
            json!({
                "address": c.address,
                "deleted": c.cause == Cause::DeletedOutside,
                "fields": c.fields.iter().map(|f| json!({"path": f.path, "applied": f.after, "live": f.before})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (add, change, destroy) = plan.counts();
    let mut doc = json!({
        "format_version": "1.0",
        "vz_version": env!("CARGO_PKG_VERSION"),
        "platform": platform,
        "destroy": plan.destroy,
        "refreshed": plan.refreshed,
        "warnings": plan.warnings,
        "resource_changes": changes,
        "resource_drift": drift,
        "connectivity_changes": plan.connectivity,
        "restarts": plan.restarts.iter().map(|r| json!({
            "step": r.step,
            "api_version": r.workload.api_version,
            "kind": r.workload.kind,
            "namespace": r.workload.namespace,
            "name": r.workload.name,
            "pods": r.pods,
            "why": r.why,
        })).collect::<Vec<_>>(),
        "summary": {"add": add, "change": change, "destroy": destroy, "release": plan.released(), "recover": plan.recovered(), "restart": plan.restarts.len()},
    });
    // Only when something was left out (an application `vz watch` saw end).
    if !plan.notes.is_empty() {
        doc["notes"] = json!(plan.notes);
    }
    doc
}

fn field_line(f: &FieldChange) -> String {
    if f.unknown {
        return match &f.before {
            None => format!("+ {}: {UNKNOWN_TEXT}", f.path),
            Some(b) => format!("~ {}: {} -> {UNKNOWN_TEXT}", f.path, value(b)),
        };
    }
    match (&f.before, &f.after) {
        (None, Some(a)) => format!("+ {}: {}", f.path, value(a)),
        (Some(b), None) => format!("- {}: {}", f.path, value(b)),
        (Some(b), Some(a)) => format!("~ {}: {} -> {}", f.path, value(b), value(a)),
        (None, None) => format!("~ {}", f.path),
    }
}

/// A value as the plan prints it; a long string (a base64 CA bundle) is cut short, with its
/// length (the JSON plan has it whole).
fn value(v: &Value) -> String {
    const LONG: usize = 100;
    match v {
        Value::String(s) if s.chars().count() > LONG => {
            let head: String = s.chars().take(40).collect();
            format!("\"{head}…\" ({} characters)", s.chars().count())
        }
        _ => serde_json::to_string(v).unwrap_or_else(|_| "?".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectRef;
    use serde_json::json;
    use vz_providers::manifest::Role;

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
            desired_sha256: None,
            live_uid: None,
            live_resource_version: None,
            before: None,
            after: None,
            fields,
            forces_replacement: vec![],
            reissue: None,
            follows: None,
            certificate: None,
            intent: None,
            status: None,
        }
    }

    fn plan_of(changes: Vec<Change>) -> Plan {
        Plan {
            changes,
            destroy: false,
            refreshed: true,
            warnings: Vec::new(),
            notes: Vec::new(),
            connectivity: None,
            restarts: Vec::new(),
        }
    }

    fn workload(kind: &str, path: &str, spec: Value) -> Change {
        let mut c = change(
            &format!("w/{kind}/ns/app"),
            Action::Update,
            Cause::Config,
            vec![FieldChange {
                path: path.into(),
                before: Some(json!("a:1")),
                after: Some(json!("a:2")),
                unknown: false,
            }],
        );
        c.object.kind = kind.into();
        c.after = Some(json!({ "spec": spec }));
        c
    }

    fn certificate(address: &str, role: Role, not_after: Option<i64>) -> Change {
        let mut c = change(address, Action::NoOp, Cause::Config, vec![]);
        let mut m = vz_providers::Manifest::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "n"},
        }));
        m.certificate = Some(vz_providers::manifest::CertSpec {
            role,
            common_name: "x".into(),
            random_suffix: false,
            sans: vec![],
            validity_days: 90,
            key: vz_providers::pki::KeyAlgorithm::EcdsaP256,
            renew_before_days: 30,
            overlap_secs: 0,
            issuer: None,
            layout: vz_providers::manifest::Layout::Tls,
        });
        c.desired = Some(m);
        c.certificate = not_after.map(|not_after| vz_state::CertFacts {
            fingerprint: "f".into(),
            serial: "1".into(),
            sans: vec![],
            key_id: None,
            issuer_key_id: None,
            key_algorithm: "ECDSA-P256".into(),
            not_after,
        });
        c
    }

    #[test]
    fn the_certificates_list_puts_cas_first_with_expiry_and_renewal() {
        let day = 86_400;
        let now = 1_800_000_000;
        let mut due = certificate("tls/Secret/a/due", Role::Leaf, Some(now + 10 * day));
        due.action = Action::Replace;
        due.reissue = Some("expires soon".into());
        let plan = plan_of(vec![
            certificate("tls/Secret/a/web", Role::Leaf, Some(now + 90 * day)),
            due,
            certificate("tls/Secret/a/new", Role::Leaf, None),
            certificate("ca/Secret/a/ca", Role::Root, Some(now + 3650 * day)),
            change("ns/Namespace/a", Action::NoOp, Cause::Config, vec![]),
        ]);
        let text = certificates_text(&plan, now);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("  ca/Secret/a/ca ") && lines[0].contains("CA: expires 2037-"),
            "{text}"
        );
        assert!(lines[0].contains("(in 3650 day(s))"), "{text}");
        assert!(
            lines[1].contains("issued again by this apply: expires soon"),
            "{text}"
        );
        assert!(lines[2].ends_with("leaf: issued by this apply"), "{text}");
        assert!(
            lines[3].contains("(in 90 day(s)); renewal due from 2027-"),
            "{text}"
        );
        assert_eq!(
            certificates_text(&plan_of(vec![]), now),
            "\nCertificates: none.\n"
        );
    }

    #[test]
    fn a_template_change_says_how_the_workloads_pods_roll() {
        let image = "spec.template.spec.containers[0].image";
        let surge = json!({"replicas": 2, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}});
        let c = workload("Deployment", image, surge.clone());
        assert_eq!(
            rollout(&c).as_deref(),
            Some("its pods roll: 2 replica(s), at most 1 extra and 0 unavailable at a time")
        );
        assert!(plan_text(&plan_of(vec![c])).contains(
            "  ~ w/Deployment/ns/app  # its pods roll: 2 replica(s), at most 1 extra and 0 unavailable at a time\n"
        ));
        let recreate = json!({"strategy": {"type": "Recreate"}});
        assert!(
            rollout(&workload("Deployment", image, recreate))
                .is_some_and(|r| r.contains("a gap in service"))
        );
        assert_eq!(
            rollout(&workload("StatefulSet", image, json!({}))).as_deref(),
            Some("its pods roll one at a time, the highest ordinal first")
        );
        // Not the template: nothing rolls.
        assert_eq!(
            rollout(&workload("Deployment", "spec.replicas", surge.clone())),
            None
        );
        assert_eq!(rollout(&workload("ConfigMap", image, surge)), None);
    }

    #[test]
    fn long_strings_are_cut_short_in_the_text_plan() {
        let long = "L".repeat(1000);
        assert_eq!(
            value(&json!(long)),
            format!("\"{}…\" (1000 characters)", "L".repeat(40))
        );
        assert_eq!(value(&json!("short")), "\"short\"");
    }

    #[test]
    fn a_plan_without_changes_says_so() {
        let plan = plan_of(vec![change("a", Action::NoOp, Cause::Config, vec![])]);
        assert_eq!(
            plan_text(&plan),
            "No changes. The cluster matches the configuration.\n"
        );
    }

    #[test]
    fn each_action_has_its_sign_and_the_summary_counts_them() {
        let plan = plan_of(vec![
            change("ns/Namespace/a", Action::Create, Cause::Config, vec![]),
            change(
                "np/NetworkPolicy/a/p",
                Action::Update,
                Cause::Drift,
                vec![FieldChange {
                    path: "spec.ingress[0].ports[0].port".into(),
                    before: Some(json!(9999)),
                    after: Some(json!(8775)),
                    unknown: false,
                }],
            ),
            change(
                "np/NetworkPolicy/a/q",
                Action::Delete,
                Cause::Config,
                vec![],
            ),
            change("np/NetworkPolicy/a/r", Action::NoOp, Cause::Config, vec![]),
        ]);
        assert_eq!(
            plan_text(&plan),
            "Objects changed outside vz since the last apply:\n\n\
             \x20 ~ np/NetworkPolicy/a/p\n\
             \x20     ~ spec.ingress[0].ports[0].port: 8775 -> 9999\n\
             \n\
             vz will perform these actions:\n\n\
             \x20 + ns/Namespace/a\n\
             \x20 ~ np/NetworkPolicy/a/p  # changed outside vz; will be put back\n\
             \x20     ~ spec.ingress[0].ports[0].port: 9999 -> 8775\n\
             \x20 - np/NetworkPolicy/a/q\n\
             \nPlan: 1 to add, 1 to change, 1 to destroy.\n"
        );
    }

    #[test]
    fn a_replacement_names_the_fields_that_force_it_and_counts_twice() {
        let mut c = change("d/Deployment/a/x", Action::Replace, Cause::Config, vec![]);
        c.forces_replacement = vec!["spec.selector".into()];
        let text = plan_text(&plan_of(vec![c]));
        assert!(
            text.contains("  -/+ d/Deployment/a/x  # forces replacement: spec.selector\n"),
            "{text}"
        );
        assert!(
            text.contains("Plan: 1 to add, 0 to change, 1 to destroy."),
            "{text}"
        );
    }

    #[test]
    fn json_lists_actions_drift_and_summary() {
        let mut c = change(
            "np/NetworkPolicy/a/p",
            Action::Update,
            Cause::Drift,
            vec![FieldChange {
                path: "spec.x".into(),
                before: Some(json!(1)),
                after: Some(json!(2)),
                unknown: false,
            }],
        );
        c.object.kind = "NetworkPolicy".into();
        let r = change("d/Deployment/a/x", Action::Replace, Cause::Config, vec![]);
        let j = plan_json(&plan_of(vec![c, r]), "dev");
        assert_eq!(j["format_version"], "1.0");
        assert_eq!(j["resource_changes"][0]["actions"], json!(["update"]));
        assert_eq!(j["resource_changes"][0]["kind"], "NetworkPolicy");
        assert_eq!(
            j["resource_changes"][1]["actions"],
            json!(["delete", "create"])
        );
        assert_eq!(j["resource_drift"][0]["address"], "np/NetworkPolicy/a/p");
        assert_eq!(j["resource_drift"][0]["fields"][0]["live"], json!(1));
        assert_eq!(
            j["summary"],
            json!({"add": 1, "change": 1, "destroy": 1, "release": 0, "recover": 0, "restart": 0})
        );
    }

    #[test]
    fn objects_with_values_from_later_steps_say_so() {
        let unknown = FieldChange {
            path: "spec.rules[0].host".into(),
            before: None,
            after: None,
            unknown: true,
        };
        let c = change(
            "i/Ingress/a/x",
            Action::Create,
            Cause::Config,
            vec![unknown],
        );
        let text = plan_text(&plan_of(vec![c]));
        assert!(
            text.contains(
                "  + i/Ingress/a/x  # some values are (known after apply)\n      + spec.rules[0].host: (known after apply)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn recovered_objects_with_nothing_to_change_are_not_counted_as_changes() {
        let plan = plan_of(vec![
            change("ns/Namespace/a", Action::Update, Cause::Recovered, vec![]),
            change(
                "ns/Namespace/b",
                Action::Update,
                Cause::Recovered,
                vec![FieldChange {
                    path: "metadata.labels.x".into(),
                    before: None,
                    after: Some(json!("y")),
                    unknown: false,
                }],
            ),
        ]);
        assert!(plan.has_work());
        let text = plan_text(&plan);
        assert!(
            text.ends_with(
                "\nPlan: 0 to add, 1 to change, 0 to destroy. (1 to record again, recovered from labels)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn added_and_removed_fields_are_marked() {
        let f = FieldChange {
            path: "metadata.labels[\"a\"]".into(),
            before: None,
            after: Some(json!("b")),
            unknown: false,
        };
        assert_eq!(field_line(&f), "+ metadata.labels[\"a\"]: \"b\"");
        let f = FieldChange {
            path: "spec.x".into(),
            before: Some(json!([1])),
            after: None,
            unknown: false,
        };
        assert_eq!(field_line(&f), "- spec.x: [1]");
    }
}
