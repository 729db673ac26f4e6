//! The `custodia` command: a thin layer that parses arguments, calls the library crates and
//! prints their results, as text for people or JSON for machines.

mod policy_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Custodia: a privacy engine that makes a privacy policy enforced behaviour.
#[derive(Debug, Parser)]
#[command(name = "custodia", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, render and compare policy files.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy(command) => policy_cmd::run(command),
    }
}
