//! The discovery sockets (`--discover`): two UDP sockets, two more sources in the loop's
//! `mio::Poll` (no thread). The group socket is bound to the group's port and joins the
//! group on the interface of `--bind`, or on each of the machine's interfaces when bound
//! to every address; it only receives. Everything is sent from the other socket, bound to
//! `--bind` with a port of its own: announcements go out of every interface in turn,
//! named with `IP_MULTICAST_IF`, so a host without a multicast route still announces; and
//! since queries and answers go to the source of what they answer, that port of its own is
//! what makes them reach the right peerchat when several run on one host (they all share
//! the group's port, and the system hands a unicast datagram to only one of them). Loopback
//! is on, so peers on one host hear each other; the TTL is 1, so nothing leaves the LAN.
//! What the datagrams say and how often they go is decided in `node::discovery`; this
//! only moves bytes.

use crate::time::Instant;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::driver::net;
use crate::node::discovery::{self, MAX_DATAGRAM};
use crate::node::{Effect, Node};

/// The default group: administratively scoped (239.255.0.0/16, RFC 2365), so it stays
/// inside the site.
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), 5077);

/// Datagrams read per turn at most; the rest wait for the next turn.
const READS_PER_TURN: usize = 256;

/// The open discovery sockets.
pub struct Udp {
    /// Bound to the group's port, joined to the group: receives announcements.
    listener: UdpSocket,
    /// Bound to `--bind` with a port of its own: sends everything, receives answers.
    socket: UdpSocket,
    group: SocketAddrV4,
    /// The interfaces announcements go out of (by their IPv4 address).
    interfaces: Vec<Ipv4Addr>,
    buf: Box<[u8]>,
    /// Whether a read of each socket stopped at the per-turn bound (read again without
    /// waiting).
    more: [bool; 2],
}

/// The IPv4 interfaces to use when bound to `bind`: that one, or every non-loopback one
/// of the machine's (loopback alone when there is none).
fn interfaces(bind: IpAddr) -> Vec<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = net::own_ips(bind)
        .into_iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
            _ => None,
        })
        .collect();
    if bind.is_unspecified() && found.iter().any(|ip| !ip.is_loopback()) {
        found.retain(|ip| !ip.is_loopback());
    } else if bind.is_unspecified() {
        found = vec![Ipv4Addr::LOCALHOST];
    }
    found
}

impl Udp {
    /// Opens the sockets, joins the group (when it is multicast) and registers them with
    /// `registry` under `tokens` (the group socket's, the other's).
    pub fn open(
        group: SocketAddr,
        bind: IpAddr,
        registry: &Registry,
        tokens: [Token; 2],
    ) -> io::Result<Self> {
        let SocketAddr::V4(group) = group else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "discovery takes an IPv4 group or broadcast address",
            ));
        };
        let interfaces = interfaces(bind);
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // Several peers on one host share the port; each gets every group datagram.
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
        socket.set_multicast_loop_v4(true)?;
        socket.set_multicast_ttl_v4(1)?;
        // Only the group we joined, not every group another program on the host joined on
        // this port (Linux delivers those too by default).
        if let Err(e) = socket.set_multicast_all_v4(false) {
            log::debug!("discovery: IP_MULTICAST_ALL: {e}");
        }
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, group.port())).into())?;
        if group.ip().is_multicast() {
            let mut joined = 0;
            let mut last = None;
            for iface in &interfaces {
                match socket.join_multicast_v4(group.ip(), iface) {
                    Ok(()) => joined += 1,
                    Err(e) => {
                        log::debug!("discovery: cannot join {} on {iface}: {e}", group.ip());
                        last = Some(e);
                    }
                }
            }
            if joined == 0 {
                return Err(last.unwrap_or_else(|| io::Error::other("no IPv4 interface")));
            }
        }
        let mut listener = UdpSocket::from_std(socket.into());
        registry.register(&mut listener, tokens[0], Interest::READABLE)?;
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_broadcast(true)?;
        socket.set_multicast_loop_v4(true)?;
        socket.set_multicast_ttl_v4(1)?;
        socket.set_nonblocking(true)?;
        let from = match bind {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        socket.bind(&SocketAddr::from((from, 0)).into())?;
        let mut socket = UdpSocket::from_std(socket.into());
        registry.register(&mut socket, tokens[1], Interest::READABLE)?;
        Ok(Udp {
            listener,
            socket,
            group,
            interfaces,
            buf: vec![0; MAX_DATAGRAM + 1].into_boxed_slice(),
            more: [false; 2],
        })
    }

    /// Sends one datagram: to the group out of each interface in turn, or to one address.
    /// Datagrams are best effort: a failure is logged, never retried.
    pub fn send(&self, to: SocketAddr, bytes: &[u8]) {
        let first = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
        log::debug!(
            "discovery: {} bytes to {to}: {}",
            bytes.len(),
            String::from_utf8_lossy(first)
        );
        if to != SocketAddr::V4(self.group) || !self.group.ip().is_multicast() {
            if let Err(e) = self.socket.send_to(bytes, to) {
                log::debug!("discovery: sending to {to}: {}", net::describe(&e));
            }
            return;
        }
        for iface in &self.interfaces {
            let sock = socket2::SockRef::from(&self.socket);
            if let Err(e) = sock.set_multicast_if_v4(iface) {
                log::debug!("discovery: IP_MULTICAST_IF {iface}: {e}");
                continue;
            }
            if let Err(e) = self.socket.send_to(bytes, to) {
                log::debug!("discovery: announcing on {iface}: {}", net::describe(&e));
            }
        }
    }

    /// Whether datagrams are left to read without waiting for readiness.
    pub fn wants_turn(&self) -> bool {
        self.more.iter().any(|m| *m)
    }

    /// Reads both sockets again where a read stopped at the per-turn bound.
    pub fn read_rest(&mut self, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        for which in 0..2 {
            if self.more[which] {
                self.read(which, node, now, out);
            }
        }
    }

    /// Reads what arrived on socket `which` (0: the group socket; at most
    /// [`READS_PER_TURN`]) and hands it to the node. An oversized datagram is read cut
    /// and dropped by the node's parser.
    pub fn read(&mut self, which: usize, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        let socket = match which {
            0 => &self.listener,
            _ => &self.socket,
        };
        self.more[which] = false;
        for _ in 0..READS_PER_TURN {
            match socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let first = self.buf[..n].split(|b| *b == b'\n').next().unwrap_or(&[]);
                    // Escaped: a datagram is anyone's, and stderr may be a terminal.
                    log::debug!("discovery: {n} bytes from {from}: {}", first.escape_ascii());
                    if which == 0 && !discovery::fits_group(&self.buf[..n]) {
                        // A query to the group would be answered by every peerchat.
                        log::debug!("discovery: not taken on the group's port");
                        continue;
                    }
                    node.on_datagram(from, &self.buf[..n], now, out);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP errors from earlier sends surface here; they are not fatal.
                    log::debug!("discovery: reading: {e}");
                }
            }
        }
        self.more[which] = true;
    }
}
