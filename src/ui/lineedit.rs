//! A small line editor for the terminal, so that incoming messages can be printed while
//! the user types and the half-typed line drawn again after them.
//!
//! With the terminal in non-canonical mode, peerchat sees each key as it is typed and
//! keeps the line itself: printable text (UTF-8) inserted at the cursor, Left/Right (one
//! grapheme cluster at a time, so `é` typed as `e` plus a combining accent is one step),
//! Home/End (and Ctrl-A/Ctrl-E), Backspace and Delete, Ctrl-U / Ctrl-K (erase before /
//! after the cursor), Ctrl-W (erase a word), Up/Down (earlier lines), Ctrl-L (clear the
//! screen and redraw), Ctrl-D (delete the character under the cursor; on an empty line, end
//! of input), Enter. Other escape sequences (F1-F12, Insert, ...) are recognised and
//! ignored. Pure: bytes in, edits out.
//!
//! [`layout`] decides what the edited row shows on a screen `cols` columns wide, as in
//! linenoise's single-line mode: the prompt (its end after `...` when it would leave too
//! little room to type), then the window of the line that holds the cursor, never wider
//! than the screen minus one column (so that the terminal never wraps it, whatever its
//! wrapping rules). Widths are counted per grapheme cluster with `unicode-width` (`世`
//! takes two columns, a combining accent none); a tab is shown as spaces up to the next
//! multiple of 8 columns counted from the start of the typed text (not of the screen, so
//! that a tab keeps its width however the window scrolls); control and invisible
//! characters show escaped, as in received messages (`\u{202e}`).

use std::fmt::Write as _;

use unicode_segmentation::{GraphemeCursor, UnicodeSegmentation};
use unicode_width::UnicodeWidthStr;

use crate::ui::render::escape;

/// What a chunk of key bytes did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Enter was pressed: the finished line.
    Line(String),
    /// The line being typed changed (or should be redrawn).
    Changed,
    /// Ctrl-L: clear the screen, then draw the line again.
    Clear,
    /// Ctrl-D on an empty line.
    Eof,
    /// Tab: complete the word before the cursor ([`LineEditor::complete`]).
    Complete,
    /// Enter was pressed on a line that outgrew the limit (typed or pasted text beyond it
    /// was not taken): the line, this many bytes with what was not taken, is dropped, as
    /// an overlong line from a pipe is, rather than sent cut.
    Overlong(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Escape {
    #[default]
    None,
    /// Just saw ESC.
    Start,
    /// Inside `ESC [ ...` or `ESC O`, waiting for the final byte; `param` is the first
    /// number seen (`ESC [ 3 ~` is Delete, `ESC [ 15 ~` is F5), complete once `;` came.
    Sequence { param: u16, first_done: bool },
}

/// Lines kept for Up/Down.
const HISTORY: usize = 100;

/// Columns between tab stops, counted from the start of the typed text.
pub const TAB_WIDTH: usize = 8;

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: String,
    /// Byte offset of the cursor in `line` (always on a grapheme cluster boundary).
    cursor: usize,
    /// Bytes of a UTF-8 character not complete yet.
    partial: Vec<u8>,
    escape: Escape,
    last_was_cr: bool,
    max_len: usize,
    /// Bytes typed into the current line beyond `max_len`, which it did not take.
    dropped: usize,
    /// Earlier lines, oldest first, and which one Up/Down shows (`None`: the new line).
    history: Vec<String>,
    recalled: Option<usize>,
}

/// What the edited row shows: the prompt and a window of the line, and where the cursor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The text of the row, at most `cols - 1` columns wide (the prompt cut if need be).
    pub row: String,
    /// Its width in columns.
    pub width: usize,
    /// The cursor's column (0 is the first).
    pub cursor: usize,
}

impl LineEditor {
    /// An editor accepting lines of at most `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        LineEditor {
            max_len,
            ..Self::default()
        }
    }

    /// What has been typed so far on the current line.
    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.line
    }

    /// The cursor as a byte offset into [`LineEditor::text`].
    #[cfg(test)]
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// How many characters lie after the cursor.
    #[cfg(test)]
    pub fn chars_after_cursor(&self) -> usize {
        self.line[self.cursor..].chars().count()
    }

    /// The word before the cursor (back to the previous space), and whether it is the
    /// line's first word.
    pub fn word_before_cursor(&self) -> (&str, bool) {
        let before = &self.line[..self.cursor];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        (&before[start..], before[..start].trim().is_empty())
    }

    /// Tab, with `candidates` for the word before the cursor (the ones it starts): one is
    /// put in its place, followed by a space; several extend it to what they share. With no
    /// candidate, Tab is a tab character. Returns whether the line changed.
    pub fn complete(&mut self, candidates: &[String]) -> bool {
        let (word, _) = self.word_before_cursor();
        let word_len = word.len();
        let Some(first) = candidates.first() else {
            return self.insert("\t");
        };
        let mut shared = first.as_str();
        for c in &candidates[1..] {
            let common = shared
                .char_indices()
                .zip(c.chars())
                .find(|((_, a), b)| a != b)
                .map_or(shared.len().min(c.len()), |((i, _), _)| i);
            shared = &shared[..common];
        }
        let mut with = shared.to_owned();
        if candidates.len() == 1 {
            with.push(' ');
        }
        if with.len() <= word_len
            || !with.starts_with(&self.line[self.cursor - word_len..self.cursor])
        {
            return false;
        }
        self.insert(&with[word_len..])
    }

    /// The row to draw after `prompt` on a screen `cols` columns wide.
    pub fn view(&self, prompt: &str, cols: usize) -> View {
        layout(prompt, &self.line, self.cursor, cols)
    }

    /// Keeps a finished line for Up/Down (the caller decides which lines are worth it:
    /// see [`worth_remembering`]).
    pub fn remember(&mut self, line: &str) {
        if !line.trim().is_empty() && self.history.last().map(String::as_str) != Some(line) {
            if self.history.len() == HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.to_owned());
        }
    }

    /// Applies typed bytes; edits are pushed to `out` in order.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Edit>) {
        let mut changed = false;
        // Text read in a row is inserted at once (a paste is one insertion, not one per
        // character, each moving the rest of the line), before any key that is not text.
        let mut text = String::new();
        for (i, &b) in bytes.iter().enumerate() {
            if (b < 0x20 || b == 0x7f || self.escape != Escape::None) && !text.is_empty() {
                changed |= self.insert_fitting(&text);
                text.clear();
            }
            // Tab as the last byte read is a key pressed: complete. Inside a longer read (a
            // paste) it is text.
            let last = i + 1 == bytes.len();
            let was_cr = std::mem::replace(&mut self.last_was_cr, false);
            match self.escape {
                Escape::Start if b == b'[' || b == b'O' => {
                    self.escape = Escape::Sequence {
                        param: 0,
                        first_done: false,
                    };
                    continue;
                }
                // Esc, then a key that is not text (Enter, Backspace, Ctrl-U, Esc again):
                // that key does what it does (it was lost).
                Escape::Start if b < 0x20 || b == 0x7f => self.escape = Escape::None,
                Escape::Start => {
                    // Alt and a character (ESC before it): ignored.
                    self.escape = Escape::None;
                    continue;
                }
                Escape::Sequence { param, first_done } => {
                    if b.is_ascii_digit() && !first_done {
                        let param = param.saturating_mul(10).saturating_add(u16::from(b - b'0'));
                        self.escape = Escape::Sequence { param, first_done };
                    } else if b == b';' {
                        self.escape = Escape::Sequence {
                            param,
                            first_done: true,
                        };
                    } else if (0x40..=0x7e).contains(&b) {
                        self.escape = Escape::None;
                        changed |= self.key(b, param);
                    }
                    continue;
                }
                Escape::None => {}
            }
            if b < 0x80 || b & 0xc0 != 0x80 {
                // Anything but a continuation byte ends a half-received character.
                self.partial.clear();
            }
            match b {
                b'\n' if was_cr => {}
                b'\r' | b'\n' => {
                    self.last_was_cr = b == b'\r';
                    if changed {
                        out.push(Edit::Changed);
                        changed = false;
                    }
                    let dropped = std::mem::take(&mut self.dropped);
                    let line = self.enter();
                    out.push(match dropped {
                        0 => Edit::Line(line),
                        _ => Edit::Overlong(line.len() + dropped),
                    });
                }
                0x7f | 0x08 => changed |= self.delete_before(),
                0x01 => changed |= self.move_to(0),
                0x05 => changed |= self.move_to(self.line.len()),
                0x0b => {
                    changed |= self.cursor < self.line.len();
                    self.line.truncate(self.cursor);
                }
                0x15 => {
                    changed |= self.cursor > 0;
                    self.line.drain(..self.cursor);
                    self.cursor = 0;
                }
                0x17 => {
                    let before = self.line[..self.cursor].trim_end();
                    let start = before.rfind(' ').map_or(0, |i| i + 1);
                    changed |= start < self.cursor;
                    self.line.drain(start..self.cursor);
                    self.cursor = start;
                }
                0x04 if self.line.is_empty() => {
                    if changed {
                        out.push(Edit::Changed);
                    }
                    out.push(Edit::Eof);
                    return;
                }
                0x04 => changed |= self.delete_under(),
                0x0c => {
                    if changed {
                        out.push(Edit::Changed);
                        changed = false;
                    }
                    out.push(Edit::Clear);
                }
                0x1b => self.escape = Escape::Start,
                b'\t' if !last => changed |= self.insert("\t"),
                b'\t' => {
                    if changed {
                        out.push(Edit::Changed);
                        changed = false;
                    }
                    out.push(Edit::Complete);
                }
                0..=0x1f => {}
                _ => {
                    self.partial.push(b);
                    match std::str::from_utf8(&self.partial) {
                        Ok(s) => {
                            text.push_str(s);
                            self.partial.clear();
                        }
                        Err(e) if e.error_len().is_some() || self.partial.len() >= 4 => {
                            self.partial.clear(); // not UTF-8: dropped
                        }
                        Err(_) => {} // wait for the rest of the character
                    }
                }
            }
        }
        if !text.is_empty() {
            changed |= self.insert_fitting(&text);
        }
        if changed {
            out.push(Edit::Changed);
        }
    }

    /// The final byte of an escape sequence (`param`: its first number, if any).
    fn key(&mut self, last: u8, param: u16) -> bool {
        match (last, param) {
            (b'D', _) => self.move_to(self.prev_boundary()),
            (b'C', _) => self.move_to(self.next_boundary()),
            (b'H', _) | (b'~', 1 | 7) => self.move_to(0),
            (b'F', _) | (b'~', 4 | 8) => self.move_to(self.line.len()),
            (b'~', 3) => self.delete_under(),
            (b'A', _) => self.recall(true),
            (b'B', _) => self.recall(false),
            _ => false,
        }
    }

    /// Enter: hands over the line.
    fn enter(&mut self) -> String {
        self.cursor = 0;
        self.recalled = None;
        std::mem::take(&mut self.line)
    }

    /// Up (`back`) or Down through earlier lines.
    fn recall(&mut self, back: bool) -> bool {
        let next = match (self.recalled, back) {
            (None, true) => self.history.len().checked_sub(1),
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < self.history.len() => Some(i + 1),
            (Some(_), false) => None,
            (None, false) => return false,
        };
        let Some(i) = next else {
            if self.recalled.take().is_some() {
                self.dropped = 0;
                self.line.clear();
                self.cursor = 0;
                return true;
            }
            return false;
        };
        self.recalled = Some(i);
        self.dropped = 0;
        self.line = self.history[i].clone();
        self.cursor = self.line.len();
        true
    }

    fn prev_boundary(&self) -> usize {
        self.line[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.line[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    fn move_to(&mut self, to: usize) -> bool {
        let moved = to != self.cursor;
        self.cursor = to;
        moved
    }

    fn delete_before(&mut self) -> bool {
        let prev = self.prev_boundary();
        let changed = prev < self.cursor;
        self.line.drain(prev..self.cursor);
        self.cursor = prev;
        changed
    }

    fn delete_under(&mut self) -> bool {
        let next = self.next_boundary();
        let changed = next > self.cursor;
        self.line.drain(self.cursor..next);
        changed
    }

    /// Inserts as much of `s` as the line has room for (whole characters); what does not
    /// fit counts as dropped. Returns whether the line changed.
    fn insert_fitting(&mut self, s: &str) -> bool {
        let room = self.max_len.saturating_sub(self.line.len());
        if s.len() <= room {
            return self.insert(s);
        }
        let mut fits = room;
        while !s.is_char_boundary(fits) {
            fits -= 1;
        }
        let changed = fits > 0 && self.insert(&s[..fits]);
        self.dropped = self.dropped.saturating_add(s.len() - fits);
        changed
    }

    fn insert(&mut self, s: &str) -> bool {
        if self.line.is_empty() {
            // A new line (the one before was erased): nothing of it was refused yet.
            self.dropped = 0;
        }
        if self.line.len() + s.len() > self.max_len {
            self.dropped = self.dropped.saturating_add(s.len());
            return false;
        }
        self.line.insert_str(self.cursor, s);
        self.cursor += s.len();
        // A combining mark joins the cluster before it: keep the cursor on a boundary.
        if !self.on_boundary() {
            self.cursor = self.next_boundary_from_prev();
        }
        true
    }

    /// Whether the cursor sits between two grapheme clusters (looked at around the cursor,
    /// not from the start of the line: this runs at every insertion).
    fn on_boundary(&self) -> bool {
        if self.cursor == self.line.len() {
            return true;
        }
        GraphemeCursor::new(self.cursor, self.line.len(), true)
            .is_boundary(&self.line, 0)
            .unwrap_or_else(|_| {
                // Not expected with the whole line given; the slow way is always right.
                self.line
                    .grapheme_indices(true)
                    .any(|(i, _)| i == self.cursor)
            })
    }

    /// The end of the cluster that holds the cursor.
    fn next_boundary_from_prev(&self) -> usize {
        self.line
            .grapheme_indices(true)
            .map(|(i, g)| i + g.len())
            .find(|&end| end >= self.cursor)
            .unwrap_or(self.line.len())
    }
}

/// Whether a line typed at `prompt` belongs in the Up/Down history: commands and messages
/// do; the numbered menu's answers (`1`, `2`, `3`, `0` at the main prompt, and the
/// recipient's address and port it asks for) do not.
pub fn worth_remembering(prompt: &str, line: &str) -> bool {
    let answer = line.trim();
    if prompt.starts_with("Enter the recipient") {
        return false;
    }
    !(prompt == "> " && matches!(answer, "0" | "1" | "2" | "3"))
}

/// One grapheme cluster as drawn: what is written and how many columns it takes.
struct Cell<'a> {
    start: usize,
    shown: std::borrow::Cow<'a, str>,
    width: usize,
}

/// The cells of `text`, tabs expanded from column 0 of the text.
fn cells(text: &str) -> Vec<Cell<'_>> {
    let mut col = 0;
    let mut out = Vec::new();
    for (start, g) in text.grapheme_indices(true) {
        let cell = if g == "\t" {
            let width = TAB_WIDTH - col % TAB_WIDTH;
            Cell {
                start,
                shown: " ".repeat(width).into(),
                width,
            }
        } else {
            let mut escaped = String::new();
            escape(g, &mut escaped);
            if escaped == g {
                Cell {
                    start,
                    shown: g.into(),
                    width: g.width(),
                }
            } else {
                let width = escaped.width();
                Cell {
                    start,
                    shown: escaped.into(),
                    width,
                }
            }
        };
        col += cell.width;
        out.push(cell);
    }
    out
}

/// The display width of `text` as the editor draws it (tabs, escapes and wide characters
/// counted): the measure of every column peerchat lines up on a terminal (the edited row,
/// the `/peers` table).
pub fn display_width(text: &str) -> usize {
    cells(text).iter().map(|c| c.width).sum()
}

/// Columns the typed text keeps at least, when the row has twice as many, however long the
/// prompt: a prompt that would leave fewer is cut (see [`fit_prompt`]).
const MIN_TEXT: usize = 10;

/// What stands for the part of a prompt cut off.
const ELLIPSIS: &str = "...";

/// What a row of `cols` columns shows for `prompt` and `text` with the cursor at byte
/// `cursor`: the prompt (cut to leave room for the text: [`fit_prompt`]), then the part of
/// the text that holds the cursor, as in linenoise's single-line mode (the window starts at
/// the text's start while the cursor fits, and otherwise ends just after the cursor). At
/// most `cols - 1` columns are used, so that the cursor can stand after the last character
/// without the terminal wrapping. The prompt is drawn as the text is: control and
/// invisible characters escaped, so that it can hold no escape code (a peer's name goes in
/// it).
pub fn layout(prompt: &str, text: &str, cursor: usize, cols: usize) -> View {
    let usable = cols.saturating_sub(1);
    let mut row = String::with_capacity(prompt.len() + text.len());
    let pwidth = fit_prompt(prompt, usable, &mut row);
    let room = usable - pwidth;
    let cells = cells(text);
    // The cell the cursor is on (cells.len() at the end of the line).
    let at = cells
        .iter()
        .position(|c| c.start >= cursor)
        .unwrap_or(cells.len());
    let under = cells.get(at).map_or(0, |c| c.width);
    // Leftmost start such that everything up to and including the cursor's cell fits.
    let mut start = 0;
    let mut before: usize = cells[..at].iter().map(|c| c.width).sum();
    while start < at && before + under > room {
        before -= cells[start].width;
        start += 1;
    }
    let mut used = 0;
    let mut end = start;
    while end < cells.len() && used + cells[end].width <= room {
        used += cells[end].width;
        end += 1;
    }
    for c in &cells[start..end] {
        row.push_str(&c.shown);
    }
    View {
        row,
        width: pwidth + used,
        cursor: pwidth + before,
    }
}

/// Writes `prompt` as drawn on a row of `usable` columns to `row`; returns its width. A
/// prompt that leaves the typed text a quarter of the row (at least [`MIN_TEXT`] columns, or
/// half of a row narrower than twice that) is drawn whole. A longer one (a conversation
/// with a peer of a long name, the menu's questions on a narrow terminal) keeps its end
/// after an ellipsis: the end is what a user reads to know what to type (`...port number: `
/// or `...IP address: `, the last characters of the peer's name), and it keeps the `> ` or
/// `: ` that shows where the typed text starts, next to it; the ellipsis says that the
/// prompt is not all there. Whole grapheme clusters are kept, so a wide character is
/// never cut in half (the prompt is then a column narrower).
fn fit_prompt(prompt: &str, usable: usize, row: &mut String) -> usize {
    let cells = cells(prompt);
    let width: usize = cells.iter().map(|c| c.width).sum();
    let text_min = if usable >= 2 * MIN_TEXT {
        MIN_TEXT.max(usable / 4)
    } else {
        usable - usable / 2
    };
    let limit = usable - text_min;
    let (cells, width) = if width <= limit {
        (&cells[..], width)
    } else {
        let ellipsis = ELLIPSIS.width();
        if limit < ellipsis {
            return 0;
        }
        let mut start = cells.len();
        let mut kept = ellipsis;
        while start > 0 && kept + cells[start - 1].width <= limit {
            start -= 1;
            kept += cells[start].width;
        }
        row.push_str(ELLIPSIS);
        (&cells[start..], kept)
    };
    for c in cells {
        row.push_str(&c.shown);
    }
    width
}

/// The escape sequences that draw `view` on the current row: carriage return, the row,
/// erase to the end of the line, then the cursor put in its column.
pub fn draw(view: &View, out: &mut String) {
    out.push('\r');
    out.push_str(&view.row);
    out.push_str("\x1b[0K");
    out.push('\r');
    if view.cursor > 0 {
        let _ = write!(out, "\x1b[{}C", view.cursor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes`; every finished line is remembered, as the driver does for commands.
    fn feed(ed: &mut LineEditor, bytes: &[u8]) -> Vec<Edit> {
        let mut out = Vec::new();
        ed.feed(bytes, &mut out);
        for edit in &out {
            if let Edit::Line(line) = edit {
                ed.remember(line);
            }
        }
        out
    }

    #[test]
    fn a_line_that_outgrew_the_limit_is_refused_whole_not_sent_cut() {
        let mut ed = LineEditor::new(8);
        // A paste of 10 bytes and Enter: 8 taken, 2 not; the line is refused, with its size.
        assert_eq!(
            feed(&mut ed, b"0123456789\r"),
            vec![Edit::Changed, Edit::Overlong(10)]
        );
        assert_eq!(ed.text(), "");
        // The next line is taken as usual.
        assert_eq!(
            feed(&mut ed, b"ok\r"),
            vec![Edit::Changed, Edit::Line("ok".into())]
        );
        // Too much typed, then erased and typed again: the new line is whole.
        feed(&mut ed, b"abcdefghij");
        assert_eq!(ed.text(), "abcdefgh");
        assert_eq!(
            feed(&mut ed, b"\x15hi\r"),
            vec![Edit::Changed, Edit::Line("hi".into())]
        );
        // Deleting after the limit was hit does not make the cut line whole.
        feed(&mut ed, b"abcdefghij\x7f");
        assert_eq!(feed(&mut ed, b"\r"), vec![Edit::Overlong(9)]);
    }

    #[test]
    fn a_paste_in_the_middle_of_a_line_is_one_insertion() {
        // 60,000 bytes pasted before the text typed, in 4 KiB reads as from a terminal:
        // each character looked for its grapheme boundary from the start of the line and
        // moved the rest of it, minutes of CPU in a debug build with the loop stalled
        // (how long it takes is the terminal test's to see, within its wait: no timing
        // here). The paste lands whole, before the typed text, its accents kept.
        let mut ed = LineEditor::new(65_536);
        feed(&mut ed, b"end\x1b[H");
        let paste = "y\u{301}".repeat(20_000); // each y with a combining accent: 3 bytes
        for chunk in paste.as_bytes().chunks(4096) {
            feed(&mut ed, chunk);
        }
        assert_eq!(ed.text(), format!("{paste}end"));
        assert_eq!(
            ed.cursor(),
            paste.len(),
            "between the paste and the typed text"
        );
        // A paste that does not fit takes what fits, whole characters, and is refused on
        // Enter.
        let mut ed = LineEditor::new(10);
        feed(&mut ed, "abcdefgh\u{e9}\u{e9}".as_bytes());
        assert_eq!(ed.text(), "abcdefgh\u{e9}");
        assert_eq!(feed(&mut ed, b"\r"), vec![Edit::Overlong(12)]);
    }

    #[test]
    fn typing_and_enter_make_a_line() {
        let mut ed = LineEditor::new(100);
        assert_eq!(feed(&mut ed, b"hel"), vec![Edit::Changed]);
        assert_eq!(ed.text(), "hel");
        assert_eq!(
            feed(&mut ed, b"lo\r"),
            vec![Edit::Changed, Edit::Line("hello".into())]
        );
        assert_eq!(ed.text(), "");
    }

    #[test]
    fn a_pasted_block_gives_every_line() {
        let mut ed = LineEditor::new(100);
        let got = feed(&mut ed, b"/peers\r\n2\n/send 127.0.0.2:1 x\n");
        let lines: Vec<&Edit> = got.iter().filter(|e| matches!(e, Edit::Line(_))).collect();
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn editing_keys() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"one two three");
        feed(&mut ed, &[0x17]);
        assert_eq!(ed.text(), "one two ");
        feed(&mut ed, &[0x7f, 0x7f]);
        assert_eq!(ed.text(), "one tw");
        feed(&mut ed, &[0x15]);
        assert_eq!(ed.text(), "");
        assert_eq!(feed(&mut ed, &[0x04]), vec![Edit::Eof]);
    }

    #[test]
    fn utf8_split_across_reads_and_escape_sequences() {
        let mut ed = LineEditor::new(100);
        let e = "é".as_bytes();
        feed(&mut ed, &e[..1]);
        assert_eq!(ed.text(), "");
        feed(&mut ed, &e[1..]);
        assert_eq!(ed.text(), "é");
        feed(&mut ed, b"\x1b[A\x1b[1;5Cx");
        assert_eq!(ed.text(), "éx");
        feed(&mut ed, &[0x7f]);
        assert_eq!(ed.text(), "é");
    }

    #[test]
    fn lines_are_bounded() {
        let mut ed = LineEditor::new(3);
        feed(&mut ed, b"abcdef");
        assert_eq!(ed.text(), "abc");
    }

    #[test]
    fn cursor_keys_edit_in_the_middle() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"/send hi");
        feed(&mut ed, b"\x1b[D\x1b[D"); // Left Left
        assert_eq!(ed.chars_after_cursor(), 2);
        feed(&mut ed, "é ".as_bytes());
        assert_eq!(ed.text(), "/send é hi");
        feed(&mut ed, &[0x01]); // Ctrl-A
        feed(&mut ed, b"\x1b[3~"); // Delete
        assert_eq!(ed.text(), "send é hi");
        feed(&mut ed, b"\x1bOF"); // End
        feed(&mut ed, &[0x7f]);
        assert_eq!(ed.text(), "send é h");
        feed(&mut ed, b"\x1b[H\x1b[C\x1b[C\x1b[C\x1b[C"); // Home, 4 x Right
        feed(&mut ed, &[0x0b]); // Ctrl-K
        assert_eq!(ed.text(), "send");
        assert_eq!(ed.chars_after_cursor(), 0);
    }

    #[test]
    fn up_and_down_recall_earlier_lines() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"first\rsecond\r");
        feed(&mut ed, b"\x1b[A");
        assert_eq!(ed.text(), "second");
        feed(&mut ed, b"\x1b[A\x1b[A");
        assert_eq!(ed.text(), "first", "stops at the oldest");
        feed(&mut ed, b"\x1b[B");
        assert_eq!(ed.text(), "second");
        feed(&mut ed, b"\x1b[B");
        assert_eq!(ed.text(), "", "back to a new line");
        feed(&mut ed, b"\x1b[A!\r");
        assert_eq!(feed(&mut ed, b"\x1b[A"), vec![Edit::Changed]);
        assert_eq!(ed.text(), "second!");
    }

    #[test]
    fn a_line_of_exactly_the_maximum_length_is_accepted() {
        let mut ed = LineEditor::new(5);
        assert_eq!(feed(&mut ed, b"abcde"), vec![Edit::Changed]);
        assert_eq!(ed.text(), "abcde");
        assert_eq!(feed(&mut ed, b"\r"), vec![Edit::Line("abcde".into())]);
        // One byte over is not taken, and the line is then refused whole on Enter.
        feed(&mut ed, b"abcde");
        assert_eq!(feed(&mut ed, b"f"), vec![], "one byte over: not taken");
        assert_eq!(feed(&mut ed, b"\r"), vec![Edit::Overlong(6)]);
    }

    #[test]
    fn the_maximum_counts_bytes_and_never_splits_a_character() {
        let mut ed = LineEditor::new(4);
        feed(&mut ed, "abc\u{e9}".as_bytes()); // é is two bytes: 5 > 4
        assert_eq!(ed.text(), "abc");
        feed(&mut ed, &[0x7f]);
        feed(&mut ed, "\u{e9}".as_bytes());
        assert_eq!(ed.text(), "ab\u{e9}");
    }

    #[test]
    fn keys_that_change_nothing_report_nothing() {
        let mut ed = LineEditor::new(100);
        // On an empty line: Backspace, Delete, Left, Right, Home, End, Ctrl-U/K/W.
        for keys in [
            &[0x7f][..],
            b"\x1b[3~",
            b"\x1b[D",
            b"\x1b[C",
            b"\x1b[H",
            b"\x1b[F",
            &[0x15],
            &[0x0b],
            &[0x17],
            &[0x01],
            &[0x05],
        ] {
            assert_eq!(feed(&mut ed, keys), vec![], "{keys:?}");
        }
        feed(&mut ed, b"ab");
        // At the end of a line: Right, End, Delete, Ctrl-K change nothing.
        for keys in [&b"\x1b[C"[..], b"\x1b[F", b"\x1b[3~", &[0x0b], &[0x05]] {
            assert_eq!(feed(&mut ed, keys), vec![], "{keys:?}");
        }
        // At its start: Left, Home, Backspace, Ctrl-U, Ctrl-W change nothing.
        feed(&mut ed, &[0x01]);
        for keys in [
            &b"\x1b[D"[..],
            b"\x1b[H",
            &[0x7f],
            &[0x15],
            &[0x17],
            &[0x01],
        ] {
            assert_eq!(feed(&mut ed, keys), vec![], "{keys:?}");
        }
        assert_eq!(ed.text(), "ab");
        assert_eq!(ed.chars_after_cursor(), 2);
    }

    #[test]
    fn keys_that_change_the_line_report_it() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"one two");
        assert_eq!(feed(&mut ed, b"\x1b[D"), vec![Edit::Changed]);
        assert_eq!(feed(&mut ed, &[0x0b]), vec![Edit::Changed], "Ctrl-K");
        assert_eq!(ed.text(), "one tw");
        assert_eq!(feed(&mut ed, &[0x17]), vec![Edit::Changed], "Ctrl-W");
        assert_eq!(ed.text(), "one ");
        assert_eq!(feed(&mut ed, &[0x01]), vec![Edit::Changed], "Ctrl-A");
        assert_eq!(feed(&mut ed, &[0x05]), vec![Edit::Changed], "Ctrl-E");
        assert_eq!(feed(&mut ed, &[0x15]), vec![Edit::Changed], "Ctrl-U");
        assert_eq!(ed.text(), "");
        assert_eq!(feed(&mut ed, &[0x0c]), vec![Edit::Clear], "Ctrl-L redraws");
        assert_eq!(
            feed(&mut ed, b"\t"),
            vec![Edit::Complete],
            "Tab asks to complete"
        );
        assert!(ed.complete(&[]), "with nothing to complete, Tab is a tab");
        assert_eq!(feed(&mut ed, &[0x7f]), vec![Edit::Changed], "Backspace");
        assert_eq!(ed.text(), "");
    }

    #[test]
    fn ctrl_u_erases_only_before_the_cursor() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"hello world\x1b[D\x1b[D");
        feed(&mut ed, &[0x15]);
        assert_eq!(ed.text(), "ld");
        assert_eq!(ed.chars_after_cursor(), 2);
        feed(&mut ed, b"o");
        assert_eq!(ed.text(), "old");
    }

    #[test]
    fn ctrl_w_erases_the_word_before_the_cursor_and_its_trailing_blanks() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"/send  hi there  ");
        feed(&mut ed, &[0x17]);
        assert_eq!(ed.text(), "/send  hi ");
        feed(&mut ed, &[0x17]);
        assert_eq!(ed.text(), "/send  ");
        feed(&mut ed, &[0x17]);
        assert_eq!(ed.text(), "");
        feed(&mut ed, b"ab cd\x1b[D");
        feed(&mut ed, &[0x17]);
        assert_eq!(ed.text(), "ab d", "only up to the cursor");
        assert_eq!(ed.chars_after_cursor(), 1);
    }

    #[test]
    fn home_and_end_have_every_usual_spelling() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"abc");
        for (home, end) in [
            (&b"\x1b[H"[..], &b"\x1b[F"[..]),
            (b"\x1bOH", b"\x1bOF"),
            (b"\x1b[1~", b"\x1b[4~"),
            (b"\x1b[7~", b"\x1b[8~"),
            (&[0x01], &[0x05]),
        ] {
            feed(&mut ed, home);
            assert_eq!(ed.chars_after_cursor(), 3, "{home:?}");
            feed(&mut ed, end);
            assert_eq!(ed.chars_after_cursor(), 0, "{end:?}");
        }
    }

    #[test]
    fn delete_takes_the_whole_character_under_the_cursor() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, "a\u{e9}b".as_bytes());
        feed(&mut ed, b"\x1b[D\x1b[D");
        assert_eq!(ed.chars_after_cursor(), 2);
        assert_eq!(feed(&mut ed, b"\x1b[3~"), vec![Edit::Changed]);
        assert_eq!(ed.text(), "ab");
        feed(&mut ed, b"\x1b[3;5~"); // Ctrl-Delete: the first number decides
        assert_eq!(ed.text(), "a");
    }

    #[test]
    fn cursor_moves_step_over_whole_characters() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, "\u{e9}\u{20ac}x".as_bytes()); // 2, 3 and 1 bytes
        feed(&mut ed, b"\x1b[D\x1b[D");
        assert_eq!(ed.chars_after_cursor(), 2);
        feed(&mut ed, b"|");
        assert_eq!(ed.text(), "\u{e9}|\u{20ac}x");
        feed(&mut ed, b"\x1b[C");
        feed(&mut ed, &[0x7f]);
        assert_eq!(ed.text(), "\u{e9}|x");
        feed(&mut ed, &[0x01]);
        feed(&mut ed, b"\x1b[C");
        assert_eq!(ed.chars_after_cursor(), 2);
    }

    #[test]
    fn backspace_has_both_spellings() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"abc");
        feed(&mut ed, &[0x08]);
        assert_eq!(ed.text(), "ab");
        feed(&mut ed, &[0x7f]);
        assert_eq!(ed.text(), "a");
    }

    #[test]
    fn ctrl_d_ends_input_only_on_an_empty_line() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"x");
        assert_eq!(feed(&mut ed, &[0x04]), vec![], "ignored mid-line");
        assert_eq!(ed.text(), "x");
        feed(&mut ed, &[0x7f]);
        assert_eq!(feed(&mut ed, b"\x04ignored"), vec![Edit::Eof]);
        assert_eq!(ed.text(), "");
    }

    #[test]
    fn tabs_are_kept_and_other_control_bytes_dropped() {
        let mut ed = LineEditor::new(100);
        // A tab inside a read (pasted) is text...
        feed(&mut ed, b"a\tb\x02\x07c");
        assert_eq!(ed.text(), "a\tbc");
        // ...a tab that ends it is the key: complete, a tab when nothing completes.
        assert_eq!(feed(&mut ed, b"\t"), vec![Edit::Complete]);
        assert!(ed.complete(&[]));
        assert_eq!(ed.text(), "a\tbc\t");
    }

    #[test]
    fn tab_completes_the_word_before_the_cursor() {
        let mut ed = LineEditor::new(100);
        let c = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        feed(&mut ed, b"/ms");
        assert_eq!(ed.word_before_cursor(), ("/ms", true));
        assert!(ed.complete(&c(&["/msg"])));
        assert_eq!(ed.text(), "/msg ", "one candidate: the word and a space");
        feed(&mut ed, b"bo");
        assert_eq!(ed.word_before_cursor(), ("bo", false));
        assert!(
            ed.complete(&c(&["bob", "bobby"])),
            "extended to what they share"
        );
        assert_eq!(ed.text(), "/msg bob");
        assert!(!ed.complete(&c(&["bob", "bobby"])), "nothing more shared");
        assert!(ed.complete(&c(&["bobby"])));
        assert_eq!(ed.text(), "/msg bobby ");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_dropped() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"a\xffb\xc3\xc3(c");
        assert_eq!(ed.text(), "ab(c");
        feed(&mut ed, "\u{1f600}".as_bytes());
        assert_eq!(ed.text(), "ab(c\u{1f600}", "four-byte characters are whole");
    }

    #[test]
    fn unknown_escape_sequences_are_ignored_whole() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"ab");
        // Insert, and Alt-x (ESC before a letter).
        assert_eq!(feed(&mut ed, b"\x1b[2~"), vec![]);
        feed(&mut ed, b"\x1bx");
        assert_eq!(ed.text(), "ab");
        assert_eq!(feed(&mut ed, b"\x1b[Z"), vec![], "Shift-Tab");
        feed(&mut ed, b"c");
        assert_eq!(ed.text(), "abc");
        assert_eq!(ed.chars_after_cursor(), 0);
    }

    #[test]
    fn a_key_that_is_not_text_after_esc_still_works() {
        let mut ed = LineEditor::new(100);
        // Esc pressed, then Enter: the line goes (Enter was taken as the end of Alt-Enter).
        feed(&mut ed, b"hi\x1b");
        assert_eq!(feed(&mut ed, b"\r"), vec![Edit::Line("hi".into())]);
        // Esc, then Backspace; Esc twice, then an arrow key.
        feed(&mut ed, b"abc\x1b\x7f");
        assert_eq!(ed.text(), "ab");
        feed(&mut ed, b"\x1b\x1b[D");
        assert_eq!(ed.chars_after_cursor(), 1);
    }

    #[test]
    fn recall_skips_blank_and_repeated_lines() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"one\r   \rtwo\rtwo\r\r");
        feed(&mut ed, b"\x1b[A");
        assert_eq!(ed.text(), "two");
        feed(&mut ed, b"\x1b[A");
        assert_eq!(ed.text(), "one");
        assert_eq!(feed(&mut ed, b"\x1b[A"), vec![Edit::Changed]);
        assert_eq!(ed.text(), "one");
        assert_eq!(ed.chars_after_cursor(), 0, "cursor at the end");
    }

    #[test]
    fn down_on_a_new_line_and_up_with_no_history_do_nothing() {
        let mut ed = LineEditor::new(100);
        assert_eq!(feed(&mut ed, b"\x1b[A"), vec![]);
        assert_eq!(feed(&mut ed, b"\x1b[B"), vec![]);
        feed(&mut ed, b"one\r");
        assert_eq!(feed(&mut ed, b"\x1b[B"), vec![]);
        feed(&mut ed, b"\x1b[A");
        assert_eq!(ed.text(), "one");
        assert_eq!(feed(&mut ed, b"\x1b[B"), vec![Edit::Changed]);
        assert_eq!(ed.text(), "");
        assert_eq!(feed(&mut ed, b"\x1b[B"), vec![]);
    }

    #[test]
    fn history_keeps_the_last_hundred_lines() {
        let mut ed = LineEditor::new(100);
        for i in 0..=HISTORY {
            feed(&mut ed, format!("line {i}\r").as_bytes());
        }
        for _ in 0..=HISTORY {
            feed(&mut ed, b"\x1b[A");
        }
        assert_eq!(ed.text(), "line 1", "line 0 was forgotten");
        feed(&mut ed, b"\x1b[B");
        assert_eq!(ed.text(), "line 2");
    }

    #[test]
    fn a_lone_lf_or_cr_ends_a_line_and_crlf_ends_only_one() {
        let mut ed = LineEditor::new(100);
        assert_eq!(
            feed(&mut ed, b"a\rb\nc\r\n\n"),
            vec![
                Edit::Changed,
                Edit::Line("a".into()),
                Edit::Changed,
                Edit::Line("b".into()),
                Edit::Changed,
                Edit::Line("c".into()),
                Edit::Line(String::new()),
            ]
        );
        // The CR-LF pair may arrive in two reads.
        assert_eq!(
            feed(&mut ed, b"d\r"),
            vec![Edit::Changed, Edit::Line("d".into())]
        );
        assert_eq!(feed(&mut ed, b"\n"), vec![]);
    }

    #[test]
    fn enter_drops_a_half_typed_character() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"a\xc3\r");
        feed(&mut ed, b"\xa9");
        assert_eq!(ed.text(), "", "the lone continuation byte is not UTF-8");
    }

    #[test]
    fn function_keys_do_nothing() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"abc");
        for key in [
            &b"\x1b[15~"[..],
            b"\x1b[17~",
            b"\x1b[18~",
            b"\x1b[19~",
            b"\x1b[20~",
            b"\x1b[24~",
            b"\x1bOP",
            b"\x1bOS",
            b"\x1b[15;2~",
        ] {
            assert_eq!(feed(&mut ed, key), vec![], "{key:?}");
            assert_eq!(ed.chars_after_cursor(), 0, "{key:?} moved the cursor");
        }
        feed(&mut ed, b"\x1b[1;5H"); // Ctrl-Home is still Home
        assert_eq!(ed.chars_after_cursor(), 3);
        assert_eq!(ed.text(), "abc");
    }

    #[test]
    fn an_incomplete_character_does_not_swallow_the_next_byte() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, b"\xc3a");
        assert_eq!(ed.text(), "a");
        feed(&mut ed, b"\xe4\xb8b");
        assert_eq!(ed.text(), "ab");
        feed(&mut ed, b"\xf0\x9f\x98");
        feed(&mut ed, b"\x1b[D");
        assert_eq!(
            ed.chars_after_cursor(),
            1,
            "the escape sequence still works"
        );
        feed(&mut ed, b"\xe4");
        feed(&mut ed, &[0x7f]);
        assert_eq!(
            ed.text(),
            "b",
            "Backspace erases a character, not the half one"
        );
    }

    #[test]
    fn ctrl_d_mid_line_deletes_the_character_under_the_cursor() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, "a世b".as_bytes());
        feed(&mut ed, b"\x1b[D\x1b[D");
        assert_eq!(feed(&mut ed, &[0x04]), vec![Edit::Changed]);
        assert_eq!(ed.text(), "ab");
        assert_eq!(feed(&mut ed, &[0x04]), vec![Edit::Changed]);
        assert_eq!(ed.text(), "a");
        assert_eq!(feed(&mut ed, &[0x04]), vec![], "nothing under the cursor");
        assert_eq!(ed.text(), "a");
    }

    #[test]
    fn menu_answers_are_not_remembered() {
        assert!(worth_remembering("> ", "/peers"));
        assert!(worth_remembering("> ", "/send 127.0.0.2:5001 1"));
        assert!(worth_remembering("Enter your message: ", "2"));
        assert!(!worth_remembering("> ", "1"));
        assert!(!worth_remembering("> ", " 0 "));
        assert!(!worth_remembering(
            "Enter the recipient's IP address: ",
            "127.0.0.2"
        ));
        assert!(!worth_remembering(
            "Enter the recipient's port number: ",
            "5001"
        ));
        let mut ed = LineEditor::new(100);
        let mut out = Vec::new();
        ed.feed(b"1\r", &mut out);
        assert_eq!(
            feed(&mut ed, b"\x1b[A"),
            vec![],
            "not remembered by Enter alone"
        );
    }

    #[test]
    fn a_combining_accent_is_one_step_with_its_letter() {
        let mut ed = LineEditor::new(100);
        feed(&mut ed, "xe\u{301}y".as_bytes());
        feed(&mut ed, b"\x1b[D\x1b[D");
        assert_eq!(ed.text()[ed.cursor()..], *"e\u{301}y");
        feed(&mut ed, &[0x7f]);
        assert_eq!(ed.text(), "e\u{301}y");
        feed(&mut ed, b"\x1b[3~");
        assert_eq!(ed.text(), "y");
    }

    fn cols_of(v: &View) -> usize {
        display_width(&v.row)
    }

    #[test]
    fn a_short_line_shows_whole_with_the_cursor_after_it() {
        let v = layout("> ", "hello", 5, 80);
        assert_eq!(
            v,
            View {
                row: "> hello".into(),
                width: 7,
                cursor: 7
            }
        );
        assert_eq!(layout("> ", "hello", 0, 80).cursor, 2);
    }

    #[test]
    fn a_long_line_scrolls_to_keep_the_cursor_on_the_screen() {
        let text: String = ('a'..='z').cycle().take(100).collect();
        // Cursor at the end: the window ends with the last characters, the cursor after them
        // in the last usable column.
        let v = layout("> ", &text, text.len(), 40);
        assert_eq!(v.row, format!("> {}", &text[100 - 37..]));
        assert_eq!((v.width, v.cursor), (39, 39));
        // Home: the start of the line.
        let v = layout("> ", &text, 0, 40);
        assert_eq!(v.row, format!("> {}", &text[..37]));
        assert_eq!(v.cursor, 2);
        // In the middle: the window ends at the character under the cursor.
        let v = layout("> ", &text, 50, 40);
        assert!(v.row.ends_with(&text[50..51]), "{v:?}");
        assert_eq!(v.cursor, 38);
    }

    #[test]
    fn no_row_is_ever_wider_than_the_screen() {
        let text = "a世界\tb\u{202e}c é😀 ".repeat(12);
        for cols in [10, 20, 40, 80] {
            for (cursor, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let v = layout("> ", &text, cursor, cols);
                assert!(v.width < cols, "{cols} cols, cursor {cursor}: {v:?}");
                assert_eq!(cols_of(&v), v.width, "{v:?}");
                assert!(v.cursor <= v.width && v.cursor < cols, "{v:?}");
            }
        }
    }

    #[test]
    fn wide_characters_take_two_columns() {
        let text = "世界abc";
        assert_eq!(display_width(text), 7);
        // Home then Right: past one wide character.
        assert_eq!(layout("> ", text, "世".len(), 80).cursor, 4);
        assert_eq!(layout("> ", text, "世界".len(), 80).cursor, 6);
        assert_eq!(layout("> ", text, "世界a".len(), 80).cursor, 7);
        // A wide character never straddles the window's edge.
        let long = "世".repeat(30);
        let v = layout("> ", &long, long.len(), 21);
        assert_eq!(v.row, format!("> {}", "世".repeat(9)));
        assert_eq!(v.cursor, 20);
    }

    #[test]
    fn a_tab_reaches_the_next_multiple_of_eight() {
        let text = "ab\tcd";
        assert_eq!(display_width(text), 10);
        let v = layout("> ", text, 3, 80);
        assert_eq!(v.row, "> ab      cd");
        assert_eq!(v.cursor, 10, "after the tab: column 8 of the text");
        assert_eq!(layout("> ", "\t", 1, 80).cursor, 10);
        assert_eq!(display_width("abcdefgh\t"), 16);
    }

    #[test]
    fn invisible_characters_show_escaped_and_count_as_shown() {
        let text = "a\u{202e}b";
        let v = layout("> ", text, text.len(), 80);
        assert_eq!(v.row, "> a\\u{202e}b");
        assert_eq!(v.cursor, 2 + 1 + 8 + 1);
    }

    /// Prompts longer than many screens: a conversation with a peer whose name is 64
    /// bytes (ASCII, wide characters, combining accents), the menu's question, and one with
    /// a control character.
    fn long_prompts() -> Vec<String> {
        vec![
            format!("{}> ", "n".repeat(64)),
            format!("{}> ", "世".repeat(21)),
            format!("{}> ", "e\u{301}".repeat(21)),
            format!("a{}> ", "😀".repeat(15)),
            "Enter the recipient's IP address: ".to_owned(),
            "\u{1b}[2J\tname> ".to_owned(),
        ]
    }

    #[test]
    fn no_prompt_makes_the_row_wider_than_the_screen() {
        let texts = [
            "",
            "hello",
            "世界 and more than a screen of text to scroll through",
        ];
        for prompt in long_prompts() {
            for text in texts {
                for cols in 1..=100 {
                    for (cursor, _) in text.char_indices().chain([(text.len(), ' ')]) {
                        let v = layout(&prompt, text, cursor, cols);
                        let what = format!("{prompt:?} {text:?} at {cols} cols, cursor {cursor}");
                        assert!(v.width < cols, "{what}: {v:?}");
                        assert_eq!(cols_of(&v), v.width, "{what}: {v:?}");
                        assert!(v.cursor <= v.width && v.cursor < cols, "{what}: {v:?}");
                        assert!(!v.row.contains(['\u{1b}', '\t']), "{what}: {v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_cut_prompt_leaves_the_typed_text_and_the_cursor_in_view() {
        for prompt in long_prompts() {
            for cols in 12..=100 {
                let what = format!("{prompt:?} at {cols} cols");
                // Short text: all of it, after the prompt, the cursor after it.
                let v = layout(&prompt, "hello", 5, cols);
                assert!(v.row.ends_with("hello"), "{what}: {v:?}");
                assert_eq!(v.cursor, v.width, "{what}: {v:?}");
                // The cursor on the first character: that character is shown under it.
                let v = layout(&prompt, "hello", 0, cols);
                assert_eq!(v.cursor + 5, v.width, "{what}: {v:?}");
                // The typed text keeps at least a quarter of the row, 10 columns at least (half
                // of a narrower row).
                let shown_prompt = v.width - 5;
                assert!(
                    cols - 1 - shown_prompt >= ((cols - 1) / 4).max(10).min(cols / 2),
                    "{what}: {v:?}"
                );
            }
        }
    }

    #[test]
    fn a_cut_prompt_keeps_its_end_after_an_ellipsis() {
        let name = "n".repeat(64);
        let prompt = format!("{name}> ");
        let v = layout(&prompt, "hello", 5, 60);
        let kept = v.width - "hello".len() - 1;
        assert_eq!(v.row, format!("...{}> hello", &name[64 - (kept - 4)..]));
        assert!(kept >= 20, "most of the name is left: {v:?}");
        assert_eq!((v.width, v.cursor), (v.row.chars().count(), v.width));
        // A prompt that fits with room to type is left whole.
        assert_eq!(
            layout(&prompt, "hello", 5, 100).row,
            format!("{prompt}hello")
        );

        // Wide characters are kept or dropped whole, never cut in half.
        let prompt = format!("{}> ", "世".repeat(21));
        for cols in 20..=80 {
            let v = layout(&prompt, "", 0, cols);
            if v.row != prompt {
                let body = v.row.strip_prefix("...").and_then(|r| r.strip_suffix("> "));
                assert!(
                    body.is_some_and(|b| b.chars().all(|c| c == '世')),
                    "{cols}: {v:?}"
                );
                assert_eq!(cols_of(&v), v.width);
            }
        }

        // The menu's question keeps what it asks for.
        let v = layout("Enter the recipient's port number: ", "", 0, 30);
        assert!(
            v.row.starts_with("...") && v.row.ends_with("port number: "),
            "{v:?}"
        );
    }

    #[test]
    fn a_prompt_shows_control_characters_escaped() {
        let v = layout("\u{1b}[2Jx> ", "a", 1, 80);
        assert_eq!(v.row, "\\u{1b}[2Jx> a");
        assert_eq!((v.width, v.cursor), (13, 13));
    }

    #[test]
    fn drawing_returns_to_the_column_of_the_cursor() {
        let mut out = String::new();
        draw(&layout("> ", "abc", 1, 80), &mut out);
        assert_eq!(out, "\r> abc\x1b[0K\r\x1b[3C");
    }
}
