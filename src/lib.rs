//! peerchat: a terminal peer-to-peer chat peer for lab networks.
//!
//! # Architecture
//!
//! One thread, one [`mio::Poll`], no async runtime, no locks. A pure core decides; an I/O
//! shell executes. The tree says which is which:
//!
//! ```text
//!   stdin, sockets, signals            stdout, journal, sockets
//!            │                                   ▲
//!            ▼                                   │
//!   driver/   event_loop · connections · connection · stdin · stdout · journal · terminal
//!             · discovery · logsink · net · oneshot
//!            │  bytes, lines, results,           ▲  effects, messages to transmit,
//!            │  time passed (`now`)              │  the next deadline
//!            ▼                                   │
//!   node/     Node · peers · liveness · outbox · history · commands · event · timers
//!             · discovery
//!   wire/     decoder · dialects · json · encode · replies · run (pure: no clock, no I/O)
//! ```
//!
//! - `wire/`: decodes every dialect the lab's peers send (docs/PROTOCOL.md), and encodes
//!   ours in each of them (every peer is answered in the dialect it spoke); what receivers
//!   say back on our connections. Public, as the one door for fuzzing and for programs that
//!   speak the protocol.
//! - `node/`: the `Node` takes inputs (`on_message`, `on_line`, `on_sent`, `on_timeout`...)
//!   and answers with effects, the messages to transmit (`poll_transmit`) and when to wake
//!   it (`poll_timeout`), in the shape of quinn-proto's connections. Its parts: `peers`,
//!   `liveness`, `outbox`, `history`, `commands`, `event`, `timers`, `discovery` (the LAN
//!   side channel of `--discover`: datagrams in with `on_datagram`, out as effects).
//! - `driver/`: the executor of those decisions, and nothing else (plus `oneshot`, the
//!   blocking `peerchat send`, which has no loop to run).
//! - `ui/`: what the user sees and types: rendering, the line editor, wall-clock formats.
//! - [`cli`]: the `peerchat` command line, resolved into a [`Config`].
//! - `time`: the `Instant` everything above takes as `now`: the monotonic clock as one
//!   count of nanoseconds (the simulator starts its own at a fixed origin).
//! - `sim/` (tests only): many nodes on a virtual clock and network, with faults.
//!
//! # Embedding
//!
//! A program can run a peer without a terminal and react to its events:
//!
//! ```no_run
//! use peerchat::{Command, Config, Event, EventLoop, Handler};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_event(&mut self, event: &Event, commands: &mut Vec<Command>) {
//!         if let Event::Message { from, text } = event {
//!             if let Some(dest) = from.addr() {
//!                 commands.push(Command::Send { dest, text: format!("you said: {text}") });
//!             }
//!         }
//!     }
//! }
//!
//! let config = Config::new("echo")
//!     .bind("127.0.0.2".parse().unwrap())
//!     .port(5000)
//!     .headless(true)
//!     .output(false);
//! EventLoop::bind(config)?.run_with(Echo)?;
//! # Ok::<(), peerchat::Error>(())
//! ```

#![deny(missing_docs)]

pub mod cli;
mod config;
mod driver;
mod node;
#[cfg(test)]
mod sim;
mod time;
mod ui;
pub mod wire;

pub use config::{Config, Limits};
pub use driver::event_loop::{Error, EventLoop, Handler};
/// The writer to give env_logger (or any logger) as its target: stderr, except while
/// peerchat edits the line on the terminal that stderr is too, when records are printed
/// above the prompt instead of into the typed line.
pub use driver::logsink::Writer as LogWriter;
pub use driver::oneshot::send_once;
pub use node::commands::Command;
pub use node::event::{Event, LeaveReason, Sender};
pub use node::history::{Direction, Entry};
pub use node::peers::{Row, Source, Status};
pub use wire::Format;

/// The documented plain line(s) for `event`, `\n`-ended: no colour, no time, and text that
/// came from the network escaped (a receiver's reply cannot put escape codes on the
/// terminal). What `peerchat send` prints.
pub fn plain_line(event: &Event) -> String {
    let mut out = String::new();
    ui::render::render(event, &mut out);
    out
}

/// Runs a peer with `config` until it quits.
pub fn run(config: Config) -> Result<(), Error> {
    EventLoop::bind(config)?.run()
}
