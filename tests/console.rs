//! The console in every shape it comes in: stdin as a pipe with commands then end of input
//! (the messages go out, then the goodbyes), a script piped in, a pipe closed without data,
//! a regular file, `/dev/null`, a closed descriptor, a pasted block; `--headless`, which
//! keeps running at end of input until a signal; stdout as a pipe nobody reads (the loop
//! keeps serving the network and the console, and the dropped lines are counted); and the
//! descriptors shared with the parent left blocking, as they were.
//!
//! Each test owns the address block `127.0.K.*` (K = 90..99 in this file) and listens on
//! port 0. Every wait has a deadline and waits for an event (an output line, a process
//! exit, a pipe's fill level); nothing sleeps to synchronise.

mod common;

use common::{
    closed_addr, exit_within, ip, peerchat_bin, poll_until, proc_open_fds, read_listening_addr,
    run_peerchat, KillOnDrop, Peer, LONG_WAIT, WAIT,
};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// `[NAME IP:PORT] TEXT`.
fn chat(from: &Peer, text: &str) -> String {
    format!("[{} {}] {}", from.name, from.address(), text)
}

/// `/send IP:PORT TEXT`.
fn send_cmd(to: &Peer, text: &str) -> String {
    format!("/send {} {}", to.address(), text)
}

/// `* NAME IP:PORT left (exit)`.
fn left(who: &Peer) -> String {
    format!("* {} {} left (exit)", who.name, who.address())
}

/// How long a peer with nothing to say goodbye to may take to quit at end of input.
const PROMPT_QUIT: Duration = Duration::from_secs(2);

/// Whether `O_NONBLOCK` is set on the open file description behind `fd`.
fn nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL on a descriptor this test owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "fcntl: {}", std::io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

/// A scratch file under the system's temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("peerchat-console-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write a scratch file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `sh -c SCRIPT peerchat -n NAME --port 0 -b IP` (the script runs `"$0" "$@"`).
fn via_shell(script: &str, name: &str, bind_ip: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        script,
        peerchat_bin(),
        "-n",
        name,
        "--port",
        "0",
        "-b",
        bind_ip,
    ]);
    cmd
}

/// Waits for a peer that was given nothing to do to quit on its own: promptly, status 0,
/// `* bye` last.
fn quits_promptly(peer: &mut Peer, started: Instant) {
    peer.exit_ok(WAIT);
    let took = started.elapsed();
    println!("{}: quit {took:?} after start", peer.label);
    assert!(took < PROMPT_QUIT, "{}: quitting took {took:?}", peer.label);
}

#[test]
fn pipe_with_commands_then_eof_sends_and_quits_with_exit() {
    let b = 90;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    bob.send_line(&send_cmd(&alice, "hi"));
    alice.expect_line(&chat(&bob, "hi")); // bob is active for alice
                                          // The commands and the end of input arrive together.
    alice.write_stdin(format!("{}\n", send_cmd(&bob, "last words")).as_bytes());
    alice.close_stdin();
    // The message first, then the goodbye.
    bob.expect_lines_in_order(&[chat(&alice, "last words"), left(&alice)]);
    alice.exit_ok(LONG_WAIT);
    bob.quit_ok();
}

#[test]
fn script_that_sends_then_ends_tells_the_receiver_exit() {
    // `printf '/send IP:PORT build finished\n' | peerchat ...` (the README's example): the
    // message goes out, and the peer it reached hears `exit` when the script ends.
    let b = 98;
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    writeln!(writer, "{}", send_cmd(&bob, "build finished")).unwrap();
    drop(writer);
    let mut ci = Peer::spawn_stdin("ci", &ip(b, 2), &[], reader.into());
    bob.expect_line(&chat(&ci, "build finished"));
    ci.exit_ok(LONG_WAIT);
    if let Err(report) = bob.wait_for(|l| l == left(&ci), WAIT) {
        let ci_report = ci.report("the script's peer, which quit");
        panic!("{report}\n{ci_report}");
    }
    bob.quit_ok();
}

#[test]
fn pipe_closed_without_data_quits_promptly() {
    let b = 91;
    // A pipe whose writer left before peerchat started...
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(writer);
    let started = Instant::now();
    let mut alice = Peer::spawn_stdin("alice", &ip(b, 2), &[], reader.into());
    quits_promptly(&mut alice, started);
    // ...and literally `true | peerchat ...`.
    let started = Instant::now();
    let cmd = via_shell(r#"true | "$0" "$@""#, "bob", &ip(b, 3));
    let mut bob = Peer::start("true | peerchat", "bob", cmd, Stdio::null());
    quits_promptly(&mut bob, started);
}

#[test]
fn regular_file_runs_every_line_then_quits() {
    let b = 92;
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    let commands = TempFile::new(
        "commands.txt",
        &format!(
            "{}\n{}\n/help\n/peers\n{}",
            send_cmd(&bob, "one"),
            send_cmd(&bob, "two"),
            send_cmd(&bob, "three (no newline at the end of the file)"),
        ),
    );
    let file = File::open(&commands.0).expect("open commands.txt");
    let mut alice = Peer::spawn_stdin("alice", &ip(b, 2), &[], file.into());
    for text in ["one", "two", "three (no newline at the end of the file)"] {
        bob.expect_line(&chat(&alice, text));
    }
    alice.exit_ok(LONG_WAIT);
    let lines = alice.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("commands:")),
        "/help ran: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("ADDRESS")),
        "/peers ran: {lines:?}"
    );
    bob.quit_ok();
}

#[test]
fn dev_null_quits_at_once() {
    let null = File::open("/dev/null").expect("/dev/null");
    let started = Instant::now();
    let mut alice = Peer::spawn_stdin("alice", &ip(93, 2), &[], null.into());
    quits_promptly(&mut alice, started);
}

#[test]
fn closed_stdin_quits_at_once() {
    let started = Instant::now();
    let cmd = via_shell(r#"exec "$0" "$@" <&-"#, "alice", &ip(94, 2));
    let mut alice = Peer::start("peerchat <&-", "alice", cmd, Stdio::null());
    quits_promptly(&mut alice, started);
}

#[test]
fn pasted_block_runs_every_line() {
    let b = 95;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    let mut carol = Peer::spawn("carol", &ip(b, 4), &[]);
    let block = format!(
        "{}\n{}\n{}\n/msg {} three\n/peers\n",
        send_cmd(&bob, "one"),
        send_cmd(&carol, "to carol"),
        send_cmd(&bob, "two"),
        bob.address(),
    );
    alice.write_stdin(block.as_bytes()); // one write: a paste
    bob.expect_line(&chat(&alice, "one"));
    bob.expect_line(&chat(&alice, "two"));
    bob.expect_line(&chat(&alice, "three"));
    carol.expect_line(&chat(&alice, "to carol"));
    alice.expect("the table /peers printed", WAIT, |l| {
        l.starts_with("ADDRESS")
    });
    // Only these: nothing doubled, nothing from a half line.
    let got = bob.lines_matching(|l| l.starts_with('['));
    assert_eq!(got.len(), 3, "bob got exactly three messages: {got:?}");
    alice.quit_ok();
}

#[test]
fn headless_keeps_running_at_end_of_input_until_sigterm() {
    let b = 96;
    let null = File::open("/dev/null").expect("/dev/null");
    let mut daemon = Peer::spawn_stdin("daemon", &ip(b, 2), &["--headless"], null.into());
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    bob.send_line(&send_cmd(&daemon, "still there?"));
    daemon.expect_line(&chat(&bob, "still there?"));
    assert!(daemon.running(), "--headless ignores the end of input");
    bob.send_line(&send_cmd(&daemon, "and now?"));
    daemon.expect_line(&chat(&bob, "and now?"));
    daemon.signal(libc::SIGTERM);
    bob.expect_line(&left(&daemon));
    daemon.exit_ok(LONG_WAIT);
    bob.quit_ok();
}

/// Bytes waiting in a pipe (`FIONREAD`).
fn pipe_fill(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// Whether a pipe's write end `fd` is full: a writer would block. (Its byte count is not
/// a good test: a write that does not fit the last page starts a new one, so a full pipe
/// can hold well under 64 KiB.)
fn pipe_full(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 0
}

/// The count in a `! N lines of output were dropped...` warning.
fn dropped_report(line: &str) -> Option<usize> {
    line.strip_prefix("! ")
        .and_then(|l| l.split_once(" lines of output were dropped"))
        .map(|(n, _)| n.parse().expect("a count"))
}

#[test]
fn full_stdout_pipe_never_blocks_the_loop_and_drops_are_reported() {
    let b = 97;
    const FLOOD: usize = 3000;
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    // stdout: a pipe the test does not read for a while. stdin: a pipe. The test keeps a
    // second descriptor of each end peerchat holds (same open file description), to see
    // whether peerchat changes their flags.
    let (mut out_r, out_w) = std::io::pipe().expect("pipe");
    let out_w_probe = out_w.try_clone().expect("dup");
    let (in_r, mut in_w) = std::io::pipe().expect("pipe");
    let in_r_probe = in_r.try_clone().expect("dup");
    assert!(!nonblocking(out_w_probe.as_raw_fd()) && !nonblocking(in_r_probe.as_raw_fd()));
    let mut cmd = Command::new(peerchat_bin());
    cmd.args(["-n", "stuck", "--port", "0", "-b", &ip(b, 2)])
        .env("RUST_LOG", "warn")
        .stdin(in_r)
        .stdout(out_w)
        .stderr(Stdio::null());
    // Not a harness `Peer` (which reads stdout from the start): its stdout is the test's own
    // pipe, and the process is killed if the test fails.
    let mut child = KillOnDrop(cmd.spawn().expect("start peerchat"));
    drop(cmd);
    // Its first line, read byte by byte so that nothing more is taken from the pipe.
    let stuck = read_listening_addr(&mut out_r).to_string();

    // About 1.9 MB of output: more than the pipe (64 KiB) and peerchat's buffer (1 MiB).
    let pad = "x".repeat(600);
    let messages: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| format!("f {i:04} {pad}").into_bytes())
        .collect();
    let fds = || proc_open_fds(child.0.id());
    let idle_fds = fds();
    common::flood(&ip(b, 4), stuck.parse().unwrap(), messages, 4);
    // Every flood connection read to its end and closed: every message was taken in.
    assert!(
        poll_until(LONG_WAIT, || fds() <= idle_fds),
        "peerchat closed the flood's connections: {} descriptors open, {idle_fds} before",
        fds()
    );
    assert!(
        poll_until(LONG_WAIT, || pipe_full(out_w_probe.as_raw_fd())),
        "stdout pipe filled up: {} bytes in it",
        pipe_fill(out_r.as_raw_fd())
    );

    // Second channel: with stdout full, the loop still answers the network and the console.
    bob.send_line(&format!("/send {stuck} connect"));
    bob.expect_line(&format!("* connect_ack from stuck {stuck}"));
    writeln!(in_w, "/send {} ping", bob.address()).unwrap();
    bob.expect_line(&format!("[stuck {stuck}] ping"));
    assert!(
        pipe_full(out_w_probe.as_raw_fd()),
        "nobody read stdout meanwhile"
    );
    assert!(matches!(child.0.try_wait(), Ok(None)), "still running");
    assert!(
        !nonblocking(out_w_probe.as_raw_fd()) && !nonblocking(in_r_probe.as_raw_fd()),
        "peerchat set O_NONBLOCK on a descriptor it shares with its parent"
    );

    // Now read: the lines kept, then the report of the dropped ones.
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(out_r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + LONG_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let report = dropped_report(&line).is_some();
                lines.push(line);
                if report {
                    break;
                }
            }
            Err(_) => {
                let shown = lines.iter().filter(|l| l.starts_with("[? ")).count();
                panic!(
                    "no `lines of output were dropped` warning after {} lines ({shown} messages); last: {:?}",
                    lines.len(),
                    lines.last()
                );
            }
        }
    }
    drop(in_w); // end of input: quit
    let status = exit_within(&mut child.0, LONG_WAIT)
        .expect("wait")
        .expect("peerchat did not quit");
    assert!(
        !nonblocking(out_w_probe.as_raw_fd()) && !nonblocking(in_r_probe.as_raw_fd()),
        "after exit, the descriptors shared with the parent are blocking as before"
    );
    drop(out_w_probe); // the last writer: the reader sees EOF
    while let Ok(line) = rx.recv_timeout(WAIT) {
        lines.push(line);
    }
    reader.join().unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(lines.last().map(String::as_str), Some("* bye"), "last line");
    bob.expect_line(&format!("* stuck {stuck} left (exit)"));

    // The drops may be reported in several warnings, as stdout drains in steps.
    let dropped: usize = lines.iter().filter_map(|l| dropped_report(l)).sum();
    let mut seen = vec![0u32; FLOOD];
    for line in lines.iter().filter(|l| l.starts_with("[? ")) {
        let n: usize = line
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a flood line: {line:?}"));
        seen[n] += 1;
    }
    let shown = seen.iter().filter(|&&c| c == 1).count();
    let twice: Vec<usize> = (0..FLOOD).filter(|&i| seen[i] > 1).collect();
    println!("{shown} flood lines shown, {dropped} lines reported dropped");
    assert!(twice.is_empty(), "lines shown twice: {twice:?}");
    assert!(dropped > 0, "the report counts what was dropped");
    assert!(
        shown + dropped >= FLOOD,
        "every message either shown or counted as dropped: {shown} + {dropped} < {FLOOD}"
    );
}

/// `peerchat send`: one message, without listening; exit 0 once delivered (with what the
/// receiver said back), 1 with the reason when it could not be.
#[test]
fn send_subcommand_exits_0_when_delivered_and_1_when_not() {
    let b = 93;
    let mut receiver = Peer::python(
        "thread_receiver.py",
        "pyrecv",
        &ip(b, 5),
        &["--reply", "Message received"],
    );
    let to = receiver.address();
    let done = run_peerchat(&[
        "send",
        "-n",
        "scripter",
        "-p",
        "5999",
        "-b",
        &ip(b, 6),
        &to,
        "hello",
        "there",
    ]);
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        done.stdout.trim_end(),
        format!("* sent to {to}: hello there (it answered: Message received)")
    );
    let got = receiver.expect("the message", WAIT, |l| l.starts_with("message "));
    let f = common::fields(&got);
    assert_eq!(
        String::from_utf8(common::unhex(&f["raw_hex"])).expect("utf-8"),
        format!("{}:5999 scripter hello there", ip(b, 6))
    );

    let (closed, _port) = closed_addr(&ip(b, 7));
    let failed = run_peerchat(&["send", "-n", "scripter", "-p", "5999", &closed, "anyone?"]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(
        failed
            .stderr
            .contains(&format!("! could not send to {closed}: connection refused")),
        "{failed:?}"
    );
    let usage = run_peerchat(&["send", "127.0.0.1:5", "no name"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

#[test]
fn a_script_whose_messages_are_refused_before_they_go_exits_1() {
    // A CI script's `/msg` to a name nobody has, `/reply` with nobody to answer, `/all`
    // with no active peer and a `/send` to an address that is none: none of the four
    // messages goes, each is told on its line, and the exit status says so (it was 0).
    let b = 150;
    let mut ci = Peer::spawn("ci", &ip(b, 200), &[]);
    for line in [
        "/msg builder done",
        "/reply done",
        "/all done",
        "/send 127.0.150.201:0 done",
    ] {
        ci.send_line(line);
    }
    ci.expect("the last refusal", WAIT, |l| {
        l.contains("port 0 cannot be sent to")
    });
    ci.quit_undelivered(4);
}

#[test]
fn an_overlong_last_line_without_a_line_break_is_reported() {
    // A script whose last line, 70,000 bytes with no newline, is over the limit: it was
    // dropped without a word. Now it is reported as any overlong line is.
    let b = 150;
    let (reader, mut writer) = std::io::pipe().expect("pipe");
    let mut ci = Peer::spawn_stdin("ci", &ip(b, 202), &[], reader.into());
    let long = format!("/send {}:9 {}", ip(b, 203), "x".repeat(70_000));
    let writing = thread::spawn(move || writer.write_all(long.as_bytes()));
    let said = format!(
        "! ignored a typed line of {} bytes (the limit is 65536)",
        70_000 + 6 + ip(b, 203).len() + 3
    );
    ci.expect_line(&said);
    writing.join().expect("writer").expect("write");
    ci.exit_ok(LONG_WAIT);
}

#[test]
fn help_and_version_into_a_closed_pipe_do_not_panic() {
    // `peerchat --help | head -1`: the reader is gone before the usage is written. println!
    // panicked ("failed printing to stdout: Broken pipe") with a backtrace on stderr.
    for arg in ["--help", "--version"] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(peerchat_bin())
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run peerchat");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "{arg}: {} {stderr}",
            out.status
        );
    }
}

#[test]
fn a_state_journal_that_is_a_fifo_is_refused_not_waited_on() {
    // `DIR/journal.jsonl` a FIFO: opening it blocked for ever, before the loop (SIGTERM
    // could not stop it). Now the directory is refused at once, exit status 1.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("console-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    let fifo = dir.join("journal.jsonl");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let dir_s = dir.to_string_lossy().into_owned();
    let mut cmd = Command::new(peerchat_bin());
    cmd.args([
        "-n",
        "fifo",
        "-p",
        "0",
        "-b",
        &ip(150, 204),
        "--state",
        &dir_s,
    ]);
    let done = common::run(cmd, WAIT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains("journal.jsonl is not a regular file"),
        "{}",
        done.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn send_subcommand_escapes_the_receivers_reply() {
    // `peerchat send` printed what the receiver said back on its connection as it came:
    // a receiver could clear the user's screen or retitle the window (escape codes). Now
    // the line is rendered as the loop renders it, network text escaped.
    use std::io::Read;
    let listener = std::net::TcpListener::bind(format!("{}:0", ip(150, 205))).expect("bind");
    let to = listener.local_addr().expect("addr").to_string();
    let receiver = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = [0u8; 1024];
        let _ = conn.read(&mut got);
        conn.write_all(b"\x1b[2Jpwned\x1b]0;title\x07\n")
            .expect("reply");
    });
    let done = run_peerchat(&["send", "-n", "ci", "-p", "1", &to, "hello"]);
    receiver.join().expect("receiver");
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        done.stdout,
        format!(
            "* sent to {to}: hello (it answered: \\u{{1b}}[2Jpwned\\u{{1b}}]0;title\\u{{7}})\n"
        )
    );
}
