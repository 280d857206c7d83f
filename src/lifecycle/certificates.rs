//! Certificates and copied values: the lifecycle of a manifest's [`Manifest::certificate`] and
//! [`Manifest::fills`].
//!
//! A certificate's Secret is planned like any object, with one more question: is the certificate
//! in the cluster still good? Before the plan ([`Lifecycle::before_plan`]), [`prepare`] reads the Secrets involved once (the certificates', their
//! issuers', the sources of copied values) and decides, in plan order so that issuers come first,
//! which certificates are issued in this run and why ([`CertPlan::issued`]): new, names changed,
//! key type changed, another or a re-issued issuer, unreadable, or expiring within
//! `renewBeforeDays`. Everything else keeps the key and certificate it has: the plan dry-runs the
//! Secret with its live data ([`CertPlan::for_dry_run`]), so a plan right after apply is empty.
//!
//! A CA `vz` issues itself rotates with overlap instead of being issued again: [`rotation`]
//! decides the phase (announce, switch, trim) from its Secret, the certificates it signs and the
//! clock; the plan carries the phase to apply as the change's intent. A CA's `ca.crt` is its trust
//! bundle: the copies of the CA and the trust key of each certificate it signs follow it.
//!
//! Key material is made only by [`materialize`], just before the Secret is applied
//! ([`Lifecycle::before_apply`]), from the issuer read from the
//! cluster at that moment. Nothing here returns or logs a private key: plans carry public facts
//! ([`CertFacts`]) only, and the state records those.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;
use vz_providers::manifest::{CertSpec, Fill, FillTarget, Layout, Role};
use vz_providers::names::SecretRef;
use vz_providers::pki::{self, CertInfo, Issued, Renewal};
use vz_providers::{Manifest, Step};
use vz_state::{CertFacts, State};

use crate::cluster::{Cluster, ObjectRef};
use crate::engine::plan::Seen;
use crate::lifecycle::rotation::{self, CaView, Intent, NEXT_CERT, NEXT_KEY, Signed};
use crate::lifecycle::{Lifecycle, PlanContext, Planning, Prepared};

/// The certificates' lifecycle (see the module's documentation).
pub struct Certificates;

#[async_trait::async_trait]
impl Lifecycle for Certificates {
    async fn before_plan(
        &self,
        cx: &PlanContext<'_>,
        desired: &[(&Step, &Manifest)],
        seen: &mut Seen,
    ) -> Result<Option<Box<dyn Planning>>> {
        let plan = prepare(
            cx.cluster,
            desired,
            seen,
            cx.state,
            cx.refresh,
            cx.parallelism,
            cx.replace,
        )
        .await?;
        Ok(Some(Box::new(plan)))
    }

    async fn before_apply(
        &self,
        cluster: &Cluster,
        m: &Manifest,
        live: Option<&Value>,
        renew: bool,
        intent: Option<&str>,
    ) -> Result<Option<Manifest>> {
        if m.certificate.is_none() && m.fills.is_empty() {
            return Ok(None);
        }
        materialize(cluster, m, live, renew, intent).await.map(Some)
    }

    fn after_apply(&self, m: &Manifest, applied: &Value) -> Option<CertFacts> {
        applied_facts(m, applied)
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The reference of a Secret.
fn secret_ref(r: &SecretRef) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: Some(r.namespace.clone()),
        name: r.name.clone(),
    }
}

/// The Secret a manifest is, if it is one.
fn secret_of(m: &Manifest) -> Option<SecretRef> {
    (m.kind == "Secret")
        .then(|| SecretRef::new(m.namespace.as_deref().unwrap_or_default(), &m.name))
}

/// A Secret's `data[key]`, decoded as text.
fn data_text(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.get("data")?.get(key)?.as_str()?;
    let bytes = B64.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// The public facts of a certificate, as the state records them.
pub fn facts(info: &CertInfo) -> CertFacts {
    CertFacts {
        fingerprint: info.fingerprint.clone(),
        serial: info.serial.clone(),
        sans: info.sans.clone(),
        key_id: info.key_id.clone(),
        issuer_key_id: info.issuer_key_id.clone(),
        key_algorithm: info.key_algorithm.clone(),
        not_after: info.not_after,
    }
}

/// The certificate a live Secret of `layout` holds, if it holds a readable one and its key.
fn live_cert(secret: &Value, layout: Layout) -> Result<CertInfo, String> {
    let cert = data_text(secret, layout.cert_key())
        .ok_or_else(|| format!("it has no {}", layout.cert_key()))?;
    if data_text(secret, layout.private_key()).is_none() {
        return Err(format!("it has no {}", layout.private_key()));
    }
    pki::inspect(&cert).map_err(|e| format!("its {} cannot be read: {e}", layout.cert_key()))
}

/// What the planner knows about certificates and copied values.
#[derive(Debug, Default)]
pub struct CertPlan {
    /// Secrets read from the cluster (`None`: absent), unmasked: never printed or saved.
    sources: HashMap<SecretRef, Option<Value>>,
    /// Certificates issued by this run: `None` for a new one, else why it is issued again.
    issued: HashMap<SecretRef, Option<String>>,
    /// The facts of the certificates in the cluster (or, without refresh, in the state).
    current: HashMap<SecretRef, CertFacts>,
    /// The CA trust bundles (`ca.crt`) this run changes, and how.
    trust: HashMap<SecretRef, Trust>,
    /// The CAs a rotation moves on in this run: what the plan says of each, and does.
    rotating: HashMap<SecretRef, Note>,
}

/// How a CA's trust bundle changes in this run (see [`rotation`]).
#[derive(Debug, Clone)]
enum Trust {
    /// A CA joins it: the copies are known only after apply. What the copies say.
    Grows(String),
    /// CAs leave it: the bundle after (PEM), and what the copies say.
    Shrinks { bundle: String, note: String },
}

impl Trust {
    fn note(&self) -> &str {
        match self {
            Trust::Grows(n) | Trust::Shrinks { note: n, .. } => n,
        }
    }
}

/// What a rotation does to a CA in this run.
#[derive(Debug, Clone, Default)]
struct Note {
    /// What the plan says of the CA, when its certificate is not issued again.
    follows: Option<String>,
    /// The step, carried to apply.
    intent: Option<String>,
    /// Its keys known only after apply.
    unknown: Vec<String>,
    /// What `vz plan --certificates` tells of a rotation waiting for the clock.
    status: Option<String>,
}

impl Planning for CertPlan {
    /// A live Secret read while preparing (for the planner, to spare a second read).
    fn live(&self, r: &ObjectRef) -> Option<Option<Value>> {
        if r.kind != "Secret" || r.api_version != "v1" {
            return None;
        }
        let key = SecretRef::new(r.namespace.as_deref().unwrap_or_default(), &r.name);
        self.sources.get(&key).cloned()
    }

    /// How `m` is to be planned.
    fn prepare(&self, m: &Manifest) -> Prepared {
        let mut out = Prepared {
            // Its certificate and copied values are compared with what it holds.
            reads_whole: m.certificate.is_some() || !m.fills.is_empty(),
            ..Prepared::default()
        };
        if let Some(spec) = &m.certificate
            && let Some(r) = secret_of(m)
        {
            out.reissue = self.issued.get(&r).cloned().flatten();
            out.current = self.current.get(&r).cloned();
            out.made_at_apply = spec
                .layout
                .keys()
                .iter()
                .map(|k| format!("/data/{k}"))
                .collect();
            if let Some(note) = self.rotating.get(&r) {
                out.follows.clone_from(&note.follows);
                out.intent.clone_from(&note.intent);
                out.status.clone_from(&note.status);
                out.unknown.extend(note.unknown.iter().cloned());
            }
            // A certificate kept trusts what its issuer trusts.
            if let Some(i) = &spec.issuer
                && !self.issued.contains_key(&r)
                && let Some(t) = self.trust.get(i)
            {
                let key = spec.layout.trust_key();
                if matches!(t, Trust::Grows(_)) {
                    out.unknown.push(format!("/data/{key}"));
                }
                out.follows.get_or_insert_with(|| match t {
                    Trust::Grows(_) => {
                        format!("its {key} follows the trust bundle of Secret {i}, which a new CA joins")
                    }
                    Trust::Shrinks { .. } => {
                        format!("its {key} follows the trust bundle of Secret {i}, which an old CA leaves")
                    }
                });
            }
        }
        for f in &m.fills {
            let grows = matches!(self.trust.get(&f.from), Some(Trust::Grows(_)));
            if grows || !self.sources.contains_key(&f.from) {
                match &f.target {
                    FillTarget::Pointer(p) => out.unknown.push(p.clone()),
                    FillTarget::EveryWebhook => out.unknown.push("/webhooks".into()),
                    FillTarget::Data => out.unknown.push("/data".into()),
                }
            }
            if out.follows.is_none()
                && let Some(t) = self.trust.get(&f.from)
            {
                out.follows = Some(t.note().to_string());
            }
        }
        out
    }

    /// A CA bundle copied into every webhook entry (`/webhooks`) listed entry by entry, as the
    /// live object has them.
    fn shown_unknown(&self, unknown: &mut Vec<String>, live: Option<&Value>) {
        entry_by_entry(unknown, live);
    }

    /// `m` as a dry run compares it: the certificate and copied values it would keep, taken from
    /// `live` and the sources. `None` when a value is not known before apply.
    fn for_dry_run(&self, m: Manifest, live: Option<&Value>) -> Option<Manifest> {
        if m.certificate.is_none() && m.fills.is_empty() {
            return Some(m);
        }
        let mut out = m.clone();
        if let Some(spec) = &m.certificate {
            let live = live?;
            keep_data(&mut out, live, spec.layout);
            let r = secret_of(&m);
            let own = r.as_ref().and_then(|r| self.trust.get(r));
            if spec.issuer.is_none()
                && let Some(Trust::Shrinks { bundle, .. }) = own
            {
                set_data(&mut out, spec.layout.trust_key(), bundle);
            }
            let switching = r
                .as_ref()
                .and_then(|r| self.rotating.get(r))
                .is_some_and(|n| n.intent.as_deref() == Some("switch"));
            if switching && let Some(data) = Arc::make_mut(&mut out.body)["data"].as_object_mut() {
                // The announced CA moves into `tls.*`.
                data.remove(NEXT_CERT);
                data.remove(NEXT_KEY);
            }
            let issued = r.is_some_and(|r| self.issued.contains_key(&r));
            if let Some(i) = &spec.issuer
                && !issued
            {
                let trust = match self.trust.get(i) {
                    Some(Trust::Grows(_)) => return None,
                    Some(Trust::Shrinks { bundle, .. }) => Some(bundle.clone()),
                    None => self
                        .sources
                        .get(i)
                        .cloned()
                        .flatten()
                        .and_then(|s| trust_of(&s)),
                };
                if let Some(t) = trust {
                    set_data(&mut out, spec.layout.trust_key(), &t);
                }
            }
        }
        for f in &m.fills {
            let value = match self.trust.get(&f.from) {
                Some(Trust::Grows(_)) => return None,
                Some(Trust::Shrinks { bundle, .. }) if f.target != FillTarget::Data => {
                    Value::String(B64.encode(bundle))
                }
                _ => fill_value(self.sources.get(&f.from)?.as_ref()?, f)?,
            };
            put(&mut out, &f.target, &value, live).ok()?;
        }
        Some(out)
    }
}

/// Unknown-field pointers with a CA bundle copied into every webhook entry (`/webhooks`) listed
/// entry by entry, as the live object has them.
fn entry_by_entry(unknown: &mut Vec<String>, live: Option<&Value>) {
    let Some(at) = unknown.iter().position(|p| p == "/webhooks") else {
        return;
    };
    let Some(entries) = live
        .and_then(|l| l.get("webhooks"))
        .and_then(Value::as_array)
    else {
        return;
    };
    unknown.remove(at);
    unknown.extend((0..entries.len()).map(|i| format!("/webhooks/{i}/clientConfig/caBundle")));
}

/// Copy the certificate keys of `live` into `m`'s data (with an announced CA's, during a
/// rotation).
fn keep_data(m: &mut Manifest, live: &Value, layout: Layout) {
    let mut data = serde_json::Map::new();
    for key in layout.keys().iter().chain(&[NEXT_CERT, NEXT_KEY]) {
        if let Some(v) = live.get("data").and_then(|d| d.get(*key)) {
            data.insert((*key).to_string(), v.clone());
        }
    }
    Arc::make_mut(&mut m.body)["data"] = Value::Object(data);
}

/// Set `data[key]` of `m` to `text`, base64-encoded.
fn set_data(m: &mut Manifest, key: &str, text: &str) {
    Arc::make_mut(&mut m.body)["data"][key] = Value::String(B64.encode(text.as_bytes()));
}

/// What the certificates a CA's Secret signs trust: its `ca.crt` (its trust bundle, or the root
/// of its chain) or, lacking one, the last certificate of its `tls.crt` chain.
fn trust_of(issuer: &Value) -> Option<String> {
    data_text(issuer, "ca.crt")
        .filter(|c| !pki::split_certificates(c).is_empty())
        .or_else(|| data_text(issuer, "tls.crt").and_then(|c| pki::split_certificates(&c).pop()))
}

/// A CA's Secret, as a rotation reads it: `None` unless it holds a readable CA and its key.
fn ca_view(secret: &Value) -> Option<CaView> {
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    live_cert(secret, Layout::Tls).ok()?;
    let next = data_text(secret, NEXT_CERT).filter(|_| data_text(secret, NEXT_KEY).is_some());
    CaView::read(
        &data_text(secret, "tls.crt")?,
        data_text(secret, "ca.crt").as_deref(),
        next.as_deref(),
    )
}

/// A duration in seconds as the configuration writes it (`24h`, `90m`, `10s`).
fn duration(secs: i64) -> String {
    match secs {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The value `f` copies from `secret`: the base64 value of the first of its keys the Secret holds,
/// or all of its data.
fn fill_value(secret: &Value, f: &Fill) -> Option<Value> {
    let data = secret.get("data");
    if f.target == FillTarget::Data {
        return data
            .filter(|d| d.as_object().is_some_and(|m| !m.is_empty()))
            .cloned();
    }
    f.keys.iter().find_map(|k| {
        data.and_then(|d| d.get(k))
            .filter(|v| v.is_string())
            .cloned()
    })
}

/// Put a copied value where `target` says; `live` is the object as it is (for every webhook
/// entry).
fn put(m: &mut Manifest, target: &FillTarget, value: &Value, live: Option<&Value>) -> Result<()> {
    match target {
        FillTarget::Data => Arc::make_mut(&mut m.body)["data"] = value.clone(),
        FillTarget::Pointer(p) => {
            let name = m.display_name();
            let slot = Arc::make_mut(&mut m.body)
                .pointer_mut(p)
                .ok_or_else(|| anyhow!("internal: {name} has no field {p}"))?;
            *slot = value.clone();
        }
        FillTarget::EveryWebhook => {
            let live = live.ok_or_else(|| anyhow!("{} does not exist", m.display_name()))?;
            let entries: Vec<Value> = live
                .get("webhooks")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|w| w.get("name"))
                .map(|name| serde_json::json!({"name": name, "clientConfig": {"caBundle": value}}))
                .collect();
            Arc::make_mut(&mut m.body)["webhooks"] = Value::Array(entries);
        }
    }
    Ok(())
}

/// Read the Secrets the desired certificates and copied values involve, and decide which
/// certificates this run issues. `seen` holds objects already read (by the planner's LIST);
/// without `refresh` nothing is read and the state's facts are used. Certificates whose address
/// `replace` names are issued anew.
pub async fn prepare(
    cluster: &Cluster,
    desired: &[(&Step, &Manifest)],
    seen: &mut Seen,
    state: &State,
    refresh: bool,
    parallelism: usize,
    replace: &[String],
) -> Result<CertPlan> {
    let mut plan = CertPlan::default();
    let involved = desired
        .iter()
        .any(|(_, m)| m.certificate.is_some() || !m.fills.is_empty());
    if !involved {
        return Ok(plan);
    }
    let mut wanted: Vec<SecretRef> = Vec::new();
    for (_, m) in desired {
        if let (Some(spec), Some(r)) = (&m.certificate, secret_of(m)) {
            wanted.push(r);
            wanted.extend(spec.issuer.clone());
        }
        wanted.extend(m.fills.iter().map(|f| f.from.clone()));
    }
    wanted.sort();
    wanted.dedup();
    if refresh {
        let read: Vec<(SecretRef, Option<Value>)> = stream::iter(wanted.into_iter().map(|r| {
            // Taken, not copied: the planner reads them from here (see [`CertPlan::live`]).
            let hit = seen.take_whole(&secret_ref(&r));
            async move {
                let live = match hit {
                    Some(known) => known,
                    None => cluster.get(&secret_ref(&r)).await?,
                };
                Ok::<_, anyhow::Error>((r, live))
            }
        }))
        .buffer_unordered(parallelism.max(1))
        .try_collect()
        .await?;
        plan.sources = read.into_iter().collect();
        for (r, live) in &plan.sources {
            if let Some(live) = live {
                for layout in [Layout::Tls, Layout::IstioCa] {
                    if let Ok(info) = live_cert(live, layout) {
                        plan.current.insert(r.clone(), facts(&info));
                        break;
                    }
                }
            }
        }
    } else {
        for (step, m) in desired {
            if let (Some(_), Some(r)) = (&m.certificate, secret_of(m))
                && let Some(f) = state
                    .get(&step.address_of(m))
                    .and_then(|rec| rec.certificate.clone())
            {
                plan.current.insert(r, f);
            }
        }
    }
    if refresh {
        check_own_issuers(&plan, desired)?;
    }
    let now = now();
    for (step, m) in desired {
        let (Some(spec), Some(r)) = (&m.certificate, secret_of(m)) else {
            continue;
        };
        let replaced = replace.contains(&step.address_of(m));
        // A CA `vz` issues, in the cluster and good: it rotates (see [`rotation`]).
        if spec.issuer.is_none()
            && refresh
            && let Some(view) = plan
                .sources
                .get(&r)
                .cloned()
                .flatten()
                .and_then(|l| ca_view(&l))
        {
            let why = if replaced {
                Some("its replacement is requested".to_string())
            } else {
                due(&plan, spec, &facts(&view.current), now)
            };
            let signed = signed_by(&plan, desired, &r);
            let decided = rotation::decide(
                &view,
                why.is_some(),
                replaced,
                spec.overlap_secs,
                &signed,
                now,
            );
            if decided == rotation::Step::Keep
                && let Some(status) = rotation::waiting(&view, spec.overlap_secs, &signed, now)
            {
                plan.rotating.insert(
                    r.clone(),
                    Note {
                        status: Some(status),
                        ..Note::default()
                    },
                );
            }
            plan.rotate(&r, &view, &decided, why, spec.overlap_secs);
            continue;
        }
        if replaced {
            // Issued anew on request: what it signed follows.
            plan.issued
                .insert(r, Some("its replacement is requested".into()));
            continue;
        }
        if m.has_unknown() {
            // Its names are not known yet: apply decides once they are.
            continue;
        }
        let decision = if refresh {
            match plan.sources.get(&r).cloned().flatten() {
                None => Some(None),
                Some(live) if live.pointer("/metadata/deletionTimestamp").is_some() => Some(None),
                Some(live) => match live_cert(&live, spec.layout) {
                    Err(why) => Some(Some(format!(
                        "the certificate in the cluster is unusable: {why}"
                    ))),
                    Ok(info) => due(&plan, spec, &facts(&info), now).map(Some),
                },
            }
        } else {
            match (state.get(&step.address_of(m)), plan.current.get(&r)) {
                (None, _) => Some(None),
                (Some(_), None) => None,
                (Some(_), Some(f)) => due(&plan, spec, f, now).map(Some),
            }
        };
        if let (false, Some(Some(why)), None, true) =
            (refresh, &decision, &spec.issuer, spec.overlap_secs > 0)
        {
            // A CA of the state due for renewal, the cluster not read: its rotation begins (apply
            // reads the Secret, and keeps a CA announced already).
            let why = why.clone();
            plan.announce(&r, &why, now + spec.overlap_secs, spec.overlap_secs);
            continue;
        }
        if let Some(d) = decision {
            if spec.issuer.is_none() {
                plan.trust
                    .insert(r.clone(), Trust::Grows(copies_issued(&r, d.as_deref())));
            }
            plan.issued.insert(r, d);
        }
    }
    Ok(plan)
}

/// What a copy of the CA in `r` says when the CA is issued (again, with `why`).
fn copies_issued(r: &SecretRef, why: Option<&str>) -> String {
    match why {
        None => format!("copies the CA in Secret {r}, which is new"),
        Some(w) => format!("copies the CA in Secret {r}, issued again ({w})"),
    }
}

/// The certificates in the cluster that the CA in `ca` signs (or signed).
fn signed_by(plan: &CertPlan, desired: &[(&Step, &Manifest)], ca: &SecretRef) -> Vec<Signed> {
    desired
        .iter()
        .filter_map(|(_, m)| {
            let spec = m.certificate.as_ref()?;
            (spec.issuer.as_ref() == Some(ca)).then_some(())?;
            let live = plan.sources.get(&secret_of(m)?)?.as_ref()?;
            let info = live_cert(live, spec.layout).ok()?;
            Some(Signed {
                issuer_key_id: info.issuer_key_id,
                not_before: info.not_before,
            })
        })
        .collect()
}

impl CertPlan {
    /// Record that a rotation of the CA in `r` begins (`why`), its new CA signing from
    /// `takes_over`.
    fn announce(&mut self, r: &SecretRef, why: &str, takes_over: i64, overlap: i64) {
        self.trust.insert(
            r.clone(),
            Trust::Grows(format!(
                "copies the trust bundle of Secret {r}, which a new CA joins"
            )),
        );
        self.rotating.insert(
            r.clone(),
            Note {
                follows: Some(format!(
                    "CA rotation begins ({why}): a new CA joins its trust bundle and signs from the first apply after {} (caOverlap {})",
                    date(takes_over),
                    duration(overlap)
                )),
                intent: rotation::intent(&rotation::Step::Announce { takes_over }),
                unknown: ["ca.crt", NEXT_CERT, NEXT_KEY]
                    .iter()
                    .map(|k| format!("/data/{k}"))
                    .collect(),
                status: None,
            },
        );
    }

    /// Record what a rotation does to the CA in `r` (in the cluster as `view`; `why` it is due).
    fn rotate(
        &mut self,
        r: &SecretRef,
        view: &CaView,
        step: &rotation::Step,
        why: Option<String>,
        overlap: i64,
    ) {
        let intent = rotation::intent(step);
        match step {
            rotation::Step::Keep => {}
            rotation::Step::Issue => {
                let why = why.unwrap_or_else(|| "the CA announced in its Secret expired".into());
                self.trust
                    .insert(r.clone(), Trust::Grows(copies_issued(r, Some(&why))));
                self.issued.insert(r.clone(), Some(why));
            }
            rotation::Step::Announce { takes_over } => {
                let why = why.unwrap_or_else(|| "the CA announced in its Secret expired".into());
                self.announce(r, &why, *takes_over, overlap);
            }
            rotation::Step::Switch { announced } => {
                let name = view
                    .next
                    .as_ref()
                    .and_then(|n| n.common_name.clone())
                    .unwrap_or_default();
                self.issued.insert(
                    r.clone(),
                    Some(format!(
                        "CA rotation: {name}, in its trust bundle since {}, takes over signing",
                        date(*announced)
                    )),
                );
                self.rotating.insert(
                    r.clone(),
                    Note {
                        intent,
                        ..Note::default()
                    },
                );
            }
            rotation::Step::Trim {
                fingerprints,
                names,
                expired,
            } => {
                let before = view
                    .trust
                    .iter()
                    .map(|(pem, _)| pem.as_str())
                    .collect::<String>();
                let mut bundle = rotation::trimmed(&before, fingerprints);
                if bundle.is_empty() {
                    bundle.clone_from(&view.current_pem);
                }
                let names = names.join(", ");
                self.trust.insert(
                    r.clone(),
                    Trust::Shrinks {
                        bundle,
                        note: format!(
                            "copies the trust bundle of Secret {r}, which CA {names} leaves"
                        ),
                    },
                );
                self.rotating.insert(
                    r.clone(),
                    Note {
                        follows: Some(if *expired {
                            format!("{names} leaves its trust bundle: it expired")
                        } else {
                            format!(
                                "CA rotation ends: {names} leaves its trust bundle (every certificate it signed was replaced over caOverlap, {}, ago)",
                                duration(overlap)
                            )
                        }),
                        intent,
                        unknown: vec![],
                        status: None,
                    },
                );
            }
        }
    }
}

/// Every issuer `vz` does not issue itself (the user's CA) must hold a CA certificate and its key.
fn check_own_issuers(plan: &CertPlan, desired: &[(&Step, &Manifest)]) -> Result<()> {
    let issued_here: Vec<SecretRef> = desired
        .iter()
        .filter(|(_, m)| m.certificate.is_some())
        .filter_map(|(_, m)| secret_of(m))
        .collect();
    for (_, m) in desired {
        let Some(issuer) = m.certificate.as_ref().and_then(|s| s.issuer.as_ref()) else {
            continue;
        };
        if issued_here.contains(issuer) {
            continue;
        }
        // Missing: the requirements check says so.
        let Some(Some(live)) = plan.sources.get(issuer) else {
            continue;
        };
        match live_cert(live, Layout::Tls) {
            Ok(info) if info.is_ca => {}
            Ok(_) => bail!(
                "Secret {issuer} (certificates.ca) holds a certificate that is not a CA (basic constraints CA:false): vz cannot sign the platform's certificates with it"
            ),
            Err(why) => bail!(
                "Secret {issuer} (certificates.ca) cannot sign the platform's certificates: {why} (it needs `tls.crt`, a CA certificate, and `tls.key`, its key)"
            ),
        }
    }
    Ok(())
}

/// Why the certificate with `current` facts must be issued again for `spec`, if it must.
fn due(plan: &CertPlan, spec: &CertSpec, current: &CertFacts, now: i64) -> Option<String> {
    if let Some(issuer) = &spec.issuer
        && let Some(why) = plan.issued.get(issuer)
    {
        return Some(match why {
            None => format!("its issuer, Secret {issuer}, is new"),
            Some(w) => format!("its issuer, Secret {issuer}, is issued again ({w})"),
        });
    }
    let issuer_key_id = spec
        .issuer
        .as_ref()
        .and_then(|i| plan.current.get(i))
        .and_then(|f| f.key_id.clone());
    let info = CertInfo {
        fingerprint: current.fingerprint.clone(),
        serial: current.serial.clone(),
        common_name: None,
        sans: current.sans.clone(),
        is_ca: spec.role != Role::Leaf,
        server_auth: spec.role == Role::Leaf,
        not_before: 0,
        not_after: current.not_after,
        key_id: current.key_id.clone(),
        issuer_key_id: current.issuer_key_id.clone(),
        key_algorithm: current.key_algorithm.clone(),
    };
    let renew_before = spec.renew_before_days * pki::DAY;
    let renewal = pki::renewal(
        &info,
        &spec.sans,
        spec.key,
        issuer_key_id.as_deref(),
        renew_before,
        now,
    )?;
    Some(match renewal {
        Renewal::Expiring { not_after } => format!(
            "expires {} (within renewBeforeDays: {})",
            date(not_after),
            spec.renew_before_days
        ),
        Renewal::Names { had } => format!(
            "names change: [{}] -> [{}]",
            had.join(", "),
            spec.sans.join(", ")
        ),
        Renewal::Issuer => match &spec.issuer {
            Some(i) => format!("another CA issued it, not Secret {i}"),
            None => "another CA issued it".into(),
        },
        Renewal::Key { had } => format!("key type changes: {had} -> {}", spec.key.label()),
    })
}

/// A Unix time as an RFC 3339 date and time, UTC.
pub fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `m` ready to send: its certificate issued (when `issue`, or when `live` holds none that is
/// usable) or kept from `live`, a CA's rotation moved on as the plan's `intent` says (see
/// [`rotation`]), and its copied values read from the cluster now.
pub async fn materialize(
    cluster: &Cluster,
    m: &Manifest,
    live: Option<&Value>,
    issue: bool,
    intent: Option<&str>,
) -> Result<Manifest> {
    let mut out = m.clone();
    if let Some(spec) = &m.certificate {
        let usable = live.and_then(|l| live_cert(l, spec.layout).ok().map(|i| (l, i)));
        let intent = intent
            .and_then(Intent::parse)
            .filter(|_| spec.issuer.is_none());
        let text = |key: &str| live.and_then(|l| data_text(l, key));
        let next = text(NEXT_CERT).zip(text(NEXT_KEY));
        match (usable, intent) {
            (Some((l, _)), Some(Intent::Trim(dropped))) => {
                keep_data(&mut out, l, spec.layout);
                let mut bundle = rotation::trimmed(&text("ca.crt").unwrap_or_default(), &dropped);
                if bundle.is_empty() {
                    bundle = text("tls.crt").unwrap_or_default();
                }
                set_data(&mut out, "ca.crt", &bundle);
            }
            (Some((l, _)), Some(Intent::Announce)) if next.is_some() => {
                // Announced already (the same plan applied again, or planned without reading
                // the cluster): the rotation goes on with that CA.
                keep_data(&mut out, l, spec.layout);
            }
            (Some((l, _)), Some(Intent::Announce)) => {
                keep_data(&mut out, l, spec.layout);
                let (new, _, _) = issue_now(cluster, m, spec).await?;
                let bundle = rotation::grown(
                    &new.cert_pem,
                    text("tls.crt").as_deref(),
                    text("ca.crt").as_deref(),
                    now(),
                );
                set_data(&mut out, NEXT_CERT, &new.cert_pem);
                set_data(&mut out, NEXT_KEY, &new.key_pem);
                set_data(&mut out, "ca.crt", &bundle);
            }
            (Some(_), Some(Intent::Switch)) if next.is_some() => {
                let (cert, key) = next.unwrap_or_default();
                let bundle = rotation::grown(
                    &cert,
                    text("tls.crt").as_deref(),
                    text("ca.crt").as_deref(),
                    now(),
                );
                let issued = Issued {
                    cert_pem: cert,
                    key_pem: key,
                };
                put_data(&mut out, layout_data(spec.layout, &issued, "", &bundle));
            }
            (Some((l, info)), _) if !issue && names_match(&info, spec) => {
                keep_data(&mut out, l, spec.layout);
                if let Some(i) = &spec.issuer
                    && let Some(issuer) = cluster.get_remembered(&secret_ref(i)).await?
                    && let Some(trust) = trust_of(&issuer)
                {
                    // It trusts what its issuer trusts now (a CA rotation's bundle).
                    set_data(&mut out, spec.layout.trust_key(), &trust);
                }
            }
            (usable, _) => {
                let (issued, chain, mut root) = issue_now(cluster, m, spec).await?;
                if spec.issuer.is_none() {
                    // A CA issued again: the one it replaces stays trusted until the rotation
                    // ends, while what it signed is issued again.
                    let old = usable.and(text("tls.crt"));
                    root = rotation::grown(&root, old.as_deref(), text("ca.crt").as_deref(), now());
                }
                put_data(&mut out, layout_data(spec.layout, &issued, &chain, &root));
            }
        }
    }
    for f in &m.fills {
        let source = cluster
            .get_remembered(&secret_ref(&f.from))
            .await?
            .with_context(|| {
                format!(
                    "{} needs Secret {}, which does not exist",
                    m.display_name(),
                    f.from
                )
            })?;
        let value = fill_value(&source, f).with_context(|| match f.target {
            FillTarget::Data => format!(
                "{} is a copy of Secret {}, which holds no data",
                m.display_name(),
                f.from
            ),
            _ => format!(
                "{} needs `{}` of Secret {}, which it does not hold",
                m.display_name(),
                f.keys.join("` or `"),
                f.from
            ),
        })?;
        put(&mut out, &f.target, &value, live)?;
    }
    Ok(out)
}

/// Whether a certificate kept at apply still has the names and key type its spec asks for (the
/// names may have been unknown when planned).
fn names_match(info: &CertInfo, spec: &CertSpec) -> bool {
    info.key_algorithm == spec.key.label()
        && (spec.role != Role::Leaf || pki::same_names(&info.sans, &spec.sans))
}

/// `m`'s data: `data`, base64-encoded values by key.
fn put_data(m: &mut Manifest, data: Vec<(&'static str, String)>) {
    Arc::make_mut(&mut m.body)["data"] = Value::Object(
        data.into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect(),
    );
}

/// Issue `spec`'s certificate now: the certificate and its key, the chain of its issuer (empty
/// for a root) and the root (or trust bundle) its holder trusts.
async fn issue_now(
    cluster: &Cluster,
    m: &Manifest,
    spec: &CertSpec,
) -> Result<(Issued, String, String)> {
    let now = now();
    let mut common_name = spec.common_name.clone();
    if spec.random_suffix {
        common_name = format!("{common_name}-{}", random_letters(8));
    }
    let subject = pki::Subject {
        common_name,
        organization: Some("vz".into()),
        sans: spec.sans.clone(),
        validity_secs: spec.validity_days * pki::DAY,
        key: spec.key,
    };
    let what = m.display_name();
    let (issued, chain, root) = match &spec.issuer {
        None => {
            let ca = off_the_runtime(move || pki::self_signed_ca(&subject, now))
                .await
                .with_context(|| format!("cannot issue the certificate of {what}"))?;
            let root = ca.cert_pem.clone();
            (ca, String::new(), root)
        }
        Some(r) => {
            let secret = cluster.get_remembered(&secret_ref(r)).await?.with_context(|| {
                format!(
                    "cannot issue the certificate of {what}: its issuer, Secret {r}, does not exist"
                )
            })?;
            let read = |key: &str| {
                data_text(&secret, key).with_context(|| {
                    format!("cannot issue the certificate of {what}: its issuer, Secret {r}, has no `{key}`")
                })
            };
            let chain = read("tls.crt")?;
            let certs = pki::split_certificates(&chain);
            let Some(first) = certs.first() else {
                bail!(
                    "cannot issue the certificate of {what}: `tls.crt` of its issuer, Secret {r}, holds no PEM certificate"
                );
            };
            let root = trust_of(&secret).unwrap_or_default();
            let issuer = Issued {
                cert_pem: first.clone(),
                key_pem: read("tls.key")?,
            };
            let info = pki::inspect(first)
                .with_context(|| format!("cannot read the certificate of Secret {r}"))?;
            if !info.is_ca {
                bail!(
                    "cannot issue the certificate of {what}: Secret {r} does not hold a CA certificate (basic constraints CA:false)"
                );
            }
            let role = spec.role;
            let issued = off_the_runtime(move || match role {
                Role::Intermediate => pki::intermediate_ca(&subject, &issuer, now),
                _ => pki::leaf(&subject, &issuer, now),
            })
            .await
            .with_context(|| format!("cannot issue the certificate of {what} from Secret {r}"))?;
            (issued, chain, root)
        }
    };
    Ok((issued, chain, root))
}

/// The Secret data of a certificate laid out as `layout` says, base64-encoded by key: `issued`,
/// its issuer's `chain`, the `root` (or trust bundle) its holder trusts.
fn layout_data(
    layout: Layout,
    issued: &Issued,
    chain: &str,
    root: &str,
) -> Vec<(&'static str, String)> {
    let chained = format!("{}{chain}", issued.cert_pem);
    let enc = |s: &str| B64.encode(s.as_bytes());
    match layout {
        Layout::Tls => vec![
            ("tls.crt", enc(&chained)),
            ("tls.key", enc(&issued.key_pem)),
            ("ca.crt", enc(root)),
        ],
        Layout::IstioCa => vec![
            ("ca-cert.pem", enc(&issued.cert_pem)),
            ("ca-key.pem", enc(&issued.key_pem)),
            ("root-cert.pem", enc(root)),
            ("cert-chain.pem", enc(&chained)),
        ],
    }
}

/// Run a key generation (RSA takes seconds) on a blocking thread, so that the certificates of a
/// step are made in parallel and the runtime keeps serving requests meanwhile.
async fn off_the_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, pki::PkiError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("internal: key generation did not finish")?
        .map_err(anyhow::Error::from)
}

/// `n` random lowercase letters.
fn random_letters(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    pki::random_bytes(&mut bytes);
    bytes.iter().map(|b| char::from(b'a' + b % 26)).collect()
}

/// The facts of the certificate an applied Secret holds, per `m`'s certificate.
pub fn applied_facts(m: &Manifest, applied: &Value) -> Option<CertFacts> {
    let spec = m.certificate.as_ref()?;
    live_cert(applied, spec.layout).ok().map(|i| facts(&i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vz_providers::manifest::Fill;
    use vz_providers::pki::KeyAlgorithm;

    const NOW: i64 = 1_800_000_000;

    fn spec(issuer: Option<&str>, sans: &[&str]) -> CertSpec {
        CertSpec {
            role: if issuer.is_some() {
                Role::Leaf
            } else {
                Role::Root
            },
            common_name: "x".into(),
            random_suffix: false,
            sans: sans.iter().map(|s| (*s).to_string()).collect(),
            validity_days: 90,
            key: KeyAlgorithm::EcdsaP256,
            renew_before_days: 30,
            overlap_secs: 0,
            issuer: issuer.map(|i| SecretRef::new("ns", i)),
            layout: Layout::Tls,
        }
    }

    fn held(sans: &[&str], issuer_key_id: &str, days_left: i64) -> CertFacts {
        CertFacts {
            fingerprint: "f".into(),
            serial: "s".into(),
            sans: sans.iter().map(|s| (*s).to_string()).collect(),
            key_id: Some("leaf".into()),
            issuer_key_id: Some(issuer_key_id.into()),
            key_algorithm: "EC P-256".into(),
            not_after: NOW + days_left * pki::DAY,
        }
    }

    /// A plan whose CA `ns/ca` holds key id `ca-1`.
    fn with_ca() -> CertPlan {
        let mut plan = CertPlan::default();
        let mut ca = held(&[], "ca-1", 3000);
        ca.key_id = Some("ca-1".into());
        plan.current.insert(SecretRef::new("ns", "ca"), ca);
        plan
    }

    #[test]
    fn a_good_certificate_stays() {
        let plan = with_ca();
        assert_eq!(
            due(
                &plan,
                &spec(Some("ca"), &["a.test"]),
                &held(&["a.test"], "ca-1", 60),
                NOW
            ),
            None
        );
    }

    #[test]
    fn expiry_within_renew_before_is_due_with_the_date() {
        let plan = with_ca();
        let why = due(
            &plan,
            &spec(Some("ca"), &["a.test"]),
            &held(&["a.test"], "ca-1", 29),
            NOW,
        );
        assert_eq!(
            why.as_deref(),
            Some("expires 2027-02-13T08:00:00Z (within renewBeforeDays: 30)")
        );
    }

    #[test]
    fn names_key_and_issuer_changes_are_due_and_say_so() {
        let plan = with_ca();
        let names = due(
            &plan,
            &spec(Some("ca"), &["b.test"]),
            &held(&["a.test"], "ca-1", 60),
            NOW,
        );
        assert_eq!(names.as_deref(), Some("names change: [a.test] -> [b.test]"));
        let mut rsa = spec(Some("ca"), &["a.test"]);
        rsa.key = KeyAlgorithm::Rsa2048;
        let key = due(&plan, &rsa, &held(&["a.test"], "ca-1", 60), NOW);
        assert_eq!(
            key.as_deref(),
            Some("key type changes: EC P-256 -> RSA 2048")
        );
        let other = due(
            &plan,
            &spec(Some("ca"), &["a.test"]),
            &held(&["a.test"], "ca-0", 60),
            NOW,
        );
        assert_eq!(
            other.as_deref(),
            Some("another CA issued it, not Secret ns/ca")
        );
    }

    #[test]
    fn every_leaf_follows_an_issuer_issued_again() {
        let mut plan = with_ca();
        plan.issued
            .insert(SecretRef::new("ns", "ca"), Some("expires soon".into()));
        let why = due(
            &plan,
            &spec(Some("ca"), &["a.test"]),
            &held(&["a.test"], "ca-1", 60),
            NOW,
        );
        assert_eq!(
            why.as_deref(),
            Some("its issuer, Secret ns/ca, is issued again (expires soon)")
        );
    }

    #[test]
    fn a_copy_of_a_ca_issued_in_this_run_is_known_after_apply() {
        let mut plan = with_ca();
        let ca = SecretRef::new("ns", "ca");
        plan.sources.insert(
            ca.clone(),
            Some(serde_json::json!({"data": {"ca.crt": "Q0E="}})),
        );
        let mut bundle = Manifest::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "bundle", "namespace": "ns"}, "data": {"b": null}}));
        bundle.fills.push(Fill {
            target: FillTarget::Pointer("/data/b".into()),
            from: ca.clone(),
            keys: vec!["ca.crt".into()],
        });
        // Kept: the dry run compares the value the cluster holds.
        let prepared = plan.prepare(&bundle);
        assert!(prepared.unknown.is_empty() && prepared.follows.is_none());
        let sent = plan.for_dry_run(bundle.clone(), None).expect("known");
        assert_eq!(sent.body["data"]["b"], "Q0E=");
        // Issued again: unknown until apply, and the plan says why.
        plan.issued.insert(ca.clone(), Some("expires soon".into()));
        plan.trust.insert(
            ca.clone(),
            Trust::Grows(copies_issued(&ca, Some("expires soon"))),
        );
        let prepared = plan.prepare(&bundle);
        assert_eq!(prepared.unknown, ["/data/b"]);
        assert_eq!(
            prepared.follows.as_deref(),
            Some("copies the CA in Secret ns/ca, issued again (expires soon)")
        );
        assert!(plan.for_dry_run(bundle.clone(), None).is_none());
        // The end of a rotation: the bundle it will hold is known, and compared.
        plan.trust.insert(
            ca,
            Trust::Shrinks {
                bundle: "NEW".into(),
                note: "copies the trust bundle of Secret ns/ca, which CA old leaves".into(),
            },
        );
        let prepared = plan.prepare(&bundle);
        assert!(prepared.unknown.is_empty());
        assert_eq!(
            prepared.follows.as_deref(),
            Some("copies the trust bundle of Secret ns/ca, which CA old leaves")
        );
        let sent = plan.for_dry_run(bundle, None).expect("known");
        assert_eq!(sent.body["data"]["b"], B64.encode("NEW"));
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(date(951_782_400), "2000-02-29T00:00:00Z");
    }
}
