//! The decoder: bytes of one connection, in any chunks, to complete messages.
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
//! - A bracketed block ends at `<end>`, at EOF, or at a new `<IP:PORT>` line, or at an `<end>`
//!   with the next block's `<IP:PORT>` header glued to it on one line. Leading blank
//!   lines are dropped, inner ones kept. A block that grows past the decoder's limit is
//!   delivered in pieces of whole lines instead of failing.
//! - JSON needs `type` or `content` to count as a message; an unknown `type` is chat, a
//!   `type` that is a control word (`connect`, `exit`, `connect_ack`, `ack`...) is that.
//!   Several objects glued on one line are several messages.
//! - NUL and other control bytes stay in the text; invalid UTF-8 becomes U+FFFD.
//! - A line longer than the limit is an error whatever the chunking; after an error the
//!   decoder stays failed and yields nothing more.

use std::net::IpAddr;

use super::dialects::*;
use super::json::*;
use super::{control_word, Body, DecodeError, Dialect, Message, Run};

/// Who is talking on a connection, as the last header on it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) name: Option<String>,
    pub(super) claimed_ip: Option<IpAddr>,
    pub(super) port: Option<u16>,
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

/// How much of an unfinished line [`Decoder::holds_whole_message`] reads: more than a
/// header (an IPv4 address, a port, a name of at most 64 bytes) and the start of a text.
const HEAD: usize = 256;

/// The longest unfinished JSON line [`Decoder::holds_whole_message`] parses to see whether
/// it is whole: what one lab receiver's `recv` takes (a longer one waits for its end).
const JSON_WHOLE: usize = 1024;

/// Lines held until a multi-line construct is complete.
#[derive(Debug)]
pub(super) enum Block {
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
///
/// The `_reusing` forms and [`Decoder::feed_final`] take the strings of new messages from
/// [`Spares`] instead of allocating them, and decode a connection's last line without
/// copying it: with them, a one-message connection costs no allocation in steady state.
#[derive(Debug)]
pub struct Decoder {
    /// The limit, as `u32` (4 GiB is plenty) to keep an idle connection's decoder small.
    max_line: u32,
    /// The partial line, an open block, the latest header, the opening port line: boxed
    /// together, since most connections never need any of them (a one-message connection
    /// decodes its only line straight from the read buffer), and a small decoder keeps
    /// idle connections cheap.
    rare: Option<Box<Rare>>,
    /// The first non-blank line was a port (the persistent dialect).
    opened_with_port: bool,
    /// A non-blank line was seen.
    seen_line: bool,
    /// A line was too long: the connection is to be dropped, nothing more is decoded.
    failed: bool,
    /// Plain lines in a row after a header come as one [`Body::Lines`] (see
    /// [`Decoder::group_lines`]).
    group: bool,
}

/// What a decoder holds beyond its flags, when it holds anything.
#[derive(Debug, Default)]
struct Rare {
    /// The unfinished line.
    partial: Vec<u8>,
    /// An open bracketed block or incomplete JSON value.
    block: Option<Box<Block>>,
    /// The latest header on this connection, and the dialect of header-less lines after it.
    identity: Option<(Identity, Dialect)>,
    /// The opening port line, while nothing else followed it.
    port_line: Option<Box<str>>,
    /// With [`Decoder::group_lines`]: the length of the output vector just after the last
    /// plain line of this connection went into it (0: none), so that the next plain line
    /// joins that message while nothing else was pushed since.
    run: usize,
    /// What the connection's owner marked the unfinished line with ([`Decoder::mark`]).
    mark: u64,
}

impl Rare {
    /// Whether the unfinished line closes the open block, its newline yet to come: the
    /// `<end>` of a bracketed block (spacing and byte order marks around it aside), or the
    /// last line of a JSON value spread over lines (pretty-printed) that makes it whole
    /// messages, within [`JSON_WHOLE`] bytes.
    ///
    /// Bounded before anything is read (64 bytes for an `<end>`, [`JSON_WHOLE`] for JSON):
    /// this is asked at every read, and a long line trickled in would cost the square of
    /// its length.
    fn partial_ends_block(&self) -> bool {
        let line = || std::str::from_utf8(&self.partial).ok();
        match self.block.as_deref() {
            Some(Block::Bracketed { .. }) => {
                self.partial.len() <= 64
                    && line()
                        .is_some_and(|l| skip_marks(l).trim_end().eq_ignore_ascii_case("<end>"))
            }
            Some(Block::Json { text, nesting }) => {
                text.len() + 1 + self.partial.len() <= JSON_WHOLE
                    && line().is_some_and(|l| {
                        let mut nesting = *nesting;
                        nesting.scan(l);
                        nesting.may_be_complete()
                            && matches!(parse_json(&format!("{text}\n{l}")), JsonRead::Messages(_))
                    })
            }
            None => false,
        }
    }
}

/// Strings given back by whoever is done with decoded messages, taken again for the text
/// and names of new ones: in steady state, decoding allocates nothing. They also keep the
/// last standard header read, so that the next connection from the same sender is not
/// read twice (see `LastHeader`).
///
/// ```
/// use peerchat::wire::{Body, Decoder, Spares};
///
/// let mut spares = Spares::default();
/// let mut out = Vec::new();
/// Decoder::new(1024).feed_final(b"127.0.0.3:5002 bob hi", &mut out, &mut spares).unwrap();
/// if let Some(Body::Chat(text)) = out.pop().map(|m| m.body) {
///     spares.give(text); // the next message's text reuses it
/// }
/// ```
#[derive(Debug, Default)]
pub struct Spares {
    /// Kept strings of at most [`Spares::SMALL`] bytes of capacity (mostly names), and
    /// the larger ones (mostly texts): a new string is taken from the pool that suits its
    /// length, so that a spare that held a short name is not grown (reallocated) for a
    /// long text while one that fits is kept.
    small: Vec<String>,
    large: Vec<String>,
    /// The capacity of the large ones, in bytes (the small ones hold at most
    /// `MAX * SMALL`, 16 KiB, in all).
    kept: usize,
    /// The boxed state of closed connections' decoders, emptied, with the capacity of
    /// their partial line (see [`Decoder::recycle`]). Boxes, not values: each goes back
    /// to a decoder as the box it holds, so taking one allocates nothing.
    #[allow(clippy::vec_box)]
    rares: Vec<Box<Rare>>,
    /// The buffers for the next run of lines.
    run: Run,
    /// Where the lines a run is extended with end (reused).
    ends: Vec<usize>,
    /// The last standard IPv4 header read, and what it said.
    pub(super) header: LastHeader,
}

impl Spares {
    /// Keeps a closed decoder's rare part for the next decoder that needs one, cleared,
    /// unless enough are kept or its buffer is large.
    fn keep_rare(&mut self, mut rare: Box<Rare>) {
        if self.rares.len() < Spares::MAX && rare.partial.capacity() <= Spares::MAX_PARTIAL {
            rare.partial.clear();
            rare.block = None;
            rare.identity = None;
            rare.port_line = None;
            rare.run = 0;
            rare.mark = 0;
            self.rares.push(rare);
        }
    }
    /// At most this many strings are kept: a name and a text for each message a
    /// connection's turn may decode, so that a stream of lines allocates nothing either.
    const MAX: usize = 512;
    /// At most this many bytes of capacity are kept in large strings: with the small
    /// ones (at most `MAX * SMALL` bytes), all kept strings stay within 256 KiB.
    const MAX_KEPT: usize = 256 * 1024 - Self::MAX * Self::SMALL;
    /// Strings with more capacity than this are dropped rather than kept.
    const MAX_CAPACITY: usize = 4096;
    /// The capacity up to which a string is kept with the small ones.
    const SMALL: usize = 32;
    /// A decoder's state is kept only when its partial line has at most this capacity
    /// (all kept together stay within 64 KiB).
    const MAX_PARTIAL: usize = 1024;

    /// A run's buffer ([`Body::Lines`]) is kept when it has at most this capacity: a
    /// shared turn's lines (16 KiB) and a backlog's. A lone stream's turns (up to
    /// 256 KiB) allocate theirs: kept, one would stay resident while the stream is open
    /// and quiet (keeping one up to 1 MiB measured no faster, within the noise).
    const MAX_RUN: usize = 128 * 1024;

    /// Keeps `s` for a later message, unless enough are kept or it is large (or has no
    /// buffer at all). The usual small string (a name, a short text) is checked only
    /// against the count, inlined where it is given: the call and its saving of
    /// registers cost as much as the checks.
    #[inline(always)]
    pub fn give(&mut self, s: String) {
        let capacity = s.capacity();
        if (1..=Self::SMALL).contains(&capacity) {
            if self.small.len() + self.large.len() < Self::MAX {
                self.small.push(s);
            }
            return;
        }
        self.give_large(s);
    }

    /// [`Spares::give`] of a string with no buffer or more than [`Spares::SMALL`] bytes
    /// of capacity, counted in [`Spares::kept`].
    fn give_large(&mut self, s: String) {
        let capacity = s.capacity();
        let room = self.small.len() + self.large.len() < Self::MAX
            && self.kept + capacity <= Self::MAX_KEPT;
        if room && (Self::SMALL + 1..=Self::MAX_CAPACITY).contains(&capacity) {
            self.kept += capacity;
            self.large.push(s);
        }
    }

    /// An owned copy of `text`, in a spare string when one suits: a small text takes a
    /// small spare (or a large one when no small one is left), a larger text a large one.
    #[inline(always)]
    pub(super) fn string(&mut self, text: &str) -> String {
        let small = match text.len() <= Self::SMALL {
            true => self.small.pop(),
            false => None,
        };
        let spare = match small {
            Some(s) => s,
            None => match self.large.pop() {
                Some(s) => {
                    self.kept -= s.capacity();
                    s
                }
                None => return text.to_owned(),
            },
        };
        let mut s = spare;
        refill(&mut s, text);
        s
    }

    /// Keeps the buffers of a [`Body::Lines`] for the next run, when they are larger
    /// than those kept (up to 128 KiB of text).
    pub fn give_run(&mut self, run: Run) {
        let capacity = run.capacity();
        if capacity <= Self::MAX_RUN && capacity > self.run.capacity() {
            self.run = run;
        }
    }

    /// A run whose first line is `first`, in the kept buffers (or new ones).
    fn start_run(&mut self, first: &str) -> Run {
        let (text, ends) = std::mem::take(&mut self.run).into_parts();
        Run::start(text, ends, first)
    }

    /// How many strings are kept, and their capacity in all.
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        let strings = self.small.iter().chain(&self.large);
        (strings.clone().count(), strings.map(String::capacity).sum())
    }

    /// Gives the kept strings and decoder state back to the allocator.
    pub fn clear(&mut self) {
        self.run = Run::default();
        self.ends = Vec::new();
        self.small = Vec::new();
        self.large = Vec::new();
        self.kept = 0;
        self.rares = Vec::new();
    }
}

/// Makes `s` a copy of `text`, in its own buffer when that is large enough. What
/// `s.clear(); s.push_str(text)` does, but a text of at most 32 bytes (a name, a chat
/// line) is copied as two overlapping chunks of a fixed size, with no call: `push_str`
/// calls `Vec::append_elements` and `memcpy`, over 40 instructions for a few bytes.
#[inline(always)]
fn refill(s: &mut String, text: &str) {
    let src = text.as_bytes();
    let n = src.len();
    if n <= 32 && n <= s.capacity() {
        // SAFETY: the buffer's first `n` bytes are set to those of `text` (valid UTF-8)
        // before its length becomes `n`; `copy_short` says whether it wrote them all.
        let v = unsafe { s.as_mut_vec() };
        v.clear();
        if let Some(dst) = v.spare_capacity_mut().get_mut(..n) {
            if copy_short(dst, src) {
                // SAFETY: see above; `n` is within the capacity (`dst` is that long).
                unsafe { v.set_len(n) };
                return;
            }
        }
    }
    s.clear();
    s.push_str(text);
}

/// Copies `src` (at most 32 bytes) to `dst`, of the same length, and says so; false, with
/// nothing promised written, when they are longer or of different lengths. Two chunks of
/// the largest size that fits, one at each end (they overlap when the length is not
/// twice that size): together they cover every byte.
#[inline(always)]
fn copy_short(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8]) -> bool {
    if dst.len() != src.len() {
        return false;
    }
    match src.len() {
        0 => true,
        1..=3 => {
            // The first, middle and last bytes are all of them.
            for i in [0, src.len() / 2, src.len() - 1] {
                dst[i].write(src[i]);
            }
            true
        }
        4..=7 => copy_ends::<4>(dst, src),
        8..=15 => copy_ends::<8>(dst, src),
        16..=32 => copy_ends::<16>(dst, src),
        _ => false,
    }
}

/// Copies the first and the last `N` bytes of `src` to `dst` (of the same length, from
/// `N` to `2 * N` bytes: every byte), as two fixed-size moves.
#[inline(always)]
fn copy_ends<const N: usize>(dst: &mut [std::mem::MaybeUninit<u8>], src: &[u8]) -> bool {
    let (Some(first), Some(last)) = (src.first_chunk::<N>(), src.last_chunk::<N>()) else {
        return false;
    };
    let Some(to) = dst.first_chunk_mut::<N>() else {
        return false;
    };
    *to = first.map(std::mem::MaybeUninit::new);
    let Some(to) = dst.last_chunk_mut::<N>() else {
        return false;
    };
    *to = last.map(std::mem::MaybeUninit::new);
    true
}

impl Decoder {
    /// A decoder that refuses lines longer than `max_line` bytes; it also holds at most
    /// `max_line` bytes in total (see [`Decoder::buffered`]).
    pub fn new(max_line: usize) -> Self {
        Decoder {
            max_line: u32::try_from(max_line).unwrap_or(u32::MAX),
            rare: None,
            opened_with_port: false,
            seen_line: false,
            failed: false,
            group: false,
        }
    }

    /// This decoder yields the plain lines a sender streams after its header (lines that
    /// cannot be read as anything but text, in a row, in one call or in consecutive calls
    /// onto the same vector) as one message with a [`Body::Lines`] body instead of one
    /// [`Body::Chat`] message each: what each line says is the same, its cost is a line's.
    /// A single line stays a `Chat`. The caller must not push anything else onto the
    /// vector between calls while it keeps the messages there (draining it is fine).
    ///
    /// ```
    /// use peerchat::wire::{Body, Decoder};
    ///
    /// let mut out = Vec::new();
    /// let mut decoder = Decoder::new(1024).group_lines();
    /// decoder.feed(b"127.0.0.3:5002 bob hi\nthere\nyou\n", &mut out).unwrap();
    /// assert_eq!(out[0].body, Body::Chat("hi".into()));
    /// assert_eq!(out[1].body, Body::Lines("there\nyou".into()));
    /// assert_eq!(out[1].name.as_deref(), Some("bob"));
    /// ```
    pub fn group_lines(mut self) -> Self {
        self.group = true;
        self
    }

    /// Feeds bytes as they came off the socket; complete messages are pushed to `out`.
    ///
    /// Fails when a line is longer than the limit, whatever the chunking. Messages decoded
    /// before the offending line are still pushed; after a failure the decoder holds
    /// nothing and every later call fails too.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Message>) -> Result<(), DecodeError> {
        self.feed_reusing(bytes, out, &mut Spares::default())
    }

    /// [`Decoder::feed`], taking the strings of new messages from `spares`.
    pub fn feed_reusing(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) -> Result<(), DecodeError> {
        self.feed_lines(bytes, out, spares, usize::MAX).map(|_| ())
    }

    /// [`Decoder::feed_reusing`] of at most `max_lines` lines (the `\n` in `bytes`): what
    /// the driver's turn counts, a run of lines being one message out. Returns how many
    /// lines were completed and how many bytes were taken; the bytes after the last line
    /// taken are left to the caller once `max_lines` are.
    pub(crate) fn feed_lines(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Message>,
        spares: &mut Spares,
        max_lines: usize,
    ) -> Result<(usize, usize), DecodeError> {
        if self.failed {
            return Err(self.error());
        }
        let mut lines = 0;
        let mut rest = bytes;
        // A stream of long lines spends most of its decoding looking for `\n`: `find_byte`
        // hands long slices to memchr.
        while let Some(pos) = super::dialects::find_byte(rest, b'\n') {
            if lines >= max_lines {
                self.bound_block(out);
                return Ok((lines, bytes.len() - rest.len()));
            }
            if self.group {
                let (taken, run) = self.extend_run(rest, pos, out, spares, max_lines - lines);
                if taken > 0 {
                    rest = &rest[taken..];
                    lines += run;
                    continue;
                }
            }
            lines += 1;
            let (line, tail) = (&rest[..pos], &rest[pos + 1..]);
            if self.partial_len() + line.len() > self.max_line() {
                return Err(self.fail());
            }
            match self.rare.as_mut() {
                Some(rare) if !rare.partial.is_empty() => {
                    let mut whole = std::mem::take(&mut rare.partial);
                    whole.extend_from_slice(line);
                    self.line_bytes(&whole, true, out, spares);
                    whole.clear();
                    // Keep the capacity for the next line.
                    self.rare().partial = whole;
                }
                _ => self.line_bytes(line, true, out, spares),
            }
            rest = tail;
        }
        if !rest.is_empty() {
            if self.partial_len() + rest.len() > self.max_line() {
                return Err(self.fail());
            }
            if self.rare.is_none() {
                self.rare = spares.rares.pop();
            }
            self.rare().partial.extend_from_slice(rest);
        }
        self.bound_block(out);
        Ok((lines, bytes.len()))
    }

    /// With [`Decoder::group_lines`], while the last message out is the run of plain lines
    /// of this connection's sender (and nothing is held): the complete lines at the start
    /// of `bytes` that can only be text join it, with none of the per-line work of
    /// [`Decoder::line_bytes`], at most `max_lines` of them; `first` is where the first
    /// `\n` of `bytes` is. Returns how many bytes and lines were taken (none when the
    /// first line needs the general path).
    fn extend_run(
        &mut self,
        bytes: &[u8],
        first: usize,
        out: &mut [Message],
        spares: &mut Spares,
        max_lines: usize,
    ) -> (usize, usize) {
        let max_line = self.max_line();
        let Some(rare) = self.rare.as_mut() else {
            return (0, 0);
        };
        let open = rare.run != 0
            && rare.run == out.len()
            && rare.partial.is_empty()
            && rare.block.is_none()
            && rare.identity.is_some();
        let Some(Message { body, .. }) = out.last_mut().filter(|_| open) else {
            return (0, 0);
        };
        // Text that cannot open a header, ends visibly (nothing to trim: Unicode
        // whitespace ends with a byte of 0x80 or more), and is no control word by its
        // length; `line` is a whole line without its `\n`. The limit counts a `\r` before
        // the `\n`, as `feed` does.
        // Whether the line is plain, and whether it ends with `\r`.
        let plain = |line: &[u8]| {
            let cr = line.last() == Some(&b'\r');
            let text = &line[..line.len() - usize::from(cr)];
            let plain = match (text.first(), text.last()) {
                (Some(&first), Some(&last)) => {
                    !super::dialects::may_open_header(first)
                        && last.is_ascii_graphic()
                        && line.len() <= max_line
                        && !super::may_be_control_word(text.len())
                }
                _ => false,
            };
            (plain, cr)
        };
        // The plain lines at the start of `bytes`, at most `max_lines`: how many bytes
        // (each `\n` included), where each ends (kept in `spares.ends`), and whether any
        // ends with `\r` (which the run leaves out). The scan stops at the first line not
        // taken, so that only what is taken is checked: checking all that follows each
        // time would cost the square of a read whose plain lines alternate with others.
        let (mut taken, mut cr) = (0, false);
        let ends = &mut spares.ends;
        ends.clear();
        let clean = super::scan::newlines(
            bytes,
            first,
            #[inline(always)]
            |end| {
                let line = bytes.get(taken..end).unwrap_or_default();
                let (is_plain, ends_cr) = plain(line);
                if ends.len() == max_lines || !is_plain {
                    return false;
                }
                cr |= ends_cr;
                ends.push(end);
                taken = end + 1;
                true
            },
        );
        if ends.is_empty() {
            return (0, 0);
        }
        // Visible ASCII between the `\n`s (the usual case: the scan vouches for it, and
        // there is nothing to escape on the screen), or else checked as UTF-8 (invalid
        // UTF-8 takes the general path, which replaces it; the whole lines before it are
        // taken here).
        let visible = clean || super::run::visible_ascii::<true>(&bytes[..taken]);
        let text = match visible {
            // SAFETY: ASCII is valid UTF-8.
            true => unsafe { std::str::from_utf8_unchecked(&bytes[..taken - 1]) },
            false => {
                let checked = match std::str::from_utf8(&bytes[..taken]) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        // The lines whose `\n` comes before the first invalid byte.
                        let valid = ends.partition_point(|&end| end < e.valid_up_to());
                        ends.truncate(valid);
                        taken = ends.last().map_or(0, |&end| end + 1);
                        std::str::from_utf8(&bytes[..taken]).ok()
                    }
                };
                // Without the last `\n` (a character boundary).
                match checked.and_then(|text| text.get(..taken.checked_sub(1)?)) {
                    Some(text) => text,
                    None => return (0, 0),
                }
            }
        };
        let lines = ends.len();
        if let Body::Lines(run) = body {
            if !run.has_room(taken) {
                return (0, 0);
            }
        }
        // The run the lines join (the first line, a chat message until now, starts it).
        let run = match body {
            Body::Lines(run) => run,
            Body::Chat(first) => {
                let run = spares.start_run(first);
                spares.give(std::mem::take(first));
                *body = Body::Lines(run);
                match body {
                    Body::Lines(run) => run,
                    _ => return (0, 0),
                }
            }
            _ => return (0, 0),
        };
        // Joined with `\n` as they came: copied at once, unless a `\r` is to go.
        match cr {
            false => {
                run.reserve(taken, lines);
                let ends = spares.ends[..lines - 1].iter().copied();
                run.push_joined(text, ends, visible);
            }
            true => {
                for line in super::lines(text) {
                    run.push_line(line.strip_suffix('\r').unwrap_or(line));
                }
            }
        }
        (taken, lines)
    }

    /// The connection's last bytes, then its EOF: the same as [`Decoder::feed_reusing`]
    /// followed by [`Decoder::finish_reusing`], but the last line, when nothing is held
    /// before it (a one-message connection), is decoded where it is, never copied.
    pub fn feed_final(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) -> Result<(), DecodeError> {
        // The usual one-message connection: nothing held, one ASCII line and no `\n` (so
        // no `memrchr`), read as `line_bytes` would read it.
        if self.rare.is_none() && !self.failed && bytes.len() <= self.max_line() {
            if let Some(text) = ascii_text::<true>(bytes) {
                let text = text.strip_suffix('\r').unwrap_or(text);
                if !text.is_empty() && !self.standard_v4(text, false, out, spares) {
                    self.dispatch_rest(text, (true, true), false, out, spares);
                }
                // What the line left held (a port line, an open JSON or bracketed block)
                // is flushed at EOF.
                if self.rare.is_some() {
                    self.finish_reusing(out, spares);
                }
                return Ok(());
            }
        }
        // Complete lines as `feed` reads them; it leaves no block beyond the limit, so
        // feeding them apart from the tail changes nothing.
        let split = memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1);
        let (lines, tail) = bytes.split_at(split);
        if !lines.is_empty() || self.failed {
            self.feed_reusing(lines, out, spares)?;
        }
        if self.buffered() == 0 && tail.len() <= self.max_line() {
            // What `feed` would put in the partial line and `finish` read at once.
            if !tail.is_empty() {
                self.line_bytes(tail, false, out, spares);
            }
        } else {
            self.feed_reusing(tail, out, spares)?;
        }
        // A decoder that holds nothing (no partial line, block or port line) has nothing
        // to flush at EOF.
        if self.rare.is_some() {
            self.finish_reusing(out, spares);
        }
        Ok(())
    }

    /// The connection is closed: what this decoder allocated is kept in `spares` for the
    /// next connection's decoder (a connection whose line and EOF come in separate reads
    /// holds its line in it meanwhile), unless it is large.
    #[inline]
    pub fn recycle(self, spares: &mut Spares) {
        // Most decoders never needed their rare part: nothing to keep, no call.
        if let Some(rare) = self.rare {
            spares.keep_rare(rare);
        }
    }

    /// The connection reached EOF: flushes whatever is pending as final messages.
    pub fn finish(&mut self, out: &mut Vec<Message>) {
        self.finish_reusing(out, &mut Spares::default());
    }

    /// [`Decoder::finish`], taking the strings of new messages from `spares`.
    pub fn finish_reusing(&mut self, out: &mut Vec<Message>, spares: &mut Spares) {
        if self.failed {
            return;
        }
        if let Some(rare) = self.rare.as_mut() {
            if !rare.partial.is_empty() {
                let mut last = std::mem::take(&mut rare.partial);
                self.line_bytes(&last, false, out, spares);
                // Its capacity stays with the decoder, for `recycle`.
                last.clear();
                self.rare().partial = last;
            }
        }
        // Re-reading a failed JSON block may open a bracketed one: loop until none is left.
        while let Some(block) = self.take_block() {
            match *block {
                Block::Json { text, .. } => self.reread(&text, false, out, spares),
                Block::Bracketed { who, text, emitted } => {
                    close_bracketed(who, text, emitted, out);
                }
            }
        }
        if let Some(text) = self.rare.as_mut().and_then(|r| r.port_line.take()) {
            out.push(raw_message(Body::Chat(text.into())));
        }
    }

    /// Whether the unfinished line is a whole message by itself (no block open, or the
    /// line that closes the open block; byte order marks before it skipped): one of a
    /// dialect that puts its header on the message's
    /// line (`IP:PORT NAME TEXT` and the others of `whole_headed`: a name and some text, or
    /// a control word of its own), or JSON objects that are messages, complete, within one
    /// lab receiver's 1024 bytes. What a sender that ends its messages with nothing, and
    /// keeps its connection open, leaves between them.
    pub fn holds_whole_message(&self) -> bool {
        let Some(rare) = self.rare.as_ref().filter(|_| !self.failed) else {
            return false;
        };
        if rare.block.is_some() {
            return rare.partial_ends_block();
        }
        // Only its head is read, not the whole line at every read of a long one that
        // comes in pieces (a trickle of bytes would cost the square of the line); a
        // character cut at the head's end, or anything not UTF-8, ends it sooner.
        let partial = &rare.partial;
        let head = &partial[..partial.len().min(HEAD)];
        let head = match std::str::from_utf8(head) {
            Ok(head) => head,
            Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
        };
        let more = partial.len() > head.len();
        let head = head.trim_start_matches('\u{feff}');
        if head.trim_start().starts_with('{') {
            return partial.len() <= JSON_WHOLE
                && partial.trim_ascii_end().ends_with(b"}")
                && std::str::from_utf8(partial).is_ok_and(|line| {
                    matches!(
                        parse_json(line.trim_start_matches('\u{feff}')),
                        JsonRead::Messages(_)
                    )
                });
        }
        if let Some((_, _, name, text)) = standard_v4_fields(head) {
            return !name.is_empty() && (more || !trim(text).is_empty());
        }
        whole_headed(head, more)
    }

    /// Marks the unfinished line with `mark` (a decoder that holds none keeps nothing):
    /// whoever reads it later can tell, by [`Decoder::marked`], that no read came since.
    pub fn mark(&mut self, mark: u64) {
        if let Some(rare) = self.rare.as_mut() {
            rare.mark = mark;
        }
    }

    /// The mark last given by [`Decoder::mark`] (0: none).
    pub fn marked(&self) -> u64 {
        self.rare.as_ref().map_or(0, |r| r.mark)
    }

    /// Reads the unfinished line (with no block open, or the line that closes the open
    /// block) as if its end had come; the connection goes on, its header remembered for
    /// the lines that follow.
    pub fn flush_partial(&mut self, out: &mut Vec<Message>, spares: &mut Spares) {
        let Some(rare) = self
            .rare
            .as_mut()
            .filter(|r| r.block.is_none() || r.partial_ends_block())
        else {
            return;
        };
        if self.failed || rare.partial.is_empty() {
            return;
        }
        let mut last = std::mem::take(&mut rare.partial);
        self.line_bytes(&last, true, out, spares);
        // Its capacity stays with the decoder.
        last.clear();
        self.rare().partial = last;
    }

    /// Whether the connection opened with a port line: a port-line peer, which keeps its
    /// connection open and waits for [`super::MESSAGE_RECEIVED`] after each line.
    pub fn is_port_line(&self) -> bool {
        self.opened_with_port
    }

    /// Bytes held while waiting for the end of a line or block (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| {
            r.partial.len() + r.block.as_ref().map_or(0, |b| b.len())
        })
    }

    fn partial_len(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.partial.len())
    }

    /// The rarely needed state, made when first needed.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn take_block(&mut self) -> Option<Box<Block>> {
        self.rare.as_mut()?.block.take()
    }

    fn set_block(&mut self, block: Block) {
        self.rare().block = Some(Box::new(block));
    }

    fn error(&self) -> DecodeError {
        DecodeError::LineTooLong {
            limit: self.max_line(),
        }
    }

    /// Drops everything held and refuses further input.
    fn fail(&mut self) -> DecodeError {
        self.failed = true;
        if let Some(rare) = self.rare.as_mut() {
            rare.partial = Vec::new();
            rare.block = None;
            rare.port_line = None;
        }
        self.error()
    }

    fn max_line(&self) -> usize {
        self.max_line as usize
    }

    /// Keeps `buffered() <= max_line` by delivering (or giving up) an open block.
    fn bound_block(&mut self, out: &mut Vec<Message>) {
        while self.buffered() > self.max_line() {
            match self.take_block().map(|b| *b) {
                None => return, // cannot happen: the partial line alone is within the limit
                Some(Block::Json { text, .. }) => {
                    self.reread(&text, true, out, &mut Spares::default());
                }
                Some(Block::Bracketed { who, text, emitted }) => {
                    let emitted = flush_bracketed(&who, text, out) || emitted;
                    self.set_block(Block::Bracketed {
                        who,
                        text: String::new(),
                        emitted,
                    });
                }
            }
        }
    }

    /// One complete line, as bytes without its `\n`. `remember` is false for the final line
    /// of a connection, whose identity nobody will ask for (saves a copy of the name).
    fn line_bytes(
        &mut self,
        line: &[u8],
        remember: bool,
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(text) = ascii_text::<false>(line) {
            if self.rare.as_ref().is_none_or(|r| r.block.is_none()) {
                // No block to continue: what `line` would do, sooner.
                return self.dispatch(text, true, remember, out, spares);
            }
            return self.line(text, true, remember, out, spares);
        }
        // Valid UTF-8 is checked and borrowed; only invalid input pays for the lossy
        // conversion.
        match std::str::from_utf8(line) {
            Ok(text) => self.line(text, true, remember, out, spares),
            Err(_) => self.line(&String::from_utf8_lossy(line), true, remember, out, spares),
        }
    }

    /// One complete line: continues an open block, or is read on its own.
    fn line(
        &mut self,
        line: &str,
        allow_json: bool,
        remember: bool,
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) {
        match self.take_block().map(|b| *b) {
            None => {}
            Some(Block::Bracketed {
                who,
                mut text,
                mut emitted,
            }) => {
                if skip_marks(line).trim_end().eq_ignore_ascii_case("<end>") {
                    close_bracketed(who, text, emitted, out);
                    return;
                }
                if let Some(next) = glued_after_end(line) {
                    // `<end>` with the next block's header glued to it (a sender that
                    // writes its messages back to back on one connection): two lines.
                    close_bracketed(who, text, emitted, out);
                    self.line(next, allow_json, remember, out, spares);
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
                    self.set_block(Block::Bracketed { who, text, emitted });
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
                    self.reread(&text, remember, out, spares);
                    self.line(line, allow_json, remember, out, spares);
                    return;
                }
                text.push('\n');
                text.push_str(line);
                nesting.scan(line);
                if !nesting.may_be_complete() {
                    // Parsing now would fail anyway: parse once, when it can succeed
                    // (re-parsing on every line would cost the square of the block).
                    self.set_block(Block::Json { text, nesting });
                    return;
                }
                match parse_json(&text) {
                    JsonRead::Messages(msgs) => {
                        msgs.into_iter().for_each(|m| self.emit(m, remember, out));
                    }
                    JsonRead::Incomplete | JsonRead::Invalid => {
                        self.reread(&text, remember, out, spares);
                    }
                }
                return;
            }
        }
        self.dispatch(line, allow_json, remember, out, spares);
    }

    /// Lines held for a JSON value that never came: read them as plain lines.
    fn reread(&mut self, text: &str, remember: bool, out: &mut Vec<Message>, spares: &mut Spares) {
        for line in text.split('\n') {
            self.line(line, false, remember, out, spares);
        }
    }

    /// Reads one line outside any block, trying the dialects in the documented order.
    fn dispatch(
        &mut self,
        line: &str,
        allow_json: bool,
        remember: bool,
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) {
        if self.standard_v4(line, remember, out, spares) {
            return;
        }
        self.dispatch_rest(line, (allow_json, true), remember, out, spares);
    }

    /// The fast path of [`Decoder::dispatch`]: a line that starts with a digit is most
    /// often standard with an IPv4 address, read (and pushed) in one pass before anything
    /// else. The port line (digits only) cannot be standard, and the dialects tried
    /// between them cannot start with a digit (see `dispatch_rest`), so reading it first
    /// changes no answer. Returns whether the line was one.
    ///
    /// Inlined in `dispatch` and in `feed_final` (where `remember` is false): one
    /// connection's only line costs no call more than it must.
    #[inline(always)]
    fn standard_v4(
        &mut self,
        line: &str,
        remember: bool,
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) -> bool {
        if !line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return false;
        }
        let Some(mut glued) = push_standard_v4(line, out, spares) else {
            return false;
        };
        // Messages written back to back on one line: each from its own header.
        while let Some(rest) = glued {
            glued = match push_standard_v4(rest, out, spares) {
                Some(next) => next,
                None => {
                    // Never: the rest starts with the header that was just read. Should it
                    // not be read as one, it is read as any other line, not dropped.
                    self.dispatch_rest(rest, (false, false), remember, out, spares);
                    None
                }
            };
        }
        self.seen_line = true;
        if let Some(rare) = self.rare.as_mut() {
            rare.port_line = None;
            rare.run = 0;
        }
        if remember {
            if let Some(m) = out.last() {
                self.remember_header(m);
            }
        }
        true
    }

    /// [`Decoder::dispatch`] once [`Decoder::standard_v4`] said no. `glue`: whether a line
    /// of a headed dialect is looked into for more messages glued to the first.
    fn dispatch_rest(
        &mut self,
        line: &str,
        (allow_json, glue): (bool, bool),
        remember: bool,
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) {
        if line.starts_with('\u{feff}') {
            // A byte order mark (some Windows programs start what they write with one):
            // invisible, and not part of a header. Any number of them, in one step (not
            // once per mark: a line of them must not recurse as deep).
            let rest = line.trim_start_matches('\u{feff}');
            if rest.as_bytes().first().is_some_and(u8::is_ascii_digit)
                && self.standard_v4(rest, remember, out, spares)
            {
                return;
            }
            return self.dispatch_rest(rest, (allow_json, glue), remember, out, spares);
        }
        let starts_with_digit = line.as_bytes().first().is_some_and(u8::is_ascii_digit);
        let trimmed = trim(line);
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
                let rare = self.rare();
                rare.identity = Some((who, Dialect::Persistent));
                rare.port_line = Some(trimmed.into());
                return;
            }
        }
        if let Some(rare) = self.rare.as_mut() {
            rare.port_line = None;
            if self.group
                && rare.identity.is_some()
                && line
                    .as_bytes()
                    .first()
                    .is_some_and(|&b| !super::dialects::may_open_header(b))
            {
                // Text and nothing else (the first byte rules out every header): no
                // dialect is tried.
                return self.push_raw(line, out, spares);
            }
        }
        // Fast path: a line whose first visible character is a digit can only be standard,
        // spaced or raw. JSON starts with `{`, bracketed with `<`, key/value and colon
        // lines with a letter (each of them looks past the same leading whitespace as
        // `trim`), so trying them would only fail.
        let by_digit = trimmed.as_bytes().first().is_some_and(u8::is_ascii_digit);
        if !by_digit {
            if allow_json && trimmed.starts_with('{') {
                match parse_json(trimmed) {
                    JsonRead::Messages(msgs) => {
                        msgs.into_iter().for_each(|m| self.emit(m, remember, out));
                        return;
                    }
                    JsonRead::Incomplete => {
                        let mut nesting = Nesting::default();
                        nesting.scan(line);
                        self.set_block(Block::Json {
                            text: line.to_owned(),
                            nesting,
                        });
                        return;
                    }
                    JsonRead::Invalid => {}
                }
            }
            if let Some(parsed) = parse_bracketed(line, spares) {
                match parsed {
                    Bracketed::Message(m) => match glue.then(|| glued_header(line, &m)).flatten() {
                        Some(header) => self.read_glued(line, header, remember, out, spares),
                        None => self.emit(m, remember, out),
                    },
                    Bracketed::Open { who, first } => {
                        if remember {
                            self.set_identity(who.clone(), Dialect::Bracketed);
                        }
                        let mut text = String::new();
                        push_block_line(&mut text, first);
                        self.set_block(Block::Bracketed {
                            who,
                            text,
                            emitted: false,
                        });
                    }
                }
                return;
            }
        }
        let headed = if starts_with_digit {
            // `standard_v4` read it: not standard.
            parse_spaced(line, spares)
        } else if by_digit {
            parse_standard(line, spares).or_else(|| parse_spaced(line, spares))
        } else {
            parse_headed(line, spares)
        };
        match headed {
            Some(m) => match glue.then(|| glued_header(line, &m)).flatten() {
                Some(header) => self.read_glued(line, header, remember, out, spares),
                None => self.emit(m, remember, out),
            },
            None => self.push_raw(line, out, spares),
        }
    }

    /// Reads `line`, whose header `header` comes again in its text, as one message from
    /// each header to the next: a sender that writes its messages back to back, each with
    /// the same header and nothing between them (as the standard IPv4 fast path does in
    /// `standard_v4`). Each piece is read as a line of its own, not looked into again.
    #[cold]
    fn read_glued(
        &mut self,
        line: &str,
        header: &str,
        remember: bool,
        out: &mut Vec<Message>,
        spares: &mut Spares,
    ) {
        let (bytes, needle) = (line.as_bytes(), header.as_bytes());
        let mut start = 0;
        let mut from =
            memchr::memmem::find(bytes, needle).map_or(line.len(), |at| at + needle.len());
        // A match starts with the header's first character, so every cut falls between
        // two characters; `get` keeps that from being a promise.
        while let Some(at) = bytes
            .get(from..)
            .and_then(|b| memchr::memmem::find(b, needle))
        {
            let cut = from + at;
            if let Some(piece) = line.get(start..cut) {
                // Byte order marks just before the next header belong to it, not to this
                // text (as in `split_glued_at`).
                let piece = piece.trim_end_matches('\u{feff}');
                self.dispatch_rest(piece, (false, false), remember, out, spares);
            }
            start = cut;
            from = cut + needle.len();
        }
        if let Some(piece) = line.get(start..) {
            self.dispatch_rest(piece, (false, false), remember, out, spares);
        }
    }

    /// Pushes a line with no header: with [`Decoder::group_lines`], a chat line of the
    /// connection's sender joins the plain lines pushed just before it.
    fn push_raw(&mut self, line: &str, out: &mut Vec<Message>, spares: &mut Spares) {
        let grouping = self.group;
        let Some(rare) = self
            .rare
            .as_mut()
            .filter(|r| grouping && r.identity.is_some())
        else {
            out.push(self.raw(line, spares));
            return;
        };
        if control_word(line).is_some() {
            rare.run = 0;
            out.push(self.raw(line, spares));
            return;
        }
        let text = trim_end(line);
        if rare.run != 0 && rare.run == out.len() {
            if let Some(Message { body, .. }) = out.last_mut() {
                match body {
                    Body::Lines(run) if run.has_room(text.len()) => {
                        run.push_line(text);
                        return;
                    }
                    Body::Chat(first) => {
                        let mut run = spares.start_run(first);
                        spares.give(std::mem::take(first));
                        run.push_line(text);
                        *body = Body::Lines(run);
                        return;
                    }
                    _ => {}
                }
            }
        }
        out.push(self.raw(line, spares));
        if let Some(rare) = self.rare.as_mut() {
            rare.run = out.len();
        }
    }

    /// Pushes a message, remembering its header as the connection's identity (unless
    /// `remember` is false: then it is only pushed).
    #[inline]
    fn emit(&mut self, m: Message, remember: bool, out: &mut Vec<Message>) {
        if remember {
            self.remember_header(&m);
        }
        if let Some(rare) = self.rare.as_mut() {
            // Whatever run of lines was open is no longer the last message out.
            rare.run = 0;
        }
        out.push(m);
    }

    /// Makes the header of `m`, if it has one, the connection's identity.
    fn remember_header(&mut self, m: &Message) {
        if m.name.is_some() || m.port.is_some() || m.claimed_ip.is_some() {
            self.set_identity(Identity::of(m), m.dialect);
        }
    }

    fn set_identity(&mut self, who: Identity, dialect: Dialect) {
        let dialect = if self.opened_with_port {
            Dialect::Persistent
        } else {
            dialect
        };
        let rare = self.rare();
        rare.identity = Some((who, dialect));
        rare.run = 0;
    }

    /// A line with no header: raw text, or a line of the sender this connection announced.
    fn raw(&self, line: &str, spares: &mut Spares) -> Message {
        let body = body_of(line, spares);
        match self.rare.as_ref().and_then(|r| r.identity.as_ref()) {
            Some((who, dialect)) => who.message(body, *dialect),
            None => raw_message(body),
        }
    }
}

/// `line` read in the first of the dialects that put their header on the message's line
/// and are not bracketed, tried in the documented order: key/value, colon fields,
/// standard, spaced.
fn parse_headed(line: &str, spares: &mut Spares) -> Option<Message> {
    parse_key_value(line)
        .or_else(|| parse_colon(line))
        .or_else(|| parse_standard(line, spares))
        .or_else(|| parse_spaced(line, spares))
}

/// Whether `head`, the start of an unfinished line that is not standard IPv4, is a whole
/// message of another dialect that puts its header on the message's line (standard with
/// another address, spaced, single-line bracketed, key/value, colon fields): a header,
/// then text (or more to come after the head), or a control word of its own. A header
/// alone, or a name with nothing after it yet, may be a message still on its way; so may
/// a colon-fields control line (`CONNECT:bob:5002`, `EXIT:5002`), which ends with its
/// port: cut inside it (`CONNECT:bob:50`), it would name another peer and draw a reply
/// to a wrong port, so it waits for its end.
fn whole_headed(head: &str, more: bool) -> bool {
    let mut spares = Spares::default();
    let m = match parse_bracketed(head, &mut spares) {
        Some(Bracketed::Message(m)) => Some(m),
        // `<IP:PORT> @ <TEAM>` opens a block, which ends with `<end>`.
        Some(Bracketed::Open { .. }) => None,
        None => parse_headed(head, &mut spares),
    };
    m.is_some_and(|m| match m.body {
        Body::Chat(text) => m.name.is_some() && (more || !trim(&text).is_empty()),
        _ => m.dialect != Dialect::Colon,
    })
}

/// `bytes` as text when they are ASCII and, with `NO_NEWLINE`, hold no `\n`: the usual
/// case, checked 8 bytes at a time (`str::from_utf8` costs several times more on a short
/// line).
fn ascii_text<const NO_NEWLINE: bool>(bytes: &[u8]) -> Option<&str> {
    if !plain_ascii::<NO_NEWLINE>(bytes) {
        return None;
    }
    // SAFETY: ASCII is valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
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

/// What follows `<end>` (in any case, after leading spacing and byte order marks) at the
/// start of `line`, when it is a bracketed header: the next block, glued to the end of the
/// one before.
fn glued_after_end(line: &str) -> Option<&str> {
    let rest = skip_marks(line);
    let (end, next) = rest.split_at_checked(5)?;
    (end.eq_ignore_ascii_case("<end>") && bracket_addr(next).is_some()).then_some(next)
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
