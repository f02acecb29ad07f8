//! One peer connection: its state, and how a readiness event advances it.
//!
//! An inbound connection reads into the loop's shared buffer and feeds its decoder; an
//! outbound one connects, writes one message (header built from its own local address),
//! shuts down its side and drains whatever the receiver says back. Both stop at
//! `WouldBlock`, as edge-triggered readiness requires. The event loop owns them in a slab
//! and decides what their outcomes mean.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};

use mio::net::TcpStream;

use crate::node::timers::TimerId;
use crate::wire::{self, DecodeError, Decoder, Format, Message};

/// Reads one readiness event may do on one connection before others get their turn.
const READS_PER_TURN: usize = 16;

/// An inbound connection: bytes in, messages out. Kept small: thousands may sit idle.
#[derive(Debug)]
pub struct Inbound {
    /// The socket.
    pub stream: TcpStream,
    /// The peer's IP as observed on the socket (the trusted half of its identity).
    pub ip: IpAddr,
    /// Seconds since the loop started when it last sent something (whole seconds are
    /// plenty for an idle timeout, and a quarter of the size of an `Instant`).
    pub active_at: u32,
    /// Likewise, when it last completed a line (or had none pending): a sender that
    /// trickles a line byte by byte is active but stalled.
    pub line_since: u32,
    /// Bytes to messages, in whatever dialect the peer speaks.
    pub decoder: Decoder,
}

/// Where an outgoing connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The non-blocking connect is under way.
    Connecting,
    /// Connected; writing header and message.
    Writing,
    /// Written and shut down for writing; reading any reply until the peer closes.
    Draining,
}

/// An outgoing connection carrying one message, or a liveness check (`text` unused).
#[derive(Debug)]
pub struct Outbound {
    /// The socket.
    pub stream: TcpStream,
    /// A liveness check: connect, then close without sending.
    pub check: bool,
    /// The receiver's listening address.
    pub dest: SocketAddr,
    /// The message, without header.
    pub text: String,
    /// The message on the wire, once connected.
    pub bytes: Vec<u8>,
    /// How much of `bytes` is written.
    pub written: usize,
    /// Where it stands.
    pub phase: Phase,
    /// Its send-timeout entry, then its linger entry.
    pub timer: TimerId,
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
    /// Everything available was read (`WouldBlock`).
    Drained,
    /// The turn's budget was spent; more may be waiting (no new event will say so).
    Budget,
    /// The peer closed, or the connection broke: what arrived was decoded; close it.
    Closed,
    /// A line grew past the limit: close it and say so.
    TooLong(DecodeError),
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

    /// Reads what is available (within a budget) and decodes it into `out`.
    pub fn read(&mut self, buf: &mut [u8], out: &mut Vec<Message>) -> ReadEnd {
        for _ in 0..READS_PER_TURN {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.decoder.finish(out);
                    return ReadEnd::Closed;
                }
                Ok(n) => {
                    if let Err(e) = self.decoder.feed(&buf[..n], out) {
                        return ReadEnd::TooLong(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Deliver what did arrive, then drop the broken connection.
                    self.decoder.finish(out);
                    log::debug!("connection from {} failed: {e}", self.ip);
                    return ReadEnd::Closed;
                }
            }
        }
        ReadEnd::Budget
    }
}

/// What one readiness event did to an outgoing connection.
pub enum Step {
    /// Nothing more can happen until the next event.
    Wait,
    /// A liveness check connected: the peer answers.
    Answered,
    /// The whole message was written and the write side shut down.
    Written,
    /// The receiver closed after our message: done.
    Closed,
}

/// What goes into the header of everything we send.
#[derive(Debug, Clone, Copy)]
pub struct Me<'a> {
    /// Our name.
    pub name: &'a str,
    /// The header form.
    pub format: Format,
    /// The IP to claim; `None` claims each connection's local address.
    pub advertise: Option<IpAddr>,
    /// Our listening port.
    pub listen_port: u16,
}

impl Outbound {
    /// Advances the connection as far as it can go without blocking; `buf` receives the
    /// receiver's replies while draining.
    pub fn advance(&mut self, me: Me<'_>, buf: &mut [u8]) -> io::Result<Step> {
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
            let own_ip = match me.advertise {
                Some(ip) => ip,
                None => self.stream.local_addr()?.ip().to_canonical(),
            };
            let own = SocketAddr::new(own_ip, me.listen_port);
            self.bytes = wire::encode(own, me.name, &self.text, me.format).into_bytes();
            self.phase = Phase::Writing;
        }
        if self.phase == Phase::Writing {
            while self.written < self.bytes.len() {
                match self.stream.write(&self.bytes[self.written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if let Err(e) = self.stream.shutdown(Shutdown::Write) {
                log::debug!("shutdown to {} failed: {e}", self.dest);
            }
            return Ok(Step::Written);
        }
        // Draining: unsolicited replies ("ACK from PORT", "Message received") are normal;
        // a receiver that keeps talking is cut off rather than read forever.
        for _ in 0..READS_PER_TURN {
            match self.stream.read(buf) {
                Ok(0) => return Ok(Step::Closed),
                Ok(n) => log::debug!(
                    "reply from {}: {:?}",
                    self.dest,
                    String::from_utf8_lossy(&buf[..n.min(200)])
                ),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Wait),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(Step::Closed),
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
    /// 112 bytes.
    #[test]
    fn an_idle_connection_slot_stays_small() {
        assert!(
            std::mem::size_of::<Conn>() <= 112,
            "{}",
            std::mem::size_of::<Conn>()
        );
        assert!(std::mem::size_of::<Decoder>() <= 80);
    }
}
