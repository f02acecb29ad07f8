//! Simulated scenarios under faults: a partition that heals, a paused node, lost, delayed
//! and reordered connections, a black hole; and probes of the node's behaviour at the
//! edges (a command given while quitting). Like `scenarios.rs`, each asserts what the user
//! sees and that the trace saw no broken invariant.

use std::time::Duration;

use crate::node::event::LeaveReason;
use crate::node::peers::Status;
use crate::sim::checks::{assert_clean, removal_bound, status};
use crate::sim::net::{Sim, REFUSED, TIMED_OUT};
use crate::sim::setup::{mesh, secs, Action, Config, Fault};
use crate::{Command, Event};

/// When node `i` was shown `text`, if it was.
fn shown_at(sim: &Sim, i: usize, text: &str) -> Option<Duration> {
    sim.trace.events(i).iter().find_map(|(t, e)| match e {
        Event::Message { text: m, .. } if m == text => Some(*t),
        _ => None,
    })
}

/// The chat texts node `i` was shown, in order.
fn shown(sim: &Sim, i: usize) -> Vec<String> {
    let events = sim.trace.events(i).iter();
    events
        .filter_map(|(_, e)| match e {
            Event::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// How node `i` was told its message `text` ended: `Ok(when)` sent, `Err(reason)` failed.
fn outcome(sim: &Sim, i: usize, text: &str) -> Option<Result<Duration, String>> {
    sim.trace.events(i).iter().find_map(|(t, e)| match e {
        Event::Sent { text: m, .. } if m == text => Some(Ok(*t)),
        Event::SendFailed {
            text: m, reason, ..
        } if m == text => Some(Err(reason.clone())),
        _ => None,
    })
}

#[test]
fn messages_get_through_once_a_partition_heals() {
    let mut cfg = Config::default();
    cfg.limits.probe_interval = secs(5);
    cfg.limits.probe_failures = 2;
    let bound = removal_bound(&cfg.limits, cfg.check_failure_latency(true));
    let mut sim = mesh(cfg, 11, 4);
    sim.partition_at(secs(10), vec![2, 3]);
    sim.heal_at(secs(40));
    sim.at(secs(12), 0, Action::ChatTo(2)); // m0-0: across, fails
    sim.at(secs(12), 0, Action::ChatTo(1)); // m0-1: same side, arrives
    sim.at(secs(38), 0, Action::ChatTo(2)); // m0-2: SYN retried after the heal, arrives
    for i in 0..4 {
        sim.at(secs(60), i, Action::Chat);
    }
    sim.run_until(secs(70));
    sim.check_final(bound);
    assert_clean(&sim);
    assert_eq!(outcome(&sim, 0, "m0-0"), Some(Err(TIMED_OUT.into())));
    assert_eq!(shown_at(&sim, 2, "m0-0"), None);
    assert!(shown_at(&sim, 1, "m0-1").is_some_and(|t| t < secs(13)));
    let late = shown_at(&sim, 2, "m0-2").expect("sent across once healed");
    assert!(late >= secs(40) && late < secs(43), "{late:?}");
    assert!(matches!(outcome(&sim, 0, "m0-2"), Some(Ok(_))));
    // Across the cut, peers were marked unreachable, and came back before removal.
    let mut came_back = 0;
    for (i, j) in [
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 0),
        (2, 1),
        (3, 0),
        (3, 1),
    ] {
        let (a, b) = (sim.addr(i), sim.addr(j));
        let said = |f: &dyn Fn(&Event) -> bool| sim.trace.events(i).iter().any(|(_, e)| f(e));
        assert!(
            !said(&|e| matches!(e, Event::PeerLeft { addr, .. } if *addr == b)),
            "{a} kept {b}"
        );
        if said(&|e| matches!(e, Event::PeerBack { addr, .. } if *addr == b)) {
            came_back += 1;
        }
    }
    assert!(came_back > 0, "some peer was unreachable and came back");
    // After healing, everyone's chat reaches everyone.
    for i in 0..4 {
        for j in (0..4).filter(|&j| j != i) {
            assert_eq!(status(&sim, i, j), Some(Status::Active), "{i} sees {j}");
            let text = if j == 0 {
                "m0-3".to_owned()
            } else {
                format!("m{j}-0")
            };
            assert!(shown_at(&sim, i, &text).is_some(), "node {i} got {text}");
        }
    }
}

#[test]
fn a_paused_node_reads_what_waited_in_order_when_it_resumes() {
    let mut sim = mesh(Config::default(), 12, 2);
    sim.at(secs(5), 1, Action::Pause(secs(20)));
    for _ in 0..3 {
        sim.at(secs(6), 0, Action::ChatTo(1));
    }
    sim.run_until(secs(40));
    assert_clean(&sim);
    for text in ["m0-0", "m0-1", "m0-2"] {
        let sent = outcome(&sim, 0, text).expect("reported");
        assert!(
            sent.as_ref().is_ok_and(|t| *t < secs(7)),
            "the kernel took {text}: {sent:?}"
        );
    }
    assert_eq!(shown(&sim, 1), ["m0-0", "m0-1", "m0-2"]);
    assert_eq!(
        shown_at(&sim, 1, "m0-0"),
        Some(secs(25)),
        "read on resuming"
    );
    assert_eq!(status(&sim, 0, 1), Some(Status::Active));
}

#[test]
fn lost_delayed_and_reordered_connections() {
    let mut sim = mesh(Config::default(), 13, 2);
    sim.run_until(secs(1));
    sim.plan_fault(0, 1, Fault::Lost);
    sim.at(secs(1), 0, Action::ChatTo(1)); // m0-0
    sim.at(secs(2), 0, Action::ChatTo(1)); // m0-1
    sim.run_until(secs(1) + Duration::from_millis(500));
    assert_eq!(outcome(&sim, 0, "m0-0"), Some(Err(REFUSED.into())));
    assert_eq!(status(&sim, 0, 1), Some(Status::Unreachable));
    sim.run_until(secs(3));
    assert_eq!(status(&sim, 0, 1), Some(Status::Active), "delivered again");
    sim.plan_fault(0, 1, Fault::Delay(secs(3)));
    sim.at(secs(4), 0, Action::ChatTo(1)); // m0-2
    sim.plan_fault(0, 1, Fault::Reorder);
    sim.at(secs(10), 0, Action::ChatTo(1)); // m0-3, held
    sim.at(secs(10), 0, Action::ChatTo(1)); // m0-4, read first
    sim.run_until(secs(20));
    assert_clean(&sim);
    assert!(shown_at(&sim, 1, "m0-2").is_some_and(|t| t >= secs(7)));
    assert_eq!(shown(&sim, 1), ["m0-1", "m0-2", "m0-4", "m0-3"]);
}

#[test]
fn a_black_holed_peer_fails_sends_at_the_timeout_and_is_removed() {
    let cfg = Config::default();
    let timeout = cfg.limits.send_timeout;
    let bound = removal_bound(&cfg.limits, cfg.check_failure_latency(true));
    let mut sim = mesh(cfg, 14, 3);
    sim.at(secs(10), 2, Action::BlackHole(true));
    sim.at(secs(11), 0, Action::ChatTo(2));
    sim.run_until(secs(10) + bound + secs(1));
    assert_clean(&sim);
    let failed = sim.trace.events(0).iter().find_map(|(t, e)| match e {
        Event::SendFailed { text, reason, .. } if text == "m0-0" => Some((*t, reason.clone())),
        _ => None,
    });
    assert_eq!(failed, Some((secs(11) + timeout, TIMED_OUT.into())));
    for i in 0..2 {
        let removed = sim.trace.events(i).iter().find_map(|(t, e)| match e {
            Event::PeerLeft {
                addr,
                reason: LeaveReason::Unreachable,
                ..
            } if *addr == sim.addr(2) => Some(*t),
            _ => None,
        });
        let removed = removed.expect("removed");
        assert!(
            removed - secs(10) <= bound,
            "{:?} > {bound:?}",
            removed - secs(10)
        );
    }
}

/// A command a `Handler` gives while the node quits (say, a reply to a message that
/// arrived meanwhile) is refused: sent after the `exit`, it would put the leaver back in
/// the receiver's table.
#[test]
fn a_command_given_while_quitting_is_not_sent_after_the_exit() {
    let mut sim = mesh(Config::default(), 15, 2);
    sim.at(secs(5), 0, Action::Quit);
    let command = Command::Send {
        dest: sim.addr(1),
        text: "one more thing".into(),
    };
    sim.at(secs(5), 0, Action::Exec(command));
    sim.run_until(secs(10));
    let wires = sim.trace.wires().iter();
    let texts: Vec<&str> = wires
        .filter(|w| w.src == 0)
        .map(|w| w.text.as_str())
        .collect();
    assert_eq!(
        texts.last(),
        Some(&"exit"),
        "nothing after the exit: {texts:?}"
    );
    // Forgotten, or, where it is a static peer, back to what it was at start-up.
    assert!(matches!(status(&sim, 1, 0), None | Some(Status::Static)));
    assert_clean(&sim);
}
