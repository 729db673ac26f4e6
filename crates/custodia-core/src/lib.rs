//! Primitives every Custodia layer shares and no layer owns: [`Timestamp`], the injected
//! [`Clock`] (invariant 5: time is injected, tests move a clock and never sleep), and the opaque
//! identifiers of subjects, records and keys.

pub mod clock;
pub mod id;
pub mod time;

pub use clock::{Clock, ManualClock, SystemClock};
pub use id::{
    ApiKeyId, ConsentId, DisclosureId, HoldId, Id, IdError, KeyId, LeaseId, MediaId,
    NotificationId, RecordId, RequestId, SubjectId,
};
pub use time::{CalendarUnit, Timestamp, TimestampError};
