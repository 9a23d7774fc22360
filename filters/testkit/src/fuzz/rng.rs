//! The deterministic generator (the SDK's SplitMix64) with the draws the fuzzer needs:
//! an input is its seed, so a seed in the corpus replays exactly the input that found
//! something, with no serialised form.

pub struct Rng {
    inner: wasmesh_sdk::rand::Rng,
    /// Whether the input being made may be huge (1 MiB values, 10k headers...): a few
    /// percent of inputs are, so that the size limits are tried without copying
    /// megabytes into every VM (which made the run memcpy-bound).
    pub huge: bool,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            inner: wasmesh_sdk::rand::Rng::from_seed(seed),
            huge: false,
        }
    }

    /// One of `large` when the current input may be huge, else `small`.
    pub fn size(&mut self, small: usize, large: &[usize]) -> usize {
        if self.huge {
            self.pick(large)
        } else {
            small
        }
    }

    /// Uniform in `0..=size(small, large)`.
    pub fn up_to(&mut self, small: usize, large: &[usize]) -> usize {
        let max = self.size(small, large);
        self.below(max + 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn pick_ref<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Up to `max` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Up to `max` printable ASCII characters, the bulk of what real headers carry.
    pub fn ascii(&mut self, max: usize) -> String {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| char::from(b' ' + self.below(95) as u8))
            .collect()
    }
}

/// Mixes a run's seed with an input's index into the input's own seed.
pub fn input_seed(run_seed: u64, index: u64) -> u64 {
    let mut r = Rng::new(run_seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    r.next_u64()
}
