//! The terminal's mode: non-canonical while peerchat edits the line itself, and always
//! put back as it was.
//!
//! [`RawInput`] switches off canonical mode and echo on fd 0 (signals stay on, so Ctrl-C
//! still quits through the loop) and restores the saved settings when dropped, including
//! while unwinding from a panic; a panic hook restores them too, before the panic message
//! is printed.

use std::io;
use std::sync::OnceLock;

/// The settings to restore, shared with the panic hook.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// Keystroke-at-a-time input on fd 0 while this value lives.
#[derive(Debug)]
pub struct RawInput {
    saved: libc::termios,
}

impl RawInput {
    /// Switches fd 0 to non-canonical mode without echo.
    pub fn enable() -> io::Result<RawInput> {
        // SAFETY: an all-zero termios is valid storage; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        if SAVED.set(saved).is_ok() {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_saved();
                previous(info);
            }));
        }
        // SAFETY: raw is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawInput { saved })
    }
}

impl Drop for RawInput {
    fn drop(&mut self) {
        // SAFETY: restores settings read from this very terminal.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

fn restore_saved() {
    if let Some(saved) = SAVED.get() {
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
    }
}
