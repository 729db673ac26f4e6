//! The embedded default storage backend: [`DataStore`](custodia_store::DataStore) and
//! [`KeyStore`](custodia_store::KeyStore) on SQLite.
//!
//! A data directory holds three files, opened together with [`SqliteStores::open`]. They form
//! a key hierarchy in tiers of custody: the root key (never stored here) wraps the epoch keys,
//! which wrap the per-subject data keys, which seal the data.
//!
//! - `data.db`: subjects, encrypted records, media objects (their wrapped keys and lifecycle;
//!   the bytes live in object storage), the consent ledger, API keys (hashed), published policy
//!   versions, legal holds, data-subject requests, the disclosure log, the notification outbox
//!   and the audit chain ([`SqliteDataStore`]);
//! - `keys.db`: the root key's verifier, the KDF parameters and the wrapped data keys;
//! - `keyring.db`: the wrapped epoch keys. With `keys.db` it makes up the key store
//!   ([`SqliteKeyStore`]).
//!
//! Each tier is kept apart from what it protects, so that destroying a key reaches every backup
//! of the tier below:
//!
//! - Destroying a subject's data key in `keys.db` erases its data from every copy of `data.db`.
//!   Back `data.db` and `keys.db` up separately.
//! - Destroying an epoch in `keyring.db` (after rotating to a new one) makes every older backup
//!   of `keys.db` useless: its data keys are wrapped under an epoch that no longer exists. This
//!   holds only if no copy of that epoch survives elsewhere, so `keyring.db` is key custody:
//!   back it up only together with the root key, never with the data or key store backups, and
//!   after destroying an epoch replace the keyring backups taken before.
//!
//! Never restore an older file over a newer one of the same tier: an old `keys.db` brings
//! destroyed data keys back, an old `keyring.db` destroyed epochs. A directory whose `data.db`
//! has lost its `keys.db`, or whose `keys.db` has lost its `keyring.db`, is refused rather than
//! given a fresh file that would hide the loss of every key.
//!
//! Every connection runs in WAL mode with `synchronous = FULL` (a crash loses no acknowledged
//! commit), `secure_delete = ON` (deleted key material and ciphertext are overwritten, not left
//! in free pages) and a busy timeout, so several handles and processes can share a directory.
//! A file written by a newer build is refused with [`StoreError::SchemaTooNew`] before
//! anything is written to it; an older one is migrated when opened. Each file numbers its
//! schema versions on its own (`data.db` is at [`custodia_store::SCHEMA_VERSION`], the key
//! store files at 1).

mod data;
mod db;
mod error;
mod keys;
mod schema;

use std::path::Path;

use custodia_store::StoreError;

pub use data::SqliteDataStore;
pub use db::{BUSY_TIMEOUT, Settings};
pub use keys::SqliteKeyStore;

use db::{Create, exists};

/// The data store's file name inside a data directory.
pub const DATA_FILE: &str = "data.db";

/// The file name of the key store's data keys inside a data directory.
pub const KEYS_FILE: &str = "keys.db";

/// The file name of the key store's epoch keys inside a data directory: key custody, backed up
/// only with the root key.
pub const KEYRING_FILE: &str = "keyring.db";

/// Opens the stores of a data directory.
#[derive(Debug, Clone, Copy)]
pub struct SqliteStores;

impl SqliteStores {
    /// Opens the stores in `dir`, creating the directory and the files as needed.
    ///
    /// Refuses a directory whose `data.db` exists without its `keys.db`, or whose `keys.db`
    /// exists without its `keyring.db`: a fresh file next to existing ones would hide the loss
    /// of every key, so the missing file must be restored instead.
    pub fn open(dir: &Path) -> Result<(SqliteDataStore, SqliteKeyStore), StoreError> {
        create_private_dir(dir)?;
        let data_path = dir.join(DATA_FILE);
        let keys_path = dir.join(KEYS_FILE);
        if exists(&data_path)? && !exists(&keys_path)? {
            return Err(missing_keys(dir));
        }
        // Keys first (and within them the keyring first): a crash between leaves the upper
        // tiers alone, which the next open completes, never a file without those above it.
        let keys = SqliteKeyStore::open(&keys_path, &dir.join(KEYRING_FILE), Create::IfMissing)?;
        let data = SqliteDataStore::open(&data_path, Create::IfMissing)?;
        Ok((data, keys))
    }

    /// Opens the stores of a directory that must already hold all three files; creates
    /// nothing. For every start after the first, where a missing file means a broken
    /// deployment.
    pub fn open_existing(dir: &Path) -> Result<(SqliteDataStore, SqliteKeyStore), StoreError> {
        let data_path = dir.join(DATA_FILE);
        let keys_path = dir.join(KEYS_FILE);
        if !exists(&data_path)? {
            return Err(StoreError::Unavailable(format!(
                "{DATA_FILE} is missing from {}",
                dir.display()
            )));
        }
        if !exists(&keys_path)? {
            return Err(missing_keys(dir));
        }
        // A missing keyring.db is refused by the key store itself, with the same message
        // `open` gives.
        let keys = SqliteKeyStore::open(&keys_path, &dir.join(KEYRING_FILE), Create::Never)?;
        let data = SqliteDataStore::open(&data_path, Create::Never)?;
        Ok((data, keys))
    }

    /// Opens (creating if missing) a data store file on its own. Prefer [`SqliteStores::open`],
    /// which also guards the pairing with the key store.
    pub fn open_data(path: &Path) -> Result<SqliteDataStore, StoreError> {
        SqliteDataStore::open(path, Create::IfMissing)
    }

    /// Opens (creating if missing) a key store from its two files, which may live apart (the
    /// keyring on the volume that holds the root key, say). Refuses a `keys` file that exists
    /// without its `keyring`. Prefer [`SqliteStores::open`].
    pub fn open_keys(keys: &Path, keyring: &Path) -> Result<SqliteKeyStore, StoreError> {
        SqliteKeyStore::open(keys, keyring, Create::IfMissing)
    }
}

fn missing_keys(dir: &Path) -> StoreError {
    StoreError::Unavailable(format!(
        "{KEYS_FILE} is missing from {} although {DATA_FILE} exists; restore it from backup \
         (a new key store could not read any existing data)",
        dir.display()
    ))
}

/// Creates the directory (owner-only on Unix: it holds the keys) if it does not exist yet.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))
}
