//! [`DataKey`] and [`FieldContext`]: sealing one stored value of personal data.
//!
//! A field's ciphertext is bound to its context, the subject, category and record it belongs to,
//! through AES-GCM's associated data. The vault cannot be tricked into returning one subject's
//! value as another's, or a value of one category under another's purpose checks, by moving
//! ciphertexts between rows: such a ciphertext fails to open.
//!
//! Sealed format: `0x01 || nonce (12) || ciphertext || tag (16)`, 29 bytes over the plaintext.

use aws_lc_rs::aead::LessSafeKey;
use zeroize::Zeroizing;

use crate::envelope;
use crate::error::CryptoError;
use crate::secret::SecretKey;

const FIELD_LABEL: &[u8] = b"custodia/field/v1";

/// Bytes a sealed field adds to its plaintext.
pub const FIELD_OVERHEAD: usize = envelope::OVERHEAD;

/// Where a field's value belongs. Every part is bound into the ciphertext; use stable ids (not
/// display names) so that renaming something does not make its data unreadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldContext<'a> {
    /// The subject's id.
    pub subject: &'a str,
    /// The category key, such as `user.contact.email`.
    pub category: &'a str,
    /// The record's id.
    pub record: &'a str,
}

impl<'a> FieldContext<'a> {
    /// A context from its three parts.
    #[must_use]
    pub fn new(subject: &'a str, category: &'a str, record: &'a str) -> Self {
        Self {
            subject,
            category,
            record,
        }
    }

    fn with_aad<R>(
        &self,
        f: impl FnOnce(&[u8]) -> Result<R, CryptoError>,
    ) -> Result<R, CryptoError> {
        envelope::with_aad(
            FIELD_LABEL,
            &[
                self.subject.as_bytes(),
                self.category.as_bytes(),
                self.record.as_bytes(),
            ],
            f,
        )
    }
}

/// A subject's data key: seals and opens that subject's fields. Destroying every wrapped copy of
/// it erases the subject's data. Wrapped under an [`EpochKey`](crate::EpochKey).
///
/// The AES key schedule is prepared once, when the key is made or unwrapped; keep the `DataKey`
/// (it is `Send + Sync`) for as long as fields of the subject are being sealed or opened.
pub struct DataKey {
    // Kept beside the prepared cipher so the key can be wrapped.
    key: SecretKey,
    cipher: LessSafeKey,
    nonces: envelope::NonceSequence,
}

impl DataKey {
    /// A fresh random data key.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails.
    pub fn generate() -> Result<Self, CryptoError> {
        Self::from_secret(SecretKey::generate()?)
    }

    pub(crate) fn from_secret(key: SecretKey) -> Result<Self, CryptoError> {
        let cipher = envelope::cipher(&key)?;
        Ok(Self {
            key,
            cipher,
            nonces: envelope::NonceSequence::new()?,
        })
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.key
    }

    /// The prepared cipher, for wrapping the per-object keys of media streams.
    pub(crate) fn cipher(&self) -> &LessSafeKey {
        &self.cipher
    }

    /// Seals `plaintext` for `context` under a fresh random nonce. The result is
    /// [`FIELD_OVERHEAD`] bytes longer than the plaintext, built in one allocation.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails; [`CryptoError::Backend`] for a
    /// plaintext over AES-GCM's limit of 64 GiB.
    pub fn seal(
        &self,
        context: &FieldContext<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = self.nonces.next()?;
        context.with_aad(|aad| envelope::seal_with_nonce(&self.cipher, nonce, aad, plaintext))
    }

    /// Opens a ciphertext made by [`DataKey::seal`] for the same `context`, into a buffer that is
    /// wiped when dropped.
    ///
    /// # Errors
    /// [`CryptoError::AuthenticationFailed`] if it was sealed for another context or under
    /// another key, or altered; [`CryptoError::Malformed`] if it is too short or of an unknown
    /// format version.
    pub fn open(
        &self,
        context: &FieldContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        context.with_aad(|aad| envelope::open(&self.cipher, aad, ciphertext))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(redacted)")
    }
}
