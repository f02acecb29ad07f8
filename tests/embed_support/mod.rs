//! Helpers for the embedding and terminal tests (issue 7), kept apart from `common` (which
//! another test file owns).
//!
//! [`Proc`] watches any child process line by line, like `common::Peer`, but does not
//! assume the first line is `listening on ...` (in `--json` mode it is a JSON object), keeps
//! the raw bytes of every line (so a test can check they are valid UTF-8), exposes the
//! process id (for `SIGKILL`) and keeps reading stdout after the process died, so that
//! "everything it printed" is known exactly. [`send_raw`] writes arbitrary bytes to a peer
//! from a chosen loopback address. Every wait has a deadline; nothing sleeps to synchronise.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The default deadline of one wait.
pub const WAIT: Duration = Duration::from_secs(5);
/// The deadline for slow things (a process exit, a burst, liveness checks).
pub const LONG_WAIT: Duration = Duration::from_secs(10);

/// One child process, its stdout split into lines.
pub struct Proc {
    /// A short name for failure reports.
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    /// Every stdout line so far, raw (without the newline).
    raw: Vec<Vec<u8>>,
    /// The same lines, decoded lossily.
    lines: Vec<String>,
    consumed: Vec<bool>,
    stdout_closed: bool,
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with piped stdin (or `/dev/null` when `stdin` is false), stdout and stderr.
    pub fn start(label: &str, mut cmd: Command, stdin: bool) -> Proc {
        let mut child = cmd
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot start {cmd:?}: {e}"));
        let (tx, rx) = mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        thread::spawn(move || loop {
            let mut buf = Vec::new();
            match out.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    if tx.send(buf).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let mut err = BufReader::new(child.stderr.take().expect("piped stderr"));
        thread::spawn(move || {
            let mut buf = Vec::new();
            while matches!(err.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                sink.lock().unwrap().push(line);
                buf.clear();
            }
        });
        Proc {
            label: label.to_string(),
            stdin: child.stdin.take(),
            child,
            rx,
            raw: Vec::new(),
            lines: Vec::new(),
            consumed: Vec::new(),
            stdout_closed: false,
            stderr,
            status: None,
        }
    }

    /// Starts the `peerchat` binary with `args`, stdin a pipe.
    pub fn peerchat(label: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerchat"));
        cmd.args(args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "debug");
        }
        Proc::start(label, cmd, true)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line (newline added) to stdin.
    pub fn send_line(&mut self, line: &str) {
        let result = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => panic!("{}: stdin is closed", self.label),
        };
        if let Err(e) = result {
            panic!("{}", self.report(&format!("cannot write {line:?}: {e}")));
        }
    }

    /// Closes stdin (end of input: peerchat quits).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn push(&mut self, raw: Vec<u8>) {
        self.lines.push(String::from_utf8_lossy(&raw).into_owned());
        self.raw.push(raw);
        self.consumed.push(false);
    }

    fn drain(&mut self) {
        while let Ok(raw) = self.rx.try_recv() {
            self.push(raw);
        }
    }

    /// Waits for the first line not matched by an earlier wait that satisfies `pred`;
    /// panics with the transcript after `timeout` or when stdout closes first.
    pub fn expect(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut i = 0;
        loop {
            while i < self.lines.len() {
                if !self.consumed[i] && pred(&self.lines[i]) {
                    self.consumed[i] = true;
                    return self.lines[i].clone();
                }
                i += 1;
            }
            if self.stdout_closed {
                panic!(
                    "{}",
                    self.report(&format!("stdout closed while waiting for {what}"))
                );
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "{}",
                    self.report(&format!("timed out after {timeout:?} waiting for {what}"))
                );
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(raw) => self.push(raw),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.stdout_closed = true,
            }
        }
    }

    /// Like [`Proc::expect`] for a JSON line whose object satisfies `pred`.
    pub fn expect_json(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.expect(what, WAIT, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).expect("matched lines parse")
    }

    /// Waits for the JSON event `kind` whose object also satisfies `pred`.
    pub fn expect_event(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_json(&format!("a {kind:?} event"), |v| {
            v["event"] == kind && pred(v)
        })
    }

    /// Sends SIGKILL.
    pub fn kill9(&mut self) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits");
        // SAFETY: plain kill(2) of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 failed: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit, then reads the rest of stdout (to EOF, or `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.status {
                break status;
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    break status;
                }
                Ok(None) if Instant::now() < deadline => {
                    // Polling a process for its exit: there is no event to wait on.
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => panic!(
                    "{}",
                    self.report(&format!("did not exit within {timeout:?}"))
                ),
                Err(e) => panic!("{}", self.report(&format!("wait failed: {e}"))),
            }
        };
        while !self.stdout_closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(raw) => self.push(raw),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => self.stdout_closed = true,
            }
        }
        status
    }

    /// Every stdout line so far (decoded lossily).
    pub fn lines(&mut self) -> Vec<String> {
        self.drain();
        self.lines.clone()
    }

    /// Every stdout line so far, raw bytes.
    pub fn raw_lines(&mut self) -> Vec<Vec<u8>> {
        self.drain();
        self.raw.clone()
    }

    /// A failure report: `problem`, then everything printed so far.
    pub fn report(&mut self, problem: &str) -> String {
        self.drain();
        format!(
            "{}: {problem}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.label,
            self.lines.join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Opens a TCP connection from `from` (port chosen by the system) to `to`.
pub fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), WAIT)?;
    Ok(socket.into())
}

/// Writes `bytes` to `to` on a connection from `from`, shuts down our side and waits (with
/// a deadline) for the receiver to close: like a lab peer's one-message connection.
pub fn send_raw(from: IpAddr, to: SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
    let mut stream = connect_from(from, to)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(bytes)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink)?;
    Ok(())
}

/// Waits at most `timeout` for `listener` to have a connection, accepts it and reads it
/// to EOF (also with a deadline).
pub fn accept_one(listener: &TcpListener, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n <= 0 {
        return Err(format!("no connection within {timeout:?}"));
    }
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the connection: {e}"))?;
    Ok(bytes)
}

/// A port on `ip` where nothing listens (bound once by us, then released).
pub fn closed_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).expect("bind a throwaway listener");
    l.local_addr().expect("local addr").port()
}

/// Removes ANSI control sequences (`ESC [ ... final`) from `s`.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `s` holds an SGR (colour) sequence `ESC [ digits;... m`.
pub fn has_sgr(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == 0x1b && b.get(i + 1) == Some(&b'[') && {
            let rest = &b[i + 2..];
            let end = rest
                .iter()
                .position(|c| !(c.is_ascii_digit() || *c == b';'))
                .unwrap_or(rest.len());
            rest.get(end) == Some(&b'm')
        }
    })
}

/// Whether `s` starts with a `HH:MM:SS ` timestamp.
pub fn starts_with_hms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 9
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b' '
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}
