//! The handlers, one module per resource. Each handler parses its input, runs one vault call on
//! the blocking pool and shapes the answer; the rules are the vault's and the gate's.
//!
//! - [`subjects`]: `POST /v1/subjects`, `GET /v1/subjects/{id}`;
//! - [`records`]: `PUT|GET /v1/subjects/{id}/records/{category}`, both through the gate;
//! - [`consents`]: the consent ledger and its receipts;
//! - [`decisions`]: `POST /v1/decisions`, the gate alone, one or many questions at once;
//! - [`policy`]: the policy in force, its history, its text, and publishing a new version;
//! - [`holds`]: `POST|GET /v1/holds`, `DELETE /v1/holds/{id}`, legal holds (admin keys);
//! - [`sweeps`]: `POST /v1/sweeps`, the retention sweeper now, or a dry run (admin keys);
//! - [`media`]: media objects streamed in and out of encrypted object storage, their metadata,
//!   and processing leases (`/v1/subjects/{id}/media`, `/v1/media/{id}/…`);
//! - [`operation_logs`]: `POST /v1/subjects/{id}/operation-logs`, logs stored de-identified;
//! - [`disclosures`]: `POST /v1/disclosures`, hand-overs to recipients through the sharing gate,
//!   and `GET /v1/subjects/{id}/disclosures`, a subject's log (admin keys);
//! - [`notifications`]: `POST /v1/notifications/{id}/ack|impossible`, settling outbox notices
//!   (admin keys);
//! - [`requests`]: data-subject requests (`/v1/requests`, `/v1/requests/{id}/…`): receipt with
//!   the law's due dates, the queue, verification codes, actions, fulfilment (exports streamed
//!   as zips) and the request's notices (admin keys);
//! - [`system`]: `/healthz`, `/metrics`, `/openapi.json`, and the answers for unknown routes.

pub mod consents;
pub mod decisions;
pub mod disclosures;
pub mod holds;
pub mod media;
pub mod notifications;
pub mod operation_logs;
pub mod policy;
pub mod records;
pub mod requests;
pub mod subjects;
pub mod sweeps;
pub mod system;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use custodia_core::Timestamp;

use crate::ServerState;
use crate::error::ApiError;

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
        .route("/v1/holds", post(holds::place).get(holds::list))
        .route("/v1/holds/{id}", delete(holds::release))
        .route("/v1/sweeps", post(sweeps::run))
        .route("/v1/disclosures", post(disclosures::record))
        .route("/v1/subjects/{id}/disclosures", get(disclosures::list))
        .route(
            "/v1/notifications/{id}/ack",
            post(notifications::acknowledge),
        )
        .route(
            "/v1/notifications/{id}/impossible",
            post(notifications::impossible),
        )
        .route(
            "/v1/subjects/{id}/operation-logs",
            post(operation_logs::write),
        )
        .route("/v1/requests", post(requests::open).get(requests::list))
        .route("/v1/requests/{id}", get(requests::show))
        .route(
            "/v1/requests/{id}/verification",
            post(requests::send_verification),
        )
        .route("/v1/requests/{id}/verify", post(requests::verify))
        .route("/v1/requests/{id}/actions", post(requests::act))
        .route("/v1/requests/{id}/fulfil", post(requests::fulfil))
        .route(
            "/v1/requests/{id}/notifications",
            get(requests::notifications),
        )
        // Media bodies stream to object storage under their own limit
        // (`ServerOptions::max_media_bytes`), not the in-memory body limit.
        .route(
            "/v1/subjects/{id}/media",
            get(media::list)
                .post(media::upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/media/{id}", get(media::show).delete(media::delete))
        .route("/v1/media/{id}/content", get(media::content))
        .route("/v1/media/{id}/leases", post(media::lease))
        .route("/v1/media/{id}/leases/{lease}", delete(media::release))
        .route(
            "/v1/media/{id}/leases/{lease}/content",
            get(media::leased_content),
        )
        .route(
            "/v1/media/{id}/leases/{lease}/outputs",
            post(media::attach_output).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/media/{id}/leases/{lease}/complete",
            post(media::complete),
        )
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

/// An RFC 3339 instant with a time and an offset, from body field `field` (a bare date is
/// refused: when in the day would it be?).
pub(crate) fn instant(field: &'static str, text: &str) -> Result<Timestamp, ApiError> {
    let invalid = || ApiError::InvalidBody {
        field: field.into(),
        reason: "must be an RFC 3339 date-time, like 2026-02-10T09:00:00Z".into(),
    };
    if !text.contains(['T', 't']) {
        return Err(invalid());
    }
    Timestamp::parse(text).map_err(|_| invalid())
}
