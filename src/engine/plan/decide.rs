//! The planner's decisions, as pure functions over plain facts: what happens to each object, and
//! what the state records after an undo. No API calls here; [`super`] gathers the facts (reads,
//! dry runs) and this module decides, so the whole table is tested without a cluster.
//!
//! A desired object is decided in up to two rounds: [`desired`] answers from the record, the live
//! object and the flags, or asks for a server-side dry run ([`Verdict::DryRun`]); [`after_dry_run`]
//! finishes from the dry run's result. A recorded object that is no longer desired is decided by
//! [`removal`].

use serde_json::Value;
use vz_providers::Ownership;
use vz_providers::manifest::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLATFORM_LABEL};

use super::{Action, Cause};

/// What the state recorded about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The uid of the object `vz` applied.
    pub uid: String,
    /// sha256 of the manifest last applied.
    pub manifest_sha256: String,
    /// resourceVersion right after `vz` last wrote (or checked) it.
    pub resource_version: Option<String>,
}

/// What matters about the live object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Live {
    /// Its uid.
    pub uid: Option<String>,
    /// Its resourceVersion.
    pub resource_version: Option<String>,
    /// Its deletion has started (`metadata.deletionTimestamp` is set).
    pub deleting: bool,
    /// It carries `app.kubernetes.io/managed-by=vz`.
    pub managed_by_vz: bool,
    /// The value of its `vz.dev/platform` label.
    pub platform: Option<String>,
    /// It carries the annotation `vz` puts on objects it took over: they existed before it.
    pub adopted_mark: bool,
}

impl Live {
    /// The facts of a live object as the API server returned it.
    pub fn of(obj: &Value) -> Live {
        let text = |p: &str| obj.pointer(p).and_then(Value::as_str).map(str::to_string);
        let label = |k: &str| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Live {
            uid: text("/metadata/uid"),
            resource_version: text("/metadata/resourceVersion"),
            deleting: obj.pointer("/metadata/deletionTimestamp").is_some(),
            managed_by_vz: label(MANAGED_BY_LABEL).as_deref() == Some(MANAGED_BY_VALUE),
            platform: label(PLATFORM_LABEL),
            adopted_mark: obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(crate::cluster::ADOPTED_ANNOTATION))
                .is_some(),
        }
    }
}

/// What matters about the desired object and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// sha256 of the desired manifest.
    pub sha256: &'a str,
    /// Some of its values are known only after apply.
    pub has_unknown: bool,
    /// How much of it `vz` owns.
    pub ownership: Ownership,
    /// This platform (the value of the platform label `vz` sets).
    pub platform: &'a str,
    /// `--replace` names it.
    pub replace: bool,
    /// The live cluster was read (`--refresh`, the default).
    pub refresh: bool,
    /// An existing object `vz` did not create must not be taken over: the object is exclusive
    /// and the configuration's `adopt:` does not name it.
    pub exclusive: bool,
}

/// The outcome for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What will happen.
    pub action: Action,
    /// Why.
    pub cause: Cause,
}

const fn outcome(action: Action, cause: Cause) -> Outcome {
    Outcome { action, cause }
}

/// The first round's answer for a desired object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Decided.
    Decided(Outcome),
    /// Ask the API server for a dry run, then decide with [`after_dry_run`].
    DryRun,
    /// Another `vz` platform manages the live object: never taken over.
    OtherPlatform(String),
    /// Someone else's object that `vz` takes over only when the configuration says so.
    NotOurs,
}

/// Whose object a live object is, when the state does not record it (or records another uid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The state records this very object (same uid).
    Recorded,
    /// Not recorded, but it carries this platform's labels: `vz` made it and lost track of it (the
    /// state file was lost). It is `vz`'s own again.
    Labelled,
    /// Not `vz`'s: it existed before and will be taken over (adopted) — again, when it carries the
    /// mark of an earlier takeover, whatever its labels say.
    Foreign,
}

/// Whose the live object is.
pub fn claim(record: Option<&Recorded>, live: &Live, want: &Wanted<'_>) -> Claim {
    if record.is_some_and(|r| live.uid.as_deref() == Some(r.uid.as_str())) {
        return Claim::Recorded;
    }
    if want.ownership == Ownership::Owned
        && live.managed_by_vz
        && !live.adopted_mark
        && live.platform.as_deref() == Some(want.platform)
    {
        return Claim::Labelled;
    }
    Claim::Foreign
}

/// The cause of a change to an object that is not (or no longer) recorded. Patching fields of
/// someone else's object is what the configuration asks for, never a takeover.
fn unrecorded_cause(claim: Claim, want: &Wanted<'_>) -> Cause {
    match claim {
        _ if want.ownership == Ownership::Patched => Cause::Config,
        Claim::Recorded => Cause::Config,
        Claim::Labelled => Cause::Recovered,
        Claim::Foreign => Cause::Adopt,
    }
}

/// Decide a desired object from what the state recorded and the live object (`None`: absent).
pub fn desired(record: Option<&Recorded>, live: Option<&Live>, want: &Wanted<'_>) -> Verdict {
    use Verdict::Decided;
    let patched = want.ownership == Ownership::Patched;
    if !want.refresh {
        // Compare with the state only.
        return Decided(match record {
            // Someone else creates it; apply waits for it.
            None if patched => outcome(Action::Update, Cause::AwaitOwner),
            None => outcome(Action::Create, Cause::Config),
            Some(_) if want.replace => outcome(Action::Replace, Cause::Requested),
            Some(r) if r.manifest_sha256 == want.sha256 => outcome(Action::NoOp, Cause::Config),
            Some(_) => outcome(Action::Update, Cause::Config),
        });
    }
    let Some(live) = live.filter(|l| !(patched && l.deleting)) else {
        return Decided(match (patched, record) {
            // Someone else creates it: apply waits for it to exist.
            (true, _) => outcome(Action::Update, Cause::AwaitOwner),
            (false, Some(_)) => outcome(Action::Create, Cause::DeletedOutside),
            (false, None) => outcome(Action::Create, Cause::Config),
        });
    };
    if live.deleting {
        // Going away (a destroy with --wait=false, say): created again once it is gone.
        return Decided(outcome(Action::Create, Cause::AwaitDeletion));
    }
    let claim = claim(record, live, want);
    if claim == Claim::Foreign
        && live.managed_by_vz
        && let Some(theirs) = &live.platform
        && theirs != want.platform
    {
        return Verdict::OtherPlatform(theirs.clone());
    }
    if claim == Claim::Foreign && want.exclusive && !patched {
        return Verdict::NotOurs;
    }
    if want.replace && !patched {
        return Decided(outcome(Action::Replace, Cause::Requested));
    }
    let record = record.filter(|_| claim == Claim::Recorded);
    if let Some(r) = record
        && r.manifest_sha256 == want.sha256
        && r.resource_version.is_some()
        && r.resource_version == live.resource_version
    {
        // Same configuration as last applied, and nobody wrote the object since.
        return Decided(outcome(Action::NoOp, Cause::Config));
    }
    if want.has_unknown {
        // No dry run is possible yet: apply renders the object again once the values are known.
        return Decided(outcome(Action::Update, unrecorded_cause(claim, want)));
    }
    Verdict::DryRun
}

/// What a server-side dry run of the desired object said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRunSaid {
    /// Applying would change nothing.
    NoChange,
    /// Applying would change some fields.
    Changes,
    /// An immutable field would change: the object must be deleted and created again.
    Immutable,
}

/// Finish deciding a desired object that needed a dry run.
pub fn after_dry_run(
    record: Option<&Recorded>,
    live: &Live,
    want: &Wanted<'_>,
    said: DryRunSaid,
) -> Outcome {
    let claim = claim(record, live, want);
    let config_unchanged =
        claim == Claim::Recorded && record.is_some_and(|r| r.manifest_sha256 == want.sha256);
    match (said, claim) {
        (DryRunSaid::Immutable, _) => outcome(Action::Replace, unrecorded_cause(claim, want)),
        // Not recorded: applying records it, even when no field changes.
        (_, Claim::Labelled | Claim::Foreign) => {
            outcome(Action::Update, unrecorded_cause(claim, want))
        }
        (DryRunSaid::NoChange, Claim::Recorded) => outcome(Action::NoOp, Cause::Config),
        (DryRunSaid::Changes, Claim::Recorded) if config_unchanged => {
            outcome(Action::Update, Cause::Drift)
        }
        (DryRunSaid::Changes, Claim::Recorded) => outcome(Action::Update, Cause::Config),
    }
}

/// How a recorded object came to be managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `vz` created it.
    Created,
    /// It existed before `vz` took it over.
    Adopted,
    /// `vz` owns only the fields it patched into it.
    Patched,
}

/// Decide a recorded object that is no longer desired (or everything, on destroy). `live_uid` is
/// the live object's uid (`None`: absent); without refresh the record's uid is assumed.
pub fn removal(recorded_uid: &str, origin: Origin, live_uid: Option<&str>) -> Action {
    match (live_uid == Some(recorded_uid), origin) {
        // Gone, or re-created by someone else (another uid): not ours to touch.
        (false, _) => Action::Forget,
        (true, Origin::Created) => Action::Delete,
        (true, Origin::Adopted | Origin::Patched) => Action::Release,
    }
}

/// Whether the object, once applied, was taken over rather than created by `vz`: it is then
/// released, not deleted, when it leaves.
pub fn adopted(o: Outcome) -> bool {
    o.cause == Cause::Adopt && o.action == Action::Update
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aaaa";

    fn want() -> Wanted<'static> {
        Wanted {
            sha256: SHA,
            has_unknown: false,
            ownership: Ownership::Owned,
            platform: "dev",
            replace: false,
            refresh: true,
            exclusive: false,
        }
    }

    fn record() -> Recorded {
        Recorded {
            uid: "u1".into(),
            manifest_sha256: SHA.into(),
            resource_version: Some("10".into()),
        }
    }

    fn live() -> Live {
        Live {
            uid: Some("u1".into()),
            resource_version: Some("10".into()),
            deleting: false,
            managed_by_vz: true,
            platform: Some("dev".into()),
            adopted_mark: false,
        }
    }

    fn decided(action: Action, cause: Cause) -> Verdict {
        Verdict::Decided(outcome(action, cause))
    }

    #[test]
    fn absent_and_unrecorded_is_created() {
        assert_eq!(
            desired(None, None, &want()),
            decided(Action::Create, Cause::Config)
        );
    }

    #[test]
    fn absent_but_recorded_was_deleted_outside_and_is_created_again() {
        assert_eq!(
            desired(Some(&record()), None, &want()),
            decided(Action::Create, Cause::DeletedOutside)
        );
    }

    #[test]
    fn an_object_being_deleted_is_created_after_its_deletion_finishes() {
        let going = Live {
            deleting: true,
            ..live()
        };
        assert_eq!(
            desired(Some(&record()), Some(&going), &want()),
            decided(Action::Create, Cause::AwaitDeletion)
        );
    }

    #[test]
    fn unchanged_config_and_untouched_object_need_no_dry_run() {
        assert_eq!(
            desired(Some(&record()), Some(&live()), &want()),
            decided(Action::NoOp, Cause::Config)
        );
    }

    #[test]
    fn a_written_object_or_a_changed_config_needs_a_dry_run() {
        let written = Live {
            resource_version: Some("11".into()),
            ..live()
        };
        assert_eq!(
            desired(Some(&record()), Some(&written), &want()),
            Verdict::DryRun
        );
        let changed = Wanted {
            sha256: "bbbb",
            ..want()
        };
        assert_eq!(
            desired(Some(&record()), Some(&live()), &changed),
            Verdict::DryRun
        );
    }

    #[test]
    fn after_a_dry_run_differences_are_drift_when_the_config_is_unchanged() {
        let r = record();
        assert_eq!(
            after_dry_run(Some(&r), &live(), &want(), DryRunSaid::Changes),
            outcome(Action::Update, Cause::Drift)
        );
        let changed = Wanted {
            sha256: "bbbb",
            ..want()
        };
        assert_eq!(
            after_dry_run(Some(&r), &live(), &changed, DryRunSaid::Changes),
            outcome(Action::Update, Cause::Config)
        );
        assert_eq!(
            after_dry_run(Some(&r), &live(), &changed, DryRunSaid::NoChange),
            outcome(Action::NoOp, Cause::Config)
        );
    }

    #[test]
    fn an_immutable_field_forces_a_replacement() {
        let changed = Wanted {
            sha256: "bbbb",
            ..want()
        };
        assert_eq!(
            after_dry_run(Some(&record()), &live(), &changed, DryRunSaid::Immutable),
            outcome(Action::Replace, Cause::Config)
        );
    }

    #[test]
    fn replace_is_requested_when_the_object_exists() {
        let r = Wanted {
            replace: true,
            ..want()
        };
        assert_eq!(
            desired(Some(&record()), Some(&live()), &r),
            decided(Action::Replace, Cause::Requested)
        );
        // Nothing to replace: it is simply created.
        assert_eq!(
            desired(None, None, &r),
            decided(Action::Create, Cause::Config)
        );
    }

    #[test]
    fn an_unlabelled_unrecorded_object_is_adopted() {
        let theirs = Live {
            managed_by_vz: false,
            platform: None,
            ..live()
        };
        assert_eq!(desired(None, Some(&theirs), &want()), Verdict::DryRun);
        let o = after_dry_run(None, &theirs, &want(), DryRunSaid::NoChange);
        assert_eq!(o, outcome(Action::Update, Cause::Adopt));
        assert!(adopted(o));
    }

    #[test]
    fn an_exclusive_object_someone_else_made_is_refused_but_vzs_own_is_not() {
        let exclusive = Wanted {
            exclusive: true,
            ..want()
        };
        let theirs = Live {
            managed_by_vz: false,
            platform: None,
            ..live()
        };
        assert_eq!(desired(None, Some(&theirs), &exclusive), Verdict::NotOurs);
        let recreated = Live {
            uid: Some("u2".into()),
            ..theirs.clone()
        };
        assert_eq!(
            desired(Some(&record()), Some(&recreated), &exclusive),
            Verdict::NotOurs
        );
        // Recorded, or recovered from this platform's labels: vz's own.
        assert_eq!(
            desired(Some(&record()), Some(&live()), &exclusive),
            decided(Action::NoOp, Cause::Config)
        );
        assert_eq!(desired(None, Some(&live()), &exclusive), Verdict::DryRun);
        // Absent: created as usual.
        assert_eq!(
            desired(None, None, &exclusive),
            decided(Action::Create, Cause::Config)
        );
    }

    #[test]
    fn an_object_with_this_platforms_labels_is_recovered_not_adopted() {
        // The state file was lost: the object still says it is ours.
        assert_eq!(desired(None, Some(&live()), &want()), Verdict::DryRun);
        let o = after_dry_run(None, &live(), &want(), DryRunSaid::NoChange);
        assert_eq!(o, outcome(Action::Update, Cause::Recovered));
        assert!(!adopted(o), "destroy deletes it");
    }

    #[test]
    fn an_object_vz_took_over_is_taken_over_again_after_the_state_is_lost_never_recovered() {
        // Its labels say vz, but the mark says it existed before vz: destroy must release it.
        let taken = Live {
            adopted_mark: true,
            ..live()
        };
        assert_eq!(claim(None, &taken, &want()), Claim::Foreign);
        let o = after_dry_run(None, &taken, &want(), DryRunSaid::NoChange);
        assert_eq!(o, outcome(Action::Update, Cause::Adopt));
        assert!(adopted(o));
        assert_eq!(claim(Some(&record()), &taken, &want()), Claim::Recorded);
    }

    #[test]
    fn an_object_recreated_by_someone_else_is_not_the_recorded_one() {
        let other = Live {
            uid: Some("u2".into()),
            managed_by_vz: false,
            platform: None,
            ..live()
        };
        let o = after_dry_run(Some(&record()), &other, &want(), DryRunSaid::NoChange);
        assert_eq!(o, outcome(Action::Update, Cause::Adopt));
    }

    #[test]
    fn another_platforms_object_is_refused() {
        let theirs = Live {
            platform: Some("prod".into()),
            ..live()
        };
        assert_eq!(
            desired(None, Some(&theirs), &want()),
            Verdict::OtherPlatform("prod".into())
        );
    }

    #[test]
    fn unknown_values_skip_the_dry_run() {
        let w = Wanted {
            has_unknown: true,
            sha256: "bbbb",
            ..want()
        };
        assert_eq!(
            desired(Some(&record()), Some(&live()), &w),
            decided(Action::Update, Cause::Config)
        );
        let theirs = Live {
            managed_by_vz: false,
            platform: None,
            ..live()
        };
        assert_eq!(
            desired(None, Some(&theirs), &w),
            decided(Action::Update, Cause::Adopt)
        );
    }

    #[test]
    fn a_patched_object_that_does_not_exist_is_awaited_never_created() {
        let w = Wanted {
            ownership: Ownership::Patched,
            ..want()
        };
        assert_eq!(
            desired(None, None, &w),
            decided(Action::Update, Cause::AwaitOwner)
        );
        assert_eq!(
            desired(Some(&record()), None, &w),
            decided(Action::Update, Cause::AwaitOwner)
        );
    }

    #[test]
    fn patching_someone_elses_object_is_a_config_change_not_a_takeover() {
        let w = Wanted {
            ownership: Ownership::Patched,
            ..want()
        };
        let theirs = Live {
            managed_by_vz: false,
            platform: None,
            ..live()
        };
        let o = after_dry_run(None, &theirs, &w, DryRunSaid::Changes);
        assert_eq!(o, outcome(Action::Update, Cause::Config));
        assert!(!adopted(o));
    }

    #[test]
    fn a_patched_object_is_never_replaced_or_claimed_by_labels() {
        let w = Wanted {
            ownership: Ownership::Patched,
            replace: true,
            ..want()
        };
        let theirs = Live {
            managed_by_vz: false,
            platform: None,
            ..live()
        };
        assert_eq!(desired(None, Some(&theirs), &w), Verdict::DryRun);
        assert_eq!(claim(None, &live(), &w), Claim::Foreign);
    }

    #[test]
    fn without_refresh_only_the_hashes_decide() {
        let w = Wanted {
            refresh: false,
            ..want()
        };
        assert_eq!(
            desired(None, None, &w),
            decided(Action::Create, Cause::Config)
        );
        assert_eq!(
            desired(Some(&record()), None, &w),
            decided(Action::NoOp, Cause::Config)
        );
        let patched = Wanted {
            ownership: Ownership::Patched,
            ..w.clone()
        };
        assert_eq!(
            desired(None, None, &patched),
            decided(Action::Update, Cause::AwaitOwner),
            "never created, even without reading the cluster"
        );
        let changed = Wanted {
            sha256: "bbbb",
            ..w.clone()
        };
        assert_eq!(
            desired(Some(&record()), None, &changed),
            decided(Action::Update, Cause::Config)
        );
        let replace = Wanted { replace: true, ..w };
        assert_eq!(
            desired(Some(&record()), None, &replace),
            decided(Action::Replace, Cause::Requested)
        );
    }

    #[test]
    fn removal_deletes_what_vz_created_and_releases_the_rest() {
        assert_eq!(removal("u1", Origin::Created, Some("u1")), Action::Delete);
        assert_eq!(removal("u1", Origin::Adopted, Some("u1")), Action::Release);
        assert_eq!(removal("u1", Origin::Patched, Some("u1")), Action::Release);
    }

    #[test]
    fn removal_forgets_what_is_gone_or_was_recreated_by_someone_else() {
        assert_eq!(removal("u1", Origin::Created, None), Action::Forget);
        assert_eq!(removal("u1", Origin::Created, Some("u2")), Action::Forget);
        assert_eq!(removal("u1", Origin::Adopted, Some("u2")), Action::Forget);
    }

    #[test]
    fn live_facts_are_read_from_the_object() {
        let obj = serde_json::json!({"metadata": {
            "uid": "u9", "resourceVersion": "7", "deletionTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app.kubernetes.io/managed-by": "vz", "vz.dev/platform": "dev"}}});
        assert_eq!(
            Live::of(&obj),
            Live {
                uid: Some("u9".into()),
                resource_version: Some("7".into()),
                deleting: true,
                managed_by_vz: true,
                platform: Some("dev".into()),
                adopted_mark: false,
            }
        );
    }
}
