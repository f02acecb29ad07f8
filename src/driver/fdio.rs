//! Raw I/O on the console's descriptors (fd 0 and 1), never blocking, flags untouched.
//!
//! Their open file descriptions are shared with the shell and the rest of a pipeline, so
//! peerchat never sets `O_NONBLOCK` on them. Instead it asks `poll(2)` first and then does
//! one `read(2)`/`write(2)` that the answer guarantees will not block. All through `rustix`:
//! no `unsafe` here.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

pub use rustix::event::PollFlags;

/// The `revents` of `fd` for `events`, waiting at most `timeout`; empty when none is ready
/// (or `poll` failed: the following read or write then reports the error).
pub fn poll(fd: BorrowedFd<'_>, events: PollFlags, timeout: Duration) -> PollFlags {
    let mut fds = [rustix::event::PollFd::new(&fd, events)];
    // A timeout too large for a timespec waits as long as one can.
    let timeout = rustix::event::Timespec::try_from(timeout).unwrap_or(rustix::event::Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(n) if n > 0 => fds[0].revents(),
        _ => PollFlags::empty(),
    }
}

/// One `read(2)` into `buf`, retried on EINTR.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// One `write(2)` of `bytes`, retried on EINTR.
pub fn write(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::io::write(fd, bytes) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}
