//! The peer table: every peer we know of, keyed by who it really is.
//!
//! A peer's identity is the IP observed on the socket plus the listening port it claims
//! in its header (docs/PROTOCOL.md, section 4): outgoing connections come from
//! ephemeral ports, and the IP in a header is often wrong. The claimed IP is kept only to
//! be shown. Pure data, no I/O; the node decides when entries change.
//!
//! The table is bounded twice: at most `max_per_ip` peers heard from one IP address (one
//! machine cannot pose as thousands of peers by claiming ports), and at most `max_peers`
//! in all. When it is full, a new peer takes the place of the stalest entry of the address
//! holding the most, or else of the stalest entry not heard from recently; static peers
//! are never evicted. The node learns of evictions with [`PeerTable::take_evicted`].

use std::collections::{BTreeMap, VecDeque};

use crate::time::Instant;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::wire::{self, Dialect};

/// Where we stand with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// We heard from it, or our last message reached it.
    Active,
    /// Configured with `--static-peer`; our greeting has not reached it yet.
    Static,
    /// We sent to it; the message has not reached it yet.
    Contacted,
    /// Our last attempt to reach it failed.
    Unreachable,
    /// Known from an earlier run (`--state`), not heard from since.
    Remembered,
}

impl Status {
    /// The word shown in the query table.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Static => "static",
            Status::Contacted => "contacted",
            Status::Unreachable => "unreachable",
            Status::Remembered => "remembered",
        }
    }
}

/// How a peer first came to be in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// It sent us something.
    Heard,
    /// It was given with `--static-peer`.
    Static,
    /// We sent to it first.
    Sent,
    /// Remembered from an earlier run.
    Remembered,
    /// It announced itself on the LAN (`--discover`).
    Discovered,
    /// Another peerchat listed it when asked which peers it knows (peer exchange).
    Exchanged,
}

impl Source {
    /// The word shown in the query table.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Heard => "heard",
            Source::Static => "static",
            Source::Sent => "sent",
            Source::Remembered => "remembered",
            Source::Discovered => "discovered",
            Source::Exchanged => "exchanged",
        }
    }
}

/// What we know about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The name from its latest header, if it ever sent one.
    pub name: Option<String>,
    /// The IP it claims in headers, when that differs from the observed one.
    pub claimed_ip: Option<IpAddr>,
    /// Where we stand with it.
    pub status: Status,
    /// How it got into the table.
    pub source: Source,
    /// Chat messages received from it.
    pub messages: u64,
    /// When we last heard from it.
    pub last_heard: Option<Instant>,
    /// The dialect of its latest message, which we answer in; `None` until heard.
    pub dialect: Option<Dialect>,
}

impl Peer {
    /// We heard from it (at `addr`) now, in `dialect`: `chats` chat messages (a run of
    /// lines is one per line), or none (a control word).
    fn refresh(
        &mut self,
        addr: SocketAddr,
        name: Option<&str>,
        claimed_ip: Option<IpAddr>,
        (chats, dialect): (u64, Dialect),
        now: Instant,
    ) {
        // Raw text names no dialect: the one we knew stays.
        if dialect != Dialect::Raw {
            self.dialect = Some(dialect);
        }
        if let Some(name) = name {
            if !self
                .name
                .as_deref()
                .is_some_and(|known| wire::same_text(known, name))
            {
                self.name = Some(name.to_owned());
            }
        }
        self.claimed_ip = claimed_ip
            .map(|ip| ip.to_canonical())
            .filter(|ip| *ip != addr.ip());
        self.status = Status::Active;
        self.last_heard = Some(now);
        self.messages = self.messages.saturating_add(chats);
    }

    fn new(source: Source, status: Status) -> Self {
        Peer {
            name: None,
            claimed_ip: None,
            status,
            source,
            messages: 0,
            last_heard: None,
            dialect: None,
        }
    }
}

/// One line of the query output, computed at query time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The peer's identity: observed IP, claimed port.
    pub addr: SocketAddr,
    /// Its name, if known.
    pub name: Option<String>,
    /// Where we stand with it.
    pub status: Status,
    /// How it got into the table.
    pub source: Source,
    /// Chat messages received from it.
    pub messages: u64,
    /// Time since we last heard from it.
    pub last_heard: Option<Duration>,
    /// The IP it claims, when that differs from the observed one.
    pub claimed_ip: Option<IpAddr>,
    /// The dialect we answer it in, when we heard it; `None`: our default (`--format`).
    pub dialect: Option<Dialect>,
}

/// Most peers the table holds: any peer can claim many ports, so the table is bounded.
pub const MAX_PEERS: usize = 65_536;

/// Most peers heard from one IP address, by default.
pub const MAX_PEERS_PER_IP: usize = 16;

/// An entry heard from within this long is not evicted for a newcomer (unless its
/// address holds more entries than any other).
const RECENT: Duration = Duration::from_secs(600);

/// Every known peer, ordered by address so that listings are stable.
#[derive(Debug)]
pub struct PeerTable {
    peers: Entries,
    /// Entries per IP address.
    per_ip: HashMap<IpAddr, u32>,
    max_peers: usize,
    max_per_ip: usize,
    /// Entries evicted to make room, not yet taken by the node.
    evicted: Vec<SocketAddr>,
    /// When looking for an entry to evict last found none: no newcomer looks again for a
    /// second (each look scans the table), unless an entry is removed meanwhile.
    no_room_at: Option<Instant>,
    /// Identities merged into another: a peer heard at the key (its sending address, which
    /// refuses connections) listens at the value (confirmed by a message that reached it).
    /// At most one per entry; dropped with the entry they point to.
    aliases: HashMap<SocketAddr, SocketAddr>,
    /// Addresses dropped as silent (announced, greeted, never a word back), oldest first,
    /// at most [`MAX_SILENCED`]: not learned again from the side channel, where the next
    /// announcement would bring one back, to be dropped again every interval (the second
    /// address of a peerchat on two networks, whose answers leave from the first).
    silenced: HashSet<SocketAddr>,
    silenced_order: VecDeque<SocketAddr>,
}

/// The table's entries by address, ordered (listings are stable): an ordered index into
/// a vector of entries, which also remembers the entry found last. A conversation brings
/// message after message from one peer, each noted in the table: that peer's entry is then
/// found again with one comparison instead of a search of the index.
#[derive(Debug, Default)]
struct Entries {
    /// Where each address's entry is in `slots`.
    index: BTreeMap<SocketAddr, usize>,
    /// The entries, each with its address, in no order (a removal moves the last one into
    /// the place it frees).
    slots: Vec<(SocketAddr, Peer)>,
    /// The address last looked up for a change, and where its entry is.
    last: Option<(SocketAddr, usize)>,
}

/// Addresses dropped as silent remembered at most (the oldest forgotten first).
pub const MAX_SILENCED: usize = 1024;

/// Entries' room kept however few there are (a small table never reallocates).
const MIN_SLOTS: usize = 64;

impl Entries {
    /// How many entries there are.
    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are none.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Where the entry for `addr` is, if there is one: the entry found last without a
    /// search.
    #[inline]
    fn slot(&self, addr: &SocketAddr) -> Option<usize> {
        match self.last {
            Some((last, slot)) if last == *addr => Some(slot),
            _ => self.index.get(addr).copied(),
        }
    }

    /// Whether `addr` has an entry.
    fn contains_key(&self, addr: &SocketAddr) -> bool {
        self.slot(addr).is_some()
    }

    /// The entry for `addr`.
    fn get(&self, addr: &SocketAddr) -> Option<&Peer> {
        let slot = self.slot(addr)?;
        self.slots.get(slot).map(|(_, peer)| peer)
    }

    /// The entry for `addr`, to change; remembered as the one found last.
    #[inline]
    fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Peer> {
        let slot = match self.last {
            Some((last, slot)) if last == *addr => slot,
            _ => {
                let slot = *self.index.get(addr)?;
                self.last = Some((*addr, slot));
                slot
            }
        };
        self.slots.get_mut(slot).map(|(_, peer)| peer)
    }

    /// Files `peer` at `addr`, in place of the entry there if any.
    fn insert(&mut self, addr: SocketAddr, peer: Peer) {
        match self.slot(&addr).and_then(|slot| self.slots.get_mut(slot)) {
            Some(entry) => entry.1 = peer,
            None => {
                self.index.insert(addr, self.slots.len());
                self.slots.push((addr, peer));
            }
        }
    }

    /// Removes the entry for `addr`, returning it.
    fn remove(&mut self, addr: &SocketAddr) -> Option<Peer> {
        let slot = self.index.remove(addr)?;
        self.last = None;
        if slot >= self.slots.len() {
            return None; // never: every index points to an entry
        }
        let (_, peer) = self.slots.swap_remove(slot);
        // The last entry, moved into the place freed: its index follows it.
        if let Some((moved, _)) = self.slots.get(slot) {
            if let Some(at) = self.index.get_mut(moved) {
                *at = slot;
            }
        }
        // A table that filled up and emptied again gives the memory back, as the ordered
        // map alone did (a full table's entries are megabytes); halved when a quarter is
        // used, so that entries coming and going about one size never reallocate.
        if self.slots.capacity() > MIN_SLOTS && self.slots.len() <= self.slots.capacity() / 4 {
            self.slots.shrink_to(MIN_SLOTS.max(self.slots.len() * 2));
        }
        Some(peer)
    }

    /// Every entry, in address order.
    fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Peer)> {
        self.in_order(self.index.iter())
    }

    /// The entries whose addresses are in `range`, in address order.
    fn range(
        &self,
        range: std::ops::RangeInclusive<SocketAddr>,
    ) -> impl Iterator<Item = (&SocketAddr, &Peer)> {
        self.in_order(self.index.range(range))
    }

    /// The entries `index` goes through, as `(address, entry)`.
    fn in_order<'a>(
        &'a self,
        index: impl Iterator<Item = (&'a SocketAddr, &'a usize)>,
    ) -> impl Iterator<Item = (&'a SocketAddr, &'a Peer)> {
        index.filter_map(|(addr, slot)| self.slots.get(*slot).map(|(_, peer)| (addr, peer)))
    }
}

impl Default for PeerTable {
    fn default() -> Self {
        Self::with_limits(MAX_PEERS, MAX_PEERS_PER_IP)
    }
}

/// Puts an address in the one form used as a key (an IPv4-mapped IPv6 address becomes IPv4).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl PeerTable {
    /// An empty table with the default bounds.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table of at most `max_peers` peers, and at most `max_per_ip` heard from
    /// one IP address.
    pub fn with_limits(max_peers: usize, max_per_ip: usize) -> Self {
        PeerTable {
            peers: Entries::default(),
            per_ip: HashMap::new(),
            max_peers: max_peers.max(1),
            max_per_ip: max_per_ip.max(1),
            evicted: Vec::new(),
            no_room_at: None,
            aliases: HashMap::new(),
            silenced: HashSet::new(),
            silenced_order: VecDeque::new(),
        }
    }

    /// Whether the table holds `max_peers` entries.
    #[cfg(test)]
    pub fn is_full(&self) -> bool {
        self.peers.len() >= self.max_peers
    }

    /// Whether entries were evicted since the last [`PeerTable::take_evicted`]: a check
    /// without moving the (usually empty) list, for every message.
    pub fn has_evicted(&self) -> bool {
        !self.evicted.is_empty()
    }

    /// The entries evicted to make room since the last call.
    pub fn take_evicted(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.evicted)
    }

    /// Adds an entry for `addr` (known not to be in the table), making room if the table is
    /// full; `false` when there is no room.
    fn insert(&mut self, addr: SocketAddr, peer: Peer, now: Instant) -> bool {
        if self.peers.len() >= self.max_peers {
            let looked = self
                .no_room_at
                .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1));
            if looked {
                return false;
            }
            if !self.evict(now) {
                self.no_room_at = Some(now);
                return false;
            }
        }
        *self.per_ip.entry(addr.ip()).or_default() += 1;
        self.peers.insert(addr, peer);
        true
    }

    fn forget(&mut self, addr: SocketAddr) -> Option<Peer> {
        let peer = self.peers.remove(&addr)?;
        self.no_room_at = None;
        if !self.aliases.is_empty() {
            self.aliases.retain(|_, into| *into != addr);
        }
        if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&addr.ip());
            }
        }
        Some(peer)
    }

    /// Makes room for one entry: the stalest evictable entry of the address holding the
    /// most (when it holds more than one; of two holding as many, the lower address), or
    /// else the stalest evictable entry not heard from for [`RECENT`]. Static peers are
    /// never evicted. The choice never depends on the order of a hash map (which differs
    /// run by run): the same messages evict the same peers.
    fn evict(&mut self, now: Instant) -> bool {
        let stalest = |entries: &mut dyn Iterator<Item = (&SocketAddr, &Peer)>| {
            entries
                .filter(|(_, p)| p.source != Source::Static)
                .min_by_key(|(_, p)| p.last_heard)
                .map(|(addr, p)| (*addr, p.last_heard))
        };
        let crowded = self
            .per_ip
            .iter()
            .max_by_key(|(ip, n)| (**n, std::cmp::Reverse(**ip)))
            .filter(|(_, n)| **n > 1)
            .map(|(ip, _)| *ip);
        let victim = crowded
            .and_then(|ip| {
                let range = SocketAddr::new(ip, 0)..=SocketAddr::new(ip, u16::MAX);
                stalest(&mut self.peers.range(range)).map(|(addr, _)| addr)
            })
            .or_else(|| {
                stalest(&mut self.peers.iter())
                    .filter(|(_, heard)| {
                        heard.is_none_or(|t| now.saturating_duration_since(t) >= RECENT)
                    })
                    .map(|(addr, _)| addr)
            });
        match victim {
            Some(addr) => {
                self.forget(addr);
                self.evicted.push(addr);
                true
            }
            None => false,
        }
    }

    /// Records that `addr` spoke to us now; returns true when it was not known before.
    #[cfg(test)]
    pub fn heard(
        &mut self,
        addr: SocketAddr,
        name: Option<&str>,
        claimed_ip: Option<IpAddr>,
        chat: bool,
        now: Instant,
    ) -> bool {
        let chats = u64::from(chat);
        self.note(addr, name, claimed_ip, (chats, Dialect::Standard), now) == Some(true)
    }

    /// [`PeerTable::note_canonical`] for an address in any form.
    #[cfg(test)]
    pub fn note(
        &mut self,
        addr: SocketAddr,
        name: Option<&str>,
        claimed_ip: Option<IpAddr>,
        chat: (u64, Dialect),
        now: Instant,
    ) -> Option<bool> {
        self.note_canonical(canonical(addr), name, claimed_ip, chat, now)
    }

    /// Records that `addr` spoke to us now: `Some(true)` when it was not known before,
    /// `Some(false)` when it was, `None` when it is not kept (its address already holds
    /// `max_per_ip` peers, or the table is full and nothing can be evicted). `chat` counts
    /// the chat messages (one per line of a run; none for a control word, which only
    /// refreshes the entry) and says in which dialect it spoke. `addr` is in [`canonical`]
    /// form already (the node's is, for each message: its IP was made canonical once, as
    /// it came).
    #[inline]
    pub fn note_canonical(
        &mut self,
        addr: SocketAddr,
        name: Option<&str>,
        claimed_ip: Option<IpAddr>,
        chat: (u64, Dialect),
        now: Instant,
    ) -> Option<bool> {
        debug_assert_eq!(addr, canonical(addr));
        // One lookup for a peer already known, the usual case.
        if let Some(peer) = self.peers.get_mut(&addr) {
            peer.refresh(addr, name, claimed_ip, chat, now);
            return Some(false);
        }
        let from_ip = self.per_ip.get(&addr.ip()).copied().unwrap_or(0);
        if from_ip as usize >= self.max_per_ip
            || !self.insert(addr, Peer::new(Source::Heard, Status::Active), now)
        {
            return None;
        }
        let peer = self.peers.get_mut(&addr)?;
        peer.refresh(addr, name, claimed_ip, chat, now);
        Some(true)
    }

    /// Files a peer learned on the side channel (an announcement, or another peer's list):
    /// `Some(true)` when it is new (not yet active: our greeting has to reach it first),
    /// `Some(false)` when known (left as it is), `None` when the table's bounds leave no
    /// room. The same bounds and eviction as for any peer.
    pub fn learned(
        &mut self,
        addr: SocketAddr,
        name: Option<&str>,
        dialect: Option<Dialect>,
        source: Source,
        now: Instant,
    ) -> Option<bool> {
        let addr = canonical(addr);
        if self.peers.contains_key(&addr) || self.silenced.contains(&addr) {
            return Some(false);
        }
        let from_ip = self.per_ip.get(&addr.ip()).copied().unwrap_or(0);
        let mut peer = Peer::new(source, Status::Contacted);
        peer.name = name.map(str::to_owned);
        peer.dialect = dialect.filter(|d| *d != Dialect::Raw);
        peer.last_heard = Some(now);
        if from_ip as usize >= self.max_per_ip || !self.insert(addr, peer, now) {
            return None;
        }
        Some(true)
    }

    /// `addr` was dropped as silent: not learned from the side channel again (see
    /// `silenced`); a message from it is taken as from anyone.
    pub fn silence(&mut self, addr: SocketAddr) {
        let addr = canonical(addr);
        if !self.silenced.insert(addr) {
            return;
        }
        self.silenced_order.push_back(addr);
        if self.silenced_order.len() > MAX_SILENCED {
            if let Some(old) = self.silenced_order.pop_front() {
                self.silenced.remove(&old);
            }
        }
    }

    /// Whether `addr` was dropped as silent (and is not learned again).
    pub fn is_silenced(&self, addr: SocketAddr) -> bool {
        self.silenced.contains(&canonical(addr))
    }

    /// `addr` announced itself on the side channel: when it was last heard is now (its
    /// status stays: only a message or a check says it answers).
    pub fn seen(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(peer) = self.peers.get_mut(&canonical(addr)) {
            peer.last_heard = Some(now);
        }
    }

    /// Adds a peer configured with `--static-peer` (no effect if already known).
    pub fn add_static(&mut self, addr: SocketAddr, now: Instant) {
        let addr = canonical(addr);
        if !self.peers.contains_key(&addr) {
            self.insert(addr, Peer::new(Source::Static, Status::Static), now);
        }
    }

    /// Notes that we are about to send to `addr`; returns true when it was unknown (and
    /// is now in the table).
    pub fn sending_to(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let addr = canonical(addr);
        !self.peers.contains_key(&addr)
            && self.insert(addr, Peer::new(Source::Sent, Status::Contacted), now)
    }

    /// Brings back a peer remembered from an earlier run (not active until heard from),
    /// with its name and the dialect it is answered in; a name or dialect the table knows
    /// already stays. Only into room that is free: it never evicts anyone.
    pub fn restore(&mut self, addr: SocketAddr, name: Option<String>, dialect: Option<Dialect>) {
        let addr = canonical(addr);
        if !self.peers.contains_key(&addr) {
            if self.peers.len() >= self.max_peers {
                return;
            }
            let peer = Peer::new(Source::Remembered, Status::Remembered);
            *self.per_ip.entry(addr.ip()).or_default() += 1;
            self.peers.insert(addr, peer);
        }
        if let Some(peer) = self.peers.get_mut(&addr) {
            if peer.name.is_none() {
                peer.name = name;
            }
            if peer.dialect.is_none() {
                peer.dialect = dialect.filter(|d| *d != Dialect::Raw);
            }
        }
    }

    /// The identity a peer heard at `addr` is filed under when it was merged into the
    /// address it really listens at; `None` (the usual case, told without a lookup while
    /// there are no aliases) when it is filed at `addr` itself.
    #[inline]
    pub fn alias_of(&self, addr: SocketAddr) -> Option<SocketAddr> {
        if self.aliases.is_empty() {
            return None;
        }
        self.aliases.get(&canonical(addr)).copied()
    }

    /// Where the peer at `refused` (which our message could not reach) may really listen:
    /// the IP it claims, with its port, when a message of ours reached that address. Never
    /// an address nothing confirmed: a claimed IP alone is not sent to.
    pub fn confirmed_elsewhere(&self, refused: SocketAddr) -> Option<SocketAddr> {
        let claimed = self.peers.get(&canonical(refused))?.claimed_ip?;
        let other = SocketAddr::new(claimed, refused.port());
        let peer = self.peers.get(&other)?;
        (peer.status == Status::Active && peer.source != Source::Heard).then_some(other)
    }

    /// The entry that claims `reached` (which a message of ours just reached for the first
    /// time) but whose own address failed: the same listener, heard at its sending address.
    pub fn refused_claiming(&self, reached: SocketAddr) -> Option<SocketAddr> {
        let reached = canonical(reached);
        self.peers
            .iter()
            .find(|(addr, p)| {
                addr.port() == reached.port()
                    && **addr != reached
                    && p.status == Status::Unreachable
                    && p.claimed_ip == Some(reached.ip())
            })
            .map(|(addr, _)| *addr)
    }

    /// Merges the entry at `from` into the one at `into` (its name, its messages, its
    /// dialect, and when it was heard), and files whatever is heard at `from` under `into`
    /// from now on. Returns whether both were known.
    pub fn merge(&mut self, from: SocketAddr, into: SocketAddr) -> bool {
        let (from, into) = (canonical(from), canonical(into));
        if from == into || !self.peers.contains_key(&into) {
            return false;
        }
        let Some(old) = self.forget(from) else {
            return false;
        };
        if let Some(peer) = self.peers.get_mut(&into) {
            peer.name = peer.name.take().or(old.name);
            peer.messages += old.messages;
            peer.dialect = peer.dialect.or(old.dialect);
            peer.last_heard = peer.last_heard.max(old.last_heard);
            peer.status = Status::Active;
            if old.source == Source::Static {
                // The user named that peer: where it really listens is kept as they would
                // have kept it (never removed, greeted again after its `exit`).
                peer.source = Source::Static;
            }
        }
        if self.aliases.len() < self.max_peers {
            self.aliases.insert(from, into);
        }
        true
    }

    /// The peers whose name is exactly `name`, in address order.
    pub fn named_exactly(&self, name: &str) -> Vec<SocketAddr> {
        self.find(|n| n == name)
    }

    /// The peers whose name is `name` in any case, in address order.
    pub fn named_ignoring_case(&self, name: &str) -> Vec<SocketAddr> {
        self.find(|n| n.to_lowercase() == name.to_lowercase())
    }

    fn find(&self, pred: impl Fn(&str) -> bool) -> Vec<SocketAddr> {
        self.peers
            .iter()
            .filter(|(_, p)| p.name.as_deref().is_some_and(&pred))
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// Forgets that `alias` is filed under another address.
    pub fn drop_alias(&mut self, alias: SocketAddr) {
        self.aliases.remove(&canonical(alias));
    }

    /// `addr` told its name in a reply on our connection; whether the name is new.
    pub fn named(&mut self, addr: SocketAddr, name: &str) -> bool {
        match self.peers.get_mut(&canonical(addr)) {
            Some(peer) if peer.name.as_deref() != Some(name) => {
                peer.name = Some(name.to_owned());
                true
            }
            _ => false,
        }
    }

    /// Our message reached `addr`: it is active.
    pub fn delivered(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.get_mut(&canonical(addr)) {
            peer.status = Status::Active;
        }
    }

    /// A liveness check reached `addr`: an unreachable peer is active again. Other
    /// statuses stay (a remembered peer stays remembered until it is heard from).
    pub fn answered(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.get_mut(&canonical(addr)) {
            if peer.status == Status::Unreachable {
                peer.status = Status::Active;
            }
        }
    }

    /// Our message could not reach `addr`.
    pub fn unreachable(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.get_mut(&canonical(addr)) {
            peer.status = Status::Unreachable;
        }
    }

    /// Forgets `addr`, returning what we knew.
    pub fn remove(&mut self, addr: SocketAddr) -> Option<Peer> {
        self.forget(canonical(addr))
    }

    /// A static peer at `addr` said `exit`: its row goes back to what it was at start-up
    /// (not active, to be greeted), its name and dialect kept. False for any other peer.
    pub fn left_static(&mut self, addr: SocketAddr) -> bool {
        match self.peers.get_mut(&canonical(addr)) {
            Some(peer) if peer.source == Source::Static => {
                peer.status = Status::Static;
                true
            }
            _ => false,
        }
    }

    /// The entry for `addr`, if known.
    pub fn get(&self, addr: SocketAddr) -> Option<&Peer> {
        self.peers.get(&canonical(addr))
    }

    /// The addresses of every active peer, in address order.
    pub fn active(&self) -> Vec<SocketAddr> {
        self.peers
            .iter()
            .filter(|(_, p)| p.status == Status::Active)
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// How many peers are known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The query listing, as of `now`.
    pub fn rows(&self, now: Instant) -> Vec<Row> {
        self.peers
            .iter()
            .map(|(addr, p)| Row {
                addr: *addr,
                name: p.name.clone(),
                status: p.status,
                source: p.source,
                messages: p.messages,
                last_heard: p.last_heard.map(|t| now.saturating_duration_since(t)),
                claimed_ip: p.claimed_ip,
                dialect: p.dialect,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entries answer every question as a plain ordered map does, whichever entry was
    /// found last (the one found again without a search): random inserts, removals and
    /// changes over a few addresses, each IP with a few ports, checked after every step
    /// against a `BTreeMap`, in order and by range.
    #[test]
    fn entries_answer_as_an_ordered_map_does() {
        let mut rng = crate::sim::rng::Rng::new(61);
        let at = |rng: &mut crate::sim::rng::Rng| {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, 1 + rng.index(4) as u8);
            SocketAddr::from((ip, 1 + rng.index(3) as u16))
        };
        let (mut entries, mut model) = (Entries::default(), BTreeMap::new());
        for step in 0..5_000_u64 {
            let addr = at(&mut rng);
            match rng.index(4) {
                0 => {
                    let mut peer = Peer::new(Source::Heard, Status::Active);
                    peer.messages = step;
                    entries.insert(addr, peer.clone());
                    model.insert(addr, peer);
                }
                1 => assert_eq!(entries.remove(&addr), model.remove(&addr), "{step}"),
                _ => {
                    let (got, want) = (entries.get_mut(&addr), model.get_mut(&addr));
                    assert_eq!(got.is_some(), want.is_some(), "{step}");
                    if let (Some(got), Some(want)) = (got, want) {
                        got.messages += 1000;
                        want.messages += 1000;
                    }
                }
            }
            assert_eq!(entries.len(), model.len(), "{step}");
            assert_eq!(entries.is_empty(), model.is_empty(), "{step}");
            let other = at(&mut rng);
            for addr in [addr, other] {
                assert_eq!(entries.get(&addr), model.get(&addr), "{step}");
                assert_eq!(entries.contains_key(&addr), model.contains_key(&addr));
            }
            assert!(entries.iter().eq(model.iter()), "{step}");
            let ip = other.ip();
            let range = SocketAddr::new(ip, 0)..=SocketAddr::new(ip, u16::MAX);
            assert!(
                entries.range(range.clone()).eq(model.range(range)),
                "{step}"
            );
        }
    }

    /// A table that filled up and emptied again gives back the room of its entries (the
    /// ordered map it replaced freed every entry it removed); entries keep answering as
    /// before, wherever they moved.
    #[test]
    fn entries_give_their_room_back_once_few_are_left() {
        let at = |i: usize| SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250) as u8 + 2], 1));
        let mut entries = Entries::default();
        let full = 20_000;
        for i in 0..full {
            let mut peer = Peer::new(Source::Heard, Status::Active);
            peer.messages = i as u64;
            entries.insert(at(i), peer);
        }
        assert!(entries.slots.capacity() >= full);
        for i in (0..full).filter(|i| i % 1000 != 0) {
            assert_eq!(entries.remove(&at(i)).map(|p| p.messages), Some(i as u64));
        }
        assert_eq!(entries.len(), full / 1000);
        assert!(
            entries.slots.capacity() <= 4 * MIN_SLOTS,
            "{} slots held for {} entries",
            entries.slots.capacity(),
            entries.len()
        );
        for i in (0..full).step_by(1000) {
            assert_eq!(entries.get(&at(i)).map(|p| p.messages), Some(i as u64));
        }
        assert!(entries
            .iter()
            .map(|(a, _)| *a)
            .eq((0..full).step_by(1000).map(at)));
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn keyed_by_observed_ip_and_claimed_port() {
        let mut table = PeerTable::new();
        let now = Instant::now();
        assert!(table.heard(addr("127.0.0.2:5001"), Some("alice"), None, true, now));
        assert!(!table.heard(addr("127.0.0.2:5001"), Some("alice"), None, true, now));
        assert!(table.heard(addr("127.0.0.2:5002"), Some("bob"), None, true, now));
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.get(addr("127.0.0.2:5001")).map(|p| p.messages),
            Some(2)
        );
    }

    #[test]
    fn mapped_ipv6_is_the_same_peer_as_ipv4() {
        let mut table = PeerTable::new();
        let now = Instant::now();
        table.heard(addr("[::ffff:127.0.0.2]:5001"), None, None, true, now);
        assert!(!table.heard(addr("127.0.0.2:5001"), None, None, true, now));
    }

    #[test]
    fn claimed_ip_is_kept_only_when_it_differs() {
        let mut table = PeerTable::new();
        let now = Instant::now();
        let a = addr("127.0.0.2:5001");
        table.heard(
            a,
            Some("x"),
            Some("127.0.1.1".parse().expect("ip")),
            true,
            now,
        );
        assert_eq!(
            table.get(a).and_then(|p| p.claimed_ip),
            Some("127.0.1.1".parse().expect("ip"))
        );
        table.heard(a, Some("x"), Some(a.ip()), true, now);
        assert_eq!(table.get(a).and_then(|p| p.claimed_ip), None);
    }

    #[test]
    fn static_and_sent_peers_turn_active_when_reached() {
        let mut table = PeerTable::new();
        let s = addr("127.0.0.3:6000");
        let t = addr("127.0.0.4:6000");
        table.add_static(s, Instant::now());
        table.sending_to(t, Instant::now());
        assert!(table.active().is_empty());
        table.delivered(s);
        table.unreachable(t);
        assert_eq!(table.active(), vec![s]);
        let rows = table.rows(Instant::now());
        assert_eq!(rows[0].source, Source::Static);
        assert_eq!(rows[1].status, Status::Unreachable);
    }

    #[test]
    fn a_check_revives_the_unreachable_but_not_the_remembered() {
        let mut table = PeerTable::new();
        let (a, b) = (addr("127.0.0.2:1"), addr("127.0.0.3:1"));
        table.sending_to(a, Instant::now());
        table.unreachable(a);
        table.restore(b, Some("b".into()), None);
        table.answered(a);
        table.answered(b);
        assert_eq!(table.get(a).map(|p| p.status), Some(Status::Active));
        assert_eq!(table.get(b).map(|p| p.status), Some(Status::Remembered));
        table.heard(b, None, None, true, Instant::now());
        assert_eq!(table.get(b).map(|p| p.status), Some(Status::Active));
        assert_eq!(table.get(b).and_then(|p| p.name.clone()), Some("b".into()));
    }

    #[test]
    fn control_words_do_not_count_as_messages() {
        let mut table = PeerTable::new();
        let a = addr("127.0.0.2:5001");
        table.heard(a, Some("a"), None, false, Instant::now());
        assert_eq!(table.get(a).map(|p| p.messages), Some(0));
        assert!(table.remove(a).is_some());
        assert!(table.is_empty());
    }

    #[test]
    fn a_peer_is_keyed_by_observed_ip_and_can_be_marked_and_removed() {
        use crate::time::Instant;

        let mut table = PeerTable::new();
        let bob = "127.0.0.3:5002".parse().expect("test address");
        // bob's header claimed 127.0.1.1; the observed IP is what identifies him.
        let claimed = Some("127.0.1.1".parse().expect("test address"));
        assert!(table.heard(bob, Some("bob"), claimed, true, Instant::now()));
        assert_eq!(table.active(), vec![bob]);
        table.unreachable(bob);
        assert_eq!(table.get(bob).map(|p| p.status), Some(Status::Unreachable));
        assert!(table.remove(bob).is_some());
    }

    #[test]
    fn one_address_cannot_pose_as_more_than_its_share_of_peers() {
        let mut table = PeerTable::with_limits(100, 3);
        let now = Instant::now();
        let ip = [127, 0, 0, 3];
        for port in 1..=3 {
            assert!(table.heard(SocketAddr::from((ip, port)), None, None, false, now));
        }
        assert!(!table.heard(SocketAddr::from((ip, 4)), None, None, false, now));
        assert!(table.get(SocketAddr::from((ip, 4))).is_none());
        assert!(
            table.heard(addr("127.0.0.4:1"), None, None, false, now),
            "another address"
        );
        // Removing one makes room for another from the same address.
        assert!(table.remove(SocketAddr::from((ip, 1))).is_some());
        assert!(table.heard(SocketAddr::from((ip, 4)), None, None, false, now));
        assert!(table.take_evicted().is_empty());
    }

    #[test]
    fn a_full_table_makes_room_from_the_most_crowded_address_never_a_static_peer() {
        let t0 = Instant::now();
        let mut table = PeerTable::with_limits(4, 16);
        let stat = addr("127.0.0.9:1");
        table.add_static(stat, t0);
        // Three entries from one address, heard in turn; the first is the stalest.
        for (port, secs) in [(1, 0), (2, 5), (3, 9)] {
            let at = t0 + Duration::from_secs(secs);
            table.heard(
                SocketAddr::from(([127, 0, 0, 3], port)),
                None,
                None,
                true,
                at,
            );
        }
        let now = t0 + Duration::from_secs(10);
        assert!(
            table.heard(addr("127.0.0.7:1"), None, None, true, now),
            "a newcomer gets in"
        );
        assert_eq!(table.take_evicted(), vec![addr("127.0.0.3:1")]);
        assert!(table.get(stat).is_some(), "static peers stay");
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn with_one_entry_per_address_only_a_stale_entry_makes_room() {
        let t0 = Instant::now();
        let mut table = PeerTable::with_limits(2, 16);
        table.heard(addr("127.0.0.3:1"), None, None, true, t0);
        table.heard(
            addr("127.0.0.4:1"),
            None,
            None,
            true,
            t0 + Duration::from_secs(1),
        );
        let soon = t0 + Duration::from_secs(60);
        assert!(
            !table.heard(addr("127.0.0.5:1"), None, None, true, soon),
            "all recent"
        );
        assert!(table.take_evicted().is_empty());
        let later = t0 + RECENT + Duration::from_secs(1);
        assert!(table.heard(addr("127.0.0.5:1"), None, None, true, later));
        assert_eq!(table.take_evicted(), vec![addr("127.0.0.3:1")]);
        // Restoring never evicts.
        table.restore(addr("127.0.0.6:1"), None, None);
        assert!(table.get(addr("127.0.0.6:1")).is_none());
    }

    /// A table holding exactly [`MAX_PEERS`] peers (127.0.x.y:1 .. ).
    fn full_table(now: Instant) -> PeerTable {
        let mut table = PeerTable::new();
        for i in 0..MAX_PEERS {
            let ip = std::net::Ipv4Addr::from(0x7f00_0000 + i as u32);
            assert!(table.heard(SocketAddr::new(ip.into(), 1), None, None, false, now));
        }
        table
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut table = full_table(now);
        assert_eq!(table.len(), MAX_PEERS);
        assert!(table.is_full());
        let stranger = addr("203.0.113.1:1");
        assert!(!table.heard(stranger, Some("x"), None, true, now));
        assert!(!table.sending_to(stranger, Instant::now()));
        table.restore(stranger, Some("x".into()), None);
        assert_eq!(table.get(stranger), None);
        assert_eq!(table.len(), MAX_PEERS);
        // Known peers are still updated.
        let known = addr("127.0.0.0:1");
        assert!(!table.heard(known, Some("k"), None, true, now));
        assert_eq!(table.get(known).map(|p| p.messages), Some(1));
        assert!(!table.sending_to(known, Instant::now()));
        // Forgetting one makes room for one.
        assert!(table.remove(known).is_some());
        assert!(!table.is_full());
        assert!(table.sending_to(stranger, Instant::now()));
        assert!(table.is_full());
    }

    #[test]
    fn one_below_the_bound_a_peer_still_fits() {
        let now = Instant::now();
        let mut table = full_table(now);
        table.remove(addr("127.0.0.0:1"));
        assert!(table.heard(addr("203.0.113.1:1"), None, None, true, now));
        assert_eq!(table.len(), MAX_PEERS);
    }

    #[test]
    fn a_remembered_name_does_not_replace_a_known_one() {
        let mut table = PeerTable::new();
        let (a, b) = (addr("127.0.0.2:1"), addr("127.0.0.3:1"));
        table.heard(a, Some("alice"), None, true, Instant::now());
        table.restore(a, Some("old".into()), None);
        assert_eq!(
            table.get(a).and_then(|p| p.name.clone()),
            Some("alice".into())
        );
        assert_eq!(table.get(a).map(|p| p.status), Some(Status::Active));
        table.sending_to(b, Instant::now());
        table.restore(b, Some("bob".into()), None);
        assert_eq!(
            table.get(b).and_then(|p| p.name.clone()),
            Some("bob".into())
        );
        assert_eq!(table.get(b).map(|p| p.source), Some(Source::Sent));
    }

    #[test]
    fn a_remembered_dialect_is_restored_but_does_not_replace_a_known_one() {
        let mut table = PeerTable::new();
        let now = Instant::now();
        let (a, b, c) = (
            addr("127.0.0.2:1"),
            addr("127.0.0.3:1"),
            addr("127.0.0.4:1"),
        );
        table.restore(a, Some("ann".into()), Some(Dialect::Bracketed));
        let rows = table.rows(now);
        assert_eq!(
            (rows[0].status, rows[0].dialect),
            (Status::Remembered, Some(Dialect::Bracketed))
        );
        // Heard since: what it speaks now wins.
        table.note(a, None, None, (1, Dialect::Json), now);
        assert_eq!(table.get(a).and_then(|p| p.dialect), Some(Dialect::Json));
        // Known already (heard in this run): the remembered dialect does not replace it.
        table.heard(b, Some("bob"), None, true, now);
        table.restore(b, None, Some(Dialect::Colon));
        assert_eq!(
            table.get(b).and_then(|p| p.dialect),
            Some(Dialect::Standard)
        );
        // Raw names no dialect: never restored as one.
        table.restore(c, None, Some(Dialect::Raw));
        assert_eq!(table.get(c).and_then(|p| p.dialect), None);
    }

    #[test]
    fn a_new_name_replaces_the_old_and_no_name_keeps_it() {
        let mut table = PeerTable::new();
        let a = addr("127.0.0.2:1");
        let now = Instant::now();
        table.heard(a, Some("old"), None, true, now);
        table.heard(a, Some("new"), None, true, now);
        assert_eq!(
            table.get(a).and_then(|p| p.name.clone()),
            Some("new".into())
        );
        table.heard(a, None, None, true, now);
        assert_eq!(
            table.get(a).and_then(|p| p.name.clone()),
            Some("new".into())
        );
    }

    #[test]
    fn a_claimed_mapped_address_equal_to_the_observed_one_is_not_kept() {
        let mut table = PeerTable::new();
        let a = addr("127.0.0.2:1");
        table.heard(
            a,
            None,
            Some("::ffff:127.0.0.2".parse().expect("ip")),
            true,
            Instant::now(),
        );
        assert_eq!(table.get(a).and_then(|p| p.claimed_ip), None);
        table.heard(
            a,
            None,
            Some("::ffff:127.0.0.9".parse().expect("ip")),
            true,
            Instant::now(),
        );
        assert_eq!(
            table.get(a).and_then(|p| p.claimed_ip),
            Some("127.0.0.9".parse().expect("ip"))
        );
    }

    #[test]
    fn mapped_addresses_reach_the_same_entry_everywhere() {
        let mut table = PeerTable::new();
        let (v4, mapped) = (addr("127.0.0.2:1"), addr("[::ffff:127.0.0.2]:1"));
        table.add_static(mapped, Instant::now());
        assert!(!table.sending_to(v4, Instant::now()));
        table.delivered(mapped);
        assert_eq!(table.get(v4).map(|p| p.status), Some(Status::Active));
        table.unreachable(mapped);
        assert_eq!(table.get(v4).map(|p| p.status), Some(Status::Unreachable));
        table.answered(mapped);
        assert_eq!(table.get(mapped).map(|p| p.status), Some(Status::Active));
        table.restore(mapped, Some("m".into()), None);
        assert_eq!(table.len(), 1);
        assert!(table.remove(mapped).is_some());
        assert!(table.is_empty());
    }

    #[test]
    fn static_and_sending_to_leave_known_peers_alone() {
        let mut table = PeerTable::new();
        let a = addr("127.0.0.2:1");
        assert!(table.sending_to(a, Instant::now()));
        assert!(!table.sending_to(a, Instant::now()), "known already");
        table.add_static(a, Instant::now());
        assert_eq!(table.get(a).map(|p| p.source), Some(Source::Sent));
        assert_eq!(table.get(a).map(|p| p.status), Some(Status::Contacted));
    }

    #[test]
    fn rows_show_everything_known_as_of_the_query() {
        let mut table = PeerTable::new();
        let t0 = Instant::now();
        let a = addr("127.0.0.2:1");
        table.heard(
            a,
            Some("ann"),
            Some("203.0.113.11".parse().expect("ip")),
            true,
            t0,
        );
        table.restore(addr("127.0.0.3:1"), None, None);
        let rows = table.rows(t0 + Duration::from_secs(5));
        assert_eq!(
            rows[0],
            Row {
                addr: a,
                name: Some("ann".into()),
                status: Status::Active,
                source: Source::Heard,
                messages: 1,
                last_heard: Some(Duration::from_secs(5)),
                claimed_ip: Some("203.0.113.11".parse().expect("ip")),
                dialect: Some(Dialect::Standard),
            }
        );
        assert_eq!(rows[1].last_heard, None);
        assert_eq!(rows[1].status, Status::Remembered);
        assert_eq!(rows[1].source, Source::Remembered);
    }

    #[test]
    fn statuses_and_sources_are_shown_as_words() {
        let words: Vec<&str> = [
            Status::Active,
            Status::Static,
            Status::Contacted,
            Status::Unreachable,
            Status::Remembered,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(
            words,
            ["active", "static", "contacted", "unreachable", "remembered"]
        );
        let words: Vec<&str> = [
            Source::Heard,
            Source::Static,
            Source::Sent,
            Source::Remembered,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(words, ["heard", "static", "sent", "remembered"]);
    }

    /// A full table whose addresses each hold one recent peer (IPv6 makes that cheap) has
    /// nothing to evict: a newcomer looks for room at most once a second, not once per
    /// message (each look scans the table).
    #[test]
    fn a_full_table_with_nothing_to_evict_is_not_scanned_per_message() {
        let mut table = PeerTable::with_limits(1000, 16);
        let now = Instant::now();
        for i in 0..1000u32 {
            let ip = std::net::Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(i));
            assert!(table.heard(
                SocketAddr::new(ip.into(), 5000),
                Some("x"),
                None,
                false,
                now
            ));
        }
        let newcomer = |i: u32| {
            let ip = std::net::Ipv6Addr::from(0xfd01_u128 << 112 | u128::from(i));
            SocketAddr::new(ip.into(), 5000)
        };
        assert!(
            !table.heard(newcomer(0), None, None, true, now),
            "nothing to evict"
        );
        assert_eq!(table.no_room_at, Some(now), "looked once");
        let soon = now + Duration::from_millis(500);
        assert!(!table.heard(newcomer(1), None, None, true, soon));
        assert_eq!(
            table.no_room_at,
            Some(now),
            "not looked again within a second"
        );
        let later = now + Duration::from_secs(1);
        assert!(!table.heard(newcomer(2), None, None, true, later));
        assert_eq!(
            table.no_room_at,
            Some(later),
            "looked again once a second has passed"
        );
        // A removal makes room at once.
        assert!(table.remove(newcomer(0)).is_none());
        let first = std::net::Ipv6Addr::from(0xfd00_u128 << 112);
        assert!(table.remove(SocketAddr::new(first.into(), 5000)).is_some());
        assert!(table.heard(newcomer(3), None, None, true, later));
    }

    #[test]
    fn an_address_counts_its_entries_however_they_came_and_went() {
        let now = Instant::now();
        let mut table = PeerTable::with_limits(100, 2);
        let at = |port| SocketAddr::from(([127, 0, 0, 3], port));
        // A remembered entry counts against its address.
        table.restore(at(1), None, None);
        assert!(table.heard(at(2), None, None, false, now));
        assert!(!table.heard(at(3), None, None, false, now), "two already");
        // Forgetting one frees exactly one place, however many times it is asked.
        assert!(table.remove(at(1)).is_some());
        assert!(table.remove(at(1)).is_none());
        assert!(table.heard(at(3), None, None, false, now));
        assert!(!table.heard(at(4), None, None, false, now), "two again");
        // Once every entry is gone, the address starts afresh.
        table.remove(at(2));
        table.remove(at(3));
        assert!(table.heard(at(5), None, None, false, now));
        assert!(table.heard(at(6), None, None, false, now));
        assert!(!table.heard(at(7), None, None, false, now));
    }

    /// Two addresses crowded alike: the lower one gives up its stalest entry, in every
    /// table (each hash map iterates in an order of its own).
    #[test]
    fn a_tie_between_crowded_addresses_is_broken_by_address_not_by_hash_order() {
        let now = Instant::now();
        for round in 0..32 {
            let mut table = PeerTable::with_limits(8, 4);
            for ip in [9, 5, 7, 6] {
                for port in 1..=2 {
                    let at = SocketAddr::from(([127, 0, 0, ip], port));
                    assert!(table.heard(at, None, None, true, now), "{round} {at}");
                }
            }
            assert!(table.heard(addr("127.0.0.8:1"), None, None, true, now));
            assert_eq!(
                table.take_evicted(),
                vec![addr("127.0.0.5:1")],
                "round {round}"
            );
        }
    }

    #[test]
    fn an_entry_becomes_evictable_exactly_when_it_stops_being_recent() {
        let t0 = Instant::now();
        let one = || {
            let mut table = PeerTable::with_limits(1, 16);
            table.heard(addr("127.0.0.3:1"), None, None, true, t0);
            table
        };
        let mut table = one();
        let just_before = t0 + RECENT - Duration::from_millis(1);
        assert!(!table.heard(addr("127.0.0.4:1"), None, None, true, just_before));
        assert!(table.take_evicted().is_empty());
        // (A fresh table: one that just found no room looks again only a second later.)
        let mut table = one();
        assert!(table.heard(addr("127.0.0.4:1"), None, None, true, t0 + RECENT));
        assert_eq!(table.take_evicted(), vec![addr("127.0.0.3:1")]);
        assert!(table.take_evicted().is_empty(), "taken once");
    }

    /// An address dropped as silent is not learned from the side channel again; the
    /// memory of such addresses is bounded, the oldest forgotten first.
    #[test]
    fn silenced_addresses_are_not_learned_again_within_a_bounded_memory() {
        let t = Instant::now();
        let mut table = PeerTable::new();
        let web = addr("127.0.0.7:80");
        table.silence(web);
        assert_eq!(
            table.learned(web, None, None, Source::Discovered, t),
            Some(false)
        );
        assert!(table.get(web).is_none());
        for i in 0..MAX_SILENCED as u32 {
            let ip = std::net::Ipv4Addr::from(0x7f01_0000 | i);
            table.silence(SocketAddr::new(IpAddr::V4(ip), 80));
        }
        assert_eq!(table.silenced.len(), MAX_SILENCED);
        assert_eq!(table.silenced_order.len(), MAX_SILENCED);
        assert_eq!(
            table.learned(web, None, None, Source::Discovered, t),
            Some(true)
        );
    }
}
