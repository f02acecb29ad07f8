//! The harness of every integration test: real processes on loopback, driven through stdin
//! and watched through stdout, and connections from chosen loopback addresses.
//!
//! [`Peer`] is any child process under test: a `peerchat` (plain text or `--json`), one of the
//! Python reference peers under `tests/peers/`, the `ping_bot` example, a shell pipeline
//! around peerchat. Its stdin is a pipe the harness holds ([`Peer::send_line`],
//! [`Peer::write_stdin`], [`Peer::close_stdin`]) or whatever the test hands it (a file,
//! `/dev/null`, a pipe of its own). Threads read its stdout and stderr; every stdout line is
//! kept, raw and decoded, so that a failed wait can show everything the process printed.
//!
//! Tests synchronise only on events, each with a deadline. [`Peer::expect`] waits for the
//! first line, not yet matched by an earlier wait, that satisfies a predicate (the
//! `expect_*` methods build on it: exact lines, lines in order, many lines, JSON events),
//! and panics with the whole transcript when the deadline passes or stdout closes first.
//! [`Peer::wait_exit`] waits for the process's exit (a `pidfd` becoming readable) and then
//! reads its stdout to the end. Nothing sleeps to synchronise; the one exception is
//! [`poll_until`], for conditions that no output announces (a descriptor count, a pipe's
//! fill level), which looks every 10 ms until its deadline.
//!
//! Every connection from a chosen source address goes through [`connect_from`], which binds
//! the source IP with `IP_BIND_ADDRESS_NO_PORT`; [`send_raw`] and [`flood`] build on it.
//!
//! Network rule: everything runs on 127.0.0.0/8 (plus `::1` where a test is about IPv6). Each
//! test uses its own block of addresses, `127.0.K.2`, `127.0.K.3`, ... (see [`ip`]), with a
//! distinct `K` per test across all test files, and every listener binds port 0, so parallel
//! tests never collide. A test that needs more (multicast, crafted packets) makes its own
//! user and network namespace, which holds only `lo`: [`in_namespace`].

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The default deadline of one wait.
pub const WAIT: Duration = Duration::from_secs(5);

/// The deadline for anything that may take longer (a process exit, a burst of messages).
pub const LONG_WAIT: Duration = Duration::from_secs(10);

/// Address number `host` in test block `block`: `127.0.block.host`.
pub fn ip(block: u8, host: u8) -> String {
    format!("127.0.{block}.{host}")
}

/// The `peerchat` binary built by cargo for this test run.
pub fn peerchat_bin() -> &'static str {
    env!("CARGO_BIN_EXE_peerchat")
}

/// A Python reference peer script under `tests/peers/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers")
        .join(name)
}

/// `peerchat ARGS...`, with `RUST_LOG=debug` unless the test run sets `RUST_LOG`.
fn peerchat_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(peerchat_bin());
    cmd.args(args);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "debug");
    }
    cmd
}

/// `peerchat -n NAME --port 0 -b BIND_IP EXTRA_ARGS...`.
fn peerchat_at(name: &str, bind_ip: &str, extra_args: &[&str]) -> Command {
    let mut cmd = peerchat_cmd(&["-n", name, "--port", "0", "-b", bind_ip]);
    cmd.args(extra_args);
    cmd
}

// ---------------------------------------------------------------------------------------
// The process under test
// ---------------------------------------------------------------------------------------

/// One running child process whose stdout is watched line by line. Killed when dropped.
pub struct Peer {
    /// A short name for failure reports (`alice`, `thread_receiver.py`, `alice --json`...).
    pub label: String,
    /// The name it chats under; empty when the harness was not told (see [`Peer::launch`]).
    pub name: String,
    /// Where it listens, from its first output line `listening on IP:PORT as NAME`;
    /// `0.0.0.0:0` for a process started with [`Peer::launch`] or [`Peer::peerchat`], which
    /// do not wait for that line.
    pub addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    /// Every stdout line received so far, raw (without the `\n`).
    raw: Vec<Vec<u8>>,
    /// The same lines decoded (lossily), without trailing `\r`.
    lines: Vec<String>,
    /// `consumed[i]`: line `i` already satisfied an earlier wait.
    consumed: Vec<bool>,
    stdout_closed: bool,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    /// Starts `peerchat -n NAME --port 0 -b BIND_IP EXTRA_ARGS...` with its stdin a pipe the
    /// harness holds, and waits for its listening line.
    pub fn spawn(name: &str, bind_ip: &str, extra_args: &[&str]) -> Peer {
        Peer::spawn_stdin(name, bind_ip, extra_args, Stdio::piped())
    }

    /// Like [`Peer::spawn`] with `stdin` as its standard input (a file, `/dev/null`, a pipe
    /// the test made...) instead of a pipe the harness holds; [`Peer::send_line`] then
    /// panics.
    pub fn spawn_stdin(name: &str, bind_ip: &str, extra_args: &[&str], stdin: Stdio) -> Peer {
        Peer::start(name, name, peerchat_at(name, bind_ip, extra_args), stdin)
    }

    /// Like [`Peer::spawn`] with `RUST_LOG` set to `log` (for example `warn`, so that a
    /// flood does not write a debug line per message to stderr).
    pub fn spawn_log(name: &str, bind_ip: &str, extra_args: &[&str], log: &str) -> Peer {
        let mut cmd = peerchat_at(name, bind_ip, extra_args);
        cmd.env("RUST_LOG", log);
        Peer::start(name, name, cmd, Stdio::piped())
    }

    /// Starts `tests/peers/SCRIPT --bind BIND_IP --name NAME EXTRA_ARGS...` (a Python
    /// receiver) and waits for its listening line.
    pub fn python(script_name: &str, name: &str, bind_ip: &str, extra_args: &[&str]) -> Peer {
        let mut cmd = Command::new("python3");
        cmd.env("PYTHONDONTWRITEBYTECODE", "1"); // keep tests/peers free of __pycache__
        cmd.arg("-u")
            .arg(script(script_name))
            .args(["--bind", bind_ip, "--name", name])
            .args(extra_args);
        Peer::start(script_name, name, cmd, Stdio::piped())
    }

    /// Starts `peerchat ARGS...` (exactly these arguments) with its stdin a pipe the harness
    /// holds, without waiting for anything: for `--json` mode, whose first line is a JSON
    /// event, and for tests that read the listening line themselves.
    pub fn peerchat(label: &str, args: &[&str]) -> Peer {
        Peer::launch(label, peerchat_cmd(args), Stdio::piped())
    }

    /// Starts `cmd` (any program printing peerchat's listening line first) with `stdin`
    /// and waits for the listening line.
    pub fn start(label: &str, name: &str, cmd: Command, stdin: Stdio) -> Peer {
        let mut peer = Peer::launch(label, cmd, stdin);
        peer.name = name.to_string();
        let first = peer.expect("the listening line", LONG_WAIT, |l| {
            l.starts_with("listening on ")
        });
        peer.addr = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{label}: bad listening line {first:?}"));
        peer
    }

    /// Starts `cmd` (any program) with `stdin` (`Stdio::piped()`: a pipe the harness holds)
    /// and stdout and stderr watched; waits for nothing.
    pub fn launch(label: &str, mut cmd: Command, stdin: Stdio) -> Peer {
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot start {cmd:?}: {e}"));
        drop(cmd); // releases the parent's copies of the child's stdio
        let (tx, rx) = mpsc::channel();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        thread::spawn(move || loop {
            let mut buf = Vec::new();
            match stdout.read_until(b'\n', &mut buf) {
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
        let mut err_pipe = BufReader::new(child.stderr.take().expect("piped stderr"));
        thread::spawn(move || {
            let mut buf = Vec::new();
            while matches!(err_pipe.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                sink.lock().unwrap().push(line);
                buf.clear();
            }
        });
        Peer {
            label: label.to_string(),
            name: String::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
            stdin: child.stdin.take(),
            child,
            rx,
            raw: Vec::new(),
            lines: Vec::new(),
            consumed: Vec::new(),
            stdout_closed: false,
            stderr,
        }
    }

    /// `IP:PORT` where it listens, as text.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The listening IP, as text.
    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    // --- stdin ---------------------------------------------------------------------------

    /// Writes one line (a newline is added) to its stdin.
    pub fn send_line(&mut self, line: &str) {
        let result = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => panic!("{}: stdin already closed", self.label),
        };
        if let Err(e) = result {
            let report = self.report(&format!("cannot write {line:?} to stdin: {e}"));
            panic!("{report}");
        }
    }

    /// Writes `bytes` to its stdin in one `write` call (a pasted block).
    pub fn write_stdin(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes its stdin (EOF) without waiting for anything.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    // --- stdout ----------------------------------------------------------------------------

    fn push(&mut self, raw: Vec<u8>) {
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        self.lines.push(line);
        self.raw.push(raw);
        self.consumed.push(false);
    }

    /// Takes whatever stdout lines already arrived, without waiting.
    fn drain(&mut self) {
        while let Ok(raw) = self.rx.try_recv() {
            self.push(raw);
        }
    }

    /// Waits at most until `deadline` for the next stdout line; false on timeout or once
    /// stdout is closed.
    fn receive(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(raw) => {
                self.push(raw);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_closed = true;
                false
            }
        }
    }

    /// The index of the first unmatched line at or after `from` satisfying `pred`, which is
    /// then marked matched; on timeout (or if stdout closes first) an error holding
    /// everything the process printed so far.
    fn wait_from(
        &mut self,
        from: usize,
        what: &str,
        pred: &dyn Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        let mut i = from;
        loop {
            while i < self.lines.len() {
                if !self.consumed[i] && pred(&self.lines[i]) {
                    self.consumed[i] = true;
                    return Ok(i);
                }
                i += 1;
            }
            if self.stdout_closed {
                return Err(self.report(&format!("stdout closed while waiting for {what}")));
            }
            if Instant::now() >= deadline {
                return Err(self.report(&format!("timed out after {timeout:?} waiting for {what}")));
            }
            self.receive(deadline);
        }
    }

    /// Waits for the first line not matched by an earlier wait that satisfies `pred`;
    /// on timeout (or if the process closes stdout first) returns an error holding
    /// everything the process printed so far.
    pub fn wait_for(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        self.wait_from(0, "a matching line", &pred, timeout)
            .map(|i| self.lines[i].clone())
    }

    /// Like [`Peer::wait_for`], but panics with the transcript; `what` says what was awaited.
    pub fn expect(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        match self.wait_from(0, what, &pred, timeout) {
            Ok(i) => self.lines[i].clone(),
            Err(report) => panic!("{report}"),
        }
    }

    /// Waits for the exact line `line`.
    pub fn expect_line(&mut self, line: &str) -> String {
        self.expect_line_within(line, WAIT)
    }

    /// Waits for the exact line `line`, at most `timeout`.
    pub fn expect_line_within(&mut self, line: &str, timeout: Duration) -> String {
        self.expect(&format!("the line {line:?}"), timeout, |l| l == line)
    }

    /// Waits for the exact `lines`, in this order: each must come after the previous one
    /// (a line printed too early is not seen, and the wait fails).
    pub fn expect_lines_in_order(&mut self, lines: &[String]) {
        let mut from = 0;
        for line in lines {
            let what = format!("the line {line:?}, after the ones before it");
            match self.wait_from(from, &what, &|l: &str| l == line, WAIT) {
                Ok(i) => from = i + 1,
                Err(report) => panic!("{report}"),
            }
        }
    }

    /// Waits until `count` not yet matched lines satisfy `pred` (marking them matched) and
    /// returns them in arrival order; panics with the transcript at the deadline. Scans
    /// each line once, so it suits floods of thousands of lines.
    pub fn expect_many(
        &mut self,
        what: &str,
        count: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut found = Vec::with_capacity(count);
        let mut i = 0;
        loop {
            while i < self.lines.len() && found.len() < count {
                if !self.consumed[i] && pred(&self.lines[i]) {
                    self.consumed[i] = true;
                    found.push(self.lines[i].clone());
                }
                i += 1;
            }
            if found.len() >= count {
                return found;
            }
            let problem = if self.stdout_closed {
                Some("stdout closed")
            } else if Instant::now() >= deadline {
                Some("timed out")
            } else {
                None
            };
            if let Some(problem) = problem {
                let report = self.report(&format!(
                    "{problem} while waiting for {count} lines of {what}: got {}",
                    found.len()
                ));
                // The transcript of a flood is long: keep the end, where the news is.
                let cut = report.len().saturating_sub(20_000);
                let cut = (cut..report.len())
                    .find(|&c| report.is_char_boundary(c))
                    .unwrap_or(0);
                panic!(
                    "{} lines of {what} seen of {count}\n...{}",
                    found.len(),
                    &report[cut..]
                );
            }
            self.receive(deadline);
        }
    }

    /// Waits ([`WAIT`]) for a JSON line (`--json` mode) whose object satisfies `pred`;
    /// panics with the transcript.
    pub fn expect_json(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.expect(what, WAIT, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).expect("matched lines parse")
    }

    /// Waits for the JSON event `kind` (`"event": KIND`) whose object also satisfies `pred`.
    pub fn expect_event(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_json(&format!("a {kind:?} event"), |v| {
            v["event"] == kind && pred(v)
        })
    }

    /// Every stdout line received so far, decoded.
    pub fn lines(&mut self) -> Vec<String> {
        self.drain();
        self.lines.clone()
    }

    /// Every stdout line received so far, raw bytes (without the `\n`).
    pub fn raw_lines(&mut self) -> Vec<Vec<u8>> {
        self.drain();
        self.raw.clone()
    }

    /// The stdout lines received so far that satisfy `pred`, matched or not.
    pub fn lines_matching(&mut self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        self.drain();
        self.lines.iter().filter(|l| pred(l)).cloned().collect()
    }

    /// Every stderr line received so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// A failure message: `problem`, then all of stdout and stderr so far.
    pub fn report(&mut self, problem: &str) -> String {
        self.drain();
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            _ => "still running".to_string(),
        };
        let at = if self.addr.port() == 0 {
            String::new()
        } else {
            format!("{}, ", self.addr)
        };
        format!(
            "{} ({at}{status}): {problem}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.label,
            self.lines.join("\n"),
            self.stderr_lines().join("\n"),
        )
    }

    // --- peerchat's query ------------------------------------------------------------------

    /// Runs a peerchat query (`/peers`) and returns its rows split on whitespace
    /// (`ADDRESS NAME STATUS SOURCE MSGS LAST-HEARD NOTE...`); empty when it says
    /// `no peers known yet`. The end of the table is found by sending an unknown command
    /// right after it and waiting for the `? ` hint it causes.
    pub fn query(&mut self) -> Vec<Vec<String>> {
        self.query_with("/peers")
    }

    /// Like [`Peer::query`], with the query typed as `command` (`/peers` or menu `2`).
    pub fn query_with(&mut self, command: &str) -> Vec<Vec<String>> {
        self.drain();
        let start = self.lines.len();
        self.send_line(command);
        self.send_line("/no-such-command-ends-the-table");
        let head = self
            .wait_from(
                start,
                "the query's header",
                &|l: &str| l.starts_with("ADDRESS") || l.contains("no peers known yet"),
                WAIT,
            )
            .unwrap_or_else(|r| panic!("{r}"));
        let end = self
            .wait_from(
                head + 1,
                "the `? ` hint after the query",
                &|l: &str| l.starts_with("? "),
                WAIT,
            )
            .unwrap_or_else(|r| panic!("{r}"));
        if self.lines[head].contains("no peers known yet") {
            return Vec::new();
        }
        self.lines[head + 1..end]
            .iter()
            // Table rows start with the address: `127.0.0.2:5001` or `[::1]:5001`.
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit() || c == '['))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    /// The query row whose address is `address`, if any.
    pub fn query_row(&mut self, address: &str) -> Option<Vec<String>> {
        self.query().into_iter().find(|row| row[0] == address)
    }

    // --- signals and exit ------------------------------------------------------------------

    /// Sends signal `sig` (`libc::SIGKILL` for `kill -9`, `libc::SIGSTOP`,
    /// `libc::SIGTERM`...).
    /// Stops the process (`SIGSTOP`) and waits until the kernel says it is stopped, so
    /// that what the test does next happens while it cannot run.
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
        let stat = format!("/proc/{}/stat", self.child.id());
        let stopped = poll_until(WAIT, || {
            std::fs::read_to_string(&stat).is_ok_and(|text| {
                // The state follows the command name, which is in parentheses.
                text.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        });
        assert!(stopped, "{}: not stopped after SIGSTOP", self.label);
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; it cannot have been reaped and reused
        // while `self.child` has not been waited for.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(
            rc,
            0,
            "{}: kill({sig}) failed: {}",
            self.label,
            io::Error::last_os_error()
        );
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit (it was told to quit, or killed), then reads the rest
    /// of its stdout, to EOF or the same deadline. Errors carry the transcript.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        let status = match exit_within(&mut self.child, timeout) {
            Ok(Some(status)) => status,
            Ok(None) => return Err(self.report(&format!("did not exit within {timeout:?}"))),
            Err(e) => return Err(self.report(&format!("wait failed: {e}"))),
        };
        while !self.stdout_closed && self.receive(deadline) {}
        Ok(status)
    }

    /// Like [`Peer::wait_exit`], but panics with the transcript.
    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_exit(timeout).unwrap_or_else(|r| panic!("{r}"))
    }

    /// Closes stdin (EOF = quit) and waits for the process to exit; then collects the rest
    /// of its output. Errors carry the transcript.
    pub fn quit(&mut self) -> Result<ExitStatus, String> {
        self.stdin = None;
        self.wait_exit(LONG_WAIT)
    }

    /// Quits (stdin EOF) and asserts a clean exit (status 0, `* bye` the last line).
    pub fn quit_ok(&mut self) {
        let status = self.quit().unwrap_or_else(|r| panic!("{r}"));
        self.assert_clean_exit(status);
    }

    /// Quits (stdin EOF) after `n` messages it was asked for failed: a script learns it
    /// from the exit status (1) and one line on stderr; `* bye` is still the last line.
    pub fn quit_undelivered(&mut self, n: usize) {
        let status = self.quit().unwrap_or_else(|r| panic!("{r}"));
        let last = self.lines.last().cloned().unwrap_or_default();
        let said = format!("{n} of the messages asked for could not be delivered");
        // Stderr is read by a thread of its own: give it the moment it may need.
        let told = poll_until(WAIT, || {
            self.stderr_lines().iter().any(|l| l.contains(&said))
        });
        if status.code() != Some(1) || last != "* bye" || !told {
            let report = self.report(&format!(
                "expected exit 1, `* bye` last and {said:?} on stderr, got {status} and last line {last:?}"
            ));
            panic!("{report}");
        }
    }

    /// Asserts exit status 0 with `* bye` as the last line, after the process was told to
    /// quit some other way than stdin EOF (a signal, `/quit`, an input that ended).
    pub fn exit_ok(&mut self, timeout: Duration) {
        let status = self.expect_exit(timeout);
        self.assert_clean_exit(status);
    }

    fn assert_clean_exit(&mut self, status: ExitStatus) {
        let last = self.lines.last().cloned().unwrap_or_default();
        if !status.success() || last != "* bye" {
            let report = self.report(&format!(
                "expected exit 0 with `* bye` last, got {status} and last line {last:?}"
            ));
            panic!("{report}");
        }
    }

    // --- /proc readings --------------------------------------------------------------------

    /// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`...).
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.child.id(), field)
    }

    /// How many descriptors the process has open (`/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        proc_open_fds(self.child.id())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits at most `timeout` for `child` to exit and reaps it: `None` if it is still running
/// at the deadline. Waits on a `pidfd` (readable when the process exits); only where the
/// kernel has none (before Linux 5.3) does it look every 10 ms instead.
pub fn exit_within(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    if let Some(status) = child.try_wait()? {
        return Ok(Some(status));
    }
    // SAFETY: pidfd_open(2) of our own child, not reaped yet (try_wait just said so); it
    // returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    // SAFETY: a descriptor just returned by pidfd_open, owned by nobody else.
    let pidfd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) });
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match &pidfd {
            Some(pidfd) => {
                let mut pfd = libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // Rounded up, so that the wait never ends just before the deadline.
                let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
                // SAFETY: one valid pollfd. EINTR and timeouts are handled by the loop.
                unsafe { libc::poll(&mut pfd, 1, ms) };
            }
            None => thread::sleep(left.min(Duration::from_millis(10))),
        }
    }
}

/// A field of `/proc/PID/status`, in kB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// How many descriptors process `pid` has open (`/proc/PID/fd`); 0 if it cannot be read.
pub fn proc_open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; for conditions that no
/// output line announces (a descriptor count, a pipe's fill level). Returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// Short-lived processes
// ---------------------------------------------------------------------------------------

/// A finished short-lived process.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// All of stdout.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
}

/// Runs `cmd` to completion with empty stdin (a pipe closed at once), killing it after
/// `timeout`; the error carries what it printed.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<Finished, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    drop(child.stdin.take());
    let collect = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("piped stdout")));
    let err = collect(Box::new(child.stderr.take().expect("piped stderr")));
    let status = exit_within(&mut child, timeout).ok().flatten();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{cmd:?} did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )),
    }
}

/// Runs `peerchat ARGS...` to completion (stdin a pipe at EOF).
pub fn run_peerchat(args: &[&str]) -> Finished {
    let mut cmd = Command::new(peerchat_bin());
    cmd.args(args);
    run(cmd, LONG_WAIT).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `tests/peers/sender.py ARGS...` to completion and asserts it sent everything.
pub fn py_send(args: &[&str]) -> Finished {
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONDONTWRITEBYTECODE", "1"); // keep tests/peers free of __pycache__
    cmd.arg(script("sender.py")).args(args);
    let done = run(cmd, LONG_WAIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        done.status.success() && done.stdout.starts_with("sent "),
        "sender.py {args:?} failed: {done:?}"
    );
    done
}

// ---------------------------------------------------------------------------------------
// The Python reference peers' output
// ---------------------------------------------------------------------------------------

/// The `key=value` fields of a Python reference peer's output line (the first word,
/// the event kind, is stored under `event`).
pub fn fields(line: &str) -> HashMap<String, String> {
    let mut words = line.split(' ');
    let mut map = HashMap::new();
    map.insert("event".to_string(), words.next().unwrap_or("").to_string());
    for word in words {
        if let Some((k, v)) = word.split_once('=') {
            map.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    map
}

/// Decodes the hex the Python peers print.
pub fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from a Python peer"))
        .collect()
}

/// One message as a Python receiver reported it.
#[derive(Debug, Clone)]
pub struct PyMessage {
    /// Accept order at the receiver.
    pub seq: usize,
    /// Bytes read by its single `recv(1024)`.
    pub raw: Vec<u8>,
    /// The name from the standard header (`?` if none).
    pub name: String,
    /// The claimed port (`?` if none).
    pub port: String,
    /// The claimed IP (`?` if none).
    pub claimed_ip: String,
    /// The message text after the header.
    pub text: String,
}

impl PyMessage {
    /// Parses a `message ...` line; `None` for any other line.
    pub fn parse(line: &str) -> Option<PyMessage> {
        let f = fields(line);
        if f["event"] != "message" {
            return None;
        }
        Some(PyMessage {
            seq: f.get("seq")?.parse().ok()?,
            raw: unhex(f.get("raw_hex")?),
            name: f.get("name")?.clone(),
            port: f.get("port")?.clone(),
            claimed_ip: f.get("claimed_ip")?.clone(),
            text: String::from_utf8(unhex(f.get("text_hex")?)).ok()?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// The network side: connections from chosen addresses, listeners
// ---------------------------------------------------------------------------------------

/// A blocking TCP connection from `from_ip` (port chosen by the system) to `to`, with a
/// connect timeout of [`WAIT`]. The one way the tests connect from a chosen address.
pub fn connect_from(from_ip: &str, to: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let from: IpAddr = from_ip
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{from_ip:?}: {e}")))?;
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    // Let `connect` choose the port, unique per destination: a plain bind to port 0
    // reserves a port per source IP, and after a flood (10,000 connections, each leaving
    // a TIME_WAIT behind for a minute) a rerun would run out of them.
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), WAIT)?;
    Ok(socket.into())
}

/// Writes `bytes` to `to` on a connection from `from_ip`, shuts down our side and waits
/// (with a deadline) for the receiver to close: like a lab peer's one-message connection.
pub fn send_raw(from_ip: &str, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
    let mut stream = connect_from(from_ip, to)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(bytes)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink)?;
    Ok(())
}

/// Sends each of `messages` on its own connection from `from_ip` to `to` (connect, write,
/// close), with `concurrency` connections at most in flight at once. Panics on any error.
pub fn flood(from_ip: &str, to: SocketAddr, messages: Vec<Vec<u8>>, concurrency: usize) {
    let queue = Arc::new(Mutex::new(messages.into_iter()));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let from_ip = from_ip.to_string();
            thread::spawn(move || loop {
                let Some(msg) = queue.lock().unwrap().next() else {
                    return;
                };
                let mut s = connect_from(&from_ip, to)
                    .unwrap_or_else(|e| panic!("flood: connect {from_ip} -> {to}: {e}"));
                s.write_all(&msg)
                    .unwrap_or_else(|e| panic!("flood: write to {to}: {e}"));
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a flood worker panicked");
    }
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

/// An address on `ip` where nothing listens, as `IP:PORT`, and the socket that keeps it
/// so: bound there but not listening (a connection is refused), it holds the port while
/// the test keeps it, so that no listener can take that port on `ip` or on every address
/// meanwhile (a port bound and released at once could be, and then a send to the
/// "closed" address was once accepted). Keep it in a named binding (`_port`, not `_`).
pub fn closed_addr(ip: &str) -> (String, socket2::Socket) {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = format!("{ip}:0").parse().expect("an IPv4 address");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("a socket");
    socket
        .bind(&addr.into())
        .expect("bind a port on the address");
    let bound = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("the port bound");
    (bound.to_string(), socket)
}

/// A child process killed (and reaped) when dropped, so that a failed assertion leaves none
/// behind: for processes a test starts itself, outside [`Peer`].
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads peerchat's first line, `listening on IP:PORT as NAME`, byte by byte from `out` (so
/// that nothing after it is taken), and returns the address.
pub fn read_listening_addr(out: &mut impl Read) -> SocketAddr {
    let mut first = Vec::new();
    let mut byte = [0u8];
    while byte[0] != b'\n' {
        out.read_exact(&mut byte).expect("the listening line");
        first.push(byte[0]);
    }
    let first = String::from_utf8_lossy(&first);
    first
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad first line {first:?}"))
}

/// Opens a connection from `from` to `peer` that says one line and stays open, and waits
/// until the line is shown. While it is open, newer connections are read when their
/// readiness events come, not in the turn that accepts them (see `Connections::read_fresh`).
pub fn hold_one_open(peer: &mut Peer, from: &str) -> TcpStream {
    let mut held = connect_from(from, peer.addr).expect("connect");
    held.write_all(format!("{from}:9 held open\n").as_bytes())
        .expect("write");
    peer.expect_line(&format!("[held {from}:9] open"));
    held
}

/// Set for a test's inner run, inside the namespace its outer run made.
const NETNS: &str = "PEERCHAT_TEST_NETNS";

/// Runs the ignored test `name` of this binary inside a fresh user and network namespace
/// (`unshare -rn`), after the shell commands `setup` (which should at least bring `lo`
/// up); returns false, having said why on stdout, when no namespace can be made here.
/// Addresses beyond loopback, multicast and crafted packets stay inside it.
pub fn in_namespace(name: &str, setup: &str) -> bool {
    match Command::new("unshare")
        .args(["-rn", "sh", "-c", setup])
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "SKIPPED {name}: cannot make a network namespace (unshare -rn: {})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return false;
        }
        Err(e) => {
            println!("SKIPPED {name}: cannot run unshare: {e}");
            return false;
        }
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let script =
        format!("{setup} && exec \"$0\" --exact \"$1\" --ignored --nocapture --test-threads=1");
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", &script])
        .arg(exe)
        .arg(name)
        .env(NETNS, "1")
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "inside the namespace, {name} failed:\n{stdout}\n{stderr}"
    );
    true
}

/// Whether this is an inner run, inside a namespace with only `lo` (else it says why it
/// does nothing). Panics rather than go on in a namespace with other interfaces.
pub fn inside_namespace() -> bool {
    if std::env::var_os(NETNS).is_none() {
        println!("the inner test runs only inside the namespace its outer test makes");
        return false;
    }
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("/proc/self/net/dev");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        interfaces,
        ["lo"],
        "refusing to go on outside a namespace of the test's own"
    );
    true
}
