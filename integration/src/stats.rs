//! Bounds for ratios the tests measure, derived from the sample size.
//!
//! A test that counts how often something random happened (a fault's aborts, a
//! canary's share) must allow for chance. The bound is five standard deviations of
//! the binomial count: a correct mesh fails it about once in two million runs, while a
//! policy that is really off (aborting 20% instead of 10%) is still caught at a few
//! hundred samples.

/// How many standard deviations a measured count may be from its expectation.
pub const SIGMAS: f64 = 5.0;

/// The allowed distance, in percentage points, of a share measured over `n` trials
/// from the expected `percent`.
#[must_use]
pub fn percent_tolerance(n: usize, percent: f64) -> f64 {
    let p = percent / 100.0;
    #[allow(clippy::cast_precision_loss)] // n is at most a few thousand.
    let n = n as f64;
    100.0 * SIGMAS * (p * (1.0 - p) / n).sqrt()
}

/// The allowed distance of a count from `n * p` over `n` trials at probability `p`.
#[must_use]
pub fn count_tolerance(n: usize, p: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // n is at most a few thousand.
    let n = n as f64;
    SIGMAS * (n * p * (1.0 - p)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_percent_over_500_allows_about_6_7_points() {
        let t = percent_tolerance(500, 10.0);
        assert!((t - 6.708).abs() < 0.01, "{t}");
    }

    #[test]
    fn count_and_percent_agree() {
        let n = 2000;
        let by_count = 100.0 * count_tolerance(n, 0.2) / 2000.0;
        assert!((by_count - percent_tolerance(n, 20.0)).abs() < 1e-9);
    }
}
