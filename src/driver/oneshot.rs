//! `peerchat send`: one message to one peer, without listening, for scripts. Blocking
//! sockets are right here: there is nothing else to do meanwhile. Long messages are split
//! as the peer would split them, each part on its own connection once the previous one is
//! over, in our default form (`--format`: the receiver was never heard).

use crate::time::Instant;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use crate::config::Config;
use crate::driver::net;
use crate::wire::{self, OwnHeader};

/// Sends `text` to `dest` as `config` describes us (name, port, `--bind`, `--advertise`,
/// timeouts). Returns what the receiver said back, if anything, or why it failed.
pub fn send_once(config: &Config, dest: SocketAddr, text: &str) -> Result<Option<String>, String> {
    let header = OwnHeader {
        name: config.name.clone(),
        format: config.format,
        port: config.port,
        claim: config.advertise,
    };
    let mut reply = None;
    for part in wire::split_for_wire(text, header.budget(dest)) {
        reply = deliver(config, &header, dest, part).map_err(|e| net::describe(&e))?;
    }
    Ok(reply)
}

/// One part: connect, write, shut down our side, then read until the receiver closes (or
/// the linger ends), so that the next part leaves after it.
fn deliver(
    config: &Config,
    header: &OwnHeader,
    dest: SocketAddr,
    part: &str,
) -> std::io::Result<Option<String>> {
    let limits = &config.limits;
    let stream = match config.bind {
        ip if ip.is_unspecified() || ip.is_ipv4() != dest.is_ipv4() => {
            TcpStream::connect_timeout(&dest, limits.send_timeout)?
        }
        ip => {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(dest),
                socket2::Type::STREAM,
                None,
            )?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.connect_timeout(&dest.into(), limits.send_timeout)?;
            socket.into()
        }
    };
    stream.set_write_timeout(Some(limits.send_timeout))?;
    let local = stream.local_addr()?.ip();
    (&stream).write_all(&header.encode(local, part))?;
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + limits.linger;
    let mut said = Vec::new();
    let mut buf = [0; 512];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        stream.set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))?;
        match (&stream).read(&mut buf) {
            Ok(0) => return at_eof(&stream, until).map(|()| wire::reply_line(&said)),
            Err(e) if net::is_reset(&e) => return Err(std::io::Error::other(net::RESET)),
            Err(_) => break,
            Ok(n) => {
                let room = wire::MAX_REPLY.saturating_sub(said.len());
                said.extend_from_slice(&buf[..n.min(room)]);
                if wire::reply_line(&said).is_some_and(|r| wire::is_acknowledgement(&r)) {
                    break;
                }
            }
        }
    }
    Ok(wire::reply_line(&said))
}

/// The receiver's EOF: delivered, unless it closed before our message reached it; then
/// its reset (the socket's error: reads go on returning EOF) fails the send, and an
/// acknowledgement, or the linger's end, delivers it. Nothing to wait on but time here
/// (the socket stays readable at EOF): looked at every 5 ms, for at most the linger.
fn at_eof(stream: &TcpStream, until: Instant) -> std::io::Result<()> {
    loop {
        if let Some(e) = stream.take_error()? {
            return Err(match net::is_reset(&e) {
                true => std::io::Error::other(net::RESET),
                false => e,
            });
        }
        if !net::message_unacknowledged(stream) || Instant::now() >= until {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
