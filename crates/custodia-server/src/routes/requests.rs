//! Data-subject requests (admin keys only): received from the operator's privacy centre or
//! support desk, verified, worked and answered by the vault under the law's deadlines.
//!
//! - `POST /v1/requests` opens one (`{subject, kind, details?}`): 201 with its law, due dates and
//!   excessive-request flags;
//! - `GET /v1/requests` lists the queue, earliest due first, each with its urgency
//!   (`overdue`, `due_soon` with `days_left`, `on_track`); `GET /v1/requests/{id}` shows one,
//!   its sealed details only with `?details=true` (decrypted, and the read audited);
//! - `POST /v1/requests/{id}/verification` sends a one-time code to the subject through the
//!   outbox (202); `POST /v1/requests/{id}/verify` checks it;
//! - `POST /v1/requests/{id}/actions` starts, rejects (with a reason), extends (with the notice
//!   sent to the subject) or records an identity verified another way;
//! - `POST /v1/requests/{id}/fulfil` answers it: a JSON report for every kind but access, copy
//!   and portability, whose answer is the export itself, a zip streamed back;
//! - `GET /v1/requests/{id}/notifications` lists the request's outbox messages (verification
//!   codes, extension and erasure notices) with their delivery state, never their payloads.
//!
//! Nothing here answers with a verification code or, unless asked with `?details=true`, with
//! what the requester asked: the views carry states, dates, flags and counts.
//!
//! **Errors** (stable codes, one mapping in [`crate::error`]): `request.not_found` 404;
//! `request.not_offered`, `request.invalid_details`, `calendar.year_not_published` and the other
//! `deadline.*` codes 422; `request.invalid_transition`, `request.already_closed`,
//! `request.conflict` (a lost race: read it again) and `request.no_code_pending` 409;
//! `request.code_invalid` 422 (with `details.attempts_left`: the code was wrong, the body was
//! fine); `request.code_expired` 410 (that code is gone for good: send another);
//! `request.verification_locked` 423 (the code, not the caller, is locked, until a new one is
//! sent; 429 would invite a retry that can never succeed).
//!
//! **The export streams.** The archive goes from the vault to the connection in 256 KiB frames
//! as it is written (the zip is written front to back, sizes and CRCs in data descriptors), so
//! no decrypted copy touches a disk and memory stays flat whatever the size. An error before the
//! first frame is an ordinary JSON error; one after it breaks the body off (the client sees a
//! truncated transfer, never a complete-looking archive) and leaves the request in progress, to
//! be fulfilled again, as does a client that goes away. The answer is chunked: its length is not
//! known until the last media object is written.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custodia_core::{RequestId, SubjectId};
use custodia_requests::{Action, RequestKind, RequestState, Urgency};
use custodia_vault::{FulfilmentReport, RequestQuery};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::notifications::{self, NotificationView};
use super::{rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{Admin, ApiJson, ApiQuery, PathParams};

/// The most requests one listing returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// Requests a listing returns when it names no limit.
pub const DEFAULT_LIST_LIMIT: usize = 1_000;

/// Bytes per frame of a streamed export.
const EXPORT_FRAME: usize = 256 * 1024;

/// Frames in flight between the export and the connection.
const CHANNEL_FRAMES: usize = 4;

/// A request to open.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// Whose request it is.
    #[schema(value_type = String, pattern = "^sub_[0-9a-fA-F]{32}$")]
    pub subject: SubjectId,
    /// What is asked: `access`, `copy`, `portability`, `rectification`, `erasure`,
    /// `restriction`, `objection`, `consent_withdrawal`, `account_cancellation` or
    /// `explanation`; the policy's `[rights].offered` must offer it.
    #[schema(value_type = String, example = "access")]
    pub kind: RequestKind,
    /// What the requester asked, by kind (stored sealed under the subject's key): for a
    /// rectification `{"profile": {jurisdiction, birth_date, age_band}, "records": [{"id",
    /// "value" | "value_base64"}]}`; for an objection, a consent withdrawal or an explanation
    /// `{"purposes": [...], "reason": "..."}`; anything else takes `{}` or free fields.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// A pending verification code: its status, never the code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerificationView {
    /// When it was sent.
    #[schema(format = DateTime)]
    pub issued_at: String,
    /// When it stops being accepted.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Wrong tries so far.
    pub attempts: u32,
    /// Locked by too many wrong tries: send a new code.
    pub locked: bool,
}

/// A data-subject request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestView {
    /// The request's id.
    #[schema(example = "req_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// Whose.
    pub subject: String,
    /// What is asked.
    #[schema(example = "access")]
    pub kind: String,
    /// `received`, `awaiting_verification`, `verified`, `in_progress`,
    /// `waiting_on_recipients`, `extended`, `fulfilled` or `rejected`.
    #[schema(example = "received")]
    pub state: String,
    /// The law whose deadlines apply (`PIPL`, `GDPR`, `CCPA`).
    #[schema(example = "PIPL")]
    pub law: String,
    /// When it was received; the deadlines run from here.
    #[schema(format = DateTime)]
    pub received_at: String,
    /// When receipt must be confirmed (CCPA).
    #[schema(format = DateTime)]
    pub acknowledge_by: Option<String>,
    /// The last instant it is answered in time (the end of the due day in the law's calendar).
    #[schema(format = DateTime)]
    pub due_at: String,
    /// The due date before an extension.
    #[schema(format = DateTime)]
    pub original_due_at: Option<String>,
    /// `overdue`, `due_soon` or `on_track` now; `null` once closed.
    #[schema(example = "due_soon")]
    pub urgency: Option<String>,
    /// Whole days left when `due_soon` (0: due today).
    pub days_left: Option<u32>,
    /// Repeated or excessive-request flags raised on receipt (`ccpa.more_than_two_in_12_months`,
    /// `gdpr.repeated_request`).
    pub flags: Vec<String>,
    /// The pending verification code's status, if one is pending.
    pub verification: Option<VerificationView>,
    /// When it last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// When it was fulfilled or rejected.
    #[schema(format = DateTime)]
    pub closed_at: Option<String>,
    /// Bumped by every change.
    pub version: u64,
    /// What was asked and the operator's words about it (rejection reason, extension notice,
    /// the answer): only with `?details=true`, and `null` once the subject is erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl RequestView {
    fn of(request: custodia_vault::RequestView, with_details: bool) -> Self {
        let details = with_details.then(|| {
            request
                .details
                .as_ref()
                .and_then(|details| serde_json::to_value(details).ok())
                .unwrap_or(Value::Null)
        });
        Self {
            id: request.id.to_string(),
            subject: request.subject.to_string(),
            kind: request.kind.as_str().to_owned(),
            state: request.state.as_str().to_owned(),
            law: request.law.name().to_owned(),
            received_at: rfc3339(request.received_at),
            acknowledge_by: rfc3339_opt(request.acknowledge_by),
            due_at: rfc3339(request.due_at),
            original_due_at: rfc3339_opt(request.original_due_at),
            urgency: request.urgency.map(|u| u.as_str().to_owned()),
            days_left: match request.urgency {
                Some(Urgency::DueWithin(days)) => Some(days),
                _ => None,
            },
            flags: request.flags,
            verification: request.verification.map(|v| VerificationView {
                issued_at: rfc3339(v.issued_at),
                expires_at: rfc3339(v.expires_at),
                attempts: v.attempts,
                locked: v.locked,
            }),
            updated_at: rfc3339(request.updated_at),
            closed_at: rfc3339_opt(request.closed_at),
            version: request.version,
            details,
        }
    }
}

/// The queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestList {
    /// The requests, earliest due first.
    pub requests: Vec<RequestView>,
}

/// Which requests to list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only in this state (`received`, `awaiting_verification`, `verified`, `in_progress`,
    /// `waiting_on_recipients`, `extended`, `fulfilled`, `rejected`).
    #[serde(default)]
    #[param(value_type = Option<String>, example = "received")]
    pub status: Option<RequestState>,
    /// Only those due at or before this instant (RFC 3339 with a time and an offset).
    #[serde(default)]
    #[param(format = DateTime)]
    pub due_before: Option<String>,
    /// Only those due within this many days, overdue ones included; also the window in which a
    /// request is `due_soon` (3 days when absent).
    #[serde(default)]
    #[param(maximum = 3660)]
    pub due_within_days: Option<u32>,
    /// Only this subject's.
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^sub_[0-9a-fA-F]{32}$")]
    pub subject: Option<SubjectId>,
    /// Only open ones (not fulfilled or rejected); all when absent.
    #[serde(default)]
    pub open: Option<bool>,
    /// At most this many (1 to 10000; 1000 when absent).
    #[serde(default)]
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Whether to show a request's sealed details.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Decrypt and show what was asked (the read is audited).
    #[serde(default)]
    pub details: Option<bool>,
}

/// A verification code as the requester gave it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCode {
    /// The six digits sent to the subject.
    #[schema(example = "123456", pattern = "^[0-9]{6}$")]
    pub code: String,
}

/// What the operator does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    /// Start the work (from `verified` or `extended`).
    Start,
    /// Refuse it, with a `reason` told to the requester.
    Reject,
    /// Extend the deadline as far as the law allows, with the `notice` sent to the requester
    /// (before the original due date; PIPL allows none).
    Extend,
    /// Record that the requester's identity was verified another way (a signed-in session),
    /// from `received`.
    Verify,
}

/// An action on a request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestAction {
    /// What to do.
    pub action: ActionName,
    /// Why it is rejected (with `reject` only), 1 to 4000 characters; stored sealed.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub reason: Option<String>,
    /// The notice sent to the requester (with `extend` only), 1 to 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub notice: Option<String>,
}

impl RequestAction {
    fn into_action(self) -> Result<Action, ApiError> {
        let stray = |field: &str| ApiError::InvalidBody {
            field: field.to_owned(),
            reason: format!("not taken by `{}`", self.name()),
        };
        match self.action {
            ActionName::Reject if self.notice.is_some() => Err(stray("notice")),
            ActionName::Extend if self.reason.is_some() => Err(stray("reason")),
            ActionName::Start | ActionName::Verify if self.reason.is_some() => Err(stray("reason")),
            ActionName::Start | ActionName::Verify if self.notice.is_some() => Err(stray("notice")),
            ActionName::Start => Ok(Action::Start),
            ActionName::Verify => Ok(Action::Verify),
            ActionName::Reject => Ok(Action::Reject {
                reason: self.reason.unwrap_or_default(),
            }),
            ActionName::Extend => Ok(Action::Extend {
                notice: self.notice.unwrap_or_default(),
            }),
        }
    }

    fn name(&self) -> &'static str {
        match self.action {
            ActionName::Start => "start",
            ActionName::Reject => "reject",
            ActionName::Extend => "extend",
            ActionName::Verify => "verify",
        }
    }
}

/// One file of an export.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportedFileView {
    /// Its path in the archive.
    pub name: String,
    /// Its length, uncompressed.
    pub bytes: u64,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
}

/// What an export held (for exports made by this fulfilment).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportSummary {
    /// The archive format (`custodia-export/1`).
    pub format: String,
    /// When it was made.
    #[schema(format = DateTime)]
    pub generated_at: String,
    /// Item counts by kind (records, consents, receipts, media, media_bytes, disclosures, ...).
    #[schema(value_type = Object)]
    pub counts: Value,
    /// Every file but the manifest.
    pub files: Vec<ExportedFileView>,
}

/// What fulfilling a request did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FulfilmentView {
    /// The request after it: `fulfilled`, or `waiting_on_recipients` while the recipients of an
    /// erased subject's data have not all acknowledged.
    pub request: RequestView,
    /// Data keys destroyed (erasure).
    pub keys_destroyed: Option<usize>,
    /// The notices queued to recipients (erasure, account cancellation, rectification,
    /// restriction); follow them at `GET /v1/requests/{id}/notifications`.
    pub notices: Vec<String>,
    /// The consent-ledger events appended (restriction, objection, consent withdrawal).
    pub consent_events: Vec<String>,
    /// What a rectification changed: `profile.<field>` and record ids.
    pub rectified: Vec<String>,
    /// The explanation of the automated decisions that apply (explanation).
    #[schema(value_type = Option<Object>)]
    pub explanation: Option<Value>,
    /// The export's summary (never set here: an export's answer is the archive).
    pub export: Option<ExportSummary>,
}

impl From<FulfilmentReport> for FulfilmentView {
    fn from(report: FulfilmentReport) -> Self {
        Self {
            request: RequestView::of(report.request, false),
            keys_destroyed: report.keys_destroyed,
            notices: report.notices.iter().map(ToString::to_string).collect(),
            consent_events: report
                .consent_events
                .iter()
                .map(ToString::to_string)
                .collect(),
            rectified: report.rectified,
            explanation: report.explanation,
            export: report.export.map(|manifest| ExportSummary {
                counts: serde_json::to_value(&manifest.counts).unwrap_or(Value::Null),
                format: manifest.format,
                generated_at: manifest.generated_at,
                files: manifest
                    .files
                    .into_iter()
                    .map(|file| ExportedFileView {
                        name: file.name,
                        bytes: file.bytes,
                        sha256: file.sha256,
                    })
                    .collect(),
            }),
        }
    }
}

/// A request's outbox messages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestNotifications {
    /// In the order they were queued; payloads are never shown.
    pub notifications: Vec<NotificationView>,
}

fn request_id(params: &PathParams) -> Result<RequestId, ApiError> {
    params.id("id")
}

/// Opens a data-subject request (admin keys only): the law from the subject's jurisdiction, due
/// dates from the policy's promise and the law's calendar, flags for repeated requests.
#[utoipa::path(
    post,
    path = "/v1/requests",
    operation_id = "openRequest",
    tag = "requests",
    request_body = OpenRequest,
    responses(
        (status = 201, description = "Received", body = RequestView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such subject (`vault.subject_not_found`)", body = ErrorBody),
        (status = 410, description = "The subject was erased (`vault.subject_erased`)", body = ErrorBody),
        (status = 422, description = "An unknown kind (`request.invalid_body`, `details.field = kind`), a right the policy does not offer (`request.not_offered`), details that do not fit the kind (`request.invalid_details`, `vault.unknown_purpose`, `vault.record_not_found`, `vault.invalid`), or a due date the calendar cannot give (`calendar.year_not_published`); nothing is stored", body = ErrorBody),
    )
)]
pub async fn open(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<OpenRequest>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let vault = state.vault().clone();
    let request = blocking(move || {
        Ok(vault.open_request(
            body.subject,
            body.kind,
            body.details.unwrap_or(Value::Null),
            &admin.actor(),
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(RequestView::of(request, false))))
}

/// The request queue (admin keys only), earliest due first, each with its urgency now.
#[utoipa::path(
    get,
    path = "/v1/requests",
    operation_id = "listRequests",
    tag = "requests",
    params(ListQuery),
    responses(
        (status = 200, description = "The requests, earliest due first", body = RequestList),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ServerState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let due_before = query
        .due_before
        .as_deref()
        .map(|text| {
            text.contains(['T', 't'])
                .then(|| custodia_core::Timestamp::parse(text).ok())
                .flatten()
                .ok_or(ApiError::InvalidQuery)
        })
        .transpose()?;
    let limit = match query.limit {
        None => DEFAULT_LIST_LIMIT,
        Some(limit @ 1..=MAX_LIST_LIMIT) => limit,
        Some(_) => return Err(ApiError::InvalidQuery),
    };
    if query.due_within_days.is_some_and(|days| days > 3660) {
        return Err(ApiError::InvalidQuery);
    }
    let filter = RequestQuery {
        state: query.status,
        subject: query.subject,
        open_only: query.open.unwrap_or(false),
        due_within_days: query.due_within_days,
        due_before,
        limit,
    };
    let vault = state.vault().clone();
    let requests = blocking(move || Ok(vault.requests(&filter)?)).await?;
    Ok(Json(RequestList {
        requests: requests
            .into_iter()
            .map(|request| RequestView::of(request, false))
            .collect(),
    }))
}

/// One request (admin keys only); with `?details=true` its sealed details are decrypted and the
/// read is audited.
#[utoipa::path(
    get,
    path = "/v1/requests/{id}",
    operation_id = "showRequest",
    tag = "requests",
    params(
        ("id" = String, Path, description = "The request's id", pattern = "^req_[0-9a-fA-F]{32}$"),
        ShowQuery,
    ),
    responses(
        (status = 200, description = "The request", body = RequestView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such request (`request.not_found`)", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
    ApiQuery(query): ApiQuery<ShowQuery>,
) -> Result<Json<RequestView>, ApiError> {
    let id = request_id(&params)?;
    let with_details = query.details.unwrap_or(false);
    let vault = state.vault().clone();
    let request = blocking(move || {
        Ok(if with_details {
            vault.read_request(id, &admin.actor())?
        } else {
            vault.request(id)?
        })
    })
    .await?;
    Ok(Json(RequestView::of(request, with_details)))
}

/// Sends the subject a new one-time code through the outbox (admin keys only): the request
/// awaits verification; a pending code, locked or expired or not, is replaced. The code goes to
/// the subject's channel only and is never shown here.
#[utoipa::path(
    post,
    path = "/v1/requests/{id}/verification",
    operation_id = "sendVerificationCode",
    tag = "requests",
    params(("id" = String, Path, description = "The request's id", pattern = "^req_[0-9a-fA-F]{32}$")),
    responses(
        (status = 202, description = "A code is queued for delivery", body = RequestView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such request (`request.not_found`)", body = ErrorBody),
        (status = 409, description = "Past verification (`request.invalid_transition`) or closed (`request.already_closed`)", body = ErrorBody),
        (status = 410, description = "The subject was erased (`vault.subject_erased`)", body = ErrorBody),
    )
)]
pub async fn send_verification(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let id = request_id(&params)?;
    let vault = state.vault().clone();
    let request = blocking(move || Ok(vault.send_verification(id, &admin.actor())?)).await?;
    Ok((StatusCode::ACCEPTED, Json(RequestView::of(request, false))))
}

/// Checks the code the requester gave (admin keys only): right, the request is verified.
#[utoipa::path(
    post,
    path = "/v1/requests/{id}/verify",
    operation_id = "verifyRequest",
    tag = "requests",
    params(("id" = String, Path, description = "The request's id", pattern = "^req_[0-9a-fA-F]{32}$")),
    request_body = VerifyCode,
    responses(
        (status = 200, description = "Verified", body = RequestView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such request (`request.not_found`)", body = ErrorBody),
        (status = 409, description = "No code pending (`request.no_code_pending`), or past verification (`request.invalid_transition`, `request.already_closed`)", body = ErrorBody),
        (status = 410, description = "The code expired (`request.code_expired`): send a new one", body = ErrorBody),
        (status = 422, description = "The code is wrong (`request.code_invalid`, with `details.attempts_left`)", body = ErrorBody),
        (status = 423, description = "Too many wrong codes (`request.verification_locked`): send a new one", body = ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
    ApiJson(body): ApiJson<VerifyCode>,
) -> Result<Json<RequestView>, ApiError> {
    let id = request_id(&params)?;
    let vault = state.vault().clone();
    let request =
        blocking(move || Ok(vault.verify_request(id, &body.code, &admin.actor())?)).await?;
    Ok(Json(RequestView::of(request, false)))
}

/// Starts, rejects, extends a request, or records its requester verified another way (admin
/// keys only). Every transition is audited; a rejection's reason and an extension's notice are
/// sealed, and the notice goes to the subject through the outbox.
#[utoipa::path(
    post,
    path = "/v1/requests/{id}/actions",
    operation_id = "actOnRequest",
    tag = "requests",
    params(("id" = String, Path, description = "The request's id", pattern = "^req_[0-9a-fA-F]{32}$")),
    request_body = RequestAction,
    responses(
        (status = 200, description = "Done", body = RequestView),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such request (`request.not_found`)", body = ErrorBody),
        (status = 409, description = "The state machine refuses it (`request.invalid_transition`, `request.already_closed`), or another caller changed it first (`request.conflict`)", body = ErrorBody),
        (status = 422, description = "No reason or notice (`request.reason_required`, `request.notice_required`), too long (`vault.invalid`), or an extension the law does not allow (`deadline.not_extendable`, `deadline.extension_too_late`)", body = ErrorBody),
    )
)]
pub async fn act(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
    ApiJson(body): ApiJson<RequestAction>,
) -> Result<Json<RequestView>, ApiError> {
    let id = request_id(&params)?;
    let action = body.into_action()?;
    let vault = state.vault().clone();
    let request = blocking(move || Ok(vault.act_on_request(id, &action, &admin.actor())?)).await?;
    Ok(Json(RequestView::of(request, false)))
}

/// Fulfils a verified (or extended, or interrupted) request (admin keys only). Access, copy and
/// portability are answered with the export itself: a zip of everything held about the subject
/// (`manifest.json` last), streamed; the request is fulfilled once it is written. Every other
/// kind answers with what was done; an erasure or a cancellation whose subject's data went to
/// recipients waits on them (`waiting_on_recipients`) until each acknowledges.
#[utoipa::path(
    post,
    path = "/v1/requests/{id}/fulfil",
    operation_id = "fulfilRequest",
    tag = "requests",
    params(("id" = String, Path, description = "The request's id", pattern = "^req_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "Fulfilled, or waiting on recipients: the report (JSON), or for access, copy and portability the export (`application/zip`, `Content-Disposition: attachment; filename=\"custodia-export-<id>.zip\"`)",
            content(
                (FulfilmentView = "application/json"),
                (Vec<u8> = "application/zip"),
            )),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such request (`request.not_found`)", body = ErrorBody),
        (status = 409, description = "Not verified yet or waiting on recipients (`request.invalid_transition`), closed (`request.already_closed`), or being fulfilled by another caller (`request.conflict`)", body = ErrorBody),
        (status = 410, description = "The subject was erased (`vault.subject_erased`)", body = ErrorBody),
        (status = 503, description = "Media to export but no media store (`media.store_missing`)", body = ErrorBody),
    )
)]
pub async fn fulfil(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
) -> Response {
    let id = match request_id(&params) {
        Ok(id) => id,
        Err(error) => return error.into_response(),
    };
    let vault = state.vault().clone();
    let (frames, mut rx) = mpsc::channel(CHANNEL_FRAMES);
    let mut work = tokio::task::spawn_blocking(move || {
        let kind = vault.request(id)?.kind;
        if !kind.is_access_like() {
            let report = vault.fulfil_request(id, &admin.actor())?;
            return Ok(Some(Box::new(FulfilmentView::from(report))));
        }
        let mut out = FrameWriter {
            frames,
            pending: Vec::with_capacity(EXPORT_FRAME),
            sent: false,
        };
        let done = vault
            .fulfil_export_request(id, &mut out, &admin.actor())
            .map_err(ApiError::from)
            .and_then(|_| out.send_pending().map_err(|_| ApiError::Internal));
        if let Err(error) = done {
            if out.sent {
                // The answer has begun: all that is left is to break it off, so the client
                // sees an incomplete body, never a complete-looking archive.
                tracing::warn!(target: "custodia::requests", code = error.code(), "export failed mid-stream; dropping the connection");
                let _ = out
                    .frames
                    .blocking_send(Err(io::Error::other(error.code())));
            }
            return Err(error);
        }
        Ok(None)
    });
    // Whichever comes first: the export's first frame (answer 200 and stream the rest as it is
    // written), or the end of the work (a report, an error before any byte of an export, which
    // can still be a JSON error, or an export small enough to be all queued already). The
    // work queues frames before it ends, so polling the frames first sees them whenever the
    // work is done.
    tokio::select! {
        biased;
        Some(first) = rx.recv() => export_response(id, first, rx),
        done = &mut work => match done {
            Ok(Ok(Some(report))) => Json(*report).into_response(),
            Ok(Ok(None)) => match rx.try_recv() {
                Ok(first) => export_response(id, first, rx),
                Err(_) => ApiError::Internal.into_response(),
            },
            Ok(Err(error)) => error.into_response(),
            Err(_) => ApiError::Internal.into_response(),
        },
    }
}

/// The export as it is written: whole frames sent to the response as they fill, so the archive
/// goes from the vault to the connection without a copy anywhere else. A full channel blocks
/// the writer (the client sets the pace); a closed one (the client went away) fails it, and
/// the request stays in progress, to be fulfilled again.
struct FrameWriter {
    frames: mpsc::Sender<Result<Bytes, io::Error>>,
    pending: Vec<u8>,
    sent: bool,
}

impl FrameWriter {
    fn send_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frame = std::mem::replace(&mut self.pending, Vec::with_capacity(EXPORT_FRAME));
        self.sent = true;
        self.frames
            .blocking_send(Ok(Bytes::from(frame)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = EXPORT_FRAME.saturating_sub(self.pending.len());
        let taken = buf.len().min(room);
        self.pending
            .extend_from_slice(buf.get(..taken).unwrap_or_default());
        if self.pending.len() >= EXPORT_FRAME {
            self.send_pending()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The export's frames, as a response body.
struct ExportBody {
    first: Option<Result<Bytes, io::Error>>,
    frames: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl futures_core::Stream for ExportBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        self.frames.poll_recv(cx)
    }
}

/// The export as a streamed zip attachment, starting with `first`.
fn export_response(
    id: RequestId,
    first: Result<Bytes, io::Error>,
    frames: mpsc::Receiver<Result<Bytes, io::Error>>,
) -> Response {
    let body = ExportBody {
        first: Some(first),
        frames,
    };
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"custodia-export-{id}.zip\""
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    // Personal data: no cache keeps a copy, and no browser guesses another type.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A request's outbox messages with their delivery state (admin keys only): verification codes,
/// extension notices, and the recipient notices a request waits on. Never their payloads.
#[utoipa::path(
    get,
    path = "/v1/requests/{id}/notifications",
    operation_id = "listRequestNotifications",
    tag = "requests",
    params(("id" = String, Path, description = "The request's id", pattern = "^req_[0-9a-fA-F]{32}$")),
    responses(
        (status = 200, description = "The notifications, in the order queued", body = RequestNotifications),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such request (`request.not_found`)", body = ErrorBody),
    )
)]
pub async fn notifications(
    State(state): State<ServerState>,
    _admin: Admin,
    params: PathParams,
) -> Result<Json<RequestNotifications>, ApiError> {
    let id = request_id(&params)?;
    let vault = state.vault().clone();
    let statuses = blocking(move || {
        vault.request(id)?;
        Ok(vault.request_notifications(id)?)
    })
    .await?;
    Ok(Json(RequestNotifications {
        notifications: statuses.into_iter().map(notifications::view).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(json: &str) -> Result<Action, ApiError> {
        crate::extract::decode_json::<RequestAction>(json.as_bytes())?.into_action()
    }

    #[test]
    fn actions_take_only_their_own_text() {
        assert_eq!(action(r#"{"action":"start"}"#).ok(), Some(Action::Start));
        assert_eq!(
            action(r#"{"action":"reject","reason":"excessive"}"#).ok(),
            Some(Action::Reject {
                reason: "excessive".into()
            })
        );
        assert_eq!(
            action(r#"{"action":"extend","notice":"complex"}"#).ok(),
            Some(Action::Extend {
                notice: "complex".into()
            })
        );
        for bad in [
            r#"{"action":"start","reason":"x"}"#,
            r#"{"action":"extend","reason":"x"}"#,
            r#"{"action":"reject","notice":"x"}"#,
            r#"{"action":"fulfil"}"#,
            r#"{"action":"start","extra":1}"#,
        ] {
            assert_eq!(
                action(bad).err().map(|e| e.code()),
                Some("request.invalid_body"),
                "{bad}"
            );
        }
    }
}
