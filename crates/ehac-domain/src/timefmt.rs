//! The form's date and time formats, parsed once. `NaiveDate::parse_from_str` re-reads its
//! format string on every call, a visible part of the enricher's per-record time; these
//! parse with the same chrono items, read once, so they accept exactly what it accepts.

use std::sync::LazyLock;

use chrono::format::{parse, Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};

fn items(format: &'static str) -> Vec<Item<'static>> {
    StrftimeItems::new(format).collect()
}

static DATE: LazyLock<Vec<Item<'static>>> = LazyLock::new(|| items("%Y-%m-%d"));
static LOCAL_MINUTES: LazyLock<Vec<Item<'static>>> = LazyLock::new(|| items("%Y-%m-%dT%H:%M"));
static LOCAL_SECONDS: LazyLock<Vec<Item<'static>>> = LazyLock::new(|| items("%Y-%m-%dT%H:%M:%S"));
static OFFSET_MINUTES: LazyLock<Vec<Item<'static>>> = LazyLock::new(|| items("%Y-%m-%dT%H:%M%:z"));

/// `YYYY-MM-DD`.
pub fn date(value: &str) -> Option<NaiveDate> {
    let mut parsed = Parsed::new();
    parse(&mut parsed, value, DATE.iter()).ok()?;
    parsed.to_naive_date().ok()
}

/// `YYYY-MM-DDTHH:MM`, or with `:SS`.
pub fn local_time(value: &str) -> Option<NaiveDateTime> {
    [&*LOCAL_MINUTES, &*LOCAL_SECONDS].into_iter().find_map(|items| {
        let mut parsed = Parsed::new();
        parse(&mut parsed, value, items.iter()).ok()?;
        parsed.to_naive_datetime_with_offset(0).ok()
    })
}

/// `YYYY-MM-DDTHH:MM` with an offset (`+07:00`, `Z`): RFC 3339 less its seconds, which
/// travellers and kiosks write as often as the local form without them.
pub fn offset_time(value: &str) -> Option<DateTime<FixedOffset>> {
    let with_offset = match value.strip_suffix(['Z', 'z']) {
        Some(utc) => std::borrow::Cow::Owned(format!("{utc}+00:00")),
        None => std::borrow::Cow::Borrowed(value),
    };
    let mut parsed = Parsed::new();
    parse(&mut parsed, &with_offset, OFFSET_MINUTES.iter()).ok()?;
    parsed.to_datetime().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_what_parse_from_str_accepts() {
        for value in ["2024-02-29", "2023-02-29", "1999-12-31", "2024-1-5", "2024-01-05x", "", "24-01-05", "2024-13-01", " 2024-01-05"] {
            assert_eq!(date(value), NaiveDate::parse_from_str(value, "%Y-%m-%d").ok(), "{value:?}");
        }
        for value in [
            "2026-12-20T07:30",
            "2026-12-20T07:30:15",
            "2026-12-20T24:00",
            "2026-12-20 07:30",
            "2026-12-20T07:30Z",
            "2026-12-20T7:30",
            "2026-12-20T07:30:60",
        ] {
            let reference = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
                .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
                .ok();
            assert_eq!(local_time(value), reference, "{value:?}");
        }
    }

    #[test]
    fn an_offset_without_seconds_is_an_instant() {
        let expected = DateTime::parse_from_rfc3339("2026-12-20T22:00:00+07:00").unwrap();
        assert_eq!(offset_time("2026-12-20T22:00+07:00"), Some(expected));
        assert_eq!(offset_time("2026-12-20T15:00Z"), Some(expected));
        for garbage in [
            "2026-12-20T22:00+0700x",
            "2026-12-20T22:00+25:00",
            "2026-12-20T22:00",
            "2026-12-20 22:00+07:00",
            "2026-12-20T22:00+07:00:00",
            "Z",
            "",
        ] {
            assert_eq!(offset_time(garbage), None, "{garbage:?}");
        }
    }
}
