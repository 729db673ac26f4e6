//! Vault errors with stable codes. Messages carry ids and policy keys, never values.

use custodia_core::{LeaseId, MediaId, RecordId, SubjectId};
use custodia_crypto::CryptoError;
use custodia_objects::ObjectError;
use custodia_store::StoreError;

/// Why a vault operation failed. Nothing was written when an error is returned.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The category is not declared in the policy.
    #[error("category `{0}` is not declared in the policy")]
    UnknownCategory(String),
    /// The purpose is not declared in the policy.
    #[error("purpose `{0}` is not declared in the policy")]
    UnknownPurpose(String),
    /// The purpose does not cover the category.
    #[error("purpose `{purpose}` does not cover category `{category}`")]
    PurposeDoesNotCover {
        /// The purpose named.
        purpose: String,
        /// The category asked for.
        category: String,
    },
    /// No such subject.
    #[error("subject {0} not found")]
    SubjectNotFound(SubjectId),
    /// A subject with this external id already exists.
    #[error("a subject with this external id already exists")]
    SubjectExists,
    /// The subject has been erased.
    #[error("subject {0} has been erased")]
    SubjectErased(SubjectId),
    /// No such consent event for this subject.
    #[error("consent event {0} not found for this subject")]
    ConsentNotFound(custodia_core::ConsentId),
    /// No such record.
    #[error("record {0} not found")]
    RecordNotFound(RecordId),
    /// The data key needed has been destroyed (the data was crypto-shredded).
    #[error("the data key for {0} has been destroyed; its data cannot be read")]
    KeyDestroyed(String),
    /// A profile or input field is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The policy cannot compute an expiry (for example a date out of range).
    #[error("cannot compute the expiry under rule `{rule}`")]
    Expiry {
        /// The rule.
        rule: String,
    },
    /// A policy file with findings cannot be put in force.
    #[error("the policy has {} finding(s); run `custodia policy check`", findings.len())]
    PolicyNotClean {
        /// The findings, as `line:column: code: message`.
        findings: Vec<String>,
    },
    /// A version label already published with other content, or published twice.
    #[error("policy version `{0}` is already published; give the new file a new version")]
    PolicyConflict(String),
    /// The API key is unknown, malformed, revoked, or its secret does not match.
    #[error("invalid or revoked API key")]
    Unauthorized,
    /// A service key acted for a purpose it is not bound to.
    #[error("this API key is not bound to purpose `{0}`")]
    PurposeNotBound(String),
    /// A media operation on a vault opened without a media object store.
    #[error("no media object store is configured")]
    MediaStoreMissing,
    /// No such media object (or it is still being uploaded).
    #[error("media object {0} not found")]
    MediaNotFound(MediaId),
    /// The media object is being deleted, has expired, or its bytes are gone from storage.
    #[error("media object {0} is gone")]
    MediaGone(MediaId),
    /// A media object's stored bytes do not match its row.
    #[error("media object {0} does not match its stored length")]
    MediaCorrupt(MediaId),
    /// An upload's body ended before its announced length, or failed midway; nothing was stored.
    #[error("the upload was cut short after {received} bytes; nothing was stored")]
    MediaTruncated {
        /// Bytes received before it ended.
        received: u64,
    },
    /// An upload's body ran past its announced length; nothing was stored.
    #[error("the upload is longer than the announced {expected} bytes; nothing was stored")]
    MediaLengthMismatch {
        /// The announced length.
        expected: u64,
    },
    /// An upload's body does not have its announced SHA-256 digest; nothing was stored.
    #[error("the upload does not match its announced SHA-256 digest; nothing was stored")]
    MediaDigestMismatch,
    /// A byte range that selects nothing of the object.
    #[error("the range selects no byte of an object of {size} bytes")]
    MediaRangeNotSatisfiable {
        /// The object's length, for `Content-Range: bytes */size`.
        size: u64,
    },
    /// Another key holds an unexpired processing lease on the object.
    #[error("media object {0} is leased by another key")]
    MediaLeased(MediaId),
    /// The lease has expired.
    #[error("lease {0} has expired")]
    LeaseExpired(LeaseId),
    /// The caller does not hold this lease (another key's, or replaced, or released).
    #[error("lease {0} is not held by this key")]
    LeaseNotHeld(LeaseId),
    /// Leases name their holder: only API keys hold them.
    #[error("a processing lease needs an API key")]
    LeaseKeyRequired,
    /// No such outbox notification.
    #[error("notification {0} not found")]
    NotificationNotFound(custodia_core::NotificationId),
    /// The notification was already settled the other way (acknowledged, or marked impossible).
    #[error("notification {0} is already settled as {1}")]
    NotificationSettled(custodia_core::NotificationId, &'static str),
    /// No such data-subject request.
    #[error("request {0} not found")]
    RequestNotFound(custodia_core::RequestId),
    /// The policy's `[rights].offered` does not offer the right this request exercises.
    #[error("the policy does not offer the right behind `{0}` requests")]
    RequestNotOffered(&'static str),
    /// Another caller changed the request first (a lost race, or a fulfilment already under
    /// way on this instance); nothing was done. Read it again.
    #[error("request {0} was changed by another caller; nothing was done")]
    RequestConflict(custodia_core::RequestId),
    /// The request's state machine refuses the action.
    #[error(transparent)]
    RequestTransition(#[from] custodia_requests::TransitionError),
    /// A due date cannot be computed (a calendar year not published, ...) or extended.
    #[error(transparent)]
    RequestDeadline(#[from] custodia_requests::DeadlineError),
    /// What the requester asked does not fit the request's kind.
    #[error("invalid request details: {0}")]
    RequestDetails(String),
    /// A verification code was tried on a request with no code pending.
    #[error("no verification code is pending for this request; send one first")]
    NoCodePending,
    /// The verification code is wrong.
    #[error("the verification code is wrong; {attempts_left} attempt(s) left")]
    CodeInvalid {
        /// Tries left before the code locks.
        attempts_left: u32,
    },
    /// The verification code has expired; send a new one.
    #[error("the verification code has expired; send a new one")]
    CodeExpired,
    /// Too many wrong codes: this code is locked; send a new one.
    #[error("too many wrong verification codes; send a new one")]
    VerificationLocked,
    /// Access, copy and portability requests are answered with an export: give an output.
    #[error("a `{0}` request is fulfilled with an export; give it an output to write to")]
    ExportOutputRequired(&'static str),
    /// Writing an export failed.
    #[error("writing the export failed: {0}")]
    ExportIo(#[source] std::io::Error),
    /// Reading a media stream failed below the cryptography.
    #[error("media stream i/o: {0}")]
    MediaIo(#[source] std::io::Error),
    /// An object storage failure.
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// A cryptographic failure (wrong root key, tampered ciphertext...).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit chain is broken.
    #[error(transparent)]
    Audit(#[from] custodia_audit::AuditError),
}

impl VaultError {
    /// A stable code for machines.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCategory(_) => "vault.unknown_category",
            Self::UnknownPurpose(_) => "vault.unknown_purpose",
            Self::PurposeDoesNotCover { .. } => "vault.purpose_does_not_cover",
            Self::SubjectNotFound(_) => "vault.subject_not_found",
            Self::SubjectExists => "vault.subject_exists",
            Self::SubjectErased(_) => "vault.subject_erased",
            Self::RecordNotFound(_) => "vault.record_not_found",
            Self::ConsentNotFound(_) => "consent.not_found",
            Self::KeyDestroyed(_) => "vault.key_destroyed",
            Self::Invalid { .. } => "vault.invalid",
            Self::Expiry { .. } => "vault.expiry",
            Self::PolicyNotClean { .. } => "policy.not_clean",
            Self::PolicyConflict(_) => "policy.version_conflict",
            Self::Unauthorized => "auth.invalid_key",
            Self::PurposeNotBound(_) => "key.purpose_not_bound",
            Self::MediaStoreMissing => "media.store_missing",
            Self::MediaNotFound(_) => "media.not_found",
            Self::MediaGone(_) => "media.gone",
            Self::MediaCorrupt(_) => "media.corrupt",
            Self::MediaTruncated { .. } => "media.truncated",
            Self::MediaLengthMismatch { .. } => "media.length_mismatch",
            Self::MediaDigestMismatch => "media.digest_mismatch",
            Self::MediaRangeNotSatisfiable { .. } => "media.range_not_satisfiable",
            Self::MediaLeased(_) => "media.leased",
            Self::LeaseExpired(_) => "lease.expired",
            Self::LeaseNotHeld(_) => "lease.not_held",
            Self::LeaseKeyRequired => "lease.key_required",
            Self::NotificationNotFound(_) => "notification.not_found",
            Self::NotificationSettled(..) => "notification.settled",
            Self::RequestNotFound(_) => "request.not_found",
            Self::RequestNotOffered(_) => "request.not_offered",
            Self::RequestConflict(_) => "request.conflict",
            Self::RequestTransition(err) => err.code(),
            Self::RequestDeadline(err) => err.code(),
            Self::RequestDetails(_) => "request.invalid_details",
            Self::NoCodePending => "request.no_code_pending",
            Self::CodeInvalid { .. } => "request.code_invalid",
            Self::CodeExpired => "request.code_expired",
            Self::VerificationLocked => "request.verification_locked",
            Self::ExportOutputRequired(_) => "request.export_output_required",
            Self::ExportIo(_) => "export.io",
            Self::MediaIo(_) => "media.io",
            Self::Objects(err) => err.code(),
            Self::Crypto(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::Audit(err) => err.code(),
        }
    }

    /// Recovers the error inside an [`std::io::Error`] from a media stream
    /// ([`MediaDownload::reader`](crate::media::MediaDownload::reader)), with its stable code:
    /// the vault's own error, a cryptographic one ([`CryptoError::from_io`]), or any other I/O
    /// error as [`VaultError::MediaIo`].
    pub fn from_io(error: std::io::Error) -> Self {
        if error.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            return match error.into_inner().map(|inner| inner.downcast::<Self>()) {
                Some(Ok(vault)) => *vault,
                // Ruled out by the check above; kept total rather than unwrapped.
                _ => Self::MediaIo(std::io::Error::other("unrecognised media stream error")),
            };
        }
        if error
            .get_ref()
            .is_some_and(|inner| inner.is::<CryptoError>())
        {
            return Self::Crypto(CryptoError::from_io(error));
        }
        Self::MediaIo(error)
    }

    /// This error inside an [`std::io::Error`] of a fitting kind, for [`std::io::Read`]
    /// implementations; [`VaultError::from_io`] takes it out again.
    pub fn into_io(self) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match &self {
            Self::MediaIo(error) => error.kind(),
            Self::Crypto(CryptoError::Truncated) | Self::MediaTruncated { .. } => {
                ErrorKind::UnexpectedEof
            }
            Self::Crypto(CryptoError::AuthenticationFailed | CryptoError::Malformed { .. })
            | Self::MediaCorrupt(_)
            | Self::MediaDigestMismatch
            | Self::MediaLengthMismatch { .. } => ErrorKind::InvalidData,
            Self::MediaGone(_) | Self::MediaNotFound(_) => ErrorKind::NotFound,
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}
