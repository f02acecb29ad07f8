//! Liveness: which known peers still answer, checked in the background.
//!
//! Every known peer is checked with a bare connection attempt (connect, then close
//! without sending: the protocol's liveness probe) about once per interval, with ±20%
//! jitter so that checks do not bunch up. A peer that talks to us needs no check: hearing
//! from it counts as an answer and pushes its next check back. After `failures` checks in
//! a row fail, the peer is unreachable; it is then checked with doubling back-off (never
//! past the end of the grace period) and removed if it still fails when the grace period,
//! four intervals, is over. A failed check below that count is retried after a fifth of
//! an interval, so that a vanished peer is noticed within about 1.4 intervals while live
//! peers see one check per interval at most (none while they talk to us or we to them).
//! At most `max_in_flight` checks run at once, however many peers are known.
//!
//! Pure: the node feeds it the clock and check results; it answers which peers to check.

use crate::time::Instant;
use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;
use std::time::Duration;

use crate::node::timers::{TimerId, Timers};

/// Checks allowed in flight at once.
pub const MAX_CHECKS_IN_FLIGHT: usize = 32;

/// What a check result means for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed that the user needs to hear about.
    Unchanged,
    /// It answered again after being unreachable.
    Back,
    /// It just failed its n-th check in a row: mark it unreachable.
    Unreachable(u32),
    /// Unreachable for the whole grace period: remove it.
    Remove,
}

#[derive(Debug)]
struct Watch {
    /// Its entry in the schedule (cancelled when the peer is forgotten).
    entry: TimerId,
    next: Instant,
    failures: u32,
    unreachable_since: Option<Instant>,
    in_flight: bool,
}

/// The longest interval between checks; a longer one (a program embedding peerchat sets its
/// own `Limits`, up to `Duration::MAX`) counts as this. Checks then never come in practice,
/// and every deadline stays inside the clock's range (584 years): unclamped, a deadline
/// and the "due within a tenth of an interval" horizon both saturated at its end, and
/// every check came due at once.
const MAX_INTERVAL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The liveness schedule of every known peer.
#[derive(Debug)]
pub struct Liveness {
    interval: Duration,
    failures: u32,
    grace: Duration,
    watches: HashMap<SocketAddr, Watch>,
    /// Scheduled checks, one entry per watched peer: an entry may be early (its peer heard
    /// from since) and is then moved when it comes due, so hearing from a peer costs no
    /// tree update; a forgotten peer's entry is cancelled, so peers that come and go
    /// leave nothing behind.
    schedule: Timers<SocketAddr>,
    in_flight: usize,
    rng: u64,
}

impl Liveness {
    /// Checks every `interval` (zero turns checking off); `failures` checks in a row make
    /// a peer unreachable, and four more intervals without an answer remove it.
    pub fn new(interval: Duration, failures: u32) -> Self {
        let interval = interval.min(MAX_INTERVAL);
        Liveness {
            interval,
            failures: failures.max(1),
            grace: interval * 4,
            watches: HashMap::new(),
            schedule: Timers::default(),
            in_flight: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Seeds the jitter, so that peers started alike do not check in step.
    pub fn seeded(mut self, seed: u64) -> Self {
        // xorshift needs a state that is not zero.
        self.rng = seed.max(1);
        self
    }

    /// Whether checks are on.
    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    /// Starts watching `addr` (no effect if already watched).
    pub fn track(&mut self, addr: SocketAddr, now: Instant) {
        if !self.enabled() || self.watches.contains_key(&addr) {
            return;
        }
        let next = now + self.jittered(self.interval);
        let entry = self.schedule.insert(next, addr);
        self.watches.insert(
            addr,
            Watch {
                entry,
                next,
                failures: 0,
                unreachable_since: None,
                in_flight: false,
            },
        );
    }

    /// We heard from `addr`: it is alive; its next check moves back a full interval.
    #[inline]
    pub fn heard(&mut self, addr: SocketAddr, now: Instant) {
        if self.enabled() {
            self.heard_watched(addr, now);
        }
        // Otherwise nothing is watched: no lookup per message, nor a call.
    }

    fn heard_watched(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(w) = self.watches.get_mut(&addr) {
            w.failures = 0;
            w.unreachable_since = None;
            w.next = now + self.interval;
        } else {
            self.track(addr, now);
        }
    }

    /// Stops watching `addr` (it left).
    pub fn forget(&mut self, addr: SocketAddr) {
        if let Some(w) = self.watches.remove(&addr) {
            if w.in_flight {
                self.in_flight -= 1;
            } else {
                self.schedule.cancel(w.entry);
            }
        }
    }

    /// When the next check may be due; `None` while the in-flight bound is reached (a
    /// finishing check makes room, and the caller asks again then), so that an overdue
    /// check waiting for room does not make the loop spin.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.in_flight >= MAX_CHECKS_IN_FLIGHT {
            return None;
        }
        self.schedule.next_deadline()
    }

    /// Peers whose check is due now, within the in-flight bound. Checks due within the
    /// next tenth of an interval run now too: a peer that knows many peers then wakes up a
    /// few times per interval, not once per peer.
    pub fn due(&mut self, now: Instant, out: &mut Vec<SocketAddr>) {
        let horizon = now + self.interval / 10;
        while self.in_flight < MAX_CHECKS_IN_FLIGHT {
            if self
                .schedule
                .next_deadline()
                .is_none_or(|when| when > horizon)
            {
                return;
            }
            let Some(addr) = self.schedule.pop_first() else {
                return;
            };
            let Some(w) = self.watches.get_mut(&addr) else {
                continue; // forgotten
            };
            if w.in_flight {
                continue;
            }
            if w.next > horizon {
                // Heard from since this entry was made: check later.
                w.entry = self.schedule.insert(w.next, addr);
                continue;
            }
            w.in_flight = true;
            self.in_flight += 1;
            out.push(addr);
        }
        // Checks beyond the bound wait for running ones to finish.
    }

    /// The result of a check started by [`Liveness::due`], for a peer that may be removed.
    #[cfg(test)]
    pub fn result(&mut self, addr: SocketAddr, answered: bool, now: Instant) -> Verdict {
        self.result_of(addr, answered, now, true)
    }

    /// The result of a check started by [`Liveness::due`]. A peer that is not
    /// `removable` (one the user configured) is never [`Verdict::Remove`]d: once the grace
    /// period is over it stays unreachable and is checked every eight intervals, the
    /// longest back-off, so that it is noticed when it comes (back).
    pub fn result_of(
        &mut self,
        addr: SocketAddr,
        answered: bool,
        now: Instant,
        removable: bool,
    ) -> Verdict {
        let (interval, failures_allowed, grace) = (self.interval, self.failures, self.grace);
        let jitter = self.jittered(interval);
        let Some(w) = self.watches.get_mut(&addr) else {
            return Verdict::Unchanged;
        };
        if !w.in_flight {
            // A late result of a check started before the peer was forgotten and tracked
            // anew: it says nothing about the new watch.
            return Verdict::Unchanged;
        }
        w.in_flight = false;
        self.in_flight -= 1;
        let verdict = if answered {
            let back = w.unreachable_since.is_some();
            w.failures = 0;
            w.unreachable_since = None;
            w.next = now + jitter;
            if back {
                Verdict::Back
            } else {
                Verdict::Unchanged
            }
        } else {
            w.failures += 1;
            if w.failures < failures_allowed {
                // A failed check is retried sooner: a vanished peer is noticed within
                // about 1.4 intervals, and only a peer that is gone costs the retries.
                w.next = now + jitter / 5;
                Verdict::Unchanged
            } else if now.saturating_duration_since(*w.unreachable_since.get_or_insert(now))
                >= grace
            {
                if removable {
                    Verdict::Remove
                } else {
                    w.next = now + jitter * 8;
                    Verdict::Unchanged
                }
            } else {
                // Back off (1, 2, 4, 8 intervals between checks of a dead peer), but check
                // once more when the grace period ends, so removal comes on time.
                let k = (w.failures - failures_allowed).min(3);
                let since = w.unreachable_since.unwrap_or(now);
                w.next = (now + jitter * (1 << k)).min(since + grace);
                if w.failures == failures_allowed {
                    Verdict::Unreachable(w.failures)
                } else {
                    Verdict::Unchanged
                }
            }
        };
        if verdict == Verdict::Remove {
            self.watches.remove(&addr);
        } else {
            w.entry = self.schedule.insert(w.next, addr);
        }
        verdict
    }

    /// `base` ± 20%, from a small xorshift generator (no crate needed for this).
    fn jittered(&mut self, base: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let permille = 800 + (self.rng % 401); // 800..=1200
        base * permille as u32 / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    const SEC: Duration = Duration::from_secs(1);

    fn due(l: &mut Liveness, now: Instant) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        l.due(now, &mut out);
        out
    }

    #[test]
    fn disabled_checks_nothing() {
        let mut l = Liveness::new(Duration::ZERO, 3);
        let t0 = Instant::now();
        l.track(addr("127.0.0.2:1"), t0);
        assert_eq!(l.next_deadline(), None);
    }

    /// An interval as long as a `Duration` holds (a program embedding peerchat sets its
    /// own `Limits`): nothing overflows, and the check never comes due.
    #[test]
    fn the_longest_interval_is_never_due() {
        let mut l = Liveness::new(Duration::MAX, 3);
        let t0 = Instant::now();
        l.track(addr("127.0.0.2:1"), t0);
        l.heard(addr("127.0.0.2:1"), t0);
        assert!(due(&mut l, t0 + 100_000 * SEC).is_empty());
    }

    #[test]
    fn checks_are_jittered_around_the_interval() {
        let mut l = Liveness::new(10 * SEC, 3);
        let t0 = Instant::now();
        for port in 1..50 {
            l.track(SocketAddr::new([127, 0, 0, 2].into(), port), t0);
        }
        assert!(due(&mut l, t0 + 6 * SEC).is_empty());
        assert_eq!(
            due(&mut l, t0 + 13 * SEC).len(),
            MAX_CHECKS_IN_FLIGHT.min(49)
        );
    }

    #[test]
    fn checks_are_spread_over_the_jitter_window() {
        let mut l = Liveness::new(10 * SEC, 3);
        let t0 = Instant::now();
        let mut whens = Vec::new();
        // Met one at a time, each checked and then gone, so that its check time shows.
        for a in peers(200) {
            l.track(a, t0);
            whens.push(l.next_deadline().expect("scheduled"));
            assert_eq!(due(&mut l, t0 + 100 * SEC), vec![a]);
            l.forget(a);
        }
        whens.sort();
        whens.dedup();
        assert!(whens.len() > 150, "{} distinct times", whens.len());
        let (first, last) = (whens[0] - t0, whens[whens.len() - 1] - t0);
        assert!(first >= 8 * SEC && last <= 12 * SEC, "{first:?}..{last:?}");
        assert!(first < 9 * SEC && last > 11 * SEC, "{first:?}..{last:?}");
    }

    #[test]
    fn checks_close_together_share_a_wake_up() {
        let mut l = Liveness::new(10 * SEC, 3);
        let t0 = Instant::now();
        for port in 1..=30 {
            l.track(SocketAddr::new([127, 0, 0, 2].into(), port), t0);
        }
        // 30 checks spread over 8..12 s: a handful of wake-ups, not 30.
        let mut wake_ups = 0;
        let mut checked = 0;
        while let Some(when) = l.next_deadline() {
            if when > t0 + 13 * SEC {
                break;
            }
            wake_ups += 1;
            let batch = due(&mut l, when);
            checked += batch.len();
            for addr in batch {
                l.result(addr, true, when);
            }
        }
        assert_eq!(checked, 30);
        assert!(wake_ups <= 5, "{wake_ups} wake-ups");
    }

    #[test]
    fn hearing_from_a_peer_postpones_its_check() {
        let mut l = Liveness::new(10 * SEC, 3);
        let t0 = Instant::now();
        let a = addr("127.0.0.2:1");
        l.track(a, t0);
        l.heard(a, t0 + 9 * SEC);
        assert!(due(&mut l, t0 + 13 * SEC).is_empty());
        assert_eq!(due(&mut l, t0 + 19 * SEC), vec![a]);
    }

    #[test]
    fn failures_make_unreachable_then_removed_after_grace() {
        let mut l = Liveness::new(SEC, 2);
        let a = addr("127.0.0.2:1");
        let mut now = Instant::now();
        l.track(a, now);
        let mut verdicts = Vec::new();
        for _ in 0..20 {
            now += 10 * SEC;
            if due(&mut l, now) == vec![a] {
                let v = l.result(a, false, now);
                verdicts.push(v);
                if v == Verdict::Remove {
                    break;
                }
            }
        }
        assert_eq!(verdicts[0], Verdict::Unchanged);
        assert_eq!(verdicts[1], Verdict::Unreachable(2));
        assert_eq!(verdicts.last(), Some(&Verdict::Remove));
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn removal_comes_when_the_grace_period_ends() {
        let mut l = Liveness::new(SEC, 1);
        let a = addr("127.0.0.2:1");
        let t0 = Instant::now();
        l.track(a, t0);
        let mut unreachable_at = None;
        let mut now = t0;
        while now < t0 + 30 * SEC {
            now += SEC / 10;
            if due(&mut l, now) == vec![a] {
                match l.result(a, false, now) {
                    Verdict::Unreachable(_) => unreachable_at = Some(now),
                    Verdict::Remove => break,
                    _ => {}
                }
            }
        }
        let took = now - unreachable_at.expect("became unreachable");
        assert!(took >= 4 * SEC && took <= 4 * SEC + SEC / 2, "{took:?}");
    }

    #[test]
    fn an_answer_brings_a_peer_back() {
        let mut l = Liveness::new(SEC, 1);
        let a = addr("127.0.0.2:1");
        let t0 = Instant::now();
        l.track(a, t0);
        assert_eq!(due(&mut l, t0 + 2 * SEC), vec![a]);
        assert_eq!(l.result(a, false, t0 + 2 * SEC), Verdict::Unreachable(1));
        assert_eq!(due(&mut l, t0 + 4 * SEC), vec![a]);
        assert_eq!(l.result(a, true, t0 + 4 * SEC), Verdict::Back);
    }

    fn peers(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|port| SocketAddr::new([127, 0, 0, 2].into(), port))
            .collect()
    }

    #[test]
    fn forgetting_a_peer_mid_check_frees_its_slot() {
        let mut l = Liveness::new(SEC, 3);
        let t0 = Instant::now();
        for a in peers(40) {
            l.track(a, t0);
        }
        let first = due(&mut l, t0 + 2 * SEC);
        assert_eq!(first.len(), MAX_CHECKS_IN_FLIGHT);
        l.forget(first[0]);
        assert!(l.next_deadline().is_some(), "a slot is free again");
        assert_eq!(due(&mut l, t0 + 2 * SEC).len(), 1);
        // The late result of the forgotten peer's check frees nothing more.
        assert_eq!(l.result(first[0], true, t0 + 2 * SEC), Verdict::Unchanged);
        assert!(due(&mut l, t0 + 2 * SEC).is_empty());
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn forgetting_every_checked_peer_frees_every_slot() {
        let mut l = Liveness::new(SEC, 3);
        let t0 = Instant::now();
        for a in peers(2 * MAX_CHECKS_IN_FLIGHT as u16) {
            l.track(a, t0);
        }
        for a in due(&mut l, t0 + 2 * SEC) {
            l.forget(a);
        }
        assert_eq!(due(&mut l, t0 + 2 * SEC).len(), MAX_CHECKS_IN_FLIGHT);
    }

    #[test]
    fn a_forgotten_peer_is_not_checked() {
        let mut l = Liveness::new(SEC, 3);
        let t0 = Instant::now();
        let [a, b] = [addr("127.0.0.2:1"), addr("127.0.0.2:2")];
        l.track(a, t0);
        l.track(b, t0);
        l.forget(a);
        assert_eq!(due(&mut l, t0 + 2 * SEC), vec![b]);
        assert_eq!(l.result(a, false, t0 + 2 * SEC), Verdict::Unchanged);
    }

    #[test]
    fn a_check_due_within_a_tenth_of_an_interval_runs_now() {
        let mut l = Liveness::new(10 * SEC, 3);
        let t0 = Instant::now();
        let a = addr("127.0.0.2:1");
        l.track(a, t0);
        let when = l.next_deadline().expect("scheduled");
        assert!(due(&mut l, when - 2 * SEC).is_empty(), "too early");
        assert!(due(&mut l, when - SEC - SEC / 100).is_empty(), "too early");
        assert_eq!(due(&mut l, when - SEC), vec![a], "a tenth early is in time");
    }

    #[test]
    fn an_unreachable_peer_is_checked_with_doubling_back_off_until_grace_ends() {
        // One failure makes a peer unreachable; grace is four intervals (40 s).
        let mut l = Liveness::new(10 * SEC, 1);
        let a = addr("127.0.0.2:1");
        let t0 = Instant::now();
        l.track(a, t0);
        let mut now = l.next_deadline().expect("scheduled");
        assert_eq!(due(&mut l, now), vec![a]);
        let unreachable_at = now;
        assert_eq!(l.result(a, false, now), Verdict::Unreachable(1));
        // Gaps of about 1, then 2 intervals (±20%) ...
        for (factor, expected) in [(1, Verdict::Unchanged), (2, Verdict::Unchanged)] {
            let next = l.next_deadline().expect("still checked");
            let gap = next - now;
            assert!(
                gap >= 8 * SEC * factor && gap <= 12 * SEC * factor,
                "gap {gap:?} for back-off x{factor}"
            );
            now = next;
            assert_eq!(due(&mut l, now), vec![a]);
            assert_eq!(l.result(a, false, now), expected);
        }
        // ... then 4 intervals would overshoot the grace period: the last check comes
        // exactly when it ends, and removes the peer.
        let last = l.next_deadline().expect("checked once more");
        assert_eq!(last, unreachable_at + 40 * SEC);
        assert_eq!(due(&mut l, last), vec![a]);
        assert_eq!(l.result(a, false, last), Verdict::Remove);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn an_answer_resets_the_failure_count() {
        let mut l = Liveness::new(SEC, 2);
        let a = addr("127.0.0.2:1");
        l.track(a, Instant::now());
        let check = |l: &mut Liveness, answered: bool| {
            let now = l.next_deadline().expect("scheduled");
            assert_eq!(due(l, now), vec![a]);
            let verdict = l.result(a, answered, now);
            // The next check comes an interval (±20%) after an answer (or once the peer is
            // unreachable), a fifth of that after a failure before then.
            let gap = l.next_deadline().expect("still checked") - now;
            let soon = !answered && verdict == Verdict::Unchanged;
            let base = if soon { SEC / 5 } else { SEC };
            assert!(gap >= base * 8 / 10 && gap <= base * 12 / 10, "{gap:?}");
            verdict
        };
        assert_eq!(check(&mut l, false), Verdict::Unchanged);
        assert_eq!(check(&mut l, true), Verdict::Unchanged);
        assert_eq!(check(&mut l, false), Verdict::Unchanged, "count restarted");
        assert_eq!(check(&mut l, false), Verdict::Unreachable(2));
    }

    #[test]
    fn in_flight_checks_are_bounded() {
        let mut l = Liveness::new(SEC, 3);
        let t0 = Instant::now();
        for port in 1..=1000 {
            l.track(SocketAddr::new([127, 0, 0, 2].into(), port), t0);
        }
        let first = due(&mut l, t0 + 2 * SEC);
        assert_eq!(first.len(), MAX_CHECKS_IN_FLIGHT);
        assert!(due(&mut l, t0 + 2 * SEC).is_empty());
        assert_eq!(
            l.next_deadline(),
            None,
            "no wake-up while no check can start"
        );
        l.result(first[0], true, t0 + 2 * SEC);
        assert_eq!(due(&mut l, t0 + 2 * SEC).len(), 1);
    }

    #[test]
    fn peers_that_come_and_go_leave_nothing_scheduled() {
        let mut l = Liveness::new(10 * SEC, 3);
        let t0 = Instant::now();
        for port in 1..=10_000u16 {
            let a = SocketAddr::from(([127, 0, 0, 3], port));
            l.track(a, t0);
            l.heard(a, t0);
            l.forget(a);
        }
        assert!(l.watches.is_empty());
        assert!(l.schedule.is_empty(), "{} entries left", l.schedule.len());
        // One that stays is still checked.
        let b = addr("127.0.0.4:5");
        l.track(b, t0);
        assert_eq!(l.schedule.len(), 1);
        assert_eq!(due(&mut l, t0 + 20 * SEC), vec![b]);
    }

    #[test]
    fn a_late_result_does_not_touch_a_watch_made_anew() {
        let mut l = Liveness::new(10 * SEC, 1);
        let t0 = Instant::now();
        let a = addr("127.0.0.3:5");
        l.track(a, t0);
        assert_eq!(due(&mut l, t0 + 20 * SEC), vec![a]);
        l.forget(a); // it said exit while its check was in flight...
        l.track(a, t0 + 20 * SEC); // ...then came back
        assert_eq!(l.result(a, false, t0 + 21 * SEC), Verdict::Unchanged);
        assert_eq!(l.schedule.len(), 1, "one entry for one watch");
        assert_eq!(l.watches.get(&a).map(|w| w.failures), Some(0));
        l.forget(a);
        assert!(l.schedule.is_empty(), "nothing left behind");
    }
}
