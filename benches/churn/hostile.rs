//! The hostile scenario: the release peerchat with its default limits under each attack of
//! `tests/hostile.rs`, scaled up, one fresh process per attack, then all of them at once.
//! While an attack runs, a legitimate sender at `127.0.0.3` sends one-message connections
//! one after another, each timed from connect until its line is in peerchat's stdout file.
//! Per attack: the legitimate messages shown and their p50/p99/max delivery, peak resident
//! memory (`VmHWM`), and `VmRSS` idle before the attack and once the peer has settled after
//! it (every attack line shown, every attack connection closed). A lost legitimate message
//! or a dead peer is an error; the targets (p99 < 100 ms, peak < 64 MiB, back within 1 MiB
//! of idle) are only reported.

pub use crate::attacks::Sizes;
use crate::attacks::{self, Attack, Sent, HELD, STREAMS};
use crate::load;
use crate::procs::{self, Kind, Launch, Running};
use crate::scenarios::Env;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The legitimate sender's address (it claims port 4242) and the start of its shown lines.
const LEGIT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const LEGIT_SHOWN: &[u8] = b"[legit 127.0.0.3:4242] legit message ";
/// A legitimate message not shown this long after its connect counts as lost (unless it
/// turns up before the peer has settled).
const LEGIT_WAIT: Duration = Duration::from_secs(10);
/// How long the peer may take to show everything the attackers sent.
const SETTLE_WAIT: Duration = Duration::from_secs(180);
/// How long resident memory is watched, once settled, for its return to the idle figure.
const RETURN_WAIT: Duration = Duration::from_secs(3);
const MIB: f64 = 1024.0 * 1024.0;

/// What the peer has shown so far, counted from its stdout file as it grows.
#[derive(Default)]
struct Tally {
    a_lines: u64,
    streamer_lines: u64,
    hi_lines: u64,
    connects: u64,
    answered: u64,
    lefts: u64,
    /// When each legitimate message was first seen.
    legit: Vec<Option<Instant>>,
}

impl Tally {
    fn see(&mut self, l: &[u8]) {
        if let Some(rest) = l.strip_prefix(LEGIT_SHOWN) {
            let i = std::str::from_utf8(rest).ok().and_then(|t| t.parse().ok());
            if let Some(slot) = i.and_then(|i: usize| self.legit.get_mut(i)) {
                slot.get_or_insert_with(Instant::now);
            }
        } else if l.starts_with(b"[? ") && l.ends_with(b"] a") {
            self.a_lines += 1;
        } else if l.starts_with(b"[streamer ") {
            self.streamer_lines += 1;
        } else if l.starts_with(b"[nnnnnnnn") && l.ends_with(b"] hi") {
            self.hi_lines += 1;
        } else if l.starts_with(b"* x ") && l.ends_with(b" left (exit)") {
            self.lefts += 1;
        } else if l.starts_with(b"* connect from ") {
            self.connects += 1;
            self.answered += u64::from(l.ends_with(b"(answering with connect_ack)"));
        }
    }

    /// Reads what the peer printed since the last call; whether there was a line.
    fn poll(&mut self, c: &mut Running) -> bool {
        let mut any = false;
        c.out.poll(|l| {
            any = true;
            self.see(l);
        });
        any
    }

    /// Whether every attack in `attacks` has shown its first line.
    fn under_way(&self, attacks: &[Attack]) -> bool {
        attacks.iter().all(|a| match a {
            Attack::Streams => self.a_lines > 0,
            Attack::OneStream => self.streamer_lines > 0,
            Attack::HeldSlots => true,
            Attack::LongNames => self.hi_lines > 0,
            Attack::ConnectFlood => self.connects > 0,
            Attack::ChurnPeers => self.lefts > 0,
        })
    }

    /// Whether everything sent has been shown; else what is missing.
    fn missing(&self, s: &Sent) -> Vec<String> {
        [
            ("`a` lines", self.a_lines, s.a_lines),
            ("streamer lines", self.streamer_lines, s.streamer_lines),
            ("long-name lines", self.hi_lines, s.hi_lines),
            ("connects", self.connects, s.connects),
            ("departures", self.lefts, s.lefts),
        ]
        .iter()
        .filter(|(_, shown, sent)| shown < sent)
        .map(|(what, shown, sent)| format!("{shown} of {sent} {what} shown"))
        .collect()
    }
}

/// One row of the table.
pub struct Row {
    attack: String,
    shown: usize,
    sent: usize,
    /// Delivery of each legitimate message shown, in ms, sorted.
    lat_ms: Vec<f64>,
    peak_kib: u64,
    before_kib: u64,
    after_kib: u64,
    settled: Duration,
    note: String,
}

impl Row {
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.lat_ms.len() as f64 - 1.0) * p).round() as usize;
        self.lat_ms.get(i).copied().unwrap_or(f64::NAN)
    }
}

/// The hostile table: what was run and one row per attack.
pub struct Report {
    legit: usize,
    sizes: String,
    rows: Vec<Row>,
}

/// Runs every row of `sizes`; what is broken goes to `problems`.
pub fn run(sizes: &Sizes, env: &Env, problems: &mut Vec<String>) -> Report {
    let mut rows = Vec::new();
    for attacks in &sizes.rows {
        let label = if attacks.len() == Attack::EACH.len() {
            "all".to_owned()
        } else {
            let names: Vec<&str> = attacks.iter().map(|a| a.name()).collect();
            names.join("+")
        };
        if let Some(row) = run_row(sizes, env, attacks, &label, problems) {
            eprintln!(
                "  hostile {label:<13} legit {}/{} p99 {:.1} ms, peak {:.1} MiB, RSS {:.1} → {:.1} MiB, settled {:.1} s; {}",
                row.shown,
                row.sent,
                row.pct(0.99),
                row.peak_kib as f64 / 1024.0,
                row.before_kib as f64 / 1024.0,
                row.after_kib as f64 / 1024.0,
                row.settled.as_secs_f64(),
                row.note
            );
            rows.push(row);
        }
    }
    Report {
        legit: sizes.legit,
        sizes: sizes.describe(),
        rows,
    }
}

/// One fresh peer under `attacks`; `None` if it could not be measured.
fn run_row(
    sizes: &Sizes,
    env: &Env,
    attacks: &[Attack],
    label: &str,
    problems: &mut Vec<String>,
) -> Option<Row> {
    let launch = Launch {
        kind: Kind::Peerchat,
        peerchat: env.peerchat,
        bench_exe: env.bench_exe,
        dir: env.dir,
        label: format!("hostile-{label}"),
        fan_out: None,
        default_limits: true,
        bind: Ipv4Addr::LOCALHOST,
        callgrind: None,
    };
    let mut c = match procs::start(&launch) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("hostile {label}: {e}"));
            return None;
        }
    };
    let (row, mut broken) = match attack(&mut c, sizes, attacks) {
        Ok((row, broken)) => (
            Some(Row {
                attack: label.to_owned(),
                ..row
            }),
            broken,
        ),
        Err(e) => (None, vec![e]),
    };
    match c.stop() {
        // A peer that died mid-attack is reported once.
        Err(e) if !broken.contains(&e) => broken.push(e),
        _ => {}
    }
    if broken.is_empty() && std::env::var_os("PEERCHAT_BENCH_KEEP").is_none() {
        // The streams' output runs to hundreds of megabytes: not kept once it has served.
        let _ = std::fs::remove_file(env.dir.join(format!("{}.out", launch.label)));
    }
    problems.extend(broken.into_iter().map(|p| format!("hostile {label}: {p}")));
    row
}

/// Runs `attacks` and the legitimate sender against `c`. `Err`: the peer died or could
/// not be read; the `Vec` holds what else is broken (lost legitimate messages).
fn attack(
    c: &mut Running,
    sizes: &Sizes,
    attacks: &[Attack],
) -> Result<(Row, Vec<String>), String> {
    let pid = c.pid();
    let has = |a| attacks.contains(&a);
    let before_kib = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
    let fds_before = procs::fd_count(pid).ok_or("cannot count descriptors")?;
    let mut tally = Tally {
        legit: vec![None; sizes.legit],
        ..Tally::default()
    };
    let mut notes = Vec::new();
    let began = Instant::now();
    // Held slots first, until the peer has taken or refused each: they stay held while
    // the other attacks run.
    let (held, refused) = if has(Attack::HeldSlots) {
        hold_slots(c, &mut tally, sizes.held_try, fds_before)?
    } else {
        (Vec::new(), 0)
    };
    let stream_wire = b"a\n".repeat(sizes.stream_bytes / 2);
    let stop = AtomicBool::new(false);
    let to = c.addr;
    let (legit_sent, sent) = thread::scope(|s| {
        let mut handles = Vec::new();
        if has(Attack::Streams) {
            for i in 0..sizes.streams {
                let src = Ipv4Addr::new(127, 0, 0, STREAMS + (i % 8) as u8);
                let wire = &stream_wire;
                handles.push(s.spawn(move || attacks::stream_a(src, to, wire)));
            }
        }
        if has(Attack::OneStream) {
            handles.push(s.spawn(|| attacks::one_stream(to, &stop)));
        }
        if has(Attack::HeldSlots) {
            handles.push(s.spawn(|| attacks::blank_lines(&held, &stop, sizes.held_for)));
        }
        if has(Attack::LongNames) {
            handles.push(s.spawn(|| attacks::long_names(to, sizes)));
        }
        if has(Attack::ConnectFlood) {
            handles.push(s.spawn(|| attacks::connect_flood(to, sizes.connects)));
        }
        if has(Attack::ChurnPeers) {
            handles.push(s.spawn(|| attacks::churn_peers(to, sizes.cycles)));
        }
        let legit_sent = (|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !tally.under_way(attacks) {
                if Instant::now() >= deadline {
                    notes.push("not seen under way within 10 s".to_owned());
                    break;
                }
                if !tally.poll(c) {
                    c.alive()?;
                    thread::sleep(Duration::from_millis(1));
                }
            }
            legit(c, &mut tally, sizes.legit, &mut notes)
        })();
        // Always, so that the endless attackers end and the scope can close.
        stop.store(true, Ordering::Relaxed);
        let mut sent = Sent::default();
        for h in handles {
            match h.join() {
                Ok(one) => sent.merge(one),
                Err(_) => sent.errors.push("an attacker thread panicked".to_owned()),
            }
        }
        (legit_sent, sent)
    });
    drop(held);
    let legit_sent = legit_sent?;
    // Settled: every line sent shown and every attack connection closed.
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let fresh = tally.poll(c);
        if tally.missing(&sent).is_empty() && procs::fd_count(pid).is_some_and(|n| n <= fds_before)
        {
            break;
        }
        c.alive()?;
        if Instant::now() >= deadline {
            let mut missing = tally.missing(&sent);
            let open = procs::fd_count(pid).unwrap_or(0).saturating_sub(fds_before);
            missing.push(format!("{open} attack connections still open"));
            notes.push(format!(
                "not settled in {}s: {}",
                SETTLE_WAIT.as_secs(),
                missing.join(", ")
            ));
            break;
        }
        if !fresh {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let settled = began.elapsed();
    // Memory returned: no event says so, it is sampled for a few seconds.
    let deadline = Instant::now() + RETURN_WAIT;
    let after_kib = loop {
        let rss = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
        if rss <= before_kib + 1024 || Instant::now() >= deadline {
            break rss;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let peak_kib = procs::hwm_kib(pid).ok_or("cannot read VmHWM")?;
    c.alive()?;

    let mut lat_ms: Vec<f64> = legit_sent
        .iter()
        .zip(&tally.legit)
        .filter_map(|(t0, t1)| Some(t1.as_ref()?.saturating_duration_since(*t0.as_ref()?)))
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    lat_ms.sort_by(f64::total_cmp);
    let shown = lat_ms.len();
    let mut broken = Vec::new();
    if shown < sizes.legit {
        let lost: Vec<usize> = (0..sizes.legit)
            .filter(|&i| legit_sent[i].is_none() || tally.legit[i].is_none())
            .collect();
        broken.push(format!(
            "{} of {} legitimate messages not shown (ids {:?})",
            lost.len(),
            sizes.legit,
            &lost[..lost.len().min(10)]
        ));
    }
    if has(Attack::Streams) {
        notes.push(format!("{} `a` lines shown", grouped(tally.a_lines)));
    }
    if has(Attack::OneStream) {
        notes.push(format!(
            "{} lines ({:.1} MiB) streamed",
            grouped(sent.streamer_lines),
            sent.streamer_bytes as f64 / MIB
        ));
    }
    if has(Attack::HeldSlots) {
        notes.push(format!(
            "{} of {} held refused at once",
            grouped(refused as u64),
            grouped(sizes.held_try as u64)
        ));
    }
    if has(Attack::LongNames) {
        notes.push(format!(
            "{} of {} ports claimed ({:.0} MiB{})",
            grouped(sent.hi_lines),
            grouped(u64::from(sizes.long_ports)),
            sent.long_bytes as f64 / MIB,
            if sent.hi_lines < u64::from(sizes.long_ports) {
                ", the cap"
            } else {
                ""
            }
        ));
    }
    if has(Attack::ConnectFlood) {
        notes.push(format!(
            "{} of {} connects answered",
            grouped(tally.answered),
            grouped(tally.connects)
        ));
    }
    if has(Attack::ChurnPeers) {
        notes.push(format!("{} departures shown", grouped(tally.lefts)));
    }
    if let Some(e) = sent.errors.first() {
        notes.push(format!("{} attacker errors, first: {e}", sent.errors.len()));
    }
    let row = Row {
        attack: String::new(),
        shown,
        sent: sizes.legit,
        lat_ms,
        peak_kib,
        before_kib,
        after_kib,
        settled,
        note: notes.join("; "),
    };
    Ok((row, broken))
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 4 / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Opens `k` connections from one address and waits until the peer has taken (one more
/// descriptor each) or refused (closed at once) every one; returns them and the refused.
fn hold_slots(
    c: &mut Running,
    tally: &mut Tally,
    k: usize,
    fds_before: usize,
) -> Result<(Vec<mio::net::TcpStream>, usize), String> {
    let pid = c.pid();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Every connection may be in flight at once: the peer's backlog is far larger.
    let held = load::hold(c.addr, &[HELD], k, deadline, || k)
        .map_err(|e| format!("opening held connections: {e}"))?;
    loop {
        let kept = procs::fd_count(pid).unwrap_or(0).saturating_sub(fds_before);
        let refused = load::closed_by_peer(&held);
        if kept + refused >= held.len() || Instant::now() >= deadline {
            return Ok((held, refused));
        }
        c.alive()?;
        if !tally.poll(c) {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The legitimate sender: `n` one-message connections, one after another, each once the
/// previous is shown (or given up after `LEGIT_WAIT`). Returns when each was sent (`None`:
/// the connect or write failed, noted in `notes`).
fn legit(
    c: &mut Running,
    tally: &mut Tally,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<Option<Instant>>, String> {
    let mut sent = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for i in 0..n {
        let msg = format!("{LEGIT}:4242 legit legit message {i:02}");
        let t0 = Instant::now();
        if let Err(e) = load::send_one(SocketAddr::new(LEGIT.into(), 0), c.addr, &msg) {
            c.alive()?;
            failures.push(format!("{i}: {e}"));
            sent.push(None);
            continue;
        }
        sent.push(Some(t0));
        let deadline = t0 + LEGIT_WAIT;
        while tally.legit[i].is_none() && Instant::now() < deadline {
            if !tally.poll(c) {
                c.alive()?;
                thread::sleep(Duration::from_micros(200));
            }
        }
    }
    if let Some(first) = failures.first() {
        notes.push(format!(
            "{} legitimate sends failed, first {first}",
            failures.len()
        ));
    }
    Ok(sent)
}

impl Report {
    /// The table, with what was run above it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "hostile: release peerchat with default limits, a fresh one per row; legit sender {LEGIT}: {} \
             one-message connections one after another, each timed from connect to its line in peerchat's stdout file",
            self.legit
        );
        let _ = writeln!(out, "{}", self.sizes);
        let _ = writeln!(
            out,
            "targets: every legit message shown, p99 < 100 ms; peak RSS < 64 MiB; RSS after within 1 MiB of before"
        );
        let _ = writeln!(
            out,
            "RSS before: idle, just started; after: once settled (every attack line shown, every attack connection \
             closed; `settled s` from the attack's start), sampled for up to {} s until back within 1 MiB",
            RETURN_WAIT.as_secs()
        );
        out.push('\n');
        let header = [
            "attack",
            "legit shown/sent",
            "p50 ms",
            "p99 ms",
            "max ms",
            "peak RSS MiB",
            "RSS before → after MiB",
            "settled s",
            "note",
        ];
        let mib = |kib: u64| kib as f64 / 1024.0;
        let lines: Vec<[String; 9]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.attack.clone(),
                    format!("{}/{}", r.shown, r.sent),
                    format!("{:.1}", r.pct(0.5)),
                    format!("{:.1}", r.pct(0.99)),
                    format!("{:.1}", r.pct(1.0)),
                    format!("{:.1}", mib(r.peak_kib)),
                    format!("{:.1} → {:.1}", mib(r.before_kib), mib(r.after_kib)),
                    format!("{:.1}", r.settled.as_secs_f64()),
                    r.note.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for line in &lines {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let rule = widths.map(|w| "-".repeat(w));
        for cells in [header.map(str::to_owned), rule].iter().chain(&lines) {
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                // Figures right-aligned, text left-aligned.
                if (1..=7).contains(&i) {
                    let _ = write!(out, "{pad}{cell} ");
                } else {
                    let _ = write!(out, "{cell}{pad} ");
                }
            }
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
        }
        out
    }

    /// A note for every target missed (never an error).
    pub fn target_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for r in &self.rows {
            let p99 = r.pct(0.99);
            if p99 >= 100.0 {
                notes.push(format!(
                    "target missed: hostile {}: legit p99 {p99:.1} ms (target < 100 ms)",
                    r.attack
                ));
            }
            if r.peak_kib >= 64 * 1024 {
                notes.push(format!(
                    "target missed: hostile {}: peak RSS {:.1} MiB (target < 64 MiB)",
                    r.attack,
                    r.peak_kib as f64 / 1024.0
                ));
            }
            if r.after_kib > r.before_kib + 1024 {
                notes.push(format!(
                    "target missed: hostile {}: RSS {:.1} MiB after, {:.1} MiB before (target: within 1 MiB)",
                    r.attack,
                    r.after_kib as f64 / 1024.0,
                    r.before_kib as f64 / 1024.0
                ));
            }
        }
        notes
    }
}
