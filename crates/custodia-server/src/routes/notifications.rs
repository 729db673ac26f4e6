//! Settling outbox notifications (admin keys only): `POST /v1/notifications/{id}/ack` when a
//! recipient confirms it acted on a notice (erasure, rectification, restriction),
//! `POST /v1/notifications/{id}/impossible` with the operator's reason when it never will (the
//! recipient is gone, has no channel...).
//! Once every recipient notice of a request is settled, the request moves from
//! `waiting_on_recipients` to `fulfilled`. Delivery itself is the [`outbox_worker`]'s.
//!
//! [`outbox_worker`]: crate::outbox_worker

use axum::Json;
use axum::extract::State;
use custodia_core::NotificationId;
use custodia_vault::NotificationStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{Admin, ApiJson, PathParams};

/// Why a notification is impossible.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkImpossible {
    /// The operator's reason, 1 to 2000 characters; stored sealed, shown to operators.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// A notification as operators see it (never its payload).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    /// The notification's id.
    #[schema(example = "ntf_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// What it is (`erasure_notice`, `verification_code`, ...).
    pub kind: String,
    /// The request it belongs to.
    pub request: Option<String>,
    /// Whom it concerns.
    pub subject: String,
    /// To whom: a recipient's policy name, or `subject`.
    pub recipient: String,
    /// `pending`, `delivered`, `acknowledged`, `impossible` or `failed` (given up after ten
    /// attempts; still waiting to be marked impossible).
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
    /// The stable code of the last delivery failure (`webhook.status_500`, ...).
    pub last_error: Option<String>,
    /// When it was queued.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was delivered.
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
    /// When it was acknowledged or marked impossible.
    #[schema(format = DateTime)]
    pub settled_at: Option<String>,
    /// Why it is impossible.
    pub reason: Option<String>,
}

/// The view of a notification's status.
pub fn view(status: NotificationStatus) -> NotificationView {
    NotificationView {
        id: status.id.to_string(),
        kind: status.kind,
        request: status.request.map(|id| id.to_string()),
        subject: status.subject.to_string(),
        recipient: status.recipient,
        state: status.state.as_str().to_owned(),
        attempts: status.attempts,
        next_attempt_at: rfc3339_opt(status.next_attempt_at),
        last_error: status.last_error,
        created_at: rfc3339(status.created_at),
        delivered_at: rfc3339_opt(status.delivered_at),
        settled_at: rfc3339_opt(status.settled_at),
        reason: status.reason,
    }
}

/// Records that the recipient acknowledged a notification (admin keys only). Repeating it
/// answers the same.
#[utoipa::path(
    post,
    path = "/v1/notifications/{id}/ack",
    operation_id = "acknowledgeNotification",
    tag = "notifications",
    params(("id" = String, Path, description = "The notification's id", pattern = "^ntf_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Acknowledged (now or before)", body = NotificationView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such notification (`notification.not_found`)", body = ErrorBody),
        (status = 409, description = "It was marked impossible (`notification.settled`)", body = ErrorBody),
    )
)]
pub async fn acknowledge(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
) -> Result<Json<NotificationView>, ApiError> {
    let id: NotificationId = params.id("id")?;
    let vault = state.vault().clone();
    let status = blocking(move || Ok(vault.acknowledge_notification(id, &admin.actor())?)).await?;
    Ok(Json(view(status)))
}

/// Marks a notification impossible, with a reason (admin keys only). Repeating it keeps the
/// first reason.
#[utoipa::path(
    post,
    path = "/v1/notifications/{id}/impossible",
    operation_id = "markNotificationImpossible",
    tag = "notifications",
    params(("id" = String, Path, description = "The notification's id", pattern = "^ntf_[0-9a-fA-F]{32}$")),
    request_body = MarkImpossible,
    responses(
        (status = 200, description = "Marked impossible (now or before)", body = NotificationView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such notification (`notification.not_found`)", body = ErrorBody),
        (status = 409, description = "It was acknowledged (`notification.settled`)", body = ErrorBody),
        (status = 422, description = "No reason, or too long (`vault.invalid`)", body = ErrorBody),
    )
)]
pub async fn impossible(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
    ApiJson(body): ApiJson<MarkImpossible>,
) -> Result<Json<NotificationView>, ApiError> {
    let id: NotificationId = params.id("id")?;
    let vault = state.vault().clone();
    let status = blocking(move || {
        Ok(vault.mark_notification_impossible(id, &body.reason, &admin.actor())?)
    })
    .await?;
    Ok(Json(view(status)))
}
