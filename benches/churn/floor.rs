//! The floor contender: the smallest correct single-threaded mio programs for the bench's jobs.
//!
//! [`serve`] accepts until `WouldBlock`, reads each connection to EOF, writes every complete
//! line to a buffered stdout as soon as it has arrived (and what is left at EOF as one more
//! line), flushed once per batch of events, and closes. A one-message connection is one line;
//! a persistent sender's lines (the `stream` scenario) are written as they come, nothing more.
//! It listens with a large backlog through `socket2`. It approximates what the kernel allows on
//! one core: a peer that parses, keeps a peer table and prints should stay close to it.
//!
//! [`fan_out`] is the floor for `/all`: it waits for one line on stdin, then opens every
//! connection at once on one mio loop, writes the message and closes each as it becomes ready.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, BufRead, BufWriter, ErrorKind, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(usize::MAX);

/// Serves forever (until a signal ends the process): accept, read to EOF, print, close.
pub fn serve(bind: SocketAddr) -> io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&bind.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(socket.into());
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    writeln!(out, "listening on {} as floor", listener.local_addr()?)?;
    out.flush()?;
    // Per connection, the unfinished line; it allocates only when bytes arrive without a
    // newline (a one-message connection, or the tail of a read that ends mid-line).
    let mut conns: Slab<(TcpStream, Vec<u8>)> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in &events {
            if event.token() == LISTENER {
                // Any accept error (EMFILE, ECONNABORTED...) waits for the next readiness event.
                while let Ok((mut stream, _)) = listener.accept() {
                    let entry = conns.vacant_entry();
                    poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE,
                    )?;
                    entry.insert((stream, Vec::new()));
                }
                continue;
            }
            let key = event.token().0;
            let Some((stream, msg)) = conns.get_mut(key) else {
                continue;
            };
            let finished = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => {
                        let chunk = &buf[..n];
                        match chunk.iter().rposition(|&b| b == b'\n') {
                            Some(end) => {
                                if !msg.is_empty() {
                                    out.write_all(msg)?;
                                    msg.clear();
                                }
                                out.write_all(&chunk[..=end])?;
                                msg.extend_from_slice(&chunk[end + 1..]);
                            }
                            None => msg.extend_from_slice(chunk),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break true,
                }
            };
            if finished {
                let (mut stream, msg) = conns.remove(key);
                poll.registry().deregister(&mut stream)?;
                if !msg.is_empty() {
                    out.write_all(&msg)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        out.flush()?;
    }
}

/// Waits for a line such as `/all hello` on stdin, then sends `hello` to every target at once.
pub fn fan_out(targets: &[SocketAddr]) -> io::Result<()> {
    println!("listening on 0.0.0.0:0 as floor-fanout");
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    let text = line.trim_end().trim_start_matches("/all ").to_owned();
    let mut poll = Poll::new()?;
    let mut streams = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let mut stream = TcpStream::connect(*target)?;
        poll.registry()
            .register(&mut stream, Token(i), Interest::WRITABLE)?;
        streams.push(Some(stream));
    }
    let mut left = targets.len();
    let mut events = Events::with_capacity(1024);
    while left > 0 {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in &events {
            let slot = &mut streams[event.token().0];
            let Some(stream) = slot else { continue };
            if let Err(e) = stream.peer_addr() {
                if e.kind() == ErrorKind::NotConnected && stream.take_error()?.is_none() {
                    continue; // still connecting
                }
            } else {
                let msg = format!("{} floor {}", stream.local_addr()?, text);
                stream.write_all(msg.as_bytes())?; // a few dozen bytes fit an empty send buffer
            }
            if let Some(mut stream) = slot.take() {
                poll.registry().deregister(&mut stream)?;
            }
            left -= 1;
        }
    }
    Ok(())
}
