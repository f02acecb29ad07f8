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
//! - [`peers`]: the peer table, keyed by observed IP plus claimed port. Pure.
//! - [`command`]: the numbered menu and the `/` commands; [`lineedit`]: keystrokes to
//!   lines on a terminal. Pure.
//! - [`outbox`]: per-destination ordering and the bound on connections in flight. Pure.
//! - [`liveness`]: when to check which peer, back-off, unreachable, removal. Pure.
//! - [`timers`]: the deadline set that gives `poll` its timeout. Pure.
//! - [`event`] and [`output`]: what the user is told, and its documented layout.
//! - [`history`]: the message history and the records that persist it. Pure.
//! - [`event_loop`]: the executor; [`stdin`], [`stdout`] (over [`fdio`]), [`net`] and
//!   [`journal`] (the `--state` directory) are its OS-facing helpers, [`terminal`] sets and restores the
//!   terminal mode, and [`clock`] formats wall-clock time.
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
pub mod clock;
pub mod command;
pub mod config;
mod connection;
pub mod event;
pub mod event_loop;
pub mod fdio;
pub mod history;
pub mod journal;
pub mod lineedit;
pub mod liveness;
pub mod net;
pub mod node;
pub mod outbox;
pub mod output;
pub mod peers;
pub mod stdin;
pub mod stdout;
pub mod terminal;
pub mod timers;
pub mod wire;

pub use command::Command;
pub use config::{Config, Limits};
pub use event::Event;
pub use event_loop::{Error, EventLoop, Handler};

/// Runs a peer with `config` until it quits.
pub fn run(config: Config) -> Result<(), Error> {
    EventLoop::bind(config)?.run()
}
