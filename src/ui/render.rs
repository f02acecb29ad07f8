//! Rendering events: the stable, documented line layout, or JSON Lines.
//!
//! Every event becomes one line (a query becomes a small table; in JSON, one object).
//! Text that came off the network is escaped so that a peer can neither break a line nor
//! send terminal escape codes. Lines are gathered during a loop turn and handed to stdout
//! once. On a terminal, received lines get a timestamp and colour, and the prompt is
//! erased before incoming lines and drawn again after them, so what the user is typing is
//! never mixed into a message line.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::node::commands::{HELP, MENU};
use crate::node::event::{Event, Sender};
use crate::node::history::{Direction, Entry};
use crate::node::peers::Row;
use crate::ui::clock;
use crate::ui::lineedit::{self, View};
use crate::wire::Run;

/// The version of the JSON event schema (the `v` field of every object).
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// How events are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// JSON Lines instead of text.
    pub json: bool,
    /// ANSI colour for names, warnings and hints.
    pub color: bool,
    /// A local `HH:MM:SS` before each received message.
    pub timestamps: bool,
}

const RESET: &str = "\x1b[0m";
const NAME: &str = "\x1b[1;36m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";

/// The longest line start [`Output`] keeps for the next message.
const KEEP_START: usize = 128;

/// Buffer capacity kept between turns; more is given back after a burst.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Renders events into a buffer, taken once per loop turn.
#[derive(Debug)]
pub struct Output {
    buf: String,
    style: Style,
    /// Whether a person is at a terminal (prompts are shown and redrawn).
    interactive: bool,
    /// Whether the prompt is the last thing on the screen.
    prompt_visible: bool,
    /// Whether a message line is its start and its text, nothing else: no JSON, no time,
    /// no prompt to erase first (decided once: the style and the terminal stay).
    bare: bool,
    /// The start of the last message line rendered (`[NAME IP:PORT] `, in the style) and
    /// whom it was for: the next message from the same sender (most often the case: a
    /// peer's messages come one after another) reuses it instead of writing it anew.
    start: String,
    start_for: StartKey,
    /// Where [`Output::show_lines`] puts together the start of its lines (kept).
    lines_start: String,
}

/// Whom [`Output::start`] was rendered for: a [`Sender`], kept in strings that are reused
/// (no allocation when the sender changes).
#[derive(Debug, Default)]
struct StartKey {
    /// `None` while no start is kept.
    ip: Option<IpAddr>,
    port: Option<u16>,
    claimed_ip: Option<IpAddr>,
    named: bool,
    name: String,
}

impl StartKey {
    /// Whether the start was rendered for `from`.
    #[inline(always)]
    fn is(&self, from: &Sender) -> bool {
        self.ip == Some(from.ip)
            && self.port == from.port
            && self.claimed_ip == from.claimed_ip
            && match &from.name {
                Some(name) => self.named && crate::wire::same_text(&self.name, name),
                None => !self.named,
            }
    }

    /// Notes that the start is rendered for `from`.
    fn set(&mut self, from: &Sender) {
        self.ip = Some(from.ip);
        self.port = from.port;
        self.claimed_ip = from.claimed_ip;
        self.named = from.name.is_some();
        self.name.clear();
        self.name.push_str(from.name.as_deref().unwrap_or_default());
    }
}

impl Output {
    /// An output in `style`, for a person at a terminal (`interactive`) or a program.
    pub fn new(style: Style, interactive: bool) -> Self {
        Output {
            buf: String::with_capacity(4096),
            style,
            interactive: interactive && !style.json,
            prompt_visible: false,
            bare: !style.json && !style.timestamps && !interactive,
            start: String::new(),
            start_for: StartKey::default(),
            lines_start: String::new(),
        }
    }

    /// Appends the start of a message line from `from` (see [`Output::start`]).
    #[inline(always)]
    fn message_start(&mut self, from: &Sender) {
        if !self.start_for.is(from) {
            self.start.clear();
            message_start(from, self.style.color, &mut self.start);
            if self.start.len() > KEEP_START {
                // A long name or an IPv6 claim: not worth keeping.
                self.buf.push_str(&self.start);
                self.start = String::new();
                self.start_for.ip = None;
                return;
            }
            self.start_for.set(from);
        }
        self.buf.push_str(&self.start);
    }

    /// Bytes rendered and not yet drained.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Renders `event`; nothing is written until [`Output::drain`].
    pub fn show(&mut self, event: &Event) {
        match event {
            // The usual line, with no look at the style.
            Event::Message { from, text } if self.bare => {
                self.message_start(from);
                push_line(text, &mut self.buf);
            }
            _ => self.show_styled(event),
        }
    }

    /// [`Output::show`] for any event in any style.
    #[inline(never)]
    fn show_styled(&mut self, event: &Event) {
        if self.interactive && self.prompt_visible {
            // Erase the prompt line; it is drawn again after the new lines.
            self.buf.push_str("\r\x1b[K");
            self.prompt_visible = false;
        }
        if self.style.json {
            json_line(event, SystemTime::now(), &mut self.buf);
        } else if let Event::Message { from, text } = event {
            if self.style.timestamps {
                self.timestamp();
            }
            self.message_start(from);
            push_line(text, &mut self.buf);
        } else if self.style.timestamps && dated(event) {
            render_styled(event, self.style, SystemTime::now(), &mut self.buf);
        } else {
            // No timestamp on this line: no clock reading either (the time is unused).
            render_styled(event, self.style, SystemTime::UNIX_EPOCH, &mut self.buf);
        }
    }

    /// Renders one [`Event::Message`] from `from` per line of `lines`, as [`Output::show`]
    /// would each; the start of the line (timestamp, sender) is put together once.
    pub fn show_lines(&mut self, from: &Sender, lines: &Run) {
        if self.style.json {
            let mut event = Event::Message {
                from: from.clone(),
                text: String::new(),
            };
            for line in lines.lines() {
                if let Event::Message { text, .. } = &mut event {
                    text.clear();
                    text.push_str(line);
                }
                self.show(&event);
            }
            return;
        }
        if self.interactive && self.prompt_visible {
            self.buf.push_str("\r\x1b[K");
            self.prompt_visible = false;
        }
        // The timestamp and the sender, once: every line gets a copy.
        let at = self.buf.len();
        if self.style.timestamps {
            self.timestamp();
        }
        self.message_start(from);
        let mut start = std::mem::take(&mut self.lines_start);
        start.clear();
        start.push_str(self.buf.get(at..).unwrap_or_default());
        self.buf.truncate(at);
        let text = lines.text();
        if lines.is_visible() {
            // A run the decoder found visible ASCII has nothing to escape: each line goes
            // out with the `\n` that follows it in the text, one copy (the room is
            // reserved there).
            crate::ui::prefixed::push_prefixed(&mut self.buf, &start, text, lines.ends());
        } else {
            self.buf
                .reserve(text.len() + lines.line_count() * (start.len() + 1));
            for line in lines.lines() {
                self.buf.push_str(&start);
                escape(line, &mut self.buf);
                self.buf.push('\n');
            }
        }
        self.lines_start = start;
    }

    /// The time before a received line, when timestamps are on.
    fn timestamp(&mut self) {
        paint(&mut self.buf, self.style.color, DIM, |o| {
            o.push_str(&clock::local_hms(SystemTime::now()));
        });
        self.buf.push(' ');
    }

    /// The user finished a line. In canonical mode the terminal already moved past the
    /// prompt. When peerchat does the echoing, `echo` holds the prompt and the line: the
    /// edited row (perhaps a scrolled window of a long line) is replaced by the whole
    /// finished line, which the terminal wraps as it likes since it is never redrawn, and
    /// the cursor moves to the next line.
    pub fn line_typed(&mut self, echo: Option<(&str, &str)>) {
        if let Some((prompt, line)) = echo.filter(|_| self.interactive) {
            self.buf.push_str("\r\x1b[K");
            // Escaped as in the edited row: a peer's name goes in the prompt.
            escape(prompt, &mut self.buf);
            escape(line, &mut self.buf);
            self.buf.push('\n');
        }
        self.prompt_visible = false;
    }

    /// The half-typed line changed (or the screen's width did, or the terminal was given
    /// back and taken again): erase the edited row so that it is drawn anew.
    pub fn redraw_prompt(&mut self) {
        if self.interactive && self.prompt_visible {
            self.buf.push_str("\r\x1b[K");
            self.prompt_visible = false;
        }
    }

    /// Ctrl-L: clears the screen; the prompt and the half-typed line are drawn again at the
    /// top by the next [`Output::draw_prompt`].
    pub fn clear_screen(&mut self) {
        if self.interactive {
            self.buf.push_str("\x1b[H\x1b[2J");
            self.prompt_visible = false;
        }
    }

    /// Text that is not an event (log records from this process): printed above the prompt
    /// like an event, as it is (it is our own).
    pub fn show_text(&mut self, text: &str) {
        if self.interactive && self.prompt_visible {
            self.buf.push_str("\r\x1b[K");
            self.prompt_visible = false;
        }
        self.buf.push_str(text);
    }

    /// Gives back the memory of a burst of output (the loop's buffers go back to their
    /// idle size after a burst): the buffer, when empty, keeps `KEEP_CAPACITY` at most.
    pub fn give_back(&mut self) {
        if self.buf.is_empty() {
            self.buf.shrink_to(KEEP_CAPACITY);
        }
    }

    /// Drops what is rendered and not drained, and the buffer's memory: stdout is gone.
    pub fn discard(&mut self) {
        self.buf = String::new();
    }

    /// Whether the buffer is larger than it is kept between turns (a burst left it so).
    pub fn holds_burst(&self) -> bool {
        self.buf.capacity() > KEEP_CAPACITY
    }

    /// Whether [`Output::draw_prompt`] would draw: a person is at a terminal and the
    /// edited row is not on the screen.
    pub fn wants_prompt(&self) -> bool {
        self.interactive && !self.prompt_visible
    }

    /// Appends the edited row (the prompt and the visible part of the half-typed line, see
    /// [`lineedit::layout`]) when a person is at a terminal and it is not on the screen
    /// already.
    pub fn draw_prompt(&mut self, view: &View) {
        if self.wants_prompt() {
            lineedit::draw(view, &mut self.buf);
            self.prompt_visible = true;
        }
    }

    /// Hands what was rendered this turn to `sink`, if anything, and returns what `sink`
    /// returns; then starts afresh.
    /// `sink` gets the buffer itself: it may write from it where it is, or take it and
    /// leave another in its place (stdout swaps it in when it cannot write it all at once,
    /// instead of copying a turn's output: a stream of 64 KiB lines, 611 against 430 MB/s,
    /// user CPU halved). Whatever `sink` leaves in it is dropped.
    pub fn drain<R>(&mut self, sink: impl FnOnce(&mut String) -> R) -> Option<R> {
        if self.buf.is_empty() {
            return None;
        }
        let small = self.buf.len() <= KEEP_CAPACITY / 2;
        let result = sink(&mut self.buf);
        self.buf.clear();
        // A burst of output leaves a big buffer behind: given back once output is small
        // again (not after every turn of a stream, which would regrow it).
        if small && self.buf.capacity() > KEEP_CAPACITY {
            self.buf.shrink_to(KEEP_CAPACITY);
        }
        Some(result)
    }
}

/// Appends the documented plain rendering of `event` to `out` (`\n`-ended lines): no
/// colour, no time, network text escaped.
pub fn render(event: &Event, out: &mut String) {
    render_styled(event, Style::default(), SystemTime::now(), out);
}

fn paint(out: &mut String, on: bool, color: &str, text: impl FnOnce(&mut String)) {
    if on {
        out.push_str(color);
    }
    text(out);
    if on {
        out.push_str(RESET);
    }
}

/// Whether a line is dated when timestamps are on: what happened (messages, sends,
/// notices, warnings), not the tables, help, hints and framing lines.
fn dated(event: &Event) -> bool {
    !matches!(
        event,
        Event::Listening { .. }
            | Event::PeerJoined { .. }
            | Event::Peers(_)
            | Event::History(_)
            | Event::Help
            | Event::Menu
            | Event::Hint(_)
            | Event::Bye
    )
}

fn render_styled(event: &Event, style: Style, now: SystemTime, out: &mut String) {
    let color = style.color;
    if style.timestamps && dated(event) {
        paint(out, color, DIM, |o| o.push_str(&clock::local_hms(now)));
        out.push(' ');
    }
    // Writing into a String cannot fail.
    let _ = match event {
        Event::Listening { addr, name } => writeln!(out, "listening on {addr} as {name}"),
        Event::Message { from, text } => {
            message_start(from, color, out);
            escape(text, out);
            // Not `writeln!`: the formatting machinery for one newline shows in profiles.
            out.push('\n');
            Ok(())
        }
        Event::ConnectFrom { from, answering } => {
            out.push_str("* connect from ");
            sender(from, color, out);
            if *answering {
                writeln!(out, " (answering with connect_ack)")
            } else if from.port.is_none() {
                writeln!(out, " (no listening port given, cannot answer)")
            } else {
                writeln!(
                    out,
                    " (not answered: too many connects from it, or too many peers at its address)"
                )
            }
        }
        Event::ConnectAck { from } => {
            out.push_str("* connect_ack from ");
            sender(from, color, out);
            writeln!(out)
        }
        Event::PeerJoined { .. } => Ok(()),
        Event::PeerLeft { addr, name, reason } => {
            out.push_str("* ");
            push_name(name.as_deref(), out);
            writeln!(out, " {addr} left ({})", reason.as_str())
        }
        Event::PeerUnreachable {
            addr,
            name,
            failures,
        } => {
            out.push_str("* ");
            push_name(name.as_deref(), out);
            writeln!(
                out,
                " {addr} is not answering ({failures} checks failed in a row)"
            )
        }
        Event::PeerBack { addr, name } => {
            out.push_str("* ");
            push_name(name.as_deref(), out);
            writeln!(out, " {addr} answers again")
        }
        Event::Sent { dest, text, reply } => {
            let _ = write!(out, "* sent to {dest}: ");
            escape(text, out);
            if let Some(reply) = reply {
                out.push_str(" (it answered: ");
                escape(reply, out);
                out.push(')');
            }
            writeln!(out)
        }
        Event::SendFailed { dest, text, reason } => {
            paint(out, color, RED, |o| {
                let _ = write!(o, "! could not send to {dest}: {reason} (message: ");
                escape(text, o);
                o.push(')');
            });
            writeln!(out)
        }
        Event::Split { dest, parts } => writeln!(
            out,
            "* message to {dest} split into {parts} parts (receivers read at most 1024 bytes)"
        ),
        Event::Peers(rows) => {
            table(rows, out);
            Ok(())
        }
        Event::History(entries) => {
            if entries.is_empty() {
                out.push_str("no messages yet\n");
            }
            for e in entries {
                out.push_str(&clock::local_datetime(e.millis));
                match e.direction {
                    Direction::In => {
                        out.push_str("  [");
                        push_name(e.name.as_deref(), out);
                        match e.addr {
                            Some(addr) => {
                                let _ = write!(out, " {addr}] ");
                            }
                            None => out.push_str(" ?] "),
                        }
                    }
                    Direction::Out => match e.addr {
                        Some(addr) => {
                            let _ = write!(out, "  -> {addr}: ");
                        }
                        None => out.push_str("  -> ?: "),
                    },
                }
                escape(&e.text, out);
                out.push('\n');
            }
            Ok(())
        }
        Event::Help => writeln!(out, "{HELP}"),
        Event::Menu => writeln!(out, "{MENU}"),
        // Notices may quote what a peer sent (a name, an address): escaped like messages.
        Event::Hint(hint) => {
            paint(out, color, YELLOW, |o| {
                o.push_str("? ");
                escape(hint, o);
            });
            writeln!(out)
        }
        Event::Warning(text) => {
            paint(out, color, RED, |o| {
                o.push_str("! ");
                escape(text, o);
            });
            writeln!(out)
        }
        Event::Info(text) => {
            out.push_str("* ");
            escape(text, out);
            writeln!(out)
        }
        Event::Bye => writeln!(out, "* bye"),
    };
}

/// Appends `event` as one JSON object and a newline (the schema is in the README).
pub fn json_line(event: &Event, now: SystemTime, out: &mut String) {
    let ts = clock::rfc3339(clock::unix_millis(now));
    let peer = |from: &Sender| {
        json!({
            "name": from.name,
            "addr": from.addr().map(|a| a.to_string()),
            "observed_ip": from.ip.to_string(),
            "claimed_ip": from.claimed_ip.map(|ip| ip.to_string()),
        })
    };
    let (kind, mut fields) = match event {
        Event::Listening { addr, name } => {
            ("listening", json!({"addr": addr.to_string(), "name": name}))
        }
        Event::Message { from, text } => ("message", with(peer(from), "text", json!(text))),
        Event::ConnectFrom { from, answering } => {
            ("connect", with(peer(from), "answering", json!(answering)))
        }
        Event::ConnectAck { from } => ("connect_ack", peer(from)),
        Event::PeerJoined { addr, name } => (
            "peer_joined",
            json!({"addr": addr.to_string(), "name": name}),
        ),
        Event::PeerLeft { addr, name, reason } => (
            "peer_left",
            json!({"addr": addr.to_string(), "name": name, "reason": reason.as_str()}),
        ),
        Event::PeerUnreachable {
            addr,
            name,
            failures,
        } => (
            "peer_unreachable",
            json!({"addr": addr.to_string(), "name": name, "failures": failures}),
        ),
        Event::PeerBack { addr, name } => {
            ("peer_back", json!({"addr": addr.to_string(), "name": name}))
        }
        Event::Sent { dest, text, reply } => (
            "sent",
            json!({"addr": dest.to_string(), "text": text, "reply": reply}),
        ),
        Event::SendFailed { dest, text, reason } => (
            "send_failed",
            json!({"addr": dest.to_string(), "text": text, "reason": reason}),
        ),
        Event::Split { dest, parts } => {
            ("split", json!({"addr": dest.to_string(), "parts": parts}))
        }
        Event::Peers(rows) => (
            "peers",
            json!({"peers": rows.iter().map(row_json).collect::<Vec<_>>()}),
        ),
        Event::History(entries) => (
            "history",
            json!({"entries": entries.iter().map(entry_json).collect::<Vec<_>>()}),
        ),
        Event::Help => ("help", json!({"text": HELP})),
        Event::Menu => ("menu", json!({"text": MENU})),
        Event::Hint(text) => ("hint", json!({"message": text})),
        Event::Warning(text) => ("error", json!({"message": text})),
        Event::Info(text) => ("info", json!({"message": text})),
        Event::Bye => ("bye", json!({})),
    };
    if let Value::Object(map) = &mut fields {
        map.insert("v".into(), json!(JSON_SCHEMA_VERSION));
        map.insert("event".into(), json!(kind));
        map.insert("ts".into(), json!(ts));
    }
    out.push_str(&fields.to_string());
    out.push('\n');
}

fn with(mut value: Value, key: &str, extra: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.insert(key.into(), extra);
    }
    value
}

fn row_json(r: &Row) -> Value {
    json!({
        "addr": r.addr.to_string(),
        "name": r.name,
        "status": r.status.as_str(),
        "source": r.source.as_str(),
        "dialect": r.dialect.map(|d| d.as_str()),
        "messages": r.messages,
        "last_heard_secs": r.last_heard.map(|d| d.as_secs()),
        "claimed_ip": r.claimed_ip.map(|ip| ip.to_string()),
    })
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "ts": clock::rfc3339(e.millis),
        "direction": e.direction.as_str(),
        "addr": e.addr.map(|a| a.to_string()),
        "name": e.name,
        "text": e.text,
    })
}

/// `NAME IP:PORT`, `?` for what is unknown, plus `(claims IP)` when the header lied.
fn sender(from: &Sender, color: bool, out: &mut String) {
    paint(out, color, NAME, |o| push_name(from.name.as_deref(), o));
    let mut addr = Ascii::default();
    addr.byte(b' ');
    match from.ip {
        IpAddr::V4(ip) => addr.ipv4(ip),
        IpAddr::V6(_) => {
            addr.push_to(out);
            addr = Ascii::default();
            push_ip(from.ip, out);
        }
    }
    addr.byte(b':');
    match from.port {
        Some(port) => addr.number(u32::from(port)),
        None => addr.byte(b'?'),
    }
    addr.push_to(out);
    if let Some(claimed) = from.claimed_ip {
        push_claims(claimed, out);
    }
}

/// ` (claims IP)`, as `write!(out, " (claims {claimed})")` writes it (an IPv6 address
/// without brackets), with IPv4 written by hand: the formatting machinery cost more than
/// the rest of the line.
fn push_claims(claimed: IpAddr, out: &mut String) {
    match claimed {
        IpAddr::V4(ip) => {
            let mut note = Ascii::default();
            note.bytes(b" (claims ");
            note.ipv4(ip);
            note.byte(b')');
            note.push_to(out);
        }
        IpAddr::V6(ip) => {
            let _ = write!(out, " (claims {ip})");
        }
    }
}

/// `[NAME IP:PORT] ` as `[`, [`sender`] and `] ` write it without colour, put together
/// on the stack and appended at once, for the usual sender: a plain ASCII name of at most
/// [`PREFIX_NAME`] bytes, IPv4, no claimed IP. Returns false, writing nothing, otherwise.
/// `[NAME IP:PORT] `, what a message line starts with (after its timestamp).
fn message_start(from: &Sender, color: bool, out: &mut String) {
    if color || !message_prefix(from, out) {
        out.push('[');
        sender(from, color, out);
        out.push_str("] ");
    }
}

fn message_prefix(from: &Sender, out: &mut String) -> bool {
    let (Some(name), IpAddr::V4(ip), None) = (from.name.as_deref(), from.ip, from.claimed_ip)
    else {
        return false;
    };
    if name.len() > PREFIX_NAME || name.is_empty() || name == "?" || !name.is_ascii() {
        return false;
    }
    if !is_plain(name) {
        return false;
    }
    // At most 1 + 24 + 1 + 15 + 1 + 5 + 2 = 49 bytes: within the buffer.
    let mut line = Ascii::default();
    line.byte(b'[');
    line.bytes(name.as_bytes());
    line.byte(b' ');
    line.ipv4(ip);
    line.byte(b':');
    match from.port {
        Some(port) => line.number(u32::from(port)),
        None => line.byte(b'?'),
    }
    line.bytes(b"] ");
    line.push_to(out);
    true
}

/// The longest name [`message_prefix`] takes.
const PREFIX_NAME: usize = 24;

/// `IP` for IPv4, `[IP]` for IPv6.
fn push_ip(ip: IpAddr, out: &mut String) {
    match ip {
        // The common case, without the formatting machinery (it shows in profiles).
        IpAddr::V4(ip) => {
            let mut text = Ascii::default();
            text.ipv4(ip);
            text.push_to(out);
        }
        IpAddr::V6(ip) => {
            let _ = write!(out, "[{ip}]");
        }
    }
}

/// Appends the decimal digits of `n`.
#[cfg(test)]
fn push_number(n: u32, out: &mut String) {
    let mut text = Ascii::default();
    text.number(n);
    text.push_to(out);
}

/// The decimal digits of every octet, and how many there are: looked up rather than
/// divided out, four times per address.
const OCTETS: [([u8; 3], u8); 256] = {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut n = 0;
    while n < 256 {
        let (h, t, u) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = if n >= 100 {
            ([b'0' + h, b'0' + t, b'0' + u], 3)
        } else if n >= 10 {
            ([b'0' + t, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        n += 1;
    }
    table
};

/// A few ASCII bytes put together on the stack and appended to a string at once: a
/// `String::push` per digit cost more than the digits.
struct Ascii {
    buf: [u8; 64],
    len: usize,
}

impl Default for Ascii {
    fn default() -> Self {
        Ascii {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Ascii {
    /// Appends an ASCII byte (its high bit cleared, so that the buffer is always ASCII;
    /// dropped if full: the callers stay far below the size).
    fn byte(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b & 0x7f;
            self.len += 1;
        }
    }

    /// Appends ASCII bytes, each as [`Ascii::byte`] does (dropped past the end), with
    /// one bounds check for all of them.
    fn bytes(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(room) => {
                for (slot, &b) in room.iter_mut().zip(bytes) {
                    debug_assert!(b.is_ascii());
                    *slot = b & 0x7f;
                }
                self.len += bytes.len();
            }
            None => bytes.iter().for_each(|&b| self.byte(b)),
        }
    }

    fn ipv4(&mut self, ip: std::net::Ipv4Addr) {
        // Put together in a local buffer at fixed bounds (each octet's three table bytes
        // and a dot; the last dot is not counted), then appended at once.
        let mut text = [0u8; 16];
        let mut len = 0;
        for octet in ip.octets() {
            let (digits, n) = OCTETS[usize::from(octet)];
            // `len` is at most 12 here: three octets of at most three digits, and dots.
            if let Some(room) = text.get_mut(len..len + 4) {
                room.copy_from_slice(&[digits[0], digits[1], digits[2], b'.']);
                room[usize::from(n)] = b'.';
            }
            len += usize::from(n) + 1;
        }
        self.bytes(&text[..len - 1]);
    }

    fn number(&mut self, n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.bytes(&digits[i..]);
    }

    /// Appends what was put together.
    fn push_to(&self, out: &mut String) {
        let ascii = &self.buf[..self.len.min(self.buf.len())];
        // SAFETY: every byte up to `len` was written by `byte`, which clears the high
        // bit, or by `octet`, from the digits of `OCTETS`: ASCII, hence valid UTF-8.
        // (`str::from_utf8` cost as much as writing the digits.)
        out.push_str(unsafe { std::str::from_utf8_unchecked(ascii) });
    }
}

/// Copies `text`, escaping control characters (a newline shows as `\n`) and the invisible
/// ones that could make a line lie about itself: bidi controls, zero-width characters,
/// line and paragraph separators (`\u{202e}`).
pub fn escape(text: &str, out: &mut String) {
    // Fast path, the usual case: no byte that could start a control character (C0, DEL,
    // or C1, whose UTF-8 encodings all start with 0xC2) or an invisible one (their
    // encodings start with 0xD8, 0xE1, 0xE2, 0xE3 or 0xEF); anything else takes the careful
    // path below.
    if !needs_care(text.as_bytes()) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\t' => out.push('\t'),
            c if c.is_control() || invisible(c) => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.push(c),
        }
    }
}

/// Appends `text`, escaped as [`escape`] does, and a newline. A short line of visible
/// ASCII, the usual chat line, is told as such in place
/// ([`crate::wire::visible_ascii_short`]) and copied.
#[inline(always)]
fn push_line(text: &str, out: &mut String) {
    if crate::wire::visible_ascii_short(text.as_bytes()) == Some(true) {
        out.push_str(text);
    } else {
        escape(text, out);
    }
    out.push('\n');
}

/// Whether `bytes` hold one that may start a control or invisible character: C0, DEL, or
/// C1, whose UTF-8 encodings all start with 0xC2, or an invisible one (their encodings
/// start with 0xD8, 0xE1, 0xE2, 0xE3 or 0xEF).
///
/// First the quick test a run's lines get too ([`crate::wire::visible_ascii`], vectorised,
/// or a few words for a line of up to 32 bytes): only a line that is not all visible ASCII
/// has its bytes looked at one by one. Long lines cost a fraction of an instruction per byte, short ones
/// a few.
fn needs_care(bytes: &[u8]) -> bool {
    !crate::wire::visible_ascii::<false>(bytes) && bytes.iter().any(|&b| care(b))
}

/// Whether `b` may start a control or invisible character (see [`needs_care`]).
fn care(b: u8) -> bool {
    b < 0x20 || matches!(b, 0x7f | 0xc2 | 0xd8 | 0xe1 | 0xe2 | 0xe3 | 0xef)
}

/// Characters that change how a line looks without showing themselves, and the Hangul
/// fillers, which show as blank space that is not whitespace (a name made of them looks
/// empty).
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{feff}'
        | '\u{ffa0}')
}

/// A peer's name as it is shown: bare when it is one plain word, otherwise in double
/// quotes with `"` and `\` escaped (and control and invisible characters, as in
/// [`escape`]), so that no name can pass for the address or the text after it; `?` when
/// the peer gave none.
fn push_name(name: Option<&str>, out: &mut String) {
    let Some(name) = name else {
        out.push('?');
        return;
    };
    let plain = !name.is_empty() && name != "?" && is_plain(name);
    if plain {
        out.push_str(name);
        return;
    }
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || invisible(c) => {
                let _ = write!(out, "{}", c.escape_default());
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether every character of a name can be shown bare: no whitespace, control or
/// invisible character, no bracket, quote or backslash.
fn is_plain(name: &str) -> bool {
    if name.is_ascii() {
        // Fast path with the same answer: an ASCII character passes exactly when it is
        // graphic (not a space, not a control) and none of the four.
        return name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'[' | b']' | b'"' | b'\\'));
    }
    is_plain_slow(name)
}

/// [`is_plain`] for any text, a character at a time.
fn is_plain_slow(name: &str) -> bool {
    name.chars().all(|c| {
        !c.is_whitespace()
            && !c.is_control()
            && !invisible(c)
            && !matches!(c, '[' | ']' | '"' | '\\')
    })
}

fn table(rows: &[Row], out: &mut String) {
    if rows.is_empty() {
        out.push_str("no peers known yet\n");
        return;
    }
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let mut name = String::new();
            push_name(r.name.as_deref(), &mut name);
            [
                r.addr.to_string(),
                name,
                r.status.as_str().to_owned(),
                r.source.as_str().to_owned(),
                r.dialect.map_or("-", |d| d.as_str()).to_owned(),
                r.messages.to_string(),
                r.last_heard.map_or_else(|| "-".to_owned(), ago),
                r.claimed_ip
                    .map_or_else(String::new, |ip| format!("claims {ip}")),
            ]
        })
        .collect();
    let header = [
        "ADDRESS",
        "NAME",
        "STATUS",
        "SOURCE",
        "DIALECT",
        "MSGS",
        "LAST-HEARD",
        "NOTE",
    ];
    // Columns are lined up by the width a terminal gives each cell (`世` takes two columns,
    // a combining accent none), measured as the line editor measures the edited row.
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(lineedit::display_width(cell));
        }
    }
    let line = |cols: [&str; 8], out: &mut String| {
        let mut s = String::new();
        for (i, (cell, w)) in cols.iter().zip(widths).enumerate() {
            s.push_str(cell);
            if i + 1 < cols.len() {
                let pad = w.saturating_sub(lineedit::display_width(cell)) + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header, out);
    for row in &cells {
        line(row.each_ref().map(String::as_str), out);
    }
}

/// A short age: `5s ago`, `3m ago`, `2h ago`, `4d ago`.
fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::peers::{Source, Status};

    fn view(prompt: &str, text: &str, cursor: usize) -> View {
        lineedit::layout(prompt, text, cursor, 80)
    }

    #[test]
    fn ctrl_l_clears_and_log_text_goes_above_the_prompt() {
        let mut out = Output::new(Style::default(), true);
        let mut screen = Vec::new();
        out.draw_prompt(&view("> ", "ab", 2));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        out.show_text("[DEBUG x] y\n");
        out.clear_screen();
        out.draw_prompt(&view("> ", "ab", 2));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        assert_eq!(
            String::from_utf8_lossy(&screen),
            "\r> ab\x1b[0K\r\x1b[4C\r\x1b[K[DEBUG x] y\n\x1b[H\x1b[2J\r> ab\x1b[0K\r\x1b[4C"
        );
    }

    /// The hand-written number, address and claimed-IP writers, and the ASCII test of
    /// names, against the formatting machinery and the character-by-character test, over
    /// many random values.
    #[test]
    fn fast_writers_agree_with_the_slow_ones() {
        let mut rng = crate::sim::rng::Rng::new(21);
        let mut numbers: Vec<u32> = (0..300).chain([9999, 10000, 65535, u32::MAX]).collect();
        numbers.extend((0..20_000).map(|_| rng.next_u64() as u32 >> rng.index(32)));
        for n in numbers {
            let mut s = String::from("x");
            push_number(n, &mut s);
            assert_eq!(s, format!("x{n}"));
        }
        for _ in 0..20_000 {
            let bits = rng.next_u64();
            let v4 = IpAddr::from(std::net::Ipv4Addr::from(bits as u32 >> (8 * rng.index(4))));
            let v6 = IpAddr::from(std::net::Ipv6Addr::from(
                u128::from(bits) << (16 * rng.index(7)),
            ));
            for ip in [v4, v6] {
                let mut s = String::new();
                push_ip(ip, &mut s);
                let expected = match ip {
                    IpAddr::V4(ip) => ip.to_string(),
                    IpAddr::V6(ip) => format!("[{ip}]"),
                };
                assert_eq!(s, expected);
                let mut s = String::new();
                push_claims(ip, &mut s);
                assert_eq!(s, format!(" (claims {ip})"));
            }
        }
        const PIECES: &[&str] = &[
            "a", "Z", "0", "-", "_", " ", "\t", "\u{7f}", "\u{1}", "[", "]", "\"", "\\", "?",
            "\u{e9}", "\u{a0}", "\u{202e}", "\u{200b}", "\u{85}", "~", "!", "\u{1c}",
        ];
        for _ in 0..50_000 {
            let name: String = (0..rng.index(6))
                .map(|_| PIECES[rng.index(PIECES.len())])
                .collect();
            assert_eq!(is_plain(&name), is_plain_slow(&name), "{name:?}");
        }
        for b in 0u8..=0x7f {
            let name = char::from(b).to_string();
            assert_eq!(is_plain(&name), is_plain_slow(&name), "{b:#x}");
        }
    }

    fn line(event: &Event) -> String {
        let mut s = String::new();
        render(event, &mut s);
        s
    }

    fn from(name: Option<&str>, port: Option<u16>, claimed: Option<&str>) -> Sender {
        Sender {
            name: name.map(Into::into),
            ip: "127.0.0.2".parse().expect("ip"),
            port,
            claimed_ip: claimed.map(|c| c.parse().expect("ip")),
        }
    }

    /// The stack-built `[NAME IP:PORT] ` writes what `[`, `sender` and `] ` write, and
    /// takes every usual sender; IPv4 text is what `Display` writes.
    #[test]
    fn the_message_prefix_fast_path_writes_what_sender_writes() {
        let mut rng = crate::sim::rng::Rng::new(21);
        let names = [
            "a",
            "cg",
            "alice",
            "?",
            "",
            "bob smith",
            "x]",
            "[x",
            "q\"",
            "b\\",
            "\u{e9}t\u{e9}",
            "tab\there",
            "\u{202e}rtl",
            "exactly_twenty_four_byte",
            "twenty_five_bytes_long_xx",
            "0123456789012345678901234567890123456789",
            "a\nb",
            "~!@#$%^&*()_+",
        ];
        let octets = [0u8, 1, 9, 10, 71, 99, 100, 127, 199, 200, 255];
        for _ in 0..200_000 {
            let ip: IpAddr = match rng.index(8) {
                0 => "::1".parse().expect("ip"),
                _ => IpAddr::from([0; 4].map(|_: u8| octets[rng.index(octets.len())])),
            };
            let claimed_ip = match rng.index(4) {
                0 => Some(IpAddr::from([10, 0, 0, octets[rng.index(octets.len())]])),
                1 => Some("fe80::2".parse().expect("ip")),
                _ => None,
            };
            let port = match rng.index(6) {
                0 => None,
                1 => Some(65535),
                2 => Some(1),
                _ => Some(u16::try_from(rng.index(65535) + 1).expect("port")),
            };
            let name = match rng.index(10) {
                0 => None,
                _ => Some(names[rng.index(names.len())].to_owned()),
            };
            let from = Sender {
                name,
                ip,
                port,
                claimed_ip,
            };
            let mut slow = String::from("x");
            slow.push('[');
            sender(&from, false, &mut slow);
            slow.push_str("] ");
            let mut fast = String::from("x");
            let took = message_prefix(&from, &mut fast);
            let usual = from.claimed_ip.is_none()
                && ip.is_ipv4()
                && from.name.as_deref().is_some_and(|n| {
                    !n.is_empty()
                        && n != "?"
                        && n.len() <= PREFIX_NAME
                        && n.is_ascii()
                        && is_plain(n)
                });
            assert_eq!(took, usual, "{from:?}");
            if took {
                assert_eq!(fast, slow, "{from:?}");
            } else {
                assert_eq!(fast, "x", "{from:?}");
            }
            if let IpAddr::V4(v4) = ip {
                let mut text = Ascii::default();
                text.ipv4(v4);
                let mut shown = String::new();
                text.push_to(&mut shown);
                assert_eq!(shown, v4.to_string());
            }
        }
    }

    #[test]
    fn message_layout_is_stable() {
        let cases = [
            (
                from(Some("alice"), Some(5001), None),
                "hi",
                "[alice 127.0.0.2:5001] hi\n",
            ),
            (from(None, None, None), "raw", "[? 127.0.0.2:?] raw\n"),
            (
                from(Some("bob"), Some(7), Some("127.0.1.1")),
                "a\nb\x1b[31m",
                "[bob 127.0.0.2:7 (claims 127.0.1.1)] a\\nb\\u{1b}[31m\n",
            ),
        ];
        for (from, text, want) in cases {
            assert_eq!(
                line(&Event::Message {
                    from,
                    text: text.into()
                }),
                want
            );
        }
    }

    #[test]
    fn a_name_that_could_pass_for_more_is_quoted_everywhere_it_is_shown() {
        let liar = "bob 127.0.0.3:33393] 127.0.0.9:7778";
        let got = line(&Event::Message {
            from: from(Some(liar), Some(7), None),
            text: "wire the money".into(),
        });
        assert_eq!(
            got,
            "[\"bob 127.0.0.3:33393] 127.0.0.9:7778\" 127.0.0.2:7] wire the money\n"
        );
        let cases = [
            ("plain-name_1", "plain-name_1"),
            ("", "\"\""),
            ("?", "\"?\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("tab\there", "\"tab\\there\""),
            ("\u{202e}evil", "\"\\u{202e}evil\""),
            ("zero\u{200b}width", "\"zero\\u{200b}width\""),
            ("日本語", "日本語"),
        ];
        for (name, want) in cases {
            let mut got = String::new();
            push_name(Some(name), &mut got);
            assert_eq!(got, want, "name {name:?}");
        }
        let left = line(&Event::PeerLeft {
            addr: "127.0.0.3:7".parse().expect("addr"),
            name: Some("a b".into()),
            reason: crate::node::event::LeaveReason::Exit,
        });
        assert_eq!(left, "* \"a b\" 127.0.0.3:7 left (exit)\n");
        let mut rows = String::new();
        table(
            &[Row {
                addr: "127.0.0.3:7".parse().expect("addr"),
                name: Some("x]y".into()),
                status: Status::Active,
                source: Source::Heard,
                messages: 1,
                last_heard: None,
                claimed_ip: None,
                dialect: None,
            }],
            &mut rows,
        );
        assert!(rows.contains("\"x]y\""), "{rows}");
    }

    /// The line start kept from one message to the next is the one of its sender: senders
    /// that differ in one field only, one after another, each get their own.
    #[test]
    fn a_kept_line_start_is_only_reused_for_the_same_sender() {
        let base = Sender {
            name: Some("bob".into()),
            ip: "127.0.0.3".parse().unwrap(),
            port: Some(5002),
            claimed_ip: None,
        };
        let senders = [
            base.clone(),
            Sender {
                name: Some("bob2".into()),
                ..base.clone()
            },
            Sender {
                name: None,
                ..base.clone()
            },
            Sender {
                name: Some(String::new()),
                ..base.clone()
            },
            Sender {
                port: None,
                ..base.clone()
            },
            Sender {
                port: Some(5003),
                ..base.clone()
            },
            Sender {
                ip: "127.0.0.4".parse().unwrap(),
                ..base.clone()
            },
            Sender {
                claimed_ip: Some("198.51.100.7".parse().unwrap()),
                ..base.clone()
            },
            Sender {
                name: Some("x".repeat(200)),
                ..base.clone()
            },
            Sender {
                ip: "::1".parse().unwrap(),
                ..base.clone()
            },
        ];
        for color in [false, true] {
            let style = Style {
                color,
                ..Style::default()
            };
            let mut out = Output::new(style, false);
            let mut expected = String::new();
            for (i, from) in senders.iter().chain(senders.iter().rev()).enumerate() {
                for _ in 0..2 {
                    let event = Event::Message {
                        from: from.clone(),
                        text: format!("m{i}"),
                    };
                    out.show(&event);
                    render_styled(&event, style, SystemTime::UNIX_EPOCH, &mut expected);
                }
                // Visible runs of one line and more, and one with a byte to escape.
                for text in ["a\nb", "one", "a\nbb\nccc", "bell\u{7}\nb"] {
                    out.show_lines(from, &Run::from(text));
                    for line in text.split('\n') {
                        let event = Event::Message {
                            from: from.clone(),
                            text: line.into(),
                        };
                        render_styled(&event, style, SystemTime::UNIX_EPOCH, &mut expected);
                    }
                }
            }
            assert_eq!(out.buf, expected);
        }
    }

    #[test]
    fn the_vectorised_care_test_agrees_with_the_byte_by_byte_one() {
        let slow = |bytes: &[u8]| {
            bytes.iter().any(|&b| {
                b < 0x20 || b == 0x7f || matches!(b, 0xc2 | 0xd8 | 0xe1 | 0xe2 | 0xe3 | 0xef)
            })
        };
        let mut rng = crate::sim::rng::Rng::new(7);
        for _ in 0..20_000 {
            let len = rng.index(100);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.index(4) {
                    0 => rng.next_u64() as u8,
                    _ => b'a' + rng.index(26) as u8,
                })
                .collect();
            assert_eq!(needs_care(&bytes), slow(&bytes), "{bytes:?}");
        }
        for at in 0..70 {
            let mut bytes = vec![b'x'; 70];
            bytes[at] = 0xe2;
            assert!(needs_care(&bytes), "at {at}");
        }
    }

    /// Every byte value at every position of every length up to 66 (two blocks and a
    /// remainder; up to 17 among spaces too), and the bytes at the edges of both tests at every position of every
    /// length up to 200, among the highest visible byte (`~`, where the quick test's bound
    /// lies). (Every byte at every position up to 200, among `~` and among spaces, was
    /// checked once: 47 s unoptimised.)
    #[test]
    fn the_care_test_agrees_with_care_for_every_byte_at_every_position() {
        const EDGES: [u8; 16] = [
            0x00, 0x09, 0x1f, 0x20, 0x5e, 0x5f, 0x7e, 0x7f, 0x80, 0xc1, 0xc2, 0xd8, 0xe1, 0xe2,
            0xef, 0xff,
        ];
        let all: Vec<u8> = (0..=u8::MAX).collect();
        for len in 0..200 {
            // Short lines are tested word by word: among spaces too (the lowest visible
            // byte, where the word test's other bound lies).
            let among: &[u8] = if len <= 17 { b"~ " } else { b"~" };
            for &fill in among {
                let mut bytes = vec![fill; len];
                assert!(!needs_care(&bytes), "{len}");
                for at in 0..len {
                    let values = if len <= 66 { &all[..] } else { &EDGES[..] };
                    for &b in values {
                        bytes[at] = b;
                        assert_eq!(needs_care(&bytes), care(b), "{b:#x} at {at} of {len}");
                    }
                    bytes[at] = fill;
                }
            }
        }
    }

    /// A message shown by the bare path is what the styled path shows, in every style
    /// and at a terminal (where the prompt is erased first); with timestamps, JSON or a
    /// terminal, messages take the styled path.
    #[test]
    fn bare_messages_are_shown_as_the_styled_path_shows_them() {
        let senders = [
            from(Some("cg"), Some(9), None),
            from(Some("al ice"), None, Some("198.18.0.1")),
            from(None, Some(65535), None),
        ];
        for (json, color, timestamps, interactive) in (0..16).map(|bits| {
            let bit = |i: u32| bits & (1 << i) != 0;
            (bit(0), bit(1), bit(2), bit(3))
        }) {
            let style = Style {
                json,
                color,
                timestamps,
            };
            let (mut bare, mut styled) = (
                Output::new(style, interactive),
                Output::new(style, interactive),
            );
            assert_eq!(bare.bare, !json && !timestamps && !interactive);
            if timestamps || json {
                // The time (now) is in the line: only the path is checked.
                continue;
            }
            for (i, from) in senders.iter().cycle().take(7).enumerate() {
                for out in [&mut bare, &mut styled] {
                    out.draw_prompt(&view("> ", "ab", 2));
                }
                let event = Event::Message {
                    from: from.clone(),
                    text: ["m00001", "", "tab\tbell\u{7}", "x".repeat(40).as_str()][i % 4].into(),
                };
                bare.show(&event);
                styled.show_styled(&event);
            }
            assert_eq!(bare.buf, styled.buf, "{style:?} {interactive}");
        }
    }

    /// A short line told as visible ASCII in place ([`crate::wire::visible_ascii_short`],
    /// tested against a byte-by-byte test in `wire`) is shown as the careful path shows it.
    #[test]
    fn a_short_line_is_shown_as_the_careful_path_shows_it() {
        for text in [
            "",
            "a",
            "ab",
            "abc",
            "a\u{7}",
            "\u{e9}t\u{e9}",
            "tab\there",
            "m00001",
        ] {
            let (mut fast, mut careful) = (String::new(), String::new());
            push_line(text, &mut fast);
            escape(text, &mut careful);
            careful.push('\n');
            assert_eq!(fast, careful, "{text:?}");
        }
    }

    /// A turn of a stream that renders more than the kept capacity keeps its buffer for
    /// the next turn: it is given back only once output is small again, not regrown every
    /// turn.
    #[test]
    fn a_large_turn_keeps_its_buffer_and_a_small_one_gives_it_back() {
        let mut out = Output::new(Style::default(), false);
        let sink = |_: &mut String| {};
        let long = "x".repeat(100);
        for _ in 0..400 {
            out.show(&Event::Info(long.clone()));
        }
        out.drain(sink);
        assert!(out.buf.capacity() > KEEP_CAPACITY, "{}", out.buf.capacity());
        out.show(&Event::Info(long.clone()));
        out.drain(sink);
        assert!(
            out.buf.capacity() <= KEEP_CAPACITY,
            "{}",
            out.buf.capacity()
        );
    }

    /// A name of Hangul fillers looks empty (or like spaces) but is no whitespace: it is
    /// quoted, and each filler escaped, so that it cannot pass for no name at all.
    #[test]
    fn a_name_of_hangul_fillers_is_quoted_and_escaped() {
        for filler in ['\u{3164}', '\u{115f}', '\u{1160}', '\u{ffa0}'] {
            let mut got = String::new();
            push_name(Some(&format!("{filler}{filler}")), &mut got);
            let one = filler.escape_default().to_string();
            assert_eq!(got, format!("\"{one}{one}\""), "{filler:?}");
        }
    }

    #[test]
    fn invisible_characters_are_escaped_in_text() {
        for c in [
            '\u{202e}', '\u{2066}', '\u{200b}', '\u{200d}', '\u{2028}', '\u{2029}', '\u{feff}',
            '\u{061c}', '\u{3164}', '\u{115f}', '\u{1160}', '\u{ffa0}',
        ] {
            let mut got = String::new();
            escape(&format!("a{c}b"), &mut got);
            assert_eq!(got, format!("a{}b", c.escape_default()), "{:?}", c);
        }
        let mut plain = String::new();
        escape("caf\u{e9} \u{2014} \u{2019}ok", &mut plain);
        assert_eq!(
            plain, "caf\u{e9} \u{2014} \u{2019}ok",
            "visible characters stay"
        );
    }

    #[test]
    fn escaping_catches_every_control_character() {
        for c in (0u32..0x200).filter_map(char::from_u32) {
            let mut s = String::new();
            escape(&format!("a{c}b"), &mut s);
            let escaped = c.is_control() && c != '\t';
            assert_eq!(
                s.chars().count() > 3,
                escaped,
                "U+{:04X} gave {s:?}",
                c as u32
            );
        }
    }

    #[test]
    fn notices_cannot_carry_escape_codes() {
        let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}EVIL";
        for event in [
            Event::Warning(format!("{evil} at 127.0.0.2 said exit")),
            Event::Hint(evil.into()),
            Event::Info(evil.into()),
        ] {
            let text = line(&event);
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}'),
                "{text:?}"
            );
        }
    }

    #[test]
    fn ipv6_sender_is_bracketed() {
        let mut f = from(Some("six"), Some(9), None);
        f.ip = "::1".parse().expect("ip");
        assert_eq!(
            line(&Event::Message {
                from: f,
                text: "x".into()
            }),
            "[six [::1]:9] x\n"
        );
    }

    #[test]
    fn query_is_an_aligned_table() {
        assert_eq!(line(&Event::Peers(vec![])), "no peers known yet\n");
        let rows = vec![
            Row {
                addr: "127.0.0.3:5002".parse().expect("addr"),
                name: Some("bob".into()),
                status: Status::Active,
                source: Source::Heard,
                messages: 12,
                last_heard: Some(Duration::from_secs(75)),
                claimed_ip: None,
                dialect: Some(crate::wire::Dialect::Bracketed),
            },
            Row {
                addr: "127.0.0.4:6000".parse().expect("addr"),
                name: None,
                status: Status::Unreachable,
                source: Source::Sent,
                messages: 0,
                last_heard: None,
                claimed_ip: Some("127.0.1.1".parse().expect("ip")),
                dialect: None,
            },
        ];
        let text = line(&Event::Peers(rows));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ADDRESS"));
        assert!(lines[1].starts_with("127.0.0.3:5002  bob "));
        assert!(lines[1].contains("active") && lines[1].contains("1m ago"));
        assert!(lines[0].contains("DIALECT") && lines[1].contains(" bracketed "));
        assert!(lines[2].ends_with("claims 127.0.1.1"));
        let col = |l: &str| {
            l.find("STATUS")
                .or_else(|| l.find("active"))
                .or_else(|| l.find("unreachable"))
        };
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
    }

    /// A row of the table for `name` at `addr`, with nothing else to tell.
    fn named_row(addr: &str, name: &str) -> Row {
        Row {
            addr: addr.parse().expect("addr"),
            name: Some(name.into()),
            status: Status::Active,
            source: Source::Heard,
            messages: 1,
            last_heard: Some(Duration::from_secs(5)),
            claimed_ip: None,
            dialect: None,
        }
    }

    /// Where `word` starts on `line`, in columns as a terminal shows them.
    fn column_of(line: &str, word: &str) -> Option<usize> {
        line.find(word)
            .map(|at| lineedit::display_width(&line[..at]))
    }

    #[test]
    fn the_table_of_ascii_names_is_unchanged() {
        let rows = vec![
            named_row("127.0.0.3:5002", "bob"),
            named_row("127.0.0.4:6000", "a-much-longer-name"),
        ];
        assert_eq!(
            line(&Event::Peers(rows)),
            "ADDRESS         NAME                STATUS  SOURCE  DIALECT  MSGS  LAST-HEARD  NOTE\n\
             127.0.0.3:5002  bob                 active  heard   -        1     5s ago\n\
             127.0.0.4:6000  a-much-longer-name  active  heard   -        1     5s ago\n"
        );
    }

    /// Wide characters take two columns, a combining accent none, an emoji two: every row's
    /// columns start where the header's do, as a terminal shows them.
    #[test]
    fn the_table_lines_up_wide_and_combining_characters() {
        let names = [
            "bob".to_owned(),
            "世界".to_owned(),
            "世".repeat(21),
            "e\u{301}e".to_owned(),
            "😀x".to_owned(),
            "a\u{200b}b".to_owned(),
            "ｆｕｌｌ".to_owned(),
        ];
        let rows: Vec<Row> = names
            .iter()
            .enumerate()
            .map(|(i, n)| named_row(&format!("127.0.0.{}:5000", i + 2), n))
            .collect();
        let text = line(&Event::Peers(rows));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), names.len() + 1, "{text}");
        let status = column_of(lines[0], "STATUS");
        let heard = column_of(lines[0], "LAST-HEARD");
        assert!(status.is_some() && heard.is_some(), "{text}");
        for l in &lines[1..] {
            assert_eq!(column_of(l, "active"), status, "{text}");
            assert_eq!(column_of(l, "5s ago"), heard, "{text}");
        }
        // The NAME column is as wide as its widest name (21 wide characters) and two spaces.
        assert_eq!(status, column_of(lines[0], "NAME").map(|c| c + 42 + 2));
    }

    #[test]
    fn prompt_is_erased_and_redrawn_around_incoming_lines() {
        let mut out = Output::new(Style::default(), true);
        let mut screen = Vec::new();
        out.draw_prompt(&view("> ", "", 0));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        out.show(&Event::Info("news".into()));
        out.draw_prompt(&view("> ", "hallo", 3));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        assert_eq!(
            String::from_utf8_lossy(&screen),
            "\r> \x1b[0K\r\x1b[2C\r\x1b[K* news\n\r> hallo\x1b[0K\r\x1b[5C"
        );
    }

    #[test]
    fn a_finished_line_stays_on_the_screen() {
        let mut out = Output::new(Style::default(), true);
        let mut screen = Vec::new();
        out.draw_prompt(&view("> ", "/pee", 4));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        // The last keys and Enter came in one read: a redraw, then the line.
        out.redraw_prompt();
        out.line_typed(Some(("> ", "/peers")));
        out.show(&Event::Info("listed".into()));
        out.draw_prompt(&view("> ", "", 0));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        assert_eq!(
            String::from_utf8_lossy(&screen),
            "\r> /pee\x1b[0K\r\x1b[6C\r\x1b[K\r\x1b[K> /peers\n* listed\n\r> \x1b[0K\r\x1b[2C"
        );
    }

    /// A peer's name can hold a control character (a JSON `sender_name`), and `/query`
    /// puts it in the prompt: the finished line shows it escaped, as the edited row did.
    #[test]
    fn a_finished_line_shows_the_prompt_escaped() {
        let mut out = Output::new(Style::default(), true);
        let mut screen = Vec::new();
        let prompt = "\x1b[2Jx> ";
        out.draw_prompt(&view(prompt, "hi", 2));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        out.line_typed(Some((prompt, "hi")));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        let screen = String::from_utf8_lossy(&screen);
        assert!(!screen.contains("\x1b[2J"), "{screen:?}");
        assert_eq!(screen.matches("\\u{1b}[2Jx> hi").count(), 2, "{screen:?}");
    }

    #[test]
    fn scripts_get_no_prompt_and_no_escape_codes() {
        let mut out = Output::new(Style::default(), false);
        let mut screen = Vec::new();
        out.show(&Event::Warning("careful".into()));
        out.show(&Event::Bye);
        out.draw_prompt(&view("> ", "", 0));
        out.drain(|b| screen.extend_from_slice(b.as_bytes()));
        assert_eq!(screen, b"! careful\n* bye\n");
    }

    #[test]
    fn terminal_style_adds_colour_and_time() {
        let style = Style {
            json: false,
            color: true,
            timestamps: true,
        };
        let mut s = String::new();
        let event = Event::Message {
            from: from(Some("alice"), Some(1), None),
            text: "hi".into(),
        };
        render_styled(&event, style, SystemTime::now(), &mut s);
        assert!(s.contains("\x1b[1;36malice\x1b[0m"), "{s:?}");
        assert!(s.ends_with("] hi\n"));
        assert_eq!(s.as_bytes()[DIM.len() + 2], b':', "{s:?}");
        // Every notice is dated too; tables and hints are not.
        let plain = Style {
            color: false,
            ..style
        };
        let stamped = |event: &Event| {
            let mut s = String::new();
            render_styled(event, plain, SystemTime::now(), &mut s);
            s.as_bytes().get(2) == Some(&b':') && s.as_bytes().get(5) == Some(&b':')
        };
        let dest = "127.0.0.3:7".parse().expect("addr");
        let sent = Event::Sent {
            dest,
            text: "x".into(),
            reply: None,
        };
        assert!(stamped(&sent));
        assert!(stamped(&Event::Warning("w".into())));
        assert!(stamped(&Event::Info("i".into())));
        assert!(!stamped(&Event::Peers(vec![])));
        assert!(!stamped(&Event::Hint("h".into())));
        assert!(!stamped(&Event::Bye));
    }

    #[test]
    fn json_lines_carry_event_version_and_fields() {
        let mut s = String::new();
        let event = Event::Message {
            from: from(Some("alice"), Some(5001), Some("127.0.1.1")),
            text: "h\u{e9}\n\"q\"".into(),
        };
        json_line(&event, SystemTime::UNIX_EPOCH, &mut s);
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(v["event"], "message");
        assert_eq!(v["v"], JSON_SCHEMA_VERSION);
        assert_eq!(v["addr"], "127.0.0.2:5001");
        assert_eq!(v["observed_ip"], "127.0.0.2");
        assert_eq!(v["claimed_ip"], "127.0.1.1");
        assert_eq!(v["text"], "h\u{e9}\n\"q\"");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
    }
}
