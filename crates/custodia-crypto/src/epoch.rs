//! [`EpochKey`]: the middle of the hierarchy, wrapped by the root key, wrapping the data keys.
//!
//! Epochs make root-key rotation cheap: a new root key re-wraps the few epoch keys, not every
//! subject's data key. A new epoch can be started at any time; data keys stay wrapped under the
//! epoch that wrapped them until they are re-wrapped or destroyed.

use aws_lc_rs::aead::LessSafeKey;

use crate::envelope;
use crate::error::CryptoError;
use crate::field::DataKey;
use crate::secret::SecretKey;

const DATA_KEY_LABEL: &[u8] = b"custodia/data-key/v1";

/// An epoch key and its id, which the key store assigns and binds into every wrapping.
pub struct EpochKey {
    id: u32,
    key: SecretKey,
    cipher: LessSafeKey,
}

impl EpochKey {
    /// A fresh random key for epoch `id`.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails.
    pub fn generate(id: u32) -> Result<Self, CryptoError> {
        Self::from_secret(id, SecretKey::generate()?)
    }

    pub(crate) fn from_secret(id: u32, key: SecretKey) -> Result<Self, CryptoError> {
        let cipher = envelope::cipher(&key)?;
        Ok(Self { id, key, cipher })
    }

    /// This epoch's id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.key
    }

    /// Wraps a data key for `owner`, an opaque id of who the key belongs to (a subject id, or the
    /// id of a statutory copy). The owner and this epoch's id are bound into the wrapping, so
    /// the bytes copied to another owner's row do not unwrap there.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails.
    pub fn wrap_data_key(&self, owner: &[u8], key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        let id = self.id.to_be_bytes();
        envelope::with_aad(DATA_KEY_LABEL, &[&id, owner], |aad| {
            envelope::wrap_key(&self.cipher, aad, key.secret())
        })
    }

    /// Unwraps a data key made by [`EpochKey::wrap_data_key`] for `owner` under this epoch.
    ///
    /// # Errors
    /// [`CryptoError::AuthenticationFailed`] if the bytes were wrapped for another owner, under
    /// another epoch, or altered; [`CryptoError::Malformed`] if they cannot be a wrapped key.
    pub fn unwrap_data_key(&self, owner: &[u8], wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let id = self.id.to_be_bytes();
        let key = envelope::with_aad(DATA_KEY_LABEL, &[&id, owner], |aad| {
            envelope::unwrap_key(&self.cipher, aad, wrapped)
        })?;
        DataKey::from_secret(key)
    }
}

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKey")
            .field("id", &self.id)
            .field("key", &format_args!("redacted"))
            .finish()
    }
}
