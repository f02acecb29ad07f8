//! Listening sinks inside the bench process: `P` listeners on `127.0.0.x` addresses served by
//! one mio loop on its own thread. Each sink reads every incoming connection to EOF, counts it,
//! and reports over a channel when it has received a message containing the marker text.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

const WAKER: Token = Token(usize::MAX);

/// The running sinks.
pub struct Sinks {
    /// Listening address of sink `i`.
    pub addrs: Vec<SocketAddr>,
    /// Connections accepted so far, all sinks together (messages and probes).
    pub connections: Arc<AtomicU64>,
    marks: Receiver<(usize, Instant)>,
    waker: Waker,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// The address of sink `i`: spread over `127.0.0.100` to `127.0.0.199`.
fn sink_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 100 + (i % 100) as u8)
}

impl Sinks {
    /// Starts `p` sinks that report connections whose bytes contain `marker`.
    pub fn start(p: usize, marker: Vec<u8>) -> io::Result<Sinks> {
        let poll = Poll::new()?;
        let mut listeners = Vec::with_capacity(p);
        let mut addrs = Vec::with_capacity(p);
        for i in 0..p {
            let mut listener = TcpListener::bind(SocketAddr::from((sink_ip(i), 0)))?;
            poll.registry()
                .register(&mut listener, Token(i), Interest::READABLE)?;
            addrs.push(listener.local_addr()?);
            listeners.push(listener);
        }
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (tx, marks) = mpsc::channel();
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        let thread =
            thread::Builder::new()
                .name("sinks".into())
                .spawn(move || -> io::Result<()> {
                    let mut poll = poll;
                    let mut events = Events::with_capacity(1024);
                    let mut conns: Slab<(TcpStream, usize, Vec<u8>)> = Slab::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        match poll.poll(&mut events, None) {
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            other => other?,
                        }
                        for event in &events {
                            let token = event.token();
                            if token == WAKER {
                                return Ok(());
                            }
                            if token.0 < p {
                                while let Ok((mut stream, _)) = listeners[token.0].accept() {
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    let entry = conns.vacant_entry();
                                    let key = Token(p + entry.key());
                                    poll.registry().register(
                                        &mut stream,
                                        key,
                                        Interest::READABLE,
                                    )?;
                                    entry.insert((stream, token.0, Vec::new()));
                                }
                                continue;
                            }
                            let key = token.0 - p;
                            let Some((stream, _, data)) = conns.get_mut(key) else {
                                continue;
                            };
                            let finished = loop {
                                match stream.read(&mut buf) {
                                    Ok(0) => break true,
                                    Ok(n) => data.extend_from_slice(&buf[..n]),
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                                    Err(_) => break true,
                                }
                            };
                            if finished {
                                let (mut stream, sink, data) = conns.remove(key);
                                poll.registry().deregister(&mut stream)?;
                                if data.windows(marker.len()).any(|w| w == marker.as_slice()) {
                                    let _ = tx.send((sink, Instant::now()));
                                }
                            }
                        }
                    }
                })?;
        Ok(Sinks {
            addrs,
            connections,
            marks,
            waker,
            thread: Some(thread),
        })
    }

    /// Waits until every sink has reported the marker or `deadline` passes; returns the time
    /// each sink got it (`None`: never).
    pub fn wait_marks(&self, deadline: Instant) -> Vec<Option<Instant>> {
        let mut got = vec![None; self.addrs.len()];
        let mut count = 0;
        while count < got.len() {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.marks.recv_timeout(timeout) {
                Ok((sink, at)) => {
                    if got[sink].is_none() {
                        got[sink] = Some(at);
                        count += 1;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        got
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
