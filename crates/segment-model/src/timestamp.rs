//! Date-times: the ones clients send, parsed leniently, and the ones enrichment writes, formatted as Segment does.

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// The client's times as validation found them: absent (`None`), a string that is no date-time (`Some(None)`), or
/// a date-time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientTimes {
    pub(crate) timestamp: Option<Option<OffsetDateTime>>,
    pub(crate) sent_at: Option<Option<OffsetDateTime>>,
    pub(crate) original_timestamp: Option<Option<OffsetDateTime>>,
}

/// Formats a time as Segment does: RFC 3339 in UTC with milliseconds, `2026-11-25T23:54:55.123Z`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let mut out = String::with_capacity(24);
    write_timestamp(&mut out, at);
    out
}

/// A time as a JSON string, quotes included: what enrichment stores.
pub(crate) fn timestamp_json(at: OffsetDateTime) -> String {
    let mut out = String::with_capacity(26);
    out.push('"');
    write_timestamp(&mut out, at);
    out.push('"');
    out
}

/// Every message's enrichment formats one or two times, so the usual four-digit years are written digit by digit
/// rather than through `fmt` (a few percent of ingest's CPU); other years take `fmt`'s path.
fn write_timestamp(out: &mut String, at: OffsetDateTime) {
    let at = at.to_offset(UtcOffset::UTC);
    let (year, month, day) = at.to_calendar_date();
    let (hour, minute, second, milli) = at.to_hms_milli();
    if !(0..=9999).contains(&year) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{year:04}-{:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z", u8::from(month));
        return;
    }
    let digits = |out: &mut String, value: u32, width: u32| {
        for place in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
        }
    };
    digits(out, year as u32, 4);
    out.push('-');
    digits(out, u32::from(u8::from(month)), 2);
    out.push('-');
    digits(out, u32::from(day), 2);
    out.push('T');
    digits(out, u32::from(hour), 2);
    out.push(':');
    digits(out, u32::from(minute), 2);
    out.push(':');
    digits(out, u32::from(second), 2);
    out.push('.');
    digits(out, u32::from(milli), 3);
    out.push('Z');
}

/// Parses the date-times Segment's libraries send: RFC 3339, or ISO 8601 without an offset (taken as UTC).
pub(crate) fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at);
    }
    let local =
        format_description!(version = 2, "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");
    PrimitiveDateTime::parse(text, local).ok().map(PrimitiveDateTime::assume_utc)
}

/// `received - (sent - client)`: the client's time moved onto the server's clock, or `None` when the result would
/// leave the years 0 to 9999, which RFC 3339 can write (a client whose clocks are that far apart gets no
/// correction).
pub(crate) fn correct_skew(
    received: OffsetDateTime,
    sent: OffsetDateTime,
    client: OffsetDateTime,
) -> Option<OffsetDateTime> {
    // The difference of two representable times always fits a Duration; only the last step can leave the range.
    let corrected = received.checked_sub(sent - client)?;
    (0..=9999).contains(&corrected.year()).then_some(corrected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_correction_stays_in_range() {
        let at = |text| parse_timestamp(text).unwrap();
        let received = at("2026-11-25T12:00:00Z");
        assert_eq!(
            correct_skew(received, at("2026-11-25T12:00:10Z"), at("2026-11-25T12:00:05Z")),
            Some(at("2026-11-25T11:59:55Z"))
        );
        assert_eq!(correct_skew(received, at("0001-01-01T00:00:00Z"), at("9999-12-31T00:00:00Z")), None);
        assert_eq!(correct_skew(received, at("9999-12-31T23:59:59Z"), at("0000-01-01T00:00:00Z")), None);
    }

    #[test]
    fn formats_as_segment_does_across_the_range() {
        let reference = |at: OffsetDateTime| {
            let at = at.to_offset(UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second(),
                at.millisecond()
            )
        };
        let mut seconds = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT).unix_timestamp();
        let last = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT).unix_timestamp();
        let step = (last - seconds) / 10_007;
        while seconds <= last {
            let at = OffsetDateTime::from_unix_timestamp(seconds).unwrap()
                + time::Duration::milliseconds(seconds.rem_euclid(1000));
            assert_eq!(format_timestamp(at), reference(at));
            assert_eq!(timestamp_json(at), format!("\"{}\"", reference(at)));
            seconds += step;
        }
        let at = parse_timestamp("2026-11-25T23:54:55.123+01:00").unwrap();
        assert_eq!(format_timestamp(at), "2026-11-25T22:54:55.123Z");
    }
}
