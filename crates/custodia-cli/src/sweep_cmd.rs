//! `custodia sweep [--dry-run]`: runs the retention sweeper once, with progress on stderr and a
//! summary by category and rule. Safe to run from cron on every instance at once, and to run
//! again after an interruption: the stores share the work out and never repeat it. Media
//! objects are swept from the store `--objects` names (`DATA/objects` by default), with what
//! interrupted operations left behind: objects left deleting, abandoned uploads.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::engine::{EngineArgs, ObjectArgs, open_objects};
use crate::output::{self, COULD_NOT_RUN};
use crate::progress::Progress;

/// Arguments of `custodia sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Count what would be deleted, and delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Records deleted (and audited) per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    objects: ObjectArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `custodia sweep`.
pub fn run(args: SweepArgs) -> ExitCode {
    let json = args.json;
    let vault = match args.engine.open().and_then(|vault| {
        let objects = open_objects(
            args.objects.objects.as_deref(),
            &args.engine.stores.data_dir(),
        )?;
        Ok(vault.with_media_store(objects))
    }) {
        Ok(vault) => vault,
        Err(err) => return output::error(json, &err.code, &err.message, COULD_NOT_RUN),
    };
    let label = if args.dry_run {
        "counting expired records"
    } else {
        "deleting expired records"
    };
    let mut progress = Progress::new(label, json);
    let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let report = match vault.sweep(args.dry_run, batch, "cli", &mut |done, total| {
        progress.update(done, total);
    }) {
        Ok(report) => report,
        Err(err) => return output::error(json, err.code(), &err.to_string(), COULD_NOT_RUN),
    };
    progress.finish(report.deleted);
    if json {
        let by_rule: Vec<_> = report
            .by_rule
            .iter()
            .map(|((category, rule), count)| {
                json!({ "category": category, "rule": rule, "records": count })
            })
            .collect();
        output::json(&json!({
            "dry_run": report.dry_run,
            "deleted": report.deleted,
            "held": report.held,
            "media_deleted": report.media_deleted,
            "media_finished": report.media_finished,
            "abandoned_uploads": report.abandoned_uploads,
            "by_rule": by_rule,
        }));
        return ExitCode::SUCCESS;
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    if !report.by_rule.is_empty() {
        let width = report
            .by_rule
            .keys()
            .map(|(category, _)| category.chars().count())
            .max()
            .unwrap_or(0)
            .max("category".len());
        output::line(&format!(
            "{:<width$}  {:<20} {:>10}",
            "category", "rule", "records"
        ));
        for ((category, rule), count) in &report.by_rule {
            output::line(&format!("{category:<width$}  {rule:<20} {count:>10}"));
        }
    }
    output::line(&format!(
        "{verb} {} expired record(s); {} kept by legal holds",
        report.deleted, report.held
    ));
    ExitCode::SUCCESS
}
