//! Policy durations (`0s`, `12h`, `10d`, `2w`, `6mo`, `3y`) and response deadlines
//! (`{ working_days = 15, calendar = "CN" }`, `{ days = 30 }`, `{ months = 1 }`).
//!
//! Months and years are calendar units, not a fixed number of seconds: "kept 6 months" ends on the
//! same day of the month six months later, whatever the month lengths. Comparing durations of
//! different units (for lint rules such as "at least six months") therefore uses day *bounds*.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unit of a [`PolicyDuration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DurationUnit {
    /// `s`
    Seconds,
    /// `min`
    Minutes,
    /// `h`
    Hours,
    /// `d`
    Days,
    /// `w`
    Weeks,
    /// `mo`, a calendar month.
    Months,
    /// `y`, a calendar year.
    Years,
}

impl DurationUnit {
    fn suffix(self) -> &'static str {
        match self {
            Self::Seconds => "s",
            Self::Minutes => "min",
            Self::Hours => "h",
            Self::Days => "d",
            Self::Weeks => "w",
            Self::Months => "mo",
            Self::Years => "y",
        }
    }

    fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Seconds => ("second", "seconds"),
            Self::Minutes => ("minute", "minutes"),
            Self::Hours => ("hour", "hours"),
            Self::Days => ("day", "days"),
            Self::Weeks => ("week", "weeks"),
            Self::Months => ("month", "months"),
            Self::Years => ("year", "years"),
        }
    }
}

/// A length of time written in a policy file, such as `10d` or `6mo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyDuration {
    /// How many units.
    pub amount: u32,
    /// Which unit.
    pub unit: DurationUnit,
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: expected a whole number followed by s, min, h, d, w, mo or y (for example 10d, 6mo, 3y)"
)]
pub struct DurationParseError {
    /// The text that was refused.
    pub input: String,
}

impl PolicyDuration {
    /// The zero duration: "immediately".
    pub const ZERO: Self = Self {
        amount: 0,
        unit: DurationUnit::Seconds,
    };

    /// A duration of `amount` days.
    pub const fn days(amount: u32) -> Self {
        Self {
            amount,
            unit: DurationUnit::Days,
        }
    }

    /// A duration of `amount` calendar months.
    pub const fn months(amount: u32) -> Self {
        Self {
            amount,
            unit: DurationUnit::Months,
        }
    }

    /// Whether this is zero of any unit.
    pub fn is_zero(&self) -> bool {
        self.amount == 0
    }

    /// The shortest and longest this duration can be, in seconds, over all start dates
    /// (calendar months and years vary in length).
    pub fn bounds_seconds(&self) -> (u64, u64) {
        const DAY: u64 = 86_400;
        let n = u64::from(self.amount);
        match self.unit {
            DurationUnit::Seconds => (n, n),
            DurationUnit::Minutes => (n * 60, n * 60),
            DurationUnit::Hours => (n * 3600, n * 3600),
            DurationUnit::Days => (n * DAY, n * DAY),
            DurationUnit::Weeks => (n * 7 * DAY, n * 7 * DAY),
            DurationUnit::Months => {
                let (lo, hi) = month_span_days(self.amount);
                (lo * DAY, hi * DAY)
            }
            DurationUnit::Years => (n * 365 * DAY, n * 366 * DAY),
        }
    }

    /// A nominal length in seconds (month = 365/12 days, year = 365 days), for ordering and for
    /// deciding whether a change made something "longer".
    pub fn nominal_seconds(&self) -> u64 {
        match self.unit {
            DurationUnit::Months => u64::from(self.amount) * 365 * 86_400 / 12,
            DurationUnit::Years => u64::from(self.amount) * 365 * 86_400,
            _ => self.bounds_seconds().0,
        }
    }

    /// True when this duration is certainly shorter than `other` whatever the start date.
    pub fn certainly_shorter_than(&self, other: &Self) -> bool {
        if self.unit == other.unit {
            return self.amount < other.amount;
        }
        if matches!(
            (self.unit, other.unit),
            (DurationUnit::Months, DurationUnit::Years)
                | (DurationUnit::Years, DurationUnit::Months)
        ) {
            return self.in_months() < other.in_months();
        }
        self.bounds_seconds().1 < other.bounds_seconds().0
    }

    fn in_months(&self) -> u64 {
        match self.unit {
            DurationUnit::Years => u64::from(self.amount) * 12,
            _ => u64::from(self.amount),
        }
    }

    /// Human text: "immediately", "10 days", "6 months", "1 year".
    pub fn to_words(&self) -> String {
        if self.is_zero() {
            return "immediately".to_owned();
        }
        let (one, many) = self.unit.words();
        if self.amount == 1 {
            format!("1 {one}")
        } else {
            format!("{} {many}", self.amount)
        }
    }
}

/// The fewest and most days `n` consecutive calendar months can span: whole years count 365 to
/// 366 days, and the remaining months are summed over every starting month (February at 28 for
/// the shortest, 29 for the longest).
fn month_span_days(n: u32) -> (u64, u64) {
    const LENGTHS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let years = u64::from(n / 12);
    let rest = (n % 12) as usize;
    let (mut shortest, mut longest) = (u64::MAX, 0);
    for start in 0..12 {
        let span: u64 = LENGTHS.iter().cycle().skip(start).take(rest).sum();
        let leap_extra = u64::from((0..rest).any(|i| (start + i) % 12 == 1));
        shortest = shortest.min(span);
        longest = longest.max(span + leap_extra);
    }
    (
        years * 365 + shortest,
        years * 366 + longest + u64::from(years > 0),
    )
}

impl fmt::Display for PolicyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit.suffix())
    }
}

impl FromStr for PolicyDuration {
    type Err = DurationParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || DurationParseError {
            input: input.to_owned(),
        };
        let text = input.trim();
        let digits_end = text
            .char_indices()
            .find(|(_, c)| !c.is_ascii_digit())
            .map_or(text.len(), |(i, _)| i);
        let (digits, suffix) = text.split_at(digits_end);
        if digits.is_empty() {
            return Err(err());
        }
        let amount: u32 = digits.parse().map_err(|_| err())?;
        let unit = match suffix.trim() {
            "s" => DurationUnit::Seconds,
            "min" => DurationUnit::Minutes,
            "h" => DurationUnit::Hours,
            "d" => DurationUnit::Days,
            "w" => DurationUnit::Weeks,
            "mo" => DurationUnit::Months,
            "y" => DurationUnit::Years,
            _ => return Err(err()),
        };
        // Ten thousand years is far past any retention a law allows; larger values are typos.
        let limit = match unit {
            DurationUnit::Years => 10_000,
            DurationUnit::Months => 120_000,
            _ => u32::MAX / 2,
        };
        if amount > limit {
            return Err(err());
        }
        Ok(Self { amount, unit })
    }
}

impl Serialize for PolicyDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How long the operator has to do something for a person: answer a request, complete an account
/// cancellation. Working days are counted on a named official calendar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Deadline {
    /// Working days on an official calendar (`{ working_days = 15, calendar = "CN" }`).
    WorkingDays {
        /// How many working days.
        working_days: u32,
        /// Which official calendar, for example `CN`.
        calendar: String,
    },
    /// Business days, Monday to Friday (`{ business_days = 10 }`), as US laws count them.
    BusinessDays {
        /// How many business days.
        business_days: u32,
    },
    /// Calendar days (`{ days = 30 }`).
    Days {
        /// How many days.
        days: u32,
    },
    /// Calendar months (`{ months = 1 }`), as GDPR Art. 12(3) counts them.
    Months {
        /// How many months.
        months: u32,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadline {
    working_days: Option<u32>,
    calendar: Option<String>,
    business_days: Option<u32>,
    days: Option<u32>,
    months: Option<u32>,
}

impl<'de> Deserialize<'de> for Deadline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawDeadline::deserialize(deserializer)?;
        let given = [
            raw.working_days.is_some(),
            raw.business_days.is_some(),
            raw.days.is_some(),
            raw.months.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if given != 1 {
            return Err(serde::de::Error::custom(
                "a deadline needs exactly one of working_days, business_days, days or months",
            ));
        }
        if raw.calendar.is_some() && raw.working_days.is_none() {
            return Err(serde::de::Error::custom(
                "calendar applies only to working_days",
            ));
        }
        Ok(
            match (raw.working_days, raw.business_days, raw.days, raw.months) {
                (Some(working_days), ..) => Self::WorkingDays {
                    working_days,
                    calendar: raw.calendar.unwrap_or_else(|| "CN".to_owned()),
                },
                (_, Some(business_days), ..) => Self::BusinessDays { business_days },
                (_, _, Some(days), _) => Self::Days { days },
                (_, _, _, Some(months)) => Self::Months { months },
                _ => {
                    return Err(serde::de::Error::custom(
                        "a deadline needs one of working_days, business_days, days or months",
                    ));
                }
            },
        )
    }
}

impl Deadline {
    /// A nominal length in calendar days, for comparing deadlines of different kinds: a working
    /// or business day counts 7/5 of a day, a month 30 days.
    pub fn nominal_days(&self) -> f64 {
        match self {
            Self::WorkingDays { working_days, .. } => f64::from(*working_days) * 7.0 / 5.0,
            Self::BusinessDays { business_days } => f64::from(*business_days) * 7.0 / 5.0,
            Self::Days { days } => f64::from(*days),
            Self::Months { months } => f64::from(*months) * 30.0,
        }
    }

    /// True when this deadline is longer than `limit`. Deadlines of the same kind compare
    /// exactly; different kinds compare by [`Deadline::nominal_days`].
    pub fn longer_than(&self, limit: &Self) -> bool {
        match (self, limit) {
            (
                Self::WorkingDays {
                    working_days: a, ..
                },
                Self::WorkingDays {
                    working_days: b, ..
                },
            ) => a > b,
            (Self::BusinessDays { business_days: a }, Self::BusinessDays { business_days: b }) => {
                a > b
            }
            (Self::Days { days: a }, Self::Days { days: b }) => a > b,
            (Self::Months { months: a }, Self::Months { months: b }) => a > b,
            _ => self.nominal_days() > limit.nominal_days(),
        }
    }

    /// Human text: "15 working days (CN official calendar)", "1 month", "45 days".
    pub fn to_words(&self) -> String {
        fn plural(n: u32, one: &str, many: &str) -> String {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        }
        match self {
            Self::WorkingDays {
                working_days,
                calendar,
            } => format!(
                "{} ({calendar} official calendar)",
                plural(*working_days, "working day", "working days")
            ),
            Self::BusinessDays { business_days } => {
                plural(*business_days, "business day", "business days")
            }
            Self::Days { days } => plural(*days, "day", "days"),
            Self::Months { months } => plural(*months, "month", "months"),
        }
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_words())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        for (text, amount, unit) in [
            ("0s", 0, DurationUnit::Seconds),
            ("30min", 30, DurationUnit::Minutes),
            ("12h", 12, DurationUnit::Hours),
            ("10d", 10, DurationUnit::Days),
            ("2w", 2, DurationUnit::Weeks),
            ("6mo", 6, DurationUnit::Months),
            ("3y", 3, DurationUnit::Years),
        ] {
            let parsed: PolicyDuration = text.parse().unwrap();
            assert_eq!(parsed, PolicyDuration { amount, unit });
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn refuses_malformed_durations() {
        for text in [
            "",
            "d",
            "10",
            "10 days",
            "-1d",
            "1.5y",
            "10m",
            "99999999999d",
            "20000y",
        ] {
            assert!(text.parse::<PolicyDuration>().is_err(), "{text} accepted");
        }
    }

    #[test]
    fn compares_across_units_conservatively() {
        let six_months = PolicyDuration::months(6);
        assert!(PolicyDuration::days(180).certainly_shorter_than(&six_months));
        assert!(!PolicyDuration::days(184).certainly_shorter_than(&six_months));
        assert!(
            !"1y"
                .parse::<PolicyDuration>()
                .unwrap()
                .certainly_shorter_than(&six_months)
        );
        assert!(
            "5mo"
                .parse::<PolicyDuration>()
                .unwrap()
                .certainly_shorter_than(&six_months)
        );
        assert!(
            !"540d"
                .parse::<PolicyDuration>()
                .unwrap()
                .certainly_shorter_than(&six_months)
        );
    }

    #[test]
    fn deadlines_compare_by_kind_then_nominally() {
        let fifteen_wd = Deadline::WorkingDays {
            working_days: 15,
            calendar: "CN".into(),
        };
        assert!(!fifteen_wd.longer_than(&Deadline::Months { months: 1 }));
        assert!(Deadline::Days { days: 30 }.longer_than(&fifteen_wd));
        assert!(
            Deadline::WorkingDays {
                working_days: 16,
                calendar: "CN".into()
            }
            .longer_than(&fifteen_wd)
        );
    }
}
