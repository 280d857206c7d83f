//! `vz`: plan, apply and destroy the networking layer of a Verrazzano-style platform on Kubernetes.
//!
//! `main` only parses arguments, runs the command and turns errors into a message and exit code 1.
//! The work lives in [`commands`] (one module per subcommand), [`engine`] (graph, plan, apply),
//! [`cluster`] (the Kubernetes API), [`diff`] and [`output`].

mod cli;
mod cluster;
mod commands;
mod diff;
mod engine;
mod interrupt;
mod output;
mod sensitive;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Render(args) => return commands::render::run(args),
        Command::Graph(args) => return commands::graph::run(args),
        Command::State(cmd) => return commands::state::run(cmd),
        Command::ForceUnlock(args) => return commands::unlock::run(args),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match &cli.command {
            Command::Plan(args) => commands::plan::run(&cli.cluster, args).await,
            Command::Apply(args) => commands::apply::run(&cli.cluster, args).await,
            Command::Destroy(args) => commands::destroy::run(&cli.cluster, args).await,
            Command::Render(_)
            | Command::Graph(_)
            | Command::State(_)
            | Command::ForceUnlock(_) => {
                unreachable!("handled without a runtime")
            }
        }
    })
}
