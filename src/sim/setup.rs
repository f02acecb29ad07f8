//! What a simulated world is made of: its configuration (latency, limits, random
//! faults), the nodes to create, their addresses, and what can happen to a node at a
//! scheduled time (a user's input, or a fault).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::config::Limits;
use crate::wire::Format;
use crate::Command;

/// Random per-connection faults, each drawn independently for every connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    /// Probability that a connection is refused.
    pub(crate) lose: f64,
    /// Probability that a connection takes up to `delay_max` longer.
    pub(crate) delay: f64,
    /// Probability that a message connection is held and read after the next one.
    pub(crate) reorder: f64,
    /// The longest extra delay.
    pub(crate) delay_max: Duration,
    /// How long a held connection waits for the next one before it is read anyway.
    pub(crate) hold_max: Duration,
}

/// How a simulated world behaves.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The nodes' limits: send timeout, quit wait, liveness settings, connection budget.
    pub(crate) limits: Limits,
    /// One-way latency of a connection (connect, write), drawn uniformly.
    pub(crate) latency: (Duration, Duration),
    /// Random faults.
    pub(crate) faults: Faults,
    /// Keep every event and every wire size (small runs); large runs keep counts only.
    pub(crate) record: bool,
    /// Flag any `connect` that is not a node's start-up greeting of a static peer.
    pub(crate) greetings_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            latency: (Duration::from_millis(1), Duration::from_millis(20)),
            faults: Faults {
                delay_max: Duration::from_secs(2),
                hold_max: Duration::from_secs(1),
                ..Faults::default()
            },
            record: true,
            greetings_only: true,
        }
    }
}

impl Config {
    /// The longest a failed liveness check can take to be reported: a refusal comes back
    /// after the latency (plus a delay fault), a timeout after the send timeout.
    pub(crate) fn check_failure_latency(&self, timeouts: bool) -> Duration {
        let mut refused = self.latency.1;
        if self.faults.delay > 0.0 {
            refused += self.faults.delay_max;
        }
        if timeouts {
            refused.max(self.limits.send_timeout)
        } else {
            refused
        }
    }
}

/// One node to create.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The name in its header.
    pub(crate) name: String,
    /// Indices of the nodes it greets at start-up.
    pub(crate) static_peers: Vec<usize>,
    /// The header form it sends.
    pub(crate) format: Format,
    /// The IP it claims (`None`: each connection's local address).
    pub(crate) claim: Option<IpAddr>,
    /// The discovery group it announces to and listens on (`--discover`), if any.
    pub(crate) discover: Option<SocketAddr>,
}

impl Spec {
    /// A node called `name` with no static peers, standard form, claiming its local IP.
    pub(crate) fn new(name: &str) -> Self {
        Spec {
            name: name.to_owned(),
            static_peers: Vec::new(),
            format: Format::Standard,
            claim: None,
            discover: None,
        }
    }

    /// With discovery on, in `group`.
    pub(crate) fn discovers(mut self, group: SocketAddr) -> Self {
        self.discover = Some(group);
        self
    }

    /// With these static peers.
    pub(crate) fn greets(mut self, peers: &[usize]) -> Self {
        self.static_peers = peers.to_vec();
        self
    }
}

/// The listening address of node `i`: 127.0.x.y, a port that varies too.
pub(crate) fn addr_of(i: usize) -> SocketAddr {
    let (x, y) = (1 + i / 250, 1 + i % 250);
    let ip = Ipv4Addr::new(
        127,
        0,
        u8::try_from(x).unwrap_or(255),
        u8::try_from(y).unwrap_or(255),
    );
    let port = 6000 + u16::try_from(i % 50).unwrap_or(0);
    SocketAddr::new(IpAddr::V4(ip), port)
}

/// Something that happens to a node (a user's input, or a fault) at a scheduled time.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// The process starts: `Node::start`.
    Start,
    /// A typed line.
    Line(String),
    /// A command, as a program embedding peerchat would give it (even while quitting).
    Exec(Command),
    /// `/all` with a text unique in the run ("m<node>-<n>"), accounted for by the trace.
    Chat,
    /// `/send` of a unique text to node `j`, accounted for by the trace.
    ChatTo(usize),
    /// `/send` of a unique text to one of its active peers, drawn at random (if any).
    ChatOne,
    /// `/quit`.
    Quit,
    /// Ctrl-C.
    Interrupt,
    /// The process dies: it stops answering and never says `exit`.
    Kill,
    /// The process is stopped for this long, then resumes (its kernel still accepts).
    Pause(Duration),
    /// Its inbound connections time out from now on (`true`) or no longer (`false`).
    BlackHole(bool),
}

/// A fault for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Refused.
    Lost,
    /// Takes this much longer.
    Delay(Duration),
    /// Read after the next connection between the same two nodes.
    Reorder,
}

/// `s` seconds.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `n` nodes that all know each other (node i greets every node before it), all
/// started at 0.
pub(crate) fn mesh(cfg: Config, seed: u64, n: usize) -> crate::sim::net::Sim {
    let mut sim = crate::sim::net::Sim::new(cfg, seed);
    for i in 0..n {
        let earlier: Vec<usize> = (0..i).collect();
        sim.add(Spec::new(&format!("n{i}")).greets(&earlier));
        sim.at(Duration::ZERO, i, Action::Start);
    }
    sim
}
