//! A run's lines written out each after the same start (`[st 127.0.0.73:9] `): the
//! screen's inner loop on a stream of short lines, where two `push_str` a line (a
//! capacity check and a `memcpy` call each) were most of the rendering's instructions.
//!
//! Here the room is reserved once, and a start of at most [`BLOCK`] bytes is copied as
//! one fixed block of that size (a couple of vector moves, no call). What the block
//! writes past the start is written over by the pieces that follow, or left beyond the
//! string's length.

use std::ptr;

/// The largest start copied as a fixed block; a longer one takes the plain way. A
/// terminal's start, with a timestamp and colours, is about 47 bytes; a start for a
/// file or a pipe (`[st 127.0.0.73:9] `) is less than half that, and takes a block of
/// [`SHORT`] bytes (half the moves).
const BLOCK: usize = 64;
/// The block for a short start.
const SHORT: usize = 32;

/// Appends to `out`, for each line of `text`, `start`, the line and `\n`. `ends` holds
/// where each line but the last ends in `text`: the offset of the `\n` after it, in
/// increasing order (a [`Run`](crate::wire::Run)'s ends; ends that skip a `\n` make
/// one piece of two lines, as they would line by line). Offsets that do not point at a
/// `\n` of `text` in order (never, from a run) are not trusted: from the first of them
/// on, the pieces go the plain way, which reads only `text` and cuts it only where
/// `str` slicing allows.
pub fn push_prefixed(out: &mut String, start: &str, text: &str, ends: &[u32]) {
    match start.len() {
        len if len <= SHORT => push_blocks::<SHORT>(out, start, text, ends),
        len if len <= BLOCK => push_blocks::<BLOCK>(out, start, text, ends),
        _ => push_plain(out, start, text, 0, ends),
    }
}

/// [`push_prefixed`] for a start of at most `B` bytes, copied as a block of `B`.
fn push_blocks<const B: usize>(out: &mut String, start: &str, text: &str, ends: &[u32]) {
    let lines = ends.len() + 1;
    let total = start
        .len()
        .checked_mul(lines)
        .and_then(|starts| starts.checked_add(text.len()))
        .and_then(|n| n.checked_add(1 + B));
    let (Some(room), true) = (total, start.len() <= B) else {
        return push_plain(out, start, text, 0, ends);
    };
    out.reserve(room);
    let mut block = [0u8; B];
    block[..start.len()].copy_from_slice(start.as_bytes());
    let bytes = text.as_bytes();
    let mut from = 0;
    let mut written = 0;
    // SAFETY:
    // - Reads stay within `text`: each end taken is checked to be a `\n` of `text`
    //   (`bytes.get`) at or after `from`, so each piece `from..=end` lies in `text`, and
    //   `from` moves past it; the last piece is `from..text.len()`. So the pieces cover
    //   `text` at most once, in order.
    // - Writes stay within the room reserved: the pieces and their starts come to at
    //   most `start.len() * lines + text.len()` bytes, the `\n` after the last one more,
    //   and a block, written where a start goes, reaches at most `B` bytes past where
    //   that start begins (`room` counts `B` more than the pieces and the `\n`).
    // - What the new length takes in is UTF-8: it is the starts (a `str`) and the pieces
    //   in order, written one after the other, each block's bytes past its start written
    //   over by the next piece or left beyond the length; each piece is `str` cut at
    //   `from`, 0 or just after a `\n` (a character of its own), and at a `\n` or the
    //   end of `text`; the last byte is a `\n`. On an untrusted end, the length takes in
    //   only the pieces written before it.
    unsafe {
        let vec = out.as_mut_vec();
        let base = vec.as_mut_ptr().add(vec.len());
        for (i, &end) in ends.iter().enumerate() {
            let end = end as usize;
            if end < from || bytes.get(end) != Some(&b'\n') {
                vec.set_len(vec.len() + written);
                return push_plain(out, start, text, from, ends.get(i..).unwrap_or_default());
            }
            let line = end + 1 - from;
            ptr::copy_nonoverlapping(block.as_ptr(), base.add(written), B);
            written += start.len();
            ptr::copy_nonoverlapping(bytes.as_ptr().add(from), base.add(written), line);
            written += line;
            from = end + 1;
        }
        let last = bytes.len() - from;
        ptr::copy_nonoverlapping(block.as_ptr(), base.add(written), B);
        written += start.len();
        ptr::copy_nonoverlapping(bytes.as_ptr().add(from), base.add(written), last);
        written += last;
        *base.add(written) = b'\n';
        written += 1;
        vec.set_len(vec.len() + written);
    }
}

/// [`push_prefixed`] with two `push_str` a line, from offset `from` of `text` on; `ends`
/// as there, those before `from` left out. Whatever the offsets, it reads only `text`.
fn push_plain(out: &mut String, start: &str, text: &str, mut from: usize, ends: &[u32]) {
    for &end in ends {
        let end = (end as usize).saturating_add(1);
        out.push_str(start);
        out.push_str(text.get(from..end).unwrap_or_default());
        from = end;
    }
    out.push_str(start);
    out.push_str(text.get(from..).unwrap_or_default());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Run;

    /// What each line after `start` comes to, line by line.
    fn one_by_one(start: &str, run: &Run) -> String {
        run.lines().map(|line| format!("{start}{line}\n")).collect()
    }

    /// Every start length around the block, lines of every length around it, one line
    /// or many, after text already in the buffer: the same as line by line.
    #[test]
    fn the_lines_come_out_as_one_by_one() {
        let mut rng = crate::sim::rng::Rng::new(7);
        let mut next = |n: usize| rng.index(n);
        for start_len in 0..=BLOCK + 3 {
            let start: String = (0..start_len)
                .map(|i| (b'A' + (i % 26) as u8) as char)
                .collect();
            for _ in 0..40 {
                let lines: Vec<String> = (0..1 + next(12))
                    .map(|_| {
                        let len = 1 + next(3 * BLOCK);
                        (0..len)
                            .map(|i| ["x", "\u{e9}", "\u{20ac}"][(i + len) % 3])
                            .collect()
                    })
                    .collect();
                let run = Run::from(lines.join("\n").as_str());
                let mut out = String::from("before\n");
                push_prefixed(&mut out, &start, run.text(), run.ends());
                assert_eq!(out, format!("before\n{}", one_by_one(&start, &run)));
            }
        }
    }

    /// Offsets that are not a run's (out of the text, backwards, inside a character, not
    /// at a `\n`), over text that is not ASCII: the same as the plain way, which reads
    /// only the text and cuts it only where `str` slicing allows, whatever the offsets.
    #[test]
    fn untrusted_ends_go_the_plain_way() {
        let mut rng = crate::sim::rng::Rng::new(11);
        let mut next = |n: usize| rng.index(n);
        let (full, over) = ("s".repeat(BLOCK), "s".repeat(BLOCK + 1));
        let (short, over_short) = ("s".repeat(SHORT), "s".repeat(SHORT + 1));
        let starts = ["", "> ", "\u{e9}\u{e9} ", &short, &over_short, &full, &over];
        for _ in 0..20_000 {
            let text: String = (0..next(40))
                .map(|_| ["a", "\n", "\u{e9}", "\u{20ac}", "\u{1f600}", "\r"][next(6)])
                .collect();
            let ends: Vec<u32> = (0..next(6))
                .map(|_| match next(4) {
                    0 => u32::MAX - next(2) as u32,
                    _ => next(text.len() + 3) as u32,
                })
                .collect();
            let start = starts[next(starts.len())];
            let mut fast = String::from("before ");
            push_prefixed(&mut fast, start, &text, &ends);
            let mut plain = String::from("before ");
            push_plain(&mut plain, start, &text, 0, &ends);
            assert_eq!(fast, plain, "{text:?} {ends:?} {start:?}");
        }
    }
}
