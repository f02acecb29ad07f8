//! The tokio contender: an accept-spawn server on tokio's multi-thread runtime (one worker per
//! core), the way a Rust service is usually written today.
//!
//! [`serve`] accepts in a loop and spawns one task per connection. The task reads until EOF and
//! hands every complete line (and what is left at EOF, as one more line) to one writer task
//! over an unbounded channel; the writer drains whatever is queued into a buffered stdout and
//! flushes once the queue is empty: the tokio form of the floor's "buffered stdout, flushed
//! once per batch". It listens with tokio's default backlog (1,024).

use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{self, UnboundedSender};

/// Room kept free in a connection's buffer before each read.
const READ_ROOM: usize = 1 << 16;

/// Serves forever (until a signal ends the process).
pub fn serve(bind: SocketAddr) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(bind).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer = tokio::spawn(async move {
            let mut out = BufWriter::with_capacity(1 << 16, io::stdout());
            while let Some(lines) = rx.recv().await {
                out.write_all(&lines)?;
                while let Ok(lines) = rx.try_recv() {
                    out.write_all(&lines)?;
                }
                out.flush()?;
            }
            io::Result::Ok(())
        });
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {} as tokio", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, tx.clone()));
                }
                // EMFILE and friends: let the connections in hand finish first.
                Err(_) => tokio::task::yield_now().await,
            }
            if writer.is_finished() {
                return Err(io::Error::other("the stdout writer task ended"));
            }
        }
    })
}

/// Reads one connection to EOF, sending each batch of complete lines to the writer.
async fn handle(mut stream: TcpStream, tx: UnboundedSender<Vec<u8>>) {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if pending.capacity() - pending.len() < READ_ROOM / 4 {
            pending.reserve(READ_ROOM);
        }
        let old = pending.len();
        match stream.read_buf(&mut pending).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(end) = pending[old..].iter().rposition(|&b| b == b'\n') {
                    let rest = pending.split_off(old + end + 1);
                    if tx.send(std::mem::replace(&mut pending, rest)).is_err() {
                        return;
                    }
                }
            }
        }
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        let _ = tx.send(pending);
    }
}
