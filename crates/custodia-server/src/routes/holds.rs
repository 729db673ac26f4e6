//! Legal holds (admin keys only): placing one on a subject, a category, one category of one
//! subject, or everything; listing them; releasing one. While a hold is active the sweeper keeps
//! the expired records it covers; once released, or past its end, they go with the next sweep.
//! The reason is the operator's own text: it is stored and shown here, never audited or logged.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use custodia_core::{HoldId, SubjectId, Timestamp};
use custodia_store::{HoldRow, StoreError};
use custodia_vault::VaultError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{instant, rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{Admin, ApiJson, PathParams};

/// A hold to place. Neither `subject` nor `category` holds everything.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceHold {
    /// The subject whose records it keeps; every subject when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^sub_[0-9a-fA-F]{32}$")]
    pub subject: Option<SubjectId>,
    /// The category whose records it keeps (declared in the policy); every category when
    /// absent.
    #[serde(default)]
    pub category: Option<String>,
    /// Why (a case number, a regulator's request), 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// When it ends by itself (RFC 3339, in the future); it lasts until released when absent.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
}

/// A legal hold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HoldView {
    /// The hold's id.
    #[schema(example = "hold_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// The subject it covers; `null` for every subject.
    pub subject: Option<String>,
    /// The category it covers; `null` for every category.
    pub category: Option<String>,
    /// Why it was placed.
    pub reason: String,
    /// When it was placed.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it ends by itself, if it does.
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// When it was released, if it was.
    #[schema(format = DateTime)]
    pub released_at: Option<String>,
    /// Whether it keeps records now: neither released nor ended.
    pub active: bool,
}

/// Every hold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HoldList {
    /// Every hold, released and ended ones too, oldest first.
    pub holds: Vec<HoldView>,
}

fn view(hold: HoldRow, now: Timestamp) -> HoldView {
    let active = hold.released_at.is_none() && hold.ends_at.is_none_or(|end| end > now);
    HoldView {
        id: hold.id.to_string(),
        subject: hold.subject.map(|s| s.to_string()),
        category: hold.category,
        reason: hold.reason,
        created_at: rfc3339(hold.created_at),
        ends_at: rfc3339_opt(hold.ends_at),
        released_at: rfc3339_opt(hold.released_at),
        active,
    }
}

/// Places a legal hold (admin keys only).
#[utoipa::path(
    post,
    path = "/v1/holds",
    operation_id = "placeHold",
    tag = "holds",
    request_body = PlaceHold,
    responses(
        (status = 201, description = "Placed", body = HoldView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such subject (`vault.subject_not_found`)", body = ErrorBody),
        (status = 422, description = "A field is invalid (`request.invalid_body`, `vault.invalid` with `details.field`, `vault.unknown_category`)", body = ErrorBody),
    )
)]
pub async fn place(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<PlaceHold>,
) -> Result<(StatusCode, Json<HoldView>), ApiError> {
    let ends_at = body
        .ends_at
        .as_deref()
        .map(|text| instant("ends_at", text))
        .transpose()?;
    let vault = state.vault().clone();
    let (hold, now) = blocking(move || {
        let hold = vault.place_hold(
            body.subject,
            body.category.as_deref(),
            &body.reason,
            ends_at,
            &admin.actor(),
        )?;
        Ok((hold, vault.now()))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view(hold, now))))
}

/// Every legal hold, released and ended ones too (admin keys only).
#[utoipa::path(
    get,
    path = "/v1/holds",
    operation_id = "listHolds",
    tag = "holds",
    responses(
        (status = 200, description = "The holds, oldest first", body = HoldList),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ServerState>,
    _admin: Admin,
) -> Result<Json<HoldList>, ApiError> {
    let vault = state.vault().clone();
    let (holds, now) = blocking(move || Ok((vault.holds()?, vault.now()))).await?;
    Ok(Json(HoldList {
        holds: holds.into_iter().map(|hold| view(hold, now)).collect(),
    }))
}

/// Releases a legal hold (admin keys only): what it kept goes with the next sweep. Releasing a
/// released hold changes nothing and answers the same.
#[utoipa::path(
    delete,
    path = "/v1/holds/{id}",
    operation_id = "releaseHold",
    tag = "holds",
    params(("id" = String, Path, description = "The hold's id", pattern = "^hold_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Released (now or before)", body = HoldView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such hold (`hold.not_found`)", body = ErrorBody),
    )
)]
pub async fn release(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
) -> Result<Json<HoldView>, ApiError> {
    let id: HoldId = params.id("id")?;
    let vault = state.vault().clone();
    let (hold, now) = blocking(move || match vault.release_hold(id, &admin.actor()) {
        Ok(hold) => Ok((hold, vault.now())),
        Err(VaultError::Store(StoreError::NotFound(_))) => Err(ApiError::HoldNotFound),
        Err(err) => Err(err.into()),
    })
    .await?;
    Ok(Json(view(hold, now)))
}
