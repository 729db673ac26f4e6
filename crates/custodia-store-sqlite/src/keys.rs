//! [`SqliteKeyStore`]: the key store, kept in two files of different custody.
//!
//! `keys.db` holds the root key's verifier and the data keys; `keyring.db` holds the epoch keys
//! that wrap them. Destroying an epoch must make every older backup of `keys.db` useless, and it
//! can only if no such backup carries the epoch key too: restored beside the live keyring, an
//! old `keys.db` then holds data keys wrapped under an epoch that no longer exists anywhere.
//!
//! SQLite commits each WAL file on its own and no foreign key crosses files, so consistency
//! between the two is kept by two rules:
//!
//! - an operation that must see both files agree (initialising, storing or re-wrapping data
//!   keys, destroying an epoch) holds `keys.db`'s write lock throughout and takes `keyring.db`'s
//!   inside it, never the other way round, so handles and processes cannot deadlock and no data
//!   key can be stored under an epoch while it is being destroyed;
//! - a write spanning both commits `keyring.db` first. A crash between the two commits of
//!   [`KeyStore::initialise`] leaves an epoch without metadata; that epoch is marked pending,
//!   and only a pending epoch is ever replaced by a later initialisation, so a live keyring is
//!   never overwritten because `keys.db` was lost or swapped for an empty one.
//!
//! Destroying a key must leave no copy of it in any file. `secure_delete` zeroes the freed cell
//! in the page SQLite writes, but with a write-ahead log older images of that page can still sit
//! in the WAL (and in the database file until the next checkpoint), so every destruction is
//! followed by a `TRUNCATE` checkpoint of the file it deleted from, which writes the zeroed
//! pages home and empties the WAL.

use std::collections::BTreeMap;
use std::path::Path;

use custodia_core::{KeyId, SubjectId, Timestamp};
use custodia_store::{DataKeyKind, DataKeyRow, EpochRow, KeyStore, KeyStoreMeta, StoreError};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::db::{Create, Db, Settings, exists};
use crate::error::{Context, limit};
use crate::schema;

/// Columns of `data_keys`, in the order [`data_key_from_row`] reads them.
macro_rules! data_key_columns {
    () => {
        "id, owner, kind, epoch, wrapped, created_at"
    };
}

const INSERT_DATA_KEY: &str = concat!(
    "INSERT INTO data_keys (",
    data_key_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
);
const REWRAP_DATA_KEY: &str = "UPDATE data_keys SET epoch = ?2, wrapped = ?3 WHERE id = ?1";
const DELETE_DATA_KEY: &str = "DELETE FROM data_keys WHERE id = ?1";
const INSERT_EPOCH: &str =
    "INSERT INTO epochs (id, wrapped, created_at, pending) VALUES (?1, ?2, ?3, ?4)";
const EPOCH_EXISTS: &str = "SELECT 1 FROM epochs WHERE id = ?1";
const CURRENT_EPOCH: &str = "SELECT max(id) FROM epochs";
const SETTLE_EPOCHS: &str = "UPDATE epochs SET pending = 0 WHERE pending = 1";

/// The key store on `keys.db` and `keyring.db`. Cheap to share: wrap it in an `Arc`.
#[derive(Debug)]
pub struct SqliteKeyStore {
    keys: Db,
    keyring: Db,
}

impl SqliteKeyStore {
    /// Opens both files. Refuses a `keys.db` without its `keyring.db` whatever `create` says:
    /// every data key in it is wrapped by an epoch key that only the keyring holds.
    pub(crate) fn open(
        keys_path: &Path,
        keyring_path: &Path,
        create: Create,
    ) -> Result<Self, StoreError> {
        if !exists(keyring_path)? && exists(keys_path)? {
            return Err(missing_keyring(keys_path, keyring_path));
        }
        // The keyring first: a crash while a directory is being created then leaves a lone
        // keyring, which the next open completes, never the keys.db the check above refuses.
        let keyring = Db::open(keyring_path, &schema::KEYRING, create)?;
        let keys = Db::open(keys_path, &schema::KEYS, create)?;
        let store = Self { keys, keyring };
        store.settle_pending()?;
        Ok(store)
    }

    /// The `keys.db` file.
    pub fn path(&self) -> &Path {
        self.keys.path()
    }

    /// The `keyring.db` file.
    pub fn keyring_path(&self) -> &Path {
        self.keyring.path()
    }

    /// The SQLite settings in force on `keys.db` (journal mode, synchronous, secure delete...).
    pub fn settings(&self) -> Result<Settings, StoreError> {
        self.keys.settings()
    }

    /// The SQLite settings in force on `keyring.db`.
    pub fn keyring_settings(&self) -> Result<Settings, StoreError> {
        self.keyring.settings()
    }

    /// Finishes an initialisation that crashed after its metadata committed but before its
    /// epoch was marked live. Until then a lost `keys.db` would let the next initialisation
    /// replace that epoch, so this runs at every open rather than waiting for the next write.
    fn settle_pending(&self) -> Result<(), StoreError> {
        if self.keys.read(read_meta)?.is_none() {
            return Ok(());
        }
        let pending = self.keyring.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM epochs WHERE pending = 1 LIMIT 1")
                .and_then(|mut stmt| stmt.exists([]))
                .context("reading pending epochs")
        })?;
        if pending {
            self.keyring.write(|ring| settle(ring))?;
        }
        Ok(())
    }

    /// Refuses rows naming an epoch the keyring does not hold, the check a foreign key would
    /// make within one file. The caller holds `keys.db`'s write lock, which destroying an
    /// epoch also takes, so an epoch found here outlives the caller's commit.
    fn require_epochs(&self, rows: &[DataKeyRow]) -> Result<(), StoreError> {
        let mut first_of_epoch = BTreeMap::new();
        for row in rows {
            first_of_epoch.entry(row.epoch).or_insert(row);
        }
        self.keyring.read(|conn| {
            let mut stmt = conn
                .prepare_cached(EPOCH_EXISTS)
                .context("preparing the epoch check")?;
            for (epoch, row) in first_of_epoch {
                let found = stmt
                    .exists(params![epoch])
                    .with_context(|| format!("reading epoch {epoch}"))?;
                if !found {
                    return Err(StoreError::NotFound(format!(
                        "epoch {epoch} for data key {}",
                        row.id
                    )));
                }
            }
            Ok(())
        })
    }
}

impl KeyStore for SqliteKeyStore {
    fn meta(&self) -> Result<Option<KeyStoreMeta>, StoreError> {
        self.keys.read(read_meta)
    }

    fn initialise(&self, meta: &KeyStoreMeta, first_epoch: &EpochRow) -> Result<(), StoreError> {
        // keys.db's lock, held throughout, makes a second initialiser wait and then see the
        // metadata, rather than replace this one's pending epoch.
        self.keys.write(|tx| {
            if read_meta(tx)?.is_some() {
                return Err(StoreError::Conflict(
                    "the key store is already initialised".into(),
                ));
            }
            self.keyring.write(|ring| {
                let live = ring
                    .prepare_cached("SELECT 1 FROM epochs WHERE pending = 0 LIMIT 1")
                    .and_then(|mut stmt| stmt.exists([]))
                    .context("reading the keyring")?;
                if live {
                    return Err(StoreError::Conflict(format!(
                        "{} already holds epoch keys but {} has no metadata: {} was lost or \
                         replaced; restore it from backup (initialising again would make every \
                         existing data key unreadable)",
                        schema::KEYRING.label,
                        schema::KEYS.label,
                        schema::KEYS.label,
                    )));
                }
                // Left by a crash before the metadata committed: never used to wrap anything.
                ring.prepare_cached("DELETE FROM epochs WHERE pending = 1")
                    .and_then(|mut stmt| stmt.execute([]))
                    .context("removing an unfinished initialisation's epoch")?;
                insert_epoch(ring, first_epoch, true)
            })?;
            tx.prepare_cached(
                "INSERT INTO meta (singleton, verifier, kdf, created_at) VALUES (1, ?1, ?2, ?3)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    meta.verifier,
                    meta.kdf,
                    meta.created_at.as_millis()
                ])
            })
            .context("writing key store metadata")?;
            Ok(())
        })?;
        self.keyring.write(|ring| settle(ring))
    }

    fn epochs(&self) -> Result<Vec<EpochRow>, StoreError> {
        // Without metadata a pending epoch is the leftover of a crashed initialisation, not a
        // live key. Metadata never goes away, so reading it first cannot hide a live epoch.
        let initialised = self.keys.read(read_meta)?.is_some();
        self.keyring.read(|conn| {
            conn.prepare_cached(
                "SELECT id, wrapped, created_at FROM epochs WHERE pending = 0 OR ?1 ORDER BY id",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![initialised], epoch_from_row)?
                    .collect()
            })
            .context("reading epochs")
        })
    }

    fn add_epoch(&self, epoch: &EpochRow) -> Result<(), StoreError> {
        if self.keys.read(read_meta)?.is_none() {
            return Err(StoreError::NotFound(
                "key store metadata: initialise the key store before adding epochs".into(),
            ));
        }
        self.keyring.write(|ring| {
            // The newest epoch is the current one, so a new epoch must be the newest.
            if let Some(current) = current_epoch(ring)?
                && epoch.id <= current
            {
                return Err(StoreError::Conflict(format!(
                    "epoch {} is not newer than the current epoch {current}",
                    epoch.id
                )));
            }
            insert_epoch(ring, epoch, false)
        })
    }

    fn destroy_epoch(&self, id: u32) -> Result<(), StoreError> {
        // keys.db's lock: no data key can be stored under this epoch between the check that
        // none is and the deletion.
        self.keys.write(|tx| {
            self.keyring.write(|ring| {
                let Some(current) = current_epoch(ring)? else {
                    return Err(StoreError::NotFound(format!("epoch {id}")));
                };
                let exists = ring
                    .prepare_cached(EPOCH_EXISTS)
                    .and_then(|mut stmt| stmt.exists(params![id]))
                    .with_context(|| format!("reading epoch {id}"))?;
                if !exists {
                    return Err(StoreError::NotFound(format!("epoch {id}")));
                }
                if id == current {
                    return Err(StoreError::Conflict(format!(
                        "epoch {id} is the current epoch and cannot be destroyed"
                    )));
                }
                let in_use = tx
                    .prepare_cached("SELECT 1 FROM data_keys WHERE epoch = ?1 LIMIT 1")
                    .and_then(|mut stmt| stmt.exists(params![id]))
                    .with_context(|| format!("reading data keys of epoch {id}"))?;
                if in_use {
                    return Err(StoreError::Conflict(format!(
                        "epoch {id} still wraps data keys; re-key them first"
                    )));
                }
                ring.prepare_cached("DELETE FROM epochs WHERE id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![id]))
                    .with_context(|| format!("destroying epoch {id}"))?;
                Ok(())
            })
        })?;
        scrub(&self.keyring)
    }

    fn insert_data_keys(&self, rows: &[DataKeyRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.keys.write(|tx| {
            self.require_epochs(rows)?;
            let mut insert = tx
                .prepare_cached(INSERT_DATA_KEY)
                .context("preparing data key insert")?;
            for row in rows {
                insert
                    .execute(params![
                        row.id.as_bytes(),
                        row.owner.as_bytes(),
                        row.kind.as_str(),
                        row.epoch,
                        row.wrapped,
                        row.created_at.as_millis(),
                    ])
                    .with_context(|| format!("inserting data key {}", row.id))?;
            }
            Ok(())
        })
    }

    fn data_key(&self, id: KeyId) -> Result<Option<DataKeyRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            data_key_columns!(),
            " FROM data_keys WHERE id = ?1"
        );
        self.keys.read(|conn| {
            conn.prepare_cached(SQL)
                .and_then(|mut stmt| {
                    stmt.query_row(params![id.as_bytes()], data_key_from_row)
                        .optional()
                })
                .with_context(|| format!("reading data key {id}"))
        })
    }

    fn data_keys_of(&self, owner: SubjectId) -> Result<Vec<DataKeyRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            data_key_columns!(),
            " FROM data_keys WHERE owner = ?1 ORDER BY id"
        );
        self.keys.read(|conn| {
            conn.prepare_cached(SQL)
                .and_then(|mut stmt| {
                    stmt.query_map(params![owner.as_bytes()], data_key_from_row)?
                        .collect()
                })
                .with_context(|| format!("reading data keys of subject {owner}"))
        })
    }

    fn data_keys_in_epoch(
        &self,
        epoch: u32,
        after: Option<KeyId>,
        limit: usize,
    ) -> Result<Vec<DataKeyRow>, StoreError> {
        // The empty blob sorts before every id, so one statement (and one index range) serves
        // the first page and the others.
        const SQL: &str = concat!(
            "SELECT ",
            data_key_columns!(),
            " FROM data_keys WHERE epoch = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        );
        let after: &[u8] = after.as_ref().map_or(&[], |id| id.as_bytes());
        self.keys.read(|conn| {
            conn.prepare_cached(SQL)
                .and_then(|mut stmt| {
                    stmt.query_map(params![epoch, after, self::limit(limit)], data_key_from_row)?
                        .collect()
                })
                .with_context(|| format!("reading data keys of epoch {epoch}"))
        })
    }

    fn rewrap_data_keys(&self, rows: &[DataKeyRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.keys.write(|tx| {
            self.require_epochs(rows)?;
            let mut update = tx
                .prepare_cached(REWRAP_DATA_KEY)
                .context("preparing data key rewrap")?;
            for row in rows {
                let changed = update
                    .execute(params![row.id.as_bytes(), row.epoch, row.wrapped])
                    .with_context(|| format!("rewrapping data key {}", row.id))?;
                if changed == 0 {
                    return Err(StoreError::NotFound(format!("data key {}", row.id)));
                }
            }
            Ok(())
        })
    }

    fn destroy_data_keys(&self, ids: &[KeyId]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let destroyed = self.keys.write(|tx| {
            let mut delete = tx
                .prepare_cached(DELETE_DATA_KEY)
                .context("preparing data key deletion")?;
            let mut destroyed = 0;
            for id in ids {
                destroyed += delete
                    .execute(params![id.as_bytes()])
                    .with_context(|| format!("destroying data key {id}"))?;
            }
            Ok(destroyed)
        })?;
        if destroyed > 0 {
            scrub(&self.keys)?;
        }
        Ok(destroyed)
    }
}

/// After a destruction: push the zeroed pages into the database file and empty the WAL.
/// The keys are already gone for every reader; if another handle's reader holds the
/// checkpoint back, the next checkpoint completes the overwrite, so this is not an error.
fn scrub(db: &Db) -> Result<(), StoreError> {
    db.checkpoint_truncate().map(|_| ())
}

/// Marks every epoch live once the metadata has committed.
fn settle(ring: &Connection) -> Result<(), StoreError> {
    ring.prepare_cached(SETTLE_EPOCHS)
        .and_then(|mut stmt| stmt.execute([]))
        .context("marking the first epoch live")?;
    Ok(())
}

fn missing_keyring(keys_path: &Path, keyring_path: &Path) -> StoreError {
    StoreError::Unavailable(format!(
        "{} is missing although {} exists; restore it from the key custody backup kept with \
         the root key (its epoch keys wrap every data key, and a new keyring could unwrap none)",
        keyring_path.display(),
        keys_path.display()
    ))
}

fn read_meta(conn: &Connection) -> Result<Option<KeyStoreMeta>, StoreError> {
    conn.prepare_cached("SELECT verifier, kdf, created_at FROM meta WHERE singleton = 1")
        .and_then(|mut stmt| {
            stmt.query_row([], |row| {
                Ok(KeyStoreMeta {
                    verifier: row.get(0)?,
                    kdf: row.get(1)?,
                    created_at: Timestamp::from_millis(row.get(2)?),
                })
            })
            .optional()
        })
        .context("reading key store metadata")
}

fn current_epoch(ring: &Connection) -> Result<Option<u32>, StoreError> {
    ring.prepare_cached(CURRENT_EPOCH)
        .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, Option<u32>>(0)))
        .context("reading the current epoch")
}

fn insert_epoch(ring: &Connection, epoch: &EpochRow, pending: bool) -> Result<(), StoreError> {
    ring.prepare_cached(INSERT_EPOCH)
        .and_then(|mut stmt| {
            stmt.execute(params![
                epoch.id,
                epoch.wrapped,
                epoch.created_at.as_millis(),
                pending
            ])
        })
        .with_context(|| format!("adding epoch {}", epoch.id))?;
    Ok(())
}

fn epoch_from_row(row: &Row<'_>) -> rusqlite::Result<EpochRow> {
    Ok(EpochRow {
        id: row.get(0)?,
        wrapped: row.get(1)?,
        created_at: Timestamp::from_millis(row.get(2)?),
    })
}

fn data_key_from_row(row: &Row<'_>) -> rusqlite::Result<DataKeyRow> {
    let kind: String = row.get(2)?;
    let kind = DataKeyKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            "unknown data key kind".into(),
        )
    })?;
    Ok(DataKeyRow {
        id: KeyId::from_bytes(row.get(0)?),
        owner: SubjectId::from_bytes(row.get(1)?),
        kind,
        epoch: row.get(3)?,
        wrapped: row.get(4)?,
        created_at: Timestamp::from_millis(row.get(5)?),
    })
}
