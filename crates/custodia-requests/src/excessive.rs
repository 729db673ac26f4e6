//! Repeated and excessive requests: whether a new request may be charged for or refused because
//! of the subject's earlier ones. The engine only flags; the operator decides.
//!
//! - **CCPA**: a business is not obliged to provide the personal information (the right to know:
//!   access, copy, portability) to the same consumer more than twice in a 12-month period (Cal.
//!   Civ. Code § 1798.130(b); § 1798.100(d)). The third access-like request within a rolling 12
//!   months is flagged `ccpa.more_than_two_in_12_months`: it may be charged for or refused
//!   without further reason. Other kinds (deletion, correction, ...) are not counted.
//! - **GDPR**: where requests are manifestly unfounded or excessive, "in particular because of
//!   their repetitive character", the controller may charge a reasonable fee or refuse, and
//!   bears the burden of demonstrating it (Art. 12(5); further copies, Art. 15(3)). A request of
//!   the same kind as one received within the window (30 days by default) is flagged
//!   `gdpr.repeated_request` with `needs_reason = true`: charging or refusing needs a recorded
//!   reason. Withdrawing consent is never flagged: it must be as easy as giving it (Art. 7(3)).
//! - **PIPL** (and COPPA): no such rule; nothing is flagged.
//!
//! **Windows.** An earlier request counts when it was received at or before the new one and
//! strictly less than the window before it, measured in UTC: a request exactly 12 months (or
//! exactly 30 days) earlier has left the window.

use custodia_core::{CalendarUnit, Timestamp};
use custodia_policy::model::Law;

use crate::request::RequestKind;

/// The default GDPR window for repeated requests of the same kind.
pub const GDPR_DEFAULT_WINDOW_DAYS: u32 = 30;

/// The CCPA's rolling period.
pub const CCPA_WINDOW_MONTHS: u32 = 12;

/// How many access-like requests the CCPA obliges a business to answer in the period.
pub const CCPA_FREE_ACCESS_REQUESTS: u32 = 2;

/// One request of a subject: its kind and when it was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectRequest {
    /// What was asked.
    pub kind: RequestKind,
    /// When it was received.
    pub received_at: Timestamp,
}

/// Tunable parts of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExcessiveRules {
    /// The GDPR window for repeated requests of the same kind, in days.
    pub gdpr_window_days: u32,
}

impl Default for ExcessiveRules {
    fn default() -> Self {
        Self {
            gdpr_window_days: GDPR_DEFAULT_WINDOW_DAYS,
        }
    }
}

/// Which rule flagged a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagKind {
    /// More than two access-like requests in a rolling 12 months (CCPA).
    CcpaMoreThanTwoIn12Months,
    /// A repeated request of the same kind within the window (GDPR): possibly manifestly
    /// excessive.
    GdprRepeatedRequest,
}

impl FlagKind {
    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::CcpaMoreThanTwoIn12Months => "ccpa.more_than_two_in_12_months",
            Self::GdprRepeatedRequest => "gdpr.repeated_request",
        }
    }

    /// Where the law says it.
    pub fn article(self) -> &'static str {
        match self {
            Self::CcpaMoreThanTwoIn12Months => "Cal. Civ. Code § 1798.130(b), § 1798.100(d)",
            Self::GdprRepeatedRequest => "GDPR Art. 12(5), Art. 15(3)",
        }
    }
}

/// A request flagged as repeated or excessive. It may be charged for or refused; when
/// [`needs_reason`](Self::needs_reason) is set, only with a recorded reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExcessiveFlag {
    /// The rule.
    pub kind: FlagKind,
    /// How many earlier requests the rule counted in its window.
    pub prior_in_window: u32,
    /// Whether charging or refusing needs a recorded reason (the controller bears the burden).
    pub needs_reason: bool,
}

impl ExcessiveFlag {
    /// The stable machine-readable code of the rule.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

/// Whether `current` is flagged under `law`, given the subject's `previous` requests (which
/// should not include `current` itself).
pub fn assess(
    law: Law,
    previous: &[SubjectRequest],
    current: &SubjectRequest,
    rules: ExcessiveRules,
) -> Option<ExcessiveFlag> {
    match law {
        Law::Ccpa => {
            if !current.kind.is_access_like() {
                return None;
            }
            let prior = count_in_window(
                previous,
                current,
                CCPA_WINDOW_MONTHS,
                CalendarUnit::Months,
                |k| k.is_access_like(),
            );
            (prior >= CCPA_FREE_ACCESS_REQUESTS).then_some(ExcessiveFlag {
                kind: FlagKind::CcpaMoreThanTwoIn12Months,
                prior_in_window: prior,
                needs_reason: false,
            })
        }
        Law::Gdpr => {
            if current.kind == RequestKind::ConsentWithdrawal {
                return None;
            }
            let prior = count_in_window(
                previous,
                current,
                rules.gdpr_window_days,
                CalendarUnit::Days,
                |k| k == current.kind,
            );
            (prior >= 1).then_some(ExcessiveFlag {
                kind: FlagKind::GdprRepeatedRequest,
                prior_in_window: prior,
                needs_reason: true,
            })
        }
        Law::Pipl | Law::Coppa => None,
    }
}

/// The earlier requests of a counted kind received at or before `current` and less than
/// `amount` `unit`s before it.
fn count_in_window(
    previous: &[SubjectRequest],
    current: &SubjectRequest,
    amount: u32,
    unit: CalendarUnit,
    counted: impl Fn(RequestKind) -> bool,
) -> u32 {
    let in_window = |earlier: &SubjectRequest| {
        earlier.received_at <= current.received_at
            && match earlier.received_at.checked_add(amount, unit) {
                Ok(window_end) => window_end > current.received_at,
                // A window ending past the year 9999 still contains `current`.
                Err(_) => true,
            }
    };
    let n = previous
        .iter()
        .filter(|earlier| counted(earlier.kind) && in_window(earlier))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: RequestKind, at: &str) -> SubjectRequest {
        SubjectRequest {
            kind,
            received_at: Timestamp::parse(at).unwrap(),
        }
    }

    fn assess_default(
        law: Law,
        previous: &[SubjectRequest],
        current: SubjectRequest,
    ) -> Option<ExcessiveFlag> {
        assess(law, previous, &current, ExcessiveRules::default())
    }

    #[test]
    fn ccpa_third_access_request_in_12_months_is_flagged() {
        let previous = [
            req(RequestKind::Access, "2025-03-01T00:00:00Z"),
            req(RequestKind::Portability, "2025-09-01T00:00:00Z"),
            req(RequestKind::Erasure, "2025-10-01T00:00:00Z"),
        ];
        // One millisecond less than 12 months after the first: both earlier ones count.
        let flag = assess_default(
            Law::Ccpa,
            &previous,
            req(RequestKind::Copy, "2026-02-28T23:59:59.999Z"),
        )
        .unwrap();
        assert_eq!(flag.code(), "ccpa.more_than_two_in_12_months");
        assert_eq!(flag.prior_in_window, 2);
        assert!(!flag.needs_reason);
        assert_eq!(
            flag.kind.article(),
            "Cal. Civ. Code § 1798.130(b), § 1798.100(d)"
        );
        // Exactly 12 months after the first: it has left the window.
        assert_eq!(
            assess_default(
                Law::Ccpa,
                &previous,
                req(RequestKind::Access, "2026-03-01T00:00:00Z")
            ),
            None
        );
        // The second access request is free.
        assert_eq!(
            assess_default(
                Law::Ccpa,
                &previous[..1],
                req(RequestKind::Access, "2025-04-01T00:00:00Z")
            ),
            None
        );
        // Non-access kinds are not counted, nor flagged.
        assert_eq!(
            assess_default(
                Law::Ccpa,
                &previous,
                req(RequestKind::Erasure, "2025-10-02T00:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn ccpa_ignores_requests_after_the_current_one() {
        let previous = [
            req(RequestKind::Access, "2025-03-01T00:00:00Z"),
            req(RequestKind::Access, "2025-05-01T00:00:00Z"),
        ];
        assert_eq!(
            assess_default(
                Law::Ccpa,
                &previous,
                req(RequestKind::Access, "2025-04-01T00:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn gdpr_repeated_same_kind_within_the_window_needs_a_reason() {
        let previous = [req(RequestKind::Access, "2026-01-01T12:00:00Z")];
        let flag = assess_default(
            Law::Gdpr,
            &previous,
            req(RequestKind::Access, "2026-01-31T11:59:59.999Z"),
        )
        .unwrap();
        assert_eq!(flag.code(), "gdpr.repeated_request");
        assert!(flag.needs_reason);
        assert_eq!(flag.prior_in_window, 1);
        // Exactly 30 days later: outside.
        assert_eq!(
            assess_default(
                Law::Gdpr,
                &previous,
                req(RequestKind::Access, "2026-01-31T12:00:00Z")
            ),
            None
        );
        // Another kind is not a repetition.
        assert_eq!(
            assess_default(
                Law::Gdpr,
                &previous,
                req(RequestKind::Erasure, "2026-01-02T00:00:00Z")
            ),
            None
        );
        // A wider window, set by the operator.
        let wide = ExcessiveRules {
            gdpr_window_days: 90,
        };
        assert!(
            assess(
                Law::Gdpr,
                &previous,
                &req(RequestKind::Access, "2026-03-01T00:00:00Z"),
                wide
            )
            .is_some()
        );
        // Consent withdrawals are never flagged.
        let withdrawals = [req(RequestKind::ConsentWithdrawal, "2026-01-01T00:00:00Z")];
        assert_eq!(
            assess_default(
                Law::Gdpr,
                &withdrawals,
                req(RequestKind::ConsentWithdrawal, "2026-01-01T00:01:00Z")
            ),
            None
        );
    }

    #[test]
    fn pipl_and_coppa_never_flag() {
        let previous = [
            req(RequestKind::Access, "2026-01-01T00:00:00Z"),
            req(RequestKind::Access, "2026-01-02T00:00:00Z"),
            req(RequestKind::Access, "2026-01-03T00:00:00Z"),
        ];
        for law in [Law::Pipl, Law::Coppa] {
            assert_eq!(
                assess_default(
                    law,
                    &previous,
                    req(RequestKind::Access, "2026-01-04T00:00:00Z")
                ),
                None
            );
        }
    }
}
