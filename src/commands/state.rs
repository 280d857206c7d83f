//! `vz state ...`: inspect or change the recorded state without touching the cluster.

use std::process::ExitCode;

use anyhow::{Context, Result};
use vz_state::{Location, State, Store};

use super::Stored;
use crate::cli::ClusterArgs;
use crate::cli::{StateArgs, StateCommand};
use crate::error::CommandError;
use crate::output::out;

/// Where the state `args` name is: `--state`, or where the configuration says.
pub fn state_location(cluster: &ClusterArgs, args: &StateArgs) -> Result<Location> {
    match (&args.state, &args.file) {
        (Some(p), _) => Ok(Location::Local { path: p.clone() }),
        (None, Some(f)) => {
            let platform = vz_providers::config::load(f)?;
            super::workspace::location(cluster, f, &platform.state)
        }
        (None, None) => Err(CommandError::usage(anyhow::anyhow!("no state named"))
            .hint("name the state with -f CONFIG or --state FILE")
            .into()),
    }
}

/// Read the state without locking (reads are atomic); an error when there is none.
async fn read(cluster: &ClusterArgs, args: &StateArgs) -> Result<(Store, State)> {
    let store = super::open_store(cluster, &state_location(cluster, args)?).await?;
    match store.read().await? {
        Some(s) => Ok((store, s)),
        None => Err(CommandError::state(anyhow::anyhow!(
            "there is no state at {} (nothing has been applied with it yet)",
            store.location()
        ))
        .into()),
    }
}

fn unknown_addresses(store: &Store, addresses: &[&String]) -> anyhow::Error {
    CommandError::usage(anyhow::anyhow!(
        "not in the state {}: {}; nothing was changed",
        store.location(),
        addresses
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .hint("`vz state list` shows the addresses")
    .into()
}

/// Run a `vz state` subcommand.
pub async fn run(cluster: &ClusterArgs, cmd: &StateCommand) -> Result<ExitCode> {
    match cmd {
        StateCommand::List(args) => {
            let (_, state) = read(cluster, args).await?;
            let mut text = String::new();
            for o in &state.objects {
                text.push_str(&o.address);
                text.push('\n');
            }
            out(&text)?;
        }
        StateCommand::Show { state, address } => {
            let (store, s) = read(cluster, state).await?;
            let Some(record) = s.get(address) else {
                return Err(unknown_addresses(&store, &[address]));
            };
            out(&format!("{}\n", serde_json::to_string_pretty(record)?))?;
        }
        StateCommand::Pull(args) => {
            let store = super::open_store(cluster, &state_location(cluster, args)?).await?;
            // The stored document as it is, checksum included (verified first).
            let Some(bytes) = store.read_raw().await? else {
                return Err(CommandError::state(anyhow::anyhow!(
                    "there is no state at {} (nothing has been applied with it yet)",
                    store.location()
                ))
                .into());
            };
            out(&String::from_utf8_lossy(&bytes))?;
        }
        StateCommand::Push {
            state,
            document: file,
            force,
        } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let incoming = vz_state::decode(&bytes).map_err(|e| {
                CommandError::usage(
                    anyhow::Error::new(e)
                        .context(format!("{} is not a usable vz state", file.display())),
                )
            })?;
            let stored = Stored::lock_at(
                cluster,
                state_location(cluster, state)?,
                "state push",
                state.lock_timeout,
            )
            .await?;
            let written = stored.store.push(&incoming, *force).await?;
            out(&format!(
                "Pushed {} ({} objects) to {} as serial {}.\n",
                file.display(),
                written.objects.len(),
                stored.store.location(),
                written.serial
            ))?;
            stored.release().await?;
        }
        StateCommand::Migrate { state, to } => {
            let Some(config) = &state.file else {
                return Err(CommandError::usage(anyhow::anyhow!(
                    "migrate needs the configuration (-f FILE): the target is read relative to it"
                ))
                .into());
            };
            let platform = vz_providers::config::load(config)?;
            let workspace = super::workspace::current(cluster, config)?;
            let target = vz_providers::config::parse_state(config, &platform.environment_name, to)?
                .for_workspace(&workspace);
            let from = state_location(cluster, state)?;
            if target == from {
                return Err(CommandError::usage(anyhow::anyhow!(
                    "the state is already at {target}"
                ))
                .into());
            }
            let source =
                Stored::open_at(cluster, from, "state migrate", state.lock_timeout).await?;
            if source.state.serial == 0 {
                return Err(CommandError::state(anyhow::anyhow!(
                    "there is no state at {} to migrate",
                    source.store.location()
                ))
                .into());
            }
            let dest =
                Stored::lock_at(cluster, target.clone(), "state migrate", state.lock_timeout)
                    .await?;
            let written = dest.store.push(&source.state, false).await?;
            let copy = dest.store.read().await?;
            if copy.as_ref() != Some(&written) || written.lineage != source.state.lineage {
                return Err(CommandError::state(anyhow::anyhow!(
                    "the copy at {target} does not read back as the state that was written; the configuration should keep pointing at {}",
                    source.store.location()
                ))
                .into());
            }
            out(&format!(
                "Copied the state ({} objects, lineage {}, serial {}) from {} to {target}, and read it back.\nNow set `state:` in {} to {to}; the old state at {} is kept until you remove it.\n",
                written.objects.len(),
                written.lineage,
                written.serial,
                source.store.location(),
                config.display(),
                source.store.location(),
            ))?;
            dest.release().await?;
            source.release().await?;
        }
        StateCommand::Rm { state, addresses } => {
            let mut stored = Stored::open_at(
                cluster,
                state_location(cluster, state)?,
                "state rm",
                state.lock_timeout,
            )
            .await?;
            let missing: Vec<&String> = addresses
                .iter()
                .filter(|a| stored.state.get(a).is_none())
                .collect();
            if !missing.is_empty() {
                return Err(unknown_addresses(&stored.store, &missing));
            }
            for a in addresses {
                stored.state.remove(a);
            }
            stored.store.write(&mut stored.state).await?;
            out(&format!(
                "Forgot {} object(s); they are still in the cluster, no longer managed by vz.\n",
                addresses.len()
            ))?;
            stored.release().await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
