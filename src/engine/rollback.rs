//! Rollback's bookkeeping, as pure functions: how each change is undone, how an undo is reported,
//! and what the state records once it is done (or has failed). The undoing itself (API calls) is
//! in [`super::apply`].

use serde_json::Value;
use vz_state::State;

use crate::cluster::ObjectRef;

/// How to undo one change.
#[derive(Debug, Clone)]
pub enum Undo {
    /// The run created the object: delete it.
    Created {
        /// The uid of the object the run created.
        uid: Option<String>,
    },
    /// The run changed the object: put this content back.
    Updated {
        /// The object as it was read just before the change.
        before: Value,
    },
    /// The run deleted the object: re-create it from this content.
    Deleted {
        /// The object as it was read just before the deletion.
        before: Value,
    },
    /// The run applied the object where the plan found none, and found it created by someone else
    /// meanwhile: `vz`'s fields are handed over and its labels removed (see
    /// [`crate::cluster::Cluster::release`]); what it was before the run is not known.
    TakenOver,
    /// The run replaced the object: delete the new one, re-create the old one from this content.
    Replaced {
        /// The old object.
        before: Value,
        /// The uid of the new one, once created.
        uid: Option<String>,
    },
}

/// One journaled change.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Order in which the step tier that made the change started; undone from the highest.
    pub seq: usize,
    /// The object's address.
    pub address: String,
    /// The object.
    pub object: ObjectRef,
    /// How to undo the change.
    pub undo: Undo,
}

/// How an undo went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undone {
    /// Undone; a re-created object has this new uid.
    Done {
        /// The uid of the re-created object (deleted or replaced objects).
        new_uid: Option<String>,
    },
    /// The undo failed: the object stays as the run left it.
    Failed,
}

/// (past tense, infinitive, why) of an undo, for the report.
pub fn describe_undo(u: &Undo) -> (&'static str, &'static str, &'static str) {
    match u {
        Undo::Created { .. } => ("deleted", "delete", "created by this run"),
        Undo::Updated { .. } => ("restored", "restore", "changed by this run"),
        Undo::Deleted { .. } => ("re-created", "re-create", "deleted by this run"),
        Undo::Replaced { .. } => ("put back", "put back", "replaced by this run"),
        Undo::TakenOver => (
            "released",
            "release",
            "created by someone else since the plan and taken over by this run",
        ),
    }
}

/// Bring `state` — the state from before the run, being rolled back to — in line with one undo of
/// the object at `address`. `run_state` is the state as the run left it. A successful undo leaves
/// the record as it was before the run (with a re-created object's new uid); a failed one records
/// the object as it really is now.
pub fn settle(state: &mut State, address: &str, undo: &Undo, outcome: &Undone, run_state: &State) {
    match (outcome, undo) {
        (Undone::Done { new_uid: Some(uid) }, Undo::Deleted { .. } | Undo::Replaced { .. }) => {
            if let Some(mut rec) = state.get(address).cloned() {
                rec.uid = uid.clone();
                state.upsert(rec);
            }
        }
        (Undone::Done { .. }, _) => {}
        (Undone::Failed, Undo::Created { .. } | Undo::Updated { .. } | Undo::TakenOver) => {
            // As the run left it: updated (recorded), or released (no longer recorded).
            match run_state.get(address) {
                Some(rec) => state.upsert(rec.clone()),
                None => {
                    state.remove(address);
                }
            }
        }
        (Undone::Failed, Undo::Deleted { .. }) => {
            state.remove(address);
        }
        (Undone::Failed, Undo::Replaced { uid, .. }) => {
            // The new object exists when the run recorded its uid; otherwise there is none.
            match (run_state.get(address), uid) {
                (Some(rec), Some(_)) => state.upsert(rec.clone()),
                _ => {
                    state.remove(address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vz_state::ObjectRecord;

    const ADDR: &str = "namespaces/Namespace/a";

    fn rec(uid: &str, sha: &str) -> ObjectRecord {
        ObjectRecord {
            address: ADDR.into(),
            step: "namespaces".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "a".into(),
            uid: uid.into(),
            manifest_sha256: sha.into(),
            resource_version: None,
            depends_on: vec![],
            adopted: false,
            patched: false,
            outputs: Default::default(),
            certificate: None,
        }
    }

    fn state_with(r: Option<ObjectRecord>) -> State {
        let mut s = State::new("dev", "0");
        if let Some(r) = r {
            s.upsert(r);
        }
        s
    }

    fn settled(
        before: Option<ObjectRecord>,
        run: Option<ObjectRecord>,
        undo: Undo,
        outcome: Undone,
    ) -> Option<ObjectRecord> {
        let mut state = state_with(before);
        settle(&mut state, ADDR, &undo, &outcome, &state_with(run));
        state.get(ADDR).cloned()
    }

    fn before() -> Value {
        serde_json::json!({"metadata": {"name": "a"}})
    }

    #[test]
    fn an_undone_create_leaves_no_record() {
        let got = settled(
            None,
            Some(rec("new", "s2")),
            Undo::Created {
                uid: Some("new".into()),
            },
            Undone::Done { new_uid: None },
        );
        assert_eq!(got, None);
    }

    #[test]
    fn a_take_over_undone_leaves_no_record_and_one_that_failed_keeps_the_runs() {
        let undone = settled(
            None,
            Some(rec("theirs", "s2")),
            Undo::TakenOver,
            Undone::Done { new_uid: None },
        );
        assert_eq!(undone, None);
        let failed = settled(
            None,
            Some(rec("theirs", "s2")),
            Undo::TakenOver,
            Undone::Failed,
        );
        assert_eq!(failed, Some(rec("theirs", "s2")));
    }

    #[test]
    fn an_undone_update_keeps_the_record_from_before_the_run() {
        let got = settled(
            Some(rec("u1", "s1")),
            Some(rec("u1", "s2")),
            Undo::Updated { before: before() },
            Undone::Done { new_uid: None },
        );
        assert_eq!(got, Some(rec("u1", "s1")));
    }

    #[test]
    fn an_undone_delete_or_replace_follows_the_recreated_uid() {
        for undo in [
            Undo::Deleted { before: before() },
            Undo::Replaced {
                before: before(),
                uid: Some("new".into()),
            },
        ] {
            let got = settled(
                Some(rec("u1", "s1")),
                None,
                undo,
                Undone::Done {
                    new_uid: Some("u3".into()),
                },
            );
            assert_eq!(got, Some(rec("u3", "s1")));
        }
    }

    #[test]
    fn a_failed_undo_of_a_create_or_update_records_what_the_run_left() {
        let got = settled(
            None,
            Some(rec("new", "s2")),
            Undo::Created {
                uid: Some("new".into()),
            },
            Undone::Failed,
        );
        assert_eq!(got, Some(rec("new", "s2")));
        let got = settled(
            Some(rec("u1", "s1")),
            Some(rec("u1", "s2")),
            Undo::Updated { before: before() },
            Undone::Failed,
        );
        assert_eq!(got, Some(rec("u1", "s2")));
    }

    #[test]
    fn a_failed_undo_of_a_release_leaves_the_object_unrecorded() {
        // A release is journaled as an update; the run dropped the record.
        let got = settled(
            Some(rec("u1", "s1")),
            None,
            Undo::Updated { before: before() },
            Undone::Failed,
        );
        assert_eq!(got, None);
    }

    #[test]
    fn a_failed_undo_of_a_delete_records_nothing() {
        let got = settled(
            Some(rec("u1", "s1")),
            None,
            Undo::Deleted { before: before() },
            Undone::Failed,
        );
        assert_eq!(got, None);
    }

    #[test]
    fn a_failed_undo_of_a_replace_records_the_new_object_only_if_it_was_made() {
        let got = settled(
            Some(rec("u1", "s1")),
            Some(rec("u2", "s2")),
            Undo::Replaced {
                before: before(),
                uid: Some("u2".into()),
            },
            Undone::Failed,
        );
        assert_eq!(got, Some(rec("u2", "s2")));
        let got = settled(
            Some(rec("u1", "s1")),
            Some(rec("u1", "s1")),
            Undo::Replaced {
                before: before(),
                uid: None,
            },
            Undone::Failed,
        );
        assert_eq!(got, None);
    }
}
