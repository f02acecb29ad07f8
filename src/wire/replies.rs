//! Same-socket replies: what a receiver says back on the connection that carried our
//! message (`Message received`, `ACK from PORT`, `IP:PORT NAME connected`, `Connection
//! Acknowledged`), and the acknowledgement we owe a port-line sender for each line.

use super::dialects::parse_standard;
use super::Body;

/// What we write back, on its own connection, after each line a port-line peer sends us:
/// it waits for this before it sends the next (docs/PROTOCOL.md, section 7).
pub const MESSAGE_RECEIVED: &[u8] = b"Message received\n";

/// Longest reply kept and shown, in bytes; the rest is read and dropped.
pub const MAX_REPLY: usize = 160;

/// A receiver's reply, as shown: its first non-blank line, lossily decoded, trimmed and
/// cut to [`MAX_REPLY`] bytes at a character boundary; `None` when it said nothing.
pub fn reply_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_REPLY)]);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.to_owned())
}

/// Whether a reply acknowledges what we sent: the receiver took it, and the connection
/// has nothing more to wait for.
///
/// ```
/// use peerchat::wire::is_acknowledgement;
///
/// assert!(is_acknowledgement("Message received"));
/// assert!(is_acknowledgement("ACK from 6000"));
/// assert!(is_acknowledgement("127.0.0.5:6000 bob connected"));
/// assert!(is_acknowledgement("Connection Acknowledged"));
/// assert!(!is_acknowledgement("hello"));
/// ```
pub fn is_acknowledgement(line: &str) -> bool {
    let t = line.trim();
    t.eq_ignore_ascii_case("message received")
        || t.eq_ignore_ascii_case("connection acknowledged")
        || t.eq_ignore_ascii_case("connect_ack")
        || t.get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("ack from "))
        || replier_name(t, None).is_some()
}

/// The name in a `IP:PORT NAME connected` reply, when it is one (and, given `port`, claims
/// that listening port).
pub fn replier_name(line: &str, port: Option<u16>) -> Option<String> {
    let msg = parse_standard(line.trim(), &mut super::Spares::default())?;
    let connected = matches!(&msg.body, Body::Chat(t) if t.eq_ignore_ascii_case("connected"));
    (connected && port.is_none_or(|p| msg.port == Some(p))).then_some(msg.name)?
}
