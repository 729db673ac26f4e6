//! The three files' schemas as ordered migrations, and how they are applied.
//!
//! Each file records the last migration applied in `PRAGMA user_version` and says what it is in
//! `PRAGMA application_id` (set by its first migration), so a file written by a newer build, a
//! data store opened as a key store and a foreign SQLite database are all refused before
//! anything is written. Migrations are append-only: a released one is never edited, a change is
//! a new one with the next number.
//!
//! Each file numbers its versions on its own: `custodia_store::SCHEMA_VERSION` is the data
//! store's latest (bumped with each of its migrations), while the key store and keyring stay at
//! theirs until their own schemas change. A file is refused as too new when it is past the last
//! migration this build has *for that file*, so a `keys.db` a later build took to version 2
//! is refused even though the data store's version 2 is known here.

use custodia_store::StoreError;
use rusqlite::{Connection, TransactionBehavior};

use crate::error::Context;

/// One step of a schema.
#[derive(Debug)]
pub(crate) struct Migration {
    /// The `user_version` the file has after this step; versions count up from 1 without gaps.
    pub(crate) version: u32,
    /// The statements, run in one transaction with the version bump.
    pub(crate) sql: &'static str,
}

/// What one file holds and how to build it.
#[derive(Debug)]
pub(crate) struct Schema {
    /// The file's usual name, for messages.
    pub(crate) label: &'static str,
    /// What the file is, for messages ("data store", "key store", "keyring").
    pub(crate) kind: &'static str,
    /// The `application_id` its first migration sets.
    pub(crate) application_id: i32,
    /// Its migrations, oldest first.
    pub(crate) migrations: &'static [Migration],
}

/// `data.db`: subjects, records, audit.
pub(crate) static DATA: Schema = Schema {
    label: "data.db",
    kind: "data store",
    // "CUSD"
    application_id: 0x4355_5344,
    migrations: &[
        Migration {
            version: 1,
            sql: include_str!("../migrations/data/001_initial.sql"),
        },
        Migration {
            version: 2,
            sql: include_str!("../migrations/data/002_consent_keys_policies.sql"),
        },
        Migration {
            version: 3,
            sql: include_str!("../migrations/data/003_holds.sql"),
        },
        Migration {
            version: 4,
            sql: include_str!("../migrations/data/004_media.sql"),
        },
        Migration {
            version: 5,
            sql: include_str!("../migrations/data/005_requests.sql"),
        },
        Migration {
            version: 6,
            sql: include_str!("../migrations/data/006_media_digest.sql"),
        },
    ],
};

/// `keys.db`: key store metadata and data keys.
pub(crate) static KEYS: Schema = Schema {
    label: "keys.db",
    kind: "key store",
    // "CUSK"
    application_id: 0x4355_534B,
    migrations: &[Migration {
        version: 1,
        sql: include_str!("../migrations/keys/001_initial.sql"),
    }],
};

/// `keyring.db`: the epoch keys, kept apart from the data keys they wrap.
pub(crate) static KEYRING: Schema = Schema {
    label: "keyring.db",
    kind: "keyring",
    // "CUSR"
    application_id: 0x4355_5352,
    migrations: &[Migration {
        version: 1,
        sql: include_str!("../migrations/keyring/001_initial.sql"),
    }],
};

impl Schema {
    /// The version the file has once migrated, and the newest this build can read and write.
    pub(crate) fn latest(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

/// The version stamped in the file.
fn user_version(conn: &Connection, schema: &Schema) -> Result<u32, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .with_context(|| format!("reading the schema version of {}", schema.label))?;
    u32::try_from(version).map_err(|_| {
        StoreError::Corrupt(format!(
            "{} has an invalid schema version {version}",
            schema.label
        ))
    })
}

/// Refuses a file this build must not write to: one from a newer build, or one that is not a
/// Custodia file of this kind. Reads only, so a refused file is left exactly as it was.
pub(crate) fn check(conn: &Connection, schema: &Schema) -> Result<u32, StoreError> {
    let version = user_version(conn, schema)?;
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .with_context(|| format!("reading the application id of {}", schema.label))?;
    let foreign = if version == 0 {
        // Not migrated yet: fine if empty (new, or created by a crash before its first
        // migration), refused if another application put tables in it.
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .with_context(|| format!("reading the schema of {}", schema.label))?;
        objects > 0 || application_id != 0
    } else {
        application_id != schema.application_id
    };
    if foreign {
        return Err(StoreError::Corrupt(format!(
            "{} is a SQLite database but not a Custodia {} (application id {application_id:#x}, \
             schema version {version})",
            schema.label, schema.kind
        )));
    }
    // After the identity check: the files number their versions apart, so a swapped file can
    // carry a version past this one's latest, and "not a Custodia key store" is what the
    // operator needs to hear then, not "upgrade Custodia".
    let supported = schema.latest();
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    Ok(version)
}

/// Applies the migrations the file lacks, all in one transaction. `BEGIN IMMEDIATE` takes the
/// write lock first, so two processes opening a new directory at once migrate it once.
pub(crate) fn migrate(conn: &mut Connection, schema: &Schema) -> Result<(), StoreError> {
    if check(conn, schema)? >= schema.latest() {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .with_context(|| format!("locking {} to migrate it", schema.label))?;
    // Read again under the lock: another process may have migrated meanwhile.
    let current = check(&tx, schema)?;
    for migration in schema.migrations.iter().filter(|m| m.version > current) {
        tx.execute_batch(migration.sql).with_context(|| {
            format!(
                "applying migration {} to {}",
                migration.version, schema.label
            )
        })?;
        tx.pragma_update(None, "user_version", migration.version)
            .with_context(|| {
                format!("stamping version {} on {}", migration.version, schema.label)
            })?;
    }
    tx.commit()
        .with_context(|| format!("committing the migration of {}", schema.label))
}

#[cfg(test)]
mod tests {
    use custodia_store::SCHEMA_VERSION;

    use super::*;

    #[test]
    fn migrations_count_up_from_one_and_stop_at_the_supported_version() {
        for schema in [&DATA, &KEYS, &KEYRING] {
            for (index, migration) in schema.migrations.iter().enumerate() {
                assert_eq!(
                    usize::try_from(migration.version).ok(),
                    Some(index + 1),
                    "{} migration {index}",
                    schema.label
                );
            }
            let last = schema.migrations.last().map(|m| m.version);
            assert!(
                last.is_some_and(|v| v <= SCHEMA_VERSION),
                "{}",
                schema.label
            );
        }
        assert_eq!(
            DATA.migrations.last().map(|m| m.version),
            Some(SCHEMA_VERSION)
        );
    }

    #[test]
    fn application_ids_match_the_migrations() {
        for schema in [&DATA, &KEYS, &KEYRING] {
            let first = schema.migrations.first().map(|m| m.sql).unwrap_or_default();
            assert!(
                first.contains(&format!(
                    "PRAGMA application_id = {};",
                    schema.application_id
                )),
                "{}",
                schema.label
            );
        }
        // Distinct ids are what make a swapped file refused rather than misread.
        assert_ne!(DATA.application_id, KEYS.application_id);
        assert_ne!(DATA.application_id, KEYRING.application_id);
        assert_ne!(KEYS.application_id, KEYRING.application_id);
    }
}
