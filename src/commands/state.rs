//! `vz state ...`: inspect or change the recorded state without touching the cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use vz_state::{LocalBackend, State};

use super::Stored;
use crate::cli::{StateArgs, StateCommand};

/// The state file `args` name: `--state`, or the one the configuration names.
pub fn state_path(args: &StateArgs) -> Result<PathBuf> {
    match (&args.state, &args.file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => Ok(vz_providers::config::load(f)?.state_path),
        (None, None) => bail!("name the state with -f CONFIG or --state FILE"),
    }
}

/// Read the state without locking (reads are atomic); an error when there is none.
fn read(args: &StateArgs) -> Result<(LocalBackend, State)> {
    let backend = LocalBackend::new(state_path(args)?);
    match backend.read()? {
        Some(s) => Ok((backend, s)),
        None => bail!(
            "there is no state file at {} (nothing has been applied with it yet)",
            backend.path().display()
        ),
    }
}

/// Run a `vz state` subcommand.
pub fn run(cmd: &StateCommand) -> Result<ExitCode> {
    match cmd {
        StateCommand::List(args) => {
            let (_, state) = read(args)?;
            for o in &state.objects {
                println!("{}", o.address);
            }
        }
        StateCommand::Show { state, address } => {
            let (backend, s) = read(state)?;
            let Some(record) = s.get(address) else {
                bail!(
                    "no object with address `{address}` in {}\nhint: `vz state list` shows the addresses",
                    backend.path().display()
                );
            };
            println!("{}", serde_json::to_string_pretty(record)?);
        }
        StateCommand::Pull(args) => {
            let (backend, _) = read(args)?;
            // The stored document as it is, checksum included (it was verified by `read`).
            let bytes = std::fs::read(backend.path())
                .with_context(|| format!("cannot read {}", backend.path().display()))?;
            print!("{}", String::from_utf8_lossy(&bytes));
        }
        StateCommand::Push {
            state,
            document: file,
            force,
        } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let incoming = vz_state::decode(&bytes)
                .with_context(|| format!("{} is not a usable vz state", file.display()))?;
            let stored = Stored::open_path(state_path(state)?, "state push", state.lock_timeout)?;
            let written = stored.backend.push(&incoming, *force)?;
            println!(
                "Pushed {} ({} objects) to {} as serial {}.",
                file.display(),
                written.objects.len(),
                stored.backend.path().display(),
                written.serial
            );
        }
        StateCommand::Rm { state, addresses } => {
            let mut stored = Stored::open_path(state_path(state)?, "state rm", state.lock_timeout)?;
            let missing: Vec<&String> = addresses
                .iter()
                .filter(|a| stored.state.get(a).is_none())
                .collect();
            if !missing.is_empty() {
                bail!(
                    "not in the state: {}; nothing was removed\nhint: `vz state list` shows the addresses",
                    missing
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for a in addresses {
                stored.state.remove(a);
            }
            stored.backend.write(&mut stored.state)?;
            println!(
                "Forgot {} object(s); they are still in the cluster, no longer managed by vz.",
                addresses.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
