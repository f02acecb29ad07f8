//! The message history and the records that persist it across restarts.
//!
//! [`History`] keeps the last messages (sent and received) in memory for `/history`.
//! With `--state DIR`, every change worth remembering is also a [`Record`], one JSON line
//! appended to a journal (see `journal`); [`replay`] rebuilds the remembered peers and
//! the history from those lines, skipping a torn last record. Pure: no files here.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use serde_json::Value;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from a peer.
    In,
    /// Sent by us.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// One message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When, in Unix milliseconds.
    pub millis: i64,
    /// Received or sent.
    pub direction: Direction,
    /// The peer (sender's identity, or destination); `None` for a sender without a port.
    pub addr: Option<SocketAddr>,
    /// The sender's name (received messages only).
    pub name: Option<String>,
    /// The text.
    pub text: String,
}

/// Most bytes of message text the history holds: beyond it the oldest messages go, even
/// before the count is reached (a thousand messages of 64 KiB would be 64 MiB).
pub const MAX_HISTORY_BYTES: usize = 4 << 20;

/// The last messages, oldest first, at most `capacity` of them and [`MAX_HISTORY_BYTES`]
/// of text.
#[derive(Debug)]
pub struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
    /// Bytes of text held.
    bytes: usize,
}

impl History {
    /// An empty history keeping at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        History {
            entries: VecDeque::new(),
            capacity,
            bytes: 0,
        }
    }

    /// Adds a message, forgetting the oldest beyond the capacity.
    pub fn push(&mut self, entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        self.bytes += entry.text.len();
        self.entries.push_back(entry);
        while self.entries.len() > self.capacity || self.bytes > MAX_HISTORY_BYTES {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
    }

    /// Adds a copy of a message, like [`History::push`]; once the history is full, the
    /// oldest entry's strings take the copy, so that a message costs no allocation. They
    /// are reused only when not much larger than needed: the capacity held stays within
    /// twice the text held, plus a little per entry.
    pub fn push_copy(
        &mut self,
        (millis, direction, addr): (i64, Direction, Option<SocketAddr>),
        name: Option<&str>,
        text: &str,
    ) {
        if self.capacity == 0 {
            return;
        }
        let old = match self.entries.len() >= self.capacity {
            true => self.entries.pop_front(),
            false => None,
        };
        if let Some(old) = &old {
            self.bytes -= old.text.len();
        }
        let fits = |s: &String, len: usize| s.capacity() <= 2 * len + 64;
        let reused = old.filter(|o| {
            fits(&o.text, text.len())
                && o.name
                    .as_ref()
                    .is_none_or(|n| fits(n, name.map_or(0, str::len)))
        });
        let entry = match reused {
            Some(mut entry) => {
                entry.millis = millis;
                entry.direction = direction;
                entry.addr = addr;
                entry.text.clear();
                entry.text.push_str(text);
                match (name, &mut entry.name) {
                    (Some(name), Some(kept)) => {
                        kept.clear();
                        kept.push_str(name);
                    }
                    (name, kept) => *kept = name.map(str::to_owned),
                }
                entry
            }
            None => Entry {
                millis,
                direction,
                addr,
                name: name.map(str::to_owned),
                text: text.to_owned(),
            },
        };
        self.push(entry);
    }

    /// How many messages are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no message is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last `n` messages, oldest first.
    pub fn last(&self, n: usize) -> Vec<Entry> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries.iter().skip(skip).cloned().collect()
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A peer is known (with its latest name).
    Peer {
        /// Its identity.
        addr: SocketAddr,
        /// Its name, if known.
        name: Option<String>,
    },
    /// A peer was removed.
    Gone {
        /// Its identity.
        addr: SocketAddr,
    },
    /// A message was sent or received.
    Message(Entry),
}

impl Record {
    /// The record as one JSON line, newline included.
    #[cfg(test)]
    pub fn to_line(&self) -> String {
        let mut line = Vec::new();
        self.write_line(&mut line);
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Appends the record as one JSON line (newline included) to `out`. Written by hand,
    /// with serde_json escaping the strings: building a `Value` per message cost more than
    /// everything else a message costs.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writes into a Vec cannot fail, nor can serialising a string.
        let _ = match self {
            Record::Peer { addr, name } => {
                let _ = write!(out, "{{\"k\":\"peer\",\"addr\":\"{addr}\",\"name\":");
                json_string(out, name.as_deref());
                write!(out, "}}")
            }
            Record::Gone { addr } => write!(out, "{{\"k\":\"gone\",\"addr\":\"{addr}\"}}"),
            Record::Message(e) => {
                let _ = write!(
                    out,
                    "{{\"k\":\"msg\",\"ts\":{},\"dir\":\"{}\",\"addr\":",
                    e.millis,
                    e.direction.as_str()
                );
                match e.addr {
                    Some(addr) => {
                        let _ = write!(out, "\"{addr}\"");
                    }
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"name\":");
                json_string(out, e.name.as_deref());
                out.extend_from_slice(b",\"text\":");
                json_string(out, Some(&e.text));
                write!(out, "}}")
            }
        };
        out.push(b'\n');
    }

    /// Parses one journal line (without its newline).
    pub fn from_line(line: &str) -> Option<Record> {
        let v: Value = serde_json::from_str(line).ok()?;
        let addr = |v: &Value| v.get("addr")?.as_str()?.parse::<SocketAddr>().ok();
        let name = v.get("name").and_then(Value::as_str).map(str::to_owned);
        match v.get("k")?.as_str()? {
            "peer" => Some(Record::Peer {
                addr: addr(&v)?,
                name,
            }),
            "gone" => Some(Record::Gone { addr: addr(&v)? }),
            "msg" => Some(Record::Message(Entry {
                millis: v.get("ts")?.as_i64()?,
                direction: match v.get("dir")?.as_str()? {
                    "in" => Direction::In,
                    "out" => Direction::Out,
                    _ => return None,
                },
                addr: addr(&v),
                name,
                text: v.get("text")?.as_str()?.to_owned(),
            })),
            _ => None,
        }
    }
}

/// A JSON string (escaped by serde_json), or `null`.
fn json_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// What a journal held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Remembered peers and their names, in address order.
    pub peers: BTreeMap<SocketAddr, Option<String>>,
    /// The last messages, oldest first.
    pub messages: Vec<Entry>,
    /// Records that could not be read (corrupt lines in the middle).
    pub skipped: usize,
    /// Whether the last record was torn (cut short by a crash) and skipped.
    pub torn_tail: bool,
    /// Bytes of the journal up to the end of the last good record.
    pub good_len: usize,
    /// Records read.
    pub records: usize,
}

/// Rebuilds peers and the last `keep` messages from a journal's bytes.
pub fn replay(bytes: &[u8], keep: usize) -> Replayed {
    let mut out = Replayed::default();
    let mut messages = History::new(keep);
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            // No newline: the write of this record was cut short.
            out.torn_tail = true;
            break;
        };
        let line = String::from_utf8_lossy(&rest[..nl]);
        offset += nl + 1;
        match Record::from_line(&line) {
            Some(Record::Peer { addr, name }) => {
                // A record without a name (a static peer given again) keeps the one known.
                let known = out.peers.entry(addr).or_default();
                if name.is_some() {
                    *known = name;
                }
            }
            Some(Record::Gone { addr }) => {
                out.peers.remove(&addr);
            }
            Some(Record::Message(e)) => messages.push(e),
            None if offset == bytes.len() => {
                out.torn_tail = true;
                offset -= nl + 1;
                break;
            }
            None => {
                out.skipped += 1;
                continue;
            }
        }
        out.records += 1;
        out.good_len = offset;
    }
    if !out.torn_tail {
        out.good_len = offset;
    }
    out.messages = messages.last(keep);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `push_copy`, which reuses the oldest entry's strings once the history is full,
    /// keeps exactly what `push` of a new entry keeps, whatever the sizes (the byte bound
    /// included), and the strings it reuses stay within twice what they hold plus 64.
    #[test]
    fn push_copy_keeps_what_push_keeps() {
        let mut rng = crate::sim::rng::Rng::new(31);
        for capacity in [0, 1, 3, 50] {
            let (mut pushed, mut copied) = (History::new(capacity), History::new(capacity));
            for i in 0..2_000 {
                let len = match rng.index(50) {
                    0 => rng.index(3 << 20),
                    1..=5 => 0,
                    _ => rng.index(200),
                };
                let text = "t".repeat(len);
                let name = (rng.index(3) > 0).then(|| "n".repeat(rng.index(40)));
                let addr = (rng.index(4) > 0).then(|| SocketAddr::from(([127, 0, 0, 3], 9)));
                pushed.push(Entry {
                    millis: i,
                    direction: Direction::In,
                    addr,
                    name: name.clone(),
                    text: text.clone(),
                });
                copied.push_copy((i, Direction::In, addr), name.as_deref(), &text);
                assert_eq!(
                    copied.entries, pushed.entries,
                    "capacity {capacity}, step {i}"
                );
                assert_eq!(copied.bytes, pushed.bytes);
                for e in &copied.entries {
                    assert!(
                        e.text.capacity() <= 2 * e.text.len() + 64
                            || e.text.len() == e.text.capacity()
                    );
                }
            }
        }
    }

    fn entry(i: i64, dir: Direction) -> Entry {
        Entry {
            millis: i,
            direction: dir,
            addr: Some("127.0.0.3:5002".parse().expect("addr")),
            name: (dir == Direction::In).then(|| "bob".to_owned()),
            text: format!("message {i} \u{e9}\n\"quoted\""),
        }
    }

    #[test]
    fn history_keeps_the_last_messages_in_order() {
        let mut h = History::new(3);
        for i in 0..5 {
            h.push(entry(i, Direction::In));
        }
        let last: Vec<i64> = h.last(10).iter().map(|e| e.millis).collect();
        assert_eq!(last, vec![2, 3, 4]);
        assert_eq!(h.last(2).len(), 2);
    }

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Peer {
                addr: "[::1]:7".parse().expect("addr"),
                name: Some("six".into()),
            },
            Record::Gone {
                addr: "127.0.0.2:1".parse().expect("addr"),
            },
            Record::Message(entry(7, Direction::Out)),
            Record::Message(Entry {
                addr: None,
                ..entry(8, Direction::In)
            }),
        ];
        for r in records {
            let line = r.to_line();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Record::from_line(line.trim_end()), Some(r));
        }
    }

    #[test]
    fn replay_rebuilds_peers_and_messages() {
        let a: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.3:2".parse().expect("addr");
        let mut journal = String::new();
        journal += &Record::Peer {
            addr: a,
            name: Some("a".into()),
        }
        .to_line();
        journal += &Record::Peer {
            addr: b,
            name: None,
        }
        .to_line();
        journal += &Record::Message(entry(1, Direction::In)).to_line();
        journal += &Record::Gone { addr: a }.to_line();
        journal += "garbage in the middle\n";
        journal += &Record::Message(entry(2, Direction::Out)).to_line();
        let r = replay(journal.as_bytes(), 10);
        assert_eq!(r.peers.keys().copied().collect::<Vec<_>>(), vec![b]);
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.skipped, 1);
        assert!(!r.torn_tail);
        assert_eq!(r.good_len, journal.len());
    }

    #[test]
    fn a_record_without_a_name_keeps_the_name_remembered() {
        let a: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let named = |name: Option<&str>| Record::Peer {
            addr: a,
            name: name.map(Into::into),
        };
        let journal = named(Some("ann")).to_line() + &named(None).to_line();
        assert_eq!(
            replay(journal.as_bytes(), 10).peers[&a].as_deref(),
            Some("ann")
        );
        let journal = journal + &named(Some("anne")).to_line();
        assert_eq!(
            replay(journal.as_bytes(), 10).peers[&a].as_deref(),
            Some("anne")
        );
    }

    #[test]
    fn a_torn_last_record_is_skipped_at_any_cut() {
        let mut journal = Record::Message(entry(1, Direction::In)).to_line();
        let whole = journal.len();
        journal += &Record::Message(entry(2, Direction::In)).to_line();
        for cut in whole + 1..journal.len() {
            let r = replay(&journal.as_bytes()[..cut], 10);
            assert_eq!(r.messages.len(), 1, "cut at {cut}");
            assert!(r.torn_tail, "cut at {cut}");
            assert_eq!(r.good_len, whole);
        }
    }

    #[test]
    fn the_history_is_bounded_in_bytes_too() {
        let mut h = History::new(1000);
        let big = |i: i64| Entry {
            millis: i,
            direction: Direction::In,
            addr: None,
            name: None,
            text: "x".repeat(64 * 1024),
        };
        for i in 0..200 {
            h.push(big(i));
        }
        let kept = h.last(usize::MAX);
        assert_eq!(kept.len(), MAX_HISTORY_BYTES / (64 * 1024));
        assert_eq!(kept.last().map(|e| e.millis), Some(199), "the newest stay");
        assert_eq!(h.bytes, kept.iter().map(|e| e.text.len()).sum::<usize>());
    }

    #[test]
    fn a_history_of_no_capacity_keeps_nothing() {
        let mut h = History::new(0);
        assert!(h.is_empty());
        h.push(entry(1, Direction::In));
        assert!(h.is_empty());
        assert_eq!(h.len(), 0);
        assert!(h.last(5).is_empty());
    }

    #[test]
    fn history_counts_what_it_keeps() {
        let mut h = History::new(2);
        h.push(entry(1, Direction::Out));
        assert!(!h.is_empty());
        assert_eq!(h.len(), 1);
        h.push(entry(2, Direction::In));
        h.push(entry(3, Direction::In));
        assert_eq!(h.len(), 2);
        assert_eq!(h.last(1), vec![entry(3, Direction::In)]);
        assert!(h.last(0).is_empty());
    }

    #[test]
    fn directions_are_written_as_in_and_out() {
        assert_eq!(Direction::In.as_str(), "in");
        assert_eq!(Direction::Out.as_str(), "out");
        let line = Record::Message(entry(1, Direction::Out)).to_line();
        assert!(line.contains("\"dir\":\"out\""), "{line}");
    }

    #[test]
    fn lines_of_unknown_kind_or_direction_are_not_records() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        assert!(Record::from_line(good.trim_end()).is_some());
        for bad in [
            good.replace("\"dir\":\"in\"", "\"dir\":\"sideways\""),
            good.replace("\"k\":\"msg\"", "\"k\":\"nope\""),
            good.replace("\"ts\":1", "\"ts\":\"1\""),
            "{\"k\":\"peer\",\"addr\":\"not an address\"}".to_owned(),
            "{\"k\":\"gone\"}".to_owned(),
        ] {
            assert_eq!(Record::from_line(bad.trim_end()), None, "{bad}");
        }
    }

    #[test]
    fn replay_keeps_only_the_last_messages_and_counts_records() {
        let mut journal = String::new();
        for i in 0..5 {
            journal += &Record::Message(entry(i, Direction::In)).to_line();
        }
        journal += &Record::Gone {
            addr: "127.0.0.2:1".parse().expect("addr"),
        }
        .to_line();
        let r = replay(journal.as_bytes(), 2);
        let kept: Vec<i64> = r.messages.iter().map(|e| e.millis).collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(r.records, 6);
        assert_eq!(r.skipped, 0);
        assert_eq!(r.good_len, journal.len());
    }

    #[test]
    fn a_corrupt_last_line_is_a_torn_tail_not_a_skipped_record() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        let journal = format!("{good}{{\"k\":\"msg\",\"ts\":\n");
        let r = replay(journal.as_bytes(), 10);
        assert!(r.torn_tail);
        assert_eq!(r.skipped, 0);
        assert_eq!(r.records, 1);
        assert_eq!(r.good_len, good.len(), "the torn line is cut off");
    }

    #[test]
    fn a_stray_blank_last_line_is_cut_off() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        let journal = format!("{good}\n");
        let r = replay(journal.as_bytes(), 10);
        assert_eq!(r.messages, vec![entry(1, Direction::In)]);
        assert_eq!(r.good_len, good.len());
    }

    #[test]
    fn garbage_before_a_torn_tail_is_cut_off_with_it() {
        let good = Record::Message(entry(1, Direction::In)).to_line();
        let journal = format!("{good}garbage\n{{\"k\":\"ms");
        let r = replay(journal.as_bytes(), 10);
        assert!(r.torn_tail);
        assert_eq!(r.skipped, 1);
        assert_eq!(r.good_len, good.len());
        assert_eq!(r.messages, vec![entry(1, Direction::In)]);
    }

    #[test]
    fn an_empty_journal_holds_nothing() {
        assert_eq!(replay(b"", 10), Replayed::default());
    }
}
