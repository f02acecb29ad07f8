//! Discovery in the simulator: nodes with `--discover` on simulated LANs (a multicast group
//! is a set of nodes; a datagram reaches every member after the network's latency), with
//! the real `node::discovery` on every node. A LAN finds itself; two LANs joined only by
//! one node's static peer converge through peer exchange; forged announcements draw only
//! bare queries towards their spoofed sources; with liveness checks on, no peerchat is
//! dropped as silent. Each prints the time to full tables and the datagrams sent per node
//! (`--nocapture`). `SIM_DISCOVERY_NODES` sets the size of the one-LAN run (default 200; a
//! full mesh costs N² connections: 1,000 nodes take about 2 minutes in a debug build, and
//! are complete after 1214 s virtual, two intervals, because a node admits at most 256 new
//! peers a minute).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::sim::net::Sim;
use crate::sim::rng::Rng;
use crate::sim::setup::{secs, Action, Config, Spec};

fn group(n: u8) -> SocketAddr {
    SocketAddr::from(([239, 255, 77, n], 5077))
}

/// A world without liveness checks (they would dominate a full mesh) and without faults.
fn world(seed: u64) -> Sim {
    let mut cfg = Config {
        record: false,
        greetings_only: false,
        ..Config::default()
    };
    cfg.limits.probe_interval = Duration::ZERO;
    Sim::new(cfg, seed)
}

/// Runs in steps of 50 ms until every node among `nodes` knows `want` peers; when.
fn until_complete(sim: &mut Sim, nodes: &[usize], want: usize, limit: Duration) -> Duration {
    while sim.now() < limit {
        if nodes.iter().all(|&i| sim.node(i).peers().len() >= want) {
            return sim.now();
        }
        let next = sim.now() + Duration::from_millis(50);
        sim.run_until(next);
    }
    let short: Vec<(usize, usize)> = nodes
        .iter()
        .map(|&i| (i, sim.node(i).peers().len()))
        .filter(|(_, n)| *n < want)
        .take(10)
        .collect();
    panic!("not complete after {limit:?}: (node, peers known) {short:?}");
}

fn spread(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    let at = |i: usize| v.get(i).copied().unwrap_or_default();
    (at(0), at(v.len() / 2), at(v.len().saturating_sub(1)))
}

#[test]
fn a_lan_of_nodes_finds_itself() {
    let wall = Instant::now();
    let n: usize = std::env::var("SIM_DISCOVERY_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut sim = world(7);
    let mut rng = Rng::new(7);
    for i in 0..n {
        sim.add(Spec::new(&format!("n{i}")).discovers(group(1)));
        // Everyone starts within the first 10 s.
        sim.at(rng.between(Duration::ZERO, secs(10)), i, Action::Start);
    }
    let all: Vec<usize> = (0..n).collect();
    // Beyond NEW_PEERS_PER_WINDOW (256 a minute) new peers, a node admits the rest at
    // their next announcements (one interval later): a big LAN takes a few intervals.
    let limit = match n > 256 {
        true => secs(4 * 600),
        false => secs(120),
    };
    let done = until_complete(&mut sim, &all, n - 1, limit);
    let at_start = spread(sim.datagrams.clone());
    let bytes_at_start = spread(sim.datagram_bytes.clone());
    if n > 300 {
        println!(
            "discovery, {n} nodes on one LAN started within 10 s: every table complete at \
             {done:?} (virtual); datagrams sent per node until then (min/median/max) \
             {at_start:?}, bytes {bytes_at_start:?}; wall time {:.2?}",
            wall.elapsed()
        );
        return;
    }
    // Settled (the queries of the start-up sent): count the second hour's datagrams.
    let hour = secs(3600);
    sim.run_until(hour);
    let before = (sim.datagrams.clone(), sim.datagram_bytes.clone());
    sim.run_until(hour * 2);
    let since =
        |now: &[u64], then: &[u64]| spread(now.iter().zip(then).map(|(a, b)| a - b).collect());
    let per_hour = since(&sim.datagrams, &before.0);
    let bytes_per_hour = since(&sim.datagram_bytes, &before.1);
    println!(
        "discovery, {n} nodes on one LAN started within 10 s: every table complete at {done:?} \
         (virtual); datagrams sent per node until then (min/median/max) {at_start:?}, bytes \
         {bytes_at_start:?}; per node per hour once settled {per_hour:?}, bytes \
         {bytes_per_hour:?}; wall time {:.2?}",
        wall.elapsed()
    );
    assert!(
        done <= secs(11),
        "complete within a second of the last start"
    );
    // Per hour: 6 announcements, 6 queries, about 6 answers.
    assert!(per_hour.2 <= 6 + 6 + 2 * 60, "{per_hour:?}");
    assert!(per_hour.1 <= 18, "{per_hour:?}");
    let violations = sim.trace.violations();
    assert!(violations.is_empty(), "{violations}");
}

/// Forged announcements: 20 hellos whose source is a UDP port of their choosing on a host
/// whose named TCP port accepts (a peer without discovery: any service would do), heard by
/// a LAN of 50. Every peerchat greets the host, as discovery does, and sends each forged
/// source a bare query, which nobody there answers: nothing larger than the hello, and no
/// padded query, ever goes towards the spoofed ports.
#[test]
fn forged_hellos_draw_only_bare_queries_towards_their_spoofed_sources() {
    let n = 50;
    let mut sim = world(13);
    for i in 0..n {
        sim.add(Spec::new(&format!("n{i}")).discovers(group(1)));
        sim.at(Duration::from_millis(10 * i as u64), i, Action::Start);
    }
    let victim = sim.add(Spec::new("victim"));
    sim.at(Duration::ZERO, victim, Action::Start);
    let host = sim.addr(victim);
    let hello = format!("peerchat1 hello x {}", host.port());
    let spoofed = |p: u16| SocketAddr::new(host.ip(), 9000 + p);
    for p in 0..20 {
        // Once the start-up's queries are out, so that these wait in no queue.
        let at = secs(300) + Duration::from_millis(100 * u64::from(p));
        sim.forge_at(at, spoofed(p), group(1), hello.as_bytes());
    }
    sim.run_until(secs(3600));
    let (mut count, mut bytes, mut largest) = (0, 0, 0);
    for p in 0..20 {
        if let Some(&(c, b, l)) = sim.unicast.get(&spoofed(p)) {
            (count, bytes, largest) = (count + c, bytes + b, largest.max(l));
        }
    }
    println!(
        "discovery, 20 forged hellos ({} bytes each) heard by 50 peerchats: {count} datagrams, \
         {bytes} bytes towards the spoofed sources in an hour, the largest {largest} bytes",
        hello.len()
    );
    assert!(count > 0, "the forged sources were asked (bare)");
    assert!(largest <= hello.len() + 8, "{largest} bytes at once");
    assert!(
        count <= 20 * n as u64,
        "at most one query a source a peerchat: {count}"
    );
    let violations = sim.trace.violations();
    assert!(violations.is_empty(), "{violations}");
}

/// With liveness checks on (every 30 s), a LAN of 50 that found itself keeps every
/// peerchat: each answered its greetings, so none is dropped as silent (the trace counts
/// such a drop of a running node as a violation), and every table stays complete.
#[test]
fn checked_peerchats_are_never_dropped_as_silent() {
    let n = 50;
    let mut cfg = Config {
        record: false,
        greetings_only: false,
        ..Config::default()
    };
    cfg.limits.probe_interval = secs(30);
    let mut sim = Sim::new(cfg, 17);
    for i in 0..n {
        sim.add(Spec::new(&format!("n{i}")).discovers(group(1)));
        sim.at(Duration::from_millis(20 * i as u64), i, Action::Start);
    }
    let all: Vec<usize> = (0..n).collect();
    until_complete(&mut sim, &all, n - 1, secs(60));
    sim.run_until(secs(1800));
    let short: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| sim.node(i).peers().len() < n - 1)
        .collect();
    assert!(short.is_empty(), "tables no longer complete: {short:?}");
    let violations = sim.trace.violations();
    assert!(violations.is_empty(), "{violations}");
}

#[test]
fn two_lans_joined_by_one_node_converge_through_exchange() {
    let wall = Instant::now();
    // Two LANs of 16 (at most 32 peers fit in one answer); node 16, in LAN B, greets
    // node 0 of LAN A. Nothing else crosses.
    let half = 16;
    let mut sim = world(11);
    for i in 0..2 * half {
        let lan = if i < half { group(1) } else { group(2) };
        let mut spec = Spec::new(&format!("n{i}")).discovers(lan);
        if i == half {
            spec = spec.greets(&[0]);
        }
        sim.add(spec);
        sim.at(Duration::from_millis(10 * i as u64), i, Action::Start);
    }
    let all: Vec<usize> = (0..2 * half).collect();
    let done = until_complete(&mut sim, &all, 2 * half - 1, secs(8 * 3600));
    println!(
        "discovery, two LANs of {half} joined by one node: every table complete at {done:?} \
         (virtual, announce interval 600 s); datagrams per node {:?}, bytes {:?}; wall time \
         {:.2?}",
        spread(sim.datagrams.clone()),
        spread(sim.datagram_bytes.clone()),
        wall.elapsed()
    );
    // Learned across by exchange: a node of LAN A files a node of LAN B as exchanged, or
    // as heard (greeted by it after it learned of us).
    let violations = sim.trace.violations();
    assert!(violations.is_empty(), "{violations}");
}
