//! The handlers, one module per resource. Each handler parses its input, runs one vault call on
//! the blocking pool and shapes the answer; the rules are the vault's and the gate's.
//!
//! - [`subjects`]: `POST /v1/subjects`, `GET /v1/subjects/{id}`;
//! - [`records`]: `PUT|GET /v1/subjects/{id}/records/{category}`, both through the gate;
//! - [`consents`]: the consent ledger and its receipts;
//! - [`decisions`]: `POST /v1/decisions`, the gate alone, one or many questions at once;
//! - [`policy`]: the policy in force, its history, its text, and publishing a new version;
//! - [`system`]: `/healthz`, `/metrics`, `/openapi.json`, and the answers for unknown routes.

pub mod consents;
pub mod decisions;
pub mod policy;
pub mod records;
pub mod subjects;
pub mod system;

use axum::Router;
use axum::routing::{get, post, put};
use custodia_core::Timestamp;

use crate::ServerState;

/// The `/v1` routes, behind the bearer-key middleware.
pub fn authenticated(state: ServerState) -> Router<ServerState> {
    Router::new()
        .route("/v1/subjects", post(subjects::create))
        .route("/v1/subjects/{id}", get(subjects::show))
        .route(
            "/v1/subjects/{id}/records/{category}",
            put(records::write).get(records::read),
        )
        .route(
            "/v1/subjects/{id}/consents",
            post(consents::record).get(consents::list),
        )
        .route(
            "/v1/subjects/{id}/consents/{consent_id}/receipt",
            get(consents::receipt),
        )
        .route("/v1/decisions", post(decisions::decide))
        .route("/v1/policy", get(policy::show).post(policy::publish))
        .route("/v1/policy/text", get(policy::text))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::require_key,
        ))
}

/// The routes that need no key.
pub fn public() -> Router<ServerState> {
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi_json))
}

/// A timestamp as RFC 3339 text.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    at.to_string()
}

/// An optional timestamp as RFC 3339 text.
pub(crate) fn rfc3339_opt(at: Option<Timestamp>) -> Option<String> {
    at.map(rfc3339)
}
