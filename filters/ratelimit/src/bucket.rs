//! The token bucket, pure: state in, state and verdict out, time passed explicitly.
//!
//! Refill is lazy: nothing ticks; each take credits the whole fill intervals elapsed
//! since `last_fill`. The anchor advances by whole intervals only (so partial progress
//! towards the next fill is kept), and a full bucket re-anchors at `now` (it cannot
//! bank fills). Both keep the invariant the tests check: from the moment a bucket is
//! created full, over any span T at most `max_tokens + floor(T / fill_interval) *
//! tokens_per_fill` takes succeed.

/// A limit as configured, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_tokens: u64,
    pub tokens_per_fill: u64,
    pub fill_interval_ns: u64,
}

/// One key's bucket, as stored in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub tokens: u64,
    /// When the last fill was credited (or the bucket was created / last full).
    pub last_fill_ns: u64,
}

/// The outcome of one take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Tokens left after this take.
    pub remaining: u64,
    /// Time until the next fill (draft-03 `x-ratelimit-reset`, and `retry-after` when
    /// limited: one fill always brings at least one token).
    pub reset_ns: u64,
}

impl Bucket {
    /// A new key's bucket: full, as Envoy's starts.
    pub fn full(limit: &Limit, now_ns: u64) -> Self {
        Self {
            tokens: limit.max_tokens,
            last_fill_ns: now_ns,
        }
    }

    /// Credits the fills due at `now`. A clock that went backwards credits nothing.
    pub fn refill(&mut self, limit: &Limit, now_ns: u64) {
        let interval = limit.fill_interval_ns.max(1);
        let elapsed = now_ns.saturating_sub(self.last_fill_ns);
        let fills = elapsed / interval;
        if fills > 0 {
            self.tokens = self
                .tokens
                .saturating_add(fills.saturating_mul(limit.tokens_per_fill));
            self.last_fill_ns = self
                .last_fill_ns
                .saturating_add(fills.saturating_mul(interval));
        }
        if self.tokens >= limit.max_tokens {
            // A full bucket has nothing to wait for; later fills count from now. This
            // also clamps a bucket whose limit was lowered by a new config.
            self.tokens = limit.max_tokens;
            self.last_fill_ns = self.last_fill_ns.max(now_ns);
        }
    }

    /// Refills, then takes one token if there is one.
    pub fn take(&mut self, limit: &Limit, now_ns: u64) -> Verdict {
        self.refill(limit, now_ns);
        let allowed = self.tokens > 0;
        if allowed {
            self.tokens -= 1;
        }
        Verdict {
            allowed,
            remaining: self.tokens,
            reset_ns: self.next_fill_in(limit, now_ns),
        }
    }

    /// Whether the bucket is full at `now`: a full bucket is indistinguishable from a
    /// new one, so its slot can be given to another key without changing any verdict.
    pub fn is_idle(&self, limit: &Limit, now_ns: u64) -> bool {
        let mut b = *self;
        b.refill(limit, now_ns);
        b.tokens >= limit.max_tokens
    }

    fn next_fill_in(&self, limit: &Limit, now_ns: u64) -> u64 {
        let interval = limit.fill_interval_ns.max(1);
        let next = self.last_fill_ns.saturating_add(interval);
        // A clock that went backwards must not promise a wait longer than one interval.
        next.saturating_sub(now_ns).min(interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn limit(max: u64, per_fill: u64, interval: u64) -> Limit {
        Limit {
            max_tokens: max,
            tokens_per_fill: per_fill,
            fill_interval_ns: interval,
        }
    }

    #[test]
    fn starts_full_and_drains() {
        let l = limit(3, 1, S);
        let mut b = Bucket::full(&l, 0);
        let got: Vec<bool> = (0..4).map(|_| b.take(&l, 10).allowed).collect();
        assert_eq!(got, [true, true, true, false]);
    }

    #[test]
    fn refills_whole_intervals_and_keeps_partial_progress() {
        let l = limit(10, 2, S);
        let mut b = Bucket {
            tokens: 0,
            last_fill_ns: 0,
        };
        b.refill(&l, S / 2);
        assert_eq!(b.tokens, 0);
        b.refill(&l, 5 * S / 2);
        assert_eq!((b.tokens, b.last_fill_ns), (4, 2 * S));
        b.refill(&l, 3 * S);
        assert_eq!((b.tokens, b.last_fill_ns), (6, 3 * S));
    }

    #[test]
    fn never_exceeds_max_and_reanchors_when_full() {
        let l = limit(5, 5, S);
        let mut b = Bucket {
            tokens: 4,
            last_fill_ns: 0,
        };
        b.refill(&l, 100 * S + 7);
        assert_eq!((b.tokens, b.last_fill_ns), (5, 100 * S + 7));
    }

    #[test]
    fn clock_going_backwards_credits_nothing() {
        let l = limit(5, 1, S);
        let mut b = Bucket {
            tokens: 1,
            last_fill_ns: 10 * S,
        };
        let v = b.take(&l, 5 * S);
        assert!(v.allowed);
        assert_eq!(b.tokens, 0);
        assert!(v.reset_ns <= S);
        assert!(!b.take(&l, 5 * S).allowed);
    }

    #[test]
    fn verdict_reports_remaining_and_time_to_next_fill() {
        let l = limit(2, 1, S);
        let mut b = Bucket::full(&l, 0);
        let v = b.take(&l, S / 4);
        assert_eq!((v.allowed, v.remaining), (true, 1));
        // The bucket was full at S/4, so the next fill is one interval after that.
        assert_eq!(v.reset_ns, S);
        b.take(&l, S / 2);
        let v = b.take(&l, S / 2);
        assert_eq!((v.allowed, v.remaining, v.reset_ns), (false, 0, 3 * S / 4));
    }

    #[test]
    fn invariant_holds_for_a_request_every_millisecond() {
        let l = limit(7, 3, 250_000_000);
        let mut b = Bucket::full(&l, 0);
        let mut allowed = 0u64;
        for ms in 0..=10_002u64 {
            let now = ms * 1_000_000;
            if b.take(&l, now).allowed {
                allowed += 1;
            }
            let bound = l.max_tokens + (now / l.fill_interval_ns) * l.tokens_per_fill;
            assert!(allowed <= bound, "at {ms} ms: {allowed} > {bound}");
        }
        // Saturated demand gets exactly the bound (40 fills by 10.002 s).
        assert_eq!(allowed, 7 + 40 * 3);
    }

    #[test]
    fn idle_means_full_by_now() {
        let l = limit(4, 2, S);
        let b = Bucket {
            tokens: 1,
            last_fill_ns: 0,
        };
        assert!(!b.is_idle(&l, S));
        assert!(b.is_idle(&l, 2 * S));
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let l = limit(u64::MAX, u64::MAX, 1);
        let mut b = Bucket {
            tokens: 0,
            last_fill_ns: 0,
        };
        let v = b.take(&l, u64::MAX);
        assert!(v.allowed);
        assert_eq!(v.remaining, u64::MAX - 1);
    }
}
