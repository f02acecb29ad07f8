//! LAN discovery and peer exchange: the datagrams peerchats send each other on a UDP side
//! channel, and the rate limits around them. Pure: no clock (every call carries `now`), no
//! socket; the node decides what a datagram means for the peer table, the driver sends.
//!
//! # The datagrams
//!
//! UTF-8 text, at most [`MAX_DATAGRAM`] bytes, words separated by single spaces. The first
//! word is the version tag [`TAG`] (`peerchat1`); a datagram with any other tag, or that
//! does not parse, is dropped without an answer. Words after the ones described are
//! ignored (room for later versions).
//!
//! ```text
//! peerchat1 hello NAME PORT      I am NAME, listening for TCP chat at PORT (sent to the group)
//! peerchat1 bye PORT             the peer listening at PORT on the sender's IP quits
//! peerchat1 query NONCE          which peers do you know? (sent to one peer; may be padded:
//!                                everything after the first line is ignored, and the
//!                                answer is never longer than the query, padding included)
//! peerchat1 peers NONCE          the answer, to the query's source only, with the query's
//! ADDR AGE DIALECT NAME          NONCE; then one line per peer (at most MAX_LISTED):
//! ...                            IP:PORT, seconds since it was last heard, the dialect it
//!                                speaks, its name ("-" unknown)
//! ```
//!
//! A hello names a peer at the datagram's source IP and the port it gives. Nothing in a
//! datagram is answered with a datagram except a query, and a query only to its source,
//! rate-limited per source and in all, and never with more bytes than it carried: the
//! channel cannot be used to amplify traffic towards a spoofed address. A `peers` answer
//! is accepted only from an address we queried within [`ANSWER_TIMEOUT`], once per query,
//! carrying the query's [`Nonce`] (eight hex digits no one else saw), and loopback
//! addresses in it only from a peerchat on this host.
//!
//! Our own queries: a hello's source address is anyone's to forge, and the TCP greeting
//! that must reach the port it names before we ask proves only that something accepts
//! connections there (an sshd would do). So the first query to an address is bare (24
//! bytes, about a hello's size), and the padded one (which allows a full answer) goes only
//! once that address answered with the nonce: a forged hello cannot draw 1200 bytes
//! towards a port of the forger's choosing.

use crate::time::Instant;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::hash::{BuildHasher, RandomState};

use crate::wire::Dialect;

/// The version tag every datagram starts with.
pub const TAG: &str = "peerchat1";

/// Longest datagram sent or accepted, in bytes: fits an IPv6 minimum-MTU packet.
pub const MAX_DATAGRAM: usize = 1200;

/// Most peers listed in one answer.
pub const MAX_LISTED: usize = 32;

/// Peers last heard longer ago than this are neither listed nor taken from an answer.
/// (An announcement refreshes when a peer was last heard, so peerchats on one LAN stay
/// fresh in a quiet lab.)
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// The interval between periodic hellos (after the start-up pair), by default.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(600);

/// The shortest interval `--discover-interval` accepts.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// What discovery needs to know: where announcements go, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The multicast group (or broadcast address) and port.
    pub group: SocketAddr,
    /// Between periodic hellos (and re-asked queries); at least [`MIN_INTERVAL`].
    pub interval: Duration,
}

/// The second hello after start, in case the first one was lost.
pub const ANNOUNCE_REPEAT: Duration = Duration::from_secs(5);

/// Answers one source IP may draw per [`RATE_WINDOW`].
pub const ANSWERS_PER_SOURCE: u32 = 2;

/// Answers in all per [`RATE_WINDOW`].
pub const ANSWERS_PER_WINDOW: u32 = 60;

/// Queries we send per [`RATE_WINDOW`]; more wait their turn (at most [`MAX_PENDING`]).
pub const QUERIES_PER_WINDOW: u32 = 6;

/// Peers learned by discovery or exchange (and greeted) per [`RATE_WINDOW`].
pub const NEW_PEERS_PER_WINDOW: u32 = 256;

/// The window the rate limits count in.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// How long an answer to one of our queries is awaited.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Most queries waiting to be sent; more are dropped (the peerchats heard are still asked
/// later, one in turn per interval). On a LAN of many peerchats, this bounds what the
/// first minutes cost: the first few heard are asked, not all.
pub const MAX_PENDING: usize = 8;

/// Most peerchats remembered to be asked again in turn.
pub const MAX_KNOWN: usize = 1024;

/// Most sources whose answers are counted at once: beyond, a new source is not answered
/// until the window of the counted ones ends (a spoofed flood cannot grow memory).
pub const MAX_SOURCES: usize = 1024;

/// A peer listed in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Where it listens for TCP chat.
    pub addr: SocketAddr,
    /// Since when it was last heard (whole seconds on the wire).
    pub age: Duration,
    /// The dialect it speaks, when known.
    pub dialect: Option<Dialect>,
    /// Its name, when known.
    pub name: Option<String>,
}

/// What a query carries for its answer to echo: unguessable (a keyed hash), so that only
/// the address the query went to can answer it.
pub type Nonce = u32;

/// One datagram of the side channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// A peerchat announces itself.
    Hello {
        /// Its name (one word).
        name: String,
        /// Its TCP listening port.
        port: u16,
    },
    /// A peerchat asks which peers we know; the answer carries `nonce` back (a peerchat
    /// before nonces sent none).
    Query {
        /// To be echoed.
        nonce: Option<Nonce>,
    },
    /// A peerchat leaves.
    Bye {
        /// Its TCP listening port.
        port: u16,
    },
    /// The answer to a query: its nonce, and the peers listed.
    Peers {
        /// The query's, echoed.
        nonce: Option<Nonce>,
        /// The peers.
        list: Vec<Listed>,
    },
}

/// A name as it may go in a datagram: one printable word of at most 64 bytes.
fn word_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name != "-"
        && name.len() <= crate::node::MAX_NAME
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(name)
}

/// Whether `addr` can be a peer's address: judged in the canonical form the table files it
/// under (`[::ffff:0.0.0.0]` is 0.0.0.0, which a TCP connect takes for this host), with a
/// port, not unspecified, multicast or broadcast.
fn is_peer_address(addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

fn port(word: Option<&str>) -> Option<u16> {
    word?.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A nonce as it goes on the wire: exactly eight lowercase hex digits. Any other word
/// there is no nonce (words after the described ones are ignored).
fn nonce(word: Option<&str>) -> Option<Nonce> {
    let word = word?;
    let hex = word.len() == 8 && word.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| Nonce::from_str_radix(word, 16).ok()).flatten()
}

/// `peerchat1 WORD` and the nonce, if any: the first line of a query or an answer.
fn first_line(word: &str, nonce: Option<Nonce>) -> Vec<u8> {
    match nonce {
        Some(n) => format!("{TAG} {word} {n:08x}").into_bytes(),
        None => format!("{TAG} {word}").into_bytes(),
    }
}

impl Datagram {
    /// Reads a datagram; `None` for anything that is not one of ours (never an error to
    /// report: the channel is open to anyone).
    pub fn parse(bytes: &[u8]) -> Option<Datagram> {
        if bytes.len() > MAX_DATAGRAM {
            return None;
        }
        let first = bytes.split(|b| *b == b'\n').next()?;
        let first = std::str::from_utf8(first).ok()?;
        let mut words = first.split(' ');
        if words.next()? != TAG {
            return None;
        }
        match words.next()? {
            "hello" => {
                let name = word_name(words.next()?)?.to_owned();
                let port = port(words.next())?;
                Some(Datagram::Hello { name, port })
            }
            "bye" => Some(Datagram::Bye {
                port: port(words.next())?,
            }),
            "query" => Some(Datagram::Query {
                nonce: nonce(words.next()),
            }),
            "peers" => {
                let nonce = nonce(words.next());
                let text = std::str::from_utf8(bytes).ok()?;
                let listed = text
                    .lines()
                    .skip(1)
                    .filter_map(Self::listed)
                    .take(MAX_LISTED)
                    .collect();
                Some(Datagram::Peers {
                    nonce,
                    list: listed,
                })
            }
            _ => None,
        }
    }

    fn listed(line: &str) -> Option<Listed> {
        let mut words = line.split(' ');
        let addr: SocketAddr = words.next()?.parse().ok()?;
        if !is_peer_address(addr) {
            return None;
        }
        let age = Duration::from_secs(words.next()?.parse::<u32>().ok()?.into());
        let dialect = match words.next()? {
            "-" => None,
            word => Some(Dialect::from_word(word)?),
        };
        let name = match words.next()? {
            "-" => None,
            word => Some(word_name(word)?.to_owned()),
        };
        Some(Listed {
            addr,
            age,
            dialect,
            name,
        })
    }

    /// The datagram's bytes; an answer is cut to [`MAX_LISTED`] peers and
    /// [`MAX_DATAGRAM`] bytes (see [`encode_peers`] for a smaller bound).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Datagram::Hello { name, port } => {
                let name = word_name(name).unwrap_or("-");
                format!("{TAG} hello {name} {port}").into_bytes()
            }
            Datagram::Bye { port } => format!("{TAG} bye {port}").into_bytes(),
            Datagram::Query { nonce } => first_line("query", *nonce),
            Datagram::Peers { nonce, list } => encode_peers(list, MAX_DATAGRAM, *nonce),
        }
    }
}

/// Whether a datagram that arrived on the group's port may be taken: announcements and
/// goodbyes only. Queries go to one peerchat's own port and answers come back to ours, so
/// a query or an answer on the group's port is forged; a query sent to the group would be
/// answered by every peerchat that hears it, each towards its (spoofable) source.
pub fn fits_group(bytes: &[u8]) -> bool {
    matches!(
        Datagram::parse(bytes),
        Some(Datagram::Hello { .. } | Datagram::Bye { .. })
    )
}

/// A query with `nonce` padded to [`MAX_DATAGRAM`]: the answer may then be as long as the
/// bound.
pub fn padded_query(nonce: Nonce) -> Vec<u8> {
    let mut bytes = first_line("query", Some(nonce));
    bytes.push(b'\n');
    bytes.resize(MAX_DATAGRAM, b'.');
    bytes
}

/// An answer carrying `nonce` and listing as many of `list` as fit in `limit` bytes (and
/// [`MAX_LISTED`]). The first line alone is never longer than the query it answers: a
/// query with a nonce is as long as this line.
pub fn encode_peers(list: &[Listed], limit: usize, nonce: Option<Nonce>) -> Vec<u8> {
    let limit = limit.min(MAX_DATAGRAM);
    let mut bytes = first_line("peers", nonce);
    for peer in list.iter().take(MAX_LISTED) {
        let dialect = peer.dialect.map_or("-", Dialect::as_str);
        let name = peer.name.as_deref().and_then(word_name).unwrap_or("-");
        let age = u32::try_from(peer.age.as_secs()).unwrap_or(u32::MAX);
        let line = format!("\n{} {age} {dialect} {name}", peer.addr);
        if bytes.len() + line.len() > limit {
            break;
        }
        bytes.extend_from_slice(line.as_bytes());
    }
    bytes
}

/// What an admitted datagram asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A peerchat at `addr` (the source IP, its TCP port) announced itself.
    Hello {
        /// Its TCP listening address.
        addr: SocketAddr,
        /// Its name.
        name: String,
    },
    /// The peer at `addr` leaves.
    Bye {
        /// Its TCP listening address.
        addr: SocketAddr,
    },
    /// Answer the query: with [`encode_peers`], at most `limit` bytes, to the source.
    Query {
        /// The query's length: the answer's bound.
        limit: usize,
        /// The query's nonce, for the answer to carry.
        nonce: Option<Nonce>,
    },
    /// The answer to one of our queries.
    Peers(Vec<Listed>),
}

/// Counts events in a window; `take` says whether one more fits.
#[derive(Debug, Clone, Copy)]
struct Window {
    since: Instant,
    count: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            since: now,
            count: 0,
        }
    }

    fn take(&mut self, most: u32, now: Instant) -> bool {
        if now.saturating_duration_since(self.since) >= RATE_WINDOW {
            *self = Window::new(now);
        }
        let ok = self.count < most;
        if ok {
            self.count += 1;
        }
        ok
    }

    fn when_free(&self, most: u32) -> Option<Instant> {
        (self.count >= most).then_some(self.since + RATE_WINDOW)
    }
}

/// Counters, for tests and the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the driver.
    pub sent: u64,
    /// Datagrams received that were ours and admitted.
    pub admitted: u64,
    /// Datagrams received and dropped (garbage, rate limits, unasked answers).
    pub dropped: u64,
}

/// One of our queries, awaiting its answer.
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// Answers after this are dropped.
    until: Instant,
    /// What the answer must carry.
    nonce: Nonce,
    /// Whether the query was padded (else bare: the address had not answered us yet).
    padded: bool,
}

/// The side channel's state: when to announce, whom to query, how much to answer.
#[derive(Debug)]
pub struct Discovery {
    group: SocketAddr,
    interval: Duration,
    hello: Vec<u8>,
    next_announce: Option<Instant>,
    answers: Window,
    per_source: HashMap<IpAddr, Window>,
    /// While `per_source` is full of live windows: until when (no scan before).
    sources_full_until: Option<Instant>,
    queries: Window,
    new_peers: Window,
    /// Sources to query, in order; and those asked, awaiting an answer.
    to_query: VecDeque<SocketAddr>,
    asked: HashMap<SocketAddr, Asked>,
    /// The side-channel addresses of peerchats heard (bounded, oldest first), each asked
    /// once when first heard, then one in turn per [`ANNOUNCE_INTERVAL`]; and the next
    /// one's index.
    known: VecDeque<SocketAddr>,
    turn: usize,
    /// Those of `known` that answered a query with its nonce, and have not since let one
    /// go unanswered: they are sent padded queries, anyone else a bare one first.
    verified: HashSet<SocketAddr>,
    /// Those of `known` that ever answered a query with its nonce: peerchats, whatever
    /// queries they left unanswered since (a peerchat answers 2 a minute per source).
    proven: HashSet<SocketAddr>,
    /// The TCP port each of `known` announced (its latest hello): a proven address
    /// vouches for the peerchat at its IP and that port (see
    /// [`Discovery::vouches_for`]).
    ports: HashMap<SocketAddr, u16>,
    /// Those of `known` asked since they were last heard (announced) that have not
    /// answered: skipped in turn until they announce again, so that a forged hello's
    /// source is asked once per forged hello, not in turn for good.
    unanswered: HashSet<SocketAddr>,
    /// Addresses that just answered their bare query, and since when: their padded query
    /// goes at the next [`Discovery::on_timeout`], outside the query rate (each follows
    /// a bare query that was within it) but within a budget of its own, `follow_ups`
    /// (QUERIES_PER_WINDOW): the bare queries of two windows can be answered in one.
    follow_up: Vec<(SocketAddr, Instant)>,
    follow_ups: Window,
    /// The key of the nonces (std's SipHash, keyed at random per process), and a serial
    /// that makes each query's nonce its own.
    keys: RandomState,
    serial: u64,
    stats: Stats,
}

impl Discovery {
    /// Discovery as `plan` says, for a peer called `name` listening at TCP `port`.
    pub fn new(plan: Plan, name: &str, port: u16, now: Instant) -> Self {
        Discovery {
            group: plan.group,
            interval: plan.interval.max(MIN_INTERVAL),
            hello: Datagram::Hello {
                name: name.to_owned(),
                port,
            }
            .encode(),
            next_announce: None,
            answers: Window::new(now),
            per_source: HashMap::new(),
            sources_full_until: None,
            queries: Window::new(now),
            new_peers: Window::new(now),
            to_query: VecDeque::new(),
            asked: HashMap::new(),
            known: VecDeque::new(),
            turn: 0,
            verified: HashSet::new(),
            proven: HashSet::new(),
            ports: HashMap::new(),
            unanswered: HashSet::new(),
            follow_up: Vec::new(),
            follow_ups: Window::new(now),
            keys: RandomState::new(),
            serial: 0,
            stats: Stats::default(),
        }
    }

    /// The counters so far.
    #[cfg(test)]
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Start-up: the first hello, to the group.
    pub fn start(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.next_announce = Some(now + ANNOUNCE_REPEAT);
        self.emit(self.group, self.hello.clone(), out);
    }

    /// Quitting: the goodbye, to the group; nothing is announced afterwards.
    pub fn stop(&mut self, port: u16, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.next_announce = None;
        self.to_query.clear();
        self.follow_up.clear();
        self.emit(self.group, Datagram::Bye { port }.encode(), out);
    }

    fn emit(&mut self, to: SocketAddr, bytes: Vec<u8>, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.stats.sent += 1;
        out.push((to, bytes));
    }

    /// When [`Discovery::on_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let query = match self.to_query.is_empty() {
            true => None,
            false => Some(
                self.queries
                    .when_free(QUERIES_PER_WINDOW)
                    .unwrap_or(self.queries.since),
            ),
        };
        let follow_up = self
            .follow_up
            .iter()
            .map(|(_, since)| *since)
            .min()
            .map(|since| {
                self.follow_ups
                    .when_free(QUERIES_PER_WINDOW)
                    .map_or(since, |free| free.max(since))
            });
        self.next_announce
            .into_iter()
            .chain(query)
            .chain(follow_up)
            .min()
    }

    /// Time passed: the periodic hello, and the queries the rate allows.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        // A query left unanswered: whoever is there gets a bare one next time (and only
        // once heard again: see `unanswered`).
        let verified = &mut self.verified;
        self.asked.retain(|to, asked| {
            let waiting = asked.until > now;
            if !waiting {
                verified.remove(to);
            }
            waiting
        });
        // Follow-ups have a budget of their own (each follows a counted bare query, but
        // that one may have gone in the previous window).
        while !self.follow_up.is_empty() && self.follow_ups.take(QUERIES_PER_WINDOW, now) {
            let (to, _) = self.follow_up.remove(0);
            if !self.asked.contains_key(&to) {
                self.ask(to, now, out);
            }
        }
        if self.next_announce.is_some_and(|at| now >= at) {
            self.next_announce = Some(now + self.interval);
            self.emit(self.group, self.hello.clone(), out);
            // Gossip: one peerchat in turn is asked again, so that peers it learned since
            // (across a boundary multicast does not cross) reach us too.
            // The next one heard since its last query went unanswered.
            for _ in 0..self.known.len() {
                self.turn %= self.known.len();
                let next = self.known[self.turn];
                if self.asked.contains_key(&next) {
                    break;
                }
                self.turn += 1;
                if !self.unanswered.contains(&next) {
                    self.enqueue(next);
                    break;
                }
            }
        }
        // One just asked by a follow-up waits for that answer (a second query would
        // replace the nonce the first answer carries).
        let asked = &self.asked;
        self.to_query.retain(|to| !asked.contains_key(to));
        while !self.to_query.is_empty() && self.queries.take(QUERIES_PER_WINDOW, now) {
            if let Some(to) = self.to_query.pop_front() {
                self.ask(to, now, out);
            }
        }
    }

    /// Sends `to` a query with a nonce of its own: padded when `to` has answered us
    /// before, else bare.
    fn ask(&mut self, to: SocketAddr, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.serial += 1;
        // Truncated: 32 bits of a keyed hash are as unguessable as the nonce needs.
        let nonce = self.keys.hash_one((self.serial, to)) as Nonce;
        let padded = self.verified.contains(&to);
        // Silent until it answers or announces itself again.
        if self.known.contains(&to) {
            self.unanswered.insert(to);
        }
        self.asked.insert(
            to,
            Asked {
                until: now + ANSWER_TIMEOUT,
                nonce,
                padded,
            },
        );
        let query = match padded {
            true => padded_query(nonce),
            false => Datagram::Query { nonce: Some(nonce) }.encode(),
        };
        self.emit(to, query, out);
    }

    /// A peerchat said hello from the side-channel address `from`, naming TCP `port`, and
    /// our greeting reached that port: the first time, it is asked which peers it knows
    /// (sent from [`Discovery::on_timeout`], at the rate allowed), and it joins the ones
    /// asked again in turn.
    pub fn heard_from(&mut self, from: SocketAddr, port: u16) {
        if self.known.contains(&from) {
            self.unanswered.remove(&from);
            self.ports.insert(from, port);
            return;
        }
        if self.known.len() >= MAX_KNOWN {
            if let Some(old) = self.known.pop_front() {
                self.verified.remove(&old);
                self.proven.remove(&old);
                self.ports.remove(&old);
                self.unanswered.remove(&old);
                self.follow_up.retain(|(a, _)| *a != old);
            }
        }
        self.known.push_back(from);
        self.ports.insert(from, port);
        self.enqueue(from);
    }

    /// Whether the TCP listener at `tcp` is a peerchat's by the side channel's word: a
    /// side-channel address at its IP that announced its port answered a query of ours
    /// with the nonce (only a peerchat does; a forged hello's source never answers). A
    /// peerchat that cannot keep us (its table full) does not answer our `connect`, but
    /// does answer queries.
    pub fn vouches_for(&self, tcp: SocketAddr) -> bool {
        let ip = tcp.ip().to_canonical();
        self.proven
            .iter()
            .any(|side| side.ip().to_canonical() == ip && self.ports.get(side) == Some(&tcp.port()))
    }

    /// A peerchat said bye from `from`: no longer asked.
    pub fn gone(&mut self, from: SocketAddr) {
        self.known.retain(|a| *a != from);
        self.to_query.retain(|a| *a != from);
        self.verified.remove(&from);
        self.proven.remove(&from);
        self.ports.remove(&from);
        self.unanswered.remove(&from);
        self.follow_up.retain(|(a, _)| *a != from);
    }

    fn enqueue(&mut self, to: SocketAddr) {
        if self.to_query.len() < MAX_PENDING
            && !self.to_query.contains(&to)
            && !self.asked.contains_key(&to)
        {
            self.to_query.push_back(to);
        }
    }

    /// Whether one more peer may be learned (and greeted) from the side channel now.
    pub fn admit_new_peer(&mut self, now: Instant) -> bool {
        self.new_peers.take(NEW_PEERS_PER_WINDOW, now)
    }

    /// A datagram from `from`: what it asks of the node, if it is ours and admitted.
    pub fn on_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> Option<Heard> {
        let heard = self.admit(from, bytes, now);
        match heard {
            Some(_) => self.stats.admitted += 1,
            None => self.stats.dropped += 1,
        }
        heard
    }

    fn admit(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> Option<Heard> {
        if !is_peer_address(from) {
            return None;
        }
        let ip = from.ip().to_canonical();
        match Datagram::parse(bytes)? {
            Datagram::Hello { name, port } => Some(Heard::Hello {
                addr: SocketAddr::new(ip, port),
                name,
            }),
            Datagram::Bye { port } => Some(Heard::Bye {
                addr: SocketAddr::new(ip, port),
            }),
            // One of our own queries coming back (a UDP echo at the address we asked, or
            // anything else that reflects): answering it would hand the reflector our
            // answer with the nonce it needs to pass for a peerchat.
            Datagram::Query { nonce: Some(n) } if self.asked.values().any(|a| a.nonce == n) => None,
            Datagram::Query { nonce } => self.may_answer(ip, now).then_some(Heard::Query {
                limit: bytes.len(),
                nonce,
            }),
            Datagram::Peers { nonce, mut list } => {
                // Without our nonce, forged (or from a peerchat that sends none): the query
                // stays open for the real answer.
                let asked = *self.asked.get(&from).filter(|a| nonce == Some(a.nonce))?;
                self.asked.remove(&from);
                if now > asked.until {
                    return None;
                }
                // A loopback address names a peer on the answerer's own host: from another
                // host it would be one of ours (a local service greeted on its say-so).
                if !ip.is_loopback() {
                    list.retain(|p| !p.addr.ip().to_canonical().is_loopback());
                }
                self.unanswered.remove(&from);
                if self.known.contains(&from) {
                    self.proven.insert(from);
                }
                // It answered a bare query: a peerchat listens there, now asked in full.
                if !asked.padded && self.known.contains(&from) && self.verified.insert(from) {
                    self.follow_up.push((from, now));
                }
                Some(Heard::Peers(list))
            }
        }
    }

    /// Whether `ip` may have an answer now (per source, then in all).
    fn may_answer(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.per_source.contains_key(&ip) && self.per_source.len() >= MAX_SOURCES {
            // Scanning costs: at most once until the oldest counted window ends.
            if self.sources_full_until.is_some_and(|until| now < until) {
                return false;
            }
            self.per_source
                .retain(|_, w| now.saturating_duration_since(w.since) < RATE_WINDOW);
            if self.per_source.len() >= MAX_SOURCES {
                let oldest = self.per_source.values().map(|w| w.since).min();
                self.sources_full_until = oldest.map(|t| t + RATE_WINDOW);
                return false;
            }
        }
        let source = self.per_source.entry(ip).or_insert(Window::new(now));
        if !source.take(ANSWERS_PER_SOURCE, now) {
            return false;
        }
        self.answers.take(ANSWERS_PER_WINDOW, now)
    }

    /// Sends the answer to a query admitted by [`Discovery::on_datagram`].
    pub fn answer(
        &mut self,
        to: SocketAddr,
        list: &[Listed],
        limit: usize,
        nonce: Option<Nonce>,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        self.emit(to, encode_peers(list, limit, nonce), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    const GROUP: &str = "239.255.77.77:5077";

    fn disc(now: Instant) -> Discovery {
        let plan = Plan {
            group: addr(GROUP),
            interval: ANNOUNCE_INTERVAL,
        };
        Discovery::new(plan, "alice", 5000, now)
    }

    /// The nonce of a query we sent.
    fn nonce_of(query: &[u8]) -> Nonce {
        match Datagram::parse(query) {
            Some(Datagram::Query { nonce: Some(n) }) => n,
            other => panic!("not a query with a nonce: {other:?}"),
        }
    }

    /// The answer to a query we sent, listing `list` (as much as a full datagram holds).
    fn answer_to(query: &[u8], list: &[Listed]) -> Vec<u8> {
        encode_peers(list, MAX_DATAGRAM, Some(nonce_of(query)))
    }

    /// Discovery at `t` that heard a peerchat from `side` (TCP port 6000) and sent what
    /// its first timeout sends (the query to `side`).
    fn heard_and_asked(side: SocketAddr, t: Instant) -> (Discovery, Vec<(SocketAddr, Vec<u8>)>) {
        let mut d = disc(t);
        d.heard_from(side, 6000);
        let mut out = Vec::new();
        d.on_timeout(t, &mut out);
        (d, out)
    }

    /// The queries in `out` (announcements left out), each to whom, bare or padded.
    fn queries(out: &[(SocketAddr, Vec<u8>)]) -> Vec<(SocketAddr, bool)> {
        out.iter()
            .filter(|(_, b)| matches!(Datagram::parse(b), Some(Datagram::Query { .. })))
            .map(|(to, b)| (*to, b.len() == MAX_DATAGRAM))
            .collect()
    }

    fn listed(i: u32) -> Listed {
        Listed {
            addr: SocketAddr::new(
                IpAddr::V4(std::net::Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8)),
                40000 + i as u16,
            ),
            age: Duration::from_secs(u64::from(i)),
            dialect: Some(Dialect::ALL[i as usize % Dialect::ALL.len()]),
            name: Some(format!("peer-with-a-longish-name-{i}")),
        }
    }

    #[test]
    fn every_datagram_reads_back() {
        let all = [
            Datagram::Hello {
                name: "alice".into(),
                port: 5000,
            },
            Datagram::Query { nonce: None },
            Datagram::Query { nonce: Some(0) },
            Datagram::Query {
                nonce: Some(0xdead_beef),
            },
            Datagram::Bye { port: 5000 },
            Datagram::Peers {
                nonce: None,
                list: vec![],
            },
            Datagram::Peers {
                nonce: Some(7),
                list: (0..5).map(listed).collect(),
            },
            Datagram::Peers {
                nonce: Some(u32::MAX),
                list: vec![Listed {
                    addr: addr("[::1]:6000"),
                    age: Duration::ZERO,
                    dialect: None,
                    name: None,
                }],
            },
        ];
        for d in all {
            assert_eq!(Datagram::parse(&d.encode()), Some(d.clone()), "{d:?}");
        }
        assert_eq!(
            Datagram::Hello {
                name: "bob".into(),
                port: 7
            }
            .encode(),
            b"peerchat1 hello bob 7"
        );
        assert_eq!(
            Datagram::parse(&padded_query(0x1a2b)),
            Some(Datagram::Query {
                nonce: Some(0x1a2b)
            })
        );
        assert_eq!(padded_query(0).len(), MAX_DATAGRAM);
        // The nonce is eight lowercase hex digits; anything else there is no nonce.
        assert_eq!(
            Datagram::Query { nonce: Some(10) }.encode(),
            b"peerchat1 query 0000000a"
        );
        for (first, nonce) in [
            ("peerchat1 query 0000000a", Some(10)),
            ("peerchat1 query 0000000A", None),
            ("peerchat1 query 000000a", None),
            ("peerchat1 query 00000000a", None),
            ("peerchat1 query +000000a", None),
            ("peerchat1 query", None),
            ("peerchat1 query future", None),
        ] {
            assert_eq!(
                Datagram::parse(first.as_bytes()),
                Some(Datagram::Query { nonce }),
                "{first}"
            );
        }
    }

    #[test]
    fn answers_are_bounded_in_bytes_and_peers() {
        let many: Vec<Listed> = (0..500).map(listed).collect();
        let full = encode_peers(&many, MAX_DATAGRAM, Some(1));
        assert!(full.len() <= MAX_DATAGRAM);
        let Some(Datagram::Peers { list: got, .. }) = Datagram::parse(&full) else {
            panic!("answer does not parse")
        };
        assert!(!got.is_empty() && got.len() <= MAX_LISTED);
        assert_eq!(got[..], many[..got.len()]);
        // Short names: the peer bound, not the byte bound, stops it.
        let short: Vec<Listed> = (0..500)
            .map(|i| Listed {
                name: None,
                dialect: None,
                ..listed(i)
            })
            .collect();
        let Some(Datagram::Peers { list: got, .. }) =
            Datagram::parse(&encode_peers(&short, MAX_DATAGRAM, None))
        else {
            panic!("answer does not parse")
        };
        assert_eq!(got.len(), MAX_LISTED);
        // A query of 20 bytes gets at most 20 bytes back; a huge limit is still capped.
        for limit in [0, 15, 20, 100, 5000] {
            let answer = encode_peers(&many, limit, None);
            assert!(answer.len() <= limit.clamp(15, MAX_DATAGRAM), "{limit}");
        }
        // With a nonce, the first line is as long as the query's, never longer.
        let query = Datagram::Query { nonce: Some(3) }.encode();
        let answer = encode_peers(&many, query.len(), Some(3));
        assert_eq!(answer.len(), query.len());
    }

    #[test]
    fn garbage_and_near_misses_are_dropped() {
        let long_name = format!("peerchat1 hello {} 5000", "x".repeat(65));
        let oversized = {
            let mut q = Datagram::Query { nonce: None }.encode();
            q.resize(MAX_DATAGRAM + 1, b' ');
            q
        };
        let bad: Vec<&[u8]> = vec![
            b"",
            b"\n",
            b"peerchat1",
            b"peerchat2 hello bob 5000",
            b"PEERCHAT1 hello bob 5000",
            b"peerchat1 hello bob",
            b"peerchat1 hello bob 0",
            b"peerchat1 hello bob 65536",
            b"peerchat1 hello bob -1",
            b"peerchat1 hello - 5000",
            b"peerchat1 hello  5000",
            b"peerchat1  hello bob 5000",
            b"peerchat1 hello bob\t5000",
            b"peerchat1 bye",
            b"peerchat1 bye x",
            b"peerchat1 shout",
            b"\xff\xfe peerchat1 hello",
            b"peerchat1 hello b\xffb 5000",
            long_name.as_bytes(),
            &oversized,
        ];
        for b in bad {
            assert_eq!(Datagram::parse(b), None, "{:?}", String::from_utf8_lossy(b));
        }
        // Later words are ignored; a bad line in an answer is skipped, not the answer.
        assert_eq!(
            Datagram::parse(b"peerchat1 hello bob 5000 future words"),
            Some(Datagram::Hello {
                name: "bob".into(),
                port: 5000
            })
        );
        let answer = b"peerchat1 peers\nnot-an-addr 1 - -\n127.0.0.1:0 1 - -\n224.0.0.1:5 1 - -\n127.0.0.3:5 x - -\n127.0.0.3:5 1 klingon -\n127.0.0.4:5 1 json bob\n";
        assert_eq!(
            Datagram::parse(answer),
            Some(Datagram::Peers {
                nonce: None,
                list: vec![Listed {
                    addr: addr("127.0.0.4:5"),
                    age: Duration::from_secs(1),
                    dialect: Some(Dialect::Json),
                    name: Some("bob".into())
                }]
            })
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let words: [&[u8]; 8] = [
            b"peerchat1 ",
            b"hello ",
            b"peers\n",
            b"query",
            b"127.0.0.1:5 ",
            b"\n",
            b"\xff",
            b"9 ",
        ];
        let mut d = disc(Instant::now());
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(next() % 12) {
                match next() % 3 {
                    0 => bytes.push(next() as u8),
                    _ => bytes.extend_from_slice(words[(next() % 8) as usize]),
                }
            }
            let _ = Datagram::parse(&bytes);
            let _ = d.on_datagram(addr("127.0.0.9:5077"), &bytes, Instant::now());
        }
    }

    #[test]
    fn only_announcements_and_goodbyes_are_taken_from_the_group() {
        assert!(fits_group(b"peerchat1 hello bob 6000"));
        assert!(fits_group(b"peerchat1 bye 6000"));
        assert!(!fits_group(&Datagram::Query { nonce: None }.encode()));
        assert!(!fits_group(&padded_query(1)));
        assert!(!fits_group(&encode_peers(
            &[listed(1)],
            MAX_DATAGRAM,
            Some(1)
        )));
        assert!(!fits_group(b"garbage"));
    }

    #[test]
    fn announces_at_start_again_soon_then_every_interval() {
        let t0 = Instant::now();
        let mut d = disc(t0);
        let mut out = Vec::new();
        d.start(t0, &mut out);
        assert_eq!(
            out,
            vec![(addr(GROUP), b"peerchat1 hello alice 5000".to_vec())]
        );
        assert_eq!(d.poll_timeout(), Some(t0 + ANNOUNCE_REPEAT));
        // Waking early sends nothing.
        out.clear();
        d.on_timeout(t0 + Duration::from_secs(1), &mut out);
        assert!(out.is_empty());
        // Over a simulated day, woken every second: 2 + one per interval.
        let mut t = t0;
        while t < t0 + Duration::from_secs(86_400) {
            t += Duration::from_secs(1);
            d.on_timeout(t, &mut out);
        }
        let hours = 24;
        assert_eq!(out.len() as u64, 86_400 / ANNOUNCE_INTERVAL.as_secs());
        assert!(out.len() as u64 <= hours * 3600 / ANNOUNCE_INTERVAL.as_secs() + 1);
        assert_eq!(d.stats().sent, out.len() as u64 + 1);
        out.clear();
        d.stop(5000, &mut out);
        assert_eq!(out, vec![(addr(GROUP), b"peerchat1 bye 5000".to_vec())]);
        assert_eq!(d.poll_timeout(), None, "nothing after bye");
    }

    #[test]
    fn hello_and_bye_name_the_source_ip_never_an_address_in_the_datagram() {
        let t = Instant::now();
        let mut d = disc(t);
        assert_eq!(
            d.on_datagram(addr("127.0.0.7:5077"), b"peerchat1 hello bob 6000", t),
            Some(Heard::Hello {
                addr: addr("127.0.0.7:6000"),
                name: "bob".into()
            })
        );
        assert_eq!(
            d.on_datagram(addr("[::ffff:127.0.0.7]:5077"), b"peerchat1 bye 6000", t),
            Some(Heard::Bye {
                addr: addr("127.0.0.7:6000")
            })
        );
        for spoofed in ["0.0.0.0:5077", "239.255.77.77:5077", "127.0.0.7:0"] {
            let got = d.on_datagram(addr(spoofed), b"peerchat1 hello bob 6000", t);
            assert_eq!(got, None, "{spoofed}");
        }
    }

    #[test]
    fn queries_are_answered_within_their_size_and_rate() {
        let t = Instant::now();
        let mut d = disc(t);
        let src = addr("127.0.0.7:5077");
        // A bare query allows a bare answer: amplification at most 1.
        let q = Datagram::Query { nonce: Some(9) }.encode();
        let Some(Heard::Query { limit, nonce }) = d.on_datagram(src, &q, t) else {
            panic!("query not admitted")
        };
        assert_eq!((limit, nonce), (q.len(), Some(9)));
        let mut out = Vec::new();
        let many: Vec<Listed> = (0..100).map(listed).collect();
        d.answer(src, &many, limit, nonce, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, src, "answered to the source only");
        assert!(out[0].1.len() <= q.len());
        assert_eq!(
            Datagram::parse(&out[0].1),
            Some(Datagram::Peers {
                nonce: Some(9),
                list: vec![]
            }),
            "the nonce goes back"
        );
        // Per source: ANSWERS_PER_SOURCE a minute, whatever its port.
        assert!(d.on_datagram(src, &padded_query(1), t).is_some());
        let other_port = addr("127.0.0.7:9");
        assert_eq!(d.on_datagram(other_port, &padded_query(1), t), None);
        let later = t + RATE_WINDOW;
        assert!(d.on_datagram(src, &padded_query(1), later).is_some());
    }

    #[test]
    fn a_spoofed_query_flood_gets_bounded_answers_and_memory() {
        let t = Instant::now();
        let mut d = disc(t);
        let mut answered = 0u32;
        for i in 0..100_000u32 {
            let ip = std::net::Ipv4Addr::from(0x7f00_0000 | (i + 1));
            let from = SocketAddr::new(IpAddr::V4(ip), 5077);
            let now = t + Duration::from_millis(u64::from(i) / 10);
            if d.on_datagram(from, &padded_query(1), now).is_some() {
                answered += 1;
            }
        }
        // 10 s of flood: one window, so at most ANSWERS_PER_WINDOW answers.
        assert_eq!(answered, ANSWERS_PER_WINDOW);
        assert!(d.per_source.len() <= MAX_SOURCES);
        assert_eq!(d.stats().dropped, 100_000 - u64::from(ANSWERS_PER_WINDOW));
    }

    #[test]
    fn answers_are_taken_only_from_whom_we_asked_once_and_in_time() {
        let t = Instant::now();
        let mut d = disc(t);
        let bob = addr("127.0.0.7:5077");
        // Unasked: dropped.
        let unasked = encode_peers(&[listed(1)], MAX_DATAGRAM, None);
        assert_eq!(d.on_datagram(bob, &unasked, t), None);
        d.heard_from(bob, 6000);
        d.heard_from(bob, 6000);
        let mut out = Vec::new();
        d.on_timeout(t, &mut out);
        assert_eq!(queries(&out), vec![(bob, false)], "queued once, bare");
        let answer = answer_to(&out[0].1, &[listed(1)]);
        // From someone else: dropped.
        assert_eq!(d.on_datagram(addr("127.0.0.8:5077"), &answer, t), None);
        // From bob without the nonce, or with another: dropped, and the query stays open.
        for forged in [None, Some(nonce_of(&out[0].1) ^ 1)] {
            let forged = encode_peers(&[listed(2)], MAX_DATAGRAM, forged);
            assert_eq!(d.on_datagram(bob, &forged, t), None);
        }
        assert_eq!(
            d.on_datagram(bob, &answer, t),
            Some(Heard::Peers(vec![listed(1)]))
        );
        assert_eq!(d.on_datagram(bob, &answer, t), None, "one answer per query");
        // Too late: dropped. (Bob answered: his padded query follows, the only one open.)
        let t2 = t + Duration::from_secs(1);
        out.clear();
        d.on_timeout(t2, &mut out);
        assert_eq!(queries(&out), vec![(bob, true)]);
        let late = answer_to(&out[0].1, &[listed(1)]);
        assert_eq!(d.on_datagram(bob, &late, t2 + ANSWER_TIMEOUT * 2), None);
    }

    #[test]
    fn a_bare_query_first_and_the_padded_one_once_it_is_answered() {
        let (t, bob) = (Instant::now(), addr("198.18.200.7:40000"));
        let (mut d, mut out) = heard_and_asked(bob, t);
        assert_eq!(queries(&out), vec![(bob, false)]);
        assert_eq!(out[0].1.len(), "peerchat1 query 01234567".len());
        // Bob answers with the nonce: a peerchat; its padded query is due at once, and
        // outside the rate (the bare one was within it).
        let answer = answer_to(&out[0].1, &[]);
        assert_eq!(answer.len(), out[0].1.len(), "a bare answer");
        assert_eq!(d.on_datagram(bob, &answer, t), Some(Heard::Peers(vec![])));
        for i in 0..20u8 {
            d.heard_from(addr(&format!("198.18.200.{}:9", 20 + i)), 6000);
        }
        assert_eq!(d.poll_timeout(), Some(t));
        out.clear();
        d.on_timeout(t, &mut out);
        let sent = queries(&out);
        assert_eq!(sent[0], (bob, true), "padded, first");
        assert_eq!(sent.len(), QUERIES_PER_WINDOW as usize, "1 + the 5 left");
        assert!(sent[1..].iter().all(|&(_, padded)| !padded));
        // A query bob leaves unanswered makes it a stranger again: bare next time.
        let later = t + ANSWER_TIMEOUT + Duration::from_secs(1);
        d.on_timeout(later, &mut Vec::new());
        d.enqueue(bob);
        out.clear();
        d.on_timeout(t + RATE_WINDOW, &mut out);
        assert!(queries(&out).contains(&(bob, false)));
        // It answers again: verified again. An address that goes away (bye) is forgotten,
        // verified or not.
        let bare = &out.iter().find(|(to, _)| *to == bob).expect("asked").1;
        let again = t + RATE_WINDOW;
        assert!(d.on_datagram(bob, &answer_to(bare, &[]), again).is_some());
        assert!(d.verified.contains(&bob) && d.vouches_for(addr("198.18.200.7:6000")));
        d.gone(bob);
        assert!(!d.verified.contains(&bob) && !d.known.contains(&bob));
        assert!(
            !d.vouches_for(addr("198.18.200.7:6000")),
            "a peerchat gone vouches for none"
        );
    }

    #[test]
    fn an_answer_from_another_host_cannot_list_our_loopback() {
        let (t, bob) = (Instant::now(), addr("198.18.200.7:5077"));
        let (mut d, mut out) = heard_and_asked(bob, t);
        let lines = "\n127.0.0.1:6379 1 - -\n[::1]:22 1 - -\n[::ffff:127.0.0.2]:80 1 - -\n198.18.200.8:6000 1 - -";
        let answer = |q: &[u8]| format!("peerchat1 peers {:08x}{lines}", nonce_of(q));
        let Some(Heard::Peers(got)) = d.on_datagram(bob, answer(&out[0].1).as_bytes(), t) else {
            panic!("answer dropped")
        };
        let got: Vec<SocketAddr> = got.iter().map(|p| p.addr).collect();
        assert_eq!(got, vec![addr("198.18.200.8:6000")]);
        // From a peerchat on this host, its loopback is ours too: taken.
        let local = addr("127.0.0.7:5077");
        d.heard_from(local, 6000);
        out.clear();
        d.on_timeout(t, &mut out);
        let query = &out.iter().find(|(to, _)| *to == local).expect("asked").1;
        let Some(Heard::Peers(got)) = d.on_datagram(local, answer(query).as_bytes(), t) else {
            panic!("answer dropped")
        };
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn queries_go_out_at_the_documented_rate_and_the_queue_is_bounded() {
        let t = Instant::now();
        let mut d = disc(t);
        for i in 0..1000u32 {
            d.heard_from(
                SocketAddr::new(
                    IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 | (i + 1))),
                    5077,
                ),
                6000,
            );
        }
        assert_eq!(d.to_query.len(), MAX_PENDING);
        assert!(MAX_PENDING > QUERIES_PER_WINDOW as usize);
        let mut out = Vec::new();
        d.on_timeout(t, &mut out);
        assert_eq!(out.len(), QUERIES_PER_WINDOW as usize);
        assert_eq!(d.poll_timeout(), Some(t + RATE_WINDOW));
        out.clear();
        d.on_timeout(t + Duration::from_secs(30), &mut out);
        assert!(out.is_empty());
        d.on_timeout(t + RATE_WINDOW, &mut out);
        assert_eq!(out.len(), MAX_PENDING - QUERIES_PER_WINDOW as usize);
        // All 1000 are remembered (up to MAX_KNOWN) and asked later, one per interval.
        assert_eq!(d.known.len(), MAX_KNOWN.min(1000));
    }

    #[test]
    fn peerchats_heard_are_asked_again_one_in_turn_per_interval() {
        let t = Instant::now();
        let mut d = disc(t);
        let mut out = Vec::new();
        d.start(t, &mut out);
        let (bob, carol) = (addr("127.0.0.7:5077"), addr("127.0.0.8:5077"));
        d.heard_from(bob, 6000);
        d.heard_from(carol, 6000);
        d.on_timeout(t, &mut out);
        out.clear();
        // The next `n` timeouts, `announcing` heard after each (they never answer here):
        // who was asked, and when the last one was.
        let mut intervals = |n: usize, announcing: &[SocketAddr]| {
            let (mut asked, mut now) = (Vec::new(), t);
            for _ in 0..n {
                now = d.poll_timeout().expect("announces");
                d.on_timeout(now, &mut out);
                let to = out.drain(..).map(|(to, _)| to);
                asked.extend(to.filter(|to| *to != addr(GROUP)));
                for a in announcing {
                    d.heard_from(*a, 6000);
                }
            }
            (asked, now)
        };
        let (asked, now) = intervals(5, &[bob, carol]);
        // At the repeat (5 s) both were just asked; then one per interval, in turn.
        assert_eq!(asked, vec![bob, carol, bob, carol]);
        assert!(now >= t + ANNOUNCE_INTERVAL * 4);
        // Carol falls silent (no answer, no announcement): her turns go to bob.
        let (asked, _) = intervals(4, &[bob]);
        // (her last announcement earns her one more query, no more).
        let to = |who| asked.iter().filter(|a| **a == who).count();
        assert_eq!((to(bob), to(carol)), (3, 1), "{asked:?}");
        d.gone(bob);
        let now = d.poll_timeout().expect("announces");
        d.on_timeout(now, &mut out);
        assert!(!out.iter().any(|(to, _)| *to == bob));
    }

    /// Answers the queries in `out` to `who` (each with its nonce, nothing listed).
    fn answer_all(d: &mut Discovery, out: &[(SocketAddr, Vec<u8>)], now: Instant) {
        for (to, q) in out {
            if matches!(Datagram::parse(q), Some(Datagram::Query { .. })) {
                assert!(d.on_datagram(*to, &answer_to(q, &[]), now).is_some());
            }
        }
    }

    /// At most 12 queries a minute, and 6 follow-ups: bare queries sent late in one window
    /// and answered early in the next have their padded follow-ups in the next window,
    /// beside that window's own 6, whose answers bring more follow-ups (17 queries, 11
    /// padded, when follow-ups were not counted).
    #[test]
    fn queries_in_one_window_stay_within_12_and_6_padded() {
        let t = Instant::now();
        let mut d = disc(t);
        let ip = |i: u32| SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 | i)), 9);
        let mut out = Vec::new();
        // The window opens at t with one query.
        d.heard_from(ip(1), 6000);
        d.on_timeout(t, &mut out);
        out.clear();
        // 55 s: five more (bare), the window is full; answered 6 s later (within 10 s).
        let t55 = t + Duration::from_secs(55);
        for i in 2..7 {
            d.heard_from(ip(i), 6000);
        }
        d.on_timeout(t55, &mut out);
        let late = std::mem::take(&mut out);
        assert_eq!(queries(&late).len(), 5);
        // 56 s: six more heard, waiting for the next window.
        for i in 10..16 {
            d.heard_from(ip(i), 6000);
        }
        let t60 = t + RATE_WINDOW;
        let mut window = Vec::new();
        d.on_timeout(t60, &mut out);
        answer_all(&mut d, &out, t60);
        window.append(&mut out);
        d.on_timeout(t60, &mut out);
        window.append(&mut out);
        let t61 = t60 + Duration::from_secs(1);
        answer_all(&mut d, &late, t61);
        d.on_timeout(t61, &mut out);
        window.append(&mut out);
        let sent = queries(&window);
        let padded = sent.iter().filter(|(_, p)| *p).count();
        assert!(
            sent.len() <= 12 && padded <= 6,
            "{} queries, {padded} padded, within one window",
            sent.len()
        );
    }

    /// An address evicted from `known` (MAX_KNOWN) between its answer and the next
    /// on_timeout takes its follow-up with it (left, it went out bare, no longer
    /// verified, and outside the query count).
    #[test]
    fn an_evicted_address_leaves_no_follow_up_behind() {
        let (t, bob) = (Instant::now(), addr("198.18.200.7:40000"));
        let (mut d, out) = heard_and_asked(bob, t);
        assert!(d.on_datagram(bob, &answer_to(&out[0].1, &[]), t).is_some());
        assert_eq!(d.follow_up.len(), 1);
        for i in 0..MAX_KNOWN as u32 {
            d.heard_from(
                SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(0xc613_0000 | i)), 9),
                6000,
            );
        }
        assert!(!d.known.contains(&bob), "evicted");
        assert!(
            d.follow_up.is_empty(),
            "a follow-up left for an evicted address"
        );
    }

    #[test]
    fn new_peers_are_admitted_at_a_bounded_rate() {
        let t = Instant::now();
        let mut d = disc(t);
        let admitted = (0..10_000).filter(|_| d.admit_new_peer(t)).count();
        assert_eq!(admitted, NEW_PEERS_PER_WINDOW as usize);
        assert!(d.admit_new_peer(t + RATE_WINDOW));
    }
}
