//! The event loop: one `mio::Poll`, moving bytes and executing what the node decides.
//!
//! Sources: the listener, every peer connection (a [`Slab`] of them, keyed by token; see
//! `connection`), stdin, stdout (when it is a slow pipe) and a signal pipe for
//! SIGINT/SIGTERM. Timers live in a deadline set whose earliest entry is the `poll`
//! timeout, so an idle peer sleeps in `poll`. Each turn: poll, handle events, fire due
//! timers, execute the node's effects, start queued sends, then write the journal and
//! stdout once.
//!
//! Rules this loop keeps (see mio's `Poll` docs):
//! - readiness is edge-triggered: accept, read and write until `WouldBlock`; a connection
//!   that spends its read budget is read again next turn without waiting;
//! - events are hints: the truth is what `read`/`write` return, so a stale or spurious
//!   event for a reused slot only costs a `WouldBlock`;
//! - a connection is deregistered before it is dropped;
//! - nothing blocks: connects are non-blocking, writes keep their unsent rest, and
//!   every outgoing connection has a deadline.

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::Config;
use crate::driver::connection::{Conn, Inbound, Me, Outbound, Phase, ReadEnd, Step};
use crate::driver::journal::Journal;
use crate::driver::net;
use crate::driver::stdin::{self, Input};
use crate::driver::stdout::Stdout;
use crate::driver::terminal::RawInput;
use crate::node::commands::Command;
use crate::node::event::Event;
use crate::node::history::Replayed;
use crate::node::liveness::Liveness;
use crate::node::outbox::{Outbox, Refused, MAX_WAITING};
use crate::node::timers::{TimerId, Timers};
use crate::node::{Effect, Node, Settings};
use crate::ui::render::{Output, Style};
use crate::wire::{self, Decoder};

const LISTENER: Token = Token(usize::MAX - 1);
const STDIN: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const STDOUT: Token = Token(usize::MAX - 4);

/// When the last connection closes and the slab had grown to this many slots, the memory
/// of the burst is given back to the system.
const SHRINK_AFTER: usize = 1024;

/// Size of the one read buffer shared by every connection.
const READ_BUF: usize = 64 * 1024;

/// Why the peer could not run.
#[derive(Debug)]
pub enum Error {
    /// The listening address could not be bound.
    Bind(SocketAddr, io::Error),
    /// The state directory could not be opened.
    State(std::path::PathBuf, io::Error),
    /// The event loop itself failed.
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {}", net::describe(e)),
            Error::State(dir, e) => {
                write!(f, "cannot use the state directory {}: {e}", dir.display())
            }
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A program embedding peerchat: it sees every event the user would see and may answer
/// with console commands. Runs inside the loop, so it must not block.
pub trait Handler {
    /// Called for every event; push commands (`Command::Send`, `Command::Quit`...) to
    /// have them executed right away.
    fn on_event(&mut self, event: &Event, commands: &mut Vec<Command>);
}

/// What a timer entry asks for. An entry is cancelled when what it names goes away, so an
/// entry that fires always means something.
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// An outbound connection's deadline: send, then linger.
    Conn { key: usize },
    /// Close inbound connections idle for too long. Armed while any is open: one
    /// timer for them all, instead of a timer update per connection under churn.
    Sweep,
    /// Try accepting again after running out of descriptors.
    ResumeAccept,
    /// Quitting has waited long enough for the `exit` messages.
    QuitDeadline,
    /// The node has work due (liveness checks).
    Node,
}

/// A running peer.
pub struct EventLoop {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    /// Accepting paused: out of descriptors (resumes on a timer).
    accept_paused: bool,
    /// Connections refused at the connection limit since the last report.
    refused: u64,
    conns: Slab<Conn>,
    /// When the loop started: the origin of `Inbound::active_at`.
    started: Instant,
    timers: Timers<Timer>,
    outbox: Outbox,
    node: Node,
    console: stdin::Console,
    output: Output,
    stdout: Stdout,
    /// Whether a person is at a terminal.
    interactive: bool,
    /// Set once stdout is gone; output is then dropped.
    stdout_broken: bool,
    /// Set while the terminal is in non-canonical mode; restores it when dropped.
    raw_input: Option<RawInput>,
    /// A program embedding peerchat: sees every event, may issue commands.
    handler: Option<Box<dyn Handler>>,
    /// The `--state` journal, and what it held at start-up (consumed by `run`).
    journal: Option<Journal>,
    replayed: Option<Replayed>,
    signals: Signals,
    config: Config,
    listen_port: u16,
    /// The `Timer::Node` entry armed for the node's next deadline.
    node_timer: Option<TimerId>,
    /// The `Timer::Sweep` entry, armed while inbound connections are open.
    sweep: Option<TimerId>,
    /// Inbound connections open.
    inbound: usize,
    /// Inbound connections whose read budget ran out with data possibly left: read again
    /// next turn, without waiting (edge-triggered readiness will not announce it again).
    more_to_read: Vec<usize>,
    /// Reused buffers: the loop allocates nothing per event on its hot path.
    read_buf: Box<[u8]>,
    effects: Vec<Effect>,
    spare: Vec<Effect>,
    messages: Vec<wire::Message>,
    inputs: Vec<Input>,
}

impl EventLoop {
    /// Binds the listener and sets up every source; nothing is sent yet.
    pub fn bind(config: Config) -> Result<Self, Error> {
        if let Err(e) = net::raise_fd_limit() {
            log::debug!("could not raise the descriptor limit: {e}");
        }
        let addr = SocketAddr::new(config.bind, config.port);
        let mut listener = net::listen(addr).map_err(|e| Error::Bind(addr, e))?;
        let listen_port = listener.local_addr()?.port();
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([libc::SIGINT, libc::SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut console = if config.headless {
            stdin::Console::closed()
        } else {
            stdin::Console::attach(poll.registry(), STDIN, config.limits.max_line)
        };
        let stdout_tty = io::stdout().is_terminal();
        // A person at a terminal: prompts, line editing, timestamps. Not with --json, whose
        // stdout is for a program.
        let interactive =
            !config.headless && !config.json && io::stdin().is_terminal() && stdout_tty;
        // On a terminal peerchat edits the line itself, so it can redraw it after messages.
        let raw_input = if interactive {
            match RawInput::enable() {
                Ok(raw) => {
                    console.enable_editing();
                    Some(raw)
                }
                Err(e) => {
                    log::debug!("terminal stays in line mode: {e}");
                    None
                }
            }
        } else {
            None
        };
        let style = Style {
            json: config.json,
            color: config.color.unwrap_or_else(|| {
                stdout_tty
                    && !config.json
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }),
            timestamps: interactive,
        };
        let stdout = Stdout::attach(poll.registry(), STDOUT, config.limits.stdout_buffer);
        let (journal, replayed) = match &config.state_dir {
            Some(dir) => {
                let (journal, replayed) =
                    Journal::open(dir, config.history).map_err(|e| Error::State(dir.clone(), e))?;
                (Some(journal), Some(replayed))
            }
            None => (None, None),
        };
        let node = Node::new(
            Settings {
                history: config.history,
                persist: journal.is_some(),
                name: config.name.clone(),
                format: config.format,
                own_ip: config.own_ip(),
                static_peers: config.static_peers.clone(),
            },
            listen_port,
            Liveness::new(config.limits.probe_interval, config.limits.probe_failures),
        );
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            listener,
            accept_paused: false,
            refused: 0,
            conns: Slab::new(),
            started: Instant::now(),
            timers: Timers::default(),
            outbox: Outbox::new(config.limits.max_in_flight),
            node,
            console,
            output: Output::new(style, interactive),
            stdout,
            interactive,
            stdout_broken: false,
            raw_input,
            journal,
            replayed,
            signals,
            listen_port,
            config,
            node_timer: None,
            sweep: None,
            inbound: 0,
            more_to_read: Vec::new(),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            effects: Vec::new(),
            spare: Vec::new(),
            handler: None,
            messages: Vec::new(),
            inputs: Vec::new(),
        })
    }

    /// The address we listen on (with the real port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs like [`EventLoop::run`], handing every event to `handler`, which may answer
    /// with commands (for a program embedding peerchat; see `examples/ping_bot.rs`).
    pub fn run_with(mut self, handler: impl Handler + 'static) -> Result<(), Error> {
        self.handler = Some(Box::new(handler));
        self.run()
    }

    /// Runs until the user quits (or a signal arrives) and the `exit` messages are out.
    pub fn run(mut self) -> Result<(), Error> {
        let listening = SocketAddr::new(self.config.bind, self.listen_port);
        self.node
            .start(listening, Instant::now(), &mut self.effects);
        if let Some(replayed) = self.replayed.take() {
            self.restore(replayed);
        }
        if self.interactive {
            self.effects.push(Effect::Show(Event::Menu));
        }
        self.apply_effects(Instant::now());
        loop {
            self.start_sends(Instant::now());
            self.arm_node_timer();
            self.flush_output();
            if self.node.is_quitting() && self.outbox.is_empty() {
                break;
            }
            let now = Instant::now();
            let timeout = if self.console.wants_turn() || !self.more_to_read.is_empty() {
                Some(std::time::Duration::ZERO)
            } else {
                self.timers.timeout(now)
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let now = Instant::now();
            let mut stdin_ready = self.console.wants_turn();
            // Taken out so that handlers may borrow the whole loop; put back below.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    STDIN => stdin_ready = true,
                    SIGNALS => self.on_signal(),
                    STDOUT => {} // flushed at the top of the next turn
                    Token(key) => self.on_conn_ready(key, now),
                }
                self.apply_effects(now);
            }
            self.events = events;
            for key in std::mem::take(&mut self.more_to_read) {
                self.read_inbound(key, now);
            }
            if stdin_ready {
                self.read_console(now);
            }
            for timer in self.timers.pop_expired(now) {
                self.on_timer(timer, now);
            }
            self.apply_effects(now);
        }
        self.effects.push(Effect::Show(Event::Bye));
        self.apply_effects(Instant::now());
        self.flush_output();
        // Give a slow stdout a moment for the last lines, then leave regardless.
        let _ = self.stdout.finish(std::time::Duration::from_secs(1));
        let dropped = self.stdout.take_dropped();
        if dropped > 0 {
            log::warn!("{dropped} lines of output were dropped: stdout was not being read");
        }
        Ok(())
    }

    /// Brings back what the state directory remembered, telling the user what was skipped.
    fn restore(&mut self, replayed: Replayed) {
        if replayed.torn_tail {
            self.effects.push(Effect::Show(Event::Warning(
                "the state journal ended with a torn record (a crash while writing); skipped it"
                    .into(),
            )));
        }
        if replayed.skipped > 0 {
            self.effects.push(Effect::Show(Event::Warning(format!(
                "skipped {} unreadable records in the state journal",
                replayed.skipped
            ))));
        }
        let (peers, messages) = (replayed.peers.len(), replayed.messages.len());
        self.node.restore(
            replayed,
            self.config.greet_remembered,
            Instant::now(),
            &mut self.effects,
        );
        self.effects.push(Effect::Show(Event::Info(format!(
            "remembered {peers} peers and {messages} messages"
        ))));
    }

    /// Executes what the node asked for. Executing can produce more effects (a failed
    /// check, a handler's command), so this runs until none are left.
    fn apply_effects(&mut self, now: Instant) {
        while !self.effects.is_empty() {
            let mut batch = std::mem::replace(&mut self.effects, std::mem::take(&mut self.spare));
            for effect in batch.drain(..) {
                self.apply(effect, now);
            }
            // Keep both allocations for the next turn.
            self.spare = batch;
        }
    }

    fn apply(&mut self, effect: Effect, now: Instant) {
        match effect {
            Effect::Show(event) => {
                if let Some(handler) = &mut self.handler {
                    let mut commands = Vec::new();
                    handler.on_event(&event, &mut commands);
                    for command in commands {
                        self.node.run(command, now, &mut self.effects);
                    }
                }
                if self.config.output && !self.stdout_broken {
                    self.output.show(&event);
                }
            }
            Effect::Send(out) => match self.outbox.push(out.dest, out.text) {
                Ok(()) | Err((Refused::Duplicate, _)) => {}
                Err((Refused::Full, text)) => self.node.on_send_failed(
                    out.dest,
                    text,
                    format!("{MAX_WAITING} messages are already waiting for this peer"),
                    &mut self.effects,
                ),
            },
            Effect::Check(addr) => self.start_check(addr, now),
            Effect::Remember(record) => {
                if let Some(journal) = &mut self.journal {
                    journal.push(&record);
                }
            }
            Effect::Shutdown => {
                self.console.detach(self.poll.registry());
                self.timers
                    .insert(now + self.config.limits.quit_wait, Timer::QuitDeadline);
            }
        }
    }

    /// Ends a turn's output: the journal first (so that whatever is shown is already
    /// remembered), then stdout, without blocking.
    fn flush_output(&mut self) {
        if let Some(journal) = &mut self.journal {
            let node = &self.node;
            if let Err(e) = journal.flush(|| node.snapshot()) {
                self.journal = None;
                self.effects.push(Effect::Show(Event::Warning(format!(
                    "stopped writing the state journal: {e}"
                ))));
                self.apply_effects(Instant::now());
            }
        }
        if self.stdout_broken {
            return;
        }
        let prompt = (self.interactive && !self.node.is_quitting()).then(|| {
            let (typed, after_cursor) = self.console.editing().unwrap_or(("", 0));
            (self.node.prompt(), typed, after_cursor)
        });
        let stdout = &mut self.stdout;
        self.output.drain(prompt, |bytes| stdout.push(bytes));
        let dropped = self.stdout.take_dropped();
        if dropped > 0 {
            self.effects.push(Effect::Show(Event::Warning(format!(
                "{dropped} lines of output were dropped: stdout was not being read (more than {} bytes waiting)",
                self.stdout.limit()
            ))));
            self.apply_effects(Instant::now());
            let stdout = &mut self.stdout;
            self.output.drain(None, |bytes| stdout.push(bytes));
        }
        if let Err(e) = self.stdout.flush() {
            self.stdout_broken = true;
            if self.config.headless {
                log::warn!("stdout failed ({e}); running on without output");
            } else {
                // Nobody reads us any more: leave politely.
                log::warn!("stdout failed ({e}); quitting");
                self.node.quit(Instant::now(), &mut self.effects);
                self.apply_effects(Instant::now());
            }
        }
    }

    fn on_signal(&mut self) {
        let count = self.signals.pending().count();
        if count == 0 {
            return;
        }
        if self.node.is_quitting() {
            // A second Ctrl-C while quitting: stop waiting.
            self.give_up_sends("quit was interrupted");
        } else {
            self.node.quit(Instant::now(), &mut self.effects);
        }
    }

    fn read_console(&mut self, now: Instant) {
        let mut inputs = std::mem::take(&mut self.inputs);
        self.console.read(&mut self.read_buf, &mut inputs);
        for input in inputs.drain(..) {
            match input {
                Input::Line(line) => {
                    let echo = self
                        .raw_input
                        .is_some()
                        .then(|| (self.node.prompt(), &*line));
                    self.output.line_typed(echo);
                    self.node.on_line(&line, now, &mut self.effects);
                }
                Input::Overlong(n) => self.effects.push(Effect::Show(Event::Warning(format!(
                    "ignored a typed line of {n} bytes (the limit is {})",
                    self.config.limits.max_line
                )))),
                Input::Eof => {
                    let echo = self.raw_input.is_some().then(|| (self.node.prompt(), ""));
                    self.output.line_typed(echo);
                    self.node.quit(now, &mut self.effects);
                }
                Input::Edited => self.output.redraw_prompt(),
            }
        }
        self.inputs = inputs;
    }

    fn accept(&mut self, now: Instant) {
        while !self.accept_paused {
            match self.listener.accept() {
                Ok((stream, addr)) if self.conns.len() >= self.config.limits.max_connections => {
                    // Full: close it at once (the sender sees EOF) rather than let it hang.
                    drop(stream);
                    if self.refused == 0 {
                        self.effects.push(Effect::Show(Event::Warning(format!(
                            "refusing connections (from {} first): {} are open, the limit (--max-connections)",
                            addr.ip(),
                            self.conns.len()
                        ))));
                    }
                    self.refused += 1;
                }
                Ok((stream, addr)) => self.add_inbound(stream, addr, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors or buffers: pause rather than spin.
                    log::warn!("accept failed: {}; pausing for 100 ms", net::describe(&e));
                    self.accept_paused = true;
                    self.timers.insert(
                        now + std::time::Duration::from_millis(100),
                        Timer::ResumeAccept,
                    );
                    return;
                }
            }
        }
    }

    fn resume_accept(&mut self, now: Instant) {
        if self.accept_paused {
            self.accept_paused = false;
            self.accept(now);
        }
    }

    fn add_inbound(&mut self, mut stream: TcpStream, addr: SocketAddr, now: Instant) {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            log::warn!("cannot watch a connection from {addr}: {e}");
            return;
        }
        let now_secs = secs_since(self.started, now);
        entry.insert(Conn::In(Inbound {
            stream,
            ip: addr.ip().to_canonical(),
            active_at: now_secs,
            line_since: now_secs,
            decoder: Decoder::new(self.config.limits.max_line),
        }));
        self.inbound += 1;
        if self.sweep.is_none() {
            self.sweep = Some(self.timers.insert(now + self.sweep_period(), Timer::Sweep));
        }
        // Not read now, even if its data is there: registering queues its readiness event
        // behind those of older connections (epoll's ready list is in order), so that a
        // sender's back-to-back one-message connections are shown in the order they were
        // sent: the previous one's EOF arrived before this one's SYN.
    }

    fn on_conn_ready(&mut self, key: usize, now: Instant) {
        match self.conns.get(key) {
            Some(Conn::In(_)) => self.read_inbound(key, now),
            Some(Conn::Out(_)) => self.drive_outbound(key, now),
            None => {}
        }
    }

    fn read_inbound(&mut self, key: usize, now: Instant) {
        let Some(Conn::In(conn)) = self.conns.get_mut(key) else {
            return;
        };
        let now_secs = secs_since(self.started, now);
        conn.active_at = now_secs;
        let end = conn.read(&mut self.read_buf, &mut self.messages);
        if !self.messages.is_empty() || conn.decoder.buffered() == 0 {
            // A line was completed (or none is pending): not stalled mid-line.
            conn.line_since = now_secs;
        }
        let ip = conn.ip;
        for msg in self.messages.drain(..) {
            log::debug!("from {ip}: {:?} message", msg.dialect);
            self.node.on_message(ip, msg, now, &mut self.effects);
        }
        match end {
            ReadEnd::Drained => {}
            ReadEnd::Budget => self.more_to_read.push(key),
            ReadEnd::Closed => self.close(key),
            ReadEnd::TooLong(e) => {
                let warning = format!("closed the connection from {ip}: {e}");
                self.effects.push(Effect::Show(Event::Warning(warning)));
                self.close(key);
            }
        }
    }

    /// Starts queued sends while connection slots are free.
    fn start_sends(&mut self, now: Instant) {
        while let Some((dest, text)) = self.outbox.start_next() {
            if let Err((text, reason)) = self.open_outbound(dest, text, false, now) {
                self.send_failed(dest, text, reason);
            }
        }
        self.apply_effects(now);
    }

    /// Starts a liveness check of `addr`: a bare connection attempt.
    fn start_check(&mut self, addr: SocketAddr, now: Instant) {
        if self.open_outbound(addr, String::new(), true, now).is_err() {
            self.node.on_check(addr, false, now, &mut self.effects);
        }
    }

    /// Opens a non-blocking connection to `dest` from our bound address, carrying `text`
    /// (or nothing, for a check); on failure hands `text` back with the reason.
    fn open_outbound(
        &mut self,
        dest: SocketAddr,
        text: String,
        check: bool,
        now: Instant,
    ) -> Result<(), (String, String)> {
        let from = Some(self.config.bind).filter(|ip| !ip.is_unspecified());
        let mut stream = match net::connect(dest, from) {
            Ok(stream) => stream,
            Err(e) => return Err((text, net::describe(&e))),
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let interest = Interest::WRITABLE | Interest::READABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            return Err((text, e.to_string()));
        }
        let timer = self
            .timers
            .insert(now + self.config.limits.send_timeout, Timer::Conn { key });
        entry.insert(Conn::Out(Box::new(Outbound {
            stream,
            check,
            dest,
            text,
            bytes: Vec::new(),
            written: 0,
            phase: Phase::Connecting,
            timer,
        })));
        Ok(())
    }

    fn send_failed(&mut self, dest: SocketAddr, text: String, reason: String) {
        self.outbox.done(dest);
        self.node
            .on_send_failed(dest, text, reason, &mut self.effects);
    }

    fn drive_outbound(&mut self, key: usize, now: Instant) {
        let Some(Conn::Out(conn)) = self.conns.get_mut(key) else {
            return;
        };
        let me = Me {
            name: &self.config.name,
            format: self.config.format,
            advertise: self.config.advertise,
            listen_port: self.listen_port,
        };
        let result = conn.advance(me, &mut self.read_buf);
        let dest = conn.dest;
        match result {
            Ok(Step::Wait) => {}
            Ok(Step::Answered) => {
                self.close(key);
                self.node.on_check(dest, true, now, &mut self.effects);
            }
            Err(_) if conn.check => {
                self.close(key);
                self.node.on_check(dest, false, now, &mut self.effects);
            }
            Ok(Step::Written) => {
                conn.phase = Phase::Draining;
                let text = std::mem::take(&mut conn.text);
                conn.bytes = Vec::new();
                self.timers.cancel(conn.timer);
                conn.timer = self
                    .timers
                    .insert(now + self.config.limits.linger, Timer::Conn { key });
                self.outbox.done(dest);
                self.node.on_sent(dest, text, now, &mut self.effects);
                // The receiver may have closed already: look once more.
                self.drive_outbound(key, now);
            }
            Ok(Step::Closed) => self.close(key),
            Err(e) => {
                let text = std::mem::take(&mut conn.text);
                self.close(key);
                self.send_failed(dest, text, net::describe(&e));
            }
        }
    }

    /// Keeps exactly one timer armed for the node's next deadline.
    fn arm_node_timer(&mut self) {
        let wanted = self.node.next_deadline();
        if self.node_timer.map(TimerId::deadline) == wanted {
            return;
        }
        if let Some(old) = self.node_timer.take() {
            self.timers.cancel(old);
        }
        self.node_timer = wanted.map(|when| self.timers.insert(when, Timer::Node));
    }

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::ResumeAccept => self.resume_accept(now),
            Timer::QuitDeadline => self.give_up_sends("still not sent when quitting"),
            Timer::Node => {
                self.node_timer = None;
                self.node.on_tick(now, &mut self.effects);
            }
            Timer::Sweep => {
                self.sweep = None;
                self.close_idle(now);
                if self.inbound > 0 {
                    self.sweep = Some(self.timers.insert(now + self.sweep_period(), Timer::Sweep));
                }
            }
            Timer::Conn { key } => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                match conn {
                    Conn::In(_) => {}
                    Conn::Out(conn) => {
                        if conn.phase == Phase::Draining {
                            self.close(key);
                        } else if conn.check {
                            let addr = conn.dest;
                            self.close(key);
                            self.node.on_check(addr, false, now, &mut self.effects);
                        } else {
                            let dest = conn.dest;
                            let text = std::mem::take(&mut conn.text);
                            let reason = match conn.phase {
                                Phase::Connecting => "no answer (the connection timed out)",
                                _ => "the peer stopped reading (the send timed out)",
                            };
                            self.close(key);
                            self.send_failed(dest, text, reason.into());
                        }
                    }
                }
            }
        }
    }

    /// How often idle inbound connections are looked for: a quarter of the idle timeout.
    fn sweep_period(&self) -> std::time::Duration {
        (self.config.limits.idle_timeout / 4).max(std::time::Duration::from_secs(1))
    }

    /// Closes inbound connections silent for the idle timeout (or stalled mid-line).
    fn close_idle(&mut self, now: Instant) {
        let idle = self.config.limits.idle_timeout;
        let idle_secs = u32::try_from(idle.as_secs()).unwrap_or(u32::MAX);
        // Times are whole seconds: `< cutoff` never closes a connection early.
        let Some(cutoff) = secs_since(self.started, now).checked_sub(idle_secs) else {
            return; // the loop has not run for an idle timeout yet
        };
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::In(i) if i.idle_since() < cutoff))
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            if let Some(Conn::In(conn)) = self.conns.get(key) {
                let pending = conn.decoder.buffered();
                if pending > 0 {
                    self.effects.push(Effect::Show(Event::Warning(format!(
                        "closed the connection from {}: it stalled for {} s with {pending} bytes of an unfinished line",
                        conn.ip,
                        idle.as_secs()
                    ))));
                } else {
                    log::debug!("closing a silent connection from {}", conn.ip);
                }
            }
            self.close(key);
        }
    }

    /// Reports every message not yet written as failed, and empties the outbox.
    fn give_up_sends(&mut self, reason: &str) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Out(o) if !o.check && o.phase != Phase::Draining))
            .map(|(k, _)| k)
            .collect();
        let now = Instant::now();
        for key in keys {
            if let Some(Conn::Out(conn)) = self.conns.get_mut(key) {
                let (dest, text) = (conn.dest, std::mem::take(&mut conn.text));
                self.close(key);
                self.send_failed(dest, text, reason.into());
            }
        }
        for (dest, text) in self.outbox.drain() {
            self.node
                .on_send_failed(dest, text, reason.into(), &mut self.effects);
        }
        self.apply_effects(now);
    }

    /// After a burst of connections: frees the slab's slots and returns free heap pages to
    /// the system, so that the peer's memory goes back near its idle size. Runs only when
    /// the last of at least [`SHRINK_AFTER`] connections closes, never per event.
    fn give_back_memory(&mut self) {
        self.conns.shrink_to_fit();
        self.more_to_read.shrink_to_fit();
        self.messages.shrink_to_fit();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory at the top and in the middle of
        // glibc's heaps; it touches nothing in use.
        unsafe {
            libc::malloc_trim(0);
        }
        log::debug!("gave back the memory of a burst of connections");
    }

    fn close(&mut self, key: usize) {
        if let Some(conn) = self.conns.try_remove(key) {
            let mut stream = match conn {
                Conn::In(c) => {
                    self.inbound -= 1;
                    if self.inbound == 0 {
                        if let Some(sweep) = self.sweep.take() {
                            self.timers.cancel(sweep);
                        }
                    }
                    c.stream
                }
                Conn::Out(c) => {
                    // An entry that already fired is gone; cancelling it is a no-op.
                    self.timers.cancel(c.timer);
                    c.stream
                }
            };
            if let Err(e) = self.poll.registry().deregister(&mut stream) {
                log::debug!("deregister failed: {e}");
            }
        }
        if self.conns.is_empty() && self.conns.capacity() >= SHRINK_AFTER {
            self.give_back_memory();
        }
        if self.refused > 0 && self.conns.len() < self.config.limits.max_connections {
            self.effects.push(Effect::Show(Event::Warning(format!(
                "accepting again; refused {} connections while at the limit",
                self.refused
            ))));
            self.refused = 0;
        }
    }
}

/// Whole seconds from `start` to `now`, saturating.
fn secs_since(start: Instant, now: Instant) -> u32 {
    u32::try_from(now.saturating_duration_since(start).as_secs()).unwrap_or(u32::MAX)
}
