//! The state directory: an append-only journal of peers and messages (`--state DIR`).
//!
//! Records are JSON lines in `DIR/journal.jsonl`. They are gathered during a loop turn and
//! appended with one `write` before the turn's output reaches stdout, so every message
//! that was shown is already in the kernel's hands: a `kill -9` at any moment loses at
//! most the record being written, and that torn line is skipped (with a warning) and cut
//! off at the next start. The journal is bounded: when it holds more than twice the
//! history limit, it is compacted (remembered peers plus the last messages) into a new
//! file that atomically replaces the old one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::node::history::{replay, Record, Replayed};

/// The journal of one state directory.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    records: usize,
    keep: usize,
    /// Records left by the last compaction (or at opening): the journal is compacted
    /// again when it has doubled, so compaction stays rare even with many peers.
    base: usize,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, replaying what it holds; keeps the last
    /// `keep` messages.
    pub fn open(dir: &Path, keep: usize) -> io::Result<(Journal, Replayed)> {
        fs::create_dir_all(dir)?;
        let path = dir.join("journal.jsonl");
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let replayed = replay(&bytes, keep);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if replayed.good_len < bytes.len() {
            // Cut off the torn record so new records start on a line of their own.
            file.set_len(replayed.good_len as u64)?;
        }
        let journal = Journal {
            path,
            file,
            pending: Vec::new(),
            records: replayed.records,
            keep,
            base: replayed.records,
        };
        Ok((journal, replayed))
    }

    /// Queues a record; it is written at the next [`Journal::flush`].
    pub fn push(&mut self, record: &Record) {
        record.write_line(&mut self.pending);
        self.records += 1;
    }

    /// Appends the queued records with one write; compacts the journal when it is long.
    /// `peers` gives the records that describe the remembered peers, for compaction.
    pub fn flush(&mut self, compact: impl FnOnce() -> Vec<Record>) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.pending.clear();
        if self.records > 2 * self.base.max(self.keep).max(1000) {
            self.compact(compact())?;
        }
        Ok(())
    }

    /// Rewrites the journal as `records` (peers and the last messages): written to a new
    /// file, synced, then renamed over the old one, so a crash leaves one or the other.
    fn compact(&mut self, records: Vec<Record>) -> io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::new();
            for r in &records {
                r.write_line(&mut buf);
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.records = records.len();
        self.base = records.len();
        log::info!("compacted the journal to {} records", self.records);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::history::{Direction, Entry};

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("peerchat-journal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn msg(i: i64) -> Record {
        Record::Message(Entry {
            millis: i,
            direction: Direction::In,
            addr: None,
            name: None,
            text: format!("m{i}"),
        })
    }

    #[test]
    fn survives_a_torn_record_and_appends_cleanly() -> io::Result<()> {
        let dir = temp_dir("torn");
        {
            let (mut j, r) = Journal::open(&dir, 10)?;
            assert!(r.messages.is_empty());
            j.push(&msg(1));
            j.flush(Vec::new)?;
        }
        // A crash in the middle of the second record.
        OpenOptions::new()
            .append(true)
            .open(dir.join("journal.jsonl"))?
            .write_all(b"{\"k\":\"msg\",\"ts\":2,\"di")?;
        {
            let (mut j, r) = Journal::open(&dir, 10)?;
            assert!(r.torn_tail);
            assert_eq!(r.messages.len(), 1);
            j.push(&msg(3));
            j.flush(Vec::new)?;
        }
        let (_, r) = Journal::open(&dir, 10)?;
        assert!(!r.torn_tail);
        let texts: Vec<String> = r.messages.iter().map(|e| e.text.clone()).collect();
        assert_eq!(texts, vec!["m1", "m3"]);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn compaction_bounds_the_journal() -> io::Result<()> {
        let dir = temp_dir("compact");
        let (mut j, _) = Journal::open(&dir, 10)?;
        for i in 0..2500 {
            j.push(&msg(i));
            j.flush(|| (2490..=i).map(msg).collect())?;
        }
        let (_, r) = Journal::open(&dir, 10)?;
        assert!(r.records < 2100, "{} records", r.records);
        assert_eq!(r.messages.last().map(|e| e.millis), Some(2499));
        fs::remove_dir_all(&dir)
    }
}
