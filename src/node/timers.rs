//! A deadline set: the timers mio does not have.
//!
//! The event loop asks [`Timers::next_deadline`] how long it may sleep in `poll`, and
//! after waking hands every expired entry to its owner with [`Timers::pop_expired`].
//! With no timers armed the loop sleeps until a socket or stdin wakes it: an idle peer
//! uses no CPU. An owner that goes away cancels its entry, so that nothing wakes the loop
//! for nothing.

use crate::time::Instant;
use std::collections::BTreeMap;

/// Names one armed entry, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(Instant, u64);

impl TimerId {
    /// When the entry fires.
    #[cfg(test)]
    pub fn deadline(self) -> Instant {
        self.0
    }
}

/// Deadlines in time order, each carrying what should happen then.
#[derive(Debug)]
pub struct Timers<T> {
    entries: BTreeMap<(Instant, u64), T>,
    next_seq: u64,
    /// The earliest deadline, kept as entries come and go: asked for twice a loop turn,
    /// it is a field read rather than a walk down the tree.
    first: Option<Instant>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            entries: BTreeMap::new(),
            next_seq: 0,
            first: None,
        }
    }
}

impl<T> Timers<T> {
    /// Arms `what` to fire at `when`. Entries with equal deadlines fire in arming order.
    pub fn insert(&mut self, when: Instant, what: T) -> TimerId {
        let id = TimerId(when, self.next_seq);
        self.entries.insert((when, self.next_seq), what);
        self.next_seq += 1;
        self.first = earliest(self.first, Some(when));
        id
    }

    /// Disarms an entry; returns what it carried if it had not fired yet.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let what = self.entries.remove(&(id.0, id.1));
        if what.is_some() && self.first == Some(id.0) {
            self.find_first();
        }
        what
    }

    /// Finds the earliest deadline again, after the entry that had it went.
    fn find_first(&mut self) {
        self.first = self.entries.keys().next().map(|(when, _)| *when);
    }

    /// How long `poll` may sleep: `None` when nothing is armed (sleep until an event).
    #[cfg(test)]
    pub fn timeout(&self, now: Instant) -> Option<std::time::Duration> {
        self.next_deadline()
            .map(|when| when.saturating_duration_since(now))
    }

    /// The earliest deadline, if any.
    #[inline]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.first
    }

    /// Whether an entry is due at `now` (a field read: the loop asks every turn).
    #[inline]
    pub fn any_due(&self, now: Instant) -> bool {
        self.first.is_some_and(|first| first <= now)
    }

    /// Removes and returns, in deadline order, every entry due at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Vec<T> {
        let mut due = Vec::new();
        if !self.any_due(now) {
            return due;
        }
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        if !due.is_empty() {
            self.find_first();
        }
        due
    }

    /// Removes and returns the earliest entry, due or not.
    pub fn pop_first(&mut self) -> Option<T> {
        let first = self.entries.pop_first().map(|(_, what)| what);
        self.find_first();
        first
    }

    /// How many entries are armed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is armed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The earlier of two deadlines, either of which may be absent.
#[inline]
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn empty_set_lets_poll_sleep_forever() {
        let timers: Timers<()> = Timers::default();
        assert_eq!(timers.timeout(Instant::now()), None);
    }

    #[test]
    fn fires_in_deadline_order_then_arming_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.insert(t0 + Duration::from_secs(2), "late");
        timers.insert(t0 + Duration::from_secs(1), "first");
        timers.insert(t0 + Duration::from_secs(1), "second");
        assert_eq!(timers.timeout(t0), Some(Duration::from_secs(1)));
        assert_eq!(
            timers.pop_expired(t0 + Duration::from_secs(1)),
            vec!["first", "second"]
        );
        assert_eq!(timers.len(), 1);
        assert!(timers.pop_expired(t0).is_empty());
        assert_eq!(
            timers.pop_expired(t0 + Duration::from_secs(5)),
            vec!["late"]
        );
        assert!(timers.is_empty());
    }

    #[test]
    fn cancelled_entries_never_fire() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let a = timers.insert(t0, "a");
        timers.insert(t0, "b");
        assert_eq!(timers.cancel(a), Some("a"));
        assert_eq!(timers.cancel(a), None);
        assert_eq!(timers.pop_expired(t0), vec!["b"]);
        assert_eq!(a.deadline(), t0);
    }

    #[test]
    fn overdue_deadline_means_zero_timeout() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.insert(t0, 1);
        assert_eq!(
            timers.timeout(t0 + Duration::from_secs(3)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn pop_first_takes_the_earliest_entry_due_or_not() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.pop_first(), None);
        timers.insert(t0 + Duration::from_secs(9), "late");
        timers.insert(t0 + Duration::from_secs(3), "early");
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(timers.pop_first(), Some("early"));
        assert_eq!(timers.len(), 1);
        assert!(!timers.is_empty());
        assert_eq!(timers.pop_first(), Some("late"));
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn a_deadline_equal_to_now_is_expired_and_a_later_one_is_not() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.insert(t0 + Duration::from_millis(1), "later");
        timers.insert(t0, "now");
        assert_eq!(timers.pop_expired(t0), vec!["now"]);
        assert_eq!(timers.timeout(t0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn the_earliest_deadline_is_kept_through_any_arming_cancelling_and_firing() {
        // Against the tree itself, over a long pseudo-random mix of every change.
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut ids = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..5_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = t0 + Duration::from_millis(x % 64);
            match x % 5 {
                0 | 1 => ids.push(timers.insert(at, step)),
                2 if !ids.is_empty() => {
                    let id = ids.swap_remove((x as usize / 5) % ids.len());
                    timers.cancel(id);
                }
                3 => drop(timers.pop_expired(at)),
                _ => drop(timers.pop_first()),
            }
            let truth = timers.entries.keys().next().map(|(when, _)| *when);
            assert_eq!(timers.next_deadline(), truth, "after step {step}");
            assert_eq!(timers.any_due(at), truth.is_some_and(|t| t <= at));
        }
    }
}
