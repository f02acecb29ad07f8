//! Socket set-up the standard library does not offer, and errors in plain words.
//!
//! `socket2` gives the listener a large backlog (mio's default of 128 drops connections
//! under churn) and lets outgoing connections start from our bound address, so several
//! peers on one machine (`127.0.0.2`, `127.0.0.3`, ...) see each other under their own IPs.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::Interest;
use rustix::io::Errno;
use socket2::{Domain, Protocol, Socket, Type};

/// The listen backlog we ask for; the kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4, 128 before). Chosen with the accept loop (128 accepts per turn,
/// `connections::ACCEPTS_PER_TURN`): a turn at C = 256 concurrent senders takes a few
/// hundred microseconds, during which at most a few hundred SYNs arrive, far below 4096;
/// the same backlog as the floor server of the benchmark, which shows no overflow. A
/// larger one would only hold more connections nobody will read soon.
pub const LISTEN_BACKLOG: i32 = 4096;

/// What an inbound connection is watched for: readable, and an urgent byte pending (so
/// that [`peer_ended`] can tell when a short read is the end).
pub const INBOUND: Interest = Interest::READABLE.add(Interest::PRIORITY);

/// Whether a readiness event says the peer has sent all it will: its FIN has come, the
/// connection is not broken, and no urgent byte is pending. Everything it sent is then in
/// the socket, and a read that takes less than it asked for has taken the rest: TCP stops a
/// read short only at the end of what has arrived or at an urgent mark, which the poll
/// reports as `EPOLLPRI` (peerchat never reads urgent data out of band, so one pending
/// stays reported until an ordinary read passes it). Such a read needs no second read to
/// meet the end-of-file: one system call less for a one-message connection.
pub fn peer_ended(event: &Event) -> bool {
    event.is_read_closed() && !event.is_error() && !event.is_priority()
}

/// Whether `e` says the call would block (`EAGAIN`): how every accept, read and write on
/// a non-blocking socket ends. The raw error number is compared first, an instruction or
/// two, where `io::Error::kind` alone costs a call and a table's decoding (about 20
/// instructions, on every turn's last accept).
#[inline]
pub fn would_block(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN) || e.kind() == io::ErrorKind::WouldBlock
}

/// A non-blocking listener on `addr` with a large backlog.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `::` should accept IPv4 too where the system allows it.
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Starts a non-blocking connection to `dest`, from `from` when given (port chosen by the
/// system). The connection completes, or fails, when the stream becomes writable.
pub fn connect(dest: SocketAddr, from: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = from.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == dest.is_ipv4()) {
        // Let connect() pick the port, knowing the destination: a plain bind to port 0
        // would reserve an ephemeral port for every destination at once, and a busy
        // sender would run out of them while its closed connections sit in TIME_WAIT.
        set_bind_address_no_port(&socket);
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&dest.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(Errno::INPROGRESS.raw_os_error()) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// `IP_BIND_ADDRESS_NO_PORT` (Linux); failing to set it only costs ports, so it is ignored.
fn set_bind_address_no_port(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // Still `unsafe` and `libc`: neither rustix nor socket2 offers IP_BIND_ADDRESS_NO_PORT.
    // SAFETY: a valid socket, a pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("IP_BIND_ADDRESS_NO_PORT: {}", io::Error::last_os_error());
    }
}

/// Why a message written in full was not delivered: the receiver reset the connection (it
/// closed with bytes of ours unread, as a refusal does; or, rarely, it read them and
/// closed with `SO_LINGER` zero, which looks the same from here).
pub const RESET: &str = "the connection was reset: the receiver may not have read the message";

/// Whether `e` is the receiver's reset: `ECONNRESET`, or `EPIPE` when the reset came
/// after its EOF (Linux reports it so then).
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Whether the receiver of a connection we wrote a message on and shut down has yet to
/// acknowledge some of it: more than our FIN unacknowledged (`SIOCOUTQ`). Its EOF then
/// came before the message reached it (it closed without reading; a reset follows), so
/// the EOF says nothing of delivery. False when the count cannot be had.
pub fn message_unacknowledged(stream: &impl std::os::fd::AsRawFd) -> bool {
    let mut queued: libc::c_int = 0;
    // Still `unsafe` and `libc`: neither rustix nor socket2 offers SIOCOUTQ.
    // SAFETY: a valid socket, and a pointer to the int the request writes.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    // SIOCOUTQ is TIOCOUTQ on Linux: bytes written and not yet acknowledged, our FIN
    // counted as one once we shut down writing.
    rc == 0 && queued > 1
}

/// Raises the soft limit on open descriptors to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let (current, maximum) = (
        lim.current.unwrap_or(u64::MAX),
        lim.maximum.unwrap_or(u64::MAX),
    );
    if current < maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        )?;
        return Ok(maximum);
    }
    Ok(current)
}

/// Why a connection failed, in words a student understands.
pub fn describe(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let plain = match Errno::from_raw_os_error(code) {
        Errno::CONNREFUSED => "connection refused (nothing is listening on that port)",
        Errno::TIMEDOUT => "no answer (the connection timed out)",
        Errno::HOSTUNREACH => "host unreachable",
        Errno::NETUNREACH => "network unreachable",
        Errno::CONNRESET => "connection reset by the peer",
        Errno::PIPE => "the peer closed the connection before reading everything",
        Errno::ADDRNOTAVAIL => "address not available on this machine",
        Errno::ADDRINUSE => "address already in use",
        Errno::ACCESS | Errno::PERM => "permission denied",
        Errno::MFILE | Errno::NFILE => "too many open files",
        _ => return err.to_string(),
    };
    plain.to_owned()
}

/// The IP addresses we listen on: the bound one, or, bound to every address, the
/// machine's (its interfaces', and all of loopback's, which every 127.x reaches).
pub fn own_ips(bind: IpAddr) -> Vec<IpAddr> {
    if !bind.is_unspecified() {
        return vec![bind];
    }
    let mut ips: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            log::debug!("cannot list the machine's addresses: {e}");
            Vec::new()
        }
    };
    // The unspecified address stands for "every address": every 127.x reaches us too.
    ips.extend([
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        bind,
    ]);
    ips.sort_unstable();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_common_failures_plainly() {
        let refused = io::Error::from_raw_os_error(Errno::CONNREFUSED.raw_os_error());
        assert!(describe(&refused).contains("refused"));
        let other = io::Error::other("odd");
        assert_eq!(describe(&other), "odd");
    }

    #[test]
    fn listener_reports_its_real_port() -> io::Result<()> {
        let listener = listen("127.0.0.1:0".parse().expect("addr"))?;
        assert_ne!(listener.local_addr()?.port(), 0);
        Ok(())
    }
}
