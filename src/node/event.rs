//! What the user is told: every notice the peer produces, as data.
//!
//! The node and the event loop emit [`Event`]s; the output layer renders them (plain lines
//! today; the README documents their exact layout). Keeping them as data keeps the core
//! testable and lets a program embedding peerchat receive the same events.

use std::net::{IpAddr, SocketAddr};

use crate::node::history::Entry;
use crate::node::peers::Row;

/// Who a received message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The name in its header, if any.
    pub name: Option<String>,
    /// The IP observed on the socket (trusted).
    pub ip: IpAddr,
    /// The listening port it claims, if its dialect says.
    pub port: Option<u16>,
    /// The IP it claims, when that differs from the observed one.
    pub claimed_ip: Option<IpAddr>,
}

impl Sender {
    /// The peer's identity, when a listening port is known.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.port.map(|port| SocketAddr::new(self.ip, port))
    }
}

/// Why a peer left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// It said `exit` (or a dialect's equivalent).
    Exit,
    /// It stopped answering for longer than the grace period.
    Unreachable,
    /// Announced as a peerchat (`--discover`), greeted, and never a word back by its
    /// first liveness check: whatever accepts connections there is not a peerchat.
    Silent,
}

impl LeaveReason {
    /// The word shown to the user.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Exit => "exit",
            LeaveReason::Unreachable => "unreachable",
            LeaveReason::Silent => "silent",
        }
    }
}

/// One thing the user should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// We listen at `addr` under `name`.
    Listening {
        /// The real listening address (with the real port when 0 was asked for).
        addr: SocketAddr,
        /// Our name.
        name: String,
    },
    /// A chat message arrived.
    Message {
        /// Its sender.
        from: Sender,
        /// What it says.
        text: String,
    },
    /// A peer said `connect`; `answering` tells whether `connect_ack` is on its way (a
    /// [`Event::Sent`] or [`Event::SendFailed`] for it follows, in that order).
    ConnectFrom {
        /// Its sender.
        from: Sender,
        /// Whether `connect_ack` was queued for it (a listening port was known, and the
        /// replies it may draw were not spent).
        answering: bool,
    },
    /// A peer answered our `connect`.
    ConnectAck {
        /// Its sender.
        from: Sender,
    },
    /// A peer entered the table because it spoke to us.
    PeerJoined {
        /// Its identity.
        addr: SocketAddr,
        /// Its name, if known.
        name: Option<String>,
    },
    /// A peer was removed from the table.
    PeerLeft {
        /// Its identity.
        addr: SocketAddr,
        /// Its name, if known.
        name: Option<String>,
        /// Why.
        reason: LeaveReason,
    },
    /// A peer failed `failures` liveness checks in a row.
    PeerUnreachable {
        /// Its identity.
        addr: SocketAddr,
        /// Its name, if known.
        name: Option<String>,
        /// Checks failed in a row.
        failures: u32,
    },
    /// An unreachable peer answers again.
    PeerBack {
        /// Its identity.
        addr: SocketAddr,
        /// Its name, if known.
        name: Option<String>,
    },
    /// A message was delivered to `dest`: written in full, and the receiver closed the
    /// connection, acknowledged it, or the linger ended.
    Sent {
        /// The destination's listening address.
        dest: SocketAddr,
        /// What was sent (without header).
        text: String,
        /// What the receiver said back on that connection (its first line), if anything:
        /// `Message received`, `ACK from PORT`, `IP:PORT NAME connected`...
        reply: Option<String>,
    },
    /// A message could not be sent.
    SendFailed {
        /// The destination's listening address.
        dest: SocketAddr,
        /// What was not sent (without header).
        text: String,
        /// What went wrong, in plain words.
        reason: String,
    },
    /// A long message was split for receivers that read only 1024 bytes.
    Split {
        /// The destination.
        dest: SocketAddr,
        /// Into how many messages.
        parts: usize,
    },
    /// The answer to a query.
    Peers(Vec<Row>),
    /// The last messages, oldest first (`/history`).
    History(Vec<Entry>),
    /// The command list was asked for.
    Help,
    /// The numbered menu should be shown.
    Menu,
    /// The user's input was not understood; a short hint.
    Hint(String),
    /// Something went wrong that the user should know about.
    Warning(String),
    /// Something happened that is worth a line.
    Info(String),
    /// The peer is leaving; nothing follows.
    Bye,
}
