//! SQLite failures as [`StoreError`]s. Every message starts with a context naming the file,
//! table or pseudonymous id concerned, followed by SQLite's own message, which names constraints
//! and columns but never a bound value: stored values never reach an error (invariant 1).

use custodia_store::StoreError;
use rusqlite::ErrorCode;
use rusqlite::ffi;

/// Maps a rusqlite error to the store error a caller can act on.
pub(crate) fn sql_error(err: &rusqlite::Error, context: &str) -> StoreError {
    let message = format!("{context}: {err}");
    match err {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict(message),
            ErrorCode::NotADatabase => StoreError::Corrupt(format!(
                "{context}: the file is not a SQLite database (or is encrypted)"
            )),
            ErrorCode::DatabaseCorrupt => StoreError::Corrupt(message),
            // The operation may succeed later or elsewhere: the caller should retry or alert,
            // not treat the data as bad.
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::NoLargeFileSupport => StoreError::Unavailable(message),
            _ => StoreError::Backend(message),
        },
        // A column that does not decode into its row type means the file was not written by
        // this code, or was damaged.
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(message),
        _ => StoreError::Backend(message),
    }
}

/// Whether `err` is a foreign-key violation, which in this schema always means that a row names
/// a parent subject that does not exist.
pub(crate) fn is_foreign_key_violation(err: &rusqlite::Error) -> bool {
    err.sqlite_error()
        .is_some_and(|e| e.extended_code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

/// Attaches a context to rusqlite results.
pub(crate) trait Context<T> {
    /// Maps the error with a fixed context.
    fn context(self, context: &str) -> Result<T, StoreError>;

    /// Maps the error with a context built only on failure (it usually formats an id).
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, context: &str) -> Result<T, StoreError> {
        self.map_err(|e| sql_error(&e, context))
    }

    fn with_context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|e| sql_error(&e, &context()))
    }
}

/// A number the store keeps as SQLite's signed 64-bit integer.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} {value} is too large")))
}

/// A limit for `LIMIT ?`: anything past `i64::MAX` is as good as no limit.
pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
