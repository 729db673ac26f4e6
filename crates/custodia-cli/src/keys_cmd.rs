//! `custodia keys rotate | destroy-epoch | status`: the key hierarchy's maintenance.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use custodia_core::SystemClock;
use custodia_vault::Keeper;
use serde_json::json;

use crate::output::{self, COULD_NOT_RUN};
use crate::progress::Progress;
use crate::stores::StoreArgs;

/// The `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start a new epoch and re-wrap every data key under it, with progress.
    Rotate {
        #[command(flatten)]
        stores: StoreArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Destroy an old epoch key once no data key uses it: key-store backups from before the
    /// rotation become unreadable.
    DestroyEpoch {
        /// The epoch to destroy.
        epoch: u32,
        #[command(flatten)]
        stores: StoreArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the live epochs.
    Status {
        #[command(flatten)]
        stores: StoreArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Opens the stores and the key ring, or reports why not.
pub fn open_keeper(stores: &StoreArgs, as_json: bool) -> Result<Keeper, ExitCode> {
    let (data, keys) = stores
        .open()
        .map_err(|err| output::error(as_json, err.code(), &err.to_string(), COULD_NOT_RUN))?;
    Keeper::open(data, keys, Arc::new(SystemClock), &stores.root_key())
        .map_err(|err| output::error(as_json, err.code(), &err.to_string(), COULD_NOT_RUN))
}

/// Runs a `keys` subcommand.
pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Rotate { stores, json } => {
            let keeper = match open_keeper(&stores, json) {
                Ok(keeper) => keeper,
                Err(code) => return code,
            };
            let mut progress = Progress::new("re-wrapping data keys", json);
            match keeper.rotate_epoch("cli", &mut |done, total| progress.update(done, total)) {
                Ok(report) => {
                    progress.finish(report.rewrapped);
                    if json {
                        output::json(
                            &json!({ "epoch": report.epoch, "rewrapped": report.rewrapped }),
                        );
                    } else {
                        output::line(&format!(
                            "epoch {} is current; {} data keys re-wrapped. Older epochs can now be destroyed with `custodia keys destroy-epoch`.",
                            report.epoch, report.rewrapped
                        ));
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => output::error(json, err.code(), &err.to_string(), COULD_NOT_RUN),
            }
        }
        KeysCommand::DestroyEpoch {
            epoch,
            stores,
            json,
        } => {
            let keeper = match open_keeper(&stores, json) {
                Ok(keeper) => keeper,
                Err(code) => return code,
            };
            match keeper.destroy_epoch(epoch, "cli") {
                Ok(()) => {
                    if json {
                        output::json(&json!({ "destroyed_epoch": epoch }));
                    } else {
                        output::line(&format!("epoch {epoch} destroyed"));
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => output::error(json, err.code(), &err.to_string(), COULD_NOT_RUN),
            }
        }
        KeysCommand::Status { stores, json } => {
            let keeper = match open_keeper(&stores, json) {
                Ok(keeper) => keeper,
                Err(code) => return code,
            };
            match keeper.epochs() {
                Ok(epochs) => {
                    if json {
                        output::json(&json!({ "epochs": epochs, "current": epochs.last() }));
                    } else {
                        output::line(&format!(
                            "live epochs: {:?}; current: {}",
                            epochs,
                            epochs
                                .last()
                                .map_or_else(|| "none".to_owned(), u32::to_string)
                        ));
                    }
                    ExitCode::SUCCESS
                }
                Err(err) => output::error(json, err.code(), &err.to_string(), COULD_NOT_RUN),
            }
        }
    }
}
