//! The four scenarios (churn, held, fan-out, idle), each one run of one contender: start it,
//! drive it with the shared load generator, wait for the evidence in its output (never a fixed
//! sleep where an event can be awaited), stop it. `Err` means something is broken: a lost
//! message, a process that failed to start or died. Target misses are figures, not errors.

use crate::load;
use crate::procs::{self, Kind, Launch, Running};
use crate::report::{Metric, Table};
use crate::sinks::Sinks;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

/// The churn rows of one concurrency (made at run time: the concurrencies are configured).
pub struct ChurnMetrics {
    pub concurrency: usize,
    pub rate: &'static Metric,
    pub p50: &'static Metric,
    pub p99: &'static Metric,
    pub overflows: &'static Metric,
    pub late: &'static Metric,
    pub cpu: &'static Metric,
}

impl ChurnMetrics {
    pub fn new(concurrency: usize) -> ChurnMetrics {
        let scenario: &'static str = Box::leak(format!("churn C={concurrency}").into_boxed_str());
        let metric =
            |name: &'static str, target: &'static str, decimals: usize| -> &'static Metric {
                Box::leak(Box::new(Metric {
                    scenario,
                    name,
                    target,
                    decimals,
                }))
            };
        ChurnMetrics {
            concurrency,
            rate: metric("delivered msg/s", "peerchat ≥ 1.0× floor and > threads", 0),
            p50: metric("connect+write+close p50 µs", "", 0),
            p99: metric("connect+write+close p99 µs", "", 0),
            overflows: metric(
                "listen-queue overflows per run",
                "0 where the floor has 0 (each costs a 1 s SYN retry)",
                0,
            ),
            late: metric(
                "msgs not shown 10 s after the last send",
                "0 (peerchat: else the bench fails)",
                0,
            ),
            cpu: metric("contender's CPU µs per msg shown", "", 1),
        }
    }
}

pub static HELD_IDLE_RSS: Metric = Metric {
    scenario: "held",
    name: "RSS before, KiB",
    target: "peerchat < 4096 KiB",
    decimals: 0,
};
pub static HELD_RSS: Metric = Metric {
    scenario: "held",
    name: "RSS holding, KiB",
    target: "",
    decimals: 0,
};
pub static HELD_PER_CONN: Metric = Metric {
    scenario: "held",
    name: "RSS per held conn, B",
    target: "≤ 256 B",
    decimals: 0,
};
/// What one more held connection costs: the RSS grown from K/2 to K held connections,
/// per connection. The whole figure above also carries what holding touches once (the
/// accept path's code and data pages, the slab's first growths), a few tens of KiB that
/// move with the binary's layout.
pub static HELD_MARGINAL: Metric = Metric {
    scenario: "held",
    name: "RSS per held conn, K/2 to K, B",
    target: "peerchat ≤ 64 B",
    decimals: 0,
};
pub static HELD_MSG: Metric = Metric {
    scenario: "held",
    name: "one message while holding, ms",
    target: "prompt",
    decimals: 2,
};
pub static HELD_CLOSED: Metric = Metric {
    scenario: "held",
    name: "held conns closed by server",
    target: "0",
    decimals: 0,
};
pub static FANOUT: Metric = Metric {
    scenario: "fan-out",
    name: "all sinks have /all, ms",
    target: "< 100 ms",
    decimals: 2,
};
pub static IDLE_CPU: Metric = Metric {
    scenario: "idle",
    name: "CPU ms per 10 s",
    target: "≈ 0",
    decimals: 0,
};
pub static IDLE_WAKE: Metric = Metric {
    scenario: "idle",
    name: "wake-ups per 10 s",
    target: "only what probing needs",
    decimals: 0,
};
pub static IDLE_PROBES: Metric = Metric {
    scenario: "idle",
    name: "connections to sinks per 10 s",
    target: "",
    decimals: 0,
};

/// `ListenOverflows` from `/proc/net/netstat`: SYNs and handshake ACKs the kernel dropped
/// because a listener's accept queue was full (system-wide; the bench is the only load).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Sockets in TIME_WAIT (`tw` in `/proc/net/sockstat`): each churn message leaves one, on
/// the sender's side, for a minute, up to the kernel's cap (`tcp_max_tw_buckets`), beyond
/// which closing skips the state. Printed at the start of each churn run, beside its rate:
/// the count was a suspect for the spread between runs, and runs at the cap spread as
/// widely as the others.
fn time_wait() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("TCP:"))
        .and_then(|rest| {
            let mut words = rest.split_whitespace();
            while let Some(word) = words.next() {
                if word == "tw" {
                    return words.next().and_then(|v| v.parse().ok());
                }
            }
            None
        })
        .unwrap_or(0)
}

/// Sizes of one bench invocation.
pub struct Config {
    pub churn_runs: usize,
    pub churn_n: u32,
    /// The concurrencies churn runs at, each its own rows.
    pub churn_cs: Vec<usize>,
    /// No new churn message is started after this long (a slow contender sends fewer).
    pub churn_budget: Duration,
    pub sources: Vec<Ipv4Addr>,
    pub held_runs: usize,
    pub held_k: usize,
    pub hold_for: Duration,
    pub fanout_runs: usize,
    pub fanout_p: usize,
    pub idle_runs: usize,
    pub idle_peers: usize,
    pub idle_for: Duration,
    pub stream_runs: usize,
    /// Bytes of lines per stream run, for each of `stream::SIZES`.
    pub stream_bytes: [u64; 3],
    /// One-message connections counted under callgrind (0: not run).
    pub callgrind_n: u32,
    /// Runs of `callgrind_n` per contender: how many one-message connections a turn
    /// takes depends on timing (the sender against a peer slowed down 50 times), and with
    /// it the count per message, by a quarter from run to run.
    pub callgrind_runs: usize,
}

/// Everything a run needs besides its sizes.
pub struct Env<'a> {
    pub peerchat: &'a std::path::Path,
    pub bench_exe: &'a std::path::Path,
    pub dir: &'a std::path::Path,
}

impl Env<'_> {
    pub fn start(
        &self,
        kind: Kind,
        label: String,
        fan_out: Option<&[SocketAddr]>,
    ) -> Result<Running, String> {
        procs::start(&Launch {
            kind,
            peerchat: self.peerchat,
            bench_exe: self.bench_exe,
            dir: self.dir,
            label,
            fan_out,
            default_limits: false,
            bind: Ipv4Addr::LOCALHOST,
            callgrind: None,
        })
    }
}

fn letter(kind: Kind) -> char {
    kind.name().chars().next().unwrap_or('x')
}

/// Waits until `count(line)` over all lines printed so far reaches `want`; returns the total.
fn wait_lines(
    c: &mut Running,
    want: usize,
    deadline: Instant,
    mut count: impl FnMut(&[u8]) -> bool,
) -> usize {
    let mut seen = 0;
    loop {
        c.out.poll(|line| seen += usize::from(count(line)));
        if seen >= want || Instant::now() >= deadline || c.alive().is_err() {
            return seen;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Stops a contender, turning a crash or a hang on SIGTERM into an error.
fn finish(c: Running, result: Result<(), String>) -> Result<(), String> {
    let stopped = c.stop();
    result.and(stopped)
}

/// One churn run: N messages at concurrency C; delivered rate and latency percentiles. A
/// message peerchat has not shown 10 s after the last send is an error; a baseline's (the
/// thread-per-connection server's backlog of 128 overflows at C = 256, and a handshake whose
/// last ACK was dropped waits for SYN-ACK retries of 1, 2, 4, 8 s...) is counted and noted.
pub fn churn(
    cfg: &Config,
    env: &Env,
    kind: Kind,
    run: usize,
    rows: &ChurnMetrics,
    table: &mut Table,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let cc = rows.concurrency;
    let label = format!("churn-c{cc}-{run}-{}", kind.name().replace(' ', ""));
    let mut c = env.start(kind, label, None)?;
    let tag = format!("r{run}c{cc}{}x", letter(kind));
    let n = cfg.churn_n;
    let result = (|| {
        let overflows_before = listen_overflows();
        let waiting = time_wait();
        // The contender's CPU time (user and system, in clock ticks) and the load
        // generator's (this thread), around the load: which of the two is the bottleneck.
        let (cpu0, load0) = (procs::cpu_time(c.pid()), procs::thread_cpu_time());
        let deadline = Instant::now() + Duration::from_secs(120);
        let stats = load::churn(
            c.addr,
            &cfg.sources,
            &tag,
            n,
            cc,
            cfg.churn_budget,
            deadline,
        )
        .map_err(|e| format!("{}: load generator: {e}", kind.name()))?;
        let sent = stats.sent;
        let mut delivered = vec![false; n as usize];
        let (mut unique, mut dups, mut last) = (0usize, 0usize, stats.started);
        let deadline = Instant::now() + Duration::from_secs(10);
        while unique < sent as usize && Instant::now() < deadline && c.alive().is_ok() {
            let mut fresh = 0;
            c.out.poll(|line| {
                if let Some(id) = load::find_id(line, tag.as_bytes()).filter(|&id| id < n) {
                    if std::mem::replace(&mut delivered[id as usize], true) {
                        dups += 1;
                    } else {
                        fresh += 1;
                    }
                }
            });
            if fresh > 0 {
                unique += fresh;
                last = Instant::now();
            } else {
                thread::sleep(Duration::from_millis(1));
            }
        }
        c.alive()?;
        if unique < sent as usize || dups > 0 {
            let missing: Vec<usize> = (0..sent as usize)
                .filter(|&i| !delivered[i])
                .take(5)
                .collect();
            let problem = format!(
                "{}: churn C={cc} run {run}: {unique} of {sent} messages printed within 10 s after sending ({dups} \
                 duplicates; {} connect errors retried, {} write errors; first missing ids {missing:?})",
                kind.name(),
                stats.connect_errors,
                stats.write_errors
            );
            if dups > 0 || matches!(kind, Kind::Peerchat | Kind::PeerchatState) {
                return Err(problem);
            }
            notes.push(format!("baseline late or lost: {problem}"));
        }
        let (cpu1, load1) = (procs::cpu_time(c.pid()), procs::thread_cpu_time());
        let per_msg = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) if unique > 0 => (b - a).as_secs_f64() * 1e6 / unique as f64,
            _ => f64::NAN,
        };
        let (cpu, load_cpu) = (per_msg(cpu0, cpu1), per_msg(load0, load1));
        let overflows = listen_overflows().saturating_sub(overflows_before);
        let rate = unique as f64 / (last - stats.started).as_secs_f64();
        let mut lat = stats.latencies_us;
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
                .map_or(f64::NAN, |&v| f64::from(v))
        };
        table.add(rows.rate, kind, rate);
        table.add(rows.p50, kind, pct(0.50));
        table.add(rows.p99, kind, pct(0.99));
        table.add(rows.overflows, kind, overflows as f64);
        table.add(rows.late, kind, (sent as usize - unique) as f64);
        table.add(rows.cpu, kind, cpu);
        eprintln!(
            "  churn  C={cc:<3} run {run} {:<8} {sent:>6} msgs {rate:>8.0} msg/s  p50 {:>5} µs  p99 {:>7} µs  CPU {cpu:.1} µs a \
             msg (load generator {load_cpu:.1})  {overflows} listen overflows, {} connect errors retried; {waiting} TIME_WAIT \
             at the start",
            kind.name(),
            pct(0.50),
            pct(0.99),
            stats.connect_errors
        );
        Ok(())
    })();
    finish(c, result)
}

/// One held run: K idle connections; memory per connection, one message while holding, and
/// whether the server kept them all open for the hold period.
pub fn held(
    cfg: &Config,
    env: &Env,
    kind: Kind,
    run: usize,
    table: &mut Table,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut c = env.start(kind, format!("held-{run}-{}", kind.name()), None)?;
    let pid = c.pid();
    let k = cfg.held_k;
    let result = (|| {
        let rss_before = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
        let fds_before = procs::fd_count(pid).ok_or("cannot count descriptors")?;
        let count = || procs::fd_count(pid).unwrap_or(0).saturating_sub(fds_before);
        // Accepted (server side) is what costs memory: after each half, wait for the
        // descriptors to appear.
        let settle = |c: &mut Running, want: usize| -> Result<usize, String> {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut open = count();
            while open < want && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
                open = count();
                c.alive()?;
            }
            Ok(open)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut held = load::hold(c.addr, &cfg.sources, k / 2, deadline, count)
            .map_err(|e| format!("{}: opening {k} held connections: {e}", kind.name()))?;
        let open_half = settle(&mut c, held.len())?;
        let rss_half = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
        let more = load::hold(c.addr, &cfg.sources, k - k / 2, deadline, || {
            count().saturating_sub(open_half)
        })
        .map_err(|e| format!("{}: opening {k} held connections: {e}", kind.name()))?;
        held.extend(more);
        let open = settle(&mut c, held.len())?;
        if open < k {
            notes.push(format!(
                "held: {} run {run}: {} of {k} connections established, {open} open on the server side \
                 (per-connection figure uses {open})",
                kind.name(),
                held.len(),
            ));
        }
        let rss_holding = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
        let marginal = rss_holding.saturating_sub(rss_half) as f64 * 1024.0
            / open.saturating_sub(open_half).max(1) as f64;
        let open = open.max(1);
        // One normal message must still get through promptly.
        let tag = format!("held{run}{}x", letter(kind));
        let msg = load::churn_message(Ipv4Addr::new(127, 0, 0, 2), &tag, 7);
        let sent = Instant::now();
        load::send_one(SocketAddr::from(([127, 0, 0, 2], 0)), c.addr, &msg)
            .map_err(|e| format!("{}: sending a message while holding: {e}", kind.name()))?;
        let got = wait_lines(&mut c, 1, sent + Duration::from_secs(10), |l| {
            load::find_id(l, tag.as_bytes()) == Some(7)
        });
        if got == 0 {
            c.alive()?;
            return Err(format!(
                "{}: the message sent while holding {k} connections never printed (10 s)",
                kind.name()
            ));
        }
        let latency = sent.elapsed();
        // Hold for the rest of the period, then see who is still open.
        thread::sleep(cfg.hold_for.saturating_sub(sent.elapsed()));
        c.alive()?;
        let rss_end = procs::rss_kib(pid).ok_or("cannot read VmRSS")?;
        let closed = load::closed_by_peer(&held);
        let rss_max = rss_holding.max(rss_end);
        table.add(&HELD_IDLE_RSS, kind, rss_before as f64);
        table.add(&HELD_RSS, kind, rss_max as f64);
        table.add(
            &HELD_PER_CONN,
            kind,
            rss_max.saturating_sub(rss_before) as f64 * 1024.0 / open as f64,
        );
        table.add(&HELD_MARGINAL, kind, marginal);
        table.add(&HELD_MSG, kind, latency.as_secs_f64() * 1e3);
        table.add(&HELD_CLOSED, kind, closed as f64);
        if closed > 0 {
            notes.push(format!(
                "held: {} closed {closed} of {k} idle connections within {:.1} s (connection limit or idle timeout)",
                kind.name(),
                cfg.hold_for.as_secs_f64()
            ));
        }
        eprintln!(
            "  held   run {run} {:<8} RSS {rss_before} → {rss_half} → {rss_max} KiB, {:.0} B/conn ({marginal:.0} from K/2 to K), msg {:.2} ms, {closed} closed",
            kind.name(),
            rss_max.saturating_sub(rss_before) as f64 * 1024.0 / open as f64,
            latency.as_secs_f64() * 1e3
        );
        drop(held);
        Ok(())
    })();
    finish(c, result)
}

/// Sends `connect` from every sink's own address, claiming its listening port, and waits for
/// the contender to print one line per sink saying it got it.
fn announce(c: &mut Running, sinks: &Sinks, notes: &mut Vec<String>) -> Result<(), String> {
    for (i, addr) in sinks.addrs.iter().enumerate() {
        let msg = format!("{addr} sink{i} connect");
        load::send_one(SocketAddr::new(addr.ip(), 0), c.addr, &msg)
            .map_err(|e| format!("{}: sending connect from sink {addr}: {e}", c.kind.name()))?;
    }
    let want = sinks.addrs.len();
    let seen = wait_lines(c, want, Instant::now() + Duration::from_secs(10), |l| {
        // peerchat: `* connect from NAME IP:PORT ...`; the baselines print the message itself.
        l.starts_with(b"* connect from") || l.ends_with(b" connect")
    });
    c.alive()?;
    if seen < want {
        notes.push(format!(
            "{} printed {seen} lines mentioning `connect` for {want} sinks that sent `connect` (10 s)",
            c.kind.name()
        ));
    }
    Ok(())
}

/// One fan-out run: `/all` to P sinks; time until the last sink has it.
pub fn fan_out(
    cfg: &Config,
    env: &Env,
    kind: Kind,
    run: usize,
    table: &mut Table,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let marker = format!("fan{run}{}x", letter(kind));
    let sinks = Sinks::start(cfg.fanout_p, marker.clone().into_bytes())
        .map_err(|e| format!("starting sinks: {e}"))?;
    let targets: &[SocketAddr] = if kind == Kind::Peerchat {
        &[]
    } else {
        &sinks.addrs
    };
    let mut c = env.start(kind, format!("fanout-{run}-{}", kind.name()), Some(targets))?;
    if kind == Kind::Peerchat {
        announce(&mut c, &sinks, notes)?;
    }
    let mut stdin = c.stdin.take().ok_or("no stdin pipe")?;
    let sent = Instant::now();
    writeln!(stdin, "/all {marker}")
        .map_err(|e| format!("{}: writing /all to stdin: {e}", kind.name()))?;
    let marks = sinks.wait_marks(sent + Duration::from_secs(10));
    let got = marks.iter().flatten().count();
    let last = marks.iter().flatten().max().copied();
    if kind == Kind::Peerchat {
        c.stdin = Some(stdin);
        finish(c, Ok(()))?;
    } else {
        drop(stdin);
        drop(c); // the fan-out roles exit by themselves once done
    }
    if got < cfg.fanout_p {
        return Err(format!(
            "{}: fan-out run {run}: only {got} of {} sinks received /all within 10 s",
            kind.name(),
            cfg.fanout_p
        ));
    }
    let ms = last.map_or(f64::NAN, |t| (t - sent).as_secs_f64() * 1e3);
    table.add(&FANOUT, kind, ms);
    eprintln!(
        "  fanout run {run} {:<8} {} sinks in {ms:.2} ms",
        kind.name(),
        cfg.fanout_p
    );
    Ok(())
}

/// One idle run: a contender that knows `idle_peers` live sinks, left alone; CPU time,
/// wake-ups and the connections it made to the sinks.
pub fn idle(
    cfg: &Config,
    env: &Env,
    kind: Kind,
    run: usize,
    table: &mut Table,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let sinks = Sinks::start(cfg.idle_peers, b"\0never\0".to_vec())
        .map_err(|e| format!("starting sinks: {e}"))?;
    let mut c = env.start(kind, format!("idle-{run}-{}", kind.name()), None)?;
    let pid = c.pid();
    let result = (|| {
        announce(&mut c, &sinks, notes)?;
        // Let the replies to `connect` finish; there is no event that says "nothing more to do".
        thread::sleep(Duration::from_millis(300));
        let (cpu0, wake0) = (procs::cpu_time(pid), procs::context_switches(pid));
        let conn0 = sinks.connections.load(std::sync::atomic::Ordering::Relaxed);
        thread::sleep(cfg.idle_for);
        c.alive()?;
        let (cpu1, wake1) = (procs::cpu_time(pid), procs::context_switches(pid));
        let conn1 = sinks.connections.load(std::sync::atomic::Ordering::Relaxed);
        let (Some(cpu0), Some(cpu1), Some(wake0), Some(wake1)) = (cpu0, cpu1, wake0, wake1) else {
            return Err("cannot read /proc stat/status".to_owned());
        };
        let scale = 10.0 / cfg.idle_for.as_secs_f64();
        let cpu_ms = (cpu1 - cpu0).as_secs_f64() * 1e3 * scale;
        let wakes = (wake1 - wake0) as f64 * scale;
        let probes = (conn1 - conn0) as f64 * scale;
        table.add(&IDLE_CPU, kind, cpu_ms);
        table.add(&IDLE_WAKE, kind, wakes);
        table.add(&IDLE_PROBES, kind, probes);
        eprintln!("  idle   run {run} {:<8} {cpu_ms:.0} ms CPU, {wakes:.0} wake-ups, {probes:.0} connections to sinks per 10 s", kind.name());
        Ok(())
    })();
    finish(c, result)
}
