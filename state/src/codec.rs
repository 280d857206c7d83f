//! Encoding and decoding of the state document, with an integrity checksum.
//!
//! On disk the state is a JSON object: the fields of [`State`] plus `checksum`, which is
//! `sha256:<hex>` of the canonical JSON (sorted keys, no whitespace) of the document without the
//! checksum field. Decoding checks, in this order: that the bytes are JSON, that the format version is
//! one this build understands, that the checksum matches, and that the fields are well formed. Each
//! failure is a distinct [`DecodeError`] so the user can be told exactly what is wrong.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{FORMAT_VERSION, State};

/// Why a state document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a JSON object.
    #[error("it is not valid JSON ({0})")]
    NotJson(String),
    /// Written by a newer `vz` whose format this build does not know.
    #[error(
        "it was written in state format version {found} (by vz {tool_version}), newer than this vz understands (version {supported}); upgrade vz"
    )]
    NewerVersion {
        /// The version found in the document.
        found: u64,
        /// The `tool_version` found in the document.
        tool_version: String,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The document has no checksum field.
    #[error("it has no checksum, so its integrity cannot be verified")]
    MissingChecksum,
    /// The checksum does not match the content: the file was edited or damaged.
    #[error(
        "its checksum does not match its content (recorded {recorded}, computed {computed}): it was modified or damaged"
    )]
    ChecksumMismatch {
        /// Checksum recorded in the document.
        recorded: String,
        /// Checksum computed from the content.
        computed: String,
    },
    /// The JSON is well formed and the checksum matches, but a field has the wrong shape.
    #[error("a field is malformed ({0})")]
    Malformed(String),
}

/// A state that cannot be encoded (never expected: every field is a string, number or list).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the state document: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// sha256 (as `sha256:<hex>`) of the canonical JSON of `value`.
pub fn checksum_of(value: &Value) -> String {
    // serde_json's Map is a BTreeMap here (no `preserve_order`), so the compact form `Display`
    // writes is canonical: keys sorted, no whitespace.
    format!("sha256:{}", hex::encode(Sha256::digest(value.to_string())))
}

/// The checksum a state document gets when encoded (identifies its content).
pub fn checksum_of_state(state: &State) -> Result<String, EncodeError> {
    Ok(checksum_of(&serde_json::to_value(state)?))
}

/// Encode `state` as pretty JSON with its checksum.
pub fn encode(state: &State) -> Result<Vec<u8>, EncodeError> {
    let mut value = serde_json::to_value(state)?;
    let checksum = checksum_of(&value);
    if let Value::Object(map) = &mut value {
        map.insert("checksum".into(), Value::String(checksum));
    }
    let mut out = serde_json::to_vec_pretty(&value)?;
    out.push(b'\n');
    Ok(out)
}

/// Decode and verify a state document.
pub fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let map = value
        .as_object_mut()
        .ok_or_else(|| DecodeError::NotJson("the document is not a JSON object".into()))?;
    if let Some(found) = map.get("version").and_then(Value::as_u64)
        && found > u64::from(FORMAT_VERSION)
    {
        let tool_version = map
            .get("tool_version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        return Err(DecodeError::NewerVersion {
            found,
            tool_version,
            supported: FORMAT_VERSION,
        });
    }
    let recorded = match map.remove("checksum") {
        Some(Value::String(s)) => s,
        _ => return Err(DecodeError::MissingChecksum),
    };
    let computed = checksum_of(&value);
    if recorded != computed {
        return Err(DecodeError::ChecksumMismatch { recorded, computed });
    }
    serde_json::from_value(value).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectRecord;

    fn sample() -> State {
        let mut s = State::new("default", "0.1.0");
        s.serial = 3;
        s.upsert(ObjectRecord {
            address: "network-policies/NetworkPolicy/keycloak/keycloak".into(),
            step: "network-policies".into(),
            api_version: "networking.k8s.io/v1".into(),
            kind: "NetworkPolicy".into(),
            namespace: Some("keycloak".into()),
            name: "keycloak".into(),
            uid: "5f0c".into(),
            manifest_sha256: "ab".repeat(32),
            resource_version: Some("42".into()),
            depends_on: vec!["namespaces".into()],
            adopted: true,
            patched: false,
            outputs: [("ingress-ip".to_string(), "192.0.2.1".to_string())].into(),
            certificate: None,
        });
        s
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(decode(&encode(&s).expect("encodes")).expect("decodes"), s);
    }

    #[test]
    fn an_unfinished_run_is_kept_and_a_finished_state_does_not_mention_it() {
        let mut s = sample();
        let plain = String::from_utf8(encode(&s).expect("encodes")).expect("utf8");
        assert!(!plain.contains("unfinished"), "{plain}");
        assert_eq!(decode(plain.as_bytes()).expect("decodes").unfinished, None);
        s.unfinished = Some(crate::model::Unfinished::now("apply"));
        let marked = decode(&encode(&s).expect("encodes")).expect("decodes");
        assert_eq!(marked.unfinished, s.unfinished);
        assert_eq!(
            marked.unfinished.map(|u| u.operation).as_deref(),
            Some("apply")
        );
    }

    #[test]
    fn encoded_document_carries_a_sha256_checksum() {
        let v: Value = serde_json::from_slice(&encode(&sample()).expect("encodes")).expect("json");
        let sum = v["checksum"].as_str().expect("checksum string");
        assert!(sum.starts_with("sha256:") && sum.len() == 7 + 64, "{sum}");
    }

    #[test]
    fn an_edited_document_fails_the_checksum() {
        let text = String::from_utf8(encode(&sample()).expect("encodes")).expect("utf8");
        let tampered = text.replace("\"uid\": \"5f0c\"", "\"uid\": \"5f0d\"");
        assert_ne!(text, tampered);
        assert!(matches!(
            decode(tampered.as_bytes()),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn reformatting_the_json_keeps_the_checksum_valid() {
        let s = sample();
        let v: Value = serde_json::from_slice(&encode(&s).expect("encodes")).expect("json");
        let compact = serde_json::to_vec(&v).expect("encode");
        assert_eq!(decode(&compact).expect("decodes"), s);
    }

    #[test]
    fn truncated_json_is_reported_as_not_json() {
        let bytes = encode(&sample()).expect("encodes");
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(DecodeError::NotJson(_))
        ));
    }

    #[test]
    fn a_newer_format_is_refused_before_anything_else() {
        let doc = serde_json::json!({"version": FORMAT_VERSION + 1, "tool_version": "9.9.9"});
        let err = decode(&serde_json::to_vec(&doc).expect("encode")).expect_err("refused");
        assert!(
            matches!(err, DecodeError::NewerVersion { found, .. } if found == u64::from(FORMAT_VERSION) + 1)
        );
        assert!(err.to_string().contains("9.9.9"));
    }

    #[test]
    fn a_missing_checksum_is_refused() {
        let v = serde_json::to_value(sample()).expect("value");
        assert!(matches!(
            decode(&serde_json::to_vec(&v).expect("encode")),
            Err(DecodeError::MissingChecksum)
        ));
    }
}
