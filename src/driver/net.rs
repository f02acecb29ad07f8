//! Socket set-up the standard library does not offer, and errors in plain words.
//!
//! `socket2` gives the listener a large backlog (mio's default of 128 drops connections
//! under churn) and lets outgoing connections start from our bound address, so several
//! peers on one machine (`127.0.0.2`, `127.0.0.3`, ...) see each other under their own IPs.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use rustix::io::Errno;
use socket2::{Domain, Protocol, Socket, Type};

/// The listen backlog we ask for; the kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4, 128 before). Chosen with the accept loop (128 accepts per turn,
/// `connections::ACCEPTS_PER_TURN`): a turn at C = 256 concurrent senders takes a few
/// hundred microseconds, during which at most a few hundred SYNs arrive, far below 4096;
/// the same backlog as the floor server of the benchmark, which shows no overflow. A
/// larger one would only hold more connections nobody will read soon.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Whether a readiness event says the peer has sent all it will: its FIN has come (or the
/// connection broke). Everything it sent is then in the socket; see [`recv`] for how a
/// read knows it has taken the last of it.
pub fn peer_ended(event: &Event) -> bool {
    event.is_read_closed()
}

/// One read from an inbound `stream` into `buf`: how many bytes, and what the kernel says
/// is left in the socket after it (`TCP_INQ`, set on the listener and inherited by every
/// connection it accepts), the peer's FIN counted as one once it has come. Where the
/// count is not had, `None`.
///
/// With it a read that took less than it asked for needs no second read: nothing left
/// means nothing more has come (the edge-triggered poll reports what comes next), and
/// only the FIN left, on a connection the poll said had ended, means the end. TCP stops a
/// read short at an urgent mark too, but what lies beyond the mark is counted, so a mark
/// is never taken for the end, whether or not the poll reports it (it does not while the
/// urgent byte came before the segment that points at it).
#[cfg(target_os = "linux")]
pub fn recv(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<usize>)> {
    use std::os::fd::AsRawFd;
    // Room for one control message carrying an int (`CMSG_SPACE` of 4: a `cmsghdr`, 16
    // bytes on 64-bit systems, and the int padded to its alignment), aligned for it.
    let mut control = [0u64; 3];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Still `unsafe` and `libc`: rustix's `recvmsg` skips control messages it does not
    // know, and `TCP_CM_INQ` is one of them.
    // SAFETY: an all-zero `msghdr` is valid (no name, no buffers); the buffers set below
    // outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // A `size_t` in glibc, a `socklen_t` in musl.
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: a valid socket, and a `msghdr` whose buffers are valid for their lengths.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
        if let Ok(n) = usize::try_from(n) {
            break n;
        }
        // The raw number, not `kind()`: see `would_block`.
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    };
    // The only control message asked for, when it came: the first, whole.
    let header = std::mem::size_of::<libc::cmsghdr>();
    let left = if msg.msg_controllen as u64 >= (header + std::mem::size_of::<libc::c_int>()) as u64
    {
        // SAFETY: the kernel wrote a `cmsghdr` at the start of `control` (8-aligned), and
        // its data, at least an int, right after it (`CMSG_DATA` is the header's size on
        // Linux, whose `cmsghdr` is a multiple of its own alignment).
        let (cmsg, inq) = unsafe {
            let cmsg = control.as_ptr().cast::<libc::cmsghdr>();
            let data = control.as_ptr().cast::<u8>().add(header);
            (&*cmsg, std::ptr::read_unaligned(data.cast::<libc::c_int>()))
        };
        let ours = cmsg.cmsg_level == libc::SOL_TCP && cmsg.cmsg_type == libc::TCP_CM_INQ;
        ours.then(|| usize::try_from(inq).ok()).flatten()
    } else {
        None
    };
    Ok((n, left))
}

/// One read from `stream` into `buf`; what is left after it is not known here.
#[cfg(not(target_os = "linux"))]
pub fn recv(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<usize>)> {
    use std::io::Read;
    (&*stream).read(buf).map(|n| (n, None))
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
    #[cfg(target_os = "linux")]
    ask_for_inq(&socket);
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Asks that every read on the connections `socket` accepts say what it left in the
/// socket (`TCP_INQ`, see [`recv`]). Without it (a kernel older than 4.18) reads say
/// nothing, and a connection is read until the read that finds nothing.
#[cfg(target_os = "linux")]
fn ask_for_inq(socket: &Socket) {
    switch_on(socket, libc::SOL_TCP, libc::TCP_INQ, "TCP_INQ");
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
    switch_on(
        socket,
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        "IP_BIND_ADDRESS_NO_PORT",
    );
}

/// Sets the int option `name` at `level` of `socket` to 1, for options neither rustix nor
/// socket2 offers (hence `unsafe` and `libc`). Each saves something and none is needed, so
/// a failure is only logged, under the option's name `what`.
fn switch_on(socket: &Socket, level: libc::c_int, name: libc::c_int, what: &str) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket, a pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::debug!("{what}: {}", io::Error::last_os_error());
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

    /// The listener hands `TCP_INQ` to what it accepts: each read says what it left, the
    /// FIN counted as one (what `Inbound::read` relies on to skip reads that would find
    /// nothing, or only the end).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_read_says_what_it_left_with_the_fin_counted_as_one() -> io::Result<()> {
        use std::io::Write;
        let listener = listen("127.0.0.1:0".parse().expect("addr"))?;
        let mut sender = std::net::TcpStream::connect(listener.local_addr()?)?;
        sender.write_all(b"hello")?;
        sender.shutdown(std::net::Shutdown::Write)?;
        // Loopback delivers within the sender's calls: the connection, its bytes and its
        // FIN are all there now.
        let (stream, _) = listener.accept()?;
        let mut buf = [0u8; 64];
        assert_eq!(
            recv(&stream, &mut buf[..3])?,
            (3, Some(3)),
            "2 bytes and the FIN"
        );
        assert_eq!(recv(&stream, &mut buf)?, (2, Some(1)), "only the FIN");
        assert_eq!(recv(&stream, &mut buf)?.0, 0, "end-of-file");
        assert_eq!(&buf[..2], b"lo");
        Ok(())
    }

    #[test]
    fn listener_reports_its_real_port() -> io::Result<()> {
        let listener = listen("127.0.0.1:0".parse().expect("addr"))?;
        assert_ne!(listener.local_addr()?.port(), 0);
        Ok(())
    }
}
