//! One simulated test per protocol promise (docs/PROTOCOL.md, sections 3, 5 and 7; README,
//! "Keeping up under faults"): small networks of real nodes, minutes of virtual time,
//! milliseconds of wall time. Every scenario also asserts that the trace saw no broken
//! invariant (`trace.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::node::event::LeaveReason;
use crate::node::peers::Status;
use crate::sim::checks::{assert_clean, removal_bound, status};
use crate::sim::net::{Sim, State, REFUSED};
use crate::sim::setup::{mesh, secs, Action, Config, Spec};
use crate::{Command, Event};

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn events(sim: &Sim, i: usize) -> impl Iterator<Item = &(Duration, Event)> {
    sim.trace.events(i).iter()
}

/// The texts node `i` was shown from `from`, in order.
fn chats_from(sim: &Sim, i: usize, from: SocketAddr) -> Vec<String> {
    events(sim, i)
        .filter_map(|(_, e)| match e {
            Event::Message { from: f, text } if f.addr() == Some(from) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The texts of the message connections from `src` to `dest`, in order.
fn wire_texts(sim: &Sim, src: usize, dest: usize) -> Vec<String> {
    let dest = sim.addr(dest);
    let wires = sim.trace.wires().iter();
    wires
        .filter(|w| w.src == src && w.dest == dest)
        .map(|w| w.text.clone())
        .collect()
}

#[test]
fn connect_is_answered_with_connect_ack_never_with_connect() {
    let mut sim = Sim::new(Config::default(), 1);
    let a = sim.add(Spec::new("alice"));
    let b = sim.add(Spec::new("bob").greets(&[a]));
    // Two that greet each other at once must not start a ping-pong either.
    let c = sim.add(Spec::new("carol").greets(&[a, 3]));
    let d = sim.add(Spec::new("dave").greets(&[c]));
    sim.at(Duration::ZERO, a, Action::Start);
    sim.at(ms(100), b, Action::Start);
    sim.at(ms(200), c, Action::Start);
    sim.at(ms(200), d, Action::Start);
    sim.run_until(secs(10));
    assert_clean(&sim);
    assert_eq!(wire_texts(&sim, b, a), ["connect"]);
    assert_eq!(wire_texts(&sim, a, b), ["connect_ack"]);
    let answered = events(&sim, a).any(|(_, e)| {
        matches!(e, Event::ConnectFrom { from, answering: true }
            if from.addr() == Some(sim.addr(b)) && from.name.as_deref() == Some("bob"))
    });
    assert!(answered, "alice answered bob's connect");
    let acked = events(&sim, b)
        .any(|(_, e)| matches!(e, Event::ConnectAck { from } if from.addr() == Some(sim.addr(a))));
    assert!(acked, "bob heard alice's connect_ack");
    assert_eq!(status(&sim, a, b), Some(Status::Active));
    assert_eq!(status(&sim, b, a), Some(Status::Active));
    // carol and dave greet each other: one connect and one connect_ack each way, no more.
    assert_eq!(wire_texts(&sim, c, d), ["connect", "connect_ack"]);
    assert_eq!(wire_texts(&sim, d, c), ["connect", "connect_ack"]);
}

#[test]
fn static_peers_are_greeted_at_start() {
    let mut sim = Sim::new(Config::default(), 2);
    let (a, b) = (sim.add(Spec::new("a")), sim.add(Spec::new("b")));
    let late = sim.add(Spec::new("late"));
    let c = sim.add(Spec::new("c").greets(&[a, b, late]));
    for i in [a, b, c] {
        sim.at(Duration::ZERO, i, Action::Start);
    }
    sim.at(secs(10), late, Action::Start);
    // The first liveness check of `late` comes within an interval (±20%).
    sim.run_until(secs(crate::config::DEFAULT_PROBE_SECS * 13 / 10));
    assert_clean(&sim);
    let first: Vec<(SocketAddr, &str)> = sim.trace.wires()[..3]
        .iter()
        .map(|w| (w.dest, w.text.as_str()))
        .collect();
    let greetings: Vec<(SocketAddr, &str)> = [a, b, late]
        .iter()
        .map(|&i| (sim.addr(i), "connect"))
        .collect();
    assert_eq!(
        first, greetings,
        "c's first connections greet its static peers"
    );
    for i in [a, b] {
        assert!(events(&sim, i).any(|(t, e)| *t < ms(50)
            && matches!(e, Event::ConnectFrom { from, .. } if from.addr() == Some(sim.addr(c)))));
        assert_eq!(status(&sim, c, i), Some(Status::Active));
    }
    // The static peer that was not up yet: refused, unreachable, then active once a
    // liveness check reaches it.
    let refused = events(&sim, c).any(|(_, e)| {
        matches!(e, Event::SendFailed { dest, text, reason }
            if *dest == sim.addr(late) && text == "connect" && reason == REFUSED)
    });
    assert!(refused, "{:?}", sim.trace.events(c));
    assert_eq!(status(&sim, c, late), Some(Status::Active));
}

#[test]
fn exit_removes_the_sender_everywhere() {
    let mut sim = mesh(Config::default(), 3, 5);
    sim.at(secs(5), 0, Action::Line("/quit".into()));
    sim.run_until(secs(8));
    assert_clean(&sim);
    assert_eq!(sim.state(0), State::Finished);
    let left0 = |e: &Event| matches!(e, Event::PeerLeft { addr, reason: LeaveReason::Exit, .. } if *addr == sim.addr(0));
    for i in 1..5 {
        assert_eq!(
            events(&sim, i).filter(|(_, e)| left0(e)).count(),
            1,
            "node {i}"
        );
        // Forgotten, or, where it is a static peer, back to what it was at start-up.
        let after = status(&sim, i, 0);
        assert!(
            matches!(after, None | Some(Status::Static)),
            "node {i} kept node 0 as {after:?}"
        );
        assert_eq!(
            wire_texts(&sim, 0, i).last().map(String::as_str),
            Some("exit")
        );
    }
}

#[test]
fn quit_tells_every_active_peer_exit_and_finishes() {
    let cfg = Config::default();
    let (quit_wait, latency) = (cfg.limits.quit_wait, cfg.latency.1);
    let mut sim = mesh(cfg, 4, 4);
    sim.at(secs(5), 0, Action::Quit);
    sim.run_until(secs(10));
    assert_clean(&sim);
    let (quit, finish) = sim.trace.quit_and_finish(0);
    let (quit, finish) = (quit.expect("quit"), finish.expect("finished"));
    assert!(
        finish - quit <= latency,
        "finished once the exits were out: {:?}",
        finish - quit
    );
    assert!(finish - quit < quit_wait);
    for i in 1..4 {
        let exits = wire_texts(&sim, 0, i).into_iter().filter(|t| t == "exit");
        assert_eq!(exits.count(), 1, "node {i} told exit once");
    }

    // With a black-holed peer: the quit ends at the quit deadline, the exit given up.
    let mut sim = mesh(Config::default(), 5, 4);
    sim.at(secs(5), 3, Action::BlackHole(true));
    sim.at(secs(10), 0, Action::Quit);
    sim.run_until(secs(20));
    assert_clean(&sim);
    assert_eq!(
        sim.trace.quit_and_finish(0),
        (Some(secs(10)), Some(secs(10) + quit_wait))
    );
    assert!(sim.node(0).is_finished());
    let given_up = events(&sim, 0).any(|(_, e)| {
        matches!(e, Event::SendFailed { dest, text, reason }
            if *dest == sim.addr(3) && text == "exit" && reason == "still not sent when quitting")
    });
    assert!(given_up, "{:?}", sim.trace.events(0));
    for i in 1..3 {
        // Forgotten, or, where it is a static peer, back to what it was at start-up.
        assert!(matches!(status(&sim, i, 0), None | Some(Status::Static)));
    }
}

#[test]
fn a_killed_node_is_unreachable_then_removed_within_the_bound() {
    let cfg = Config::default();
    let limits = cfg.limits.clone();
    // Refusals come back after the latency at most.
    let d = cfg.check_failure_latency(false);
    let bound = removal_bound(&limits, d);
    let mut sim = mesh(cfg, 6, 5);
    sim.at(secs(10), 4, Action::Kill);
    sim.run_until(secs(10) + bound + secs(1));
    let found = sim.check_detection(d);
    sim.check_final(bound);
    assert_clean(&sim);
    assert_eq!(
        (found.times.len(), found.skipped),
        (4, 0),
        "every peer measured"
    );
    for i in 0..4 {
        let (unreachable, removed) = sim.trace.detection(i, 4);
        let (u, r) = (unreachable.expect("unreachable"), removed.expect("removed"));
        assert!(
            r - secs(10) <= bound,
            "node {i}: {:?} > {bound:?}",
            r - secs(10)
        );
        assert!(
            r - u >= limits.probe_interval * 4,
            "grace is four intervals"
        );
        let failures = limits.probe_failures;
        let marked = events(&sim, i).any(|(_, e)| {
            matches!(e, Event::PeerUnreachable { addr, failures: f, .. } if *addr == sim.addr(4) && *f == failures)
        });
        assert!(
            marked,
            "node {i} said unreachable after {failures} failures"
        );
        assert_eq!(status(&sim, i, 4), None);
    }
    let (min, _, max) = found.spread().expect("measured");
    println!("killed node removed after {min:?}..{max:?} (bound {bound:?})");
}

/// A text of `len` bytes with multi-byte characters and spaces.
fn long_text(len: usize) -> String {
    let mut text = String::new();
    let mut n = 0;
    while text.len() < len {
        text.push_str(&format!("w\u{f6}rd{n} "));
        n += 1;
    }
    while text.len() > len || !text.is_char_boundary(text.len()) {
        text.pop();
    }
    text.trim_end().to_owned()
}

/// alice and bob know each other; at 1 s alice sends each text to bob, one after another.
fn send_long(texts: &[String]) -> Sim {
    let mut sim = Sim::new(Config::default(), 7);
    let a = sim.add(Spec::new("alice"));
    let b = sim.add(Spec::new("bob").greets(&[a]));
    sim.at(Duration::ZERO, a, Action::Start);
    sim.at(Duration::ZERO, b, Action::Start);
    for text in texts {
        let dest = sim.addr(b);
        let command = Command::Send {
            dest,
            text: text.clone(),
        };
        sim.at(secs(1), a, Action::Exec(command));
    }
    sim.run_until(secs(5));
    sim
}

#[test]
fn a_long_message_is_split_into_wire_sized_parts() {
    let (a, b) = (0, 1);
    // 3,000 bytes of words (cut after a space) and 3,000 bytes of one word (cut anywhere).
    let texts = [long_text(3000), "\u{e9}".repeat(1500)];
    let sim = send_long(&texts);
    assert_clean(&sim);
    let splits: Vec<usize> = events(&sim, a)
        .filter_map(|(_, e)| match e {
            Event::Split { dest, parts } if *dest == sim.addr(b) => Some(*parts),
            _ => None,
        })
        .collect();
    assert_eq!(splits.len(), 2, "one Split event per long message");
    let sent: Vec<_> = sim
        .trace
        .wires()
        .iter()
        .filter(|w| w.src == a && crate::wire::control_word(&w.text).is_none())
        .collect();
    assert_eq!(sent.len(), splits.iter().sum::<usize>());
    let shown = chats_from(&sim, b, sim.addr(a));
    assert_eq!(shown.len(), sent.len(), "every part arrives");
    let mut at = 0;
    for (text, parts) in texts.iter().zip(&splits) {
        assert!(
            text.len() >= 2990 && *parts >= 3,
            "{} bytes in {parts} parts",
            text.len()
        );
        let wires = &sent[at..at + parts];
        for w in wires {
            assert!(
                w.len <= crate::wire::MAX_WIRE_MESSAGE,
                "{} bytes on the wire",
                w.len
            );
        }
        let on_wire: String = wires.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(&on_wire, text, "the parts sent concatenate to the original");
        // Shown in order, each as sent, except that the receiver trims trailing
        // whitespace (wire/decoder.rs): see the known issue below.
        let as_read: Vec<&str> = wires.iter().map(|w| w.text.trim_end()).collect();
        assert_eq!(shown[at..at + parts], as_read);
        at += parts;
    }
    assert_eq!(
        shown[splits[0]..].concat(),
        texts[1],
        "cut inside a word: exact"
    );
}

/// KNOWN ISSUE (reported, not fixed here): `split_for_wire` cuts just after a space, so
/// each part but the last ends with a space, and receivers (ours included: the decoder
/// trims trailing whitespace) drop it: the parts shown concatenate to the original minus
/// one space per cut. Run with `cargo test --lib sim -- --ignored`.
#[test]
fn split_parts_shown_concatenate_to_the_original() {
    let text = long_text(3000);
    let sim = send_long(std::slice::from_ref(&text));
    let shown = chats_from(&sim, 1, sim.addr(0));
    assert_eq!(
        shown.concat(),
        text,
        "the parts shown concatenate to the original"
    );
}
