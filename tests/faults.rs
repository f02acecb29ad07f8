//! A peer under faults keeps serving: a killed peer is detected and removed, a stopped one
//! stalls nobody and is found again, an unreachable one that answers again is back; 10,000
//! one-message connections all arrive once; garbage, a 10 MB line, 1,000 silent and
//! half-closed connections leave it serving, and its memory returns near idle afterwards;
//! SIGTERM and SIGINT quit gracefully, quitting waits at most 2 s for the goodbyes and a
//! second signal stops the wait; black-holed and non-reading receivers never stall other
//! sends; idle and stalled connections are closed after `--idle-timeout`, not before (what a
//! stalled one left unfinished is shown); and beyond `--max-connections` new connections are
//! closed at once until there is room.
//!
//! Each test owns the address block `127.0.K.*` (K = 80..89, 110..112 in this file) and
//! listens on port 0. Every wait has a deadline and waits for an event: an output line, a
//! process exit, a descriptor count or a connection result. The only sleeps are the
//! harness's polling of conditions that print nothing (see `common::poll_until`) and the
//! pacing of the slow writers in the idle-timeout test.

mod common;

use common::{connect_from, flood, ip, poll_until, Peer, LONG_WAIT, WAIT};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// `* NAME IP:PORT left (REASON)`.
fn left(who: &Peer, reason: &str) -> String {
    format!("* {} {} left ({reason})", who.name, who.address())
}

/// Types `block` (sends to troubled peers) and then a message to the live `bob`, all in one
/// paste, and checks that bob gets it long before any troubled send could finish. Returns
/// when the block was typed.
fn live_send_is_not_held_up(
    alice: &mut Peer,
    bob: &mut Peer,
    mut block: String,
    trouble: &str,
) -> Instant {
    block.push_str(&send_cmd(bob, "live"));
    block.push('\n');
    let typed = Instant::now();
    alice.write_stdin(block.as_bytes());
    bob.expect_line(&chat(alice, "live"));
    let delay = typed.elapsed();
    println!("live peer got its message {delay:?} after typing");
    assert!(
        delay < Duration::from_secs(1),
        "{trouble} stalled the send to a live peer: {delay:?}"
    );
    typed
}

/// Liveness checks every second, unreachable after two failures.
const FAST_PROBES: [&str; 4] = ["--probe-interval", "1", "--probe-failures", "2"];

/// Whether `line` carries a control character other than tab (peerchat must escape them).
fn has_control(line: &str) -> bool {
    line.chars().any(|c| c.is_control() && c != '\t')
}

#[test]
fn killed_peer_is_detected_and_removed() {
    let b = 80;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &FAST_PROBES);
    let mut bob = Peer::spawn("bob", &ip(b, 3), &FAST_PROBES);
    let mut carol = Peer::spawn("carol", &ip(b, 4), &FAST_PROBES);
    // A conversation: everybody knows everybody, by name.
    let addrs = [alice.address(), bob.address(), carol.address()];
    for (from, peer) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
        for (to, addr) in addrs.iter().enumerate().filter(|(to, _)| *to != from) {
            peer.send_line(&format!("/send {addr} hello {from}->{to}"));
        }
    }
    alice.expect_line(&chat(&carol, "hello 2->0"));
    bob.expect_line(&chat(&carol, "hello 2->1"));
    carol.expect_line(&chat(&alice, "hello 0->2"));
    alice.expect_line(&chat(&bob, "hello 1->0"));
    // Our messages to carol delivered before she dies: one still on its way would fail,
    // and its sender's exit status with it.
    for (from, peer) in [&mut alice, &mut bob].into_iter().enumerate() {
        peer.expect_line(&format!("* sent to {}: hello {from}->2", addrs[2]));
    }

    carol.signal(libc::SIGKILL);
    carol
        .wait_exit(WAIT)
        .unwrap_or_else(|r| panic!("carol did not die: {r}"));
    let killed_at = Instant::now();

    // Interval 1 s (±20%), 2 failures: unreachable after ~2 s; removed once unreachable for
    // four intervals, checked with back-off 1, 2, 4 intervals: ~9 s, at most ~12 s.
    let removal = Duration::from_secs(20);
    for peer in [&mut alice, &mut bob] {
        let gone = format!("* carol {} ", carol.address());
        peer.expect(
            "carol `is not answering (2 checks failed in a row)`",
            removal,
            |l| l == format!("{gone}is not answering (2 checks failed in a row)"),
        );
        peer.expect_line_within(&left(&carol, "unreachable"), removal);
    }
    println!("carol removed {:?} after SIGKILL", killed_at.elapsed());

    let (alice_addr, bob_addr) = (alice.address(), bob.address());
    for (me, other) in [(&mut alice, bob_addr), (&mut bob, alice_addr)] {
        let rows = me.query();
        assert!(
            rows.iter().all(|r| r[0] != carol.address()),
            "{}: carol must be gone: {rows:?}",
            me.name
        );
        let row = rows
            .iter()
            .find(|r| r[0] == other)
            .unwrap_or_else(|| panic!("{}: {other} still listed: {rows:?}", me.name));
        assert_eq!(row[2], "active", "{}: the live peer stays active", me.name);
        let wrong = me.lines_matching(|l| {
            l.contains(&other) && (l.contains("is not answering") || l.contains("left"))
        });
        assert!(wrong.is_empty(), "a live peer was flagged: {wrong:?}");
    }
    alice.quit_ok();
    bob.quit_ok();
}

#[test]
fn stopped_peer_does_not_stall_others_and_is_found_again() {
    let b = 81;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &FAST_PROBES);
    let mut bob = Peer::spawn("bob", &ip(b, 3), &FAST_PROBES);
    let mut carol = Peer::spawn("carol", &ip(b, 4), &FAST_PROBES);
    carol.send_line(&send_cmd(&alice, "before"));
    alice.expect_line(&chat(&carol, "before"));
    bob.send_line(&send_cmd(&alice, "before"));
    alice.expect_line(&chat(&bob, "before"));

    carol.signal(libc::SIGSTOP);
    // Twenty messages to the stopped peer (the kernel accepts them, nobody reads), then one
    // to a live peer: it must not wait behind them.
    let mut block = String::new();
    for i in 0..20 {
        block.push_str(&send_cmd(&carol, &format!("queued {i:02}")));
        block.push('\n');
    }
    live_send_is_not_held_up(&mut alice, &mut bob, block, "a stopped peer");
    // Liveness checks of the stopped peer still connect (the kernel answers for it), so it
    // must not be reported; and its messages are written in full. Each waits for the
    // previous one's connection to close, at most the linger (250 ms): 5 s for twenty.
    alice.expect_many("`* sent to carol` lines", 20, LONG_WAIT, |l| {
        l.starts_with(&format!("* sent to {}: queued ", carol.address()))
    });
    let early = alice.lines_matching(|l| l.contains("is not answering") || l.starts_with('!'));
    assert!(early.is_empty(), "nothing failed yet: {early:?}");

    carol.signal(libc::SIGCONT);
    let got = carol.expect_many("the queued messages", 20, WAIT, |l| {
        l.starts_with(&format!("[alice {}] queued ", alice.address()))
    });
    let expected: Vec<String> = (0..20)
        .map(|i| chat(&alice, &format!("queued {i:02}")))
        .collect();
    assert_eq!(got, expected, "every queued message once, in order");
    carol.send_line(&send_cmd(&alice, "back"));
    alice.expect_line(&chat(&carol, "back"));
    let row = alice.query_row(&carol.address()).expect("carol listed");
    assert_eq!(row[2], "active", "carol active again: {row:?}");
    for p in [&mut alice, &mut bob, &mut carol] {
        p.quit_ok();
    }
}

#[test]
fn flood_of_10000_connections_arrives_complete() {
    let b = 82;
    const N: usize = 10_000;
    let mut alice = Peer::spawn_log("alice", &ip(b, 2), &[], "warn");
    let sender = ip(b, 3);
    let messages: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("{sender}:7 flooder n {i:05}").into_bytes())
        .collect();
    // Sent first, waited for after: the harness keeps every line until it is looked at,
    // and a failing sender stops the test at once.
    let started = Instant::now();
    flood(&sender, alice.addr, messages, 8);
    let sent_in = started.elapsed();
    let prefix = format!("[flooder {}:7] n ", ip(b, 3));
    let got = alice.expect_many("flood messages", N, Duration::from_secs(30), |l| {
        l.starts_with(&prefix)
    });
    println!(
        "{N} one-message connections sent in {sent_in:?}, all shown after {:?}",
        started.elapsed()
    );
    let mut seen = vec![0u32; N];
    for line in &got {
        let n: usize = line[prefix.len()..].parse().expect("a message number");
        seen[n] += 1;
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .enumerate()
        .filter(|(_, &c)| c != 1)
        .map(|(i, &c)| (i, c))
        .collect();
    assert!(
        wrong.is_empty(),
        "(message, times shown) not once: {wrong:?}"
    );
    // A round trip through the loop, then nothing more may have arrived.
    let row = alice
        .query_row(&format!("{}:7", ip(b, 3)))
        .expect("the flooder is listed");
    assert_eq!(row[5], N.to_string(), "message count in the table: {row:?}");
    let all = alice.lines_matching(|l| l.starts_with(&prefix));
    assert_eq!(all.len(), N, "no duplicates after the flood");
    let warnings = alice.lines_matching(|l| l.starts_with('!'));
    assert!(warnings.is_empty(), "no warnings: {warnings:?}");
}

/// A deterministic xorshift stream of bytes.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Garbage, a 10 MB line, 1,000 silent connections and half-closed connections, all at
/// `alice` (on `127.0.B.2`) from `127.0.B.3..6`; then a normal message from `127.0.B.7`
/// must be shown within a second. Returns the silent connections, still open.
/// The abuse holds 1,000 silent connections from one address: over the per-address
/// default (its own test is in `hostile.rs`), so the limit is raised here.
const ABUSE_ARGS: &[&str] = &["--max-per-ip", "2000"];

fn abuse(alice: &mut Peer, b: u8) -> Vec<TcpStream> {
    let to = alice.addr;
    let idle_fds = alice.open_fds();

    // Garbage: random binary (NUL, 0xFF, lone continuation bytes, newlines...), and a
    // hand-made invalid UTF-8 sequence.
    let mut junk: Vec<Vec<u8>> = (0..20).map(|i| garbage(0x5eed + i, 4096)).collect();
    junk.push(b"\xff\xfe\x00\x01 \xc3\x28 \xe2\x82 \xed\xa0\x80 \x1b[2J\x07 end".to_vec());
    flood(&ip(b, 3), to, junk, 4);

    // A 10 MB line without a newline: closed at --max-line (64 KiB) with a warning naming
    // the sender; the writer sees its connection reset.
    let big = thread::spawn({
        let from = ip(b, 4);
        move || -> std::io::Result<()> {
            let mut s = connect_from(&from, to).expect("connect for the 10 MB line");
            s.set_write_timeout(Some(LONG_WAIT)).unwrap();
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..10 {
                s.write_all(&chunk)?;
            }
            Ok(())
        }
    });
    alice.expect("a warning naming the 10 MB line's sender", LONG_WAIT, |l| {
        l.starts_with("! ") && l.contains(&ip(b, 4)) && l.contains("longer than")
    });
    let result = big.join().expect("the 10 MB writer panicked");
    // Closed by peerchat (reset: it had unread bytes), not the writer's own timeout.
    let err = result.expect_err("peerchat must close the connection before taking 10 MB");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "the 10 MB line's connection was closed by peerchat: {err:?}"
    );

    // 1,000 silent connections, held open.
    let silent: Vec<TcpStream> = (0..1000)
        .map(|_| connect_from(&ip(b, 5), to).expect("a silent connection"))
        .collect();
    assert!(
        poll_until(LONG_WAIT, || alice.open_fds() >= idle_fds + 1000),
        "peerchat accepted the 1,000 silent connections: {} descriptors open, {idle_fds} idle",
        alice.open_fds()
    );

    // Half-closed: shut down for writing with nothing sent, and after a partial line. The
    // partial line is a whole message (closed by EOF); both connections are then closed.
    let mut empty = connect_from(&ip(b, 6), to).expect("connect");
    empty.shutdown(Shutdown::Write).unwrap();
    let mut partial = connect_from(&ip(b, 6), to).expect("connect");
    partial
        .write_all(format!("{}:9 halfer partial line", ip(b, 6)).as_bytes())
        .unwrap();
    partial.shutdown(Shutdown::Write).unwrap();
    alice.expect_line(&format!("[halfer {}:9] partial line", ip(b, 6)));
    for (what, s) in [("empty", &mut empty), ("partial", &mut partial)] {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            other => panic!("the {what} half-closed connection was not closed: {other:?}"),
        }
    }

    // Now a normal message, with the silent connections still open.
    let sent = Instant::now();
    let mut s = connect_from(&ip(b, 7), to).expect("connect");
    s.write_all(format!("{}:9 normal hello after abuse", ip(b, 7)).as_bytes())
        .unwrap();
    drop(s);
    alice.expect_line(&format!("[normal {}:9] hello after abuse", ip(b, 7)));
    let delay = sent.elapsed();
    println!("normal message shown {delay:?} after the abuse");
    assert!(
        delay < Duration::from_secs(1),
        "a normal message took {delay:?} after the abuse"
    );
    let escaped = alice.lines_matching(has_control);
    assert!(
        escaped.is_empty(),
        "control characters reached stdout: {escaped:?}"
    );
    assert!(alice.running(), "peerchat survived");
    silent
}

#[test]
fn garbage_huge_line_silent_and_half_closed_connections_leave_the_peer_serving() {
    let mut alice = Peer::spawn("alice", &ip(83, 2), ABUSE_ARGS);
    let held = abuse(&mut alice, 83);
    drop(held);
    alice.quit_ok();
}

#[test]
fn memory_returns_near_idle_after_the_abuse() {
    let b = 84;
    let mut alice = Peer::spawn_log("alice", &ip(b, 2), ABUSE_ARGS, "info");
    // Warm up: one message through every layer, so that lazily made things exist.
    let mut s = connect_from(&ip(b, 7), alice.addr).expect("connect");
    s.write_all(format!("{}:9 normal warm up", ip(b, 7)).as_bytes())
        .unwrap();
    drop(s);
    alice.expect_line(&format!("[normal {}:9] warm up", ip(b, 7)));
    let idle_fds = alice.open_fds();
    let idle = alice.status_kib("VmRSS");

    let held = abuse(&mut alice, b);
    let busy = alice.status_kib("VmRSS");
    drop(held);
    assert!(
        poll_until(LONG_WAIT, || alice.open_fds() <= idle_fds + 2),
        "peerchat closed the silent connections: {} descriptors open, {idle_fds} idle",
        alice.open_fds()
    );
    let mut s = connect_from(&ip(b, 7), alice.addr).expect("connect");
    s.write_all(format!("{}:9 normal after", ip(b, 7)).as_bytes())
        .unwrap();
    drop(s);
    alice.expect_line(&format!("[normal {}:9] after", ip(b, 7)));
    let after = alice.status_kib("VmRSS");
    let peak = alice.status_kib("VmHWM");
    println!(
        "VmRSS: idle {idle} kB, under abuse {busy} kB, after {after} kB (peak {peak} kB); \
         descriptors idle {idle_fds}, now {}",
        alice.open_fds()
    );
    // The abuse touches about 1,000 connections and a few MB of input: a leak of even
    // 1 KiB per connection would show here. (Measured: about 0.4 MB above idle, from
    // allocator fragmentation; 0.9 MB before peerchat gave back its burst buffers.)
    assert!(
        after <= idle + 1024,
        "memory not back near idle: {after} kB after, {idle} kB idle (peak {peak} kB)"
    );
    alice.quit_ok();
}

/// A signal quits gracefully: `exit` to the active peers, status 0, `* bye` last.
fn signal_quits_gracefully(b: u8, sig: i32) {
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    let mut carol = Peer::spawn("carol", &ip(b, 4), &[]);
    bob.send_line(&send_cmd(&alice, "hi"));
    alice.expect_line(&chat(&bob, "hi"));
    alice.send_line(&send_cmd(&carol, "hi"));
    alice.expect_line(&format!("* sent to {}: hi", carol.address()));

    alice.signal(sig);
    bob.expect_line(&left(&alice, "exit"));
    carol.expect_line(&left(&alice, "exit"));
    alice.exit_ok(LONG_WAIT);
    for who in [&bob, &carol] {
        let line = format!("* sent to {}: exit", who.address());
        assert!(
            !alice.lines_matching(|l| l == line).is_empty(),
            "alice reported the exit to {}",
            who.name
        );
    }
    bob.quit_ok();
    carol.quit_ok();
}

#[test]
fn sigterm_quits_gracefully() {
    signal_quits_gracefully(85, libc::SIGTERM);
}

#[test]
fn sigint_quits_gracefully() {
    signal_quits_gracefully(86, libc::SIGINT);
}

/// A listener that never accepts, its backlog full: SYNs to it are dropped, so a connect
/// hangs as on a black-holed address. Returns it with the connections that fill it.
fn black_hole(bind_ip: &str) -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = format!("{bind_ip}:0").parse().unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the black hole's backlog: {e}"),
        }
        assert!(fill.len() < 16, "the backlog never filled up");
    }
    (listener, fill, addr)
}

/// A listener that accepts every connection and never reads; stops on `stop` (woken by
/// one more connection). Returns its address and the number of connections it holds.
fn non_reader(
    bind_ip: &str,
    stop: Arc<AtomicBool>,
) -> (
    SocketAddr,
    Arc<Mutex<Vec<TcpStream>>>,
    thread::JoinHandle<()>,
) {
    let listener = TcpListener::bind((bind_ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    let handle = thread::spawn(move || {
        for s in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            keep.lock().unwrap().push(s.unwrap());
        }
    });
    (addr, held, handle)
}

#[test]
fn black_hole_and_non_reading_receiver_never_stall_other_sends() {
    let b = 87;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &["--send-timeout", "1"]);
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    let (_hole, _fill, hole) = black_hole(&ip(b, 9));
    let stop = Arc::new(AtomicBool::new(false));
    let (reader, held, reader_thread) = non_reader(&ip(b, 8), Arc::clone(&stop));

    let mut block = String::new();
    for i in 1..=3 {
        block.push_str(&format!("/send {hole} hole {i}\n"));
    }
    for i in 1..=2 {
        block.push_str(&format!("/send {reader} unread {i}\n"));
    }
    let typed = live_send_is_not_held_up(
        &mut alice,
        &mut bob,
        block,
        "the black hole (3 sends, 1 s each)",
    );

    // Each message to the black hole fails after --send-timeout, in order, in plain words.
    for i in 1..=3 {
        let prefix = format!("! could not send to {hole}: ");
        let line = alice.expect(&format!("the failure of `hole {i}`"), LONG_WAIT, |l| {
            l.starts_with(&prefix) && l.ends_with(&format!("(message: hole {i})"))
        });
        let reason = &line[prefix.len()..line.len() - format!(" (message: hole {i})").len()];
        assert_eq!(
            reason, "no answer (the connection timed out)",
            "a plain reason: {line:?}"
        );
    }
    let failed_after = typed.elapsed();
    println!("three black-hole sends failed after {failed_after:?}");
    assert!(
        failed_after >= Duration::from_millis(2500),
        "each black-hole send waits for its own timeout: {failed_after:?}"
    );

    // The receiver that never reads: a message of at most 1024 bytes fits in the kernel's
    // buffers, so it is written in full: `sent`, not a failure.
    for i in 1..=2 {
        alice.expect_line(&format!("* sent to {reader}: unread {i}"));
    }
    assert_eq!(held.lock().unwrap().len(), 2, "two connections, never read");
    alice.send_line(&send_cmd(&bob, "still fine"));
    bob.expect_line(&chat(&alice, "still fine"));

    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(reader);
    reader_thread.join().unwrap();
    alice.quit_undelivered(3); // the three messages to the black hole
}

/// Waits until the peer closes `stream` (EOF or reset) or `deadline` passes; returns when.
fn closed_at(stream: &mut TcpStream, deadline: Instant) -> Option<Instant> {
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Some(Instant::now()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(Instant::now()),
        }
    }
}

#[test]
fn idle_and_stalled_connections_are_closed_after_the_timeout_not_before() {
    let b = 88;
    let mut peer = Peer::spawn("keeper", &ip(b, 2), &["--idle-timeout", "2"]);
    let to: SocketAddr = peer.address().parse().expect("address");
    let opened = Instant::now();
    let mut silent = connect_from(&ip(b, 3), to).expect("connect");
    let mut partial = connect_from(&ip(b, 4), to).expect("connect");
    // Not a whole message (no header): it waits for its end.
    partial.write_all(b"half a li").expect("write");
    // A slowloris: one byte every 300 ms, never a newline; active, but stalled mid-line.
    let mut trickle = connect_from(&ip(b, 5), to).expect("connect");
    // A persistent sender completing a line every 300 ms: busy, never idle.
    let mut lively = connect_from(&ip(b, 6), to).expect("connect");
    lively.write_all(b"7000\n").expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut trickle, mut lively) = (
            trickle.try_clone().expect("clone"),
            lively.try_clone().expect("clone"),
        );
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let _ = trickle.write_all(b"x");
                let _ = lively.write_all(format!("line {i}\n").as_bytes());
                i += 1;
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let deadline = opened + Duration::from_secs(6);
    for (what, stream) in [
        ("silent", &mut silent),
        ("partial", &mut partial),
        ("trickle", &mut trickle),
    ] {
        let at = closed_at(stream, deadline)
            .unwrap_or_else(|| panic!("the {what} connection was not closed within 6 s"));
        let after = at - opened;
        println!("{what} connection closed after {after:?}");
        assert!(
            after >= Duration::from_secs(2),
            "{what} closed early: {after:?}"
        );
    }
    assert!(
        closed_at(&mut lively, Instant::now() + Duration::from_millis(200)).is_none(),
        "a connection completing lines is not idle"
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    peer.expect_line(&format!("[? {}:7000] line 0", ip(b, 6)));
    let stalled = peer.lines_matching(|l| l.contains("stalled") && l.starts_with("! "));
    assert_eq!(
        stalled.len(),
        2,
        "partial and trickle reported: {stalled:?}"
    );
    // What they left unfinished is shown as it came, not dropped with them.
    peer.expect_line(&format!("[? {}:?] half a li", ip(b, 4)));
}

/// Makes `peer` hear from a peer listening at `addr` (a message claiming that port, sent
/// from its IP), so that `addr` is active in its table.
fn introduce(peer: &mut Peer, addr: SocketAddr, name: &str) {
    let mut s = connect_from(&addr.ip().to_string(), peer.addr).expect("connect");
    s.write_all(format!("{addr} {name} hello").as_bytes())
        .expect("write");
    drop(s);
    peer.expect_line(&format!("[{name} {addr}] hello"));
}

#[test]
fn quitting_waits_for_exits_at_most_2_s_and_a_second_ctrl_c_stops_waiting() {
    let b = 89;
    for second_signal in [false, true] {
        // Two active peers: bob, and one whose address became a black hole (our `exit`
        // cannot connect there).
        let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
        let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
        bob.send_line(&send_cmd(&alice, "hi"));
        alice.expect_line(&chat(&bob, "hi"));
        let (_hole, _fill, hole) = black_hole(&ip(b, 9));
        introduce(&mut alice, hole, "gone");
        let asked = Instant::now();
        alice.signal(libc::SIGTERM);
        // Quitting has begun once bob got his exit.
        alice.expect_line(&format!("* sent to {}: exit", bob.address()));
        if second_signal {
            alice.signal(libc::SIGINT);
        }
        let reason = if second_signal {
            "quit was interrupted"
        } else {
            "still not sent when quitting"
        };
        alice.expect_line(&format!(
            "! could not send to {hole}: {reason} (message: exit)"
        ));
        alice.exit_ok(LONG_WAIT);
        let took = asked.elapsed();
        println!("second signal {second_signal}: quit took {took:?}");
        if second_signal {
            assert!(
                took < Duration::from_millis(1500),
                "stopped waiting: {took:?}"
            );
        } else {
            assert!(
                took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
                "waited about 2 s for the exit: {took:?}"
            );
        }
    }
}

#[test]
fn beyond_max_connections_new_ones_are_closed_at_once_until_there_is_room() {
    let b = 110;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &["--max-connections", "3"]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| connect_from(&ip(b, 3), alice.addr).expect("connect"))
        .collect();
    assert!(
        poll_until(WAIT, || alice.open_fds() >= 3 + 7),
        "three connections held"
    );
    // The fourth is accepted and closed at once: its reader sees EOF.
    let mut extra = connect_from(&ip(b, 4), alice.addr).expect("connect");
    assert!(
        closed_at(&mut extra, Instant::now() + WAIT).is_some(),
        "a connection beyond the limit is closed"
    );
    alice.expect("the refusal warning", WAIT, |l| {
        l.starts_with("! refusing connections") && l.contains(&ip(b, 4))
    });
    drop(held);
    alice.expect_line("! accepting again; refused 1 connections while at the limit");
    let mut s = connect_from(&ip(b, 5), alice.addr).expect("connect");
    s.write_all(format!("{}:9 late fine", ip(b, 5)).as_bytes())
        .expect("write");
    drop(s);
    alice.expect_line(&format!("[late {}:9] fine", ip(b, 5)));
    alice.quit_ok();
}

#[test]
fn an_unreachable_peer_that_answers_again_is_back() {
    let b = 111;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &FAST_PROBES);
    let listener = TcpListener::bind((ip(b, 3).as_str(), 0)).expect("listen");
    let addr = listener.local_addr().expect("address");
    introduce(&mut alice, addr, "flaky");
    drop(listener); // now refused
    alice.expect_line(&format!(
        "* flaky {addr} is not answering (2 checks failed in a row)"
    ));
    let _back = TcpListener::bind(addr).expect("listen again on the same port");
    alice.expect("the peer back", Duration::from_secs(8), |l| {
        l == format!("* flaky {addr} answers again")
    });
    let row = alice.query_row(&addr.to_string()).expect("still known");
    assert_eq!(row[2], "active", "{row:?}");
    alice.quit_ok();
}

#[test]
fn a_burst_of_expanding_lines_gives_its_memory_back_once_output_is_quiet() {
    let b = 112;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut s = connect_from(&ip(b, 7), alice.addr).expect("connect");
    s.write_all(b"5000\nwarm up\n").expect("write");
    alice.expect_line(&format!("[? {}:5000] warm up", ip(b, 7)));
    let idle = alice.status_kib("VmRSS");
    // Under 1 MiB read, but every byte a control character: each 61-byte line shows as
    // more than 330 bytes, about 5 MB of output, on a connection that stays open.
    let line = [&[1u8; 60][..], b"\n"].concat();
    let burst = line.repeat(900 * 1024 / line.len());
    s.write_all(&burst).expect("write the burst");
    s.write_all(b"the end\n").expect("write");
    alice.expect_line_within(&format!("[? {}:5000] the end", ip(b, 7)), LONG_WAIT);
    // The peak, not the present: by now the give-back may have come already.
    let busy = alice.status_kib("VmHWM");
    assert!(
        busy >= idle + 1024,
        "the burst should have raised memory: peak {busy} kB, {idle} kB before"
    );
    // Nothing more comes: a second after the last output, its buffers and the heap pages
    // they held go back. (Measured: 2.0 MB above idle stayed before; 0.7 MB when the
    // buffers shrink but their pages stay with the allocator; 0.4 MB now.)
    let back = poll_until(LONG_WAIT, || alice.status_kib("VmRSS") <= idle + 640);
    let after = alice.status_kib("VmRSS");
    println!("VmRSS: idle {idle} kB, peak {busy} kB, then {after} kB");
    assert!(
        back,
        "memory not given back: {after} kB, {idle} kB before the burst"
    );
    drop(s);
    alice.quit_ok();
}
