//! [`PgKeyStore`]: the key store, kept in two schemas of different custody.
//!
//! `{namespace}_keys` holds the root key's verifier and the data keys; `{namespace}_keyring`
//! holds the epoch keys that wrap them, in the same database or in another one. Destroying an
//! epoch must make every older dump of the key schema useless, and it can only if no such dump
//! carries the epoch key too: restored beside the live keyring, an old dump then holds data keys
//! wrapped under an epoch that no longer exists anywhere.
//!
//! When both schemas are reached through one URL, every operation that touches both runs in one
//! transaction on one connection, and nothing below can be torn. When the keyring has its own
//! URL, no transaction and no foreign key spans the two, so consistency is kept by three rules:
//!
//! - **Lock order.** An operation that needs both takes a key-schema connection and begins its
//!   transaction, then takes a keyring connection inside it, and takes every lock in the key
//!   database before any in the keyring; nothing waits for a key-database lock while holding a
//!   keyring lock or connection. So neither the pools nor the instances can deadlock across the
//!   two databases, where PostgreSQL's deadlock detector could not see the cycle.
//! - **Epoch lock.** Storing or re-wrapping data keys and destroying an epoch exclude each other
//!   through a transaction-scoped advisory lock in the key database: data key writes hold it
//!   shared from before their epoch check until their keys commit, destroying an epoch holds it
//!   exclusively from before its in-use check until the deletion has committed. Living in the
//!   key database, the lock is released exactly when the data keys commit or roll back, whatever
//!   becomes of the keyring connection, so no data key can be stored under an epoch while it is
//!   being destroyed. The epoch check is the check the foreign key made when both tables shared a
//!   schema.
//! - **Keyring first.** A write spanning both commits the keyring, then the key schema. A crash
//!   between the two commits of [`KeyStore::initialise`] leaves an epoch without metadata; that
//!   epoch is marked pending, and only a pending epoch is ever replaced by a later
//!   initialisation, so a live keyring is never overwritten because the key schema was lost or
//!   swapped for an empty one. A crash after the metadata committed but before the epoch was
//!   marked live is finished at the next open. Destroying an epoch writes only to the keyring,
//!   so a crash between its commits loses nothing.
//!
//! The same locks and order are used within one database, where they simply always hold.
//!
//! Destroying a data key or an epoch deletes its row. PostgreSQL cannot overwrite the freed
//! bytes (there is no `secure_delete`): they stay in the table's pages until `VACUUM` reclaims
//! the space and it is reused, and in the WAL and any backup taken before. The crate
//! documentation says how a deployment keeps crypto-shredding sound despite that.

use custodia_core::{KeyId, SubjectId, Timestamp};
use custodia_store::{DataKeyKind, DataKeyRow, EpochRow, KeyStore, KeyStoreMeta, StoreError};
use postgres::types::ToSql;
use postgres::{Row, Transaction};

use crate::decode::{bytes_n, column};
use crate::error::{Context, limit, pg_error};
use crate::pool::{Conn, Pool, StatementCache};
use crate::schema;
use crate::{Namespace, open_schema};

/// Columns of `data_keys`, in the order [`data_key_from_row`] reads them.
const DATA_KEY_COLUMNS: &str = "id, owner, kind, epoch, wrapped, created_at";

/// The statements, with the schema names spliced in once at open.
#[derive(Debug)]
struct Sql {
    // In the key schema.
    meta: String,
    has_meta: String,
    insert_meta: String,
    share_epoch_lock: String,
    take_epoch_lock: String,
    epoch_in_use: String,
    insert_data_keys: String,
    data_key: String,
    data_keys_of: String,
    data_keys_in_epoch: String,
    missing_data_key: String,
    rewrap_data_keys: String,
    destroy_data_keys: String,
    // In the keyring schema.
    epochs: String,
    current_epoch: String,
    epoch_exists: String,
    missing_epoch: String,
    live_epoch_exists: String,
    insert_epoch: String,
    delete_pending_epochs: String,
    settle_epochs: String,
    delete_epoch: String,
}

impl Sql {
    fn new(k: &str, r: &str) -> Self {
        Self {
            meta: format!("SELECT verifier, kdf, created_at FROM {k}.meta"),
            has_meta: format!("SELECT EXISTS (SELECT 1 FROM {k}.meta)"),
            insert_meta: format!(
                "INSERT INTO {k}.meta (singleton, verifier, kdf, created_at) \
                 VALUES (TRUE, $1, $2, $3) ON CONFLICT (singleton) DO NOTHING"
            ),
            share_epoch_lock: "SELECT pg_advisory_xact_lock_shared($1)".to_owned(),
            take_epoch_lock: "SELECT pg_advisory_xact_lock($1)".to_owned(),
            epoch_in_use: format!("SELECT EXISTS (SELECT 1 FROM {k}.data_keys WHERE epoch = $1)"),
            // One statement for the whole slice: arrays travel in one round trip.
            insert_data_keys: format!(
                "INSERT INTO {k}.data_keys ({DATA_KEY_COLUMNS}) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bigint[], \
                 $5::bytea[], $6::bigint[])"
            ),
            data_key: format!("SELECT {DATA_KEY_COLUMNS} FROM {k}.data_keys WHERE id = $1"),
            data_keys_of: format!(
                "SELECT {DATA_KEY_COLUMNS} FROM {k}.data_keys WHERE owner = $1 ORDER BY id"
            ),
            // The empty bytea sorts before every id, so one statement (and one index range)
            // serves the first page and the others.
            data_keys_in_epoch: format!(
                "SELECT {DATA_KEY_COLUMNS} FROM {k}.data_keys \
                 WHERE epoch = $1 AND id > $2 ORDER BY id LIMIT $3"
            ),
            missing_data_key: format!(
                "SELECT u.id FROM unnest($1::bytea[]) AS u (id) \
                 WHERE NOT EXISTS (SELECT 1 FROM {k}.data_keys d WHERE d.id = u.id) LIMIT 1"
            ),
            rewrap_data_keys: format!(
                "UPDATE {k}.data_keys d SET epoch = u.epoch, wrapped = u.wrapped \
                 FROM unnest($1::bytea[], $2::bigint[], $3::bytea[]) AS u (id, epoch, wrapped) \
                 WHERE d.id = u.id"
            ),
            destroy_data_keys: format!("DELETE FROM {k}.data_keys WHERE id = ANY ($1::bytea[])"),
            // $1: whether the key store is initialised. Without metadata a pending epoch is the
            // leftover of a crashed initialisation, not a live key.
            epochs: format!(
                "SELECT id, wrapped, created_at FROM {r}.epochs \
                 WHERE NOT pending OR $1::boolean ORDER BY id"
            ),
            current_epoch: format!("SELECT max(id) FROM {r}.epochs"),
            epoch_exists: format!("SELECT EXISTS (SELECT 1 FROM {r}.epochs WHERE id = $1)"),
            // $2 as in `epochs`: a data key must never be wrapped by an epoch that the next
            // initialisation may replace.
            missing_epoch: format!(
                "SELECT u.epoch FROM unnest($1::bigint[]) AS u (epoch) \
                 WHERE NOT EXISTS (SELECT 1 FROM {r}.epochs e \
                 WHERE e.id = u.epoch AND (NOT e.pending OR $2::boolean)) \
                 ORDER BY u.epoch LIMIT 1"
            ),
            live_epoch_exists: format!(
                "SELECT EXISTS (SELECT 1 FROM {r}.epochs WHERE NOT pending)"
            ),
            insert_epoch: format!(
                "INSERT INTO {r}.epochs (id, wrapped, created_at, pending) VALUES ($1, $2, $3, $4)"
            ),
            delete_pending_epochs: format!("DELETE FROM {r}.epochs WHERE pending"),
            settle_epochs: format!("UPDATE {r}.epochs SET pending = FALSE WHERE pending"),
            delete_epoch: format!("DELETE FROM {r}.epochs WHERE id = $1"),
        }
    }
}

/// A transaction and the statement cache of the connection it runs on.
struct Tx<'c> {
    tx: Transaction<'c>,
    statements: &'c mut StatementCache,
}

impl<'c> Tx<'c> {
    fn begin(conn: &'c mut Conn, context: &str) -> Result<Self, StoreError> {
        let tx = conn.client.transaction().context(context)?;
        Ok(Self {
            tx,
            statements: &mut conn.statements,
        })
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        self.statements.query(&mut self.tx, sql, params)
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        self.statements.execute(&mut self.tx, sql, params)
    }

    /// The single boolean of a `SELECT EXISTS (...)`.
    fn exists(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: impl FnOnce() -> String,
    ) -> Result<bool, StoreError> {
        let rows = self.query(sql, params).with_context(context)?;
        match rows.first() {
            Some(row) => column(row, 0, "existence check"),
            None => Ok(false),
        }
    }

    fn commit(self, context: &str) -> Result<(), StoreError> {
        self.tx.commit().context(context)
    }
}

/// The transactions of one operation on both schemas: the key schema's, and the keyring's when
/// it lives in another database (otherwise the key schema's transaction covers both).
struct Txs<'c> {
    keys: Tx<'c>,
    ring: Option<Tx<'c>>,
}

impl<'c> Txs<'c> {
    fn keys(&mut self) -> &mut Tx<'c> {
        &mut self.keys
    }

    fn ring(&mut self) -> &mut Tx<'c> {
        match &mut self.ring {
            Some(ring) => ring,
            None => &mut self.keys,
        }
    }

    /// Commits the keyring first, then the key schema (see the module documentation).
    fn commit(self, context: &str) -> Result<(), StoreError> {
        if let Some(ring) = self.ring {
            ring.commit(context)?;
        }
        self.keys.commit(context)
    }
}

/// The key store in schemas `{namespace}_keys` and `{namespace}_keyring`. Cheap to share: wrap
/// it in an `Arc`.
#[derive(Debug)]
pub struct PgKeyStore {
    keys: Pool,
    /// The keyring's own pool when it has its own URL; `None` when it is reached through the key
    /// schema's, whose transactions then cover both schemas.
    keyring: Option<Pool>,
    schema: String,
    keyring_schema: String,
    /// The advisory lock key that orders data key writes and epoch destruction.
    epoch_lock: i64,
    sql: Sql,
}

impl PgKeyStore {
    /// Opens both schemas, creating or migrating them. Refuses a key schema without its keyring:
    /// every data key in it is wrapped by an epoch key that only the keyring holds.
    pub(crate) fn open(
        keys: Pool,
        keyring: Option<Pool>,
        namespace: &Namespace,
    ) -> Result<Self, StoreError> {
        let keys_name = namespace.keys_schema();
        let ring_name = namespace.keyring_schema();
        let ring_pool = keyring.as_ref().unwrap_or(&keys);
        let keys_version =
            keys.with_conn(|conn| schema::version(&mut conn.client, &schema::KEYS, &keys_name))?;
        if keys_version > 0 {
            let ring_version = ring_pool.with_conn(|conn| {
                schema::version(&mut conn.client, &schema::KEYRING, &ring_name)
            })?;
            if ring_version == 0 {
                return Err(missing_keyring(&keys, &keys_name, ring_pool, &ring_name));
            }
        }
        // The keyring first: a crash while a deployment is being created then leaves a lone
        // keyring, which the next open completes, never the key schema the check above refuses.
        open_schema(ring_pool, &schema::KEYRING, &ring_name)?;
        open_schema(&keys, &schema::KEYS, &keys_name)?;
        let sql = Sql::new(&format!("\"{keys_name}\""), &format!("\"{ring_name}\""));
        let store = Self {
            epoch_lock: schema::lock_key(schema::EPOCH_LOCK, &keys_name),
            keys,
            keyring,
            schema: keys_name,
            keyring_schema: ring_name,
            sql,
        };
        store.settle_pending()?;
        Ok(store)
    }

    /// The PostgreSQL schema holding the metadata and the data keys.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The PostgreSQL schema holding the epoch keys.
    pub fn keyring_schema(&self) -> &str {
        &self.keyring_schema
    }

    /// Where the key schema is, as `host:port/database` (no credentials).
    pub fn target(&self) -> &str {
        self.keys.target()
    }

    /// Where the keyring is, as `host:port/database` (no credentials).
    pub fn keyring_target(&self) -> &str {
        self.ring_pool().target()
    }

    /// Whether the keyring has a connection pool of its own (it was given its own URL), so that
    /// operations on both schemas run as two transactions rather than one.
    pub fn keyring_is_separate(&self) -> bool {
        self.keyring.is_some()
    }

    fn ring_pool(&self) -> &Pool {
        self.keyring.as_ref().unwrap_or(&self.keys)
    }

    fn read<T>(
        pool: &Pool,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: impl Fn(&Row) -> Result<T, StoreError>,
        context: impl FnOnce() -> String,
    ) -> Result<Vec<T>, StoreError> {
        pool.with_conn(|conn| {
            let rows = conn
                .statements
                .query(&mut conn.client, sql, params)
                .with_context(context)?;
            rows.iter().map(read).collect()
        })
    }

    /// Runs `f` in a transaction on the keyring alone and commits it when `f` succeeds.
    fn write_ring<T>(
        &self,
        context: &str,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.ring_pool().with_conn(|conn| {
            let mut tx = Tx::begin(conn, context)?;
            let value = f(&mut tx)?;
            tx.commit(context)?;
            Ok(value)
        })
    }

    /// Runs `f` with transactions on both schemas and commits them when `f` succeeds, keyring
    /// first. The key schema's connection is taken first (see the module documentation).
    fn write_both<T>(
        &self,
        context: &str,
        f: impl FnOnce(&mut Txs<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.keys.with_conn(|keys_conn| {
            let keys = Tx::begin(keys_conn, context)?;
            match &self.keyring {
                None => finish(Txs { keys, ring: None }, context, f),
                Some(pool) => pool.with_conn(|ring_conn| {
                    let ring = Tx::begin(ring_conn, context)?;
                    finish(
                        Txs {
                            keys,
                            ring: Some(ring),
                        },
                        context,
                        f,
                    )
                }),
            }
        })
    }

    /// Finishes an initialisation whose metadata committed but whose epoch was not marked live
    /// (a crash or a lost keyring connection between the two). Until then a lost key schema
    /// would let the next initialisation replace that epoch, so this runs at every open rather
    /// than waiting for the next write.
    fn settle_pending(&self) -> Result<(), StoreError> {
        if self.meta()?.is_none() {
            return Ok(());
        }
        self.ring_pool().with_conn(|conn| {
            conn.statements
                .execute(&mut conn.client, &self.sql.settle_epochs, &[])
                .context("marking the first epoch live")
        })?;
        Ok(())
    }

    /// Refuses rows naming an epoch the keyring does not hold. Takes the epoch lock shared
    /// first, so an epoch found here outlives the caller's commit (see the module
    /// documentation).
    fn require_epochs(&self, txs: &mut Txs<'_>, rows: &[DataKeyRow]) -> Result<(), StoreError> {
        txs.keys()
            .execute(&self.sql.share_epoch_lock, &[&self.epoch_lock])
            .context("locking the epochs against destruction")?;
        // Not folded into the lock's statement: under READ COMMITTED a statement reads the
        // snapshot taken when it started, before a lock it waited for was granted, and could
        // still see an epoch destroyed meanwhile.
        let initialised = txs.keys().exists(&self.sql.has_meta, &[], || {
            "reading key store metadata".into()
        })?;
        let mut epochs: Vec<i64> = rows.iter().map(|r| i64::from(r.epoch)).collect();
        epochs.sort_unstable();
        epochs.dedup();
        let missing = txs
            .ring()
            .query(&self.sql.missing_epoch, &[&epochs, &initialised])
            .context("checking the epochs of data keys")?;
        if let Some(row) = missing.first() {
            let epoch = epoch_id(column(row, 0, "missing epoch")?, "missing epoch")?;
            let key = rows
                .iter()
                .find(|r| r.epoch == epoch)
                .map_or_else(|| "none".to_owned(), |r| r.id.to_string());
            return Err(StoreError::NotFound(format!(
                "epoch {epoch} for data key {key}"
            )));
        }
        Ok(())
    }

    fn current_epoch(&self, ring: &mut Tx<'_>) -> Result<Option<u32>, StoreError> {
        let rows = ring
            .query(&self.sql.current_epoch, &[])
            .context("reading the current epoch")?;
        match rows.first() {
            Some(row) => column::<Option<i64>>(row, 0, "current epoch")?
                .map(|id| epoch_id(id, "current epoch"))
                .transpose(),
            None => Ok(None),
        }
    }

    fn insert_epoch(
        &self,
        ring: &mut Tx<'_>,
        epoch: &EpochRow,
        pending: bool,
    ) -> Result<(), StoreError> {
        ring.execute(
            &self.sql.insert_epoch,
            &[
                &i64::from(epoch.id),
                &epoch.wrapped,
                &epoch.created_at.as_millis(),
                &pending,
            ],
        )
        .with_context(|| format!("adding epoch {}", epoch.id))?;
        Ok(())
    }
}

fn finish<T>(
    mut txs: Txs<'_>,
    context: &str,
    f: impl FnOnce(&mut Txs<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let value = f(&mut txs)?;
    txs.commit(context)?;
    Ok(value)
}

impl KeyStore for PgKeyStore {
    fn meta(&self) -> Result<Option<KeyStoreMeta>, StoreError> {
        let rows = Self::read(&self.keys, &self.sql.meta, &[], meta_from_row, || {
            "reading key store metadata".to_owned()
        })?;
        Ok(rows.into_iter().next())
    }

    fn initialise(&self, meta: &KeyStoreMeta, first_epoch: &EpochRow) -> Result<(), StoreError> {
        // With a keyring of its own, its commit comes first, so the epoch is written pending
        // and marked live once the metadata has committed; in one transaction it is live at
        // once.
        let pending = self.keyring.is_some();
        self.write_both("initialising the key store", |txs| {
            let inserted = txs
                .keys()
                .execute(
                    &self.sql.insert_meta,
                    &[&meta.verifier, &meta.kdf, &meta.created_at.as_millis()],
                )
                .context("writing key store metadata")?;
            // ON CONFLICT DO NOTHING waits for a concurrent initialiser to finish, then reports
            // 0 rows: exactly one of two racing instances initialises, and the row lock it
            // holds until it commits keeps the other away from the keyring meanwhile.
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "the key store in schema {} is already initialised",
                    self.schema
                )));
            }
            let live = txs.ring().exists(&self.sql.live_epoch_exists, &[], || {
                format!("reading the keyring in schema {}", self.keyring_schema)
            })?;
            if live {
                return Err(StoreError::Conflict(format!(
                    "the keyring in schema {} already holds epoch keys but the key store in \
                     schema {} has no metadata: the key schema was lost or replaced; restore it \
                     from backup (initialising again would make every existing data key \
                     unreadable)",
                    self.keyring_schema, self.schema
                )));
            }
            // Left by a crash before the metadata committed: never used to wrap anything.
            txs.ring()
                .execute(&self.sql.delete_pending_epochs, &[])
                .context("removing an unfinished initialisation's epoch")?;
            self.insert_epoch(txs.ring(), first_epoch, pending)
        })?;
        if pending {
            self.settle_pending()?;
        }
        Ok(())
    }

    fn epochs(&self) -> Result<Vec<EpochRow>, StoreError> {
        // Metadata never goes away, so reading it first cannot hide a live epoch.
        let initialised = self.meta()?.is_some();
        Self::read(
            self.ring_pool(),
            &self.sql.epochs,
            &[&initialised],
            epoch_from_row,
            || "reading epochs".to_owned(),
        )
    }

    fn add_epoch(&self, epoch: &EpochRow) -> Result<(), StoreError> {
        if self.meta()?.is_none() {
            return Err(StoreError::NotFound(
                "key store metadata: initialise the key store before adding epochs".into(),
            ));
        }
        self.write_ring("adding an epoch", |ring| {
            // The metadata has committed, so a pending epoch is the first one of an
            // initialisation whose last step failed: make it live before it is superseded.
            ring.execute(&self.sql.settle_epochs, &[])
                .context("marking the first epoch live")?;
            // The newest epoch is the current one, so a new epoch must be the newest. Two
            // instances adding the same id race on the primary key: one gets a conflict.
            if let Some(current) = self.current_epoch(ring)?
                && epoch.id <= current
            {
                return Err(StoreError::Conflict(format!(
                    "epoch {} is not newer than the current epoch {current}",
                    epoch.id
                )));
            }
            self.insert_epoch(ring, epoch, false)
        })
    }

    fn destroy_epoch(&self, id: u32) -> Result<(), StoreError> {
        let context = format!("destroying epoch {id}");
        self.write_both(&context, |txs| {
            let key = i64::from(id);
            txs.keys()
                .execute(&self.sql.take_epoch_lock, &[&self.epoch_lock])
                .with_context(|| format!("locking out data key writes to destroy epoch {id}"))?;
            let exists = txs.ring().exists(&self.sql.epoch_exists, &[&key], || {
                format!("reading epoch {id}")
            })?;
            if !exists {
                return Err(StoreError::NotFound(format!("epoch {id}")));
            }
            let current = self.current_epoch(txs.ring())?;
            if current == Some(id) {
                return Err(StoreError::Conflict(format!(
                    "epoch {id} is the current epoch and cannot be destroyed"
                )));
            }
            // A statement after the lock's, so its snapshot holds every data key committed
            // before the lock was granted; none can be added until this commits.
            let in_use = txs.keys().exists(&self.sql.epoch_in_use, &[&key], || {
                format!("reading data keys of epoch {id}")
            })?;
            if in_use {
                return Err(StoreError::Conflict(format!(
                    "epoch {id} still wraps data keys; re-key them first"
                )));
            }
            txs.ring()
                .execute(&self.sql.delete_epoch, &[&key])
                .with_context(|| format!("destroying epoch {id}"))?;
            Ok(())
        })
    }

    fn insert_data_keys(&self, rows: &[DataKeyRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = rows.iter().map(|r| r.id.as_bytes().as_slice()).collect();
        let owners: Vec<&[u8]> = rows.iter().map(|r| r.owner.as_bytes().as_slice()).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let epochs: Vec<i64> = rows.iter().map(|r| i64::from(r.epoch)).collect();
        let wrapped: Vec<&[u8]> = rows.iter().map(|r| r.wrapped.as_slice()).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.created_at.as_millis()).collect();
        let context = format!("inserting {} data keys", rows.len());
        self.write_both(&context, |txs| {
            self.require_epochs(txs, rows)?;
            txs.keys()
                .execute(
                    &self.sql.insert_data_keys,
                    &[&ids, &owners, &kinds, &epochs, &wrapped, &created],
                )
                .map_err(|e| {
                    if e.as_db_error()
                        .is_some_and(|db| db.code().code() == "23505")
                    {
                        StoreError::Conflict(format!(
                            "{context} (first {}): a data key with one of these ids already \
                             exists",
                            first_id(rows)
                        ))
                    } else {
                        pg_error(&e, &context)
                    }
                })?;
            Ok(())
        })
    }

    fn data_key(&self, id: KeyId) -> Result<Option<DataKeyRow>, StoreError> {
        let bytes: &[u8] = id.as_bytes();
        let rows = Self::read(
            &self.keys,
            &self.sql.data_key,
            &[&bytes],
            data_key_from_row,
            || format!("reading data key {id}"),
        )?;
        Ok(rows.into_iter().next())
    }

    fn data_keys_of(&self, owner: SubjectId) -> Result<Vec<DataKeyRow>, StoreError> {
        let bytes: &[u8] = owner.as_bytes();
        Self::read(
            &self.keys,
            &self.sql.data_keys_of,
            &[&bytes],
            data_key_from_row,
            || format!("reading data keys of subject {owner}"),
        )
    }

    fn data_keys_in_epoch(
        &self,
        epoch: u32,
        after: Option<KeyId>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>, StoreError> {
        let after: &[u8] = after.as_ref().map_or(&[], |id| id.as_bytes());
        Self::read(
            &self.keys,
            &self.sql.data_keys_in_epoch,
            &[&i64::from(epoch), &after, &self::limit(limit)],
            data_key_from_row,
            || format!("reading data keys of epoch {epoch}"),
        )
    }

    fn rewrap_data_keys(&self, rows: &[DataKeyRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = rows.iter().map(|r| r.id.as_bytes().as_slice()).collect();
        let epochs: Vec<i64> = rows.iter().map(|r| i64::from(r.epoch)).collect();
        let wrapped: Vec<&[u8]> = rows.iter().map(|r| r.wrapped.as_slice()).collect();
        self.write_both("rewrapping data keys", |txs| {
            self.require_epochs(txs, rows)?;
            // Checked first, inside the transaction, so that a missing key leaves every other
            // key of the slice as it was and the message can name it.
            let missing = txs
                .keys()
                .query(&self.sql.missing_data_key, &[&ids])
                .context("looking for the data keys to rewrap")?;
            if let Some(row) = missing.first() {
                let id = KeyId::from_bytes(bytes_n(row, 0, "data key id")?);
                return Err(StoreError::NotFound(format!("data key {id}")));
            }
            txs.keys()
                .execute(&self.sql.rewrap_data_keys, &[&ids, &epochs, &wrapped])
                .with_context(|| format!("rewrapping {} data keys", rows.len()))?;
            Ok(())
        })
    }

    fn destroy_data_keys(&self, ids: &[KeyId]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let bytes: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
        let destroyed = self.keys.with_conn(|conn| {
            conn.statements
                .execute(&mut conn.client, &self.sql.destroy_data_keys, &[&bytes])
                .with_context(|| format!("destroying {} data keys", ids.len()))
        })?;
        usize::try_from(destroyed)
            .map_err(|_| StoreError::Backend(format!("destroyed {destroyed} data keys")))
    }
}

fn missing_keyring(keys: &Pool, keys_name: &str, ring: &Pool, ring_name: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the keyring schema {ring_name} is missing from PostgreSQL at {} although the key store \
         schema {keys_name} exists at {}; restore it from the key custody backup kept with the \
         root key (its epoch keys wrap every data key, and a new keyring could unwrap none)",
        ring.target(),
        keys.target()
    ))
}

fn first_id(rows: &[DataKeyRow]) -> String {
    rows.first()
        .map_or_else(|| "none".to_owned(), |r| r.id.to_string())
}

fn epoch_id(id: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(id)
        .map_err(|_| StoreError::Corrupt(format!("{what}: epoch id {id} out of range")))
}

fn meta_from_row(row: &Row) -> Result<KeyStoreMeta, StoreError> {
    Ok(KeyStoreMeta {
        verifier: column(row, 0, "key store verifier")?,
        kdf: column(row, 1, "key store kdf")?,
        created_at: Timestamp::from_millis(column(row, 2, "key store created_at")?),
    })
}

fn epoch_from_row(row: &Row) -> Result<EpochRow, StoreError> {
    let id = epoch_id(column(row, 0, "epoch id")?, "epoch")?;
    Ok(EpochRow {
        id,
        wrapped: column(row, 1, &format!("epoch {id} wrapped"))?,
        created_at: Timestamp::from_millis(column(row, 2, &format!("epoch {id} created_at"))?),
    })
}

fn data_key_from_row(row: &Row) -> Result<DataKeyRow, StoreError> {
    let id = KeyId::from_bytes(bytes_n(row, 0, "data key id")?);
    let what = |field: &str| format!("data key {id} {field}");
    let kind: &str = column(row, 2, &what("kind"))?;
    let kind = DataKeyKind::parse(kind)
        .ok_or_else(|| StoreError::Corrupt(what("kind: unknown data key kind")))?;
    Ok(DataKeyRow {
        id,
        owner: SubjectId::from_bytes(bytes_n(row, 1, &what("owner"))?),
        kind,
        epoch: epoch_id(column(row, 3, &what("epoch"))?, &what("epoch"))?,
        wrapped: column(row, 4, &what("wrapped"))?,
        created_at: Timestamp::from_millis(column(row, 5, &what("created_at"))?),
    })
}
