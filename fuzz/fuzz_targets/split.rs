//! Fuzzes `peerchat::wire::split_for_wire`.
//!
//! Input layout: bytes 0..2 pick `header_len` (little endian, `% 1100`, so absurd headers
//! with no room for a character are covered too); byte 2 is a repeat count `r` (`r % 8 + 1`)
//! so that texts longer than `MAX_WIRE_MESSAGE` are easy to reach; the rest, as lossy
//! UTF-8 and repeated `r` times, is the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerchat::wire::{split_for_wire, MAX_WIRE_MESSAGE};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let header_len = usize::from(u16::from_le_bytes([data[0], data[1]])) % 1100;
    let repeat = usize::from(data[2] % 8) + 1;
    let text = String::from_utf8_lossy(&data[3..]).repeat(repeat);
    let budget = MAX_WIRE_MESSAGE.saturating_sub(header_len);

    let pieces = split_for_wire(&text, header_len);

    // "never returns an empty list"; "The pieces concatenate back to `text`".
    assert!(!pieces.is_empty(), "empty list for {} bytes", text.len());
    assert_eq!(pieces.concat(), text, "pieces do not concatenate to the text");
    // "Returns a single piece when the text already fits".
    if text.len() <= budget {
        assert_eq!(pieces, [text.as_str()], "a fitting text was split");
    }
    for piece in &pieces {
        // The only empty piece is the whole of an empty text.
        if piece.is_empty() {
            assert!(text.is_empty(), "empty piece in {} bytes of text", text.len());
        }
        // "`header_len + piece.len() <= MAX_WIRE_MESSAGE`"; "With an absurd `header_len`
        // (no room for a whole character) each piece still holds one character".
        if piece.len() > budget {
            assert_eq!(
                piece.chars().count(),
                1,
                "piece of {} bytes over the budget {budget} (header {header_len})",
                piece.len()
            );
        }
        // With room for any character (4 bytes), the limit is always met.
        if budget >= 4 {
            assert!(header_len + piece.len() <= MAX_WIRE_MESSAGE);
        }
    }
});
