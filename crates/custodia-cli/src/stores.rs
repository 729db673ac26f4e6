//! Where the data lives: the `--data` directory and the `--database` URL (SQLite by default,
//! PostgreSQL by `postgres://`), the root key's source, and opening the vault's stores from them.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use custodia_store::{DataStore, KeyStore, StoreError};
use custodia_vault::RootKeySource;
use zeroize::Zeroizing;

/// The options every command that touches the vault takes.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The data directory: SQLite files (embedded default) and the root key file
    /// [default: custodia-data].
    #[arg(long, env = "CUSTODIA_DATA")]
    pub data: Option<PathBuf>,
    /// The database URL: `sqlite:DIR` (default: the data directory) or
    /// `postgres://user:password@host/db` (add `?namespace=NAME` for a non-default schema prefix).
    #[arg(long, env = "CUSTODIA_DATABASE_URL")]
    pub database: Option<String>,
    /// The root key file (default: DATA/root.key). `CUSTODIA_ROOT_KEY` (64 hex digits) or
    /// `CUSTODIA_PASSPHRASE` (Argon2id) take precedence when set.
    #[arg(long)]
    pub root_key_file: Option<PathBuf>,
}

/// Opened stores.
pub type Stores = (Arc<dyn DataStore>, Arc<dyn KeyStore>);

/// Why the stores or the root key could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL's scheme is not one we speak.
    #[error("unsupported database URL scheme; use sqlite:DIR or postgres://")]
    Scheme,
    /// The stores could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SetupError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Scheme => "config.database_url",
            Self::Store(err) => err.code(),
        }
    }
}

/// The data directory when none is given.
pub const DEFAULT_DATA_DIR: &str = "custodia-data";

impl StoreArgs {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// Opens the data and key stores.
    pub fn open(&self) -> Result<Stores, SetupError> {
        match self.database.as_deref() {
            None => self.open_sqlite(&self.data_dir()),
            Some(url) if url.starts_with("sqlite:") => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                self.open_sqlite(&PathBuf::from(path))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let (url, namespace) = split_namespace(url);
                let (data, keys) =
                    custodia_store_postgres::PostgresStores::connect(url, namespace)?;
                Ok((Arc::new(data), Arc::new(keys)))
            }
            Some(_) => Err(SetupError::Scheme),
        }
    }

    fn open_sqlite(&self, dir: &std::path::Path) -> Result<Stores, SetupError> {
        let (data, keys) = custodia_store_sqlite::SqliteStores::open(dir)?;
        Ok((Arc::new(data), Arc::new(keys)))
    }

    /// The root key's source: the environment first, then the key file.
    pub fn root_key(&self) -> RootKeySource {
        if let Ok(hex) = std::env::var("CUSTODIA_ROOT_KEY") {
            return RootKeySource::Hex(Zeroizing::new(hex));
        }
        if let Ok(passphrase) = std::env::var("CUSTODIA_PASSPHRASE") {
            return RootKeySource::Passphrase(Zeroizing::new(passphrase));
        }
        RootKeySource::KeyFile(
            self.root_key_file
                .clone()
                .unwrap_or_else(|| self.data_dir().join("root.key")),
        )
    }
}

/// Splits `?namespace=NAME` off a PostgreSQL URL.
fn split_namespace(url: &str) -> (&str, &str) {
    match url.split_once("?namespace=") {
        Some((base, namespace)) => (base, namespace),
        None => (url, "custodia"),
    }
}
