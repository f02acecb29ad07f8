//! Reading the console inside the event loop, without ever blocking it.
//!
//! fd 0 is read with plain `read(2)` calls (through `rustix`), never through `std::io::Stdin`'s buffer (a line
//! could sit there while epoll stays silent), and its flags are never changed: setting
//! `O_NONBLOCK` would change the shell's open file description too. Instead every `read`
//! is preceded by a zero-timeout `poll(2)` that says it will not block. epoll refuses
//! regular files and `/dev/null` (EPERM); those are read as always ready, a bounded chunk
//! per loop turn, until EOF. A pipe whose writer left without writing reports only
//! "read closed": `poll` sees that as POLLHUP and the `read` then returns EOF.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;

use crate::driver::fdio::{self, PollFlags};
use crate::ui::lineedit::{self, Edit, LineEditor, View};
use mio::{Interest, Registry, Token};

const FD: RawFd = 0;
/// Bytes read per `read` call.
const CHUNK: usize = 16 * 1024;
/// Reads per loop turn, so that a fast writer cannot starve the network.
const READS_PER_TURN: usize = 16;

/// One thing read from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A complete line, without its line ending; invalid UTF-8 replaced.
    Line(String),
    /// A line longer than the limit was dropped.
    Overlong(usize),
    /// The console was closed: the user is gone.
    Eof,
    /// The line being typed changed (the terminal line editor is on).
    Edited,
    /// Ctrl-L: clear the screen and draw the line being typed again.
    Clear,
    /// Tab: complete the word before the cursor ([`ConsoleInput::complete`]).
    Complete,
    /// This many bytes came without a line break: stdin is not text (say `/dev/zero`), and
    /// it is no longer read. The peer runs on, as with `--headless`.
    Unreadable(usize),
}

/// Bytes without a line break after which stdin counts as not text, in lines of the limit.
const UNREADABLE_LINES: usize = 16;

/// How fd 0 is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Registered with epoll (terminal, pipe, socket).
    Watched,
    /// epoll refused it (regular file, `/dev/null`): read every turn until EOF.
    AlwaysReady,
    /// EOF was seen, or the console is not read at all (`--headless`).
    Closed,
}

/// The console reader.
#[derive(Debug)]
pub struct ConsoleInput {
    mode: Mode,
    /// Whether data may remain that no new readiness event will announce.
    more: bool,
    partial: Vec<u8>,
    max_line: usize,
    /// Bytes of an overlong line being skipped, until its newline.
    skipping: Option<usize>,
    /// Keystroke editing, when the terminal is in non-canonical mode.
    editor: Option<LineEditor>,
    /// Whether fd 0 is registered with epoll (until `detach`, even after EOF).
    registered: bool,
}

impl ConsoleInput {
    /// Starts watching fd 0 with `token`; lines longer than `max_line` are dropped.
    pub fn attach(registry: &Registry, token: Token, max_line: usize) -> Self {
        let mode = match registry.register(&mut SourceFd(&FD), token, Interest::READABLE) {
            Ok(()) => Mode::Watched,
            Err(e) => {
                log::debug!("stdin cannot be watched by epoll ({e}); reading it as a file");
                Mode::AlwaysReady
            }
        };
        ConsoleInput {
            registered: mode == Mode::Watched,
            mode,
            more: true,
            partial: Vec::new(),
            max_line,
            skipping: None,
            editor: None,
        }
    }

    /// Edits lines keystroke by keystroke (the terminal must be in non-canonical mode).
    pub fn enable_editing(&mut self) {
        self.editor = Some(LineEditor::new(self.max_line));
    }

    /// The row to draw for the half-typed line after `prompt` on a screen `cols` columns
    /// wide, when editing keystroke by keystroke.
    pub fn editing(&self, prompt: &str, cols: usize) -> Option<View> {
        self.editor.as_ref().map(|ed| ed.view(prompt, cols))
    }

    /// The word before the cursor, and whether it starts the line (editing only).
    pub fn word_to_complete(&self) -> Option<(String, bool)> {
        let ed = self.editor.as_ref()?;
        let (word, first) = ed.word_before_cursor();
        Some((word.to_owned(), first))
    }

    /// Completes the word before the cursor from `candidates`; whether the line changed.
    pub fn complete(&mut self, candidates: &[String]) -> bool {
        self.editor
            .as_mut()
            .is_some_and(|ed| ed.complete(candidates))
    }

    /// A line typed at `prompt` was taken: kept for Up/Down unless it answered the menu.
    pub fn remember(&mut self, prompt: &str, line: &str) {
        if let Some(ed) = self.editor.as_mut() {
            if lineedit::worth_remembering(prompt, line) {
                ed.remember(line);
            }
        }
    }

    /// A console that is never read (`--headless`).
    pub fn closed() -> Self {
        ConsoleInput {
            mode: Mode::Closed,
            more: false,
            partial: Vec::new(),
            max_line: 0,
            skipping: None,
            editor: None,
            registered: false,
        }
    }

    /// Whether the loop must come back without waiting: input may be left to read.
    pub fn wants_turn(&self) -> bool {
        self.mode != Mode::Closed && self.more
    }

    /// stdin was ready but is read later (what was read before is not taken yet): the
    /// loop must come back for it without a new event.
    pub fn defer(&mut self) {
        self.more = true;
    }

    /// Stops reading (on quit); deregisters from epoll.
    pub fn detach(&mut self, registry: &Registry) {
        if self.registered {
            self.registered = false;
            let _ = registry.deregister(&mut SourceFd(&FD));
        }
        self.mode = Mode::Closed;
        self.more = false;
    }

    /// Reads what is available without blocking; pushes complete lines (and EOF) to `out`.
    pub fn read(&mut self, buf: &mut [u8], out: &mut Vec<Input>) {
        if self.mode == Mode::Closed {
            return;
        }
        let len = CHUNK.min(buf.len());
        let buf = &mut buf[..len];
        self.more = false;
        for _ in 0..READS_PER_TURN {
            if self.mode == Mode::Watched && !ready_now() {
                return;
            }
            match fdio::read(rustix::stdio::stdin(), buf) {
                Ok(0) => {
                    self.finish(out);
                    return;
                }
                Ok(n) => {
                    if !self.keys(&buf[..n], out) {
                        self.split(&buf[..n], out);
                    }
                    if self.mode == Mode::Closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("reading stdin failed: {e}");
                    self.finish(out);
                    return;
                }
            }
        }
        // The turn's budget is spent: come back soon for the rest.
        self.more = true;
    }

    /// Feeds keystrokes to the line editor, if it is on; returns whether it was.
    fn keys(&mut self, bytes: &[u8], out: &mut Vec<Input>) -> bool {
        let Some(editor) = self.editor.as_mut() else {
            return false;
        };
        let mut edits = Vec::new();
        editor.feed(bytes, &mut edits);
        for edit in edits {
            match edit {
                Edit::Line(line) => out.push(Input::Line(line)),
                Edit::Changed => out.push(Input::Edited),
                Edit::Clear => out.push(Input::Clear),
                Edit::Complete => out.push(Input::Complete),
                Edit::Overlong(n) => out.push(Input::Overlong(n)),
                Edit::Eof => {
                    self.mode = Mode::Closed;
                    out.push(Input::Eof);
                    break;
                }
            }
        }
        true
    }

    fn finish(&mut self, out: &mut Vec<Input>) {
        match self.skipping.take() {
            // An overlong last line without a line break is reported like any other.
            Some(skipped) => out.push(Input::Overlong(skipped)),
            None if !self.partial.is_empty() => {
                let line = std::mem::take(&mut self.partial);
                out.push(Input::Line(decode(&line)));
            }
            None => {}
        }
        self.mode = Mode::Closed;
        out.push(Input::Eof);
    }

    fn split(&mut self, mut bytes: &[u8], out: &mut Vec<Input>) {
        while !bytes.is_empty() {
            let (line, rest, complete) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if let Some(skipped) = self.skipping.as_mut() {
                *skipped += line.len();
                if *skipped > self.max_line.saturating_mul(UNREADABLE_LINES) {
                    let skipped = *skipped;
                    self.mode = Mode::Closed;
                    self.more = false;
                    out.push(Input::Unreadable(skipped));
                    return;
                }
                if complete {
                    let skipped = *skipped;
                    self.skipping = None;
                    out.push(Input::Overlong(skipped));
                }
                continue;
            }
            let total = self.partial.len() + line.len();
            if total > self.max_line {
                self.partial.clear();
                if complete {
                    out.push(Input::Overlong(total));
                } else {
                    self.skipping = Some(total);
                }
                continue;
            }
            if complete {
                if self.partial.is_empty() {
                    out.push(Input::Line(decode(line)));
                } else {
                    self.partial.extend_from_slice(line);
                    let whole = std::mem::take(&mut self.partial);
                    out.push(Input::Line(decode(&whole)));
                }
            } else {
                self.partial.extend_from_slice(line);
            }
        }
    }
}

fn decode(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// Whether a `read` on fd 0 would return at once (data, EOF or an error).
fn ready_now() -> bool {
    let ready = PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
    fdio::poll(rustix::stdio::stdin(), PollFlags::IN, Duration::ZERO).intersects(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(max_line: usize) -> ConsoleInput {
        ConsoleInput {
            mode: Mode::AlwaysReady,
            more: true,
            partial: Vec::new(),
            max_line,
            skipping: None,
            editor: None,
            registered: false,
        }
    }

    #[test]
    fn lines_survive_any_chunking() {
        let text = b"/send 127.0.0.3:5002 h\xc3\xa9llo\r\n2\n\n0";
        for cut in 0..text.len() {
            let mut c = console(1024);
            let mut out = Vec::new();
            c.split(&text[..cut], &mut out);
            c.split(&text[cut..], &mut out);
            c.finish(&mut out);
            assert_eq!(
                out,
                vec![
                    Input::Line("/send 127.0.0.3:5002 héllo".into()),
                    Input::Line("2".into()),
                    Input::Line(String::new()),
                    Input::Line("0".into()),
                    Input::Eof
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn overlong_lines_are_dropped_and_the_next_line_kept() {
        let mut c = console(8);
        let mut out = Vec::new();
        c.split(b"0123456789", &mut out);
        c.split(b"abc\nok\n", &mut out);
        assert_eq!(out, vec![Input::Overlong(13), Input::Line("ok".into())]);
        let mut out = Vec::new();
        c.split(b"0123456789\nfine\n", &mut out);
        assert_eq!(out, vec![Input::Overlong(10), Input::Line("fine".into())]);
        // An overlong last line without a line break is reported too, not dropped quietly.
        let mut out = Vec::new();
        c.split(b"0123456789", &mut out);
        c.split(b"abc", &mut out);
        c.finish(&mut out);
        assert_eq!(out, vec![Input::Overlong(13), Input::Eof]);
    }
}
