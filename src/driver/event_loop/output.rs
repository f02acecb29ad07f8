//! The end of a turn's output: the journal first, then stdout, without blocking; and
//! stdout's pace: when it is behind, reading the network waits (the senders wait, through
//! TCP), and a pipe that takes nothing for a while counts as not being read.

use crate::time::Instant;
use std::io;
use std::time::Duration;

use super::{EventLoop, STDOUT_STALL};
use crate::driver::journal::Flushed;
use crate::driver::stdout::Kind;
use crate::driver::terminal::RawInput;
use crate::node::event::Event;
use crate::node::Effect;

impl EventLoop {
    /// Ends a turn's output: the journal first (so that whatever is shown is already
    /// remembered), then stdout, without blocking.
    pub(super) fn flush_output(&mut self, now: Instant) {
        if self.journal.is_some() {
            self.flush_journal(now);
        }
        if self.stdout_broken {
            return;
        }
        if self.raw_input.is_some() || self.interactive {
            self.terminal_output();
        }
        let mut flushed = self.write_output();
        let dropped = self.stdout.take_dropped();
        if dropped > 0 && flushed.is_ok() {
            flushed = self.report_dropped(dropped, now);
        }
        if self.give_back_output && self.stdout.backlog() == 0 {
            self.give_back_output = false;
            self.output.give_back();
            self.stdout.give_back();
            // What the buffers held goes back to the system, not only to the allocator.
            crate::driver::heap::trim();
        }
        if let Err(e) = flushed {
            self.stdout_failed(e, now);
        }
    }

    /// At a terminal: this process's log records, shown above the prompt, and the edited
    /// row, drawn again when it is not on the screen.
    #[inline(never)]
    fn terminal_output(&mut self) {
        if self.raw_input.is_some() {
            let mut logs = String::new();
            crate::driver::logsink::take(&mut logs);
            if !logs.is_empty() {
                self.output.show_text(&logs);
            }
        }
        if self.interactive && !self.node.is_quitting() && self.output.wants_prompt() {
            let cols = self
                .raw_input
                .as_ref()
                .map_or(crate::driver::terminal::DEFAULT_COLS, RawInput::cols);
            let prompt = self.node.prompt();
            let view = self
                .console
                .editing(prompt, cols)
                .unwrap_or_else(|| crate::ui::lineedit::layout(prompt, "", 0, cols));
            self.output.draw_prompt(&view);
        }
    }

    /// Hands what is rendered to stdout and writes what stdout takes without blocking
    /// (whether it all went is for stdout's backlog to tell).
    #[inline]
    fn write_output(&mut self) -> io::Result<()> {
        let stdout = &mut self.stdout;
        match self.output.drain(|text| stdout.write_turn(text).map(drop)) {
            Some(written) => written,
            // Nothing rendered this turn: what waits, if anything, is written.
            None => self.stdout.flush().map(drop),
        }
    }

    /// Writes the journal; a failure, and the recovery from one, are shown.
    #[cold]
    fn flush_journal(&mut self, now: Instant) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        let node = &self.node;
        let notice = match journal.flush(now, || node.snapshot()) {
            Flushed::Quietly => None,
            Flushed::Failed(e) => Some(format!(
                "cannot write the state journal ({e}); trying again every second"
            )),
            Flushed::Recovered { rewritten: false } => {
                Some("the state journal is written again; nothing was lost".to_owned())
            }
            Flushed::Recovered { rewritten: true } => Some(
                "the state journal is written again (rewritten from what is known now: some messages of the outage are not in it)"
                    .to_owned(),
            ),
        };
        if let Some(notice) = notice {
            self.effects.push(Effect::Show(Event::Warning(notice)));
            self.apply_effects(now);
        }
    }

    /// Tells at once, not at the next event (an idle peer may have none), that `dropped`
    /// lines were dropped, and writes that.
    #[cold]
    fn report_dropped(&mut self, dropped: u64, now: Instant) -> io::Result<()> {
        self.effects.push(Effect::Show(Event::Warning(format!(
            "{dropped} lines of output were dropped: stdout was not being read (more than {} bytes waiting)",
            self.stdout.limit()
        ))));
        self.apply_effects(now);
        self.write_output()
    }

    /// stdout failed: nothing will be written any more.
    #[cold]
    fn stdout_failed(&mut self, e: io::Error, now: Instant) {
        self.stdout_broken = true;
        // What waits is dropped, and its memory goes.
        self.output.discard();
        self.stdout.discard();
        crate::driver::heap::trim();
        if self.config.headless {
            log::warn!("stdout failed ({e}); running on without output");
        } else {
            // Nobody reads us any more: leave politely.
            log::warn!("stdout failed ({e}); quitting");
            self.node.quit(now, &mut self.effects);
            self.apply_effects(now);
        }
    }

    /// Whether stdout is so far behind that reading the network must wait: a reader that
    /// keeps up, however slowly, then loses nothing (the senders wait, through TCP).
    /// (Asked several times a turn: the sizes first, which are small but for a burst.)
    pub(super) fn behind(&self) -> bool {
        self.output.buffered() + self.stdout.backlog() >= self.config.limits.stdout_buffer
            && !self.stdout_broken
            && !self.stdout.is_dropping()
    }

    /// After each turn's flush: notes whether stdout is behind and taking nothing. A pipe
    /// that takes nothing for [`STDOUT_STALL`] is not being read: reading resumes and what
    /// does not fit is dropped (and reported once it drains). A terminal or a file never
    /// drops.
    pub(super) fn watch_stdout(&mut self, now: Instant) {
        let behind = self.behind();
        if self.stdout.take_progress() || !behind {
            self.stalled_since = None;
        }
        if behind {
            let since = *self.stalled_since.get_or_insert(now);
            if self.stdout.kind() == Kind::Pipe && now >= since + STDOUT_STALL {
                self.stdout.set_dropping(true);
            }
        }
    }

    /// When a stalled pipe on stdout will count as not being read.
    pub(super) fn stall_deadline(&self) -> Option<Instant> {
        let pipe = self.stdout.kind() == Kind::Pipe && !self.stdout.is_dropping();
        self.stalled_since
            .filter(|_| pipe)
            .map(|since| since + STDOUT_STALL)
    }

    /// Ctrl-Z: erases the edited row and writes what is pending, gives the terminal back and
    /// stops; once continued, the next flush draws the row again.
    pub(super) fn suspend(&mut self, now: Instant) {
        self.output.redraw_prompt();
        self.flush_output_without_prompt(now);
        match &mut self.raw_input {
            Some(raw) => raw.suspend(),
            None => {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::STOP,
                );
            }
        }
    }

    /// Writes what is rendered, without the prompt, waiting a moment for the terminal.
    fn flush_output_without_prompt(&mut self, _now: Instant) {
        if self.stdout_broken {
            return;
        }
        let _ = self.write_output();
        let _ = self.stdout.finish(Duration::from_millis(200));
    }
}
