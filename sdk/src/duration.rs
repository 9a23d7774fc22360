//! Durations in config, written the way Envoy's JSON and Istio's YAML write them:
//! `1s`, `0.25s`, `.5s`, `250ms`, `1.5ms`, `2m`, `1h`. Parsed exactly (no floats: the
//! float parser would also cost module size), into nanoseconds.
//!
//! The units are one table, [`split_unit`], shared with the CLI, whose mesh file takes
//! the same units but reads the number as a float and keeps milliseconds (it runs
//! natively, and its error messages are its own).

use crate::config::ConfigError;
use std::time::Duration;

/// The units a duration may end with, longest first, and their length in nanoseconds.
const UNITS: [(&str, u64); 4] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Splits `250ms` into the number as written (`250`) and its unit in nanoseconds;
/// `None` when the text ends in no unit.
pub fn split_unit(s: &str) -> Option<(&str, u64)> {
    UNITS
        .iter()
        .find_map(|&(unit, ns)| s.strip_suffix(unit).map(|number| (number, ns)))
}

/// Parses a duration into nanoseconds. Errors are at the document root: callers add
/// the field with [`ConfigError::within`].
pub fn parse_nanos(s: &str) -> Result<u64, ConfigError> {
    let bad = || {
        ConfigError::at(
            "",
            format!("`{s}` is not a duration like `1s`, `0.5s` or `250ms`"),
        )
    };
    let (number, unit_ns) = split_unit(s).ok_or_else(bad)?;
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || frac.len() > 9 || !digits(int) || !digits(frac) {
        return Err(bad());
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut frac_ns: u64 = 0;
    let mut scale = unit_ns;
    for d in frac.bytes() {
        scale /= 10;
        frac_ns += u64::from(d - b'0') * scale;
    }
    int.checked_mul(unit_ns)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(|| ConfigError::at("", format!("`{s}` is too long")))
}

/// Parses a duration.
pub fn parse(s: &str) -> Result<Duration, ConfigError> {
    parse_nanos(s).map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_and_istio_forms() {
        assert_eq!(parse_nanos("1s"), Ok(1_000_000_000));
        assert_eq!(parse_nanos("0.25s"), Ok(250_000_000));
        assert_eq!(parse_nanos(".5s"), Ok(500_000_000));
        assert_eq!(parse_nanos("250ms"), Ok(250_000_000));
        assert_eq!(parse_nanos("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_nanos("2m"), Ok(120_000_000_000));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0.6s"), Ok(Duration::from_millis(600)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "",
            "5",
            "s",
            "-1s",
            "1.2.3s",
            ".s",
            "1x",
            "1 s",
            "1d",
            "0.0000000001s",
            "99999999999999h",
            "1e3s",
            "+1s",
            "1.+2s",
            "1ms ",
        ] {
            assert!(parse_nanos(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_quote_the_text_at_the_root() {
        let err = parse_nanos("5").unwrap_err();
        assert_eq!(err.path, "");
        assert_eq!(
            err.message,
            "`5` is not a duration like `1s`, `0.5s` or `250ms`"
        );
        assert_eq!(
            parse_nanos("99999999999999h").unwrap_err().message,
            "`99999999999999h` is too long"
        );
    }

    #[test]
    fn units_split_off_the_end_longest_first() {
        assert_eq!(split_unit("250ms"), Some(("250", 1_000_000)));
        assert_eq!(split_unit("1.5s"), Some(("1.5", 1_000_000_000)));
        assert_eq!(split_unit("2m"), Some(("2", 60_000_000_000)));
        assert_eq!(split_unit("1h"), Some(("1", 3_600_000_000_000)));
        assert_eq!(split_unit("5"), None);
        assert_eq!(split_unit("1d"), None);
    }
}
