//! The keys in memory: the root key (checked against the key store's verifier before anything is
//! written), the live epoch keys unwrapped by it, and the keyed hash that finds a subject by its
//! external id. Data keys are unwrapped on demand and never cached beyond one operation, so a
//! destroyed key is gone for every later read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use custodia_core::{Clock, SubjectId};
use custodia_crypto::{CryptoError, DataKey, EpochKey, KdfParams, LookupKey, RootKey};
use custodia_store::{EpochRow, KeyStore, KeyStoreMeta};
use zeroize::Zeroizing;

use crate::error::VaultError;

/// Where the root key comes from.
#[derive(Clone)]
pub enum RootKeySource {
    /// A key file (64 hex digits, permissions 0600); created if missing when the key store is new.
    KeyFile(PathBuf),
    /// A hex key, from an environment variable.
    Hex(Zeroizing<String>),
    /// A passphrase, stretched with Argon2id; the parameters live in the key store.
    Passphrase(Zeroizing<String>),
    /// A passphrase with cheap, fixed Argon2id parameters: tests only.
    TestPassphrase(Zeroizing<String>),
}

impl std::fmt::Debug for RootKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyFile(path) => write!(f, "KeyFile({})", path.display()),
            Self::Hex(_) => f.write_str("Hex(redacted)"),
            Self::Passphrase(_) | Self::TestPassphrase(_) => f.write_str("Passphrase(redacted)"),
        }
    }
}

/// The unwrapped epoch keys and the lookup key.
#[derive(Debug)]
pub struct KeyRing {
    epochs: BTreeMap<u32, EpochKey>,
    lookup: LookupKey,
    root: RootKey,
}

impl KeyRing {
    /// Opens the key ring: initialises an empty key store (first epoch), or checks the root key
    /// against an existing one and unwraps its epochs.
    pub fn open(
        keys: &dyn KeyStore,
        source: &RootKeySource,
        clock: &dyn Clock,
    ) -> Result<Self, VaultError> {
        match keys.meta()? {
            None => Self::initialise(keys, source, clock),
            Some(meta) => {
                let root = resolve_existing(source, &meta)?;
                root.check(&meta.verifier)?;
                let mut epochs = BTreeMap::new();
                for row in keys.epochs()? {
                    epochs.insert(row.id, root.unwrap_epoch(row.id, &row.wrapped)?);
                }
                if epochs.is_empty() {
                    return Err(VaultError::KeyDestroyed("every epoch".into()));
                }
                let lookup = root.lookup_key()?;
                Ok(Self {
                    epochs,
                    lookup,
                    root,
                })
            }
        }
    }

    fn initialise(
        keys: &dyn KeyStore,
        source: &RootKeySource,
        clock: &dyn Clock,
    ) -> Result<Self, VaultError> {
        let (root, kdf) = match source {
            RootKeySource::KeyFile(path) if path.exists() => (RootKey::from_key_file(path)?, None),
            RootKeySource::KeyFile(path) => (RootKey::generate_key_file(path)?, None),
            RootKeySource::Hex(hex) => (RootKey::from_hex(hex)?, None),
            RootKeySource::Passphrase(passphrase) => {
                let params = KdfParams::generate()?;
                (
                    RootKey::from_passphrase(passphrase.as_bytes(), &params)?,
                    Some(params),
                )
            }
            RootKeySource::TestPassphrase(passphrase) => {
                let params = KdfParams::for_tests();
                (
                    RootKey::from_passphrase(passphrase.as_bytes(), &params)?,
                    Some(params),
                )
            }
        };
        let kdf = kdf
            .map(|params| serde_json::to_string(&params))
            .transpose()
            .map_err(|_| CryptoError::Backend)?;
        let epoch = EpochKey::generate(1)?;
        let meta = KeyStoreMeta {
            verifier: root.verifier()?,
            kdf,
            created_at: clock.now(),
        };
        let row = EpochRow {
            id: 1,
            wrapped: root.wrap_epoch(&epoch)?,
            created_at: clock.now(),
        };
        keys.initialise(&meta, &row)?;
        let lookup = root.lookup_key()?;
        Ok(Self {
            epochs: BTreeMap::from([(1, epoch)]),
            lookup,
            root,
        })
    }

    /// The current (newest) epoch.
    pub fn current(&self) -> Result<&EpochKey, VaultError> {
        self.epochs
            .values()
            .next_back()
            .ok_or_else(|| VaultError::KeyDestroyed("every epoch".into()))
    }

    /// Wraps a data key for `owner` under the current epoch; returns the epoch id and bytes.
    pub fn wrap(&self, owner: SubjectId, key: &DataKey) -> Result<(u32, Vec<u8>), VaultError> {
        let epoch = self.current()?;
        Ok((epoch.id(), epoch.wrap_data_key(owner.as_bytes(), key)?))
    }

    /// Unwraps a data key of `owner` wrapped under `epoch`.
    pub fn unwrap(
        &self,
        owner: SubjectId,
        epoch: u32,
        wrapped: &[u8],
    ) -> Result<DataKey, VaultError> {
        let epoch_key = self
            .epochs
            .get(&epoch)
            .ok_or_else(|| VaultError::KeyDestroyed(format!("epoch {epoch}")))?;
        Ok(epoch_key.unwrap_data_key(owner.as_bytes(), wrapped)?)
    }

    /// The keyed hash of an external id.
    pub fn lookup(&self, external_id: &str) -> [u8; 32] {
        self.lookup.digest(external_id.as_bytes())
    }

    /// Adds a new epoch (after it is stored) and returns it.
    pub fn add_epoch(&mut self, epoch: EpochKey) {
        self.epochs.insert(epoch.id(), epoch);
    }

    /// Forgets a destroyed epoch.
    pub fn forget_epoch(&mut self, id: u32) {
        self.epochs.remove(&id);
    }

    /// The live epoch ids.
    pub fn epoch_ids(&self) -> Vec<u32> {
        self.epochs.keys().copied().collect()
    }

    /// The root key, for wrapping a new epoch.
    pub fn root(&self) -> &RootKey {
        &self.root
    }
}

fn resolve_existing(source: &RootKeySource, meta: &KeyStoreMeta) -> Result<RootKey, VaultError> {
    let stored_kdf = || -> Result<KdfParams, VaultError> {
        let text = meta.kdf.as_deref().ok_or(CryptoError::WrongRootKey)?;
        serde_json::from_str(text).map_err(|_| {
            VaultError::Store(custodia_store::StoreError::Corrupt(
                "key store Argon2id parameters".into(),
            ))
        })
    };
    Ok(match source {
        RootKeySource::KeyFile(path) => RootKey::from_key_file(path)?,
        RootKeySource::Hex(hex) => RootKey::from_hex(hex)?,
        RootKeySource::Passphrase(passphrase) | RootKeySource::TestPassphrase(passphrase) => {
            RootKey::from_passphrase(passphrase.as_bytes(), &stored_kdf()?)?
        }
    })
}
