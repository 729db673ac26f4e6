//! Data-subject requests (access, copy, erasure, ...) as pure domain logic: no storage, no HTTP,
//! no clock of its own (design invariant 5: every instant is passed in).
//!
//! - [`calendar`]: the official mainland China working-day calendar, embedded from
//!   `calendars/cn/*.json`, and US federal business days computed by rule (invariant 6: a year
//!   without published data is an error, never a weekends-only guess);
//! - [`deadline`]: due dates and due instants from a policy [`Deadline`](custodia_policy::Deadline)
//!   and the law, extensions with notice, and the urgency of a request in a queue;
//! - [`request`]: request kinds, the request state machine and its complete transition table;
//! - [`excessive`]: repeated or excessive requests (CCPA twice in 12 months, GDPR Art. 12(5)).
//!
//! Every error carries a stable, machine-readable `code()`.

pub mod calendar;
pub mod deadline;
pub mod excessive;
pub mod request;

pub use calendar::{BusinessDays, Calendar, CalendarError, us_federal_holidays};
pub use deadline::{DeadlineError, Deadlines, Due, Statute, Urgency, due, urgency};
pub use excessive::{ExcessiveFlag, ExcessiveRules, FlagKind, SubjectRequest, assess};
pub use request::{
    Action, RequestKind, RequestParseError, RequestState, TransitionError, offered, offered_in,
    transition,
};
