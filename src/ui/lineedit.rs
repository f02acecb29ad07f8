//! A small line editor for the terminal, so that incoming messages can be printed while
//! the user types and the half-typed line drawn again after them.
//!
//! With the terminal in non-canonical mode, peerchat sees each key as it is typed and
//! keeps the line itself: printable text (UTF-8) inserted at the cursor, Left/Right,
//! Home/End (and Ctrl-A/Ctrl-E), Backspace and Delete, Ctrl-U / Ctrl-K (erase before /
//! after the cursor), Ctrl-W (erase a word), Up/Down (earlier lines), Ctrl-L (redraw),
//! Ctrl-D on an empty line (end of input), Enter. Other escape sequences are recognised
//! and ignored. Pure: bytes in, edits out.

/// What a chunk of key bytes did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Enter was pressed: the finished line.
    Line(String),
    /// The line being typed changed (or should be redrawn).
    Changed,
    /// Ctrl-D on an empty line.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Escape {
    #[default]
    None,
    /// Just saw ESC.
    Start,
    /// Inside `ESC [ ...` or `ESC O`, waiting for the final byte; `param` is the first
    /// number seen (`ESC [ 3 ~` is Delete).
    Sequence { param: u8 },
}

/// Lines kept for Up/Down.
const HISTORY: usize = 100;

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: String,
    /// Byte offset of the cursor in `line` (always on a character boundary).
    cursor: usize,
    /// Bytes of a UTF-8 character not complete yet.
    partial: Vec<u8>,
    escape: Escape,
    last_was_cr: bool,
    max_len: usize,
    /// Earlier lines, oldest first, and which one Up/Down shows (`None`: the new line).
    history: Vec<String>,
    recalled: Option<usize>,
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
    pub fn text(&self) -> &str {
        &self.line
    }

    /// How many characters lie after the cursor (to put the terminal's cursor back).
    pub fn chars_after_cursor(&self) -> usize {
        self.line[self.cursor..].chars().count()
    }

    /// Applies typed bytes; edits are pushed to `out` in order.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Edit>) {
        let mut changed = false;
        for &b in bytes {
            let was_cr = std::mem::replace(&mut self.last_was_cr, false);
            match self.escape {
                Escape::Start => {
                    self.escape = if b == b'[' || b == b'O' {
                        Escape::Sequence { param: 0 }
                    } else {
                        Escape::None
                    };
                    continue;
                }
                Escape::Sequence { param } => {
                    if b.is_ascii_digit() && param == 0 {
                        self.escape = Escape::Sequence { param: b - b'0' };
                    } else if (0x40..=0x7e).contains(&b) {
                        self.escape = Escape::None;
                        changed |= self.key(b, param);
                    }
                    continue;
                }
                Escape::None => {}
            }
            match b {
                b'\n' if was_cr => {}
                b'\r' | b'\n' => {
                    self.last_was_cr = b == b'\r';
                    self.partial.clear();
                    if changed {
                        out.push(Edit::Changed);
                        changed = false;
                    }
                    out.push(Edit::Line(self.enter()));
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
                    out.push(Edit::Eof);
                    return;
                }
                0x0c => changed = true,
                0x1b => self.escape = Escape::Start,
                b'\t' => changed |= self.insert("\t"),
                0..=0x1f => {}
                _ => {
                    self.partial.push(b);
                    match std::str::from_utf8(&self.partial) {
                        Ok(s) => {
                            let s = s.to_owned();
                            self.partial.clear();
                            changed |= self.insert(&s);
                        }
                        Err(e) if e.error_len().is_some() || self.partial.len() >= 4 => {
                            self.partial.clear(); // not UTF-8: dropped
                        }
                        Err(_) => {} // wait for the rest of the character
                    }
                }
            }
        }
        if changed {
            out.push(Edit::Changed);
        }
    }

    /// The final byte of an escape sequence (`param`: its first number, if any).
    fn key(&mut self, last: u8, param: u8) -> bool {
        match (last, param) {
            (b'D', _) => self.move_to(self.prev_boundary()),
            (b'C', _) => self.move_to(self.next_boundary()),
            (b'H', _) | (b'~', 1 | 7) => self.move_to(0),
            (b'F', _) | (b'~', 4 | 8) => self.move_to(self.line.len()),
            (b'~', 3) => {
                let next = self.next_boundary();
                let changed = next > self.cursor;
                self.line.drain(self.cursor..next);
                changed
            }
            (b'A', _) => self.recall(true),
            (b'B', _) => self.recall(false),
            _ => false,
        }
    }

    /// Enter: hands over the line, remembers it for Up/Down.
    fn enter(&mut self) -> String {
        let line = std::mem::take(&mut self.line);
        self.cursor = 0;
        self.recalled = None;
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
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
                self.line.clear();
                self.cursor = 0;
                return true;
            }
            return false;
        };
        self.recalled = Some(i);
        self.line = self.history[i].clone();
        self.cursor = self.line.len();
        true
    }

    fn prev_boundary(&self) -> usize {
        self.line[..self.cursor]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.line[self.cursor..]
            .chars()
            .next()
            .map_or(self.cursor, |c| self.cursor + c.len_utf8())
    }

    fn move_to(&mut self, to: usize) -> bool {
        let moved = to != self.cursor;
        self.cursor = to;
        moved
    }

    fn delete_before(&mut self) -> bool {
        self.partial.clear();
        let prev = self.prev_boundary();
        let changed = prev < self.cursor;
        self.line.drain(prev..self.cursor);
        self.cursor = prev;
        changed
    }

    fn insert(&mut self, s: &str) -> bool {
        if self.line.len() + s.len() > self.max_len {
            return false;
        }
        self.line.insert_str(self.cursor, s);
        self.cursor += s.len();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(ed: &mut LineEditor, bytes: &[u8]) -> Vec<Edit> {
        let mut out = Vec::new();
        ed.feed(bytes, &mut out);
        out
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
        assert_eq!(feed(&mut ed, b"f"), vec![], "one byte over: refused");
        assert_eq!(feed(&mut ed, b"\r"), vec![Edit::Line("abcde".into())]);
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
        assert_eq!(
            feed(&mut ed, &[0x0c]),
            vec![Edit::Changed],
            "Ctrl-L redraws"
        );
        assert_eq!(feed(&mut ed, b"\t"), vec![Edit::Changed], "Tab");
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
        feed(&mut ed, b"a\tb\x02\x07c");
        assert_eq!(ed.text(), "a\tbc");
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
}
