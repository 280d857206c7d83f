//! Issuing and reading X.509 certificates: pure functions of their inputs (and of fresh random
//! keys), with no I/O, so the certificate steps can plan from what a certificate says and issue
//! only during apply.
//!
//! - [`self_signed_ca`], [`intermediate_ca`] and [`leaf`] issue with `rcgen`, with ECDSA P-256
//!   keys by default or RSA 2048/4096 ([`KeyAlgorithm`]; `ring`, rcgen's backend here, signs with
//!   RSA but cannot make RSA keys, so the `rsa` crate makes them); every validity window, name and
//!   usage is set explicitly (rcgen's defaults are not).
//! - [`inspect`] reads a PEM certificate with `x509-parser`: what a plan compares (SANs, issuer,
//!   key, validity) and what the state records (fingerprint, serial, notAfter) — never the key.
//! - [`renewal`] says whether a certificate must be issued again, and why.
//!
//! An [`Issued`] pair's private key is kept out of `Debug` output.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One day, in seconds.
pub const DAY: i64 = 86_400;

/// What went wrong issuing or reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("cannot issue the certificate: {0}")]
    Issue(String),
    /// Not a PEM certificate, or not one this module can read.
    #[error("not a readable PEM certificate: {0}")]
    Parse(String),
    /// A time outside what a certificate can hold.
    #[error("invalid validity: {0}")]
    Time(String),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"(sensitive value)")
            .finish()
    }
}

/// The kind of key a certificate gets; in configuration files `ECDSA-P256`, `RSA-2048` or
/// `RSA-4096`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 (the default: small and fast).
    #[default]
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    /// RSA, 2048 bits.
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    /// RSA, 4096 bits (Verrazzano's choice for Istio's CA).
    #[serde(rename = "RSA-4096")]
    Rsa4096,
}

impl KeyAlgorithm {
    /// How [`inspect`] reports a key of this kind ([`CertInfo::key_algorithm`]).
    pub fn label(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "EC P-256",
            KeyAlgorithm::Rsa2048 => "RSA 2048",
            KeyAlgorithm::Rsa4096 => "RSA 4096",
        }
    }

    fn generate(self) -> Result<KeyPair, PkiError> {
        let bits = match self {
            KeyAlgorithm::EcdsaP256 => {
                return KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue_err);
            }
            KeyAlgorithm::Rsa2048 => 2048,
            KeyAlgorithm::Rsa4096 => 4096,
        };
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits)
            .map_err(|e| PkiError::Issue(format!("cannot make an RSA key: {e}")))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| PkiError::Issue(format!("cannot encode the RSA key: {e}")))?;
        KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &rcgen::PKCS_RSA_SHA256)
            .map_err(issue_err)
    }
}

/// The names and lifetime of a certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Common name.
    pub common_name: String,
    /// Organization (`O=`), if any.
    pub organization: Option<String>,
    /// Subject alternative names: DNS names, or IP addresses written as such.
    pub sans: Vec<String>,
    /// Valid from `now` for this many seconds.
    pub validity_secs: i64,
    /// Its key.
    pub key: KeyAlgorithm,
}

fn time_at(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| PkiError::Time(e.to_string()))
}

fn issue_err(e: rcgen::Error) -> PkiError {
    PkiError::Issue(e.to_string())
}

/// How long before its issue a certificate's validity starts (clock skew between this machine
/// and the cluster's): a certificate `vz` issued at `t` has `not_before` = `t - BACKDATE`.
pub const BACKDATE: i64 = 3600;

/// Parameters with the subject's names and a validity window starting [`BACKDATE`] before `now`.
fn params(subject: &Subject, now: i64) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = &subject.organization {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, subject.common_name.as_str());
    p.distinguished_name = dn;
    p.not_before = time_at(now - BACKDATE)?;
    p.not_after = time_at(now + subject.validity_secs)?;
    for san in &subject.sans {
        p.subject_alt_names.push(match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if !is_dns_name(san) => {
                return Err(PkiError::Issue(format!(
                    "SAN `{san}` is neither a DNS name nor an IP address"
                )));
            }
            Err(_) => SanType::DnsName(
                san.as_str()
                    .try_into()
                    .map_err(|e: rcgen::Error| PkiError::Issue(format!("SAN `{san}`: {e}")))?,
            ),
        });
    }
    Ok(p)
}

/// A DNS name a certificate may carry: dot-separated labels of 1–63 letters, digits and `-` (not
/// at either end), 253 characters at most; the first label may be `*`.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (i == 0 && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        })
}

fn ca_params(
    subject: &Subject,
    now: i64,
    path_len: Option<u8>,
) -> Result<CertificateParams, PkiError> {
    let mut p = params(subject, now)?;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// A self-signed CA (a root).
pub fn self_signed_ca(subject: &Subject, now: i64) -> Result<Issued, PkiError> {
    let key = subject.key.generate()?;
    let cert = ca_params(subject, now, None)?
        .self_signed(&key)
        .map_err(issue_err)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issuer_of(ca: &Issued) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(issue_err)?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(issue_err)
}

/// A CA signed by `issuer` that may sign leaves only (path length 0), as Istio's plug-in CA is.
pub fn intermediate_ca(subject: &Subject, issuer: &Issued, now: i64) -> Result<Issued, PkiError> {
    let key = subject.key.generate()?;
    let mut p = ca_params(subject, now, Some(0))?;
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &issuer_of(issuer)?).map_err(issue_err)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A TLS server certificate signed by `issuer`: key usage digital signature, extended key usage
/// server authentication, the subject's SANs.
pub fn leaf(subject: &Subject, issuer: &Issued, now: i64) -> Result<Issued, PkiError> {
    let key = subject.key.generate()?;
    let mut p = params(subject, now)?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &issuer_of(issuer)?).map_err(issue_err)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a certificate says, as plans compare it and the state records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// sha256 of the DER encoding, hex.
    pub fingerprint: String,
    /// Serial number, hex.
    pub serial: String,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// Subject alternative names (DNS names and IP addresses), in the certificate's order.
    pub sans: Vec<String>,
    /// A CA (basic constraints `CA:true`).
    pub is_ca: bool,
    /// May serve TLS (extended key usage server authentication).
    pub server_auth: bool,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Subject key identifier, hex.
    pub key_id: Option<String>,
    /// Authority key identifier (the issuer's subject key identifier), hex.
    pub issuer_key_id: Option<String>,
    /// Public key algorithm, e.g. `EC P-256`, `RSA 2048`.
    pub key_algorithm: String,
}

/// The first certificate of `pem`, parsed.
fn parse_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    if block.label != "CERTIFICATE" {
        return Err(PkiError::Parse(format!("a PEM {} block", block.label)));
    }
    Ok(block.contents)
}

fn certificate(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| PkiError::Parse(e.to_string()))
}

/// Read the first certificate of `pem`.
pub fn inspect(pem: &str) -> Result<CertInfo, PkiError> {
    let der = parse_der(pem)?;
    let cert = certificate(&der)?;
    let mut info = CertInfo {
        fingerprint: hex::encode(Sha256::digest(&der)),
        serial: hex::encode(cert.raw_serial()),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        sans: Vec::new(),
        is_ca: cert.is_ca(),
        server_auth: false,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key_id: None,
        issuer_key_id: None,
        key_algorithm: key_algorithm(&cert),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => info.sans.push((*d).to_string()),
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_of(bytes) {
                                info.sans.push(ip.to_string());
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(eku) => info.server_auth = eku.server_auth,
            ParsedExtension::SubjectKeyIdentifier(id) => info.key_id = Some(hex::encode(id.0)),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                info.issuer_key_id = aki.key_identifier.as_ref().map(|id| hex::encode(id.0));
            }
            _ => {}
        }
    }
    Ok(info)
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => "EC P-256".into(),
            384 => "EC P-384".into(),
            n => format!("EC {n}"),
        },
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(_) | Err(_) => "unknown".into(),
    }
}

/// Fill `buf` with random bytes from the operating system.
pub fn random_bytes(buf: &mut [u8]) {
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(buf);
}

/// The PEM certificates of a chain (or bundle), each as its own PEM text, in order.
pub fn split_certificates(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    out
}

/// Whether `cert_pem` carries a signature that `issuer_pem`'s key made.
pub fn signed_by(cert_pem: &str, issuer_pem: &str) -> Result<bool, PkiError> {
    let der = parse_der(cert_pem)?;
    let issuer_der = parse_der(issuer_pem)?;
    let cert = certificate(&der)?;
    let issuer = certificate(&issuer_der)?;
    Ok(cert.verify_signature(Some(issuer.public_key())).is_ok())
}

/// Why a certificate must be issued again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// It expires within the renewal window (at `not_after`, Unix seconds), or has.
    Expiring {
        /// End of validity, Unix seconds.
        not_after: i64,
    },
    /// Its SANs are not the wanted ones.
    Names {
        /// The SANs it has.
        had: Vec<String>,
    },
    /// Another CA issued it (the CA was issued again, or is another one).
    Issuer,
    /// Its key is not of the wanted kind.
    Key {
        /// The kind it has (as [`CertInfo::key_algorithm`] says it).
        had: String,
    },
}

/// Whether two lists of SANs name the same set, whatever the order or case.
pub fn same_names(a: &[String], b: &[String]) -> bool {
    let normal = |names: &[String]| {
        let mut v: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    normal(a) == normal(b)
}

/// Whether the certificate `info` must be issued again for `want_sans` with a `want_key` key from a
/// CA whose subject key identifier is `issuer_key_id`, `renew_before` seconds ahead of its expiry;
/// `None` when it stays. SANs compare as sets, whatever their case.
pub fn renewal(
    info: &CertInfo,
    want_sans: &[String],
    want_key: KeyAlgorithm,
    issuer_key_id: Option<&str>,
    renew_before: i64,
    now: i64,
) -> Option<Renewal> {
    if !same_names(&info.sans, want_sans) {
        return Some(Renewal::Names {
            had: info.sans.clone(),
        });
    }
    if info.key_algorithm != want_key.label() {
        return Some(Renewal::Key {
            had: info.key_algorithm.clone(),
        });
    }
    if issuer_key_id.is_some() && info.issuer_key_id.as_deref() != issuer_key_id {
        return Some(Renewal::Issuer);
    }
    (info.not_after - renew_before <= now).then_some(Renewal::Expiring {
        not_after: info.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn subject(cn: &str, sans: &[&str], days: i64) -> Subject {
        Subject {
            common_name: cn.into(),
            organization: Some("vz".into()),
            sans: sans.iter().map(|s| (*s).to_string()).collect(),
            validity_secs: days * DAY,
            key: KeyAlgorithm::default(),
        }
    }

    #[test]
    fn a_leaf_is_signed_by_its_ca_with_its_names_usage_and_window() {
        let ca = self_signed_ca(&subject("vz-ca-1a2b", &[], 3650), NOW).expect("ca");
        let host = "verrazzano.dev.192.0.2.10.nip.io";
        let tls = leaf(&subject(host, &[host, "192.0.2.10"], 90), &ca, NOW).expect("leaf");
        assert!(signed_by(&tls.cert_pem, &ca.cert_pem).expect("parse"));
        let other = self_signed_ca(&subject("other", &[], 10), NOW).expect("other");
        assert!(!signed_by(&tls.cert_pem, &other.cert_pem).expect("parse"));

        let info = inspect(&tls.cert_pem).expect("inspect");
        assert_eq!(info.sans, [host, "192.0.2.10"]);
        assert_eq!(info.common_name.as_deref(), Some(host));
        assert!(info.server_auth && !info.is_ca);
        assert_eq!(info.not_after, NOW + 90 * DAY);
        assert!(info.not_before <= NOW);
        assert_eq!(info.key_algorithm, "EC P-256");
        let ca_info = inspect(&ca.cert_pem).expect("ca");
        assert!(ca_info.is_ca);
        assert_eq!(
            info.issuer_key_id, ca_info.key_id,
            "the leaf names its issuer"
        );
        assert_eq!(info.fingerprint.len(), 64);
        assert!(tls.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn an_intermediate_chains_to_its_root_and_signs_leaves() {
        let root = self_signed_ca(&subject("Root CA", &[], 7300), NOW).expect("root");
        let inter =
            intermediate_ca(&subject("Intermediate CA", &[], 3650), &root, NOW).expect("inter");
        assert!(signed_by(&inter.cert_pem, &root.cert_pem).expect("parse"));
        assert!(inspect(&inter.cert_pem).expect("inter").is_ca);
        let svc = "istiod.istio-system.svc";
        let tls = leaf(&subject(svc, &[svc], 30), &inter, NOW).expect("leaf");
        assert!(signed_by(&tls.cert_pem, &inter.cert_pem).expect("parse"));
        assert!(!signed_by(&tls.cert_pem, &root.cert_pem).expect("parse"));
    }

    #[test]
    fn rsa_keys_are_made_and_sign_as_asked() {
        let mut root = subject("Root CA", &[], 7300);
        root.key = KeyAlgorithm::Rsa2048;
        let ca = self_signed_ca(&root, NOW).expect("RSA root");
        assert_eq!(inspect(&ca.cert_pem).expect("ca").key_algorithm, "RSA 2048");
        assert_eq!(KeyAlgorithm::Rsa2048.label(), "RSA 2048");
        // An EC leaf from the RSA CA, loaded back from its PEM key as at apply time.
        let tls = leaf(&subject("a", &["a.example.test"], 30), &ca, NOW).expect("leaf");
        assert!(signed_by(&tls.cert_pem, &ca.cert_pem).expect("parse"));
        assert_eq!(
            inspect(&tls.cert_pem).expect("leaf").key_algorithm,
            KeyAlgorithm::EcdsaP256.label()
        );
    }

    #[test]
    fn renewal_is_due_for_names_issuer_or_expiry_and_not_otherwise() {
        let ca = self_signed_ca(&subject("ca", &[], 3650), NOW).expect("ca");
        let ca_id = inspect(&ca.cert_pem).expect("ca").key_id;
        let info = inspect(
            &leaf(
                &subject("a", &["a.example.test", "b.example.test"], 90),
                &ca,
                NOW,
            )
            .expect("leaf")
            .cert_pem,
        )
        .expect("inspect");
        let want = ["b.example.test".to_string(), "a.example.test".to_string()];
        let month = 30 * DAY;
        assert_eq!(
            renewal(&info, &want, EC, ca_id.as_deref(), month, NOW),
            None
        );
        assert_eq!(
            renewal(&info, &want, EC, ca_id.as_deref(), month, NOW + 61 * DAY),
            Some(Renewal::Expiring {
                not_after: NOW + 90 * DAY
            })
        );
        assert!(matches!(
            renewal(&info, &want[..1], EC, ca_id.as_deref(), month, NOW),
            Some(Renewal::Names { .. })
        ));
        assert_eq!(
            renewal(&info, &want, EC, Some("00"), month, NOW),
            Some(Renewal::Issuer)
        );
        assert_eq!(
            renewal(
                &info,
                &want,
                KeyAlgorithm::Rsa2048,
                ca_id.as_deref(),
                month,
                NOW
            ),
            Some(Renewal::Key {
                had: "EC P-256".into()
            })
        );
    }

    const EC: KeyAlgorithm = KeyAlgorithm::EcdsaP256;

    #[test]
    fn chains_split_into_their_certificates() {
        let root = self_signed_ca(&subject("Root CA", &[], 7300), NOW).expect("root");
        let inter =
            intermediate_ca(&subject("Intermediate CA", &[], 3650), &root, NOW).expect("inter");
        let chain = format!("{}{}", inter.cert_pem, root.cert_pem);
        let certs = split_certificates(&chain);
        assert_eq!(certs, [inter.cert_pem.clone(), root.cert_pem.clone()]);
        assert_eq!(split_certificates("no PEM here"), Vec::<String>::new());
    }

    #[test]
    fn what_is_not_a_certificate_is_an_error() {
        assert!(inspect("not PEM").is_err());
        let ca = self_signed_ca(&subject("ca", &[], 1), NOW).expect("ca");
        assert!(
            matches!(inspect(&ca.key_pem), Err(PkiError::Parse(m)) if m.contains("PRIVATE KEY"))
        );
        assert!(matches!(
            leaf(&subject("x", &["not a name!"], 1), &ca, NOW),
            Err(PkiError::Issue(_))
        ));
    }
}
