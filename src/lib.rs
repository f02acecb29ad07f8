//! peerchat: a terminal peer-to-peer chat peer for lab networks.
//!
//! # Architecture
//!
//! One thread, one [`mio::Poll`], no async runtime, no locks. The loop moves bytes; pure
//! modules decide what they mean:
//!
//! ```text
//!  stdin ──lines──▶ ┌──────────────┐ ──Effect::Show──▶ output ──▶ stdout
//!  sockets ─bytes─▶ │  event_loop  │ ──Effect::Send──▶ outbox ──▶ one TCP connection
//!  signals ───────▶ │ (mio, slab,  │                             per message
//!  timers ────────▶ │   timers)    │ ◀──── decides ──── node (peer table, console,
//!                   └──────────────┘                          connect/exit rules)
//! ```
//!
//! - [`wire`]: decodes every dialect the lab's peers send, encodes ours. Pure.
//! - [`node`]: the protocol's rules; takes events, returns [`node::Effect`]s. Pure.
//! - [`node::peers`]: the peer table, keyed by observed IP plus claimed port. Pure.
//! - [`node::commands`]: the numbered menu and the `/` commands; [`ui::lineedit`]: keystrokes to
//!   lines on a terminal. Pure.
//! - [`node::outbox`]: per-destination ordering and the bound on connections in flight. Pure.
//! - [`node::liveness`]: when to check which peer, back-off, unreachable, removal. Pure.
//! - [`node::timers`]: the deadline set that gives `poll` its timeout. Pure.
//! - [`node::event`] and [`ui::render`]: what the user is told, and its documented layout.
//! - [`node::history`]: the message history and the records that persist it. Pure.
//! - [`driver::event_loop`]: the executor; [`driver::stdin`], [`driver::stdout`] (over [`driver::fdio`]), [`driver::net`] and
//!   [`driver::journal`] (the `--state` directory) are its OS-facing helpers, [`driver::terminal`] sets and restores the
//!   terminal mode, and [`ui::clock`] formats wall-clock time.
//! - [`config`] and [`cli`]: how a peer is configured.
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
pub mod config;
pub mod driver;
pub mod node;
pub mod ui;
pub mod wire;

pub use config::{Config, Limits};
pub use driver::event_loop::{Error, EventLoop, Handler};
pub use node::commands::Command;
pub use node::event::Event;

/// Runs a peer with `config` until it quits.
pub fn run(config: Config) -> Result<(), Error> {
    EventLoop::bind(config)?.run()
}
