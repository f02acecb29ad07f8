//! The resolved configuration of a peer: everything `run` needs, validated.
//!
//! The command line (`cli`) produces it; a program embedding peerchat can build one
//! directly. Limits have defaults that suit a lab machine and are documented in the README.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::wire::Format;

/// Bounds that keep one misbehaving peer from hurting the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest line accepted from a peer or the console, in bytes.
    pub max_line: usize,
    /// Most bytes of unfinished lines held for all inbound connections together; beyond
    /// it, the connection whose line grew is closed.
    pub max_unfinished: usize,
    /// Most connections open at once; beyond it, new inbound ones are closed at once.
    pub max_connections: usize,
    /// Most inbound connections open at once from one IP address; beyond it, new ones
    /// from that address are closed at once (one sender cannot take every slot).
    pub max_per_ip: usize,
    /// An inbound connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Most outgoing connections in flight at once; further sends queue.
    pub max_in_flight: usize,
    /// How long an outgoing connection may take to connect and write.
    pub send_timeout: Duration,
    /// How long, once our message is written, we wait for the receiver to close the
    /// connection (reading what it says back meanwhile) before the next message to it
    /// leaves: receivers with a thread per connection then show messages in order.
    pub linger: Duration,
    /// How long quitting waits for the `exit` messages to go out.
    pub quit_wait: Duration,
    /// Most bytes of output waiting for a slow stdout; beyond it lines are dropped.
    pub stdout_buffer: usize,
    /// Most peers heard from one IP address kept in the table (one machine cannot pose as
    /// thousands of peers by claiming ports).
    pub max_peers_per_ip: usize,
    /// How often each known peer is checked for liveness; zero turns checks off.
    pub probe_interval: Duration,
    /// Failed checks in a row that make a peer unreachable.
    pub probe_failures: u32,
}

/// The default liveness interval, in seconds: five minutes. A bare connection is an
/// error line at several of the lab's peers, so each peerchat checks a peer it has not
/// heard from or reached at most about 12 times an hour (30 peerchats: one check every
/// 10 s at each peer), and notices a vanished peer within about 7 minutes.
pub const DEFAULT_PROBE_SECS: u64 = 300;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_unfinished: 16 << 20,
            max_connections: 16 * 1024,
            max_per_ip: 256,
            idle_timeout: Duration::from_secs(120),
            max_in_flight: 256,
            send_timeout: Duration::from_secs(5),
            linger: Duration::from_millis(250),
            quit_wait: Duration::from_secs(2),
            stdout_buffer: 1 << 20,
            max_peers_per_ip: 16,
            probe_interval: Duration::from_secs(DEFAULT_PROBE_SECS),
            probe_failures: 3,
        }
    }
}

/// How a peer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The name put in every header (one token).
    pub name: String,
    /// The port to listen on; 0 lets the system choose.
    pub port: u16,
    /// The address to listen on; a specific one is also the source of outgoing connections.
    pub bind: IpAddr,
    /// Peers greeted with `connect` at start-up.
    pub static_peers: Vec<SocketAddr>,
    /// The IP claimed in headers; by default each connection's local address.
    pub advertise: Option<IpAddr>,
    /// The header form we send.
    pub format: Format,
    /// Run without reading stdin, until SIGINT or SIGTERM.
    pub headless: bool,
    /// Resource bounds.
    pub limits: Limits,
    /// Write events to stdout (a program embedding peerchat may turn this off).
    pub output: bool,
    /// JSON Lines on stdout instead of text.
    pub json: bool,
    /// Colour on stdout: `None` decides from the terminal and `NO_COLOR`.
    pub color: Option<bool>,
    /// Dates each line on a terminal with the local time (`--no-timestamps` turns it off).
    pub timestamps: bool,
    /// Where peers and history are kept across restarts (`--state`).
    pub state_dir: Option<PathBuf>,
    /// Greet remembered peers with `connect` at start-up.
    pub greet_remembered: bool,
    /// Messages kept for `/history` (and in the journal).
    pub history: usize,
    /// LAN discovery (`--discover`): the multicast group (or broadcast address) and port
    /// of the side channel; `None`: off.
    pub discover: Option<SocketAddr>,
    /// Between periodic announcements (`--discover-interval`).
    pub discover_interval: Duration,
}

impl Config {
    /// A configuration with defaults for everything but the name.
    pub fn new(name: impl Into<String>) -> Self {
        Config {
            name: name.into(),
            port: 0,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            static_peers: Vec::new(),
            advertise: None,
            format: Format::Standard,
            headless: false,
            limits: Limits::default(),
            output: true,
            json: false,
            timestamps: true,
            color: None,
            state_dir: None,
            greet_remembered: false,
            history: 1000,
            discover: None,
            discover_interval: crate::node::discovery::ANNOUNCE_INTERVAL,
        }
    }

    /// Turns LAN discovery on, with announcements to `group` (a multicast group, or a
    /// broadcast address).
    pub fn discover(mut self, group: SocketAddr) -> Self {
        self.discover = Some(group);
        self
    }

    /// Sets the port to listen on (0: the system chooses).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the address to listen on and send from.
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.bind = ip;
        self
    }

    /// Adds a peer to greet with `connect` at start-up.
    pub fn static_peer(mut self, addr: SocketAddr) -> Self {
        self.static_peers.push(addr);
        self
    }

    /// Runs without reading stdin (an embedded peer always should).
    pub fn headless(mut self, headless: bool) -> Self {
        self.headless = headless;
        self
    }

    /// Writes events to stdout, or not.
    pub fn output(mut self, output: bool) -> Self {
        self.output = output;
        self
    }

    /// Keeps peers and history in `dir` across restarts.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Checks each peer's liveness every `interval` (zero: never).
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.limits.probe_interval = interval;
        self
    }

    /// The IP we claim when it is known before connecting: `--advertise`, else a specific
    /// bind address.
    pub fn own_ip(&self) -> Option<IpAddr> {
        self.advertise
            .or_else(|| Some(self.bind).filter(|ip| !ip.is_unspecified()))
    }
}

/// Characters a name may not hold: see [`check_name`].
const DELIMITERS: [char; 4] = [':', '|', '<', '>'];

/// Checks that `name` can go in a header: one token, printable, not too long, and read back
/// as itself in every dialect we may answer in.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name must not be empty".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the name {name:?} must be one word (no spaces): it goes in every message header"
        ));
    }
    if name.len() > 64 {
        return Err("the name must be at most 64 bytes".into());
    }
    // Each of these ends a field in a dialect we may answer in (colon fields `:`,
    // key/value `|`, bracketed `<` and `>`): every peer, peerchat too, would misread the
    // name and the message.
    if let Some(c) = name.chars().find(|c| DELIMITERS.contains(c)) {
        return Err(format!(
            "the name {name:?} must not contain {c:?}: some peers read it as the end of the name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_tokens() {
        assert!(check_name("blockchain").is_ok());
        assert!(check_name("team-7_ü").is_ok());
        for bad in ["", "two words", "tab\there", "nl\n", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_ip_prefers_advertise_then_specific_bind() {
        let mut c = Config::new("n");
        assert_eq!(c.own_ip(), None);
        c.bind = "127.0.0.2".parse().expect("ip");
        assert_eq!(c.own_ip(), Some(c.bind));
        c.advertise = Some("127.0.0.9".parse().expect("ip"));
        assert_eq!(c.own_ip(), c.advertise);
    }
}
