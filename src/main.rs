//! `vz`: plan, apply and destroy the networking layer of a Verrazzano-style platform on Kubernetes.
//!
//! `main` only parses arguments, runs the command, and reports an error with its hints and an exit
//! code a script can act on ([`error`]). The work lives in [`commands`] (one module per subcommand),
//! [`engine`] (graph, plan, apply), [`cluster`] (the Kubernetes API), [`diff`] and [`output`].

mod cli;
mod cluster;
mod commands;
mod connectivity;
mod diff;
mod dns;
mod engine;
mod error;
mod interrupt;
mod lifecycle;
mod output;
mod sensitive;
mod support;
mod watch;

#[cfg(test)]
mod fuzz_tests;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
use error::{CommandError, Kind};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to standard output and succeed; a wrong command line is a usage
            // error (exit 3; 2 means "changes" for `plan --detailed-exitcode`).
            let _ = e.print();
            return if !e.use_stderr() {
                ExitCode::SUCCESS
            } else if std::env::args().any(|a| a == "--detailed-exitcode") {
                ExitCode::from(1)
            } else {
                ExitCode::from(Kind::Usage.code())
            };
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) if error::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let e = CommandError::from_any(e);
            eprintln!("Error: {e}");
            for hint in &e.hints {
                eprintln!("hint: {hint}");
            }
            // Scripts using --detailed-exitcode expect 1 for any error, as with Terraform.
            if detailed_exitcode(&cli) {
                ExitCode::from(1)
            } else {
                e.exit_code()
            }
        }
    }
}

fn detailed_exitcode(cli: &Cli) -> bool {
    matches!(&cli.command, Command::Plan(args) if args.detailed_exitcode)
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Render(args) => return commands::render::run(&cli.cluster, args),
        Command::Graph(args) => return commands::graph::run(args),
        Command::ExplainAccess(args) => return commands::explain_access::run(args),
        Command::Schema { file } => {
            let of = match file {
                cli::SchemaFile::Platform => vz_providers::config::SchemaOf::Platform,
                cli::SchemaFile::Application => vz_providers::config::SchemaOf::Application,
            };
            let schema = vz_providers::config::json_schema(of);
            output::out(&format!("{}\n", serde_json::to_string_pretty(&schema)?))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Completion { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "vz", &mut buf);
            output::out(&String::from_utf8_lossy(&buf))?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let outcome = match &cli.command {
            Command::Plan(args) => commands::plan::run(&cli.cluster, args).await,
            Command::Apply(args) => commands::apply::run(&cli.cluster, args).await,
            Command::Destroy(args) => commands::destroy::run(&cli.cluster, args).await,
            Command::Watch(args) => commands::watch::run(&cli.cluster, args).await,
            Command::State(cmd) => commands::state::run(&cli.cluster, cmd).await,
            Command::ForceUnlock(args) => commands::unlock::run(&cli.cluster, args).await,
            Command::Workspace(cmd) => commands::workspace::run(&cli.cluster, cmd).await,
            Command::Render(_)
            | Command::Graph(_)
            | Command::ExplainAccess(_)
            | Command::Schema { .. }
            | Command::Completion { .. } => {
                unreachable!("handled without a runtime")
            }
        };
        commands::release_held().await;
        // What the API server warned of, whatever the outcome, as kubectl says it.
        for line in cluster::warnings::lines(&cluster::warnings::take()) {
            eprintln!("{line}");
        }
        outcome
    })
}
