//! Where the lines of a read end, and whether they are visible ASCII, in one pass: the
//! decoder's inner loop on a stream of plain lines (`Decoder::extend_run`).
//!
//! Short lines: looking for each `\n` with its own `memchr` call and then testing the
//! lines for visibility in a second pass costs more per line than one pass over 32 bytes
//! at a time that yields both (callgrind, a stream of 100-byte lines: 30 instructions a
//! line less). Long lines: `memchr` (128 bytes a step with AVX2) and the second pass cost
//! less per byte than the one pass (1 KiB lines: 312 instructions a line less), which
//! uses only SSE2: every x86_64 CPU has it (the architecture's baseline, so there is
//! nothing to detect at run time). So the length of the first line picks the way; off
//! x86_64, `memchr` always, and visibility is left to the caller.

/// A first line this long or longer (`\n` excluded) is taken as a sign of long lines,
/// which `memchr` finds faster.
#[cfg(target_arch = "x86_64")]
const LONG: usize = 256;

/// Calls `line(end)` with the offset of each `\n` in `bytes`, in order, until it returns
/// false or the bytes end; `first` is where the first `\n` is, if known (the length of
/// the first line picks the way to look). Returns true only when every byte up to the
/// last `\n` that `line` accepted is visible ASCII (0x20..=0x7E) or `\n`; false says
/// nothing (bytes after that `\n` may be what was not visible, or the pass did not
/// look), so the caller tests the bytes it took itself then.
pub(super) fn newlines(bytes: &[u8], first: usize, line: impl FnMut(usize) -> bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    if first < LONG {
        // SAFETY: SSE2 is part of the x86_64 baseline: every CPU this code runs on has
        // the target feature `newlines_sse2` is compiled for.
        return unsafe { newlines_sse2(bytes, line) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = first;
    newlines_memchr(bytes, line)
}

/// [`newlines`] with `memchr`: it never vouches for visibility.
fn newlines_memchr(bytes: &[u8], mut line: impl FnMut(usize) -> bool) -> bool {
    for end in memchr::memchr_iter(b'\n', bytes) {
        if !line(end) {
            break;
        }
    }
    false
}

/// [`newlines`] 32 bytes a step: two 16-byte vectors compared with `\n` give a 32-bit
/// mask of the ends in the step, walked bit by bit; the same vectors, tested for
/// 0x20..=0x7E or `\n`, are folded into one vector of "every byte so far was" lanes. The
/// last bytes (fewer than 32) go one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn newlines_sse2(bytes: &[u8], mut line: impl FnMut(usize) -> bool) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: reads the 16 bytes of `half`; an unaligned load needs no alignment.
    let load = |half: &[u8; 16]| -> __m128i { unsafe { _mm_loadu_si128(half.as_ptr().cast()) } };
    let newline = _mm_set1_epi8(b'\n' as i8);
    // Visible ASCII as signed bytes: above 0x1F and below 0x7F (0x80 and up are negative).
    let (below, above) = (_mm_set1_epi8(0x1f), _mm_set1_epi8(0x7f));
    let seen = |v: __m128i, nl: __m128i| {
        let visible = _mm_and_si128(_mm_cmpgt_epi8(v, below), _mm_cmplt_epi8(v, above));
        _mm_or_si128(visible, nl)
    };
    // All lanes set while every byte looked at was visible or `\n`.
    let mut clean = _mm_set1_epi8(-1);
    let (steps, rest) = bytes.as_chunks::<32>();
    let mut base = 0;
    for step in steps {
        let (halves, _) = step.as_chunks::<16>();
        let [a, b] = halves else {
            break; // never: 32 bytes are two halves of 16
        };
        let (a, b) = (load(a), load(b));
        let (nl_a, nl_b) = (_mm_cmpeq_epi8(a, newline), _mm_cmpeq_epi8(b, newline));
        clean = _mm_and_si128(clean, _mm_and_si128(seen(a, nl_a), seen(b, nl_b)));
        // The sign bits of each lane: 16 bits a vector.
        let mut ends =
            (_mm_movemask_epi8(nl_a) as u32 & 0xffff) | (_mm_movemask_epi8(nl_b) as u32) << 16;
        while ends != 0 {
            if !line(base + ends.trailing_zeros() as usize) {
                return _mm_movemask_epi8(clean) == 0xffff;
            }
            ends &= ends - 1;
        }
        base += 32;
    }
    let mut tail_clean = true;
    for (i, &b) in rest.iter().enumerate() {
        if b == b'\n' {
            if !line(base + i) {
                break;
            }
        } else {
            tail_clean &= (0x20..0x7f).contains(&b);
        }
    }
    tail_clean && _mm_movemask_epi8(clean) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ends `newlines` reports (stopping after `limit`), and whether it vouched.
    fn run(
        f: fn(&[u8], &mut dyn FnMut(usize) -> bool) -> bool,
        bytes: &[u8],
        limit: usize,
    ) -> (Vec<usize>, bool) {
        let mut ends = Vec::new();
        let clean = f(bytes, &mut |end| {
            if ends.len() == limit {
                return false;
            }
            ends.push(end);
            true
        });
        (ends, clean)
    }

    fn fast(bytes: &[u8], line: &mut dyn FnMut(usize) -> bool) -> bool {
        newlines(bytes, 0, line)
    }

    fn slow(bytes: &[u8], line: &mut dyn FnMut(usize) -> bool) -> bool {
        newlines_memchr(bytes, line)
    }

    fn visible_or_newline(b: &[u8]) -> bool {
        b.iter().all(|&b| b == b'\n' || (0x20..=0x7e).contains(&b))
    }

    /// Every stop, on lines of every length around the step, with one odd byte anywhere:
    /// the ends are memchr's, and vouching is never wrong.
    #[test]
    fn the_ends_are_memchrs_and_a_clean_answer_is_true() {
        let odd = [0x00, b'\t', b'\r', 0x1f, 0x7f, 0x80, 0xc3, 0xff, b' ', b'~'];
        for len in 0..100 {
            let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for (i, b) in bytes.iter_mut().enumerate() {
                if i % 7 == 3 || i % 31 == 0 {
                    *b = b'\n';
                }
            }
            for at in 0..=len {
                for &o in &odd {
                    let mut bytes = bytes.clone();
                    if let Some(b) = bytes.get_mut(at) {
                        *b = o;
                    }
                    for limit in [0, 1, 2, 5, usize::MAX] {
                        let (ends, clean) = run(fast, &bytes, limit);
                        let (want, _) = run(slow, &bytes, limit);
                        assert_eq!(ends, want, "len {len} odd {o:#x} at {at} limit {limit}");
                        let upto = ends.last().map_or(0, |&e| e + 1);
                        if clean {
                            assert!(visible_or_newline(&bytes[..upto]), "len {len} at {at}");
                        }
                    }
                }
            }
        }
    }

    /// Visible lines are vouched for, however long.
    #[test]
    fn visible_lines_are_vouched_for() {
        for size in [1, 2, 15, 16, 17, 31, 32, 33, 100, 1024] {
            let mut line = vec![b'x'; size];
            line.push(b'\n');
            let bytes = line.repeat(40);
            let (ends, clean) = run(fast, &bytes, usize::MAX);
            assert_eq!(ends.len(), 40);
            assert_eq!(clean, cfg!(target_arch = "x86_64"), "size {size}");
        }
    }
}
