//! Accepting: the listener's turn, the connection limits (per address and in all) and
//! making room by evicting the idlest connection of the most crowded address.

use crate::time::Instant;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{secs_since, Connections, PerIp, Timer, ACCEPTS_PER_TURN, IDLE_SLOTS};
use crate::driver::connection::{Conn, Inbound, Polled};
use crate::driver::net;
use crate::node::event::Event;
use crate::node::{Effect, Node};
use crate::wire::Decoder;

/// A new connection turned away (at `--max-per-ip` or `--max-connections`).
struct Refused;

impl Connections {
    /// The listener is readable: new connections are accepted at its next turn.
    pub fn listener_ready(&mut self) {
        self.accept_pending = true;
    }

    /// The listener's turn: accepts up to [`ACCEPTS_PER_TURN`] connections (the rest wait
    /// for the next turn, so that a storm of connections cannot starve the reading of
    /// those already open, and one-message connections are read and closed before many
    /// more pile up). Beyond the limits, new connections are closed at once.
    ///
    /// Accepting goes on while connections wait held back for order (deferred while
    /// stdout was behind), although each holds one of its address's slots until it is
    /// read: a sender with more connections than its slots waiting is then refused (and
    /// told so, and the user too), but nobody else waits for it. Holding accepting back
    /// instead lost nothing, but the listen queue, first come first served, made every
    /// newcomer wait behind the heaviest sender (5 to 7 times longer under a flood, and
    /// some sends timed out): tried and taken back.
    pub fn accept(&mut self, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        if !self.accept_pending || self.accept_paused {
            return;
        }
        // With no inbound connection open, those accepted now are read at once.
        let lone = self.inbound == 0;
        for _ in 0..ACCEPTS_PER_TURN {
            if self.open_count() >= self.limits.max_connections && !self.may_hand() {
                // At the limit, and this turn's evictions handed over their share of
                // unfinished data: the rest wait in the listen queue for the next turn
                // (`accept_pending` stays), not refused. Accepted and closed, a burst of
                // newcomers lost all but one or two a turn to a flood of idle
                // connections each holding an open block.
                return;
            }
            match self.listener.accept() {
                Ok((stream, addr)) => match self.admit(addr, (node, now), out) {
                    Ok(slot) if lone => {
                        let slot = self.claim(addr, slot);
                        self.fresh.push_back((stream, slot));
                    }
                    Ok(slot) => {
                        self.add_inbound(stream, addr, slot, now);
                    }
                    // Closed at once: the sender sees EOF rather than a hang.
                    Err(Refused) => drop(stream),
                },
                Err(e) if net::would_block(&e) => {
                    self.accept_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors or buffers: pause rather than spin.
                    log::warn!("accept failed: {}; pausing for 100 ms", net::describe(&e));
                    self.accept_paused = true;
                    self.timers
                        .insert(now + Duration::from_millis(100), Timer::ResumeAccept);
                    return;
                }
            }
        }
    }

    /// Whether a new connection from `addr` may be kept: refused when its address already
    /// holds `--max-per-ip` connections, or when all `--max-connections` are open and none
    /// can be evicted. Kept, its address's entry in `per_ip`, if it has one.
    fn admit(
        &mut self,
        addr: SocketAddr,
        (node, now): (&mut Node, Instant),
        out: &mut Vec<Effect>,
    ) -> Result<Option<usize>, Refused> {
        if self.idle_slots > self.inbound.max(IDLE_SLOTS) {
            self.prune_idle_slots();
        }
        let ip = addr.ip().to_canonical();
        // The one lookup of the address for this connection: the rest goes by index.
        let slot = self.slot_of(ip);
        if let Some(per) = slot.and_then(|slot| self.per_ip.get_mut(slot)) {
            let (open, refused) = (&mut per.open, &mut per.refused);
            if *open as usize >= self.limits.max_per_ip {
                if *refused == 0 {
                    out.push(Effect::Show(Event::Warning(format!(
                        "refusing connections from {ip}: {open} are open from it, the limit (--max-per-ip)"
                    ))));
                }
                *refused += 1;
                return Err(Refused);
            }
        }
        if self.open_count() < self.limits.max_connections {
            return Ok(slot);
        }
        if !self.evict(node, now, out) {
            if self.refused == 0 {
                out.push(Effect::Show(Event::Warning(format!(
                    "refusing connections (from {ip} first): {} are open, the limit (--max-connections)",
                    self.open_count()
                ))));
            }
            self.refused += 1;
            return Err(Refused);
        }
        // Evicting closed a connection, and closing the last one may prune the entries of
        // addresses with none open, this one's too: looked up again.
        Ok(self.slot_of(ip))
    }

    /// At the connection limit: closes the inbound connection idle longest among those of
    /// the address holding the most, if it has been idle at least a second, to make room.
    /// Whoever holds many idle connections loses them first; a burst of fresh ones is
    /// never cut short. What the connection left unfinished (an open block, a line
    /// without its end) is shown as it came, as at the idle timeout, and the user is told.
    fn evict(&mut self, node: &mut Node, now: Instant, out: &mut Vec<Effect>) -> bool {
        let Some((slot, ip)) = self
            .per_ip
            .iter()
            .max_by_key(|(_, per)| per.open)
            .map(|(slot, per)| (slot, per.ip))
        else {
            return false;
        };
        let victim = self
            .conns
            .iter()
            .filter_map(|(key, c)| match c {
                Conn::In(i) if i.slot == slot && !i.queued => Some((key, i.idle_since())),
                _ => None,
            })
            .min_by_key(|(_, since)| *since);
        match victim {
            Some((key, since)) if since < secs_since(self.started, now) => {
                let pending = match self.conns.get(key) {
                    Some(Conn::In(conn)) => conn.decoder.buffered(),
                    _ => 0,
                };
                if pending > 0 {
                    out.push(Effect::Show(Event::Warning(format!(
                        "closed an idle connection from {ip} to make room (--max-connections) with {pending} bytes unfinished (read as they came)"
                    ))));
                    self.deliver_unfinished(key, super::Ending::Closed, node, now, out);
                } else {
                    log::debug!("closing an idle connection from {ip} to make room");
                }
                self.close(key, out);
                true
            }
            _ => false,
        }
    }

    /// Files an accepted connection in `conns`, watched by the poll (read when its
    /// readiness event comes, in order behind older connections'); `slot` is its address's
    /// entry in `per_ip`, if it has one (found by `admit`).
    fn add_inbound(
        &mut self,
        mut stream: TcpStream,
        addr: SocketAddr,
        slot: Option<usize>,
        now: Instant,
    ) {
        // Registering queues its readiness event behind those of older connections
        // (epoll's ready list is in order), so that a sender's back-to-back one-message
        // connections are shown in the order they were sent: the previous one's EOF
        // arrived before this one's SYN.
        let key = self.conns.vacant_key();
        if let Err(e) = self
            .registry
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            log::warn!("cannot watch a connection from {addr}: {e}");
            return;
        }
        let slot = self.claim(addr, slot);
        let mut conn = self.new_inbound(stream, slot);
        conn.polled = Polled::Watched;
        self.file(conn, now);
    }

    /// A place for a new connection from `addr` in its address's entry (`slot` in
    /// `per_ip`, made when it has none): the entry's slot.
    pub(super) fn claim(&mut self, addr: SocketAddr, slot: Option<usize>) -> usize {
        let slot = match slot {
            Some(slot) => slot,
            None => {
                let ip = addr.ip().to_canonical();
                let slot = self.per_ip.insert(PerIp {
                    ip,
                    open: 0,
                    refused: 0,
                    unfinished: 0,
                });
                self.ip_slots.insert(ip, slot);
                self.last_slot = slot;
                self.idle_slots += 1;
                slot
            }
        };
        if let Some(per) = self.per_ip.get_mut(slot) {
            if per.open == 0 {
                self.idle_slots -= 1;
            }
            per.open += 1;
        }
        slot
    }

    /// A new inbound connection holding a place at `slot` in `per_ip`
    /// ([`Connections::claim`]), not filed anywhere yet (filing it sets its times), not
    /// watched.
    pub(super) fn new_inbound(&self, stream: TcpStream, slot: usize) -> Inbound {
        Inbound {
            stream,
            slot,
            active_at: 0,
            line_since: 0,
            decoder: Decoder::new(self.limits.max_line).group_lines(),
            queued: false,
            held: false,
            polled: Polled::Unwatched,
            quiet: false,
        }
    }
}
