//! The encrypted personal-data vault: the domain logic that keeps people's data under their own
//! keys and the operator's policy. It knows nothing of HTTP or SQL: it talks to storage through
//! [`custodia_store::DataStore`] and [`custodia_store::KeyStore`], reads time from an injected
//! [`custodia_core::Clock`], and appends an audit entry for every write, read, deletion and key
//! event.
//!
//! - [`vault`]: [`Vault`], subjects and records, erasure, key rotation, audit verification;
//! - [`keeper`]: [`Keeper`], the stores, keys and clock: epoch rotation, audit verification;
//! - [`keyring`]: the root and epoch keys in memory, wrapping and unwrapping data keys;
//! - [`retention`]: each record's expiry from the policy's rule, when it is written;
//! - [`profile`]: a subject's sealed profile (external id, jurisdiction, age, guardian);
//! - [`error`]: [`VaultError`] and its stable codes.

pub mod error;
pub mod keeper;
pub mod keyring;
pub mod profile;
pub mod retention;
pub mod vault;

pub use error::VaultError;
pub use keeper::Keeper;
pub use keyring::RootKeySource;
pub use profile::{NewSubject, SubjectProfile};
pub use vault::{
    ErasureReport, NewRecord, Progress, RecordValue, RotationReport, Subject, Vault, WrittenRecord,
};
