//! The thread-per-connection contender, written with std only, the way most lab peers are built.
//!
//! [`serve`] accepts on a std listener (default backlog 128) and spawns one thread per
//! connection that reads to EOF through a `BufReader`, printing each line (and what is left at
//! EOF as one more line) through the shared, line-buffered stdout.
//! [`fan_out`] waits for `/all TEXT` on stdin and sends to every target from its own thread.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// Serves forever (until a signal ends the process).
pub fn serve(bind: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(bind)?;
    println!("listening on {} as threads", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            // A failed spawn drops (closes) the connection.
            Ok(stream) => drop(thread::Builder::new().spawn(move || handle(stream))),
            // EMFILE and friends: back off a little instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
    Ok(())
}

fn handle(stream: TcpStream) {
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                if io::stdout().lock().write_all(&line).is_err() {
                    return;
                }
            }
        }
    }
}

/// Waits for a line such as `/all hello` on stdin, then sends `hello` to every target, one
/// thread per target.
pub fn fan_out(targets: &[SocketAddr]) -> io::Result<()> {
    println!("listening on 0.0.0.0:0 as threads-fanout");
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    let text = line.trim_end().trim_start_matches("/all ").to_owned();
    let handles: Vec<_> = targets
        .iter()
        .map(|&target| {
            let text = text.clone();
            thread::spawn(move || -> io::Result<()> {
                let mut stream = TcpStream::connect(target)?;
                let msg = format!("{} threads {}", stream.local_addr()?, text);
                stream.write_all(msg.as_bytes())
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| io::Error::other("sender thread panicked"))??;
    }
    Ok(())
}
