//! Just enough calendar arithmetic for the demo: `YYYY-MM-DD` dates and
//! `YYYY-MM-DDTHH:MM` local start times, with no time zones.

/// Opening and closing time of the practice, in minutes after midnight.
pub(crate) const OPENS_AT: u32 = 8 * 60;
/// The practice closes at 17:00.
pub(crate) const CLOSES_AT: u32 = 17 * 60;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` days after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31 and 1..=12).
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn number<T: std::str::FromStr>(text: &str, width: usize) -> Option<T> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Parse `YYYY-MM-DD`; `None` unless it names a real day.
pub(crate) fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let mut parts = text.split('-');
    let year: i64 = number(parts.next()?, 4)?;
    let month: u32 = number(parts.next()?, 2)?;
    let day: u32 = number(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&month) {
        return None;
    }
    (1..=days_in_month(year, month))
        .contains(&day)
        .then_some((year, month, day))
}

/// Whether `text` is a valid `YYYY-MM` month.
pub(crate) fn is_month(text: &str) -> bool {
    parse_date(&format!("{text}-01")).is_some()
}

/// Parse `YYYY-MM-DDTHH:MM` into its date part and minutes after midnight.
pub(crate) fn parse_start(text: &str) -> Option<(&str, u32)> {
    let (date, time) = text.split_once('T')?;
    parse_date(date)?;
    let (hours, minutes) = time.split_once(':')?;
    let hours: u32 = number(hours, 2)?;
    let minutes: u32 = number(minutes, 2)?;
    (hours < 24 && minutes < 60).then_some((date, hours * 60 + minutes))
}

/// Format a date and minutes after midnight back into `YYYY-MM-DDTHH:MM`.
pub(crate) fn format_start(date: &str, minutes: u32) -> String {
    format!("{date}T{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The date `days` days after `date` (which must be valid).
pub(crate) fn add_days(date: &str, days: i64) -> Option<String> {
    let (y, m, d) = parse_date(date)?;
    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) + days);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_validate() {
        assert_eq!(add_days("2026-11-24", 30).as_deref(), Some("2026-12-24"));
        assert_eq!(add_days("2028-02-28", 1).as_deref(), Some("2028-02-29"));
        assert_eq!(add_days("2026-12-31", 1).as_deref(), Some("2027-01-01"));
        assert!(parse_date("2026-02-29").is_none());
        assert!(parse_date("2026-13-01").is_none());
        assert_eq!(parse_start("2026-12-01T08:30"), Some(("2026-12-01", 510)));
        assert!(parse_start("2026-12-01T24:00").is_none());
        assert!(parse_start("2026-12-01 08:30").is_none());
        assert_eq!(format_start("2026-12-01", 510), "2026-12-01T08:30");
        assert!(is_month("2026-11"));
        assert!(!is_month("2026-1"));
    }
}
