//! Storage errors, with stable codes. Messages name ids and tables, never stored values.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or opened.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness or state rule was broken (duplicate id, already initialised, key in use).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Something the operation needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store was written by a newer version of Custodia.
    #[error(
        "the store's schema version {found} is newer than this build supports ({supported}); upgrade Custodia"
    )]
    SchemaTooNew {
        /// The version found in the store.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// Stored data does not have the expected shape.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// Any other backend error.
    #[error("storage error: {0}")]
    Backend(String),
}

impl StoreError {
    /// A stable code for machines.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "store.unavailable",
            Self::Conflict(_) => "store.conflict",
            Self::NotFound(_) => "store.not_found",
            Self::SchemaTooNew { .. } => "store.schema_too_new",
            Self::Corrupt(_) => "store.corrupt",
            Self::Backend(_) => "store.backend",
        }
    }
}
