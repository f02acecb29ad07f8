//! What we send: our message in the dialect its receiver speaks (the one we last decoded
//! from it, else `--format`), and splitting long messages for receivers that read a single
//! 1024-byte `recv`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{control_word, Body, Dialect, MAX_WIRE_MESSAGE};

/// The header forms we can send in (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `IP:PORT NAME MESSAGE` (IPv6: `[IP]:PORT NAME MESSAGE`).
    #[default]
    Standard,
    /// `IP PORT NAME MESSAGE`.
    Spaced,
}

impl Format {
    /// The dialect this format stands for: what a peer never heard is sent.
    pub fn dialect(self) -> Dialect {
        match self {
            Format::Standard => Dialect::Standard,
            Format::Spaced => Dialect::Spaced,
        }
    }
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

/// Our own header, described once: what [`OwnHeader::encode`] puts before every message we
/// send, and what [`OwnHeader::budget`] reserves for it when a long message is split.
///
/// ```
/// use peerchat::wire::{Format, OwnHeader};
///
/// let me = OwnHeader { name: "alice".into(), format: Format::Standard, port: 5001, claim: None };
/// let local = "127.0.0.2".parse().unwrap();
/// assert_eq!(me.encode(local, "hi"), b"127.0.0.2:5001 alice hi");
/// // Unknown IP: room for the longest IPv4 address.
/// assert_eq!(me.budget("127.0.0.9:7000".parse().unwrap()), "255.255.255.255:5001 alice ".len());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnHeader {
    /// The name in every header.
    pub name: String,
    /// The header form.
    pub format: Format,
    /// Our listening port.
    pub port: u16,
    /// The IP we claim when known in advance (`--advertise`, or a specific `--bind`).
    /// Otherwise, and on a connection of the other address family, we claim the
    /// connection's local address, which is exactly what the receiver sees.
    pub claim: Option<IpAddr>,
}

impl OwnHeader {
    /// The bytes of one message to send, in our default form (`--format`), on a connection
    /// whose local address is `local`.
    pub fn encode(&self, local: IpAddr, text: &str) -> Vec<u8> {
        self.encode_in(self.format.dialect(), local, text)
    }

    /// The bytes of one message to send in `dialect` on a connection whose local address is
    /// `local`: each control word in that dialect's own words (docs/PROTOCOL.md, section 2).
    ///
    /// ```
    /// use peerchat::wire::{Dialect, Format, OwnHeader};
    ///
    /// let me = OwnHeader { name: "al".into(), format: Format::Standard, port: 5001, claim: None };
    /// let local = "127.0.0.2".parse().unwrap();
    /// let says = |d, text| String::from_utf8(me.encode_in(d, local, text)).unwrap();
    /// assert_eq!(says(Dialect::Bracketed, "hi"), "<127.0.0.2:5001> @ <al>\nhi\n<end>");
    /// assert_eq!(says(Dialect::Bracketed, "exit"), "<127.0.0.2:5001> DISCONNECT");
    /// assert_eq!(says(Dialect::Colon, "connect"), "CONNECT:al:5001");
    /// assert_eq!(says(Dialect::Persistent, "hi"), "5001\nhi\n");
    /// ```
    pub fn encode_in(&self, dialect: Dialect, local: IpAddr, text: &str) -> Vec<u8> {
        let local = local.to_canonical();
        let ip = self.claim.filter(|ip| ip.is_ipv4() == local.is_ipv4());
        let ip = ip.unwrap_or(local);
        let mut out = Vec::with_capacity(text.len() + 64);
        write_in(
            dialect,
            SocketAddr::new(ip, self.port),
            &self.name,
            text,
            &mut out,
        );
        out
    }

    /// The longest header we might put before a message to `dest`: exact when the claimed
    /// IP is known and of `dest`'s family (a connection to `dest` leaves from that family),
    /// otherwise sized for the longest address of `dest`'s family.
    pub fn budget(&self, dest: SocketAddr) -> usize {
        self.budget_in(self.format.dialect(), dest)
    }

    /// Like [`OwnHeader::budget`], for a message in `dialect`: every byte it adds around
    /// the text (a header, a trailer, or JSON's quoting of plain text).
    pub fn budget_in(&self, dialect: Dialect, dest: SocketAddr) -> usize {
        let known = self.claim.filter(|ip| ip.is_ipv4() == dest.is_ipv4());
        let ip = known.unwrap_or(match dest {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        });
        let mut out = Vec::new();
        write_in(
            dialect,
            SocketAddr::new(ip, self.port),
            &self.name,
            "",
            &mut out,
        );
        out.len()
    }
}

/// Appends `text` from `own` called `name`, in `dialect`, to `out`.
fn write_in(dialect: Dialect, own: SocketAddr, name: &str, text: &str, out: &mut Vec<u8>) {
    let (ip, port) = (own.ip(), own.port());
    let word = control_word(text);
    // Writing into a Vec cannot fail.
    let _ = match (dialect, word) {
        (Dialect::Spaced, _) => write!(out, "{ip} {port} {name} {text}"),
        (Dialect::Bracketed, Some(Body::Exit)) => write!(out, "<{own}> DISCONNECT"),
        (Dialect::Bracketed, _) => write!(out, "<{own}> @ <{name}>\n{text}\n<end>"),
        (Dialect::KeyValue, _) => write!(out, "LISTENING_PORT:{port}|TEAM_NAME:{name}|{text}"),
        (Dialect::Colon, Some(Body::Connect)) => write!(out, "CONNECT:{name}:{port}"),
        (Dialect::Colon, Some(Body::ConnectAck)) => write!(out, "ACK:{name}:{port}"),
        (Dialect::Colon, Some(Body::Exit)) => write!(out, "EXIT:{port}"),
        (Dialect::Colon, _) => write!(out, "MESSAGE:{name}:{port}:{text}"),
        (Dialect::Persistent, Some(Body::Connect)) => write!(out, "{port}\nCONNECT\n"),
        (Dialect::Persistent, Some(Body::Exit)) => write!(out, "{port}\nEXIT\n"),
        (Dialect::Persistent, _) => write!(out, "{port}\n{text}\n"),
        (Dialect::Json, word) => {
            let kind = match word {
                Some(Body::Connect) => "connect",
                Some(Body::ConnectAck) => "connect_ack",
                Some(Body::Exit) => "exit",
                _ => "message",
            };
            let value = serde_json::json!({
                "type": kind,
                "content": if word.is_some() { "" } else { text },
                "sender_name": name,
                "sender_port": port,
            });
            serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::from)
        }
        (Dialect::Standard | Dialect::Raw, _) => match ip {
            IpAddr::V4(v4) => write!(out, "{v4}:{port} {name} {text}"),
            IpAddr::V6(v6) => write!(out, "[{v6}]:{port} {name} {text}"),
        },
    };
}

/// Like [`split_for_wire`], for a message sent in `dialect`: JSON escapes quotes,
/// backslashes and control characters in the text (up to six bytes for one), so a piece
/// whose escaped form would not fit is split again, at its own rate of escaping, until
/// every piece's wire form fits in [`MAX_WIRE_MESSAGE`].
pub fn split_in(dialect: Dialect, text: &str, header_len: usize) -> Vec<&str> {
    if dialect != Dialect::Json {
        return split_for_wire(text, header_len);
    }
    let room = MAX_WIRE_MESSAGE.saturating_sub(header_len);
    let mut pieces = Vec::new();
    split_escaped(text, room, room, &mut pieces);
    pieces
}

/// Splits `text` into pieces of at most `raw` bytes, and again any whose escaped form is
/// longer than `room`.
fn split_escaped<'a>(text: &'a str, room: usize, raw: usize, out: &mut Vec<&'a str>) {
    for piece in split_for_wire(text, MAX_WIRE_MESSAGE - raw) {
        // serde_json's escaping, without the two quotes around the string.
        let escaped = serde_json::to_string(piece).map_or(piece.len(), |s| s.len() - 2);
        if escaped <= room || piece.chars().nth(1).is_none() {
            out.push(piece);
        } else {
            // Fewer raw bytes than the piece holds: each sub-piece is shorter, so this ends.
            let raw = room * piece.len() / escaped;
            split_escaped(piece, room, raw, out);
        }
    }
}

/// How far back from a piece's end [`split_for_wire`] looks for a space to cut before.
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
/// `budget` bytes in, just before the last space in the final [`SPACE_WINDOW`] bytes if
/// any; at least one character. The space then leads the next piece, where receivers keep
/// it (they trim a message's end, not the spacing after its header).
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
        Some(i) if low + i > 0 => low + i,
        _ => cut,
    }
}
