//! DNS records on a server that takes RFC 2136 dynamic updates signed with TSIG (`dns.rfc2136`).
//!
//! Records are handled as whole RRsets (a name and a type), each with an **ownership record** next
//! to it: a TXT RRset at `_vz.<name>` saying `heritage=vz,vz/platform=<env>,vz/uid=<id>` (the
//! idea of ExternalDNS's TXT registry; a prefix, because a CNAME may not share its name with
//! anything). The uid plays the part of a Kubernetes object's uid: made when `vz` creates the
//! record, it tells `vz`'s record from one re-created by someone else.
//!
//! Every change is one update message whose prerequisites pin what was read: a create requires
//! that neither the record nor its ownership exists, a change or a delete that the record and the
//! ownership still hold exactly what was read. A record someone changed in between makes the
//! server answer NXRRSET/YXRRSET and nothing is written. Reads are TSIG-signed queries.
//!
//! The TSIG secret is read from the environment variable or file the configuration names, when a
//! connection is made; it is kept in memory only, and no error message or output contains it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as ProtoAlgorithm;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use vz_providers::Manifest;
use vz_providers::config::{Rfc2136, TsigAlgorithm, TsigSecret};

use crate::cluster::elsewhere::Elsewhere;
use crate::cluster::{Deleted, ObjectRef};

/// The label in front of a record's name where its ownership TXT record lives.
pub const OWNER_LABEL: &str = "_vz";

/// The kinds of record `vz` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An IPv4 address.
    A,
    /// An IPv6 address.
    Aaaa,
    /// An alias.
    Cname,
}

impl Kind {
    fn record_type(self) -> RecordType {
        match self {
            Kind::A => RecordType::A,
            Kind::Aaaa => RecordType::AAAA,
            Kind::Cname => RecordType::CNAME,
        }
    }

    /// `A`, `AAAA` or `CNAME`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::A => "A",
            Kind::Aaaa => "AAAA",
            Kind::Cname => "CNAME",
        }
    }

    /// The record data of one value.
    fn rdata(self, value: &str) -> Result<RData> {
        Ok(match self {
            Kind::A => RData::A(
                A::from_str(value).map_err(|_| anyhow!("`{value}` is not an IPv4 address"))?,
            ),
            Kind::Aaaa => RData::AAAA(
                AAAA::from_str(value).map_err(|_| anyhow!("`{value}` is not an IPv6 address"))?,
            ),
            Kind::Cname => RData::CNAME(CNAME(fqdn(value)?)),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An RRset: what a name of one kind resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrset {
    /// The name, without the final dot (`verrazzano-ingress.dev.example.test`).
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Its TTL, in seconds.
    pub ttl: u32,
    /// Its values, sorted (addresses, or a CNAME's target without the final dot).
    pub values: Vec<String>,
}

/// Who owns a record: the content of its ownership TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The `vz` platform (`environmentName`).
    pub platform: String,
    /// Made when `vz` created the record.
    pub uid: String,
    /// The record existed before `vz` took it over: destroy releases it instead of deleting it.
    pub adopted: bool,
}

impl Owner {
    /// The TXT value: `heritage=vz,vz/platform=<env>,vz/uid=<id>`, plus `,vz/adopted=true` for a
    /// record taken over.
    pub fn text(&self) -> String {
        let adopted = if self.adopted { ",vz/adopted=true" } else { "" };
        format!(
            "heritage=vz,vz/platform={},vz/uid={}{adopted}",
            self.platform, self.uid
        )
    }

    /// Read a TXT value; `None` when it is not `vz`'s.
    pub fn parse(text: &str) -> Option<Owner> {
        let (mut heritage, mut adopted) = (false, false);
        let (mut platform, mut uid) = (None, None);
        for part in text.split(',') {
            match part.split_once('=') {
                Some(("heritage", "vz")) => heritage = true,
                Some(("vz/platform", p)) => platform = Some(p.to_string()),
                Some(("vz/uid", u)) => uid = Some(u.to_string()),
                Some(("vz/adopted", "true")) => adopted = true,
                _ => {}
            }
        }
        match (heritage, platform, uid) {
            (true, Some(platform), Some(uid)) => Some(Owner {
                platform,
                uid,
                adopted,
            }),
            _ => None,
        }
    }
}

/// A name as an absolute DNS name.
fn fqdn(name: &str) -> Result<Name> {
    let mut n = Name::from_str(name.trim_end_matches('.'))
        .map_err(|e| anyhow!("`{name}` is not a DNS name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// The name of a record's ownership TXT record.
pub fn owner_name(name: &str) -> String {
    format!("{OWNER_LABEL}.{name}")
}

/// What the server said, for people.
fn refused(what: &str, code: ResponseCode) -> anyhow::Error {
    let why = match code {
        ResponseCode::Refused => {
            "the server refused it: the zone does not take updates signed with this TSIG key (check `allow-update`)"
        }
        ResponseCode::NotAuth => {
            "the server does not accept the signature (NOTAUTH): check tsigKeyName, tsigAlgorithm and the secret, or the zone is not served there"
        }
        ResponseCode::YXRRSet
        | ResponseCode::NXRRSet
        | ResponseCode::YXDomain
        | ResponseCode::NXDomain => {
            "the record changed since it was read (a prerequisite failed); run vz plan again"
        }
        ResponseCode::NotZone => "the name is not in the zone",
        _ => "the server answered with an error",
    };
    anyhow!("{what}: {why} ({code})")
}

/// A connection to the DNS server of `dns.rfc2136`.
pub struct Dns {
    client: Client<TokioRuntimeProvider>,
    zone: Name,
    zone_text: String,
    server: String,
}

impl Dns {
    /// Connect (UDP) to the server, with the TSIG key read from where the configuration says.
    pub async fn connect(cfg: &Rfc2136) -> Result<Dns> {
        let secret = read_secret(&cfg.secret)?;
        let key = B64.decode(secret.trim()).map_err(|_| {
            anyhow!(
                "the TSIG secret in {} is not base64 (as `tsig-keygen` writes it)",
                where_secret(&cfg.secret)
            )
        })?;
        let algorithm = match cfg.algorithm {
            TsigAlgorithm::HmacSha256 => ProtoAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => ProtoAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => ProtoAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(key, algorithm, fqdn(&cfg.key_name)?, 300)
            .map_err(|e| anyhow!("cannot sign with the TSIG key `{}`: {e}", cfg.key_name))?;
        let addr = resolve(&cfg.server).await?;
        let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
            .with_signer(Some(signer))
            .build();
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(background);
        Ok(Dns {
            client,
            zone: fqdn(&cfg.zone)?,
            zone_text: cfg.zone.clone(),
            server: cfg.server.clone(),
        })
    }

    fn in_zone(&self, name: &str) -> Result<Name> {
        let n = fqdn(name)?;
        if !self.zone.zone_of(&n) {
            bail!("`{name}` is not in zone {}", self.zone_text);
        }
        Ok(n)
    }

    /// The RRset of `name` and `kind`, or `None`.
    pub async fn read(&self, name: &str, kind: Kind) -> Result<Option<Rrset>> {
        // A CNAME shares its name with nothing; an address record cannot sit under a CNAME.
        let others: &[Kind] = match kind {
            Kind::Cname => &[Kind::A, Kind::Aaaa],
            Kind::A | Kind::Aaaa => &[Kind::Cname],
        };
        for other in others {
            if let Some(held) = self.read_only(name, *other).await? {
                bail!(
                    "{name} holds a {other} record ({}), and vz wants a {kind} there, which cannot coexist with it: remove it from zone {}, or change the configuration",
                    held.values.join(", "),
                    self.zone_text
                );
            }
        }
        self.read_only(name, kind).await
    }

    /// The RRset of `name` and `kind` alone.
    async fn read_only(&self, name: &str, kind: Kind) -> Result<Option<Rrset>> {
        let n = self.in_zone(name)?;
        let mut client = self.client.clone();
        let answer = client
            .query(n.clone(), DNSClass::IN, kind.record_type())
            .await
            .map_err(|e| {
                transport(
                    &format!("cannot read {kind} {name}"),
                    &self.server,
                    &e.to_string(),
                )
            })?;
        match answer.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            code => return Err(refused(&format!("cannot read {kind} {name}"), code)),
        }
        let mut values: Vec<String> = Vec::new();
        let mut ttl = 0;
        for r in answer
            .answers
            .iter()
            // Only this name's: a server answering for a CNAME adds its target's records.
            .filter(|r| r.record_type() == kind.record_type() && r.name == n)
        {
            ttl = r.ttl;
            values.push(r.data.to_string().trim_end_matches('.').to_string());
        }
        if values.is_empty() {
            return Ok(None);
        }
        values.sort();
        Ok(Some(Rrset {
            name: name.to_string(),
            kind,
            ttl,
            values,
        }))
    }

    /// The text of `vz`'s ownership record of `name` (the first TXT that is `vz`'s, else the first).
    pub async fn owner_text(&self, name: &str) -> Result<Option<String>> {
        let n = self.in_zone(&owner_name(name))?;
        let mut client = self.client.clone();
        let answer = client
            .query(n, DNSClass::IN, RecordType::TXT)
            .await
            .map_err(|e| {
                transport(
                    &format!("cannot read the ownership of {name}"),
                    &self.server,
                    &e.to_string(),
                )
            })?;
        let texts: Vec<String> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        Ok(texts
            .iter()
            .find(|t| Owner::parse(t).is_some())
            .or(texts.first())
            .cloned())
    }

    /// Change what `name` holds, in one atomic update whose prerequisites are what was read:
    /// the record `current` (`None`: absent) and its ownership text `was` (`None`: absent). Both
    /// are replaced by `new` and `owner` (`None`: removed). A record changed since it was read
    /// makes the server refuse the whole update.
    pub async fn write(
        &self,
        name: &str,
        current: Option<&Rrset>,
        was: Option<&str>,
        new: Option<&Rrset>,
        owner: Option<&str>,
    ) -> Result<()> {
        let kind = current.or(new).map(|r| r.kind);
        let Some(kind) = kind else {
            bail!("internal: nothing to write at {name}");
        };
        let at = self.in_zone(name)?;
        let owner_at = self.in_zone(&owner_name(name))?;
        let mut m = self.update();
        // Prerequisites: exactly what was read.
        match current {
            Some(rrset) => {
                for v in &rrset.values {
                    m.add_pre_requisite(Record::from_rdata(at.clone(), 0, kind.rdata(v)?));
                }
            }
            // A CNAME needs the name unused; an address, no CNAME there (a server ignores an
            // addition that would break that rule, and says NOERROR).
            None if kind == Kind::Cname => m.add_pre_requisite(absent(at.clone(), RecordType::ANY)),
            None => {
                m.add_pre_requisite(absent(at.clone(), kind.record_type()));
                m.add_pre_requisite(absent(at.clone(), RecordType::CNAME));
            }
        }
        match was {
            Some(text) => m.add_pre_requisite(Record::from_rdata(
                owner_at.clone(),
                0,
                RData::TXT(TXT::new(vec![text.to_string()])),
            )),
            None => m.add_pre_requisite(absent(owner_at.clone(), RecordType::TXT)),
        }
        // Updates: out with the old, in with the new.
        if current.is_some() {
            m.add_update(every(at.clone(), kind.record_type()));
        }
        if was.is_some() {
            m.add_update(every(owner_at.clone(), RecordType::TXT));
        }
        let ttl = new.or(current).map(|r| r.ttl).unwrap_or(60);
        if let Some(rrset) = new {
            for v in &rrset.values {
                m.add_update(Record::from_rdata(at.clone(), rrset.ttl, kind.rdata(v)?));
            }
        }
        if let Some(text) = owner {
            m.add_update(Record::from_rdata(
                owner_at,
                ttl,
                RData::TXT(TXT::new(vec![text.to_string()])),
            ));
        }
        let verb = match (current, new) {
            (None, _) => "create",
            (Some(_), None) => "delete",
            (Some(_), Some(_)) => "change",
        };
        self.send(m, &format!("cannot {verb} {kind} {name}")).await
    }

    /// An empty update message for the zone.
    fn update(&self) -> Message {
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        let mut m = Message::query();
        m.metadata.op_code = OpCode::Update;
        m.metadata.recursion_desired = false;
        m.add_zone(zone);
        m
    }

    async fn send(&self, m: Message, what: &str) -> Result<()> {
        let mut responses = self.client.send(m.into());
        let answer = responses
            .next()
            .await
            .with_context(|| format!("{what}: {} gave no answer", self.server))?
            .map_err(|e| transport(what, &self.server, &e.to_string()))?;
        match answer.response_code {
            ResponseCode::NoError => Ok(()),
            code => Err(refused(what, code)),
        }
    }
}

/// A prerequisite: no RRset of `rtype` at `name`.
fn absent(name: Name, rtype: RecordType) -> Record {
    let mut r = Record::update0(name, 0, rtype);
    r.dns_class = DNSClass::NONE;
    r.into_record_of_rdata()
}

/// An update deleting the whole RRset of `rtype` at `name`.
fn every(name: Name, rtype: RecordType) -> Record {
    let mut r = Record::update0(name, 0, rtype);
    r.dns_class = DNSClass::ANY;
    r.into_record_of_rdata()
}

/// An error before any DNS answer: a signature the server did not accept shows as a TSIG
/// failure on its unsigned answer.
fn transport(what: &str, server: &str, error: &str) -> anyhow::Error {
    if error.contains("TSIG") || error.contains("HMAC") || error.contains("tsig") {
        return anyhow!(
            "{what}: the server {server} did not accept the TSIG signature (BADKEY/BADSIG): check dns.rfc2136.tsigKeyName, tsigAlgorithm and the secret"
        );
    }
    anyhow!("{what}: {error} (server {server})")
}

/// Where the secret is, for messages (never the secret).
fn where_secret(s: &TsigSecret) -> String {
    match s {
        TsigSecret::Env(v) => format!("environment variable {v}"),
        TsigSecret::File(p) => format!("file {}", p.display()),
    }
}

fn read_secret(s: &TsigSecret) -> Result<String> {
    let text = match s {
        TsigSecret::Env(v) => std::env::var(v).map_err(|_| {
            anyhow!("the TSIG secret is to be in environment variable {v} (dns.rfc2136.tsigSecretEnv), which is not set")
        })?,
        TsigSecret::File(p) => std::fs::read_to_string(p).map_err(|e| {
            anyhow!("cannot read the TSIG secret from {} (dns.rfc2136.tsigSecretFile): {e}", p.display())
        })?,
    };
    if text.trim().is_empty() {
        bail!("the TSIG secret in {} is empty", where_secret(s));
    }
    Ok(text)
}

async fn resolve(server: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| anyhow!("cannot resolve the DNS server `{server}`: {e}"))?
        .next()
        .ok_or_else(|| anyhow!("the DNS server `{server}` has no address"))
}

/// DNS records as the engine handles objects: JSON in the shape of a Kubernetes object of the
/// pseudo group `dns.vz.dev` (see [`vz_providers::dns_records`]), read from and written to the
/// server. Labels, uid and the adopted mark live in the ownership record.
pub struct Records {
    dns: Dns,
}

/// The kind of a record object.
fn kind_of(kind: &str) -> Result<Kind> {
    match kind {
        "A" => Ok(Kind::A),
        "AAAA" => Ok(Kind::Aaaa),
        "CNAME" => Ok(Kind::Cname),
        other => bail!("vz does not write DNS records of kind {other}"),
    }
}

impl Records {
    /// Records on the server of `cfg`.
    pub async fn connect(cfg: &Rfc2136) -> Result<Records> {
        Ok(Records {
            dns: Dns::connect(cfg).await?,
        })
    }

    /// What `name` holds now: the record and its ownership text.
    async fn read(&self, kind: Kind, name: &str) -> Result<(Option<Rrset>, Option<String>)> {
        Ok((
            self.dns.read(name, kind).await?,
            self.dns.owner_text(name).await?,
        ))
    }
}

#[async_trait]
impl Elsewhere for Records {
    /// The record as an object, or `None` when it does not exist.
    async fn get(&self, r: &ObjectRef) -> Result<Option<serde_json::Value>> {
        let k = kind_of(&r.kind)?;
        let Some(rrset) = self.dns.read(&r.name, k).await? else {
            return Ok(None);
        };
        let owner = self.dns.owner_text(&r.name).await?;
        Ok(Some(object(&rrset, owner.as_deref())))
    }

    /// Apply the record object `m`: create it, change it, or take it over (a record without
    /// `vz`'s ownership gets one, marked adopted). With `dry_run`, only say what it would be.
    /// Returns the object as it then is.
    async fn apply(&self, m: &Manifest, dry_run: bool) -> Result<serde_json::Value> {
        let want = rrset_of(&m.body)?;
        let (live, was) = self.read(want.kind, &want.name).await?;
        let ours = was.as_deref().and_then(Owner::parse);
        let owner = Owner {
            platform: platform_of(&m.body),
            adopted: ours.as_ref().map_or(live.is_some(), |o| o.adopted),
            uid: ours.map(|o| o.uid).unwrap_or_else(new_uid),
        }
        .text();
        if !dry_run {
            self.dns
                .write(
                    &want.name,
                    live.as_ref(),
                    was.as_deref(),
                    Some(&want),
                    Some(&owner),
                )
                .await?;
        }
        Ok(object(&want, Some(&owner)))
    }

    /// Delete the record and its ownership (the uid of the ownership is the object's).
    async fn delete(&self, r: &ObjectRef) -> Result<Deleted> {
        let (live, was) = self.read(kind_of(&r.kind)?, &r.name).await?;
        let Some(current) = live else {
            return Ok(Deleted::AlreadyGone);
        };
        self.dns
            .write(&r.name, Some(&current), was.as_deref(), None, None)
            .await?;
        Ok(Deleted::Started {
            uid: was.as_deref().and_then(Owner::parse).map(|o| o.uid),
        })
    }

    /// Give up a record `vz` took over: its ownership record goes, the record stays. Returns it
    /// as it then is, or `None` when it is gone.
    async fn release(&self, r: &ObjectRef) -> Result<Option<serde_json::Value>> {
        let name = r.name.as_str();
        let (live, was) = self.read(kind_of(&r.kind)?, name).await?;
        let Some(current) = live else {
            return Ok(None);
        };
        if was.is_some() {
            self.dns
                .write(name, Some(&current), was.as_deref(), Some(&current), None)
                .await?;
        }
        Ok(Some(object(&current, None)))
    }

    /// Put a record back as `before` (an object as [`Elsewhere::get`] returned it): its values
    /// and its ownership, or neither when it had none.
    async fn restore(&self, before: &serde_json::Value) -> Result<serde_json::Value> {
        let want = rrset_of(before)?;
        let (live, was) = self.read(want.kind, &want.name).await?;
        let owner = text(before, &["metadata", "uid"]).map(|uid| {
            Owner {
                platform: platform_of(before),
                uid,
                adopted: before
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(crate::cluster::ADOPTED_ANNOTATION))
                    .is_some(),
            }
            .text()
        });
        self.dns
            .write(
                &want.name,
                live.as_ref(),
                was.as_deref(),
                Some(&want),
                owner.as_deref(),
            )
            .await?;
        Ok(object(&want, owner.as_deref()))
    }
}

/// DNS records when the configuration names no DNS server: every request is refused with what to
/// do (the state may still hold records made while one was named).
pub struct Unconfigured;

impl Unconfigured {
    fn refuse(r: &ObjectRef) -> anyhow::Error {
        anyhow!(
            "{r} is a DNS record, and the configuration names no DNS server (dns.rfc2136) to read it from: to switch away from it, first delete the records with `dns.rfc2136` still configured (`vz destroy --target dns`), or `vz state rm` their addresses to leave them in the zone"
        )
    }
}

#[async_trait]
impl Elsewhere for Unconfigured {
    async fn get(&self, r: &ObjectRef) -> Result<Option<serde_json::Value>> {
        Err(Self::refuse(r))
    }

    async fn apply(&self, m: &Manifest, _dry_run: bool) -> Result<serde_json::Value> {
        Err(Self::refuse(&ObjectRef::of(m)))
    }

    async fn delete(&self, r: &ObjectRef) -> Result<Deleted> {
        Err(Self::refuse(r))
    }

    async fn release(&self, r: &ObjectRef) -> Result<Option<serde_json::Value>> {
        Err(Self::refuse(r))
    }

    async fn restore(&self, before: &serde_json::Value) -> Result<serde_json::Value> {
        Err(Self::refuse(&crate::cluster::ref_of(before)?))
    }
}

/// What a record object says it holds.
fn rrset_of(obj: &serde_json::Value) -> Result<Rrset> {
    let kind = kind_of(
        obj.get("kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default(),
    )?;
    let name = text(obj, &["metadata", "name"]).context("a DNS record object without a name")?;
    let ttl = obj
        .pointer("/spec/ttl")
        .and_then(serde_json::Value::as_u64)
        .and_then(|t| u32::try_from(t).ok())
        .with_context(|| format!("{kind} {name} has no TTL"))?;
    let mut values: Vec<String> = obj
        .pointer("/spec/values")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(|s| s.trim_end_matches('.').to_string()))
        .collect();
    if values.is_empty() {
        bail!("{kind} {name} has no value");
    }
    values.sort();
    Ok(Rrset {
        name,
        kind,
        ttl,
        values,
    })
}

/// A string at a path of keys (keys may hold `/`, so no JSON pointer).
fn text(obj: &serde_json::Value, path: &[&str]) -> Option<String> {
    let mut at = obj;
    for k in path {
        at = at.get(*k)?;
    }
    at.as_str().map(str::to_string)
}

/// The platform a record object is labelled for.
fn platform_of(obj: &serde_json::Value) -> String {
    text(
        obj,
        &["metadata", "labels", vz_providers::manifest::PLATFORM_LABEL],
    )
    .unwrap_or_default()
}

/// A new uid for a record `vz` creates.
fn new_uid() -> String {
    let mut bytes = [0u8; 8];
    vz_providers::pki::random_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The object of an RRset, with what its ownership text says.
fn object(rrset: &Rrset, owner_text: Option<&str>) -> serde_json::Value {
    use sha2::{Digest, Sha256};
    let mut meta = serde_json::json!({"name": rrset.name});
    let version = hex::encode(Sha256::digest(format!(
        "{}|{}|{}",
        rrset.ttl,
        rrset.values.join(","),
        owner_text.unwrap_or_default()
    )));
    meta["resourceVersion"] = serde_json::Value::String(version[..16].to_string());
    if let Some(owner) = owner_text.and_then(Owner::parse) {
        meta["uid"] = serde_json::Value::String(owner.uid.clone());
        meta["labels"] = serde_json::json!({
            vz_providers::manifest::MANAGED_BY_LABEL: vz_providers::manifest::MANAGED_BY_VALUE,
            vz_providers::manifest::PLATFORM_LABEL: owner.platform,
        });
        if owner.adopted {
            meta["annotations"] = serde_json::json!({crate::cluster::ADOPTED_ANNOTATION: "true"});
        }
    }
    serde_json::json!({
        "apiVersion": vz_providers::dns_records::API_VERSION,
        "kind": rrset.kind.name(),
        "metadata": meta,
        "spec": {"ttl": rrset.ttl, "values": rrset.values},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_reads_back_what_it_writes_and_ignores_others() {
        let mut o = Owner {
            platform: "dev".into(),
            uid: "0b5c".into(),
            adopted: false,
        };
        assert_eq!(o.text(), "heritage=vz,vz/platform=dev,vz/uid=0b5c");
        assert_eq!(Owner::parse(&o.text()), Some(o.clone()));
        o.adopted = true;
        assert_eq!(
            o.text(),
            "heritage=vz,vz/platform=dev,vz/uid=0b5c,vz/adopted=true"
        );
        assert_eq!(Owner::parse(&o.text()), Some(o));
        assert_eq!(
            Owner::parse("heritage=external-dns,external-dns/owner=default"),
            None
        );
        assert_eq!(Owner::parse("v=spf1 -all"), None);
    }

    #[test]
    fn values_are_checked_before_anything_is_sent() {
        assert!(Kind::A.rdata("192.0.2.1").is_ok());
        assert!(Kind::A.rdata("2001:db8::1").is_err());
        assert!(Kind::Aaaa.rdata("2001:db8::1").is_ok());
        assert!(
            Kind::Cname
                .rdata("verrazzano-ingress.dev.example.test")
                .is_ok()
        );
        assert_eq!(owner_name("a.example.test"), "_vz.a.example.test");
    }
}
