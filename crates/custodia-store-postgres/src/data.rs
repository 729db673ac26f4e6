//! [`PgDataStore`]: subjects, encrypted records, media objects, the consent ledger, API keys,
//! published policy versions, legal holds, data-subject requests, the disclosure log, the
//! notification outbox and the audit chain in `{namespace}_data`.

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
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Row, Transaction};

use crate::decode::{bytes_n, column, opt_bytes_n};
use crate::error::{Context, insert_error, limit, pg_error, to_i64};
use crate::pool::{Pool, StatementCache};
use crate::schema;
use crate::{Namespace, open_schema};

/// From this many events on, a commit streams its audit entries with binary `COPY` (one round
/// trip for the lot) instead of one prepared `INSERT` each; below it, `COPY`'s extra round
/// trips cost more than they save.
const COPY_THRESHOLD: usize = 8;

/// Columns of `subjects`, in the order [`subject_from_row`] reads them.
const SUBJECT_COLUMNS: &str =
    "id, lookup, profile, key, created_at, last_active_at, closed_at, erased_at";
/// Columns of `records`, in the order [`record_from_row`] reads them.
const RECORD_COLUMNS: &str =
    "id, subject, category, purpose, key, ciphertext, collected_at, rule, expires_at, statutory";
/// Columns of `consent_events`, in the order [`consent_from_row`] reads them.
const CONSENT_COLUMNS: &str = "id, subject, purposes, kind, guardian, guardian_verified, \
    policy_version, method, at, expires_at";
/// Columns of `api_keys`, in the order [`api_key_from_row`] reads them.
const API_KEY_COLUMNS: &str = "id, name, secret_hash, admin, purposes, created_at, revoked_at";
/// Columns of `policy_versions`, in the order [`policy_version_from_row`] reads them.
const POLICY_VERSION_COLUMNS: &str = "version, published_at, fresh_consent_purposes, source";
/// Columns of `holds`, in the order [`hold_from_row`] reads them.
const HOLD_COLUMNS: &str = "id, subject, category, reason, created_at, ends_at, released_at";
/// Columns of `media`, in the order [`media_from_row`] reads them.
const MEDIA_COLUMNS: &str = "id, subject, category, purpose, key, wrapped_key, location, \
    content_type, size, stored_size, state, parent, created_at, processed_at, rule, expires_at, \
    statutory, lease_id, lease_holder, lease_purpose, lease_granted_at, lease_expires_at, digest";
/// Columns of `requests`, in the order [`request_from_row`] reads them.
const REQUEST_COLUMNS: &str = "id, subject, kind, state, law, received_at, acknowledge_by, \
    due_at, original_due_at, flags, verification_code_hash, verification_issued_at, \
    verification_expires_at, verification_attempts, updated_at, closed_at, version, details";
/// Columns of `disclosures`, in the order [`disclosure_from_row`] reads them.
const DISCLOSURE_COLUMNS: &str = "id, subject, recipient, recipient_kind, categories, purpose, at, reference, country, mechanism";
/// Columns of `notifications`, in the order [`notification_from_row`] reads them.
const NOTIFICATION_COLUMNS: &str = "id, kind, request, subject, recipient, state, attempts, \
    next_attempt_at, last_error, created_at, delivered_at, settled_at, reason, payload";
/// Whether a hold in force at `$1` covers the record `r` (or the media object `m`, once `r.` is
/// replaced): the same condition as `HoldRow::applies`, in SQL so the sweeper decides in the
/// statement that locks its victims.
const HELD: &str = "EXISTS (SELECT 1 FROM {s}.holds h WHERE h.released_at IS NULL \
     AND (h.ends_at IS NULL OR h.ends_at > $1) \
     AND (h.subject IS NULL OR h.subject = r.subject) \
     AND (h.category IS NULL OR h.category = r.category))";
/// Media objects whose expiry counts: stored or processed ones (a pending upload is not yet
/// data, a deleting one is already claimed), aliased `m`, expired at `$1`.
const EXPIRED_MEDIA: &str =
    "m.state IN ('stored', 'processed') AND m.expires_at IS NOT NULL AND m.expires_at <= $1";
/// Columns of `audit`, in the order [`entry_from_row`] reads them and entries are written.
const AUDIT_COLUMNS: &str = "seq, prev_hash, hash, kind, at, actor, subject, category, purpose, record, outcome, reasons, rule";
/// The types of [`AUDIT_COLUMNS`], for binary `COPY`.
const AUDIT_TYPES: [Type; 13] = [
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT_ARRAY,
    Type::TEXT,
];

/// The statements, with the schema name spliced in once at open.
#[derive(Debug)]
struct Sql {
    insert_subject: String,
    update_subject: String,
    delete_subject: String,
    insert_record: String,
    set_expiry: String,
    delete_record: String,
    delete_records_of: String,
    delete_non_statutory_records_of: String,
    subject: String,
    subject_by_lookup: String,
    record: String,
    records_of: String,
    records_of_category: String,
    expired_records: String,
    count_records: String,
    count_statutory_records: String,
    insert_consent: String,
    consents_of: String,
    insert_api_key: String,
    revoke_api_key: String,
    api_key: String,
    api_keys: String,
    insert_policy_version: String,
    policy_versions: String,
    head: String,
    lock_head: String,
    update_head: String,
    insert_audit: String,
    copy_audit: String,
    audit_entries: String,
    audit_entries_of: String,
    insert_hold: String,
    release_hold: String,
    holds: String,
    sweep_victims: String,
    sweep_delete: String,
    count_expired: String,
    insert_media: String,
    update_media: String,
    delete_media: String,
    set_media_expiry: String,
    media: String,
    media_of: String,
    media_of_category: String,
    media_in_state: String,
    claim_victims: String,
    claim_media: String,
    insert_request: String,
    update_request: String,
    request_version: String,
    request: String,
    /// The start of [`DataStore::requests`]' query, which adds the filter's conditions.
    requests: String,
    insert_disclosure: String,
    disclosures_of: String,
    insert_notification: String,
    update_notification: String,
    notification: String,
    notifications_of: String,
    due_notifications: String,
    claim_notifications: String,
}

impl Sql {
    fn new(s: &str) -> Self {
        let held = HELD.replace("{s}", s);
        let media_held = held.replace("= r.", "= m.");
        Self {
            insert_subject: format!(
                "INSERT INTO {s}.subjects ({SUBJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            update_subject: format!(
                "UPDATE {s}.subjects SET last_active_at = COALESCE($2, last_active_at), \
                 closed_at = COALESCE($3, closed_at), erased_at = COALESCE($4, erased_at), \
                 profile = COALESCE($5, profile) WHERE id = $1"
            ),
            delete_subject: format!("DELETE FROM {s}.subjects WHERE id = $1"),
            insert_record: format!(
                "INSERT INTO {s}.records ({RECORD_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            set_expiry: format!(
                "UPDATE {s}.records SET expires_at = $3 \
                 WHERE subject = $1 AND rule = $2 AND expires_at IS NULL"
            ),
            delete_record: format!("DELETE FROM {s}.records WHERE id = $1"),
            delete_records_of: format!("DELETE FROM {s}.records WHERE subject = $1"),
            delete_non_statutory_records_of: format!(
                "DELETE FROM {s}.records WHERE subject = $1 AND NOT statutory"
            ),
            subject: format!("SELECT {SUBJECT_COLUMNS} FROM {s}.subjects WHERE id = $1"),
            subject_by_lookup: format!(
                "SELECT {SUBJECT_COLUMNS} FROM {s}.subjects WHERE lookup = $1"
            ),
            record: format!("SELECT {RECORD_COLUMNS} FROM {s}.records WHERE id = $1"),
            records_of: format!(
                "SELECT {RECORD_COLUMNS} FROM {s}.records WHERE subject = $1 \
                 ORDER BY collected_at, pos"
            ),
            records_of_category: format!(
                "SELECT {RECORD_COLUMNS} FROM {s}.records WHERE subject = $1 AND category = $2 \
                 ORDER BY collected_at, pos"
            ),
            expired_records: format!(
                "SELECT {RECORD_COLUMNS} FROM {s}.records \
                 WHERE expires_at IS NOT NULL AND expires_at <= $1 \
                 ORDER BY expires_at, pos LIMIT $2"
            ),
            count_records: format!("SELECT count(*) FROM {s}.records"),
            count_statutory_records: format!(
                "SELECT count(*) FROM {s}.records WHERE subject = $1 AND statutory"
            ),
            // The ledger has no foreign key to subjects (it outlives them), so the insert selects
            // the subject's row instead: nothing is inserted when it does not exist, and FOR KEY
            // SHARE holds off a concurrent delete of it until this commit, as a foreign key
            // check would, while leaving updates of its other columns free.
            insert_consent: format!(
                "INSERT INTO {s}.consent_events ({CONSENT_COLUMNS}) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM {s}.subjects WHERE id = $2 \
                 FOR KEY SHARE"
            ),
            consents_of: format!(
                "SELECT {CONSENT_COLUMNS} FROM {s}.consent_events WHERE subject = $1 ORDER BY pos"
            ),
            insert_api_key: format!(
                "INSERT INTO {s}.api_keys ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            // COALESCE keeps the first revocation time: revoking again changes nothing.
            revoke_api_key: format!(
                "UPDATE {s}.api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1"
            ),
            api_key: format!("SELECT {API_KEY_COLUMNS} FROM {s}.api_keys WHERE id = $1"),
            api_keys: format!("SELECT {API_KEY_COLUMNS} FROM {s}.api_keys ORDER BY pos"),
            insert_policy_version: format!(
                "INSERT INTO {s}.policy_versions ({POLICY_VERSION_COLUMNS}) VALUES ($1, $2, $3, $4)"
            ),
            policy_versions: format!(
                "SELECT {POLICY_VERSION_COLUMNS} FROM {s}.policy_versions ORDER BY pos"
            ),
            head: format!("SELECT seq, hash FROM {s}.audit_head"),
            lock_head: format!("SELECT seq, hash FROM {s}.audit_head FOR UPDATE"),
            update_head: format!("UPDATE {s}.audit_head SET seq = $1, hash = $2"),
            insert_audit: format!(
                "INSERT INTO {s}.audit ({AUDIT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ),
            copy_audit: format!("COPY {s}.audit ({AUDIT_COLUMNS}) FROM STDIN (FORMAT binary)"),
            audit_entries: format!(
                "SELECT {AUDIT_COLUMNS} FROM {s}.audit WHERE seq >= $1 ORDER BY seq LIMIT $2"
            ),
            audit_entries_of: format!(
                "SELECT {AUDIT_COLUMNS} FROM {s}.audit \
                 WHERE seq >= $1 AND seq <= $2 AND kind = ANY($3) ORDER BY seq LIMIT $4"
            ),
            insert_hold: format!(
                "INSERT INTO {s}.holds ({HOLD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            // COALESCE keeps the first release time: releasing again changes nothing.
            release_hold: format!(
                "UPDATE {s}.holds SET released_at = COALESCE(released_at, $2) WHERE id = $1"
            ),
            holds: format!("SELECT {HOLD_COLUMNS} FROM {s}.holds ORDER BY pos"),
            // SKIP LOCKED: a second instance sweeping at the same time passes over the rows this
            // one has locked and takes the next due ones, instead of waiting to find them gone.
            sweep_victims: format!(
                "SELECT r.id, r.subject, r.category, r.rule, r.statutory FROM {s}.records r \
                 WHERE r.expires_at IS NOT NULL AND r.expires_at <= $1 AND NOT {held} \
                 ORDER BY r.expires_at, r.pos LIMIT $2 FOR UPDATE OF r SKIP LOCKED"
            ),
            sweep_delete: format!("DELETE FROM {s}.records WHERE id = ANY($1)"),
            count_expired: format!(
                "SELECT category, rule, count(*) FILTER (WHERE NOT held), \
                 count(*) FILTER (WHERE held) \
                 FROM (SELECT r.category, r.rule, {held} AS held FROM {s}.records r \
                 WHERE r.expires_at IS NOT NULL AND r.expires_at <= $1 \
                 UNION ALL SELECT m.category, m.rule, {media_held} AS held FROM {s}.media m \
                 WHERE {EXPIRED_MEDIA}) AS due \
                 GROUP BY category, rule ORDER BY category, rule"
            ),
            insert_media: format!(
                "INSERT INTO {s}.media ({MEDIA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
            ),
            // COALESCE keeps a column when its update field is `None`; the lease columns change
            // together when $7 says the lease changes (to $8..$12, all NULL to clear it), $13
            // empties the key and the digest, and $14 sets the digest. When $15, the row
            // changes only if its lease id is $16.
            update_media: format!(
                "UPDATE {s}.media SET state = COALESCE($2::text, state), \
                 size = COALESCE($3::bigint, size), \
                 stored_size = COALESCE($4::bigint, stored_size), \
                 expires_at = COALESCE($5::bigint, expires_at), \
                 processed_at = COALESCE($6::bigint, processed_at), \
                 lease_id = CASE WHEN $7::boolean THEN $8::bytea ELSE lease_id END, \
                 lease_holder = CASE WHEN $7 THEN $9::bytea ELSE lease_holder END, \
                 lease_purpose = CASE WHEN $7 THEN $10::text ELSE lease_purpose END, \
                 lease_granted_at = CASE WHEN $7 THEN $11::bigint ELSE lease_granted_at END, \
                 lease_expires_at = CASE WHEN $7 THEN $12::bigint ELSE lease_expires_at END, \
                 wrapped_key = CASE WHEN $13::boolean THEN ''::bytea ELSE wrapped_key END, \
                 digest = CASE WHEN $13 THEN ''::bytea ELSE COALESCE($14::bytea, digest) END \
                 WHERE id = $1 AND (NOT $15::boolean OR lease_id IS NOT DISTINCT FROM $16::bytea)"
            ),
            delete_media: format!("DELETE FROM {s}.media WHERE id = $1"),
            set_media_expiry: format!(
                "UPDATE {s}.media SET expires_at = $3 \
                 WHERE subject = $1 AND rule = $2 AND expires_at IS NULL"
            ),
            media: format!("SELECT {MEDIA_COLUMNS} FROM {s}.media WHERE id = $1"),
            media_of: format!(
                "SELECT {MEDIA_COLUMNS} FROM {s}.media WHERE subject = $1 \
                 ORDER BY created_at, pos"
            ),
            media_of_category: format!(
                "SELECT {MEDIA_COLUMNS} FROM {s}.media WHERE subject = $1 AND category = $2 \
                 ORDER BY created_at, pos"
            ),
            media_in_state: format!(
                "SELECT {MEDIA_COLUMNS} FROM {s}.media WHERE state = $1 AND created_at <= $2 \
                 ORDER BY created_at, pos LIMIT $3"
            ),
            // SKIP LOCKED, as for records: a second instance claiming at the same time passes
            // over the objects this one has locked and takes the next due ones.
            claim_victims: format!(
                "SELECT m.id, m.subject, m.category, m.rule, m.location FROM {s}.media m \
                 WHERE {EXPIRED_MEDIA} AND NOT {media_held} \
                 ORDER BY m.expires_at, m.pos LIMIT $2 FOR UPDATE OF m SKIP LOCKED"
            ),
            // Shreds the key and drops the lease along with the state change: a deleting object
            // can be neither read nor processed again.
            claim_media: format!(
                "UPDATE {s}.media SET state = 'deleting', wrapped_key = ''::bytea, digest = ''::bytea, \
                 lease_id = NULL, lease_holder = NULL, lease_purpose = NULL, \
                 lease_granted_at = NULL, lease_expires_at = NULL WHERE id = ANY($1)"
            ),
            // Requests and disclosures outlive their subject like the consent ledger, so they
            // check it the same way: select its row, key-share locked until the commit.
            insert_request: format!(
                "INSERT INTO {s}.requests ({REQUEST_COLUMNS}) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18 FROM {s}.subjects WHERE id = $2 FOR KEY SHARE"
            ),
            // Applies only while the row is at the version the caller read ($2), and bumps it.
            // COALESCE keeps a column when its update field is `None`; the verification columns
            // change together when $8 says it changes (to $9..$12, all NULL to clear it).
            update_request: format!(
                "UPDATE {s}.requests SET state = COALESCE($3::text, state), \
                 due_at = COALESCE($4::bigint, due_at), \
                 original_due_at = COALESCE($5::bigint, original_due_at), \
                 details = COALESCE($6::bytea, details), \
                 flags = COALESCE($7::text[], flags), \
                 verification_code_hash = \
                 CASE WHEN $8::boolean THEN $9::bytea ELSE verification_code_hash END, \
                 verification_issued_at = \
                 CASE WHEN $8 THEN $10::bigint ELSE verification_issued_at END, \
                 verification_expires_at = \
                 CASE WHEN $8 THEN $11::bigint ELSE verification_expires_at END, \
                 verification_attempts = \
                 CASE WHEN $8 THEN $12::bigint ELSE verification_attempts END, \
                 closed_at = COALESCE($13::bigint, closed_at), \
                 updated_at = $14::bigint, version = version + 1 \
                 WHERE id = $1 AND version = $2::bigint"
            ),
            request_version: format!("SELECT version FROM {s}.requests WHERE id = $1"),
            request: format!("SELECT {REQUEST_COLUMNS} FROM {s}.requests WHERE id = $1"),
            requests: format!("SELECT {REQUEST_COLUMNS} FROM {s}.requests WHERE TRUE"),
            insert_disclosure: format!(
                "INSERT INTO {s}.disclosures ({DISCLOSURE_COLUMNS}) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM {s}.subjects WHERE id = $2 \
                 FOR KEY SHARE"
            ),
            disclosures_of: format!(
                "SELECT {DISCLOSURE_COLUMNS} FROM {s}.disclosures WHERE subject = $1 ORDER BY pos"
            ),
            insert_notification: format!(
                "INSERT INTO {s}.notifications ({NOTIFICATION_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            // COALESCE keeps a column when its update field is `None`; $4 and $6 say whether
            // the nullable next attempt ($5) and last error ($7) change, so they can be cleared.
            update_notification: format!(
                "UPDATE {s}.notifications SET state = COALESCE($2::text, state), \
                 attempts = COALESCE($3::bigint, attempts), \
                 next_attempt_at = CASE WHEN $4::boolean THEN $5::bigint ELSE next_attempt_at END, \
                 last_error = CASE WHEN $6::boolean THEN $7::text ELSE last_error END, \
                 delivered_at = COALESCE($8::bigint, delivered_at), \
                 settled_at = COALESCE($9::bigint, settled_at), \
                 reason = COALESCE($10::bytea, reason), \
                 payload = COALESCE($11::bytea, payload) \
                 WHERE id = $1"
            ),
            notification: format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {s}.notifications WHERE id = $1"
            ),
            notifications_of: format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {s}.notifications WHERE request = $1 \
                 ORDER BY pos"
            ),
            // SKIP LOCKED, as for records: a second deliverer claiming at the same time passes
            // over the notifications this one has locked and takes the next due ones.
            due_notifications: format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {s}.notifications \
                 WHERE state = 'pending' AND next_attempt_at IS NOT NULL \
                 AND next_attempt_at <= $1 \
                 ORDER BY next_attempt_at, pos LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            claim_notifications: format!(
                "UPDATE {s}.notifications SET next_attempt_at = $2 WHERE id = ANY($1)"
            ),
        }
    }
}

/// The data store in schema `{namespace}_data`. Cheap to share: wrap it in an `Arc`.
#[derive(Debug)]
pub struct PgDataStore {
    pool: Pool,
    schema: String,
    sql: Sql,
}

impl PgDataStore {
    pub(crate) fn open(pool: Pool, namespace: &Namespace) -> Result<Self, StoreError> {
        let schema = namespace.data_schema();
        open_schema(&pool, &schema::DATA, &schema)?;
        let sql = Sql::new(&format!("\"{schema}\""));
        Ok(Self { pool, schema, sql })
    }

    /// The PostgreSQL schema holding the data.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Where the store connects, as `host:port/database` (no credentials).
    pub fn target(&self) -> &str {
        self.pool.target()
    }

    fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: impl FnOnce(&Row) -> Result<T, StoreError>,
        context: impl FnOnce() -> String,
    ) -> Result<Option<T>, StoreError> {
        self.pool.with_conn(|conn| {
            let row = conn
                .statements
                .query_opt(&mut conn.client, sql, params)
                .with_context(context)?;
            row.as_ref().map(read).transpose()
        })
    }

    fn query<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: impl Fn(&Row) -> Result<T, StoreError>,
        context: impl FnOnce() -> String,
    ) -> Result<Vec<T>, StoreError> {
        self.pool.with_conn(|conn| {
            let rows = conn
                .statements
                .query(&mut conn.client, sql, params)
                .with_context(context)?;
            rows.iter().map(read).collect()
        })
    }

    fn count(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: impl FnOnce() -> String,
    ) -> Result<u64, StoreError> {
        let count = self
            .query_opt(sql, params, |row| column::<i64>(row, 0, "count"), context)?
            .unwrap_or(0);
        u64::try_from(count).map_err(|_| StoreError::Corrupt(format!("negative count {count}")))
    }

    fn apply(
        &self,
        tx: &mut Transaction<'_>,
        statements: &mut StatementCache,
        mutation: &Mutation,
    ) -> Result<u64, StoreError> {
        let sql = &self.sql;
        match mutation {
            Mutation::InsertSubject(row) => {
                let id: &[u8] = row.id.as_bytes();
                let lookup: &[u8] = &row.lookup;
                let key: &[u8] = row.key.as_bytes();
                statements
                    .execute(
                        tx,
                        &sql.insert_subject,
                        &[
                            &id,
                            &lookup,
                            &row.profile,
                            &key,
                            &row.created_at.as_millis(),
                            &row.last_active_at.as_millis(),
                            &row.closed_at.map(Timestamp::as_millis),
                            &row.erased_at.map(Timestamp::as_millis),
                        ],
                    )
                    .map_err(|e| match e.as_db_error().and_then(|db| db.constraint()) {
                        Some("subjects_lookup_key") => StoreError::Conflict(format!(
                            "inserting subject {}: another subject has the same lookup hash",
                            row.id
                        )),
                        Some("subjects_pkey") => StoreError::Conflict(format!(
                            "inserting subject {}: the subject already exists",
                            row.id
                        )),
                        _ => pg_error(&e, &format!("inserting subject {}", row.id)),
                    })?;
                Ok(0)
            }
            Mutation::UpdateSubject { id, update } => {
                update_subject(tx, statements, &sql.update_subject, *id, update)?;
                Ok(0)
            }
            Mutation::InsertRecord(row) => {
                insert_record(tx, statements, &sql.insert_record, row)?;
                Ok(0)
            }
            Mutation::SetExpiry {
                subject,
                rule,
                expires_at,
            } => {
                let id: &[u8] = subject.as_bytes();
                statements
                    .execute(tx, &sql.set_expiry, &[&id, rule, &expires_at.as_millis()])
                    .with_context(|| format!("setting the expiry of rule {rule} for {subject}"))?;
                statements
                    .execute(
                        tx,
                        &sql.set_media_expiry,
                        &[&id, rule, &expires_at.as_millis()],
                    )
                    .with_context(|| {
                        format!("setting the media expiry of rule {rule} for {subject}")
                    })?;
                Ok(0)
            }
            Mutation::DeleteRecord(id) => {
                let bytes: &[u8] = id.as_bytes();
                statements
                    .execute(tx, &sql.delete_record, &[&bytes])
                    .with_context(|| format!("deleting record {id}"))
            }
            Mutation::DeleteRecordsOf {
                subject,
                keep_statutory,
            } => {
                let statement = if *keep_statutory {
                    &sql.delete_non_statutory_records_of
                } else {
                    &sql.delete_records_of
                };
                let bytes: &[u8] = subject.as_bytes();
                statements
                    .execute(tx, statement, &[&bytes])
                    .with_context(|| format!("deleting the records of {subject}"))
            }
            Mutation::DeleteSubject(id) => {
                // A missing subject is not an error, like every other deletion.
                let bytes: &[u8] = id.as_bytes();
                statements
                    .execute(tx, &sql.delete_subject, &[&bytes])
                    .map_err(|e| {
                        if is_foreign_key_violation(&e) {
                            StoreError::Conflict(format!(
                                "subject {id} still has records or media objects; delete them \
                                 first"
                            ))
                        } else {
                            pg_error(&e, &format!("deleting subject {id}"))
                        }
                    })?;
                Ok(0)
            }
            Mutation::InsertConsent(row) => {
                insert_consent(tx, statements, &sql.insert_consent, row)?;
                Ok(0)
            }
            Mutation::InsertApiKey(row) => {
                let id: &[u8] = row.id.as_bytes();
                let hash: &[u8] = &row.secret_hash;
                statements
                    .execute(
                        tx,
                        &sql.insert_api_key,
                        &[
                            &id,
                            &row.name,
                            &hash,
                            &row.admin,
                            &row.purposes,
                            &row.created_at.as_millis(),
                            &row.revoked_at.map(Timestamp::as_millis),
                        ],
                    )
                    .map_err(|e| {
                        insert_error(
                            &e,
                            "api_keys_pkey",
                            &format!("inserting API key {}", row.id),
                        )
                    })?;
                Ok(0)
            }
            Mutation::RevokeApiKey { id, at } => {
                let bytes: &[u8] = id.as_bytes();
                let changed = statements
                    .execute(tx, &sql.revoke_api_key, &[&bytes, &at.as_millis()])
                    .with_context(|| format!("revoking API key {id}"))?;
                if changed == 0 {
                    return Err(StoreError::NotFound(format!("API key {id}")));
                }
                Ok(0)
            }
            Mutation::InsertHold(row) => {
                let id: &[u8] = row.id.as_bytes();
                let subject: Option<&[u8]> = row.subject.as_ref().map(|s| s.as_bytes().as_slice());
                statements
                    .execute(
                        tx,
                        &sql.insert_hold,
                        &[
                            &id,
                            &subject,
                            &row.category,
                            &row.reason,
                            &row.created_at.as_millis(),
                            &row.ends_at.map(Timestamp::as_millis),
                            &row.released_at.map(Timestamp::as_millis),
                        ],
                    )
                    .map_err(|e| {
                        insert_error(&e, "holds_pkey", &format!("placing hold {}", row.id))
                    })?;
                Ok(0)
            }
            Mutation::ReleaseHold { id, at } => {
                let bytes: &[u8] = id.as_bytes();
                let changed = statements
                    .execute(tx, &sql.release_hold, &[&bytes, &at.as_millis()])
                    .with_context(|| format!("releasing hold {id}"))?;
                if changed == 0 {
                    return Err(StoreError::NotFound(format!("hold {id}")));
                }
                Ok(0)
            }
            Mutation::InsertMedia(row) => {
                insert_media(tx, statements, &sql.insert_media, row)?;
                Ok(0)
            }
            Mutation::UpdateMedia { id, update } => {
                update_media(tx, statements, (&sql.update_media, &sql.media), *id, update)?;
                Ok(0)
            }
            Mutation::DeleteMedia(id) => {
                // A missing row is not an error, like every other deletion.
                let bytes: &[u8] = id.as_bytes();
                statements
                    .execute(tx, &sql.delete_media, &[&bytes])
                    .with_context(|| format!("deleting media object {id}"))?;
                Ok(0)
            }
            Mutation::InsertRequest(row) => {
                insert_request(tx, statements, &sql.insert_request, row)?;
                Ok(0)
            }
            Mutation::UpdateRequest {
                id,
                expected_version,
                update,
            } => {
                update_request(tx, statements, sql, *id, *expected_version, update)?;
                Ok(0)
            }
            Mutation::InsertDisclosure(row) => {
                insert_disclosure(tx, statements, &sql.insert_disclosure, row)?;
                Ok(0)
            }
            Mutation::InsertNotification(row) => {
                insert_notification(tx, statements, &sql.insert_notification, row)?;
                Ok(0)
            }
            Mutation::UpdateNotification { id, update } => {
                update_notification(tx, statements, &sql.update_notification, *id, update)?;
                Ok(0)
            }
            Mutation::InsertPolicyVersion(row) => {
                // The label is left out of messages like every stored value.
                statements
                    .execute(
                        tx,
                        &sql.insert_policy_version,
                        &[
                            &row.version,
                            &row.published_at.as_millis(),
                            &row.fresh_consent_purposes,
                            &row.source,
                        ],
                    )
                    .map_err(|e| {
                        insert_error(&e, "policy_versions_pkey", "publishing a policy version")
                    })?;
                Ok(0)
            }
        }
    }

    /// The sweep transaction records and media objects share: up to `limit` victims chosen by
    /// `victims` (bound to `now` and the limit), `act` (bound to their ids) run on them all,
    /// and one `retention_deleted` entry appended per victim, in one transaction. The victims
    /// stay row-locked until the commit, so no other instance selects, changes or audits them;
    /// the audit head is locked last, as in `commit`, so the two cannot deadlock.
    fn take_expired<V: Expired>(
        &self,
        now: Timestamp,
        limit: usize,
        actor: &str,
        (victims, act): (&str, &str),
        from_row: fn(&Row) -> Result<V, StoreError>,
        what: &str,
    ) -> Result<Vec<V>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.pool.with_conn(|conn| {
            let mut tx = conn
                .client
                .transaction()
                .with_context(|| format!("beginning a {what}"))?;
            let victims = conn
                .statements
                .query(&mut tx, victims, &[&now.as_millis(), &self::limit(limit)])
                .with_context(|| format!("selecting the victims of a {what}"))?
                .iter()
                .map(from_row)
                .collect::<Result<Vec<_>, _>>()?;
            if victims.is_empty() {
                return Ok(victims);
            }
            let ids: Vec<&[u8]> = victims.iter().map(|v| v.id_bytes().as_slice()).collect();
            conn.statements
                .execute(&mut tx, act, &[&ids])
                .with_context(|| format!("applying a {what}"))?;
            let events = victims.iter().map(|v| v.audit_event(now, actor)).collect();
            self.append(&mut tx, &mut conn.statements, events)?;
            // Any error above returned early and dropped `tx`, which rolls everything back.
            tx.commit()
                .with_context(|| format!("committing a {what}"))?;
            Ok(victims)
        })
    }

    /// Chains `events` after the locked head and inserts them; returns the new head.
    fn append(
        &self,
        tx: &mut Transaction<'_>,
        statements: &mut StatementCache,
        events: Vec<AuditEvent>,
    ) -> Result<Anchor, StoreError> {
        // Taken after the mutations, not before: the row lock serialises every appending commit
        // of every instance until it commits, so holding it only for the audit insert keeps that
        // window short. Nothing else is locked after it, so it cannot deadlock with row locks.
        let head = read_head(tx, statements, &self.sql.lock_head)?;
        let mut chain = Chain::from_anchor(head).map_err(|e| {
            StoreError::Corrupt(format!("audit head in schema {}: {e}", self.schema))
        })?;
        let entries = chain.append_batch(events);
        if entries.len() >= COPY_THRESHOLD {
            copy_entries(tx, statements, &self.sql.copy_audit, &entries)?;
        } else {
            for entry in &entries {
                insert_entry(tx, statements, &self.sql.insert_audit, entry)?;
            }
        }
        let head = chain.head();
        let seq = to_i64(head.seq, "audit seq")?;
        let hash: &[u8] = &head.hash;
        statements
            .execute(tx, &self.sql.update_head, &[&seq, &hash])
            .context("moving the audit head")?;
        Ok(head)
    }
}

impl DataStore for PgDataStore {
    fn commit(&self, batch: WriteBatch) -> Result<CommitReceipt, StoreError> {
        if batch.is_empty() {
            return Ok(CommitReceipt {
                head: self.audit_head()?,
                deleted_records: 0,
            });
        }
        let WriteBatch { mutations, audit } = batch;
        self.pool.with_conn(|conn| {
            let mut tx = conn.client.transaction().context("beginning a commit")?;
            let mut deleted_records = 0u64;
            for mutation in &mutations {
                deleted_records += self.apply(&mut tx, &mut conn.statements, mutation)?;
            }
            let head = if audit.is_empty() {
                read_head(&mut tx, &mut conn.statements, &self.sql.head)?
            } else {
                self.append(&mut tx, &mut conn.statements, audit)?
            };
            // Any error above returned early and dropped `tx`, which rolls everything back.
            tx.commit().context("committing a batch")?;
            Ok(CommitReceipt {
                head: non_genesis(head),
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
            (&self.sql.sweep_victims, &self.sql.sweep_delete),
            swept_from_row,
            "sweep of expired records",
        )
    }

    fn count_expired(&self, now: Timestamp) -> Result<Vec<ExpiredCount>, StoreError> {
        self.query(
            &self.sql.count_expired,
            &[&now.as_millis()],
            expired_count_from_row,
            || "counting expired records and media objects".to_owned(),
        )
    }

    fn media(&self, id: MediaId) -> Result<Option<MediaRow>, StoreError> {
        let bytes: &[u8] = id.as_bytes();
        self.query_opt(&self.sql.media, &[&bytes], media_from_row, || {
            format!("reading media object {id}")
        })
    }

    fn media_of(
        &self,
        subject: SubjectId,
        category: Option<&str>,
    ) -> Result<Vec<MediaRow>, StoreError> {
        let bytes: &[u8] = subject.as_bytes();
        let context = || format!("reading the media objects of {subject}");
        match category {
            None => self.query(&self.sql.media_of, &[&bytes], media_from_row, context),
            Some(category) => self.query(
                &self.sql.media_of_category,
                &[&bytes, &category],
                media_from_row,
                context,
            ),
        }
    }

    fn media_in_state(
        &self,
        state: MediaState,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<MediaRow>, StoreError> {
        self.query(
            &self.sql.media_in_state,
            &[&state.as_str(), &before.as_millis(), &self::limit(limit)],
            media_from_row,
            || format!("reading {} media objects", state.as_str()),
        )
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
            (&self.sql.claim_victims, &self.sql.claim_media),
            claimed_from_row,
            "claim of expired media objects",
        )
    }

    fn request(&self, id: RequestId) -> Result<Option<RequestRow>, StoreError> {
        let bytes: &[u8] = id.as_bytes();
        self.query_opt(&self.sql.request, &[&bytes], request_from_row, || {
            format!("reading request {id}")
        })
    }

    fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        // Only the conditions the filter sets are in the text, so the planner can pick the
        // state or the subject index; the statement cache keeps each of the few shapes.
        let mut sql = self.sql.requests.clone();
        let state = filter.state.as_deref();
        let due_before = filter.due_before.map(Timestamp::as_millis);
        let subject: Option<&[u8]> = filter.subject.as_ref().map(|s| s.as_bytes().as_slice());
        let limit = match filter.limit {
            0 => i64::MAX,
            n => self::limit(n),
        };
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        if let Some(state) = &state {
            params.push(state);
            sql.push_str(&format!(" AND state = ${}", params.len()));
        }
        if let Some(due_before) = &due_before {
            params.push(due_before);
            sql.push_str(&format!(" AND due_at <= ${}", params.len()));
        }
        if let Some(subject) = &subject {
            params.push(subject);
            sql.push_str(&format!(" AND subject = ${}", params.len()));
        }
        if filter.open_only {
            sql.push_str(" AND state NOT IN ('fulfilled', 'rejected')");
        }
        sql.push_str(" ORDER BY due_at, id LIMIT $1");
        self.query(&sql, &params, request_from_row, || {
            "reading requests".to_owned()
        })
    }

    fn disclosures_of(&self, subject: SubjectId) -> Result<Vec<DisclosureRow>, StoreError> {
        let bytes: &[u8] = subject.as_bytes();
        self.query(
            &self.sql.disclosures_of,
            &[&bytes],
            disclosure_from_row,
            || format!("reading the disclosures of {subject}"),
        )
    }

    fn notification(&self, id: NotificationId) -> Result<Option<NotificationRow>, StoreError> {
        let bytes: &[u8] = id.as_bytes();
        self.query_opt(
            &self.sql.notification,
            &[&bytes],
            notification_from_row,
            || format!("reading notification {id}"),
        )
    }

    fn notifications_of(&self, request: RequestId) -> Result<Vec<NotificationRow>, StoreError> {
        let bytes: &[u8] = request.as_bytes();
        self.query(
            &self.sql.notifications_of,
            &[&bytes],
            notification_from_row,
            || format!("reading the notifications of request {request}"),
        )
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
        self.pool.with_conn(|conn| {
            let mut tx = conn
                .client
                .transaction()
                .context("beginning a notification claim")?;
            // The due notifications stay row-locked until the commit, so no other instance
            // claims them; once it commits, their next attempt is past `now`.
            let due = conn
                .statements
                .query(
                    &mut tx,
                    &self.sql.due_notifications,
                    &[&now.as_millis(), &self::limit(limit)],
                )
                .context("selecting due notifications to claim")?
                .iter()
                .map(notification_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            if due.is_empty() {
                return Ok(due);
            }
            let ids: Vec<&[u8]> = due.iter().map(|n| n.id.as_bytes().as_slice()).collect();
            conn.statements
                .execute(
                    &mut tx,
                    &self.sql.claim_notifications,
                    &[&ids, &until.as_millis()],
                )
                .context("claiming due notifications")?;
            // Any error above returned early and dropped `tx`, which rolls everything back.
            tx.commit().context("committing a notification claim")?;
            Ok(due)
        })
    }

    fn holds(&self) -> Result<Vec<HoldRow>, StoreError> {
        self.query(&self.sql.holds, &[], hold_from_row, || {
            "reading the legal holds".to_owned()
        })
    }

    fn subject(&self, id: SubjectId) -> Result<Option<SubjectRow>, StoreError> {
        let bytes: &[u8] = id.as_bytes();
        self.query_opt(&self.sql.subject, &[&bytes], subject_from_row, || {
            format!("reading subject {id}")
        })
    }

    fn subject_by_lookup(&self, lookup: &[u8; 32]) -> Result<Option<SubjectRow>, StoreError> {
        let bytes: &[u8] = lookup;
        self.query_opt(
            &self.sql.subject_by_lookup,
            &[&bytes],
            subject_from_row,
            || "reading a subject by lookup hash".to_owned(),
        )
    }

    fn record(&self, id: RecordId) -> Result<Option<RecordRow>, StoreError> {
        let bytes: &[u8] = id.as_bytes();
        self.query_opt(&self.sql.record, &[&bytes], record_from_row, || {
            format!("reading record {id}")
        })
    }

    fn records_of(
        &self,
        subject: SubjectId,
        category: Option<&str>,
    ) -> Result<Vec<RecordRow>, StoreError> {
        let bytes: &[u8] = subject.as_bytes();
        let context = || format!("reading the records of {subject}");
        match category {
            None => self.query(&self.sql.records_of, &[&bytes], record_from_row, context),
            Some(category) => self.query(
                &self.sql.records_of_category,
                &[&bytes, &category],
                record_from_row,
                context,
            ),
        }
    }

    fn expired_records(&self, now: Timestamp, limit: usize) -> Result<Vec<RecordRow>, StoreError> {
        self.query(
            &self.sql.expired_records,
            &[&now.as_millis(), &self::limit(limit)],
            record_from_row,
            || "reading expired records".to_owned(),
        )
    }

    fn count_statutory_records(&self, subject: SubjectId) -> Result<u64, StoreError> {
        let bytes: &[u8] = subject.as_bytes();
        self.count(&self.sql.count_statutory_records, &[&bytes], || {
            format!("counting the statutory records of {subject}")
        })
    }

    fn count_records(&self) -> Result<u64, StoreError> {
        self.count(&self.sql.count_records, &[], || {
            "counting records".to_owned()
        })
    }

    fn consents_of(&self, subject: SubjectId) -> Result<Vec<ConsentRow>, StoreError> {
        let bytes: &[u8] = subject.as_bytes();
        self.query(&self.sql.consents_of, &[&bytes], consent_from_row, || {
            format!("reading the consent ledger of {subject}")
        })
    }

    fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRow>, StoreError> {
        let bytes: &[u8] = id.as_bytes();
        self.query_opt(&self.sql.api_key, &[&bytes], api_key_from_row, || {
            format!("reading API key {id}")
        })
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        self.query(&self.sql.api_keys, &[], api_key_from_row, || {
            "reading the API keys".to_owned()
        })
    }

    fn policy_versions(&self) -> Result<Vec<PolicyVersionRow>, StoreError> {
        self.query(
            &self.sql.policy_versions,
            &[],
            policy_version_from_row,
            || "reading the published policy versions".to_owned(),
        )
    }

    fn audit_head(&self) -> Result<Option<Anchor>, StoreError> {
        let head = self
            .pool
            .with_conn(|conn| read_head(&mut conn.client, &mut conn.statements, &self.sql.head))?;
        Ok(non_genesis(head))
    }

    fn audit_entries(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        // Seqs are BIGINT: nothing lies past i64::MAX.
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new());
        };
        self.query(
            &self.sql.audit_entries,
            &[&from, &self::limit(limit)],
            entry_from_row,
            || format!("reading audit entries from {from}"),
        )
    }

    fn audit_entries_of(
        &self,
        from: u64,
        through: u64,
        kinds: &[EventKind],
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // Seqs are BIGINT: nothing lies past i64::MAX.
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new());
        };
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        let kinds: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
        self.query(
            &self.sql.audit_entries_of,
            &[&from, &through, &kinds, &self::limit(limit)],
            entry_from_row,
            || format!("reading audit entries from {from}"),
        )
    }
}

fn update_subject(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    id: SubjectId,
    update: &SubjectUpdate,
) -> Result<(), StoreError> {
    let bytes: &[u8] = id.as_bytes();
    let changed = statements
        .execute(
            tx,
            sql,
            &[
                &bytes,
                &update.last_active_at.map(Timestamp::as_millis),
                &update.closed_at.map(Timestamp::as_millis),
                &update.erased_at.map(Timestamp::as_millis),
                &update.profile,
            ],
        )
        .with_context(|| format!("updating subject {id}"))?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("subject {id}")));
    }
    Ok(())
}

fn insert_record(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    row: &RecordRow,
) -> Result<(), StoreError> {
    let id: &[u8] = row.id.as_bytes();
    let subject: &[u8] = row.subject.as_bytes();
    let key: &[u8] = row.key.as_bytes();
    statements
        .execute(
            tx,
            sql,
            &[
                &id,
                &subject,
                &row.category,
                &row.purpose,
                &key,
                &row.ciphertext,
                &row.collected_at.as_millis(),
                &row.rule,
                &row.expires_at.map(Timestamp::as_millis),
                &row.statutory,
            ],
        )
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!("subject {} of record {}", row.subject, row.id))
            } else {
                insert_error(&e, "records_pkey", &format!("inserting record {}", row.id))
            }
        })?;
    Ok(())
}

fn insert_media(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    row: &MediaRow,
) -> Result<(), StoreError> {
    let id: &[u8] = row.id.as_bytes();
    let subject: &[u8] = row.subject.as_bytes();
    let key: &[u8] = row.key.as_bytes();
    let parent: Option<&[u8]> = row.parent.as_ref().map(|p| p.as_bytes().as_slice());
    let lease = row.lease.as_ref();
    let lease_id: Option<&[u8]> = lease.map(|l| l.id.as_bytes().as_slice());
    let lease_holder: Option<&[u8]> = lease.map(|l| l.holder.as_bytes().as_slice());
    statements
        .execute(
            tx,
            sql,
            &[
                &id,
                &subject,
                &row.category,
                &row.purpose,
                &key,
                &row.wrapped_key,
                &row.location,
                &row.content_type,
                &to_i64(row.size, "media size")?,
                &to_i64(row.stored_size, "media stored size")?,
                &row.state.as_str(),
                &parent,
                &row.created_at.as_millis(),
                &row.processed_at.map(Timestamp::as_millis),
                &row.rule,
                &row.expires_at.map(Timestamp::as_millis),
                &row.statutory,
                &lease_id,
                &lease_holder,
                &lease.map(|l| l.purpose.as_str()),
                &lease.map(|l| l.granted_at.as_millis()),
                &lease.map(|l| l.expires_at.as_millis()),
                &row.digest,
            ],
        )
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound(format!(
                    "subject {} of media object {}",
                    row.subject, row.id
                ))
            } else {
                insert_error(
                    &e,
                    "media_pkey",
                    &format!("inserting media object {}", row.id),
                )
            }
        })?;
    Ok(())
}

/// Applies `update` with `sql` (the update, and the select that tells a lost compare-and-set on
/// the lease from a missing row).
fn update_media(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    (sql, select): (&str, &str),
    id: MediaId,
    update: &MediaUpdate,
) -> Result<(), StoreError> {
    let bytes: &[u8] = id.as_bytes();
    let expected_lease: Option<&[u8]> = update
        .expected_lease
        .as_ref()
        .and_then(Option::as_ref)
        .map(|lease| lease.as_bytes().as_slice());
    let (size, stored_size) = match update.sizes {
        Some((size, stored)) => (
            Some(to_i64(size, "media size")?),
            Some(to_i64(stored, "media stored size")?),
        ),
        None => (None, None),
    };
    let lease = update.lease.as_ref().and_then(Option::as_ref);
    let lease_id: Option<&[u8]> = lease.map(|l| l.id.as_bytes().as_slice());
    let lease_holder: Option<&[u8]> = lease.map(|l| l.holder.as_bytes().as_slice());
    let changed = statements
        .execute(
            tx,
            sql,
            &[
                &bytes,
                &update.state.map(MediaState::as_str),
                &size,
                &stored_size,
                &update.expires_at.map(Timestamp::as_millis),
                &update.processed_at.map(Timestamp::as_millis),
                &update.lease.is_some(),
                &lease_id,
                &lease_holder,
                &lease.map(|l| l.purpose.as_str()),
                &lease.map(|l| l.granted_at.as_millis()),
                &lease.map(|l| l.expires_at.as_millis()),
                &update.shred,
                &update.digest,
                &update.expected_lease.is_some(),
                &expected_lease,
            ],
        )
        .with_context(|| format!("updating media object {id}"))?;
    if changed == 0 {
        // Only a compare-and-set can miss a row that exists.
        let exists = update.expected_lease.is_some()
            && statements
                .query_opt(tx, select, &[&bytes])
                .with_context(|| format!("reading media object {id}"))?
                .is_some();
        return Err(if exists {
            StoreError::Conflict(format!("media object {id}: its lease changed"))
        } else {
            StoreError::NotFound(format!("media object {id}"))
        });
    }
    Ok(())
}

fn insert_consent(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    row: &ConsentRow,
) -> Result<(), StoreError> {
    let id: &[u8] = row.id.as_bytes();
    let subject: &[u8] = row.subject.as_bytes();
    let guardian: Option<&[u8]> = row.guardian.as_ref().map(|g| g.as_bytes().as_slice());
    let inserted = statements
        .execute(
            tx,
            sql,
            &[
                &id,
                &subject,
                &row.purposes,
                &row.kind.as_str(),
                &guardian,
                &row.guardian_verified,
                &row.policy_version,
                &row.method,
                &row.at.as_millis(),
                &row.expires_at.map(Timestamp::as_millis),
            ],
        )
        .map_err(|e| {
            insert_error(
                &e,
                "consent_events_pkey",
                &format!("appending consent event {}", row.id),
            )
        })?;
    if inserted == 0 {
        return Err(StoreError::NotFound(format!(
            "subject {} of consent event {}",
            row.subject, row.id
        )));
    }
    Ok(())
}

fn insert_request(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    row: &RequestRow,
) -> Result<(), StoreError> {
    let id: &[u8] = row.id.as_bytes();
    let subject: &[u8] = row.subject.as_bytes();
    let verification = row.verification.as_ref();
    let code_hash: Option<&[u8]> = verification.map(|v| v.code_hash.as_slice());
    let inserted = statements
        .execute(
            tx,
            sql,
            &[
                &id,
                &subject,
                &row.kind,
                &row.state,
                &row.law,
                &row.received_at.as_millis(),
                &row.acknowledge_by.map(Timestamp::as_millis),
                &row.due_at.as_millis(),
                &row.original_due_at.map(Timestamp::as_millis),
                &row.flags,
                &code_hash,
                &verification.map(|v| v.issued_at.as_millis()),
                &verification.map(|v| v.expires_at.as_millis()),
                &verification.map(|v| i64::from(v.attempts)),
                &row.updated_at.as_millis(),
                &row.closed_at.map(Timestamp::as_millis),
                &to_i64(row.version, "request version")?,
                &row.details,
            ],
        )
        .map_err(|e| {
            insert_error(
                &e,
                "requests_pkey",
                &format!("inserting request {}", row.id),
            )
        })?;
    if inserted == 0 {
        return Err(StoreError::NotFound(format!(
            "subject {} of request {}",
            row.subject, row.id
        )));
    }
    Ok(())
}

fn update_request(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &Sql,
    id: RequestId,
    expected_version: u64,
    update: &RequestUpdate,
) -> Result<(), StoreError> {
    let bytes: &[u8] = id.as_bytes();
    // Versions are never negative, so a version past i64::MAX matches no row: a conflict.
    let expected = i64::try_from(expected_version).unwrap_or(-1);
    let verification = update.verification.as_ref().and_then(Option::as_ref);
    let code_hash: Option<&[u8]> = verification.map(|v| v.code_hash.as_slice());
    let changed = statements
        .execute(
            tx,
            &sql.update_request,
            &[
                &bytes,
                &expected,
                &update.state,
                &update.due_at.map(Timestamp::as_millis),
                &update.original_due_at.map(Timestamp::as_millis),
                &update.details,
                &update.flags,
                &update.verification.is_some(),
                &code_hash,
                &verification.map(|v| v.issued_at.as_millis()),
                &verification.map(|v| v.expires_at.as_millis()),
                &verification.map(|v| i64::from(v.attempts)),
                &update.closed_at.map(Timestamp::as_millis),
                &update.updated_at.as_millis(),
            ],
        )
        .with_context(|| format!("updating request {id}"))?;
    if changed == 0 {
        // Nothing changed: tell a missing request from one that moved on since it was read. A
        // concurrent update that won committed before the statement above returned, so this
        // read sees it.
        let found = statements
            .query_opt(tx, &sql.request_version, &[&bytes])
            .with_context(|| format!("reading the version of request {id}"))?;
        return Err(match found {
            None => StoreError::NotFound(format!("request {id}")),
            Some(row) => {
                let version: i64 = column(&row, 0, &format!("request {id} version"))?;
                StoreError::Conflict(format!(
                    "request {id} is at version {version}, not {expected_version}: it changed \
                     since it was read"
                ))
            }
        });
    }
    Ok(())
}

fn insert_disclosure(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    row: &DisclosureRow,
) -> Result<(), StoreError> {
    let id: &[u8] = row.id.as_bytes();
    let subject: &[u8] = row.subject.as_bytes();
    let inserted = statements
        .execute(
            tx,
            sql,
            &[
                &id,
                &subject,
                &row.recipient,
                &row.recipient_kind,
                &row.categories,
                &row.purpose,
                &row.at.as_millis(),
                &row.reference,
                &row.country,
                &row.mechanism,
            ],
        )
        .map_err(|e| {
            insert_error(
                &e,
                "disclosures_pkey",
                &format!("recording disclosure {}", row.id),
            )
        })?;
    if inserted == 0 {
        return Err(StoreError::NotFound(format!(
            "subject {} of disclosure {}",
            row.subject, row.id
        )));
    }
    Ok(())
}

fn insert_notification(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    row: &NotificationRow,
) -> Result<(), StoreError> {
    let id: &[u8] = row.id.as_bytes();
    let request: Option<&[u8]> = row.request.as_ref().map(|r| r.as_bytes().as_slice());
    let subject: &[u8] = row.subject.as_bytes();
    statements
        .execute(
            tx,
            sql,
            &[
                &id,
                &row.kind,
                &request,
                &subject,
                &row.recipient,
                &row.state,
                &i64::from(row.attempts),
                &row.next_attempt_at.map(Timestamp::as_millis),
                &row.last_error,
                &row.created_at.as_millis(),
                &row.delivered_at.map(Timestamp::as_millis),
                &row.settled_at.map(Timestamp::as_millis),
                &row.reason,
                &row.payload,
            ],
        )
        .map_err(|e| {
            // The only foreign key of notifications is their request.
            if is_foreign_key_violation(&e) {
                let request = row.request.map(|r| r.to_string()).unwrap_or_default();
                StoreError::NotFound(format!("request {request} of notification {}", row.id))
            } else {
                insert_error(
                    &e,
                    "notifications_pkey",
                    &format!("queueing notification {}", row.id),
                )
            }
        })?;
    Ok(())
}

fn update_notification(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    id: NotificationId,
    update: &NotificationUpdate,
) -> Result<(), StoreError> {
    let bytes: &[u8] = id.as_bytes();
    let changed = statements
        .execute(
            tx,
            sql,
            &[
                &bytes,
                &update.state,
                &update.attempts.map(i64::from),
                &update.next_attempt_at.is_some(),
                &update.next_attempt_at.flatten().map(Timestamp::as_millis),
                &update.last_error.is_some(),
                &update.last_error.as_ref().and_then(Option::as_deref),
                &update.delivered_at.map(Timestamp::as_millis),
                &update.settled_at.map(Timestamp::as_millis),
                &update.reason,
                &update.payload,
            ],
        )
        .with_context(|| format!("updating notification {id}"))?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("notification {id}")));
    }
    Ok(())
}

fn is_foreign_key_violation(err: &postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| db.code().code() == "23503")
}

fn read_head(
    client: &mut impl GenericClient,
    statements: &mut StatementCache,
    sql: &str,
) -> Result<Anchor, StoreError> {
    let row = statements
        .query_opt(client, sql, &[])
        .context("reading the audit head")?
        .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".to_owned()))?;
    let seq: i64 = column(&row, 0, "audit head seq")?;
    let seq = u64::try_from(seq)
        .map_err(|_| StoreError::Corrupt(format!("audit head has a negative seq {seq}")))?;
    Ok(Anchor::new(seq, hash32(&row, 1, "audit head hash")?))
}

/// The receipt's head: `None` while the chain is empty.
fn non_genesis(head: Anchor) -> Option<Anchor> {
    (head.seq > 0).then_some(head)
}

fn insert_entry(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    let seq = to_i64(entry.seq, "audit seq")?;
    let prev: &[u8] = &entry.prev_hash;
    let hash: &[u8] = &entry.hash;
    let event = &entry.event;
    statements
        .execute(
            tx,
            sql,
            &[
                &seq,
                &prev,
                &hash,
                &event.kind.as_str(),
                &event.at,
                &event.actor,
                &event.subject,
                &event.category,
                &event.purpose,
                &event.record,
                &event.outcome,
                &event.reasons,
                &event.rule,
            ],
        )
        .with_context(|| format!("appending audit entry {}", entry.seq))?;
    Ok(())
}

fn copy_entries(
    tx: &mut Transaction<'_>,
    statements: &mut StatementCache,
    sql: &str,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    let context = || {
        let first = entries.first().map_or(0, |e| e.seq);
        format!("appending {} audit entries from {first}", entries.len())
    };
    let statement = statements.get(tx, sql).with_context(context)?;
    let copy = tx.copy_in(&statement).with_context(context)?;
    let mut writer = BinaryCopyInWriter::new(copy, &AUDIT_TYPES);
    for entry in entries {
        let seq = to_i64(entry.seq, "audit seq")?;
        let prev: &[u8] = &entry.prev_hash;
        let hash: &[u8] = &entry.hash;
        let event = &entry.event;
        writer
            .write(&[
                &seq,
                &prev,
                &hash,
                &event.kind.as_str(),
                &event.at,
                &event.actor,
                &event.subject,
                &event.category,
                &event.purpose,
                &event.record,
                &event.outcome,
                &event.reasons,
                &event.rule,
            ])
            .with_context(context)?;
    }
    writer.finish().with_context(context)?;
    Ok(())
}

fn hash32(row: &Row, index: usize, what: &str) -> Result<[u8; 32], StoreError> {
    bytes_n::<32>(row, index, what)
}

fn millis(row: &Row, index: usize, what: &str) -> Result<Timestamp, StoreError> {
    column::<i64>(row, index, what).map(Timestamp::from_millis)
}

fn opt_millis(row: &Row, index: usize, what: &str) -> Result<Option<Timestamp>, StoreError> {
    column::<Option<i64>>(row, index, what).map(|m| m.map(Timestamp::from_millis))
}

fn subject_from_row(row: &Row) -> Result<SubjectRow, StoreError> {
    let id = SubjectId::from_bytes(bytes_n(row, 0, "subject id")?);
    let what = |field: &str| format!("subject {id} {field}");
    Ok(SubjectRow {
        id,
        lookup: bytes_n(row, 1, &what("lookup"))?,
        profile: column(row, 2, &what("profile"))?,
        key: KeyId::from_bytes(bytes_n(row, 3, &what("key"))?),
        created_at: millis(row, 4, &what("created_at"))?,
        last_active_at: millis(row, 5, &what("last_active_at"))?,
        closed_at: opt_millis(row, 6, &what("closed_at"))?,
        erased_at: opt_millis(row, 7, &what("erased_at"))?,
    })
}

fn record_from_row(row: &Row) -> Result<RecordRow, StoreError> {
    let id = RecordId::from_bytes(bytes_n(row, 0, "record id")?);
    let what = |field: &str| format!("record {id} {field}");
    Ok(RecordRow {
        id,
        subject: SubjectId::from_bytes(bytes_n(row, 1, &what("subject"))?),
        category: column(row, 2, &what("category"))?,
        purpose: column(row, 3, &what("purpose"))?,
        key: KeyId::from_bytes(bytes_n(row, 4, &what("key"))?),
        ciphertext: column(row, 5, &what("ciphertext"))?,
        collected_at: millis(row, 6, &what("collected_at"))?,
        rule: column(row, 7, &what("rule"))?,
        expires_at: opt_millis(row, 8, &what("expires_at"))?,
        statutory: column(row, 9, &what("statutory"))?,
    })
}

fn swept_from_row(row: &Row) -> Result<SweptRecord, StoreError> {
    let id = RecordId::from_bytes(bytes_n(row, 0, "record id")?);
    let what = |field: &str| format!("record {id} {field}");
    Ok(SweptRecord {
        id,
        subject: SubjectId::from_bytes(bytes_n(row, 1, &what("subject"))?),
        category: column(row, 2, &what("category"))?,
        rule: column(row, 3, &what("rule"))?,
        statutory: column(row, 4, &what("statutory"))?,
    })
}

fn claimed_from_row(row: &Row) -> Result<SweptMedia, StoreError> {
    let id = MediaId::from_bytes(bytes_n(row, 0, "media object id")?);
    let what = |field: &str| format!("media object {id} {field}");
    Ok(SweptMedia {
        id,
        subject: SubjectId::from_bytes(bytes_n(row, 1, &what("subject"))?),
        category: column(row, 2, &what("category"))?,
        rule: column(row, 3, &what("rule"))?,
        location: column(row, 4, &what("location"))?,
    })
}

fn media_from_row(row: &Row) -> Result<MediaRow, StoreError> {
    let id = MediaId::from_bytes(bytes_n(row, 0, "media object id")?);
    let what = |field: &str| format!("media object {id} {field}");
    let size = |index: usize, field: &str| -> Result<u64, StoreError> {
        let value: i64 = column(row, index, &what(field))?;
        u64::try_from(value).map_err(|_| StoreError::Corrupt(what(&format!("{field}: negative"))))
    };
    let state: &str = column(row, 10, &what("state"))?;
    // The stored text is not echoed: a damaged or altered table could hold anything there.
    let state = MediaState::parse(state)
        .ok_or_else(|| StoreError::Corrupt(what("state: unknown media state")))?;
    let lease = match (
        opt_bytes_n::<16>(row, 17, &what("lease_id"))?,
        opt_bytes_n::<16>(row, 18, &what("lease_holder"))?,
        column::<Option<String>>(row, 19, &what("lease_purpose"))?,
        opt_millis(row, 20, &what("lease_granted_at"))?,
        opt_millis(row, 21, &what("lease_expires_at"))?,
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
        _ => return Err(StoreError::Corrupt(what("lease: partially set"))),
    };
    Ok(MediaRow {
        id,
        subject: SubjectId::from_bytes(bytes_n(row, 1, &what("subject"))?),
        category: column(row, 2, &what("category"))?,
        purpose: column(row, 3, &what("purpose"))?,
        key: KeyId::from_bytes(bytes_n(row, 4, &what("key"))?),
        wrapped_key: column(row, 5, &what("wrapped_key"))?,
        location: column(row, 6, &what("location"))?,
        content_type: column(row, 7, &what("content_type"))?,
        size: size(8, "size")?,
        stored_size: size(9, "stored_size")?,
        state,
        parent: opt_bytes_n(row, 11, &what("parent"))?.map(MediaId::from_bytes),
        created_at: millis(row, 12, &what("created_at"))?,
        processed_at: opt_millis(row, 13, &what("processed_at"))?,
        rule: column(row, 14, &what("rule"))?,
        expires_at: opt_millis(row, 15, &what("expires_at"))?,
        statutory: column(row, 16, &what("statutory"))?,
        lease,
        digest: column(row, 22, &what("digest"))?,
    })
}

fn hold_from_row(row: &Row) -> Result<HoldRow, StoreError> {
    let id = HoldId::from_bytes(bytes_n(row, 0, "hold id")?);
    let what = |field: &str| format!("hold {id} {field}");
    Ok(HoldRow {
        id,
        subject: opt_bytes_n(row, 1, &what("subject"))?.map(SubjectId::from_bytes),
        category: column(row, 2, &what("category"))?,
        reason: column(row, 3, &what("reason"))?,
        created_at: millis(row, 4, &what("created_at"))?,
        ends_at: opt_millis(row, 5, &what("ends_at"))?,
        released_at: opt_millis(row, 6, &what("released_at"))?,
    })
}

fn expired_count_from_row(row: &Row) -> Result<ExpiredCount, StoreError> {
    let count = |index: usize| -> Result<u64, StoreError> {
        let count: i64 = column(row, index, "expired-record count")?;
        u64::try_from(count)
            .map_err(|_| StoreError::Corrupt(format!("expired-record count {count} is negative")))
    };
    Ok(ExpiredCount {
        category: column(row, 0, "category of expired records")?,
        rule: column(row, 1, "rule of expired records")?,
        due: count(2)?,
        held: count(3)?,
    })
}

fn consent_from_row(row: &Row) -> Result<ConsentRow, StoreError> {
    let id = ConsentId::from_bytes(bytes_n(row, 0, "consent event id")?);
    let what = |field: &str| format!("consent event {id} {field}");
    let kind: &str = column(row, 3, &what("kind"))?;
    // The stored text is not echoed: a damaged or altered table could hold anything there.
    let kind = ConsentEventKind::parse(kind)
        .ok_or_else(|| StoreError::Corrupt(what("kind: unknown consent event kind")))?;
    Ok(ConsentRow {
        id,
        subject: SubjectId::from_bytes(bytes_n(row, 1, &what("subject"))?),
        purposes: column(row, 2, &what("purposes"))?,
        kind,
        guardian: opt_bytes_n(row, 4, &what("guardian"))?.map(SubjectId::from_bytes),
        guardian_verified: column(row, 5, &what("guardian_verified"))?,
        policy_version: column(row, 6, &what("policy_version"))?,
        method: column(row, 7, &what("method"))?,
        at: millis(row, 8, &what("at"))?,
        expires_at: opt_millis(row, 9, &what("expires_at"))?,
    })
}

fn api_key_from_row(row: &Row) -> Result<ApiKeyRow, StoreError> {
    let id = ApiKeyId::from_bytes(bytes_n(row, 0, "API key id")?);
    let what = |field: &str| format!("API key {id} {field}");
    Ok(ApiKeyRow {
        id,
        name: column(row, 1, &what("name"))?,
        secret_hash: hash32(row, 2, &what("secret_hash"))?,
        admin: column(row, 3, &what("admin"))?,
        purposes: column(row, 4, &what("purposes"))?,
        created_at: millis(row, 5, &what("created_at"))?,
        revoked_at: opt_millis(row, 6, &what("revoked_at"))?,
    })
}

fn policy_version_from_row(row: &Row) -> Result<PolicyVersionRow, StoreError> {
    // Named by column only: the version label is a stored value.
    let what = |field: &str| format!("policy version {field}");
    Ok(PolicyVersionRow {
        version: column(row, 0, &what("version"))?,
        published_at: millis(row, 1, &what("published_at"))?,
        fresh_consent_purposes: column(row, 2, &what("fresh_consent_purposes"))?,
        source: column(row, 3, &what("source"))?,
    })
}

fn request_from_row(row: &Row) -> Result<RequestRow, StoreError> {
    let id = RequestId::from_bytes(bytes_n(row, 0, "request id")?);
    let what = |field: &str| format!("request {id} {field}");
    let verification = match (
        opt_bytes_n::<32>(row, 10, &what("verification_code_hash"))?,
        opt_millis(row, 11, &what("verification_issued_at"))?,
        opt_millis(row, 12, &what("verification_expires_at"))?,
        column::<Option<i64>>(row, 13, &what("verification_attempts"))?,
    ) {
        (None, None, None, None) => None,
        (Some(code_hash), Some(issued_at), Some(expires_at), Some(attempts)) => {
            Some(VerificationRow {
                code_hash,
                issued_at,
                expires_at,
                attempts: u32::try_from(attempts).map_err(|_| {
                    StoreError::Corrupt(what("verification_attempts: out of range"))
                })?,
            })
        }
        _ => return Err(StoreError::Corrupt(what("verification: partially set"))),
    };
    let version: i64 = column(row, 16, &what("version"))?;
    Ok(RequestRow {
        id,
        subject: SubjectId::from_bytes(bytes_n(row, 1, &what("subject"))?),
        kind: column(row, 2, &what("kind"))?,
        state: column(row, 3, &what("state"))?,
        law: column(row, 4, &what("law"))?,
        received_at: millis(row, 5, &what("received_at"))?,
        acknowledge_by: opt_millis(row, 6, &what("acknowledge_by"))?,
        due_at: millis(row, 7, &what("due_at"))?,
        original_due_at: opt_millis(row, 8, &what("original_due_at"))?,
        details: column(row, 17, &what("details"))?,
        flags: column(row, 9, &what("flags"))?,
        verification,
        updated_at: millis(row, 14, &what("updated_at"))?,
        closed_at: opt_millis(row, 15, &what("closed_at"))?,
        version: u64::try_from(version)
            .map_err(|_| StoreError::Corrupt(what("version: negative")))?,
    })
}

fn disclosure_from_row(row: &Row) -> Result<DisclosureRow, StoreError> {
    let id = DisclosureId::from_bytes(bytes_n(row, 0, "disclosure id")?);
    let what = |field: &str| format!("disclosure {id} {field}");
    Ok(DisclosureRow {
        id,
        subject: SubjectId::from_bytes(bytes_n(row, 1, &what("subject"))?),
        recipient: column(row, 2, &what("recipient"))?,
        recipient_kind: column(row, 3, &what("recipient_kind"))?,
        categories: column(row, 4, &what("categories"))?,
        purpose: column(row, 5, &what("purpose"))?,
        at: millis(row, 6, &what("at"))?,
        reference: column(row, 7, &what("reference"))?,
        country: column(row, 8, &what("country"))?,
        mechanism: column(row, 9, &what("mechanism"))?,
    })
}

fn notification_from_row(row: &Row) -> Result<NotificationRow, StoreError> {
    let id = NotificationId::from_bytes(bytes_n(row, 0, "notification id")?);
    let what = |field: &str| format!("notification {id} {field}");
    let attempts: i64 = column(row, 6, &what("attempts"))?;
    Ok(NotificationRow {
        id,
        kind: column(row, 1, &what("kind"))?,
        request: opt_bytes_n(row, 2, &what("request"))?.map(RequestId::from_bytes),
        subject: SubjectId::from_bytes(bytes_n(row, 3, &what("subject"))?),
        recipient: column(row, 4, &what("recipient"))?,
        state: column(row, 5, &what("state"))?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(what("attempts: out of range")))?,
        next_attempt_at: opt_millis(row, 7, &what("next_attempt_at"))?,
        last_error: column(row, 8, &what("last_error"))?,
        created_at: millis(row, 9, &what("created_at"))?,
        delivered_at: opt_millis(row, 10, &what("delivered_at"))?,
        settled_at: opt_millis(row, 11, &what("settled_at"))?,
        reason: column(row, 12, &what("reason"))?,
        payload: column(row, 13, &what("payload"))?,
    })
}

fn entry_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    let seq: i64 = column(row, 0, "audit seq")?;
    let what = |field: &str| format!("audit entry {seq} {field}");
    let kind: &str = column(row, 3, &what("kind"))?;
    let kind: EventKind = kind
        .parse()
        .map_err(|_| StoreError::Corrupt(what("kind: unknown event kind")))?;
    Ok(AuditEntry {
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(what("seq: negative")))?,
        prev_hash: hash32(row, 1, &what("prev_hash"))?,
        hash: hash32(row, 2, &what("hash"))?,
        event: AuditEvent {
            kind,
            at: column(row, 4, &what("at"))?,
            actor: column(row, 5, &what("actor"))?,
            subject: column(row, 6, &what("subject"))?,
            category: column(row, 7, &what("category"))?,
            purpose: column(row, 8, &what("purpose"))?,
            record: column(row, 9, &what("record"))?,
            outcome: column(row, 10, &what("outcome"))?,
            reasons: column(row, 11, &what("reasons"))?,
            rule: column(row, 12, &what("rule"))?,
        },
    })
}
