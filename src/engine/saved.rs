//! Saved plans (`vz plan --out FILE`, `vz apply FILE`).
//!
//! A saved plan is bound to what it was made from: the configuration file (by its sha256) and the
//! state (by lineage and serial). Applying it refuses, as stale, a plan whose configuration or state
//! moved on since. It holds no object content that could leak a secret: desired objects are rendered
//! again from the unchanged configuration and checked against the hashes the plan recorded, and the
//! before/after views it keeps are masked.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vz_providers::Step;

use crate::engine::EngineError;
use crate::engine::plan::Plan;

/// The saved-plan format this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// A plan saved to a file, with what it was made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The `vz` that made it.
    pub vz_version: String,
    /// The configuration file (absolute).
    pub config_path: PathBuf,
    /// sha256 of the configuration file's bytes.
    pub config_sha256: String,
    /// Where the state is (a local file's path is absolute).
    pub state: vz_state::Location,
    /// Lineage of the state the plan was made against; `None` when there was no state yet.
    pub lineage: Option<String>,
    /// Serial of that state (0 when there was none).
    pub serial: u64,
    /// The plan.
    pub plan: Plan,
}

/// sha256 (hex) of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// An absolute form of `path` (the file need not exist).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `location` with a local file's path made absolute (a saved plan may be applied from elsewhere).
pub fn absolute_location(location: vz_state::Location) -> vz_state::Location {
    match location {
        vz_state::Location::Local { path } => vz_state::Location::Local {
            path: absolute(&path),
        },
        remote @ (vz_state::Location::Kubernetes { .. } | vz_state::Location::S3 { .. }) => remote,
    }
}

/// Write `saved` to `path` atomically.
pub fn save(path: &Path, saved: &SavedPlan) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(saved).context("cannot encode the plan")?;
    vz_state::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write the plan {}", path.display()))
}

/// Read a saved plan.
pub fn load(path: &Path) -> Result<SavedPlan> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the plan {}", path.display()))?;
    parse(path, &bytes)
}

/// Decode a saved plan read from `path`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<SavedPlan> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .with_context(|| format!("{} is not a saved vz plan", path.display()))?;
    if let Some(v) = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        && v != u64::from(FORMAT_VERSION)
    {
        let by = if v > u64::from(FORMAT_VERSION) {
            "a newer"
        } else {
            "an older"
        };
        bail!(
            "the plan {} was saved in format {v} by {by} vz; this vz reads format {FORMAT_VERSION}: make the plan again",
            path.display()
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a saved vz plan", path.display()))
}

/// Check that `saved` still applies to the state `(lineage, serial)` now stored, and to the
/// configuration as it is now; then give its changes their desired objects, rendered again.
pub fn bind(
    saved: SavedPlan,
    plan_file: &Path,
    lineage_now: Option<&str>,
    serial_now: u64,
    steps: &[Step],
) -> Result<Plan> {
    let stale = |why: String| {
        anyhow::Error::new(EngineError::StalePlan {
            plan: plan_file.to_path_buf(),
            config: saved.config_path.clone(),
            why,
        })
    };
    if file_sha256(&saved.config_path)? != saved.config_sha256 {
        return Err(stale(format!(
            "the configuration {} changed since it was made",
            saved.config_path.display()
        )));
    }
    if saved.lineage.as_deref() != lineage_now || saved.serial != serial_now {
        return Err(stale(format!(
            "the state {} changed since it was made (serial {} then, {serial_now} now)",
            saved.state, saved.serial
        )));
    }
    let mut plan = saved.plan;
    for c in &mut plan.changes {
        let Some(want) = &c.desired_sha256 else {
            continue;
        };
        let m = steps
            .iter()
            .find(|s| s.id == c.step)
            .and_then(|s| s.objects.iter().find(|m| s.address_of(m) == c.address));
        match m {
            Some(m) if &m.sha256() == want => c.desired = Some(m.clone()),
            _ => {
                return Err(stale(format!(
                    "{} renders differently now (was this plan made by another vz version?)",
                    c.address
                )));
            }
        }
    }
    Ok(plan)
}
