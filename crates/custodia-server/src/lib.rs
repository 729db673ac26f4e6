//! Custodia's HTTP API: a thin layer over [`custodia_vault::Vault`]. It authenticates every call
//! with an API key, turns JSON into vault calls (run on the blocking pool: the stores are
//! synchronous), and turns vault results and errors into JSON with stable codes. Domain rules
//! live in the vault and the gate, never here.
//!
//! - [`routes`]: the handlers, one module per resource, each documented for the OpenAPI document;
//! - [`auth`]: the bearer-key middleware and the [`custodia_vault::Caller`] it leaves behind;
//! - [`extract`]: request extractors whose rejections are [`ApiError`]s (JSON, ids, queries);
//! - [`error`]: [`ApiError`], its stable codes, and the one mapping of vault errors to HTTP;
//! - [`metrics`]: [`Metrics`], request, gate and sweep counters in the Prometheus text format;
//! - [`sweeper`]: the scheduled retention sweeper, stopped with the server;
//! - [`outbox_worker`]: signed webhook delivery of the outbox (erasure notices, verification
//!   codes), with retries, stopped with the server;
//! - [`telemetry`]: one structured log line per request, and the log subscriber;
//! - [`openapi`](mod@openapi): the OpenAPI 3.1 document generated from the handlers and their types.
//!
//! Nothing this layer writes to logs, metrics or error messages carries a value from a request:
//! route templates, status codes, key ids and field names only.

pub mod auth;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod outbox_worker;
pub mod routes;
pub mod sweeper;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use custodia_vault::Vault;

pub use error::ApiError;
pub use metrics::Metrics;
pub use openapi::openapi;
pub use telemetry::{LogFormat, init_logging};

/// How the server behaves, beyond the vault it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// The largest request body accepted, in bytes; larger ones get 413 `request.too_large`.
    pub body_limit_bytes: usize,
    /// How often to look for a policy version published by another instance sharing the same
    /// database; zero turns the check off.
    pub policy_reload_interval: Duration,
    /// How often the retention sweeper runs (the first run is at start); zero turns it off, the
    /// default for a server embedded in another program. `custodia serve` sweeps every
    /// [`sweeper::DEFAULT_SWEEP_INTERVAL`] unless configured otherwise.
    pub sweep_interval: Duration,
    /// The largest media object accepted by an upload, in bytes; a larger one gets 413
    /// `request.too_large` and stores nothing. Media bodies are streamed, so this is not
    /// `body_limit_bytes`, which bounds the bodies read into memory.
    pub max_media_bytes: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            policy_reload_interval: Duration::from_secs(5),
            sweep_interval: Duration::ZERO,
            max_media_bytes: routes::media::DEFAULT_MAX_MEDIA_BYTES,
        }
    }
}

/// What every handler shares: the vault, the metrics and the options. Cloned by every extractor
/// and middleware that asks for it, so it is one shared allocation: a clone is one reference
/// count.
#[derive(Debug, Clone)]
pub struct ServerState {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    vault: Arc<Vault>,
    metrics: Metrics,
    options: ServerOptions,
    webhooks: Option<Arc<outbox_worker::WebhookConfig>>,
}

impl ServerState {
    /// A state serving `vault` with fresh metrics.
    pub fn new(vault: Arc<Vault>, options: ServerOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                vault,
                metrics: Metrics::default(),
                options,
                webhooks: None,
            }),
        }
    }

    /// Delivers the outbox to these webhooks (see [`outbox_worker`]); without them nothing is
    /// delivered and messages wait in the outbox.
    #[must_use]
    pub fn with_webhooks(self, webhooks: outbox_worker::WebhookConfig) -> Self {
        let shared = &self.shared;
        Self {
            shared: Arc::new(Shared {
                vault: shared.vault.clone(),
                metrics: shared.metrics.clone(),
                options: shared.options,
                webhooks: Some(Arc::new(webhooks)),
            }),
        }
    }

    /// Where the outbox is delivered, if anywhere.
    pub fn webhooks(&self) -> Option<&Arc<outbox_worker::WebhookConfig>> {
        self.shared.webhooks.as_ref()
    }

    /// The vault.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.shared.vault
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The options.
    pub fn options(&self) -> &ServerOptions {
        &self.shared.options
    }
}

/// The whole API as a router: `/v1/...` behind the bearer-key middleware, `/healthz`,
/// `/metrics` and `/openapi.json` open, JSON errors for unknown routes and wrong methods, the body
/// limit, and one log line and metric sample per request.
pub fn router(state: ServerState) -> Router {
    let limit = state.options().body_limit_bytes;
    Router::new()
        .merge(routes::authenticated(state.clone()))
        .merge(routes::public())
        .fallback(routes::system::route_not_found)
        // Set after the key middleware so a wrong method is answered without a key, as a 404 is.
        .method_not_allowed_fallback(routes::system::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::observe,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting connections and
/// lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `state` on `listener` with the policy reloader, the retention sweeper and the outbox
/// deliverer (when webhooks are configured) running beside it, until `shutdown` completes (a
/// sweep or delivery under way is let finish): the one call a binary needs.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reloader = spawn_policy_reloader(&state);
    let sweeper = sweeper::spawn_sweeper(&state);
    let deliverer = outbox_worker::spawn_deliverer(&state);
    let served = serve(listener, router(state), shutdown).await;
    if let Some(task) = reloader {
        task.abort();
    }
    if let Some(sweeper) = sweeper {
        sweeper.stop().await;
    }
    if let Some(deliverer) = deliverer {
        deliverer.stop().await;
    }
    served
}

/// Starts the background task that switches to a policy version another instance published
/// (several instances may share one PostgreSQL database; the one that publishes switches at
/// once, the others within the interval). Returns `None` when the interval is zero. Must be
/// called inside a Tokio runtime.
pub fn spawn_policy_reloader(state: &ServerState) -> Option<tokio::task::JoinHandle<()>> {
    let every = state.options().policy_reload_interval;
    if every.is_zero() {
        return None;
    }
    let vault = state.vault().clone();
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once, and the vault has just loaded the newest version.
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let vault = vault.clone();
            match tokio::task::spawn_blocking(move || {
                vault
                    .reload_policy()
                    .map(|changed| changed.then(|| vault.policy().version.get_ref().clone()))
            })
            .await
            {
                Ok(Ok(Some(version))) => {
                    tracing::info!(target: "custodia::policy", %version, "switched to a newly published policy version");
                }
                Ok(Ok(None)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(target: "custodia::policy", code = err.code(), "policy reload failed; keeping the version in force");
                }
                Err(_) => {
                    tracing::warn!(target: "custodia::policy", "policy reload task failed; keeping the version in force");
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    /// The server future must be `Send`, so a program can `tokio::spawn` it.
    #[test]
    fn the_server_future_is_send() {
        fn send<T: Send>(_: &T) {}
        let state = |vault| super::ServerState::new(vault, super::ServerOptions::default());
        let _ = |vault, listener| {
            let future = super::run(listener, state(vault), async {});
            send(&future);
        };
    }
}
