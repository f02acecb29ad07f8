//! Thirty peers at once, as in a lab: 30 `peerchat` processes on `127.0.100.2` ...
//! `127.0.100.31`, each greeting a few static peers at start-up; every peer sends to every
//! other, every message must arrive exactly once and every query must list the right peers;
//! then half of them quit and the others must remove exactly those.
//!
//! Address block `127.0.100.*`, port 0 everywhere. Peers start in parallel (three waves,
//! since a static peer's port is known only once it listens); every wait has a deadline and
//! waits for output lines.

mod common;

use common::{ip, Peer, LONG_WAIT};
use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::Instant;

const BLOCK: u8 = 100;
const PEERS: usize = 30;
/// The first peers, greeted by all the others.
const HUBS: usize = 3;

fn name(i: usize) -> String {
    format!("p{i:02}")
}

/// Starts peers `range` in parallel, each greeting the static peers `statics(i)`.
fn spawn_wave(
    range: std::ops::Range<usize>,
    statics: impl Fn(usize) -> Vec<String> + Sync,
) -> Vec<Peer> {
    thread::scope(|s| {
        let handles: Vec<_> = range
            .map(|i| {
                let args: Vec<String> = statics(i)
                    .into_iter()
                    .flat_map(|a| ["-s".to_string(), a])
                    .collect();
                s.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    Peer::spawn(&name(i), &ip(BLOCK, i as u8 + 2), &args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a peer failed to start"))
            .collect()
    })
}

#[test]
fn thirty_peers_all_to_all_then_half_quit() {
    let started = Instant::now();
    // Wave 1: p00. Wave 2: p01, p02 greet p00. Wave 3: everybody else greets the three hubs.
    let mut peers = spawn_wave(0..1, |_| Vec::new());
    let hub0 = peers[0].address();
    peers.extend(spawn_wave(1..HUBS, |_| vec![hub0.clone()]));
    let hubs: Vec<String> = peers.iter().map(Peer::address).collect();
    peers.extend(spawn_wave(HUBS..PEERS, |_| hubs.clone()));
    let addrs: Vec<String> = peers.iter().map(Peer::address).collect();
    println!("{PEERS} peers listening after {:?}", started.elapsed());

    // The greetings: every static peer answered connect_ack.
    let statics = |i: usize| -> Vec<usize> {
        match i {
            0 => vec![],
            1..HUBS => vec![0],
            _ => (0..HUBS).collect(),
        }
    };
    for (i, peer) in peers.iter_mut().enumerate() {
        for k in statics(i) {
            peer.expect_line_within(
                &format!("* connect_ack from {} {}", name(k), addrs[k]),
                LONG_WAIT,
            );
        }
    }
    for (k, hub) in peers.iter_mut().enumerate().take(HUBS) {
        let greeters = (0..PEERS).filter(|&i| statics(i).contains(&k)).count();
        hub.expect_many("`* connect from` lines", greeters, LONG_WAIT, |l| {
            l.starts_with("* connect from ") && l.ends_with("(answering with connect_ack)")
        });
    }
    println!("greetings done after {:?}", started.elapsed());

    // Everybody sends to everybody else, typed as one block each.
    for (i, peer) in peers.iter_mut().enumerate() {
        let mut block = String::new();
        for (j, addr) in addrs.iter().enumerate().filter(|(j, _)| *j != i) {
            block.push_str(&format!("/send {addr} m {i}->{j}\n"));
        }
        peer.write_stdin(block.as_bytes());
    }
    for (j, peer) in peers.iter_mut().enumerate() {
        let got = peer.expect_many("chat messages", PEERS - 1, LONG_WAIT, |l| {
            l.starts_with('[')
        });
        let expected: BTreeSet<String> = (0..PEERS)
            .filter(|&i| i != j)
            .map(|i| format!("[{} {}] m {i}->{j}", name(i), addrs[i]))
            .collect();
        let got_set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            got_set,
            expected,
            "{}: one message from each other peer",
            name(j)
        );
        peer.expect_many("`* sent to` lines", PEERS - 1, LONG_WAIT, |l| {
            l.starts_with("* sent to ") && l.contains(" m ")
        });
    }
    println!("all-to-all done after {:?}", started.elapsed());

    // Every query lists exactly the other 29, active, by name, one message heard from each.
    for (i, peer) in peers.iter_mut().enumerate() {
        let rows = peer.query();
        let listed: BTreeMap<String, Vec<String>> =
            rows.into_iter().map(|r| (r[0].clone(), r)).collect();
        let others: BTreeSet<&String> = addrs.iter().filter(|a| **a != addrs[i]).collect();
        assert_eq!(
            listed.keys().collect::<BTreeSet<_>>(),
            others,
            "{}: the query lists every other peer",
            name(i)
        );
        for (j, addr) in addrs.iter().enumerate().filter(|(j, _)| *j != i) {
            let row = &listed[addr];
            assert!(
                row[1] == name(j) && row[2] == "active" && row[5] == "1",
                "{}: row of {}: {row:?}",
                name(i),
                name(j)
            );
            if statics(i).contains(&j) {
                assert_eq!(
                    row[3],
                    "static",
                    "{}: {} is static: {row:?}",
                    name(i),
                    name(j)
                );
            }
        }
    }

    // Half of them quit (the odd ones, a hub among them), all at once.
    let quitters: Vec<usize> = (0..PEERS).filter(|i| i % 2 == 1).collect();
    for &q in &quitters {
        peers[q].close_stdin();
    }
    for &q in &quitters {
        peers[q].exit_ok(LONG_WAIT);
    }
    println!("half quit after {:?}", started.elapsed());
    let stayers: Vec<usize> = (0..PEERS).filter(|i| i % 2 == 0).collect();
    for &s in &stayers {
        let peer = &mut peers[s];
        let got: BTreeSet<String> = peer
            .expect_many("`left (exit)` lines", quitters.len(), LONG_WAIT, |l| {
                l.ends_with(" left (exit)")
            })
            .into_iter()
            .collect();
        let expected: BTreeSet<String> = quitters
            .iter()
            .map(|&q| format!("* {} {} left (exit)", name(q), addrs[q]))
            .collect();
        assert_eq!(got, expected, "{}: exactly the quitters left", name(s));
        let rows = peer.query();
        let listed: BTreeSet<String> = rows.iter().map(|r| r[0].clone()).collect();
        // The stayers, and its static peers that quit: those stay, back to `static` (not
        // active), to be greeted when they answer again.
        let static_quitters: Vec<usize> = statics(s)
            .into_iter()
            .filter(|q| quitters.contains(q))
            .collect();
        let others: BTreeSet<String> = stayers
            .iter()
            .filter(|&&o| o != s)
            .chain(&static_quitters)
            .map(|&o| addrs[o].clone())
            .collect();
        assert_eq!(listed, others, "{}: only the stayers are listed", name(s));
        for &q in &static_quitters {
            let row = rows.iter().find(|r| r[0] == addrs[q]);
            assert!(
                row.is_some_and(|r| r[2] == "static"),
                "{}: static peer {} after its exit: {row:?}",
                name(s),
                name(q)
            );
        }
        let all_left = peer.lines_matching(|l| l.contains(" left ("));
        assert_eq!(
            all_left.len(),
            quitters.len(),
            "{}: nobody else left: {all_left:?}",
            name(s)
        );
        let chats = peer.lines_matching(|l| l.starts_with('['));
        assert_eq!(chats.len(), PEERS - 1, "{}: no duplicates", name(s));
    }
    for &s in &stayers {
        peers[s].quit_ok();
    }
    println!("done after {:?}", started.elapsed());
}
