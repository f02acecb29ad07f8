//! Outgoing connections: one per message the node hands out, and liveness checks; each
//! reports how it ended back to the node.

use crate::time::Instant;
use std::io;
use std::net::SocketAddr;

use mio::{Interest, Token};

use super::{Connections, Timer};
use crate::driver::connection::{Conn, Outbound, Step};
use crate::driver::net;
use crate::node::{Effect, Node};

impl Connections {
    /// Opens a connection for each message the node hands out, while it hands them out.
    #[inline]
    pub fn transmit(&mut self, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        if node.may_transmit() {
            self.transmit_all(node, now, out);
        }
    }

    /// [`Connections::transmit`] with something to hand out, perhaps.
    fn transmit_all(&mut self, node: &mut Node, now: Instant, out: &mut Vec<Effect>) {
        while let Some(t) = node.poll_transmit() {
            if let Err(e) = self.open(t.dest, (t.text, t.dialect), false, now) {
                node.on_send_failed(t.dest, net::describe(&e), out);
            }
        }
    }

    /// Starts a liveness check of `addr`: a bare connection attempt.
    pub fn check(
        &mut self,
        addr: SocketAddr,
        node: &mut Node,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let nothing = (String::new(), crate::wire::Dialect::Raw);
        if self.open(addr, nothing, true, now).is_err() {
            node.on_check(addr, false, now, out);
        }
    }

    fn open(
        &mut self,
        dest: SocketAddr,
        text: (String, crate::wire::Dialect),
        check: bool,
        now: Instant,
    ) -> io::Result<()> {
        let times = (now, self.limits.send_timeout, self.limits.linger);
        let mut conn = Outbound::open(dest, text, check, self.from, times)?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let interest = Interest::WRITABLE | Interest::READABLE;
        self.registry
            .register(&mut conn.stream, Token(key), interest)?;
        conn.timer = Some(self.timers.insert(conn.deadline(), Timer::Conn { key }));
        entry.insert(Conn::Out(Box::new(conn)));
        Ok(())
    }

    pub(super) fn drive_outbound(
        &mut self,
        key: usize,
        node: &mut Node,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        loop {
            let Some(Conn::Out(conn)) = self.conns.get_mut(key) else {
                return;
            };
            let step = conn.advance(node.header(), &mut self.read_buf, now);
            if !self.finish_step(key, step, node, now, out) {
                return;
            }
        }
    }

    /// Acts on what an outbound connection reported; `true` when it should be advanced
    /// again at once (it was just written: the receiver may have closed already).
    pub(super) fn finish_step(
        &mut self,
        key: usize,
        step: Step,
        node: &mut Node,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(Conn::Out(conn)) = self.conns.get_mut(key) else {
            return false;
        };
        let dest = conn.dest;
        match step {
            Step::Wait => return false,
            Step::Sent => {
                if let Some(old) = conn.timer.take() {
                    self.timers.cancel(old);
                }
                conn.timer = Some(self.timers.insert(conn.deadline(), Timer::Conn { key }));
                return true;
            }
            Step::Closed => {
                // Delivered only now: the next message to this receiver leaves after it
                // closed (or acknowledged, or the linger ended), never beside this one.
                let reply = conn.reply();
                self.close(key, out);
                node.on_sent(dest, reply.as_deref(), now, out);
            }
            Step::Answered | Step::NoAnswer => {
                self.close(key, out);
                node.on_check(dest, step == Step::Answered, now, out);
            }
            Step::Failed(reason) => {
                self.close(key, out);
                node.on_send_failed(dest, reason, out);
            }
        }
        false
    }
}
