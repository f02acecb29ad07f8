//! Every TCP connection of the peer: the listener, a slab of connections keyed by token,
//! and their timers.
//!
//! Inbound connections are accepted (up to the connection limit), read within a budget
//! per turn and decoded; each decoded message goes to the node. Outbound connections are
//! opened for what the node hands out ([`crate::node::Node::poll_transmit`]) and for its
//! liveness checks; each reports its end back to the node. Idle inbound connections are
//! closed by one sweep timer, not a timer each, so churn costs no timer updates (the sweep
//! stays armed between one connection and the next).

use crate::time::Instant;
use foldhash::{HashMap, HashMapExt};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

mod accept;
mod outbound;

use crate::config::Limits;
use crate::driver::connection::{Conn, Inbound, Polled, ReadEnd, Share};
use crate::node::event::{Event, Sender};
use crate::node::timers::Timers;
use crate::node::{Effect, Node};
use crate::wire;

/// When the last connection closes and the slab had grown to this many slots, or this
/// many bytes were read since the last time, the memory of the burst is given back.
const SHRINK_AFTER: usize = 1024;
const SHRINK_AFTER_BYTES: usize = 1 << 20;

/// One address may hold this fraction of `--max-unfinished`: one sender cannot use it
/// all up (with the defaults, 256 connections of one address with a 64 KiB line each
/// would be all of it).
const UNFINISHED_SHARES: usize = 4;

/// Entries of addresses with no connection open kept at least (see `Connections::idle_slots`).
const IDLE_SLOTS: usize = 64;

/// New connections accepted in one turn; more wait for the next.
const ACCEPTS_PER_TURN: usize = 128;

/// How long a connection that ends its messages with nothing may stay silent after a
/// whole message (of a dialect with its header on the message's line, or JSON) before that
/// message is shown (see `Connections::quiet`): far longer than the pieces of one write
/// take to arrive, short enough to feel immediate.
const QUIET: Duration = Duration::from_millis(200);

/// Bytes of what connections left unfinished that one turn hands over (at least one
/// connection's, however large), for the quiet, the stalled and the evicted alike; the
/// rest waits for the next turns, and for stdout to keep up, as reading does. Handed over
/// all at once, a few hundred connections' unfinished lines (64 KiB each at most) were
/// rendered in one turn: tens of megabytes, far beyond the memory bound.
const HAND_PER_TURN: usize = 64 * 1024;

/// Size of the one read buffer shared by every connection (and the console): the largest
/// share of a turn.
const READ_BUF: usize = Share::ALONE.bytes;

/// How [`Connections::deliver_unfinished`] takes what a connection left unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The connection is being closed: everything, as at EOF.
    Closed,
    /// The sender fell quiet after a whole message: that line, and the connection goes on.
    Quiet,
}

/// What a timer entry asks for. An entry is cancelled when what it names goes away, so an
/// entry that fires always means something.
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// An outbound connection's deadline.
    Conn { key: usize },
    /// Close inbound connections idle for too long. Armed while any is open.
    Sweep,
    /// Try accepting again after running out of descriptors.
    ResumeAccept,
}

/// What one remote address holds.
#[derive(Debug)]
struct PerIp {
    /// The address.
    ip: IpAddr,
    /// Inbound connections open.
    open: u32,
    /// Connections refused at the per-address limit since it was last reported.
    refused: u64,
    /// Bytes of unfinished lines and backlogs of its connections.
    unfinished: usize,
}

/// The listener and every open connection.
pub struct Connections {
    registry: Registry,
    listener: TcpListener,
    conns: Slab<Conn>,
    timers: Timers<Timer>,
    limits: Limits,
    /// The address outgoing connections start from, when one was bound.
    from: Option<IpAddr>,
    /// When the driver started: the origin of `Inbound::active_at`.
    started: Instant,
    /// The last moment asked of [`Connections::secs_at`], and its whole seconds since
    /// `started`: a turn asks for the same moment several times (filing a connection,
    /// then accounting for its read), and the division is the dearer part.
    secs_cache: (Instant, u32),
    /// Accepting paused: out of descriptors (resumes on a timer).
    accept_paused: bool,
    /// The listener may have connections waiting (readable, and not yet accepted until
    /// `WouldBlock`).
    accept_pending: bool,
    /// Connections refused at the connection limit since the last report.
    refused: u64,
    /// Per remote IP with inbound connections open: how many, and how many were refused
    /// at the per-address limit since it was last reported. In a slab, so that each
    /// connection reaches its address's entry by index (`Inbound::slot`): an address is
    /// looked up once per connection, when it is accepted.
    per_ip: Slab<PerIp>,
    /// Where each address's entry is in `per_ip`.
    ip_slots: HashMap<IpAddr, usize>,
    /// The entry of the address last accepted from, tried before `ip_slots` (a sender's
    /// connections tend to come one after another); checked against the entry's address,
    /// since entries are pruned and their slots reused.
    last_slot: usize,
    /// Entries of `per_ip` with no connection open. They are kept for the address's next
    /// connection (a sender of one-message connections would otherwise have its entry
    /// removed and added again each time) and pruned once they outnumber the inbound
    /// connections open and [`IDLE_SLOTS`]: at most twice as many entries as
    /// connections, or that many more.
    idle_slots: usize,
    /// The `Timer::Sweep` entry, armed while inbound connections are open. It is not
    /// cancelled when the last one closes (one-message connections one after another
    /// would insert and cancel it each time): it fires once more, finds none, and is not
    /// armed again until the next connection comes. An idle peer wakes up once, a quarter
    /// of the idle timeout after its last connection closed, then no more.
    sweep: Option<crate::node::timers::TimerId>,
    /// Inbound connections open.
    inbound: usize,
    /// Inbound connections waiting for their next turn: their share ran out with data
    /// possibly left (edge-triggered readiness will not announce it again), or reading was
    /// deferred while stdout is behind. Each is in it at most once (`Inbound::queued`), and
    /// a connection closed takes its place with it.
    queue: VecDeque<usize>,
    /// Connections whose read left a whole message (standard or JSON) unfinished (no
    /// newline after it), in the order they were read, with when it becomes due and the
    /// read's serial (`reads`, marked on the decoder by every read that drains the
    /// socket): if no read came by then ([`QUIET`] later), the sender ends its messages
    /// with nothing and keeps its connection open, and the message is shown. An entry
    /// whose connection read more (a new mark) starts its quiet again when it comes due;
    /// a connection closed takes its entry with it. One entry per open connection
    /// (`Inbound::quiet`), so never more than `--max-connections`.
    quiet: VecDeque<(Instant, usize, u64)>,
    /// Reads that ended with the socket drained, counted: each one's serial.
    reads: u64,
    /// Bytes of unfinished data handed over in this turn (see [`HAND_PER_TURN`]).
    handed: usize,
    /// An idle sweep left stalled connections open for want of budget or of stdout: they
    /// are closed at the next turns with both, not at a timer (see [`Connections::on_timers`]).
    stalled_left: bool,
    /// How many at the front of `queue` get their turn in this loop turn
    /// ([`Connections::start_turn`]); those queued during it come after them.
    in_turn: usize,
    /// Queued connections held back unread for order (`Inbound::held`).
    held_back: usize,
    /// Connections accepted this turn while no other inbound connection was open, in the
    /// order they came, with their places in `per_ip`, to be read at once
    /// ([`Connections::read_fresh`]). Not in `conns` yet: one that says all it has to say
    /// and closes in that read (a one-message connection) is never filed there, and costs
    /// no entry, no removal and no bookkeeping of what it leaves unfinished (nothing).
    /// Each holds its address's place (`PerIp::open`) and counts against
    /// `--max-connections` meanwhile. Empty between turns.
    fresh: VecDeque<(TcpStream, usize)>,
    /// Bytes of unfinished lines held by all inbound decoders together, and of the
    /// backlogs.
    unfinished: usize,
    /// Bytes read but not decoded yet (a connection's message share ran out), per
    /// connection that has any.
    backlogs: HashMap<usize, Vec<u8>>,
    /// Bytes read since memory was last given back.
    read_since_shrink: usize,
    /// Memory was given back since [`Connections::take_gave_back`] (the driver then gives
    /// back its own buffers too).
    gave_back: bool,
    /// How much a connection reads in its turn: set each turn by [`Connections::set_contenders`].
    share: Share,
    /// The share of a connection alone with work (bounded by the limits: see
    /// [`Connections::set_contenders`]).
    alone: Share,
    /// Reused buffers: nothing is allocated per event on the hot path.
    read_buf: Box<[u8]>,
    messages: Vec<wire::Message>,
    /// The strings of messages already shown, for the decoders to take again.
    spares: wire::Spares,
}

impl Connections {
    /// Watches `listener` (under `token`) with `registry`; outgoing connections start
    /// from `bind` unless it is unspecified.
    pub fn new(
        registry: Registry,
        mut listener: TcpListener,
        token: Token,
        limits: Limits,
        bind: IpAddr,
        now: Instant,
    ) -> io::Result<Self> {
        registry.register(&mut listener, token, Interest::READABLE)?;
        let alone = Share {
            bytes: (limits.max_unfinished / UNFINISHED_SHARES / 2)
                .clamp(Share::SHARED.bytes, Share::ALONE.bytes),
            ..Share::ALONE
        };
        Ok(Connections {
            registry,
            listener,
            conns: Slab::new(),
            timers: Timers::default(),
            limits,
            from: Some(bind).filter(|ip| !ip.is_unspecified()),
            started: now,
            secs_cache: (now, 0),
            accept_paused: false,
            accept_pending: false,
            refused: 0,
            per_ip: Slab::new(),
            ip_slots: HashMap::new(),
            last_slot: 0,
            idle_slots: 0,
            sweep: None,
            inbound: 0,
            queue: VecDeque::new(),
            quiet: VecDeque::new(),
            handed: 0,
            stalled_left: false,
            reads: 0,
            in_turn: 0,
            fresh: VecDeque::new(),
            held_back: 0,
            unfinished: 0,
            backlogs: HashMap::new(),
            read_since_shrink: 0,
            gave_back: false,
            share: Share::SHARED,
            alone,
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            messages: Vec::new(),
            spares: wire::Spares::default(),
        })
    }

    /// Where we listen.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared read buffer, lent to the console between connection reads.
    pub fn read_buf(&mut self) -> &mut [u8] {
        &mut self.read_buf
    }

    /// Whether a readiness event for `token` brings one more connection with work: one of
    /// the connections', and not one already queued for its turn (edge-triggered
    /// readiness announces new data on a connection that still has its backlog).
    pub fn brings_work(&self, token: Token) -> bool {
        match self.conns.get(token.0) {
            Some(Conn::In(conn)) => !conn.queued,
            Some(Conn::Out(_)) => true,
            None => false,
        }
    }

    /// How many connections have work this turn (readiness events, turns queued): one
    /// alone reads [`Share::ALONE`], any more [`Share::SHARED`] each. A lone turn reads no
    /// more than an eighth of `--max-unfinished`, though (and no less than a shared turn):
    /// what it reads beyond its share of lines waits in its backlog, which counts against
    /// its address's quarter of that bound, and a stream of complete short lines must not
    /// be taken for unfinished ones.
    pub fn set_contenders(&mut self, contenders: usize) {
        self.share = match contenders {
            0 | 1 => self.alone,
            _ => Share::SHARED,
        };
    }

    /// Whether some connection waits for its turn to read, or the listener to accept.
    pub fn wants_turn(&self) -> bool {
        !self.queue.is_empty() || (self.accept_pending && !self.accept_paused)
    }

    /// The earliest connection deadline. While stdout is `behind`, a quiet message that
    /// is due, or a stalled connection an idle sweep left open, waits for it to take more
    /// (its writability wakes the loop), not a timeout.
    #[inline]
    pub fn next_deadline(&self, now: Instant, behind: impl Fn() -> bool) -> Option<Instant> {
        let timers = self.timers.next_deadline();
        if self.quiet.is_empty() && !self.stalled_left {
            return timers; // the usual case: one check, and stdout not looked at
        }
        self.next_handing(timers, now, behind())
    }

    /// [`Connections::next_deadline`] with unfinished data to hand over.
    #[cold]
    fn next_handing(&self, timers: Option<Instant>, now: Instant, behind: bool) -> Option<Instant> {
        let quiet = self
            .quiet
            .front()
            .map(|&(at, ..)| at)
            .filter(|&at| !behind || at > now);
        let quiet = match self.stalled_left && !behind {
            true => Some(now),
            false => quiet,
        };
        crate::node::timers::earliest(timers, quiet)
    }

    /// The poll said the peer of connection `key` has sent all it will (`net::peer_ended`):
    /// remembered until its reads take the rest (see `Polled::Ended`), whenever its turn.
    /// Only for a watched connection: an event for a slot that a connection not yet
    /// registered has taken over is stale, and says nothing of it.
    pub fn heard_end(&mut self, key: usize) {
        if let Some(Conn::In(conn)) = self.conns.get_mut(key) {
            if conn.polled == Polled::Watched {
                conn.polled = Polled::Ended;
            }
        }
    }

    /// A readiness event for connection `key`. An inbound connection is read now, with
    /// `read` (its share of this turn), or, without it, queued for a later turn; one already
    /// queued waits for its turn there.
    pub fn ready(
        &mut self,
        key: usize,
        read: bool,
        node: &mut Node,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        match self.conns.get_mut(key) {
            Some(Conn::In(conn)) if conn.queued => {}
            Some(Conn::In(_)) if !read => self.defer(key),
            Some(Conn::In(_)) => self.read_inbound(key, node, now, out),
            Some(Conn::Out(_)) => self.drive_outbound(key, node, now, out),
            None => {}
        }
    }

    /// How many connections were accepted this turn while no other was open, to be read
    /// at once, one [`Connections::read_fresh`] each; they share the turn as any
    /// connections with work do. No older connection can have a message to show before
    /// theirs (a sender's connection is in the listener's queue only after what it sent
    /// on the one before reached that socket, unless it sent more than the socket's
    /// receive window: see the README), so nothing is gained by waiting a turn for their
    /// readiness events: a one-message connection costs one poll and one turn, not two.
    pub fn start_fresh(&mut self) -> usize {
        if !self.fresh.is_empty() {
            self.set_contenders(self.fresh.len());
        }
        self.fresh.len()
    }

    /// Reads the next connection [`Connections::start_fresh`] counted, with `read` (its
    /// share of this turn), or, without it (stdout fell behind), files it to be read at a
    /// later turn. One that closed holding nothing is done with here; any other is filed
    /// in `conns` and goes on as a connection read by [`Connections::ready`] does.
    pub fn read_fresh(&mut self, read: bool, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        let Some((stream, slot)) = self.fresh.pop_front() else {
            return;
        };
        let mut conn = self.new_inbound(stream, slot);
        if !read {
            let key = self.file(conn, now);
            self.defer(key);
            return;
        }
        let mut backlog = Vec::new();
        let (end, taken) = conn.read(
            self.share,
            &mut self.read_buf,
            &mut backlog,
            &mut self.messages,
            &mut self.spares,
        );
        if taken == 0 && matches!(end, ReadEnd::Drained) {
            // Accepted as its handshake completed, before its bytes came (usual on a
            // machine with several cores): filed and watched at once, with nothing read and
            // nothing to account for; its readiness event brings the bytes.
            let key = self.file(conn, now);
            self.watch(key, out);
            return;
        }
        let done =
            matches!(end, ReadEnd::Closed) && backlog.is_empty() && conn.decoder.buffered() == 0;
        match self.per_ip.get(conn.slot).map(|per| per.ip) {
            Some(ip) if done => {
                // All it had to say, and closed: shown, and closed for good.
                self.read_since_shrink = self.read_since_shrink.saturating_add(taken);
                if conn.decoder.is_port_line() {
                    acknowledge_lines(&mut conn, &self.messages);
                }
                deliver(&mut self.messages, ip, node, now, out);
                self.release(conn.slot, 0, out);
                conn.decoder.recycle(&mut self.spares);
                drop(conn.stream);
                self.after_close(out);
            }
            _ => {
                let key = self.file(conn, now);
                self.after_read(key, (end, taken), (0, backlog), node, now, out);
            }
        }
    }

    /// Files a new connection in `conns`, active and with no line pending since `now`
    /// (unwatched unless it says so: the read that first finds nothing more registers
    /// it); its key.
    fn file(&mut self, mut conn: Inbound, now: Instant) -> usize {
        let now_secs = self.secs_at(now);
        (conn.active_at, conn.line_since) = (now_secs, now_secs);
        let key = self.conns.insert(Conn::In(conn));
        self.inbound += 1;
        if self.sweep.is_none() {
            self.sweep = Some(self.timers.insert(now + self.sweep_period(), Timer::Sweep));
        }
        key
    }

    /// Registers the filed inbound connection at `key` with the poll: from now on its
    /// readiness events say when more comes (registering reports data that arrived since
    /// its last read, so none is missed). One that cannot be watched is closed, and the
    /// user told.
    fn watch(&mut self, key: usize, out: &mut Vec<Effect>) {
        let Some(Conn::In(conn)) = self.conns.get_mut(key) else {
            return;
        };
        let Err(e) = self
            .registry
            .register(&mut conn.stream, Token(key), Interest::READABLE)
        else {
            conn.polled = Polled::Watched;
            return;
        };
        let slot = conn.slot;
        let ip = self.ip_at(slot);
        out.push(Effect::Show(Event::Warning(format!(
            "closed the connection from {ip}: cannot watch it: {e}"
        ))));
        self.close(key, out);
    }

    /// Tests: files the fresh connections unread, as accepting did before it read them
    /// at once.
    #[cfg(test)]
    fn settle_fresh(&mut self, now: Instant) {
        while let Some((stream, slot)) = self.fresh.pop_front() {
            let conn = self.new_inbound(stream, slot);
            self.file(conn, now);
        }
    }

    /// Starts a loop turn: the connections queued now get their turn in it, in order
    /// ([`Connections::next_in_turn`]); how many. Those queued during the turn wait for the
    /// next, and those the turn does not reach (stdout fell behind) stay ahead of them:
    /// they waited longer, and a sender's older connection keeps its place before its newer
    /// one.
    pub fn start_turn(&mut self) -> usize {
        self.handed = 0;
        self.in_turn = self.queue.len();
        self.in_turn
    }

    /// Whether connections are left whose turn it is in this loop turn.
    pub fn turns_left(&self) -> bool {
        self.in_turn > 0
    }

    /// The next connection whose turn it is in this loop turn, taken from the queue; give
    /// it its turn with [`Connections::take_turn`].
    pub fn next_in_turn(&mut self) -> Option<usize> {
        self.in_turn = self.in_turn.checked_sub(1)?;
        self.queue.pop_front()
    }

    /// Marks inbound connection `key` queued and held back for order, unless it waits
    /// already; whether it was marked.
    fn hold(&mut self, key: usize) -> bool {
        match self.conns.get_mut(key) {
            Some(Conn::In(conn)) if !conn.queued => {
                conn.queued = true;
                conn.held = true;
                self.held_back += 1;
                true
            }
            _ => false,
        }
    }

    /// Queues inbound connection `key` for the next turn, unread, held back for order
    /// (stdout is behind).
    fn defer(&mut self, key: usize) {
        if self.hold(key) {
            self.queue.push_back(key);
        }
    }

    /// Whether connections wait in the queue held back unread for order: deferred while
    /// stdout was behind (a sender's newer connection must not be read before them), or
    /// waiting behind those. Connections queued because their share of a turn ran out (a
    /// stream) hold no one back: a newcomer is read at once.
    pub fn holds_back(&self) -> bool {
        self.held_back > 0
    }

    /// Queues inbound connection `key` at the end of this turn's part of the queue, held
    /// back, when it is not waiting already: a readiness event that comes while
    /// [`Connections::holds_back`] is served after those connections, in the same turn, so
    /// that a sender whose earlier connection was deferred is not read out of order. False
    /// for anything else (an outbound connection is driven at once).
    pub fn wait_behind(&mut self, key: usize) -> bool {
        let held = self.hold(key);
        if held {
            self.queue.insert(self.in_turn, key);
            self.in_turn += 1;
        }
        held
    }

    /// The turn of a queued connection: its share is read.
    pub fn take_turn(&mut self, key: usize, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        if let Some(Conn::In(conn)) = self.conns.get_mut(key) {
            if conn.queued {
                conn.queued = false;
                if conn.held {
                    conn.held = false;
                    self.held_back = self.held_back.saturating_sub(1);
                }
                self.read_inbound(key, node, now, out);
            }
        }
    }

    fn read_inbound(&mut self, key: usize, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        let Some(Conn::In(conn)) = self.conns.get_mut(key) else {
            return;
        };
        // Most connections never have a backlog: no lookup for them.
        let mut backlog = match self.backlogs.is_empty() {
            true => Vec::new(),
            false => self.backlogs.remove(&key).unwrap_or_default(),
        };
        let before = conn.decoder.buffered() + backlog.len();
        let read = conn.read(
            self.share,
            &mut self.read_buf,
            &mut backlog,
            &mut self.messages,
            &mut self.spares,
        );
        self.after_read(key, read, (before, backlog), node, now, out);
    }

    /// What follows a read of connection `key` that ended with `end` after taking `taken`
    /// bytes from its socket: the accounting of what it left unfinished (`before` the
    /// read, and now with `backlog`, bytes read and not decoded), its messages handed to
    /// `node`, and what the end asks (watching it, queueing it, closing it).
    fn after_read(
        &mut self,
        key: usize,
        (mut end, taken): (ReadEnd, usize),
        (before, backlog): (usize, Vec<u8>),
        node: &mut Node,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let now_secs = self.secs_at(now);
        let Some(Conn::In(conn)) = self.conns.get_mut(key) else {
            return;
        };
        self.read_since_shrink = self.read_since_shrink.saturating_add(taken);
        let after = conn.decoder.buffered() + backlog.len();
        self.unfinished = self.unfinished.saturating_sub(before) + after;
        let Some(per) = self.per_ip.get_mut(conn.slot) else {
            // Never: an open connection's address has its entry. Should it not, what was
            // decoded is not shown under another's address: dropped with the connection.
            log::warn!("a connection lost its address's entry; closing it");
            self.messages.clear();
            if !backlog.is_empty() {
                self.backlogs.insert(key, backlog); // for `close` to count it out
            }
            self.close(key, out);
            return;
        };
        let ip = per.ip;
        let mut from_ip = 0;
        if before != after {
            per.unfinished = per.unfinished.saturating_sub(before) + after;
            from_ip = per.unfinished;
        }
        if !backlog.is_empty() {
            self.backlogs.insert(key, backlog);
        }
        if after > before {
            if from_ip > self.limits.max_unfinished / UNFINISHED_SHARES {
                // One address may hold only its share: its own line goes.
                end = ReadEnd::Unfinished;
            } else if self.unfinished > self.limits.max_unfinished {
                // Over the bound in all: the largest holder goes, whoever it is.
                match self.largest_holder() {
                    Some(victim) if victim != key => self.close_unfinished(victim, out),
                    _ => end = ReadEnd::Unfinished,
                }
            }
        }
        let Some(Conn::In(conn)) = self.conns.get_mut(key) else {
            return;
        };
        if !self.messages.is_empty() {
            // Only a message is activity: blank lines and pieces of a line are not, so
            // a connection kept open with them is closed at the idle timeout.
            conn.active_at = now_secs;
        }
        if !self.messages.is_empty() || conn.decoder.buffered() == 0 {
            // A line was completed (or none is pending): not stalled mid-line.
            conn.line_since = now_secs;
        }
        if conn.decoder.is_port_line() {
            acknowledge_lines(conn, &self.messages);
        }
        deliver(&mut self.messages, ip, node, now, out);
        if matches!(end, ReadEnd::Drained) {
            // Every such read marks what it left, so that no earlier entry matches it.
            self.reads += 1;
            conn.decoder.mark(self.reads);
            if !conn.quiet
                && self.quiet.len() < self.limits.max_connections
                && conn.decoder.holds_whole_message()
            {
                conn.quiet = true;
                self.quiet.push_back((now + QUIET, key, self.reads));
            }
        }
        match end {
            // Read in the turn that accepted it, and not at its end: watched from now on.
            ReadEnd::Drained if conn.polled == Polled::Unwatched => self.watch(key, out),
            ReadEnd::Drained => {}
            ReadEnd::Budget => {
                conn.queued = true;
                self.queue.push_back(key);
            }
            ReadEnd::Closed => self.close(key, out),
            ReadEnd::TooLong(e) => {
                let warning = format!("closed the connection from {ip}: {e}");
                out.push(Effect::Show(Event::Warning(warning)));
                self.close(key, out);
            }
            ReadEnd::Unfinished => self.close_unfinished(key, out),
        }
    }

    /// Takes back the strings of an event that was shown, for the next messages decoded:
    /// with this, a message costs no allocation in steady state.
    pub fn recycle(&mut self, event: Event) {
        if let Event::Message { from, text } = event {
            self.spares.give(text);
            if let Some(name) = from.name {
                self.spares.give(name);
            }
        }
    }

    /// Likewise for the strings of a run of lines that was shown.
    pub fn recycle_lines(&mut self, from: Sender, lines: wire::Run) {
        self.spares.give_run(lines);
        if let Some(name) = from.name {
            self.spares.give(name);
        }
    }

    /// Fires the connection timers that are due. With `room` (stdout keeps up), what
    /// connections left unfinished is handed over within [`HAND_PER_TURN`]; without, it
    /// waits, as reading does.
    pub fn on_timers(
        &mut self,
        node: &mut Node,
        (now, room): (Instant, bool),
        out: &mut Vec<Effect>,
    ) {
        while let Some(&(at, key, serial)) = self.quiet.front() {
            if at > now || !(room && self.may_hand()) {
                break;
            }
            self.quiet.pop_front();
            self.end_quiet_message(key, serial, node, now, out);
        }
        if self.stalled_left && room && self.may_hand() {
            self.stalled_left = self.close_idle(node, (now, room), out);
        }
        for timer in self.timers.pop_expired(now) {
            match timer {
                Timer::ResumeAccept => {
                    self.accept_paused = false;
                    self.accept_pending = true;
                }
                Timer::Sweep => {
                    self.sweep = None;
                    // Stalled connections whose unfinished data must wait are closed at
                    // the next turns that have budget and stdout keeping up, not at a
                    // timer: one 200 ms later woke a peer whose terminal was paused five
                    // times a second for as long as it stayed so.
                    self.stalled_left = self.close_idle(node, (now, room), out);
                    if self.inbound > 0 {
                        let next = now + self.sweep_period();
                        self.sweep = Some(self.timers.insert(next, Timer::Sweep));
                    }
                }
                Timer::Conn { key } => {
                    if let Some(Conn::Out(conn)) = self.conns.get_mut(key) {
                        conn.timer = None; // it just fired
                        let step = conn.expire();
                        self.finish_step(key, step, node, now, out);
                    }
                }
            }
        }
    }

    /// How often idle inbound connections are looked for: a quarter of the idle timeout.
    fn sweep_period(&self) -> Duration {
        (self.limits.idle_timeout / 4).max(Duration::from_secs(1))
    }

    /// Closes inbound connections silent for the idle timeout (or stalled mid-line: what
    /// they left unfinished is delivered as it is, as at EOF, within the turn's
    /// [`HAND_PER_TURN`] and with `room`). Returns whether some such connection was left
    /// for a later sweep.
    fn close_idle(
        &mut self,
        node: &mut Node,
        (now, room): (Instant, bool),
        out: &mut Vec<Effect>,
    ) -> bool {
        let idle = self.limits.idle_timeout;
        let idle_secs = u32::try_from(idle.as_secs()).unwrap_or(u32::MAX);
        // Times are whole seconds: `< cutoff` never closes a connection early.
        let Some(cutoff) = secs_since(self.started, now).checked_sub(idle_secs) else {
            return false; // the driver has not run for an idle timeout yet
        };
        // A port-line peer keeps one connection open between its messages: one per
        // address is spared (the one active last), so that port lines cannot hold slots.
        let mut spared: HashMap<usize, (u32, usize)> = HashMap::new();
        for (key, c) in self.conns.iter() {
            if let Conn::In(i) = c {
                if i.keeps_open() {
                    let best = spared.entry(i.slot).or_insert((i.active_at, key));
                    *best = (*best).max((i.active_at, key));
                }
            }
        }
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(key, c)| {
                // Not one waiting for its turn: it has not been read since (stdout behind,
                // say), so its silence is ours, not the sender's.
                matches!(c, Conn::In(i) if i.idle_since() < cutoff
                    && !i.queued
                    && !(i.keeps_open() && spared.get(&i.slot).map(|s| s.1) == Some(*key)))
            })
            .map(|(key, _)| key)
            .collect();
        let mut deferred = false;
        for key in expired {
            if let Some(Conn::In(conn)) = self.conns.get(key) {
                let pending = conn.decoder.buffered();
                let ip = self.ip_at(conn.slot);
                if pending > 0 && !(room && self.may_hand()) {
                    deferred = true;
                    continue;
                }
                if pending > 0 {
                    out.push(Effect::Show(Event::Warning(format!(
                        "closed the connection from {ip}: it stalled for {} s with {pending} bytes unfinished (read as they came)",
                        idle.as_secs()
                    ))));
                    self.deliver_unfinished(key, Ending::Closed, node, now, out);
                } else {
                    log::debug!("closing a silent connection from {ip}");
                }
            }
            self.close(key, out);
        }
        deferred
    }

    /// Whether this turn may hand over more unfinished data (see [`HAND_PER_TURN`]).
    pub(super) fn may_hand(&self) -> bool {
        self.handed < HAND_PER_TURN
    }

    /// A [`QUIET`] entry came due: inbound connection `key`, whose read `serial` left a
    /// whole message unfinished, has it shown if no read came since.
    fn end_quiet_message(
        &mut self,
        key: usize,
        serial: u64,
        node: &mut Node,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(Conn::In(conn)) = self.conns.get_mut(key) else {
            return;
        };
        conn.quiet = false;
        // Waiting for its turn to be read (which makes a new entry), or nothing whole to
        // show (its end will); or another connection with its key.
        if conn.queued || !conn.decoder.holds_whole_message() {
            return;
        }
        if conn.decoder.marked() != serial {
            // Read since, still a whole message: its quiet starts again, from now (at
            // most one more `QUIET` than from its last read).
            conn.quiet = true;
            let serial = conn.decoder.marked();
            self.quiet.push_back((now + QUIET, key, serial));
            return;
        }
        let now_secs = secs_since(self.started, now);
        (conn.active_at, conn.line_since) = (now_secs, now_secs);
        self.deliver_unfinished(key, Ending::Quiet, node, now, out);
    }

    /// Delivers what inbound connection `key` holds unfinished, as it is: at
    /// [`Ending::Closed`] everything (a line without its end, an open block), as at EOF, so
    /// that a sender that writes messages with nothing after them and keeps its connection
    /// open loses none when that connection is closed; at [`Ending::Quiet`] the line, and
    /// the connection goes on.
    fn deliver_unfinished(
        &mut self,
        key: usize,
        ending: Ending,
        node: &mut Node,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(Conn::In(conn)) = self.conns.get_mut(key) else {
            return;
        };
        let held = conn.decoder.buffered();
        self.handed += held;
        match ending {
            Ending::Closed => conn
                .decoder
                .finish_reusing(&mut self.messages, &mut self.spares),
            Ending::Quiet => {
                conn.decoder
                    .flush_partial(&mut self.messages, &mut self.spares);
                if conn.decoder.is_port_line() {
                    // A port-line peer waits for this after each message, as after a line.
                    acknowledge_lines(conn, &self.messages);
                }
            }
        }
        // What finishing took out is unfinished no more (`close` counts out the rest).
        let taken = held.saturating_sub(conn.decoder.buffered());
        self.unfinished = self.unfinished.saturating_sub(taken);
        let slot = conn.slot;
        let Some(per) = self.per_ip.get_mut(slot) else {
            self.messages.clear();
            return;
        };
        per.unfinished = per.unfinished.saturating_sub(taken);
        let ip = per.ip;
        for msg in self.messages.drain(..) {
            node.on_message(ip, msg, now, out);
        }
    }

    /// Whether memory was given back since the last call.
    pub fn take_gave_back(&mut self) -> bool {
        std::mem::take(&mut self.gave_back)
    }

    /// After a burst of connections or of reading: frees the slab's slots and the buffers
    /// and returns free heap pages to the system, so that the peer's memory goes back near
    /// its idle size. Runs only when the last connection closes after at least
    /// [`SHRINK_AFTER`] connections or [`SHRINK_AFTER_BYTES`] read, never per event.
    fn give_back_memory(&mut self) {
        self.conns.shrink_to_fit();
        self.queue.shrink_to_fit();
        self.messages.shrink_to_fit();
        self.spares.clear();
        self.prune_idle_slots();
        self.per_ip.shrink_to_fit();
        self.ip_slots.shrink_to_fit();
        self.backlogs.shrink_to_fit();
        self.read_since_shrink = 0;
        self.gave_back = true;
        crate::driver::heap::trim();
        #[cfg(target_os = "linux")]
        forget_pages(&mut self.read_buf);
        log::debug!("gave back the memory of a burst of connections");
    }

    /// The inbound connection holding the most bytes of unfinished lines and backlog.
    fn largest_holder(&self) -> Option<usize> {
        self.conns
            .iter()
            .filter_map(|(key, c)| match c {
                Conn::In(i) => {
                    let backlog = self.backlogs.get(&key).map_or(0, Vec::len);
                    Some((key, i.decoder.buffered() + backlog))
                }
                Conn::Out(_) => None,
            })
            .max_by_key(|(_, held)| *held)
            .map(|(key, _)| key)
    }

    /// Closes `key` for holding too much of an unfinished line, and says so.
    fn close_unfinished(&mut self, key: usize, out: &mut Vec<Effect>) {
        if let Some(Conn::In(conn)) = self.conns.get(key) {
            out.push(Effect::Show(Event::Warning(format!(
                "closed the connection from {}: unfinished lines held more than the bound (--max-unfinished {} bytes, a quarter of it per address)",
                self.ip_at(conn.slot), self.limits.max_unfinished
            ))));
        }
        self.close(key, out);
    }

    fn close(&mut self, key: usize, out: &mut Vec<Effect>) {
        if let Some(conn) = self.conns.try_remove(key) {
            let stream = match conn {
                Conn::In(c) => {
                    self.inbound -= 1;
                    if c.quiet {
                        // Its quiet entry goes with it: left behind, it would take a place
                        // in that bounded queue, and a sender closing connections one after
                        // another would fill it and keep everyone's quiet messages out.
                        if let Some(at) = self.quiet.iter().rposition(|&(_, k, _)| k == key) {
                            self.quiet.remove(at);
                        }
                    }
                    if c.queued {
                        // Its place in the queue goes with it: a connection that takes its
                        // key would otherwise get that turn as well as its own.
                        if let Some(at) = self.queue.iter().position(|&k| k == key) {
                            self.queue.remove(at);
                            if at < self.in_turn {
                                self.in_turn -= 1;
                            }
                        }
                        if c.held {
                            self.held_back = self.held_back.saturating_sub(1);
                        }
                    }
                    let backlog = match self.backlogs.is_empty() {
                        true => 0,
                        false => self.backlogs.remove(&key).map_or(0, |b| b.len()),
                    };
                    let held = c.decoder.buffered() + backlog;
                    self.unfinished = self.unfinished.saturating_sub(held);
                    self.release(c.slot, held, out);
                    c.decoder.recycle(&mut self.spares);
                    c.stream
                }
                Conn::Out(c) => {
                    if let Some(timer) = c.timer {
                        self.timers.cancel(timer);
                    }
                    c.stream
                }
            };
            // Closed without `deregister`, one system call fewer per connection: mio asks
            // for it, but on Linux closing a descriptor removes it from the epoll set by
            // itself when no other descriptor refers to the socket (epoll(7)), and none
            // does: sockets are never duplicated here.
            drop(stream);
        }
        self.after_close(out);
    }

    /// An inbound connection from the address at `slot` in `per_ip` closed, holding
    /// `held` bytes unfinished: its place there is given back. By index: no lookup of the
    /// address (its entry stays when it has no connection left, for its next one; see
    /// `idle_slots`).
    #[inline]
    fn release(&mut self, slot: usize, held: usize, out: &mut Vec<Effect>) {
        if let Some(per) = self.per_ip.get_mut(slot) {
            per.open -= 1;
            per.unfinished = per.unfinished.saturating_sub(held);
            if per.refused > 0 && (per.open as usize) < self.limits.max_per_ip {
                out.push(Effect::Show(Event::Warning(format!(
                    "accepting from {} again; refused {} connections from it at the limit",
                    per.ip, per.refused
                ))));
                per.refused = 0;
            }
            if per.open == 0 {
                self.idle_slots += 1;
            }
        }
    }

    /// After a connection closed: the memory of a burst goes back once the last is gone,
    /// and refusing at the connection limit ends.
    #[inline]
    fn after_close(&mut self, out: &mut Vec<Effect>) {
        if self.conns.is_empty()
            && self.fresh.is_empty()
            && (self.conns.capacity() >= SHRINK_AFTER
                || self.read_since_shrink >= SHRINK_AFTER_BYTES
                || self.messages.capacity() > Share::SHARED.lines)
        {
            self.give_back_memory();
        }
        if self.refused > 0 && self.open_count() < self.limits.max_connections {
            out.push(Effect::Show(Event::Warning(format!(
                "accepting again; refused {} connections while at the limit",
                self.refused
            ))));
            self.refused = 0;
        }
    }

    /// Connections open: filed, and fresh ones not read yet.
    fn open_count(&self) -> usize {
        self.conns.len() + self.fresh.len()
    }
}

/// Gives the whole pages of `buf` back to the system: the next touch finds them zeroed.
/// For the read buffer, whose contents never outlive a read, after a burst: a lone
/// stream's turns fill all of its 256 KiB (with `--max-unfinished` of 2 MiB or more),
/// which would otherwise stay resident.
#[cfg(target_os = "linux")]
fn forget_pages(buf: &mut [u8]) {
    // SAFETY: sysconf only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .unwrap_or(4096)
        .max(1);
    let start = buf.as_mut_ptr() as usize;
    let (from, to) = (
        start.next_multiple_of(page),
        (start + buf.len()) / page * page,
    );
    if to > from {
        // SAFETY: `from..to` lies within `buf`, held exclusively here; MADV_DONTNEED on
        // private anonymous memory (the heap or an anonymous mapping) only drops the
        // contents, which are not read before being written again.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
        }
    }
}

/// Hands the messages decoded from a connection from `ip` to `node`, in order.
fn deliver(
    messages: &mut Vec<wire::Message>,
    ip: IpAddr,
    node: &mut Node,
    now: Instant,
    out: &mut Vec<Effect>,
) {
    let mut deliver = |msg: wire::Message| {
        log::debug!("from {ip}: {:?} message", msg.dialect);
        node.on_message(ip, msg, now, out);
    };
    if messages.len() == 1 {
        // One message, the usual case: taken without a `Drain`, whose drop costs more
        // here than moving the message out.
        if let Some(msg) = messages.pop() {
            deliver(msg);
        }
    } else {
        messages.drain(..).for_each(deliver);
    }
}

/// Writes [`wire::MESSAGE_RECEIVED`] back for each line a port-line peer sent: it waits
/// for that before it sends its next line. The peer waits for each, so at most a few are
/// ever outstanding; one that streams lines without reading them finds the socket's
/// buffer full, and the acknowledgements it does not read are dropped (said in the log).
fn acknowledge_lines(conn: &mut Inbound, messages: &[crate::wire::Message]) {
    let lines = |m: &crate::wire::Message| match &m.body {
        crate::wire::Body::Lines(run) => run.line_count(),
        _ => 1,
    };
    for _ in 0..messages.iter().map(lines).sum::<usize>() {
        match conn.stream.write(crate::wire::MESSAGE_RECEIVED) {
            Ok(n) if n == crate::wire::MESSAGE_RECEIVED.len() => {}
            Ok(_) | Err(_) => {
                log::debug!("could not acknowledge a line to a port-line peer");
                return;
            }
        }
    }
}

impl Connections {
    /// The address of the entry at `slot` in `per_ip`, an inbound connection's.
    fn ip_at(&self, slot: usize) -> IpAddr {
        self.per_ip
            .get(slot)
            .map_or(IpAddr::from([0, 0, 0, 0]), |per| per.ip)
    }

    /// Forgets the entries of addresses with no connection open (see `idle_slots`).
    fn prune_idle_slots(&mut self) {
        let ip_slots = &mut self.ip_slots;
        self.per_ip.retain(|_, per| {
            let keep = per.open > 0;
            if !keep {
                ip_slots.remove(&per.ip);
            }
            keep
        });
        self.idle_slots = 0;
    }

    /// Tests: makes every connection `by` older (the origin moves back).
    #[cfg(test)]
    fn age(&mut self, by: Duration) {
        self.started -= by;
        self.secs_cache = (self.started, 0);
    }

    /// Whole seconds from `started` to `now` ([`secs_since`]), computed once per moment.
    fn secs_at(&mut self, now: Instant) -> u32 {
        if self.secs_cache.0 != now {
            self.secs_cache = (now, secs_since(self.started, now));
        }
        self.secs_cache.1
    }

    /// The entry of `ip` in `per_ip`, if it has one: the last address's first, then by
    /// lookup.
    fn slot_of(&mut self, ip: IpAddr) -> Option<usize> {
        if self
            .per_ip
            .get(self.last_slot)
            .is_some_and(|per| per.ip == ip)
        {
            return Some(self.last_slot);
        }
        let slot = self.ip_slots.get(&ip).copied()?;
        self.last_slot = slot;
        Some(slot)
    }
}

/// Whole seconds from `start` to `now`, saturating: what a connection's idle times count
/// in (from `Connections::started`).
fn secs_since(start: Instant, now: Instant) -> u32 {
    u32::try_from(now.secs_since(start)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections over loopback, accepted by a fresh `Connections` with the default limits.
    fn fresh() -> (Connections, SocketAddr) {
        fresh_with(Limits::default())
    }

    /// Likewise with `limits`.
    fn fresh_with(limits: Limits) -> (Connections, SocketAddr) {
        let poll = mio::Poll::new().expect("poll");
        let registry = poll.registry().try_clone().expect("registry");
        let listener = TcpListener::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let unspecified = IpAddr::from([0, 0, 0, 0]);
        let conns = Connections::new(
            registry,
            listener,
            Token(usize::MAX - 1),
            limits,
            unspecified,
            Instant::now(),
        )
        .expect("connections");
        (conns, addr)
    }

    /// Connects from `from` and accepts; the key of the new connection.
    fn accept_from(conns: &mut Connections, to: SocketAddr, from: IpAddr) -> usize {
        accept_keeping(conns, to, from).0
    }

    /// A node for the connections to hand their messages to.
    fn test_node() -> Node {
        Node::new(
            crate::node::Settings::for_tests(),
            crate::node::liveness::Liveness::new(Duration::ZERO, 3),
            (Instant::now(), 0),
        )
    }

    /// The texts of the messages among `effects`, taken out of them.
    fn shown(effects: &mut Vec<Effect>) -> Vec<String> {
        effects
            .drain(..)
            .filter_map(|e| match e {
                Effect::Show(Event::Message { text, .. }) => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Eight connections from `from` that each sent `bytes` (left unfinished) and were
    /// read; their senders' ends, open.
    fn eight_holding(
        conns: &mut Connections,
        (to, from): (SocketAddr, IpAddr),
        bytes: &str,
        (node, now): (&mut Node, Instant),
        effects: &mut Vec<Effect>,
    ) -> Vec<std::net::TcpStream> {
        (0..8)
            .map(|_| {
                let (key, mut sender) = accept_keeping(conns, to, from);
                sender.write_all(bytes.as_bytes()).expect("write");
                conns.ready(key, true, node, now, effects);
                sender
            })
            .collect()
    }

    /// Like [`accept_from`], and also returns the sender's end, open.
    fn accept_keeping(
        conns: &mut Connections,
        to: SocketAddr,
        from: IpAddr,
    ) -> (usize, std::net::TcpStream) {
        accept_keeping_with(conns, to, from, &mut test_node(), &mut Vec::new())
    }

    /// Like [`accept_keeping`], with `node` taking what an eviction delivers, and the
    /// effects in `effects`.
    fn accept_keeping_with(
        conns: &mut Connections,
        to: SocketAddr,
        from: IpAddr,
        node: &mut Node,
        effects: &mut Vec<Effect>,
    ) -> (usize, std::net::TcpStream) {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.bind(&SocketAddr::new(from, 0).into()).expect("bind");
        socket.connect(&to.into()).expect("connect");
        let before: Vec<usize> = conns.conns.iter().map(|(key, _)| key).collect();
        // The kernel completes the handshake before `connect` returns: one accept takes it.
        conns.listener_ready();
        conns.accept(node, Instant::now(), effects);
        conns.settle_fresh(Instant::now());
        let mut keys = conns.conns.iter().map(|(key, _)| key);
        let key = match conns.conns.len() {
            // It evicted the only one (and took its key, perhaps).
            1 => keys.next(),
            _ => keys.find(|key| !before.contains(key)),
        }
        .expect("a new connection");
        (key, socket.into())
    }

    /// An address's entry outlives its last connection, for the next one (no lookup but
    /// one per connection), yet entries of addresses gone are pruned: a sender of
    /// one-message connections from ever new addresses cannot make them pile up.
    #[test]
    fn the_entries_of_addresses_gone_stay_bounded() {
        let (mut conns, to) = fresh();
        let mut effects = Vec::new();
        let one = IpAddr::from([127, 0, 170, 1]);
        let first = accept_from(&mut conns, to, one);
        let second = accept_from(&mut conns, to, one);
        assert_eq!(conns.per_ip.len(), 1, "one entry per address");
        assert_eq!(conns.per_ip.iter().map(|(_, p)| p.open).sum::<u32>(), 2);
        conns.close(first, &mut effects);
        conns.close(second, &mut effects);
        assert_eq!(conns.per_ip.len(), 1, "kept for the next connection");
        assert_eq!(conns.idle_slots, 1);
        let again = accept_from(&mut conns, to, one);
        assert_eq!(
            (conns.per_ip.len(), conns.idle_slots),
            (1, 0),
            "the same entry"
        );
        for i in 2..=200u8 {
            let key = accept_from(&mut conns, to, IpAddr::from([127, 0, 170, i]));
            conns.close(key, &mut effects);
            assert!(
                conns.per_ip.len() <= IDLE_SLOTS + 2,
                "{} entries",
                conns.per_ip.len()
            );
            assert_eq!(conns.ip_slots.len(), conns.per_ip.len());
        }
        let (slot, per) = conns
            .per_ip
            .iter()
            .find(|(_, p)| p.ip == one)
            .expect("kept");
        assert_eq!((per.open, conns.ip_slots.get(&one)), (1, Some(&slot)));
        assert!(matches!(conns.conns.get(again), Some(Conn::In(c)) if c.slot == slot));
        assert!(effects.is_empty(), "{effects:?}");
    }

    /// At the connection limit, a newcomer evicts the idle connection of its own address,
    /// the last one open; closing it gives back the memory of a burst and prunes the
    /// entries of addresses with none open, this one's too: the newcomer still gets an
    /// entry of its own (its messages were left undecoded, then shown under the next
    /// sender's address, when it kept the pruned one).
    #[test]
    fn a_newcomer_that_evicts_the_last_connection_of_its_address_keeps_an_entry() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let (mut conns, to) = fresh_with(limits);
        let ip = IpAddr::from([127, 0, 170, 201]);
        let first = accept_from(&mut conns, to, ip);
        // Idle for a while, after a burst that is to be given back when the last closes.
        if let Some(Conn::In(conn)) = conns.conns.get_mut(first) {
            (conn.active_at, conn.line_since) = (0, 0);
        }
        conns.age(Duration::from_secs(5));
        conns.read_since_shrink = SHRINK_AFTER_BYTES;
        let second = accept_from(&mut conns, to, ip);
        assert_eq!(conns.conns.len(), 1, "the first was evicted");
        assert!(conns.conns.get(first).is_none() || first == second);
        let Some(Conn::In(conn)) = conns.conns.get(second) else {
            panic!("the newcomer is open");
        };
        let per = conns.per_ip.get(conn.slot).expect("its entry");
        assert_eq!((per.ip, per.open), (ip, 1));
        assert_eq!(conns.ip_slots.get(&ip), Some(&conn.slot));
        assert!(
            conns.gave_back,
            "the burst was given back (the entries pruned)"
        );
    }

    /// A connection evicted to make room has what it left unfinished shown as it came, as
    /// at the idle timeout, and the user is told: here an open bracketed block (fails
    /// without: it was dropped without a word).
    #[test]
    fn an_evicted_connection_has_its_unfinished_block_shown() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let (mut conns, to) = fresh_with(limits);
        let mut node = test_node();
        let mut effects = Vec::new();
        let t0 = Instant::now();
        let (first, mut sender) = accept_keeping(&mut conns, to, IpAddr::from([127, 0, 165, 5]));
        sender
            .write_all(b"<127.0.165.5:9> @ <bob>\nline one of an open block\n")
            .expect("write");
        conns.ready(first, true, &mut node, t0, &mut effects);
        assert!(effects.is_empty(), "the block is open: {effects:?}");
        // Idle for a while; then a newcomer from another address needs its slot.
        if let Some(Conn::In(conn)) = conns.conns.get_mut(first) {
            (conn.active_at, conn.line_since) = (0, 0);
        }
        conns.age(Duration::from_secs(5));
        let newcomer = IpAddr::from([127, 0, 165, 6]);
        let (second, mut holder) =
            accept_keeping_with(&mut conns, to, newcomer, &mut node, &mut effects);
        assert_eq!(conns.conns.len(), 1, "the first was evicted");
        let shown: Vec<String> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Show(Event::Message { text, .. }) => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(shown, ["line one of an open block"]);
        assert!(
            effects.iter().any(|e| matches!(e,
                Effect::Show(Event::Warning(w)) if w.contains("to make room"))),
            "the user is told: {effects:?}"
        );
        // Once a turn has handed over its share of unfinished data, the newcomer waits
        // in the listen queue for the next turn (not refused: fails without), and the
        // holder of an open block stays until then.
        holder
            .write_all(b"<127.0.165.6:9> @ <carol>\nheld line\n")
            .expect("write");
        conns.ready(second, true, &mut node, t0, &mut effects);
        if let Some(Conn::In(conn)) = conns.conns.get_mut(second) {
            (conn.active_at, conn.line_since) = (0, 0);
        }
        effects.clear();
        conns.handed = HAND_PER_TURN;
        let third = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        third
            .bind(&SocketAddr::new(IpAddr::from([127, 0, 165, 7]), 0).into())
            .expect("bind");
        third.connect(&to.into()).expect("connect");
        let third: std::net::TcpStream = third.into();
        let third_addr = third.local_addr().expect("address");
        conns.listener_ready();
        conns.accept(&mut node, t0, &mut effects);
        assert_eq!(conns.conns.len(), 1);
        assert!(conns.conns.get(second).is_some(), "the holder stays");
        assert!(conns.wants_turn(), "the newcomer waits for the next turn");
        assert!(
            effects
                .iter()
                .all(|e| !matches!(e, Effect::Show(Event::Message { .. } | Event::Warning(_)))),
            "nothing shown, nobody refused: {effects:?}"
        );
        conns.start_turn();
        conns.accept(&mut node, t0, &mut effects);
        assert!(
            effects.iter().any(|e| matches!(e,
                Effect::Show(Event::Message { text, .. }) if text == "held line")),
            "evicted in the next turn: {effects:?}"
        );
        let kept: Vec<SocketAddr> = conns
            .conns
            .iter()
            .filter_map(|(_, c)| match c {
                Conn::In(i) => i.stream.peer_addr().ok(),
                Conn::Out(_) => None,
            })
            .collect();
        assert_eq!(kept, [third_addr], "the newcomer that waited, let in");
    }

    /// Connections accepted while no inbound connection was open are read at once, in the
    /// order they came, sharing the turn; once one is open, newcomers wait for their
    /// readiness events (behind those of the older one).
    #[test]
    fn only_connections_accepted_with_none_open_are_read_at_once() {
        let now = Instant::now();
        let mut effects = Vec::new();
        // Both must be in the listener's queue when it is read. Over loopback the kernel
        // completes a handshake before `connect` returns; should one not be there yet on a
        // loaded machine, the scene is set again.
        let (mut conns, addr, mut first) = (0..100)
            .find_map(|_| {
                let (mut conns, addr) = fresh();
                let first: Vec<std::net::TcpStream> = (0..2)
                    .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
                    .collect();
                conns.listener_ready();
                conns.accept(&mut test_node(), now, &mut effects);
                (conns.fresh.len() == 2).then_some((conns, addr, first))
            })
            .expect("two connections in the listener's queue at once");
        assert!(conns.conns.is_empty(), "not filed before they are read");
        assert_eq!(conns.start_fresh(), 2);
        assert_eq!(conns.share, Share::SHARED, "two share the turn");
        // The first said all it had to say and closed: shown, and never filed. The
        // second is open: filed, and watched once its read found nothing more.
        first[0].write_all(b"127.0.0.1:9 a one\n").expect("write");
        first[0]
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut node = test_node();
        conns.read_fresh(true, &mut node, now, &mut effects);
        assert_eq!(shown(&mut effects), vec!["one"]);
        assert!(
            conns.conns.is_empty(),
            "a one-message connection is never filed"
        );
        conns.read_fresh(true, &mut node, now, &mut effects);
        assert!(conns.fresh.is_empty());
        assert!(
            matches!(conns.conns.iter().next(), Some((_, Conn::In(c))) if c.polled == Polled::Watched),
            "the open one is filed and watched"
        );
        let _later = std::net::TcpStream::connect(addr).expect("connect");
        while conns.conns.len() < 2 {
            conns.listener_ready();
            conns.accept(&mut test_node(), now, &mut effects);
        }
        assert!(
            conns.fresh.is_empty(),
            "older connections are open: the newcomer waits for its event"
        );
        assert!(effects.is_empty(), "{effects:?}");
    }

    /// Only connections held back unread for order make a newcomer wait: one deferred
    /// while stdout was behind, and one waiting behind it; a stream queued because its
    /// share ran out does not. Closing a held one lets newcomers through again.
    #[test]
    fn only_connections_held_back_for_order_make_newcomers_wait() {
        let (mut conns, to) = fresh();
        let ip = IpAddr::from([127, 0, 171, 1]);
        let keys: Vec<usize> = (0..3).map(|_| accept_from(&mut conns, to, ip)).collect();
        let mut effects = Vec::new();
        // A stream whose share ran out: queued, holding no one back.
        if let Some(Conn::In(conn)) = conns.conns.get_mut(keys[0]) {
            conn.queued = true;
            conns.queue.push_back(keys[0]);
        }
        assert!(!conns.holds_back());
        // Deferred while stdout is behind.
        conns.defer(keys[1]);
        assert!(conns.holds_back());
        // A newer one waits behind it; one already waiting is not marked twice.
        assert!(conns.wait_behind(keys[2]));
        assert!(!conns.wait_behind(keys[2]) && !conns.wait_behind(keys[0]));
        conns.close(keys[1], &mut effects);
        assert!(conns.holds_back(), "the newer one still waits");
        conns.close(keys[2], &mut effects);
        assert!(!conns.holds_back());
    }

    /// A queued connection that is closed leaves no place in the queue behind: the next
    /// connection to take its key gets only its own turns.
    #[test]
    fn a_closed_connection_leaves_no_place_in_the_queue() {
        let (mut conns, to) = fresh();
        let ip = IpAddr::from([127, 0, 171, 3]);
        let keys: Vec<usize> = (0..2).map(|_| accept_from(&mut conns, to, ip)).collect();
        for &key in &keys {
            conns.defer(key);
        }
        let mut effects = Vec::new();
        conns.close(keys[0], &mut effects);
        assert_eq!(conns.queue, [keys[1]]);
        assert!(conns.holds_back(), "the other one still waits");
    }

    /// A queued connection closed during a turn takes its place in that turn with it: a
    /// connection that took its key in the same turn is not read there (its own place comes
    /// next turn), and has one place only.
    #[test]
    fn a_place_in_the_turn_goes_with_its_connection() {
        let (mut conns, to) = fresh();
        let ip = IpAddr::from([127, 0, 171, 4]);
        let old = accept_from(&mut conns, to, ip);
        conns.defer(old);
        assert_eq!(conns.start_turn(), 1);
        let mut effects = Vec::new();
        conns.close(old, &mut effects); // a victim of another's read, say
        let new = accept_from(&mut conns, to, ip);
        assert_eq!(new, old, "the slab gives the key again");
        // The newcomer's share ran out in this turn: it queued itself.
        if let Some(Conn::In(conn)) = conns.conns.get_mut(new) {
            conn.queued = true;
            conns.queue.push_back(new);
        }
        assert_eq!(
            conns.next_in_turn(),
            None,
            "not read in the old one's place"
        );
        assert_eq!(conns.queue, [new], "one place, its own");
        // Next turn the place is its own: read (to its end, here, and closed).
        let mut node = test_node();
        assert_eq!(conns.start_turn(), 1);
        let next = conns.next_in_turn();
        assert_eq!(next, Some(new));
        conns.take_turn(new, &mut node, Instant::now(), &mut effects);
        assert!(conns.conns.get(new).is_none(), "read");
    }

    /// A connection that comes while others are held back waits in this turn's part of
    /// the queue, after them and before those queued during the turn; those the turn does
    /// not reach stay ahead of those queued since.
    #[test]
    fn a_turn_takes_its_own_part_of_the_queue_in_order() {
        let (mut conns, to) = fresh();
        let ip = IpAddr::from([127, 0, 171, 5]);
        let keys: Vec<usize> = (0..4).map(|_| accept_from(&mut conns, to, ip)).collect();
        conns.defer(keys[0]);
        assert_eq!(conns.start_turn(), 1);
        // A stream whose share ran out during the turn: next turn's.
        if let Some(Conn::In(conn)) = conns.conns.get_mut(keys[1]) {
            conn.queued = true;
            conns.queue.push_back(keys[1]);
        }
        assert!(conns.wait_behind(keys[2]), "behind the held one, this turn");
        assert_eq!(conns.queue, [keys[0], keys[2], keys[1]]);
        assert_eq!(conns.next_in_turn(), Some(keys[0]));
        // Stdout fell behind: the turn stops; deferred now, keys[3] goes last.
        conns.defer(keys[3]);
        assert_eq!(conns.queue, [keys[2], keys[1], keys[3]]);
        assert_eq!(conns.start_turn(), 3);
    }

    /// The idle sweep spares a connection waiting for its turn: it has not been read since
    /// (stdout behind, say), so its silence is not the sender's.
    #[test]
    fn the_idle_sweep_spares_a_connection_waiting_for_its_turn() {
        let (mut conns, to) = fresh();
        let ip = IpAddr::from([127, 0, 171, 2]);
        let waiting = accept_from(&mut conns, to, ip);
        let idle = accept_from(&mut conns, to, ip);
        for key in [waiting, idle] {
            if let Some(Conn::In(conn)) = conns.conns.get_mut(key) {
                (conn.active_at, conn.line_since) = (0, 0);
            }
        }
        if let Some(Conn::In(conn)) = conns.conns.get_mut(waiting) {
            conn.queued = true;
            conns.queue.push_back(waiting);
        }
        let later = conns.started + conns.limits.idle_timeout + Duration::from_secs(5);
        let mut effects = Vec::new();
        let mut node = test_node();
        conns.close_idle(&mut node, (later, true), &mut effects);
        assert!(conns.conns.get(waiting).is_some(), "spared");
        assert!(conns.conns.get(idle).is_none(), "closed");
    }

    /// A whole message left unfinished is shown once its connection has been quiet for
    /// [`QUIET`], and only then: an entry made for an earlier read never shows a later
    /// line early (here one of the same length: `tick`, then `hell` of `hello world`), and
    /// a connection read again and again has one entry at a time.
    #[test]
    fn a_quiet_message_is_shown_only_after_its_own_quiet() {
        let (mut conns, to) = fresh();
        let (key, mut sender) = accept_keeping(&mut conns, to, IpAddr::from([127, 0, 171, 9]));
        let mut node = test_node();
        let mut effects = Vec::new();
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        sender.write_all(b"127.0.171.9:9 bob tick").expect("write");
        conns.ready(key, true, &mut node, t0, &mut effects);
        assert!(shown(&mut effects).is_empty(), "not before it is quiet");
        sender
            .write_all(b"\n127.0.171.9:9 bob hell")
            .expect("write");
        conns.ready(key, true, &mut node, t0 + ms(150), &mut effects);
        assert_eq!(shown(&mut effects), ["tick"], "ended by its newline");
        conns.on_timers(&mut node, (t0 + QUIET, true), &mut effects);
        assert!(shown(&mut effects).is_empty(), "tick's entry showed hell");
        // Its quiet starts again when tick's entry finds it read since: one entry per
        // connection at a time.
        assert_eq!(conns.quiet.len(), 1);
        conns.on_timers(&mut node, (t0 + QUIET + QUIET, true), &mut effects);
        assert_eq!(shown(&mut effects), ["hell"], "quiet for 200 ms at least");
    }

    /// Stalled connections an idle sweep could not close (stdout behind, or the turn's
    /// budget spent) set no timer while stdout is behind: a sweep 200 ms later woke a
    /// peer whose terminal was paused five times a second for as long as it stayed so
    /// (fails without). Once stdout keeps up they are closed at the next turns, one
    /// turn's budget each, their data shown.
    #[test]
    fn stalled_connections_left_by_a_sweep_wait_for_stdout_not_a_timer() {
        let (mut conns, to) = fresh();
        let mut node = test_node();
        let mut effects = Vec::new();
        let t0 = Instant::now();
        let from = IpAddr::from([127, 0, 190, 9]);
        let block = format!("<127.0.190.9:9> @ <carol>\n{}", "y".repeat(12_000));
        let _senders = eight_holding(
            &mut conns,
            (to, from),
            &block,
            (&mut node, t0),
            &mut effects,
        );
        assert!(shown(&mut effects).is_empty(), "the blocks are open");
        let later = conns.started + conns.limits.idle_timeout + Duration::from_secs(5);
        conns.start_turn();
        conns.on_timers(&mut node, (later, false), &mut effects);
        assert!(
            shown(&mut effects).is_empty(),
            "stdout behind: nothing handed over"
        );
        assert_eq!(conns.conns.len(), 8, "left open");
        assert!(
            conns
                .next_deadline(later, || true)
                .is_some_and(|at| at >= later + conns.sweep_period()),
            "no wake-up for them while behind: the next sweep's, a period later"
        );
        assert_eq!(conns.next_deadline(later, || false), Some(later), "at once");
        let mut turns = 0;
        while !conns.conns.is_empty() && turns < 8 {
            conns.start_turn();
            conns.on_timers(&mut node, (later, true), &mut effects);
            turns += 1;
        }
        assert!(conns.conns.is_empty(), "all closed");
        assert_eq!(turns, 2, "one turn's budget each");
        assert_eq!(shown(&mut effects).len(), 8, "each one's data shown");
        assert!(conns
            .next_deadline(later, || false)
            .is_none_or(|at| at > later));
    }

    /// What connections left unfinished is handed over within [`HAND_PER_TURN`] a turn
    /// (at least one connection's), and not while stdout is behind, as reading: handed
    /// over all at once, a few hundred quiet connections' lines were rendered in one turn,
    /// tens of megabytes (fails without: all eight in the first turn). While stdout is
    /// behind, a due quiet message sets no timeout (the loop would spin).
    #[test]
    fn unfinished_data_is_handed_over_within_a_turns_budget() {
        let (mut conns, to) = fresh();
        let mut node = test_node();
        let mut effects = Vec::new();
        let t0 = Instant::now();
        let from = IpAddr::from([127, 0, 172, 9]);
        let line = format!("127.0.172.9:9 bob {}", "x".repeat(12_000));
        let mut senders =
            eight_holding(&mut conns, (to, from), &line, (&mut node, t0), &mut effects);
        assert_eq!(shown(&mut effects).len(), 0);
        assert_eq!(conns.quiet.len(), 8);
        let due = t0 + QUIET;
        conns.start_turn();
        conns.on_timers(&mut node, (due, false), &mut effects);
        assert!(
            shown(&mut effects).is_empty(),
            "stdout behind: nothing handed over"
        );
        assert!(
            conns.next_deadline(due, || true).is_some_and(|at| at > due),
            "no timeout for it while behind: the sweep's, later"
        );
        assert_eq!(conns.next_deadline(due, || false), Some(due));
        conns.on_timers(&mut node, (due, true), &mut effects);
        let first = shown(&mut effects).len();
        assert_eq!(
            first,
            HAND_PER_TURN.div_ceil(line.len()),
            "one turn's worth"
        );
        conns.start_turn();
        conns.on_timers(&mut node, (due, true), &mut effects);
        assert_eq!(
            first + shown(&mut effects).len(),
            8,
            "the rest in the next turn"
        );
        // Stalled connections closed by the idle sweep: as many as the budget allows in a
        // turn, the rest left open for a sweep soon after.
        let raw = "y".repeat(12_000);
        for sender in &mut senders {
            sender.write_all(raw.as_bytes()).expect("write");
        }
        let keys: Vec<usize> = conns.conns.iter().map(|(key, _)| key).collect();
        for &key in &keys {
            conns.ready(key, true, &mut node, due, &mut effects);
        }
        assert!(shown(&mut effects).is_empty(), "no line ended");
        let later = conns.started + conns.limits.idle_timeout + Duration::from_secs(5);
        conns.start_turn();
        assert!(conns.close_idle(&mut node, (later, true), &mut effects));
        assert_eq!(shown(&mut effects).len(), first, "one turn's worth");
        assert_eq!(conns.conns.len(), 8 - first);
        conns.start_turn();
        assert!(!conns.close_idle(&mut node, (later, true), &mut effects));
        assert_eq!(shown(&mut effects).len(), 8 - first);
        assert!(conns.conns.is_empty());
    }

    /// A connection closed takes its quiet entry with it: closed connections' entries
    /// held places in the bounded queue, so that a sender closing one connection after
    /// another (each whole message read apart from its EOF) kept everybody else's quiet
    /// messages out until their end came (fails without: `carol` is never shown).
    #[test]
    fn a_closed_connection_takes_its_quiet_entry_with_it() {
        let limits = Limits {
            max_connections: 2,
            ..Limits::default()
        };
        let (mut conns, to) = fresh_with(limits);
        let mut node = test_node();
        let mut effects = Vec::new();
        let t0 = Instant::now();
        let flooder = IpAddr::from([127, 0, 165, 2]);
        for n in 0..2 {
            let (key, mut sender) = accept_keeping(&mut conns, to, flooder);
            write!(sender, "127.0.165.2:9 spam {n}").expect("write");
            conns.ready(key, true, &mut node, t0, &mut effects);
            drop(sender);
            // Its EOF, read apart from its message: shown, and the connection closed.
            while conns.conns.contains(key) {
                conns.ready(key, true, &mut node, t0, &mut effects);
            }
            assert_eq!(shown(&mut effects), [format!("{n}")]);
        }
        assert!(conns.quiet.is_empty(), "entries of closed connections left");
        let (key, mut sender) = accept_keeping(&mut conns, to, IpAddr::from([127, 0, 165, 3]));
        sender
            .write_all(b"127.0.165.3:9 carol hello")
            .expect("write");
        conns.ready(key, true, &mut node, t0, &mut effects);
        conns.on_timers(&mut node, (t0 + QUIET, true), &mut effects);
        assert_eq!(shown(&mut effects), ["hello"], "shown once quiet");
    }

    /// A connection alone with work reads its lone share in a turn, not a shared one: a
    /// lone stream's speed rests on it (fails when the lone share's bytes are a shared
    /// share's).
    #[test]
    fn a_lone_connection_reads_its_larger_share_in_one_turn() {
        let (mut conns, to) = fresh();
        let (key, mut sender) = accept_keeping(&mut conns, to, IpAddr::from([127, 0, 171, 6]));
        let mut effects = Vec::new();
        // Three shared shares of long lines, all in the socket's buffers once written.
        let mut sent = b"127.0.171.6:9 st hi\n".to_vec();
        while sent.len() < 3 * Share::SHARED.bytes {
            sent.extend_from_slice(&[b'x'; 999]);
            sent.push(b'\n');
        }
        sender.write_all(&sent).expect("write");
        let mut node = test_node();
        conns.set_contenders(1);
        assert_eq!(conns.share, Share::ALONE);
        conns.ready(key, true, &mut node, Instant::now(), &mut effects);
        assert_eq!(conns.read_since_shrink, sent.len(), "all of it in one turn");
    }

    /// A connection that is queued for its turn and announced again by a readiness event
    /// (new data, edge-triggered) is one connection with work, not two: alone, it gets
    /// the larger share.
    #[test]
    fn a_queued_connection_announced_again_is_not_a_second_contender() {
        let (mut conns, addr) = fresh();
        let now = Instant::now();
        let _peers: Vec<std::net::TcpStream> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let mut effects = Vec::new();
        // The kernel completes the handshakes before `connect` returns: accept both.
        while conns.conns.len() < 2 {
            conns.listener_ready();
            conns.accept(&mut test_node(), now, &mut effects);
            conns.settle_fresh(now);
        }
        let keys: Vec<usize> = conns.conns.iter().map(|(key, _)| key).collect();
        assert!(keys.iter().all(|&k| conns.brings_work(Token(k))));
        assert!(!conns.brings_work(Token(usize::MAX - 1)), "the listener");
        // The first waits in the queue for its turn (its share ran out, say).
        if let Some(Conn::In(conn)) = conns.conns.get_mut(keys[0]) {
            conn.queued = true;
            conns.queue.push_back(keys[0]);
        }
        assert!(!conns.brings_work(Token(keys[0])));
        assert!(conns.brings_work(Token(keys[1])));
        let queued = conns.start_turn();
        // This turn: the queued one, and a readiness event for it again.
        let ready = usize::from(conns.brings_work(Token(keys[0])));
        conns.set_contenders(queued + ready);
        assert_eq!(conns.share, Share::ALONE);
        // Events for both: the other one has work too.
        let ready = keys.iter().filter(|&&k| conns.brings_work(Token(k)));
        conns.set_contenders(queued + ready.count());
        assert_eq!(conns.share, Share::SHARED);
    }
}
