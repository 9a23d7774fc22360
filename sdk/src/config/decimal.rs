//! Floats in error messages and keys, printed without core's float formatting (18 KB
//! in every module, linked by a single `{}` of an `f64`).

/// `x` as the shortest decimal with at most 15 fraction digits that parses back to
/// it (`1.5`, `-0.25`, `3.0`), using integer formatting only; `None` when there is
/// none. Exact: `n / 10^k` with both exact in f64 is correctly rounded, as parsing
/// the decimal text is, so a match is the value the config's author wrote.
pub fn shortest_decimal(x: f64) -> Option<String> {
    let mut scale = 1.0_f64;
    for digits in 0..=15usize {
        let scaled = (x * scale).round();
        if scaled.abs() < 9_007_199_254_740_992.0 && scaled / scale == x {
            // In range, so the cast is exact.
            let n = scaled as i64;
            let magnitude = n.unsigned_abs().to_string();
            let sign = if x.is_sign_negative() { "-" } else { "" };
            if digits == 0 {
                return Some(format!("{sign}{magnitude}.0"));
            }
            let padded = format!("{magnitude:0>width$}", width = digits + 1);
            let (whole, fraction) = padded.split_at(padded.len() - digits);
            return Some(format!("{sign}{whole}.{fraction}"));
        }
        scale *= 10.0;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_written() {
        for (x, text) in [
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (3.0, "3.0"),
            (0.1, "0.1"),
            (1.1, "1.1"),
            (123456.789, "123456.789"),
            (0.000001, "0.000001"),
            (-0.0, "-0.0"),
            (std::f64::consts::PI, "3.141592653589793"),
        ] {
            assert_eq!(shortest_decimal(x).as_deref(), Some(text), "{x}");
        }
    }

    #[test]
    fn floats_without_a_short_decimal_are_not_printed() {
        assert_eq!(shortest_decimal(1e300), None);
        assert_eq!(shortest_decimal(0.1 + 0.2), None);
        assert_eq!(shortest_decimal(1e-20), None);
    }
}
