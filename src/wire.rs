//! The bytes on the wire: decoding every dialect the lab's peers speak, and encoding ours.
//!
//! Pure and I/O-free. A [`Decoder`] lives with one inbound connection: the event loop
//! feeds it whatever `read` returned, in whatever chunks, and it yields complete
//! [`Message`]s. [`encode`] builds what we send, and [`split_for_wire`] keeps each
//! message small enough for receivers that read a single `recv(1024)`.
//!
//! See `../shared/PROTOCOL.md` for the dialects and the README for what we accept.

use std::net::{IpAddr, SocketAddr};

/// Most lab receivers read one `recv(1024)`: nothing we send is longer than this.
pub const MAX_WIRE_MESSAGE: usize = 1024;

/// What a peer said, once its dialect is peeled off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Ordinary chat text (may be empty only if the sender sent a header with no text).
    Chat(String),
    /// "I am here, please note me": `connect`, `CONNECT:..`, `CONNECTION_REQUEST`, JSON `connect`...
    Connect,
    /// The answer to `connect`: `connect_ack`, `ACK:NAME:PORT`.
    ConnectAck,
    /// "I am leaving": `exit`, `DISCONNECT`, `EXIT:PORT`, `[PEER_QUIT]`, JSON `exit`...
    Exit,
}

/// Which dialect a message came in (shown at debug level, used by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `IP:PORT NAME MESSAGE`
    Standard,
    /// `IP PORT NAME MESSAGE`
    Spaced,
    /// `<IP:PORT> @ <TEAM>` ... `<end>`, `<IP:PORT> DISCONNECT`, `<IP:PORT> TEAM MESSAGE`
    Bracketed,
    /// `LISTENING_PORT:PORT|TEAM_NAME:TEAM|MESSAGE`
    KeyValue,
    /// `MESSAGE:NAME:PORT:TEXT`, `CONNECT:NAME:PORT`, `ACK:NAME:PORT`, `EXIT:PORT`, `CONNECT:PORT`
    Colon,
    /// A connection that opened with a line holding only a port, then one message per line.
    Persistent,
    /// `{"type": ..., "content": ..., "sender_name": ..., "sender_port": N}`
    Json,
    /// No header at all: only the socket's address identifies the sender.
    Raw,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's name or team, when the dialect carries one.
    pub name: Option<String>,
    /// The IP the sender claims in its header (often wrong; shown, never trusted).
    pub claimed_ip: Option<IpAddr>,
    /// The port the sender claims to listen on; `None` when the dialect does not say.
    pub port: Option<u16>,
    /// What was said.
    pub body: Body,
    /// How it was said.
    pub dialect: Dialect,
}

/// Why a connection's input had to be rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A single line grew past the decoder's limit without a newline.
    LineTooLong {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::LineTooLong { limit } => {
                write!(f, "a line longer than {limit} bytes without a newline")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Turns the byte stream of one inbound connection into messages.
///
/// Lines end at `\n` (a preceding `\r` is dropped); the last line may end at EOF instead.
/// Bytes are buffered until a line is complete, so a multi-byte character cut by a read
/// boundary is decoded whole; invalid UTF-8 becomes U+FFFD. A connection that sends nothing
/// yields nothing (a liveness probe).
#[derive(Debug)]
pub struct Decoder {
    max_line: usize,
    partial: Vec<u8>,
}

impl Decoder {
    /// A decoder that refuses lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Decoder {
            max_line,
            partial: Vec::new(),
        }
    }

    /// Feeds bytes as they came off the socket; complete messages are pushed to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Message>) -> Result<(), DecodeError> {
        let _ = (bytes, out, self.max_line, &self.partial);
        todo!("wire decoder")
    }

    /// The connection reached EOF: flushes whatever is pending as final messages.
    pub fn finish(&mut self, out: &mut Vec<Message>) {
        let _ = out;
        todo!("wire decoder finish")
    }

    /// Bytes held while waiting for the end of a line or block.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }
}

/// The header forms we can send in (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `IP:PORT NAME MESSAGE` (IPv6: `[IP]:PORT NAME MESSAGE`).
    #[default]
    Standard,
    /// `IP PORT NAME MESSAGE`.
    Spaced,
}

/// The header that precedes `text` for a sender at `own` called `name`, including the
/// separating space.
pub fn header(own: SocketAddr, name: &str, format: Format) -> String {
    let _ = (own, name, format);
    todo!("wire header")
}

/// The full wire form of one message: header then text, UTF-8, no trailing newline.
pub fn encode(own: SocketAddr, name: &str, text: &str, format: Format) -> String {
    let mut s = header(own, name, format);
    s.push_str(text);
    s
}

/// Splits `text` into pieces such that `header_len + piece.len() <= MAX_WIRE_MESSAGE`,
/// cutting only at UTF-8 character boundaries (at a space near the end when there is one).
/// Returns a single piece when the text already fits; never returns an empty list.
pub fn split_for_wire(text: &str, header_len: usize) -> Vec<&str> {
    let _ = (text, header_len);
    todo!("wire split")
}
