//! The disclosure log: `POST /v1/disclosures` records a hand-over of a subject's data to a
//! processor or an authority the policy declares, if the policy's sharing rules and the gate
//! allow it (a service key must be bound to the purpose; admin keys act for any purpose), and
//! `GET /v1/subjects/{id}/disclosures` lists a subject's log (admin keys). A refusal is 403
//! `gate.denied` with `details.reasons` (`disclosure.never_shared`, `disclosure.not_entitled`,
//! `disclosure.transfer_without_basis`, ... and the gate's own) and stores nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use custodia_core::SubjectId;
use custodia_store::DisclosureRow;
use custodia_vault::{Gated, NewDisclosure, RecipientKind, VaultError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{Admin, ApiJson, Authenticated, PathParams};

/// Whom data goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKindBody {
    /// A processor: an SDK or a service provider.
    #[default]
    Processor,
    /// A public authority on legal request (needs `reference`).
    Authority,
}

/// A hand-over to record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordDisclosure {
    /// Whose data.
    #[schema(value_type = String, pattern = "^sub_[0-9a-fA-F]{32}$")]
    pub subject: SubjectId,
    /// The recipient's name as the policy's `[[processor]]` declares it.
    #[schema(example = "Tencent Bugly SDK", min_length = 1, max_length = 200)]
    pub recipient: String,
    /// `processor` (the default) or `authority`.
    #[serde(default)]
    pub recipient_kind: RecipientKindBody,
    /// The categories handed over.
    #[schema(min_items = 1)]
    pub categories: Vec<String>,
    /// The purpose it serves; a service key must be bound to it.
    #[schema(example = "crash_reporting")]
    pub purpose: String,
    /// The legal document's reference (a court order's or an authority's letter's number);
    /// required for authorities.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reference: Option<String>,
    /// Where the data went (ISO 3166 code), when not the recipient's declared location.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{2}$", example = "US")]
    pub country: Option<String>,
    /// The transfer mechanism relied on when abroad; it must be one the policy declares for the
    /// transfer. The declared one when absent.
    #[serde(default)]
    #[schema(example = "scc")]
    pub mechanism: Option<String>,
}

/// A recorded hand-over.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisclosureView {
    /// The disclosure's id.
    #[schema(example = "dis_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// Whose data.
    pub subject: String,
    /// The recipient's policy name.
    pub recipient: String,
    /// `processor` or `authority`.
    pub recipient_kind: String,
    /// The categories handed over.
    pub categories: Vec<String>,
    /// The purpose.
    pub purpose: String,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// The legal document's reference.
    pub reference: Option<String>,
    /// Where the data went, when abroad.
    pub country: Option<String>,
    /// The transfer mechanism, when abroad.
    pub mechanism: Option<String>,
}

/// A recorded hand-over and why it was allowed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisclosureRecorded {
    /// The disclosure.
    #[serde(flatten)]
    pub disclosure: DisclosureView,
    /// The legal basis that allowed it (`basis.contract`, ...).
    pub reasons: Vec<String>,
}

/// A subject's disclosure log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisclosureList {
    /// The hand-overs, in the order recorded.
    pub disclosures: Vec<DisclosureView>,
}

fn view(row: DisclosureRow) -> DisclosureView {
    DisclosureView {
        id: row.id.to_string(),
        subject: row.subject.to_string(),
        recipient: row.recipient,
        recipient_kind: row.recipient_kind,
        categories: row.categories,
        purpose: row.purpose,
        at: rfc3339(row.at),
        reference: row.reference,
        country: row.country,
        mechanism: row.mechanism,
    }
}

/// Records a hand-over of a subject's data, if the policy and the gate allow it.
#[utoipa::path(
    post,
    path = "/v1/disclosures",
    operation_id = "recordDisclosure",
    tag = "disclosures",
    request_body = RecordDisclosure,
    responses(
        (status = 201, description = "Recorded", body = DisclosureRecorded),
        (status = 403, description = "Refused (`gate.denied`, with `details.reasons`: `disclosure.never_shared`, `disclosure.unknown_recipient`, `disclosure.recipient_kind_mismatch`, `disclosure.not_entitled`, `disclosure.purpose_not_served`, `disclosure.deidentified_only`, `disclosure.transfer_without_basis`, `disclosure.reference_required`, or the gate's own such as `consent.missing`, `key.purpose_not_bound`); nothing was stored", body = ErrorBody),
        (status = 404, description = "No such subject (`vault.subject_not_found`)", body = ErrorBody),
        (status = 422, description = "A field is invalid (`request.invalid_body`, `vault.invalid` with `details.field`)", body = ErrorBody),
    )
)]
pub async fn record(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<RecordDisclosure>,
) -> Result<(StatusCode, Json<DisclosureRecorded>), ApiError> {
    let new = NewDisclosure {
        recipient: body.recipient,
        recipient_kind: match body.recipient_kind {
            RecipientKindBody::Processor => RecipientKind::Processor,
            RecipientKindBody::Authority => RecipientKind::Authority,
        },
        categories: body.categories,
        purpose: body.purpose,
        reference: body.reference,
        country: body.country,
        mechanism: body.mechanism,
    };
    let subject = body.subject;
    let vault = state.vault().clone();
    let metrics = state.metrics().clone();
    let gated = blocking(move || {
        let gated = vault.record_disclosure(subject, &new, &caller)?;
        match &gated {
            Gated::Allowed { decision, .. } | Gated::Denied(decision) => {
                metrics.observe_decisions([decision]);
            }
        }
        Ok(gated)
    })
    .await?;
    match gated {
        Gated::Allowed { value, decision } => Ok((
            StatusCode::CREATED,
            Json(DisclosureRecorded {
                disclosure: view(value),
                reasons: decision.codes().into_iter().map(str::to_owned).collect(),
            }),
        )),
        Gated::Denied(decision) => Err(ApiError::GateDenied(decision)),
    }
}

/// A subject's disclosure log (admin keys only). It outlives the subject's erasure.
#[utoipa::path(
    get,
    path = "/v1/subjects/{id}/disclosures",
    operation_id = "listDisclosures",
    tag = "disclosures",
    params(("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "The log, in the order recorded", body = DisclosureList),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such subject, and no log (`vault.subject_not_found`)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ServerState>,
    _admin: Admin,
    params: PathParams,
) -> Result<Json<DisclosureList>, ApiError> {
    let subject: SubjectId = params.id("id")?;
    let vault = state.vault().clone();
    let rows = blocking(move || {
        let rows = vault.disclosures(subject)?;
        if rows.is_empty()
            && vault
                .data_store()
                .subject(subject)
                .map_err(VaultError::from)?
                .is_none()
        {
            return Err(VaultError::SubjectNotFound(subject).into());
        }
        Ok(rows)
    })
    .await?;
    Ok(Json(DisclosureList {
        disclosures: rows.into_iter().map(view).collect(),
    }))
}
