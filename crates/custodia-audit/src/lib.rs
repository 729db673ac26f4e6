//! Custodia's audit chain: an append-only, hash-chained record of every write, read, decision and
//! deletion, carrying pseudonymous ids only (design invariant 1).
//!
//! - [`event`]: [`AuditEvent`], what happened, and its [`EventKind`];
//! - [`canonical`]: the stable byte encoding of an event and the entry hash (format v1,
//!   documented there);
//! - [`entry`]: [`AuditEntry`], an event with its seq and links, as storage keeps it;
//! - [`chain`]: [`Chain`], the writer's head, which numbers and links new events;
//! - [`verify`](mod@verify): streaming verification that names the first broken entry;
//! - [`anchor`]: [`Anchor`], a `(seq, hash)` point an operator records outside the database.
//!
//! This crate is pure domain logic: it reads no clock (the caller passes each event's time),
//! touches no storage and does no I/O. Backends persist [`AuditEntry`] fields as given.
//!
//! # What the chain proves
//!
//! Each entry's hash covers its seq, the previous entry's hash and its event, so editing,
//! removing, inserting or reordering stored entries is found by [`verify()`], which names the
//! first bad seq. Two things a chain alone cannot show, because it carries no secret: a removed
//! tail (the shorter chain is valid) and a history rewritten by someone who recomputes every
//! later hash. Both are caught by recording the head ([`Chain::head`], [`VerifyReport::head`])
//! somewhere the database's writers cannot change, and later checking the chain against it with
//! [`verify_against_anchor`].

pub mod anchor;
pub mod canonical;
pub mod chain;
pub mod entry;
pub mod error;
pub mod event;
mod hex;
pub mod verify;

pub use anchor::Anchor;
pub use canonical::{DOMAIN_TAG, GENESIS_HASH, canonical_bytes, encode_event, entry_hash};
pub use chain::{Chain, MAX_SEQ};
pub use entry::AuditEntry;
pub use error::AuditError;
pub use event::{AuditEvent, EventKind};
pub use verify::{
    BreakKind, ChainBreak, Verifier, VerifyReport, verify, verify_against_anchor, verify_from,
};
