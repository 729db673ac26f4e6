//! `custodia keys rotate | destroy-epoch | status`: the key hierarchy's maintenance.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use custodia_core::SystemClock;
use custodia_vault::Keeper;
use serde_json::json;

use crate::engine::EngineArgs;
use crate::output::{self, COULD_NOT_RUN};
use crate::progress::Progress;
use crate::stores::StoreArgs;

/// The `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key: `--admin`, or a service key bound to `--purposes`. The token is
    /// printed once.
    Create {
        /// A name for people (`transcription-worker`).
        #[arg(long)]
        name: String,
        /// The purposes a service key may act for (comma-separated).
        #[arg(long, value_delimiter = ',', conflicts_with = "admin")]
        purposes: Vec<String>,
        /// An admin key (every purpose; policy publishing; subject profiles).
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List API keys (never their secrets).
    List {
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key: refused from its next call on.
    Revoke {
        /// The key's id (`api_…`).
        id: String,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
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

fn key_json(key: &custodia_store::ApiKeyRow) -> serde_json::Value {
    json!({
        "id": key.id.to_string(),
        "name": key.name,
        "admin": key.admin,
        "purposes": key.purposes,
        "created_at": key.created_at.to_string(),
        "revoked_at": key.revoked_at.map(|t| t.to_string()),
    })
}

/// Runs a `keys` subcommand.
pub fn run(command: KeysCommand) -> ExitCode {
    let result = match command {
        KeysCommand::Create {
            name,
            purposes,
            admin,
            engine,
            json,
        } => create(&name, &purposes, admin, &engine, json),
        KeysCommand::List { engine, json } => list(&engine, json),
        KeysCommand::Revoke { id, engine, json } => revoke(&id, &engine, json),
        KeysCommand::Rotate { stores, json } => rotate(&stores, json),
        KeysCommand::DestroyEpoch {
            epoch,
            stores,
            json,
        } => destroy_epoch(epoch, &stores, json),
        KeysCommand::Status { stores, json } => status(&stores, json),
    };
    result.unwrap_or_else(|code| code)
}

/// A command's failure, already reported.
type Outcome = Result<ExitCode, ExitCode>;

fn open_vault(engine: &EngineArgs, json: bool) -> Result<custodia_vault::Vault, ExitCode> {
    engine
        .open()
        .map_err(|err| output::error(json, &err.code, &err.message, COULD_NOT_RUN))
}

fn failed(json: bool, err: &custodia_vault::VaultError) -> ExitCode {
    output::error(json, err.code(), &err.to_string(), COULD_NOT_RUN)
}

fn create(
    name: &str,
    purposes: &[String],
    admin: bool,
    engine: &EngineArgs,
    json: bool,
) -> Outcome {
    let vault = open_vault(engine, json)?;
    let issued = vault
        .create_api_key(name, admin, purposes, "cli")
        .map_err(|err| failed(json, &err))?;
    if json {
        let mut value = key_json(&issued.key);
        if let Some(fields) = value.as_object_mut() {
            fields.insert("token".to_owned(), json!(issued.token.as_str()));
        }
        output::json(&value);
    } else {
        output::line(&format!(
            "created {} key {} ({name}); its token is shown only now:\n{}",
            if admin { "admin" } else { "service" },
            issued.key.id,
            issued.token.as_str()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(engine: &EngineArgs, json: bool) -> Outcome {
    let vault = open_vault(engine, json)?;
    let keys = vault.api_keys().map_err(|err| failed(json, &err))?;
    if json {
        output::json(&json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() }));
    } else {
        for key in &keys {
            output::line(&format!(
                "{}  {:<24} {:<8} {}{}",
                key.id,
                key.name,
                if key.admin { "admin" } else { "service" },
                key.purposes.join(","),
                key.revoked_at
                    .map_or_else(String::new, |t| format!("  revoked {t}"))
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(id: &str, engine: &EngineArgs, json: bool) -> Outcome {
    let id: custodia_core::ApiKeyId = id.parse().map_err(|_| {
        output::error(
            json,
            "request.invalid_id",
            "not an API key id (api_…)",
            COULD_NOT_RUN,
        )
    })?;
    let vault = open_vault(engine, json)?;
    vault
        .revoke_api_key(id, "cli")
        .map_err(|err| failed(json, &err))?;
    if json {
        output::json(&json!({ "revoked": id.to_string() }));
    } else {
        output::line(&format!("revoked {id}"));
    }
    Ok(ExitCode::SUCCESS)
}

fn rotate(stores: &StoreArgs, json: bool) -> Outcome {
    let keeper = open_keeper(stores, json)?;
    let mut progress = Progress::new("re-wrapping data keys", json);
    let report = keeper
        .rotate_epoch("cli", &mut |done, total| progress.update(done, total))
        .map_err(|err| failed(json, &err))?;
    progress.finish(report.rewrapped);
    if json {
        output::json(&json!({ "epoch": report.epoch, "rewrapped": report.rewrapped }));
    } else {
        output::line(&format!(
            "epoch {} is current; {} data keys re-wrapped. Older epochs can now be destroyed with `custodia keys destroy-epoch`.",
            report.epoch, report.rewrapped
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn destroy_epoch(epoch: u32, stores: &StoreArgs, json: bool) -> Outcome {
    let keeper = open_keeper(stores, json)?;
    keeper
        .destroy_epoch(epoch, "cli")
        .map_err(|err| failed(json, &err))?;
    if json {
        output::json(&json!({ "destroyed_epoch": epoch }));
    } else {
        output::line(&format!("epoch {epoch} destroyed"));
    }
    Ok(ExitCode::SUCCESS)
}

fn status(stores: &StoreArgs, json: bool) -> Outcome {
    let keeper = open_keeper(stores, json)?;
    let epochs = keeper.epochs().map_err(|err| failed(json, &err))?;
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
    Ok(ExitCode::SUCCESS)
}
