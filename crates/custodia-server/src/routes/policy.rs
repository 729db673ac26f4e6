//! The policy: the version in force and its published history, its human-readable text rendered
//! from the same file the gate runs on, and publishing a new version (admin keys only). A
//! material change makes the consents it affects stop counting until they are renewed.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use custodia_policy::diff::ChangeKind;
use serde::Serialize;
use utoipa::ToSchema;

use super::rfc3339;
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{Admin, Authenticated, TomlText};

/// Who is responsible for the data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ControllerView {
    /// The legal entity.
    pub name: String,
    /// The product or service the policy covers.
    pub product: String,
}

/// One published version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishedVersion {
    /// The version label.
    pub version: String,
    /// When it was published here.
    #[schema(format = DateTime)]
    pub published_at: String,
    /// Purposes whose earlier consents stopped counting when it was published.
    pub fresh_consent_purposes: Vec<String>,
}

/// The policy in force and its history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    /// The version in force.
    pub version: String,
    /// The date it takes effect.
    pub effective: String,
    /// The controller.
    pub controller: ControllerView,
    /// Every published version, oldest first.
    pub history: Vec<PublishedVersion>,
}

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKindView {
    /// Only in the new version.
    Added,
    /// Only in the old version.
    Removed,
    /// In both, different.
    Changed,
}

/// One difference from the previous version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeView {
    /// Added, removed or changed.
    pub kind: ChangeKindView,
    /// The key path, such as `purpose.ai_transcription.categories`.
    pub path: String,
    /// What changed, in a sentence.
    pub description: String,
    /// Whether it needs fresh consent.
    pub material: bool,
    /// The purposes whose consents it affects.
    pub purposes: Vec<String>,
}

/// What publishing did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishedView {
    /// The new version, now in force.
    pub version: String,
    /// The version it replaced.
    pub previous: Option<String>,
    /// Purposes whose earlier consents stop counting until renewed.
    pub fresh_consent_purposes: Vec<String>,
    /// Every change, material or not.
    pub changes: Vec<ChangeView>,
}

/// The policy in force and every published version.
#[utoipa::path(
    get,
    path = "/v1/policy",
    operation_id = "getPolicy",
    tag = "policy",
    responses((status = 200, description = "The policy in force", body = PolicyView))
)]
pub async fn show(
    State(state): State<ServerState>,
    _caller: Authenticated,
) -> Result<Json<PolicyView>, ApiError> {
    let vault = state.vault().clone();
    let (policy, history) = blocking(move || {
        let history = vault.policy_history()?;
        Ok((vault.policy(), history))
    })
    .await?;
    Ok(Json(PolicyView {
        version: policy.version.get_ref().clone(),
        effective: policy.effective.get_ref().clone(),
        controller: ControllerView {
            name: policy.controller.name.get_ref().clone(),
            product: policy.controller.product.get_ref().clone(),
        },
        history: history
            .into_iter()
            .map(|row| PublishedVersion {
                version: row.version,
                published_at: rfc3339(row.published_at),
                fresh_consent_purposes: row.fresh_consent_purposes,
            })
            .collect(),
    }))
}

/// The privacy policy as an HTML page, rendered from the version in force.
#[utoipa::path(
    get,
    path = "/v1/policy/text",
    operation_id = "getPolicyText",
    tag = "policy",
    responses((status = 200, description = "The rendered policy", content_type = "text/html", body = String))
)]
pub async fn text(State(state): State<ServerState>, _caller: Authenticated) -> impl IntoResponse {
    let html = custodia_policy::render::html(&state.vault().policy());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
}

/// Publishes a new version from its TOML source (admin keys only); it takes effect at once.
#[utoipa::path(
    post,
    path = "/v1/policy",
    operation_id = "publishPolicy",
    tag = "policy",
    request_body(content = String, content_type = "application/toml", description = "The policy file"),
    responses(
        (status = 201, description = "Published and in force", body = PublishedView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 409, description = "The version label is already published (`policy.version_conflict`)", body = ErrorBody),
        (status = 422, description = "The file does not parse (`vault.invalid`) or has findings (`policy.not_clean`, with `details.findings`)", body = ErrorBody),
    )
)]
pub async fn publish(
    State(state): State<ServerState>,
    Admin(caller): Admin,
    TomlText(source): TomlText,
) -> Result<(StatusCode, Json<PublishedView>), ApiError> {
    let vault = state.vault().clone();
    let published = blocking(move || Ok(vault.publish_policy(&source, &caller.actor())?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(PublishedView {
            version: published.version,
            previous: published.previous,
            fresh_consent_purposes: published.fresh_consent_purposes,
            changes: published
                .changes
                .into_iter()
                .map(|change| ChangeView {
                    kind: match change.kind {
                        ChangeKind::Added => ChangeKindView::Added,
                        ChangeKind::Removed => ChangeKindView::Removed,
                        ChangeKind::Changed => ChangeKindView::Changed,
                    },
                    path: change.path,
                    description: change.description,
                    material: change.material,
                    purposes: change.purposes,
                })
                .collect(),
        }),
    ))
}
