//! Opens a vault on a fresh SQLite data directory, with the clean test policy and a manual clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use custodia_core::{ManualClock, Timestamp};
use custodia_store::{DataStore, KeyStore};
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{RootKeySource, Vault};
use zeroize::Zeroizing;

/// The root key every test vault uses (hex, 32 bytes).
pub const ROOT_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The policy the vault tests run under.
pub fn policy() -> custodia_policy::CheckedPolicy {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../custodia-policy/tests/fixtures/clean.toml");
    let checked = custodia_policy::load(&path).unwrap();
    assert!(checked.is_clean(), "{:#?}", checked.findings);
    checked
}

/// A vault, its clock and its data directory.
#[derive(Debug)]
pub struct TestVault {
    pub vault: Vault,
    pub clock: ManualClock,
    pub dir: PathBuf,
    pub data: Arc<dyn DataStore>,
    pub keys: Arc<dyn KeyStore>,
    _temp: Option<tempfile::TempDir>,
}

impl TestVault {
    /// Closes the stores and returns what reopening needs; the temporary directory lives on.
    pub fn close(self) -> Reopen {
        Reopen {
            dir: self.dir,
            clock: self.clock,
            _temp: self._temp,
        }
    }
}

/// A closed vault's directory and clock, kept alive for reopening.
#[derive(Debug)]
pub struct Reopen {
    pub dir: PathBuf,
    pub clock: ManualClock,
    _temp: Option<tempfile::TempDir>,
}

impl Reopen {
    /// Opens the vault again with `root`.
    pub fn open(&self, root: &RootKeySource) -> Result<TestVault, custodia_vault::VaultError> {
        open_at(&self.dir, self.clock.clone(), root)
    }
}

pub fn start() -> Timestamp {
    Timestamp::parse("2026-02-10T09:00:00Z").unwrap()
}

pub fn root() -> RootKeySource {
    RootKeySource::Hex(Zeroizing::new(ROOT_HEX.to_owned()))
}

/// A vault on a new temporary directory.
pub fn fresh() -> TestVault {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut vault = open_at(&dir, ManualClock::new(start()), &root()).unwrap();
    vault._temp = Some(temp);
    vault
}

/// A vault on `dir`, which may already hold stores.
pub fn open_at(
    dir: &Path,
    clock: ManualClock,
    root: &RootKeySource,
) -> Result<TestVault, custodia_vault::VaultError> {
    let (data, keys) = SqliteStores::open(dir)?;
    let data: Arc<dyn DataStore> = Arc::new(data);
    let keys: Arc<dyn KeyStore> = Arc::new(keys);
    let vault = Vault::open(
        data.clone(),
        keys.clone(),
        policy(),
        Arc::new(clock.clone()),
        root,
    )?;
    Ok(TestVault {
        vault,
        clock,
        dir: dir.to_path_buf(),
        data,
        keys,
        _temp: None,
    })
}

/// Copies every file of a directory (a cold backup, WAL files included).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A subject with a distinct external id.
pub fn new_subject(external_id: &str) -> custodia_vault::NewSubject {
    custodia_vault::NewSubject {
        external_id: external_id.to_owned(),
        jurisdiction: "CN".to_owned(),
        birth_date: Some("1990-04-01".to_owned()),
        age_band: None,
        guardian: None,
    }
}
