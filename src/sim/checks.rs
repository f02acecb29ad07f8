//! End-of-run checks, and the liveness bound they hold the nodes to.
//!
//! # The bound on detecting a dead peer
//!
//! From the rules in src/node/liveness.rs (and README, "Keeping up under faults"), with
//! `I` the probe interval, `F` the failures that make a peer unreachable and `d` the
//! longest time a failed check takes to be reported:
//!
//! - a watched peer's next check is never more than `1.2 I` after its last answer or the
//!   last time it was heard from (`heard` schedules `now + I`, a result `now + jitter`,
//!   jitter ≤ 1.2 I; checks may run up to `I/10` early, never late while fewer than 32
//!   checks are in flight). A dead peer answers nothing after its death `t`, so its
//!   first failing check starts by `t + 1.2 I` and ends by `t + 1.2 I + d`;
//! - each next check starts at most `1.2 I` after the previous result, so the `F`-th
//!   failure, which makes it unreachable, is reported by `u ≤ t + F (1.2 I + d)`;
//! - from then on checks back off but are never scheduled past `u + 4 I`, and the first
//!   failure reported at or after `u + 4 I` removes it: removal by `u + 4 I + d`.
//!
//! So every peer that knew a dead node removes it within
//! `F (1.2 I + d) + 4 I + d` of the death, and between becoming unreachable and removal
//! lie at least `4 I` and at most `4 I + d`. The bound holds for an observer that runs
//! undisturbed (not paused, not quitting) for that long.

use std::time::Duration;

use crate::config::Limits;
use crate::node::peers::Status;
use crate::sim::net::{Sim, State};

/// How long after a death every peer that knew the dead node has removed it.
pub(crate) fn removal_bound(limits: &Limits, d: Duration) -> Duration {
    let late_check = limits.probe_interval * 6 / 5; // jitter is at most +20%
    (late_check + d) * limits.probe_failures.max(1) + limits.probe_interval * 4 + d
}

/// How fast dead nodes were removed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Detection {
    /// From each death to its removal at each observer held to the bound, sorted.
    pub(crate) times: Vec<Duration>,
    /// Observers not held to the bound (disturbed, or the run ended too soon).
    pub(crate) skipped: usize,
}

impl Detection {
    /// (min, median, max), if anything was measured.
    pub(crate) fn spread(&self) -> Option<(Duration, Duration, Duration)> {
        let (first, last) = (self.times.first()?, self.times.last()?);
        Some((*first, self.times[self.times.len() / 2], *last))
    }
}

impl Sim {
    /// Whether node `i` was paused, quitting or gone at some time in `from..=to`.
    pub(crate) fn disturbed(&self, i: usize, from: Duration, to: Duration) -> bool {
        let t = &self.trace;
        t.pauses[i].iter().any(|&(p, q)| p <= to && q >= from)
            || t.quits[i].is_some_and(|q| q <= to)
            || t.deaths[i].is_some_and(|k| k <= to)
    }

    /// Every node that knew a killed node removed it within `removal_bound(limits, d)`
    /// of the death (marked it unreachable, and kept it, when it is one of its static
    /// peers), unless it was disturbed meanwhile; records violations otherwise.
    pub(crate) fn check_detection(&mut self, d: Duration) -> Detection {
        let bound = removal_bound(&self.cfg.limits, d);
        let grace = self.cfg.limits.probe_interval * 4;
        let mut found = Detection::default();
        let mut late = Vec::new();
        for (dead, died, watchers) in &self.trace.watchers {
            let (dead, died) = (*dead, *died);
            for &i in watchers {
                if died + bound > self.now || self.disturbed(i, died, died + bound) {
                    found.skipped += 1;
                    continue;
                }
                let (unreachable, removed) = self.trace.detection(i, dead);
                if self.nodes[i].static_peers.contains(&self.nodes[dead].addr) {
                    // A static peer is kept, unreachable, until it comes back (that it is
                    // listed as unreachable at the end is `check_final`'s: it may have
                    // been unreachable before it died).
                    match (unreachable, removed) {
                        (_, Some(_)) => late.push(format!(
                            "node {i} removed dead node {dead}, one of its static peers"
                        )),
                        (Some(u), None) if u - died > bound => late.push(format!(
                            "node {i} marked dead static peer {dead} unreachable after {:?} (bound {bound:?})",
                            u - died
                        )),
                        _ => found.skipped += 1,
                    }
                    continue;
                }
                match removed {
                    Some(r) if r - died <= bound => found.times.push(r - died),
                    Some(r) => late.push(format!(
                        "node {i} removed dead node {dead} after {:?} (bound {bound:?})",
                        r - died
                    )),
                    None => late.push(format!(
                        "node {i} never removed dead node {dead} (died at {died:?})"
                    )),
                }
                if let (Some(u), Some(r)) = (unreachable, removed) {
                    if r - u < grace || r - u > grace + d {
                        late.push(format!(
                            "node {i} removed node {dead} {:?} after marking it unreachable \
                             (documented: 4 intervals, {grace:?}, plus at most {d:?})",
                            r - u
                        ));
                    }
                }
            }
        }
        for what in late {
            self.trace.violation(self.now, what);
        }
        found.times.sort_unstable();
        found
    }

    /// At the end of a run: nothing sent stays unaccounted for, every quit finished within
    /// the quit wait, and no running node still lists a node that died or exited longer
    /// than `bound` ago; a static peer stays listed (unreachable, or as at start-up once its
    /// `exit` arrived).
    pub(crate) fn check_final(&mut self, bound: Duration) {
        let now = self.now;
        let mut found = Vec::new();
        let stuck_after = self.cfg.limits.send_timeout * 12;
        for ((src, dest, text), queued) in &self.trace.expected {
            let running = self.nodes[*src].state == State::Running;
            let finished = self.nodes[*src].state == State::Finished;
            if (running && now - *queued > stuck_after) || finished {
                found.push(format!(
                    "node {src} queued {text:?} for {dest} at {queued:?}: never reported sent or failed"
                ));
            }
        }
        let quit_wait = self.cfg.limits.quit_wait;
        for i in 0..self.nodes.len() {
            let (Some(quit), finish) = self.trace.quit_and_finish(i) else {
                continue;
            };
            let end = finish.unwrap_or(now);
            if self.nodes[i].state == State::Killed || self.disturbed_by_pause(i, quit, end) {
                continue;
            }
            if end - quit > quit_wait {
                found.push(format!(
                    "node {i} quit at {quit:?} and was not finished {:?} later (quit wait {quit_wait:?})",
                    end - quit
                ));
            }
        }
        for r in 0..self.nodes.len() {
            if self.nodes[r].state != State::Running || self.nodes[r].node.is_quitting() {
                continue;
            }
            for x in 0..self.nodes.len() {
                let gone = self.trace.deaths[x].or(self.trace.finishes[x]);
                let Some(gone) = gone else { continue };
                let paused: Duration = self.trace.pauses[r]
                    .iter()
                    .filter(|&&(_, q)| q >= gone)
                    .map(|&(p, q)| q - p)
                    .sum();
                if gone + bound + paused > now {
                    continue;
                }
                let listed = self.nodes[r].node.peers().get(self.nodes[x].addr);
                let kept_static = self.nodes[r].static_peers.contains(&self.nodes[x].addr);
                match listed {
                    // A static peer stays: unreachable, or as at start-up once its `exit`
                    // arrived.
                    Some(p)
                        if kept_static
                            && !matches!(p.status, Status::Unreachable | Status::Static) =>
                    {
                        found.push(format!(
                            "node {r} lists dead static peer {x} as {:?}, gone since {gone:?}",
                            p.status
                        ));
                    }
                    Some(_) if !kept_static => found.push(format!(
                        "node {r} still lists node {x}, gone since {gone:?}"
                    )),
                    None if kept_static => found.push(format!(
                        "node {r} forgot static peer {x}, gone since {gone:?}"
                    )),
                    _ => {}
                }
            }
        }
        found.sort();
        for what in found {
            self.trace.violation(now, what);
        }
    }

    fn disturbed_by_pause(&self, i: usize, from: Duration, to: Duration) -> bool {
        self.trace.pauses[i]
            .iter()
            .any(|&(p, q)| p <= to && q >= from)
    }
}

/// Fails with every invariant the run broke.
pub(crate) fn assert_clean(sim: &Sim) {
    let v = sim.trace.violations();
    assert!(v.is_empty(), "{v}");
}

/// What node `i`'s table says of node `of`.
pub(crate) fn status(sim: &Sim, i: usize, of: usize) -> Option<crate::node::peers::Status> {
    sim.node(i).peers().get(sim.addr(of)).map(|p| p.status)
}
