//! When a request is due: from the policy's promised deadline, the law's own limits and the
//! instant the request was received.
//!
//! **Which day.** The receipt instant is turned into a civil date in the deadline's time zone,
//! and the days are counted from that date (the day of receipt itself never counts):
//! - `{ working_days = n, calendar = "CN" }`: China Standard Time, UTC+08:00 fixed (China has
//!   no daylight saving time), on the official calendar ([`Calendar`]);
//! - every other kind (business days, calendar days, months): UTC. The operator's own zone is not
//!   known here; UTC is a documented, deterministic choice, at most one civil day away from the
//!   subject's. US business days follow [`BusinessDays`].
//!
//! **Which instant.** A request is due at the *end* of its due day in that zone, 23:59:59.999
//! local ([`Due::at`]); it is overdue from the next millisecond.
//!
//! **Months** follow GDPR Art. 12(3) as the EU counts periods (Regulation 1182/71 Art. 3(2)(c)):
//! one month after receipt is the same day of the month in the next month, clamped to the month's
//! end (received January 31, due February 28, or 29 in a leap year). The rule of Art. 3(4) of
//! that Regulation that moves an end falling on a weekend or holiday to the next working day is
//! not applied: the due date is never later than the law's, only possibly earlier.
//!
//! **Per law** ([`Deadlines::compute`]):
//! - GDPR: answer within one month (Art. 12(3)); may be extended by up to two further months,
//!   with a notice to the subject within the first month, that is before the original due date;
//! - CCPA: confirm receipt within 10 business days and answer within 45 calendar days (Cal. Civ.
//!   Code § 1798.130(a)(2), CCPA Regulations § 7021(a)); one extension of up to 45 further days
//!   with a notice before the original due date;
//! - PIPL and COPPA: the law sets no number (PIPL Art. 50 says "promptly"), so the policy's
//!   `respond_within` is the deadline (for example 15 working days on the CN calendar), with no
//!   statutory extension.
//!
//! Where the law sets a limit, the request is due at the earlier of the policy's promise and the
//! law's limit: a policy may promise less time than the law allows, never more.

use custodia_core::Timestamp;
use custodia_policy::Deadline;
use custodia_policy::model::Law;
use jiff::Span;
use jiff::civil::Date;
use jiff::tz::Offset;

use crate::calendar::{BusinessDays, Calendar, CalendarError};

const DAY_MS: i64 = 86_400_000;

/// Why a deadline could not be computed or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    /// The working-day calendar could not answer (unknown calendar, unpublished year).
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    /// The receipt instant or the due date is outside the supported range.
    #[error("deadline out of the supported range")]
    OutOfRange,
    /// The law provides no extension of the deadline.
    #[error("{law} provides no extension of the response deadline")]
    NotExtendable {
        /// The law, for example `PIPL`.
        law: &'static str,
    },
    /// The extension notice comes after the original due date.
    #[error(
        "too late to extend: the request was due at {original_due}, the extension notice is sent at {now}"
    )]
    ExtensionTooLate {
        /// When the request was originally due.
        original_due: Timestamp,
        /// When the extension was asked for.
        now: Timestamp,
    },
    /// The extension goes beyond what the law allows.
    #[error("an extension of {requested} is longer than the {max} the law allows")]
    ExtensionTooLong {
        /// The extension asked for.
        requested: Deadline,
        /// The longest extension the law allows.
        max: Deadline,
    },
}

impl DeadlineError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Calendar(inner) => inner.code(),
            Self::OutOfRange => "deadline.out_of_range",
            Self::NotExtendable { .. } => "deadline.not_extendable",
            Self::ExtensionTooLate { .. } => "deadline.extension_too_late",
            Self::ExtensionTooLong { .. } => "deadline.extension_too_long",
        }
    }
}

/// A due date: the civil day in the deadline's zone, and the last instant of that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The due day, in the zone of [`Due::offset`].
    pub date: Date,
    /// The end of the due day, 23:59:59.999 local: the last instant the answer is on time.
    pub at: Timestamp,
    /// The fixed UTC offset the day is counted in (+08:00 for the CN calendar, UTC otherwise).
    pub offset: Offset,
}

impl Due {
    /// The end of `date` in `offset`.
    pub fn end_of(date: Date, offset: Offset) -> Result<Self, DeadlineError> {
        let last = date.at(23, 59, 59, 999_000_000);
        let at = offset
            .to_timestamp(last)
            .map_err(|_| DeadlineError::OutOfRange)?;
        Ok(Self {
            date,
            at: Timestamp::from_millis(at.as_millisecond()),
            offset,
        })
    }

    /// Whether the answer is late at `now`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        now > self.at
    }
}

/// The civil time zone in which `deadline` counts its days.
pub fn offset_of(deadline: &Deadline) -> Result<Offset, DeadlineError> {
    Ok(match deadline {
        Deadline::WorkingDays { calendar, .. } => Calendar::named(calendar)?.offset(),
        Deadline::BusinessDays { .. } => BusinessDays::us_federal().offset(),
        Deadline::Days { .. } | Deadline::Months { .. } => Offset::UTC,
    })
}

/// The civil date of `instant` at `offset`.
pub fn civil_date(instant: Timestamp, offset: Offset) -> Result<Date, DeadlineError> {
    let ts = jiff::Timestamp::from_millisecond(instant.as_millis())
        .map_err(|_| DeadlineError::OutOfRange)?;
    Ok(offset.to_datetime(ts).date())
}

/// The due date `deadline` gives when counted from the civil date `from` (which itself never
/// counts).
pub fn due_date_after(deadline: &Deadline, from: Date) -> Result<Date, DeadlineError> {
    match deadline {
        Deadline::WorkingDays {
            working_days,
            calendar,
        } => Ok(Calendar::named(calendar)?.add_working_days(from, *working_days)?),
        Deadline::BusinessDays { business_days } => {
            Ok(BusinessDays::us_federal().add_business_days(from, *business_days)?)
        }
        Deadline::Days { days } => add_span(from, Span::new().try_days(i64::from(*days))),
        Deadline::Months { months } => add_span(from, Span::new().try_months(i64::from(*months))),
    }
}

/// `from` plus a span; months clamp to the month's end (jiff's date arithmetic does).
fn add_span(from: Date, span: Result<Span, jiff::Error>) -> Result<Date, DeadlineError> {
    span.and_then(|span| from.checked_add(span))
        .map_err(|_| DeadlineError::OutOfRange)
}

/// When a request received at `received_at` is due under `deadline` alone (no law's limit).
pub fn due(deadline: &Deadline, received_at: Timestamp) -> Result<Due, DeadlineError> {
    let offset = offset_of(deadline)?;
    let received = civil_date(received_at, offset)?;
    Due::end_of(due_date_after(deadline, received)?, offset)
}

/// What a law itself says about response deadlines (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statute {
    /// The law's own limit for the answer, if it sets one.
    pub respond_within: Option<Deadline>,
    /// The law's limit for confirming receipt, if it requires a confirmation.
    pub acknowledge_within: Option<Deadline>,
    /// The longest extension the law allows, with a notice before the original due date.
    pub max_extension: Option<Deadline>,
    /// Where the law says it.
    pub article: &'static str,
}

impl Statute {
    /// The rules of `law`.
    pub fn of(law: Law) -> Self {
        match law {
            Law::Gdpr => Self {
                respond_within: Some(Deadline::Months { months: 1 }),
                acknowledge_within: None,
                max_extension: Some(Deadline::Months { months: 2 }),
                article: "GDPR Art. 12(3)",
            },
            Law::Ccpa => Self {
                respond_within: Some(Deadline::Days { days: 45 }),
                acknowledge_within: Some(Deadline::BusinessDays { business_days: 10 }),
                max_extension: Some(Deadline::Days { days: 45 }),
                article: "Cal. Civ. Code § 1798.130(a)(2); CCPA Regulations § 7021",
            },
            Law::Pipl => Self {
                respond_within: None,
                acknowledge_within: None,
                max_extension: None,
                article: "PIPL Art. 50",
            },
            Law::Coppa => Self {
                respond_within: None,
                acknowledge_within: None,
                max_extension: None,
                article: "16 CFR § 312.6",
            },
        }
    }
}

/// Every due date of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    /// The law the request is handled under.
    pub law: Law,
    /// When the request was received.
    pub received_at: Timestamp,
    /// When receipt must be confirmed, where the law requires it (CCPA: 10 business days).
    pub acknowledge_by: Option<Due>,
    /// When the answer is due without an extension: the earlier of the policy's promise and the
    /// law's limit.
    pub respond_by: Due,
    /// The longest extension the law allows (GDPR: 2 months, CCPA: 45 days), if any.
    pub max_extension: Option<Deadline>,
}

impl Deadlines {
    /// The due dates of a request received at `received_at` under `law`, whose policy promises
    /// an answer within `respond_within`.
    ///
    /// The policy's promise must be computable even where the law's own limit is: a CN
    /// working-day promise reaching an unpublished year is
    /// [`CalendarError::YearNotPublished`] (design invariant 6), whatever the law.
    pub fn compute(
        law: Law,
        respond_within: &Deadline,
        received_at: Timestamp,
    ) -> Result<Self, DeadlineError> {
        let statute = Statute::of(law);
        let promised = due(respond_within, received_at)?;
        let respond_by = match &statute.respond_within {
            Some(limit) => {
                let limit = due(limit, received_at)?;
                if limit.at < promised.at {
                    limit
                } else {
                    promised
                }
            }
            None => promised,
        };
        let acknowledge_by = statute
            .acknowledge_within
            .as_ref()
            .map(|within| due(within, received_at))
            .transpose()?;
        Ok(Self {
            law,
            received_at,
            acknowledge_by,
            respond_by,
            max_extension: statute.max_extension,
        })
    }

    /// The latest the answer can be due after the longest extension the law allows.
    pub fn latest_extended_due(&self) -> Result<Option<Due>, DeadlineError> {
        self.max_extension
            .as_ref()
            .map(|max| self.extended_due(max))
            .transpose()
    }

    /// Extends the deadline by `by`, with the notice sent at `now`; returns the new due date.
    ///
    /// The extension is added to the law's own period from receipt (GDPR: one month and `by`
    /// months, so January 31 + 1 + 2 months is April 30; CCPA: 45 and `by` days); an extension
    /// of another kind (for example `{ days = 30 }` under the GDPR) is counted from the law's
    /// original due date. Errors: [`DeadlineError::NotExtendable`] when the law has no
    /// extension, [`DeadlineError::ExtensionTooLate`] when `now` is after
    /// [`Deadlines::respond_by`], [`DeadlineError::ExtensionTooLong`] when the new due date is
    /// later than the longest extension allows.
    pub fn extend(&self, by: &Deadline, now: Timestamp) -> Result<Due, DeadlineError> {
        let Some(max) = &self.max_extension else {
            return Err(DeadlineError::NotExtendable {
                law: self.law.name(),
            });
        };
        if now > self.respond_by.at {
            return Err(DeadlineError::ExtensionTooLate {
                original_due: self.respond_by.at,
                now,
            });
        }
        let extended = self.extended_due(by)?;
        if extended.at > self.extended_due(max)?.at {
            return Err(DeadlineError::ExtensionTooLong {
                requested: by.clone(),
                max: max.clone(),
            });
        }
        Ok(extended)
    }

    fn extended_due(&self, by: &Deadline) -> Result<Due, DeadlineError> {
        let base = Statute::of(self.law)
            .respond_within
            .ok_or(DeadlineError::NotExtendable {
                law: self.law.name(),
            })?;
        let offset = offset_of(&base)?;
        let received = civil_date(self.received_at, offset)?;
        let date = match (&base, by) {
            (Deadline::Months { months: a }, Deadline::Months { months: b }) => {
                due_date_after(&Deadline::Months { months: a + b }, received)?
            }
            (Deadline::Days { days: a }, Deadline::Days { days: b }) => {
                due_date_after(&Deadline::Days { days: a + b }, received)?
            }
            _ => due_date_after(by, due_date_after(&base, received)?)?,
        };
        Due::end_of(date, offset)
    }
}

/// How pressing a request is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Urgency {
    /// Past its due instant.
    Overdue,
    /// Due within the window: the number of whole civil days left (0 = due today).
    DueWithin(u32),
    /// Due later than the window.
    OnTrack,
}

impl Urgency {
    /// The stable machine-readable name: `overdue`, `due_soon`, `on_track`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overdue => "overdue",
            Self::DueWithin(_) => "due_soon",
            Self::OnTrack => "on_track",
        }
    }
}

/// The urgency at `now` of a request due at `due`, with "due soon" meaning at most
/// `window_days` civil days left (counted in the due date's zone: due today is 0 days left).
pub fn urgency(due: &Due, now: Timestamp, window_days: u32) -> Urgency {
    if due.is_overdue(now) {
        return Urgency::Overdue;
    }
    // `due.at` is the last millisecond of a civil day in a fixed offset, so whole 24-hour periods
    // left are exactly the civil days between today and the due date.
    let left = due.at.as_millis().saturating_sub(now.as_millis()) / DAY_MS;
    match u32::try_from(left) {
        Ok(days) if days <= window_days => Urgency::DueWithin(days),
        _ => Urgency::OnTrack,
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn cn(n: u32) -> Deadline {
        Deadline::WorkingDays {
            working_days: n,
            calendar: "CN".into(),
        }
    }

    #[test]
    fn working_days_count_in_china_time_and_end_at_local_midnight() {
        // 2026-02-10T17:00Z is 2026-02-11 01:00 in Beijing: counting starts from the 11th.
        let d = due(&cn(15), at("2026-02-10T15:00:00Z")).unwrap();
        assert_eq!(d.date, date(2026, 3, 9));
        assert_eq!(d.at, at("2026-03-09T15:59:59.999Z"));
        assert_eq!(d.offset, Offset::constant(8));
        let later = due(&cn(15), at("2026-02-10T17:00:00Z")).unwrap();
        assert_eq!(later.date, date(2026, 3, 10));
    }

    #[test]
    fn a_deadline_reaching_an_unpublished_year_is_an_error() {
        let err = due(&cn(15), at("2026-12-20T02:00:00Z")).unwrap_err();
        assert_eq!(err.code(), "calendar.year_not_published");
        let err = due(
            &Deadline::WorkingDays {
                working_days: 1,
                calendar: "XX".into(),
            },
            at("2026-02-10T00:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "calendar.unknown");
    }

    #[test]
    fn gdpr_month_clamps_to_the_month_end_and_knows_leap_years() {
        let month = Deadline::Months { months: 1 };
        for (received, expected) in [
            ("2026-01-31T10:00:00Z", date(2026, 2, 28)),
            ("2024-01-31T10:00:00Z", date(2024, 2, 29)),
            ("2024-01-29T10:00:00Z", date(2024, 2, 29)),
            ("2026-01-15T10:00:00Z", date(2026, 2, 15)),
            ("2026-03-31T23:59:59Z", date(2026, 4, 30)),
            ("2026-12-31T00:00:00Z", date(2027, 1, 31)),
        ] {
            let d = due(&month, at(received)).unwrap();
            assert_eq!(d.date, expected, "{received}");
            assert_eq!(d.offset, Offset::UTC);
        }
        let d = Deadlines::compute(Law::Gdpr, &month, at("2026-01-31T10:00:00Z")).unwrap();
        assert_eq!(d.respond_by.at, at("2026-02-28T23:59:59.999Z"));
        assert_eq!(d.acknowledge_by, None);
        assert_eq!(d.max_extension, Some(Deadline::Months { months: 2 }));
        // Extended from the receipt date: January 31 + 3 months.
        assert_eq!(
            d.latest_extended_due().unwrap().unwrap().date,
            date(2026, 4, 30)
        );
    }

    #[test]
    fn the_earlier_of_the_promise_and_the_law_wins() {
        let received = at("2026-02-10T01:00:00Z");
        // GDPR with a 15 working-day promise: the promise (March 9) is earlier than a month.
        let d = Deadlines::compute(Law::Gdpr, &cn(15), received).unwrap();
        assert_eq!(d.respond_by.date, date(2026, 3, 9));
        // A (mis-checked) 60-day promise is cut to the law's month.
        let d = Deadlines::compute(Law::Gdpr, &Deadline::Days { days: 60 }, received).unwrap();
        assert_eq!(d.respond_by.date, date(2026, 3, 10));
        // PIPL: the policy's promise.
        let d = Deadlines::compute(Law::Pipl, &cn(15), received).unwrap();
        assert_eq!(d.respond_by.date, date(2026, 3, 9));
        assert_eq!(d.max_extension, None);
        assert_eq!(d.acknowledge_by, None);
    }

    #[test]
    fn gdpr_extension_before_and_after_the_original_due_date() {
        let received = at("2026-01-31T10:00:00Z");
        let d = Deadlines::compute(Law::Gdpr, &Deadline::Months { months: 1 }, received).unwrap();
        let two = Deadline::Months { months: 2 };
        // On the last millisecond of the due day: still in time.
        let extended = d.extend(&two, at("2026-02-28T23:59:59.999Z")).unwrap();
        assert_eq!(extended.date, date(2026, 4, 30));
        let one = d
            .extend(&Deadline::Months { months: 1 }, at("2026-02-01T00:00:00Z"))
            .unwrap();
        assert_eq!(one.date, date(2026, 3, 31));
        // Other units count from the original statutory due date.
        let thirty = d
            .extend(&Deadline::Days { days: 30 }, at("2026-02-01T00:00:00Z"))
            .unwrap();
        assert_eq!(thirty.date, date(2026, 3, 30));
        // One millisecond late.
        let err = d.extend(&two, at("2026-03-01T00:00:00Z")).unwrap_err();
        assert_eq!(err.code(), "deadline.extension_too_late");
        assert_eq!(
            err,
            DeadlineError::ExtensionTooLate {
                original_due: at("2026-02-28T23:59:59.999Z"),
                now: at("2026-03-01T00:00:00Z"),
            }
        );
        // Longer than two further months.
        for too_long in [Deadline::Months { months: 3 }, Deadline::Days { days: 62 }] {
            let err = d.extend(&too_long, at("2026-02-01T00:00:00Z")).unwrap_err();
            assert_eq!(err.code(), "deadline.extension_too_long", "{too_long}");
        }
        // 61 days from February 28 is April 30: exactly the limit.
        assert!(
            d.extend(&Deadline::Days { days: 61 }, at("2026-02-01T00:00:00Z"))
                .is_ok()
        );
    }

    #[test]
    fn ccpa_acknowledge_answer_and_extend() {
        // Received Monday 2025-11-24 (UTC).
        let received = at("2025-11-24T18:00:00Z");
        let d = Deadlines::compute(Law::Ccpa, &Deadline::Days { days: 45 }, received).unwrap();
        // 10 business days, skipping Thanksgiving.
        assert_eq!(d.acknowledge_by.unwrap().date, date(2025, 12, 9));
        assert_eq!(d.respond_by.date, date(2026, 1, 8));
        assert_eq!(d.respond_by.at, at("2026-01-08T23:59:59.999Z"));
        assert_eq!(d.max_extension, Some(Deadline::Days { days: 45 }));
        let extended = d
            .extend(&Deadline::Days { days: 45 }, at("2026-01-08T12:00:00Z"))
            .unwrap();
        assert_eq!(extended.date, date(2026, 2, 22));
        assert_eq!(
            d.extend(&Deadline::Days { days: 46 }, at("2026-01-08T12:00:00Z"))
                .unwrap_err()
                .code(),
            "deadline.extension_too_long"
        );
        assert_eq!(
            d.extend(&Deadline::Days { days: 10 }, at("2026-01-09T00:00:00Z"))
                .unwrap_err()
                .code(),
            "deadline.extension_too_late"
        );
    }

    #[test]
    fn pipl_has_no_statutory_extension() {
        let d = Deadlines::compute(Law::Pipl, &cn(15), at("2026-02-10T01:00:00Z")).unwrap();
        let err = d.extend(&cn(5), at("2026-02-11T00:00:00Z")).unwrap_err();
        assert_eq!(err, DeadlineError::NotExtendable { law: "PIPL" });
        assert_eq!(err.code(), "deadline.not_extendable");
        assert_eq!(d.latest_extended_due().unwrap(), None);
    }

    #[test]
    fn urgency_in_the_queue() {
        let d = due(&cn(15), at("2026-02-10T01:00:00Z")).unwrap(); // due 2026-03-09 (+08:00)
        // 2026-03-09 10:00 Beijing: due today.
        assert_eq!(
            urgency(&d, at("2026-03-09T02:00:00Z"), 3),
            Urgency::DueWithin(0)
        );
        // 2026-03-06 00:00 Beijing: three days left.
        assert_eq!(
            urgency(&d, at("2026-03-05T16:00:00Z"), 3),
            Urgency::DueWithin(3)
        );
        // 2026-03-05 23:59:59.999 Beijing: four days left.
        assert_eq!(
            urgency(&d, at("2026-03-05T15:59:59.999Z"), 3),
            Urgency::OnTrack
        );
        assert_eq!(urgency(&d, d.at, 3), Urgency::DueWithin(0));
        assert_eq!(urgency(&d, d.at.plus_millis(1), 3), Urgency::Overdue);
        assert_eq!(Urgency::Overdue.as_str(), "overdue");
        assert_eq!(Urgency::DueWithin(2).as_str(), "due_soon");
        assert_eq!(Urgency::OnTrack.as_str(), "on_track");
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let err = due(
            &Deadline::Months { months: 1 },
            Timestamp::from_millis(i64::MAX),
        )
        .unwrap_err();
        assert_eq!(err.code(), "deadline.out_of_range");
        let err = due(
            &Deadline::Days { days: u32::MAX },
            at("2026-01-01T00:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "deadline.out_of_range");
    }
}
