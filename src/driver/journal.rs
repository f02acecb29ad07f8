//! The state directory: an append-only journal of peers and messages (`--state DIR`).
//!
//! Records are JSON lines in `DIR/journal.jsonl`. They are gathered during a loop turn and
//! appended with one `write` before the turn's output reaches stdout, so every message
//! that was shown is already in the kernel's hands: a `kill -9` at any moment loses at
//! most the record being written, and that torn line is skipped (with a warning) and cut
//! off at the next start.
//!
//! - **One process per directory.** `DIR/lock` is locked (`flock`) for as long as the peer
//!   runs and holds its pid; a second peer on the same directory is refused at start-up
//!   with the holder's pid.
//! - **Bounded, without stalls.** When the journal holds more than twice what it needs,
//!   it is compacted: a snapshot (remembered peers plus the last messages) is written to
//!   a new file a slice per turn, records arriving meanwhile follow it, and the new file is
//!   synced and atomically renamed over the old one.
//! - **Recovers.** A failed write (a full disk) is reported once; the journal retries at
//!   most once a second, keeping at most [`MAX_PENDING`] bytes meanwhile. If it had to drop
//!   records, it rewrites itself from a snapshot once writing works again, and says so.

use crate::time::Instant;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::node::history::{replay, Record, Replayed};

/// Most bytes of records kept in memory while writes fail.
pub const MAX_PENDING: usize = 1 << 20;

/// Bytes of a compaction written per turn.
const COMPACT_SLICE: usize = 256 * 1024;

/// How long a failed write waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The journal of one state directory.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// The locked `DIR/lock`, held while this value lives.
    _lock: File,
    pending: Vec<u8>,
    records: usize,
    keep: usize,
    /// Records left by the last compaction (or at opening): the journal is compacted
    /// again when it has doubled, so compaction stays rare even with many peers.
    base: usize,
    compaction: Option<Compaction>,
    /// While writes fail: when to try again.
    retry_at: Option<Instant>,
    /// Records were dropped while writes failed: rewrite from a snapshot.
    lost: bool,
}

/// A compaction under way: the snapshot, written a slice per turn to a new file.
#[derive(Debug)]
struct Compaction {
    tmp: PathBuf,
    file: File,
    snapshot: Vec<Record>,
    /// Records of the snapshot already written.
    next: usize,
    /// Records that arrived since the snapshot was taken, to follow it.
    since: Vec<u8>,
    since_records: usize,
    /// It rewrites the journal after records were dropped.
    rewrite: bool,
}

/// What a flush did, for the user.
#[derive(Debug)]
pub enum Flushed {
    /// Nothing worth telling.
    Quietly,
    /// Writing failed, for the first time since it last worked.
    Failed(io::Error),
    /// Writing works again after failing.
    Recovered {
        /// Whether records were dropped meanwhile (the journal was rewritten from a
        /// snapshot, so nothing that is still known is missing).
        rewritten: bool,
    },
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, locked for this process, replaying what it
    /// holds; keeps the last `keep` messages. A directory another peer holds is refused
    /// with `ResourceBusy`, naming the holder's pid.
    pub fn open(dir: &Path, keep: usize) -> io::Result<(Journal, Replayed)> {
        fs::create_dir_all(dir)?;
        let lock = lock(dir)?;
        let path = dir.join("journal.jsonl");
        regular_or_absent(&path)?;
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let replayed = replay(&bytes, keep);
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        if replayed.good_len < bytes.len() {
            // Cut off the torn record so new records start on a line of their own.
            file.set_len(replayed.good_len as u64)?;
        } else if replayed.unterminated {
            // A whole last record without its newline: end its line, for the same reason.
            file.write_all(b"\n")?;
        }
        // A compaction cut short by a crash left its new file behind: it is not the journal.
        let _ = fs::remove_file(path.with_extension("jsonl.tmp"));
        let journal = Journal {
            path,
            file,
            _lock: lock,
            pending: Vec::new(),
            records: replayed.records,
            keep,
            base: replayed.records,
            compaction: None,
            retry_at: None,
            lost: false,
        };
        Ok((journal, replayed))
    }

    /// Queues a record; it is written at the next [`Journal::flush`].
    pub fn push(&mut self, record: &Record) {
        if self.retry_at.is_some() && self.pending.len() >= MAX_PENDING {
            // Writes fail and memory is bounded: drop it, and rewrite from a snapshot later.
            self.lost = true;
            return;
        }
        let start = self.pending.len();
        record.write_line(&mut self.pending);
        self.records += 1;
        if let Some(c) = &mut self.compaction {
            c.since.extend_from_slice(&self.pending[start..]);
            c.since_records += 1;
        }
    }

    /// When the next retry is due, while writes fail.
    pub fn retry_at(&self) -> Option<Instant> {
        // With nothing to write, there is nothing to retry (until a record arrives).
        self.retry_at
            .filter(|_| !self.pending.is_empty() || self.lost)
    }

    /// Whether a compaction has slices left to write (the driver comes back for them).
    pub fn compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// Appends the queued records with one write, and writes one slice of a compaction
    /// (starting one, with `snapshot`, when the journal has grown long). While writes
    /// fail, tries again at most once per [`RETRY_AFTER`].
    pub fn flush(&mut self, now: Instant, snapshot: impl FnOnce() -> Vec<Record>) -> Flushed {
        if self.retry_at.is_some_and(|at| now < at) {
            return Flushed::Quietly;
        }
        let failing = self.retry_at.is_some();
        if failing && self.pending.is_empty() && !self.lost {
            return Flushed::Quietly; // nothing to try a write with
        }
        let rewritten = self.lost;
        match self.try_flush(snapshot) {
            Ok(()) if failing => {
                self.retry_at = None;
                Flushed::Recovered { rewritten }
            }
            Ok(()) => Flushed::Quietly,
            Err(e) => {
                self.retry_at = Some(now + RETRY_AFTER);
                if let Some(c) = self.compaction.take() {
                    let _ = fs::remove_file(&c.tmp);
                }
                if failing {
                    Flushed::Quietly
                } else {
                    Flushed::Failed(e)
                }
            }
        }
    }

    fn try_flush(&mut self, snapshot: impl FnOnce() -> Vec<Record>) -> io::Result<()> {
        if self.lost && !self.compaction.as_ref().is_some_and(|c| c.rewrite) {
            // Records were dropped: the journal is rewritten from what is known now (the
            // dropped records' content included), a slice per turn like any compaction;
            // they count as lost until the new file has replaced the old one.
            self.pending.clear();
            self.compaction = None;
            self.start_compaction(snapshot())?;
            if let Some(c) = &mut self.compaction {
                c.rewrite = true;
            }
            return self.compact_slice();
        }
        if !self.pending.is_empty() {
            // What a partial write took is not written again after an error.
            while !self.pending.is_empty() {
                match self.file.write(&self.pending) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.pending.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.pending.capacity() > MAX_PENDING {
                self.pending.shrink_to(64 * 1024);
            }
            if self.compaction.is_none() && self.records > 2 * self.base.max(self.keep).max(1000) {
                self.start_compaction(snapshot())?;
            }
        }
        if self.compaction.is_some() {
            self.compact_slice()?;
        }
        Ok(())
    }

    fn start_compaction(&mut self, snapshot: Vec<Record>) -> io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let file = File::create(&tmp)?;
        self.compaction = Some(Compaction {
            tmp,
            file,
            snapshot,
            next: 0,
            since: Vec::new(),
            since_records: 0,
            rewrite: false,
        });
        Ok(())
    }

    /// Writes the next slice of the compaction; the last one also writes the records that
    /// arrived meanwhile, syncs, and renames the new file over the journal.
    fn compact_slice(&mut self) -> io::Result<()> {
        let Some(c) = &mut self.compaction else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(COMPACT_SLICE + 1024);
        while c.next < c.snapshot.len() && buf.len() < COMPACT_SLICE {
            c.snapshot[c.next].write_line(&mut buf);
            c.next += 1;
        }
        c.file.write_all(&buf)?;
        if c.next < c.snapshot.len() {
            return Ok(());
        }
        c.file.write_all(&c.since)?;
        c.file.sync_all()?;
        fs::rename(&c.tmp, &self.path)?;
        let mut file = OpenOptions::new().append(true).open(&self.path)?;
        file.seek(io::SeekFrom::End(0))?;
        self.file = file;
        self.records = c.snapshot.len() + c.since_records;
        self.base = self.records;
        log::info!("compacted the journal to {} records", self.records);
        if c.rewrite {
            self.lost = false;
        }
        self.compaction = None;
        Ok(())
    }
}

/// Locks `DIR/lock` for this process (released when the file is closed, by exit or
/// crash), and writes our pid in it for whoever finds it locked.
/// Refuses a journal that is not a regular file: opening a FIFO would block the peer before
/// its loop runs (no signal could stop it), and a device is no journal.
fn regular_or_absent(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn lock(dir: &Path) -> io::Result<File> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("another peerchat (pid {pid}) is using it"),
                Err(_) => "another peerchat is using it".to_owned(),
            };
            return Err(io::Error::new(io::ErrorKind::ResourceBusy, holder));
        }
        Err(fs::TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    Ok(file)
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

    /// A flush, with a first failure as an error.
    fn flush(j: &mut Journal, snapshot: impl FnOnce() -> Vec<Record>) -> io::Result<()> {
        match j.flush(Instant::now(), snapshot) {
            Flushed::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    #[test]
    fn survives_a_torn_record_and_appends_cleanly() -> io::Result<()> {
        let dir = temp_dir("torn");
        {
            let (mut j, r) = Journal::open(&dir, 10)?;
            assert!(r.messages.is_empty());
            j.push(&msg(1));
            flush(&mut j, Vec::new)?;
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
            flush(&mut j, Vec::new)?;
        }
        let (_, r) = Journal::open(&dir, 10)?;
        assert!(!r.torn_tail);
        let texts: Vec<String> = r.messages.iter().map(|e| e.text.clone()).collect();
        assert_eq!(texts, vec!["m1", "m3"]);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_whole_last_record_without_its_newline_is_kept_and_the_next_starts_a_line() -> io::Result<()>
    {
        let dir = temp_dir("unterminated");
        {
            let (mut j, _) = Journal::open(&dir, 10)?;
            j.push(&msg(1));
            flush(&mut j, Vec::new)?;
        }
        // The newline of the last record is missing (cut just before it, or an editor).
        let path = dir.join("journal.jsonl");
        let mut bytes = fs::read(&path)?;
        assert_eq!(bytes.pop(), Some(b'\n'));
        fs::write(&path, &bytes)?;
        {
            let (mut j, r) = Journal::open(&dir, 10)?;
            assert!(!r.torn_tail);
            assert_eq!(r.messages.len(), 1, "the record is kept");
            j.push(&msg(2));
            flush(&mut j, Vec::new)?;
        }
        let (_, r) = Journal::open(&dir, 10)?;
        assert!(!r.torn_tail && !r.unterminated && r.skipped == 0);
        let texts: Vec<String> = r.messages.iter().map(|e| e.text.clone()).collect();
        assert_eq!(texts, vec!["m1", "m2"]);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn compaction_bounds_the_journal() -> io::Result<()> {
        let dir = temp_dir("compact");
        let (mut j, _) = Journal::open(&dir, 10)?;
        for i in 0..2500 {
            j.push(&msg(i));
            flush(&mut j, || (2490..=i).map(msg).collect())?;
        }
        assert!(!j.compacting(), "small snapshots finish in one slice");
        drop(j);
        let (_, r) = Journal::open(&dir, 10)?;
        assert!(r.records < 2100, "{} records", r.records);
        assert_eq!(r.messages.last().map(|e| e.millis), Some(2499));
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_large_compaction_goes_a_slice_per_flush_and_keeps_what_arrives_meanwhile() -> io::Result<()>
    {
        let dir = temp_dir("slices");
        let (mut j, _) = Journal::open(&dir, 100_000)?;
        let big = |i: i64| {
            Record::Message(Entry {
                millis: i,
                direction: Direction::In,
                addr: None,
                name: None,
                text: "x".repeat(1000),
            })
        };
        j.start_compaction((0..2000).map(big).collect())?;
        let mut flushes = 0;
        while j.compacting() {
            j.push(&msg(10_000 + flushes));
            flush(&mut j, Vec::new)?;
            flushes += 1;
            assert!(flushes < 100, "the compaction ends");
        }
        // 2,000 records of about 1 KB: several slices of 256 KiB.
        assert!(flushes >= 7, "{flushes} flushes");
        drop(j);
        let (_, r) = Journal::open(&dir, 100_000)?;
        assert_eq!(r.messages.len(), 2000 + flushes as usize);
        assert_eq!(
            r.messages.last().map(|e| e.millis),
            Some(10_000 + flushes - 1)
        );
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_second_peer_on_the_same_directory_is_refused_with_the_holders_pid() -> io::Result<()> {
        let dir = temp_dir("lock");
        let (first, _) = Journal::open(&dir, 10)?;
        let err = Journal::open(&dir, 10).expect_err("the directory is held");
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        let pid = std::process::id().to_string();
        assert!(err.to_string().contains(&pid), "{err}");
        drop(first);
        let (_again, _) = Journal::open(&dir, 10)?;
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn after_failed_writes_it_retries_and_rewrites_what_it_dropped() -> io::Result<()> {
        let dir = temp_dir("full");
        let (mut j, _) = Journal::open(&dir, 10_000)?;
        j.push(&msg(1));
        flush(&mut j, Vec::new)?;
        // The disk fills up.
        j.file = OpenOptions::new().append(true).open("/dev/full")?;
        j.push(&msg(2));
        let t0 = Instant::now();
        assert!(matches!(j.flush(t0, Vec::new), Flushed::Failed(_)));
        j.push(&msg(3));
        assert!(
            matches!(j.flush(t0, Vec::new), Flushed::Quietly),
            "no retry yet"
        );
        assert!(j.retry_at().is_some_and(|at| at > t0));
        // The outage goes on: records beyond the bound are dropped, memory stays bounded.
        let mut i = 4;
        while !j.lost {
            j.push(&msg(i));
            i += 1;
        }
        assert!(j.pending.len() <= MAX_PENDING + 1024);
        // The next try rewrites the journal from a snapshot of what is known, into a new
        // file that replaces the old one (here the "full" one).
        let snapshot = || (1..i).map(msg).collect();
        assert!(matches!(
            j.flush(t0 + RETRY_AFTER, snapshot),
            Flushed::Recovered { rewritten: true }
        ));
        while j.compacting() {
            flush(&mut j, Vec::new)?;
        }
        drop(j);
        let (_, r) = Journal::open(&dir, 10_000)?;
        assert_eq!(r.messages.len(), 10_000, "the last messages kept are back");
        assert_eq!(r.messages.last().map(|e| e.millis), Some(i - 1));
        fs::remove_dir_all(&dir)
    }

    /// A failed write whose records were already appended (here: the compaction's
    /// new file cannot be created) leaves `retry_at` in the past once it comes due with
    /// nothing pending; the event loop then polls with a zero timeout forever.
    #[test]
    fn a_due_retry_with_nothing_to_write_asks_for_no_wake_up() -> io::Result<()> {
        let dir = temp_dir("review-spin");
        let (mut j, _) = Journal::open(&dir, 10)?;
        fs::create_dir(dir.join("journal.jsonl.tmp"))?; // File::create(tmp) fails: EISDIR
        let t0 = Instant::now();
        let mut failed = false;
        for i in 0..2100 {
            j.push(&msg(i));
            if let Flushed::Failed(_) = j.flush(t0, Vec::new) {
                failed = true;
                break;
            }
        }
        assert!(failed, "starting the compaction failed");
        // No new record arrives; the retry comes due and finds nothing to write.
        let later = t0 + RETRY_AFTER;
        let _ = j.flush(later, Vec::new);
        let _ = j.flush(later + Duration::from_millis(1), Vec::new);
        let now = later + Duration::from_millis(2);
        assert!(
            j.retry_at().is_none_or(|at| at > now),
            "retry_at is {:?} before now: the loop's poll timeout is zero until a record arrives",
            j.retry_at().map(|at| now - at)
        );
        fs::remove_dir_all(&dir)
    }

    /// Records dropped during an outage, a rewrite that fails in its first slice
    /// (the disk is still too full for a whole new copy), then small appends work again:
    /// the user is told "nothing was lost" while the dropped records are gone for good.
    #[test]
    fn a_failed_rewrite_is_not_reported_as_nothing_lost() -> io::Result<()> {
        let dir = temp_dir("review-lost");
        let (mut j, _) = Journal::open(&dir, 100_000)?;
        j.push(&msg(1));
        flush(&mut j, Vec::new)?;
        let good = OpenOptions::new()
            .append(true)
            .open(dir.join("journal.jsonl"))?;
        j.file = OpenOptions::new().append(true).open("/dev/full")?;
        j.push(&msg(2));
        let t0 = Instant::now();
        assert!(matches!(j.flush(t0, Vec::new), Flushed::Failed(_)));
        let mut i = 3;
        while !j.lost {
            j.push(&msg(i));
            i += 1;
        }
        // The retry rewrites from a snapshot; the new file's first slice fails (disk full).
        std::os::unix::fs::symlink("/dev/full", dir.join("journal.jsonl.tmp"))?;
        let first = j.flush(t0 + RETRY_AFTER, || (1..i).map(msg).collect());
        assert!(matches!(first, Flushed::Quietly), "{first:?}");
        // A little room again: appends work.
        j.file = good;
        j.push(&msg(i));
        let second = j.flush(t0 + 3 * RETRY_AFTER, || (1..=i).map(msg).collect());
        drop(j);
        let (_, r) = Journal::open(&dir, 100_000)?;
        let kept = r.messages.len();
        assert!(
            !matches!(second, Flushed::Recovered { rewritten: false }) || kept as i64 == i,
            "told {second:?} (\"nothing was lost\") but the journal holds {kept} of {i} messages"
        );
        fs::remove_dir_all(&dir)
    }
}
