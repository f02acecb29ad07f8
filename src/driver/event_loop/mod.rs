//! The event loop: one `mio::Poll`, moving bytes and executing what the node decides.
//!
//! Sources: the listener and every peer connection ([`Connections`]), stdin, stdout (when
//! it is a slow pipe) and a signal pipe for SIGINT, SIGTERM, SIGQUIT and SIGHUP (quit),
//! SIGTSTP and SIGCONT (Ctrl-Z and `fg`) and SIGWINCH (the terminal's width changed). The poll timeout is the
//! earliest of the connections' deadlines, the node's ([`Node::poll_timeout`]) and the
//! loop's own (a stalled pipe, the journal's retry, output quiet after a burst), so an
//! idle peer sleeps in `poll`. Each turn, with one reading of the clock after `poll`:
//! handle events, read what the budget left over, read the console, fire due timers; then
//! open connections for what the node hands out, and write the journal and stdout once.
//! The console's side is in `console.rs`, the end of a turn's output and stdout's pace in
//! `output.rs`.
//!
//! Rules this loop keeps (see mio's `Poll` docs):
//! - readiness is edge-triggered: accept, read and write until `WouldBlock`, or until the
//!   kernel says a read left nothing in the socket (`net::recv`); a connection that spends
//!   its read budget is read again next turn without waiting;
//! - events are hints: the truth is what `read`/`write` return, so a stale or spurious
//!   event for a reused slot only costs a `WouldBlock`; the one fact an event adds, that
//!   the peer ended, is taken only for a connection the poll watches (`heard_end`);
//! - a connection is closed without a `deregister`, which mio asks for: on Linux closing
//!   its only descriptor takes it out of the epoll set (see `Connections::close`);
//! - nothing blocks: connects are non-blocking, writes keep their unsent rest, and
//!   every outgoing connection has a deadline.

use crate::time::Instant;
use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;

mod console;
mod output;

use crate::config::Config;
use crate::driver::connections::Connections;
use crate::driver::discovery::Udp;
use crate::driver::journal::Journal;
use crate::driver::net;
use crate::driver::stdin::{self, Input};
use crate::driver::stdout::Stdout;
use crate::driver::terminal::RawInput;
use crate::node::commands::Command;
use crate::node::event::Event;
use crate::node::history::Replayed;
use crate::node::liveness::Liveness;
use crate::node::timers::earliest;
use crate::node::{Effect, Node, Settings};
use crate::ui::render::{Output, Style};
use crate::wire::OwnHeader;

const LISTENER: Token = Token(usize::MAX - 1);
const STDIN: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const STDOUT: Token = Token(usize::MAX - 4);
const DISCOVERY: [Token; 2] = [Token(usize::MAX - 5), Token(usize::MAX - 6)];
/// Tokens from here up are the loop's own sources above; a connection's is its slab key,
/// always below.
const FIRST_SOURCE: usize = usize::MAX - 6;

/// How long a pipe on stdout may take nothing at all before it counts as not being read:
/// reading the network then resumes, and what does not fit in the buffer is dropped.
const STDOUT_STALL: Duration = Duration::from_secs(2);

/// How long output must stay quiet after a turn that left large buffers behind before they
/// are given back, with the heap pages they held: not after every turn of a stream, which
/// would grow them again, and not never, which would keep a burst's memory resident.
const GIVE_BACK_AFTER: Duration = Duration::from_secs(1);

/// Why the peer could not run.
#[derive(Debug)]
pub enum Error {
    /// The listening address could not be bound.
    Bind(SocketAddr, io::Error),
    /// The state directory could not be opened.
    State(std::path::PathBuf, io::Error),
    /// The event loop itself failed.
    Io(io::Error),
    /// Stdin was not a terminal (a script), and this many of the messages it asked for
    /// could not be delivered (each was reported as it failed, or as it was refused: a
    /// name nobody has, a malformed `/send`). The run itself went well.
    Undelivered(usize),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {}", net::describe(e)),
            Error::State(dir, e) => {
                write!(f, "cannot use the state directory {}: {e}", dir.display())
            }
            Error::Io(e) => write!(f, "{e}"),
            Error::Undelivered(n) => {
                write!(f, "{n} of the messages asked for could not be delivered")
            }
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

/// A running peer.
pub struct EventLoop {
    poll: Poll,
    events: Events,
    conns: Connections,
    node: Node,
    console: stdin::ConsoleInput,
    output: Output,
    stdout: Stdout,
    /// Whether a person is at a terminal.
    interactive: bool,
    /// Messages the user asked for that could not be delivered (see [`Error::Undelivered`]).
    undelivered: usize,
    /// Driven by a script: stdin is read and is not a terminal.
    scripted: bool,
    /// Set once stdout is gone; output is then dropped.
    stdout_broken: bool,
    /// Since when stdout has been behind without taking a single byte.
    stalled_since: Option<Instant>,
    /// Set while the terminal is in non-canonical mode; restores it when dropped.
    raw_input: Option<RawInput>,
    /// A program embedding peerchat: sees every event, may issue commands.
    handler: Option<Box<dyn Handler>>,
    /// The `--state` journal, and what it held at start-up (consumed by `run`).
    journal: Option<Journal>,
    replayed: Option<Replayed>,
    signals: Signals,
    config: Config,
    listening: SocketAddr,
    /// Reused buffers: the loop allocates nothing per event on its hot path.
    effects: Vec<Effect>,
    spare: Vec<Effect>,
    /// A burst's memory was given back: the output buffers follow once stdout has
    /// written what the burst's last turn rendered.
    give_back_output: bool,
    /// When the output buffers, large since a burst, are given back if no turn renders
    /// more before then ([`GIVE_BACK_AFTER`]).
    quiet_at: Option<Instant>,
    /// Console input read but not yet taken by the node (it takes typed lines only while
    /// it has room for more messages to send); stdin is not read again until it is empty.
    inputs: std::collections::VecDeque<Input>,
    /// The discovery socket (`--discover`).
    udp: Option<Udp>,
}

impl EventLoop {
    /// Binds the listener and sets up every source; nothing is sent yet.
    pub fn bind(config: Config) -> Result<Self, Error> {
        if let Err(e) = net::raise_fd_limit() {
            log::debug!("could not raise the descriptor limit: {e}");
        }
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = net::listen(addr).map_err(|e| Error::Bind(addr, e))?;
        let listening = SocketAddr::new(config.bind, listener.local_addr()?.port());
        let poll = Poll::new()?;
        let now = Instant::now();
        let conns = Connections::new(
            poll.registry().try_clone()?,
            listener,
            LISTENER,
            config.limits.clone(),
            config.bind,
            now,
        )?;
        // SIGQUIT (Ctrl-\) and SIGHUP (the terminal went away) quit like Ctrl-C: through
        // the loop, so that the terminal is put back and peers are told `exit`.
        // SIGTSTP (Ctrl-Z) gives the terminal back before stopping, SIGCONT takes it again
        // and SIGWINCH reads the new width: the line editor redraws after each.
        use rustix::process::Signal;
        let mut signals = Signals::new(
            [
                Signal::INT,
                Signal::TERM,
                Signal::QUIT,
                Signal::HUP,
                Signal::TSTP,
                Signal::CONT,
                Signal::WINCH,
            ]
            .map(Signal::as_raw),
        )?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut console = if config.headless {
            stdin::ConsoleInput::closed()
        } else {
            stdin::ConsoleInput::attach(poll.registry(), STDIN, config.limits.max_line)
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
            timestamps: interactive && config.timestamps,
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
        // Discovery that cannot open its socket is said once and left off; chat still works.
        let mut udp_failed = None;
        let udp = config.discover.and_then(|group| {
            Udp::open(group, config.bind, poll.registry(), DISCOVERY)
                .map_err(|e| {
                    udp_failed = Some(format!(
                        "discovery is off: cannot use {group}: {}",
                        net::describe(&e)
                    ))
                })
                .ok()
        });
        let node = Node::new(
            Settings {
                history: config.history,
                persist: journal.is_some(),
                header: OwnHeader {
                    name: config.name.clone(),
                    format: config.format,
                    port: listening.port(),
                    claim: config.own_ip(),
                },
                static_peers: config.static_peers.clone(),
                max_in_flight: config.limits.max_in_flight,
                quit_wait: config.limits.quit_wait,
                max_peers_per_ip: config.limits.max_peers_per_ip,
                own_ips: net::own_ips(config.bind),
                discovery: udp.as_ref().and(config.discover).map(|group| {
                    crate::node::discovery::Plan {
                        group,
                        interval: config.discover_interval,
                    }
                }),
            },
            Liveness::new(config.limits.probe_interval, config.limits.probe_failures)
                .seeded(jitter_seed()),
            (now, crate::ui::clock::unix_millis(SystemTime::now())),
        );
        let mut effects = Vec::new();
        if let Some(why) = udp_failed {
            effects.push(Effect::Show(Event::Warning(why)));
        }
        Ok(EventLoop {
            udp,
            poll,
            events: Events::with_capacity(1024),
            conns,
            node,
            console,
            output: Output::new(style, interactive),
            stdout,
            interactive,
            undelivered: 0,
            scripted: !config.headless && !io::stdin().is_terminal(),
            stdout_broken: false,
            stalled_since: None,
            raw_input,
            journal,
            replayed,
            signals,
            listening,
            config,
            effects,
            spare: Vec::new(),
            give_back_output: false,
            quiet_at: None,
            handler: None,
            inputs: std::collections::VecDeque::new(),
        })
    }

    /// The address we listen on (with the real port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.conns.local_addr()
    }

    /// Runs like [`EventLoop::run`], handing every event to `handler`, which may answer
    /// with commands (for a program embedding peerchat; see `examples/ping_bot.rs`).
    pub fn run_with(mut self, handler: impl Handler + 'static) -> Result<(), Error> {
        self.handler = Some(Box::new(handler));
        self.run()
    }

    /// Runs until the user quits (or a signal arrives) and the `exit` messages are out.
    pub fn run(mut self) -> Result<(), Error> {
        let mut now = Instant::now();
        self.node.start(self.listening, now, &mut self.effects);
        if let Some(replayed) = self.replayed.take() {
            self.restore(replayed, now);
        }
        if self.interactive {
            self.effects.push(Effect::Show(Event::Menu));
        }
        self.apply_effects(now);
        loop {
            self.conns.transmit(&mut self.node, now, &mut self.effects);
            self.apply_effects(now);
            self.flush_output(now);
            self.watch_stdout(now);
            // Armed only when giving back could act: not while stdout still has to take
            // what waits (a stalled reader would wake the loop every second for nothing),
            // nor once it is gone (its buffers went with it).
            if !self.stdout_broken
                && self.stdout.backlog() == 0
                && (self.output.holds_burst() || self.stdout.holds_burst())
            {
                self.quiet_at = Some(now + GIVE_BACK_AFTER);
            }
            if self.node.is_finished() {
                break;
            }
            let reads_waiting = (self.conns.wants_turn()
                || self.udp.as_ref().is_some_and(Udp::wants_turn))
                && !self.behind();
            let compacting = self.journal.as_ref().is_some_and(Journal::compacting);
            let console_waiting = self.console_has_more() && self.console_open();
            let timeout = if console_waiting || reads_waiting || compacting {
                Some(Duration::ZERO)
            } else {
                // Folded by hand: an iterator over the four cost more than the rest of
                // the loop's own work around a one-message connection's turn.
                let journal = self.journal.as_ref().and_then(Journal::retry_at);
                earliest(
                    earliest(
                        self.conns.next_deadline(now, || self.behind()),
                        self.node.poll_timeout(),
                    ),
                    earliest(self.stall_deadline(), earliest(journal, self.quiet_at)),
                )
                .map(|d| d.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            now = Instant::now();
            self.turn(now);
        }
        self.effects.push(Effect::Show(Event::Bye));
        self.apply_effects(now);
        self.flush_output(now);
        // Give a slow stdout a moment for the last lines, then leave regardless.
        let _ = self.stdout.finish(Duration::from_secs(1));
        let dropped = self.stdout.take_all_dropped();
        if dropped > 0 {
            log::warn!("{dropped} lines of output were dropped: stdout was not being read");
        }
        match self.undelivered + self.node.refused_sends() {
            n if n > 0 && self.scripted => Err(Error::Undelivered(n)),
            _ => Ok(()),
        }
    }

    /// One turn after `poll`: every event, then the connections queued for their turn
    /// (round-robin, each at most one share per turn, while stdout keeps up), the console,
    /// and the timers that are due.
    fn turn(&mut self, now: Instant) {
        // Queued before this turn; a connection queued during it gets its turn next time.
        let queued = self.conns.start_turn();
        let mut stdin_ready = self.console_has_more();
        // Taken out so that handlers may borrow the whole loop; put back below.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        // A connection alone with work reads a larger share (fewer turns, each with a
        // poll and a write): nobody waits behind it.
        // Whether it is alone is all that counts: two are enough.
        let ready = events.iter().filter(|e| self.conns.brings_work(e.token()));
        self.conns.set_contenders(queued + ready.take(2).count());
        for event in events.iter() {
            match event.token() {
                Token(key) if key < FIRST_SOURCE => {
                    if net::peer_ended(event) {
                        self.conns.heard_end(key);
                    }
                    let read = !self.behind();
                    // Connections deferred while stdout was behind wait in the queue: this
                    // one is read after them, in this turn (a sender's newer connection is
                    // not read before its older one).
                    if !(read && self.conns.holds_back() && self.conns.wait_behind(key)) {
                        self.conns
                            .ready(key, read, &mut self.node, now, &mut self.effects);
                    }
                }
                source => self.source_ready(source, &mut stdin_ready, now),
            }
            self.apply_effects(now);
        }
        self.events = events;
        if !self.behind() {
            // Accepted now; read now when no older connection is open, otherwise when
            // their readiness events come, in order.
            self.conns.accept(&mut self.node, now, &mut self.effects);
            self.apply_effects(now);
            for _ in 0..self.conns.start_fresh() {
                let read = !self.behind();
                self.conns
                    .read_fresh(read, &mut self.node, now, &mut self.effects);
                self.apply_effects(now);
            }
        }
        while self.conns.turns_left() && !self.behind() {
            if let Some(key) = self.conns.next_in_turn() {
                self.conns
                    .take_turn(key, &mut self.node, now, &mut self.effects);
                self.apply_effects(now);
            }
        }
        if stdin_ready {
            if self.console_open() {
                self.read_console(now);
            } else {
                self.console.defer();
            }
        }
        if let Some(udp) = &mut self.udp {
            udp.read_rest(&mut self.node, now, &mut self.effects);
        }
        let room = !self.behind();
        self.conns
            .on_timers(&mut self.node, (now, room), &mut self.effects);
        if self.quiet_at.is_some_and(|at| at <= now) {
            // Quiet since a burst of output: its buffers go back at this turn's flush.
            self.quiet_at = None;
            self.give_back_output = true;
        }
        if self.conns.take_gave_back() {
            // After a burst: the loop's own buffers go back to their idle size too.
            self.effects.shrink_to_fit();
            self.spare.shrink_to_fit();
            self.inputs.shrink_to_fit();
            self.give_back_output = true;
        }
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.on_timeout(now, &mut self.effects);
        }
        self.apply_effects(now);
    }

    /// A readiness event for one of the loop's own sources (not a connection's).
    fn source_ready(&mut self, token: Token, stdin_ready: &mut bool, now: Instant) {
        match token {
            LISTENER => self.conns.listener_ready(),
            STDIN => *stdin_ready = true,
            SIGNALS => self.on_signal(now),
            STDOUT => {} // flushed at the end of the turn
            token => {
                if let Some(udp) = &mut self.udp {
                    let which = usize::from(token == DISCOVERY[1]);
                    udp.read(which, &mut self.node, now, &mut self.effects);
                }
            }
        }
    }

    /// Brings back what the state directory remembered, telling the user what was skipped.
    fn restore(&mut self, replayed: Replayed, now: Instant) {
        if replayed.torn_tail {
            self.effects.push(Effect::Show(Event::Warning(
                "the state journal ended with a torn record (a crash while writing); skipped it"
                    .into(),
            )));
        }
        if replayed.skipped > 0 {
            self.effects.push(Effect::Show(Event::Warning(format!(
                "skipped {} in the state journal",
                counted(replayed.skipped, "unreadable record", "unreadable records")
            ))));
        }
        let (journal_peers, messages) = (replayed.peers.len(), replayed.messages.len());
        let peers = self.node.restore(
            replayed,
            self.config.greet_remembered,
            now,
            &mut self.effects,
        );
        if peers + messages > 0 {
            // A first run remembers nothing, and says nothing about it.
            self.effects.push(Effect::Show(Event::Info(format!(
                "remembered {} and {}",
                counted(peers, "peer", "peers"),
                counted(messages, "message", "messages")
            ))));
        }
        if journal_peers > peers {
            self.effects.push(Effect::Show(Event::Warning(format!(
                "{} of the state journal did not fit in the peer table: forgotten",
                counted(journal_peers - peers, "peer", "peers")
            ))));
        }
    }

    /// Executes what the node asked for. Executing can produce more effects (a failed
    /// check, a handler's command), so this runs until none are left.
    #[inline]
    fn apply_effects(&mut self, now: Instant) {
        // Called several times a turn, most often with nothing to do: that check alone
        // stays inline (the whole is a large function to enter and leave).
        if !self.effects.is_empty() {
            self.apply_all(now);
        }
    }

    #[inline(never)]
    fn apply_all(&mut self, now: Instant) {
        while !self.effects.is_empty() {
            if self.effects.len() == 1 {
                // One effect, the usual case (a message to show): taken as it is, without
                // trading the buffers for a batch and draining it. What it causes comes
                // after it, as after a batch.
                if let Some(effect) = self.effects.pop() {
                    self.apply(effect, now);
                }
                continue;
            }
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
                if let Event::SendFailed { text, .. } = &event {
                    // A message the user asked to send: not a greeting, an answer or `exit`.
                    let asked = crate::wire::control_word(text).is_none();
                    self.undelivered += usize::from(asked);
                }
                if let Some(handler) = &mut self.handler {
                    let mut commands = Vec::new();
                    handler.on_event(&event, &mut commands);
                    for command in commands {
                        self.node.execute(command, now, &mut self.effects);
                    }
                }
                if self.config.output && !self.stdout_broken {
                    self.output.show(&event);
                }
                self.conns.recycle(event);
            }
            Effect::ShowLines { from, lines } => {
                if let Some(handler) = &mut self.handler {
                    // A program sees each line as the message it is.
                    for line in lines.lines() {
                        let event = Event::Message {
                            from: from.clone(),
                            text: line.to_owned(),
                        };
                        let mut commands = Vec::new();
                        handler.on_event(&event, &mut commands);
                        for command in commands {
                            self.node.execute(command, now, &mut self.effects);
                        }
                    }
                }
                if self.config.output && !self.stdout_broken {
                    self.output.show_lines(&from, &lines);
                }
                self.conns.recycle_lines(from, lines);
            }
            Effect::Check(addr) => self
                .conns
                .check(addr, &mut self.node, now, &mut self.effects),
            Effect::Persist(record) => {
                if let Some(journal) = &mut self.journal {
                    journal.push(&record);
                }
            }
            Effect::Quitting => self.console.detach(self.poll.registry()),
            Effect::Datagram { to, bytes } => {
                if let Some(udp) = &self.udp {
                    udp.send(to, &bytes);
                }
            }
        }
    }

    fn on_signal(&mut self, now: Instant) {
        use rustix::process::Signal;
        let mut quit = false;
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            if signal == Signal::WINCH.as_raw() {
                if let Some(raw) = &mut self.raw_input {
                    raw.refresh_size();
                    self.output.redraw_prompt();
                }
            } else if signal == Signal::TSTP.as_raw() {
                self.suspend(now);
            } else if signal == Signal::CONT.as_raw() {
                if let Some(raw) = &mut self.raw_input {
                    raw.resume();
                    self.output.redraw_prompt();
                }
            } else {
                quit = true;
            }
        }
        if quit {
            // A second Ctrl-C while quitting stops waiting for the `exit` messages.
            self.node.interrupt(now, &mut self.effects);
        }
    }
}

/// A seed for this process's liveness jitter: peers started together on one machine get
/// different ones, so that their checks do not fall in step.
fn jitter_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(std::process::id()) << 32) ^ u64::from(nanos)
}

/// `n` and a noun, singular for one: `1 peer`, `2 peers`, `0 peers`.
fn counted(n: usize, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        _ => format!("{n} {many}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_singular_for_one_only() {
        assert_eq!(counted(0, "peer", "peers"), "0 peers");
        assert_eq!(counted(1, "peer", "peers"), "1 peer");
        assert_eq!(counted(2, "message", "messages"), "2 messages");
    }
}
