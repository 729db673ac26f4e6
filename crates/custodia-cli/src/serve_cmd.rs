//! `custodia serve`: configuration from flags, `CUSTODIA_*` environment variables and an optional
//! TOML file (flags and environment win over the file), validated before anything starts; on a
//! first start it creates the data directory, the root key file (0600), the sample policy and a
//! first admin API key, which it prints once; then it serves, sweeping expired records on a
//! schedule (`--sweep-interval`, hourly by default), until SIGINT or SIGTERM and shuts down
//! gracefully. Media objects go to the object store `--objects` names (`DATA/objects` by
//! default), at most `--max-media-size` bytes each.
//!
//! The outbox (erasure notices to recipients, verification codes to subjects) is delivered by
//! signed webhooks when any is configured: `--webhook "NAME=URL"` (repeatable) or a `[webhooks]`
//! table in the config file maps each recipient's policy name to its endpoint,
//! `--subject-webhook` (`CUSTODIA_SUBJECT_WEBHOOK_URL`) is the operator's SMS or e-mail sender
//! for messages to subjects, and the signing secret comes from `CUSTODIA_WEBHOOK_SECRET` or the
//! file `--webhook-secret-file` names (never a flag's value, never logged). Delivery runs every
//! `--delivery-interval` (30 s by default); each request may take `--webhook-timeout` seconds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use custodia_server::outbox_worker::{
    DEFAULT_DELIVERY_INTERVAL, DEFAULT_WEBHOOK_TIMEOUT, WebhookConfig, parse_endpoint,
};
use custodia_server::sweeper::{DEFAULT_SWEEP_INTERVAL, parse_interval};
use custodia_server::{LogFormat, ServerOptions, ServerState};
use serde::Deserialize;

use crate::engine::{EngineArgs, ObjectArgs, open_objects};
use crate::output::{self, COULD_NOT_RUN};

/// The largest `max_media_size` accepted: 1 TiB.
const MAX_MEDIA_SIZE_CEILING: u64 = 1 << 40;

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
    /// log_format, policy_reload_seconds, sweep_interval, objects, max_media_size, webhooks (a
    /// table of recipient name = URL), subject_webhook, webhook_secret_file, delivery_interval,
    /// webhook_timeout.
    #[arg(long, env = "CUSTODIA_CONFIG")]
    pub config: Option<PathBuf>,
    /// The largest request body, in bytes [default: 1048576].
    #[arg(long, env = "CUSTODIA_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// `text` or `json` logs on stderr [default: text].
    #[arg(long, env = "CUSTODIA_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// How often the retention sweeper runs, first at start: `off` (or `0`), seconds (`900`),
    /// or a whole number with s, m, h or d (`15m`), at most 7 days [default: 1h].
    #[arg(long, env = "CUSTODIA_SWEEP_INTERVAL")]
    pub sweep_interval: Option<String>,
    #[command(flatten)]
    pub objects: ObjectArgs,
    /// The largest media object an upload may store, in bytes [default: 5368709120, 5 GiB].
    #[arg(long, env = "CUSTODIA_MAX_MEDIA_SIZE")]
    pub max_media_size: Option<u64>,
    /// A recipient's webhook, `NAME=URL` with NAME as the policy's `[[processor]]` names it
    /// (repeatable; the config file's `[webhooks]` table adds more).
    #[arg(long = "webhook", value_name = "NAME=URL")]
    pub webhooks: Vec<String>,
    /// The webhook for messages to subjects (identity verification codes): the operator's SMS
    /// or e-mail sender.
    #[arg(long, env = "CUSTODIA_SUBJECT_WEBHOOK_URL")]
    pub subject_webhook: Option<String>,
    /// A file holding the webhook signing secret (at least 16 bytes; surrounding whitespace
    /// ignored). `CUSTODIA_WEBHOOK_SECRET` may give the secret itself instead.
    #[arg(long, env = "CUSTODIA_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// How often the outbox is delivered, as --sweep-interval [default: 30s].
    #[arg(long, env = "CUSTODIA_DELIVERY_INTERVAL")]
    pub delivery_interval: Option<String>,
    /// How long a webhook may take to answer, in seconds, 1 to 120 [default: 10].
    #[arg(long, env = "CUSTODIA_WEBHOOK_TIMEOUT")]
    pub webhook_timeout: Option<u64>,
}

/// The environment variable that may hold the webhook signing secret itself.
const WEBHOOK_SECRET_VAR: &str = "CUSTODIA_WEBHOOK_SECRET";

/// An interval in the config file: seconds, or text as on the command line (`15m`, `off`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IntervalSetting {
    Seconds(u64),
    Text(String),
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
    sweep_interval: Option<IntervalSetting>,
    objects: Option<String>,
    max_media_size: Option<u64>,
    webhooks: Option<std::collections::BTreeMap<String, String>>,
    subject_webhook: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    delivery_interval: Option<IntervalSetting>,
    webhook_timeout: Option<u64>,
}

/// The validated configuration.
#[derive(Debug)]
struct Config {
    engine: EngineArgs,
    listen: SocketAddr,
    options: ServerOptions,
    log_format: LogFormat,
    /// The media object store's URL; `None` for `DATA/objects`.
    objects: Option<String>,
    /// Where the outbox is delivered; `None` when no webhook is configured.
    webhooks: Option<WebhookConfig>,
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
        let sweep_interval = match self
            .sweep_interval
            .map(IntervalSetting::Text)
            .or(file.sweep_interval)
        {
            None => Ok(DEFAULT_SWEEP_INTERVAL),
            Some(IntervalSetting::Seconds(seconds)) => parse_interval(&seconds.to_string()),
            Some(IntervalSetting::Text(text)) => parse_interval(&text),
        }
        .map_err(|err| {
            config_error(format!(
                "sweep_interval: {err} (--sweep-interval, CUSTODIA_SWEEP_INTERVAL or the config file)"
            ))
        })?;
        if let Some(url) = engine.stores.database.as_deref() {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                return Err(config_error(
                    "database must be sqlite:DIR or postgres://… (--database, CUSTODIA_DATABASE_URL or the config file)",
                ));
            }
        }
        let objects = self.objects.objects.or(file.objects);
        if objects.as_deref().is_some_and(str::is_empty) {
            return Err(config_error(
                "objects is empty (--objects, CUSTODIA_OBJECTS_URL or the config file)",
            ));
        }
        let max_media_size = self
            .max_media_size
            .or(file.max_media_size)
            .unwrap_or(custodia_server::routes::media::DEFAULT_MAX_MEDIA_BYTES);
        if !(1024..=MAX_MEDIA_SIZE_CEILING).contains(&max_media_size) {
            return Err(config_error(format!(
                "max_media_size {max_media_size} is outside 1024 to {MAX_MEDIA_SIZE_CEILING} bytes"
            )));
        }
        let webhooks = resolve_webhooks(WebhookSettings {
            flags: self.webhooks,
            table: file.webhooks,
            subject: self.subject_webhook.or(file.subject_webhook),
            secret_file: self.webhook_secret_file.or(file.webhook_secret_file),
            interval: self
                .delivery_interval
                .map(IntervalSetting::Text)
                .or(file.delivery_interval),
            timeout: self.webhook_timeout.or(file.webhook_timeout),
            secret_env: std::env::var_os(WEBHOOK_SECRET_VAR),
        })?;
        Ok(Config {
            engine,
            listen,
            objects,
            webhooks,
            options: ServerOptions {
                max_media_bytes: max_media_size,
                body_limit_bytes: body_limit,
                policy_reload_interval: Duration::from_secs(reload),
                sweep_interval,
            },
            log_format,
        })
    }
}

/// The webhook settings from flags, environment and file, merged (flags and environment first).
struct WebhookSettings {
    flags: Vec<String>,
    table: Option<std::collections::BTreeMap<String, String>>,
    subject: Option<String>,
    secret_file: Option<PathBuf>,
    interval: Option<IntervalSetting>,
    timeout: Option<u64>,
    /// The value of `CUSTODIA_WEBHOOK_SECRET`, if set.
    secret_env: Option<std::ffi::OsString>,
}

/// Validates the webhook settings: `None` when no endpoint is configured. Messages never repeat
/// a URL (it may hold a token) or the secret.
fn resolve_webhooks(settings: WebhookSettings) -> Result<Option<WebhookConfig>, (String, String)> {
    let mut recipients = std::collections::BTreeMap::new();
    for (name, url) in settings.table.unwrap_or_default() {
        let endpoint = parse_endpoint(&format!("webhooks.\"{name}\""), &url)
            .map_err(|err| config_error(err.to_string()))?;
        recipients.insert(name, endpoint);
    }
    for flag in settings.flags {
        let Some((name, url)) = flag.split_once('=') else {
            return Err(config_error("--webhook takes NAME=URL"));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(config_error(
                "--webhook takes NAME=URL with a recipient name",
            ));
        }
        let endpoint = parse_endpoint(&format!("--webhook for \"{name}\""), url)
            .map_err(|err| config_error(err.to_string()))?;
        recipients.insert(name.to_owned(), endpoint);
    }
    let subject_url = settings
        .subject
        .map(|url| {
            parse_endpoint(
                "subject_webhook (--subject-webhook, CUSTODIA_SUBJECT_WEBHOOK_URL or the config file)",
                &url,
            )
            .map_err(|err| config_error(err.to_string()))
        })
        .transpose()?;
    let secret_env = settings.secret_env.filter(|value| !value.is_empty());
    let secret = match (&settings.secret_file, secret_env) {
        (Some(_), Some(_)) => {
            return Err(config_error(format!(
                "give the webhook signing secret once: {WEBHOOK_SECRET_VAR} or webhook_secret_file, not both"
            )));
        }
        (Some(path), None) => {
            let bytes =
                zeroize::Zeroizing::new(std::fs::read(path).map_err(|err| {
                    config_error(format!("cannot read {}: {err}", path.display()))
                })?);
            Some(zeroize::Zeroizing::new(bytes.trim_ascii().to_vec()))
        }
        (None, Some(value)) => {
            let value = zeroize::Zeroizing::new(value.into_encoded_bytes());
            Some(zeroize::Zeroizing::new(value.trim_ascii().to_vec()))
        }
        (None, None) => None,
    };
    if recipients.is_empty() && subject_url.is_none() {
        if secret.is_some() {
            return Err(config_error(
                "a webhook signing secret is set but no webhook is (--webhook, --subject-webhook or the config file)",
            ));
        }
        return Ok(None);
    }
    let Some(secret) = secret else {
        return Err(config_error(format!(
            "webhooks need a signing secret: {WEBHOOK_SECRET_VAR}, --webhook-secret-file or webhook_secret_file"
        )));
    };
    let mut config = WebhookConfig::new(recipients, subject_url, secret)
        .map_err(|err| config_error(err.to_string()))?;
    config.interval = match settings.interval {
        None => Ok(DEFAULT_DELIVERY_INTERVAL),
        Some(IntervalSetting::Seconds(seconds)) => parse_interval(&seconds.to_string()),
        Some(IntervalSetting::Text(text)) => parse_interval(&text),
    }
    .map_err(|err| {
        config_error(format!(
            "delivery_interval: {err} (--delivery-interval, CUSTODIA_DELIVERY_INTERVAL or the config file)"
        ))
    })?;
    config.timeout = match settings.timeout {
        None => DEFAULT_WEBHOOK_TIMEOUT,
        Some(seconds @ 1..=120) => Duration::from_secs(seconds),
        Some(_) => {
            return Err(config_error(
                "webhook_timeout is outside 1 to 120 seconds (--webhook-timeout, CUSTODIA_WEBHOOK_TIMEOUT or the config file)",
            ));
        }
    };
    Ok(Some(config))
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
        Ok(vault) => vault,
        Err(err) => return output::error(false, &err.code, &err.message, COULD_NOT_RUN),
    };
    // After the vault, which creates the data directory (0700) the default store lives in.
    let vault = match open_objects(config.objects.as_deref(), &config.engine.stores.data_dir()) {
        Ok(objects) => Arc::new(vault.with_media_store(objects)),
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
    // A URL may carry credentials: only a default directory is shown.
    let objects = config.objects.as_ref().map_or_else(
        || {
            crate::engine::default_objects_dir(&config.engine.stores.data_dir())
                .display()
                .to_string()
        },
        |_| "object store URL".to_owned(),
    );
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let bound = listener.local_addr()?;
        output::line(&format!(
            "Custodia serving http://{bound} (data: {data}; media: {objects}; policy {} version {version}{}); API docs at /openapi.json",
            policy_path.display(),
            if sample_created { ", the built-in sample" } else { "" }
        ));
        let mut state = ServerState::new(vault, config.options);
        if let Some(webhooks) = config.webhooks {
            for name in webhooks.recipients.keys() {
                if policy.processor(name).is_none() {
                    output::line(&format!(
                        "warning: the webhook for \"{name}\" names no recipient of the policy in force; check the spelling"
                    ));
                }
            }
            state = state.with_webhooks(webhooks);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            flags: Vec::new(),
            table: None,
            subject: None,
            secret_file: None,
            interval: None,
            timeout: None,
            secret_env: None,
        }
    }

    fn message(result: Result<Option<WebhookConfig>, (String, String)>) -> String {
        let (code, message) = result.unwrap_err();
        assert_eq!(code, "config.invalid");
        message
    }

    #[test]
    fn webhooks_are_off_without_endpoints_and_need_a_secret_with_them() {
        assert!(resolve_webhooks(settings()).unwrap().is_none());
        let lonely_secret = WebhookSettings {
            secret_env: Some("a-secret-of-enough-bytes".into()),
            ..settings()
        };
        assert!(message(resolve_webhooks(lonely_secret)).contains("no webhook is"));
        let token = "SECRETTOKEN-9f2";
        let no_secret = WebhookSettings {
            flags: vec![format!(
                "Tencent Bugly SDK=https://hooks.example.com/erase?t={token}"
            )],
            ..settings()
        };
        let text = message(resolve_webhooks(no_secret));
        assert!(
            text.contains("signing secret") && !text.contains(token),
            "{text}"
        );
        let bad_url = WebhookSettings {
            flags: vec![format!("Tencent Bugly SDK=ftp://{token}.example.com/")],
            secret_env: Some("a-secret-of-enough-bytes".into()),
            ..settings()
        };
        let text = message(resolve_webhooks(bad_url));
        assert!(
            text.contains("Tencent Bugly SDK") && !text.contains(token),
            "{text}"
        );
        let short = WebhookSettings {
            subject: Some("https://sms.example.com/send".into()),
            secret_env: Some("short".into()),
            ..settings()
        };
        assert!(message(resolve_webhooks(short)).contains("at least 16 bytes"));
        let no_name = WebhookSettings {
            flags: vec!["https://hooks.example.com/".into()],
            secret_env: Some("a-secret-of-enough-bytes".into()),
            ..settings()
        };
        assert!(message(resolve_webhooks(no_name)).contains("NAME=URL"));
    }

    #[test]
    fn webhooks_merge_the_file_table_flags_and_a_secret_file() {
        let temp = tempfile::tempdir().unwrap();
        let secret = temp.path().join("webhook.secret");
        std::fs::write(&secret, "  0123456789abcdef0123\n").unwrap();
        let config = resolve_webhooks(WebhookSettings {
            flags: vec!["Alipay SDK = https://alipay.example.com/erase".into()],
            table: Some(std::collections::BTreeMap::from([(
                "Tencent Bugly SDK".to_owned(),
                "https://bugly.example.com/erase".to_owned(),
            )])),
            subject: Some("https://sms.example.com/send".into()),
            secret_file: Some(secret.clone()),
            interval: Some(IntervalSetting::Text("2m".into())),
            timeout: Some(5),
            secret_env: None,
        })
        .unwrap()
        .unwrap();
        let names: Vec<&String> = config.recipients.keys().collect();
        assert_eq!(names, ["Alipay SDK", "Tencent Bugly SDK"]);
        assert_eq!(config.secret.as_slice(), b"0123456789abcdef0123");
        assert_eq!(config.interval, Duration::from_secs(120));
        assert_eq!(config.timeout, Duration::from_secs(5));
        let both = WebhookSettings {
            subject: Some("https://sms.example.com/send".into()),
            secret_file: Some(secret),
            secret_env: Some("a-secret-of-enough-bytes".into()),
            ..settings()
        };
        assert!(message(resolve_webhooks(both)).contains("not both"));
        let slow = WebhookSettings {
            subject: Some("https://sms.example.com/send".into()),
            secret_env: Some("a-secret-of-enough-bytes".into()),
            timeout: Some(121),
            ..settings()
        };
        assert!(message(resolve_webhooks(slow)).contains("webhook_timeout"));
        let defaults = resolve_webhooks(WebhookSettings {
            subject: Some("https://sms.example.com/send".into()),
            secret_env: Some("a-secret-of-enough-bytes".into()),
            ..settings()
        })
        .unwrap()
        .unwrap();
        assert_eq!(defaults.interval, DEFAULT_DELIVERY_INTERVAL);
        assert_eq!(defaults.timeout, DEFAULT_WEBHOOK_TIMEOUT);
    }
}
