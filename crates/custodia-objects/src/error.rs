//! Object storage errors, with stable codes. Messages name keys (pseudonymous ids) and reasons,
//! never object bytes, never a store URL, never credentials: the S3 backend scrubs its secrets
//! out of every message that comes from below it.

use std::io;

/// An object storage failure.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No object is stored under the key.
    #[error("object not found: {key}")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// A key (or list prefix) is not a valid object key. The reason does not quote the input.
    #[error("invalid object key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file system cannot hold this key beside an existing one: one would be the other's
    /// directory (`a` and `a/b`). S3 stores have no such limit.
    #[error("object key conflict: {key} and an existing key are a file and a directory")]
    Conflict {
        /// The key that could not be written.
        key: String,
    },
    /// A byte range starts past the end of the object.
    #[error("invalid range: {start}+{len} of an object of {size} bytes")]
    InvalidRange {
        /// The first byte asked for.
        start: u64,
        /// How many bytes were asked for.
        len: u64,
        /// The object's size.
        size: u64,
    },
    /// A store URL or option is malformed or unsupported. The reason does not quote the URL.
    #[error("invalid object store configuration: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },
    /// The store cannot be reached or did not answer in time (network, server error, timeout).
    #[error("object store unavailable: {detail}")]
    Unavailable {
        /// What failed, scrubbed of credentials.
        detail: String,
    },
    /// The store refused the credentials or the operation.
    #[error("object store denied access: {detail}")]
    Denied {
        /// What was refused, scrubbed of credentials.
        detail: String,
    },
    /// The reader supplying an object's bytes failed; nothing was stored.
    #[error("reading the object's source failed: {0}")]
    Source(#[source] io::Error),
    /// A local I/O error (the file system store).
    #[error("object storage I/O error: {0}")]
    Io(#[source] io::Error),
    /// Any other failure of the store or of this crate's machinery.
    #[error("object store error: {detail}")]
    Backend {
        /// What failed, scrubbed of credentials.
        detail: String,
    },
}

impl ObjectError {
    /// A stable code for machines.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "objects.not_found",
            Self::InvalidKey { .. } => "objects.invalid_key",
            Self::Conflict { .. } => "objects.conflict",
            Self::InvalidRange { .. } => "objects.invalid_range",
            Self::InvalidConfig { .. } => "objects.invalid_config",
            Self::Unavailable { .. } => "objects.unavailable",
            Self::Denied { .. } => "objects.denied",
            Self::Source(_) => "objects.source",
            Self::Io(_) => "objects.io",
            Self::Backend { .. } => "objects.backend",
        }
    }

    pub(crate) fn not_found(key: &crate::ObjectKey) -> Self {
        Self::NotFound {
            key: key.as_str().to_owned(),
        }
    }

    pub(crate) fn invalid_config(reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            reason: reason.into(),
        }
    }
}
