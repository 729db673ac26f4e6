//! `custodia policy check|render|diff`.
//!
//! Exit codes for `check`: 0 when every file is clean, 1 when any file has findings, 2 when any
//! file cannot be read or parsed into a policy at all.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use custodia_policy::{CheckedPolicy, PolicyError, load};
use serde_json::json;

/// Output for people or for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for a terminal.
    Text,
    /// One JSON document.
    Json,
}

/// The `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse, validate and lint policy files.
    Check {
        /// The policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

/// Runs a `policy` subcommand and returns the process exit code.
pub fn run(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { files, format } => check(&files, format),
    }
}

fn check(files: &[PathBuf], format: OutputFormat) -> ExitCode {
    let results: Vec<(PathBuf, Result<CheckedPolicy, PolicyError>)> =
        files.iter().map(|path| (path.clone(), load(path))).collect();
    let unreadable = results.iter().any(|(_, r)| r.is_err());
    let findings: usize = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|c| c.findings.len())
        .sum();
    let mut out = std::io::stdout().lock();
    let written = match format {
        OutputFormat::Json => {
            let files: Vec<_> = results
                .iter()
                .map(|(path, result)| match result {
                    Ok(checked) => json!({
                        "path": path,
                        "status": if checked.is_clean() { "clean" } else { "findings" },
                        "version": checked.policy.version.get_ref(),
                        "findings": checked.findings,
                    }),
                    Err(err) => {
                        let location = match err {
                            PolicyError::Syntax { location, .. } => *location,
                            PolicyError::Unreadable { .. } => None,
                        };
                        json!({
                            "path": path,
                            "status": "unreadable",
                            "error": { "code": err.code(), "message": err.to_string(), "location": location },
                            "findings": [],
                        })
                    }
                })
                .collect();
            let report = json!({
                "files": files,
                "summary": { "files": results.len(), "findings": findings, "unreadable": results.iter().filter(|(_, r)| r.is_err()).count() },
            });
            writeln!(out, "{report:#}")
        }
        OutputFormat::Text => write_text_report(&mut out, &results, findings),
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    if unreadable {
        ExitCode::from(2)
    } else if findings > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn write_text_report(
    out: &mut impl Write,
    results: &[(PathBuf, Result<CheckedPolicy, PolicyError>)],
    findings: usize,
) -> std::io::Result<()> {
    for (path, result) in results {
        match result {
            Err(err) => writeln!(out, "error[{}]: {err}", err.code())?,
            Ok(checked) if checked.is_clean() => writeln!(
                out,
                "{}: ok (version {}, {} categories, {} purposes, {} processors)",
                path.display(),
                checked.policy.version.get_ref(),
                checked.policy.categories.len(),
                checked.policy.purposes.len(),
                checked.policy.processors.len()
            )?,
            Ok(checked) => {
                for finding in &checked.findings {
                    let severity = match finding.severity {
                        custodia_policy::Severity::Error => "error",
                        custodia_policy::Severity::Warning => "warning",
                    };
                    writeln!(
                        out,
                        "{severity}[{}]: {}:{}:{}: {}: {}",
                        finding.code,
                        path.display(),
                        finding.location.line,
                        finding.location.column,
                        finding.key,
                        finding.message
                    )?;
                    if let Some(source) = finding.source {
                        writeln!(out, "    rule: {source}")?;
                    }
                }
            }
        }
    }
    writeln!(
        out,
        "{} file(s) checked, {findings} finding(s)",
        results.len()
    )
}
