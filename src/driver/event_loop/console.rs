//! The console's side of the loop: typed lines are read only while the node takes them
//! (it has room for what a line may send) and stdout keeps up with what they may print;
//! line editing, completion and end of input.

use crate::time::Instant;

use super::EventLoop;
use crate::driver::stdin::Input;
use crate::node::event::Event;
use crate::node::Effect;

impl EventLoop {
    /// Whether console input waits: read and not yet taken, or left to read.
    pub(super) fn console_has_more(&self) -> bool {
        !self.inputs.is_empty() || self.console.wants_turn()
    }

    /// Tab: completes the word before the cursor from the node's commands, names and
    /// addresses; when several remain and nothing more is shared, lists them.
    fn complete(&mut self) {
        let Some((word, first)) = self.console.word_to_complete() else {
            return;
        };
        let candidates = self.node.completions(&word, first);
        if self.console.complete(&candidates) {
            self.output.redraw_prompt();
        } else if candidates.len() > 1 {
            let list = candidates.join("  ");
            self.effects.push(Effect::Show(Event::Info(list)));
        }
    }

    /// Whether console input is taken now: the node has room for what a line may send, and
    /// stdout keeps up with what it may print.
    pub(super) fn console_open(&self) -> bool {
        self.node.wants_input() && !self.behind()
    }

    /// Reads the console (once what was read before is all taken) and hands lines to the
    /// node while it takes them.
    pub(super) fn read_console(&mut self, now: Instant) {
        if self.inputs.is_empty() {
            let mut read = Vec::new();
            self.console.read(self.conns.read_buf(), &mut read);
            self.inputs.extend(read);
        } else {
            self.console.defer();
        }
        while let Some(input) = self.inputs.pop_front() {
            if matches!(input, Input::Line(_)) && !self.console_open() {
                self.inputs.push_front(input);
                self.console.defer();
                break;
            }
            match input {
                Input::Line(line) => {
                    self.console.remember(self.node.prompt(), &line);
                    let echo = self
                        .raw_input
                        .is_some()
                        .then(|| (self.node.prompt(), &*line));
                    self.output.line_typed(echo);
                    self.node.on_line(&line, now, &mut self.effects);
                }
                Input::Overlong(n) => self.effects.push(Effect::Show(Event::Warning(format!(
                    "ignored a typed line of {n} bytes (the limit is {})",
                    self.config.limits.max_line
                )))),
                Input::Eof => {
                    let echo = self.raw_input.is_some().then(|| (self.node.prompt(), ""));
                    self.output.line_typed(echo);
                    self.node.quit(now, &mut self.effects);
                }
                Input::Edited => self.output.redraw_prompt(),
                Input::Clear => self.output.clear_screen(),
                Input::Complete => self.complete(),
                Input::Unreadable(n) => self.effects.push(Effect::Show(Event::Warning(format!(
                    "stdin sent {n} bytes without a line break: it is not read any more (quit with Ctrl-C or SIGTERM)"
                )))),
            }
            self.apply_effects(now);
        }
    }
}
