//! [`ApiError`]: every way a request can fail, each with a stable code and an HTTP status, and the
//! one place where vault errors become HTTP answers. Every error is the JSON body
//! `{code, message, details}` ([`ErrorBody`]). Messages name fields, ids and policy keys; they
//! never repeat a value the request carried, which could be personal data.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custodia_gate::Decision;
use custodia_store::StoreError;
use custodia_vault::VaultError;
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `gate.denied` or `request.invalid_body`.
    #[schema(example = "gate.denied")]
    pub code: String,
    /// A sentence for people; it names fields, never their values.
    pub message: String,
    /// Structured context (the gate's reasons, the offending field, policy findings); an empty
    /// object when there is none.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    AuthMissing,
    /// The key is unknown, malformed, revoked or wrong (one answer for all).
    AuthInvalid,
    /// The route needs an admin key.
    AdminRequired,
    /// The gate denied the processing; nothing was read or written.
    GateDenied(Decision),
    /// The body is not JSON.
    MalformedJson,
    /// The body is JSON but does not fit the schema (unknown field, wrong type, missing field) or
    /// breaks a rule of the resource.
    InvalidBody {
        /// Where, as a path into the body (`requests[2].purpose`); `.` for the whole body.
        field: String,
        /// What is wrong, without the value.
        reason: String,
    },
    /// A batch is larger than the route allows.
    BatchTooLarge {
        /// The most items accepted.
        limit: usize,
    },
    /// The body's content type is missing or not the one the route takes.
    UnsupportedMediaType {
        /// The content type the route takes.
        expected: &'static str,
    },
    /// The body is over the size limit.
    TooLarge,
    /// The body is not UTF-8 where text is expected.
    InvalidEncoding,
    /// An id in the path is not an id of the expected kind.
    InvalidId {
        /// The path parameter.
        param: &'static str,
    },
    /// The query string does not fit the route's parameters.
    InvalidQuery,
    /// A request header the route reads is malformed.
    InvalidHeader {
        /// The header's name.
        name: &'static str,
    },
    /// No consent event with that id belongs to the subject.
    ConsentNotFound,
    /// No legal hold with that id.
    HoldNotFound,
    /// No such route.
    RouteNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// A vault error.
    Vault(VaultError),
    /// A failure of this process (a blocking task that did not finish).
    Internal,
}

impl From<VaultError> for ApiError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::Unauthorized => Self::AuthInvalid,
            other => Self::Vault(other),
        }
    }
}

fn store_status(err: &StoreError) -> StatusCode {
    match err {
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::SchemaTooNew { .. } | StoreError::Corrupt(_) | StoreError::Backend(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The HTTP status of a vault error: the single mapping from the domain to HTTP.
fn vault_status(err: &VaultError) -> StatusCode {
    match err {
        VaultError::UnknownCategory(_)
        | VaultError::UnknownPurpose(_)
        | VaultError::PurposeDoesNotCover { .. }
        | VaultError::Invalid { .. }
        | VaultError::Expiry { .. }
        | VaultError::PolicyNotClean { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        VaultError::SubjectNotFound(_)
        | VaultError::RecordNotFound(_)
        | VaultError::ConsentNotFound(_) => StatusCode::NOT_FOUND,
        VaultError::SubjectExists | VaultError::PolicyConflict(_) => StatusCode::CONFLICT,
        // Erased data is gone for good, which is what 410 says.
        VaultError::SubjectErased(_) | VaultError::KeyDestroyed(_) => StatusCode::GONE,
        VaultError::Unauthorized => StatusCode::UNAUTHORIZED,
        VaultError::PurposeNotBound(_) | VaultError::LeaseKeyRequired => StatusCode::FORBIDDEN,
        VaultError::MediaNotFound(_) => StatusCode::NOT_FOUND,
        VaultError::MediaGone(_) => StatusCode::GONE,
        VaultError::MediaTruncated { .. } | VaultError::MediaLengthMismatch { .. } => {
            StatusCode::BAD_REQUEST
        }
        VaultError::MediaDigestMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        VaultError::MediaRangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        VaultError::MediaLeased(_) | VaultError::LeaseExpired(_) | VaultError::LeaseNotHeld(_) => {
            StatusCode::CONFLICT
        }
        VaultError::NotificationNotFound(_) => StatusCode::NOT_FOUND,
        VaultError::NotificationSettled(..) => StatusCode::CONFLICT,
        VaultError::RequestNotFound(_) => StatusCode::NOT_FOUND,
        VaultError::RequestNotOffered(_)
        | VaultError::RequestDetails(_)
        | VaultError::RequestDeadline(_)
        | VaultError::CodeInvalid { .. }
        | VaultError::ExportOutputRequired(_) => StatusCode::UNPROCESSABLE_ENTITY,
        // A rejection without a reason, an extension without a notice: bad input.
        VaultError::RequestTransition(err)
            if matches!(
                err.code(),
                "request.reason_required" | "request.notice_required"
            ) =>
        {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        VaultError::RequestConflict(_)
        | VaultError::RequestTransition(_)
        | VaultError::NoCodePending => StatusCode::CONFLICT,
        // The code is gone for good (send another), and the code is locked, not the caller:
        // 429 would invite a retry that can never succeed (see `routes::requests`).
        VaultError::CodeExpired => StatusCode::GONE,
        VaultError::VerificationLocked => StatusCode::LOCKED,
        VaultError::MediaStoreMissing => StatusCode::SERVICE_UNAVAILABLE,
        VaultError::Objects(objects) => objects_status(objects),
        VaultError::Store(store) => store_status(store),
        VaultError::MediaCorrupt(_)
        | VaultError::MediaIo(_)
        | VaultError::ExportIo(_)
        | VaultError::Crypto(_)
        | VaultError::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn objects_status(err: &custodia_objects::ObjectError) -> StatusCode {
    use custodia_objects::ObjectError;
    match err {
        ObjectError::NotFound { .. } => StatusCode::GONE,
        ObjectError::InvalidRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        ObjectError::Source(_) => StatusCode::BAD_REQUEST,
        ObjectError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn vault_details(err: &VaultError) -> Value {
    match err {
        VaultError::UnknownCategory(category) => json!({ "category": category }),
        VaultError::UnknownPurpose(purpose) => json!({ "purpose": purpose }),
        VaultError::PurposeDoesNotCover { purpose, category } => {
            json!({ "purpose": purpose, "category": category })
        }
        VaultError::Invalid { field, .. } => json!({ "field": field }),
        VaultError::PolicyNotClean { findings } => json!({ "findings": findings }),
        VaultError::PolicyConflict(version) => json!({ "version": version }),
        VaultError::PurposeNotBound(purpose) => json!({ "purpose": purpose }),
        VaultError::MediaNotFound(id)
        | VaultError::MediaGone(id)
        | VaultError::MediaLeased(id)
        | VaultError::MediaCorrupt(id) => json!({ "media": id.to_string() }),
        VaultError::NotificationNotFound(id) => json!({ "notification": id.to_string() }),
        VaultError::NotificationSettled(id, state) => {
            json!({ "notification": id.to_string(), "state": state })
        }
        VaultError::MediaTruncated { received } => json!({ "received": received }),
        VaultError::MediaLengthMismatch { expected } => json!({ "expected": expected }),
        VaultError::MediaRangeNotSatisfiable { size } => json!({ "size": size }),
        VaultError::LeaseExpired(id) | VaultError::LeaseNotHeld(id) => {
            json!({ "lease": id.to_string() })
        }
        VaultError::RequestNotFound(id) | VaultError::RequestConflict(id) => {
            json!({ "request": id.to_string() })
        }
        VaultError::RequestNotOffered(kind) | VaultError::ExportOutputRequired(kind) => {
            json!({ "kind": kind })
        }
        VaultError::RequestTransition(custodia_requests::TransitionError::Invalid { from, to }) => {
            json!({ "from": from.as_str(), "to": to.as_str() })
        }
        VaultError::RequestTransition(custodia_requests::TransitionError::AlreadyClosed {
            state,
        }) => json!({ "state": state.as_str() }),
        VaultError::CodeInvalid { attempts_left } => json!({ "attempts_left": attempts_left }),
        _ => Value::Object(Map::new()),
    }
}

impl ApiError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AuthMissing => "auth.missing",
            Self::AuthInvalid => "auth.invalid_key",
            Self::AdminRequired => "auth.admin_required",
            Self::GateDenied(_) => "gate.denied",
            Self::MalformedJson => "request.malformed_json",
            Self::InvalidBody { .. } => "request.invalid_body",
            Self::BatchTooLarge { .. } => "request.batch_too_large",
            Self::UnsupportedMediaType { .. } => "request.unsupported_media_type",
            Self::TooLarge => "request.too_large",
            Self::InvalidEncoding => "request.invalid_encoding",
            Self::InvalidId { .. } => "request.invalid_id",
            Self::InvalidQuery => "request.invalid_query",
            Self::InvalidHeader { .. } => "request.invalid_header",
            Self::ConsentNotFound => "consent.not_found",
            Self::HoldNotFound => "hold.not_found",
            Self::RouteNotFound => "route.not_found",
            Self::MethodNotAllowed => "route.method_not_allowed",
            Self::Vault(err) => err.code(),
            Self::Internal => "server.internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::AuthMissing | Self::AuthInvalid => StatusCode::UNAUTHORIZED,
            Self::AdminRequired | Self::GateDenied(_) => StatusCode::FORBIDDEN,
            Self::MalformedJson
            | Self::InvalidEncoding
            | Self::InvalidId { .. }
            | Self::InvalidQuery
            | Self::InvalidHeader { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidBody { .. } | Self::BatchTooLarge { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ConsentNotFound | Self::HoldNotFound | Self::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Vault(err) => vault_status(err),
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::AuthMissing => "send an API key as `Authorization: Bearer <token>`".into(),
            Self::AuthInvalid => "invalid or revoked API key".into(),
            Self::AdminRequired => "this route needs an admin key".into(),
            Self::GateDenied(_) => "the gate denied this processing; see `details.reasons`".into(),
            Self::MalformedJson => "the body is not valid JSON".into(),
            Self::InvalidBody { field, reason } => format!("invalid body at `{field}`: {reason}"),
            Self::BatchTooLarge { limit } => format!("a batch holds at most {limit} items"),
            Self::UnsupportedMediaType { expected } => {
                format!("send the body as `Content-Type: {expected}`")
            }
            Self::TooLarge => "the body is larger than this server accepts".into(),
            Self::InvalidEncoding => "the body is not UTF-8 text".into(),
            Self::InvalidId { param } => format!("`{param}` is not a valid id"),
            Self::InvalidQuery => "the query string does not match this route's parameters".into(),
            Self::InvalidHeader { name } => format!("the `{name}` header is malformed"),
            Self::ConsentNotFound => "no such consent event for this subject".into(),
            Self::HoldNotFound => "no such legal hold".into(),
            Self::RouteNotFound => "no such route".into(),
            Self::MethodNotAllowed => "this route does not take this method".into(),
            // A backend's or cipher's own text could name internals, or quote what it was given;
            // the code is enough to act on.
            Self::Vault(
                err @ (VaultError::Store(_) | VaultError::Crypto(_) | VaultError::Audit(_)),
            ) => format!("the request could not be completed ({})", err.code()),
            Self::Vault(err) => err.to_string(),
            Self::Internal => "the request could not be completed".into(),
        }
    }

    fn details(&self) -> Value {
        match self {
            Self::GateDenied(decision) => json!({
                "reasons": decision.codes(),
                "decision": { "allowed": decision.allowed, "reasons": decision.codes() },
            }),
            Self::InvalidBody { field, .. } => json!({ "field": field }),
            Self::BatchTooLarge { limit } => json!({ "limit": limit }),
            Self::UnsupportedMediaType { expected } => json!({ "expected": expected }),
            Self::InvalidId { param } => json!({ "param": param }),
            Self::InvalidHeader { name } => json!({ "header": name }),
            Self::Vault(err) => vault_details(err),
            _ => Value::Object(Map::new()),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            message: self.message(),
            details: self.details(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The code only: a backend's own text could quote what it was given.
            tracing::error!(target: "custodia::http", code = self.code(), "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Runs a vault call on the blocking pool (the stores are synchronous, and a request must not
/// hold an async worker while SQLite or PostgreSQL answers).
pub async fn blocking<T, F>(call: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|_| ApiError::Internal)?
}
