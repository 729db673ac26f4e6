//! `custodia serve`: configuration from flags, `CUSTODIA_*` environment variables and an optional
//! TOML file (flags and environment win over the file), validated before anything starts; on a
//! first start it creates the data directory, the root key file (0600), the sample policy and a
//! first admin API key, which it prints once; then it serves until SIGINT or SIGTERM and shuts
//! down gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use custodia_server::{LogFormat, ServerOptions, ServerState};
use serde::Deserialize;

use crate::engine::EngineArgs;
use crate::output::{self, COULD_NOT_RUN};

/// The address served when none is configured: loopback only, so a first start exposes nothing.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `custodia serve` options. Each may also come from the environment (shown) or the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "CUSTODIA_LISTEN")]
    pub listen: Option<String>,
    /// A TOML file with any of: listen, data, database, policy, root_key_file, body_limit,
    /// log_format, policy_reload_seconds.
    #[arg(long, env = "CUSTODIA_CONFIG")]
    pub config: Option<PathBuf>,
    /// The largest request body, in bytes [default: 1048576].
    #[arg(long, env = "CUSTODIA_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// `text` or `json` logs on stderr [default: text].
    #[arg(long, env = "CUSTODIA_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data: Option<PathBuf>,
    database: Option<String>,
    policy: Option<PathBuf>,
    root_key_file: Option<PathBuf>,
    body_limit: Option<usize>,
    log_format: Option<String>,
    policy_reload_seconds: Option<u64>,
}

/// The validated configuration.
#[derive(Debug)]
struct Config {
    engine: EngineArgs,
    listen: SocketAddr,
    options: ServerOptions,
    log_format: LogFormat,
}

fn config_error(message: impl Into<String>) -> (String, String) {
    ("config.invalid".to_owned(), message.into())
}

fn read_file(path: &Path) -> Result<FileConfig, (String, String)> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| config_error(format!("cannot read {}: {err}", path.display())))?;
    toml::from_str(&text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text.get(..span.start).map_or(0, |t| t.lines().count()))
            .unwrap_or(0);
        config_error(format!(
            "{}:{line}: {}",
            path.display(),
            err.message().trim()
        ))
    })
}

impl ServeArgs {
    fn resolve(self) -> Result<Config, (String, String)> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut engine = self.engine;
        engine.stores.data = engine.stores.data.or(file.data);
        engine.stores.database = engine.stores.database.or(file.database);
        engine.stores.root_key_file = engine.stores.root_key_file.or(file.root_key_file);
        engine.policy = engine.policy.or(file.policy);
        let listen_text = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            config_error(format!(
                "listen `{listen_text}` is not an address like 127.0.0.1:8080 (--listen, CUSTODIA_LISTEN or the config file)"
            ))
        })?;
        let body_limit = self.body_limit.or(file.body_limit).unwrap_or(1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&body_limit) {
            return Err(config_error(format!(
                "body_limit {body_limit} is outside 1024 to 67108864 bytes"
            )));
        }
        let log_format = match self
            .log_format
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(config_error(format!(
                    "log_format `{other}` is neither text nor json"
                )));
            }
        };
        let reload = file.policy_reload_seconds.unwrap_or(5);
        if reload > 3600 {
            return Err(config_error("policy_reload_seconds is over an hour"));
        }
        if let Some(url) = engine.stores.database.as_deref() {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                return Err(config_error(
                    "database must be sqlite:DIR or postgres://… (--database, CUSTODIA_DATABASE_URL or the config file)",
                ));
            }
        }
        Ok(Config {
            engine,
            listen,
            options: ServerOptions {
                body_limit_bytes: body_limit,
                policy_reload_interval: Duration::from_secs(reload),
            },
            log_format,
        })
    }
}

/// Runs `custodia serve`.
pub fn run(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(config) => config,
        Err((code, message)) => return output::error(false, &code, &message, COULD_NOT_RUN),
    };
    let (policy_path, sample_created) = match config.engine.resolve_policy() {
        Ok(resolved) => resolved,
        Err(err) => return output::error(false, &err.code, &err.message, COULD_NOT_RUN),
    };
    let vault = match config.engine.open_with(&policy_path) {
        Ok(vault) => Arc::new(vault),
        Err(err) => return output::error(false, &err.code, &err.message, COULD_NOT_RUN),
    };
    custodia_server::init_logging(config.log_format);
    // A first start has no keys: create an admin key and show its token once, on stdout only
    // (never in the logs).
    match vault.api_keys() {
        Ok(keys) if keys.is_empty() => {
            match vault.create_api_key("admin", true, &[], "first-start") {
                Ok(issued) => output::line(&format!(
                    "first start: created admin API key {}. Its token is shown only now; keep it safe:\n{}",
                    issued.key.id,
                    issued.token.as_str()
                )),
                Err(err) => {
                    return output::error(false, err.code(), &err.to_string(), COULD_NOT_RUN);
                }
            }
        }
        Ok(_) => {}
        Err(err) => return output::error(false, err.code(), &err.to_string(), COULD_NOT_RUN),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return output::error(
                false,
                "server.runtime",
                &format!("cannot start: {err}"),
                COULD_NOT_RUN,
            );
        }
    };
    let policy = vault.policy();
    let version = policy.version.get_ref().clone();
    let data = config.engine.stores.database.clone().map_or_else(
        || config.engine.stores.data_dir().display().to_string(),
        |_| "database URL".to_owned(),
    );
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let bound = listener.local_addr()?;
        output::line(&format!(
            "Custodia serving http://{bound} (data: {data}; policy {} version {version}{}); API docs at /openapi.json",
            policy_path.display(),
            if sample_created { ", the built-in sample" } else { "" }
        ));
        let state = ServerState::new(vault, config.options);
        custodia_server::run(listener, state, shutdown_signal()).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => output::error(
            false,
            "server.io",
            &format!("serving stopped: {err}"),
            COULD_NOT_RUN,
        ),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
