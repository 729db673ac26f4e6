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

    /// A media stream ended before its final chunk: it was cut short (or never finished).
    #[error("the stream ends before its final chunk: it was cut short")]
    Truncated,

    /// A media stream would need more chunks than its 32-bit chunk counter can number.
    #[error("the stream is longer than its chunk counter allows; use a larger chunk size")]
    StreamTooLong,

    /// Reading or writing the stream underneath a media stream failed.
    #[error("stream i/o: {source}")]
    Io {
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

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
            Self::Truncated => "crypto.truncated",
            Self::StreamTooLong => "crypto.stream_too_long",
            Self::Io { .. } => "crypto.io",
            Self::NoncesExhausted => "crypto.nonces_exhausted",
            Self::Backend => "crypto.backend",
        }
    }
}

impl CryptoError {
    /// Recovers the error carried by an [`std::io::Error`] that a media stream's
    /// [`Read`](std::io::Read) or [`Write`](std::io::Write) implementation returned, so its
    /// [code](CryptoError::code) survives `std::io::copy` and friends; any other I/O error
    /// becomes [`CryptoError::Io`].
    #[must_use]
    pub fn from_io(error: std::io::Error) -> Self {
        if !error.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            return Self::Io { source: error };
        }
        match error.into_inner().map(|inner| inner.downcast::<Self>()) {
            Some(Ok(crypto)) => *crypto,
            // Ruled out by the check above; kept total rather than unwrapped.
            _ => Self::Backend,
        }
    }
}

/// Lets the media streams report their errors through `std::io`: the I/O error inside an
/// [`Io`](CryptoError::Io) comes back as it was, and every other error travels inside an I/O
/// error of a fitting kind, from which [`CryptoError::from_io`] takes it out again.
impl From<CryptoError> for std::io::Error {
    fn from(error: CryptoError) -> Self {
        use std::io::ErrorKind;
        match error {
            CryptoError::Io { source } => source,
            CryptoError::Truncated => Self::new(ErrorKind::UnexpectedEof, error),
            CryptoError::AuthenticationFailed | CryptoError::Malformed { .. } => {
                Self::new(ErrorKind::InvalidData, error)
            }
            other => Self::other(other),
        }
    }
}
