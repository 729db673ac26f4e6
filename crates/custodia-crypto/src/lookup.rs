//! [`LookupKey`]: a keyed hash of external ids, so the vault can find a subject by the operator's
//! own id (an account number, an email) without storing that id in the clear.
//!
//! The digest is HMAC-SHA256 under a key derived from the root key with HKDF-SHA256. It is
//! deterministic, which is what makes it searchable, and therefore reveals which rows share an
//! external id; it is a blind index, not encryption, and the id itself should also be sealed as a
//! field where it must be read back.

use aws_lc_rs::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::secret::{KEY_LEN, SecretKey};

const SALT: &[u8] = b"custodia/kdf/v1";
const INFO: &[u8] = b"custodia/lookup-key/v1";
/// The HKDF label of the key that hashes one-time identity-verification codes: distinct from
/// [`INFO`], so a code's digest can never equal an external id's.
const VERIFICATION_INFO: &[u8] = b"custodia/verification-code-key/v1";

/// Length of a lookup digest.
pub const DIGEST_LEN: usize = 32;

/// Keyed hash for blind-index lookups of external ids. Obtained from
/// [`RootKey::lookup_key`](crate::RootKey::lookup_key).
pub struct LookupKey {
    key: hmac::Key,
}

impl LookupKey {
    /// Derives the lookup key from the root key's bytes.
    pub(crate) fn derive(root: &SecretKey) -> Result<Self, CryptoError> {
        Self::derive_labelled(root, INFO)
    }

    /// Derives the verification-code key from the root key's bytes (another HKDF label).
    pub(crate) fn derive_verification(root: &SecretKey) -> Result<Self, CryptoError> {
        Self::derive_labelled(root, VERIFICATION_INFO)
    }

    fn derive_labelled(root: &SecretKey, info: &[u8]) -> Result<Self, CryptoError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(root.expose());
        let mut bytes = Zeroizing::new([0; KEY_LEN]);
        prk.expand(&[info], hmac::HMAC_SHA256)
            .and_then(|okm| okm.fill(bytes.as_mut_slice()))
            .map_err(|_| CryptoError::Backend)?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes.as_slice()),
        })
    }

    /// The digest of `value`: equal values give equal digests under the same root key.
    #[must_use]
    pub fn digest(&self, value: &[u8]) -> [u8; DIGEST_LEN] {
        let tag = hmac::sign(&self.key, value);
        let mut out = [0; DIGEST_LEN];
        for (dst, src) in out.iter_mut().zip(tag.as_ref()) {
            *dst = *src;
        }
        out
    }
}

impl std::fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupKey(redacted)")
    }
}
