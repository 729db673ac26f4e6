//! Request extractors whose every rejection is an [`ApiError`] with a stable code: JSON bodies
//! (content type, size, syntax, schema), TOML bodies, ids in the path, query strings, and the
//! authenticated caller. Rejections name the offending field, never its value: serde's own
//! messages quote the input, so they are not passed on.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use custodia_vault::Caller;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Whether the request's content type is `expected` (parameters such as `charset` allowed).
fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// The body's bytes, after its content type is checked and within the body limit; a body that
/// cannot be read whole (the client went away mid-way) is `unreadable`.
async fn body_of<S: Send + Sync>(
    req: Request,
    state: &S,
    expected: &'static str,
    unreadable: fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    if !content_type_is(req.headers(), expected) {
        return Err(ApiError::UnsupportedMediaType { expected });
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            unreadable()
        }
    })
}

/// What kind of schema mismatch serde reported, without its text (which quotes the input).
fn mismatch(message: &str) -> &'static str {
    if message.starts_with("unknown field") {
        "unknown field"
    } else if message.starts_with("missing field") {
        "a required field is missing"
    } else if message.starts_with("invalid type") {
        "wrong type"
    } else if message.starts_with("unknown variant") {
        "not one of the accepted values"
    } else if message.starts_with("invalid length") {
        "wrong number of items"
    } else if message.starts_with("data did not match any variant") {
        "matches none of the accepted shapes"
    } else {
        "invalid value"
    }
}

fn schema_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let field = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody {
            field,
            reason: mismatch(&inner.to_string()).to_owned(),
        },
        _ => ApiError::MalformedJson,
    }
}

/// Decodes a JSON body into `T`, telling malformed JSON (400) from JSON that does not fit (422).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde lets a struct be read from an array of its fields in order; every body here is an
    // object with named fields, and a positional one is a client bug, not an alternative shape.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .map_err(|_| ApiError::MalformedJson)?;
        return Err(ApiError::InvalidBody {
            field: ".".to_owned(),
            reason: "wrong type: the body must be a JSON object".to_owned(),
        });
    }
    // Most bodies fit: decode them directly. Tracking the path of every field costs a good part
    // of the decoding, and is only needed to name the field of an error, so a body that does not
    // decode is decoded again with tracking (the same input gives the same error).
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(schema_error)?;
    // Trailing bytes after the document make it malformed, not a second document.
    deserializer.end().map_err(|_| ApiError::MalformedJson)?;
    Ok(value)
}

/// Decodes an already parsed JSON value into `T` (for bodies of several shapes, told apart by
/// a key, so each shape's errors can name their field).
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(schema_error)
}

/// A JSON body (`Content-Type: application/json`) decoded into `T`, which should deny unknown
/// fields.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_of(req, state, "application/json", || ApiError::MalformedJson).await?;
        decode_json(&bytes).map(Self)
    }
}

/// A TOML document sent as `Content-Type: application/toml`, as UTF-8 text (parsed by the vault).
#[derive(Debug, Clone)]
pub struct TomlText(pub String);

impl<S: Send + Sync> FromRequest<S> for TomlText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_of(req, state, "application/toml", || ApiError::InvalidEncoding).await?;
        String::from_utf8(bytes.to_vec())
            .map(Self)
            .map_err(|_| ApiError::InvalidEncoding)
    }
}

/// The path's parameters by name, and a named one parsed as an id of kind `T`.
#[derive(Debug, Clone)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// The raw text of parameter `name`.
    pub fn text(&self, name: &'static str) -> Result<&str, ApiError> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .ok_or(ApiError::InvalidId { param: name })
    }

    /// Parameter `name` as an id (`sub_…`, `con_…`).
    pub fn id<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, ApiError> {
        self.text(name)?
            .parse()
            .map_err(|_| ApiError::InvalidId { param: name })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Percent-decoding fails only on bytes that are not UTF-8, which no id or policy key has.
        Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Path(params)| Self(params))
            .map_err(|_| ApiError::InvalidId { param: "path" })
    }
}

/// A query string decoded into `T`; any mismatch is 400 `request.invalid_query`.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|_| ApiError::InvalidQuery)
    }
}

/// The caller the key middleware authenticated.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Absent only on a route mounted outside the key middleware: refuse rather than guess.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Self)
            .ok_or(ApiError::AuthMissing)
    }
}

/// The caller, who must hold an admin key; checked before the body is read.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        if caller.admin {
            Ok(Self(caller))
        } else {
            Err(ApiError::AdminRequired)
        }
    }
}
