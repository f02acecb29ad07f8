//! The hostile scenario's attackers, one per attack of `tests/hostile.rs`, each on its own
//! thread with blocking connections from its own source address, and the sizes they send.
//! Each returns what it sent that the peer should show ([`Sent`]), so that the scenario
//! knows when the peer has caught up.

use crate::load;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The attackers' addresses: streams from 8 addresses starting at `STREAMS`, the others one
/// each, so that all at once no attack shares another's per-address limits.
pub const STREAMS: u8 = 10;
pub const ONE_STREAM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);
pub const HELD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);
pub const LONG: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 22);
pub const FLOOD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 23);
pub const CHURN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 24);

/// One attack of `tests/hostile.rs`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attack {
    /// Many connections, each a stream of `a\n` lines.
    Streams,
    /// One connection streaming 100-byte lines for as long as the legitimate sender runs.
    OneStream,
    /// Connections from one address held open with a blank line every second.
    HeldSlots,
    /// One connection claiming many ports with 60 KB names.
    LongNames,
    /// One connection of `CONNECT:port` lines.
    ConnectFlood,
    /// Peers joining and leaving over distinct ports, in one connection.
    ChurnPeers,
}

impl Attack {
    pub const EACH: [Attack; 6] = [
        Attack::Streams,
        Attack::OneStream,
        Attack::HeldSlots,
        Attack::LongNames,
        Attack::ConnectFlood,
        Attack::ChurnPeers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Streams => "streams",
            Attack::OneStream => "one-stream",
            Attack::HeldSlots => "held-slots",
            Attack::LongNames => "long-names",
            Attack::ConnectFlood => "connect-flood",
            Attack::ChurnPeers => "churn-peers",
        }
    }
}

/// Sizes of one hostile run.
pub struct Sizes {
    /// The rows, each a set of attacks run together on a fresh peer.
    pub rows: Vec<Vec<Attack>>,
    pub streams: usize,
    pub stream_bytes: usize,
    pub held_try: usize,
    /// Held connections are kept at least this long, however soon the legitimate sender
    /// is done, so that their blank lines keep coming meanwhile.
    pub held_for: Duration,
    pub long_ports: u32,
    pub long_name: usize,
    /// Bytes the long-names attacker writes at most.
    pub long_cap: usize,
    pub connects: u32,
    pub cycles: u32,
    /// The legitimate sender's messages per row.
    pub legit: usize,
}

impl Sizes {
    /// Every attack alone, then all at once.
    pub fn full() -> Sizes {
        let mut rows: Vec<Vec<Attack>> = Attack::EACH.iter().map(|&a| vec![a]).collect();
        rows.push(Attack::EACH.to_vec());
        Sizes {
            rows,
            streams: 64,
            stream_bytes: 1 << 20,
            held_try: 1000,
            held_for: Duration::from_secs(3),
            long_ports: 65_535,
            long_name: 60_000,
            long_cap: 256 << 20,
            connects: 65_534,
            cycles: 200_000,
            legit: 100,
        }
    }

    /// CI's smoke run: streams, held slots and the connect flood, a quarter of the size
    /// (held slots: still over the per-address limit of 256).
    pub fn quick() -> Sizes {
        Sizes {
            rows: vec![
                vec![Attack::Streams],
                vec![Attack::HeldSlots],
                vec![Attack::ConnectFlood],
            ],
            stream_bytes: 256 << 10,
            held_try: 300,
            held_for: Duration::from_secs(2),
            connects: 16_384,
            legit: 20,
            ..Sizes::full()
        }
    }

    /// One line saying what each attack in the rows sends.
    pub fn describe(&self) -> String {
        let has = |a| self.rows.iter().any(|r| r.contains(&a));
        let mut parts = Vec::new();
        if has(Attack::Streams) {
            parts.push(format!(
                "streams: {} connections × {} KiB of `a\\n` from 127.0.0.{STREAMS}–{}",
                self.streams,
                self.stream_bytes >> 10,
                STREAMS + 7
            ));
        }
        if has(Attack::OneStream) {
            parts.push(format!(
                "one-stream: 100-byte lines from {ONE_STREAM} while the legit sender runs"
            ));
        }
        if has(Attack::HeldSlots) {
            parts.push(format!(
                "held-slots: {} connections tried from {HELD}, a blank line a second each, held {} s or more",
                self.held_try,
                self.held_for.as_secs()
            ));
        }
        if has(Attack::LongNames) {
            parts.push(format!(
                "long-names: up to {} claimed ports with {}-byte names from {LONG}, at most {} MiB",
                self.long_ports,
                self.long_name,
                self.long_cap >> 20
            ));
        }
        if has(Attack::ConnectFlood) {
            parts.push(format!(
                "connect-flood: {} `CONNECT:port` lines from {FLOOD}",
                self.connects
            ));
        }
        if has(Attack::ChurnPeers) {
            parts.push(format!(
                "churn-peers: {} join/leave cycles from {CHURN}",
                self.cycles
            ));
        }
        parts.join("; ")
    }
}

/// What the attackers sent that the peer should show, and what went wrong for them.
#[derive(Default)]
pub struct Sent {
    pub a_lines: u64,
    pub streamer_lines: u64,
    pub streamer_bytes: u64,
    pub hi_lines: u64,
    pub long_bytes: u64,
    pub connects: u64,
    pub lefts: u64,
    pub errors: Vec<String>,
}

impl Sent {
    pub fn merge(&mut self, o: Sent) {
        self.a_lines += o.a_lines;
        self.streamer_lines += o.streamer_lines;
        self.streamer_bytes += o.streamer_bytes;
        self.hi_lines += o.hi_lines;
        self.long_bytes += o.long_bytes;
        self.connects += o.connects;
        self.lefts += o.lefts;
        self.errors.extend(o.errors);
    }
}

/// A blocking attacker connection from `src`, with a write timeout so that a stalled peer
/// cannot hang the bench.
fn attacker(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = load::connect_from(src, to, Duration::from_secs(10))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    Ok(s)
}

/// One connection writing `wire` (lines of `a`) and closing.
pub fn stream_a(src: Ipv4Addr, to: SocketAddr, wire: &[u8]) -> Sent {
    let mut sent = Sent::default();
    match attacker(src, to).and_then(|mut s| s.write_all(wire)) {
        Ok(()) => sent.a_lines = wire.iter().filter(|&&b| b == b'\n').count() as u64,
        Err(e) => sent.errors.push(format!("streams from {src}: {e}")),
    }
    sent
}

/// One connection streaming 100-byte lines until `stop`.
pub fn one_stream(to: SocketAddr, stop: &AtomicBool) -> Sent {
    let mut sent = Sent::default();
    let mut line = format!("{ONE_STREAM}:9 streamer ");
    while line.len() < 99 {
        line.push('s');
    }
    line.push('\n');
    let block = line.repeat(100);
    let mut s = match attacker(ONE_STREAM, to) {
        Ok(s) => s,
        Err(e) => {
            sent.errors.push(format!("one-stream: {e}"));
            return sent;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = s.write_all(block.as_bytes()) {
            sent.errors.push(format!("one-stream: {e}"));
            break;
        }
        sent.streamer_lines += 100;
        sent.streamer_bytes += block.len() as u64;
    }
    sent
}

/// A blank line every second on each held connection until `stop`, and for at least
/// `hold_for` (write errors, on the refused ones, are expected).
pub fn blank_lines(held: &[mio::net::TcpStream], stop: &AtomicBool, hold_for: Duration) -> Sent {
    let started = Instant::now();
    let mut next = started;
    while !stop.load(Ordering::Relaxed) || started.elapsed() < hold_for {
        if Instant::now() >= next {
            for mut s in held {
                let _ = s.write(b"\n");
            }
            next += Duration::from_secs(1);
        }
        // A clock, not an event: the attack is defined by its period.
        thread::sleep(Duration::from_millis(20));
    }
    Sent::default()
}

/// One connection claiming ports 1, 2, ... with long names, up to the byte cap.
pub fn long_names(to: SocketAddr, sizes: &Sizes) -> Sent {
    let mut sent = Sent::default();
    let name = "n".repeat(sizes.long_name);
    let mut s = match attacker(LONG, to) {
        Ok(s) => s,
        Err(e) => {
            sent.errors.push(format!("long-names: {e}"));
            return sent;
        }
    };
    let mut line = String::with_capacity(sizes.long_name + 32);
    for port in 1..=sizes.long_ports {
        line.clear();
        let _ = writeln!(line, "{LONG}:{port} {name} hi");
        if sent.long_bytes + line.len() as u64 > sizes.long_cap as u64 {
            break;
        }
        if let Err(e) = s.write_all(line.as_bytes()) {
            sent.errors.push(format!("long-names: {e}"));
            break;
        }
        sent.hi_lines += 1;
        sent.long_bytes += line.len() as u64;
    }
    sent
}

/// Writes `wire` on one connection from `src` and closes; `what` names the attack.
fn one_shot(src: Ipv4Addr, to: SocketAddr, wire: &[u8], what: &str) -> Result<(), String> {
    attacker(src, to)
        .and_then(|mut s| s.write_all(wire))
        .map_err(|e| format!("{what}: {e}"))
}

/// One connection of `n` `CONNECT:port` lines, each a different port.
pub fn connect_flood(to: SocketAddr, n: u32) -> Sent {
    let mut wire = String::with_capacity(n as usize * 14);
    for port in 1..=n {
        let _ = writeln!(wire, "CONNECT:{port}");
    }
    let mut sent = Sent::default();
    match one_shot(FLOOD, to, wire.as_bytes(), "connect-flood") {
        Ok(()) => sent.connects = u64::from(n),
        Err(e) => sent.errors.push(e),
    }
    sent
}

/// One connection of `n` join/leave cycles, ports 1 to 65,535 in turn.
pub fn churn_peers(to: SocketAddr, n: u32) -> Sent {
    let mut wire = String::with_capacity(n as usize * 48);
    for i in 0..n {
        let port = 1 + i % 65_535;
        let _ = write!(wire, "{CHURN}:{port} x hi\n{CHURN}:{port} x exit\n");
    }
    let mut sent = Sent::default();
    match one_shot(CHURN, to, wire.as_bytes(), "churn-peers") {
        Ok(()) => sent.lefts = u64::from(n),
        Err(e) => sent.errors.push(e),
    }
    sent
}
