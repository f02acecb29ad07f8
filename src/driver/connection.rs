//! One peer connection: its state, and how it advances and expires.
//!
//! An inbound connection reads into the loop's shared buffer and feeds its decoder; an
//! outbound one connects, writes one message (our header built from its own local
//! address), shuts down its side and drains whatever the receiver says back, or, as a
//! liveness check, only connects. Both stop at `WouldBlock`, as edge-triggered readiness
//! requires, or, inbound, once the kernel says a read left nothing (or only the FIN the
//! poll reported) in the socket (`net::recv`): the next event says when more comes. An
//! outbound connection owns its lifecycle: it carries its own deadline, advances itself
//! on readiness, expires itself when the deadline passes, and reports each [`Step`] for
//! the driver to act on.

use crate::time::Instant;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;

use crate::driver::net;
use crate::node::timers::TimerId;
use crate::wire::{self, DecodeError, Decoder, Dialect, Message, OwnHeader, Spares};

/// Reads one readiness event may do on an outbound connection draining replies.
const READS_PER_TURN: usize = 16;

/// How much one inbound connection may read and decode in one loop turn; what is left waits
/// for its next turn, so that no sender starves another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Bytes read: at most this much before the next connection's turn.
    pub bytes: usize,
    /// Lines decoded: once this many are out, the bytes read and not yet decoded wait (in
    /// the caller's backlog), so that a stream of tiny lines costs no more per turn than
    /// anyone else. Lines count, not entries of the vector: a run of lines
    /// ([`wire::Body::Lines`]) is one entry but a message per line for everything after
    /// the decoder.
    pub lines: usize,
}

impl Share {
    /// A turn's share while other connections have work too.
    pub const SHARED: Share = Share {
        bytes: 16 * 1024,
        lines: 256,
    };
    /// A turn's share while no other connection has work: a turn has fixed costs (a
    /// poll, a write to stdout, a TCP window update) that a lone stream pays sixteen times
    /// less often per byte with sixteen times the share, and nobody waits behind it.
    /// Measured on a stream of 300 MB of 100 B lines into a file (medians of 5): 64 KiB a
    /// turn 570 MB/s and 383 ms of system time, 128 KiB 607 and 308, 256 KiB 712 and 268,
    /// 512 KiB 677 and 273 (the floor reading until `WouldBlock`: 839 and 329). Measured
    /// again later (2026-12-02, 20 rounds), 512 KiB and 8,192 lines came out 13-15%
    /// faster, but doubled what a newcomer waits behind a lone stream, a turn's rendered
    /// output (5 MB for escaped lines) and the memory a burst leaves resident: not taken.
    pub const ALONE: Share = Share {
        bytes: 256 * 1024,
        lines: 4096,
    };
}

/// What follows a read that took bytes.
enum Next {
    /// Another read: there may be more.
    Read,
    /// None: the socket holds nothing more now, and the poll will say when it does.
    Drained,
    /// None: only the peer's FIN is left, and the connection is done.
    End,
}

/// Bytes read at the start of a turn that are held, not decoded yet, in case the next read
/// says EOF (a one-message connection's line is then decoded where it is).
const HOLD: usize = 512;

/// An inbound connection: bytes in, messages out. Kept small: thousands may sit idle.
#[derive(Debug)]
pub struct Inbound {
    /// The socket.
    pub stream: TcpStream,
    /// Its address's entry in `Connections::per_ip`: the IP observed on the socket (the
    /// trusted half of its identity), and what that address holds.
    pub slot: usize,
    /// Seconds since the loop started when it last sent something (whole seconds are
    /// plenty for an idle timeout, and a quarter of the size of an `Instant`).
    pub active_at: u32,
    /// Likewise, when it last completed a line (or had none pending): a sender that
    /// trickles a line byte by byte is active but stalled.
    pub line_since: u32,
    /// Bytes to messages, in whatever dialect the peer speaks.
    pub decoder: Decoder,
    /// Waiting in the queue for its next turn (at most one turn per loop turn).
    pub queued: bool,
    /// Waiting there unread, held back for order: deferred while stdout was behind, or
    /// behind such a connection (see `Connections::holds_back`), not for a share used up.
    pub held: bool,
    /// What the poll knows of it (one byte for two facts, so that a held connection's slot
    /// stays 40 bytes).
    pub polled: Polled,
    /// An entry of `Connections::quiet` waits for it: one at a time, so that a connection
    /// read again and again cannot fill that queue.
    pub quiet: bool,
}

/// An inbound connection's standing with the poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Not registered. A connection read in the turn that accepted it is registered only
    /// once a read finds nothing more to take: a one-message connection read to its end
    /// then costs no `epoll_ctl` at all. Its reads are plain ones (no event can have said
    /// it ended, so what a read leaves would buy little).
    Unwatched,
    /// Registered: its readiness events say when more comes.
    Watched,
    /// Registered, and an event said the peer has sent all it will (`net::peer_ended`):
    /// once a read leaves only its FIN in the socket (`net::recv`), no read is made to
    /// hear it.
    Ended,
}

/// Where an outgoing connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The non-blocking connect is under way.
    Connecting,
    /// Connected; writing header and message.
    Writing,
    /// Written and shut down for writing; reading any reply until the peer closes.
    Draining,
}

/// An outgoing connection carrying one message, or a liveness check.
#[derive(Debug)]
pub struct Outbound {
    /// The socket.
    pub stream: TcpStream,
    /// The receiver's listening address.
    pub dest: SocketAddr,
    /// A liveness check: connect, then close without sending.
    check: bool,
    /// The message, without header, until it is encoded.
    text: String,
    /// The dialect it is encoded in.
    dialect: Dialect,
    /// The message on the wire, once connected.
    bytes: Vec<u8>,
    /// How much of `bytes` is written.
    written: usize,
    /// What the receiver said back, up to [`wire::MAX_REPLY`] bytes.
    reply: Vec<u8>,
    phase: Phase,
    /// When it expires: the send timeout, then, once written, the linger time.
    deadline: Instant,
    /// How long it may linger once written, reading replies.
    linger: Duration,
    /// The driver's timer entry for `deadline`.
    pub timer: Option<TimerId>,
}

/// A connection's state. Outbound ones are few and short-lived, so they are boxed and
/// the slab's slots stay the size of an idle inbound connection.
#[derive(Debug)]
pub enum Conn {
    /// A peer talking to us.
    In(Inbound),
    /// Us talking to a peer (or checking that it answers).
    Out(Box<Outbound>),
}

/// Why reading an inbound connection stopped.
#[derive(Debug)]
pub enum ReadEnd {
    /// Everything available was read (`WouldBlock`, or nothing left in the socket).
    Drained,
    /// The turn's budget was spent; more may be waiting (no new event will say so).
    Budget,
    /// The peer closed, or the connection broke: what arrived was decoded; close it.
    Closed,
    /// A line grew past the limit: close it and say so.
    TooLong(DecodeError),
    /// The unfinished lines of all connections grew past their bound, this one's last:
    /// close it and say so (set by the caller, who sees them all).
    Unfinished,
}

impl Inbound {
    /// Since when it counts as idle: silent since `active_at`, or, when part of a line
    /// is pending, stalled since `line_since`.
    pub fn idle_since(&self) -> u32 {
        if self.decoder.buffered() > 0 {
            self.line_since
        } else {
            self.active_at
        }
    }

    /// Whether the idle timeout spares it: a port-line peer keeps its connection open
    /// between messages, for as long as its user is silent (one such connection per
    /// address: see `Connections::close_idle`). Stalling mid-line still counts.
    pub fn keeps_open(&self) -> bool {
        self.decoder.is_port_line() && self.decoder.buffered() == 0
    }

    /// Reads what is available, up to its `share` of bytes and lines, and decodes it into
    /// `out`, taking the strings of new messages from `spares`. `backlog` holds the bytes
    /// read but not decoded in an earlier turn (decoded first) and, on return, those of
    /// this turn. Also returns how many bytes were read from the socket.
    pub fn read(
        &mut self,
        share: Share,
        buf: &mut [u8],
        backlog: &mut Vec<u8>,
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) -> (ReadEnd, usize) {
        let mut taken = 0;
        let end = self.read_share(share, buf, backlog, out, spares, &mut taken);
        (end, taken)
    }

    fn read_share(
        &mut self,
        Share {
            bytes,
            lines: max_lines,
        }: Share,
        buf: &mut [u8],
        backlog: &mut Vec<u8>,
        out: &mut Vec<Message>,
        spares: &mut Spares,
        taken: &mut usize,
    ) -> ReadEnd {
        // Lines decoded this turn (the `\n` fed): a run of lines is one message in `out`.
        let mut lines = 0;
        if !backlog.is_empty() {
            let pending = std::mem::take(backlog);
            match self.feed(&pending, backlog, out, spares, (&mut lines, max_lines)) {
                Err(e) => return ReadEnd::TooLong(e),
                Ok(()) if !backlog.is_empty() => return ReadEnd::Budget,
                Ok(()) => {}
            }
        }
        let mut share = bytes;
        // Bytes at the start of `buf` read this turn and not decoded yet (at most
        // [`HOLD`], while the decoder holds nothing). A one-message connection's line and
        // its EOF usually come together; its last line is then decoded where it is, by
        // `feed_final`, instead of being copied into the decoder (an allocation) first.
        let mut held = 0;
        while share > 0 && out.len().max(lines) < max_lines {
            let len = held + share.min(buf.len() - held);
            // A connection read in the turn that accepted it (not watched yet) has had no
            // event to say that it ended, and is most often read before its bytes came:
            // a plain read, without the control message's cost (about 25 instructions).
            let read = match self.polled {
                Polled::Unwatched => (&self.stream).read(&mut buf[held..len]).map(|n| (n, None)),
                Polled::Watched | Polled::Ended => net::recv(&self.stream, &mut buf[held..len]),
            };
            match read {
                Ok((0, _)) => return self.finish(&buf[..held], out, spares),
                Ok((n, left)) => {
                    share -= n;
                    *taken += n;
                    let got = held + n;
                    // A read that took less than it asked for took all there was: what the
                    // kernel says is left then tells whether another read would find more.
                    let next = match left {
                        _ if got == len => Next::Read,
                        // Nothing left: drained, unless the poll said the peer ended and
                        // no FIN is counted (a reset: the next read reports it).
                        Some(0) if self.polled != Polled::Ended => Next::Drained,
                        Some(1) if self.polled == Polled::Ended => Next::End,
                        _ => Next::Read,
                    };
                    if got <= HOLD && self.decoder.buffered() == 0 {
                        match next {
                            Next::Read => {
                                held = got;
                                continue;
                            }
                            Next::End => return self.finish(&buf[..got], out, spares),
                            // Decoded below, as any read's bytes.
                            Next::Drained => {}
                        }
                    }
                    held = 0;
                    match self.feed(&buf[..got], backlog, out, spares, (&mut lines, max_lines)) {
                        Err(e) => return ReadEnd::TooLong(e),
                        Ok(()) if !backlog.is_empty() => return ReadEnd::Budget,
                        Ok(()) => match next {
                            Next::Read => {}
                            Next::End => return self.finish(&[], out, spares),
                            Next::Drained => return ReadEnd::Drained,
                        },
                    }
                }
                Err(e) if net::would_block(&e) => {
                    return match self.feed(
                        &buf[..held],
                        backlog,
                        out,
                        spares,
                        (&mut lines, max_lines),
                    ) {
                        Err(e) => ReadEnd::TooLong(e),
                        // Lines beyond the turn's share wait in the backlog: the socket is
                        // drained, so no event will come for them; the queue brings them.
                        Ok(()) if !backlog.is_empty() => ReadEnd::Budget,
                        Ok(()) => ReadEnd::Drained,
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Deliver what did arrive, then drop the broken connection.
                    log::debug!("an inbound connection failed: {e}");
                    return self.finish(&buf[..held], out, spares);
                }
            }
        }
        // Nothing is held here (holding stops at the first bytes of a turn that fit in
        // [`HOLD`], well within the share), but should it be, it is decoded.
        match self.feed(&buf[..held], backlog, out, spares, (&mut lines, max_lines)) {
            Err(e) => ReadEnd::TooLong(e),
            Ok(()) => ReadEnd::Budget,
        }
    }

    /// The end of the connection: the decoder's last `bytes` (read this turn and held)
    /// and whatever unfinished line it holds are decoded; close it.
    fn finish(&mut self, bytes: &[u8], out: &mut Vec<Message>, spares: &mut Spares) -> ReadEnd {
        match self.decoder.feed_final(bytes, out, spares) {
            Ok(()) => ReadEnd::Closed,
            Err(e) => ReadEnd::TooLong(e),
        }
    }

    /// Decodes `bytes` until `max_lines` messages are out, or as many lines were fed
    /// (counted in `lines`); the rest goes to `backlog`. Nothing to decode costs nothing:
    /// the end of a read that holds no bytes (a connection accepted before its bytes came,
    /// a stream's read that ended on a whole line) skips the decoder altogether.
    fn feed(
        &mut self,
        bytes: &[u8],
        backlog: &mut Vec<u8>,
        out: &mut Vec<Message>,
        spares: &mut Spares,
        (lines, max_lines): (&mut usize, usize),
    ) -> Result<(), DecodeError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let room = max_lines.saturating_sub(out.len().max(*lines));
        let (fed, taken) = match room {
            0 => (0, 0),
            room => self.decoder.feed_lines(bytes, out, spares, room)?,
        };
        *lines += fed;
        // What is left after the turn's share of lines waits for the next turn.
        if let Some(rest) = bytes.get(taken..).filter(|rest| !rest.is_empty()) {
            backlog.extend_from_slice(rest);
        }
        Ok(())
    }
}

/// What advancing or expiring an outgoing connection did; every step but `Wait` and
/// `Sent` ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing more can happen until the next event.
    Wait,
    /// A liveness check connected: the peer answers.
    Answered,
    /// A liveness check failed or timed out.
    NoAnswer,
    /// The whole message was written and the write side shut down; the connection now
    /// lingers to drain replies, with a new deadline. The next message to the same
    /// receiver waits until it ends, so that receivers with a thread per connection show
    /// them in order.
    Sent,
    /// The message could not be delivered, for this reason (in plain words).
    Failed(String),
    /// The receiver closed after our message, acknowledged it, or lingering ended (or
    /// reading its replies failed otherwise than by a reset): the message is taken as
    /// delivered ([`Outbound::reply`] tells what the receiver said back).
    Closed,
}

impl Outbound {
    /// Starts a non-blocking connection to `dest` from `from`, carrying `text` (or, for a
    /// `check`, nothing), which must complete within `timeout`.
    pub fn open(
        dest: SocketAddr,
        (text, dialect): (String, Dialect),
        check: bool,
        from: Option<IpAddr>,
        (now, timeout, linger): (Instant, Duration, Duration),
    ) -> io::Result<Outbound> {
        Ok(Outbound {
            stream: net::connect(dest, from)?,
            dest,
            check,
            text,
            dialect,
            bytes: Vec::new(),
            written: 0,
            reply: Vec::new(),
            phase: Phase::Connecting,
            deadline: now + timeout,
            linger,
            timer: None,
        })
    }

    /// The first line the receiver said back on this connection, if any.
    pub fn reply(&self) -> Option<String> {
        wire::reply_line(&self.reply)
    }

    /// When [`Outbound::expire`] is due.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The deadline passed: what that means where the connection stands.
    pub fn expire(&self) -> Step {
        match self.phase {
            Phase::Draining => Step::Closed,
            _ if self.check => Step::NoAnswer,
            Phase::Connecting => Step::Failed("no answer (the connection timed out)".into()),
            Phase::Writing => Step::Failed("the peer stopped reading (the send timed out)".into()),
        }
    }

    /// What the receiver's EOF means while draining: delivered, unless it closed before
    /// our message reached it. Then its reset decides (seen as the socket's error: reads
    /// go on returning EOF), or the linger's end, should the message be acknowledged
    /// after all.
    fn at_eof(&self) -> Step {
        match self.stream.take_error() {
            Ok(Some(e)) if net::is_reset(&e) => Step::Failed(net::RESET.into()),
            Ok(Some(e)) => {
                log::debug!("{} closed, and its socket had an error: {e}", self.dest);
                Step::Closed
            }
            _ if net::message_unacknowledged(&self.stream) => Step::Wait,
            _ => Step::Closed,
        }
    }

    /// Advances the connection as far as it can go without blocking; `buf` receives the
    /// receiver's replies while draining.
    pub fn advance(&mut self, header: &OwnHeader, buf: &mut [u8], now: Instant) -> Step {
        match self.try_advance(header, buf, now) {
            Ok(step) => step,
            Err(_) if self.check => Step::NoAnswer,
            Err(e) => Step::Failed(net::describe(&e)),
        }
    }

    fn try_advance(
        &mut self,
        header: &OwnHeader,
        buf: &mut [u8],
        now: Instant,
    ) -> io::Result<Step> {
        if self.phase == Phase::Connecting {
            if let Some(e) = self.stream.take_error()? {
                return Err(e);
            }
            match self.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(Step::Wait),
                Err(e) => return Err(e),
            }
            if self.check {
                return Ok(Step::Answered);
            }
            // The header claims what the receiver sees: our end of this very connection.
            let local = self.stream.local_addr()?.ip();
            let text = std::mem::take(&mut self.text);
            self.bytes = header.encode_in(self.dialect, local, &text);
            self.phase = Phase::Writing;
        }
        if self.phase == Phase::Writing {
            while self.written < self.bytes.len() {
                match self.stream.write(&self.bytes[self.written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.written += n,
                    Err(e) if net::would_block(&e) => return Ok(Step::Wait),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if let Err(e) = self.stream.shutdown(Shutdown::Write) {
                log::debug!("shutdown to {} failed: {e}", self.dest);
            }
            self.phase = Phase::Draining;
            self.bytes = Vec::new();
            self.deadline = now + self.linger;
            return Ok(Step::Sent);
        }
        // Draining: replies ("ACK from PORT", "Message received") are normal, and kept to
        // be shown; an acknowledgement ends the wait at once. A receiver that keeps talking
        // is cut off rather than read forever.
        for _ in 0..READS_PER_TURN {
            match self.stream.read(buf) {
                Ok(0) => return Ok(self.at_eof()),
                Ok(n) => {
                    let room = wire::MAX_REPLY.saturating_sub(self.reply.len());
                    self.reply.extend_from_slice(&buf[..n.min(room)]);
                    if self.reply().is_some_and(|r| wire::is_acknowledgement(&r)) {
                        return Ok(Step::Closed);
                    }
                }
                Err(e) if net::would_block(&e) => return Ok(Step::Wait),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A reset: the receiver closed with bytes of ours unread in its socket
                // (it refused the connection, or read only part): not delivered.
                Err(e) if net::is_reset(&e) => return Ok(Step::Failed(net::RESET.into())),
                Err(e) => {
                    log::debug!("reading a reply from {} failed: {e}", self.dest);
                    return Ok(Step::Closed);
                }
            }
        }
        Ok(Step::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per held connection is a promise (README, benches): an idle inbound
    /// connection's slot must stay small. Boxing the outbound state and the decoder's rare
    /// state, and one sweep timer instead of a timer per connection, took it from 264 to
    /// 112 bytes; boxing all of the decoder's state but its limit and flags (the partial
    /// line too: a one-message connection decodes its line where it was read), to 40,
    /// where it stays with the poll's two facts in one byte ([`Polled`]).
    /// mio's `TcpStream` is 4 bytes in release builds and 16 with debug assertions (it
    /// then carries a selector id), hence the allowance.
    #[test]
    fn an_idle_connection_slot_stays_small() {
        let stream_extra = (std::mem::size_of::<TcpStream>() - 4).next_multiple_of(8);
        assert!(
            std::mem::size_of::<Conn>() <= 40 + stream_extra,
            "{}",
            std::mem::size_of::<Conn>()
        );
        assert!(std::mem::size_of::<Decoder>() <= 16);
    }

    /// An inbound connection over loopback from a peer that sends nothing more.
    fn inbound() -> (Inbound, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let peer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        ours.set_nonblocking(true).expect("nonblocking");
        let conn = Inbound {
            stream: TcpStream::from_std(ours),
            slot: 0,
            active_at: 0,
            line_since: 0,
            decoder: Decoder::new(64 * 1024).group_lines(),
            queued: false,
            held: false,
            polled: Polled::Watched,
            quiet: false,
        };
        (conn, peer)
    }

    /// A run of lines is one message in the vector, but each of its lines is a message
    /// for the node, the screen, the journal and a port-line peer's acknowledgements: a
    /// turn decodes about its share of lines of a stream of tiny lines, not its whole
    /// share of bytes (8,000 lines in one turn, where one message a line gave 256).
    #[test]
    fn a_turn_decodes_its_share_of_lines_even_when_they_come_as_one_run() {
        for share in [Share::SHARED, Share::ALONE] {
            let (mut conn, _peer) = inbound();
            let mut pending = b"127.0.0.1:5 bob hi\n".to_vec();
            for _ in 0..8000 {
                pending.extend_from_slice(b"a\n");
            }
            let mut backlog = pending;
            let (mut out, mut spares) = (Vec::new(), Spares::default());
            let mut buf = vec![0; share.bytes];
            let (end, _) = conn.read(share, &mut buf, &mut backlog, &mut out, &mut spares);
            assert!(matches!(end, ReadEnd::Budget), "{end:?}");
            let lines: usize = out
                .iter()
                .map(|m| match &m.body {
                    crate::wire::Body::Lines(run) => run.line_count(),
                    _ => 1,
                })
                .sum();
            assert_eq!(lines, share.lines, "lines decoded in one turn of {share:?}");
            assert!(!backlog.is_empty());
        }
    }

    /// A turn reads at most its share of bytes from the socket, however much is waiting
    /// and however large the buffer: the rest waits for the connection's next turn.
    #[test]
    fn a_turn_reads_at_most_its_share_of_bytes() {
        for share in [Share::SHARED, Share::ALONE] {
            let (mut conn, mut peer) = inbound();
            // Long lines, so that the share of lines is not what stops the turn.
            let mut line = vec![b'x'; 999];
            line.push(b'\n');
            let mut sent = b"127.0.0.1:5 bob hi\n".to_vec();
            while sent.len() < 3 * share.bytes {
                sent.extend_from_slice(&line);
            }
            let total = sent.len();
            let writer = std::thread::spawn(move || peer.write_all(&sent));
            let (mut out, mut spares, mut backlog) = (Vec::new(), Spares::default(), Vec::new());
            let mut buf = vec![0; 4 * share.bytes];
            let mut taken = 0;
            // Loopback delivers in pieces: turns until one runs out of its share.
            loop {
                let (end, n) = conn.read(share, &mut buf, &mut backlog, &mut out, &mut spares);
                assert!(n <= share.bytes, "{n} bytes read in one turn of {share:?}");
                taken += n;
                if matches!(end, ReadEnd::Budget) {
                    assert_eq!(n, share.bytes, "a turn that ran out of its share");
                    break;
                }
                assert!(
                    taken < total,
                    "every byte read and no turn ran out of its share"
                );
                out.clear();
            }
            // Closing ends the write of what was not read (an error then, which is fine).
            drop(conn);
            let _ = writer.join().expect("writer");
        }
    }

    /// Drives `conn` on a real poll until it reports something other than `Wait`.
    fn run_until_step(conn: &mut Outbound, header: &OwnHeader, now: Instant) -> Step {
        let mut poll = mio::Poll::new().expect("poll");
        let interest = mio::Interest::WRITABLE | mio::Interest::READABLE;
        poll.registry()
            .register(&mut conn.stream, mio::Token(0), interest)
            .expect("register");
        let mut events = mio::Events::with_capacity(4);
        let mut buf = [0u8; 1024];
        loop {
            match conn.advance(header, &mut buf, now) {
                Step::Wait => {}
                step => {
                    poll.registry()
                        .deregister(&mut conn.stream)
                        .expect("deregister");
                    return step;
                }
            }
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .expect("poll");
            assert!(!events.is_empty(), "no event within 5 s");
        }
    }

    fn header() -> OwnHeader {
        OwnHeader {
            name: "me".into(),
            format: crate::wire::Format::Standard,
            port: 5000,
            claim: None,
        }
    }

    const TIMES: Duration = Duration::from_secs(5);

    #[test]
    fn a_message_is_sent_with_our_header_then_lingers_until_the_receiver_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let dest = listener.local_addr().expect("addr");
        let now = Instant::now();
        let text = "hello there".to_owned();
        let mut conn = Outbound::open(
            dest,
            (text, Dialect::Standard),
            false,
            None,
            (now, TIMES, Duration::from_secs(1)),
        )
        .expect("open");
        assert_eq!(conn.deadline(), now + TIMES);
        assert_eq!(run_until_step(&mut conn, &header(), now), Step::Sent);
        assert_eq!(
            conn.deadline(),
            now + Duration::from_secs(1),
            "now lingering"
        );
        let (mut peer, _) = listener.accept().expect("accept");
        let mut got = String::new();
        peer.read_to_string(&mut got)
            .expect("read until our shutdown");
        // No --advertise: the header claims the connection's own local address.
        assert_eq!(got, "127.0.0.1:5000 me hello there");
        assert_eq!(conn.expire(), Step::Closed, "lingering ends quietly");
        drop(peer);
        assert_eq!(run_until_step(&mut conn, &header(), now), Step::Closed);
    }

    #[test]
    fn a_refused_message_fails_in_plain_words_and_a_refused_check_is_no_answer() {
        let dest = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            l.local_addr().expect("addr")
        }; // closed again: connections are refused
        let now = Instant::now();
        let times = (now, TIMES, TIMES);
        let mut send = Outbound::open(dest, ("x".into(), Dialect::Standard), false, None, times)
            .expect("open");
        match run_until_step(&mut send, &header(), now) {
            Step::Failed(reason) => assert!(reason.contains("refused"), "{reason}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        let mut check =
            Outbound::open(dest, (String::new(), Dialect::Raw), true, None, times).expect("open");
        assert_eq!(run_until_step(&mut check, &header(), now), Step::NoAnswer);
    }

    #[test]
    fn a_check_that_connects_is_answered_without_sending_anything() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let dest = listener.local_addr().expect("addr");
        let now = Instant::now();
        let mut check = Outbound::open(
            dest,
            (String::new(), Dialect::Raw),
            true,
            None,
            (now, TIMES, TIMES),
        )
        .expect("open");
        assert_eq!(run_until_step(&mut check, &header(), now), Step::Answered);
        assert_eq!(check.expire(), Step::NoAnswer, "a check never fails a send");
    }

    #[test]
    fn expiring_before_the_message_is_written_says_why() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let dest = listener.local_addr().expect("addr");
        let now = Instant::now();
        let conn = Outbound::open(
            dest,
            ("x".into(), Dialect::Standard),
            false,
            None,
            (now, TIMES, TIMES),
        )
        .expect("open");
        assert_eq!(
            conn.expire(),
            Step::Failed("no answer (the connection timed out)".into())
        );
    }
}
