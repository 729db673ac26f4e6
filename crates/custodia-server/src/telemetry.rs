//! Structured logs: one line per request with the method, the matched route template, the
//! status, the latency and the caller's key id, and the subscriber that writes them (JSON or
//! text, filtered by `CUSTODIA_LOG`). Bodies, query strings and raw paths are never logged: they
//! carry ids and values a log must not hold.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing_subscriber::EnvFilter;

use crate::ServerState;
use crate::auth::CallerKey;

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global log subscriber, writing to standard error. The filter comes from
/// `CUSTODIA_LOG` (`info` when unset), in `tracing_subscriber::EnvFilter` syntax; a filter that
/// does not parse falls back to `info`, with a warning in the log. Does nothing when a
/// subscriber is already installed (tests, embedding programs).
pub fn init_logging(format: LogFormat) {
    let (filter, bad_filter) = match std::env::var("CUSTODIA_LOG") {
        Ok(spec) => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, false),
            Err(_) => (EnvFilter::new("info"), true),
        },
        Err(_) => (EnvFilter::new("info"), false),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() && bad_filter {
        tracing::warn!(target: "custodia::log", "CUSTODIA_LOG does not parse as a log filter; logging at `info`");
    }
}

/// The caller's key id in a log line, `-` for a request made without one.
struct KeyLabel(Option<CallerKey>);

impl std::fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(CallerKey(id)) => std::fmt::Display::fmt(&id, f),
            None => f.write_str("-"),
        }
    }
}

/// Logs and counts every request once it has been answered.
pub async fn observe(State(state): State<ServerState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |path| path.as_str().to_owned());
    let response = next.run(req).await;
    let took = started.elapsed();
    let status = response.status();
    state
        .metrics()
        .observe_request(&route, method.as_str(), status, took);
    // Formatted only if the line is written.
    let key = KeyLabel(response.extensions().get::<CallerKey>().copied());
    tracing::info!(
        target: "custodia::http",
        method = %method,
        route = %route,
        status = status.as_u16(),
        latency_ms = took.as_secs_f64() * 1000.0,
        key = %key,
        "request"
    );
    response
}
