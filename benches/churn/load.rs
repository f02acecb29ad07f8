//! The load generator, the same for every contender: one-message connections at a fixed
//! concurrency on one mio loop ([`churn`]), idle connections held open ([`hold`]), a single
//! timed message ([`send_one`]), and a blocking connection for the hostile scenario's
//! attackers ([`connect_from`]). Every outgoing socket is bound to a source address
//! (`127.0.0.2`, ...) before connecting, with `IP_BIND_ADDRESS_NO_PORT` so that the kernel
//! picks the port per 4-tuple and the 28,232 ephemeral ports are not the limit.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The message of churn id `id`: standard form, no trailing newline. The claimed port 9 has no
/// listener, so a peer that probes the senders gets a quick refusal.
pub fn churn_message(src: Ipv4Addr, tag: &str, id: u32) -> String {
    format!("{src}:9 bench {tag}{id}")
}

/// Finds `tag` followed by a decimal id in a printed line.
pub fn find_id(line: &[u8], tag: &[u8]) -> Option<u32> {
    let at = line.windows(tag.len()).position(|w| w == tag)?;
    let digits = &line[at + tag.len()..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

/// A socket bound to `src` (port chosen at connect time, with `IP_BIND_ADDRESS_NO_PORT`,
/// so that many connections from one source do not each reserve a port at bind),
/// connecting to `target`, non-blocking. The load generator has its own, independent of
/// the code under test.
fn start_connect(src: Ipv4Addr, target: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::AsRawFd;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    let one: libc::c_int = 1;
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
        return Err(io::Error::last_os_error());
    }
    socket.bind(&SocketAddr::new(src.into(), 0).into())?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// A blocking connection from `src` (port chosen by the kernel) to `target`, set up like
/// the load generator's own: for attackers that write a lot on few connections.
pub fn connect_from(
    src: Ipv4Addr,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let mut stream = start_connect(src, target)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut stream, Token(0), Interest::WRITABLE)?;
    let mut events = Events::with_capacity(4);
    let deadline = Instant::now() + timeout;
    while !connected(&stream)? {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, "connect timed out"));
        }
        match poll.poll(&mut events, Some(deadline - now)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => other?,
        }
    }
    poll.registry().deregister(&mut stream)?;
    let stream = std::net::TcpStream::from(stream);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// `Ok(true)` once a non-blocking connect has completed, `Ok(false)` while in progress.
fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// What one churn run did on the sending side.
pub struct ChurnStats {
    pub started: Instant,
    /// Connect + write + close of each delivered-by-us message, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Connects that failed (the id was retried on a new connection).
    pub connect_errors: u64,
    /// Writes that failed after a connect succeeded (the message may be lost).
    pub write_errors: u64,
    /// Ids `0..sent` were sent (the time budget may end a run before `n`).
    pub sent: u32,
}

struct Conn {
    stream: TcpStream,
    id: u32,
    started: Instant,
    msg: Vec<u8>,
    written: usize,
}

/// Sends ids `0..n`, one message per connection, at most `concurrency` connections open, source
/// addresses taken round-robin from `sources`. No new id is started after `budget` (connections
/// already tried are still retried), so a slow contender does not stretch the whole bench.
pub fn churn(
    target: SocketAddr,
    sources: &[Ipv4Addr],
    tag: &str,
    n: u32,
    concurrency: usize,
    budget: Duration,
    deadline: Instant,
) -> io::Result<ChurnStats> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::with_capacity(concurrency);
    let mut retry: VecDeque<u32> = VecDeque::new();
    let started = Instant::now();
    let mut stats = ChurnStats {
        started,
        latencies_us: Vec::with_capacity(n as usize),
        connect_errors: 0,
        write_errors: 0,
        sent: 0,
    };
    let mut next_source = 0;
    loop {
        while conns.len() < concurrency {
            let id = match retry.pop_front() {
                Some(id) => id,
                None if stats.sent < n && started.elapsed() < budget => {
                    stats.sent += 1;
                    stats.sent - 1
                }
                None => break,
            };
            let src = sources[next_source % sources.len()];
            next_source += 1;
            let now = Instant::now();
            match start_connect(src, target) {
                Ok(mut stream) => {
                    let entry = conns.vacant_entry();
                    poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::WRITABLE,
                    )?;
                    let msg = churn_message(src, tag, id).into_bytes();
                    entry.insert(Conn {
                        stream,
                        id,
                        started: now,
                        msg,
                        written: 0,
                    });
                }
                Err(_) => {
                    stats.connect_errors += 1;
                    retry.push_back(id);
                    if stats.connect_errors > u64::from(n) + 1000 {
                        return Err(io::Error::other("too many connect errors"));
                    }
                    break; // let the open connections make progress first
                }
            }
        }
        if conns.is_empty() && retry.is_empty() {
            return Ok(stats);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "{} connections still open, {} to retry at the deadline",
                    conns.len(),
                    retry.len()
                ),
            ));
        }
        match poll.poll(&mut events, Some(deadline - now)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in &events {
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let done = match connected(&conn.stream) {
                Ok(false) => false,
                Err(_) => {
                    stats.connect_errors += 1;
                    retry.push_back(conn.id);
                    true
                }
                Ok(true) => loop {
                    match conn.stream.write(&conn.msg[conn.written..]) {
                        Ok(k) => {
                            conn.written += k;
                            if conn.written == conn.msg.len() {
                                break true;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            stats.write_errors += 1;
                            break true;
                        }
                    }
                },
            };
            if done {
                let mut conn = conns.remove(key);
                poll.registry().deregister(&mut conn.stream)?;
                let complete = conn.written == conn.msg.len();
                drop(conn.stream); // close: FIN after the message
                if complete {
                    let us = conn.started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    stats.latencies_us.push(us);
                }
            }
        }
    }
}

/// Opens up to `k` connections that send nothing and keeps them open. `accepted()` tells how
/// many the server has taken so far; no more than `WINDOW` connections are left waiting in its
/// accept queue, so a slow acceptor with a small backlog is measured, not its dropped SYNs.
/// Returns the connections established (from the client's side) when all `k` are, or at the
/// deadline.
pub fn hold(
    target: SocketAddr,
    sources: &[Ipv4Addr],
    k: usize,
    deadline: Instant,
    mut accepted: impl FnMut() -> usize,
) -> io::Result<Vec<TcpStream>> {
    const IN_FLIGHT: usize = 64;
    const WINDOW: usize = 100;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut pending: Slab<TcpStream> = Slab::new();
    let mut held = Vec::with_capacity(k);
    let (mut started, mut taken) = (0, 0);
    while held.len() < k {
        if started >= taken + WINDOW {
            taken = accepted();
        }
        while pending.len() < IN_FLIGHT && started < k && started < taken + WINDOW {
            let mut stream = start_connect(sources[started % sources.len()], target)?;
            let entry = pending.vacant_entry();
            poll.registry()
                .register(&mut stream, Token(entry.key()), Interest::WRITABLE)?;
            entry.insert(stream);
            started += 1;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = if pending.is_empty() {
            Duration::from_millis(2)
        } else {
            deadline - now
        };
        match poll.poll(&mut events, Some(wait.min(deadline - now))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in &events {
            let key = event.token().0;
            let Some(stream) = pending.get(key) else {
                continue;
            };
            if connected(stream)? {
                let mut stream = pending.remove(key);
                poll.registry().deregister(&mut stream)?;
                held.push(stream);
            }
        }
    }
    Ok(held)
}

/// How many of the held connections the other side has closed (EOF or reset).
pub fn closed_by_peer(held: &[TcpStream]) -> usize {
    let mut byte = [0u8; 1];
    held.iter()
        .filter(|s| match s.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        })
        .count()
}

/// Connects from `src` to `target`, writes `msg` and closes, blocking; returns how long it took.
pub fn send_one(src: SocketAddr, target: SocketAddr, msg: &str) -> io::Result<Duration> {
    let started = Instant::now();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&src.into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
    let mut stream: std::net::TcpStream = socket.into();
    stream.write_all(msg.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    drop(stream);
    Ok(started.elapsed())
}
