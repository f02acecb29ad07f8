//! Hostile load: what an attacker on the same network can do, tried on loopback, one test
//! per attack. Each asserts the bound that holds the attack (memory, connections, table
//! entries, replies) and that a legitimate sender, sending meanwhile, was served: every one
//! of its messages shown, in order, none lost.
//!
//! - streams of lines on many connections: peak memory stays under 64 MiB;
//! - one endless stream of lines: the other sender's turn still comes;
//! - connections held open with blank lines: closed as idle, and one address cannot take
//!   more than its share of connection slots;
//! - names of 60 KB and thousands of claimed ports: names cut to 64 bytes, 16 peers per
//!   address, the table still takes a real newcomer;
//! - a `connect` flood: a bounded number of replies, and the user's own message leaves
//!   first;
//! - peers that come and go by the thousand: memory does not pile up;
//! - a persistent sender into a regular file: every line is there;
//! - a script piping 10,000 `/send` lines: all delivered, in order; stdin that is not text
//!   costs no busy loop;
//! - a second peer on the same `--state` directory: refused, naming the holder;
//! - names and text that try to make the display lie: quoted and escaped;
//! - a port-line peer streaming short lines: one acknowledgement and one count per line;
//! - bursts of blank lines beyond a turn's share from two senders at once: the lines left
//!   for the next turn are shown although the senders then fall silent;
//! - crafted segments that make an urgent mark the poll does not report, on a connection
//!   that has ended: the message is shown whole (inside a namespace the test makes).
//!
//! Address blocks `127.0.150.*` to `127.0.170.*`, one per test.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    connect_from, exit_within, ip, peerchat_bin, poll_until, proc_status_kib, Peer, LONG_WAIT, WAIT,
};

/// The legitimate sender's messages per test.
const LEGIT: usize = 20;

/// Sends `LEGIT` one-message connections from `from` to `peer`, one after the other, each
/// once the previous is shown (`shown` waits for a line); returns the slowest delivery.
fn legit_sender(from: &str, to: SocketAddr, mut shown: impl FnMut(&str) -> bool) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..LEGIT {
        let text = format!("legit message {i:02}");
        let started = Instant::now();
        let mut s = connect_from(from, to).expect("the legitimate sender connects");
        s.write_all(format!("{from}:4242 legit {text}").as_bytes())
            .expect("the legitimate sender writes");
        drop(s);
        assert!(
            shown(&format!("[legit {from}:4242] {text}")),
            "legitimate message {i} was not shown"
        );
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

/// Waits until `peer` shows `line`; false after `LONG_WAIT`.
fn shows(peer: &mut Peer, line: &str) -> bool {
    let wanted = line.to_owned();
    peer.wait_for(move |l| l == wanted, LONG_WAIT).is_ok()
}

/// A peerchat whose stdout is a regular file (what a log or a script gets), read back by
/// the test; stdin is a pipe the test holds.
struct FilePeer {
    child: std::process::Child,
    path: std::path::PathBuf,
    addr: SocketAddr,
    /// The file, read as it grows.
    reader: File,
    /// The end of the last line read.
    unfinished: Vec<u8>,
}

impl FilePeer {
    fn spawn(tag: &str, bind_ip: &str, args: &[&str]) -> FilePeer {
        // One file per peer: the tests of this binary run at once, and a shared file
        // would be truncated under another test's peer.
        let path = std::env::temp_dir().join(format!(
            "peerchat-{tag}-{bind_ip}-{}.out",
            std::process::id()
        ));
        let out = File::create(&path).expect("stdout file");
        let reader = File::open(&path).expect("open the stdout file");
        let child = Command::new(peerchat_bin())
            .args(["-n", tag, "--port", "0", "-b", bind_ip])
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("start peerchat");
        let mut peer = FilePeer {
            child,
            path,
            addr: "0.0.0.0:0".parse().expect("addr"),
            reader,
            unfinished: Vec::new(),
        };
        let first = peer
            .find(|l| l.starts_with("listening on "))
            .expect("listening line");
        peer.addr = first
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .expect("listening address");
        peer
    }

    /// Sends `wire` on one connection from `from` and closes it; once the line that
    /// satisfies `last` is written, everything the peer wrote.
    fn stream_from(&mut self, from: &str, wire: &[u8], last: impl Fn(&str) -> bool) -> String {
        let mut s = connect_from(from, self.addr).expect("connect");
        s.write_all(wire).expect("write");
        drop(s);
        assert!(self.find(last).is_some(), "the last line arrived");
        self.text()
    }

    fn text(&self) -> String {
        let mut s = String::new();
        File::open(&self.path)
            .and_then(|mut f| f.read_to_string(&mut s))
            .expect("read the stdout file");
        s
    }

    /// The next line written that satisfies `pred` (the lines before it are passed
    /// over), waiting up to `LONG_WAIT` for it.
    fn find(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + LONG_WAIT;
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = self.reader.read(&mut chunk).expect("read the stdout file");
            if n == 0 {
                if Instant::now() >= deadline {
                    return None;
                }
                thread::sleep(Duration::from_millis(5)); // a file gives no event to wait for
                continue;
            }
            self.unfinished.extend_from_slice(&chunk[..n]);
            let Some(end) = self.unfinished.iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let complete: Vec<u8> = self.unfinished.drain(..=end).collect();
            let text = String::from_utf8_lossy(&complete);
            let mut lines = text.lines();
            if let Some(line) = lines.by_ref().find(|l| pred(l)) {
                let rest: String = lines.map(|l| format!("{l}\n")).collect();
                let mut kept = rest.into_bytes();
                kept.extend_from_slice(&self.unfinished);
                self.unfinished = kept;
                return Some(line.to_owned());
            }
        }
    }

    fn peak_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM")
    }
}

impl Drop for FilePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn streams_of_lines_on_many_connections_keep_memory_bounded() {
    let b = 150;
    let mut peer = FilePeer::spawn("target", &ip(b, 2), &[]);
    let to = peer.addr;
    // 64 connections, each 128 KiB of `a\n`: 64 Ki shown lines each, all at once.
    let attackers: Vec<_> = (0..64)
        .map(|i| {
            let from = ip(b, 10 + (i % 8) as u8);
            thread::spawn(move || {
                let mut s = connect_from(&from, to).expect("attacker connects");
                let _ = s.write_all(&b"a\n".repeat(64 * 1024));
            })
        })
        .collect();
    let slowest = legit_sender(&ip(b, 3), to, |line| {
        let line = line.to_owned();
        peer.find(move |l| l == line).is_some()
    });
    for a in attackers {
        a.join().expect("attacker thread");
    }
    let peak = peer.peak_kib();
    println!("64 x 128 KiB streams: peak RSS {peak} KiB, slowest legitimate delivery {slowest:?}");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn one_endless_stream_does_not_starve_another_sender() {
    let b = 151;
    let mut peer = FilePeer::spawn("target", &ip(b, 2), &[]);
    let to = peer.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let from = ip(b, 10);
    let streamer = thread::spawn(move || {
        let mut s = connect_from(&from, to).expect("streamer connects");
        let line = format!("{from}:9 streamer {}\n", "s".repeat(80)).repeat(100);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if s.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
    });
    // The stream is under way before the legitimate sender starts.
    assert!(peer.find(|l| l.contains("] ssss")).is_some());
    let slowest = legit_sender(&ip(b, 3), to, |line| {
        let line = line.to_owned();
        peer.find(move |l| l == line).is_some()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    streamer.join().expect("streamer thread");
    println!("one endless stream: slowest legitimate delivery {slowest:?}");
}

#[test]
fn connections_held_with_blank_lines_are_idle_and_bounded_per_address() {
    let b = 152;
    let mut peer = Peer::spawn(
        "target",
        &ip(b, 2),
        &["--idle-timeout", "2", "--max-per-ip", "50"],
    );
    let to = peer.addr;
    let attacker = ip(b, 10);
    let mut held: Vec<TcpStream> = (0..50)
        .map(|_| connect_from(&attacker, to).expect("held connection"))
        .collect();
    assert!(
        poll_until(WAIT, || peer.open_fds() >= 50),
        "the first 50 are taken"
    );
    // The 51st from the same address is closed at once: it reads EOF.
    let mut extra = connect_from(&attacker, to).expect("connect");
    extra.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 16];
    assert_eq!(
        extra.read(&mut buf).map_err(|e| e.kind()),
        Ok(0),
        "closed at once"
    );
    peer.expect("the per-address refusal", WAIT, |l| {
        l.starts_with("! refusing connections from") && l.contains("--max-per-ip")
    });
    // Another address is served meanwhile.
    legit_sender(&ip(b, 3), to, |line| shows(&mut peer, line));
    // Blank lines are not activity: the held connections are closed as idle.
    let started = Instant::now();
    let closed = poll_until(Duration::from_secs(8), || {
        held.iter_mut().all(|s| {
            let _ = s.write_all(b"\n");
            let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
            matches!(s.read(&mut buf), Ok(0) | Err(_)) && s.write_all(b"\n").is_err()
        })
    });
    assert!(closed, "held connections were not closed as idle");
    println!(
        "50 connections kept open with blank lines closed after {:?}",
        started.elapsed()
    );
    peer.quit_ok();
}

#[test]
fn long_names_and_many_claimed_ports_stay_within_the_table_bounds() {
    let b = 153;
    let mut peer = Peer::spawn_log("target", &ip(b, 2), &[], "error");
    let to = peer.addr;
    let from = ip(b, 10);
    let name = "n".repeat(60_000);
    let mut wire = Vec::new();
    for port in 1..=2000u16 {
        wire.extend_from_slice(format!("{from}:{port} {name}{port}\n").as_bytes());
    }
    let mut s = connect_from(&from, to).expect("connect");
    s.write_all(&wire).expect("write the claimed ports");
    drop(s);
    peer.expect("the table's refusal", LONG_WAIT, |l| {
        l.contains("the peer table is full")
    });
    let rows = peer.query();
    let theirs: Vec<_> = rows
        .iter()
        .filter(|r| r[0].starts_with(&format!("{from}:")))
        .collect();
    assert_eq!(theirs.len(), 16, "16 peers per address: {rows:?}");
    assert!(
        theirs.iter().all(|r| r[1].len() <= 64),
        "names cut to 64 bytes"
    );
    // A real newcomer gets in, is listed and is reached by /all.
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    bob.send_line(&format!("/send {} hello", peer.address()));
    peer.expect_line(&format!("[bob {}] hello", bob.address()));
    assert!(
        peer.query_row(&bob.address()).is_some(),
        "the newcomer is listed"
    );
    peer.send_line("/all to everyone");
    bob.expect_line(&format!("[target {}] to everyone", peer.address()));
    let peak = peer.status_kib("VmHWM");
    println!("2,000 claimed ports with 60 KB names: peak RSS {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    bob.quit_ok();
}

#[test]
fn a_connect_flood_draws_bounded_replies_and_the_users_message_leaves_first() {
    let b = 154;
    let mut peer = Peer::spawn_log("target", &ip(b, 2), &[], "error");
    let mut bob = Peer::spawn("bob", &ip(b, 3), &[]);
    let to = peer.addr;
    let from = ip(b, 10);
    // One connection: 65,534 `CONNECT:port` lines (colon dialect), each a different port.
    let mut wire = Vec::new();
    for port in 1..=65_534u32 {
        wire.extend_from_slice(format!("CONNECT:{port}\n").as_bytes());
    }
    let mut s = connect_from(&from, to).expect("connect");
    s.write_all(&wire).expect("write the flood");
    drop(s);
    peer.send_line(&format!("/send {} typed during the flood", bob.address()));
    bob.expect_line(&format!(
        "[target {}] typed during the flood",
        peer.address()
    ));
    let settled = poll_until(Duration::from_secs(30), || {
        peer.lines_matching(|l| l.starts_with("* connect from"))
            .len()
            >= 65_534
    });
    assert!(settled, "every connect was read");
    let answered = peer
        .lines_matching(|l| l.ends_with("(answering with connect_ack)"))
        .len();
    println!("65,534 connects from one address: {answered} answered");
    assert!(
        answered <= 16,
        "{answered} replies: at most one per peer kept (16 per address)"
    );
    bob.quit_ok();
}

#[test]
fn peers_coming_and_going_by_the_thousand_leave_nothing_behind() {
    let b = 155;
    let mut peer = Peer::spawn_log(
        "target",
        &ip(b, 2),
        &["--max-peers-per-ip", "65536"],
        "error",
    );
    let to = peer.addr;
    let idle = peer.status_kib("VmRSS");
    let from = ip(b, 10);
    let mut wire = Vec::new();
    for round in 0..10u16 {
        for port in 1..=5000u16 {
            let p = port + round;
            wire.extend_from_slice(format!("{from}:{p} x hi\n{from}:{p} x exit\n").as_bytes());
        }
    }
    let mut s = connect_from(&from, to).expect("connect");
    s.write_all(&wire).expect("write the cycles");
    drop(s);
    peer.expect_many("the last cycle", 1, LONG_WAIT, |l| {
        l == format!("* x {from}:5009 left (exit)")
    });
    legit_sender(&ip(b, 3), to, |line| shows(&mut peer, line));
    assert!(peer
        .query()
        .iter()
        .all(|r| !r[0].starts_with(&format!("{from}:"))));
    let now = peer.status_kib("VmRSS");
    println!("50,000 join/leave cycles: RSS {idle} KiB idle, {now} KiB after");
    assert!(
        now < idle + 8 * 1024,
        "RSS {now} KiB after, {idle} KiB idle"
    );
}

#[test]
fn a_persistent_sender_into_a_regular_file_loses_no_line() {
    let b = 156;
    let mut peer = FilePeer::spawn("target", &ip(b, 2), &[]);
    let from = ip(b, 10);
    const LINES: usize = 50_000;
    let mut wire = String::new();
    for i in 0..LINES {
        wire.push_str(&format!("{from}:9 s line {i:05} {}\n", "p".repeat(80)));
    }
    let last = format!("line {:05}", LINES - 1);
    let text = peer.stream_from(&from, wire.as_bytes(), |l| l.contains(&last));
    let shown = text.lines().filter(|l| l.contains("] line ")).count();
    assert_eq!(shown, LINES, "every line in the file");
    assert!(
        !text.contains("dropped"),
        "nothing dropped to a regular file"
    );
}

#[test]
fn a_lone_stream_of_tiny_lines_is_not_taken_for_unfinished_ones() {
    // A lone connection's turn reads more than it decodes when the lines are tiny; what
    // waits in its backlog must stay within its address's share of a low
    // `--max-unfinished` (a quarter of 256 KiB here), or the sender is cut off.
    let b = 164;
    let mut peer = FilePeer::spawn("tiny", &ip(b, 2), &["--max-unfinished", "262144"]);
    let from = ip(b, 10);
    const LINES: usize = 300_000;
    let mut wire = format!("{from}:9 s first\n").into_bytes();
    for _ in 0..LINES {
        wire.extend_from_slice(b"a\n");
    }
    wire.extend_from_slice(b"last\n");
    let text = peer.stream_from(&from, &wire, |l| l.ends_with("] last"));
    let shown = text.lines().filter(|l| l.ends_with("] a")).count();
    assert_eq!(shown, LINES, "every line in the file");
    assert!(
        !text.contains("--max-unfinished"),
        "not closed as unfinished"
    );
}

#[test]
fn a_script_of_ten_thousand_sends_delivers_them_all_in_order() {
    let b = 157;
    let mut bob = Peer::spawn_log("bob", &ip(b, 3), &[], "error");
    let mut script = String::new();
    const N: usize = 10_000;
    for i in 0..N {
        script.push_str(&format!("/send {} s{i:05}\n", bob.address()));
    }
    let mut alice = Command::new(peerchat_bin())
        .args(["-n", "alice", "--port", "0", "-b", &ip(b, 2)])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alice");
    let mut stdin = alice.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).expect("the script");
    drop(stdin); // end of input: alice quits once everything is sent
    let got = bob.expect_many("the script's messages", N, Duration::from_secs(60), |l| {
        l.contains("] s")
    });
    let texts: Vec<String> = got
        .iter()
        .filter_map(|l| l.rsplit("] ").next().map(str::to_owned))
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("s{i:05}")).collect();
    assert_eq!(texts, want, "all of them, in order");
    let status = exit_within(&mut alice, LONG_WAIT)
        .expect("wait")
        .expect("alice quits");
    assert!(status.success());
    bob.quit_ok();
}

#[test]
fn stdin_that_is_not_text_is_left_alone_without_a_busy_loop() {
    let b = 158;
    let zero = File::open("/dev/zero").expect("/dev/zero");
    let mut peer = Peer::spawn_stdin("target", &ip(b, 2), &[], Stdio::from(zero));
    peer.expect("the warning", LONG_WAIT, |l| {
        l.contains("is not read any more")
    });
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", peer.pid())).expect("stat");
        let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(11) + field(12) // utime + stime, in clock ticks
    };
    let before = ticks();
    thread::sleep(Duration::from_secs(1)); // measuring idleness: nothing to wait for
    let spent = ticks() - before;
    assert!(spent <= 5, "{spent} ticks of CPU in a second of idleness");
    // Still a peer: it answers the network.
    legit_sender(&ip(b, 3), peer.addr, |line| shows(&mut peer, line));
}

#[test]
fn a_second_peer_on_the_same_state_directory_is_refused() {
    let b = 159;
    let dir = std::env::temp_dir().join(format!("peerchat-hostile-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.to_string_lossy().to_string();
    let mut first = Peer::spawn("first", &ip(b, 2), &["--state", &state]);
    let second = common::run_peerchat(&[
        "-n",
        "second",
        "--port",
        "0",
        "-b",
        &ip(b, 3),
        "--state",
        &state,
    ]);
    assert_eq!(second.status.code(), Some(1), "{}", second.stderr);
    let holder = format!("(pid {})", first.pid());
    assert!(
        second.stderr.contains("another peerchat") && second.stderr.contains(&holder),
        "names the holder: {:?}",
        second.stderr
    );
    first.quit_ok();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_and_text_cannot_make_the_display_lie() {
    let b = 160;
    let mut peer = Peer::spawn("target", &ip(b, 2), &[]);
    let from = ip(b, 10);
    let lie = format!("{{\"type\":\"message\",\"content\":\"wire the money\",\"sender_name\":\"bob {from}:1] 127.0.0.9:7778\",\"sender_port\":5}}");
    common::send_raw(&from, peer.addr, lie.as_bytes()).expect("send");
    peer.expect_line(&format!(
        "[\"bob {from}:1] 127.0.0.9:7778\" {from}:5] wire the money"
    ));
    common::send_raw(
        &from,
        peer.addr,
        format!("{from}:6 eve pay \u{202e}evil").as_bytes(),
    )
    .expect("send");
    peer.expect_line(&format!("[eve {from}:6] pay \\u{{202e}}evil"));
    // An exit for a peer never known is not news.
    common::send_raw(&from, peer.addr, format!("{from}:7 ghost exit").as_bytes()).expect("send");
    common::send_raw(&from, peer.addr, format!("{from}:8 after after").as_bytes()).expect("send");
    peer.expect_line(&format!("[after {from}:8] after"));
    assert!(peer.lines_matching(|l| l.contains("ghost")).is_empty());
    legit_sender(&ip(b, 3), peer.addr, |line| shows(&mut peer, line));
}

#[test]
fn unfinished_lines_from_one_address_cannot_crowd_out_another_sender() {
    let b = 161;
    let mut peer = Peer::spawn_log("target", &ip(b, 2), &[], "error");
    let to = peer.addr;
    let attacker = ip(b, 10);
    // 256 connections, each with 64 KiB of a line that never ends: 16 MiB in all, the
    // whole default bound, if one address could take it.
    let held: Vec<TcpStream> = (0..256)
        .filter_map(|_| {
            let mut s = connect_from(&attacker, to).ok()?;
            s.write_all(&vec![b'x'; 65_536]).ok()?;
            Some(s)
        })
        .collect();
    peer.expect("its share used up", LONG_WAIT, |l| {
        l.contains(&attacker) && l.contains("--max-unfinished")
    });
    // A lab sender that writes without a newline, waits, then closes: its line is
    // unfinished for a while, and must not be the one that goes.
    let from = ip(b, 3);
    let mut slow = connect_from(&from, to).expect("connect");
    slow.write_all(format!("{from}:9 slow half of a message").as_bytes())
        .expect("write");
    legit_sender(&ip(b, 4), to, |line| shows(&mut peer, line));
    slow.write_all(b", and the rest").expect("write the rest");
    drop(slow);
    peer.expect_line(&format!("[slow {from}:9] half of a message, and the rest"));
    assert!(
        peer.lines_matching(|l| l.contains("--max-unfinished") && !l.contains(&attacker))
            .is_empty(),
        "only the attacker's connections were closed"
    );
    drop(held);
}

#[test]
fn port_lines_do_not_hold_connection_slots() {
    // A port-line peer keeps one connection open between its messages, and the idle
    // timeout spares it; an attacker opening many with just a port line must not hold
    // them all for ever (README: "Connection slots cannot be held").
    let b = 240;
    let mut peer = Peer::spawn(
        "target",
        &ip(b, 2),
        &["--idle-timeout", "2", "--max-per-ip", "50"],
    );
    let to = peer.addr;
    let attacker = ip(b, 10);
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect_from(&attacker, to).expect("held connection");
            s.write_all(b"5999\n").expect("port line");
            s
        })
        .collect();
    assert!(
        poll_until(WAIT, || peer.open_fds() >= 20),
        "the 20 are taken"
    );
    let mut buf = [0u8; 64];
    // Drops those the peer closed; keeps those still open (a read would block).
    let mut still_open = || {
        held.retain_mut(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
            match s.read(&mut buf) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        });
        held.len()
    };
    let closed = poll_until(Duration::from_secs(8), || still_open() <= 1);
    assert!(
        closed,
        "{} connections that sent only a port line are still open",
        still_open()
    );
    peer.quit_ok();
}

/// A port-line peer that streams short lines in one write (read by peerchat as runs of
/// lines): one `Message received` per line, no more and no fewer, every line shown, and
/// the table counts every one.
#[test]
fn a_port_line_stream_gets_one_acknowledgement_per_line_and_counts_each() {
    let b = 162;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let from = ip(b, 10);
    const LINES: usize = 3000;
    let mut wire = String::from("6000\n");
    for i in 0..LINES {
        wire.push_str(&format!("w{i:04}\n"));
    }
    let mut s = connect_from(&from, alice.addr).expect("connect");
    s.write_all(wire.as_bytes()).expect("write");
    let ack = b"Message received\n";
    let mut got = Vec::new();
    s.set_read_timeout(Some(LONG_WAIT)).expect("timeout");
    let mut buf = [0u8; 4096];
    while got.len() < LINES * ack.len() {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("after {} bytes of acks: {e}", got.len()),
        }
    }
    assert_eq!(got, ack.repeat(LINES), "one ack per line");
    let last = format!("w{:04}", LINES - 1);
    let shown = alice.expect_many("the lines", LINES, WAIT, |l| l.contains("] w"));
    assert!(
        shown.last().is_some_and(|l| l.ends_with(&last)),
        "{shown:?}"
    );
    let row = alice.query_row(&format!("{from}:6000")).expect("listed");
    assert_eq!(row[5], LINES.to_string(), "messages counted: {row:?}");
    // Nothing more arrives: not one ack too many.
    s.set_nonblocking(true).expect("nonblocking");
    match s.read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("more after the acks: {other:?}"),
    }
}

/// Two senders' bursts arrive in the same poll, so each reads the smaller share of a turn
/// (256 lines); a burst of fewer than 512 bytes is held whole and decoded when the next
/// read would block, and its lines beyond the share wait in the connection's backlog.
/// They must get a turn of their own although the socket is drained and the sender says
/// nothing more (a turn that ended "drained" left them there until the sender spoke again).
#[test]
fn lines_beyond_a_turn_s_share_are_shown_when_the_sender_falls_silent() {
    let b = 163;
    let mut peer = Peer::spawn_log("target", &ip(b, 2), &[], "warn");
    let to: SocketAddr = peer.address().parse().expect("address");
    let mut senders = Vec::new();
    for (host, name) in [(10, "alice"), (11, "bob")] {
        let from = ip(b, host);
        let mut s = connect_from(&from, to).expect("connects");
        s.write_all(format!("{from}:9 {name} hello\n").as_bytes())
            .expect("header");
        peer.expect("the header", WAIT, |l| l.ends_with("hello"));
        senders.push((name, s));
    }
    for round in 0..20 {
        // Both bursts at once: 400 blank lines, then a line to see.
        for (name, s) in &mut senders {
            let mut burst = b"\n".repeat(400);
            burst.extend_from_slice(format!("{name}-{round}\n").as_bytes());
            assert!(burst.len() <= 512);
            s.write_all(&burst).expect("burst");
        }
        for (name, _) in &senders {
            let want = format!("{name}-{round}");
            peer.expect("the line after the blank ones", WAIT, |l| {
                l.ends_with(&want)
            });
        }
    }
}

/// A message whose urgent byte came, out of order, before the segment that points at it
/// (the mark then stays "not yet valid": the poll reports no urgent data), on a connection
/// the peer had ended with a FIN before it was read: a read stops short at the mark without
/// being at the end, and what follows the mark is shown too. The segments are crafted with a
/// raw socket, so this runs inside a user and network namespace of its own.
#[test]
fn a_message_cut_by_an_unreported_urgent_mark_is_shown_whole() {
    let setup = "ip link set lo up && echo 0 > /proc/sys/net/ipv4/tcp_timestamps";
    common::in_namespace(
        "inner_a_message_cut_by_an_unreported_urgent_mark_is_shown_whole",
        setup,
    );
}

#[test]
#[ignore = "runs inside the namespace made by a_message_cut_by_an_unreported_urgent_mark_is_shown_whole"]
fn inner_a_message_cut_by_an_unreported_urgent_mark_is_shown_whole() {
    if !common::inside_namespace() {
        return;
    }
    let mut alice = Peer::spawn("alice", &ip(170, 2), &[]);
    // So that the crafted connection is read at its readiness event, which reports its FIN.
    let held = common::hold_one_open(&mut alice, &ip(170, 3));
    alice.stop();
    let from = ip(170, 4);
    let head = format!("{from}:9 crafted before the mark, ");
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(common::script("urgent_sender.py"))
        .args(["--bind", &from, "--to", &alice.addr.to_string(), &head])
        .arg("after the mark\n");
    let mut sender = Peer::launch("urgent_sender.py", cmd, Stdio::piped());
    sender.expect_line("sent");
    alice.signal(libc::SIGCONT);
    alice.expect_line(&format!(
        "[crafted {from}:9] before the mark, after the mark"
    ));
    sender.close_stdin();
    sender.expect_exit(WAIT);
    drop(held);
    alice.quit_ok();
}
