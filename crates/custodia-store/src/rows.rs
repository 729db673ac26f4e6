//! The rows the stores keep. Every personal value is ciphertext by the time it gets here; the
//! plaintext columns are ids, policy keys (category, purpose, rule) and times, which the engine
//! needs for retention and the gate without decrypting anything.

use custodia_audit::{Anchor, AuditEvent};
use custodia_core::{KeyId, RecordId, SubjectId, Timestamp};

/// A person whose data is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    /// The pseudonymous id.
    pub id: SubjectId,
    /// A keyed hash of the app's user id, to find the subject without storing that id in clear.
    pub lookup: [u8; 32],
    /// The subject's profile (external id, jurisdiction, birth date or age band, guardian),
    /// sealed under the subject's data key.
    pub profile: Vec<u8>,
    /// The data key the profile is sealed under.
    pub key: KeyId,
    /// When the subject was created.
    pub created_at: Timestamp,
    /// Last activity, for `last_active` retention.
    pub last_active_at: Timestamp,
    /// When the account was closed, for `account_closed` retention.
    pub closed_at: Option<Timestamp>,
    /// When the subject was erased (crypto-shredded); only statutory records may remain.
    pub erased_at: Option<Timestamp>,
}

/// One stored value of a category for a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// The record's id.
    pub id: RecordId,
    /// Whose it is.
    pub subject: SubjectId,
    /// The policy category key.
    pub category: String,
    /// The purpose it was collected for.
    pub purpose: String,
    /// The data key it is sealed under.
    pub key: KeyId,
    /// The sealed value.
    pub ciphertext: Vec<u8>,
    /// When it was written.
    pub collected_at: Timestamp,
    /// The retention rule that governs it.
    pub rule: String,
    /// When it expires; `None` while its rule's trigger (account closed, processed...) has not
    /// happened yet.
    pub expires_at: Option<Timestamp>,
    /// Kept through an erasure, storage-only, until its own expiry.
    pub statutory: bool,
}

/// Changes to a subject's lifecycle fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectUpdate {
    /// New last activity.
    pub last_active_at: Option<Timestamp>,
    /// Account closed at.
    pub closed_at: Option<Timestamp>,
    /// Erased at.
    pub erased_at: Option<Timestamp>,
    /// A re-sealed profile (rectification).
    pub profile: Option<Vec<u8>>,
}

/// One change in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Creates a subject; conflicts with an existing id or lookup.
    InsertSubject(SubjectRow),
    /// Updates a subject's lifecycle fields; the subject must exist.
    UpdateSubject {
        /// Which subject.
        id: SubjectId,
        /// What changes.
        update: SubjectUpdate,
    },
    /// Inserts a record; conflicts with an existing id.
    InsertRecord(RecordRow),
    /// Sets the expiry of a subject's records governed by `rule` that have none yet (the rule's
    /// trigger has happened).
    SetExpiry {
        /// Whose records.
        subject: SubjectId,
        /// Which rule.
        rule: String,
        /// The new expiry.
        expires_at: Timestamp,
    },
    /// Deletes one record; a missing record is not an error (deletions are idempotent).
    DeleteRecord(RecordId),
    /// Deletes a subject's records, statutory ones too unless `keep_statutory`.
    DeleteRecordsOf {
        /// Whose records.
        subject: SubjectId,
        /// Keep statutory records (an erasure keeps them storage-only).
        keep_statutory: bool,
    },
    /// Deletes a subject row (its records must be gone).
    DeleteSubject(SubjectId),
}

/// Mutations and audit events that commit together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The data changes, applied in order.
    pub mutations: Vec<Mutation>,
    /// The audit events, chained after the head in order.
    pub audit: Vec<AuditEvent>,
}

impl WriteBatch {
    /// Appends the contents of another batch (group commit).
    pub fn merge(&mut self, other: Self) {
        self.mutations.extend(other.mutations);
        self.audit.extend(other.audit);
    }

    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty() && self.audit.is_empty()
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The audit head after the commit (`None` if the chain is still empty).
    pub head: Option<Anchor>,
    /// How many records the batch deleted.
    pub deleted_records: u64,
}

/// The key store's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStoreMeta {
    /// Proof of the root key, to refuse a wrong one before anything is written.
    pub verifier: Vec<u8>,
    /// Argon2id parameters (JSON) when the root key comes from a passphrase.
    pub kdf: Option<String>,
    /// When the store was created.
    pub created_at: Timestamp,
}

/// An epoch key, wrapped by the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochRow {
    /// The epoch number; the highest live one is current.
    pub id: u32,
    /// The wrapped epoch key.
    pub wrapped: Vec<u8>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// What a data key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKeyKind {
    /// The subject's ordinary data.
    Subject,
    /// Statutory records kept storage-only after an erasure.
    Statutory,
}

impl DataKeyKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Statutory => "statutory",
        }
    }

    /// From the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "subject" => Some(Self::Subject),
            "statutory" => Some(Self::Statutory),
            _ => None,
        }
    }
}

/// A data key, wrapped by an epoch key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRow {
    /// The key's id.
    pub id: KeyId,
    /// The subject it belongs to.
    pub owner: SubjectId,
    /// Ordinary or statutory.
    pub kind: DataKeyKind,
    /// The epoch whose key wraps it.
    pub epoch: u32,
    /// The wrapped key.
    pub wrapped: Vec<u8>,
    /// When it was created.
    pub created_at: Timestamp,
}
