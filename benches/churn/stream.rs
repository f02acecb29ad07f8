//! The `stream` scenario: one persistent TCP connection from `127.0.0.73` sends lines of one
//! size (100 B, 1 KiB or 64 KiB, newline included) to a contender whose stdout is a regular
//! file. The first line carries peerchat's header (`127.0.0.73:9 st xxxx…`), the following
//! lines on the same connection are more messages of the same sender, which peerchat shows
//! as `[st 127.0.0.73:9] xxxx…`; the baselines write every line as it came.
//!
//! Timed from the connect until the output file holds every line (its length is known in
//! advance); then the file is read and the lines shown are counted. Reported: MB/s of line
//! bytes sent, lines shown as a percentage of lines sent (a lost line is an error), and the
//! contender's CPU time per line: user + system of the whole process, all threads, from
//! `wait4` once it has exited (start-up included: a millisecond or two).

use crate::load;
use crate::procs::Kind;
use crate::report::{Metric, Table};
use crate::scenarios::Env;
use std::io::Write;
use std::net::{Ipv4Addr, Shutdown};
use std::thread;
use std::time::{Duration, Instant};

/// The sender's address; it claims port 9 (nothing listens there) and the name `st`.
pub const SENDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 73);
/// Line sizes, newline included.
pub const SIZES: [usize; 3] = [100, 1024, 65536];
/// How long a run may take before it counts as stuck.
const DEADLINE: Duration = Duration::from_secs(60);
/// A sender whose lines stop arriving for this long (after it sent everything) is done.
const QUIET: Duration = Duration::from_secs(3);

const fn metric(
    scenario: &'static str,
    name: &'static str,
    target: &'static str,
    decimals: usize,
) -> Metric {
    Metric {
        scenario,
        name,
        target,
        decimals,
    }
}

const S100: &str = "stream 100 B lines";
const S1K: &str = "stream 1 KiB lines";
const S64K: &str = "stream 64 KiB lines";
const SPEED: &str = "peerchat ≥ 0.8× floor";
const ALL: &str = "100 (every line)";

/// Per line size: MB/s.
pub static MBPS: [Metric; 3] = [
    metric(S100, "MB/s (lines sent ÷ time to all shown)", SPEED, 1),
    metric(S1K, "MB/s (lines sent ÷ time to all shown)", SPEED, 1),
    metric(S64K, "MB/s (lines sent ÷ time to all shown)", SPEED, 1),
];
/// Per line size: lines shown as a percentage of lines sent.
pub static SHOWN: [Metric; 3] = [
    metric(S100, "lines shown, % of sent", ALL, 2),
    metric(S1K, "lines shown, % of sent", ALL, 2),
    metric(S64K, "lines shown, % of sent", ALL, 2),
];
/// Per line size: the contender's CPU time per line.
pub static CPU: [Metric; 3] = [
    metric(S100, "CPU ns per line (user+sys, whole process)", "", 0),
    metric(S1K, "CPU ns per line (user+sys, whole process)", "", 0),
    metric(S64K, "CPU ns per line (user+sys, whole process)", "", 0),
];

/// The lines of one run, ready to write: the first with the header, then chunks of plain lines.
struct Lines {
    first: Vec<u8>,
    /// Whole lines, about 1 MiB.
    chunk: Vec<u8>,
    per_chunk: u64,
    /// Lines in all, the first included.
    count: u64,
}

fn header() -> String {
    format!("{SENDER}:9 st ")
}

impl Lines {
    fn new(size: usize, bytes: u64) -> Lines {
        let header = header();
        let mut first = header.clone().into_bytes();
        first.resize(size - 1, b'x');
        first.push(b'\n');
        let mut line = vec![b'x'; size];
        line[size - 1] = b'\n';
        let per_chunk = ((1 << 20) / size).max(1);
        let chunk = line.repeat(per_chunk);
        let count = (bytes / size as u64).max(2);
        Lines {
            first,
            chunk,
            per_chunk: per_chunk as u64,
            count,
        }
    }

    /// Writes every line to `out`.
    fn send(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.first)?;
        let size = self.first.len();
        let mut left = self.count - 1;
        while left > 0 {
            let n = left.min(self.per_chunk);
            out.write_all(&self.chunk[..n as usize * size])?;
            left -= n;
        }
        Ok(())
    }
}

/// One run of one contender at line size `SIZES[i]`, `bytes` of lines in all.
pub fn run(
    env: &Env,
    kind: Kind,
    i: usize,
    bytes: u64,
    run: usize,
    table: &mut Table,
) -> Result<(), String> {
    let size = SIZES[i];
    let name = kind.name();
    let label = format!("stream-{size}-{run}-{}", name.replace(' ', ""));
    let out_path = env.dir.join(format!("{label}.out"));
    let mut c = env.start(kind, label, None)?;
    let lines = Lines::new(size, bytes);
    let count = lines.count;
    let sent_bytes = count * size as u64;
    // What the output file holds once every line is shown, the listening line included.
    let listening = std::fs::metadata(&out_path).map_or(0, |m| m.len());
    let hlen = header().len() as u64;
    let shown_prefix = format!("[st {SENDER}:9] ").len() as u64;
    let (expected, first_len, line_len) = if kind == Kind::Peerchat {
        (
            listening + sent_bytes + lines.count * shown_prefix - hlen,
            shown_prefix + size as u64 - 1 - hlen,
            shown_prefix + size as u64 - 1,
        )
    } else {
        (listening + sent_bytes, size as u64 - 1, size as u64 - 1)
    };
    let result = (|| {
        let started = Instant::now();
        let stream = load::connect_from(SENDER, c.addr, Duration::from_secs(5))
            .map_err(|e| format!("{name}: stream connect: {e}"))?;
        let sender = {
            let mut stream = stream
                .try_clone()
                .map_err(|e| format!("{name}: stream socket clone: {e}"))?;
            thread::spawn(move || -> Result<(), String> {
                lines
                    .send(&mut stream)
                    .map_err(|e| format!("stream write: {e}"))?;
                stream
                    .shutdown(Shutdown::Write)
                    .map_err(|e| format!("stream shutdown: {e}"))
            })
        };
        // Watch the file grow until it holds every line, or stops growing once all is sent.
        let deadline = started + DEADLINE;
        let (mut len, mut grew, mut done) = (0u64, Instant::now(), None);
        while Instant::now() < deadline {
            let now_len = std::fs::metadata(&out_path).map_or(0, |m| m.len());
            if now_len != len {
                len = now_len;
                grew = Instant::now();
            }
            if len >= expected {
                done = Some(grew);
                break;
            }
            if sender.is_finished() && grew.elapsed() > QUIET {
                break;
            }
            if c.alive().is_err() {
                break;
            }
            thread::sleep(Duration::from_micros(500));
        }
        // A contender that stopped reading leaves the sender blocked: closing our side of the
        // socket ends its write.
        let _ = stream.shutdown(Shutdown::Both);
        let sent = sender
            .join()
            .map_err(|_| format!("{name}: stream sender panicked"))?;
        c.alive()?;
        // Count the lines shown (a contender may print a few other lines too).
        let mut shown = 0u64;
        let count_deadline = Instant::now() + Duration::from_secs(2);
        loop {
            c.out.poll(|l| {
                let n = l.len() as u64;
                if (n == line_len || n == first_len) && l.ends_with(b"xxxxxxxx") {
                    shown += 1;
                }
            });
            if shown >= count || Instant::now() >= count_deadline {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let pct = shown as f64 * 100.0 / count as f64;
        let elapsed = done.unwrap_or(grew) - started;
        let mbps = sent_bytes as f64 / 1e6 / elapsed.as_secs_f64();
        if shown == count {
            table.add(&MBPS[i], kind, mbps);
        }
        table.add(&SHOWN[i], kind, pct);
        eprintln!(
            "  stream {size:>5} B run {run} {name:<8} {count} lines, {shown} shown, {mbps:.1} MB/s"
        );
        if shown < count {
            return Err(format!(
                "{name}: stream of {size} B lines run {run}: LOST LINES: {shown} of {count} shown ({pct:.2}%)"
            ));
        }
        sent.map_err(|e| format!("{name}: {size} B lines: {e}"))
    })();
    let stopped = c.stop_cpu().map(|cpu| {
        let ns = cpu.as_nanos() as f64 / count as f64;
        if result.is_ok() {
            table.add(&CPU[i], kind, ns);
        }
        eprintln!(
            "  stream {size:>5} B run {run} {name:<8} {ns:.0} ns CPU per line (whole process)"
        );
    });
    if result.is_ok() && stopped.is_ok() {
        // Every line shown: the file is not needed any more, and the runs add up to gigabytes.
        let _ = std::fs::remove_file(&out_path);
    }
    result.and(stopped)
}
