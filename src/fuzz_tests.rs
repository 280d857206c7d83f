//! Mutation fuzzing of the decoders that read what a user (or a crash) can hand `vz`: the
//! configuration, the state and a saved plan. Each starts from a corpus — the examples, the seeds in
//! `tests/corpus/<decoder>/` and documents made here — and decodes thousands of mutated copies (bits
//! flipped, bytes replaced by syntax characters, ranges deleted, repeated or spliced from another
//! seed). A decoder may refuse any of them, but must never panic.
//!
//! The mutations are seeded, so a run is repeatable; `VZ_FUZZ_ITERATIONS` (default 2,000 per
//! decoder) and `VZ_FUZZ_SEED` run longer or other rounds by hand:
//!
//! ```sh
//! VZ_FUZZ_ITERATIONS=200000 VZ_FUZZ_SEED=7 cargo test --release --bin vz fuzz_tests
//! ```
//!
//! An input that panics is written to the temporary directory and named in the failure, to be added
//! to the corpus once fixed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::cluster::ObjectRef;
use crate::diff::FieldChange;
use crate::engine::plan::{Action, Cause, Change, Plan};
use crate::engine::saved::{self, SavedPlan};

/// A small, fast, seeded generator (xorshift64*): the same seed gives the same mutations.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }
}

/// Bytes that change a document's structure rather than its values.
const SYNTAX: &[u8] = b"{}[]:,\"'\\\n\t -&*!|>#%@`\0\xff";

/// One mutated copy of `seed`; `other` is another seed to splice from.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len().max(1);
        let at = rng.below(len).min(out.len());
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = SYNTAX[rng.below(SYNTAX.len())];
            }
            2 => {
                let end = (at + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                // Repeat a range: deep nesting, long lines, duplicate keys.
                let end = (at + rng.below(256)).min(out.len());
                let piece = out[at..end].to_vec();
                for _ in 0..=rng.below(8) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + rng.below(512)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            _ => out.insert(at, SYNTAX[rng.below(SYNTAX.len())]),
        }
    }
    out
}

/// The files in `tests/corpus/<name>/` and `extra`.
fn corpus(name: &str, extra: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut seeds: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    seeds.extend(extra);
    assert!(!seeds.is_empty(), "no corpus for {name}");
    seeds
}

pub(crate) fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Feed `decode` the seeds and mutated copies of them; fail, naming a saved copy of the input, if
/// it panics on one.
fn fuzz(name: &str, seeds: &[Vec<u8>], decode: impl Fn(&[u8])) {
    let iterations = setting("VZ_FUZZ_ITERATIONS", 2_000);
    let mut rng = Rng(setting("VZ_FUZZ_SEED", 1).max(1) ^ 0x9E37_79B9_7F4A_7C15);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    for i in 0..iterations + seeds.len() as u64 {
        let input = match usize::try_from(i).ok().and_then(|i| seeds.get(i)) {
            Some(seed) => seed.clone(),
            None => {
                let seed = &seeds[rng.below(seeds.len())];
                let other = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed, other)
            }
        };
        if catch_unwind(AssertUnwindSafe(|| decode(&input))).is_err() {
            failure = Some((i, input));
            break;
        }
    }
    std::panic::set_hook(quiet);
    if let Some((i, input)) = failure {
        let path = std::env::temp_dir().join(format!("vz-fuzz-{name}-{i}"));
        let _ = std::fs::write(&path, &input);
        panic!(
            "the {name} decoder panicked on input {i} (saved as {}); rerun with it in tests/corpus/{name}/",
            path.display()
        );
    }
}

#[test]
fn the_configuration_parser_never_panics() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut extra = Vec::new();
    for name in ["quickstart.yaml", "full.yaml", "applications.yaml"] {
        extra.extend(std::fs::read(examples.join(name)).ok());
    }
    let seeds = corpus("config", extra);
    let file = Path::new("/fuzz/vz.yaml");
    fuzz("config", &seeds, |bytes| {
        // The file is read as UTF-8 first: invalid bytes are refused there.
        if let Ok(text) = std::str::from_utf8(bytes) {
            let _ = vz_providers::config::parse(file, text);
        }
    });
}

#[test]
fn the_state_decoder_never_panics() {
    let mut state = vz_state::State::new("dev", "0.1.0");
    state.upsert(vz_state::ObjectRecord {
        address: "namespaces/Namespace/keycloak".into(),
        step: "namespaces".into(),
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: "keycloak".into(),
        uid: "u1".into(),
        manifest_sha256: "00".repeat(32),
        resource_version: Some("12".into()),
        depends_on: vec!["crds".into()],
        adopted: true,
        patched: false,
        outputs: [("ip".to_string(), "192.0.2.1".to_string())].into(),
        certificate: None,
    });
    let encoded = vz_state::codec::encode(&state).expect("encode");
    let seeds = corpus("state", vec![encoded]);
    fuzz("state", &seeds, |bytes| {
        let _ = vz_state::codec::decode(bytes);
        // Past the checksum, which almost every mutation breaks: the document model itself, and
        // the address index a decoded state builds on first use.
        if let Ok(state) = serde_json::from_slice::<vz_state::State>(bytes) {
            let _ = state.get("namespaces/Namespace/keycloak");
        }
    });
}

#[test]
fn the_saved_plan_decoder_never_panics() {
    let saved = SavedPlan {
        format_version: saved::FORMAT_VERSION,
        vz_version: "0.1.0".into(),
        config_path: "/work/vz.yaml".into(),
        config_sha256: "00".repeat(32),
        state: vz_state::Location::Local {
            path: "/work/dev.vzstate.json".into(),
        },
        lineage: Some("l1".into()),
        serial: 3,
        plan: Plan {
            changes: vec![Change {
                address: "network-policies/NetworkPolicy/keycloak/keycloak".into(),
                step: "network-policies".into(),
                object: ObjectRef {
                    api_version: "networking.k8s.io/v1".into(),
                    kind: "NetworkPolicy".into(),
                    namespace: Some("keycloak".into()),
                    name: "keycloak".into(),
                },
                action: Action::Update,
                cause: Cause::Drift,
                desired: None,
                desired_sha256: Some("00".repeat(32)),
                live_uid: Some("u1".into()),
                live_resource_version: Some("7".into()),
                before: Some(serde_json::json!({"spec": {"podSelector": {}}})),
                after: Some(
                    serde_json::json!({"spec": {"podSelector": {"matchLabels": {"a": "b"}}}}),
                ),
                fields: vec![FieldChange {
                    path: "spec.podSelector.matchLabels.a".into(),
                    before: None,
                    after: Some(serde_json::json!("b")),
                    unknown: false,
                }],
                forces_replacement: vec![],
                reissue: None,
                follows: None,
                certificate: None,
                intent: None,
                status: None,
            }],
            destroy: false,
            refreshed: true,
            warnings: Vec::new(),
            notes: Vec::new(),
            connectivity: None,
            restarts: Vec::new(),
        },
    };
    let encoded = serde_json::to_vec_pretty(&saved).expect("encode");
    let seeds = corpus("plan", vec![encoded]);
    let file = Path::new("/fuzz/plan.json");
    fuzz("plan", &seeds, |bytes| {
        let _ = saved::parse(file, bytes);
    });
}
