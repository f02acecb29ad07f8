//! A bot built on the peerchat library: it answers every `ping` with `pong`.
//!
//! ```sh
//! cargo run --example ping_bot -- 127.0.0.2 5000
//! ```
//!
//! It prints each event as JSON on stdout like `peerchat --json` (so a test can follow
//! it), reads no stdin, and leaves on SIGINT/SIGTERM or when someone sends it `quit`.

use std::net::IpAddr;
use std::process::ExitCode;

use peerchat::{Command, Config, Event, EventLoop, Handler};

/// Answers `ping` (any case, surrounding spaces ignored) with `pong`.
struct PingPong;

impl Handler for PingPong {
    fn on_event(&mut self, event: &Event, commands: &mut Vec<Command>) {
        let Event::Message { from, text } = event else {
            return;
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "ping" => {
                // Reply to the sender's listening port; a sender without one cannot be answered.
                if let Some(dest) = from.addr() {
                    commands.push(Command::Send {
                        dest,
                        text: "pong".into(),
                    });
                }
            }
            "quit" => commands.push(Command::Quit),
            _ => {}
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let ip: IpAddr = match args.next().map(|s| s.parse()) {
        Some(Ok(ip)) => ip,
        None => "127.0.0.1".parse().expect("a valid literal"),
        Some(Err(_)) => {
            eprintln!("usage: ping_bot [IP [PORT]]");
            return ExitCode::from(2);
        }
    };
    let port: u16 = match args.next().map(|s| s.parse()) {
        Some(Ok(port)) => port,
        None => 0,
        Some(Err(_)) => {
            eprintln!("usage: ping_bot [IP [PORT]]");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::new("pingbot").bind(ip).port(port).headless(true);
    config.json = true;
    let result = EventLoop::bind(config).and_then(|peer| peer.run_with(PingPong));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ping_bot: {e}");
            ExitCode::FAILURE
        }
    }
}
