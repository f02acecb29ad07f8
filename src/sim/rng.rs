//! A small seeded pseudo-random generator (splitmix64) for the simulator: every choice a
//! simulated run makes (latencies, faults, chunking, workload) comes from one of these, so
//! a run is a pure function of its seed and replays exactly. Not for anything secret.

use std::time::Duration;

/// splitmix64: one `u64` of state, good statistical quality, a few lines.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole future is decided by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0), without modulo bias worth speaking of.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    /// Uniform in `0..len` (0 when `len` is 0).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `p` (0 never, 1 always).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// Uniform in `lo..=hi`, to the nanosecond (`lo` when `hi <= lo`).
    pub(crate) fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX - 1);
        lo + Duration::from_nanos(self.below(span + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_decides_the_whole_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let again: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(first, again);
        assert_ne!(Rng::new(8).next_u64(), first[0]);
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut r = Rng::new(1);
        let (lo, hi) = (Duration::from_millis(3), Duration::from_millis(5));
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            assert_eq!(r.below(0), 0);
            let d = r.between(lo, hi);
            assert!(d >= lo && d <= hi, "{d:?}");
        }
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
    }
}
