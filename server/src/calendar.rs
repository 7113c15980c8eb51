//! The business-day calendar deletion deadlines of console configuration data are
//! counted in: Saturdays and Sundays are never working days, and configured holidays
//! are not either. Dates are UTC dates.
use std::collections::BTreeSet;
use std::path::Path;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

/// Weekends plus the configured holidays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<Date>,
}

/// A holidays file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// The file could not be read.
    #[error("cannot read holidays file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A line is not a date.
    #[error("holidays file {path} line {line}: {text:?} is not a YYYY-MM-DD date")]
    Date {
        path: String,
        line: usize,
        text: String,
    },
}

impl Calendar {
    /// Weekends only.
    pub fn weekends_only() -> Self {
        Calendar::default()
    }

    pub fn with_holidays(holidays: impl IntoIterator<Item = Date>) -> Self {
        Calendar {
            holidays: holidays.into_iter().collect(),
        }
    }

    /// Reads holidays, one `YYYY-MM-DD` per line; blank lines and `#` comments are
    /// skipped, and anything after the date on a line is its name.
    pub fn from_file(path: &Path) -> Result<Self, CalendarError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Calendar::parse(&text).map_err(|(line, text)| CalendarError::Date {
            path: path.display().to_string(),
            line,
            text,
        })
    }

    /// Parses the holidays file format; an error is (line number, offending text).
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut holidays = BTreeSet::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let Some(date) = line.split_whitespace().next() else {
                continue;
            };
            let date: Date = date.parse().map_err(|_| (index + 1, line.to_string()))?;
            holidays.insert(date);
        }
        Ok(Calendar { holidays })
    }

    pub fn holidays(&self) -> impl Iterator<Item = Date> + '_ {
        self.holidays.iter().copied()
    }

    pub fn is_working_day(&self, date: Date) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !self.holidays.contains(&date)
    }

    /// The instant `days` working days after `from`: the same UTC time of day on the
    /// `days`-th working day after `from`'s date (the day of `from` never counts).
    pub fn add_working_days(&self, from: Timestamp, days: u32) -> Timestamp {
        let datetime = from.to_zoned(TimeZone::UTC).datetime();
        let mut date = datetime.date();
        let mut counted = 0;
        while counted < days {
            date = date.tomorrow().unwrap_or(date);
            if date == Date::MAX {
                break;
            }
            if self.is_working_day(date) {
                counted += 1;
            }
        }
        date.to_datetime(datetime.time())
            .to_zoned(TimeZone::UTC)
            .map(|zoned| zoned.timestamp())
            .unwrap_or(Timestamp::MAX)
    }
}

/// `from` plus whole calendar months, in UTC: the same day of the month, or the last
/// day of a shorter month (Jan 31 + 1 month = Feb 28, or 29 in a leap year).
pub fn add_months(from: Timestamp, months: i32) -> Timestamp {
    let datetime = from.to_zoned(TimeZone::UTC).datetime();
    datetime
        .checked_add(jiff::Span::new().months(months))
        .ok()
        .and_then(|later| later.to_zoned(TimeZone::UTC).ok())
        .map(|zoned| zoned.timestamp())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn months_end_at_the_end_of_shorter_months() {
        assert_eq!(
            add_months(at("2026-01-31T10:00:00Z"), 1),
            at("2026-02-28T10:00:00Z")
        );
        assert_eq!(
            add_months(at("2028-01-31T10:00:00Z"), 1),
            at("2028-02-29T10:00:00Z")
        );
        assert_eq!(
            add_months(at("2026-03-31T00:00:00Z"), 1),
            at("2026-04-30T00:00:00Z")
        );
        assert_eq!(
            add_months(at("2026-12-15T23:59:59Z"), 1),
            at("2027-01-15T23:59:59Z")
        );
    }

    #[test]
    fn working_days_skip_weekends_and_holidays() {
        let calendar = Calendar::weekends_only();
        // Friday + 1 working day = Monday.
        assert_eq!(
            calendar.add_working_days(at("2026-11-27T09:00:00Z"), 1),
            at("2026-11-30T09:00:00Z")
        );
        // A request on a Saturday: Monday is the first working day.
        assert_eq!(
            calendar.add_working_days(at("2026-11-28T09:00:00Z"), 1),
            at("2026-11-30T09:00:00Z")
        );
        // 30 working days from Tuesday 2026-11-24: six weeks.
        assert_eq!(
            calendar.add_working_days(at("2026-11-24T12:00:00Z"), 30),
            at("2027-01-05T12:00:00Z")
        );
        let holidays = Calendar::parse("# holidays\n2026-12-25 Christmas\n2027-01-01\n\n").unwrap();
        assert_eq!(
            holidays.add_working_days(at("2026-11-24T12:00:00Z"), 30),
            at("2027-01-07T12:00:00Z")
        );
    }

    #[test]
    fn a_bad_holiday_line_is_named() {
        let error = Calendar::parse("2026-12-25\n2026-13-01 nope\n").unwrap_err();
        assert_eq!(error, (2, "2026-13-01 nope".to_string()));
    }

    fn any_timestamp() -> impl Strategy<Value = Timestamp> {
        // 1970 to 2100.
        (0i64..4_102_444_800).prop_map(|s| Timestamp::from_second(s).unwrap())
    }

    fn any_holidays() -> impl Strategy<Value = Vec<Date>> {
        proptest::collection::vec(
            (0i64..4_102_444_800 / 86_400).prop_map(|d| {
                date(1970, 1, 1)
                    .checked_add(jiff::Span::new().days(d))
                    .unwrap()
            }),
            0..40,
        )
    }

    proptest! {
        #[test]
        fn working_days_count_exactly_the_working_days_between(
            from in any_timestamp(),
            days in 0u32..60,
            holidays in any_holidays(),
        ) {
            let calendar = Calendar::with_holidays(holidays);
            let to = calendar.add_working_days(from, days);
            let start = from.to_zoned(TimeZone::UTC);
            let end = to.to_zoned(TimeZone::UTC);
            prop_assert_eq!(start.time(), end.time());
            prop_assert!(to >= from);
            // Counting day by day agrees, and the deadline is itself a working day.
            let mut counted = 0;
            let mut day = start.date();
            while day < end.date() {
                day = day.tomorrow().unwrap();
                if calendar.is_working_day(day) {
                    counted += 1;
                }
            }
            prop_assert_eq!(counted, days);
            if days > 0 {
                prop_assert!(calendar.is_working_day(end.date()));
                prop_assert!(!matches!(end.date().weekday(), Weekday::Saturday | Weekday::Sunday));
            }
        }

        #[test]
        fn a_month_later_is_the_same_day_or_the_last_of_a_shorter_month(from in any_timestamp()) {
            let start = from.to_zoned(TimeZone::UTC);
            let end = add_months(from, 1).to_zoned(TimeZone::UTC);
            prop_assert_eq!(start.time(), end.time());
            let next_month = start.date().first_of_month().checked_add(jiff::Span::new().months(1)).unwrap();
            prop_assert_eq!(end.date().first_of_month(), next_month);
            let expected_day = start.day().min(next_month.days_in_month());
            prop_assert_eq!(end.day(), expected_day);
            prop_assert!(end.timestamp() > from);
        }
    }
}
