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

/// The published form of a rendered policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// Markdown.
    Md,
    /// One self-contained HTML page.
    Html,
}

/// The `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write the human-readable privacy policy generated from a policy file.
    ///
    /// Only a file that checks clean is rendered, so published text always comes from a checked
    /// file. Exit 1 when the file has findings, 2 when it cannot be read or the output cannot be
    /// written.
    Render {
        /// The policy file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: RenderFormat,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List what changed between two versions; material changes need fresh consent.
    /// Exit 0 when nothing material changed, 1 when something did, 2 when a file is unreadable.
    Diff {
        /// The published version.
        old: PathBuf,
        /// The proposed version.
        new: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
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
        PolicyCommand::Render {
            file,
            format,
            output,
        } => render(&file, format, output.as_deref()),
        PolicyCommand::Diff { old, new, format } => diff(&old, &new, format),
    }
}

fn check(files: &[PathBuf], format: OutputFormat) -> ExitCode {
    let results: Vec<(PathBuf, Result<CheckedPolicy, PolicyError>)> = files
        .iter()
        .map(|path| (path.clone(), load(path)))
        .collect();
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

fn diff(old: &std::path::Path, new: &std::path::Path, format: OutputFormat) -> ExitCode {
    let (old, new) = match (load(old), load(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(err), _) | (_, Err(err)) => {
            let mut err_out = std::io::stderr().lock();
            let _ = writeln!(err_out, "error[{}]: {err}", err.code());
            return ExitCode::from(2);
        }
    };
    let changes = custodia_policy::diff::diff(&old.policy, &new.policy);
    let mut out = std::io::stdout().lock();
    let written = match format {
        OutputFormat::Json => writeln!(
            out,
            "{:#}",
            json!({
                "from_version": changes.from_version,
                "to_version": changes.to_version,
                "material": changes.is_material(),
                "purposes_needing_fresh_consent": changes.purposes_needing_fresh_consent(),
                "changes": changes.changes,
            })
        ),
        OutputFormat::Text => write_diff_text(&mut out, &changes),
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    if changes.is_material() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn write_diff_text(
    out: &mut impl Write,
    changes: &custodia_policy::diff::PolicyDiff,
) -> std::io::Result<()> {
    writeln!(out, "{} → {}", changes.from_version, changes.to_version)?;
    for change in &changes.changes {
        let sign = match change.kind {
            custodia_policy::diff::ChangeKind::Added => '+',
            custodia_policy::diff::ChangeKind::Removed => '-',
            custodia_policy::diff::ChangeKind::Changed => '~',
        };
        let mark = if change.material { " [material]" } else { "" };
        writeln!(out, "{sign} {}: {}{mark}", change.path, change.description)?;
    }
    let fresh = changes.purposes_needing_fresh_consent();
    if fresh.is_empty() {
        writeln!(out, "{} change(s), none material", changes.changes.len())
    } else {
        writeln!(
            out,
            "{} change(s); fresh consent needed for: {}",
            changes.changes.len(),
            fresh.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

fn render(
    file: &std::path::Path,
    format: RenderFormat,
    output: Option<&std::path::Path>,
) -> ExitCode {
    let mut err_out = std::io::stderr().lock();
    let checked = match load(file) {
        Ok(checked) => checked,
        Err(err) => {
            let _ = writeln!(err_out, "error[{}]: {err}", err.code());
            return ExitCode::from(2);
        }
    };
    if !checked.is_clean() {
        let _ = writeln!(
            err_out,
            "error[policy.not_clean]: {}: {} finding(s); run `custodia policy check {}` and fix them before rendering",
            file.display(),
            checked.findings.len(),
            file.display()
        );
        return ExitCode::from(1);
    }
    let text = match format {
        RenderFormat::Md => custodia_policy::render::markdown(&checked.policy),
        RenderFormat::Html => custodia_policy::render::html(&checked.policy),
    };
    let written = match output {
        Some(path) => std::fs::write(path, text).map_err(|err| (path.display().to_string(), err)),
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|err| ("standard output".to_owned(), err)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err((target, err)) => {
            let _ = writeln!(err_out, "error[render.write]: cannot write {target}: {err}");
            ExitCode::from(2)
        }
    }
}
