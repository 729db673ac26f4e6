//! `custodia audit verify | head`: checks the hash-chained audit log and prints its head, the
//! anchor an operator keeps outside the database to detect a truncated or rewritten log.

use std::process::ExitCode;

use clap::Subcommand;
use custodia_audit::Anchor;
use serde_json::json;

use crate::keys_cmd::open_keeper;
use crate::output::{self, COULD_NOT_RUN, FOUND_PROBLEM};
use crate::progress::Progress;
use crate::stores::StoreArgs;

/// The `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the whole chain; exit 1 naming the first bad entry on tampering.
    Verify {
        #[command(flatten)]
        stores: StoreArgs,
        /// A head recorded earlier (`SEQ:HASH`) that the chain must still pass through.
        #[arg(long)]
        anchor: Option<Anchor>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the chain's head (`SEQ:HASH`), to keep outside the database.
    Head {
        #[command(flatten)]
        stores: StoreArgs,
    },
}

/// Runs an `audit` subcommand.
pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            stores,
            anchor,
            json,
        } => verify(&stores, anchor, json),
        AuditCommand::Head { stores } => {
            let keeper = match open_keeper(&stores, false) {
                Ok(keeper) => keeper,
                Err(code) => return code,
            };
            match keeper.data_store().audit_head() {
                Ok(head) => {
                    output::line(&head.unwrap_or(Anchor::GENESIS).to_string());
                    ExitCode::SUCCESS
                }
                Err(err) => output::error(false, err.code(), &err.to_string(), COULD_NOT_RUN),
            }
        }
    }
}

fn verify(stores: &StoreArgs, anchor: Option<Anchor>, as_json: bool) -> ExitCode {
    let keeper = match open_keeper(stores, as_json) {
        Ok(keeper) => keeper,
        Err(code) => return code,
    };
    let mut progress = Progress::new("verifying audit entries", as_json);
    let result = keeper.verify_audit_with_anchor(anchor, &mut |done, total| {
        progress.update(done, total);
    });
    match result {
        Ok(report) => {
            progress.finish(report.entries);
            let head = report.head();
            if as_json {
                output::json(
                    &json!({ "status": "intact", "entries": report.entries, "head": head.to_string() }),
                );
            } else {
                output::line(&format!(
                    "audit chain intact: {} entries, head {head}",
                    report.entries
                ));
            }
            ExitCode::SUCCESS
        }
        Err(custodia_vault::VaultError::Audit(custodia_audit::AuditError::ChainBroken(broken))) => {
            if as_json {
                output::json(&json!({
                    "status": "broken",
                    "first_bad_seq": broken.seq,
                    "kind": broken.kind.as_str(),
                    "message": broken.message,
                }));
            } else {
                output::line(&format!(
                    "audit chain BROKEN at entry {} ({}): {}",
                    broken.seq,
                    broken.kind.as_str(),
                    broken.message
                ));
            }
            ExitCode::from(FOUND_PROBLEM)
        }
        Err(err) => output::error(as_json, err.code(), &err.to_string(), COULD_NOT_RUN),
    }
}
