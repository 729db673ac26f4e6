//! The rows the stores keep. Every personal value is ciphertext by the time it gets here; the
//! plaintext columns are ids, policy keys (category, purpose, rule) and times, which the engine
//! needs for retention and the gate without decrypting anything.

use custodia_audit::{Anchor, AuditEvent, EventKind};
use custodia_core::{
    ApiKeyId, ConsentId, DisclosureId, HoldId, KeyId, LeaseId, MediaId, NotificationId, RecordId,
    RequestId, SubjectId, Timestamp,
};

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
    /// Sets the expiry of a subject's records and media objects governed by `rule` that have
    /// none yet (the rule's trigger has happened).
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
    /// Appends an event to the consent ledger; conflicts with an existing id. The subject must
    /// exist when the event is appended, but the ledger outlives it: deleting the subject row
    /// keeps its events, as pseudonymous evidence of what was consented to.
    InsertConsent(ConsentRow),
    /// Stores a new API key; conflicts with an existing id.
    InsertApiKey(ApiKeyRow),
    /// Revokes an API key (idempotent: the first revocation time stays); the key must exist.
    RevokeApiKey {
        /// Which key.
        id: ApiKeyId,
        /// When.
        at: Timestamp,
    },
    /// Records a published policy version; conflicts with an existing version label.
    InsertPolicyVersion(PolicyVersionRow),
    /// Places a legal hold; conflicts with an existing id.
    InsertHold(HoldRow),
    /// Releases a legal hold (idempotent: the first release time stays); the hold must exist.
    ReleaseHold {
        /// Which hold.
        id: HoldId,
        /// When.
        at: Timestamp,
    },
    /// Registers a media object (normally [`MediaState::Pending`], before its bytes are put);
    /// conflicts with an existing id. The subject must exist.
    InsertMedia(MediaRow),
    /// Changes a media object's lifecycle fields; the object must exist.
    UpdateMedia {
        /// Which object.
        id: MediaId,
        /// What changes.
        update: MediaUpdate,
    },
    /// Deletes a media row; a missing row is not an error (deletions are idempotent). The
    /// object's bytes are the media layer's to delete, before or after.
    DeleteMedia(MediaId),
    /// Registers a data-subject request; conflicts with an existing id. The subject must exist.
    InsertRequest(RequestRow),
    /// Changes a request, only if it is still at `expected_version` (what the caller read):
    /// otherwise [`StoreError::Conflict`](crate::StoreError::Conflict) and nothing changes, so two
    /// instances can never apply the same transition twice. The version then goes up by one.
    /// A missing request is [`StoreError::NotFound`](crate::StoreError::NotFound).
    UpdateRequest {
        /// Which request.
        id: RequestId,
        /// The version the change was decided on.
        expected_version: u64,
        /// What changes.
        update: RequestUpdate,
    },
    /// Records a disclosure; conflicts with an existing id. The subject must exist when it is
    /// recorded, but the log outlives it (like the consent ledger): it is whom an erasure must
    /// reach.
    InsertDisclosure(DisclosureRow),
    /// Queues a notification in the outbox; conflicts with an existing id.
    InsertNotification(NotificationRow),
    /// Changes a notification; the notification must exist.
    UpdateNotification {
        /// Which notification.
        id: NotificationId,
        /// What changes.
        update: NotificationUpdate,
    },
}

/// A data-subject request. Its kind, state, law and times are in clear (the queue and the
/// deadlines need them); what the requester asked and every free-text reason or notice are in
/// `details`, sealed by the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// The request's id.
    pub id: RequestId,
    /// Whose request.
    pub subject: SubjectId,
    /// What is asked (`access`, `erasure`, ...; the requests crate's `RequestKind`).
    pub kind: String,
    /// Where it is (`received`, `verified`, ...; the requests crate's `RequestState`).
    pub state: String,
    /// The law whose deadlines apply (`PIPL`, `GDPR`, `CCPA`).
    pub law: String,
    /// When it was received.
    pub received_at: Timestamp,
    /// When it must be acknowledged, where the law says (CCPA).
    pub acknowledge_by: Option<Timestamp>,
    /// When it must be answered (the extended date once extended).
    pub due_at: Timestamp,
    /// The original due date, once an extension moved `due_at`.
    pub original_due_at: Option<Timestamp>,
    /// Sealed details (what was asked, reasons, notices); opaque here.
    pub details: Vec<u8>,
    /// Flags raised on receipt (`ccpa.more_than_two_in_12_months`, ...).
    pub flags: Vec<String>,
    /// The pending identity check, if any.
    pub verification: Option<VerificationRow>,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it reached a final state.
    pub closed_at: Option<Timestamp>,
    /// Bumped by every update; see [`Mutation::UpdateRequest`].
    pub version: u64,
}

/// A one-time identity-verification code: only its keyed hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRow {
    /// Keyed hash of the code.
    pub code_hash: [u8; 32],
    /// When it was sent.
    pub issued_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
    /// Wrong codes tried so far.
    pub attempts: u32,
}

/// Changes to a request; `None` leaves a field as it is. There is no `Default`: every update
/// says when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUpdate {
    /// New state.
    pub state: Option<String>,
    /// New due date (an extension).
    pub due_at: Option<Timestamp>,
    /// The original due date (set with an extension).
    pub original_due_at: Option<Timestamp>,
    /// Re-sealed details.
    pub details: Option<Vec<u8>>,
    /// New flags (replacing the old ones).
    pub flags: Option<Vec<String>>,
    /// `Some(Some(v))` sets the verification, `Some(None)` clears it.
    pub verification: Option<Option<VerificationRow>>,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
    /// When this change happened (always set).
    pub updated_at: Timestamp,
}

/// Which requests to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only in this state.
    pub state: Option<String>,
    /// Only due at or before this.
    pub due_before: Option<Timestamp>,
    /// Only this subject's.
    pub subject: Option<SubjectId>,
    /// Only open ones (not fulfilled or rejected).
    pub open_only: bool,
    /// At most this many (all when 0).
    pub limit: usize,
}

/// One hand-over of a subject's data to a recipient named in the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureRow {
    /// The disclosure's id.
    pub id: DisclosureId,
    /// Whose data.
    pub subject: SubjectId,
    /// The recipient: a processor's or an authority's name as the policy declares it.
    pub recipient: String,
    /// `processor` or `authority`.
    pub recipient_kind: String,
    /// The categories handed over.
    pub categories: Vec<String>,
    /// The purpose it served.
    pub purpose: String,
    /// When.
    pub at: Timestamp,
    /// The legal request's document reference (a court order's or an authority's letter's
    /// number), for disclosures to authorities.
    pub reference: Option<String>,
    /// Where the data went, when abroad (ISO country code).
    pub country: Option<String>,
    /// The transfer mechanism when abroad (`consent`, `standard_contract`, ...).
    pub mechanism: Option<String>,
}

/// A message in the outbox: an erasure notice to a recipient, a verification code for the
/// subject. Its payload is sealed by the vault; delivery runs from this row (retries with
/// backoff), and an erasure request stays open until each notice is acknowledged or marked
/// impossible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// The notification's id.
    pub id: NotificationId,
    /// What it is (`erasure_notice`, `verification_code`, ...).
    pub kind: String,
    /// The request it belongs to.
    pub request: Option<RequestId>,
    /// Whom it concerns.
    pub subject: SubjectId,
    /// To whom: a recipient's name, or `subject`.
    pub recipient: String,
    /// The sealed payload; emptied once it is no longer needed.
    pub payload: Vec<u8>,
    /// `pending`, `delivered`, `acknowledged`, `impossible`, `failed`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next delivery attempt is due (`None`: none is).
    pub next_attempt_at: Option<Timestamp>,
    /// The stable code of the last delivery failure.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: Timestamp,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
    /// When it was acknowledged or marked impossible.
    pub settled_at: Option<Timestamp>,
    /// Why it is impossible, sealed.
    pub reason: Option<Vec<u8>>,
}

/// Changes to a notification; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationUpdate {
    /// New state.
    pub state: Option<String>,
    /// New attempt count.
    pub attempts: Option<u32>,
    /// `Some(x)` sets the next attempt time (`Some(None)`: no further attempt).
    pub next_attempt_at: Option<Option<Timestamp>>,
    /// `Some(x)` sets the last error.
    pub last_error: Option<Option<String>>,
    /// Delivered at.
    pub delivered_at: Option<Timestamp>,
    /// Settled at.
    pub settled_at: Option<Timestamp>,
    /// A sealed reason.
    pub reason: Option<Vec<u8>>,
    /// A new payload (empty to wipe it).
    pub payload: Option<Vec<u8>>,
}

/// Where a media object is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaState {
    /// Registered, bytes being uploaded. A pending row older than any upload can take is an
    /// abandoned upload (the process died): the sweeper deletes its bytes, if any, and the row.
    Pending,
    /// Uploaded and readable.
    Stored,
    /// Processing completed (the trigger of `processed` retention rules has happened).
    Processed,
    /// Claimed for deletion: its wrapped key is already destroyed (crypto-shredded) and the
    /// deletion audited; the bytes and the row go next. A crash in between leaves the object in
    /// this state, and the next sweep finishes it.
    Deleting,
}

impl MediaState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Stored => "stored",
            Self::Processed => "processed",
            Self::Deleting => "deleting",
        }
    }

    /// From the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "stored" => Self::Stored,
            "processed" => Self::Processed,
            "deleting" => Self::Deleting,
            _ => return None,
        })
    }
}

/// A processing lease on a media object: one service key may process it, for one purpose,
/// until `expires_at`. An expired lease is as if there were none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The lease's id.
    pub id: LeaseId,
    /// The API key that holds it.
    pub holder: ApiKeyId,
    /// The purpose the gate allowed it for.
    pub purpose: String,
    /// When it was granted.
    pub granted_at: Timestamp,
    /// When it lapses by itself.
    pub expires_at: Timestamp,
}

/// One media object: its bytes live in object storage, sealed under a key of its own that is
/// wrapped by its subject's data key; this row holds that wrapped key and the object's
/// lifecycle. Nothing in it is personal data in clear: ids, policy keys, sizes, times, and a
/// content type constrained to a MIME token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    /// The object's id.
    pub id: MediaId,
    /// Whose it is.
    pub subject: SubjectId,
    /// The policy category key.
    pub category: String,
    /// The purpose it was collected for.
    pub purpose: String,
    /// The subject data key that wraps the object key.
    pub key: KeyId,
    /// The object key, wrapped (bound to the object id); empty once the object is shredded.
    pub wrapped_key: Vec<u8>,
    /// Where the sealed bytes are in object storage.
    pub location: String,
    /// The content type the uploader declared (`image/jpeg`).
    pub content_type: String,
    /// Plaintext length in bytes (0 while pending).
    pub size: u64,
    /// Sealed length in bytes (0 while pending).
    pub stored_size: u64,
    /// Lifecycle state.
    pub state: MediaState,
    /// The input this object is an output of, if it is one.
    pub parent: Option<MediaId>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When processing completed.
    pub processed_at: Option<Timestamp>,
    /// The retention rule that governs it.
    pub rule: String,
    /// When it expires; `None` while its rule's trigger has not happened.
    pub expires_at: Option<Timestamp>,
    /// Kept through an erasure, storage-only, until its own expiry.
    pub statutory: bool,
    /// The current lease, if any (it may have expired).
    pub lease: Option<LeaseRow>,
    /// The SHA-256 of the plaintext, when the uploader announced it and the upload matched it,
    /// sealed by the vault; empty when unknown, and emptied when the object is shredded.
    pub digest: Vec<u8>,
}

/// Changes to a media row; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaUpdate {
    /// New state.
    pub state: Option<MediaState>,
    /// Plaintext and sealed sizes, set when the upload completes.
    pub sizes: Option<(u64, u64)>,
    /// New expiry.
    pub expires_at: Option<Timestamp>,
    /// When processing completed.
    pub processed_at: Option<Timestamp>,
    /// `Some(Some(lease))` grants a lease, `Some(None)` clears it.
    pub lease: Option<Option<LeaseRow>>,
    /// Compare-and-set on the lease: when `Some(expected)`, the update applies only if the
    /// object's lease id is still `expected` (`Some(None)`: no lease at all; an expired lease is
    /// still named by its id); otherwise the whole batch fails with
    /// [`crate::StoreError::Conflict`]. How two callers racing for the same free object are told
    /// apart: one wins, the other conflicts.
    pub expected_lease: Option<Option<LeaseId>>,
    /// The sealed plaintext digest, set when the upload completes.
    pub digest: Option<Vec<u8>>,
    /// `true` empties the wrapped key and the sealed digest (crypto-shreds the object).
    pub shred: bool,
}

/// A media object the sweeper claimed for deletion (now [`MediaState::Deleting`], key
/// shredded, deletion audited), with what its audit entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptMedia {
    /// The object's id.
    pub id: MediaId,
    /// Whose it was.
    pub subject: SubjectId,
    /// Its category.
    pub category: String,
    /// The rule that expired it.
    pub rule: String,
    /// Where its bytes are, for the media layer to delete.
    pub location: String,
}

/// A legal hold: suspends retention deletion for a subject, a category, or one category of one
/// subject (both `None` holds everything). It names people only by pseudonymous id; `reason` is
/// the operator's own text (a case number, a regulator's letter), never personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRow {
    /// The hold's id.
    pub id: HoldId,
    /// The subject it covers, or every subject.
    pub subject: Option<SubjectId>,
    /// The category it covers, or every category.
    pub category: Option<String>,
    /// Why (1 to 500 characters).
    pub reason: String,
    /// When it was placed.
    pub created_at: Timestamp,
    /// When it ends by itself, if it does.
    pub ends_at: Option<Timestamp>,
    /// When it was released, if it was.
    pub released_at: Option<Timestamp>,
}

impl HoldRow {
    /// Whether the hold keeps a record of `category` of `subject` at `now`: not released, not
    /// ended, and matching the record's subject and category where it names them. The stores
    /// evaluate the same condition in SQL when they sweep.
    pub fn applies(&self, subject: SubjectId, category: &str, now: Timestamp) -> bool {
        self.is_active(now)
            && self.subject.is_none_or(|held| held == subject)
            && self.category.as_deref().is_none_or(|held| held == category)
    }

    /// Whether the hold is in force at `now`: not released and not ended.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.released_at.is_none() && self.ends_at.is_none_or(|end| end > now)
    }
}

/// A record the sweeper deleted, with what its audit entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptRecord {
    /// The record's id.
    pub id: RecordId,
    /// Whose it was.
    pub subject: SubjectId,
    /// Its category.
    pub category: String,
    /// The retention rule that expired it.
    pub rule: String,
    /// Whether it was statutory (kept through an erasure until this expiry).
    pub statutory: bool,
}

/// What the sweeper takes, a record or a media object: backends share one sweep transaction
/// (select the victims under lock, act on them, audit each) over this.
pub trait Expired {
    /// The victim's id, as stored.
    fn id_bytes(&self) -> &[u8; 16];

    /// Its [`RetentionDeleted`](EventKind::RetentionDeleted) audit event: subject, category,
    /// id and rule, by `actor` at `now`.
    fn audit_event(&self, now: Timestamp, actor: &str) -> AuditEvent;
}

/// Records and media objects are swept alike: the same id bytes, the same audit event.
macro_rules! expired {
    ($($victim:ty),+) => {$(
        impl Expired for $victim {
            fn id_bytes(&self) -> &[u8; 16] {
                self.id.as_bytes()
            }

            fn audit_event(&self, now: Timestamp, actor: &str) -> AuditEvent {
                AuditEvent::new(EventKind::RetentionDeleted, now.as_millis())
                    .with_actor(actor)
                    .with_subject(self.subject.to_string())
                    .with_category(self.category.clone())
                    .with_record(self.id.to_string())
                    .with_rule(self.rule.clone())
            }
        }
    )+};
}

expired!(SweptRecord, SweptMedia);

/// Due records of one category and rule, as [`DataStore::count_expired`](crate::DataStore::count_expired)
/// counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredCount {
    /// The category.
    pub category: String,
    /// The retention rule.
    pub rule: String,
    /// Expired records no hold applies to: the next sweep deletes them.
    pub due: u64,
    /// Expired records a hold keeps.
    pub held: u64,
}

/// What a consent-ledger event says. The ledger is append-only: the gate reads the latest
/// event per purpose (and the subject's restriction events) to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentEventKind {
    /// Consent given.
    Given,
    /// Consent withdrawn: stops future processing, earlier processing stays valid.
    Withdrawn,
    /// Consent refused when asked.
    Refused,
    /// Consent lapsed at its expiry.
    Expired,
    /// Consent given again after a policy change or before expiry.
    Renewed,
    /// The subject objected to processing for these purposes.
    Objected,
    /// The subject restricted all processing (purposes empty) pending a request.
    Restricted,
    /// A restriction was lifted.
    Unrestricted,
}

impl ConsentEventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::Withdrawn => "withdrawn",
            Self::Refused => "refused",
            Self::Expired => "expired",
            Self::Renewed => "renewed",
            Self::Objected => "objected",
            Self::Restricted => "restricted",
            Self::Unrestricted => "unrestricted",
        }
    }

    /// From the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "given" => Self::Given,
            "withdrawn" => Self::Withdrawn,
            "refused" => Self::Refused,
            "expired" => Self::Expired,
            "renewed" => Self::Renewed,
            "objected" => Self::Objected,
            "restricted" => Self::Restricted,
            "unrestricted" => Self::Unrestricted,
            _ => return None,
        })
    }
}

/// One event in a subject's consent ledger. It holds policy keys, ids and times: the fact of a
/// consent, not the personal data it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    /// The event's id.
    pub id: ConsentId,
    /// Whose consent.
    pub subject: SubjectId,
    /// The purposes it covers; more than one means a bundled consent.
    pub purposes: Vec<String>,
    /// What happened.
    pub kind: ConsentEventKind,
    /// A guardian who expressed it for the subject, if not the subject.
    pub guardian: Option<SubjectId>,
    /// Whether that guardian's identity and authority were verified.
    pub guardian_verified: bool,
    /// The policy version the subject was shown.
    pub policy_version: String,
    /// How it was collected (`app_dialog`, `web_form`, `paper`...).
    pub method: String,
    /// When.
    pub at: Timestamp,
    /// When a given consent lapses, if it does.
    pub expires_at: Option<Timestamp>,
}

/// An API key. Only a hash of its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// The key's id (the public part of the token).
    pub id: ApiKeyId,
    /// A name for people (`transcription-worker`).
    pub name: String,
    /// SHA-256 of the secret part.
    pub secret_hash: [u8; 32],
    /// Admin keys may do everything; service keys only act for their purposes.
    pub admin: bool,
    /// The purposes a service key may act for.
    pub purposes: Vec<String>,
    /// When created.
    pub created_at: Timestamp,
    /// When revoked.
    pub revoked_at: Option<Timestamp>,
}

/// A published version of the policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRow {
    /// The version label from the file.
    pub version: String,
    /// The TOML source as published.
    pub source: String,
    /// When it was published here.
    pub published_at: Timestamp,
    /// Purposes whose earlier consents stop counting (the material changes of this version).
    pub fresh_consent_purposes: Vec<String>,
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
