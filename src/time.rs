//! Moments on the monotonic clock, as one count of nanoseconds: the `Instant` the loop
//! reads once a turn and hands to the node, the connections and the timers.
//!
//! `std::time::Instant` holds seconds and nanoseconds apart: every comparison is two, and
//! every difference or sum carries between them (checked, then normalized). Each message
//! compares and subtracts moments several times (its connection's second, the history's
//! wall-clock date, the earliest deadline), and these cost about 150 instructions per
//! one-message connection in a loop turn of its own, 5% of all its work. One `u64` of
//! nanoseconds makes each an instruction or two, and a moment half the size (8 bytes).
//! It lasts 584 years from the clock's origin (the boot, on Linux).
//!
//! The API is the part of std's that peerchat uses, so that the code reads the same, plus
//! whole seconds and milliseconds between two moments; sums and differences saturate at
//! the ends of the range instead of panicking. The simulator makes moments of its own with
//! `Instant::from_nanos`: its virtual clock needs no real one.

use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A moment on the monotonic clock (`CLOCK_MONOTONIC`), in nanoseconds from its origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Instant(u64);

impl Instant {
    /// Now, on the monotonic clock: glibc's `clock_gettime`, which std's `Instant::now`
    /// calls too (through the vDSO: no system call).
    #[inline]
    pub fn now() -> Instant {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // Still `unsafe` and `libc`: std keeps its reading's nanoseconds to itself, and
        // rustix's own vDSO reader crashes under valgrind, which the benchmark runs.
        // SAFETY: `t` is a valid, writable timespec for the call's duration.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        // It fails only for an unknown clock (this one every Linux has) or a bad pointer
        // (not this one); std's `Instant::now` panics if it does. Checked in debug builds
        // (the tests); a release build would read the clock's origin, and no timer fire.
        debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
        // The monotonic clock never reads negative; a negative field would count as 0.
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
        Instant(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos))
    }

    /// A moment this many nanoseconds from the clock's origin (for the simulator's clock).
    #[cfg(test)]
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// How long from `earlier` to this moment; zero if `earlier` is later.
    #[inline]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Whole seconds from `earlier` to this moment; zero if `earlier` is later. (A division
    /// by a constant: no `Duration` made and taken apart, once per message.)
    #[inline]
    pub fn secs_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0) / NANOS_PER_SEC
    }

    /// Whole milliseconds from `earlier` to this moment; zero if `earlier` is later.
    #[inline]
    pub fn millis_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000_000
    }

    /// How long from `earlier` to this moment, or `None` if `earlier` is later.
    #[inline]
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A duration in nanoseconds, as far as a `u64` counts (584 years).
#[inline]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of the clock's range: a deadline that far is never reached.
    #[inline]
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Instant {
    #[inline]
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl SubAssign<Duration> for Instant {
    #[inline]
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the clock's origin.
    #[inline]
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(nanos(d)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// As [`Instant::saturating_duration_since`].
    #[inline]
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_sums_are_exact_and_saturate_at_the_ends() {
        let t = Instant::from_nanos(1_500_000_000);
        let later = t + Duration::from_millis(2_700);
        assert_eq!(later, Instant::from_nanos(4_200_000_000));
        assert_eq!(
            later.saturating_duration_since(t),
            Duration::from_millis(2_700)
        );
        assert_eq!(t.saturating_duration_since(later), Duration::ZERO);
        assert_eq!(later - t, Duration::from_millis(2_700));
        assert_eq!((later.secs_since(t), later.millis_since(t)), (2, 2_700));
        assert_eq!((t.secs_since(later), t.millis_since(later)), (0, 0));
        assert_eq!(t.checked_duration_since(later), None);
        assert_eq!(
            later.checked_duration_since(t),
            Some(Duration::from_millis(2_700))
        );
        assert_eq!(t - Duration::from_secs(2), Instant::from_nanos(0));
        assert_eq!(t + Duration::MAX, Instant::from_nanos(u64::MAX));
        let mut u = t;
        u += Duration::from_nanos(1);
        assert!(u > t);
        u -= Duration::from_nanos(2);
        assert!(u < t);
    }

    #[test]
    fn the_clock_reads_forward() {
        let a = Instant::now();
        let b = Instant::now();
        assert!(b >= a);
        assert!(a > Instant::from_nanos(0));
    }
}
