//! `custodia import FILE`: bulk-loads records from JSON lines into the vault, one group commit per
//! batch. Each committed batch is acknowledged (on stdout with `--json`), so an interrupted import
//! resumes with `--skip N` and loses nothing it acknowledged. Messages name line numbers and
//! policy keys, never values.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use custodia_core::{SubjectId, SystemClock};
use custodia_vault::{NewRecord, NewSubject, Vault};
use serde::Deserialize;
use serde_json::json;

use crate::output::{self, COULD_NOT_RUN, FOUND_PROBLEM};
use crate::progress::Progress;
use crate::stores::StoreArgs;

/// `custodia import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON lines, one record each: `{"external_id", "jurisdiction"?, "category", "purpose",
    /// "value"}`; `-` reads standard input. `jurisdiction` is needed on a subject's first line.
    pub file: PathBuf,
    /// The policy file the records fall under.
    #[arg(long)]
    pub policy: PathBuf,
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Records per commit.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Skip this many lines (to resume an interrupted import).
    #[arg(long, default_value_t = 0)]
    pub skip: u64,
    /// Acknowledge each committed batch as a JSON line on stdout, and print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    external_id: String,
    #[serde(default)]
    jurisdiction: Option<String>,
    category: String,
    purpose: String,
    value: String,
}

struct Importer<'a> {
    vault: &'a Vault,
    subjects: HashMap<String, SubjectId>,
}

/// A failure at a line, with a stable code and a message free of values.
struct LineError {
    line: u64,
    code: &'static str,
    message: String,
}

impl Importer<'_> {
    fn subject(&mut self, line_no: u64, line: &Line) -> Result<SubjectId, LineError> {
        if let Some(id) = self.subjects.get(&line.external_id) {
            return Ok(*id);
        }
        let vault_error = |err: custodia_vault::VaultError| LineError {
            line: line_no,
            code: err.code(),
            message: err.to_string(),
        };
        let id = match self
            .vault
            .find_subject(&line.external_id)
            .map_err(vault_error)?
        {
            Some(id) => id,
            None => {
                let jurisdiction = line.jurisdiction.clone().ok_or_else(|| LineError {
                    line: line_no,
                    code: "import.missing_jurisdiction",
                    message: "a new subject's first line needs a jurisdiction".into(),
                })?;
                let new = NewSubject {
                    external_id: line.external_id.clone(),
                    jurisdiction,
                    birth_date: None,
                    age_band: None,
                    guardian: None,
                };
                self.vault
                    .create_subject(&new, "cli:import")
                    .map_err(vault_error)?
                    .id
            }
        };
        self.subjects.insert(line.external_id.clone(), id);
        Ok(id)
    }

    fn commit(&mut self, first_line: u64, batch: &[Line]) -> Result<(), LineError> {
        let mut items = Vec::with_capacity(batch.len());
        for (offset, line) in (0u64..).zip(batch) {
            let subject = self.subject(first_line + offset, line)?;
            items.push((
                subject,
                NewRecord {
                    category: &line.category,
                    purpose: &line.purpose,
                    value: line.value.as_bytes(),
                },
            ));
        }
        self.vault
            .ingest(&items, "cli:import")
            .map_err(|err| LineError {
                line: first_line,
                code: err.code(),
                message: format!("batch starting at this line refused: {err}"),
            })?;
        Ok(())
    }
}

fn parse(line_no: u64, text: &str) -> Result<Line, LineError> {
    serde_json::from_str(text).map_err(|err| LineError {
        line: line_no,
        code: "import.bad_line",
        // serde's message can quote the offending value; only its kind and column are safe.
        message: format!(
            "not a valid record ({:?} error at column {})",
            err.classify(),
            err.column()
        ),
    })
}

/// What has been committed so far.
struct Tally {
    acknowledged: u64,
    records: u64,
}

fn commit_batch(
    importer: &mut Importer<'_>,
    batch: &mut Vec<Line>,
    batch_start: u64,
    through: u64,
    as_json: bool,
    tally: &mut Tally,
) -> Result<(), LineError> {
    importer.commit(batch_start, batch)?;
    tally.records += batch.len() as u64;
    tally.acknowledged = through;
    batch.clear();
    if as_json {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            json!({ "acknowledged_through_line": through, "records": tally.records })
        );
        let _ = out.flush();
    }
    Ok(())
}

fn import_lines(
    importer: &mut Importer<'_>,
    reader: Box<dyn BufRead>,
    skip: u64,
    batch_size: usize,
    as_json: bool,
    tally: &mut Tally,
    progress: &mut Progress,
) -> Result<(), LineError> {
    let mut batch: Vec<Line> = Vec::with_capacity(batch_size);
    let mut batch_start = skip + 1;
    let mut line_no = 0u64;
    for text in reader.lines() {
        line_no += 1;
        let text = text.map_err(|err| LineError {
            line: line_no,
            code: "import.unreadable",
            message: format!("read failed: {err}"),
        })?;
        if line_no <= skip || text.trim().is_empty() {
            if batch.is_empty() {
                batch_start = line_no + 1;
            }
            continue;
        }
        batch.push(parse(line_no, &text)?);
        if batch.len() == batch_size {
            commit_batch(importer, &mut batch, batch_start, line_no, as_json, tally)?;
            batch_start = line_no + 1;
            progress.update(tally.records, 0);
        }
    }
    if !batch.is_empty() {
        commit_batch(importer, &mut batch, batch_start, line_no, as_json, tally)?;
    } else if line_no > tally.acknowledged {
        // Trailing blank lines are acknowledged with the last batch.
        tally.acknowledged = line_no;
    }
    Ok(())
}

/// Runs `custodia import`.
pub fn run(args: ImportArgs) -> ExitCode {
    let as_json = args.json;
    let checked = match custodia_policy::load(&args.policy) {
        Ok(checked) if checked.is_clean() => checked,
        Ok(checked) => {
            return output::error(
                as_json,
                "policy.not_clean",
                &format!(
                    "{} has {} finding(s); run `custodia policy check`",
                    args.policy.display(),
                    checked.findings.len()
                ),
                COULD_NOT_RUN,
            );
        }
        Err(err) => return output::error(as_json, err.code(), &err.to_string(), COULD_NOT_RUN),
    };
    let (data, keys) = match args.stores.open() {
        Ok(stores) => stores,
        Err(err) => return output::error(as_json, err.code(), &err.to_string(), COULD_NOT_RUN),
    };
    let vault = match Vault::open(
        data,
        keys,
        checked,
        Arc::new(SystemClock),
        &args.stores.root_key(),
    ) {
        Ok(vault) => vault,
        Err(err) => return output::error(as_json, err.code(), &err.to_string(), COULD_NOT_RUN),
    };
    let reader: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(&args.file) {
            Ok(file) => Box::new(BufReader::new(file)),
            Err(err) => {
                return output::error(
                    as_json,
                    "import.unreadable",
                    &format!("cannot read {}: {err}", args.file.display()),
                    COULD_NOT_RUN,
                );
            }
        }
    };
    let mut importer = Importer {
        vault: &vault,
        subjects: HashMap::new(),
    };
    let mut progress = Progress::new("imported records", as_json);
    let mut tally = Tally {
        acknowledged: args.skip,
        records: 0,
    };
    let batch_size = usize::try_from(args.batch).unwrap_or(1000);
    let result = import_lines(
        &mut importer,
        reader,
        args.skip,
        batch_size,
        as_json,
        &mut tally,
        &mut progress,
    );
    let Tally {
        acknowledged,
        records,
    } = tally;
    progress.finish(records);
    match result {
        Ok(()) => {
            if as_json {
                output::json_line(
                    &json!({ "status": "complete", "records": records, "acknowledged_through_line": acknowledged }),
                );
            } else {
                output::line(&format!(
                    "imported {records} records ({acknowledged} lines)"
                ));
            }
            ExitCode::SUCCESS
        }
        Err(err) => output::error(
            as_json,
            err.code,
            &format!(
                "line {}: {}; lines through {acknowledged} are committed, resume with --skip {acknowledged}",
                err.line, err.message
            ),
            FOUND_PROBLEM,
        ),
    }
}
