//! Interoperability: `peerchat` against the independent Python reference peers in
//! `tests/peers/`, which behave like the lab's common designs (docs/PROTOCOL.md).
//!
//! - our messages, short and long, arrive intact at a thread-per-connection receiver and at
//!   an inline one, both doing a single `recv(1024)` and strict UTF-8 decoding;
//! - every dialect of docs/PROTOCOL.md, section 2, sent by `sender.py`, is shown with the right
//!   name, address and text (one test per dialect, from the table in [`dialect`]);
//! - `connect` from a Python peer gets our `connect_ack` at its listening port, its `exit`
//!   removes it, and 200 back-to-back connections from it all arrive, in order.
//!
//! Each test owns the address block `127.0.K.*` (K = 40..79 in this file): peerchat listens
//! on `.2`, the Python peers on `.3`. Every wait has a deadline; nothing sleeps to synchronise.

mod common;

use common::{ip, py_send, Peer, PyMessage, WAIT};

/// Starts peerchat `alice` on `127.0.K.2` and a Python receiver (`script`) on `127.0.K.3`.
fn alice_and(block: u8, script: &str, extra: &[&str]) -> (Peer, Peer) {
    let alice = Peer::spawn("alice", &ip(block, 2), &[]);
    let receiver = Peer::python(script, "pyrecv", &ip(block, 3), extra);
    (alice, receiver)
}

/// Waits for the next message the Python receiver reports.
fn next_py_message(receiver: &mut Peer) -> PyMessage {
    let line = receiver.expect("a received message", WAIT, |l| l.starts_with("message "));
    PyMessage::parse(&line).unwrap_or_else(|| panic!("unparsable receiver line {line:?}"))
}

/// Asserts that a Python receiver saw no message it could not decode.
fn assert_no_decode_error(receiver: &mut Peer) {
    let bad: Vec<String> = receiver
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("decode_error"))
        .collect();
    assert!(bad.is_empty(), "the receiver failed to decode: {bad:#?}");
}

fn message_arrives_intact(block: u8, script: &str) {
    let (mut alice, mut receiver) = alice_and(block, script, &[]);
    alice.send_line(&format!(
        "/send {} hello there, ça marche",
        receiver.address()
    ));
    let msg = next_py_message(&mut receiver);
    let expected = format!("{} alice hello there, ça marche", alice.address());
    assert_eq!(
        String::from_utf8_lossy(&msg.raw),
        expected,
        "standard form, no newline"
    );
    alice.expect_line(&format!(
        "* sent to {}: hello there, ça marche",
        receiver.address()
    ));
}

#[test]
fn our_message_arrives_intact_at_thread_receiver() {
    message_arrives_intact(40, "thread_receiver.py");
}

#[test]
fn our_message_arrives_intact_at_inline_receiver() {
    message_arrives_intact(41, "inline_receiver.py");
}

/// About 3000 bytes of mixed 1-, 2-, 3- and 4-byte characters, with spaces.
fn long_multibyte_text() -> String {
    let pattern = "héllo wörld € 日本語 😀 naïve café ";
    let mut text = String::new();
    while text.len() < 3000 {
        text.push_str(pattern);
    }
    text.trim_end().to_string()
}

fn long_message_is_split_safely(block: u8, script: &str) {
    let (mut alice, mut receiver) = alice_and(block, script, &[]);
    let text = long_multibyte_text();
    assert!(text.len() >= 3000 && text.chars().count() < text.len());
    alice.send_line(&format!("/send {} {}", receiver.address(), text));
    let announced = alice.expect("the split notice", WAIT, |l| {
        l.starts_with(&format!("* message to {} split into ", receiver.address()))
    });
    let parts: usize = announced
        .rsplit("split into ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no part count in {announced:?}"));
    assert!(
        parts >= 3,
        "3000 bytes need at least 3 parts: {announced:?}"
    );

    let mut got: Vec<PyMessage> = (0..parts).map(|_| next_py_message(&mut receiver)).collect();
    assert_no_decode_error(&mut receiver);
    got.sort_by_key(|m| m.seq);
    for m in &got {
        assert!(m.raw.len() <= 1024, "a part of {} bytes", m.raw.len());
        assert_eq!(
            (m.name.as_str(), m.port.as_str(), m.claimed_ip.as_str()),
            (
                "alice",
                alice.port().to_string().as_str(),
                alice.ip().as_str()
            ),
            "every part has our header"
        );
    }
    let joined: String = got.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        joined, text,
        "the parts, in arrival order, reassemble the text"
    );
}

#[test]
fn long_multibyte_message_is_split_for_thread_receiver() {
    long_message_is_split_safely(42, "thread_receiver.py");
}

#[test]
fn long_multibyte_message_is_split_for_inline_receiver() {
    long_message_is_split_safely(43, "inline_receiver.py");
}

#[test]
fn unsolicited_reply_does_not_fail_the_send() {
    let (mut alice, mut receiver) =
        alice_and(44, "thread_receiver.py", &["--reply", "Message received"]);
    for text in ["first", "second"] {
        alice.send_line(&format!("/send {} {text}", receiver.address()));
        assert_eq!(next_py_message(&mut receiver).text, text);
        alice.expect_line(&format!(
            "* sent to {}: {text} (it answered: Message received)",
            receiver.address()
        ));
    }
    alice.query(); // a round trip through the loop, then look for errors
    let errors: Vec<String> = alice
        .lines()
        .into_iter()
        .filter(|l| l.starts_with('!'))
        .collect();
    assert!(errors.is_empty(), "a reply is not a failure: {errors:?}");
}

#[test]
fn format_spaced_and_advertise_change_our_header() {
    let mut receiver = Peer::python("inline_receiver.py", "pyrecv", &ip(45, 3), &[]);
    let mut spaced = Peer::spawn("alice", &ip(45, 2), &["--format", "spaced"]);
    spaced.send_line(&format!("/send {} hi", receiver.address()));
    let raw = String::from_utf8(next_py_message(&mut receiver).raw).unwrap();
    assert_eq!(raw, format!("{} {} alice hi", spaced.ip(), spaced.port()));

    let mut claiming = Peer::spawn("bob", &ip(45, 4), &["--advertise", "203.0.113.3"]);
    claiming.send_line(&format!("/send {} hi", receiver.address()));
    let msg = next_py_message(&mut receiver);
    assert_eq!(
        String::from_utf8(msg.raw).unwrap(),
        format!("203.0.113.3:{} bob hi", claiming.port())
    );
}

/// One dialect case: what `sender.py` (bound to `127.0.K.3`) writes, and what peerchat
/// must print. In both, `{ip}` is the sender's IP, `{port}` the listening port of a Python
/// receiver on that IP (so a `connect_ack` can be checked), `{dest}` peerchat's IP.
struct Dialect {
    /// The messages, each on its own connection (or all on one when `persistent`).
    wire: &'static [&'static str],
    /// All on one connection, written one by one.
    persistent: bool,
    /// Lines peerchat must print, in this order.
    shown: &'static [&'static str],
    /// The sender asked to connect: the Python receiver must get our `connect_ack`.
    acked: bool,
    /// The sender left: the query must no longer list it.
    gone: bool,
}

impl Dialect {
    const fn new(wire: &'static [&'static str], shown: &'static [&'static str]) -> Dialect {
        Dialect {
            wire,
            persistent: false,
            shown,
            acked: false,
            gone: false,
        }
    }
}

/// The dialect our decoder reads in what a case's sender wrote (its last message).
fn dialect_of(wire: &[String], persistent: bool) -> Option<peerchat::wire::Dialect> {
    let mut got = Vec::new();
    let mut decoder = peerchat::wire::Decoder::new(4096);
    for message in wire {
        if !persistent {
            decoder.finish(&mut got);
            decoder = peerchat::wire::Decoder::new(4096);
        }
        decoder.feed(message.as_bytes(), &mut got).ok()?;
    }
    decoder.finish(&mut got);
    got.last().map(|m| m.dialect)
}

fn dialect(block: u8, case: Dialect) {
    let mut alice = Peer::spawn("alice", &ip(block, 2), &[]);
    let mut receiver = Peer::python("thread_receiver.py", "pyrecv", &ip(block, 3), &[]);
    let (sender_ip, sender_port, dest) = (receiver.ip(), receiver.port().to_string(), alice.ip());
    let fill = |s: &str| {
        s.replace("{ip}", &sender_ip)
            .replace("{port}", &sender_port)
            .replace("{dest}", &dest)
    };
    let to = alice.address();
    let mut args = vec!["--bind", &sender_ip, "--to", &to];
    if case.persistent {
        args.extend(["--persistent", "--pause-ms", "20"]);
    }
    args.push("--");
    let wire: Vec<String> = case.wire.iter().map(|m| fill(m)).collect();
    args.extend(wire.iter().map(String::as_str));
    py_send(&args);

    let shown: Vec<String> = case.shown.iter().map(|l| fill(l)).collect();
    alice.expect_lines_in_order(&shown);
    let sender_addr = fill("{ip}:{port}");
    if case.acked {
        // Our answer is in the sender's own dialect: it decodes as a `connect_ack` from
        // alice's listening port, in the dialect the sender spoke.
        let ack = next_py_message(&mut receiver);
        let mut decoder = peerchat::wire::Decoder::new(4096);
        let mut got = Vec::new();
        decoder
            .feed(&ack.raw, &mut got)
            .expect("our answer decodes");
        decoder.finish(&mut got);
        let what = String::from_utf8_lossy(&ack.raw);
        assert_eq!(got.len(), 1, "one answer: {what:?}");
        assert_eq!(got[0].body, peerchat::wire::Body::ConnectAck, "{what:?}");
        assert_eq!(got[0].port, Some(alice.port()), "{what:?}");
        let spoke = dialect_of(&wire, case.persistent);
        assert_eq!(
            Some(got[0].dialect),
            spoke,
            "answered in its dialect: {what:?}"
        );
    }
    if case.gone {
        let rows = alice.query();
        assert!(
            rows.iter().all(|r| r[0] != sender_addr),
            "{sender_addr} left, yet listed: {rows:?}"
        );
    }
}

#[test]
fn dialect_standard() {
    dialect(
        46,
        Dialect::new(
            &["{ip}:{port} team7 hello  standard, two spaces"],
            &["[team7 {ip}:{port}] hello  standard, two spaces"],
        ),
    );
}

#[test]
fn dialect_space_separated() {
    dialect(
        47,
        Dialect::new(
            &["{ip} {port} team7 hello spaced"],
            &["[team7 {ip}:{port}] hello spaced"],
        ),
    );
}

#[test]
fn dialect_bracketed_multiline() {
    dialect(
        48,
        Dialect::new(
            &["<{ip}:{port}> @ <team7>\nhello bracket\n<end>"],
            &["[team7 {ip}:{port}] hello bracket"],
        ),
    );
}

#[test]
fn dialect_bracketed_disconnect() {
    dialect(
        49,
        Dialect {
            gone: true,
            ..Dialect::new(
                &[
                    "<{ip}:{port}> @ <team7>\nbye soon\n<end>",
                    "<{ip}:{port}> DISCONNECT",
                ],
                &[
                    "[team7 {ip}:{port}] bye soon",
                    "* team7 {ip}:{port} left (exit)",
                ],
            )
        },
    );
}

#[test]
fn dialect_bracketed_with_recipient_ip() {
    dialect(
        50,
        Dialect::new(
            &["<{dest}:{port}> team7 wrong ip in header"],
            &["[team7 {ip}:{port} (claims {dest})] wrong ip in header"],
        ),
    );
}

#[test]
fn dialect_key_value() {
    dialect(
        51,
        Dialect::new(
            &["LISTENING_PORT:{port}|TEAM_NAME:team7|hello key value"],
            &["[team7 {ip}:{port}] hello key value"],
        ),
    );
}

#[test]
fn dialect_colon_message() {
    dialect(
        52,
        Dialect::new(
            &["MESSAGE:team7:{port}:hello colon"],
            &["[team7 {ip}:{port}] hello colon"],
        ),
    );
}

#[test]
fn dialect_colon_connect() {
    dialect(
        53,
        Dialect {
            acked: true,
            ..Dialect::new(
                &["CONNECT:team7:{port}"],
                &["* connect from team7 {ip}:{port} (answering with connect_ack)"],
            )
        },
    );
}

#[test]
fn dialect_colon_connect_port_only() {
    dialect(
        54,
        Dialect {
            acked: true,
            ..Dialect::new(
                &["CONNECT:{port}"],
                &["* connect from ? {ip}:{port} (answering with connect_ack)"],
            )
        },
    );
}

#[test]
fn dialect_colon_ack() {
    dialect(
        55,
        Dialect::new(
            &["ACK:team7:{port}"],
            &["* connect_ack from team7 {ip}:{port}"],
        ),
    );
}

#[test]
fn dialect_colon_exit() {
    dialect(
        56,
        Dialect {
            gone: true,
            ..Dialect::new(
                &["MESSAGE:team7:{port}:about to go", "EXIT:{port}"],
                &[
                    "[team7 {ip}:{port}] about to go",
                    "* team7 {ip}:{port} left (exit)",
                ],
            )
        },
    );
}

#[test]
fn dialect_persistent_line_based() {
    dialect(
        57,
        Dialect {
            persistent: true,
            acked: true,
            ..Dialect::new(
                &[
                    "{port}\n",
                    "CONNECT\n",
                    "hello one\n",
                    "hello two\r\n",
                    "hello three\n",
                ],
                &[
                    "* connect from ? {ip}:{port} (answering with connect_ack)",
                    "[? {ip}:{port}] hello one",
                    "[? {ip}:{port}] hello two",
                    "[? {ip}:{port}] hello three",
                ],
            )
        },
    );
}

#[test]
fn dialect_persistent_glued_in_one_write() {
    dialect(
        58,
        Dialect {
            persistent: true,
            ..Dialect::new(
                &["{port}\nfirst\nsecond\n"],
                &["[? {ip}:{port}] first", "[? {ip}:{port}] second"],
            )
        },
    );
}

#[test]
fn dialect_json_message() {
    dialect(
        59,
        Dialect::new(
            &[
                r#"{"type": "message", "content": "hello json: yes", "sender_name": "team7", "sender_port": {port}}"#,
            ],
            &["[team7 {ip}:{port}] hello json: yes"],
        ),
    );
}

#[test]
fn dialect_json_connect() {
    dialect(
        60,
        Dialect {
            acked: true,
            ..Dialect::new(
                &[
                    r#"{"type": "connect", "content": "", "sender_name": "team7", "sender_port": {port}}"#,
                ],
                &["* connect from team7 {ip}:{port} (answering with connect_ack)"],
            )
        },
    );
}

#[test]
fn dialect_json_exit() {
    dialect(
        61,
        Dialect {
            gone: true,
            ..Dialect::new(
                &[
                    r#"{"type": "message", "content": "leaving", "sender_name": "team7", "sender_port": {port}}"#,
                    r#"{"type": "exit", "content": "", "sender_name": "team7", "sender_port": {port}}"#,
                ],
                &[
                    "[team7 {ip}:{port}] leaving",
                    "* team7 {ip}:{port} left (exit)",
                ],
            )
        },
    );
}

#[test]
fn dialect_raw_text_without_header() {
    dialect(
        62,
        Dialect::new(&["just some words"], &["[? {ip}:?] just some words"]),
    );
}

#[test]
fn claimed_ip_differs_from_observed() {
    dialect(
        63,
        Dialect {
            acked: true,
            ..Dialect::new(
                &[
                    "127.0.1.1:{port} team7 hi from debian",
                    "127.0.1.1:{port} team7 connect",
                ],
                &[
                    "[team7 {ip}:{port} (claims 127.0.1.1)] hi from debian",
                    "* connect from team7 {ip}:{port} (claims 127.0.1.1) (answering with connect_ack)",
                ],
            )
        },
    );
}

#[test]
fn claimed_ip_difference_is_visible_in_the_query() {
    let mut alice = Peer::spawn("alice", &ip(64, 2), &[]);
    let sender = ip(64, 3);
    py_send(&[
        "--bind",
        &sender,
        "--to",
        &alice.address(),
        "--",
        "127.0.1.1:5555 team7 hi",
    ]);
    alice.expect_line(&format!("[team7 {sender}:5555 (claims 127.0.1.1)] hi"));
    let row = alice
        .query_row(&format!("{sender}:5555"))
        .expect("keyed by observed IP and claimed port");
    assert!(
        row.join(" ").contains("127.0.1.1"),
        "the claim shows: {row:?}"
    );
}

#[test]
fn chat_containing_a_control_word_is_chat() {
    let mut alice = Peer::spawn("alice", &ip(65, 2), &[]);
    let sender = ip(65, 3);
    let lines = [
        "{s}:5555 team7 please do not DISCONNECT me",
        "{s}:5555 team7 exit now",
        "{s}:5555 team7 connect_ack?",
    ];
    for line in lines {
        let line = line.replace("{s}", &sender);
        py_send(&["--bind", &sender, "--to", &alice.address(), "--", &line]);
        let text = line.splitn(3, ' ').nth(2).unwrap();
        alice.expect_line(&format!("[team7 {sender}:5555] {text}"));
    }
    let row = alice
        .query_row(&format!("{sender}:5555"))
        .expect("still listed");
    assert_eq!(row[5], "3", "three chat messages counted: {row:?}");
}

#[test]
fn liveness_probe_prints_nothing_and_invalid_utf8_is_replaced() {
    let mut alice = Peer::spawn("alice", &ip(66, 2), &[]);
    let sender = ip(66, 3);
    let mut bad = format!("{sender}:5555 team7 caf").into_bytes();
    bad.push(0xff);
    let hex: String = bad.iter().map(|b| format!("{b:02x}")).collect();
    // An empty connection, then a message with a byte that is not UTF-8.
    py_send(&[
        "--hex",
        "--bind",
        &sender,
        "--to",
        &alice.address(),
        "--",
        "",
        &hex,
    ]);
    alice.expect_line(&format!("[team7 {sender}:5555] caf\u{fffd}"));
    let from_sender: Vec<String> = alice
        .lines()
        .into_iter()
        .filter(|l| l.contains(&format!("{sender}:")))
        .collect();
    assert_eq!(
        from_sender.len(),
        1,
        "the probe printed nothing: {from_sender:?}"
    );
}

#[test]
fn python_connect_gets_our_connect_ack_at_its_listening_port() {
    let (mut alice, mut receiver) = alice_and(67, "thread_receiver.py", &[]);
    let header = format!("{} pyrecv", receiver.address());
    py_send(&[
        "--bind",
        &receiver.ip(),
        "--to",
        &alice.address(),
        "--",
        &format!("{header} connect"),
    ]);
    alice.expect_line(&format!(
        "* connect from pyrecv {} (answering with connect_ack)",
        receiver.address()
    ));
    let ack = next_py_message(&mut receiver);
    assert_eq!(ack.text, "connect_ack");
    assert_eq!(ack.name, "alice");
    assert_eq!(ack.port, alice.port().to_string());
    assert_eq!(ack.claimed_ip, alice.ip());
    alice.expect_line(&format!("* sent to {}: connect_ack", receiver.address()));
    let row = alice
        .query_row(&receiver.address())
        .expect("the Python peer is listed");
    assert_eq!(row[1], "pyrecv", "{row:?}");
}

#[test]
fn python_exit_removes_it() {
    let mut alice = Peer::spawn("alice", &ip(68, 2), &[]);
    let sender = ip(68, 3);
    let to = alice.address();
    let send = |text: &str| {
        let wire = format!("{sender}:5555 pysend {text}");
        py_send(&["--bind", &sender, "--to", &to, "--", &wire]);
    };
    send("hello");
    alice.expect_line(&format!("[pysend {sender}:5555] hello"));
    assert!(alice.query_row(&format!("{sender}:5555")).is_some());
    send("exit");
    alice.expect_line(&format!("* pysend {sender}:5555 left (exit)"));
    let rows = alice.query();
    assert!(
        rows.iter().all(|r| r[0] != format!("{sender}:5555")),
        "gone after exit: {rows:?}"
    );
}

#[test]
fn two_hundred_back_to_back_connections_all_arrive_in_order() {
    let mut alice = Peer::spawn("alice", &ip(69, 2), &[]);
    let sender = ip(69, 3);
    let wire = format!("{sender}:5555 burst message {{i}}");
    py_send(&[
        "--count",
        "200",
        "--bind",
        &sender,
        "--to",
        &alice.address(),
        "--",
        &wire,
    ]);
    let prefix = format!("[burst {sender}:5555] message ");
    let got: Vec<String> = (0..200)
        .map(|i| {
            alice.expect(&format!("burst message {i}"), WAIT, |l| {
                l.starts_with(&prefix)
            })
        })
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("{prefix}{i}")).collect();
    if got != expected {
        let first_bad = got.iter().zip(&expected).position(|(g, e)| g != e);
        panic!(
            "{}",
            alice.report(&format!("out of order from index {first_bad:?}"))
        );
    }
    let row = alice.query_row(&format!("{sender}:5555")).expect("listed");
    assert_eq!(row[5], "200", "{row:?}");
}

#[test]
fn inline_receiver_gets_a_burst_from_us_in_order() {
    let (mut alice, mut receiver) = alice_and(70, "inline_receiver.py", &[]);
    for i in 0..30 {
        alice.send_line(&format!("/send {} line {i}", receiver.address()));
    }
    for i in 0..30 {
        assert_eq!(next_py_message(&mut receiver).text, format!("line {i}"));
    }
}

#[test]
fn control_characters_in_text_are_escaped() {
    let mut alice = Peer::spawn("alice", &ip(71, 2), &[]);
    let sender = ip(71, 3);
    let to = alice.address();
    let wire = [
        format!("{sender}:5555 team7 tab\\there, escape \\x1b[31mred\\x1b[0m, bell\\x07"),
        format!("<{sender}:5555> @ <team7>\\nline one\\nline two\\n<end>"),
    ];
    py_send(&["--bind", &sender, "--to", &to, "--", &wire[0], &wire[1]]);
    let prefix = format!("[team7 {sender}:5555] ");
    // A tab may stay a tab; every other control character must be escaped.
    for want in ["here, escape ", "line one\\nline two"] {
        let line = alice.expect(want, WAIT, |l| l.starts_with(&prefix) && l.contains(want));
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "no raw control character reaches the terminal: {line:?}"
        );
    }
}
