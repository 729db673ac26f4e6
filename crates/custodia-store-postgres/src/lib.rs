//! Custodia's storage on PostgreSQL, for scale-out: several stateless instances share the
//! databases, each opening [`PgDataStore`] and [`PgKeyStore`] with [`PostgresStores::connect`]
//! (or one of its variants below).
//!
//! # Layout
//!
//! A deployment has a namespace (default [`DEFAULT_NAMESPACE`], `custodia`) and three schemas.
//! They form a key hierarchy in tiers of custody: the root key (never stored here) wraps the
//! epoch keys, which wrap the per-subject data keys, which seal the data.
//!
//! - `{namespace}_data`: subjects, encrypted records, media objects (their wrapped keys and
//!   lifecycle; the bytes live in object storage), the consent ledger, API keys (hashed),
//!   published policy versions, legal holds, data-subject requests, the disclosure log, the
//!   notification outbox and the audit chain ([`PgDataStore`]);
//! - `{namespace}_keys`: the root key's verifier, the KDF parameters and the wrapped data keys;
//! - `{namespace}_keyring`: the wrapped epoch keys. With `{namespace}_keys` it makes up the key
//!   store ([`PgKeyStore`]).
//!
//! Each tier is kept apart from what it protects, so that destroying a key reaches every backup
//! of the tier below:
//!
//! - Destroying a subject's data key erases its data from every copy of the data schema,
//!   backups included (crypto-shredding). Back the data and key schemas up separately.
//! - Destroying an epoch (after rotating to a new one and re-keying) makes every older backup
//!   of the key schema useless: its data keys are wrapped under an epoch that no longer exists.
//!   This holds only if no copy of that epoch survives elsewhere, so the keyring is key custody:
//!   back it up only together with the root key, never with the data or key schema backups, and
//!   after destroying an epoch replace the keyring backups taken before.
//!
//! Never restore an older copy of a tier over a newer one: an old key schema brings destroyed
//! data keys back, an old keyring destroyed epochs. A data schema whose key schema is missing,
//! or a key schema whose keyring is missing, is refused with [`StoreError::Unavailable`] rather
//! than given a fresh one that would hide the loss of every key; restore the missing schema.
//!
//! # Where the schemas live
//!
//! - [`PostgresStores::connect`]: all three in one database. Every key store operation is one
//!   transaction over both key schemas. Logical per-schema dumps (`pg_dump --schema=...`) keep
//!   the tiers apart; a dump of the whole database, a physical backup or a WAL archive does
//!   not, and carries the epochs beside the data keys.
//! - [`PostgresStores::connect_split`]: the key store (keys and keyring) in another database
//!   or on another server, with its own credentials and backup policy.
//! - [`PostgresStores::connect_custody`]: the keyring reached through a URL of its own. In
//!   another database its dumps are apart from the key store's; on another server (physical
//!   backups and WAL archives cover a whole cluster) so are the key store's physical backups,
//!   which then hold no epoch key either.
//!
//! The schemas never reference each other by foreign key. In its place the key store checks,
//! inside the transaction that writes data keys, that their epochs exist in the keyring, under
//! an advisory lock in the key database that destroying an epoch takes exclusively; so no data
//! key is ever stored under an epoch being destroyed. With a keyring of its own, an operation on
//! both key schemas is two transactions: the key schema's is begun and locked first and
//! committed last, the keyring's commits first. A crash between the two commits of the first
//! initialisation leaves its epoch marked pending; only a pending epoch is ever replaced by a
//! later initialisation, and the next connect marks it live once the metadata exists, so a live
//! keyring is never overwritten because the key schema was lost.
//!
//! # Several instances
//!
//! Every [`DataStore::commit`](custodia_store::DataStore::commit) is one transaction. A commit
//! that appends audit events locks the single `audit_head` row (`SELECT ... FOR UPDATE`) after
//! applying its mutations and keeps it until it commits, so appends from every instance are
//! serialised, the chain never forks, and audit order is commit order. Migrations run under
//! `pg_advisory_xact_lock`, so instances may start together. The tables are in the
//! crate's `migrations/` folder.
//!
//! # Erasure
//!
//! [`KeyStore::destroy_data_keys`](custodia_store::KeyStore::destroy_data_keys) and
//! [`KeyStore::destroy_epoch`](custodia_store::KeyStore::destroy_epoch) delete rows.
//! PostgreSQL has no `secure_delete`: a deleted row's bytes stay in the table's pages until
//! `VACUUM` has freed the space and later writes reuse it (`VACUUM FULL` rewrites the table and
//! drops the old file sooner), and they stay in the WAL and in every backup taken before.
//! Crypto-shredding therefore relies on the rows being gone from their schema *and from its
//! backups*: back the key schema up on its own, short rotation (`pg_dump --schema` for logical
//! backups; physical backups and WAL archives cover a whole cluster, so a key store that needs
//! its own needs its own server), so that a destroyed key is gone from every copy once they roll
//! over; and likewise replace the keyring's backups after destroying an epoch. The data schema
//! holds only ciphertext, so its backups may be kept longer.
//!
//! # Connections
//!
//! URLs are libpq-style (`postgres://user:password@host:5432/database`, or key-value form).
//! Connections are plain TCP or Unix sockets; TLS is not supported yet (`sslmode=require` fails
//! to connect). Each store keeps a small pool ([`PoolOptions`]), and a keyring with its own URL
//! a pool of its own; the traits are synchronous, so the HTTP layer calls them from blocking
//! threads. Errors never quote the password or a stored value.

mod data;
mod decode;
mod error;
mod keys;
mod pool;
mod schema;

use std::time::Duration;

use custodia_store::StoreError;

pub use data::PgDataStore;
pub use keys::PgKeyStore;

use crate::pool::Pool;

/// The namespace used when the operator names none.
pub const DEFAULT_NAMESPACE: &str = "custodia";

/// The longest namespace: with the `_data`, `_keys` or `_keyring` suffix it stays well inside
/// PostgreSQL's 63-byte identifier limit.
const MAX_NAMESPACE_LEN: usize = 41;

/// A validated namespace: `[a-z][a-z0-9_]{0,40}`. It is spliced into SQL as part of schema
/// names, so nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `name`; anything outside `[a-z][a-z0-9_]{0,40}` is refused with
    /// [`StoreError::Unavailable`] (a store cannot be opened under it).
    pub fn new(name: &str) -> Result<Self, StoreError> {
        let mut bytes = name.bytes();
        let valid = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && name.len() <= MAX_NAMESPACE_LEN;
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(StoreError::Unavailable(format!(
                "invalid PostgreSQL namespace {name:?}: expected a lower-case letter followed by \
                 at most 40 lower-case letters, digits or underscores"
            )))
        }
    }

    /// The namespace itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The data store's schema, `{namespace}_data`.
    pub fn data_schema(&self) -> String {
        format!("{}_{}", self.0, schema::DATA.suffix)
    }

    /// The key store's schema for metadata and data keys, `{namespace}_keys`.
    pub fn keys_schema(&self) -> String {
        format!("{}_{}", self.0, schema::KEYS.suffix)
    }

    /// The key store's schema for epoch keys, `{namespace}_keyring`.
    pub fn keyring_schema(&self) -> String {
        format!("{}_{}", self.0, schema::KEYRING.suffix)
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self(DEFAULT_NAMESPACE.to_owned())
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connection pool settings, per store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolOptions {
    /// The most connections one store opens (at least 1).
    pub max_connections: usize,
    /// How long a call waits for a free connection before failing with
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// How long opening a connection may take, unless the URL sets `connect_timeout`.
    pub connect_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl PoolOptions {
    /// The defaults with another maximum pool size.
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// The defaults with another wait for a free connection.
    pub fn with_acquire_timeout(mut self, acquire_timeout: Duration) -> Self {
        self.acquire_timeout = acquire_timeout;
        self
    }

    /// The defaults with another connect timeout.
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }
}

/// Opens the PostgreSQL stores of a namespace.
#[derive(Debug, Clone, Copy)]
pub struct PostgresStores;

impl PostgresStores {
    /// Connects both stores to one database: data in `{namespace}_data`, keys in
    /// `{namespace}_keys` and `{namespace}_keyring`, creating or migrating the schemas as needed.
    ///
    /// Fails with [`StoreError::Unavailable`] when the URL or namespace is invalid, the server
    /// cannot be reached or logged in to, or a schema is missing beside one that depends on it
    /// (see the crate documentation); with [`StoreError::SchemaTooNew`] when a schema was written
    /// by a newer Custodia; and with [`StoreError::Corrupt`] when a schema of one of those names
    /// belongs to something else. Nothing is changed in any of these cases.
    pub fn connect(url: &str, namespace: &str) -> Result<(PgDataStore, PgKeyStore), StoreError> {
        Self::connect_with(url, url, url, namespace, PoolOptions::default())
    }

    /// Like [`connect`](Self::connect), with the key store (both of its schemas) in another
    /// database, or on another server, reached through `keys_url`.
    pub fn connect_split(
        data_url: &str,
        keys_url: &str,
        namespace: &str,
    ) -> Result<(PgDataStore, PgKeyStore), StoreError> {
        Self::connect_with(
            data_url,
            keys_url,
            keys_url,
            namespace,
            PoolOptions::default(),
        )
    }

    /// Like [`connect_split`](Self::connect_split), with the keyring reached through its own
    /// `keyring_url`: key custody, kept where the root key is backed up.
    pub fn connect_custody(
        data_url: &str,
        keys_url: &str,
        keyring_url: &str,
        namespace: &str,
    ) -> Result<(PgDataStore, PgKeyStore), StoreError> {
        Self::connect_with(
            data_url,
            keys_url,
            keyring_url,
            namespace,
            PoolOptions::default(),
        )
    }

    /// Like [`connect_custody`](Self::connect_custody), with pool settings (per pool).
    ///
    /// A `keyring_url` equal to `keys_url` shares the key store's pool, and every key store
    /// operation is then one transaction over both key schemas. Any other string, even one
    /// naming the same database, gets a pool of its own, and operations on both run as two
    /// transactions (safe either way; see the crate documentation).
    pub fn connect_with(
        data_url: &str,
        keys_url: &str,
        keyring_url: &str,
        namespace: &str,
        options: PoolOptions,
    ) -> Result<(PgDataStore, PgKeyStore), StoreError> {
        let namespace = Namespace::new(namespace)?;
        // Every URL is parsed before anything connects, so a typo fails without side effects.
        let keys_pool = pool(keys_url, options)?;
        let keyring_pool = if keyring_url == keys_url {
            None
        } else {
            Some(pool(keyring_url, options)?)
        };
        let data_pool = pool(data_url, options)?;
        require_keys_beside_data(&data_pool, &keys_pool, &namespace)?;
        // The key store first (and within it the keyring first): a crash while a deployment is
        // being created leaves the upper tiers alone, which the next connect completes, never a
        // schema without those above it.
        let keys = PgKeyStore::open(keys_pool, keyring_pool, &namespace)?;
        let data = PgDataStore::open(data_pool, &namespace)?;
        Ok((data, keys))
    }
}

/// Refuses a data schema whose key schema is missing: a fresh key store beside existing data
/// could decrypt none of it and would hide the loss of every key. Reads only.
fn require_keys_beside_data(
    data: &Pool,
    keys: &Pool,
    namespace: &Namespace,
) -> Result<(), StoreError> {
    let data_name = namespace.data_schema();
    let data_version =
        data.with_conn(|conn| schema::version(&mut conn.client, &schema::DATA, &data_name))?;
    if data_version == 0 {
        return Ok(());
    }
    let keys_name = namespace.keys_schema();
    let keys_version =
        keys.with_conn(|conn| schema::version(&mut conn.client, &schema::KEYS, &keys_name))?;
    if keys_version == 0 {
        return Err(StoreError::Unavailable(format!(
            "the key store schema {keys_name} is missing from PostgreSQL at {} although the data \
             schema {data_name} exists at {}; restore it from backup (a new key store could not \
             read any existing data)",
            keys.target(),
            data.target()
        )));
    }
    Ok(())
}

fn pool(url: &str, options: PoolOptions) -> Result<Pool, StoreError> {
    let mut config: postgres::Config = url.parse().map_err(|e| error::url_error(&e, url))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("custodia");
    }
    Ok(Pool::new(
        config,
        options.max_connections,
        options.acquire_timeout,
    ))
}

/// Opens a pool's first connection and migrates `schema` on it; the connection then stays in
/// the pool for the store's first calls.
fn open_schema(pool: &Pool, schema: &schema::Schema, name: &str) -> Result<(), StoreError> {
    pool.with_conn(|conn| schema::migrate(&mut conn.client, schema, name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn namespaces_are_validated() {
        for good in [
            "custodia",
            "a",
            "t_0123456789abcdef",
            "x1_",
            &"a".repeat(41),
        ] {
            let ns = Namespace::new(good).unwrap();
            assert_eq!(ns.as_str(), good);
        }
        for bad in [
            "",
            "Custodia",
            "1abc",
            "_a",
            "a-b",
            "a b",
            "a.b",
            "é",
            &"a".repeat(42),
        ] {
            let err = Namespace::new(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::Unavailable(_)),
                "{bad:?}: {err:?}"
            );
        }
        let ns = Namespace::default();
        assert_eq!(ns.data_schema(), "custodia_data");
        assert_eq!(ns.keys_schema(), "custodia_keys");
        assert_eq!(ns.keyring_schema(), "custodia_keyring");
        let longest = Namespace::new(&"a".repeat(MAX_NAMESPACE_LEN)).unwrap();
        assert!(longest.keyring_schema().len() <= 63);
    }
}
