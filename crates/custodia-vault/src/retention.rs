//! Each record's expiry, known when it is written (invariant 3): the policy's retention rule for
//! the category gives a period and the event it counts from. A record whose event has not
//! happened yet (an account still open, an input not yet processed) has no expiry until it does.

use custodia_core::{CalendarUnit, Timestamp};
use custodia_policy::model::{Policy, RetentionRule, Trigger};
use custodia_policy::{DurationUnit, PolicyDuration};

use crate::error::VaultError;

/// The retention rule that governs a category, and its id.
#[derive(Debug, Clone, Copy)]
pub struct Governing<'a> {
    /// The rule's id (`retention[N]` when the file gives none).
    pub index: usize,
    /// The rule.
    pub rule: &'a RetentionRule,
}

impl Governing<'_> {
    /// The rule id recorded on records and in audit entries.
    pub fn id(&self) -> String {
        self.rule.id_or(self.index)
    }
}

/// The rule for `category`, if the policy has one.
pub fn rule_for<'a>(policy: &'a Policy, category: &str) -> Option<Governing<'a>> {
    policy
        .retention
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.categories.iter().any(|c| c.get_ref() == category))
        .map(|(index, rule)| Governing { index, rule })
}

/// `from + duration`, in calendar terms.
pub fn add(from: Timestamp, duration: &PolicyDuration) -> Option<Timestamp> {
    let unit = match duration.unit {
        DurationUnit::Seconds => CalendarUnit::Seconds,
        DurationUnit::Minutes => CalendarUnit::Minutes,
        DurationUnit::Hours => CalendarUnit::Hours,
        DurationUnit::Days => CalendarUnit::Days,
        DurationUnit::Weeks => CalendarUnit::Weeks,
        DurationUnit::Months => CalendarUnit::Months,
        DurationUnit::Years => CalendarUnit::Years,
    };
    from.checked_add(duration.amount, unit).ok()
}

/// What a subject's lifecycle looks like when a record is written.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    /// When the record is collected (now).
    pub now: Timestamp,
    /// When the subject's account was closed, if it was.
    pub closed_at: Option<Timestamp>,
    /// The subject's last activity.
    pub last_active_at: Timestamp,
}

/// The expiry of a record written now under `governing`: `None` while the trigger has not
/// happened.
pub fn expiry_at_write(
    governing: &Governing<'_>,
    lifecycle: &Lifecycle,
) -> Result<Option<Timestamp>, VaultError> {
    let keep = governing.rule.keep.get_ref();
    let from = match governing.rule.after {
        Trigger::Collected => Some(lifecycle.now),
        // Activity moves the expiry on; writing a record is activity.
        Trigger::LastActive => Some(lifecycle.now.max(lifecycle.last_active_at)),
        Trigger::AccountClosed => lifecycle.closed_at,
        Trigger::Processed | Trigger::ConsentWithdrawn => None,
    };
    from.map(|from| {
        add(from, keep).ok_or_else(|| VaultError::Expiry {
            rule: governing.id(),
        })
    })
    .transpose()
}
