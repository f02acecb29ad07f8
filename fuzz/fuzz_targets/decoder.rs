//! Fuzzes `peerchat::wire::Decoder` with arbitrary bytes in arbitrary chunks.
//!
//! Input layout:
//!
//! - byte 0 (and 1): the limit. If byte 0 < 0x80, `max_line = 16 + byte0` (16..=143, small
//!   limits make the overflow paths reachable); else `max_line = 16 + (((byte0 & 0x7f) << 8
//!   | byte1) % 4081)` (16..=4096). Byte 1 is always consumed.
//! - byte 2: `n = byte2 % 16` chunk lengths follow (0: the payload is fed in one chunk).
//! - n bytes: chunk lengths, used cyclically; `b < 0xf0` is `b` bytes (0 = an empty `feed`),
//!   else `(b - 0xef) * 256` bytes.
//! - the rest: the payload, fed in those chunks, then `finish`.
//!
//! Only what `src/wire.rs` documents is asserted (see the comments at each check). A Chat
//! text may hold '\n' by design (bracketed blocks, JSON escapes), so that is not asserted
//! except for the dialects whose text comes from a single line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerchat::wire::{Body, DecodeError, Decoder, Dialect, Message};

struct Input<'a> {
    max_line: usize,
    chunks: Vec<usize>,
    payload: &'a [u8],
}

fn parse(data: &[u8]) -> Option<Input<'_>> {
    let (&b0, rest) = data.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    let max_line = if b0 < 0x80 {
        16 + usize::from(b0)
    } else {
        16 + ((usize::from(b0 & 0x7f) << 8 | usize::from(b1)) % 4081)
    };
    let (&n, rest) = rest.split_first()?;
    let n = usize::from(n % 16).min(rest.len());
    let (lens, payload) = rest.split_at(n);
    let mut chunks: Vec<usize> = lens
        .iter()
        .map(|&b| {
            if b < 0xf0 {
                usize::from(b)
            } else {
                usize::from(b - 0xef) * 256
            }
        })
        .collect();
    if chunks.iter().all(|&c| c == 0) {
        // No progress possible (or no chunking asked for): one chunk, plus the empty feeds.
        chunks.push(payload.len().max(1));
    }
    Some(Input {
        max_line,
        chunks,
        payload,
    })
}

/// `Decoder` doc: "Lines end at `\n` (a preceding `\r` is dropped); the last line may end at
/// EOF instead." Returns (longest line with its `\r` stripped, longest line as raw bytes).
fn longest_lines(payload: &[u8]) -> (usize, usize) {
    let mut stripped = 0;
    let mut raw = 0;
    for line in payload.split(|&b| b == b'\n') {
        raw = raw.max(line.len());
        stripped = stripped.max(line.strip_suffix(b"\r").unwrap_or(line).len());
    }
    (stripped, raw)
}

fn is_control_word(text: &str) -> bool {
    const WORDS: [&str; 7] = [
        "connect",
        "connection_request",
        "handshake",
        "connect_ack",
        "exit",
        "disconnect",
        "[peer_quit]",
    ];
    let t = text.trim();
    WORDS.iter().any(|w| t.eq_ignore_ascii_case(w))
}

fn check_message(m: &Message) {
    // "Ports must be digits only and in `1..=65535`".
    assert_ne!(m.port, Some(0), "port 0 in {m:?}");
    match m.dialect {
        // `Dialect::Raw`: "No header at all: only the socket's address identifies the sender."
        Dialect::Raw => assert!(
            m.name.is_none() && m.claimed_ip.is_none() && m.port.is_none(),
            "raw message with header fields: {m:?}"
        ),
        // These dialects carry `IP:PORT` (the port "the dialect does say").
        Dialect::Standard | Dialect::Spaced | Dialect::Bracketed => assert!(
            m.claimed_ip.is_some() && m.port.is_some(),
            "address dialect without ip/port: {m:?}"
        ),
        Dialect::KeyValue | Dialect::Colon => {
            assert!(m.port.is_some(), "port dialect without port: {m:?}")
        }
        Dialect::Persistent | Dialect::Json => {}
    }
    if let Some(name) = &m.name {
        // Names come from one line's tokens, except JSON's `sender_name` (which may hold an
        // escaped newline) and identities remembered from it (raw lines of a JSON or
        // persistent connection).
        if !matches!(m.dialect, Dialect::Json | Dialect::Persistent) {
            assert!(!name.contains('\n'), "newline in a one-line name: {m:?}");
        }
    }
    if let Body::Chat(text) = &m.body {
        // `Body::Chat`: "may be empty only if the sender sent a header with no text".
        if text.is_empty() {
            assert_ne!(m.dialect, Dialect::Raw, "empty raw chat: {m:?}");
        }
        // Only bracketed blocks (lines joined) and JSON (escapes) span lines.
        if !matches!(m.dialect, Dialect::Bracketed | Dialect::Json) {
            assert!(!text.contains('\n'), "newline in one-line text: {m:?}");
        }
        // "Control words ... only count as the *whole* trimmed message, in any case, for the
        // standard, spaced, bracketed, key/value, persistent and raw bodies" (colon and JSON
        // texts are always chat).
        if !matches!(m.dialect, Dialect::Colon | Dialect::Json) {
            assert!(!is_control_word(text), "control word left as chat: {m:?}");
        }
    }
}

/// Feeds `payload` in `chunks` (cyclically), checking the documented invariants after every
/// call; returns the messages and whether the decoder failed.
fn run(max_line: usize, chunks: &[usize], payload: &[u8]) -> (Vec<Message>, bool) {
    let mut decoder = Decoder::new(max_line);
    let mut out = Vec::new();
    let mut rest = payload;
    let mut failed = false;
    for &len in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        match decoder.feed(chunk, &mut out) {
            // `new`: "it also holds at most `max_line` bytes in total".
            Ok(()) => assert!(
                decoder.buffered() <= max_line,
                "buffered {} > max_line {max_line}",
                decoder.buffered()
            ),
            Err(e) => {
                assert_eq!(e, DecodeError::LineTooLong { limit: max_line });
                failed = true;
                break;
            }
        }
    }
    if failed {
        // `feed`: "after a failure the decoder holds nothing and every later call fails too";
        // module: "after an error the decoder stays failed and yields nothing more".
        assert_eq!(decoder.buffered(), 0, "a failed decoder holds bytes");
        let before = out.len();
        assert!(decoder.feed(b"x\n", &mut out).is_err());
        assert!(decoder.feed(b"", &mut out).is_err());
        decoder.finish(&mut out);
        assert_eq!(out.len(), before, "a failed decoder yielded more messages");
    } else {
        // `finish` "flushes whatever is pending": nothing is held afterwards, and a second
        // `finish` has nothing left to flush.
        decoder.finish(&mut out);
        assert_eq!(decoder.buffered(), 0, "bytes held after finish");
        let before = out.len();
        decoder.finish(&mut out);
        assert_eq!(out.len(), before, "a second finish yielded messages");
    }
    (out, failed)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = parse(data) else { return };
    let (out, failed) = run(input.max_line, &input.chunks, input.payload);

    // "A line longer than the limit is an error whatever the chunking". Whether a `\r`
    // before the `\n` counts towards the limit is not documented: only the clear cases.
    let (stripped, raw) = longest_lines(input.payload);
    if stripped > input.max_line {
        assert!(failed, "a line of {stripped} bytes > {} was accepted", input.max_line);
    }
    if raw <= input.max_line {
        assert!(!failed, "no line exceeds {} but the decoder failed", input.max_line);
    }

    for m in &out {
        check_message(m);
    }

    // The event loop "feeds it whatever `read` returned, in whatever chunks": when nothing
    // failed, the messages must not depend on the chunking.
    if !failed {
        let (whole, whole_failed) = run(input.max_line, &[input.payload.len().max(1)], input.payload);
        assert!(!whole_failed, "one chunk failed where chunks did not");
        assert_eq!(out, whole, "the chunking changed the messages");
    }
});
