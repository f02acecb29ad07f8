//! A deadline set: the timers mio does not have.
//!
//! The event loop asks [`Timers::next_deadline`] how long it may sleep in `poll`, and
//! after waking hands every expired entry to its owner with [`Timers::pop_expired`].
//! With no timers armed the loop sleeps until a socket or stdin wakes it: an idle peer
//! uses no CPU. An owner that goes away cancels its entry, so that nothing wakes the loop
//! for nothing.

use std::collections::BTreeMap;
use std::time::Instant;

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
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            entries: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Arms `what` to fire at `when`. Entries with equal deadlines fire in arming order.
    pub fn insert(&mut self, when: Instant, what: T) -> TimerId {
        let id = TimerId(when, self.next_seq);
        self.entries.insert((when, self.next_seq), what);
        self.next_seq += 1;
        id
    }

    /// Disarms an entry; returns what it carried if it had not fired yet.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        self.entries.remove(&(id.0, id.1))
    }

    /// How long `poll` may sleep: `None` when nothing is armed (sleep until an event).
    #[cfg(test)]
    pub fn timeout(&self, now: Instant) -> Option<std::time::Duration> {
        self.next_deadline()
            .map(|when| when.saturating_duration_since(now))
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.keys().next().map(|(when, _)| *when)
    }

    /// Removes and returns, in deadline order, every entry due at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Vec<T> {
        let mut due = Vec::new();
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }

    /// Removes and returns the earliest entry, due or not.
    pub fn pop_first(&mut self) -> Option<T> {
        self.entries.pop_first().map(|(_, what)| what)
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
}
