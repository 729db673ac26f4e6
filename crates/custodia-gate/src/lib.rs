//! The purpose gate (design invariant 2): every use of personal data names a purpose, and the
//! gate allows it only when the policy and the subject's consent ledger say it may happen.
//!
//! Pure domain logic, no storage and no clock of its own:
//! - [`index`]: [`GateIndex`], the policy compiled for fast lookups, with the policy versions
//!   whose material changes need fresh consent;
//! - [`facts`]: [`SubjectFacts`], what the gate needs to know about one subject (age, erasure,
//!   restriction, objections, the latest consent event per purpose), derived from its ledger;
//! - [`decision`]: [`decide`], the rules, returning a [`Decision`] with stable reason codes.

pub mod decision;
pub mod facts;
pub mod index;

pub use decision::{Caller, Decision, GateRequest, Reason, consent_denials, decide};
pub use facts::{ConsentFact, ConsentStatus, LedgerEntry, LedgerKind, SubjectFacts, age_on};
pub use index::GateIndex;
