//! The routes that need no key (liveness, metrics, the OpenAPI document) and the JSON answers
//! for unknown routes and wrong methods.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ServerState;
use crate::error::ApiError;

/// The process is up.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness: answers as long as the process serves requests. It touches no store, so it also
/// serves as the baseline the gate's HTTP benchmark is compared with.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "system",
    security(()),
    responses((status = 200, description = "Up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// Request, latency and gate counters in the Prometheus text format (no ids, no values).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    security(()),
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "system",
    security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_json(),
    )
}

/// No route has this path.
pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// The path exists, but not with this method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
