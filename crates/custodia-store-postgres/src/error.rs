//! PostgreSQL failures as [`StoreError`]s, chosen by SQLSTATE.
//!
//! Every message starts with a context naming the schema, table or pseudonymous id concerned.
//! From the server's report only the SQLSTATE, the constraint and table names and the primary
//! message are kept: PostgreSQL puts offending key values in the `DETAIL` field, which is never
//! read here, so stored values never reach an error (invariant 1). Connection errors never
//! carry the password (see [`connect_error`]).

use std::error::Error as _;
use std::fmt::Write as _;

use custodia_store::StoreError;
use postgres::error::DbError;

/// Maps a driver error to the store error a caller can act on.
pub(crate) fn pg_error(err: &postgres::Error, context: &str) -> StoreError {
    if let Some(db) = err.as_db_error() {
        return db_error(db, context);
    }
    if err.is_closed() || has_io_source(err) {
        return StoreError::Unavailable(format!(
            "{context}: the connection to PostgreSQL was lost ({})",
            chain(err)
        ));
    }
    StoreError::Backend(format!("{context}: {}", chain(err)))
}

/// An insert's failure: a violation of the table's primary key (`pkey`, the constraint's name) is a
/// conflict over `what`; anything else is mapped as [`pg_error`] maps it.
pub(crate) fn insert_error(err: &postgres::Error, pkey: &str, what: &str) -> StoreError {
    if err.as_db_error().and_then(|db| db.constraint()) == Some(pkey) {
        StoreError::Conflict(format!("{what}: it already exists"))
    } else {
        pg_error(err, what)
    }
}

fn db_error(db: &DbError, context: &str) -> StoreError {
    let code = db.code().code();
    let what = describe(db);
    let message = format!("{context}: {what}");
    match code {
        // Duplicate keys and broken foreign keys both mean the batch contradicts what the store
        // already holds: the caller's conflict, not a broken store.
        "23505" | "23503" => StoreError::Conflict(message),
        // A row that breaks a CHECK or NOT NULL was built wrong by this code or a caller.
        c if c.starts_with("23") => StoreError::Conflict(message),
        // The server is going away, refusing connections or out of resources: retry later,
        // possibly on another instance.
        c if c.starts_with("08")
            || c.starts_with("53")
            || c.starts_with("57P")
            || c.starts_with("28")
            || c == "3D000"
            || c == "25006" =>
        {
            StoreError::Unavailable(message)
        }
        // Missing tables or columns mean someone changed the schema under this build.
        "42P01" | "42703" | "3F000" | "42883" => StoreError::Corrupt(message),
        c if c.starts_with("40") => StoreError::Backend(format!(
            "{message}; the transaction was rolled back and can be retried"
        )),
        _ => StoreError::Backend(message),
    }
}

/// The server's report without its `DETAIL`, which may quote values.
fn describe(db: &DbError) -> String {
    let mut out = format!("SQLSTATE {}: {}", db.code().code(), db.message());
    match (db.schema(), db.table()) {
        (Some(schema), Some(table)) => {
            let _ = write!(out, " (table {schema}.{table}");
        }
        (None, Some(table)) => {
            let _ = write!(out, " (table {table}");
        }
        _ => out.push_str(" ("),
    }
    if let Some(constraint) = db.constraint() {
        let _ = write!(out, ", constraint {constraint}");
    }
    if let Some(column) = db.column() {
        let _ = write!(out, ", column {column}");
    }
    if out.ends_with(" (") {
        out.truncate(out.len().saturating_sub(2));
    } else {
        out.push(')');
    }
    out
}

fn has_io_source(err: &postgres::Error) -> bool {
    let mut source = err.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The error and its causes, as `kind: cause: cause`: the driver's own `Display` names only the
/// kind ("error connecting to server"), which says nothing an operator can act on.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

/// A failure to connect or log in, as [`StoreError::Unavailable`]. `target` is
/// `host:port/database` (no credentials); any occurrence of the password in the driver's text is
/// masked as well, in case a future driver version quotes the connection string.
pub(crate) fn connect_error(
    err: &postgres::Error,
    target: &str,
    user: Option<&str>,
    password: Option<&[u8]>,
) -> StoreError {
    let code = err.as_db_error().map(|db| db.code().code());
    let message = match code {
        Some(c) if c.starts_with("28") => format!(
            "cannot log in to PostgreSQL at {target} as {}: authentication failed (check the \
             user and password in the URL)",
            user.unwrap_or("(default user)")
        ),
        Some("3D000") => format!("PostgreSQL at {target}: the database does not exist"),
        Some(_) => match err.as_db_error() {
            Some(db) => format!("cannot connect to PostgreSQL at {target}: {}", describe(db)),
            None => format!("cannot connect to PostgreSQL at {target}"),
        },
        None => format!("cannot connect to PostgreSQL at {target}: {}", chain(err)),
    };
    StoreError::Unavailable(redact(&message, password))
}

/// A connection string that does not parse, as [`StoreError::Unavailable`]: the store cannot be
/// reached with it. The URL itself is not quoted; it may hold a password.
pub(crate) fn url_error(err: &postgres::Error, url: &str) -> StoreError {
    let message = format!("invalid PostgreSQL URL: {}", chain(err));
    let mut masked = message;
    for secret in url_secrets(url) {
        masked = redact(&masked, Some(secret.as_bytes()));
    }
    StoreError::Unavailable(masked)
}

fn redact(text: &str, password: Option<&[u8]>) -> String {
    match password.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
        _ => text.to_owned(),
    }
}

/// The password candidates in a connection string that failed to parse: the user-info part of a
/// URL (`scheme://user:secret@host`) and `password=` of the key-value form.
fn url_secrets(url: &str) -> Vec<&str> {
    let mut secrets = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, secret)) = userinfo.split_once(':')
            && !secret.is_empty()
        {
            secrets.push(secret);
        }
    }
    for part in url.split_whitespace() {
        if let Some(secret) = part.strip_prefix("password=")
            && !secret.is_empty()
        {
            secrets.push(secret.trim_matches('\''));
        }
    }
    secrets
}

/// A number the store keeps as PostgreSQL's signed 64-bit `BIGINT`.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{what} {value} is too large")))
}

/// A limit for `LIMIT $n`: anything past `i64::MAX` is as good as no limit.
pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Attaches a context to driver results.
pub(crate) trait Context<T> {
    /// Maps the error with a fixed context.
    fn context(self, context: &str) -> Result<T, StoreError>;

    /// Maps the error with a context built only on failure (it usually formats an id).
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, postgres::Error> {
    fn context(self, context: &str) -> Result<T, StoreError> {
        self.map_err(|e| pg_error(&e, context))
    }

    fn with_context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|e| pg_error(&e, &context()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn secrets_are_found_in_both_url_forms() {
        assert_eq!(url_secrets("postgres://u:s3cret@h:5432/db"), vec!["s3cret"]);
        assert_eq!(url_secrets("postgres://u@h/db"), Vec::<&str>::new());
        assert_eq!(url_secrets("host=h user=u password=s3cret"), vec!["s3cret"]);
        assert_eq!(url_secrets("postgres://u:p@ss@h/db"), vec!["p@ss"]);
    }

    #[test]
    fn bad_urls_do_not_echo_the_password() {
        let url = "postgres://custodia:hunter2@localhost:notaport/db";
        let err = url.parse::<postgres::Config>().unwrap_err();
        let mapped = url_error(&err, url);
        assert!(matches!(mapped, StoreError::Unavailable(_)), "{mapped:?}");
        assert!(!mapped.to_string().contains("hunter2"), "{mapped}");
    }

    #[test]
    fn redaction_masks_every_occurrence() {
        assert_eq!(redact("a pw b pw", Some(b"pw")), "a *** b ***");
        assert_eq!(redact("nothing", Some(b"")), "nothing");
        assert_eq!(redact("nothing", None), "nothing");
    }

    #[test]
    fn limits_saturate() {
        assert_eq!(limit(usize::MAX), i64::MAX);
        assert_eq!(limit(7), 7);
        assert!(to_i64(u64::MAX, "seq").is_err());
    }
}
