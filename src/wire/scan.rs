//! Where the lines of a read end, and whether they are visible ASCII, in one pass: the
//! decoder's inner loop on a stream of plain lines (`Decoder::extend_run`).
//!
//! Short lines: looking for each `\n` with its own `memchr` call and then testing the
//! lines for visibility in a second pass costs more per line than one pass over 32 bytes
//! at a time that yields both (callgrind, a stream of 100-byte lines: 30 instructions a
//! line less with SSE2's two 16-byte vectors a step, 39 more with AVX2's one). Long
//! lines: `memchr` (128 bytes a step) and the second pass (itself AVX2 from 128 bytes on)
//! cost less per byte than the one pass (1 KiB lines: 312 instructions a line less than
//! its SSE2 form). So the length of the first line picks the way. The one pass is
//! AVX2's, where the CPU has it (detected at run time, once); elsewhere `memchr` always,
//! and visibility is left to the caller.

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
    if first < LONG && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        return unsafe { newlines_avx2(bytes, line) };
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

/// [`newlines`] 32 bytes a step: one vector compared with `\n` gives a 32-bit mask of
/// the ends in the step, walked bit by bit; the same vector goes through the visibility
/// test's step (`run::fold_visible`, its `\n` lanes allowed). The last bytes (fewer than
/// 32) go one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn newlines_avx2(bytes: &[u8], mut line: impl FnMut(usize) -> bool) -> bool {
    use super::run::{all_visible, fold_visible};
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
        _mm256_setzero_si256,
    };
    let newline = _mm256_set1_epi8(b'\n' as i8);
    let mut top = _mm256_setzero_si256();
    // Whether the steps folded before the last `\n` found were all visible.
    let mut clean = true;
    let (steps, rest) = bytes.as_chunks::<32>();
    let mut base = 0;
    for step in steps {
        // SAFETY: reads the 32 bytes of `step`; an unaligned load needs no alignment.
        let v = unsafe { _mm256_loadu_si256(step.as_ptr().cast()) };
        let nl = _mm256_cmpeq_epi8(v, newline);
        top = fold_visible(top, v, nl);
        // The sign bit of each lane.
        let mut ends = _mm256_movemask_epi8(nl) as u32;
        if ends != 0 {
            // Folded before `line` is called: every vector register is the caller's to
            // save across a call, and `top` live across it was written to memory and read
            // back at every step, a chain through memory where perf found over half of
            // the scan's time on 100-byte lines.
            clean &= all_visible(top);
            top = _mm256_setzero_si256();
            while ends != 0 {
                if !line(base + ends.trailing_zeros() as usize) {
                    return clean;
                }
                ends &= ends - 1;
            }
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
    tail_clean && clean && all_visible(top)
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
            #[cfg(target_arch = "x86_64")]
            let vouched = std::arch::is_x86_feature_detected!("avx2");
            #[cfg(not(target_arch = "x86_64"))]
            let vouched = false;
            assert_eq!(clean, vouched, "size {size}");
        }
    }
}
