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

use crate::engine::plan::Plan;

/// The saved-plan format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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
    /// The state file (absolute).
    pub state_path: PathBuf,
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
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a plan saved by vz plan --out", path.display()))?;
    if let Some(v) = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        && v > u64::from(FORMAT_VERSION)
    {
        bail!(
            "the plan {} was saved in format {v} by a newer vz; this vz reads format {FORMAT_VERSION}",
            path.display()
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a plan saved by vz plan --out", path.display()))
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
        anyhow::anyhow!(
            "the saved plan {} is stale: {why}.\nhint: make a new plan with `vz plan -f {} --out {}`",
            plan_file.display(),
            saved.config_path.display(),
            plan_file.display()
        )
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
            saved.state_path.display(),
            saved.serial
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
