//! The bytes on the wire: decoding every dialect the lab's peers speak, and encoding ours.
//!
//! Pure and I/O-free. A [`Decoder`] lives with one inbound connection: the event loop
//! feeds it whatever `read` returned, in whatever chunks, and it yields complete
//! [`Message`]s. [`encode()`] builds what we send, and [`split_for_wire`] keeps each
//! message small enough for receivers that read a single `recv(1024)`.
//!
//! See docs/PROTOCOL.md, section 2, for the dialects and the README for what we accept.
//!
//! - [`Decoder`] (`decoder.rs`): framing, blocks, and the order in which dialects are tried;
//! - `dialects.rs`: the line parsers of the header forms;
//! - `json.rs`: the JSON dialect;
//! - `encode.rs`: our message in each dialect, and splitting for receivers that read 1024
//!   bytes;
//! - `replies.rs`: what receivers say back on our connection, and what we owe a port-line
//!   sender;
//! - [`Run`] (`run.rs`): a sender's streamed lines decoded together, with where each ends;
//! - `scan.rs`: where a read's lines end and whether they are visible ASCII, in one pass.

mod decoder;
mod dialects;
mod encode;
mod json;
mod replies;
mod run;
mod scan;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub use decoder::{Decoder, Spares};
pub use dialects::parse_port;
pub use encode::{encode, header, split_for_wire, split_in, Format, OwnHeader};
pub use replies::{is_acknowledgement, replier_name, reply_line, MAX_REPLY, MESSAGE_RECEIVED};
pub use run::Run;
pub(crate) use run::{same_text, visible_ascii, visible_ascii_short};

/// Most lab receivers read one `recv(1024)`: nothing we send is longer than this.
pub const MAX_WIRE_MESSAGE: usize = 1024;

/// What a peer said, once its dialect is peeled off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Ordinary chat text (may be empty only if the sender sent a header with no text).
    Chat(String),
    /// Several chat messages in a row from one sender, one per line (each non-empty, as
    /// its own [`Body::Chat`] would be). Only a decoder made with [`Decoder::group_lines`]
    /// yields them: the plain lines a sender streams after its header, decoded together
    /// so that each costs a line's work, not a message's.
    Lines(Run),
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

impl Dialect {
    /// Every dialect, in the order of the documentation.
    pub const ALL: [Dialect; 8] = [
        Dialect::Standard,
        Dialect::Spaced,
        Dialect::Bracketed,
        Dialect::KeyValue,
        Dialect::Colon,
        Dialect::Persistent,
        Dialect::Json,
        Dialect::Raw,
    ];

    /// The word shown for it in the peer table and in JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Standard => "standard",
            Dialect::Spaced => "spaced",
            Dialect::Bracketed => "bracketed",
            Dialect::KeyValue => "key-value",
            Dialect::Colon => "colon",
            Dialect::Persistent => "port-line",
            Dialect::Json => "json",
            Dialect::Raw => "raw",
        }
    }

    /// The dialect whose word (as [`Dialect::as_str`] gives it) is `word`.
    pub fn from_word(word: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.as_str() == word)
    }
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

/// The `\n`-separated lines of `text` (found with memchr: `str::split` costs more per
/// short line). The lines of a [`Body::Lines`] need no search: [`Run::lines`] walks the
/// ends its decoder found.
///
/// ```
/// let text = "one\ntwo";
/// assert_eq!(peerchat::wire::lines(text).collect::<Vec<_>>(), ["one", "two"]);
/// ```
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    // One searcher for the whole text: cheaper per line than a `memchr` call each.
    let mut ends = memchr::memchr_iter(b'\n', text.as_bytes());
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        // `\n` is one byte: both sides are on character boundaries.
        match ends.next() {
            Some(end) => {
                start = Some(end + 1);
                text.get(from..end)
            }
            None => {
                start = None;
                text.get(from..)
            }
        }
    })
}

/// Whether `text` holds nothing but whitespace (`str::trim` would leave nothing), with the
/// usual case first: text that starts with a visible ASCII character is not blank, and
/// no character is looked at past it.
///
/// ```
/// assert!(peerchat::wire::is_blank(" \t\u{a0}"));
/// assert!(!peerchat::wire::is_blank("hi "));
/// ```
#[inline]
pub fn is_blank(text: &str) -> bool {
    match text.as_bytes().first() {
        Some(b) if b.is_ascii_graphic() => false,
        _ => text.trim().is_empty(),
    }
}

/// The control word `text` is, if its whole trimmed form is one (any case).
#[inline]
pub fn control_word(text: &str) -> Option<Body> {
    control_word_trimmed(dialects::trim(text))
}

/// [`control_word`] for text known to have nothing to trim.
#[inline]
fn control_word_trimmed(t: &str) -> Option<Body> {
    // Most text is none of them: its length says so without comparing (and this much is
    // small enough to be inlined where it is asked).
    if !may_be_control_word(t.len()) {
        return None;
    }
    control_word_of(t)
}

/// Whether trimmed text of `len` bytes may be a control word: the lengths of those of
/// [`control_word_of`].
#[inline]
pub(super) fn may_be_control_word(len: usize) -> bool {
    matches!(len, 4 | 7 | 9 | 10 | 11 | 18)
}

/// The control word the trimmed text `t` is, if any.
fn control_word_of(t: &str) -> Option<Body> {
    const WORDS: [(&str, Body); 7] = [
        ("connect", Body::Connect),
        ("connection_request", Body::Connect),
        ("handshake", Body::Connect),
        ("connect_ack", Body::ConnectAck),
        ("exit", Body::Exit),
        ("disconnect", Body::Exit),
        ("[peer_quit]", Body::Exit),
    ];
    WORDS
        .iter()
        .find(|(word, _)| t.eq_ignore_ascii_case(word))
        .map(|(_, body)| body.clone())
}
