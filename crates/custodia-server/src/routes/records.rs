//! Records: writing a value of a category for a purpose, and reading a subject's values of a
//! category for a purpose. Both pass the gate (collecting is processing too); a denial answers
//! 403 `gate.denied` with the gate's reasons and neither reads nor writes anything. The subject
//! id in the path is the only subject a call can reach.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use custodia_core::SubjectId;
use custodia_vault::{Ask, Gated, NewRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::{rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{ApiJson, ApiQuery, Authenticated, PathParams, decode_value};

/// Standard, padded base64. Non-zero bits after the last full byte are accepted, so the pattern
/// in the OpenAPI document says exactly what is accepted.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// A value to store: text, or bytes in base64 (a body with `value_base64`).
#[derive(Debug, Clone, ToSchema)]
#[serde(untagged)]
pub enum WriteRecord {
    /// A UTF-8 value.
    Text(TextValue),
    /// A binary value.
    Binary(BinaryValue),
}

/// A UTF-8 value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextValue {
    /// The purpose it is collected for; it must cover the category.
    pub purpose: String,
    /// The value.
    pub value: String,
}

/// A binary value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BinaryValue {
    /// The purpose it is collected for; it must cover the category.
    pub purpose: String,
    /// The value, base64 (standard alphabet, padded).
    #[schema(
        content_encoding = "base64",
        pattern = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
    )]
    pub value_base64: String,
}

/// What was stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordWritten {
    /// The record's id.
    pub id: String,
    /// The retention rule that governs it.
    pub rule: String,
    /// When it expires; `null` while its rule's trigger has not happened.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Kept through an erasure, storage-only (a statutory retention).
    pub statutory: bool,
}

/// The purpose a read is for.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// The purpose the data is read for; the gate checks it.
    pub purpose: String,
}

/// One decrypted record. The value is `value` when it is UTF-8, `value_base64` otherwise.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordView {
    /// The record's id.
    pub id: String,
    /// The purpose it was collected for.
    pub purpose: String,
    /// When collected.
    #[schema(format = DateTime)]
    pub collected_at: String,
    /// When it expires.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The value, when it is UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in base64, when it is not UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(content_encoding = "base64")]
    pub value_base64: Option<String>,
}

/// The records a gated read returned.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordList {
    /// Live records of the category, oldest first.
    pub records: Vec<RecordView>,
    /// The gate's reasons for allowing the read (the legal basis).
    pub reasons: Vec<String>,
}

impl WriteRecord {
    /// A body with `value_base64` is binary; anything else is text.
    fn decode(body: Value) -> Result<Self, ApiError> {
        if body.get("value_base64").is_some() {
            decode_value(body).map(Self::Binary)
        } else {
            decode_value(body).map(Self::Text)
        }
    }
}

fn ids(params: &PathParams) -> Result<(SubjectId, String), ApiError> {
    Ok((params.id("id")?, params.text("category")?.to_owned()))
}

/// Stores a value of a category for a subject, if the gate allows collecting it for the purpose.
#[utoipa::path(
    put,
    path = "/v1/subjects/{id}/records/{category}",
    operation_id = "writeRecord",
    tag = "records",
    params(
        ("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$"),
        ("category" = String, Path, description = "A category of the policy, such as `user.contact.phone_number`"),
    ),
    request_body = WriteRecord,
    responses(
        (status = 201, description = "Stored", body = RecordWritten),
        (status = 403, description = "The gate denied collecting it (`gate.denied`, with `details.reasons`)", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 422, description = "The body is invalid", body = ErrorBody),
    )
)]
pub async fn write(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<RecordWritten>), ApiError> {
    let (subject, category) = ids(&params)?;
    let (purpose, value) = match WriteRecord::decode(body)? {
        WriteRecord::Text(text) => (text.purpose, Zeroizing::new(text.value.into_bytes())),
        WriteRecord::Binary(binary) => {
            let bytes = BASE64.decode(binary.value_base64.as_bytes()).map_err(|_| {
                ApiError::InvalidBody {
                    field: "value_base64".into(),
                    reason: "not standard, padded base64".into(),
                }
            })?;
            (binary.purpose, Zeroizing::new(bytes))
        }
    };
    let vault = state.vault().clone();
    let metrics = state.metrics().clone();
    let written = blocking(move || {
        let decision = vault.decide(
            &Ask {
                subject,
                purpose: purpose.clone(),
                categories: vec![category.clone()],
            },
            &caller,
        )?;
        metrics.observe_decisions([&decision]);
        if !decision.allowed {
            return Err(ApiError::GateDenied(decision));
        }
        let record = NewRecord {
            category: &category,
            purpose: &purpose,
            value: value.as_slice(),
        };
        let mut written = vault.write_records(subject, &[record], &caller.actor())?;
        written.pop().ok_or(ApiError::Internal)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(RecordWritten {
            id: written.id.to_string(),
            rule: written.rule,
            expires_at: rfc3339_opt(written.expires_at),
            statutory: written.statutory,
        }),
    ))
}

/// Reads a subject's live values of a category for a purpose, if the gate allows it.
#[utoipa::path(
    get,
    path = "/v1/subjects/{id}/records/{category}",
    operation_id = "readRecords",
    tag = "records",
    params(
        ("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$"),
        ("category" = String, Path, description = "A category of the policy"),
        ReadQuery,
    ),
    responses(
        (status = 200, description = "The records", body = RecordList),
        (status = 403, description = "The gate denied the read (`gate.denied`, with `details.reasons`); nothing was read", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject's data was erased", body = ErrorBody),
    )
)]
pub async fn read(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Json<RecordList>, ApiError> {
    let (subject, category) = ids(&params)?;
    let vault = state.vault().clone();
    let metrics = state.metrics().clone();
    let gated = blocking(move || {
        let gated = vault.read_gated(subject, &category, &query.purpose, &caller)?;
        match &gated {
            Gated::Allowed { decision, .. } | Gated::Denied(decision) => {
                metrics.observe_decisions([decision]);
            }
        }
        Ok(gated)
    })
    .await?;
    let (records, decision) = match gated {
        Gated::Allowed { value, decision } => (value, decision),
        Gated::Denied(decision) => return Err(ApiError::GateDenied(decision)),
    };
    let records = records
        .into_iter()
        .map(|record| {
            let (value, value_base64) = match std::str::from_utf8(&record.value) {
                Ok(text) => (Some(text.to_owned()), None),
                Err(_) => (None, Some(BASE64.encode(record.value.as_slice()))),
            };
            RecordView {
                id: record.id.to_string(),
                purpose: record.purpose,
                collected_at: rfc3339(record.collected_at),
                expires_at: rfc3339_opt(record.expires_at),
                value,
                value_base64,
            }
        })
        .collect();
    Ok(Json(RecordList {
        records,
        reasons: decision.codes().into_iter().map(str::to_owned).collect(),
    }))
}
