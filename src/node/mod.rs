//! The node: the protocol's rules, without any I/O and without a clock.
//!
//! The driver reports what happened (a line typed, a message decoded, a send finished or
//! failed, time passed), each input carrying `now`, and the node answers with
//! [`Effect`]s pushed into a `Vec`: show an event, persist a record, check a peer. It owns
//! the peer table, the console's menu state and the outbox.
//!
//! A driver calls it in this order, each turn: the `on_*` inputs for what happened; then
//! [`Node::poll_transmit`] until it returns `None`, opening one connection per message;
//! then [`Node::poll_timeout`] for when to call [`Node::on_timeout`]; and it stops once
//! [`Node::is_finished`]. Everything the lab protocol
//! asks for lives here: answering `connect` with `connect_ack` on a new connection (and
//! never with `connect`), forgetting a peer that says `exit`, greeting static peers,
//! telling every active peer `exit` on quit, and splitting long messages for receivers
//! that read only 1024 bytes. With `--discover`, datagrams of the LAN side channel come in
//! through [`Node::on_datagram`] and go out as [`Effect::Datagram`] (see [`discovery`]).

pub mod commands;
pub mod discovery;
#[cfg(test)]
mod discovery_tests;
pub mod event;
pub mod history;
pub mod liveness;
pub mod outbox;
pub mod peers;
mod sending;
pub mod timers;

#[cfg(test)]
use sending::{REPLIES_PER_INTERVAL, REPLY_INTERVAL};

use crate::time::Instant;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::node::commands::{Command, CommandParser, Target};
use crate::node::discovery::Discovery;
use crate::node::event::{Event, LeaveReason, Sender};
use crate::node::history::{Direction, Entry, History, Record, Replayed};
use crate::node::liveness::{Liveness, Verdict};
use crate::node::outbox::Outbox;
use crate::node::peers::{PeerTable, Source};
use crate::wire::{self, Body, OwnHeader};

/// What the node asks the driver to do, besides sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the user.
    Show(Event),
    /// Tell the user of several messages in a row from one sender: one
    /// [`Event::Message`] per line of `lines` (each line non-empty). Rendered together,
    /// at a line's cost each.
    ShowLines {
        /// Their sender.
        from: Sender,
        /// The messages, one per line.
        lines: wire::Run,
    },
    /// Write this record to the journal (only with [`Settings::persist`]).
    Persist(Record),
    /// Check whether a peer still answers (connect, then close without sending); report
    /// with [`Node::on_check`].
    Check(SocketAddr),
    /// Send this datagram on the discovery side channel (`--discover`): to the group
    /// (out of each interface in turn) when `to` is the group of [`Settings::discovery`],
    /// else to `to` alone.
    Datagram {
        /// The group, or one peerchat's side-channel address.
        to: SocketAddr,
        /// The datagram, at most [`discovery::MAX_DATAGRAM`] bytes.
        bytes: Vec<u8>,
    },
    /// Quitting has begun: stop reading the console. The `exit` messages are still to
    /// go; the driver runs until [`Node::is_finished`].
    Quitting,
}

/// What the node needs to know about itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Messages kept for `/history`.
    pub history: usize,
    /// Whether peers and messages are persisted (emit [`Effect::Persist`]).
    pub persist: bool,
    /// Our header: name, form, listening port, claimed IP.
    pub header: OwnHeader,
    /// Peers to greet with `connect` at start-up.
    pub static_peers: Vec<SocketAddr>,
    /// Connections carrying messages open at once.
    pub max_in_flight: usize,
    /// How long quitting waits for the `exit` messages.
    pub quit_wait: Duration,
    /// Most peers heard from one IP address that the table keeps.
    pub max_peers_per_ip: usize,
    /// The IP addresses we listen on (with our port, they are us): the bound address,
    /// or, bound to every address, the machine's and the unspecified address itself
    /// (which stands for every loopback address).
    pub own_ips: Vec<IpAddr>,
    /// LAN discovery (`--discover`): where announcements go and how often; `None`: off.
    pub discovery: Option<discovery::Plan>,
}

#[cfg(test)]
impl Settings {
    /// Settings for tests: `me` on port 5000 of 127.0.0.2 in the standard form, claiming
    /// no address, ten messages of history, no static peers, no discovery.
    pub(crate) fn for_tests() -> Settings {
        Settings {
            header: OwnHeader {
                name: "me".into(),
                format: crate::wire::Format::Standard,
                port: 5000,
                claim: None,
            },
            history: 10,
            persist: false,
            static_peers: Vec::new(),
            max_in_flight: 8,
            quit_wait: Duration::from_secs(2),
            max_peers_per_ip: crate::node::peers::MAX_PEERS_PER_IP,
            own_ips: vec!["127.0.0.2".parse().expect("ip")],
            discovery: None,
        }
    }
}

/// The protocol state of one peer.
#[derive(Debug)]
pub struct Node {
    me: Settings,
    peers: PeerTable,
    outbox: Outbox,
    liveness: Liveness,
    console: CommandParser,
    history: History,
    /// A moment on both clocks, to turn `Instant`s into wall-clock times.
    epoch: (Instant, i64),
    quitting: bool,
    /// While quitting: when waiting for the `exit` messages ends.
    quit_deadline: Option<Instant>,
    /// While quitting: when to say what the wait is for, if it is still going on.
    quit_notice: Option<Instant>,
    /// Static peers that our greeting has not reached yet.
    ungreeted: HashSet<SocketAddr>,
    /// Static peers that said `exit` while a message of ours to them was in flight: that
    /// message's end (it reached the peer before it left) does not make them active, nor
    /// count as our greeting. At most one entry per static peer.
    exited_in_flight: HashSet<SocketAddr>,
    /// While quitting: the peers already told `exit`.
    told_exit: HashSet<SocketAddr>,
    /// Whether the user was told that the peer table is full.
    said_table_full: bool,
    /// Automatic replies per peer (peers in the table only): since when it is counted, and
    /// how many in that interval.
    replied: HashMap<SocketAddr, (Instant, u32)>,
    /// Who sent the last chat message: where `/reply` goes.
    last_sender: LastSender,
    /// LAN discovery and peer exchange, when on.
    discovery: Option<Discovery>,
    /// Peerchats that said hello, by their TCP address, with the side-channel address to
    /// ask once our greeting reached them: a forged hello (its source can be anyone's)
    /// then draws a TCP `connect` to a port that refuses, never a datagram to the victim.
    /// At most [`MAX_AWAITING_GREETING`].
    awaiting_greeting: HashMap<SocketAddr, SocketAddr>,
    /// Reused for the datagrams discovery hands out.
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
    /// Messages the user asked for that never went out: refused before the outbox (a
    /// name nobody has, nobody to reply to, no active peer for `/all`, our own address, a
    /// malformed `/send`, quitting). Together with the sends that failed, they make a
    /// script's exit status.
    refused: usize,
}

/// Who sent the last chat message, for `/reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastSender {
    /// No message yet.
    Nobody,
    /// A sender that said where it listens.
    At(SocketAddr),
    /// A sender that did not (no header): it cannot be answered, and `/reply` says so
    /// rather than answer whoever spoke before it. (A header claiming our own address, as
    /// one lab peer's `PING` does, leaves `/reply` to whoever wrote before.)
    NoPort(IpAddr),
}

impl LastSender {
    fn of(addr: Option<SocketAddr>, ip: IpAddr) -> Self {
        addr.map_or(LastSender::NoPort(ip), LastSender::At)
    }
}

impl Node {
    /// A node that checks its peers' liveness with `liveness`. `epoch` is one moment on
    /// both clocks (an `Instant` and Unix milliseconds), to date the history: the node
    /// reads no clock itself.
    pub fn new(me: Settings, liveness: Liveness, epoch: (Instant, i64)) -> Self {
        Node {
            history: History::new(me.history),
            epoch,
            outbox: Outbox::new(me.max_in_flight),
            peers: PeerTable::with_limits(crate::node::peers::MAX_PEERS, me.max_peers_per_ip),
            replied: HashMap::new(),
            liveness,
            console: CommandParser::new(),
            quitting: false,
            quit_deadline: None,
            quit_notice: None,
            told_exit: HashSet::new(),
            ungreeted: HashSet::new(),
            exited_in_flight: HashSet::new(),
            said_table_full: false,
            last_sender: LastSender::Nobody,
            discovery: me
                .discovery
                .map(|plan| Discovery::new(plan, &me.header.name, me.header.port, epoch.0)),
            awaiting_greeting: HashMap::new(),
            datagrams: Vec::new(),
            refused: 0,
            me,
        }
    }

    /// How many messages the user asked for were refused before they could go out (each
    /// was told on its own line); see [`Node::on_line`].
    pub fn refused_sends(&self) -> usize {
        self.refused
    }

    /// The peer table, for queries and tests.
    #[cfg(test)]
    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    /// Whether quitting has begun (the driver then only waits for the `exit` messages).
    pub fn is_quitting(&self) -> bool {
        self.quitting
    }

    /// Whether the driver may stop: quitting, and every message is sent or given up.
    pub fn is_finished(&self) -> bool {
        self.quitting && self.outbox.is_empty()
    }

    /// Whether the node takes typed lines now: not while quitting, nor while
    /// [`INPUT_BACKLOG`] of the user's messages already wait for a connection (the driver
    /// then reads the console later: a script piping thousands of `/send` lines gets them
    /// all delivered, in order, at the pace of the network).
    pub fn wants_input(&self) -> bool {
        !self.quitting && self.outbox.user_waiting() < INPUT_BACKLOG
    }

    /// Our header, to encode each message on its connection.
    pub fn header(&self) -> &OwnHeader {
        &self.me.header
    }

    /// What the console should show before the next typed line.
    pub fn prompt(&self) -> &str {
        self.console.prompt()
    }

    /// Brings back what a journal remembered: peers (as `remembered`, not active, each with
    /// its name and the dialect it is answered in) and the message history; with `greet`,
    /// sends them `connect` (in their dialects). Returns how many of the peers the table
    /// holds: a journal may remember more than fit (it is never evicted for them).
    pub fn restore(
        &mut self,
        replayed: Replayed,
        greet: bool,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> usize {
        let mut kept = 0;
        for (addr, remembered) in replayed.peers {
            self.peers
                .restore(addr, remembered.name, remembered.dialect);
            if self.peers.get(addr).is_none() {
                continue; // no room: neither greeted nor checked
            }
            kept += 1;
            self.liveness.track(addr, now);
            if greet {
                self.send(addr, "connect", now, out);
            }
        }
        for entry in replayed.messages {
            self.history.push(entry);
        }
        kept
    }

    /// The records that describe what is worth remembering now (for journal compaction):
    /// every peer in the table, static ones included, with its name and dialect, and the
    /// history.
    pub fn snapshot(&self) -> Vec<Record> {
        // A discovered peer that never said a word is not remembered (see `learn`).
        let peers = self
            .peers
            .rows(self.epoch.0)
            .into_iter()
            .filter(|r| r.source != Source::Discovered || r.dialect.is_some())
            .map(|r| Record::Peer {
                addr: r.addr,
                name: r.name,
                dialect: r.dialect,
            });
        let messages = self
            .history
            .last(usize::MAX)
            .into_iter()
            .map(Record::Message);
        peers.chain(messages).collect()
    }

    /// `now` as Unix milliseconds, for the history's dates.
    fn wall_millis(&self, now: Instant) -> i64 {
        let since = now.millis_since(self.epoch.0);
        self.epoch
            .1
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }

    /// Records a received message in the history, copied into its buffer (no allocation
    /// once it has grown), and in the journal when persisting.
    fn keep_received(
        &mut self,
        (millis, addr): (i64, Option<SocketAddr>),
        name: Option<&str>,
        text: &str,
        out: &mut Vec<Effect>,
    ) {
        if self.me.persist {
            Self::persist_received((millis, addr), name, text, out);
        }
        self.history
            .push_copy((millis, Direction::In, addr), name, text);
    }

    /// The journal's record of a message received.
    fn persist_received(
        (millis, addr): (i64, Option<SocketAddr>),
        name: Option<&str>,
        text: &str,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::Persist(Record::Message(Entry {
            millis,
            direction: Direction::In,
            addr,
            name: name.map(str::to_owned),
            text: text.to_owned(),
        })));
    }

    /// Records a message in the history (and the journal, when persisting).
    fn log_message(&mut self, entry: Entry, out: &mut Vec<Effect>) {
        // The history copies the strings: the entry itself can go to the journal.
        let at = (entry.millis, entry.direction, entry.addr);
        self.history
            .push_copy(at, entry.name.as_deref(), &entry.text);
        if self.me.persist {
            out.push(Effect::Persist(Record::Message(entry)));
        }
    }

    /// Notes a peer we heard from at `addr` (canonical, as `on_message` makes it);
    /// announces it when new. What came `via_alias` (see `on_message`) does not name the
    /// peer. Returns whether it is in the table (a peer beyond the table's bounds is shown
    /// but not kept, nor answered).
    fn heard(
        &mut self,
        from: &Sender,
        via_alias: bool,
        addr: SocketAddr,
        chat: (u64, wire::Dialect),
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> bool {
        let name = match via_alias {
            true => None,
            false => from.name.as_deref(),
        };
        // Remembering names and dialects: a name or a dialect the journal does not have yet
        // is written (only when persisting; otherwise this costs nothing per message). Raw
        // text names no dialect: the one known stays.
        let changed = self.me.persist
            && self.peers.get(addr).is_some_and(|p| {
                (name.is_some() && p.name.as_deref() != name)
                    || (chat.1 != wire::Dialect::Raw && p.dialect != Some(chat.1))
            });
        let noted = self
            .peers
            .note_canonical(addr, name, from.claimed_ip, chat, now);
        self.take_evicted(out);
        let Some(is_new) = noted else {
            self.table_full(out);
            return false;
        };
        self.liveness.heard(addr, now);
        if is_new {
            out.push(Effect::Show(Event::PeerJoined {
                addr,
                name: name.map(str::to_owned),
            }));
        }
        if changed || (is_new && self.me.persist) {
            self.persist_peer(addr, out);
        }
        true
    }

    /// Writes to the journal what the table knows of `addr`: its name and its dialect.
    pub(super) fn persist_peer(&self, addr: SocketAddr, out: &mut Vec<Effect>) {
        if let Some(p) = self.peers.get(addr) {
            out.push(Effect::Persist(Record::Peer {
                addr: crate::node::peers::canonical(addr),
                name: p.name.clone(),
                dialect: p.dialect,
            }));
        }
    }

    /// Forgets the peers the table evicted to make room (a check per message, inline; the
    /// forgetting is rare).
    #[inline]
    fn take_evicted(&mut self, out: &mut Vec<Effect>) {
        if self.peers.has_evicted() {
            self.forget_evicted(out);
        }
    }

    #[cold]
    #[inline(never)]
    fn forget_evicted(&mut self, out: &mut Vec<Effect>) {
        for addr in self.peers.take_evicted() {
            self.liveness.forget(addr);
            self.replied.remove(&addr);
            if self.me.persist {
                out.push(Effect::Persist(Record::Gone { addr }));
            }
        }
    }

    /// Says once that peers are being left out of the table.
    fn table_full(&mut self, out: &mut Vec<Effect>) {
        if !self.said_table_full {
            self.said_table_full = true;
            out.push(Effect::Show(Event::Warning(format!(
                "the peer table is full ({} peers, at most {} per address): new peers are shown but not kept",
                crate::node::peers::MAX_PEERS,
                self.me.max_peers_per_ip
            ))));
        }
    }

    /// Start-up: announce where we listen and greet the static peers.
    pub fn start(&mut self, listening: SocketAddr, now: Instant, out: &mut Vec<Effect>) {
        out.push(Effect::Show(Event::Listening {
            addr: listening,
            name: self.me.header.name.clone(),
        }));
        if listening.ip().is_unspecified() {
            // Listening on every address: say which ones classmates can type.
            let port = listening.port();
            let reachable: Vec<String> = self
                .me
                .own_ips
                .iter()
                .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
                .map(|ip| SocketAddr::new(*ip, port).to_string())
                .collect();
            let text = match reachable.is_empty() {
                true => format!(
                    "no network address found: only this machine can reach you (127.0.0.1:{port})"
                ),
                false => format!("others reach you at {}", reachable.join(", ")),
            };
            out.push(Effect::Show(Event::Info(text)));
        }
        for dest in self.me.static_peers.clone() {
            self.peers.add_static(dest, now);
            if self.me.persist {
                // Remembered, so that a later run without `-s` still knows it.
                let addr = crate::node::peers::canonical(dest);
                out.push(Effect::Persist(Record::Peer {
                    addr,
                    name: None,
                    dialect: None,
                }));
            }
            self.ungreeted.insert(crate::node::peers::canonical(dest));
            self.send(dest, "connect", now, out);
        }
        if let Some(d) = &mut self.discovery {
            d.start(now, &mut self.datagrams);
            self.flush_datagrams(out);
        }
    }

    /// When [`Node::on_timeout`] next has work: a liveness check, or, while quitting,
    /// the end of the wait for the `exit` messages.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.quitting {
            let next = self.quit_notice.into_iter().chain(self.quit_deadline).min();
            return next.filter(|_| !self.outbox.is_empty());
        }
        let discovery = self.discovery.as_ref().and_then(Discovery::poll_timeout);
        timers::earliest(self.liveness.next_deadline(), discovery)
    }

    /// Time passed: start the liveness checks that are due; while quitting, give up on
    /// the messages still unsent once the quit wait is over.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.quitting {
            if self.quit_notice.is_some_and(|at| now >= at) {
                self.quit_notice = None;
                let n = self.outbox.destinations();
                if n > 0 {
                    let peers = if n == 1 { "peer" } else { "peers" };
                    // Only `exit`s, or also a message typed before quitting (a reply).
                    let doing = match self.outbox.holds_only("exit") {
                        true => format!("telling {n} {peers} you left"),
                        false => format!("still sending to {n} {peers} before leaving"),
                    };
                    out.push(Effect::Show(Event::Info(format!(
                        "{doing}; Ctrl-C to stop waiting"
                    ))));
                }
            }
            if self.quit_deadline.is_some_and(|deadline| now >= deadline) {
                self.give_up("still not sent when quitting", out);
            }
            return;
        }
        let mut due = Vec::new();
        self.liveness.due(now, &mut due);
        for addr in due {
            self.check_or_drop(addr, out);
        }
        if let Some(d) = &mut self.discovery {
            d.on_timeout(now, &mut self.datagrams);
            self.flush_datagrams(out);
        }
    }

    /// A check of `addr` is due: it goes out, unless `addr` was announced as a peerchat,
    /// took our greeting and has said nothing since (no dialect heard). A peerchat answers
    /// a `connect`; a hello names any port that accepts connections (forged, a web
    /// server's), which would otherwise be checked, and kept, for as long as it accepts.
    /// The address is not learned from the side channel again (see `PeerTable::silence`).
    fn check_or_drop(&mut self, addr: SocketAddr, out: &mut Vec<Effect>) {
        use crate::node::peers::Status;
        // Active: our greeting reached it (one refused takes the usual way out).
        let silent = self
            .peers
            .get(addr)
            .is_some_and(|p| p.status == Status::Active && self.unproven(addr, p));
        if !silent {
            out.push(Effect::Check(addr));
            return;
        }
        self.peers.silence(addr);
        if let Some(known) = self.forget(addr, out) {
            out.push(Effect::Show(Event::PeerLeft {
                addr,
                name: known.name,
                reason: LeaveReason::Silent,
            }));
        }
    }

    /// Whether `peer`, at `addr`, was announced as a peerchat and nothing proved it one
    /// yet: no word from it over TCP (no dialect heard), and no answer with our nonce on
    /// the side channel from its IP for its port (see [`Discovery::vouches_for`]).
    fn unproven(&self, addr: SocketAddr, peer: &crate::node::peers::Peer) -> bool {
        peer.source == Source::Discovered
            && peer.dialect.is_none()
            && !self.discovery.as_ref().is_some_and(|d| d.vouches_for(addr))
    }

    /// A signal (Ctrl-C): quit, or, when already quitting, stop waiting.
    pub fn interrupt(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.quitting {
            self.give_up("quit was interrupted", out);
        } else {
            self.quit(now, out);
        }
    }

    /// The result of an [`Effect::Check`].
    pub fn on_check(
        &mut self,
        addr: SocketAddr,
        answered: bool,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let peer = self.peers.get(addr);
        let name = peer.and_then(|p| p.name.clone());
        // A static peer is never removed for not answering: it is kept, and checked,
        // until it comes.
        let is_static = peer.is_some_and(|p| p.source == Source::Static);
        // A static peer our greeting could not reach (it started after us) is greeted as
        // soon as it answers, and the user is told.
        let greet = answered && self.ungreeted.contains(&addr) && !self.quitting;
        if greet {
            out.push(Effect::Show(Event::Info(format!(
                "static peer {addr} answers now: greeting it"
            ))));
            self.send(addr, "connect", now, out);
        }
        match self.liveness.result_of(addr, answered, now, !is_static) {
            Verdict::Unchanged => {
                if answered {
                    self.peers.answered(addr);
                }
            }
            Verdict::Back => {
                self.peers.answered(addr);
                out.push(Effect::Show(Event::PeerBack { addr, name }));
                if is_static && !greet && !self.quitting {
                    // Back after being unreachable: most likely restarted, and it has
                    // forgotten us.
                    self.send(addr, "connect", now, out);
                }
            }
            Verdict::Unreachable(failures) => {
                self.peers.unreachable(addr);
                out.push(Effect::Show(Event::PeerUnreachable {
                    addr,
                    name,
                    failures,
                }));
            }
            Verdict::Remove => {
                if self.forget(addr, out).is_some() {
                    out.push(Effect::Show(Event::PeerLeft {
                        addr,
                        name,
                        reason: LeaveReason::Unreachable,
                    }));
                }
            }
        }
    }

    /// A line typed on the console.
    pub fn on_line(&mut self, line: &str, now: Instant, out: &mut Vec<Effect>) {
        if self.quitting {
            return;
        }
        match self.console.input(line) {
            Ok(Some(command)) => self.execute(command, now, out),
            Ok(None) => {}
            Err(hint) => {
                // A message command that could not be read (`/send` to a bad address, `/msg`
                // without text) asked for a message that will not go.
                self.refused += usize::from(commands::asks_to_send(line));
                out.push(Effect::Show(Event::Hint(hint)));
            }
        }
    }

    /// Executes a console command. While quitting, nothing more is sent: a message would
    /// reach its peer after our `exit` and bring us back into its table.
    pub fn execute(&mut self, command: Command, now: Instant, out: &mut Vec<Effect>) {
        if self.quitting
            && matches!(
                command,
                Command::Send { .. }
                    | Command::All { .. }
                    | Command::Connect
                    | Command::ConnectTo(_)
                    | Command::Msg { .. }
                    | Command::Reply { .. }
            )
        {
            self.refused += usize::from(command.is_message());
            out.push(Effect::Show(Event::Warning("not sent: quitting".into())));
            return;
        }
        match command {
            Command::Send { dest, text } => self.send(dest, &text, now, out),
            Command::All { text } => {
                let active = self.peers.active();
                if active.is_empty() {
                    self.refused += 1;
                    out.push(Effect::Show(Event::Warning(
                        "no active peers to send to".into(),
                    )));
                }
                for dest in active {
                    self.send(dest, &text, now, out);
                }
            }
            Command::Peers => out.push(Effect::Show(Event::Peers(self.peers.rows(now)))),
            Command::Connect => {
                let active = self.peers.active();
                if active.is_empty() {
                    out.push(Effect::Show(Event::Warning(
                        "no active peers to connect to".into(),
                    )));
                }
                for dest in active {
                    self.send(dest, "connect", now, out);
                }
            }
            Command::ConnectTo(target) => match self.resolve(&target) {
                Ok(dest) => self.send(dest, "connect", now, out),
                Err(hint) => out.push(Effect::Show(Event::Hint(hint))),
            },
            Command::Msg { to, text } => match self.resolve(&to) {
                Ok(dest) => self.send(dest, &text, now, out),
                Err(hint) => {
                    self.refused += 1;
                    out.push(Effect::Show(Event::Hint(hint)));
                }
            },
            Command::Reply { text } => match self.last_sender {
                LastSender::At(dest) => self.send(dest, &text, now, out),
                LastSender::Nobody => {
                    self.refused += 1;
                    out.push(Effect::Show(Event::Hint(
                        "nobody has sent you a message yet; /msg NAME TEXT".into(),
                    )));
                }
                LastSender::NoPort(ip) => {
                    self.refused += 1;
                    out.push(Effect::Show(Event::Hint(format!(
                        "the last message, from {ip}, did not say where its sender listens: it cannot be answered; /msg NAME TEXT or /send IP:PORT TEXT"
                    ))));
                }
            },
            Command::Query(Some(target)) => match self.resolve(&target) {
                Ok(dest) => {
                    let name = self.peers.get(dest).and_then(|p| p.name.clone());
                    // The address once: a peer without a name is labelled by it.
                    let who = match &name {
                        Some(name) => format!("{name} ({dest})"),
                        None => dest.to_string(),
                    };
                    let label = name.unwrap_or_else(|| dest.to_string());
                    self.console.converse(Some((dest, &label)));
                    out.push(Effect::Show(Event::Info(format!(
                        "talking to {who}: plain lines go there; /query alone ends it"
                    ))));
                }
                Err(hint) => out.push(Effect::Show(Event::Hint(hint))),
            },
            Command::Query(None) => match self.console.conversation() {
                Some(dest) => {
                    self.console.converse(None);
                    out.push(Effect::Show(Event::Info(format!(
                        "no longer talking to {dest}"
                    ))));
                }
                None => out.push(Effect::Show(Event::Peers(self.peers.rows(now)))),
            },
            Command::Quit => self.quit(now, out),
            Command::Help => out.push(Effect::Show(Event::Help)),
            Command::History(n) => out.push(Effect::Show(Event::History(self.history.last(n)))),
            Command::Menu => out.push(Effect::Show(Event::Menu)),
        }
    }

    /// Leaves: `exit` to every active peer, then shut down. Idempotent. A peer that
    /// becomes active while quitting (a message typed just before quitting reaches it)
    /// is told `exit` too, after that message.
    pub fn quit(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.quitting {
            return;
        }
        self.quitting = true;
        self.quit_deadline = Some(now + self.me.quit_wait);
        self.quit_notice = Some(now + QUIT_NOTICE_AFTER);
        for dest in self.peers.active() {
            self.say_exit(dest, now, out);
        }
        if let Some(d) = &mut self.discovery {
            d.stop(self.me.header.port, &mut self.datagrams);
            self.flush_datagrams(out);
        }
        out.push(Effect::Quitting);
    }

    fn say_exit(&mut self, dest: SocketAddr, now: Instant, out: &mut Vec<Effect>) {
        if self.told_exit.insert(dest) {
            self.send(dest, "exit", now, out);
        }
    }

    /// A message decoded from a connection whose remote IP is `observed`.
    pub fn on_message(
        &mut self,
        observed: IpAddr,
        msg: wire::Message,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        // Another port, the usual case, is told once for both addresses.
        if msg.port == Some(self.me.header.port)
            && (self.is_us(observed, msg.port)
                || msg.claimed_ip.is_some_and(|ip| self.is_us(ip, msg.port)))
        {
            // A header that claims our own listening address (one lab peer's `PING` does
            // that) is never filed or answered: we would become our own peer. The text is
            // still shown, under the address it came from.
            let from = Sender {
                ip: observed.to_canonical(),
                port: None,
                claimed_ip: None,
                name: msg.name.map(bounded_name),
            };
            // `/reply` still answers whoever wrote before: this is no one to answer.
            match msg.body {
                Body::Chat(text) if !wire::is_blank(&text) => {
                    out.push(Effect::Show(Event::Message { from, text }));
                }
                Body::Lines(lines) => out.push(Effect::ShowLines { from, lines }),
                _ => {}
            }
            return;
        }
        // The name is bounded where it is, not moved through a call.
        let mut name = msg.name;
        if let Some(name) = &mut name {
            bound_name(name);
        }
        let ip = observed.to_canonical();
        let from = Sender {
            ip,
            port: msg.port,
            claimed_ip: match msg.claimed_ip {
                Some(claimed) if claimed.to_canonical() != ip => Some(claimed),
                _ => None,
            },
            name,
        };
        // A peer merged into the address it listens at is filed there. What comes through
        // such an alias is trusted less (anyone can claim an address): it cannot rename
        // the row, and its `exit` drops only the alias (see below).
        let raw = from.addr();
        let (mut addr, mut via_alias) = (raw, false);
        if let Some(into) = raw.and_then(|raw| self.peers.alias_of(raw)) {
            (addr, via_alias) = (Some(into), true);
        }
        let dialect = msg.dialect;
        match msg.body {
            Body::Chat(text) => {
                // A header with no text says "I am here": noted, not shown.
                let shown = !wire::is_blank(&text);
                if let Some(addr) = addr {
                    self.heard(
                        &from,
                        via_alias,
                        addr,
                        (u64::from(shown), dialect),
                        now,
                        out,
                    );
                }
                if shown {
                    self.last_sender = LastSender::of(addr, from.ip);
                    let millis = self.wall_millis(now);
                    self.keep_received((millis, addr), from.name.as_deref(), &text, out);
                    out.push(Effect::Show(Event::Message { from, text }));
                }
            }
            Body::Lines(lines) => {
                // Every line is a message, as if each had come alone; the table notes the
                // sender once, and counts each.
                let millis = self.wall_millis(now);
                if self.me.persist {
                    for line in lines.lines() {
                        Self::persist_received((millis, addr), from.name.as_deref(), line, out);
                    }
                }
                // One copy of the run into the history, not one per line.
                let at = (millis, Direction::In, addr);
                let name = from.name.as_deref();
                self.history.push_lines(at, name, &lines);
                if let Some(addr) = addr {
                    let count = lines.line_count() as u64;
                    self.heard(&from, via_alias, addr, (count, dialect), now, out);
                }
                self.last_sender = LastSender::of(addr, from.ip);
                out.push(Effect::ShowLines { from, lines });
            }
            Body::Connect => {
                if let Some(addr) = addr {
                    // It greeted us: it knows us, and our `connect_ack` tells it we know it.
                    self.ungreeted.remove(&addr);
                }
                let answering = match addr {
                    // A new connection to its listening port; never `connect` back. Not
                    // while quitting: it would reach the peer after our `exit`.
                    Some(addr)
                        if self.heard(&from, via_alias, addr, (0, dialect), now, out)
                            && !self.quitting =>
                    {
                        self.reply(addr, now)
                    }
                    _ => false,
                };
                out.push(Effect::Show(Event::ConnectFrom { from, answering }));
            }
            Body::ConnectAck => {
                if let Some(addr) = addr {
                    self.ungreeted.remove(&addr);
                    self.heard(&from, via_alias, addr, (0, dialect), now, out);
                }
                out.push(Effect::Show(Event::ConnectAck { from }));
            }
            Body::Exit => {
                let Some(addr) = addr else {
                    out.push(Effect::Show(Event::Warning(format!(
                        "a peer at {} said exit without telling its port; nothing to remove",
                        from.ip
                    ))));
                    return;
                };
                if let (true, Some(raw)) = (via_alias, raw) {
                    self.peers.drop_alias(raw);
                    let user_set = self
                        .peers
                        .get(addr)
                        .is_some_and(|p| p.source == Source::Static);
                    // Not proof that the peer where the alias points left: that one stays
                    // until it says so itself or stops answering. Any host can make itself
                    // such an alias (one `connect` claiming the peer's IP, from where that
                    // port refuses us), so its `exit` changes nothing the user relies on.
                    // A static peer is greeted again when it next answers a check: one that
                    // restarts behind its alias would otherwise never be greeted again; one
                    // that never left costs a greeting, and stays in `/all`.
                    let again = match user_set && !self.quitting {
                        true => {
                            self.ungreeted.insert(addr);
                            "; greeted again when it next answers"
                        }
                        false => "",
                    };
                    out.push(Effect::Show(Event::Info(format!(
                        "{raw} said exit; {addr}, which it was taken for, stays until it leaves itself or stops answering{again}"
                    ))));
                    return;
                }
                let name = from
                    .name
                    .or_else(|| self.peers.get(addr).and_then(|p| p.name.clone()));
                if self.peers.left_static(addr) {
                    // The user configured it: it stays (in the journal too), as at
                    // start-up, its name and dialect kept; checked afresh, and greeted when
                    // it answers again (it quit to restart, most likely), unless we are
                    // leaving ourselves.
                    self.liveness.forget(addr);
                    self.replied.remove(&addr);
                    if self.outbox.has_in_flight(addr) {
                        // What we sent reached it before it left, most likely: when that
                        // send ends, the row stays as it is now.
                        self.exited_in_flight.insert(addr);
                    }
                    if !self.quitting {
                        self.liveness.track(addr, now);
                        self.ungreeted.insert(addr);
                    }
                } else if self.forget(addr, out).is_none() {
                    // Only a peer we knew can leave: an `exit` for any other is not news.
                    return;
                }
                out.push(Effect::Show(Event::PeerLeft {
                    addr,
                    name,
                    reason: LeaveReason::Exit,
                }));
            }
        }
    }

    /// The address of a peer the user named: an address as it is, a name through the table
    /// (exactly, else ignoring case); a hint when no peer or several peers have that name.
    fn resolve(&self, target: &Target) -> Result<SocketAddr, String> {
        let name = match target {
            Target::Addr(addr) => return Ok(*addr),
            Target::Name(name) => name,
        };
        let mut found = self.peers.named_exactly(name);
        if found.is_empty() {
            found = self.peers.named_ignoring_case(name);
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "no peer called {name:?}; /peers lists them, or give IP:PORT"
            )),
            several => {
                let list: Vec<String> = several.iter().map(|a| a.to_string()).collect();
                Err(format!(
                    "{} peers are called {name:?}: {}; give IP:PORT",
                    several.len(),
                    list.join(", ")
                ))
            }
        }
    }

    /// What Tab may complete `word` to: a command when it starts the line with `/`, else
    /// the peers' names and addresses; sorted, at most [`MAX_COMPLETIONS`].
    pub fn completions(&self, word: &str, first: bool) -> Vec<String> {
        let mut found: Vec<String> = if first && word.starts_with('/') {
            let commands = crate::node::commands::COMMANDS.iter();
            commands.map(|c| (*c).to_owned()).collect()
        } else {
            let rows = self.peers.rows(self.epoch.0);
            let names = rows.iter().filter_map(|r| r.name.clone());
            names
                .chain(rows.iter().map(|r| r.addr.to_string()))
                .collect()
        };
        found.retain(|c| c.starts_with(word));
        found.sort();
        found.dedup();
        if found.len() > MAX_COMPLETIONS {
            // Sorted: the first and the last share exactly what all of them share, so
            // keeping the last keeps Tab from extending the word past one left out.
            let last = found.pop();
            found.truncate(MAX_COMPLETIONS - 1);
            found.extend(last);
        }
        found
    }

    /// Whether `ip` with `port` is our own listening address.
    #[inline]
    pub(crate) fn is_us(&self, ip: IpAddr, port: Option<u16>) -> bool {
        // Another port, the usual case, is told before the address is looked at.
        if port != Some(self.me.header.port) {
            return false;
        }
        let ip = ip.to_canonical();
        // An unspecified own address means we listen on every address: every loopback
        // address (and the unspecified one) reaches us too.
        let everywhere =
            |own: IpAddr| own.is_unspecified() && (ip.is_loopback() || ip.is_unspecified());
        self.me.own_ips.iter().any(|own| {
            let own = own.to_canonical();
            own == ip || everywhere(own)
        })
    }

    /// Removes a peer from the table, the liveness schedule and (when persisting) memory.
    fn forget(
        &mut self,
        addr: SocketAddr,
        out: &mut Vec<Effect>,
    ) -> Option<crate::node::peers::Peer> {
        self.liveness.forget(addr);
        self.replied.remove(&addr);
        let known = self.peers.remove(addr);
        if known.is_some() && self.me.persist {
            out.push(Effect::Persist(Record::Gone { addr }));
        }
        known
    }
}

impl Node {
    /// A datagram on the discovery socket from `from` (only with [`Settings::discovery`]).
    /// An announcement files its sender as `discovered` and greets it with `connect`, once;
    /// a peer listed in an answer to our query is filed as `exchanged` and greeted the
    /// same way; `bye` forgets a peer found this way; a query is answered, to its source,
    /// within the bounds of [`discovery`].
    pub fn on_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        use crate::node::discovery::{Heard, Listed, MAX_AGE};
        use crate::node::peers::Source;
        if self.quitting {
            return;
        }
        let Some(d) = &mut self.discovery else {
            return;
        };
        match d.on_datagram(from, bytes, now) {
            None => {}
            Some(Heard::Hello { addr, name }) => {
                // A peerchat new to us is asked which peers it knows (not we ourselves),
                // once its TCP side answered: at once when we reached it already, else
                // when our greeting gets there (see `awaiting_greeting`).
                let us = self.is_us(addr.ip(), Some(addr.port()));
                let reached = !us
                    && self
                        .peers
                        .get(addr)
                        .is_some_and(|p| p.status == crate::node::peers::Status::Active);
                if reached {
                    if let Some(d) = &mut self.discovery {
                        d.heard_from(from, addr.port());
                    }
                }
                if !us {
                    self.peers.seen(addr, now);
                }
                self.learn(addr, Some(&name), None, Source::Discovered, now, out);
                // Remembered only while our greeting is on its way (its delivery or
                // failure takes the entry back): hellos that greet nobody (beyond the
                // new-peer rate, a full table, a peer we know) leave nothing behind, and
                // a flood of them cannot fill the map against the peerchats that follow.
                if !us
                    && !reached
                    && self.awaiting_greeting.len() < MAX_AWAITING_GREETING
                    && self.outbox.holds_word(addr, "connect")
                {
                    self.awaiting_greeting.insert(addr, from);
                }
            }
            Some(Heard::Peers(list)) => {
                for peer in list.into_iter().filter(|p| p.age <= MAX_AGE) {
                    let name = peer.name.as_deref();
                    self.learn(peer.addr, name, peer.dialect, Source::Exchanged, now, out);
                }
            }
            Some(Heard::Bye { addr }) => {
                let found = self.peers.get(addr).map(|p| p.source);
                d.gone(from);
                if matches!(found, Some(Source::Discovered | Source::Exchanged)) {
                    if let Some(known) = self.forget(addr, out) {
                        out.push(Effect::Show(Event::PeerLeft {
                            addr,
                            name: known.name,
                            reason: LeaveReason::Exit,
                        }));
                    }
                }
            }
            Some(Heard::Query { limit, nonce }) => {
                let mut rows = self.peers.rows(now);
                // A peer only announced or listed, that never said a word to us, is not
                // vouched for: a forged hello's port (dropped as silent at its first
                // check) would come back, as `exchanged`, to a peerchat that dropped it.
                rows.retain(|r| {
                    r.status == crate::node::peers::Status::Active
                        && r.last_heard.is_some_and(|age| age <= MAX_AGE)
                        && (r.dialect.is_some()
                            || !matches!(r.source, Source::Discovered | Source::Exchanged))
                });
                rows.sort_by_key(|r| r.last_heard);
                let list: Vec<Listed> = rows
                    .into_iter()
                    .map(|r| Listed {
                        addr: r.addr,
                        age: r.last_heard.unwrap_or_default(),
                        dialect: r.dialect,
                        name: r.name,
                    })
                    .collect();
                if let Some(d) = &mut self.discovery {
                    d.answer(from, &list, limit, nonce, &mut self.datagrams);
                }
                self.flush_datagrams(out);
            }
        }
    }

    /// Files a peer learned on the side channel and greets it; whether it was new.
    fn learn(
        &mut self,
        addr: SocketAddr,
        name: Option<&str>,
        dialect: Option<wire::Dialect>,
        source: crate::node::peers::Source,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> bool {
        let addr = crate::node::peers::canonical(addr);
        // A silenced address is refused before it spends a new peer of the minute's.
        if self.is_us(addr.ip(), Some(addr.port()))
            || self.peers.get(addr).is_some()
            || self.peers.is_silenced(addr)
        {
            return false;
        }
        if !self
            .discovery
            .as_mut()
            .is_some_and(|d| d.admit_new_peer(now))
        {
            return false;
        }
        let name = name.map(|n| bounded_name(n.to_owned()));
        let learned = self
            .peers
            .learned(addr, name.as_deref(), dialect, source, now);
        self.take_evicted(out);
        match learned {
            Some(true) => {}
            Some(false) => return false,
            None => {
                self.table_full(out);
                return false;
            }
        }
        self.liveness.track(addr, now);
        out.push(Effect::Show(Event::PeerJoined {
            addr,
            name: name.clone(),
        }));
        if self.me.persist && source != Source::Discovered {
            // With the dialect another peer listed it in, if any. A discovered peer is
            // remembered once it speaks (`heard`): a port that never answers its greeting
            // would come back as `remembered`, checked for good.
            self.persist_peer(addr, out);
        }
        self.send(addr, "connect", now, out);
        true
    }

    /// Hands the datagrams discovery produced to the driver.
    fn flush_datagrams(&mut self, out: &mut Vec<Effect>) {
        out.extend(
            self.datagrams
                .drain(..)
                .map(|(to, bytes)| Effect::Datagram { to, bytes }),
        );
    }

    /// Discovery's counters, for tests.
    #[cfg(test)]
    pub fn discovery_stats(&self) -> Option<crate::node::discovery::Stats> {
        self.discovery.as_ref().map(Discovery::stats)
    }
}

/// Most hellos whose TCP side we have not reached yet, remembered to be asked later.
pub const MAX_AWAITING_GREETING: usize = 1024;

/// How long quitting waits in silence: past this, it says what it is waiting for.
pub const QUIT_NOTICE_AFTER: Duration = Duration::from_millis(400);

/// Most candidates Tab offers at once.
pub const MAX_COMPLETIONS: usize = 32;

/// The user's messages waiting for a connection beyond which typed lines wait.
pub const INPUT_BACKLOG: usize = 256;

/// Longest peer name kept, in bytes: a longer one is cut (at a character boundary), so
/// that names cannot fill memory, the table or the screen.
pub const MAX_NAME: usize = 64;

pub(crate) fn bounded_name(mut name: String) -> String {
    bound_name(&mut name);
    name
}

/// Cuts `name` as [`bounded_name`] does, in place.
fn bound_name(name: &mut String) {
    if name.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
}

#[cfg(test)]
mod tests;
