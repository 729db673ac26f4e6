//! [`RootKey`]: the operator's key at the top of the hierarchy, which wraps the epoch keys.
//!
//! It comes from one of three sources, chosen by the operator: a key file
//! ([`RootKey::from_key_file`], created by [`RootKey::generate_key_file`]), the hex value of an
//! environment variable ([`RootKey::from_hex`]) or a passphrase stretched by Argon2id
//! ([`RootKey::from_passphrase`]). It never touches the database; only its
//! [verifier](RootKey::verifier) and the epoch keys it wraps do.

use std::path::Path;

use aws_lc_rs::aead::LessSafeKey;
use aws_lc_rs::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::envelope;
use crate::epoch::EpochKey;
use crate::error::CryptoError;
use crate::field::DataKey;
use crate::kdf::{self, KdfParams};
use crate::keyfile;
use crate::lookup::LookupKey;
use crate::secret::SecretKey;

const VERIFIER_LABEL: &[u8] = b"custodia/root-verifier/v1";
const EPOCH_LABEL: &[u8] = b"custodia/epoch-key/v1";
const DERIVED_SALT: &[u8] = b"custodia/kdf/v1";
const DERIVED_LABEL: &[u8] = b"custodia/derived-key/v1/";

/// The root of the key hierarchy. Wraps [`EpochKey`]s; never stored beside the data.
pub struct RootKey {
    // Kept beside the prepared cipher so the key file can be written from it.
    key: SecretKey,
    cipher: LessSafeKey,
}

impl RootKey {
    fn new(key: SecretKey) -> Result<Self, CryptoError> {
        let cipher = envelope::cipher(&key)?;
        Ok(Self { key, cipher })
    }

    /// A fresh random root key that lives only in memory: for tests and for callers that
    /// persist it themselves (prefer [`RootKey::generate_key_file`]).
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails.
    pub fn generate() -> Result<Self, CryptoError> {
        Self::new(SecretKey::generate()?)
    }

    /// Generates a root key and writes it to a new file at `path`: 64 lowercase hex characters and
    /// a newline, created with mode 0600 on Unix. Refuses to overwrite an existing file, since
    /// replacing a root key makes every vault it protected unreadable.
    ///
    /// # Errors
    /// [`CryptoError::KeyFileIo`] if the file exists or cannot be written (a partly written file
    /// is removed); [`CryptoError::Rng`] if the random number generator fails.
    pub fn generate_key_file(path: impl AsRef<Path>) -> Result<Self, CryptoError> {
        let root = Self::generate()?;
        keyfile::create(path.as_ref(), &root.key)?;
        Ok(root)
    }

    /// Reads a root key from a key file: 64 hex characters, surrounding whitespace ignored.
    ///
    /// # Errors
    /// [`CryptoError::KeyFilePermissions`] if group or others have any access to the file (Unix);
    /// [`CryptoError::KeyFileContent`] if it is not a regular file or does not hold exactly one
    /// key; [`CryptoError::KeyFileIo`] if it cannot be read.
    pub fn from_key_file(path: impl AsRef<Path>) -> Result<Self, CryptoError> {
        Self::new(keyfile::read(path.as_ref())?)
    }

    /// Parses a root key from 64 hex characters (either case, surrounding whitespace ignored), as
    /// given in an environment variable.
    ///
    /// # Errors
    /// [`CryptoError::KeyEncoding`] if the text is not 64 hex characters; the message never
    /// repeats the text.
    pub fn from_hex(hex: &str) -> Result<Self, CryptoError> {
        let key = SecretKey::from_hex(hex.trim_ascii())
            .map_err(|reason| CryptoError::KeyEncoding { reason })?;
        Self::new(key)
    }

    /// Derives the root key from a passphrase with Argon2id under `params`, which the key store
    /// keeps (see [`KdfParams::generate`]). The same passphrase and parameters always give the
    /// same key.
    ///
    /// # Errors
    /// [`CryptoError::Kdf`] if the passphrase is empty or the parameters are out of range.
    pub fn from_passphrase(passphrase: &[u8], params: &KdfParams) -> Result<Self, CryptoError> {
        Self::new(kdf::derive(passphrase, params)?)
    }

    /// A short proof of this key (an AES-256-GCM tag over a fixed label, 29 bytes) for the key
    /// store to keep, so that [`RootKey::check`] can tell a wrong key at startup, before anything
    /// is written. Reveals nothing about the key.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails.
    pub fn verifier(&self) -> Result<Vec<u8>, CryptoError> {
        envelope::with_aad(VERIFIER_LABEL, &[], |aad| {
            envelope::seal(&self.cipher, aad, &[])
        })
    }

    /// Checks that this is the key that made `verifier`.
    ///
    /// # Errors
    /// [`CryptoError::WrongRootKey`] if it is another key; [`CryptoError::Malformed`] if
    /// `verifier` is not a verifier at all.
    pub fn check(&self, verifier: &[u8]) -> Result<(), CryptoError> {
        let opened = envelope::with_aad(VERIFIER_LABEL, &[], |aad| {
            envelope::open(&self.cipher, aad, verifier)
        });
        match opened {
            Ok(_) => Ok(()),
            Err(CryptoError::AuthenticationFailed) => Err(CryptoError::WrongRootKey),
            Err(other) => Err(other),
        }
    }

    /// Wraps an epoch key for the key store. The epoch's id is bound into the wrapping, so the
    /// bytes only unwrap under the same id.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails.
    pub fn wrap_epoch(&self, epoch: &EpochKey) -> Result<Vec<u8>, CryptoError> {
        let id = epoch.id().to_be_bytes();
        envelope::with_aad(EPOCH_LABEL, &[&id], |aad| {
            envelope::wrap_key(&self.cipher, aad, epoch.secret())
        })
    }

    /// Unwraps an epoch key made by [`RootKey::wrap_epoch`] for epoch `id`.
    ///
    /// # Errors
    /// [`CryptoError::AuthenticationFailed`] if the bytes were wrapped under another root key or
    /// for another id, or altered; [`CryptoError::Malformed`] if they cannot be a wrapped key.
    pub fn unwrap_epoch(&self, id: u32, wrapped: &[u8]) -> Result<EpochKey, CryptoError> {
        let id_bytes = id.to_be_bytes();
        let key = envelope::with_aad(EPOCH_LABEL, &[&id_bytes], |aad| {
            envelope::unwrap_key(&self.cipher, aad, wrapped)
        })?;
        EpochKey::from_secret(id, key)
    }

    /// The key for blind-index digests of external ids, derived from this root key (HKDF-SHA256,
    /// then HMAC-SHA256). Deterministic: the same root key always gives the same digests, so the
    /// digests in storage must be recomputed if the root key is ever replaced.
    ///
    /// # Errors
    /// [`CryptoError::Backend`] if the library refuses the derivation, which valid input cannot
    /// cause.
    pub fn lookup_key(&self) -> Result<LookupKey, CryptoError> {
        LookupKey::derive(&self.key)
    }

    /// The key for keyed hashes of one-time identity-verification codes, derived like
    /// [`RootKey::lookup_key`] under a label of its own: the two keys are independent, so no
    /// code's digest can be told from, or collide with, an external id's.
    ///
    /// # Errors
    /// [`CryptoError::Backend`] if the library refuses the derivation, which valid input cannot
    /// cause.
    pub fn verification_key(&self) -> Result<LookupKey, CryptoError> {
        LookupKey::derive_verification(&self.key)
    }

    /// A [`DataKey`] derived from this root key for one named use (HKDF-SHA256, info
    /// `custodia/derived-key/v1/<name>`), for what must outlive every subject's key but not the
    /// root key: the outbox seals erasure notices with it, so a notice stays deliverable after
    /// the subject it concerns is crypto-shredded. Deterministic: the same root key and name
    /// always give the same key; different names give unrelated keys.
    ///
    /// # Errors
    /// [`CryptoError::Backend`] if the library refuses the derivation, which valid input cannot
    /// cause.
    pub fn derived_key(&self, name: &str) -> Result<DataKey, CryptoError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVED_SALT).extract(self.key.expose());
        let mut bytes = Zeroizing::new([0; crate::secret::KEY_LEN]);
        prk.expand(&[DERIVED_LABEL, name.as_bytes()], hmac::HMAC_SHA256)
            .and_then(|okm| okm.fill(bytes.as_mut_slice()))
            .map_err(|_| CryptoError::Backend)?;
        DataKey::from_secret(SecretKey::from_bytes(*bytes))
    }

    #[cfg(test)]
    pub(crate) fn secret(&self) -> &SecretKey {
        &self.key
    }
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(redacted)")
    }
}
