//! The outbox: messages waiting for a connection, in order per destination.
//!
//! Every message travels on its own TCP connection. To keep messages to one destination
//! in the order they were typed, at most one connection per destination is in flight;
//! to stay within the descriptor budget, at most `max_in_flight` connections are in
//! flight in all. Pure bookkeeping, owned by the node: [`Outbox::start_next`] says what
//! to start, [`Outbox::done`] hands back the message whose connection finished.
//!
//! What the user asked for goes first. Automatic replies (`connect_ack`) are a class of
//! their own: a destination whose next message is the user's is always served before one
//! whose next message is automatic, automatic replies use at most half of the connections
//! in flight, and at most [`MAX_AUTO_WAITING`] of them wait in all. So a flood of
//! `connect` never delays a message the user typed.
//!
//! The outbox is bounded: at most [`MAX_WAITING`] messages wait per destination,
//! [`MAX_BYTES`] bytes in all, and a control word already waiting for a destination is
//! not queued twice (a peer that sends `connect` a million times from a black-holed port
//! gets one `connect_ack` waiting, not a million).

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;

use crate::wire;

/// Most messages waiting (not yet in flight) for one destination.
pub const MAX_WAITING: usize = 1024;

/// Most automatic replies waiting, for all destinations together.
pub const MAX_AUTO_WAITING: usize = 256;

/// Most bytes of messages waiting, for all destinations together.
pub const MAX_BYTES: usize = 16 << 20;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The same control word already waits for that destination: nothing to do.
    Duplicate,
    /// [`MAX_WAITING`] messages already wait for that destination.
    Full,
    /// [`MAX_AUTO_WAITING`] automatic replies already wait.
    TooManyReplies,
    /// [`MAX_BYTES`] bytes already wait.
    TooMuch,
}

/// Who asked for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The user (typed, a program's command, quitting, greeting configured peers).
    User,
    /// An automatic reply.
    Auto,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<(Class, String)>,
    /// The message whose connection is open, kept until it is done.
    in_flight: Option<(Class, String)>,
}

/// Pending messages, per destination.
#[derive(Debug)]
pub struct Outbox {
    queues: HashMap<SocketAddr, Queue>,
    /// Destinations with nothing in flight whose next message is the user's, in order.
    ready_user: VecDeque<SocketAddr>,
    /// Likewise, whose next message is automatic.
    ready_auto: VecDeque<SocketAddr>,
    in_flight: usize,
    auto_in_flight: usize,
    auto_waiting: usize,
    user_waiting: usize,
    bytes: usize,
    max_in_flight: usize,
}

impl Outbox {
    /// An empty outbox allowing `max_in_flight` connections at once (at least one).
    pub fn new(max_in_flight: usize) -> Self {
        Outbox {
            queues: HashMap::new(),
            ready_user: VecDeque::new(),
            ready_auto: VecDeque::new(),
            in_flight: 0,
            auto_in_flight: 0,
            auto_waiting: 0,
            user_waiting: 0,
            bytes: 0,
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Queues `text` from the user for `dest`, behind anything already queued for it;
    /// hands it back when refused.
    pub fn push(&mut self, dest: SocketAddr, text: String) -> Result<(), (Refused, String)> {
        self.queue(dest, Class::User, text)
    }

    /// Queues an automatic reply for `dest`, behind anything already queued for it.
    pub fn push_reply(&mut self, dest: SocketAddr, text: String) -> Result<(), (Refused, String)> {
        self.queue(dest, Class::Auto, text)
    }

    fn queue(
        &mut self,
        dest: SocketAddr,
        class: Class,
        text: String,
    ) -> Result<(), (Refused, String)> {
        if let Some(queue) = self.queues.get(&dest) {
            let same = |(_, t): &(Class, String)| *t == text;
            if wire::control_word(&text).is_some() && queue.waiting.iter().any(same) {
                return Err((Refused::Duplicate, text));
            }
            if queue.waiting.len() >= MAX_WAITING {
                return Err((Refused::Full, text));
            }
        }
        if class == Class::Auto && self.auto_waiting >= MAX_AUTO_WAITING {
            return Err((Refused::TooManyReplies, text));
        }
        if self.bytes + text.len() > MAX_BYTES {
            return Err((Refused::TooMuch, text));
        }
        self.count_waiting(class, 1, text.len());
        let queue = self.queues.entry(dest).or_default();
        if queue.waiting.is_empty() && queue.in_flight.is_none() {
            match class {
                Class::User => self.ready_user.push_back(dest),
                Class::Auto => self.ready_auto.push_back(dest),
            }
        }
        queue.waiting.push_back((class, text));
        Ok(())
    }

    /// Counts `count` more messages of `class` waiting, `bytes` long together.
    fn count_waiting(&mut self, class: Class, count: usize, bytes: usize) {
        match class {
            Class::Auto => self.auto_waiting += count,
            Class::User => self.user_waiting += count,
        }
        self.bytes += bytes;
    }

    /// Whether a destination waits for a connection of its own ([`Outbox::start_next`]
    /// may have one to hand out): asked every loop turn, so a field or two, no more.
    #[inline]
    pub fn has_ready(&self) -> bool {
        !self.ready_user.is_empty() || !self.ready_auto.is_empty()
    }

    /// The next message to start, if a connection slot is free: a destination whose next
    /// message is the user's first, then automatic replies within half the slots. The
    /// outbox keeps it (as in flight) until [`Outbox::done`].
    pub fn start_next(&mut self) -> Option<(SocketAddr, String)> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let dest = match self.ready_user.pop_front() {
            Some(dest) => dest,
            None if self.auto_in_flight < self.max_in_flight.div_ceil(2) => {
                self.ready_auto.pop_front()?
            }
            None => return None,
        };
        let queue = self.queues.get_mut(&dest)?;
        let (class, text) = queue.waiting.pop_front()?;
        self.bytes -= text.len();
        match class {
            Class::Auto => {
                self.auto_waiting -= 1;
                self.auto_in_flight += 1;
            }
            Class::User => self.user_waiting -= 1,
        }
        queue.in_flight = Some((class, text.clone()));
        self.in_flight += 1;
        Some((dest, text))
    }

    /// The message in flight to `dest` leaves as `first` only, and `rest` goes right after
    /// it, before anything else waiting for `dest` (it was cut again for a dialect that
    /// takes more room: the same bytes, in more messages, so only the count may exceed
    /// [`MAX_WAITING`], by the few pieces of one message).
    pub fn cut_in_flight(&mut self, dest: SocketAddr, first: &str, rest: Vec<String>) {
        let Some(queue) = self.queues.get_mut(&dest) else {
            return;
        };
        let Some((class, text)) = queue.in_flight.as_mut() else {
            return;
        };
        let class = *class;
        text.clear();
        text.push_str(first);
        let (count, bytes) = (rest.len(), rest.iter().map(String::len).sum());
        for piece in rest.into_iter().rev() {
            queue.waiting.push_front((class, piece));
        }
        self.count_waiting(class, count, bytes);
    }

    /// The connection to `dest` started by [`Outbox::start_next`] is finished, well or
    /// not: hands back its message.
    pub fn done(&mut self, dest: SocketAddr) -> Option<String> {
        let queue = self.queues.get_mut(&dest)?;
        let (class, text) = queue.in_flight.take()?;
        self.in_flight -= 1;
        if class == Class::Auto {
            self.auto_in_flight -= 1;
        }
        match queue.waiting.front() {
            None => {
                self.queues.remove(&dest);
            }
            Some((Class::User, _)) => self.ready_user.push_back(dest),
            Some((Class::Auto, _)) => self.ready_auto.push_back(dest),
        }
        Some(text)
    }

    /// Takes every message, waiting or in flight (in flight first), by destination in
    /// address order, when giving up.
    pub fn drain(&mut self) -> Vec<(SocketAddr, String)> {
        self.ready_user.clear();
        self.ready_auto.clear();
        self.in_flight = 0;
        self.auto_in_flight = 0;
        self.auto_waiting = 0;
        self.user_waiting = 0;
        self.bytes = 0;
        let mut left = Vec::new();
        let mut queues: Vec<_> = self.queues.drain().collect();
        queues.sort_unstable_by_key(|(dest, _)| *dest);
        for (dest, queue) in queues {
            left.extend(queue.in_flight.into_iter().map(|(_, text)| (dest, text)));
            left.extend(queue.waiting.into_iter().map(|(_, text)| (dest, text)));
        }
        left
    }

    /// The user's messages waiting for a connection.
    pub fn user_waiting(&self) -> usize {
        self.user_waiting
    }

    /// Whether a message to `dest` is in flight (handed out, not done yet).
    pub fn has_in_flight(&self, dest: SocketAddr) -> bool {
        self.queues
            .get(&dest)
            .is_some_and(|queue| queue.in_flight.is_some())
    }

    /// Whether `word` is queued or in flight to `dest` (a greeting on its way).
    pub fn holds_word(&self, dest: SocketAddr, word: &str) -> bool {
        self.queues.get(&dest).is_some_and(|q| {
            q.in_flight
                .iter()
                .chain(&q.waiting)
                .any(|(_, text)| text == word)
        })
    }

    /// Destinations with something queued or in flight.
    pub fn destinations(&self) -> usize {
        self.queues.len()
    }

    /// Whether every message queued or in flight is `word` (quitting: only `exit`s left).
    pub fn holds_only(&self, word: &str) -> bool {
        self.queues.values().all(|q| {
            q.in_flight
                .iter()
                .chain(&q.waiting)
                .all(|(_, text)| text == word)
        })
    }

    /// Whether nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Connections currently in flight.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn one_destination_is_served_in_order_one_at_a_time() {
        let a = addr("127.0.0.2:1");
        let mut ob = Outbox::new(8);
        ob.push(a, "1".into()).expect("room");
        ob.push(a, "2".into()).expect("room");
        assert_eq!(ob.start_next(), Some((a, "1".into())));
        assert_eq!(ob.start_next(), None, "second waits for the first");
        ob.done(a);
        assert_eq!(ob.start_next(), Some((a, "2".into())));
        ob.done(a);
        assert!(ob.is_empty());
    }

    #[test]
    fn a_message_cut_again_goes_first_then_its_rest_then_the_others() {
        let a = addr("127.0.0.2:1");
        let mut ob = Outbox::new(8);
        ob.push(a, "abcdef".into()).expect("room");
        ob.push(a, "next".into()).expect("room");
        assert_eq!(ob.start_next(), Some((a, "abcdef".into())));
        ob.cut_in_flight(a, "ab", vec!["cd".into(), "ef".into()]);
        assert_eq!(ob.user_waiting(), 3);
        assert_eq!(ob.done(a), Some("ab".into()));
        let mut order = Vec::new();
        while let Some((_, text)) = ob.start_next() {
            order.push(text);
            ob.done(a);
        }
        assert_eq!(order, ["cd", "ef", "next"]);
        assert!(ob.is_empty());
        assert_eq!((ob.user_waiting(), ob.bytes), (0, 0));
    }

    #[test]
    fn destinations_proceed_in_parallel_up_to_the_limit() {
        let (a, b, c) = (
            addr("127.0.0.2:1"),
            addr("127.0.0.3:1"),
            addr("127.0.0.4:1"),
        );
        let mut ob = Outbox::new(2);
        ob.push(a, "a".into()).expect("room");
        ob.push(b, "b".into()).expect("room");
        ob.push(c, "c".into()).expect("room");
        assert_eq!(ob.start_next(), Some((a, "a".into())));
        assert_eq!(ob.start_next(), Some((b, "b".into())));
        assert_eq!(ob.start_next(), None);
        assert_eq!(ob.in_flight(), 2);
        ob.done(b);
        assert_eq!(ob.start_next(), Some((c, "c".into())));
        ob.done(a);
        ob.done(c);
        assert!(ob.is_empty());
    }

    #[test]
    fn control_words_are_not_queued_twice_and_queues_are_bounded() {
        let a = addr("127.0.0.2:1");
        let mut ob = Outbox::new(1);
        assert_eq!(ob.push(a, "first".into()), Ok(()));
        assert!(ob.start_next().is_some());
        assert_eq!(ob.push(a, "connect_ack".into()), Ok(()));
        assert_eq!(
            ob.push(a, "connect_ack".into()),
            Err((Refused::Duplicate, "connect_ack".into()))
        );
        assert_eq!(ob.push(a, "chat".into()), Ok(()));
        assert_eq!(ob.push(a, "chat".into()), Ok(()), "chat may repeat");
        for i in 3..MAX_WAITING {
            assert_eq!(ob.push(a, format!("m{i}")), Ok(()));
        }
        assert_eq!(
            ob.push(a, "one too many".into()),
            Err((Refused::Full, "one too many".into()))
        );
    }

    #[test]
    fn done_without_start_is_harmless() {
        let mut ob = Outbox::new(1);
        assert_eq!(ob.done(addr("127.0.0.2:1")), None);
        ob.push(addr("127.0.0.2:1"), "x".into()).expect("room");
        assert_eq!(ob.done(addr("127.0.0.2:1")), None);
        assert_eq!(ob.in_flight(), 0);
        assert!(ob.start_next().is_some());
        assert_eq!(ob.done(addr("127.0.0.2:1")), Some("x".into()));
    }

    #[test]
    fn drain_gives_back_in_flight_and_waiting_and_frees_every_slot() {
        let (a, b) = (addr("127.0.0.2:1"), addr("127.0.0.3:1"));
        let mut ob = Outbox::new(4);
        for (dest, text) in [(a, "a1"), (a, "a2"), (b, "b1")] {
            ob.push(dest, text.into()).expect("room");
        }
        assert_eq!(ob.start_next(), Some((a, "a1".into())));
        let mut left = ob.drain();
        left.sort();
        assert_eq!(
            left,
            vec![(a, "a1".into()), (a, "a2".into()), (b, "b1".into())]
        );
        assert!(ob.is_empty());
        assert_eq!(ob.in_flight(), 0);
        assert_eq!(ob.start_next(), None);
        assert_eq!(ob.done(a), None, "a drained message is not done twice");
    }

    #[test]
    fn the_users_messages_go_before_automatic_replies() {
        let mut ob = Outbox::new(4);
        for port in 1..=10 {
            let dest = SocketAddr::from(([127, 0, 0, 3], port));
            ob.push_reply(dest, "connect_ack".into()).expect("room");
        }
        let user = addr("127.0.0.9:1");
        ob.push(user, "typed".into()).expect("room");
        assert_eq!(
            ob.start_next(),
            Some((user, "typed".into())),
            "first, though last"
        );
        // Replies take at most half of the slots.
        assert!(ob.start_next().is_some());
        assert!(ob.start_next().is_some());
        assert_eq!(ob.start_next(), None, "two replies in flight: half of four");
        ob.push(addr("127.0.0.9:2"), "more".into()).expect("room");
        assert_eq!(ob.start_next(), Some((addr("127.0.0.9:2"), "more".into())));
    }

    #[test]
    fn automatic_replies_and_bytes_are_bounded_in_all() {
        let mut ob = Outbox::new(1);
        for i in 0..MAX_AUTO_WAITING {
            let dest = SocketAddr::from(([127, 0, 1, (i % 250) as u8], 1 + (i / 250) as u16));
            ob.push_reply(dest, "connect_ack".into()).expect("room");
        }
        let one_more = addr("127.0.2.1:1");
        assert_eq!(
            ob.push_reply(one_more, "connect_ack".into()),
            Err((Refused::TooManyReplies, "connect_ack".into()))
        );
        ob.push(one_more, "the user's".into())
            .expect("the user is not refused");
        let big = "x".repeat(MAX_BYTES);
        assert!(matches!(
            ob.push(addr("127.0.2.2:1"), big),
            Err((Refused::TooMuch, _))
        ));
        // A refusal leaves nothing behind: a fresh outbox stays empty.
        let mut fresh = Outbox::new(1);
        let _ = fresh.push(addr("127.0.2.2:1"), "x".repeat(MAX_BYTES + 1));
        assert!(fresh.is_empty());
    }

    #[test]
    fn a_zero_limit_still_lets_one_connection_run() {
        let a = addr("127.0.0.2:1");
        let mut ob = Outbox::new(0);
        ob.push(a, "x".into()).expect("room");
        assert_eq!(ob.start_next(), Some((a, "x".into())));
        assert_eq!(ob.in_flight(), 1);
    }

    #[test]
    fn a_message_queued_while_one_is_in_flight_waits_for_it() {
        let (a, b) = (addr("127.0.0.2:1"), addr("127.0.0.3:1"));
        let mut ob = Outbox::new(8);
        ob.push(a, "1".into()).expect("room");
        assert_eq!(ob.start_next(), Some((a, "1".into())));
        ob.push(a, "2".into()).expect("room");
        ob.push(b, "b".into()).expect("room");
        assert_eq!(ob.start_next(), Some((b, "b".into())), "a is busy");
        assert_eq!(ob.start_next(), None);
        assert_eq!(ob.done(a), Some("1".into()));
        assert!(!ob.is_empty());
        assert_eq!(ob.start_next(), Some((a, "2".into())));
        assert_eq!(ob.in_flight(), 2);
        assert_eq!(ob.done(a), Some("2".into()));
        assert_eq!(ob.done(b), Some("b".into()));
        assert_eq!(ob.in_flight(), 0);
        assert!(ob.is_empty());
    }

    #[test]
    fn a_control_word_may_wait_again_once_the_first_has_left() {
        let a = addr("127.0.0.2:1");
        let mut ob = Outbox::new(1);
        ob.push(a, "connect".into()).expect("room");
        assert_eq!(ob.start_next(), Some((a, "connect".into())));
        assert_eq!(
            ob.push(a, "connect".into()),
            Ok(()),
            "only waiting ones count"
        );
    }

    #[test]
    fn drain_gives_the_in_flight_message_before_the_waiting_ones() {
        let a = addr("127.0.0.2:1");
        let mut ob = Outbox::new(4);
        ob.push(a, "1".into()).expect("room");
        ob.push(a, "2".into()).expect("room");
        assert_eq!(ob.start_next(), Some((a, "1".into())));
        ob.push(a, "3".into()).expect("room");
        assert_eq!(
            ob.drain(),
            vec![(a, "1".into()), (a, "2".into()), (a, "3".into())]
        );
        ob.push(a, "4".into()).expect("room");
        assert_eq!(
            ob.start_next(),
            Some((a, "4".into())),
            "slots are free again"
        );
    }

    #[test]
    fn the_users_waiting_messages_are_counted_until_they_leave() {
        let (a, b) = (addr("127.0.0.2:1"), addr("127.0.0.3:1"));
        let mut ob = Outbox::new(1);
        assert_eq!(ob.user_waiting(), 0);
        ob.push(a, "1".into()).expect("room");
        ob.push(a, "2".into()).expect("room");
        ob.push_reply(b, "connect_ack".into()).expect("room");
        assert_eq!(ob.user_waiting(), 2, "replies are not the user's");
        assert_eq!(ob.start_next(), Some((a, "1".into())));
        assert_eq!(ob.user_waiting(), 1, "in flight is not waiting");
        ob.done(a);
        assert_eq!(ob.start_next(), Some((a, "2".into())));
        assert_eq!(ob.user_waiting(), 0);
        ob.done(a);
        assert_eq!(ob.start_next(), Some((b, "connect_ack".into())));
        assert_eq!(ob.user_waiting(), 0, "a reply leaving is not the user's");
        ob.push(a, "3".into()).expect("room");
        ob.drain();
        assert_eq!(ob.user_waiting(), 0, "drained");
    }

    #[test]
    fn a_reply_that_leaves_makes_room_for_another() {
        let mut ob = Outbox::new(2);
        let dest =
            |i: usize| SocketAddr::from(([127, 0, 1, (i % 250) as u8], 1 + (i / 250) as u16));
        for i in 0..MAX_AUTO_WAITING {
            ob.push_reply(dest(i), "connect_ack".into()).expect("room");
        }
        let late = addr("127.0.2.1:1");
        assert!(ob.push_reply(late, "connect_ack".into()).is_err());
        // One reply starts and finishes: one waits fewer, and the slot is free again.
        let (first, _) = ob.start_next().expect("a reply starts");
        assert_eq!(ob.done(first), Some("connect_ack".into()));
        assert_eq!(ob.push_reply(late, "connect_ack".into()), Ok(()));
        assert!(ob
            .push_reply(addr("127.0.2.2:1"), "connect_ack".into())
            .is_err());
        // Replies use half of two slots: one at a time, each done making room for the next.
        for _ in 0..3 {
            let (d, _) = ob.start_next().expect("a reply starts");
            assert_eq!(ob.start_next(), None, "one reply at a time");
            assert_eq!(ob.done(d), Some("connect_ack".into()));
        }
        assert_eq!(ob.in_flight(), 0);
    }

    #[test]
    fn bytes_in_flight_no_longer_count_against_the_bound() {
        let (a, b) = (addr("127.0.0.2:1"), addr("127.0.0.3:1"));
        let mut ob = Outbox::new(1);
        let exactly = "x".repeat(MAX_BYTES);
        assert_eq!(
            ob.push(a, exactly.clone()),
            Ok(()),
            "exactly the bound fits"
        );
        assert!(matches!(ob.push(b, "y".into()), Err((Refused::TooMuch, _))));
        assert_eq!(
            ob.start_next().map(|(d, t)| (d, t.len())),
            Some((a, MAX_BYTES))
        );
        assert_eq!(ob.push(b, exactly), Ok(()), "the first is on its way");
        ob.done(a);
        assert_eq!(ob.start_next().map(|(d, _)| d), Some(b));
        ob.done(b);
        assert!(ob.is_empty());
    }
}
