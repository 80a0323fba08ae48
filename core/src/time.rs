//! Timestamps as stored (unix microseconds, an `i64` in both backends) and as shown on the
//! wire (RFC 3339 UTC with the sub-second digits kept, as the e2a contract does).

use std::fmt;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// One day, in the microseconds timestamps count.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// A point in time with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_offset(OffsetDateTime::now_utc())
    }

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub fn from_offset(t: OffsetDateTime) -> Self {
        let micros = t.unix_timestamp_nanos() / 1_000;
        Self(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    /// Parses an RFC 3339 timestamp with any offset; `None` when it is not one.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        OffsetDateTime::parse(s, &Rfc3339).ok().map(Self::from_offset)
    }

    /// [`Timestamp::parse_rfc3339`], also taking what e2a's SDKs send: an offset without a
    /// colon (`+0000`, Python's `%z`) and, when `naive_is_utc`, no offset at all.
    pub fn parse_lenient(s: &str, naive_is_utc: bool) -> Option<Self> {
        if let Some(t) = Self::parse_rfc3339(s) {
            return Some(t);
        }
        let b = s.as_bytes();
        let n = b.len();
        // `…±HHMM` → `…±HH:MM`
        if n > 5 && matches!(b[n - 5], b'+' | b'-') && b[n - 4..].iter().all(u8::is_ascii_digit) {
            return Self::parse_rfc3339(&format!("{}:{}", &s[..n - 2], &s[n - 2..]));
        }
        if naive_is_utc && n >= 19 && b[n - 1].is_ascii_digit() {
            return Self::parse_rfc3339(&format!("{s}Z"));
        }
        None
    }

    pub fn plus_micros(self, micros: i64) -> Self {
        Self(self.0.saturating_add(micros))
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// RFC 3339 in UTC, `Z` suffix, with microseconds when they are not zero.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000;
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
        let (h, mi, s) = (t.hour(), t.minute(), t.second());
        let micros = t.microsecond();
        if micros == 0 {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
        } else {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}Z")
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lenient_parsing_takes_the_sdks_forms() {
        use super::Timestamp;
        let utc = Timestamp::parse_rfc3339("2026-07-01T00:00:00Z").expect("rfc3339");
        assert_eq!(Timestamp::parse_lenient("2026-07-01T00:00:00.000000+0000", false), Some(utc));
        assert_eq!(Timestamp::parse_lenient("2026-07-01T02:00:00+0200", false), Some(utc));
        assert_eq!(Timestamp::parse_lenient("2026-07-01T00:00:00.000000", true), Some(utc));
        assert_eq!(Timestamp::parse_lenient("2026-07-01T00:00:00", false), None);
        assert_eq!(Timestamp::parse_lenient("yesterday", true), None);
    }

    use super::*;

    #[test]
    fn formats_with_and_without_fraction() {
        assert_eq!(Timestamp::from_micros(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_micros(1_782_901_800_123_456).to_rfc3339(), "2026-07-01T10:30:00.123456Z");
    }

    #[test]
    fn parses_offsets_and_round_trips() {
        let t = Timestamp::parse_rfc3339("2026-07-01T12:30:00.5+02:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-07-01T10:30:00.500000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }
}
