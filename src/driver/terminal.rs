//! The terminal while peerchat edits the line itself: its mode, its width, Ctrl-Z.
//!
//! [`RawInput`] switches off canonical mode and echo on fd 0 (signals stay on, so Ctrl-C
//! still quits through the loop, and Ctrl-Z stops it through the loop too) and restores
//! the saved settings when dropped, including while unwinding from a panic; a panic hook
//! restores them too, before the panic message is printed. It knows the screen's width
//! (`TIOCGWINSZ`, read again on SIGWINCH), gives the terminal back for a Ctrl-Z
//! ([`RawInput::suspend`]) and takes it again on `fg` ([`RawInput::resume`]). While it
//! lives, log records meant for stderr go through [`crate::driver::logsink`] when stderr is
//! the same terminal, so that the loop prints them above the prompt.
//!
//! All through `rustix`: no `unsafe` here.

use std::io;
use std::sync::OnceLock;

use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Termios};

use crate::driver::logsink;

/// The settings to restore, shared with the panic hook.
static SAVED: OnceLock<Termios> = OnceLock::new();

/// Columns assumed when the terminal does not say (`TIOCGWINSZ` fails or says 0).
pub const DEFAULT_COLS: usize = 80;

/// Keystroke-at-a-time input on fd 0 while this value lives.
#[derive(Debug)]
pub struct RawInput {
    saved: Termios,
    raw: Termios,
    cols: usize,
    /// Whether log records are held for the loop (stderr is this terminal).
    capturing: bool,
}

impl RawInput {
    /// Switches fd 0 to non-canonical mode without echo.
    pub fn enable() -> io::Result<RawInput> {
        let stdin = rustix::stdio::stdin();
        let saved = termios::tcgetattr(stdin)?;
        let mut raw = saved.clone();
        raw.local_modes &= !(LocalModes::ICANON | LocalModes::ECHO);
        raw.special_codes[SpecialCodeIndex::VMIN] = 1;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        if SAVED.set(saved.clone()).is_ok() {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_saved();
                previous(info);
            }));
        }
        termios::tcsetattr(stdin, OptionalActions::Now, &raw)?;
        let capturing = stderr_is_this_terminal();
        if capturing {
            logsink::capture(true);
        }
        Ok(RawInput {
            saved,
            raw,
            cols: window_cols(),
            capturing,
        })
    }

    /// The screen's width in columns, as last read.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Reads the screen's width again (after SIGWINCH).
    pub fn refresh_size(&mut self) {
        self.cols = window_cols();
    }

    /// Ctrl-Z: puts the terminal back as it was and stops the process; returns once it is
    /// continued (`fg`), with the terminal in peerchat's mode again.
    ///
    /// SIGTSTP is caught by the loop (to get here), so the stop itself is SIGSTOP, which
    /// cannot be caught; the shell reports the job as stopped either way.
    pub fn suspend(&mut self) {
        let _ = termios::tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, &self.saved);
        if let Err(e) =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP)
        {
            log::warn!("cannot stop: {e}");
        }
        self.resume();
    }

    /// After SIGCONT: peerchat's mode again (a shell may have changed it while the process
    /// was stopped) and the width again (the window may have changed meanwhile).
    pub fn resume(&mut self) {
        if let Err(e) = termios::tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, &self.raw)
        {
            log::debug!("cannot set the terminal's mode again: {e}");
        }
        self.refresh_size();
    }
}

impl Drop for RawInput {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, &self.saved);
        if self.capturing {
            logsink::capture(false);
        }
    }
}

fn restore_saved() {
    if let Some(saved) = SAVED.get() {
        let _ = termios::tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, saved);
    }
}

/// The width of the terminal on stdout (or stdin), [`DEFAULT_COLS`] if neither says.
pub fn window_cols() -> usize {
    [rustix::stdio::stdout(), rustix::stdio::stdin()]
        .into_iter()
        .find_map(|fd| {
            termios::tcgetwinsize(fd)
                .ok()
                .filter(|w| w.ws_col > 0)
                .map(|w| usize::from(w.ws_col))
        })
        .unwrap_or(DEFAULT_COLS)
}

/// Whether stderr is the terminal that stdout is (same device), so that what is written
/// to it lands on the screen peerchat draws.
fn stderr_is_this_terminal() -> bool {
    let (err, out) = (rustix::stdio::stderr(), rustix::stdio::stdout());
    if !termios::isatty(err) {
        return false;
    }
    match (rustix::fs::fstat(err), rustix::fs::fstat(out)) {
        (Ok(e), Ok(o)) => e.st_rdev == o.st_rdev,
        _ => false,
    }
}
