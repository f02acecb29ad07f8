//! The lab's other programs, one Python stand-in each (`tests/peers/README.md`), against the
//! real peerchat: each is answered in the dialect it speaks and understands what we send;
//! acknowledgements on the same socket are shown; a thread-per-connection receiver shows our
//! parts in order; a header claiming our own address never files us as a peer; a peer that
//! sends from one address and listens at another gets one row; and a mixed lab of all of them
//! with three peerchats delivers every message exactly once, in order. Blocks 127.0.200-209.

mod common;

use std::collections::HashMap;

use common::{fields, ip, unhex, Peer, LONG_WAIT, WAIT};

/// `tests/peers/SCRIPT --bind 127.0.BLOCK.HOST --name NAME EXTRA...`.
fn stand_in(script: &str, name: &str, block: u8, host: u8, extra: &[&str]) -> Peer {
    Peer::python(script, name, &ip(block, host), extra)
}

/// Waits until stand-in `p` shows the chat message `text` filed under `key`.
fn shows(p: &mut Peer, key: &str, text: &str) -> HashMap<String, String> {
    let what = format!("message {text:?} filed under {key}");
    let line = p.expect(&what, WAIT, |l| {
        let f = fields(l);
        f["event"] == "message"
            && f.get("key").map(String::as_str) == Some(key)
            && f.get("text_hex")
                .is_some_and(|h| unhex(h) == text.as_bytes())
    });
    fields(&line)
}

/// Waits until stand-in `p` reports the control word `word` filed under `key`.
fn understood(p: &mut Peer, word: &str, key: &str) {
    let what = format!("control word {word} filed under {key}");
    p.expect(&what, WAIT, |l| {
        let f = fields(l);
        f["event"] == "control"
            && f["word"] == word
            && f.get("key").map(String::as_str) == Some(key)
    });
}

/// The stand-in's complaints so far: what it could not parse, or could not send.
fn complaints(p: &mut Peer) -> Vec<String> {
    p.lines_matching(|l| l.starts_with("decode_error") || l.starts_with("send_error"))
}

/// peerchat's line for a chat message from `name` at `addr`.
fn chat(name: &str, addr: &str, text: &str) -> String {
    format!("[{name} {addr}] {text}")
}

#[test]
fn space_separated_peer_is_answered_in_its_own_form() {
    let b = 200;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut spaced = stand_in("spaced_peer.py", "spaced", b, 3, &[]);
    spaced.send_line(&format!("connect {}", alice.address()));
    spaced.send_line(&format!("send {} hello from spaced", alice.address()));
    alice.expect_line(&chat("spaced", &spaced.address(), "hello from spaced"));
    // Our connect_ack, then a message, both readable by its strict `int(port)` parser.
    understood(&mut spaced, "connect_ack", &alice.address());
    alice.send_line(&format!("/send {} hi spaced", spaced.address()));
    shows(&mut spaced, &alice.address(), "hi spaced");
    let row = alice.query_row(&spaced.address()).expect("listed");
    assert_eq!(row[4], "spaced", "its dialect in the table: {row:?}");
    assert!(complaints(&mut spaced).is_empty(), "{:?}", spaced.lines());
}

#[test]
fn bracketed_peer_files_us_under_our_listening_address() {
    let b = 201;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut br = stand_in("bracketed_peer.py", "brack", b, 3, &[]);
    br.send_line(&format!("send {} hello in brackets", alice.address()));
    alice.expect_line(&chat("brack", &br.address(), "hello in brackets"));
    alice.send_line(&format!("/send {} hi brack", br.address()));
    // Sent as a block, so it is filed under our listening address, not an ephemeral port,
    // and its answers reach us.
    shows(&mut br, &alice.address(), "hi brack");
    br.send_line(&format!("send {} got it", alice.address()));
    alice.expect_line(&chat("brack", &br.address(), "got it"));
    br.send_line("quit");
    alice.expect_line(&format!("* brack {} left (exit)", br.address()));
    assert!(complaints(&mut br).is_empty(), "{:?}", br.lines());
}

#[test]
fn port_line_peer_gets_message_received_and_every_message_through() {
    let b = 202;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut pl = stand_in("portline_peer.py", "pl", b, 3, &[]);
    pl.send_line(&format!("connect {}", alice.address()));
    for text in ["one", "two", "three"] {
        pl.send_line(&format!("send {} {text}", alice.address()));
        alice.expect_line(&chat("?", &pl.address(), text));
    }
    // It waited for our `Message received` after CONNECT and each line.
    let acks = pl.expect_many("acks", 4, WAIT, |l| {
        let f = fields(l);
        f["event"] == "ack"
            && f.get("text_hex")
                .is_some_and(|h| unhex(h) == b"Message received\n")
    });
    assert_eq!(acks.len(), 4);
    // Our messages to it open with our port line, which it requires.
    alice.send_line(&format!("/send {} hi pl", pl.address()));
    shows(&mut pl, &alice.address(), "hi pl");
    alice.expect_line(&format!(
        "* sent to {}: hi pl (it answered: Message received)",
        pl.address()
    ));
    let row = alice.query_row(&pl.address()).expect("listed");
    assert_eq!(row[4], "port-line", "{row:?}");
    assert!(complaints(&mut pl).is_empty(), "{:?}", pl.lines());
}

#[test]
fn same_socket_acknowledgement_is_shown_and_names_the_peer() {
    let b = 203;
    let mut same = stand_in("same_socket_peer.py", "samesock", b, 3, &[]);
    // Greeted at start-up: it answers `IP:PORT NAME connected` on our connection.
    let mut alice = Peer::spawn("alice", &ip(b, 2), &["-s", &same.address()]);
    alice.expect_line(&format!(
        "* sent to {0}: connect (it answered: {0} samesock connected)",
        same.address()
    ));
    understood(&mut same, "connect", &alice.address());
    let row = alice.query_row(&same.address()).expect("listed");
    assert_eq!(
        (row[1].as_str(), row[2].as_str()),
        ("samesock", "active"),
        "{row:?}"
    );
}

#[test]
fn thread_per_connection_receiver_shows_split_parts_and_quick_messages_in_order() {
    let b = 204;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut ordered = stand_in("ordered_receiver.py", "ord", b, 3, &["--jitter-ms", "30"]);
    // 3,000 bytes: split for receivers that read 1024 bytes.
    let long: String = (0..300).map(|i| format!("w{:08} ", i)).collect();
    let long = long.trim_end();
    alice.send_line(&format!("/send {} {long}", ordered.address()));
    let split = alice.expect("the split notice", WAIT, |l| l.contains(" split into "));
    let parts: usize = split
        .split(" split into ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a number of parts");
    assert!(parts >= 3, "{split}");
    let quick: Vec<String> = (0..5).map(|i| format!("quick {i}")).collect();
    for text in &quick {
        alice.send_line(&format!("/send {} {text}", ordered.address()));
    }
    let shown = ordered.expect_many("messages", parts + quick.len(), LONG_WAIT, |l| {
        l.starts_with("message ")
    });
    let texts: Vec<String> = shown
        .iter()
        .map(|l| String::from_utf8(unhex(&fields(l)["text_hex"])).expect("utf-8"))
        .collect();
    assert_eq!(texts[..parts].concat(), long, "parts in order: {texts:?}");
    assert_eq!(texts[parts..], quick[..], "messages in order");
}

#[test]
fn a_header_claiming_our_own_address_never_files_us() {
    let b = 205;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    // Bound to alice's IP, its header claims alice's exact address.
    let mut mirror = stand_in("mirror_peer.py", "mirror", b, 2, &[]);
    mirror.send_line(&format!("ping {}", alice.address()));
    mirror.send_line(&format!("send {} look at me", alice.address()));
    // Shown under the address it came from, with no port: it is not filed as a peer.
    alice.expect_line(&format!("[mirror {}:?] look at me", alice.ip()));
    let rows = alice.query();
    assert!(
        rows.iter().all(|r| r[0] != alice.address()),
        "never our own peer: {rows:?}"
    );
    alice.send_line("/all anyone?");
    alice.expect_line("! no active peers to send to");
}

#[test]
fn peer_listening_at_one_address_and_sending_from_another_gets_one_row() {
    let b = 206;
    let mut alice = Peer::spawn("alice", &ip(b, 2), &[]);
    let mut relay = stand_in(
        "relay_address_peer.py",
        "relay",
        b,
        5,
        &["--send-from", &ip(b, 6)],
    );
    let seen_at = format!("{}:{}", ip(b, 6), relay.port());
    relay.send_line(&format!("connect {}", alice.address()));
    // Our answer to its observed address is refused...
    alice.expect(&format!("refused at {seen_at}"), WAIT, |l| {
        l.starts_with(&format!("! could not send to {seen_at}"))
    });
    // ...until the user sends to the address it listens at: one row, answers go there.
    alice.send_line(&format!("/send {} hi relay", relay.address()));
    shows(&mut relay, &alice.address(), "hi relay");
    alice.expect(
        &format!("{seen_at} merged into {}", relay.address()),
        WAIT,
        |l| {
            l.contains(&format!(
                "{seen_at} sends from one address and listens at {}",
                relay.address()
            ))
        },
    );
    relay.send_line(&format!("send {} after the merge", alice.address()));
    alice.expect("the message after the merge", WAIT, |l| {
        l.ends_with("after the merge")
    });
    let rows = alice.query();
    assert_eq!(rows.len(), 1, "one row: {rows:?}");
    assert_eq!(rows[0][0], relay.address());
    assert_eq!(
        (rows[0][1].as_str(), rows[0][2].as_str()),
        ("relay", "active")
    );
}

/// A mixed lab: three peerchats and five of the lab's other programs, each speaking its own
/// dialect. Every stand-in writes two messages to every peerchat, every peerchat writes two
/// to every stand-in and to every other peerchat: each arrives exactly once, in order,
/// readable by its receiver (no stand-in fails to parse anything).
#[test]
fn mixed_lab_delivers_every_message_once_in_order_both_ways() {
    let b = 207;
    let mut pcs: Vec<Peer> = ["ann", "ben", "cat"]
        .iter()
        .zip(2..)
        .map(|(name, host)| Peer::spawn(name, &ip(b, host), &[]))
        .collect();
    let mut others = vec![
        stand_in("spaced_peer.py", "spaced", b, 5, &[]),
        stand_in("bracketed_peer.py", "brack", b, 6, &[]),
        stand_in("portline_peer.py", "pl", b, 7, &[]),
        stand_in("same_socket_peer.py", "same", b, 8, &[]),
        stand_in("ordered_receiver.py", "ord", b, 9, &[]),
    ];
    let texts = |from: &str, to: &str| [1, 2].map(|i| format!("{from} to {to} #{i}"));
    // The stand-ins speak first (the ordered receiver only listens: it is heard of by
    // being sent to, in our default dialect, which is its own).
    for o in others
        .iter_mut()
        .filter(|o| o.label != "ordered_receiver.py")
    {
        for pc in &pcs {
            for text in texts(&o.name, &pc.name) {
                o.send_line(&format!("send {} {text}", pc.address()));
            }
        }
    }
    for pc in pcs.iter_mut() {
        for o in others.iter().filter(|o| o.label != "ordered_receiver.py") {
            for text in texts(&o.name, &pc.name) {
                pc.expect(&format!("{text:?}"), LONG_WAIT, |l| l.ends_with(&text));
            }
        }
    }
    let addresses: Vec<(String, String)> =
        pcs.iter().map(|p| (p.name.clone(), p.address())).collect();
    for pc in pcs.iter_mut() {
        let me = pc.name.clone();
        for o in &others {
            for text in texts(&me, &o.name) {
                pc.send_line(&format!("/send {} {text}", o.address()));
            }
        }
        for (name, addr) in addresses.iter().filter(|(n, _)| *n != me) {
            for text in texts(&me, name) {
                pc.send_line(&format!("/send {addr} {text}"));
            }
        }
    }
    // At each stand-in: both messages from each peerchat, in order, filed under its
    // listening address.
    for o in others.iter_mut() {
        for (name, addr) in &addresses {
            let [first, second] = texts(name, &o.name);
            let a = shows(o, addr, &first);
            let b2 = shows(o, addr, &second);
            let order = |f: &HashMap<String, String>| {
                f.get("shown")
                    .or(f.get("seq"))
                    .and_then(|s| s.parse::<usize>().ok())
            };
            if o.label == "ordered_receiver.py" {
                assert!(
                    order(&a) < order(&b2),
                    "{} shows {name}'s messages in order",
                    o.name
                );
            }
        }
    }
    // At each peerchat: the other peerchats' messages, in order.
    for pc in pcs.iter_mut() {
        let me = pc.name.clone();
        for (name, _) in addresses.iter().filter(|(n, _)| *n != me) {
            let [first, second] = texts(name, &me);
            pc.expect_lines_in_order(&[first, second].map(|t| {
                let sender = addresses
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| a.clone());
                chat(name, &sender.unwrap_or_default(), &t)
            }));
        }
    }
    // Exactly once everywhere, and nothing anyone could not read.
    for pc in pcs.iter_mut() {
        pc.query(); // a round trip: everything that arrived is shown
        let lines = pc.lines();
        for line in lines.iter().filter(|l| l.starts_with('[')) {
            let n = lines.iter().filter(|m| *m == line).count();
            assert_eq!(n, 1, "{}: {line:?} shown {n} times", pc.name);
        }
        let warnings = pc.lines_matching(|l| l.starts_with('!'));
        assert!(warnings.is_empty(), "{}: {warnings:?}", pc.name);
    }
    for o in others.iter_mut() {
        let got = o.lines_matching(|l| l.starts_with("message "));
        let mut keys_texts: Vec<(String, String)> = got
            .iter()
            .map(|l| {
                let f = fields(l);
                (f["key"].clone(), f["text_hex"].clone())
            })
            .collect();
        let all = keys_texts.len();
        keys_texts.sort();
        keys_texts.dedup();
        assert_eq!(
            keys_texts.len(),
            all,
            "{}: a message shown twice: {got:?}",
            o.name
        );
        assert_eq!(all, 2 * pcs.len(), "{}: {got:?}", o.name);
        let complained = complaints(o);
        assert!(complained.is_empty(), "{}: {complained:?}", o.name);
    }
}
