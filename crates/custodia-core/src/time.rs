//! UTC instants with millisecond precision, and calendar arithmetic on them (adding months and
//! years lands on the same day of the month, clamped to the month's end, as laws count them).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An instant in UTC, as milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// A calendar unit for [`Timestamp::checked_add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
    /// Days of 24 hours (UTC has no daylight saving).
    Days,
    /// Weeks.
    Weeks,
    /// Calendar months.
    Months,
    /// Calendar years.
    Years,
}

/// A timestamp that cannot be computed or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The result falls outside the supported range (years -9999 to 9999).
    #[error("timestamp out of range")]
    OutOfRange,
    /// Text that is not an RFC 3339 instant.
    #[error("invalid timestamp {0:?}: expected RFC 3339, like 2026-02-10T09:00:00Z")]
    Invalid(String),
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    fn to_jiff(self) -> Result<jiff::Timestamp, TimestampError> {
        jiff::Timestamp::from_millisecond(self.0).map_err(|_| TimestampError::OutOfRange)
    }

    fn from_jiff(ts: jiff::Timestamp) -> Self {
        Self(ts.as_millisecond())
    }

    /// Parses RFC 3339 (`2026-02-10T09:00:00Z`) or a plain date (`2026-02-10`, midnight UTC).
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let invalid = || TimestampError::Invalid(text.to_owned());
        if let Ok(ts) = text.parse::<jiff::Timestamp>() {
            return Ok(Self::from_jiff(ts));
        }
        let date: jiff::civil::Date = text.parse().map_err(|_| invalid())?;
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| Self::from_jiff(z.timestamp()))
            .map_err(|_| invalid())
    }

    /// Adds `amount` units; months and years are calendar months and years in UTC.
    pub fn checked_add(self, amount: u32, unit: CalendarUnit) -> Result<Self, TimestampError> {
        let amount = i64::from(amount);
        let span = match unit {
            CalendarUnit::Seconds => jiff::Span::new().try_seconds(amount),
            CalendarUnit::Minutes => jiff::Span::new().try_minutes(amount),
            CalendarUnit::Hours => jiff::Span::new().try_hours(amount),
            CalendarUnit::Days => jiff::Span::new().try_hours(amount.saturating_mul(24)),
            CalendarUnit::Weeks => jiff::Span::new().try_hours(amount.saturating_mul(24 * 7)),
            CalendarUnit::Months => jiff::Span::new().try_months(amount),
            CalendarUnit::Years => jiff::Span::new().try_years(amount),
        }
        .map_err(|_| TimestampError::OutOfRange)?;
        let zoned = self.to_jiff()?.to_zoned(jiff::tz::TimeZone::UTC);
        zoned
            .checked_add(span)
            .map(|z| Self::from_jiff(z.timestamp()))
            .map_err(|_| TimestampError::OutOfRange)
    }

    /// Adds milliseconds, saturating.
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// The UTC calendar date, `YYYY-MM-DD`.
    pub fn date_string(self) -> String {
        self.to_jiff()
            .map(|ts| ts.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
            .unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_jiff() {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "@{}ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_calendar_months_clamped_to_the_month_end() {
        let jan31 = Timestamp::parse("2026-01-31").unwrap();
        let feb28 = jan31.checked_add(1, CalendarUnit::Months).unwrap();
        assert_eq!(feb28.date_string(), "2026-02-28");
        let leap = Timestamp::parse("2024-02-29").unwrap();
        assert_eq!(
            leap.checked_add(1, CalendarUnit::Years)
                .unwrap()
                .date_string(),
            "2025-02-28"
        );
        let ten_days = Timestamp::parse("2026-03-01T12:00:00Z").unwrap();
        assert_eq!(
            ten_days
                .checked_add(10, CalendarUnit::Days)
                .unwrap()
                .to_string(),
            "2026-03-11T12:00:00Z"
        );
    }

    #[test]
    fn refuses_out_of_range_and_garbage() {
        let far = Timestamp::parse("9999-12-01").unwrap();
        assert_eq!(
            far.checked_add(1, CalendarUnit::Years),
            Err(TimestampError::OutOfRange)
        );
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
