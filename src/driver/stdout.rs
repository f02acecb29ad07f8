//! Writing to stdout without ever blocking the loop.
//!
//! stdout may be a pipe that nobody reads for a while (a paused `less`, a stuck consumer).
//! Its flags are shared with other processes, so they are left alone; instead, each write
//! of at most one pipe buffer's worth is preceded by a zero-timeout `poll` saying it will
//! not block. A terminal may block a write that `poll` allowed (it reports any room at
//! all), so on a terminal peerchat writes through a second, non-blocking open of it; a
//! pipe is opened the same way (no `poll` per write then), and only what cannot be
//! reopened (a socket) falls back to polling. What cannot be written yet waits in a buffer; its [`Stdout::backlog`] tells
//! the loop to read the network more slowly (so that a reader that keeps up loses
//! nothing). Only when the loop decides that a pipe is not being read at all does it turn
//! on [`Stdout::set_dropping`]: output beyond [`Stdout::limit`] is then dropped, counted,
//! and reported as soon as stdout drains. A regular file never blocks and is written
//! whole; fd 1 is watched for writability when epoll accepts it.

use crate::time::Instant;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;

use crate::driver::fdio::{self, PollFlags};
use mio::{Interest, Registry, Token};

const FD: RawFd = 1;
/// Buffer capacity kept once everything is written; more is given back after a burst.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Largest single write: a pipe that polls writable takes this much without blocking.
const WRITE_CHUNK: usize = 4096;

/// Buffered, non-blocking stdout.
#[derive(Debug)]
pub struct Stdout {
    pending: Vec<u8>,
    /// Bytes of `pending` already written.
    start: usize,
    limit: usize,
    dropped_lines: u64,
    /// Whether output beyond `limit` is dropped (a pipe nobody reads).
    dropping: bool,
    /// Whether some bytes were written since [`Stdout::take_progress`].
    progress: bool,
    /// On a terminal: the terminal opened once more, non-blocking. A terminal says it is
    /// writable when it has any room at all, so a write after `poll` could still block;
    /// this second open file description never does, and the one shared with the shell
    /// keeps its flags.
    twin: Option<std::fs::File>,
    kind: Kind,
}

/// What fd 1 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Never blocks: written whole, without polling first.
    RegularFile,
    /// A person's screen: never dropped from, however slow.
    Terminal,
    /// A pipe, socket or anything else: may stop being read.
    Pipe,
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// Some output waits for stdout to become writable.
    Partly,
}

impl Stdout {
    /// A writer that holds at most `limit` unwritten bytes; watches fd 1 with `token` when
    /// epoll allows it.
    pub fn attach(registry: &Registry, token: Token, limit: usize) -> Self {
        if let Err(e) = registry.register(&mut SourceFd(&FD), token, Interest::WRITABLE) {
            log::debug!("stdout cannot be watched by epoll ({e}); treating it as always writable");
        }
        Stdout {
            pending: Vec::new(),
            start: 0,
            limit,
            dropped_lines: 0,
            dropping: false,
            progress: false,
            twin: None,
            kind: kind(),
        }
        .with_twin()
    }

    /// Opens the non-blocking twin of a terminal (the writer falls back to `poll` first,
    /// then write, when that fails).
    /// A pipe gets one too: Linux opens a new file description of the same pipe, whose
    /// non-blocking writes say "full" by themselves, so that no zero-timeout `poll`
    /// precedes each write (one system call per message). Where it cannot be opened (a
    /// socket, a pipe with no reader left), `poll` before each write remains.
    fn with_twin(mut self) -> Self {
        if matches!(self.kind, Kind::Terminal | Kind::Pipe) {
            use std::os::unix::fs::OpenOptionsExt;
            let twin = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(
                    (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32,
                )
                .open("/proc/self/fd/1");
            match twin {
                Ok(file) => self.twin = Some(file),
                Err(e) => log::debug!("cannot open the terminal again, non-blocking: {e}"),
            }
        }
        self
    }

    /// What fd 1 is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Bytes queued and not yet written.
    pub fn backlog(&self) -> usize {
        self.pending.len() - self.start
    }

    /// Whether output beyond the limit is being dropped.
    pub fn is_dropping(&self) -> bool {
        self.dropping
    }

    /// Turns dropping on (stdout is not being read) or off (it drains again).
    pub fn set_dropping(&mut self, dropping: bool) {
        self.dropping = dropping;
    }

    /// The bound on unwritten output, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Queues `bytes` (whole lines); while dropping, the lines that do not fit in the
    /// buffer are dropped and counted.
    pub fn push(&mut self, bytes: &[u8]) {
        // Forget what was written already, so that the buffer's memory stays bounded
        // even when a slow reader never lets it empty completely.
        if self.start > 0 && (self.start == self.pending.len() || self.start >= self.limit / 4) {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        let room = self.limit.saturating_sub(self.pending.len());
        if bytes.len() <= room || !self.dropping {
            self.pending.extend_from_slice(bytes);
            return;
        }
        // Keep the lines that fit, in order; drop the rest.
        let mut kept = 0;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if kept + line.len() > room {
                self.dropped_lines += 1;
                continue;
            }
            kept += line.len();
            self.pending.extend_from_slice(line);
        }
    }

    /// Queues `bytes` as [`Stdout::push`] does, taking them: when nothing waits, the
    /// buffers are swapped instead of copied, and `bytes` is left empty (holding the
    /// written buffer's memory for the next turn's output).
    pub fn push_owned(&mut self, bytes: &mut Vec<u8>) {
        if self.swaps_in(bytes.len()) {
            self.pending.clear();
            self.start = 0;
            std::mem::swap(&mut self.pending, bytes);
        } else {
            self.push(bytes);
        }
        bytes.clear();
    }

    /// Whether [`Stdout::push_owned`] takes `len` bytes by swapping buffers: nothing
    /// waits, and [`Stdout::push`] would keep them whole (they fit, or nothing is
    /// dropped).
    #[inline(always)]
    fn swaps_in(&self, len: usize) -> bool {
        self.start == self.pending.len() && (len <= self.limit || !self.dropping)
    }

    /// Gives back the memory of a burst of output: the buffer, when nothing waits in it,
    /// keeps `KEEP_CAPACITY` at most (a swapped-in turn's buffer may be far larger).
    pub fn give_back(&mut self) {
        if self.start == self.pending.len() {
            self.pending.clear();
            self.start = 0;
            self.pending.shrink_to(KEEP_CAPACITY);
        }
    }

    /// Drops what waits unwritten, and the buffer's memory: stdout is gone.
    pub fn discard(&mut self) {
        self.pending = Vec::new();
        self.start = 0;
    }

    /// Whether the buffer is larger than it is kept once written (a burst left it so).
    pub fn holds_burst(&self) -> bool {
        self.pending.capacity() > KEEP_CAPACITY
    }

    /// Every line dropped and not reported yet, whatever stdout holds (at exit).
    pub fn take_all_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_lines)
    }

    /// Lines dropped since the last call, once stdout has drained to half its limit (so
    /// that the report is not dropped too); dropping stops then.
    pub fn take_dropped(&mut self) -> u64 {
        if self.backlog() > self.limit / 2 {
            return 0;
        }
        self.dropping = false;
        std::mem::take(&mut self.dropped_lines)
    }

    /// Whether some bytes were written since the last call.
    pub fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progress)
    }

    /// Writes as much as stdout takes without blocking.
    #[inline]
    pub fn flush(&mut self) -> io::Result<Flushed> {
        if self.start == self.pending.len() && self.pending.capacity() <= KEEP_CAPACITY {
            // Nothing waits (most turns that rendered nothing): nothing to write, nor to
            // give back.
            self.pending.clear();
            self.start = 0;
            return Ok(Flushed::All);
        }
        self.flush_pending()
    }

    /// [`Stdout::flush`] when something waits or the buffer is larger than it is kept.
    fn flush_pending(&mut self) -> io::Result<Flushed> {
        while self.start < self.pending.len() {
            match self.write_some(&self.pending[self.start..])? {
                Some(n) => {
                    self.start += n;
                    self.progress = true;
                }
                None => return Ok(Flushed::Partly),
            }
        }
        // A burst leaves a big buffer behind: given back once output is small again (not
        // after every turn of a stream, which would grow it again by reallocations).
        if self.pending.capacity() > KEEP_CAPACITY && self.pending.len() <= KEEP_CAPACITY / 2 {
            self.pending.clear();
            self.pending.shrink_to(KEEP_CAPACITY);
        }
        self.pending.clear();
        self.start = 0;
        Ok(Flushed::All)
    }

    /// Writes a turn's output (whole lines) as [`Stdout::push_owned`] and then
    /// [`Stdout::flush`] would, without going through the buffer when nothing waits in it:
    /// then `text` is written from where it is (most often all of it, at once), and only
    /// what stdout does not take is swapped in to wait. `text` is left empty.
    pub fn write_turn(&mut self, text: &mut String) -> io::Result<Flushed> {
        let mut written = 0;
        let mut failed = None;
        if self.swaps_in(text.len()) && !text.is_empty() {
            match self.write_some(text.as_bytes()) {
                Ok(Some(n)) if n == text.len() => {
                    self.progress = true;
                    text.clear();
                    return Ok(Flushed::All);
                }
                Ok(Some(n)) => {
                    self.progress = true;
                    written = n;
                }
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        let mut bytes = std::mem::take(text).into_bytes();
        self.push_owned(&mut bytes);
        // Swapped in whole when anything was written: the part written is behind `start`.
        self.start += written;
        // Empty (`push_owned` leaves it so), hence valid UTF-8: never a new string.
        *text = String::from_utf8(bytes).unwrap_or_default();
        match failed {
            Some(e) => Err(e),
            None => self.flush(),
        }
    }

    /// One write of (the start of) `bytes`, which are not empty: how many stdout took, or
    /// `None` when it takes nothing now.
    #[inline(always)]
    fn write_some(&self, bytes: &[u8]) -> io::Result<Option<usize>> {
        if let Some(twin) = &self.twin {
            loop {
                match std::io::Write::write(&mut &*twin, bytes) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => return Ok(Some(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let end = if self.kind == Kind::RegularFile {
            bytes.len()
        } else if writable_now() {
            bytes.len().min(WRITE_CHUNK)
        } else {
            return Ok(None);
        };
        match fdio::write(rustix::stdio::stdout(), &bytes[..end]) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// At exit: keeps writing for at most `patience`, waiting for stdout to drain.
    pub fn finish(&mut self, patience: Duration) -> io::Result<Flushed> {
        let deadline = Instant::now() + patience;
        loop {
            if self.flush()? == Flushed::All {
                return Ok(Flushed::All);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Flushed::Partly);
            }
            fdio::poll(
                rustix::stdio::stdout(),
                PollFlags::OUT,
                left.min(Duration::from_secs(1)),
            );
        }
    }
}

fn kind() -> Kind {
    let regular = rustix::fs::fstat(rustix::stdio::stdout()).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
    });
    if regular {
        Kind::RegularFile
    } else if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        Kind::Terminal
    } else {
        Kind::Pipe
    }
}

/// Whether a write of up to a pipe buffer to fd 1 would return at once (an error too:
/// the write then reports it).
fn writable_now() -> bool {
    !fdio::poll(rustix::stdio::stdout(), PollFlags::OUT, Duration::ZERO).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdout(limit: usize) -> Stdout {
        Stdout {
            pending: Vec::new(),
            start: 0,
            limit,
            dropped_lines: 0,
            dropping: true,
            progress: false,
            twin: None,
            kind: Kind::Pipe,
        }
    }

    #[test]
    fn output_beyond_the_bound_is_dropped_and_counted() {
        let mut s = stdout(10);
        s.push(b"12345\n");
        s.push(b"abcdef\n");
        s.push(b"xyz\n");
        assert_eq!(s.pending, b"12345\nxyz\n");
        assert_eq!(s.take_dropped(), 0, "still more than half full");
        s.start = 6;
        assert_eq!(s.take_dropped(), 1);
        assert_eq!(s.take_dropped(), 0);
    }

    #[test]
    fn a_big_turn_keeps_the_lines_that_fit() {
        let mut s = stdout(10);
        s.push(b"1234\n5678\nabcd\n");
        assert_eq!(s.pending, b"1234\n5678\n");
        assert_eq!(s.dropped_lines, 1);
    }

    #[test]
    fn written_bytes_are_forgotten_so_memory_stays_bounded() {
        let mut s = stdout(100);
        for _ in 0..1000 {
            s.push(b"0123456789\n");
            // A slow reader takes a little, never everything.
            s.start = (s.start + 8).min(s.pending.len());
        }
        assert!(s.pending.len() <= 100, "{} bytes held", s.pending.len());
    }

    #[test]
    fn nothing_is_dropped_unless_dropping_is_on() {
        let mut s = stdout(10);
        s.set_dropping(false);
        s.push(b"12345\n");
        s.push(b"abcdefghij\n");
        assert_eq!(s.backlog(), 17, "beyond the limit, kept");
        assert_eq!(s.dropped_lines, 0);
        s.set_dropping(true);
        s.push(b"xyz\n");
        assert_eq!(s.dropped_lines, 1);
        assert_eq!(s.backlog(), 17);
    }

    /// A turn's output is swapped in when nothing waits (the caller gets the written
    /// buffer back, empty), copied after what waits, and dropped from as `push` would.
    #[test]
    fn owned_output_is_swapped_in_only_when_nothing_waits() {
        let mut s = stdout(10);
        s.pending = Vec::with_capacity(64);
        let mut turn = b"1234\n".to_vec();
        let turn_memory = turn.as_ptr();
        s.push_owned(&mut turn);
        assert_eq!(
            (s.pending.as_slice(), s.pending.as_ptr()),
            (&b"1234\n"[..], turn_memory)
        );
        assert!(
            turn.is_empty() && turn.capacity() == 64,
            "the old buffer comes back"
        );
        turn.extend_from_slice(b"ab\n");
        s.push_owned(&mut turn);
        assert_eq!(s.pending, b"1234\nab\n", "copied after what waits");
        assert!(turn.is_empty());
        s.start = s.pending.len();
        turn.extend_from_slice(b"12345\n67890\n");
        s.push_owned(&mut turn);
        assert_eq!(
            (s.pending.as_slice(), s.dropped_lines),
            (&b"12345\n"[..], 1)
        );
    }

    /// A turn is written from where it is when nothing waits; what the reader does not
    /// take yet waits, and the next turn goes after it: the reader gets every byte once,
    /// in order. (A socket stands in for the non-blocking twin of a terminal or pipe.)
    #[test]
    fn a_turn_is_written_where_it_is_and_its_rest_waits_in_order() {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let (mut reader, writer) = UnixStream::pair().unwrap();
        writer.set_nonblocking(true).unwrap();
        reader.set_nonblocking(true).unwrap();
        let mut s = stdout(1 << 30);
        s.set_dropping(false);
        s.twin = Some(std::fs::File::from(std::os::fd::OwnedFd::from(writer)));
        let mut sent = String::new();
        let mut text = String::from("small turn\n");
        sent.push_str(&text);
        assert_eq!(s.write_turn(&mut text).unwrap(), Flushed::All);
        assert!(text.is_empty() && s.take_progress() && s.backlog() == 0);
        // More than a socket buffer takes: written in part.
        let big: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let mut text = big.clone();
        sent.push_str(&big);
        assert_eq!(s.write_turn(&mut text).unwrap(), Flushed::Partly);
        assert!(text.is_empty());
        assert!(
            s.backlog() > 0 && s.backlog() < big.len(),
            "{}",
            s.backlog()
        );
        let mut text = String::from("after\n");
        sent.push_str(&text);
        assert_eq!(s.write_turn(&mut text).unwrap(), Flushed::Partly);
        let mut got = Vec::new();
        let mut chunk = vec![0; 1 << 16];
        loop {
            let all = s.flush().unwrap() == Flushed::All;
            loop {
                match reader.read(&mut chunk) {
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            if all {
                break;
            }
        }
        assert!(
            got == sent.as_bytes(),
            "{} bytes of {}",
            got.len(),
            sent.len()
        );
    }

    /// `write_turn` does what `push_owned` and then `flush` do, whatever waits, however
    /// much the reader takes and whether lines are dropped: two writers, one of each, get
    /// the same turns and readers that take the same amounts, and answer alike after every
    /// step (what was written, what waits, what was dropped, whether bytes went).
    #[test]
    fn a_written_turn_is_what_a_pushed_and_flushed_one_is() {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let mut rng = crate::sim::rng::Rng::new(67);
        let pair = || {
            let (reader, writer) = UnixStream::pair().expect("socket pair");
            writer.set_nonblocking(true).expect("non-blocking");
            reader.set_nonblocking(true).expect("non-blocking");
            let mut s = stdout(16 * 1024);
            s.set_dropping(false);
            s.twin = Some(std::fs::File::from(std::os::fd::OwnedFd::from(writer)));
            (reader, s)
        };
        let (mut fast_reader, mut fast) = pair();
        let (mut plain_reader, mut plain) = pair();
        let (mut fast_got, mut plain_got) = (Vec::new(), Vec::new());
        let mut chunk = vec![0; 1 << 16];
        let mut read = |reader: &mut UnixStream, got: &mut Vec<u8>, n: usize| {
            let mut left = n;
            while left > 0 {
                match reader.read(&mut chunk[..left.min(1 << 16)]) {
                    Ok(0) => break,
                    Ok(k) => {
                        got.extend_from_slice(&chunk[..k]);
                        left -= k;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        };
        for step in 0..2_000 {
            let dropping = rng.index(4) == 0;
            fast.set_dropping(dropping);
            plain.set_dropping(dropping);
            let lines = 1 + rng.index(6);
            let text: String = (0..lines)
                .map(|l| format!("{step}.{l} {}\n", "x".repeat(rng.index(12_000))))
                .collect();
            let mut turn = text.clone();
            let fast_flushed = fast.write_turn(&mut turn).expect("write");
            assert!(turn.is_empty(), "{step}");
            let mut bytes = text.into_bytes();
            plain.push_owned(&mut bytes);
            let plain_flushed = plain.flush().expect("flush");
            let answers = |s: &mut Stdout, flushed| {
                (flushed, s.backlog(), s.dropped_lines, s.take_progress())
            };
            assert_eq!(
                answers(&mut fast, fast_flushed),
                answers(&mut plain, plain_flushed),
                "step {step}"
            );
            let n = [0, 100, 5_000, 70_000][rng.index(4)];
            read(&mut fast_reader, &mut fast_got, n);
            read(&mut plain_reader, &mut plain_got, n);
            assert_eq!(fast_got.len(), plain_got.len(), "step {step}");
        }
        while fast.flush().expect("flush") == Flushed::Partly {
            read(&mut fast_reader, &mut fast_got, usize::MAX);
        }
        while plain.flush().expect("flush") == Flushed::Partly {
            read(&mut plain_reader, &mut plain_got, usize::MAX);
        }
        read(&mut fast_reader, &mut fast_got, usize::MAX);
        read(&mut plain_reader, &mut plain_got, usize::MAX);
        assert!(
            fast_got == plain_got,
            "{} against {}",
            fast_got.len(),
            plain_got.len()
        );
    }

    /// A burst's buffer is given back once written, not while something waits in it.
    #[test]
    fn a_written_burst_gives_its_buffer_back() {
        let mut s = stdout(1 << 20);
        let mut turn = vec![b'x'; 4 * KEEP_CAPACITY];
        s.push_owned(&mut turn);
        s.give_back();
        assert_eq!(s.backlog(), 4 * KEEP_CAPACITY, "nothing written yet: kept");
        s.start = s.pending.len();
        s.give_back();
        assert!(
            s.pending.capacity() <= KEEP_CAPACITY,
            "{}",
            s.pending.capacity()
        );
        assert_eq!(s.backlog(), 0);
    }
}
