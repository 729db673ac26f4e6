//! Working-day calendars: the days a law's deadline counts.
//!
//! - [`Calendar`]: an official calendar with published exceptions. The only one today is `CN`,
//!   the mainland China calendar of the State Council: statutory days off (`isOffDay: true`) and
//!   the weekend days made working days to compensate (`isOffDay: false`, 调休 make-up
//!   workdays). The data is embedded from `calendars/cn/<year>.json` (holiday-cn, MIT licence,
//!   see `calendars/cn/LICENSE`) and parsed once. Days the data does not list follow the plain
//!   rule: Monday to Friday work, Saturday and Sunday off, **but only in a year whose own file
//!   exists**. A date in any other year is [`CalendarError::YearNotPublished`] (design
//!   invariant 6): the State Council publishes each year's calendar in the autumn before, and a
//!   weekends-only guess would silently move deadlines over the Spring Festival or National Day.
//!   A file may list dates of a neighbouring year (2023's file lists 2022-12-31): such an entry
//!   is keyed by its own date and applies, but it does not make that other year published.
//! - [`BusinessDays`]: the US count used by US laws such as the CCPA: Monday to Friday, minus the
//!   US federal holidays of 5 U.S.C. § 6103(a), computed by rule with their observed days
//!   (a holiday on a Saturday is observed the Friday before, on a Sunday the Monday after; a
//!   Saturday New Year's Day is observed on December 31 of the previous year). California state
//!   holidays (César Chávez Day, the day after Thanksgiving, ...) and the Washington-area
//!   Inauguration Day are **not** included: the count is the federal one.
//!
//! Dates are civil dates ([`jiff::civil::Date`]); which time zone turns an instant into a date is
//! the deadline's business (see [`Calendar::offset`] and [`crate::deadline`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::OnceLock;

use jiff::civil::{Date, Weekday};
use jiff::tz::Offset;
use serde::Deserialize;

/// The name of the mainland China official calendar.
pub const CN: &str = "CN";

/// The civil time zone of the China calendar: China Standard Time, UTC+08:00, with no daylight
/// saving time since 1991.
pub const CHINA_STANDARD_TIME: Offset = Offset::constant(8);

/// The embedded China calendar files, one per published year.
const CN_FILES: &[(&str, &str)] = &[
    ("2022.json", include_str!("../calendars/cn/2022.json")),
    ("2023.json", include_str!("../calendars/cn/2023.json")),
    ("2024.json", include_str!("../calendars/cn/2024.json")),
    ("2025.json", include_str!("../calendars/cn/2025.json")),
    ("2026.json", include_str!("../calendars/cn/2026.json")),
];

/// Why a working day could not be decided or counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// No calendar of that name.
    #[error("unknown working-day calendar {name:?}: the calendars available are CN")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// The calendar's data for that year has not been published (or not been shipped yet).
    #[error(
        "the {calendar} official calendar for {year} has not been published: a deadline in {year} cannot be computed exactly"
    )]
    YearNotPublished {
        /// The calendar, for example `CN`.
        calendar: String,
        /// The year without data.
        year: i16,
    },
    /// A date outside the supported range (years -9999 to 9999).
    #[error("date out of the supported range")]
    OutOfRange,
    /// The embedded calendar data is malformed (a build defect, caught by the crate's tests).
    #[error("embedded calendar data {file} is invalid: {detail}")]
    InvalidData {
        /// The embedded file.
        file: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl CalendarError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "calendar.unknown",
            Self::YearNotPublished { .. } => "calendar.year_not_published",
            Self::OutOfRange => "calendar.out_of_range",
            Self::InvalidData { .. } => "calendar.invalid_data",
        }
    }
}

/// One year's file as published by holiday-cn. Other fields (`$schema`, `papers`, `name`) are
/// ignored.
#[derive(Deserialize)]
struct RawYear {
    year: i16,
    days: Vec<RawDay>,
}

#[derive(Deserialize)]
struct RawDay {
    date: String,
    #[serde(rename = "isOffDay")]
    is_off_day: bool,
}

/// A parsed official calendar: the published years and the exceptions to Monday-to-Friday.
struct Table {
    name: &'static str,
    offset: Offset,
    years: BTreeSet<i16>,
    /// Date → is it a day off.
    exceptions: HashMap<Date, bool>,
}

impl Table {
    fn parse(
        name: &'static str,
        offset: Offset,
        files: &[(&str, &str)],
    ) -> Result<Self, CalendarError> {
        let mut table = Self {
            name,
            offset,
            years: BTreeSet::new(),
            exceptions: HashMap::new(),
        };
        for (file, text) in files {
            let invalid = |detail: String| CalendarError::InvalidData {
                file: format!("{}/{file}", name.to_ascii_lowercase()),
                detail,
            };
            let raw: RawYear = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
            if file.strip_suffix(".json") != Some(raw.year.to_string().as_str()) {
                return Err(invalid(format!("the file says year {}", raw.year)));
            }
            if !table.years.insert(raw.year) {
                return Err(invalid(format!("year {} given twice", raw.year)));
            }
            for day in raw.days {
                let date: Date = day
                    .date
                    .parse()
                    .map_err(|_| invalid(format!("invalid date {:?}", day.date)))?;
                if table.exceptions.insert(date, day.is_off_day) == Some(!day.is_off_day) {
                    return Err(invalid(format!("{date} listed both as off and as working")));
                }
            }
        }
        Ok(table)
    }

    fn is_working_day(&self, date: Date) -> Result<bool, CalendarError> {
        if !self.years.contains(&date.year()) {
            return Err(CalendarError::YearNotPublished {
                calendar: self.name.to_owned(),
                year: date.year(),
            });
        }
        Ok(match self.exceptions.get(&date) {
            Some(off) => !off,
            None => !is_weekend(date),
        })
    }
}

fn is_weekend(date: Date) -> bool {
    matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
}

fn china_table() -> Result<&'static Table, CalendarError> {
    static TABLE: OnceLock<Result<Table, CalendarError>> = OnceLock::new();
    TABLE
        .get_or_init(|| Table::parse(CN, CHINA_STANDARD_TIME, CN_FILES))
        .as_ref()
        .map_err(Clone::clone)
}

/// The next day after `date` for which `is_counted` holds, `n` times over. `n = 0` is `date`.
fn count_forward(
    date: Date,
    n: u32,
    mut is_counted: impl FnMut(Date) -> Result<bool, CalendarError>,
) -> Result<Date, CalendarError> {
    let mut day = date;
    let mut left = n;
    while left > 0 {
        day = day.tomorrow().map_err(|_| CalendarError::OutOfRange)?;
        if is_counted(day)? {
            left -= 1;
        }
    }
    Ok(day)
}

/// An official working-day calendar, such as `CN`. Cheap to copy: the data is parsed once per
/// process and shared.
#[derive(Clone, Copy)]
pub struct Calendar {
    table: &'static Table,
}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calendar")
            .field("name", &self.table.name)
            .field("years", &self.table.years)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.table, other.table)
    }
}

impl Eq for Calendar {}

impl Calendar {
    /// The calendar of that name: `CN` (ASCII case is ignored), or [`CalendarError::Unknown`].
    pub fn named(name: &str) -> Result<Self, CalendarError> {
        if name.trim().eq_ignore_ascii_case(CN) {
            Self::china()
        } else {
            Err(CalendarError::Unknown {
                name: name.to_owned(),
            })
        }
    }

    /// The mainland China official calendar.
    pub fn china() -> Result<Self, CalendarError> {
        china_table().map(|table| Self { table })
    }

    /// Its canonical name, for example `CN`.
    pub fn name(&self) -> &'static str {
        self.table.name
    }

    /// The civil time zone in which its days are counted: UTC+08:00 for `CN`.
    pub fn offset(&self) -> Offset {
        self.table.offset
    }

    /// The years whose data is published, in order.
    pub fn published_years(&self) -> impl Iterator<Item = i16> + '_ {
        self.table.years.iter().copied()
    }

    /// Whether the year's own data is published.
    pub fn is_published(&self, year: i16) -> bool {
        self.table.years.contains(&year)
    }

    /// Whether `date` is a working day: a listed exception decides, otherwise Monday to Friday.
    /// A date in an unpublished year is [`CalendarError::YearNotPublished`].
    pub fn is_working_day(&self, date: Date) -> Result<bool, CalendarError> {
        self.table.is_working_day(date)
    }

    /// The date `n` working days after `date`: only days strictly after `date` count, so `date`
    /// itself may be a day off (a request received on a holiday). `n = 0` gives `date`. Every
    /// day crossed must lie in a published year.
    pub fn add_working_days(&self, date: Date, n: u32) -> Result<Date, CalendarError> {
        count_forward(date, n, |day| self.table.is_working_day(day))
    }
}

/// US business days: Monday to Friday, minus the observed US federal holidays (see the module
/// documentation for the rule and what is not included). Defined for every year by rule, so it
/// never fails for want of data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusinessDays;

impl BusinessDays {
    /// The US federal business-day count.
    pub const fn us_federal() -> Self {
        Self
    }

    /// The civil time zone in which its days are counted: UTC (see [`crate::deadline`]).
    pub fn offset(&self) -> Offset {
        Offset::UTC
    }

    /// The federal holiday observed on `date`, by name, if any.
    pub fn holiday(&self, date: Date) -> Option<&'static str> {
        // A Saturday New Year's Day of next year is observed on December 31 of this year.
        let next = date.year().checked_add(1);
        us_federal_holidays(date.year())
            .into_iter()
            .chain(next.map(us_federal_holidays).unwrap_or_default())
            .find(|(observed, _)| *observed == date)
            .map(|(_, name)| name)
    }

    /// Whether `date` is a business day.
    pub fn is_business_day(&self, date: Date) -> bool {
        !is_weekend(date) && self.holiday(date).is_none()
    }

    /// The date `n` business days after `date`, counting only days strictly after it.
    /// `n = 0` gives `date`.
    pub fn add_business_days(&self, date: Date, n: u32) -> Result<Date, CalendarError> {
        // The holidays of the year being crossed and of the next, cached per year.
        let mut cached: Option<(i16, Vec<Date>)> = None;
        count_forward(date, n, |day| {
            if is_weekend(day) {
                return Ok(false);
            }
            let holidays = match &cached {
                Some((year, holidays)) if *year == day.year() => holidays,
                _ => {
                    let year = day.year();
                    let mut holidays: Vec<Date> = us_federal_holidays(year)
                        .into_iter()
                        .map(|(observed, _)| observed)
                        .collect();
                    if let Some(next) = year.checked_add(1) {
                        holidays.extend(us_federal_holidays(next).into_iter().map(|(d, _)| d));
                    }
                    &cached.insert((year, holidays)).1
                }
            };
            Ok(!holidays.contains(&day))
        })
    }
}

/// The US federal holidays of `year` (5 U.S.C. § 6103(a)) on the days they are observed, with
/// their names. New Year's Day falling on a Saturday is observed on December 31 of `year - 1`,
/// which is then part of this list. Dates outside jiff's range are left out.
pub fn us_federal_holidays(year: i16) -> Vec<(Date, &'static str)> {
    let fixed = |month: i8, day: i8| Date::new(year, month, day).ok().and_then(observed);
    let nth = |month: i8, nth: i8, weekday: Weekday| {
        Date::new(year, month, 1)
            .ok()
            .and_then(|first| first.nth_weekday_of_month(nth, weekday).ok())
    };
    [
        (fixed(1, 1), "New Year's Day"),
        (
            nth(1, 3, Weekday::Monday),
            "Birthday of Martin Luther King, Jr.",
        ),
        (nth(2, 3, Weekday::Monday), "Washington's Birthday"),
        (nth(5, -1, Weekday::Monday), "Memorial Day"),
        (fixed(6, 19), "Juneteenth National Independence Day"),
        (fixed(7, 4), "Independence Day"),
        (nth(9, 1, Weekday::Monday), "Labor Day"),
        (nth(10, 2, Weekday::Monday), "Columbus Day"),
        (fixed(11, 11), "Veterans Day"),
        (nth(11, 4, Weekday::Thursday), "Thanksgiving Day"),
        (fixed(12, 25), "Christmas Day"),
    ]
    .into_iter()
    .filter_map(|(date, name)| date.map(|date| (date, name)))
    .collect()
}

/// The day a fixed-date federal holiday is observed: Friday before a Saturday, Monday after a
/// Sunday.
fn observed(date: Date) -> Option<Date> {
    match date.weekday() {
        Weekday::Saturday => date.yesterday().ok(),
        Weekday::Sunday => date.tomorrow().ok(),
        _ => Some(date),
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    fn cn() -> Calendar {
        Calendar::named("CN").unwrap()
    }

    #[test]
    fn embedded_data_parses_and_covers_2022_to_2026() {
        let cal = cn();
        assert_eq!(
            cal.published_years().collect::<Vec<_>>(),
            vec![2022, 2023, 2024, 2025, 2026]
        );
        assert_eq!(cal.name(), "CN");
        assert_eq!(cal.offset(), Offset::constant(8));
        assert_eq!(Calendar::named("cn").unwrap(), cal);
    }

    #[test]
    fn the_readme_facts_hold() {
        let cal = cn();
        // A make-up workday on a Saturday.
        assert_eq!(
            cal.add_working_days(date(2026, 2, 13), 1).unwrap(),
            date(2026, 2, 14)
        );
        assert!(cal.is_working_day(date(2026, 2, 14)).unwrap());
        // Over the National Day golden week.
        assert_eq!(
            cal.add_working_days(date(2026, 9, 30), 1).unwrap(),
            date(2026, 10, 8)
        );
        // Over the Spring Festival.
        assert_eq!(
            cal.add_working_days(date(2026, 2, 10), 15).unwrap(),
            date(2026, 3, 9)
        );
    }

    #[test]
    fn plain_days_follow_monday_to_friday() {
        let cal = cn();
        assert!(cal.is_working_day(date(2026, 3, 10)).unwrap()); // Tuesday
        assert!(!cal.is_working_day(date(2026, 3, 14)).unwrap()); // Saturday
        assert!(!cal.is_working_day(date(2026, 10, 1)).unwrap()); // National Day, Thursday
        assert_eq!(
            cal.add_working_days(date(2026, 3, 10), 0).unwrap(),
            date(2026, 3, 10)
        );
        // Received on a holiday: counting starts the next working day.
        assert_eq!(
            cal.add_working_days(date(2026, 10, 1), 1).unwrap(),
            date(2026, 10, 8)
        );
    }

    #[test]
    fn a_year_without_data_is_an_error() {
        let cal = cn();
        let err = cal.add_working_days(date(2026, 12, 20), 15).unwrap_err();
        assert_eq!(
            err,
            CalendarError::YearNotPublished {
                calendar: "CN".into(),
                year: 2027
            }
        );
        assert_eq!(err.code(), "calendar.year_not_published");
        assert_eq!(
            cal.is_working_day(date(2021, 12, 31)).unwrap_err().code(),
            "calendar.year_not_published"
        );
        // 2027-01-01 is a Friday: a weekends-only guess would say "working".
        assert!(cal.is_working_day(date(2027, 1, 1)).is_err());
    }

    #[test]
    fn a_neighbouring_years_entry_applies_but_does_not_publish_its_year() {
        // 2023.json lists 2022-12-31 (a Saturday, part of the New Year holiday); 2022 counts as
        // published because 2022.json exists.
        let cal = cn();
        assert!(!cal.is_working_day(date(2022, 12, 31)).unwrap());
        assert_eq!(
            cal.add_working_days(date(2022, 12, 30), 1).unwrap(),
            date(2023, 1, 3)
        );
        // With only 2023's file, 2022 is not published even though the file lists a 2022 date.
        let only_2023 = Table::parse(CN, CHINA_STANDARD_TIME, &CN_FILES[1..2]).unwrap();
        assert!(only_2023.exceptions.contains_key(&date(2022, 12, 31)));
        assert_eq!(
            only_2023.is_working_day(date(2022, 12, 31)),
            Err(CalendarError::YearNotPublished {
                calendar: "CN".into(),
                year: 2022
            })
        );
    }

    #[test]
    fn malformed_data_is_refused() {
        let bad = [
            ("2026.json", "{"),
            ("2026.json", r#"{"year": 2025, "days": []}"#),
            (
                "2026.json",
                r#"{"year": 2026, "days": [{"date": "2026-13-01", "isOffDay": true}]}"#,
            ),
            (
                "2026.json",
                r#"{"year": 2026, "days": [{"date": "2026-01-01", "isOffDay": true},
                    {"date": "2026-01-01", "isOffDay": false}]}"#,
            ),
        ];
        for file in bad {
            let err = Table::parse(CN, CHINA_STANDARD_TIME, &[file])
                .err()
                .unwrap();
            assert_eq!(err.code(), "calendar.invalid_data", "{}", file.1);
        }
    }

    #[test]
    fn unknown_calendar() {
        let err = Calendar::named("US").unwrap_err();
        assert_eq!(err, CalendarError::Unknown { name: "US".into() });
        assert_eq!(err.code(), "calendar.unknown");
    }

    #[test]
    fn us_federal_holidays_by_rule() {
        let days: Vec<Date> = us_federal_holidays(2026)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        assert_eq!(
            days,
            vec![
                date(2026, 1, 1),
                date(2026, 1, 19),
                date(2026, 2, 16),
                date(2026, 5, 25),
                date(2026, 6, 19),
                date(2026, 7, 3), // July 4th is a Saturday
                date(2026, 9, 7),
                date(2026, 10, 12),
                date(2026, 11, 11),
                date(2026, 11, 26),
                date(2026, 12, 25),
            ]
        );
        // New Year's Day 2022 was a Saturday, observed on Friday 2021-12-31.
        let us = BusinessDays::us_federal();
        assert_eq!(us.holiday(date(2021, 12, 31)), Some("New Year's Day"));
        // Sunday holiday observed on Monday: Christmas 2022.
        assert_eq!(us.holiday(date(2022, 12, 26)), Some("Christmas Day"));
        assert!(!us.is_business_day(date(2022, 12, 26)));
    }

    #[test]
    fn us_business_days_skip_weekends_and_holidays() {
        let us = BusinessDays::us_federal();
        // Wednesday before Thanksgiving 2025 (Nov 27) + 1 = Friday.
        assert_eq!(
            us.add_business_days(date(2025, 11, 26), 1).unwrap(),
            date(2025, 11, 28)
        );
        // Across Thanksgiving: Mon 2025-11-24 + 10 = Tue 2025-12-09 (Nov 27 skipped).
        assert_eq!(
            us.add_business_days(date(2025, 11, 24), 10).unwrap(),
            date(2025, 12, 9)
        );
        // Observed Independence Day 2026: Thursday July 2 + 1 = Monday July 6 (Fri 3 observed).
        assert_eq!(
            us.add_business_days(date(2026, 7, 2), 1).unwrap(),
            date(2026, 7, 6)
        );
        assert_eq!(us.holiday(date(2026, 7, 3)), Some("Independence Day"));
        // Across a year end with an observed New Year's Day on December 31.
        assert_eq!(
            us.add_business_days(date(2021, 12, 30), 1).unwrap(),
            date(2022, 1, 3)
        );
        assert_eq!(
            us.add_business_days(date(2026, 7, 2), 0).unwrap(),
            date(2026, 7, 2)
        );
        assert!(us.is_business_day(date(2026, 7, 2)));
        assert_eq!(us.offset(), Offset::UTC);
    }

    #[test]
    fn us_business_days_agree_with_the_per_day_rule() {
        let us = BusinessDays::us_federal();
        let mut day = date(2024, 12, 1);
        for _ in 0..800 {
            let next = us.add_business_days(day, 1).unwrap();
            assert!(us.is_business_day(next));
            let mut between = day.tomorrow().unwrap();
            while between < next {
                assert!(!us.is_business_day(between), "{between} skipped");
                between = between.tomorrow().unwrap();
            }
            day = day.tomorrow().unwrap();
        }
    }

    proptest::proptest! {
        #[test]
        fn adding_working_days_lands_on_the_nth_working_day(
            start in 0i32..(365 * 5),
            n in 0u32..60,
            split in 0u32..60,
        ) {
            let cal = cn();
            let from = date(2022, 1, 1).checked_add(jiff::Span::new().days(start)).unwrap();
            match cal.add_working_days(from, n) {
                Ok(to) => {
                    let mut counted = 0;
                    let mut day = from;
                    while day < to {
                        day = day.tomorrow().unwrap();
                        if cal.is_working_day(day).unwrap() {
                            counted += 1;
                        }
                    }
                    proptest::prop_assert_eq!(counted, n);
                    proptest::prop_assert!(n == 0 || cal.is_working_day(to).unwrap());
                    // Adding in two steps gives the same day.
                    let a = split.min(n);
                    let mid = cal.add_working_days(from, a).unwrap();
                    proptest::prop_assert_eq!(cal.add_working_days(mid, n - a).unwrap(), to);
                }
                Err(err) => {
                    proptest::prop_assert_eq!(
                        err,
                        CalendarError::YearNotPublished { calendar: "CN".into(), year: 2027 }
                    );
                }
            }
        }
    }
}
