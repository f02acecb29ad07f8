//! The I/O shell: the only code that touches mio, file descriptors, sockets and files.

pub mod connection;
pub mod connections;
pub mod discovery;
pub mod event_loop;
pub mod fdio;
pub mod heap;
pub mod journal;
pub mod logsink;
pub mod net;
pub mod oneshot;
pub mod stdin;
pub mod stdout;
pub mod terminal;
