//! What a simulated run saw, and the invariants checked as it goes.
//!
//! The trace watches every connection opened, every connection read and every event a
//! node shows, and records a violation (with the seed and the virtual time) whenever:
//!
//! - a message's wire form is longer than `wire::MAX_WIRE_MESSAGE`;
//! - a connection does not decode to exactly the message that was sent;
//! - a message is shown under another identity than its sender's listening address;
//! - a chat text is shown twice by one node, or out of its sender's order (pairs with an
//!   injected reorder fault excepted);
//! - a peer that said `exit` is still in the receiver's table, or joins it again later;
//! - `connect` answers a `connect`, or goes out other than as a start-up greeting.
//!
//! It also keeps what end-of-run checks need (`checks.rs`): deaths and who knew the dead,
//! removals, pauses, quits and finishes, messages still unaccounted for; and counts per node.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::node::event::LeaveReason;
use crate::sim::net::Payload;
use crate::sim::setup::Fault;
use crate::wire::{self, Body, Message, MAX_WIRE_MESSAGE};
use crate::Event;

/// Violations kept in full; more are only counted.
const KEEP: usize = 20;

/// What one node did, in counts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    /// Message connections opened.
    pub(crate) sent: u64,
    /// Liveness checks opened.
    pub(crate) checks: u64,
    /// Connections read to the end.
    pub(crate) read: u64,
    /// Chat messages shown.
    pub(crate) received: u64,
}

/// One message connection, when recording.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    pub(crate) src: usize,
    pub(crate) dest: SocketAddr,
    pub(crate) text: String,
    pub(crate) len: usize,
}

/// What a run saw.
#[derive(Debug)]
pub(crate) struct Trace {
    record: bool,
    seed: u64,
    index: HashMap<SocketAddr, usize>,
    addrs: Vec<SocketAddr>,
    log: Vec<Vec<(Duration, Event)>>,
    wires: Vec<Wire>,
    violations: Vec<String>,
    violation_count: usize,
    /// (receiver, text) of every chat shown.
    seen: HashSet<(usize, String)>,
    /// Last chat number shown, by (sender, receiver).
    last: HashMap<(usize, usize), u64>,
    /// (sender, receiver) pairs with a reorder fault injected.
    exempt: HashSet<(usize, usize)>,
    /// (receiver, leaver): when the leaver's `exit` was read.
    exits: HashMap<(usize, usize), Duration>,
    /// (sender, destination, text) queued and not yet reported sent or failed.
    pub(super) expected: HashMap<(usize, SocketAddr, String), Duration>,
    greeted: HashSet<(usize, SocketAddr)>,
    /// Greetings (`connect`) that reached their peer.
    greetings_arrived: HashSet<(usize, SocketAddr)>,
    pub(super) deaths: Vec<Option<Duration>>,
    /// (dead, when, the nodes whose table held it then).
    pub(super) watchers: Vec<(usize, Duration, Vec<usize>)>,
    /// (observer, dead): first `PeerLeft { reason: Unreachable }` after the death.
    pub(super) removals: HashMap<(usize, usize), Duration>,
    /// (observer, dead): first `PeerUnreachable` after the death.
    pub(super) unreachable: HashMap<(usize, usize), Duration>,
    pub(super) pauses: Vec<Vec<(Duration, Duration)>>,
    pub(super) quits: Vec<Option<Duration>>,
    pub(super) finishes: Vec<Option<Duration>>,
    quitting_said: Vec<u32>,
    pub(crate) stats: Vec<Stats>,
    fingerprint: u64,
}

impl Trace {
    /// An empty trace; `record` keeps every event and wire size.
    pub(crate) fn new(record: bool, seed: u64) -> Self {
        Trace {
            record,
            seed,
            index: HashMap::new(),
            addrs: Vec::new(),
            log: Vec::new(),
            wires: Vec::new(),
            violations: Vec::new(),
            violation_count: 0,
            seen: HashSet::new(),
            last: HashMap::new(),
            exempt: HashSet::new(),
            exits: HashMap::new(),
            expected: HashMap::new(),
            greeted: HashSet::new(),
            greetings_arrived: HashSet::new(),
            deaths: Vec::new(),
            watchers: Vec::new(),
            removals: HashMap::new(),
            unreachable: HashMap::new(),
            pauses: Vec::new(),
            quits: Vec::new(),
            finishes: Vec::new(),
            quitting_said: Vec::new(),
            stats: Vec::new(),
            fingerprint: 0xCBF2_9CE4_8422_2325,
        }
    }

    pub(super) fn add_node(&mut self, addr: SocketAddr) {
        self.index.insert(addr, self.log.len());
        self.addrs.push(addr);
        self.log.push(Vec::new());
        self.deaths.push(None);
        self.pauses.push(Vec::new());
        self.quits.push(None);
        self.finishes.push(None);
        self.quitting_said.push(0);
        self.stats.push(Stats::default());
    }

    /// The node listening at `addr`.
    pub(crate) fn node_at(&self, addr: SocketAddr) -> Option<usize> {
        self.index.get(&addr).copied()
    }

    /// Records a broken invariant.
    pub(crate) fn violation(&mut self, now: Duration, what: String) {
        self.violation_count += 1;
        if self.violations.len() < KEEP {
            self.violations
                .push(format!("seed {} at {now:?}: {what}", self.seed));
        }
    }

    /// Every broken invariant so far (the first few in full), empty when all held.
    pub(crate) fn violations(&self) -> String {
        if self.violation_count == 0 {
            return String::new();
        }
        format!(
            "{} violations with seed {}:\n{}",
            self.violation_count,
            self.seed,
            self.violations.join("\n")
        )
    }

    /// What node `i` showed, when recording.
    pub(crate) fn events(&self, i: usize) -> &[(Duration, Event)] {
        &self.log[i]
    }

    /// Every message connection, when recording.
    pub(crate) fn wires(&self) -> &[Wire] {
        &self.wires
    }

    /// A digest of every connection opened (time, ends, payload), to compare replays.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn mix(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.fingerprint ^= u64::from(b);
            self.fingerprint = self.fingerprint.wrapping_mul(0x0100_0000_01B3);
        }
    }

    pub(super) fn opened(
        &mut self,
        src: usize,
        dest: SocketAddr,
        to: Option<usize>,
        payload: &Payload,
        fault: Option<Fault>,
        now: Duration,
    ) {
        self.mix(&now.as_nanos().to_le_bytes());
        self.mix(&src.to_le_bytes());
        self.mix(dest.to_string().as_bytes());
        match payload {
            Payload::Check => self.stats[src].checks += 1,
            Payload::Message { text, bytes } => {
                self.stats[src].sent += 1;
                self.mix(text.as_bytes());
                if bytes.len() > MAX_WIRE_MESSAGE {
                    let what =
                        format!("node {src} put {} bytes on the wire to {dest}", bytes.len());
                    self.violation(now, what);
                }
                if self.record {
                    let (text, len) = (text.clone(), bytes.len());
                    self.wires.push(Wire {
                        src,
                        dest,
                        text,
                        len,
                    });
                }
            }
        }
        if let (Some(Fault::Reorder), Some(to)) = (fault, to) {
            self.exempt.insert((src, to));
        }
    }

    /// Node `i` read `text`'s connection from `src`, decoded into `messages`.
    pub(super) fn delivered(
        &mut self,
        i: usize,
        src: usize,
        text: &str,
        messages: &[Message],
        now: Duration,
    ) {
        self.stats[i].read += 1;
        // The decoder trims trailing whitespace (wire/decoder.rs, "Decision rules").
        let want = wire::control_word(text).unwrap_or_else(|| Body::Chat(text.trim_end().into()));
        let got: Vec<&Body> = messages.iter().map(|m| &m.body).collect();
        if got != [&want] {
            let what = format!(
                "node {i} read {:?} from node {src}, which sent {:?}",
                got.iter()
                    .map(|b| short(&format!("{b:?}")))
                    .collect::<Vec<_>>(),
                short(text)
            );
            self.violation(now, what);
        }
    }

    /// Node `i` showed `event`; `sender` is the node whose connection it was reading.
    pub(super) fn show(&mut self, i: usize, now: Duration, event: Event, sender: Option<usize>) {
        match &event {
            Event::Message { from, text } => self.message(i, now, from.addr(), text, sender),
            Event::PeerLeft { addr, reason, .. } => {
                if *reason == LeaveReason::Exit {
                    // A static peer that said `exit` may be greeted once more when it
                    // answers again.
                    self.greeted.remove(&(i, *addr));
                }
                let j = self.node_at(*addr);
                if let Some(j) =
                    j.filter(|&j| *reason == LeaveReason::Unreachable && self.dead(j, now))
                {
                    self.removals.entry((i, j)).or_insert(now);
                }
                // Every simulated node answers a greeting: none is ever silent.
                if let Some(j) = j.filter(|_| *reason == LeaveReason::Silent) {
                    self.violation(now, format!("node {i} dropped node {j} as silent"));
                }
            }
            Event::PeerBack { addr, .. } => {
                // A static peer back after being unreachable may be greeted once more.
                self.greeted.remove(&(i, *addr));
            }
            Event::PeerUnreachable { addr, .. } => {
                if let Some(j) = self.node_at(*addr).filter(|&j| self.dead(j, now)) {
                    self.unreachable.entry((i, j)).or_insert(now);
                }
            }
            Event::PeerJoined { addr, .. } => {
                if let Some(j) = self.node_at(*addr) {
                    if self.exits.contains_key(&(i, j)) && !self.exempt.contains(&(j, i)) {
                        let what = format!("node {j} joined node {i}'s table again after its exit");
                        self.violation(now, what);
                    }
                }
            }
            Event::Sent { dest, text, .. } | Event::SendFailed { dest, text, .. } => {
                self.expected.remove(&(i, *dest, text.clone()));
            }
            _ => {}
        }
        if self.record {
            self.log[i].push((now, event));
        }
    }

    fn dead(&self, j: usize, now: Duration) -> bool {
        self.deaths[j].is_some_and(|t| t <= now)
    }

    fn message(
        &mut self,
        i: usize,
        now: Duration,
        from: Option<SocketAddr>,
        text: &str,
        sender: Option<usize>,
    ) {
        self.stats[i].received += 1;
        let Some(s) = sender else {
            let what = format!("node {i} showed {:?} outside a read", short(text));
            return self.violation(now, what);
        };
        let actual = self.addrs.get(s).copied();
        if from != actual {
            let what = format!(
                "node {i} showed {:?} from {from:?}, sent by node {s} at {actual:?}",
                short(text)
            );
            self.violation(now, what);
        }
        // Only the workload's texts are unique; other tests may send the same text twice.
        let Some((author, n)) = parse_chat(text) else {
            return;
        };
        if !self.seen.insert((i, text.to_owned())) {
            self.violation(now, format!("node {i} showed {text:?} twice"));
        }
        if author != s {
            let what = format!("node {i} got {text:?} from node {s}, not its author");
            self.violation(now, what);
        }
        let last = self.last.insert((s, i), n);
        if last.is_some_and(|last| last >= n) && !self.exempt.contains(&(s, i)) {
            let what = format!(
                "node {i} showed {text:?} after m{s}-{}: out of order",
                last.unwrap_or(0)
            );
            self.violation(now, what);
        }
    }

    /// Node `i` queued `text` for each of `dests`.
    pub(super) fn expect(&mut self, i: usize, dests: &[SocketAddr], text: &str, now: Duration) {
        for dest in dests {
            self.expected.insert((i, *dest, text.to_owned()), now);
        }
    }

    /// Node `i` began quitting with these active peers: each is owed an `exit`.
    pub(super) fn quit(&mut self, i: usize, now: Duration, active: &[SocketAddr]) {
        self.quits[i] = Some(now);
        self.expect(i, active, "exit", now);
    }

    pub(super) fn quitting(&mut self, i: usize, now: Duration) {
        self.quitting_said[i] += 1;
        if self.quitting_said[i] > 1 {
            self.violation(now, format!("node {i} said Quitting twice"));
        }
    }

    pub(super) fn finished(&mut self, i: usize, now: Duration) {
        self.finishes[i] = Some(now);
    }

    /// Node `i` read `exit` from node `src`; `kept`: `src` is still in its table.
    pub(super) fn exit_seen(&mut self, i: usize, src: usize, now: Duration, kept: bool) {
        self.exits.entry((i, src)).or_insert(now);
        if kept {
            self.violation(now, format!("node {i} kept node {src} after its exit"));
        }
    }

    /// Whether node `i` may greet `dest` with `connect`: a first greeting, once more after
    /// it came back from being unreachable or said `exit`, or again while no greeting of it
    /// has arrived (a static peer that started after it).
    pub(super) fn may_greet(&mut self, i: usize, dest: SocketAddr) -> bool {
        self.greeted.insert((i, dest)) || !self.greetings_arrived.contains(&(i, dest))
    }

    /// A `connect` from node `i` reached `dest`.
    pub(super) fn greeting_arrived(&mut self, i: usize, dest: SocketAddr) {
        self.greetings_arrived.insert((i, dest));
    }

    pub(super) fn died(&mut self, i: usize, now: Duration, watchers: Vec<usize>) {
        self.deaths[i] = Some(now);
        self.watchers.push((i, now, watchers));
    }

    pub(super) fn paused(&mut self, i: usize, from: Duration, until: Duration) {
        self.pauses[i].push((from, until));
    }

    /// When node `i` quit and when it finished, if it did.
    pub(crate) fn quit_and_finish(&self, i: usize) -> (Option<Duration>, Option<Duration>) {
        (self.quits[i], self.finishes[i])
    }

    /// When observer `i` marked dead node `j` unreachable and removed it.
    pub(crate) fn detection(&self, i: usize, j: usize) -> (Option<Duration>, Option<Duration>) {
        (
            self.unreachable.get(&(i, j)).copied(),
            self.removals.get(&(i, j)).copied(),
        )
    }
}

/// The author and number of a chat text "m<node>-<n>".
pub(crate) fn parse_chat(text: &str) -> Option<(usize, u64)> {
    let (node, n) = text.strip_prefix('m')?.split_once('-')?;
    Some((node.parse().ok()?, n.parse().ok()?))
}

/// The first 40 characters of `text`, for messages.
fn short(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}
