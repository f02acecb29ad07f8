//! Sending: the node's side of the outbox. What the user and the protocol want sent is
//! queued here (split for receivers that read 1024 bytes, automatic replies bounded), the
//! driver takes it out a connection at a time with [`Node::poll_transmit`], and reports
//! how each ended.

use crate::time::Instant;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Effect, Node};
use crate::node::event::Event;
use crate::node::history::{Direction, Entry, Record};
use crate::node::outbox::{Refused, MAX_BYTES, MAX_WAITING};
use crate::node::peers::Status;
use crate::wire;

/// One message to deliver, from [`Node::poll_transmit`]: the driver opens a connection to
/// `dest`, writes our header ([`Node::header`]) followed by `text`, and reports the end
/// with [`Node::on_sent`] or [`Node::on_send_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The receiver's listening address.
    pub dest: SocketAddr,
    /// The message, without header.
    pub text: String,
    /// The dialect to send it in: the one the receiver last spoke to us.
    pub dialect: wire::Dialect,
}

/// Automatic replies one peer may draw per [`REPLY_INTERVAL`]: more `connect`s from it
/// meanwhile are shown, not answered.
pub const REPLIES_PER_INTERVAL: u32 = 5;

/// See [`REPLIES_PER_INTERVAL`].
pub const REPLY_INTERVAL: Duration = Duration::from_secs(10);

impl Node {
    /// Whether [`Node::poll_transmit`] may have a message to hand out (checked first by
    /// the loop every turn, which usually has none to open).
    #[inline]
    pub fn may_transmit(&self) -> bool {
        self.outbox.has_ready()
    }

    /// The next message to open a connection for, while the connection budget allows.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (dest, mut text) = self.outbox.start_next()?;
        let dialect = self.dialect_for(dest);
        // Cut for the dialect the receiver spoke when it was queued: should it speak
        // another since, whose header or quoting takes more room (JSON), a message that
        // no longer fits one 1024-byte `recv` is cut again for it, the rest going next.
        let budget = self.me.header.budget_in(dialect, dest);
        // Only JSON's quoting can make a message longer than its bytes: the others fit
        // when header and text do, without cutting anything.
        let fits = dialect != wire::Dialect::Json && budget + text.len() <= wire::MAX_WIRE_MESSAGE;
        let pieces = match fits {
            true => Vec::new(),
            false => wire::split_in(dialect, &text, budget),
        };
        let cut = match pieces.as_slice() {
            [_] | [] => None,
            [first, rest @ ..] => Some((
                (*first).to_owned(),
                rest.iter().map(|piece| (*piece).to_owned()).collect(),
            )),
        };
        if let Some((first, rest)) = cut {
            log::debug!("a message to {dest} cut again for its dialect");
            self.outbox.cut_in_flight(dest, &first, rest);
            text = first;
        }
        Some(Transmit {
            dest,
            text,
            dialect,
        })
    }

    /// The dialect `dest` is answered in: the one we last decoded from it, else our
    /// default (`--format`).
    pub(super) fn dialect_for(&self, dest: SocketAddr) -> wire::Dialect {
        self.peers
            .get(dest)
            .and_then(|p| p.dialect)
            .unwrap_or(self.me.header.format.dialect())
    }

    /// Reports every message not yet sent (waiting or in flight) as failed.
    pub(super) fn give_up(&mut self, reason: &str, out: &mut Vec<Effect>) {
        self.exited_in_flight.clear();
        for (dest, text) in self.outbox.drain() {
            self.send_failed(dest, text, reason.into(), out);
        }
    }

    /// Queues `connect_ack` for `addr`, a peer in the table, unless it drew
    /// [`REPLIES_PER_INTERVAL`] replies within [`REPLY_INTERVAL`] already, or too many
    /// replies wait: automatic replies are bounded per peer and in all, and never delay
    /// what the user sends. Returns whether it was queued (or already waits).
    pub(super) fn reply(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let (since, count) = self.replied.entry(addr).or_insert((now, 0));
        if now.saturating_duration_since(*since) >= REPLY_INTERVAL {
            (*since, *count) = (now, 0);
        }
        if *count >= REPLIES_PER_INTERVAL {
            return false;
        }
        match self.outbox.push_reply(addr, "connect_ack".into()) {
            Ok(()) => {
                *count += 1;
                true
            }
            Err((Refused::Duplicate, _)) => true,
            Err(_) => false,
        }
    }

    /// The message in flight to `dest` reached it in full (the receiver closed its
    /// connection, acknowledged it, or the linger ended), and `reply` is what it said back
    /// on that connection. A report for a message the node no longer waits for (it gave
    /// up) is ignored.
    pub fn on_sent(
        &mut self,
        dest: SocketAddr,
        reply: Option<&str>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(text) = self.outbox.done(dest) else {
            return;
        };
        // `IP:PORT NAME connected`, on the connection that carried our message: a name.
        if let Some(name) = reply.and_then(|r| wire::replier_name(r, Some(dest.port()))) {
            // Journalled at once, as a name heard in a header is: a run that ends before
            // the next compaction would forget it.
            if self.peers.named(dest, &crate::node::bounded_name(name)) && self.me.persist {
                self.persist_peer(dest, out);
            }
        }
        if self.exited_in_flight.remove(&dest) {
            // A static peer that said `exit` after this message reached it: it stays as
            // its `exit` left it (static, to be greeted when it answers again).
            self.show_sent(dest, text, reply, now, out);
            return;
        }
        if text == "connect" {
            self.ungreeted.remove(&dest);
            // A peerchat that said hello listens where it claimed: now it may be asked.
            if let Some(side) = self.awaiting_greeting.remove(&dest) {
                if let Some(d) = &mut self.discovery {
                    d.heard_from(side, dest.port());
                }
            }
        }
        let confirmed = self
            .peers
            .get(dest)
            .is_some_and(|p| p.status != Status::Active);
        self.peers.delivered(dest);
        if confirmed {
            // The first message to reach `dest`: a row heard at another address that
            // claims this one and refused us is the same listener.
            if let Some(refused) = self.peers.refused_claiming(dest) {
                self.merge(refused, dest, out);
            }
        }
        if self.quitting {
            self.say_exit(dest, now, out);
        }
        // A peer that left meanwhile (it said `exit` before our answer arrived) stays gone.
        // A port a hello named that nothing proved a peerchat's is not vouched for by our
        // messages reaching it (anything that accepts connections takes them): its first
        // check still comes due, and drops it as silent (see `check_or_drop`), however
        // often the user writes to it.
        if self
            .peers
            .get(dest)
            .is_some_and(|p| !self.unproven(dest, p))
        {
            self.liveness.heard(dest, now);
        }
        self.show_sent(dest, text, reply, now, out);
    }

    /// Tells that `text` reached `dest` (and keeps it in the history, unless it is a
    /// control word).
    fn show_sent(
        &mut self,
        dest: SocketAddr,
        text: String,
        reply: Option<&str>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if wire::control_word(&text).is_none() {
            let entry = Entry {
                millis: self.wall_millis(now),
                direction: Direction::Out,
                addr: Some(dest),
                name: None,
                text: text.clone(),
            };
            self.log_message(entry, out);
        }
        let reply = reply.map(str::to_owned);
        out.push(Effect::Show(Event::Sent { dest, text, reply }));
    }

    /// The message in flight to `dest` could not be delivered.
    pub fn on_send_failed(&mut self, dest: SocketAddr, reason: String, out: &mut Vec<Effect>) {
        self.exited_in_flight.remove(&dest);
        if let Some(text) = self.outbox.done(dest) {
            self.send_failed(dest, text, reason, out);
        }
    }

    /// Reports `text` as not delivered to `dest`, unless the peer is known to listen at
    /// another address: it goes there then.
    pub(super) fn send_failed(
        &mut self,
        dest: SocketAddr,
        text: String,
        reason: String,
        out: &mut Vec<Effect>,
    ) {
        self.peers.unreachable(dest);
        self.awaiting_greeting.remove(&dest);
        // It listens at the address it claims, which a message of ours reached: one row,
        // and the message goes there (it is not lost, so not reported as failed).
        if let Some(into) = self.peers.confirmed_elsewhere(dest) {
            self.merge(dest, into, out);
            let may = !self.quitting || wire::control_word(&text) == Some(wire::Body::Exit);
            if may && self.outbox.push(into, text.clone()).is_ok() {
                out.push(Effect::Show(Event::Info(format!(
                    "{dest} refused ({reason}): sending to {into} instead"
                ))));
                return;
            }
        }
        out.push(Effect::Show(Event::SendFailed { dest, text, reason }));
    }

    /// Files the peer heard at `from` under `into`, where it really listens, and says so.
    pub(super) fn merge(&mut self, from: SocketAddr, into: SocketAddr, out: &mut Vec<Effect>) {
        if self.peers.merge(from, into) {
            self.liveness.forget(from);
            self.replied.remove(&from);
            // A static peer given at its sending address: greeted where it listens (a
            // message of ours just reached it there), not at the address that refused us.
            self.ungreeted.remove(&from);
            self.exited_in_flight.remove(&from);
            if self.me.persist {
                out.push(Effect::Persist(Record::Gone { addr: from }));
                // What `into` took from `from` (a name, a dialect) is remembered with it.
                self.persist_peer(into, out);
            }
            out.push(Effect::Show(Event::Info(format!(
                "{from} sends from one address and listens at {into}: one row now, answers go to {into}"
            ))));
        }
    }

    /// Queues `text` for `dest`, split into several messages if its wire form would not
    /// fit in one 1024-byte `recv`.
    pub(super) fn send(
        &mut self,
        dest: SocketAddr,
        text: &str,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        // One form per peer (an IPv4-mapped IPv6 address is the IPv4 peer), so that order
        // per destination and the table agree.
        let dest = crate::node::peers::canonical(dest);
        if self.is_us(dest.ip(), Some(dest.port())) {
            // A greeting or `exit` is not a message the user asked for.
            self.refused += usize::from(crate::wire::control_word(text).is_none());
            out.push(Effect::Show(Event::Warning(format!(
                "not sent to {dest}: that is this peer's own address"
            ))));
            return;
        }
        let new = self.peers.sending_to(dest, now);
        self.take_evicted(out);
        if new && self.me.persist {
            out.push(Effect::Persist(Record::Peer {
                addr: dest,
                name: None,
                dialect: None,
            }));
        }
        if self.peers.get(dest).is_some() {
            self.liveness.track(dest, now);
        }
        let dialect = self.dialect_for(dest);
        let budget = self.me.header.budget_in(dialect, dest);
        let parts = wire::split_in(dialect, text, budget);
        if parts.len() > 1 {
            out.push(Effect::Show(Event::Split {
                dest,
                parts: parts.len(),
            }));
        }
        for part in parts {
            match self.outbox.push(dest, part.to_owned()) {
                Ok(()) | Err((Refused::Duplicate, _)) => {}
                Err((Refused::Full, text)) => {
                    let reason =
                        format!("{MAX_WAITING} messages are already waiting for this peer");
                    self.send_failed(dest, text, reason, out);
                }
                Err((Refused::TooMuch | Refused::TooManyReplies, text)) => {
                    let reason = format!("{} MiB of messages are already waiting", MAX_BYTES >> 20);
                    self.send_failed(dest, text, reason, out);
                }
            }
        }
    }
}
