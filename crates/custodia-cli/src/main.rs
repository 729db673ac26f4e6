//! The `custodia` command: a thin layer that parses arguments, calls the library crates and
//! prints their results, as text for people or JSON for machines.

mod audit_cmd;
mod bench_cmd;
mod engine;
mod holds_cmd;
mod import_cmd;
mod keys_cmd;
mod output;
mod policy_cmd;
mod progress;
mod requests_cmd;
mod serve_cmd;
mod stores;
mod sweep_cmd;

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
    /// Serve the HTTP API (first start: data directory, root key, sample policy, admin key).
    Serve(serve_cmd::ServeArgs),
    /// Load records into the vault from JSON lines.
    Import(import_cmd::ImportArgs),
    /// Rotate and destroy epoch keys.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Verify the audit chain.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Delete expired records that no legal hold keeps, auditing each with its rule.
    Sweep(sweep_cmd::SweepArgs),
    /// Place, list and release legal holds, which keep expired records from the sweeper.
    #[command(subcommand)]
    Holds(holds_cmd::HoldsCommand),
    /// The data-subject request queue: due dates, overdue and due-soon flags, exports, rejections
    /// and extensions.
    #[command(subcommand)]
    Requests(requests_cmd::RequestsCommand),
    /// Measure speed against raw baselines in the same process.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy(command) => policy_cmd::run(command),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Import(args) => import_cmd::run(args),
        Command::Keys(command) => keys_cmd::run(command),
        Command::Audit(command) => audit_cmd::run(command),
        Command::Sweep(args) => sweep_cmd::run(args),
        Command::Holds(command) => holds_cmd::run(command),
        Command::Requests(command) => requests_cmd::run(command),
        Command::Bench(command) => bench_cmd::run(command),
    }
}
