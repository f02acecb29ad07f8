//! A minimal line editor for the terminal, so that incoming messages can be printed
//! while the user types and the half-typed line drawn again after them.
//!
//! With the terminal in non-canonical mode, peerchat sees each key as it is typed and
//! keeps the line itself: printable text (UTF-8), Backspace, Ctrl-U (erase line), Ctrl-W
//! (erase word), Ctrl-L (redraw), Ctrl-D on an empty line (end of input), Enter. Escape
//! sequences (arrow keys...) are recognised and ignored. Pure: bytes in, edits out.

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
    /// Inside `ESC [ ...` or `ESC O`, waiting for the final byte.
    Sequence,
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: String,
    /// Bytes of a UTF-8 character not complete yet.
    partial: Vec<u8>,
    escape: Escape,
    last_was_cr: bool,
    max_len: usize,
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

    /// Applies typed bytes; edits are pushed to `out` in order.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Edit>) {
        let mut changed = false;
        for &b in bytes {
            let was_cr = std::mem::replace(&mut self.last_was_cr, false);
            match self.escape {
                Escape::Start => {
                    self.escape = if b == b'[' || b == b'O' {
                        Escape::Sequence
                    } else {
                        Escape::None
                    };
                    continue;
                }
                Escape::Sequence => {
                    if (0x40..=0x7e).contains(&b) {
                        self.escape = Escape::None;
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
                    out.push(Edit::Line(std::mem::take(&mut self.line)));
                }
                0x7f | 0x08 => {
                    self.partial.clear();
                    changed |= self.line.pop().is_some();
                }
                0x15 => {
                    changed |= !self.line.is_empty();
                    self.line.clear();
                }
                0x17 => {
                    let kept = self.line.trim_end().rfind(' ').map_or(0, |i| i + 1);
                    changed |= kept < self.line.len();
                    self.line.truncate(kept);
                }
                0x04 if self.line.is_empty() => {
                    out.push(Edit::Eof);
                    return;
                }
                0x0c => changed = true,
                0x1b => self.escape = Escape::Start,
                b'\t' => changed |= self.push_str("\t"),
                0..=0x1f => {}
                _ => {
                    self.partial.push(b);
                    match std::str::from_utf8(&self.partial) {
                        Ok(s) => {
                            let s = s.to_owned();
                            self.partial.clear();
                            changed |= self.push_str(&s);
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

    fn push_str(&mut self, s: &str) -> bool {
        if self.line.len() + s.len() > self.max_len {
            return false;
        }
        self.line.push_str(s);
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
}
