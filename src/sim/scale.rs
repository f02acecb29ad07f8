//! A 1,000-node simulated run, in a plain (debug) `cargo test`: every node greets a ring
//! neighbour and two random peers, everyone chats to all its active peers three times,
//! 2% die and 2% quit, a few connections are refused or delayed; the whole network's
//! invariants are checked, and what it measures is printed (`--nocapture`): messages
//! and connections per node, and how long each death took to be noticed by each peer.

use std::time::{Duration, Instant};

use crate::sim::checks::removal_bound;
use crate::sim::net::Sim;
use crate::sim::rng::Rng;
use crate::sim::setup::{secs, Action, Config, Faults, Spec};

const NODES: usize = 1000;

/// (min, median, max) of `values`.
fn spread<T: Ord + Copy + Default>(mut values: Vec<T>) -> (T, T, T) {
    values.sort_unstable();
    let at = |i: usize| values.get(i).copied().unwrap_or_default();
    (
        at(0),
        at(values.len() / 2),
        at(values.len().saturating_sub(1)),
    )
}

#[test]
fn a_thousand_nodes() {
    let wall = Instant::now();
    let seed = 1000;
    let mut rng = Rng::new(seed ^ 0x5CA1E);
    let mut cfg = Config {
        record: false,
        ..Config::default()
    };
    cfg.faults = Faults {
        lose: 0.002,
        delay: 0.002,
        ..cfg.faults
    };
    let mut sim = Sim::new(cfg.clone(), seed);
    for i in 0..NODES {
        let mut peers = vec![(i + 1) % NODES, rng.index(NODES), rng.index(NODES)];
        peers.retain(|&j| j != i);
        peers.sort_unstable();
        peers.dedup();
        sim.add(Spec::new(&format!("n{i}")).greets(&peers));
        sim.at(Duration::ZERO, i, Action::Start);
        for _ in 0..3 {
            sim.at(rng.between(secs(5), secs(60)), i, Action::Chat);
        }
    }
    let (mut killed, mut quit) = (0, 0);
    for i in 0..NODES {
        let at = rng.between(secs(30), secs(90));
        match rng.index(50) {
            0 => {
                sim.at(at, i, Action::Kill);
                killed += 1;
            }
            1 => {
                sim.at(at, i, Action::Quit);
                quit += 1;
            }
            _ => {}
        }
    }
    let d = cfg.check_failure_latency(false);
    let bound = removal_bound(&cfg.limits, d);
    sim.run_until(secs(90) + bound + secs(10));
    let detection = sim.check_detection(d);
    sim.check_final(bound);
    let elapsed = wall.elapsed();

    let stats = &sim.trace.stats;
    let received = spread(stats.iter().map(|s| s.received).collect());
    let sent = spread(stats.iter().map(|s| s.sent).collect());
    let checks = spread(stats.iter().map(|s| s.checks).collect());
    let conns = spread(stats.iter().map(|s| s.sent + s.checks).collect());
    let total: u64 = stats.iter().map(|s| s.sent + s.checks).sum();
    let (fastest, median, slowest) = detection.spread().unwrap_or_default();
    println!(
        "{NODES} nodes, {killed} killed, {quit} quit, {:?} virtual",
        sim.now()
    );
    println!("  chat messages shown per node (min/median/max): {received:?}");
    println!("  message connections per node: {sent:?}; liveness checks per node: {checks:?}");
    println!(
        "  connections per node: {conns:?}; {total} in all; {} queue entries",
        sim.processed
    );
    println!(
        "  death to removal, {} (observer, dead) pairs ({} skipped): min {fastest:.1?}, \
         median {median:.1?}, max {slowest:.1?}; bound {bound:.1?}",
        detection.times.len(),
        detection.skipped
    );
    println!("  wall time {elapsed:.2?}");
    let violations = sim.trace.violations();
    assert!(violations.is_empty(), "{violations}");
    assert!(killed > 0 && quit > 0);
    assert!(detection.times.len() >= killed, "every death was noticed");
    assert!(received.1 >= 3, "a median node hears at least three chats");
}
