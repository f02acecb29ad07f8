//! A deterministic simulator that tests the pure core as a system, at scale.
//!
//! Many real [`crate::node::Node`]s run on a virtual network under a virtual clock, driven
//! exactly as the mio driver drives one (inputs, effects, `poll_transmit`, `poll_timeout`,
//! `is_finished`), each message encoded with the node's real header and decoded by a real
//! [`crate::wire::Decoder`]. Faults (refused, delayed and reordered connections, killed,
//! paused and black-holed nodes, partitions) are scheduled or drawn from a seeded
//! generator, and a trace checks the protocol's invariants as the run goes. A run takes
//! milliseconds of wall time for minutes of virtual time, and a seed replays it exactly.
//!
//! - `rng.rs`: the seeded generator;
//! - `setup.rs`: what a world is made of: configuration, nodes, scheduled actions;
//! - `net.rs`: the world: clock, event queue, connections and their fates, faults;
//! - `drive.rs`: how one node is driven, and how a connection is read;
//! - `trace.rs`: what a run saw, and the invariants checked as it goes;
//! - `checks.rs`: end-of-run checks, and the liveness bound;
//! - `scenarios.rs`: one test per protocol promise; `faults.rs`: scenarios under faults;
//! - `random.rs`: seeded randomized runs with every fault (`SIM_SEED` replays one);
//! - `scale.rs`: a 1,000-node run, with figures;
//! - `discovery.rs`: `--discover` on simulated LANs, with figures.

mod checks;
mod discovery;
mod drive;
mod faults;
mod net;
mod random;
pub(crate) mod rng;
mod scale;
mod scenarios;
mod setup;
mod trace;
