//! One SQLite file: opening it safely, one writer connection and a small pool of readers.
//!
//! WAL lets readers run beside the writer, so reads take a pooled connection and never wait
//! for a commit. Writes go through the single writer, one `BEGIN IMMEDIATE` transaction at a
//! time: the mutex orders this process's writers, SQLite's write lock (waited for up to
//! [`BUSY_TIMEOUT`]) orders them with other handles and processes on the same file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use custodia_store::StoreError;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::Context;
use crate::schema::{self, Schema};

/// How long a connection waits for another handle's lock before giving up with
/// [`StoreError::Unavailable`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle read connections kept open; more are opened on demand and closed after use.
const MAX_IDLE_READERS: usize = 32;

/// Enough for every distinct statement a store prepares, so none is ever recompiled.
const STATEMENT_CACHE: usize = 64;

/// The settings in force on a store's writer connection, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The journal mode: `wal`.
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 2 is `FULL`, an fsync of the WAL at every commit.
    pub synchronous: i64,
    /// Whether foreign keys are enforced.
    pub foreign_keys: bool,
    /// Whether deleted content is overwritten with zeros.
    pub secure_delete: bool,
    /// How long a connection waits for a lock, in milliseconds.
    pub busy_timeout_ms: i64,
    /// The schema version stamped in the file.
    pub schema_version: u32,
}

/// Whether opening may create the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Create and migrate a missing file.
    IfMissing,
    /// Refuse a missing file.
    Never,
}

/// One database file and its connections.
pub(crate) struct Db {
    schema: &'static Schema,
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("file", &self.schema.label)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (and with [`Create::IfMissing`] creates) the file, refuses it if it is not a
    /// Custodia file of this kind or is from a newer build, and brings its schema up to date.
    pub(crate) fn open(
        path: &Path,
        schema: &'static Schema,
        create: Create,
    ) -> Result<Self, StoreError> {
        if create == Create::IfMissing {
            create_private_file(path, schema)?;
        }
        let mut writer = connect(path, schema, create)?;
        schema::migrate(&mut writer, schema)?;
        Ok(Self {
            schema,
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file's usual name, for messages.
    pub(crate) fn label(&self) -> &'static str {
        self.schema.label
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction and commits if it succeeds; on any
    /// error the transaction rolls back and nothing is written.
    pub(crate) fn write<T>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer()?;
        // IMMEDIATE takes the write lock now rather than at the first write, so the reads at
        // the start of `work` (the audit head) cannot be overtaken by another handle's commit.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| format!("beginning a write to {}", self.schema.label))?;
        let value = work(&tx)?;
        tx.commit()
            .with_context(|| format!("committing to {}", self.schema.label))?;
        Ok(value)
    }

    /// Runs `work` on a read connection. Each call sees the latest committed state.
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock_readers().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let result = work(&conn);
        // A connection left inside a transaction would pin an old snapshot; drop it instead.
        if conn.is_autocommit() {
            let mut idle = self.lock_readers();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// Moves every WAL frame into the database file and truncates the WAL to zero bytes, so
    /// that pages holding deleted key material no longer exist in any file. Returns whether it
    /// completed; a reader of another handle can hold it back, in which case the next
    /// checkpoint finishes the job.
    pub(crate) fn checkpoint_truncate(&self) -> Result<bool, StoreError> {
        let conn = self.writer()?;
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .with_context(|| format!("checkpointing {}", self.schema.label))?;
        Ok(busy == 0)
    }

    /// The settings in force on the writer connection.
    pub(crate) fn settings(&self) -> Result<Settings, StoreError> {
        let conn = self.writer()?;
        let label = self.schema.label;
        let pragma_i64 = |name: &str| -> Result<i64, StoreError> {
            conn.pragma_query_value(None, name, |row| row.get(0))
                .with_context(|| format!("reading {name} of {label}"))
        };
        let journal_mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .with_context(|| format!("reading journal_mode of {label}"))?;
        Ok(Settings {
            journal_mode,
            synchronous: pragma_i64("synchronous")?,
            foreign_keys: pragma_i64("foreign_keys")? == 1,
            secure_delete: pragma_i64("secure_delete")? == 1,
            busy_timeout_ms: pragma_i64("busy_timeout")?,
            schema_version: schema::check(&conn, self.schema)?,
        })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        // A thread that panicked while holding the lock leaves a usable connection: rusqlite
        // rolls an open transaction back when it is dropped during unwinding.
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")
                .with_context(|| format!("rolling back an abandoned write to {}", self.label()))?;
        }
        Ok(conn)
    }

    fn lock_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The pool is a plain list; a panic cannot leave it half-updated.
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let conn = connect(&self.path, self.schema, Create::Never)?;
        // Readers only read; make SQLite refuse anything else.
        conn.pragma_update(None, "query_only", true)
            .with_context(|| format!("making a read connection to {}", self.label()))?;
        Ok(conn)
    }
}

/// Whether a file exists; failing to tell (permissions, I/O) is an error, not a "no".
pub(crate) fn exists(path: &Path) -> Result<bool, StoreError> {
    path.try_exists()
        .map_err(|e| StoreError::Unavailable(format!("checking {}: {e}", path.display())))
}

/// Creates a missing file readable by its owner only before SQLite opens it; SQLite gives the
/// WAL and shared-memory files the permissions of the database file.
fn create_private_file(path: &Path, schema: &Schema) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "creating {} in {}: {e}",
            schema.label,
            parent_display(path)
        ))),
    }
}

fn parent_display(path: &Path) -> String {
    path.parent().unwrap_or(path).display().to_string()
}

/// Opens one connection, checks the file before anything can write to it, and sets the
/// per-connection pragmas.
fn connect(path: &Path, schema: &Schema, create: Create) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create == Create::IfMissing {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let label = schema.label;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(format!("opening {label} in {}: {e}", parent_display(path)))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .with_context(|| format!("setting busy_timeout on {label}"))?;
    // Before any pragma that writes: a refused file must be left exactly as it was.
    schema::check(&conn, schema)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .with_context(|| format!("setting journal_mode on {label}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{label} cannot use a write-ahead log (journal mode stays {mode}); \
             is the directory on a network file system?"
        )));
    }
    // FULL: the WAL is synced at every commit, so an acknowledged commit survives a power cut
    // (NORMAL could lose the last ones). secure_delete: deleted key material and ciphertext are
    // overwritten rather than left in free pages. trusted_schema off: a tampered file cannot
    // smuggle SQL functions into the schema.
    for (name, value) in [
        ("synchronous", "FULL"),
        ("foreign_keys", "ON"),
        ("secure_delete", "ON"),
        ("trusted_schema", "OFF"),
    ] {
        conn.pragma_update(None, name, value)
            .with_context(|| format!("setting {name} on {label}"))?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}
