//! Vault errors with stable codes. Messages carry ids and policy keys, never values.

use custodia_core::{RecordId, SubjectId};
use custodia_crypto::CryptoError;
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
            Self::Crypto(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::Audit(err) => err.code(),
        }
    }
}
