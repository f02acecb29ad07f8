//! The bytes on the wire: decoding every dialect the lab's peers speak, and encoding ours.
//!
//! Pure and I/O-free. A [`Decoder`] lives with one inbound connection: the event loop
//! feeds it whatever `read` returned, in whatever chunks, and it yields complete
//! [`Message`]s. [`encode`] builds what we send, and [`split_for_wire`] keeps each
//! message small enough for receivers that read a single `recv(1024)`.
//!
//! See docs/PROTOCOL.md, section 2, for the dialects and the README for what we accept.
//!
//! # How a line is read
//!
//! Each complete line (or the final unterminated one) is tried against the dialects in
//! this order; the first that matches wins, and their leading tokens make them disjoint:
//!
//! 1. blank (only whitespace): nothing;
//! 2. the *first* non-blank line of a connection holding only digits that form a valid port:
//!    the persistent dialect's opening line, which yields nothing by itself (but if the
//!    connection ends with nothing else, it is yielded as raw chat: someone typed a number);
//! 3. JSON, when the line starts with `{` (pretty-printed JSON is accumulated over lines
//!    while it is incomplete; a line that turns out not to be JSON is re-read as plain lines);
//! 4. bracketed, when the line starts with `<IP:PORT>`;
//! 5. key/value, when the line starts with `LISTENING_PORT:`;
//! 6. colon fields, when the line starts with `MESSAGE:`, `CONNECT:`, `ACK:` or `EXIT:`;
//! 7. standard, when the first token is `IP:PORT` (`[IPv6]:PORT`);
//! 8. spaced, when the first two tokens are an IP and a port;
//! 9. raw text, attributed to the connection's identity when a previous line had a header.
//!
//! Decision rules for the ambiguous cases:
//!
//! - Ports must be digits only and in `1..=65535`, else the line is not a header (raw).
//! - Keywords (`LISTENING_PORT`, `MESSAGE`, `<end>`, JSON `type`...) match in any case.
//! - Control words (`connect`, `connection_request`, `handshake`, `connect_ack`, `exit`,
//!   `disconnect`, `[peer_quit]`) only count as the *whole* trimmed message, in any case,
//!   for the standard, spaced, bracketed, key/value, persistent and raw bodies. The colon
//!   and JSON dialects say what a message is in a field of their own, so their text is
//!   always chat (`MESSAGE:bob:80:exit` is the chat text `exit`).
//! - After a header, exactly one space or tab separates the name from the text; further
//!   leading spacing belongs to the text, trailing whitespace is trimmed.
//! - A header with a name but no text is `Chat("")` (callers may ignore empty chat). A
//!   header followed by a single control word and nothing else (`IP:PORT exit`) is that
//!   control word from a sender with no name; a header alone is `Chat("")` with no name.
//! - A header on a later line of a connection replaces the connection's identity; raw
//!   lines take the latest identity, in the dialect of the line that set it, or
//!   [`Dialect::Persistent`] if the connection opened with a port line.
//! - A bracketed block ends at `<end>`, at EOF, or at a new `<IP:PORT>` line. Leading blank
//!   lines are dropped, inner ones kept. A block that grows past the decoder's limit is
//!   delivered in pieces of whole lines instead of failing.
//! - JSON needs `type` or `content` to count as a message; an unknown `type` is chat, a
//!   `type` that is a control word (`connect`, `exit`, `connect_ack`, `ack`...) is that.
//!   Several objects glued on one line are several messages.
//! - NUL and other control bytes stay in the text; invalid UTF-8 becomes U+FFFD.
//! - A line longer than the limit is an error whatever the chunking; after an error the
//!   decoder stays failed and yields nothing more.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// Who is talking on a connection, as the last header on it said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    name: Option<String>,
    claimed_ip: Option<IpAddr>,
    port: Option<u16>,
}

impl Identity {
    /// The identity a message's header announced.
    fn of(m: &Message) -> Identity {
        Identity {
            name: m.name.clone(),
            claimed_ip: m.claimed_ip,
            port: m.port,
        }
    }

    /// A message from this identity.
    fn message(&self, body: Body, dialect: Dialect) -> Message {
        self.clone().into_message(body, dialect)
    }

    /// A message from this identity, consuming it.
    fn into_message(self, body: Body, dialect: Dialect) -> Message {
        Message {
            name: self.name,
            claimed_ip: self.claimed_ip,
            port: self.port,
            body,
            dialect,
        }
    }
}

/// Lines held until a multi-line construct is complete.
#[derive(Debug)]
enum Block {
    /// Between `<IP:PORT> @ <TEAM>` and `<end>`: the lines so far, joined with `\n`.
    Bracketed {
        who: Identity,
        text: String,
        /// A piece of this block was already delivered (it outgrew the limit).
        emitted: bool,
    },
    /// Lines of a JSON value that does not parse yet, joined with `\n`, and how deeply
    /// they are nested (so that the value is parsed once, when it can be complete).
    Json { text: String, nesting: Nesting },
}

impl Block {
    fn len(&self) -> usize {
        match self {
            Block::Bracketed { text, .. } | Block::Json { text, .. } => text.len(),
        }
    }
}

/// Turns the byte stream of one inbound connection into messages.
///
/// ```
/// use peerchat::wire::{Body, Decoder, Dialect};
///
/// let mut decoder = Decoder::new(64 * 1024);
/// let mut out = Vec::new();
/// // A read boundary may fall anywhere, even inside a character.
/// let bytes = "127.0.0.3:5002 bob h\u{e9}llo".as_bytes();
/// decoder.feed(&bytes[..22], &mut out).unwrap();
/// decoder.feed(&bytes[22..], &mut out).unwrap();
/// assert!(out.is_empty(), "no newline yet: the message ends at EOF");
/// decoder.finish(&mut out);
/// assert_eq!(out[0].name.as_deref(), Some("bob"));
/// assert_eq!(out[0].port, Some(5002));
/// assert_eq!(out[0].body, Body::Chat("h\u{e9}llo".into()));
/// assert_eq!(out[0].dialect, Dialect::Standard);
/// ```
///
/// Lines end at `\n` (a preceding `\r` is dropped); the last line may end at EOF instead.
/// Bytes are buffered until a line is complete, so a multi-byte character cut by a read
/// boundary is decoded whole; invalid UTF-8 becomes U+FFFD. A connection that sends nothing
/// yields nothing (a liveness probe). See the module documentation for how lines are read.
#[derive(Debug)]
pub struct Decoder {
    /// The limit, as `u32` (4 GiB is plenty) to keep an idle connection's decoder small.
    max_line: u32,
    partial: Vec<u8>,
    /// An open bracketed block or incomplete JSON value. Boxed, like the identity: most
    /// connections never have one, and a small decoder keeps idle connections cheap.
    block: Option<Box<Block>>,
    /// The latest header on this connection, and the dialect of header-less lines after it.
    identity: Option<Box<(Identity, Dialect)>>,
    /// The first non-blank line was a port (the persistent dialect).
    opened_with_port: bool,
    /// A non-blank line was seen.
    seen_line: bool,
    /// The opening port line, while nothing else followed it.
    port_line: Option<Box<str>>,
    /// A line was too long: the connection is to be dropped, nothing more is decoded.
    failed: bool,
}

impl Decoder {
    /// A decoder that refuses lines longer than `max_line` bytes; it also holds at most
    /// `max_line` bytes in total (see [`Decoder::buffered`]).
    pub fn new(max_line: usize) -> Self {
        Decoder {
            max_line: u32::try_from(max_line).unwrap_or(u32::MAX),
            partial: Vec::new(),
            block: None,
            identity: None,
            opened_with_port: false,
            seen_line: false,
            port_line: None,
            failed: false,
        }
    }

    /// Feeds bytes as they came off the socket; complete messages are pushed to `out`.
    ///
    /// Fails when a line is longer than the limit, whatever the chunking. Messages decoded
    /// before the offending line are still pushed; after a failure the decoder holds
    /// nothing and every later call fails too.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Message>) -> Result<(), DecodeError> {
        if self.failed {
            return Err(self.error());
        }
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = (&rest[..pos], &rest[pos + 1..]);
            if self.partial.len() + line.len() > self.max_line() {
                return Err(self.fail());
            }
            if self.partial.is_empty() {
                self.line_bytes(line, true, out);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line_bytes(&whole, true, out);
                whole.clear();
                self.partial = whole; // keep the capacity for the next line
            }
            rest = tail;
        }
        if !rest.is_empty() {
            if self.partial.len() + rest.len() > self.max_line() {
                return Err(self.fail());
            }
            self.partial.extend_from_slice(rest);
        }
        self.bound_block(out);
        Ok(())
    }

    /// The connection reached EOF: flushes whatever is pending as final messages.
    pub fn finish(&mut self, out: &mut Vec<Message>) {
        if self.failed {
            return;
        }
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line_bytes(&last, false, out);
        }
        // Re-reading a failed JSON block may open a bracketed one: loop until none is left.
        while let Some(block) = self.block.take() {
            match *block {
                Block::Json { text, .. } => self.reread(&text, false, out),
                Block::Bracketed { who, text, emitted } => {
                    close_bracketed(who, text, emitted, out);
                }
            }
        }
        if let Some(text) = self.port_line.take() {
            out.push(raw_message(Body::Chat(text.into())));
        }
    }

    /// Bytes held while waiting for the end of a line or block (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.partial.len() + self.block.as_ref().map_or(0, |b| b.len())
    }

    fn error(&self) -> DecodeError {
        DecodeError::LineTooLong {
            limit: self.max_line(),
        }
    }

    /// Drops everything held and refuses further input.
    fn fail(&mut self) -> DecodeError {
        self.failed = true;
        self.partial = Vec::new();
        self.block = None;
        self.port_line = None;
        self.error()
    }

    fn max_line(&self) -> usize {
        self.max_line as usize
    }

    /// Keeps `buffered() <= max_line` by delivering (or giving up) an open block.
    fn bound_block(&mut self, out: &mut Vec<Message>) {
        while self.buffered() > self.max_line() {
            match self.block.take().map(|b| *b) {
                None => return, // cannot happen: the partial line alone is within the limit
                Some(Block::Json { text, .. }) => self.reread(&text, true, out),
                Some(Block::Bracketed { who, text, emitted }) => {
                    let emitted = flush_bracketed(&who, text, out) || emitted;
                    self.block = Some(Box::new(Block::Bracketed {
                        who,
                        text: String::new(),
                        emitted,
                    }));
                }
            }
        }
    }

    /// One complete line, as bytes without its `\n`. `remember` is false for the final line
    /// of a connection, whose identity nobody will ask for (saves a copy of the name).
    fn line_bytes(&mut self, line: &[u8], remember: bool, out: &mut Vec<Message>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Valid UTF-8 (the usual case) is checked fast and borrowed; only invalid input
        // pays for the lossy conversion.
        match std::str::from_utf8(line) {
            Ok(text) => self.line(text, true, remember, out),
            Err(_) => self.line(&String::from_utf8_lossy(line), true, remember, out),
        }
    }

    /// One complete line: continues an open block, or is read on its own.
    fn line(&mut self, line: &str, allow_json: bool, remember: bool, out: &mut Vec<Message>) {
        match self.block.take().map(|b| *b) {
            None => {}
            Some(Block::Bracketed {
                who,
                mut text,
                mut emitted,
            }) => {
                if line.trim().eq_ignore_ascii_case("<end>") {
                    close_bracketed(who, text, emitted, out);
                    return;
                }
                if bracket_addr(line).is_some() {
                    // A new header: the sender forgot `<end>`. Deliver, then read it below.
                    close_bracketed(who, text, emitted, out);
                } else {
                    let sep = usize::from(!text.is_empty());
                    if text.len() + sep + line.len() > self.max_line() {
                        emitted |= flush_bracketed(&who, text, out);
                        text = String::new();
                    }
                    push_block_line(&mut text, line);
                    self.block = Some(Box::new(Block::Bracketed { who, text, emitted }));
                    return;
                }
            }
            Some(Block::Json {
                mut text,
                mut nesting,
            }) => {
                if text.len() + 1 + line.len() > self.max_line() {
                    // Too big to be a sensible JSON message: read what we held as plain
                    // lines (which may open a bracketed block), then this line afresh.
                    self.reread(&text, remember, out);
                    self.line(line, allow_json, remember, out);
                    return;
                }
                text.push('\n');
                text.push_str(line);
                nesting.scan(line);
                if !nesting.may_be_complete() {
                    // Parsing now would fail anyway: parse once, when it can succeed
                    // (re-parsing on every line would cost the square of the block).
                    self.block = Some(Box::new(Block::Json { text, nesting }));
                    return;
                }
                match parse_json(&text) {
                    JsonRead::Messages(msgs) => {
                        msgs.into_iter().for_each(|m| self.emit(m, remember, out));
                    }
                    JsonRead::Incomplete | JsonRead::Invalid => self.reread(&text, remember, out),
                }
                return;
            }
        }
        self.dispatch(line, allow_json, remember, out);
    }

    /// Lines held for a JSON value that never came: read them as plain lines.
    fn reread(&mut self, text: &str, remember: bool, out: &mut Vec<Message>) {
        for line in text.split('\n') {
            self.line(line, false, remember, out);
        }
    }

    /// Reads one line outside any block, trying the dialects in the documented order.
    fn dispatch(&mut self, line: &str, allow_json: bool, remember: bool, out: &mut Vec<Message>) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        let first = !self.seen_line;
        self.seen_line = true;
        if first {
            // A line holding only a port opens the persistent dialect.
            if let Some(port) = parse_port(trimmed) {
                self.opened_with_port = true;
                let who = Identity {
                    name: None,
                    claimed_ip: None,
                    port: Some(port),
                };
                self.identity = Some(Box::new((who, Dialect::Persistent)));
                self.port_line = Some(trimmed.into());
                return;
            }
        }
        self.port_line = None;
        if allow_json && trimmed.starts_with('{') {
            match parse_json(trimmed) {
                JsonRead::Messages(msgs) => {
                    msgs.into_iter().for_each(|m| self.emit(m, remember, out));
                    return;
                }
                JsonRead::Incomplete => {
                    let mut nesting = Nesting::default();
                    nesting.scan(line);
                    self.block = Some(Box::new(Block::Json {
                        text: line.to_owned(),
                        nesting,
                    }));
                    return;
                }
                JsonRead::Invalid => {}
            }
        }
        if let Some(parsed) = parse_bracketed(line) {
            match parsed {
                Bracketed::Message(m) => self.emit(m, remember, out),
                Bracketed::Open { who, first } => {
                    if remember {
                        self.remember(who.clone(), Dialect::Bracketed);
                    }
                    let mut text = String::new();
                    push_block_line(&mut text, first);
                    self.block = Some(Box::new(Block::Bracketed {
                        who,
                        text,
                        emitted: false,
                    }));
                }
            }
            return;
        }
        let headed = parse_key_value(line)
            .or_else(|| parse_colon(line))
            .or_else(|| parse_standard(line))
            .or_else(|| parse_spaced(line));
        match headed {
            Some(m) => self.emit(m, remember, out),
            None => out.push(self.raw(line)),
        }
    }

    /// Pushes a message, remembering its header as the connection's identity.
    fn emit(&mut self, m: Message, remember: bool, out: &mut Vec<Message>) {
        let has_header = m.name.is_some() || m.port.is_some() || m.claimed_ip.is_some();
        if remember && has_header {
            self.remember(Identity::of(&m), m.dialect);
        }
        out.push(m);
    }

    fn remember(&mut self, who: Identity, dialect: Dialect) {
        let dialect = if self.opened_with_port {
            Dialect::Persistent
        } else {
            dialect
        };
        self.identity = Some(Box::new((who, dialect)));
    }

    /// A line with no header: raw text, or a line of the sender this connection announced.
    fn raw(&self, line: &str) -> Message {
        let body = body_of(line);
        match self.identity.as_deref() {
            Some((who, dialect)) => who.message(body, *dialect),
            None => raw_message(body),
        }
    }
}

/// A message with no header at all.
fn raw_message(body: Body) -> Message {
    Message {
        name: None,
        claimed_ip: None,
        port: None,
        body,
        dialect: Dialect::Raw,
    }
}

/// Appends a line to a bracketed block's text; leading blank lines are dropped.
fn push_block_line(text: &mut String, line: &str) {
    if text.is_empty() {
        if !line.trim().is_empty() {
            text.push_str(line);
        }
    } else {
        text.push('\n');
        text.push_str(line);
    }
}

/// Delivers the text held so far of a bracketed block that continues; returns whether
/// anything of the block has now been delivered.
fn flush_bracketed(who: &Identity, text: String, out: &mut Vec<Message>) -> bool {
    if text.trim().is_empty() {
        return false;
    }
    out.push(who.message(block_body(text), Dialect::Bracketed));
    true
}

/// Delivers a bracketed block that ended (at `<end>`, EOF or a new header). A block with no
/// text at all is `Chat("")`, like any header without text, unless pieces of it were
/// delivered already.
fn close_bracketed(who: Identity, text: String, emitted: bool, out: &mut Vec<Message>) {
    if emitted && text.trim().is_empty() {
        return;
    }
    out.push(who.into_message(block_body(text), Dialect::Bracketed));
}

fn block_body(mut text: String) -> Body {
    text.truncate(text.trim_end().len());
    control_word(&text).unwrap_or(Body::Chat(text))
}

/// The control word `text` is, if its whole trimmed form is one (any case).
pub fn control_word(text: &str) -> Option<Body> {
    const WORDS: [(&str, Body); 7] = [
        ("connect", Body::Connect),
        ("connection_request", Body::Connect),
        ("handshake", Body::Connect),
        ("connect_ack", Body::ConnectAck),
        ("exit", Body::Exit),
        ("disconnect", Body::Exit),
        ("[peer_quit]", Body::Exit),
    ];
    let t = text.trim();
    WORDS
        .iter()
        .find(|(word, _)| t.eq_ignore_ascii_case(word))
        .map(|(_, body)| body.clone())
}

/// The body of a message text: a control word, or chat with trailing whitespace trimmed.
fn body_of(text: &str) -> Body {
    control_word(text).unwrap_or_else(|| Body::Chat(text.trim_end().to_owned()))
}

/// Separators between header fields.
fn is_sep(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn skip_seps(s: &str) -> &str {
    s.trim_start_matches(is_sep)
}

/// The token at the start of `s` and what follows exactly one separator after it.
fn token(s: &str) -> (&str, &str) {
    match s.bytes().position(|b| b == b' ' || b == b'\t') {
        // Separators are one byte long.
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// A listening port: ASCII digits only, `1..=65535` (no sign, no spaces). Used for
/// headers and for what the user types alike.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

/// An IP address, IPv6 optionally in brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    match s.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => s.parse().ok(),
    }
}

/// `IPv4:PORT` or `[IPv6]:PORT`.
fn parse_sockaddr(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.rsplit_once(':')?;
    let ip = match ip.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse().ok()?),
        None => IpAddr::V4(ip.parse::<Ipv4Addr>().ok()?),
    };
    Some((ip, parse_port(port)?))
}

/// The rest of an address header: `NAME MESSAGE`, see the module's decision rules.
fn headed(dialect: Dialect, ip: IpAddr, port: u16, rest: &str) -> Message {
    let (name, text) = token(rest);
    let (name, body) = if name.is_empty() {
        (None, Body::Chat(String::new()))
    } else if text.trim().is_empty() {
        match control_word(name) {
            Some(body) => (None, body),
            None => (Some(name), Body::Chat(String::new())),
        }
    } else {
        (Some(name), body_of(text))
    };
    Message {
        name: name.map(str::to_owned),
        claimed_ip: Some(ip),
        port: Some(port),
        body,
        dialect,
    }
}

/// Standard: `IP:PORT NAME MESSAGE`.
fn parse_standard(line: &str) -> Option<Message> {
    let (addr, rest) = token(skip_seps(line));
    let (ip, port) = parse_sockaddr(addr)?;
    Some(headed(Dialect::Standard, ip, port, skip_seps(rest)))
}

/// Spaced: `IP PORT NAME MESSAGE`.
fn parse_spaced(line: &str) -> Option<Message> {
    let (ip, rest) = token(skip_seps(line));
    let ip = parse_ip(ip)?;
    let (port, rest) = token(skip_seps(rest));
    let port = parse_port(port)?;
    Some(headed(Dialect::Spaced, ip, port, skip_seps(rest)))
}

/// What a bracketed line is.
enum Bracketed<'a> {
    /// `<IP:PORT> DISCONNECT`, `<IP:PORT> TEAM MESSAGE`.
    Message(Message),
    /// `<IP:PORT> @ <TEAM>`, opening a block; text after the team starts the block.
    Open { who: Identity, first: &'a str },
}

/// `<IP:PORT>` at the start of a line, and what follows it.
fn bracket_addr(line: &str) -> Option<(IpAddr, u16, &str)> {
    let inner = line.trim_start().strip_prefix('<')?;
    let end = inner.find('>')?;
    let (ip, port) = parse_sockaddr(&inner[..end])?;
    Some((ip, port, &inner[end + 1..]))
}

/// Bracketed: `<IP:PORT> @ <TEAM>`, `<IP:PORT> DISCONNECT`, `<IP:PORT> TEAM MESSAGE`.
fn parse_bracketed(line: &str) -> Option<Bracketed<'_>> {
    let (ip, port, rest) = bracket_addr(line)?;
    let rest = skip_seps(rest);
    let (first, after) = token(rest);
    if first != "@" {
        return Some(Bracketed::Message(headed(
            Dialect::Bracketed,
            ip,
            port,
            rest,
        )));
    }
    let after = skip_seps(after);
    let (team, tail) = match after.strip_prefix('<').and_then(|t| t.split_once('>')) {
        Some((team, tail)) => (team, tail),
        None => token(after),
    };
    let team = team.trim();
    let who = Identity {
        name: (!team.is_empty()).then(|| team.to_owned()),
        claimed_ip: Some(ip),
        port: Some(port),
    };
    Some(Bracketed::Open {
        who,
        first: skip_seps(tail),
    })
}

/// The value of `KEY:value` (key in any case, spaces tolerated), trimmed.
fn key_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let s = s.trim();
    if !s.get(..key.len())?.eq_ignore_ascii_case(key) {
        return None;
    }
    let value = s[key.len()..].trim_start().strip_prefix(':')?;
    Some(value.trim())
}

/// Key/value: `LISTENING_PORT:PORT|TEAM_NAME:TEAM|MESSAGE`; the message may hold `|`.
fn parse_key_value(line: &str) -> Option<Message> {
    let (first, rest) = match line.split_once('|') {
        Some((first, rest)) => (first, Some(rest)),
        None => (line, None),
    };
    let port = parse_port(key_field(first, "LISTENING_PORT")?)?;
    let (name, text) = match rest {
        None => (None, ""),
        Some(rest) => {
            let (second, tail) = rest.split_once('|').unwrap_or((rest, ""));
            match key_field(second, "TEAM_NAME") {
                Some(team) => (Some(team).filter(|t| !t.is_empty()), tail),
                None => (None, rest),
            }
        }
    };
    Some(Message {
        name: name.map(str::to_owned),
        claimed_ip: None,
        port: Some(port),
        body: body_of(text.trim_start()),
        dialect: Dialect::KeyValue,
    })
}

/// Colon fields: `MESSAGE:NAME:PORT:TEXT`, `CONNECT:NAME:PORT`, `ACK:NAME:PORT`,
/// `EXIT:PORT`, `CONNECT:PORT` (and `EXIT:NAME:PORT`, `ACK:PORT`).
fn parse_colon(line: &str) -> Option<Message> {
    let (keyword, rest) = line.trim_start().split_once(':')?;
    let keyword = keyword.trim_end();
    let (name, port, body) = if keyword.eq_ignore_ascii_case("MESSAGE") {
        let mut fields = rest.splitn(3, ':');
        let name = fields.next()?.trim();
        let port = parse_port(fields.next()?.trim())?;
        let text = fields.next().unwrap_or("").trim_end();
        (name, port, Body::Chat(text.to_owned()))
    } else {
        let body = if keyword.eq_ignore_ascii_case("CONNECT") {
            Body::Connect
        } else if keyword.eq_ignore_ascii_case("ACK") {
            Body::ConnectAck
        } else if keyword.eq_ignore_ascii_case("EXIT") {
            Body::Exit
        } else {
            return None;
        };
        let (name, port) = rest.split_once(':').unwrap_or(("", rest));
        (name.trim(), parse_port(port.trim())?, body)
    };
    Some(Message {
        name: (!name.is_empty()).then(|| name.to_owned()),
        claimed_ip: None,
        port: Some(port),
        body,
        dialect: Dialect::Colon,
    })
}

/// How deeply an unfinished JSON text is nested, updated line by line in one pass.
#[derive(Debug, Default, Clone, Copy)]
struct Nesting {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A closing bracket with nothing open: not JSON; parse (and fail) at once.
    broken: bool,
}

impl Nesting {
    /// Takes in the next line (the `\n` joining it is whitespace to JSON).
    fn scan(&mut self, line: &str) {
        for b in line.bytes() {
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => match self.depth.checked_sub(1) {
                    Some(depth) => self.depth = depth,
                    None => self.broken = true,
                },
                _ => {}
            }
        }
    }

    /// Whether the text can be a whole value (or is certainly not JSON).
    fn may_be_complete(&self) -> bool {
        self.broken || (self.depth == 0 && !self.in_string)
    }
}

/// What some text held as JSON.
enum JsonRead {
    /// One or more messages (several objects may be glued on one line).
    Messages(Vec<Message>),
    /// Valid so far but cut short: more lines may complete it.
    Incomplete,
    /// Not JSON, or not a message.
    Invalid,
}

fn parse_json(text: &str) -> JsonRead {
    let mut msgs = Vec::new();
    let values = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for value in values {
        match value {
            Ok(value) => match json_message(&value, text.len()) {
                Some(m) => msgs.push(m),
                None => return JsonRead::Invalid,
            },
            Err(e) if e.is_eof() => return JsonRead::Incomplete,
            Err(_) => return JsonRead::Invalid,
        }
    }
    if msgs.is_empty() {
        JsonRead::Invalid
    } else {
        JsonRead::Messages(msgs)
    }
}

/// `{"type": ..., "content": ..., "sender_name": ..., "sender_port": N}`; needs `type` or
/// `content`. Also reads an optional `sender_ip`. `max_len` bounds a non-string content.
fn json_message(value: &serde_json::Value, max_len: usize) -> Option<Message> {
    use serde_json::Value;
    let obj = value.as_object()?;
    let kind = obj.get("type");
    let content = obj.get("content");
    if kind.is_none() && content.is_none() {
        return None;
    }
    let kind_body = kind.and_then(Value::as_str).and_then(|k| {
        if k.eq_ignore_ascii_case("ack") {
            Some(Body::ConnectAck)
        } else {
            control_word(k)
        }
    });
    let body = kind_body.unwrap_or_else(|| {
        Body::Chat(match content {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.trim_end().to_owned(),
            // Non-string content is shown as compact JSON, never longer than the input
            // (`1e15` re-serialises as `1000000000000000.0`).
            Some(other) => {
                let mut shown = other.to_string();
                let mut cut = shown.len().min(max_len);
                while !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
                shown
            }
        })
    });
    let port = match obj.get("sender_port") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0),
        Some(Value::String(s)) => parse_port(s.trim()),
        _ => None,
    };
    let name = obj
        .get("sender_name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let claimed_ip = obj
        .get("sender_ip")
        .and_then(Value::as_str)
        .and_then(|s| parse_ip(s.trim()));
    Some(Message {
        name,
        claimed_ip,
        port,
        body,
        dialect: Dialect::Json,
    })
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
    let (ip, port) = (own.ip(), own.port());
    match (format, ip) {
        (Format::Standard, IpAddr::V4(v4)) => format!("{v4}:{port} {name} "),
        (Format::Standard, IpAddr::V6(v6)) => format!("[{v6}]:{port} {name} "),
        (Format::Spaced, ip) => format!("{ip} {port} {name} "),
    }
}

/// The full wire form of one message: header then text, UTF-8, no trailing newline.
///
/// ```
/// use peerchat::wire::{encode, Format};
///
/// let me = "127.0.0.2:5001".parse().unwrap();
/// assert_eq!(encode(me, "alice", "hi", Format::Standard), "127.0.0.2:5001 alice hi");
/// assert_eq!(encode(me, "alice", "hi", Format::Spaced), "127.0.0.2 5001 alice hi");
/// let six = "[::1]:7".parse().unwrap();
/// assert_eq!(encode(six, "v6", "hi", Format::Standard), "[::1]:7 v6 hi");
/// ```
pub fn encode(own: SocketAddr, name: &str, text: &str, format: Format) -> String {
    let mut s = header(own, name, format);
    s.push_str(text);
    s
}

/// How far back from a piece's end [`split_for_wire`] looks for a space to cut after.
const SPACE_WINDOW: usize = 64;

/// Splits `text` into pieces such that `header_len + piece.len() <= MAX_WIRE_MESSAGE`,
/// cutting only at UTF-8 character boundaries (at a space near the end when there is one).
/// Returns a single piece when the text already fits; never returns an empty list.
///
/// ```
/// use peerchat::wire::{split_for_wire, MAX_WIRE_MESSAGE};
///
/// let text = "\u{e9}".repeat(1500); // 3000 bytes
/// let parts = split_for_wire(&text, 30);
/// assert_eq!(parts.len(), 4); // 3000 bytes in pieces of at most 1024 - 30
/// assert!(parts.iter().all(|p| 30 + p.len() <= MAX_WIRE_MESSAGE));
/// assert_eq!(parts.concat(), text);
/// ```
///
/// The pieces concatenate back to `text`. With an absurd `header_len` (no room for a whole
/// character) each piece still holds one character, so the limit cannot be met then.
pub fn split_for_wire(text: &str, header_len: usize) -> Vec<&str> {
    let budget = MAX_WIRE_MESSAGE.saturating_sub(header_len);
    if text.len() <= budget {
        return vec![text];
    }
    // Where each piece ends, as offsets into `text`.
    let mut ends = Vec::with_capacity(text.len() / budget.max(1) + 1);
    let mut start = 0;
    while text.len() - start > budget {
        start += cut_point(&text[start..], budget);
        ends.push(start);
    }
    if start < text.len() {
        ends.push(text.len());
    }
    // A piece must never read as a control word on its own: "... please exit" cut after
    // its last space would send a bare `exit`. Move such a cut back before the previous
    // piece's last visible character, so that it travels with the word.
    if control_word(text).is_none() {
        for i in 1..ends.len() {
            let (prev_start, cut) = (if i >= 2 { ends[i - 2] } else { 0 }, ends[i - 1]);
            if control_word(&text[cut..ends[i]]).is_none() {
                continue;
            }
            let moved = text[prev_start..cut]
                .char_indices()
                .rev()
                .find(|(_, c)| !c.is_whitespace())
                .map(|(at, _)| prev_start + at);
            if let Some(moved) = moved.filter(|&m| m > prev_start && ends[i] - m <= budget) {
                ends[i - 1] = moved;
            }
        }
    }
    let mut pieces = Vec::with_capacity(ends.len());
    let mut start = 0;
    for end in ends {
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
}

/// Where to end the next piece of `rest` (longer than `budget`): a char boundary at most
/// `budget` bytes in, just after the last space in the final [`SPACE_WINDOW`] bytes if any;
/// at least one character.
fn cut_point(rest: &str, budget: usize) -> usize {
    let mut cut = budget;
    while cut > 0 && !rest.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut == 0 {
        return rest.chars().next().map_or(rest.len(), char::len_utf8);
    }
    let low = cut.saturating_sub(SPACE_WINDOW);
    match rest.as_bytes()[low..cut].iter().rposition(|&b| b == b' ') {
        Some(i) => low + i + 1,
        None => cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit no table case comes near.
    const LIMIT: usize = 4096;

    fn chat(text: &str) -> Body {
        Body::Chat(text.to_owned())
    }

    /// An expected message; `""` and `0` stand for "absent".
    fn m(name: &str, ip: &str, port: u16, body: Body, dialect: Dialect) -> Message {
        Message {
            name: (!name.is_empty()).then(|| name.to_owned()),
            claimed_ip: (!ip.is_empty()).then(|| ip.parse().expect("test ip")),
            port: (port != 0).then_some(port),
            body,
            dialect,
        }
    }

    fn raw(body: Body) -> Message {
        m("", "", 0, body, Dialect::Raw)
    }

    /// Feeds `chunks` then finishes; checks the buffering bound after every call.
    fn decode_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
        max_line: usize,
    ) -> Result<Vec<Message>, DecodeError> {
        let mut decoder = Decoder::new(max_line);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out)?;
            assert!(decoder.buffered() <= max_line);
        }
        decoder.finish(&mut out);
        assert_eq!(decoder.buffered(), 0);
        Ok(out)
    }

    /// Decodes `input` in one chunk, and checks that byte-by-byte feeding agrees.
    fn decode(input: &str) -> Vec<Message> {
        let whole = decode_chunks([input.as_bytes()], LIMIT).expect("within the limit");
        let bytewise = decode_chunks(input.as_bytes().chunks(1), LIMIT).expect("within the limit");
        assert_eq!(whole, bytewise, "chunking changed the result for {input:?}");
        whole
    }

    fn check(table: &[(&str, Vec<Message>)]) {
        for (input, expected) in table {
            assert_eq!(&decode(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn standard_dialect() {
        use Dialect::Standard as S;
        let ip = "198.51.100.201";
        check(&[
            (
                "198.51.100.201:8080 blockchain hello",
                vec![m("blockchain", ip, 8080, chat("hello"), S)],
            ),
            (
                "198.51.100.201:8080 blockchain hello\n",
                vec![m("blockchain", ip, 8080, chat("hello"), S)],
            ),
            (
                "198.51.100.201:8080   alice  hi  there \t ",
                vec![m("alice", ip, 8080, chat(" hi  there"), S)],
            ),
            (
                "198.51.100.201:8080\talice\thi\tthere",
                vec![m("alice", ip, 8080, chat("hi\tthere"), S)],
            ),
            (
                "  198.51.100.201:8080 alice hi",
                vec![m("alice", ip, 8080, chat("hi"), S)],
            ),
            (
                "[::1]:9000 bob hey you",
                vec![m("bob", "::1", 9000, chat("hey you"), S)],
            ),
            (
                "198.51.100.201:8080 alice héllo wörld 日本 🎉",
                vec![m("alice", ip, 8080, chat("héllo wörld 日本 🎉"), S)],
            ),
            (
                "198.51.100.201:8080 alice a\0b",
                vec![m("alice", ip, 8080, chat("a\0b"), S)],
            ),
            (
                "198.51.100.201:8080 alice",
                vec![m("alice", ip, 8080, chat(""), S)],
            ),
            (
                "198.51.100.201:8080 alice   ",
                vec![m("alice", ip, 8080, chat(""), S)],
            ),
            ("198.51.100.201:8080", vec![m("", ip, 8080, chat(""), S)]),
            // Control words: the whole message, any case, trimmed.
            (
                "198.51.100.201:8080 alice exit",
                vec![m("alice", ip, 8080, Body::Exit, S)],
            ),
            (
                "198.51.100.201:8080 alice  EXIT \r\n",
                vec![m("alice", ip, 8080, Body::Exit, S)],
            ),
            (
                "198.51.100.201:8080 alice Connect",
                vec![m("alice", ip, 8080, Body::Connect, S)],
            ),
            (
                "198.51.100.201:8080 alice connect_ack",
                vec![m("alice", ip, 8080, Body::ConnectAck, S)],
            ),
            (
                "198.51.100.201:8080 alice [PEER_QUIT]",
                vec![m("alice", ip, 8080, Body::Exit, S)],
            ),
            (
                "198.51.100.201:8080 alice DISCONNECT",
                vec![m("alice", ip, 8080, Body::Exit, S)],
            ),
            (
                "198.51.100.201:8080 alice please exit now",
                vec![m("alice", ip, 8080, chat("please exit now"), S)],
            ),
            (
                "198.51.100.201:8080 alice ping",
                vec![m("alice", ip, 8080, chat("ping"), S)],
            ),
            (
                "198.51.100.201:8080 alice exit\0",
                vec![m("alice", ip, 8080, chat("exit\0"), S)],
            ),
            // A header and a lone control word: a sender without a name.
            (
                "198.51.100.201:8080 connect",
                vec![m("", ip, 8080, Body::Connect, S)],
            ),
            // Ports out of range: not a header.
            (
                "198.51.100.201:0 alice hi",
                vec![raw(chat("198.51.100.201:0 alice hi"))],
            ),
            (
                "198.51.100.201:65536 alice hi",
                vec![raw(chat("198.51.100.201:65536 alice hi"))],
            ),
            (
                "198.51.100.201:65535 alice hi",
                vec![m("alice", ip, 65535, chat("hi"), S)],
            ),
            (
                "198.51.100.201:+80 alice hi",
                vec![raw(chat("198.51.100.201:+80 alice hi"))],
            ),
            (
                "999.0.0.1:8080 alice hi",
                vec![raw(chat("999.0.0.1:8080 alice hi"))],
            ),
            ("::1:8080 alice hi", vec![raw(chat("::1:8080 alice hi"))]),
            // Later header-less lines belong to the latest header.
            (
                "198.51.100.201:8080 alice hello\nsecond line\n\nthird",
                vec![
                    m("alice", ip, 8080, chat("hello"), S),
                    m("alice", ip, 8080, chat("second line"), S),
                    m("alice", ip, 8080, chat("third"), S),
                ],
            ),
            (
                "198.51.100.201:8080 alice hi\n198.51.100.2:9090 bob yo\nexit",
                vec![
                    m("alice", ip, 8080, chat("hi"), S),
                    m("bob", "198.51.100.2", 9090, chat("yo"), S),
                    m("bob", "198.51.100.2", 9090, Body::Exit, S),
                ],
            ),
        ]);
    }

    #[test]
    fn spaced_dialect() {
        use Dialect::Spaced as S;
        let ip = "198.51.100.1";
        check(&[
            (
                "198.51.100.1 8080 alice hello world",
                vec![m("alice", ip, 8080, chat("hello world"), S)],
            ),
            (
                "198.51.100.1\t8080   alice\thi ",
                vec![m("alice", ip, 8080, chat("hi"), S)],
            ),
            (
                "::1 8080 alice hi",
                vec![m("alice", "::1", 8080, chat("hi"), S)],
            ),
            (
                "[::1] 8080 alice hi",
                vec![m("alice", "::1", 8080, chat("hi"), S)],
            ),
            (
                "198.51.100.1 8080 alice EXIT",
                vec![m("alice", ip, 8080, Body::Exit, S)],
            ),
            (
                "198.51.100.1 8080 alice exit please",
                vec![m("alice", ip, 8080, chat("exit please"), S)],
            ),
            ("198.51.100.1 8080", vec![m("", ip, 8080, chat(""), S)]),
            (
                "198.51.100.1 8080 alice",
                vec![m("alice", ip, 8080, chat(""), S)],
            ),
            (
                "198.51.100.1 0 alice hi",
                vec![raw(chat("198.51.100.1 0 alice hi"))],
            ),
            (
                "198.51.100.1 70000 alice hi",
                vec![raw(chat("198.51.100.1 70000 alice hi"))],
            ),
            (
                "198.51.100.1 is my address",
                vec![raw(chat("198.51.100.1 is my address"))],
            ),
            (
                "198.51.100.1 8080 alice hi\nmore",
                vec![
                    m("alice", ip, 8080, chat("hi"), S),
                    m("alice", ip, 8080, chat("more"), S),
                ],
            ),
        ]);
    }

    #[test]
    fn bracketed_dialect() {
        use Dialect::Bracketed as B;
        let ip = "198.51.100.1";
        check(&[
            (
                "<198.51.100.1:8080> @ <team>\nhello\nworld\n<end>\n",
                vec![m("team", ip, 8080, chat("hello\nworld"), B)],
            ),
            (
                "<198.51.100.1:8080> @ <team>\r\nhello\r\nworld\r\n<end>\r\n",
                vec![m("team", ip, 8080, chat("hello\nworld"), B)],
            ),
            (
                "<198.51.100.1:8080> @ <the team>\n\n  hello\n\nworld  \n\n<END>",
                vec![m("the team", ip, 8080, chat("  hello\n\nworld"), B)],
            ),
            (
                "<198.51.100.1:8080> @ team\nhi\n<end>",
                vec![m("team", ip, 8080, chat("hi"), B)],
            ),
            (
                "<198.51.100.1:8080> @ <team> first\nsecond\n<end>",
                vec![m("team", ip, 8080, chat("first\nsecond"), B)],
            ),
            // EOF ends an open block.
            (
                "<198.51.100.1:8080> @ <team>\nhello",
                vec![m("team", ip, 8080, chat("hello"), B)],
            ),
            (
                "<198.51.100.1:8080> @ <team>\n<end>",
                vec![m("team", ip, 8080, chat(""), B)],
            ),
            (
                "<198.51.100.1:8080> @ <team>",
                vec![m("team", ip, 8080, chat(""), B)],
            ),
            (
                "<198.51.100.1:8080> @ <team>\nDISCONNECT\n<end>",
                vec![m("team", ip, 8080, Body::Exit, B)],
            ),
            (
                "<198.51.100.1:8080> @ <team>\nplease DISCONNECT me\n<end>",
                vec![m("team", ip, 8080, chat("please DISCONNECT me"), B)],
            ),
            (
                "<198.51.100.1:8080> DISCONNECT",
                vec![m("", ip, 8080, Body::Exit, B)],
            ),
            (
                "<198.51.100.1:8080> disconnect\n",
                vec![m("", ip, 8080, Body::Exit, B)],
            ),
            // The buggy form: the recipient's IP, our port, team and message on one line.
            (
                "<203.0.113.9:8080> team hello there",
                vec![m("team", "203.0.113.9", 8080, chat("hello there"), B)],
            ),
            (
                "<203.0.113.9:8080> team DISCONNECT",
                vec![m("team", "203.0.113.9", 8080, Body::Exit, B)],
            ),
            ("<198.51.100.1:8080>", vec![m("", ip, 8080, chat(""), B)]),
            (
                "<[::1]:8080> @ <team>\nhi\n<end>",
                vec![m("team", "::1", 8080, chat("hi"), B)],
            ),
            // A new header ends a block that forgot `<end>`.
            (
                "<198.51.100.1:8080> @ <team>\nhi\n<198.51.100.1:8080> DISCONNECT",
                vec![
                    m("team", ip, 8080, chat("hi"), B),
                    m("", ip, 8080, Body::Exit, B),
                ],
            ),
            (
                "<198.51.100.1:8080> @ <team>\none\n<end>\n<198.51.100.1:8080> @ <team>\ntwo\n<end>\nafter",
                vec![
                    m("team", ip, 8080, chat("one"), B),
                    m("team", ip, 8080, chat("two"), B),
                    m("team", ip, 8080, chat("after"), B),
                ],
            ),
            (
                "<198.51.100.1:99999> @ <team>\nhi",
                vec![raw(chat("<198.51.100.1:99999> @ <team>")), raw(chat("hi"))],
            ),
            ("<end>", vec![raw(chat("<end>"))]),
            ("<b>bold</b>", vec![raw(chat("<b>bold</b>"))]),
        ]);
    }

    #[test]
    fn key_value_dialect() {
        use Dialect::KeyValue as K;
        check(&[
            (
                "LISTENING_PORT:8080|TEAM_NAME:alpha|hello",
                vec![m("alpha", "", 8080, chat("hello"), K)],
            ),
            (
                "LISTENING_PORT: 8080 | TEAM_NAME: alpha | hello | world |",
                vec![m("alpha", "", 8080, chat("hello | world |"), K)],
            ),
            (
                "listening_port:8080|team_name:alpha|EXIT",
                vec![m("alpha", "", 8080, Body::Exit, K)],
            ),
            (
                "LISTENING_PORT:8080|TEAM_NAME:alpha|exit now",
                vec![m("alpha", "", 8080, chat("exit now"), K)],
            ),
            (
                "LISTENING_PORT:8080|TEAM_NAME:alpha",
                vec![m("alpha", "", 8080, chat(""), K)],
            ),
            (
                "LISTENING_PORT:8080|TEAM_NAME:|hi",
                vec![m("", "", 8080, chat("hi"), K)],
            ),
            (
                "LISTENING_PORT:8080|hello|there",
                vec![m("", "", 8080, chat("hello|there"), K)],
            ),
            ("LISTENING_PORT:8080", vec![m("", "", 8080, chat(""), K)]),
            (
                "LISTENING_PORT:abc|TEAM_NAME:alpha|hi",
                vec![raw(chat("LISTENING_PORT:abc|TEAM_NAME:alpha|hi"))],
            ),
            (
                "LISTENING_PORT:8080|TEAM_NAME:alpha|hi\nand more",
                vec![
                    m("alpha", "", 8080, chat("hi"), K),
                    m("alpha", "", 8080, chat("and more"), K),
                ],
            ),
        ]);
    }

    #[test]
    fn colon_dialect() {
        use Dialect::Colon as C;
        check(&[
            (
                "MESSAGE:bob:8080:hello",
                vec![m("bob", "", 8080, chat("hello"), C)],
            ),
            (
                "MESSAGE:bob:8080:time is 12:30: ok ",
                vec![m("bob", "", 8080, chat("time is 12:30: ok"), C)],
            ),
            // A typed dialect: the text is never a control word.
            (
                "MESSAGE:bob:8080:exit",
                vec![m("bob", "", 8080, chat("exit"), C)],
            ),
            ("MESSAGE:bob:8080", vec![m("bob", "", 8080, chat(""), C)]),
            (
                "CONNECT:bob:8080",
                vec![m("bob", "", 8080, Body::Connect, C)],
            ),
            (
                "ACK:bob:8080\n",
                vec![m("bob", "", 8080, Body::ConnectAck, C)],
            ),
            ("EXIT:8080", vec![m("", "", 8080, Body::Exit, C)]),
            ("EXIT:bob:8080", vec![m("bob", "", 8080, Body::Exit, C)]),
            ("CONNECT:8080", vec![m("", "", 8080, Body::Connect, C)]),
            ("connect: 8080 ", vec![m("", "", 8080, Body::Connect, C)]),
            ("EXIT:bob", vec![raw(chat("EXIT:bob"))]),
            ("EXIT:0", vec![raw(chat("EXIT:0"))]),
            ("MESSAGE:bob:0:hi", vec![raw(chat("MESSAGE:bob:0:hi"))]),
            ("CONNECT", vec![raw(Body::Connect)]),
            ("note: 8080", vec![raw(chat("note: 8080"))]),
            (
                "CONNECT:bob:8080\nhi",
                vec![
                    m("bob", "", 8080, Body::Connect, C),
                    m("bob", "", 8080, chat("hi"), C),
                ],
            ),
        ]);
    }

    #[test]
    fn persistent_dialect() {
        use Dialect::Persistent as P;
        check(&[
            (
                "5000\nCONNECT\nhello\nworld\n",
                vec![
                    m("", "", 5000, Body::Connect, P),
                    m("", "", 5000, chat("hello"), P),
                    m("", "", 5000, chat("world"), P),
                ],
            ),
            (
                "5000\r\nhi\r\n  exit  \r\n",
                vec![
                    m("", "", 5000, chat("hi"), P),
                    m("", "", 5000, Body::Exit, P),
                ],
            ),
            ("\n\n5000\nhi", vec![m("", "", 5000, chat("hi"), P)]),
            // Only a number: someone typed it.
            ("5000", vec![raw(chat("5000"))]),
            ("5000\n", vec![raw(chat("5000"))]),
            ("  5000 \n\n \n", vec![raw(chat("5000"))]),
            ("0\nhi", vec![raw(chat("0")), raw(chat("hi"))]),
            ("70000\nhi", vec![raw(chat("70000")), raw(chat("hi"))]),
            ("hi\n5000", vec![raw(chat("hi")), raw(chat("5000"))]),
            ("5000\n6000", vec![m("", "", 5000, chat("6000"), P)]),
            // A header on a persistent connection: later lines are its sender's.
            (
                "5000\n198.51.100.1:8080 bob hi\nyo",
                vec![
                    m("bob", "198.51.100.1", 8080, chat("hi"), Dialect::Standard),
                    m("bob", "198.51.100.1", 8080, chat("yo"), P),
                ],
            ),
        ]);
    }

    #[test]
    fn json_dialect() {
        use Dialect::Json as J;
        check(&[
            (
                r#"{"type": "message", "content": "hi", "sender_name": "bob", "sender_port": 8080}"#,
                vec![m("bob", "", 8080, chat("hi"), J)],
            ),
            (
                r#"{"type":"connect","content":"","sender_name":"bob","sender_port":"8080"}"#,
                vec![m("bob", "", 8080, Body::Connect, J)],
            ),
            (
                r#"{"type": "EXIT", "sender_port": 8080}"#,
                vec![m("", "", 8080, Body::Exit, J)],
            ),
            (
                r#"{"type": "connect_ack", "sender_port": 8080}"#,
                vec![m("", "", 8080, Body::ConnectAck, J)],
            ),
            (
                r#"{"type": "ack", "sender_port": 8080}"#,
                vec![m("", "", 8080, Body::ConnectAck, J)],
            ),
            // A typed dialect: the content is never a control word.
            (
                r#"{"type": "message", "content": "exit", "sender_port": 8080}"#,
                vec![m("", "", 8080, chat("exit"), J)],
            ),
            (
                r#"{"type": "shout", "content": "HI", "sender_port": 8080}"#,
                vec![m("", "", 8080, chat("HI"), J)],
            ),
            (
                r#"{"content": "two\nlines", "sender_port": 0, "sender_name": ""}"#,
                vec![m("", "", 0, chat("two\nlines"), J)],
            ),
            (
                r#"{"type": "message", "content": 42, "sender_port": 70000}"#,
                vec![m("", "", 0, chat("42"), J)],
            ),
            (
                r#"{"type":"message","content":"a","sender_ip":"198.51.100.7","sender_port":1}"#,
                vec![m("", "198.51.100.7", 1, chat("a"), J)],
            ),
            // Pretty-printed over several lines.
            (
                "{\n  \"type\": \"message\",\n  \"content\": \"hé\",\n\n  \"sender_name\": \"bob\",\n  \"sender_port\": 8080\n}\n",
                vec![m("bob", "", 8080, chat("hé"), J)],
            ),
            (
                "{\r\n\"type\": \"exit\",\r\n\"sender_port\": 8080\r\n}",
                vec![m("", "", 8080, Body::Exit, J)],
            ),
            // Glued objects, and a header-less line after them.
            (
                "{\"type\":\"message\",\"content\":\"a\",\"sender_port\":1}{\"type\":\"exit\",\"sender_port\":1}\nbye",
                vec![
                    m("", "", 1, chat("a"), J),
                    m("", "", 1, Body::Exit, J),
                    m("", "", 1, chat("bye"), J),
                ],
            ),
            // Not JSON after all: plain lines.
            ("{hello", vec![raw(chat("{hello"))]),
            ("{}", vec![raw(chat("{}"))]),
            (r#"{"foo": 1}"#, vec![raw(chat(r#"{"foo": 1}"#))]),
            (
                r#"{"type": "message"} trailing"#,
                vec![raw(chat(r#"{"type": "message"} trailing"#))],
            ),
            ("{", vec![raw(chat("{"))]),
            (
                "{\n\"type\": \"message\",\nbroken here\n}\nafter",
                vec![
                    raw(chat("{")),
                    raw(chat("\"type\": \"message\",")),
                    raw(chat("broken here")),
                    raw(chat("}")),
                    raw(chat("after")),
                ],
            ),
            (
                "{\n198.51.100.1:8080 bob hi",
                vec![
                    raw(chat("{")),
                    m("bob", "198.51.100.1", 8080, chat("hi"), Dialect::Standard),
                ],
            ),
            (
                r#"{"type": "message", "content": "cut"#,
                vec![raw(chat(r#"{"type": "message", "content": "cut"#))],
            ),
        ]);
    }

    #[test]
    fn raw_dialect_and_control_words() {
        check(&[
            ("hello world", vec![raw(chat("hello world"))]),
            ("  indented  ", vec![raw(chat("  indented"))]),
            ("hello\r", vec![raw(chat("hello"))]),
            ("a\0b\x07", vec![raw(chat("a\0b\x07"))]),
            ("", vec![]),
            ("\n\n\r\n  \n\t", vec![]),
            ("one\ntwo", vec![raw(chat("one")), raw(chat("two"))]),
            ("exit", vec![raw(Body::Exit)]),
            ("EXIT\r\n", vec![raw(Body::Exit)]),
            (" Disconnect ", vec![raw(Body::Exit)]),
            ("[peer_quit]", vec![raw(Body::Exit)]),
            ("connect", vec![raw(Body::Connect)]),
            ("CONNECTION_REQUEST", vec![raw(Body::Connect)]),
            ("handshake", vec![raw(Body::Connect)]),
            ("CONNECT_ACK", vec![raw(Body::ConnectAck)]),
            ("ping", vec![raw(chat("ping"))]),
            ("PING", vec![raw(chat("PING"))]),
            ("please exit now", vec![raw(chat("please exit now"))]),
            ("exited", vec![raw(chat("exited"))]),
            ("ACK from 8080", vec![raw(chat("ACK from 8080"))]),
            (
                "Connection Acknowledged",
                vec![raw(chat("Connection Acknowledged"))],
            ),
            ("I will DISCONNECT", vec![raw(chat("I will DISCONNECT"))]),
        ]);
    }

    #[test]
    fn no_piece_of_a_split_message_is_a_bare_control_word() {
        for word in ["exit", "connect", "EXIT", "connect_ack", "[PEER_QUIT]"] {
            for filler in [1000usize, 990, 2000, 2990] {
                let text = format!("{} {word}", "x".repeat(filler));
                for header in [20, 30, 41] {
                    let parts = split_for_wire(&text, header);
                    assert_eq!(parts.concat(), text);
                    for part in &parts {
                        assert!(header + part.len() <= MAX_WIRE_MESSAGE);
                        assert!(control_word(part).is_none(), "{word} {filler} {header}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_long_json_block_over_many_lines_is_one_message() {
        // 60,000 lines that keep the value open (`Nesting` lets the decoder parse once,
        // when the value can be complete, not once per line).
        let mut input = String::from("{\"type\": \"message\", \"content\": [\n");
        for _ in 0..20_000 {
            input.push_str("[],\n1,\n\"]\",\n");
        }
        input.push_str("0], \"sender_port\": 5}\n");
        let mut decoder = Decoder::new(1 << 20);
        let mut out = Vec::new();
        decoder
            .feed(input.as_bytes(), &mut out)
            .expect("within the limit");
        decoder.finish(&mut out);
        assert_eq!(out.len(), 1, "one message");
        assert_eq!(out[0].port, Some(5));
    }

    #[test]
    fn nesting_says_when_json_can_be_complete() {
        let mut n = Nesting::default();
        n.scan(r#"{"a": ["}", "#);
        assert!(
            !n.may_be_complete(),
            "a bracket inside a string does not count"
        );
        n.scan(r#""\"]", 1"#);
        assert!(
            !n.may_be_complete(),
            "an escaped quote does not end the string"
        );
        n.scan("]}");
        assert!(n.may_be_complete());
        let mut broken = Nesting::default();
        broken.scan("}");
        assert!(broken.may_be_complete(), "not JSON: give up at once");
    }

    #[test]
    fn non_string_json_content_is_no_longer_than_its_input() {
        let line = format!("{{\"content\":[{}1e15]}}", "1e15,".repeat(200));
        let msgs = decode(&line);
        let Body::Chat(text) = &msgs[0].body else {
            panic!("{msgs:?}");
        };
        assert!(text.len() <= line.len(), "{} > {}", text.len(), line.len());
    }

    #[test]
    fn utf8_is_decoded_whole_or_replaced() {
        let input = "198.51.100.1:80 a héllo 日本 🎉".as_bytes();
        for cut in 0..=input.len() {
            let out = decode_chunks([&input[..cut], &input[cut..]], LIMIT).expect("fits");
            assert_eq!(
                out,
                vec![m(
                    "a",
                    "198.51.100.1",
                    80,
                    chat("héllo 日本 🎉"),
                    Dialect::Standard
                )]
            );
        }
        let out = decode_chunks([&b"bad \xff\xfe bytes\nok \xe6\x97"[..]], LIMIT).expect("fits");
        assert_eq!(
            out,
            vec![
                raw(chat("bad \u{fffd}\u{fffd} bytes")),
                raw(chat("ok \u{fffd}"))
            ]
        );
    }

    #[test]
    fn empty_connection_yields_nothing() {
        assert_eq!(decode_chunks([], LIMIT).expect("fits"), vec![]);
        assert_eq!(
            decode_chunks([&b""[..], &b""[..]], LIMIT).expect("fits"),
            vec![]
        );
        let mut decoder = Decoder::new(LIMIT);
        let mut out = Vec::new();
        decoder.feed(b"hi", &mut out).expect("fits");
        decoder.finish(&mut out);
        decoder.finish(&mut out);
        assert_eq!(out, vec![raw(chat("hi"))]);
    }

    #[test]
    fn long_lines_are_refused_whatever_the_chunking() {
        let limit = 16;
        let exact = b"0123456789abcdef";
        assert_eq!(
            decode_chunks([&exact[..]], limit).expect("fits"),
            vec![raw(chat("0123456789abcdef"))]
        );
        let too_long = DecodeError::LineTooLong { limit };
        let err = Err(too_long.clone());
        let long = b"0123456789abcdefX\nnext";
        assert_eq!(decode_chunks([&long[..]], limit), err);
        assert_eq!(decode_chunks(long.chunks(1), limit), err);
        assert_eq!(decode_chunks(long.chunks(5), limit), err);
        assert_eq!(decode_chunks([&b"0123456789abcdefX"[..]], limit), err);

        // Lines before the long one are still delivered; then the decoder stays failed.
        let mut decoder = Decoder::new(limit);
        let mut out = Vec::new();
        assert_eq!(
            decoder.feed(b"short\n0123456789abcdefXY", &mut out),
            Err(too_long.clone())
        );
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.feed(b"\nfine\n", &mut out), Err(too_long));
        decoder.finish(&mut out);
        assert_eq!(out, vec![raw(chat("short"))]);
        assert_eq!(
            DecodeError::LineTooLong { limit: 16 }.to_string(),
            "a line longer than 16 bytes without a newline"
        );
    }

    #[test]
    fn blocks_are_bounded() {
        let limit = 32;
        // A bracketed block bigger than the limit arrives in pieces of whole lines.
        let mut input = String::from("<198.51.100.1:80> @ <t>\n");
        for i in 0..20 {
            input.push_str(&format!("line {i}\n"));
        }
        input.push_str("<end>\nafter");
        for chunk in [1, 7, input.len()] {
            let out = decode_chunks(input.as_bytes().chunks(chunk), limit).expect("lines fit");
            let mut lines = Vec::new();
            for msg in &out[..out.len() - 1] {
                assert_eq!((msg.name.as_deref(), msg.port), (Some("t"), Some(80)));
                match &msg.body {
                    Body::Chat(text) => {
                        assert!(text.len() <= limit);
                        lines.extend(text.split('\n').map(str::to_owned));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            let expected: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
            assert_eq!(lines, expected, "chunk size {chunk}");
            assert_eq!(out.last().map(|m| &m.body), Some(&chat("after")));
        }

        // JSON that never completes within the limit is read as plain lines.
        let mut input = String::from("{\n");
        for i in 0..20 {
            input.push_str(&format!("\"k{i}\": {i},\n"));
        }
        for chunk in [1, 5, input.len()] {
            let out = decode_chunks(input.as_bytes().chunks(chunk), limit).expect("lines fit");
            assert_eq!(out.len(), 21, "chunk size {chunk}");
            assert_eq!(out[0], raw(chat("{")));
            assert_eq!(out[20], raw(chat("\"k19\": 19,")));
        }
    }

    #[test]
    fn header_and_encode() {
        let v4: SocketAddr = "198.51.100.5:7000".parse().expect("addr");
        let v6: SocketAddr = "[fe80::1]:7000".parse().expect("addr");
        let cases = [
            (v4, Format::Standard, "198.51.100.5:7000 me "),
            (v4, Format::Spaced, "198.51.100.5 7000 me "),
            (v6, Format::Standard, "[fe80::1]:7000 me "),
            (v6, Format::Spaced, "fe80::1 7000 me "),
        ];
        for (own, format, expected) in cases {
            assert_eq!(header(own, "me", format), expected);
            assert_eq!(encode(own, "me", "hi", format), format!("{expected}hi"));
        }
        assert_eq!(Format::default(), Format::Standard);
    }

    #[test]
    fn split_for_wire_cases() {
        let room = |h: usize| MAX_WIRE_MESSAGE - h;
        assert_eq!(split_for_wire("", 30), vec![""]);
        assert_eq!(split_for_wire("", 5000), vec![""]);
        assert_eq!(split_for_wire("short", 30), vec!["short"]);
        let exact = "x".repeat(room(30));
        assert_eq!(split_for_wire(&exact, 30), vec![exact.as_str()]);

        let long = "x".repeat(room(30) + 1);
        let pieces = split_for_wire(&long, 30);
        assert_eq!(
            pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [room(30), 1]
        );

        // Cut just after the last space near the end of a piece.
        let words = format!("{} tail{}", "a".repeat(room(30) - 10), "b".repeat(50));
        let pieces = split_for_wire(&words, 30);
        assert_eq!(pieces[0], format!("{} ", "a".repeat(room(30) - 10)));
        assert_eq!(pieces.concat(), words);

        // A space too far back is not used.
        let far = format!("a {}", "b".repeat(2000));
        assert_eq!(split_for_wire(&far, 30)[0].len(), room(30));

        // Absurd headers: one character per piece.
        assert_eq!(split_for_wire("日本", 1022), vec!["日", "本"]);
        assert_eq!(split_for_wire("ab", 1024), vec!["a", "b"]);
        assert_eq!(split_for_wire("ab", 9999), vec!["a", "b"]);
        assert_eq!(split_for_wire("abcdef", 1020), vec!["abcd", "ef"]);
    }

    #[test]
    fn split_for_wire_properties() {
        let texts = [
            "é".repeat(3000),
            "日本語".repeat(500),
            "🎉 ".repeat(700),
            format!("{}{}", "x".repeat(1500), "é"),
            "word ".repeat(1000),
        ];
        for text in &texts {
            for header_len in [0, 1, 17, 30, 64, 500, 1000, 1019, 1020] {
                let pieces = split_for_wire(text, header_len);
                assert_eq!(&pieces.concat(), text);
                for piece in &pieces {
                    assert!(!piece.is_empty());
                    assert!(header_len + piece.len() <= MAX_WIRE_MESSAGE);
                }
            }
        }
    }

    #[test]
    fn round_trip_at_every_split_point() {
        let owners: [SocketAddr; 2] = [
            "198.51.100.20:5555".parse().expect("addr"),
            "[2001:db8::7]:65535".parse().expect("addr"),
        ];
        let names = ["alice", "Ünïcödé", "x"];
        let texts = [
            "héllo wörld",
            "日本語のテキスト 🎉",
            "  leading and trailing   ",
            "tab\tinside\r and cr",
            "a\0b",
            "",
            "exit",
            " CONNECT ",
            "exit now",
            "198.51.100.1:80 fake header inside",
            "{\"type\": \"exit\"}",
            "<end>",
            "12345",
        ];
        for own in owners {
            for format in [Format::Standard, Format::Spaced] {
                for name in names {
                    for text in texts {
                        let wire = encode(own, name, text, format);
                        let body = control_word(text)
                            .unwrap_or_else(|| Body::Chat(text.trim_end().to_owned()));
                        let dialect = match format {
                            Format::Standard => Dialect::Standard,
                            Format::Spaced => Dialect::Spaced,
                        };
                        let expected = vec![Message {
                            name: Some(name.to_owned()),
                            claimed_ip: Some(own.ip()),
                            port: Some(own.port()),
                            body,
                            dialect,
                        }];
                        let bytes = wire.as_bytes();
                        for cut in 0..=bytes.len() {
                            let out =
                                decode_chunks([&bytes[..cut], &bytes[cut..]], 2048).expect("fits");
                            assert_eq!(out, expected, "{wire:?} cut at {cut}");
                        }
                        let out = decode_chunks(bytes.chunks(1), 2048).expect("fits");
                        assert_eq!(out, expected, "{wire:?} byte by byte");
                    }
                }
            }
        }
    }

    /// A tiny deterministic generator (xorshift64).
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        // Bytes that matter to some dialect, plus arbitrary ones.
        const ALPHABET: &[&[u8]] = &[
            b"\n",
            b"\r\n",
            b" ",
            b"\t",
            b"{",
            b"}",
            b"\"",
            b"<",
            b">",
            b":",
            b"|",
            b"@",
            b"0",
            b"8080",
            b"99999",
            b"198.51.100.1",
            b"[::1]",
            b"<end>",
            b"exit",
            b"CONNECT",
            b"MESSAGE",
            b"LISTENING_PORT",
            b"TEAM_NAME",
            b"\"type\"",
            b"\"content\"",
            b"\0",
            b"\xc3",
            b"\xa9",
            b"\xff",
            b"\xe6\x97\xa5",
            b"\xf0\x9f",
            b"a",
            b"z",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..2000 {
            let max_line = [8, 32, 100, 1024][round % 4];
            let mut input = Vec::new();
            for _ in 0..rng.below(300) {
                if rng.below(4) == 0 {
                    input.push(rng.next() as u8);
                } else {
                    input.extend_from_slice(ALPHABET[rng.below(ALPHABET.len())]);
                }
            }
            let mut decoder = Decoder::new(max_line);
            let mut out = Vec::new();
            let mut rest = &input[..];
            let mut failed = false;
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(64)));
                rest = tail;
                if decoder.feed(chunk, &mut out).is_err() {
                    failed = true;
                    assert_eq!(decoder.buffered(), 0);
                    assert!(decoder.feed(b"x", &mut out).is_err());
                    break;
                }
                assert!(decoder.buffered() <= max_line, "round {round}");
            }
            decoder.finish(&mut out);
            assert_eq!(decoder.buffered(), 0);
            if !failed {
                // No message holds more than a limit's worth of input (each invalid byte
                // may grow into a 3-byte U+FFFD).
                for msg in &out {
                    if let Body::Chat(text) = &msg.body {
                        assert!(text.len() <= 3 * max_line, "round {round}");
                    }
                }
            }
        }
    }
}
