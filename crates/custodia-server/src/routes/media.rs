//! Media objects: uploaded and generated files (images, audio, video) kept encrypted in object
//! storage by the vault (see `custodia_vault::media`), with their lifecycle over HTTP.
//!
//! - `POST /v1/subjects/{id}/media?category=…&purpose=…` stores the raw request body (its
//!   `Content-Type` is the media's type). The body is **streamed**: frames go from the connection
//!   through a bounded channel to the vault on a blocking thread, so memory stays at a few frames
//!   whatever the size. `Content-Length`, when sent, is the length the vault insists on;
//!   `Content-Digest: sha-256=:<base64>:` (RFC 9530), when sent, the digest (other algorithms
//!   are ignored; a malformed header is 400 `request.invalid_header`). A body over
//!   [`ServerOptions::max_media_bytes`](crate::ServerOptions::max_media_bytes) is 413
//!   `request.too_large`; a client that goes away mid-body stores nothing (`media.truncated`).
//!   The category and purpose are checked against the policy (422), then the gate decides
//!   (collecting is processing: 403 `gate.denied`), before a byte of the body is read.
//! - `GET /v1/subjects/{id}/media[?category=]` and `GET /v1/media/{id}` show metadata only
//!   (nothing is decrypted or audited: type, size, state, rule, expiry, pseudonymous ids). Admin
//!   keys see every object; a service key sees the objects whose category one of its purposes
//!   covers under the policy in force, and any other object is 404 `media.not_found` to it, as
//!   if it did not exist. `DELETE /v1/media/{id}` deletes one at once (admin keys).
//! - `GET /v1/media/{id}/content?purpose=…` streams the plaintext if the gate allows the purpose
//!   (403 `gate.denied` with the reasons otherwise, nothing read), `200` or, with
//!   `Range: bytes=a-b | a- | -n`, `206` with `Content-Range`. Only single byte ranges are served:
//!   a `Range` that names several ranges, does not parse, or selects no byte is 416
//!   `media.range_not_satisfiable` with `Content-Range: bytes */<size>`; a `Range` in another
//!   unit is ignored (200), as RFC 9110 says. An object uploaded with a `Content-Digest` answers
//!   with `Repr-Digest: sha-256=:…:` (RFC 9530), the whole object's, on either status.
//! - Processing leases, for service keys: `POST /v1/media/{id}/leases` (the gate decides),
//!   `GET …/leases/{lease}/content` (ranges as above), `POST …/leases/{lease}/outputs?category=…`
//!   (an output, streamed like an upload, stored for the lease's purpose),
//!   `POST …/leases/{lease}/complete` (an input kept "until processed" is deleted before the
//!   answer) and `DELETE …/leases/{lease}`.
//!
//! Downloads are read on a blocking thread and handed to the response body through a bounded
//! channel. The first bytes are read and verified before the answer starts, so a missing or
//! altered object is a normal JSON error; a failure later on (an object altered in the middle)
//! ends the body with an error, which makes the server drop the connection: the client sees a
//! response shorter than its `Content-Length`, never a complete-looking one with wrong bytes.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custodia_core::{LeaseId, MediaId, SubjectId};
use custodia_store::MediaState;
use custodia_vault::{
    Ask, Caller, Gated, MediaDownload, MediaInfo, MediaRange, NewMedia, ProcessingReport, Vault,
    VaultError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::{rfc3339, rfc3339_opt};
use crate::ServerState;
use crate::error::{ApiError, ErrorBody, blocking};
use crate::extract::{Admin, ApiJson, ApiQuery, Authenticated, PathParams};

/// The largest media object accepted when none is configured: 5 GiB.
pub const DEFAULT_MAX_MEDIA_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// A processing lease's term when the request names none.
pub const DEFAULT_LEASE_TTL_SECONDS: u64 = 15 * 60;

/// Plaintext bytes per frame of a download (four cipher chunks: the vault decrypts them straight
/// into the frame).
const DOWNLOAD_FRAME: usize = 256 * 1024;

/// Frames in flight between the connection and the vault, each way: with hyper's frames of at
/// most a few hundred KiB, an upload or a download holds about a MiB whatever its size.
const CHANNEL_FRAMES: usize = 4;

/// What an upload's `Content-Type` must be, for the 415 message.
const MEDIA_TYPE_EXPECTED: &str = "the media's own MIME type, such as image/jpeg";

/// The category and purpose of an upload.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The policy category, such as `user.content.self_image`.
    pub category: String,
    /// The purpose it is collected for; it must cover the category, and the gate decides.
    pub purpose: String,
}

/// An optional category filter.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only objects of this category.
    #[serde(default)]
    pub category: Option<String>,
}

/// The purpose a download is for.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContentQuery {
    /// The purpose the media is read for; the gate checks it.
    pub purpose: String,
}

/// The category of an output.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// The output's policy category, such as `user.content.generated_image`; the lease's
    /// purpose must cover it.
    pub category: String,
}

/// A media object's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaStateView {
    /// Being uploaded (never shown by this API).
    Pending,
    /// Uploaded and readable.
    Stored,
    /// Processing completed.
    Processed,
    /// Being deleted (never shown by this API).
    Deleting,
}

impl From<MediaState> for MediaStateView {
    fn from(state: MediaState) -> Self {
        match state {
            MediaState::Pending => Self::Pending,
            MediaState::Stored => Self::Stored,
            MediaState::Processed => Self::Processed,
            MediaState::Deleting => Self::Deleting,
        }
    }
}

/// A media object's metadata: nothing personal, nothing decrypted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaView {
    /// The object's id.
    #[schema(example = "med_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// Whose it is.
    #[schema(example = "sub_0123456789abcdef0123456789abcdef")]
    pub subject: String,
    /// Its policy category.
    pub category: String,
    /// The purpose it was collected for.
    pub purpose: String,
    /// The declared content type.
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its lifecycle state.
    pub state: MediaStateView,
    /// The input it is an output of, for a processing output.
    pub parent: Option<String>,
    /// When it was stored.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its processing completed.
    #[schema(format = DateTime)]
    pub processed_at: Option<String>,
    /// The retention rule that governs it.
    pub rule: String,
    /// When it expires; `null` while its rule's trigger has not happened.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Kept through an erasure, storage-only (a statutory retention).
    pub statutory: bool,
}

impl From<MediaInfo> for MediaView {
    fn from(info: MediaInfo) -> Self {
        Self {
            id: info.id.to_string(),
            subject: info.subject.to_string(),
            category: info.category,
            purpose: info.purpose,
            content_type: info.content_type,
            size: info.size,
            state: info.state.into(),
            parent: info.parent.map(|parent| parent.to_string()),
            created_at: rfc3339(info.created_at),
            processed_at: rfc3339_opt(info.processed_at),
            rule: info.rule,
            expires_at: rfc3339_opt(info.expires_at),
            statutory: info.statutory,
        }
    }
}

/// A subject's media objects.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaList {
    /// Stored and processed objects the key may see, oldest first.
    pub media: Vec<MediaView>,
}

/// A processing lease to take.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLease {
    /// The purpose of the processing; the gate decides, and the key must be bound to it.
    pub purpose: String,
    /// The lease's term, 1 second to 24 hours [default: 900].
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<u64>,
}

/// A processing lease.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeaseView {
    /// The lease's id, for the calls made under it.
    #[schema(example = "lease_0123456789abcdef0123456789abcdef")]
    pub id: String,
    /// The leased object.
    pub media: String,
    /// The purpose the gate allowed.
    pub purpose: String,
    /// When the lease lapses by itself.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The gate's reasons for allowing it (the legal basis).
    pub reasons: Vec<String>,
}

/// What completing the processing of an input did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcessingView {
    /// The input.
    pub id: String,
    /// When processing completed.
    #[schema(format = DateTime)]
    pub processed_at: String,
    /// The retention rule that governs the input.
    pub rule: String,
    /// Its expiry now (for a deleted input, the moment it was deleted).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Whether it was deleted: shredded, its bytes and its row gone.
    pub deleted: bool,
    /// Whether a legal hold keeps an input that was due at once.
    pub held: bool,
}

impl From<ProcessingReport> for ProcessingView {
    fn from(report: ProcessingReport) -> Self {
        Self {
            id: report.id.to_string(),
            processed_at: rfc3339(report.processed_at),
            rule: report.rule,
            expires_at: rfc3339_opt(report.expires_at),
            deleted: report.deleted,
            held: report.held,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request headers.

/// What an upload's headers say about its body.
#[derive(Debug, Clone)]
struct UploadHead {
    content_type: String,
    length: Option<u64>,
    digest: Option<[u8; 32]>,
}

impl UploadHead {
    fn parse(headers: &HeaderMap, limit: u64) -> Result<Self, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|text| text.trim().to_ascii_lowercase())
            .filter(|text| !text.is_empty())
            .ok_or(ApiError::UnsupportedMediaType {
                expected: MEDIA_TYPE_EXPECTED,
            })?;
        // hyper has already refused a malformed length; this reads what it accepted.
        let length = match headers.get(header::CONTENT_LENGTH) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .ok_or(ApiError::InvalidHeader {
                        name: "Content-Length",
                    })?,
            ),
        };
        if length.is_some_and(|length| length > limit) {
            return Err(ApiError::TooLarge);
        }
        let digest = match headers.get("content-digest") {
            None => None,
            Some(value) => parse_content_digest(value)?,
        };
        Ok(Self {
            content_type,
            length,
            digest,
        })
    }

    fn media<'a>(&'a self, category: &'a str, purpose: &'a str) -> NewMedia<'a> {
        NewMedia {
            category,
            purpose,
            content_type: &self.content_type,
            expected_len: self.length,
            expected_sha256: self.digest,
        }
    }
}

/// The SHA-256 digest of an RFC 9530 `Content-Digest` header (a structured-field dictionary of
/// `algorithm=:base64:` members), `None` when it names only other algorithms. A header that is
/// not such a dictionary, or whose `sha-256` member is not 32 bytes of base64, is malformed.
fn parse_content_digest(value: &HeaderValue) -> Result<Option<[u8; 32]>, ApiError> {
    let malformed = || ApiError::InvalidHeader {
        name: "Content-Digest",
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let mut found = None;
    for member in text.split(',') {
        let member = member.trim();
        let (algorithm, rest) = member.split_once('=').ok_or_else(malformed)?;
        let algorithm = algorithm.trim();
        let valid_key = !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        if !valid_key {
            return Err(malformed());
        }
        // A byte sequence, `:base64:`, optionally followed by parameters (`;name=value`).
        let rest = rest.trim();
        let encoded = rest
            .strip_prefix(':')
            .and_then(|inner| inner.split_once(':'))
            .filter(|(_, after)| after.is_empty() || after.starts_with(';'))
            .map(|(encoded, _)| encoded)
            .ok_or_else(malformed)?;
        let bytes = STANDARD
            .decode(encoded.as_bytes())
            .map_err(|_| malformed())?;
        if algorithm == "sha-256" {
            if found.is_some() {
                return Err(malformed());
            }
            found = Some(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| malformed())?);
        }
    }
    Ok(found)
}

/// A request's `Range`, as far as this API serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAsk {
    /// No `Range`, or one in a unit other than bytes (ignored, RFC 9110 §14.2).
    Whole,
    /// One byte range.
    Bytes(MediaRange),
    /// Several ranges, or a `bytes=` value that does not parse.
    Unservable,
}

impl RangeAsk {
    fn parse(headers: &HeaderMap) -> Self {
        let Some(value) = headers.get(header::RANGE) else {
            return Self::Whole;
        };
        let Ok(text) = value.to_str() else {
            return Self::Unservable;
        };
        let Some((unit, set)) = text.trim().split_once('=') else {
            return Self::Unservable;
        };
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return Self::Whole;
        }
        let set = set.trim();
        if set.contains(',') {
            return Self::Unservable;
        }
        let Some((first, last)) = set.split_once('-') else {
            return Self::Unservable;
        };
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let (first, last) = (first.trim(), last.trim());
        match (first.is_empty(), last.is_empty()) {
            // `-n`: the last n bytes (a huge n is the whole object).
            (true, false) if digits(last) => {
                Self::Bytes(MediaRange::Last(last.parse().unwrap_or(u64::MAX)))
            }
            (false, _) if digits(first) && (last.is_empty() || digits(last)) => {
                // A first byte past any u64 is past the end of any object.
                let Ok(start) = first.parse::<u64>() else {
                    return Self::Unservable;
                };
                let end = (!last.is_empty()).then(|| last.parse().unwrap_or(u64::MAX));
                Self::Bytes(MediaRange::From { start, end })
            }
            _ => Self::Unservable,
        }
    }

    /// The range to ask the vault for. An unservable `Range` is asked as `bytes=-0`, which
    /// selects nothing: the vault then checks the object as for any range and answers
    /// `media.range_not_satisfiable` with its size.
    fn for_vault(self) -> Option<MediaRange> {
        match self {
            Self::Whole => None,
            Self::Bytes(range) => Some(range),
            Self::Unservable => Some(MediaRange::Last(0)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming a request body into the vault.

/// What the connection hands the blocking reader.
#[derive(Debug)]
enum Inbound {
    /// Body bytes.
    Data(Bytes),
    /// The body ended normally.
    End,
    /// The body failed (the client went away) or ran over the limit.
    Broken,
}

/// The request body as a blocking [`Read`] on the vault's side of the channel. The body counts
/// as complete only when the connection said so ([`Inbound::End`]): a channel closed without it
/// (the request was dropped) is an error, so a cut-off body is never taken for a whole one.
struct ChannelReader {
    frames: mpsc::Receiver<Inbound>,
    current: Bytes,
    ended: bool,
}

fn body_failed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the request body ended before it was complete",
    )
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                let chunk = self.current.split_to(n);
                buf.get_mut(..n)
                    .ok_or_else(body_failed)?
                    .copy_from_slice(&chunk);
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match self.frames.blocking_recv() {
                Some(Inbound::Data(bytes)) => self.current = bytes,
                Some(Inbound::End) => self.ended = true,
                Some(Inbound::Broken) | None => return Err(body_failed()),
            }
        }
    }
}

/// Runs `call` on the blocking pool with the request body as its reader, feeding the body in
/// through a bounded channel and cutting it off past `limit` bytes (then 413
/// `request.too_large`). Stops feeding when `call` returns early.
async fn receive<T, F>(body: Body, limit: u64, call: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Read) -> Result<T, ApiError> + Send + 'static,
{
    let (frames, rx) = mpsc::channel(CHANNEL_FRAMES);
    let task = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            frames: rx,
            current: Bytes::new(),
            ended: false,
        };
        call(&mut reader)
    });
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    let mut over = false;
    loop {
        let frame =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut stream), cx))
                .await;
        let inbound = match frame {
            None => Inbound::End,
            Some(Ok(bytes)) => {
                received = received.saturating_add(bytes.len() as u64);
                if received > limit {
                    over = true;
                    Inbound::Broken
                } else {
                    Inbound::Data(bytes)
                }
            }
            Some(Err(_)) => Inbound::Broken,
        };
        let last = !matches!(inbound, Inbound::Data(_));
        // A closed channel: the vault call is over (refused before reading, or failed).
        if frames.send(inbound).await.is_err() || last {
            break;
        }
    }
    drop(frames);
    let result = task.await.map_err(|_| ApiError::Internal)?;
    match result {
        Err(_) if over => Err(ApiError::TooLarge),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming a download out of the vault.

/// A download's plaintext frames, as a response body.
struct DownloadBody {
    frames: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl futures_core::Stream for DownloadBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.frames.poll_recv(cx)
    }
}

/// Reads up to one frame (`left` bytes at most) from a download. An end before `left` bytes is
/// a truncated object.
fn read_frame(reader: &mut dyn Read, left: u64) -> Result<Bytes, VaultError> {
    let want = usize::try_from(left)
        .unwrap_or(usize::MAX)
        .min(DOWNLOAD_FRAME);
    let mut frame = vec![0u8; want];
    loop {
        match reader.read(&mut frame) {
            Ok(0) if want > 0 => {
                return Err(VaultError::MediaIo(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the media stream ended early",
                )));
            }
            Ok(read) => {
                frame.truncate(read);
                return Ok(Bytes::from(frame));
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(VaultError::from_io(error)),
        }
    }
}

/// A download opened, with its first frame already read and verified.
struct Opened {
    download: MediaDownload,
    first: Bytes,
}

/// Opens a download's stream and reads its first frame, so that a failure before the first byte
/// is an ordinary error answer.
fn open(download: MediaDownload) -> Result<Opened, ApiError> {
    let mut download = download;
    let len = download.range.end.saturating_sub(download.range.start);
    let first = read_frame(download.reader.as_mut(), len)?;
    Ok(Opened { download, first })
}

/// Streams the rest of a download into `frames` on the blocking pool; a failure ends the body
/// with an error (the connection is dropped), and a client that goes away stops the reading.
fn stream_rest(
    mut reader: Box<dyn Read + Send>,
    mut left: u64,
    frames: mpsc::Sender<Result<Bytes, io::Error>>,
) {
    while left > 0 {
        match read_frame(reader.as_mut(), left) {
            Ok(frame) => {
                left = left.saturating_sub(frame.len() as u64);
                if frames.blocking_send(Ok(frame)).is_err() {
                    return;
                }
            }
            Err(error) => {
                // The code only: the connection is dropped, so the client learns nothing more.
                tracing::warn!(target: "custodia::media", code = error.code(), "download failed mid-stream; dropping the connection");
                let _ = frames.blocking_send(Err(io::Error::other(error.code())));
                return;
            }
        }
    }
}

/// The answer to an opened download: 200 for the whole object, 206 for a range, streamed.
fn stream_response(opened: Opened, ranged: bool) -> Response {
    let Opened { download, first } = opened;
    let MediaDownload {
        info,
        range,
        total,
        sha256,
        reader,
    } = download;
    let len = range.end.saturating_sub(range.start);
    let left = len.saturating_sub(first.len() as u64);
    let (frames, rx) = mpsc::channel(CHANNEL_FRAMES);
    // The channel is empty: the first frame always fits.
    let _ = frames.try_send(Ok(first));
    if left > 0 {
        tokio::task::spawn_blocking(move || stream_rest(reader, left, frames));
    } else {
        drop(frames);
    }
    let body = Body::from_stream(DownloadBody { frames: rx });
    let status = if ranged {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&info.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // RFC 9530: the whole object's digest (a range's too: it names the representation), when
    // the uploader announced it, so a client can check what it reassembles.
    if let Some(sha256) = sha256
        && let Ok(value) = HeaderValue::from_str(&format!("sha-256=:{}:", STANDARD.encode(sha256)))
    {
        headers.insert("repr-digest", value);
    }
    // Personal data: no cache keeps a copy, and no browser guesses another type.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if ranged
        && let Ok(value) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{total}",
            range.start,
            range.end.saturating_sub(1)
        ))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    response
}

/// An error answer, with `Content-Range: bytes */<size>` on a 416.
fn error_response(error: ApiError) -> Response {
    let size = match &error {
        ApiError::Vault(VaultError::MediaRangeNotSatisfiable { size }) => Some(*size),
        _ => None,
    };
    let mut response = error.into_response();
    if let Some(size) = size
        && let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}"))
    {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Who may see what.

/// Whether `caller` may see an object of `category`: admin keys see all; a service key sees the
/// categories its purposes cover under the policy in force.
fn may_see(vault: &Vault, caller: &Caller, category: &str) -> bool {
    if caller.admin {
        return true;
    }
    let policy = vault.policy();
    caller.purposes.iter().any(|purpose| {
        policy.purpose(purpose).is_some_and(|declared| {
            declared
                .categories
                .iter()
                .any(|covered| covered.get_ref() == category)
        })
    })
}

/// The category must be declared and the purpose must cover it, as for any stored data.
fn check_use(vault: &Vault, category: &str, purpose: &str) -> Result<(), VaultError> {
    let policy = vault.policy();
    if policy.category(category).is_none() {
        return Err(VaultError::UnknownCategory(category.to_owned()));
    }
    let declared = policy
        .purpose(purpose)
        .ok_or_else(|| VaultError::UnknownPurpose(purpose.to_owned()))?;
    if !declared
        .categories
        .iter()
        .any(|covered| covered.get_ref() == category)
    {
        return Err(VaultError::PurposeDoesNotCover {
            purpose: purpose.to_owned(),
            category: category.to_owned(),
        });
    }
    Ok(())
}

fn media_id(params: &PathParams) -> Result<MediaId, ApiError> {
    params.id("id")
}

fn lease_ids(params: &PathParams) -> Result<(MediaId, LeaseId), ApiError> {
    Ok((params.id("id")?, params.id("lease")?))
}

// ---------------------------------------------------------------------------------------------
// Handlers.

/// Stores a media object for a subject, streaming the raw body (up to the server's media size
/// limit) into encrypted object storage, if the gate allows collecting it for the purpose.
#[utoipa::path(
    post,
    path = "/v1/subjects/{id}/media",
    operation_id = "uploadMedia",
    tag = "media",
    params(
        ("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$"),
        UploadQuery,
        ("Content-Digest" = Option<String>, Header, description = "RFC 9530 digest of the body, `sha-256=:<base64>:`; a body with another digest stores nothing"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The media's bytes, sent with the media's own type as `Content-Type` (image/jpeg, audio/flac, …)"),
    responses(
        (status = 201, description = "Stored", body = MediaView),
        (status = 400, description = "The body ended before its `Content-Length` (`media.truncated`), ran past it (`media.length_mismatch`), or a header is malformed (`request.invalid_header`); nothing was stored", body = ErrorBody),
        (status = 403, description = "The gate denied collecting it (`gate.denied`, with `details.reasons`), or the key is not bound to the purpose (`key.purpose_not_bound`)", body = ErrorBody),
        (status = 404, description = "No such subject", body = ErrorBody),
        (status = 410, description = "The subject was erased", body = ErrorBody),
        (status = 413, description = "The body is over the server's media size limit (`request.too_large`)", body = ErrorBody),
        (status = 422, description = "Unknown category or purpose, a purpose that does not cover the category, a content type that is not `type/subtype`, or a body that does not match its `Content-Digest` (`media.digest_mismatch`)", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MediaView>), ApiError> {
    let subject: SubjectId = params.id("id")?;
    let limit = state.options().max_media_bytes;
    let head = UploadHead::parse(&headers, limit)?;
    let vault = state.vault().clone();
    let metrics = state.metrics().clone();
    let info = receive(body, limit, move |reader| {
        check_use(&vault, &query.category, &query.purpose)?;
        let decision = vault.decide(
            &Ask {
                subject,
                purpose: query.purpose.clone(),
                categories: vec![query.category.clone()],
            },
            &caller,
        )?;
        metrics.observe_decisions([&decision]);
        if !decision.allowed {
            return Err(ApiError::GateDenied(decision));
        }
        let new = head.media(&query.category, &query.purpose);
        Ok(vault.upload_media(subject, &new, reader, &caller)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// Lists a subject's stored and processed media objects (metadata only), optionally of one
/// category. A service key sees only the categories its purposes cover.
#[utoipa::path(
    get,
    path = "/v1/subjects/{id}/media",
    operation_id = "listMedia",
    tag = "media",
    params(
        ("id" = String, Path, description = "The subject's id", pattern = "^sub_[0-9a-fA-F]{32}$"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "The objects, oldest first", body = MediaList),
        (status = 404, description = "No such subject", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<MediaList>, ApiError> {
    let subject: SubjectId = params.id("id")?;
    let vault = state.vault().clone();
    let media = blocking(move || {
        let all = vault.list_media(subject, query.category.as_deref())?;
        Ok(all
            .into_iter()
            .filter(|info| may_see(&vault, &caller, &info.category))
            .map(MediaView::from)
            .collect())
    })
    .await?;
    Ok(Json(MediaList { media }))
}

/// A media object's metadata (nothing decrypted, nothing audited). Admin keys see every object;
/// a service key only those of categories its purposes cover (others are 404 to it).
#[utoipa::path(
    get,
    path = "/v1/media/{id}",
    operation_id = "showMedia",
    tag = "media",
    params(
        ("id" = String, Path, description = "The media object's id", pattern = "^med_[0-9a-fA-F]{32}$"),
    ),
    responses(
        (status = 200, description = "The object", body = MediaView),
        (status = 404, description = "No such object, or not one this key may see (`media.not_found`)", body = ErrorBody),
        (status = 410, description = "The object is being deleted (`media.gone`)", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
) -> Result<Json<MediaView>, ApiError> {
    let id = media_id(&params)?;
    let vault = state.vault().clone();
    let info = blocking(move || {
        let info = vault.media_info(id)?;
        if !may_see(&vault, &caller, &info.category) {
            return Err(VaultError::MediaNotFound(id).into());
        }
        Ok(info)
    })
    .await?;
    Ok(Json(info.into()))
}

/// Deletes a media object now (admin keys): shredded and audited, then its bytes, then its row.
/// Legal holds do not apply to an explicit deletion.
#[utoipa::path(
    delete,
    path = "/v1/media/{id}",
    operation_id = "deleteMedia",
    tag = "media",
    params(
        ("id" = String, Path, description = "The media object's id", pattern = "^med_[0-9a-fA-F]{32}$"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an admin key (`auth.admin_required`)", body = ErrorBody),
        (status = 404, description = "No such object (`media.not_found`)", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<ServerState>,
    Admin(admin): Admin,
    params: PathParams,
) -> Result<StatusCode, ApiError> {
    let id = media_id(&params)?;
    let vault = state.vault().clone();
    blocking(move || Ok(vault.delete_media(id, &admin.actor())?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Downloads a media object's plaintext for a purpose, if the gate allows it: all of it, or one
/// byte range (`Range: bytes=a-b`, `bytes=a-`, `bytes=-n`). Streamed; audited.
#[utoipa::path(
    get,
    path = "/v1/media/{id}/content",
    operation_id = "downloadMedia",
    tag = "media",
    params(
        ("id" = String, Path, description = "The media object's id", pattern = "^med_[0-9a-fA-F]{32}$"),
        ContentQuery,
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
    ),
    responses(
        (status = 200, description = "The whole object, with its own `Content-Type`", content_type = "*/*", body = Vec<u8>,
            headers(
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("Repr-Digest" = String, description = "RFC 9530 `sha-256=:<base64>:` of the whole object, when its uploader sent `Content-Digest`"),
            )),
        (status = 206, description = "The range asked for", content_type = "*/*", body = Vec<u8>,
            headers(
                ("Content-Range" = String, description = "`bytes a-b/size`"),
                ("Repr-Digest" = String, description = "RFC 9530 `sha-256=:<base64>:` of the whole object, when its uploader sent `Content-Digest`"),
            )),
        (status = 403, description = "The gate denied the read (`gate.denied`, with `details.reasons`); nothing was read", body = ErrorBody),
        (status = 404, description = "No such object (`media.not_found`)", body = ErrorBody),
        (status = 410, description = "The object expired, is being deleted, or its bytes are gone (`media.gone`)", body = ErrorBody),
        (status = 416, description = "The range selects nothing, names several ranges or does not parse (`media.range_not_satisfiable`, with `Content-Range: bytes */size`)", body = ErrorBody),
    )
)]
pub async fn content(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiQuery(query): ApiQuery<ContentQuery>,
    headers: HeaderMap,
) -> Response {
    let ask = RangeAsk::parse(&headers);
    let id = match media_id(&params) {
        Ok(id) => id,
        Err(error) => return error_response(error),
    };
    let vault = state.vault().clone();
    let metrics = state.metrics().clone();
    let opened = blocking(move || {
        let gated = vault.download_media(id, &query.purpose, ask.for_vault(), &caller)?;
        match gated {
            Gated::Allowed { value, decision } => {
                metrics.observe_decisions([&decision]);
                open(value)
            }
            Gated::Denied(decision) => {
                metrics.observe_decisions([&decision]);
                Err(ApiError::GateDenied(decision))
            }
        }
    })
    .await;
    match opened {
        Ok(opened) => stream_response(opened, ask != RangeAsk::Whole),
        Err(error) => error_response(error),
    }
}

/// Takes a processing lease on a media object for a purpose (service keys), if the gate allows
/// it. The holder asking again for the same purpose renews its lease.
#[utoipa::path(
    post,
    path = "/v1/media/{id}/leases",
    operation_id = "leaseMedia",
    tag = "media",
    params(
        ("id" = String, Path, description = "The media object's id", pattern = "^med_[0-9a-fA-F]{32}$"),
    ),
    request_body = CreateLease,
    responses(
        (status = 201, description = "Leased", body = LeaseView),
        (status = 403, description = "The gate denied the processing (`gate.denied`, with `details.reasons`)", body = ErrorBody),
        (status = 404, description = "No such object (`media.not_found`)", body = ErrorBody),
        (status = 409, description = "Another key holds a lease on it (`media.leased`)", body = ErrorBody),
        (status = 410, description = "The object expired or is being deleted (`media.gone`)", body = ErrorBody),
    )
)]
pub async fn lease(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiJson(body): ApiJson<CreateLease>,
) -> Result<(StatusCode, Json<LeaseView>), ApiError> {
    let id = media_id(&params)?;
    let ttl = Duration::from_secs(body.ttl_seconds.unwrap_or(DEFAULT_LEASE_TTL_SECONDS));
    let vault = state.vault().clone();
    let metrics = state.metrics().clone();
    let (lease, decision) =
        blocking(
            move || match vault.lease_media(id, &body.purpose, ttl, &caller)? {
                Gated::Allowed { value, decision } => {
                    metrics.observe_decisions([&decision]);
                    Ok((value, decision))
                }
                Gated::Denied(decision) => {
                    metrics.observe_decisions([&decision]);
                    Err(ApiError::GateDenied(decision))
                }
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(LeaseView {
            id: lease.id.to_string(),
            media: id.to_string(),
            purpose: lease.purpose,
            expires_at: rfc3339(lease.expires_at),
            reasons: decision.codes().into_iter().map(str::to_owned).collect(),
        }),
    ))
}

/// Reads a leased object (the lease's holder, before it lapses): all of it or one byte range,
/// streamed; each read is audited.
#[utoipa::path(
    get,
    path = "/v1/media/{id}/leases/{lease}/content",
    operation_id = "readLeasedMedia",
    tag = "media",
    params(
        ("id" = String, Path, description = "The media object's id", pattern = "^med_[0-9a-fA-F]{32}$"),
        ("lease" = String, Path, description = "The lease's id", pattern = "^lease_[0-9a-fA-F]{32}$"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
    ),
    responses(
        (status = 200, description = "The whole object, with its own `Content-Type`", content_type = "*/*", body = Vec<u8>,
            headers(
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("Repr-Digest" = String, description = "RFC 9530 `sha-256=:<base64>:` of the whole object, when its uploader sent `Content-Digest`"),
            )),
        (status = 206, description = "The range asked for", content_type = "*/*", body = Vec<u8>,
            headers(
                ("Content-Range" = String, description = "`bytes a-b/size`"),
                ("Repr-Digest" = String, description = "RFC 9530 `sha-256=:<base64>:` of the whole object, when its uploader sent `Content-Digest`"),
            )),
        (status = 404, description = "No such object (`media.not_found`)", body = ErrorBody),
        (status = 409, description = "The lease is not this key's (`lease.not_held`) or has lapsed (`lease.expired`)", body = ErrorBody),
        (status = 410, description = "The object expired or is being deleted (`media.gone`)", body = ErrorBody),
        (status = 416, description = "The range selects nothing, names several ranges or does not parse (`media.range_not_satisfiable`)", body = ErrorBody),
    )
)]
pub async fn leased_content(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    headers: HeaderMap,
) -> Response {
    let ask = RangeAsk::parse(&headers);
    let (id, lease) = match lease_ids(&params) {
        Ok(ids) => ids,
        Err(error) => return error_response(error),
    };
    let vault = state.vault().clone();
    let opened = blocking(move || {
        let download = vault.read_leased(id, lease, ask.for_vault(), &caller)?;
        open(download)
    })
    .await;
    match opened {
        Ok(opened) => stream_response(opened, ask != RangeAsk::Whole),
        Err(error) => error_response(error),
    }
}

/// Stores an output of processing a leased input (an effect image, a tuned recording), streamed
/// like an upload, for the lease's purpose, under its own category and retention rule.
#[utoipa::path(
    post,
    path = "/v1/media/{id}/leases/{lease}/outputs",
    operation_id = "attachMediaOutput",
    tag = "media",
    params(
        ("id" = String, Path, description = "The input's id", pattern = "^med_[0-9a-fA-F]{32}$"),
        ("lease" = String, Path, description = "The lease's id", pattern = "^lease_[0-9a-fA-F]{32}$"),
        OutputQuery,
        ("Content-Digest" = Option<String>, Header, description = "RFC 9530 digest of the body, `sha-256=:<base64>:`"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The output's bytes, sent with its own type as `Content-Type`"),
    responses(
        (status = 201, description = "Stored", body = MediaView),
        (status = 400, description = "The body ended before its `Content-Length` (`media.truncated`), ran past it (`media.length_mismatch`), or a header is malformed (`request.invalid_header`); nothing was stored", body = ErrorBody),
        (status = 404, description = "No such input (`media.not_found`)", body = ErrorBody),
        (status = 409, description = "The lease is not this key's (`lease.not_held`) or has lapsed (`lease.expired`)", body = ErrorBody),
        (status = 410, description = "The input expired or is being deleted (`media.gone`)", body = ErrorBody),
        (status = 413, description = "The body is over the server's media size limit (`request.too_large`)", body = ErrorBody),
        (status = 422, description = "Unknown category, one the lease's purpose does not cover, a content type that is not `type/subtype`, or a digest mismatch (`media.digest_mismatch`)", body = ErrorBody),
    )
)]
pub async fn attach_output(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
    ApiQuery(query): ApiQuery<OutputQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MediaView>), ApiError> {
    let (id, lease) = lease_ids(&params)?;
    let limit = state.options().max_media_bytes;
    let head = UploadHead::parse(&headers, limit)?;
    let vault = state.vault().clone();
    let info = receive(body, limit, move |reader| {
        // An output is stored for its input's lease purpose; the vault checks the lease itself.
        let row = vault
            .data_store()
            .media(id)
            .map_err(VaultError::from)?
            .ok_or(VaultError::MediaNotFound(id))?;
        let purpose = row
            .lease
            .filter(|held| held.id == lease)
            .map(|held| held.purpose)
            .ok_or(VaultError::LeaseNotHeld(lease))?;
        let new = head.media(&query.category, &purpose);
        Ok(vault.attach_output(id, lease, &new, reader, &caller)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// Completes the processing of a leased input: it becomes processed, its lease ends, and an input
/// kept "until processed" is deleted (shredded, its bytes and row gone) before the answer.
#[utoipa::path(
    post,
    path = "/v1/media/{id}/leases/{lease}/complete",
    operation_id = "completeMediaProcessing",
    tag = "media",
    params(
        ("id" = String, Path, description = "The input's id", pattern = "^med_[0-9a-fA-F]{32}$"),
        ("lease" = String, Path, description = "The lease's id", pattern = "^lease_[0-9a-fA-F]{32}$"),
    ),
    responses(
        (status = 200, description = "Completed", body = ProcessingView),
        (status = 404, description = "No such input (`media.not_found`)", body = ErrorBody),
        (status = 409, description = "The lease is not this key's (`lease.not_held`) or has lapsed (`lease.expired`)", body = ErrorBody),
        (status = 410, description = "The input expired or is being deleted (`media.gone`)", body = ErrorBody),
    )
)]
pub async fn complete(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
) -> Result<Json<ProcessingView>, ApiError> {
    let (id, lease) = lease_ids(&params)?;
    let vault = state.vault().clone();
    let report = blocking(move || Ok(vault.complete_processing(id, lease, &caller)?)).await?;
    Ok(Json(report.into()))
}

/// Ends a lease early (its holder only); releasing a lapsed lease succeeds.
#[utoipa::path(
    delete,
    path = "/v1/media/{id}/leases/{lease}",
    operation_id = "releaseMediaLease",
    tag = "media",
    params(
        ("id" = String, Path, description = "The media object's id", pattern = "^med_[0-9a-fA-F]{32}$"),
        ("lease" = String, Path, description = "The lease's id", pattern = "^lease_[0-9a-fA-F]{32}$"),
    ),
    responses(
        (status = 204, description = "Released"),
        (status = 404, description = "No such object (`media.not_found`)", body = ErrorBody),
        (status = 409, description = "The lease is not this key's (`lease.not_held`)", body = ErrorBody),
    )
)]
pub async fn release(
    State(state): State<ServerState>,
    Authenticated(caller): Authenticated,
    params: PathParams,
) -> Result<StatusCode, ApiError> {
    let (id, lease) = lease_ids(&params)?;
    let vault = state.vault().clone();
    blocking(move || Ok(vault.release_lease(id, lease, &caller)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(name, value);
        }
        map
    }

    #[test]
    fn ranges_parse_as_rfc_9110_single_byte_ranges() {
        let range = |value: &str| RangeAsk::parse(&headers("range", value));
        assert_eq!(RangeAsk::parse(&HeaderMap::new()), RangeAsk::Whole);
        assert_eq!(
            range("bytes=0-99"),
            RangeAsk::Bytes(MediaRange::From {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            range("bytes=100-"),
            RangeAsk::Bytes(MediaRange::From {
                start: 100,
                end: None
            })
        );
        assert_eq!(range("bytes=-5"), RangeAsk::Bytes(MediaRange::Last(5)));
        assert_eq!(range(" Bytes = 1 - 2 "), range("bytes=1-2"));
        assert_eq!(
            range("bytes=5-99999999999999999999999"),
            RangeAsk::Bytes(MediaRange::From {
                start: 5,
                end: Some(u64::MAX)
            })
        );
        assert_eq!(range("items=0-1"), RangeAsk::Whole);
        for bad in [
            "bytes=0-1,5-6",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes=--1",
            "0-1",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(range(bad), RangeAsk::Unservable, "{bad}");
        }
        assert_eq!(RangeAsk::Unservable.for_vault(), Some(MediaRange::Last(0)));
        assert_eq!(MediaRange::Last(0).resolve(10), None);
    }

    #[test]
    fn content_digest_takes_sha_256_and_refuses_malformed_headers() {
        let digest = [7u8; 32];
        let encoded = STANDARD.encode(digest);
        let parse = |value: &str| {
            parse_content_digest(
                &HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
            )
        };
        assert_eq!(
            parse(&format!("sha-256=:{encoded}:")).ok(),
            Some(Some(digest))
        );
        assert_eq!(
            parse(&format!(
                "sha-512=:{}:, sha-256=:{encoded}:",
                STANDARD.encode([1u8; 64])
            ))
            .ok(),
            Some(Some(digest))
        );
        assert_eq!(
            parse(&format!("sha-512=:{}:", STANDARD.encode([1u8; 64]))).ok(),
            Some(None)
        );
        for bad in [
            String::new(),
            "sha-256".to_owned(),
            format!("sha-256={encoded}"),
            format!("sha-256=:{encoded}"),
            "sha-256=:not base64!:".to_owned(),
            format!("sha-256=:{}:", STANDARD.encode([1u8; 31])),
            format!("SHA 256=:{encoded}:"),
            format!("sha-256=:{encoded}:, sha-256=:{encoded}:"),
        ] {
            assert_eq!(
                parse(&bad).err().map(|err| err.code()),
                Some("request.invalid_header"),
                "{bad}"
            );
        }
    }
}
