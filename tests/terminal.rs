//! peerchat on a terminal: stdin and stdout are a pseudo-terminal's slave, the test types on
//! the master and reads the screen from it. Checked: a half-typed line survives an incoming
//! message (the message is printed, then the prompt and the half-typed text again) and runs
//! in full when Enter is pressed; received lines carry `HH:MM:SS `; colour (SGR `ESC[...m`)
//! is used unless `NO_COLOR` is set or `--color never` is given; and the terminal's mode
//! (ICANON, ECHO) is restored when peerchat exits.
//!
//! The process on the pty is driven by [`TtyPeer`], which reads the screen as bytes rather
//! than lines (the harness's [`Peer`] needs stdout to be a pipe); the other peers and the
//! raw senders come from the harness (`tests/common`).
//!
//! The tests of the line editor look at the screen as a person would: the bytes go through
//! a terminal emulator (the `vt100` crate) of the pty's size, and the visible rows and the
//! cursor are asserted (a long line at 40 and 80 columns, a message arriving mid-line,
//! Ctrl-L, wide characters and a tab, a resize, Ctrl-Z and `fg`, log lines on the same
//! terminal, a prompt wider than the screen).
//!
//! Address blocks: `127.0.136.*` to `127.0.141.*` and `127.0.0.168` to `127.0.0.179`, port 0
//! everywhere. Every wait has a deadline and waits for bytes on the screen, a screen state
//! or a process state; nothing sleeps to synchronise.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use common::{exit_within, poll_until, send_raw, Peer, LONG_WAIT, WAIT};

/// What the master side has read so far, and whether the slave side is gone.
type Screen = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// A peerchat process whose stdin and stdout are a pseudo-terminal.
struct TtyPeer {
    child: Child,
    master: File,
    /// Kept open by the test so that the terminal's settings can be read after the exit.
    slave: OwnedFd,
    screen: Screen,
    /// Screen bytes already matched by a wait.
    seen: usize,
    stderr: Arc<Mutex<Vec<u8>>>,
    addr: SocketAddr,
    /// The screen as a terminal shows it, and how many bytes it has been fed.
    emulator: vt100::Parser,
    fed: usize,
}

/// How a [`TtyPeer`] is started.
struct Setup<'a> {
    args: &'a [&'a str],
    no_color: bool,
    cols: u16,
    /// `RUST_LOG` for a run whose stderr is the pty too (otherwise stderr is a pipe and
    /// `RUST_LOG` is removed).
    log_on_tty: Option<&'a str>,
    /// Started without a name and a port, so that it asks for them: nothing is awaited.
    asks: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            args: &[],
            no_color: true,
            cols: 200,
            log_on_tty: None,
            asks: false,
        }
    }
}

/// Rows of every pty.
const ROWS: u16 = 24;

fn openpty(cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: ROWS,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors; the name buffer is not used, the termios
    // pointer is null (defaults) and the window size is a valid struct.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [master, slave] {
        // Not inherited by the processes other tests start (Command dups what it passes).
        // SAFETY: fcntl on descriptors we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The local-mode flags of the terminal behind `fd`.
fn lflags(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: an all-zero termios is valid storage that tcgetattr fills.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) };
    assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    t.c_lflag
}

fn canonical_with_echo(fd: &OwnedFd) -> bool {
    let l = lflags(fd);
    l & libc::ICANON != 0 && l & libc::ECHO != 0
}

impl TtyPeer {
    /// Starts `peerchat -n NAME -p 0 -b IP ARGS...` on a new pty; `no_color` sets
    /// `NO_COLOR=1` (otherwise it is removed from the environment). Waits for the listening
    /// line and the first prompt (drawn once the terminal is in peerchat's mode).
    fn spawn(name: &str, ip: &str, args: &[&str], no_color: bool) -> TtyPeer {
        TtyPeer::start(
            name,
            ip,
            Setup {
                args,
                no_color,
                ..Setup::default()
            },
        )
    }

    /// Like [`TtyPeer::spawn`], with everything in `setup`.
    fn start(name: &str, ip: &str, setup: Setup<'_>) -> TtyPeer {
        let Setup {
            args,
            no_color,
            cols,
            log_on_tty,
            asks,
        } = setup;
        let (master, slave) = openpty(cols);
        assert!(
            canonical_with_echo(&slave),
            "a new pty starts canonical with echo"
        );
        let tty = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the pty slave"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerchat"));
        if !asks {
            cmd.args(["-n", name, "-p", "0"]);
        }
        cmd.args(["-b", ip])
            .args(args)
            .env("TERM", "xterm")
            .stdin(tty(&slave))
            .stdout(tty(&slave));
        match log_on_tty {
            Some(level) => cmd.env("RUST_LOG", level).stderr(tty(&slave)),
            None => cmd.env_remove("RUST_LOG").stderr(Stdio::piped()),
        };
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let mut child = cmd.spawn().expect("start peerchat on the pty");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        if let Some(mut err) = child.stderr.take() {
            thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let master = File::from(master);
        let screen: Screen = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let (mut reader, shared) = (master.try_clone().expect("dup master"), screen.clone());
        thread::spawn(move || {
            let mut buf = [0; 4096];
            loop {
                let n = reader.read(&mut buf).unwrap_or(0); // EIO once the slave is closed
                let (lock, cvar) = &*shared;
                let mut s = lock.lock().unwrap();
                if n == 0 {
                    s.1 = true;
                    cvar.notify_all();
                    return;
                }
                s.0.extend_from_slice(&buf[..n]);
                cvar.notify_all();
            }
        });
        let mut peer = TtyPeer {
            child,
            master,
            slave,
            screen,
            seen: 0,
            stderr,
            addr: "0.0.0.0:0".parse().unwrap(),
            emulator: vt100::Parser::new(nonzero(ROWS), nonzero(cols), 0),
            fed: 0,
        };
        if asks {
            return peer;
        }
        let text = peer.expect("the listening line and the first prompt", |s| {
            s.contains("listening on ") && plain_lines(s).last().is_some_and(|l| l == "> ")
        });
        let plain = strip_ansi(&text);
        peer.addr = plain
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listening address in {plain:?}"));
        peer
    }

    /// Everything on the screen so far.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.0.lock().unwrap().0).into_owned()
    }

    fn report(&mut self, problem: &str) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!("exited: {s}"),
            _ => "still running".into(),
        };
        format!(
            "tty peer {} ({status}): {problem}\n--- screen ---\n{:?}\n--- stderr ---\n{}\n---",
            self.addr,
            self.screen(),
            String::from_utf8_lossy(&self.stderr.lock().unwrap())
        )
    }

    /// Waits until the screen output after the last match satisfies `pred`; returns that
    /// output (with escape codes) and moves past it.
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cvar) = &*self.screen;
        let mut s = lock.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&s.0[self.seen..]).into_owned();
            if pred(&text) {
                self.seen = s.0.len();
                return text;
            }
            let now = Instant::now();
            if s.1 || now >= deadline {
                drop(s);
                let why = format!("waited {WAIT:?} for {what}");
                panic!("{}", self.report(&why));
            }
            s = cvar.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Feeds the emulator what arrived since the last look.
    fn feed_emulator(&mut self) {
        let (lock, _) = &*self.screen;
        let s = lock.lock().unwrap();
        self.emulator.process(&s.0[self.fed..]);
        self.fed = s.0.len();
    }

    /// The visible rows (trailing blanks trimmed) and the cursor (row, column).
    fn look(&mut self) -> (Vec<String>, (u16, u16)) {
        self.feed_emulator();
        let screen = self.emulator.screen();
        let (_, cols) = screen.size();
        let rows = screen
            .rows(0, cols.get())
            .map(|r| r.trim_end().to_owned())
            .collect();
        (rows, screen.cursor_position())
    }

    /// Waits until the screen satisfies `pred` (given the visible rows and the cursor);
    /// returns them.
    fn wait_screen(
        &mut self,
        what: &str,
        pred: impl Fn(&[String], (u16, u16)) -> bool,
    ) -> (Vec<String>, (u16, u16)) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (rows, cursor) = self.look();
            if pred(&rows, cursor) {
                return (rows, cursor);
            }
            let (lock, cvar) = &*self.screen;
            let s = lock.lock().unwrap();
            let now = Instant::now();
            if now >= deadline || (s.1 && s.0.len() == self.fed) {
                drop(s);
                let why = format!(
                    "waited {WAIT:?} for the screen to show {what}; it shows (cursor at {cursor:?}):\n{}",
                    rows.join("\n")
                );
                panic!("{}", self.report(&why));
            }
            if s.0.len() == self.fed {
                let _ = cvar.wait_timeout(s, deadline - now).unwrap();
            }
        }
    }

    /// Waits until the cursor's row is `row` with the cursor in column `col`; returns the
    /// visible rows and the cursor's row number.
    fn wait_row(&mut self, what: &str, row: &str, col: u16) -> (Vec<String>, u16) {
        let (rows, (r, _)) = self.wait_screen(what, |rows, (r, c)| {
            rows.get(usize::from(r))
                .is_some_and(|l| l == row.trim_end())
                && c == col
        });
        (rows, r)
    }

    /// Resizes the pty (as a terminal window does) and tells peerchat with SIGWINCH (the pty
    /// is not its controlling terminal, so the kernel would not).
    fn resize(&mut self, cols: u16) {
        self.feed_emulator();
        self.emulator
            .screen_mut()
            .set_size(nonzero(ROWS), nonzero(cols));
        let size = rustix::termios::Winsize {
            ws_row: ROWS,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, size).expect("TIOCSWINSZ");
        let before = self.fed;
        self.signal(rustix::process::Signal::WINCH);
        // peerchat redraws the edited row on SIGWINCH: wait for that before typing on, as a
        // person would see the window change before typing.
        let deadline = Instant::now() + WAIT;
        let (lock, cvar) = &*self.screen;
        let mut s = lock.lock().unwrap();
        while s.0.len() == before && !s.1 && Instant::now() < deadline {
            s = cvar.wait_timeout(s, deadline - Instant::now()).unwrap().0;
        }
        let redrawn = s.0.len() > before;
        drop(s);
        assert!(redrawn, "{}", self.report("a redraw after SIGWINCH"));
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// The process state letter from `/proc/PID/stat` (`T` when stopped).
    fn state(&self) -> char {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.trim_start().chars().next())
            .unwrap_or('?')
    }

    /// Types `bytes` on the keyboard.
    fn type_keys(&mut self, bytes: &[u8]) {
        self.master
            .write_all(bytes)
            .expect("write to the pty master");
        self.master.flush().expect("flush the pty master");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        match exit_within(&mut self.child, LONG_WAIT) {
            Ok(Some(status)) => status,
            other => panic!("{}", self.report(&format!("no exit: {other:?}"))),
        }
    }
}

impl Drop for TtyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nonzero(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a size above 0")
}

/// Removes ANSI control sequences (`ESC [ ... final`) from `s`.
fn strip_ansi(s: &str) -> String {
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
fn has_sgr(s: &str) -> bool {
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
fn starts_with_hms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 9
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b' '
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}

/// The screen's lines without escape codes, carriage returns removed.
fn plain_lines(raw: &str) -> Vec<String> {
    strip_ansi(raw)
        .split('\n')
        .map(|l| {
            let l = l.trim_end_matches('\r');
            l.rsplit('\r').next().unwrap_or("").to_owned()
        })
        .collect()
}

#[test]
fn half_typed_line_survives_an_incoming_message() {
    let mut bob = Peer::spawn("bob", "127.0.136.3", &[]);
    let mut tty = TtyPeer::spawn("tty", "127.0.136.2", &[], false);
    assert!(
        !canonical_with_echo(&tty.slave),
        "{}",
        tty.report("peerchat edits the line itself (ICANON and ECHO off)")
    );

    // Half a command, no Enter: peerchat echoes it after the prompt.
    let half = format!("/send {} first half", bob.address());
    tty.type_keys(half.as_bytes());
    tty.expect("the half-typed line after the prompt", |s| {
        plain_lines(s).last().is_some_and(|l| l.ends_with(&half))
    });

    // A message arrives: printed on its own line, then the prompt and the half line again.
    bob.send_line(&format!("/send {} news from bob", tty.addr));
    let shown = format!("[bob {}] news from bob", bob.address());
    let redrawn = format!("> {half}");
    let raw = tty.expect("the message, then the prompt and the half line", |s| {
        let lines = plain_lines(s);
        lines.iter().any(|l| l.ends_with(&shown)) && lines.last() == Some(&redrawn)
    });
    let lines = plain_lines(&raw);
    let at = lines
        .iter()
        .position(|l| l.ends_with(&shown))
        .expect("the message line");
    assert!(
        starts_with_hms(&lines[at]) && lines[at].len() == 9 + shown.len(),
        "the message line is `HH:MM:SS {shown}`: {:?}",
        lines[at]
    );
    assert_eq!(
        lines.last(),
        Some(&redrawn),
        "prompt and half line drawn again last: {raw:?}"
    );
    assert!(
        raw.starts_with("\r\x1b[K"),
        "the prompt line is erased before the message: {raw:?}"
    );
    assert!(
        has_sgr(&raw),
        "colour on a terminal without NO_COLOR: {raw:?}"
    );

    // Finish the line: the whole command runs.
    tty.type_keys(b" and the rest\r");
    bob.expect_line(&format!("[tty {}] first half and the rest", tty.addr));
    // Dated like every notice on a terminal.
    tty.expect("the sent line", |s| {
        let sent = format!(" * sent to {}: first half and the rest", bob.address());
        plain_lines(s)
            .iter()
            .any(|l| starts_with_hms(l) && l.ends_with(&sent))
    });

    tty.type_keys(b"/quit\r");
    let status = tty.wait_exit();
    tty.expect("* bye", |s| strip_ansi(s).contains("* bye"));
    assert!(status.success(), "{}", tty.report("exit status"));
    assert!(
        canonical_with_echo(&tty.slave),
        "{}",
        tty.report("ICANON and ECHO restored after the exit")
    );
    bob.expect_line(&format!("* tty {} left (exit)", tty.addr));
    bob.quit_ok();
}

/// A message from a raw sender on `ip` shows with a timestamp and without any colour.
fn no_colour(block_ip: &str, sender_ip: &str, args: &[&str], no_color_env: bool) {
    let mut tty = TtyPeer::spawn("tty", block_ip, args, no_color_env);
    send_raw(
        sender_ip,
        tty.addr,
        format!("{sender_ip}:9 ghost plain please").as_bytes(),
    )
    .expect("send to the tty peer");
    let shown = format!("[ghost {sender_ip}:9] plain please");
    let raw = tty.expect("the message and the prompt again", |s| {
        let lines = plain_lines(s);
        lines.iter().any(|l| l.ends_with(&shown)) && lines.last().is_some_and(|l| l == "> ")
    });
    let line = plain_lines(&raw)
        .into_iter()
        .find(|l| l.ends_with(&shown))
        .expect("the message line");
    assert!(
        starts_with_hms(&line) && line.len() == 9 + shown.len(),
        "`HH:MM:SS {shown}`: {line:?}"
    );
    // Ctrl-D on an empty line: end of input, quit.
    tty.type_keys(&[0x04]);
    let status = tty.wait_exit();
    tty.expect("* bye", |s| s.contains("* bye"));
    assert!(status.success(), "{}", tty.report("exit status"));
    let screen = tty.screen();
    assert!(
        !has_sgr(&screen),
        "no colour with {args:?} NO_COLOR={no_color_env}: {screen:?}"
    );
    assert!(
        canonical_with_echo(&tty.slave),
        "{}",
        tty.report("ICANON and ECHO restored after the exit")
    );
}

#[test]
fn no_color_env_turns_colour_off() {
    no_colour("127.0.137.2", "127.0.137.3", &[], true);
}

#[test]
fn color_never_turns_colour_off() {
    no_colour("127.0.138.2", "127.0.138.3", &["--color", "never"], false);
}

#[test]
fn ctrl_backslash_quits_politely_and_puts_the_terminal_back() {
    let mut bob = Peer::spawn("bob", "127.0.139.3", &[]);
    let mut tty = TtyPeer::spawn("tty", "127.0.139.2", &[], true);
    tty.type_keys(format!("/send {} hello\r", bob.address()).as_bytes());
    bob.expect_line(&format!("[tty {}] hello", tty.addr));
    assert!(
        !canonical_with_echo(&tty.slave),
        "peerchat's own mode while it runs"
    );
    // What the terminal does on Ctrl-\ (the test's pty is not the child's controlling
    // terminal, so the key itself would not signal it).
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(tty.child.id() as libc::pid_t, libc::SIGQUIT) };
    assert_eq!(rc, 0, "kill");
    let status = tty.wait_exit();
    assert!(
        status.success(),
        "{}",
        tty.report("a polite exit, not a core dump")
    );
    assert!(
        canonical_with_echo(&tty.slave),
        "{}",
        tty.report("ICANON and ECHO restored after SIGQUIT")
    );
    bob.expect_line(&format!("* tty {} left (exit)", tty.addr));
    bob.quit_ok();
}

// ---------------------------------------------------------------------------------------
// The line editor on the screen (vt100), in 127.0.0.170 to 127.0.0.179
// ---------------------------------------------------------------------------------------

/// A line of `n` characters that shows where any piece of it comes from.
fn long_text(n: usize) -> String {
    (0..n)
        .map(|i| char::from(b'a' + (i / 10 % 26) as u8))
        .zip((0..n).map(|i| char::from(b'0' + (i % 10) as u8)))
        .map(|(letter, digit)| if digit == '0' { letter } else { digit })
        .collect()
}

/// Asserts that exactly one visible row holds a piece of `text` (the edited row), that no
/// row was wrapped by the terminal, and returns that row's number.
fn assert_one_edited_row(tty: &mut TtyPeer, rows: &[String], text: &str, row: u16) {
    // Any 6 consecutive characters of the typed text identify a fragment of it.
    let pieces: Vec<&str> = (0..text.len().saturating_sub(6))
        .map(|i| &text[i..i + 6])
        .collect();
    let holding: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| pieces.iter().any(|p| r.contains(p)))
        .map(|(i, _)| i)
        .collect();
    // The edited row neither wraps into the next one nor continues the one before.
    let wrapped: Vec<u16> = [row.checked_sub(1), Some(row)]
        .into_iter()
        .flatten()
        .filter(|&r| tty.emulator.screen().row_wrapped(r))
        .collect();
    assert!(
        holding == [usize::from(row)] && wrapped.is_empty(),
        "{}",
        tty.report(&format!(
            "only row {row} may show the typed line, unwrapped; rows {holding:?} do, rows {wrapped:?} wrapped:\n{}",
            rows.join("\n")
        ))
    );
}

fn long_line_scrolls(cols: u16, ip: &str) {
    let mut tty = TtyPeer::start(
        "tty",
        ip,
        Setup {
            cols,
            ..Setup::default()
        },
    );
    let room = usize::from(cols) - 3; // the prompt, and the last column kept free
    let text = long_text(100);
    tty.type_keys(text.as_bytes());
    let tail = format!("> {}", &text[100 - room..]);
    let (rows, row) = tty.wait_row("the end of the long line", &tail, cols - 1);
    assert_one_edited_row(&mut tty, &rows, &text, row);

    // Home: the start of the line, on the same row.
    tty.type_keys(b"\x1b[H");
    let head = format!("> {}", &text[..room]);
    let (rows, at) = tty.wait_row("the start of the long line", &head, 2);
    assert_eq!(at, row, "the same row");
    assert_one_edited_row(&mut tty, &rows, &text, row);

    // End, then Backspace back across the screen's width: nothing stale left behind.
    tty.type_keys(b"\x1b[F");
    tty.type_keys(&[0x7f; 80]);
    let short = format!("> {}", &text[..20]);
    let (rows, at) = tty.wait_row("the shortened line", &short, 22);
    assert_eq!(at, row, "the same row");
    assert_one_edited_row(&mut tty, &rows, &text, row);

    // Ctrl-U, then quit: the editor still works.
    tty.type_keys(b"\x15/quit\r");
    assert!(tty.wait_exit().success(), "{}", tty.report("exit status"));
}

#[test]
fn a_line_longer_than_the_screen_scrolls_on_one_row_at_40_columns() {
    long_line_scrolls(40, "127.0.0.170");
}

#[test]
fn a_line_longer_than_the_screen_scrolls_on_one_row_at_80_columns() {
    long_line_scrolls(80, "127.0.0.171");
}

#[test]
fn a_message_arriving_mid_line_leaves_no_fragments() {
    let mut tty = TtyPeer::start(
        "tty",
        "127.0.0.172",
        Setup {
            cols: 40,
            ..Setup::default()
        },
    );
    let text = long_text(60);
    tty.type_keys(text.as_bytes());
    let tail = format!("> {}", &text[60 - 37..]);
    tty.wait_row("the end of the long line", &tail, 39);
    send_raw("127.0.0.173", tty.addr, b"127.0.0.173:9 ghost news").expect("send");
    let shown = "[ghost 127.0.0.173:9] news";
    let (rows, (row, col)) = tty.wait_screen("the message above the edited row", |rows, (r, c)| {
        let r = usize::from(r);
        r > 0 && rows[r] == tail && rows[r - 1].ends_with(shown) && c == 39
    });
    assert_eq!(col, 39);
    assert_one_edited_row(&mut tty, &rows, &text, row);
    assert_eq!(
        rows.iter().filter(|r| r.contains(shown)).count(),
        1,
        "{}",
        rows.join("\n")
    );
}

#[test]
fn ctrl_l_clears_and_redraws_ctrl_d_deletes_and_up_skips_menu_answers() {
    let mut tty = TtyPeer::start("tty", "127.0.0.174", Setup::default());
    tty.type_keys("half typed".as_bytes());
    tty.wait_row("the half line", "> half typed", 12);
    tty.type_keys(b"\x1b[D\x1b[D\x0c");
    let (rows, _) = tty.wait_screen("only the edited row, at the top", |rows, cursor| {
        rows[0] == "> half typed" && rows[1..].iter().all(String::is_empty) && cursor == (0, 10)
    });
    assert_eq!(rows[0], "> half typed");
    // Still editing at the same place.
    tty.type_keys(b"X");
    tty.wait_row("the insertion", "> half typXed", 11);

    // Ctrl-D mid-line deletes the character under the cursor.
    tty.type_keys(b"\x1b[H\x04");
    tty.wait_row("Ctrl-D at the start", "> alf typXed", 2);

    // Up recalls commands, not the menu's answers.
    tty.type_keys(b"\x05\x15/peers\r");
    tty.wait_row("a new prompt after /peers", "> ", 2);
    tty.type_keys(b"2\r");
    tty.wait_screen("the menu's table again", |rows, (r, _)| {
        rows.iter()
            .filter(|l| l.contains("no peers known yet"))
            .count()
            == 2
            && rows[usize::from(r)] == ">"
    });
    tty.type_keys(b"\x1b[A");
    tty.wait_row("the last command, not the menu answer", "> /peers", 8);
    tty.type_keys(b"\x1b[A");
    tty.wait_row("nothing older", "> /peers", 8);
}

#[test]
fn wide_characters_and_a_tab_put_the_cursor_under_the_right_character() {
    let mut tty = TtyPeer::start(
        "tty",
        "127.0.0.175",
        Setup {
            cols: 80,
            ..Setup::default()
        },
    );
    tty.type_keys("世界abc".as_bytes());
    tty.wait_row("the wide characters", "> 世界abc", 9);
    // Home, then Right: past one wide character (two columns) at a time.
    tty.type_keys(b"\x1b[H");
    tty.wait_row("Home", "> 世界abc", 2);
    tty.type_keys(b"\x1b[C");
    tty.wait_row("one Right", "> 世界abc", 4);
    tty.type_keys(b"\x1b[C");
    tty.wait_row("two Rights", "> 世界abc", 6);
    tty.type_keys(b"\x1b[CX");
    tty.wait_row("an insertion after a", "> 世界aXbc", 8);

    // A tab reaches the next multiple of 8 columns of the text.
    tty.type_keys(b"\x05\x15ab\tcd");
    tty.wait_row("the tab", "> ab      cd", 12);
    tty.type_keys(b"\x1b[H\x1b[C\x1b[C\x1b[C");
    tty.wait_row("after the tab", "> ab      cd", 10);
    tty.type_keys(b"\x1b[D");
    tty.wait_row("before the tab", "> ab      cd", 4);

    // Wide characters in a line longer than the screen: none cut in half at the edge.
    tty.resize(21);
    let wide = "世".repeat(30);
    tty.type_keys(b"\x05\x15");
    tty.type_keys(wide.as_bytes());
    let (rows, row) = tty.wait_row(
        "the end of the wide line",
        &format!("> {}", "世".repeat(9)),
        20,
    );
    assert!(
        rows.iter().filter(|r| r.contains('世')).count() == 1,
        "{}",
        tty.report(&format!("one row:\n{}", rows.join("\n")))
    );
    assert!(!tty.emulator.screen().row_wrapped(row));
}

#[test]
fn a_resize_while_typing_a_long_line_redraws_it_at_the_new_width() {
    let mut tty = TtyPeer::start(
        "tty",
        "127.0.0.176",
        Setup {
            cols: 80,
            ..Setup::default()
        },
    );
    let text = long_text(70);
    tty.type_keys(text.as_bytes());
    tty.wait_row("the whole line", &format!("> {text}"), 72);
    tty.resize(40);
    let tail = format!("> {}", &text[70 - 37..]);
    let (rows, row) = tty.wait_row("the line's end at 40 columns", &tail, 39);
    assert_one_edited_row(&mut tty, &rows, &text, row);
    tty.type_keys(b"!");
    let tail = format!("> {}!", &text[70 - 36..]);
    let (rows, row) = tty.wait_row("a key typed at 40 columns", &tail, 39);
    assert_one_edited_row(&mut tty, &rows, &text, row);
    tty.resize(80);
    let (rows, row) = tty.wait_row("the whole line again", &format!("> {text}!"), 73);
    assert_one_edited_row(&mut tty, &rows, &text, row);
}

#[test]
fn ctrl_z_gives_the_terminal_back_and_fg_takes_it_again() {
    let mut tty = TtyPeer::start("tty", "127.0.0.177", Setup::default());
    tty.type_keys(b"abc");
    tty.wait_row("the half line", "> abc", 5);
    assert!(!canonical_with_echo(&tty.slave));
    // What the terminal does on Ctrl-Z (the pty is not the child's controlling terminal).
    tty.signal(rustix::process::Signal::TSTP);
    let stopped = poll_until(WAIT, || tty.state() == 'T');
    assert!(stopped, "{}", tty.report("stopped after SIGTSTP"));
    assert!(
        canonical_with_echo(&tty.slave),
        "{}",
        tty.report("the terminal given back (ICANON and ECHO) while stopped")
    );
    // `fg`.
    tty.signal(rustix::process::Signal::CONT);
    let raw = poll_until(WAIT, || !canonical_with_echo(&tty.slave));
    assert!(raw, "{}", tty.report("peerchat's mode again after SIGCONT"));
    tty.wait_row("the half line drawn again", "> abc", 5);
    // Left is a key again, not `^[[D` echoed by the terminal.
    tty.type_keys(b"\x1b[DX");
    let (rows, _) = tty.wait_row("an edit in the middle", "> abXc", 5);
    assert!(
        !rows.iter().any(|r| r.contains("^[")),
        "{}",
        rows.join("\n")
    );
    tty.type_keys(b"\x05\x15/quit\r");
    assert!(tty.wait_exit().success(), "{}", tty.report("exit status"));
    assert!(canonical_with_echo(&tty.slave), "restored at exit");
}

#[test]
fn log_lines_on_the_same_terminal_appear_above_the_prompt() {
    let mut tty = TtyPeer::start(
        "tty",
        "127.0.0.178",
        Setup {
            cols: 80,
            log_on_tty: Some("debug"),
            ..Setup::default()
        },
    );
    tty.type_keys(b"half");
    tty.wait_row("the half line", "> half", 6);
    send_raw("127.0.0.179", tty.addr, b"127.0.0.179:9 ghost logged").expect("send");
    let (rows, (row, _)) = tty.wait_screen(
        "the message and a log line above the prompt",
        |rows, (r, c)| {
            let r = usize::from(r);
            rows[r] == "> half"
                && c == 6
                && rows[..r]
                    .iter()
                    .any(|l| l.ends_with("[ghost 127.0.0.179:9] logged"))
                && rows[..r]
                    .iter()
                    .any(|l| l.contains("DEBUG") && l.contains("from 127.0.0.179"))
        },
    );
    let prompts: Vec<&String> = rows.iter().filter(|r| r.contains("> half")).collect();
    assert_eq!(prompts.len(), 1, "{}", rows.join("\n"));
    assert!(
        rows[..usize::from(row)].iter().all(|r| !r.contains("half")),
        "{}",
        rows.join("\n")
    );
}

/// Tab completes a command, then a peer's name; `/query NAME` puts the name in the prompt
/// and plain lines (a digit too) go to that peer.
#[test]
fn tab_completes_commands_and_names_and_query_sets_the_conversation() {
    let mut bob = Peer::spawn("bob", "127.0.0.168", &[]);
    let mut tty = TtyPeer::start("tty", "127.0.0.169", Setup::default());
    let tty_addr = tty.addr.to_string();
    bob.send_line(&format!("/send {tty_addr} hello"));
    tty.expect("bob's message", |s| s.contains("] hello"));
    tty.type_keys(b"/que\t");
    tty.wait_row("the command completed", "> /query ", 9);
    tty.type_keys(b"bo\t");
    tty.wait_row("the name completed", "> /query bob ", 13);
    tty.type_keys(b"\r");
    tty.wait_row("the conversation's prompt", "bob> ", 5);
    tty.type_keys(b"1\r");
    bob.expect_line(&format!("[tty {tty_addr}] 1"));
}

/// Whether the cursor's row is the edited row of a conversation with a peer named in `n`s
/// that was cut (`...nnnn> TEXT`), with the cursor after `text`, inside a screen `cols` wide.
fn cut_prompt_then(rows: &[String], (r, c): (u16, u16), text: &str, cols: u16) -> bool {
    // The screen's rows come with trailing blanks trimmed: `> ` alone shows as `>`.
    let end = format!("> {text}");
    rows.get(usize::from(r))
        .and_then(|row| row.strip_prefix("..."))
        .and_then(|rest| rest.strip_suffix(end.trim_end()))
        .is_some_and(|kept| {
            !kept.is_empty()
                && kept.chars().all(|ch| ch == 'n')
                && usize::from(c) == 3 + kept.len() + end.len()
                && c < cols
        })
}

/// A conversation with a peer whose name (64 bytes) is wider than the screen: the prompt is
/// cut to its end after `...`, the typed text shows after it on the same row, and a message
/// arriving meanwhile leaves no stale piece of the prompt behind. Then the menu's question
/// on a screen narrower than it.
#[test]
fn a_prompt_wider_than_the_screen_is_cut_and_the_typed_text_shows() {
    const COLS: u16 = 60;
    let long = "n".repeat(64);
    let mut bob = Peer::spawn(&long, "127.0.141.3", &[]);
    let mut tty = TtyPeer::start(
        "tty",
        "127.0.141.2",
        Setup {
            cols: COLS,
            ..Setup::default()
        },
    );
    bob.send_line(&format!("/send {} hi", tty.addr));
    tty.expect("bob's message", |s| s.contains("] hi"));
    tty.type_keys(format!("/query {}\r", bob.address()).as_bytes());
    tty.wait_screen("the conversation's prompt, cut", |rows, cursor| {
        cut_prompt_then(rows, cursor, "", COLS)
    });
    tty.type_keys(b"hello 42");
    let (rows, (row, _)) = tty
        .wait_screen("the typed text after the cut prompt", |rows, cursor| {
            cut_prompt_then(rows, cursor, "hello 42", COLS)
        });
    let prompt_rows = |rows: &[String]| rows.iter().filter(|r| r.contains("n>")).count();
    assert_one_edited_row(&mut tty, &rows, "hello 42", row);
    assert_eq!(prompt_rows(&rows), 1, "{}", rows.join("\n"));

    // Each message redraws the edited row: never a stale row of it above.
    for i in 1..=3 {
        bob.send_line(&format!("/send {} news {i}", tty.addr));
        let news = format!("] news {i}");
        let (rows, (row, _)) =
            tty.wait_screen("the message, then the edited row", |rows, cursor| {
                cut_prompt_then(rows, cursor, "hello 42", COLS)
                    && rows[..usize::from(cursor.0)]
                        .iter()
                        .any(|l| l.ends_with(&news))
            });
        assert_one_edited_row(&mut tty, &rows, "hello 42", row);
        assert_eq!(prompt_rows(&rows), 1, "{}", rows.join("\n"));
    }
    tty.type_keys(b" there\r");
    bob.expect_line(&format!("[tty {}] hello 42 there", tty.addr));

    // The menu's question (34 columns) at 20 columns: its end, then what is typed.
    tty.type_keys(b"/query\r");
    tty.wait_row("the idle prompt", "> ", 2);
    tty.resize(20);
    tty.type_keys(b"1\r127.0.");
    let (rows, (row, col)) = tty.wait_screen("the end of the menu's question", |rows, (r, _)| {
        rows[usize::from(r)].starts_with("...") && rows[usize::from(r)].ends_with(": 127.0.")
    });
    assert!(
        usize::from(col) == rows[usize::from(row)].chars().count() && col < 20,
        "{}",
        tty.report(&format!(
            "the cursor after the text, on the screen:\n{}",
            rows.join("\n")
        ))
    );
    assert!(!tty.emulator.screen().row_wrapped(row));
    // A command abandons the dialogue.
    tty.type_keys(b"\x15/quit\r");
    assert!(tty.wait_exit().success(), "{}", tty.report("exit status"));
    bob.quit_ok();
}

/// Bad answers at the start-up prompts are explained and asked again: a name with a space,
/// then a port that is taken; the peer then starts.
#[test]
fn start_up_prompts_ask_again_after_a_bad_answer() {
    let taken = std::net::TcpListener::bind("127.0.0.167:0").expect("a port to take");
    let port = taken.local_addr().expect("addr").port();
    let setup = Setup {
        asks: true,
        ..Setup::default()
    };
    let mut tty = TtyPeer::start("", "127.0.0.167", setup);
    tty.expect("the name prompt", |s| s.contains("Enter your name: "));
    tty.type_keys(b"two words\r");
    // Each wait looks only past what the previous one matched.
    tty.expect("the name asked again", |s| s.contains("Enter your name: "));
    let said = |tty: &TtyPeer| String::from_utf8_lossy(&tty.stderr.lock().unwrap()).into_owned();
    let why = poll_until(WAIT, || said(&tty).contains("one word"));
    assert!(why && said(&tty).contains("try again"), "{}", said(&tty));
    tty.type_keys(b"alice\r");
    tty.expect("the port prompt", |s| {
        s.contains("Enter your port number: ")
    });
    tty.type_keys(format!("{port}\r").as_bytes());
    tty.expect("the port asked again", |s| {
        s.contains("Enter your port number: ")
    });
    tty.type_keys(b"0\r");
    tty.expect("the peer running", |s| {
        s.contains("listening on 127.0.0.167:")
    });
    let retold = poll_until(WAIT, || said(&tty).contains("try another port"));
    assert!(retold, "{}", said(&tty));
    tty.type_keys(b"/quit\r");
    assert!(tty.wait_exit().success());
}

/// The listen queue of the listener on `port` at `ip`: how many connections the kernel holds
/// that peerchat has not accepted (`rx_queue` of a listening socket in `/proc/net/tcp`).
fn accept_queue(ip: [u8; 4], port: u16) -> usize {
    let local = format!(
        "{:08X}:{port:04X}",
        u32::from_ne_bytes(ip) // the address bytes read as a u32 in the host's order
    );
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
        .and_then(|f| f.get(4)?.split_once(':'))
        .and_then(|(_, rx)| usize::from_str_radix(rx, 16).ok())
        .unwrap_or(0)
}

/// The count in `! accepting from IP again; refused N connections from it at the limit`.
fn refused_report(line: &str) -> Option<usize> {
    line.strip_prefix("! accepting from ")?
        .split_once("; refused ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A terminal nobody reads for a while slows peerchat down (a terminal is never dropped
/// from): once a megabyte of output waits, it stops reading and accepting, and one
/// sender's back-to-back connections wait in the listen queue. When the terminal is read
/// again, every message is shown, or its connection was refused and the refusal reported:
/// between turns that stdout is behind, the loop accepts on, and a sender with more
/// connections waiting than its `--max-per-ip` slots is refused rather than holding up
/// everyone behind it in the listen queue. Nothing is lost without a word. The order is
/// counted, not asserted: on a loaded machine the kernel can complete a connection's
/// handshake before the bytes of the one before reach their socket (loopback packets
/// queued on different CPUs), and the order shown is then the order they arrived in.
#[test]
fn a_terminal_read_late_shows_or_reports_every_message() {
    const N: usize = 3_000;
    let (master, slave) = openpty(200);
    let child = Command::new(env!("CARGO_BIN_EXE_peerchat"))
        .args(["-n", "late", "-p", "0", "-b", "127.0.140.2", "--headless"])
        .args(["--color", "never"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::null())
        .spawn()
        .expect("start peerchat on the pty");
    let _child = common::KillOnDrop(child);
    let mut master = File::from(master);
    // The first line, byte by byte, so that nothing more is taken from the terminal.
    let to = common::read_listening_addr(&mut master);
    // About 1.9 MB of output, from one address, one connection after the other. Every
    // connection made and sent (the kernel's listen queue takes them whether or not
    // peerchat accepts), with the terminal unread: peerchat should have stopped reading
    // and accepting, its megabyte of output waiting, the rest in the listen queue.
    let pad = "x".repeat(600);
    let messages: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("127.0.140.4:9 s {i:04} {pad}").into_bytes())
        .collect();
    common::flood("127.0.140.4", to, messages, 1);
    assert!(
        poll_until(LONG_WAIT, || accept_queue([127, 0, 140, 2], to.port()) > 0),
        "with the terminal unread, connections should wait in the listen queue"
    );
    let waiting = accept_queue([127, 0, 140, 2], to.port());
    // Now the terminal is read, until every message is shown or reported refused.
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let (mut text, mut order, mut refused, mut others) = (Vec::new(), Vec::new(), 0, Vec::new());
    let deadline = Instant::now() + LONG_WAIT;
    while order.len() + refused < N {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(bytes) = rx.recv_timeout(left) else {
            panic!(
                "{} of {N} messages shown and {refused} reported refused; other lines: {others:?}",
                order.len()
            );
        };
        text.extend_from_slice(&bytes);
        while let Some(end) = text.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = text.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("[s 127.0.140.4:9] ") {
                let n: usize = rest[..4].parse().expect("a message number");
                order.push(n);
            } else {
                refused += refused_report(line).unwrap_or(0);
                others.push(line.to_string());
            }
        }
    }
    let out_of_order = order.windows(2).filter(|w| w[0] > w[1]).count();
    println!(
        "{waiting} connections waited in the listen queue; {} shown ({out_of_order} after a later one), {refused} refused and reported",
        order.len()
    );
    let shown = order.len();
    order.sort_unstable();
    order.dedup();
    assert_eq!(order.len(), shown, "a message shown twice");
    assert!(
        !others.iter().any(|l| l.contains("dropped")),
        "a terminal is never dropped from: {others:?}"
    );
}

#[test]
fn a_paste_longer_than_a_line_may_be_is_refused_whole_not_sent_cut() {
    // 70,000 bytes pasted into the editor, whose lines hold 65,536: the text beyond the
    // limit was dropped without a word and the cut line sent as if whole (65 parts). Now
    // the line is refused, as from a pipe, and the next one goes.
    let mut bob = Peer::spawn("bob", &common::ip(151, 201), &[]);
    let mut tty = TtyPeer::start("tty", &common::ip(151, 200), Setup::default());
    let long = format!("/send {} {}\r", bob.address(), "x".repeat(70_000));
    tty.type_keys(long.as_bytes());
    let refusal = format!(
        "ignored a typed line of {} bytes (the limit is 65536)",
        long.len() - 1
    );
    tty.expect("the refusal", |s| s.contains(&refusal));
    tty.type_keys(format!("/send {} after\r", bob.address()).as_bytes());
    let after = format!("[tty {}] after", tty.addr);
    bob.expect_line(&after);
    let cut = bob.lines_matching(|l| l.contains("xxxx"));
    assert!(
        cut.is_empty(),
        "{} parts of the cut line arrived",
        cut.len()
    );
}

#[test]
fn a_long_paste_in_the_middle_of_a_line_is_taken_at_once() {
    // 60,000 bytes pasted before text already typed: each character was inserted on its
    // own, looking for its grapheme boundary from the start of the line, so the loop spent
    // minutes on it (no message shown, no peer served meanwhile). Now it is one insertion.
    let mut tty = TtyPeer::start("tty", &common::ip(151, 202), Setup::default());
    tty.type_keys(b"end\x1b[H");
    tty.wait_row("the typed text, cursor at its start", "> end", 2);
    let mut keys = tty.master.try_clone().expect("clone the pty master");
    let paste = thread::spawn(move || {
        let mut bytes = "y".repeat(60_000).into_bytes();
        bytes.push(0x05); // Ctrl-E: to the end, drawn once everything before was taken
        keys.write_all(&bytes)
    });
    tty.wait_screen("the paste before the typed text", |rows, (r, c)| {
        rows.get(usize::from(r))
            .is_some_and(|l| l.starts_with("> yyyy") && l.ends_with("yyyyend"))
            && usize::from(c) == rows[usize::from(r)].chars().count()
    });
    paste.join().expect("writer").expect("write the paste");
}

#[test]
fn enter_after_esc_still_runs_the_line() {
    // Esc pressed, then Enter: the Enter was swallowed as the end of an Alt-key pair and
    // nothing happened until Enter was pressed again.
    let mut tty = TtyPeer::start("tty", &common::ip(151, 203), Setup::default());
    tty.type_keys(b"/peers\x1b");
    tty.wait_row("the typed command", "> /peers", 8);
    tty.type_keys(b"\r");
    tty.expect("the table", |s| s.contains("no peers known yet"));
}

#[test]
fn end_of_input_at_a_start_up_question_says_why_it_exits() {
    // Ctrl-D at "Enter your name: " exited 2 without a word, the shell's prompt then on
    // the question's line.
    let setup = Setup {
        asks: true,
        ..Setup::default()
    };
    let mut tty = TtyPeer::start("", &common::ip(151, 204), setup);
    tty.expect("the name prompt", |s| s.contains("Enter your name: "));
    tty.type_keys(b"\x04");
    assert_eq!(tty.wait_exit().code(), Some(2));
    tty.expect("the question's line ended", |s| s.ends_with("\r\n"));
    let said = |tty: &TtyPeer| String::from_utf8_lossy(&tty.stderr.lock().unwrap()).into_owned();
    let told = poll_until(WAIT, || {
        said(&tty).contains("input ended before a name was given")
    });
    assert!(told, "{}", said(&tty));
}
