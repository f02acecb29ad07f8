//! The simulated world: a virtual clock, one event queue, and a virtual network of real
//! [`Node`]s with the faults a lab network has.
//!
//! Time is a virtual offset from a fixed origin ([`ORIGIN`]): nothing reads the real clock.
//! The queue is ordered by (time, sequence number) and a run always jumps to the earliest
//! entry, so nothing waits in wall time and a run is a pure function of its seed and its
//! schedule.
//!
//! A connection is modelled on the real driver's (src/driver/connection.rs): one per
//! message (connect, write our header and the text, close), or a bare connect for a
//! liveness check. It reaches its destination after a latency, and its fate is decided
//! from the destination's state at that moment:
//!
//! - **refused** (nothing listens: not started, killed, finished; or a `Fault::Lost`):
//!   the sender hears it at once;
//! - **unanswered** (a black hole, or a partition between the two): the SYN is sent again
//!   1, 3, 7... s after the start, as a kernel does, and each retry's fate is decided
//!   afresh (a partition healed in time lets it through); the sender hears "timed out"
//!   when its send timeout (`Limits::send_timeout`) has run from the start;
//! - **accepted** (running, or paused: a stopped process's kernel still accepts): the
//!   sender is told `on_sent` (or the check answered), and the receiver decodes the real
//!   bytes, at once or, if it is paused, when it resumes.
//!
//! A `Fault::Delay` slows one whole connection (order is kept: a node has one connection
//! per destination at a time). A `Fault::Reorder` holds a delivered connection until the
//! next one between the same two nodes has been read (or `hold_max` passed), the way a
//! thread-per-connection receiver shows two quick messages out of order. A killed node's
//! connections die with it, even those accepted and not yet read (so that nothing is
//! heard from it after its death); a finished node's connections not yet connected are
//! aborted when it exits.
//!
//! How the world is configured is in `setup.rs`; how each node is driven once an input
//! reaches it is in `drive.rs`.

use crate::time::Instant;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::node::liveness::Liveness;
use crate::node::{Effect, Node, Settings};
use crate::sim::rng::Rng;
use crate::sim::setup::{addr_of, Action, Config, Fault, Spec};
use crate::sim::trace::Trace;
use crate::wire::OwnHeader;

/// What the sender is told when nothing listens (the real driver's wording).
pub(crate) const REFUSED: &str = "connection refused (nothing is listening on that port)";
/// What the sender is told when the connect times out (the real driver's wording).
pub(crate) const TIMED_OUT: &str = "no answer (the connection timed out)";

/// What a connection carries.
#[derive(Debug)]
pub(crate) enum Payload {
    /// Nothing: a liveness check.
    Check,
    /// One message: its text and its real wire form.
    Message {
        /// The text, without header.
        text: String,
        /// `node.header().encode(local_ip, &text)`.
        bytes: Vec<u8>,
    },
}

/// One simulated TCP connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) src: usize,
    pub(crate) dest: SocketAddr,
    /// The node listening at `dest`, if any.
    pub(crate) to: Option<usize>,
    pub(crate) started: Duration,
    /// SYNs retransmitted so far (to a black hole or across a partition).
    pub(crate) retries: u32,
    pub(crate) fault: Option<Fault>,
    pub(crate) payload: Payload,
}

/// What a sender hears about its connection.
#[derive(Debug)]
pub(crate) enum Report {
    Sent(SocketAddr),
    Failed(SocketAddr, String),
    Check(SocketAddr, bool),
}

/// An entry of the event queue.
#[derive(Debug)]
pub(crate) enum Ev {
    Act(usize, Action),
    /// A connection reaches its destination: decide its fate.
    Connect(Box<Conn>),
    /// The receiver reads an accepted connection.
    Deliver(Box<Conn>),
    /// A sender hears how its connection ended.
    Report(usize, Report),
    /// A node's `poll_timeout` deadline (stale unless it is still the armed one).
    Timeout(usize, Instant),
    /// A held (reordered) connection's wait is over.
    Release(usize, usize, u64),
    Resume(usize),
    /// A datagram reaches node `.0` from the side-channel address `.1`.
    Datagram(usize, SocketAddr, Vec<u8>),
    Partition(Vec<usize>),
    Heal,
}

/// Where a simulated process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Not started: nothing listens.
    Idle,
    Running,
    /// Stopped until then; inputs wait in its inbox.
    Paused(Duration),
    Killed,
    /// Quit and `is_finished`: the process has exited.
    Finished,
}

/// One simulated process.
#[derive(Debug)]
pub(crate) struct SimNode {
    pub(crate) node: Node,
    pub(crate) addr: SocketAddr,
    pub(crate) state: State,
    pub(crate) black_hole: bool,
    pub(crate) static_peers: Vec<SocketAddr>,
    /// The deadline a `Timeout` entry is queued for.
    pub(super) armed: Option<Instant>,
    /// Inputs that arrived while paused.
    pub(super) inbox: Vec<Ev>,
    /// Chat texts made so far.
    pub(super) chats: u64,
}

/// The simulated world.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) cfg: Config,
    pub(super) base: Instant,
    pub(super) now: Duration,
    queue: BTreeMap<(Duration, u64), Ev>,
    seq: u64,
    pub(super) next_conn: u64,
    pub(super) rng: Rng,
    pub(crate) nodes: Vec<SimNode>,
    pub(super) index: HashMap<SocketAddr, usize>,
    /// The side of each node while a partition holds.
    side: Option<Vec<bool>>,
    /// Reordered connections waiting for the next one, by (src, dst).
    held: BTreeMap<(usize, usize), Box<Conn>>,
    /// Faults chosen by a test for the next connections from src to dst.
    planned: BTreeMap<(usize, usize), VecDeque<Fault>>,
    pub(crate) trace: Trace,
    pub(super) scratch: Vec<Effect>,
    /// Queue entries processed.
    pub(crate) processed: u64,
    /// Discovery: the nodes in each group, each node by its side-channel address, and the
    /// datagrams each node sent, and their bytes.
    pub(super) members: HashMap<SocketAddr, Vec<usize>>,
    pub(super) udp: HashMap<SocketAddr, usize>,
    pub(crate) datagrams: Vec<u64>,
    pub(crate) datagram_bytes: Vec<u64>,
    /// Datagrams sent to each unicast address: how many, their bytes, the largest.
    pub(crate) unicast: HashMap<SocketAddr, (u64, u64, usize)>,
}

/// Node `i`'s side-channel (UDP) address: its IP, a port of its own.
pub(crate) fn udp_addr(i: usize) -> SocketAddr {
    SocketAddr::new(addr_of(i).ip(), 40_000)
}

/// Where the virtual clock starts: a day after the monotonic clock's origin, so that
/// moments a little before the start (a peer heard "5 s ago") exist.
const ORIGIN: Instant = Instant::from_nanos(86_400 * 1_000_000_000);

impl Sim {
    /// An empty world whose every random choice comes from `seed`.
    pub(crate) fn new(cfg: Config, seed: u64) -> Self {
        let trace = Trace::new(cfg.record, seed);
        Sim {
            cfg,
            base: ORIGIN,
            now: Duration::ZERO,
            queue: BTreeMap::new(),
            seq: 0,
            next_conn: 0,
            rng: Rng::new(seed),
            nodes: Vec::new(),
            index: HashMap::new(),
            side: None,
            held: BTreeMap::new(),
            members: HashMap::new(),
            udp: HashMap::new(),
            datagrams: Vec::new(),
            datagram_bytes: Vec::new(),
            unicast: HashMap::new(),
            planned: BTreeMap::new(),
            trace,
            scratch: Vec::new(),
            processed: 0,
        }
    }

    /// Adds a node (not started: schedule [`Action::Start`]); returns its index.
    pub(crate) fn add(&mut self, spec: Spec) -> usize {
        let i = self.nodes.len();
        let addr = addr_of(i);
        let static_peers: Vec<SocketAddr> = spec.static_peers.iter().map(|&j| addr_of(j)).collect();
        let limits = &self.cfg.limits;
        let settings = Settings {
            history: 8,
            persist: false,
            header: OwnHeader {
                name: spec.name,
                format: spec.format,
                port: addr.port(),
                claim: spec.claim,
            },
            static_peers: static_peers.clone(),
            max_in_flight: limits.max_in_flight,
            quit_wait: limits.quit_wait,
            max_peers_per_ip: limits.max_peers_per_ip,
            own_ips: vec![addr.ip()],
            discovery: spec.discover.map(|group| crate::node::discovery::Plan {
                group,
                interval: crate::node::discovery::ANNOUNCE_INTERVAL,
            }),
        };
        if let Some(group) = spec.discover {
            self.members.entry(group).or_default().push(i);
        }
        self.udp.insert(udp_addr(i), i);
        self.datagrams.push(0);
        self.datagram_bytes.push(0);
        // Each node its own jitter, as each process seeds its own.
        let seed = (u64::from(self.nodes.len() as u32) << 16) ^ u64::from(addr.port());
        let liveness = Liveness::new(limits.probe_interval, limits.probe_failures).seeded(seed | 1);
        self.nodes.push(SimNode {
            node: Node::new(settings, liveness, (self.base, 0)),
            addr,
            state: State::Idle,
            black_hole: false,
            static_peers,
            armed: None,
            inbox: Vec::new(),
            chats: 0,
        });
        self.index.insert(addr, i);
        self.trace.add_node(addr);
        i
    }

    /// Schedules `action` for node `i` at virtual time `at`.
    pub(crate) fn at(&mut self, at: Duration, i: usize, action: Action) {
        self.push(at, Ev::Act(i, action));
    }

    /// A datagram forged by someone outside the simulated peers: at `at`, as if from
    /// `from`, to a group or to one node's side-channel address.
    pub(crate) fn forge_at(
        &mut self,
        at: Duration,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
    ) {
        let targets = match self.members.get(&to) {
            Some(members) => members.clone(),
            None => self.udp.get(&to).copied().into_iter().collect(),
        };
        for j in targets {
            self.push(at, Ev::Datagram(j, from, bytes.to_vec()));
        }
    }

    /// Cuts `group` off from everyone else at `at` (connections across time out).
    pub(crate) fn partition_at(&mut self, at: Duration, group: Vec<usize>) {
        self.push(at, Ev::Partition(group));
    }

    /// Ends the partition at `at`.
    pub(crate) fn heal_at(&mut self, at: Duration) {
        self.push(at, Ev::Heal);
    }

    /// The next message connection from `src` to `dst` suffers `fault`.
    pub(crate) fn plan_fault(&mut self, src: usize, dst: usize, fault: Fault) {
        self.planned.entry((src, dst)).or_default().push_back(fault);
    }

    /// The virtual time.
    pub(crate) fn now(&self) -> Duration {
        self.now
    }

    /// The virtual time as an `Instant`.
    pub(crate) fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Node `i`'s listening address.
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// Node `i`'s protocol state.
    pub(crate) fn node(&self, i: usize) -> &Node {
        &self.nodes[i].node
    }

    /// Where node `i`'s process stands.
    pub(crate) fn state(&self, i: usize) -> State {
        self.nodes[i].state
    }

    pub(super) fn push(&mut self, at: Duration, ev: Ev) {
        let at = at.max(self.now);
        self.queue.insert((at, self.seq), ev);
        self.seq += 1;
    }

    /// Processes every queue entry due at or before `end`, in (time, sequence) order;
    /// the clock then reads `end`.
    pub(crate) fn run_until(&mut self, end: Duration) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), ev) = entry.remove_entry();
            self.now = at;
            self.processed += 1;
            self.handle(ev);
        }
        self.now = self.now.max(end);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Connect(conn) => self.connect(conn),
            Ev::Release(src, dst, id) => {
                if self.held.get(&(src, dst)).is_some_and(|c| c.id == id) {
                    if let Some(conn) = self.held.remove(&(src, dst)) {
                        self.route(Ev::Deliver(conn));
                    }
                }
            }
            Ev::Partition(group) => {
                let mut side = vec![false; self.nodes.len()];
                for i in group {
                    side[i] = true;
                }
                self.side = Some(side);
            }
            Ev::Heal => self.side = None,
            Ev::Resume(i) => self.resume(i),
            Ev::Act(i, Action::Kill) => self.kill(i),
            Ev::Act(i, Action::Pause(pause)) => self.pause(i, pause),
            Ev::Act(i, Action::BlackHole(on)) => self.nodes[i].black_hole = on,
            other => self.route(other),
        }
    }

    /// Hands an input to its node, unless the process is gone or stopped.
    pub(super) fn route(&mut self, ev: Ev) {
        let i = match &ev {
            Ev::Act(i, _) | Ev::Report(i, _) | Ev::Timeout(i, _) | Ev::Datagram(i, _, _) => *i,
            // A killed sender's connections die with it, even those already accepted.
            Ev::Deliver(conn) if self.nodes[conn.src].state == State::Killed => return,
            Ev::Deliver(conn) => match conn.to {
                Some(to) => to,
                None => return,
            },
            _ => return,
        };
        match self.nodes[i].state {
            State::Killed | State::Finished => {}
            State::Paused(_) => self.nodes[i].inbox.push(ev),
            State::Idle if !matches!(ev, Ev::Act(_, Action::Start)) => {}
            State::Idle | State::Running => self.run_input(i, ev),
        }
    }

    fn kill(&mut self, i: usize) {
        if matches!(self.nodes[i].state, State::Killed | State::Finished) {
            return;
        }
        let addr = self.nodes[i].addr;
        let watchers: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| {
                j != i
                    && matches!(self.nodes[j].state, State::Running | State::Paused(_))
                    && self.nodes[j].node.peers().get(addr).is_some()
            })
            .collect();
        self.nodes[i].state = State::Killed;
        self.nodes[i].inbox.clear();
        self.trace.died(i, self.now, watchers);
    }

    fn pause(&mut self, i: usize, pause: Duration) {
        let until = self.now + pause;
        match self.nodes[i].state {
            State::Running => {}
            State::Paused(old) if old < until => {}
            _ => return,
        }
        self.nodes[i].state = State::Paused(until);
        self.trace.paused(i, self.now, until);
        self.push(until, Ev::Resume(i));
    }

    fn resume(&mut self, i: usize) {
        if self.nodes[i].state != State::Paused(self.now) {
            return; // extended, or killed meanwhile
        }
        self.nodes[i].state = State::Running;
        for ev in std::mem::take(&mut self.nodes[i].inbox) {
            self.route(ev);
        }
        // The driver wakes up and looks at its timers.
        if self.nodes[i].state == State::Running {
            self.wake(i);
        }
    }

    /// The fault for a new connection: a planned one, else a random draw.
    pub(super) fn draw_fault(
        &mut self,
        src: usize,
        to: Option<usize>,
        check: bool,
    ) -> Option<Fault> {
        if let Some(dst) = to.filter(|_| !check) {
            if let Some(fault) = self
                .planned
                .get_mut(&(src, dst))
                .and_then(VecDeque::pop_front)
            {
                return Some(fault);
            }
        }
        let f = self.cfg.faults;
        if self.rng.chance(f.lose) {
            Some(Fault::Lost)
        } else if self.rng.chance(f.delay) {
            Some(Fault::Delay(self.rng.between(Duration::ZERO, f.delay_max)))
        } else if !check && self.rng.chance(f.reorder) {
            Some(Fault::Reorder)
        } else {
            None
        }
    }

    pub(super) fn cut(&self, a: usize, b: usize) -> bool {
        self.side.as_ref().is_some_and(|side| side[a] != side[b])
    }

    /// A connection reaches its destination: refused, timed out or accepted.
    fn connect(&mut self, conn: Box<Conn>) {
        let src = conn.src;
        if matches!(self.nodes[src].state, State::Killed | State::Finished) {
            return; // not connected yet: aborted with its process
        }
        let dest = conn.dest;
        let check = matches!(conn.payload, Payload::Check);
        let fail = |reason: &str| match check {
            true => Report::Check(dest, false),
            false => Report::Failed(dest, reason.to_owned()),
        };
        let listening = conn.to.filter(|&d| {
            conn.fault != Some(Fault::Lost)
                && matches!(self.nodes[d].state, State::Running | State::Paused(_))
        });
        let Some(d) = listening else {
            self.push(self.now, Ev::Report(src, fail(REFUSED)));
            return;
        };
        if self.nodes[d].black_hole || self.cut(src, d) {
            let timeout = conn.started + self.cfg.limits.send_timeout;
            let mut conn = conn;
            conn.retries += 1;
            let retry = conn.started + Duration::from_secs((1 << conn.retries.min(20)) - 1);
            if retry < timeout {
                self.push(retry, Ev::Connect(conn));
            } else {
                self.push(timeout, Ev::Report(src, fail(TIMED_OUT)));
            }
            return;
        }
        if check {
            self.push(self.now, Ev::Report(src, Report::Check(dest, true)));
            return;
        }
        // Accepted: the receiver reads it (first), the sender's write completed.
        if matches!(&conn.payload, Payload::Message { text, .. } if text == "connect") {
            self.trace.greeting_arrived(src, dest);
        }
        let earlier = self.held.remove(&(src, d));
        if conn.fault == Some(Fault::Reorder) && earlier.is_none() {
            let release = Ev::Release(src, d, conn.id);
            self.held.insert((src, d), conn);
            self.push(self.now + self.cfg.faults.hold_max, release);
        } else {
            self.push(self.now, Ev::Deliver(conn));
            if let Some(earlier) = earlier {
                self.push(self.now, Ev::Deliver(earlier));
            }
        }
        self.push(self.now, Ev::Report(src, Report::Sent(dest)));
    }
}
