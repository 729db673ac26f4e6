//! [`SqliteDataStore`]: subjects, encrypted records, media objects, the consent ledger, API
//! keys, published policy versions, legal holds, data-subject requests, the disclosure log, the
//! notification outbox and the audit chain in `data.db`.
//!
//! A commit is one `BEGIN IMMEDIATE` transaction: the audit head is read under the write lock,
//! so two handles (two processes) on the same file append to one chain without forking it, and
//! every statement is a cached prepared statement, so a large batch costs one B-tree insert per
//! row and one fsync per commit.

use std::path::Path;

use custodia_audit::{Anchor, AuditEntry, AuditEvent, Chain, EventKind};
use custodia_core::{
    ApiKeyId, ConsentId, DisclosureId, HoldId, KeyId, LeaseId, MediaId, NotificationId, RecordId,
    RequestId, SubjectId, Timestamp,
};
use custodia_store::{
    ApiKeyRow, CommitReceipt, ConsentEventKind, ConsentRow, DataStore, DisclosureRow, Expired,
    ExpiredCount, HoldRow, LeaseRow, MediaRow, MediaState, MediaUpdate, Mutation, NotificationRow,
    NotificationUpdate, PolicyVersionRow, RecordRow, RequestFilter, RequestRow, RequestUpdate,
    StoreError, SubjectRow, SubjectUpdate, SweptMedia, SweptRecord, VerificationRow, WriteBatch,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::db::{Create, Db, Settings};
use crate::error::{Context, is_foreign_key_violation, limit, sql_error, to_i64};
use crate::schema;

/// Columns of `subjects`, in the order [`subject_from_row`] reads them.
macro_rules! subject_columns {
    () => {
        "id, lookup, profile, key, created_at, last_active_at, closed_at, erased_at"
    };
}

/// Columns of `records`, in the order [`record_from_row`] reads them.
macro_rules! record_columns {
    () => {
        "id, subject, category, purpose, key, ciphertext, collected_at, rule, expires_at, statutory"
    };
}

/// Columns of `media`, in the order [`media_from_row`] reads them.
macro_rules! media_columns {
    () => {
        "id, subject, category, purpose, key, wrapped_key, location, content_type, size, \
         stored_size, state, parent, created_at, processed_at, rule, expires_at, statutory, \
         lease_id, lease_holder, lease_purpose, lease_granted_at, lease_expires_at, digest"
    };
}

/// Columns of `requests`, in the order [`request_from_row`] reads them.
macro_rules! request_columns {
    () => {
        "id, subject, kind, state, law, received_at, acknowledge_by, due_at, original_due_at, \
         flags, verification_code_hash, verification_issued_at, verification_expires_at, \
         verification_attempts, updated_at, closed_at, version, details"
    };
}

/// Columns of `disclosures`, in the order [`disclosure_from_row`] reads them.
macro_rules! disclosure_columns {
    () => {
        "id, subject, recipient, recipient_kind, categories, purpose, at, reference, country, \
         mechanism"
    };
}

/// Columns of `notifications`, in the order [`notification_from_row`] reads them.
macro_rules! notification_columns {
    () => {
        "id, kind, request, subject, recipient, state, attempts, next_attempt_at, last_error, \
         created_at, delivered_at, settled_at, reason, payload"
    };
}

/// Columns of `audit`, in the order [`entry_from_row`] reads them.
macro_rules! audit_columns {
    () => {
        "seq, prev_hash, hash, kind, at, actor, subject, category, purpose, record, outcome, \
         reasons, rule"
    };
}

/// Columns of `consent_events`, in the order [`consent_from_row`] reads them.
macro_rules! consent_columns {
    () => {
        "id, subject, purposes, kind, guardian, guardian_verified, policy_version, method, at, \
         expires_at"
    };
}

/// Columns of `api_keys`, in the order [`api_key_from_row`] reads them.
macro_rules! api_key_columns {
    () => {
        "id, name, secret_hash, admin, purposes, created_at, revoked_at"
    };
}

/// Columns of `policy_versions`, in the order [`policy_version_from_row`] reads them.
macro_rules! policy_version_columns {
    () => {
        "version, published_at, fresh_consent_purposes, source"
    };
}

const INSERT_SUBJECT: &str = concat!(
    "INSERT INTO subjects (",
    subject_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
);
// COALESCE keeps a column when its update field is `None`, so one statement serves every
// combination of fields.
const UPDATE_SUBJECT: &str = "UPDATE subjects SET \
    last_active_at = COALESCE(?2, last_active_at), \
    closed_at = COALESCE(?3, closed_at), \
    erased_at = COALESCE(?4, erased_at), \
    profile = COALESCE(?5, profile) \
    WHERE id = ?1";
const INSERT_RECORD: &str = concat!(
    "INSERT INTO records (",
    record_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
);
const SET_EXPIRY: &str =
    "UPDATE records SET expires_at = ?3 WHERE subject = ?1 AND rule = ?2 AND expires_at IS NULL";
const SET_MEDIA_EXPIRY: &str =
    "UPDATE media SET expires_at = ?3 WHERE subject = ?1 AND rule = ?2 AND expires_at IS NULL";
const INSERT_MEDIA: &str = concat!(
    "INSERT INTO media (",
    media_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
     ?18, ?19, ?20, ?21, ?22, ?23)"
);
// COALESCE keeps a column when its update field is `None`; the lease columns change together
// when ?7 says the lease changes (to ?8..?12, all NULL to clear it), ?13 empties the key and the
// digest, and ?14 sets the digest. When ?15, the row changes only if its lease id is ?16.
const UPDATE_MEDIA: &str = "UPDATE media SET \
    state = COALESCE(?2, state), \
    size = COALESCE(?3, size), \
    stored_size = COALESCE(?4, stored_size), \
    expires_at = COALESCE(?5, expires_at), \
    processed_at = COALESCE(?6, processed_at), \
    lease_id = CASE WHEN ?7 THEN ?8 ELSE lease_id END, \
    lease_holder = CASE WHEN ?7 THEN ?9 ELSE lease_holder END, \
    lease_purpose = CASE WHEN ?7 THEN ?10 ELSE lease_purpose END, \
    lease_granted_at = CASE WHEN ?7 THEN ?11 ELSE lease_granted_at END, \
    lease_expires_at = CASE WHEN ?7 THEN ?12 ELSE lease_expires_at END, \
    wrapped_key = CASE WHEN ?13 THEN X'' ELSE wrapped_key END, \
    digest = CASE WHEN ?13 THEN X'' ELSE COALESCE(?14, digest) END \
    WHERE id = ?1 AND (NOT ?15 OR lease_id IS ?16)";
// Whether a media object exists, to tell a lost compare-and-set from a missing row.
const MEDIA_EXISTS: &str = "SELECT 1 FROM media WHERE id = ?1";
const DELETE_MEDIA: &str = "DELETE FROM media WHERE id = ?1";
const DELETE_RECORD: &str = "DELETE FROM records WHERE id = ?1";
const DELETE_RECORDS_OF: &str = "DELETE FROM records WHERE subject = ?1";
const DELETE_NON_STATUTORY_RECORDS_OF: &str =
    "DELETE FROM records WHERE subject = ?1 AND statutory = 0";
const DELETE_SUBJECT: &str = "DELETE FROM subjects WHERE id = ?1";
const INSERT_AUDIT: &str = concat!(
    "INSERT INTO audit (",
    audit_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
);
// The ledger has no foreign key to subjects (it outlives them), so the insert selects from
// subjects instead: no row is inserted when the subject does not exist, in the same statement
// and under the same write lock as the insert.
const INSERT_CONSENT: &str = concat!(
    "INSERT INTO consent_events (",
    consent_columns!(),
    ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM subjects WHERE id = ?2"
);
const INSERT_API_KEY: &str = concat!(
    "INSERT INTO api_keys (",
    api_key_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
);
// COALESCE keeps the first revocation time: revoking again changes nothing.
const REVOKE_API_KEY: &str =
    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1";
const INSERT_POLICY_VERSION: &str = concat!(
    "INSERT INTO policy_versions (",
    policy_version_columns!(),
    ") VALUES (?1, ?2, ?3, ?4)"
);
/// Columns of `holds`, in the order [`hold_from_row`] reads them.
macro_rules! hold_columns {
    () => {
        "id, subject, category, reason, created_at, ends_at, released_at"
    };
}

/// Whether a hold in force at `?1` covers the record (or media object) aliased `r` (`m`): the
/// same condition as `HoldRow::applies`, kept in SQL so the sweeper decides in the statement
/// that selects.
macro_rules! held {
    () => {
        held!("r")
    };
    ($row:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM holds h WHERE h.released_at IS NULL \
             AND (h.ends_at IS NULL OR h.ends_at > ?1) \
             AND (h.subject IS NULL OR h.subject = ",
            $row,
            ".subject) AND (h.category IS NULL OR h.category = ",
            $row,
            ".category))"
        )
    };
}

/// Media objects whose expiry counts: stored or processed ones (a pending upload is not yet
/// data, a deleting one is already claimed), aliased `m`, expired at `?1`. `expires_at IS NOT
/// NULL` lets SQLite use the partial expiry index.
macro_rules! expired_media {
    () => {
        "m.state IN ('stored', 'processed') AND m.expires_at IS NOT NULL AND m.expires_at <= ?1"
    };
}

const INSERT_HOLD: &str = concat!(
    "INSERT INTO holds (",
    hold_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
);
// COALESCE keeps the first release time: releasing again changes nothing.
const RELEASE_HOLD: &str = "UPDATE holds SET released_at = COALESCE(released_at, ?2) WHERE id = ?1";
// `expires_at IS NOT NULL` lets SQLite use the partial expiry index.
const SWEEP_VICTIMS: &str = concat!(
    "SELECT r.id, r.subject, r.category, r.rule, r.statutory FROM records r \
     WHERE r.expires_at IS NOT NULL AND r.expires_at <= ?1 AND NOT ",
    held!(),
    " ORDER BY r.expires_at, r.pos LIMIT ?2"
);
const COUNT_EXPIRED: &str = concat!(
    "SELECT category, rule, sum(1 - held), sum(held) FROM (SELECT r.category, r.rule, ",
    held!(),
    " AS held FROM records r WHERE r.expires_at IS NOT NULL AND r.expires_at <= ?1 \
     UNION ALL SELECT m.category, m.rule, ",
    held!("m"),
    " AS held FROM media m WHERE ",
    expired_media!(),
    ") GROUP BY category, rule ORDER BY category, rule"
);
const CLAIM_VICTIMS: &str = concat!(
    "SELECT m.id, m.subject, m.category, m.rule, m.location FROM media m WHERE ",
    expired_media!(),
    " AND NOT ",
    held!("m"),
    " ORDER BY m.expires_at, m.pos LIMIT ?2"
);
// Shreds the key and drops the lease along with the state change: a deleting object can be
// neither read nor processed again.
const CLAIM_MEDIA: &str = "UPDATE media SET state = 'deleting', wrapped_key = X'', digest = X'', \
    lease_id = NULL, lease_holder = NULL, lease_purpose = NULL, lease_granted_at = NULL, \
    lease_expires_at = NULL WHERE id = ?1";
const AUDIT_HEAD: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
// Requests and disclosures outlive their subject like the consent ledger, so they check it the
// same way: the insert selects from subjects and inserts nothing when it does not exist.
const INSERT_REQUEST: &str = concat!(
    "INSERT INTO requests (",
    request_columns!(),
    ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18 \
     FROM subjects WHERE id = ?2"
);
// Applies only while the row is at the version the caller read (?2), and bumps it. COALESCE
// keeps a column when its update field is `None`; the verification columns change together
// when ?8 says it changes (to ?9..?12, all NULL to clear it).
const UPDATE_REQUEST: &str = "UPDATE requests SET \
    state = COALESCE(?3, state), \
    due_at = COALESCE(?4, due_at), \
    original_due_at = COALESCE(?5, original_due_at), \
    details = COALESCE(?6, details), \
    flags = COALESCE(?7, flags), \
    verification_code_hash = CASE WHEN ?8 THEN ?9 ELSE verification_code_hash END, \
    verification_issued_at = CASE WHEN ?8 THEN ?10 ELSE verification_issued_at END, \
    verification_expires_at = CASE WHEN ?8 THEN ?11 ELSE verification_expires_at END, \
    verification_attempts = CASE WHEN ?8 THEN ?12 ELSE verification_attempts END, \
    closed_at = COALESCE(?13, closed_at), \
    updated_at = ?14, \
    version = version + 1 \
    WHERE id = ?1 AND version = ?2";
const REQUEST_VERSION: &str = "SELECT version FROM requests WHERE id = ?1";
const INSERT_DISCLOSURE: &str = concat!(
    "INSERT INTO disclosures (",
    disclosure_columns!(),
    ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM subjects WHERE id = ?2"
);
const INSERT_NOTIFICATION: &str = concat!(
    "INSERT INTO notifications (",
    notification_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
);
// COALESCE keeps a column when its update field is `None`; ?4 and ?6 say whether the nullable
// next attempt (?5) and last error (?7) change, so they can also be cleared.
const UPDATE_NOTIFICATION: &str = "UPDATE notifications SET \
    state = COALESCE(?2, state), \
    attempts = COALESCE(?3, attempts), \
    next_attempt_at = CASE WHEN ?4 THEN ?5 ELSE next_attempt_at END, \
    last_error = CASE WHEN ?6 THEN ?7 ELSE last_error END, \
    delivered_at = COALESCE(?8, delivered_at), \
    settled_at = COALESCE(?9, settled_at), \
    reason = COALESCE(?10, reason), \
    payload = COALESCE(?11, payload) \
    WHERE id = ?1";
// `next_attempt_at IS NOT NULL` keeps never-again rows out, and matches the outbox index.
const DUE_NOTIFICATIONS: &str = concat!(
    "SELECT ",
    notification_columns!(),
    " FROM notifications WHERE state = 'pending' AND next_attempt_at IS NOT NULL \
     AND next_attempt_at <= ?1 ORDER BY next_attempt_at, pos LIMIT ?2"
);
const CLAIM_NOTIFICATION: &str = "UPDATE notifications SET next_attempt_at = ?2 WHERE id = ?1";

/// The data store on `data.db`. Cheap to share: wrap it in an `Arc`.
#[derive(Debug)]
pub struct SqliteDataStore {
    db: Db,
}

impl SqliteDataStore {
    pub(crate) fn open(path: &Path, create: Create) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, &schema::DATA, create)?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// The SQLite settings in force (journal mode, synchronous, secure delete...).
    pub fn settings(&self) -> Result<Settings, StoreError> {
        self.db.settings()
    }

    /// The sweep transaction records and media objects share: up to `limit` victims chosen by
    /// `victims_sql` (bound to `now` and the limit), `act` applied to each, and one
    /// `retention_deleted` entry appended per victim, all in one write transaction.
    /// `BEGIN IMMEDIATE` serialises sweepers (and every commit) of every handle, so victims
    /// are chosen, changed and audited without anyone else seeing or taking them in between.
    fn take_expired<V: Expired>(
        &self,
        now: Timestamp,
        limit: usize,
        actor: &str,
        victims_sql: &str,
        from_row: fn(&Row<'_>) -> rusqlite::Result<V>,
        act: impl Fn(&Transaction<'_>, &V) -> Result<(), StoreError>,
    ) -> Result<Vec<V>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.db.write(|tx| {
            let stored_head = read_head(tx)?;
            let victims = query_all(
                tx,
                victims_sql,
                params![now.as_millis(), self::limit(limit)],
                from_row,
            )
            .context("selecting expired rows to sweep")?;
            if victims.is_empty() {
                return Ok(victims);
            }
            let mut events = Vec::with_capacity(victims.len());
            for victim in &victims {
                act(tx, victim)?;
                events.push(victim.audit_event(now, actor));
            }
            append_audit(tx, stored_head, events)?;
            Ok(victims)
        })
    }
}

impl DataStore for SqliteDataStore {
    fn commit(&self, batch: WriteBatch) -> Result<CommitReceipt, StoreError> {
        if batch.is_empty() {
            return Ok(CommitReceipt {
                head: self.audit_head()?,
                deleted_records: 0,
            });
        }
        self.db.write(|tx| {
            let stored_head = read_head(tx)?;
            let mut deleted_records = 0;
            for mutation in batch.mutations {
                deleted_records += apply(tx, mutation)?;
            }
            if batch.audit.is_empty() {
                return Ok(CommitReceipt {
                    head: stored_head,
                    deleted_records,
                });
            }
            Ok(CommitReceipt {
                head: Some(append_audit(tx, stored_head, batch.audit)?),
                deleted_records,
            })
        })
    }

    fn sweep_expired(
        &self,
        now: Timestamp,
        limit: usize,
        actor: &str,
    ) -> Result<Vec<SweptRecord>, StoreError> {
        self.take_expired(
            now,
            limit,
            actor,
            SWEEP_VICTIMS,
            swept_from_row,
            |tx, victim| {
                delete(tx, DELETE_RECORD, victim.id.as_bytes())
                    .map(drop)
                    .with_context(|| format!("sweeping record {}", victim.id))
            },
        )
    }

    fn count_expired(&self, now: Timestamp) -> Result<Vec<ExpiredCount>, StoreError> {
        self.db.read(|conn| {
            read_all(
                conn,
                COUNT_EXPIRED,
                params![now.as_millis()],
                expired_count_from_row,
                || "counting expired records and media objects".to_owned(),
            )
        })
    }

    fn media(&self, id: MediaId) -> Result<Option<MediaRow>, StoreError> {
        const SQL: &str = concat!("SELECT ", media_columns!(), " FROM media WHERE id = ?1");
        self.db.read(|conn| {
            let context = || format!("reading media object {id}");
            let mut stmt = conn.prepare_cached(SQL).with_context(context)?;
            let mut rows = stmt.query(params![id.as_bytes()]).with_context(context)?;
            rows.next()
                .with_context(context)?
                .map(media_from_row)
                .transpose()
        })
    }

    fn media_of(
        &self,
        subject: SubjectId,
        category: Option<&str>,
    ) -> Result<Vec<MediaRow>, StoreError> {
        const ALL: &str = concat!(
            "SELECT ",
            media_columns!(),
            " FROM media WHERE subject = ?1 ORDER BY created_at, pos"
        );
        const ONE_CATEGORY: &str = concat!(
            "SELECT ",
            media_columns!(),
            " FROM media WHERE subject = ?1 AND category = ?2 ORDER BY created_at, pos"
        );
        let context = || format!("reading the media objects of subject {subject}");
        self.db.read(|conn| match category {
            None => read_all(
                conn,
                ALL,
                params![subject.as_bytes()],
                media_from_row,
                context,
            ),
            Some(category) => read_all(
                conn,
                ONE_CATEGORY,
                params![subject.as_bytes(), category],
                media_from_row,
                context,
            ),
        })
    }

    fn media_in_state(
        &self,
        state: MediaState,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<MediaRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            media_columns!(),
            " FROM media WHERE state = ?1 AND created_at <= ?2 ORDER BY created_at, pos LIMIT ?3"
        );
        self.db.read(|conn| {
            read_all(
                conn,
                SQL,
                params![state.as_str(), before.as_millis(), self::limit(limit)],
                media_from_row,
                || format!("reading {} media objects", state.as_str()),
            )
        })
    }

    fn claim_expired_media(
        &self,
        now: Timestamp,
        limit: usize,
        actor: &str,
    ) -> Result<Vec<SweptMedia>, StoreError> {
        self.take_expired(
            now,
            limit,
            actor,
            CLAIM_VICTIMS,
            claimed_from_row,
            |tx, victim| {
                tx.prepare_cached(CLAIM_MEDIA)
                    .and_then(|mut stmt| stmt.execute(params![victim.id.as_bytes()]))
                    .map(drop)
                    .with_context(|| format!("claiming media object {}", victim.id))
            },
        )
    }

    fn request(&self, id: RequestId) -> Result<Option<RequestRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            request_columns!(),
            " FROM requests WHERE id = ?1"
        );
        self.db.read(|conn| {
            let context = || format!("reading request {id}");
            let mut stmt = conn.prepare_cached(SQL).with_context(context)?;
            let mut rows = stmt.query(params![id.as_bytes()]).with_context(context)?;
            rows.next()
                .with_context(context)?
                .map(request_from_row)
                .transpose()
        })
    }

    fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        // Only the conditions the filter sets are in the text, so SQLite can pick the state or
        // the subject index; the statement cache keeps each of the few shapes compiled.
        let mut sql = String::from(concat!(
            "SELECT ",
            request_columns!(),
            " FROM requests WHERE 1 = 1"
        ));
        let state = filter.state.as_deref();
        let due_before = filter.due_before.map(Timestamp::as_millis);
        let subject = filter.subject.as_ref().map(SubjectId::as_bytes);
        let limit = match filter.limit {
            0 => i64::MAX,
            n => self::limit(n),
        };
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&limit];
        if let Some(state) = &state {
            values.push(state);
            sql.push_str(&format!(" AND state = ?{}", values.len()));
        }
        if let Some(due_before) = &due_before {
            values.push(due_before);
            sql.push_str(&format!(" AND due_at <= ?{}", values.len()));
        }
        if let Some(subject) = &subject {
            values.push(subject);
            sql.push_str(&format!(" AND subject = ?{}", values.len()));
        }
        if filter.open_only {
            sql.push_str(" AND state NOT IN ('fulfilled', 'rejected')");
        }
        sql.push_str(" ORDER BY due_at, id LIMIT ?1");
        self.db.read(|conn| {
            read_all(conn, &sql, values.as_slice(), request_from_row, || {
                "reading requests".to_owned()
            })
        })
    }

    fn disclosures_of(&self, subject: SubjectId) -> Result<Vec<DisclosureRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            disclosure_columns!(),
            " FROM disclosures WHERE subject = ?1 ORDER BY pos"
        );
        self.db.read(|conn| {
            read_all(
                conn,
                SQL,
                params![subject.as_bytes()],
                disclosure_from_row,
                || format!("reading the disclosures of subject {subject}"),
            )
        })
    }

    fn notification(&self, id: NotificationId) -> Result<Option<NotificationRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE id = ?1"
        );
        self.db.read(|conn| {
            query_one(conn, SQL, params![id.as_bytes()], notification_from_row)
                .with_context(|| format!("reading notification {id}"))
        })
    }

    fn notifications_of(&self, request: RequestId) -> Result<Vec<NotificationRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE request = ?1 ORDER BY pos"
        );
        self.db.read(|conn| {
            query_all(
                conn,
                SQL,
                params![request.as_bytes()],
                notification_from_row,
            )
            .with_context(|| format!("reading the notifications of request {request}"))
        })
    }

    fn claim_due_notifications(
        &self,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // One write transaction, as in `sweep_expired`: `BEGIN IMMEDIATE` serialises claims of
        // every handle, so no notification is claimed twice.
        self.db.write(|tx| {
            let due = query_all(
                tx,
                DUE_NOTIFICATIONS,
                params![now.as_millis(), self::limit(limit)],
                notification_from_row,
            )
            .context("selecting due notifications to claim")?;
            for notification in &due {
                tx.prepare_cached(CLAIM_NOTIFICATION)
                    .and_then(|mut stmt| {
                        stmt.execute(params![notification.id.as_bytes(), until.as_millis()])
                    })
                    .with_context(|| format!("claiming notification {}", notification.id))?;
            }
            Ok(due)
        })
    }

    fn holds(&self) -> Result<Vec<HoldRow>, StoreError> {
        const SQL: &str = concat!("SELECT ", hold_columns!(), " FROM holds ORDER BY pos");
        self.db
            .read(|conn| query_all(conn, SQL, [], hold_from_row).context("reading the legal holds"))
    }

    fn subject(&self, id: SubjectId) -> Result<Option<SubjectRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            subject_columns!(),
            " FROM subjects WHERE id = ?1"
        );
        self.db.read(|conn| {
            query_one(conn, SQL, params![id.as_bytes()], subject_from_row)
                .with_context(|| format!("reading subject {id}"))
        })
    }

    fn subject_by_lookup(&self, lookup: &[u8; 32]) -> Result<Option<SubjectRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            subject_columns!(),
            " FROM subjects WHERE lookup = ?1"
        );
        self.db.read(|conn| {
            query_one(conn, SQL, params![lookup], subject_from_row)
                .context("reading a subject by lookup")
        })
    }

    fn record(&self, id: RecordId) -> Result<Option<RecordRow>, StoreError> {
        const SQL: &str = concat!("SELECT ", record_columns!(), " FROM records WHERE id = ?1");
        self.db.read(|conn| {
            query_one(conn, SQL, params![id.as_bytes()], record_from_row)
                .with_context(|| format!("reading record {id}"))
        })
    }

    fn records_of(
        &self,
        subject: SubjectId,
        category: Option<&str>,
    ) -> Result<Vec<RecordRow>, StoreError> {
        const ALL: &str = concat!(
            "SELECT ",
            record_columns!(),
            " FROM records WHERE subject = ?1 ORDER BY collected_at, pos"
        );
        const ONE_CATEGORY: &str = concat!(
            "SELECT ",
            record_columns!(),
            " FROM records WHERE subject = ?1 AND category = ?2 ORDER BY collected_at, pos"
        );
        self.db.read(|conn| {
            match category {
                None => query_all(conn, ALL, params![subject.as_bytes()], record_from_row),
                Some(category) => query_all(
                    conn,
                    ONE_CATEGORY,
                    params![subject.as_bytes(), category],
                    record_from_row,
                ),
            }
            .with_context(|| format!("reading the records of subject {subject}"))
        })
    }

    fn count_statutory_records(&self, subject: SubjectId) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT count(*) FROM records WHERE subject = ?1 AND statutory = 1";
        self.db.read(|conn| {
            let count: i64 = conn
                .prepare_cached(SQL)
                .and_then(|mut stmt| stmt.query_row(params![subject.as_bytes()], |row| row.get(0)))
                .with_context(|| format!("counting statutory records of subject {subject}"))?;
            u64::try_from(count)
                .map_err(|_| StoreError::Corrupt(format!("record count {count} is negative")))
        })
    }

    fn expired_records(&self, now: Timestamp, limit: usize) -> Result<Vec<RecordRow>, StoreError> {
        // `expires_at IS NOT NULL` lets SQLite use the partial expiry index.
        const SQL: &str = concat!(
            "SELECT ",
            record_columns!(),
            " FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?1 \
             ORDER BY expires_at, pos LIMIT ?2"
        );
        self.db.read(|conn| {
            query_all(
                conn,
                SQL,
                params![now.as_millis(), self::limit(limit)],
                record_from_row,
            )
            .context("reading expired records")
        })
    }

    fn count_records(&self) -> Result<u64, StoreError> {
        self.db.read(|conn| {
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM records")
                .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
                .context("counting records")?;
            u64::try_from(count)
                .map_err(|_| StoreError::Corrupt(format!("record count {count} is negative")))
        })
    }

    fn consents_of(&self, subject: SubjectId) -> Result<Vec<ConsentRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            consent_columns!(),
            " FROM consent_events WHERE subject = ?1 ORDER BY pos"
        );
        self.db.read(|conn| {
            read_all(
                conn,
                SQL,
                params![subject.as_bytes()],
                consent_from_row,
                || format!("reading the consent ledger of subject {subject}"),
            )
        })
    }

    fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE id = ?1"
        );
        self.db.read(|conn| {
            let context = || format!("reading API key {id}");
            let mut stmt = conn.prepare_cached(SQL).with_context(context)?;
            let mut rows = stmt.query(params![id.as_bytes()]).with_context(context)?;
            rows.next()
                .with_context(context)?
                .map(api_key_from_row)
                .transpose()
        })
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        const SQL: &str = concat!("SELECT ", api_key_columns!(), " FROM api_keys ORDER BY pos");
        self.db.read(|conn| {
            read_all(conn, SQL, [], api_key_from_row, || {
                "reading the API keys".to_owned()
            })
        })
    }

    fn policy_versions(&self) -> Result<Vec<PolicyVersionRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            policy_version_columns!(),
            " FROM policy_versions ORDER BY pos"
        );
        self.db.read(|conn| {
            read_all(conn, SQL, [], policy_version_from_row, || {
                "reading the published policy versions".to_owned()
            })
        })
    }

    fn audit_head(&self) -> Result<Option<Anchor>, StoreError> {
        self.db.read(read_head)
    }

    fn audit_entries(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2"
        );
        // Seqs never exceed i64::MAX (custodia_audit::MAX_SEQ), so nothing lies beyond it.
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new());
        };
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(SQL).context("preparing audit read")?;
            let mut rows = stmt
                .query(params![from, self::limit(limit)])
                .context("reading audit entries")?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next().context("reading audit entries")? {
                entries.push(entry_from_row(row)?);
            }
            Ok(entries)
        })
    }

    fn audit_entries_of(
        &self,
        from: u64,
        through: u64,
        kinds: &[EventKind],
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let (Ok(from), through) = (
            i64::try_from(from),
            i64::try_from(through).unwrap_or(i64::MAX),
        ) else {
            return Ok(Vec::new());
        };
        if kinds.is_empty() || from > through {
            return Ok(Vec::new());
        }
        // One placeholder per kind: the same kinds make the same text, so the statement cache
        // compiles it once.
        let mut sql = String::from(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit WHERE seq >= ?1 AND seq <= ?2 AND kind IN ("
        ));
        for n in 0..kinds.len() {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", n + 4));
        }
        sql.push_str(") ORDER BY seq LIMIT ?3");
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).context("preparing audit read")?;
            let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(kinds.len() + 3);
            let limit = self::limit(limit);
            values.push(&from);
            values.push(&through);
            values.push(&limit);
            let names: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
            for name in &names {
                values.push(name);
            }
            let mut rows = stmt
                .query(values.as_slice())
                .context("reading audit entries")?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next().context("reading audit entries")? {
                entries.push(entry_from_row(row)?);
            }
            Ok(entries)
        })
    }
}

/// Applies one mutation inside the commit's transaction; returns how many records it deleted.
fn apply(tx: &Transaction<'_>, mutation: Mutation) -> Result<u64, StoreError> {
    match mutation {
        Mutation::InsertSubject(row) => {
            let id = row.id;
            tx.prepare_cached(INSERT_SUBJECT)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        row.id.as_bytes(),
                        row.lookup,
                        row.profile,
                        row.key.as_bytes(),
                        row.created_at.as_millis(),
                        row.last_active_at.as_millis(),
                        row.closed_at.map(Timestamp::as_millis),
                        row.erased_at.map(Timestamp::as_millis),
                    ])
                })
                .with_context(|| format!("inserting subject {id}"))?;
            Ok(0)
        }
        Mutation::UpdateSubject { id, update } => {
            update_subject(tx, id, update)?;
            Ok(0)
        }
        Mutation::InsertRecord(row) => {
            insert_record(tx, &row)?;
            Ok(0)
        }
        Mutation::SetExpiry {
            subject,
            rule,
            expires_at,
        } => {
            tx.prepare_cached(SET_EXPIRY)
                .and_then(|mut stmt| {
                    stmt.execute(params![subject.as_bytes(), rule, expires_at.as_millis()])
                })
                .with_context(|| format!("setting expiry on records of subject {subject}"))?;
            tx.prepare_cached(SET_MEDIA_EXPIRY)
                .and_then(|mut stmt| {
                    stmt.execute(params![subject.as_bytes(), rule, expires_at.as_millis()])
                })
                .with_context(|| format!("setting expiry on media objects of subject {subject}"))?;
            Ok(0)
        }
        Mutation::DeleteRecord(id) => delete(tx, DELETE_RECORD, id.as_bytes())
            .with_context(|| format!("deleting record {id}")),
        Mutation::DeleteRecordsOf {
            subject,
            keep_statutory,
        } => {
            let sql = if keep_statutory {
                DELETE_NON_STATUTORY_RECORDS_OF
            } else {
                DELETE_RECORDS_OF
            };
            delete(tx, sql, subject.as_bytes())
                .with_context(|| format!("deleting records of subject {subject}"))
        }
        Mutation::DeleteSubject(id) => {
            // A missing subject is not an error, like every other deletion.
            delete(tx, DELETE_SUBJECT, id.as_bytes()).map_err(|e| {
                if is_foreign_key_violation(&e) {
                    StoreError::Conflict(format!(
                        "subject {id} still has records or media objects; delete them first"
                    ))
                } else {
                    sql_error(&e, &format!("deleting subject {id}"))
                }
            })?;
            Ok(0)
        }
        Mutation::InsertConsent(row) => {
            insert_consent(tx, &row)?;
            Ok(0)
        }
        Mutation::InsertApiKey(row) => {
            let purposes =
                encode_list(&row.purposes, || format!("purposes of API key {}", row.id))?;
            tx.prepare_cached(INSERT_API_KEY)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        row.id.as_bytes(),
                        row.name,
                        row.secret_hash,
                        row.admin,
                        purposes,
                        row.created_at.as_millis(),
                        row.revoked_at.map(Timestamp::as_millis),
                    ])
                })
                .with_context(|| format!("inserting API key {}", row.id))?;
            Ok(0)
        }
        Mutation::RevokeApiKey { id, at } => {
            let changed = tx
                .prepare_cached(REVOKE_API_KEY)
                .and_then(|mut stmt| stmt.execute(params![id.as_bytes(), at.as_millis()]))
                .with_context(|| format!("revoking API key {id}"))?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("API key {id}")));
            }
            Ok(0)
        }
        Mutation::InsertHold(row) => {
            insert_hold(tx, &row)?;
            Ok(0)
        }
        Mutation::ReleaseHold { id, at } => {
            let changed = tx
                .prepare_cached(RELEASE_HOLD)
                .and_then(|mut stmt| stmt.execute(params![id.as_bytes(), at.as_millis()]))
                .with_context(|| format!("releasing hold {id}"))?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("hold {id}")));
            }
            Ok(0)
        }
        Mutation::InsertMedia(row) => {
            insert_media(tx, &row)?;
            Ok(0)
        }
        Mutation::UpdateMedia { id, update } => {
            update_media(tx, id, &update)?;
            Ok(0)
        }
        Mutation::DeleteMedia(id) => {
            // A missing row is not an error, like every other deletion.
            delete(tx, DELETE_MEDIA, id.as_bytes())
                .with_context(|| format!("deleting media object {id}"))?;
            Ok(0)
        }
        Mutation::InsertRequest(row) => {
            insert_request(tx, &row)?;
            Ok(0)
        }
        Mutation::UpdateRequest {
            id,
            expected_version,
            update,
        } => {
            update_request(tx, id, expected_version, &update)?;
            Ok(0)
        }
        Mutation::InsertDisclosure(row) => {
            insert_disclosure(tx, &row)?;
            Ok(0)
        }
        Mutation::InsertNotification(row) => {
            insert_notification(tx, &row)?;
            Ok(0)
        }
        Mutation::UpdateNotification { id, update } => {
            update_notification(tx, id, &update)?;
            Ok(0)
        }
        Mutation::InsertPolicyVersion(row) => {
            let purposes = encode_list(&row.fresh_consent_purposes, || {
                "fresh-consent purposes of a policy version".to_owned()
            })?;
            // The label is left out of the message like every stored value; the constraint
            // SQLite names says a version of that label exists already.
            tx.prepare_cached(INSERT_POLICY_VERSION)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        row.version,
                        row.published_at.as_millis(),
                        purposes,
                        row.source,
                    ])
                })
                .context("publishing a policy version")?;
            Ok(0)
        }
    }
}

/// Chains `events` after `stored_head` (read under the same write lock) and inserts them;
/// returns the new head.
fn append_audit(
    tx: &Transaction<'_>,
    stored_head: Option<Anchor>,
    events: Vec<AuditEvent>,
) -> Result<Anchor, StoreError> {
    let mut chain = Chain::resume(stored_head.map(Into::into))
        .map_err(|e| StoreError::Corrupt(format!("audit head in data.db: {e}")))?;
    let entries = chain.append_batch(events);
    let mut insert = tx
        .prepare_cached(INSERT_AUDIT)
        .context("preparing audit insert")?;
    for entry in &entries {
        insert_entry(&mut insert, entry)?;
    }
    Ok(chain.head())
}

fn insert_media(tx: &Transaction<'_>, row: &MediaRow) -> Result<(), StoreError> {
    let lease = row.lease.as_ref();
    let size = to_i64(row.size, "media size")?;
    let stored_size = to_i64(row.stored_size, "media stored size")?;
    tx.prepare_cached(INSERT_MEDIA)
        .and_then(|mut stmt| {
            stmt.execute(params![
                row.id.as_bytes(),
                row.subject.as_bytes(),
                row.category,
                row.purpose,
                row.key.as_bytes(),
                row.wrapped_key,
                row.location,
                row.content_type,
                size,
                stored_size,
                row.state.as_str(),
                row.parent.as_ref().map(MediaId::as_bytes),
                row.created_at.as_millis(),
                row.processed_at.map(Timestamp::as_millis),
                row.rule,
                row.expires_at.map(Timestamp::as_millis),
                row.statutory,
                lease.map(|l| l.id.as_bytes()),
                lease.map(|l| l.holder.as_bytes()),
                lease.map(|l| l.purpose.as_str()),
                lease.map(|l| l.granted_at.as_millis()),
                lease.map(|l| l.expires_at.as_millis()),
                row.digest,
            ])
        })
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!(
                    "subject {} of media object {}",
                    row.subject, row.id
                ))
            } else {
                sql_error(&e, &format!("inserting media object {}", row.id))
            }
        })?;
    Ok(())
}

fn update_media(tx: &Transaction<'_>, id: MediaId, update: &MediaUpdate) -> Result<(), StoreError> {
    let lease = update.lease.as_ref().and_then(Option::as_ref);
    let sizes = update
        .sizes
        .map(|(size, stored)| {
            Ok::<_, StoreError>((
                to_i64(size, "media size")?,
                to_i64(stored, "media stored size")?,
            ))
        })
        .transpose()?;
    let changed = tx
        .prepare_cached(UPDATE_MEDIA)
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.as_bytes(),
                update.state.map(MediaState::as_str),
                sizes.map(|(size, _)| size),
                sizes.map(|(_, stored)| stored),
                update.expires_at.map(Timestamp::as_millis),
                update.processed_at.map(Timestamp::as_millis),
                update.lease.is_some(),
                lease.map(|l| l.id.as_bytes()),
                lease.map(|l| l.holder.as_bytes()),
                lease.map(|l| l.purpose.as_str()),
                lease.map(|l| l.granted_at.as_millis()),
                lease.map(|l| l.expires_at.as_millis()),
                update.shred,
                update.digest,
                update.expected_lease.is_some(),
                update
                    .expected_lease
                    .flatten()
                    .as_ref()
                    .map(LeaseId::as_bytes),
            ])
        })
        .with_context(|| format!("updating media object {id}"))?;
    if changed == 0 {
        // Only a compare-and-set can miss a row that exists.
        let exists = update.expected_lease.is_some()
            && tx
                .prepare_cached(MEDIA_EXISTS)
                .and_then(|mut stmt| stmt.exists([id.as_bytes()]))
                .with_context(|| format!("reading media object {id}"))?;
        return Err(if exists {
            StoreError::Conflict(format!("media object {id}: its lease changed"))
        } else {
            StoreError::NotFound(format!("media object {id}"))
        });
    }
    Ok(())
}

fn insert_consent(tx: &Transaction<'_>, row: &ConsentRow) -> Result<(), StoreError> {
    let purposes = encode_list(&row.purposes, || {
        format!("purposes of consent event {}", row.id)
    })?;
    let inserted = tx
        .prepare_cached(INSERT_CONSENT)
        .and_then(|mut stmt| {
            stmt.execute(params![
                row.id.as_bytes(),
                row.subject.as_bytes(),
                purposes,
                row.kind.as_str(),
                row.guardian.as_ref().map(SubjectId::as_bytes),
                row.guardian_verified,
                row.policy_version,
                row.method,
                row.at.as_millis(),
                row.expires_at.map(Timestamp::as_millis),
            ])
        })
        .with_context(|| format!("appending consent event {}", row.id))?;
    if inserted == 0 {
        return Err(StoreError::NotFound(format!(
            "subject {} of consent event {}",
            row.subject, row.id
        )));
    }
    Ok(())
}

fn insert_request(tx: &Transaction<'_>, row: &RequestRow) -> Result<(), StoreError> {
    let flags = encode_list(&row.flags, || format!("flags of request {}", row.id))?;
    let verification = row.verification.as_ref();
    let version = to_i64(row.version, "request version")?;
    let inserted = tx
        .prepare_cached(INSERT_REQUEST)
        .and_then(|mut stmt| {
            stmt.execute(params![
                row.id.as_bytes(),
                row.subject.as_bytes(),
                row.kind,
                row.state,
                row.law,
                row.received_at.as_millis(),
                row.acknowledge_by.map(Timestamp::as_millis),
                row.due_at.as_millis(),
                row.original_due_at.map(Timestamp::as_millis),
                flags,
                verification.map(|v| v.code_hash),
                verification.map(|v| v.issued_at.as_millis()),
                verification.map(|v| v.expires_at.as_millis()),
                verification.map(|v| v.attempts),
                row.updated_at.as_millis(),
                row.closed_at.map(Timestamp::as_millis),
                version,
                row.details,
            ])
        })
        .with_context(|| format!("inserting request {}", row.id))?;
    if inserted == 0 {
        return Err(StoreError::NotFound(format!(
            "subject {} of request {}",
            row.subject, row.id
        )));
    }
    Ok(())
}

fn update_request(
    tx: &Transaction<'_>,
    id: RequestId,
    expected_version: u64,
    update: &RequestUpdate,
) -> Result<(), StoreError> {
    let flags = update
        .flags
        .as_ref()
        .map(|flags| encode_list(flags, || format!("flags of request {id}")))
        .transpose()?;
    let verification = update.verification.as_ref().and_then(Option::as_ref);
    // Versions are never negative, so a version past i64::MAX matches no row: a conflict.
    let expected = i64::try_from(expected_version).unwrap_or(-1);
    let changed = tx
        .prepare_cached(UPDATE_REQUEST)
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.as_bytes(),
                expected,
                update.state,
                update.due_at.map(Timestamp::as_millis),
                update.original_due_at.map(Timestamp::as_millis),
                update.details,
                flags,
                update.verification.is_some(),
                verification.map(|v| v.code_hash),
                verification.map(|v| v.issued_at.as_millis()),
                verification.map(|v| v.expires_at.as_millis()),
                verification.map(|v| v.attempts),
                update.closed_at.map(Timestamp::as_millis),
                update.updated_at.as_millis(),
            ])
        })
        .with_context(|| format!("updating request {id}"))?;
    if changed == 0 {
        // Nothing changed: tell a missing request from one that moved on since it was read.
        let found: Option<i64> = query_one(tx, REQUEST_VERSION, params![id.as_bytes()], |row| {
            row.get(0)
        })
        .with_context(|| format!("reading the version of request {id}"))?;
        return Err(match found {
            None => StoreError::NotFound(format!("request {id}")),
            Some(version) => StoreError::Conflict(format!(
                "request {id} is at version {version}, not {expected_version}: it changed since \
                 it was read"
            )),
        });
    }
    Ok(())
}

fn insert_disclosure(tx: &Transaction<'_>, row: &DisclosureRow) -> Result<(), StoreError> {
    let categories = encode_list(&row.categories, || {
        format!("categories of disclosure {}", row.id)
    })?;
    let inserted = tx
        .prepare_cached(INSERT_DISCLOSURE)
        .and_then(|mut stmt| {
            stmt.execute(params![
                row.id.as_bytes(),
                row.subject.as_bytes(),
                row.recipient,
                row.recipient_kind,
                categories,
                row.purpose,
                row.at.as_millis(),
                row.reference,
                row.country,
                row.mechanism,
            ])
        })
        .with_context(|| format!("recording disclosure {}", row.id))?;
    if inserted == 0 {
        return Err(StoreError::NotFound(format!(
            "subject {} of disclosure {}",
            row.subject, row.id
        )));
    }
    Ok(())
}

fn insert_notification(tx: &Transaction<'_>, row: &NotificationRow) -> Result<(), StoreError> {
    tx.prepare_cached(INSERT_NOTIFICATION)
        .and_then(|mut stmt| {
            stmt.execute(params![
                row.id.as_bytes(),
                row.kind,
                row.request.as_ref().map(RequestId::as_bytes),
                row.subject.as_bytes(),
                row.recipient,
                row.state,
                row.attempts,
                row.next_attempt_at.map(Timestamp::as_millis),
                row.last_error,
                row.created_at.as_millis(),
                row.delivered_at.map(Timestamp::as_millis),
                row.settled_at.map(Timestamp::as_millis),
                row.reason,
                row.payload,
            ])
        })
        .map_err(|e| {
            // The only foreign key of notifications is their request.
            if is_foreign_key_violation(&e) {
                let request = row.request.map(|r| r.to_string()).unwrap_or_default();
                StoreError::NotFound(format!("request {request} of notification {}", row.id))
            } else {
                sql_error(&e, &format!("queueing notification {}", row.id))
            }
        })?;
    Ok(())
}

fn update_notification(
    tx: &Transaction<'_>,
    id: NotificationId,
    update: &NotificationUpdate,
) -> Result<(), StoreError> {
    let changed = tx
        .prepare_cached(UPDATE_NOTIFICATION)
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.as_bytes(),
                update.state,
                update.attempts,
                update.next_attempt_at.is_some(),
                update.next_attempt_at.flatten().map(Timestamp::as_millis),
                update.last_error.is_some(),
                update.last_error.as_ref().and_then(Option::as_deref),
                update.delivered_at.map(Timestamp::as_millis),
                update.settled_at.map(Timestamp::as_millis),
                update.reason,
                update.payload,
            ])
        })
        .with_context(|| format!("updating notification {id}"))?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("notification {id}")));
    }
    Ok(())
}

/// A list of policy keys as the JSON array its column holds.
fn encode_list(list: &[String], what: impl FnOnce() -> String) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|_| StoreError::Backend(format!("encoding {}", what())))
}

/// A JSON array column back as a list.
fn decode_list(text: &str, what: impl FnOnce() -> String) -> Result<Vec<String>, StoreError> {
    // serde_json's message can quote the text it choked on; keep it out of the error.
    serde_json::from_str(text)
        .map_err(|_| StoreError::Corrupt(format!("{} are not a JSON array of strings", what())))
}

fn update_subject(
    tx: &Transaction<'_>,
    id: SubjectId,
    update: SubjectUpdate,
) -> Result<(), StoreError> {
    let changed = tx
        .prepare_cached(UPDATE_SUBJECT)
        .and_then(|mut stmt| {
            stmt.execute(params![
                id.as_bytes(),
                update.last_active_at.map(Timestamp::as_millis),
                update.closed_at.map(Timestamp::as_millis),
                update.erased_at.map(Timestamp::as_millis),
                update.profile,
            ])
        })
        .with_context(|| format!("updating subject {id}"))?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("subject {id}")));
    }
    Ok(())
}

fn insert_hold(tx: &Transaction<'_>, row: &HoldRow) -> Result<(), StoreError> {
    tx.prepare_cached(INSERT_HOLD)
        .and_then(|mut stmt| {
            stmt.execute(params![
                row.id.as_bytes(),
                row.subject.as_ref().map(SubjectId::as_bytes),
                row.category,
                row.reason,
                row.created_at.as_millis(),
                row.ends_at.map(Timestamp::as_millis),
                row.released_at.map(Timestamp::as_millis),
            ])
        })
        .with_context(|| format!("placing hold {}", row.id))?;
    Ok(())
}

fn insert_record(tx: &Transaction<'_>, row: &RecordRow) -> Result<(), StoreError> {
    tx.prepare_cached(INSERT_RECORD)
        .and_then(|mut stmt| {
            stmt.execute(params![
                row.id.as_bytes(),
                row.subject.as_bytes(),
                row.category,
                row.purpose,
                row.key.as_bytes(),
                row.ciphertext,
                row.collected_at.as_millis(),
                row.rule,
                row.expires_at.map(Timestamp::as_millis),
                row.statutory,
            ])
        })
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!("subject {} of record {}", row.subject, row.id))
            } else {
                sql_error(&e, &format!("inserting record {}", row.id))
            }
        })?;
    Ok(())
}

/// Runs a cached `DELETE` keyed by one id; returns how many rows went.
fn delete(tx: &Transaction<'_>, sql: &str, id: &[u8; 16]) -> rusqlite::Result<u64> {
    let deleted = tx.prepare_cached(sql)?.execute(params![id])?;
    // usize to u64 is lossless on every platform Rust supports.
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

fn insert_entry(
    insert: &mut rusqlite::Statement<'_>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    let event = &entry.event;
    let reasons = serde_json::to_string(&event.reasons)
        .map_err(|_| StoreError::Backend(format!("encoding reasons of audit seq {}", entry.seq)))?;
    insert
        .execute(params![
            to_i64(entry.seq, "audit seq")?,
            entry.prev_hash,
            entry.hash,
            event.kind.as_str(),
            event.at,
            event.actor,
            event.subject,
            event.category,
            event.purpose,
            event.record,
            event.outcome,
            reasons,
            event.rule,
        ])
        .with_context(|| format!("appending audit seq {}", entry.seq))?;
    Ok(())
}

fn read_head(conn: &Connection) -> Result<Option<Anchor>, StoreError> {
    let head = conn
        .prepare_cached(AUDIT_HEAD)
        .and_then(|mut stmt| {
            stmt.query_row([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, [u8; 32]>(1)?))
            })
            .optional()
        })
        .context("reading the audit head")?;
    head.map(|(seq, hash)| Ok(Anchor::new(seq_from(seq)?, hash)))
        .transpose()
}

fn seq_from(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("audit seq {seq} is negative")))
}

/// Runs a cached query and decodes every row with a decoder that can fail as a store error (the
/// columns `rusqlite` cannot check alone: JSON lists, kinds).
fn read_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
    context: impl Fn() -> String,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).with_context(&context)?;
    let mut rows = stmt.query(params).with_context(&context)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().with_context(&context)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    conn.prepare_cached(sql)?.query_row(params, map).optional()
}

fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map(params, map)?.collect()
}

fn timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    row.get(index).map(Timestamp::from_millis)
}

fn optional_timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row
        .get::<_, Option<i64>>(index)?
        .map(Timestamp::from_millis))
}

fn subject_from_row(row: &Row<'_>) -> rusqlite::Result<SubjectRow> {
    Ok(SubjectRow {
        id: SubjectId::from_bytes(row.get(0)?),
        lookup: row.get(1)?,
        profile: row.get(2)?,
        key: KeyId::from_bytes(row.get(3)?),
        created_at: timestamp(row, 4)?,
        last_active_at: timestamp(row, 5)?,
        closed_at: optional_timestamp(row, 6)?,
        erased_at: optional_timestamp(row, 7)?,
    })
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        id: RecordId::from_bytes(row.get(0)?),
        subject: SubjectId::from_bytes(row.get(1)?),
        category: row.get(2)?,
        purpose: row.get(3)?,
        key: KeyId::from_bytes(row.get(4)?),
        ciphertext: row.get(5)?,
        collected_at: timestamp(row, 6)?,
        rule: row.get(7)?,
        expires_at: optional_timestamp(row, 8)?,
        statutory: row.get(9)?,
    })
}

fn swept_from_row(row: &Row<'_>) -> rusqlite::Result<SweptRecord> {
    Ok(SweptRecord {
        id: RecordId::from_bytes(row.get(0)?),
        subject: SubjectId::from_bytes(row.get(1)?),
        category: row.get(2)?,
        rule: row.get(3)?,
        statutory: row.get(4)?,
    })
}

fn claimed_from_row(row: &Row<'_>) -> rusqlite::Result<SweptMedia> {
    Ok(SweptMedia {
        id: MediaId::from_bytes(row.get(0)?),
        subject: SubjectId::from_bytes(row.get(1)?),
        category: row.get(2)?,
        rule: row.get(3)?,
        location: row.get(4)?,
    })
}

fn media_from_row(row: &Row<'_>) -> Result<MediaRow, StoreError> {
    let id = MediaId::from_bytes(row.get(0).context("reading a media object id")?);
    let read = |what: &str| format!("reading {what} of media object {id}");
    let state: String = row.get(10).with_context(|| read("state"))?;
    // The stored text is not echoed: a damaged or tampered file could hold anything there.
    let state = MediaState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("media object {id} has an unknown state")))?;
    let lease_id: Option<[u8; 16]> = row.get(17).with_context(|| read("lease_id"))?;
    let lease_holder: Option<[u8; 16]> = row.get(18).with_context(|| read("lease_holder"))?;
    let lease_purpose: Option<String> = row.get(19).with_context(|| read("lease_purpose"))?;
    let lease_granted_at = optional_timestamp(row, 20).with_context(|| read("lease_granted_at"))?;
    let lease_expires_at = optional_timestamp(row, 21).with_context(|| read("lease_expires_at"))?;
    let lease = match (
        lease_id,
        lease_holder,
        lease_purpose,
        lease_granted_at,
        lease_expires_at,
    ) {
        (None, None, None, None, None) => None,
        (Some(lease), Some(holder), Some(purpose), Some(granted_at), Some(expires_at)) => {
            Some(LeaseRow {
                id: LeaseId::from_bytes(lease),
                holder: ApiKeyId::from_bytes(holder),
                purpose,
                granted_at,
                expires_at,
            })
        }
        _ => {
            return Err(StoreError::Corrupt(format!(
                "media object {id} has a partial lease"
            )));
        }
    };
    Ok(MediaRow {
        id,
        subject: SubjectId::from_bytes(row.get(1).with_context(|| read("subject"))?),
        category: row.get(2).with_context(|| read("category"))?,
        purpose: row.get(3).with_context(|| read("purpose"))?,
        key: KeyId::from_bytes(row.get(4).with_context(|| read("key"))?),
        wrapped_key: row.get(5).with_context(|| read("wrapped_key"))?,
        location: row.get(6).with_context(|| read("location"))?,
        content_type: row.get(7).with_context(|| read("content_type"))?,
        size: size(row.get(8).with_context(|| read("size"))?, id)?,
        stored_size: size(row.get(9).with_context(|| read("stored_size"))?, id)?,
        state,
        parent: row
            .get::<_, Option<[u8; 16]>>(11)
            .with_context(|| read("parent"))?
            .map(MediaId::from_bytes),
        created_at: timestamp(row, 12).with_context(|| read("created_at"))?,
        processed_at: optional_timestamp(row, 13).with_context(|| read("processed_at"))?,
        rule: row.get(14).with_context(|| read("rule"))?,
        expires_at: optional_timestamp(row, 15).with_context(|| read("expires_at"))?,
        statutory: row.get(16).with_context(|| read("statutory"))?,
        lease,
        digest: row.get(22).with_context(|| read("digest"))?,
    })
}

/// A size column back as the unsigned number it was written as.
fn size(value: i64, id: MediaId) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("media object {id} has a negative size")))
}

fn hold_from_row(row: &Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok(HoldRow {
        id: HoldId::from_bytes(row.get(0)?),
        subject: row
            .get::<_, Option<[u8; 16]>>(1)?
            .map(SubjectId::from_bytes),
        category: row.get(2)?,
        reason: row.get(3)?,
        created_at: timestamp(row, 4)?,
        ends_at: optional_timestamp(row, 5)?,
        released_at: optional_timestamp(row, 6)?,
    })
}

fn expired_count_from_row(row: &Row<'_>) -> Result<ExpiredCount, StoreError> {
    let count = |index: usize| -> Result<u64, StoreError> {
        let count: i64 = row.get(index).context("reading an expired-record count")?;
        u64::try_from(count)
            .map_err(|_| StoreError::Corrupt(format!("expired-record count {count} is negative")))
    };
    Ok(ExpiredCount {
        category: row
            .get(0)
            .context("reading the category of expired records")?,
        rule: row.get(1).context("reading the rule of expired records")?,
        due: count(2)?,
        held: count(3)?,
    })
}

fn consent_from_row(row: &Row<'_>) -> Result<ConsentRow, StoreError> {
    let id = ConsentId::from_bytes(row.get(0).context("reading a consent event id")?);
    let read = |what: &str| format!("reading {what} of consent event {id}");
    let purposes: String = row.get(2).with_context(|| read("purposes"))?;
    let kind: String = row.get(3).with_context(|| read("kind"))?;
    // The stored text is not echoed: a damaged or tampered file could hold anything there.
    let kind = ConsentEventKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("consent event {id} has an unknown kind")))?;
    Ok(ConsentRow {
        id,
        subject: SubjectId::from_bytes(row.get(1).with_context(|| read("subject"))?),
        purposes: decode_list(&purposes, || format!("purposes of consent event {id}"))?,
        kind,
        guardian: row
            .get::<_, Option<[u8; 16]>>(4)
            .with_context(|| read("guardian"))?
            .map(SubjectId::from_bytes),
        guardian_verified: row.get(5).with_context(|| read("guardian_verified"))?,
        policy_version: row.get(6).with_context(|| read("policy_version"))?,
        method: row.get(7).with_context(|| read("method"))?,
        at: timestamp(row, 8).with_context(|| read("at"))?,
        expires_at: optional_timestamp(row, 9).with_context(|| read("expires_at"))?,
    })
}

fn api_key_from_row(row: &Row<'_>) -> Result<ApiKeyRow, StoreError> {
    let id = ApiKeyId::from_bytes(row.get(0).context("reading an API key id")?);
    let read = |what: &str| format!("reading {what} of API key {id}");
    let purposes: String = row.get(4).with_context(|| read("purposes"))?;
    Ok(ApiKeyRow {
        id,
        name: row.get(1).with_context(|| read("name"))?,
        secret_hash: row.get(2).with_context(|| read("secret_hash"))?,
        admin: row.get(3).with_context(|| read("admin"))?,
        purposes: decode_list(&purposes, || format!("purposes of API key {id}"))?,
        created_at: timestamp(row, 5).with_context(|| read("created_at"))?,
        revoked_at: optional_timestamp(row, 6).with_context(|| read("revoked_at"))?,
    })
}

fn policy_version_from_row(row: &Row<'_>) -> Result<PolicyVersionRow, StoreError> {
    // Rows are named by column only: the version label is a stored value.
    let read = |what: &str| format!("reading {what} of a policy version");
    let purposes: String = row.get(2).with_context(|| read("fresh_consent_purposes"))?;
    Ok(PolicyVersionRow {
        version: row.get(0).with_context(|| read("version"))?,
        published_at: timestamp(row, 1).with_context(|| read("published_at"))?,
        fresh_consent_purposes: decode_list(&purposes, || {
            "fresh-consent purposes of a policy version".to_owned()
        })?,
        source: row.get(3).with_context(|| read("source"))?,
    })
}

fn request_from_row(row: &Row<'_>) -> Result<RequestRow, StoreError> {
    let id = RequestId::from_bytes(row.get(0).context("reading a request id")?);
    let read = |what: &str| format!("reading {what} of request {id}");
    let flags: String = row.get(9).with_context(|| read("flags"))?;
    let code_hash: Option<[u8; 32]> = row
        .get(10)
        .with_context(|| read("verification_code_hash"))?;
    let issued_at = optional_timestamp(row, 11).with_context(|| read("verification_issued_at"))?;
    let expires_at =
        optional_timestamp(row, 12).with_context(|| read("verification_expires_at"))?;
    let attempts: Option<u32> = row.get(13).with_context(|| read("verification_attempts"))?;
    let verification = match (code_hash, issued_at, expires_at, attempts) {
        (None, None, None, None) => None,
        (Some(code_hash), Some(issued_at), Some(expires_at), Some(attempts)) => {
            Some(VerificationRow {
                code_hash,
                issued_at,
                expires_at,
                attempts,
            })
        }
        _ => {
            return Err(StoreError::Corrupt(format!(
                "request {id} has a partial verification"
            )));
        }
    };
    let version: i64 = row.get(16).with_context(|| read("version"))?;
    Ok(RequestRow {
        id,
        subject: SubjectId::from_bytes(row.get(1).with_context(|| read("subject"))?),
        kind: row.get(2).with_context(|| read("kind"))?,
        state: row.get(3).with_context(|| read("state"))?,
        law: row.get(4).with_context(|| read("law"))?,
        received_at: timestamp(row, 5).with_context(|| read("received_at"))?,
        acknowledge_by: optional_timestamp(row, 6).with_context(|| read("acknowledge_by"))?,
        due_at: timestamp(row, 7).with_context(|| read("due_at"))?,
        original_due_at: optional_timestamp(row, 8).with_context(|| read("original_due_at"))?,
        details: row.get(17).with_context(|| read("details"))?,
        flags: decode_list(&flags, || format!("flags of request {id}"))?,
        verification,
        updated_at: timestamp(row, 14).with_context(|| read("updated_at"))?,
        closed_at: optional_timestamp(row, 15).with_context(|| read("closed_at"))?,
        version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("request {id} has a negative version")))?,
    })
}

fn disclosure_from_row(row: &Row<'_>) -> Result<DisclosureRow, StoreError> {
    let id = DisclosureId::from_bytes(row.get(0).context("reading a disclosure id")?);
    let read = |what: &str| format!("reading {what} of disclosure {id}");
    let categories: String = row.get(4).with_context(|| read("categories"))?;
    Ok(DisclosureRow {
        id,
        subject: SubjectId::from_bytes(row.get(1).with_context(|| read("subject"))?),
        recipient: row.get(2).with_context(|| read("recipient"))?,
        recipient_kind: row.get(3).with_context(|| read("recipient_kind"))?,
        categories: decode_list(&categories, || format!("categories of disclosure {id}"))?,
        purpose: row.get(5).with_context(|| read("purpose"))?,
        at: timestamp(row, 6).with_context(|| read("at"))?,
        reference: row.get(7).with_context(|| read("reference"))?,
        country: row.get(8).with_context(|| read("country"))?,
        mechanism: row.get(9).with_context(|| read("mechanism"))?,
    })
}

fn notification_from_row(row: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: NotificationId::from_bytes(row.get(0)?),
        kind: row.get(1)?,
        request: row
            .get::<_, Option<[u8; 16]>>(2)?
            .map(RequestId::from_bytes),
        subject: SubjectId::from_bytes(row.get(3)?),
        recipient: row.get(4)?,
        state: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_at: optional_timestamp(row, 7)?,
        last_error: row.get(8)?,
        created_at: timestamp(row, 9)?,
        delivered_at: optional_timestamp(row, 10)?,
        settled_at: optional_timestamp(row, 11)?,
        reason: row.get(12)?,
        payload: row.get(13)?,
    })
}

fn entry_from_row(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let seq = seq_from(row.get(0).context("reading audit seq")?)?;
    let read = |what: &str| format!("reading {what} of audit seq {seq}");
    let kind: String = row.get(3).with_context(|| read("kind"))?;
    // The stored text is not echoed: a damaged or tampered file could hold anything there.
    let kind: EventKind = kind
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("audit seq {seq} has an unknown event kind")))?;
    let reasons: String = row.get(11).with_context(|| read("reasons"))?;
    // serde_json's message can quote the text it choked on; keep it out of the error.
    let reasons: Vec<String> = serde_json::from_str(&reasons).map_err(|_| {
        StoreError::Corrupt(format!(
            "audit seq {seq}: reasons are not a JSON array of strings"
        ))
    })?;
    let event = AuditEvent {
        kind,
        at: row.get(4).with_context(|| read("at"))?,
        actor: row.get(5).with_context(|| read("actor"))?,
        subject: row.get(6).with_context(|| read("subject"))?,
        category: row.get(7).with_context(|| read("category"))?,
        purpose: row.get(8).with_context(|| read("purpose"))?,
        record: row.get(9).with_context(|| read("record"))?,
        outcome: row.get(10).with_context(|| read("outcome"))?,
        reasons,
        rule: row.get(12).with_context(|| read("rule"))?,
    };
    Ok(AuditEntry {
        seq,
        prev_hash: row.get(1).with_context(|| read("prev_hash"))?,
        event,
        hash: row.get(2).with_context(|| read("hash"))?,
    })
}
