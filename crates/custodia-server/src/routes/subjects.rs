//! Subjects: registering a person (any key) and reading one back with its decrypted profile
//! (admin keys only: the profile is personal data that no purpose covers).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use custodia_core::SubjectId;
use custodia_vault::NewSubject;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{Admin, ApiJson, Authenticated, PathParams};

/// A person to register.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubject {
    /// The app's own user id, 1 to 256 bytes of UTF-8 (kept sealed; the store sees only a keyed
    /// hash).
    #[schema(min_length = 1, max_length = 256)]
    pub external_id: String,
    /// Where the person is, as an ISO 3166 code (`CN`, `DE`, `US-CA`).
    #[schema(pattern = "^[A-Z-]{2,6}$", example = "CN")]
    pub jurisdiction: String,
    /// Birth date, `YYYY-MM-DD`, when known.
    #[serde(default)]
    #[schema(format = Date)]
    pub birth_date: Option<String>,
    /// Age band (`under_13`, `13_17`, `adult`), 1 to 32 bytes, when the birth date is not
    /// collected.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub age_band: Option<String>,
    /// A registered subject who acts for this one as guardian.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^sub_[0-9a-fA-F]{32}$")]
    pub guardian: Option<SubjectId>,
}

/// A registered subject.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubjectCreated {
    /// The pseudonymous id to use in every later call.
    #[schema(example = "sub_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// When it was registered.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A subject's decrypted profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProfileView {
    /// The app's own user id.
    pub external_id: String,
    /// ISO 3166 code.
    pub jurisdiction: String,
    /// Birth date, `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    /// Age band.
    pub age_band: Option<String>,
    /// The guardian's subject id.
    pub guardian: Option<String>,
}

/// A subject as the vault shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubjectView {
    /// The pseudonymous id.
    pub id: String,
    /// The decrypted profile; `null` once erased.
    pub profile: Option<ProfileView>,
    /// When registered.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Last activity.
    #[schema(format = DateTime)]
    pub last_active_at: String,
    /// When the account was closed.
    #[schema(format = DateTime)]
    pub closed_at: Option<String>,
    /// When the subject was erased.
    #[schema(format = DateTime)]
    pub erased_at: Option<String>,
}

/// Registers a subject.
#[utoipa::path(
    post,
    path = "/v1/subjects",
    operation_id = "createSubject",
    tag = "subjects",
    request_body = CreateSubject,
    responses(
        (status = 201, description = "Registered", body = SubjectCreated),
        (status = 404, description = "The guardian is not a registered subject", body = ErrorBody),
        (status = 409, description = "A subject with this external id exists (`vault.subject_exists`)", body = ErrorBody),
        (status = 410, description = "The guardian was erased", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<CreateSubject>,
) -> Result<(StatusCode, Json<SubjectCreated>), ApiError> {
    let vault = state.vault().clone();
    let new = NewSubject {
        external_id: body.external_id,
        jurisdiction: body.jurisdiction,
        birth_date: body.birth_date,
        age_band: body.age_band,
        guardian: body.guardian,
    };
    let subject = blocking(move || Ok(vault.create_subject(&new, &caller.actor())?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubjectCreated {
            id: subject.id.to_string(),
            created_at: rfc3339(subject.created_at),
        }),
    ))
}

/// Reads a subject and its decrypted profile (admin keys only).
#[utoipa::path(
    get,
    path = "/v1/subjects/{id}",
    operation_id = "getSubject",
    tag = "subjects",
    params(("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "The subject", body = SubjectView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
) -> Result<Json<SubjectView>, ApiError> {
    let id: SubjectId = params.id("id")?;
    let vault = state.vault().clone();
    let subject = blocking(move || Ok(vault.read_subject(id, &admin.actor())?)).await?;
    Ok(Json(SubjectView {
        id: subject.id.to_string(),
        profile: subject.profile.map(|profile| ProfileView {
            external_id: profile.external_id,
            jurisdiction: profile.jurisdiction,
            birth_date: profile.birth_date,
            age_band: profile.age_band,
            guardian: profile.guardian.map(|g| g.to_string()),
        }),
        created_at: rfc3339(subject.created_at),
        last_active_at: rfc3339(subject.last_active_at),
        closed_at: rfc3339_opt(subject.closed_at),
        erased_at: rfc3339_opt(subject.erased_at),
    }))
}
