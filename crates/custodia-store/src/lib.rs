//! Storage behind traits. The vault's domain logic talks only to [`DataStore`] and [`KeyStore`];
//! each backend (SQLite embedded, PostgreSQL for scale-out) implements both, and the
//! [`conformance`] suite (feature `conformance`) proves every backend behaves the same.
//!
//! The two stores are deliberately separate (their own file or schema): destroying a subject's
//! data key in the key store erases every copy of its data, including copies of the data store
//! in backups. Stores hold only ciphertext, wrapped keys and pseudonymous ids.
//!
//! The traits are synchronous: SQLite is, and the async HTTP layer calls the vault from blocking
//! tasks. A [`WriteBatch`] is the unit of atomicity: its mutations and its audit events commit
//! together or not at all, and batching many operations into one commit is the group commit.

pub mod error;
pub mod rows;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::StoreError;
pub use rows::{
    ApiKeyRow, CommitReceipt, ConsentEventKind, ConsentRow, DataKeyKind, DataKeyRow, DisclosureRow,
    EpochRow, Expired, ExpiredCount, HoldRow, KeyStoreMeta, LeaseRow, MediaRow, MediaState,
    MediaUpdate, Mutation, NotificationRow, NotificationUpdate, PolicyVersionRow, RecordRow,
    RequestFilter, RequestRow, RequestUpdate, SubjectRow, SubjectUpdate, SweptMedia, SweptRecord,
    VerificationRow, WriteBatch,
};

use custodia_audit::{Anchor, AuditEntry, EventKind};
use custodia_core::{
    ApiKeyId, KeyId, MediaId, NotificationId, RecordId, RequestId, SubjectId, Timestamp,
};

/// The data store's schema version this build writes (backends number the key store's and the
/// keyring's schemas separately, each by its own migrations). A store at a newer version than a
/// build knows is refused ([`StoreError::SchemaTooNew`]) rather than misread.
pub const SCHEMA_VERSION: u32 = 6;

/// Subjects, encrypted records and the audit chain.
pub trait DataStore: Send + Sync + std::fmt::Debug {
    /// Applies a batch atomically: every mutation and every audit event (chained after the
    /// current head) commit together, or nothing does. Returns the new audit head.
    fn commit(&self, batch: WriteBatch) -> Result<CommitReceipt, StoreError>;

    /// A subject by id.
    fn subject(&self, id: SubjectId) -> Result<Option<SubjectRow>, StoreError>;

    /// A subject by the keyed hash of its external id.
    fn subject_by_lookup(&self, lookup: &[u8; 32]) -> Result<Option<SubjectRow>, StoreError>;

    /// A record by id.
    fn record(&self, id: RecordId) -> Result<Option<RecordRow>, StoreError>;

    /// A subject's records, oldest first, optionally of one category.
    fn records_of(
        &self,
        subject: SubjectId,
        category: Option<&str>,
    ) -> Result<Vec<RecordRow>, StoreError>;

    /// How many statutory records a subject has. The default reads the subject's records;
    /// backends answer with a count query.
    fn count_statutory_records(&self, subject: SubjectId) -> Result<u64, StoreError> {
        Ok(self
            .records_of(subject, None)?
            .iter()
            .filter(|record| record.statutory)
            .count() as u64)
    }

    /// Records whose expiry is at or before `now`, oldest expiry first, at most `limit`.
    fn expired_records(&self, now: Timestamp, limit: usize) -> Result<Vec<RecordRow>, StoreError>;

    /// Deletes up to `limit` records expired at `now` that no hold applies to (see
    /// [`HoldRow::applies`]), oldest expiry first, and appends one
    /// [`RetentionDeleted`](custodia_audit::EventKind::RetentionDeleted) entry per record (its
    /// subject, category, id and rule, by `actor`, at `now`), all in one transaction: a crash
    /// deletes and audits all of them or none. Two handles sweeping at once never take the same
    /// record, so nothing is deleted or audited twice. Returns what was deleted, in order.
    fn sweep_expired(
        &self,
        now: Timestamp,
        limit: usize,
        actor: &str,
    ) -> Result<Vec<SweptRecord>, StoreError>;

    /// Expired records and media objects (stored or processed) at `now` per category and rule,
    /// split into due (the next sweep deletes them) and held, ordered by category then rule.
    /// Counts only: dry runs and reports read no record.
    fn count_expired(&self, now: Timestamp) -> Result<Vec<ExpiredCount>, StoreError>;

    /// A media object by id.
    fn media(&self, id: MediaId) -> Result<Option<MediaRow>, StoreError>;

    /// A subject's media objects, oldest first, optionally of one category.
    fn media_of(
        &self,
        subject: SubjectId,
        category: Option<&str>,
    ) -> Result<Vec<MediaRow>, StoreError>;

    /// Media objects in `state` registered at or before `before`, oldest first, at most
    /// `limit`: the sweeper finishes [`MediaState::Deleting`] ones and cleans up abandoned
    /// [`MediaState::Pending`] uploads with it.
    fn media_in_state(
        &self,
        state: MediaState,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<MediaRow>, StoreError>;

    /// Claims up to `limit` media objects expired at `now` (state stored or processed, expiry
    /// at or before `now`) that no hold applies to, oldest expiry first: in one transaction each
    /// becomes [`MediaState::Deleting`] with its wrapped key emptied and its lease cleared, and
    /// gets one [`RetentionDeleted`](custodia_audit::EventKind::RetentionDeleted) entry (its
    /// subject, category, id and rule, by `actor`, at `now`). Two handles claiming at once
    /// never take the same object. Returns what was claimed, in order; the caller deletes the
    /// bytes and then the rows.
    fn claim_expired_media(
        &self,
        now: Timestamp,
        limit: usize,
        actor: &str,
    ) -> Result<Vec<SweptMedia>, StoreError>;

    /// A data-subject request by id.
    fn request(&self, id: RequestId) -> Result<Option<RequestRow>, StoreError>;

    /// Requests matching `filter`, by due date (earliest first), then id.
    fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError>;

    /// A subject's disclosures, in the order they were recorded.
    fn disclosures_of(&self, subject: SubjectId) -> Result<Vec<DisclosureRow>, StoreError>;

    /// A notification by id.
    fn notification(&self, id: NotificationId) -> Result<Option<NotificationRow>, StoreError>;

    /// A request's notifications, in the order they were queued.
    fn notifications_of(&self, request: RequestId) -> Result<Vec<NotificationRow>, StoreError>;

    /// Claims up to `limit` notifications due for delivery at `now` (state `pending`,
    /// `next_attempt_at` at or before `now`), oldest due first, by moving their
    /// `next_attempt_at` to `until` in one transaction: two handles claiming at once never
    /// take the same one, and a deliverer that dies lets the claim lapse at `until`. Returns
    /// the claimed rows as they were before the claim.
    fn claim_due_notifications(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError>;

    /// Every legal hold, released and ended ones too, in the order they were placed.
    fn holds(&self) -> Result<Vec<HoldRow>, StoreError>;

    /// How many records the store holds (all subjects).
    fn count_records(&self) -> Result<u64, StoreError>;

    /// A subject's consent ledger, in the order the events were appended.
    fn consents_of(&self, subject: SubjectId) -> Result<Vec<ConsentRow>, StoreError>;

    /// An API key by id.
    fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRow>, StoreError>;

    /// Every API key, oldest first.
    fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError>;

    /// Every published policy version, oldest first.
    fn policy_versions(&self) -> Result<Vec<PolicyVersionRow>, StoreError>;

    /// The audit chain's head, `None` when empty.
    fn audit_head(&self) -> Result<Option<Anchor>, StoreError>;

    /// Audit entries with `seq >= from`, in order, at most `limit`.
    fn audit_entries(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Audit entries with `from <= seq <= through` whose kind is one of `kinds`, in order, at
    /// most `limit` (entries of other kinds are skipped and do not count): what a reader
    /// watching for some kinds of change needs, without decoding the rest of the log (gate
    /// decisions are most of a busy one). The default pages through
    /// [`DataStore::audit_entries`]; backends filter in their query.
    fn audit_entries_of(
        &self,
        from: u64,
        through: u64,
        kinds: &[EventKind],
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        audit_entries_by_paging(self, from, through, kinds, limit)
    }
}

/// [`DataStore::audit_entries_of`] by paging through [`DataStore::audit_entries`] and keeping the
/// entries of `kinds`: the default, and the reference a backend's own query must agree with.
pub fn audit_entries_by_paging<S: DataStore + ?Sized>(
    store: &S,
    from: u64,
    through: u64,
    kinds: &[EventKind],
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    const PAGE: usize = 1024;
    let mut found = Vec::new();
    let mut next = from;
    while next <= through && found.len() < limit {
        let page = store.audit_entries(next, PAGE)?;
        let Some(last) = page.last().map(|entry| entry.seq) else {
            break;
        };
        for entry in page {
            if entry.seq > through || found.len() == limit {
                return Ok(found);
            }
            if kinds.contains(&entry.event.kind) {
                found.push(entry);
            }
        }
        match last.checked_add(1) {
            Some(after) => next = after,
            None => break,
        }
    }
    Ok(found)
}

/// Wrapped keys: the root key's verifier, epoch keys, and data keys.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// The store's metadata, `None` before [`KeyStore::initialise`].
    fn meta(&self) -> Result<Option<KeyStoreMeta>, StoreError>;

    /// Writes the metadata and the first epoch. Fails with [`StoreError::Conflict`] when the
    /// store is already initialised.
    fn initialise(&self, meta: &KeyStoreMeta, first_epoch: &EpochRow) -> Result<(), StoreError>;

    /// Every live epoch, oldest first.
    fn epochs(&self) -> Result<Vec<EpochRow>, StoreError>;

    /// Adds an epoch, which becomes the current one.
    fn add_epoch(&self, epoch: &EpochRow) -> Result<(), StoreError>;

    /// Destroys an epoch key. Refused with [`StoreError::Conflict`] while data keys are still
    /// wrapped by it, or when it is the current epoch.
    fn destroy_epoch(&self, id: u32) -> Result<(), StoreError>;

    /// Stores new data keys.
    fn insert_data_keys(&self, rows: &[DataKeyRow]) -> Result<(), StoreError>;

    /// A data key by id.
    fn data_key(&self, id: KeyId) -> Result<Option<DataKeyRow>, StoreError>;

    /// The data keys of one subject.
    fn data_keys_of(&self, owner: SubjectId) -> Result<Vec<DataKeyRow>, StoreError>;

    /// Data keys wrapped by `epoch`, in id order after `after`, at most `limit` (for re-keying).
    fn data_keys_in_epoch(
        &self,
        epoch: u32,
        after: Option<KeyId>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>, StoreError>;

    /// Replaces the wrapping (epoch and wrapped bytes) of existing keys, atomically.
    fn rewrap_data_keys(&self, rows: &[DataKeyRow]) -> Result<(), StoreError>;

    /// Destroys data keys so nothing encrypted under them can be read again; returns how many
    /// existed. Deleted bytes are overwritten where the backend allows (SQLite `secure_delete`).
    fn destroy_data_keys(&self, ids: &[KeyId]) -> Result<usize, StoreError>;
}
