//! The three schemas as ordered migrations, and how they are applied.
//!
//! Each schema records the migrations applied to it in its own `schema_version` table, one row
//! per version. Opening a store runs, in one transaction on one connection:
//!
//! 1. `pg_advisory_xact_lock` on a key derived from the schema name, so that several instances
//!    starting at once migrate one after the other instead of racing (the lock ends with the
//!    transaction, so a crashed instance cannot leave it held);
//! 2. a read-only check: a schema past the last migration this build has for it is refused
//!    with [`StoreError::SchemaTooNew`], and a schema of that name holding tables but no
//!    `schema_version` is refused as foreign, both before anything is written;
//! 3. the missing migrations, each followed by its version row, then the commit.
//!
//! [`version`] runs steps 1 and 2 alone and writes nothing, so that the stores can see which
//! schemas exist before any is created (a key schema whose keyring is gone must not get a fresh
//! one). It takes the lock too, so that it waits for a migration in flight and reports the
//! schema as that migration leaves it.
//!
//! A store already at the latest version takes only the lock and the read, so a least-privilege
//! role without `CREATE` on the database can run Custodia once an operator has migrated it.
//! Migrations are append-only: a released one is never edited, a change is a new one with the
//! next number.
//!
//! Each schema numbers its versions on its own: `custodia_store::SCHEMA_VERSION` is the data
//! schema's latest (bumped with each of its migrations), while the key and keyring schemas stay
//! at theirs until they change. So "too new" is judged per schema: a key schema a later build
//! took to version 2 is refused even though the data schema's version 2 is known here.

use custodia_store::StoreError;
use postgres::Client;

use crate::error::Context;

/// One step of a schema.
#[derive(Debug)]
pub(crate) struct Migration {
    /// The version the schema has after this step; versions count up from 1 without gaps.
    pub(crate) version: u32,
    /// The statements, run with `search_path` set to the schema, in the migrating transaction.
    pub(crate) sql: &'static str,
}

/// What one schema holds and how to build it.
#[derive(Debug)]
pub(crate) struct Schema {
    /// What it is, for messages ("data store", "key store", "keyring").
    pub(crate) kind: &'static str,
    /// The schema name's suffix after the namespace.
    pub(crate) suffix: &'static str,
    /// Its migrations, oldest first.
    pub(crate) migrations: &'static [Migration],
}

/// `{namespace}_data`: subjects, records, audit.
pub(crate) static DATA: Schema = Schema {
    kind: "data store",
    suffix: "data",
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

/// `{namespace}_keys`: key store metadata and data keys.
pub(crate) static KEYS: Schema = Schema {
    kind: "key store",
    suffix: "keys",
    migrations: &[Migration {
        version: 1,
        sql: include_str!("../migrations/keys/001_initial.sql"),
    }],
};

/// `{namespace}_keyring`: the epoch keys, kept apart from the data keys they wrap.
pub(crate) static KEYRING: Schema = Schema {
    kind: "keyring",
    suffix: "keyring",
    migrations: &[Migration {
        version: 1,
        sql: include_str!("../migrations/keyring/001_initial.sql"),
    }],
};

impl Schema {
    /// The version the schema has once migrated, and the newest this build can read and write.
    pub(crate) fn latest(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

/// Brings schema `name` up to date (see the module documentation). `name` is a validated
/// identifier (see [`crate::Namespace`]), safe to splice into SQL.
pub(crate) fn migrate(client: &mut Client, schema: &Schema, name: &str) -> Result<(), StoreError> {
    let latest = schema.latest();
    let mut tx = client
        .transaction()
        .with_context(|| format!("beginning the migration of schema {name}"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(MIGRATE_LOCK, name)],
    )
    .with_context(|| format!("locking schema {name} to migrate it"))?;
    let current = current_version(&mut tx, schema, name)?;
    if current > latest {
        // Dropping the transaction rolls back: nothing was written anyway.
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: latest,
        });
    }
    if current < latest {
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{name}\";
             CREATE TABLE IF NOT EXISTS \"{name}\".schema_version (
                 version    INTEGER     NOT NULL PRIMARY KEY CHECK (version >= 1),
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );
             SET LOCAL search_path TO \"{name}\";"
        ))
        .with_context(|| format!("creating schema {name}"))?;
        for migration in schema.migrations.iter().filter(|m| m.version > current) {
            tx.batch_execute(migration.sql).with_context(|| {
                format!("applying migration {} to schema {name}", migration.version)
            })?;
            tx.execute(
                &format!("INSERT INTO \"{name}\".schema_version (version) VALUES ($1)"),
                &[&version_column(migration.version)?],
            )
            .with_context(|| format!("stamping version {} on schema {name}", migration.version))?;
        }
    }
    tx.commit()
        .with_context(|| format!("committing the migration of schema {name}"))
}

/// The version recorded in schema `name`, 0 when it does not exist yet or is empty; refuses a
/// foreign schema of that name like [`migrate`] does. Reads only, under the migration lock (see
/// the module documentation), in a transaction that is rolled back.
pub(crate) fn version(client: &mut Client, schema: &Schema, name: &str) -> Result<u32, StoreError> {
    let mut tx = client
        .transaction()
        .with_context(|| format!("beginning to read schema {name}"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(MIGRATE_LOCK, name)],
    )
    .with_context(|| format!("locking schema {name} to read its version"))?;
    // Dropping the transaction rolls it back, which also releases the lock.
    current_version(&mut tx, schema, name)
}

/// The version recorded in schema `name`, 0 when it does not exist yet. Reads only.
fn current_version(
    tx: &mut postgres::Transaction<'_>,
    schema: &Schema,
    name: &str,
) -> Result<u32, StoreError> {
    // One statement over pg_class, so both answers come from one MVCC snapshot taken after the
    // migration lock was granted. Not to_regclass: it resolves the name through the backend's
    // catalog cache without a lock, which can still hold a "no such table" entry from before
    // another instance's migration committed, while pg_class already shows that migration's
    // tables; the schema would then look foreign.
    let row = tx
        .query_one(
            "SELECT coalesce(bool_or(c.relname = 'schema_version' AND c.relkind = 'r'), FALSE), \
             count(c.oid) \
             FROM pg_catalog.pg_namespace n \
             LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid \
             WHERE n.nspname = $1",
            &[&name],
        )
        .with_context(|| format!("looking for schema {name}"))?;
    let versioned: bool = row
        .try_get(0)
        .with_context(|| format!("looking for schema {name}"))?;
    let relations: i64 = row
        .try_get(1)
        .with_context(|| format!("reading the contents of schema {name}"))?;
    if !versioned {
        // Not migrated yet: fine if absent or empty (created by hand, or by an operator granting
        // rights ahead of time), refused if something else put tables in it.
        if relations > 0 {
            return Err(StoreError::Corrupt(format!(
                "schema {name} exists and holds {relations} tables or other relations but no \
                 schema_version table: it is not a Custodia {}; refusing to touch it",
                schema.kind
            )));
        }
        return Ok(0);
    }
    let version: Option<i32> = tx
        .query_one(
            &format!("SELECT max(version) FROM \"{name}\".schema_version"),
            &[],
        )
        .and_then(|row| row.try_get(0))
        .with_context(|| format!("reading the schema version of {name}"))?;
    u32::try_from(version.unwrap_or(0)).map_err(|_| {
        StoreError::Corrupt(format!(
            "schema {name} has an invalid schema version {version:?}"
        ))
    })
}

fn version_column(version: u32) -> Result<i32, StoreError> {
    i32::try_from(version)
        .map_err(|_| StoreError::Backend(format!("schema version {version} is too large")))
}

/// The purpose of the advisory lock that serialises migrations of one schema.
const MIGRATE_LOCK: &str = "custodia-migrate";

/// The purpose of the advisory lock that keeps data keys and epoch destruction apart (see
/// `keys.rs`).
pub(crate) const EPOCH_LOCK: &str = "custodia-epochs";

/// An advisory lock key for `purpose` on schema `name`: FNV-1a of `purpose:name`, stable across
/// builds and PostgreSQL versions (unlike `hashtext`, which is internal), and distinct per
/// schema and purpose so that migrating the key store does not wait for the data store, nor a
/// data key insert for a migration.
pub(crate) fn lock_key(purpose: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = purpose.bytes().chain(*b":").chain(name.bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_be_bytes(hash.to_be_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
                    schema.kind
                );
            }
            let last = schema.migrations.last().map(|m| m.version);
            assert!(last.is_some_and(|v| v <= SCHEMA_VERSION), "{}", schema.kind);
        }
        assert_eq!(
            DATA.migrations.last().map(|m| m.version),
            Some(SCHEMA_VERSION)
        );
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        let key = |name| lock_key(MIGRATE_LOCK, name);
        assert_eq!(key("custodia_data"), key("custodia_data"));
        assert_ne!(key("custodia_data"), key("custodia_keys"));
        assert_ne!(key("custodia_keys"), key("custodia_keyring"));
        assert_ne!(key("custodia_keys"), lock_key(EPOCH_LOCK, "custodia_keys"));
        // Pinned: instances of different builds sharing a database must agree on the key.
        assert_eq!(key("custodia_data"), -4_286_016_552_920_254_962);
    }

    #[test]
    fn the_keyring_migration_holds_the_epochs_and_the_key_migration_does_not() {
        let sql = |schema: &Schema| schema.migrations.iter().map(|m| m.sql).collect::<String>();
        assert!(sql(&KEYRING).contains("CREATE TABLE epochs"));
        assert!(!sql(&KEYS).contains("CREATE TABLE epochs"));
        assert!(!sql(&KEYS).contains("REFERENCES"));
    }
}
