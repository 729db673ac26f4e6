//! Custodia's key hierarchy and field encryption: the cryptographic core of the personal-data vault.
//!
//! Every stored value of personal data is sealed under a per-subject key, so destroying that one key
//! erases every copy of the subject's data, backups included (crypto-shredding, invariant 1 of the
//! design). The hierarchy has three levels:
//!
//! - [`RootKey`]: held by the operator outside the database, from a key file, an environment
//!   variable or a passphrase; it wraps the epoch keys and proves itself with a
//!   [verifier](RootKey::verifier) before anything is written;
//! - [`EpochKey`]: wraps the data keys; rotating the root key re-wraps a handful of epoch keys,
//!   not every subject's key;
//! - [`DataKey`]: one per subject (and more for statutory storage-only copies); it seals the
//!   fields, each bound to its [`FieldContext`] so a ciphertext moved to another row, subject or
//!   category fails to open.
//!
//! All three use AES-256-GCM from `aws-lc-rs` with a random 96-bit nonce per message. This crate
//! stores nothing: it returns wrapped keys and ciphertexts as bytes for the key store and the
//! vault to keep. Errors carry stable [codes](CryptoError::code) and never key bytes or plaintext.
//!
//! Modules:
//! - [`error`]: [`CryptoError`] and its codes;
//! - [`secret`]: [`SecretKey`], the 32 bytes behind every key, wiped on drop;
//! - [`kdf`]: [`KdfParams`], Argon2id parameters for passphrase-derived root keys;
//! - [`root`]: [`RootKey`], its three sources and its verifier;
//! - [`epoch`]: [`EpochKey`], wrapped under the root key;
//! - [`token`]: API key secrets, their stored hash and constant-time comparison;
//! - [`field`]: [`DataKey`] and [`FieldContext`], wrapped under an epoch key, sealing fields;
//! - [`lookup`]: [`LookupKey`], a keyed hash of external ids derived from the root key, so
//!   subjects can be found by the operator's ids without storing them in the clear;
//! - [`stream`]: [`ObjectKey`], [`StreamSealer`], [`SealingReader`] and [`StreamOpener`],
//!   streaming encryption of media objects in fixed-size chunks, with ranged reads.
//!
//! Media objects (audio, images, video) are too large to seal as one field: [`stream`] seals each
//! under its own [`ObjectKey`], wrapped by the subject's [`DataKey`], as a STREAM of 64 KiB
//! authenticated chunks that are written, read and ranged through with flat memory.

mod envelope;
pub mod epoch;
pub mod error;
pub mod field;
pub mod kdf;
mod keyfile;
pub mod lookup;
pub mod root;
pub mod secret;
pub mod stream;
pub mod token;

pub use epoch::EpochKey;
pub use error::CryptoError;
pub use field::{DataKey, FieldContext};
pub use kdf::KdfParams;
pub use lookup::LookupKey;
pub use root::RootKey;
pub use secret::SecretKey;
pub use stream::{ChunkSize, ObjectKey, SealingReader, StreamOpener, StreamSealer};

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
