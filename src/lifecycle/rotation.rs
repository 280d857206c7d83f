//! CA rotation with overlap: what a plan does to a CA `vz` issues itself, decided from the CA's
//! Secret, the certificates it signed and the clock (pure: no cluster here).
//!
//! A CA's Secret holds the CA that signs (`tls.crt`, `tls.key`) and its **trust bundle**
//! (`ca.crt`): the CAs whose certificates are to be trusted. Every copy of the CA follows the
//! bundle: `verrazzano-tls-ca`, the webhooks' `caBundle`s, and the trust key of each certificate
//! the CA signed (`ca.crt`, or `root-cert.pem` of Istio's `cacerts`). Outside a rotation the
//! bundle is the signing CA alone. A rotation (the CA expires within `renewBeforeDays`, its key
//! type changes, or `--replace` names it) takes three applies, `caOverlap` (default 24h) apart:
//!
//! 1. **announce**: a new CA is issued into `next.crt` and `next.key` and joins the bundle; the
//!    current CA keeps signing, so nothing served changes while the copies spread (kubelets
//!    refresh mounted Secrets within a minute or so, people refetch `verrazzano-tls-ca`);
//! 2. **switch**, once the new CA has been in the bundle for `caOverlap`: it takes over
//!    `tls.crt` and `tls.key`, and every certificate it signs is issued again from it. Both CAs
//!    are trusted, so a server still presenting the old certificate and one presenting the new
//!    are both accepted;
//! 3. **trim**, once every certificate the CA signs was issued by the new CA at least `caOverlap`
//!    ago: the old CA leaves the bundle, and the copies follow.
//!
//! Each phase is planned when it is due, so a plan right after an apply stays empty until the
//! next phase may begin. With `caOverlap: 0s` the new CA signs at once (announce and switch in
//! one apply, the copies written before the certificates) and the next plan trims. An expired CA,
//! or one that cannot be read, is replaced at once: it cannot be trusted through an overlap.

use vz_providers::pki::{self, CertInfo};

use crate::lifecycle::certificates::date;

/// The key of a CA's Secret holding the announced CA's certificate.
pub const NEXT_CERT: &str = "next.crt";
/// The key of a CA's Secret holding the announced CA's private key.
pub const NEXT_KEY: &str = "next.key";

/// A CA's Secret as a rotation sees it.
#[derive(Debug, Clone)]
pub struct CaView {
    /// The CA that signs (`tls.crt`).
    pub current: CertInfo,
    /// Its certificate, PEM.
    pub current_pem: String,
    /// The trust bundle (`ca.crt`), certificate by certificate: PEM and what it says.
    pub trust: Vec<(String, CertInfo)>,
    /// The announced CA (`next.crt`, with `next.key`), during a rotation.
    pub next: Option<CertInfo>,
}

impl CaView {
    /// The view of a CA Secret's `tls.crt`, `ca.crt` and `next.crt` (PEM texts); `None` when
    /// `tls.crt` cannot be read. Unreadable certificates of the bundle are left out.
    pub fn read(tls_crt: &str, ca_crt: Option<&str>, next_crt: Option<&str>) -> Option<CaView> {
        let current = pki::inspect(tls_crt).ok()?;
        let current_pem = pki::split_certificates(tls_crt).into_iter().next()?;
        let trust = ca_crt
            .map(pki::split_certificates)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|pem| pki::inspect(&pem).ok().map(|i| (pem, i)))
            .collect();
        let next = next_crt.and_then(|n| pki::inspect(n).ok());
        Some(CaView {
            current,
            current_pem,
            trust,
            next,
        })
    }

    /// The bundle's common names other than the signing CA's, for messages.
    fn others(&self, keep: impl Fn(&CertInfo) -> bool) -> Vec<&CertInfo> {
        self.trust
            .iter()
            .map(|(_, i)| i)
            .filter(|i| i.fingerprint != self.current.fingerprint && !keep(i))
            .collect()
    }
}

/// A certificate the CA signs, as it is in the cluster.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The key id of the CA that issued it.
    pub issuer_key_id: Option<String>,
    /// Its `not_before`.
    pub not_before: i64,
}

/// When a certificate with `not_before` was issued (`vz` backdates them).
fn issued_at(not_before: i64) -> i64 {
    not_before + pki::BACKDATE
}

/// What the plan does to the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Keep,
    /// A new CA signs now (new, unusable, expired, or `caOverlap: 0s`); the bundle keeps the
    /// current one, if it is good.
    Issue,
    /// A new CA joins the bundle; it takes over at `takes_over`.
    Announce {
        /// Earliest time of the switch.
        takes_over: i64,
    },
    /// The announced CA (in the bundle since `announced`) takes over.
    Switch {
        /// When it was announced.
        announced: i64,
    },
    /// The CAs with these fingerprints leave the bundle (common names in `names`).
    Trim {
        /// Their fingerprints.
        fingerprints: Vec<String>,
        /// Their common names, for messages.
        names: Vec<String>,
        /// Whether they leave only because they expired (what the current CA signs is not
        /// settled yet).
        expired: bool,
    },
}

/// What to do to a CA in `view`, due for renewal when `due`, with `overlap` seconds of overlap,
/// signing `signed`, at `now`. `replace`: `--replace` names it.
pub fn decide(
    view: &CaView,
    due: bool,
    replace: bool,
    overlap: i64,
    signed: &[Signed],
    now: i64,
) -> Step {
    if let Some(next) = &view.next {
        let good = next.not_after > now;
        if !good {
            // The announced CA expired unused: announce another.
            return if overlap == 0 {
                Step::Issue
            } else {
                Step::Announce {
                    takes_over: now + overlap,
                }
            };
        }
        let expired = view.current.not_after <= now;
        if replace || expired || issued_at(next.not_before) + overlap <= now {
            return Step::Switch {
                announced: issued_at(next.not_before),
            };
        }
        return Step::Keep;
    }
    if due || replace {
        if overlap == 0 || view.current.not_after <= now {
            return Step::Issue;
        }
        return Step::Announce {
            takes_over: now + overlap,
        };
    }
    // Settled: every certificate it signs comes from the current CA, issued at least `overlap`
    // ago, and the current CA signs since (it was announced `overlap` before it took over).
    let current = view.current.key_id.as_deref();
    let settled = issued_at(view.current.not_before) + 2 * overlap <= now
        && signed.iter().all(|s| {
            s.issuer_key_id.as_deref() == current && issued_at(s.not_before) + overlap <= now
        });
    // Expired CAs leave the bundle in any case.
    let dropped = view.others(|i| !settled && i.not_after > now);
    if dropped.is_empty() {
        return Step::Keep;
    }
    Step::Trim {
        fingerprints: dropped.iter().map(|i| i.fingerprint.clone()).collect(),
        names: dropped
            .iter()
            .map(|i| i.common_name.clone().unwrap_or_else(|| i.serial.clone()))
            .collect(),
        expired: !settled,
    }
}

/// What to tell of a CA whose rotation waits for the clock ([`Step::Keep`] with an announced CA,
/// or old CAs still in its bundle). `None` outside a rotation.
pub fn waiting(view: &CaView, overlap: i64, signed: &[Signed], now: i64) -> Option<String> {
    let name = |i: &CertInfo| i.common_name.clone().unwrap_or_else(|| i.serial.clone());
    if let Some(next) = &view.next {
        return Some(format!(
            "CA rotation under way: {} is in its trust bundle since {}; it signs from the first apply after {}",
            name(next),
            date(issued_at(next.not_before)),
            date(issued_at(next.not_before) + overlap)
        ));
    }
    let old = view.others(|i| i.not_after <= now);
    if old.is_empty() {
        return None;
    }
    let settles = signed
        .iter()
        .map(|s| issued_at(s.not_before) + overlap)
        .chain([issued_at(view.current.not_before) + 2 * overlap])
        .max()
        .unwrap_or(now);
    Some(format!(
        "CA rotation under way: {} signs; {} stays in its trust bundle until the first apply after {}",
        name(&view.current),
        old.iter().map(|i| name(i)).collect::<Vec<_>>().join(", "),
        date(settles)
    ))
}

/// The bundle after an issue or an announcement: `first` (the new CA), then the CAs of `old`
/// (the bundle before) still good at `now` (the current CA included, with `current` when `old`
/// lacks it).
pub fn grown(first: &str, current: Option<&str>, old: Option<&str>, now: i64) -> String {
    let mut out = vec![first.to_string()];
    let mut certs = old.map(pki::split_certificates).unwrap_or_default();
    if let Some(c) = current {
        certs.extend(pki::split_certificates(c).into_iter().take(1));
    }
    for pem in certs {
        let Ok(info) = pki::inspect(&pem) else {
            continue;
        };
        let fresh = info.not_after > now;
        let seen = out
            .iter()
            .any(|o| pki::inspect(o).is_ok_and(|i| i.fingerprint == info.fingerprint));
        if fresh && !seen {
            out.push(pem);
        }
    }
    out.concat()
}

/// The bundle `pem` without the certificates whose fingerprints `dropped` lists.
pub fn trimmed(pem: &str, dropped: &[String]) -> String {
    pki::split_certificates(pem)
        .into_iter()
        .filter(|c| pki::inspect(c).map_or(true, |i| !dropped.contains(&i.fingerprint)))
        .collect::<Vec<_>>()
        .concat()
}

/// A step as the plan carries it to apply (see [`crate::engine::plan::Change::intent`]).
pub fn intent(step: &Step) -> Option<String> {
    match step {
        Step::Keep | Step::Issue => None,
        Step::Announce { .. } => Some("announce".into()),
        Step::Switch { .. } => Some("switch".into()),
        Step::Trim { fingerprints, .. } => Some(format!("trim {}", fingerprints.join(" "))),
    }
}

/// What apply does, from the plan's intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Issue a CA into `next.*` and add it to the bundle.
    Announce,
    /// Move `next.*` into `tls.*`.
    Switch,
    /// Drop these fingerprints from the bundle.
    Trim(Vec<String>),
}

impl Intent {
    /// The intent a plan carries, if it is a rotation's.
    pub fn parse(s: &str) -> Option<Intent> {
        let mut words = s.split_whitespace();
        match words.next()? {
            "announce" => Some(Intent::Announce),
            "switch" => Some(Intent::Switch),
            "trim" => Some(Intent::Trim(words.map(str::to_string).collect())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vz_providers::pki::{DAY, KeyAlgorithm, Subject};

    const NOW: i64 = 1_800_000_000;
    const HOUR: i64 = 3600;

    fn ca(cn: &str, at: i64) -> String {
        let s = Subject {
            common_name: cn.into(),
            organization: None,
            sans: vec![],
            validity_secs: 3650 * DAY,
            key: KeyAlgorithm::EcdsaP256,
        };
        pki::self_signed_ca(&s, at).expect("ca").cert_pem
    }

    fn key_id(pem: &str) -> Option<String> {
        pki::inspect(pem).expect("cert").key_id
    }

    #[test]
    fn a_due_ca_is_announced_then_switched_after_the_overlap_then_trimmed() {
        let old = ca("old", NOW - 400 * DAY);
        let steady = CaView::read(&old, Some(&old), None).expect("view");
        let by_old = [Signed {
            issuer_key_id: key_id(&old),
            not_before: NOW - 10 * DAY,
        }];
        assert_eq!(
            decide(&steady, false, false, 24 * HOUR, &by_old, NOW),
            Step::Keep
        );
        assert_eq!(
            decide(&steady, true, false, 24 * HOUR, &by_old, NOW),
            Step::Announce {
                takes_over: NOW + 24 * HOUR
            }
        );

        // Announced 23 hours ago: nothing until the overlap is over, then the switch.
        let new = ca("new", NOW - 25 * HOUR);
        let bundle = grown(&new, Some(&old), Some(&old), NOW);
        assert_eq!(pki::split_certificates(&bundle).len(), 2);
        let announced = CaView::read(&old, Some(&bundle), Some(&new)).expect("view");
        assert_eq!(
            decide(&announced, true, false, 24 * HOUR, &by_old, NOW - 2 * HOUR),
            Step::Keep
        );
        assert_eq!(
            decide(&announced, false, false, 24 * HOUR, &by_old, NOW),
            Step::Switch {
                announced: NOW - 25 * HOUR
            }
        );
        assert_eq!(
            decide(&announced, false, true, 24 * HOUR, &by_old, NOW - 2 * HOUR),
            Step::Switch {
                announced: NOW - 25 * HOUR
            },
            "--replace switches at once"
        );

        // Switched: the old CA stays while a certificate it signed is left, or for the overlap.
        let switched = CaView::read(&new, Some(&bundle), None).expect("view");
        assert_eq!(
            decide(&switched, false, false, 24 * HOUR, &by_old, NOW),
            Step::Keep
        );
        let by_new = [Signed {
            issuer_key_id: key_id(&new),
            not_before: NOW - pki::BACKDATE,
        }];
        assert_eq!(
            decide(&switched, false, false, 24 * HOUR, &by_new, NOW + HOUR),
            Step::Keep
        );
        let fingerprint = pki::inspect(&old).expect("old").fingerprint;
        let step = decide(&switched, false, false, 24 * HOUR, &by_new, NOW + 24 * HOUR);
        assert_eq!(
            step,
            Step::Trim {
                fingerprints: vec![fingerprint.clone()],
                names: vec!["old".into()],
                expired: false,
            }
        );
        assert_eq!(trimmed(&bundle, &[fingerprint]), new);
        assert_eq!(
            Intent::parse(&intent(&step).expect("intent")),
            Some(Intent::Trim(vec![
                pki::inspect(&old).expect("old").fingerprint
            ]))
        );
    }

    #[test]
    fn without_overlap_or_with_an_expired_ca_the_new_ca_signs_at_once() {
        let old = ca("old", NOW - 400 * DAY);
        let view = CaView::read(&old, Some(&old), None).expect("view");
        assert_eq!(decide(&view, true, false, 0, &[], NOW), Step::Issue);
        let expired = ca("gone", NOW - 3651 * DAY);
        let view = CaView::read(&expired, Some(&expired), None).expect("view");
        assert_eq!(decide(&view, true, false, 24 * HOUR, &[], NOW), Step::Issue);
        // An expired CA in the bundle leaves it whatever still uses it.
        let new = ca("new", NOW - HOUR);
        let both = format!("{new}{expired}");
        let view = CaView::read(&new, Some(&both), None).expect("view");
        let by_expired = [Signed {
            issuer_key_id: key_id(&expired),
            not_before: NOW - 3651 * DAY,
        }];
        assert!(matches!(
            decide(&view, false, false, 24 * HOUR, &by_expired, NOW),
            Step::Trim { .. }
        ));
        assert_eq!(grown(&new, Some(&expired), Some(&expired), NOW), new);
    }
}
