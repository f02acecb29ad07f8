//! The line parsers of the header dialects: standard, spaced, bracketed, key/value, colon.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::decoder::{Identity, Spares};
use super::{control_word, control_word_trimmed, may_be_control_word, Body, Dialect, Message};

/// The body of a message text: a control word, or chat with trailing whitespace trimmed.
#[inline(always)]
pub(super) fn body_of(text: &str, spares: &mut Spares) -> Body {
    control_word(text).unwrap_or_else(|| Body::Chat(spares.string(trim_end(text))))
}

/// `str::trim`, with the usual case first: text that starts and ends with a visible ASCII
/// character has nothing to trim (Unicode whitespace is either ASCII or starts with a
/// byte of 0x80 or more), so the character-by-character search is skipped.
pub(super) fn trim(s: &str) -> &str {
    match s.as_bytes() {
        [first, .., last] if visible_ascii(*first) && visible_ascii(*last) => s,
        [only] if visible_ascii(*only) => s,
        _ => s.trim(),
    }
}

/// `str::trim_end`, with the same shortcut as [`trim`].
pub(super) fn trim_end(s: &str) -> &str {
    match s.as_bytes().last() {
        Some(&last) if visible_ascii(last) => s,
        _ => s.trim_end(),
    }
}

/// Whether a line starting with `b` (with no whitespace before it) could be anything but
/// header-less text: the start of an address (a decimal or hexadecimal digit, `[` or `:`
/// of IPv6), of JSON (`{`), of a bracketed header (`<`), or of a keyword (`LISTENING_PORT`,
/// `MESSAGE`, `CONNECT`; `ACK` and `EXIT` start with hexadecimal digits already). Control
/// words are told by their whole text, not here. Lines for which this is false are read
/// as text without trying each dialect.
#[inline]
pub(super) fn may_open_header(b: u8) -> bool {
    OPENS_HEADER[usize::from(b)]
}

/// [`may_open_header`] for every byte, worked out once.
static OPENS_HEADER: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = !c.is_ascii_graphic()
            || c.is_ascii_hexdigit()
            || matches!(
                c.to_ascii_lowercase(),
                b'{' | b'<' | b'[' | b':' | b'l' | b'm' | b'c'
            );
        b += 1;
    }
    table
};

fn visible_ascii(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// Below this length a plain loop finds a byte sooner than memchr's vectorised search
/// gets going (one-message connections are short; streamed lines may be long).
const SHORT: usize = 64;

/// Where `byte` first is in `hay`.
pub(super) fn find_byte(hay: &[u8], byte: u8) -> Option<usize> {
    match hay.len() < SHORT {
        true => hay.iter().position(|&b| b == byte),
        false => memchr::memchr(byte, hay),
    }
}

/// Whether `b` is all ASCII and, with `NO_NEWLINE`, holds no `\n`. A short slice is read
/// 8 bytes at a time, the last 8 overlapping the ones before when its length is not a
/// multiple of 8 (the standard check goes byte by byte there); a long one is left to the
/// standard check and memchr.
#[inline]
pub(super) fn plain_ascii<const NO_NEWLINE: bool>(b: &[u8]) -> bool {
    if b.len() >= SHORT {
        return b.is_ascii() && !(NO_NEWLINE && memchr::memchr(b'\n', b).is_some());
    }
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    // Nonzero when a byte of `w` is not ASCII (its high bit is set) or, with NO_NEWLINE,
    // is `\n`: the word xor `\n` repeated has a zero byte then, which the classic test
    // finds (a byte's high bit survives only when subtracting one from the byte borrows,
    // and only a zero byte starts a borrow).
    let flags = |w: u64| {
        let mut found = w & HIGH;
        if NO_NEWLINE {
            let x = w ^ NEWLINES;
            found |= x.wrapping_sub(ONES) & !x & HIGH;
        }
        found
    };
    let (words, rest) = b.as_chunks::<8>();
    let mut found = words
        .iter()
        .fold(0, |acc, w| acc | flags(u64::from_ne_bytes(*w)));
    if !rest.is_empty() {
        found |= match b.last_chunk::<8>() {
            Some(last) => flags(u64::from_ne_bytes(*last)),
            // Shorter than a word: a byte at a time (as a word whose other bytes are 0).
            None => rest.iter().fold(0, |acc, &c| acc | flags(u64::from(c))),
        };
    }
    found == 0
}

/// Where a separator (space or tab) first is in `hay`.
fn find_sep(hay: &[u8]) -> Option<usize> {
    match hay.len() < SHORT {
        true => hay.iter().position(|&b| b == b' ' || b == b'\t'),
        false => memchr::memchr2(b' ', b'\t', hay),
    }
}

/// `s.split_once(byte)` for an ASCII byte.
fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    // An ASCII byte is a whole character: both sides are on character boundaries.
    let i = find_byte(s.as_bytes(), byte)?;
    Some((&s[..i], &s[i + 1..]))
}

/// Skips the separators between header fields: spaces and tabs.
pub(super) fn skip_seps(s: &str) -> &str {
    // Separators are single ASCII bytes: skipped bytewise, the same as by character.
    let n = s.bytes().take_while(|&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// The token at the start of `s` and what follows exactly one separator after it.
pub(super) fn token(s: &str) -> (&str, &str) {
    // On a long header-less line the whole line is searched: `find_sep` uses memchr then.
    match find_sep(s.as_bytes()) {
        // Separators are one byte long.
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// A listening port: ASCII digits only, `1..=65535` (no sign, no spaces). Used for
/// headers and for what the user types alike.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() {
        return None;
    }
    // By hand rather than `str::parse` (it shows in profiles); the same answers, tested
    // against it: leading zeros are fine, overflow is not a port.
    let mut port: u32 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        port = port * 10 + u32::from(b - b'0');
        if port > u32::from(u16::MAX) {
            return None;
        }
    }
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// A dotted-quad IPv4 address, exactly as `str::parse::<Ipv4Addr>` reads it (four
/// decimal octets of one to three digits, no leading zero, none above 255), by hand: the
/// standard parser is general and shows in profiles.
pub(super) fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    match ipv4_prefix(s.as_bytes())? {
        (ip, len) if len == s.len() => Some(ip),
        _ => None,
    }
}

/// The dotted-quad address at the start of `b` (see [`parse_ipv4`]) and its length.
#[inline(always)]
pub(super) fn ipv4_prefix(b: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let (a, i) = octet_at(b, 0)?;
    let (o2, i) = octet_at(b, dot_at(b, i)?)?;
    let (o3, i) = octet_at(b, dot_at(b, i)?)?;
    let (o4, i) = octet_at(b, dot_at(b, i)?)?;
    Some((Ipv4Addr::new(a, o2, o3, o4), i))
}

/// [`ipv4_prefix`] of the first 16 bytes of a line, with no bounds checks to pay for: an
/// octet is read from at most three bytes and starts at most four bytes after the one
/// before (three digits and a `.`), so the fourth starts at index 12 or before and no byte
/// past index 14 is read. The same answers as [`ipv4_prefix`] (tested).
#[inline(always)]
pub(super) fn ipv4_window(w: &[u8; 16]) -> Option<(Ipv4Addr, usize)> {
    let (o1, i) = window_octet(w, 0)?;
    let (o2, i) = window_octet(w, window_dot(w, i)?)?;
    let (o3, i) = window_octet(w, window_dot(w, i)?)?;
    let (o4, i) = window_octet(w, window_dot(w, i)?)?;
    Some((Ipv4Addr::new(o1, o2, o3, o4), i))
}

/// [`octet_at`] in a window; `i` is under 13 (see [`ipv4_window`]).
#[inline(always)]
fn window_octet(w: &[u8; 16], i: usize) -> Option<(u8, usize)> {
    // Every index is under 16: the mask only tells the compiler so.
    let digit = |i: usize| w[i & 15].wrapping_sub(b'0');
    let d0 = digit(i);
    if d0 > 9 {
        return None;
    }
    let d1 = digit(i + 1);
    if d1 > 9 {
        return Some((d0, i + 1));
    }
    if d0 == 0 {
        return None; // a leading zero
    }
    let d2 = digit(i + 2);
    if d2 > 9 {
        return Some((d0 * 10 + d1, i + 2));
    }
    let value = u32::from(d0) * 100 + u32::from(d1) * 10 + u32::from(d2);
    Some((u8::try_from(value).ok()?, i + 3))
}

/// [`dot_at`] in a window; `i` is under 12 (see [`ipv4_window`]).
#[inline(always)]
fn window_dot(w: &[u8; 16], i: usize) -> Option<usize> {
    (w[i & 15] == b'.').then_some(i + 1)
}

/// The index after the `.` at `i`.
#[inline(always)]
fn dot_at(b: &[u8], i: usize) -> Option<usize> {
    (b.get(i) == Some(&b'.')).then_some(i + 1)
}

/// The value of an ASCII digit.
#[inline(always)]
fn digit(b: Option<&u8>) -> Option<u8> {
    b.map(|d| d.wrapping_sub(b'0')).filter(|&d| d < 10)
}

/// The octet at `i` (one to three digits, no leading zero, at most 255) and the index
/// after it; the digits are read unrolled (a loop with its bounds cost more than the
/// rest of the header).
#[inline(always)]
fn octet_at(b: &[u8], i: usize) -> Option<(u8, usize)> {
    let d0 = digit(b.get(i))?;
    let Some(d1) = digit(b.get(i + 1)) else {
        return Some((d0, i + 1));
    };
    if d0 == 0 {
        return None;
    }
    let Some(d2) = digit(b.get(i + 2)) else {
        return Some((d0 * 10 + d1, i + 2));
    };
    let value = u32::from(d0) * 100 + u32::from(d1) * 10 + u32::from(d2);
    Some((u8::try_from(value).ok()?, i + 3))
}

/// An IP address, IPv6 optionally in brackets.
pub(super) fn parse_ip(s: &str) -> Option<IpAddr> {
    // No address is written longer (`[` + 45 characters of IPv6 with an IPv4 tail + `]`):
    // a header-less line is not handed to the address parsers whole.
    if s.len() > MAX_IP_TEXT {
        return None;
    }
    match s.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => s.parse().ok(),
    }
}

/// The longest text [`parse_ip`] can accept.
const MAX_IP_TEXT: usize = 47;

/// Whether `s` starts with `word`, ignoring ASCII case.
fn starts_with_word(s: &str, word: &str) -> bool {
    s.as_bytes()
        .get(..word.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(word.as_bytes()))
}

/// `IPv4:PORT` or `[IPv6]:PORT`.
pub(super) fn parse_sockaddr(s: &str) -> Option<(IpAddr, u16)> {
    if !s.starts_with('[') {
        // IPv4, in one pass: an address cannot hold a `:`, so the first one must be the
        // last (if another follows, the port is not digits and both ways fail).
        let (ip, len) = ipv4_prefix(s.as_bytes())?;
        let port = s.get(len..)?.strip_prefix(':')?;
        return Some((IpAddr::V4(ip), parse_port(port)?));
    }
    parse_sockaddr_general(s)
}

/// [`parse_sockaddr`] the plain way: split at the last `:`.
pub(super) fn parse_sockaddr_general(s: &str) -> Option<(IpAddr, u16)> {
    let colon = s.bytes().rposition(|b| b == b':')?;
    let (ip, port) = (&s[..colon], &s[colon + 1..]);
    let ip = match ip.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse().ok()?),
        None => IpAddr::V4(parse_ipv4(ip)?),
    };
    Some((ip, parse_port(port)?))
}

/// The rest of an address header: `NAME MESSAGE`, see the module's decision rules.
pub(super) fn headed(
    dialect: Dialect,
    ip: IpAddr,
    port: u16,
    rest: &str,
    spares: &mut Spares,
) -> Message {
    let (name, text) = token(rest);
    let (name, body) = name_and_body(name, text, spares);
    Message {
        name: name.map(|n| spares.string(n)),
        claimed_ip: Some(ip),
        port: Some(port),
        body,
        dialect,
    }
}

/// What an address header's `name` token and the `text` after the one separator that
/// follows it say: the sender's name, if it gave one, and the body.
#[inline(always)]
fn name_and_body<'a>(name: &'a str, text: &str, spares: &mut Spares) -> (Option<&'a str>, Body) {
    if name.is_empty() {
        return (None, Body::Chat(String::new()));
    }
    if let [first, .., last] = text.as_bytes() {
        if visible_ascii(*first) && visible_ascii(*last) {
            // The usual text: visible at both ends, so there is nothing to trim (what the
            // general case below comes to, with each trim skipped).
            let body = control_word_trimmed(text);
            return (
                Some(name),
                body.unwrap_or_else(|| Body::Chat(spares.string(text))),
            );
        }
    }
    if trim(text).is_empty() {
        match control_word(name) {
            Some(body) => (None, body),
            None => (Some(name), Body::Chat(String::new())),
        }
    } else {
        (Some(name), body_of(text, spares))
    }
}

/// Whether a name and a text read as [`name_and_body`] reads them are the name and the
/// chat text as they are: a name, and a text visible at both ends (nothing to trim) that
/// is no control word.
#[inline(always)]
fn is_plain_chat(name: &str, text: &str) -> bool {
    match text.as_bytes() {
        [first, .., last] => {
            !name.is_empty()
                && visible_ascii(*first)
                && visible_ascii(*last)
                && (!may_be_control_word(text.len()) || control_word_trimmed(text).is_none())
        }
        _ => false,
    }
}

/// Standard: `IP:PORT NAME MESSAGE`.
pub(super) fn parse_standard(line: &str, spares: &mut Spares) -> Option<Message> {
    let (ip, port, rest) = standard_header(skip_seps(line))?;
    Some(headed(Dialect::Standard, ip, port, skip_seps(rest), spares))
}

/// The `IP:PORT` token at the start of `s` and what follows the one separator after it:
/// `token` then `parse_sockaddr`, in one pass for IPv4 (the address stops at its last
/// digit, the port at the separator, so nothing is scanned twice). The same answers as
/// [`standard_header_general`], tested against it.
pub(super) fn standard_header(s: &str) -> Option<(IpAddr, u16, &str)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        return standard_header_general(s);
    }
    let (ip, len) = ipv4_prefix(b)?;
    if b.get(len) != Some(&b':') {
        return None;
    }
    let mut i = len + 1;
    let mut port: u32 = 0;
    while let Some(&c) = b.get(i) {
        if c == b' ' || c == b'\t' {
            break;
        }
        let d = c.wrapping_sub(b'0');
        if d >= 10 {
            return None;
        }
        port = port * 10 + u32::from(d);
        if port > u32::from(u16::MAX) {
            return None;
        }
        i += 1;
    }
    if i == len + 1 || port == 0 {
        return None;
    }
    // `i` is at a one-byte separator or at the end.
    let rest = s.get(i + 1..).unwrap_or("");
    Some((IpAddr::V4(ip), u16::try_from(port).ok()?, rest))
}

/// [`standard_header`] the plain way: the first token, read as a socket address.
pub(super) fn standard_header_general(s: &str) -> Option<(IpAddr, u16, &str)> {
    let (addr, rest) = token(s);
    let (ip, port) = parse_sockaddr(addr)?;
    Some((ip, port, rest))
}

/// A standard line that starts with its IPv4 address (no separator before it), pushed to
/// `out` as [`parse_standard`] reads it; false, with nothing pushed, when the line is not
/// one. The decoder tries this first on lines that start with a digit: its fields read in
/// one pass ([`standard_v4_fields`]) and the message pushed here, it costs a fraction of
/// the general path.
///
/// A line whose header comes again later in it holds messages written back to back with
/// nothing between them (a persistent sender's): the first is pushed, and the rest of the
/// line, from the repeated header on, is handed back to be read the same way.
#[inline(always)]
pub(super) fn push_standard_v4<'a>(
    line: &'a str,
    out: &mut Vec<Message>,
    spares: &mut Spares,
) -> Option<Option<&'a str>> {
    let (ip, port, name, text) = standard_v4_fields_recalled(line, &mut spares.header)?;
    let (text, glued) = split_glued(line, text);
    let message = match is_plain_chat(name, text) {
        // The usual message (what `name_and_body` makes of it: the name, and the text
        // as chat), built where it is pushed: through `name_and_body`, its body was
        // copied twice on the way (the general parser's test covers both arms).
        true => Message {
            name: Some(spares.string(name)),
            claimed_ip: Some(IpAddr::V4(ip)),
            port: Some(port),
            body: Body::Chat(spares.string(text)),
            dialect: Dialect::Standard,
        },
        false => {
            let (name, body) = name_and_body(name, text, spares);
            Message {
                name: name.map(|n| spares.string(n)),
                claimed_ip: Some(IpAddr::V4(ip)),
                port: Some(port),
                body,
                dialect: Dialect::Standard,
            }
        }
    };
    out.push(message);
    Some(glued)
}

/// `text`, the end of `line` after its header, up to where that header comes again, if it
/// does, and the rest of the line from there. The same header, byte for byte, is the same
/// sender starting its next message; a text shorter than the header cannot hold it, so
/// the usual short message costs one comparison.
#[inline(always)]
fn split_glued<'a>(line: &'a str, text: &'a str) -> (&'a str, Option<&'a str>) {
    let header = line.len() - text.len();
    if text.len() < header {
        return (text, None);
    }
    split_glued_at(line, text, header)
}

#[inline(never)]
fn split_glued_at<'a>(line: &'a str, text: &'a str, header: usize) -> (&'a str, Option<&'a str>) {
    let Some(head) = line.get(..header) else {
        return (text, None);
    };
    // The header starts with a digit, so the text is cut between two characters.
    match memchr::memmem::find(text.as_bytes(), head.as_bytes()) {
        Some(at) => match (text.get(..at), text.get(at..)) {
            // Byte order marks just before the next header belong to it (a sender that
            // starts every write with one), not to this text.
            (Some(first), Some(rest)) => (first.trim_end_matches('\u{feff}'), Some(rest)),
            _ => (text, None),
        },
        None => (text, None),
    }
}

/// The header `line` was read from as `m`, a chat message of a headed dialect, when it
/// comes again, byte for byte, in the message's text: the same sender starting its next
/// message with nothing between them. What [`split_glued`] does for standard IPv4, for
/// every dialect that puts its header on the message's own line (its text is then the
/// line's end). A text shorter than the header cannot hold it.
pub(super) fn glued_header<'a>(line: &'a str, m: &Message) -> Option<&'a str> {
    let Body::Chat(text) = &m.body else {
        return None;
    };
    let header = trim_end(line).strip_suffix(text.as_str())?.trim_start();
    if header.is_empty() || text.len() < header.len() {
        return None;
    }
    memchr::memmem::find(text.as_bytes(), header.as_bytes()).map(|_| header)
}

/// The fields of a standard line that starts with its IPv4 address: the address, the port,
/// the name (empty when there is none) and what follows the one separator after the name.
/// In one forward pass over the bytes: the address stops at its last digit (read from a
/// window, [`ipv4_window`], when the line has 16 bytes), the port at a separator, the name
/// at the next one; nothing is scanned twice. On lines that start with a digit, the same
/// answers as `standard_fields_general` (tested).
#[inline(always)]
pub(super) fn standard_v4_fields(line: &str) -> Option<(Ipv4Addr, u16, &str, &str)> {
    match standard_v4_header(line.as_bytes())? {
        (ip, port, Some(after)) => {
            let (name, text) = name_and_text(line, after)?;
            Some((ip, port, name, text))
        }
        (ip, port, None) => Some((ip, port, "", "")),
    }
}

/// [`standard_v4_fields`], the header compared with the last one read first (see
/// [`LastHeader`]): the same answers, with the address and port read only when the
/// header is not the same as the last one.
#[inline(always)]
pub(super) fn standard_v4_fields_recalled<'a>(
    line: &'a str,
    last: &mut LastHeader,
) -> Option<(Ipv4Addr, u16, &'a str, &'a str)> {
    let (ip, port, after) = match last.recall(line.as_bytes()) {
        Some(known) => known,
        None => match standard_v4_header(line.as_bytes())? {
            (ip, port, Some(after)) => {
                last.keep(line.as_bytes(), after, ip, port);
                (ip, port, after)
            }
            (ip, port, None) => return Some((ip, port, "", "")),
        },
    };
    let (name, text) = name_and_text(line, after)?;
    Some((ip, port, name, text))
}

/// The `IPv4:PORT` header at the start of `b`: the address, the port, and where what
/// follows the one separator after the port starts (`None`: the line ends with the port).
/// What it says depends on the bytes before that point alone (the address is read up
/// to the `:`, the port up to the separator), which [`LastHeader`] relies on.
#[inline(always)]
fn standard_v4_header(b: &[u8]) -> Option<(Ipv4Addr, u16, Option<usize>)> {
    let (ip, mut i) = match b.first_chunk::<16>() {
        Some(window) => ipv4_window(window)?,
        None => ipv4_prefix(b)?,
    };
    if b.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    let digits = i;
    let mut port: u32 = 0;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d >= 10 {
            break;
        }
        port = port * 10 + u32::from(d);
        if port > u32::from(u16::MAX) {
            return None;
        }
        i += 1;
    }
    if i == digits || port == 0 {
        return None;
    }
    let port = u16::try_from(port).ok()?;
    match b.get(i) {
        None => Some((ip, port, None)),
        Some(b' ' | b'\t') => Some((ip, port, Some(i + 1))),
        Some(_) => None, // the port is not digits only
    }
}

/// The name and the text of a standard line whose header ends just before `at` (after
/// the one separator that follows the port): more separators skipped, the name up to
/// the next one, the text after the one separator that follows it.
#[inline(always)]
fn name_and_text(line: &str, at: usize) -> Option<(&str, &str)> {
    let b = line.as_bytes();
    let mut i = at;
    while let Some(b' ' | b'\t') = b.get(i) {
        i += 1;
    }
    let name_start = i;
    while let Some(&c) = b.get(i) {
        if c == b' ' || c == b'\t' {
            break;
        }
        i += 1;
    }
    // The name starts after a one-byte separator and ends at one or at the end of the
    // line: both on character boundaries.
    let (head, tail) = line.split_at_checked(i)?;
    let name = head.get(name_start..)?;
    Some((name, tail.get(1..).unwrap_or("")))
}

/// The header of the last standard IPv4 line read with these spares (`IPv4:PORT` and the
/// separator after it), and what it said. A peer sends each message on a connection of
/// its own, every one with the same header: comparing it with the last one (two or four
/// words) costs a fraction of reading the address and the port again. The answers are
/// those of reading it: they depend on the header's bytes alone (see
/// [`standard_v4_header`]), and those are compared whole.
#[derive(Debug)]
pub(super) struct LastHeader {
    /// The header's bytes (the longest, `255.255.255.255:65535 `, has 22).
    bytes: [u8; 32],
    /// How many of them there are; 0 while none was read.
    len: usize,
    ip: Ipv4Addr,
    port: u16,
}

impl Default for LastHeader {
    fn default() -> Self {
        LastHeader {
            bytes: [0; 32],
            len: 0,
            ip: Ipv4Addr::UNSPECIFIED,
            port: 0,
        }
    }
}

impl LastHeader {
    /// The address, the port and the header's length, when `line` starts with the last
    /// header read.
    #[inline(always)]
    fn recall(&self, line: &[u8]) -> Option<(Ipv4Addr, u16, usize)> {
        let (head, known) = (line.get(..self.len)?, self.bytes.get(..self.len)?);
        (self.len != 0 && super::run::same_bytes(head, known))
            .then_some((self.ip, self.port, self.len))
    }

    /// Remembers the header of `line`, its first `len` bytes, read as `ip` and `port`.
    /// Out of line, as the rare case: inlined, it made the usual one slower.
    #[inline(never)]
    fn keep(&mut self, line: &[u8], len: usize, ip: Ipv4Addr, port: u16) {
        if let (Some(head), Some(to)) = (line.get(..len), self.bytes.get_mut(..len)) {
            to.copy_from_slice(head);
            (self.len, self.ip, self.port) = (len, ip, port);
        }
    }
}

/// The fields of a standard line the plain way: separators skipped, the first token read
/// as a socket address, separators skipped again, then the name token and what follows
/// the one separator after it.
#[cfg(test)]
pub(super) fn standard_fields_general(line: &str) -> Option<(IpAddr, u16, &str, &str)> {
    let (ip, port, rest) = standard_header_general(skip_seps(line))?;
    let (name, text) = token(skip_seps(rest));
    Some((ip, port, name, text))
}

/// Spaced: `IP PORT NAME MESSAGE`.
pub(super) fn parse_spaced(line: &str, spares: &mut Spares) -> Option<Message> {
    let (ip, rest) = token(skip_seps(line));
    let ip = parse_ip(ip)?;
    let (port, rest) = token(skip_seps(rest));
    let port = parse_port(port)?;
    Some(headed(Dialect::Spaced, ip, port, skip_seps(rest), spares))
}

/// What a bracketed line is.
pub(super) enum Bracketed<'a> {
    /// `<IP:PORT> DISCONNECT`, `<IP:PORT> TEAM MESSAGE`.
    Message(Message),
    /// `<IP:PORT> @ <TEAM>`, opening a block; text after the team starts the block.
    Open { who: Identity, first: &'a str },
}

/// `<IP:PORT>` at the start of a line (after any spacing and byte order marks), and what
/// follows it.
pub(super) fn bracket_addr(line: &str) -> Option<(IpAddr, u16, &str)> {
    let inner = skip_marks(line).strip_prefix('<')?;
    let end = inner.find('>')?;
    let (ip, port) = parse_sockaddr(&inner[..end])?;
    Some((ip, port, &inner[end + 1..]))
}

/// `line` without the spacing and byte order marks before it: a mark before a header, or
/// before a bracketed block's `<end>`, is ignored, as at the start of a line.
pub(super) fn skip_marks(line: &str) -> &str {
    line.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// Bracketed: `<IP:PORT> @ <TEAM>`, `<IP:PORT> DISCONNECT`, `<IP:PORT> TEAM MESSAGE`.
pub(super) fn parse_bracketed<'a>(line: &'a str, spares: &mut Spares) -> Option<Bracketed<'a>> {
    let (ip, port, rest) = bracket_addr(line)?;
    let rest = skip_seps(rest);
    let (first, after) = token(rest);
    if first != "@" {
        return Some(Bracketed::Message(headed(
            Dialect::Bracketed,
            ip,
            port,
            rest,
            spares,
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
pub(super) fn key_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let s = s.trim();
    if !s.get(..key.len())?.eq_ignore_ascii_case(key) {
        return None;
    }
    let value = s[key.len()..].trim_start().strip_prefix(':')?;
    Some(value.trim())
}

/// Key/value: `LISTENING_PORT:PORT|TEAM_NAME:TEAM|MESSAGE`; the message may hold `|`.
pub(super) fn parse_key_value(line: &str) -> Option<Message> {
    // The first field must start with the key: checked before the line is searched.
    if !starts_with_word(line.trim_start(), "LISTENING_PORT") {
        return None;
    }
    let (first, rest) = match split_at_byte(line, b'|') {
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
        body: body_of(text.trim_start(), &mut Spares::default()),
        dialect: Dialect::KeyValue,
    })
}

/// Colon fields: `MESSAGE:NAME:PORT:TEXT`, `CONNECT:NAME:PORT`, `ACK:NAME:PORT`,
/// `EXIT:PORT`, `CONNECT:PORT` (and `EXIT:NAME:PORT`, `ACK:PORT`).
pub(super) fn parse_colon(line: &str) -> Option<Message> {
    // The line must start with one of the keywords: checked before it is searched.
    let start = line.trim_start();
    if !["MESSAGE", "CONNECT", "ACK", "EXIT"]
        .iter()
        .any(|word| starts_with_word(start, word))
    {
        return None;
    }
    let (keyword, rest) = split_at_byte(start, b':')?;
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
