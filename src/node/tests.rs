//! The node's unit tests: the protocol decisions of `Node`, one input at a time, with the
//! effects and transmissions each one asks for.

use super::*;
use crate::node::history::{Direction, Remembered};
use crate::node::outbox::MAX_WAITING;
use crate::node::peers::Status;
use crate::wire::{Dialect, Message};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn settings(persist: bool, static_peers: Vec<SocketAddr>) -> Settings {
    Settings {
        header: OwnHeader {
            name: "me".into(),
            format: crate::wire::Format::Standard,
            port: 5000,
            claim: Some("127.0.0.2".parse().expect("ip")),
        },
        history: 100,
        persist,
        static_peers,
        max_in_flight: 8,
        quit_wait: Duration::from_secs(2),
        max_peers_per_ip: crate::node::peers::MAX_PEERS_PER_IP,
        own_ips: vec!["127.0.0.2".parse().expect("ip")],
        discovery: None,
    }
}

fn node() -> Node {
    Node::new(
        settings(false, vec![addr("127.0.0.9:9000")]),
        Liveness::new(Duration::from_secs(30), 3),
        (Instant::now(), 0),
    )
}

fn msg(name: &str, port: u16, body: Body) -> Message {
    Message {
        name: Some(name.into()),
        claimed_ip: Some("127.0.1.1".parse().expect("ip")),
        port: Some(port),
        body,
        dialect: Dialect::Standard,
    }
}

/// A node started at `t0` with its static peer 127.0.0.9:9000, its greeting handed out:
/// the node, its effects so far, the static peer.
fn started_greeting_static(t0: Instant) -> (Node, Vec<Effect>, SocketAddr) {
    let mut n = node();
    let mut out = Vec::new();
    let stat = addr("127.0.0.9:9000");
    n.start(addr("127.0.0.2:5000"), t0, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
    (n, out, stat)
}

/// The user sends `text` to `dest`.
fn user_sends(n: &mut Node, dest: SocketAddr, text: String, now: Instant, out: &mut Vec<Effect>) {
    n.execute(Command::Send { dest, text }, now, out);
}

/// Every message the node hands out now (one per destination at a time).
fn sends(n: &mut Node) -> Vec<(SocketAddr, String)> {
    std::iter::from_fn(|| n.poll_transmit())
        .map(|t| (t.dest, t.text))
        .collect()
}

fn sent(list: &[(&str, &str)]) -> Vec<(SocketAddr, String)> {
    list.iter()
        .map(|(a, t)| (addr(a), (*t).to_owned()))
        .collect()
}

#[test]
fn messages_refused_before_the_outbox_are_counted_for_the_exit_status() {
    let t0 = Instant::now();
    let (mut n, mut out, _) = started_greeting_static(t0);
    // Each asks for a message that cannot go: a name nobody has, nobody to reply to,
    // no active peer, our own address, an address that is none, a `/msg` without text.
    for line in [
        "/msg nobody hi",
        "/reply hi",
        "/all hi",
        "/send 127.0.0.2:5000 me",
        "/send 127.0.0.3:0 hi",
        "/MSG bob",
    ] {
        n.on_line(line, t0, &mut out);
    }
    assert_eq!(n.refused_sends(), 6);
    // Neither commands that send nothing nor greetings count, nor a message that goes.
    for line in [
        "/peers",
        "/frob",
        "/connect nobody",
        "/history x",
        "1",
        "",
        "/send 127.0.0.3:5000 hi",
    ] {
        n.on_line(line, t0, &mut out);
    }
    assert_eq!(n.refused_sends(), 6);
    // While quitting, a message is refused too.
    n.quit(t0, &mut out);
    n.execute(
        Command::Msg {
            to: Target::Name("x".into()),
            text: "late".into(),
        },
        t0,
        &mut out,
    );
    assert_eq!(n.refused_sends(), 7);
}

#[test]
fn a_conversation_names_the_peer_and_its_address_once() {
    let t0 = Instant::now();
    let (mut n, mut out, _) = started_greeting_static(t0);
    n.on_message(
        "127.0.0.3".parse().expect("ip"),
        msg("bob", 5000, Body::Chat("hi".into())),
        t0,
        &mut out,
    );
    for (line, said) in [
        (
            "/query bob",
            "talking to bob (127.0.0.3:5000): plain lines go there; /query alone ends it",
        ),
        (
            "/query 127.0.0.4:6000",
            "talking to 127.0.0.4:6000: plain lines go there; /query alone ends it",
        ),
    ] {
        out.clear();
        n.on_line(line, t0, &mut out);
        assert!(
            matches!(&shown(&out)[..], [Event::Info(i)] if i == said),
            "{line}: {out:?}"
        );
    }
    assert_eq!(n.prompt(), "127.0.0.4:6000> ");
}

#[test]
fn start_announces_and_greets_static_peers() {
    let mut n = node();
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), Instant::now(), &mut out);
    assert!(matches!(out[0], Effect::Show(Event::Listening { .. })));
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
    assert_eq!(
        n.peers().get(addr("127.0.0.9:9000")).map(|p| p.status),
        Some(Status::Static)
    );
}

/// A run of lines is a message per line for the peer table as for the history: its
/// count of messages received is the one the same lines one by one would give.
#[test]
fn a_run_of_lines_counts_a_message_per_line_in_the_peer_table() {
    let observed: IpAddr = "127.0.0.3".parse().expect("ip");
    let now = Instant::now();
    let count = |bodies: Vec<Body>| {
        let (mut n, mut out) = (node(), Vec::new());
        for body in bodies {
            n.on_message(observed, msg("bob", 6000, body), now, &mut out);
        }
        let rows = n.peers().rows(now);
        rows.iter().map(|r| r.messages).sum::<u64>()
    };
    let one_by_one = ["hi", "a", "b", "c"].map(|t| Body::Chat(t.into()));
    let grouped = vec![Body::Chat("hi".into()), Body::Lines("a\nb\nc".into())];
    assert_eq!(count(one_by_one.to_vec()), 4);
    assert_eq!(count(grouped), 4);
}

/// A peer seen at an IPv4-mapped IPv6 address (a dual-stack socket's view) is filed at
/// its IPv4 address, one row whichever form it comes in: the node makes the IP canonical
/// once as a message comes, and the table takes it as it is.
#[test]
fn a_peer_at_a_mapped_address_is_one_row_at_its_ipv4_address() {
    let (mut n, mut out) = (node(), Vec::new());
    let now = Instant::now();
    let mapped: IpAddr = "::ffff:127.0.0.3".parse().expect("ip");
    let plain: IpAddr = "127.0.0.3".parse().expect("ip");
    for (observed, text) in [(mapped, "one"), (plain, "two"), (mapped, "three")] {
        let said = Message {
            claimed_ip: Some(mapped),
            ..msg("bob", 6000, Body::Chat(text.into()))
        };
        n.on_message(observed, said, now, &mut out);
    }
    let rows = n.peers().rows(now);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].addr, addr("127.0.0.3:6000"));
    assert_eq!((rows[0].messages, rows[0].claimed_ip), (3, None));
    let joined = out
        .iter()
        .filter(|e| matches!(e, Effect::Show(Event::PeerJoined { .. })));
    assert_eq!(joined.count(), 1);
    let shown: Vec<&Sender> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Show(Event::Message { from, .. }) => Some(from),
            _ => None,
        })
        .collect();
    assert_eq!(shown.len(), 3);
    for from in shown {
        assert_eq!(
            (from.ip, from.port, from.claimed_ip),
            (plain, Some(6000), None)
        );
    }
}

#[test]
fn connect_is_answered_with_connect_ack_at_the_observed_ip() {
    let mut n = node();
    let mut out = Vec::new();
    let observed: IpAddr = "127.0.0.3".parse().expect("ip");
    n.on_message(
        observed,
        msg("bob", 6000, Body::Connect),
        Instant::now(),
        &mut out,
    );
    assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "connect_ack")]));
    assert!(n.peers().get(addr("127.0.0.3:6000")).is_some());
}

#[test]
fn each_peer_is_answered_in_the_dialect_it_last_spoke() {
    let mut n = node();
    let mut out = Vec::new();
    let now = Instant::now();
    let spoke = |d| Message {
        dialect: d,
        ..msg("bob", 6000, Body::Connect)
    };
    let (spaced, colon) = (
        "127.0.0.3".parse().expect("ip"),
        "127.0.0.4".parse().expect("ip"),
    );
    n.on_message(spaced, spoke(Dialect::Spaced), now, &mut out);
    n.on_message(colon, spoke(Dialect::Colon), now, &mut out);
    // Raw text names no dialect: the peer keeps the one it was heard in.
    let raw = Message {
        body: Body::Chat("hi".into()),
        ..spoke(Dialect::Raw)
    };
    n.on_message(colon, raw, now, &mut out);
    user_sends(
        &mut n,
        addr("127.0.0.5:7000"),
        "never heard".into(),
        now,
        &mut out,
    );
    let mut got: Vec<_> = std::iter::from_fn(|| n.poll_transmit())
        .map(|t| (t.dest, t.dialect))
        .collect();
    got.sort_by_key(|(dest, _)| *dest);
    assert_eq!(
        got,
        vec![
            (addr("127.0.0.3:6000"), Dialect::Spaced),
            (addr("127.0.0.4:6000"), Dialect::Colon),
            (addr("127.0.0.5:7000"), Dialect::Standard),
        ]
    );
    let rows = n.peers().rows(now);
    assert_eq!(rows[0].dialect, Some(Dialect::Spaced));
    assert_eq!(rows[2].dialect, None, "never heard: our default");
}

/// A peer that listens at 127.0.0.5:6000 but sends from 127.0.0.6 (claiming .5): its
/// observed address refuses; once a message of ours reached .5:6000 the rows merge
/// and answers go there, whichever happens first. A claimed IP alone is never sent to.
#[test]
fn a_peer_sending_from_another_address_gets_one_row_and_answers_that_arrive() {
    for typed_first in [true, false] {
        let mut n = node();
        let mut out = Vec::new();
        let now = Instant::now();
        let (sending, listening) = (addr("127.0.0.6:6000"), addr("127.0.0.5:6000"));
        let said = |body| Message {
            claimed_ip: Some(listening.ip()),
            ..msg("relay", 6000, body)
        };
        // Types a message to .5, delivered; returns what else was handed out.
        let type_send = |n: &mut Node, out: &mut Vec<Effect>| {
            let text = "hello".to_owned();
            n.execute(
                Command::Send {
                    dest: listening,
                    text,
                },
                now,
                out,
            );
            let mut all = sends(n);
            let hello = (listening, "hello".to_owned());
            assert!(all.contains(&hello), "{all:?}");
            all.retain(|m| *m != hello);
            n.on_sent(listening, None, now, out);
            all
        };
        n.on_message(sending.ip(), said(Body::Connect), now, &mut out);
        let others = match typed_first {
            true => type_send(&mut n, &mut out),
            false => sends(&mut n),
        };
        // Our answer goes to the observed address, never to the unconfirmed claim.
        assert_eq!(others, sent(&[("127.0.0.6:6000", "connect_ack")]));
        n.on_send_failed(sending, "refused".into(), &mut out);
        if !typed_first {
            assert_eq!(
                n.peers().len(),
                1,
                "not merged before anything confirmed .5"
            );
            assert!(type_send(&mut n, &mut out).is_empty());
        } else {
            // Merged at the failure: the answer goes where the peer listens.
            assert_eq!(sends(&mut n), sent(&[("127.0.0.5:6000", "connect_ack")]));
        }
        let rows = n.peers().rows(now);
        assert_eq!(rows.len(), 1, "one row: {rows:?}");
        assert_eq!(rows[0].addr, listening);
        assert_eq!(rows[0].name.as_deref(), Some("relay"));
        assert_eq!(rows[0].status, Status::Active);
        // What it says from its sending address is filed under its listening one.
        n.on_message(sending.ip(), said(Body::Connect), now, &mut out);
        let answers = sends(&mut n);
        assert!(
            answers.iter().all(|(dest, _)| *dest == listening),
            "{answers:?}"
        );
        // Its exit through the alias is not proof enough: the row stays (until the
        // peer stops answering), and only the alias goes.
        n.on_message(sending.ip(), said(Body::Exit), now, &mut out);
        assert_eq!(n.peers().len(), 1);
        assert!(n.peers().get(listening).is_some());
    }
}

/// Merging trusts the claimed IP, so any host whose own claimed port refuses can claim
/// the IP of a peer we reached and be filed under it; but what comes through such an
/// alias cannot rename that peer, and its `exit` drops only the alias.
#[test]
fn a_stranger_claiming_a_reached_peer_cannot_remove_or_rename_it() {
    let mut n = node();
    let mut out = Vec::new();
    let now = Instant::now();
    let victim = addr("127.0.0.5:6000");
    user_sends(&mut n, victim, "hi bob".into(), now, &mut out);
    let _ = sends(&mut n);
    n.on_sent(victim, None, now, &mut out);
    // A stranger at .66 claims .5 and port 6000, where nothing listens at .66.
    let said = |body| Message {
        claimed_ip: Some(victim.ip()),
        ..msg("mallory", 6000, body)
    };
    let stranger: IpAddr = "127.0.0.66".parse().expect("ip");
    n.on_message(stranger, said(Body::Connect), now, &mut out);
    let _ = sends(&mut n);
    n.on_send_failed(addr("127.0.0.66:6000"), "refused".into(), &mut out);
    // (Merging took the name it had then, as for any peer merged.) A later name
    // through the alias does not rename the row.
    let renamed = Message {
        name: Some("eve".into()),
        ..said(Body::Chat("hi".into()))
    };
    n.on_message(stranger, renamed, now, &mut out);
    let name = n.peers().get(victim).and_then(|p| p.name.clone());
    assert_ne!(name.as_deref(), Some("eve"), "not renamed");
    n.on_message(stranger, said(Body::Exit), now, &mut out);
    assert!(
        n.peers().get(victim).is_some(),
        "bob was removed by a stranger"
    );
    // The alias is gone: the stranger is a stranger again.
    n.on_message(stranger, said(Body::Chat("again".into())), now, &mut out);
    assert!(n.peers().get(addr("127.0.0.66:6000")).is_some());
}

/// The notice at a `connect` says the answer is on its way; what became of it is told
/// once the send ends: sent, or failed with the reason, never both.
#[test]
fn connect_notices_tell_the_truth_in_order() {
    for delivered in [true, false] {
        let mut n = node();
        let mut out = Vec::new();
        let now = Instant::now();
        let observed: IpAddr = "127.0.0.3".parse().expect("ip");
        n.on_message(observed, msg("bob", 6000, Body::Connect), now, &mut out);
        let bob = addr("127.0.0.3:6000");
        assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "connect_ack")]));
        match delivered {
            true => n.on_sent(bob, None, now, &mut out),
            false => n.on_send_failed(bob, "refused".into(), &mut out),
        }
        let shown: Vec<&Event> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Show(e @ (Event::ConnectFrom { .. } | Event::Sent { .. })) => Some(e),
                Effect::Show(e @ Event::SendFailed { .. }) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(matches!(
            shown[0],
            Event::ConnectFrom {
                answering: true,
                ..
            }
        ));
        match delivered {
            true => {
                assert!(matches!(shown[1], Event::Sent { text, .. } if text == "connect_ack"))
            }
            false => {
                assert!(matches!(shown[1], Event::SendFailed { text, .. } if text == "connect_ack"))
            }
        }
    }
}

#[test]
fn names_are_resolved_for_msg_query_reply_connect_and_tab() {
    let mut n = node();
    let mut out = Vec::new();
    let now = Instant::now();
    let (bob, bobby) = (
        "127.0.0.3".parse().expect("ip"),
        "127.0.0.4".parse().expect("ip"),
    );
    n.on_message(
        bob,
        msg("bob", 6000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    n.on_message(
        bobby,
        msg("bobby", 6000, Body::Chat("yo".into())),
        now,
        &mut out,
    );
    let hints = |n: &mut Node, line: &str| {
        let mut out = Vec::new();
        n.on_line(line, now, &mut out);
        out.into_iter()
            .filter_map(|e| match e {
                Effect::Show(Event::Hint(h)) => Some(h),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(hints(&mut n, "/msg BOB hello").is_empty(), "any case");
    assert!(hints(&mut n, "/reply back").is_empty());
    assert!(hints(&mut n, "/connect bobby").is_empty());
    assert_eq!(
        sends(&mut n),
        sent(&[("127.0.0.3:6000", "hello"), ("127.0.0.4:6000", "back")])
    );
    n.on_sent(addr("127.0.0.4:6000"), None, now, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.4:6000", "connect")]));
    let nobody = hints(&mut n, "/msg carol hi");
    assert!(nobody[0].contains("no peer called \"carol\""), "{nobody:?}");
    assert!(hints(&mut n, "/query bob").is_empty());
    assert_eq!(n.prompt(), "bob> ");
    assert!(
        hints(&mut n, "2").is_empty(),
        "a digit is a message in a conversation"
    );
    n.on_sent(addr("127.0.0.3:6000"), None, now, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "2")]));
    assert!(hints(&mut n, "/query").is_empty());
    assert_eq!(n.prompt(), "> ");
    // Two peers called alike in different case: the exact name wins; else a list.
    n.on_message(
        bobby,
        msg("Bob", 6001, Body::Chat("x".into())),
        now,
        &mut out,
    );
    assert!(hints(&mut n, "/msg bob exact").is_empty());
    let several = hints(&mut n, "/msg BOB which");
    assert!(several[0].starts_with("2 peers are called"), "{several:?}");
    assert_eq!(n.completions("/q", true), ["/query", "/quit"]);
    assert_eq!(n.completions("bo", false), ["bob", "bobby"]);
    assert_eq!(
        n.completions("127.0.0.4", false),
        ["127.0.0.4:6000", "127.0.0.4:6001"]
    );
}

/// More matches than Tab offers: the candidates kept still share only what all the
/// matches share, so Tab never extends the word past another peer's name.
#[test]
fn tab_never_completes_past_a_name_it_left_out() {
    let mut n = node();
    let mut out = Vec::new();
    let now = Instant::now();
    let names = (0..MAX_COMPLETIONS).map(|i| format!("ax{i:02}"));
    for (i, name) in names.chain(["ay".to_owned()]).enumerate() {
        let ip: IpAddr = format!("127.0.3.{}", i + 1).parse().expect("ip");
        n.on_message(ip, msg(&name, 6000, Body::Chat("hi".into())), now, &mut out);
    }
    let found = n.completions("a", false);
    assert!(found.len() <= MAX_COMPLETIONS, "{}", found.len());
    let shared = found.iter().fold(found[0].as_str(), |acc, c| {
        let same = acc.bytes().zip(c.bytes()).take_while(|(a, b)| a == b);
        &acc[..same.count()]
    });
    assert_eq!(shared, "a", "{found:?}");
}

#[test]
fn quit_says_what_it_waits_for_when_it_takes_a_moment() {
    let mut out = Vec::new();
    let t0 = Instant::now();
    // A node that heard bob, quitting: its `exit` to bob handed out.
    let quitting = |out: &mut Vec<Effect>| {
        let mut n = node();
        let observed: IpAddr = "127.0.0.3".parse().expect("ip");
        let hi = msg("bob", 6000, Body::Chat("hi".into()));
        n.on_message(observed, hi, t0, out);
        n.quit(t0, out);
        assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "exit")]));
        n
    };
    let mut n = quitting(&mut out);
    assert_eq!(n.poll_timeout(), Some(t0 + QUIT_NOTICE_AFTER));
    let mut later = Vec::new();
    n.on_timeout(t0 + QUIT_NOTICE_AFTER, &mut later);
    assert!(
        matches!(&later[..], [Effect::Show(Event::Info(s))] if s == "telling 1 peer you left; Ctrl-C to stop waiting"),
        "{later:?}"
    );
    assert_eq!(
        n.poll_timeout(),
        Some(t0 + Duration::from_secs(2)),
        "then the deadline"
    );
    // A message typed just before quitting still on its way: not an `exit`.
    let mut n = node();
    n.on_line("/send 127.0.0.4:6000 last words", t0, &mut out);
    n.quit(t0, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.4:6000", "last words")]));
    let mut later = Vec::new();
    n.on_timeout(t0 + QUIT_NOTICE_AFTER, &mut later);
    assert!(
        matches!(&later[..], [Effect::Show(Event::Info(s))] if s == "still sending to 1 peer before leaving; Ctrl-C to stop waiting"),
        "{later:?}"
    );
    // Done before the notice: nothing said.
    let mut n = quitting(&mut out);
    n.on_sent(addr("127.0.0.3:6000"), None, t0, &mut out);
    assert!(n.is_finished());
    assert_eq!(n.poll_timeout(), None);
}

#[test]
fn listening_on_every_address_says_which_ones_others_can_type() {
    let mut me = settings(false, vec![]);
    me.own_ips = ["127.0.0.1", "198.51.100.7"]
        .map(|ip| ip.parse().expect("ip"))
        .to_vec();
    let mut n = Node::new(me, Liveness::new(Duration::ZERO, 3), (Instant::now(), 0));
    let mut out = Vec::new();
    n.start(addr("0.0.0.0:5000"), Instant::now(), &mut out);
    assert!(
        out.contains(&Effect::Show(Event::Info(
            "others reach you at 198.51.100.7:5000".into()
        ))),
        "{out:?}"
    );
    let mut bound = node();
    out.clear();
    bound.start(addr("127.0.0.2:5000"), Instant::now(), &mut out);
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::Show(Event::Info(_)))),
        "{out:?}"
    );
}

#[test]
fn connect_ack_is_never_answered() {
    let mut n = node();
    let mut out = Vec::new();
    let observed: IpAddr = "127.0.0.3".parse().expect("ip");
    n.on_message(
        observed,
        msg("bob", 6000, Body::ConnectAck),
        Instant::now(),
        &mut out,
    );
    assert!(sends(&mut n).is_empty());
    assert_eq!(n.peers().active(), vec![addr("127.0.0.3:6000")]);
}

#[test]
fn exit_removes_the_sender() {
    let mut n = node();
    let mut out = Vec::new();
    let observed: IpAddr = "127.0.0.3".parse().expect("ip");
    let now = Instant::now();
    n.on_message(
        observed,
        msg("bob", 6000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    n.on_message(observed, msg("bob", 6000, Body::Exit), now, &mut out);
    assert!(n.peers().is_empty());
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::Show(Event::PeerLeft { .. }))));
}

#[test]
fn quit_tells_every_active_peer_exit_once() {
    let mut n = node();
    let mut out = Vec::new();
    let now = Instant::now();
    n.on_message(
        "127.0.0.3".parse().expect("ip"),
        msg("b", 6000, Body::Chat("x".into())),
        now,
        &mut out,
    );
    n.on_message(
        "127.0.0.4".parse().expect("ip"),
        msg("c", 6000, Body::Chat("y".into())),
        now,
        &mut out,
    );
    out.clear();
    n.on_line("/quit", now, &mut out);
    n.on_line("0", now, &mut out);
    assert_eq!(
        sends(&mut n),
        sent(&[("127.0.0.3:6000", "exit"), ("127.0.0.4:6000", "exit")])
    );
    assert_eq!(out.last(), Some(&Effect::Quitting));
    assert_eq!(out.iter().filter(|e| **e == Effect::Quitting).count(), 1);
}

#[test]
fn a_peer_reached_while_quitting_is_told_exit_after_the_message() {
    let mut n = node();
    let mut out = Vec::new();
    let now = Instant::now();
    let dest = addr("127.0.0.5:7000");
    n.on_line("/send 127.0.0.5:7000 build finished", now, &mut out);
    n.on_line("/quit", now, &mut out);
    assert_eq!(
        sends(&mut n),
        sent(&[("127.0.0.5:7000", "build finished")]),
        "not active yet"
    );
    out.clear();
    n.on_sent(dest, None, now, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.5:7000", "exit")]));
    assert!(!n.is_finished(), "the exit is in flight");
    out.clear();
    n.on_sent(dest, None, now, &mut out);
    assert!(sends(&mut n).is_empty(), "exit is said once");
    assert!(n.is_finished());
}

/// Two active peers, then quit: the node hands out their `exit` messages.
fn quitting_with_two_peers(now: Instant) -> (Node, Vec<Effect>) {
    let mut n = node();
    let mut out = Vec::new();
    for (ip, port) in [("127.0.0.3", 6000), ("127.0.0.4", 6001)] {
        let from = msg("p", port, Body::ConnectAck);
        n.on_message(ip.parse().expect("ip"), from, now, &mut out);
    }
    n.quit(now, &mut out);
    (n, out)
}

#[test]
fn quit_waits_for_the_exit_messages() {
    let now = Instant::now();
    let (mut n, mut out) = quitting_with_two_peers(now);
    let exits = sends(&mut n);
    assert_eq!(exits.len(), 2);
    assert!(n.is_quitting() && !n.is_finished(), "both exits in flight");
    assert_eq!(
        n.poll_timeout(),
        Some(now + QUIT_NOTICE_AFTER),
        "first the notice"
    );
    n.on_timeout(now + QUIT_NOTICE_AFTER, &mut out);
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(2)));
    n.on_sent(exits[0].0, None, now, &mut out);
    assert!(!n.is_finished(), "one exit still in flight");
    n.on_send_failed(exits[1].0, "refused".into(), &mut out);
    assert!(n.is_finished(), "every exit sent or failed");
    assert_eq!(n.poll_timeout(), None, "nothing left to wake up for");
}

#[test]
fn quit_gives_up_at_its_deadline_and_not_before() {
    let now = Instant::now();
    let (mut n, mut out) = quitting_with_two_peers(now);
    let exits = sends(&mut n);
    n.on_timeout(now + QUIT_NOTICE_AFTER, &mut out);
    let deadline = n.poll_timeout().expect("a quit deadline");
    out.clear();
    n.on_timeout(deadline - Duration::from_millis(1), &mut out);
    assert!(out.is_empty() && !n.is_finished(), "too early to give up");
    n.on_timeout(deadline, &mut out);
    assert!(n.is_finished());
    let failed: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Show(Event::SendFailed { dest, text, reason }) => {
                Some((*dest, text.as_str(), reason.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{out:?}");
    assert!(failed
        .iter()
        .all(|(_, text, reason)| *text == "exit" && *reason == "still not sent when quitting"));
    out.clear();
    n.on_sent(exits[0].0, None, now, &mut out);
    assert!(
        out.is_empty(),
        "a late report of a given-up message is ignored"
    );
}

#[test]
fn a_second_interrupt_stops_waiting() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    n.on_message(
        "127.0.0.3".parse().expect("ip"),
        msg("b", 6000, Body::ConnectAck),
        now,
        &mut out,
    );
    n.interrupt(now, &mut out);
    assert!(n.is_quitting() && !n.is_finished());
    n.interrupt(now, &mut out);
    assert!(n.is_finished());
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Show(Event::SendFailed { reason, .. }) if reason == "quit was interrupted"
    )));
}

#[test]
fn a_full_queue_refuses_with_a_reason() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let dest = addr("127.0.0.5:7000");
    for i in 0..MAX_WAITING {
        user_sends(&mut n, dest, format!("m{i}"), now, &mut out);
    }
    assert!(!out
        .iter()
        .any(|e| matches!(e, Effect::Show(Event::SendFailed { .. }))));
    user_sends(&mut n, dest, "one more".into(), now, &mut out);
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Show(Event::SendFailed { text, .. }) if text == "one more"
    )));
}

#[test]
fn failed_send_marks_unreachable_and_excludes_from_all() {
    let mut n = node();
    let mut out = Vec::new();
    let now = Instant::now();
    n.on_line("/send 127.0.0.5:7000 hello", now, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.5:7000", "hello")]));
    n.on_send_failed(addr("127.0.0.5:7000"), "refused".into(), &mut out);
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Show(Event::SendFailed { text, reason, .. }) if text == "hello" && reason == "refused"
    )));
    out.clear();
    n.on_line("/all anyone?", now, &mut out);
    assert!(sends(&mut n).is_empty());
    assert!(matches!(out[0], Effect::Show(Event::Warning(_))));
}

#[test]
fn failed_checks_mark_unreachable_then_remove_and_an_answer_brings_back() {
    let mut n = Node::new(
        settings(true, Vec::new()),
        Liveness::new(Duration::from_secs(1), 1),
        (Instant::now(), 0),
    );
    let mut out = Vec::new();
    let mut now = Instant::now();
    let bob: IpAddr = "127.0.0.3".parse().expect("ip");
    n.on_message(
        bob,
        msg("bob", 6000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    let a = addr("127.0.0.3:6000");
    let shows = |out: &[Effect]| -> Vec<Event> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Show(ev) => Some(ev.clone()),
                _ => None,
            })
            .collect()
    };
    now += Duration::from_secs(2);
    out.clear();
    n.on_timeout(now, &mut out);
    assert_eq!(out, vec![Effect::Check(a)]);
    out.clear();
    n.on_check(a, false, now, &mut out);
    assert!(matches!(
        shows(&out)[..],
        [Event::PeerUnreachable { failures: 1, .. }]
    ));
    assert!(n.peers().active().is_empty());
    now += Duration::from_secs(3);
    out.clear();
    n.on_timeout(now, &mut out);
    n.on_check(a, true, now, &mut out);
    assert!(matches!(shows(&out)[..], [Event::PeerBack { .. }]));
    assert_eq!(n.peers().active(), vec![a]);
    for _ in 0..20 {
        now += Duration::from_secs(10);
        out.clear();
        n.on_timeout(now, &mut out);
        if out.contains(&Effect::Check(a)) {
            n.on_check(a, false, now, &mut out);
        }
        if n.peers().is_empty() {
            break;
        }
    }
    assert!(n.peers().is_empty());
    assert!(shows(&out).iter().any(|e| matches!(
        e,
        Event::PeerLeft {
            reason: LeaveReason::Unreachable,
            ..
        }
    )));
    assert!(out.contains(&Effect::Persist(Record::Gone { addr: a })));
}

#[test]
fn raw_text_without_port_is_shown_but_not_tabled() {
    let mut n = node();
    let mut out = Vec::new();
    let raw = Message {
        name: None,
        claimed_ip: None,
        port: None,
        body: Body::Chat("hello".into()),
        dialect: Dialect::Raw,
    };
    n.on_message(
        "127.0.0.3".parse().expect("ip"),
        raw,
        Instant::now(),
        &mut out,
    );
    assert!(n.peers().is_empty());
    assert!(matches!(out[0], Effect::Show(Event::Message { .. })));
}

fn shown(out: &[Effect]) -> Vec<&Event> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Show(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

fn persisted(out: &[Effect]) -> Vec<&Record> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Persist(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn persisting_node(epoch: (Instant, i64)) -> Node {
    let liveness = Liveness::new(Duration::from_secs(30), 3);
    Node::new(
        settings(true, vec![addr("127.0.0.9:9000")]),
        liveness,
        epoch,
    )
}

#[test]
fn a_fresh_node_is_not_quitting_and_the_prompt_follows_the_menu_dialogue() {
    let mut n = node();
    let mut out = Vec::new();
    assert!(!n.is_quitting() && !n.is_finished());
    let idle = n.prompt().to_owned();
    assert_eq!(idle, CommandParser::new().prompt());
    assert!(!idle.is_empty());
    n.on_line("1", Instant::now(), &mut out);
    assert_ne!(n.prompt(), idle, "the menu now asks for an IP");
}

#[test]
fn restore_brings_back_peers_as_remembered_and_the_history_and_greets_when_asked() {
    let now = Instant::now();
    let bob = addr("127.0.0.3:6000");
    let entry = Entry {
        millis: 42,
        direction: Direction::In,
        addr: Some(bob),
        name: Some("bob".into()),
        text: "from last time".into(),
    };
    let replayed = || Replayed {
        peers: [(
            bob,
            Remembered {
                name: Some("bob".to_owned()),
                dialect: None,
            },
        )]
        .into_iter()
        .collect(),
        messages: vec![entry.clone()],
        skipped: 0,
        torn_tail: false,
        unterminated: false,
        good_len: 0,
        records: 2,
    };
    let mut out = Vec::new();
    let mut quiet = node();
    quiet.restore(replayed(), false, now, &mut out);
    let peer = quiet.peers().get(bob).expect("bob is back");
    assert_eq!(peer.status, Status::Remembered);
    assert_eq!(peer.name.as_deref(), Some("bob"));
    assert!(sends(&mut quiet).is_empty(), "not greeted unless asked");
    assert!(
        quiet.peers().active().is_empty(),
        "remembered is not active"
    );
    quiet.on_line("/history", now, &mut out);
    assert_eq!(
        shown(&out).last(),
        Some(&&Event::History(vec![entry.clone()]))
    );
    let mut greeting = node();
    greeting.restore(replayed(), true, now, &mut out);
    assert_eq!(sends(&mut greeting), sent(&[("127.0.0.3:6000", "connect")]));
}

#[test]
fn snapshot_holds_known_peers_static_ones_too_and_the_history() {
    let now = Instant::now();
    let mut n = persisting_node((now, 0));
    let mut out = Vec::new();
    n.start(addr("127.0.0.2:5000"), now, &mut out);
    let bob = addr("127.0.0.3:6000");
    n.on_message(
        bob.ip(),
        msg("bob", 6000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    // A new name for a known peer is remembered.
    out.clear();
    n.on_message(
        bob.ip(),
        msg("robert", 6000, Body::Chat("it's me".into())),
        now,
        &mut out,
    );
    let renamed = Record::Peer {
        addr: bob,
        name: Some("robert".into()),
        dialect: Some(Dialect::Standard),
    };
    assert!(out.contains(&Effect::Persist(renamed.clone())), "{out:?}");
    let snapshot = n.snapshot();
    assert_eq!(snapshot.len(), 4, "{snapshot:?}");
    assert_eq!(snapshot[0], renamed);
    let stat = Record::Peer {
        addr: addr("127.0.0.9:9000"),
        name: None,
        dialect: None,
    };
    assert_eq!(snapshot[1], stat, "the static peer is remembered too");
    assert!(matches!(&snapshot[2], Record::Message(e) if e.text == "hi"));
}

/// The journal's bytes for `records`, as the journal writes them.
fn journal_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for r in records {
        r.write_line(&mut bytes);
    }
    bytes
}

/// The dialect `dest` is handed out in, for a message typed to it now.
fn typed_in(n: &mut Node, dest: SocketAddr, now: Instant) -> Vec<(String, Dialect)> {
    let mut out = Vec::new();
    let text = "hello again".to_owned();
    n.execute(Command::Send { dest, text }, now, &mut out);
    std::iter::from_fn(|| n.poll_transmit())
        .map(|t| (t.text, t.dialect))
        .collect()
}

/// A peer's dialect goes to the journal when it is first heard and again only when it
/// changes (not per message; raw text names none), and a node restarted on that journal,
/// or on a snapshot of it, answers the peer in it, greets it in it, and lists it.
#[test]
fn a_peers_dialect_is_remembered_when_it_changes_and_answered_in_after_a_restart() {
    let now = Instant::now();
    let mut n = persisting_node((now, 0));
    let mut out = Vec::new();
    let dave: IpAddr = "127.0.0.3".parse().expect("ip");
    let at = addr("127.0.0.3:7002");
    let said = |d, text: &str| Message {
        dialect: d,
        ..msg("dave", 7002, Body::Chat(text.into()))
    };
    let mut journal = Vec::new();
    let mut peer_records = Vec::new();
    for (d, text) in [
        (Dialect::Standard, "one"),
        (Dialect::Standard, "two"),
        (Dialect::Spaced, "three"),
        (Dialect::Spaced, "four"),
        (Dialect::Raw, "five"),
    ] {
        out.clear();
        n.on_message(dave, said(d, text), now, &mut out);
        let records = persisted(&out);
        journal.extend(journal_of(records.iter().copied()));
        peer_records.push(
            records
                .iter()
                .filter(|r| matches!(r, Record::Peer { .. }))
                .count(),
        );
    }
    assert_eq!(
        peer_records,
        [1, 0, 1, 0, 0],
        "first heard, then changes only"
    );
    assert_eq!(
        n.peers().get(at).and_then(|p| p.dialect),
        Some(Dialect::Spaced)
    );
    let snapshot = journal_of(&n.snapshot());
    for (what, bytes) in [("journal", journal), ("snapshot", snapshot)] {
        let replayed = crate::node::history::replay(&bytes, 100);
        assert_eq!(
            replayed.peers[&at],
            Remembered {
                name: Some("dave".into()),
                dialect: Some(Dialect::Spaced)
            },
            "{what}"
        );
        let mut again = persisting_node((now, 0));
        again.restore(replayed, false, now, &mut out);
        let rows = again.peers().rows(now);
        assert_eq!(
            (rows[0].addr, rows[0].status, rows[0].dialect),
            (at, Status::Remembered, Some(Dialect::Spaced)),
            "{what}"
        );
        assert_eq!(
            typed_in(&mut again, at, now),
            [("hello again".to_owned(), Dialect::Spaced)],
            "{what}"
        );
        let mut greeting = persisting_node((now, 0));
        let replayed = crate::node::history::replay(&bytes, 100);
        greeting.restore(replayed, true, now, &mut out);
        let greeted: Vec<_> = std::iter::from_fn(|| greeting.poll_transmit())
            .map(|t| (t.dest, t.text, t.dialect))
            .collect();
        assert_eq!(
            greeted,
            [(at, "connect".to_owned(), Dialect::Spaced)],
            "{what}"
        );
    }
}

/// A journal of the previous version (peer records without a dialect) still loads: the
/// peers come back with their names, answered in our default until heard again.
#[test]
fn a_journal_without_dialects_loads_with_the_dialects_unknown() {
    let now = Instant::now();
    let old = concat!(
        "{\"k\":\"peer\",\"addr\":\"127.0.0.3:7002\",\"name\":\"dave\"}\n",
        "{\"k\":\"msg\",\"ts\":5,\"dir\":\"in\",\"addr\":\"127.0.0.3:7002\",",
        "\"name\":\"dave\",\"text\":\"hi\"}\n",
    );
    let replayed = crate::node::history::replay(old.as_bytes(), 100);
    assert_eq!((replayed.skipped, replayed.torn_tail), (0, false));
    let mut n = persisting_node((now, 0));
    let mut out = Vec::new();
    n.restore(replayed, false, now, &mut out);
    let at = addr("127.0.0.3:7002");
    let peer = n.peers().get(at).expect("dave is back");
    assert_eq!((peer.name.as_deref(), peer.dialect), (Some("dave"), None));
    assert_eq!(
        typed_in(&mut n, at, now),
        [("hello again".to_owned(), Dialect::Standard)]
    );
}

/// Rows merged into the address a peer listens at: the dialect (and name) the merged
/// row brought is remembered with the row that stays.
#[test]
fn a_merge_remembers_what_the_row_that_stays_took_in() {
    let now = Instant::now();
    let mut n = persisting_node((now, 0));
    let mut out = Vec::new();
    let (sending, listening) = (addr("127.0.0.6:6000"), addr("127.0.0.5:6000"));
    // We reach .5 first: a row of our own, no name, no dialect.
    user_sends(&mut n, listening, "hello".into(), now, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.5:6000", "hello")]));
    n.on_sent(listening, None, now, &mut out);
    // It speaks spaced from .6, claiming .5; .6 refuses our answer: one row.
    let said = Message {
        claimed_ip: Some(listening.ip()),
        dialect: Dialect::Spaced,
        ..msg("relay", 6000, Body::Connect)
    };
    n.on_message(sending.ip(), said, now, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.6:6000", "connect_ack")]));
    out.clear();
    n.on_send_failed(sending, "refused".into(), &mut out);
    assert_eq!(n.peers().len(), 1);
    let records = persisted(&out);
    assert_eq!(
        records,
        [
            &Record::Gone { addr: sending },
            &Record::Peer {
                addr: listening,
                name: Some("relay".into()),
                dialect: Some(Dialect::Spaced),
            }
        ]
    );
}

/// A static peer given at the address it sends from, which refuses us, merged into the
/// address it listens at once a message reaches that one: the row that stays is static,
/// as the user asked (it was an ordinary row, to be dropped when it stopped answering).
#[test]
fn a_static_peer_merged_into_where_it_listens_stays_static() {
    let t0 = Instant::now();
    let (mut n, mut out, stat) = started_greeting_static(t0);
    n.on_send_failed(stat, "refused".into(), &mut out);
    let listening = addr("127.0.0.10:9000");
    let said = Message {
        claimed_ip: Some(listening.ip()),
        ..msg("st", 9000, Body::Connect)
    };
    n.on_message(stat.ip(), said, t0, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect_ack")]));
    n.on_send_failed(stat, "refused".into(), &mut out);
    user_sends(&mut n, listening, "hi".into(), t0, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.10:9000", "hi")]));
    n.on_sent(listening, None, t0, &mut out);
    assert_eq!(n.peers().len(), 1, "one row");
    assert_eq!(
        n.peers().get(listening).map(|p| p.source),
        Some(Source::Static)
    );
}

#[test]
fn history_is_dated_from_the_epoch_and_keeps_chat_both_ways_but_not_control_words() {
    let t0 = Instant::now();
    let mut n = persisting_node((t0, 1_000_000));
    let mut out = Vec::new();
    let bob = addr("127.0.0.3:6000");
    let later = t0 + Duration::from_millis(1500);
    n.on_message(
        bob.ip(),
        msg("bob", 6000, Body::Chat("hi".into())),
        later,
        &mut out,
    );
    n.on_line("/send 127.0.0.3:6000 hello bob", later, &mut out);
    n.on_message(bob.ip(), msg("bob", 6000, Body::Connect), later, &mut out);
    let first = sends(&mut n);
    assert_eq!(first, sent(&[("127.0.0.3:6000", "hello bob")]));
    n.on_sent(bob, None, t0 + Duration::from_millis(2500), &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "connect_ack")]));
    n.on_sent(bob, None, t0 + Duration::from_millis(2600), &mut out);
    out.clear();
    n.on_line("/history", later, &mut out);
    let Some(Event::History(entries)) = shown(&out).last().copied() else {
        panic!("no history shown: {out:?}");
    };
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.millis, e.direction, e.text.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1_001_500, Direction::In, "hi"),
            (1_002_500, Direction::Out, "hello bob")
        ]
    );
}

#[test]
fn what_is_persisted_follows_the_table_and_the_messages() {
    let now = Instant::now();
    let mut n = persisting_node((now, 0));
    let mut out = Vec::new();
    let bob = addr("127.0.0.3:6000");
    n.on_message(
        bob.ip(),
        msg("bob", 6000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    let records = persisted(&out);
    assert!(records.contains(&&Record::Peer {
        addr: bob,
        name: Some("bob".into()),
        dialect: Some(Dialect::Standard),
    }));
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::Message(e) if e.text == "hi")));
    out.clear();
    n.on_message(
        bob.ip(),
        msg("bob", 6000, Body::Chat("again".into())),
        now,
        &mut out,
    );
    assert_eq!(
        persisted(&out).len(),
        1,
        "a known peer is not persisted again"
    );
    out.clear();
    n.on_line("/send 127.0.0.7:7000 new one", now, &mut out);
    assert_eq!(
        persisted(&out),
        vec![&Record::Peer {
            addr: addr("127.0.0.7:7000"),
            name: None,
            dialect: None,
        }]
    );
    out.clear();
    n.on_line("/send 127.0.0.7:7000 known now", now, &mut out);
    assert!(persisted(&out).is_empty());
    // A name told in a reply on our own connection is journalled at once, and once.
    let carol = addr("127.0.0.7:7000");
    for _ in 0..2 {
        assert_eq!(sends(&mut n).len(), 1, "one message in flight to carol");
        n.on_sent(carol, Some("127.0.0.7:7000 carol connected"), now, &mut out);
    }
    assert_eq!(
        persisted(&out)
            .into_iter()
            .filter(|r| matches!(r, Record::Peer { .. }))
            .collect::<Vec<_>>(),
        vec![&Record::Peer {
            addr: carol,
            name: Some("carol".into()),
            dialect: None,
        }]
    );
    out.clear();
    n.on_message(bob.ip(), msg("bob", 6000, Body::Exit), now, &mut out);
    assert_eq!(persisted(&out), vec![&Record::Gone { addr: bob }]);
    out.clear();
    n.on_message(bob.ip(), msg("bob", 6000, Body::Exit), now, &mut out);
    assert!(
        persisted(&out).is_empty(),
        "an unknown peer is not forgotten twice"
    );
    // Without --state, nothing is persisted at all.
    let mut plain = node();
    out.clear();
    plain.on_message(
        bob.ip(),
        msg("bob", 6000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    plain.on_message(bob.ip(), msg("bob", 6000, Body::Exit), now, &mut out);
    plain.on_line("/send 127.0.0.7:7000 x", now, &mut out);
    assert!(persisted(&out).is_empty());
}

#[test]
fn a_full_table_says_so_once_and_still_shows_the_message() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let mut port = 1u16;
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            let from = Message {
                port: Some(port),
                ..msg("x", port, Body::ConnectAck)
            };
            n.on_message(IpAddr::from([127, 1, a, b]), from, now, &mut out);
            port = port.wrapping_add(1).max(1);
        }
    }
    let warnings = |out: &[Effect]| {
        shown(out)
            .iter()
            .filter(|e| matches!(e, Event::Warning(w) if w.contains("peer table is full")))
            .count()
    };
    assert_eq!(warnings(&out), 0, "65,536 peers fit");
    out.clear();
    for host in 2..4u8 {
        let from = msg("late", 6000, Body::Chat("still shown".into()));
        n.on_message(IpAddr::from([127, 2, 0, host]), from, now, &mut out);
    }
    assert_eq!(warnings(&out), 1, "said once: {out:?}");
    let messages = shown(&out)
        .iter()
        .filter(|e| matches!(e, Event::Message { text, .. } if text == "still shown"))
        .count();
    assert_eq!(messages, 2);
    assert!(n.peers().get(addr("127.2.0.2:6000")).is_none(), "not kept");
}

#[test]
fn a_claimed_ip_is_shown_only_when_it_differs_from_the_observed_one() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let observed: IpAddr = "127.0.0.3".parse().expect("ip");
    let honest = Message {
        claimed_ip: Some(observed),
        ..msg("bob", 6000, Body::Chat("same".into()))
    };
    n.on_message(observed, honest, now, &mut out);
    n.on_message(
        observed,
        msg("bob", 6000, Body::Chat("other".into())),
        now,
        &mut out,
    );
    let claims: Vec<_> = shown(&out)
        .iter()
        .filter_map(|e| match e {
            Event::Message { from, text } => Some((text.as_str(), from.claimed_ip)),
            _ => None,
        })
        .collect();
    let other: IpAddr = "127.0.1.1".parse().expect("ip");
    assert_eq!(claims, vec![("same", None), ("other", Some(other))]);
}

#[test]
fn a_long_message_is_split_to_fit_the_header_budget_and_a_short_one_is_not() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let dest = addr("127.0.0.5:7000");
    user_sends(&mut n, dest, "short".into(), now, &mut out);
    assert!(!shown(&out).iter().any(|e| matches!(e, Event::Split { .. })));
    assert_eq!(sends(&mut n), sent(&[("127.0.0.5:7000", "short")]));
    n.on_sent(dest, None, now, &mut out);
    out.clear();
    let long = "word ".repeat(600); // 3,000 bytes
    user_sends(&mut n, dest, long.clone(), now, &mut out);
    let Some(&Event::Split { parts, .. }) = shown(&out)
        .into_iter()
        .find(|e| matches!(e, Event::Split { .. }))
    else {
        panic!("no split announced: {out:?}");
    };
    let mut got = Vec::new();
    while let Some(t) = n.poll_transmit() {
        let wire = n.header().encode("127.0.0.2".parse().expect("ip"), &t.text);
        assert!(wire.len() <= wire::MAX_WIRE_MESSAGE, "{} bytes", wire.len());
        got.push(t.text);
        n.on_sent(dest, None, now, &mut out);
    }
    assert_eq!(got.len(), parts);
    assert_eq!(got.concat(), long);
}

/// A message is cut for the dialect its receiver spoke when it was typed; should the
/// receiver speak another before the pieces go (JSON, whose quoting takes more room), a
/// piece that does not fit one 1024-byte `recv` in it is cut again, so that no receiver
/// reading one `recv` cuts it short, and everything goes in the newest dialect.
#[test]
fn pieces_are_cut_again_for_a_dialect_that_takes_more_room() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let dest = addr("127.0.0.5:7000");
    let ip = "127.0.0.5".parse().expect("ip");
    n.on_message(ip, msg("bob", 7000, Body::Chat("hi".into())), now, &mut out);
    // Quotes: two bytes each once quoted as JSON.
    let long = "\"q\" ".repeat(600);
    user_sends(&mut n, dest, long.clone(), now, &mut out);
    user_sends(&mut n, dest, "short".into(), now, &mut out);
    let json = Message {
        dialect: Dialect::Json,
        ..msg("bob", 7000, Body::Chat("hello".into()))
    };
    let mut got = Vec::new();
    while let Some(t) = n.poll_transmit() {
        let wire = n.header().encode_in(t.dialect, ip, &t.text);
        assert!(wire.len() <= wire::MAX_WIRE_MESSAGE, "{} bytes", wire.len());
        if got.is_empty() {
            // The receiver turns out to speak JSON once the first piece is out.
            n.on_message(ip, json.clone(), now, &mut out);
        }
        got.push((t.text, t.dialect));
        n.on_sent(dest, None, now, &mut out);
    }
    let pieces: String = got[..got.len() - 1]
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(pieces, long);
    // The first went before the switch; the rest, in JSON, in more pieces than cut.
    let dialects: Vec<_> = got.iter().map(|(_, d)| *d).collect();
    assert_eq!(dialects[0], Dialect::Standard);
    assert!(
        dialects[1..].iter().all(|d| *d == Dialect::Json),
        "{dialects:?}"
    );
    assert!(got.len() > 4, "cut again: {} messages", got.len());
    assert_eq!(got.last().map(|(t, _)| t.as_str()), Some("short"));
}

#[test]
fn names_are_cut_to_the_bound_at_a_character_boundary() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let long = format!("{}é{}", "a".repeat(MAX_NAME - 1), "b".repeat(60_000));
    let from = msg(&long, 6000, Body::Chat("hi".into()));
    n.on_message("127.0.0.3".parse().expect("ip"), from, now, &mut out);
    let kept = n
        .peers()
        .get(addr("127.0.0.3:6000"))
        .and_then(|p| p.name.clone())
        .expect("a name");
    assert_eq!(kept, "a".repeat(MAX_NAME - 1), "é would cross the bound");
    let shown = shown(&out).iter().find_map(|e| match e {
        Event::Message { from, .. } => from.name.clone(),
        _ => None,
    });
    assert_eq!(shown, Some(kept));
    assert_eq!(bounded_name("short".into()), "short");
    assert_eq!(bounded_name("x".repeat(MAX_NAME)).len(), MAX_NAME);
}

#[test]
fn an_exit_from_a_peer_never_known_is_not_news() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let from = msg("ghost", 6000, Body::Exit);
    n.on_message("127.0.0.3".parse().expect("ip"), from, now, &mut out);
    assert!(shown(&out).is_empty(), "{out:?}");
}

#[test]
fn a_connect_flood_draws_bounded_replies_and_the_users_send_goes_first() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let flooder: IpAddr = "127.0.0.66".parse().expect("ip");
    for port in 1..=5000u16 {
        n.on_message(flooder, msg("f", port, Body::Connect), now, &mut out);
    }
    // The same peer again and again within the reply interval: a few replies.
    for _ in 0..100 {
        n.on_message(flooder, msg("f", 1, Body::Connect), now, &mut out);
    }
    n.on_line("/send 127.0.0.5:7000 typed after the flood", now, &mut out);
    let first = n.poll_transmit().expect("something to send");
    assert_eq!(
        first.text, "typed after the flood",
        "the user's message first"
    );
    // Replies use at most half of the 8 connections in flight; each done makes room.
    assert_eq!(std::iter::from_fn(|| n.poll_transmit()).count(), 4);
    let mut replies = 4;
    while replies < 100 {
        let busy = (1..=5000u16).find(|&p| n.outbox.done(SocketAddr::new(flooder, p)).is_some());
        if busy.is_none() {
            break;
        }
        replies += std::iter::from_fn(|| n.poll_transmit()).count();
    }
    let most = crate::node::peers::MAX_PEERS_PER_IP + REPLIES_PER_INTERVAL as usize - 1;
    assert!(
        (crate::node::peers::MAX_PEERS_PER_IP..=most).contains(&replies),
        "{replies} replies"
    );
    let answered = out
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Show(Event::ConnectFrom {
                    answering: true,
                    ..
                })
            )
        })
        .count();
    assert_eq!(
        answered,
        crate::node::peers::MAX_PEERS_PER_IP + 100,
        "a reply waits for them"
    );
    // After the interval, a peer may draw a reply again.
    let later = now + REPLY_INTERVAL;
    n.on_message(flooder, msg("f", 1, Body::Connect), later, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.66:1", "connect_ack")]));
}

#[test]
fn a_header_claiming_our_own_address_is_never_a_peer() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let remote: IpAddr = "127.0.0.3".parse().expect("ip");
    // A remote peer's `PING` puts our own address in its header.
    let ping = Message {
        claimed_ip: Some("127.0.0.2".parse().expect("ip")),
        ..msg("pinger", 5000, Body::Chat("PING".into()))
    };
    n.on_message(remote, ping, now, &mut out);
    let connect = Message {
        claimed_ip: Some("127.0.0.2".parse().expect("ip")),
        ..msg("pinger", 5000, Body::Connect)
    };
    n.on_message(remote, connect, now, &mut out);
    // A connection from our own address with our port: ourselves.
    n.on_message(
        "127.0.0.2".parse().expect("ip"),
        msg("me", 5000, Body::Connect),
        now,
        &mut out,
    );
    assert!(n.peers().is_empty(), "never filed");
    assert!(sends(&mut n).is_empty(), "never answered");
    let events: Vec<_> = shown(&out).into_iter().cloned().collect();
    assert_eq!(events.len(), 1, "only the text: {events:?}");
    assert!(matches!(
        &events[0],
        Event::Message { from, text } if text == "PING" && from.ip == remote && from.port.is_none()
    ));
    // Sending to ourselves is refused.
    out.clear();
    n.on_line("/send 127.0.0.2:5000 hello me", now, &mut out);
    assert!(sends(&mut n).is_empty());
    assert!(matches!(shown(&out)[..], [Event::Warning(w)] if w.contains("own address")));
    // The same port at another address is another peer.
    n.on_message(
        remote,
        msg("other", 5000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    assert!(n.peers().get(addr("127.0.0.3:5000")).is_some());
}

#[test]
fn a_static_peer_that_starts_later_is_greeted_when_it_answers() {
    let t0 = Instant::now();
    let (mut n, mut out, stat) = started_greeting_static(t0);
    n.on_send_failed(stat, "refused".into(), &mut out);
    out.clear();
    // Its first check fails: not running yet.
    let later = t0 + Duration::from_secs(40);
    n.on_timeout(later, &mut out);
    assert!(out.contains(&Effect::Check(stat)));
    n.on_check(stat, false, later, &mut out);
    assert!(sends(&mut n).is_empty());
    // It started: the next check is answered, and it is greeted at once.
    let then = later + Duration::from_secs(40);
    out.clear();
    n.on_timeout(then, &mut out);
    n.on_check(stat, true, then, &mut out);
    assert!(shown(&out)
        .iter()
        .any(|e| matches!(e, Event::Info(i) if i.contains("answers now: greeting it"))));
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
    n.on_sent(stat, None, then, &mut out);
    // Greeted once: a later answer does not greet it again.
    let after = then + Duration::from_secs(40);
    n.on_timeout(after, &mut out);
    n.on_check(stat, true, after, &mut out);
    assert!(sends(&mut n).is_empty());
}

/// A static peer is never removed for not answering (the user configured it): it stays
/// unreachable, checked every eight intervals at most, and is greeted when it comes,
/// however late; when it is back after being unreachable (restarted), it is greeted
/// again. A peer that was only heard from is removed after the grace period.
#[test]
fn a_static_peer_is_kept_and_checked_until_it_comes() {
    let t0 = Instant::now();
    let (mut n, mut out, stat) = started_greeting_static(t0);
    let heard = addr("127.0.0.3:6000");
    n.on_send_failed(stat, "refused".into(), &mut out);
    let hello = msg("bob", 6000, Body::Chat("hi".into()));
    n.on_message(heard.ip(), hello, t0, &mut out);
    // Neither answers for a day (2,880 intervals of 30 s).
    let (mut now, mut checks, mut last_check) = (t0, 0, t0);
    let day = t0 + Duration::from_secs(86_400);
    while let Some(at) = n.poll_timeout().filter(|&at| at < day) {
        now = at;
        out.clear();
        n.on_timeout(now, &mut out);
        for effect in out.clone() {
            if effect == Effect::Check(stat) {
                assert!(
                    now - last_check <= Duration::from_secs(8 * 36),
                    "checks stop"
                );
                (checks, last_check) = (checks + 1, now);
            }
            if let Effect::Check(who) = effect {
                n.on_check(who, false, now, &mut out);
            }
        }
        assert!(
            !shown(&out)
                .iter()
                .any(|e| matches!(e, Event::PeerLeft { addr, .. } if *addr == stat)),
            "the static peer was removed"
        );
    }
    assert!(checks >= 300, "{checks} checks in a day");
    assert!(n.peers().get(stat).is_some(), "kept");
    assert!(
        n.peers().get(heard).is_none(),
        "a peer only heard from goes"
    );
    // It comes, and is greeted.
    let came = now + Duration::from_secs(8 * 36);
    out.clear();
    n.on_timeout(came, &mut out);
    assert!(out.contains(&Effect::Check(stat)));
    n.on_check(stat, true, came, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
    n.on_sent(stat, None, came, &mut out);
    // It goes away until unreachable, then restarts: greeted again.
    let mut back = false;
    while !back {
        let now = n.poll_timeout().expect("checked");
        out.clear();
        n.on_timeout(now, &mut out);
        let answered = now > came + Duration::from_secs(3_600);
        if out.contains(&Effect::Check(stat)) {
            n.on_check(stat, answered, now, &mut out);
            back = answered;
        }
    }
    assert!(shown(&out)
        .iter()
        .any(|e| matches!(e, Event::PeerBack { addr, .. } if *addr == stat)));
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
}

/// A static peer that says `exit` (it quits, to restart most likely) is told as leaving
/// and stays a static peer, as at start-up, with its name and dialect (and in the
/// journal: no `gone`): checked, and greeted in its dialect when it answers; but not
/// greeted again when it greeted us first.
#[test]
fn a_static_peer_that_says_exit_is_greeted_when_it_answers_again() {
    let t0 = Instant::now();
    let mut n = Node::new(
        settings(true, vec![addr("127.0.0.9:9000")]),
        Liveness::new(Duration::from_secs(30), 3),
        (t0, 0),
    );
    let mut out = Vec::new();
    let stat = addr("127.0.0.9:9000");
    n.start(addr("127.0.0.2:5000"), t0, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
    n.on_sent(stat, None, t0, &mut out);
    let from_it = |body| Message {
        claimed_ip: None,
        dialect: Dialect::Spaced,
        ..msg("st", 9000, body)
    };
    n.on_message(stat.ip(), from_it(Body::Chat("hi".into())), t0, &mut out);
    out.clear();
    n.on_message(stat.ip(), from_it(Body::Exit), t0, &mut out);
    assert!(shown(&out).iter().any(|e| matches!(e,
        Event::PeerLeft { addr, reason: LeaveReason::Exit, .. } if *addr == stat)));
    assert!(!out
        .iter()
        .any(|e| matches!(e, Effect::Persist(Record::Gone { .. }))));
    let row = n
        .peers()
        .get(stat)
        .map(|p| (p.status, p.name.clone(), p.dialect));
    assert_eq!(
        row,
        Some((Status::Static, Some("st".into()), Some(Dialect::Spaced)))
    );
    // Its next check is answered: it is greeted, in its dialect.
    let at = n.poll_timeout().expect("checked");
    out.clear();
    n.on_timeout(at, &mut out);
    assert!(out.contains(&Effect::Check(stat)), "{out:?}");
    n.on_check(stat, true, at, &mut out);
    let greeting = n.poll_transmit().map(|t| (t.text, t.dialect));
    assert_eq!(greeting, Some(("connect".into(), Dialect::Spaced)));
    n.on_sent(stat, None, at, &mut out);
    // It says exit again, then greets us first: no greeting of ours follows.
    n.on_message(stat.ip(), from_it(Body::Exit), at, &mut out);
    n.on_message(stat.ip(), from_it(Body::Connect), at, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect_ack")]));
    n.on_sent(stat, None, at, &mut out);
    let later = n.poll_timeout().expect("checked");
    n.on_timeout(later, &mut out);
    n.on_check(stat, true, later, &mut out);
    assert!(sends(&mut n).is_empty(), "greeted again");
    // While we quit, its `exit` (an answer to ours) keeps its row and journal record
    // too; it is neither checked nor greeted any more.
    out.clear();
    n.quit(later, &mut out);
    n.on_message(stat.ip(), from_it(Body::Exit), later, &mut out);
    assert!(!out
        .iter()
        .any(|e| matches!(e, Effect::Persist(Record::Gone { .. }))));
    assert_eq!(n.peers().get(stat).map(|p| p.status), Some(Status::Static));
}

/// A static peer that says `exit` while a message of ours to it is in flight (our
/// greeting, or a chat message, reaching it just before it quit) stays as its `exit`
/// left it when that send ends: static, and greeted when it answers a check again.
/// The send's end made it active and counted as the greeting, so that it was never
/// greeted again (fails without).
#[test]
fn a_static_peer_that_says_exit_while_our_message_is_in_flight_stays_to_be_greeted() {
    let t0 = Instant::now();
    let (mut n, mut out, stat) = started_greeting_static(t0);
    let from_it = |body| Message {
        claimed_ip: None,
        ..msg("st", 9000, body)
    };
    // Its exit arrives before our greeting's connection is over.
    n.on_message(stat.ip(), from_it(Body::Exit), t0, &mut out);
    n.on_sent(stat, None, t0, &mut out);
    assert_eq!(n.peers().get(stat).map(|p| p.status), Some(Status::Static));
    // Likewise for a chat message, once it is back and greeted.
    let at = n.poll_timeout().expect("checked");
    n.on_timeout(at, &mut out);
    n.on_check(stat, true, at, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
    n.on_sent(stat, None, at, &mut out);
    assert_eq!(n.peers().get(stat).map(|p| p.status), Some(Status::Active));
    user_sends(&mut n, stat, "bye then".into(), at, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "bye then")]));
    n.on_message(stat.ip(), from_it(Body::Exit), at, &mut out);
    out.clear();
    n.on_sent(stat, None, at, &mut out);
    assert!(shown(&out).iter().any(|e| matches!(e, Event::Sent { .. })));
    assert_eq!(n.peers().get(stat).map(|p| p.status), Some(Status::Static));
    // When it answers again, it is greeted.
    let later = n.poll_timeout().expect("checked");
    n.on_timeout(later, &mut out);
    n.on_check(stat, true, later, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
}

/// `/reply` answers whoever sent the last message; when that sender did not say where it
/// listens (no header), it says so, instead of answering the sender before it.
#[test]
fn reply_to_a_sender_without_a_port_is_refused_with_a_hint() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    let bob = "127.0.0.3".parse().expect("ip");
    n.on_message(
        bob,
        msg("bob", 6000, Body::Chat("hi".into())),
        now,
        &mut out,
    );
    let reply = |n: &mut Node, out: &mut Vec<Effect>| {
        out.clear();
        let text = "answer".to_owned();
        n.execute(Command::Reply { text }, now, out);
    };
    reply(&mut n, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "answer")]));
    n.on_sent(addr("127.0.0.3:6000"), None, now, &mut out);
    let raw = Message {
        name: None,
        claimed_ip: None,
        port: None,
        body: Body::Chat("raw from nobody".into()),
        dialect: Dialect::Raw,
    };
    n.on_message("127.0.0.4".parse().expect("ip"), raw, now, &mut out);
    reply(&mut n, &mut out);
    assert!(sends(&mut n).is_empty(), "answered the sender before");
    assert!(
        shown(&out).iter().any(
            |e| matches!(e, Event::Hint(h) if h.contains("127.0.0.4") && h.contains("cannot be answered"))
        ),
        "{out:?}"
    );
    // A sender with a header again: answered.
    n.on_message(
        bob,
        msg("bob", 6000, Body::Chat("again".into())),
        now,
        &mut out,
    );
    reply(&mut n, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "answer")]));
    n.on_sent(addr("127.0.0.3:6000"), None, now, &mut out);
    // A header claiming our own address (a lab peer's PING) is no one to answer, and
    // leaves the last sender as it was.
    let ping = Message {
        claimed_ip: Some("127.0.0.2".parse().expect("ip")),
        ..msg("pinger", 5000, Body::Chat("PING".into()))
    };
    n.on_message("127.0.0.4".parse().expect("ip"), ping, now, &mut out);
    assert!(shown(&out)
        .iter()
        .any(|e| matches!(e, Event::Message { text, .. } if text == "PING")));
    reply(&mut n, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.3:6000", "answer")]));
}

/// While quitting, a `connect` from a peer already told `exit` is not answered: the
/// `connect_ack` would reach it after our `exit` and put us back in its table as
/// active, with no second `exit` to follow.
#[test]
fn no_connect_ack_after_our_exit() {
    let now = Instant::now();
    let (mut n, mut out) = quitting_with_two_peers(now);
    let bob = addr("127.0.0.3:6000");
    assert_eq!(
        sends(&mut n),
        sent(&[("127.0.0.3:6000", "exit"), ("127.0.0.4:6001", "exit")])
    );
    n.on_sent(bob, None, now, &mut out); // bob has our exit; the other is still on its way
    n.on_message(bob.ip(), msg("bob", 6000, Body::Connect), now, &mut out);
    assert!(sends(&mut n).is_empty(), "nothing follows our exit to bob");
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Show(Event::ConnectFrom {
            answering: false,
            ..
        })
    )));
}

#[test]
fn typed_lines_wait_while_the_users_backlog_is_full_or_when_quitting() {
    let now = Instant::now();
    let mut n = node();
    let mut out = Vec::new();
    assert!(n.wants_input(), "a fresh node takes lines");
    let dest = addr("127.0.0.5:7000");
    for i in 0..INPUT_BACKLOG - 1 {
        n.on_line(&format!("/send 127.0.0.5:7000 m{i}"), now, &mut out);
    }
    assert!(n.wants_input(), "one below the backlog");
    n.on_line("/send 127.0.0.5:7000 last", now, &mut out);
    assert!(!n.wants_input(), "{INPUT_BACKLOG} messages wait");
    // One leaves for its connection: room for one more line.
    assert_eq!(n.poll_transmit().map(|t| t.text), Some("m0".into()));
    assert!(n.wants_input());
    n.on_sent(dest, None, now, &mut out);
    n.quit(now, &mut out);
    assert!(!n.wants_input(), "not while quitting");
}

#[test]
fn a_peer_evicted_for_a_newcomer_is_forgotten_in_the_journal_too() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(1);
    let mut n = persisting_node((t0, 0));
    let mut out = Vec::new();
    // 127.3.0.1 holds two entries, the stalest heard first; every other address one.
    let (stale, fresh) = (addr("127.3.0.1:1"), addr("127.3.0.1:2"));
    n.on_message(stale.ip(), msg("s", 1, Body::ConnectAck), t0, &mut out);
    n.on_message(fresh.ip(), msg("f", 2, Body::ConnectAck), later, &mut out);
    for i in 0..crate::node::peers::MAX_PEERS - 2 {
        let ip = std::net::Ipv4Addr::from(0x7f01_0000 + i as u32);
        n.on_message(ip.into(), msg("x", 1, Body::ConnectAck), later, &mut out);
    }
    assert!(n.peers().get(stale).is_some());
    out.clear();
    let newcomer = addr("127.4.0.1:1");
    n.on_message(
        newcomer.ip(),
        msg("new", 1, Body::ConnectAck),
        later,
        &mut out,
    );
    assert!(n.peers().get(newcomer).is_some(), "the newcomer is kept");
    assert!(n.peers().get(stale).is_none(), "in place of the stalest");
    assert!(n.peers().get(fresh).is_some());
    assert_eq!(
        persisted(&out),
        vec![
            &Record::Gone { addr: stale },
            &Record::Peer {
                addr: newcomer,
                name: Some("new".into()),
                dialect: Some(Dialect::Standard),
            }
        ]
    );
    // Sending to someone new, once every entry is stale, evicts too and says so.
    out.clear();
    let much_later = later + Duration::from_secs(600);
    n.on_line("/send 127.5.0.1:1 hello", much_later, &mut out);
    assert!(matches!(
        persisted(&out)[..],
        [Record::Gone { .. }, Record::Peer { .. }]
    ));
}

#[test]
fn a_peer_draws_at_most_its_share_of_replies_per_interval() {
    let t0 = Instant::now();
    let mut n = node();
    let bob = addr("127.0.0.3:6000");
    // Each reply is delivered before the next connect, so none is a duplicate.
    let connect = |n: &mut Node, at: Instant| {
        let mut out = Vec::new();
        n.on_message(bob.ip(), msg("bob", 6000, Body::Connect), at, &mut out);
        let replies = sends(n);
        for t in &replies {
            n.on_sent(t.0, None, at, &mut out);
        }
        let answered = out.iter().any(|e| {
            matches!(
                e,
                Effect::Show(Event::ConnectFrom {
                    answering: true,
                    ..
                })
            )
        });
        assert_eq!(answered, !replies.is_empty(), "{out:?}");
        replies.len()
    };
    for i in 0..REPLIES_PER_INTERVAL {
        let at = t0 + Duration::from_secs(u64::from(i));
        assert_eq!(connect(&mut n, at), 1, "reply {i}");
    }
    let almost = t0 + REPLY_INTERVAL - Duration::from_millis(1);
    assert_eq!(connect(&mut n, almost), 0, "shown, not answered");
    assert_eq!(connect(&mut n, t0 + REPLY_INTERVAL), 1, "a new interval");
}

/// A static peer that sends from another address than the one it listens at (a relay,
/// filed under its listening address through an alias) and says `exit` through that
/// alias is greeted when it next answers a check: a restart behind the alias was never
/// greeted. Its row stays active (anyone can make such an alias: see
/// a_stranger_cannot_keep_a_static_peer_out_of_all). Any other peer's row stays (see the
/// tests above).
#[test]
fn a_static_peer_that_says_exit_through_its_alias_is_greeted_when_it_answers_again() {
    let t0 = Instant::now();
    let (mut n, mut out, stat) = started_greeting_static(t0);
    n.on_sent(stat, None, t0, &mut out);
    assert_eq!(n.peers().get(stat).map(|p| p.status), Some(Status::Active));
    // It speaks from .6, claiming .9: our answer to .6 is refused, so .6 is its alias.
    let relay = addr("127.0.0.6:9000");
    let said = |body| Message {
        claimed_ip: Some(stat.ip()),
        ..msg("st", 9000, body)
    };
    n.on_message(relay.ip(), said(Body::Connect), t0, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.6:9000", "connect_ack")]));
    n.on_send_failed(relay, "refused".into(), &mut out);
    assert_eq!(n.peers().len(), 1, "one row, at .9");
    // Merged: the answer goes where it listens.
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect_ack")]));
    n.on_sent(stat, None, t0, &mut out);
    out.clear();
    n.on_message(relay.ip(), said(Body::Exit), t0, &mut out);
    // Anyone can make such an alias: the row stays as it is (in `/all`), not shown as left.
    assert_eq!(n.peers().get(stat).map(|p| p.status), Some(Status::Active));
    assert!(!shown(&out)
        .iter()
        .any(|e| matches!(e, Event::PeerLeft { .. })));
    // It answers a check again (restarted): greeted.
    let at = n.poll_timeout().expect("checked");
    n.on_timeout(at, &mut out);
    n.on_check(stat, true, at, &mut out);
    assert_eq!(sends(&mut n), sent(&[("127.0.0.9:9000", "connect")]));
}

/// Any host can file itself under a static peer: one `connect` claiming the static peer's
/// IP and port, from an address where that port refuses our answer. Its `exit` through
/// that alias put the static peer, which never left, out of `/all`, shown as left under
/// the stranger's name, and again each time the peer was active again (5 of 5 here): now
/// it costs the static peer a greeting, nothing more.
#[test]
fn a_stranger_cannot_keep_a_static_peer_out_of_all() {
    let t0 = Instant::now();
    let (mut n, mut out, stat) = started_greeting_static(t0);
    n.on_sent(stat, None, t0, &mut out);
    let ack = Message {
        claimed_ip: None,
        ..msg("st", 9000, Body::ConnectAck)
    };
    n.on_message(stat.ip(), ack, t0, &mut out);
    let stranger: IpAddr = "127.0.0.66".parse().expect("ip");
    let said = |body| Message {
        claimed_ip: Some(stat.ip()),
        ..msg("mallory", 9000, body)
    };
    let (mut now, mut out_of_all, mut names) = (t0, 0, Vec::new());
    for _ in 0..5 {
        // Filed under the static peer: our answer to .66 is refused.
        n.on_message(stranger, said(Body::Connect), now, &mut out);
        for (dest, _) in sends(&mut n) {
            match dest.ip() == stranger {
                true => n.on_send_failed(dest, "refused".into(), &mut out),
                false => n.on_sent(dest, None, now, &mut out),
            }
        }
        for (dest, _) in sends(&mut n) {
            n.on_sent(dest, None, now, &mut out);
        }
        out.clear();
        n.on_message(stranger, said(Body::Exit), now, &mut out);
        names.extend(shown(&out).into_iter().filter_map(|e| match e {
            Event::PeerLeft { name, .. } => Some(name.clone()),
            _ => None,
        }));
        out_of_all += usize::from(!n.peers().active().contains(&stat));
        // Its next check: it answers (it never left), is greeted, and is active again.
        now = n.poll_timeout().expect("a check");
        n.on_timeout(now, &mut out);
        n.on_check(stat, true, now, &mut out);
        for (dest, _) in sends(&mut n) {
            n.on_sent(dest, None, now, &mut out);
        }
    }
    assert!(
        !names.contains(&Some("mallory".into())),
        "the static peer was shown leaving under the stranger's name: {names:?} (out of /all {out_of_all} times)"
    );
    assert_eq!(
        out_of_all, 0,
        "out of /all after {out_of_all} forged exits of 5"
    );
}
