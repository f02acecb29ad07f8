//! Where log records go: straight to stderr, or, while peerchat draws a prompt on the
//! terminal that stderr is too, into a bounded buffer that the loop prints above the
//! prompt (erase the edited row, print, redraw), so that `RUST_LOG=debug` never writes into
//! the line being typed.
//!
//! `main` hands [`Writer`] to env_logger as its target; the terminal code turns capturing
//! on and off ([`capture`]); the loop takes what was held once per turn ([`take`]).

use std::io::{self, Write};
use std::sync::Mutex;

/// Bytes of log records held at most between two loop turns; the rest is counted.
const LIMIT: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Held {
    capturing: bool,
    bytes: Vec<u8>,
    dropped: u64,
}

static HELD: Mutex<Held> = Mutex::new(Held {
    capturing: false,
    bytes: Vec::new(),
    dropped: 0,
});

fn held() -> std::sync::MutexGuard<'static, Held> {
    // A panic while holding the lock leaves plain bytes behind: still usable.
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// env_logger's target: stderr, or the buffer while capturing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Writer;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut held = held();
        if !held.capturing {
            drop(held);
            return io::stderr().write(buf);
        }
        if held.bytes.len() + buf.len() <= LIMIT {
            held.bytes.extend_from_slice(buf);
        } else {
            held.dropped += 1;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if held().capturing {
            Ok(())
        } else {
            io::stderr().flush()
        }
    }
}

/// Starts (or stops) holding records for the loop. Stopping writes what is still held to
/// stderr.
pub fn capture(on: bool) {
    let mut held = held();
    held.capturing = on;
    if !on {
        let bytes = std::mem::take(&mut held.bytes);
        let dropped = std::mem::take(&mut held.dropped);
        drop(held);
        let mut err = io::stderr();
        let _ = err.write_all(&bytes);
        if dropped > 0 {
            let _ = writeln!(err, "({dropped} log records dropped)");
        }
    }
}

/// Appends the records held since the last call to `out` (whole lines, each ending in a
/// newline), with a note for those dropped.
pub fn take(out: &mut String) {
    let mut held = held();
    if held.bytes.is_empty() && held.dropped == 0 {
        return;
    }
    out.push_str(&String::from_utf8_lossy(&held.bytes));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    held.bytes.clear();
    if held.bytes.capacity() > LIMIT {
        held.bytes.shrink_to(LIMIT);
    }
    let dropped = std::mem::take(&mut held.dropped);
    if dropped > 0 {
        out.push_str(&format!(
            "({dropped} log records dropped: more than {LIMIT} bytes in one turn)\n"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_held_while_capturing_and_bounded() {
        capture(true);
        let mut w = Writer;
        w.write_all(b"[DEBUG one]\n").expect("held");
        let mut out = String::new();
        take(&mut out);
        assert_eq!(out, "[DEBUG one]\n");
        let mut out = String::new();
        take(&mut out);
        assert_eq!(out, "", "taken once");
        let big = vec![b'x'; LIMIT];
        w.write_all(b"a\n").expect("held");
        w.write_all(&big).expect("dropped, not an error");
        take(&mut out);
        assert!(out.starts_with("a\n(1 log records dropped"), "{out}");
        capture(false);
    }
}
