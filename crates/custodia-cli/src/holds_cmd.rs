//! `custodia holds place | list | release`: legal holds, which keep expired records from the
//! retention sweeper until they are released or end. Placing and releasing are audited (without
//! the reason, which is the operator's own text).

use std::process::ExitCode;

use clap::Subcommand;
use custodia_core::{HoldId, SubjectId, Timestamp};
use custodia_store::HoldRow;
use serde_json::json;

use crate::engine::EngineArgs;
use crate::output::{self, COULD_NOT_RUN};

/// The `holds` subcommands.
#[derive(Debug, Subcommand)]
pub enum HoldsCommand {
    /// Place a hold on a subject's records, a category's, one category of one subject, or
    /// (neither given) everything.
    Place {
        /// The subject whose records it keeps (`sub_…`); every subject when absent.
        #[arg(long)]
        subject: Option<String>,
        /// The category whose records it keeps (declared in the policy); every category when
        /// absent.
        #[arg(long)]
        category: Option<String>,
        /// Why (a case number, a regulator's request), 1 to 500 characters.
        #[arg(long)]
        reason: String,
        /// When it ends by itself (RFC 3339, in the future); it lasts until released when
        /// absent.
        #[arg(long)]
        ends_at: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List every hold, released and ended ones too.
    List {
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Release a hold: what it kept goes with the next sweep. Releasing it again changes
    /// nothing.
    Release {
        /// The hold's id (`hold_…`).
        id: String,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A command's failure, already reported.
type Outcome = Result<ExitCode, ExitCode>;

/// Runs a `holds` subcommand.
pub fn run(command: HoldsCommand) -> ExitCode {
    let result = match command {
        HoldsCommand::Place {
            subject,
            category,
            reason,
            ends_at,
            engine,
            json,
        } => place(
            subject.as_deref(),
            category.as_deref(),
            &reason,
            ends_at.as_deref(),
            &engine,
            json,
        ),
        HoldsCommand::List { engine, json } => list(&engine, json),
        HoldsCommand::Release { id, engine, json } => release(&id, &engine, json),
    };
    result.unwrap_or_else(|code| code)
}

fn open_vault(engine: &EngineArgs, json: bool) -> Result<custodia_vault::Vault, ExitCode> {
    engine
        .open()
        .map_err(|err| output::error(json, &err.code, &err.message, COULD_NOT_RUN))
}

fn failed(json: bool, err: &custodia_vault::VaultError) -> ExitCode {
    output::error(json, err.code(), &err.to_string(), COULD_NOT_RUN)
}

fn active(hold: &HoldRow, now: Timestamp) -> bool {
    hold.released_at.is_none() && hold.ends_at.is_none_or(|end| end > now)
}

fn hold_json(hold: &HoldRow, now: Timestamp) -> serde_json::Value {
    json!({
        "id": hold.id.to_string(),
        "subject": hold.subject.map(|s| s.to_string()),
        "category": hold.category,
        "reason": hold.reason,
        "created_at": hold.created_at.to_string(),
        "ends_at": hold.ends_at.map(|t| t.to_string()),
        "released_at": hold.released_at.map(|t| t.to_string()),
        "active": active(hold, now),
    })
}

fn hold_line(hold: &HoldRow, now: Timestamp) -> String {
    let state = match (hold.released_at, hold.ends_at) {
        (Some(at), _) => format!("released {at}"),
        (None, Some(end)) if end <= now => format!("ended {end}"),
        (None, Some(end)) => format!("active until {end}"),
        (None, None) => "active".to_owned(),
    };
    format!(
        "{}  subject={} category={}  {state}  placed {}  reason: {}",
        hold.id,
        hold.subject
            .map_or_else(|| "*".to_owned(), |s| s.to_string()),
        hold.category.as_deref().unwrap_or("*"),
        hold.created_at,
        hold.reason
    )
}

fn invalid(json: bool, code: &str, message: &str) -> ExitCode {
    output::error(json, code, message, COULD_NOT_RUN)
}

fn place(
    subject: Option<&str>,
    category: Option<&str>,
    reason: &str,
    ends_at: Option<&str>,
    engine: &EngineArgs,
    json: bool,
) -> Outcome {
    let subject: Option<SubjectId> = subject.map(str::parse).transpose().map_err(|_| {
        invalid(
            json,
            "request.invalid_id",
            "--subject is not a subject id (sub_…)",
        )
    })?;
    let ends_at = match ends_at {
        None => None,
        // A bare date is refused: when in the day would the hold end?
        Some(text) => Some(
            text.contains(['T', 't'])
                .then(|| Timestamp::parse(text).ok())
                .flatten()
                .ok_or_else(|| {
                    invalid(
                        json,
                        "vault.invalid",
                        "--ends-at must be an RFC 3339 date-time, like 2026-02-10T09:00:00Z",
                    )
                })?,
        ),
    };
    let vault = open_vault(engine, json)?;
    let hold = vault
        .place_hold(subject, category, reason, ends_at, "cli")
        .map_err(|err| failed(json, &err))?;
    let now = vault.now();
    if json {
        output::json(&hold_json(&hold, now));
    } else {
        output::line(&format!("placed {}", hold_line(&hold, now)));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(engine: &EngineArgs, json: bool) -> Outcome {
    let vault = open_vault(engine, json)?;
    let holds = vault.holds().map_err(|err| failed(json, &err))?;
    let now = vault.now();
    if json {
        output::json(&json!({
            "holds": holds.iter().map(|hold| hold_json(hold, now)).collect::<Vec<_>>()
        }));
    } else if holds.is_empty() {
        output::line("no legal holds");
    } else {
        for hold in &holds {
            output::line(&hold_line(hold, now));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn release(id: &str, engine: &EngineArgs, json: bool) -> Outcome {
    let id: HoldId = id
        .parse()
        .map_err(|_| invalid(json, "request.invalid_id", "not a hold id (hold_…)"))?;
    let vault = open_vault(engine, json)?;
    let hold = match vault.release_hold(id, "cli") {
        Ok(hold) => hold,
        Err(custodia_vault::VaultError::Store(custodia_store::StoreError::NotFound(_))) => {
            return Err(invalid(
                json,
                "hold.not_found",
                &format!("no legal hold {id}"),
            ));
        }
        Err(err) => return Err(failed(json, &err)),
    };
    let now = vault.now();
    if json {
        output::json(&hold_json(&hold, now));
    } else {
        output::line(&format!("released {}", hold_line(&hold, now)));
    }
    Ok(ExitCode::SUCCESS)
}
