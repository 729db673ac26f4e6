//! The one error type of the crate, with stable codes for logs, the API and the CLI.
//!
//! Messages name what failed and, for key files, the path and permission bits; they never include
//! key material, plaintext or ciphertext, so they are safe to log and to show.

use std::path::PathBuf;

/// What went wrong in a cryptographic operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The root key does not match the verifier kept with the key store.
    #[error("the root key does not match this key store (wrong key file, variable or passphrase)")]
    WrongRootKey,

    /// A ciphertext or wrapped key did not authenticate: it was tampered with, moved to another
    /// context, or opened with the wrong key. Deliberately says no more than that.
    #[error("authentication failed: the data was altered, moved, or opened with the wrong key")]
    AuthenticationFailed,

    /// Bytes that cannot be a ciphertext or wrapped key of this crate at all.
    #[error("malformed ciphertext: {reason}")]
    Malformed {
        /// Which structural check failed.
        reason: &'static str,
    },

    /// The key file could not be created or read.
    #[error("key file {}: {source}", path.display())]
    KeyFileIo {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The key file is accessible to group or others.
    #[error(
        "key file {} has mode {mode:04o}, which lets group or others access it; \
         restrict it with `chmod 600`",
        path.display()
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file exists but does not hold a key in the expected form.
    #[error("key file {}: {reason}", path.display())]
    KeyFileContent {
        /// The key file.
        path: PathBuf,
        /// What is wrong with the content (never the content itself).
        reason: &'static str,
    },

    /// A hex-encoded root key (for example from an environment variable) is malformed.
    #[error("root key: {reason}")]
    KeyEncoding {
        /// What is wrong with the encoding (never the value itself).
        reason: &'static str,
    },

    /// Passphrase derivation failed or its parameters are unacceptable.
    #[error("key derivation: {reason}")]
    Kdf {
        /// Why, from the parameter checks or the Argon2 implementation.
        reason: String,
    },

    /// A loaded data key sealed 2³² fields; load it again for a fresh nonce sequence.
    #[error("this loaded key has sealed as many fields as its nonce sequence allows; reload it")]
    NoncesExhausted,
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Rng,

    /// The cryptographic library refused an operation that valid input cannot make fail, such as
    /// sealing more than AES-GCM's 64 GiB per message.
    #[error("the cryptographic library refused the operation")]
    Backend,
}

impl CryptoError {
    /// A stable, machine-readable code for this error.
    ///
    /// Codes are part of the public contract: callers map them to HTTP statuses and CLI exit
    /// codes, and operators grep logs for them. Several variants may share one code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongRootKey => "crypto.wrong_root_key",
            Self::AuthenticationFailed => "crypto.authentication_failed",
            Self::Malformed { .. } => "crypto.malformed",
            Self::KeyFileIo { .. }
            | Self::KeyFilePermissions { .. }
            | Self::KeyFileContent { .. } => "crypto.key_file",
            Self::KeyEncoding { .. } => "crypto.key_encoding",
            Self::Kdf { .. } => "crypto.kdf",
            Self::Rng => "crypto.rng",
            Self::NoncesExhausted => "crypto.nonces_exhausted",
            Self::Backend => "crypto.backend",
        }
    }
}
