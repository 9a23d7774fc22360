//! Randomness for percentages and jitter: SplitMix64, seeded from config for
//! deterministic tests or from the host's entropy (WASI `random_get`) otherwise.
//! Not for secrets.

/// A small, fast PRNG. One per VM is enough: a draw per request.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn from_seed(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Seeded from WASI's `random_get` (Envoy forwards it to the OS), mixed with the
    /// clock in case the host returns nothing.
    pub fn from_entropy() -> Self {
        let mut seed = crate::host::unix_millis(crate::host::now_or_epoch());
        if let Some(bytes) = entropy() {
            seed ^= u64::from_le_bytes(bytes);
        }
        Self::from_seed(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        // 53 random bits, the precision of an f64 mantissa.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `percent` / 100 (clamped to 0..=100).
    pub fn chance(&mut self, percent: f64) -> bool {
        if percent <= 0.0 {
            return false;
        }
        if percent >= 100.0 {
            return true;
        }
        self.next_f64() * 100.0 < percent
    }
}

#[cfg(target_arch = "wasm32")]
fn entropy() -> Option<[u8; 8]> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> u16;
    }
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for 8 bytes for the duration of the call.
    let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    (errno == 0).then_some(buf)
}

#[cfg(not(target_arch = "wasm32"))]
fn entropy() -> Option<[u8; 8]> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::from_seed(7);
        let mut b = Rng::from_seed(7);
        assert_eq!(
            (0..5).map(|_| a.next_u64()).collect::<Vec<_>>(),
            (0..5).map(|_| b.next_u64()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn chance_tracks_the_percentage() {
        let mut rng = Rng::from_seed(42);
        let hits = (0..100_000).filter(|_| rng.chance(25.0)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert!(!rng.chance(0.0));
        assert!(rng.chance(100.0));
    }

    #[test]
    fn floats_are_in_range() {
        let mut rng = Rng::from_seed(1);
        assert!((0..10_000)
            .map(|_| rng.next_f64())
            .all(|x| (0.0..1.0).contains(&x)));
    }
}
