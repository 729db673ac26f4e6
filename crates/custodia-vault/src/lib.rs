//! The encrypted personal-data vault: the domain logic that keeps people's data under their own
//! keys and the operator's policy. It knows nothing of HTTP or SQL: it talks to storage through
//! [`custodia_store::DataStore`] and [`custodia_store::KeyStore`], reads time from an injected
//! [`custodia_core::Clock`], and appends an audit entry for every write, read, deletion and key
//! event.
//!
//! - [`vault`]: [`Vault`], subjects and records, erasure, key rotation, audit verification;
//! - [`consent`]: the consent ledger and its receipts;
//! - [`requests`]: data-subject requests: receipt with the law's due dates, identity
//!   verification by one-time code, transitions, fulfilment of every kind;
//! - [`export`]: everything held about a subject as a zip archive with a manifest;
//! - [`disclosures`]: the disclosure log, hand-overs gated by the policy's sharing rules;
//! - [`outbox`]: erasure notices and verification codes sealed for delivery, retries with
//!   backoff, acknowledgements that let a waiting request finish;
//! - [`gate`]: subject facts, audited gate decisions, gated reads;
//! - [`api_keys`]: admin and purpose-bound service keys, stored hashed;
//! - [`cache`]: verified keys and gate facts in memory, invalidated by changes and by tailing
//!   the audit chain;
//! - [`keeper`]: [`Keeper`], the stores, keys and clock: epoch rotation, audit verification;
//! - [`keyring`]: the root and epoch keys in memory, wrapping and unwrapping data keys;
//! - [`media`]: media objects in object storage: streamed encrypted uploads, gated and ranged
//!   downloads, processing leases, deletion at completion and by the sweeper;
//! - [`oplog`]: operation logs (browsing and search history, device ids, IP addresses) stored
//!   de-identified: pseudonyms, network prefixes, coarsened times;
//! - [`retention`]: each record's expiry from the policy's rule, when it is written;
//! - [`published`]: the policy in force, its published history and fresh-consent cutoffs;
//! - [`receipt`]: consent receipts (ISO/IEC TS 27560 record, Kantara v1.1);
//! - [`profile`]: a subject's sealed profile (external id, jurisdiction, age, guardian);
//! - [`error`]: [`VaultError`] and its stable codes.

pub mod api_keys;
mod batcher;
pub mod cache;
pub mod consent;
pub mod disclosures;
pub mod error;
pub mod export;
pub mod gate;
pub mod keeper;
pub mod keyring;
pub mod media;
pub mod oplog;
pub mod outbox;
pub mod profile;
pub mod published;
pub mod receipt;
pub mod requests;
pub mod retention;
pub mod sweep;
pub mod vault;

pub use api_keys::IssuedKey;
pub use consent::{NewConsent, ReceiptFormat};
pub use disclosures::{NewDisclosure, RecipientKind};
pub use error::VaultError;
pub use export::{ExportCounts, ExportManifest, ExportedFile};
pub use gate::{Ask, Caller, Gated};
pub use keeper::Keeper;
pub use keyring::RootKeySource;
pub use media::{MediaDownload, MediaInfo, MediaRange, NewMedia, ProcessingReport};
pub use oplog::{DeidentifiedEntry, LoggedOperation, OperationLogEntry, TimePrecision};
pub use outbox::{DeliveryOutcome, NotificationState, NotificationStatus, OutgoingNotification};
pub use profile::{NewSubject, SubjectProfile};
pub use published::{PolicyState, Published};
pub use requests::{
    FulfilmentReport, RequestDetails, RequestQuery, RequestView, VerificationStatus,
};
pub use sweep::SweepReport;
pub use vault::{
    ErasureReport, NewRecord, Progress, RecordValue, RotationReport, Subject, Vault, WrittenRecord,
};
