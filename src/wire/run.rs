//! A run of lines ([`Body::Lines`](super::Body::Lines)): the plain lines one sender streams
//! after its header, kept as one text together with where each line ends, so that what
//! comes after the decoder (the node's history, the screen, a program's handler) walks
//! the lines without looking for `\n` again: the decoder found them once.

/// Several chat messages in a row from one sender: the lines, joined with `\n`, each
/// non-empty and without `\n` of its own.
///
/// ```
/// use peerchat::wire::Run;
/// let run = Run::from("one\ntwo");
/// assert_eq!(run.lines().collect::<Vec<_>>(), ["one", "two"]);
/// assert_eq!((run.line_count(), run.text()), (2, "one\ntwo"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The lines joined with `\n`.
    text: String,
    /// Where each line but the last ends in `text`: the offset of the `\n` after it.
    ends: Vec<u32>,
    /// Whether every line is known to be visible ASCII (nothing to escape on a screen).
    visible: bool,
}

impl Run {
    /// The largest text a run holds: its offsets are `u32`. (A turn decodes far less.)
    const MAX_TEXT: usize = u32::MAX as usize;

    /// The lines joined with `\n`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many lines (messages) it holds.
    pub fn line_count(&self) -> usize {
        self.ends.len() + 1
    }

    /// The lines from line `first` on (counted from 0), joined as in [`Run::text`]; `None`
    /// past the last.
    ///
    /// ```
    /// use peerchat::wire::Run;
    /// let run = Run::from("one\ntwo\nthree");
    /// assert_eq!(run.text_from(0), Some("one\ntwo\nthree"));
    /// assert_eq!(run.text_from(2), Some("three"));
    /// assert_eq!(run.text_from(3), None);
    /// ```
    pub fn text_from(&self, first: usize) -> Option<&str> {
        let start = match first.checked_sub(1) {
            None => 0,
            Some(end) => *self.ends.get(end)? as usize + 1,
        };
        self.text.get(start..)
    }

    /// Whether every line is known to be visible ASCII (0x20..=0x7E): a screen shows it
    /// as it is, with no escaping. (False says nothing: the line may be anything.)
    pub fn is_visible(&self) -> bool {
        self.visible
    }

    /// Its lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> + '_ {
        let text = self.text.as_str();
        let mut start = 0;
        let mut ends = self.ends.iter();
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            // `\n` is one byte: both sides of it are on character boundaries.
            let end = match ends.next() {
                Some(&end) => end as usize,
                None => {
                    done = true;
                    text.len()
                }
            };
            let line = text.get(start..end).unwrap_or_default();
            start = end + 1;
            Some(line)
        })
    }

    /// Where each line but the last ends in [`Run::text`]: the offset of the `\n` after
    /// it. (So `text[..=end]` pieces are lines with their `\n`, ready to write out.)
    pub(crate) fn ends(&self) -> &[u32] {
        &self.ends
    }

    /// Gives its buffers up, to start another run with them (see [`Run::start`]).
    pub(crate) fn into_parts(self) -> (String, Vec<u32>) {
        (self.text, self.ends)
    }

    /// A run whose first line is `first`, in the (emptied) buffers `text` and `ends`.
    pub(crate) fn start(mut text: String, mut ends: Vec<u32>, first: &str) -> Run {
        text.clear();
        ends.clear();
        text.push_str(first);
        Run {
            visible: is_visible(first),
            text,
            ends,
        }
    }

    /// Whether `bytes` more of text fit (the offsets are `u32`).
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.text.len().saturating_add(bytes) < Self::MAX_TEXT
    }

    /// Adds one line after the others.
    pub(crate) fn push_line(&mut self, line: &str) {
        self.ends.push(self.text.len() as u32);
        self.text.push('\n');
        self.text.push_str(line);
        self.visible &= is_visible(line);
    }

    /// Adds `lines` (lines joined with `\n`, `ends` where each but the last ends in it,
    /// relative to it, `visible` whether all are known to be visible ASCII), copying the
    /// text at once.
    pub(crate) fn push_joined(
        &mut self,
        lines: &str,
        ends: impl Iterator<Item = usize>,
        visible: bool,
    ) {
        self.visible &= visible;
        let base = self.text.len() + 1;
        self.ends.push(self.text.len() as u32);
        self.ends.extend(ends.map(|end| (base + end) as u32));
        self.text.push('\n');
        self.text.push_str(lines);
    }

    /// Room for `bytes` more of text and `lines` more lines.
    pub(crate) fn reserve(&mut self, bytes: usize, lines: usize) {
        self.text.reserve(bytes);
        self.ends.reserve(lines);
    }

    /// The capacity of its text buffer.
    pub(crate) fn capacity(&self) -> usize {
        self.text.capacity()
    }
}

/// A run of the `\n`-separated lines of `text` (tests and examples; the decoder builds
/// its runs line by line).
impl From<&str> for Run {
    fn from(text: &str) -> Run {
        let ends = memchr::memchr_iter(b'\n', text.as_bytes())
            .map(|end| end as u32)
            .collect();
        Run {
            text: text.to_owned(),
            ends,
            visible: text.split('\n').all(is_visible),
        }
    }
}

/// Whether `line` is visible ASCII, 0x20..=0x7E.
fn is_visible(line: &str) -> bool {
    visible_ascii::<false>(line.as_bytes())
}

/// Whether every byte of `bytes` is visible ASCII (0x20..=0x7E), or `\n` too with
/// `NEWLINES` (the lines of a run; the screen's escaping asks without). One pass the
/// compiler vectorises: less 0x20 (wrapping), a visible byte is below 0x5F and any other
/// at or above (a `\n` allowed counts as 0). The largest of those, kept per lane of 32 (a
/// fold into one value was not vectorised: 0.5 ns a byte against 0.06), says whether any
/// byte is neither; the bytes after the last block of 32 are the last 32 again when there
/// are that many. Without `NEWLINES`, up to [`SHORT`] bytes (a short chat line) are tested
/// as a few words instead ([`visible_ascii_short`]).
#[inline(always)]
pub(crate) fn visible_ascii<const NEWLINES: bool>(bytes: &[u8]) -> bool {
    if !NEWLINES {
        if let Some(visible) = visible_ascii_short(bytes) {
            return visible;
        }
    }
    visible_ascii_pass::<NEWLINES>(bytes)
}

/// The longest text [`visible_ascii_short`] looks at.
const SHORT: usize = 32;

/// Whether every byte of `bytes` is visible ASCII (0x20..=0x7E), for at most [`SHORT`]
/// bytes (`None` for more), tested as a few words: the first, middle and last byte of one
/// to three (which are all of them), two overlapping halves of four to seven, eight at a
/// time and the last eight of more. Inlined where it is asked: a loop's setup, or a call,
/// would cost more than the test.
#[inline(always)]
pub(crate) fn visible_ascii_short(bytes: &[u8]) -> Option<bool> {
    let visible = |word: u64| invisible_bytes(word) == 0;
    let eight = |w: &[u8]| <[u8; 8]>::try_from(w).is_ok_and(|w| visible(u64::from_le_bytes(w)));
    match bytes.len() {
        0 => Some(true),
        n @ 1..=3 => {
            let (a, b, c) = (bytes[0], bytes[n / 2], bytes[n - 1]);
            Some(visible(u64::from_le_bytes([a, b, c, a, a, a, a, a])))
        }
        n @ 4..=7 => {
            // (Four bytes each: `try_from` never fails.)
            let half = |w: &[u8]| <[u8; 4]>::try_from(w).map_or(0, u32::from_le_bytes);
            Some(visible(
                u64::from(half(&bytes[..4])) | u64::from(half(&bytes[n - 4..])) << 32,
            ))
        }
        n @ 8..=SHORT => Some(bytes.chunks_exact(8).all(eight) && eight(&bytes[n - 8..])),
        _ => None,
    }
}

/// [`visible_ascii`] of any length, as one pass (with AVX2 where it pays).
fn visible_ascii_pass<const NEWLINES: bool>(bytes: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= AVX2_FROM && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        return unsafe { visible_avx2::<NEWLINES>(bytes) };
    }
    visible_lanes::<NEWLINES>(bytes)
}

/// `a == b`, with short texts (names, mostly) compared as at most two overlapping words
/// each instead of by a call to `memcmp`, which costs more than the comparison (inlined
/// where it is asked, for the same reason).
#[inline(always)]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    same_bytes(a.as_bytes(), b.as_bytes())
}

/// [`same_text`] for bytes: up to 32 bytes compared as at most two overlapping chunks of
/// a fixed size.
#[inline(always)]
pub(super) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    match n {
        0 => true,
        // The first, middle and last bytes are all of them.
        1..=3 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
        4..=7 => {
            a.first_chunk::<4>() == b.first_chunk::<4>()
                && a.last_chunk::<4>() == b.last_chunk::<4>()
        }
        8..=16 => {
            a.first_chunk::<8>() == b.first_chunk::<8>()
                && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        17..=32 => {
            a.first_chunk::<16>() == b.first_chunk::<16>()
                && a.last_chunk::<16>() == b.last_chunk::<16>()
        }
        _ => a == b,
    }
}

/// From this many bytes on, [`visible_ascii`] uses AVX2 where the CPU has it: 32-byte
/// vectors, in a loop of three instructions a vector (five with `\n` allowed). The
/// portable pass, compiled for SSE2, takes three times as many for `\n` allowed (1 KiB
/// lines: 0.72 instructions a byte), and compiled for AVX2 it unrolls into a loop larger
/// than what it saves.
#[cfg(target_arch = "x86_64")]
const AVX2_FROM: usize = 128;

/// [`visible_ascii`]'s pass with AVX2 for at least 32 bytes (the last 32 are read again
/// for what is left after the 32-byte blocks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn visible_avx2<const NEWLINES: bool>(bytes: &[u8]) -> bool {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_setzero_si256,
    };
    let newline = _mm256_set1_epi8(b'\n' as i8);
    let mut top = _mm256_setzero_si256();
    let mut fold = |block: &[u8; 32]| {
        // SAFETY: reads the 32 bytes of `block`; an unaligned load needs no alignment.
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
        let allowed = match NEWLINES {
            true => _mm256_cmpeq_epi8(v, newline),
            false => _mm256_setzero_si256(),
        };
        top = fold_visible(top, v, allowed);
    };
    let (blocks, rest) = bytes.as_chunks::<32>();
    blocks.iter().for_each(&mut fold);
    match bytes.last_chunk::<32>() {
        Some(last) if !rest.is_empty() => fold(last),
        Some(_) => {}
        None => return visible_lanes::<NEWLINES>(bytes),
    }
    all_visible(top)
}

/// One step of the AVX2 visibility test (here and in the stream scan): `v` less 0x20
/// (wrapping), its `allowed` lanes (a `\n`) counted as 0, folded into `top`, the lanes'
/// largest so far. A visible byte gives 0..=0x5E, any other byte more.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn fold_visible(
    top: std::arch::x86_64::__m256i,
    v: std::arch::x86_64::__m256i,
    allowed: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::{
        _mm256_andnot_si256, _mm256_max_epu8, _mm256_set1_epi8, _mm256_sub_epi8,
    };
    let flag = _mm256_sub_epi8(v, _mm256_set1_epi8(0x20));
    _mm256_max_epu8(top, _mm256_andnot_si256(allowed, flag))
}

/// Whether every byte folded into `top` by [`fold_visible`] was visible (or allowed).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn all_visible(top: std::arch::x86_64::__m256i) -> bool {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_max_epu8, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    let limit = _mm256_set1_epi8(0x5e);
    _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(top, limit), limit)) == -1
}

/// The pass of [`visible_ascii`] over lanes of 32 bytes.
#[inline(always)]
fn visible_lanes<const NEWLINES: bool>(bytes: &[u8]) -> bool {
    let flag = |b: u8| match NEWLINES {
        true => b.wrapping_sub(0x20) & 0u8.wrapping_sub(u8::from(b != b'\n')),
        false => b.wrapping_sub(0x20),
    };
    let mut lanes = [0u8; 32];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, &b) in lanes.iter_mut().zip(block) {
            *lane = (*lane).max(flag(b));
        }
    }
    let rest = match bytes.len().checked_sub(32) {
        Some(start) => &bytes[start..],
        None => blocks.remainder(),
    };
    let top = rest.iter().map(|&b| flag(b)).fold(0, u8::max);
    lanes.iter().fold(top, |top, &lane| top.max(lane)) < 0x5f
}

/// The top bit of each byte of `word` that is not visible ASCII (0x20..=0x7E): zero
/// when all eight are. A byte below 0x20 has its top bit set by the borrow of taking 0x20
/// from each (for bytes below 0x80), one above 0x7E by adding 1 (or it is set already).
#[inline(always)]
fn invisible_bytes(word: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const TOPS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = word.wrapping_sub(ONES * 0x20) & !word;
    let above = word.wrapping_add(ONES) | word;
    (below | above) & TOPS
}

/// Two runs are equal when their lines are (the ends follow from the text).
impl PartialEq for Run {
    fn eq(&self, other: &Run) -> bool {
        self.text == other.text
    }
}

impl Eq for Run {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of texts to 40 bytes that differ at one place (or in length) compares
    /// as `==` does.
    #[test]
    fn same_text_answers_as_equality_does() {
        let base: String = (0..40u8).map(|i| char::from(b'0' + i)).collect();
        for len in 0..=40 {
            let a = &base[..len];
            assert!(same_text(a, a));
            for other in 0..=40 {
                assert_eq!(same_text(a, &base[..other]), len == other, "{len} {other}");
            }
            for at in 0..len {
                let mut b = a.as_bytes().to_vec();
                b[at] = b'Z';
                let b = String::from_utf8(b).expect("ASCII");
                assert!(!same_text(a, &b), "{a:?} {b:?}");
            }
        }
        assert!(same_text("nämé", "nämé") && !same_text("nämé", "näme"));
    }

    #[test]
    fn lines_pushed_one_by_one_or_joined_come_back_as_they_went_in() {
        let mut run = Run::start(String::from("junk"), vec![7], "one");
        run.push_line("two");
        run.push_joined("three\nfour\nfive", [5, 10].into_iter(), true);
        run.push_line("six");
        let want = ["one", "two", "three", "four", "five", "six"];
        assert_eq!(run.lines().collect::<Vec<_>>(), want);
        assert_eq!(run.line_count(), 6);
        assert_eq!(run, Run::from("one\ntwo\nthree\nfour\nfive\nsix"));
        assert_eq!(
            Run::from("one\ntwo\nthree\nfour\nfive\nsix")
                .lines()
                .collect::<Vec<_>>(),
            want
        );
    }

    #[test]
    fn a_run_is_visible_only_while_every_line_is_visible_ascii() {
        assert!(Run::from("one\ntwo ~").is_visible());
        for odd in [
            "tab\there",
            "esc\u{1b}[2J",
            "caf\u{e9}",
            "del\u{7f}",
            "cr\r",
        ] {
            assert!(!Run::from(odd).is_visible(), "{odd:?}");
            let mut run = Run::start(String::new(), Vec::new(), "fine");
            run.push_line(odd);
            assert!(!run.is_visible(), "{odd:?}");
            let mut run = Run::start(String::new(), Vec::new(), "fine");
            run.push_joined(odd, std::iter::empty(), false);
            run.push_line("fine again");
            assert!(!run.is_visible(), "{odd:?}");
        }
    }

    /// The in-place test of short lines says "visible ASCII" exactly when every byte is:
    /// every byte value at every position of every length it takes, among the highest and
    /// the lowest visible byte (where its bounds lie); `None` past [`SHORT`].
    #[test]
    fn the_short_line_test_agrees_with_a_byte_by_byte_one() {
        let visible = |bytes: &[u8]| bytes.iter().all(|b| (0x20..=0x7e).contains(b));
        for len in 0..=SHORT + 9 {
            for fill in [b'~', b' '] {
                let mut bytes = vec![fill; len];
                for at in 0..len.max(1) {
                    for b in 0..=u8::MAX {
                        if let Some(slot) = bytes.get_mut(at) {
                            *slot = b;
                        }
                        let want = (len <= SHORT).then(|| visible(&bytes));
                        assert_eq!(visible_ascii_short(&bytes), want, "{b:#x} at {at} of {len}");
                    }
                    if let Some(slot) = bytes.get_mut(at) {
                        *slot = fill;
                    }
                }
            }
        }
    }

    /// Every length to well past where AVX2 takes over, one odd byte at every place
    /// (among visible bytes and `\n`s): the answer is the byte-by-byte one.
    #[test]
    fn the_visibility_pass_agrees_with_the_byte_by_byte_test() {
        let model = |bytes: &[u8], newlines: bool| {
            bytes
                .iter()
                .all(|&b| (0x20..=0x7e).contains(&b) || (newlines && b == b'\n'))
        };
        let odd = [0x00, b'\n', b'\t', 0x1f, b' ', b'~', 0x7f, 0x80, 0xc3, 0xff];
        for len in 0..300 {
            let base: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 37 == 5 {
                        b'\n'
                    } else {
                        b'!' + (i % 90) as u8
                    }
                })
                .collect();
            for at in 0..=len {
                for o in odd {
                    let mut bytes = base.clone();
                    if let Some(b) = bytes.get_mut(at) {
                        *b = o;
                    }
                    let (with, without) = (
                        visible_ascii::<true>(&bytes),
                        visible_ascii::<false>(&bytes),
                    );
                    assert_eq!(with, model(&bytes, true), "len {len} {o:#x} at {at}");
                    assert_eq!(without, model(&bytes, false), "len {len} {o:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn a_run_of_one_line_has_one_line() {
        let run = Run::from("alone");
        assert_eq!(run.lines().collect::<Vec<_>>(), ["alone"]);
        assert_eq!(run.line_count(), 1);
    }
}
