//! Durations in config, written the way Envoy's JSON and Istio's YAML write them:
//! `1s`, `0.25s`, `.5s`, `250ms`, `1.5ms`, `2m`, `1h`. Parsed exactly (no floats: the
//! float parser would also cost module size), into nanoseconds.

use std::time::Duration;

/// Parses a duration into nanoseconds.
pub fn parse_nanos(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a duration like `1s`, `0.5s` or `250ms`");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = s.split_at(split);
    let unit_ns: u64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 9 {
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
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        scale /= 10;
        frac_ns += u64::from(d - b'0') * scale;
    }
    int.checked_mul(unit_ns)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(|| format!("`{s}` is too long"))
}

/// Parses a duration.
pub fn parse(s: &str) -> Result<Duration, String> {
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
        ] {
            assert!(parse_nanos(bad).is_err(), "{bad}");
        }
    }
}
