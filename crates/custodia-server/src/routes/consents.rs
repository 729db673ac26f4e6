//! The consent ledger over HTTP: appending an event (given, withdrawn, refused, renewed, expired,
//! objected, restricted, unrestricted), listing a subject's append-only ledger, and each event's
//! receipt, as an ISO/IEC TS 27560 record or a Kantara v1.1 consent receipt.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use custodia_core::{ConsentId, SubjectId, Timestamp};
use custodia_store::{ConsentEventKind, ConsentRow};
use custodia_vault::{NewConsent, ReceiptFormat, VaultError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{ApiJson, ApiQuery, Authenticated, PathParams};

/// What a ledger event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentKind {
    /// Consent given.
    Given,
    /// Consent withdrawn: stops processing at once; what was done before stays lawful.
    Withdrawn,
    /// Consent refused when asked.
    Refused,
    /// Consent given again (after a material policy change, or before it lapses).
    Renewed,
    /// Consent lapsed.
    Expired,
    /// The subject objected to processing for these purposes.
    Objected,
    /// The subject restricted all processing (give no purposes).
    Restricted,
    /// A restriction was lifted (give no purposes).
    Unrestricted,
}

impl From<ConsentKind> for ConsentEventKind {
    fn from(kind: ConsentKind) -> Self {
        match kind {
            ConsentKind::Given => Self::Given,
            ConsentKind::Withdrawn => Self::Withdrawn,
            ConsentKind::Refused => Self::Refused,
            ConsentKind::Renewed => Self::Renewed,
            ConsentKind::Expired => Self::Expired,
            ConsentKind::Objected => Self::Objected,
            ConsentKind::Restricted => Self::Restricted,
            ConsentKind::Unrestricted => Self::Unrestricted,
        }
    }
}

/// An event to append to a subject's consent ledger.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConsent {
    /// What happened.
    pub kind: ConsentKind,
    /// The purposes it covers: one for a separate consent, several for a bundled one; none for a
    /// restriction or its lifting.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// A registered subject who expressed it for this one, as guardian.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^sub_[0-9a-fA-F]{32}$")]
    pub guardian: Option<SubjectId>,
    /// Whether the guardian's identity and authority were verified.
    #[serde(default)]
    pub guardian_verified: bool,
    /// The policy version the subject was shown; the version in force when absent.
    #[serde(default)]
    pub policy_version: Option<String>,
    /// How it was collected (`app_dialog`, `web_form`, `paper`...), 1 to 64 bytes.
    #[schema(min_length = 1, max_length = 64)]
    pub method: String,
    /// When a given consent lapses (RFC 3339); the purpose's own validity when absent.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// One ledger event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentEvent {
    /// The event's id.
    pub id: String,
    /// Whose consent.
    pub subject: String,
    /// What happened.
    pub kind: ConsentKind,
    /// The purposes it covers; more than one means a bundled consent.
    pub purposes: Vec<String>,
    /// The guardian who expressed it, if not the subject.
    pub guardian: Option<String>,
    /// Whether that guardian was verified.
    pub guardian_verified: bool,
    /// The policy version shown.
    pub policy_version: String,
    /// How it was collected.
    pub method: String,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// When a given consent lapses.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A recorded event and its ISO/IEC TS 27560 receipt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentRecorded {
    /// The event.
    pub event: ConsentEvent,
    /// The consent record shaped after ISO/IEC TS 27560.
    #[schema(value_type = Object)]
    pub receipt: Value,
}

/// A subject's ledger.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentLedger {
    /// Every event, oldest first.
    pub events: Vec<ConsentEvent>,
}

/// A receipt format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptFormatParam {
    /// A record shaped after ISO/IEC TS 27560.
    #[default]
    Iso27560,
    /// A Kantara Initiative Consent Receipt v1.1.
    Kantara,
}

/// Which receipt format to return.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    /// `iso27560` (the default) or `kantara`.
    #[serde(default)]
    #[param(inline)]
    pub format: Option<ReceiptFormatParam>,
}

fn kind_of(kind: ConsentEventKind) -> ConsentKind {
    match kind {
        ConsentEventKind::Given => ConsentKind::Given,
        ConsentEventKind::Withdrawn => ConsentKind::Withdrawn,
        ConsentEventKind::Refused => ConsentKind::Refused,
        ConsentEventKind::Renewed => ConsentKind::Renewed,
        ConsentEventKind::Expired => ConsentKind::Expired,
        ConsentEventKind::Objected => ConsentKind::Objected,
        ConsentEventKind::Restricted => ConsentKind::Restricted,
        ConsentEventKind::Unrestricted => ConsentKind::Unrestricted,
    }
}

fn view(row: ConsentRow) -> ConsentEvent {
    ConsentEvent {
        id: row.id.to_string(),
        subject: row.subject.to_string(),
        kind: kind_of(row.kind),
        purposes: row.purposes,
        guardian: row.guardian.map(|g| g.to_string()),
        guardian_verified: row.guardian_verified,
        policy_version: row.policy_version,
        method: row.method,
        at: rfc3339(row.at),
        expires_at: rfc3339_opt(row.expires_at),
    }
}

/// An RFC 3339 instant with a time and an offset (a bare date is refused: when in the day would
/// it lapse?).
fn instant(field: &'static str, text: &str) -> Result<Timestamp, ApiError> {
    let invalid = || ApiError::InvalidBody {
        field: field.into(),
        reason: "must be an RFC 3339 date-time, like 2026-02-10T09:00:00Z".into(),
    };
    if !text.contains(['T', 't']) {
        return Err(invalid());
    }
    Timestamp::parse(text).map_err(|_| invalid())
}

/// Appends an event to a subject's consent ledger and returns it with its receipt.
#[utoipa::path(
    post,
    path = "/v1/subjects/{id}/consents",
    operation_id = "recordConsent",
    tag = "consents",
    params(("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$")),
    request_body = RecordConsent,
    responses(
        (status = 201, description = "Recorded", body = ConsentRecorded),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 422, description = "The event does not fit the policy (unknown purpose, a purpose not resting on consent, an unpublished version...)", body = ErrorBody),
    )
)]
pub async fn record(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiJson(body): ApiJson<RecordConsent>,
) -> Result<(StatusCode, Json<ConsentRecorded>), ApiError> {
    let subject: SubjectId = params.id("id")?;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|text| instant("expires_at", text))
        .transpose()?;
    let new = NewConsent {
        purposes: body.purposes,
        kind: body.kind.into(),
        guardian: body.guardian,
        guardian_verified: body.guardian_verified,
        policy_version: body.policy_version,
        method: body.method,
        expires_at,
    };
    let vault = state.vault().clone();
    let (event, receipt) = blocking(move || {
        let event = vault.record_consent(subject, &new, &caller.actor())?;
        let receipt = vault.receipt(subject, event.id, ReceiptFormat::Iso27560)?;
        Ok((event, receipt))
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConsentRecorded {
            event: view(event),
            receipt,
        }),
    ))
}

/// A subject's consent ledger, oldest first.
#[utoipa::path(
    get,
    path = "/v1/subjects/{id}/consents",
    operation_id = "listConsents",
    tag = "consents",
    params(("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "The ledger", body = ConsentLedger),
        (status = 404, description = "No such subject", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ServerState>,
    _caller: Authenticated,
    params: PathParams,
) -> Result<Json<ConsentLedger>, ApiError> {
    let subject: SubjectId = params.id("id")?;
    let vault = state.vault().clone();
    let events = blocking(move || Ok(vault.consents(subject)?)).await?;
    Ok(Json(ConsentLedger {
        events: events.into_iter().map(view).collect(),
    }))
}

/// The receipt of one ledger event.
#[utoipa::path(
    get,
    path = "/v1/subjects/{id}/consents/{consent_id}/receipt",
    operation_id = "getConsentReceipt",
    tag = "consents",
    params(
        ("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$"),
        ("consent_id" = String, Path, description = "The event's id", pattern = "^con_[0-9a-fA-F]{32}$"),
        ReceiptQuery,
    ),
    responses(
        (status = 200, description = "The receipt: an ISO/IEC TS 27560 record or a Kantara v1.1 consent receipt", body = Object),
        (status = 404, description = "No such subject, or no such event for it (`consent.not_found`)", body = ErrorBody),
    )
)]
pub async fn receipt(
    State(state): State<ServerState>,
    _caller: Authenticated,
    params: PathParams,
    ApiQuery(query): ApiQuery<ReceiptQuery>,
) -> Result<Json<Value>, ApiError> {
    let subject: SubjectId = params.id("id")?;
    let consent: ConsentId = params.id("consent_id")?;
    let format = match query.format.unwrap_or_default() {
        ReceiptFormatParam::Iso27560 => ReceiptFormat::Iso27560,
        ReceiptFormatParam::Kantara => ReceiptFormat::Kantara,
    };
    let vault = state.vault().clone();
    let receipt = blocking(move || match vault.receipt(subject, consent, format) {
        Ok(receipt) => Ok(receipt),
        Err(VaultError::ConsentNotFound(_)) => Err(ApiError::ConsentNotFound),
        Err(err) => Err(err.into()),
    })
    .await?;
    Ok(Json(receipt))
}
