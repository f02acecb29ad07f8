//! A run's lines written out each after the same start (`[st 127.0.0.73:9] `): the
//! screen's inner loop on a stream of short lines, where two `push_str` a line (a
//! capacity check and a `memcpy` call each) were most of the rendering's instructions.
//!
//! Here the room is reserved once, and a start of at most [`BLOCK`] bytes is copied as
//! one fixed block of that size (a couple of vector moves, no call), the bytes past it
//! being overwritten by the line that follows.

use std::ptr;

/// The largest start copied as a fixed block; a longer one takes the plain way.
const BLOCK: usize = 32;

/// Appends to `out`, for each line of `text`, `start`, the line and `\n`. `ends` holds
/// where each line but the last ends in `text`: the offset of the `\n` after it, in
/// increasing order (a [`Run`](crate::wire::Run)'s ends). Offsets that do not point at a
/// `\n` of `text` in order (never, from a run) are not trusted: from the first of them
/// on, the lines go the plain way, which never reads out of `text`.
pub fn push_prefixed(out: &mut String, start: &str, text: &str, ends: &[u32]) {
    let lines = ends.len() + 1;
    let total = start
        .len()
        .checked_mul(lines)
        .and_then(|starts| starts.checked_add(text.len()))
        .and_then(|n| n.checked_add(1 + BLOCK));
    let (Some(room), true) = (total, start.len() <= BLOCK) else {
        return push_plain(out, start, text, 0, ends);
    };
    out.reserve(room);
    let mut block = [0u8; BLOCK];
    block[..start.len()].copy_from_slice(start.as_bytes());
    let bytes = text.as_bytes();
    let mut from = 0;
    let mut written = 0;
    // SAFETY: `out` has room for `room` more bytes, and what is written stays within
    // it: the pieces are `start` and the line from `from` up to a checked `\n` (so the
    // lines written cover `text` at most once), each block of `BLOCK` bytes written at
    // most `BLOCK - start.len()` bytes past the piece it stands for, and those are
    // written over by the next piece or left beyond the length. What the length then
    // takes in is `start` and whole lines of `text`, each with its `\n`: UTF-8, as both
    // are and a `\n` is a character boundary.
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
            ptr::copy_nonoverlapping(block.as_ptr(), base.add(written), BLOCK);
            written += start.len();
            ptr::copy_nonoverlapping(bytes.as_ptr().add(from), base.add(written), line);
            written += line;
            from = end + 1;
        }
        let last = bytes.len() - from;
        ptr::copy_nonoverlapping(block.as_ptr(), base.add(written), BLOCK);
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
        let end = end as usize + 1;
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
        let mut seed = 7u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
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

    /// Offsets that are not a run's (out of the text, backwards, not at a `\n`) never
    /// read out of the text, and the lines before the first of them are as they were.
    #[test]
    fn untrusted_ends_stay_within_the_text() {
        let text = "one\ntwo\nthree";
        for bad in [
            [3, 1],
            [3, 100],
            [3, 5],
            [3, u32::MAX],
            [u32::MAX, 7],
            [7, 3],
        ] {
            let mut out = String::new();
            push_prefixed(&mut out, "> ", text, &bad);
            if bad[0] == 3 {
                assert!(out.starts_with("> one\n"), "{bad:?}: {out:?}");
            }
            assert!(out.ends_with('\n'), "{bad:?}: {out:?}");
        }
    }
}
