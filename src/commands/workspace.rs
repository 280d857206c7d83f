//! `vz workspace`: one state per workspace for the same configuration, as Terraform users expect.
//!
//! The current workspace is `--workspace` (or `VZ_WORKSPACE`), else the one `vz workspace select`
//! wrote for this configuration (`.vz/<config file name>.workspace` beside it), else `default`. Each
//! workspace's state lives where the configuration's state does ([`Location::for_workspace`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use vz_state::{DEFAULT_WORKSPACE, Location};

use super::{Stored, connect_for_state};
use crate::cli::{ClusterArgs, WorkspaceCommand};
use crate::error::CommandError;
use crate::output::out;

/// The file that remembers the workspace selected for `config`.
fn selection_file(config: &Path) -> PathBuf {
    let dir = config.parent().unwrap_or_else(|| Path::new(""));
    let name = config.file_name().unwrap_or_default().to_string_lossy();
    dir.join(".vz").join(format!("{name}.workspace"))
}

/// Check a workspace name: a DNS label (it names Secrets and directories).
fn check(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CommandError::usage(anyhow!(
            "`{name}` is not a workspace name (1-63 characters of a-z, 0-9 and '-')"
        ))
        .into())
    }
}

/// The current workspace for `config`.
pub fn current(cluster: &ClusterArgs, config: &Path) -> Result<String> {
    let name = match &cluster.workspace {
        Some(w) => w.clone(),
        None => match std::fs::read_to_string(selection_file(config)) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_WORKSPACE.to_string(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read {}", selection_file(config).display()));
            }
        },
    };
    check(&name)?;
    Ok(name)
}

/// The state location of the current workspace of `config`.
pub fn location(cluster: &ClusterArgs, config: &Path, base: &Location) -> Result<Location> {
    Ok(base.for_workspace(&current(cluster, config)?))
}

fn select(config: &Path, name: &str) -> Result<()> {
    let file = selection_file(config);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    vz_state::write_atomic(&file, format!("{name}\n").as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))
}

/// Run a `vz workspace` command.
pub async fn run(cluster: &ClusterArgs, cmd: &WorkspaceCommand) -> Result<ExitCode> {
    let file = match cmd {
        WorkspaceCommand::List(f) | WorkspaceCommand::Show(f) => &f.file,
        WorkspaceCommand::New { config, .. }
        | WorkspaceCommand::Select { config, .. }
        | WorkspaceCommand::Delete { config, .. } => &config.file,
    };
    let platform = vz_providers::config::load(file)?;
    let base = platform.state.clone();
    let current = current(cluster, file)?;
    if let WorkspaceCommand::Show(_) = cmd {
        out(&format!("{current}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = connect_for_state(cluster, &base).await?;
    let existing = base.workspaces(client.as_ref()).await?;
    match cmd {
        WorkspaceCommand::Show(_) => {}
        WorkspaceCommand::List(_) => {
            let mut names = existing.clone();
            for w in [DEFAULT_WORKSPACE.to_string(), current.clone()] {
                if !names.contains(&w) {
                    names.push(w);
                }
            }
            names.sort();
            for n in names {
                let mark = if n == current { "*" } else { " " };
                out(&format!("{mark} {n}\n"))?;
            }
        }
        WorkspaceCommand::New { name, .. } => {
            check(name)?;
            if existing.contains(name) || name == DEFAULT_WORKSPACE {
                return Err(
                    CommandError::usage(anyhow!("workspace `{name}` already exists"))
                        .hint(format!(
                            "switch to it: vz workspace select -f {} {name}",
                            file.display()
                        ))
                        .into(),
                );
            }
            // An empty state of this platform, so that the workspace exists for everyone.
            let location = base.for_workspace(name);
            let mut stored = Stored::open_at(
                cluster,
                location.clone(),
                "workspace new",
                Default::default(),
            )
            .await?;
            stored.claim_for(&platform)?;
            stored.store.write(&mut stored.state).await?;
            stored.release().await?;
            select(file, name)?;
            out(&format!(
                "Created and switched to workspace `{name}` (state {location}, empty).\n"
            ))?;
        }
        WorkspaceCommand::Select { name, .. } => {
            check(name)?;
            if !existing.contains(name) && name != DEFAULT_WORKSPACE {
                return Err(CommandError::usage(anyhow!(
                    "workspace `{name}` does not exist (it has no state; known: {})",
                    existing.join(", ")
                ))
                .hint(format!(
                    "create it: vz workspace new -f {} {name}",
                    file.display()
                ))
                .into());
            }
            select(file, name)?;
            out(&format!("Switched to workspace `{name}`.\n"))?;
        }
        WorkspaceCommand::Delete { name, force, .. } => {
            check(name)?;
            if name == &current {
                return Err(CommandError::usage(anyhow!(
                    "workspace `{name}` is the current one: select another first"
                ))
                .into());
            }
            if !existing.contains(name) {
                return Err(CommandError::usage(anyhow!("workspace `{name}` has no state")).into());
            }
            let location = base.for_workspace(name);
            // Under its lock: nobody may be using it while it goes.
            let stored = Stored::open_at(
                cluster,
                location.clone(),
                "workspace delete",
                Default::default(),
            )
            .await?;
            let count = stored.state.objects.len();
            if count > 0 && !force {
                return Err(CommandError::state(anyhow!(
                    "workspace `{name}` still records {count} object(s): deleting its state would leave them in the cluster unmanaged"
                ))
                .hint(format!(
                    "destroy them first (vz destroy -f {} --workspace {name}), or pass --force",
                    file.display()
                ))
                .into());
            }
            location.delete(client.as_ref()).await?;
            stored.release().await?;
            if let Location::Local { path } = &location
                && let Some(dir) = path.parent()
            {
                // Its directory, and the workspaces' one when it was the last (both only if empty).
                let _ = std::fs::remove_dir(dir);
                if let Some(parent) = dir.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
            }
            out(&format!("Deleted workspace `{name}`.\n"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
