//! Operation logs: browsing and search history, device ids and IP addresses, stored
//! de-identified ([`custodia_vault::oplog`]): identifiers become keyed pseudonyms, addresses
//! their network, the time is coarsened as the category's `deidentify` says, free text is sealed.
//! Collecting passes the gate like any write (a service key must be bound to the purpose). The
//! answer shows the de-identified entry, never the raw input: pseudonyms, the network, the
//! coarsened time, and the names of the fields kept sealed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use custodia_core::SubjectId;
use custodia_vault::{Gated, OperationLogEntry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{instant, rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{ApiJson, Authenticated, PathParams};

/// One operation-log entry, raw. Field names are 1 to 64 bytes of `a-z`, `0-9` and `_`,
/// starting with a letter; at most 16 identifiers and 16 text fields.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteOperationLog {
    /// The category it is kept under, such as `user.behavior.search_history` or
    /// `system.operations.network_log`; its retention rule applies.
    pub category: String,
    /// The purpose it is collected for; it must cover the category.
    pub purpose: String,
    /// When the operation happened (RFC 3339), at most 5 minutes ahead of the server's clock.
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// What kind of operation (`page_view`, `search`, `login`), 1 to 64 bytes of `a-z`, `0-9`,
    /// `_`, `.` and `-`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub event: Option<String>,
    /// Identifiers by name (`device_id`, `account_id`), 1 to 512 bytes each: each is replaced by
    /// a keyed pseudonym.
    #[serde(default)]
    pub identifiers: BTreeMap<String, String>,
    /// The client's IPv4 or IPv6 address: only its /24 (IPv4) or /48 (IPv6) is kept.
    #[serde(default)]
    #[schema(example = "203.0.113.77")]
    pub ip_address: Option<String>,
    /// Free text by name (`query`, `url`), up to 8 KiB each and 32 KiB in all: kept, sealed.
    #[serde(default)]
    pub text: BTreeMap<String, String>,
}

/// The de-identified entry, without any raw value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeidentifiedView {
    /// When it happened, coarsened to `time_precision`.
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// `second`, `hour` or `day`: from the category's `deidentify` (none, `before_analysis`,
    /// `on_collection`).
    #[schema(example = "hour")]
    pub time_precision: String,
    /// A pseudonym per identifier, by name: the same identifier always gets the same one.
    pub pseudonyms: BTreeMap<String, String>,
    /// The client's network, such as `203.0.113.0/24`.
    pub ip_prefix: Option<String>,
    /// The fields kept as given and sealed (`event`, `text.<name>`); their values are not
    /// repeated here.
    pub sealed_fields: Vec<String>,
}

/// What was stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperationLogWritten {
    /// The record's id.
    pub id: String,
    /// The category's retention rule.
    pub rule: String,
    /// When it expires; `null` while its rule's trigger has not happened.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Kept through an erasure, storage-only (a statutory retention).
    pub statutory: bool,
    /// What the record holds.
    pub deidentified: DeidentifiedView,
}

/// Stores an operation-log entry of a subject, de-identified, if the gate allows collecting its
/// category for its purpose.
#[utoipa::path(
    post,
    path = "/v1/subjects/{id}/operation-logs",
    operation_id = "writeOperationLog",
    tag = "records",
    params(("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$")),
    request_body = WriteOperationLog,
    responses(
        (status = 201, description = "Stored, de-identified", body = OperationLogWritten),
        (status = 403, description = "The gate denied collecting it (`gate.denied`, with `details.reasons`)", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 422, description = "The body is invalid (`request.invalid_body`, or `vault.invalid` with `details.field`); errors name the field, never its value", body = ErrorBody),
    )
)]
pub async fn write(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiJson(body): ApiJson<WriteOperationLog>,
) -> Result<(StatusCode, Json<OperationLogWritten>), ApiError> {
    let subject: SubjectId = params.id("id")?;
    let occurred_at = instant("occurred_at", &body.occurred_at)?;
    let ip_address = body
        .ip_address
        .as_deref()
        .map(|text| {
            text.parse::<IpAddr>().map_err(|_| ApiError::InvalidBody {
                field: "ip_address".into(),
                reason: "not an IPv4 or IPv6 address".into(),
            })
        })
        .transpose()?;
    let entry = OperationLogEntry {
        category: body.category,
        purpose: body.purpose,
        occurred_at,
        event: body.event,
        identifiers: body.identifiers,
        ip_address,
        text: body.text,
    };
    let vault = state.vault().clone();
    let metrics = state.metrics().clone();
    let logged = blocking(move || {
        let gated = vault.ingest_operation_log(subject, &entry, &caller)?;
        match gated {
            Gated::Allowed { value, decision } => {
                metrics.observe_decisions([&decision]);
                Ok(value)
            }
            Gated::Denied(decision) => {
                metrics.observe_decisions([&decision]);
                Err(ApiError::GateDenied(decision))
            }
        }
    })
    .await?;
    let entry = logged.entry;
    let sealed_fields = entry
        .event
        .iter()
        .map(|_| "event".to_owned())
        .chain(entry.text.keys().map(|name| format!("text.{name}")))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(OperationLogWritten {
            id: logged.record.id.to_string(),
            rule: logged.record.rule,
            expires_at: rfc3339_opt(logged.record.expires_at),
            statutory: logged.record.statutory,
            deidentified: DeidentifiedView {
                occurred_at: rfc3339(entry.occurred_at),
                time_precision: entry.time_precision.as_str().to_owned(),
                pseudonyms: entry.pseudonyms,
                ip_prefix: entry.ip_prefix,
                sealed_fields,
            },
        }),
    ))
}
