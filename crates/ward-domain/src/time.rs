//! Visit times: RFC 3339 / ISO 8601 parsing, the UTC instant that identifies a visit, and
//! the fixed-width UTC text used in sort keys (byte order = time order).
//!
//! The parser is hand-written: it runs once per CSV row, and a general date library was
//! several times slower on the ingest path. Time zones (for providers with a configured
//! default zone) go through `jiff`.

use std::fmt;

/// The earliest year a visit may fall in.
const EARLIEST_YEAR: i64 = 1900;

/// A UTC instant with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcInstant {
    unix_seconds: i64,
    nanos: u32,
}

impl UtcInstant {
    /// An instant from nanoseconds since the Unix epoch.
    pub fn from_unix_nanos(nanos: i128) -> Self {
        Self {
            unix_seconds: nanos.div_euclid(1_000_000_000) as i64,
            nanos: nanos.rem_euclid(1_000_000_000) as u32,
        }
    }

    /// The current instant from the system clock.
    pub fn now() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            unix_seconds: since_epoch.as_secs() as i64,
            nanos: since_epoch.subsec_nanos(),
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.unix_seconds * 1000 + i64::from(self.nanos / 1_000_000)
    }

    /// This instant moved by a number of seconds.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self {
            unix_seconds: self.unix_seconds + seconds,
            nanos: self.nanos,
        }
    }

    /// `2025-03-26T17:30:00.000000000Z`: fixed width, so byte order is time order.
    pub fn sortable(self) -> String {
        let mut text = String::with_capacity(Self::SORTABLE_LEN);
        self.push_sortable(&mut text);
        text
    }

    /// The length of [`UtcInstant::sortable`]'s text.
    pub const SORTABLE_LEN: usize = 30;

    /// Appends [`UtcInstant::sortable`]'s text to `out` (it runs several times per ingested
    /// row, where `format!` was a measurable share of the time).
    pub fn push_sortable(self, out: &mut String) {
        let (year, month, day, hour, minute, second) = self.civil();
        if !(0..=9999).contains(&year) {
            // Not a visit time (those are 1900 to now); keep the general form.
            out.push_str(&self.sortable_by_format());
            return;
        }
        let mut digits = [0u8; Self::SORTABLE_LEN];
        let mut put = |at: usize, width: usize, mut value: u64| {
            for slot in digits[at..at + width].iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year as u64);
        put(5, 2, u64::from(month));
        put(8, 2, u64::from(day));
        put(11, 2, u64::from(hour));
        put(14, 2, u64::from(minute));
        put(17, 2, u64::from(second));
        put(20, 9, u64::from(self.nanos));
        for (at, separator) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (29, b'Z'),
        ] {
            digits[at] = separator;
        }
        out.extend(digits.iter().map(|&byte| char::from(byte)));
    }

    /// `2025-03-26T17:30:00Z` (RFC 3339, whole seconds), for API timestamps.
    pub fn rfc3339_seconds(self) -> String {
        let (year, month, day, hour, minute, second) = self.civil();
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    }

    fn sortable_by_format(self) -> String {
        let (year, month, day, hour, minute, second) = self.civil();
        format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{:09}Z",
            self.nanos
        )
    }

    /// `2025-03-26`: the UTC calendar date (the default run date of analytics).
    pub fn civil_date(self) -> String {
        let (year, month, day, ..) = self.civil();
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// `20250326T173000Z`, for object and upload names.
    pub fn compact_seconds(self) -> String {
        let (year, month, day, hour, minute, second) = self.civil();
        format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
    }

    /// Parses an RFC 3339 timestamp with an explicit offset, as used in API query
    /// parameters (`from`, `to`).
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        let parsed = parse_iso(text.trim())?;
        let offset = parsed.offset_seconds.ok_or(TimeError::MissingOffset)?;
        Ok(parsed.instant(offset))
    }

    fn civil(self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.unix_seconds.div_euclid(86_400);
        let second_of_day = self.unix_seconds.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        (
            year,
            month,
            day,
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
        )
    }
}

impl fmt::Display for UtcInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sortable())
    }
}

/// Why a date-time value was refused, in words a clerk understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text is not a date and time in the expected form.
    #[error("is not a date and time like 2025-03-26T10:30:00-07:00")]
    NotADateTime,
    /// The text has the right shape but names a day or time that does not exist.
    #[error("names a date or time that does not exist")]
    NoSuchDate,
    /// No offset or `Z`, and the provider has no default time zone.
    #[error("has no time zone offset (add one, e.g. -07:00 or Z)")]
    MissingOffset,
    /// The offset is outside -23:59..+23:59.
    #[error("has an offset outside -23:59..+23:59")]
    BadOffset,
    /// Earlier than 1900-01-01.
    #[error("is before the year 1900")]
    TooEarly,
    /// More than a day after the time of processing.
    #[error("is more than a day in the future")]
    InFuture,
    /// The provider's time zone could not place the local time.
    #[error("cannot be placed in the provider's time zone")]
    ZoneLookup,
}

/// A provider's default time zone, for `date_time` values without an offset.
#[derive(Debug, Clone)]
pub struct ProviderTimeZone {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl ProviderTimeZone {
    /// Looks up an IANA time zone name such as `America/Los_Angeles`.
    pub fn parse(name: &str) -> Result<Self, String> {
        jiff::tz::TimeZone::get(name)
            .map(|zone| Self {
                name: name.to_owned(),
                zone,
            })
            .map_err(|_| format!("unknown time zone {name:?}"))
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `2025-03-26`: the local calendar date of an instant in this zone.
    pub fn civil_date(&self, instant: UtcInstant) -> String {
        match jiff::Timestamp::from_second(instant.unix_seconds()) {
            Ok(at) => at.to_zoned(self.zone.clone()).date().to_string(),
            Err(_) => instant.civil_date(),
        }
    }
}

/// A visit's `date_time`: the text as sent (trimmed) and the UTC instant it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitTime {
    as_sent: String,
    instant: UtcInstant,
}

impl VisitTime {
    /// Parses a `date_time` cell. `zone` reads values without an offset; `now` bounds the
    /// future (at most one day ahead).
    pub fn parse(
        text: &str,
        zone: Option<&ProviderTimeZone>,
        now: UtcInstant,
    ) -> Result<Self, TimeError> {
        let text = text.trim();
        let parsed = parse_iso(text)?;
        let instant = match (parsed.offset_seconds, zone) {
            (Some(offset), _) => parsed.instant(offset),
            (None, Some(zone)) => parsed.in_zone(&zone.zone)?,
            (None, None) => return Err(TimeError::MissingOffset),
        };
        if parsed.year < EARLIEST_YEAR {
            return Err(TimeError::TooEarly);
        }
        if instant > now.plus_seconds(86_400) {
            return Err(TimeError::InFuture);
        }
        Ok(Self {
            as_sent: text.to_owned(),
            instant,
        })
    }

    /// The value exactly as sent (trimmed).
    pub fn as_sent(&self) -> &str {
        &self.as_sent
    }

    /// The instant: the visit's identity.
    pub fn instant(&self) -> UtcInstant {
        self.instant
    }
}

struct ParsedIso {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    offset_seconds: Option<i64>,
}

impl ParsedIso {
    fn instant(&self, offset_seconds: i64) -> UtcInstant {
        let days = days_from_civil(self.year, self.month, self.day);
        let local = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        UtcInstant {
            unix_seconds: local - offset_seconds,
            nanos: self.nanos,
        }
    }

    fn in_zone(&self, zone: &jiff::tz::TimeZone) -> Result<UtcInstant, TimeError> {
        let civil = jiff::civil::DateTime::new(
            i16::try_from(self.year).map_err(|_| TimeError::ZoneLookup)?,
            self.month as i8,
            self.day as i8,
            self.hour as i8,
            self.minute as i8,
            self.second as i8,
            self.nanos as i32,
        )
        .map_err(|_| TimeError::NoSuchDate)?;
        let timestamp = zone
            .to_ambiguous_timestamp(civil)
            .compatible()
            .map_err(|_| TimeError::ZoneLookup)?;
        Ok(UtcInstant {
            unix_seconds: timestamp.as_second(),
            nanos: timestamp.subsec_nanosecond().max(0) as u32,
        })
    }
}

fn digits(bytes: &[u8], from: usize, count: usize) -> Result<u32, TimeError> {
    let slice = bytes
        .get(from..from + count)
        .ok_or(TimeError::NotADateTime)?;
    slice.iter().try_fold(0u32, |acc, b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u32::from(b - b'0'))
        } else {
            Err(TimeError::NotADateTime)
        }
    })
}

fn expect(bytes: &[u8], at: usize, wanted: &[u8]) -> Result<(), TimeError> {
    match bytes.get(at) {
        Some(b) if wanted.contains(b) => Ok(()),
        _ => Err(TimeError::NotADateTime),
    }
}

/// `YYYY-MM-DD(T|t| )HH:MM[:SS[.fraction]][Z|z|±HH:MM|±HHMM|±HH]`
fn parse_iso(text: &str) -> Result<ParsedIso, TimeError> {
    let bytes = text.as_bytes();
    let year = i64::from(digits(bytes, 0, 4)?);
    expect(bytes, 4, b"-")?;
    let month = digits(bytes, 5, 2)?;
    expect(bytes, 7, b"-")?;
    let day = digits(bytes, 8, 2)?;
    expect(bytes, 10, b"Tt ")?;
    let hour = digits(bytes, 11, 2)?;
    expect(bytes, 13, b":")?;
    let minute = digits(bytes, 14, 2)?;
    let mut at = 16;
    let mut second = 0;
    let mut nanos = 0;
    if bytes.get(at) == Some(&b':') {
        second = digits(bytes, at + 1, 2)?;
        at += 3;
        if matches!(bytes.get(at), Some(b'.' | b',')) {
            at += 1;
            let start = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                at += 1;
            }
            let n_digits = at - start;
            if n_digits == 0 || n_digits > 9 {
                return Err(TimeError::NotADateTime);
            }
            nanos = digits(bytes, start, n_digits)? * 10u32.pow((9 - n_digits) as u32);
        }
    }
    let offset_seconds = match bytes.get(at) {
        None => None,
        Some(b'Z' | b'z') if at + 1 == bytes.len() => Some(0),
        Some(sign @ (b'+' | b'-')) => {
            let rest = &bytes[at + 1..];
            let (offset_hours, offset_minutes) = match rest.len() {
                2 => (digits(rest, 0, 2)?, 0),
                4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                _ => return Err(TimeError::NotADateTime),
            };
            if offset_hours > 23 || offset_minutes > 59 {
                return Err(TimeError::BadOffset);
            }
            let magnitude = i64::from(offset_hours * 3600 + offset_minutes * 60);
            Some(if *sign == b'-' { -magnitude } else { magnitude })
        }
        Some(_) => return Err(TimeError::NotADateTime),
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return Err(TimeError::NoSuchDate),
    };
    // 23:59:60 (a leap second) is refused: no Unix instant names it.
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return Err(TimeError::NoSuchDate);
    }
    Ok(ParsedIso {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        offset_seconds,
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` -> days since 1970-01-01, if it is a real calendar date.
pub fn parse_date(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1 || day < 1 || day > days_in_month {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_real_calendar_days() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2025-13-01"), None);
        assert_eq!(parse_date("2025-1-01"), None);
        assert_eq!(parse_date("2025-01-0x"), None);
    }

    fn now() -> UtcInstant {
        UtcInstant::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
    }

    fn instant(text: &str) -> Result<UtcInstant, TimeError> {
        VisitTime::parse(text, None, now()).map(|t| t.instant())
    }

    #[test]
    fn same_instant_in_different_offsets_is_equal() {
        assert_eq!(
            instant("2025-03-26T10:30:00-07:00").unwrap(),
            instant("2025-03-26T17:30:00Z").unwrap()
        );
        assert_eq!(
            instant("2025-03-26T17:30:00Z").unwrap().sortable(),
            "2025-03-26T17:30:00.000000000Z"
        );
        assert_eq!(
            instant("2025-03-27 03:00:00.5+0930").unwrap().sortable(),
            "2025-03-26T17:30:00.500000000Z"
        );
    }

    #[test]
    fn sortable_digits_match_the_general_form() {
        for nanos in [
            0_i128,
            -1,
            951_782_400_123_456_789_000,
            1_700_000_000_000_000_001,
            -2_208_988_800_000_000_000,
            253_402_300_799_999_999_999,
            253_402_300_800_000_000_000,
            -62_167_219_200_000_000_001,
        ] {
            let instant = UtcInstant::from_unix_nanos(nanos);
            assert_eq!(instant.sortable(), instant.sortable_by_format(), "{nanos}");
        }
        let mut out = String::from("VISIT#");
        instant("2025-03-26T10:30:00.5-07:00")
            .unwrap()
            .push_sortable(&mut out);
        assert_eq!(out, "VISIT#2025-03-26T17:30:00.500000000Z");
    }

    #[test]
    fn sortable_text_orders_like_time() {
        let a = instant("1999-12-31T23:59:59.999Z").unwrap();
        let b = instant("2000-01-01T00:00:00Z").unwrap();
        assert!(a < b);
        assert!(a.sortable() < b.sortable());
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            instant("2025-03-26T10:30:00"),
            Err(TimeError::MissingOffset)
        );
        assert_eq!(instant("2025-02-30T10:30:00Z"), Err(TimeError::NoSuchDate));
        assert_eq!(instant("26/03/2025 10:30"), Err(TimeError::NotADateTime));
        assert_eq!(instant("1899-12-31T23:00:00Z"), Err(TimeError::TooEarly));
        assert_eq!(instant("2026-01-02T00:00:01Z"), Err(TimeError::InFuture));
        assert_eq!(
            instant("2025-03-26T10:30:00+24:00"),
            Err(TimeError::BadOffset)
        );
        assert_eq!(
            instant("2025-03-26T10:30:00Zjunk"),
            Err(TimeError::NotADateTime)
        );
        assert_eq!(
            instant("2025-03-26T10:30:00.1234567891Z"),
            Err(TimeError::NotADateTime)
        );
        assert_eq!(instant(""), Err(TimeError::NotADateTime));
        assert_eq!(
            instant("２０２５-03-26T10:30:00Z"),
            Err(TimeError::NotADateTime)
        );
    }

    #[test]
    fn leap_days_and_boundaries() {
        assert!(instant("2024-02-29T00:00:00Z").is_ok());
        assert_eq!(instant("2023-02-29T00:00:00Z"), Err(TimeError::NoSuchDate));
        assert_eq!(
            instant("1900-01-01T00:00:00Z").unwrap().rfc3339_seconds(),
            "1900-01-01T00:00:00Z"
        );
    }

    #[test]
    fn provider_zone_reads_local_times() {
        let zone = ProviderTimeZone::parse("America/Los_Angeles").unwrap();
        let local = VisitTime::parse("2025-03-26T10:30:00", Some(&zone), now()).unwrap();
        assert_eq!(local.instant(), instant("2025-03-26T17:30:00Z").unwrap());
        assert_eq!(local.as_sent(), "2025-03-26T10:30:00");
        assert!(ProviderTimeZone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-30_000..200_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
