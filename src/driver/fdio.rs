//! Raw I/O on the console's descriptors (fd 0 and 1), never blocking, flags untouched.
//!
//! Their open file descriptions are shared with the shell and the rest of a pipeline, so
//! peerchat never sets `O_NONBLOCK` on them. Instead it asks `poll(2)` first and then does
//! one `read(2)`/`write(2)` that the answer guarantees will not block.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// The `revents` of `fd` for `events`, waiting at most `timeout`; 0 when none is ready.
pub fn poll(fd: RawFd, events: libc::c_short, timeout: Duration) -> libc::c_short {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, millis) };
    if n > 0 {
        pfd.revents
    } else {
        0
    }
}

/// One `read(2)` into `buf`, retried on EINTR.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: reads at most buf.len() bytes into buf.
        unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
    })
}

/// One `write(2)` of `bytes`, retried on EINTR.
pub fn write(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: writes at most bytes.len() bytes from bytes.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) }
    })
}

fn retry(mut call: impl FnMut() -> libc::ssize_t) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
