//! The peer end to end, as a user drives it: messages between two and three peers, both
//! ways and in typed order; the `/peers` query (and menu `2`) listing addresses, names and
//! statuses; `connect` answered with `connect_ack`, and greeting every active peer (menu
//! `3`, `/connect`); `exit` removing the sender, and quitting (`/quit`, menu `0`, end of
//! input) telling every active peer; static peers greeted at start-up, an unreachable one
//! not blocking it; a send to a closed port reported while the peer keeps working; menu `1`,
//! `/msg` and `/all`; hints for unknown input; and the command line (bad arguments exit 2
//! with the usage, `--help` and `-V` exit 0, a port in use exits 1); and a connection read
//! in the turn that accepted it still heard from later; connections that ended before they
//! were read (one with an urgent byte in it) shown whole, and one reset right after its data
//! shown and closed at once.
//!
//! Each test owns the address block `127.0.K.*` (K = 10..39 in this file) and listens on
//! port 0, so tests run in parallel without colliding. Every wait has a deadline; nothing
//! sleeps to synchronise (see `common`).

mod common;

use common::{closed_addr, ip, run_peerchat, Peer, WAIT};
use std::net::TcpListener;

/// How a received chat line looks: `[NAME IP:PORT] TEXT`.
fn chat(from: &Peer, text: &str) -> String {
    format!("[{} {}] {}", from.name, from.address(), text)
}

/// `* sent to IP:PORT: TEXT`.
fn sent(to: &Peer, text: &str) -> String {
    format!("* sent to {}: {}", to.address(), text)
}

/// `* NAME IP:PORT left (exit)`.
fn left(who: &Peer) -> String {
    format!("* {} {} left (exit)", who.name, who.address())
}

/// `/send IP:PORT TEXT`.
fn send_cmd(to: &Peer, text: &str) -> String {
    format!("/send {} {}", to.address(), text)
}

/// alice, bob and carol on block `block`; bob and carol have each said `text` to alice,
/// so both are active peers of hers.
fn alice_heard_from_bob_and_carol(block: u8, text: &str) -> (Peer, Peer, Peer) {
    let mut alice = Peer::spawn("alice", &ip(block, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(block, 3), &[]);
    let mut carol = Peer::spawn("carol", &ip(block, 4), &[]);
    for from in [&mut bob, &mut carol] {
        from.send_line(&send_cmd(&alice, text));
    }
    for from in [&bob, &carol] {
        alice.expect_line(&chat(from, text));
    }
    (alice, bob, carol)
}

/// Asserts that `row` (a query row split on whitespace) is `ADDRESS NAME STATUS SOURCE MSGS ...`.
fn assert_row(row: &[String], address: &str, name: &str, status: &str, source: &str) {
    assert!(
        row.len() >= 5
            && row[0] == address
            && row[1] == name
            && row[2] == status
            && row[3] == source,
        "expected a row `{address} {name} {status} {source} ...`, got {row:?}"
    );
}

#[test]
fn two_peers_exchange_messages_both_ways() {
    let mut alice = Peer::spawn("alice", &ip(10, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(10, 3), &[]);
    assert_eq!(alice.ip(), ip(10, 2));
    assert_ne!(
        alice.port(),
        0,
        "the listening line must show the real port"
    );

    alice.send_line(&send_cmd(&bob, "hello bob"));
    bob.expect_line(&chat(&alice, "hello bob"));
    alice.expect_line(&sent(&bob, "hello bob"));

    bob.send_line(&send_cmd(&alice, "hi alice, ça va? ✓"));
    alice.expect_line(&chat(&bob, "hi alice, ça va? ✓"));
    bob.expect_line(&sent(&alice, "hi alice, ça va? ✓"));

    alice.quit_ok();
    bob.quit_ok();
}

#[test]
fn three_peers_exchange_messages() {
    let mut peers = [
        Peer::spawn("alice", &ip(11, 2), &[]),
        Peer::spawn("bob", &ip(11, 3), &[]),
        Peer::spawn("carol", &ip(11, 4), &[]),
    ];
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                let line = send_cmd(&peers[j], &format!("from {i} to {j}"));
                peers[i].send_line(&line);
            }
        }
    }
    for j in 0..3 {
        for i in 0..3 {
            if i != j {
                let expected = chat(&peers[i], &format!("from {i} to {j}"));
                peers[j].expect_line(&expected);
            }
        }
    }
    for p in &mut peers {
        p.quit_ok();
    }
}

#[test]
fn query_lists_peers_with_addresses_and_statuses() {
    let mut alice = Peer::spawn("alice", &ip(12, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(12, 3), &[]);
    let carol = Peer::spawn("carol", &ip(12, 4), &[]);
    assert!(alice.query().is_empty(), "a fresh peer knows no peers");

    bob.send_line(&send_cmd(&alice, "one"));
    bob.send_line(&send_cmd(&alice, "two"));
    alice.expect_line(&chat(&bob, "one"));
    alice.expect_line(&chat(&bob, "two"));
    alice.send_line(&send_cmd(&carol, "are you there?"));
    alice.expect_line(&sent(&carol, "are you there?"));

    let rows = alice.query();
    assert_eq!(rows.len(), 2, "bob and carol, nothing else: {rows:?}");
    let bob_row = rows
        .iter()
        .find(|r| r[0] == bob.address())
        .expect("bob listed");
    assert_row(bob_row, &bob.address(), "bob", "active", "heard");
    assert_eq!(bob_row[4], "standard", "bob's dialect: {bob_row:?}");
    assert_eq!(bob_row[5], "2", "two messages heard from bob: {bob_row:?}");
    let carol_row = rows
        .iter()
        .find(|r| r[0] == carol.address())
        .expect("carol listed");
    // Only sent to, never heard: source `sent`, name unknown, no messages counted; our
    // message reached it (we waited for `* sent to`), so it is active; its dialect is not
    // known (it is sent our default).
    assert!(
        carol_row.len() >= 6
            && carol_row[1] == "?"
            && carol_row[2] == "active"
            && carol_row[3] == "sent"
            && carol_row[4] == "-"
            && carol_row[5] == "0",
        "carol was only sent to: {carol_row:?}"
    );

    // Menu `2` is the same query.
    let rows = alice.query_with("2");
    assert!(
        rows.iter().any(|r| r[0] == bob.address()),
        "menu 2 lists bob: {rows:?}"
    );
    alice.quit_ok();
}

#[test]
fn connect_gets_connect_ack() {
    let mut alice = Peer::spawn("alice", &ip(13, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(13, 3), &[]);
    alice.send_line(&send_cmd(&bob, "connect"));
    bob.expect_line(&format!(
        "* connect from alice {} (answering with connect_ack)",
        alice.address()
    ));
    alice.expect_line(&format!("* connect_ack from bob {}", bob.address()));
    let row = alice
        .query_row(&bob.address())
        .expect("bob known after connect_ack");
    assert_eq!(row[2], "active", "{row:?}");
    let row = bob
        .query_row(&alice.address())
        .expect("alice known after connect");
    assert_eq!(row[1], "alice", "{row:?}");
}

#[test]
fn menu_3_and_slash_connect_greet_all_active_peers() {
    let (mut alice, mut bob, mut carol) = alice_heard_from_bob_and_carol(14, "hi");

    let greeted = format!(
        "* connect from alice {} (answering with connect_ack)",
        alice.address()
    );
    alice.send_line("3");
    bob.expect_line(&greeted);
    carol.expect_line(&greeted);
    alice.expect_line(&format!("* connect_ack from bob {}", bob.address()));
    alice.expect_line(&format!("* connect_ack from carol {}", carol.address()));

    alice.send_line("/connect");
    bob.expect_line(&greeted);
    carol.expect_line(&greeted);
}

#[test]
fn exit_removes_the_sender() {
    let mut alice = Peer::spawn("alice", &ip(15, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(15, 3), &[]);
    bob.send_line(&send_cmd(&alice, "hello"));
    alice.expect_line(&chat(&bob, "hello"));
    assert!(
        alice.query_row(&bob.address()).is_some(),
        "bob listed after his message"
    );

    bob.send_line(&send_cmd(&alice, "exit"));
    alice.expect_line(&left(&bob));
    let rows = alice.query();
    assert!(
        rows.iter().all(|r| r[0] != bob.address()),
        "bob must be gone after exit: {rows:?}"
    );
}

#[test]
fn quit_notifies_all_active_peers() {
    let (mut alice, mut bob, mut carol) = alice_heard_from_bob_and_carol(16, "hi");

    alice.send_line("/quit");
    bob.expect_line(&left(&alice));
    carol.expect_line(&left(&alice));
    alice.expect_line(&sent(&bob, "exit"));
    alice.expect_line(&sent(&carol, "exit"));
    alice.quit_ok();
    // Bob and carol keep working.
    bob.send_line(&send_cmd(&carol, "still here"));
    carol.expect_line(&chat(&bob, "still here"));
}

#[test]
fn menu_0_quits_and_sends_exit() {
    let mut alice = Peer::spawn("alice", &ip(25, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(25, 3), &[]);
    bob.send_line(&send_cmd(&alice, "hi"));
    alice.expect_line(&chat(&bob, "hi"));
    alice.send_line("0");
    bob.expect_line(&left(&alice));
    alice.quit_ok();
}

#[test]
fn stdin_eof_quits_and_sends_exit() {
    let mut alice = Peer::spawn("alice", &ip(22, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(22, 3), &[]);
    bob.send_line(&send_cmd(&alice, "hi"));
    alice.expect_line(&chat(&bob, "hi"));
    alice.quit_ok(); // closes stdin: EOF is quit
    bob.expect_line(&left(&alice));
}

#[test]
fn static_peer_is_greeted_at_startup() {
    let mut bob = Peer::spawn("bob", &ip(17, 3), &[]);
    let mut alice = Peer::spawn("alice", &ip(17, 2), &["-s", &bob.address()]);
    bob.expect_line(&format!(
        "* connect from alice {} (answering with connect_ack)",
        alice.address()
    ));
    alice.expect_line(&format!("* connect_ack from bob {}", bob.address()));
    let row = alice
        .query_row(&bob.address())
        .expect("the static peer is listed");
    assert!(
        row.contains(&"static".to_string()),
        "marked static: {row:?}"
    );
}

#[test]
fn unreachable_static_peer_does_not_block_startup() {
    let (closed, _port) = closed_addr(&ip(26, 9));
    let mut alice = Peer::spawn("alice", &ip(26, 2), &["-s", &closed]);
    alice.expect(&format!("! could not send to {closed}: ..."), WAIT, |l| {
        l.starts_with(&format!("! could not send to {closed}:"))
    });
    let mut bob = Peer::spawn("bob", &ip(26, 3), &[]);
    alice.send_line(&send_cmd(&bob, "works"));
    bob.expect_line(&chat(&alice, "works"));
}

#[test]
fn send_to_closed_port_reports_failure_and_keeps_working() {
    let mut alice = Peer::spawn("alice", &ip(18, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(18, 3), &[]);
    let (closed, _port) = closed_addr(&ip(18, 9));
    alice.send_line(&format!("/send {closed} anybody?"));
    alice.expect(&format!("! could not send to {closed}: ..."), WAIT, |l| {
        l.starts_with(&format!("! could not send to {closed}:"))
    });
    alice.send_line(&send_cmd(&bob, "after the failure"));
    bob.expect_line(&chat(&alice, "after the failure"));
    alice.expect_line(&sent(&bob, "after the failure"));
    alice.quit_undelivered(1);
}

/// A receiver that closes the connection with our message unread in its socket (one
/// that refuses it, or reads only part) resets it: that is a failure to deliver, reported
/// as such, not "sent", whether its close came after our message arrived or before (its
/// EOF reaches us first then: the reset decides). One that reads it all and closes has it
/// delivered. The same for `peerchat send`, whose exit status says so.
#[test]
fn a_receiver_that_closes_without_reading_is_not_sent_to() {
    let mut alice = Peer::spawn("alice", &ip(95, 2), &[]);
    let listener = TcpListener::bind(format!("{}:0", ip(95, 3))).expect("bind");
    let dest = listener.local_addr().expect("addr");
    let receiver = std::thread::spawn(move || {
        // The first connection: wait until the message is there, then close unread.
        let (first, _) = listener.accept().expect("accept");
        first.peek(&mut [0u8; 1]).expect("peek");
        drop(first);
        // The next four: closed at once, most often before the message arrives.
        for _ in 0..4 {
            drop(listener.accept().expect("accept"));
        }
        // The last: read it all, then close.
        let (mut last, _) = listener.accept().expect("accept");
        let mut got = String::new();
        std::io::Read::read_to_string(&mut last, &mut got).expect("read");
        got
    });
    let reset = format!("! could not send to {dest}: the connection was reset");
    for text in ["unread", "early 1", "early 2", "early 3"] {
        alice.send_line(&format!("/send {dest} {text}"));
        alice.expect(&format!("{reset} ... {text}"), WAIT, |l| {
            l.starts_with(&reset) && l.ends_with(&format!("(message: {text})"))
        });
    }
    let name = ["-n", "scripter", "-p", "5999", "-b", "127.0.95.4"];
    let failed = run_peerchat(&[&["send"][..], &name, &[&dest.to_string(), "early 4"]].concat());
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    assert!(failed.stderr.contains(&reset), "{failed:?}");
    alice.send_line(&format!("/send {dest} read in full"));
    alice.expect_line(&format!("* sent to {dest}: read in full"));
    let got = receiver.join().expect("receiver");
    assert!(got.ends_with(" alice read in full"), "{got:?}");
    alice.quit_undelivered(4);
}

/// A persistent sender that ends its messages with nothing (no newline) and keeps its
/// connection open: each message is shown once the sender falls quiet after it, while the
/// connection stays open; one written in two pieces close together is one message.
#[test]
fn messages_with_nothing_after_them_on_an_open_connection_are_shown() {
    use std::io::Write;
    let mut alice = Peer::spawn("alice", &ip(96, 2), &[]);
    let from = ip(96, 3);
    let mut stream = common::connect_from(&from, alice.addr).expect("connect");
    stream
        .write_all(format!("{from}:7501 pers first").as_bytes())
        .expect("write");
    alice.expect_line(&format!("[pers {from}:7501] first"));
    // The second in two writes with no pause between them: one message.
    stream
        .write_all(format!("{from}:7501 pers sec").as_bytes())
        .expect("write");
    stream.write_all(b"ond").expect("write");
    alice.expect_line(&format!("[pers {from}:7501] second"));
    // Still open: a third one goes through it.
    stream
        .write_all(format!("{from}:7501 pers third").as_bytes())
        .expect("write");
    alice.expect_line(&format!("[pers {from}:7501] third"));
    drop(stream);
    let split = alice.lines_matching(|l| l.contains("] sec") && !l.ends_with("second"));
    assert!(split.is_empty(), "{split:?}");
    // A port-line peer waits for `Message received` after each message: it comes for
    // one shown when quiet too.
    let mut port_line = common::connect_from(&from, alice.addr).expect("connect");
    port_line
        .write_all(format!("7503\n{from}:7503 pl quiet one").as_bytes())
        .expect("write");
    alice.expect_line(&format!("[pl {from}:7503] quiet one"));
    port_line
        .set_read_timeout(Some(WAIT))
        .expect("read timeout");
    let mut ack = [0u8; 17];
    std::io::Read::read_exact(&mut port_line, &mut ack).expect("acknowledged");
    assert_eq!(&ack, b"Message received\n");
    drop(port_line);
    // Two messages on one connection, each written with nothing after it: JSON on one
    // line, JSON spread over lines (pretty-printed, shown at its last line), and a
    // bracketed block (shown at its `<end>`, which needs no newline after it).
    let json = |text: &str| {
        format!(
            r#"{{"type": "message", "content": "{text}", "sender_name": "js", "sender_port": 7502}}"#
        )
    };
    let pretty = |text: &str| {
        format!("{{\n  \"type\": \"message\",\n  \"content\": \"{text}\",\n  \"sender_name\": \"pj\",\n  \"sender_port\": 7507\n}}")
    };
    let block = |text: &str| format!("<{from}:7506> @ <br>\n{text}\n<end>");
    type Form<'a> = &'a dyn Fn(&str) -> String;
    let forms: [(Form, &str, u16); 3] = [
        (&json, "js", 7502),
        (&pretty, "pj", 7507),
        (&block, "br", 7506),
    ];
    for (form, name, port) in forms {
        let mut stream = common::connect_from(&from, alice.addr).expect("connect");
        for text in [format!("{name} one"), format!("{name} two")] {
            stream.write_all(form(&text).as_bytes()).expect("write");
            alice.expect_line(&format!("[{name} {from}:{port}] {text}"));
        }
    }
    // The other dialects that put their header on the message's line, key/value and
    // colon fields here: shown when quiet, and told apart when glued.
    for (header, name, port) in [
        ("LISTENING_PORT:7504|TEAM_NAME:kv|", "kv", 7504),
        ("MESSAGE:co:7505:", "co", 7505),
    ] {
        let mut stream = common::connect_from(&from, alice.addr).expect("connect");
        stream
            .write_all(format!("{header}alone").as_bytes())
            .expect("write");
        alice.expect_line(&format!("[{name} {from}:{port}] alone"));
        stream
            .write_all(format!("{header}glued{header}together").as_bytes())
            .expect("write");
        alice.expect_line(&format!("[{name} {from}:{port}] glued"));
        alice.expect_line(&format!("[{name} {from}:{port}] together"));
        drop(stream);
    }
    alice.quit().expect("quits");
}

#[test]
fn bad_command_line_exits_2_with_a_one_line_reason() {
    let cases: &[(&str, &[&str])] = &[
        (
            "port out of range",
            &["-n", "x", "-p", "70000", "-b", "127.0.19.2"],
        ),
        (
            "port not a number",
            &["-n", "x", "-p", "abc", "-b", "127.0.19.2"],
        ),
        (
            "name with a space",
            &["-n", "a b", "-p", "0", "-b", "127.0.19.2"],
        ),
        (
            "name with a colon fields' delimiter",
            &["-n", "a:b", "-p", "0", "-b", "127.0.19.2"],
        ),
        ("unknown option", &["-n", "x", "-p", "0", "--bogus"]),
        (
            "bad bind address",
            &["-n", "x", "-p", "0", "-b", "not-an-ip"],
        ),
        (
            "bad static peer",
            &["-n", "x", "-p", "0", "-b", "127.0.19.2", "-s", "nowhere"],
        ),
        (
            "bad format",
            &[
                "-n",
                "x",
                "-p",
                "0",
                "-b",
                "127.0.19.2",
                "--format",
                "fancy",
            ],
        ),
    ];
    for (case, args) in cases {
        let done = run_peerchat(args);
        assert_eq!(
            done.status.code(),
            Some(2),
            "{case}: {args:?} gave {done:?}"
        );
        let lines: Vec<&str> = done.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "{case}: the reason and a hint, not the whole usage: {done:?}"
        );
        assert!(lines[0].starts_with("peerchat: "), "{case}: {done:?}");
        assert!(lines[1].contains("--help"), "{case}: {done:?}");
        assert!(
            done.stdout.is_empty(),
            "{case}: nothing on stdout: {done:?}"
        );
    }
}

#[test]
fn missing_name_or_port_without_terminal_exits_2() {
    for args in [
        &["-p", "0", "-b", "127.0.19.3"][..],
        &["-n", "x", "-b", "127.0.19.3"],
    ] {
        let done = run_peerchat(args);
        assert_eq!(done.status.code(), Some(2), "{args:?} gave {done:?}");
        assert!(!done.stderr.trim().is_empty(), "a clear message: {done:?}");
    }
}

#[test]
fn help_exits_0_with_usage_and_version_works() {
    let done = run_peerchat(&["--help"]);
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    let text = format!("{}{}", done.stdout, done.stderr).to_lowercase();
    assert!(text.contains("usage"), "usage shown: {done:?}");
    for option in ["--name", "--port", "--bind", "--static-peer", "--advertise"] {
        assert!(text.contains(option), "--help documents {option}: {done:?}");
    }
    let done = run_peerchat(&["-V"]);
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    assert!(done.stdout.contains(env!("CARGO_PKG_VERSION")), "{done:?}");
}

#[test]
fn port_in_use_exits_1() {
    let taken = TcpListener::bind((ip(20, 2).as_str(), 0)).expect("bind");
    let port = taken.local_addr().unwrap().port().to_string();
    let done = run_peerchat(&["-n", "x", "-p", &port, "-b", &ip(20, 2)]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(!done.stderr.trim().is_empty(), "says why: {done:?}");
}

#[test]
fn menu_1_sends_a_message() {
    let mut alice = Peer::spawn("alice", &ip(21, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(21, 3), &[]);
    alice.send_line("1");
    alice.send_line(&bob.ip());
    alice.send_line(&bob.port().to_string());
    alice.send_line("hello from the menu");
    bob.expect_line(&chat(&alice, "hello from the menu"));
    alice.expect_line(&sent(&bob, "hello from the menu"));
    // The menu is done: the next line is a command again.
    alice.send_line(&send_cmd(&bob, "and a command"));
    bob.expect_line(&chat(&alice, "and a command"));
    alice.send_line("0");
    alice.quit_ok();
}

#[test]
fn unknown_input_gets_a_hint_and_the_peer_keeps_working() {
    let mut alice = Peer::spawn("alice", &ip(23, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(23, 3), &[]);
    alice.send_line("what is this");
    alice.expect("a `? ` hint", WAIT, |l| l.starts_with("? "));
    alice.send_line("/help");
    alice.expect("/help naming /send", WAIT, |l| l.contains("/send"));
    alice.send_line(&send_cmd(&bob, "still fine"));
    bob.expect_line(&chat(&alice, "still fine"));
}

#[test]
fn msg_alias_and_all_reach_active_peers() {
    let (mut alice, mut bob, mut carol) = alice_heard_from_bob_and_carol(24, "hi");
    alice.send_line(&format!("/msg {} via msg", bob.address()));
    bob.expect_line(&chat(&alice, "via msg"));
    alice.send_line("/all to everybody");
    bob.expect_line(&chat(&alice, "to everybody"));
    carol.expect_line(&chat(&alice, "to everybody"));
}

#[test]
fn messages_to_one_destination_arrive_in_typed_order() {
    let mut alice = Peer::spawn("alice", &ip(27, 2), &[]);
    let mut bob = Peer::spawn("bob", &ip(27, 3), &[]);
    for i in 0..20 {
        alice.send_line(&send_cmd(&bob, &format!("number {i}")));
    }
    let prefix = format!("[alice {}] number ", alice.address());
    let got: Vec<String> = (0..20)
        .map(|i| bob.expect(&format!("message {i}"), WAIT, |l| l.starts_with(&prefix)))
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("{prefix}{i}")).collect();
    if got != expected {
        let sender_log = alice.report("(the sender)");
        panic!(
            "{}\n{sender_log}",
            bob.report("messages out of typed order")
        );
    }
}

#[test]
fn a_header_claiming_our_own_address_never_makes_us_our_own_peer() {
    let mut alice = Peer::spawn("alice", &ip(29, 2), &[]);
    let from = ip(29, 3);
    // A peer whose `PING` carries the receiver's own address in its header.
    let ping = format!("{} pinger PING", alice.address());
    common::send_raw(&from, alice.addr, ping.as_bytes()).expect("send");
    alice.expect_line(&format!("[pinger {from}:?] PING"));
    let connect = format!("{} pinger connect", alice.address());
    common::send_raw(&from, alice.addr, connect.as_bytes()).expect("send");
    alice.send_line(&format!("/send {} hello me", alice.address()));
    alice.expect_line(&format!(
        "! not sent to {}: that is this peer's own address",
        alice.address()
    ));
    assert!(alice.query().is_empty(), "no peer: not ourselves");
    alice.send_line("/all anyone?");
    alice.expect_line("! no active peers to send to");
    assert!(alice
        .lines_matching(|l| l.contains("connect from"))
        .is_empty());
    // Both messages were refused: a script would learn it from the exit status.
    alice.quit_undelivered(2);
}

/// A connection that comes while no other is open is read in the turn that accepted it,
/// before it is registered with the poll; one that stays open after that first read is
/// registered then, so what it sends later is read too (and so is a second sender's
/// message meanwhile, and the end of the first connection).
#[test]
fn a_connection_read_as_it_is_accepted_is_still_heard_from_later() {
    use std::io::Write;
    let mut alice = Peer::spawn("alice", &ip(30, 2), &[]);
    let from = ip(30, 3);
    let mut stream = common::connect_from(&from, alice.addr).expect("connect");
    stream
        .write_all(format!("{from}:9 slow first\n").as_bytes())
        .expect("write");
    alice.expect_line(&format!("[slow {from}:9] first"));
    // Read once already, and open: only its readiness events can bring the rest.
    let other = ip(30, 4);
    common::send_raw(&other, alice.addr, format!("{other}:9 quick hi").as_bytes()).expect("send");
    alice.expect_line(&format!("[quick {other}:9] hi"));
    stream.write_all(b"second\n").expect("write");
    alice.expect_line(&format!("[slow {from}:9] second"));
    stream.write_all(b"third").expect("write");
    drop(stream);
    alice.expect_line(&format!("[slow {from}:9] third"));
    alice.quit_ok();
}

/// Connections that send everything and close while the peer is busy (stopped here), so
/// that one readiness event reports their data and their end together: each is read to its
/// end and shown whole. That holds for one with an urgent (out-of-band) byte in the middle
/// too: TCP stops a read short at the urgent mark, which is not the end of what was sent
/// (the urgent byte itself is not part of the stream, and is not shown).
#[test]
fn connections_that_ended_before_they_were_read_are_shown_whole() {
    use std::io::Write;
    let mut alice = Peer::spawn("alice", &ip(31, 2), &[]);
    let held = common::hold_one_open(&mut alice, &ip(31, 3));
    alice.stop();
    let (plain, urgent) = (ip(31, 4), ip(31, 5));
    let mut stream = common::connect_from(&plain, alice.addr).expect("connect");
    stream
        .write_all(format!("{plain}:9 plain one whole message").as_bytes())
        .expect("write");
    drop(stream);
    let stream = common::connect_from(&urgent, alice.addr).expect("connect");
    let socket = socket2::Socket::from(stream);
    let before = format!("{urgent}:9 urgent before the mark, ");
    socket.send(before.as_bytes()).expect("write");
    socket.send_out_of_band(b"!").expect("write urgent");
    socket.send(b"after it\n").expect("write");
    drop(socket);
    alice.signal(libc::SIGCONT);
    alice.expect_line(&format!("[plain {plain}:9] one whole message"));
    alice.expect_line(&format!("[urgent {urgent}:9] before the mark, after it"));
    drop(held);
    alice.quit_ok();
}

/// A connection reset by its sender right after its data, while the peer was busy (stopped
/// here), so that one readiness event reports the data and the reset together: what it sent
/// is shown at once, a bracketed block left open included, and the connection is closed,
/// not left waiting for an idle timeout.
#[test]
fn a_connection_reset_after_its_data_is_shown_and_closed_at_once() {
    use std::io::Write;
    let mut alice = Peer::spawn("alice", &ip(32, 2), &[]);
    let held = common::hold_one_open(&mut alice, &ip(32, 3));
    let before = alice.open_fds();
    alice.stop();
    let from = ip(32, 4);
    let mut stream = common::connect_from(&from, alice.addr).expect("connect");
    stream
        .write_all(format!("<{from}:9> @ <bob>\nline one of a block\nline two").as_bytes())
        .expect("write");
    let socket = socket2::Socket::from(stream);
    socket
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop(socket); // a reset, not a FIN
    alice.signal(libc::SIGCONT);
    alice.expect_line(&format!("[bob {from}:9] line one of a block\\nline two"));
    assert!(
        common::poll_until(WAIT, || alice.open_fds() <= before),
        "the reset connection is still open: {} descriptors, {before} before it",
        alice.open_fds()
    );
    drop(held);
    alice.quit_ok();
}
