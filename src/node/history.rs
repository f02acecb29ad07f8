//! The message history and the records that persist it across restarts.
//!
//! [`History`] keeps the last messages (sent and received) in memory for `/history`.
//! With `--state DIR`, every change worth remembering is also a [`Record`], one JSON line
//! appended to a journal (see `journal`); [`replay`] rebuilds the remembered peers (name
//! and dialect) and the history from those lines, skipping a torn last record. Pure: no
//! files here.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use serde_json::Value;

use crate::wire::{Dialect, Run};

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from a peer.
    In,
    /// Sent by us.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When, in Unix milliseconds.
    pub millis: i64,
    /// Received or sent.
    pub direction: Direction,
    /// The peer (sender's identity, or destination); `None` for a sender without a port.
    pub addr: Option<SocketAddr>,
    /// The sender's name (received messages only).
    pub name: Option<String>,
    /// The text.
    pub text: String,
}

/// Most bytes of message text the history holds: beyond it the oldest messages go, even
/// before the count is reached (a thousand messages of 64 KiB would be 64 MiB).
pub const MAX_HISTORY_BYTES: usize = 4 << 20;

/// Most bytes of names and texts together the history holds, so that every offset into
/// its byte buffer fits in a `u32`: beyond it the oldest messages go, and a message larger
/// than this by itself is not kept, as for the text bound. Only names can bring the
/// history near it (the text bound is far below), and the node's names are at most 64
/// bytes: it would take more than sixteen million messages.
const MAX_HELD_BYTES: usize = 1 << 30;

/// Room the history's byte buffer gets beyond what it is to hold whenever it is
/// (re)allocated; twice this is the slack of its bound (see [`History`]).
const MIN_ROOM: usize = 4096;

/// The capacity the history's byte buffer is (re)allocated at to hold `bytes`: half as
/// much again plus `MIN_ROOM`.
fn room_for(bytes: usize) -> usize {
    bytes + bytes / 2 + MIN_ROOM
}

/// What the history keeps of a message, or of a run of messages from one sender (see
/// [`History::push_lines`]), besides its bytes (64 bytes).
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// As in [`Entry`].
    millis: i64,
    /// As in [`Entry`].
    direction: Direction,
    /// As in [`Entry`].
    addr: Option<SocketAddr>,
    /// Whether the message has a sender's name (which may be empty).
    named: bool,
    /// Where the message's bytes (name, then text) begin in the byte buffer.
    start: u32,
    /// Length of the sender's name in bytes (0 without a name).
    name_len: u32,
    /// Length of the text in bytes.
    text_len: u32,
    /// How many messages the text holds: 1, or a run's lines joined with `\n`.
    lines: u32,
    /// How many of those, the first, are forgotten already (the bytes go with the last).
    dropped: u32,
}

impl Meta {
    /// Bytes of name and text.
    fn len(&self) -> usize {
        self.name_len as usize + self.text_len as usize
    }

    /// Messages it holds that are not forgotten.
    fn kept(&self) -> usize {
        self.lines.saturating_sub(self.dropped) as usize
    }
}

/// The last messages, oldest first, at most `capacity` of them and [`MAX_HISTORY_BYTES`]
/// of text.
///
/// No allocation per message: a ring of `Meta` (a `VecDeque`, which stops growing once it
/// holds `capacity` entries) and one byte buffer used as a ring too, holding each message's
/// name then text. A run of messages from one sender (the lines a stream brings in one
/// turn) is kept as one `Meta` and one text, the lines joined with `\n`: one copy for the
/// run, not a copy and a `Meta` per line (that was a fifth of the CPU time of a stream of
/// 100-byte lines). Beyond `capacity`, the oldest messages go one by one even from within
/// a run (its first lines count as forgotten, `Meta::dropped`); its bytes go with its last
/// line, so the byte bound counts a run whole while any line of it is kept. Each `Meta` records where its message's bytes start in the buffer; a
/// message's bytes are always in one piece, never split at the buffer's end. The buffer's
/// length (as a `Vec`) marks where the bytes in use end, and the layout is one of two:
///
/// - In one part: the messages lie back to back, oldest first, from where the oldest
///   begins (its `start`, the "head") to the buffer's length. A message is appended at the
///   length when the capacity leaves room for it there. Otherwise, if the room before the
///   head is enough, it goes at offset 0 and the history wraps around.
/// - In two parts (`upper` counts the messages of the first): the oldest messages lie back
///   to back from the head to the buffer's length, and the newer ones from offset 0 to
///   `tail`, which is at most the head. The capacity beyond the length is a gap left unused
///   (it was too small for the message that wrapped). A message is written at `tail` when
///   the room up to the head is enough. Once the last message of the first part is
///   forgotten, the length is cut to `tail`, and the history is in one part again (and the
///   gap is usable again).
///
/// Forgetting the oldest message only pops its `Meta`; when the last one goes the buffer is
/// emptied, so the next message starts at offset 0. When there is no room for a
/// message where the layout allows it, the buffer grows: the bytes held move, oldest first, to the front of a new
/// buffer (of the size `room_for` gives for them and the new message), and the starts are
/// rewritten (a pass over the `Meta`s). That is rare: with `F` bytes free in the buffer,
/// a message of `m` bytes finds room whenever `F` is at least `m` plus the larger of `m`
/// and the gap (itself smaller than an earlier message), and a buffer is (re)allocated
/// with `F` at least half the bytes held plus `MIN_ROOM`. So a history of many messages,
/// each small beside all of them, never moves a byte once its buffer has grown (moving
/// the bytes to the front whenever the end was full cost a third of the instructions of a
/// stream of 1 KiB lines).
///
/// Memory: after every push, the buffer's capacity is at most twice the bytes held (names
/// and texts) plus `2 * MIN_ROOM` (8 KiB). It is (re)allocated only at one and a half
/// times what it is to hold plus `MIN_ROOM` (`room_for`), within that bound, and at the
/// end of every push its capacity is checked against the bound and the buffer reallocated
/// smaller when beyond it (which takes the bytes held falling below three quarters of what
/// they were at the last reallocation, less `MIN_ROOM / 2`). That check is what
/// gives memory back after a burst of huge messages followed by small ones, wrapped around
/// or not: once the huge ones are forgotten, the buffer shrinks to the small ones' size.
/// The ring of `Meta` keeps its size (room for `capacity` entries of 64 bytes, rounded up
/// by its growth). Dropping the history frees two blocks (the ring and the buffer),
/// whatever it holds.
#[derive(Debug)]
pub struct History {
    metas: VecDeque<Meta>,
    /// Names and texts, laid out as described above.
    buf: Vec<u8>,
    /// How many of the oldest messages lie from the head to the buffer's length while the
    /// history is in two parts; 0 while it is in one.
    upper: usize,
    /// Where the newer part ends while the history is in two parts (unused in one).
    tail: usize,
    capacity: usize,
    /// Messages held: the lines of every `Meta` not dropped.
    count: usize,
    /// Bytes of text held.
    bytes: usize,
    /// Bytes of names and texts held.
    held: usize,
}

impl History {
    /// An empty history keeping at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        History {
            metas: VecDeque::new(),
            buf: Vec::new(),
            upper: 0,
            tail: 0,
            capacity,
            count: 0,
            bytes: 0,
            held: 0,
        }
    }

    /// Adds a message, forgetting the oldest beyond the bounds: its strings are copied,
    /// as by [`History::push_copy`].
    pub fn push(&mut self, entry: Entry) {
        let at = (entry.millis, entry.direction, entry.addr);
        self.push_copy(at, entry.name.as_deref(), &entry.text);
    }

    /// Adds a copy of a message, forgetting the oldest messages beyond the capacity or the
    /// byte bound. A text longer than [`MAX_HISTORY_BYTES`] by itself is not kept, and
    /// every older message is forgotten with it (the bound leaves room for nothing else);
    /// likewise for the bound on names and texts together (`MAX_HELD_BYTES`, 1 GiB, which
    /// only names far longer than the node's could reach). No allocation once the buffers have grown to what the history holds.
    #[inline]
    pub fn push_copy(
        &mut self,
        at: (i64, Direction, Option<SocketAddr>),
        name: Option<&str>,
        text: &str,
    ) {
        if self.capacity == 0 {
            return;
        }
        // Once full, one message goes for each that comes; the byte bounds may take more.
        if self.count >= self.capacity {
            self.forget_one();
        }
        self.keep(at, name, text, 1);
    }

    /// Adds a copy of the messages of a run of lines from one sender at once. Kept as
    /// one, and shown by [`History::last`] as the messages they are; the oldest messages
    /// are forgotten as by [`History::push_copy`], one by one under the capacity, with the
    /// run whole under the byte bounds.
    pub fn push_lines(
        &mut self,
        at: (i64, Direction, Option<SocketAddr>),
        name: Option<&str>,
        run: &Run,
    ) {
        let (text, lines) = (run.text(), run.line_count());
        if self.capacity == 0 {
            return;
        }
        if lines > 1 && text.len() > MAX_HISTORY_BYTES {
            // Larger than the byte bound (a line near `--max-line` when that is set near
            // it, and the lines after it): whole, it would not be kept at all; line by
            // line, the newest are.
            for line in run.lines() {
                self.push_copy(at, name, line);
            }
            return;
        }
        // Once full, one message goes for each that comes; the byte bounds may take more.
        // A run longer than what is left to forget loses its own first lines as it comes
        // (a stream's turn of 100-byte lines is 2,600 of them, the capacity 1,000): only
        // the lines kept are copied.
        let excess = (self.count + lines).saturating_sub(self.capacity);
        let beyond = self.forget_messages(excess);
        // Never none: what is forgotten first is the older messages, and the capacity is
        // at least one.
        if let (Some(kept), Some(text)) = (lines.checked_sub(beyond), run.text_from(beyond)) {
            self.keep(at, name, text, kept);
        }
    }

    /// Adds a copy of `lines` messages (`text`: theirs joined with `\n`), within the byte
    /// bounds (room was made under the capacity).
    #[inline(always)]
    fn keep(
        &mut self,
        (millis, direction, addr): (i64, Direction, Option<SocketAddr>),
        name: Option<&str>,
        text: &str,
        lines: usize,
    ) {
        let name_bytes = name.map_or(&[][..], str::as_bytes);
        let more = name_bytes.len().saturating_add(text.len());
        if (self.bytes.saturating_add(text.len()) > MAX_HISTORY_BYTES
            || self.held.saturating_add(more) > MAX_HELD_BYTES)
            && !self.make_room_within_bounds(text.len(), more)
        {
            return;
        }
        let at = self.place(more);
        let (Ok(start), Ok(name_len), Ok(text_len), Ok(lines)) = (
            u32::try_from(at),
            u32::try_from(name_bytes.len()),
            u32::try_from(text.len()),
            u32::try_from(lines),
        ) else {
            // Never: lengths are within `MAX_HELD_BYTES`, offsets within the largest
            // buffer allocated, `room_for(MAX_HELD_BYTES)`; an emptied history rather than
            // a panic.
            self.clear();
            return;
        };
        if self.upper == 0 {
            // In one part, `at` is the buffer's length, and its capacity has room.
            self.buf.extend_from_slice(name_bytes);
            self.buf.extend_from_slice(text.as_bytes());
        } else {
            // In two parts, `at..at + more` is within the newer part's room, below the head.
            let written = self
                .buf
                .get_mut(at..at + more)
                .and_then(|to| to.split_at_mut_checked(name_bytes.len()))
                .map(|(to_name, to_text)| {
                    to_name.copy_from_slice(name_bytes);
                    to_text.copy_from_slice(text.as_bytes());
                });
            if written.is_none() {
                // Never: `place` found that room; an emptied history rather than a panic.
                self.clear();
                return;
            }
            self.tail = at + more;
        }
        self.metas.push_back(Meta {
            millis,
            direction,
            addr,
            named: name.is_some(),
            start,
            name_len,
            text_len,
            lines,
            dropped: 0,
        });
        self.count += lines as usize;
        self.bytes += text.len();
        self.held += more;
        if self.buf.capacity() > 2 * self.held + 2 * MIN_ROOM {
            self.give_back();
        }
    }

    /// Forgets the oldest messages until a message of `text` bytes of text and `more` of
    /// name and text is within the byte bounds; whether it is within them then. Emptied
    /// by a message too large even alone, the history gives its memory back.
    #[cold]
    #[inline(never)]
    fn make_room_within_bounds(&mut self, text: usize, more: usize) -> bool {
        while (self.bytes.saturating_add(text) > MAX_HISTORY_BYTES
            || self.held.saturating_add(more) > MAX_HELD_BYTES)
            && self.forget_oldest()
        {}
        if text > MAX_HISTORY_BYTES || more > MAX_HELD_BYTES {
            self.give_back();
            return false;
        }
        true
    }

    /// Where the oldest message's bytes begin (the buffer's length when empty).
    fn head(&self) -> usize {
        self.metas
            .front()
            .map_or(self.buf.len(), |m| m.start as usize)
    }

    /// Where the next message's `more` bytes go, wrapping around or growing the buffer if
    /// need be (see [`History`]); the layout is left as it will be once they are written.
    fn place(&mut self, more: usize) -> usize {
        if self.upper == 0 {
            let end = self.buf.len();
            if self.buf.capacity() - end >= more {
                return end;
            }
            // `more` is not 0 here (any capacity has room for nothing), so a history with
            // room before its head holds messages: those are the first part now.
            if self.head() >= more {
                self.upper = self.metas.len();
                self.tail = 0;
                return 0;
            }
        } else if self.head().saturating_sub(self.tail) >= more {
            return self.tail;
        }
        self.grow(more)
    }

    /// Moves the bytes held to a new buffer with room for them and `more` bytes, and half
    /// as much again, plus `MIN_ROOM`; where the `more` bytes go.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, more: usize) -> usize {
        self.reallocate(room_for(self.held + more));
        self.buf.len()
    }

    /// Forgets the `n` oldest messages, or all there are; how many of the `n` were not
    /// there.
    #[inline]
    fn forget_messages(&mut self, mut n: usize) -> usize {
        while n > 0 {
            let Some(oldest) = self.metas.front_mut() else {
                break;
            };
            let kept = oldest.kept();
            if kept > n {
                // `n` is below a `u32` here.
                oldest.dropped += n as u32;
                self.count -= n;
                return 0;
            }
            self.forget_oldest();
            n -= kept;
        }
        n
    }

    /// Forgets the oldest message, as `forget_messages(1)` does, in fewer steps when it is
    /// a message of its own (the usual case: one message goes for each that comes).
    #[inline]
    fn forget_one(&mut self) {
        match self.metas.front() {
            Some(oldest) if oldest.kept() == 1 => {
                self.forget_oldest();
            }
            _ => self.forget_first_line(),
        }
    }

    /// `forget_messages(1)` when the oldest is a run (or nothing): out of the way of the
    /// usual case.
    #[cold]
    #[inline(never)]
    fn forget_first_line(&mut self) {
        self.forget_messages(1);
    }

    /// Forgets the oldest `Meta` (a message, or what is left of a run), if any; whether
    /// there was one.
    fn forget_oldest(&mut self) -> bool {
        let Some(old) = self.metas.pop_front() else {
            return false;
        };
        self.count -= old.kept();
        self.held = self.held.saturating_sub(old.len());
        self.bytes = self.bytes.saturating_sub(old.text_len as usize);
        if self.upper > 0 {
            self.upper -= 1;
            if self.upper == 0 {
                // The first part is gone: the newer one is all, and the gap is free again.
                self.buf.truncate(self.tail);
            }
        }
        if self.metas.is_empty() {
            self.buf.clear();
        }
        true
    }

    /// Forgets every message (keeping the buffers).
    fn clear(&mut self) {
        self.metas.clear();
        self.buf.clear();
        (self.upper, self.tail, self.count, self.bytes, self.held) = (0, 0, 0, 0, 0);
    }

    /// Reallocates the buffer smaller if it is beyond its bound (see [`History`]).
    #[cold]
    #[inline(never)]
    fn give_back(&mut self) {
        if self.buf.capacity() > 2 * self.held + 2 * MIN_ROOM {
            self.reallocate(room_for(self.held));
        }
    }

    /// Moves the bytes held, oldest first, to the front of a new buffer of `size` bytes
    /// (at least the bytes held), and rewrites where each message starts; the history is
    /// then in one part.
    fn reallocate(&mut self, size: usize) {
        let mut fresh = Vec::with_capacity(size);
        let head = self.head();
        fresh.extend_from_slice(self.buf.get(head..).unwrap_or_default());
        // A start, so it fits.
        let head = u32::try_from(head).unwrap_or(u32::MAX);
        // The messages from the head move back by `head`; in two parts, the newer ones
        // (from offset 0) move forward by the length of the first part.
        let (back, first_part) = match self.upper {
            0 => (self.metas.len(), 0),
            upper => (upper, u32::try_from(fresh.len()).unwrap_or(u32::MAX)),
        };
        if self.upper > 0 {
            fresh.extend_from_slice(self.buf.get(..self.tail).unwrap_or_default());
        }
        for (i, meta) in self.metas.iter_mut().enumerate() {
            meta.start = if i < back {
                meta.start.saturating_sub(head)
            } else {
                meta.start.saturating_add(first_part)
            };
        }
        self.buf = fresh;
        (self.upper, self.tail) = (0, 0);
    }

    /// How many messages are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no message is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The last `n` messages, oldest first.
    pub fn last(&self, n: usize) -> Vec<Entry> {
        let string = |from: usize, len: usize| {
            let bytes = self
                .buf
                .get(from..from.saturating_add(len))
                .unwrap_or_default();
            // Copied from `&str`s, so valid UTF-8: never lossy.
            String::from_utf8_lossy(bytes)
        };
        let mut out = Vec::with_capacity(n.min(self.count));
        let mut skip = self.count.saturating_sub(n);
        for meta in &self.metas {
            let kept = meta.kept();
            if skip >= kept {
                skip -= kept;
                continue;
            }
            let start = meta.start as usize;
            let name = meta.named.then(|| string(start, meta.name_len as usize));
            let text = string(start + meta.name_len as usize, meta.text_len as usize);
            let entry = |text: &str| Entry {
                millis: meta.millis,
                direction: meta.direction,
                addr: meta.addr,
                name: name.as_ref().map(|name| name.clone().into_owned()),
                text: text.to_owned(),
            };
            match meta.lines {
                1 => out.push(entry(&text)),
                _ => {
                    let from = meta.dropped as usize + std::mem::take(&mut skip);
                    out.extend(text.split('\n').skip(from).map(entry));
                }
            }
        }
        out
    }
}

/// One journal line.
///
/// Readers in both directions: a line is parsed as a JSON object whose unknown fields are
/// ignored, and a line of an unknown kind (`k`) is not a record: in the middle of a journal
/// it is skipped (and counted, for a warning), as the last line it is taken for a torn
/// record and cut off. So what a newer version has to say about a peer goes in new fields
/// of the `peer` record, never in a new kind of record. The peer's dialect is such a field
/// (`"dialect":"spaced"`, the word `/peers` shows; absent when unknown): a journal of an
/// earlier version, whose `peer` records have none, loads with every dialect unknown, and
/// an earlier version reads this one's `peer` records as before, name and all, ignoring
/// the dialect (and forgetting it when it compacts the journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A peer is known (with its latest name and dialect). A record without a name or a
    /// dialect leaves the one remembered (see [`replay`]).
    Peer {
        /// Its identity.
        addr: SocketAddr,
        /// Its name, if known.
        name: Option<String>,
        /// The dialect it last spoke to us, which it is answered in; `None` when unknown
        /// (never [`Dialect::Raw`], which names none).
        dialect: Option<Dialect>,
    },
    /// A peer was removed.
    Gone {
        /// Its identity.
        addr: SocketAddr,
    },
    /// A message was sent or received.
    Message(Entry),
}

impl Record {
    /// The record as one JSON line, newline included.
    #[cfg(test)]
    pub fn to_line(&self) -> String {
        let mut line = Vec::new();
        self.write_line(&mut line);
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Appends the record as one JSON line (newline included) to `out`. Written by hand,
    /// with serde_json escaping the strings: building a `Value` per message cost more than
    /// everything else a message costs.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writes into a Vec cannot fail, nor can serialising a string.
        let _ = match self {
            Record::Peer {
                addr,
                name,
                dialect,
            } => {
                let _ = write!(out, "{{\"k\":\"peer\",\"addr\":\"{addr}\",\"name\":");
                json_string(out, name.as_deref());
                if let Some(d) = dialect {
                    // The words are plain ASCII: no escaping.
                    let _ = write!(out, ",\"dialect\":\"{}\"", d.as_str());
                }
                write!(out, "}}")
            }
            Record::Gone { addr } => write!(out, "{{\"k\":\"gone\",\"addr\":\"{addr}\"}}"),
            Record::Message(e) => {
                let _ = write!(
                    out,
                    "{{\"k\":\"msg\",\"ts\":{},\"dir\":\"{}\",\"addr\":",
                    e.millis,
                    e.direction.as_str()
                );
                match e.addr {
                    Some(addr) => {
                        let _ = write!(out, "\"{addr}\"");
                    }
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"name\":");
                json_string(out, e.name.as_deref());
                out.extend_from_slice(b",\"text\":");
                json_string(out, Some(&e.text));
                write!(out, "}}")
            }
        };
        out.push(b'\n');
    }

    /// Parses one journal line (without its newline).
    pub fn from_line(line: &str) -> Option<Record> {
        let v: Value = serde_json::from_str(line).ok()?;
        let addr = |v: &Value| v.get("addr")?.as_str()?.parse::<SocketAddr>().ok();
        let name = v.get("name").and_then(Value::as_str).map(str::to_owned);
        match v.get("k")?.as_str()? {
            "peer" => Some(Record::Peer {
                addr: addr(&v)?,
                name,
                // Absent (an earlier version's record), or a word this version does not
                // know (a later one's dialect): unknown, and the record is read all the same.
                dialect: v
                    .get("dialect")
                    .and_then(Value::as_str)
                    .and_then(Dialect::from_word)
                    .filter(|d| *d != Dialect::Raw),
            }),
            "gone" => Some(Record::Gone { addr: addr(&v)? }),
            "msg" => Some(Record::Message(Entry {
                millis: v.get("ts")?.as_i64()?,
                direction: match v.get("dir")?.as_str()? {
                    "in" => Direction::In,
                    "out" => Direction::Out,
                    _ => return None,
                },
                addr: addr(&v),
                name,
                text: v.get("text")?.as_str()?.to_owned(),
            })),
            _ => None,
        }
    }
}

/// A JSON string (escaped by serde_json), or `null`.
fn json_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// What a journal remembers of a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remembered {
    /// Its latest name, if it ever told one.
    pub name: Option<String>,
    /// The dialect it last spoke to us, if known.
    pub dialect: Option<Dialect>,
}

/// What a journal held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Remembered peers, in address order.
    pub peers: BTreeMap<SocketAddr, Remembered>,
    /// The last messages, oldest first.
    pub messages: Vec<Entry>,
    /// Records that could not be read (corrupt lines in the middle).
    pub skipped: usize,
    /// Whether the last record was torn (cut short by a crash) and skipped.
    pub torn_tail: bool,
    /// Whether the last record is whole but has no newline after it (the write was cut
    /// just before it, or the file was edited by hand): it is kept, and the journal needs
    /// a newline before the next record.
    pub unterminated: bool,
    /// Bytes of the journal up to the end of the last good record.
    pub good_len: usize,
    /// Records read.
    pub records: usize,
}

impl Replayed {
    /// Takes one record read back: a peer, a peer gone, or a message (into `messages`).
    fn apply(&mut self, record: Record, messages: &mut History) {
        match record {
            Record::Peer {
                addr,
                name,
                dialect,
            } => {
                // A record without a name (a static peer given again) keeps the one known;
                // likewise without a dialect (an earlier version's record, or a peer not
                // heard yet).
                let known = self.peers.entry(addr).or_default();
                if name.is_some() {
                    known.name = name;
                }
                if dialect.is_some() {
                    known.dialect = dialect;
                }
            }
            Record::Gone { addr } => {
                self.peers.remove(&addr);
            }
            Record::Message(e) => messages.push(e),
        }
    }
}

/// Rebuilds peers and the last `keep` messages from a journal's bytes.
pub fn replay(bytes: &[u8], keep: usize) -> Replayed {
    let mut out = Replayed::default();
    let mut messages = History::new(keep);
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            // No newline: the write of this record was cut short, unless only the newline
            // is missing (no prefix of a record is a whole record).
            match Record::from_line(&String::from_utf8_lossy(rest)) {
                Some(record) => {
                    out.apply(record, &mut messages);
                    out.records += 1;
                    out.unterminated = true;
                    offset = bytes.len();
                    out.good_len = offset;
                }
                None => out.torn_tail = true,
            }
            break;
        };
        let line = String::from_utf8_lossy(&rest[..nl]);
        offset += nl + 1;
        match Record::from_line(&line) {
            Some(record) => out.apply(record, &mut messages),
            None if offset == bytes.len() => {
                out.torn_tail = true;
                offset -= nl + 1;
                break;
            }
            None => {
                out.skipped += 1;
                continue;
            }
        }
        out.records += 1;
        out.good_len = offset;
    }
    if !out.torn_tail {
        out.good_len = offset;
    }
    out.messages = messages.last(keep);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history as it was kept before it had a byte buffer: whole entries in a deque,
    /// each pushed and then the oldest dropped while beyond either bound.
    struct Model {
        entries: VecDeque<Entry>,
        capacity: usize,
        bytes: usize,
    }

    impl Model {
        fn push(&mut self, entry: Entry) {
            if self.capacity == 0 {
                return;
            }
            self.bytes += entry.text.len();
            self.entries.push_back(entry);
            while self.entries.len() > self.capacity || self.bytes > MAX_HISTORY_BYTES {
                match self.entries.pop_front() {
                    Some(old) => self.bytes -= old.text.len(),
                    None => break,
                }
            }
        }

        /// Bytes of names and texts held.
        fn held(&self) -> usize {
            let name = |e: &Entry| e.name.as_ref().map_or(0, String::len);
            self.entries.iter().map(|e| name(e) + e.text.len()).sum()
        }
    }

    /// Whether the byte buffer is within its bound: twice what it holds plus a little.
    fn within_bound(h: &History) -> bool {
        h.buf.capacity() <= 2 * h.held + 2 * MIN_ROOM
    }

    /// Checks the layout described on [`History`]: in one part, the messages lie back to
    /// back from the head to the buffer's length; in two, the `upper` oldest from the head
    /// to the length, the others from 0 to `tail` (at most the head). So every message's
    /// bytes are in one piece within the buffer's length, never split at its end.
    fn check_layout(h: &History, at: &str) {
        let head = h.head();
        let mut next = head;
        for (i, meta) in h.metas.iter().enumerate() {
            if h.upper > 0 && i == h.upper {
                assert_eq!(next, h.buf.len(), "{at}: the first part ends at the length");
                next = 0;
            }
            assert_eq!(meta.start as usize, next, "{at}: message {i} starts");
            next += meta.len();
            assert!(next <= h.buf.len(), "{at}: message {i} within the length");
        }
        if h.upper > 0 {
            assert!(
                h.upper < h.metas.len(),
                "{at}: the newer part holds the newest"
            );
            assert_eq!(next, h.tail, "{at}: the newer part ends at the tail");
            assert!(h.tail <= head, "{at}: the newer part stays below the head");
        } else {
            assert_eq!(
                next,
                h.buf.len(),
                "{at}: in one part, the newest ends the buffer"
            );
        }
        assert!(h.buf.len() <= h.buf.capacity());
        let held: usize = h.metas.iter().map(Meta::len).sum();
        assert_eq!(h.held, held, "{at}: bytes held");
    }

    /// Over many pushes (through `push` and `push_copy`) of random sizes, from empty to
    /// beyond the byte bound, with and without names, ASCII or not, the history holds
    /// exactly what the deque of entries holds, and its buffer stays within its bound.
    #[test]
    fn the_history_holds_what_a_deque_of_entries_holds() {
        let mut rng = crate::sim::rng::Rng::new(31);
        let chars = ["t", "\u{e9}", "\u{20ac}", "\u{1f600}"];
        for capacity in [0, 1, 3, 50, 1000] {
            let mut h = History::new(capacity);
            let mut model = Model {
                entries: VecDeque::new(),
                capacity,
                bytes: 0,
            };
            for i in 0..3_000 {
                let len = match rng.index(100) {
                    0 => rng.index(3 << 20),
                    1 => MAX_HISTORY_BYTES - 2 + rng.index(4),
                    2..=9 => 0,
                    10..=14 => rng.index(64 << 10),
                    _ => rng.index(200),
                };
                let ch = chars[rng.index(chars.len())];
                let mut text = format!("{i}:");
                text += &ch.repeat(len.saturating_sub(text.len()) / ch.len());
                let name = match rng.index(4) {
                    0 => None,
                    1 => Some(String::new()),
                    _ => Some(ch.repeat(rng.index(17))),
                };
                let addr = (rng.index(4) > 0).then(|| SocketAddr::from(([127, 0, 0, 3], 9)));
                let direction = match rng.index(2) {
                    0 => Direction::In,
                    _ => Direction::Out,
                };
                let e = Entry {
                    millis: i,
                    direction,
                    addr,
                    name,
                    text,
                };
                match rng.index(2) {
                    0 => h.push(e.clone()),
                    _ => h.push_copy((i, direction, addr), e.name.as_deref(), &e.text),
                }
                model.push(e);
                let at = format!("capacity {capacity}, step {i}");
                assert_eq!(h.len(), model.entries.len(), "{at}");
                assert_eq!(h.bytes, model.bytes, "{at}");
                assert_eq!(h.held, model.held(), "{at}");
                assert!(
                    within_bound(&h),
                    "{at}: {} for {}",
                    h.buf.capacity(),
                    h.held
                );
                check_layout(&h, &at);
                let n = rng.index(5);
                let tail = model.entries.len().saturating_sub(n);
                assert_eq!(h.last(n), Vec::from(model.entries.clone()).split_off(tail));
                if i % 97 == 0 || model.bytes < 100_000 {
                    assert_eq!(h.last(usize::MAX), Vec::from(model.entries.clone()), "{at}");
                }
            }
        }
    }

    /// Runs of lines kept as one (`push_lines`) among single messages: the history holds
    /// exactly the messages a model of runs holds, which forgets the oldest messages one
    /// by one under the capacity (from within a run too) and whole runs under the byte
    /// bound; `last` gives each line of a run as the message it is.
    #[test]
    fn runs_of_lines_are_kept_whole_and_forgotten_line_by_line() {
        struct Runs {
            groups: VecDeque<(Vec<Entry>, usize, usize)>,
            capacity: usize,
            count: usize,
            bytes: usize,
        }
        impl Runs {
            fn forget(&mut self, mut n: usize) -> usize {
                while n > 0 {
                    let Some(front) = self.groups.front_mut() else {
                        break;
                    };
                    let kept = front.0.len() - front.1;
                    if kept > n {
                        front.1 += n;
                        self.count -= n;
                        return 0;
                    }
                    self.pop();
                    n -= kept;
                }
                n
            }
            fn pop(&mut self) {
                if let Some((group, dropped, bytes)) = self.groups.pop_front() {
                    self.count -= group.len() - dropped;
                    self.bytes -= bytes;
                }
            }
            fn push(&mut self, group: Vec<Entry>) {
                if self.capacity == 0 {
                    return;
                }
                let beyond = self.forget((self.count + group.len()).saturating_sub(self.capacity));
                // The run's own lines beyond the capacity are never held: their bytes
                // do not count.
                let group = group[beyond..].to_vec();
                let bytes = group.iter().map(|e| e.text.len() + 1).sum::<usize>() - 1;
                while self.bytes + bytes > MAX_HISTORY_BYTES && !self.groups.is_empty() {
                    self.pop();
                }
                if bytes > MAX_HISTORY_BYTES {
                    return;
                }
                self.count += group.len();
                self.bytes += bytes;
                self.groups.push_back((group, 0, bytes));
            }
            fn all(&self) -> Vec<Entry> {
                let kept =
                    |(group, dropped, _): &(Vec<Entry>, usize, usize)| group[*dropped..].to_vec();
                self.groups.iter().flat_map(kept).collect()
            }
        }
        let mut rng = crate::sim::rng::Rng::new(47);
        let chars = ["r", "\u{e9}", "\u{1f600}"];
        for capacity in [1, 3, 50, 1000] {
            let mut h = History::new(capacity);
            let mut model = Runs {
                groups: VecDeque::new(),
                capacity,
                count: 0,
                bytes: 0,
            };
            for i in 0..2_000 {
                let lines = match rng.index(10) {
                    0..=3 => 1,
                    4..=8 => 2 + rng.index(60),
                    _ => 1 + rng.index(2_000),
                };
                let size = match rng.index(50) {
                    0 => 2_500,
                    _ => 1 + rng.index(120),
                };
                let ch = chars[rng.index(chars.len())];
                let name = match rng.index(3) {
                    0 => None,
                    _ => Some(ch.repeat(rng.index(9))),
                };
                let group: Vec<Entry> = (0..lines)
                    .map(|l| Entry {
                        millis: i,
                        direction: Direction::In,
                        addr: Some(SocketAddr::from(([127, 0, 0, 3], 9))),
                        name: name.clone(),
                        text: format!("{i}.{l}:") + &ch.repeat(rng.index(size) / ch.len()),
                    })
                    .collect();
                let texts: Vec<&str> = group.iter().map(|e| e.text.as_str()).collect();
                let joined = texts.join("\n");
                let at = (i, Direction::In, group[0].addr);
                h.push_lines(at, name.as_deref(), &Run::from(joined.as_str()));
                model.push(group);
                let at = format!("capacity {capacity}, step {i}");
                assert_eq!((h.len(), h.bytes), (model.count, model.bytes), "{at}");
                assert!(h.len() <= capacity, "{at}");
                assert!(within_bound(&h), "{at}");
                check_layout(&h, &at);
                let all = model.all();
                let n = rng.index(70);
                assert_eq!(h.last(n), all[all.len().saturating_sub(n)..], "{at}");
                if i % 50 == 0 {
                    assert_eq!(h.last(usize::MAX), all, "{at}");
                }
            }
        }
    }

    /// Under the capacity alone, a run keeps what its lines pushed one by one keep, however
    /// long the run against the capacity (a run longer than what is left to forget copies
    /// only its lines kept): checked against single messages, not against a model.
    #[test]
    fn a_run_keeps_what_its_lines_one_by_one_keep() {
        let mut rng = crate::sim::rng::Rng::new(53);
        for capacity in [1, 2, 3, 7, 50] {
            let (mut runs, mut singles) = (History::new(capacity), History::new(capacity));
            for i in 0..400 {
                let lines: Vec<String> = (0..1 + rng.index(3 * capacity + 3))
                    .map(|l| format!("{i}.{l}:") + &"\u{e9}".repeat(rng.index(20)))
                    .collect();
                let at = (i64::from(i), Direction::In, None);
                runs.push_lines(at, Some("carol"), &Run::from(lines.join("\n").as_str()));
                for line in &lines {
                    singles.push_copy(at, Some("carol"), line);
                }
                let step = format!("capacity {capacity}, step {i}");
                assert_eq!(runs.last(usize::MAX), singles.last(usize::MAX), "{step}");
                assert_eq!(runs.len(), singles.len(), "{step}");
                if lines.len() >= capacity {
                    // The run alone fills the history: it holds only the lines kept.
                    let kept = lines[lines.len() - capacity..].join("\n");
                    assert_eq!(runs.bytes, kept.len(), "{step}");
                }
            }
        }
    }

    /// A single message forgets the oldest one as the general path does (`push_copy`'s
    /// `forget_one` against `push_lines` of a one-line run, which goes through
    /// `forget_messages`), whatever the oldest is: a message, or a run with one line left
    /// or more, under capacities from 1 up.
    #[test]
    fn a_single_message_forgets_as_a_one_line_run_does() {
        let mut rng = crate::sim::rng::Rng::new(59);
        for capacity in [1, 2, 3, 7, 50] {
            let (mut fast, mut general) = (History::new(capacity), History::new(capacity));
            for i in 0..600 {
                let at = (i64::from(i), Direction::In, None);
                if rng.index(3) == 0 {
                    let lines: Vec<String> = (0..1 + rng.index(2 * capacity + 2))
                        .map(|l| format!("{i}.{l}:") + &"r".repeat(rng.index(9)))
                        .collect();
                    let run = Run::from(lines.join("\n").as_str());
                    fast.push_lines(at, Some("carol"), &run);
                    general.push_lines(at, Some("carol"), &run);
                } else {
                    let text = format!("{i}:") + &"\u{e9}".repeat(rng.index(9));
                    fast.push_copy(at, Some("bob"), &text);
                    general.push_lines(at, Some("bob"), &Run::from(text.as_str()));
                }
                let step = format!("capacity {capacity}, step {i}");
                assert_eq!(fast.last(usize::MAX), general.last(usize::MAX), "{step}");
                assert_eq!(
                    (fast.len(), fast.bytes, fast.held),
                    (general.len(), general.bytes, general.held),
                    "{step}"
                );
                check_layout(&fast, &step);
            }
        }
    }

    /// A run larger than the byte bound is kept as its lines would be one by one: the
    /// newest, not nothing.
    #[test]
    fn a_run_beyond_the_byte_bound_keeps_its_newest_lines() {
        let mut lines = vec!["y".repeat(4_150_000)];
        lines.extend((0..50).map(|i| format!("{i:03}") + &"z".repeat(997)));
        let (mut run, mut one_by_one) = (History::new(1000), History::new(1000));
        for h in [&mut run, &mut one_by_one] {
            h.push_copy((0, Direction::In, None), Some("bob"), "before");
        }
        let at = (1, Direction::In, None);
        run.push_lines(at, Some("carol"), &Run::from(lines.join("\n").as_str()));
        for line in &lines {
            one_by_one.push_copy(at, Some("carol"), line);
        }
        let kept = run.last(usize::MAX);
        assert_eq!(kept, one_by_one.last(usize::MAX));
        assert_eq!(kept.last().map(|e| &e.text[..3]), Some("049"));
        assert!(kept.len() >= 50, "{}", kept.len());
    }

    /// A message of `len` bytes of text from `bob`, dated `i`.
    fn sized(i: i64, len: usize) -> Entry {
        Entry {
            millis: i,
            direction: Direction::In,
            addr: None,
            name: Some("bob".into()),
            text: "x".repeat(len),
        }
    }

    fn millis(h: &History) -> Vec<i64> {
        h.last(usize::MAX).iter().map(|e| e.millis).collect()
    }

    #[test]
    fn the_oldest_go_first_under_either_bound() {
        let mut h = History::new(3);
        let mib = 1 << 20;
        h.push(sized(1, 10));
        h.push(sized(2, 2 * mib));
        h.push(sized(3, 10));
        assert_eq!(millis(&h), [1, 2, 3]);
        // The count bound: the oldest goes.
        h.push(sized(4, mib));
        assert_eq!(millis(&h), [2, 3, 4]);
        assert_eq!(h.bytes, 3 * mib + 10);
        // The byte bound: 4 MiB + 10 is too much, so the oldest goes (and with it 2 MiB).
        h.push(sized(5, mib));
        assert_eq!(millis(&h), [3, 4, 5]);
        assert_eq!(h.bytes, 2 * mib + 10);
        // 2 MiB + 10 + 3 MiB is too much: two go, though one would do for the count.
        h.push(sized(6, 3 * mib));
        assert_eq!(millis(&h), [5, 6]);
        assert_eq!(h.bytes, 4 * mib);
        assert!(within_bound(&h));
    }

    #[test]
    fn a_text_the_size_of_the_bound_is_kept_alone_and_a_larger_one_not_at_all() {
        let mut h = History::new(10);
        h.push(sized(1, 5));
        h.push(sized(2, MAX_HISTORY_BYTES));
        assert_eq!(millis(&h), [2]);
        h.push(sized(3, 0));
        assert_eq!(millis(&h), [2, 3], "an empty text fits beside it");
        h.push(sized(4, 1));
        assert_eq!(millis(&h), [3, 4]);
        // Too large even alone: not kept, and the others went to make room for it.
        h.push(sized(5, MAX_HISTORY_BYTES + 1));
        assert!(h.is_empty());
        assert_eq!((h.bytes, h.held), (0, 0));
        assert!(h.buf.capacity() <= 2 * MIN_ROOM, "its memory is given back");
        h.push(sized(6, 1));
        assert_eq!(millis(&h), [6]);
    }

    #[test]
    fn names_absent_empty_and_present_are_kept_apart() {
        let mut h = History::new(10);
        let names = [
            None,
            Some(""),
            Some("bob"),
            Some("\u{e9}l\u{e9}onore"),
            None,
        ];
        for (i, name) in (0..).zip(names) {
            h.push_copy((i, Direction::In, None), name, "hi");
            h.push_copy((i, Direction::In, None), name, "");
        }
        let kept: Vec<(Option<String>, String)> = h
            .last(usize::MAX)
            .into_iter()
            .map(|e| (e.name, e.text))
            .collect();
        let expected: Vec<(Option<String>, String)> = names
            .iter()
            .flat_map(|n| {
                [
                    (n.map(str::to_owned), "hi".into()),
                    (n.map(str::to_owned), String::new()),
                ]
            })
            .collect();
        assert_eq!(kept, expected);
    }

    /// The ring of entries and the byte buffer wrap around over and over, without the
    /// buffer growing or moving once it has grown, nor any byte moving within it.
    #[test]
    fn a_full_history_wraps_around_without_allocating() {
        let mut rng = crate::sim::rng::Rng::new(7);
        let mut h = History::new(100);
        let mut next = |h: &mut History, i: i64| {
            let text = "y".repeat(90 + rng.index(21));
            h.push_copy((i, Direction::Out, None), None, &text);
        };
        for i in 0..1_000 {
            next(&mut h, i);
        }
        let (at, capacity, ring) = (h.buf.as_ptr(), h.buf.capacity(), h.metas.capacity());
        let mut wraps = 0;
        for i in 1_000..20_000 {
            let oldest = h.metas.iter().map(|m| m.start).collect::<Vec<_>>();
            let was_in_one_part = h.upper == 0;
            next(&mut h, i);
            if was_in_one_part && h.upper > 0 {
                wraps += 1;
            }
            // The messages kept stay where they were: no byte moves.
            let kept = h.metas.iter().rev().skip(1).rev().map(|m| m.start);
            assert!(kept.eq(oldest.into_iter().skip(1)), "step {i}");
            assert_eq!(h.len(), 100);
            assert_eq!(h.last(1).first().map(|e| e.millis), Some(i));
            check_layout(&h, &format!("step {i}"));
        }
        assert_eq!(
            (h.buf.as_ptr(), h.buf.capacity()),
            (at, capacity),
            "no allocation"
        );
        assert_eq!(h.metas.capacity(), ring);
        assert_eq!(
            std::mem::size_of::<Meta>(),
            64,
            "as the comments on Meta and History say"
        );
        // Now and then: each time the newest reach the end of the buffer.
        assert!(wraps > 50, "{wraps} wraps");
        assert_eq!(millis(&h), (19_900..20_000).collect::<Vec<_>>());
        assert!(within_bound(&h));
    }

    /// A message of `len` bytes of text without a name, dated `i`.
    fn plain(i: i64, len: usize) -> Entry {
        Entry {
            name: None,
            ..sized(i, len)
        }
    }

    /// Checks that the history holds `pushed`, in its layout and within its bound.
    fn assert_holds(h: &History, pushed: &[Entry], at: &str) {
        assert_eq!(h.last(usize::MAX), pushed, "{at}");
        check_layout(h, at);
        assert!(within_bound(h), "{at}");
    }

    /// Every distinct text, so that a message read from the wrong place shows.
    fn marked(i: i64, len: usize) -> Entry {
        let mark = char::from(b'a' + u8::try_from(i % 26).expect("small"));
        Entry {
            text: mark.to_string().repeat(len),
            ..plain(i, len)
        }
    }

    /// A message exactly filling the room left at the buffer's end stays there; the next
    /// one wraps to offset 0 and exactly fills the room before the head; the next exactly
    /// fills the room up to the new head. No allocation, no byte moved.
    #[test]
    fn messages_exactly_filling_the_room_at_the_end_or_before_the_head() {
        let mut h = History::new(3);
        let len = 1000;
        h.push(marked(0, len));
        let capacity = h.buf.capacity();
        assert_eq!(capacity, room_for(len));
        let buffer = h.buf.as_ptr();
        h.push(marked(1, len));
        // Exactly the room left at the end.
        let rest = capacity - 2 * len;
        h.push(marked(2, rest));
        assert_eq!((h.buf.len(), h.upper), (capacity, 0));
        assert_holds(
            &h,
            &[marked(0, len), marked(1, len), marked(2, rest)],
            "full",
        );
        // The oldest goes (head `len`): no room at the end, exactly enough before the head.
        h.push(marked(3, len));
        assert_eq!((h.upper, h.tail, h.head()), (2, len, len));
        assert_eq!(h.metas.back().map(|m| m.start), Some(0));
        assert_holds(
            &h,
            &[marked(1, len), marked(2, rest), marked(3, len)],
            "wrapped",
        );
        // The oldest goes (head `2 * len`): exactly the room from the tail to the new head.
        h.push(marked(4, len));
        assert_eq!((h.upper, h.tail, h.head()), (1, 2 * len, 2 * len));
        assert_holds(
            &h,
            &[marked(2, rest), marked(3, len), marked(4, len)],
            "met",
        );
        // The last of the first part goes: one part again, from 0 to the tail, and the
        // end of the buffer usable again.
        h.push(marked(5, 1));
        assert_eq!((h.upper, h.buf.len()), (0, 2 * len + 1));
        assert_holds(
            &h,
            &[marked(3, len), marked(4, len), marked(5, 1)],
            "unwrapped",
        );
        assert_eq!(
            (h.buf.as_ptr(), h.buf.capacity()),
            (buffer, capacity),
            "no allocation"
        );
    }

    /// Over many wraps of messages of random sizes (some empty, some named), of histories
    /// of a few or many messages, the layout holds, no message is split at the buffer's
    /// end, and the history holds what the deque of entries holds.
    #[test]
    fn many_wraps_with_random_sizes() {
        let mut rng = crate::sim::rng::Rng::new(5);
        for capacity in [2, 5, 40] {
            let mut h = History::new(capacity);
            let mut model = Model {
                entries: VecDeque::new(),
                capacity,
                bytes: 0,
            };
            let (mut wraps, mut moved, mut appended) = (0, 0, 0);
            for i in 0..20_000 {
                let len = match rng.index(20) {
                    0 => 0,
                    1 => rng.index(3000),
                    _ => rng.index(300),
                };
                let e = Entry {
                    name: (rng.index(2) == 0).then(|| "n".repeat(rng.index(9))),
                    ..marked(i, len)
                };
                let (was_in_one_part, buffer) = (h.upper == 0, h.buf.as_ptr());
                h.push(e.clone());
                model.push(e);
                wraps += usize::from(was_in_one_part && h.upper > 0);
                if h.buf.as_ptr() != buffer {
                    moved += h.held;
                }
                appended += len;
                let at = format!("capacity {capacity}, step {i}");
                check_layout(&h, &at);
                assert!(within_bound(&h), "{at}");
                if i % 50 == 0 || h.upper > 0 && i % 7 == 0 {
                    assert_eq!(h.last(usize::MAX), Vec::from(model.entries.clone()), "{at}");
                }
            }
            assert_eq!(h.last(usize::MAX), Vec::from(model.entries.clone()));
            assert!(wraps > 200, "capacity {capacity}: {wraps} wraps");
            // The buffer moves now and then (a long message after short ones, or the long
            // ones forgotten), but the bytes moved are few beside those appended.
            assert!(
                moved * 4 < appended,
                "capacity {capacity}: {moved} bytes moved for {appended}"
            );
        }
    }

    /// A message with no room while the history is in two parts grows the buffer: the
    /// first part then the newer one move to its front, in order, starts rewritten.
    #[test]
    fn growing_while_wrapped_keeps_the_order() {
        let mut h = History::new(4);
        let mut pushed = Vec::new();
        let mut i = 0;
        while h.upper == 0 || pushed.len() < 8 {
            pushed.push(marked(i, 700 + 10 * i as usize));
            h.push(marked(i, 700 + 10 * i as usize));
            i += 1;
        }
        let last_four = |pushed: &[Entry]| pushed[pushed.len() - 4..].to_vec();
        assert!(h.upper > 0 && h.head() > 0);
        assert_holds(&h, &last_four(&pushed), "wrapped");
        let capacity = h.buf.capacity();
        // Too long for the room below the head (and for the gap): the buffer grows.
        pushed.push(marked(i, capacity));
        h.push(marked(i, capacity));
        assert!(h.buf.capacity() > capacity, "grown");
        assert_eq!((h.upper, h.head()), (0, 0), "in one part, at the front");
        assert_holds(&h, &last_four(&pushed), "grown");
    }

    /// Memory is given back while the history is in two parts: the huge message forgotten,
    /// the small ones left in both parts move, in order, to a small buffer.
    #[test]
    fn memory_is_given_back_while_wrapped() {
        let mut h = History::new(3);
        h.push(marked(0, 10_000));
        let capacity = h.buf.capacity();
        assert_eq!(capacity, room_for(10_000));
        // Leaves 96 bytes at the end, then 76.
        h.push(marked(1, capacity - 10_096));
        h.push(marked(2, 20));
        // The oldest goes; no room at the end: the newest wraps to offset 0.
        h.push(marked(3, 100));
        assert_eq!((h.upper, h.tail, h.buf.capacity()), (2, 100, capacity));
        let held = [marked(1, capacity - 10_096), marked(2, 20), marked(3, 100)];
        assert_holds(&h, &held, "wrapped");
        // The large one goes; the buffer is beyond its bound while still in two parts.
        h.push(marked(4, 10));
        assert_eq!(h.upper, 0);
        assert_holds(
            &h,
            &[marked(2, 20), marked(3, 100), marked(4, 10)],
            "given back",
        );
        assert_eq!(h.buf.capacity(), room_for(130));
        assert_eq!(
            h.metas.iter().map(|m| m.start).collect::<Vec<_>>(),
            [0, 20, 120]
        );
    }

    #[test]
    fn memory_is_given_back_after_a_burst_of_huge_messages() {
        let mut h = History::new(1000);
        for i in 0..100 {
            h.push(sized(i, 10));
        }
        let before = h.buf.capacity();
        for i in 100..104 {
            h.push(sized(i, 1 << 20));
        }
        assert!(h.buf.capacity() >= 4 << 20);
        for i in 104..1_104 {
            h.push(sized(i, 10));
            assert!(within_bound(&h), "step {i}");
        }
        assert_eq!(h.bytes, 10_000, "the huge ones are gone");
        assert!(h.buf.capacity() <= 2 * 13_000 + 2 * MIN_ROOM);
        assert!(before <= h.buf.capacity());
    }

    fn entry(i: i64, dir: Direction) -> Entry {
        Entry {
            millis: i,
            direction: dir,
            addr: Some("127.0.0.3:5002".parse().expect("addr")),
            name: (dir == Direction::In).then(|| "bob".to_owned()),
            text: format!("message {i} \u{e9}\n\"quoted\""),
        }
    }

    #[test]
    fn history_keeps_the_last_messages_in_order() {
        let mut h = History::new(3);
        for i in 0..5 {
            h.push(entry(i, Direction::In));
        }
        let last: Vec<i64> = h.last(10).iter().map(|e| e.millis).collect();
        assert_eq!(last, vec![2, 3, 4]);
        assert_eq!(h.last(2).len(), 2);
    }

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Peer {
                addr: "[::1]:7".parse().expect("addr"),
                name: Some("six".into()),
                dialect: None,
            },
            Record::Peer {
                addr: "127.0.0.4:7002".parse().expect("addr"),
                name: None,
                dialect: Some(Dialect::Spaced),
            },
            Record::Gone {
                addr: "127.0.0.2:1".parse().expect("addr"),
            },
            Record::Message(entry(7, Direction::Out)),
            Record::Message(Entry {
                addr: None,
                ..entry(8, Direction::In)
            }),
        ];
        for r in records {
            let line = r.to_line();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Record::from_line(line.trim_end()), Some(r));
        }
    }

    #[test]
    fn replay_rebuilds_peers_and_messages() {
        let a: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.3:2".parse().expect("addr");
        let mut journal = String::new();
        journal += &Record::Peer {
            addr: a,
            name: Some("a".into()),
            dialect: Some(Dialect::Json),
        }
        .to_line();
        journal += &Record::Peer {
            addr: b,
            name: None,
            dialect: None,
        }
        .to_line();
        journal += &Record::Message(entry(1, Direction::In)).to_line();
        journal += &Record::Gone { addr: a }.to_line();
        journal += "garbage in the middle\n";
        journal += &Record::Message(entry(2, Direction::Out)).to_line();
        let r = replay(journal.as_bytes(), 10);
        assert_eq!(r.peers.keys().copied().collect::<Vec<_>>(), vec![b]);
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.skipped, 1);
        assert!(!r.torn_tail);
        assert_eq!(r.good_len, journal.len());
    }

    #[test]
    fn a_record_without_a_name_keeps_the_name_remembered() {
        let a: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let named = |name: Option<&str>| Record::Peer {
            addr: a,
            name: name.map(Into::into),
            dialect: None,
        };
        let journal = named(Some("ann")).to_line() + &named(None).to_line();
        assert_eq!(
            replay(journal.as_bytes(), 10).peers[&a].name.as_deref(),
            Some("ann")
        );
        let journal = journal + &named(Some("anne")).to_line();
        assert_eq!(
            replay(journal.as_bytes(), 10).peers[&a].name.as_deref(),
            Some("anne")
        );
    }

    #[test]
    fn every_dialect_that_names_one_round_trips_in_a_peer_record() {
        let a: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        for d in Dialect::ALL {
            let line = Record::Peer {
                addr: a,
                name: Some("ann".into()),
                dialect: Some(d),
            }
            .to_line();
            assert!(line.contains(&format!(",\"dialect\":\"{}\"}}", d.as_str())));
            let read = Record::from_line(line.trim_end());
            // Raw text names no dialect, and the table never holds it; read as unknown.
            let want = Some(d).filter(|d| *d != Dialect::Raw);
            assert_eq!(
                read,
                Some(Record::Peer {
                    addr: a,
                    name: Some("ann".into()),
                    dialect: want,
                }),
                "{line}"
            );
        }
    }

    /// What the previous version wrote, byte for byte, is what this one writes for a peer
    /// whose dialect is unknown, and reads as such; a record carrying a dialect differs
    /// from it only by one more field, which a reader that ignores unknown fields skips.
    #[test]
    fn a_peer_record_without_a_dialect_is_the_previous_versions_record() {
        let old = "{\"k\":\"peer\",\"addr\":\"127.0.0.2:1\",\"name\":\"ann\"}";
        let unknown = Record::Peer {
            addr: "127.0.0.2:1".parse().expect("addr"),
            name: Some("ann".into()),
            dialect: None,
        };
        assert_eq!(unknown.to_line(), format!("{old}\n"));
        assert_eq!(Record::from_line(old), Some(unknown));
        let spaced = Record::Peer {
            addr: "127.0.0.2:1".parse().expect("addr"),
            name: Some("ann".into()),
            dialect: Some(Dialect::Spaced),
        };
        let new: Value = serde_json::from_str(&spaced.to_line()).expect("JSON");
        let mut as_old = new.clone();
        if let Some(fields) = as_old.as_object_mut() {
            fields.remove("dialect");
        }
        assert_eq!(as_old, serde_json::from_str::<Value>(old).expect("JSON"));
        assert_eq!(new["dialect"], "spaced");
    }

    #[test]
    fn an_unknown_dialect_leaves_the_dialect_unknown_and_the_record_read() {
        let mut journal = String::new();
        for dialect in ["\"semaphore\"", "7", "null", "\"\""] {
            let line = format!(
                "{{\"k\":\"peer\",\"addr\":\"127.0.0.2:1\",\"name\":\"ann\",\"dialect\":{dialect}}}"
            );
            assert_eq!(
                Record::from_line(&line),
                Some(Record::Peer {
                    addr: "127.0.0.2:1".parse().expect("addr"),
                    name: Some("ann".into()),
                    dialect: None,
                }),
                "{line}"
            );
            journal += &line;
            journal.push('\n');
        }
        let r = replay(journal.as_bytes(), 10);
        assert_eq!((r.records, r.skipped), (4, 0));
    }

    /// A record without a dialect (a static peer given again, an earlier version's record)
    /// keeps the dialect remembered, a record without a name keeps the name, a new dialect
    /// replaces the old, and a peer gone and back starts afresh.
    #[test]
    fn replay_keeps_the_latest_dialect_of_each_peer() {
        let a: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let peer = |name: Option<&str>, dialect| {
            Record::Peer {
                addr: a,
                name: name.map(Into::into),
                dialect,
            }
            .to_line()
        };
        let remembered = |journal: &str| replay(journal.as_bytes(), 10).peers.get(&a).cloned();
        let both = |name: &str, dialect| {
            Some(Remembered {
                name: Some(name.into()),
                dialect,
            })
        };
        let mut journal = peer(Some("ann"), Some(Dialect::Standard));
        journal += &peer(None, Some(Dialect::Spaced));
        assert_eq!(remembered(&journal), both("ann", Some(Dialect::Spaced)));
        journal += &peer(Some("anne"), None);
        assert_eq!(remembered(&journal), both("anne", Some(Dialect::Spaced)));
        journal += &peer(Some("anne"), Some(Dialect::Persistent));
        assert_eq!(
            remembered(&journal),
            both("anne", Some(Dialect::Persistent))
        );
        journal += &Record::Gone { addr: a }.to_line();
        assert_eq!(remembered(&journal), None);
        journal += &peer(None, None);
        assert_eq!(remembered(&journal), Some(Remembered::default()));
    }

    #[test]
    fn a_torn_last_record_is_skipped_at_any_cut() {
        let mut journal = Record::Message(entry(1, Direction::In)).to_line();
        let whole = journal.len();
        journal += &Record::Message(entry(2, Direction::In)).to_line();
        for cut in whole + 1..journal.len() - 1 {
            let r = replay(&journal.as_bytes()[..cut], 10);
            assert_eq!(r.messages.len(), 1, "cut at {cut}");
            assert!(r.torn_tail, "cut at {cut}");
            assert_eq!(r.good_len, whole);
        }
        // Cut just before its newline, the record is whole: kept.
        let cut = journal.len() - 1;
        let r = replay(&journal.as_bytes()[..cut], 10);
        assert_eq!(r.messages.len(), 2);
        assert!(!r.torn_tail && r.unterminated);
        assert_eq!((r.good_len, r.records), (cut, 2));
    }

    #[test]
    fn the_history_is_bounded_in_bytes_too() {
        let mut h = History::new(1000);
        let big = |i: i64| Entry {
            millis: i,
            direction: Direction::In,
            addr: None,
            name: None,
            text: "x".repeat(64 * 1024),
        };
        for i in 0..200 {
            h.push(big(i));
        }
        let kept = h.last(usize::MAX);
        assert_eq!(kept.len(), MAX_HISTORY_BYTES / (64 * 1024));
        assert_eq!(kept.last().map(|e| e.millis), Some(199), "the newest stay");
        assert_eq!(h.bytes, kept.iter().map(|e| e.text.len()).sum::<usize>());
    }

    #[test]
    fn a_history_of_no_capacity_keeps_nothing() {
        let mut h = History::new(0);
        assert!(h.is_empty());
        h.push(entry(1, Direction::In));
        assert!(h.is_empty());
        assert_eq!(h.len(), 0);
        assert!(h.last(5).is_empty());
    }

    #[test]
    fn history_counts_what_it_keeps() {
        let mut h = History::new(2);
        h.push(entry(1, Direction::Out));
        assert!(!h.is_empty());
        assert_eq!(h.len(), 1);
        h.push(entry(2, Direction::In));
        h.push(entry(3, Direction::In));
        assert_eq!(h.len(), 2);
        assert_eq!(h.last(1), vec![entry(3, Direction::In)]);
        assert!(h.last(0).is_empty());
    }

    #[test]
    fn directions_are_written_as_in_and_out() {
        assert_eq!(Direction::In.as_str(), "in");
        assert_eq!(Direction::Out.as_str(), "out");
        let line = Record::Message(entry(1, Direction::Out)).to_line();
        assert!(line.contains("\"dir\":\"out\""), "{line}");
    }

    #[test]
    fn lines_of_unknown_kind_or_direction_are_not_records() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        assert!(Record::from_line(good.trim_end()).is_some());
        for bad in [
            good.replace("\"dir\":\"in\"", "\"dir\":\"sideways\""),
            good.replace("\"k\":\"msg\"", "\"k\":\"nope\""),
            good.replace("\"ts\":1", "\"ts\":\"1\""),
            "{\"k\":\"peer\",\"addr\":\"not an address\"}".to_owned(),
            "{\"k\":\"gone\"}".to_owned(),
        ] {
            assert_eq!(Record::from_line(bad.trim_end()), None, "{bad}");
        }
    }

    #[test]
    fn replay_keeps_only_the_last_messages_and_counts_records() {
        let mut journal = String::new();
        for i in 0..5 {
            journal += &Record::Message(entry(i, Direction::In)).to_line();
        }
        journal += &Record::Gone {
            addr: "127.0.0.2:1".parse().expect("addr"),
        }
        .to_line();
        let r = replay(journal.as_bytes(), 2);
        let kept: Vec<i64> = r.messages.iter().map(|e| e.millis).collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(r.records, 6);
        assert_eq!(r.skipped, 0);
        assert_eq!(r.good_len, journal.len());
    }

    #[test]
    fn a_corrupt_last_line_is_a_torn_tail_not_a_skipped_record() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        let journal = format!("{good}{{\"k\":\"msg\",\"ts\":\n");
        let r = replay(journal.as_bytes(), 10);
        assert!(r.torn_tail);
        assert_eq!(r.skipped, 0);
        assert_eq!(r.records, 1);
        assert_eq!(r.good_len, good.len(), "the torn line is cut off");
    }

    #[test]
    fn a_stray_blank_last_line_is_cut_off() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        let journal = format!("{good}\n");
        let r = replay(journal.as_bytes(), 10);
        assert_eq!(r.messages, vec![entry(1, Direction::In)]);
        assert_eq!(r.good_len, good.len());
    }

    #[test]
    fn garbage_before_a_torn_tail_is_cut_off_with_it() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        let journal = format!("{good}garbage\n{{\"k\":\"ms");
        let r = replay(journal.as_bytes(), 10);
        assert!(r.torn_tail);
        assert_eq!(r.skipped, 1);
        assert_eq!(r.good_len, good.len());
        assert_eq!(r.messages, vec![entry(1, Direction::In)]);
    }

    #[test]
    fn an_empty_journal_holds_nothing() {
        assert_eq!(replay(b"", 10), Replayed::default());
    }
}
