//! [`Keeper`]: the stores, the key ring and the clock, and what can be done with them without a
//! policy: wrapping and unwrapping data keys, epoch rotation and destruction, and verifying the
//! audit chain. A [`crate::Vault`] is a keeper under a policy; operators' tools (`custodia keys`,
//! `custodia audit`) use a keeper alone.

use std::sync::{Arc, RwLock};

use custodia_audit::{Anchor, AuditEvent, EventKind, VerifyReport};
use custodia_core::{Clock, KeyId, SubjectId};
use custodia_crypto::{DataKey, EpochKey};
use custodia_store::{DataKeyKind, DataKeyRow, DataStore, EpochRow, KeyStore, WriteBatch};

use crate::batcher::AuditBatcher;
use crate::error::VaultError;
use crate::keyring::{KeyRing, RootKeySource};
use crate::vault::{Progress, RotationReport, poisoned};

/// How many data keys a rotation re-wraps per store call.
const ROTATION_PAGE: usize = 512;

/// The stores, the unwrapped key ring and the clock.
#[derive(Debug)]
pub struct Keeper {
    pub(crate) data: Arc<dyn DataStore>,
    pub(crate) keys: Arc<dyn KeyStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ring: RwLock<KeyRing>,
    pub(crate) decisions: AuditBatcher,
}

impl Keeper {
    /// Opens the key ring: initialises an empty key store or checks the root key against it.
    pub fn open(
        data: Arc<dyn DataStore>,
        keys: Arc<dyn KeyStore>,
        clock: Arc<dyn Clock>,
        root: &RootKeySource,
    ) -> Result<Self, VaultError> {
        let ring = KeyRing::open(keys.as_ref(), root, clock.as_ref())?;
        let decisions = AuditBatcher::start(data.clone())?;
        Ok(Self {
            data,
            keys,
            clock,
            ring: RwLock::new(ring),
            decisions,
        })
    }

    /// The data store.
    pub fn data_store(&self) -> &Arc<dyn DataStore> {
        &self.data
    }

    /// The key store.
    pub fn key_store(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// The live epoch ids, oldest first.
    pub fn epochs(&self) -> Result<Vec<u32>, VaultError> {
        Ok(self.ring.read().map_err(|_| poisoned())?.epoch_ids())
    }

    pub(crate) fn event(&self, kind: EventKind, actor: &str) -> AuditEvent {
        AuditEvent::new(kind, self.clock.now().as_millis()).with_actor(actor)
    }

    /// A new data key for `owner`, wrapped under the current epoch (not yet stored).
    pub(crate) fn new_data_key(
        &self,
        owner: SubjectId,
        kind: DataKeyKind,
    ) -> Result<(DataKeyRow, DataKey), VaultError> {
        let key = DataKey::generate()?;
        let ring = self.ring.read().map_err(|_| poisoned())?;
        let (epoch, wrapped) = ring.wrap(owner, &key)?;
        let row = DataKeyRow {
            id: KeyId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?,
            owner,
            kind,
            epoch,
            wrapped,
            created_at: self.clock.now(),
        };
        Ok((row, key))
    }

    /// Unwraps a stored data key.
    pub(crate) fn unwrap_row(&self, row: &DataKeyRow) -> Result<DataKey, VaultError> {
        self.ring
            .read()
            .map_err(|_| poisoned())?
            .unwrap(row.owner, row.epoch, &row.wrapped)
    }

    /// Loads and unwraps data key `id` of `owner`; a destroyed key is [`VaultError::KeyDestroyed`].
    pub(crate) fn load_key(&self, id: KeyId, owner: SubjectId) -> Result<DataKey, VaultError> {
        let row = self
            .keys
            .data_key(id)?
            .filter(|row| row.owner == owner)
            .ok_or_else(|| VaultError::KeyDestroyed(id.to_string()))?;
        self.unwrap_row(&row)
    }

    /// The keyed hash of an external id.
    pub(crate) fn lookup(&self, external_id: &str) -> Result<[u8; 32], VaultError> {
        Ok(self
            .ring
            .read()
            .map_err(|_| poisoned())?
            .lookup(external_id))
    }

    /// Starts a new epoch and re-wraps every data key under it, reporting progress.
    pub fn rotate_epoch(
        &self,
        actor: &str,
        progress: &mut dyn Progress,
    ) -> Result<RotationReport, VaultError> {
        let (new_id, old_ids) = {
            let ring = self.ring.read().map_err(|_| poisoned())?;
            let ids = ring.epoch_ids();
            (ids.last().copied().unwrap_or(0).saturating_add(1), ids)
        };
        let epoch = EpochKey::generate(new_id)?;
        let row = EpochRow {
            id: new_id,
            wrapped: self
                .ring
                .read()
                .map_err(|_| poisoned())?
                .root()
                .wrap_epoch(&epoch)?,
            created_at: self.clock.now(),
        };
        self.keys.add_epoch(&row)?;
        self.ring.write().map_err(|_| poisoned())?.add_epoch(epoch);
        self.data.commit(WriteBatch {
            mutations: Vec::new(),
            audit: vec![
                self.event(EventKind::EpochCreated, actor)
                    .with_outcome(new_id.to_string()),
            ],
        })?;
        let mut rewrapped = 0u64;
        for old in old_ids {
            let mut after = None;
            loop {
                let page = self.keys.data_keys_in_epoch(old, after, ROTATION_PAGE)?;
                let Some(last) = page.last() else {
                    break;
                };
                after = Some(last.id);
                let ring = self.ring.read().map_err(|_| poisoned())?;
                let mut updated = Vec::with_capacity(page.len());
                for key_row in page {
                    let key = ring.unwrap(key_row.owner, key_row.epoch, &key_row.wrapped)?;
                    let (epoch, wrapped) = ring.wrap(key_row.owner, &key)?;
                    updated.push(DataKeyRow {
                        epoch,
                        wrapped,
                        ..key_row
                    });
                }
                drop(ring);
                self.keys.rewrap_data_keys(&updated)?;
                rewrapped += updated.len() as u64;
                progress.advance(rewrapped, rewrapped);
            }
        }
        self.data.commit(WriteBatch {
            mutations: Vec::new(),
            audit: vec![
                self.event(EventKind::KeyRotated, actor)
                    .with_outcome(format!("epoch={new_id} rewrapped={rewrapped}")),
            ],
        })?;
        Ok(RotationReport {
            epoch: new_id,
            rewrapped,
        })
    }

    /// Destroys an old epoch key; refused while any data key is still wrapped by it.
    pub fn destroy_epoch(&self, id: u32, actor: &str) -> Result<(), VaultError> {
        self.keys.destroy_epoch(id)?;
        self.ring.write().map_err(|_| poisoned())?.forget_epoch(id);
        self.data.commit(WriteBatch {
            mutations: Vec::new(),
            audit: vec![
                self.event(EventKind::EpochDestroyed, actor)
                    .with_outcome(id.to_string()),
            ],
        })?;
        Ok(())
    }

    /// Verifies the whole audit chain, streaming it page by page.
    pub fn verify_audit(&self, progress: &mut dyn Progress) -> Result<VerifyReport, VaultError> {
        self.verify_audit_with_anchor(None, progress)
    }

    /// Verifies the whole chain and, given an anchor recorded earlier, that the chain still passes
    /// through it (which catches a truncated tail or a rewritten history).
    pub fn verify_audit_with_anchor(
        &self,
        anchor: Option<Anchor>,
        progress: &mut dyn Progress,
    ) -> Result<VerifyReport, VaultError> {
        let total = self.data.audit_head()?.map_or(0, |head| head.seq);
        let mut verifier = custodia_audit::Verifier::new();
        if let Some(anchor) = anchor {
            verifier = verifier.with_checkpoint(anchor)?;
        }
        let mut from = 1;
        loop {
            let page = self.data.audit_entries(from, 4096)?;
            let Some(last) = page.last() else {
                break;
            };
            from = last.seq.saturating_add(1);
            for entry in &page {
                verifier
                    .push(entry)
                    .map_err(custodia_audit::AuditError::from)?;
            }
            progress.advance(from.saturating_sub(1), total);
        }
        Ok(verifier
            .finish()
            .map_err(custodia_audit::AuditError::from)?)
    }
}
