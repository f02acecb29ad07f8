//! `Ir per message`, where `valgrind` is on PATH: a contender listening on `127.0.0.70` runs
//! under `valgrind --tool=callgrind` (peerchat with `--headless --probe-interval 0` and
//! `RUST_LOG=error`) while `127.0.0.71` sends it one-message connections (connect, send
//! `127.0.0.71:9 cg m00001`, close). Then SIGTERM, and the `summary:` (or `totals:`) line of
//! the callgrind file, divided by the number of messages, start-up and shutdown included. A
//! run with no message at all gives the cost of start-up and shutdown alone; the `less a
//! 0-message run` rows are the difference per message: what one connection costs, and the
//! rows the target (issue 12: at most 2,500 a one-message connection) is checked on.
//! Start-up and shutdown are the process's (for peerchat about 490,000 instructions, half
//! of them the dynamic loader's, the rest the standard library's start, the options and
//! the signal set-up), the same however many connections come; divided among 3,000
//! messages they add about 165 to each.
//!
//! How many connections a loop turn takes decides much of the count (a turn costs a poll, a
//! clock reading, the `accept4` that finds the queue empty, the timers and a write to
//! stdout, whatever it carries), and with a sender that merely keeps some connections in
//! flight it depends on timing: the counts fell in two modes, run by run. So the
//! connections come in two fixed ways ([`Regime`]), each its own rows: all at once, and one
//! at a time.

use crate::load;
use crate::procs::{self, Kind, Launch};
use crate::report::{Metric, Table};
use crate::scenarios::Env;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where the contender listens.
pub const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 70);
/// Where the messages come from (claiming port 9, where nothing listens).
pub const SENDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 71);
/// Most connections made while the contender is stopped, within the listen backlog both
/// contenders ask for (4,096) and `net.core.somaxconn` (4,096 by default since Linux 5.4;
/// half of it when it is smaller).
const MAX_BURST: u32 = 1_000;
/// How long the whole run may take under valgrind.
const DEADLINE: Duration = Duration::from_secs(120);

/// How the connections come.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Regime {
    /// All at once: the contender is stopped (SIGSTOP) while up to [`MAX_BURST`]
    /// connections are made, sent and closed; they wait in its listen backlog until it
    /// continues (SIGCONT), and each loop turn takes as many as it accepts in one (peerchat:
    /// 128), then the next burst. A message's own cost, its turn shared: a peer under load.
    Burst,
    /// One at a time: each connection is made once the one before is shown, so that each is
    /// a loop turn of its own (two when the loop accepts it before its bytes arrive): a
    /// message to a peer otherwise idle, its turn and wake-up included.
    Paced,
}

pub static IR_BURST: Metric = Metric {
    scenario: "callgrind",
    name: "Ir per message, burst (user space)",
    target: "",
    decimals: 0,
};

pub static IR_BURST_NET: Metric = Metric {
    scenario: "callgrind",
    name: "Ir per message, burst, less a 0-message run",
    target: "peerchat ≤ 2,500 a connection",
    decimals: 0,
};

pub static IR_PACED: Metric = Metric {
    scenario: "callgrind",
    name: "Ir per message, paced (user space)",
    target: "",
    decimals: 0,
};

pub static IR_PACED_NET: Metric = Metric {
    scenario: "callgrind",
    name: "Ir per message, paced, less a 0-message run",
    target: "peerchat ≤ 2,500 a connection",
    decimals: 0,
};

impl Regime {
    /// Its rows: Ir per message, and the same less a run with no message (the one a
    /// target is checked on).
    pub fn metrics(self) -> (&'static Metric, &'static Metric) {
        match self {
            Regime::Burst => (&IR_BURST, &IR_BURST_NET),
            Regime::Paced => (&IR_PACED, &IR_PACED_NET),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Regime::Burst => "burst",
            Regime::Paced => "paced",
        }
    }
}

/// Whether `valgrind` can be run.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a printed line is one of ours: it ends with `m` and five digits (peerchat shows
/// `[cg 127.0.0.71:9] m00001`, the floor the message as sent).
fn is_ours(line: &[u8]) -> bool {
    line.len() >= 6
        && line[line.len() - 6] == b'm'
        && line[line.len() - 5..].iter().all(u8::is_ascii_digit)
}

/// Runs each contender under callgrind with no message, then `runs` times with `n`
/// messages in each [`Regime`], the contenders alternating; adds each run's Ir per message
/// to `table` (which reports their median and range).
pub fn run(
    env: &Env,
    kinds: &[Kind],
    (n, runs): (u32, usize),
    table: &mut Table,
) -> Result<(), String> {
    let mut idle = Vec::new();
    for &kind in kinds {
        idle.push(count(env, kind, 0, (Regime::Paced, 0))?);
    }
    for run in 0..runs {
        table.set_round(run);
        for regime in [Regime::Burst, Regime::Paced] {
            let (all, net) = regime.metrics();
            for i in 0..kinds.len() {
                let at = (i + run) % kinds.len();
                let kind = kinds[at];
                let total = count(env, kind, n, (regime, run))?;
                let per = total as f64 / f64::from(n);
                table.add(all, kind, per);
                let less = total.saturating_sub(idle[at]) as f64 / f64::from(n);
                table.add(net, kind, less);
                eprintln!(
                    "  callgrind {:<8} {} {n} messages: {total} Ir in all, {per:.0} per message; {} Ir with none, so {less:.0} per message",
                    kind.name(),
                    regime.name(),
                    idle[at]
                );
            }
        }
    }
    Ok(())
}

/// Connections made at once while the contender is stopped: [`MAX_BURST`], or half the
/// system's bound on a listen backlog when that is smaller.
fn burst_size() -> u32 {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(128);
    MAX_BURST.min(somaxconn / 2).max(1)
}

/// Stops (`SIGSTOP`) or continues (`SIGCONT`) the contender.
fn signal(c: &procs::Running, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child that `c` has not reaped yet.
    unsafe { libc::kill(c.pid() as libc::pid_t, sig) };
}

/// Runs one contender under callgrind with `n` messages coming as `regime` says; the Ir
/// it executed in all.
fn count(env: &Env, kind: Kind, n: u32, (regime, run): (Regime, usize)) -> Result<u64, String> {
    let name = kind.name();
    let label = format!(
        "callgrind-{n}-{}-{}-{run}",
        regime.name(),
        name.replace(' ', "")
    );
    let counts = env.dir.join(format!("{label}.callgrind"));
    let mut c = procs::start(&Launch {
        kind,
        peerchat: env.peerchat,
        bench_exe: env.bench_exe,
        dir: env.dir,
        label,
        fan_out: None,
        default_limits: true,
        bind: PEER,
        callgrind: Some(&counts),
    })?;
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let result = (|| {
        let mut shown = 0u32;
        let mut wait_until = |c: &mut procs::Running, count: u32| -> Result<(), String> {
            loop {
                c.out.poll(|l| shown += u32::from(is_ours(l)));
                if shown >= count {
                    return Ok(());
                }
                c.alive()?;
                if Instant::now() > deadline {
                    return Err(format!(
                        "{name} under callgrind ({}): {shown} of {n} messages shown within {} s",
                        regime.name(),
                        DEADLINE.as_secs()
                    ));
                }
                thread::sleep(Duration::from_millis(1));
            }
        };
        let to = c.addr;
        let send = |i: u32| {
            let msg = format!("{SENDER}:9 cg m{i:05}");
            load::send_one(SocketAddr::new(SENDER.into(), 0), to, &msg)
                .map(|_| ())
                .map_err(|e| format!("{name} under callgrind: sending message {i}: {e}"))
        };
        match regime {
            Regime::Burst => {
                let size = burst_size();
                let mut next = 1;
                while next <= n {
                    let last = n.min(next + size - 1);
                    signal(&c, libc::SIGSTOP);
                    let sent = (next..=last).try_for_each(&send);
                    signal(&c, libc::SIGCONT);
                    sent?;
                    wait_until(&mut c, last)?;
                    next = last + 1;
                }
            }
            Regime::Paced => {
                for i in 1..=n {
                    send(i)?;
                    wait_until(&mut c, i)?;
                }
            }
        }
        Ok(())
    })();
    let took = started.elapsed();
    // SIGTERM; callgrind writes its counts as the process ends.
    result.and(c.stop())?;
    let text = std::fs::read_to_string(&counts)
        .map_err(|e| format!("{name}: reading {}: {e}", counts.display()))?;
    let total: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{name}: no summary/totals line in {}", counts.display()))?;
    eprintln!(
        "  callgrind {name:<8} {} {n} messages sent in {:.1} s",
        regime.name(),
        took.as_secs_f64()
    );
    Ok(total)
}
