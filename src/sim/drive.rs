//! Driving one simulated node exactly as the real driver does (src/driver/event_loop/
//! and src/driver/connections/): one input; then its effects; then `poll_transmit`
//! until `None`, one connection each; then `on_timeout` if `poll_timeout` is due; the
//! process ends once `is_finished`. And the receiving end of a connection: the real bytes
//! (`node.header().encode(local_ip, &text)`) through a real `wire::Decoder`, fed in
//! arbitrary chunks and finished at EOF, each message to `on_message(observed_ip, ..)`.

use crate::time::Instant;
use std::net::SocketAddr;

use crate::node::Effect;
use crate::sim::net::{Conn, Ev, Payload, Report, Sim, State};
use crate::sim::setup::{addr_of, Action, Fault};
use crate::wire::{self, Body, Decoder};
use crate::Command;

/// Most `on_timeout` calls in a row at one instant before the simulator calls it a spin.
const SPIN_LIMIT: usize = 64;

impl Sim {
    /// One input reaches running node `i`.
    pub(super) fn run_input(&mut self, i: usize, ev: Ev) {
        let now = self.instant();
        let mut out = std::mem::take(&mut self.scratch);
        let mut sender = None;
        let mut connects = Vec::new();
        match ev {
            Ev::Act(_, action) => self.act(i, action, now, &mut out),
            Ev::Deliver(conn) => {
                sender = Some(conn.src);
                self.deliver(i, *conn, now, &mut out, &mut connects);
            }
            Ev::Report(_, report) => {
                let node = &mut self.nodes[i].node;
                match report {
                    Report::Sent(dest) => node.on_sent(dest, None, now, &mut out),
                    Report::Failed(dest, reason) => node.on_send_failed(dest, reason, &mut out),
                    Report::Check(addr, answered) => node.on_check(addr, answered, now, &mut out),
                }
            }
            Ev::Datagram(_, from, bytes) => {
                self.nodes[i].node.on_datagram(from, &bytes, now, &mut out);
            }
            Ev::Timeout(_, at) => {
                if self.nodes[i].armed != Some(at) {
                    self.scratch = out;
                    return; // stale: the deadline moved since
                }
                self.nodes[i].armed = None;
            }
            _ => {}
        }
        self.settle(i, out, sender, &connects);
    }

    /// The driver's wake-up with nothing to read: only the timers.
    pub(super) fn wake(&mut self, i: usize) {
        let out = std::mem::take(&mut self.scratch);
        self.settle(i, out, None, &[]);
    }

    fn act(&mut self, i: usize, action: Action, now: Instant, out: &mut Vec<Effect>) {
        let sim_node = &mut self.nodes[i];
        let quitting = sim_node.node.is_quitting();
        let node = &mut sim_node.node;
        match action {
            Action::Start => {
                if sim_node.state == State::Idle {
                    sim_node.state = State::Running;
                    node.start(sim_node.addr, now, out);
                }
            }
            Action::Line(line) => node.on_line(&line, now, out),
            Action::Exec(command) => node.execute(command, now, out),
            // Once quitting, the console is detached: nobody types any more.
            Action::Chat | Action::ChatTo(_) | Action::ChatOne if quitting => {}
            Action::Chat => {
                let text = format!("m{i}-{}", sim_node.chats);
                sim_node.chats += 1;
                let dests = node.peers().active();
                self.trace.expect(i, &dests, &text, self.now);
                node.execute(Command::All { text }, now, out);
            }
            Action::ChatTo(_) | Action::ChatOne => {
                let dest = match action {
                    Action::ChatTo(j) => addr_of(j),
                    _ => {
                        let active = node.peers().active();
                        match active.get(self.rng.index(active.len())) {
                            Some(dest) => *dest,
                            None => return,
                        }
                    }
                };
                let text = format!("m{i}-{}", sim_node.chats);
                sim_node.chats += 1;
                self.trace.expect(i, &[dest], &text, self.now);
                node.execute(Command::Send { dest, text }, now, out);
            }
            Action::Quit | Action::Interrupt => {
                if !quitting {
                    let active = node.peers().active();
                    self.trace.quit(i, self.now, &active);
                }
                if matches!(action, Action::Quit) {
                    node.quit(now, out);
                } else {
                    node.interrupt(now, out);
                }
            }
            // World events, handled before routing.
            Action::Kill | Action::Pause(_) | Action::BlackHole(_) => {}
        }
    }

    /// Node `i` reads connection `conn` to its end.
    fn deliver(
        &mut self,
        i: usize,
        conn: Conn,
        now: Instant,
        out: &mut Vec<Effect>,
        connects: &mut Vec<SocketAddr>,
    ) {
        let Payload::Message { text, bytes } = conn.payload else {
            return;
        };
        // Reads return the bytes in whatever chunks: cut them at two random places.
        let mut cuts = [
            self.rng.index(bytes.len() + 1),
            self.rng.index(bytes.len() + 1),
        ];
        cuts.sort_unstable();
        let mut decoder = Decoder::new(self.cfg.limits.max_line);
        let mut messages = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            if let Err(e) = decoder.feed(&bytes[start..cut], &mut messages) {
                self.trace
                    .violation(self.now, format!("node {i} could not decode {text:?}: {e}"));
            }
            start = cut;
        }
        decoder.finish(&mut messages);
        let src = conn.src;
        let src_addr = self.nodes[src].addr;
        self.trace.delivered(i, src, &text, &messages, self.now);
        for msg in messages {
            let body = std::mem::discriminant(&msg.body);
            self.nodes[i].node.on_message(src_addr.ip(), msg, now, out);
            if body == std::mem::discriminant(&Body::Connect) {
                connects.push(src_addr);
            } else if body == std::mem::discriminant(&Body::Exit) {
                // A static peer stays, as it was at start-up (not active, to be greeted).
                let kept = self.nodes[i]
                    .node
                    .peers()
                    .get(src_addr)
                    .is_some_and(|p| p.status != crate::node::peers::Status::Static);
                self.trace.exit_seen(i, src, self.now, kept);
            }
        }
    }

    /// Applies the effects of an input, transmits, runs due timers, until quiet.
    fn settle(
        &mut self,
        i: usize,
        mut out: Vec<Effect>,
        sender: Option<usize>,
        connects: &[SocketAddr],
    ) {
        let now = self.instant();
        let mut spins = 0;
        loop {
            for effect in out.drain(..) {
                match effect {
                    Effect::Show(event) => self.trace.show(i, self.now, event, sender),
                    Effect::ShowLines { from, lines } => {
                        for line in lines.lines() {
                            let event = crate::node::event::Event::Message {
                                from: from.clone(),
                                text: line.to_owned(),
                            };
                            self.trace.show(i, self.now, event, sender);
                        }
                    }
                    Effect::Check(addr) => self.open(i, addr, None),
                    Effect::Persist(_) => {}
                    Effect::Datagram { to, bytes } => self.datagram(i, to, bytes),
                    Effect::Quitting => self.trace.quitting(i, self.now),
                }
            }
            while let Some(t) = self.nodes[i].node.poll_transmit() {
                if wire::control_word(&t.text) == Some(Body::Connect) {
                    self.check_connect(i, t.dest, connects);
                }
                let sim_node = &self.nodes[i];
                let bytes = sim_node.node.header().encode(sim_node.addr.ip(), &t.text);
                self.open(i, t.dest, Some((t.text, bytes)));
            }
            let node = &mut self.nodes[i].node;
            if node.is_finished() {
                self.nodes[i].state = State::Finished;
                self.nodes[i].armed = None;
                self.trace.finished(i, self.now);
                break;
            }
            if node.poll_timeout().is_none_or(|t| t > now) {
                break;
            }
            if spins == SPIN_LIMIT {
                let msg = format!("node {i} asks for on_timeout again and again (a spin)");
                self.trace.violation(self.now, msg);
                break;
            }
            spins += 1;
            node.on_timeout(now, &mut out);
        }
        self.scratch = out;
        self.rearm(i);
    }

    /// Sends a datagram from node `i`: to every member of its group (itself included, as
    /// with multicast loop) or to the one node at a side-channel address, after the
    /// network's shortest latency; nothing crosses a partition.
    fn datagram(&mut self, i: usize, to: SocketAddr, bytes: Vec<u8>) {
        self.datagrams[i] += 1;
        self.datagram_bytes[i] += bytes.len() as u64;
        let at = self.now + self.cfg.latency.0;
        let from = crate::sim::net::udp_addr(i);
        let targets: Vec<usize> = match self.members.get(&to) {
            Some(members) => members.clone(),
            None => {
                let tally = self.unicast.entry(to).or_default();
                *tally = (
                    tally.0 + 1,
                    tally.1 + bytes.len() as u64,
                    tally.2.max(bytes.len()),
                );
                self.udp.get(&to).copied().into_iter().collect()
            }
        };
        for j in targets {
            if !self.cut(i, j) {
                self.push(at, Ev::Datagram(j, from, bytes.clone()));
            }
        }
    }

    /// `connect` goes out only to greet a static peer (at start-up, once more when it
    /// answers after the greeting could not reach it, and once when it is back after being
    /// unreachable or after its `exit`), and never answers a `connect`.
    fn check_connect(&mut self, i: usize, dest: SocketAddr, connects: &[SocketAddr]) {
        if connects.contains(&dest) {
            let msg = format!("node {i} answered connect from {dest} with connect");
            self.trace.violation(self.now, msg);
        }
        if self.cfg.greetings_only
            && !(self.nodes[i].static_peers.contains(&dest) && self.trace.may_greet(i, dest))
        {
            let msg = format!("node {i} sent connect to {dest}, not a first greeting");
            self.trace.violation(self.now, msg);
        }
    }

    /// Queues a `Timeout` entry for node `i`'s `poll_timeout`, when it changed.
    fn rearm(&mut self, i: usize) {
        let sim_node = &mut self.nodes[i];
        if sim_node.state == State::Finished {
            return;
        }
        let next = sim_node.node.poll_timeout();
        if next == sim_node.armed {
            return;
        }
        sim_node.armed = next;
        if let Some(at) = next {
            let offset = at.saturating_duration_since(self.base);
            self.push(offset, Ev::Timeout(i, at));
        }
    }

    /// Opens a connection from node `i` to `dest`: a message (text and wire bytes) or,
    /// with `None`, a liveness check.
    pub(super) fn open(
        &mut self,
        src: usize,
        dest: SocketAddr,
        message: Option<(String, Vec<u8>)>,
    ) {
        let to = self.index.get(&dest).copied();
        let fault = self.draw_fault(src, to, message.is_none());
        let (lo, hi) = self.cfg.latency;
        let mut latency = self.rng.between(lo, hi);
        if let Some(Fault::Delay(extra)) = fault {
            latency += extra;
        }
        let payload = match message {
            None => Payload::Check,
            Some((text, bytes)) => Payload::Message { text, bytes },
        };
        self.trace.opened(src, dest, to, &payload, fault, self.now);
        let id = self.next_conn;
        self.next_conn += 1;
        let conn = Conn {
            id,
            src,
            dest,
            to,
            started: self.now,
            retries: 0,
            fault,
            payload,
        };
        self.push(self.now + latency, Ev::Connect(Box::new(conn)));
    }
}
