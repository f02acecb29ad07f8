//! Seeded randomized runs: a random network (size, topology, header forms, claimed IPs,
//! liveness settings, connection budget), a random workload (chat to all, chat to one)
//! and every fault at random (refused, delayed and reordered connections, kills, quits,
//! pauses, black holes, a partition that heals), with the invariants of `trace.rs` and
//! `checks.rs` checked across the whole network.
//!
//! A run is a pure function of its seed: [`run_seed`] replays one exactly, and a failure
//! names its seed. To replay one seed alone (add `--nocapture` to see its summary):
//!
//! ```text
//! SIM_SEED=17 cargo test --lib sim::random
//! ```
//!
//! and to soak, `SIM_SEEDS=1000` runs seeds 1 to 1000.

use std::net::IpAddr;
use std::time::Duration;

use crate::sim::checks::{removal_bound, Detection};
use crate::sim::net::Sim;
use crate::sim::rng::Rng;
use crate::sim::setup::{addr_of, secs, Action, Config, Faults, Spec};
use crate::wire::Format;

/// The seeds a plain `cargo test` runs.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=24;

/// What one randomized run found.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Nodes in the network.
    pub(crate) nodes: usize,
    /// Queue entries processed.
    pub(crate) processed: u64,
    /// A digest of every connection opened: equal for equal seeds.
    pub(crate) fingerprint: u64,
    /// How fast dead nodes were removed.
    pub(crate) detection: Detection,
    /// Every broken invariant (empty when all held), naming the seed.
    pub(crate) violations: String,
}

/// Builds, runs and checks the network that `seed` describes.
pub(crate) fn run_seed(seed: u64) -> Outcome {
    // The network is drawn from one generator, the run's own choices from another.
    let mut rng = Rng::new(seed ^ 0x5EED_5EED_5EED_5EED);
    let mut cfg = Config {
        record: false,
        ..Config::default()
    };
    cfg.limits.probe_interval = secs([5, 10, 30][rng.index(3)]);
    cfg.limits.probe_failures = 1 + u32::try_from(rng.below(3)).unwrap_or(0);
    cfg.limits.max_in_flight = [2, 8, 256][rng.index(3)];
    cfg.faults = Faults {
        lose: 0.02,
        delay: 0.02,
        reorder: 0.02,
        delay_max: secs(2),
        hold_max: secs(1),
    };
    let n = 6 + rng.index(20);
    let mut sim = Sim::new(cfg.clone(), seed);
    let claimed_wrong: IpAddr = [127, 0, 1, 1].into();
    for i in 0..n {
        let mut peers = vec![(i + 1) % n];
        for _ in 0..rng.below(3) {
            peers.push(rng.index(n));
        }
        peers.retain(|&j| j != i);
        peers.sort_unstable();
        peers.dedup();
        let mut spec = Spec::new(&format!("n{i}")).greets(&peers);
        if rng.chance(0.3) {
            spec.format = Format::Spaced;
        }
        spec.claim = match rng.index(3) {
            0 => None,
            1 => Some(addr_of(i).ip()),
            _ => Some(claimed_wrong),
        };
        sim.add(spec);
        sim.at(rng.between(Duration::ZERO, secs(2)), i, Action::Start);
    }
    // Chat and faults happen until `busy`; pauses, black holes and the partition end
    // within a minute after.
    let busy = secs(120);
    for i in 0..n {
        for _ in 0..rng.below(6) {
            let chat = if rng.chance(0.5) {
                Action::Chat
            } else {
                Action::ChatOne
            };
            sim.at(rng.between(secs(3), busy), i, chat);
        }
        let at = rng.between(secs(10), busy);
        match rng.index(10) {
            0 => sim.at(at, i, Action::Kill),
            1 => sim.at(at, i, Action::Quit),
            2 => sim.at(at, i, Action::Interrupt),
            3 => sim.at(at, i, Action::Pause(rng.between(secs(1), secs(60)))),
            4 => {
                sim.at(at, i, Action::BlackHole(true));
                let off = at + rng.between(secs(5), secs(60));
                sim.at(off, i, Action::BlackHole(false));
            }
            _ => {}
        }
    }
    if rng.chance(0.5) {
        let group: Vec<usize> = (0..n).filter(|_| rng.chance(0.4)).collect();
        let at = rng.between(secs(10), busy);
        sim.partition_at(at, group);
        sim.heal_at(at + rng.between(secs(5), secs(60)));
    }
    let d = cfg.check_failure_latency(true);
    let bound = removal_bound(&cfg.limits, d);
    sim.run_until(busy + secs(60) + bound + secs(30));
    let detection = sim.check_detection(d);
    sim.check_final(bound);
    Outcome {
        nodes: n,
        processed: sim.processed,
        fingerprint: sim.trace.fingerprint(),
        detection,
        violations: sim.trace.violations(),
    }
}

/// `SIM_SEED` if set, else seeds 1 to `SIM_SEEDS` if set, else the default seeds.
fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return vec![seed.trim().parse().expect("SIM_SEED must be a u64")];
    }
    match std::env::var("SIM_SEEDS") {
        Ok(last) => (1..=last.trim().parse().expect("SIM_SEEDS must be a u64")).collect(),
        Err(_) => SEEDS.collect(),
    }
}

#[test]
fn random_runs_keep_the_invariants() {
    for seed in seeds() {
        let outcome = run_seed(seed);
        let spread = outcome.detection.spread();
        println!(
            "seed {seed}: {} nodes, {} events, {} deaths measured ({} skipped), detection {spread:?}",
            outcome.nodes,
            outcome.processed,
            outcome.detection.times.len(),
            outcome.detection.skipped,
        );
        assert!(
            outcome.violations.is_empty(),
            "{}\nreplay: SIM_SEED={seed} cargo test --lib sim::random -- --nocapture",
            outcome.violations
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    let (first, again) = (run_seed(42), run_seed(42));
    assert_eq!(first.fingerprint, again.fingerprint);
    assert_eq!(first.processed, again.processed);
    assert_eq!(first.detection.times, again.detection.times);
    assert_ne!(run_seed(43).fingerprint, first.fingerprint);
}
